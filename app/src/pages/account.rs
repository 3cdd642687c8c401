//! The signed-in user's account: change the password (required after a temporary one).

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use super::widgets::show_error;
use crate::api::ChangePassword;
use crate::types::{self, MIN_PASSWORD_LEN};

#[component]
pub fn AccountPage() -> impl IntoView {
    let query = use_query_map();
    let first = move || query.with(|q| q.get("first").is_some());
    let change = ServerAction::<ChangePassword>::new();
    let current = RwSignal::new(String::new());
    let new = RwSignal::new(String::new());
    let repeat = RwSignal::new(String::new());
    let mismatch = move || !repeat.get().is_empty() && repeat.get() != new.get();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if mismatch() {
            return;
        }
        change.dispatch(ChangePassword {
            change: types::PasswordChange {
                current: current.get_untracked(),
                new: new.get_untracked(),
            },
        });
    };
    view! {
        <Title text="Your account"/>
        <h1>"Your account"</h1>
        {move || first().then(|| view! {
            <p class="notice" role="status">"You signed in with a temporary password. Please choose your own."</p>
        })}
        {move || match change.value().get() {
            Some(Ok(())) => view! {
                <p class="notice ok" role="status">
                    "Password changed. " <a href="/login" rel="external">"Sign in again"</a> " with your new password."
                </p>
            }
                .into_any(),
            Some(Err(e)) => show_error(&e),
            None => ().into_any(),
        }}
        <form class="card stack" on:submit=submit aria-labelledby="change-password">
            <h2 id="change-password">"Change password"</h2>
            <label for="current-password">"Current password"</label>
            <input id="current-password" type="password" autocomplete="current-password" required bind:value=current/>
            <label for="new-password">{format!("New password (at least {MIN_PASSWORD_LEN} characters)")}</label>
            <input id="new-password" type="password" autocomplete="new-password" required minlength=MIN_PASSWORD_LEN bind:value=new/>
            <label for="repeat-password">"Repeat the new password"</label>
            <input id="repeat-password" type="password" autocomplete="new-password" required bind:value=repeat/>
            {move || mismatch().then(|| view! { <p class="notice error" role="alert">"The passwords differ."</p> })}
            <button type="submit" disabled=move || change.pending().get()>"Change password"</button>
        </form>
    }
}
