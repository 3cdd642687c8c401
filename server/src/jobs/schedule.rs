//! Cron schedules: each row names a job kind, a cron expression and the time zone it is read in
//! (the tenant's). Every worker looks for due rows; moving `next_run_at` forward is a
//! compare-and-set in the same transaction as the enqueue (with an idempotency key of the tick),
//! so each tick yields one job however many workers run.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, TransactionTrait,
};
use uuid::Uuid;

use super::{enqueue, NewJob};
use crate::store::job_schedules::{self, Column};

/// A cron expression: five fields (minute first) or six (second first).
pub fn parse(expr: &str) -> Result<cron::Schedule, String> {
    let fields = expr.split_whitespace().count();
    let full = match fields {
        5 => format!("0 {expr}"),
        6 => expr.to_string(),
        _ => {
            return Err(
                "expected 5 fields (min hour day month weekday) or 6 (with seconds first)".into(),
            )
        }
    };
    cron::Schedule::from_str(&full).map_err(|e| e.to_string())
}

/// The first tick of `expr` in `timezone` strictly after `after`.
pub fn next_tick(
    expr: &str,
    timezone: &str,
    after: DateTime<Utc>,
) -> Result<DateTime<Utc>, String> {
    let schedule = parse(expr)?;
    let tz: chrono_tz::Tz = timezone
        .parse()
        .map_err(|_| format!("unknown time zone {timezone}"))?;
    schedule
        .after(&after.with_timezone(&tz))
        .next()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| "the expression never fires".to_string())
}

/// Creates or updates the schedule `name` of a tenant (or of the platform).
pub async fn ensure(
    db: &impl ConnectionTrait,
    tenant_id: Option<Uuid>,
    name: &str,
    kind: &str,
    expr: &str,
    timezone: &str,
    payload: serde_json::Value,
) -> Result<Uuid, DbErr> {
    let now = Utc::now();
    let next = next_tick(expr, timezone, now).map_err(DbErr::Custom)?;
    let existing = job_schedules::Entity::find()
        .filter(match tenant_id {
            Some(t) => Column::TenantId.eq(t),
            None => Column::TenantId.is_null(),
        })
        .filter(Column::Name.eq(name))
        .one(db)
        .await?;
    if let Some(m) = existing {
        job_schedules::Entity::update_many()
            .col_expr(Column::Kind, Expr::value(kind))
            .col_expr(Column::Cron, Expr::value(expr))
            .col_expr(Column::Timezone, Expr::value(timezone))
            .col_expr(Column::Payload, Expr::value(payload))
            .col_expr(Column::NextRunAt, Expr::value(next))
            .col_expr(Column::Enabled, Expr::value(true))
            .filter(Column::Id.eq(m.id))
            .exec(db)
            .await?;
        return Ok(m.id);
    }
    let id = Uuid::now_v7();
    job_schedules::Entity::insert(job_schedules::ActiveModel {
        id: Set(id),
        tenant_id: Set(tenant_id),
        name: Set(name.to_string()),
        kind: Set(kind.to_string()),
        payload: Set(payload),
        cron: Set(expr.to_string()),
        timezone: Set(timezone.to_string()),
        next_run_at: Set(next),
        last_run_at: Set(None),
        enabled: Set(true),
        created_at: Set(now),
    })
    .exec_without_returning(db)
    .await?;
    Ok(id)
}

/// Enqueues one job for every due tick of every enabled schedule. Returns how many it enqueued.
pub async fn fire_due(db: &DatabaseConnection) -> Result<usize, DbErr> {
    let now = Utc::now();
    let due = job_schedules::Entity::find()
        .filter(Column::Enabled.eq(true))
        .filter(Column::NextRunAt.lte(now))
        .all(db)
        .await?;
    let mut fired = 0;
    for s in due {
        let next = match next_tick(&s.cron, &s.timezone, now) {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(schedule = %s.name, error = %e, "schedule disabled: bad expression");
                job_schedules::Entity::update_many()
                    .col_expr(Column::Enabled, Expr::value(false))
                    .filter(Column::Id.eq(s.id))
                    .exec(db)
                    .await?;
                continue;
            }
        };
        let txn = db.begin().await?;
        let moved = job_schedules::Entity::update_many()
            .col_expr(Column::NextRunAt, Expr::value(next))
            .col_expr(Column::LastRunAt, Expr::value(s.next_run_at))
            .filter(Column::Id.eq(s.id))
            .filter(Column::NextRunAt.eq(s.next_run_at))
            .exec(&txn)
            .await?;
        if moved.rows_affected != 1 {
            txn.rollback().await?;
            continue; // another worker fired this tick
        }
        let job = NewJob::new(s.tenant_id, &s.kind, s.payload.clone()).key(format!(
            "schedule:{}:{}",
            s.id,
            s.next_run_at.timestamp()
        ));
        if enqueue(&txn, job).await?.is_some() {
            fired += 1;
        }
        txn.commit().await?;
    }
    Ok(fired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_follow_the_time_zone() {
        // 09:00 every day in Berlin is 08:00 UTC in winter.
        let after = DateTime::parse_from_rfc3339("2026-01-10T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let next = next_tick("0 9 * * *", "Europe/Berlin", after).unwrap();
        assert_eq!(next.to_rfc3339(), "2026-01-11T08:00:00+00:00");
        let every_15 = next_tick("*/15 * * * *", "UTC", after).unwrap();
        assert_eq!(every_15.to_rfc3339(), "2026-01-10T12:15:00+00:00");
        assert!(next_tick("61 * * * *", "UTC", after).is_err());
        assert!(next_tick("* * *", "UTC", after).is_err());
        assert!(next_tick("0 9 * * *", "Mars/Base", after).is_err());
    }
}
