//! Embedding models behind one trait: all-MiniLM-L6-v2 run locally through candle, and any
//! OpenAI-compatible `/embeddings` endpoint through async-openai. Vectors are L2-normalised, so
//! cosine similarity is their dot product.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_openai::config::OpenAIConfig;
use async_openai::types::embeddings::CreateEmbeddingRequestArgs;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};
use tokio::sync::OnceCell;

use crate::config::CircuitConfig;
use crate::outbound::{Breaker, OutboundError};

pub const LOCAL_MODEL: &str = "local/all-MiniLM-L6-v2";
const LOCAL_DIM: usize = 384;
/// all-MiniLM-L6-v2 was trained on sequences of at most 256 word pieces.
const LOCAL_MAX_TOKENS: usize = 256;

/// Word pieces a model reads of one text, [CLS] and [SEP] left out: the rest of a longer
/// text does not shape its vector (the local model truncates; OpenAI's refuse past 8,191).
pub fn max_input_tokens(model: &str) -> usize {
    if model == LOCAL_MODEL {
        LOCAL_MAX_TOKENS - 2
    } else {
        8_000
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The model cannot be used at all (weights missing, endpoint not configured).
    #[error("embedding model unavailable: {0}")]
    Unavailable(String),
    /// This call failed; a later one may succeed.
    #[error("embedding failed: {0}")]
    Failed(String),
}

#[async_trait::async_trait]
pub trait Embedder: Send + Sync {
    /// `local/<name>` or `openai/<name>`, as recorded on a knowledge base.
    fn model(&self) -> &str;
    async fn dim(&self) -> Result<usize, EmbedError>;
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// all-MiniLM-L6-v2 on the CPU: BERT, mean pooling over the attention mask, L2 norm. Loaded on
/// first use (about 90 MB), then shared.
pub struct LocalMiniLm {
    dir: PathBuf,
    loaded: OnceCell<Arc<Loaded>>,
}

struct Loaded {
    model: BertModel,
    tokenizer: Tokenizer,
}

impl LocalMiniLm {
    pub fn new(dir: PathBuf) -> LocalMiniLm {
        LocalMiniLm {
            dir,
            loaded: OnceCell::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The model's own tokenizer, for counting chunk lengths in its tokens.
    pub fn tokenizer(dir: &Path) -> Result<Tokenizer, EmbedError> {
        let path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&path).map_err(|e| {
            EmbedError::Unavailable(format!(
                "cannot read {} ({e}); run `make models` or set EMBEDDING_MODEL_DIR",
                path.display()
            ))
        })?;
        // The published file pads and truncates to 128; pad per batch and allow 256.
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: LOCAL_MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| EmbedError::Unavailable(e.to_string()))?;
        Ok(tokenizer)
    }

    async fn loaded(&self) -> Result<Arc<Loaded>, EmbedError> {
        let dir = self.dir.clone();
        self.loaded
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || load(&dir).map(Arc::new))
                    .await
                    .map_err(|e| EmbedError::Unavailable(e.to_string()))?
            })
            .await
            .cloned()
    }
}

fn load(dir: &Path) -> Result<Loaded, EmbedError> {
    let unavailable = |what: &str, e: &dyn std::fmt::Display| {
        EmbedError::Unavailable(format!(
            "cannot load {what} from {} ({e}); run `make models` or set EMBEDDING_MODEL_DIR",
            dir.display()
        ))
    };
    let config = std::fs::read_to_string(dir.join("config.json"))
        .map_err(|e| unavailable("config.json", &e))?;
    let config: BertConfig =
        serde_json::from_str(&config).map_err(|e| unavailable("config.json", &e))?;
    let weights = std::fs::read(dir.join("model.safetensors"))
        .map_err(|e| unavailable("model.safetensors", &e))?;
    let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
        .map_err(|e| unavailable("model.safetensors", &e))?;
    let model = BertModel::load(vb, &config).map_err(|e| unavailable("the model", &e))?;
    Ok(Loaded {
        model,
        tokenizer: LocalMiniLm::tokenizer(dir)?,
    })
}

fn embed_batch(loaded: &Loaded, texts: Vec<String>) -> Result<Vec<Vec<f32>>, candle_core::Error> {
    let encodings = loaded
        .tokenizer
        .encode_batch(texts, true)
        .map_err(candle_core::Error::msg)?;
    let device = Device::Cpu;
    let ids = encodings
        .iter()
        .map(|e| Tensor::new(e.get_ids(), &device))
        .collect::<Result<Vec<_>, _>>()?;
    let masks = encodings
        .iter()
        .map(|e| Tensor::new(e.get_attention_mask(), &device))
        .collect::<Result<Vec<_>, _>>()?;
    let ids = Tensor::stack(&ids, 0)?;
    let mask = Tensor::stack(&masks, 0)?;
    let types = ids.zeros_like()?;
    let hidden = loaded.model.forward(&ids, &types, Some(&mask))?;
    // Mean of the token vectors the mask keeps, then unit length.
    let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    let mean = summed.broadcast_div(&mask.sum(1)?)?;
    let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
    mean.broadcast_div(&norm)?.to_vec2::<f32>()
}

