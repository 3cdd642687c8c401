//! The graph runtime: nodes over a typed conversation state, conditional edges, loops bounded
//! by a step limit, a record per step and a checkpoint after each one.
//!
//! A graph is data ([`GraphDef`]: nodes with a kind and a JSON config, edges with typed
//! conditions), so the agent graph every tenant starts with and the visual workflows run on
//! the same runtime. [`NodeRegistry`] turns a node's kind and config into a [`Node`]; the
//! engine knows nothing of HTTP or of where checkpoints are kept ([`StepSink`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use app::types::{RouteDecision, Source, StepDetail, StreamEvent, Usage};

/// One message of the conversation as the agents see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// `user`, `assistant` or `operator`.
    pub role: String,
    pub content: String,
    pub agent: Option<String>,
}

/// What the nodes read and write; persisted as the conversation's checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConvState {
    /// Earlier messages, oldest first (the newest few are kept).
    pub history: Vec<Turn>,
    /// The specialist answering.
    pub agent: Option<String>,
    /// This turn's customer message.
    pub input: String,
    pub route: Option<RouteDecision>,
    /// The answer, once a node wrote one.
    pub reply: Option<String>,
    pub sources: Vec<Source>,
    /// A specialist asked another to take over: (agent, reason).
    pub transfer: Option<(String, String)>,
    /// A specialist asked for a person (the reason).
    pub handoff: Option<String>,
    /// Free values for tenant workflows.
    pub vars: BTreeMap<String, serde_json::Value>,
}

/// The state after a completed step and the node to run next (none once the turn ended).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub state: ConvState,
    pub next: Option<String>,
}

/// When an edge is taken. Edges leaving a node are tried in order; the first that holds wins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Condition {
    Always,
    /// The current specialist is this one.
    AgentIs {
        agent: String,
    },
    /// A specialist asked for another.
    Transfer,
    /// A specialist asked for a person.
    Handoff,
    /// A node wrote the answer.
    Replied,
    /// `vars[key] == value`.
    VarEquals {
        key: String,
        value: serde_json::Value,
    },
    /// The step left by this port (a workflow's condition took `true`, an approval was
    /// `rejected`); a node that names none leaves by `out`.
    Port {
        port: String,
    },
}

impl Condition {
    fn holds(&self, state: &ConvState, port: &str) -> bool {
        match self {
            Condition::Port { port: p } => p == port,
            Condition::Always => true,
            Condition::AgentIs { agent } => state.agent.as_deref() == Some(agent),
            Condition::Transfer => state.transfer.is_some(),
            Condition::Handoff => state.handoff.is_some(),
            Condition::Replied => state.reply.is_some(),
            Condition::VarEquals { key, value } => state.vars.get(key) == Some(value),
        }
    }
}

pub const END: &str = "end";

/// Where a turn keeps its steps' outputs (`vars.nodes.<id>`).
pub const NODES: &str = "nodes";

/// Keeps a step's output under `vars.nodes.<node>`, where templates read it.
pub fn keep_output(state: &mut ConvState, node: &str, output: serde_json::Value) {
    let nodes = state
        .vars
        .entry(NODES.to_string())
        .or_insert_with(|| serde_json::json!({}));
    if let Some(nodes) = nodes.as_object_mut() {
        nodes.insert(node.to_string(), output);
    }
}

/// The most steps any graph may allow (a workflow's own limit is lower).
pub const MAX_STEPS: u32 = 10_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeDef {
    pub id: String,
    pub kind: String,
    #[serde(default)]
    pub config: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EdgeDef {
    pub from: String,
    /// A node id, or `end`.
    pub to: String,
    #[serde(default = "always")]
    pub when: Condition,
}

fn always() -> Condition {
    Condition::Always
}

/// A graph as stored and drawn: serialisable, validated by [`Graph::build`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphDef {
    pub start: String,
    pub nodes: Vec<NodeDef>,
    pub edges: Vec<EdgeDef>,
    /// Node runs allowed per turn (loops end here).
    pub max_steps: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid graph: {0}")]
    Invalid(String),
    #[error("the turn stopped after {0} steps (step limit)")]
    StepLimit(u32),
    #[error("node {node} failed: {message}")]
    Node { node: String, message: String },
    #[error("could not save the step: {0}")]
    Persist(String),
}

