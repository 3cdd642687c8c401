//! The console app: the document shell the server renders, and the routes.

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{ParentRoute, Route, Router, Routes},
    lazy_route, path, Lazy, LazyRoute,
};

use crate::pages::*;
#[cfg(feature = "ssr")]
use crate::FormTargets;

pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    content_security_policy();
    let hydrate = !is_sign_in_page();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <AutoReload options=options.clone()/>
                {hydrate.then(|| view! { <HydrationScripts options/> })}
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The sign-in page is a plain form posted to `/auth/login` that the server renders whole, so it
/// loads no WASM at all: it is usable as soon as its HTML and CSS are in, and the console's code
/// is fetched by the first console page after signing in.
#[cfg(feature = "ssr")]
fn is_sign_in_page() -> bool {
    use_context::<http::request::Parts>().is_some_and(|request| request.uri.path() == "/login")
}

#[cfg(not(feature = "ssr"))]
fn is_sign_in_page() -> bool {
    false
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
    view! {
        <Stylesheet id="leptos" href="/pkg/agent-platform.css"/>
        <leptos_meta::Link rel="icon" href="/favicon.svg" type_="image/svg+xml"/>
        <Title formatter=|page: String| format!("{page} · Agent Platform")/>
        <Router>
            <Routes fallback=|| view! { <NotFound/> }>
                <Route path=path!("/login") view=LoginPage/>
                <Route path=path!("/invite") view={Lazy::<InviteRoute>::new()}/>
                <ParentRoute path=path!("") view=ConsoleLayout>
                    <Route path=path!("") view={Lazy::<OverviewRoute>::new()}/>
                    <Route path=path!("keys") view={Lazy::<ApiKeysRoute>::new()}/>
                    <Route path=path!("members") view={Lazy::<MembersRoute>::new()}/>
                    <Route path=path!("audit") view={Lazy::<AuditRoute>::new()}/>
                    <Route path=path!("settings") view={Lazy::<SettingsRoute>::new()}/>
                    <Route path=path!("account") view={Lazy::<AccountRoute>::new()}/>
                    <Route path=path!("knowledge") view={Lazy::<KnowledgeRoute>::new()}/>
                    <Route path=path!("agents") view={Lazy::<AgentsRoute>::new()}/>
                    <Route path=path!("workflows") view={Lazy::<WorkflowsRoute>::new()}/>
                    <Route path=path!("workflows/edit") view={Lazy::<WorkflowEditorRoute>::new()}/>
                    <Route path=path!("conversations") view={Lazy::<ConversationsRoute>::new()}/>
                    <Route path=path!("bookings") view={Lazy::<BookingsRoute>::new()}/>
                    <Route path=path!("widgets") view={Lazy::<ChatWidgetsRoute>::new()}/>
                    <Route path=path!("jobs") view={Lazy::<JobsRoute>::new()}/>
                    <Route path=path!("integrations") view={Lazy::<IntegrationsRoute>::new()}/>
                </ParentRoute>
            </Routes>
        </Router>
    }
}

/// Every page but sign-in is a lazy route: built with `cargo leptos --split`, its code is a WASM
/// chunk of its own, fetched when the page is first shown (and preloaded by the server-rendered
/// page that shows it), so each page loads only the framework, the layout and what it uses (the
/// sign-in page loads nothing: [`is_sign_in_page`]). A page reads its data itself once its chunk is in (`data()` is empty): the
/// server renders the first page with its data, so only a later in-console navigation waits for
/// the chunk before the page's requests start.
macro_rules! lazy_pages {
    ($($route:ident => $page:ident),* $(,)?) => {$(
        struct $route;

        #[lazy_route]
        impl LazyRoute for $route {
            fn data() -> Self {
                Self
            }

            fn view(_this: Self) -> AnyView {
                view! { <$page/> }.into_any()
            }
        }
    )*};
}

lazy_pages! {
    InviteRoute => InvitePage,
    OverviewRoute => OverviewPage,
    ApiKeysRoute => ApiKeysPage,
    MembersRoute => MembersPage,
    AuditRoute => AuditPage,
    SettingsRoute => SettingsPage,
    AccountRoute => AccountPage,
    KnowledgeRoute => KnowledgePage,
    AgentsRoute => AgentsPage,
    WorkflowsRoute => WorkflowsPage,
    WorkflowEditorRoute => WorkflowEditorPage,
    ConversationsRoute => ConversationsPage,
    BookingsRoute => BookingsPage,
    ChatWidgetsRoute => ChatWidgetsPage,
    JobsRoute => JobsPage,
    IntegrationsRoute => IntegrationsPage,
}
