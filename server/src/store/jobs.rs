use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// None for platform jobs (index maintenance across tenants).
    pub tenant_id: Option<Uuid>,
    pub kind: String,
    pub payload: Json,
    /// `app::types::JobState` as text.
    pub state: String,
    /// `{tenant}:{kind}:{idempotency key}`; unique, so enqueueing a key twice is a no-op.
    pub dedupe_key: Option<String>,
    pub attempts: i32,
    pub max_attempts: i32,
    /// Not before this instant (enqueue time, or the next retry after backoff).
    pub run_at: DateTimeUtc,
    pub locked_by: Option<String>,
    /// The running worker's lease; past it, another worker may take the job over.
    pub locked_until: Option<DateTimeUtc>,
    pub progress: i16,
    pub last_error: Option<String>,
    /// `Vec<app::types::JobAttemptError>`, oldest first.
    pub errors: Json,
    pub enqueued_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
