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
    /// Set for conversations held through a chat widget: which one, with whom, from where.
    pub widget_id: Option<Uuid>,
    pub visitor_id: Option<Uuid>,
    pub page_url: Option<String>,
    /// The visitor's end-of-conversation rating, 1–5.
    pub csat: Option<i16>,
    pub csat_comment: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
