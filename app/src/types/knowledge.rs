//! Knowledge bases, documents and retrieval: the shapes the console, the REST API and the agents
//! share.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::validate as v;

#[cfg(feature = "ssr")]
use utoipa::ToSchema;

/// How a search ranks chunks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Nearest neighbours of the query's embedding.
    Vector,
    /// BM25 over the chunks' words (stemmed, stop words removed).
    Fulltext,
    /// Both, fused by reciprocal rank fusion.
    #[default]
    Hybrid,
}

impl SearchMode {
    pub const ALL: [SearchMode; 3] = [SearchMode::Vector, SearchMode::Fulltext, SearchMode::Hybrid];

    pub fn as_str(self) -> &'static str {
        match self {
            SearchMode::Vector => "vector",
            SearchMode::Fulltext => "fulltext",
            SearchMode::Hybrid => "hybrid",
        }
    }

    pub fn parse(s: &str) -> Option<SearchMode> {
        SearchMode::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// A knowledge base's search parameters, used when a request leaves them out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(default)]
pub struct SearchDefaults {
    #[garde(skip)]
    pub mode: SearchMode,
    /// Hits returned, 1–100.
    #[garde(range(min = 1, max = 100))]
    pub top_k: u32,
    /// The `k` of reciprocal rank fusion (1–1000): larger flattens the rank curve.
    #[garde(range(min = 1, max = 1000))]
    pub rrf_k: u32,
    /// Lean the fusion towards the lexical or the semantic leg by the query's shape.
    #[garde(skip)]
    pub adaptive: bool,
    /// Drop hits scoring below this (the final score of the mode used).
    #[garde(skip)]
    pub score_threshold: Option<f32>,
    /// Rerank the fused candidates when a reranker is configured.
    #[garde(skip)]
    pub rerank: bool,
}

impl Default for SearchDefaults {
    fn default() -> Self {
        SearchDefaults {
            mode: SearchMode::Hybrid,
            top_k: 8,
            rrf_k: 60,
            adaptive: false,
            score_threshold: None,
            rerank: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum KnowledgeBaseStatus {
    /// Every document is ingested (or failed).
    Ready,
    /// Documents are waiting for or in ingestion (after uploads, or re-embedding everything
    /// after a change of model); searches see the documents already done.
    Indexing,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct KnowledgeBase {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    /// `local/all-MiniLM-L6-v2`, or `openai/<model>` for the configured embeddings endpoint.
    pub embedding_model: String,
    pub embedding_dim: u32,
    /// Chunk length in tokens.
    pub chunk_size: u32,
    /// Tokens shared by neighbouring chunks.
    pub chunk_overlap: u32,
    /// When set, chunks are matched but the parent section (this many tokens) is returned.
    pub parent_chunk_size: Option<u32>,
    pub search_defaults: SearchDefaults,
    pub visibility: Visibility,
    pub status: KnowledgeBaseStatus,
    pub document_count: u64,
    pub chunk_count: u64,
    /// Grows with every change of content; part of the search cache key.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[garde(allow_unvalidated)]
pub struct CreateKnowledgeBase {
    #[garde(custom(v::name::<100>))]
    pub name: String,
    #[garde(length(max = 2000))]
    pub description: Option<String>,
    /// Default `local/all-MiniLM-L6-v2`.
    #[garde(custom(v::optional(v::embedding_model)))]
    pub embedding_model: Option<String>,
    /// 32–2048 tokens (default 256).
    #[garde(range(min = 32, max = 2048))]
    pub chunk_size: Option<u32>,
    /// Less than the chunk size (default 32).
    #[garde(range(max = 1024))]
    pub chunk_overlap: Option<u32>,
    /// 64–8192 tokens, larger than the chunk size.
    #[garde(range(min = 64, max = 8192))]
    pub parent_chunk_size: Option<u32>,
    #[garde(dive)]
    pub search_defaults: Option<SearchDefaults>,
    /// Default `agents`.
    #[garde(skip)]
    pub visibility: Option<Visibility>,
}

/// Who may read a knowledge base besides people and keys with `knowledge:read`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// The tenant's agents answer customers from it.
    #[default]
    Agents,
    /// Only people and keys with `knowledge:read`; the agents never see it.
    Internal,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Agents => "agents",
            Visibility::Internal => "internal",
        }
    }

    pub fn parse(s: &str) -> Visibility {
        if s == "internal" {
            Visibility::Internal
        } else {
            Visibility::Agents
        }
    }
}

/// A partial update; absent fields keep their value. A new embedding model re-indexes every
/// document; new chunk sizes apply to documents uploaded afterwards.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct UpdateKnowledgeBase {
    #[garde(custom(v::optional(v::name::<100>)))]
    pub name: Option<String>,
    #[garde(length(max = 2000))]
    pub description: Option<String>,
    #[garde(custom(v::optional(v::embedding_model)))]
    pub embedding_model: Option<String>,
    #[garde(range(min = 32, max = 2048))]
    pub chunk_size: Option<u32>,
    #[garde(range(max = 1024))]
    pub chunk_overlap: Option<u32>,
    #[garde(range(min = 64, max = 8192))]
    pub parent_chunk_size: Option<u32>,
    #[garde(dive)]
    pub search_defaults: Option<SearchDefaults>,
    #[garde(skip)]
    pub visibility: Option<Visibility>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum DocumentStatus {
    /// Stored; waiting for an ingestion worker.
    Queued,
    /// Being read, chunked and embedded (see `progress`).
    Processing,
    /// Searchable.
    Ready,
    /// Could not be ingested; `error` says why.
    Failed,
}

impl DocumentStatus {
    pub const ALL: [DocumentStatus; 4] = [
        DocumentStatus::Queued,
        DocumentStatus::Processing,
        DocumentStatus::Ready,
        DocumentStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DocumentStatus::Queued => "queued",
            DocumentStatus::Processing => "processing",
            DocumentStatus::Ready => "ready",
            DocumentStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<DocumentStatus> {
        DocumentStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct Document {
    pub id: Uuid,
    pub knowledge_base_id: Uuid,
    pub title: String,
    /// The uploaded file's name or the fetched URL; uploading the same source again replaces
    /// the document.
    pub source: String,
    /// text, markdown, html, pdf, docx, csv or json.
    pub format: String,
    pub content_type: Option<String>,
    pub tags: Vec<String>,
    pub language: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub size_bytes: u64,
    /// Grows with every replacement of the content.
    pub revision: u32,
    pub status: DocumentStatus,
    /// 0–100 while processing.
    pub progress: u8,
    pub error: Option<String>,
    pub chunk_count: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub ingested_at: Option<DateTime<Utc>>,
}

/// Descriptive fields given with an upload (multipart fields of the same names) or a fetch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(default)]
pub struct DocumentMeta {
    /// Defaults to the title found in the document, else its file name.
    #[garde(custom(v::optional(v::name::<300>)))]
    pub title: Option<String>,
    #[garde(length(max = 20), inner(custom(v::tag)))]
    pub tags: Vec<String>,
    /// A language tag such as `en` or `pt-BR`.
    #[garde(custom(v::optional(v::language)))]
    pub language: Option<String>,
    /// Free key/values, searchable as filters.
    #[garde(length(max = 50), custom(v::metadata))]
    pub metadata: BTreeMap<String, String>,
}

/// Ingest a document from a URL (http or https; private and loopback addresses are refused).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct FetchDocument {
    #[garde(length(min = 1, max = 2000))]
    pub url: String,
    #[serde(default, flatten)]
    #[garde(dive)]
    pub meta: DocumentMeta,
}

/// Filters and cursor for listing documents; oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "ssr", into_params(parameter_in = Query))]
pub struct DocumentQuery {
    /// queued, processing, ready or failed.
    #[garde(skip)]
    pub status: Option<DocumentStatus>,
    /// `next_cursor` of the previous page.
    #[garde(skip)]
    pub cursor: Option<String>,
    /// Page size, 1–200 (default 50).
    #[garde(range(min = 1, max = 200))]
    pub limit: Option<u32>,
}

/// Which chunks a search may return. All given conditions must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(default)]
pub struct SearchFilter {
    /// Only these documents.
    #[garde(length(max = 500))]
    pub document_ids: Vec<Uuid>,
    /// Documents carrying at least one of these tags.
    #[garde(length(max = 20), inner(custom(v::tag)))]
    pub tags: Vec<String>,
    #[garde(custom(v::optional(v::language)))]
    pub language: Option<String>,
    /// Documents whose metadata has every one of these key/values.
    #[garde(length(max = 20), custom(v::metadata))]
    pub metadata: BTreeMap<String, String>,
}

impl SearchFilter {
    pub fn is_empty(&self) -> bool {
        self.document_ids.is_empty()
            && self.tags.is_empty()
            && self.language.is_none()
            && self.metadata.is_empty()
    }
}

/// The longest search query, in characters: a whole email pasted into a chat fits. What the
/// legs cannot take is left out and the response's `cut` says what.
pub const MAX_QUERY_CHARS: usize = 16_000;

/// Distinct words the full-text leg matches at most; a longer query keeps its first ones.
pub const MAX_FULLTEXT_WORDS: usize = 128;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct SearchRequest {
    /// 1–16000 characters. The vector leg embeds as much of it as the embedding model reads
    /// (256 word pieces for the local model); past 128 words the full-text leg matches each
    /// distinct word once, the first 128.
    #[garde(custom(v::name::<MAX_QUERY_CHARS>))]
    pub query: String,
    /// The knowledge base's default when absent.
    #[serde(default)]
    #[garde(skip)]
    pub mode: Option<SearchMode>,
    /// Hits returned, 1–200.
    #[serde(default)]
    #[garde(range(min = 1, max = 200))]
    pub top_k: Option<u32>,
    #[serde(default)]
    #[garde(skip)]
    pub score_threshold: Option<f32>,
    #[serde(default)]
    #[garde(range(min = 1, max = 1000))]
    pub rrf_k: Option<u32>,
    #[serde(default)]
    #[garde(skip)]
    pub adaptive: Option<bool>,
    #[serde(default)]
    #[garde(skip)]
    pub rerank: Option<bool>,
    #[serde(default)]
    #[garde(dive)]
    pub filter: SearchFilter,
}

/// A chunk's place in one leg of the search.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct LegScore {
    /// 1-based.
    pub rank: u32,
    /// Vector leg: cosine similarity; full-text leg: BM25.
    pub score: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct SearchHit {
    pub chunk_id: String,
    pub document_id: Uuid,
    pub document_title: String,
    pub source: String,
    /// The chunk's position in its document, from 0.
    pub chunk_index: u32,
    /// The matched chunk.
    pub text: String,
    /// The parent section, when the knowledge base returns parents.
    pub context: Option<String>,
    /// Byte offsets of the chunk in the document's extracted text.
    pub start: u64,
    pub end: u64,
    /// The mode's final score (RRF for hybrid, the reranker's when reranked).
    pub score: f32,
    pub vector: Option<LegScore>,
    pub fulltext: Option<LegScore>,
    pub rerank_score: Option<f32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct SearchResponse {
    pub mode: SearchMode,
    pub hits: Vec<SearchHit>,
    /// Weights given to the vector and full-text legs in the fusion.
    pub weights: Option<(f32, f32)>,
    pub reranked: bool,
    /// Served from the search cache.
    pub cached: bool,
    pub took_ms: u64,
    /// What a long query lost; `null` when every leg read all of it.
    #[serde(default)]
    pub cut: Option<QueryCut>,
}

/// What the legs of a search left out of a long query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct QueryCut {
    /// Characters in the query (runs of white space count once).
    pub query_chars: u32,
    /// The vector leg embedded only the query's first this many characters (the model's
    /// input limit); `null` when it read them all or did not run.
    pub embedded_chars: Option<u32>,
    /// The full-text leg left out this many distinct words after the first 128; `null` when
    /// it matched them all or did not run.
    pub dropped_words: Option<u32>,
}
