//! Where appointments are booked. [`Calendar`] is the provider trait; [`BuiltInCalendar`] keeps
//! bookings in the database, and `google::calendar::TenantCalendar` puts them in the tenant's
//! Google Calendar when it is connected (recording them here all the same: the bookings table
//! is the platform's record of every booking, whichever calendar holds it).
//!
//! Every change (booking, moving, cancelling) is one transaction: the row, its audit record,
//! its webhook event and the customer's email job commit together or not at all. Two changes
//! can never double-book a time: PostgreSQL takes a per-tenant advisory lock; on SQLite the
//! transaction opens with a write that changes nothing, which makes it the only writer until it
//! ends (as `BEGIN IMMEDIATE` would), so what it reads stays true and it never has to upgrade a
//! read snapshot that a worker's commit made stale (`SQLITE_BUSY_SNAPSHOT`, which no busy
//! timeout waits out). The change then counts the confirmed bookings it overlaps and rolls back
//! on any.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection,
    DatabaseTransaction, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder,
    Set, Statement, TransactionTrait,
};
use serde_json::json;
use uuid::Uuid;

use app::services::Access;
use app::types::{Booking, BookingSource, BookingStatus, CalendarProvider, WebhookEvent};

use crate::integrations::email::{self, OutgoingEmail};
use crate::integrations::webhooks::{self, Event};
use crate::store::audit_log::Record;
use crate::store::{bookings, tenant_email_settings, tenants};

#[derive(Clone, Debug)]
pub struct NewBooking {
    /// The booking's id when the caller chose it (a workflow step derives it from the step,
    /// so a repeated step finds its booking instead of making another); new when absent.
    pub id: Option<Uuid>,
    pub conversation_id: Option<Uuid>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub name: String,
    pub email: String,
    pub note: String,
    pub source: BookingSource,
    /// Email the customer a confirmation (when the tenant can send email).
    pub notify: bool,
}

/// Where a new booking is held: its id, and the calendar with the event's id there.
#[derive(Clone, Debug)]
pub struct Placement {
    pub id: Uuid,
    pub provider: CalendarProvider,
    pub external_id: Option<String>,
}

