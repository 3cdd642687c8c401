//! Chatwoot as a channel, on SQLite and on PostgreSQL + Redis. A fake Chatwoot on loopback
//! speaks its agent-bot API (messages, private notes, toggle_status, `api_access_token`,
//! attachments behind a redirect as ActiveStorage serves them, failures on demand); webhooks
//! are signed as Chatwoot signs them. The fake LLM also serves `/v1/audio/transcriptions`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use reqwest::Method;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{json, Value};
use uuid::Uuid;

use server::llm::fake::{text, tool, FakeLlm};
use server::store::jobs as job_rows;

use crate::conversations::spawn;
use crate::helpers::*;

const TOKEN: &str = "cw-bot-token-1234";

/// What the fake Chatwoot was asked to do.
#[derive(Clone, Debug, PartialEq)]
enum Call {
    Message {
        conversation: i64,
        content: String,
        private: bool,
    },
    Status {
        conversation: i64,
        status: String,
    },
}

#[derive(Clone, Default)]
struct FakeChatwoot {
    addr: Option<SocketAddr>,
    calls: Arc<Mutex<Vec<Call>>>,
    /// Statuses to answer the next calls with (then 200).
    fail: Arc<Mutex<Vec<u16>>>,
}

impl FakeChatwoot {
    async fn start() -> FakeChatwoot {
        let mut fake = FakeChatwoot::default();
        let app = Router::new()
            .route(
                "/api/v1/accounts/{account}/conversations/{conversation}/messages",
                post(message),
            )
            .route(
                "/api/v1/accounts/{account}/conversations/{conversation}/toggle_status",
                post(toggle),
            )
            .route(
                "/rails/active_storage/blobs/redirect/{blob}",
                get(|Path(blob): Path<String>| async move {
                    Redirect::temporary(&format!("/storage/{blob}.ogg"))
                }),
            )
            .route("/storage/{file}", get(audio))
            .with_state(fake.clone());
        fake.addr = Some(serve_fake(app).await);
        fake
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr.unwrap())
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn fail_next(&self, statuses: &[u16]) {
        *self.fail.lock().unwrap() = statuses.to_vec();
    }

    /// Waits for the `n`th call and returns them all.
    async fn wait_for(&self, n: usize) -> Vec<Call> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let calls = self.calls();
            if calls.len() >= n {
                return calls;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} calls: {calls:?}",
                calls.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Answers as Chatwoot does: 401 for a wrong token, else the scripted status or 200.
    fn answer(&self, headers: &HeaderMap, call: Call) -> Response {
        if headers
            .get("api_access_token")
            .and_then(|v| v.to_str().ok())
            != Some(TOKEN)
        {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({ "error": "Invalid Access Token" })),
            )
                .into_response();
        }
        let scripted = {
            let mut fail = self.fail.lock().unwrap();
            (!fail.is_empty()).then(|| fail.remove(0))
        };
        if let Some(status) = scripted {
            return (StatusCode::from_u16(status).unwrap(), "scripted failure").into_response();
        }
        self.calls.lock().unwrap().push(call);
        Json(json!({ "id": 1, "payload": { "success": true } })).into_response()
    }
}

async fn message(
    State(fake): State<FakeChatwoot>,
    Path((_, conversation)): Path<(i64, i64)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    assert_eq!(body["message_type"], "outgoing", "{body}");
    let call = Call::Message {
        conversation,
        content: body["content"].as_str().unwrap_or_default().to_string(),
        private: body["private"].as_bool().unwrap_or(false),
    };
    fake.answer(&headers, call)
}

async fn toggle(
    State(fake): State<FakeChatwoot>,
    Path((_, conversation)): Path<(i64, i64)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let status = body["status"].as_str().unwrap_or_default().to_string();
    fake.answer(
        &headers,
        Call::Status {
            conversation,
            status,
        },
    )
}

