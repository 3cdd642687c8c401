//! `server bench chat`: what the platform adds to a chat turn. The whole app runs in-process on
//! a scratch database against the fake LLM (answering at once); N conversations talk over real
//! HTTP at the same time. Prints turn latency (JSON answers) and the time to the first streamed
//! token, next to the fake's own time to first token, so the difference is our overhead.

use std::time::{Duration, Instant};

use futures::StreamExt;
use secrecy::SecretString;
use uuid::Uuid;

use app::types::{CreateApiKey, Scope};

use crate::config::{Config, RateLimitConfig};
use crate::llm::fake::{text, FakeLlm};
use crate::rag::bench::percentile;
use crate::startup::Application;

const ANSWER: &str =
    "Thanks for asking. Our team can help with that today, and here is what you need to know.";

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
    let fake = FakeLlm::start().await?;
    let folder =
        std::env::temp_dir().join(format!("agent-platform-chat-{}", Uuid::now_v7().simple()));
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
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(conversations * 2)
        .build()?;
    // Router and specialists each answer at once (no tools: the turn is router → specialist).
    let scripted = (conversations * (turns + 2) + 10) * 2;
    for _ in 0..scripted {
        fake.route(text("support"));
        fake.chat(text(ANSWER));
    }

    let started = Instant::now();
    let tasks = (0..conversations).map(|_| {
        let http = http.clone();
        let base = base.clone();
        let key = key.clone();
        tokio::spawn(async move {
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

    println!(
        "chat turns on {backend}: {conversations} concurrent conversations × {turns} turns, fake LLM answering at once ({} turns in {took:.1} s = {:.0} turns/s)",
        json_turns.len(),
        json_turns.len() as f64 / took
    );
    summary("turn (JSON), router + specialist, 2 LLM calls", json_turns);
    summary("first streamed token through the platform", streamed);
    summary("first token from the fake directly", direct);
    let _ = std::fs::remove_dir_all(&folder);
    Ok(())
}
