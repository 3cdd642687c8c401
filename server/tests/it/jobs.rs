//! The durable job queue on SQLite and PostgreSQL: outbox enqueue, idempotency, backoff,
//! dead letters (REST), cron ticks with two workers, graceful shutdown and crash safety with
//! real worker processes.

use std::process::Stdio;
use std::time::Duration;

use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, TransactionTrait,
};
use serde_json::json;
use tokio::process::{Child, Command};
use uuid::Uuid;

use server::jobs::{self, enqueue, JobContext, JobHandler, NewJob, Registry, Worker, WorkerConfig};
use server::store::{audit_log, jobs as job_rows};

use crate::helpers::*;

/// Fails until its attempt number exceeds the payload's `fail_times`.
struct FailTimes;

#[async_trait::async_trait]
impl JobHandler for FailTimes {
    fn kind(&self) -> &'static str {
        "test.fail_times"
    }

    async fn run(&self, ctx: &mut JobContext) -> anyhow::Result<()> {
        let fail_times = ctx.payload()["fail_times"].as_u64().unwrap_or(0);
        if u64::from(ctx.attempt()) <= fail_times {
            anyhow::bail!("boom on attempt {}", ctx.attempt());
        }
        Ok(())
    }
}

pub(crate) fn worker_config(backoff_base: Duration) -> WorkerConfig {
    WorkerConfig {
        poll: Duration::from_millis(20),
        lease: Duration::from_secs(30),
        shutdown_grace: Duration::from_secs(5),
        backoff_base,
        backoff_cap: Duration::from_secs(3600),
        schedules: true,
    }
}

/// Runs a worker until the returned sender is dropped or sent to.
pub(crate) fn start_worker(
    db: &DatabaseConnection,
    registry: Registry,
    config: WorkerConfig,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let worker = Worker::new(db.clone(), registry, config);
    let handle = tokio::spawn(worker.run(async move {
        let _ = stopped.changed().await;
    }));
    (stop, handle)
}

