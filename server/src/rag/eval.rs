//! `server eval retrieval --dataset DIR`: retrieval quality on a BEIR-layout dataset
//! (`corpus.jsonl`, `queries.jsonl`, `qrels/test.tsv`). The corpus goes through the normal
//! path (upload, ingestion job, LanceDB) into a scratch tenant in a temporary data folder; then
//! every judged query runs in each mode and nDCG@10, Recall@100 and MRR@10 are printed.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};
use secrecy::SecretString;
use uuid::Uuid;

use app::services::{Access, KnowledgeService, Upload};
use app::types::{CreateKnowledgeBase, DocumentMeta, DocumentStatus, SearchMode, SearchRequest};

use super::service::KnowledgeServiceImpl;
use super::Knowledge;
use crate::config::Config;
use crate::jobs::{registry, Worker};
use crate::kv::{Kv, MemoryStore};
use crate::store::{self, documents};

/// A throwaway installation: SQLite and LanceDB in a temporary folder (unless the config
/// names a database), one tenant, the knowledge service and an in-process worker.
pub struct Scratch {
    pub db: DatabaseConnection,
    pub knowledge: Arc<Knowledge>,
    pub service: KnowledgeServiceImpl,
    pub access: Access,
    pub folder: PathBuf,
    stop: tokio::sync::watch::Sender<bool>,
    worker: tokio::task::JoinHandle<()>,
}

impl Scratch {
    pub async fn start(config: &Config, name: &str) -> anyhow::Result<Scratch> {
        let folder =
            std::env::temp_dir().join(format!("agent-platform-{name}-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(&folder)?;
        let mut config = config.clone();
        if config.is_sqlite() {
            config.database_url = SecretString::from(format!(
                "sqlite://{}?mode=rwc",
                folder.join("scratch.db").display()
            ));
        }
        config.data_dir = folder.clone();
        config.knowledge.lancedb_uri = folder.join("lancedb").to_string_lossy().into_owned();
        config.knowledge.search_cache_ttl = Duration::ZERO;
        config.jobs.poll = Duration::from_millis(50);
        let db = store::connect(&config).await?;
        store::migrate(&db).await?;
        let slug = format!("{name}-{}", &Uuid::now_v7().simple().to_string()[20..]);
        let tenant = crate::tenancy::create_tenant(&db, &slug, name)
            .await
            .map_err(|e| anyhow::anyhow!("creating the scratch tenant: {e}"))?;
        let knowledge = Knowledge::new(config.knowledge.clone(), config.circuit);
        let kv = Kv::new(Arc::new(MemoryStore::new()), &config.kv_namespace);
        let service = KnowledgeServiceImpl::new(db.clone(), kv, knowledge.clone());
        let access = crate::tenancy::cli_access(tenant.id);
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let worker = Worker::new(
            db.clone(),
            registry(&knowledge, None, None, None),
            config.jobs.clone(),
        );
        let worker = tokio::spawn(worker.run(async move {
            let _ = stopped.changed().await;
        }));
        Ok(Scratch {
            db,
            knowledge,
            service,
            access,
            folder,
            stop,
            worker,
        })
    }

    /// Waits until no document of the tenant is queued or processing; returns the chunk count.
    pub async fn wait_ingested(&self, total: u64) -> anyhow::Result<u64> {
        let tenant = self.access.tenant_id;
        let pending = || {
            documents::Entity::find()
                .filter(documents::Column::TenantId.eq(tenant))
                .filter(documents::Column::Status.is_in([
                    DocumentStatus::Queued.as_str(),
                    DocumentStatus::Processing.as_str(),
                ]))
                .count(&self.db)
        };
        let mut last = u64::MAX;
        loop {
            let left = pending().await?;
            if left == 0 {
                break;
            }
            if left != last && (last == u64::MAX || last - left >= total / 10) {
                eprintln!("  ingesting: {} of {total} documents done", total - left);
                last = left;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let docs = documents::Entity::find()
            .filter(documents::Column::TenantId.eq(tenant))
            .all(&self.db)
            .await?;
        let failed: Vec<_> = docs
            .iter()
            .filter(|d| d.status == DocumentStatus::Failed.as_str())
            .collect();
        if let Some(first) = failed.first() {
            eprintln!(
                "  {} documents failed, e.g. {}: {}",
                failed.len(),
                first.source,
                first.error.as_deref().unwrap_or("")
            );
        }
        Ok(docs.iter().map(|d| d.chunk_count.max(0) as u64).sum())
    }

    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.worker.await;
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

#[derive(serde::Deserialize)]
struct CorpusDoc {
    #[serde(rename = "_id")]
    id: String,
    #[serde(default)]
    title: String,
    text: String,
}

#[derive(serde::Deserialize)]
struct Query {
    #[serde(rename = "_id")]
    id: String,
    text: String,
}

fn jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<T>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    std::io::BufReader::new(file)
        .lines()
        .filter(|l| l.as_ref().map_or(true, |l| !l.trim().is_empty()))
        .map(|l| Ok(serde_json::from_str(&l?)?))
        .collect()
}

/// query id → (document id → graded relevance).
fn qrels(path: &Path) -> anyhow::Result<HashMap<String, HashMap<String, f64>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out: HashMap<String, HashMap<String, f64>> = HashMap::new();
    for line in text.lines().skip(1) {
        let parts: Vec<&str> = line.split('\t').collect();
        if let [q, d, s] = parts[..] {
            out.entry(q.to_string())
                .or_default()
                .insert(d.to_string(), s.trim().parse().unwrap_or(0.0));
        }
    }
    Ok(out)
}

/// nDCG@k with linear gains (as trec_eval), over the judged relevances.
pub fn ndcg(ranked: &[String], judged: &HashMap<String, f64>, k: usize) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, d)| judged.get(d).copied().unwrap_or(0.0).max(0.0) / (i as f64 + 2.0).log2())
        .sum();
    let mut ideal: Vec<f64> = judged.values().copied().filter(|g| *g > 0.0).collect();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, g)| g / (i as f64 + 2.0).log2())
        .sum();
    if idcg > 0.0 {
        dcg / idcg
    } else {
        0.0
    }
}

