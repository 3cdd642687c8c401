//! A fake OpenAI-compatible chat server on loopback, for the integration tests and
//! `server bench chat`: the real async-openai client talks to it over HTTP. Answers are scripted per model (the tests give the router and the specialists
//! different model names), streamed as SSE chunks when asked, with tool calls, errors and
//! latency on demand. Every request is recorded.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

pub const ROUTER_MODEL: &str = "fake-router";
pub const CHAT_MODEL: &str = "fake-chat";

#[derive(Clone, Debug)]
pub enum Reply {
    Text(String),
    /// (function name, arguments as JSON).
    Tools(Vec<(String, Value)>),
    /// An error status with an OpenAI-style error body.
    Fail(u16),
    /// These stream chunks as they are (a hostile or broken provider: a tenant may point its
    /// settings at any server), e.g. a tool call with an absurd index.
    Chunks(Vec<Value>),
    /// This many bytes of text in 4 KiB chunks, at once.
    Flood(usize),
    /// A word every interval, without end.
    Trickle(Duration),
}

pub fn text(t: &str) -> Reply {
    Reply::Text(t.to_string())
}

pub fn tool(name: &str, arguments: Value) -> Reply {
    Reply::Tools(vec![(name.to_string(), arguments)])
}

#[derive(Default)]
struct Script {
    router: VecDeque<Reply>,
    chat: VecDeque<Reply>,
    /// Answer every request with this status (an outage).
    down: Option<u16>,
    delay: Duration,
    requests: Vec<Value>,
    /// The `Authorization` header of each request (the API key the client sent).
    authorizations: Vec<String>,
    /// Transcription requests: model, file name and size.
    transcriptions: Vec<Value>,
}

#[derive(Clone, Default)]
pub struct FakeLlm {
    script: Arc<Mutex<Script>>,
    pub base_url: String,
}

impl FakeLlm {
    pub async fn start() -> std::io::Result<FakeLlm> {
        let mut fake = FakeLlm::default();
        let router = Router::new()
            .route("/v1/chat/completions", post(completions))
            .route("/v1/audio/transcriptions", post(transcriptions))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        fake.base_url = format!("http://{}/v1", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(fake)
    }

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Settings pointing the app at this server (prices: 1 $ / 2 $ per million tokens).
    pub fn config(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LLM_BASE_URL", self.base_url.clone()),
            ("LLM_API_KEY", "sk-test".into()),
            ("LLM_MODEL", CHAT_MODEL.into()),
            ("LLM_ROUTER_MODEL", ROUTER_MODEL.into()),
            ("LLM_PRICES", format!("{CHAT_MODEL}=1/2,{ROUTER_MODEL}=1/2")),
            ("LLM_RETRIES", "0".into()),
        ]
    }

    pub fn route(&self, reply: Reply) {
        self.script().router.push_back(reply);
    }

    pub fn chat(&self, reply: Reply) {
        self.script().chat.push_back(reply);
    }

    pub fn set_down(&self, status: Option<u16>) {
        self.script().down = status;
    }

    pub fn set_delay(&self, delay: Duration) {
        self.script().delay = delay;
    }

    pub fn requests(&self) -> Vec<Value> {
        self.script().requests.clone()
    }

    /// The `Authorization` header of every request so far (`Bearer <key>`).
    pub fn authorizations(&self) -> Vec<String> {
        self.script().authorizations.clone()
    }

    /// Transcription requests so far (`{"model", "filename", "bytes"}`).
    pub fn transcriptions(&self) -> Vec<Value> {
        self.script().transcriptions.clone()
    }

    /// Requests for `model` so far.
    pub fn requests_for(&self, model: &str) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["model"] == model)
            .collect()
    }
}

/// What a speech-to-text server does with a file: "audio" whose bytes are `SPEECH:<words>`
/// says `<words>`; anything else cannot be decoded (400, as Whisper answers a non-audio file).
async fn transcriptions(
    State(fake): State<FakeLlm>,
    mut form: axum::extract::Multipart,
) -> Response {
    let (mut model, mut filename, mut audio) = (String::new(), String::new(), Vec::new());
    while let Ok(Some(field)) = form.next_field().await {
        match field.name() {
            Some("model") => model = field.text().await.unwrap_or_default(),
            Some("file") => {
                filename = field.file_name().unwrap_or_default().to_string();
                audio = field.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
            }
            _ => {}
        }
    }
    let down = {
        let mut script = fake.script();
        script
            .transcriptions
            .push(json!({ "model": model, "filename": filename, "bytes": audio.len() }));
        script.down
    };
    if let Some(status) = down {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (
            status,
            Json(json!({"error": {"message": "the fake is down"}})),
        )
            .into_response();
    }
    match audio.strip_prefix(b"SPEECH:") {
        Some(words) => Json(json!({ "text": String::from_utf8_lossy(words) })).into_response(),
        None => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"message": "could not decode the audio", "type": "invalid_request_error"}})),
        )
            .into_response(),
    }
}

