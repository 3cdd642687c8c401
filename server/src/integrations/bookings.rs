//! `BookingService`: the tenant's appointments (`bookings:read` / `bookings:write`). Reading is
//! here; every change goes through the tenant's [`Calendar`], which records it with its audit
//! entry, webhook event and the customer's email in one transaction.

use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use sea_orm::sea_query::{Expr, Func, LikeExpr};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use app::error::AppError;
use app::services::{Access, Actor, BookingService};
use app::types::{
    Area, Booking, BookingQuery, BookingSource, CancelBooking, CreateBooking, Level, Page,
    RescheduleBooking,
};
use app::validate::check;

use super::calendar::{local_to_utc, to_booking, zone, Calendar, CalendarError, NewBooking};
use crate::store::{bookings, like_literal, tenants};
use crate::tenancy::db_error;

const DEFAULT_PAGE: u32 = 100;

pub struct BookingServiceImpl {
    db: DatabaseConnection,
    calendar: Arc<dyn Calendar>,
}

fn calendar_error(e: CalendarError) -> AppError {
    match e {
        CalendarError::Conflict => {
            AppError::Conflict("that time overlaps another booking; choose a free time".into())
        }
        CalendarError::NotFound => AppError::not_found("booking"),
        CalendarError::Cancelled => {
            AppError::Conflict("the booking is cancelled; book a new appointment instead".into())
        }
        CalendarError::Unavailable(why) => AppError::Unavailable(why),
        CalendarError::Failed(e) => {
            tracing::error!(error = %e, "the calendar failed");
            AppError::Internal("the calendar failed; try again".into())
        }
    }
}

/// Who made a booking, by who is calling.
fn source_of(access: &Access) -> BookingSource {
    match access.actor {
        Actor::User { .. } => BookingSource::Console,
        _ => BookingSource::Api,
    }
}

/// How far ahead a booking may start.
const MAX_DAYS_AHEAD: i64 = 5 * 366;

/// The start of `day` in `tz` (midnight, or the first instant after a gap).
fn day_start(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    let midnight = day.and_time(chrono::NaiveTime::MIN);
    (0..=3)
        .filter_map(|h| midnight.checked_add_signed(Duration::hours(h)))
        .find_map(|at| local_to_utc(tz, at))
        .unwrap_or_else(|| midnight.and_utc())
}

/// A day filter the databases can compare (years 1900–9999).
fn sane_day(field: &'static str, day: Option<NaiveDate>) -> Result<(), AppError> {
    match day {
        Some(day) if !(1900..=9999).contains(&day.year()) => Err(AppError::invalid(
            field,
            "must be a day between the years 1900 and 9999",
        )),
        _ => Ok(()),
    }
}

impl BookingServiceImpl {
    pub fn new(db: DatabaseConnection, calendar: Arc<dyn Calendar>) -> Self {
        BookingServiceImpl { db, calendar }
    }

    async fn zone_of(&self, access: &Access) -> Result<Tz, AppError> {
        let tenant = tenants::Entity::find_by_id(access.tenant_id)
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or_else(|| AppError::not_found("tenant"))?;
        Ok(zone(&tenant.timezone))
    }

    /// The interval a person asked for, in the tenant's time zone; not in the past.
    async fn interval(
        &self,
        access: &Access,
        start: chrono::NaiveDateTime,
        minutes: u32,
    ) -> Result<(DateTime<Utc>, DateTime<Utc>), AppError> {
        let tz = self.zone_of(access).await?;
        let starts_at = local_to_utc(tz, start).ok_or_else(|| {
            AppError::invalid(
                "start",
                format!(
                    "{} does not exist in {} (the clocks go forward then)",
                    start.format("%Y-%m-%d %H:%M"),
                    tz.name()
                ),
            )
        })?;
        let now = Utc::now();
        if starts_at <= now {
            return Err(AppError::invalid("start", "is in the past"));
        }
        if starts_at > now + Duration::days(MAX_DAYS_AHEAD) {
            return Err(AppError::invalid("start", "is more than five years ahead"));
        }
        Ok((starts_at, starts_at + Duration::minutes(i64::from(minutes))))
    }
}