impl Placement {
    /// Only in the built-in calendar.
    pub fn built_in() -> Placement {
        Placement {
            id: Uuid::now_v7(),
            provider: CalendarProvider::BuiltIn,
            external_id: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    #[error("that time overlaps another booking")]
    Conflict,
    #[error("no such booking")]
    NotFound,
    #[error("the booking is cancelled; it cannot be changed")]
    Cancelled,
    /// The tenant's calendar cannot be used now; the message says why, for the person or the
    /// agent (e.g. Google Calendar needs reconnecting and the tenant chose not to fall back).
    #[error("{0}")]
    Unavailable(String),
    #[error("the calendar failed: {0}")]
    Failed(String),
}

#[async_trait::async_trait]
pub trait Calendar: Send + Sync {
    /// Booked intervals overlapping `[from, to)`, by start.
    async fn busy(
        &self,
        tenant: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>, CalendarError>;

    /// The confirmed bookings a conversation made that have not ended yet, by start.
    async fn of_conversation(
        &self,
        tenant: Uuid,
        conversation: Uuid,
    ) -> Result<Vec<Booking>, CalendarError>;

    /// Books the interval unless it overlaps a confirmed booking (never double-books, even
    /// when two conversations ask at once).
    async fn book(&self, access: &Access, booking: NewBooking) -> Result<Booking, CalendarError>;

    /// Moves a confirmed booking, unless the new time overlaps another.
    async fn reschedule(
        &self,
        access: &Access,
        id: Uuid,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        notify: bool,
    ) -> Result<Booking, CalendarError>;

    /// Cancels a confirmed booking; its time is free again.
    async fn cancel(
        &self,
        access: &Access,
        id: Uuid,
        reason: &str,
        notify: bool,
    ) -> Result<Booking, CalendarError>;
}

/// A local time in `tz` as an instant: the earlier one when the clocks go back, `None` in the
/// hour that does not exist when they go forward.
pub fn local_to_utc(tz: Tz, at: NaiveDateTime) -> Option<DateTime<Utc>> {
    tz.from_local_datetime(&at)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

/// The tenant's time zone (UTC when the stored name is unknown).
pub fn zone(name: &str) -> Tz {
    name.parse().unwrap_or(chrono_tz::UTC)
}

pub fn to_booking(m: bookings::Model, tz: Tz) -> Booking {
    Booking {
        id: m.id,
        status: BookingStatus::parse(&m.status).unwrap_or(BookingStatus::Confirmed),
        source: BookingSource::parse(&m.source).unwrap_or(BookingSource::Agent),
        starts_at: m.starts_at,
        ends_at: m.ends_at,
        timezone: tz.name().to_string(),
        local_start: m.starts_at.with_timezone(&tz).naive_local(),
        local_end: m.ends_at.with_timezone(&tz).naive_local(),
        name: m.name,
        email: m.email,
        note: m.note,
        conversation_id: m.conversation_id,
        created_at: m.created_at,
        updated_at: m.updated_at,
        cancelled_at: m.cancelled_at,
        cancel_reason: m.cancel_reason,
        provider: CalendarProvider::parse(&m.provider).unwrap_or(CalendarProvider::BuiltIn),
    }
}

pub struct BuiltInCalendar {
    db: DatabaseConnection,
    /// The platform has an SMTP relay, so every tenant can email its customers.
    platform_email: bool,
}

impl BuiltInCalendar {
    pub fn new(db: DatabaseConnection, platform_email: bool) -> Self {
        BuiltInCalendar { db, platform_email }
    }
}

fn failed(e: sea_orm::DbErr) -> CalendarError {
    CalendarError::Failed(e.to_string())
}

/// The confirmed bookings overlapping `[from, to)`.
fn overlapping(
    tenant: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sea_orm::Select<bookings::Entity> {
    bookings::Entity::find()
        .filter(bookings::Column::TenantId.eq(tenant))
        .filter(bookings::Column::Status.eq(BookingStatus::Confirmed.as_str()))
        .filter(bookings::Column::StartsAt.lt(to))
        .filter(bookings::Column::EndsAt.gt(from))
}

/// A transaction in which this tenant's bookings change one at a time (see the module note).
async fn begin(
    db: &DatabaseConnection,
    tenant: Uuid,
) -> Result<DatabaseTransaction, CalendarError> {
    let txn = db.begin().await.map_err(failed)?;
    let lock = match txn.get_database_backend() {
        DatabaseBackend::Postgres => Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 7))",
            [tenant.to_string().into()],
        ),
        backend => {
            Statement::from_string(backend, "UPDATE bookings SET status = status WHERE 1 = 0")
        }
    };
    txn.execute(lock).await.map_err(failed)?;
    Ok(txn)
}

/// Whether `[from, to)` overlaps a confirmed booking other than `except`.
async fn clashes(
    txn: &DatabaseTransaction,
    tenant: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    except: Uuid,
) -> Result<bool, CalendarError> {
    Ok(overlapping(tenant, from, to)
        .filter(bookings::Column::Id.ne(except))
        .count(txn)
        .await
        .map_err(failed)?
        > 0)
}

/// The booking's row in the tenant, for a change.
async fn confirmed(
    txn: &impl ConnectionTrait,
    tenant: Uuid,
    id: Uuid,
) -> Result<bookings::Model, CalendarError> {
    let row = bookings::Entity::find_by_id(id)
        .filter(bookings::Column::TenantId.eq(tenant))
        .one(txn)
        .await
        .map_err(failed)?
        .ok_or(CalendarError::NotFound)?;
    if row.status != BookingStatus::Confirmed.as_str() {
        return Err(CalendarError::Cancelled);
    }
    Ok(row)
}

/// What a change records besides the row.
struct Effects<'a> {
    action: &'a str,
    event: WebhookEvent,
    /// Added to the event's `data` beside `booking`.
    extra: serde_json::Value,
    /// Subject and body of the customer's email, when they are to be told.
    email: Option<(String, String)>,
}

/// The tenant's name and time zone.
async fn tenant_of(txn: &DatabaseTransaction, tenant: Uuid) -> Result<(String, Tz), CalendarError> {
    let t = tenants::Entity::find_by_id(tenant)
        .one(txn)
        .await
        .map_err(failed)?
        .ok_or_else(|| CalendarError::Failed("the tenant is gone".into()))?;
    Ok((t.name, zone(&t.timezone)))
}

impl BuiltInCalendar {
    /// Audit, webhook event and email of a change, in its transaction, then the commit.
    async fn finish(
        &self,
        txn: DatabaseTransaction,
        access: &Access,
        booking: &Booking,
        effects: Effects<'_>,
    ) -> Result<(), CalendarError> {
        Record::by(access, effects.action, format!("booking:{}", booking.id))
            .details(json!({
                "starts_at": booking.starts_at,
                "ends_at": booking.ends_at,
                "source": booking.source.as_str(),
                "extra": effects.extra,
            }))
            .write(&txn)
            .await
            .map_err(failed)?;
        let mut data = json!({ "booking": booking });
        if let (Some(data), Some(extra)) = (data.as_object_mut(), effects.extra.as_object()) {
            data.extend(extra.clone());
        }
        let event = Event::new(effects.event, data).caused_by(access);
        webhooks::emit(&txn, access.tenant_id, &[event])
            .await
            .map_err(failed)?;
        if let Some((subject, body)) = effects.email {
            self.email_customer(&txn, access.tenant_id, booking, &subject, &body)
                .await?;
        }
        txn.commit().await.map_err(failed)
    }

