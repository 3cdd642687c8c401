//! Conversations: a playground to talk to the tenant's agents with the step trace of every
//! turn, the queue of conversations waiting for a person, transcripts, and the operator's
//! take-over / reply / hand-back. The Agents page lists the specialists and edits the
//! router's rules and the agents' prompts (versions, changes, restore default).

use leptos::prelude::*;
use leptos_meta::Title;
use uuid::Uuid;

use super::agents::{agent_names, Specialists};
use super::bookings::ConversationBookings;
use super::widgets::{
    can_write, fmt_time, opened_id, show_error, use_me, ActionMessage, ReadOnlyNote,
};
use crate::api::{
    diff_prompts, get_conversation, get_prompt, get_usage, list_agents, list_conversations,
    list_router_rules, send_message, start_conversation, AddAgent, AddRouterRule, ChangeAgent,
    DeleteRouterRule, HandBack, RemoveAgent, ReplyAsOperator, RestoreDefaultPrompt, StorePrompt,
    TakeOver,
};
use crate::types::{
    AgentPrompt, Area, Conversation, ConversationDetail, ConversationQuery, ConversationStatus,
    CreateRouterRule, RouterRule, RuleKind, SavePrompt, Step, TurnResult,
};

#[component]
pub fn ConversationsPage() -> impl IntoView {
    let writable = can_write(use_me(), Area::Conversations);
    // `?open=<id>` opens one (the Bookings and Conversations pages link to each other).
    let selected = RwSignal::new(opened_id());
    let take = ServerAction::<TakeOver>::new();
    let back = ServerAction::<HandBack>::new();
    let reply = ServerAction::<ReplyAsOperator>::new();
    let status = RwSignal::new(String::new());
    let tick = RwSignal::new(0u32);
    Effect::new(move |_| {
        if let Ok(handle) = set_interval_with_handle(
            move || tick.update(|t| *t += 1),
            std::time::Duration::from_secs(5),
        ) {
            on_cleanup(move || handle.clear());
        }
    });
    let changes = move || {
        (
            tick.get(),
            take.version().get(),
            back.version().get(),
            reply.version().get(),
        )
    };
    let queue = Resource::new(changes, |_| {
        list_conversations(ConversationQuery {
            status: Some(ConversationStatus::WaitingHuman),
            limit: Some(50),
            ..Default::default()
        })
    });
    let recent = Resource::new(
        move || (changes(), status.get()),
        |(_, status)| {
            list_conversations(ConversationQuery {
                status: ConversationStatus::parse(&status),
                limit: Some(30),
                ..Default::default()
            })
        },
    );
    let usage = Resource::new(changes, |_| get_usage());
    // Not on the timer: a reload would wipe the reply an operator is typing.
    let detail = Resource::new(
        move || {
            (
                take.version().get(),
                back.version().get(),
                reply.version().get(),
                selected.get(),
            )
        },
        |(_, _, _, id)| async move {
            match id {
                Some(id) => get_conversation(id).await.map(Some),
                None => Ok(None),
            }
        },
    );
    view! {
        <Title text="Conversations"/>
        <h1>"Conversations"</h1>
        <p class="muted">
            "Your customers' conversations with your agents. Try the agents in the playground; "
            "take over a conversation to answer as a person; hand it back to let the bot answer again."
        </p>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                usage.await.ok().map(|u| view! {
                    <p class="muted small" data-testid="usage">
                        {format!(
                            "Since {}: {} conversations, {} answered messages, {} workflow runs, {} steps tried, {} + {} tokens, ${:.4}",
                            u.since.format("%Y-%m-%d"),
                            u.conversations,
                            u.turns,
                            u.workflow_runs,
                            u.step_tests,
                            u.prompt_tokens,
                            u.completion_tokens,
                            u.cost_usd
                        )}
                    </p>
                })
            })}
        </Transition>
        <ReadOnlyNote area=Area::Conversations/>
        <Show when=move || writable.get()>
            <Playground/>
        </Show>
        <h2>"Waiting for a person"</h2>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match queue.await {
                    Ok(page) if page.items.is_empty() => {
                        view! { <p class="empty">"Nobody is waiting."</p> }.into_any()
                    }
                    Ok(page) => view! { <ConversationTable list=page.items selected/> }.into_any(),
                    Err(e) => show_error(&e),
                }
            })}
        </Transition>
        <h2>"Recent conversations"</h2>
        <label>
            "Status "
            <select on:change=move |ev| status.set(event_target_value(&ev)) prop:value=move || status.get()>
                <option value="">"all"</option>
                {ConversationStatus::ALL
                    .iter()
                    .map(|s| view! { <option value=s.as_str()>{s.as_str()}</option> })
                    .collect_view()}
            </select>
        </label>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match recent.await {
                    Ok(page) if page.items.is_empty() => {
                        view! { <p class="empty">"No conversations yet."</p> }.into_any()
                    }
                    Ok(page) => view! { <ConversationTable list=page.items selected/> }.into_any(),
                    Err(e) => show_error(&e),
                }
            })}
        </Transition>
        <ActionMessage value=take.value() ok="You own this conversation; the bot stays silent."/>
        <ActionMessage value=back.value() ok="The bot answers again."/>
        <ActionMessage value=reply.value() ok="Reply sent."/>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                match detail.await {
                    Ok(Some(d)) => view! { <Transcript detail=d take back reply writable/> }.into_any(),
                    Ok(None) => ().into_any(),
                    Err(e) => show_error(&e),
                }
            })}
        </Transition>
    }
}

