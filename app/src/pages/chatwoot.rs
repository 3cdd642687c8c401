//! A Chatwoot inbox as a channel (a panel of the Integrations page): connect the inbox's agent
//! bot, see where Chatwoot must send its events and whether they arrive, rotate the webhook
//! secret, disconnect. The same as `/api/v1/chatwoot`.

use leptos::prelude::*;

use super::widgets::{
    can_write, fmt_time, show_error, successes, use_me, ActionMessage, ConfirmDisconnect,
};
use crate::api::{get_chatwoot, DeleteChatwoot, RotateChatwootSecret, SaveChatwoot};
use crate::types::{Area, ChatwootConnection, ChatwootSettings};

#[component]
pub fn ChatwootPanel() -> impl IntoView {
    let writable = can_write(use_me(), Area::Integrations);
    let save = ServerAction::<SaveChatwoot>::new();
    let rotate = ServerAction::<RotateChatwootSecret>::new();
    let delete = ServerAction::<DeleteChatwoot>::new();
    // Read again after a successful save only: a refused one keeps the form as typed.
    let saved = successes(save);
    let connection = Resource::new(
        move || (saved.get(), rotate.version().get(), delete.version().get()),
        |_| get_chatwoot(),
    );
    // The webhook secret, shown once after connecting or rotating.
    let secret = Memo::new(move |_| {
        let made = save.value().get().and_then(Result::ok);
        let rotated = rotate.value().get().and_then(Result::ok);
        rotated
            .or(made)
            .and_then(|c| c.webhook_secret.map(|s| (c.webhook_url, s)))
    });
    view! {
        <section class="card stack" aria-labelledby="chatwoot-heading">
            <h2 id="chatwoot-heading">"Chatwoot"</h2>
            <p class="muted">
                "Your agents answer the customers of a Chatwoot inbox through an agent bot. When an agent hands a conversation over, it opens in Chatwoot for your team with a private note saying why, and the bot stays silent until the conversation goes back to pending. Voice messages are transcribed when the platform has a transcription service. "
                <a href="/api/docs#tag/chatwoot">"API"</a>
            </p>
            <details>
                <summary>"How to connect"</summary>
                <ol>
                    <li>"In Chatwoot, create an agent bot (Settings → Bots, or the super admin console) and copy its access token."</li>
                    <li>"Give the inbox to the bot: the inbox's settings → Bot configuration."</li>
                    <li>"Enter your Chatwoot address, the account id (the number after /accounts/ in Chatwoot's addresses), the inbox id and the token below, and connect."</li>
                    <li>"Set the bot's webhook URL to the address shown after connecting, with the secret shown once: every event is signed with it."</li>
                </ol>
            </details>
            {move || secret.get().map(|(url, s)| view! {
                <div class="notice ok" role="status">
                    <p>"Webhook secret — shown only now. Chatwoot signs each event to"</p>
                    <code class="secret">{url}</code>
                    <p>"with it:"</p>
                    <code class="secret" data-testid="chatwoot-secret">{s}</code>
                    <p class="muted">
                        "Events carry " <code>"X-Chatwoot-Timestamp"</code> " and "
                        <code>"X-Chatwoot-Signature: sha256=<hex>"</code>
                        ", the HMAC-SHA256 of " <code>"{timestamp}.{raw body}"</code>
                        "; unsigned, wrongly signed, repeated or older than five minutes, they are refused."
                    </p>
                </div>
            })}
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match connection.await {
                        Ok(current) => view! {
                            <ChatwootForm current save rotate delete writable/>
                        }.into_any(),
                        Err(e) => show_error(&e),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn ChatwootForm(
    current: Option<ChatwootConnection>,
    save: ServerAction<SaveChatwoot>,
    rotate: ServerAction<RotateChatwootSecret>,
    delete: ServerAction<DeleteChatwoot>,
    writable: Signal<bool>,
) -> impl IntoView {
    let connected = current.is_some();
    let base_url = RwSignal::new(
        current
            .as_ref()
            .map(|c| c.base_url.clone())
            .unwrap_or_default(),
    );
    let number = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_default();
    let account = RwSignal::new(number(current.as_ref().map(|c| c.account_id)));
    let inbox = RwSignal::new(number(current.as_ref().map(|c| c.inbox_id)));
    let token = RwSignal::new(String::new());
    let enabled = RwSignal::new(current.as_ref().is_none_or(|c| c.enabled));
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let key = token.get_untracked();
        save.dispatch(SaveChatwoot {
            settings: ChatwootSettings {
                base_url: base_url.get_untracked().trim().to_string(),
                account_id: account.get_untracked().trim().parse().unwrap_or(0),
                inbox_id: inbox.get_untracked().trim().parse().unwrap_or(0),
                access_token: (!key.trim().is_empty()).then(|| key.trim().to_string()),
                enabled: enabled.get_untracked(),
            },
        });
        token.set(String::new());
    };
    let status = current.clone().map(|c| {
        let events = match &c.last_event_at {
            Some(t) => fmt_time(t),
            None => "none yet".to_string(),
        };
        view! {
            <dl class="scope-grid" data-testid="chatwoot-current">
                <dt>"Webhook URL"</dt>
                <dd><code class="secret">{c.webhook_url.clone()}</code></dd>
                <dt>"Answering"</dt>
                <dd>{if c.enabled { "On" } else { "Off: events are taken and dropped" }}</dd>
                {c.token_hint.clone().map(|h| view! { <dt>"Token"</dt><dd>{format!("stored, ends in …{h}")}</dd> })}
                <dt>"Last event"</dt>
                <dd>{events}</dd>
                {c.last_error.clone().map(|e| view! {
                    <dt>"Last failure"</dt>
                    <dd class="error-text" role="alert">
                        {e}
                        {c.last_error_at.as_ref().map(|t| format!(" ({})", fmt_time(t)))}
                    </dd>
                })}
            </dl>
        }
    });
    view! {
        {status}
        <form class="stack" on:submit=submit aria-label="Chatwoot connection">
            <label for="chatwoot-url">"Chatwoot address"</label>
            <input id="chatwoot-url" type="url" required maxlength="2000"
                placeholder="https://app.chatwoot.com" bind:value=base_url/>
            <label for="chatwoot-account">"Account id"</label>
            <input id="chatwoot-account" type="number" min="1" required bind:value=account/>
            <label for="chatwoot-inbox">"Inbox id"</label>
            <input id="chatwoot-inbox" type="number" min="1" required bind:value=inbox/>
            <label for="chatwoot-token">
                {if connected { "New agent bot token (leave empty to keep the stored one)" } else { "Agent bot access token" }}
            </label>
            <input id="chatwoot-token" type="password" autocomplete="off" maxlength="4096"
                required=!connected bind:value=token/>
            <label class="check">
                <input type="checkbox" bind:checked=enabled/>
                " The agents answer this inbox"
            </label>
            <div class="confirm">
                <button type="submit" disabled=move || !writable.get() || save.pending().get()>
                    {if connected { "Save Chatwoot settings" } else { "Connect Chatwoot" }}
                </button>
                <Show when=move || connected>
                    <button type="button" class="secondary"
                        disabled=move || !writable.get() || rotate.pending().get()
                        on:click=move |_| { rotate.dispatch(RotateChatwootSecret {}); }>
                        "New webhook secret"
                    </button>
                    <ConfirmDisconnect
                        question="Disconnect Chatwoot? The bot stops answering; conversations stay."
                        writable
                        pending=delete.pending()
                        on_confirm=Callback::new(move |()| {
                            delete.dispatch(DeleteChatwoot {});
                        })
                    />
                </Show>
            </div>
            <ActionMessage value=save.value() ok="Chatwoot settings saved."/>
            <ActionMessage value=rotate.value() ok="New webhook secret made: give it to Chatwoot."/>
            <ActionMessage value=delete.value() ok="Chatwoot disconnected."/>
        </form>
    }
}
