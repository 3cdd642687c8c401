//! Conversation graphs: workflows started by a customer's message
//! ([`NodeKind::MessageTrigger`]).
//!
//! A tenant chooses one per channel (`channel_graphs`, `/api/v1/conversation-graphs`). Its
//! published version is compiled into a graph over the agents' [`TurnContext`] and answers
//! that channel's messages inside the turn, on the engine the default graph runs on: the Route,
//! Specialist and Handoff steps are the default graph's router, specialist (transfers
//! included) and handoff; the steps that answer at once (Set, Template, Condition, Switch,
//! Classifier, Knowledge, Ask the model) are the workflow steps themselves, generic over where
//! they run. Steps with effects, waits or runs of their own are refused when publishing: a
//! turn is not a durable run and has nothing to compensate with. The default graph
//! ([`crate::agents::default_graph`]) answers channels without a choice, and any whose choice
//! is gone or cannot be compiled.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, DatabaseConnection, EntityTrait,
    QueryFilter, QueryOrder, TransactionTrait,
};
use serde_json::{json, Value};
use uuid::Uuid;

use app::error::AppError;
use app::services::Access;
use app::types::{
    Channel, ChannelGraph, ConversationGraphs, NodeKind, OnError, RouteDecision, StepDetail,
    StreamEvent, WorkflowDefinition, WorkflowNode, GRAPH_CHANNELS,
};

use super::ai::{Asker, Asks};
use super::nodes::{self, context, text};
use super::{expr, DEFAULT_TIMEOUT_MS, MAX_RUN_STEPS};
use crate::agents::nodes::{HandoffNode, RouterNode, SpecialistNode, TransferNode};
use crate::agents::TurnContext;
use crate::engine::{ConvState, Events, Graph, Node, StepOutput, OUT};
use crate::store::audit_log::Record;
use crate::store::{channel_graphs, workflow_versions, workflows};
use crate::tenancy::db_error;

/// Why a Route, Specialist or Handoff step is refused elsewhere.
pub const ONLY: &str = "Route, Specialist and Handoff steps belong in a conversation graph (a \
    workflow that starts when a customer writes)";

/// Transfers between specialists one Specialist step answers (a transfer asked for beyond
/// them is answered by the last specialist).
const MAX_TRANSFERS: u32 = 3;

/// Whether `def` is a conversation graph.
pub fn is_conversation(def: &WorkflowDefinition) -> bool {
    super::trigger(def).is_some_and(|t| t.kind == NodeKind::MessageTrigger)
}

/// What keeps node `n` of a conversation graph from being published, if anything.
pub fn problem(n: &WorkflowNode) -> Option<String> {
    if !n.kind.in_conversation() {
        return Some(format!(
            "a conversation graph answers while the customer waits: a `{}` step cannot be in it \
             (it waits, runs apart or has effects a failed answer could not undo; start a \
             workflow on the message.created event for those)",
            n.kind.as_str()
        ));
    }
    if n.retry.attempts > 1 {
        return Some(
            "steps of a conversation graph are not tried again (the customer is waiting): set \
             attempts to 1"
                .into(),
        );
    }
    build(n).err()
}

/// What keeps conversation graph `def` as a whole from being published: (node, message).
pub fn graph_problems(def: &WorkflowDefinition) -> Vec<(Option<&str>, String)> {
    let mut out = Vec::new();
    // A specialist that asks for a person writes no answer itself: a Handoff step does.
    for n in def.nodes.iter().filter(|n| n.kind == NodeKind::Specialist) {
        if !def
            .edges
            .iter()
            .any(|e| e.from == n.id && e.port == "handoff")
        {
            out.push((
                Some(n.id.as_str()),
                "its `handoff` exit leads nowhere: connect it to a Handoff step (the specialist \
                 may ask for a person)"
                    .to_string(),
            ));
        }
    }
    if !def
        .nodes
        .iter()
        .any(|n| matches!(n.kind, NodeKind::Specialist | NodeKind::Handoff))
    {
        out.push((
            None,
            "a conversation graph needs a Specialist or Handoff step: nothing answers the \
             customer otherwise"
                .to_string(),
        ));
    }
    out
}

