//! Workers: claim due jobs with a lease, run them with per-kind concurrency, record the outcome
//! fenced by the lease, take over jobs whose worker died, and shut down gracefully.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sea_orm::sea_query::{Expr, Func, SimpleExpr};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait, Order,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;
use uuid::Uuid;

use app::types::{JobAttemptError, JobState};

use super::{backoff, errors_of, schedule};
use crate::store::jobs::{self, Column};

pub const ENQUEUED: &str = "jobs_enqueued_total";
pub const FINISHED: &str = "jobs_finished_total";
pub const START_DELAY: &str = "job_start_delay_seconds";
pub const RUNNING: &str = "jobs_running";

/// What a job kind does. Handlers that change the database should do so through
/// [`JobContext::transaction`]: that transaction commits together with the job's completion,
/// so the effect happens exactly once even if the job runs twice. Open it when the work is
/// done, to record the outcome: on SQLite an open write transaction blocks every other writer.
#[async_trait::async_trait]
pub trait JobHandler: Send + Sync + 'static {
    fn kind(&self) -> &'static str;
    /// Jobs of this kind one worker runs at once.
    fn concurrency(&self) -> usize {
        4
    }
    /// Longest one attempt may take before it counts as failed.
    fn timeout(&self) -> Duration {
        Duration::from_secs(300)
    }
    async fn run(&self, ctx: &mut JobContext) -> anyhow::Result<()>;
}

/// A failure that no retry can mend (a malformed payload, an address the server refused):
/// return it from [`JobHandler::run`] (`Err(Permanent(..).into())`) and the job is dead at
/// once instead of spending its remaining attempts.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Permanent(pub String);

/// The handlers a worker runs, by kind.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<&'static str, Arc<dyn JobHandler>>,
}

impl Registry {
    pub fn with(mut self, handler: impl JobHandler) -> Registry {
        self.handlers.insert(handler.kind(), Arc::new(handler));
        self
    }

    pub fn kinds(&self) -> Vec<&'static str> {
        let mut kinds: Vec<_> = self.handlers.keys().copied().collect();
        kinds.sort_unstable();
        kinds
    }
}

/// One claimed job, as its handler sees it.
pub struct JobContext {
    job: jobs::Model,
    db: DatabaseConnection,
    txn: Option<DatabaseTransaction>,
    worker: Arc<str>,
}

impl JobContext {
    pub fn id(&self) -> Uuid {
        self.job.id
    }

    pub fn tenant_id(&self) -> Option<Uuid> {
        self.job.tenant_id
    }

    pub fn payload(&self) -> &serde_json::Value {
        &self.job.payload
    }

    /// When the job was enqueued.
    pub fn enqueued_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.job.enqueued_at
    }

    /// 1 on the first attempt.
    pub fn attempt(&self) -> u32 {
        u32::try_from(self.job.attempts).unwrap_or(0)
    }

    /// No retry follows if this attempt fails.
    pub fn is_last_attempt(&self) -> bool {
        self.job.attempts >= self.job.max_attempts
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The transaction the job's completion is committed in (begun on first use).
    pub async fn transaction(&mut self) -> Result<&DatabaseTransaction, DbErr> {
        if self.txn.is_none() {
            self.txn = Some(self.db.begin().await?);
        }
        self.txn
            .as_ref()
            .ok_or_else(|| DbErr::Custom("transaction missing".into()))
    }

    /// Reports progress (0–100) for the console; also renews the lease.
    pub async fn progress(&self, percent: u8) -> Result<(), DbErr> {
        fenced(&self.job, &self.worker)
            .col_expr(Column::Progress, Expr::value(i16::from(percent.min(100))))
            .exec(&self.db)
            .await
            .map(|_| ())
    }
}

