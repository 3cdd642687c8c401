//! Workflows: the list (create, start from a template, import); one workflow opens in the
//! editor (`/workflows/edit?open=<id>`, [`super::workflow_editor`]).

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_navigate;

use super::widgets::{can_write, fmt_time, show_error, use_me, ReadOnlyNote};
use crate::api::{list_workflows, NewWorkflow};
use crate::editor::STARTERS;
use crate::types::{Area, CreateWorkflow, WorkflowDefinition, WorkflowSummary};

/// The list; a workflow opens in the editor, a route (and so a WASM chunk) of its own.
#[component]
pub fn WorkflowsPage() -> impl IntoView {
    let writable = can_write(use_me(), Area::Workflows);
    let create = ServerAction::<NewWorkflow>::new();
    let list = Resource::new(move || create.version().get(), |_| list_workflows());
    // A created workflow opens in the editor.
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(w)) = create.value().get() {
            navigate(
                &format!("/workflows/edit?open={}", w.id),
                Default::default(),
            );
        }
    });
    view! {
        <Title text="Workflows"/>
        <h1>"Workflows"</h1>
        <p class="muted">
            "Steps that run on their own once started: book, email, call your systems, wait for a "
            "person's approval. Each run is saved after every step, retried when a step fails, "
            "and what it did is undone when it cannot finish. "
            <a href="/api/docs#tag/workflows">"API"</a>
        </p>
        <ReadOnlyNote area=Area::Workflows/>
        <Show when=move || writable.get()>
            <NewWorkflowForm create/>
        </Show>
        <h2>"Your workflows"</h2>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match list.await {
                    Ok(items) if items.is_empty() => view! {
                        <p class="empty">"No workflows yet. Start from a template or a blank one."</p>
                    }
                        .into_any(),
                    Ok(items) => view! { <WorkflowTable items/> }.into_any(),
                    Err(e) => show_error(&e),
                }
            })}
        </Transition>
    }
}

#[component]
fn WorkflowTable(items: Vec<WorkflowSummary>) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table>
                <thead>
                    <tr>
                        <th scope="col">"Name"</th>
                        <th scope="col">"Steps"</th>
                        <th scope="col">"Published"</th>
                        <th scope="col">"Changed"</th>
                    </tr>
                </thead>
                <tbody>
                    {items
                        .into_iter()
                        .map(|w| view! {
                            <tr>
                                <td>
                                    <a href=format!("/workflows/edit?open={}", w.id)>{w.name.clone()}</a>
                                    <div class="small muted">{w.description.clone()}</div>
                                </td>
                                <td>{w.nodes}</td>
                                <td>{w.latest_version.map_or_else(|| "not yet".to_string(), |v| format!("version {v}"))}</td>
                                <td>{fmt_time(&w.updated_at)}</td>
                            </tr>
                        })
                        .collect_view()}
                </tbody>
            </table>
        </div>
    }
}

/// A blank workflow, one from a template, or one imported from an export.
#[component]
fn NewWorkflowForm(create: ServerAction<NewWorkflow>) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let starter = RwSignal::new(String::new());
    let import = RwSignal::new(String::new());
    let problem = RwSignal::new(None::<String>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        problem.set(None);
        let chosen = starter.get_untracked();
        let template = STARTERS.iter().find(|s| s.name == chosen);
        let definition = match chosen.as_str() {
            "import" => match serde_json::from_str::<WorkflowDefinition>(&import.get_untracked()) {
                Ok(d) => Some(d),
                Err(e) => {
                    problem.set(Some(format!("The export is not a workflow: {e}")));
                    return;
                }
            },
            _ => template.map(|s| (s.build)()),
        };
        // A template's name stands in for an empty one.
        let mut typed = name.get_untracked().trim().to_string();
        if typed.is_empty() {
            typed = template.map(|s| s.name.to_string()).unwrap_or_default();
        }
        let description = template
            .map(|s| s.description.to_string())
            .unwrap_or_default();
        create.dispatch(NewWorkflow {
            create: CreateWorkflow {
                name: typed,
                description,
                definition,
            },
        });
    };
    let error = move || {
        problem.get().or_else(|| match create.value().get() {
            Some(Err(e)) => Some(e.user_message()),
            _ => None,
        })
    };
    view! {
        <form class="card stack" on:submit=submit aria-label="New workflow">
            <h2>"New workflow"</h2>
            <label>
                "Name"
                <input type="text" maxlength="100" prop:value=move || name.get()
                    on:input=move |ev| name.set(event_target_value(&ev))
                    placeholder="Follow up on a lead"/>
            </label>
            <label>
                "Start from"
                <select on:change=move |ev| starter.set(event_target_value(&ev))
                    prop:value=move || starter.get()>
                    <option value="">"A blank workflow (a start step)"</option>
                    {STARTERS
                        .iter()
                        .map(|s| view! { <option value=s.name>{format!("Template: {}", s.name)}</option> })
                        .collect_view()}
                    <option value="import">"An export (JSON)"</option>
                </select>
            </label>
            {move || {
                let chosen = starter.get();
                STARTERS
                    .iter()
                    .find(|s| s.name == chosen)
                    .map(|s| view! { <p class="small muted">{s.description}</p> })
            }}
            <Show when=move || starter.get() == "import">
                <label>
                    "The export"
                    <textarea rows="6" prop:value=move || import.get()
                        on:input=move |ev| import.set(event_target_value(&ev))
                        placeholder="{\"format\": 1, \"nodes\": […], \"edges\": […]}"></textarea>
                </label>
            </Show>
            {move || error().map(|e| view! { <p class="notice error" role="alert">{e}</p> })}
            <div class="actions">
                <button type="submit" disabled=move || create.pending().get()>"Create and open"</button>
            </div>
        </form>
    }
}
