use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "conversations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// `app::types::Channel`.
    pub channel: String,
    /// `app::types::ConversationStatus`.
    pub status: String,
    /// The specialist currently answering.
    pub agent: String,
    pub title: String,
    /// The graph's state after the last completed step (`crate::engine::Checkpoint`).
    pub checkpoint: Json,
    pub turns: i32,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// Cost of the LLM calls in millionths of a dollar.
    pub cost_micros: i64,
    pub llm_calls: i32,
    /// Set while a turn runs: the next message waits for it (see `agents::service`).
    pub busy_until: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
