//! Conversations with the tenant's agents: the shapes the chat API, the console's playground and
//! the agent graph share.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::validate as v;

#[cfg(feature = "ssr")]
use utoipa::ToSchema;

string_enum! {
    /// Where a conversation comes from.
    Channel {
        Api = "api",
        Console = "console",
        /// `POST /v1/chat/completions`.
        Openai = "openai",
        Widget = "widget",
        /// A Chatwoot inbox, through its agent bot.
        Chatwoot = "chatwoot",
        /// A workflow's `agent` step.
        Workflow = "workflow",
    }
}

string_enum! {
    /// Who answers: the bot, or (after a handoff) a person.
    ConversationStatus {
        Bot = "bot",
        /// Handed off; the bot stays silent until an operator takes it or gives it back.
        WaitingHuman = "waiting_human",
        Human = "human",
        Closed = "closed",
    }
}

string_enum! {
    MessageRole {
        /// The tenant's customer.
        User = "user",
        /// An agent.
        Assistant = "assistant",
        /// A person of the tenant, after a handoff.
        Operator = "operator",
    }
}

string_enum! {
    /// How a router rule matches a message.
    RuleKind {
        /// Any of the comma-separated words or phrases, case-insensitive, on word boundaries.
        Keyword = "keyword",
        /// A regular expression (case-insensitive).
        Regex = "regex",
    }
}

/// Tokens and cost of the LLM calls of one turn or of a whole conversation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// US dollars, from the configured price table (0 when the model has no price).
    pub cost_usd: f64,
    pub llm_calls: u32,
}

impl Usage {
    pub fn add(&mut self, other: &Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cost_usd += other.cost_usd;
        self.llm_calls += other.llm_calls;
    }
}

/// A passage an answer was built from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct Source {
    pub knowledge_base_id: Uuid,
    pub document_id: Uuid,
    pub document_title: String,
    pub source: String,
    pub chunk_index: u32,
    /// Byte offsets in the document's extracted text.
    pub start: u64,
    pub end: u64,
    pub score: f32,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct Conversation {
    pub id: Uuid,
    pub channel: Channel,
    pub status: ConversationStatus,
    /// The specialist answering now.
    pub agent: String,
    pub title: String,
    pub turns: u32,
    pub usage: Usage,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// For conversations held through a chat widget: which, with whom, from which page.
    #[serde(default)]
    pub widget: Option<super::WidgetOrigin>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct Message {
    pub id: Uuid,
    pub role: MessageRole,
    /// The agent that wrote it (assistant messages).
    pub agent: Option<String>,
    pub content: String,
    pub sources: Vec<Source>,
    pub usage: Option<Usage>,
    /// `up` or `down`, when the customer rated it.
    pub feedback: Option<Rating>,
    pub feedback_comment: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A conversation with its transcript, oldest message first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct ConversationDetail {
    pub conversation: Conversation,
    pub messages: Vec<Message>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(default)]
pub struct CreateConversation {
    /// `api` unless given.
    #[garde(skip)]
    pub channel: Option<Channel>,
    #[garde(custom(v::optional(v::name::<200>)))]
    pub title: Option<String>,
    /// Earlier messages, when the conversation began elsewhere (at most 50): the agents read
    /// them as context.
    #[garde(length(max = 50), dive)]
    pub history: Vec<HistoryMessage>,
}

/// A message of a conversation's earlier history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct HistoryMessage {
    /// `user` or `assistant`.
    #[garde(skip)]
    pub role: MessageRole,
    #[garde(custom(v::name::<8000>))]
    pub content: String,
}

/// A customer's message. With `stream` the answer comes as Server-Sent Events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct PostMessage {
    /// 1–8000 characters.
    #[garde(custom(v::name::<8000>))]
    pub content: String,
    #[serde(default)]
    #[garde(skip)]
    pub stream: bool,
}

/// What the router decided, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct RouteDecision {
    pub agent: String,
    /// `emergency` (a built-in emergency word), `rule`, `llm`, `sticky` (kept the current
    /// specialist) or `default`.
    pub by: String,
    /// The rule that fired.
    pub rule: Option<String>,
}