pub fn recall(ranked: &[String], judged: &HashMap<String, f64>, k: usize) -> f64 {
    let relevant: HashSet<&String> = judged
        .iter()
        .filter(|(_, g)| **g > 0.0)
        .map(|(d, _)| d)
        .collect();
    if relevant.is_empty() {
        return 0.0;
    }
    let found = ranked
        .iter()
        .take(k)
        .filter(|d| relevant.contains(d))
        .count();
    found as f64 / relevant.len() as f64
}

pub fn mrr(ranked: &[String], judged: &HashMap<String, f64>, k: usize) -> f64 {
    ranked
        .iter()
        .take(k)
        .position(|d| judged.get(d).is_some_and(|g| *g > 0.0))
        .map_or(0.0, |i| 1.0 / (i as f64 + 1.0))
}

/// One row of the table: a mode and its options.
struct Variant {
    label: &'static str,
    mode: SearchMode,
    adaptive: bool,
    rerank: bool,
}

pub async fn run(
    config: &Config,
    dataset: &Path,
    chunk_size: u32,
    max_queries: Option<usize>,
) -> anyhow::Result<()> {
    let mut corpus: Vec<CorpusDoc> = jsonl(&dataset.join("corpus.jsonl"))?;
    // An empty document cannot be uploaded (and cannot be found either).
    let before = corpus.len();
    corpus.retain(|d| !d.text.trim().is_empty());
    let queries: Vec<Query> = jsonl(&dataset.join("queries.jsonl"))?;
    let judgements = qrels(&dataset.join("qrels").join("test.tsv"))?;
    let mut queries: Vec<Query> = queries
        .into_iter()
        .filter(|q| judgements.contains_key(&q.id))
        .collect();
    if let Some(n) = max_queries {
        queries.truncate(n);
    }
    eprintln!(
        "{}: {} documents ({} empty ones skipped), {} judged queries",
        dataset.display(),
        corpus.len(),
        before - corpus.len(),
        queries.len()
    );
    let scratch = Scratch::start(config, "eval").await?;
    let kb = scratch
        .service
        .create_knowledge_base(
            &scratch.access,
            CreateKnowledgeBase {
                name: "evaluation".into(),
                chunk_size: Some(chunk_size),
                chunk_overlap: Some(chunk_size / 8),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let started = Instant::now();
    for batch in corpus.chunks(100) {
        let files = batch
            .iter()
            .map(|d| Upload {
                filename: format!("{}.txt", d.id),
                content_type: Some("text/plain".into()),
                bytes: d.text.clone().into_bytes(),
                meta: DocumentMeta {
                    title: Some(d.title.trim().to_string()).filter(|t| !t.is_empty()),
                    ..Default::default()
                },
            })
            .collect();
        scratch
            .service
            .upload_documents(&scratch.access, kb.id, files)
            .await
            .map_err(|e| anyhow::anyhow!("uploading the corpus: {e:?}"))?;
    }
    let chunks = scratch.wait_ingested(corpus.len() as u64).await?;
    let took = started.elapsed().as_secs_f64();
    println!(
        "ingested {} documents into {chunks} chunks in {took:.1} s: {:.1} chunks/s ({}, chunks of {chunk_size} tokens)",
        corpus.len(),
        chunks as f64 / took,
        kb.embedding_model,
    );

    let mut variants = vec![
        Variant {
            label: "fulltext (BM25)",
            mode: SearchMode::Fulltext,
            adaptive: false,
            rerank: false,
        },
        Variant {
            label: "vector",
            mode: SearchMode::Vector,
            adaptive: false,
            rerank: false,
        },
        Variant {
            label: "hybrid (RRF k=60)",
            mode: SearchMode::Hybrid,
            adaptive: false,
            rerank: false,
        },
        Variant {
            label: "hybrid, adaptive weights",
            mode: SearchMode::Hybrid,
            adaptive: true,
            rerank: false,
        },
    ];
    if scratch.knowledge.reranker.is_some() {
        variants.push(Variant {
            label: "hybrid + rerank",
            mode: SearchMode::Hybrid,
            adaptive: false,
            rerank: true,
        });
    }
    println!();
    println!("| mode | nDCG@10 | Recall@100 | MRR@10 | mean ms/query | failed |");
    println!("|---|---|---|---|---|---|");
    let mut failures = Vec::new();
    let mut cuts = 0;
    for v in variants {
        let (mut n, mut r, mut m) = (0.0, 0.0, 0.0);
        let mut failed = 0;
        let started = Instant::now();
        for q in &queries {
            let request = SearchRequest {
                query: q.text.clone(),
                mode: Some(v.mode),
                top_k: Some(200),
                adaptive: Some(v.adaptive),
                rerank: Some(v.rerank),
                ..Default::default()
            };
            // A query that fails scores 0 (it stays in the means) and the run goes on.
            let response = match scratch
                .service
                .search(&scratch.access, kb.id, request)
                .await
            {
                Ok(response) => response,
                Err(e) => {
                    failed += 1;
                    failures.push(format!("{}: query {}: {e}", v.label, q.id));
                    continue;
                }
            };
            cuts += usize::from(response.cut.is_some());
            // Chunks to documents, each at its best chunk's rank.
            let mut seen = HashSet::new();
            let ranked: Vec<String> = response
                .hits
                .into_iter()
                .map(|h| h.source.trim_end_matches(".txt").to_string())
                .filter(|d| seen.insert(d.clone()))
                .collect();
            let judged = &judgements[&q.id];
            n += ndcg(&ranked, judged, 10);
            r += recall(&ranked, judged, 100);
            m += mrr(&ranked, judged, 10);
        }
        let count = queries.len().max(1) as f64;
        println!(
            "| {} | {:.4} | {:.4} | {:.4} | {:.1} | {failed} |",
            v.label,
            n / count,
            r / count,
            m / count,
            started.elapsed().as_secs_f64() * 1000.0 / count
        );
    }
    if cuts > 0 {
        println!("\n{cuts} searches read only part of a long query (see `cut` in the API).");
    }
    if !failures.is_empty() {
        println!("\n{} searches failed:", failures.len());
        for f in &failures {
            println!("- {f}");
        }
    }
    scratch.finish().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(pairs: &[(&str, f64)]) -> HashMap<String, f64> {
        pairs.iter().map(|(d, g)| (d.to_string(), *g)).collect()
    }

    fn ranked(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn perfect_ranking_scores_one() {
        let j = judged(&[("a", 3.0), ("b", 1.0)]);
        assert!((ndcg(&ranked(&["a", "b", "x"]), &j, 10) - 1.0).abs() < 1e-9);
        assert_eq!(recall(&ranked(&["x", "b", "a"]), &j, 100), 1.0);
        assert_eq!(mrr(&ranked(&["x", "b"]), &j, 10), 0.5);
    }

    #[test]
    fn ndcg_matches_a_hand_computation() {
        // DCG = 1/log2(2) * 0 + 3/log2(3) ; IDCG = 3/1 + 1/log2(3).
        let j = judged(&[("a", 3.0), ("b", 1.0)]);
        let got = ndcg(&ranked(&["x", "a"]), &j, 10);
        let want = (3.0 / 3f64.log2()) / (3.0 + 1.0 / 3f64.log2());
        assert!((got - want).abs() < 1e-9);
        assert_eq!(ndcg(&ranked(&["x"]), &j, 10), 0.0);
        assert_eq!(recall(&ranked(&["a"]), &judged(&[]), 100), 0.0);
        assert_eq!(mrr(&ranked(&["x", "y"]), &j, 10), 0.0);
    }
}