/// What a node reports about its run.
#[derive(Debug, Default)]
pub struct StepOutput {
    pub detail: StepDetail,
    pub usage: Usage,
    /// The node's result, for the nodes after it (workflows keep it under `nodes.<id>`).
    pub output: Option<serde_json::Value>,
    /// The port the step leaves by ([`Condition::Port`]); `out` when none.
    pub port: Option<String>,
    /// The node is not done: run it again later (its state is checkpointed meanwhile).
    pub suspend: Option<Suspend>,
}

/// Why a node asks to be run again later instead of finishing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Suspend {
    /// Not before this instant (a wait).
    Until { at: chrono::DateTime<chrono::Utc> },
    /// Until a person approves or rejects; the prompt says what.
    Approval { prompt: String },
}

/// The port a step leaves by when its node names none.
pub const OUT: &str = "out";

/// One step taken by [`Graph::step`]: what the node reported and where the graph goes next
/// (`None`: the end; the same node again when it suspended).
pub struct Step {
    pub output: StepOutput,
    pub next: Option<String>,
    pub duration_ms: u32,
}

/// Where events of a streamed turn go (ignored when nobody listens).
pub type Events<'a> = &'a (dyn Fn(StreamEvent) + Send + Sync);

/// A node: reads and writes the state. `C` is what the application gives every node (the
/// tenant, its services).
#[async_trait::async_trait]
pub trait Node<C: Send + Sync>: Send + Sync {
    async fn run(
        &self,
        cx: &C,
        state: &mut ConvState,
        events: Events<'_>,
    ) -> Result<StepOutput, String>;

    /// What undoes this node's effect if the run fails later (SAGA): registered before the node
    /// runs, so an effect whose answer was lost is still undone. None for nodes without effects.
    fn compensation(&self, _cx: &C, _state: &ConvState) -> Option<serde_json::Value> {
        None
    }
}

/// Builds nodes from their kind and config.
pub type NodeFactory<C> =
    Arc<dyn Fn(&serde_json::Value) -> Result<Arc<dyn Node<C>>, String> + Send + Sync>;

pub struct NodeRegistry<C> {
    kinds: HashMap<String, NodeFactory<C>>,
}

impl<C: Send + Sync> NodeRegistry<C> {
    pub fn new() -> Self {
        NodeRegistry {
            kinds: HashMap::new(),
        }
    }

    pub fn register(&mut self, kind: &str, factory: NodeFactory<C>) {
        self.kinds.insert(kind.to_string(), factory);
    }
}

impl<C: Send + Sync> Default for NodeRegistry<C> {
    fn default() -> Self {
        Self::new()
    }
}

/// A completed step, handed to the [`StepSink`] before the next one runs.
pub struct StepRecord<'a> {
    pub seq: u32,
    pub node: &'a str,
    pub output: &'a StepOutput,
    pub duration_ms: u32,
    pub checkpoint: &'a Checkpoint,
}

/// Keeps step records and checkpoints (the conversation store does).
#[async_trait::async_trait]
pub trait StepSink: Send + Sync {
    async fn step(&self, record: StepRecord<'_>) -> Result<(), String>;
}

/// A validated, runnable graph.
pub struct Graph<C> {
    start: String,
    nodes: HashMap<String, Arc<dyn Node<C>>>,
    edges: HashMap<String, Vec<(String, Condition)>>,
    max_steps: u32,
}

impl<C: Send + Sync> Graph<C> {
    pub fn build(def: &GraphDef, registry: &NodeRegistry<C>) -> Result<Graph<C>, EngineError> {
        Self::build_with(def, |n| match registry.kinds.get(&n.kind) {
            Some(factory) => factory(&n.config),
            None => Err(format!("unknown node kind '{}'", n.kind)),
        })
    }