/// A tool the agent called, with what came back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct ToolCallRecord {
    pub name: String,
    pub arguments: serde_json::Value,
    pub ok: bool,
    /// The result as the agent saw it (shortened).
    pub result: String,
}

/// What one node did in a turn.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(default)]
pub struct StepDetail {
    pub route: Option<RouteDecision>,
    pub tool_calls: Vec<ToolCallRecord>,
    pub llm_calls: u32,
    /// Set when the step answered without an LLM (offline mode, or the provider failed).
    pub offline: Option<String>,
    pub handoff: Option<String>,
    pub error: Option<String>,
    /// The exit a conversation graph's step left by (`out`, a class, `handoff`, `error`…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct Step {
    pub seq: u32,
    pub node: String,
    pub detail: StepDetail,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub duration_ms: u32,
}

/// The outcome of a customer message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct TurnResult {
    pub conversation: Conversation,
    pub message: Message,
    /// The answer; absent while a person owns the conversation.
    pub reply: Option<Message>,
    pub steps: Vec<Step>,
}

/// One Server-Sent Event of a streamed answer; the SSE `event` field is the variant's name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(tag = "type")]
pub enum StreamEvent {
    #[serde(rename = "message.delta")]
    MessageDelta { text: String },
    #[serde(rename = "tool.call")]
    ToolCall {
        name: String,
        arguments: serde_json::Value,
    },
    #[serde(rename = "tool.result")]
    ToolResult {
        name: String,
        ok: bool,
        result: String,
    },
    #[serde(rename = "sources")]
    Sources { sources: Vec<Source> },
    #[serde(rename = "agent.handoff")]
    AgentHandoff {
        from: Option<String>,
        to: String,
        reason: String,
    },
    #[serde(rename = "message.done")]
    MessageDone {
        message_id: Option<Uuid>,
        agent: String,
        status: ConversationStatus,
        usage: Usage,
    },
    #[serde(rename = "error")]
    Error { code: String, message: String },
}

impl StreamEvent {
    pub fn name(&self) -> &'static str {
        match self {
            StreamEvent::MessageDelta { .. } => "message.delta",
            StreamEvent::ToolCall { .. } => "tool.call",
            StreamEvent::ToolResult { .. } => "tool.result",
            StreamEvent::Sources { .. } => "sources",
            StreamEvent::AgentHandoff { .. } => "agent.handoff",
            StreamEvent::MessageDone { .. } => "message.done",
            StreamEvent::Error { .. } => "error",
        }
    }
}

