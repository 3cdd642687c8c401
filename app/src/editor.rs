//! The workflow editor's model: the edits the console's canvas makes to a [`WorkflowDefinition`]
//! (add, connect, move, delete, copy and paste, auto-layout), the undo history, and the form
//! each node kind shows in the side panel. Plain data and functions, so the rules are tested
//! here without a browser; the page only draws and dispatches.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde_json::{json, Value};

use crate::types::{
    valid_node_id, NodeKind, OnError, Position, RetryPolicy, WorkflowDefinition, WorkflowNode,
};

/// A node's box on the canvas, in canvas units (`.wf-node` in `style/main.css` has the same).
pub const NODE_W: f64 = 190.0;
pub const NODE_H: f64 = 64.0;
/// Room for one exit on a node's right edge: a node with more exits than [`NODE_H`] holds (a
/// classifier's classes, a switch's cases) is taller.
const EXIT_ROOM: f64 = 22.0;
/// Space between auto-laid-out columns and rows.
const GAP_X: f64 = 70.0;
const GAP_Y: f64 = 40.0;
/// Undo steps kept.
const HISTORY: usize = 200;

/// What the kind's configuration starts as: the keys its form shows, with useful defaults.
pub fn starter_config(kind: NodeKind) -> Value {
    match kind {
        NodeKind::ManualTrigger => json!({}),
        NodeKind::ScheduleTrigger => json!({"cron": "0 18 * * 1-5", "timezone": ""}),
        NodeKind::WebhookTrigger => json!({}),
        NodeKind::EventTrigger => json!({"event": "message.created"}),
        NodeKind::MessageTrigger => json!({}),
        NodeKind::Route => json!({"agent": ""}),
        NodeKind::Specialist => json!({"agent": "", "context": ""}),
        NodeKind::Handoff => json!({"reason": ""}),
        NodeKind::Set => json!({"values": {}}),
        NodeKind::Template => json!({"template": ""}),
        NodeKind::Condition => json!({"expression": ""}),
        NodeKind::Loop => json!({"items": "", "max": 100}),
        NodeKind::Parallel => json!({"branches": 2}),
        NodeKind::Join => json!({}),
        NodeKind::Workflow => json!({"workflow": "", "input": {}}),
        NodeKind::Http => json!({"method": "POST", "url": "", "headers": {}, "body": ""}),
        NodeKind::Email => json!({"to": "", "subject": "", "body": ""}),
        NodeKind::Booking => {
            json!({"starts_at": "", "minutes": 30, "name": "", "email": "", "note": ""})
        }
        NodeKind::CancelBooking => json!({"booking_id": "", "reason": ""}),
        NodeKind::Approval => json!({"prompt": "Approve?"}),
        NodeKind::Wait => json!({"seconds": 60}),
        NodeKind::End => json!({"output": {}}),
        NodeKind::Llm => json!({"system": "", "prompt": "", "model": "chat", "output": {}}),
        NodeKind::Knowledge => json!({"query": "", "top_k": 5, "knowledge_base": ""}),
        NodeKind::Classifier => json!({"input": "", "classes": {
            "sales": "Prices, quotes and buying",
            "support": "A problem with something already bought",
        }}),
        NodeKind::Switch => json!({"value": "", "cases": {"yes": "yes", "no": "no"}}),
        NodeKind::Agent => json!({"agent": "support", "message": ""}),
    }
}

/// The label a new node of `kind` gets.
pub fn kind_label(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::ManualTrigger => "Start",
        NodeKind::ScheduleTrigger => "On a schedule",
        NodeKind::WebhookTrigger => "On a webhook",
        NodeKind::EventTrigger => "On an event",
        NodeKind::MessageTrigger => "A customer writes",
        NodeKind::Route => "Route",
        NodeKind::Specialist => "Specialist",
        NodeKind::Handoff => "Hand off",
        NodeKind::Set => "Set variables",
        NodeKind::Template => "Template",
        NodeKind::Condition => "Condition",
        NodeKind::Loop => "For each",
        NodeKind::Parallel => "Parallel",
        NodeKind::Join => "Join",
        NodeKind::Workflow => "Run a workflow",
        NodeKind::Http => "HTTP request",
        NodeKind::Email => "Email",
        NodeKind::Booking => "Booking",
        NodeKind::CancelBooking => "Cancel booking",
        NodeKind::Approval => "Approval",
        NodeKind::Wait => "Wait",
        NodeKind::End => "End",
        NodeKind::Llm => "Ask the model",
        NodeKind::Knowledge => "Search knowledge",
        NodeKind::Classifier => "Classify",
        NodeKind::Switch => "Switch",
        NodeKind::Agent => "Ask an agent",
    }
}

/// How a configuration field is edited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// One line; templates allowed.
    Line,
    /// Several lines; templates allowed.
    Text,
    /// A whole number.
    Number,
    /// `name = template` per line (an object of templates).
    Map,
    /// One of the given values.
    Choice(&'static [&'static str]),
}

/// A field of a node's form: `key` is a path in the configuration (`compensation.url`).
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub key: &'static str,
    pub label: &'static str,
    pub kind: FieldKind,
    pub help: &'static str,
}

