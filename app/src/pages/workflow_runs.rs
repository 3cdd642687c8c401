//! A workflow's runs (list, filters, one run's trace on the canvas, approve / reject / cancel,
//! run again with the same input, compare two runs) and its versions (restore, compare, export,
//! delete).

use std::collections::BTreeSet;

use leptos::prelude::*;
use leptos_router::hooks::use_navigate;
use uuid::Uuid;

use super::widgets::{fmt_time, show_error, Cursors, Pager};
use super::workflow_editor::{pretty, Ed};
use crate::api::{
    cancel_workflow_run, decide_workflow_run, delete_workflow, diff_workflow_versions,
    get_workflow_run, list_workflow_runs, list_workflow_versions, restore_workflow_version,
    start_workflow_run,
};
use crate::types::{
    ApprovalDecision, RunDetail, RunQuery, RunStatus, RunWait, StartRun, WorkflowRun,
};

/// Shows run `run` on the canvas and keeps it current until it is over (or another is shown).
pub(super) fn follow(ed: Ed, run: Uuid) {
    leptos::task::spawn_local(async move {
        let result = get_workflow_run(run).await;
        // The editor may have been closed meanwhile.
        let Some(shown) = ed
            .trace
            .try_with_untracked(|t| t.as_ref().map(|d| d.run.id))
        else {
            return;
        };
        if shown.is_some_and(|id| id != run) {
            return;
        }
        match result {
            Ok(detail) => {
                let over = detail.run.status.is_final()
                    && (detail.run.status == RunStatus::Succeeded
                        || detail.run.compensation.is_some());
                let pause = if detail.run.status == RunStatus::Waiting {
                    3000
                } else {
                    800
                };
                ed.trace.set(Some(detail));
                if !over {
                    set_timeout(
                        move || {
                            if ed
                                .trace
                                .try_with_untracked(|t| t.as_ref().map(|d| d.run.id))
                                == Some(Some(run))
                            {
                                follow(ed, run);
                            }
                        },
                        std::time::Duration::from_millis(pause),
                    );
                }
            }
            Err(e) => ed.say.set(e.user_message()),
        }
    });
}

fn status_class(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Succeeded => "badge status-ready",
        RunStatus::Failed | RunStatus::Cancelled => "badge status-failed",
        _ => "badge status-queued",
    }
}

