//! Embedding models behind one trait: all-MiniLM-L6-v2 run locally through candle, and any
//! OpenAI-compatible `/embeddings` endpoint through async-openai. Vectors are L2-normalised, so
//! cosine similarity is their dot product.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_openai::config::OpenAIConfig;
use async_openai::types::embeddings::CreateEmbeddingRequestArgs;
use minilm::MiniLm;
use tokenizers::{Tokenizer, TruncationParams};
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

/// all-MiniLM-L6-v2 on the CPU: BERT, mean pooling, L2 norm (the `minilm` crate: unpadded
/// batches, gemm through candle, vectorised element-wise steps). Loaded on first use (about
/// 90 MB), then shared.
///
/// Calls from all tasks go to one thread that runs the model (each forward pass is spread over
/// the cores): it takes every call waiting when it becomes free and runs their texts together,
/// up to [`BATCH_TOKENS`] word pieces a pass. Concurrent searches then share a forward pass (a
/// query's embedding is the largest part of a hybrid search's CPU) and its larger products.
pub struct LocalMiniLm {
    dir: PathBuf,
    queue: OnceCell<std::sync::mpsc::Sender<Request>>,
}

/// One `embed` call waiting for the model thread.
struct Request {
    texts: Vec<String>,
    reply: tokio::sync::oneshot::Sender<Result<Vec<Vec<f32>>, String>>,
}

/// Word pieces in one forward pass: 8 texts of the model's full length. The products are then
/// as large as the ones the machine's matmul rate is measured on ([`matmul_gflops`]), and the
/// largest buffer of a pass (pieces × 1,536 floats, 12.6 MB) stays below glibc's largest mmap
/// threshold (32 MB), so it is reused from the heap instead of faulted in fresh each layer.
const BATCH_TOKENS: usize = 8 * LOCAL_MAX_TOKENS;

struct Loaded {
    model: MiniLm,
    tokenizer: Tokenizer,
}

impl LocalMiniLm {
    pub fn new(dir: PathBuf) -> LocalMiniLm {
        LocalMiniLm {
            dir,
            queue: OnceCell::new(),
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
        // The published file pads and truncates to 128: no padding (batches are formed and
        // padded by length on the model thread) and 256.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: LOCAL_MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| EmbedError::Unavailable(e.to_string()))?;
        Ok(tokenizer)
    }

    /// The model thread's queue, loading the model and starting the thread on first use.
    async fn queue(&self) -> Result<&std::sync::mpsc::Sender<Request>, EmbedError> {
        let dir = self.dir.clone();
        self.queue
            .get_or_try_init(|| async move {
                let loaded = tokio::task::spawn_blocking(move || load(&dir))
                    .await
                    .map_err(|e| EmbedError::Unavailable(e.to_string()))??;
                let (queue, requests) = std::sync::mpsc::channel();
                std::thread::Builder::new()
                    .name("embed".into())
                    .spawn(move || serve(&loaded, &requests))
                    .map_err(|e| EmbedError::Unavailable(e.to_string()))?;
                Ok(queue)
            })
            .await
    }
}

/// The model thread: until the last sender is gone, takes the calls waiting, runs their texts
/// in batches of at most [`BATCH_TOKENS`] word pieces and answers each call.
fn serve(loaded: &Loaded, requests: &std::sync::mpsc::Receiver<Request>) {
    while let Ok(first) = requests.recv() {
        let mut waiting = vec![first];
        waiting.extend(requests.try_iter());
        let mut vectors: Vec<Vec<Option<Vec<f32>>>> =
            waiting.iter().map(|r| vec![None; r.texts.len()]).collect();
        let mut failed: Vec<Option<String>> = vec![None; waiting.len()];
        // (call, text, encoding).
        let mut rows = Vec::new();
        for (call, request) in waiting.iter_mut().enumerate() {
            match loaded
                .tokenizer
                .encode_batch(std::mem::take(&mut request.texts), true)
            {
                Ok(encodings) => rows.extend(
                    encodings
                        .into_iter()
                        .enumerate()
                        .map(|(text, e)| (call, text, e)),
                ),
                Err(e) => failed[call] = Some(e.to_string()),
            }
        }
        for batch in token_batches(&rows, |(_, _, e)| e.len()) {
            let ids: Vec<&[u32]> = batch.iter().map(|(_, _, e)| e.get_ids()).collect();
            // A panic inside the model fails this pass's calls, not the thread and every call
            // after.
            let pass = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                loaded.model.embed(&ids).map_err(|e| e.to_string())
            }))
            .unwrap_or_else(|_| Err("the model panicked".into()));
            match pass {
                Ok(out) => {
                    for ((call, text, _), vector) in batch.iter().zip(out) {
                        vectors[*call][*text] = Some(vector);
                    }
                }
                Err(e) => {
                    for (call, _, _) in batch {
                        failed[*call] = Some(e.clone());
                    }
                }
            }
        }
        for ((request, vectors), failed) in waiting.into_iter().zip(vectors).zip(failed) {
            let answer = match failed {
                Some(e) => Err(e),
                None => vectors
                    .into_iter()
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| "a text got no vector".to_string()),
            };
            // The caller may have gone (a cancelled search): nothing to do.
            let _ = request.reply.send(answer);
        }
    }
}