/// A [`Field`] (a macro, not a `const fn`: a call's result is not promoted to `'static`).
macro_rules! field {
    ($key:expr, $label:expr, $kind:expr, $help:expr $(,)?) => {
        Field {
            key: $key,
            label: $label,
            kind: $kind,
            help: $help,
        }
    };
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

/// The form of a node kind's configuration.
pub fn fields(kind: NodeKind) -> &'static [Field] {
    use FieldKind::*;
    match kind {
        // The webhook's URL and secret are shown by the panel, not edited in the definition.
        NodeKind::ManualTrigger | NodeKind::WebhookTrigger | NodeKind::MessageTrigger => &[],
        NodeKind::Join => &[],
        NodeKind::Route => &[field!(
            "agent",
            "Agent",
            Line,
            "Empty: the router chooses (the widget's agent, your routing rules, then the \
             model). Or the name of one of your agents.",
        )],
        NodeKind::Specialist => &[
            field!(
                "agent",
                "Agent",
                Line,
                "Empty: the one Route chose. Or the name of one of your agents.",
            ),
            field!(
                "context",
                "Context",
                Text,
                "Added to its instructions, like {{ nodes.lookup.text }}.",
            ),
        ],
        NodeKind::Handoff => &[field!(
            "reason",
            "Reason",
            Line,
            "Shown to your team; empty: the specialist's reason.",
        )],
        NodeKind::Parallel => &[field!(
            "branches",
            "Branches",
            Number,
            "2 to 10. They run at the same time; lead each to its steps and every branch's last step to one Join.",
        )],
        NodeKind::EventTrigger => &[field!(
            "event",
            "When",
            Choice(crate::types::TRIGGER_EVENTS),
            "The run's trigger is the event: {{ trigger.data }} holds the message, booking or conversation.",
        )],
        NodeKind::ScheduleTrigger => &[
            field!(
                "cron",
                "When (cron)",
                Line,
                "minute hour day month weekday: 0 18 * * 1-5 is six in the evening on weekdays.",
            ),
            field!(
                "timezone",
                "Time zone",
                Line,
                "Like Europe/Lisbon; empty: your organisation's.",
            ),
        ],
        NodeKind::Set => &[field!(
            "values",
            "Variables",
            Map,
            "One per line: name = value. Read later as {{ vars.name }}.",
        )],
        NodeKind::Template => &[field!(
            "template",
            "Template",
            Text,
            "Output: {{ nodes.<id>.text }}.",
        )],
        NodeKind::Condition => &[field!(
            "expression",
            "Expression",
            Line,
            "True or false, for example: trigger.amount > 100",
        )],
        NodeKind::Workflow => &[
            field!(
                "workflow",
                "Workflow",
                Line,
                "Its name or id. It must be published and start with a Start step.",
            ),
            field!(
                "input",
                "Input",
                Map,
                "One per line: name = value; it reads them as {{ trigger.name }}.",
            ),
        ],
        NodeKind::Loop => &[
            field!(
                "items",
                "Items",
                Line,
                "An expression giving a list, for example: trigger.orders. Each item is {{ nodes.<id>.item }}; lead the branch's last step back here.",
            ),
            field!("max", "At most", Number, "1 to 1,000 items; a longer list fails the step."),
        ],
        NodeKind::Http => &[
            field!("method", "Method", Choice(METHODS), ""),
            field!("url", "URL", Line, "A public address."),
            field!(
                "headers",
                "Headers",
                Map,
                "One per line: Name = value. {{ secrets.NAME }} sends one of your secrets (Workflows page).",
            ),
            field!("body", "Body", Text, ""),
            field!(
                "compensation.method",
                "Undo: method",
                Choice(METHODS),
                "Sent if the run fails after this step.",
            ),
            field!("compensation.url", "Undo: URL", Line, "Empty: not undone."),
            field!("compensation.body", "Undo: body", Text, ""),
        ],
        NodeKind::Email => &[
            field!("to", "To", Line, ""),
            field!("subject", "Subject", Line, ""),
            field!("body", "Body", Text, ""),
            field!(
                "compensation.subject",
                "Follow-up subject",
                Line,
                "Sent if the run fails after this step; empty: not undoable.",
            ),
            field!("compensation.body", "Follow-up body", Text, ""),
        ],
        NodeKind::Booking => &[
            field!(
                "starts_at",
                "Starts at",
                Line,
                "Local time in the tenant's zone, like 2026-12-08T10:00.",
            ),
            field!("minutes", "Minutes", Number, "5 to 480."),
            field!("name", "Name", Line, ""),
            field!("email", "Email", Line, ""),
            field!("note", "Note", Text, ""),
        ],
        NodeKind::CancelBooking => &[
            field!("booking_id", "Booking id", Line, ""),
            field!("reason", "Reason", Line, ""),
        ],
        NodeKind::Approval => &[field!(
            "prompt",
            "Question",
            Text,
            "Shown to whoever decides.",
        )],
        NodeKind::Wait => &[
            field!("seconds", "Seconds", Number, "Or a time below."),
            field!(
                "until",
                "Until",
                Line,
                "RFC 3339, like 2026-12-08T10:00:00Z."
            ),
        ],
        NodeKind::End => &[field!(
            "output",
            "Output",
            Map,
            "One per line: name = value. The run's output.",
        )],
        NodeKind::Llm => &[
            field!(
                "system",
                "Instructions",
                Text,
                "The system message: who the model is, what it must do.",
            ),
            field!("prompt", "Prompt", Text, "The user message."),
            field!(
                "model",
                "Model",
                Line,
                "chat (the default), router (the fast one), or a model name of your provider.",
            ),
            field!(
                "output",
                "Output fields",
                Map,
                "Empty: the answer is {{ nodes.<id>.text }}. Or one per line: name = string, \
                 number, integer, boolean or list; the model must answer with these fields.",
            ),
        ],
        NodeKind::Knowledge => &[
            field!("query", "Query", Text, "What to look for."),
            field!("top_k", "Passages", Number, "1 to 20."),
            field!(
                "knowledge_base",
                "Knowledge base",
                Line,
                "A name; empty: every knowledge base agents read.",
            ),
        ],
        NodeKind::Classifier => &[
            field!("input", "Text", Text, "What to classify."),
            field!(
                "classes",
                "Classes",
                Map,
                "One per line: name = description. Each class is a way out; `other` when \
                 none fits.",
            ),
        ],
        NodeKind::Agent => &[
            field!(
                "agent",
                "Agent",
                Line,
                "The name of one of your agents: sales, support, scheduling, emergency or your own.",
            ),
            field!("message", "Message", Text, "What the customer says to it."),
        ],
        NodeKind::Switch => &[
            field!("value", "Value", Line, "For example {{ trigger.plan }}."),
            field!(
                "cases",
                "Cases",
                Map,
                "One per line: way out = value. `default` when none matches.",
            ),
        ],
    }
}

