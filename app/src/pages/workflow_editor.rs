//! The workflow editor: a canvas of nodes and the edges between their exits, a palette, a side
//! panel with the selected node's form, a toolbar (undo/redo, layout, zoom, copy/paste,
//! publish, run), and the runs and versions of the workflow ([`super::workflow_runs`]).
//!
//! Every change goes through [`Ed::edit`]: it records the definition as it was (undo), and the
//! draft is saved a moment after the last change; the answer carries the server's problems,
//! which the nodes show. Edits themselves are [`crate::editor`]'s functions.

use std::collections::{HashMap, HashSet};

use leptos::prelude::*;
use uuid::Uuid;

use super::widgets::{can_write, show_error, use_me};
use super::workflow_runs::{RunsTab, VersionsTab};
use crate::api::{
    get_workflow, list_workflow_secrets, test_workflow_node, update_workflow, PublishDraft,
    RotateWorkflowSecret, StartWorkflowRun,
};
use crate::editor::{self as model, Field, FieldKind, History, NODE_H, NODE_W};
use crate::types::{
    Area, CompensationStatus, NodeKind, NodeTest, OnError, Position, PublishWorkflow, RunDetail,
    StartRun, StepStatus, TestNode, UpdateWorkflow, Workflow, WorkflowDefinition, WorkflowDiff,
    WorkflowProblem,
};

/// How long the draft waits after the last change before it is saved.
const SAVE_AFTER_MS: u64 = 600;
/// How far an arrow key moves a node (with Shift: five times as far).
const NUDGE: f64 = 10.0;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Camera {
    x: f64,
    y: f64,
    zoom: f64,
}

#[derive(Clone, Debug, PartialEq)]
enum Gesture {
    /// Nodes follow the pointer (offset in canvas units, not yet applied).
    Move {
        start: (f64, f64),
        ids: HashSet<String>,
        dx: f64,
        dy: f64,
    },
    Pan {
        start: (f64, f64),
        from: Camera,
    },
    /// A rectangle that selects what it touches (canvas units).
    Select {
        start: (f64, f64),
        end: (f64, f64),
    },
}

#[derive(Clone, Debug, PartialEq)]
enum SaveState {
    Saved,
    Pending,
    Saving,
    Failed(String),
}

/// What a run did at one node, for the overlay.
#[derive(Clone, Debug, PartialEq)]
struct NodeTrace {
    status: StepStatus,
    tries: u32,
    duration_ms: u32,
    undo: Option<CompensationStatus>,
}

/// The editor's state: signals, so every part reads and changes the same.
#[derive(Clone, Copy)]
pub(super) struct Ed {
    pub id: Uuid,
    pub def: RwSignal<WorkflowDefinition>,
    revision: RwSignal<i64>,
    pub problems: RwSignal<Vec<WorkflowProblem>>,
    history: RwSignal<History>,
    selection: RwSignal<HashSet<String>>,
    panel: RwSignal<Option<String>>,
    camera: RwSignal<Camera>,
    gesture: RwSignal<Option<Gesture>>,
    /// An exit waiting for the node it should lead to (from, port), and where the pointer is.
    connecting: RwSignal<Option<(String, String)>>,
    pointer: RwSignal<(f64, f64)>,
    save: RwSignal<SaveState>,
    edits: StoredValue<u64>,
    in_flight: StoredValue<bool>,
    timer: StoredValue<Option<TimeoutHandle>>,
    /// A short message for the toolbar's live region.
    pub say: RwSignal<String>,
    pub writable: Signal<bool>,
    /// A run shown on the canvas.
    pub trace: RwSignal<Option<RunDetail>>,
    /// A version diff shown on the canvas.
    pub diff: RwSignal<Option<WorkflowDiff>>,
    /// When the published version's schedule starts the next run.
    next_run: RwSignal<Option<chrono::DateTime<chrono::Utc>>>,
    /// Where its webhook trigger takes requests, and whether a secret was made.
    webhook: RwSignal<(String, bool)>,
    canvas: NodeRef<leptos::html::Div>,
}

/// Copied nodes, kept while the console is open, across the workflows it opens (also on the
/// system clipboard as JSON, so a copy reaches another tab or another tenant's console).
mod clipboard {
    use std::cell::RefCell;

    thread_local! {
        static COPIED: RefCell<Option<String>> = const { RefCell::new(None) };
    }

    pub fn put(json: String) {
        COPIED.with(|c| *c.borrow_mut() = Some(json));
    }

    pub fn get() -> Option<String> {
        COPIED.with(|c| c.borrow().clone())
    }
}

impl Ed {
    fn new(w: &Workflow, writable: Signal<bool>) -> Self {
        Ed {
            id: w.id,
            def: RwSignal::new(w.draft.clone()),
            revision: RwSignal::new(w.draft_revision),
            problems: RwSignal::new(w.problems.clone()),
            history: RwSignal::new(History::default()),
            selection: RwSignal::new(HashSet::new()),
            panel: RwSignal::new(None),
            camera: RwSignal::new(Camera {
                x: 0.0,
                y: 0.0,
                zoom: 1.0,
            }),
            gesture: RwSignal::new(None),
            connecting: RwSignal::new(None),
            pointer: RwSignal::new((0.0, 0.0)),
            save: RwSignal::new(SaveState::Saved),
            edits: StoredValue::new(0),
            in_flight: StoredValue::new(false),
            timer: StoredValue::new(None),
            say: RwSignal::new(String::new()),
            writable,
            trace: RwSignal::new(None),
            diff: RwSignal::new(None),
            next_run: RwSignal::new(w.next_run_at),
            webhook: RwSignal::new((w.webhook_url.clone(), w.webhook_secret_set)),
            canvas: NodeRef::new(),
        }
    }

    /// Applies a change to the draft: undoable, and saved shortly after.
    pub fn edit(&self, change: impl FnOnce(&mut WorkflowDefinition)) {
        if !self.writable.get_untracked() {
            self.say
                .set("Your role can view workflows but not change them.".into());
            return;
        }
        let before = self.def.get_untracked();
        let mut after = before.clone();
        change(&mut after);
        if after == before {
            return;
        }
        self.history.update(|h| h.record(before));
        self.replace(after);
    }

    /// Shows `def` (an edit, an undo, a restore) and saves it soon.
    fn replace(&self, def: WorkflowDefinition) {
        let ids: HashSet<String> = def.nodes.iter().map(|n| n.id.clone()).collect();
        self.selection.update(|s| s.retain(|id| ids.contains(id)));
        if self
            .panel
            .with_untracked(|p| p.as_ref().is_some_and(|p| !ids.contains(p)))
        {
            self.panel.set(None);
        }
        self.def.set(def);
        self.edits.update_value(|n| *n += 1);
        self.save.set(SaveState::Pending);
        self.schedule_save();
    }

    /// A workflow the server sent back (a restored version): the new draft, not undoable into
    /// the old revision.
    pub fn reload(&self, w: Workflow) {
        self.history.set(History::default());
        self.revision.set(w.draft_revision);
        self.problems.set(w.problems);
        self.next_run.set(w.next_run_at);
        self.def.set(w.draft);
        self.save.set(SaveState::Saved);
    }

    fn schedule_save(&self) {
        let this = *self;
        if let Some(handle) = self.timer.get_value() {
            handle.clear();
        }
        let handle = set_timeout_with_handle(
            move || this.save_now(),
            std::time::Duration::from_millis(SAVE_AFTER_MS),
        )
        .ok();
        self.timer.set_value(handle);
    }

    /// Saves the draft unless a save is under way (that one saves again when it is done). The
    /// answer may come after the editor is closed: it then changes nothing.
    fn save_now(&self) {
        if self.in_flight.try_get_value() != Some(false) {
            return;
        }
        let this = *self;
        let generation = self.edits.get_value();
        let draft = self.def.get_untracked();
        let update = UpdateWorkflow {
            name: None,
            description: None,
            draft: Some(draft),
            base_revision: Some(self.revision.get_untracked()),
        };
        self.in_flight.set_value(true);
        self.save.set(SaveState::Saving);
        leptos::task::spawn_local(async move {
            let result = update_workflow(this.id, update).await;
            if this.in_flight.try_set_value(false).is_some() {
                return;
            }
            match result {
                Ok(w) => {
                    this.revision.set(w.draft_revision);
                    this.problems.set(w.problems);
                    this.next_run.set(w.next_run_at);
                    if this.edits.get_value() == generation {
                        this.save.set(SaveState::Saved);
                    } else {
                        this.save_now();
                    }
                }
                Err(e) => this.save.set(SaveState::Failed(e.user_message())),
            }
        });
    }

    /// Leaving the editor: a change still waiting for its save is saved now.
    fn flush(&self) {
        if let Some(Some(handle)) = self.timer.try_get_value() {
            handle.clear();
            if self.save.try_get_untracked() == Some(SaveState::Pending) {
                self.save_now();
            }
        }
    }

