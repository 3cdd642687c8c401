//! `WorkflowService`: drafts, versions and runs of a tenant's workflows (`workflows:read` /
//! `workflows:write`); every change audited in its own transaction.

use std::sync::Arc;

use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, DatabaseConnection, DatabaseTransaction, IntoActiveModel, Order, QueryOrder,
    TransactionTrait,
};
use serde_json::json;

use app::error::{AppError, FieldError};
use app::services::{Access, Actor, WorkflowService};
use app::types::{
    valid_secret_name, ApprovalDecision, Area, BranchTrace, Channel, CompensationOutcome,
    CompensationStatus, ConversationGraphs, CreateWorkflow, Level, NodeKind, NodeTest, Page,
    PublishWorkflow, RunCompensation, RunDetail, RunQuery, RunStatus, RunStep, RunWait,
    SetChannelGraph, SetWorkflowSecret, StartRun, StepStatus, TestNode, UpdateWorkflow, Workflow,
    WorkflowDefinition, WorkflowDiff, WorkflowRun, WorkflowSecret, WorkflowSummary,
    WorkflowVersion, WorkflowWebhook, MAX_SECRETS,
};
use app::validate::check;

use super::{nodes, run, MAX_ACTIVE_RUNS, MAX_DEFINITION_BYTES, MAX_INPUT_BYTES};
use crate::jobs::{JobContext, JobHandler, Permanent};
use crate::secrets::{self, KeyRing};
use crate::store::audit_log::Record;
use crate::store::{
    channel_graphs, job_schedules, tenants, workflow_compensations, workflow_runs,
    workflow_secrets, workflow_steps, workflow_test_usage, workflow_versions, workflows,
};
use crate::tenancy::db_error;

const DEFAULT_PAGE: u32 = 20;

pub struct WorkflowServiceImpl {
    db: DatabaseConnection,
    /// What the LLM, knowledge and classifier steps use, for "Test this step".
    agents: Arc<crate::agents::Runtime>,
    /// Seals the webhook triggers' secrets.
    keys: KeyRing,
    /// The console's address, for the webhook URLs.
    console_url: String,
}

/// A workflow as the list shows it.
pub(super) fn summary(m: workflows::Model) -> WorkflowSummary {
    WorkflowSummary {
        id: m.id,
        nodes: m.draft["nodes"]
            .as_array()
            .map_or(0, |n| u32::try_from(n.len()).unwrap_or(u32::MAX)),
        name: m.name,
        description: m.description,
        latest_version: m.latest_version.and_then(|v| u32::try_from(v).ok()),
        updated_at: m.updated_at,
    }
}

pub(super) fn definition_of(value: &serde_json::Value) -> WorkflowDefinition {
    serde_json::from_value(value.clone()).unwrap_or_default()
}

fn to_workflow(m: workflows::Model, console_url: &str) -> Workflow {
    let draft = definition_of(&m.draft);
    Workflow {
        webhook_url: webhook_url(console_url, m.id),
        webhook_secret_set: m.webhook_secret.is_some(),
        id: m.id,
        name: m.name,
        description: m.description,
        problems: super::problems(&draft),
        draft,
        draft_revision: m.draft_revision,
        latest_version: m.latest_version.and_then(|v| u32::try_from(v).ok()),
        next_run_at: None,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

/// The job kind that starts a run of a workflow whose published trigger is a schedule (the
/// schedule's payload names the workflow).
pub const SCHEDULED: &str = "workflow.scheduled";
/// The job kind that starts a run of a workflow whose published trigger is the tenant's event
/// (`{"workflow_id", "event"}`; queued with the event, see `integrations::webhooks`).
pub const EVENT: &str = "workflow.event";
/// What a webhook trigger's secret is bound to (with the tenant id).
pub const SECRET_PURPOSE: &str = "workflow.webhook";

/// Where a workflow's webhook trigger takes signed requests, below the console's address.
pub fn hook_path(id: Uuid) -> String {
    format!("/hooks/workflows/{id}")
}

fn webhook_url(console_url: &str, id: Uuid) -> String {
    format!("{}{}", console_url.trim_end_matches('/'), hook_path(id))
}

/// Re-encrypts every webhook trigger's secret not yet under the current key.
pub async fn rotate(db: &DatabaseConnection, keys: &KeyRing) -> Result<secrets::Rotation, DbErr> {
    secrets::rotate_column::<workflows::Entity>(
        db,
        keys,
        "workflow webhook secret",
        SECRET_PURPOSE,
        (
            workflows::Column::Id,
            workflows::Column::TenantId,
            workflows::Column::WebhookSecret,
        ),
    )
    .await
}

/// What started a run without a person, once per `key`.
struct Origin {
    by: Started,
    key: String,
    lineage: Option<Lineage>,
    /// A Parallel step's branch: where it starts and the values it starts with.
    branch: Option<BranchStart>,
}

struct BranchStart {
    node: String,
    state: serde_json::Value,
}

/// Branch runs a run's trace shows at most (a Parallel step in a long loop makes many).
const MAX_TRACED_BRANCHES: u64 = 100;

/// Where a run started by another run's step stands: how deep, and which run waits for it.
pub struct Lineage {
    pub depth: u64,
    pub parent: Uuid,
}

/// What starts a run without a person: the system actor's task, which is also the run's
/// `trigger`, and the kind of trigger the published version must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Started {
    Schedule,
    Event,
    Webhook,
    /// Another workflow's "Run a workflow" step.
    Workflow,
    /// A branch of a Parallel step (a run of the same version).
    Branch,
}

impl Started {
    fn task(self) -> &'static str {
        match self {
            Started::Schedule => "schedule",
            Started::Event => "event",
            Started::Webhook => "webhook",
            Started::Workflow => "workflow",
            Started::Branch => "branch",
        }
    }

    fn kind(self) -> NodeKind {
        match self {
            Started::Schedule => NodeKind::ScheduleTrigger,
            Started::Event => NodeKind::EventTrigger,
            Started::Webhook => NodeKind::WebhookTrigger,
            Started::Workflow | Started::Branch => NodeKind::ManualTrigger,
        }
    }

    /// Who starts the run: the platform, with `workflows:write` in the tenant only.
    fn access(self, tenant_id: Uuid) -> Access {
        Access {
            tenant_id,
            actor: Actor::System {
                task: self.task().into(),
            },
            role: None,
            scopes: app::types::Scope::parse("workflows:write")
                .into_iter()
                .collect(),
            ip: None,
        }
    }
}

/// The job schedule of a workflow (one per workflow, per tenant).
fn schedule_name(id: Uuid) -> String {
    format!("workflow:{id}")
}

