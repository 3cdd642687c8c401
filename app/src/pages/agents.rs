//! The tenant's specialists on the Agents page: the built-in ones (which the tenant may
//! change) and its own, each with a description for the router, tools and knowledge bases.

use leptos::prelude::*;
use uuid::Uuid;

use super::widgets::{show_error, ActionMessage};
use crate::api::{list_knowledge_bases, AddAgent, ChangeAgent, RemoveAgent};
use crate::error::AppError;
use crate::types::{Agent, AgentCatalogue, AgentTool, CreateAgent, KnowledgeBase, UpdateAgent};

/// The agents' names, for the selects of the rule and prompt editors.
pub fn agent_names(catalogue: &AgentCatalogue) -> Vec<String> {
    catalogue.agents.iter().map(|a| a.name.clone()).collect()
}

#[component]
pub fn Specialists(
    catalogue: Resource<Result<AgentCatalogue, AppError>>,
    writable: Signal<bool>,
    add: ServerAction<AddAgent>,
    change: ServerAction<ChangeAgent>,
    remove: ServerAction<RemoveAgent>,
) -> impl IntoView {
    let bases = Resource::new(|| (), |_| list_knowledge_bases());
    // The agent being edited; `None` shows the form for a new one.
    let editing = RwSignal::new(None::<Agent>);
    Effect::new(move |_| {
        if matches!(change.value().get(), Some(Ok(_))) {
            editing.set(None);
        }
    });
    view! {
        <ActionMessage value=remove.value() ok="Done: the agent is deleted, or back to its built-in definition."/>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                let bases: Vec<KnowledgeBase> = bases.await.unwrap_or_default();
                match catalogue.await {
                    Ok(c) => view! {
                        <AgentTable agents=c.agents.clone() bases=bases.clone() writable editing remove/>
                        <Show when=move || writable.get()>
                            {
                                let (tools, bases) = (c.tools.clone(), bases.clone());
                                move || match editing.get() {
                                    Some(agent) => view! {
                                        <AgentForm agent=Some(agent) tools=tools.clone() bases=bases.clone() add change editing/>
                                    }.into_any(),
                                    None => view! {
                                        <AgentForm agent=None tools=tools.clone() bases=bases.clone() add change editing/>
                                    }.into_any(),
                                }
                            }
                        </Show>
                    }.into_any(),
                    Err(e) => show_error(&e),
                }
            })}
        </Transition>
    }
}

