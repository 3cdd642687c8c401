//! `widget.sweep`, hourly on a platform schedule: deletes refresh tokens a day after they
//! expired (a used token is kept until then, so presenting it again still ends its family),
//! and anonymous visitors nobody has seen for [`IDLE_DAYS`] days who never started a
//! conversation (their tokens go with them). Visitors the site identified, and everyone with a
//! conversation, are kept: the console shows them with their conversations.

use chrono::{Duration, Utc};
use sea_orm::sea_query::Query;
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use crate::jobs::{schedule, JobContext, JobHandler};
use crate::store::{conversations, widget_refresh_tokens, widget_visitors};

pub const KIND: &str = "widget.sweep";
/// The platform schedule's name (`job_schedules.name`, no tenant).
pub const SCHEDULE: &str = "widget-sweep";
/// Anonymous visitors without a conversation are kept this long after they were last seen.
pub const IDLE_DAYS: i64 = 30;

/// Registers the hourly schedule (idempotent; every process may call it at start).
pub async fn ensure_schedule(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    schedule::ensure(
        db,
        None,
        SCHEDULE,
        KIND,
        "17 * * * *",
        "UTC",
        serde_json::json!({}),
    )
    .await
    .map(|_| ())
}

/// What one sweep deleted.
#[derive(Debug, Default, PartialEq)]
pub struct Swept {
    pub refresh_tokens: u64,
    pub visitors: u64,
}

/// Deletes what the module's rules say is spent, in `db` (the job's transaction). Each
/// statement carries the whole rule, so a visitor who comes back meanwhile is not deleted.
pub async fn sweep(db: &impl ConnectionTrait) -> Result<Swept, DbErr> {
    let now = Utc::now();
    let idle = || {
        let talked = Query::select()
            .column(conversations::Column::VisitorId)
            .from(conversations::Entity)
            .and_where(conversations::Column::VisitorId.is_not_null())
            .to_owned();
        Condition::all()
            .add(widget_visitors::Column::ExternalId.is_null())
            .add(widget_visitors::Column::LastSeenAt.lt(now - Duration::days(IDLE_DAYS)))
            .add(widget_visitors::Column::Id.not_in_subquery(talked))
    };
    let idle_ids = Query::select()
        .column(widget_visitors::Column::Id)
        .from(widget_visitors::Entity)
        .cond_where(idle())
        .to_owned();
    let refresh_tokens = widget_refresh_tokens::Entity::delete_many()
        .filter(
            Condition::any()
                .add(widget_refresh_tokens::Column::ExpiresAt.lt(now - Duration::days(1)))
                .add(widget_refresh_tokens::Column::VisitorId.in_subquery(idle_ids)),
        )
        .exec(db)
        .await?
        .rows_affected;
    let visitors = widget_visitors::Entity::delete_many()
        .filter(idle())
        .exec(db)
        .await?
        .rows_affected;
    Ok(Swept {
        refresh_tokens,
        visitors,
    })
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
        let swept = sweep(ctx.transaction().await?).await?;
        tracing::info!(
            refresh_tokens = swept.refresh_tokens,
            visitors = swept.visitors,
            "widget sweep"
        );
        Ok(())
    }
}
