use sea_orm::entity::prelude::*;

/// One event sent (or being sent) to one endpoint.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub endpoint_id: Uuid,
    /// The event's id: the same in every delivery of it (replays included), so receivers can
    /// drop copies.
    pub event_id: Uuid,
    pub event_type: String,
    /// The body as sent: `{id, type, created_at, data}`.
    pub payload: Json,
    /// pending, delivered or failed.
    pub state: String,
    pub attempts: i32,
    pub response_status: Option<i16>,
    /// The start of the last response's body.
    pub response_body: Option<String>,
    pub last_error: Option<String>,
    pub duration_ms: Option<i32>,
    /// The delivery this one replays.
    pub replay_of: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub last_attempt_at: Option<DateTimeUtc>,
    pub delivered_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