/// An update of `job` that only applies while this worker still holds this attempt's lease.
fn fenced(job: &jobs::Model, worker: &str) -> sea_orm::UpdateMany<jobs::Entity> {
    jobs::Entity::update_many()
        .filter(Column::Id.eq(job.id))
        .filter(Column::LockedBy.eq(worker))
        .filter(Column::Attempts.eq(job.attempts))
        .filter(Column::State.eq(JobState::Running.as_str()))
}

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Pause between polls when nothing was due.
    pub poll: Duration,
    /// A running job's lease; renewed while it runs; past it another worker takes over.
    pub lease: Duration,
    /// On shutdown, how long in-flight jobs may finish before they are handed back.
    pub shutdown_grace: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Whether this worker also fires cron schedules.
    pub schedules: bool,
}

pub struct Worker {
    db: DatabaseConnection,
    registry: Registry,
    config: WorkerConfig,
    id: Arc<str>,
}

impl Worker {
    pub fn new(db: DatabaseConnection, registry: Registry, config: WorkerConfig) -> Worker {
        let id = format!(
            "w-{}-{}",
            std::process::id(),
            &Uuid::new_v4().simple().to_string()[..8]
        );
        Worker {
            db,
            registry,
            config,
            id: id.into(),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs until `shutdown` completes, then lets in-flight jobs finish for the grace period
    /// and hands back the rest.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tracing::info!(worker = %self.id, kinds = ?self.registry.kinds(), "job worker started");
        let limits: HashMap<&'static str, Arc<Semaphore>> = self
            .registry
            .handlers
            .iter()
            .map(|(k, h)| (*k, Arc::new(Semaphore::new(h.concurrency().max(1)))))
            .collect();
        let mut tasks = JoinSet::new();
        let mut last_tick = std::time::Instant::now() - Duration::from_secs(60);
        tokio::pin!(shutdown);
        loop {
            while tasks.try_join_next().is_some() {}
            let mut claimed = 0;
            for (kind, handler) in &self.registry.handlers {
                let Some(limit) = limits.get(kind) else {
                    continue;
                };
                let free = limit.available_permits();
                if free == 0 {
                    continue;
                }
                match claim(&self.db, kind, free.min(32), &self.config, &self.id).await {
                    Ok(jobs) => {
                        for job in jobs {
                            let Ok(permit) = limit.clone().try_acquire_owned() else {
                                break;
                            };
                            claimed += 1;
                            let span = tracing::info_span!(
                                "job",
                                id = %job.id,
                                kind = %job.kind,
                                attempt = job.attempts
                            );
                            let run = run_one(
                                self.db.clone(),
                                handler.clone(),
                                job,
                                self.config.clone(),
                                self.id.clone(),
                            )
                            .instrument(span);
                            tasks.spawn(async move {
                                run.await;
                                drop(permit);
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, kind, "claiming jobs failed"),
                }
            }
            if self.config.schedules && last_tick.elapsed() >= Duration::from_secs(1) {
                last_tick = std::time::Instant::now();
                if let Err(e) = schedule::fire_due(&self.db).await {
                    tracing::warn!(error = %e, "firing schedules failed");
                }
            }
            let pause = if claimed > 0 {
                Duration::ZERO
            } else {
                self.config.poll
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        tracing::info!(worker = %self.id, in_flight = tasks.len(), "job worker stopping");
        let grace = tokio::time::sleep(self.config.shutdown_grace);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                next = tasks.join_next() => if next.is_none() { break },
                _ = &mut grace => {
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                    break;
                }
            }
        }
        // Aborted handlers' transactions roll back as their connections return to the pool
        // (SQLite: only then is the write lock free), so handing back may need a few tries.
        for attempt in 1..=10 {
            match release(&self.db, &self.id).await {
                Ok(0) => break,
                Ok(n) => {
                    tracing::info!(released = n, "handed unfinished jobs back to the queue");
                    break;
                }
                Err(e) if attempt == 10 => {
                    tracing::warn!(error = %e, "could not hand jobs back; their leases will expire")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
    }
}

fn due(now: chrono::DateTime<Utc>) -> Condition {
    Condition::any()
        .add(
            Condition::all()
                .add(Column::State.eq(JobState::Queued.as_str()))
                .add(Column::RunAt.lte(now)),
        )
        .add(
            Condition::all()
                .add(Column::State.eq(JobState::Running.as_str()))
                .add(Column::LockedUntil.lt(now)),
        )
}

/// Tenants considered per claim: those whose oldest due job waits longest.
const FAIR_SHARE_TENANTS: u64 = 100;

/// Up to `n` due jobs of `kind`, shared fairly among tenants (platform jobs count as one):
/// tenants with fewer jobs of this kind running go first, then those waiting longest; their
/// jobs are then taken round-robin, each tenant's oldest first. One tenant's bulk upload
/// therefore delays another tenant's job by about one job per worker slot, not by the whole
/// backlog.
async fn fair_share(
    db: &DatabaseConnection,
    kind: &str,
    n: usize,
    now: chrono::DateTime<Utc>,
) -> Result<Vec<Uuid>, DbErr> {
    let waiting: Vec<Option<Uuid>> = jobs::Entity::find()
        .select_only()
        .column(Column::TenantId)
        .filter(Column::Kind.eq(kind))
        .filter(due(now))
        .group_by(Column::TenantId)
        .order_by(
            SimpleExpr::from(Func::min(Expr::col(Column::RunAt))),
            Order::Asc,
        )
        .limit(FAIR_SHARE_TENANTS)
        .into_tuple()
        .all(db)
        .await?;
    if waiting.is_empty() {
        return Ok(Vec::new());
    }
    let running: Vec<(Option<Uuid>, i64)> = jobs::Entity::find()
        .select_only()
        .column(Column::TenantId)
        .column_as(Expr::col(Column::Id).count(), "running")
        .filter(Column::Kind.eq(kind))
        .filter(Column::State.eq(JobState::Running.as_str()))
        .filter(Column::LockedUntil.gte(now))
        .group_by(Column::TenantId)
        .into_tuple()
        .all(db)
        .await?;
    let busy = |t: &Option<Uuid>| {
        running
            .iter()
            .find(|(r, _)| r == t)
            .map_or(0, |(_, count)| *count)
    };
    let mut tenants = waiting;
    // Stable: among equally busy tenants the longest waiting stays first.
    tenants.sort_by_key(busy);
    tenants.truncate(n);
    let mut queues = Vec::with_capacity(tenants.len());
    for tenant in tenants {
        let owner = match tenant {
            Some(id) => Column::TenantId.eq(id),
            None => Column::TenantId.is_null(),
        };
        let ids: Vec<Uuid> = jobs::Entity::find()
            .select_only()
            .column(Column::Id)
            .filter(Column::Kind.eq(kind))
            .filter(due(now))
            .filter(owner)
            .order_by_asc(Column::RunAt)
            .limit(n as u64)
            .into_tuple()
            .all(db)
            .await?;
        queues.push(ids.into_iter());
    }
    Ok(round_robin(queues, n))
}

/// Takes one from each queue in turn until `n` are taken or all are empty.
fn round_robin<T>(mut queues: Vec<impl Iterator<Item = T>>, n: usize) -> Vec<T> {
    let mut taken = Vec::with_capacity(n);
    while taken.len() < n {
        let before = taken.len();
        for queue in &mut queues {
            if taken.len() == n {
                break;
            }
            if let Some(item) = queue.next() {
                taken.push(item);
            }
        }
        if taken.len() == before {
            break;
        }
    }
    taken
}

/// Takes up to `n` due jobs of `kind` (new, retrying, or abandoned by a dead worker). The
/// update re-checks the condition, so of two workers racing for a job only one gets it.
async fn claim(
    db: &DatabaseConnection,
    kind: &str,
    n: usize,
    config: &WorkerConfig,
    worker: &str,
) -> Result<Vec<jobs::Model>, DbErr> {
    let now = Utc::now();
    let ids = fair_share(db, kind, n, now).await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let lease = now + chrono::Duration::from_std(config.lease).unwrap_or_default();
    jobs::Entity::update_many()
        .col_expr(Column::State, Expr::value(JobState::Running.as_str()))
        .col_expr(Column::LockedBy, Expr::value(worker))
        .col_expr(Column::LockedUntil, Expr::value(lease))
        .col_expr(Column::Attempts, Expr::col(Column::Attempts).add(1))
        .col_expr(Column::StartedAt, Expr::value(now))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.is_in(ids.clone()))
        .filter(due(now))
        .exec(db)
        .await?;
    let claimed = jobs::Entity::find()
        .filter(Column::Id.is_in(ids))
        .filter(Column::LockedBy.eq(worker))
        .filter(Column::LockedUntil.eq(lease))
        .filter(Column::State.eq(JobState::Running.as_str()))
        .all(db)
        .await?;
    for job in &claimed {
        let delay = (now - job.run_at).to_std().unwrap_or_default();
        metrics::histogram!(START_DELAY, "kind" => job.kind.clone()).record(delay.as_secs_f64());
    }
    Ok(claimed)
}

async fn run_one(
    db: DatabaseConnection,
    handler: Arc<dyn JobHandler>,
    job: jobs::Model,
    config: WorkerConfig,
    worker: Arc<str>,
) {
    let kind = job.kind.clone();
    if job.attempts > job.max_attempts {
        // Taken over from dead workers more often than it may be tried.
        let error = "the worker running it stopped on every attempt".to_string();
        finish_failed(&db, &job, &worker, error, &config, false).await;
        return;
    }
    metrics::gauge!(RUNNING, "kind" => kind.clone()).increment(1.0);
    let heartbeat = {
        let (db, job, worker) = (db.clone(), job.clone(), worker.clone());
        let every = config.lease / 3;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let until =
                    Utc::now() + chrono::Duration::from_std(config.lease).unwrap_or_default();
                let renewed = fenced(&job, &worker)
                    .col_expr(Column::LockedUntil, Expr::value(until))
                    .exec(&db)
                    .await;
                if !matches!(renewed, Ok(r) if r.rows_affected == 1) {
                    break;
                }
            }
        })
    };
    let mut ctx = JobContext {
        job: job.clone(),
        db: db.clone(),
        txn: None,
        worker: worker.clone(),
    };
    let timeout = handler.timeout();
    let attempt = tokio::spawn(
        async move {
            let result = tokio::time::timeout(timeout, handler.run(&mut ctx)).await;
            (ctx, result)
        }
        .in_current_span(),
    )
    .await;
    heartbeat.abort();
    metrics::gauge!(RUNNING, "kind" => kind.clone()).decrement(1.0);
    match attempt {
        Ok((ctx, Ok(Ok(())))) => finish_succeeded(&db, ctx, &worker).await,
        Ok((_, Ok(Err(e)))) => {
            let permanent = e.downcast_ref::<Permanent>().is_some();
            finish_failed(&db, &job, &worker, format!("{e:#}"), &config, permanent).await
        }
        Ok((_, Err(_))) => {
            let error = format!("timed out after {} s", timeout.as_secs());
            finish_failed(&db, &job, &worker, error, &config, false).await
        }
        Err(e) if e.is_panic() => {
            let error = "the handler panicked".into();
            finish_failed(&db, &job, &worker, error, &config, false).await
        }
        // Aborted by shutdown: `release` hands it back.
        Err(_) => {}
    }
}

async fn finish_succeeded(db: &DatabaseConnection, mut ctx: JobContext, worker: &str) {
    let now = Utc::now();
    let done = fenced(&ctx.job, worker)
        .col_expr(Column::State, Expr::value(JobState::Succeeded.as_str()))
        .col_expr(Column::Progress, Expr::value(100i16))
        .col_expr(Column::LockedBy, Expr::value(Option::<String>::None))
        .col_expr(
            Column::LockedUntil,
            Expr::value(Option::<chrono::DateTime<Utc>>::None),
        )
        .col_expr(Column::FinishedAt, Expr::value(now))
        .col_expr(Column::UpdatedAt, Expr::value(now));
    let outcome = match ctx.txn.take() {
        Some(txn) => match done.exec(&txn).await {
            Ok(r) if r.rows_affected == 1 => txn.commit().await.map(|_| 1),
            Ok(_) => txn.rollback().await.map(|_| 0),
            Err(e) => Err(e),
        },
        None => done.exec(db).await.map(|r| r.rows_affected),
    };
    match outcome {
        Ok(1) => {
            metrics::counter!(FINISHED, "kind" => ctx.job.kind.clone(), "outcome" => "succeeded")
                .increment(1);
        }
        Ok(_) => tracing::warn!(
            "job finished after its lease passed to another worker; its effect was rolled back"
        ),
        Err(e) => tracing::error!(error = %e, "could not record a finished job"),
    }
}

async fn finish_failed(
    db: &DatabaseConnection,
    job: &jobs::Model,
    worker: &str,
    error: String,
    config: &WorkerConfig,
    permanent: bool,
) {
    let now = Utc::now();
    let attempt = u32::try_from(job.attempts).unwrap_or(0);
    let mut errors = errors_of(&job.errors);
    errors.push(JobAttemptError {
        attempt,
        at: now,
        error: error.clone(),
    });
    let dead = permanent || job.attempts >= job.max_attempts;
    let mut update = fenced(job, worker)
        .col_expr(Column::LastError, Expr::value(error.clone()))
        .col_expr(
            Column::Errors,
            Expr::value(serde_json::to_value(&errors).unwrap_or_default()),
        )
        .col_expr(Column::LockedBy, Expr::value(Option::<String>::None))
        .col_expr(
            Column::LockedUntil,
            Expr::value(Option::<chrono::DateTime<Utc>>::None),
        )
        .col_expr(Column::UpdatedAt, Expr::value(now));
    update = if dead {
        update
            .col_expr(Column::State, Expr::value(JobState::Dead.as_str()))
            .col_expr(Column::FinishedAt, Expr::value(now))
    } else {
        let delay = backoff(attempt, config.backoff_base, config.backoff_cap);
        update
            .col_expr(Column::State, Expr::value(JobState::Queued.as_str()))
            .col_expr(
                Column::RunAt,
                Expr::value(now + chrono::Duration::from_std(delay).unwrap_or_default()),
            )
    };
    match update.exec(db).await {
        Ok(r) if r.rows_affected == 1 => {
            let outcome = if dead { "dead" } else { "failed" };
            tracing::warn!(%error, outcome, "job attempt failed");
            metrics::counter!(FINISHED, "kind" => job.kind.clone(), "outcome" => outcome)
                .increment(1);
        }
        Ok(_) => tracing::warn!("job failed after its lease passed to another worker"),
        Err(e) => tracing::error!(error = %e, "could not record a failed job"),
    }
}

/// Hands this worker's unfinished jobs back to the queue without spending an attempt.
async fn release(db: &DatabaseConnection, worker: &str) -> Result<u64, DbErr> {
    let now = Utc::now();
    let r = jobs::Entity::update_many()
        .col_expr(Column::State, Expr::value(JobState::Queued.as_str()))
        .col_expr(Column::Attempts, Expr::col(Column::Attempts).sub(1))
        .col_expr(Column::LockedBy, Expr::value(Option::<String>::None))
        .col_expr(
            Column::LockedUntil,
            Expr::value(Option::<chrono::DateTime<Utc>>::None),
        )
        .col_expr(Column::RunAt, Expr::value(now))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::LockedBy.eq(worker))
        .filter(Column::State.eq(JobState::Running.as_str()))
        .exec(db)
        .await?;
    Ok(r.rows_affected)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_robin_takes_one_from_each_in_turn() {
        let queues = vec![
            vec![1, 2, 3, 4].into_iter(),
            vec![10].into_iter(),
            vec![20, 21].into_iter(),
        ];
        assert_eq!(super::round_robin(queues, 5), [1, 10, 20, 2, 21]);
        let queues = vec![vec![1, 2].into_iter(), Vec::new().into_iter()];
        assert_eq!(super::round_robin(queues, 8), [1, 2]);
        let none: Vec<std::vec::IntoIter<u8>> = Vec::new();
        assert!(super::round_robin(none, 3).is_empty());
    }
}
