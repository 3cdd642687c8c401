//! `server bench chat`: what the platform adds to a chat turn. The whole app runs in-process on
//! a scratch database against the fake LLM (answering at once); N conversations talk over real
//! HTTP at the same time. Prints turn latency (JSON answers) and the time to the first streamed
//! token, next to the fake's own time to first token, so the difference is our overhead.
//! The fake and the load generator run on a runtime of their own (threads named
//! [`LOAD_THREADS`]), so the server's own CPU per turn is the process's minus theirs.

use std::time::{Duration, Instant};

use futures::StreamExt;
use secrecy::SecretString;
use uuid::Uuid;

use app::types::{CreateApiKey, Scope};

use crate::config::{Config, RateLimitConfig};
use crate::llm::fake::{text, FakeLlm};
use crate::rag::bench::{cpu_seconds, percentile};
use crate::startup::Application;

const ANSWER: &str =
    "Thanks for asking. Our team can help with that today, and here is what you need to know.";

/// The name of the load generator's and the fake LLM's threads.
const LOAD_THREADS: &str = "bench-load";

fn summary(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "  {label}: n={} p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        samples.len(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.95),
        percentile(&samples, 0.99),
        percentile(&samples, 1.0),
    );
}

/// Time from sending a streamed request to the first body bytes that carry `marker`.
async fn first_token(request: reqwest::RequestBuilder, marker: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let response = request.send().await?.error_for_status()?;
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    let mut first = None;
    while let Some(chunk) = body.next().await {
        seen.push_str(&String::from_utf8_lossy(&chunk?));
        if first.is_none() && seen.contains(marker) {
            first = Some(started.elapsed());
        }
    }
    first.ok_or_else(|| anyhow::anyhow!("no {marker} in the stream"))
}

pub async fn run(config: &Config, conversations: usize, turns: usize) -> anyhow::Result<()> {
    let load = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(LOAD_THREADS)
        .enable_all()
        .build()?;
    let outcome = measure(config, conversations, turns, load.handle()).await;
    load.shutdown_background();
    outcome
}

/// The app serving on loopback for a benchmark: a scratch database and folder, no rate limits,
/// the fake LLM, and a tenant with an all-scopes key.
pub struct ScratchApp {
    pub base: String,
    pub services: app::services::Services,
    pub db: sea_orm::DatabaseConnection,
    pub tenant: uuid::Uuid,
    pub key: String,
    /// "SQLite" or "PostgreSQL".
    pub backend: &'static str,
    folder: std::path::PathBuf,
}

impl Drop for ScratchApp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