/// Cuts rows into forward passes of at most [`BATCH_TOKENS`] word pieces (a longer text is a
/// pass of its own). Texts are not padded, so their lengths may differ within a pass.
fn token_batches<T>(rows: &[T], len: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut batches = Vec::new();
    let mut start = 0;
    let mut tokens = 0;
    for (i, row) in rows.iter().enumerate() {
        let n = len(row);
        if i > start && tokens + n > BATCH_TOKENS {
            batches.push(&rows[start..i]);
            start = i;
            tokens = 0;
        }
        tokens += n;
    }
    if start < rows.len() {
        batches.push(&rows[start..]);
    }
    batches
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
    let weights = std::fs::read(dir.join("model.safetensors"))
        .map_err(|e| unavailable("model.safetensors", &e))?;
    let model = MiniLm::load(&config, &weights).map_err(|e| unavailable("the model", &e))?;
    Ok(Loaded {
        model,
        tokenizer: LocalMiniLm::tokenizer(dir)?,
    })
}

/// glibc's allocator settings the server runs with: blocks up to 32 MB come from the heap
/// rather than fresh mappings, and up to 128 MB of freed heap is kept rather than handed back.
/// A forward pass of the local model allocates tens of MB of short-lived buffers (candle's
/// matmul outputs, 12.6 MB each); with glibc's defaults they were returned to the kernel and
/// faulted in again, zeroed, every layer: the model ran at about 60 % of the machine's matmul
/// rate instead of 70–79 % (`server/minilm`'s throughput example, 12 chunks of 174 pieces).
pub const MALLOC_TUNABLES: &str =
    "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=134217728";

/// glibc reads its tunables only when a program starts, and setting them from inside needs
/// `mallopt` (`unsafe`, which the workspace forbids): so the server starts itself again, the
/// same process (same pid, arguments and environment), with [`MALLOC_TUNABLES`]. Called at the
/// start of `main`, before any thread exists (the document extraction child has gone its own
/// way just before). An operator's own `GLIBC_TUNABLES` is left alone; if the restart fails,
/// the server runs on with glibc's defaults.
pub fn restart_with_malloc_tunables() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("GLIBC_TUNABLES").is_none() {
        use std::os::unix::process::CommandExt;
        let mut args = std::env::args_os();
        let mut restart = std::process::Command::new("/proc/self/exe");
        if let Some(arg0) = args.next() {
            restart.arg0(arg0);
        }
        let error = restart
            .args(args)
            .env("GLIBC_TUNABLES", MALLOC_TUNABLES)
            .exec();
        eprintln!("running with glibc's default allocator settings: restarting failed ({error})");
    }
}

