//! `JobService`: a tenant's view of the queue, for the console and `/api/v1/jobs`. Every query
//! filters by the caller's tenant; retry and discard are audited.

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::Order;
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use uuid::Uuid;

use app::error::AppError;
use app::services::{Access, JobService};
use app::types::{Area, Job, JobCount, JobQuery, JobSchedule, JobState, JobStats, Level, Page};
use app::validate::check;

use super::to_job;
use crate::store::audit_log::Record;
use crate::store::job_schedules;
use crate::store::jobs::{self, Column};
use crate::tenancy::db_error;

const DEFAULT_PAGE: u32 = 50;

/// The tenant's job `id`.
pub async fn find(
    db: &impl sea_orm::ConnectionTrait,
    tenant: Uuid,
    id: Uuid,
) -> Result<jobs::Model, AppError> {
    jobs::Entity::find_by_id(id)
        .filter(Column::TenantId.eq(tenant))
        .one(db)
        .await
        .map_err(db_error)?
        .ok_or_else(|| AppError::not_found("job"))
}

pub struct JobServiceImpl {
    db: DatabaseConnection,
}

impl JobServiceImpl {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    async fn model(&self, access: &Access, id: Uuid) -> Result<jobs::Model, AppError> {
        find(&self.db, access.tenant_id, id).await
    }

    /// Moves a job from one of `from` to `to`, audited as `action`. Back to `Queued` is a retry
    /// (fresh attempts, due now); anything else finishes the job.
    async fn transition(
        &self,
        access: &Access,
        id: Uuid,
        from: &[JobState],
        to: JobState,
        action: &str,
    ) -> Result<Job, AppError> {
        let retry = to == JobState::Queued;
        access.require(Area::Jobs, Level::Write)?;
        let current = self.model(access, id).await?;
        let state = JobState::parse(&current.state).unwrap_or(JobState::Queued);
        if !from.contains(&state) {
            return Err(AppError::Conflict(format!(
                "a {} job cannot be {}",
                state.as_str(),
                if to == JobState::Queued {
                    "retried"
                } else {
                    "discarded"
                }
            )));
        }
        let now = Utc::now();
        let txn = self.db.begin().await.map_err(db_error)?;
        let mut update = jobs::Entity::update_many()
            .col_expr(Column::State, Expr::value(to.as_str()))
            .col_expr(Column::UpdatedAt, Expr::value(now))
            .filter(Column::Id.eq(id))
            .filter(Column::TenantId.eq(access.tenant_id))
            .filter(Column::State.eq(state.as_str()));
        if retry {
            update = update
                .col_expr(Column::Attempts, Expr::value(0))
                .col_expr(Column::RunAt, Expr::value(now))
                .col_expr(
                    Column::FinishedAt,
                    Expr::value(Option::<chrono::DateTime<Utc>>::None),
                )
                .col_expr(Column::Progress, Expr::value(0i16));
        } else {
            update = update.col_expr(Column::FinishedAt, Expr::value(now));
        }
        let changed = update.exec(&txn).await.map_err(db_error)?;
        if changed.rows_affected != 1 {
            return Err(AppError::Conflict(
                "the job changed meanwhile; try again".into(),
            ));
        }
        Record::by(access, action, format!("job:{id}"))
            .details(serde_json::json!({ "kind": current.kind }))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        self.model(access, id).await.map(to_job)
    }
}

#[async_trait::async_trait]
impl JobService for JobServiceImpl {
    async fn list_jobs(&self, access: &Access, query: JobQuery) -> Result<Page<Job>, AppError> {
        access.require(Area::Jobs, Level::Read)?;
        check(&query)?;
        let limit = query.limit.unwrap_or(DEFAULT_PAGE);
        let mut select = jobs::Entity::find().filter(Column::TenantId.eq(access.tenant_id));
        if let Some(state) = query.state {
            select = select.filter(Column::State.eq(state.as_str()));
        }
        if let Some(kind) = &query.kind {
            select = select.filter(Column::Kind.eq(kind.as_str()));
        }
        let page = crate::store::page_by_id(
            &self.db,
            select,
            (Column::Id, Order::Desc),
            query.cursor.as_deref(),
            limit,
            |r| r.id,
        )
        .await?;
        Ok(page.map(to_job))
    }

    async fn get_job(&self, access: &Access, id: Uuid) -> Result<Job, AppError> {
        access.require(Area::Jobs, Level::Read)?;
        self.model(access, id).await.map(to_job)
    }

    async fn job_stats(&self, access: &Access) -> Result<JobStats, AppError> {
        access.require(Area::Jobs, Level::Read)?;
        let rows: Vec<(String, String, i64)> = jobs::Entity::find()
            .select_only()
            .column(Column::Kind)
            .column(Column::State)
            .column_as(Column::Id.count(), "n")
            .filter(Column::TenantId.eq(access.tenant_id))
            .group_by(Column::Kind)
            .group_by(Column::State)
            .order_by_asc(Column::Kind)
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(db_error)?;
        let counts = rows
            .into_iter()
            .filter_map(|(kind, state, n)| {
                Some(JobCount {
                    kind,
                    state: JobState::parse(&state)?,
                    count: u64::try_from(n).unwrap_or(0),
                })
            })
            .collect();
        let hour_ago = Utc::now() - chrono::Duration::hours(1);
        let finished = |state: JobState| {
            jobs::Entity::find()
                .filter(Column::TenantId.eq(access.tenant_id))
                .filter(Column::State.eq(state.as_str()))
                .filter(Column::FinishedAt.gte(hour_ago))
                .count(&self.db)
        };
        Ok(JobStats {
            counts,
            succeeded_last_hour: finished(JobState::Succeeded).await.map_err(db_error)?,
            dead_last_hour: finished(JobState::Dead).await.map_err(db_error)?,
        })
    }

    async fn retry_job(&self, access: &Access, id: Uuid) -> Result<Job, AppError> {
        self.transition(
            access,
            id,
            &[JobState::Dead, JobState::Discarded],
            JobState::Queued,
            "job.retry",
        )
        .await
    }

    async fn list_schedules(&self, access: &Access) -> Result<Vec<JobSchedule>, AppError> {
        access.require(Area::Jobs, Level::Read)?;
        let rows = job_schedules::Entity::find()
            .filter(job_schedules::Column::TenantId.eq(access.tenant_id))
            .order_by_asc(job_schedules::Column::Name)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|s| JobSchedule {
                id: s.id,
                name: s.name,
                kind: s.kind,
                cron: s.cron,
                timezone: s.timezone,
                next_run_at: s.next_run_at,
                last_run_at: s.last_run_at,
                enabled: s.enabled,
            })
            .collect())
    }

    async fn discard_job(&self, access: &Access, id: Uuid) -> Result<Job, AppError> {
        self.transition(
            access,
            id,
            &[JobState::Queued, JobState::Dead],
            JobState::Discarded,
            "job.discard",
        )
        .await
    }
}