/// Starts the app for a benchmark named `name`; `adjust` changes the configuration first.
pub async fn scratch_app(
    config: &Config,
    name: &str,
    fake: &FakeLlm,
    adjust: impl FnOnce(&mut Config),
) -> anyhow::Result<ScratchApp> {
    let folder =
        std::env::temp_dir().join(format!("agent-platform-{name}-{}", Uuid::now_v7().simple()));
    std::fs::create_dir_all(&folder)?;
    let mut config = config.clone();
    if config.is_sqlite() {
        config.database_url = SecretString::from(format!(
            "sqlite://{}?mode=rwc",
            folder.join("bench.db").display()
        ));
    }
    config.data_dir = folder.clone();
    config.knowledge.lancedb_uri = folder.join("lancedb").to_string_lossy().into_owned();
    config.site_addr = "127.0.0.1:0".parse()?;
    config.demo_tenant = false;
    config.rate_limits = RateLimitConfig {
        read: 1_000_000,
        write: 1_000_000,
        tenant: 1_000_000,
        public: 1_000_000,
    };
    config.llm.base_url = Some(fake.base_url.clone());
    config.llm.chat_model = crate::llm::fake::CHAT_MODEL.into();
    config.llm.router_model = crate::llm::fake::ROUTER_MODEL.into();
    adjust(&mut config);
    let backend = if config.is_sqlite() {
        "SQLite"
    } else {
        "PostgreSQL"
    };
    let app = Application::build(config).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let services = app.state().services.clone();
    let db = app.state().db.clone();
    tokio::spawn(app.run(std::future::pending()));
    let slug = format!("bench-{}", &Uuid::now_v7().simple().to_string()[20..]);
    let tenant = crate::tenancy::create_tenant(&db, &slug, "Bench Company")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let key = services
        .tenancy
        .create_api_key(
            &crate::tenancy::cli_access(tenant.id),
            CreateApiKey {
                name: "bench".into(),
                scopes: Scope::all().iter().map(ToString::to_string).collect(),
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .secret;
    Ok(ScratchApp {
        base,
        services,
        db,
        tenant: tenant.id,
        key,
        backend,
        folder,
    })
}

async fn measure(
    config: &Config,
    conversations: usize,
    turns: usize,
    load: &tokio::runtime::Handle,
) -> anyhow::Result<()> {
    let fake = load.spawn(FakeLlm::start()).await??;
    let scratch = scratch_app(config, "chat", &fake, |_| {}).await?;
    let (base, key, backend) = (scratch.base.clone(), scratch.key.clone(), scratch.backend);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(conversations * 2)
        .build()?;
    // Router and specialists each answer at once (no tools: the turn is router → specialist).
    let scripted = (conversations * (turns + 2) + 10) * 2;
    for _ in 0..scripted {
        fake.route(text("support"));
        fake.chat(text(ANSWER));
    }

    let cpu_before = cpu_seconds(LOAD_THREADS);
    let started = Instant::now();
    let tasks = (0..conversations).map(|_| {
        let http = http.clone();
        let base = base.clone();
        let key = key.clone();
        load.spawn(async move {
            let created: serde_json::Value = http
                .post(format!("{base}/api/v1/conversations"))
                .bearer_auth(&key)
                .json(&serde_json::json!({}))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let id = created["id"].as_str().unwrap_or_default().to_string();
            let url = format!("{base}/api/v1/conversations/{id}/messages");
            let mut json_turns = Vec::with_capacity(turns);
            for i in 0..turns {
                let t = Instant::now();
                http.post(&url)
                    .bearer_auth(&key)
                    .json(&serde_json::json!({ "content": format!("Question number {i} about your service") }))
                    .send()
                    .await?
                    .error_for_status()?
                    .bytes()
                    .await?;
                json_turns.push(t.elapsed());
            }
            let streamed = first_token(
                http.post(&url)
                    .bearer_auth(&key)
                    .json(&serde_json::json!({ "content": "One more question", "stream": true })),
                "event: message.delta",
            )
            .await?;
            anyhow::Ok((json_turns, streamed))
        })
    });
    let mut json_turns = Vec::new();
    let mut streamed = Vec::new();
    for outcome in futures::future::join_all(tasks).await {
        let (turns, first) = outcome??;
        json_turns.extend(turns);
        streamed.push(first);
    }
    let took = started.elapsed().as_secs_f64();
    let cpu_after = cpu_seconds(LOAD_THREADS);

    // The fake's own time to its first chunk, asked directly, as often and as concurrently.
    let direct = futures::future::join_all((0..conversations).map(|_| {
        first_token(
            http.post(format!("{}/chat/completions", fake.base_url))
                .json(&serde_json::json!({
                    "model": crate::llm::fake::CHAT_MODEL, "stream": true,
                    "messages": [{"role": "user", "content": "hi"}]
                })),
            "\"content\"",
        )
    }))
    .await
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;

    let json_turns_count = json_turns.len();
    println!(
        "chat turns on {backend}: {conversations} concurrent conversations × {turns} turns, fake LLM answering at once ({} turns in {took:.1} s = {:.0} turns/s)",
        json_turns.len(),
        json_turns.len() as f64 / took
    );
    summary("turn (JSON), router + specialist, 2 LLM calls", json_turns);
    summary("first streamed token through the platform", streamed);
    summary("first token from the fake directly", direct);
    if let (Some((p0, l0)), Some((p1, l1))) = (cpu_before, cpu_after) {
        // Every turn, JSON and streamed; creating the conversations is charged to them.
        let requests = (json_turns_count + conversations) as f64;
        let server = (p1 - p0) - (l1 - l0);
        println!(
            "  server CPU: {:.2} ms per turn ({server:.1} s for {} JSON + {conversations} streamed turns, creating the {conversations} conversations included; the process used {:.1} s, the load generator and the fake LLM {:.1} s)",
            server * 1000.0 / requests,
            json_turns_count,
            p1 - p0,
            l1 - l0,
        );
    }
    drop(scratch);
    Ok(())
}
