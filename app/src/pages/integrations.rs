//! Integrations: outgoing webhooks (endpoints, their events and signing secrets, a delivery log
//! with replay), the same as `/api/v1/webhooks`; who sends email ([`EmailPanel`]); the tenant's
//! Google Calendar ([`GooglePanel`]); a Chatwoot inbox as a channel ([`ChatwootPanel`]).

use leptos::prelude::*;
use leptos_meta::Title;
use uuid::Uuid;

use super::chatwoot::ChatwootPanel;
use super::email::EmailPanel;
use super::google::GooglePanel;
use super::widgets::{
    can_write, fmt_time, show_error, use_me, ActionMessage, Cursors, Pager, ReadOnlyNote,
};
use crate::api::{
    list_webhook_deliveries, list_webhooks, CreateWebhook, DeleteWebhook, ReplayWebhookDelivery,
    RotateWebhookSecret, TestWebhook, UpdateWebhook,
};
use crate::types::{
    Area, DeliveryQuery, DeliveryState, Webhook, WebhookDelivery, WebhookEvent, WebhookSettings,
    WebhookWithSecret,
};

#[component]
pub fn IntegrationsPage() -> impl IntoView {
    let writable = can_write(use_me(), Area::Integrations);
    let create = ServerAction::<CreateWebhook>::new();
    let update = ServerAction::<UpdateWebhook>::new();
    let rotate = ServerAction::<RotateWebhookSecret>::new();
    let delete = ServerAction::<DeleteWebhook>::new();
    let test = ServerAction::<TestWebhook>::new();
    let replay = ServerAction::<ReplayWebhookDelivery>::new();
    let editing = RwSignal::new(None::<Uuid>);
    let creating = RwSignal::new(false);
    let webhooks = Resource::new(
        move || {
            (
                create.version().get(),
                update.version().get(),
                rotate.version().get(),
                delete.version().get(),
            )
        },
        |_| list_webhooks(),
    );
    // The secret, shown once after creating or rotating.
    let secret = Memo::new(move |_| {
        let made = create.value().get().and_then(Result::ok);
        let rotated = rotate.value().get().and_then(Result::ok);
        rotated.or(made)
    });
    Effect::new(move |_| {
        if matches!(create.value().get(), Some(Ok(_))) {
            creating.set(false);
        }
        if matches!(update.value().get(), Some(Ok(_))) {
            editing.set(None);
        }
    });
    let actions = Actions {
        update,
        rotate,
        delete,
        test,
        replay,
    };
    view! {
        <Title text="Integrations"/>
        <h1>"Integrations"</h1>
        <h2>"Webhooks"</h2>
        <p class="muted">
            "Your systems hear what happens as it happens: each event is POSTed as JSON to the endpoints that subscribe to it, signed with the endpoint's secret, and retried for hours when an endpoint is down. "
            <a href="/api/docs#tag/webhooks">"API"</a>
        </p>
        <ReadOnlyNote area=Area::Integrations/>
        {move || secret.get().map(|s| view! { <SecretNotice made=s/> })}
        <ActionMessage value=create.value() ok="Endpoint added."/>
        <ActionMessage value=update.value() ok="Endpoint saved."/>
        <ActionMessage value=delete.value() ok="Endpoint deleted."/>
        <ActionMessage value=test.value() ok="Test event queued: see its delivery below."/>
        <ActionMessage value=replay.value() ok="Delivery queued again."/>
        <Show when=move || writable.get() && !creating.get()>
            <button type="button" on:click=move |_| creating.set(true)>"Add endpoint"</button>
        </Show>
        <Show when=move || creating.get()>
            <section class="card">
                <h3>"New endpoint"</h3>
                <WebhookForm
                    initial=WebhookSettings::default()
                    label="Add endpoint"
                    prefix="new-webhook".to_string()
                    on_save=Callback::new(move |settings| {
                        create.dispatch(CreateWebhook { settings });
                    })
                    on_cancel=Callback::new(move |()| creating.set(false))
                />
            </section>
        </Show>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match webhooks.await {
                    Ok(list) if list.is_empty() => view! {
                        <p class="empty">"No endpoints yet. Add one to receive your events."</p>
                    }.into_any(),
                    Ok(list) => list
                        .into_iter()
                        .map(|w| view! { <WebhookCard w editing writable actions/> })
                        .collect_view()
                        .into_any(),
                    Err(e) => show_error(&e),
                }
            })}
        </Transition>
        <EmailPanel/>
        <GooglePanel/>
        <ChatwootPanel/>
    }
}

/// The actions every endpoint card dispatches.
#[derive(Clone, Copy)]
struct Actions {
    update: ServerAction<UpdateWebhook>,
    rotate: ServerAction<RotateWebhookSecret>,
    delete: ServerAction<DeleteWebhook>,
    test: ServerAction<TestWebhook>,
    replay: ServerAction<ReplayWebhookDelivery>,
}