    /// [`Graph::build`] with each node made by `make` (a caller whose nodes need more than
    /// their kind and configuration).
    pub fn build_with(
        def: &GraphDef,
        make: impl Fn(&NodeDef) -> Result<Arc<dyn Node<C>>, String>,
    ) -> Result<Graph<C>, EngineError> {
        let mut nodes = HashMap::new();
        for n in &def.nodes {
            if n.id == END || nodes.contains_key(&n.id) {
                return Err(EngineError::Invalid(format!(
                    "node id '{}' is reserved or repeated",
                    n.id
                )));
            }
            let node =
                make(n).map_err(|e| EngineError::Invalid(format!("node '{}': {e}", n.id)))?;
            nodes.insert(n.id.clone(), node);
        }
        if !nodes.contains_key(&def.start) {
            return Err(EngineError::Invalid(format!(
                "start node '{}' does not exist",
                def.start
            )));
        }
        let mut edges: HashMap<String, Vec<(String, Condition)>> = HashMap::new();
        for e in &def.edges {
            if !nodes.contains_key(&e.from) || !(e.to == END || nodes.contains_key(&e.to)) {
                return Err(EngineError::Invalid(format!(
                    "edge {} → {} names a node that does not exist",
                    e.from, e.to
                )));
            }
            edges
                .entry(e.from.clone())
                .or_default()
                .push((e.to.clone(), e.when.clone()));
        }
        if def.max_steps == 0 || def.max_steps > MAX_STEPS {
            return Err(EngineError::Invalid(format!(
                "max_steps must be 1–{MAX_STEPS}"
            )));
        }
        Ok(Graph {
            start: def.start.clone(),
            nodes,
            edges,
            max_steps: def.max_steps,
        })
    }

    pub fn start(&self) -> &str {
        &self.start
    }

    pub fn node(&self, id: &str) -> Option<&Arc<dyn Node<C>>> {
        self.nodes.get(id)
    }

    /// Where the graph goes from `current` leaving by `port`: the first edge whose condition
    /// holds; `None` for the end.
    pub fn next(&self, current: &str, state: &ConvState, port: &str) -> Option<String> {
        self.edges
            .get(current)
            .and_then(|edges| edges.iter().find(|(_, when)| when.holds(state, port)))
            .map(|(to, _)| to.clone())
            .filter(|to| to != END)
    }

    /// Runs the node `current` once and picks the edge to follow: the first of its edges whose
    /// condition holds, the end when none does, the same node when it suspended.
    pub async fn step(
        &self,
        cx: &C,
        state: &mut ConvState,
        current: &str,
        events: Events<'_>,
    ) -> Result<Step, EngineError> {
        let node = self
            .nodes
            .get(current)
            .ok_or_else(|| EngineError::Invalid(format!("node '{current}' does not exist")))?;
        let started = Instant::now();
        let output = node
            .run(cx, state, events)
            .await
            .map_err(|message| EngineError::Node {
                node: current.to_string(),
                message,
            })?;
        let next = if output.suspend.is_some() {
            Some(current.to_string())
        } else {
            self.next(current, state, output.port.as_deref().unwrap_or(OUT))
        };
        Ok(Step {
            output,
            next,
            duration_ms: u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX),
        })
    }

