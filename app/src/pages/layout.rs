//! The console frame: top bar with tenant switcher and sign-out, navigation, content.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::{Outlet, A};

use super::widgets::{show_error, use_me, Me};
use crate::api::whoami;
use crate::types::CurrentUser;

#[component]
pub fn ConsoleLayout() -> impl IntoView {
    let me: Me = Resource::new(|| (), |_| whoami());
    provide_context(me);
    view! {
        <a class="skip" href="#main">"Skip to content"</a>
        <header class="topbar">
            <a class="brand" href="/">"Agent Platform"</a>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    match me.await {
                        Ok(user) => view! { <UserMenu user/> }.into_any(),
                        Err(_) => view! { <a href="/login">"Sign in"</a> }.into_any(),
                    }
                })}
            </Suspense>
        </header>
        <div class="frame">
            <nav aria-label="Console" class="sidenav">
                <ul>
                    {crate::CONSOLE_PAGES
                        .into_iter()
                        .map(|(href, label)| view! { <li><A href=href exact=true>{label}</A></li> })
                        .collect_view()}
                    <li><a href="/api/docs" rel="external">"API reference"</a></li>
                </ul>
            </nav>
            <main id="main" class="content">
                <Outlet/>
            </main>
        </div>
    }
}

#[component]
fn UserMenu(user: CurrentUser) -> impl IntoView {
    let several = user.memberships.len() > 1;
    let current = user.tenant.slug.clone();
    let memberships = user.memberships.clone();
    view! {
        <div class="usermenu">
            {if several {
                view! {
                    <form method="post" action="/auth/switch-tenant" class="inline">
                        <label for="tenant-switch">"Tenant"</label>
                        <select id="tenant-switch" name="tenant">
                            {memberships
                                .into_iter()
                                .map(|m| {
                                    let selected = m.slug == current;
                                    view! {
                                        <option value=m.slug.clone() selected=selected>
                                            {m.name}
                                        </option>
                                    }
                                })
                                .collect_view()}
                        </select>
                        <button type="submit" class="secondary">"Switch"</button>
                    </form>
                }
                    .into_any()
            } else {
                view! { <span class="tenant-name">{user.tenant.name.clone()}</span> }.into_any()
            }}
            <span class="muted" title="Your role in this tenant">
                {format!("{} · {}", user.email, user.tenant.role.as_str())}
            </span>
            <form method="post" action="/auth/logout" class="inline">
                <button type="submit" class="secondary">"Sign out"</button>
            </form>
        </div>
    }
}

#[component]
pub fn OverviewPage() -> impl IntoView {
    let me = use_me();
    view! {
        <Title text="Overview"/>
        <h1>"Overview"</h1>
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match me.await {
                    Ok(user) => view! {
                        <p>
                            "Signed in as " <strong>{user.name.clone()}</strong> " ("
                            {user.tenant.role.as_str()} ") in " <strong>{user.tenant.name.clone()}</strong>
                            "."
                        </p>
                        <ul class="cards">
                            <li><a href="/knowledge">"Knowledge"</a>" — documents your agents search; upload and test retrieval."</li>
                            <li><a href="/bookings">"Bookings"</a>" — appointments your agents and your team booked; move or cancel them."</li>
                            <li><a href="/keys">"API keys"</a>" — let your systems call the REST API."</li>
                            <li><a href="/members">"Members"</a>" — invite your team and set roles."</li>
                            <li><a href="/audit">"Audit log"</a>" — who did what, and when."</li>
                            <li><a href="/jobs">"Jobs"</a>" — background work, failures and retries."</li>
                            <li><a href="/settings">"Settings"</a>" — name, time zone, business hours."</li>
                            <li><a href="/api/docs">"API reference"</a>" — try every endpoint."</li>
                        </ul>
                    }
                        .into_any(),
                    Err(e) => show_error(&e),
                }
            })}
        </Suspense>
    }
}

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <Title text="Not found"/>
        <main class="content" id="main">
            <h1>"Page not found"</h1>
            <p><a href="/">"Back to the console"</a></p>
        </main>
    }
}
