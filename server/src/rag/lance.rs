//! Chunks, vectors and the BM25 index in LanceDB.
//!
//! Layout: one database folder per tenant (`{LANCEDB_URI}/t_{tenant}`) and **one table per
//! knowledge base** (`kb_{id}_{generation}`), not one shared table with a filter column:
//! - a knowledge base's embedding model fixes its vector width, and models differ between
//!   knowledge bases, while a column has one width;
//! - changing the model swaps in a new generation and drops the old table whole;
//! - deleting a knowledge base or a tenant drops tables or a folder instead of rewriting a
//!   shared table, and a forgotten filter can never return another tenant's rows;
//! - BM25 statistics (document frequencies) are per table, so one tenant's corpus does not
//!   skew another's scores.
//!
//! The cost is many small tables; LanceDB opens them lazily and they need no server.
//!
//! `LANCEDB_URI` is a folder, or `s3://bucket/prefix` on S3 or any S3-compatible store
//! ([`S3Settings`]) so that every server and worker of an installation shares the tables.
//! Lance commits a new table version by writing its manifest with put-if-absent (S3's
//! `If-None-Match: *`), so of two processes committing the same version one fails and retries
//! on top of the other; the store must support conditional writes (AWS S3 since 2024, MinIO,
//! Ceph RGW, R2). Creating a table is the exception: see [`VectorStore::ensure_table`].

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{
    Array, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, RecordBatchIterator,
    StringArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use futures::TryStreamExt;
use lancedb::index::scalar::{FtsIndexBuilder, FullTextSearchQuery};
use lancedb::index::vector::IvfHnswSqIndexBuilder;
use lancedb::index::Index;
use lancedb::query::{ExecutableQuery, QueryBase, Select};
use lancedb::table::{CompactionOptions, OptimizeAction, OptimizeOptions};
use lancedb::{Connection, DistanceType, Table};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum LanceError {
    #[error("vector store: {0}")]
    Store(#[from] lancedb::Error),
    #[error("vector store: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("vector store: {0}")]
    Io(#[from] std::io::Error),
    #[error("vector store: column {0} missing or of another type")]
    Column(&'static str),
    #[error("vector store: {0}")]
    Query(String),
}

/// One chunk as stored.
#[derive(Clone, Debug)]
pub struct ChunkRow {
    pub chunk_id: String,
    pub document_id: Uuid,
    pub revision: i64,
    pub chunk_index: i64,
    /// What is shown and cited.
    pub text: String,
    /// What BM25 indexes: the document title, then the chunk.
    pub search_text: String,
    pub context: Option<String>,
    pub start: i64,
    pub end: i64,
    pub title: String,
    pub source: String,
    pub tags: Vec<String>,
    pub language: Option<String>,
    pub vector: Vec<f32>,
}

/// One search result row, with its leg's raw score.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub chunk_id: String,
    pub document_id: String,
    pub chunk_index: i64,
    pub text: String,
    pub context: Option<String>,
    pub start: i64,
    pub end: i64,
    pub title: String,
    pub source: String,
    /// Cosine similarity for the vector leg, BM25 for the full-text leg.
    pub score: f32,
}

const RESULT_COLUMNS: [&str; 9] = [
    "chunk_id",
    "document_id",
    "chunk_index",
    "text",
    "context",
    "start",
    "end",
    "title",
    "source",
];

/// The result columns and the leg's score column, asked for by name (LanceDB will stop
/// adding the score on its own).
fn with_score(score: &'static str) -> Vec<&'static str> {
    RESULT_COLUMNS
        .iter()
        .copied()
        .chain(std::iter::once(score))
        .collect()
}

fn schema(dim: usize) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("chunk_id", DataType::Utf8, false),
        Field::new("document_id", DataType::Utf8, false),
        Field::new("revision", DataType::Int64, false),
        Field::new("chunk_index", DataType::Int64, false),
        Field::new("text", DataType::Utf8, false),
        Field::new("search_text", DataType::Utf8, false),
        Field::new("context", DataType::Utf8, true),
        Field::new("start", DataType::Int64, false),
        Field::new("end", DataType::Int64, false),
        Field::new("title", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        // `|a|b|`: a filter is `contains(tags, '|a|')`.
        Field::new("tags", DataType::Utf8, false),
        Field::new("language", DataType::Utf8, true),
        Field::new(
            "vector",
            DataType::FixedSizeList(
                Arc::new(Field::new("item", DataType::Float32, true)),
                i32::try_from(dim).unwrap_or(i32::MAX),
            ),
            false,
        ),
    ]))
}

fn to_batch(rows: &[ChunkRow], dim: usize) -> Result<RecordBatch, LanceError> {
    let strings = |f: fn(&ChunkRow) -> &str| -> Arc<dyn Array> {
        Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let ints = |f: fn(&ChunkRow) -> i64| -> Arc<dyn Array> {
        Arc::new(Int64Array::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let document_ids: Vec<String> = rows.iter().map(|r| r.document_id.to_string()).collect();
    let tags: Vec<String> = rows
        .iter()
        .map(|r| format!("|{}|", r.tags.join("|")))
        .collect();
    let mut flat = Vec::with_capacity(rows.len() * dim);
    for row in rows {
        if row.vector.len() != dim {
            return Err(LanceError::Column("vector"));
        }
        flat.extend_from_slice(&row.vector);
    }
    let vectors = FixedSizeListArray::try_new(
        Arc::new(Field::new("item", DataType::Float32, true)),
        i32::try_from(dim).unwrap_or(i32::MAX),
        Arc::new(Float32Array::from(flat)),
        None,
    )?;
    Ok(RecordBatch::try_new(
        schema(dim),
        vec![
            strings(|r| &r.chunk_id),
            Arc::new(StringArray::from(document_ids)),
            ints(|r| r.revision),
            ints(|r| r.chunk_index),
            strings(|r| &r.text),
            strings(|r| &r.search_text),
            Arc::new(StringArray::from(
                rows.iter()
                    .map(|r| r.context.as_deref())
                    .collect::<Vec<_>>(),
            )),
            ints(|r| r.start),
            ints(|r| r.end),
            strings(|r| &r.title),
            strings(|r| &r.source),
            Arc::new(StringArray::from(tags)),
            Arc::new(StringArray::from(
                rows.iter()
                    .map(|r| r.language.as_deref())
                    .collect::<Vec<_>>(),
            )),
            Arc::new(vectors),
        ],
    )?)
}

fn strings<'a>(batch: &'a RecordBatch, name: &'static str) -> Result<&'a StringArray, LanceError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or(LanceError::Column(name))
}

fn ints<'a>(batch: &'a RecordBatch, name: &'static str) -> Result<&'a Int64Array, LanceError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        .ok_or(LanceError::Column(name))
}

fn floats<'a>(batch: &'a RecordBatch, name: &'static str) -> Result<&'a Float32Array, LanceError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<Float32Array>())
        .ok_or(LanceError::Column(name))
}

