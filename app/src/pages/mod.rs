//! Console pages.

mod account;
mod agents;
mod audit;
mod bookings;
mod chat_widgets;
mod chatwoot;
mod conversations;
mod email;
mod google;
mod integrations;
mod invite;
mod jobs;
mod keys;
mod knowledge;
mod layout;
mod llm;
mod login;
mod members;
mod settings;
mod widgets;

pub use account::AccountPage;
pub use audit::AuditPage;
pub use bookings::BookingsPage;
pub use chat_widgets::ChatWidgetsPage;
pub use conversations::{AgentsPage, ConversationsPage};
pub use integrations::IntegrationsPage;
pub use invite::InvitePage;
pub use jobs::JobsPage;
pub use keys::ApiKeysPage;
pub use knowledge::KnowledgePage;
pub use layout::{Coming, ConsoleLayout, NotFound, OverviewPage};
pub use login::LoginPage;
pub use members::MembersPage;
pub use settings::SettingsPage;