/// A voice note, as a speech-to-text server reads the fake's "audio".
async fn audio(Path(_): Path<String>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "audio/ogg")],
        "SPEECH:Can I come on Friday afternoon?",
    )
        .into_response()
}

pub(crate) fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Posts `body` to the connection's hook, signed with `secret` at `timestamp`.
async fn deliver_at(
    app: &TestApp,
    hook: &str,
    secret: &str,
    timestamp: i64,
    delivery: &str,
    body: &Value,
) -> reqwest::Response {
    let raw = serde_json::to_vec(body).unwrap();
    app.client
        .post(hook)
        .header("content-type", "application/json")
        .header("x-chatwoot-timestamp", timestamp.to_string())
        .header("x-chatwoot-signature", sign(secret, timestamp, &raw))
        .header("x-chatwoot-delivery", delivery)
        .body(raw)
        .send()
        .await
        .unwrap()
}

async fn deliver(app: &TestApp, hook: &str, secret: &str, body: &Value) -> Value {
    let delivery = Uuid::new_v4().to_string();
    let now = chrono::Utc::now().timestamp();
    json(
        deliver_at(app, hook, secret, now, &delivery, body).await,
        200,
    )
    .await
}

/// A customer's message in Chatwoot conversation `conversation`, as its webhook sends it.
fn customer_says(conversation: i64, status: &str, content: &str) -> Value {
    json!({
        "event": "message_created", "id": 9000 + conversation, "content": content,
        "message_type": "incoming", "private": false, "content_type": "text",
        "sender": { "id": 42, "name": "Ana Lima", "type": "contact" },
        "conversation": { "id": conversation, "status": status, "inbox_id": 7 },
        "account": { "id": 3 }, "inbox": { "id": 7 }, "attachments": []
    })
}

/// Connects `key`'s tenant to the fake; returns (hook URL, secret).
async fn connect(app: &TestApp, key: &str, chatwoot: &FakeChatwoot) -> (String, String) {
    let body = json!({
        "base_url": chatwoot.url(), "account_id": 3, "inbox_id": 7, "access_token": TOKEN
    });
    let made = json(
        app.send_json(Method::PUT, "/api/v1/chatwoot", key, &body)
            .await,
        200,
    )
    .await;
    let secret = made["webhook_secret"].as_str().unwrap().to_string();
    let url = made["webhook_url"].as_str().unwrap();
    let path = &url[url.find("/hooks/").unwrap()..];
    (app.url(path), secret)
}

async fn chatwoot_conversations(app: &TestApp, key: &str) -> Vec<Value> {
    let page = json(
        app.get("/api/v1/conversations?channel=chatwoot", key).await,
        200,
    )
    .await;
    page["items"].as_array().unwrap().clone()
}

