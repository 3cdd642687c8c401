//! `/api/v1`: every handler carries `#[utoipa::path]`; the document is generated from them.

mod agents;
mod api_keys;
mod audit;
mod bookings;
mod chatwoot;
pub mod conversations;
mod docs;
mod email_settings;
mod google_calendar;
mod jobs;
pub mod knowledge;
mod llm_settings;
mod members;
pub mod openai;
mod tenant;
mod webhooks;
mod widgets;
mod workflows;

use axum::routing::{any, get, post};
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Agent Platform API",
        version = "1.0.0",
        description = "Multi-tenant AI agent platform. Authenticate with an API key created in the console or CLI: `Authorization: Bearer apk_…`. Errors are RFC 7807 problem+json with a stable `code`."
    ),
    paths(
        tenant::get_tenant,
        tenant::update_tenant,
        members::list_members,
        members::get_member,
        members::update_member,
        members::remove_member,
        members::list_invitations,
        members::invite_member,
        members::revoke_invitation,
        api_keys::list_api_keys,
        api_keys::create_api_key,
        api_keys::get_api_key,
        api_keys::revoke_api_key,
        audit::list_audit,
        jobs::list_jobs,
        jobs::job_stats,
        jobs::get_job,
        jobs::retry_job,
        jobs::discard_job,
        jobs::list_schedules,
        knowledge::list_knowledge_bases,
        knowledge::create_knowledge_base,
        knowledge::get_knowledge_base,
        knowledge::update_knowledge_base,
        knowledge::delete_knowledge_base,
        knowledge::list_documents,
        knowledge::upload_documents,
        knowledge::fetch_document,
        knowledge::get_document,
        knowledge::delete_document,
        knowledge::search,
        conversations::create_conversation,
        conversations::list_conversations,
        conversations::get_conversation,
        conversations::post_message,
        conversations::list_steps,
        conversations::rate_message,
        conversations::take_over,
        conversations::hand_back,
        conversations::operator_reply,
        conversations::list_router_rules,
        conversations::create_router_rule,
        conversations::delete_router_rule,
        conversations::get_prompt,
        conversations::save_prompt,
        conversations::restore_default_prompt,
        conversations::diff_prompts,
        conversations::usage,
        agents::list_agents,
        agents::create_agent,
        agents::update_agent,
        agents::delete_agent,
        openai::chat_completions,
        llm_settings::get_llm_settings,
        llm_settings::update_llm_settings,
        llm_settings::reset_llm_settings,
        email_settings::get_email_settings,
        email_settings::update_email_settings,
        email_settings::reset_email_settings,
        email_settings::send_test_email,
        widgets::list_widgets,
        widgets::create_widget,
        widgets::get_widget,
        widgets::update_widget,
        widgets::rotate_widget_secret,
        widgets::delete_widget,
        webhooks::list_webhooks,
        webhooks::create_webhook,
        webhooks::get_webhook,
        webhooks::update_webhook,
        webhooks::rotate_webhook_secret,
        webhooks::delete_webhook,
        webhooks::test_webhook,
        webhooks::list_deliveries,
        webhooks::replay_delivery,
        bookings::list_bookings,
        bookings::create_booking,
        bookings::get_booking,
        bookings::reschedule_booking,
        bookings::cancel_booking,
        chatwoot::get_chatwoot,
        chatwoot::save_chatwoot,
        chatwoot::rotate_chatwoot_secret,
        chatwoot::delete_chatwoot,
        google_calendar::get_google_calendar,
        google_calendar::update_google_calendar,
        google_calendar::disconnect_google_calendar,
        workflows::list_workflows,
        workflows::create_workflow,
        workflows::get_workflow,
        workflows::update_workflow,
        workflows::delete_workflow,
        workflows::export_workflow,
        workflows::publish_workflow,
        workflows::rotate_webhook_secret,
        workflows::list_secrets,
        workflows::conversation_graphs,
        workflows::set_conversation_graph,
        workflows::set_secret,
        workflows::delete_secret,
        workflows::list_versions,
        workflows::get_version,
        workflows::restore_version,
        workflows::diff_versions,
        workflows::test_node,
        workflows::start_run,
        workflows::list_runs,
        workflows::get_run,
        workflows::cancel_run,
        workflows::decide_run,
        crate::integrations::chatwoot::hook::receive_chatwoot_event,
        crate::workflows::hook::receive_workflow_webhook,
        crate::widget::api::start_session,
        crate::widget::api::refresh_session,
        crate::widget::api::update_visitor,
        crate::widget::api::list_conversations,
        crate::widget::api::start_conversation,
        crate::widget::api::get_conversation,
        crate::widget::api::post_message,
        crate::widget::api::rate_message,
        crate::widget::api::rate_conversation,
        crate::widget::api::conversation_events,
    ),
    components(schemas(
        crate::http::error::Problem,
        app::types::StreamEvent,
        app::types::Page<app::types::AuditEntry>,
        app::types::Page<app::types::Job>,
        app::types::Page<app::types::Document>,
        app::types::Page<app::types::Conversation>,
        app::types::Page<app::types::WebhookDelivery>,
        app::types::Page<app::types::Booking>,
        app::types::Page<app::types::WorkflowRun>,
    )),
    modifiers(&BearerAuth),
    security(("api_key" = [])),
    tags(
        (name = "tenant", description = "The tenant the key belongs to"),
        (name = "members", description = "People with access to the tenant's console"),
        (name = "api-keys", description = "Keys for the REST API"),
        (name = "audit", description = "Who did what, when, from where"),
        (name = "jobs", description = "Background jobs: progress, failures, dead letters"),
        (name = "knowledge", description = "Knowledge bases, documents and hybrid search"),
        (name = "conversations", description = "Talking to the tenant's agents, human handoff, router rules"),
        (name = "llm", description = "The tenant's own LLM provider, or the platform's"),
        (name = "widgets", description = "Website chat widgets: settings, snippet, identity secret"),
        (name = "widget", description = "What the chat widget calls as a visitor (visitor tokens, not API keys)"),
        (name = "email", description = "Who sends the tenant's email: the platform's relay, or its own SendGrid or Mailgun"),
        (name = "bookings", description = "Appointments: what the agents booked and what the business books, moves and cancels"),
        (name = "google-calendar", description = "The tenant's Google Calendar, connected over OAuth in the console"),
        (name = "chatwoot", description = "A Chatwoot inbox as a channel: the agents answer its customers through an agent bot"),
        (name = "workflows", description = "Workflows: drafts, published versions, runs with their traces, approvals and compensations"),
        (name = "webhooks", description = "Signed POSTs of the tenant's events to its endpoints, with a delivery log and replay"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("apk_…")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "visitor",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// `upload_limit`: the body limit of document uploads (the rest keep `MAX_BODY_BYTES`).
pub fn router(upload_limit: usize) -> Router<AppState> {
    Router::new()
        .merge(knowledge::routes(upload_limit))
        .merge(conversations::routes())
        .merge(llm_settings::routes())
        .merge(email_settings::routes())
        .merge(agents::routes())
        .merge(widgets::routes())
        .merge(webhooks::routes())
        .merge(bookings::routes())
        .merge(chatwoot::routes())
        .merge(google_calendar::routes())
        .merge(workflows::routes())
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/api/v1/openapi.json", get(docs::openapi_json))
        .route("/api/docs", get(docs::docs_page))
        .route(
            "/api/v1/tenant",
            get(tenant::get_tenant).patch(tenant::update_tenant),
        )
        .route("/api/v1/members", get(members::list_members))
        .route(
            "/api/v1/members/{user_id}",
            get(members::get_member)
                .patch(members::update_member)
                .delete(members::remove_member),
        )
        .route(
            "/api/v1/invitations",
            get(members::list_invitations).post(members::invite_member),
        )
        .route(
            "/api/v1/invitations/{id}",
            axum::routing::delete(members::revoke_invitation),
        )
        .route(
            "/api/v1/api-keys",
            get(api_keys::list_api_keys).post(api_keys::create_api_key),
        )
        .route(
            "/api/v1/api-keys/{id}",
            get(api_keys::get_api_key).delete(api_keys::revoke_api_key),
        )
        .route("/api/v1/audit-log", get(audit::list_audit))
        .route("/api/v1/jobs", get(jobs::list_jobs))
        .route("/api/v1/jobs/stats", get(jobs::job_stats))
        .route("/api/v1/jobs/{id}", get(jobs::get_job))
        .route("/api/v1/jobs/{id}/retry", post(jobs::retry_job))
        .route("/api/v1/jobs/{id}/discard", post(jobs::discard_job))
        .route("/api/v1/job-schedules", get(jobs::list_schedules))
        .route("/api/{*rest}", any(unknown_api_route))
}

/// Unknown paths under the API answer in problem+json, not with the console's 404 page.
async fn unknown_api_route() -> crate::http::error::ApiError {
    app::error::AppError::not_found("route").into()
}