#[async_trait::async_trait]
impl Embedder for LocalMiniLm {
    fn model(&self) -> &str {
        LOCAL_MODEL
    }

    async fn dim(&self) -> Result<usize, EmbedError> {
        Ok(LOCAL_DIM)
    }

    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let loaded = self.loaded().await?;
        tokio::task::spawn_blocking(move || embed_batch(&loaded, texts))
            .await
            .map_err(|e| EmbedError::Failed(e.to_string()))?
            .map_err(|e| EmbedError::Failed(e.to_string()))
    }
}

/// Any OpenAI-compatible embeddings endpoint (OpenAI, Azure, Ollama, vLLM, TEI…), behind the
/// `embeddings` circuit breaker.
pub struct OpenAiEmbedder {
    /// The endpoint's model name.
    remote: String,
    /// `openai/<remote>`, as a knowledge base records it.
    name: String,
    client: async_openai::Client<OpenAIConfig>,
    breaker: Breaker,
    timeout: std::time::Duration,
    dim: OnceCell<usize>,
}

impl OpenAiEmbedder {
    pub fn new(
        base_url: &str,
        api_key: Option<&str>,
        model: &str,
        circuit: CircuitConfig,
        breaker: Breaker,
    ) -> OpenAiEmbedder {
        let config = OpenAIConfig::new()
            .with_api_base(base_url.trim_end_matches('/'))
            .with_api_key(api_key.unwrap_or("none"));
        OpenAiEmbedder {
            remote: model.to_string(),
            name: format!("openai/{model}"),
            client: async_openai::Client::with_config(config),
            breaker,
            timeout: circuit.timeout,
            dim: OnceCell::new(),
        }
    }
}

#[async_trait::async_trait]
impl Embedder for OpenAiEmbedder {
    fn model(&self) -> &str {
        &self.name
    }

    async fn dim(&self) -> Result<usize, EmbedError> {
        self.dim
            .get_or_try_init(|| async {
                let probe = self.embed(vec!["dimension probe".into()]).await?;
                probe
                    .first()
                    .map(Vec::len)
                    .filter(|d| *d > 0)
                    .ok_or_else(|| EmbedError::Failed("the endpoint returned no vector".into()))
            })
            .await
            .copied()
    }

    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let count = texts.len();
        let request = CreateEmbeddingRequestArgs::default()
            .model(self.remote.clone())
            .input(texts)
            .build()
            .map_err(|e| EmbedError::Failed(e.to_string()))?;
        let call = async {
            match tokio::time::timeout(self.timeout, self.client.embeddings().create(request)).await
            {
                Err(_) => Err(("timed out".to_string(), true)),
                Ok(Err(e)) => Err((e.to_string(), is_outage(&e))),
                Ok(Ok(response)) => Ok(response),
            }
        };
        // Only the endpoint's own trouble counts against the shared circuit: a tenant asking
        // for a model the endpoint does not know (a 4xx) must not open it for everyone.
        let response = match self.breaker.call_with(|e: &(String, bool)| e.1, call).await {
            Ok(response) => response,
            Err(OutboundError::Unavailable(service)) => {
                return Err(EmbedError::Failed(format!("{service} is unavailable")))
            }
            Err(OutboundError::Call((e, _))) => return Err(EmbedError::Failed(e)),
        };
        let mut data = response.data;
        if data.len() != count {
            return Err(EmbedError::Failed(format!(
                "asked for {count} vectors, got {}",
                data.len()
            )));
        }
        data.sort_by_key(|e| e.index);
        Ok(data.into_iter().map(|e| normalise(e.embedding)).collect())
    }
}