#[component]
fn ConversationTable(list: Vec<Conversation>, selected: RwSignal<Option<Uuid>>) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table>
                <thead>
                    <tr>
                        <th scope="col">"Title"</th>
                        <th scope="col">"Channel"</th>
                        <th scope="col">"Status"</th>
                        <th scope="col">"Agent"</th>
                        <th scope="col">"Turns"</th>
                        <th scope="col">"Tokens"</th>
                        <th scope="col">"Updated"</th>
                        <th scope="col"><span class="sr-only">"Open"</span></th>
                    </tr>
                </thead>
                <tbody>
                    {list
                        .into_iter()
                        .map(|c| {
                            let id = c.id;
                            let title = if c.title.is_empty() { "(no message yet)".to_string() } else { c.title.clone() };
                            view! {
                                <tr>
                                    <td>{title.clone()}</td>
                                    <td>{c.channel.as_str()}</td>
                                    <td>{c.status.as_str()}</td>
                                    <td>{c.agent.clone()}</td>
                                    <td>{c.turns}</td>
                                    <td>{c.usage.prompt_tokens + c.usage.completion_tokens}</td>
                                    <td>{fmt_time(&c.updated_at)}</td>
                                    <td class="actions">
                                        <button
                                            class="secondary"
                                            aria-label=format!("Open {title}")
                                            on:click=move |_| selected.set(Some(id))
                                        >
                                            "Open"
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

/// Who wrote through a chat widget, from which page, and how they rated the conversation.
#[component]
fn WidgetFacts(w: crate::types::WidgetOrigin) -> impl IntoView {
    let visitor = match &w.visitor {
        Some(v) => {
            let name = v.name.clone().unwrap_or_else(|| "Anonymous visitor".into());
            let email = v
                .email
                .clone()
                .map(|e| format!(" <{e}>"))
                .unwrap_or_default();
            let verified = if v.verified {
                " (verified by the site)"
            } else {
                ""
            };
            format!("{name}{email}{verified}")
        }
        None => "A visitor (the widget was deleted)".into(),
    };
    view! {
        <dl class="facts">
            <dt>"Visitor"</dt><dd>{visitor}</dd>
            {w.page_url.map(|url| view! { <dt>"Page"</dt><dd>{url}</dd> })}
            {w.csat.map(|score| view! {
                <dt>"Rating"</dt>
                <dd>{format!("{score} of 5{}", w.csat_comment.map(|c| format!(": {c}")).unwrap_or_default())}</dd>
            })}
        </dl>
    }
}

#[component]
fn Transcript(
    detail: ConversationDetail,
    take: ServerAction<TakeOver>,
    back: ServerAction<HandBack>,
    reply: ServerAction<ReplyAsOperator>,
    writable: Signal<bool>,
) -> impl IntoView {
    let c = detail.conversation.clone();
    let id = c.id;
    let text = RwSignal::new(String::new());
    let human = matches!(
        c.status,
        ConversationStatus::Human | ConversationStatus::WaitingHuman
    );
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        reply.dispatch(ReplyAsOperator {
            id,
            content: text.get_untracked(),
        });
        text.set(String::new());
    };
    view! {
        <section class="card stack" aria-labelledby="transcript">
            <h2 id="transcript">{if c.title.is_empty() { "Conversation".to_string() } else { c.title.clone() }}</h2>
            <p class="muted">
                {format!(
                    "{} · {} · agent {} · {} tokens · ${:.4}",
                    c.channel.as_str(),
                    c.status.as_str(),
                    if c.agent.is_empty() { "-" } else { c.agent.as_str() },
                    c.usage.prompt_tokens + c.usage.completion_tokens,
                    c.usage.cost_usd
                )}
            </p>
            {c.widget.clone().map(|w| view! { <WidgetFacts w/> })}
            <ConversationBookings conversation=id/>
            <ol class="transcript">
                {detail
                    .messages
                    .into_iter()
                    .map(|m| {
                        let who = match (&m.agent, m.role.as_str()) {
                            (Some(agent), _) => agent.clone(),
                            (None, role) => role.to_string(),
                        };
                        let feedback = m.feedback.map(|f| format!(" · rated {}", f.as_str())).unwrap_or_default();
                        view! {
                            <li class=format!("message {}", m.role.as_str())>
                                <strong>{who}</strong>
                                <span class="muted small">{format!(" {}{feedback}", fmt_time(&m.created_at))}</span>
                                <p class="pre">{m.content.clone()}</p>
                            </li>
                        }
                    })
                    .collect_view()}
            </ol>
            <Show when=move || writable.get()>
                <div class="actions">
                    <Show when=move || !human>
                        <button class="secondary" on:click=move |_| { take.dispatch(TakeOver { id }); }>
                            "Take over"
                        </button>
                    </Show>
                    <Show when=move || human>
                        <button class="secondary" on:click=move |_| { back.dispatch(HandBack { id }); }>
                            "Hand back to the bot"
                        </button>
                    </Show>
                </div>
                <form class="stack" on:submit=submit aria-label="Reply as a person">
                    <label for="operator-reply">"Reply as a person (takes the conversation)"</label>
                    <textarea id="operator-reply" required maxlength="8000" bind:value=text></textarea>
                    <button type="submit">"Send reply"</button>
                </form>
            </Show>
        </section>
    }
}

#[component]
fn Playground() -> impl IntoView {
    let conversation = RwSignal::new(None::<Uuid>);
    let turns = RwSignal::new(Vec::<TurnResult>::new());
    let error = RwSignal::new(None::<String>);
    let text = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let send = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let content = text.get_untracked();
        if content.trim().is_empty() || busy.get_untracked() {
            return;
        }
        busy.set(true);
        leptos::task::spawn_local(async move {
            let id = match conversation.get_untracked() {
                Some(id) => Ok(id),
                None => start_conversation().await.map(|c| c.id),
            };
            let outcome = match id {
                Ok(id) => {
                    conversation.set(Some(id));
                    send_message(id, content).await
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(turn) => {
                    error.set(None);
                    text.set(String::new());
                    turns.update(|t| t.push(turn));
                }
                Err(e) => error.set(Some(e.user_message())),
            }
            busy.set(false);
        });
    };
    let reset = move |_| {
        conversation.set(None);
        turns.set(Vec::new());
        error.set(None);
    };
    view! {
        <section class="card stack" aria-labelledby="playground">
            <h2 id="playground">"Playground"</h2>
            <p class="muted">"Talk to your agents as a customer would. Each answer shows how it was made."</p>
            <ol class="transcript">
                <For each=move || turns.get().into_iter().enumerate() key=|(i, _)| *i let:item>
                    <PlaygroundTurn turn=item.1/>
                </For>
            </ol>
            {move || error.get().map(|e| view! { <p class="notice error" role="alert">{e}</p> })}
            <form class="stack" on:submit=send aria-label="Message the agents">
                <label for="playground-message">"Message"</label>
                <textarea id="playground-message" maxlength="8000" bind:value=text></textarea>
                <div class="actions">
                    <button type="submit" prop:disabled=move || busy.get()>
                        {move || if busy.get() { "Waiting for the answer…" } else { "Send" }}
                    </button>
                    <button type="button" class="secondary" on:click=reset>"New conversation"</button>
                </div>
            </form>
        </section>
    }
}

#[component]
fn PlaygroundTurn(turn: TurnResult) -> impl IntoView {
    let reply = turn.reply.clone();
    view! {
        <li class="message user"><strong>"You"</strong><p class="pre">{turn.message.content.clone()}</p></li>
        {match reply {
            Some(r) => {
                let sources = r.sources.clone();
                view! {
                    <li class="message assistant">
                        <strong>{r.agent.clone().unwrap_or_default()}</strong>
                        <p class="pre">{r.content.clone()}</p>
                        {(!sources.is_empty()).then(|| view! {
                            <details>
                                <summary>{format!("{} sources", sources.len())}</summary>
                                <ol>
                                    {sources.into_iter().map(|s| view! {
                                        <li><strong>{s.document_title.clone()}</strong>" "<span class="small">{s.text.clone()}</span></li>
                                    }).collect_view()}
                                </ol>
                            </details>
                        })}
                    </li>
                }
                .into_any()
            }
            None => view! {
                <li class="message muted">"A person owns this conversation; the bot stays silent."</li>
            }
            .into_any(),
        }}
        <li class="trace"><StepTrace steps=turn.steps.clone()/></li>
    }
}

fn describe(step: &Step) -> String {
    let d = &step.detail;
    let mut parts = Vec::new();
    if let Some(r) = &d.route {
        parts.push(match &r.rule {
            Some(rule) => format!("→ {} ({}: {rule})", r.agent, r.by),
            None => format!("→ {} ({})", r.agent, r.by),
        });
    }
    for t in &d.tool_calls {
        parts.push(format!(
            "{}({}) {}",
            t.name,
            t.arguments,
            if t.ok { "ok" } else { "refused" }
        ));
    }
    if let Some(reason) = &d.offline {
        parts.push(format!("offline: {reason}"));
    }
    if let Some(reason) = &d.handoff {
        parts.push(format!("handoff: {reason}"));
    }
    if let Some(e) = &d.error {
        parts.push(format!("error: {e}"));
    }
    if let Some(port) = &d.port {
        parts.push(format!("exit: {port}"));
    }
    parts.join("; ")
}

#[component]
fn StepTrace(steps: Vec<Step>) -> impl IntoView {
    view! {
        <details>
            <summary>{format!("Trace: {} steps", steps.len())}</summary>
            <div class="table-wrap">
                <table>
                    <thead>
                        <tr>
                            <th scope="col">"#"</th>
                            <th scope="col">"Node"</th>
                            <th scope="col">"What happened"</th>
                            <th scope="col">"LLM calls"</th>
                            <th scope="col">"Tokens in / out"</th>
                            <th scope="col">"ms"</th>
                        </tr>
                    </thead>
                    <tbody>
                        {steps
                            .into_iter()
                            .map(|s| view! {
                                <tr>
                                    <td>{s.seq + 1}</td>
                                    <td><code>{s.node.clone()}</code></td>
                                    <td class="small">{describe(&s)}</td>
                                    <td>{s.detail.llm_calls}</td>
                                    <td>{format!("{} / {}", s.prompt_tokens, s.completion_tokens)}</td>
                                    <td>{s.duration_ms}</td>
                                </tr>
                            })
                            .collect_view()}
                    </tbody>
                </table>
            </div>
        </details>
    }
}

#[component]
pub fn AgentsPage() -> impl IntoView {
    let writable = can_write(use_me(), Area::Agents);
    let add = ServerAction::<AddRouterRule>::new();
    let remove = ServerAction::<DeleteRouterRule>::new();
    let rules = Resource::new(
        move || (add.version().get(), remove.version().get()),
        |_| list_router_rules(),
    );
    let add_agent = ServerAction::<AddAgent>::new();
    let change_agent = ServerAction::<ChangeAgent>::new();
    let remove_agent = ServerAction::<RemoveAgent>::new();
    let catalogue = Resource::new(
        move || {
            (
                add_agent.version().get(),
                change_agent.version().get(),
                remove_agent.version().get(),
            )
        },
        |_| list_agents(),
    );
    // The rule and prompt editors choose among the tenant's agents.
    let with_names =
        move |render: fn(Vec<String>, Signal<bool>, ServerAction<AddRouterRule>) -> AnyView| {
            view! {
                <Transition fallback=|| view! { <p>"Loading…"</p> }>
                    {move || Suspend::new(async move {
                        match catalogue.await {
                            Ok(c) => render(agent_names(&c), writable, add),
                            Err(e) => show_error(&e),
                        }
                    })}
                </Transition>
            }
        };
    view! {
        <Title text="Agents"/>
        <h1>"Agents"</h1>
        <p class="muted">
            "A router sends each customer message to a specialist. Emergency words (fire, gas leak, "
            "bleeding…) always go to the emergency agent; then your rules apply, highest priority first; "
            "then, when an LLM is configured, it classifies the message by the agents' descriptions; "
            "otherwise the conversation stays with its specialist, or goes to support."
        </p>
        <h2>"Specialists"</h2>
        <ReadOnlyNote area=Area::Agents/>
        <Specialists catalogue writable add=add_agent change=change_agent remove=remove_agent/>
        <h2>"Prompts"</h2>
        {with_names(|names, writable, _| view! { <PromptEditor writable names/> }.into_any())}
        <h2>"Router rules"</h2>
        <Show when=move || writable.get()>
            {with_names(|names, _, add| view! { <RuleForm add names/> }.into_any())}
        </Show>
        <ActionMessage value=remove.value() ok="Rule deleted."/>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match rules.await {
                    Ok(list) if list.is_empty() => {
                        view! { <p class="empty">"No rules yet: messages are routed by the LLM or go to support."</p> }.into_any()
                    }
                    Ok(list) => view! { <RuleTable list remove writable/> }.into_any(),
                    Err(e) => show_error(&e),
                }
            })}
        </Transition>
    }
}

