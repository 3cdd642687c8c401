//! `server bench jobs`: figures for the queue on the configured database.
//! Throughput: enqueue `count` no-op jobs, then time one in-process worker draining them.
//! Latency: with the worker idle, enqueue one job at a time and read enqueue-to-start from the
//! rows (`started_at - enqueued_at`), `samples` times.

use std::time::{Duration, Instant};

use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, TransactionTrait};

use app::types::JobState;

use super::{enqueue, registry, NewJob, Worker};
use crate::config::Config;
use crate::store::{self, jobs};

const KIND: &str = "platform.noop";

pub async fn run(config: &Config, count: usize, samples: usize) -> anyhow::Result<()> {
    let db = store::connect(config).await?;
    store::migrate(&db).await?;
    let backend = if config.is_sqlite() {
        "SQLite"
    } else {
        "PostgreSQL"
    };
    let pending = || {
        jobs::Entity::find()
            .filter(jobs::Column::Kind.eq(KIND))
            .filter(jobs::Column::State.ne(JobState::Succeeded.as_str()))
            .count(&db)
    };
    anyhow::ensure!(
        pending().await? == 0,
        "no-op jobs are still pending in this database"
    );

    let started = Instant::now();
    for chunk in (0..count).collect::<Vec<_>>().chunks(500) {
        let txn = db.begin().await?;
        for _ in chunk {
            enqueue(&txn, NewJob::new(None, KIND, serde_json::json!({}))).await?;
        }
        txn.commit().await?;
    }
    let enqueue_time = started.elapsed();

    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let knowledge = crate::rag::Knowledge::new(config.knowledge.clone(), config.circuit);
    let worker = Worker::new(
        db.clone(),
        registry(&knowledge, None, None, None),
        config.jobs.clone(),
    );
    let started = Instant::now();
    let handle = tokio::spawn(worker.run(async move {
        let _ = stopped.changed().await;
    }));
    while pending().await? > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_time = started.elapsed();

    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        // Arrive at random points of the worker's poll cycle.
        tokio::time::sleep(Duration::from_millis(37 + (i as u64 * 53) % 200)).await;
        let id = enqueue(&db, NewJob::new(None, KIND, serde_json::json!({})))
            .await?
            .ok_or_else(|| anyhow::anyhow!("job not enqueued"))?;
        loop {
            let job = jobs::Entity::find_by_id(id).one(&db).await?;
            if let Some(started_at) = job.as_ref().and_then(|j| j.started_at) {
                let enqueued_at = job.map(|j| j.enqueued_at).unwrap_or(started_at);
                latencies.push((started_at - enqueued_at).to_std().unwrap_or_default());
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let _ = stop.send(true);
    let _ = handle.await;
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "queue benchmark on {backend} (poll {} ms)",
        config.jobs.poll.as_millis()
    );
    println!(
        "  enqueue:   {count} jobs in {:.2} s ({:.0} jobs/s, 500 per transaction)",
        enqueue_time.as_secs_f64(),
        count as f64 / enqueue_time.as_secs_f64()
    );
    println!(
        "  drain:     {count} no-op jobs in {:.2} s ({:.0} jobs/s, one worker)",
        drain_time.as_secs_f64(),
        count as f64 / drain_time.as_secs_f64()
    );
    println!(
        "  idle enqueue-to-start over {samples} jobs: p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
        pct(0.5).as_secs_f64() * 1000.0,
        pct(0.95).as_secs_f64() * 1000.0,
        pct(1.0).as_secs_f64() * 1000.0
    );
    Ok(())
}
