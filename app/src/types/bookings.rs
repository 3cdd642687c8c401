//! Appointments: what the scheduling agent booked and what the business booked, moved or
//! cancelled itself (console Bookings page and `/api/v1/bookings`). Times a person types are
//! local to the tenant's time zone (Settings), as the agents' are.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::validate as v;

#[cfg(feature = "ssr")]
use utoipa::ToSchema;

string_enum! {
    /// Whether the appointment stands.
    BookingStatus {
        /// Booked; its time is taken.
        Confirmed = "confirmed",
        /// Cancelled; its time is free again. Kept for the record.
        Cancelled = "cancelled",
    }
}

string_enum! {
    /// Who made the booking.
    BookingSource {
        /// A scheduling agent, in a conversation.
        Agent = "agent",
        /// A person in the console.
        Console = "console",
        /// A system through the REST API.
        Api = "api",
        /// A step of one of the tenant's workflows.
        Workflow = "workflow",
    }
}

string_enum! {
    /// The calendar that holds the booking.
    CalendarProvider {
        /// The platform's own calendar.
        BuiltIn = "built_in",
        /// The tenant's Google Calendar (an event with the customer as attendee).
        Google = "google",
    }
}

/// The shortest and longest appointment, in minutes.
pub const BOOKING_MINUTES: (u32, u32) = (5, 720);

/// An appointment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct Booking {
    pub id: Uuid,
    pub status: BookingStatus,
    pub source: BookingSource,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// The tenant's time zone, in which `local_start` and `local_end` are given.
    pub timezone: String,
    #[cfg_attr(feature = "ssr", schema(value_type = String, example = "2026-12-08T10:00:00"))]
    pub local_start: NaiveDateTime,
    #[cfg_attr(feature = "ssr", schema(value_type = String, example = "2026-12-08T10:30:00"))]
    pub local_end: NaiveDateTime,
    /// The customer.
    pub name: String,
    pub email: String,
    pub note: String,
    /// The conversation in which an agent made it.
    pub conversation_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
    /// The calendar that holds it.
    pub provider: CalendarProvider,
}

/// Filters and cursor for listing bookings, by start time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "ssr", into_params(parameter_in = Query))]
pub struct BookingQuery {
    /// Bookings starting on or after this day (tenant's time zone).
    #[garde(skip)]
    #[cfg_attr(feature = "ssr", param(value_type = Option<String>, example = "2026-12-07"))]
    pub from: Option<NaiveDate>,
    /// Bookings starting on or before this day (tenant's time zone).
    #[garde(skip)]
    #[cfg_attr(feature = "ssr", param(value_type = Option<String>, example = "2026-12-13"))]
    pub to: Option<NaiveDate>,
    /// confirmed or cancelled.
    #[garde(skip)]
    pub status: Option<BookingStatus>,
    /// Part of the customer's name or email address (at most 200 characters).
    #[garde(length(max = 200))]
    pub q: Option<String>,
    /// The bookings one conversation made.
    #[garde(skip)]
    pub conversation_id: Option<Uuid>,
    /// `next_cursor` of the previous page.
    #[garde(skip)]
    pub cursor: Option<String>,
    /// Page size, 1–500 (default 100).
    #[garde(range(min = 1, max = 500))]
    pub limit: Option<u32>,
}

/// A booking a person or a system makes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct CreateBooking {
    /// When it starts, in the tenant's time zone: `2026-12-08T10:00`. Not in the past.
    #[garde(skip)]
    #[serde(with = "local_time")]
    #[cfg_attr(feature = "ssr", schema(value_type = String, example = "2026-12-08T10:00"))]
    pub start: NaiveDateTime,
    /// 5–720 minutes.
    #[garde(range(min = BOOKING_MINUTES.0, max = BOOKING_MINUTES.1))]
    pub duration_minutes: u32,
    /// The customer's name, at most 200 characters.
    #[garde(custom(v::name::<200>))]
    pub name: String,
    /// Where the confirmation goes.
    #[garde(custom(v::email))]
    pub email: String,
    /// At most 2,000 characters; the customer sees it in the confirmation.
    #[garde(length(max = 2000))]
    #[serde(default)]
    pub note: String,
    /// Email the customer a confirmation (when the tenant can send email). Default true.
    #[garde(skip)]
    #[serde(default = "yes")]
    pub notify: bool,
}

/// A new time for a booking.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct RescheduleBooking {
    /// The new start, in the tenant's time zone. Not in the past.
    #[garde(skip)]
    #[serde(with = "local_time")]
    #[cfg_attr(feature = "ssr", schema(value_type = String, example = "2026-12-09T15:00"))]
    pub start: NaiveDateTime,
    /// 5–720 minutes; the booking's current length when left out.
    #[garde(inner(range(min = BOOKING_MINUTES.0, max = BOOKING_MINUTES.1)))]
    #[serde(default)]
    pub duration_minutes: Option<u32>,
    /// Email the customer the new time. Default true.
    #[garde(skip)]
    #[serde(default = "yes")]
    pub notify: bool,
}

/// Cancelling a booking.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct CancelBooking {
    /// Why, at most 500 characters; the customer reads it in the email.
    #[garde(length(max = 500))]
    #[serde(default)]
    pub reason: String,
    /// Email the customer that it is cancelled. Default true.
    #[garde(skip)]
    #[serde(default = "yes")]
    pub notify: bool,
}

fn yes() -> bool {
    true
}

/// A local time as people write it: `2026-12-08T10:00`, seconds optional, `T` or a space.
mod local_time {
    use chrono::NaiveDateTime;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&at.format("%Y-%m-%dT%H:%M:%S"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDateTime, D::Error> {
        let text = String::deserialize(d)?;
        let text = text.trim().replacen(' ', "T", 1);
        ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S%.f"]
            .iter()
            .find_map(|format| NaiveDateTime::parse_from_str(&text, format).ok())
            .ok_or_else(|| D::Error::custom("must be a local time like 2026-12-08T10:00"))
    }
}