fn candidates(
    batches: &[RecordBatch],
    score_column: &'static str,
    score: fn(f32) -> f32,
) -> Result<Vec<Candidate>, LanceError> {
    let mut out = Vec::new();
    for batch in batches {
        let (ids, docs, idx) = (
            strings(batch, "chunk_id")?,
            strings(batch, "document_id")?,
            ints(batch, "chunk_index")?,
        );
        let (text, context, start, end) = (
            strings(batch, "text")?,
            strings(batch, "context")?,
            ints(batch, "start")?,
            ints(batch, "end")?,
        );
        let (title, source, scores) = (
            strings(batch, "title")?,
            strings(batch, "source")?,
            floats(batch, score_column)?,
        );
        for i in 0..batch.num_rows() {
            out.push(Candidate {
                chunk_id: ids.value(i).to_string(),
                document_id: docs.value(i).to_string(),
                chunk_index: idx.value(i),
                text: text.value(i).to_string(),
                context: (!context.is_null(i)).then(|| context.value(i).to_string()),
                start: start.value(i),
                end: end.value(i),
                title: title.value(i).to_string(),
                source: source.value(i).to_string(),
                score: score(scores.value(i)),
            });
        }
    }
    Ok(out)
}

/// Rows a table may hold outside its indexes before they are folded in (searched flat
/// until then, which costs little at this size).
const UNINDEXED_ROWS: usize = 2_000;

