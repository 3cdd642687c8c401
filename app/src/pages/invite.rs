//! Accepting an invitation: whoever holds the link signs in with the invited email's password
//! or, new here, chooses a name and password. A plain form posted to `/auth/accept-invitation`,
//! so it works before hydration too.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use super::widgets::fmt_time;
use crate::api::preview_invitation;
use crate::types::MIN_PASSWORD_LEN;

#[component]
pub fn InvitePage() -> impl IntoView {
    let query = use_query_map();
    let token = move || query.with(|q| q.get("token").unwrap_or_default());
    let error = move || {
        query.with(|q| {
            q.get("error").map(|code| match code.as_str() {
                "throttled" => "Too many attempts. Wait a minute and try again.".to_string(),
                "password" => "That is not the password of this email's account.".to_string(),
                "name" => "Please enter your name.".to_string(),
                "short" => format!("Choose a password of at least {MIN_PASSWORD_LEN} characters."),
                "mismatch" => "The passwords differ.".to_string(),
                "csrf" => "The form expired. Please try again.".to_string(),
                _ => "This invitation cannot be used.".to_string(),
            })
        })
    };
    let preview = Resource::new(token, |token| async move {
        if token.is_empty() {
            return None;
        }
        preview_invitation(token).await.ok()
    });
    view! {
        <Title text="Invitation"/>
        <main class="login" id="main">
            <h1>"Agent Platform"</h1>
            {move || error().map(|e| view! { <p class="notice error" role="alert">{e}</p> })}
            <Suspense fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match preview.await {
                        Some(p) => view! {
                            <p>
                                "You are invited to join "
                                <strong>{p.tenant_name}</strong>
                                {format!(" as {} with the email ", p.role.as_str())}
                                <strong>{p.email.clone()}</strong>
                                "."
                            </p>
                            <p class="muted">{format!("The invitation expires on {}.", fmt_time(&p.expires_at))}</p>
                            <form method="post" action="/auth/accept-invitation" class="stack">
                                <input type="hidden" name="token" prop:value=token/>
                                <input type="hidden" name="email" autocomplete="username" prop:value=p.email/>
                                <p class="muted">
                                    "If you already have an account on this platform, enter its password. "
                                    "If you are new here, enter your name and choose a password."
                                </p>
                                <label for="invite-name">"Your name (new accounts)"</label>
                                <input id="invite-name" name="name" type="text" autocomplete="name" maxlength="200"/>
                                <label for="invite-password">"Password"</label>
                                <input id="invite-password" name="password" type="password" autocomplete="current-password" required/>
                                <label for="invite-repeat">"Repeat the password (new accounts)"</label>
                                <input id="invite-repeat" name="repeat" type="password" autocomplete="new-password"/>
                                <button type="submit">"Accept the invitation"</button>
                            </form>
                        }
                            .into_any(),
                        None => view! {
                            <p class="notice error" role="alert">
                                "This invitation link is not valid: it was used, revoked or has expired. Ask whoever invited you for a new one."
                            </p>
                            <p><a href="/login">"Sign in"</a></p>
                        }
                            .into_any(),
                    }
                })}
            </Suspense>
        </main>
    }
}
