//! "Run a workflow" (`workflow`): one of the tenant's workflows as a step. The step starts a
//! run of the other workflow's latest published version (its trigger must be a Start step),
//! with the input its configuration renders, and waits for it without holding a worker: it
//! suspends, and the child's end wakes it (it also looks again after a growing pause, in case
//! that wake-up was lost). The child's output becomes the step's; a failed or cancelled child
//! fails the step with the child's error.
//!
//! - **Once.** The child run's key is derived from the step's (`call:<step key>`), so a step
//!   run again after a crash finds the run it started instead of starting another.
//! - **Bounded.** The child's state records its depth (`vars.depth`); a call deeper than
//!   [`MAX_DEPTH`] fails, so workflows that call each other in a circle end.
//! - **Compensation.** If the caller fails or is cancelled later, an unfinished child is
//!   cancelled (and so undoes its own steps); a finished one is recorded as not compensable:
//!   its effects stand, as its own trace shows.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{json, Value};
use uuid::Uuid;

use app::types::RunStatus;

use super::expr;
use super::nodes::{context, done, look_again, memo, required, set_memo, StepCx};
use crate::engine::{ConvState, Events, Node, StepOutput};
use crate::store::{workflow_runs, workflows};

/// How deep workflows may call one another (the first run is depth 0).
pub const MAX_DEPTH: u64 = 5;
/// Where the step keeps the child's id while it waits.
const CALLS: &str = "calls";

pub struct CallStep {
    workflow: String,
    input: Value,
}

impl CallStep {
    pub fn parse(config: &Value) -> Result<CallStep, String> {
        let workflow = required(config, "workflow")?.trim().to_string();
        let input = match config.get("input") {
            None | Some(Value::Null) => json!({}),
            Some(v) if v.is_object() => v.clone(),
            Some(_) => return Err("`input` must be an object".into()),
        };
        Ok(CallStep { workflow, input })
    }

    /// The child run's key: the same for every execution of this step.
    pub fn key(cx: &StepCx) -> String {
        format!("call:{}", cx.key())
    }

    /// The tenant's workflow this step names (by id or by name).
    async fn target(&self, cx: &StepCx) -> Result<workflows::Model, String> {
        let mut query =
            workflows::Entity::find().filter(workflows::Column::TenantId.eq(cx.tenant_id));
        query = match self.workflow.parse::<Uuid>() {
            Ok(id) => query.filter(workflows::Column::Id.eq(id)),
            Err(_) => query.filter(workflows::Column::Name.eq(self.workflow.as_str())),
        };
        query
            .one(&cx.rt.db)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("there is no workflow `{}`", self.workflow))
    }

    async fn start(&self, cx: &StepCx, state: &ConvState) -> Result<Uuid, String> {
        let depth = state.vars.get("depth").and_then(Value::as_u64).unwrap_or(0) + 1;
        if depth > MAX_DEPTH {
            return Err(format!(
                "workflows may call one another at most {MAX_DEPTH} deep"
            ));
        }
        let target = self.target(cx).await?;
        if target.id == cx.workflow_id {
            return Err("a workflow cannot run itself".into());
        }
        let input = expr::render_value(&self.input, &context(state))?;
        let service = cx.rt.service().ok_or("workflows cannot start runs here")?;
        let child = service
            .start_child(
                cx.tenant_id,
                target.id,
                input,
                Self::key(cx),
                depth,
                cx.run_id,
            )
            .await
            .map_err(|e| format!("`{}` could not start: {}", target.name, e.user_message()))?;
        Ok(child.id)
    }
}

#[async_trait::async_trait]
impl Node<StepCx> for CallStep {
    async fn run(
        &self,
        cx: &StepCx,
        state: &mut ConvState,
        _: Events<'_>,
    ) -> Result<StepOutput, String> {
        let (child, looks) = match memo(state, CALLS, &cx.node) {
            Some(m) => (
                m["run_id"]
                    .as_str()
                    .and_then(|s| s.parse::<Uuid>().ok())
                    .ok_or("the called run is not recorded")?,
                m["looks"].as_i64().unwrap_or(0),
            ),
            None => (self.start(cx, state).await?, 0),
        };
        let run = workflow_runs::Entity::find_by_id(child)
            .filter(workflow_runs::Column::TenantId.eq(cx.tenant_id))
            .one(&cx.rt.db)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the called run no longer exists")?;
        match RunStatus::parse(&run.status) {
            Some(RunStatus::Succeeded) => {
                set_memo(state, CALLS, &cx.node, None);
                Ok(done(json!({
                    "run_id": run.id,
                    "status": run.status,
                    "output": run.output.unwrap_or(Value::Null),
                })))
            }
            Some(RunStatus::Failed | RunStatus::Cancelled) => {
                set_memo(state, CALLS, &cx.node, None);
                Err(format!(
                    "the called run {} {}: {}",
                    run.id,
                    run.status,
                    run.error.unwrap_or_default()
                ))
            }
            _ => Ok(look_again(
                state,
                CALLS,
                &cx.node,
                json!({ "run_id": child }),
                looks,
            )),
        }
    }

    fn compensation(&self, cx: &StepCx, _: &ConvState) -> Option<Value> {
        Some(json!({ "type": "workflow", "node": cx.node, "key": Self::key(cx) }))
    }
}
