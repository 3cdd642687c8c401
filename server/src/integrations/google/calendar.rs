//! The tenant's calendar, as the agents and the Bookings page use it: the built-in one, or
//! its Google Calendar when connected.
//!
//! With Google, availability is Google's free/busy (everything in the calendar, not only what
//! the platform booked) together with the platform's bookings. A booking is made as a saga:
//! the time is checked, the event is created at Google under an id derived from the booking
//! (a retry creates nothing twice), then the booking is recorded here as the built-in calendar
//! records it (audit, webhook event, email, in one transaction); if recording fails (another
//! conversation took the time a moment before), the event is deleted again. Moving and
//! cancelling change the event first, then the record. An event the compensation could not
//! delete carries the booking's id, so the next sync finds and deletes it.
//!
//! While the connection needs reconnecting, the tenant's choice applies: book in the built-in
//! calendar, or refuse with a message the agent passes on. Bookings held by Google are then
//! changed here only, and the sync brings Google in line once it is connected again.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde_json::json;
use uuid::Uuid;

use app::services::Access;
use app::types::{Booking, CalendarFallback, CalendarProvider};

use super::api::{ApiError, EventDraft, GoogleApi};
use crate::integrations::calendar::{
    BuiltInCalendar, Calendar, CalendarError, NewBooking, Placement,
};
use crate::store::google_connections;

/// How the tenant's calendar is reached now.
enum Route {
    BuiltIn,
    /// Google, booking in this calendar.
    Google(String),
    Refuse,
}

pub struct TenantCalendar {
    db: DatabaseConnection,
    built_in: Arc<BuiltInCalendar>,
    google: Option<GoogleApi>,
}

/// What the agent is told (and passes on), and what the API answers, when the tenant chose to
/// refuse bookings while Google Calendar needs reconnecting.
const REFUSED: &str = "No booking can be made right now: the business's calendar needs \
                       reconnecting. A person can help instead.";

/// What a cancellation records when Google could not be told (the sync deletes the event).
const NOT_REACHED: &str =
    "not reached: the event is deleted when Google Calendar is connected again";

/// The event's id at Google for a booking: its 32 hex digits (Google takes `[a-v0-9]{5,1024}`).
pub fn event_id(booking: Uuid) -> String {
    booking.simple().to_string()
}

fn unavailable(e: ApiError) -> CalendarError {
    match e {
        ApiError::Refused { .. } => CalendarError::Failed(e.to_string()),
        e => CalendarError::Unavailable(format!("{e}; try again shortly")),
    }
}

/// `busy` without the interval `own` (a booking being moved does not block itself).
fn without(
    busy: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    own: (DateTime<Utc>, DateTime<Utc>),
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut rest = Vec::with_capacity(busy.len() + 1);
    for (start, end) in busy {
        if end <= own.0 || start >= own.1 {
            rest.push((start, end));
            continue;
        }
        if start < own.0 {
            rest.push((start, own.0));
        }
        if end > own.1 {
            rest.push((own.1, end));
        }
    }
    rest
}

fn overlaps(
    busy: &[(DateTime<Utc>, DateTime<Utc>)],
    (from, to): (DateTime<Utc>, DateTime<Utc>),
) -> bool {
    busy.iter().any(|(s, e)| *s < to && *e > from)
}

impl TenantCalendar {
    pub fn new(
        db: DatabaseConnection,
        built_in: Arc<BuiltInCalendar>,
        google: Option<GoogleApi>,
    ) -> Self {
        TenantCalendar {
            db,
            built_in,
            google,
        }
    }

    /// Google, when it is connected (and the platform has a Google client); otherwise the
    /// tenant's fallback.
    async fn route(&self, tenant: Uuid) -> Result<Route, CalendarError> {
        let Some(row) = google_connections::Entity::find()
            .filter(google_connections::Column::TenantId.eq(tenant))
            .one(&self.db)
            .await
            .map_err(|e| CalendarError::Failed(e.to_string()))?
        else {
            return Ok(Route::BuiltIn);
        };
        if self.google.is_some() && row.status == app::types::GoogleStatus::Connected.as_str() {
            return Ok(Route::Google(row.calendar_id));
        }
        Ok(fallback(&row.fallback))
    }

    fn api(&self) -> Result<&GoogleApi, CalendarError> {
        self.google
            .as_ref()
            .ok_or_else(|| CalendarError::Unavailable(REFUSED.into()))
    }