/// Removes the workflow's job schedule, if it has one.
async fn remove_schedule(
    txn: &DatabaseTransaction,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<(), AppError> {
    job_schedules::Entity::delete_many()
        .filter(job_schedules::Column::TenantId.eq(tenant_id))
        .filter(job_schedules::Column::Name.eq(schedule_name(id)))
        .exec(txn)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Makes the workflow's job schedule follow the trigger of the version being published: a
/// schedule trigger sets it (in its time zone, or the tenant's), any other removes it.
async fn sync_schedule(
    txn: &DatabaseTransaction,
    tenant_id: Uuid,
    id: Uuid,
    def: &WorkflowDefinition,
) -> Result<(), AppError> {
    let Some(trigger) = super::trigger(def).filter(|t| t.kind == NodeKind::ScheduleTrigger) else {
        return remove_schedule(txn, tenant_id, id).await;
    };
    let text = |key: &str| {
        trigger
            .config
            .get(key)
            .and_then(serde_json::Value::as_str)
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    };
    let timezone = match text("timezone") {
        Some(tz) => tz,
        None => tenants::Entity::find_by_id(tenant_id)
            .one(txn)
            .await
            .map_err(db_error)?
            .map_or_else(|| "UTC".to_string(), |t| t.timezone),
    };
    let cron = text("cron").unwrap_or_default();
    crate::jobs::schedule::ensure(
        txn,
        Some(tenant_id),
        &schedule_name(id),
        SCHEDULED,
        &cron,
        &timezone,
        json!({ "workflow_id": id }),
    )
    .await
    .map_err(db_error)?;
    Ok(())
}

fn to_version(m: workflow_versions::Model) -> WorkflowVersion {
    WorkflowVersion {
        id: m.id,
        workflow_id: m.workflow_id,
        number: u32::try_from(m.number).unwrap_or(0),
        note: m.note,
        created_by: m.created_by,
        created_at: m.created_at,
        definition: definition_of(&m.definition),
    }
}

pub fn to_run(m: workflow_runs::Model) -> WorkflowRun {
    WorkflowRun {
        id: m.id,
        workflow_id: m.workflow_id,
        version: u32::try_from(m.version_number).unwrap_or(0),
        status: RunStatus::parse(&m.status).unwrap_or(RunStatus::Queued),
        trigger: m.trigger,
        input: m.input,
        output: m.output,
        error: m.error,
        waiting: m.waiting.and_then(|w| serde_json::from_value(w).ok()),
        compensation: m
            .compensation
            .as_deref()
            .and_then(CompensationOutcome::parse),
        steps: u32::try_from(m.seq).unwrap_or(0),
        created_by: m.created_by,
        created_at: m.created_at,
        finished_at: m.finished_at,
        usage: app::types::Usage {
            prompt_tokens: u64::try_from(m.prompt_tokens).unwrap_or(0),
            completion_tokens: u64::try_from(m.completion_tokens).unwrap_or(0),
            cost_usd: m.cost_micros as f64 / 1_000_000.0,
            llm_calls: u32::try_from(m.llm_calls).unwrap_or(0),
        },
    }
}

fn to_secret(m: workflow_secrets::Model) -> WorkflowSecret {
    WorkflowSecret {
        name: m.name,
        updated_by: m.updated_by,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

fn to_step(m: workflow_steps::Model) -> RunStep {
    RunStep {
        seq: u32::try_from(m.seq).unwrap_or(0),
        node: m.node,
        kind: NodeKind::parse(&m.kind).unwrap_or(NodeKind::ManualTrigger),
        attempt: u32::try_from(m.attempt).unwrap_or(0),
        status: StepStatus::parse(&m.status).unwrap_or(StepStatus::Running),
        output: m.output,
        port: m.port,
        error: m.error,
        duration_ms: m.duration_ms.and_then(|d| u32::try_from(d).ok()),
        started_at: m.started_at,
        finished_at: m.finished_at,
    }
}

fn to_compensation(m: workflow_compensations::Model) -> RunCompensation {
    RunCompensation {
        seq: u32::try_from(m.seq).unwrap_or(0),
        node: m.node,
        action: m.action,
        status: CompensationStatus::parse(&m.status).unwrap_or(CompensationStatus::Registered),
        attempts: u32::try_from(m.attempts).unwrap_or(0),
        error: m.error,
        finished_at: m.finished_at,
    }
}

/// A definition small enough to store, as JSON.
fn stored(def: &WorkflowDefinition, field: &str) -> Result<serde_json::Value, AppError> {
    let value = serde_json::to_value(def).map_err(|e| AppError::Internal(e.to_string()))?;
    let size = value.to_string().len();
    if size > MAX_DEFINITION_BYTES {
        return Err(AppError::invalid(
            field,
            format!("the definition is {size} bytes; the limit is {MAX_DEFINITION_BYTES}"),
        ));
    }
    if def.nodes.len() > super::MAX_NODES {
        return Err(AppError::invalid(
            field,
            format!("a workflow may have at most {} nodes", super::MAX_NODES),
        ));
    }
    Ok(value)
}

/// Where a run was started from, by whom it was started.
fn trigger_of(access: &Access) -> &'static str {
    match &access.actor {
        Actor::System { task } => [
            Started::Schedule,
            Started::Event,
            Started::Webhook,
            Started::Workflow,
            Started::Branch,
        ]
        .into_iter()
        .map(Started::task)
        .find(|t| t == task)
        .unwrap_or("system"),
        Actor::User { .. } => "console",
        Actor::ApiKey { .. } => "api",
        Actor::Cli => "cli",
        _ => "system",
    }
}

fn not_final() -> sea_orm::sea_query::SimpleExpr {
    workflow_runs::Column::Status.is_not_in(run::FINAL)
}

impl WorkflowServiceImpl {
    pub fn new(
        db: DatabaseConnection,
        agents: Arc<crate::agents::Runtime>,
        keys: KeyRing,
        console_url: String,
    ) -> Self {
        WorkflowServiceImpl {
            db,
            agents,
            keys,
            console_url,
        }
    }

    /// The workflow `m`, with when its schedule starts the next run.
    async fn workflow(&self, m: workflows::Model) -> Result<Workflow, AppError> {
        let tenant_id = m.tenant_id;
        let mut w = to_workflow(m, &self.console_url);
        w.next_run_at = job_schedules::Entity::find()
            .filter(job_schedules::Column::TenantId.eq(tenant_id))
            .filter(job_schedules::Column::Name.eq(schedule_name(w.id)))
            .filter(job_schedules::Column::Enabled.eq(true))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .map(|s| s.next_run_at);
        Ok(w)
    }

    async fn row(&self, access: &Access, id: Uuid) -> Result<workflows::Model, AppError> {
        workflows::Entity::find_by_id(id)
            .filter(workflows::Column::TenantId.eq(access.tenant_id))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or_else(|| AppError::not_found("workflow"))
    }

    async fn version_row(
        &self,
        access: &Access,
        id: Uuid,
        number: u32,
    ) -> Result<workflow_versions::Model, AppError> {
        workflow_versions::Entity::find()
            .filter(workflow_versions::Column::TenantId.eq(access.tenant_id))
            .filter(workflow_versions::Column::WorkflowId.eq(id))
            .filter(workflow_versions::Column::Number.eq(i32::try_from(number).unwrap_or(i32::MAX)))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or_else(|| AppError::not_found("version"))
    }

    async fn run_row(&self, access: &Access, id: Uuid) -> Result<workflow_runs::Model, AppError> {
        workflow_runs::Entity::find_by_id(id)
            .filter(workflow_runs::Column::TenantId.eq(access.tenant_id))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or_else(|| AppError::not_found("run"))
    }

    async fn name_taken(
        &self,
        access: &Access,
        name: &str,
        except: Option<Uuid>,
    ) -> Result<bool, AppError> {
        let mut q = workflows::Entity::find()
            .filter(workflows::Column::TenantId.eq(access.tenant_id))
            .filter(workflows::Column::Name.eq(name));
        if let Some(id) = except {
            q = q.filter(workflows::Column::Id.ne(id));
        }
        Ok(q.count(&self.db).await.map_err(db_error)? > 0)
    }

    /// Writes the draft (and name, description) if it is still at `base` (any when `None`).
    async fn save_draft(
        &self,
        access: &Access,
        row: &workflows::Model,
        changes: DraftChanges,
        action: &'static str,
        details: serde_json::Value,
    ) -> Result<Workflow, AppError> {
        let now = Utc::now();
        let revision = row.draft_revision + 1;
        let txn = self.db.begin().await.map_err(db_error)?;
        let mut update = workflows::Entity::update_many()
            .filter(workflows::Column::Id.eq(row.id))
            .filter(workflows::Column::TenantId.eq(access.tenant_id))
            .filter(workflows::Column::DraftRevision.eq(changes.base.unwrap_or(row.draft_revision)))
            .col_expr(workflows::Column::DraftRevision, Expr::value(revision))
            .col_expr(workflows::Column::UpdatedAt, Expr::value(now));
        if let Some(name) = &changes.name {
            update = update.col_expr(workflows::Column::Name, Expr::value(name.clone()));
        }
        if let Some(description) = &changes.description {
            update = update.col_expr(
                workflows::Column::Description,
                Expr::value(description.clone()),
            );
        }
        if let Some(draft) = &changes.draft {
            update = update.col_expr(workflows::Column::Draft, Expr::value(draft.clone()));
        }
        let saved = update.exec(&txn).await.map_err(db_error)?;
        if saved.rows_affected != 1 {
            txn.rollback().await.map_err(db_error)?;
            return Err(AppError::Conflict(
                "the draft was changed elsewhere since it was loaded; reload it and apply the change again".into(),
            ));
        }
        Record::by(access, action, format!("workflow:{}", row.id))
            .details(details)
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        self.workflow(workflows::Model {
            name: changes.name.unwrap_or_else(|| row.name.clone()),
            description: changes
                .description
                .unwrap_or_else(|| row.description.clone()),
            draft: changes.draft.unwrap_or_else(|| row.draft.clone()),
            draft_revision: revision,
            updated_at: now,
            ..row.clone()
        })
        .await
    }
}

struct DraftChanges {
    base: Option<i64>,
    name: Option<String>,
    description: Option<String>,
    draft: Option<serde_json::Value>,
}

impl WorkflowServiceImpl {
    /// Starts a run of the latest version as the platform (`by`), once per `key`: a
    /// delivery, an event or a tick that arrives again gets the run it started. Refused with
    /// `not_found` when the latest version's trigger is not `by`'s kind (a webhook reaching a
    /// workflow published with another trigger, an event queued before a republish).
    pub async fn start_by(
        &self,
        tenant_id: Uuid,
        id: Uuid,
        by: Started,
        input: serde_json::Value,
        key: String,
    ) -> Result<WorkflowRun, AppError> {
        self.start_from(tenant_id, id, by, input, key, None).await
    }

    /// Starts a run for another run's "Run a workflow" step (see `start_by`): it records its
    /// depth and its caller, whose step its end wakes.
    pub async fn start_child(
        &self,
        tenant_id: Uuid,
        id: Uuid,
        input: serde_json::Value,
        key: String,
        depth: u64,
        parent: Uuid,
    ) -> Result<WorkflowRun, AppError> {
        let lineage = Lineage { depth, parent };
        self.start_from(tenant_id, id, Started::Workflow, input, key, Some(lineage))
            .await
    }

    /// Undoes what another run's step started with `key`: cancels the run if it has not
    /// finished (it then undoes its own steps). One that failed or was cancelled undid itself;
    /// one that succeeded stands.
    pub async fn cancel_child(
        &self,
        tenant_id: Uuid,
        key: &str,
    ) -> Result<CompensationStatus, AppError> {
        let Some(child) = workflow_runs::Entity::find()
            .filter(workflow_runs::Column::TenantId.eq(tenant_id))
            .filter(workflow_runs::Column::TriggerKey.eq(key))
            .one(&self.db)
            .await
            .map_err(db_error)?
        else {
            return Ok(CompensationStatus::Skipped);
        };
        let access = Started::Workflow.access(tenant_id);
        match self.cancel_run(&access, child.id).await {
            Ok(_) => Ok(CompensationStatus::Done),
            // It had finished.
            Err(AppError::Conflict(_)) => {
                let finished = self.run_row(&access, child.id).await?;
                Ok(if finished.status == RunStatus::Succeeded.as_str() {
                    CompensationStatus::NotCompensable
                } else {
                    CompensationStatus::Skipped
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Starts a branch of run `parent`'s Parallel step: a run of the parent's version from
    /// `node`, with `state` (the parent's values and where the branch ends), keyed by `key`.
    pub async fn start_branch(
        &self,
        tenant_id: Uuid,
        parent: Uuid,
        node: String,
        state: serde_json::Value,
        key: String,
    ) -> Result<WorkflowRun, AppError> {
        let access = Started::Branch.access(tenant_id);
        let from = self.run_row(&access, parent).await?;
        let start = StartRun {
            input: state["vars"]["trigger"].clone(),
            version: Some(u32::try_from(from.version_number).unwrap_or(0)),
        };
        let origin = Origin {
            by: Started::Branch,
            key,
            lineage: Some(Lineage {
                depth: from.state["vars"]["depth"].as_u64().unwrap_or(0),
                parent,
            }),
            branch: Some(BranchStart { node, state }),
        };
        self.start(&access, from.workflow_id, start, Some(origin))
            .await
    }

    async fn start_from(
        &self,
        tenant_id: Uuid,
        id: Uuid,
        by: Started,
        input: serde_json::Value,
        key: String,
        lineage: Option<Lineage>,
    ) -> Result<WorkflowRun, AppError> {
        let start = StartRun {
            input,
            version: None,
        };
        let origin = Origin {
            by,
            key,
            lineage,
            branch: None,
        };
        self.start(&by.access(tenant_id), id, start, Some(origin))
            .await
    }

    /// Starts a run (see `start_run`); started by the platform (`origin`), at most one run per
    /// key and workflow, and only when the version's trigger is of the origin's kind.
    async fn start(
        &self,
        access: &Access,
        id: Uuid,
        start: StartRun,
        origin: Option<Origin>,
    ) -> Result<WorkflowRun, AppError> {
        access.require(Area::Workflows, Level::Write)?;
        check(&start)?;
        let size = start.input.to_string().len();
        if size > MAX_INPUT_BYTES {
            return Err(AppError::invalid(
                "input",
                format!("the input is {size} bytes as JSON; the limit is {MAX_INPUT_BYTES}"),
            ));
        }
        let row = self.row(access, id).await?;
        let number = match (start.version, row.latest_version) {
            (Some(n), _) => n,
            (None, Some(n)) => u32::try_from(n).unwrap_or(0),
            (None, None) if origin.is_some() => {
                return Err(AppError::not_found("published workflow"))
            }
            (None, None) => {
                return Err(AppError::Conflict(
                    "the workflow has no published version; publish it first".into(),
                ))
            }
        };
        let version = self.version_row(access, id, number).await?;
        let def = definition_of(&version.definition);
        let trigger = super::trigger(&def)
            .ok_or_else(|| AppError::Conflict("the version has no trigger".into()))?;
        if trigger.kind == NodeKind::MessageTrigger {
            return Err(AppError::Conflict(
                "a conversation graph answers customers' messages, not runs: choose it for a \
                 channel (Workflows → Conversation graphs) and write to it in the playground"
                    .into(),
            ));
        }
        if origin
            .as_ref()
            .is_some_and(|o| o.branch.is_none() && trigger.kind != o.by.kind())
        {
            return Err(AppError::not_found("published workflow with this trigger"));
        }
        let (key, lineage, branch) = match origin {
            Some(o) => (Some(o.key), o.lineage, o.branch),
            None => (None, None, None),
        };
        if let Some(run) = self.keyed_run(id, key.as_deref()).await? {
            return Ok(to_run(run));
        }
        let active = workflow_runs::Entity::find()
            .filter(workflow_runs::Column::TenantId.eq(access.tenant_id))
            .filter(not_final())
            .count(&self.db)
            .await
            .map_err(db_error)?;
        if active >= MAX_ACTIVE_RUNS {
            return Err(AppError::Conflict(format!(
                "the tenant has {active} unfinished runs, the most it may have; wait for some to finish"
            )));
        }
        let (mut state, first) = match branch {
            Some(b) => (b.state, b.node),
            None => (
                json!({
                    "vars": {
                        "trigger": start.input,
                        "vars": def.variables,
                        "nodes": {},
                    }
                }),
                trigger.id.clone(),
            ),
        };
        if let Some(Lineage { depth, parent }) = lineage {
            state["vars"]["depth"] = json!(depth);
            state["vars"][run::PARENT] = json!(parent);
        }
        let now = Utc::now();
        let run_id = Uuid::now_v7();
        let txn = self.db.begin().await.map_err(db_error)?;
        let row = workflow_runs::ActiveModel {
            id: Set(run_id),
            tenant_id: Set(access.tenant_id),
            workflow_id: Set(id),
            version_id: Set(version.id),
            version_number: Set(version.number),
            status: Set(RunStatus::Queued.as_str().into()),
            trigger: Set(trigger_of(access).into()),
            input: Set(start.input),
            state: Set(state),
            next_node: Set(Some(first)),
            seq: Set(0),
            attempt: Set(1),
            waiting: Set(None),
            output: Set(None),
            error: Set(None),
            cancel_requested: Set(false),
            compensation: Set(None),
            lease_owner: Set(None),
            lease_until: Set(None),
            created_by: Set(access.actor.label()),
            created_at: Set(now),
            started_at: Set(None),
            finished_at: Set(None),
            updated_at: Set(now),
            trigger_key: Set(key.clone()),
            prompt_tokens: Set(0),
            completion_tokens: Set(0),
            cost_micros: Set(0),
            llm_calls: Set(0),
        }
        .insert(&txn)
        .await;
        let row = match row {
            Ok(row) => row,
            // The same key started a run meanwhile (two workers, two deliveries at once).
            Err(e)
                if matches!(
                    e.sql_err(),
                    Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
                ) =>
            {
                txn.rollback().await.map_err(db_error)?;
                if let Some(run) = self.keyed_run(id, key.as_deref()).await? {
                    return Ok(to_run(run));
                }
                return Err(db_error(e));
            }
            Err(e) => return Err(db_error(e)),
        };
        run::schedule(
            &txn,
            access.tenant_id,
            run_id,
            format!("{run_id}:start"),
            None,
        )
        .await
        .map_err(db_error)?;
        Record::by(access, "workflow.run", format!("workflow_run:{run_id}"))
            .details(json!({ "workflow": id, "version": number, "key": key }))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(to_run(row))
    }

    /// The run `key` started, if any.
    async fn keyed_run(
        &self,
        id: Uuid,
        key: Option<&str>,
    ) -> Result<Option<workflow_runs::Model>, AppError> {
        let Some(key) = key else { return Ok(None) };
        workflow_runs::Entity::find()
            .filter(workflow_runs::Column::WorkflowId.eq(id))
            .filter(workflow_runs::Column::TriggerKey.eq(key))
            .one(&self.db)
            .await
            .map_err(db_error)
    }
}

#[async_trait::async_trait]
impl WorkflowService for WorkflowServiceImpl {
    async fn list_workflows(&self, access: &Access) -> Result<Vec<WorkflowSummary>, AppError> {
        access.require(Area::Workflows, Level::Read)?;
        Ok(workflows::Entity::find()
            .filter(workflows::Column::TenantId.eq(access.tenant_id))
            .order_by_asc(workflows::Column::Name)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(summary)
            .collect())
    }

    async fn get_workflow(&self, access: &Access, id: Uuid) -> Result<Workflow, AppError> {
        access.require(Area::Workflows, Level::Read)?;
        self.workflow(self.row(access, id).await?).await
    }

    async fn create_workflow(
        &self,
        access: &Access,
        create: CreateWorkflow,
    ) -> Result<Workflow, AppError> {
        access.require(Area::Workflows, Level::Write)?;
        check(&create)?;
        let name = create.name.trim().to_string();
        if name.is_empty() {
            return Err(AppError::invalid("name", "must not be blank"));
        }
        let def = create.definition.unwrap_or_else(super::starting_draft);
        let draft = stored(&def, "definition")?;
        if self.name_taken(access, &name, None).await? {
            return Err(AppError::Conflict(format!(
                "a workflow named '{name}' exists"
            )));
        }
        let now = Utc::now();
        let id = Uuid::now_v7();
        let txn = self.db.begin().await.map_err(db_error)?;
        let row = workflows::ActiveModel {
            id: Set(id),
            tenant_id: Set(access.tenant_id),
            name: Set(name.clone()),
            description: Set(create.description.trim().to_string()),
            draft: Set(draft),
            draft_revision: Set(1),
            latest_version: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            webhook_secret: Set(None),
            trigger_event: Set(None),
            trigger_kind: Set(None),
        }
        .insert(&txn)
        .await
        .map_err(db_error)?;
        Record::by(access, "workflow.create", format!("workflow:{id}"))
            .details(json!({ "name": name }))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        self.workflow(row).await
    }

    async fn update_workflow(
        &self,
        access: &Access,
        id: Uuid,
        update: UpdateWorkflow,
    ) -> Result<Workflow, AppError> {
        access.require(Area::Workflows, Level::Write)?;
        check(&update)?;
        let row = self.row(access, id).await?;
        let name = update.name.map(|n| n.trim().to_string());
        if let Some(name) = &name {
            if name.is_empty() {
                return Err(AppError::invalid("name", "must not be blank"));
            }
            if self.name_taken(access, name, Some(id)).await? {
                return Err(AppError::Conflict(format!(
                    "a workflow named '{name}' exists"
                )));
            }
        }
        let draft = update
            .draft
            .as_ref()
            .map(|d| stored(d, "draft"))
            .transpose()?;
        let details = json!({
            "name": name,
            "draft": draft.is_some(),
            "description": update.description.is_some(),
        });
        self.save_draft(
            access,
            &row,
            DraftChanges {
                base: update.base_revision,
                name,
                description: update.description.map(|d| d.trim().to_string()),
                draft,
            },
            "workflow.update",
            details,
        )
        .await
    }

    async fn delete_workflow(&self, access: &Access, id: Uuid) -> Result<(), AppError> {
        access.require(Area::Workflows, Level::Write)?;
        let row = self.row(access, id).await?;
        let txn = self.db.begin().await.map_err(db_error)?;
        // A write first (it locks the workflow's row, and SQLite's database), then the count:
        // the delete cascades to the runs, so counting after it would always find none.
        workflows::Entity::update_many()
            .filter(workflows::Column::Id.eq(id))
            .filter(workflows::Column::TenantId.eq(access.tenant_id))
            .col_expr(workflows::Column::UpdatedAt, Expr::value(Utc::now()))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        let unfinished = workflow_runs::Entity::find()
            .filter(workflow_runs::Column::WorkflowId.eq(id))
            .filter(not_final())
            .count(&txn)
            .await
            .map_err(db_error)?;
        if unfinished > 0 {
            txn.rollback().await.map_err(db_error)?;
            return Err(AppError::Conflict(format!(
                "{unfinished} runs have not finished; cancel them first"
            )));
        }
        workflows::Entity::delete_many()
            .filter(workflows::Column::Id.eq(id))
            .filter(workflows::Column::TenantId.eq(access.tenant_id))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        remove_schedule(&txn, access.tenant_id, id).await?;
        Record::by(access, "workflow.delete", format!("workflow:{id}"))
            .details(json!({ "name": row.name }))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)
    }

    async fn publish_workflow(
        &self,
        access: &Access,
        id: Uuid,
        publish: PublishWorkflow,
    ) -> Result<WorkflowVersion, AppError> {
        access.require(Area::Workflows, Level::Write)?;
        check(&publish)?;
        let row = self.row(access, id).await?;
        let def = definition_of(&row.draft);
        let problems = super::problems(&def);
        if !problems.is_empty() {
            return Err(AppError::Validation(
                problems
                    .into_iter()
                    .map(|p| {
                        let field = p
                            .node
                            .map_or("draft".to_string(), |n| format!("draft.nodes.{n}"));
                        FieldError::new(&field, p.message)
                    })
                    .collect(),
            ));
        }
        let number = row.latest_version.unwrap_or(0) + 1;
        let now = Utc::now();
        let txn = self.db.begin().await.map_err(db_error)?;
        // The event a published event trigger listens to is read with the tenant's webhook
        // subscriptions on every event; `updated_at` tells their cache it changed.
        let trigger = super::trigger(&def);
        let event = trigger
            .filter(|t| t.kind == NodeKind::EventTrigger)
            .and_then(|t| t.config.get("event")?.as_str().map(str::to_string));
        let kind = trigger.map(|t| t.kind);
        let mut bump = workflows::Entity::update_many()
            .filter(workflows::Column::Id.eq(id))
            .col_expr(workflows::Column::LatestVersion, Expr::value(Some(number)))
            .col_expr(workflows::Column::TriggerEvent, Expr::value(event))
            .col_expr(
                workflows::Column::TriggerKind,
                Expr::value(kind.map(|k| k.as_str().to_string())),
            )
            .col_expr(workflows::Column::UpdatedAt, Expr::value(now));
        bump = match row.latest_version {
            Some(v) => bump.filter(workflows::Column::LatestVersion.eq(v)),
            None => bump.filter(workflows::Column::LatestVersion.is_null()),
        };
        if bump.exec(&txn).await.map_err(db_error)?.rows_affected != 1 {
            txn.rollback().await.map_err(db_error)?;
            return Err(AppError::Conflict(
                "another version was published meanwhile; try again".into(),
            ));
        }
        let version = workflow_versions::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(access.tenant_id),
            workflow_id: Set(id),
            number: Set(number),
            definition: Set(row.draft.clone()),
            note: Set(publish.note.trim().to_string()),
            created_by: Set(access.actor.label()),
            created_at: Set(now),
        }
        .insert(&txn)
        .await
        .map_err(db_error)?;
        sync_schedule(&txn, access.tenant_id, id, &def).await?;
        if kind != Some(NodeKind::MessageTrigger) {
            // A channel it answers would fall back to the default graph unannounced.
            let answers = channel_graphs::Entity::find()
                .filter(channel_graphs::Column::TenantId.eq(access.tenant_id))
                .filter(channel_graphs::Column::WorkflowId.eq(id))
                .all(&txn)
                .await
                .map_err(db_error)?;
            if !answers.is_empty() {
                txn.rollback().await.map_err(db_error)?;
                let channels: Vec<String> = answers.into_iter().map(|c| c.channel).collect();
                return Err(AppError::Conflict(format!(
                    "this workflow answers the {} channel's messages and would no longer start on \
                     a customer's message; choose another graph for it first (Workflows → \
                     Conversation graphs)",
                    channels.join(", ")
                )));
            }
        }
        Record::by(access, "workflow.publish", format!("workflow:{id}"))
            .details(json!({ "version": number, "note": publish.note.trim() }))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(to_version(version))
    }

    async fn list_versions(
        &self,
        access: &Access,
        id: Uuid,
    ) -> Result<Vec<WorkflowVersion>, AppError> {
        access.require(Area::Workflows, Level::Read)?;
        self.row(access, id).await?;
        Ok(workflow_versions::Entity::find()
            .filter(workflow_versions::Column::TenantId.eq(access.tenant_id))
            .filter(workflow_versions::Column::WorkflowId.eq(id))
            .order_by_desc(workflow_versions::Column::Number)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(to_version)
            .collect())
    }

    async fn get_version(
        &self,
        access: &Access,
        id: Uuid,
        number: u32,
    ) -> Result<WorkflowVersion, AppError> {
        access.require(Area::Workflows, Level::Read)?;
        Ok(to_version(self.version_row(access, id, number).await?))
    }

    async fn restore_version(
        &self,
        access: &Access,
        id: Uuid,
        number: u32,
    ) -> Result<Workflow, AppError> {
        access.require(Area::Workflows, Level::Write)?;
        let row = self.row(access, id).await?;
        let version = self.version_row(access, id, number).await?;
        self.save_draft(
            access,
            &row,
            DraftChanges {
                base: None,
                name: None,
                description: None,
                draft: Some(version.definition),
            },
            "workflow.restore",
            json!({ "version": number }),
        )
        .await
    }

    async fn diff_versions(
        &self,
        access: &Access,
        id: Uuid,
        from: u32,
        to: Option<u32>,
    ) -> Result<WorkflowDiff, AppError> {
        access.require(Area::Workflows, Level::Read)?;
        let a = definition_of(&self.version_row(access, id, from).await?.definition);
        Ok(match to {
            Some(to) => {
                let b = self.version_row(access, id, to).await?;
                super::diff(from, &a, to, &definition_of(&b.definition))
            }
            None => {
                let draft = definition_of(&self.row(access, id).await?.draft);
                WorkflowDiff {
                    to_draft: true,
                    ..super::diff(from, &a, 0, &draft)
                }
            }
        })
    }

    async fn test_node(
        &self,
        access: &Access,
        id: Uuid,
        test: TestNode,
    ) -> Result<NodeTest, AppError> {
        access.require(Area::Workflows, Level::Read)?;
        check(&test)?;
        let size = test.trigger.to_string().len()
            + test.nodes.to_string().len()
            + test.step.as_ref().map_or(0, |s| s.config.to_string().len());
        if size > MAX_INPUT_BYTES {
            return Err(AppError::invalid(
                "trigger",
                format!(
                    "the sample values are {size} bytes as JSON; the limit is {MAX_INPUT_BYTES}"
                ),
            ));
        }
        let draft = definition_of(&self.row(access, id).await?.draft);
        let node = match test.step {
            Some(step) => step,
            None => draft
                .nodes
                .iter()
                .find(|n| n.id == test.node)
                .cloned()
                .ok_or_else(|| AppError::invalid("node", "the draft has no node with this id"))?,
        };
        // Asking the model spends the tenant's tokens, and a search reads its knowledge:
        // testing those steps is editing, not viewing.
        if matches!(
            node.kind,
            NodeKind::Llm | NodeKind::Classifier | NodeKind::Knowledge
        ) {
            access.require(Area::Workflows, Level::Write)?;
        }
        let vars = test
            .vars
            .unwrap_or_else(|| serde_json::to_value(&draft.variables).unwrap_or_default());
        let ctx = json!({ "trigger": test.trigger, "vars": vars, "nodes": test.nodes });
        let spent = std::sync::Mutex::default();
        let asker = super::ai::Asker {
            agents: &self.agents,
            db: &self.db,
            access: nodes::access_for(access.tenant_id, id),
            spent: &spent,
        };
        let mut result = nodes::preview(node.kind, &node.config, &ctx, &asker).await;
        // No run or conversation holds a test's calls: they are counted on their own.
        let spent: app::types::Usage = spent.lock().map(|s| s.clone()).unwrap_or_default();
        if spent.llm_calls > 0 {
            workflow_test_usage::ActiveModel {
                id: Set(Uuid::now_v7()),
                tenant_id: Set(access.tenant_id),
                workflow_id: Set(id),
                node: Set(node.id.chars().take(64).collect()),
                prompt_tokens: Set(i64::try_from(spent.prompt_tokens).unwrap_or(i64::MAX)),
                completion_tokens: Set(i64::try_from(spent.completion_tokens).unwrap_or(i64::MAX)),
                cost_micros: Set((spent.cost_usd * 1_000_000.0).round() as i64),
                llm_calls: Set(i64::from(spent.llm_calls)),
                created_at: Set(Utc::now()),
            }
            .insert(&self.db)
            .await
            .map_err(db_error)?;
        }
        result.node = node.id;
        Ok(result)
    }

    async fn start_run(
        &self,
        access: &Access,
        id: Uuid,
        start: StartRun,
    ) -> Result<WorkflowRun, AppError> {
        self.start(access, id, start, None).await
    }

    async fn rotate_webhook_secret(
        &self,
        access: &Access,
        id: Uuid,
    ) -> Result<WorkflowWebhook, AppError> {
        access.require(Area::Workflows, Level::Write)?;
        let row = self.row(access, id).await?;
        let (secret, sealed) =
            secrets::generate(&self.keys, "whsec_", SECRET_PURPOSE, access.tenant_id)?;
        let txn = self.db.begin().await.map_err(db_error)?;
        workflows::Entity::update_many()
            .filter(workflows::Column::Id.eq(id))
            .filter(workflows::Column::TenantId.eq(access.tenant_id))
            .col_expr(workflows::Column::WebhookSecret, Expr::value(Some(sealed)))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        Record::by(access, "workflow.rotate_secret", format!("workflow:{id}"))
            .details(json!({ "name": row.name, "first": row.webhook_secret.is_none() }))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(WorkflowWebhook {
            url: webhook_url(&self.console_url, id),
            secret,
        })
    }

    async fn list_secrets(&self, access: &Access) -> Result<Vec<WorkflowSecret>, AppError> {
        access.require(Area::Workflows, Level::Read)?;
        Ok(workflow_secrets::Entity::find()
            .filter(workflow_secrets::Column::TenantId.eq(access.tenant_id))
            .order_by_asc(workflow_secrets::Column::Name)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(to_secret)
            .collect())
    }

    async fn set_secret(
        &self,
        access: &Access,
        name: String,
        set: SetWorkflowSecret,
    ) -> Result<WorkflowSecret, AppError> {
        access.require(Area::Workflows, Level::Write)?;
        let name = name.trim().to_string();
        if !valid_secret_name(&name) {
            return Err(AppError::invalid(
                "name",
                "1–64 letters, digits or _, not starting with a digit (it is read as {{ secrets.NAME }})",
            ));
        }
        check(&set)?;
        let sealed = self
            .keys
            .encrypt_str(
                &secrets::aad(super::secrets::PURPOSE, access.tenant_id),
                &set.value,
            )
            .map_err(|e| {
                tracing::error!(error = %e, "a workflow secret could not be sealed");
                AppError::Internal("the secret could not be stored".into())
            })?;
        let now = Utc::now();
        let txn = self.db.begin().await.map_err(db_error)?;
        // A write first (SQLite: a transaction that reads before it writes fails when another
        // writer committed in between, its snapshot being stale).
        Record::by(
            access,
            "workflow.secret_set",
            format!("workflow_secret:{name}"),
        )
        .write(&txn)
        .await
        .map_err(db_error)?;
        let existing = workflow_secrets::Entity::find()
            .filter(workflow_secrets::Column::TenantId.eq(access.tenant_id))
            .filter(workflow_secrets::Column::Name.eq(name.as_str()))
            .one(&txn)
            .await
            .map_err(db_error)?;
        let row = match existing {
            Some(row) => {
                let mut active = row.into_active_model();
                active.value = Set(sealed);
                active.updated_by = Set(access.actor.label());
                active.updated_at = Set(now);
                active.update(&txn).await.map_err(db_error)?
            }
            None => {
                let count = workflow_secrets::Entity::find()
                    .filter(workflow_secrets::Column::TenantId.eq(access.tenant_id))
                    .count(&txn)
                    .await
                    .map_err(db_error)?;
                if count >= MAX_SECRETS {
                    txn.rollback().await.map_err(db_error)?;
                    return Err(AppError::Conflict(format!(
                        "a tenant may have at most {MAX_SECRETS} secrets; delete one first"
                    )));
                }
                workflow_secrets::ActiveModel {
                    id: Set(Uuid::now_v7()),
                    tenant_id: Set(access.tenant_id),
                    name: Set(name.clone()),
                    value: Set(sealed),
                    updated_by: Set(access.actor.label()),
                    created_at: Set(now),
                    updated_at: Set(now),
                }
                .insert(&txn)
                .await
                .map_err(db_error)?
            }
        };
        txn.commit().await.map_err(db_error)?;
        Ok(to_secret(row))
    }

    async fn delete_secret(&self, access: &Access, name: String) -> Result<(), AppError> {
        access.require(Area::Workflows, Level::Write)?;
        let txn = self.db.begin().await.map_err(db_error)?;
        let deleted = workflow_secrets::Entity::delete_many()
            .filter(workflow_secrets::Column::TenantId.eq(access.tenant_id))
            .filter(workflow_secrets::Column::Name.eq(name.trim()))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        if deleted.rows_affected == 0 {
            txn.rollback().await.map_err(db_error)?;
            return Err(AppError::not_found("secret"));
        }
        Record::by(
            access,
            "workflow.secret_delete",
            format!("workflow_secret:{}", name.trim()),
        )
        .write(&txn)
        .await
        .map_err(db_error)?;
        txn.commit().await.map_err(db_error)
    }

    async fn conversation_graphs(&self, access: &Access) -> Result<ConversationGraphs, AppError> {
        access.require(Area::Workflows, Level::Read)?;
        super::conversation::graphs(&self.db, access.tenant_id).await
    }

    async fn set_conversation_graph(
        &self,
        access: &Access,
        channel: Channel,
        set: SetChannelGraph,
    ) -> Result<ConversationGraphs, AppError> {
        access.require(Area::Workflows, Level::Write)?;
        super::conversation::choose(&self.db, access, channel, set.workflow_id).await?;
        super::conversation::graphs(&self.db, access.tenant_id).await
    }

    async fn list_runs(
        &self,
        access: &Access,
        id: Uuid,
        query: RunQuery,
    ) -> Result<Page<WorkflowRun>, AppError> {
        access.require(Area::Workflows, Level::Read)?;
        check(&query)?;
        self.row(access, id).await?;
        let mut select = workflow_runs::Entity::find()
            .filter(workflow_runs::Column::TenantId.eq(access.tenant_id))
            .filter(workflow_runs::Column::WorkflowId.eq(id));
        if let Some(status) = query.status {
            select = select.filter(workflow_runs::Column::Status.eq(status.as_str()));
        }
        if let Some(version) = query.version {
            select = select.filter(
                workflow_runs::Column::VersionNumber.eq(i32::try_from(version).unwrap_or(i32::MAX)),
            );
        }
        select = match &query.trigger {
            Some(trigger) => select.filter(workflow_runs::Column::Trigger.eq(trigger.as_str())),
            // Branches are shown in their run's trace.
            None => select.filter(workflow_runs::Column::Trigger.ne(Started::Branch.task())),
        };
        let page = crate::store::page_by_id(
            &self.db,
            select,
            (workflow_runs::Column::Id, Order::Desc),
            query.cursor.as_deref(),
            query.limit.unwrap_or(DEFAULT_PAGE),
            |r| r.id,
        )
        .await?;
        Ok(page.map(to_run))
    }

    async fn get_run(&self, access: &Access, run_id: Uuid) -> Result<RunDetail, AppError> {
        access.require(Area::Workflows, Level::Read)?;
        let run = self.run_row(access, run_id).await?;
        let steps = workflow_steps::Entity::find()
            .filter(workflow_steps::Column::RunId.eq(run_id))
            .order_by_asc(workflow_steps::Column::Seq)
            .order_by_asc(workflow_steps::Column::Attempt)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        let compensations = workflow_compensations::Entity::find()
            .filter(workflow_compensations::Column::RunId.eq(run_id))
            .order_by_asc(workflow_compensations::Column::Seq)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        let mut branches = Vec::new();
        let branch_runs = run::branches(&self.db, &run, MAX_TRACED_BRANCHES)
            .await
            .map_err(db_error)?;
        let ids: Vec<Uuid> = branch_runs.iter().map(|b| b.id).collect();
        let mut branch_steps = workflow_steps::Entity::find()
            .filter(workflow_steps::Column::RunId.is_in(ids.clone()))
            .order_by_asc(workflow_steps::Column::Seq)
            .order_by_asc(workflow_steps::Column::Attempt)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        let mut branch_compensations = workflow_compensations::Entity::find()
            .filter(workflow_compensations::Column::RunId.is_in(ids))
            .order_by_asc(workflow_compensations::Column::Seq)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        for b in branch_runs {
            let (steps, rest): (Vec<_>, Vec<_>) =
                branch_steps.into_iter().partition(|s| s.run_id == b.id);
            branch_steps = rest;
            let (compensations, rest): (Vec<_>, Vec<_>) = branch_compensations
                .into_iter()
                .partition(|c| c.run_id == b.id);
            branch_compensations = rest;
            branches.push(BranchTrace {
                run: to_run(b),
                steps: steps.into_iter().map(to_step).collect(),
                compensations: compensations.into_iter().map(to_compensation).collect(),
            });
        }
        Ok(RunDetail {
            run: to_run(run),
            steps: steps.into_iter().map(to_step).collect(),
            compensations: compensations.into_iter().map(to_compensation).collect(),
            branches,
        })
    }

    async fn cancel_run(&self, access: &Access, run_id: Uuid) -> Result<WorkflowRun, AppError> {
        access.require(Area::Workflows, Level::Write)?;
        let txn = self.db.begin().await.map_err(db_error)?;
        let marked = workflow_runs::Entity::update_many()
            .filter(workflow_runs::Column::Id.eq(run_id))
            .filter(workflow_runs::Column::TenantId.eq(access.tenant_id))
            .filter(not_final())
            .col_expr(workflow_runs::Column::CancelRequested, Expr::value(true))
            // A driver holding the run finds its next write fenced off and sees the cancel.
            .col_expr(
                workflow_runs::Column::Attempt,
                Expr::col(workflow_runs::Column::Attempt).add(1),
            )
            .col_expr(workflow_runs::Column::UpdatedAt, Expr::value(Utc::now()))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        if marked.rows_affected != 1 {
            txn.rollback().await.map_err(db_error)?;
            self.run_row(access, run_id).await?;
            return Err(AppError::Conflict("the run has already finished".into()));
        }
        run::schedule(
            &txn,
            access.tenant_id,
            run_id,
            format!("{run_id}:cancel"),
            None,
        )
        .await
        .map_err(db_error)?;
        Record::by(access, "workflow.cancel", format!("workflow_run:{run_id}"))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(to_run(self.run_row(access, run_id).await?))
    }

    async fn decide_run(
        &self,
        access: &Access,
        run_id: Uuid,
        decision: ApprovalDecision,
    ) -> Result<WorkflowRun, AppError> {
        access.require(Area::Workflows, Level::Write)?;
        check(&decision)?;
        let run = self.run_row(access, run_id).await?;
        let node = match run
            .waiting
            .clone()
            .and_then(|w| serde_json::from_value(w).ok())
        {
            Some(RunWait::Approval { node, .. }) if run.status == RunStatus::Waiting.as_str() => {
                node
            }
            _ => {
                return Err(AppError::Conflict(
                    "the run is not waiting for an approval".into(),
                ))
            }
        };
        if run.state["vars"][nodes::APPROVALS].get(&node).is_some() {
            return Err(AppError::Conflict(
                "the run has been answered already".into(),
            ));
        }
        let mut state = run.state.clone();
        let answer = json!({
            "approved": decision.approved,
            "comment": decision.comment.trim(),
            "by": access.actor.label(),
            "at": Utc::now(),
        });
        if let Some(vars) = state.get_mut("vars").and_then(|v| v.as_object_mut()) {
            let approvals = vars.entry(nodes::APPROVALS).or_insert_with(|| json!({}));
            if let Some(map) = approvals.as_object_mut() {
                map.insert(node.clone(), answer);
            }
        }
        let txn = self.db.begin().await.map_err(db_error)?;
        // Only one answer: the run must still be as it was read.
        let saved = workflow_runs::Entity::update_many()
            .filter(workflow_runs::Column::Id.eq(run_id))
            .filter(workflow_runs::Column::TenantId.eq(access.tenant_id))
            .filter(workflow_runs::Column::Status.eq(RunStatus::Waiting.as_str()))
            .filter(workflow_runs::Column::Attempt.eq(run.attempt))
            .filter(workflow_runs::Column::Seq.eq(run.seq))
            .col_expr(workflow_runs::Column::State, Expr::value(state))
            // A second answer finds the attempt moved on.
            .col_expr(workflow_runs::Column::Attempt, Expr::value(run.attempt + 1))
            .col_expr(workflow_runs::Column::UpdatedAt, Expr::value(Utc::now()))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        if saved.rows_affected != 1 {
            txn.rollback().await.map_err(db_error)?;
            return Err(AppError::Conflict(
                "the run changed meanwhile (answered or cancelled); reload it".into(),
            ));
        }
        let key = format!("{run_id}:{}:{}:decision", run.seq, run.attempt + 1);
        run::schedule(&txn, access.tenant_id, run_id, key, None)
            .await
            .map_err(db_error)?;
        let action = if decision.approved {
            "workflow.approve"
        } else {
            "workflow.reject"
        };
        Record::by(access, action, format!("workflow_run:{run_id}"))
            .details(json!({ "node": node, "comment": decision.comment.trim() }))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(to_run(self.run_row(access, run_id).await?))
    }
}

/// Starts the run a schedule's tick (`workflow.scheduled`) or one of the tenant's events
/// (`workflow.event`) asks for, as the system actor `schedule` or `event`: the latest version,
/// once per tick or event, within the tenant's limits (a job that finds the tenant at its
/// limit of unfinished runs is tried again later).
pub struct TriggeredRun {
    service: Arc<WorkflowServiceImpl>,
    by: Started,
}

impl TriggeredRun {
    /// The handler of `workflow.scheduled`.
    pub fn schedules(service: Arc<WorkflowServiceImpl>) -> TriggeredRun {
        TriggeredRun {
            service,
            by: Started::Schedule,
        }
    }

    /// The handler of `workflow.event`.
    pub fn events(service: Arc<WorkflowServiceImpl>) -> TriggeredRun {
        TriggeredRun {
            service,
            by: Started::Event,
        }
    }
}

#[async_trait::async_trait]
impl JobHandler for TriggeredRun {
    fn kind(&self) -> &'static str {
        if self.by == Started::Event {
            EVENT
        } else {
            SCHEDULED
        }
    }

    async fn run(&self, ctx: &mut JobContext) -> anyhow::Result<()> {
        let tenant_id = ctx
            .tenant_id()
            .ok_or_else(|| Permanent("a triggered run needs a tenant".into()))?;
        let payload = ctx.payload();
        let id: Uuid = payload["workflow_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Permanent("the payload names no workflow".into()))?;
        let (input, key) = match self.by {
            Started::Event => {
                let event = payload["event"].clone();
                let key = format!("event:{}", event["id"].as_str().unwrap_or_default());
                (event, key)
            }
            _ => (
                json!({ "scheduled_at": ctx.enqueued_at() }),
                format!("job:{}", ctx.id()),
            ),
        };
        match self
            .service
            .start_by(tenant_id, id, self.by, input, key)
            .await
        {
            Ok(_) => Ok(()),
            // Deleted, or republished with another trigger since: nothing to start.
            Err(AppError::NotFound(what)) => {
                tracing::info!(workflow = %id, what, "a triggered run found nothing to start");
                Ok(())
            }
            Err(e @ AppError::Validation(_)) => Err(Permanent(e.to_string()).into()),
            Err(e) => Err(anyhow::anyhow!("{e}")),
        }
    }
}
