//! The admin console (Leptos components), the shared types and the service contract.

pub mod api;
/// The console's pages and the app that routes them: only in the console's builds (server and
/// hydration), not in the widget's, which uses the wire types alone: a lazy route's split point
/// is an export, so it would keep every page in the widget's WASM.
#[cfg(any(feature = "ssr", feature = "hydrate"))]
mod console;
pub mod editor;
pub mod error;
#[cfg(any(feature = "ssr", feature = "hydrate"))]
mod pages;
#[cfg(feature = "ssr")]
pub mod services;
pub mod types;
pub mod validate;

#[cfg(any(feature = "ssr", feature = "hydrate"))]
pub use console::{shell, App};

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

/// Console pages outside the navigation (opened from a page that is in it); anonymous requests
/// for them are sent to sign in like those of [`CONSOLE_PAGES`].
pub const CONSOLE_SUBPAGES: [&str; 1] = ["/workflows/edit"];

/// Origins besides the console's own that its forms may send the browser to, space-separated,
/// for the pages' `form-action` (the Google authorization server: the connect form's answer
/// redirects there, and browsers hold redirects after a form to its policy). The server
/// provides it.
#[derive(Clone, Debug, Default)]
pub struct FormTargets(pub String);
