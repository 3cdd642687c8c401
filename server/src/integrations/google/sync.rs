//! `google.sync`, every 15 minutes per connected tenant (a tenant schedule, `google-sync`, made
//! when the tenant connects and removed when it disconnects): the events changed in the
//! tenant's Google Calendar since the last sync (Google's incremental sync tokens; a full
//! listing the first time and whenever Google forgets the token) brought into the bookings.
//!
//! - An event of a confirmed booking cancelled or deleted in the calendar cancels the booking;
//!   one moved there moves it (without the overlap check: the calendar is where the business
//!   decided). The customer is told, as for any change. When the platform changed the booking
//!   later than Google changed the event (while the connection needed reconnecting), the
//!   event is put back in line instead.
//! - An event that still stands for a cancelled booking, or that carries the mark of a booking
//!   the platform never recorded (a compensation that failed) and is older than ten minutes,
//!   is deleted.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use uuid::Uuid;

use app::types::{BookingStatus, CalendarProvider};

use super::api::{ApiError, Event, GoogleApi};
use crate::integrations::calendar::BuiltInCalendar;
use crate::jobs::{schedule, JobContext, JobHandler, NewJob};
use crate::store::{bookings, google_connections, job_schedules, tenants};
use crate::tenancy::system_access;

pub const KIND: &str = "google.sync";
/// The tenant schedule's name.
pub const SCHEDULE: &str = "google-sync";
const EVERY_15_MINUTES: &str = "*/15 * * * *";
/// A sync reads at most this many pages (250 events each); a calendar with more events than
/// that gets no sync token and is listed in full each time.
const MAX_PAGES: usize = 200;
/// An event marked as ours with no booking is a failed compensation only when it is older
/// than this (younger, its booking may still be being recorded).
const ORPHAN_AGE: chrono::Duration = chrono::Duration::minutes(10);

/// Schedules the tenant's sync and queues one now (which takes the first sync token).
pub async fn start(db: &impl ConnectionTrait, tenant: Uuid) -> Result<(), DbErr> {
    let timezone = tenants::Entity::find_by_id(tenant)
        .one(db)
        .await?
        .map_or(chrono_tz::UTC, |t| {
            crate::integrations::calendar::zone(&t.timezone)
        });
    schedule::ensure(
        db,
        Some(tenant),
        SCHEDULE,
        KIND,
        EVERY_15_MINUTES,
        timezone.name(),
        serde_json::json!({}),
    )
    .await?;
    crate::jobs::enqueue(db, NewJob::new(Some(tenant), KIND, serde_json::json!({}))).await?;
    Ok(())
}

/// Removes the tenant's schedule.
pub async fn stop(db: &impl ConnectionTrait, tenant: Uuid) -> Result<(), DbErr> {
    job_schedules::Entity::delete_many()
        .filter(job_schedules::Column::TenantId.eq(tenant))
        .filter(job_schedules::Column::Name.eq(SCHEDULE))
        .exec(db)
        .await?;
    Ok(())
}

/// What one sync did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Synced {
    pub events: usize,
    pub moved: usize,
    pub cancelled: usize,
    pub deleted: usize,
    pub restored: usize,
}

/// The job; without the platform's Google client (`GOOGLE_CLIENT_ID` removed after tenants
/// connected) it does nothing.
#[derive(Clone)]
pub struct GoogleSync {
    db: DatabaseConnection,
    api: Option<GoogleApi>,
    built_in: Arc<BuiltInCalendar>,
}

impl GoogleSync {
    pub fn new(
        db: DatabaseConnection,
        api: Option<GoogleApi>,
        built_in: Arc<BuiltInCalendar>,
    ) -> Self {
        GoogleSync { db, api, built_in }
    }