#[component]
fn SecretNotice(made: WebhookWithSecret) -> impl IntoView {
    view! {
        <div class="notice ok" role="status">
            <p>{format!("Signing secret of {} — shown only now:", made.webhook.settings.url)}</p>
            <code class="secret" data-testid="webhook-secret">{made.secret}</code>
            <p class="muted">
                "Each request carries " <code>"X-Webhook-Timestamp"</code> " and "
                <code>"X-Webhook-Signature: sha256=<hex>"</code>
                ", the HMAC-SHA256 of " <code>"{timestamp}.{raw body}"</code>
                " under this secret. Compare in constant time and refuse timestamps older than five minutes."
            </p>
        </div>
    }
}

#[component]
fn WebhookCard(
    w: Webhook,
    editing: RwSignal<Option<Uuid>>,
    writable: Signal<bool>,
    actions: Actions,
) -> impl IntoView {
    let id = w.id;
    let log = RwSignal::new(false);
    let settings = w.settings.clone();
    let events = settings
        .events
        .iter()
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let initial = settings.clone();
    view! {
        <section class="card stack webhook-card">
            <h3 class="wrap">
                {settings.url.clone()}
                {(!settings.enabled).then(|| view! { <span class="badge">" disabled"</span> })}
            </h3>
            <dl class="facts">
                {(!settings.description.is_empty()).then(|| view! {
                    <dt>"Note"</dt><dd>{settings.description.clone()}</dd>
                })}
                <dt>"Events"</dt><dd>{events}</dd>
                <dt>"Changed"</dt><dd>{fmt_time(&w.updated_at)}</dd>
            </dl>
            <div class="actions">
                <button type="button" aria-expanded=move || log.get().to_string()
                    on:click=move |_| log.update(|l| *l = !*l)>
                    {move || if log.get() { "Hide deliveries" } else { "Deliveries" }}
                </button>
                <Show when=move || writable.get()>
                    <button type="button" on:click=move |_| {
                        actions.test.dispatch(TestWebhook { id });
                        log.set(true);
                    }>"Send test event"</button>
                    <button type="button" on:click=move |_| editing.set(Some(id))>"Edit"</button>
                    <button type="button" on:click=move |_| {
                        actions.rotate.dispatch(RotateWebhookSecret { id });
                    }>"New signing secret"</button>
                    <button type="button" class="danger" on:click=move |_| {
                        actions.delete.dispatch(DeleteWebhook { id });
                    }>"Delete"</button>
                </Show>
            </div>
            {move || (editing.get() == Some(id)).then(|| view! {
                <WebhookForm
                    initial=initial.clone()
                    label="Save endpoint"
                    prefix=format!("webhook-{id}")
                    on_save=Callback::new(move |settings| {
                        actions.update.dispatch(UpdateWebhook { id, settings });
                    })
                    on_cancel=Callback::new(move |()| editing.set(None))
                />
            })}
            {move || log.get().then(|| view! { <DeliveryLog id writable actions/> })}
        </section>
    }
}

/// The endpoint's deliveries, newest first, a page at a time, refreshed every few seconds.
#[component]
fn DeliveryLog(id: Uuid, writable: Signal<bool>, actions: Actions) -> impl IntoView {
    let state = RwSignal::new(String::new());
    let cursors = Cursors::new();
    let tick = RwSignal::new(0u32);
    Effect::new(move |_| {
        if let Ok(handle) = set_interval_with_handle(
            move || tick.update(|t| *t += 1),
            std::time::Duration::from_secs(3),
        ) {
            on_cleanup(move || handle.clear());
        }
    });
    let page = Resource::new(
        move || {
            (
                state.get(),
                cursors.current.get(),
                tick.get(),
                actions.test.version().get(),
                actions.replay.version().get(),
            )
        },
        move |(state, cursor, _, _, _)| {
            list_webhook_deliveries(
                id,
                DeliveryQuery {
                    state: DeliveryState::parse(&state),
                    cursor,
                    limit: Some(20),
                },
            )
        },
    );
    view! {
        <div class="stack">
            <div class="filters">
                <label>
                    "Show"
                    <select on:change=move |ev| {
                        state.set(event_target_value(&ev));
                        cursors.reset();
                    }>
                        <option value="">"All deliveries"</option>
                        <option value="pending">"Pending"</option>
                        <option value="delivered">"Delivered"</option>
                        <option value="failed">"Failed"</option>
                    </select>
                </label>
            </div>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match page.await {
                        Ok(page) if page.items.is_empty() => view! {
                            <p class="empty">"No deliveries yet. Send a test event to try the endpoint."</p>
                        }.into_any(),
                        Ok(page) => {
                            let next = page.next_cursor.clone();
                            view! {
                                <DeliveryTable items=page.items writable replay=actions.replay/>
                                <Pager cursors next back="Newer" forward="Older"/>
                            }.into_any()
                        }
                        Err(e) => show_error(&e),
                    }
                })}
            </Transition>
        </div>
    }
}

