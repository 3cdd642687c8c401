//! LLM providers: any OpenAI-compatible chat endpoint (OpenAI, Azure OpenAI, Ollama, vLLM…)
//! through async-openai, behind the `llm` circuit breaker, with timeouts, retries with backoff
//! on rate limits and server errors, and token/cost accounting from the configured price table.
//! Without a provider the platform runs in offline mode (see `crate::agents::offline`).
//! Tenants may bring their own provider ([`providers`], [`settings`]).

pub mod fake;
pub mod providers;
pub mod settings;

pub use providers::Providers;

use std::collections::HashMap;
use std::time::Duration;

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionMessageToolCalls, ChatCompletionRequestMessage, ChatCompletionStreamOptions,
    ChatCompletionTools, CompletionUsage, CreateChatCompletionRequest,
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
    /// Longest wait for a whole answer, or between two streamed chunks (`LLM_TIMEOUT_SECS`).
    pub timeout: Duration,
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

/// Which configured model a call uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelRole {
    Chat,
    Router,
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

/// A call's failure: transient ones count against the circuit.
#[derive(Debug)]
struct CallError {
    message: String,
    transient: bool,
    /// Part of the answer already reached the caller, so the call cannot be repeated.
    emitted: bool,
}

impl CallError {
    fn from_openai(e: OpenAIError, emitted: bool) -> CallError {
        CallError {
            transient: is_transient(&e),
            message: e.to_string(),
            emitted,
        }
    }

    fn timeout(emitted: bool) -> CallError {
        CallError {
            message: "timed out".into(),
            transient: true,
            emitted,
        }
    }
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
            let openai = OpenAIConfig::new()
                .with_api_base(base.trim_end_matches('/'))
                .with_api_key(
                    config
                        .api_key
                        .as_ref()
                        .map(|k| k.expose_secret().to_string())
                        .unwrap_or_else(|| "none".into()),
                );
            // Retries are ours (counted, with jitter, and only before anything was streamed);
            // async-openai's own backoff gives up at once.
            let no_retry = backoff::ExponentialBackoffBuilder::new()
                .with_max_elapsed_time(Some(Duration::ZERO))
                .build();
            Provider {
                client: async_openai::Client::build(http, openai, no_retry),
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
        let provider = self.provider.as_ref().ok_or(LlmError::NotConfigured)?;
        let model = match role {
            ModelRole::Chat => provider.config.chat_model.clone(),
            ModelRole::Router => provider.config.router_model.clone(),
        };
        let request = CreateChatCompletionRequest {
            model: model.clone(),
            messages,
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
                    |e: &CallError| e.transient,
                    provider.stream_once(request.clone(), on_delta),
                )
                .await;
            let elapsed = started.elapsed();
            match outcome {
                Ok(mut completion) => {
                    completion.usage.cost_usd = provider.cost(&model, &completion.usage);
                    metrics::histogram!("llm_call_seconds", "model" => model.clone())
                        .record(elapsed.as_secs_f64());
                    metrics::counter!("llm_tokens_total", "model" => model.clone(), "kind" => "prompt")
                        .increment(completion.usage.prompt_tokens);
                    metrics::counter!("llm_tokens_total", "model" => model.clone(), "kind" => "completion")
                        .increment(completion.usage.completion_tokens);
                    return Ok(completion);
                }
                Err(OutboundError::Unavailable(_)) => return Err(LlmError::Unavailable),
                Err(OutboundError::Call(e)) => {
                    metrics::counter!("llm_errors_total", "model" => model.clone()).increment(1);
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
        let timeout = self.config.timeout;
        let mut stream = tokio::time::timeout(timeout, self.client.chat().create_stream(request))
            .await
            .map_err(|_| CallError::timeout(false))?
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
            let next = tokio::time::timeout(timeout, stream.next())
                .await
                .map_err(|_| CallError::timeout(emitted))?;
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
                    emitted = true;
                    on_delta(&text);
                    completion.content.push_str(&text);
                }
                for part in choice.delta.tool_calls.unwrap_or_default() {
                    let index = part.index as usize;
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
    use super::*;

    #[test]
    fn prices_parse_and_reject_garbage() {
        let prices = LlmConfig::parse_prices("gpt-4o-mini=0.15/0.6, local=0/0").unwrap();
        assert_eq!(prices["gpt-4o-mini"], (0.15, 0.6));
        assert_eq!(prices["local"], (0.0, 0.0));
        assert!(LlmConfig::parse_prices("gpt=cheap").is_err());
        assert!(LlmConfig::parse_prices("gpt=-1/2").is_err());
    }
}
