//! Integration tests: each spawns the real application on port 0 with its own database, once
//! on the embedded SQLite default and once on the PostgreSQL at 127.0.0.1:5432.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake_smtp;
mod helpers;
mod hostile;

mod agents;
mod api;
mod attacks;
mod bookings;
mod chatwoot;
mod cli;
mod console;
mod conversations;
mod email;
mod email_providers;
mod google;
mod invitations;
mod isolation;
mod jobs;
mod knowledge;
mod limits;
mod llm_settings;
mod outbound;
mod platform;
mod scale;
mod webhooks;
mod widgets;
mod workflows;