fn last_message(detail: &Value) -> Value {
    detail["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone()
}

async fn transcript(app: &TestApp, key: &str, id: &str) -> Value {
    json(
        app.get(&format!("/api/v1/conversations/{id}"), key).await,
        200,
    )
    .await
}

/// Jobs of `kind` the tenant has.
async fn jobs_of(app: &TestApp, tenant: Uuid, kind: &str) -> u64 {
    job_rows::Entity::find()
        .filter(job_rows::Column::TenantId.eq(tenant))
        .filter(job_rows::Column::Kind.eq(kind))
        .count(&app.db)
        .await
        .unwrap()
}

/// Waits until every job of the tenant has finished.
async fn settle(app: &TestApp, tenant: Uuid) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let open = job_rows::Entity::find()
            .filter(job_rows::Column::TenantId.eq(tenant))
            .filter(job_rows::Column::State.is_in(["queued", "running"]))
            .count(&app.db)
            .await
            .unwrap();
        if open == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{open} jobs still open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_agents_answer_a_chatwoot_inbox_hand_over_to_people_and_hear_voice_notes() {
    for backend in backends().await {
        let fake = FakeLlm::start().await.unwrap();
        let chatwoot = FakeChatwoot::start().await;
        let app = spawn(
            backend,
            Some(&fake),
            &[
                ("FETCH_ALLOW_PRIVATE", "true"),
                ("JOB_BACKOFF_BASE_SECS", "0"),
                ("TRANSCRIBE_URL", fake.base_url.as_str()),
            ],
        )
        .await;
        let f = app.tenant("acme").await;
        let other = app.tenant("globex").await;

        // Connecting needs the bot's token; the answer carries the secret once.
        let body = json!({ "base_url": chatwoot.url(), "account_id": 3, "inbox_id": 7 });
        let refused = problem(
            app.send_json(Method::PUT, "/api/v1/chatwoot", &f.key, &body)
                .await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(refused["errors"][0]["field"], "access_token", "{refused}");
        problem(app.get("/api/v1/chatwoot", &f.key).await, 404, "not_found").await;
        let (hook, secret) = connect(&app, &f.key, &chatwoot).await;
        assert!(secret.starts_with("cwsec_") && secret.len() > 40);
        let shown = json(app.get("/api/v1/chatwoot", &f.key).await, 200).await;
        assert!(shown.get("webhook_secret").is_none(), "{shown}");
        assert_eq!(shown["token_hint"], "1234");
        assert!(shown["last_event_at"].is_null());

        // A customer writes: the webhook is answered at once, the agent's answer reaches
        // Chatwoot (after one 503 from it, retried).
        chatwoot.fail_next(&[503]);
        fake.route(text("support"));
        fake.chat(text("We open at nine."));
        let taken = deliver(
            &app,
            &hook,
            &secret,
            &customer_says(12, "pending", "When do you open?"),
        )
        .await;
        assert_eq!(taken["status"], "queued");
        let calls = chatwoot.wait_for(1).await;
        assert_eq!(
            calls[0],
            Call::Message {
                conversation: 12,
                content: "We open at nine.".into(),
                private: false
            }
        );
        let list = chatwoot_conversations(&app, &f.key).await;
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["channel"], "chatwoot");
        assert_eq!(list[0]["title"], "Ana Lima");
        let ours = list[0]["id"].as_str().unwrap().to_string();
        settle(&app, f.tenant_id).await;
        let shown = json(app.get("/api/v1/chatwoot", &f.key).await, 200).await;
        assert!(shown["last_event_at"].is_string(), "{shown}");

        // The bot's own answer comes back as an outgoing event: never answered. A team
        // member's answer in Chatwoot is kept in the transcript (a person owns the
        // conversation now), never answered either.
        let asked = fake.requests().len();
        let mut own = customer_says(12, "pending", "We open at nine.");
        own["message_type"] = json!("outgoing");
        own["sender"] = json!({ "id": 5, "name": "Bot", "type": "agent_bot" });
        assert_eq!(
            deliver(&app, &hook, &secret, &own).await["status"],
            "ignored"
        );
        let mut rita = customer_says(12, "open", "Rita here, we also open on Sundays.");
        rita["message_type"] = json!("outgoing");
        rita["sender"] = json!({ "id": 6, "name": "Rita", "type": "user" });
        rita["conversation"]["meta"] = json!({ "sender": { "id": 42, "name": "Ana Lima" } });
        assert_eq!(
            deliver(&app, &hook, &secret, &rita).await["status"],
            "queued"
        );
        let mut note = customer_says(12, "pending", "internal");
        note["private"] = json!(true);
        assert_eq!(
            deliver(&app, &hook, &secret, &note).await["status"],
            "ignored"
        );
        let mut elsewhere = customer_says(13, "pending", "Hello?");
        elsewhere["inbox"]["id"] = json!(8);
        assert_eq!(
            deliver(&app, &hook, &secret, &elsewhere).await["status"],
            "ignored"
        );
        settle(&app, f.tenant_id).await;
        assert_eq!(fake.requests().len(), asked);
        assert_eq!(chatwoot.calls().len(), 1);
        let detail = transcript(&app, &f.key, &ours).await;
        assert_eq!(detail["conversation"]["status"], "human");
        let last = last_message(&detail);
        assert_eq!(last["role"], "operator");
        assert_eq!(last["content"], "Rita here, we also open on Sundays.");

        // The agent hands over: the answer, then the conversation opens for people with a
        // private note saying why and where the transcript is.
        fake.route(text("support"));
        fake.chat(tool(
            "handoff_to_human",
            json!({ "reason": "wants a refund" }),
        ));
        deliver(
            &app,
            &hook,
            &secret,
            &customer_says(12, "pending", "I want my money back"),
        )
        .await;
        let calls = chatwoot.wait_for(4).await;
        assert!(
            matches!(&calls[1], Call::Message { private: false, .. }),
            "{calls:?}"
        );
        assert_eq!(
            calls[2],
            Call::Status {
                conversation: 12,
                status: "open".into()
            }
        );
        let Call::Message {
            content,
            private: true,
            ..
        } = &calls[3]
        else {
            panic!("a private note: {calls:?}");
        };
        assert!(content.contains("wants a refund"), "{content}");
        assert!(content.contains("I want my money back"), "{content}");
        assert!(
            content.contains(&format!("/conversations?open={ours}")),
            "{content}"
        );
        assert_eq!(
            transcript(&app, &f.key, &ours).await["conversation"]["status"],
            "waiting_human"
        );

        // A person owns it now (Chatwoot says `open`): the bot stays silent, the message is
        // kept in the transcript.
        settle(&app, f.tenant_id).await;
        let asked = fake.requests().len();
        deliver(
            &app,
            &hook,
            &secret,
            &customer_says(12, "open", "Hello, anyone?"),
        )
        .await;
        settle(&app, f.tenant_id).await;
        assert_eq!(fake.requests().len(), asked);
        assert_eq!(chatwoot.calls().len(), 4);
        let detail = transcript(&app, &f.key, &ours).await;
        assert_eq!(detail["conversation"]["status"], "human");
        let last = last_message(&detail);
        assert_eq!(
            (last["role"].as_str(), last["content"].as_str()),
            (Some("user"), Some("Hello, anyone?"))
        );

        // Back to pending in Chatwoot: the bot answers again, and hears a voice note (behind
        // ActiveStorage's redirect) through the transcription service.
        let back = json!({
            "event": "conversation_status_changed", "id": 12, "status": "pending", "inbox_id": 7,
            "account": { "id": 3 }, "meta": { "sender": { "id": 42, "name": "Ana Lima" } }
        });
        assert_eq!(
            deliver(&app, &hook, &secret, &back).await["status"],
            "queued"
        );
        settle(&app, f.tenant_id).await;
        assert_eq!(
            transcript(&app, &f.key, &ours).await["conversation"]["status"],
            "bot"
        );
        fake.route(text("scheduling"));
        fake.chat(text("Friday at 15:00 is free."));
        let mut voice = customer_says(12, "pending", "");
        voice["content"] = Value::Null;
        voice["attachments"] = json!([{
            "file_type": "audio",
            "data_url": format!("{}/rails/active_storage/blobs/redirect/abc", chatwoot.url())
        }]);
        deliver(&app, &hook, &secret, &voice).await;
        let calls = chatwoot.wait_for(5).await;
        assert_eq!(
            calls[4],
            Call::Message {
                conversation: 12,
                content: "Friday at 15:00 is free.".into(),
                private: false
            }
        );
        let heard = fake.transcriptions();
        assert_eq!(heard.len(), 1, "{heard:?}");
        assert_eq!(heard[0]["filename"], "abc.ogg");
        assert_eq!(heard[0]["model"], "whisper-1");
        let detail = transcript(&app, &f.key, &ours).await;
        let said: Vec<&str> = detail["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "user")
            .map(|m| m["content"].as_str().unwrap())
            .collect();
        assert_eq!(said.last(), Some(&"Can I come on Friday afternoon?"));

        // A person in the console takes it, replies and hands it back: Chatwoot follows.
        let path = |what: &str| format!("/api/v1/conversations/{ours}/{what}");
        json(
            app.send_json(Method::POST, &path("take-over"), &f.key, &json!({}))
                .await,
            200,
        )
        .await;
        let calls = chatwoot.wait_for(6).await;
        assert_eq!(
            calls[5],
            Call::Status {
                conversation: 12,
                status: "open".into()
            }
        );
        let reply = json!({ "content": "Hi Ana, Rita here: Friday at 15:00 is yours." });
        json(
            app.send_json(Method::POST, &path("replies"), &f.key, &reply)
                .await,
            201,
        )
        .await;
        let calls = chatwoot.wait_for(7).await;
        assert_eq!(
            calls[6],
            Call::Message {
                conversation: 12,
                content: "Hi Ana, Rita here: Friday at 15:00 is yours.".into(),
                private: false
            }
        );
        json(
            app.send_json(Method::POST, &path("hand-back"), &f.key, &json!({}))
                .await,
            200,
        )
        .await;
        let calls = chatwoot.wait_for(8).await;
        assert_eq!(
            calls[7],
            Call::Status {
                conversation: 12,
                status: "pending".into()
            }
        );

        // A token Chatwoot refuses ends the call at once and shows on the connection; a new
        // token clears it.
        let body = json!({
            "base_url": chatwoot.url(), "account_id": 3, "inbox_id": 7,
            "access_token": "revoked-token-0000"
        });
        json(
            app.send_json(Method::PUT, "/api/v1/chatwoot", &f.key, &body)
                .await,
            200,
        )
        .await;
        fake.route(text("support"));
        fake.chat(text("Anything else?"));
        deliver(
            &app,
            &hook,
            &secret,
            &customer_says(12, "pending", "Thanks"),
        )
        .await;
        settle(&app, f.tenant_id).await;
        let shown = json(app.get("/api/v1/chatwoot", &f.key).await, 200).await;
        let error = shown["last_error"].as_str().unwrap_or_default();
        assert!(error.contains("401"), "{shown}");
        assert_eq!(shown["token_hint"], "0000");
        let dead = job_rows::Entity::find()
            .filter(job_rows::Column::TenantId.eq(f.tenant_id))
            .filter(job_rows::Column::Kind.eq("chatwoot.send"))
            .filter(job_rows::Column::State.eq("dead"))
            .all(&app.db)
            .await
            .unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].attempts, 1, "a refused token is not retried");
        let body = json!({
            "base_url": chatwoot.url(), "account_id": 3, "inbox_id": 7, "access_token": TOKEN
        });
        let shown = json(
            app.send_json(Method::PUT, "/api/v1/chatwoot", &f.key, &body)
                .await,
            200,
        )
        .await;
        assert!(shown["last_error"].is_null(), "{shown}");

        // Another tenant sees none of it, and cannot reach the conversation.
        problem(
            app.get("/api/v1/chatwoot", &other.key).await,
            404,
            "not_found",
        )
        .await;
        assert!(chatwoot_conversations(&app, &other.key).await.is_empty());
        problem(
            app.get(&format!("/api/v1/conversations/{ours}"), &other.key)
                .await,
            404,
            "not_found",
        )
        .await;
        let actions = app.audit_actions(&f.key).await;
        for action in [
            "chatwoot.connect",
            "chatwoot.update",
            "conversation.take_over",
            "conversation.hand_back",
        ] {
            assert!(actions.iter().any(|a| a == action), "{action}: {actions:?}");
        }
    }
}