/// The value of `key` (a dotted path) in `config`, as the form shows it.
pub fn field_text(config: &Value, f: &Field) -> String {
    let value = f.key.split('.').try_fold(config, |v, k| v.get(k));
    match (value, f.kind) {
        (None | Some(Value::Null), _) => String::new(),
        (Some(Value::Object(map)), FieldKind::Map) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k} = {s}"),
                other => format!("{k} = {other}"),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        (Some(Value::String(s)), _) => s.clone(),
        (Some(other), _) => other.to_string(),
    }
}

/// `config` with `key` set from the form's `text`; an empty value removes the key (and an
/// emptied nested object), so "no compensation" is no `compensation`.
pub fn set_field(config: &Value, f: &Field, text: &str) -> Result<Value, String> {
    let value = match f.kind {
        _ if text.trim().is_empty() => None,
        FieldKind::Number => Some(
            text.trim()
                .parse::<u64>()
                .map(Value::from)
                .map_err(|_| format!("{}: a whole number", f.label))?,
        ),
        FieldKind::Map => {
            let mut map = serde_json::Map::new();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let Some((k, v)) = line.split_once('=') else {
                    return Err(format!(
                        "{}: `{}` is not name = value",
                        f.label,
                        line.trim()
                    ));
                };
                map.insert(k.trim().to_string(), Value::String(v.trim().to_string()));
            }
            Some(Value::Object(map))
        }
        _ => Some(Value::String(text.to_string())),
    };
    let set =
        |map: &mut serde_json::Map<String, Value>, key: &str, value: Option<Value>| match value {
            Some(v) => {
                map.insert(key.to_string(), v);
            }
            None => {
                map.remove(key);
            }
        };
    let mut out = config.as_object().cloned().unwrap_or_default();
    match f.key.split_once('.') {
        None => set(&mut out, f.key, value),
        // One level of nesting (`compensation.url`); an emptied object goes with its last key.
        Some((parent, key)) => {
            let mut inner = out
                .get(parent)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            set(&mut inner, key, value);
            if inner.is_empty() {
                out.remove(parent);
            } else {
                out.insert(parent.to_string(), Value::Object(inner));
            }
        }
    }
    Ok(Value::Object(out))
}

/// What a new node's id starts from: its kind (`end` is the engine's own name for "stop").
fn base_id(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::End => "finish",
        other => other.as_str(),
    }
}

/// An id for a new node of `kind` not yet used in `def`: `email`, `email_2`, …
pub fn fresh_id(def: &WorkflowDefinition, base: &str) -> String {
    let taken: HashSet<&str> = def.nodes.iter().map(|n| n.id.as_str()).collect();
    if !taken.contains(base) {
        return base.to_string();
    }
    let mut i = 2;
    loop {
        let id = format!("{base}_{i}");
        if !taken.contains(id.as_str()) {
            return id;
        }
        i += 1;
    }
}

/// Adds a node of `kind` at `at`; returns its id.
pub fn add_node(def: &mut WorkflowDefinition, kind: NodeKind, at: Position) -> String {
    let id = fresh_id(def, base_id(kind));
    def.nodes.push(WorkflowNode {
        id: id.clone(),
        kind,
        name: kind_label(kind).to_string(),
        config: starter_config(kind),
        position: at,
        retry: RetryPolicy::default(),
        timeout_ms: None,
        on_error: OnError::Fail,
    });
    id
}

pub fn node<'a>(def: &'a WorkflowDefinition, id: &str) -> Option<&'a WorkflowNode> {
    def.nodes.iter().find(|n| n.id == id)
}

pub fn node_mut<'a>(def: &'a mut WorkflowDefinition, id: &str) -> Option<&'a mut WorkflowNode> {
    def.nodes.iter_mut().find(|n| n.id == id)
}

/// Connects `from`'s `port` to `to`, replacing what that port led to; refuses a connection the
/// kinds do not allow, with the reason.
pub fn connect(
    def: &mut WorkflowDefinition,
    from: &str,
    port: &str,
    to: &str,
) -> Result<(), String> {
    let source = node(def, from).ok_or_else(|| format!("there is no node `{from}`"))?;
    let target = node(def, to).ok_or_else(|| format!("there is no node `{to}`"))?;
    if !source.ports().iter().any(|p| p == port) {
        return Err(format!("{} has no `{port}` exit", source.name));
    }
    if target.kind.is_trigger() {
        return Err(format!(
            "{} starts the run: nothing leads into it",
            target.name
        ));
    }
    if from == to {
        return Err("a node cannot lead to itself".into());
    }
    def.edges.retain(|e| !(e.from == from && e.port == port));
    def.edges.push(crate::types::WorkflowEdge {
        from: from.to_string(),
        port: port.to_string(),
        to: to.to_string(),
    });
    Ok(())
}

/// Removes what `from`'s `port` led to.
pub fn disconnect(def: &mut WorkflowDefinition, from: &str, port: &str) {
    def.edges.retain(|e| !(e.from == from && e.port == port));
}

/// Removes nodes with every edge touching them.
pub fn remove_nodes(def: &mut WorkflowDefinition, ids: &HashSet<String>) {
    def.nodes.retain(|n| !ids.contains(&n.id));
    def.edges
        .retain(|e| !ids.contains(&e.from) && !ids.contains(&e.to));
}

/// Moves nodes by (dx, dy), never left of or above the canvas origin.
pub fn move_nodes(def: &mut WorkflowDefinition, ids: &HashSet<String>, dx: f64, dy: f64) {
    for n in def.nodes.iter_mut().filter(|n| ids.contains(&n.id)) {
        n.position.x = (n.position.x + dx).max(0.0).round();
        n.position.y = (n.position.y + dy).max(0.0).round();
    }
}

/// The selected nodes and the edges between them, as a definition (what the clipboard holds).
pub fn copy(def: &WorkflowDefinition, ids: &HashSet<String>) -> WorkflowDefinition {
    WorkflowDefinition {
        nodes: def
            .nodes
            .iter()
            .filter(|n| ids.contains(&n.id))
            .cloned()
            .collect(),
        edges: def
            .edges
            .iter()
            .filter(|e| ids.contains(&e.from) && ids.contains(&e.to))
            .cloned()
            .collect(),
        ..Default::default()
    }
}

