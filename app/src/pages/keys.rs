//! API keys: create (the secret is shown once), list, revoke.

use leptos::prelude::*;
use leptos_meta::Title;

use super::widgets::{can_write, fmt_time, show_error, use_me, ActionMessage, ReadOnlyNote};
use crate::api::{list_api_keys, IssueApiKey, RevokeApiKey};
use crate::types::{ApiKey, Area, CreateApiKey};

#[component]
pub fn ApiKeysPage() -> impl IntoView {
    let writable = can_write(use_me(), Area::ApiKeys);
    let issue = ServerAction::<IssueApiKey>::new();
    let revoke = ServerAction::<RevokeApiKey>::new();
    let keys = Resource::new(
        move || (issue.version().get(), revoke.version().get()),
        |_| list_api_keys(),
    );
    view! {
        <Title text="API keys"/>
        <h1>"API keys"</h1>
        <p class="muted">
            "Keys let your own systems call the REST API as this tenant. Send one as "
            <code>"Authorization: Bearer <key>"</code> "."
        </p>
        <ReadOnlyNote area=Area::ApiKeys/>
        <Show when=move || writable.get()>
            <CreateKeyForm issue/>
        </Show>
        <ActionMessage value=revoke.value() ok="Key revoked."/>
        <h2>"Keys"</h2>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match keys.await {
                    Ok(list) if list.is_empty() => {
                        view! { <p class="empty">"No API keys yet."</p> }.into_any()
                    }
                    Ok(list) => view! { <KeyTable list revoke writable/> }.into_any(),
                    Err(e) => show_error(&e),
                }
            })}
        </Transition>
    }
}

#[component]
fn CreateKeyForm(issue: ServerAction<IssueApiKey>) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let levels: Vec<(Area, RwSignal<String>)> = Area::ALL
        .into_iter()
        .map(|a| (a, RwSignal::new("read".to_string())))
        .collect();
    let selected = levels.clone();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let scopes = selected
            .iter()
            .filter_map(|(area, level)| {
                let level = level.get_untracked();
                (!level.is_empty()).then(|| format!("{}:{level}", area.as_str()))
            })
            .collect();
        issue.dispatch(IssueApiKey {
            create: CreateApiKey {
                name: name.get_untracked(),
                scopes,
            },
        });
    };
    view! {
        <form class="card stack" on:submit=submit aria-labelledby="new-key">
            <h2 id="new-key">"New key"</h2>
            <label for="key-name">"Name"</label>
            <input
                id="key-name"
                type="text"
                maxlength="100"
                placeholder="e.g. CRM sync"
                bind:value=name
            />
            <fieldset>
                <legend>"Permissions"</legend>
                <div class="scope-grid">
                    {levels
                        .into_iter()
                        .map(|(area, level)| {
                            let id = format!("scope-{}", area.as_str());
                            view! {
                                <label for=id.clone()>{area.as_str().replace('_', " ")}</label>
                                <select
                                    id=id
                                    on:change=move |ev| level.set(event_target_value(&ev))
                                    prop:value=move || level.get()
                                >
                                    <option value="">"none"</option>
                                    <option value="read">"read"</option>
                                    <option value="write">"read + write"</option>
                                </select>
                            }
                        })
                        .collect_view()}
                </div>
            </fieldset>
            <button type="submit" disabled=move || issue.pending().get()>"Create key"</button>
            {move || match issue.value().get() {
                Some(Ok(created)) => view! {
                    <div class="notice ok secret" role="status">
                        <p>"Copy this key now. It will not be shown again."</p>
                        <code data-testid="new-secret">{created.secret}</code>
                    </div>
                }
                    .into_any(),
                Some(Err(e)) => show_error(&e),
                None => ().into_any(),
            }}
        </form>
    }
}

#[component]
fn KeyTable(
    list: Vec<ApiKey>,
    revoke: ServerAction<RevokeApiKey>,
    writable: Signal<bool>,
) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table>
                <thead>
                    <tr>
                        <th scope="col">"Name"</th>
                        <th scope="col">"Key"</th>
                        <th scope="col">"Permissions"</th>
                        <th scope="col">"Created"</th>
                        <th scope="col">"Last used"</th>
                        <th scope="col">"Status"</th>
                    </tr>
                </thead>
                <tbody>
                    {list
                        .into_iter()
                        .map(|key| {
                            let id = key.id;
                            let active = key.revoked_at.is_none();
                            view! {
                                <tr>
                                    <td>{key.name.clone()}</td>
                                    <td><code>{format!("{}…", key.prefix)}</code></td>
                                    <td class="small">{key.scopes.join(", ")}</td>
                                    <td>{fmt_time(&key.created_at)}</td>
                                    <td>{key.last_used_at.as_ref().map(fmt_time).unwrap_or_else(|| "never".into())}</td>
                                    <td>
                                        {if active {
                                            view! {
                                                <button
                                                    class="danger"
                                                    disabled=move || !writable.get()
                                                    aria-label=format!("Revoke {}", key.name)
                                                    on:click=move |_| {
                                                        revoke.dispatch(RevokeApiKey { id });
                                                    }
                                                >
                                                    "Revoke"
                                                </button>
                                            }
                                                .into_any()
                                        } else {
                                            view! { <span class="badge">"revoked"</span> }.into_any()
                                        }}
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