/// The runnable graph of a published conversation graph.
pub fn compile(def: &WorkflowDefinition) -> Result<Graph<TurnContext>, String> {
    let mut graph = super::graph_def(def).ok_or("the workflow has no single trigger")?;
    // No cycles (no loops are allowed): a turn passes each step once at most.
    graph.max_steps = u32::try_from(def.nodes.len() + 1)
        .unwrap_or(MAX_RUN_STEPS)
        .min(MAX_RUN_STEPS);
    Graph::build_with(&graph, |n| {
        let node = def
            .nodes
            .iter()
            .find(|w| w.id == n.id)
            .ok_or_else(|| format!("no node `{}`", n.id))?;
        build(node)
    })
    .map_err(|e| e.to_string())
}

fn build(n: &WorkflowNode) -> Result<Arc<dyn Node<TurnContext>>, String> {
    let agent = |key: &str| -> Result<Option<String>, String> {
        match n.config.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(_) => Err(format!("`{key}` must be an agent's name")),
        }
    };
    let template = |key: &str| text(&n.config, key).filter(|t| !t.trim().is_empty());
    let inner: Arc<dyn Node<TurnContext>> = match n.kind {
        NodeKind::Route => Arc::new(Route {
            agent: agent("agent")?,
        }),
        NodeKind::Specialist => Arc::new(Answer {
            agent: agent("agent")?,
            context: template("context"),
        }),
        NodeKind::Handoff => Arc::new(Handoff {
            reason: template("reason"),
        }),
        kind => nodes::build_shared(kind, &n.config)?.ok_or_else(|| {
            format!(
                "a `{}` step cannot be in a conversation graph",
                kind.as_str()
            )
        })?,
    };
    Ok(Arc::new(Guarded {
        inner,
        on_error: n.on_error.clone(),
        timeout: Duration::from_millis(n.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)),
    }))
}

impl Asks for TurnContext {
    fn asker(&self) -> Asker<'_> {
        Asker {
            agents: &self.rt,
            db: &self.db,
            access: self.access.clone(),
            spent: &self.spent,
        }
    }
}

/// A step with its node's time limit and failure rule (`on_error`), and what it spent asking
/// the model counted in its usage.
struct Guarded {
    inner: Arc<dyn Node<TurnContext>>,
    on_error: OnError,
    timeout: Duration,
}

#[async_trait::async_trait]
impl Node<TurnContext> for Guarded {
    async fn run(
        &self,
        cx: &TurnContext,
        state: &mut ConvState,
        events: Events<'_>,
    ) -> Result<StepOutput, String> {
        let result = tokio::time::timeout(self.timeout, self.inner.run(cx, state, events))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "the step took longer than {} ms",
                    self.timeout.as_millis()
                ))
            });
        let mut out = match (result, &self.on_error) {
            (Ok(out), _) => out,
            // What it spent stays in `cx.spent`: the turn adds it to the failed turn's usage.
            (Err(e), OnError::Fail) => return Err(e),
            (Err(e), OnError::Continue { value }) => {
                let mut out = nodes::done(value.clone());
                out.detail.error = Some(e);
                out
            }
            (Err(e), OnError::Branch) => {
                let mut out = nodes::leave("error", json!({ "error": e }));
                out.detail.error = Some(e);
                out
            }
        };
        let spent = take_spent(cx);
        out.detail.llm_calls += spent.llm_calls;
        out.usage.add(&spent);
        out.detail.port = Some(out.port.clone().unwrap_or_else(|| OUT.into()));
        Ok(out)
    }
}

/// What the turn's steps spent asking the model and have not yet counted (a step that failed
/// the turn leaves its calls there; the provider bills them all the same).
pub fn take_spent(cx: &TurnContext) -> app::types::Usage {
    cx.spent
        .lock()
        .map(|mut s| std::mem::take(&mut *s))
        .unwrap_or_default()
}