/// Whether a failed call says the endpoint is in trouble (no answer, a 5xx, a rate limit)
/// rather than that the request was wrong (an unknown model, bad input: a 4xx).
/// async-openai drops the status: it reports a 5xx as an error with nothing but a message,
/// a rate limit by its type or code, other 4xx with a type or code (OpenAI) or as an
/// unreadable error body (Ollama, vLLM, TEI).
fn is_outage(e: &async_openai::error::OpenAIError) -> bool {
    use async_openai::error::OpenAIError;
    match e {
        OpenAIError::Reqwest(_) | OpenAIError::StreamError(_) => true,
        OpenAIError::ApiError(api) => {
            (api.r#type.is_none() && api.code.is_none() && api.param.is_none())
                || api.code.as_deref() == Some("rate_limit_exceeded")
                || matches!(
                    api.r#type.as_deref(),
                    Some("requests" | "tokens" | "rate_limit_error" | "server_error")
                )
        }
        _ => false,
    }
}

/// Most endpoint clients kept at once (tenants name models; each name gets a client).
const MAX_CLIENTS: usize = 64;

fn normalise(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// The models this installation can run, by the name a knowledge base records.
#[derive(Clone)]
pub struct Embedders {
    local: Arc<LocalMiniLm>,
    openai: Option<OpenAiSettings>,
    breaker: Breaker,
    circuit: CircuitConfig,
    clients: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<dyn Embedder>>>>,
}

#[derive(Clone)]
pub struct OpenAiSettings {
    pub base_url: String,
    pub api_key: Option<secrecy::SecretString>,
}

impl Embedders {
    pub fn new(model_dir: PathBuf, openai: Option<OpenAiSettings>, circuit: CircuitConfig) -> Self {
        Embedders {
            local: Arc::new(LocalMiniLm::new(model_dir)),
            openai,
            breaker: Breaker::new("embeddings", circuit),
            circuit,
            clients: Arc::default(),
        }
    }

    pub fn local_dir(&self) -> &Path {
        self.local.dir()
    }

    /// The embedder for a recorded model name.
    pub fn get(&self, model: &str) -> Result<Arc<dyn Embedder>, EmbedError> {
        if model == LOCAL_MODEL {
            return Ok(self.local.clone());
        }
        let Some(name) = model.strip_prefix("openai/") else {
            return Err(EmbedError::Unavailable(format!(
                "unknown model {model}; this installation runs {LOCAL_MODEL} and openai/<model>"
            )));
        };
        let Some(settings) = &self.openai else {
            return Err(EmbedError::Unavailable(format!(
                "{model} needs an embeddings endpoint; set EMBEDDINGS_URL"
            )));
        };
        let mut clients = self
            .clients
            .lock()
            .map_err(|_| EmbedError::Failed("embedder cache poisoned".into()))?;
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(model) {
            // Tenants choose model names: a bounded cache, rebuilt as it is used.
            clients.clear();
        }
        let client = clients.entry(model.to_string()).or_insert_with(|| {
            Arc::new(OpenAiEmbedder::new(
                &settings.base_url,
                settings
                    .api_key
                    .as_ref()
                    .map(secrecy::ExposeSecret::expose_secret),
                name,
                self.circuit,
                self.breaker.clone(),
            ))
        });
        Ok(client.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_gives_unit_length_and_leaves_zero_alone() {
        let v = normalise(vec![3.0, 4.0]);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert_eq!(normalise(vec![0.0, 0.0]), vec![0.0, 0.0]);
    }

    #[test]
    fn unknown_and_unconfigured_models_are_refused() {
        let circuit = CircuitConfig {
            failures: 5,
            open_for: std::time::Duration::from_secs(60),
            timeout: std::time::Duration::from_secs(5),
        };
        let embedders = Embedders::new(PathBuf::from("/nonexistent"), None, circuit);
        assert!(embedders.get(LOCAL_MODEL).is_ok());
        assert!(matches!(
            embedders.get("openai/text-embedding-3-small"),
            Err(EmbedError::Unavailable(m)) if m.contains("EMBEDDINGS_URL")
        ));
        assert!(matches!(
            embedders.get("cohere/x"),
            Err(EmbedError::Unavailable(_))
        ));
    }

    #[test]
    fn the_client_cache_stays_bounded_whatever_names_tenants_choose() {
        let circuit = CircuitConfig {
            failures: 5,
            open_for: std::time::Duration::from_secs(60),
            timeout: std::time::Duration::from_secs(5),
        };
        let openai = OpenAiSettings {
            base_url: "http://127.0.0.1:9/v1".into(),
            api_key: None,
        };
        let embedders = Embedders::new(PathBuf::from("/nonexistent"), Some(openai), circuit);
        for i in 0..1000 {
            embedders.get(&format!("openai/made-up-{i}")).unwrap();
            assert!(embedders.clients.lock().unwrap().len() <= MAX_CLIENTS);
        }
    }

    #[test]
    fn only_outages_count_against_the_circuit() {
        use async_openai::error::{ApiError, OpenAIError};
        let api = |t: Option<&str>, code: Option<&str>| {
            OpenAIError::ApiError(ApiError {
                message: "x".into(),
                r#type: t.map(String::from),
                param: None,
                code: code.map(String::from),
            })
        };
        assert!(is_outage(&api(None, None)), "a 5xx");
        assert!(is_outage(&api(
            Some("requests"),
            Some("rate_limit_exceeded")
        )));
        assert!(!is_outage(&api(
            Some("invalid_request_error"),
            Some("model_not_found")
        )));
        let unreadable = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        assert!(!is_outage(&OpenAIError::JSONDeserialize(
            unreadable,
            "{".into()
        )));
    }
}
