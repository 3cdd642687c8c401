//! The durable job queue, on the SQL database (SQLite embedded, PostgreSQL at scale).
//!
//! - **Enqueue** with [`enqueue`] on any connection, including the caller's own transaction
//!   (outbox): a committed change never lacks its job, a rolled-back one never has it.
//! - **Idempotency**: a job with a key is unique per tenant and kind; enqueueing it again is a
//!   no-op (`INSERT … ON CONFLICT DO NOTHING` on `dedupe_key`).
//! - **Workers** ([`worker::Worker`]) claim due jobs with a lease (`locked_until`); a job whose
//!   worker died is taken over once the lease has passed. Completion is fenced by the lease
//!   owner and, for handlers that write, done in the handler's own transaction, so a job's
//!   effect is committed exactly once even when two workers ran it.
//! - **Retries** with exponential backoff and jitter up to the kind's `max_attempts`; then the
//!   job is **dead** with every attempt's error, until retried or discarded (console, REST).
//!   A handler returning [`Permanent`] makes it dead at once.
//! - **Schedules** ([`schedule`]): cron expressions in a time zone; each tick is enqueued once
//!   however many workers run.
//!
//! apalis 1.0 was evaluated first and not used: its SQL backends are built on sqlx 0.9 (sea-orm
//! 1.1 is on 0.8), so a job cannot be enqueued in our transaction; it keeps only the last
//! error, has no per-job retry/discard, no tenant filter, no progress, and its cron fires once
//! per process. See docs/architecture-notes.md.

pub mod bench;
pub mod handlers;
pub mod schedule;
pub mod service;
pub mod worker;

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QuerySelect};
use uuid::Uuid;

use app::types::{Job, JobAttemptError, JobState};

use crate::store::jobs;

pub use handlers::registry;
pub use worker::{JobContext, JobHandler, Permanent, Registry, Worker, WorkerConfig};

/// A job to enqueue.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub tenant_id: Option<Uuid>,
    pub kind: String,
    pub payload: serde_json::Value,
    /// Enqueueing the same key again (same tenant and kind) is a no-op.
    pub idempotency_key: Option<String>,
    pub max_attempts: u32,
    /// Not before this instant; now when absent.
    pub run_at: Option<DateTime<Utc>>,
}

impl NewJob {
    pub fn new(tenant_id: Option<Uuid>, kind: &str, payload: serde_json::Value) -> NewJob {
        NewJob {
            tenant_id,
            kind: kind.to_string(),
            payload,
            idempotency_key: None,
            max_attempts: 5,
            run_at: None,
        }
    }

    pub fn key(mut self, key: impl Into<String>) -> NewJob {
        self.idempotency_key = Some(key.into());
        self
    }

    pub fn max_attempts(mut self, n: u32) -> NewJob {
        self.max_attempts = n.max(1);
        self
    }
}

/// Enqueues `job` on `conn` (pass the caller's transaction for an outbox enqueue). Returns the
/// new job's id, or `None` when a job with the same idempotency key exists.
pub async fn enqueue(conn: &impl ConnectionTrait, job: NewJob) -> Result<Option<Uuid>, DbErr> {
    let now = Utc::now();
    let id = Uuid::now_v7();
    let dedupe_key = job.idempotency_key.as_ref().map(|k| {
        let tenant = job.tenant_id.map_or("-".to_string(), |t| t.to_string());
        format!("{tenant}:{}:{k}", job.kind)
    });
    let row = jobs::ActiveModel {
        id: Set(id),
        tenant_id: Set(job.tenant_id),
        kind: Set(job.kind.clone()),
        payload: Set(job.payload),
        state: Set(JobState::Queued.as_str().into()),
        dedupe_key: Set(dedupe_key),
        attempts: Set(0),
        max_attempts: Set(i32::try_from(job.max_attempts).unwrap_or(i32::MAX)),
        run_at: Set(job.run_at.unwrap_or(now)),
        locked_by: Set(None),
        locked_until: Set(None),
        progress: Set(0),
        last_error: Set(None),
        errors: Set(serde_json::json!([])),
        enqueued_at: Set(now),
        started_at: Set(None),
        finished_at: Set(None),
        updated_at: Set(now),
    };
    let inserted = jobs::Entity::insert(row)
        .on_conflict(
            OnConflict::column(jobs::Column::DedupeKey)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    if inserted == 0 {
        return Ok(None);
    }
    metrics::counter!(worker::ENQUEUED, "kind" => job.kind).increment(1);
    Ok(Some(id))
}

/// Delay before attempt `attempt + 1` after `attempt` failed: exponential from `base`, capped,
/// with "equal jitter" (half fixed, half random) so retries of many jobs spread out.
pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(20)));
    let ceiling = exp.min(cap);
    let half = ceiling / 2;
    half + half.mul_f64(rand::thread_rng().gen::<f64>())
}

pub fn to_job(m: jobs::Model) -> Job {
    Job {
        id: m.id,
        kind: m.kind,
        state: JobState::parse(&m.state).unwrap_or(JobState::Queued),
        attempts: u32::try_from(m.attempts).unwrap_or(0),
        max_attempts: u32::try_from(m.max_attempts).unwrap_or(0),
        progress: u8::try_from(m.progress.clamp(0, 100)).unwrap_or(0),
        payload: m.payload,
        errors: errors_of(&m.errors),
        last_error: m.last_error,
        enqueued_at: m.enqueued_at,
        run_at: m.run_at,
        started_at: m.started_at,
        finished_at: m.finished_at,
    }
}

pub(crate) fn errors_of(value: &serde_json::Value) -> Vec<JobAttemptError> {
    serde_json::from_value(value.clone()).unwrap_or_default()
}

/// `jobs{state}` gauges over the whole queue, read at scrape time.
pub async fn record_metrics(db: &sea_orm::DatabaseConnection) {
    let rows: Result<Vec<(String, i64)>, DbErr> = jobs::Entity::find()
        .select_only()
        .column(jobs::Column::State)
        .column_as(jobs::Column::Id.count(), "n")
        .group_by(jobs::Column::State)
        .into_tuple()
        .all(db)
        .await;
    match rows {
        Ok(rows) => {
            for state in JobState::ALL {
                let n = rows
                    .iter()
                    .find(|(s, _)| s == state.as_str())
                    .map_or(0, |(_, n)| *n);
                metrics::gauge!("jobs", "state" => state.as_str()).set(n as f64);
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not count jobs for /metrics"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_is_capped() {
        let base = Duration::from_secs(2);
        let cap = Duration::from_secs(60);
        for (attempt, ceiling) in [(1, 2), (2, 4), (3, 8), (4, 16), (5, 32), (6, 60), (30, 60)] {
            for _ in 0..50 {
                let d = backoff(attempt, base, cap);
                let ceiling = Duration::from_secs(ceiling);
                assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempt}: {d:?}");
            }
        }
    }
}