/// Route: the named agent, or the router's choice.
struct Route {
    agent: Option<String>,
}

#[async_trait::async_trait]
impl Node<TurnContext> for Route {
    async fn run(
        &self,
        cx: &TurnContext,
        state: &mut ConvState,
        events: Events<'_>,
    ) -> Result<StepOutput, String> {
        let mut out = match &self.agent {
            None => RouterNode.run(cx, state, events).await?,
            Some(name) => {
                let chosen = cx
                    .specialist(name)
                    .ok_or_else(|| format!("there is no agent named `{name}`"))?;
                let decision = RouteDecision {
                    agent: chosen.name.clone(),
                    by: "workflow".into(),
                    rule: None,
                };
                if state.agent.as_deref() != Some(decision.agent.as_str()) {
                    events(StreamEvent::AgentHandoff {
                        from: state.agent.clone(),
                        to: decision.agent.clone(),
                        reason: "workflow".into(),
                    });
                }
                state.agent = Some(decision.agent.clone());
                state.route = Some(decision.clone());
                StepOutput {
                    detail: StepDetail {
                        route: Some(decision),
                        ..Default::default()
                    },
                    ..Default::default()
                }
            }
        };
        let by = state.route.as_ref().map(|r| r.by.clone());
        out.output = Some(json!({ "agent": state.agent, "by": by }));
        Ok(out)
    }
}

/// Specialist: the chosen agent answers, and the one it transfers to.
struct Answer {
    agent: Option<String>,
    context: Option<String>,
}

#[async_trait::async_trait]
impl Node<TurnContext> for Answer {
    async fn run(
        &self,
        cx: &TurnContext,
        state: &mut ConvState,
        events: Events<'_>,
    ) -> Result<StepOutput, String> {
        // The customer gets an answer even when the context cannot be made (it names a step
        // this message did not pass, say): without it, the reason kept in the trace.
        let (context, unmade) = match self
            .context
            .as_deref()
            .map(|t| expr::render(t, &context(state)))
        {
            Some(Ok(text)) => (Some(text), None),
            Some(Err(e)) => (None, Some(format!("the context was left out: {e}"))),
            None => (None, None),
        };
        let mut answer = SpecialistNode {
            pinned: self.agent.clone(),
            context,
        };
        let mut out = answer.run(cx, state, events).await?;
        if out.detail.error.is_none() {
            out.detail.error = unmade;
        }
        let mut transfers = 0;
        while state.transfer.is_some() && transfers < MAX_TRANSFERS {
            transfers += 1;
            let moved = TransferNode.run(cx, state, events).await?;
            out.detail.route = moved.detail.route;
            // The agent asked for answers now, whatever this step names.
            answer.pinned = None;
            let next = answer.run(cx, state, events).await?;
            merge(&mut out, next);
        }
        state.transfer = None;
        out.output = Some(json!({ "answer": state.reply, "agent": state.agent }));
        if state.handoff.is_some() {
            out.port = Some("handoff".into());
        }
        Ok(out)
    }
}

/// Adds what a later specialist's answer did to the step's record.
fn merge(out: &mut StepOutput, next: StepOutput) {
    out.usage.add(&next.usage);
    out.detail.llm_calls += next.detail.llm_calls;
    out.detail.tool_calls.extend(next.detail.tool_calls);
    if next.detail.error.is_some() {
        out.detail.error = next.detail.error;
    }
    if next.detail.offline.is_some() {
        out.detail.offline = next.detail.offline;
    }
}

/// Handoff: a person takes over, for the step's reason or the specialist's.
struct Handoff {
    reason: Option<String>,
}

