//! The `knowledge.ingest` job: read one revision of a document (fetching it first when it
//! came by URL), extract its text, chunk, embed (reusing cached vectors), write the chunks
//! in one LanceDB commit, then mark it ready in the job's own transaction.
//!
//! Safe against the document changing underneath: a job for an outdated revision does
//! nothing; one whose document was deleted or replaced while it ran removes what it wrote.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    TransactionTrait,
};
use uuid::Uuid;

use app::types::{DocumentMeta, DocumentStatus, WebhookEvent};

use super::chunk::{self, ChunkPlan};
use super::embed::EmbedError;
use super::extract::{self, Format};
use super::fetch::{self, FetchError};
use super::lance::ChunkRow;
use super::sandbox;
use super::service::{bump_version, lock_kb, sha256_hex, INGEST};
use super::Knowledge;
use crate::integrations::webhooks::{self, Event};
use crate::jobs::{JobContext, JobHandler};
use crate::store::{document_contents, documents, embedding_cache, knowledge_bases};

/// Why an ingestion stopped.
#[derive(Debug, thiserror::Error)]
enum Stop {
    /// The document itself is the problem; retrying cannot help.
    #[error("{0}")]
    Permanent(String),
    /// Something around it failed; the job is retried.
    #[error("{0}")]
    Transient(String),
}

impl From<sea_orm::DbErr> for Stop {
    fn from(e: sea_orm::DbErr) -> Self {
        Stop::Transient(format!("database: {e}"))
    }
}

impl From<super::lance::LanceError> for Stop {
    fn from(e: super::lance::LanceError) -> Self {
        Stop::Transient(e.to_string())
    }
}

impl From<EmbedError> for Stop {
    fn from(e: EmbedError) -> Self {
        Stop::Transient(e.to_string())
    }
}

pub struct Ingest {
    rt: Arc<Knowledge>,
}

impl Ingest {
    pub fn new(rt: Arc<Knowledge>) -> Ingest {
        Ingest { rt }
    }
}

