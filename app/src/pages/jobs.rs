//! Background jobs: counts by kind and state, throughput, running jobs with their progress,
//! recent failures, and dead letters to retry or discard. Refreshes every few seconds.

use leptos::prelude::*;
use leptos_meta::Title;

use super::widgets::{can_write, fmt_time, show_error, use_me, ActionMessage, ReadOnlyNote};
use crate::api::{get_job_stats, list_job_schedules, list_jobs, DiscardJob, RetryJob};
use crate::error::AppError;
use crate::types::{Area, Job, JobQuery, JobSchedule, JobState, JobStats, Page};

fn query(state: JobState) -> JobQuery {
    JobQuery {
        state: Some(state),
        limit: Some(20),
        ..Default::default()
    }
}

#[component]
pub fn JobsPage() -> impl IntoView {
    let writable = can_write(use_me(), Area::Jobs);
    let retry = ServerAction::<RetryJob>::new();
    let discard = ServerAction::<DiscardJob>::new();
    let tick = RwSignal::new(0u32);
    // Live view: poll while the page is open (browser only).
    Effect::new(move |_| {
        if let Ok(handle) = set_interval_with_handle(
            move || tick.update(|t| *t += 1),
            std::time::Duration::from_secs(3),
        ) {
            on_cleanup(move || handle.clear());
        }
    });
    let version = move || (tick.get(), retry.version().get(), discard.version().get());
    let stats = Resource::new(version, |_| get_job_stats());
    let running = Resource::new(version, |_| list_jobs(query(JobState::Running)));
    let queued = Resource::new(version, |_| list_jobs(query(JobState::Queued)));
    let dead = Resource::new(version, |_| list_jobs(query(JobState::Dead)));
    let schedules = Resource::new(version, |_| list_job_schedules());
    view! {
        <Title text="Jobs"/>
        <h1>"Jobs"</h1>
        <p class="muted">
            "Work that runs in the background: document ingestion, email, calendar sync. "
            "Failed jobs are retried with growing pauses; after the last attempt they wait here."
        </p>
        <ReadOnlyNote area=Area::Jobs/>
        <ActionMessage value=retry.value() ok="Job queued again."/>
        <ActionMessage value=discard.value() ok="Job discarded."/>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match stats.await {
                    Ok(s) => view! { <StatsTable stats=s/> }.into_any(),
                    Err(e) => show_error(&e),
                }
            })}
            <h2>"Running"</h2>
            {listing(running, "Nothing is running.", |jobs| view! { <RunningList jobs/> }.into_any())}
            <h2>"Waiting (new, or retrying after a failure)"</h2>
            {listing(
                queued,
                "Nothing is waiting.",
                move |jobs| view! { <JobTable jobs retry discard writable/> }.into_any(),
            )}
            <h2>"Dead letters"</h2>
            {listing(
                dead,
                "No failed jobs.",
                move |jobs| view! { <JobTable jobs retry discard writable/> }.into_any(),
            )}
            <h2>"Schedules"</h2>
            {move || Suspend::new(async move {
                match schedules.await {
                    Ok(list) if list.is_empty() => {
                        view! { <p class="empty">"No recurring jobs."</p> }.into_any()
                    }
                    Ok(list) => view! { <ScheduleTable list/> }.into_any(),
                    Err(e) => show_error(&e),
                }
            })}
        </Transition>
    }
}

/// A list of jobs once loaded: its empty state, or `render`ed.
fn listing(
    jobs: Resource<Result<Page<Job>, AppError>>,
    empty: &'static str,
    render: impl Fn(Vec<Job>) -> AnyView + Copy + Send + Sync + 'static,
) -> impl IntoView {
    move || {
        Suspend::new(async move {
            match jobs.await {
                Ok(page) if page.items.is_empty() => {
                    view! { <p class="empty">{empty}</p> }.into_any()
                }
                Ok(page) => render(page.items),
                Err(e) => show_error(&e),
            }
        })
    }
}

