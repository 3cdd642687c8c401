//! The `workflow.run` job: drives one run from its checkpoint.
//!
//! Each step is three moves, so a worker killed at any point loses nothing:
//! 1. **Register** (one transaction, fenced on the run's step number and attempt): the step's
//!    row and, for a side-effecting node, its compensation. A second worker that took over the
//!    job finds the fence moved and reloads.
//! 2. **Run** the node (with its timeout). Its effect is keyed by the step
//!    ([`StepCx::key`]), so running the same step again after a crash does not repeat it.
//! 3. **Checkpoint** (one transaction, fenced again): the step's outcome, the run's state,
//!    the next node. A retry, a wait or an approval ends the job; the run is picked up again by a
//!    job scheduled for then (or by the approval).
//!
//! A run that fails for good, or is cancelled, runs its registered compensations newest
//! first, each retried, and records every outcome; its final state says whether it was fully
//! compensated.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use serde_json::{json, Value};
use uuid::Uuid;

use app::types::{
    CompensationOutcome, CompensationStatus, NodeKind, OnError, RunStatus, RunWait, StepStatus,
    WorkflowDefinition, WorkflowNode,
};

use super::nodes::{self, StepCx, WorkflowRuntime};
use super::{MAX_RUN_DAYS, MAX_RUN_STEPS};
use crate::engine::{ConvState, Graph, Suspend, OUT};
use crate::jobs::{self, JobContext, JobHandler, NewJob, Permanent};
use crate::store::{
    bookings, workflow_compensations, workflow_runs, workflow_steps, workflow_versions,
};

pub const KIND: &str = "workflow.run";
/// How long one job drives a run before handing it to a fresh job (fairness between runs).
const SLICE: Duration = Duration::from_secs(60);
/// Largest run state (every node's output together), as JSON.
pub const MAX_STATE_BYTES: usize = 4 * 1024 * 1024;
/// Tries of one compensation.
const COMPENSATION_ATTEMPTS: u32 = 3;

pub const STEPS: &str = "workflow_steps_total";
pub const RUNS_FINISHED: &str = "workflow_runs_finished_total";

/// Branch runs whose compensations a run's success releases at most (their ids go into one
/// `IN (…)`, within SQLite's 32,766 parameters; a run's 1,000 steps make at most 5,000).
const MAX_BRANCH_RUNS: u64 = 10_000;

/// Where a run started by another run's step names that run (`vars.parent`).
pub const PARENT: &str = "parent";

/// Queues a job that drives `run` (at `at`, or now); `key` makes it once per occasion.
pub async fn schedule(
    conn: &impl ConnectionTrait,
    tenant: Uuid,
    run: Uuid,
    key: String,
    at: Option<chrono::DateTime<Utc>>,
) -> Result<(), DbErr> {
    let mut job = NewJob::new(Some(tenant), KIND, json!({ "run_id": run }))
        .key(key)
        .max_attempts(10);
    job.run_at = at;
    jobs::enqueue(conn, job).await.map(|_| ())
}

pub struct RunWorkflow {
    rt: Arc<WorkflowRuntime>,
    /// Versions are immutable: their built graphs are kept.
    graphs: moka::future::Cache<Uuid, Arc<Built>>,
}

struct Built {
    graph: Graph<StepCx>,
    def: WorkflowDefinition,
}

impl Built {
    fn node(&self, id: &str) -> Option<&WorkflowNode> {
        self.def.nodes.iter().find(|n| n.id == id)
    }
}

/// What a finished attempt hands to [`RunWorkflow::complete`].
struct Outcome<'a> {
    output: Value,
    port: &'a str,
    error: Option<&'a str>,
    ms: i32,
}

const TIMED_OUT: &str = "timed out";

/// The statuses a run ends in.
pub const FINAL: [&str; 3] = ["succeeded", "failed", "cancelled"];
/// How long a driver holds a run beyond what its current step may take (a dead driver's
/// run is taken over after it).
const LEASE: Duration = Duration::from_secs(5);

/// Why driving stopped for now.
enum Stop {
    /// The run is final, waiting, or another worker has it.
    Done,
    /// Keep going.
    Next,
}

fn db_err(e: DbErr) -> anyhow::Error {
    anyhow::anyhow!("database: {e}")
}

impl RunWorkflow {
    pub fn new(rt: Arc<WorkflowRuntime>) -> RunWorkflow {
        RunWorkflow {
            rt,
            graphs: moka::future::Cache::builder().max_capacity(1_000).build(),
        }
    }

    fn db(&self) -> &DatabaseConnection {
        &self.rt.db
    }

    async fn built(&self, version: Uuid) -> anyhow::Result<Arc<Built>> {
        if let Some(b) = self.graphs.get(&version).await {
            return Ok(b);
        }
        let row = workflow_versions::Entity::find_by_id(version)
            .one(self.db())
            .await
            .map_err(db_err)?
            .ok_or_else(|| Permanent("the run's version no longer exists".into()))?;
        let def: WorkflowDefinition = serde_json::from_value(row.definition)
            .map_err(|e| Permanent(format!("the version cannot be read: {e}")))?;
        let graph_def =
            super::graph_def(&def).ok_or_else(|| Permanent("the version has no trigger".into()))?;
        let graph =
            Graph::build(&graph_def, &nodes::registry()).map_err(|e| Permanent(e.to_string()))?;
        let built = Arc::new(Built { graph, def });
        self.graphs.insert(version, built.clone()).await;
        Ok(built)
    }

    async fn load(&self, run: Uuid) -> anyhow::Result<Option<workflow_runs::Model>> {
        workflow_runs::Entity::find_by_id(run)
            .one(self.db())
            .await
            .map_err(db_err)
    }