/// Pastes a copied fragment (from this workflow or another) shifted by `offset`: nodes whose id
/// is taken get a fresh one, and references to them (`nodes.<id>`) inside the pasted
/// configurations follow. A second trigger is left out. Returns the pasted nodes' ids.
pub fn paste(
    def: &mut WorkflowDefinition,
    fragment: &WorkflowDefinition,
    offset: Position,
) -> Vec<String> {
    let has_trigger = def.nodes.iter().any(|n| n.kind.is_trigger());
    let mut renamed = HashMap::new();
    let mut pasted = Vec::new();
    for n in &fragment.nodes {
        if n.kind.is_trigger() && has_trigger {
            continue;
        }
        let base = if valid_node_id(&n.id) {
            n.id.as_str()
        } else {
            base_id(n.kind)
        };
        let id = fresh_id(def, base);
        renamed.insert(n.id.clone(), id.clone());
        let mut copy = n.clone();
        copy.id = id.clone();
        copy.position.x = (n.position.x + offset.x).max(0.0);
        copy.position.y = (n.position.y + offset.y).max(0.0);
        def.nodes.push(copy);
        pasted.push(id);
    }
    for id in &pasted {
        if let Some(n) = node_mut(def, id) {
            rename_references(&mut n.config, &renamed);
        }
    }
    for e in &fragment.edges {
        if let (Some(from), Some(to)) = (renamed.get(&e.from), renamed.get(&e.to)) {
            let _ = connect(def, from, &e.port, to);
        }
    }
    pasted
}

/// Rewrites `nodes.<old>` to `nodes.<new>` in every string of `value` (whole ids only).
fn rename_references(value: &mut Value, renamed: &HashMap<String, String>) {
    match value {
        Value::String(s) => {
            for (old, new) in renamed.iter().filter(|(o, n)| o != n) {
                *s = replace_reference(s, old, new);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rename_references(v, renamed)),
        Value::Object(map) => map.values_mut().for_each(|v| rename_references(v, renamed)),
        _ => {}
    }
}

fn replace_reference(text: &str, old: &str, new: &str) -> String {
    let needle = format!("nodes.{old}");
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&needle) {
        let after = &rest[at + needle.len()..];
        let whole = !after
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        out.push_str(&rest[..at]);
        out.push_str(if whole { "nodes." } else { &needle });
        if whole {
            out.push_str(new);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Places nodes in columns by their distance from the trigger (the longest path, ignoring
/// edges back to an earlier column), in rows by the order they are reached; nodes no path
/// reaches go in a last column.
pub fn auto_layout(def: &mut WorkflowDefinition) {
    let index: HashMap<&str, usize> = def
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); def.nodes.len()];
    for e in &def.edges {
        if let (Some(&a), Some(&b)) = (index.get(e.from.as_str()), index.get(e.to.as_str())) {
            out[a].push(b);
        }
    }
    // Breadth-first order from the triggers, then the longest path over forward edges.
    let mut order = Vec::new();
    let mut seen = vec![false; def.nodes.len()];
    let mut queue: VecDeque<usize> = def
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.kind.is_trigger())
        .map(|(i, _)| i)
        .collect();
    for &i in &queue {
        seen[i] = true;
    }
    while let Some(i) = queue.pop_front() {
        order.push(i);
        for &j in &out[i] {
            if !seen[j] {
                seen[j] = true;
                queue.push_back(j);
            }
        }
    }
    let rank: HashMap<usize, usize> = order.iter().enumerate().map(|(r, &i)| (i, r)).collect();
    let mut column = vec![0usize; def.nodes.len()];
    for &i in &order {
        for &j in &out[i] {
            if rank[&j] > rank[&i] {
                column[j] = column[j].max(column[i] + 1);
            }
        }
    }
    let last = order.iter().map(|&i| column[i] + 1).max().unwrap_or(0);
    // Where the next node of each column goes (nodes with many exits are taller).
    let mut tops: BTreeMap<usize, f64> = BTreeMap::new();
    let unreached = (0..def.nodes.len()).filter(|i| !seen[*i]);
    for i in order.clone().into_iter().chain(unreached) {
        let col = if seen[i] { column[i] } else { last };
        let top = tops.entry(col).or_insert(40.0);
        def.nodes[i].position = Position {
            x: 40.0 + col as f64 * (NODE_W + GAP_X),
            y: *top,
        };
        *top += height_of(&def.nodes[i]) + GAP_Y;
    }
}

/// The height of a node with `exits` exits.
pub fn node_height(exits: usize) -> f64 {
    NODE_H.max(exits as f64 * EXIT_ROOM + 8.0)
}

/// The height of `n` on the canvas.
pub fn height_of(n: &WorkflowNode) -> f64 {
    node_height(n.ports().len())
}

/// The box around every node: (left, top, right, bottom); a default box when empty.
pub fn bounds(def: &WorkflowDefinition) -> (f64, f64, f64, f64) {
    if def.nodes.is_empty() {
        return (0.0, 0.0, 800.0, 400.0);
    }
    def.nodes.iter().fold(
        (f64::MAX, f64::MAX, f64::MIN, f64::MIN),
        |(l, t, r, b), n| {
            (
                l.min(n.position.x),
                t.min(n.position.y),
                r.max(n.position.x + NODE_W),
                b.max(n.position.y + height_of(n)),
            )
        },
    )
}

/// The nodes a run passes before reaching `id` (what its templates may read), in definition
/// order.
pub fn upstream(def: &WorkflowDefinition, id: &str) -> Vec<String> {
    let mut found: HashSet<&str> = HashSet::new();
    let mut stack = vec![id];
    while let Some(at) = stack.pop() {
        for e in def.edges.iter().filter(|e| e.to == at) {
            if found.insert(e.from.as_str()) {
                stack.push(e.from.as_str());
            }
        }
    }
    def.nodes
        .iter()
        .filter(|n| n.id != id && found.contains(n.id.as_str()))
        .map(|n| n.id.clone())
        .collect()
}

/// What `n` outputs, for the variable picker (`nodes.<id>.<field>`): its kind's fields, or
/// an LLM step's own output fields.
pub fn outputs(n: &WorkflowNode) -> Vec<String> {
    match n.config.get("output").and_then(Value::as_object) {
        Some(fields) if n.kind == NodeKind::Llm && !fields.is_empty() => {
            fields.keys().cloned().collect()
        }
        _ => kind_outputs(n.kind).iter().map(|f| f.to_string()).collect(),
    }
}

fn kind_outputs(kind: NodeKind) -> &'static [&'static str] {
    match kind {
        NodeKind::ManualTrigger | NodeKind::WebhookTrigger | NodeKind::Set | NodeKind::End => &[],
        NodeKind::MessageTrigger => &["message", "channel", "conversation_id", "agent"],
        NodeKind::Route => &["agent", "by"],
        NodeKind::Specialist => &["answer", "agent"],
        NodeKind::Handoff => &["reason"],
        NodeKind::EventTrigger => &["id", "type", "created_at", "data"],
        NodeKind::ScheduleTrigger => &["scheduled_at"],
        NodeKind::Template => &["text"],
        NodeKind::Condition => &["result"],
        NodeKind::Loop => &["item", "index", "count"],
        NodeKind::Parallel => &["branches"],
        NodeKind::Join => &[],
        NodeKind::Workflow => &["run_id", "status", "output"],
        NodeKind::Http => &["status", "body"],
        NodeKind::Email => &["queued", "to", "job_id"],
        NodeKind::Booking => &["booking_id", "starts_at", "ends_at"],
        NodeKind::CancelBooking => &["booking_id", "outcome"],
        NodeKind::Approval => &["approved", "comment", "by"],
        NodeKind::Wait => &["waited_until"],
        NodeKind::Llm => &["text"],
        NodeKind::Knowledge => &["found", "text", "passages"],
        NodeKind::Classifier => &["class"],
        NodeKind::Switch => &["value", "case"],
        NodeKind::Agent => &["answer", "agent", "handoff", "conversation_id"],
    }
}