/// Compaction merges fragments smaller than this (and leaves larger ones alone, so folding a
/// few new documents into a large table does not rewrite it).
const FRAGMENT_ROWS: usize = 20_000;

/// Fragments a table may have beyond one per [`FRAGMENT_ROWS`] before they are merged: each
/// document written makes one, and every search opens them all.
const EXTRA_FRAGMENTS: usize = 16;

/// A literal for a LanceDB (DataFusion) SQL filter.
pub fn sql_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// How to reach the bucket when `LANCEDB_URI` is `s3://…` (`S3_ENDPOINT`, `S3_REGION`,
/// `S3_ACCESS_KEY_ID`, `S3_SECRET_ACCESS_KEY`, `S3_ALLOW_HTTP`). What is not set comes from the
/// standard AWS sources (`AWS_*` variables, profile, instance or pod role).
#[derive(Clone, Debug, Default)]
pub struct S3Settings {
    /// An S3-compatible server (MinIO, Ceph, R2…); unset for AWS itself.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<SecretString>,
    /// Allows an `http://` endpoint (a store on a private network or loopback).
    pub allow_http: bool,
}

impl S3Settings {
    /// As Lance's storage options: path-style requests, which every S3-compatible server takes.
    fn storage_options(&self) -> Vec<(&'static str, String)> {
        let mut options = Vec::new();
        if let Some(endpoint) = &self.endpoint {
            options.push(("aws_endpoint", endpoint.clone()));
        }
        if let Some(region) = &self.region {
            options.push(("aws_region", region.clone()));
        }
        if let Some(id) = &self.access_key_id {
            options.push(("aws_access_key_id", id.clone()));
        }
        if let Some(secret) = &self.secret_access_key {
            options.push(("aws_secret_access_key", secret.expose_secret().to_string()));
        }
        if self.allow_http {
            options.push(("aws_allow_http", "true".to_string()));
        }
        options
    }
}

/// The LanceDB side of the knowledge feature: where a tenant's tables live, how chunks are
/// written, replaced and searched.
#[derive(Clone)]
pub struct VectorStore {
    root: String,
    s3: S3Settings,
    vector_index_threshold: usize,
    connections: Arc<Mutex<HashMap<Uuid, Connection>>>,
    /// Serialises this process's writes per table (other processes are handled by Lance's
    /// optimistic commits, which retry on conflict; creation is serialised by the caller, see
    /// [`VectorStore::ensure_table`]).
    writers: Arc<std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>>,
}

impl VectorStore {
    pub fn new(root: &str, s3: S3Settings, vector_index_threshold: usize) -> VectorStore {
        VectorStore {
            root: root.trim_end_matches('/').to_string(),
            s3,
            vector_index_threshold,
            connections: Arc::default(),
            writers: Arc::default(),
        }
    }

    fn tenant_uri(&self, tenant: Uuid) -> String {
        format!("{}/t_{}", self.root, tenant.simple())
    }

    fn on_object_store(&self) -> bool {
        self.root.contains("://")
    }

    async fn connect(&self, uri: &str) -> Result<Connection, LanceError> {
        let mut connect = lancedb::connect(uri);
        if self.on_object_store() {
            connect = connect.storage_options(self.s3.storage_options());
        }
        Ok(connect.execute().await?)
    }

    async fn connection(&self, tenant: Uuid) -> Result<Connection, LanceError> {
        let mut connections = self.connections.lock().await;
        if let Some(conn) = connections.get(&tenant) {
            return Ok(conn.clone());
        }
        let conn = self.connect(&self.tenant_uri(tenant)).await?;
        connections.insert(tenant, conn.clone());
        Ok(conn)
    }

