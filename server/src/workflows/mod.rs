//! Workflows: tenants' graphs of steps, run by the same engine as the agents' conversation
//! graph (`crate::engine`), as durable jobs.
//!
//! - A **definition** (`app::types::WorkflowDefinition`) is checked by [`problems`] (kinds,
//!   configurations, ports, references, cycles, limits) and turned into the engine's
//!   [`GraphDef`] by [`graph_def`]: a node per node, an edge per edge with a
//!   [`Condition::Port`].
//! - **Versions** are immutable copies of the draft; runs are pinned to one.
//! - **Runs** are driven by the `workflow.run` job ([`run::RunWorkflow`]): a checkpoint after
//!   every step, retries with backoff as rescheduled jobs, pauses for approvals and waits, and
//!   compensations registered before side-effecting steps run (SAGA), run in reverse when the
//!   run fails or is cancelled.

pub mod ai;
pub mod bench;
pub mod call;
pub mod conversation;
pub mod expr;
pub mod hook;
pub mod nodes;
pub mod parallel;
pub mod run;
pub mod secrets;
pub mod service;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use app::types::{
    NodeChange, NodeKind, OnError, WorkflowDefinition, WorkflowDiff, WorkflowEdge, WorkflowNode,
    WorkflowProblem, WORKFLOW_FORMAT,
};

use crate::engine::{Condition, EdgeDef, GraphDef, NodeDef};

/// Nodes one workflow may have.
pub const MAX_NODES: usize = 500;
/// Edges one workflow may have.
pub const MAX_EDGES: usize = 2_000;
/// Steps one run may take (loops end here).
pub const MAX_RUN_STEPS: u32 = 1_000;
/// Unfinished runs one tenant may have; more are refused until some finish.
pub const MAX_ACTIVE_RUNS: u64 = 200;
/// How long a run may last from its start (approvals and waits included).
pub const MAX_RUN_DAYS: i64 = 30;
/// Largest definition, and largest run input, as JSON.
pub const MAX_DEFINITION_BYTES: usize = 1024 * 1024;
pub const MAX_INPUT_BYTES: usize = 64 * 1024;
/// Default and longest time one attempt of a node may take.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
pub const MAX_TIMEOUT_MS: u64 = 600_000;

/// The trigger node (where runs start), if the definition has exactly one.
pub fn trigger(def: &WorkflowDefinition) -> Option<&WorkflowNode> {
    let mut triggers = def.nodes.iter().filter(|n| n.kind.is_trigger());
    match (triggers.next(), triggers.next()) {
        (Some(t), None) => Some(t),
        _ => None,
    }
}