#[async_trait::async_trait]
impl Node<TurnContext> for Handoff {
    async fn run(
        &self,
        cx: &TurnContext,
        state: &mut ConvState,
        events: Events<'_>,
    ) -> Result<StepOutput, String> {
        if let Some(t) = &self.reason {
            let reason = expr::render(t, &context(state))?;
            if !reason.trim().is_empty() {
                state.handoff = Some(reason.trim().to_string());
            }
        }
        if state.handoff.is_none() {
            state.handoff = Some("handoff".into());
        }
        let mut out = HandoffNode.run(cx, state, events).await?;
        out.output = Some(json!({ "reason": state.handoff }));
        Ok(out)
    }
}

/// What a conversation graph's trigger gives its steps: the message, where it came from and
/// who answered last (templates read it as `trigger`).
pub fn trigger(state: &ConvState, channel: &str, conversation_id: uuid::Uuid) -> Value {
    json!({
        "message": state.input,
        "channel": channel,
        "conversation_id": conversation_id,
        "agent": state.agent,
    })
}

/// The tenant's choices, for the console and the API.
pub async fn graphs(db: &DatabaseConnection, tenant: Uuid) -> Result<ConversationGraphs, AppError> {
    let chosen = channel_graphs::Entity::find()
        .filter(channel_graphs::Column::TenantId.eq(tenant))
        .all(db)
        .await
        .map_err(db_error)?;
    let ids: Vec<Uuid> = chosen.iter().map(|c| c.workflow_id).collect();
    let rows = workflows::Entity::find()
        .filter(workflows::Column::TenantId.eq(tenant))
        .filter(
            Condition::any()
                .add(workflows::Column::TriggerKind.eq(NodeKind::MessageTrigger.as_str()))
                .add(workflows::Column::Id.is_in(ids)),
        )
        .order_by_asc(workflows::Column::Name)
        .all(db)
        .await
        .map_err(db_error)?;
    let channels = GRAPH_CHANNELS
        .iter()
        .map(|channel| {
            let row = chosen
                .iter()
                .find(|c| c.channel == channel.as_str())
                .and_then(|c| rows.iter().find(|w| w.id == c.workflow_id));
            ChannelGraph {
                channel: *channel,
                workflow_id: row.map(|w| w.id),
                workflow_name: row.map(|w| w.name.clone()),
                version: row
                    .and_then(|w| w.latest_version)
                    .and_then(|v| u32::try_from(v).ok()),
            }
        })
        .collect();
    let candidates = rows
        .into_iter()
        .filter(|w| w.trigger_kind.as_deref() == Some(NodeKind::MessageTrigger.as_str()))
        .map(super::service::summary)
        .collect();
    Ok(ConversationGraphs {
        channels,
        candidates,
    })
}

