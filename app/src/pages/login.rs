//! The sign-in page. A plain form posted to `/auth/login`, rendered by the server whole: the page
//! loads no WASM (`crate::shell`).

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

#[component]
pub fn LoginPage() -> impl IntoView {
    let query = use_query_map();
    let error = move || {
        query.with(|q| {
            q.get("error").map(|code| match code.as_str() {
                "throttled" => "Too many sign-in attempts. Wait a minute and try again.",
                "csrf" => "The sign-in form expired. Please try again.",
                _ => "Email or password is incorrect.",
            })
        })
    };
    let next = move || query.with(|q| q.get("next").unwrap_or_else(|| "/".to_string()));
    let signed_out = move || query.with(|q| q.get("signed_out").is_some());
    view! {
        <Title text="Sign in"/>
        <main class="login" id="main">
            <h1>"Agent Platform"</h1>
            <p class="muted">"Sign in to your company's console."</p>
            {move || {
                signed_out().then(|| view! { <p class="notice ok" role="status">"You are signed out."</p> })
            }}
            {move || error().map(|e| view! { <p class="notice error" role="alert">{e}</p> })}
            <form method="post" action="/auth/login" class="stack">
                <input type="hidden" name="next" prop:value=next/>
                <label for="email">"Email"</label>
                <input id="email" name="email" type="email" autocomplete="username" required/>
                <label for="password">"Password"</label>
                <input
                    id="password"
                    name="password"
                    type="password"
                    autocomplete="current-password"
                    required
                />
                <button type="submit">"Sign in"</button>
            </form>
        </main>
    }
}
