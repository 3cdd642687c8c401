use sea_orm::entity::prelude::*;

/// A tenant's workflow: its draft; published versions are `workflow_versions`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "workflows")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub description: String,
    /// A `WorkflowDefinition`.
    pub draft: Json,
    pub draft_revision: i64,
    pub latest_version: Option<i32>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// The secret its webhook trigger's deliveries are signed with, sealed with the key ring
    /// (`workflow.webhook`); none until one is made.
    pub webhook_secret: Option<String>,
    /// The tenant event (`message.created`, …) its published version starts on, if any.
    pub trigger_event: Option<String>,
    /// The `NodeKind` of its published version's trigger (none before the first publish).
    pub trigger_kind: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