    /// Reaches the store once at start-up, so a wrong bucket, endpoint or credential stops
    /// the process with the store's own message instead of failing the first upload.
    pub async fn check(&self) -> Result<(), LanceError> {
        if self.on_object_store() {
            self.connect(&self.root)
                .await?
                .table_names()
                .execute()
                .await?;
        }
        Ok(())
    }

    /// The table, if it exists (opened at its newest version).
    pub async fn table(&self, tenant: Uuid, name: &str) -> Result<Option<Table>, LanceError> {
        match self
            .connection(tenant)
            .await?
            .open_table(name)
            .execute()
            .await
        {
            Ok(table) => Ok(Some(table)),
            Err(lancedb::Error::TableNotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn writer(&self, tenant: Uuid, name: &str) -> Arc<Mutex<()>> {
        let mut writers = self
            .writers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        writers
            .entry(format!("{tenant}/{name}"))
            .or_default()
            .clone()
    }

    /// Makes `rows` the document's chunks in one commit: they are inserted and every row of
    /// an older revision of the document is deleted together, so a search sees either the
    /// old chunks or the new ones. Rows of a newer revision (a later upload that finished
    /// first) are left alone. `table` comes from [`VectorStore::table`] or
    /// [`VectorStore::ensure_table`].
    pub async fn replace_document(
        &self,
        tenant: Uuid,
        table: &Table,
        dim: usize,
        document_id: Uuid,
        revision: i64,
        rows: Vec<ChunkRow>,
    ) -> Result<(), LanceError> {
        let writer = self.writer(tenant, table.name());
        let _guard = writer.lock().await;
        let batch = to_batch(&rows, dim)?;
        let reader = RecordBatchIterator::new(vec![Ok(batch)], schema(dim));
        let mut merge = table.merge_insert(&["chunk_id"]);
        merge
            .when_matched_update_all(None)
            .when_not_matched_insert_all()
            .when_not_matched_by_source_delete(Some(format!(
                "document_id = {} AND revision < {revision}",
                sql_string(&document_id.to_string())
            )));
        merge.execute(Box::new(reader)).await?;
        self.maintain(table).await;
        Ok(())
    }

    /// Opens the table, creating it empty if it does not exist. Lance commits a creation that
    /// lost a race as an overwrite of the table the winner created, rows and all, so
    /// processes must not create one table concurrently: ingestion calls this holding the
    /// knowledge base's database row.
    pub async fn ensure_table(
        &self,
        tenant: Uuid,
        name: &str,
        dim: usize,
    ) -> Result<Table, LanceError> {
        if let Some(table) = self.table(tenant, name).await? {
            return Ok(table);
        }
        let conn = self.connection(tenant).await?;
        match conn.create_empty_table(name, schema(dim)).execute().await {
            Ok(table) => Ok(table),
            Err(lancedb::Error::TableAlreadyExists { .. }) => {
                Ok(conn.open_table(name).execute().await?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a document's rows (of one revision, or all).
    pub async fn delete_document(
        &self,
        tenant: Uuid,
        name: &str,
        document_id: Uuid,
        revision: Option<i64>,
    ) -> Result<(), LanceError> {
        let Some(table) = self.table(tenant, name).await? else {
            return Ok(());
        };
        let writer = self.writer(tenant, name);
        let _guard = writer.lock().await;
        let mut predicate = format!("document_id = {}", sql_string(&document_id.to_string()));
        if let Some(revision) = revision {
            predicate.push_str(&format!(" AND revision = {revision}"));
        }
        table.delete(predicate.as_str()).await?;
        Ok(())
    }

    pub async fn drop_table(&self, tenant: Uuid, name: &str) -> Result<(), LanceError> {
        match self.connection(tenant).await?.drop_table(name, &[]).await {
            Ok(()) | Err(lancedb::Error::TableNotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes every table of the tenant.
    pub async fn drop_tenant(&self, tenant: Uuid) -> Result<(), LanceError> {
        self.connections.lock().await.remove(&tenant);
        if self.on_object_store() {
            let conn = self.connect(&self.tenant_uri(tenant)).await?;
            conn.drop_all_tables(&[]).await?;
        } else {
            match tokio::fs::remove_dir_all(self.tenant_uri(tenant)).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    pub async fn count(&self, tenant: Uuid, name: &str) -> Result<usize, LanceError> {
        match self.table(tenant, name).await? {
            Some(table) => Ok(table.count_rows(None).await?),
            None => Ok(0),
        }
    }

    /// Every row's `search_text`, the text its vector was made from (benchmarks).
    pub async fn search_texts(&self, tenant: Uuid, name: &str) -> Result<Vec<String>, LanceError> {
        let Some(table) = self.table(tenant, name).await? else {
            return Ok(Vec::new());
        };
        let batches: Vec<RecordBatch> = table
            .query()
            .select(Select::columns(&["search_text"]))
            .execute()
            .await?
            .try_collect()
            .await?;
        let mut texts = Vec::new();
        for batch in &batches {
            texts.extend(
                strings(batch, "search_text")?
                    .iter()
                    .flatten()
                    .map(String::from),
            );
        }
        Ok(texts)
    }

    /// The files (fragments) a table is stored in: every search opens each of them.
    pub async fn fragments(&self, tenant: Uuid, name: &str) -> Result<usize, LanceError> {
        match self.table(tenant, name).await? {
            Some(table) => Ok(table.stats().await?.fragment_stats.num_fragments),
            None => Ok(0),
        }
    }

    /// Keeps the indexes current after a write: the BM25 index exists from the first row;
    /// the vector index is built once the table passes the threshold (below it an exact scan
    /// is both faster and exact). New rows are searched unindexed (flat) until there are
    /// enough of them to be worth folding in ([`needs_folding`]), or until the documents
    /// written one at a time have left more than [`EXTRA_FRAGMENTS`] extra fragments, so a
    /// stream of small documents costs one compaction and index update per batch, not one
    /// per document, and a search never opens hundreds of files. Failures are
    /// logged, not returned: searches still see unindexed rows, and the next write tries again.
    async fn maintain(&self, table: &Table) {
        if let Err(e) = self.try_maintain(table, false).await {
            tracing::warn!(table = table.name(), error = %e, "index maintenance failed");
        }
    }

    async fn try_maintain(&self, table: &Table, force: bool) -> Result<(), LanceError> {
        let indices = table.list_indices().await?;
        let index_on = |column: &str| {
            indices
                .iter()
                .find(|i| i.columns.iter().any(|c| c == column))
                .map(|i| i.name.clone())
        };
        let stats = table.stats().await?;
        let mut fold = force
            || stats.fragment_stats.num_fragments
                > EXTRA_FRAGMENTS + stats.num_rows / FRAGMENT_ROWS;
        match index_on("search_text") {
            Some(name) => fold |= self.needs_folding(table, &name).await?,
            None => {
                table
                    .create_index(&["search_text"], Index::FTS(FtsIndexBuilder::default()))
                    .execute()
                    .await?;
            }
        }
        match index_on("vector") {
            Some(name) => fold |= self.needs_folding(table, &name).await?,
            None if stats.num_rows >= self.vector_index_threshold => {
                table
                    .create_index(
                        &["vector"],
                        Index::IvfHnswSq(
                            IvfHnswSqIndexBuilder::default().distance_type(DistanceType::Cosine),
                        ),
                    )
                    .execute()
                    .await?;
            }
            None => {}
        }
        if fold {
            // Merge small files, fold new rows into the indexes, and free the space of
            // versions older than an hour (no reader holds one that long).
            table
                .optimize(OptimizeAction::Compact {
                    options: CompactionOptions {
                        target_rows_per_fragment: FRAGMENT_ROWS,
                        ..Default::default()
                    },
                    remap_options: None,
                })
                .await?;
            table
                .optimize(OptimizeAction::Index(OptimizeOptions::default()))
                .await?;
            table
                .optimize(OptimizeAction::Prune {
                    older_than: Some(chrono::Duration::hours(1)),
                    delete_unverified: Some(false),
                    error_if_tagged_old_versions: Some(false),
                })
                .await?;
        }
        Ok(())
    }

    /// Whether an index has fallen far enough behind the table to update it now: more than
    /// [`UNINDEXED_ROWS`] rows, or an eighth of what it covers, are searched unindexed.
    async fn needs_folding(&self, table: &Table, index: &str) -> Result<bool, LanceError> {
        Ok(table
            .index_stats(index)
            .await?
            .is_some_and(|s| s.num_unindexed_rows > UNINDEXED_ROWS.max(s.num_indexed_rows / 8)))
    }

    /// Builds the vector index now, whatever the table's size (benchmarks, re-training).
    pub async fn build_vector_index(&self, tenant: Uuid, name: &str) -> Result<(), LanceError> {
        let Some(table) = self.table(tenant, name).await? else {
            return Ok(());
        };
        table
            .create_index(
                &["vector"],
                Index::IvfHnswSq(
                    IvfHnswSqIndexBuilder::default().distance_type(DistanceType::Cosine),
                ),
            )
            .replace(true)
            .execute()
            .await?;
        Ok(())
    }

    /// Appends rows without replacing anything (benchmark corpora).
    pub async fn append(
        &self,
        tenant: Uuid,
        name: &str,
        dim: usize,
        rows: Vec<ChunkRow>,
    ) -> Result<(), LanceError> {
        let batch = to_batch(&rows, dim)?;
        match self.table(tenant, name).await? {
            Some(table) => {
                table.add(batch).execute().await?;
            }
            None => {
                self.connection(tenant)
                    .await?
                    .create_table(name, batch)
                    .execute()
                    .await?;
            }
        }
        Ok(())
    }

    /// Creates or refreshes the indexes now (benchmarks call it after bulk appends).
    pub async fn refresh_indexes(&self, tenant: Uuid, name: &str) -> Result<(), LanceError> {
        if let Some(table) = self.table(tenant, name).await? {
            self.try_maintain(&table, true).await?;
        }
        Ok(())
    }

    /// The `limit` nearest chunks by cosine similarity.
    pub async fn vector_search(
        &self,
        tenant: Uuid,
        name: &str,
        vector: &[f32],
        limit: usize,
        filter: Option<&str>,
    ) -> Result<Vec<Candidate>, LanceError> {
        let Some(table) = self.table(tenant, name).await? else {
            return Ok(Vec::new());
        };
        let mut query = table
            .query()
            .nearest_to(vector)?
            .distance_type(DistanceType::Cosine)
            .select(Select::columns(&with_score("_distance")))
            .limit(limit);
        if let Some(filter) = filter {
            query = query.only_if(filter);
        }
        let batches: Vec<RecordBatch> = query.execute().await?.try_collect().await?;
        candidates(&batches, "_distance", |d| 1.0 - d)
    }

    /// The `limit` best chunks by BM25 over title and text.
    pub async fn fulltext_search(
        &self,
        tenant: Uuid,
        name: &str,
        text: &str,
        limit: usize,
        filter: Option<&str>,
    ) -> Result<Vec<Candidate>, LanceError> {
        let Some(table) = self.table(tenant, name).await? else {
            return Ok(Vec::new());
        };
        let fts = FullTextSearchQuery::new(text.to_string())
            .with_column("search_text".to_string())
            .map_err(|e| LanceError::Query(e.to_string()))?;
        let mut query = table
            .query()
            .full_text_search(fts)
            .select(Select::columns(&with_score("_score")))
            .limit(limit);
        if let Some(filter) = filter {
            query = query.only_if(filter);
        }
        let batches: Vec<RecordBatch> = query.execute().await?.try_collect().await?;
        let mut found = candidates(&batches, "_score", |s| s)?;
        found.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(found)
    }
}