/// One streamed chunk with `delta` in its only choice.
pub fn chunk(delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
    })
}

fn tool_calls(calls: &[(String, Value)]) -> Vec<Value> {
    calls
        .iter()
        .enumerate()
        .map(|(i, (name, args))| {
            json!({"index": i, "id": format!("call_{i}"), "type": "function",
                   "function": {"name": name, "arguments": args.to_string()}})
        })
        .collect()
}

async fn completions(
    State(fake): State<FakeLlm>,
    headers: axum::http::HeaderMap,
    Json(request): Json<Value>,
) -> Response {
    let (reply, delay) = {
        let mut script = fake.script();
        script.requests.push(request.clone());
        let authorization = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        script.authorizations.push(authorization);
        let reply = if let Some(status) = script.down {
            Reply::Fail(status)
        } else if request["model"] == ROUTER_MODEL {
            script.router.pop_front().unwrap_or_else(|| text("support"))
        } else {
            script.chat.pop_front().unwrap_or_else(|| text("OK."))
        };
        (reply, script.delay)
    };
    tokio::time::sleep(delay).await;
    let prompt_tokens = request["messages"].as_array().map_or(0, Vec::len) * 10;
    let (content, calls) = match reply {
        Reply::Chunks(chunks) => {
            return sse(chunks.iter().map(|c| format!("data: {c}\n\n")).collect());
        }
        Reply::Flood(bytes) => {
            let piece = "x".repeat(4095) + " ";
            let body = (0..bytes.div_ceil(piece.len()))
                .map(|_| format!("data: {}\n\n", chunk(json!({"content": piece}), None)))
                .collect();
            return sse(body);
        }
        Reply::Trickle(every) => {
            let words = futures::stream::unfold((), move |()| async move {
                tokio::time::sleep(every).await;
                let event = format!("data: {}\n\n", chunk(json!({"content": "slow "}), None));
                Some((Ok::<_, std::convert::Infallible>(event), ()))
            });
            return (
                [("content-type", "text/event-stream")],
                axum::body::Body::from_stream(words),
            )
                .into_response();
        }
        Reply::Fail(status) => {
            let body = json!({"error": {"message": "the fake is down", "type": "server_error", "code": null}});
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, Json(body)).into_response();
        }
        Reply::Text(t) => (t, Vec::new()),
        Reply::Tools(calls) => (String::new(), calls),
    };
    let completion_tokens = content.split_whitespace().count() + calls.len() * 5;
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                       "total_tokens": prompt_tokens + completion_tokens});
    if request["stream"] != true {
        let message = if calls.is_empty() {
            json!({"role": "assistant", "content": content})
        } else {
            json!({"role": "assistant", "content": null, "tool_calls": tool_calls(&calls)})
        };
        return Json(json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": request["model"],
            "choices": [{"index": 0, "message": message,
                         "finish_reason": if calls.is_empty() { "stop" } else { "tool_calls" }}],
            "usage": usage
        }))
        .into_response();
    }
    let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    // Words one by one, tool calls in two halves: the client must put them together.
    for word in content.split_inclusive(' ') {
        events.push(chunk(json!({"content": word}), None));
    }
    for call in tool_calls(&calls) {
        let args = call["function"]["arguments"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let half = args.floor_char_boundary(args.len() / 2);
        let mut first = call.clone();
        first["function"]["arguments"] = json!(args[..half]);
        events.push(chunk(json!({"tool_calls": [first]}), None));
        events.push(chunk(
            json!({"tool_calls": [{"index": call["index"], "function": {"arguments": args[half..]}}]}),
            None,
        ));
    }
    let finish = if calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    events.push(chunk(json!({}), Some(finish)));
    events.push(
        json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1,
                        "model": "fake", "choices": [], "usage": usage}),
    );
    sse(events.iter().map(|e| format!("data: {e}\n\n")).collect())
}

/// A finished event stream: `body` and `[DONE]`.
fn sse(mut body: String) -> Response {
    body.push_str("data: [DONE]\n\n");
    ([("content-type", "text/event-stream")], body).into_response()
}
