//! Workflows: a tenant's graphs of steps (console Workflows page, `/api/v1/workflows`), their
//! published versions and their runs.
//!
//! A definition is data the editor draws and the engine runs: nodes (a kind, a configuration,
//! a position on the canvas, a retry policy and what to do on failure) and edges between
//! ports. Values flow through expressions and templates over `trigger` (what started the run),
//! `vars` (the workflow's variables) and `nodes.<id>` (each earlier node's output).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[cfg(feature = "ssr")]
use utoipa::ToSchema;

/// The version of the definition format (`format` in exports).
pub const WORKFLOW_FORMAT: u32 = 1;

string_enum! {
    /// What a node does.
    NodeKind {
        /// Where a run starts when someone starts it: the console, the API (`POST
        /// /api/v1/workflows/{id}/runs`) or another workflow. Its output is the run's input.
        ManualTrigger = "manual_trigger",
        /// Where a run starts on a schedule, once published: `{"cron": "0 18 * * 1-5",
        /// "timezone": "Europe/Lisbon"}` (five fields, minute first; the tenant's time zone when
        /// `timezone` is empty). The run's input is `{"scheduled_at"}`; it can also be started
        /// like a manual one.
        ScheduleTrigger = "schedule_trigger",
        /// Where a run starts when a signed POST reaches the workflow's webhook URL
        /// (`/hooks/workflows/{id}`), once published: signed like the outgoing webhooks, with
        /// the workflow's secret. The run's input is the JSON body.
        WebhookTrigger = "webhook_trigger",
        /// Where a run starts when one of the tenant's events happens, once published:
        /// `{"event": "message.created"}` (the events outgoing webhooks carry). The run's input
        /// is the event: `{"id", "type", "created_at", "data"}`. Events caused by a workflow's
        /// own steps start none.
        EventTrigger = "event_trigger",
        /// Where a conversation graph starts: a customer's message on a channel the graph is
        /// chosen for (`PUT /api/v1/conversation-graphs/{channel}`). It runs inside the turn,
        /// not as a run: `trigger` is `{"message", "channel", "conversation_id", "agent"}` (the
        /// agent that answered last), and the turn ends at a Specialist or Handoff step with
        /// no way on. Only steps that answer at once may follow (Route, Specialist, Handoff,
        /// Set, Template, Condition, Switch, Classifier, Knowledge, Ask the model); `vars` are
        /// kept with the conversation from one message to the next.
        MessageTrigger = "message_trigger",
        /// Chooses the specialist for the message (conversation graphs): `{"agent": "sales"}`
        /// to send it to that one, or empty for the router's choice (the widget's pinned
        /// agent, the tenant's routing rules, then the router model). Output: `{"agent",
        /// "by"}`.
        Route = "route",
        /// The chosen specialist answers with its prompt, tools and knowledge (conversation
        /// graphs): `{"agent"}` (empty: the one Route chose), `"context"` (a template added
        /// to its instructions, like `{{ nodes.lookup.text }}`). A transfer to another
        /// specialist is answered within the step. Leaves by `handoff` when the conversation
        /// goes to a person, else by `out`. Output: `{"answer", "agent"}`.
        Specialist = "specialist",
        /// Hands the conversation to a person (conversation graphs): `{"reason"}` (template;
        /// the specialist's reason when it asked). Output: `{"reason"}`.
        Handoff = "handoff",
        /// Sets workflow variables: `{"values": {"name": "template", …}}`.
        Set = "set",
        /// Renders a text: `{"template": "Hello {{ trigger.name }}"}` → `{"text": …}`.
        Template = "template",
        /// Leaves by `true` or `false`: `{"expression": "nodes.check.status == 200"}`.
        Condition = "condition",
        /// For each item of a list: `{"items": "trigger.orders"}` (an expression giving a list),
        /// `"max"` (1–1,000, default 100; a longer list fails the step). Leaves by `each` with
        /// `{"item", "index", "count"}` once per item; the last step of that branch leads back
        /// to the loop, which then goes on with the next item, and by `done` with `{"count"}`
        /// after the last. Cycles are allowed only through a loop.
        Loop = "loop",
        /// Runs its branches at the same time: `{"branches": 2}` (2–10), one exit per branch
        /// (`branch1`, `branch2`, …). Each branch is a run of its own (the runs list hides
        /// them; the run's trace shows their steps) that starts with a copy of the run's values
        /// and ends where the branches meet, at one Join step. When every branch has arrived,
        /// the run goes on from the Join with what the branches' steps output (`nodes.<id>`)
        /// and set (`vars`). Output: `{"branches": [{"run_id", "status", "output"}, …]}`. A
        /// failed branch cancels the others and fails the step; if the run fails later, what the
        /// branches did is undone.
        Parallel = "parallel",
        /// Where a Parallel step's branches meet (each branch's last step leads here); the run
        /// goes on from it once all have arrived.
        Join = "join",
        /// Asks the tenant's model: `{"prompt", "system"}` (templates), `"model"` (`chat`, the
        /// default, `router`, or a model name of the tenant's provider) and, for structured
        /// output, `"output": {"field": "string" | "number" | "integer" | "boolean" | "list" |
        /// "object", …}`. Output: `{"text"}`, or the fields when `output` names some (an answer
        /// that does not have them with these types fails the step).
        Llm = "llm",
        /// Searches the tenant's knowledge bases that agents read: `{"query"}` (template),
        /// `"top_k"` (1–20, default 5), `"knowledge_base"` (a name or id; all of them when
        /// absent). Output: `{"found", "passages": [{"title", "text", "score", "document_id",
        /// "source"}], "text"}` (the passages joined, for a prompt).
        Knowledge = "knowledge",
        /// Sorts a text into one of the classes with the tenant's router model and leaves by
        /// that class's port, or `other`: `{"input"}` (template), `"classes": {"name":
        /// "description", …}`. Output: `{"class"}`.
        Classifier = "classifier",
        /// Leaves by the case whose value equals the rendered `value` (ignoring case and
        /// surrounding spaces), or `default`:
        /// `{"value": "{{ trigger.plan }}", "cases": {"port": "gold", …}}`. Output: `{"value",
        /// "case"}`.
        Switch = "switch",
        /// Asks one of the tenant's agents (specialists) in a conversation of its own (channel
        /// `workflow`): `{"agent": "sales", "message": "template"}`. Output: `{"answer",
        /// "agent", "handoff", "conversation_id"}`. If the run fails later, the bookings the
        /// agent made in that conversation are cancelled.
        Agent = "agent",
        /// An HTTP request to a public address: `{"method", "url", "headers", "body"}` (templates),
        /// with an optional `compensation` request of the same shape, sent if the run fails later.
        Http = "http",
        /// Queues an email: `{"to", "subject", "body"}` (templates). Not undoable; an optional
        /// `compensation` `{"subject", "body"}` is sent to the same address if the run fails later.
        Email = "email",
        /// Books in the tenant's calendar: `{"starts_at", "minutes", "name", "email", "note"}`
        /// (templates; `starts_at` in the tenant's time zone). Cancelled if the run fails later.
        Booking = "booking",
        /// Cancels a booking: `{"booking_id", "reason"}` (templates).
        CancelBooking = "cancel_booking",
        /// Runs another of the tenant's workflows (its trigger a Start step) and waits for it:
        /// `{"workflow": "name or id", "input": {"key": "template", …}}`. Output: `{"run_id",
        /// "status", "output"}`; a failed child fails the step. If the run fails later, an
        /// unfinished child is cancelled. At most 5 deep.
        Workflow = "workflow",
        /// Pauses until a person approves or rejects in the console or the API; leaves by
        /// `approved` or `rejected`. `{"prompt": "template"}`.
        Approval = "approval",
        /// Pauses: `{"seconds": n}` or `{"until": "RFC 3339 template"}`.
        Wait = "wait",
        /// Ends the run with an output: `{"output": {"key": "template", …}}`.
        End = "end",
    }
}

