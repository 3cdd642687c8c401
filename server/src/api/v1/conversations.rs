//! `/api/v1/conversations`: talk to the tenant's agents (JSON, or Server-Sent Events with
//! `stream`), read transcripts and step traces, rate answers, and let a person take over.
//! `/api/v1/router-rules`: the router's per-tenant rules.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::mpsc::UnboundedReceiver;
use uuid::Uuid;

use app::error::AppError;
use app::services::{Access, EventSink, Services};
use app::types::{
    AgentPrompt, Conversation, ConversationDetail, ConversationQuery, CreateConversation,
    CreateRouterRule, Feedback, Message, OperatorReply, Page, PostMessage, PromptDiff,
    PromptDiffQuery, RouterRule, SavePrompt, Step, StreamEvent, TurnResult, UsageQuery,
    UsageSummary,
};

use crate::auth::ApiAccess;
use crate::http::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, Problem};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/conversations",
            get(list_conversations).post(create_conversation),
        )
        .route("/api/v1/conversations/{id}", get(get_conversation))
        .route("/api/v1/conversations/{id}/messages", post(post_message))
        .route(
            "/api/v1/conversations/{id}/messages/{message_id}/steps",
            get(list_steps),
        )
        .route(
            "/api/v1/conversations/{id}/messages/{message_id}/feedback",
            post(rate_message),
        )
        .route("/api/v1/conversations/{id}/take-over", post(take_over))
        .route("/api/v1/conversations/{id}/hand-back", post(hand_back))
        .route("/api/v1/conversations/{id}/replies", post(operator_reply))
        .route(
            "/api/v1/router-rules",
            get(list_router_rules).post(create_router_rule),
        )
        .route("/api/v1/router-rules/{id}", delete(delete_router_rule))
        .route(
            "/api/v1/agents/{agent}/prompt",
            get(get_prompt).put(save_prompt),
        )
        .route(
            "/api/v1/agents/{agent}/prompt/restore-default",
            post(restore_default_prompt),
        )
        .route("/api/v1/agents/{agent}/prompt/diff", get(diff_prompts))
        .route("/api/v1/usage", get(usage))
}

