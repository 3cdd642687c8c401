//! The admin console (Leptos components), the shared types and the service contract.

pub mod api;
pub mod error;
mod pages;
#[cfg(feature = "ssr")]
pub mod services;
pub mod types;
pub mod validate;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{ParentRoute, Route, Router, Routes},
    path,
};

use pages::*;

/// The console's pages (path, label). The server redirects anonymous requests for these to the
/// sign-in page; the layout lists them in its navigation.
pub const CONSOLE_PAGES: [(&str, &str); 14] = [
    ("/", "Overview"),
    ("/knowledge", "Knowledge"),
    ("/agents", "Agents"),
    ("/workflows", "Workflows"),
    ("/conversations", "Conversations"),
    ("/bookings", "Bookings"),
    ("/widgets", "Chat widgets"),
    ("/jobs", "Jobs"),
    ("/integrations", "Integrations"),
    ("/keys", "API keys"),
    ("/members", "Members"),
    ("/audit", "Audit log"),
    ("/settings", "Settings"),
    ("/account", "Your account"),
];

/// Origins besides the console's own that its forms may send the browser to, space-separated,
/// for the pages' `form-action` (the Google authorization server: the connect form's answer
/// redirects there, and browsers hold redirects after a form to its policy). The server
/// provides it.
#[derive(Clone, Debug, Default)]
pub struct FormTargets(pub String);

pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    content_security_policy();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// A strict policy for console pages: only this origin's scripts and the inline hydration
/// script carrying this response's nonce (leptos_axum makes one per render), WASM, no framing.
#[cfg(feature = "ssr")]
fn content_security_policy() {
    use http::{header, HeaderValue};
    let (Some(nonce), Some(response)) = (
        leptos::nonce::use_nonce(),
        use_context::<leptos_axum::ResponseOptions>(),
    ) else {
        return;
    };
    let targets = use_context::<FormTargets>().unwrap_or_default().0;
    let policy = format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self' 'nonce-{nonce}'; img-src 'self' data:; connect-src 'self'; \
         object-src 'none'; base-uri 'self'; form-action 'self' {targets}; \
         frame-ancestors 'none'"
    );
    if let Ok(value) = HeaderValue::from_str(&policy) {
        response.insert_header(header::CONTENT_SECURITY_POLICY, value);
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Effects run only in the browser, after hydration: a marker tests and tools can wait for.
    Effect::new(|_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });
    view! {
        <Stylesheet id="leptos" href="/pkg/agent-platform.css"/>
        <leptos_meta::Link rel="icon" href="/favicon.svg" type_="image/svg+xml"/>
        <Title formatter=|page: String| format!("{page} · Agent Platform")/>
        <Router>
            <Routes fallback=|| view! { <NotFound/> }>
                <Route path=path!("/login") view=LoginPage/>
                <Route path=path!("/invite") view=InvitePage/>
                <ParentRoute path=path!("") view=ConsoleLayout>
                    <Route path=path!("") view=OverviewPage/>
                    <Route path=path!("keys") view=ApiKeysPage/>
                    <Route path=path!("members") view=MembersPage/>
                    <Route path=path!("audit") view=AuditPage/>
                    <Route path=path!("settings") view=SettingsPage/>
                    <Route path=path!("account") view=AccountPage/>
                    <Route path=path!("knowledge") view=KnowledgePage/>
                    <Route path=path!("agents") view=AgentsPage/>
                    <Route path=path!("workflows") view=|| view! { <Coming title="Workflows"/> }/>
                    <Route path=path!("conversations") view=ConversationsPage/>
                    <Route path=path!("bookings") view=BookingsPage/>
                    <Route path=path!("widgets") view=ChatWidgetsPage/>
                    <Route path=path!("jobs") view=JobsPage/>
                    <Route path=path!("integrations") view=IntegrationsPage/>
                </ParentRoute>
            </Routes>
        </Router>
    }
}