    fn undo(&self) {
        let current = self.def.get_untracked();
        if let Some(previous) = self.history.try_update(|h| h.undo(current)).flatten() {
            self.replace(previous);
            self.say.set("Undone.".into());
        }
    }

    fn redo(&self) {
        let current = self.def.get_untracked();
        if let Some(next) = self.history.try_update(|h| h.redo(current)).flatten() {
            self.replace(next);
            self.say.set("Redone.".into());
        }
    }

    /// The canvas's size in pixels.
    fn size(&self) -> (f64, f64) {
        self.canvas
            .get_untracked()
            .map(|el| (f64::from(el.client_width()), f64::from(el.client_height())))
            .filter(|(w, h)| *w > 0.0 && *h > 0.0)
            .unwrap_or((900.0, 520.0))
    }

    /// A point of the page (client pixels) in canvas units.
    fn canvas_point(&self, client: (f64, f64)) -> (f64, f64) {
        let origin = self.origin();
        let c = self.camera.get_untracked();
        (
            (client.0 - origin.0 - c.x) / c.zoom,
            (client.1 - origin.1 - c.y) / c.zoom,
        )
    }

    /// Where the canvas element starts on the page (client pixels).
    fn origin(&self) -> (f64, f64) {
        #[cfg(feature = "hydrate")]
        if let Some(el) = self.canvas.get_untracked() {
            let r = el.get_bounding_client_rect();
            return (r.left(), r.top());
        }
        (0.0, 0.0)
    }

    /// Where a new node goes: the middle of what is in view, or the first place right of it
    /// (then below) that no node covers.
    fn free_spot(&self) -> Position {
        let (w, h) = self.size();
        let c = self.camera.get_untracked();
        let x0 = ((w / 2.0 - c.x) / c.zoom - NODE_W / 2.0).max(0.0).round();
        let y0 = ((h / 2.0 - c.y) / c.zoom - NODE_H / 2.0).max(0.0).round();
        self.def.with_untracked(|d| {
            let taken = |x: f64, y: f64| {
                d.nodes.iter().any(|n| {
                    (n.position.x - x).abs() < NODE_W + 20.0
                        && (n.position.y - y).abs() < NODE_H + 20.0
                })
            };
            (0..8)
                .flat_map(|row| (0..6).map(move |col| (col, row)))
                .map(|(col, row)| {
                    (
                        x0 + f64::from(col) * (NODE_W + 30.0),
                        y0 + f64::from(row) * (NODE_H + 30.0),
                    )
                })
                .find(|(x, y)| !taken(*x, *y))
                .map_or(Position { x: x0, y: y0 }, |(x, y)| Position { x, y })
        })
    }

    fn add(&self, kind: NodeKind, at: Position) {
        let mut added = None;
        self.edit(|d| {
            if kind.is_trigger() && d.nodes.iter().any(|n| n.kind.is_trigger()) {
                return;
            }
            added = Some(model::add_node(d, kind, at));
        });
        match added {
            Some(id) => {
                self.selection.set(HashSet::from([id.clone()]));
                self.panel.set(Some(id.clone()));
                self.say.set(format!("Added {}.", model::kind_label(kind)));
                focus_node(&id);
            }
            None if kind.is_trigger() => self.say.set("A workflow has one start.".into()),
            None => {}
        }
    }

    fn connect(&self, from: &str, port: &str, to: &str) {
        let mut outcome = Ok(());
        self.edit(|d| outcome = model::connect(d, from, port, to));
        self.connecting.set(None);
        match outcome {
            Ok(()) => self.say.set(format!("Connected {from} ({port}) to {to}.")),
            Err(e) => self.say.set(format!("Not connected: {e}.")),
        }
    }

    fn delete_selection(&self) {
        let ids = self.selection.get_untracked();
        if ids.is_empty() {
            return;
        }
        let n = ids.len();
        self.edit(|d| model::remove_nodes(d, &ids));
        self.say.set(format!(
            "Deleted {n} node{}.",
            if n == 1 { "" } else { "s" }
        ));
        // The focused node is gone: the canvas keeps the keyboard (Ctrl+Z brings it back).
        if let Some(canvas) = self.canvas.get_untracked() {
            let _ = canvas.focus();
        }
    }

    fn nudge(&self, id: &str, dx: f64, dy: f64) {
        let mut ids = self.selection.get_untracked();
        if !ids.contains(id) {
            ids = HashSet::from([id.to_string()]);
        }
        self.edit(|d| model::move_nodes(d, &ids, dx, dy));
    }

    fn copy_selection(&self) -> Option<String> {
        let ids = self.selection.get_untracked();
        if ids.is_empty() {
            self.say.set("Select nodes to copy first.".into());
            return None;
        }
        let fragment = self.def.with_untracked(|d| model::copy(d, &ids));
        let json = serde_json::to_string(&fragment).ok()?;
        self.say
            .set(format!("Copied {} node(s).", fragment.nodes.len()));
        Some(json)
    }

    fn paste(&self, json: &str) {
        let fragment: WorkflowDefinition = match serde_json::from_str(json) {
            Ok(f) => f,
            Err(_) => {
                self.say
                    .set("Nothing to paste: the clipboard holds no workflow nodes.".into());
                return;
            }
        };
        let mut pasted = Vec::new();
        self.edit(|d| pasted = model::paste(d, &fragment, Position { x: 30.0, y: 30.0 }));
        self.say.set(format!("Pasted {} node(s).", pasted.len()));
        self.selection.set(pasted.into_iter().collect());
    }

    fn fit(&self) {
        let (w, h) = self.size();
        let (l, t, r, b) = self.def.with_untracked(model::bounds);
        let zoom = (w / (r - l + 80.0)).min(h / (b - t + 80.0)).clamp(0.2, 1.0);
        self.camera.set(Camera {
            x: (w - (r - l) * zoom) / 2.0 - l * zoom,
            y: (h - (b - t) * zoom) / 2.0 - t * zoom,
            zoom,
        });
    }

    /// Zooms by `factor` keeping the canvas point under `at` (canvas pixels) where it is.
    fn zoom(&self, factor: f64, at: (f64, f64)) {
        self.camera.update(|c| {
            let zoom = (c.zoom * factor).clamp(0.2, 2.5);
            let wx = (at.0 - c.x) / c.zoom;
            let wy = (at.1 - c.y) / c.zoom;
            *c = Camera {
                x: at.0 - wx * zoom,
                y: at.1 - wy * zoom,
                zoom,
            };
        });
    }

    /// Ends a gesture: moved nodes are committed, a rectangle selects.
    fn finish_gesture(&self) {
        match self.gesture.get_untracked() {
            Some(Gesture::Move { ids, dx, dy, .. }) if dx.abs() + dy.abs() >= 2.0 => {
                self.edit(|d| model::move_nodes(d, &ids, dx, dy));
            }
            Some(Gesture::Select { start, end }) => {
                let (l, r) = (start.0.min(end.0), start.0.max(end.0));
                let (t, b) = (start.1.min(end.1), start.1.max(end.1));
                let hit: HashSet<String> = self.def.with_untracked(|d| {
                    d.nodes
                        .iter()
                        .filter(|n| {
                            n.position.x < r
                                && n.position.x + NODE_W > l
                                && n.position.y < b
                                && n.position.y + model::height_of(n) > t
                        })
                        .map(|n| n.id.clone())
                        .collect()
                });
                self.say.set(format!("{} node(s) selected.", hit.len()));
                self.selection.set(hit);
            }
            _ => {}
        }
        self.gesture.set(None);
    }
}

fn focus_node(id: &str) {
    #[cfg(feature = "hydrate")]
    {
        use leptos::wasm_bindgen::JsCast;
        let id = id.to_string();
        request_animation_frame(move || {
            if let Some(el) = document()
                .query_selector(&format!("[data-node=\"{id}\"]"))
                .ok()
                .flatten()
                .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
            {
                let _ = el.focus();
            }
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = id;
}

fn client(ev: &leptos::ev::MouseEvent) -> (f64, f64) {
    (f64::from(ev.client_x()), f64::from(ev.client_y()))
}

/// Whether a key press belongs to a text field (the canvas's shortcuts leave it alone).
fn typing(ev: &leptos::ev::KeyboardEvent) -> bool {
    use leptos::wasm_bindgen::JsCast;
    ev.target()
        .and_then(|t| t.dyn_into::<leptos::web_sys::Element>().ok())
        .is_some_and(|el| matches!(el.tag_name().as_str(), "INPUT" | "TEXTAREA" | "SELECT"))
}

#[derive(Clone, Copy, PartialEq)]
enum Tab {
    Edit,
    Runs,
    Versions,
}

/// `/workflows/edit?open=<id>`: one workflow in the editor.
#[component]
pub fn WorkflowEditorPage() -> impl IntoView {
    let query = leptos_router::hooks::use_query_map();
    let open = move || query.with(|q| q.get("open").and_then(|id| id.parse::<Uuid>().ok()));
    move || match open() {
        Some(id) => view! { <Editor id/> }.into_any(),
        None => view! {
            <leptos_meta::Title text="Workflows"/>
            <h1>"Workflows"</h1>
            <p class="empty">"No workflow chosen. " <a href="/workflows">"Choose one"</a></p>
        }
        .into_any(),
    }
}

#[component]
fn Editor(id: Uuid) -> impl IntoView {
    let writable = can_write(use_me(), Area::Workflows);
    let workflow = Resource::new(move || id, get_workflow);
    view! {
        <p><a href="/workflows">"← All workflows"</a></p>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match workflow.await {
                    Ok(w) => view! { <Loaded w writable/> }.into_any(),
                    Err(e) => show_error(&e),
                }
            })}
        </Transition>
    }
}