/// `webhook_rejections_total{reason}` for Chatwoot, from the process's metrics.
fn rejections(reason: &str) -> u64 {
    let text = server::http::metrics::handle().render();
    text.lines()
        .filter(|l| l.starts_with("webhook_rejections_total{"))
        .filter(|l| {
            l.contains("source=\"chatwoot\"") && l.contains(&format!("reason=\"{reason}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The counts of the reasons the forged-webhook test provokes, in this order.
fn rejection_counts() -> Vec<u64> {
    [
        "unknown_connection",
        "missing_signature",
        "bad_signature",
        "stale_timestamp",
        "replayed",
        "malformed",
    ]
    .iter()
    .map(|r| rejections(r))
    .collect()
}

#[tokio::test]
async fn forged_stale_repeated_and_unknown_webhooks_are_refused_counted_and_cost_nothing() {
    server::http::metrics::handle();
    for backend in backends().await {
        let fake = FakeLlm::start().await.unwrap();
        let chatwoot = FakeChatwoot::start().await;
        let app = spawn(backend, Some(&fake), &[("FETCH_ALLOW_PRIVATE", "true")]).await;
        let f = app.tenant("acme").await;
        let (hook, secret) = connect(&app, &f.key, &chatwoot).await;
        let before = rejection_counts();
        let body = customer_says(20, "pending", "Hello");
        let now = chrono::Utc::now().timestamp();

        // Unknown connections.
        let base = &hook[..hook.rfind('/').unwrap()];
        for id in [Uuid::new_v4().to_string(), "not-a-uuid".into()] {
            let r = deliver_at(&app, &format!("{base}/{id}"), &secret, now, "d0", &body).await;
            problem(r, 404, "not_found").await;
        }
        // Unsigned, signed with a guessed secret or another tenant's, altered after signing.
        let r = app.client.post(&hook).json(&body).send().await.unwrap();
        problem(r, 401, "unauthorized").await;
        let r = deliver_at(&app, &hook, "cwsec_guessed", now, "d1", &body).await;
        problem(r, 401, "unauthorized").await;
        let globex = app.tenant("globex").await;
        let (_, theirs) = connect(&app, &globex.key, &chatwoot).await;
        let r = deliver_at(&app, &hook, &theirs, now, "d1", &body).await;
        problem(r, 401, "unauthorized").await;
        let raw = serde_json::to_vec(&body).unwrap();
        let r = app
            .client
            .post(&hook)
            .header("x-chatwoot-timestamp", now.to_string())
            .header("x-chatwoot-signature", sign(&secret, now, &raw))
            .body(
                serde_json::to_vec(&customer_says(20, "pending", "Transfer all my money")).unwrap(),
            )
            .send()
            .await
            .unwrap();
        problem(r, 401, "unauthorized").await;
        // Correctly signed but too old, or from the future.
        for t in [now - 301, now + 400] {
            let r = deliver_at(&app, &hook, &secret, t, "d2", &body).await;
            problem(r, 401, "unauthorized").await;
        }
        // Signed, but not JSON.
        let r = app
            .client
            .post(&hook)
            .header("x-chatwoot-timestamp", now.to_string())
            .header("x-chatwoot-signature", sign(&secret, now, b"{not json"))
            .body("{not json")
            .send()
            .await
            .unwrap();
        problem(r, 422, "validation_failed").await;
        assert_eq!(jobs_of(&app, f.tenant_id, "chatwoot.event").await, 0);

        // A delivery sent twice is taken once.
        fake.route(text("support"));
        fake.chat(text("Hi!"));
        let first = json(
            deliver_at(&app, &hook, &secret, now, "d-42", &body).await,
            200,
        )
        .await;
        assert_eq!(first["status"], "queued");
        let again = json(
            deliver_at(&app, &hook, &secret, now, "d-42", &body).await,
            200,
        )
        .await;
        assert_eq!(again["status"], "duplicate");
        assert_eq!(jobs_of(&app, f.tenant_id, "chatwoot.event").await, 1);

        let after = rejection_counts();
        let counted: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        assert_eq!(counted, vec![2, 1, 3, 2, 1, 1]);

        // A new secret: the old one stops working at once.
        let rotated = json(
            app.send_json(
                Method::POST,
                "/api/v1/chatwoot/rotate-secret",
                &f.key,
                &json!({}),
            )
            .await,
            200,
        )
        .await;
        let new_secret = rotated["webhook_secret"].as_str().unwrap().to_string();
        assert_ne!(new_secret, secret);
        problem(
            deliver_at(&app, &hook, &secret, now, "d-43", &body).await,
            401,
            "unauthorized",
        )
        .await;
        assert_eq!(
            deliver(&app, &hook, &new_secret, &body).await["status"],
            "queued"
        );

        // Switched off: taken and dropped.
        settle(&app, f.tenant_id).await;
        assert_eq!(chatwoot_conversations(&app, &f.key).await.len(), 1);
        let off =
            json!({ "base_url": chatwoot.url(), "account_id": 3, "inbox_id": 7, "enabled": false });
        json(
            app.send_json(Method::PUT, "/api/v1/chatwoot", &f.key, &off)
                .await,
            200,
        )
        .await;
        assert_eq!(
            deliver(&app, &hook, &new_secret, &body).await["status"],
            "ignored"
        );
        assert_eq!(jobs_of(&app, f.tenant_id, "chatwoot.event").await, 2);

        // A read-only key reads the connection but cannot change it; disconnecting keeps the
        // conversations and makes the hook unknown.
        let viewer_key = app.api_key(&f.key, &["integrations:read"]).await;
        json(app.get("/api/v1/chatwoot", &viewer_key).await, 200).await;
        problem(
            app.send_json(Method::DELETE, "/api/v1/chatwoot", &viewer_key, &json!({}))
                .await,
            403,
            "forbidden",
        )
        .await;
        settle(&app, f.tenant_id).await;
        let r = app
            .send_json(Method::DELETE, "/api/v1/chatwoot", &f.key, &json!({}))
            .await;
        assert_eq!(r.status(), 204);
        problem(
            deliver_at(&app, &hook, &new_secret, now, "d-44", &body).await,
            404,
            "not_found",
        )
        .await;
        assert_eq!(chatwoot_conversations(&app, &f.key).await.len(), 1);
    }
}

#[tokio::test]
async fn a_burst_of_webhooks_is_acknowledged_before_the_turns_run() {
    for backend in backends().await {
        let fake = FakeLlm::start().await.unwrap();
        // Every LLM call takes 50 ms: the acknowledgements must not wait for them.
        fake.set_delay(Duration::from_millis(50));
        let chatwoot = FakeChatwoot::start().await;
        let app = spawn(backend, Some(&fake), &[("FETCH_ALLOW_PRIVATE", "true")]).await;
        let f = app.tenant("acme").await;
        let (hook, secret) = connect(&app, &f.key, &chatwoot).await;
        // 200 webhooks at 200 a second, 40 conversations.
        let app = Arc::new(app);
        let mut sent = Vec::new();
        let started = Instant::now();
        for i in 0..200i64 {
            let (app, hook, secret) = (app.clone(), hook.clone(), secret.clone());
            sent.push(tokio::spawn(async move {
                let body = customer_says(100 + i % 40, "pending", &format!("Question {i}"));
                let r = deliver_at(
                    &app,
                    &hook,
                    &secret,
                    chrono::Utc::now().timestamp(),
                    &format!("burst-{i}"),
                    &body,
                )
                .await;
                r.status()
            }));
            tokio::time::sleep_until((started + Duration::from_millis(5 * (i as u64 + 1))).into())
                .await;
        }
        // (`server bench chatwoot` measures how fast.)
        for s in sent {
            assert_eq!(s.await.unwrap(), 200);
        }
        // 200 turns of two 50 ms calls, 8 at a time, take at least 2.5 s; the webhooks were
        // all sent in 1 s and answered without waiting for them.
        assert!(chatwoot.calls().len() < 200);
        assert_eq!(jobs_of(&app, f.tenant_id, "chatwoot.event").await, 200);
        // Answered after the acknowledgements, every one of them.
        let calls = chatwoot.wait_for(200).await;
        assert_eq!(calls.len(), 200);
    }
}
