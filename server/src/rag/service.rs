//! `KnowledgeService`: knowledge bases, documents and search for one tenant at a time. Every
//! query filters by the caller's tenant; every change is audited in its own transaction and
//! queues its ingestion job in that same transaction.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use sea_orm::sea_query::{Expr, Func, LikeExpr};
use sea_orm::Order;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use app::error::AppError;
use app::services::{Access, KnowledgeService, Upload};
use app::types::{
    Area, CreateKnowledgeBase, Document, DocumentMeta, DocumentQuery, DocumentStatus,
    FetchDocument, KnowledgeBase, KnowledgeBaseStatus, Level, Page, QueryCut, SearchDefaults,
    SearchHit, SearchMode, SearchRequest, SearchResponse, UpdateKnowledgeBase, MAX_FULLTEXT_WORDS,
};
use app::validate::check;

use super::chunk::TokenCounter;
use super::embed::{max_input_tokens, EmbedError, LOCAL_MODEL};
use super::extract::Format;
use super::fusion::{self, Fused};
use super::lance::{sql_string, LanceError};
use super::Knowledge;
use crate::jobs::{enqueue, NewJob};
use crate::kv::{Kv, Scope};
use crate::store::audit_log::Record;
use crate::store::{document_contents, documents, knowledge_bases};
use crate::tenancy::db_error;

pub const INGEST: &str = "knowledge.ingest";
const DEFAULT_PAGE: u32 = 50;
const DEFAULT_CHUNK_SIZE: u32 = 200;
const DEFAULT_CHUNK_OVERLAP: u32 = 30;

