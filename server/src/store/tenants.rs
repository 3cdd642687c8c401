use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "tenants")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub slug: String,
    pub name: String,
    pub timezone: String,
    pub business_hours: Option<Json>,
    /// `app::types::RateLimits` overriding the configured defaults.
    pub rate_limits: Option<Json>,
    /// Browser origins (JSON list) allowed to call the REST API with this tenant's keys.
    pub allowed_origins: Option<Json>,
    /// `app::types::AgentPolicy` (its defaults when absent).
    pub agent_policy: Option<Json>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