impl NodeKind {
    /// The ports a node of this kind leaves by (edges name one of them).
    pub fn ports(self) -> &'static [&'static str] {
        match self {
            NodeKind::Condition => &["true", "false"],
            NodeKind::Loop => &["each", "done"],
            // One per branch (see `WorkflowNode::ports`).
            NodeKind::Parallel => &[],
            NodeKind::Approval => &["approved", "rejected"],
            NodeKind::End | NodeKind::Handoff => &[],
            NodeKind::Specialist => &["out", "handoff"],
            NodeKind::Http
            | NodeKind::Email
            | NodeKind::Booking
            | NodeKind::CancelBooking
            | NodeKind::Llm
            | NodeKind::Knowledge
            | NodeKind::Workflow
            | NodeKind::Agent => &["out", "error"],
            // Besides one port per class or case (see `WorkflowNode::ports`).
            NodeKind::Classifier => &["other", "error"],
            NodeKind::Switch => &["default"],
            _ => &["out"],
        }
    }

    /// Where a classifier's classes or a switch's cases are (each names a port).
    pub fn named_ports(self) -> Option<&'static str> {
        match self {
            NodeKind::Classifier => Some("classes"),
            NodeKind::Switch => Some("cases"),
            _ => None,
        }
    }

    pub fn is_trigger(self) -> bool {
        matches!(
            self,
            NodeKind::ManualTrigger
                | NodeKind::ScheduleTrigger
                | NodeKind::WebhookTrigger
                | NodeKind::EventTrigger
                | NodeKind::MessageTrigger
        )
    }

    /// Whether a conversation graph (a workflow started by [`NodeKind::MessageTrigger`]) may
    /// hold it: the steps that answer at once, without effects a failed turn would have to
    /// undo or waits a customer would sit through.
    pub fn in_conversation(self) -> bool {
        matches!(
            self,
            NodeKind::MessageTrigger
                | NodeKind::Route
                | NodeKind::Specialist
                | NodeKind::Handoff
                | NodeKind::Set
                | NodeKind::Template
                | NodeKind::Condition
                | NodeKind::Switch
                | NodeKind::Classifier
                | NodeKind::Knowledge
                | NodeKind::Llm
        )
    }

    /// Whether only a conversation graph may hold it.
    pub fn conversation_only(self) -> bool {
        matches!(
            self,
            NodeKind::MessageTrigger | NodeKind::Route | NodeKind::Specialist | NodeKind::Handoff
        )
    }

    /// What the palette says about it.
    pub fn describe(self) -> &'static str {
        match self {
            NodeKind::ManualTrigger => "Start: from the console, the API or another workflow",
            NodeKind::ScheduleTrigger => "Start: on a schedule (cron, in your time zone)",
            NodeKind::WebhookTrigger => "Start: when a signed request reaches its URL",
            NodeKind::EventTrigger => "Start: when something happens (a message, a booking…)",
            NodeKind::MessageTrigger => "Start: a customer's message (conversation graph)",
            NodeKind::Route => "Choose the specialist for the message",
            NodeKind::Specialist => "The specialist answers (tools, knowledge)",
            NodeKind::Handoff => "Hand the conversation to a person",
            NodeKind::Set => "Set variables",
            NodeKind::Template => "Render a text from a template",
            NodeKind::Condition => "If / else on an expression",
            NodeKind::Loop => "For each item of a list (bounded)",
            NodeKind::Parallel => "Run branches at the same time",
            NodeKind::Join => "Wait for a Parallel step's branches",
            NodeKind::Workflow => "Run another workflow and wait for its output",
            NodeKind::Http => "HTTP request (undone by a request you define)",
            NodeKind::Email => "Send an email",
            NodeKind::Booking => "Book in the calendar (cancelled if the run fails)",
            NodeKind::CancelBooking => "Cancel a booking",
            NodeKind::Approval => "Wait for a person to approve or reject",
            NodeKind::Wait => "Wait for a time or a delay",
            NodeKind::End => "End the run with an output",
            NodeKind::Llm => "Ask the AI model (text or fields you name)",
            NodeKind::Knowledge => "Search the knowledge bases",
            NodeKind::Classifier => "Sort a text into classes you describe",
            NodeKind::Switch => "Branch on a value, one way per case",
            NodeKind::Agent => "Ask one of your agents (its bookings undone if the run fails)",
        }
    }
}