#[component]
fn Loaded(w: Workflow, writable: Signal<bool>) -> impl IntoView {
    let ed = Ed::new(&w, writable);
    let tab = RwSignal::new(Tab::Edit);
    // The canvas is drawn in the browser only: its positions are CSSOM styles, which a
    // server-rendered `style` attribute cannot carry under the page's CSP.
    let mounted = RwSignal::new(false);
    Effect::new(move |_| mounted.set(true));
    let name = w.name.clone();
    on_cleanup(move || ed.flush());
    // Show the whole workflow once the canvas has its size.
    Effect::new(move |_| {
        if ed.canvas.get().is_some() {
            request_animation_frame(move || ed.fit());
        }
    });
    let tab_button = move |t: Tab, label: &'static str| {
        view! {
            <button type="button" class="secondary" aria-pressed=move || (tab.get() == t).to_string()
                on:click=move |_| tab.set(t)>{label}</button>
        }
    };
    view! {
        <leptos_meta::Title text=name.clone()/>
        <div class="wf-head">
            <h1>{name}</h1>
            <SaveStatus ed/>
        </div>
        <div class="actions" role="group" aria-label="Views">
            {tab_button(Tab::Edit, "Editor")}
            {tab_button(Tab::Runs, "Runs")}
            {tab_button(Tab::Versions, "Versions")}
        </div>
        <p class="sr-only" role="status" aria-live="polite">{move || ed.say.get()}</p>
        <div class="wf-editor" class:hidden=move || tab.get() != Tab::Edit>
            <Toolbar ed/>
            <Overlays ed/>
            <Show when=move || mounted.get() fallback=|| view! { <p>"Loading the editor…"</p> }>
                <div class="wf-body">
                    <Palette ed/>
                    <Canvas ed/>
                    <Panel ed/>
                </div>
            </Show>
            <Problems ed/>
        </div>
        {move || match tab.get() {
            Tab::Edit => ().into_any(),
            Tab::Runs => view! { <RunsTab ed on_show=Callback::new(move |()| tab.set(Tab::Edit))/> }.into_any(),
            Tab::Versions => view! { <VersionsTab ed on_show=Callback::new(move |()| tab.set(Tab::Edit))/> }.into_any(),
        }}
    }
}

#[component]
fn SaveStatus(ed: Ed) -> impl IntoView {
    move || match ed.save.get() {
        SaveState::Saved => {
            view! { <span class="badge status-ready" data-testid="save-state">"Saved"</span> }
                .into_any()
        }
        SaveState::Pending | SaveState::Saving => {
            view! { <span class="badge status-queued" data-testid="save-state">"Saving…"</span> }
                .into_any()
        }
        SaveState::Failed(e) => view! {
            <span class="notice error" role="alert" data-testid="save-state">
                {format!("Not saved: {e} ")}
                <a href=format!("/workflows/edit?open={}", ed.id) rel="external">"Reload"</a>
            </span>
        }
        .into_any(),
    }
}

#[component]
fn Toolbar(ed: Ed) -> impl IntoView {
    let publish = ServerAction::<PublishDraft>::new();
    let start = ServerAction::<StartWorkflowRun>::new();
    let note = RwSignal::new(String::new());
    let running = RwSignal::new(false);
    let input = RwSignal::new("{}".to_string());
    let input_error = RwSignal::new(None::<String>);
    let can_undo = move || ed.history.with(History::can_undo);
    let can_redo = move || ed.history.with(History::can_redo);
    let nothing_selected = move || ed.selection.with(HashSet::is_empty);
    let center = move || {
        let (w, h) = ed.size();
        (w / 2.0, h / 2.0)
    };
    let copy = move |_| {
        if let Some(json) = ed.copy_selection() {
            clipboard::put(json);
        }
    };
    let paste = move |_| match clipboard::get() {
        Some(json) => ed.paste(&json),
        None => ed.say.set("Nothing copied yet.".into()),
    };
    let do_publish = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        publish.dispatch(PublishDraft {
            id: ed.id,
            publish: PublishWorkflow {
                note: note.get_untracked(),
            },
        });
    };
    Effect::new(move |_| {
        if let Some(Ok(v)) = publish.value().get() {
            note.set(String::new());
            ed.say.set(format!("Published version {}.", v.number));
            // Publishing a schedule trigger (or another one) sets (or ends) the schedule.
            leptos::task::spawn_local(async move {
                if let Ok(w) = get_workflow(ed.id).await {
                    ed.next_run.try_set(w.next_run_at);
                }
            });
        }
    });
    let do_run = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        match serde_json::from_str::<serde_json::Value>(&input.get_untracked()) {
            Ok(value) => {
                input_error.set(None);
                start.dispatch(StartWorkflowRun {
                    id: ed.id,
                    start: StartRun {
                        input: value,
                        version: None,
                    },
                });
            }
            Err(e) => input_error.set(Some(format!("The input is not JSON: {e}"))),
        }
    };
    // A started run is followed on the canvas.
    Effect::new(move |_| {
        if let Some(Ok(run)) = start.value().get() {
            running.set(false);
            ed.diff.set(None);
            ed.trace.set(None);
            super::workflow_runs::follow(ed, run.id);
        }
    });
    view! {
        <div class="wf-toolbar" role="toolbar" aria-label="Workflow editor">
            <button type="button" class="secondary" on:click=move |_| ed.undo() disabled=move || !can_undo()
                aria-keyshortcuts="Control+Z">"Undo"</button>
            <button type="button" class="secondary" on:click=move |_| ed.redo() disabled=move || !can_redo()
                aria-keyshortcuts="Control+Y">"Redo"</button>
            <button type="button" class="secondary" on:click=move |_| {
                ed.edit(model::auto_layout);
                request_animation_frame(move || ed.fit());
            }>"Tidy up"</button>
            <button type="button" class="secondary" on:click=move |_| ed.fit()>"Fit"</button>
            <button type="button" class="secondary" aria-label="Zoom out" on:click=move |_| ed.zoom(1.0 / 1.25, center())>"−"</button>
            <button type="button" class="secondary" aria-label="Zoom in" on:click=move |_| ed.zoom(1.25, center())>"+"</button>
            <button type="button" class="secondary" on:click=copy disabled=nothing_selected>"Copy"</button>
            <button type="button" class="secondary" on:click=paste>"Paste"</button>
            <button type="button" class="danger" on:click=move |_| ed.delete_selection() disabled=nothing_selected>"Delete"</button>
        </div>
        <div class="wf-toolbar">
            <form class="inline" on:submit=do_publish aria-label="Publish">
                <input type="text" maxlength="500" placeholder="What changed (optional)" aria-label="Version note"
                    prop:value=move || note.get() on:input=move |ev| note.set(event_target_value(&ev))/>
                <button type="submit" title="Publishes the saved draft"
                    disabled=move || !ed.writable.get() || publish.pending().get() || ed.save.get() != SaveState::Saved>"Publish"</button>
            </form>
            <Show when=move || !ed.def.with(|d| d.nodes.iter().any(|n| n.kind == NodeKind::MessageTrigger))
                fallback=|| view! {
                    <span class="small muted" data-testid="graph-note">
                        "A conversation graph answers customers' messages: publish it, choose it for a "
                        "channel on the " <a href="/workflows">"Workflows"</a> " page, and write to it "
                        "in the playground."
                    </span>
                }>
                <button type="button" on:click=move |_| running.update(|r| *r = !*r)
                    aria-expanded=move || running.get().to_string()>"Run…"</button>
            </Show>
            {move || ed.next_run.get().map(|t| view! {
                <span class="small muted" data-testid="next-run">
                    {format!("Next scheduled run: {}", super::widgets::fmt_time(&t))}
                </span>
            })}
        </div>
        {move || match publish.value().get() {
            Some(Err(e)) => Some(view! { <p class="notice error" role="alert">{e.user_message()}</p> }.into_any()),
            Some(Ok(v)) => Some(view! { <p class="notice ok" role="status">{format!("Published version {}.", v.number)}</p> }.into_any()),
            None => None,
        }}
        <Show when=move || running.get()>
            <form class="card stack" on:submit=do_run aria-label="Start a run">
                <label>
                    "Input (JSON, read as trigger.*)"
                    <textarea rows="4" prop:value=move || input.get()
                        on:input=move |ev| input.set(event_target_value(&ev))></textarea>
                </label>
                <p class="small muted">"Runs the newest published version."</p>
                {move || input_error.get().map(|e| view! { <p class="notice error" role="alert">{e}</p> })}
                {move || match start.value().get() {
                    Some(Err(e)) => Some(view! { <p class="notice error" role="alert">{e.user_message()}</p> }),
                    _ => None,
                }}
                <div class="actions">
                    <button type="submit" disabled=move || start.pending().get()>"Start the run"</button>
                </div>
            </form>
        </Show>
    }
}

