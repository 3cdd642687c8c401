//! The audit log: filter by actor, action and time; newest first, a page at a time.

use chrono::{NaiveDate, TimeZone, Utc};
use leptos::prelude::*;
use leptos_meta::Title;

use super::widgets::{fmt_time, show_error};
use crate::api::list_audit;
use crate::types::{AuditEntry, AuditQuery};

fn day_start(date: &str) -> Option<chrono::DateTime<Utc>> {
    let day = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    Some(Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0)?))
}

fn non_empty(s: String) -> Option<String> {
    let s = s.trim().to_string();
    (!s.is_empty()).then_some(s)
}

#[component]
pub fn AuditPage() -> impl IntoView {
    let actor = RwSignal::new(String::new());
    let action = RwSignal::new(String::new());
    let since = RwSignal::new(String::new());
    let until = RwSignal::new(String::new());
    let query = RwSignal::new(AuditQuery::default());
    let entries = Resource::new(move || query.get(), list_audit);
    let apply = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        query.set(AuditQuery {
            actor: non_empty(actor.get_untracked()),
            action: non_empty(action.get_untracked()),
            since: day_start(&since.get_untracked()),
            until: day_start(&until.get_untracked()).map(|d| d + chrono::Duration::days(1)),
            cursor: None,
            limit: Some(50),
        });
    };
    view! {
        <Title text="Audit log"/>
        <h1>"Audit log"</h1>
        <form class="filters" on:submit=apply aria-label="Filter the audit log">
            <label>"Actor" <input type="text" placeholder="user:alice@example.com" bind:value=actor/></label>
            <label>"Action" <input type="text" placeholder="api_key.create" bind:value=action/></label>
            <label>"From" <input type="date" bind:value=since/></label>
            <label>"To" <input type="date" bind:value=until/></label>
            <button type="submit">"Filter"</button>
        </form>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match entries.await {
                    Ok(page) if page.items.is_empty() => {
                        view! { <p class="empty">"No entries match."</p> }.into_any()
                    }
                    Ok(page) => {
                        let next = page.next_cursor.clone();
                        view! {
                            <AuditTable items=page.items/>
                            <div class="pager">
                                <Show when=move || query.with(|q| q.cursor.is_some())>
                                    <button
                                        class="secondary"
                                        on:click=move |_| query.update(|q| q.cursor = None)
                                    >
                                        "Newest"
                                    </button>
                                </Show>
                                {next.map(|cursor| view! {
                                    <button
                                        class="secondary"
                                        on:click=move |_| {
                                            let cursor = cursor.clone();
                                            query.update(|q| q.cursor = Some(cursor));
                                        }
                                    >
                                        "Older entries"
                                    </button>
                                })}
                            </div>
                        }
                            .into_any()
                    }
                    Err(e) => show_error(&e),
                }
            })}
        </Transition>
    }
}

#[component]
fn AuditTable(items: Vec<AuditEntry>) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table>
                <thead>
                    <tr>
                        <th scope="col">"When"</th>
                        <th scope="col">"Actor"</th>
                        <th scope="col">"Action"</th>
                        <th scope="col">"Target"</th>
                        <th scope="col">"From"</th>
                    </tr>
                </thead>
                <tbody>
                    {items
                        .into_iter()
                        .map(|e| view! {
                            <tr>
                                <td>{fmt_time(&e.created_at)}</td>
                                <td>{e.actor}</td>
                                <td><code>{e.action}</code></td>
                                <td>{e.target}</td>
                                <td>{e.ip.unwrap_or_default()}</td>
                            </tr>
                        })
                        .collect_view()}
                </tbody>
            </table>
        </div>
    }
}
