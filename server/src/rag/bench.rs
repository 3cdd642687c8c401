//! `server bench knowledge`: ingestion throughput with the configured local model, and search
//! latency per mode at several corpus sizes with concurrent queries. Corpora are synthetic and
//! deterministic (seeded), so runs compare.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use app::services::{KnowledgeService, Upload};
use app::types::{CreateKnowledgeBase, DocumentMeta, SearchMode, SearchRequest};

use super::eval::Scratch;
use super::lance::ChunkRow;
use crate::config::Config;

/// A fixed vocabulary of pronounceable words, drawn with a Zipf-like skew like real text.
struct Words {
    words: Vec<String>,
}

impl Words {
    fn new(count: usize, rng: &mut StdRng) -> Words {
        const SYLLABLES: [&str; 24] = [
            "ka", "lo", "mi", "ne", "ra", "to", "vi", "su", "pe", "do", "ga", "li", "mo", "nu",
            "ri", "sa", "te", "vo", "zu", "be", "fa", "ho", "ju", "we",
        ];
        let words = (0..count)
            .map(|_| {
                (0..rng.gen_range(2..=4))
                    .map(|_| SYLLABLES[rng.gen_range(0..SYLLABLES.len())])
                    .collect()
            })
            .collect();
        Words { words }
    }

    fn pick(&self, rng: &mut StdRng) -> &str {
        // Rank ∝ u², so frequent words are frequent and the tail is long.
        let u: f64 = rng.gen();
        let i = ((u * u) * self.words.len() as f64) as usize;
        &self.words[i.min(self.words.len() - 1)]
    }

    fn sentence(&self, rng: &mut StdRng, len: usize) -> String {
        (0..len)
            .map(|_| self.pick(rng))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn unit_vector(rng: &mut StdRng, dim: usize) -> Vec<f32> {
    let v: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    v.into_iter().map(|x| x / norm).collect()
}

/// The `p` quantile (0–1) of sorted durations, in milliseconds.
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

pub async fn run(
    config: &Config,
    documents: usize,
    sizes: &[usize],
    concurrency: usize,
    queries: usize,
) -> anyhow::Result<()> {
    let scratch = Scratch::start(config, "bench").await?;
    let mut rng = StdRng::seed_from_u64(7);
    let words = Words::new(5000, &mut rng);

    // Ingestion: real files through upload → job → extract → chunk → embed → LanceDB.
    let kb = scratch
        .service
        .create_knowledge_base(
            &scratch.access,
            CreateKnowledgeBase {
                name: "ingestion".into(),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let files: Vec<Upload> = (0..documents)
        .map(|i| {
            let paragraphs: Vec<String> = (0..8)
                .map(|_| {
                    (0..5)
                        .map(|_| format!("{}.", words.sentence(&mut rng, 14)))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            Upload {
                filename: format!("doc-{i}.md"),
                content_type: Some("text/markdown".into()),
                bytes: format!(
                    "# {}\n\n{}",
                    words.sentence(&mut rng, 4),
                    paragraphs.join("\n\n")
                )
                .into_bytes(),
                meta: DocumentMeta::default(),
            }
        })
        .collect();
    let started = Instant::now();
    for batch in files.chunks(50) {
        scratch
            .service
            .upload_documents(&scratch.access, kb.id, batch.to_vec())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let chunks = scratch.wait_ingested(documents as u64).await?;
    let took = started.elapsed().as_secs_f64();
    println!(
        "ingestion: {documents} documents, {chunks} chunks in {took:.1} s = {:.1} chunks/s ({})",
        chunks as f64 / took,
        kb.embedding_model
    );

    // Search latency: a corpus of `size` chunks written straight into the knowledge base's
    // table (random unit vectors, Zipf-ish text), then concurrent queries through the service.
    let service = Arc::new(scratch.service.clone());
    for &size in sizes {
        let kb = scratch
            .service
            .create_knowledge_base(
                &scratch.access,
                CreateKnowledgeBase {
                    name: format!("search-{size}"),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let table = scratch
            .service
            .table_of(&scratch.access, kb.id)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let tenant = scratch.access.tenant_id;
        let started = Instant::now();
        let mut written = 0;
        while written < size {
            let n = (size - written).min(10_000);
            let rows: Vec<ChunkRow> = (0..n)
                .map(|i| {
                    let document_id = Uuid::from_u128((written + i) as u128 / 4 + 1);
                    let text = words.sentence(&mut rng, 120);
                    ChunkRow {
                        chunk_id: format!("c{}", written + i),
                        document_id,
                        revision: 1,
                        chunk_index: ((written + i) % 4) as i64,
                        search_text: text.clone(),
                        end: text.len() as i64,
                        text,
                        context: None,
                        start: 0,
                        title: String::new(),
                        source: format!("doc-{}", (written + i) / 4),
                        tags: Vec::new(),
                        language: None,
                        vector: unit_vector(&mut rng, kb.embedding_dim as usize),
                    }
                })
                .collect();
            scratch
                .knowledge
                .vectors
                .append(tenant, &table, kb.embedding_dim as usize, rows)
                .await?;
            written += n;
        }
        scratch
            .knowledge
            .vectors
            .refresh_indexes(tenant, &table)
            .await?;
        println!(
            "\n{size} chunks written and indexed in {:.1} s (vector index {})",
            started.elapsed().as_secs_f64(),
            if size >= config.knowledge.vector_index_threshold {
                "IVF-HNSW-SQ"
            } else {
                "none: exact scan"
            }
        );
        println!("| mode | queries | concurrency | p50 ms | p95 ms | p99 ms | queries/s |");
        println!("|---|---|---|---|---|---|---|");
        let texts: Vec<String> = (0..queries)
            .map(|_| {
                let len = rng.gen_range(2..=8);
                words.sentence(&mut rng, len)
            })
            .collect();
        for mode in [SearchMode::Fulltext, SearchMode::Vector, SearchMode::Hybrid] {
            let texts = Arc::new(texts.clone());
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let started = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..concurrency {
                let (service, texts, next, access) = (
                    service.clone(),
                    texts.clone(),
                    next.clone(),
                    scratch.access.clone(),
                );
                let kb = kb.id;
                tasks.spawn(async move {
                    let mut times = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(text) = texts.get(i) else { break };
                        let t = Instant::now();
                        let request = SearchRequest {
                            query: text.clone(),
                            mode: Some(mode),
                            top_k: Some(10),
                            ..Default::default()
                        };
                        service
                            .search(&access, kb, request)
                            .await
                            .map_err(|e| anyhow::anyhow!("{e}"))?;
                        times.push(t.elapsed());
                    }
                    anyhow::Ok(times)
                });
            }
            let mut times = Vec::new();
            while let Some(done) = tasks.join_next().await {
                times.extend(done??);
            }
            let wall = started.elapsed().as_secs_f64();
            times.sort();
            println!(
                "| {} | {} | {concurrency} | {:.1} | {:.1} | {:.1} | {:.1} |",
                mode.as_str(),
                times.len(),
                percentile(&times, 0.50),
                percentile(&times, 0.95),
                percentile(&times, 0.99),
                times.len() as f64 / wall
            );
        }
    }
    scratch.finish().await;
    Ok(())
}