/// The run shown on the canvas: where it is, its steps, what was undone, and what can be done.
#[component]
pub(super) fn TraceSummary(ed: Ed, detail: RunDetail) -> impl IntoView {
    let run = detail.run.clone();
    let run_id = run.id;
    let comment = RwSignal::new(String::new());
    let outcome = RwSignal::new(None::<Result<String, String>>);
    let act = move |work: std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<String, String>>>,
    >| {
        leptos::task::spawn_local(async move {
            let r = work.await;
            outcome.set(Some(r));
            follow(ed, run_id);
        });
    };
    let decide = move |approved: bool| {
        let decision = ApprovalDecision {
            approved,
            comment: comment.get_untracked(),
        };
        act(Box::pin(async move {
            decide_workflow_run(run_id, decision)
                .await
                .map(|_| if approved { "Approved." } else { "Rejected." }.to_string())
                .map_err(|e| e.user_message())
        }));
    };
    let cancel = move |_| {
        act(Box::pin(async move {
            cancel_workflow_run(run_id)
                .await
                .map(|_| "Cancelled: what it did is being undone.".to_string())
                .map_err(|e| e.user_message())
        }));
    };
    let input = run.input.clone();
    let again = move |_| {
        let start = StartRun {
            input: input.clone(),
            version: None,
        };
        let id = ed.id;
        leptos::task::spawn_local(async move {
            match start_workflow_run(id, start).await {
                Ok(r) => {
                    ed.trace.set(None);
                    follow(ed, r.id);
                }
                Err(e) => outcome.set(Some(Err(e.user_message()))),
            }
        });
    };
    let waiting = run.waiting.clone();
    let approval = matches!(waiting, Some(RunWait::Approval { .. }));
    let unfinished = !run.status.is_final();
    view! {
        <section class="card wf-trace" aria-label="Run" data-testid="run-trace">
            <div class="wf-panel-head">
                <h2>
                    {format!("Run of version {} ", run.version)}
                    <span class=status_class(run.status) data-testid="run-status">{run.status.as_str()}</span>
                </h2>
                <button type="button" class="secondary" on:click=move |_| ed.trace.set(None)>"Back to the draft"</button>
            </div>
            <p class="small muted">
                {format!("Started {} by {} ({}); {} step(s).", fmt_time(&run.created_at), run.created_by, run.trigger, run.steps)}
                {(run.usage.llm_calls > 0).then(|| format!(
                    " The model was asked {} time(s): {} + {} tokens, ${:.4}.",
                    run.usage.llm_calls, run.usage.prompt_tokens, run.usage.completion_tokens, run.usage.cost_usd
                ))}
            </p>
            {run.error.clone().map(|e| view! { <p class="error-text">{e}</p> })}
            {run.compensation.map(|c| view! {
                <p data-testid="run-compensation">{format!("Undone: {}.", match c.as_str() {
                    "full" => "everything it did",
                    "partial" => "partly (see below)",
                    _ => "nothing needed undoing",
                })}</p>
            })}
            {match waiting {
                Some(RunWait::Approval { prompt, node }) => Some(view! {
                    <p>{format!("Waiting at {node} for a decision: {prompt}")}</p>
                }.into_any()),
                Some(RunWait::Until { node, at }) => Some(view! { <p>{format!("Waiting at {node} until {}.", fmt_time(&at))}</p> }.into_any()),
                Some(RunWait::Retry { node, attempt, at }) => Some(view! {
                    <p>{format!("{node} failed; try {} at {}.", attempt + 1, fmt_time(&at))}</p>
                }.into_any()),
                None => None,
            }}
            {run.output.clone().map(|o| view! { <p>"Output: "<code>{o.to_string()}</code></p> })}
            <div class="actions">
                {approval.then(|| view! {
                    <input type="text" maxlength="1000" placeholder="Comment (optional)" aria-label="Comment"
                        prop:value=move || comment.get() on:input=move |ev| comment.set(event_target_value(&ev))/>
                    <button type="button" disabled=move || !ed.writable.get() on:click=move |_| decide(true)>"Approve"</button>
                    <button type="button" class="danger" disabled=move || !ed.writable.get() on:click=move |_| decide(false)>"Reject"</button>
                })}
                {unfinished.then(|| view! {
                    <button type="button" class="danger" disabled=move || !ed.writable.get() on:click=cancel>"Cancel the run"</button>
                })}
                <button type="button" class="secondary" disabled=move || !ed.writable.get() on:click=again>"Run again with this input"</button>
            </div>
            <Outcome outcome/>
            <details open=true>
                <summary>{format!("Steps ({})", detail.steps.len())}</summary>
                <div class="table-wrap">
                    <table data-testid="run-steps">
                        <thead><tr>
                            <th scope="col">"#"</th><th scope="col">"Step"</th><th scope="col">"Try"</th>
                            <th scope="col">"Status"</th><th scope="col">"ms"</th><th scope="col">"Output or error"</th>
                        </tr></thead>
                        <tbody>
                            {detail.steps.iter().map(|s| view! {
                                <tr>
                                    <td>{s.seq}</td>
                                    <td><code>{s.node.clone()}</code></td>
                                    <td>{s.attempt}</td>
                                    <td>{s.status.as_str()}{s.port.clone().filter(|p| p != "out").map(|p| format!(" → {p}"))}</td>
                                    <td>{s.duration_ms.map(|d| d.to_string()).unwrap_or_default()}</td>
                                    <td class="small wrap">{s.error.clone().unwrap_or_else(|| s.output.as_ref().map(short).unwrap_or_default())}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                </div>
            </details>
            {(!detail.branches.is_empty()).then(|| view! {
                <details open=true>
                    <summary>{format!("Branches ({}), each a run of its own", detail.branches.len())}</summary>
                    <div class="table-wrap">
                        <table data-testid="run-branches">
                            <thead><tr>
                                <th scope="col">"Starts at"</th><th scope="col">"Status"</th><th scope="col">"Steps"</th>
                                <th scope="col">"Undone"</th><th scope="col">"Error"</th>
                            </tr></thead>
                            <tbody>
                                {detail.branches.iter().map(|b| view! {
                                    <tr>
                                        <td><code>{b.steps.first().map(|s| s.node.clone()).unwrap_or_default()}</code></td>
                                        <td><span class=status_class(b.run.status)>{b.run.status.as_str()}</span></td>
                                        <td>{b.run.steps}</td>
                                        <td>{b.run.compensation.map(|c| c.as_str()).unwrap_or("")}</td>
                                        <td class="small wrap">{b.run.error.clone().unwrap_or_default()}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                </details>
            })}
            {(!detail.compensations.is_empty()).then(|| view! {
                <details open=true>
                    <summary>{format!("Undo actions ({}), run newest first", detail.compensations.len())}</summary>
                    <div class="table-wrap">
                        <table data-testid="run-compensations">
                            <thead><tr>
                                <th scope="col">"Of step"</th><th scope="col">"Step"</th><th scope="col">"Status"</th>
                                <th scope="col">"Tries"</th><th scope="col">"Error"</th>
                            </tr></thead>
                            <tbody>
                                {detail.compensations.iter().rev().map(|c| view! {
                                    <tr>
                                        <td>{c.seq}</td>
                                        <td><code>{c.node.clone()}</code></td>
                                        <td>{c.status.as_str()}</td>
                                        <td>{c.attempts}</td>
                                        <td class="small wrap">{c.error.clone().unwrap_or_default()}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                </details>
            })}
        </section>
    }
}

/// What the last action said: a confirmation or why it was refused.
#[component]
fn Outcome(outcome: RwSignal<Option<Result<String, String>>>) -> impl IntoView {
    move || {
        outcome.get().map(|r| match r {
            Ok(m) => view! { <p class="notice ok" role="status">{m}</p> }.into_any(),
            Err(m) => view! { <p class="notice error" role="alert">{m}</p> }.into_any(),
        })
    }
}

/// A value's JSON, cut to what fits a table cell.
fn short(v: &serde_json::Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 200 {
        format!("{}…", text.chars().take(200).collect::<String>())
    } else {
        text
    }
}

#[component]
pub(super) fn RunsTab(ed: Ed, on_show: Callback<()>) -> impl IntoView {
    let status = RwSignal::new(String::new());
    let trigger = RwSignal::new(String::new());
    let version = RwSignal::new(String::new());
    let cursors = Cursors::new();
    let chosen = RwSignal::new(BTreeSet::<Uuid>::new());
    let tick = RwSignal::new(0u32);
    let runs = Resource::new(
        move || {
            (
                status.get(),
                trigger.get(),
                version.get(),
                cursors.current.get(),
                tick.get(),
            )
        },
        move |(status, trigger, version, cursor, _)| {
            list_workflow_runs(
                ed.id,
                RunQuery {
                    status: RunStatus::parse(&status),
                    version: version.trim().parse().ok(),
                    trigger: Some(trigger.trim().to_string()).filter(|t| !t.is_empty()),
                    cursor,
                    limit: Some(20),
                },
            )
        },
    );
    let compare = RwSignal::new(None::<(RunDetail, RunDetail)>);
    let do_compare = move |_| {
        let ids: Vec<Uuid> = chosen.get_untracked().into_iter().collect();
        if let [a, b] = ids[..] {
            leptos::task::spawn_local(async move {
                match (get_workflow_run(a).await, get_workflow_run(b).await) {
                    (Ok(a), Ok(b)) => compare.set(Some((a, b))),
                    (Err(e), _) | (_, Err(e)) => ed.say.set(e.user_message()),
                }
            });
        }
    };
    let filter = move |signal: RwSignal<String>| {
        move |ev: leptos::ev::Event| {
            signal.set(event_target_value(&ev));
            cursors.reset();
        }
    };
    view! {
        <h2>"Runs"</h2>
        <div class="filters">
            <label>"Status"
                <select on:change=filter(status) prop:value=move || status.get()>
                    <option value="">"Any"</option>
                    {RunStatus::ALL.iter().map(|s| view! { <option value=s.as_str()>{s.as_str()}</option> }).collect_view()}
                </select>
            </label>
            <label>"Version"<input type="number" min="1" on:change=filter(version) prop:value=move || version.get()/></label>
            <label>"Started from"<input type="text" maxlength="40" placeholder="console, api, …" on:change=filter(trigger) prop:value=move || trigger.get()/></label>
            <button type="button" class="secondary" on:click=move |_| tick.update(|t| *t += 1)>"Refresh"</button>
            <button type="button" class="secondary" disabled=move || chosen.with(|c| c.len() != 2) on:click=do_compare>"Compare the two chosen"</button>
        </div>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match runs.await {
                    Ok(page) if page.items.is_empty() => view! {
                        <p class="empty">"No runs yet. Publish the workflow, then use Run… in the editor or the API."</p>
                    }.into_any(),
                    Ok(page) => view! {
                        <RunTable runs=page.items ed on_show chosen/>
                        <Pager cursors next=page.next_cursor back="Newer runs" forward="Older runs"/>
                    }.into_any(),
                    Err(e) => show_error(&e),
                }
            })}
        </Transition>
        {move || compare.get().map(|(a, b)| view! { <Comparison a b/> })}
    }
}

#[component]
fn RunTable(
    runs: Vec<WorkflowRun>,
    ed: Ed,
    on_show: Callback<()>,
    chosen: RwSignal<BTreeSet<Uuid>>,
) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table data-testid="runs">
                <thead><tr>
                    <th scope="col"><span class="sr-only">"Compare"</span></th>
                    <th scope="col">"Started"</th><th scope="col">"Status"</th><th scope="col">"Version"</th>
                    <th scope="col">"From"</th><th scope="col">"Steps"</th><th scope="col"><span class="sr-only">"Open"</span></th>
                </tr></thead>
                <tbody>
                    {runs.into_iter().map(|r| {
                        let id = r.id;
                        let when = fmt_time(&r.created_at);
                        view! {
                            <tr>
                                <td><input type="checkbox" aria-label=format!("Choose the run of {when} to compare")
                                    prop:checked=move || chosen.with(|c| c.contains(&id))
                                    on:change=move |ev| {
                                        let on = event_target_checked(&ev);
                                        chosen.update(|c| { if on { c.insert(id); } else { c.remove(&id); } });
                                    }/></td>
                                <td>{when.clone()}</td>
                                <td><span class=status_class(r.status)>{r.status.as_str()}</span>
                                    {r.compensation.map(|c| format!(" (undone: {})", c.as_str()))}</td>
                                <td>{r.version}</td>
                                <td>{r.trigger.clone()}</td>
                                <td>{r.steps}</td>
                                <td><button type="button" class="secondary" on:click=move |_| {
                                    ed.trace.set(None);
                                    follow(ed, id);
                                    on_show.run(());
                                }>"Show on the canvas"</button></td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}

/// Two runs side by side, step by step.
#[component]
fn Comparison(a: RunDetail, b: RunDetail) -> impl IntoView {
    let mut nodes: Vec<String> = Vec::new();
    for s in a.steps.iter().chain(&b.steps) {
        if !nodes.contains(&s.node) {
            nodes.push(s.node.clone());
        }
    }
    let cell = |d: &RunDetail, node: &str| {
        let steps: Vec<_> = d.steps.iter().filter(|s| s.node == node).collect();
        match steps.last() {
            None => "—".to_string(),
            Some(s) => format!(
                "{}{} · {} ms · {}",
                s.status.as_str(),
                if steps.len() > 1 {
                    format!(" ({} tries)", steps.len())
                } else {
                    String::new()
                },
                steps
                    .iter()
                    .map(|s| s.duration_ms.unwrap_or(0))
                    .sum::<u32>(),
                s.error
                    .clone()
                    .unwrap_or_else(|| s.output.as_ref().map(short).unwrap_or_default()),
            ),
        }
    };
    let rows = nodes
        .iter()
        .map(|n| {
            let (x, y) = (cell(&a, n), cell(&b, n));
            let differs = x != y;
            view! {
                <tr class:differs=differs><td><code>{n.clone()}</code></td><td class="small wrap">{x}</td><td class="small wrap">{y}</td></tr>
            }
        })
        .collect_view();
    view! {
        <h2>"Comparison"</h2>
        <div class="table-wrap">
            <table data-testid="comparison">
                <thead><tr>
                    <th scope="col">"Step"</th>
                    <th scope="col">{format!("{} · v{} · {}", fmt_time(&a.run.created_at), a.run.version, a.run.status.as_str())}</th>
                    <th scope="col">{format!("{} · v{} · {}", fmt_time(&b.run.created_at), b.run.version, b.run.status.as_str())}</th>
                </tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
}

#[component]
pub(super) fn VersionsTab(ed: Ed, on_show: Callback<()>) -> impl IntoView {
    let tick = RwSignal::new(0u32);
    let versions = Resource::new(move || tick.get(), move |_| list_workflow_versions(ed.id));
    let outcome = RwSignal::new(None::<Result<String, String>>);
    let restore = move |number: u32| {
        leptos::task::spawn_local(async move {
            match restore_workflow_version(ed.id, number).await {
                Ok(w) => {
                    ed.reload(w);
                    ed.diff.set(None);
                    outcome.set(Some(Ok(format!("Version {number} is the draft again."))));
                    on_show.run(());
                }
                Err(e) => outcome.set(Some(Err(e.user_message()))),
            }
        });
    };
    // Drawn over the canvas, which shows the draft: a version is compared with the draft.
    let compare = move |number: u32| {
        leptos::task::spawn_local(async move {
            match diff_workflow_versions(ed.id, number, None).await {
                Ok(d) => {
                    ed.trace.set(None);
                    ed.diff.set(Some(d));
                    on_show.run(());
                }
                Err(e) => outcome.set(Some(Err(e.user_message()))),
            }
        });
    };
    let export = move || ed.def.with(pretty);
    let confirming = RwSignal::new(false);
    let navigate = use_navigate();
    let remove = move |_| {
        let navigate = navigate.clone();
        leptos::task::spawn_local(async move {
            match delete_workflow(ed.id).await {
                Ok(()) => navigate("/workflows", Default::default()),
                Err(e) => outcome.set(Some(Err(e.user_message()))),
            }
        });
    };
    view! {
        <h2>"Versions"</h2>
        <p class="muted small">"Publishing makes the draft a numbered version; runs keep the version they started on."</p>
        <Outcome outcome/>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match versions.await {
                    Ok(list) if list.is_empty() => view! { <p class="empty">"Nothing published yet."</p> }.into_any(),
                    Ok(list) => view! {
                        <div class="table-wrap">
                            <table data-testid="versions">
                                <thead><tr>
                                    <th scope="col">"Version"</th><th scope="col">"Note"</th><th scope="col">"By"</th>
                                    <th scope="col">"When"</th><th scope="col"><span class="sr-only">"Actions"</span></th>
                                </tr></thead>
                                <tbody>
                                    {list.into_iter().map(|v| {
                                        let n = v.number;
                                        view! {
                                            <tr>
                                                <td>{n}</td>
                                                <td>{v.note.clone()}</td>
                                                <td>{v.created_by.clone()}</td>
                                                <td>{fmt_time(&v.created_at)}</td>
                                                <td class="actions">
                                                    <button type="button" class="secondary" disabled=move || !ed.writable.get()
                                                        aria-label=format!("Restore version {n} into the draft")
                                                        on:click=move |_| restore(n)>"Restore"</button>
                                                    <button type="button" class="secondary"
                                                        aria-label=format!("Compare version {n} with the draft")
                                                        on:click=move |_| compare(n)>"Compare with the draft"</button>
                                                </td>
                                            </tr>
                                        }
                                    }).collect_view()}
                                </tbody>
                            </table>
                        </div>
                    }.into_any(),
                    Err(e) => show_error(&e),
                }
            })}
        </Transition>
        <h2>"Export"</h2>
        <p class="muted small">"The draft as JSON: import it as a new workflow here or in another tenant."</p>
        <textarea class="snippet" rows="8" readonly=true aria-label="The draft as JSON" prop:value=export></textarea>
        <h2>"Delete"</h2>
        <div class="confirm">
            <Show when=move || confirming.get() fallback=move || view! {
                <button type="button" class="danger" disabled=move || !ed.writable.get()
                    on:click=move |_| confirming.set(true)>"Delete this workflow"</button>
            }>
                <span>"Delete it with its versions and runs?"</span>
                <button type="button" class="danger" on:click=remove.clone()>"Yes, delete"</button>
                <button type="button" class="secondary" on:click=move |_| confirming.set(false)>"Keep it"</button>
            </Show>
        </div>
    }
}