/// What a template field of node `id` may read: the trigger's payload, the variables and the
/// outputs of the nodes before it.
pub fn variables(def: &WorkflowDefinition, id: &str) -> Vec<String> {
    let mut out = vec!["trigger".to_string()];
    out.extend(def.variables.keys().map(|k| format!("vars.{k}")));
    for n in def.nodes.iter().filter(|n| n.kind == NodeKind::Set) {
        if let Some(values) = n.config.get("values").and_then(Value::as_object) {
            out.extend(values.keys().map(|k| format!("vars.{k}")));
        }
    }
    for up in upstream(def, id) {
        if let Some(n) = node(def, &up) {
            out.extend(outputs(n).iter().map(|f| format!("nodes.{up}.{f}")));
        }
    }
    // A variable set by several steps is offered once, where it first appears.
    let mut seen = HashSet::new();
    out.retain(|v| seen.insert(v.clone()));
    out
}

/// Whether the palette offers `kind` for `def`: a conversation graph (started by a customer's
/// message) only the steps that answer at once; other workflows all but the conversation
/// graph's own (Route, Specialist, Handoff).
pub fn offered(def: &WorkflowDefinition, kind: NodeKind) -> bool {
    if def.nodes.iter().any(|n| n.kind == NodeKind::MessageTrigger) {
        kind.in_conversation()
    } else {
        kind == NodeKind::MessageTrigger || !kind.conversation_only()
    }
}

/// A workflow to start from: (name, what it does, its definition).
pub struct Starter {
    pub name: &'static str,
    pub description: &'static str,
    pub build: fn() -> WorkflowDefinition,
}

/// The templates the console offers when creating a workflow.
pub const STARTERS: &[Starter] = &[
    Starter {
        name: "Qualify a lead and book a call",
        description: "Books a call with leads from companies of 10 people or more and emails \
            them the time; thanks the others by email. Start it with name, email, company_size \
            and preferred_time (like 2026-12-08T10:00).",
        build: qualify_lead,
    },
    Starter {
        name: "Answer from knowledge, escalate when unsure",
        description: "Searches your knowledge bases for the question, has the model answer from \
            the passages and say whether it is sure; a sure answer is emailed at once, an unsure \
            one waits for a person to approve it. Start it with question and email.",
        build: answer_from_knowledge,
    },
    Starter {
        name: "Conversation graph",
        description: "The graph that answers your customers, as a workflow: the router chooses \
            a specialist, the specialist answers with its tools and knowledge, and a person \
            takes over when it asks. Add steps (classify, look something up, then route), \
            publish, and choose it for a channel below.",
        build: conversation_graph,
    },
    Starter {
        name: "Nightly digest email",
        description: "Every evening at six (your time zone), fetches a report from an address \
            you give, has the model sum it up in a few lines and emails the summary to your \
            team. Set the variables report_url and team_email.",
        build: nightly_digest,
    },
];

/// Names node `id` and sets its configuration (the templates' steps).
fn configure(d: &mut WorkflowDefinition, id: &str, name: &str, config: Value) {
    if let Some(n) = node_mut(d, id) {
        n.name = name.to_string();
        n.config = config;
    }
}

/// Connects the templates' steps and lays them out (the server's tests check every template
/// against the publishing rules, so a connection refused here fails there).
fn wire(d: &mut WorkflowDefinition, edges: &[(&str, &str, &str)]) {
    for (from, port, to) in edges {
        let _ = connect(d, from, port, to);
    }
    auto_layout(d);
}

/// The default graph (router → specialist → handoff) as a workflow.
fn conversation_graph() -> WorkflowDefinition {
    let mut d = WorkflowDefinition::default();
    let p = Position::default();
    let start = add_node(&mut d, NodeKind::MessageTrigger, p);
    let route = add_node(&mut d, NodeKind::Route, p);
    let answer = add_node(&mut d, NodeKind::Specialist, p);
    let person = add_node(&mut d, NodeKind::Handoff, p);
    configure(
        &mut d,
        &route,
        "Choose the specialist",
        json!({"agent": ""}),
    );
    configure(
        &mut d,
        &answer,
        "The specialist answers",
        json!({"agent": "", "context": ""}),
    );
    configure(
        &mut d,
        &person,
        "A person takes over",
        json!({"reason": ""}),
    );
    wire(
        &mut d,
        &[
            (&start, "out", &route),
            (&route, "out", &answer),
            (&answer, "handoff", &person),
        ],
    );
    d
}