    /// Runs one turn from the start node (or from `resume`, an interrupted turn's next node)
    /// until an edge leads to `end`. Each step is handed to `sink` with the checkpoint; a
    /// step's output is kept under `vars.nodes.<id>` for the steps after it (as a workflow
    /// run keeps it).
    pub async fn run_turn(
        &self,
        cx: &C,
        state: &mut ConvState,
        resume: Option<String>,
        sink: &dyn StepSink,
        events: Events<'_>,
    ) -> Result<Usage, EngineError> {
        let mut usage = Usage::default();
        let mut current = resume
            .filter(|n| self.nodes.contains_key(n))
            .unwrap_or_else(|| self.start.clone());
        for seq in 0..self.max_steps {
            let step = self.step(cx, state, &current, events).await?;
            usage.add(&step.output.usage);
            if let Some(output) = &step.output.output {
                keep_output(state, &current, output.clone());
            }
            let checkpoint = Checkpoint {
                state: state.clone(),
                next: step.next.clone(),
            };
            sink.step(StepRecord {
                seq,
                node: &current,
                output: &step.output,
                duration_ms: step.duration_ms,
                checkpoint: &checkpoint,
            })
            .await
            .map_err(EngineError::Persist)?;
            match step.next {
                Some(next) => current = next,
                None => return Ok(usage),
            }
        }
        Err(EngineError::StepLimit(self.max_steps))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Appends its config's text to `vars.trail`; a counter node loops until 3.
    struct Append(String);

    #[async_trait::async_trait]
    impl Node<()> for Append {
        async fn run(
            &self,
            _: &(),
            state: &mut ConvState,
            _: Events<'_>,
        ) -> Result<StepOutput, String> {
            let trail = state
                .vars
                .get("trail")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            let count = state.vars.get("n").and_then(|v| v.as_u64()).unwrap_or(0) + 1;
            state
                .vars
                .insert("trail".into(), format!("{trail}{}", self.0).into());
            state.vars.insert("n".into(), count.into());
            if count >= 3 {
                state.vars.insert("done".into(), true.into());
            }
            Ok(StepOutput::default())
        }
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(u32, String, Option<String>)>>);

    #[async_trait::async_trait]
    impl StepSink for Recorder {
        async fn step(&self, r: StepRecord<'_>) -> Result<(), String> {
            self.0
                .lock()
                .unwrap()
                .push((r.seq, r.node.to_string(), r.checkpoint.next.clone()));
            Ok(())
        }
    }

    fn registry() -> NodeRegistry<()> {
        let mut registry = NodeRegistry::new();
        registry.register(
            "append",
            Arc::new(|config| {
                let text = config["text"].as_str().ok_or("text is required")?;
                Ok(Arc::new(Append(text.to_string())) as Arc<dyn Node<()>>)
            }),
        );
        registry
    }

    fn def(max_steps: u32) -> GraphDef {
        serde_json::from_value(serde_json::json!({
            "start": "a",
            "max_steps": max_steps,
            "nodes": [
                {"id": "a", "kind": "append", "config": {"text": "a"}},
                {"id": "b", "kind": "append", "config": {"text": "b"}}
            ],
            "edges": [
                {"from": "a", "to": "b"},
                {"from": "b", "to": "end", "when": {"type": "var_equals", "key": "done", "value": true}},
                {"from": "b", "to": "a"}
            ]
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn loops_follow_conditions_and_record_every_step() {
        let graph = Graph::build(&def(10), &registry()).unwrap();
        let mut state = ConvState::default();
        let sink = Recorder::default();
        graph
            .run_turn(&(), &mut state, None, &sink, &|_| {})
            .await
            .unwrap();
        // a → b → a (n = 3: done) → b → end.
        assert_eq!(state.vars["trail"], "abab");
        let steps = sink.0.lock().unwrap().clone();
        assert_eq!(
            steps,
            vec![
                (0, "a".into(), Some("b".into())),
                (1, "b".into(), Some("a".into())),
                (2, "a".into(), Some("b".into())),
                (3, "b".into(), None),
            ]
        );
    }

    #[tokio::test]
    async fn step_limit_stops_a_loop_and_resume_starts_at_the_saved_node() {
        let graph = Graph::build(&def(2), &registry()).unwrap();
        let mut state = ConvState::default();
        let err = graph
            .run_turn(&(), &mut state, None, &Recorder::default(), &|_| {})
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::StepLimit(2)), "{err}");
        // The saved next node was "a"; resuming runs a → b → (n = 3) end.
        let sink = Recorder::default();
        graph
            .run_turn(&(), &mut state, Some("a".into()), &sink, &|_| {})
            .await
            .unwrap();
        assert_eq!(state.vars["trail"], "abab");
        assert_eq!(sink.0.lock().unwrap().len(), 2);
    }

    #[test]
    fn invalid_graphs_are_refused_with_the_reason() {
        let mut bad = def(5);
        bad.edges.push(EdgeDef {
            from: "a".into(),
            to: "nowhere".into(),
            when: Condition::Always,
        });
        let err = Graph::build(&bad, &registry()).err().unwrap().to_string();
        assert!(err.contains("nowhere"), "{err}");
        let mut bad = def(5);
        bad.nodes[0].kind = "teleport".into();
        let err = Graph::build(&bad, &registry()).err().unwrap().to_string();
        assert!(err.contains("teleport"), "{err}");
        let mut bad = def(5);
        bad.nodes[1].config = serde_json::json!({});
        let err = Graph::build(&bad, &registry()).err().unwrap().to_string();
        assert!(err.contains("text is required"), "{err}");
    }
}