    /// Queues the customer's email when the tenant can send any (its own provider or the
    /// platform's relay). An address the mailer would refuse is logged, not fatal: the booking
    /// stands.
    async fn email_customer(
        &self,
        txn: &DatabaseTransaction,
        tenant: Uuid,
        booking: &Booking,
        subject: &str,
        body: &str,
    ) -> Result<(), CalendarError> {
        let can_send = self.platform_email
            || tenant_email_settings::Entity::find_by_id(tenant)
                .count(txn)
                .await
                .map_err(failed)?
                > 0;
        if !can_send {
            return Ok(());
        }
        match OutgoingEmail::new(&booking.email, subject, body) {
            Ok(message) => {
                email::enqueue(txn, tenant, &message, booking.conversation_id)
                    .await
                    .map_err(failed)?;
            }
            Err(e) => {
                tracing::warn!(booking = %booking.id, error = %e, "the booking email was not queued");
            }
        }
        Ok(())
    }
}

/// "Tuesday 8 December 2026, 10:00–10:30 (Europe/Berlin)"
pub fn when(booking: &Booking) -> String {
    let end = if booking.local_end.date() == booking.local_start.date() {
        booking.local_end.format("%H:%M").to_string()
    } else {
        booking.local_end.format("%A %-d %B %Y, %H:%M").to_string()
    };
    format!(
        "{}–{end} ({})",
        booking.local_start.format("%A %-d %B %Y, %H:%M"),
        booking.timezone
    )
}

fn confirmation(company: &str, b: &Booking) -> (String, String) {
    let note = if b.note.trim().is_empty() {
        String::new()
    } else {
        format!("\nNote: {}\n", b.note.trim())
    };
    (
        format!("Your appointment with {company} is booked"),
        format!(
            "Hello {},\n\nyour appointment with {company} is booked for {}.\n{note}\n\
             If you need to move or cancel it, please contact {company}.\n\n\
             Booking reference: {}\n",
            b.name,
            when(b),
            b.id
        ),
    )
}

fn moved(company: &str, before: &Booking, b: &Booking) -> (String, String) {
    (
        format!("Your appointment with {company} has moved"),
        format!(
            "Hello {},\n\nyour appointment with {company} has moved from {} to {}.\n\n\
             If the new time does not suit you, please contact {company}.\n\n\
             Booking reference: {}\n",
            b.name,
            when(before),
            when(b),
            b.id
        ),
    )
}

fn cancellation(company: &str, b: &Booking) -> (String, String) {
    let reason = b
        .cancel_reason
        .as_deref()
        .filter(|r| !r.trim().is_empty())
        .map(|r| format!("\nReason: {}\n", r.trim()))
        .unwrap_or_default();
    (
        format!("Your appointment with {company} is cancelled"),
        format!(
            "Hello {},\n\nyour appointment with {company} on {} is cancelled.\n{reason}\n\
             To book another time, please contact {company}.\n\n\
             Booking reference: {}\n",
            b.name,
            when(b),
            b.id
        ),
    )
}

#[async_trait::async_trait]
impl Calendar for BuiltInCalendar {
    async fn busy(
        &self,
        tenant: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>, CalendarError> {
        Ok(overlapping(tenant, from, to)
            .order_by_asc(bookings::Column::StartsAt)
            .all(&self.db)
            .await
            .map_err(failed)?
            .into_iter()
            .map(|b| (b.starts_at, b.ends_at))
            .collect())
    }

    async fn of_conversation(
        &self,
        tenant: Uuid,
        conversation: Uuid,
    ) -> Result<Vec<Booking>, CalendarError> {
        let rows = bookings::Entity::find()
            .filter(bookings::Column::TenantId.eq(tenant))
            .filter(bookings::Column::ConversationId.eq(conversation))
            .filter(bookings::Column::Status.eq(BookingStatus::Confirmed.as_str()))
            .filter(bookings::Column::EndsAt.gt(Utc::now()))
            .order_by_asc(bookings::Column::StartsAt)
            .all(&self.db)
            .await
            .map_err(failed)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let tz = tenants::Entity::find_by_id(tenant)
            .one(&self.db)
            .await
            .map_err(failed)?
            .map_or(chrono_tz::UTC, |t| zone(&t.timezone));
        Ok(rows.into_iter().map(|r| to_booking(r, tz)).collect())
    }

    async fn book(&self, access: &Access, booking: NewBooking) -> Result<Booking, CalendarError> {
        let placement = Placement {
            id: booking.id.unwrap_or_else(Uuid::now_v7),
            ..Placement::built_in()
        };
        self.record_booking(access, booking, placement).await
    }

    async fn reschedule(
        &self,
        access: &Access,
        id: Uuid,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        notify: bool,
    ) -> Result<Booking, CalendarError> {
        self.record_move(access, id, (starts_at, ends_at), notify, true)
            .await
    }

    async fn cancel(
        &self,
        access: &Access,
        id: Uuid,
        reason: &str,
        notify: bool,
    ) -> Result<Booking, CalendarError> {
        self.record_cancel(access, id, reason, notify, json!({}))
            .await
    }
}

/// The changes themselves, for this calendar and for the providers that record here what
/// they did in theirs.
impl BuiltInCalendar {
    /// A confirmed booking of the tenant (cancelled: `Cancelled`).
    pub async fn confirmed_row(
        &self,
        tenant: Uuid,
        id: Uuid,
    ) -> Result<bookings::Model, CalendarError> {
        confirmed(&self.db, tenant, id).await
    }