/// Tokens and cost of the LLM calls of the tenant's conversations started in a period
/// (by default the current month).
#[utoipa::path(get, path = "/api/v1/usage", tag = "conversations",
    params(UsageQuery),
    responses(
        (status = 200, body = UsageSummary),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn usage(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiQuery(query): ApiQuery<UsageQuery>,
) -> ApiResult<Json<UsageSummary>> {
    Ok(Json(s.services.conversations.usage(&a, query).await?))
}

/// Start a conversation with the tenant's agents.
#[utoipa::path(post, path = "/api/v1/conversations", tag = "conversations",
    request_body = CreateConversation,
    responses(
        (status = 201, body = Conversation),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_conversation(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiJson(create): ApiJson<CreateConversation>,
) -> ApiResult<(StatusCode, Json<Conversation>)> {
    let conversation = s
        .services
        .conversations
        .create_conversation(&a, create)
        .await?;
    Ok((StatusCode::CREATED, Json(conversation)))
}

/// The tenant's conversations, newest first; `status=waiting_human` is the handoff queue.
#[utoipa::path(get, path = "/api/v1/conversations", tag = "conversations",
    params(ConversationQuery),
    responses(
        (status = 200, body = Page<Conversation>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_conversations(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiQuery(query): ApiQuery<ConversationQuery>,
) -> ApiResult<Json<Page<Conversation>>> {
    Ok(Json(
        s.services
            .conversations
            .list_conversations(&a, query)
            .await?,
    ))
}

/// A conversation with its transcript.
#[utoipa::path(get, path = "/api/v1/conversations/{id}", tag = "conversations",
    params(("id" = Uuid, Path, description = "The conversation's id")),
    responses(
        (status = 200, body = ConversationDetail),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_conversation(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<ConversationDetail>> {
    Ok(Json(
        s.services.conversations.get_conversation(&a, id).await?,
    ))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParam {
    /// Answer with Server-Sent Events (same as `stream` in the body).
    #[serde(default)]
    stream: bool,
}

/// One Server-Sent Event as it travels: `event` names its type, `data` is the event as JSON (a
/// `StreamEvent` of that `type`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the wire format only
pub struct SseEvent {
    /// `message.delta`, `tool.call`, `tool.result`, `sources`, `agent.handoff`,
    /// `message.done` or `error`.
    event: String,
    /// The event as JSON: a `StreamEvent`.
    data: String,
}

/// Send the customer's message; the agents answer. With `stream` (body or query) the answer
/// comes as Server-Sent Events: `message.delta`, `tool.call`, `tool.result`, `agent.handoff`,
/// `sources`, then `message.done` with the usage. While a person owns the conversation the
/// bot stays silent (`reply` is absent).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/messages", tag = "conversations",
    params(("id" = Uuid, Path, description = "The conversation's id"), StreamParam),
    request_body = PostMessage,
    responses(
        (status = 200, description = "The turn, or its events", content(
            (TurnResult = "application/json"),
            (SseEvent = "text/event-stream"),
        )),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn post_message(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(param): ApiQuery<StreamParam>,
    ApiJson(message): ApiJson<PostMessage>,
) -> ApiResult<Response> {
    if message.stream || param.stream {
        return stream_turn(s.services.clone(), a, id, message).await;
    }
    let turn = detached_turn(s.services.clone(), a, id, message).await?;
    Ok(Json(turn).into_response())
}

/// Runs a turn in a task of its own and waits for it: a client that goes away, or the
/// request timeout, never stops a turn half-way (a booking made and no answer saved).
pub async fn detached_turn(
    services: Services,
    access: Access,
    id: Uuid,
    message: PostMessage,
) -> Result<TurnResult, AppError> {
    let silent: EventSink = Arc::new(|_| {});
    tokio::spawn(async move {
        services
            .conversations
            .post_message(&access, id, message, silent)
            .await
    })
    .await
    .unwrap_or_else(|e| Err(AppError::Internal(format!("the turn failed: {e}"))))
}

/// The events of a turn running in a task of its own (it completes and is saved even if the
/// client goes away): the first event, and a receiver for the rest. An error before the
/// first event is returned as such (an ordinary error response); one after it arrives as an
/// `error` event.
pub async fn spawn_turn(
    services: Services,
    access: Access,
    id: Uuid,
    message: PostMessage,
) -> ApiResult<(StreamEvent, UnboundedReceiver<StreamEvent>)> {
    spawn_events(move |sink| async move {
        services
            .conversations
            .post_message(&access, id, message, sink)
            .await
            .map(|_| ())
    })
    .await
}

/// Runs `run` in a task of its own with a sink for its events: the first event, and a
/// receiver for the rest (see [`spawn_turn`]).
pub async fn spawn_events<F, Fut>(
    run: F,
) -> ApiResult<(StreamEvent, UnboundedReceiver<StreamEvent>)>
where
    F: FnOnce(EventSink) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), AppError>> + Send,
{
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<StreamEvent>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<AppError>();
    let started = Arc::new(AtomicBool::new(false));
    let sink: EventSink = {
        let tx = tx.clone();
        let started = started.clone();
        Arc::new(move |event| {
            started.store(true, Ordering::SeqCst);
            let _ = tx.send(event);
        })
    };
    tokio::spawn(async move {
        if let Err(e) = run(sink).await {
            if started.load(Ordering::SeqCst) {
                let _ = tx.send(StreamEvent::Error {
                    code: e.code().into(),
                    message: e.user_message(),
                });
            }
            let _ = done_tx.send(e);
        }
    });
    match rx.recv().await {
        Some(first) => Ok((first, rx)),
        None => Err(ApiError(done_rx.await.unwrap_or_else(|_| {
            AppError::Internal("the turn ended without an answer".into())
        }))),
    }
}

/// The events as SSE, each mapped by `to_event` (`None` skips one); `last` closes the stream.
pub fn sse_response<F>(
    first: StreamEvent,
    rx: UnboundedReceiver<StreamEvent>,
    mut to_event: F,
    last: Option<Event>,
) -> Response
where
    F: FnMut(StreamEvent) -> Option<Event> + Send + 'static,
{
    let events = futures::stream::unfold((Some(first), rx), |(pending, mut rx)| async move {
        let next = match pending {
            Some(event) => Some(event),
            None => rx.recv().await,
        };
        next.map(|event| (event, (None, rx)))
    })
    .filter_map(move |event| std::future::ready(to_event(event)))
    .chain(futures::stream::iter(last))
    .map(Ok::<_, std::convert::Infallible>);
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn stream_turn(
    services: Services,
    access: Access,
    id: Uuid,
    message: PostMessage,
) -> ApiResult<Response> {
    let (first, rx) = spawn_turn(services, access, id, message).await?;
    Ok(sse_response(
        first,
        rx,
        |e| Event::default().event(e.name()).json_data(&e).ok(),
        None,
    ))
}

/// What each node did in the turn a customer message started: route, tools, tokens, timing.
#[utoipa::path(get, path = "/api/v1/conversations/{id}/messages/{message_id}/steps", tag = "conversations",
    params(
        ("id" = Uuid, Path, description = "The conversation's id"),
        ("message_id" = Uuid, Path, description = "The customer message's id"),
    ),
    responses(
        (status = 200, body = Vec<Step>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_steps(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath((id, message_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Vec<Step>>> {
    Ok(Json(
        s.services
            .conversations
            .list_steps(&a, id, message_id)
            .await?,
    ))
}

/// Rate an agent's answer (up or down, with an optional comment).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/messages/{message_id}/feedback", tag = "conversations",
    params(
        ("id" = Uuid, Path, description = "The conversation's id"),
        ("message_id" = Uuid, Path, description = "The answer's id"),
    ),
    request_body = Feedback,
    responses(
        (status = 200, body = Message),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rate_message(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath((id, message_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(feedback): ApiJson<Feedback>,
) -> ApiResult<Json<Message>> {
    Ok(Json(
        s.services
            .conversations
            .rate_message(&a, id, message_id, feedback)
            .await?,
    ))
}

/// A person takes the conversation; the bot stays silent until it is handed back.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/take-over", tag = "conversations",
    params(("id" = Uuid, Path, description = "The conversation's id")),
    responses(
        (status = 200, body = Conversation),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn take_over(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Conversation>> {
    Ok(Json(s.services.conversations.take_over(&a, id).await?))
}

/// The bot answers again.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/hand-back", tag = "conversations",
    params(("id" = Uuid, Path, description = "The conversation's id")),
    responses(
        (status = 200, body = Conversation),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn hand_back(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Conversation>> {
    Ok(Json(s.services.conversations.hand_back(&a, id).await?))
}

/// A person's reply (takes the conversation if it was waiting for one).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/replies", tag = "conversations",
    params(("id" = Uuid, Path, description = "The conversation's id")),
    request_body = OperatorReply,
    responses(
        (status = 201, body = Message),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn operator_reply(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(reply): ApiJson<OperatorReply>,
) -> ApiResult<(StatusCode, Json<Message>)> {
    let message = s
        .services
        .conversations
        .operator_reply(&a, id, reply)
        .await?;
    Ok((StatusCode::CREATED, Json(message)))
}

/// The router's rules, highest priority first. Built-in emergency words always win over them.
#[utoipa::path(get, path = "/api/v1/router-rules", tag = "conversations",
    responses(
        (status = 200, body = Vec<RouterRule>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_router_rules(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
) -> ApiResult<Json<Vec<RouterRule>>> {
    Ok(Json(s.services.conversations.list_router_rules(&a).await?))
}

/// Add a rule: keywords (comma-separated, whole words) or a regular expression, sending
/// matching messages to a specialist.
#[utoipa::path(post, path = "/api/v1/router-rules", tag = "conversations",
    request_body = CreateRouterRule,
    responses(
        (status = 201, body = RouterRule),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_router_rule(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiJson(create): ApiJson<CreateRouterRule>,
) -> ApiResult<(StatusCode, Json<RouterRule>)> {
    let rule = s
        .services
        .conversations
        .create_router_rule(&a, create)
        .await?;
    Ok((StatusCode::CREATED, Json(rule)))
}

#[utoipa::path(delete, path = "/api/v1/router-rules/{id}", tag = "conversations",
    params(("id" = Uuid, Path, description = "The rule's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_router_rule(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    s.services.conversations.delete_router_rule(&a, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The agent's system prompt in use, with its history (newest first, ending in the built-in
/// default, version 0) and the variables it may use.
#[utoipa::path(get, path = "/api/v1/agents/{agent}/prompt", tag = "conversations",
    params(("agent" = String, Path, description = "The agent's name (sales, support, scheduling, emergency or one of the tenant's)")),
    responses(
        (status = 200, body = AgentPrompt),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_prompt(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(agent): ApiPath<String>,
) -> ApiResult<Json<AgentPrompt>> {
    Ok(Json(s.services.conversations.get_prompt(&a, &agent).await?))
}

/// Save a new version of the agent's prompt; it answers with it from the next turn.
#[utoipa::path(put, path = "/api/v1/agents/{agent}/prompt", tag = "conversations",
    params(("agent" = String, Path, description = "The agent's name (sales, support, scheduling, emergency or one of the tenant's)")),
    request_body = SavePrompt,
    responses(
        (status = 200, body = AgentPrompt),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn save_prompt(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(agent): ApiPath<String>,
    ApiJson(save): ApiJson<SavePrompt>,
) -> ApiResult<Json<AgentPrompt>> {
    Ok(Json(
        s.services
            .conversations
            .save_prompt(&a, &agent, save)
            .await?,
    ))
}

/// Go back to the built-in prompt (saved as a new version; the history stays).
#[utoipa::path(post, path = "/api/v1/agents/{agent}/prompt/restore-default", tag = "conversations",
    params(("agent" = String, Path, description = "The agent's name (sales, support, scheduling, emergency or one of the tenant's)")),
    responses(
        (status = 200, body = AgentPrompt),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn restore_default_prompt(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(agent): ApiPath<String>,
) -> ApiResult<Json<AgentPrompt>> {
    Ok(Json(
        s.services
            .conversations
            .restore_default_prompt(&a, &agent)
            .await?,
    ))
}

/// A unified diff between two versions of the agent's prompt (0 is the default).
#[utoipa::path(get, path = "/api/v1/agents/{agent}/prompt/diff", tag = "conversations",
    params(("agent" = String, Path, description = "The agent's name (sales, support, scheduling, emergency or one of the tenant's)"), PromptDiffQuery),
    responses(
        (status = 200, body = PromptDiff),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn diff_prompts(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(agent): ApiPath<String>,
    ApiQuery(query): ApiQuery<PromptDiffQuery>,
) -> ApiResult<Json<PromptDiff>> {
    Ok(Json(
        s.services
            .conversations
            .diff_prompts(&a, &agent, query)
            .await?,
    ))
}