    /// Syncs the tenant's calendar; nothing when it is not connected.
    pub async fn sync(&self, tenant: Uuid) -> anyhow::Result<Synced> {
        let Some(api) = &self.api else {
            return Ok(Synced::default());
        };
        let row = match api.connection(tenant).await {
            Ok(row) => row,
            Err(ApiError::NotConnected | ApiError::NeedsReconnect) => return Ok(Synced::default()),
            Err(e) => return Err(e.into()),
        };
        let calendar = row.calendar_id.clone();
        let mut token = row.sync_token.clone();
        let mut page: Option<String> = None;
        let mut synced = Synced::default();
        let mut pages = 0;
        let mut restarted = false;
        let next = loop {
            let Some(changes) = api
                .changes(tenant, &calendar, token.as_deref(), page.as_deref())
                .await?
            else {
                anyhow::ensure!(!restarted, "Google refused a fresh listing's sync token");
                tracing::info!(%tenant, "Google forgot the sync token: listing every event");
                (token, page, restarted) = (None, None, true);
                continue;
            };
            for event in &changes.items {
                synced.events += 1;
                self.apply(api, tenant, &calendar, event, &mut synced)
                    .await?;
            }
            pages += 1;
            match (changes.next_page, changes.next_sync) {
                (Some(next), _) if pages < MAX_PAGES => page = Some(next),
                (_, next) => break next,
            }
        };
        let mut update = google_connections::Entity::update_many()
            .col_expr(
                google_connections::Column::SyncedAt,
                Expr::value(Utc::now()),
            )
            .filter(google_connections::Column::Id.eq(row.id));
        if let Some(next) = next {
            update = update.col_expr(google_connections::Column::SyncToken, Expr::value(next));
        }
        update.exec(&self.db).await?;
        Ok(synced)
    }

    async fn apply(
        &self,
        api: &GoogleApi,
        tenant: Uuid,
        calendar: &str,
        event: &Event,
        synced: &mut Synced,
    ) -> anyhow::Result<()> {
        let booking = bookings::Entity::find()
            .filter(bookings::Column::TenantId.eq(tenant))
            .filter(bookings::Column::Provider.eq(CalendarProvider::Google.as_str()))
            .filter(bookings::Column::ExternalId.eq(event.id.as_str()))
            .one(&self.db)
            .await?;
        let gone = event.status == "cancelled";
        let Some(booking) = booking else {
            let orphan = event.booking().is_some_and(|id| {
                id.get_timestamp()
                    .and_then(|t| {
                        let (secs, nanos) = t.to_unix();
                        DateTime::from_timestamp(secs as i64, nanos)
                    })
                    .is_some_and(|made| made < Utc::now() - ORPHAN_AGE)
            });
            if orphan && !gone {
                api.delete(tenant, calendar, &event.id).await?;
                synced.deleted += 1;
            }
            return Ok(());
        };
        let access = system_access(tenant, SCHEDULE);
        if booking.status != BookingStatus::Confirmed.as_str() {
            if !gone {
                api.delete(tenant, calendar, &event.id).await?;
                synced.deleted += 1;
            }
            return Ok(());
        }
        if gone {
            self.built_in
                .record_cancel(
                    &access,
                    booking.id,
                    "cancelled in Google Calendar",
                    true,
                    serde_json::json!({ "google": "cancelled in the calendar" }),
                )
                .await?;
            synced.cancelled += 1;
            return Ok(());
        }
        let Some(interval) = event.interval() else {
            return Ok(()); // an all-day event: nothing the booking can follow
        };
        if interval == (booking.starts_at, booking.ends_at) {
            return Ok(());
        }
        let ours = booking.updated_at.unwrap_or(booking.created_at);
        if event.updated.is_some_and(|theirs| theirs < ours) {
            api.patch(
                tenant,
                calendar,
                &event.id,
                (booking.starts_at, booking.ends_at),
            )
            .await?;
            synced.restored += 1;
        } else {
            self.built_in
                .record_move(&access, booking.id, interval, true, false)
                .await?;
            synced.moved += 1;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl JobHandler for GoogleSync {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn concurrency(&self) -> usize {
        2
    }

    async fn run(&self, ctx: &mut JobContext) -> anyhow::Result<()> {
        let tenant = ctx
            .tenant_id()
            .ok_or_else(|| crate::jobs::Permanent("a Google sync needs a tenant".into()))?;
        let synced = self.sync(tenant).await?;
        tracing::info!(%tenant, ?synced, "Google Calendar synced");
        Ok(())
    }
}