/// Sets a document's status columns, only while it is still at `revision`.
async fn set_status(
    db: &impl ConnectionTrait,
    doc: &documents::Model,
    status: DocumentStatus,
    progress: i16,
    error: Option<String>,
) -> Result<bool, sea_orm::DbErr> {
    let updated = documents::Entity::update_many()
        .col_expr(documents::Column::Status, Expr::value(status.as_str()))
        .col_expr(documents::Column::Progress, Expr::value(progress))
        .col_expr(documents::Column::Error, Expr::value(error))
        .col_expr(documents::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(documents::Column::Id.eq(doc.id))
        .filter(documents::Column::Revision.eq(doc.revision))
        .exec(db)
        .await?;
    Ok(updated.rows_affected > 0)
}

async fn progress(ctx: &JobContext, doc: &documents::Model, percent: u8) -> Result<(), Stop> {
    ctx.progress(percent).await?;
    documents::Entity::update_many()
        .col_expr(documents::Column::Progress, Expr::value(i16::from(percent)))
        .filter(documents::Column::Id.eq(doc.id))
        .filter(documents::Column::Revision.eq(doc.revision))
        .exec(ctx.db())
        .await?;
    Ok(())
}

fn vector_to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn vector_from_bytes(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Vectors for `texts`: from the tenant's cache where the same text was embedded with the
/// same model before, from the model otherwise (in batches, reporting progress 20–90 %).
async fn embed_cached(
    rt: &Knowledge,
    ctx: &JobContext,
    doc: &documents::Model,
    model: &str,
    texts: &[String],
) -> Result<Vec<Vec<f32>>, Stop> {
    let db = ctx.db();
    let hashes: Vec<String> = texts.iter().map(|t| sha256_hex(t.as_bytes())).collect();
    let mut known: HashMap<String, Vec<f32>> = HashMap::new();
    for batch in hashes.chunks(500) {
        let rows = embedding_cache::Entity::find()
            .filter(embedding_cache::Column::TenantId.eq(doc.tenant_id))
            .filter(embedding_cache::Column::Model.eq(model))
            .filter(embedding_cache::Column::ContentHash.is_in(batch.iter().cloned()))
            .all(db)
            .await?;
        known.extend(
            rows.into_iter()
                .map(|r| (r.content_hash, vector_from_bytes(&r.vector))),
        );
    }
    let missing: Vec<usize> = (0..texts.len())
        .filter(|i| !known.contains_key(&hashes[*i]))
        .collect();
    let embedder = rt
        .embedders
        .get(model)
        .map_err(|e| Stop::Permanent(e.to_string()))?;
    let batch_size = rt.config.embed_batch.max(1);
    for (n, batch) in missing.chunks(batch_size).enumerate() {
        let inputs: Vec<String> = batch.iter().map(|i| texts[*i].clone()).collect();
        let vectors = embedder.embed(inputs).await?;
        let now = Utc::now();
        let mut rows = Vec::with_capacity(batch.len());
        for (i, vector) in batch.iter().zip(vectors) {
            rows.push(embedding_cache::ActiveModel {
                tenant_id: Set(doc.tenant_id),
                model: Set(model.to_string()),
                content_hash: Set(hashes[*i].clone()),
                vector: Set(vector_to_bytes(&vector)),
                created_at: Set(now),
            });
            known.insert(hashes[*i].clone(), vector);
        }
        embedding_cache::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::columns([
                    embedding_cache::Column::TenantId,
                    embedding_cache::Column::Model,
                    embedding_cache::Column::ContentHash,
                ])
                .do_nothing()
                .to_owned(),
            )
            .do_nothing()
            .exec(db)
            .await?;
        let done = (n + 1) * batch_size;
        let percent = 20 + (70 * done.min(missing.len()) / missing.len().max(1)) as u8;
        progress(ctx, doc, percent).await?;
    }
    hashes
        .iter()
        .map(|h| {
            known
                .get(h)
                .cloned()
                .ok_or_else(|| Stop::Transient("a vector went missing".into()))
        })
        .collect()
}

/// The document's bytes and format: stored ones, or fetched now for a URL document.
async fn content(
    rt: &Knowledge,
    db: &DatabaseConnection,
    doc: &mut documents::Model,
) -> Result<(Vec<u8>, Format), Stop> {
    if doc.format != "pending" {
        let stored = document_contents::Entity::find_by_id(doc.id)
            .one(db)
            .await?;
        if let Some(stored) = stored {
            let format = serde_json::from_value(serde_json::json!(doc.format))
                .map_err(|_| Stop::Permanent(format!("unknown format {}", doc.format)))?;
            return Ok((stored.bytes, format));
        }
    }
    if !(doc.source.starts_with("http://") || doc.source.starts_with("https://")) {
        return Err(Stop::Permanent("the document's content is missing".into()));
    }
    let fetched = fetch::fetch(&doc.source, &rt.fetch_policy())
        .await
        .map_err(|e: FetchError| {
            if e.is_transient() {
                Stop::Transient(e.to_string())
            } else {
                Stop::Permanent(e.to_string())
            }
        })?;
    let format = Format::detect(
        &fetched.filename,
        fetched.content_type.as_deref(),
        &fetched.bytes,
    )
    .map_err(|e| Stop::Permanent(e.to_string()))?;
    doc.format = format.as_str().to_string();
    doc.content_type = fetched.content_type.clone();
    doc.size_bytes = fetched.bytes.len() as i64;
    doc.content_hash = sha256_hex(&fetched.bytes);
    documents::Entity::update_many()
        .col_expr(documents::Column::Format, Expr::value(doc.format.clone()))
        .col_expr(
            documents::Column::ContentType,
            Expr::value(doc.content_type.clone()),
        )
        .col_expr(documents::Column::SizeBytes, Expr::value(doc.size_bytes))
        .col_expr(
            documents::Column::ContentHash,
            Expr::value(doc.content_hash.clone()),
        )
        .filter(documents::Column::Id.eq(doc.id))
        .filter(documents::Column::Revision.eq(doc.revision))
        .exec(db)
        .await?;
    document_contents::Entity::delete_by_id(doc.id)
        .exec(db)
        .await?;
    document_contents::Entity::insert(document_contents::ActiveModel {
        document_id: Set(doc.id),
        tenant_id: Set(doc.tenant_id),
        bytes: Set(fetched.bytes.clone()),
    })
    .exec(db)
    .await?;
    Ok((fetched.bytes, format))
}

impl Ingest {
    async fn ingest(
        &self,
        ctx: &JobContext,
        doc: &mut documents::Model,
        kb: &knowledge_bases::Model,
    ) -> Result<Vec<ChunkRow>, Stop> {
        let (bytes, format) = content(&self.rt, ctx.db(), doc).await?;
        progress(ctx, doc, 10).await?;
        let limit = extract::text_limit(bytes.len(), self.rt.config.max_extracted_bytes);
        let extracted = self
            .rt
            .config
            .sandbox
            .extract(format, bytes, limit)
            .await
            .map_err(|failure| match failure {
                sandbox::Failure::Document(e) => Stop::Permanent(e.to_string()),
                sandbox::Failure::Unavailable(e) => Stop::Transient(e),
            })?;
        // A title found in the document beats the file name it defaulted to.
        if doc.title == doc.source {
            if let Some(title) = extracted
                .title
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
            {
                doc.title = title.chars().take(300).collect();
            }
        }
        let plan = ChunkPlan {
            size: kb.chunk_size.max(1) as usize,
            overlap: kb.chunk_overlap.max(0) as usize,
            parent_size: kb.parent_chunk_size.map(|p| p.max(1) as usize),
        };
        let counter = self.rt.token_counter().clone();
        let markdown = extracted.markdown;
        let text = extracted.text;
        let pieces =
            tokio::task::spawn_blocking(move || chunk::chunk(&text, markdown, plan, &counter))
                .await
                .map_err(|e| Stop::Transient(e.to_string()))?;
        if pieces.is_empty() {
            return Err(Stop::Permanent("the document holds no text".into()));
        }
        progress(ctx, doc, 20).await?;
        let search_texts: Vec<String> = pieces
            .iter()
            .map(|p| format!("{}\n\n{}", doc.title, p.text))
            .collect();
        let vectors = embed_cached(&self.rt, ctx, doc, &kb.embedding_model, &search_texts).await?;
        let meta = DocumentMeta {
            title: None,
            tags: serde_json::from_value(doc.tags.clone()).unwrap_or_default(),
            language: doc.language.clone(),
            metadata: Default::default(),
        };
        Ok(pieces
            .into_iter()
            .zip(search_texts)
            .zip(vectors)
            .enumerate()
            .map(|(i, ((piece, search_text), vector))| ChunkRow {
                chunk_id: format!("{}-{}-{i}", doc.id.simple(), doc.revision),
                document_id: doc.id,
                revision: i64::from(doc.revision),
                chunk_index: i as i64,
                text: piece.text,
                search_text,
                context: piece.parent,
                start: piece.start as i64,
                end: piece.end as i64,
                title: doc.title.clone(),
                source: doc.source.clone(),
                tags: meta.tags.clone(),
                language: meta.language.clone(),
                vector,
            })
            .collect())
    }
}

#[async_trait::async_trait]
impl JobHandler for Ingest {
    fn kind(&self) -> &'static str {
        INGEST
    }

    fn concurrency(&self) -> usize {
        2
    }

    fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1800)
    }

    async fn run(&self, ctx: &mut JobContext) -> anyhow::Result<()> {
        let (Some(tenant), Some(id), Some(revision)) = (
            ctx.tenant_id(),
            ctx.payload()["document_id"]
                .as_str()
                .and_then(|s| s.parse::<Uuid>().ok()),
            ctx.payload()["revision"].as_i64(),
        ) else {
            anyhow::bail!("payload needs document_id and revision");
        };
        let db = ctx.db().clone();
        let found = documents::Entity::find_by_id(id)
            .filter(documents::Column::TenantId.eq(tenant))
            .one(&db)
            .await?;
        // Deleted, or replaced by a newer upload with its own job: nothing to do.
        let Some(mut doc) = found.filter(|d| i64::from(d.revision) == revision) else {
            return Ok(());
        };
        let Some(kb) = knowledge_bases::Entity::find_by_id(doc.knowledge_base_id)
            .filter(knowledge_bases::Column::TenantId.eq(tenant))
            .one(&db)
            .await?
        else {
            return Ok(());
        };
        set_status(&db, &doc, DocumentStatus::Processing, 5, None).await?;
        let rows = match self.ingest(ctx, &mut doc, &kb).await {
            Ok(rows) => rows,
            Err(Stop::Permanent(reason)) => {
                tracing::info!(document = %doc.id, %reason, "document cannot be ingested");
                let txn = ctx.transaction().await?;
                set_status(txn, &doc, DocumentStatus::Failed, 0, Some(reason)).await?;
                bump_version(txn, kb.id).await?;
                return Ok(());
            }
            Err(Stop::Transient(reason)) => {
                if ctx.is_last_attempt() {
                    set_status(&db, &doc, DocumentStatus::Failed, 0, Some(reason.clone())).await?;
                } else {
                    set_status(
                        &db,
                        &doc,
                        DocumentStatus::Queued,
                        0,
                        Some(format!("will retry: {reason}")),
                    )
                    .await?;
                }
                anyhow::bail!(reason);
            }
        };
        let count = rows.len();
        let dim = kb.embedding_dim.max(1) as usize;
        let vectors = &self.rt.vectors;
        let table = match vectors.table(tenant, &kb.table_name).await? {
            Some(table) => table,
            None => {
                // The first document creates the table, one worker at a time across
                // processes: Lance would commit a second concurrent creation over the first,
                // losing its rows.
                let txn = db.begin().await?;
                lock_kb(&txn, kb.id).await?;
                let table = vectors.ensure_table(tenant, &kb.table_name, dim).await?;
                txn.commit().await?;
                table
            }
        };
        vectors
            .replace_document(tenant, &table, dim, doc.id, revision, rows)
            .await?;
        let txn = ctx.transaction().await?;
        let marked = documents::Entity::update_many()
            .col_expr(
                documents::Column::Status,
                Expr::value(DocumentStatus::Ready.as_str()),
            )
            .col_expr(documents::Column::Progress, Expr::value(100i16))
            .col_expr(
                documents::Column::Error,
                Expr::value(Option::<String>::None),
            )
            .col_expr(documents::Column::ChunkCount, Expr::value(count as i32))
            .col_expr(documents::Column::Title, Expr::value(doc.title.clone()))
            .col_expr(documents::Column::IngestedAt, Expr::value(Utc::now()))
            .col_expr(documents::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(documents::Column::Id.eq(doc.id))
            .filter(documents::Column::Revision.eq(doc.revision))
            .exec(txn)
            .await?;
        if marked.rows_affected == 0 {
            // Deleted or replaced while we worked: take back what we wrote.
            self.rt
                .vectors
                .delete_document(tenant, &kb.table_name, doc.id, Some(revision))
                .await?;
            return Ok(());
        }
        bump_version(txn, kb.id).await?;
        let event = Event::new(
            WebhookEvent::DocumentIngested,
            serde_json::json!({
                "knowledge_base_id": kb.id,
                "document": {
                    "id": doc.id,
                    "title": doc.title,
                    "source": doc.source,
                    "format": doc.format,
                    "revision": doc.revision,
                    "chunk_count": count,
                },
            }),
        );
        webhooks::emit(txn, tenant, &[event]).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_through_bytes() {
        let v = vec![0.25f32, -1.5, 3.0e-7];
        assert_eq!(vector_from_bytes(&vector_to_bytes(&v)), v);
    }
}