#[derive(Clone)]
pub struct KnowledgeServiceImpl {
    db: DatabaseConnection,
    kv: Kv,
    rt: Arc<Knowledge>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn lance_error(e: LanceError) -> AppError {
    tracing::error!(error = %e, "vector store error");
    AppError::Internal("vector store error".into())
}

pub fn embed_error(e: EmbedError) -> AppError {
    AppError::Unavailable(e.to_string())
}

#[derive(Default, Clone, Copy)]
struct Counts {
    documents: u64,
    chunks: u64,
    pending: u64,
}

/// A LIKE pattern for stored metadata JSON that may hold `"key": "value"`: a prefilter (the
/// exact match follows), so it allows what databases put between them (PostgreSQL writes a
/// space after the colon), with LIKE's own characters escaped.
fn metadata_pattern(key: &str, value: &str) -> String {
    let key = crate::store::like_literal(&serde_json::Value::from(key).to_string());
    let value = crate::store::like_literal(&serde_json::Value::from(value).to_string());
    format!("%{key}:%{value}%")
}

fn to_kb(m: knowledge_bases::Model, counts: Counts) -> KnowledgeBase {
    KnowledgeBase {
        id: m.id,
        name: m.name,
        description: m.description,
        embedding_model: m.embedding_model,
        embedding_dim: u32::try_from(m.embedding_dim).unwrap_or(0),
        chunk_size: u32::try_from(m.chunk_size).unwrap_or(0),
        chunk_overlap: u32::try_from(m.chunk_overlap).unwrap_or(0),
        parent_chunk_size: m.parent_chunk_size.and_then(|p| u32::try_from(p).ok()),
        search_defaults: serde_json::from_value(m.search_defaults).unwrap_or_default(),
        visibility: app::types::Visibility::parse(&m.visibility),
        status: if counts.pending > 0 {
            KnowledgeBaseStatus::Indexing
        } else {
            KnowledgeBaseStatus::Ready
        },
        document_count: counts.documents,
        chunk_count: counts.chunks,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

pub fn to_document(m: documents::Model) -> Document {
    Document {
        id: m.id,
        knowledge_base_id: m.knowledge_base_id,
        title: m.title,
        source: m.source,
        format: m.format,
        content_type: m.content_type,
        tags: serde_json::from_value(m.tags).unwrap_or_default(),
        language: m.language,
        metadata: serde_json::from_value(m.metadata).unwrap_or_default(),
        size_bytes: u64::try_from(m.size_bytes).unwrap_or(0),
        revision: u32::try_from(m.revision).unwrap_or(0),
        status: DocumentStatus::parse(&m.status).unwrap_or(DocumentStatus::Queued),
        progress: u8::try_from(m.progress.clamp(0, 100)).unwrap_or(0),
        error: m.error,
        chunk_count: u32::try_from(m.chunk_count).unwrap_or(0),
        created_at: m.created_at,
        updated_at: m.updated_at,
        ingested_at: m.ingested_at,
    }
}

/// `kb_{id}_{generation}`; a new embedding model means a new generation.
fn table_name(kb: Uuid, generation: u32) -> String {
    format!("kb_{}_{generation}", kb.simple())
}

fn next_table_name(kb: Uuid, current: &str) -> String {
    let generation = current
        .rsplit('_')
        .next()
        .and_then(|g| g.parse::<u32>().ok())
        .unwrap_or(0);
    table_name(kb, generation + 1)
}

/// The job that (re-)ingests one revision of a document; the key makes a repeat a no-op.
pub fn ingest_job(tenant: Uuid, document: Uuid, revision: i32) -> NewJob {
    NewJob::new(
        Some(tenant),
        INGEST,
        serde_json::json!({ "document_id": document, "revision": revision }),
    )
    .key(format!("{document}:{revision}"))
    .max_attempts(4)
}

/// Bumps the knowledge base's version: cached searches of the old version are never served.
pub async fn bump_version(db: &impl ConnectionTrait, kb: Uuid) -> Result<(), sea_orm::DbErr> {
    knowledge_bases::Entity::update_many()
        .col_expr(
            knowledge_bases::Column::Version,
            Expr::col(knowledge_bases::Column::Version).add(1),
        )
        .filter(knowledge_bases::Column::Id.eq(kb))
        .exec(db)
        .await
        .map(|_| ())
}

/// Takes the knowledge base's row for this transaction before anything is read: concurrent
/// uploads to one knowledge base queue here (PostgreSQL row lock) instead of both missing a
/// document of the same name, and on SQLite the transaction becomes a writer while it can
/// still wait for the lock (a deferred transaction that read first gets `SQLITE_BUSY` at
/// once when another connection committed in between).
pub(crate) async fn lock_kb(txn: &impl ConnectionTrait, kb: Uuid) -> Result<(), sea_orm::DbErr> {
    knowledge_bases::Entity::update_many()
        .col_expr(knowledge_bases::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(knowledge_bases::Column::Id.eq(kb))
        .exec(txn)
        .await
        .map(|_| ())
}

fn normal_query(query: &str) -> String {
    query.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A (normalised) query as each leg reads it.
struct Legs {
    /// All of it: what adaptive weights look at.
    text: String,
    /// What the embedding model (and the reranker) read: the start that fits the model.
    embedded: String,
    /// What BM25 matches: the words (quotes only shape the weighting), past
    /// `MAX_FULLTEXT_WORDS` each distinct one once, the first ones.
    words: String,
    cut: Option<QueryCut>,
}

impl Legs {
    fn of(text: String, mode: SearchMode, counter: &TokenCounter, model: &str) -> Legs {
        let chars = text.chars().count();
        let limit = max_input_tokens(model);
        // A word piece is at least one character: a query no longer than the limit fits.
        let embedded = if chars > limit {
            counter.prefix(&text, limit).to_string()
        } else {
            text.clone()
        };
        let unquoted = text.replace('"', " ");
        let all: Vec<&str> = unquoted.split_whitespace().collect();
        let (words, dropped) = if all.len() > MAX_FULLTEXT_WORDS {
            let mut seen = HashSet::new();
            let distinct: Vec<&str> = all
                .into_iter()
                .filter(|w| seen.insert(w.to_lowercase()))
                .collect();
            let dropped = distinct.len().saturating_sub(MAX_FULLTEXT_WORDS);
            (distinct[..distinct.len() - dropped].join(" "), dropped)
        } else {
            (all.join(" "), 0)
        };
        let vector = mode != SearchMode::Fulltext;
        let fulltext = mode != SearchMode::Vector;
        let embedded_chars = embedded.chars().count();
        let cut = QueryCut {
            query_chars: chars as u32,
            embedded_chars: (vector && embedded_chars < chars).then_some(embedded_chars as u32),
            dropped_words: (fulltext && dropped > 0).then_some(dropped as u32),
        };
        Legs {
            text,
            embedded,
            words,
            cut: (cut.embedded_chars.is_some() || cut.dropped_words.is_some()).then_some(cut),
        }
    }
}

impl KnowledgeServiceImpl {
    pub fn new(db: DatabaseConnection, kv: Kv, rt: Arc<Knowledge>) -> Self {
        Self { db, kv, rt }
    }

    /// The LanceDB table of one of the tenant's knowledge bases (benchmarks write to it
    /// directly).
    pub async fn table_of(&self, access: &Access, kb: Uuid) -> Result<String, AppError> {
        Ok(self.kb(access, kb).await?.table_name)
    }

    async fn kb(&self, access: &Access, id: Uuid) -> Result<knowledge_bases::Model, AppError> {
        knowledge_bases::Entity::find_by_id(id)
            .filter(knowledge_bases::Column::TenantId.eq(access.tenant_id))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or_else(|| AppError::not_found("knowledge base"))
    }

    async fn document(
        &self,
        access: &Access,
        kb: Uuid,
        id: Uuid,
    ) -> Result<documents::Model, AppError> {
        documents::Entity::find_by_id(id)
            .filter(documents::Column::TenantId.eq(access.tenant_id))
            .filter(documents::Column::KnowledgeBaseId.eq(kb))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or_else(|| AppError::not_found("document"))
    }

    /// Document, chunk and pending counts per knowledge base of the tenant.
    async fn counts(&self, tenant: Uuid) -> Result<HashMap<Uuid, Counts>, AppError> {
        let rows: Vec<(Uuid, String, i64, Option<i64>)> = documents::Entity::find()
            .select_only()
            .column(documents::Column::KnowledgeBaseId)
            .column(documents::Column::Status)
            .column_as(documents::Column::Id.count(), "documents")
            .column_as(
                // SUM of an INTEGER is a bigint on PostgreSQL and an integer on SQLite.
                documents::Column::ChunkCount.sum(),
                "chunks",
            )
            .filter(documents::Column::TenantId.eq(tenant))
            .group_by(documents::Column::KnowledgeBaseId)
            .group_by(documents::Column::Status)
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(db_error)?;
        let mut counts: HashMap<Uuid, Counts> = HashMap::new();
        for (kb, status, docs, chunks) in rows {
            let c = counts.entry(kb).or_default();
            let docs = u64::try_from(docs).unwrap_or(0);
            c.documents += docs;
            c.chunks += u64::try_from(chunks.unwrap_or(0)).unwrap_or(0);
            if matches!(
                DocumentStatus::parse(&status),
                Some(DocumentStatus::Queued | DocumentStatus::Processing)
            ) {
                c.pending += docs;
            }
        }
        Ok(counts)
    }

    async fn with_counts(&self, m: knowledge_bases::Model) -> Result<KnowledgeBase, AppError> {
        let counts = self.counts(m.tenant_id).await?;
        let c = counts.get(&m.id).copied().unwrap_or_default();
        Ok(to_kb(m, c))
    }

    /// The embedding width of `model`, or a 422 naming the field.
    async fn model_dim(&self, model: &str) -> Result<i32, AppError> {
        let embedder = self
            .rt
            .embedders
            .get(model)
            .map_err(|e| AppError::invalid("embedding_model", e.to_string()))?;
        let dim = embedder
            .dim()
            .await
            .map_err(|e| AppError::invalid("embedding_model", e.to_string()))?;
        i32::try_from(dim).map_err(|_| AppError::invalid("embedding_model", "vector too wide"))
    }

    /// A LanceDB filter for `request.filter`, or `Err(())` when no document can match.
    async fn filter(
        &self,
        access: &Access,
        kb: Uuid,
        request: &SearchRequest,
    ) -> Result<Result<Option<String>, ()>, AppError> {
        let f = &request.filter;
        let mut clauses = Vec::new();
        let mut ids: Option<HashSet<Uuid>> =
            (!f.document_ids.is_empty()).then(|| f.document_ids.iter().copied().collect());
        if !f.metadata.is_empty() {
            // Metadata is free-form JSON: the database narrows the documents to those whose
            // stored text holds every `"key":"value"` pair, the exact match happens here, and
            // LanceDB gets the documents' ids.
            let mut candidates = documents::Entity::find()
                .select_only()
                .column(documents::Column::Id)
                .column(documents::Column::Metadata)
                .filter(documents::Column::TenantId.eq(access.tenant_id))
                .filter(documents::Column::KnowledgeBaseId.eq(kb));
            for (key, value) in &f.metadata {
                let text = Func::cast_as(
                    Expr::col(documents::Column::Metadata),
                    sea_orm::sea_query::Alias::new("TEXT"),
                );
                let pattern = LikeExpr::new(metadata_pattern(key, value)).escape('\\');
                candidates = candidates.filter(Expr::expr(text).like(pattern));
            }
            let rows: Vec<(Uuid, serde_json::Value)> = candidates
                .into_tuple()
                .all(&self.db)
                .await
                .map_err(db_error)?;
            let matching: HashSet<Uuid> = rows
                .into_iter()
                .filter(|(_, meta)| {
                    let meta: BTreeMap<String, String> =
                        serde_json::from_value(meta.clone()).unwrap_or_default();
                    f.metadata.iter().all(|(k, v)| meta.get(k) == Some(v))
                })
                .map(|(id, _)| id)
                .collect();
            ids = Some(match ids {
                Some(given) => given.intersection(&matching).copied().collect(),
                None => matching,
            });
        }
        if let Some(ids) = ids {
            if ids.is_empty() {
                return Ok(Err(()));
            }
            let list: Vec<String> = ids.iter().map(|id| sql_string(&id.to_string())).collect();
            clauses.push(format!("document_id IN ({})", list.join(", ")));
        }
        if !f.tags.is_empty() {
            let any: Vec<String> = f
                .tags
                .iter()
                .map(|t| format!("contains(tags, {})", sql_string(&format!("|{t}|"))))
                .collect();
            clauses.push(format!("({})", any.join(" OR ")));
        }
        if let Some(language) = &f.language {
            clauses.push(format!("language = {}", sql_string(language)));
        }
        Ok(Ok((!clauses.is_empty()).then(|| clauses.join(" AND "))))
    }

    async fn vector_leg(
        &self,
        tenant: Uuid,
        kb: &knowledge_bases::Model,
        query: &str,
        depth: usize,
        filter: Option<&str>,
    ) -> Result<Vec<super::lance::Candidate>, AppError> {
        let embedder = self
            .rt
            .embedders
            .get(&kb.embedding_model)
            .map_err(embed_error)?;
        let vector = embedder
            .embed(vec![query.to_string()])
            .await
            .map_err(embed_error)?
            .into_iter()
            .next()
            .ok_or_else(|| AppError::Unavailable("the embedding model returned nothing".into()))?;
        self.rt
            .vectors
            .vector_search(tenant, &kb.table_name, &vector, depth, filter)
            .await
            .map_err(lance_error)
    }

    async fn fulltext_leg(
        &self,
        tenant: Uuid,
        kb: &knowledge_bases::Model,
        words: &str,
        depth: usize,
        filter: Option<&str>,
    ) -> Result<Vec<super::lance::Candidate>, AppError> {
        self.rt
            .vectors
            .fulltext_search(tenant, &kb.table_name, words, depth, filter)
            .await
            .map_err(lance_error)
    }

    async fn run_search(
        &self,
        access: &Access,
        kb: &knowledge_bases::Model,
        query: &Legs,
        p: &Resolved,
        filter: Option<&str>,
    ) -> Result<(Vec<Fused>, Option<(f32, f32)>), AppError> {
        let tenant = access.tenant_id;
        let depth = if p.rerank {
            (p.top_k * 4).clamp(30, 200)
        } else if p.mode == SearchMode::Hybrid {
            p.top_k.clamp(50, 400)
        } else {
            p.top_k
        };
        Ok(match p.mode {
            SearchMode::Vector => (
                fusion::single(
                    self.vector_leg(tenant, kb, &query.embedded, depth, filter)
                        .await?,
                    true,
                ),
                None,
            ),
            SearchMode::Fulltext => (
                fusion::single(
                    self.fulltext_leg(tenant, kb, &query.words, depth, filter)
                        .await?,
                    false,
                ),
                None,
            ),
            SearchMode::Hybrid => {
                let weights = if p.adaptive {
                    fusion::weights_for(&query.text)
                } else {
                    (1.0, 1.0)
                };
                let (vector, fulltext) = tokio::join!(
                    self.vector_leg(tenant, kb, &query.embedded, depth, filter),
                    self.fulltext_leg(tenant, kb, &query.words, depth, filter)
                );
                let fulltext = fulltext?;
                match vector {
                    Ok(vector) => (
                        fusion::rrf(vector, fulltext, p.rrf_k, weights),
                        Some(weights),
                    ),
                    // The model being down must not take search down: BM25 alone still answers.
                    Err(AppError::Unavailable(reason)) => {
                        tracing::warn!(%reason, "vector leg unavailable; full-text only");
                        (fusion::single(fulltext, false), Some((0.0, 1.0)))
                    }
                    Err(e) => return Err(e),
                }
            }
        })
    }
}

/// A search request with the knowledge base's defaults filled in.
#[derive(serde::Serialize)]
struct Resolved {
    mode: SearchMode,
    top_k: usize,
    rrf_k: u32,
    adaptive: bool,
    score_threshold: Option<f32>,
    rerank: bool,
}

fn to_hit(f: Fused, rerank_score: Option<f32>) -> Option<SearchHit> {
    let c = f.candidate;
    Some(SearchHit {
        document_id: c.document_id.parse().ok()?,
        chunk_id: c.chunk_id,
        document_title: c.title,
        source: c.source,
        chunk_index: u32::try_from(c.chunk_index).unwrap_or(0),
        text: c.text,
        context: c.context,
        start: u64::try_from(c.start).unwrap_or(0),
        end: u64::try_from(c.end).unwrap_or(0),
        score: rerank_score.unwrap_or(f.score),
        vector: f.vector,
        fulltext: f.fulltext,
        rerank_score,
    })
}

fn validate_plan(size: u32, overlap: u32, parent: Option<u32>) -> Result<(), AppError> {
    if overlap >= size {
        return Err(AppError::invalid(
            "chunk_overlap",
            format!("must be less than the chunk size ({size})"),
        ));
    }
    if parent.is_some_and(|p| p <= size) {
        return Err(AppError::invalid(
            "parent_chunk_size",
            format!("must be larger than the chunk size ({size})"),
        ));
    }
    Ok(())
}

/// What an upload is checked against before anything is stored.
fn check_upload(i: usize, file: &Upload, max_bytes: usize) -> Result<Format, AppError> {
    let field = format!("files[{i}]");
    let name = file.filename.trim();
    if name.is_empty() || name.chars().count() > 300 {
        return Err(AppError::invalid(
            &field,
            "needs a file name of 1–300 characters",
        ));
    }
    if file.bytes.len() > max_bytes {
        return Err(AppError::invalid(
            &field,
            format!("{name} is larger than the limit of {max_bytes} bytes"),
        ));
    }
    if file.bytes.is_empty() {
        return Err(AppError::invalid(&field, format!("{name} is empty")));
    }
    check(&file.meta).map_err(|e| match e {
        AppError::Validation(fields) => AppError::Validation(
            fields
                .into_iter()
                .map(|f| app::error::FieldError::new(&format!("{field}.{}", f.field), f.message))
                .collect(),
        ),
        other => other,
    })?;
    Format::detect(name, file.content_type.as_deref(), &file.bytes)
        .map_err(|e| AppError::invalid(&field, format!("{name}: {e}")))
}

/// The document of this name (file name or URL) in the knowledge base, if any.
async fn by_source(
    txn: &impl ConnectionTrait,
    access: &Access,
    kb: Uuid,
    source: &str,
) -> Result<Option<documents::Model>, AppError> {
    documents::Entity::find()
        .filter(documents::Column::TenantId.eq(access.tenant_id))
        .filter(documents::Column::KnowledgeBaseId.eq(kb))
        .filter(documents::Column::Source.eq(source))
        .one(txn)
        .await
        .map_err(db_error)
}

/// A new queued document at revision 1; the caller fills in what it knows of the content
/// (format, content type, size, hash).
fn new_document(
    access: &Access,
    kb: Uuid,
    title: String,
    source: String,
    tags: serde_json::Value,
    meta: &DocumentMeta,
    metadata: serde_json::Value,
) -> documents::ActiveModel {
    let now = Utc::now();
    documents::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(access.tenant_id),
        knowledge_base_id: Set(kb),
        title: Set(title),
        source: Set(source),
        tags: Set(tags),
        language: Set(meta.language.clone()),
        metadata: Set(metadata),
        revision: Set(1),
        status: Set(DocumentStatus::Queued.as_str().into()),
        progress: Set(0),
        error: Set(None),
        chunk_count: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
        ingested_at: Set(None),
        ..Default::default()
    }
}

/// Queues the ingestion of the document's current revision and audits why, in `txn`.
async fn queue_ingestion(
    txn: &impl ConnectionTrait,
    access: &Access,
    doc: &documents::Model,
    action: &str,
    details: serde_json::Value,
) -> Result<(), AppError> {
    enqueue(txn, ingest_job(access.tenant_id, doc.id, doc.revision))
        .await
        .map_err(db_error)?;
    Record::by(access, action, doc.id.to_string())
        .details(details)
        .write(txn)
        .await
        .map_err(db_error)
}

fn meta_columns(meta: &DocumentMeta) -> (serde_json::Value, serde_json::Value) {
    (
        serde_json::to_value(&meta.tags).unwrap_or_default(),
        serde_json::to_value(&meta.metadata).unwrap_or_default(),
    )
}

#[async_trait::async_trait]
impl KnowledgeService for KnowledgeServiceImpl {
    async fn list_knowledge_bases(&self, access: &Access) -> Result<Vec<KnowledgeBase>, AppError> {
        access.require(Area::Knowledge, Level::Read)?;
        let rows = knowledge_bases::Entity::find()
            .filter(knowledge_bases::Column::TenantId.eq(access.tenant_id))
            .order_by_asc(knowledge_bases::Column::Name)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        let counts = self.counts(access.tenant_id).await?;
        Ok(rows
            .into_iter()
            .map(|m| {
                let c = counts.get(&m.id).copied().unwrap_or_default();
                to_kb(m, c)
            })
            .collect())
    }

    async fn get_knowledge_base(
        &self,
        access: &Access,
        id: Uuid,
    ) -> Result<KnowledgeBase, AppError> {
        access.require(Area::Knowledge, Level::Read)?;
        let m = self.kb(access, id).await?;
        self.with_counts(m).await
    }

    async fn create_knowledge_base(
        &self,
        access: &Access,
        create: CreateKnowledgeBase,
    ) -> Result<KnowledgeBase, AppError> {
        access.require(Area::Knowledge, Level::Write)?;
        check(&create)?;
        let size = create.chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE);
        let overlap = create
            .chunk_overlap
            .unwrap_or(DEFAULT_CHUNK_OVERLAP.min(size / 4));
        validate_plan(size, overlap, create.parent_chunk_size)?;
        let model = create
            .embedding_model
            .clone()
            .unwrap_or_else(|| LOCAL_MODEL.to_string());
        let dim = self.model_dim(&model).await?;
        let id = Uuid::now_v7();
        let now = Utc::now();
        let name = create.name.trim().to_string();
        let txn = self.db.begin().await.map_err(db_error)?;
        let model = knowledge_bases::ActiveModel {
            id: Set(id),
            tenant_id: Set(access.tenant_id),
            name: Set(name.clone()),
            description: Set(create.description.unwrap_or_default()),
            embedding_model: Set(model),
            embedding_dim: Set(dim),
            table_name: Set(table_name(id, 1)),
            chunk_size: Set(size as i32),
            chunk_overlap: Set(overlap as i32),
            parent_chunk_size: Set(create.parent_chunk_size.map(|p| p as i32)),
            search_defaults: Set(
                serde_json::to_value(create.search_defaults.unwrap_or_default())
                    .unwrap_or_default(),
            ),
            version: Set(1),
            visibility: Set(create.visibility.unwrap_or_default().as_str().to_string()),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await
        .map_err(|e| match db_error(e) {
            AppError::Conflict(_) => {
                AppError::Conflict(format!("a knowledge base named {name} already exists"))
            }
            other => other,
        })?;
        Record::by(access, "knowledge_base.create", id.to_string())
            .details(serde_json::json!({ "name": name }))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(to_kb(model, Counts::default()))
    }

    async fn update_knowledge_base(
        &self,
        access: &Access,
        id: Uuid,
        update: UpdateKnowledgeBase,
    ) -> Result<KnowledgeBase, AppError> {
        access.require(Area::Knowledge, Level::Write)?;
        check(&update)?;
        let current = self.kb(access, id).await?;
        let size = update.chunk_size.unwrap_or(current.chunk_size as u32);
        let overlap = update.chunk_overlap.unwrap_or(current.chunk_overlap as u32);
        let parent = update
            .parent_chunk_size
            .or(current.parent_chunk_size.map(|p| p as u32));
        validate_plan(size, overlap, parent)?;
        let new_model = update
            .embedding_model
            .clone()
            .filter(|m| *m != current.embedding_model);
        let dim = match &new_model {
            Some(model) => Some(self.model_dim(model).await?),
            None => None,
        };
        let old_table = current.table_name.clone();
        let txn = self.db.begin().await.map_err(db_error)?;
        let mut active = current.clone().into_active_model();
        if let Some(name) = &update.name {
            active.name = Set(name.trim().to_string());
        }
        if let Some(description) = &update.description {
            active.description = Set(description.clone());
        }
        active.chunk_size = Set(size as i32);
        active.chunk_overlap = Set(overlap as i32);
        active.parent_chunk_size = Set(parent.map(|p| p as i32));
        if let Some(defaults) = &update.search_defaults {
            active.search_defaults = Set(serde_json::to_value(defaults).unwrap_or_default());
        }
        if let Some(visibility) = update.visibility {
            active.visibility = Set(visibility.as_str().to_string());
        }
        if let (Some(model), Some(dim)) = (&new_model, dim) {
            active.embedding_model = Set(model.clone());
            active.embedding_dim = Set(dim);
            active.table_name = Set(next_table_name(id, &current.table_name));
        }
        active.version = Set(current.version + 1);
        active.updated_at = Set(Utc::now());
        let model = active.update(&txn).await.map_err(|e| match db_error(e) {
            AppError::Conflict(_) => {
                AppError::Conflict("a knowledge base with that name already exists".into())
            }
            other => other,
        })?;
        if new_model.is_some() {
            // Every document is embedded again with the new model, into the new table.
            let docs = documents::Entity::find()
                .filter(documents::Column::KnowledgeBaseId.eq(id))
                .filter(documents::Column::TenantId.eq(access.tenant_id))
                .all(&txn)
                .await
                .map_err(db_error)?;
            for doc in docs {
                let revision = doc.revision + 1;
                documents::Entity::update_many()
                    .col_expr(documents::Column::Revision, Expr::value(revision))
                    .col_expr(
                        documents::Column::Status,
                        Expr::value(DocumentStatus::Queued.as_str()),
                    )
                    .col_expr(documents::Column::Progress, Expr::value(0i16))
                    .col_expr(documents::Column::ChunkCount, Expr::value(0))
                    .filter(documents::Column::Id.eq(doc.id))
                    .exec(&txn)
                    .await
                    .map_err(db_error)?;
                enqueue(&txn, ingest_job(access.tenant_id, doc.id, revision))
                    .await
                    .map_err(db_error)?;
            }
        }
        Record::by(access, "knowledge_base.update", id.to_string())
            .details(serde_json::to_value(&update).unwrap_or_default())
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        if new_model.is_some() {
            self.rt
                .vectors
                .drop_table(access.tenant_id, &old_table)
                .await
                .map_err(lance_error)?;
        }
        self.with_counts(model).await
    }

    async fn delete_knowledge_base(&self, access: &Access, id: Uuid) -> Result<(), AppError> {
        access.require(Area::Knowledge, Level::Write)?;
        let kb = self.kb(access, id).await?;
        let txn = self.db.begin().await.map_err(db_error)?;
        knowledge_bases::Entity::delete_by_id(id)
            .exec(&txn)
            .await
            .map_err(db_error)?;
        Record::by(access, "knowledge_base.delete", id.to_string())
            .details(serde_json::json!({ "name": kb.name }))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        self.rt
            .vectors
            .drop_table(access.tenant_id, &kb.table_name)
            .await
            .map_err(lance_error)
    }

    async fn list_documents(
        &self,
        access: &Access,
        kb: Uuid,
        query: DocumentQuery,
    ) -> Result<Page<Document>, AppError> {
        access.require(Area::Knowledge, Level::Read)?;
        check(&query)?;
        self.kb(access, kb).await?;
        let limit = query.limit.unwrap_or(DEFAULT_PAGE);
        let mut select = documents::Entity::find()
            .filter(documents::Column::TenantId.eq(access.tenant_id))
            .filter(documents::Column::KnowledgeBaseId.eq(kb));
        if let Some(status) = query.status {
            select = select.filter(documents::Column::Status.eq(status.as_str()));
        }
        let page = crate::store::page_by_id(
            &self.db,
            select,
            (documents::Column::Id, Order::Asc),
            query.cursor.as_deref(),
            limit,
            |r| r.id,
        )
        .await?;
        Ok(page.map(to_document))
    }

    async fn get_document(
        &self,
        access: &Access,
        kb: Uuid,
        id: Uuid,
    ) -> Result<Document, AppError> {
        access.require(Area::Knowledge, Level::Read)?;
        self.document(access, kb, id).await.map(to_document)
    }

    async fn upload_documents(
        &self,
        access: &Access,
        kb: Uuid,
        files: Vec<Upload>,
    ) -> Result<Vec<Document>, AppError> {
        access.require(Area::Knowledge, Level::Write)?;
        self.kb(access, kb).await?;
        if files.is_empty() {
            return Err(AppError::invalid("files", "choose at least one file"));
        }
        if files.len() > 100 {
            return Err(AppError::invalid("files", "at most 100 files per upload"));
        }
        let mut formats = Vec::with_capacity(files.len());
        {
            let mut names = HashSet::new();
            for (i, file) in files.iter().enumerate() {
                formats.push(check_upload(i, file, self.rt.config.max_upload_bytes)?);
                if !names.insert(file.filename.trim()) {
                    return Err(AppError::invalid(
                        &format!("files[{i}]"),
                        format!("{} is in this upload twice", file.filename.trim()),
                    ));
                }
            }
        }
        let txn = self.db.begin().await.map_err(db_error)?;
        lock_kb(&txn, kb).await.map_err(db_error)?;
        let mut out = Vec::with_capacity(files.len());
        for (file, format) in files.into_iter().zip(formats) {
            let source = file.filename.trim().to_string();
            let hash = sha256_hex(&file.bytes);
            let (tags, metadata) = meta_columns(&file.meta);
            let title = file
                .meta
                .title
                .clone()
                .map(|t| t.trim().to_string())
                .unwrap_or_else(|| source.clone());
            let now = Utc::now();
            let existing = by_source(&txn, access, kb, &source).await?;
            let (doc, action) = match existing {
                // The same bytes and description again: nothing to do.
                Some(doc)
                    if doc.content_hash == hash
                        && doc.tags == tags
                        && doc.metadata == metadata
                        && doc.language == file.meta.language
                        && doc.status != DocumentStatus::Failed.as_str() =>
                {
                    out.push(to_document(doc));
                    continue;
                }
                Some(doc) => {
                    let mut active = doc.clone().into_active_model();
                    active.title = Set(title);
                    active.format = Set(format.as_str().to_string());
                    active.content_type = Set(file.content_type.clone());
                    active.tags = Set(tags);
                    active.language = Set(file.meta.language.clone());
                    active.metadata = Set(metadata);
                    active.size_bytes = Set(file.bytes.len() as i64);
                    active.content_hash = Set(hash);
                    active.revision = Set(doc.revision + 1);
                    active.status = Set(DocumentStatus::Queued.as_str().into());
                    active.progress = Set(0);
                    active.error = Set(None);
                    active.updated_at = Set(now);
                    let doc = active.update(&txn).await.map_err(db_error)?;
                    document_contents::Entity::update_many()
                        .col_expr(document_contents::Column::Bytes, Expr::value(file.bytes))
                        .filter(document_contents::Column::DocumentId.eq(doc.id))
                        .exec(&txn)
                        .await
                        .map_err(db_error)?;
                    (doc, "document.replace")
                }
                None => {
                    let doc = documents::ActiveModel {
                        format: Set(format.as_str().to_string()),
                        content_type: Set(file.content_type.clone()),
                        size_bytes: Set(file.bytes.len() as i64),
                        content_hash: Set(hash),
                        ..new_document(access, kb, title, source, tags, &file.meta, metadata)
                    }
                    .insert(&txn)
                    .await
                    .map_err(db_error)?;
                    document_contents::ActiveModel {
                        document_id: Set(doc.id),
                        tenant_id: Set(access.tenant_id),
                        bytes: Set(file.bytes),
                    }
                    .insert(&txn)
                    .await
                    .map_err(db_error)?;
                    (doc, "document.upload")
                }
            };
            let details = serde_json::json!({ "knowledge_base": kb, "source": doc.source });
            queue_ingestion(&txn, access, &doc, action, details).await?;
            out.push(to_document(doc));
        }
        txn.commit().await.map_err(db_error)?;
        Ok(out)
    }

    async fn fetch_document(
        &self,
        access: &Access,
        kb: Uuid,
        fetch: FetchDocument,
    ) -> Result<Document, AppError> {
        access.require(Area::Knowledge, Level::Write)?;
        check(&fetch)?;
        self.kb(access, kb).await?;
        let url = reqwest::Url::parse(fetch.url.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| AppError::invalid("url", "must be an http:// or https:// URL"))?;
        let source = url.to_string();
        let (tags, metadata) = meta_columns(&fetch.meta);
        let title = fetch
            .meta
            .title
            .clone()
            .map(|t| t.trim().to_string())
            .unwrap_or_else(|| source.clone());
        let now = Utc::now();
        let txn = self.db.begin().await.map_err(db_error)?;
        lock_kb(&txn, kb).await.map_err(db_error)?;
        let existing = by_source(&txn, access, kb, &source).await?;
        let doc = match existing {
            Some(doc) => {
                let revision = doc.revision + 1;
                let mut active = doc.into_active_model();
                active.title = Set(title);
                active.tags = Set(tags);
                active.language = Set(fetch.meta.language.clone());
                active.metadata = Set(metadata);
                active.revision = Set(revision);
                active.status = Set(DocumentStatus::Queued.as_str().into());
                active.progress = Set(0);
                active.error = Set(None);
                active.updated_at = Set(now);
                active.update(&txn).await.map_err(db_error)?
            }
            None => documents::ActiveModel {
                format: Set("pending".into()),
                content_type: Set(None),
                size_bytes: Set(0),
                content_hash: Set(String::new()),
                ..new_document(access, kb, title, source, tags, &fetch.meta, metadata)
            }
            .insert(&txn)
            .await
            .map_err(db_error)?,
        };
        let details = serde_json::json!({ "knowledge_base": kb, "url": doc.source });
        queue_ingestion(&txn, access, &doc, "document.fetch", details).await?;
        txn.commit().await.map_err(db_error)?;
        Ok(to_document(doc))
    }

    async fn delete_document(&self, access: &Access, kb: Uuid, id: Uuid) -> Result<(), AppError> {
        access.require(Area::Knowledge, Level::Write)?;
        let knowledge_base = self.kb(access, kb).await?;
        let doc = self.document(access, kb, id).await?;
        let txn = self.db.begin().await.map_err(db_error)?;
        documents::Entity::delete_by_id(id)
            .exec(&txn)
            .await
            .map_err(db_error)?;
        bump_version(&txn, kb).await.map_err(db_error)?;
        Record::by(access, "document.delete", id.to_string())
            .details(serde_json::json!({ "knowledge_base": kb, "source": doc.source }))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        // After the row is gone: an ingestion finishing now finds no row and removes what
        // it wrote, and one that finished before has its rows removed here.
        self.rt
            .vectors
            .delete_document(access.tenant_id, &knowledge_base.table_name, id, None)
            .await
            .map_err(lance_error)?;
        // Once more now the rows are gone: a search on any instance between the commit and
        // the delete still found them and may have cached that under the first bump.
        bump_version(&self.db, kb).await.map_err(db_error)
    }

    async fn search(
        &self,
        access: &Access,
        kb: Uuid,
        request: SearchRequest,
    ) -> Result<SearchResponse, AppError> {
        access.require(Area::Knowledge, Level::Read)?;
        check(&request)?;
        let started = Instant::now();
        let knowledge_base = self.kb(access, kb).await?;
        let defaults: SearchDefaults =
            serde_json::from_value(knowledge_base.search_defaults.clone()).unwrap_or_default();
        let reranker_ready = self.rt.reranker.is_some();
        let wants_rerank = request.rerank.unwrap_or(defaults.rerank);
        if request.rerank == Some(true) && !reranker_ready {
            return Err(AppError::invalid(
                "rerank",
                "no reranker is configured (RERANK_URL)",
            ));
        }
        let p = Resolved {
            mode: request.mode.unwrap_or(defaults.mode),
            top_k: request.top_k.unwrap_or(defaults.top_k) as usize,
            rrf_k: request.rrf_k.unwrap_or(defaults.rrf_k),
            adaptive: request.adaptive.unwrap_or(defaults.adaptive),
            score_threshold: request.score_threshold.or(defaults.score_threshold),
            rerank: wants_rerank && reranker_ready,
        };
        let query = Legs::of(
            normal_query(&request.query),
            p.mode,
            self.rt.token_counter(),
            &knowledge_base.embedding_model,
        );
        let key = format!(
            "{kb}:{}:{}",
            knowledge_base.version,
            sha256_hex(
                serde_json::to_string(&(&query.text, &p, &request.filter))
                    .unwrap_or_default()
                    .as_bytes()
            )
        );
        let ttl = self.rt.config.search_cache_ttl;
        let scope = Scope::Tenant(access.tenant_id);
        if !ttl.is_zero() {
            match self.kv.get::<SearchResponse>(scope, "search", &key).await {
                Ok(Some(mut hit)) => {
                    hit.cached = true;
                    hit.took_ms = started.elapsed().as_millis() as u64;
                    return Ok(hit);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "search cache unavailable"),
            }
        }
        let (fused, weights) = match self.filter(access, kb, &request).await? {
            Ok(filter) => {
                self.run_search(access, &knowledge_base, &query, &p, filter.as_deref())
                    .await?
            }
            Err(()) => (Vec::new(), None),
        };
        let (hits, reranked) = if p.rerank && !fused.is_empty() {
            let reranker = self
                .rt
                .reranker
                .as_ref()
                .ok_or_else(|| AppError::Internal("reranker missing".into()))?;
            let texts: Vec<String> = fused.iter().map(|f| f.candidate.text.clone()).collect();
            let scores = reranker
                .scores(&query.embedded, &texts)
                .await
                .map_err(|e| AppError::Unavailable(e.to_string()))?;
            let mut scored: Vec<(Fused, f32)> = fused.into_iter().zip(scores).collect();
            scored.sort_by(|a, b| b.1.total_cmp(&a.1));
            (
                scored
                    .into_iter()
                    .filter_map(|(f, s)| to_hit(f, Some(s)))
                    .collect::<Vec<_>>(),
                true,
            )
        } else {
            (
                fused.into_iter().filter_map(|f| to_hit(f, None)).collect(),
                false,
            )
        };
        let hits = hits
            .into_iter()
            .filter(|h| p.score_threshold.is_none_or(|t| h.score >= t))
            .take(p.top_k)
            .collect();
        let response = SearchResponse {
            mode: p.mode,
            hits,
            weights,
            reranked,
            cached: false,
            took_ms: started.elapsed().as_millis() as u64,
            cut: query.cut,
        };
        if !ttl.is_zero() {
            if let Err(e) = self.kv.set(scope, "search", &key, &response, ttl).await {
                tracing::warn!(error = %e, "search cache unavailable");
            }
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_query_reaches_every_leg_whole() {
        let q = Legs::of(
            "tax \"due date\" tax".into(),
            SearchMode::Hybrid,
            &TokenCounter::Estimate,
            LOCAL_MODEL,
        );
        assert_eq!(q.embedded, "tax \"due date\" tax");
        assert_eq!(
            q.words, "tax due date tax",
            "quotes only shape the weighting"
        );
        assert_eq!(q.cut, None);
    }

    #[test]
    fn a_long_query_is_cut_per_leg_and_says_so() {
        // 300 words, 150 distinct: BM25 keeps the first 128 distinct ones.
        let words: Vec<String> = (0..300).map(|i| format!("w{}", i % 150)).collect();
        let text = words.join(" ");
        let q = Legs::of(
            text.clone(),
            SearchMode::Hybrid,
            &TokenCounter::Estimate,
            LOCAL_MODEL,
        );
        assert_eq!(q.words.split(' ').count(), MAX_FULLTEXT_WORDS);
        assert!(q.words.starts_with("w0 w1 ") && q.words.ends_with(" w127"));
        // The estimate is four characters a token: the model's 254 tokens.
        assert_eq!(q.embedded.chars().count(), 254 * 4);
        assert!(text.starts_with(&q.embedded));
        let cut = q.cut.unwrap();
        assert_eq!(cut.query_chars as usize, text.chars().count());
        assert_eq!(cut.embedded_chars, Some(254 * 4));
        assert_eq!(cut.dropped_words, Some(150 - 128));

        // Only the legs that run report their cut.
        let q = Legs::of(
            text.clone(),
            SearchMode::Fulltext,
            &TokenCounter::Estimate,
            LOCAL_MODEL,
        );
        assert_eq!(q.cut.unwrap().embedded_chars, None);
        let q = Legs::of(
            text.clone(),
            SearchMode::Vector,
            &TokenCounter::Estimate,
            LOCAL_MODEL,
        );
        assert_eq!(q.cut.unwrap().dropped_words, None);
        // An OpenAI model reads 8,000 tokens: all of this.
        let q = Legs::of(
            text,
            SearchMode::Vector,
            &TokenCounter::Estimate,
            "openai/x",
        );
        assert_eq!(q.cut, None);
    }

    #[test]
    fn metadata_patterns_match_the_stored_pair_literally() {
        assert_eq!(
            metadata_pattern("team", "support"),
            r#"%"team":%"support"%"#
        );
        // LIKE's wildcards and JSON's escapes stay literal.
        assert_eq!(metadata_pattern("a_b", "50%"), r#"%"a\_b":%"50\%"%"#);
        assert_eq!(
            metadata_pattern("q", "say \"hi\""),
            r#"%"q":%"say \\"hi\\""%"#
        );
    }

    #[test]
    fn generations_count_up() {
        let id = Uuid::nil();
        let first = table_name(id, 1);
        assert_eq!(first, format!("kb_{}_1", id.simple()));
        assert_eq!(next_table_name(id, &first), format!("kb_{}_2", id.simple()));
    }

    #[test]
    fn plans_are_checked() {
        assert!(validate_plan(200, 30, None).is_ok());
        assert!(validate_plan(200, 200, None).is_err());
        assert!(validate_plan(200, 30, Some(200)).is_err());
        assert!(validate_plan(200, 30, Some(800)).is_ok());
    }
}