    /// The fallback after Google refused the grant during this very call.
    async fn after(&self, tenant: Uuid, e: ApiError) -> Result<Route, CalendarError> {
        match e {
            ApiError::NeedsReconnect | ApiError::NotConnected => self.route(tenant).await,
            e => Err(unavailable(e)),
        }
    }

    /// Google's busy intervals and the platform's bookings in `[from, to)`.
    async fn google_busy(
        &self,
        tenant: Uuid,
        calendar: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>, ApiError> {
        let mut busy = self
            .api()
            .map_err(|_| ApiError::NotConnected)?
            .free_busy(tenant, calendar, from, to)
            .await?;
        busy.extend(
            self.built_in
                .busy(tenant, from, to)
                .await
                .map_err(|e| ApiError::Unavailable(e.to_string()))?,
        );
        busy.sort();
        Ok(busy)
    }

    async fn book_at_google(
        &self,
        access: &Access,
        calendar: &str,
        booking: NewBooking,
    ) -> Result<Booking, Failure> {
        let tenant = access.tenant_id;
        let wanted = (booking.starts_at, booking.ends_at);
        let busy = self
            .google_busy(tenant, calendar, wanted.0, wanted.1)
            .await?;
        if overlaps(&busy, wanted) {
            return Err(Failure::Calendar(CalendarError::Conflict));
        }
        let id = booking.id.unwrap_or_else(Uuid::now_v7);
        let external = event_id(id);
        let note = booking.note.trim();
        let draft = EventDraft {
            id: &external,
            booking: id,
            summary: format!("Appointment: {}", booking.name),
            description: format!(
                "{}{}Booking reference: {id}",
                note,
                if note.is_empty() { "" } else { "\n\n" }
            ),
            starts_at: wanted.0,
            ends_at: wanted.1,
            attendee: (!booking.email.trim().is_empty())
                .then_some((booking.email.trim(), booking.name.as_str())),
        };
        let api = self.api()?;
        api.insert(tenant, calendar, &draft).await?;
        let placement = Placement {
            id,
            provider: CalendarProvider::Google,
            external_id: Some(external.clone()),
        };
        match self
            .built_in
            .record_booking(access, booking, placement)
            .await
        {
            Ok(saved) => Ok(saved),
            Err(e) => {
                // Compensation; an event left behind is deleted by the next sync.
                if let Err(undo) = api.delete(tenant, calendar, &external).await {
                    tracing::warn!(%tenant, event = %external, error = %undo, "an event the platform did not book is left in Google Calendar until the next sync");
                }
                Err(Failure::Calendar(e))
            }
        }
    }
}

/// Why booking at Google did not work: Google failed, or the calendar said no.
enum Failure {
    Google(ApiError),
    Calendar(CalendarError),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Google(e)
    }
}

impl From<CalendarError> for Failure {
    fn from(e: CalendarError) -> Self {
        Failure::Calendar(e)
    }
}

fn fallback(choice: &str) -> Route {
    match CalendarFallback::parse(choice) {
        Some(CalendarFallback::Refuse) => Route::Refuse,
        _ => Route::BuiltIn,
    }
}