/// The most items a loop may go through (its `max` is 1 to this).
pub const MAX_LOOP_ITEMS: u64 = 1_000;

/// The most branches a Parallel step may have (its `branches` is 2 to this).
pub const MAX_BRANCHES: u64 = 10;

/// The exit of a Parallel step's branch `i` (from 1).
pub fn branch_port(i: u64) -> String {
    format!("branch{i}")
}

/// The events an event trigger may start on (each a `WebhookEvent` an endpoint can take).
pub const TRIGGER_EVENTS: &[&str] = &[
    "message.created",
    "handoff.requested",
    "booking.created",
    "booking.rescheduled",
    "booking.cancelled",
    "conversation.created",
    "document.ingested",
];

/// The types an LLM step's structured output fields may have (`list`: a list of texts).
pub const LLM_OUTPUT_TYPES: &[&str] = &["string", "number", "integer", "boolean", "list"];

/// Whether `id` may name a node: 1–64 letters, digits, `_` or `-`, and not `end` (the engine's
/// name for "the run stops here").
pub fn valid_node_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id != "end"
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Where a node sits on the canvas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct Position {
    pub x: f64,
    pub y: f64,
}

/// How often a failed node is tried again, and how long to wait in between: `initial_ms`,
/// doubled after each failure up to `max_ms`, half of it random (jitter). No cap on attempts
/// beyond the workflow's step limit.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(default)]
pub struct RetryPolicy {
    /// Tries in all (1: no retry).
    pub attempts: u32,
    pub initial_ms: u64,
    pub max_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 1,
            initial_ms: 1_000,
            max_ms: 3_600_000,
        }
    }
}

