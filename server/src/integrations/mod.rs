//! External systems the platform talks to, each behind a trait with a fake for tests.
//!
//! - [`calendar`]: where appointments are booked; [`bookings`] the tenant's view of them.
//! - [`chatwoot`]: a Chatwoot inbox as a channel (agent bot webhooks in, replies out).
//! - [`email`]: outgoing mail over SMTP (the agents' `send_email` tool, delivered by a job).
//! - [`email_providers`]: tenants' own SendGrid or Mailgun accounts, over HTTP.
//! - [`google`]: tenants' Google Calendar, connected over OAuth.
//! - [`webhooks`]: signed POSTs of the tenant's events to the endpoints it subscribed.

pub mod bookings;
pub mod calendar;
pub mod chatwoot;
pub mod email;
pub mod email_providers;
pub mod google;
pub mod webhooks;