#[async_trait::async_trait]
impl BookingService for BookingServiceImpl {
    async fn list_bookings(
        &self,
        access: &Access,
        query: BookingQuery,
    ) -> Result<Page<Booking>, AppError> {
        access.require(Area::Bookings, Level::Read)?;
        check(&query)?;
        sane_day("from", query.from)?;
        sane_day("to", query.to)?;
        if let (Some(from), Some(to)) = (query.from, query.to) {
            if to < from {
                return Err(AppError::invalid("to", "is before from"));
            }
        }
        let tz = self.zone_of(access).await?;
        let limit = query.limit.unwrap_or(DEFAULT_PAGE);
        let mut select =
            bookings::Entity::find().filter(bookings::Column::TenantId.eq(access.tenant_id));
        if let Some(from) = query.from {
            select = select.filter(bookings::Column::StartsAt.gte(day_start(tz, from)));
        }
        if let Some(to) = query.to.and_then(|to| to.succ_opt()) {
            select = select.filter(bookings::Column::StartsAt.lt(day_start(tz, to)));
        }
        if let Some(status) = query.status {
            select = select.filter(bookings::Column::Status.eq(status.as_str()));
        }
        if let Some(conversation) = query.conversation_id {
            select = select.filter(bookings::Column::ConversationId.eq(conversation));
        }
        if let Some(q) = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            let pattern = format!("%{}%", like_literal(&q.to_lowercase()));
            let like = |column: bookings::Column| {
                Expr::expr(Func::lower(Expr::col(column)))
                    .like(LikeExpr::new(pattern.clone()).escape('\\'))
            };
            select = select.filter(
                Condition::any()
                    .add(like(bookings::Column::Name))
                    .add(like(bookings::Column::Email)),
            );
        }
        // By start, then id: the cursor is the last booking's id, read back for its start.
        if let Some(cursor) = query.cursor.as_deref() {
            let invalid = || AppError::invalid("cursor", "is not a cursor from a previous page");
            let after: Uuid = cursor.parse().map_err(|_| invalid())?;
            let last = bookings::Entity::find_by_id(after)
                .filter(bookings::Column::TenantId.eq(access.tenant_id))
                .one(&self.db)
                .await
                .map_err(db_error)?
                .ok_or_else(invalid)?;
            select = select.filter(
                Condition::any()
                    .add(bookings::Column::StartsAt.gt(last.starts_at))
                    .add(
                        Condition::all()
                            .add(bookings::Column::StartsAt.eq(last.starts_at))
                            .add(bookings::Column::Id.gt(last.id)),
                    ),
            );
        }
        let mut rows = select
            .order_by_asc(bookings::Column::StartsAt)
            .order_by_asc(bookings::Column::Id)
            .limit(u64::from(limit) + 1)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        let next_cursor = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|r| r.id.to_string())
        } else {
            None
        };
        Ok(Page {
            items: rows.into_iter().map(|r| to_booking(r, tz)).collect(),
            next_cursor,
        })
    }

    async fn get_booking(&self, access: &Access, id: Uuid) -> Result<Booking, AppError> {
        access.require(Area::Bookings, Level::Read)?;
        let tz = self.zone_of(access).await?;
        let row = bookings::Entity::find_by_id(id)
            .filter(bookings::Column::TenantId.eq(access.tenant_id))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or_else(|| AppError::not_found("booking"))?;
        Ok(to_booking(row, tz))
    }

    async fn create_booking(
        &self,
        access: &Access,
        booking: CreateBooking,
    ) -> Result<Booking, AppError> {
        access.require(Area::Bookings, Level::Write)?;
        check(&booking)?;
        crate::integrations::email::parse_address("email", &booking.email)
            .map_err(|e| AppError::invalid("email", e.to_string()))?;
        let (starts_at, ends_at) = self
            .interval(access, booking.start, booking.duration_minutes)
            .await?;
        let new = NewBooking {
            id: None,
            conversation_id: None,
            starts_at,
            ends_at,
            name: booking.name.trim().to_string(),
            email: booking.email.trim().to_string(),
            note: booking.note.trim().to_string(),
            source: source_of(access),
            notify: booking.notify,
        };
        self.calendar
            .book(access, new)
            .await
            .map_err(calendar_error)
    }

    async fn reschedule_booking(
        &self,
        access: &Access,
        id: Uuid,
        change: RescheduleBooking,
    ) -> Result<Booking, AppError> {
        access.require(Area::Bookings, Level::Write)?;
        check(&change)?;
        let minutes = match change.duration_minutes {
            Some(minutes) => minutes,
            None => {
                let current = self.get_booking(access, id).await?;
                u32::try_from((current.ends_at - current.starts_at).num_minutes()).unwrap_or(30)
            }
        };
        let (starts_at, ends_at) = self.interval(access, change.start, minutes).await?;
        self.calendar
            .reschedule(access, id, starts_at, ends_at, change.notify)
            .await
            .map_err(calendar_error)
    }

    async fn cancel_booking(
        &self,
        access: &Access,
        id: Uuid,
        cancel: CancelBooking,
    ) -> Result<Booking, AppError> {
        access.require(Area::Bookings, Level::Write)?;
        check(&cancel)?;
        self.calendar
            .cancel(access, id, &cancel.reason, cancel.notify)
            .await
            .map_err(calendar_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_starts_at_its_first_local_instant() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 12, 8).unwrap();
        assert_eq!(
            day_start(berlin, day).to_rfc3339(),
            "2026-12-07T23:00:00+00:00"
        );
        // Santiago skips midnight when the clocks go forward: the day starts at 01:00.
        let santiago: Tz = "America/Santiago".parse().unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 9, 6).unwrap();
        assert_eq!(
            day_start(santiago, day).to_rfc3339(),
            "2026-09-06T04:00:00+00:00"
        );
    }
}