/// Chooses `workflow` (or the default graph) for `channel`; audited in the same transaction.
pub async fn choose(
    db: &DatabaseConnection,
    access: &Access,
    channel: Channel,
    workflow: Option<Uuid>,
) -> Result<(), AppError> {
    if !GRAPH_CHANNELS.contains(&channel) {
        return Err(AppError::invalid(
            "channel",
            format!(
                "a conversation graph answers one of: {}",
                GRAPH_CHANNELS
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let txn = db.begin().await.map_err(db_error)?;
    // A write first (SQLite: a transaction that reads before it writes fails when another
    // writer committed in between).
    Record::by(
        access,
        "workflow.conversation_graph",
        format!("channel:{}", channel.as_str()),
    )
    .details(json!({ "workflow_id": workflow }))
    .write(&txn)
    .await
    .map_err(db_error)?;
    channel_graphs::Entity::delete_many()
        .filter(channel_graphs::Column::TenantId.eq(access.tenant_id))
        .filter(channel_graphs::Column::Channel.eq(channel.as_str()))
        .exec(&txn)
        .await
        .map_err(db_error)?;
    if let Some(id) = workflow {
        let row = workflows::Entity::find_by_id(id)
            .filter(workflows::Column::TenantId.eq(access.tenant_id))
            .one(&txn)
            .await
            .map_err(db_error)?
            .ok_or_else(|| AppError::not_found("workflow"))?;
        if row.trigger_kind.as_deref() != Some(NodeKind::MessageTrigger.as_str()) {
            return Err(AppError::invalid(
                "workflow_id",
                format!(
                    "`{}` has no published version that starts when a customer writes (publish \
                     one whose start is \"A customer writes\")",
                    row.name
                ),
            ));
        }
        channel_graphs::ActiveModel {
            tenant_id: Set(access.tenant_id),
            channel: Set(channel.as_str().into()),
            workflow_id: Set(id),
            updated_by: Set(access.actor.label()),
            updated_at: Set(Utc::now()),
        }
        .insert(&txn)
        .await
        .map_err(db_error)?;
    }
    txn.commit().await.map_err(db_error)
}

/// A fingerprint of the tenant's choices and of the versions they answer with (read with the
/// tenant's other agent configuration on every turn: a change compiles the graphs again).
pub const FINGERPRINT: &str = "(SELECT CAST(COUNT(*) AS TEXT) || '/' || \
    COALESCE(CAST(MAX(c.updated_at) AS TEXT), '') || '/' || \
    CAST(COALESCE(SUM(w.latest_version), 0) AS TEXT) \
    FROM channel_graphs c JOIN workflows w ON w.id = c.workflow_id \
    WHERE c.tenant_id = tenants.id)";

/// The graph of each channel the tenant chose one for, compiled from the published versions. A
/// version that cannot be compiled is left out (its channel is answered by the default graph)
/// and logged.
pub async fn load(
    db: &DatabaseConnection,
    tenant: Uuid,
) -> Result<HashMap<String, Arc<Graph<TurnContext>>>, AppError> {
    let chosen = channel_graphs::Entity::find()
        .filter(channel_graphs::Column::TenantId.eq(tenant))
        .all(db)
        .await
        .map_err(db_error)?;
    let mut compiled: HashMap<Uuid, Option<Arc<Graph<TurnContext>>>> = HashMap::new();
    let mut out = HashMap::new();
    for choice in chosen {
        // A workflow chosen for several channels is compiled once.
        let graph = match compiled.get(&choice.workflow_id) {
            Some(graph) => graph.clone(),
            None => {
                let graph = published(db, tenant, choice.workflow_id).await?;
                compiled.insert(choice.workflow_id, graph.clone());
                graph
            }
        };
        if let Some(graph) = graph {
            out.insert(choice.channel, graph);
        }
    }
    Ok(out)
}

/// The compiled published version of `workflow`, if it is a conversation graph that compiles.
async fn published(
    db: &DatabaseConnection,
    tenant: Uuid,
    workflow: Uuid,
) -> Result<Option<Arc<Graph<TurnContext>>>, AppError> {
    let Some(number) = workflows::Entity::find_by_id(workflow)
        .filter(workflows::Column::TenantId.eq(tenant))
        .one(db)
        .await
        .map_err(db_error)?
        .and_then(|w| w.latest_version)
    else {
        return Ok(None);
    };
    let Some(version) = workflow_versions::Entity::find()
        .filter(workflow_versions::Column::TenantId.eq(tenant))
        .filter(workflow_versions::Column::WorkflowId.eq(workflow))
        .filter(workflow_versions::Column::Number.eq(number))
        .one(db)
        .await
        .map_err(db_error)?
    else {
        return Ok(None);
    };
    let def = super::service::definition_of(&version.definition);
    let problems = super::problems(&def);
    let graph = if !is_conversation(&def) {
        Err("its published version does not start when a customer writes".to_string())
    } else if let Some(p) = problems.first() {
        Err(p.message.clone())
    } else {
        compile(&def)
    };
    match graph {
        Ok(graph) => Ok(Some(Arc::new(graph))),
        Err(e) => {
            tracing::warn!(%tenant, %workflow, version = number, error = %e,
                "a conversation graph cannot answer; the default graph does");
            Ok(None)
        }
    }
}
