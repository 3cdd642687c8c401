//! `/widget-api/v1`: what the chat widget calls, as a visitor. A session starts from the
//! widget's public id and the embedding page's origin; everything else takes the visitor's
//! access token (`Authorization: Bearer <JWT>`), never an API key, and reaches only the
//! visitor's own conversations on that widget. Sending spends the visitor's hourly budget,
//! the widget's and the client address's.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde::Deserialize;
use uuid::Uuid;

use app::error::AppError;
use app::types::{
    ConversationStatus, Feedback, PostMessage, RateConversation, RefreshVisitorSession,
    StartVisitorConversation, StartVisitorSession, StreamEvent, UpdateVisitor, Visitor,
    VisitorConversation, VisitorMessage, VisitorSession, VisitorTranscript,
};

use super::visitors::{check_length, visitor_sources, VisitorCx, Visitors};
use crate::api::v1::conversations::{spawn_events, sse_response, SseEvent};
use crate::auth::bearer_token;
use crate::http::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, Problem};
use crate::http::rate_limit::{ip_budget, spend_all, write_headers};
use crate::kv::{Rate, Scope};
use crate::state::AppState;

/// New sessions one widget may open per minute (all visitors together).
const SESSIONS_PER_WIDGET_MINUTE: u32 = 300;
/// Messages one widget may take per minute (all visitors together).
const MESSAGES_PER_WIDGET_MINUTE: u32 = 600;
/// How long an event stream waits before looking again (keep-alives flow meanwhile).
const EVENT_WAIT: Duration = Duration::from_secs(25);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/widget-api/v1/widgets/{public_id}/sessions",
            post(start_session),
        )
        .route("/widget-api/v1/sessions/refresh", post(refresh_session))
        .route("/widget-api/v1/visitor", patch(update_visitor))
        .route(
            "/widget-api/v1/conversations",
            get(list_conversations).post(start_conversation),
        )
        .route("/widget-api/v1/conversations/{id}", get(get_conversation))
        .route(
            "/widget-api/v1/conversations/{id}/messages",
            post(post_message),
        )
        .route(
            "/widget-api/v1/conversations/{id}/messages/{message_id}/feedback",
            post(rate_message),
        )
        .route(
            "/widget-api/v1/conversations/{id}/rating",
            post(rate_conversation),
        )
        .route(
            "/widget-api/v1/conversations/{id}/events",
            get(conversation_events),
        )
        .route("/widget-api/{*rest}", axum::routing::any(unknown))
        .route("/widget/{public_id}", get(super::page::frame))
}

async fn unknown() -> ApiError {
    AppError::not_found("route").into()
}

/// The visitor an access token names.
pub struct VisitorAuth(pub VisitorCx);

impl FromRequestParts<AppState> for VisitorAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers).ok_or(ApiError(AppError::Unauthorized))?;
        let mut cx = state.visitors.authenticate(token).await?;
        cx.access.ip = crate::http::client_ip::client_ip(&parts.extensions);
        Ok(VisitorAuth(cx))
    }
}

fn with_headers(mut response: Response, decision: Option<crate::kv::Decision>) -> Response {
    if let Some(d) = decision {
        write_headers(response.headers_mut(), &d);
    }
    response
}

