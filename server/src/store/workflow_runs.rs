use sea_orm::entity::prelude::*;

/// A run of a workflow version, with its checkpoint: the state after the last completed step
/// and the node to run next.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "workflow_runs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub workflow_id: Uuid,
    pub version_id: Uuid,
    pub version_number: i32,
    pub status: String,
    pub trigger: String,
    pub input: Json,
    /// The engine's `ConvState` (`vars`: trigger, vars, nodes).
    pub state: Json,
    pub next_node: Option<String>,
    /// Steps completed; the next step's number.
    pub seq: i32,
    /// The attempt of the next step (1 first).
    pub attempt: i32,
    /// A `RunWait` while waiting.
    pub waiting: Option<Json>,
    pub output: Option<Json>,
    pub error: Option<String>,
    pub cancel_requested: bool,
    pub compensation: Option<String>,
    /// The driver holding the run (one at a time) and until when; a dead one's lease runs
    /// out.
    pub lease_owner: Option<Uuid>,
    pub lease_until: Option<DateTimeUtc>,
    pub created_by: String,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    pub updated_at: DateTimeUtc,
    /// What started it, once: a webhook delivery, an event or a schedule tick (unique per
    /// workflow; none for runs started by hand).
    pub trigger_key: Option<String>,
    /// What its steps' calls to the model cost (the tenant's usage).
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_micros: i64,
    pub llm_calls: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
