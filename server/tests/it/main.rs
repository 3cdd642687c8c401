//! Integration tests: each spawns the real application on port 0 with its own database, once
//! on the embedded SQLite default and once on the PostgreSQL at 127.0.0.1:5432.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod api;
mod cli;
mod console;
mod conversations;
mod isolation;
mod jobs;
mod knowledge;
mod limits;
mod outbound;
mod platform;
mod scale;
