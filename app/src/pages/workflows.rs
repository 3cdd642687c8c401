//! Workflows: the list (create, start from a template, import); one workflow opens in the
//! editor (`/workflows/edit?open=<id>`, [`super::workflow_editor`]).

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_navigate;

use super::widgets::{
    can_write, fmt_time, show_error, successes, use_me, ActionMessage, ReadOnlyNote,
};
use crate::api::{
    list_conversation_graphs, list_workflow_secrets, list_workflows, ChooseConversationGraph,
    DeleteWorkflowSecret, NewWorkflow, SaveWorkflowSecret,
};
use crate::editor::STARTERS;
use crate::types::{
    Area, Channel, ConversationGraphs, CreateWorkflow, WorkflowDefinition, WorkflowSecret,
    WorkflowSummary,
};

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
        <GraphsPanel writable/>
        <Secrets writable/>
    }
}

/// What a channel is called here.
fn channel_label(channel: Channel) -> &'static str {
    match channel {
        Channel::Console => "Playground",
        Channel::Api => "REST API",
        Channel::Openai => "OpenAI-compatible API",
        Channel::Widget => "Chat widget",
        Channel::Chatwoot => "Chatwoot",
        Channel::Workflow => "Workflows' agent steps",
    }
}

/// Which graph answers each channel: the default one, or one of the tenant's published
/// conversation graphs.
#[component]
fn GraphsPanel(writable: Signal<bool>) -> impl IntoView {
    let choose = ServerAction::<ChooseConversationGraph>::new();
    let list = Resource::new(
        move || choose.version().get(),
        |_| list_conversation_graphs(),
    );
    view! {
        <section class="card stack" aria-labelledby="graphs-heading" data-testid="conversation-graphs">
            <h2 id="graphs-heading">"Conversation graphs"</h2>
            <p class="muted small">
                "Which graph answers your customers on each channel. The default graph: the router "
                "chooses a specialist, who answers with its tools and knowledge or hands the "
                "conversation to a person. To change that, create a workflow from the template "
                "\"Conversation graph\", add steps (classify, look something up, then route), "
                "publish it and choose it here; try it in the playground first."
            </p>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match list.await {
                        Ok(graphs) => view! { <GraphChoices graphs writable choose/> }.into_any(),
                        Err(e) => show_error(&e),
                    }
                })}
            </Transition>
            <ActionMessage value=choose.value()
                ok="Saved: the channel's next message is answered by this graph."/>
        </section>
    }
}

/// A label and a select per channel (side by side from 640 px wide, stacked below).
#[component]
fn GraphChoices(
    graphs: ConversationGraphs,
    writable: Signal<bool>,
    choose: ServerAction<ChooseConversationGraph>,
) -> impl IntoView {
    let none = graphs.candidates.is_empty();
    let candidates = graphs.candidates;
    view! {
        {none.then(|| view! {
            <p class="empty">"No conversation graph is published yet: every channel uses the default graph."</p>
        })}
        <div class="graph-grid">
            {graphs
                .channels
                .into_iter()
                .map(|c| {
                    let channel = c.channel;
                    let label = channel_label(channel);
                    let field = format!("graph-{}", channel.as_str());
                    let current = c.workflow_id.map(|id| id.to_string()).unwrap_or_default();
                    let options = candidates
                        .iter()
                        .map(|w| {
                            let id = w.id.to_string();
                            let selected = id == current;
                            let version = w
                                .latest_version
                                .map(|v| format!(" (version {v})"))
                                .unwrap_or_default();
                            view! { <option value=id selected=selected>{format!("{}{version}", w.name)}</option> }
                        })
                        .collect_view();
                    let on_change = move |ev: leptos::ev::Event| {
                        choose.dispatch(ChooseConversationGraph {
                            channel,
                            workflow_id: event_target_value(&ev).parse().ok(),
                        });
                    };
                    view! {
                        <label for=field.clone()>{label}</label>
                        <select id=field aria-label=format!("Graph for {label}")
                            disabled=move || !writable.get() || choose.pending().get()
                            on:change=on_change>
                            <option value="" selected=current.is_empty()>"The default graph"</option>
                            {options}
                        </select>
                    }
                })
                .collect_view()}
        </div>
    }
}