/// What a node's final failure does to the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OnError {
    /// The run fails; what earlier steps did is compensated.
    #[default]
    Fail,
    /// The node's output is `value` and the run goes on by `out`.
    Continue {
        #[serde(default)]
        value: serde_json::Value,
    },
    /// The run goes on by the node's `error` port, with `{"error": message}` as its output.
    Branch,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct WorkflowNode {
    /// Unique in the workflow: letters, digits, `_` and `-` (expressions name it as
    /// `nodes.<id>`).
    pub id: String,
    pub kind: NodeKind,
    /// The label on the canvas.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub config: serde_json::Value,
    #[serde(default)]
    pub position: Position,
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Longest one attempt may take (default 30 s, at most 10 minutes).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub on_error: OnError,
}

impl WorkflowNode {
    /// The ports this node leaves by: its kind's, and a classifier's classes or a switch's
    /// cases, in the order their configuration lists them, or a parallel step's branches.
    pub fn ports(&self) -> Vec<String> {
        if self.kind == NodeKind::Parallel {
            let n = self
                .config
                .get("branches")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
                .min(MAX_BRANCHES);
            return (1..=n).map(branch_port).collect();
        }
        let mut ports: Vec<String> = self
            .kind
            .named_ports()
            .and_then(|key| self.config.get(key))
            .and_then(serde_json::Value::as_object)
            .map(|names| names.keys().cloned().collect())
            .unwrap_or_default();
        ports.extend(self.kind.ports().iter().map(|p| p.to_string()));
        ports
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct WorkflowEdge {
    pub from: String,
    /// The port of `from` (default `out`).
    #[serde(default = "out_port")]
    pub port: String,
    pub to: String,
}

fn out_port() -> String {
    "out".into()
}

fn format_1() -> u32 {
    WORKFLOW_FORMAT
}

/// A workflow's graph, as drawn and as run; also the export format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct WorkflowDefinition {
    #[serde(default = "format_1")]
    pub format: u32,
    pub nodes: Vec<WorkflowNode>,
    #[serde(default)]
    pub edges: Vec<WorkflowEdge>,
    /// Workflow variables and their starting values (`vars.<name>`).
    #[serde(default)]
    #[cfg_attr(feature = "ssr", schema(value_type = Object))]
    pub variables: BTreeMap<String, serde_json::Value>,
}

impl Default for WorkflowDefinition {
    fn default() -> Self {
        WorkflowDefinition {
            format: WORKFLOW_FORMAT,
            nodes: Vec::new(),
            edges: Vec::new(),
            variables: BTreeMap::new(),
        }
    }
}

/// A problem that keeps a definition from being published, on a node when it has one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct WorkflowProblem {
    pub node: Option<String>,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct Workflow {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    /// The draft being edited (autosaved); runs use published versions.
    pub draft: WorkflowDefinition,
    /// Increases with every save of the draft: send it back as `base_revision` so a save made
    /// from a stale copy is refused instead of overwriting someone else's.
    pub draft_revision: i64,
    /// What would keep the draft from being published (empty: it can be).
    pub problems: Vec<WorkflowProblem>,
    /// The newest published version's number.
    pub latest_version: Option<u32>,
    /// When the published version's schedule starts the next run (its trigger is a schedule).
    #[serde(default)]
    pub next_run_at: Option<DateTime<Utc>>,
    /// Where a published webhook trigger takes signed requests.
    #[serde(default)]
    pub webhook_url: String,
    /// Whether a webhook secret was made (it is shown once, when made).
    #[serde(default)]
    pub webhook_secret_set: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Secrets one tenant may have for its HTTP steps.
pub const MAX_SECRETS: u64 = 100;

/// Whether `name` may name a secret: 1–64 letters, digits or `_`, not starting with a digit
/// (so `{{ secrets.NAME }}` reads it).
pub fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The channels a conversation graph may be chosen for (a workflow's `agent` step always
/// talks to its agent alone).
pub const GRAPH_CHANNELS: &[super::Channel] = &[
    super::Channel::Console,
    super::Channel::Api,
    super::Channel::Openai,
    super::Channel::Widget,
    super::Channel::Chatwoot,
];

/// Which graph answers a channel's messages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct ChannelGraph {
    pub channel: super::Channel,
    /// The workflow whose published version answers; none: the default graph (router →
    /// specialist → handoff).
    pub workflow_id: Option<Uuid>,
    pub workflow_name: Option<String>,
    /// Its version answering now.
    pub version: Option<u32>,
}

/// The tenant's choice of graph per channel (`/api/v1/conversation-graphs`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct ConversationGraphs {
    /// One per channel a graph may answer: console (the playground), api, openai, widget,
    /// chatwoot.
    pub channels: Vec<ChannelGraph>,
    /// The workflows that can be chosen: published, their published version started by a
    /// customer's message.
    pub candidates: Vec<WorkflowSummary>,
}

/// Chooses the graph of a channel (`PUT /api/v1/conversation-graphs/{channel}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct SetChannelGraph {
    /// A published workflow started by a customer's message; null for the default graph.
    #[serde(default)]
    pub workflow_id: Option<Uuid>,
}

