//! LLM providers: any OpenAI-compatible chat endpoint (OpenAI, Azure OpenAI, Ollama, vLLM…)
//! through async-openai, behind the `llm` circuit breaker, with timeouts, retries with backoff
//! on rate limits and server errors, and token/cost accounting from the configured price table.
//! Without a provider the platform runs in offline mode (see `crate::agents::offline`).
//! Tenants may bring their own provider ([`providers`], [`settings`]).

pub mod fake;
pub mod providers;
pub mod settings;
pub mod transcribe;

pub use providers::Providers;

use std::collections::HashMap;
use std::time::Duration;

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionMessageToolCalls, ChatCompletionRequestMessage, ChatCompletionStreamOptions,
    ChatCompletionTools, CompletionUsage, CreateChatCompletionRequest, ResponseFormat,
};
use futures::StreamExt;
use secrecy::{ExposeSecret, SecretString};

use app::types::Usage;

use crate::config::CircuitConfig;
use crate::outbound::{Breaker, OutboundError};

/// Settings of the LLM provider (part of [`crate::config::Config`]).
#[derive(Clone, Debug)]
pub struct LlmConfig {
    /// `LLM_BASE_URL`, e.g. `https://api.openai.com/v1` or `http://localhost:11434/v1`;
    /// offline mode without one.
    pub base_url: Option<String>,
    pub api_key: Option<SecretString>,
    /// Model of the specialists (`LLM_MODEL`).
    pub chat_model: String,
    /// Model of the router's classification (`LLM_ROUTER_MODEL`, the chat model by default).
    pub router_model: String,
    /// US dollars per million prompt and completion tokens, by model (`LLM_PRICES`:
    /// `gpt-4o-mini=0.15/0.60,…`).
    pub prices: HashMap<String, (f64, f64)>,
    /// Longest wait for the answer to start, or between two streamed chunks
    /// (`LLM_TIMEOUT_SECS`).
    pub timeout: Duration,
    /// Longest a whole call may take, streaming included (`LLM_MAX_CALL_SECS`): a provider
    /// that trickles chunks cannot hold a turn open for ever.
    pub max_call: Duration,
    /// Retries after a rate limit, a server error or no answer (`LLM_RETRIES`).
    pub retries: u32,
}

impl LlmConfig {
    /// Parses `LLM_PRICES`.
    pub fn parse_prices(text: &str) -> Result<HashMap<String, (f64, f64)>, String> {
        let mut prices = HashMap::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let parsed = entry.split_once('=').and_then(|(model, price)| {
                let (input, output) = price.split_once('/')?;
                let input: f64 = input.trim().parse().ok()?;
                let output: f64 = output.trim().parse().ok()?;
                (input >= 0.0 && output >= 0.0).then(|| (model.trim().to_string(), (input, output)))
            });
            let (model, price) =
                parsed.ok_or_else(|| format!("'{entry}' is not model=input/output"))?;
            prices.insert(model, price);
        }
        Ok(prices)
    }
}

/// Most tool calls one answer may ask for; a higher index fails the call (a tenant's own
/// endpoint chooses these numbers, and one chunk with index 4 294 967 295 must not make us
/// allocate room for four billion calls).
pub const MAX_TOOL_CALLS: usize = 16;
/// Longest function name (OpenAI allows 64 characters).
const MAX_TOOL_NAME_BYTES: usize = 64;
/// Longest arguments of one tool call.
pub const MAX_ARGUMENT_BYTES: usize = 64 * 1024;
/// Longest text of one answer.
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// Which configured model a call uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelRole {
    Chat,
    Router,
}

/// What a call asks beyond the role's model and free text (the workflows' LLM steps).
#[derive(Clone, Debug, Default)]
pub struct CallOptions {
    /// Another model of the same provider than the role's.
    pub model: Option<String>,
    /// `json_schema` for structured output.
    pub response_format: Option<ResponseFormat>,
}

