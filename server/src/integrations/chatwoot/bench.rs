//! `server bench chatwoot`: how fast Chatwoot's webhooks are acknowledged while the agents'
//! turns they start run in the same process. The app serves on loopback (scratch database,
//! in-process worker) with the fake LLM; a fake Chatwoot takes the answers. Signed webhooks
//! arrive at a steady rate over several conversations; prints the acknowledgement latency and
//! how long until every message was answered in Chatwoot.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Router;
use serde_json::json;

use app::types::ChatwootSettings;

use crate::agents::bench::scratch_app;
use crate::config::Config;
use crate::llm::fake::{text, FakeLlm};
use crate::rag::bench::percentile;

/// Fake Chatwoot: counts the messages it is sent.
async fn fake_chatwoot() -> anyhow::Result<(String, Arc<AtomicUsize>)> {
    let answered = Arc::new(AtomicUsize::new(0));
    let count = answered.clone();
    let app = Router::new().route(
        "/api/v1/accounts/{account}/conversations/{conversation}/messages",
        post(move || {
            let count = count.clone();
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                axum::Json(json!({ "id": 1 }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, answered))
}

pub async fn run(
    config: &Config,
    webhooks: usize,
    rate: usize,
    conversations: usize,
) -> anyhow::Result<()> {
    let fake = FakeLlm::start().await?;
    for _ in 0..webhooks * 2 + 10 {
        fake.route(text("support"));
        fake.chat(text(
            "Thanks for writing. We open at nine, Monday to Saturday.",
        ));
    }
    let (chatwoot, answered) = fake_chatwoot().await?;
    // The fake Chatwoot is on loopback.
    let app = scratch_app(config, "chatwoot", &fake, |c| {
        c.knowledge.fetch_allow_private = true;
    })
    .await?;
    let connection = app
        .services
        .chatwoot
        .save_chatwoot(
            &crate::tenancy::cli_access(app.tenant),
            ChatwootSettings {
                base_url: chatwoot,
                account_id: 1,
                inbox_id: 1,
                access_token: Some("bench-token".into()),
                enabled: true,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let secret = connection.webhook_secret.unwrap_or_default();
    let hook = format!("{}{}", app.base, super::hook_path(connection.id));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(rate.max(1))
        .build()?;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let started = Instant::now();
    let mut sent = Vec::with_capacity(webhooks);
    for i in 0..webhooks {
        let body = serde_json::to_vec(&json!({
            "event": "message_created", "id": i, "content": format!("Question {i}: when do you open?"),
            "message_type": "incoming", "private": false,
            "sender": { "id": i % conversations.max(1), "name": "Bench customer", "type": "contact" },
            "conversation": { "id": i % conversations.max(1), "status": "pending", "inbox_id": 1 },
            "account": { "id": 1 }, "inbox": { "id": 1 }, "attachments": []
        }))?;
        // Chatwoot signs as our own outgoing webhooks do.
        let timestamp = chrono::Utc::now().timestamp();
        let signature = crate::integrations::webhooks::signature(&secret, timestamp, &body);
        let request = http
            .post(&hook)
            .header("content-type", "application/json")
            .header("x-chatwoot-timestamp", timestamp.to_string())
            .header("x-chatwoot-signature", signature)
            .header("x-chatwoot-delivery", format!("bench-{i}"))
            .body(body);
        sent.push(tokio::spawn(async move {
            let at = Instant::now();
            let response = request.send().await?.error_for_status()?;
            response.bytes().await?;
            anyhow::Ok(at.elapsed())
        }));
        tokio::time::sleep_until((started + interval * (i as u32 + 1)).into()).await;
    }
    let mut acks = Vec::with_capacity(webhooks);
    for task in sent {
        acks.push(task.await??);
    }
    let sending = started.elapsed();
    acks.sort();
    let deadline = Instant::now() + Duration::from_secs(300);
    while answered.load(Ordering::SeqCst) < webhooks && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = started.elapsed();
    println!(
        "chatwoot webhooks on {}: {webhooks} at {rate}/s over {conversations} conversations, each a turn with 2 calls to a fake LLM answering at once",
        app.backend
    );
    println!(
        "  acknowledgement: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms (sent in {:.1} s)",
        percentile(&acks, 0.50),
        percentile(&acks, 0.95),
        percentile(&acks, 0.99),
        percentile(&acks, 1.0),
        sending.as_secs_f64()
    );
    println!(
        "  answered in Chatwoot: {} of {webhooks}, the last {:.1} s after the first webhook",
        answered.load(Ordering::SeqCst),
        done.as_secs_f64()
    );
    Ok(())
}