    /// Records a new booking where `placement` says, unless it overlaps a confirmed one.
    pub async fn record_booking(
        &self,
        access: &Access,
        booking: NewBooking,
        placement: Placement,
    ) -> Result<Booking, CalendarError> {
        let tenant = access.tenant_id;
        let txn = begin(&self.db, tenant).await?;
        let id = placement.id;
        let row = bookings::ActiveModel {
            id: Set(id),
            tenant_id: Set(tenant),
            conversation_id: Set(booking.conversation_id),
            starts_at: Set(booking.starts_at),
            ends_at: Set(booking.ends_at),
            name: Set(booking.name.clone()),
            email: Set(booking.email.clone()),
            note: Set(booking.note.clone()),
            created_at: Set(Utc::now()),
            status: Set(BookingStatus::Confirmed.as_str().into()),
            source: Set(booking.source.as_str().into()),
            updated_at: Set(None),
            cancelled_at: Set(None),
            cancel_reason: Set(None),
            provider: Set(placement.provider.as_str().into()),
            external_id: Set(placement.external_id),
        }
        .insert(&txn)
        .await
        .map_err(failed)?;
        if clashes(&txn, tenant, booking.starts_at, booking.ends_at, id).await? {
            txn.rollback().await.map_err(failed)?;
            return Err(CalendarError::Conflict);
        }
        let (company, tz) = tenant_of(&txn, tenant).await?;
        let saved = to_booking(row, tz);
        let effects = Effects {
            action: "booking.create",
            event: WebhookEvent::BookingCreated,
            extra: json!({}),
            email: booking.notify.then(|| confirmation(&company, &saved)),
        };
        self.finish(txn, access, &saved, effects).await?;
        Ok(saved)
    }