fn nightly_digest() -> WorkflowDefinition {
    let mut d = WorkflowDefinition::default();
    d.variables.insert(
        "report_url".into(),
        json!("https://example.com/daily-report.json"),
    );
    d.variables
        .insert("team_email".into(), json!("team@example.com"));
    let p = Position::default();
    let start = add_node(&mut d, NodeKind::ScheduleTrigger, p);
    let fetch = add_node(&mut d, NodeKind::Http, p);
    let sum = add_node(&mut d, NodeKind::Llm, p);
    let mail = add_node(&mut d, NodeKind::Email, p);
    let end = add_node(&mut d, NodeKind::End, p);
    configure(
        &mut d,
        &start,
        "Every evening at six",
        json!({"cron": "0 18 * * *", "timezone": ""}),
    );
    configure(
        &mut d,
        &fetch,
        "Fetch the day's report",
        json!({"method": "GET", "url": "{{ vars.report_url }}", "headers": {}}),
    );
    configure(
        &mut d,
        &sum,
        "Sum it up",
        json!({
            "system": "You write a short daily digest for a small team: five bullet points at \
                most, plain words, the numbers that changed first.",
            "prompt": format!("The day's report:\n{{{{ nodes.{fetch}.body }}}}"),
            "model": "chat",
        }),
    );
    configure(
        &mut d,
        &mail,
        "Email the team",
        json!({
            "to": "{{ vars.team_email }}",
            "subject": "Daily digest",
            "body": format!("{{{{ nodes.{sum}.text }}}}"),
        }),
    );
    configure(
        &mut d,
        &end,
        "Sent",
        json!({"output": {"digest": format!("{{{{ nodes.{sum}.text }}}}")}}),
    );
    wire(
        &mut d,
        &[
            (&start, "out", &fetch),
            (&fetch, "out", &sum),
            (&sum, "out", &mail),
            (&mail, "out", &end),
        ],
    );
    d
}

fn answer_from_knowledge() -> WorkflowDefinition {
    let mut d = WorkflowDefinition::default();
    let p = Position::default();
    let start = add_node(&mut d, NodeKind::ManualTrigger, p);
    let lookup = add_node(&mut d, NodeKind::Knowledge, p);
    let answer = add_node(&mut d, NodeKind::Llm, p);
    let sure = add_node(&mut d, NodeKind::Condition, p);
    let review = add_node(&mut d, NodeKind::Approval, p);
    let reply = add_node(&mut d, NodeKind::Email, p);
    let sent = add_node(&mut d, NodeKind::End, p);
    let held = add_node(&mut d, NodeKind::End, p);
    configure(
        &mut d,
        &lookup,
        "Search the knowledge",
        json!({"query": "{{ trigger.question }}", "top_k": 5, "knowledge_base": ""}),
    );
    configure(
        &mut d,
        &answer,
        "Draft the answer",
        json!({
            "system": "You answer customers' questions from the company's documents. Use only \
                the passages given. When they do not answer the question, say so and set \
                confident to false.",
            "prompt": format!("{{{{ nodes.{lookup}.text }}}}\n\nQuestion: {{{{ trigger.question }}}}"),
            "model": "chat",
            "output": {"answer": "string", "confident": "boolean"}
        }),
    );
    configure(
        &mut d,
        &sure,
        "Sure of it?",
        json!({"expression": format!("nodes.{answer}.confident and nodes.{lookup}.found > 0")}),
    );
    configure(
        &mut d,
        &review,
        "A person checks it",
        json!({"prompt": format!(
            "A customer ({{{{ trigger.email }}}}) asked: {{{{ trigger.question }}}}\n\nThe draft \
             answer: {{{{ nodes.{answer}.answer }}}}\n\nSend it?"
        )}),
    );
    configure(
        &mut d,
        &reply,
        "Email the answer",
        json!({
            "to": "{{ trigger.email }}", "subject": "Your question",
            "body": format!("Hello,\n\n{{{{ nodes.{answer}.answer }}}}")
        }),
    );
    configure(
        &mut d,
        &sent,
        "Answered",
        json!({"output": {"answer": format!("{{{{ nodes.{answer}.answer }}}}")}}),
    );
    configure(
        &mut d,
        &held,
        "Not sent",
        json!({"output": {"escalated": "{{ trigger.question }}"}}),
    );
    wire(
        &mut d,
        &[
            (&start, "out", &lookup),
            (&lookup, "out", &answer),
            (&answer, "out", &sure),
            (&sure, "true", &reply),
            (&sure, "false", &review),
            (&review, "approved", &reply),
            (&review, "rejected", &held),
            (&reply, "out", &sent),
        ],
    );
    d
}

fn qualify_lead() -> WorkflowDefinition {
    let mut d = WorkflowDefinition::default();
    let p = Position::default();
    let start = add_node(&mut d, NodeKind::ManualTrigger, p);
    let check = add_node(&mut d, NodeKind::Condition, p);
    let book = add_node(&mut d, NodeKind::Booking, p);
    let confirm = add_node(&mut d, NodeKind::Email, p);
    let thanks = add_node(&mut d, NodeKind::Email, p);
    let end = add_node(&mut d, NodeKind::End, p);
    configure(
        &mut d,
        &check,
        "Company of 10 or more?",
        json!({"expression": "trigger.company_size >= 10"}),
    );
    configure(
        &mut d,
        &book,
        "Book the call",
        json!({
            "starts_at": "{{ trigger.preferred_time }}", "minutes": 30,
            "name": "{{ trigger.name }}", "email": "{{ trigger.email }}",
            "note": "Qualified lead ({{ trigger.company_size }} people)"
        }),
    );
    configure(
        &mut d,
        &confirm,
        "Confirm the call",
        json!({
            "to": "{{ trigger.email }}", "subject": "Your call is booked",
            "body": "Hello {{ trigger.name }}, see you at {{ nodes.booking.starts_at }}.",
            "compensation": {"subject": "Your call is off",
                "body": "Sorry {{ trigger.name }}, we could not keep that time; we will write again."}
        }),
    );
    configure(
        &mut d,
        &thanks,
        "Thank them",
        json!({
            "to": "{{ trigger.email }}", "subject": "Thanks for your interest",
            "body": "Hello {{ trigger.name }}, here is how to get started on your own."
        }),
    );
    configure(
        &mut d,
        &end,
        "Done",
        json!({"output": {"booked": "{{ nodes.booking.booking_id }}"}}),
    );
    wire(
        &mut d,
        &[
            (&start, "out", &check),
            (&check, "true", &book),
            (&book, "out", &confirm),
            (&confirm, "out", &end),
            (&check, "false", &thanks),
        ],
    );
    d
}