pub(crate) async fn wait_for(what: &str, timeout: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn job(db: &DatabaseConnection, id: Uuid) -> job_rows::Model {
    job_rows::Entity::find_by_id(id)
        .one(db)
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn enqueue_joins_the_callers_transaction_and_keys_are_idempotent() {
    for backend in backends().await {
        let app = TestApp::spawn_with(backend, &[("JOBS_IN_PROCESS", "false")]).await;
        let a = app.tenant("alpha").await;
        let b = app.tenant("bravo").await;
        let job = |tenant| NewJob::new(Some(tenant), "platform.noop", json!({}));

        let txn = app.db.begin().await.unwrap();
        enqueue(&txn, job(a.tenant_id)).await.unwrap().unwrap();
        txn.rollback().await.unwrap();
        assert_eq!(job_rows::Entity::find().count(&app.db).await.unwrap(), 0);

        let txn = app.db.begin().await.unwrap();
        let first = enqueue(&txn, job(a.tenant_id).key("order-1"))
            .await
            .unwrap();
        // Same key again, inside the same transaction: a no-op that does not abort it.
        let again = enqueue(&txn, job(a.tenant_id).key("order-1"))
            .await
            .unwrap();
        txn.commit().await.unwrap();
        assert!(first.is_some() && again.is_none(), "{backend:?}");
        assert!(enqueue(&app.db, job(a.tenant_id).key("order-1"))
            .await
            .unwrap()
            .is_none());
        // Keys are per tenant.
        assert!(enqueue(&app.db, job(b.tenant_id).key("order-1"))
            .await
            .unwrap()
            .is_some());
        assert_eq!(job_rows::Entity::find().count(&app.db).await.unwrap(), 2);
    }
}

#[tokio::test]
async fn failures_back_off_then_die_and_dead_letters_are_managed_over_rest() {
    for backend in backends().await {
        let app = TestApp::spawn_with(
            backend,
            &[("JOBS_IN_PROCESS", "false"), ("METRICS_TOKEN", "scrape")],
        )
        .await;
        let acme = app.tenant("acme").await;
        let other = app.tenant("other").await;
        let registry = Registry::default().with(FailTimes);

        // Backoff: after the first failure the job waits base..=2*base/2 (equal jitter).
        let slow = enqueue(
            &app.db,
            NewJob::new(
                Some(acme.tenant_id),
                "test.fail_times",
                json!({"fail_times": 9}),
            ),
        )
        .await
        .unwrap()
        .unwrap();
        let (stop, handle) = start_worker(
            &app.db,
            registry.clone(),
            worker_config(Duration::from_secs(60)),
        );
        wait_for("the first failure", Duration::from_secs(10), async || {
            job(&app.db, slow).await.attempts == 1 && job(&app.db, slow).await.state == "queued"
        })
        .await;
        let _ = stop.send(true);
        handle.await.unwrap();
        let row = job(&app.db, slow).await;
        let errors = jobs::to_job(row.clone()).errors;
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].error, "boom on attempt 1");
        let wait = (row.run_at - errors[0].at).num_milliseconds();
        assert!((30_000..=60_000).contains(&wait), "backoff {wait} ms");

        // Without backoff, three failures make it dead, with every error kept.
        let doomed = enqueue(
            &app.db,
            NewJob::new(
                Some(acme.tenant_id),
                "test.fail_times",
                json!({"fail_times": 5}),
            )
            .max_attempts(3),
        )
        .await
        .unwrap()
        .unwrap();
        let (stop, handle) = start_worker(&app.db, registry.clone(), worker_config(Duration::ZERO));
        wait_for("the dead letter", Duration::from_secs(15), async || {
            job(&app.db, doomed).await.state == "dead"
        })
        .await;

        let path = format!("/api/v1/jobs/{doomed}");
        let dead = json(app.get(&path, &acme.key).await, 200).await;
        assert_eq!(dead["attempts"], 3);
        let attempts: Vec<u64> = dead["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["attempt"].as_u64().unwrap())
            .collect();
        assert_eq!(attempts, [1, 2, 3]);
        assert_eq!(dead["last_error"], "boom on attempt 3");
        let listed = json(app.get("/api/v1/jobs?state=dead", &acme.key).await, 200).await;
        assert_eq!(listed["items"].as_array().unwrap().len(), 1);
        let stats = json(app.get("/api/v1/jobs/stats", &acme.key).await, 200).await;
        assert_eq!(stats["dead_last_hour"], 1, "{stats}");
        // Another tenant sees nothing of it and cannot touch it.
        problem(app.get(&path, &other.key).await, 404, "not_found").await;
        let retry = format!("{path}/retry");
        problem(
            app.send_json(reqwest::Method::POST, &retry, &other.key, &json!({}))
                .await,
            404,
            "not_found",
        )
        .await;
        let listed = json(app.get("/api/v1/jobs", &other.key).await, 200).await;
        assert!(listed["items"].as_array().unwrap().is_empty());
        problem(
            app.get("/api/v1/jobs?state=nope", &acme.key).await,
            422,
            "validation_failed",
        )
        .await;

        // Retry: a fresh set of attempts; it fails three more times and is dead again. The
        // worker is stopped meanwhile, so the answer cannot race it to the job.
        let _ = stop.send(true);
        handle.await.unwrap();
        let retried = json(
            app.send_json(reqwest::Method::POST, &retry, &acme.key, &json!({}))
                .await,
            200,
        )
        .await;
        assert_eq!(retried["state"], "queued");
        assert_eq!(retried["attempts"], 0);
        let (stop, handle) = start_worker(&app.db, registry.clone(), worker_config(Duration::ZERO));
        wait_for(
            "the second dead letter",
            Duration::from_secs(15),
            async || {
                let j = job(&app.db, doomed).await;
                j.state == "dead" && jobs::to_job(j).errors.len() == 6
            },
        )
        .await;
        let _ = stop.send(true);
        handle.await.unwrap();
        let discard = format!("{path}/discard");
        let discarded = json(
            app.send_json(reqwest::Method::POST, &discard, &acme.key, &json!({}))
                .await,
            200,
        )
        .await;
        assert_eq!(discarded["state"], "discarded");
        problem(
            app.send_json(reqwest::Method::POST, &discard, &acme.key, &json!({}))
                .await,
            409,
            "conflict",
        )
        .await;
        let audit = json(
            app.get("/api/v1/audit-log?action=job.retry", &acme.key)
                .await,
            200,
        )
        .await;
        assert_eq!(audit["items"].as_array().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn a_cron_tick_fires_once_with_two_workers() {
    for backend in backends().await {
        let app = TestApp::spawn_with(backend, &[("JOBS_IN_PROCESS", "false")]).await;
        let acme = app.tenant("acme").await;
        jobs::schedule::ensure(
            &app.db,
            Some(acme.tenant_id),
            "every-second",
            "platform.noop",
            "* * * * * *",
            "Europe/Berlin",
            json!({}),
        )
        .await
        .unwrap();
        let one = start_worker(
            &app.db,
            jobs::registry(&app.knowledge, None, None, None),
            worker_config(Duration::ZERO),
        );
        let two = start_worker(
            &app.db,
            jobs::registry(&app.knowledge, None, None, None),
            worker_config(Duration::ZERO),
        );
        tokio::time::sleep(Duration::from_millis(4500)).await;
        for (stop, handle) in [one, two] {
            let _ = stop.send(true);
            handle.await.unwrap();
        }
        let fired = job_rows::Entity::find()
            .filter(job_rows::Column::TenantId.eq(acme.tenant_id))
            .all(&app.db)
            .await
            .unwrap();
        let mut ticks: Vec<String> = fired.iter().filter_map(|j| j.dedupe_key.clone()).collect();
        ticks.sort();
        ticks.dedup();
        assert!(
            fired.len() >= 3,
            "{backend:?}: only {} ticks in 4.5 s",
            fired.len()
        );
        assert_eq!(ticks.len(), fired.len(), "{backend:?}: a tick fired twice");
    }
}

fn worker_logs(app: &TestApp) -> String {
    std::fs::read_dir(&app.dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("worker-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

pub(crate) fn worker_process(app: &TestApp, extra: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_server"));
    cmd.arg("worker")
        .env("DATA_DIR", &app.dir)
        .env("DATABASE_URL", &app.database_url)
        .env("DEMO_TENANT", "false")
        .env("JOB_POLL_MS", "20")
        .env("RUST_LOG", "info,sqlx=warn")
        .stdout(Stdio::from(
            std::fs::File::create(app.dir.join(format!("worker-{}.log", Uuid::new_v4()))).unwrap(),
        ))
        .kill_on_drop(true);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start a worker process")
}

/// How many of the tests' echo jobs are in `state` (platform schedules, such as the hourly
/// widget sweep at :17, may fire meanwhile and are not counted).
async fn count(db: &DatabaseConnection, state: &str) -> u64 {
    job_rows::Entity::find()
        .filter(job_rows::Column::Kind.eq("platform.echo"))
        .filter(job_rows::Column::State.eq(state))
        .count(db)
        .await
        .unwrap()
}

async fn echo_jobs(app: &TestApp, tenant: Uuid, n: usize, delay_ms: u64) {
    let txn = app.db.begin().await.unwrap();
    for i in 0..n {
        let payload = json!({ "target": format!("t-{i}"), "delay_ms": delay_ms });
        enqueue(&txn, NewJob::new(Some(tenant), "platform.echo", payload))
            .await
            .unwrap();
    }
    txn.commit().await.unwrap();
}

#[tokio::test]
async fn sigterm_hands_running_jobs_back_untouched() {
    for backend in backends().await {
        let app = TestApp::spawn_with(backend, &[("JOBS_IN_PROCESS", "false")]).await;
        let acme = app.tenant("acme").await;
        echo_jobs(&app, acme.tenant_id, 3, 30_000).await;
        let mut worker = worker_process(&app, &[("JOB_SHUTDOWN_GRACE_SECS", "1")]);
        wait_for("jobs to start", Duration::from_secs(20), async || {
            count(&app.db, "running").await == 3
        })
        .await;
        let pid = worker.id().unwrap().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let status = match tokio::time::timeout(Duration::from_secs(15), worker.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!(
                "{backend:?}: the worker did not stop: {}",
                worker_logs(&app)
            ),
        };
        assert!(status.success(), "{status:?}");
        // The tenant's jobs (a platform schedule may fire meanwhile).
        let rows = job_rows::Entity::find()
            .filter(job_rows::Column::TenantId.eq(acme.tenant_id))
            .all(&app.db)
            .await
            .unwrap();
        assert_eq!(rows.len(), 3);
        for row in rows {
            assert_eq!(row.state, "queued", "{backend:?}: {}", worker_logs(&app));
            assert_eq!(row.attempts, 0, "a shutdown spends no attempt");
            assert!(row.locked_by.is_none());
        }
        let effects = audit_log::Entity::find()
            .filter(audit_log::Column::Action.eq("job.echo"))
            .count(&app.db)
            .await
            .unwrap();
        assert_eq!(effects, 0, "interrupted jobs left no effect");
    }
}

#[tokio::test]
async fn a_killed_worker_loses_no_job_and_applies_none_twice() {
    for backend in backends().await {
        let app = TestApp::spawn_with(backend, &[("JOBS_IN_PROCESS", "false")]).await;
        let acme = app.tenant("acme").await;
        echo_jobs(&app, acme.tenant_id, 1000, 2).await;
        let lease = [("JOB_LEASE_SECS", "2")];
        let mut first = worker_process(&app, &lease);
        wait_for(
            "work to be under way",
            Duration::from_secs(60),
            async || count(&app.db, "succeeded").await >= 150,
        )
        .await;
        first.start_kill().unwrap(); // SIGKILL: no chance to hand anything back
        first.wait().await.unwrap();
        let done_at_kill = count(&app.db, "succeeded").await;
        assert!(
            done_at_kill < 1000,
            "{backend:?}: the worker finished before it was killed"
        );
        let _second = worker_process(&app, &lease);
        wait_for(
            "every job to complete",
            Duration::from_secs(180),
            async || count(&app.db, "succeeded").await == 1000,
        )
        .await;
        let effects: Vec<audit_log::Model> = audit_log::Entity::find()
            .filter(audit_log::Column::Action.eq("job.echo"))
            .all(&app.db)
            .await
            .unwrap();
        let mut targets: Vec<&str> = effects.iter().map(|e| e.target.as_str()).collect();
        targets.sort_unstable();
        targets.dedup();
        assert_eq!(
            effects.len(),
            1000,
            "{backend:?}: some effect applied twice or never"
        );
        assert_eq!(targets.len(), 1000);
    }
}

#[tokio::test]
async fn the_console_shows_jobs_to_viewers_and_lets_admins_act() {
    for backend in backends().await {
        let app = TestApp::spawn_with(backend, &[("JOBS_IN_PROCESS", "false")]).await;
        let acme = app.tenant("acme").await;
        let id = enqueue(
            &app.db,
            NewJob::new(Some(acme.tenant_id), "platform.noop", json!({})),
        )
        .await
        .unwrap()
        .unwrap();
        let (viewer, password) = app.user(&acme, "viewer", app::types::Role::Viewer).await;
        let browser = app.signed_in(&viewer, &password).await;
        let listed: serde_json::Value = app
            .server_fn(&browser, "list_jobs", "query[state]=queued")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(listed["items"][0]["id"], id.to_string(), "{listed}");
        let refused = app
            .server_fn(&browser, "discard_job", &format!("id={id}"))
            .await
            .text()
            .await
            .unwrap();
        assert!(refused.contains("Forbidden"), "{refused}");
        let owner = app.signed_in(&acme.owner_email, &acme.owner_password).await;
        let discarded: serde_json::Value = app
            .server_fn(&owner, "discard_job", &format!("id={id}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(discarded["state"], "discarded", "{discarded}");
        let stats: serde_json::Value = app
            .server_fn(&owner, "job_stats", "")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(stats["counts"][0]["state"], "discarded", "{stats}");
    }
}