/// A run or a version diff drawn on the canvas, with the way back to the draft.
#[component]
fn Overlays(ed: Ed) -> impl IntoView {
    view! {
        {move || ed.trace.get().map(|d| view! { <super::workflow_runs::TraceSummary ed detail=d/> })}
        {move || ed.diff.get().map(|d| {
            let removed = d.removed_nodes.join(", ");
            view! {
                <div class="notice" role="status" data-testid="diff-summary">
                    {format!(
                        "Version {} → {}: {} added, {} changed, {} moved, {} removed{}. ",
                        d.from,
                        if d.to_draft { "the draft".to_string() } else { format!("version {}", d.to) },
                        d.added_nodes.len(), d.changed_nodes.len(), d.moved_nodes.len(),
                        d.removed_nodes.len(),
                        if removed.is_empty() { String::new() } else { format!(" ({removed})") },
                    )}
                    <button type="button" class="secondary" on:click=move |_| ed.diff.set(None)>"Hide"</button>
                </div>
            }
        })}
    }
}

#[component]
fn Palette(ed: Ed) -> impl IntoView {
    view! {
        <aside class="wf-palette" aria-label="Steps">
            <h2 class="small">"Steps"</h2>
            <ul>
                {NodeKind::ALL
                    .iter()
                    .map(|&kind| {
                        view! {
                            <li hidden=move || !ed.def.with(|d| model::offered(d, kind))>
                                <button type="button" class="wf-palette-item" draggable="true"
                                    data-kind=kind.as_str()
                                    title=kind.describe()
                                    disabled=move || !ed.writable.get()
                                    on:dragstart=move |ev: leptos::ev::DragEvent| {
                                        #[cfg(feature = "hydrate")]
                                        if let Some(dt) = ev.data_transfer() {
                                            let _ = dt.set_data("application/x-workflow-step", kind.as_str());
                                            dt.set_effect_allowed("copy");
                                        }
                                        #[cfg(not(feature = "hydrate"))]
                                        let _ = ev;
                                    }
                                    on:click=move |_| ed.add(kind, ed.free_spot())
                                >
                                    <strong>{model::kind_label(kind)}</strong>
                                    <span class="small muted">{kind.describe()}</span>
                                </button>
                            </li>
                        }
                    })
                    .collect_view()}
            </ul>
        </aside>
    }
}

