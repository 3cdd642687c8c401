//! "Parallel" (`parallel`) and "Join" (`join`): branches that run at the same time.
//!
//! Each branch is a run of its own, of the same version, started at the branch's first node
//! with a copy of the run's values (`trigger`, `vars`, `nodes`) and the Join where it ends
//! (`vars.branch.join`): the driver ends a branch run, as succeeded, instead of entering that
//! Join. Separate runs are separate jobs, so branches take as many workers as are free, and each
//! keeps the engine's guarantees (a checkpoint per step, retries, waits, approvals).
//!
//! The step waits like "Run a workflow" (`call.rs`): it suspends, a branch's end wakes it, and
//! a growing pause is the fallback. When every branch has arrived it copies what their steps
//! output and set into the run's values and leaves for the Join (an edge `graph_def` adds).
//!
//! - **Once.** Branch runs are keyed by the step and the branch (`branch:<step key>:<i>`), so a
//!   step run again after a crash finds the branches it started.
//! - **A failed branch** (or a cancelled one) cancels the unfinished others, which undo their
//!   own steps, and fails the step with its error.
//! - **Compensation.** A branch that reached the Join keeps its compensations registered: if
//!   the run fails or is cancelled later, the step's compensation undoes them (newest first,
//!   like the run's own); an unfinished branch is cancelled. A run that succeeds releases them.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use app::types::{RunStatus, MAX_BRANCHES};

use super::nodes::{done, leave, look_again, memo, set_memo, StepCx};
use crate::engine::{ConvState, Events, Node, StepOutput};
use crate::store::workflow_runs;

/// Where the step keeps its branches' runs while it waits.
const BRANCHES: &str = "branches";
/// Where a branch run keeps where it ends.
pub const BRANCH: &str = "branch";

pub struct ParallelStep {
    /// The first node of each branch, and the Join where they meet (from `graph_def`; empty in
    /// a definition that has not become a graph).
    starts: Vec<String>,
    join: String,
}