/// A secret the tenant's HTTP steps use as `{{ secrets.NAME }}` (in a URL, a header or a
/// body). Its value is never returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct WorkflowSecret {
    pub name: String,
    /// Who set its current value.
    pub updated_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A secret's value, set whole (`PUT /api/v1/workflow-secrets/{name}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct SetWorkflowSecret {
    /// 1–8,192 characters.
    #[garde(length(min = 1, max = 8192))]
    pub value: String,
}

/// A workflow's webhook: its URL and a new signing secret, shown this once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct WorkflowWebhook {
    pub url: String,
    /// Sign `"{X-Webhook-Timestamp}.{body}"` with HMAC-SHA256 under it; the previous secret
    /// stops working now.
    pub secret: String,
}

/// A workflow in a list (no definition).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct WorkflowSummary {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub nodes: u32,
    pub latest_version: Option<u32>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct CreateWorkflow {
    /// 1–100 characters, unique in the tenant.
    #[garde(length(min = 1, max = 100))]
    pub name: String,
    /// At most 500 characters.
    #[garde(length(max = 500))]
    #[serde(default)]
    pub description: String,
    /// The starting draft (an export, say); a manual trigger alone when absent.
    #[garde(skip)]
    #[serde(default)]
    pub definition: Option<WorkflowDefinition>,
}