    /// Takes the run's lease for `owner` unless another driver holds it.
    async fn claim(&self, run_id: Uuid, owner: Uuid) -> anyhow::Result<bool> {
        let now = Utc::now();
        let claimed = workflow_runs::Entity::update_many()
            .filter(workflow_runs::Column::Id.eq(run_id))
            .filter(workflow_runs::Column::Status.is_not_in(FINAL))
            .filter(
                sea_orm::Condition::any()
                    .add(workflow_runs::Column::LeaseUntil.is_null())
                    .add(workflow_runs::Column::LeaseUntil.lt(now)),
            )
            .col_expr(workflow_runs::Column::LeaseOwner, Expr::value(Some(owner)))
            .col_expr(
                workflow_runs::Column::LeaseUntil,
                Expr::value(Some(
                    now + chrono::Duration::from_std(LEASE).unwrap_or_default(),
                )),
            )
            .exec(self.db())
            .await
            .map_err(db_err)?;
        Ok(claimed.rows_affected == 1)
    }

    async fn release(&self, run_id: Uuid, owner: Uuid) {
        let released = workflow_runs::Entity::update_many()
            .filter(workflow_runs::Column::Id.eq(run_id))
            .filter(workflow_runs::Column::LeaseOwner.eq(owner))
            .col_expr(
                workflow_runs::Column::LeaseOwner,
                Expr::value(Option::<Uuid>::None),
            )
            .col_expr(
                workflow_runs::Column::LeaseUntil,
                Expr::value(Option::<chrono::DateTime<Utc>>::None),
            )
            .exec(self.db())
            .await;
        if let Err(e) = released {
            tracing::warn!(error = %e, run = %run_id, "could not release a workflow run");
        }
    }

    /// Drives `run_id` until it ends, waits, or its slice is used up. One driver at a time:
    /// a job that finds the run held by another comes back when that lease ends (the holder
    /// may have died; if not, it has seen whatever this job was queued for).
    pub async fn drive(&self, run_id: Uuid) -> anyhow::Result<()> {
        let owner = Uuid::new_v4();
        if !self.claim(run_id, owner).await? {
            if let Some(run) = self.load(run_id).await? {
                if !RunStatus::parse(&run.status).is_some_and(RunStatus::is_final) {
                    let at = run.lease_until.unwrap_or_else(Utc::now)
                        + chrono::Duration::milliseconds(200);
                    let key = format!("{run_id}:after-lease:{}", Uuid::new_v4());
                    schedule(self.db(), run.tenant_id, run_id, key, Some(at))
                        .await
                        .map_err(db_err)?;
                }
            }
            return Ok(());
        }
        let result = self.drive_held(run_id, owner).await;
        self.release(run_id, owner).await;
        result
    }

