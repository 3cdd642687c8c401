//! Knowledge: documents in, chunks out, hybrid retrieval over them.
//!
//! - [`extract`] turns a file (text, Markdown, HTML, PDF, DOCX, CSV, JSON) into text;
//!   [`fetch`] downloads one by URL, refusing internal addresses.
//! - [`chunk`] splits text by tokens along its structure; [`embed`] turns chunks into vectors
//!   (local MiniLM through candle, or an OpenAI-compatible endpoint), cached by content hash.
//! - [`lance`] keeps chunks, vectors and the BM25 index in LanceDB, one table per knowledge
//!   base in a folder per tenant.
//! - [`ingest`] is the `knowledge.ingest` job; [`service`] the `KnowledgeService` (REST and
//!   console); [`fusion`] and [`rerank`] shape the results; [`eval`] and [`bench`] measure.

pub mod bench;
pub mod chunk;
pub mod embed;
pub mod eval;
pub mod extract;
pub mod fetch;
pub mod fusion;
pub mod ingest;
pub mod lance;
pub mod rerank;
pub mod sandbox;
pub mod service;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chunk::TokenCounter;
use embed::{Embedders, OpenAiSettings};
use fetch::FetchPolicy;
use lance::VectorStore;
use rerank::Reranker;

/// Settings of the knowledge feature (part of [`crate::config::Config`]).
#[derive(Clone, Debug)]
pub struct KnowledgeConfig {
    /// Where LanceDB keeps its tables (`LANCEDB_URI`): a folder, or `s3://bucket/prefix`.
    pub lancedb_uri: String,
    /// How to reach the bucket when it is on S3 (`S3_*`).
    pub s3: lance::S3Settings,
    /// all-MiniLM-L6-v2's files (`EMBEDDING_MODEL_DIR`, fetched by `make models`).
    pub model_dir: PathBuf,
    /// OpenAI-compatible embeddings endpoint (`EMBEDDINGS_URL`, `EMBEDDINGS_API_KEY`).
    pub embeddings_url: Option<String>,
    pub embeddings_api_key: Option<secrecy::SecretString>,
    /// Texts per embedding call (`EMBEDDING_BATCH_SIZE`).
    pub embed_batch: usize,
    /// A `/rerank` endpoint (`RERANK_URL`, `RERANK_MODEL`, `RERANK_API_KEY`).
    pub rerank_url: Option<String>,
    pub rerank_model: Option<String>,
    pub rerank_api_key: Option<secrecy::SecretString>,
    /// Largest document accepted, uploaded or fetched (`MAX_UPLOAD_BYTES`).
    pub max_upload_bytes: usize,
    /// Most text one document may yield (`MAX_EXTRACTED_BYTES`); see [`extract::text_limit`].
    pub max_extracted_bytes: usize,
    /// The child process documents are extracted in.
    pub sandbox: sandbox::Sandbox,
    /// Allow fetching from private and loopback addresses (`FETCH_ALLOW_PRIVATE`; tests and
    /// intranets only).
    pub fetch_allow_private: bool,
    /// How long a search result is reused (`SEARCH_CACHE_TTL_SECS`; 0 turns the cache off).
    pub search_cache_ttl: Duration,
    /// Rows after which a knowledge base gets an approximate vector index
    /// (`VECTOR_INDEX_THRESHOLD`); below it search scans exactly.
    pub vector_index_threshold: usize,
}

/// What the service and the ingestion job share: models, the vector store, settings.
pub struct Knowledge {
    pub config: KnowledgeConfig,
    pub embedders: Embedders,
    pub vectors: VectorStore,
    pub reranker: Option<Reranker>,
    counter: OnceLock<TokenCounter>,
}

impl Knowledge {
    pub fn new(config: KnowledgeConfig, circuit: crate::config::CircuitConfig) -> Arc<Knowledge> {
        let openai = config
            .embeddings_url
            .clone()
            .map(|base_url| OpenAiSettings {
                base_url,
                api_key: config.embeddings_api_key.clone(),
            });
        let reranker = config.rerank_url.as_deref().and_then(|url| {
            Reranker::new(
                url,
                config.rerank_model.clone(),
                config.rerank_api_key.clone(),
                circuit,
            )
            .map_err(|e| tracing::error!(error = %e, "reranker unavailable"))
            .ok()
        });
        Arc::new(Knowledge {
            embedders: Embedders::new(config.model_dir.clone(), openai, circuit),
            vectors: VectorStore::new(
                &config.lancedb_uri,
                config.s3.clone(),
                config.vector_index_threshold,
            ),
            reranker,
            counter: OnceLock::new(),
            config,
        })
    }

    /// Counts chunk lengths in the local model's tokens (read once).
    pub fn token_counter(&self) -> &TokenCounter {
        self.counter
            .get_or_init(|| TokenCounter::from_model_dir(&self.config.model_dir))
    }

    pub fn fetch_policy(&self) -> FetchPolicy {
        FetchPolicy {
            max_bytes: self.config.max_upload_bytes,
            allow_private: self.config.fetch_allow_private,
            timeout: Duration::from_secs(30),
            max_redirects: 5,
            accept: fetch::Accept::Documents,
        }
    }
}