#[component]
fn RuleForm(add: ServerAction<AddRouterRule>, names: Vec<String>) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let agent = RwSignal::new(names.first().cloned().unwrap_or_default());
    let kind = RwSignal::new("keyword".to_string());
    let pattern = RwSignal::new(String::new());
    let priority = RwSignal::new("0".to_string());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        add.dispatch(AddRouterRule {
            create: CreateRouterRule {
                name: name.get_untracked(),
                agent: agent.get_untracked(),
                kind: RuleKind::parse(&kind.get_untracked()).unwrap_or(RuleKind::Keyword),
                pattern: pattern.get_untracked(),
                priority: priority.get_untracked().trim().parse().unwrap_or(0),
                enabled: true,
            },
        });
    };
    view! {
        <form class="card stack" on:submit=submit aria-labelledby="new-rule">
            <h3 id="new-rule">"New rule"</h3>
            <label for="rule-name">"Name"</label>
            <input id="rule-name" type="text" required maxlength="100" placeholder="e.g. prices" bind:value=name/>
            <label for="rule-agent">"Send to"</label>
            <select id="rule-agent" on:change=move |ev| agent.set(event_target_value(&ev)) prop:value=move || agent.get()>
                {names.iter().map(|a| view! { <option value=a.clone()>{a.clone()}</option> }).collect_view()}
            </select>
            <label for="rule-kind">"Match"</label>
            <select id="rule-kind" on:change=move |ev| kind.set(event_target_value(&ev)) prop:value=move || kind.get()>
                <option value="keyword">"any of these words (comma-separated)"</option>
                <option value="regex">"a regular expression"</option>
            </select>
            <label for="rule-pattern">"Pattern"</label>
            <input id="rule-pattern" type="text" required maxlength="2000" placeholder="price, quote, how much" bind:value=pattern/>
            <label for="rule-priority">"Priority (higher wins)"</label>
            <input id="rule-priority" type="number" min="-1000" max="1000" bind:value=priority/>
            <button type="submit">"Add rule"</button>
            <ActionMessage value=add.value() ok="Rule added."/>
        </form>
    }
}