#[async_trait::async_trait]
impl Calendar for TenantCalendar {
    async fn busy(
        &self,
        tenant: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>, CalendarError> {
        let route = match self.route(tenant).await? {
            Route::Google(calendar) => match self.google_busy(tenant, &calendar, from, to).await {
                Ok(busy) => return Ok(busy),
                Err(e) => self.after(tenant, e).await?,
            },
            route => route,
        };
        match route {
            Route::Refuse => Err(CalendarError::Unavailable(REFUSED.into())),
            _ => self.built_in.busy(tenant, from, to).await,
        }
    }

    async fn of_conversation(
        &self,
        tenant: Uuid,
        conversation: Uuid,
    ) -> Result<Vec<Booking>, CalendarError> {
        self.built_in.of_conversation(tenant, conversation).await
    }

    async fn book(&self, access: &Access, booking: NewBooking) -> Result<Booking, CalendarError> {
        let route = match self.route(access.tenant_id).await? {
            Route::Google(calendar) => {
                match self
                    .book_at_google(access, &calendar, booking.clone())
                    .await
                {
                    Ok(saved) => return Ok(saved),
                    Err(Failure::Calendar(e)) => return Err(e),
                    Err(Failure::Google(e)) => self.after(access.tenant_id, e).await?,
                }
            }
            route => route,
        };
        match route {
            Route::Refuse => Err(CalendarError::Unavailable(REFUSED.into())),
            _ => self.built_in.book(access, booking).await,
        }
    }

    async fn reschedule(
        &self,
        access: &Access,
        id: Uuid,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        notify: bool,
    ) -> Result<Booking, CalendarError> {
        let tenant = access.tenant_id;
        let row = self.built_in.confirmed_row(tenant, id).await?;
        let Route::Google(calendar) = self.route(tenant).await? else {
            return self
                .built_in
                .reschedule(access, id, starts_at, ends_at, notify)
                .await;
        };
        let api = self.api()?;
        let own = (row.starts_at, row.ends_at);
        let wanted = (starts_at, ends_at);
        let busy = match self
            .google_busy(tenant, &calendar, starts_at, ends_at)
            .await
        {
            Ok(busy) => busy,
            // Found out just now: moved here only, as while it needs reconnecting.
            Err(ApiError::NeedsReconnect | ApiError::NotConnected) => {
                return self
                    .built_in
                    .reschedule(access, id, starts_at, ends_at, notify)
                    .await
            }
            Err(e) => return Err(unavailable(e)),
        };
        // Google's free/busy includes this booking's own event; the platform's does too.
        let held = row.provider == CalendarProvider::Google.as_str();
        if overlaps(&without(busy, own), wanted) {
            return Err(CalendarError::Conflict);
        }
        let event = row.external_id.as_deref().filter(|_| held);
        if let Some(event) = event {
            api.patch(tenant, &calendar, event, wanted)
                .await
                .map_err(unavailable)?;
        }
        match self
            .built_in
            .record_move(access, id, wanted, notify, true)
            .await
        {
            Ok(saved) => Ok(saved),
            Err(e) => {
                if let Some(event) = event {
                    if let Err(undo) = api.patch(tenant, &calendar, event, own).await {
                        tracing::warn!(%tenant, %event, error = %undo, "an event is left at a time its booking did not move to; move it back in Google Calendar");
                    }
                }
                Err(e)
            }
        }
    }

    async fn cancel(
        &self,
        access: &Access,
        id: Uuid,
        reason: &str,
        notify: bool,
    ) -> Result<Booking, CalendarError> {
        let tenant = access.tenant_id;
        let row = self.built_in.confirmed_row(tenant, id).await?;
        let event = row
            .external_id
            .filter(|_| row.provider == CalendarProvider::Google.as_str());
        let Some(event) = event else {
            return self.built_in.cancel(access, id, reason, notify).await;
        };
        let extra = match self.route(tenant).await? {
            Route::Google(calendar) => match self.api()?.delete(tenant, &calendar, &event).await {
                Ok(()) => json!({ "google": "event deleted" }),
                Err(
                    e @ (ApiError::Refused { .. }
                    | ApiError::Unavailable(_)
                    | ApiError::CircuitOpen),
                ) => return Err(unavailable(e)),
                Err(ApiError::NotConnected | ApiError::NeedsReconnect) => {
                    json!({ "google": NOT_REACHED })
                }
            },
            _ => {
                json!({ "google": NOT_REACHED })
            }
        };
        self.built_in
            .record_cancel(access, id, reason, notify, extra)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).unwrap()
    }

    #[test]
    fn a_moved_booking_does_not_block_itself() {
        // A meeting 9:00–9:30 merged by free/busy with our own booking 9:30–10:00.
        let busy = vec![(at(0), at(60)), (at(120), at(150))];
        let rest = without(busy, (at(30), at(60)));
        assert_eq!(rest, vec![(at(0), at(30)), (at(120), at(150))]);
        assert!(!overlaps(&rest, (at(45), at(75))));
        assert!(overlaps(&rest, (at(20), at(40))));
        // A block inside our own interval vanishes; one around it is split.
        assert_eq!(
            without(vec![(at(0), at(90))], (at(30), at(60))),
            vec![(at(0), at(30)), (at(60), at(90))]
        );
        assert!(without(vec![(at(35), at(40))], (at(30), at(60))).is_empty());
        // Event ids are what Google accepts.
        let id = event_id(Uuid::now_v7());
        assert_eq!(id.len(), 32);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='v').contains(&c)));
    }
}
