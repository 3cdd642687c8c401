//! `webhook.sweep`, daily on a platform schedule: deletes finished deliveries (delivered or
//! failed) older than [`KEPT_DAYS`] days, so the delivery log stays the recent past.

use chrono::{Duration, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use app::types::DeliveryState;

use crate::jobs::{schedule, JobContext, JobHandler};
use crate::store::webhook_deliveries::{self, Column};

pub const KIND: &str = "webhook.sweep";
/// The platform schedule's name (`job_schedules.name`, no tenant).
pub const SCHEDULE: &str = "webhook-sweep";
/// Finished deliveries are kept this long.
pub const KEPT_DAYS: i64 = 30;

/// Registers the daily schedule (idempotent; every process may call it at start).
pub async fn ensure_schedule(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    schedule::ensure(
        db,
        None,
        SCHEDULE,
        KIND,
        "43 3 * * *",
        "UTC",
        serde_json::json!({}),
    )
    .await
    .map(|_| ())
}

/// Deletes the finished deliveries created before `KEPT_DAYS` days ago; returns how many.
pub async fn sweep(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    Ok(webhook_deliveries::Entity::delete_many()
        .filter(Column::CreatedAt.lt(Utc::now() - Duration::days(KEPT_DAYS)))
        .filter(Column::State.ne(DeliveryState::Pending.as_str()))
        .exec(db)
        .await?
        .rows_affected)
}

pub struct Sweep;

#[async_trait::async_trait]
impl JobHandler for Sweep {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn concurrency(&self) -> usize {
        1
    }

    async fn run(&self, ctx: &mut JobContext) -> anyhow::Result<()> {
        let deliveries = sweep(ctx.transaction().await?).await?;
        tracing::info!(deliveries, "webhook sweep");
        Ok(())
    }
}