/// Start a visitor session on the page at `origin`: an access token (15 minutes) and a
/// refresh token. With identity verification, `identity.hash` must be the hex HMAC-SHA256 of
/// `identity.id` with the widget's secret.
#[utoipa::path(post, path = "/widget-api/v1/widgets/{public_id}/sessions", tag = "widget",
    security(()),
    params(("public_id" = String, Path, description = "The widget's public id (`wgt_…`)")),
    request_body = StartVisitorSession,
    responses(
        (status = 201, body = VisitorSession),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn start_session(
    State(s): State<AppState>,
    extensions: Extensions,
    ApiPath(public_id): ApiPath<String>,
    ApiJson(start): ApiJson<StartVisitorSession>,
) -> Result<Response, Response> {
    let budgets = [
        ip_budget(&s, &extensions),
        (
            Scope::Platform,
            format!("widget:{public_id}:sessions"),
            Rate::per_minute(SESSIONS_PER_WIDGET_MINUTE),
        ),
    ];
    let decision = spend_all(&s, &budgets, "widget").await?;
    let session = s
        .visitors
        .start(&public_id, start)
        .await
        .map_err(|e| ApiError(e).into_response())?;
    Ok(with_headers(
        (StatusCode::CREATED, Json(session)).into_response(),
        decision,
    ))
}

/// Exchange a refresh token for a new pair. Each refresh token works once: presenting one a
/// second time ends the session everywhere (401).
#[utoipa::path(post, path = "/widget-api/v1/sessions/refresh", tag = "widget",
    security(()),
    request_body = RefreshVisitorSession,
    responses(
        (status = 200, body = VisitorSession),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn refresh_session(
    State(s): State<AppState>,
    extensions: Extensions,
    ApiJson(request): ApiJson<RefreshVisitorSession>,
) -> Result<Response, Response> {
    let decision = spend_all(&s, &[ip_budget(&s, &extensions)], "widget").await?;
    let session = s
        .visitors
        .refresh(request)
        .await
        .map_err(|e| ApiError(e).into_response())?;
    Ok(with_headers(Json(session).into_response(), decision))
}

/// The pre-chat form: the visitor's name and email (anonymous visitors only).
#[utoipa::path(patch, path = "/widget-api/v1/visitor", tag = "widget",
    security(("visitor" = [])),
    request_body = UpdateVisitor,
    responses(
        (status = 200, body = Visitor),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_visitor(
    State(s): State<AppState>,
    VisitorAuth(cx): VisitorAuth,
    ApiJson(update): ApiJson<UpdateVisitor>,
) -> ApiResult<Json<Visitor>> {
    Ok(Json(s.visitors.update(&cx, update).await?))
}

/// The visitor's conversations on this widget, newest first (at most 20).
#[utoipa::path(get, path = "/widget-api/v1/conversations", tag = "widget",
    security(("visitor" = [])),
    responses(
        (status = 200, body = Vec<VisitorConversation>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_conversations(
    State(s): State<AppState>,
    VisitorAuth(cx): VisitorAuth,
) -> ApiResult<Json<Vec<VisitorConversation>>> {
    Ok(Json(s.visitors.list(&cx).await?))
}

/// Start a conversation from the page the visitor is on.
#[utoipa::path(post, path = "/widget-api/v1/conversations", tag = "widget",
    security(("visitor" = [])),
    request_body = StartVisitorConversation,
    responses(
        (status = 201, body = VisitorConversation),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn start_conversation(
    State(s): State<AppState>,
    VisitorAuth(cx): VisitorAuth,
    ApiJson(start): ApiJson<StartVisitorConversation>,
) -> ApiResult<(StatusCode, Json<VisitorConversation>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.visitors.start_conversation(&cx, start).await?),
    ))
}

/// One of the visitor's conversations with its messages.
#[utoipa::path(get, path = "/widget-api/v1/conversations/{id}", tag = "widget",
    security(("visitor" = [])),
    params(("id" = Uuid, Path, description = "The conversation's id")),
    responses(
        (status = 200, body = VisitorTranscript),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_conversation(
    State(s): State<AppState>,
    VisitorAuth(cx): VisitorAuth,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<VisitorTranscript>> {
    Ok(Json(s.visitors.transcript(&cx, id).await?))
}

/// What a visitor's stream carries of a turn: the answer's text as it comes, links to its
/// sources, the end (with the conversation's status: `waiting_human` after a handoff), errors.
fn visitor_event(event: StreamEvent) -> Option<Event> {
    match event {
        StreamEvent::MessageDelta { .. } | StreamEvent::Error { .. } => {
            Event::default().event(event.name()).json_data(&event).ok()
        }
        StreamEvent::Sources { sources } => Event::default()
            .event("sources")
            .json_data(serde_json::json!({ "sources": visitor_sources(&sources) }))
            .ok(),
        StreamEvent::MessageDone {
            message_id, status, ..
        } => Event::default()
            .event("message.done")
            .json_data(serde_json::json!({ "message_id": message_id, "status": status }))
            .ok(),
        StreamEvent::ToolCall { .. }
        | StreamEvent::ToolResult { .. }
        | StreamEvent::AgentHandoff { .. } => None,
    }
}

/// Send the visitor's message. The answer streams as Server-Sent Events: `message.delta`,
/// `sources` (titles and links), `message.done` (with the conversation's status), or `error`.
/// While a person owns the conversation the bot stays silent and the operator's replies
/// arrive on the events stream.
#[utoipa::path(post, path = "/widget-api/v1/conversations/{id}/messages", tag = "widget",
    security(("visitor" = [])),
    params(("id" = Uuid, Path, description = "The conversation's id")),
    request_body = PostMessage,
    responses(
        (status = 200, description = "The answer's events", body = SseEvent, content_type = "text/event-stream"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn post_message(
    State(s): State<AppState>,
    extensions: Extensions,
    VisitorAuth(cx): VisitorAuth,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(message): ApiJson<PostMessage>,
) -> Result<Response, Response> {
    // A message refused for its length costs nothing.
    check_length(&cx, &message.content).map_err(|e| ApiError(e).into_response())?;
    let budgets = [
        (
            Scope::Tenant(cx.widget.tenant_id),
            format!("visitor:{}", cx.visitor.id),
            Rate {
                limit: cx.settings.messages_per_hour.max(1),
                period: Duration::from_secs(3600),
            },
        ),
        (
            Scope::Tenant(cx.widget.tenant_id),
            format!("widget:{}:messages", cx.widget.id),
            Rate::per_minute(MESSAGES_PER_WIDGET_MINUTE),
        ),
        ip_budget(&s, &extensions),
    ];
    let decision = spend_all(&s, &budgets, "widget").await?;
    let visitors = s.visitors.clone();
    let (first, rx) = spawn_events(move |sink| async move {
        visitors
            .post(&cx, id, message.content, sink)
            .await
            .map(|_| ())
    })
    .await
    .map_err(IntoResponse::into_response)?;
    Ok(with_headers(
        sse_response(first, rx, visitor_event, None),
        decision,
    ))
}

/// Rate an answer (up or down).
#[utoipa::path(post, path = "/widget-api/v1/conversations/{id}/messages/{message_id}/feedback", tag = "widget",
    security(("visitor" = [])),
    params(
        ("id" = Uuid, Path, description = "The conversation's id"),
        ("message_id" = Uuid, Path, description = "The answer's id"),
    ),
    request_body = Feedback,
    responses(
        (status = 200, body = VisitorMessage),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rate_message(
    State(s): State<AppState>,
    VisitorAuth(cx): VisitorAuth,
    ApiPath((id, message_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(feedback): ApiJson<Feedback>,
) -> ApiResult<Json<VisitorMessage>> {
    Ok(Json(
        s.visitors
            .rate_message(&cx, id, message_id, feedback)
            .await?,
    ))
}

/// Rate the whole conversation (1–5), stored with it.
#[utoipa::path(post, path = "/widget-api/v1/conversations/{id}/rating", tag = "widget",
    security(("visitor" = [])),
    params(("id" = Uuid, Path, description = "The conversation's id")),
    request_body = RateConversation,
    responses(
        (status = 200, body = VisitorConversation),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rate_conversation(
    State(s): State<AppState>,
    VisitorAuth(cx): VisitorAuth,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(rating): ApiJson<RateConversation>,
) -> ApiResult<Json<VisitorConversation>> {
    Ok(Json(s.visitors.rate_conversation(&cx, id, rating).await?))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Resume after this message (the last `id` seen); `Last-Event-ID` does the same.
    after: Option<Uuid>,
}

/// What an event stream has sent so far.
struct Follow {
    visitors: Arc<Visitors>,
    cx: VisitorCx,
    id: Uuid,
    cursor: Option<Uuid>,
    status: Option<ConversationStatus>,
    seen: Option<i64>,
    queue: VecDeque<Event>,
    first: bool,
}

impl Follow {
    /// The next event, waiting for changes as long as it takes; `None` ends the stream (the
    /// conversation is gone, or the database failed: the client reconnects).
    async fn next(mut self) -> Option<(Result<Event, std::convert::Infallible>, Follow)> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some((Ok(event), self));
            }
            if !self.first
                && !self
                    .visitors
                    .wait_for_change(&self.cx, self.id, &mut self.seen, EVENT_WAIT)
                    .await
            {
                continue;
            }
            self.first = false;
            let (conv, messages) = self
                .visitors
                .messages_after(&self.cx, self.id, self.cursor)
                .await
                .ok()?;
            for m in messages {
                self.cursor = Some(m.id);
                if let Ok(event) = Event::default()
                    .event("message")
                    .id(m.id.to_string())
                    .json_data(&m)
                {
                    self.queue.push_back(event);
                }
            }
            if self.status != Some(conv.status) {
                self.status = Some(conv.status);
                if let Ok(event) = Event::default().event("status").json_data(&conv) {
                    self.queue.push_back(event);
                }
            }
        }
    }
}

/// Follow a conversation: every message written after `after` (the visitor's, the agents'
/// and an operator's, as `message` events whose `id` is the message's) and the
/// conversation's status when it changes (`status`: an operator took over or handed back).
/// Reconnect with `after` or `Last-Event-ID` to resume without gaps.
#[utoipa::path(get, path = "/widget-api/v1/conversations/{id}/events", tag = "widget",
    security(("visitor" = [])),
    params(("id" = Uuid, Path, description = "The conversation's id"), EventsQuery),
    responses(
        (status = 200, description = "Messages and status changes", body = SseEvent, content_type = "text/event-stream"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn conversation_events(
    State(s): State<AppState>,
    headers: HeaderMap,
    VisitorAuth(cx): VisitorAuth,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> ApiResult<Response> {
    s.visitors.own(&cx, id).await?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let follow = Follow {
        visitors: s.visitors.clone(),
        cx,
        id,
        cursor: query.after.or(resume),
        status: None,
        seen: None,
        queue: VecDeque::new(),
        first: true,
    };
    let events = futures::stream::unfold(follow, Follow::next);
    Ok(Sse::new(events.boxed())
        .keep_alive(KeepAlive::default())
        .into_response())
}
