//! `server bench workflows`: what the engine costs per step, and runs per second end to end.
//!
//! - **Engine alone**: a graph of `set` nodes (one variable each) stepped in memory, the way
//!   the driver steps it, without the database: microseconds per step.
//! - **End to end**: a published workflow of 10 steps (trigger, 8 `set` nodes, end) started
//!   `runs` times through the service and drained by one in-process worker (8 runs at a time),
//!   each step registered and checkpointed in the database as in production: runs/s, steps/s
//!   and the process's CPU per step.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;
use uuid::Uuid;

use app::services::WorkflowService;
use app::types::{CreateWorkflow, PublishWorkflow, StartRun, WorkflowDefinition};

use super::nodes::{self, StepCx, WorkflowRuntime};
use super::run::RunWorkflow;
use super::service::WorkflowServiceImpl;
use crate::config::Config;
use crate::engine::{ConvState, Graph};
use crate::jobs::{Registry, Worker};
use crate::rag::bench::cpu_seconds;
use crate::store::{self, workflow_runs};

/// Nodes in the benchmark's workflow, trigger and end included.
const STEPS: usize = 10;

fn definition() -> Result<WorkflowDefinition, serde_json::Error> {
    let mut nodes = vec![json!({"id": "start", "kind": "manual_trigger"})];
    let mut edges = Vec::new();
    let mut previous = "start".to_string();
    for i in 0..STEPS - 2 {
        let id = format!("set{i}");
        nodes.push(json!({"id": id, "kind": "set", "config": {"values": {format!("v{i}"): "{{ trigger.n }}"}}}));
        edges.push(json!({"from": previous, "to": id}));
        previous = id;
    }
    nodes.push(json!({"id": "done", "kind": "end", "config": {"output": {"n": "{{ vars.v0 }}"}}}));
    edges.push(json!({"from": previous, "to": "done"}));
    serde_json::from_value(json!({"nodes": nodes, "edges": edges}))
}

pub async fn run(config: &Config, runs: usize) -> anyhow::Result<()> {
    let db = store::connect(config).await?;
    store::migrate(&db).await?;
    let backend = if config.is_sqlite() {
        "SQLite"
    } else {
        "PostgreSQL"
    };
    // The runtime `server worker` builds (no node of the benchmark calls the LLM or search).
    let knowledge = crate::rag::Knowledge::new(config.knowledge.clone(), config.circuit);
    let keys = crate::secrets::KeyRing::load(config)?;
    let (kv, _) = crate::kv::Kv::from_config(config).await?;
    let agents = crate::startup::Agents::build(config, &db, &kv, &knowledge, &keys, false)?;
    let rt = Arc::new(WorkflowRuntime::new(
        db.clone(),
        agents.conversations.clone(),
        keys.clone(),
        false,
    )?);
    let def = definition()?;

    // Engine alone.
    let graph_def = super::graph_def(&def).ok_or_else(|| anyhow::anyhow!("no trigger"))?;
    let graph = Graph::build(&graph_def, &nodes::registry())?;
    let rounds = 2_000;
    let started = Instant::now();
    for round in 0..rounds {
        let mut state = ConvState::default();
        state.vars.insert("trigger".into(), json!({ "n": round }));
        let mut current = Some(graph.start().to_string());
        let mut seq = 0;
        while let Some(node) = current {
            let cx = StepCx {
                rt: rt.clone(),
                tenant_id: Uuid::nil(),
                run_id: Uuid::nil(),
                workflow_id: Uuid::nil(),
                node: node.clone(),
                seq,
                attempt: 1,
                spent: Default::default(),
            };
            let step = graph.step(&cx, &mut state, &node, &|_| {}).await?;
            crate::engine::keep_output(&mut state, &node, step.output.output.unwrap_or_default());
            current = step.next;
            seq += 1;
        }
    }
    let engine = started.elapsed();
    let engine_steps = rounds * STEPS;

    // End to end.
    let tenant = crate::tenancy::create_tenant(
        &db,
        &format!("bench-{}", &Uuid::new_v4().simple().to_string()[..8]),
        "Workflow bench",
    )
    .await?;
    let access = crate::tenancy::cli_access(tenant.id);
    let service = WorkflowServiceImpl::new(
        db.clone(),
        rt.conversations.runtime().clone(),
        keys.clone(),
        config.console_url(),
    );
    let workflow = service
        .create_workflow(
            &access,
            CreateWorkflow {
                name: "bench".into(),
                description: String::new(),
                definition: Some(def),
            },
        )
        .await?;
    service
        .publish_workflow(&access, workflow.id, PublishWorkflow::default())
        .await?;
    let cpu_before = cpu_seconds("none").map_or(0.0, |(process, _)| process);
    let started = Instant::now();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let worker = Worker::new(
        db.clone(),
        Registry::default().with(RunWorkflow::new(rt)),
        config.jobs.clone(),
    );
    let handle = tokio::spawn(worker.run(async move {
        let _ = stopped.changed().await;
    }));
    // Starting counts: runs are started while the first ones already run, as they would be.
    // Past the tenant's limit of unfinished runs, a start waits for some to finish.
    for n in 0..runs {
        loop {
            let start = StartRun {
                input: json!({ "n": n }),
                version: None,
            };
            match service.start_run(&access, workflow.id, start).await {
                Ok(_) => break,
                Err(app::error::AppError::Conflict(_)) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    let finished = || {
        workflow_runs::Entity::find()
            .filter(workflow_runs::Column::TenantId.eq(tenant.id))
            .filter(workflow_runs::Column::Status.is_in(super::run::FINAL))
            .count(&db)
    };
    while (finished().await? as usize) < runs {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let cpu = cpu_seconds("none").map_or(0.0, |(process, _)| process) - cpu_before;
    let _ = stop.send(true);
    let _ = handle.await;
    let failed = workflow_runs::Entity::find()
        .filter(workflow_runs::Column::TenantId.eq(tenant.id))
        .filter(workflow_runs::Column::Status.ne("succeeded"))
        .count(&db)
        .await?;
    anyhow::ensure!(failed == 0, "{failed} runs did not succeed");
    let steps = runs * STEPS;
    println!("workflow benchmark on {backend}");
    println!(
        "  engine alone: {engine_steps} steps in {:.1} ms: {:.1} µs per step (set nodes, no database)",
        engine.as_secs_f64() * 1000.0,
        engine.as_secs_f64() * 1e6 / engine_steps as f64
    );
    println!(
        "  end to end:   {runs} runs of {STEPS} steps in {:.2} s: {:.0} runs/s, {:.0} steps/s \
         (one worker, 8 runs at a time; every step registered and checkpointed)",
        elapsed.as_secs_f64(),
        runs as f64 / elapsed.as_secs_f64(),
        steps as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  process CPU:  {:.0} µs per step (starting the runs included)",
        cpu * 1e6 / steps as f64
    );
    Ok(())
}