fn knowledge_text(agent: &Agent, bases: &[KnowledgeBase]) -> String {
    if agent.knowledge_base_ids.is_empty() {
        return "all".into();
    }
    agent
        .knowledge_base_ids
        .iter()
        .map(|id| {
            bases
                .iter()
                .find(|kb| kb.id == *id)
                .map_or_else(|| "(deleted)".to_string(), |kb| kb.name.clone())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[component]
fn AgentTable(
    agents: Vec<Agent>,
    bases: Vec<KnowledgeBase>,
    writable: Signal<bool>,
    editing: RwSignal<Option<Agent>>,
    remove: ServerAction<RemoveAgent>,
) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table data-testid="agents">
                <thead>
                    <tr>
                        <th scope="col">"Agent"</th>
                        <th scope="col">"Kind"</th>
                        <th scope="col">"Handles"</th>
                        <th scope="col">"Tools"</th>
                        <th scope="col">"Knowledge"</th>
                        <th scope="col"><span class="sr-only">"Actions"</span></th>
                    </tr>
                </thead>
                <tbody>
                    {agents
                        .into_iter()
                        .map(|a| {
                            let kind = match (a.built_in, a.customised) {
                                (true, false) => "built-in",
                                (true, true) => "built-in, changed",
                                _ => "yours",
                            };
                            let knowledge = knowledge_text(&a, &bases);
                            let removable = !a.built_in || a.customised;
                            let remove_label = if a.built_in { "Reset" } else { "Delete" };
                            let name = a.name.clone();
                            let edit_label = format!("Edit agent {name}");
                            let remove_aria = format!("{remove_label} agent {name}");
                            let edited = a.clone();
                            view! {
                                <tr>
                                    <td><code>{a.name.clone()}</code></td>
                                    <td>{kind}</td>
                                    <td>{a.description.clone()}</td>
                                    <td>{a.tools.join(", ")}</td>
                                    <td>{knowledge}</td>
                                    <td class="actions">
                                        <Show when=move || writable.get()>
                                            <button class="secondary" aria-label=edit_label.clone() on:click={
                                                let edited = edited.clone();
                                                move |_| editing.set(Some(edited.clone()))
                                            }>"Edit"</button>
                                            {removable.then(|| {
                                                let name = name.clone();
                                                view! {
                                                    <button class="danger" aria-label=remove_aria.clone() on:click=move |_| {
                                                        remove.dispatch(RemoveAgent { agent: name.clone() });
                                                    }>{remove_label}</button>
                                                }
                                            })}
                                        </Show>
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

/// Creates an agent (`agent` is `None`) or changes one.
#[component]
fn AgentForm(
    agent: Option<Agent>,
    tools: Vec<AgentTool>,
    bases: Vec<KnowledgeBase>,
    add: ServerAction<AddAgent>,
    change: ServerAction<ChangeAgent>,
    editing: RwSignal<Option<Agent>>,
) -> impl IntoView {
    let existing = agent.as_ref().map(|a| a.name.clone());
    let name = RwSignal::new(agent.as_ref().map(|a| a.name.clone()).unwrap_or_default());
    let description = RwSignal::new(
        agent
            .as_ref()
            .map(|a| a.description.clone())
            .unwrap_or_default(),
    );
    let prompt = RwSignal::new(String::new());
    let chosen_tools = RwSignal::new(agent.as_ref().map_or_else(
        || {
            vec![
                "knowledge_search".to_string(),
                "handoff_to_human".to_string(),
            ]
        },
        |a| a.tools.clone(),
    ));
    let chosen_bases = RwSignal::new(
        agent
            .as_ref()
            .map(|a| a.knowledge_base_ids.clone())
            .unwrap_or_default(),
    );
    let title = match &existing {
        Some(n) => format!("Change agent {n}"),
        None => "New agent".to_string(),
    };
    let is_new = existing.is_none();
    let submit = {
        let existing = existing.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            match &existing {
                Some(agent) => {
                    change.dispatch(ChangeAgent {
                        agent: agent.clone(),
                        update: UpdateAgent {
                            description: Some(description.get_untracked()),
                            tools: Some(chosen_tools.get_untracked()),
                            knowledge_base_ids: Some(chosen_bases.get_untracked()),
                        },
                    });
                }
                None => {
                    add.dispatch(AddAgent {
                        create: CreateAgent {
                            name: name.get_untracked().trim().to_string(),
                            description: description.get_untracked(),
                            prompt: prompt.get_untracked(),
                            tools: chosen_tools.get_untracked(),
                            knowledge_base_ids: chosen_bases.get_untracked(),
                        },
                    });
                }
            }
        }
    };
    view! {
        <form class="card stack" on:submit=submit aria-labelledby="agent-form-title">
            <h3 id="agent-form-title">{title}</h3>
            <Show when=move || is_new>
                <label for="agent-name">"Agent name"</label>
                <input id="agent-name" type="text" required maxlength="64" pattern="[a-z][a-z0-9_-]*"
                    placeholder="e.g. billing" bind:value=name/>
            </Show>
            <label for="agent-description">"Handles (the router reads this)"</label>
            <input id="agent-description" type="text" required maxlength="500"
                placeholder="invoices, refunds, payment problems" bind:value=description/>
            <Show when=move || is_new>
                <label for="agent-prompt">"First prompt (its later versions are edited under Prompts)"</label>
                <textarea id="agent-prompt" rows="5" required maxlength="20000"
                    placeholder="You are the billing agent of {{company}}…" bind:value=prompt></textarea>
            </Show>
            <fieldset>
                <legend>"Tools"</legend>
                {tools
                    .iter()
                    .map(|t| {
                        let tool = t.name.clone();
                        let checked = tool.clone();
                        view! {
                            <label class="check" title=t.description.clone()>
                                <input type="checkbox"
                                    prop:checked=move || chosen_tools.get().contains(&checked)
                                    on:change=move |ev| {
                                        let on = event_target_checked(&ev);
                                        let tool = tool.clone();
                                        chosen_tools.update(|v| {
                                            v.retain(|t| *t != tool);
                                            if on { v.push(tool); }
                                        });
                                    }/>
                                {t.name.clone()}
                            </label>
                        }
                    })
                    .collect_view()}
            </fieldset>
            <fieldset>
                <legend>"Knowledge bases it searches (none ticked: all of them)"</legend>
                {bases.is_empty().then(|| view! { <p class="muted small">"No knowledge base yet."</p> })}
                {bases
                    .iter()
                    .map(|kb| {
                        let id: Uuid = kb.id;
                        view! {
                            <label class="check">
                                <input type="checkbox"
                                    prop:checked=move || chosen_bases.get().contains(&id)
                                    on:change=move |ev| {
                                        let on = event_target_checked(&ev);
                                        chosen_bases.update(|v| {
                                            v.retain(|b| *b != id);
                                            if on { v.push(id); }
                                        });
                                    }/>
                                {kb.name.clone()}
                            </label>
                        }
                    })
                    .collect_view()}
            </fieldset>
            <div class="actions">
                <button type="submit">{if is_new { "Add agent" } else { "Save agent" }}</button>
                <Show when=move || !is_new>
                    <button type="button" class="secondary" on:click=move |_| editing.set(None)>"Cancel"</button>
                </Show>
            </div>
            <ActionMessage value=add.value() ok="Agent added: the router can send to it from the next message."/>
            <ActionMessage value=change.value() ok="Agent saved."/>
        </form>
    }
}