/// The secrets HTTP steps use (`{{ secrets.NAME }}`): names only; a value is typed, saved and
/// never shown again.
#[component]
fn Secrets(writable: Signal<bool>) -> impl IntoView {
    let save = ServerAction::<SaveWorkflowSecret>::new();
    let delete = ServerAction::<DeleteWorkflowSecret>::new();
    let saved = successes(save);
    let deleted = successes(delete);
    let list = Resource::new(
        move || (saved.get(), deleted.get()),
        |_| list_workflow_secrets(),
    );
    let name = RwSignal::new(String::new());
    let value = RwSignal::new(String::new());
    // A saved value leaves the page's memory with the form.
    Effect::new(move |_| {
        if saved.get() > 0 {
            name.set(String::new());
            value.set(String::new());
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        save.dispatch(SaveWorkflowSecret {
            name: name.get_untracked().trim().to_string(),
            value: value.get_untracked(),
        });
    };
    view! {
        <section class="card stack" aria-labelledby="secrets-heading" data-testid="workflow-secrets">
            <h2 id="secrets-heading">"Secrets for HTTP steps"</h2>
            <p class="muted small">
                "API keys and tokens your HTTP steps send, as " <code>"{{ secrets.NAME }}"</code>
                " in a URL, a header or a body. They are stored encrypted, never shown again, and "
                "kept out of runs' traces (a value that comes back is shown as "
                <code>"[secret NAME]"</code> ")."
            </p>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match list.await {
                        Ok(items) if items.is_empty() => view! {
                            <p class="empty">"No secrets yet."</p>
                        }
                            .into_any(),
                        Ok(items) => view! { <SecretTable items writable delete/> }.into_any(),
                        Err(e) => show_error(&e),
                    }
                })}
            </Transition>
            <Show when=move || writable.get()>
                <form class="stack" on:submit=submit aria-label="Save a secret">
                    <label>
                        "Name"
                        <input type="text" maxlength="64" pattern="[A-Za-z_][A-Za-z0-9_]*"
                            autocomplete="off" placeholder="CRM_TOKEN"
                            prop:value=move || name.get()
                            on:input=move |ev| name.set(event_target_value(&ev))/>
                    </label>
                    <label>
                        "Value"
                        <input type="password" maxlength="8192" autocomplete="new-password"
                            prop:value=move || value.get()
                            on:input=move |ev| value.set(event_target_value(&ev))/>
                    </label>
                    <span class="small muted">"Saving a name that exists replaces its value."</span>
                    <div class="actions">
                        <button type="submit" disabled=move || save.pending().get()>"Save secret"</button>
                    </div>
                </form>
            </Show>
            <ActionMessage value=save.value() ok="Secret saved."/>
            <ActionMessage value=delete.value() ok="Secret deleted."/>
        </section>
    }
}

#[component]
fn SecretTable(
    items: Vec<WorkflowSecret>,
    writable: Signal<bool>,
    delete: ServerAction<DeleteWorkflowSecret>,
) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table>
                <thead>
                    <tr>
                        <th scope="col">"Name"</th>
                        <th scope="col"><span class="sr-only">"Actions"</span></th>
                    </tr>
                </thead>
                <tbody>
                    {items
                        .into_iter()
                        .map(|s| {
                            let name = s.name.clone();
                            view! {
                                <tr>
                                    <td>
                                        <code>{format!("secrets.{}", s.name)}</code>
                                        <div class="small muted">{format!("set by {}, {}", s.updated_by, fmt_time(&s.updated_at))}</div>
                                    </td>
                                    <td>
                                        <button type="button" class="danger"
                                            aria-label=format!("Delete the secret {}", s.name)
                                            disabled=move || !writable.get() || delete.pending().get()
                                            on:click=move |_| { delete.dispatch(DeleteWorkflowSecret { name: name.clone() }); }>
                                            "Delete"
                                        </button>
                                    </td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        </div>
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