    async fn drive_held(&self, run_id: Uuid, owner: Uuid) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let Some(run) = self.load(run_id).await? else {
                return Ok(());
            };
            let status = RunStatus::parse(&run.status).unwrap_or(RunStatus::Queued);
            if status.is_final() {
                return Ok(());
            }
            if run.cancel_requested || run.error.is_some() {
                let end = if run.cancel_requested {
                    RunStatus::Cancelled
                } else {
                    RunStatus::Failed
                };
                return self.compensate_and_finish(&run, end, owner).await;
            }
            if Utc::now() - run.created_at > chrono::Duration::days(MAX_RUN_DAYS) {
                self.fail(
                    &run,
                    owner,
                    format!("the run lasted longer than {MAX_RUN_DAYS} days"),
                )
                .await?;
                continue;
            }
            if status == RunStatus::Waiting && !self.due(&run) {
                return Ok(());
            }
            if run.seq >= MAX_RUN_STEPS as i32 {
                self.fail(
                    &run,
                    owner,
                    format!("the run took {MAX_RUN_STEPS} steps (step limit)"),
                )
                .await?;
                continue;
            }
            if started.elapsed() > SLICE {
                let key = format!("{}:{}:{}:slice", run.id, run.seq, run.attempt);
                schedule(self.db(), run.tenant_id, run.id, key, None)
                    .await
                    .map_err(db_err)?;
                return Ok(());
            }
            match self.step(&run, owner).await? {
                Stop::Done => return Ok(()),
                Stop::Next => {}
            }
        }
    }

    /// Whether a waiting run may go on: its time came, or its approval was answered.
    fn due(&self, run: &workflow_runs::Model) -> bool {
        let wait: Option<RunWait> = run
            .waiting
            .clone()
            .and_then(|w| serde_json::from_value(w).ok());
        match wait {
            Some(RunWait::Until { at, .. }) | Some(RunWait::Retry { at, .. }) => at <= Utc::now(),
            Some(RunWait::Approval { node, .. }) => run
                .state
                .get("vars")
                .and_then(|v| v.get(nodes::APPROVALS))
                .and_then(|a| a.get(&node))
                .is_some(),
            None => true,
        }
    }

    /// Updates of this run that apply only while `owner` holds it and it is still at this
    /// step and attempt.
    fn fenced(
        run: &workflow_runs::Model,
        owner: Uuid,
    ) -> sea_orm::UpdateMany<workflow_runs::Entity> {
        workflow_runs::Entity::update_many()
            .filter(workflow_runs::Column::Id.eq(run.id))
            .filter(workflow_runs::Column::LeaseOwner.eq(owner))
            .filter(workflow_runs::Column::Seq.eq(run.seq))
            .filter(workflow_runs::Column::Attempt.eq(run.attempt))
            .filter(workflow_runs::Column::Status.is_not_in(FINAL))
    }

    async fn step(&self, run: &workflow_runs::Model, owner: Uuid) -> anyhow::Result<Stop> {
        let built = self.built(run.version_id).await?;
        let Some(node_id) = run.next_node.clone() else {
            self.fail(run, owner, "the run has no next step".into())
                .await?;
            return Ok(Stop::Next);
        };
        let Some(node) = built.node(&node_id).cloned() else {
            self.fail(
                run,
                owner,
                format!("node `{node_id}` is not in the version"),
            )
            .await?;
            return Ok(Stop::Next);
        };
        let mut state: ConvState = serde_json::from_value(run.state.clone()).unwrap_or_default();
        let cx = StepCx {
            rt: self.rt.clone(),
            tenant_id: run.tenant_id,
            run_id: run.id,
            workflow_id: run.workflow_id,
            node: node_id.clone(),
            seq: u32::try_from(run.seq).unwrap_or(0),
            attempt: u32::try_from(run.attempt).unwrap_or(1),
            spent: Default::default(),
        };
        let Some(engine_node) = built.graph.node(&node_id) else {
            return Err(Permanent(format!("node `{node_id}` was not built")).into());
        };
        let compensation = engine_node.compensation(&cx, &state);

        // 1. Register the attempt (and what undoes it) before it runs; the lease lasts as long
        // as the attempt may.
        let timeout = Duration::from_millis(node.timeout_ms.unwrap_or(super::DEFAULT_TIMEOUT_MS));
        let now = Utc::now();
        let lease_until = now + chrono::Duration::from_std(timeout + LEASE).unwrap_or_default();
        let txn = self.db().begin().await.map_err(db_err)?;
        let claimed = Self::fenced(run, owner)
            .col_expr(
                workflow_runs::Column::LeaseUntil,
                Expr::value(Some(lease_until)),
            )
            .col_expr(
                workflow_runs::Column::Status,
                Expr::value(RunStatus::Running.as_str()),
            )
            .col_expr(
                workflow_runs::Column::Waiting,
                Expr::value(Option::<Value>::None),
            )
            .col_expr(
                workflow_runs::Column::StartedAt,
                Expr::value(run.started_at.unwrap_or(now)),
            )
            .col_expr(workflow_runs::Column::UpdatedAt, Expr::value(now))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        if claimed.rows_affected != 1 {
            txn.rollback().await.map_err(db_err)?;
            return Ok(Stop::Next);
        }
        workflow_steps::Entity::insert(workflow_steps::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(run.tenant_id),
            run_id: Set(run.id),
            seq: Set(run.seq),
            node: Set(node_id.clone()),
            kind: Set(node.kind.as_str().into()),
            attempt: Set(run.attempt),
            status: Set(StepStatus::Running.as_str().into()),
            output: Set(None),
            port: Set(None),
            error: Set(None),
            duration_ms: Set(None),
            started_at: Set(now),
            finished_at: Set(None),
        })
        .on_conflict(
            OnConflict::columns([
                workflow_steps::Column::RunId,
                workflow_steps::Column::Seq,
                workflow_steps::Column::Attempt,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(&txn)
        .await
        .map_err(db_err)?;
        if let Some(action) = compensation {
            workflow_compensations::Entity::insert(workflow_compensations::ActiveModel {
                id: Set(Uuid::now_v7()),
                tenant_id: Set(run.tenant_id),
                run_id: Set(run.id),
                seq: Set(run.seq),
                node: Set(node_id.clone()),
                action: Set(action),
                status: Set(CompensationStatus::Registered.as_str().into()),
                attempts: Set(0),
                error: Set(None),
                created_at: Set(now),
                finished_at: Set(None),
            })
            .on_conflict(
                OnConflict::columns([
                    workflow_compensations::Column::RunId,
                    workflow_compensations::Column::Seq,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(&txn)
            .await
            .map_err(db_err)?;
        }
        txn.commit().await.map_err(db_err)?;
        let run = workflow_runs::Model {
            status: RunStatus::Running.as_str().into(),
            ..run.clone()
        };

        // 2. Run it.
        let clock = Instant::now();
        let result = tokio::time::timeout(
            timeout,
            built.graph.step(&cx, &mut state, &node_id, &|_| {}),
        )
        .await;
        let ms = i32::try_from(clock.elapsed().as_millis()).unwrap_or(i32::MAX);
        let outcome = match result {
            Ok(Ok(step)) => Ok(step),
            Ok(Err(e)) => Err(match e {
                crate::engine::EngineError::Node { message, .. } => message,
                other => other.to_string(),
            }),
            Err(_) => Err(format!("{TIMED_OUT} after {} ms", timeout.as_millis())),
        };
        metrics::counter!(STEPS, "kind" => node.kind.as_str(), "outcome" => if outcome.is_ok() { "ok" } else { "error" })
            .increment(1);
        self.count_usage(&run, &cx).await?;

        // 3. Checkpoint.
        match outcome {
            Ok(step) => {
                if let Some(suspend) = step.output.suspend {
                    self.suspend(&run, owner, &node_id, state, suspend, ms)
                        .await?;
                    return Ok(Stop::Done);
                }
                let port = step.output.port.clone().unwrap_or_else(|| OUT.to_string());
                let output = step.output.output.unwrap_or(Value::Null);
                let done = Outcome {
                    output,
                    port: &port,
                    error: None,
                    ms,
                };
                self.complete(&run, owner, &built, &node, state, done).await
            }
            Err(message) => {
                let attempt = u32::try_from(run.attempt).unwrap_or(1);
                if attempt < node.retry.attempts {
                    self.retry(&run, owner, &node, attempt, &message, ms)
                        .await?;
                    return Ok(Stop::Done);
                }
                match node.on_error.clone() {
                    OnError::Fail => {
                        self.finish_step(&run, StepStatus::Failed, None, None, Some(&message), ms)
                            .await?;
                        self.fail(&run, owner, format!("step `{node_id}` failed: {message}"))
                            .await?;
                        Ok(Stop::Next)
                    }
                    OnError::Continue { value } => {
                        let done = Outcome {
                            output: value,
                            port: OUT,
                            error: Some(&message),
                            ms,
                        };
                        self.complete(&run, owner, &built, &node, state, done).await
                    }
                    OnError::Branch => {
                        let output = json!({ "error": message });
                        let done = Outcome {
                            output,
                            port: "error",
                            error: Some(&message),
                            ms,
                        };
                        self.complete(&run, owner, &built, &node, state, done).await
                    }
                }
            }
        }
    }

    /// Adds what the step's calls to the model spent to the run's usage: counted even when the
    /// attempt failed or its checkpoint is refused, since the provider bills it either way.
    async fn count_usage(&self, run: &workflow_runs::Model, cx: &StepCx) -> anyhow::Result<()> {
        let spent = cx.spent.lock().map(|s| s.clone()).unwrap_or_default();
        if spent.llm_calls == 0 {
            return Ok(());
        }
        let add = |column: workflow_runs::Column, n: i64| Expr::col(column).add(n);
        workflow_runs::Entity::update_many()
            .filter(workflow_runs::Column::Id.eq(run.id))
            .col_expr(
                workflow_runs::Column::PromptTokens,
                add(
                    workflow_runs::Column::PromptTokens,
                    i64::try_from(spent.prompt_tokens).unwrap_or(i64::MAX),
                ),
            )
            .col_expr(
                workflow_runs::Column::CompletionTokens,
                add(
                    workflow_runs::Column::CompletionTokens,
                    i64::try_from(spent.completion_tokens).unwrap_or(i64::MAX),
                ),
            )
            .col_expr(
                workflow_runs::Column::CostMicros,
                add(
                    workflow_runs::Column::CostMicros,
                    (spent.cost_usd * 1_000_000.0).round() as i64,
                ),
            )
            .col_expr(
                workflow_runs::Column::LlmCalls,
                add(workflow_runs::Column::LlmCalls, i64::from(spent.llm_calls)),
            )
            .exec(self.db())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn finish_step(
        &self,
        run: &workflow_runs::Model,
        status: StepStatus,
        output: Option<&Value>,
        port: Option<&str>,
        error: Option<&str>,
        ms: i32,
    ) -> anyhow::Result<()> {
        self.finish_step_in(self.db(), run, status, output, port, error, ms)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish_step_in(
        &self,
        conn: &impl ConnectionTrait,
        run: &workflow_runs::Model,
        status: StepStatus,
        output: Option<&Value>,
        port: Option<&str>,
        error: Option<&str>,
        ms: i32,
    ) -> anyhow::Result<()> {
        workflow_steps::Entity::update_many()
            .filter(workflow_steps::Column::RunId.eq(run.id))
            .filter(workflow_steps::Column::Seq.eq(run.seq))
            .filter(workflow_steps::Column::Attempt.eq(run.attempt))
            .col_expr(workflow_steps::Column::Status, Expr::value(status.as_str()))
            .col_expr(workflow_steps::Column::Output, Expr::value(output.cloned()))
            .col_expr(
                workflow_steps::Column::Port,
                Expr::value(port.map(str::to_string)),
            )
            .col_expr(
                workflow_steps::Column::Error,
                Expr::value(error.map(str::to_string)),
            )
            .col_expr(workflow_steps::Column::DurationMs, Expr::value(ms))
            .col_expr(workflow_steps::Column::FinishedAt, Expr::value(Utc::now()))
            .exec(conn)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// The step is done: its output joins the state and the run moves to the next node (or
    /// ends), in one transaction.
    async fn complete(
        &self,
        run: &workflow_runs::Model,
        owner: Uuid,
        built: &Built,
        node: &WorkflowNode,
        mut state: ConvState,
        done: Outcome<'_>,
    ) -> anyhow::Result<Stop> {
        let Outcome {
            output,
            port,
            error,
            ms,
        } = done;
        crate::engine::keep_output(&mut state, &node.id, output.clone());
        let state_json = serde_json::to_value(&state)?;
        if state_json.to_string().len() > MAX_STATE_BYTES {
            self.finish_step(
                run,
                StepStatus::Failed,
                None,
                None,
                Some("output too large"),
                ms,
            )
            .await?;
            self.fail(
                run,
                owner,
                format!(
                    "the run's data grew past {MAX_STATE_BYTES} bytes at step `{}`",
                    node.id
                ),
            )
            .await?;
            return Ok(Stop::Next);
        }
        // A branch run ends where its branches meet; the Parallel step goes on from there.
        let branch_join = super::parallel::branch_join(&state);
        let next = built
            .graph
            .next(&node.id, &state, port)
            .filter(|n| Some(n) != branch_join.as_ref());
        let now = Utc::now();
        let step_status = if error.is_some() {
            StepStatus::Failed
        } else {
            StepStatus::Succeeded
        };
        // The write that moves the run comes first (SQLite: a transaction that writes first
        // never has to upgrade a stale read snapshot).
        let txn = self.db().begin().await.map_err(db_err)?;
        let mut update = Self::fenced(run, owner)
            .col_expr(workflow_runs::Column::State, Expr::value(state_json))
            .col_expr(workflow_runs::Column::NextNode, Expr::value(next.clone()))
            .col_expr(workflow_runs::Column::Seq, Expr::value(run.seq + 1))
            .col_expr(workflow_runs::Column::Attempt, Expr::value(1))
            .col_expr(workflow_runs::Column::UpdatedAt, Expr::value(now));
        if next.is_none() {
            update = update
                .col_expr(
                    workflow_runs::Column::Status,
                    Expr::value(RunStatus::Succeeded.as_str()),
                )
                .col_expr(
                    workflow_runs::Column::Output,
                    Expr::value(Some(output.clone())),
                )
                .col_expr(workflow_runs::Column::FinishedAt, Expr::value(Some(now)));
        }
        let moved = update.exec(&txn).await.map_err(db_err)?;
        if moved.rows_affected != 1 {
            txn.rollback().await.map_err(db_err)?;
            return Ok(Stop::Next);
        }
        self.finish_step_in(&txn, run, step_status, Some(&output), Some(port), error, ms)
            .await?;
        if next.is_none() && branch_join.is_none() {
            // Succeeded: nothing will be undone, here or in its branches (a branch keeps its
            // compensations until the run it belongs to ends).
            let mut ids = vec![run.id];
            if built.def.nodes.iter().any(|n| n.kind == NodeKind::Parallel) {
                ids.extend(
                    branches(&txn, run, MAX_BRANCH_RUNS)
                        .await
                        .map_err(db_err)?
                        .into_iter()
                        .map(|b| b.id),
                );
            }
            workflow_compensations::Entity::update_many()
                .filter(workflow_compensations::Column::RunId.is_in(ids))
                .filter(
                    workflow_compensations::Column::Status
                        .eq(CompensationStatus::Registered.as_str()),
                )
                .col_expr(
                    workflow_compensations::Column::Status,
                    Expr::value(CompensationStatus::Released.as_str()),
                )
                .exec(&txn)
                .await
                .map_err(db_err)?;
        }
        txn.commit().await.map_err(db_err)?;
        if next.is_none() {
            metrics::counter!(RUNS_FINISHED, "status" => "succeeded").increment(1);
            self.wake_parent(run).await?;
            return Ok(Stop::Done);
        }
        Ok(Stop::Next)
    }

    async fn suspend(
        &self,
        run: &workflow_runs::Model,
        owner: Uuid,
        node: &str,
        state: ConvState,
        suspend: Suspend,
        ms: i32,
    ) -> anyhow::Result<()> {
        let (wait, at) = match suspend {
            Suspend::Until { at } => (
                RunWait::Until {
                    node: node.to_string(),
                    at,
                },
                Some(at),
            ),
            Suspend::Approval { prompt } => (
                RunWait::Approval {
                    node: node.to_string(),
                    prompt,
                },
                None,
            ),
        };
        // When to come back: the wait's end, or, for an approval nobody gives, the end of the
        // run's life (it then fails and is compensated).
        let (key, at) = match at {
            Some(at) => (format!("{}:{}:{}:wait", run.id, run.seq, run.attempt), at),
            None => (
                format!("{}:expiry", run.id),
                run.created_at
                    + chrono::Duration::days(MAX_RUN_DAYS)
                    + chrono::Duration::minutes(1),
            ),
        };
        let step = (StepStatus::Suspended, None, ms);
        self.pause(run, owner, &wait, Some(&state), step, key, at)
            .await
    }

    /// Puts the run in `waiting` (`wait`, with `state` when the node changed it), closes the
    /// step's attempt as `step` says and queues a job for `at`, in one fenced transaction.
    #[allow(clippy::too_many_arguments)]
    async fn pause(
        &self,
        run: &workflow_runs::Model,
        owner: Uuid,
        wait: &RunWait,
        state: Option<&ConvState>,
        (status, error, ms): (StepStatus, Option<&str>, i32),
        key: String,
        at: chrono::DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let txn = self.db().begin().await.map_err(db_err)?;
        let mut update = Self::fenced(run, owner)
            .col_expr(
                workflow_runs::Column::Status,
                Expr::value(RunStatus::Waiting.as_str()),
            )
            .col_expr(
                workflow_runs::Column::Waiting,
                Expr::value(Some(serde_json::to_value(wait)?)),
            )
            .col_expr(workflow_runs::Column::Attempt, Expr::value(run.attempt + 1))
            .col_expr(workflow_runs::Column::UpdatedAt, Expr::value(Utc::now()));
        if let Some(state) = state {
            update = update.col_expr(
                workflow_runs::Column::State,
                Expr::value(serde_json::to_value(state)?),
            );
        }
        let moved = update.exec(&txn).await.map_err(db_err)?;
        if moved.rows_affected != 1 {
            txn.rollback().await.map_err(db_err)?;
            return Ok(());
        }
        self.finish_step_in(&txn, run, status, None, None, error, ms)
            .await?;
        schedule(&txn, run.tenant_id, run.id, key, Some(at))
            .await
            .map_err(db_err)?;
        txn.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn retry(
        &self,
        run: &workflow_runs::Model,
        owner: Uuid,
        node: &WorkflowNode,
        attempt: u32,
        message: &str,
        ms: i32,
    ) -> anyhow::Result<()> {
        let delay = jobs::backoff(
            attempt,
            Duration::from_millis(node.retry.initial_ms),
            Duration::from_millis(node.retry.max_ms),
        );
        let at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
        let wait = RunWait::Retry {
            node: node.id.clone(),
            attempt: attempt + 1,
            at,
        };
        let key = format!("{}:{}:{}:retry", run.id, run.seq, run.attempt + 1);
        let step = (StepStatus::Failed, Some(message), ms);
        self.pause(run, owner, &wait, None, step, key, at).await
    }

    /// Records why the run failed; the compensations run next ([`Self::drive`] sees the error).
    async fn fail(
        &self,
        run: &workflow_runs::Model,
        owner: Uuid,
        error: String,
    ) -> anyhow::Result<()> {
        Self::fenced(run, owner)
            .col_expr(workflow_runs::Column::Error, Expr::value(Some(error)))
            .col_expr(workflow_runs::Column::UpdatedAt, Expr::value(Utc::now()))
            .exec(self.db())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// Runs the registered compensations newest first, then ends the run as `end`.
    async fn compensate_and_finish(
        &self,
        run: &workflow_runs::Model,
        end: RunStatus,
        owner: Uuid,
    ) -> anyhow::Result<()> {
        let pending = workflow_compensations::Entity::find()
            .filter(workflow_compensations::Column::RunId.eq(run.id))
            .filter(
                workflow_compensations::Column::Status.eq(CompensationStatus::Registered.as_str()),
            )
            .order_by_desc(workflow_compensations::Column::Seq)
            .all(self.db())
            .await
            .map_err(db_err)?;
        let state: ConvState = serde_json::from_value(run.state.clone()).unwrap_or_default();
        for comp in pending {
            // Hold the run while this compensation (and its retries) may take.
            workflow_runs::Entity::update_many()
                .filter(workflow_runs::Column::Id.eq(run.id))
                .filter(workflow_runs::Column::LeaseOwner.eq(owner))
                .col_expr(
                    workflow_runs::Column::LeaseUntil,
                    Expr::value(Some(Utc::now() + chrono::Duration::minutes(12))),
                )
                .exec(self.db())
                .await
                .map_err(db_err)?;
            self.undo(run, &comp, &state).await?;
        }
        let all = workflow_compensations::Entity::find()
            .filter(workflow_compensations::Column::RunId.eq(run.id))
            .all(self.db())
            .await
            .map_err(db_err)?;
        let outcome = outcome(&all);
        let now = Utc::now();
        let mut update = workflow_runs::Entity::update_many()
            .filter(workflow_runs::Column::Id.eq(run.id))
            .filter(workflow_runs::Column::LeaseOwner.eq(owner))
            .filter(workflow_runs::Column::Status.is_not_in(FINAL))
            .col_expr(workflow_runs::Column::Status, Expr::value(end.as_str()))
            .col_expr(
                workflow_runs::Column::Waiting,
                Expr::value(Option::<Value>::None),
            )
            .col_expr(
                workflow_runs::Column::Compensation,
                Expr::value(Some(outcome.as_str())),
            )
            .col_expr(workflow_runs::Column::FinishedAt, Expr::value(Some(now)))
            .col_expr(workflow_runs::Column::UpdatedAt, Expr::value(now));
        if end == RunStatus::Cancelled && run.error.is_none() {
            update = update.col_expr(
                workflow_runs::Column::Error,
                Expr::value(Some("cancelled".to_string())),
            );
        }
        update.exec(self.db()).await.map_err(db_err)?;
        metrics::counter!(RUNS_FINISHED, "status" => end.as_str()).increment(1);
        self.wake_parent(run).await
    }

    /// Runs one registered compensation of `run` (with its retries) and records its outcome.
    async fn undo(
        &self,
        run: &workflow_runs::Model,
        comp: &workflow_compensations::Model,
        state: &ConvState,
    ) -> anyhow::Result<CompensationStatus> {
        let succeeded = self.may_have_applied(run.id, comp.seq).await?;
        let mut attempts = comp.attempts;
        let (status, error) = loop {
            attempts += 1;
            match self.compensate(run, comp, state, succeeded).await {
                Ok(status) => break (status, None),
                Err(e) if attempts as u32 >= COMPENSATION_ATTEMPTS => {
                    break (CompensationStatus::Failed, Some(e))
                }
                Err(_) => {
                    let delay = jobs::backoff(
                        attempts as u32,
                        Duration::from_millis(500),
                        Duration::from_secs(5),
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        };
        workflow_compensations::Entity::update_many()
            .filter(workflow_compensations::Column::Id.eq(comp.id))
            .col_expr(
                workflow_compensations::Column::Status,
                Expr::value(status.as_str()),
            )
            .col_expr(
                workflow_compensations::Column::Attempts,
                Expr::value(attempts),
            )
            .col_expr(workflow_compensations::Column::Error, Expr::value(error))
            .col_expr(
                workflow_compensations::Column::FinishedAt,
                Expr::value(Some(Utc::now())),
            )
            .exec(self.db())
            .await
            .map_err(db_err)?;
        Ok(status)
    }

    /// Undoes a branch that reached its Join: its registered compensations, newest first (a
    /// branch of its own among them undoes that one's). Its `compensation` says how it went.
    async fn undo_branch(
        &self,
        branch: &workflow_runs::Model,
    ) -> Result<CompensationStatus, String> {
        let pending = workflow_compensations::Entity::find()
            .filter(workflow_compensations::Column::RunId.eq(branch.id))
            .filter(
                workflow_compensations::Column::Status.eq(CompensationStatus::Registered.as_str()),
            )
            .order_by_desc(workflow_compensations::Column::Seq)
            .all(self.db())
            .await
            .map_err(|e| e.to_string())?;
        let state: ConvState = serde_json::from_value(branch.state.clone()).unwrap_or_default();
        for comp in pending {
            self.undo(branch, &comp, &state)
                .await
                .map_err(|e| e.to_string())?;
        }
        let all = workflow_compensations::Entity::find()
            .filter(workflow_compensations::Column::RunId.eq(branch.id))
            .all(self.db())
            .await
            .map_err(|e| e.to_string())?;
        workflow_runs::Entity::update_many()
            .filter(workflow_runs::Column::Id.eq(branch.id))
            .col_expr(
                workflow_runs::Column::Compensation,
                Expr::value(Some(outcome(&all).as_str())),
            )
            .exec(self.db())
            .await
            .map_err(|e| e.to_string())?;
        let has = |s: CompensationStatus| all.iter().any(|c| c.status == s.as_str());
        if has(CompensationStatus::Failed) {
            return Err(format!("branch run {} was not fully undone", branch.id));
        }
        Ok(if has(CompensationStatus::NotCompensable) {
            CompensationStatus::NotCompensable
        } else if has(CompensationStatus::Done) {
            CompensationStatus::Done
        } else {
            CompensationStatus::Skipped
        })
    }

    /// Undoes a Parallel step: an unfinished branch is cancelled (it undoes its own steps), one
    /// that reached the Join is undone here, one that failed or was cancelled undid itself.
    async fn undo_branches(
        &self,
        run: &workflow_runs::Model,
        keys: &[&str],
    ) -> Result<CompensationStatus, String> {
        let service = self
            .rt
            .service()
            .ok_or("workflows cannot cancel runs here")?;
        let mut statuses = Vec::new();
        for key in keys.iter().rev() {
            let find = || {
                workflow_runs::Entity::find()
                    .filter(workflow_runs::Column::TenantId.eq(run.tenant_id))
                    .filter(workflow_runs::Column::WorkflowId.eq(run.workflow_id))
                    .filter(workflow_runs::Column::TriggerKey.eq(*key))
                    .one(self.db())
            };
            let Some(branch) = find().await.map_err(|e| e.to_string())? else {
                continue;
            };
            let mut status = RunStatus::parse(&branch.status);
            if !status.is_some_and(RunStatus::is_final) {
                match service.cancel_child(run.tenant_id, key).await {
                    // It finished meanwhile: look again.
                    Ok(CompensationStatus::NotCompensable) => {
                        status = Some(RunStatus::Succeeded);
                    }
                    Ok(s) => {
                        statuses.push(s);
                        continue;
                    }
                    Err(e) => return Err(e.user_message()),
                }
            }
            if status == Some(RunStatus::Succeeded) {
                let branch = find()
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("the branch's run no longer exists")?;
                statuses.push(Box::pin(self.undo_branch(&branch)).await?);
            }
        }
        Ok(if statuses.contains(&CompensationStatus::NotCompensable) {
            CompensationStatus::NotCompensable
        } else if statuses.contains(&CompensationStatus::Done) {
            CompensationStatus::Done
        } else {
            CompensationStatus::Skipped
        })
    }

    /// A run another run's step waits for has ended: that step looks now instead of at its
    /// next pause's end (its wait is moved to now, and a job queued).
    async fn wake_parent(&self, run: &workflow_runs::Model) -> anyhow::Result<()> {
        let Some(parent) = run.state["vars"][PARENT]
            .as_str()
            .and_then(|s| s.parse::<Uuid>().ok())
        else {
            return Ok(());
        };
        let Some(waiting) = self
            .load(parent)
            .await?
            .filter(|p| p.tenant_id == run.tenant_id && p.status == RunStatus::Waiting.as_str())
        else {
            return Ok(());
        };
        if let Some(RunWait::Until { node, .. }) = waiting
            .waiting
            .clone()
            .and_then(|w| serde_json::from_value::<RunWait>(w).ok())
        {
            let now = RunWait::Until {
                node,
                at: Utc::now(),
            };
            workflow_runs::Entity::update_many()
                .filter(workflow_runs::Column::Id.eq(parent))
                .filter(workflow_runs::Column::Status.eq(RunStatus::Waiting.as_str()))
                .filter(workflow_runs::Column::Attempt.eq(waiting.attempt))
                .col_expr(
                    workflow_runs::Column::Waiting,
                    Expr::value(Some(serde_json::to_value(now)?)),
                )
                .exec(self.db())
                .await
                .map_err(db_err)?;
        }
        schedule(
            self.db(),
            run.tenant_id,
            parent,
            format!("{parent}:child:{}", run.id),
            None,
        )
        .await
        .map_err(db_err)
    }

    /// Whether step `seq` may have applied its effect: it succeeded, or an attempt has no
    /// recorded outcome (its worker died, or its checkpoint lost the race) or timed out. Only a
    /// step whose every attempt failed with an answer is known not to have.
    async fn may_have_applied(&self, run: Uuid, seq: i32) -> anyhow::Result<bool> {
        let attempts = workflow_steps::Entity::find()
            .filter(workflow_steps::Column::RunId.eq(run))
            .filter(workflow_steps::Column::Seq.eq(seq))
            .all(self.db())
            .await
            .map_err(db_err)?;
        Ok(attempts.iter().any(|a| {
            a.status == StepStatus::Succeeded.as_str()
                || a.status == StepStatus::Running.as_str()
                || a.error.as_deref().is_some_and(|e| e.starts_with(TIMED_OUT))
        }))
    }

    /// Undoes one step. A booking is cancelled whenever one may exist (its id says whether it
    /// does); other effects only when their step may have applied them.
    async fn compensate(
        &self,
        run: &workflow_runs::Model,
        comp: &workflow_compensations::Model,
        state: &ConvState,
        succeeded: bool,
    ) -> Result<CompensationStatus, String> {
        let action = &comp.action;
        let kind = action["type"].as_str().unwrap_or_default();
        let access = nodes::access_for(run.tenant_id, run.workflow_id);
        let key = format!("wf:{}:{}:undo", run.id, comp.seq);
        match kind {
            "cancel_booking" => {
                let id: Uuid = action["booking_id"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or("the compensation names no booking")?;
                let reason = format!("the workflow run {} did not complete", run.id);
                match nodes::cancel_booking(&self.rt, &access, id, &reason).await? {
                    "cancelled" => Ok(CompensationStatus::Done),
                    _ => Ok(CompensationStatus::Skipped),
                }
            }
            "agent" => {
                let conversation: Uuid = action["conversation_id"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or("the compensation names no conversation")?;
                let made = bookings::Entity::find()
                    .filter(bookings::Column::TenantId.eq(run.tenant_id))
                    .filter(bookings::Column::ConversationId.eq(conversation))
                    .all(&self.rt.db)
                    .await
                    .map_err(|e| e.to_string())?;
                let reason = format!("the workflow run {} did not complete", run.id);
                let mut cancelled = 0;
                for b in made {
                    if nodes::cancel_booking(&self.rt, &access, b.id, &reason).await? == "cancelled"
                    {
                        cancelled += 1;
                    }
                }
                Ok(if cancelled > 0 {
                    CompensationStatus::Done
                } else {
                    CompensationStatus::Skipped
                })
            }
            // A called run may exist whatever the step's attempts said.
            "workflow" => {
                let key = action["key"].as_str().unwrap_or_default();
                let service = self
                    .rt
                    .service()
                    .ok_or("workflows cannot cancel runs here")?;
                service
                    .cancel_child(run.tenant_id, key)
                    .await
                    .map_err(|e| e.user_message())
            }
            // Branches may exist, and have done things, whatever the step's attempts said.
            "branches" => {
                let keys: Vec<&str> = action["keys"]
                    .as_array()
                    .map(|k| k.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                self.undo_branches(run, &keys).await
            }
            _ if !succeeded => Ok(CompensationStatus::Skipped),
            "http" => {
                let ctx = nodes::context(state);
                nodes::send_with_secrets(&self.rt, run.tenant_id, &action["request"], &ctx, &key)
                    .await?;
                Ok(CompensationStatus::Done)
            }
            "email" => {
                let ctx = nodes::context(state);
                let to = super::expr::render(action["to"].as_str().unwrap_or_default(), &ctx)?;
                let message = super::expr::render_value(&action["message"], &ctx)?;
                let cx = StepCx {
                    rt: self.rt.clone(),
                    tenant_id: run.tenant_id,
                    run_id: run.id,
                    workflow_id: run.workflow_id,
                    node: comp.node.clone(),
                    seq: u32::try_from(comp.seq).unwrap_or(0),
                    attempt: 1,
                    spent: Default::default(),
                };
                nodes::queue_email(
                    &cx,
                    &to,
                    message["subject"].as_str().unwrap_or("Correction"),
                    message["body"].as_str().unwrap_or_default(),
                    key,
                )
                .await?;
                Ok(CompensationStatus::Done)
            }
            _ => Ok(CompensationStatus::NotCompensable),
        }
    }
}

/// How a run's compensations went, from their rows.
fn outcome(all: &[workflow_compensations::Model]) -> CompensationOutcome {
    let undone = |s: &str| {
        matches!(
            CompensationStatus::parse(s),
            Some(CompensationStatus::Failed | CompensationStatus::NotCompensable)
        )
    };
    if all
        .iter()
        .all(|c| CompensationStatus::parse(&c.status) == Some(CompensationStatus::Skipped))
    {
        CompensationOutcome::Nothing
    } else if all.iter().any(|c| undone(&c.status)) {
        CompensationOutcome::Partial
    } else {
        CompensationOutcome::Full
    }
}

/// The branch runs of `run`'s Parallel steps, and theirs, at most `limit` (oldest first per
/// level). A branch's key starts with its step's (`branch:wf:<run>:<seq>:<i>`).
pub async fn branches(
    conn: &impl ConnectionTrait,
    run: &workflow_runs::Model,
    limit: u64,
) -> Result<Vec<workflow_runs::Model>, DbErr> {
    let mut found = Vec::new();
    let mut level = vec![run.id];
    // Branches nest no deeper than the definition's Parallel steps, and runs call one another
    // at most `call::MAX_DEPTH` deep; this bound only guards against a malformed key.
    for _ in 0..super::MAX_NODES {
        if level.is_empty() || found.len() as u64 >= limit {
            break;
        }
        let mut any = sea_orm::Condition::any();
        for id in &level {
            any =
                any.add(workflow_runs::Column::TriggerKey.starts_with(format!("branch:wf:{id}:")));
        }
        let next = workflow_runs::Entity::find()
            .filter(workflow_runs::Column::TenantId.eq(run.tenant_id))
            .filter(workflow_runs::Column::WorkflowId.eq(run.workflow_id))
            .filter(any)
            .order_by_asc(workflow_runs::Column::Id)
            .limit(limit - found.len() as u64)
            .all(conn)
            .await?;
        level = next.iter().map(|b| b.id).collect();
        found.extend(next);
    }
    Ok(found)
}

#[async_trait::async_trait]
impl JobHandler for RunWorkflow {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn concurrency(&self) -> usize {
        8
    }

    /// A slice of steps, the last of which may take its node's longest timeout.
    fn timeout(&self) -> Duration {
        SLICE + Duration::from_millis(super::MAX_TIMEOUT_MS) + Duration::from_secs(60)
    }

    async fn run(&self, ctx: &mut JobContext) -> anyhow::Result<()> {
        let run_id: Uuid = ctx.payload()["run_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Permanent("the payload names no run".into()))?;
        self.drive(run_id).await
    }
}
