use sea_orm::entity::prelude::*;

/// The conversation graph (a workflow) that answers one of a tenant's channels.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "channel_graphs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    /// A `Channel`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub channel: String,
    pub workflow_id: Uuid,
    pub updated_by: String,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