#[component]
fn DeliveryTable(
    items: Vec<WebhookDelivery>,
    writable: Signal<bool>,
    replay: ServerAction<ReplayWebhookDelivery>,
) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table>
                <thead>
                    <tr>
                        <th scope="col">"Created"</th>
                        <th scope="col">"Event"</th>
                        <th scope="col">"State"</th>
                        <th scope="col">"Attempts"</th>
                        <th scope="col">"Last answer"</th>
                        <th scope="col"><span class="sr-only">"Actions"</span></th>
                    </tr>
                </thead>
                <tbody>
                    {items
                        .into_iter()
                        .map(|d| {
                            let (webhook, delivery) = (d.webhook_id, d.id);
                            let done = d.state != DeliveryState::Pending;
                            let answer = match (d.response_status, &d.last_error) {
                                (Some(status), _) if d.last_error.is_none() => {
                                    format!("{status} in {} ms", d.duration_ms.unwrap_or(0))
                                }
                                (_, Some(error)) => error.clone(),
                                _ => String::new(),
                            };
                            let state = d.state.as_str();
                            let body = d.response_body.clone().filter(|b| !b.trim().is_empty());
                            view! {
                                <tr>
                                    <td>{fmt_time(&d.created_at)}</td>
                                    <td>
                                        <code>{d.event.as_str()}</code>
                                        {d.replay_of.map(|_| view! { <span class="badge">"replay"</span> })}
                                    </td>
                                    <td><span class=format!("badge delivery-{state}")>{state}</span></td>
                                    <td>{d.attempts}</td>
                                    <td class="small">
                                        {answer}
                                        {body.map(|b| view! {
                                            <details><summary>"Body"</summary><pre class="chunk">{b}</pre></details>
                                        })}
                                    </td>
                                    <td class="actions">
                                        <Show when=move || writable.get() && done>
                                            <button class="secondary" on:click=move |_| {
                                                replay.dispatch(ReplayWebhookDelivery { id: webhook, delivery });
                                            }>"Replay"</button>
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
fn WebhookForm(
    initial: WebhookSettings,
    label: &'static str,
    /// Makes the fields' ids unique on the page.
    prefix: String,
    on_save: Callback<WebhookSettings>,
    on_cancel: Callback<()>,
) -> impl IntoView {
    let url = RwSignal::new(initial.url.clone());
    let description = RwSignal::new(initial.description.clone());
    let enabled = RwSignal::new(initial.enabled);
    let chosen = RwSignal::new(initial.events.clone());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        on_save.run(WebhookSettings {
            url: url.get_untracked(),
            description: description.get_untracked(),
            events: chosen.get_untracked(),
            enabled: enabled.get_untracked(),
        });
    };
    let field = move |suffix: &str| format!("{prefix}-{suffix}");
    view! {
        <form class="stack" on:submit=submit>
            <label for=field("url")>"Endpoint URL (https://)"</label>
            <input id=field("url") type="url" required maxlength="2000"
                placeholder="https://example.com/hooks/agents" bind:value=url/>
            <label for=field("description")>"Note (optional)"</label>
            <input id=field("description") type="text" maxlength="200" bind:value=description/>
            <fieldset>
                <legend>"Events"</legend>
                {WebhookEvent::subscribable()
                    .map(|event| {
                        let id = field(&event.as_str().replace('.', "-"));
                        view! {
                            <div>
                                <input
                                    id=id.clone()
                                    type="checkbox"
                                    prop:checked=move || chosen.with(|c| c.contains(&event))
                                    on:change=move |ev| {
                                        let on = event_target_checked(&ev);
                                        chosen.update(|c| {
                                            c.retain(|e| *e != event);
                                            if on {
                                                c.push(event);
                                            }
                                        });
                                    }
                                />
                                <label for=id>
                                    <code>{event.as_str()}</code>" — "{event.describe()}
                                </label>
                            </div>
                        }
                    })
                    .collect_view()}
            </fieldset>
            <div>
                <input id=field("enabled") type="checkbox" bind:checked=enabled/>
                <label for=field("enabled")>"Enabled"</label>
            </div>
            <div class="actions">
                <button type="submit">{label}</button>
                <button type="button" on:click=move |_| on_cancel.run(())>"Cancel"</button>
            </div>
        </form>
    }
}
