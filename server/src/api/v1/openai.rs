//! `POST /v1/chat/completions`: the OpenAI chat API in front of the tenant's agents, so any
//! OpenAI client (SDKs, chat front-ends) can talk to them with a tenant API key. Each call is
//! one conversation turn: the earlier messages become the conversation's history, the last
//! user message is answered by the agent graph. The conversation's id comes back in the
//! `x-conversation-id` header and the completion's `id`.

use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use app::error::AppError;
use app::types::{
    Channel, CreateConversation, HistoryMessage, MessageRole, PostMessage, StreamEvent, Usage,
};

use crate::auth::ApiAccess;
use crate::http::error::{ApiJson, ApiResult, Problem};
use crate::state::AppState;

use super::conversations::{detached_turn, spawn_turn, sse_response};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant` (system messages are ignored: the agents have their
    /// own prompts).
    pub role: String,
    /// Text, or an array of content parts of which the `text` ones are read.
    #[schema(value_type = Object)]
    pub content: Value,
}

/// The OpenAI chat-completions request; fields not listed are accepted and ignored.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ChatCompletionRequest {
    /// Echoed back; the tenant's router picks the agent.
    #[serde(default)]
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub stream: bool,
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

fn chunk(id: &str, created: i64, model: &str, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    })
}

/// Talk to the tenant's agents with the OpenAI chat-completions API (`stream` too).
#[utoipa::path(post, path = "/v1/chat/completions", tag = "conversations",
    request_body = ChatCompletionRequest,
    responses(
        (status = 200, description = "An OpenAI `chat.completion`, or `chat.completion.chunk` events ending in `[DONE]`", body = Object),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn chat_completions(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiJson(request): ApiJson<ChatCompletionRequest>,
) -> ApiResult<Response> {
    let mut turns: Vec<(MessageRole, String)> = request
        .messages
        .iter()
        .filter_map(|m| {
            let role = match m.role.as_str() {
                "user" => MessageRole::User,
                "assistant" => MessageRole::Assistant,
                _ => return None,
            };
            Some((role, text_of(&m.content)))
        })
        .filter(|(_, text)| !text.trim().is_empty())
        .collect();
    let Some((MessageRole::User, question)) = turns.pop() else {
        return Err(AppError::invalid("messages", "the last message must be the user's").into());
    };
    let history = turns
        .into_iter()
        .map(|(role, content)| HistoryMessage { role, content })
        .collect();
    let conversations = &s.services.conversations;
    let conversation = conversations
        .create_conversation(
            &a,
            CreateConversation {
                channel: Some(Channel::Openai),
                title: None,
                history,
            },
        )
        .await?;
    let model = request.model.unwrap_or_else(|| "agent-platform".into());
    let id = format!("chatcmpl-{}", conversation.id.simple());
    let created = conversation.created_at.timestamp();
    let message = PostMessage {
        content: question,
        stream: request.stream,
    };
    let mut response = if request.stream {
        streamed(&s, a, conversation.id, message, id, created, model).await?
    } else {
        let turn = detached_turn(s.services.clone(), a, conversation.id, message).await?;
        let (content, usage) = turn
            .reply
            .map(|r| (r.content, r.usage.unwrap_or_default()))
            .unwrap_or_default();
        Json(json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}],
            "usage": usage_json(&usage),
        }))
        .into_response()
    };
    if let Ok(value) = HeaderValue::from_str(&conversation.id.to_string()) {
        response.headers_mut().insert("x-conversation-id", value);
    }
    Ok(response)
}

async fn streamed(
    s: &AppState,
    access: app::services::Access,
    conversation: Uuid,
    message: PostMessage,
    id: String,
    created: i64,
    model: String,
) -> ApiResult<Response> {
    let (first, rx) = spawn_turn(s.services.clone(), access, conversation, message).await?;
    // The first delta carries the role, as OpenAI's do.
    let mut role = Some("assistant");
    let to_event = move |event: StreamEvent| -> Option<Event> {
        let body = match event {
            StreamEvent::MessageDelta { text } => {
                let delta = match role.take() {
                    Some(role) => json!({"role": role, "content": text}),
                    None => json!({"content": text}),
                };
                chunk(&id, created, &model, delta, None)
            }
            StreamEvent::MessageDone { usage, .. } => {
                let mut last = chunk(&id, created, &model, json!({}), Some("stop"));
                last["usage"] = usage_json(&usage);
                last
            }
            _ => return None,
        };
        Some(Event::default().data(body.to_string()))
    };
    Ok(sse_response(
        first,
        rx,
        to_event,
        Some(Event::default().data("[DONE]")),
    ))
}