impl ParallelStep {
    pub fn parse(config: &Value) -> Result<ParallelStep, String> {
        config
            .get("branches")
            .and_then(Value::as_u64)
            .filter(|n| (2..=MAX_BRANCHES).contains(n))
            .ok_or_else(|| format!("`branches` must be a whole number from 2 to {MAX_BRANCHES}"))?;
        let starts = config
            .get("starts")
            .and_then(Value::as_array)
            .map(|s| {
                s.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let join = config
            .get("join")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Ok(ParallelStep { starts, join })
    }

    /// Branch `i`'s run key: the same for every execution of this step.
    pub fn key(cx: &StepCx, i: usize) -> String {
        format!("branch:{}:{i}", cx.key())
    }

    /// Starts every branch (an empty one, leading straight to the Join, starts nothing).
    async fn start(&self, cx: &StepCx, state: &ConvState) -> Result<Vec<Option<Uuid>>, String> {
        if self.starts.is_empty() || self.join.is_empty() {
            return Err("the step's branches are not known (publish the workflow)".into());
        }
        let service = cx.rt.service().ok_or("workflows cannot start runs here")?;
        let copy = |key: &str| state.vars.get(key).cloned().unwrap_or_else(|| json!({}));
        let values = json!({
            "vars": {
                "trigger": state.vars.get("trigger").cloned().unwrap_or(Value::Null),
                "vars": copy("vars"),
                "nodes": copy("nodes"),
                BRANCH: { "join": self.join, "parallel": cx.node },
            }
        });
        let mut runs = Vec::with_capacity(self.starts.len());
        for (i, start) in self.starts.iter().enumerate() {
            if *start == self.join {
                runs.push(None);
                continue;
            }
            let run = service
                .start_branch(
                    cx.tenant_id,
                    cx.run_id,
                    start.clone(),
                    values.clone(),
                    Self::key(cx, i),
                )
                .await
                .map_err(|e| format!("branch {} could not start: {}", i + 1, e.user_message()))?;
            runs.push(Some(run.id));
        }
        Ok(runs)
    }

    /// Cancels the branches that have not finished (they undo their own steps).
    async fn cancel_unfinished(&self, cx: &StepCx, runs: &[workflow_runs::Model]) {
        let Some(service) = cx.rt.service() else {
            return;
        };
        for run in runs {
            if RunStatus::parse(&run.status).is_some_and(RunStatus::is_final) {
                continue;
            }
            if let Some(key) = &run.trigger_key {
                if let Err(e) = service.cancel_child(cx.tenant_id, key).await {
                    tracing::warn!(error = %e, run = %run.id, "could not cancel a branch");
                }
            }
        }
    }
}

/// Copies what a branch's steps output (`nodes`) and set (`vars`) into the run's values: the
/// entries that differ from `before` (the values the branches started with), so a branch that
/// left a value alone does not put back the old one over another branch's.
fn merge(state: &mut ConvState, before: &Value, branch: &Value) {
    for area in ["nodes", "vars"] {
        let Some(from) = branch["vars"][area].as_object() else {
            continue;
        };
        let into = state
            .vars
            .entry(area.to_string())
            .or_insert_with(|| json!({}));
        if !into.is_object() {
            *into = Value::Object(Map::new());
        }
        if let Some(into) = into.as_object_mut() {
            for (k, v) in from {
                if before[area].get(k) != Some(v) {
                    into.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Node<StepCx> for ParallelStep {
    async fn run(
        &self,
        cx: &StepCx,
        state: &mut ConvState,
        _: Events<'_>,
    ) -> Result<StepOutput, String> {
        let (ids, looks) = match memo(state, BRANCHES, &cx.node) {
            Some(m) => (
                m["runs"]
                    .as_array()
                    .map(|r| {
                        r.iter()
                            .map(|id| id.as_str().and_then(|s| s.parse::<Uuid>().ok()))
                            .collect::<Vec<_>>()
                    })
                    .ok_or("the branches' runs are not recorded")?,
                m["looks"].as_i64().unwrap_or(0),
            ),
            None => (self.start(cx, state).await?, 0),
        };
        let started: Vec<Uuid> = ids.iter().flatten().copied().collect();
        let rows = workflow_runs::Entity::find()
            .filter(workflow_runs::Column::TenantId.eq(cx.tenant_id))
            .filter(workflow_runs::Column::Id.is_in(started))
            .all(&cx.rt.db)
            .await
            .map_err(|e| e.to_string())?;
        let row = |id: &Uuid| rows.iter().find(|r| r.id == *id);
        // A failed or cancelled branch fails the step (and stops the others).
        for (i, id) in ids.iter().enumerate() {
            let Some(id) = id else { continue };
            let run = row(id).ok_or_else(|| format!("branch {}'s run no longer exists", i + 1))?;
            if matches!(
                RunStatus::parse(&run.status),
                Some(RunStatus::Failed | RunStatus::Cancelled)
            ) {
                self.cancel_unfinished(cx, &rows).await;
                set_memo(state, BRANCHES, &cx.node, None);
                return Err(format!(
                    "branch {} (run {}) {}: {}",
                    i + 1,
                    run.id,
                    run.status,
                    run.error.clone().unwrap_or_default()
                ));
            }
        }
        if rows
            .iter()
            .any(|r| r.status != RunStatus::Succeeded.as_str())
        {
            let runs: Vec<Value> = ids.iter().map(|id| json!(id)).collect();
            let waiting = json!({ "runs": runs });
            return Ok(look_again(state, BRANCHES, &cx.node, waiting, looks));
        }
        set_memo(state, BRANCHES, &cx.node, None);
        let before = json!({
            "nodes": state.vars.get("nodes").cloned().unwrap_or(Value::Null),
            "vars": state.vars.get("vars").cloned().unwrap_or(Value::Null),
        });
        let mut branches = Vec::with_capacity(ids.len());
        for id in &ids {
            match id.and_then(|id| row(&id)) {
                Some(run) => {
                    merge(state, &before, &run.state);
                    branches.push(json!({
                        "run_id": run.id,
                        "status": run.status,
                        "output": run.output.clone().unwrap_or(Value::Null),
                    }));
                }
                None => branches.push(json!({ "run_id": null, "status": "empty", "output": null })),
            }
        }
        Ok(leave(super::JOINED, json!({ "branches": branches })))
    }

    fn compensation(&self, cx: &StepCx, _: &ConvState) -> Option<Value> {
        let keys: Vec<String> = (0..self.starts.len()).map(|i| Self::key(cx, i)).collect();
        Some(json!({ "type": "branches", "node": cx.node, "keys": keys }))
    }
}

/// Where branches meet: the run goes on from here.
pub struct Join;

#[async_trait::async_trait]
impl Node<StepCx> for Join {
    async fn run(
        &self,
        _: &StepCx,
        _: &mut ConvState,
        _: Events<'_>,
    ) -> Result<StepOutput, String> {
        Ok(done(json!({})))
    }
}

/// Where a branch run ends (the Join it must not enter), if the run is a branch.
pub fn branch_join(state: &ConvState) -> Option<String> {
    state
        .vars
        .get(BRANCH)
        .and_then(|b| b.get("join"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_branch_that_left_a_value_alone_does_not_put_the_old_one_back() {
        let mut state = ConvState::default();
        state
            .vars
            .insert("vars".into(), json!({"x": "old", "y": 1}));
        state.vars.insert("nodes".into(), json!({"seen": {"n": 1}}));
        let before = json!({"vars": {"x": "old", "y": 1}, "nodes": {"seen": {"n": 1}}});
        let changed =
            json!({"vars": {"vars": {"x": "new", "y": 1}, "nodes": {"seen": {"n": 2}, "a": {}}}});
        let untouched =
            json!({"vars": {"vars": {"x": "old", "y": 1, "z": true}, "nodes": {"seen": {"n": 1}}}});
        merge(&mut state, &before, &changed);
        merge(&mut state, &before, &untouched);
        assert_eq!(state.vars["vars"], json!({"x": "new", "y": 1, "z": true}));
        assert_eq!(state.vars["nodes"], json!({"seen": {"n": 2}, "a": {}}));
    }
}