/// A tool call the model asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// JSON text, as the model wrote it (may be invalid).
    pub arguments: String,
}

/// A finished answer of the model.
#[derive(Clone, Debug, Default)]
pub struct Completion {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("no LLM provider is configured")]
    NotConfigured,
    /// The circuit is open: the provider failed repeatedly and is not being called.
    #[error("the LLM provider is unavailable (circuit open)")]
    Unavailable,
    #[error("the LLM provider failed: {0}")]
    Failed(String),
}

/// The provider, or offline mode.
pub struct Llm {
    provider: Option<Provider>,
}

struct Provider {
    client: async_openai::Client<OpenAIConfig>,
    breaker: Breaker,
    config: LlmConfig,
}

/// Whether another attempt may succeed: rate limits, server errors, timeouts and transport
/// failures may; a rejected request or credential will not.
fn is_transient(e: &OpenAIError) -> bool {
    match e {
        OpenAIError::ApiError(api) => {
            let permanent = [
                "invalid_request_error",
                "insufficient_quota",
                "authentication_error",
                "permission_error",
                "not_found_error",
            ];
            !api.r#type
                .as_deref()
                .is_some_and(|t| permanent.contains(&t))
                && api.code.as_deref() != Some("invalid_api_key")
        }
        OpenAIError::InvalidArgument(_) | OpenAIError::JSONDeserialize(..) => false,
        _ => true,
    }
}

/// A call's failure.
#[derive(Debug)]
struct CallError {
    message: String,
    /// Another attempt may succeed.
    transient: bool,
    /// The provider misbehaved: counts against its circuit (as transient failures do).
    counts: bool,
    /// Part of the answer already reached the caller, so the call cannot be repeated.
    emitted: bool,
}

impl CallError {
    fn from_openai(e: OpenAIError, emitted: bool) -> CallError {
        let transient = is_transient(&e);
        CallError {
            transient,
            counts: transient,
            message: e.to_string(),
            emitted,
        }
    }

    fn timeout(emitted: bool) -> CallError {
        CallError {
            message: "timed out".into(),
            transient: true,
            counts: true,
            emitted,
        }
    }

    /// An answer past our bounds (too long, too many tool calls, too slow in all): not
    /// retried, since the same provider would most likely do it again, but counted.
    fn out_of_bounds(message: String, emitted: bool) -> CallError {
        CallError {
            message,
            transient: false,
            counts: true,
            emitted,
        }
    }
}

/// An async-openai client for the API at `base`, whose own backoff gives up at once: callers
/// retry themselves.
pub(crate) fn openai_client(
    base: &str,
    api_key: Option<&SecretString>,
    http: reqwest::Client,
) -> async_openai::Client<OpenAIConfig> {
    let openai = OpenAIConfig::new()
        .with_api_base(base.trim_end_matches('/'))
        .with_api_key(
            api_key
                .map(|k| k.expose_secret().to_string())
                .unwrap_or_else(|| "none".into()),
        );
    let no_retry = backoff::ExponentialBackoffBuilder::new()
        .with_max_elapsed_time(Some(Duration::ZERO))
        .build();
    async_openai::Client::build(http, openai, no_retry)
}

/// The HTTP client settings every provider's client starts from.
pub(crate) fn http_client() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("agent-platform/", env!("CARGO_PKG_VERSION")))
}

impl Llm {
    /// The platform's provider, behind the `llm` circuit.
    pub fn new(config: LlmConfig, circuit: CircuitConfig) -> Llm {
        let http = http_client().build().unwrap_or_default();
        Llm::with_client("llm", config, circuit, http)
    }

    /// A provider behind a circuit of its own (`service` names it in the metrics).
    pub fn with_client(
        service: &str,
        config: LlmConfig,
        circuit: CircuitConfig,
        http: reqwest::Client,
    ) -> Llm {
        let provider = config.base_url.clone().map(|base| {
            // Retries are ours (counted, with jitter, and only before anything was streamed).
            Provider {
                client: openai_client(&base, config.api_key.as_ref(), http),
                breaker: Breaker::new(service, circuit),
                config,
            }
        });
        Llm { provider }
    }