/// candle asks for its thread count on every matrix multiply and, unless `RAYON_NUM_THREADS`
/// is set, works it out from `/proc/cpuinfo` each time (a query's embedding does dozens of
/// multiplies). Called once at the start of `main`, before any other thread exists, it fixes
/// the count candle would find.
pub fn fix_thread_count() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var(
            "RAYON_NUM_THREADS",
            candle_core::utils::get_num_threads().to_string(),
        );
    }
}

/// Floating-point operations all-MiniLM-L6-v2 (six layers, h = 384) spends on one text of
/// `tokens` word pieces ([CLS] and [SEP] included): [`minilm::flops`].
pub fn local_model_flops(tokens: usize) -> f64 {
    minilm::flops(6, LOCAL_DIM, tokens)
}

/// This machine's f32 matrix-multiply throughput in GFLOP/s through the kernels the local
/// model runs on, on the shape of the model's feed-forward layer for a pass of
/// [`BATCH_TOKENS`] word pieces, measured for `window`.
pub fn matmul_gflops(window: std::time::Duration) -> Result<f64, candle_core::Error> {
    minilm::matmul_gflops(BATCH_TOKENS, LOCAL_DIM, 4 * LOCAL_DIM, window)
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
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.queue()
            .await?
            .send(Request { texts, reply })
            .map_err(|_| EmbedError::Unavailable("the model thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| EmbedError::Unavailable("the model thread has stopped".into()))?
            .map_err(EmbedError::Failed)
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
    fn texts_are_batched_within_the_token_budget() {
        let lens = |batches: Vec<&[usize]>| -> Vec<Vec<usize>> {
            batches.into_iter().map(<[usize]>::to_vec).collect()
        };
        // Mixed lengths share a pass (nothing is padded).
        let rows = [8, 300, 12, 40, 45];
        assert_eq!(lens(token_batches(&rows, |&l| l)), vec![rows.to_vec()]);
        // Full-length chunks: 8 to a pass, the rest in the next.
        let rows = vec![256; 20];
        let batches = token_batches(&rows, |&l| l);
        assert_eq!(
            batches.iter().map(|b| b.len()).collect::<Vec<_>>(),
            vec![8, 8, 4]
        );
        // A pass ends before the text that would overflow it.
        let rows = [2000, 40, 9, 2048, 1];
        assert_eq!(
            lens(token_batches(&rows, |&l| l)),
            vec![vec![2000, 40], vec![9], vec![2048], vec![1]]
        );
        assert!(token_batches(&[] as &[usize], |&l| l).is_empty());
    }

    /// Calls that the model thread takes together and cuts into passes get
    /// back their own vectors, in their order: the same as each text embedded alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_calls_get_their_own_vectors() {
        let model = LocalMiniLm::new(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../data/models/all-MiniLM-L6-v2"
        )));
        let texts: Vec<String> = (0..12)
            .map(|i| {
                format!(
                    "question {i}: {}",
                    "how do I reset my password ".repeat(i % 5 + 1)
                )
            })
            .collect();
        let mut alone = Vec::new();
        for text in &texts {
            alone.push(model.embed(vec![text.clone()]).await.unwrap().remove(0));
        }
        let calls = texts.chunks(3).map(|c| model.embed(c.to_vec()));
        let together: Vec<Vec<f32>> = futures::future::join_all(calls)
            .await
            .into_iter()
            .flat_map(Result::unwrap)
            .collect();
        let cosine = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        assert_eq!(together.len(), texts.len());
        for (i, (a, b)) in alone.iter().zip(&together).enumerate() {
            assert!(cosine(a, b) > 0.9999, "text {i}: {}", cosine(a, b));
        }
        // The texts differ enough that a vector handed to the wrong call would show.
        assert!(cosine(&alone[0], &alone[4]) < 0.99);
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
