//! What every handler can reach.

use std::sync::Arc;

use axum::extract::FromRef;
use leptos::prelude::LeptosOptions;
use sea_orm::DatabaseConnection;

use app::services::Services;

use crate::config::Config;
use crate::kv::Kv;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: DatabaseConnection,
    pub services: Services,
    pub leptos_options: LeptosOptions,
    /// Cache and rate-limit budgets: Redis when configured, in-process otherwise.
    pub kv: Kv,
    /// Models, vector store and settings of the knowledge feature (shared with the worker).
    pub knowledge: Arc<crate::rag::Knowledge>,
    /// Encrypts stored secrets (and the sealed bodies of emails that carry one).
    pub secret_keys: crate::secrets::KeyRing,
    /// What chat-widget visitors reach: their sessions and their own conversations.
    pub visitors: Arc<crate::widget::Visitors>,
    /// Connecting tenants' Google Calendars (`GOOGLE_CLIENT_ID`); none without it.
    pub google: Option<Arc<crate::integrations::google::GoogleOAuth>>,
    /// The workflows service itself (`services.workflows` is the same one), for what starts
    /// runs without a caller's `Access`: the webhook triggers.
    pub workflows: Arc<crate::workflows::service::WorkflowServiceImpl>,
}

impl AppState {
    /// Largest upload request: up to five files of `MAX_UPLOAD_BYTES` each.
    pub fn upload_limit(&self) -> usize {
        self.config.knowledge.max_upload_bytes.saturating_mul(5)
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}