string_enum! {
    Rating {
        Up = "up",
        Down = "down",
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct Feedback {
    #[garde(skip)]
    pub rating: Rating,
    #[serde(default)]
    #[garde(custom(v::optional(v::name::<2000>)))]
    pub comment: Option<String>,
}

/// A person's message in a conversation they took over.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct OperatorReply {
    #[garde(custom(v::name::<8000>))]
    pub content: String,
}

/// Filters and cursor for listing conversations; newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "ssr", into_params(parameter_in = Query))]
pub struct ConversationQuery {
    #[garde(skip)]
    pub status: Option<ConversationStatus>,
    #[garde(skip)]
    pub channel: Option<Channel>,
    /// `next_cursor` of the previous page.
    #[garde(skip)]
    pub cursor: Option<String>,
    /// Page size, 1–200 (default 50).
    #[garde(range(min = 1, max = 200))]
    pub limit: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct RouterRule {
    pub id: Uuid,
    pub name: String,
    /// The specialist the rule sends to.
    pub agent: String,
    pub kind: RuleKind,
    pub pattern: String,
    /// Higher wins when several rules match.
    pub priority: i32,
    pub enabled: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct CreateRouterRule {
    #[garde(custom(v::name::<100>))]
    pub name: String,
    #[garde(custom(v::agent_name))]
    pub agent: String,
    #[garde(skip)]
    pub kind: RuleKind,
    #[garde(custom(v::name::<2000>))]
    pub pattern: String,
    #[serde(default)]
    #[garde(range(min = -1000, max = 1000))]
    pub priority: i32,
    #[serde(default = "yes")]
    #[garde(skip)]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// One version of an agent's system prompt. Version 0 is the built-in default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct PromptVersion {
    pub version: u32,
    pub text: String,
    pub note: String,
    /// Who saved it (`default` for version 0).
    pub created_by: String,
    pub created_at: Option<DateTime<Utc>>,
}

/// An agent's prompt in use, its history (newest first) and the variables it may contain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct AgentPrompt {
    pub agent: String,
    pub current: PromptVersion,
    pub history: Vec<PromptVersion>,
    /// `{{company}}`, `{{business_hours}}`, `{{timezone}}`, `{{today}}`.
    pub variables: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct SavePrompt {
    /// 1–20000 characters.
    #[garde(custom(v::name::<20000>))]
    pub text: String,
    /// What changed, for the history (up to 200 characters).
    #[serde(default)]
    #[garde(custom(v::optional(v::name::<200>)))]
    pub note: Option<String>,
}

/// A unified diff between two versions of a prompt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct PromptDiff {
    pub from: u32,
    pub to: u32,
    pub diff: String,
}

/// The two versions to compare.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "ssr", into_params(parameter_in = Query))]
pub struct PromptDiffQuery {
    /// 0 is the built-in default.
    #[garde(skip)]
    pub from: u32,
    #[garde(skip)]
    pub to: u32,
}

/// The most agents a tenant may define besides the built-in ones.
pub const MAX_CUSTOM_AGENTS: usize = 20;

/// A specialist of the tenant: a built-in one (possibly changed) or one the tenant defined.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct Agent {
    pub name: String,
    /// What the router (and the other agents, when they transfer) read.
    pub description: String,
    pub built_in: bool,
    /// A built-in agent the tenant changed.
    pub customised: bool,
    /// Tool names, from `AgentCatalogue::tools`.
    pub tools: Vec<String>,
    /// The knowledge bases its searches read; empty reads all of the tenant's.
    pub knowledge_base_ids: Vec<Uuid>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// A tool an agent can be given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct AgentTool {
    pub name: String,
    pub description: String,
}

/// The tenant's agents and the tools they can be given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct AgentCatalogue {
    pub agents: Vec<Agent>,
    pub tools: Vec<AgentTool>,
}

/// A specialist the tenant defines. Its prompt becomes version 0 in the prompt editor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct CreateAgent {
    /// Lowercase letters, digits, `-` or `_`; not a built-in agent's name.
    #[garde(custom(v::agent_name))]
    pub name: String,
    /// 1–500 characters: what it handles, for the router.
    #[garde(custom(v::name::<500>))]
    pub description: String,
    /// 1–20000 characters; may use the prompt variables.
    #[garde(custom(v::name::<20000>))]
    pub prompt: String,
    #[serde(default)]
    #[garde(length(max = 10))]
    pub tools: Vec<String>,
    #[serde(default)]
    #[garde(length(max = 20))]
    pub knowledge_base_ids: Vec<Uuid>,
}

/// Changes to an agent; absent fields stay as they are.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct UpdateAgent {
    #[serde(default)]
    #[garde(custom(v::optional(v::name::<500>)))]
    pub description: Option<String>,
    #[serde(default)]
    #[garde(length(max = 10))]
    pub tools: Option<Vec<String>>,
    #[serde(default)]
    #[garde(length(max = 20))]
    pub knowledge_base_ids: Option<Vec<Uuid>>,
}

/// The period usage is summed over: conversations started in `[since, until)`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "ssr", into_params(parameter_in = Query))]
pub struct UsageQuery {
    /// Default: the first day of the current month (UTC).
    #[garde(skip)]
    pub since: Option<DateTime<Utc>>,
    /// Default: now.
    #[garde(skip)]
    pub until: Option<DateTime<Utc>>,
}

/// The LLM usage and cost of the tenant's conversations and workflow runs over a period
/// (tokens, cost and calls are the sum of both).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct UsageSummary {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub conversations: u64,
    /// Customer messages answered by the agents.
    pub turns: u64,
    /// Workflow runs started in the period (their model calls are counted below).
    #[serde(default)]
    pub workflow_runs: u64,
    /// Workflow steps tried in the editor that asked the model ("Test this step"; counted
    /// below too).
    #[serde(default)]
    pub step_tests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// US dollars, from the configured price table.
    pub cost_usd: f64,
    pub llm_calls: u64,
}