    /// Offline mode when false.
    pub fn is_configured(&self) -> bool {
        self.provider.is_some()
    }

    /// Whether a call would be attempted now (configured, circuit not open).
    pub fn is_available(&self) -> bool {
        self.provider
            .as_ref()
            .is_some_and(|p| p.breaker.is_call_permitted())
    }

    /// One answer, streamed: `on_delta` sees the text as it arrives. Tool calls come whole in
    /// the result.
    pub async fn chat(
        &self,
        role: ModelRole,
        messages: Vec<ChatCompletionRequestMessage>,
        tools: Vec<ChatCompletionTools>,
        on_delta: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Completion, LlmError> {
        self.chat_with(role, CallOptions::default(), messages, tools, on_delta)
            .await
    }

    /// [`Llm::chat`] with another model or a response format.
    pub async fn chat_with(
        &self,
        role: ModelRole,
        options: CallOptions,
        messages: Vec<ChatCompletionRequestMessage>,
        tools: Vec<ChatCompletionTools>,
        on_delta: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Completion, LlmError> {
        let provider = self.provider.as_ref().ok_or(LlmError::NotConfigured)?;
        let model = options.model.unwrap_or_else(|| match role {
            ModelRole::Chat => provider.config.chat_model.clone(),
            ModelRole::Router => provider.config.router_model.clone(),
        });
        let request = CreateChatCompletionRequest {
            model: model.clone(),
            messages,
            response_format: options.response_format,
            tools: (!tools.is_empty()).then_some(tools),
            stream: Some(true),
            stream_options: Some(ChatCompletionStreamOptions {
                include_usage: Some(true),
                include_obfuscation: None,
            }),
            ..Default::default()
        };
        let mut attempt = 0;
        loop {
            let started = std::time::Instant::now();
            let outcome = provider
                .breaker
                .call_with(
                    |e: &CallError| e.counts,
                    provider.stream_once(request.clone(), on_delta),
                )
                .await;
            let elapsed = started.elapsed();
            match outcome {
                Ok(mut completion) => {
                    completion.usage.cost_usd = provider.cost(&model, &completion.usage);
                    let label = provider.metric_label(&model);
                    metrics::histogram!("llm_call_seconds", "model" => label.clone())
                        .record(elapsed.as_secs_f64());
                    metrics::counter!("llm_tokens_total", "model" => label.clone(), "kind" => "prompt")
                        .increment(completion.usage.prompt_tokens);
                    metrics::counter!("llm_tokens_total", "model" => label, "kind" => "completion")
                        .increment(completion.usage.completion_tokens);
                    return Ok(completion);
                }
                Err(OutboundError::Unavailable(_)) => return Err(LlmError::Unavailable),
                Err(OutboundError::Call(e)) => {
                    metrics::counter!("llm_errors_total", "model" => provider.metric_label(&model))
                        .increment(1);
                    if !e.transient || e.emitted || attempt >= provider.config.retries {
                        return Err(LlmError::Failed(e.message));
                    }
                    attempt += 1;
                    let base = 200u64 << attempt.min(6);
                    let jitter = rand::random::<u64>() % (base / 2 + 1);
                    tracing::warn!(attempt, error = %e.message, "LLM call failed; retrying");
                    tokio::time::sleep(Duration::from_millis(base / 2 + jitter)).await;
                }
            }
        }
    }
}

impl Provider {
    /// The `model` label of the metrics: a model named in `LLM_PRICES`, else `other`. Tenants
    /// name their own models, and every distinct label value would be a new time series.
    fn metric_label(&self, model: &str) -> String {
        if self.config.prices.contains_key(model) {
            model.to_string()
        } else {
            "other".to_string()
        }
    }

    fn cost(&self, model: &str, usage: &Usage) -> f64 {
        self.config
            .prices
            .get(model)
            .map(|(input, output)| {
                (usage.prompt_tokens as f64 * input + usage.completion_tokens as f64 * output)
                    / 1_000_000.0
            })
            .unwrap_or(0.0)
    }

    async fn stream_once(
        &self,
        request: CreateChatCompletionRequest,
        on_delta: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Completion, CallError> {
        let max_call = self.config.max_call;
        let call_deadline = tokio::time::Instant::now() + max_call;
        // The next chunk is due within `timeout`, and never after the whole call's deadline.
        let due = || (tokio::time::Instant::now() + self.config.timeout).min(call_deadline);
        let overdue = |emitted: bool| {
            if tokio::time::Instant::now() >= call_deadline {
                CallError::out_of_bounds(
                    format!("the answer took longer than {} s", max_call.as_secs()),
                    emitted,
                )
            } else {
                CallError::timeout(emitted)
            }
        };
        let mut stream = tokio::time::timeout_at(due(), self.client.chat().create_stream(request))
            .await
            .map_err(|_| overdue(false))?
            .map_err(|e| CallError::from_openai(e, false))?;
        let mut completion = Completion {
            usage: Usage {
                llm_calls: 1,
                ..Usage::default()
            },
            ..Completion::default()
        };
        let mut calls: Vec<ToolCall> = Vec::new();
        let mut emitted = false;
        loop {
            let next = tokio::time::timeout_at(due(), stream.next())
                .await
                .map_err(|_| overdue(emitted))?;
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|e| CallError::from_openai(e, emitted))?;
            if let Some(CompletionUsage {
                prompt_tokens,
                completion_tokens,
                ..
            }) = chunk.usage
            {
                completion.usage.prompt_tokens = u64::from(prompt_tokens);
                completion.usage.completion_tokens = u64::from(completion_tokens);
            }
            for choice in chunk.choices {
                if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
                    if completion.content.len() + text.len() > MAX_ANSWER_BYTES {
                        return Err(CallError::out_of_bounds(
                            format!("the answer exceeded {} KiB", MAX_ANSWER_BYTES / 1024),
                            emitted,
                        ));
                    }
                    emitted = true;
                    on_delta(&text);
                    completion.content.push_str(&text);
                }
                for part in choice.delta.tool_calls.unwrap_or_default() {
                    let index = usize::try_from(part.index).unwrap_or(usize::MAX);
                    if index >= MAX_TOOL_CALLS {
                        return Err(CallError::out_of_bounds(
                            format!(
                                "the answer asked for tool call #{} (at most {MAX_TOOL_CALLS})",
                                part.index
                            ),
                            emitted,
                        ));
                    }
                    if calls.len() <= index {
                        calls.resize_with(index + 1, || ToolCall {
                            id: String::new(),
                            name: String::new(),
                            arguments: String::new(),
                        });
                    }
                    let call = &mut calls[index];
                    if let Some(id) = part.id {
                        call.id = id;
                    }
                    if let Some(function) = part.function {
                        if let Some(name) = function.name {
                            call.name.push_str(&name);
                        }
                        if let Some(arguments) = function.arguments {
                            call.arguments.push_str(&arguments);
                        }
                        if call.name.len() > MAX_TOOL_NAME_BYTES
                            || call.arguments.len() > MAX_ARGUMENT_BYTES
                        {
                            return Err(CallError::out_of_bounds(
                                format!(
                                    "a tool call's name or arguments exceeded {MAX_TOOL_NAME_BYTES} \
                                     bytes or {} KiB",
                                    MAX_ARGUMENT_BYTES / 1024
                                ),
                                emitted,
                            ));
                        }
                    }
                }
            }
        }
        completion.tool_calls = calls.into_iter().filter(|c| !c.name.is_empty()).collect();
        Ok(completion)
    }
}

/// The assistant message that carried `calls`, for the next request's history.
pub fn assistant_tool_calls(content: &str, calls: &[ToolCall]) -> ChatCompletionRequestMessage {
    use async_openai::types::chat::FunctionCall;
    use async_openai::types::chat::{
        ChatCompletionMessageToolCall, ChatCompletionRequestAssistantMessage,
        ChatCompletionRequestAssistantMessageContent,
    };
    #[allow(deprecated)]
    ChatCompletionRequestMessage::Assistant(ChatCompletionRequestAssistantMessage {
        content: (!content.is_empty())
            .then(|| ChatCompletionRequestAssistantMessageContent::Text(content.to_string())),
        tool_calls: Some(
            calls
                .iter()
                .map(|c| {
                    ChatCompletionMessageToolCalls::Function(ChatCompletionMessageToolCall {
                        id: c.id.clone(),
                        function: FunctionCall {
                            name: c.name.clone(),
                            arguments: c.arguments.clone(),
                        },
                    })
                })
                .collect(),
        ),
        ..Default::default()
    })
}

pub fn system(text: &str) -> ChatCompletionRequestMessage {
    ChatCompletionRequestMessage::System(text.to_string().into())
}

pub fn user(text: &str) -> ChatCompletionRequestMessage {
    ChatCompletionRequestMessage::User(text.to_string().into())
}

pub fn assistant(text: &str) -> ChatCompletionRequestMessage {
    ChatCompletionRequestMessage::Assistant(text.to_string().into())
}

pub fn tool_result(call_id: &str, text: &str) -> ChatCompletionRequestMessage {
    use async_openai::types::chat::{
        ChatCompletionRequestToolMessage, ChatCompletionRequestToolMessageContent,
    };
    ChatCompletionRequestMessage::Tool(ChatCompletionRequestToolMessage {
        content: ChatCompletionRequestToolMessageContent::Text(text.to_string()),
        tool_call_id: call_id.to_string(),
    })
}

/// A function the model may call.
pub fn function_tool(
    name: &str,
    description: &str,
    parameters: serde_json::Value,
) -> ChatCompletionTools {
    use async_openai::types::chat::ChatCompletionTool;
    use async_openai::types::chat::FunctionObject;
    ChatCompletionTools::Function(ChatCompletionTool {
        function: FunctionObject {
            name: name.to_string(),
            description: Some(description.to_string()),
            parameters: Some(parameters),
            strict: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::fake::{chunk, FakeLlm, Reply, CHAT_MODEL};
    use super::*;

    /// A client of `fake` that waits `timeout` for each chunk and `max_call` in all, and would
    /// retry twice.
    fn client(fake: &FakeLlm, timeout: Duration, max_call: Duration) -> Llm {
        let config = LlmConfig {
            base_url: Some(fake.base_url.clone()),
            api_key: None,
            chat_model: CHAT_MODEL.into(),
            router_model: CHAT_MODEL.into(),
            prices: HashMap::new(),
            timeout,
            max_call,
            retries: 2,
        };
        let circuit = CircuitConfig {
            failures: 100,
            open_for: Duration::from_secs(60),
            timeout: Duration::from_secs(60),
        };
        Llm::with_client("llm:test", config, circuit, reqwest::Client::new())
    }

    /// One call against a provider answering `reply`: its error and the text streamed to the
    /// caller before it.
    async fn hostile(reply: Reply, timeout: Duration, max_call: Duration) -> (String, usize) {
        let fake = FakeLlm::start().await.unwrap();
        fake.chat(reply);
        let llm = client(&fake, timeout, max_call);
        let mut streamed = 0;
        let outcome = llm
            .chat(ModelRole::Chat, vec![user("hi")], Vec::new(), &mut |t| {
                streamed += t.len()
            })
            .await;
        assert_eq!(
            fake.requests().len(),
            1,
            "an out-of-bounds answer is not retried"
        );
        match outcome {
            Err(LlmError::Failed(message)) => (message, streamed),
            other => panic!("expected a failed call, got {other:?}"),
        }
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn a_tool_call_index_of_four_billion_fails_the_call_instead_of_allocating() {
        let call = json_call(u32::MAX, "search_knowledge", "{}");
        let (error, _) = hostile(Reply::Chunks(vec![call]), SECOND * 5, SECOND * 10).await;
        assert!(error.contains("tool call #4294967295"), "{error}");
    }

    #[tokio::test]
    async fn seventeen_tool_calls_are_too_many() {
        let calls = (0..17)
            .map(|i| json_call(i, "search_knowledge", "{}"))
            .collect();
        let (error, _) = hostile(Reply::Chunks(calls), SECOND * 5, SECOND * 10).await;
        assert!(error.contains("at most 16"), "{error}");
    }

    #[tokio::test]
    async fn an_endless_answer_stops_at_its_cap() {
        let (error, streamed) =
            hostile(Reply::Flood(4 * MAX_ANSWER_BYTES), SECOND * 5, SECOND * 10).await;
        assert!(error.contains("exceeded 256 KiB"), "{error}");
        assert!(
            streamed <= MAX_ANSWER_BYTES,
            "{streamed} bytes reached the caller"
        );
        assert!(
            streamed > MAX_ANSWER_BYTES / 2,
            "the answer was streamed up to the cap"
        );
    }

    #[tokio::test]
    async fn endless_tool_arguments_stop_at_their_cap() {
        let piece = "a".repeat(8 * 1024);
        let calls = (0..10)
            .map(|_| json_call(0, "", &piece))
            .chain([json_call(0, "search_knowledge", "")])
            .collect();
        let (error, streamed) = hostile(Reply::Chunks(calls), SECOND * 5, SECOND * 10).await;
        assert!(error.contains("64 KiB"), "{error}");
        assert_eq!(streamed, 0);
    }

    #[tokio::test]
    async fn a_trickling_answer_ends_at_the_whole_call_deadline() {
        let started = std::time::Instant::now();
        let (error, streamed) = hostile(
            Reply::Trickle(Duration::from_millis(100)),
            SECOND,
            SECOND * 2,
        )
        .await;
        assert!(error.contains("longer than 2 s"), "{error}");
        assert!(streamed > 0, "the chunks before the deadline were streamed");
        // Each chunk came within the per-chunk timeout, so only the call's deadline ended it.
        assert!(started.elapsed() < SECOND * 10, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn only_priced_models_become_metric_labels() {
        let fake = FakeLlm::start().await.unwrap();
        let mut llm = client(&fake, SECOND, SECOND);
        let Some(provider) = llm.provider.as_mut() else {
            panic!("configured")
        };
        provider
            .config
            .prices
            .insert("gpt-4o-mini".into(), (0.15, 0.6));
        assert_eq!(provider.metric_label("gpt-4o-mini"), "gpt-4o-mini");
        assert_eq!(provider.metric_label("tenant-invented-model-123"), "other");
    }

    fn json_call(index: u32, name: &str, arguments: &str) -> serde_json::Value {
        let mut function = serde_json::json!({ "arguments": arguments });
        if !name.is_empty() {
            function["name"] = name.into();
        }
        chunk(
            serde_json::json!({ "tool_calls": [{
                "index": index, "id": format!("call_{index}"), "type": "function",
                "function": function
            }] }),
            None,
        )
    }

    #[test]
    fn prices_parse_and_reject_garbage() {
        let prices = LlmConfig::parse_prices("gpt-4o-mini=0.15/0.6, local=0/0").unwrap();
        assert_eq!(prices["gpt-4o-mini"], (0.15, 0.6));
        assert_eq!(prices["local"], (0.0, 0.0));
        assert!(LlmConfig::parse_prices("gpt=cheap").is_err());
        assert!(LlmConfig::parse_prices("gpt=-1/2").is_err());
    }
}