    /// Moves a confirmed booking to `to`; `check`: unless it overlaps another (a move made in
    /// the provider's calendar is followed as it is).
    pub async fn record_move(
        &self,
        access: &Access,
        id: Uuid,
        to: (DateTime<Utc>, DateTime<Utc>),
        notify: bool,
        check: bool,
    ) -> Result<Booking, CalendarError> {
        let (starts_at, ends_at) = to;
        let tenant = access.tenant_id;
        let txn = begin(&self.db, tenant).await?;
        let row = confirmed(&txn, tenant, id).await?;
        let (company, tz) = tenant_of(&txn, tenant).await?;
        let before = to_booking(row.clone(), tz);
        let mut active = row.into_active_model();
        active.starts_at = Set(starts_at);
        active.ends_at = Set(ends_at);
        active.updated_at = Set(Some(Utc::now()));
        let row = active.update(&txn).await.map_err(failed)?;
        if check && clashes(&txn, tenant, starts_at, ends_at, id).await? {
            txn.rollback().await.map_err(failed)?;
            return Err(CalendarError::Conflict);
        }
        let saved = to_booking(row, tz);
        let effects = Effects {
            action: "booking.reschedule",
            event: WebhookEvent::BookingRescheduled,
            extra: json!({ "previous": {
                "starts_at": before.starts_at,
                "ends_at": before.ends_at,
            }}),
            email: notify.then(|| moved(&company, &before, &saved)),
        };
        self.finish(txn, access, &saved, effects).await?;
        Ok(saved)
    }

    /// Cancels a confirmed booking; `extra` goes into its audit entry and webhook event.
    pub async fn record_cancel(
        &self,
        access: &Access,
        id: Uuid,
        reason: &str,
        notify: bool,
        extra: serde_json::Value,
    ) -> Result<Booking, CalendarError> {
        let tenant = access.tenant_id;
        let txn = begin(&self.db, tenant).await?;
        let row = confirmed(&txn, tenant, id).await?;
        let (company, tz) = tenant_of(&txn, tenant).await?;
        let now = Utc::now();
        let reason = reason.trim();
        let mut active = row.into_active_model();
        active.status = Set(BookingStatus::Cancelled.as_str().into());
        active.updated_at = Set(Some(now));
        active.cancelled_at = Set(Some(now));
        active.cancel_reason = Set((!reason.is_empty()).then(|| reason.to_string()));
        let row = active.update(&txn).await.map_err(failed)?;
        let saved = to_booking(row, tz);
        let effects = Effects {
            action: "booking.cancel",
            event: WebhookEvent::BookingCancelled,
            extra,
            email: notify.then(|| cancellation(&company, &saved)),
        };
        self.finish(txn, access, &saved, effects).await?;
        Ok(saved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Booking {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let start = local_to_utc(
            tz,
            NaiveDateTime::parse_from_str("2026-12-08 10:00", "%Y-%m-%d %H:%M").unwrap(),
        )
        .unwrap();
        to_booking(
            bookings::Model {
                id: Uuid::nil(),
                tenant_id: Uuid::nil(),
                conversation_id: None,
                starts_at: start,
                ends_at: start + chrono::Duration::minutes(30),
                name: "Ada".into(),
                email: "ada@example.com".into(),
                note: String::new(),
                created_at: start,
                status: "confirmed".into(),
                source: "console".into(),
                updated_at: None,
                cancelled_at: None,
                cancel_reason: Some("  ".into()),
                provider: "built_in".into(),
                external_id: None,
            },
            tz,
        )
    }

    #[test]
    fn emails_give_the_local_time_and_zone() {
        let b = sample();
        assert_eq!(b.starts_at.to_rfc3339(), "2026-12-08T09:00:00+00:00");
        assert_eq!(
            when(&b),
            "Tuesday 8 December 2026, 10:00–10:30 (Europe/Berlin)"
        );
        let (subject, body) = cancellation("Acme", &b);
        assert_eq!(subject, "Your appointment with Acme is cancelled");
        assert!(body.contains("on Tuesday 8 December 2026, 10:00–10:30 (Europe/Berlin)"));
        // A blank reason says nothing.
        assert!(!body.contains("Reason"));
    }

    #[test]
    fn a_local_time_skipped_by_the_clocks_does_not_exist() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let gap = NaiveDateTime::parse_from_str("2026-03-29 02:30", "%Y-%m-%d %H:%M").unwrap();
        assert_eq!(local_to_utc(tz, gap), None);
        // When they go back, the earlier of the two instants.
        let twice = NaiveDateTime::parse_from_str("2026-10-25 02:30", "%Y-%m-%d %H:%M").unwrap();
        assert_eq!(
            local_to_utc(tz, twice).unwrap().to_rfc3339(),
            "2026-10-25T00:30:00+00:00"
        );
    }
}