/// Every string in a configuration, for reference checks.
pub(crate) fn strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// What keeps `def` from being published (empty: nothing). Problems name their node.
pub fn problems(def: &WorkflowDefinition) -> Vec<WorkflowProblem> {
    let mut out = Vec::new();
    let mut problem = |node: Option<&str>, message: String| {
        out.push(WorkflowProblem {
            node: node.map(str::to_string),
            message,
        })
    };
    if def.format != WORKFLOW_FORMAT {
        problem(
            None,
            format!(
                "format {} is not supported (this platform reads {WORKFLOW_FORMAT})",
                def.format
            ),
        );
    }
    if def.nodes.len() > MAX_NODES {
        problem(
            None,
            format!("a workflow may have at most {MAX_NODES} nodes"),
        );
    }
    if def.edges.len() > MAX_EDGES {
        problem(
            None,
            format!("a workflow may have at most {MAX_EDGES} edges"),
        );
    }
    match def.nodes.iter().filter(|n| n.kind.is_trigger()).count() {
        0 => problem(None, "the workflow needs a trigger".into()),
        1 => {}
        _ => problem(None, "the workflow may have only one trigger".into()),
    }
    let mut ids = HashSet::new();
    let mut kinds = HashMap::new();
    let ports: HashMap<&str, Vec<String>> = def
        .nodes
        .iter()
        .map(|n| (n.id.as_str(), n.ports()))
        .collect();
    for n in &def.nodes {
        if !app::types::valid_node_id(&n.id) {
            problem(
                Some(&n.id),
                "a node id is 1–64 letters, digits, `_` or `-` (and not `end`)".into(),
            );
        } else if !ids.insert(n.id.as_str()) {
            problem(Some(&n.id), format!("the id `{}` is used twice", n.id));
        }
        kinds.insert(n.id.as_str(), n.kind);
    }
    let in_conversation = conversation::is_conversation(def);
    if in_conversation {
        for (node, message) in conversation::graph_problems(def) {
            problem(node, message);
        }
    }
    for n in &def.nodes {
        let id = Some(n.id.as_str());
        let built = if in_conversation {
            conversation::problem(n).map_or(Ok(()), Err)
        } else {
            nodes::build(n.kind, &n.config).map(|_| ())
        };
        if let Err(e) = built {
            problem(id, e);
        }
        if n.retry.attempts == 0 {
            problem(id, "retry attempts must be at least 1".into());
        }
        if n.kind == NodeKind::Parallel && n.retry.attempts > 1 {
            // Trying again would repeat what the branches that did finish did.
            problem(
                id,
                "a Parallel step is not tried again: give its branches' steps retries instead"
                    .into(),
            );
        }
        if n.retry.initial_ms == 0 || n.retry.max_ms < n.retry.initial_ms {
            problem(
                id,
                "retry delays must be positive, the longest at least the first".into(),
            );
        }
        if n.timeout_ms.is_some_and(|t| t == 0 || t > MAX_TIMEOUT_MS) {
            problem(id, format!("the timeout must be 1–{MAX_TIMEOUT_MS} ms"));
        }
        if n.on_error == OnError::Branch && !n.kind.ports().contains(&"error") {
            problem(id, "this kind of node has no error branch".into());
        }
        if n.on_error == OnError::Branch
            && !def
                .edges
                .iter()
                .any(|e| e.from == n.id && e.port == "error")
        {
            problem(id, "the error branch is chosen but not connected".into());
        }
        // References: templates and expressions must parse and name only known nodes.
        let mut texts = Vec::new();
        strings(&n.config, &mut texts);
        for text in texts {
            let expression = match n.kind {
                NodeKind::Condition => Some("expression"),
                NodeKind::Loop => Some("items"),
                _ => None,
            };
            let names = if expression.is_some_and(|key| {
                n.config.get(key).and_then(|e| e.as_str()) == Some(text.as_str())
            }) {
                expr::expression_names(&text)
            } else {
                expr::template_names(&text)
            };
            match names {
                Err(e) => problem(
                    id,
                    format!("`{}`: {e}", text.chars().take(60).collect::<String>()),
                ),
                Ok(names) => {
                    for name in names {
                        let mut parts = name.split('.');
                        let root = parts.next().unwrap_or_default();
                        if root == secrets::ROOT && n.kind != NodeKind::Http {
                            // Outputs, emails and prompts are stored or shown; requests are not.
                            problem(
                                id,
                                format!("`{name}`: secrets can be used in HTTP requests only"),
                            );
                        }
                        if !expr::ROOTS.contains(&root) {
                            // Loop variables and the like are local; only dotted roots
                            // that look like ours are checked.
                            continue;
                        }
                        if root == "nodes" {
                            if let Some(target) = parts.next() {
                                if !kinds.contains_key(target) {
                                    problem(id, format!("`{name}` names no node of this workflow"));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    let mut used_ports = HashSet::new();
    for e in &def.edges {
        let (Some(from), Some(_)) = (kinds.get(e.from.as_str()), kinds.get(e.to.as_str())) else {
            problem(
                Some(&e.from),
                format!(
                    "the edge {} → {} names a node that does not exist",
                    e.from, e.to
                ),
            );
            continue;
        };
        if !ports
            .get(e.from.as_str())
            .is_some_and(|p| p.contains(&e.port))
        {
            problem(
                Some(&e.from),
                format!("a {} node has no `{}` port", from.as_str(), e.port),
            );
        }
        if kinds.get(e.to.as_str()).is_some_and(|k| k.is_trigger()) {
            problem(Some(&e.to), "nothing may lead into the trigger".into());
        }
        if !used_ports.insert((e.from.as_str(), e.port.as_str())) {
            problem(
                Some(&e.from),
                format!("the `{}` exit leads to more than one node (a Parallel step runs branches at once)", e.port),
            );
        }
    }
    if let Some(cycle) = cycle(def) {
        problem(
            Some(&cycle),
            "this node is on a cycle that passes through no \"For each\" step (only a loop may go round)".into(),
        );
    }
    let mut joined = HashSet::new();
    for p in def.nodes.iter().filter(|n| n.kind == NodeKind::Parallel) {
        for port in p.ports() {
            if !def.edges.iter().any(|e| e.from == p.id && e.port == port) {
                problem(Some(&p.id), format!("`{port}` leads nowhere"));
            }
        }
        match join_of(def, &p.id) {
            Ok(j) => {
                joined.insert(j);
            }
            Err(e) => problem(Some(&p.id), e),
        }
    }
    for j in def.nodes.iter().filter(|n| n.kind == NodeKind::Join) {
        if !joined.contains(j.id.as_str()) {
            problem(
                Some(&j.id),
                "no Parallel step's branches meet here (a Join waits for a Parallel's branches)"
                    .into(),
            );
        }
    }
    if let Some(t) = trigger(def) {
        let reachable = reachable(def, &t.id);
        for n in &def.nodes {
            if !reachable.contains(n.id.as_str()) {
                problem(
                    Some(&n.id),
                    "no path from the trigger reaches this node".into(),
                );
            }
        }
    }
    out
}

fn successors(def: &WorkflowDefinition) -> HashMap<&str, Vec<&str>> {
    let mut next: HashMap<&str, Vec<&str>> = HashMap::new();
    for e in &def.edges {
        next.entry(e.from.as_str()).or_default().push(e.to.as_str());
    }
    next
}

fn reachable<'a>(def: &'a WorkflowDefinition, start: &'a str) -> HashSet<&'a str> {
    let next = successors(def);
    let mut seen = HashSet::from([start]);
    let mut stack = vec![start];
    while let Some(n) = stack.pop() {
        for &m in next.get(n).into_iter().flatten() {
            if seen.insert(m) {
                stack.push(m);
            }
        }
    }
    seen
}

/// A node on a cycle that passes through no loop node, if the graph has one (iterative
/// depth-first search over the edges that do not lead into a loop).
fn cycle(def: &WorkflowDefinition) -> Option<String> {
    let loops: HashSet<&str> = def
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Loop)
        .map(|n| n.id.as_str())
        .collect();
    let mut next = successors(def);
    for targets in next.values_mut() {
        targets.retain(|t| !loops.contains(t));
    }
    // 0: unseen, 1: on the current path, 2: done.
    let mut mark: HashMap<&str, u8> = HashMap::new();
    for n in &def.nodes {
        if mark.get(n.id.as_str()).copied().unwrap_or(0) != 0 {
            continue;
        }
        let mut stack: Vec<(&str, usize)> = vec![(n.id.as_str(), 0)];
        mark.insert(n.id.as_str(), 1);
        while let Some((node, i)) = stack.pop() {
            let children = next.get(node).map(Vec::as_slice).unwrap_or_default();
            if let Some(&child) = children.get(i) {
                stack.push((node, i + 1));
                match mark.get(child).copied().unwrap_or(0) {
                    1 => return Some(child.to_string()),
                    0 => {
                        mark.insert(child, 1);
                        stack.push((child, 0));
                    }
                    _ => {}
                }
            } else {
                mark.insert(node, 2);
            }
        }
    }
    None
}

/// Where the branches of Parallel step `id` meet: the one Join every path from its branches
/// reaches first that is not a nested Parallel's (a path may also end before it, by an End
/// step or an exit left unconnected). Walks (node, nesting depth) pairs, so it ends on loops.
pub fn join_of<'a>(def: &'a WorkflowDefinition, id: &str) -> Result<&'a str, String> {
    let next = successors(def);
    let kinds: HashMap<&str, NodeKind> =
        def.nodes.iter().map(|n| (n.id.as_str(), n.kind)).collect();
    let mut joins = BTreeSet::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<(&str, usize)> = def
        .edges
        .iter()
        .filter(|e| e.from == id)
        .map(|e| (e.to.as_str(), 0))
        .collect();
    while let Some((node, depth)) = stack.pop() {
        if node == id {
            return Err("a branch leads back into this Parallel step".into());
        }
        if !seen.insert((node, depth)) || depth > def.nodes.len() {
            continue;
        }
        let depth = match kinds.get(node) {
            Some(NodeKind::Join) if depth == 0 => {
                joins.insert(node);
                continue;
            }
            Some(NodeKind::Join) => depth - 1,
            Some(NodeKind::Parallel) => depth + 1,
            _ => depth,
        };
        stack.extend(next.get(node).into_iter().flatten().map(|&m| (m, depth)));
    }
    let mut joins = joins.into_iter();
    match (joins.next(), joins.next()) {
        (Some(j), None) => Ok(j),
        (None, _) => Err("the branches never meet: lead them to one Join step".into()),
        (Some(a), Some(b)) => Err(format!(
            "the branches meet at more than one Join (`{a}`, `{b}`): lead them all to one"
        )),
    }
}

/// The port by which a Parallel step leaves for its Join once its branches are done (an edge
/// of the engine's graph only: the editor draws the branches).
pub const JOINED: &str = "joined";

/// The engine's graph for a definition without problems. A Parallel step's configuration
/// gains where its branches start (`starts`) and meet (`join`), and an edge to its Join.
pub fn graph_def(def: &WorkflowDefinition) -> Option<GraphDef> {
    let start = trigger(def)?.id.clone();
    let mut edges: Vec<EdgeDef> = def
        .edges
        .iter()
        .map(|e| EdgeDef {
            from: e.from.clone(),
            to: e.to.clone(),
            when: Condition::Port {
                port: e.port.clone(),
            },
        })
        .collect();
    let mut nodes = Vec::with_capacity(def.nodes.len());
    for n in &def.nodes {
        let mut config = n.config.clone();
        if n.kind == NodeKind::Parallel {
            let join = join_of(def, &n.id).ok()?;
            if !config.is_object() {
                config = serde_json::json!({});
            }
            let starts: Vec<&str> = n
                .ports()
                .iter()
                .filter_map(|port| {
                    def.edges
                        .iter()
                        .find(|e| e.from == n.id && &e.port == port)
                        .map(|e| e.to.as_str())
                })
                .collect();
            config["starts"] = serde_json::json!(starts);
            config["join"] = serde_json::json!(join);
            edges.push(EdgeDef {
                from: n.id.clone(),
                to: join.to_string(),
                when: Condition::Port {
                    port: JOINED.into(),
                },
            });
        }
        nodes.push(NodeDef {
            id: n.id.clone(),
            kind: n.kind.as_str().to_string(),
            config,
        });
    }
    Some(GraphDef {
        start,
        nodes,
        edges,
        max_steps: MAX_RUN_STEPS,
    })
}

/// A new workflow's draft: a manual trigger alone.
pub fn starting_draft() -> WorkflowDefinition {
    WorkflowDefinition {
        nodes: vec![WorkflowNode {
            id: "start".into(),
            kind: NodeKind::ManualTrigger,
            name: "Start".into(),
            config: serde_json::json!({}),
            position: app::types::Position { x: 80.0, y: 80.0 },
            retry: Default::default(),
            timeout_ms: None,
            on_error: OnError::Fail,
        }],
        ..Default::default()
    }
}

/// The fields of two versions of a node that differ (configuration keys one by one).
fn node_fields(a: &WorkflowNode, b: &WorkflowNode) -> Vec<String> {
    let mut fields = Vec::new();
    if a.kind != b.kind {
        fields.push("kind".to_string());
    }
    if a.name != b.name {
        fields.push("name".to_string());
    }
    match (a.config.as_object(), b.config.as_object()) {
        (Some(x), Some(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                if x.get(k) != y.get(k) {
                    fields.push(format!("config.{k}"));
                }
            }
        }
        _ if a.config != b.config => fields.push("config".to_string()),
        _ => {}
    }
    if a.retry != b.retry {
        fields.push("retry".to_string());
    }
    if a.timeout_ms != b.timeout_ms {
        fields.push("timeout_ms".to_string());
    }
    if a.on_error != b.on_error {
        fields.push("on_error".to_string());
    }
    fields
}

/// What changed from `a` (version `from`) to `b` (version `to`).
pub fn diff(from: u32, a: &WorkflowDefinition, to: u32, b: &WorkflowDefinition) -> WorkflowDiff {
    let old: BTreeMap<&str, &WorkflowNode> = a.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let new: BTreeMap<&str, &WorkflowNode> = b.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let mut changed_nodes = Vec::new();
    let mut moved_nodes = Vec::new();
    for (id, n) in &new {
        if let Some(o) = old.get(id) {
            let fields = node_fields(o, n);
            if !fields.is_empty() {
                changed_nodes.push(NodeChange {
                    node: id.to_string(),
                    fields,
                });
            } else if o.position != n.position {
                moved_nodes.push(id.to_string());
            }
        }
    }
    let edge_set = |d: &WorkflowDefinition| -> BTreeSet<(String, String, String)> {
        d.edges
            .iter()
            .map(|e| (e.from.clone(), e.port.clone(), e.to.clone()))
            .collect()
    };
    let (ea, eb) = (edge_set(a), edge_set(b));
    let edges = |set: BTreeSet<&(String, String, String)>| -> Vec<WorkflowEdge> {
        set.into_iter()
            .map(|(from, port, to)| WorkflowEdge {
                from: from.clone(),
                port: port.clone(),
                to: to.clone(),
            })
            .collect()
    };
    let var_names: BTreeSet<&String> = a.variables.keys().chain(b.variables.keys()).collect();
    WorkflowDiff {
        from,
        to,
        to_draft: false,
        added_nodes: new
            .keys()
            .filter(|k| !old.contains_key(*k))
            .map(|k| k.to_string())
            .collect(),
        removed_nodes: old
            .keys()
            .filter(|k| !new.contains_key(*k))
            .map(|k| k.to_string())
            .collect(),
        changed_nodes,
        moved_nodes,
        added_edges: edges(eb.difference(&ea).collect()),
        removed_edges: edges(ea.difference(&eb).collect()),
        changed_variables: var_names
            .into_iter()
            .filter(|k| a.variables.get(*k) != b.variables.get(*k))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(value: serde_json::Value) -> WorkflowDefinition {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_conversation_graph_holds_only_steps_that_answer_at_once() {
        let messages = |d: &WorkflowDefinition| -> Vec<String> {
            problems(d)
                .into_iter()
                .map(|p| format!("{}: {}", p.node.unwrap_or_default(), p.message))
                .collect()
        };
        let graph = json!({
            "nodes": [
                {"id": "start", "kind": "message_trigger"},
                {"id": "topic", "kind": "classifier", "config": {"input": "{{ trigger.message }}",
                    "classes": {"billing": "Invoices"}}},
                {"id": "book", "kind": "booking", "config": {"starts_at": "x", "name": "x", "email": "x"}},
                {"id": "answer", "kind": "specialist", "config": {"agent": "sales"},
                 "retry": {"attempts": 3}},
                {"id": "person", "kind": "handoff"}
            ],
            "edges": [
                {"from": "start", "to": "topic"},
                {"from": "topic", "port": "billing", "to": "book"},
                {"from": "book", "to": "person"},
                {"from": "topic", "port": "other", "to": "answer"},
                {"from": "answer", "port": "handoff", "to": "person"}
            ]
        });
        let found = messages(&def(graph.clone()));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("book: a conversation graph answers while"),
            "{found:?}"
        );
        assert!(found[1].starts_with("answer: steps of a conversation graph are not tried again"));
        let mut fixed = graph.clone();
        fixed["nodes"][3]["retry"] = json!({"attempts": 1});
        fixed["nodes"].as_array_mut().unwrap().remove(2);
        fixed["edges"] = json!([
            {"from": "start", "to": "topic"},
            {"from": "topic", "port": "billing", "to": "person"},
            {"from": "topic", "port": "other", "to": "answer"},
            {"from": "answer", "port": "handoff", "to": "person"}
        ]);
        let fixed = def(fixed);
        assert_eq!(messages(&fixed), Vec::<String>::new());
        assert!(conversation::compile(&fixed).is_ok());
        // The agents' steps have no place in a workflow run, and nothing answering is a problem.
        let manual = def(json!({
            "nodes": [{"id": "start", "kind": "manual_trigger"}, {"id": "r", "kind": "route"}],
            "edges": [{"from": "start", "to": "r"}]
        }));
        assert!(messages(&manual)[0].starts_with("r: Route, Specialist and Handoff steps belong"));
        let mut unwired = fixed.clone();
        unwired.edges.retain(|e| e.port != "handoff");
        assert!(messages(&unwired)
            .iter()
            .any(|m| m.starts_with("answer: its `handoff` exit leads nowhere")));
        let silent = def(json!({
            "nodes": [{"id": "start", "kind": "message_trigger"},
                      {"id": "t", "kind": "template", "config": {"template": "hi"}}],
            "edges": [{"from": "start", "to": "t"}]
        }));
        assert!(messages(&silent)[0].contains("needs a Specialist or Handoff step"));
    }

    /// What the console offers to start from is publishable as it is, and what its palette
    /// adds is a node these rules know (its starting configuration is only incomplete).
    #[test]
    fn the_consoles_templates_and_new_nodes_pass_these_rules() {
        assert!(!app::types::valid_node_id(crate::engine::END));
        for s in app::editor::STARTERS {
            let d = (s.build)();
            assert_eq!(problems(&d), Vec::new(), "{}", s.name);
        }
        for kind in NodeKind::ALL {
            let config = app::editor::starter_config(*kind);
            let built = if kind.conversation_only() {
                let node: WorkflowNode =
                    serde_json::from_value(json!({"id": "x", "kind": kind, "config": config}))
                        .unwrap();
                conversation::problem(&node).map_or(Ok(()), Err)
            } else {
                nodes::build(*kind, &config).map(|_| ())
            };
            if let Err(e) = built {
                assert!(e.contains("required"), "{kind:?}: {e}");
            }
        }
    }

    fn sample() -> WorkflowDefinition {
        def(json!({
            "nodes": [
                {"id": "start", "kind": "manual_trigger"},
                {"id": "check", "kind": "condition", "config": {"expression": "trigger.amount > 10"}},
                {"id": "big", "kind": "template", "config": {"template": "big {{ trigger.amount }}"}},
                {"id": "done", "kind": "end", "config": {"output": {"text": "{{ nodes.big.text }}"}}}
            ],
            "edges": [
                {"from": "start", "to": "check"},
                {"from": "check", "port": "true", "to": "big"},
                {"from": "big", "to": "done"}
            ]
        }))
    }

    #[test]
    fn a_sound_definition_has_no_problems_and_becomes_a_graph() {
        let d = sample();
        assert_eq!(problems(&d), vec![]);
        let g = graph_def(&d).unwrap();
        assert_eq!(g.start, "start");
        crate::engine::Graph::build(&g, &nodes::registry()).unwrap();
    }

    #[test]
    fn problems_name_their_node() {
        let mut d = sample();
        d.nodes[2].config = json!({"template": "{{ nodes.ghost.text }}"});
        d.edges.push(WorkflowEdge {
            from: "check".into(),
            port: "maybe".into(),
            to: "big".into(),
        });
        d.edges.push(WorkflowEdge {
            from: "done".into(),
            port: "out".into(),
            to: "check".into(),
        });
        d.nodes[1].config = json!({});
        let found = problems(&d);
        let about = |node: &str, text: &str| {
            found
                .iter()
                .any(|p| p.node.as_deref() == Some(node) && p.message.contains(text))
        };
        assert!(about("big", "ghost"), "{found:?}");
        assert!(about("check", "`maybe` port"), "{found:?}");
        assert!(about("check", "`expression` is required"), "{found:?}");
        assert!(about("done", "has no `out` port"), "{found:?}");
        assert!(
            found.iter().any(|p| p.message.contains("cycle")),
            "{found:?}"
        );
    }

    #[test]
    fn a_cycle_and_an_unreachable_node_are_found() {
        let mut d = sample();
        d.nodes.push(WorkflowNode {
            id: "lonely".into(),
            ..d.nodes[2].clone()
        });
        d.edges.push(WorkflowEdge {
            from: "big".into(),
            port: "out".into(),
            to: "check".into(),
        });
        let found = problems(&d);
        assert!(
            found
                .iter()
                .any(|p| p.node.as_deref() == Some("lonely") && p.message.contains("no path")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|p| p.message.contains("cycle")),
            "{found:?}"
        );
    }

    /// start → outer(a | b) where a is inner(c | d) meeting at j2, then j2 and b meet at j1.
    fn nested() -> WorkflowDefinition {
        def(json!({
            "nodes": [
                {"id": "start", "kind": "manual_trigger"},
                {"id": "outer", "kind": "parallel", "config": {"branches": 2}},
                {"id": "inner", "kind": "parallel", "config": {"branches": 2}},
                {"id": "b", "kind": "template", "config": {"template": "b"}},
                {"id": "c", "kind": "template", "config": {"template": "c"}},
                {"id": "d", "kind": "template", "config": {"template": "d"}},
                {"id": "j2", "kind": "join"},
                {"id": "j1", "kind": "join"},
                {"id": "done", "kind": "end"}
            ],
            "edges": [
                {"from": "start", "to": "outer"},
                {"from": "outer", "port": "branch1", "to": "inner"},
                {"from": "outer", "port": "branch2", "to": "b"},
                {"from": "inner", "port": "branch1", "to": "c"},
                {"from": "inner", "port": "branch2", "to": "d"},
                {"from": "c", "to": "j2"},
                {"from": "d", "to": "j2"},
                {"from": "j2", "to": "j1"},
                {"from": "b", "to": "j1"},
                {"from": "j1", "to": "done"}
            ]
        }))
    }

    #[test]
    fn parallel_branches_meet_at_their_own_join_and_the_graph_leads_there() {
        let d = nested();
        assert_eq!(problems(&d), vec![]);
        assert_eq!(join_of(&d, "outer"), Ok("j1"));
        assert_eq!(join_of(&d, "inner"), Ok("j2"));
        let g = graph_def(&d).unwrap();
        let outer = g.nodes.iter().find(|n| n.id == "outer").unwrap();
        assert_eq!(outer.config["starts"], json!(["inner", "b"]));
        assert_eq!(outer.config["join"], "j1");
        assert!(g.edges.iter().any(|e| e.from == "outer"
            && e.to == "j1"
            && e.when
                == Condition::Port {
                    port: JOINED.into()
                }));
        crate::engine::Graph::build(&g, &nodes::registry()).unwrap();
    }

    #[test]
    fn branches_that_do_not_meet_once_are_problems() {
        let about = |d: &WorkflowDefinition, node: &str, text: &str| {
            let found = problems(d);
            assert!(
                found
                    .iter()
                    .any(|p| p.node.as_deref() == Some(node) && p.message.contains(text)),
                "{node}: {text}: {found:?}"
            );
        };
        // b skips the outer join: j2 is then the first join a path from `outer` meets twice over.
        let mut d = nested();
        d.edges.retain(|e| e.from != "b");
        d.edges.push(WorkflowEdge {
            from: "b".into(),
            port: "out".into(),
            to: "j2".into(),
        });
        about(&d, "outer", "more than one Join");
        // No join at all; a branch left unconnected; a join nobody's branches reach.
        let mut d = nested();
        d.edges.retain(|e| e.to != "j1" && e.port != "branch2");
        d.nodes.retain(|n| n.id != "j1");
        about(&d, "outer", "never meet");
        about(&d, "outer", "`branch2` leads nowhere");
        let mut d = sample();
        d.nodes.push(WorkflowNode {
            id: "lone".into(),
            kind: NodeKind::Join,
            ..d.nodes[2].clone()
        });
        d.edges.push(WorkflowEdge {
            from: "big".into(),
            port: "out".into(),
            to: "lone".into(),
        });
        about(&d, "lone", "no Parallel");
        // Too many branches, or too few.
        let mut d = nested();
        d.nodes[1].config = json!({"branches": 11});
        about(&d, "outer", "from 2 to 10");
    }

    #[test]
    fn diff_names_what_changed() {
        let a = sample();
        let mut b = sample();
        b.nodes[2].config = json!({"template": "large {{ trigger.amount }}"});
        b.nodes[3].position.x = 500.0;
        b.nodes.remove(0);
        b.edges.remove(0);
        b.variables.insert("limit".into(), json!(5));
        let d = diff(1, &a, 2, &b);
        assert_eq!(d.removed_nodes, vec!["start".to_string()]);
        assert_eq!(
            d.changed_nodes,
            vec![NodeChange {
                node: "big".into(),
                fields: vec!["config.template".into()]
            }]
        );
        assert_eq!(d.moved_nodes, vec!["done".to_string()]);
        assert_eq!(d.removed_edges.len(), 1);
        assert_eq!(d.changed_variables, vec!["limit".to_string()]);
    }
}