/// Snapshots to step back and forth through: every edit pushes the definition as it was before.
#[derive(Clone, Debug, Default)]
pub struct History {
    past: Vec<WorkflowDefinition>,
    future: Vec<WorkflowDefinition>,
}

impl History {
    /// Records `before`, the definition an edit is about to change.
    pub fn record(&mut self, before: WorkflowDefinition) {
        if self.past.last() == Some(&before) {
            return;
        }
        self.past.push(before);
        if self.past.len() > HISTORY {
            self.past.remove(0);
        }
        self.future.clear();
    }

    /// The definition before the last edit, given the current one.
    pub fn undo(&mut self, current: WorkflowDefinition) -> Option<WorkflowDefinition> {
        let previous = self.past.pop()?;
        self.future.push(current);
        Some(previous)
    }

    pub fn redo(&mut self, current: WorkflowDefinition) -> Option<WorkflowDefinition> {
        let next = self.future.pop()?;
        self.past.push(current);
        Some(next)
    }

    pub fn can_undo(&self) -> bool {
        !self.past.is_empty()
    }

    pub fn can_redo(&self) -> bool {
        !self.future.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(x: f64, y: f64) -> Position {
        Position { x, y }
    }

    fn three() -> WorkflowDefinition {
        let mut d = WorkflowDefinition::default();
        add_node(&mut d, NodeKind::ManualTrigger, at(0.0, 0.0));
        add_node(&mut d, NodeKind::Template, at(300.0, 0.0));
        add_node(&mut d, NodeKind::End, at(600.0, 0.0));
        connect(&mut d, "manual_trigger", "out", "template").unwrap();
        connect(&mut d, "template", "out", "finish").unwrap();
        d
    }

    #[test]
    fn ids_are_fresh_and_connections_follow_the_kinds() {
        let mut d = three();
        assert_eq!(
            add_node(&mut d, NodeKind::Template, at(0.0, 0.0)),
            "template_2"
        );
        assert!(connect(&mut d, "template", "true", "finish")
            .unwrap_err()
            .contains("no `true` exit"));
        assert!(connect(&mut d, "template", "out", "manual_trigger")
            .unwrap_err()
            .contains("nothing leads into it"));
        assert!(connect(&mut d, "template", "out", "template").is_err());
        assert!(connect(&mut d, "finish", "out", "template").is_err());
        // A port leads to one node: connecting it again moves the edge.
        connect(&mut d, "template", "out", "template_2").unwrap();
        let from_template: Vec<_> = d.edges.iter().filter(|e| e.from == "template").collect();
        assert_eq!(from_template.len(), 1);
        assert_eq!(from_template[0].to, "template_2");
    }

    #[test]
    fn removing_nodes_removes_their_edges() {
        let mut d = three();
        remove_nodes(&mut d, &HashSet::from(["template".to_string()]));
        assert_eq!(d.nodes.len(), 2);
        assert!(d.edges.is_empty());
    }

    #[test]
    fn paste_renames_taken_ids_and_the_references_to_them() {
        let mut d = three();
        d.nodes[1].config = json!({"template": "{{ nodes.template.text }} {{ nodes.template_x }}"});
        d.nodes[2].config = json!({"output": {"a": "{{ nodes.template.text }}"}});
        let ids = HashSet::from([
            "template".to_string(),
            "finish".to_string(),
            "manual_trigger".to_string(),
        ]);
        let clip = copy(&d, &ids);
        let json = serde_json::to_string(&clip).unwrap();
        let clip: WorkflowDefinition = serde_json::from_str(&json).unwrap();
        let pasted = paste(&mut d, &clip, at(20.0, 20.0));
        // The trigger is not pasted twice.
        assert_eq!(
            pasted,
            vec!["template_2".to_string(), "finish_2".to_string()]
        );
        let t2 = node(&d, "template_2").unwrap();
        assert_eq!(
            t2.config["template"],
            "{{ nodes.template_2.text }} {{ nodes.template_x }}"
        );
        assert_eq!(t2.position, at(320.0, 20.0));
        assert_eq!(
            node(&d, "finish_2").unwrap().config["output"]["a"],
            "{{ nodes.template_2.text }}"
        );
        assert!(d
            .edges
            .iter()
            .any(|e| e.from == "template_2" && e.to == "finish_2"));
        assert_eq!(d.edges.len(), 3);
    }

    #[test]
    fn undo_and_redo_walk_the_snapshots() {
        let mut h = History::default();
        let mut d = three();
        let first = d.clone();
        h.record(d.clone());
        move_nodes(
            &mut d,
            &HashSet::from(["finish".to_string()]),
            10.0,
            -1000.0,
        );
        assert_eq!(node(&d, "finish").unwrap().position, at(610.0, 0.0));
        let moved = d.clone();
        h.record(d.clone());
        let f = fields(NodeKind::Template)[0];
        node_mut(&mut d, "template").unwrap().config =
            set_field(&node(&d, "template").unwrap().config, &f, "Hi").unwrap();
        let d = h.undo(d).unwrap();
        assert_eq!(d, moved);
        let d = h.undo(d).unwrap();
        assert_eq!(d, first);
        assert!(!h.can_undo());
        let d = h.redo(d).unwrap();
        let d = h.redo(d).unwrap();
        assert_eq!(node(&d, "template").unwrap().config["template"], "Hi");
        assert!(!h.can_redo());
    }

    #[test]
    fn form_fields_round_trip_and_empty_values_leave_no_keys() {
        let http = fields(NodeKind::Http);
        let url = http.iter().find(|f| f.key == "compensation.url").unwrap();
        let headers = http.iter().find(|f| f.key == "headers").unwrap();
        let c = starter_config(NodeKind::Http);
        let c = set_field(&c, url, "https://pay.example/refund").unwrap();
        assert_eq!(c["compensation"]["url"], "https://pay.example/refund");
        let c = set_field(&c, headers, "X-Key = {{ vars.key }}\nAccept=json").unwrap();
        // (In the order typed where serde_json keeps it, else sorted.)
        let mut shown: Vec<String> = field_text(&c, headers).lines().map(String::from).collect();
        shown.sort();
        assert_eq!(shown, ["Accept = json", "X-Key = {{ vars.key }}"]);
        assert!(set_field(&c, headers, "no equals sign").is_err());
        let c = set_field(&c, url, "").unwrap();
        assert!(c.get("compensation").is_none());
        let minutes = fields(NodeKind::Booking)
            .iter()
            .find(|f| f.key == "minutes")
            .unwrap();
        let b = set_field(&starter_config(NodeKind::Booking), minutes, "45").unwrap();
        assert_eq!(b["minutes"], 45);
        assert!(set_field(&b, minutes, "soon").is_err());
    }

    #[test]
    fn layout_puts_each_node_right_of_what_leads_to_it() {
        let mut d = three();
        add_node(&mut d, NodeKind::Condition, at(0.0, 0.0));
        add_node(&mut d, NodeKind::Email, at(0.0, 0.0));
        connect(&mut d, "template", "out", "condition").unwrap();
        connect(&mut d, "condition", "true", "finish").unwrap();
        connect(&mut d, "condition", "false", "email").unwrap();
        add_node(&mut d, NodeKind::Wait, at(0.0, 0.0)); // unreached
        auto_layout(&mut d);
        let x = |id: &str| node(&d, id).unwrap().position.x;
        assert!(x("manual_trigger") < x("template"));
        assert!(x("template") < x("condition"));
        assert!(x("condition") < x("finish"));
        assert_eq!(x("finish"), x("email"));
        assert_ne!(
            node(&d, "finish").unwrap().position.y,
            node(&d, "email").unwrap().position.y
        );
        assert!(x("wait") > x("finish"));
        let (l, t, r, b) = bounds(&d);
        assert!(l >= 0.0 && t >= 0.0 && r > l && b > t);
    }

    #[test]
    fn the_picker_offers_what_runs_before() {
        let mut d = three();
        add_node(&mut d, NodeKind::Http, at(0.0, 0.0));
        d.nodes[1].kind = NodeKind::Http;
        let vars = variables(&d, "finish");
        assert!(vars.contains(&"trigger".to_string()));
        assert!(vars.contains(&"nodes.template.status".to_string()));
        // `http` is not connected: not offered.
        assert!(!vars.iter().any(|v| v.starts_with("nodes.http.")));
        assert!(!variables(&d, "template")
            .iter()
            .any(|v| v.starts_with("nodes.finish")));
    }

    #[test]
    fn classes_and_cases_are_exits_and_model_fields_are_outputs() {
        let mut d = three();
        let sort = add_node(&mut d, NodeKind::Classifier, at(0.0, 0.0));
        assert_eq!(
            node(&d, &sort).unwrap().ports(),
            ["sales", "support", "other", "error"]
        );
        connect(&mut d, &sort, "support", "finish").unwrap();
        // Four exits need a taller node; the layout leaves room for it.
        assert!(height_of(node(&d, &sort).unwrap()) > NODE_H);
        connect(&mut d, "manual_trigger", "out", &sort).unwrap();
        add_node(&mut d, NodeKind::Switch, at(0.0, 0.0));
        connect(&mut d, "manual_trigger", "out", "switch").unwrap_or_default();
        auto_layout(&mut d);
        for a in &d.nodes {
            for b in d
                .nodes
                .iter()
                .filter(|b| b.id != a.id && b.position.x == a.position.x)
            {
                let apart = a.position.y + height_of(a) <= b.position.y
                    || b.position.y + height_of(b) <= a.position.y;
                assert!(apart, "{} and {} overlap", a.id, b.id);
            }
        }
        assert!(connect(&mut d, &sort, "billing", "finish")
            .unwrap_err()
            .contains("no `billing` exit"));
        let ask = add_node(&mut d, NodeKind::Llm, at(0.0, 0.0));
        connect(&mut d, "template", "out", &ask).unwrap();
        assert!(variables(&d, &ask).contains(&"nodes.template.text".to_string()));
        connect(&mut d, &ask, "out", "finish").unwrap();
        assert!(variables(&d, "finish").contains(&format!("nodes.{ask}.text")));
        node_mut(&mut d, &ask).unwrap().config["output"] = json!({"qualified": "boolean"});
        let vars = variables(&d, "finish");
        assert!(vars.contains(&format!("nodes.{ask}.qualified")), "{vars:?}");
        assert!(!vars.contains(&format!("nodes.{ask}.text")));
    }

    #[test]
    fn a_conversation_graph_is_offered_only_the_steps_that_answer_at_once() {
        let blank = WorkflowDefinition::default();
        assert!(offered(&blank, NodeKind::Http));
        assert!(offered(&blank, NodeKind::MessageTrigger));
        assert!(!offered(&blank, NodeKind::Specialist));
        let starter = STARTERS
            .iter()
            .find(|s| s.name == "Conversation graph")
            .unwrap();
        let graph = (starter.build)();
        assert!(offered(&graph, NodeKind::Classifier));
        assert!(offered(&graph, NodeKind::Route));
        assert!(!offered(&graph, NodeKind::Booking));
        assert!(!offered(&graph, NodeKind::Wait));
        // The default graph's shape: start → route → specialist, its handoff exit to a person.
        let kinds: Vec<NodeKind> = graph.nodes.iter().map(|n| n.kind).collect();
        assert_eq!(
            kinds,
            [
                NodeKind::MessageTrigger,
                NodeKind::Route,
                NodeKind::Specialist,
                NodeKind::Handoff
            ]
        );
        assert_eq!(graph.edges.len(), 3);
        assert!(graph.edges.iter().any(|e| e.port == "handoff"));
    }
}