#[component]
fn StatsTable(stats: JobStats) -> impl IntoView {
    let mut kinds: Vec<String> = stats.counts.iter().map(|c| c.kind.clone()).collect();
    kinds.dedup();
    let count = move |kind: &str, state: JobState| {
        stats
            .counts
            .iter()
            .find(|c| c.kind == kind && c.state == state)
            .map_or(0, |c| c.count)
    };
    view! {
        <p>
            {format!(
                "Last hour: {} succeeded, {} failed for good.",
                stats.succeeded_last_hour, stats.dead_last_hour
            )}
        </p>
        {if kinds.is_empty() {
            view! { <p class="empty">"No jobs yet."</p> }.into_any()
        } else {
            view! {
                <div class="table-wrap">
                    <table>
                        <thead>
                            <tr>
                                <th scope="col">"Kind"</th>
                                {JobState::ALL
                                    .into_iter()
                                    .map(|s| view! { <th scope="col">{s.as_str()}</th> })
                                    .collect_view()}
                            </tr>
                        </thead>
                        <tbody>
                            {kinds
                                .into_iter()
                                .map(|kind| {
                                    let cells = JobState::ALL
                                        .into_iter()
                                        .map(|s| view! { <td>{count(&kind, s)}</td> })
                                        .collect_view();
                                    view! { <tr><td><code>{kind.clone()}</code></td>{cells}</tr> }
                                })
                                .collect_view()}
                        </tbody>
                    </table>
                </div>
            }
                .into_any()
        }}
    }
}

#[component]
fn RunningList(jobs: Vec<Job>) -> impl IntoView {
    view! {
        <ul class="stack">
            {jobs
                .into_iter()
                .map(|job| {
                    let label = format!("{} (attempt {})", job.kind, job.attempts);
                    view! {
                        <li>
                            <label>
                                {label}
                                <progress max="100" value=job.progress.to_string()>
                                    {format!("{} %", job.progress)}
                                </progress>
                                {format!(" {} %", job.progress)}
                            </label>
                        </li>
                    }
                })
                .collect_view()}
        </ul>
    }
}

#[component]
fn JobTable(
    jobs: Vec<Job>,
    retry: ServerAction<RetryJob>,
    discard: ServerAction<DiscardJob>,
    writable: Signal<bool>,
) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table>
                <thead>
                    <tr>
                        <th scope="col">"Kind"</th>
                        <th scope="col">"Enqueued"</th>
                        <th scope="col">"Attempts"</th>
                        <th scope="col">"Last error"</th>
                        <th scope="col">"Next attempt"</th>
                        <th scope="col"><span class="sr-only">"Actions"</span></th>
                    </tr>
                </thead>
                <tbody>
                    {jobs
                        .into_iter()
                        .map(|job| {
                            let id = job.id;
                            let dead = job.state == JobState::Dead;
                            let kind = job.kind.clone();
                            view! {
                                <tr>
                                    <td><code>{job.kind.clone()}</code></td>
                                    <td>{fmt_time(&job.enqueued_at)}</td>
                                    <td>{format!("{} / {}", job.attempts, job.max_attempts)}</td>
                                    <td class="small">{job.last_error.clone().unwrap_or_default()}</td>
                                    <td>{if dead { String::new() } else { fmt_time(&job.run_at) }}</td>
                                    <td class="actions">
                                        <Show when=move || writable.get() && dead>
                                            <button
                                                class="secondary"
                                                aria-label=format!("Retry {kind}")
                                                on:click=move |_| { retry.dispatch(RetryJob { id }); }
                                            >
                                                "Retry"
                                            </button>
                                        </Show>
                                        <Show when=move || writable.get()>
                                            <button
                                                class="danger"
                                                on:click=move |_| { discard.dispatch(DiscardJob { id }); }
                                            >
                                                "Discard"
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
fn ScheduleTable(list: Vec<JobSchedule>) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table>
                <thead>
                    <tr>
                        <th scope="col">"Name"</th>
                        <th scope="col">"Kind"</th>
                        <th scope="col">"When (cron)"</th>
                        <th scope="col">"Time zone"</th>
                        <th scope="col">"Next run"</th>
                        <th scope="col">"Last run"</th>
                    </tr>
                </thead>
                <tbody>
                    {list
                        .into_iter()
                        .map(|s| {
                            view! {
                                <tr>
                                    <td>{s.name.clone()}{(!s.enabled).then_some(" (off)")}</td>
                                    <td><code>{s.kind.clone()}</code></td>
                                    <td><code>{s.cron.clone()}</code></td>
                                    <td>{s.timezone.clone()}</td>
                                    <td>{fmt_time(&s.next_run_at)}</td>
                                    <td>{s.last_run_at.as_ref().map(fmt_time).unwrap_or_default()}</td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        </div>
    }
}
