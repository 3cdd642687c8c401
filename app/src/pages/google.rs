//! Google Calendar (a panel of the Integrations page): connect over OAuth (a form POST to
//! `/integrations/google/connect`, which sends the browser to Google and back to
//! `/integrations?google=connected` or `?google_error=…`), see whether it works and when it last
//! synced, choose what the agents do while it needs reconnecting, disconnect. The same as
//! `/api/v1/google-calendar`.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use super::widgets::{
    can_write, fmt_time, show_error, successes, use_me, ActionMessage, ConfirmDisconnect,
};
use crate::api::{get_google_calendar, DisconnectGoogleCalendar, UpdateGoogleCalendar};
use crate::types::{Area, CalendarFallback, GoogleCalendar, GoogleSettings, GoogleStatus};

#[component]
pub fn GooglePanel() -> impl IntoView {
    let writable = can_write(use_me(), Area::Integrations);
    let update = ServerAction::<UpdateGoogleCalendar>::new();
    let disconnect = ServerAction::<DisconnectGoogleCalendar>::new();
    let saved = successes(update);
    let panel = Resource::new(
        move || (saved.get(), disconnect.version().get()),
        |_| get_google_calendar(),
    );
    // What the OAuth flow came back with.
    let query = use_query_map();
    let outcome = move || {
        query.with(|q| {
            if q.get("google").as_deref() == Some("connected") {
                Some(
                    view! {
                        <p class="notice ok" role="status">
                            "Google Calendar connected: the agents book into it from now on."
                        </p>
                    }
                    .into_any(),
                )
            } else {
                q.get("google_error").map(|e| {
                    view! {
                        <p class="notice error" role="alert">
                            {format!("Google Calendar was not connected: {e}")}
                        </p>
                    }
                    .into_any()
                })
            }
        })
    };
    view! {
        <section class="card stack" aria-labelledby="google-heading" id="google">
            <h2 id="google-heading">"Google Calendar"</h2>
            <p class="muted">
                "Your agents and the Bookings page book into your own Google Calendar: they offer only times that are free there (within your business hours), create each appointment as an event with the customer as a guest, and follow what you move or delete in the calendar (checked every 15 minutes). The platform asks for nothing but your calendar's events and free/busy. "
                <a href="/api/docs#tag/google-calendar">"API"</a>
            </p>
            {outcome}
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match panel.await {
                        Ok(p) => match p.connection {
                            Some(c) => view! {
                                <GoogleConnection c update disconnect writable/>
                            }.into_any(),
                            None if p.configured => view! {
                                <p class="empty">"Not connected: bookings are kept in the platform's own calendar."</p>
                                <ConnectButton label="Connect Google Calendar" writable/>
                            }.into_any(),
                            None => view! {
                                <p class="empty">
                                    "Google Calendar is not set up on this platform: its operator sets "
                                    <code>"GOOGLE_CLIENT_ID"</code> " and " <code>"GOOGLE_CLIENT_SECRET"</code>
                                    " (see the README)."
                                </p>
                            }.into_any(),
                        },
                        Err(e) => show_error(&e),
                    }
                })}
            </Transition>
            <ActionMessage value=update.value() ok="Saved."/>
            <ActionMessage value=disconnect.value() ok="Google Calendar disconnected; the platform's access is revoked."/>
        </section>
    }
}

/// A plain form POST: the server answers with a redirect to Google.
#[component]
fn ConnectButton(label: &'static str, writable: Signal<bool>) -> impl IntoView {
    view! {
        <form method="post" action="/integrations/google/connect">
            <button type="submit" disabled=move || !writable.get()>{label}</button>
        </form>
    }
}

#[component]
fn GoogleConnection(
    c: GoogleCalendar,
    update: ServerAction<UpdateGoogleCalendar>,
    disconnect: ServerAction<DisconnectGoogleCalendar>,
    writable: Signal<bool>,
) -> impl IntoView {
    let fallback = RwSignal::new(c.fallback);
    let healthy = c.status == GoogleStatus::Connected;
    let synced = c
        .synced_at
        .as_ref()
        .map_or_else(|| "not yet".to_string(), fmt_time);
    let choose = move |choice: CalendarFallback| {
        view! {
            <label class="check">
                <input type="radio" name="google-fallback"
                    checked=move || fallback.get() == choice
                    on:change=move |_| fallback.set(choice)/>
                {match choice {
                    CalendarFallback::BuiltIn => " Book in the platform's own calendar (you see them on the Bookings page)",
                    CalendarFallback::Refuse => " Tell customers that booking is not possible right now, and offer a person",
                }}
            </label>
        }
    };
    view! {
        <dl class="scope-grid" data-testid="google-current">
            <dt>"Status"</dt>
            <dd>
                {if healthy {
                    view! { <span class="badge status-ready">"Connected"</span> }.into_any()
                } else {
                    view! { <span class="badge status-failed">"Needs reconnecting"</span> }.into_any()
                }}
            </dd>
            <dt>"Calendar"</dt>
            <dd>{if c.calendar_id == "primary" { "Your main calendar".to_string() } else { c.calendar_id.clone() }}</dd>
            <dt>"Last sync"</dt>
            <dd>{synced}</dd>
            <dt>"Connected"</dt>
            <dd>{fmt_time(&c.created_at)}</dd>
            {c.last_error.clone().map(|e| view! {
                <dt>"Problem"</dt>
                <dd class="error-text" role="alert">{e}</dd>
            })}
        </dl>
        <Show when=move || !healthy>
            <ConnectButton label="Reconnect Google Calendar" writable/>
        </Show>
        <form class="stack" aria-label="While Google Calendar needs reconnecting"
            on:submit=move |ev: leptos::ev::SubmitEvent| {
                ev.prevent_default();
                update.dispatch(UpdateGoogleCalendar {
                    settings: GoogleSettings { fallback: fallback.get_untracked() },
                });
            }>
            <fieldset>
                <legend>"While it needs reconnecting, the agents…"</legend>
                {choose(CalendarFallback::BuiltIn)}
                {choose(CalendarFallback::Refuse)}
            </fieldset>
            <div class="confirm">
                <button type="submit" disabled=move || !writable.get() || update.pending().get()>
                    "Save"
                </button>
                <ConfirmDisconnect
                    question="Disconnect Google Calendar? The platform's access is revoked; bookings stay, and new ones go to the platform's own calendar."
                    writable
                    pending=disconnect.pending()
                    on_confirm=Callback::new(move |()| {
                        disconnect.dispatch(DisconnectGoogleCalendar {});
                    })
                />
            </div>
        </form>
    }
}