#[component]
fn Canvas(ed: Ed) -> impl IntoView {
    let ids = Memo::new(move |_| {
        ed.def
            .with(|d| d.nodes.iter().map(|n| n.id.clone()).collect::<Vec<_>>())
    });
    let positions = Memo::new(move |_| {
        ed.def.with(|d| {
            d.nodes
                .iter()
                .map(|n| (n.id.clone(), (n.position, n.ports())))
                .collect::<HashMap<_, _>>()
        })
    });
    let problems = Memo::new(move |_| {
        ed.problems.with(|ps| {
            let mut by_node: HashMap<String, Vec<String>> = HashMap::new();
            for p in ps {
                if let Some(n) = &p.node {
                    by_node
                        .entry(n.clone())
                        .or_default()
                        .push(p.message.clone());
                }
            }
            by_node
        })
    });
    let traces = Memo::new(move |_| {
        ed.trace.with(|t| {
            let mut by_node: HashMap<String, NodeTrace> = HashMap::new();
            if let Some(t) = t {
                // A Parallel step's branches ran as runs of their own: their steps are this
                // run's nodes too.
                let branches = t.branches.iter();
                for s in t
                    .steps
                    .iter()
                    .chain(branches.clone().flat_map(|b| &b.steps))
                {
                    let e = by_node.entry(s.node.clone()).or_insert(NodeTrace {
                        status: s.status,
                        tries: 0,
                        duration_ms: 0,
                        undo: None,
                    });
                    e.status = s.status;
                    e.tries += 1;
                    e.duration_ms += s.duration_ms.unwrap_or(0);
                }
                for c in t
                    .compensations
                    .iter()
                    .chain(branches.flat_map(|b| &b.compensations))
                {
                    if let Some(e) = by_node.get_mut(&c.node) {
                        e.undo = Some(c.status);
                    }
                }
            }
            by_node
        })
    });
    // Styles go through the CSSOM (`style:`), which the page's CSP allows; a `style`
    // attribute it would refuse.
    let world = move || {
        let c = ed.camera.get();
        format!("translate({}px, {}px) scale({})", c.x, c.y, c.zoom)
    };
    let on_down = move |ev: leptos::ev::PointerEvent| {
        if ev.button() != 0 {
            return;
        }
        let at = client(&ev);
        if ed.connecting.get_untracked().is_some() {
            ed.connecting.set(None);
            ed.say.set("Not connected.".into());
            return;
        }
        if ev.shift_key() {
            let p = ed.canvas_point(at);
            ed.gesture.set(Some(Gesture::Select { start: p, end: p }));
        } else {
            ed.selection.set(HashSet::new());
            ed.gesture.set(Some(Gesture::Pan {
                start: at,
                from: ed.camera.get_untracked(),
            }));
        }
    };
    let on_move = move |ev: leptos::ev::PointerEvent| {
        let at = client(&ev);
        if ed.connecting.get_untracked().is_some() {
            ed.pointer.set(ed.canvas_point(at));
        }
        let Some(g) = ed.gesture.get_untracked() else {
            return;
        };
        let zoom = ed.camera.get_untracked().zoom;
        match g {
            Gesture::Move { start, ids, .. } => ed.gesture.set(Some(Gesture::Move {
                start,
                ids,
                dx: (at.0 - start.0) / zoom,
                dy: (at.1 - start.1) / zoom,
            })),
            Gesture::Pan { start, from } => ed.camera.set(Camera {
                x: from.x + at.0 - start.0,
                y: from.y + at.1 - start.1,
                ..from
            }),
            Gesture::Select { start, .. } => ed.gesture.set(Some(Gesture::Select {
                start,
                end: ed.canvas_point(at),
            })),
        }
    };
    let on_wheel = move |ev: leptos::ev::WheelEvent| {
        ev.prevent_default();
        let at = client(&ev);
        let origin = ed.origin();
        let factor = if ev.delta_y() < 0.0 { 1.1 } else { 1.0 / 1.1 };
        ed.zoom(factor, (at.0 - origin.0, at.1 - origin.1));
    };
    let on_keydown = move |ev: leptos::ev::KeyboardEvent| {
        if typing(&ev) {
            return;
        }
        let ctrl = ev.ctrl_key() || ev.meta_key();
        match ev.key().as_str() {
            "z" | "Z" if ctrl && ev.shift_key() => ed.redo(),
            "z" if ctrl => ed.undo(),
            "y" if ctrl => ed.redo(),
            "a" if ctrl => {
                ed.selection.set(
                    ed.def
                        .with_untracked(|d| d.nodes.iter().map(|n| n.id.clone()).collect()),
                );
            }
            "Delete" | "Backspace" => ed.delete_selection(),
            "Escape" => {
                ed.connecting.set(None);
                ed.selection.set(HashSet::new());
                ed.panel.set(None);
                return;
            }
            _ => return,
        }
        ev.prevent_default();
    };
    // Ctrl+C / Ctrl+V: the system clipboard carries the nodes as JSON.
    let on_copy = move |ev: leptos::ev::ClipboardEvent| {
        if let Some(json) = ed.copy_selection() {
            #[cfg(feature = "hydrate")]
            if let Some(data) = ev.clipboard_data() {
                let _ = data.set_data("text/plain", &json);
                ev.prevent_default();
            }
            #[cfg(not(feature = "hydrate"))]
            let _ = &ev;
            clipboard::put(json);
        }
    };
    let on_paste = move |ev: leptos::ev::ClipboardEvent| {
        #[cfg(feature = "hydrate")]
        {
            let text = ev
                .clipboard_data()
                .and_then(|d| d.get_data("text/plain").ok());
            if let Some(text) = text.filter(|t| !t.trim().is_empty()) {
                ev.prevent_default();
                ed.paste(&text);
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = ev;
    };
    let on_drop = move |ev: leptos::ev::DragEvent| {
        ev.prevent_default();
        #[cfg(feature = "hydrate")]
        {
            let kind = ev
                .data_transfer()
                .and_then(|dt| dt.get_data("application/x-workflow-step").ok())
                .and_then(|k| NodeKind::parse(&k));
            if let Some(kind) = kind {
                let (x, y) = ed.canvas_point(client(&ev));
                ed.add(
                    kind,
                    Position {
                        x: (x - NODE_W / 2.0).max(0.0).round(),
                        y: (y - NODE_H / 2.0).max(0.0).round(),
                    },
                );
            }
        }
    };
    let hint = move || {
        ed.connecting.get().map(|(from, port)| {
            view! {
                <p class="wf-hint" role="status">
                    {format!("Connecting {from} ({port}): click the next step, or focus it and press Enter. Esc stops.")}
                </p>
            }
        })
    };
    view! {
        <div class="wf-canvas" node_ref=ed.canvas tabindex="0"
            aria-label="Canvas: Tab moves between steps; arrows move a step; Enter opens it; Delete removes; Ctrl+Z undoes"
            data-testid="canvas"
            on:pointerdown=on_down
            on:pointermove=on_move
            on:pointerup=move |_| ed.finish_gesture()
            on:pointerleave=move |_| ed.finish_gesture()
            on:wheel=on_wheel
            on:keydown=on_keydown
            on:copy=on_copy
            on:paste=on_paste
            on:dragover=move |ev: leptos::ev::DragEvent| ev.prevent_default()
            on:drop=on_drop
        >
            {hint}
            <div class="wf-world" style:transform=world>
                <svg class="wf-edges" width="1" height="1" aria-hidden="true">
                    <Edges ed positions/>
                    <PendingEdge ed positions/>
                    <SelectBox ed/>
                </svg>
                <For each=move || ids.get() key=|id| id.clone() let:id>
                    <NodeBox ed id problems traces/>
                </For>
            </div>
            <Minimap ed/>
            {move || ed.def.with(|d| d.nodes.is_empty()).then(|| view! {
                <p class="wf-empty">"Drag a step here from the list, or click one to add it."</p>
            })}
        </div>
    }
}

/// Where a node is drawn: its position plus the move under way, if it is moving.
fn drawn_at(ed: Ed, id: &str, at: Position) -> Position {
    ed.gesture.with(|g| match g {
        Some(Gesture::Move { ids, dx, dy, .. }) if ids.contains(id) => Position {
            x: (at.x + dx).max(0.0),
            y: (at.y + dy).max(0.0),
        },
        _ => at,
    })
}

/// Where the `index`-th of `count` exits leaves a node's right side.
fn exit_y(index: usize, count: usize) -> f64 {
    model::node_height(count) * (index as f64 + 1.0) / (count as f64 + 1.0)
}

fn curve(a: (f64, f64), b: (f64, f64)) -> String {
    let bend = ((b.0 - a.0).abs() / 2.0).max(40.0);
    format!(
        "M {} {} C {} {}, {} {}, {} {}",
        a.0,
        a.1,
        a.0 + bend,
        a.1,
        b.0 - bend,
        b.1,
        b.0,
        b.1
    )
}

/// Each node's place and exits.
type Positions = Memo<HashMap<String, (Position, Vec<String>)>>;

#[component]
fn Edges(ed: Ed, positions: Positions) -> impl IntoView {
    let keys = Memo::new(move |_| {
        ed.def.with(|d| {
            d.edges
                .iter()
                .map(|e| (e.from.clone(), e.port.clone(), e.to.clone()))
                .collect::<Vec<_>>()
        })
    });
    view! {
        <For each=move || keys.get() key=|k| k.clone() let:edge>
            {
                let (from, port, to) = edge;
                let label = (port != "out").then(|| port.clone());
                let geometry = {
                    let (from, port, to) = (from.clone(), port.clone(), to.clone());
                    Memo::new(move |_| {
                        positions.with(|p| {
                            let (Some((a, ports)), Some((b, into))) = (p.get(&from), p.get(&to)) else {
                                return None;
                            };
                            let a = drawn_at(ed, &from, *a);
                            let b = drawn_at(ed, &to, *b);
                            let i = ports.iter().position(|x| *x == port).unwrap_or(0);
                            let middle = model::node_height(into.len()) / 2.0;
                            Some(((a.x + NODE_W, a.y + exit_y(i, ports.len())), (b.x, b.y + middle)))
                        })
                    })
                };
                let class = if port == "error" { "wf-edge error" } else { "wf-edge" };
                view! {
                    <path class=class d=move || geometry.get().map(|(a, b)| curve(a, b)).unwrap_or_default()/>
                    {label.map(|label| view! {
                        <text class="wf-edge-label"
                            x=move || geometry.get().map(|(a, b)| (a.0 + b.0) / 2.0).unwrap_or_default()
                            y=move || geometry.get().map(|(a, b)| (a.1 + b.1) / 2.0 - 4.0).unwrap_or_default()
                        >{label}</text>
                    })}
                }
            }
        </For>
    }
}

/// The line from an exit being connected to the pointer.
#[component]
fn PendingEdge(ed: Ed, positions: Positions) -> impl IntoView {
    move || {
        let (from, port) = ed.connecting.get()?;
        let (a, ports) = positions.with(|p| p.get(&from).cloned())?;
        let i = ports.iter().position(|x| *x == port).unwrap_or(0);
        let start = (a.x + NODE_W, a.y + exit_y(i, ports.len()));
        Some(view! { <path class="wf-edge pending" d=move || curve(start, ed.pointer.get())/> })
    }
}

#[component]
fn SelectBox(ed: Ed) -> impl IntoView {
    move || {
        ed.gesture.with(|g| match g {
            Some(Gesture::Select { start, end }) => Some(view! {
                <rect class="wf-marquee"
                    x=start.0.min(end.0) y=start.1.min(end.1)
                    width=(end.0 - start.0).abs() height=(end.1 - start.1).abs()/>
            }),
            _ => None,
        })
    }
}

#[component]
fn NodeBox(
    ed: Ed,
    id: String,
    problems: Memo<HashMap<String, Vec<String>>>,
    traces: Memo<HashMap<String, NodeTrace>>,
) -> impl IntoView {
    let node = {
        let id = id.clone();
        Memo::new(move |_| ed.def.with(|d| model::node(d, &id).cloned()))
    };
    let selected = {
        let id = id.clone();
        move || ed.selection.with(|s| s.contains(&id))
    };
    let my_problems = {
        let id = id.clone();
        Memo::new(move |_| problems.with(|p| p.get(&id).cloned().unwrap_or_default()))
    };
    let trace = {
        let id = id.clone();
        Memo::new(move |_| traces.with(|t| t.get(&id).cloned()))
    };
    let diff_class = {
        let id = id.clone();
        move || {
            ed.diff.with(|d| {
                let d = d.as_ref()?;
                if d.added_nodes.contains(&id) {
                    Some("wf-diff-added")
                } else if d.changed_nodes.iter().any(|c| c.node == id) {
                    Some("wf-diff-changed")
                } else if d.moved_nodes.contains(&id) {
                    Some("wf-diff-moved")
                } else {
                    None
                }
            })
        }
    };
    let at = {
        let id = id.clone();
        Memo::new(move |_| {
            let at = node
                .with(|n| n.as_ref().map(|n| n.position))
                .unwrap_or_default();
            drawn_at(ed, &id, at)
        })
    };
    let class = move || {
        let mut c = String::from("wf-node");
        if selected() {
            c.push_str(" selected");
        }
        if !my_problems.with(Vec::is_empty) {
            c.push_str(" has-problem");
        }
        if let Some(t) = trace.get() {
            c.push_str(" ran-");
            c.push_str(t.status.as_str());
        }
        if let Some(d) = diff_class() {
            c.push(' ');
            c.push_str(d);
        }
        c
    };
    let down = {
        let id = id.clone();
        move |ev: leptos::ev::PointerEvent| {
            if ev.button() != 0 {
                return;
            }
            ev.stop_propagation();
            if ed.connecting.get_untracked().is_some() {
                return;
            }
            if ev.shift_key() || ev.ctrl_key() || ev.meta_key() {
                ed.selection.update(|s| {
                    if !s.remove(&id) {
                        s.insert(id.clone());
                    }
                });
            } else if !ed.selection.with_untracked(|s| s.contains(&id)) {
                ed.selection.set(HashSet::from([id.clone()]));
            }
            ed.gesture.set(Some(Gesture::Move {
                start: client(&ev),
                ids: ed.selection.get_untracked(),
                dx: 0.0,
                dy: 0.0,
            }));
        }
    };
    let up = {
        let id = id.clone();
        move |ev: leptos::ev::PointerEvent| {
            if let Some((from, port)) = ed.connecting.get_untracked() {
                ev.stop_propagation();
                if from != id {
                    ed.connect(&from, &port, &id);
                }
                return;
            }
            let clicked = matches!(
                ed.gesture.get_untracked(),
                Some(Gesture::Move { dx, dy, .. }) if dx.abs() + dy.abs() < 2.0
            );
            if clicked && !ev.shift_key() {
                ed.panel.set(Some(id.clone()));
            }
        }
    };
    let key = {
        let id = id.clone();
        move |ev: leptos::ev::KeyboardEvent| {
            let step = if ev.shift_key() { NUDGE * 5.0 } else { NUDGE };
            match ev.key().as_str() {
                "ArrowLeft" => ed.nudge(&id, -step, 0.0),
                "ArrowRight" => ed.nudge(&id, step, 0.0),
                "ArrowUp" => ed.nudge(&id, 0.0, -step),
                "ArrowDown" => ed.nudge(&id, 0.0, step),
                "Enter" => match ed.connecting.get_untracked() {
                    Some((from, port)) => ed.connect(&from, &port, &id),
                    None => {
                        ed.selection.set(HashSet::from([id.clone()]));
                        ed.panel.set(Some(id.clone()));
                    }
                },
                // The selection goes when the focused step is in it; else the focused step alone.
                "Delete" | "Backspace" => {
                    if !ed.selection.with_untracked(|s| s.contains(&id)) {
                        ed.selection.set(HashSet::from([id.clone()]));
                    }
                    ed.delete_selection();
                }
                " " => ed.selection.update(|s| {
                    if !s.remove(&id) {
                        s.insert(id.clone());
                    }
                }),
                _ => return,
            }
            ev.prevent_default();
            ev.stop_propagation();
        }
    };
    let label = move || {
        node.with(|n| {
            n.as_ref().map(|n| {
                let problems = my_problems.with(Vec::len);
                format!(
                    "{}, {}{}",
                    n.name,
                    model::kind_label(n.kind),
                    if problems > 0 {
                        format!(", {problems} problem(s)")
                    } else {
                        String::new()
                    }
                )
            })
        })
    };
    let id_for_ports = id.clone();
    view! {
        <div class=class data-node=id.clone() tabindex="0" role="group"
            style:left=move || format!("{}px", at.get().x) style:top=move || format!("{}px", at.get().y)
            style:height=move || format!("{}px", node.with(|n| n.as_ref().map_or(NODE_H, model::height_of)))
            aria-label=label
            on:pointerdown=down on:pointerup=up on:keydown=key
        >
            {move || node.with(|n| n.as_ref().is_some_and(|n| !n.kind.is_trigger()))
                .then(|| view! { <span class="wf-in" aria-hidden="true"></span> })}
            <div class="wf-title">{move || node.with(|n| n.as_ref().map(|n| n.name.clone()))}</div>
            <div class="wf-kind">
                {move || node.with(|n| n.as_ref().map(|n| format!("{} · {}", model::kind_label(n.kind), n.id)))}
            </div>
            {move || (!my_problems.with(Vec::is_empty)).then(|| view! {
                <span class="wf-badge problem" title=my_problems.get().join("\n")>
                    {format!("{} problem(s)", my_problems.with(Vec::len))}
                </span>
            })}
            {move || trace.get().map(|t| view! {
                <span class="wf-badge trace" data-testid="trace-badge">{trace_text(&t)}</span>
            })}
            {move || {
                let ports = node.with(|n| n.as_ref().map(|n| n.ports()))?;
                let id = id_for_ports.clone();
                Some(ports.iter().enumerate().map(|(i, port)| {
                    let port = port.clone();
                    let top = exit_y(i, ports.len()) - 9.0;
                    let (id2, port2) = (id.clone(), port.clone());
                    let active = move || ed.connecting.with(|c| c.as_ref().is_some_and(|(f, p)| *f == id2 && *p == port2));
                    let (id3, port3) = (id.clone(), port.clone());
                    let start = move |ev: leptos::ev::PointerEvent| {
                        ev.stop_propagation();
                        ed.pointer.set(ed.canvas_point(client(&ev)));
                        ed.connecting.set(Some((id3.clone(), port3.clone())));
                    };
                    let (id4, port4) = (id.clone(), port.clone());
                    let key = move |ev: leptos::ev::KeyboardEvent| {
                        if ev.key() == "Enter" || ev.key() == " " {
                            ev.prevent_default();
                            ev.stop_propagation();
                            ed.connecting.set(Some((id4.clone(), port4.clone())));
                            ed.say.set(format!("Connecting the {port4} exit: focus the next step and press Enter."));
                        }
                    };
                    view! {
                        <button type="button" class="wf-port" class:active=active
                            style:top=format!("{top}px")
                            data-port=port.clone()
                            aria-label=format!("Connect the {port} exit of {id}")
                            on:pointerdown=start on:keydown=key
                        >{(port != "out").then(|| port.clone())}</button>
                    }
                }).collect_view())
            }}
        </div>
    }
}

fn trace_text(t: &NodeTrace) -> String {
    let status = match t.status {
        StepStatus::Succeeded => "done",
        StepStatus::Failed => "failed",
        StepStatus::Running => "running",
        StepStatus::Suspended => "waiting",
    };
    let tries = if t.tries > 1 {
        format!(", {} tries", t.tries)
    } else {
        String::new()
    };
    let undo = match t.undo {
        Some(CompensationStatus::Done) => ", undone",
        Some(CompensationStatus::Failed) => ", undo failed",
        Some(CompensationStatus::NotCompensable) => ", not undoable",
        Some(CompensationStatus::Skipped) => ", nothing to undo",
        _ => "",
    };
    format!("{status} · {} ms{tries}{undo}", t.duration_ms)
}

#[component]
fn Minimap(ed: Ed) -> impl IntoView {
    const W: f64 = 180.0;
    const H: f64 = 110.0;
    let frame = Memo::new(move |_| {
        let (l, t, r, b) = ed.def.with(model::bounds);
        let scale = (W / (r - l + 200.0)).min(H / (b - t + 200.0));
        (l - 100.0, t - 100.0, scale)
    });
    let view_rect = move || {
        let (l, t, s) = frame.get();
        let c = ed.camera.get();
        let (w, h) = ed.size();
        (
            (-c.x / c.zoom - l) * s,
            (-c.y / c.zoom - t) * s,
            w / c.zoom * s,
            h / c.zoom * s,
        )
    };
    let jump = move |ev: leptos::ev::MouseEvent| {
        ev.stop_propagation();
        #[cfg(feature = "hydrate")]
        {
            use leptos::wasm_bindgen::JsCast;
            let Some(el) = ev
                .current_target()
                .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            else {
                return;
            };
            let r = el.get_bounding_client_rect();
            let (l, t, s) = frame.get_untracked();
            let wx = (f64::from(ev.client_x()) - r.left()) / s + l;
            let wy = (f64::from(ev.client_y()) - r.top()) / s + t;
            let (w, h) = ed.size();
            ed.camera.update(|c| {
                c.x = w / 2.0 - wx * c.zoom;
                c.y = h / 2.0 - wy * c.zoom;
            });
        }
    };
    view! {
        <svg class="wf-minimap" width=W height=H aria-hidden="true"
            on:pointerdown=|ev: leptos::ev::PointerEvent| ev.stop_propagation()
            on:click=jump>
            {move || {
                let (l, t, s) = frame.get();
                ed.def.with(|d| d.nodes.iter().map(|n| view! {
                    <rect class="wf-mini-node" x=(n.position.x - l) * s y=(n.position.y - t) * s
                        width=NODE_W * s height=model::height_of(n) * s/>
                }).collect_view())
            }}
            <rect class="wf-mini-view"
                x=move || view_rect().0 y=move || view_rect().1
                width=move || view_rect().2 height=move || view_rect().3/>
        </svg>
    }
}

/// The open node's form: name, configuration, exits, retries and failure handling.
#[component]
fn Panel(ed: Ed) -> impl IntoView {
    move || {
        let id = ed.panel.get()?;
        Some(view! { <NodeForm ed id/> })
    }
}

#[component]
fn NodeForm(ed: Ed, id: String) -> impl IntoView {
    let node = {
        let id = id.clone();
        Memo::new(move |_| ed.def.with(|d| model::node(d, &id).cloned()))
    };
    let kind = node
        .get_untracked()
        .map(|n| n.kind)
        .unwrap_or(NodeKind::Set);
    let last_field = RwSignal::new(None::<&'static str>);
    let field_error = RwSignal::new(None::<String>);
    let set_node = {
        let id = id.clone();
        move |change: Box<dyn FnOnce(&mut crate::types::WorkflowNode)>| {
            ed.edit(|d| {
                if let Some(n) = model::node_mut(d, &id) {
                    change(n);
                }
            });
        }
    };
    let set_config = {
        let set_node = set_node.clone();
        move |f: Field, text: String| {
            let config = node
                .with_untracked(|n| n.as_ref().map(|n| n.config.clone()))
                .unwrap_or_default();
            match model::set_field(&config, &f, &text) {
                Ok(c) => {
                    field_error.set(None);
                    set_node(Box::new(move |n| n.config = c));
                }
                Err(e) => field_error.set(Some(e)),
            }
        }
    };
    let field_views = model::fields(kind)
        .iter()
        .map(|&f| {
            let value = move || node.with(|n| n.as_ref().map(|n| model::field_text(&n.config, &f)).unwrap_or_default());
            let set_config = set_config.clone();
            let on_change = move |ev: leptos::ev::Event| set_config(f, event_target_value(&ev));
            let input_id = format!("wf-field-{}", f.key.replace('.', "-"));
            let control = match f.kind {
                FieldKind::Text | FieldKind::Map => view! {
                    <textarea id=input_id.clone() rows="3" prop:value=value on:change=on_change
                        on:focus=move |_| last_field.set(Some(f.key))></textarea>
                }
                    .into_any(),
                FieldKind::Choice(options) => view! {
                    <select id=input_id.clone() on:change=on_change>
                        <option value="">"—"</option>
                        {options.iter().map(|o| view! { <option value=*o selected=move || value() == *o>{*o}</option> }).collect_view()}
                    </select>
                }
                    .into_any(),
                FieldKind::Number => view! {
                    <input id=input_id.clone() type="number" min="0" prop:value=value on:change=on_change/>
                }
                    .into_any(),
                FieldKind::Line => view! {
                    <input id=input_id.clone() type="text" prop:value=value on:change=on_change
                        on:focus=move |_| last_field.set(Some(f.key))/>
                }
                    .into_any(),
            };
            view! {
                <label for=input_id>{f.label}</label>
                {control}
                {(!f.help.is_empty()).then(|| view! { <span class="small muted">{f.help}</span> })}
            }
        })
        .collect_view();
    // The variable picker: inserts `{{ name }}` into the text field last focused.
    let variables = {
        let id = id.clone();
        Memo::new(move |_| ed.def.with(|d| model::variables(d, &id)))
    };
    // An HTTP request may also send the tenant's secrets.
    let secret_names = RwSignal::new(Vec::<String>::new());
    if kind == NodeKind::Http {
        leptos::task::spawn_local(async move {
            if let Ok(list) = list_workflow_secrets().await {
                secret_names.try_set(
                    list.into_iter()
                        .map(|s| format!("secrets.{}", s.name))
                        .collect(),
                );
            }
        });
    }
    let insert = {
        let set_config = set_config.clone();
        move |ev: leptos::ev::Event| {
            let name = event_target_value(&ev);
            let Some(key) = last_field.get_untracked() else {
                ed.say.set("Click into a text field first.".into());
                return;
            };
            if let Some(f) = model::fields(kind).iter().find(|f| f.key == key) {
                let mut text = node
                    .with_untracked(|n| n.as_ref().map(|n| model::field_text(&n.config, f)))
                    .unwrap_or_default();
                text.push_str(&format!("{{{{ {name} }}}}"));
                set_config(*f, text);
                ed.say.set(format!("Inserted {name} into {}.", f.label));
            }
        }
    };
    // A classifier's classes and a switch's cases are exits too, so the list follows the form.
    let ports = Memo::new(move |_| {
        node.with(|n| n.as_ref().map(|n| n.ports()))
            .unwrap_or_default()
    });
    let exits = {
        let id = id.clone();
        move || {
            ports
                .get()
                .into_iter()
                .map(|port| {
                    let (id, id2, from) = (id.clone(), id.clone(), id.clone());
                    let port2 = port.clone();
                    let current = move || {
                        ed.def.with(|d| {
                            d.edges
                                .iter()
                                .find(|e| e.from == id && e.port == port2)
                                .map(|e| e.to.clone())
                                .unwrap_or_default()
                        })
                    };
                    let targets = move || {
                        ed.def.with(|d| {
                            d.nodes
                                .iter()
                                .filter(|n| n.id != id2 && !n.kind.is_trigger())
                                .map(|n| (n.id.clone(), format!("{} ({})", n.name, n.id)))
                                .collect::<Vec<_>>()
                        })
                    };
                    let select_id = format!("wf-exit-{port}");
                    let label = format!("Then ({port})");
                    let change = move |ev: leptos::ev::Event| {
                        let to = event_target_value(&ev);
                        if to.is_empty() {
                            ed.edit(|d| model::disconnect(d, &from, &port));
                        } else {
                            ed.connect(&from, &port, &to);
                        }
                    };
                    view! {
                        <label for=select_id.clone()>{label}</label>
                        <select id=select_id on:change=change>
                            <option value="">"— the run ends here —"</option>
                            {move || {
                                let current = current();
                                targets().into_iter().map(|(v, l)| {
                                    let selected = v == current;
                                    view! { <option value=v selected=selected>{l}</option> }
                                }).collect_view()
                            }}
                        </select>
                    }
                })
                .collect_view()
        }
    };
    let name_change = {
        let set_node = set_node.clone();
        move |ev: leptos::ev::Event| {
            let name = event_target_value(&ev);
            set_node(Box::new(move |n| n.name = name));
        }
    };
    let retry = {
        let set_node = set_node.clone();
        move |which: &'static str| {
            let set_node = set_node.clone();
            move |ev: leptos::ev::Event| {
                let Ok(v) = event_target_value(&ev).trim().parse::<u64>() else {
                    field_error.set(Some("Retries and the timeout are whole numbers.".into()));
                    return;
                };
                field_error.set(None);
                set_node(Box::new(move |n| match which {
                    "attempts" => n.retry.attempts = v.clamp(1, 1000) as u32,
                    "initial" => n.retry.initial_ms = v,
                    "max" => n.retry.max_ms = v,
                    _ => n.timeout_ms = (v > 0).then_some(v),
                }));
            }
        }
    };
    let on_error_value = move || {
        node.with(|n| match n.as_ref().map(|n| &n.on_error) {
            Some(OnError::Continue { .. }) => "continue",
            Some(OnError::Branch) => "branch",
            _ => "fail",
        })
    };
    let on_error = {
        let set_node = set_node.clone();
        move |ev: leptos::ev::Event| {
            let choice = event_target_value(&ev);
            set_node(Box::new(move |n| {
                n.on_error = match choice.as_str() {
                    "continue" => OnError::Continue {
                        value: serde_json::Value::Null,
                    },
                    "branch" => OnError::Branch,
                    _ => OnError::Fail,
                }
            }));
        }
    };
    let number = move |get: fn(&crate::types::WorkflowNode) -> u64| {
        move || node.with(|n| n.as_ref().map(get).unwrap_or_default().to_string())
    };
    let node_problems = {
        let id = id.clone();
        move || {
            ed.problems.with(|ps| {
                ps.iter()
                    .filter(|p| p.node.as_deref() == Some(id.as_str()))
                    .map(|p| p.message.clone())
                    .collect::<Vec<_>>()
            })
        }
    };
    let close = move |_| ed.panel.set(None);
    let delete = {
        let id = id.clone();
        move |_| {
            ed.selection.set(HashSet::from([id.clone()]));
            ed.delete_selection();
        }
    };
    let has_error_port = kind.ports().contains(&"error");
    view! {
        <aside class="wf-panel" aria-label=format!("Step {id}") data-testid="node-panel">
            <div class="wf-panel-head">
                <h2>{model::kind_label(kind)}</h2>
                <button type="button" class="secondary" on:click=close aria-label="Close the step's form">"×"</button>
            </div>
            <p class="small muted">{kind.describe()}" · id "<code>{id.clone()}</code></p>
            <ul class="wf-problems">
                {move || node_problems().into_iter().map(|p| view! { <li class="error-text">{p}</li> }).collect_view()}
            </ul>
            <div class="wf-form">
                <label for="wf-name">"Step name"</label>
                <input id="wf-name" type="text" maxlength="100"
                    prop:value=move || node.with(|n| n.as_ref().map(|n| n.name.clone()).unwrap_or_default())
                    on:change=name_change/>
                {field_views}
            </div>
            {(!model::fields(kind).is_empty()).then(|| view! {
                <label class="wf-picker">
                    "Insert a value"
                    <select on:change=insert prop:value="">
                        <option value="">"— choose —"</option>
                        {move || variables.get().into_iter().chain(secret_names.get()).map(|v| { let label = v.clone(); view! { <option value=v>{label}</option> } }).collect_view()}
                    </select>
                </label>
            })}
            {move || field_error.get().map(|e| view! { <p class="notice error" role="alert">{e}</p> })}
            {(!kind.ports().is_empty()).then(|| view! {
                <h3 class="small">"Next steps"</h3>
                <div class="wf-form">{exits}</div>
            })}
            {(!kind.is_trigger()).then(|| view! {
                <details>
                    <summary>"Retries, timeout and failure"</summary>
                    <div class="wf-form">
                        <label for="wf-attempts">"Tries"</label>
                        <input id="wf-attempts" type="number" min="1" prop:value=number(|n| u64::from(n.retry.attempts)) on:change=retry("attempts")/>
                        <label for="wf-initial">"First pause (ms)"</label>
                        <input id="wf-initial" type="number" min="1" prop:value=number(|n| n.retry.initial_ms) on:change=retry("initial")/>
                        <label for="wf-max">"Longest pause (ms)"</label>
                        <input id="wf-max" type="number" min="1" prop:value=number(|n| n.retry.max_ms) on:change=retry("max")/>
                        <label for="wf-timeout">"Timeout (ms, 0: 30 s)"</label>
                        <input id="wf-timeout" type="number" min="0" prop:value=number(|n| n.timeout_ms.unwrap_or(0)) on:change=retry("timeout")/>
                        <label for="wf-on-error">"When it fails for good"</label>
                        <select id="wf-on-error" on:change=on_error>
                            <option value="fail" selected=move || on_error_value() == "fail">"Fail the run (undo what was done)"</option>
                            <option value="continue" selected=move || on_error_value() == "continue">"Go on without its output"</option>
                            {has_error_port.then(|| view! {
                                <option value="branch" selected=move || on_error_value() == "branch">"Take the error exit"</option>
                            })}
                        </select>
                    </div>
                </details>
            })}
            {(kind == NodeKind::WebhookTrigger).then(|| view! { <WebhookSecret ed/> })}
            <TestStep ed id=id.clone()/>
            <div class="actions">
                <button type="button" class="danger" on:click=delete disabled=move || !ed.writable.get()>"Delete this step"</button>
            </div>
        </aside>
    }
}

/// A webhook trigger's URL and secret: a new secret is shown once, with how to sign.
#[component]
fn WebhookSecret(ed: Ed) -> impl IntoView {
    let rotate = ServerAction::<RotateWorkflowSecret>::new();
    Effect::new(move |_| {
        if let Some(Ok(_)) = rotate.value().get() {
            ed.webhook.update(|w| w.1 = true);
        }
    });
    view! {
        <section class="wf-webhook stack" aria-labelledby="wf-webhook-heading" data-testid="webhook-secret">
            <h3 id="wf-webhook-heading" class="small">"Webhook"</h3>
            <p class="small">"Once published with this trigger, a signed POST to"</p>
            <code class="secret">{move || ed.webhook.get().0}</code>
            <p class="small muted">
                "starts a run with its JSON body as " <code>"trigger"</code> ". Send "
                <code>"X-Webhook-Timestamp"</code> " (Unix seconds) and "
                <code>"X-Webhook-Signature: sha256=<hex>"</code> ", the HMAC-SHA256 of "
                <code>"{timestamp}.{raw body}"</code> " under the secret; "
                <code>"X-Webhook-Id"</code> " makes a repeat start no second run. Unsigned, wrongly signed or older than five minutes, a request is refused."
            </p>
            {move || match rotate.value().get() {
                Some(Ok(hook)) => view! {
                    <div class="notice ok" role="status">
                        <p>"Secret — shown only now:"</p>
                        <code class="secret" data-testid="webhook-secret-value">{hook.secret}</code>
                    </div>
                }.into_any(),
                Some(Err(e)) => view! { <p class="notice error" role="alert">{e.user_message()}</p> }.into_any(),
                None => view! {
                    <p class="small">{move || if ed.webhook.get().1 { "A secret is set." } else { "No secret yet: make one to take requests." }}</p>
                }.into_any(),
            }}
            <button type="button" class="secondary"
                disabled=move || !ed.writable.get() || rotate.pending().get()
                on:click=move |_| { rotate.dispatch(RotateWorkflowSecret { id: ed.id }); }>
                {move || if ed.webhook.get().1 { "New secret (the old one stops working)" } else { "Make a secret" }}
            </button>
        </section>
    }
}

/// "Test this step": the node with sample values (the run shown on the canvas gives them, so a
/// past run's trigger is replayed here); nothing is sent.
#[component]
fn TestStep(ed: Ed, id: String) -> impl IntoView {
    let (trigger, outputs) = ed
        .trace
        .with_untracked(|t| {
            t.as_ref().map(|d| {
                let mut outputs = serde_json::Map::new();
                let steps = d
                    .steps
                    .iter()
                    .chain(d.branches.iter().flat_map(|b| &b.steps));
                for s in steps.filter(|s| s.status == StepStatus::Succeeded) {
                    outputs.insert(s.node.clone(), s.output.clone().unwrap_or_default());
                }
                (d.run.input.clone(), serde_json::Value::Object(outputs))
            })
        })
        .unwrap_or_else(|| (serde_json::json!({}), serde_json::json!({})));
    let trigger = RwSignal::new(pretty(&trigger));
    let outputs = RwSignal::new(pretty(&outputs));
    let result = RwSignal::new(None::<Result<NodeTest, String>>);
    let run = move |_| {
        let parse = |label: &str, text: String| {
            serde_json::from_str::<serde_json::Value>(&text)
                .map_err(|e| format!("{label} is not JSON: {e}"))
        };
        let test = parse("The trigger", trigger.get_untracked()).and_then(|t| {
            Ok(TestNode {
                node: id.clone(),
                trigger: t,
                nodes: parse("The outputs", outputs.get_untracked())?,
                vars: None,
                // As edited, saved or not yet.
                step: ed.def.with_untracked(|d| model::node(d, &id).cloned()),
            })
        });
        match test {
            Err(e) => result.set(Some(Err(e))),
            Ok(test) => leptos::task::spawn_local(async move {
                let r = test_workflow_node(ed.id, test)
                    .await
                    .map_err(|e| e.user_message());
                let _ = result.try_set(Some(r));
            }),
        }
    };
    view! {
        <details class="wf-test" data-testid="test-step">
            <summary>"Test this step"</summary>
            <p class="small muted">"With sample values (those of the run on the canvas, if one is shown). Nothing is sent, booked or emailed."</p>
            <div class="wf-form">
                <label for="wf-test-trigger">"Trigger (trigger.*)"</label>
                <textarea id="wf-test-trigger" rows="3" prop:value=move || trigger.get()
                    on:input=move |ev| trigger.set(event_target_value(&ev))></textarea>
                <label for="wf-test-nodes">"Earlier steps' outputs (nodes.<id>.*)"</label>
                <textarea id="wf-test-nodes" rows="3" prop:value=move || outputs.get()
                    on:input=move |ev| outputs.set(event_target_value(&ev))></textarea>
            </div>
            <button type="button" class="secondary" on:click=run>"Test"</button>
            {move || result.get().map(|r| match r {
                Err(e) => view! { <p class="notice error" role="alert">{e}</p> }.into_any(),
                Ok(t) => view! {
                    <div role="status" data-testid="test-result">
                        {t.error.clone().map(|e| view! { <p class="notice error">{format!("It would fail: {e}")}</p> })}
                        {t.port.clone().map(|p| view! { <p>{format!("Leaves by: {p}")}</p> })}
                        {t.output.as_ref().map(|o| view! { <p class="small">"Output"</p><pre class="diff">{pretty(o)}</pre> })}
                        {t.rendered.as_ref().map(|o| view! { <p class="small">"Filled in"</p><pre class="diff">{pretty(o)}</pre> })}
                        {t.note.clone().map(|n| view! { <p class="small muted">{format!("Note: {n}.")}</p> })}
                    </div>
                }.into_any(),
            })}
        </details>
    }
}

/// JSON as the editor shows it (indented).
pub(super) fn pretty(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// Problems not tied to one node, and a count of the rest.
#[component]
fn Problems(ed: Ed) -> impl IntoView {
    move || {
        ed.problems.with(|ps| {
            if ps.is_empty() {
                return view! { <p class="small muted" data-testid="problems">"No problems: ready to publish."</p> }.into_any();
            }
            let general: Vec<String> = ps.iter().filter(|p| p.node.is_none()).map(|p| p.message.clone()).collect();
            let on_nodes = ps.len() - general.len();
            view! {
                <div class="notice" data-testid="problems">
                    {format!("{} problem(s) to fix before publishing", ps.len())}
                    {(on_nodes > 0).then(|| format!(" ({on_nodes} shown on their steps)"))}
                    <ul>{general.into_iter().map(|m| view! { <li>{m}</li> }).collect_view()}</ul>
                </div>
            }
                .into_any()
        })
    }
}