/// A save of the draft (the editor autosaves); absent fields stay as they are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct UpdateWorkflow {
    #[garde(inner(length(min = 1, max = 100)))]
    #[serde(default)]
    pub name: Option<String>,
    #[garde(inner(length(max = 500)))]
    #[serde(default)]
    pub description: Option<String>,
    #[garde(skip)]
    #[serde(default)]
    pub draft: Option<WorkflowDefinition>,
    /// The `draft_revision` the change was made on; refused (409) when the draft has moved on.
    #[garde(skip)]
    #[serde(default)]
    pub base_revision: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct PublishWorkflow {
    /// What changed, for the version list; at most 500 characters.
    #[garde(length(max = 500))]
    #[serde(default)]
    pub note: String,
}

/// A published version: immutable; runs are pinned to the version they started on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct WorkflowVersion {
    pub id: Uuid,
    pub workflow_id: Uuid,
    pub number: u32,
    pub note: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub definition: WorkflowDefinition,
}

/// What changed between two versions (`from` → `to`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct WorkflowDiff {
    pub from: u32,
    /// The version compared with (0 when `to_draft`).
    pub to: u32,
    /// Compared with the draft as it is now, not with a version.
    #[serde(default)]
    pub to_draft: bool,
    pub added_nodes: Vec<String>,
    pub removed_nodes: Vec<String>,
    /// Nodes whose kind, name, configuration, retry, timeout or error handling changed.
    pub changed_nodes: Vec<NodeChange>,
    /// Nodes that only moved on the canvas.
    pub moved_nodes: Vec<String>,
    pub added_edges: Vec<WorkflowEdge>,
    pub removed_edges: Vec<WorkflowEdge>,
    /// Variables added, removed or given another starting value.
    pub changed_variables: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct NodeChange {
    pub node: String,
    /// The top-level fields that differ (`kind`, `name`, `config.url`, `retry`, …).
    pub fields: Vec<String>,
}

string_enum! {
    /// Where a run is.
    RunStatus {
        /// Waiting for a worker.
        Queued = "queued",
        Running = "running",
        /// Paused: for a person's approval, a time, or the next try of a failed step.
        Waiting = "waiting",
        Succeeded = "succeeded",
        /// A step failed for good; what earlier steps did was compensated (see `compensation`).
        Failed = "failed",
        /// Cancelled from the console or the API; compensated like a failure.
        Cancelled = "cancelled",
    }
}

