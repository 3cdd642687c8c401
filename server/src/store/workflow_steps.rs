use sea_orm::entity::prelude::*;

/// One attempt of one node in a run.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "workflow_steps")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub run_id: Uuid,
    pub seq: i32,
    pub node: String,
    pub kind: String,
    pub attempt: i32,
    pub status: String,
    pub output: Option<Json>,
    pub port: Option<String>,
    pub error: Option<String>,
    pub duration_ms: Option<i32>,
    pub started_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