#[component]
fn RuleTable(
    list: Vec<RouterRule>,
    remove: ServerAction<DeleteRouterRule>,
    writable: Signal<bool>,
) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table>
                <thead>
                    <tr>
                        <th scope="col">"Priority"</th>
                        <th scope="col">"Name"</th>
                        <th scope="col">"Match"</th>
                        <th scope="col">"Pattern"</th>
                        <th scope="col">"Agent"</th>
                        <th scope="col"><span class="sr-only">"Actions"</span></th>
                    </tr>
                </thead>
                <tbody>
                    {list
                        .into_iter()
                        .map(|r| {
                            let id = r.id;
                            let label = format!("Delete rule {}", r.name);
                            view! {
                                <tr>
                                    <td>{r.priority}</td>
                                    <td>{r.name.clone()}</td>
                                    <td>{r.kind.as_str()}</td>
                                    <td><code>{r.pattern.clone()}</code></td>
                                    <td>{r.agent.clone()}</td>
                                    <td class="actions">
                                        <Show when=move || writable.get()>
                                            <button class="danger" aria-label=label.clone() on:click=move |_| { remove.dispatch(DeleteRouterRule { id }); }>
                                                "Delete"
                                            </button>
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

#[component]
fn PromptEditor(writable: Signal<bool>, names: Vec<String>) -> impl IntoView {
    let agent = RwSignal::new(names.first().cloned().unwrap_or_default());
    let store = ServerAction::<StorePrompt>::new();
    let restore = ServerAction::<RestoreDefaultPrompt>::new();
    let prompt = Resource::new(
        move || (agent.get(), store.version().get(), restore.version().get()),
        |(agent, _, _)| get_prompt(agent),
    );
    view! {
        <label>
            "Agent "
            <select on:change=move |ev| agent.set(event_target_value(&ev)) prop:value=move || agent.get()>
                {names.iter().map(|a| view! { <option value=a.clone()>{a.clone()}</option> }).collect_view()}
            </select>
        </label>
        <ActionMessage value=store.value() ok="Prompt saved: the agent uses it from its next answer."/>
        <ActionMessage value=restore.value() ok="The default prompt is back."/>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match prompt.await {
                    Ok(p) => view! { <PromptForm prompt=p store restore writable/> }.into_any(),
                    Err(e) => show_error(&e),
                }
            })}
        </Transition>
    }
}

#[component]
fn PromptForm(
    prompt: AgentPrompt,
    store: ServerAction<StorePrompt>,
    restore: ServerAction<RestoreDefaultPrompt>,
    writable: Signal<bool>,
) -> impl IntoView {
    let agent = prompt.agent.clone();
    let text = RwSignal::new(prompt.current.text.clone());
    let note = RwSignal::new(String::new());
    let diff = RwSignal::new(None::<Result<String, String>>);
    let submit = {
        let agent = agent.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            let note = note.get_untracked();
            store.dispatch(StorePrompt {
                agent: agent.clone(),
                save: SavePrompt {
                    text: text.get_untracked(),
                    note: (!note.trim().is_empty()).then_some(note),
                },
            });
        }
    };
    let restore_agent = agent.clone();
    let versions: Vec<_> = prompt.history.clone();
    view! {
        <form class="card stack" on:submit=submit aria-label="Edit the prompt">
            <p class="muted small">
                {format!(
                    "In use: version {} ({}). Variables: {}",
                    prompt.current.version,
                    prompt.current.note,
                    prompt.variables.join(" ")
                )}
            </p>
            <label for="prompt-text">"System prompt"</label>
            <textarea id="prompt-text" rows="10" required maxlength="20000" bind:value=text prop:readonly=move || !writable.get()></textarea>
            <Show when=move || writable.get()>
                <label for="prompt-note">"What changed"</label>
                <input id="prompt-note" type="text" maxlength="200" bind:value=note/>
                <div class="actions">
                    <button type="submit">"Save prompt"</button>
                    <button
                        type="button"
                        class="secondary"
                        on:click={
                            let agent = restore_agent.clone();
                            move |_| { restore.dispatch(RestoreDefaultPrompt { agent: agent.clone() }); }
                        }
                    >
                        "Restore default"
                    </button>
                </div>
            </Show>
        </form>
        <h3>"History"</h3>
        <ol class="stack">
            {versions
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let previous = versions.get(i + 1).map(|p| p.version);
                    let label = format!(
                        "v{} · {} · {}{}",
                        v.version,
                        v.created_by,
                        v.created_at.as_ref().map(fmt_time).unwrap_or_default(),
                        if v.note.is_empty() { String::new() } else { format!(" · {}", v.note) }
                    );
                    let agent = agent.clone();
                    let to = v.version;
                    view! {
                        <li>
                            {label}
                            {previous.map(|from| view! {
                                " "
                                <button
                                    type="button"
                                    class="secondary"
                                    aria-label=format!("Compare v{to} with v{from}")
                                    on:click=move |_| {
                                        let agent = agent.clone();
                                        leptos::task::spawn_local(async move {
                                            diff.set(Some(diff_prompts(agent, from, to).await.map(|d| d.diff).map_err(|e| e.user_message())));
                                        });
                                    }
                                >
                                    "Changes"
                                </button>
                            })}
                        </li>
                    }
                })
                .collect_view()}
        </ol>
        {move || diff.get().map(|d| match d {
            Ok(text) => view! { <pre class="diff" data-testid="prompt-diff">{text}</pre> }.into_any(),
            Err(e) => view! { <p class="notice error" role="alert">{e}</p> }.into_any(),
        })}
    }
}