impl RunStatus {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

string_enum! {
    /// How far a failed or cancelled run's effects were undone.
    CompensationOutcome {
        /// Nothing had to be undone.
        Nothing = "nothing",
        /// Every compensation ran (or found nothing left to undo).
        Full = "full",
        /// Some could not be undone: they failed after their retries or are not undoable
        /// (a sent email without a follow-up).
        Partial = "partial",
    }
}

/// Why a waiting run waits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunWait {
    Approval {
        node: String,
        prompt: String,
    },
    Until {
        node: String,
        at: DateTime<Utc>,
    },
    Retry {
        node: String,
        attempt: u32,
        at: DateTime<Utc>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct WorkflowRun {
    pub id: Uuid,
    pub workflow_id: Uuid,
    pub version: u32,
    pub status: RunStatus,
    /// `manual`, `api`, `workflow`, `replay`, …
    pub trigger: String,
    pub input: serde_json::Value,
    /// What the end node returned.
    pub output: Option<serde_json::Value>,
    pub error: Option<String>,
    pub waiting: Option<RunWait>,
    /// Set once a failed or cancelled run's compensations are done.
    pub compensation: Option<CompensationOutcome>,
    pub steps: u32,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The model's tokens, cost and calls its steps spent (an agent step's are its
    /// conversation's).
    #[serde(default)]
    pub usage: super::Usage,
}

string_enum! {
    StepStatus {
        Running = "running",
        Succeeded = "succeeded",
        /// Failed; the run tried again, took the error branch, went on or failed (see the run).
        Failed = "failed",
        /// Asked to be run again later (approval, wait).
        Suspended = "suspended",
    }
}

/// One attempt of one node in a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct RunStep {
    pub seq: u32,
    pub node: String,
    pub kind: NodeKind,
    pub attempt: u32,
    pub status: StepStatus,
    pub output: Option<serde_json::Value>,
    pub port: Option<String>,
    pub error: Option<String>,
    pub duration_ms: Option<u32>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

string_enum! {
    CompensationStatus {
        /// Registered before its step ran; runs if the run fails or is cancelled.
        Registered = "registered",
        /// Undone.
        Done = "done",
        /// Nothing was left to undo (the step had not applied its effect).
        Skipped = "skipped",
        /// Failed after its retries.
        Failed = "failed",
        /// The effect cannot be undone (an email without a follow-up).
        NotCompensable = "not_compensable",
        /// The run succeeded; nothing was undone.
        Released = "released",
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct RunCompensation {
    /// The step it undoes.
    pub seq: u32,
    pub node: String,
    pub action: serde_json::Value,
    pub status: CompensationStatus,
    pub attempts: u32,
    pub error: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A run with its trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct RunDetail {
    pub run: WorkflowRun,
    pub steps: Vec<RunStep>,
    /// In the order they were registered (they run in reverse).
    pub compensations: Vec<RunCompensation>,
    /// The runs of its Parallel steps' branches (and of theirs), with their steps.
    #[serde(default)]
    pub branches: Vec<BranchTrace>,
}

/// One branch of a Parallel step: its own run, and the steps it took.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct BranchTrace {
    pub run: WorkflowRun,
    pub steps: Vec<RunStep>,
    pub compensations: Vec<RunCompensation>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct StartRun {
    /// The trigger's payload (`trigger.*`); at most 64 KiB as JSON.
    #[garde(skip)]
    #[serde(default)]
    pub input: serde_json::Value,
    /// A version number; the newest when absent.
    #[garde(skip)]
    #[serde(default)]
    pub version: Option<u32>,
}

/// A person's answer to a run waiting for approval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct ApprovalDecision {
    #[garde(skip)]
    pub approved: bool,
    /// At most 1,000 characters (`nodes.<id>.comment`).
    #[garde(length(max = 1000))]
    #[serde(default)]
    pub comment: String,
}

/// Filters of the runs list.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "ssr", into_params(parameter_in = Query))]
pub struct RunQuery {
    #[garde(skip)]
    pub status: Option<RunStatus>,
    /// Runs of this version only.
    #[garde(skip)]
    pub version: Option<u32>,
    #[garde(length(max = 40))]
    pub trigger: Option<String>,
    /// `next_cursor` of the previous page.
    #[garde(skip)]
    pub cursor: Option<String>,
    /// Page size, 1–100 (default 20).
    #[garde(range(min = 1, max = 100))]
    pub limit: Option<u32>,
}

/// The two versions to compare (`to` absent: the draft).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "ssr", into_params(parameter_in = Query))]
pub struct VersionDiffQuery {
    #[garde(skip)]
    pub from: u32,
    /// A version number; absent: the draft as it is now.
    #[garde(skip)]
    #[serde(default)]
    pub to: Option<u32>,
}

/// A trial of one node of the draft with sample values (the editor's "Test this step"). Nothing
/// leaves the platform: requests, emails and bookings are filled in and shown, not sent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct TestNode {
    /// The id of a node of the saved draft (not needed with `step`).
    #[garde(length(max = 64))]
    #[serde(default)]
    pub node: String,
    /// The trigger's payload (`trigger.*`).
    #[garde(skip)]
    #[serde(default)]
    pub trigger: serde_json::Value,
    /// Sample outputs of earlier nodes, by id (`nodes.<id>.*`).
    #[garde(skip)]
    #[serde(default)]
    pub nodes: serde_json::Value,
    /// The variables (`vars.*`); the workflow's starting values when absent.
    #[garde(skip)]
    #[serde(default)]
    pub vars: Option<serde_json::Value>,
    /// The node as it is being edited (kind and configuration), saved or not.
    #[garde(skip)]
    #[serde(default)]
    pub step: Option<WorkflowNode>,
}

/// What a node would do with the sample values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct NodeTest {
    pub node: String,
    pub kind: NodeKind,
    /// Its configuration with the templates filled in: what it would send, book or email.
    pub rendered: Option<serde_json::Value>,
    /// What later nodes would read as `nodes.<id>.*` (none where it comes from the effect).
    pub output: Option<serde_json::Value>,
    /// The exit it would leave by.
    pub port: Option<String>,
    /// Why it would fail.
    pub error: Option<String>,
    /// What a run does here that a test does not.
    pub note: Option<String>,
}
