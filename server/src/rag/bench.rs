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

use super::embed::{local_model_flops, matmul_gflops, LocalMiniLm, LOCAL_MODEL};
use super::eval::Scratch;
use super::lance::ChunkRow;
use super::Knowledge;
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

/// What the machine allows for ingestion: the local model's arithmetic on the ingested chunks
/// against this machine's f32 matrix-multiply throughput, and how close the model alone and
/// the whole pipeline (`ingested` chunks/s, upload to searchable) come to it.
async fn model_limit(
    config: &Config,
    knowledge: &Knowledge,
    texts: Vec<String>,
    ingested: f64,
) -> anyhow::Result<()> {
    let tokenizer = LocalMiniLm::tokenizer(&config.knowledge.model_dir)?;
    let tokens = texts
        .iter()
        .map(|t| tokenizer.encode(t.as_str(), true).map(|e| e.len()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if tokens.is_empty() {
        return Ok(());
    }
    let per_chunk = tokens.iter().map(|&t| local_model_flops(t)).sum::<f64>() / tokens.len() as f64;
    let gflops = tokio::task::spawn_blocking(|| matmul_gflops(Duration::from_secs(3))).await??;
    let limit = gflops * 1e9 / per_chunk;
    // The model alone on a sample of the same chunks, in the pipeline's batches.
    let sample: Vec<String> = texts.into_iter().take(256).collect();
    let embedder = knowledge.embedders.get(LOCAL_MODEL)?;
    let started = Instant::now();
    for batch in sample.chunks(config.knowledge.embed_batch.max(1)) {
        embedder.embed(batch.to_vec()).await?;
    }
    let alone = sample.len() as f64 / started.elapsed().as_secs_f64();
    println!(
        "limit: {:.2} GFLOP a chunk (mean {:.0} word pieces) at {gflops:.1} GFLOP/s f32 \
         matmul (candle, {} threads) = {limit:.1} chunks/s; the model alone {alone:.1} \
         chunks/s ({:.0} %), ingestion end to end {ingested:.1} chunks/s ({:.0} %)",
        per_chunk / 1e9,
        tokens.iter().sum::<usize>() as f64 / tokens.len() as f64,
        candle_core::utils::get_num_threads(),
        100.0 * alone / limit,
        100.0 * ingested / limit,
    );
    Ok(())
}

/// CPU seconds used so far by the whole process (threads that ended included) and by its
/// threads named `prefix`, from `/proc` (Linux; `None` elsewhere).
pub fn cpu_seconds(prefix: &str) -> Option<(f64, f64)> {
    // utime and stime, in USER_HZ ticks (100 per second in Linux's ABI), after "(comm)".
    fn ticks(stat: &str) -> Option<(String, u64)> {
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let used = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some((stat[open + 1..close].to_string(), used))
    }
    let (_, process) = ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    let mut load = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        if let Some((name, used)) = std::fs::read_to_string(task.path().join("stat"))
            .ok()
            .and_then(|s| ticks(&s))
        {
            if name.starts_with(prefix) {
                load += used;
            }
        }
    }
    Some((process as f64 / 100.0, load as f64 / 100.0))
}

/// The `p` quantile (0–1) of sorted durations, in milliseconds.
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Ingestion: real files through upload → job → extract → chunk → embed → LanceDB, then how
/// close that came to what the machine allows.
async fn ingestion(
    config: &Config,
    scratch: &Scratch,
    words: &Words,
    rng: &mut StdRng,
    documents: usize,
) -> anyhow::Result<()> {
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
                        .map(|_| format!("{}.", words.sentence(rng, 14)))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            Upload {
                filename: format!("doc-{i}.md"),
                content_type: Some("text/markdown".into()),
                bytes: format!(
                    "# {}\n\n{}",
                    words.sentence(rng, 4),
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

    if kb.embedding_model == LOCAL_MODEL {
        let table = scratch
            .service
            .table_of(&scratch.access, kb.id)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let texts = scratch
            .knowledge
            .vectors
            .search_texts(scratch.access.tenant_id, &table)
            .await?;
        model_limit(config, &scratch.knowledge, texts, chunks as f64 / took).await?;
    }
    Ok(())
}

/// What `server bench knowledge` measures.
pub struct Plan {
    /// Documents ingested for the throughput figure (none: no ingestion figure).
    pub documents: usize,
    /// Corpus sizes in chunks for the search figures.
    pub sizes: Vec<usize>,
    pub concurrency: usize,
    /// Queries per mode and size.
    pub queries: usize,
    pub modes: Vec<SearchMode>,
}

pub async fn run(config: &Config, plan: &Plan) -> anyhow::Result<()> {
    let scratch = Scratch::start(config, "bench").await?;
    let mut rng = StdRng::seed_from_u64(7);
    let words = Words::new(5000, &mut rng);
    let Plan {
        documents,
        concurrency,
        queries,
        ..
    } = *plan;

    if documents > 0 {
        // Its own stream, so the search corpora are the same with or without ingestion.
        let mut rng = StdRng::seed_from_u64(8);
        ingestion(config, &scratch, &words, &mut rng, documents).await?;
    }

    // Search latency: a corpus of `size` chunks written straight into the knowledge base's
    // table (random unit vectors, Zipf-ish text), then concurrent queries through the service.
    let service = Arc::new(scratch.service.clone());
    for &size in &plan.sizes {
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
        println!(
            "| mode | queries | concurrency | p50 ms | p95 ms | p99 ms | queries/s | CPU ms a query |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        let texts: Vec<String> = (0..queries)
            .map(|_| {
                let len = rng.gen_range(2..=8);
                words.sentence(&mut rng, len)
            })
            .collect();
        for &mode in &plan.modes {
            let texts = Arc::new(texts.clone());
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let cpu_before = cpu_seconds("");
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
            // The whole process's CPU: the searches are all it does meanwhile.
            let cpu = match (cpu_before, cpu_seconds("")) {
                (Some((before, _)), Some((after, _))) => {
                    format!(
                        "{:.2}",
                        (after - before) * 1000.0 / times.len().max(1) as f64
                    )
                }
                _ => "n/a".into(),
            };
            times.sort();
            println!(
                "| {} | {} | {concurrency} | {:.1} | {:.1} | {:.1} | {:.1} | {cpu} |",
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
