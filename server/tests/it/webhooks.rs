//! Outgoing webhooks end to end, on SQLite and on PostgreSQL + Redis: the platform's events
//! reach a real HTTP receiver on loopback, signed, once per subscribed endpoint; failures are
//! retried, then failed and replayable; URLs into the platform's own network are refused;
//! another tenant's endpoints and deliveries stay invisible.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};

use server::llm::fake::{text, tool, FakeLlm};

use crate::conversations::{open_every_day, say, spawn, start, tomorrow_at};
use crate::helpers::*;
use crate::knowledge::{create_kb, file, settled, upload};

/// One POST the receiver got.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn event(&self) -> String {
        self.json()["type"].as_str().unwrap().to_string()
    }
}

/// A webhook receiver on loopback: records every POST to `/{name}` and answers with the
/// statuses scripted for that name (200 once they run out).
#[derive(Clone, Default)]
struct Receiver {
    addr: Option<SocketAddr>,
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<HashMap<String, VecDeque<u16>>>>,
    /// Names that answer only after 3 seconds.
    slow: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let mut receiver = Receiver::default();
        let app = Router::new()
            .route("/{name}", post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        receiver.addr = Some(listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr.unwrap())
    }

    fn answer(&self, name: &str, statuses: &[u16]) {
        self.script
            .lock()
            .unwrap()
            .insert(name.to_string(), statuses.iter().copied().collect());
    }

    fn slow_down(&self, name: &str) {
        self.slow.lock().unwrap().push(name.to_string());
    }

    fn at(&self, name: &str) -> Vec<Received> {
        let path = format!("/{name}");
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// What `name` received once it holds `n` requests (waits up to 30 s).
    async fn wait_for(&self, name: &str, n: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.at(name);
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} received {} of {n}: {:?}",
                got.len(),
                got.iter().map(Received::event).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    receiver.received.lock().unwrap().push(Received {
        path: format!("/{name}"),
        headers,
        body,
    });
    if receiver.slow.lock().unwrap().contains(&name) {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let status = receiver
        .script
        .lock()
        .unwrap()
        .get_mut(&name)
        .and_then(VecDeque::pop_front)
        .unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}

/// Checks the request the way docs/webhooks.md tells receivers to.
fn verify(r: &Received, secret: &str) {
    let timestamp = r.header("x-webhook-timestamp");
    let age = chrono::Utc::now().timestamp() - timestamp.parse::<i64>().unwrap();
    assert!(
        (0..300).contains(&age),
        "timestamp {timestamp} is {age} s old"
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&r.body);
    let expected = format!(
        "sha256={}",
        server::auth::api_key::hex(&mac.finalize().into_bytes())
    );
    assert_eq!(r.header("x-webhook-signature"), expected);
    let body = r.json();
    assert_eq!(r.header("x-webhook-id"), body["id"].as_str().unwrap());
    assert_eq!(r.header("x-webhook-event"), body["type"].as_str().unwrap());
    assert_eq!(r.header("content-type"), "application/json");
}

async fn create(app: &TestApp, key: &str, url: &str, events: &[&str]) -> (String, String) {
    let made = json(
        app.send_json(
            Method::POST,
            "/api/v1/webhooks",
            key,
            &json!({ "url": url, "events": events, "description": "test receiver" }),
        )
        .await,
        201,
    )
    .await;
    (
        made["id"].as_str().unwrap().to_string(),
        made["secret"].as_str().unwrap().to_string(),
    )
}

/// Turns the endpoint off, keeping its other settings.
async fn disable(app: &TestApp, key: &str, webhook: &str) {
    let path = format!("/api/v1/webhooks/{webhook}");
    let mut settings = json(app.get(&path, key).await, 200).await;
    settings["enabled"] = json!(false);
    json(app.send_json(Method::PUT, &path, key, &settings).await, 200).await;
}

/// Queues a test event to the endpoint; returns its delivery.
async fn send_test(app: &TestApp, key: &str, webhook: &str) -> Value {
    let path = format!("/api/v1/webhooks/{webhook}/test");
    json(
        app.send_json(Method::POST, &path, key, &json!({})).await,
        202,
    )
    .await
}

/// How many `webhook.deliver` jobs are dead letters.
async fn dead_deliveries(app: &TestApp, key: &str) -> usize {
    let dead = json(
        app.get("/api/v1/jobs?state=dead&kind=webhook.deliver", key)
            .await,
        200,
    )
    .await;
    dead["items"].as_array().unwrap().len()
}

async fn deliveries(app: &TestApp, key: &str, webhook: &str) -> Vec<Value> {
    json(
        app.get(&format!("/api/v1/webhooks/{webhook}/deliveries"), key)
            .await,
        200,
    )
    .await["items"]
        .as_array()
        .unwrap()
        .clone()
}

/// The deliveries once none is pending (waits up to 30 s).
async fn settled_deliveries(app: &TestApp, key: &str, webhook: &str, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let list = deliveries(app, key, webhook).await;
        if list.len() >= n && list.iter().all(|d| d["state"] != "pending") {
            return list;
        }
        assert!(tokio::time::Instant::now() < deadline, "{list:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const ALL: [&str; 5] = [
    "conversation.created",
    "message.created",
    "handoff.requested",
    "booking.created",
    "document.ingested",
];

#[tokio::test]
async fn events_reach_the_endpoints_that_subscribe_signed_and_once() {
    for backend in backends().await {
        let fake = FakeLlm::start().await.unwrap();
        let hooks = Receiver::start().await;
        let app = spawn(
            backend,
            Some(&fake),
            &[
                ("FETCH_ALLOW_PRIVATE", "true"),
                ("JOB_BACKOFF_BASE_SECS", "0"),
            ],
        )
        .await;
        let f = app.tenant("acme").await;
        let other = app.tenant("globex").await;
        open_every_day(&app, &f).await;
        let (_, all_secret) = create(&app, &f.key, &hooks.url("all"), &ALL).await;
        create(&app, &f.key, &hooks.url("handoffs"), &["handoff.requested"]).await;
        let (off, _) = create(&app, &f.key, &hooks.url("off"), &ALL).await;
        disable(&app, &f.key, &off).await;

        // A conversation with a booking, then a handoff.
        fake.route(text("scheduling"));
        fake.chat(tool(
            "create_booking",
            json!({"start": tomorrow_at(10), "name": "Rui", "email": "rui@example.com"}),
        ));
        fake.chat(text("You are booked."));
        let c = start(&app, &f.key).await;
        say(&app, &f.key, &c, "Book me tomorrow at ten").await;
        fake.route(text("support"));
        fake.chat(tool(
            "handoff_to_human",
            json!({"reason": "wants the manager"}),
        ));
        let turn = say(&app, &f.key, &c, "Let me talk to the manager").await;
        assert_eq!(turn["conversation"]["status"], "waiting_human");
        // A document becomes searchable.
        let kb = create_kb(&app, &f.key, json!({ "name": "Handbook" })).await;
        let kb = kb["id"].as_str().unwrap();
        let form = reqwest::multipart::Form::new().part(
            "files",
            file("hours.md", "text/markdown", "We open at nine."),
        );
        let docs = json(upload(&app, &f.key, kb, form).await, 202).await;
        let doc = docs[0]["id"].as_str().unwrap();
        settled(&app, &f.key, kb, doc).await;
        // Another tenant's activity reaches none of acme's endpoints.
        let theirs = start(&app, &other.key).await;
        say(&app, &other.key, &theirs, "Hello").await;

        // 1 conversation, 4 messages (2 turns), 1 booking, 1 handoff, 1 document.
        let got = hooks.wait_for("all", 8).await;
        let mut kinds: Vec<String> = got.iter().map(Received::event).collect();
        kinds.sort();
        assert_eq!(
            kinds,
            [
                "booking.created",
                "conversation.created",
                "document.ingested",
                "handoff.requested",
                "message.created",
                "message.created",
                "message.created",
                "message.created",
            ]
        );
        for r in &got {
            verify(r, &all_secret);
            assert_eq!(r.json()["tenant_id"], f.tenant_id.to_string());
        }
        let body = |kind: &str| got.iter().find(|r| r.event() == kind).unwrap().json();
        assert_eq!(body("conversation.created")["data"]["id"], c.as_str());
        assert_eq!(
            body("booking.created")["data"]["booking"]["email"],
            "rui@example.com"
        );
        assert_eq!(
            body("handoff.requested")["data"]["reason"],
            "wants the manager"
        );
        assert_eq!(body("document.ingested")["data"]["document"]["id"], doc);
        let messages: Vec<(String, String)> = got
            .iter()
            .filter(|r| r.event() == "message.created")
            .map(|r| {
                let m = &r.json()["data"]["message"];
                (
                    m["role"].as_str().unwrap().into(),
                    m["content"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert!(messages.contains(&("user".into(), "Book me tomorrow at ten".into())));
        assert!(messages.contains(&("assistant".into(), "You are booked.".into())));
        // Event ids are unique; the same event reaches each endpoint with its own id.
        let mut ids: Vec<&str> = got.iter().map(|r| r.header("x-webhook-id")).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 8);

        let handoffs = hooks.wait_for("handoffs", 1).await;
        assert_eq!(handoffs[0].event(), "handoff.requested");
        // Nothing more arrives: not twice, not to the disabled endpoint, nothing of globex.
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(hooks.at("all").len(), 8);
        assert_eq!(hooks.at("handoffs").len(), 1);
        assert!(hooks.at("off").is_empty());
        let everything = hooks.received.lock().unwrap().clone();
        assert!(everything
            .iter()
            .all(|r| !String::from_utf8_lossy(&r.body).contains(&other.tenant_id.to_string())));

        // The console's log says what happened.
        let (all_id, _) = {
            let list = json(app.get("/api/v1/webhooks", &f.key).await, 200).await;
            let all = list
                .as_array()
                .unwrap()
                .iter()
                .find(|w| w["url"] == hooks.url("all"))
                .unwrap()
                .clone();
            (all["id"].as_str().unwrap().to_string(), all)
        };
        let log = settled_deliveries(&app, &f.key, &all_id, 8).await;
        assert_eq!(log.len(), 8);
        assert!(log.iter().all(|d| d["state"] == "delivered"
            && d["attempts"] == 1
            && d["response_status"] == 200));
        // globex sees none of it.
        problem(
            app.get(&format!("/api/v1/webhooks/{all_id}/deliveries"), &other.key)
                .await,
            404,
            "not_found",
        )
        .await;
        assert_eq!(
            json(app.get("/api/v1/webhooks", &other.key).await, 200).await,
            json!([])
        );
    }
}

#[tokio::test]
async fn failing_endpoints_are_retried_then_failed_and_replayed_with_the_same_event_id() {
    for backend in backends().await {
        let hooks = Receiver::start().await;
        let app = TestApp::spawn_with(
            backend,
            &[
                ("FETCH_ALLOW_PRIVATE", "true"),
                ("JOB_POLL_MS", "50"),
                ("JOB_BACKOFF_BASE_SECS", "0"),
            ],
        )
        .await;
        let f = app.tenant("acme").await;
        let (flaky, secret) = create(&app, &f.key, &hooks.url("flaky"), &["message.created"]).await;
        let (down, _) = create(&app, &f.key, &hooks.url("down"), &["message.created"]).await;

        // Two failures, then success: one delivery, three attempts.
        hooks.answer("flaky", &[500, 503]);
        let sent = send_test(&app, &f.key, &flaky).await;
        assert_eq!(sent["state"], "pending");
        assert_eq!(sent["event"], "webhook.test");
        let got = hooks.wait_for("flaky", 3).await;
        for r in &got {
            verify(r, &secret);
            assert_eq!(r.header("x-webhook-id"), got[0].header("x-webhook-id"));
        }
        let log = settled_deliveries(&app, &f.key, &flaky, 1).await;
        assert_eq!(log[0]["state"], "delivered", "{log:#?}");
        assert_eq!(log[0]["attempts"], 3);

        // Down for good: every attempt fails, then the delivery is failed and its job dead.
        hooks.answer("down", &[500; 40]);
        send_test(&app, &f.key, &down).await;
        let log = settled_deliveries(&app, &f.key, &down, 1).await;
        let failed = &log[0];
        assert_eq!(failed["state"], "failed", "{failed:#}");
        assert_eq!(failed["attempts"], 12);
        assert_eq!(failed["response_status"], 500);
        assert!(
            failed["last_error"].as_str().unwrap().contains("500"),
            "{failed}"
        );
        assert_eq!(hooks.at("down").len(), 12);
        assert_eq!(dead_deliveries(&app, &f.key).await, 1);

        // Replayed once it is back: a new delivery of the same event.
        hooks.answer("down", &[]);
        let id = failed["id"].as_str().unwrap();
        let replay = json(
            app.send_json(
                Method::POST,
                &format!("/api/v1/webhooks/{down}/deliveries/{id}/replay"),
                &f.key,
                &json!({}),
            )
            .await,
            202,
        )
        .await;
        assert_eq!(replay["replay_of"], id);
        assert_eq!(replay["event_id"], failed["event_id"]);
        let got = hooks.wait_for("down", 13).await;
        assert_eq!(
            got[12].header("x-webhook-id"),
            failed["event_id"].as_str().unwrap()
        );
        let log = settled_deliveries(&app, &f.key, &down, 2).await;
        assert_eq!(log[0]["state"], "delivered");
        assert_eq!(log[1]["state"], "failed");
        // Filters and pages.
        let page = json(
            app.get(
                &format!("/api/v1/webhooks/{down}/deliveries?state=failed&limit=1"),
                &f.key,
            )
            .await,
            200,
        )
        .await;
        assert_eq!(page["items"].as_array().unwrap().len(), 1);
        assert!(page["next_cursor"].is_null());

        // The daily sweep drops finished deliveries after 30 days.
        {
            use sea_orm::sea_query::Expr;
            use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
            use server::store::webhook_deliveries::{Column, Entity};
            Entity::update_many()
                .col_expr(
                    Column::CreatedAt,
                    Expr::value(chrono::Utc::now() - chrono::Duration::days(31)),
                )
                .filter(Column::Id.eq(uuid::Uuid::parse_str(id).unwrap()))
                .exec(&app.db)
                .await
                .unwrap();
        }
        let swept = server::integrations::webhooks::sweep::sweep(&app.db)
            .await
            .unwrap();
        assert_eq!(swept, 1);
        let log = deliveries(&app, &f.key, &down).await;
        assert_eq!(log.len(), 1);
        assert_eq!(log[0]["replay_of"], id);

        // Disabled on purpose: the delivery fails at once, with no request and no dead letter.
        disable(&app, &f.key, &down).await;
        send_test(&app, &f.key, &down).await;
        let log = settled_deliveries(&app, &f.key, &down, 2).await;
        assert_eq!(log[0]["state"], "failed");
        assert_eq!(log[0]["last_error"], "the endpoint is disabled");
        assert_eq!(hooks.at("down").len(), 13);
        assert_eq!(dead_deliveries(&app, &f.key).await, 1);

        // A pending delivery cannot be replayed; a deleted endpoint takes its log with it.
        hooks.slow_down("flaky");
        let pending = send_test(&app, &f.key, &flaky).await;
        let r = app
            .send_json(
                Method::POST,
                &format!(
                    "/api/v1/webhooks/{flaky}/deliveries/{}/replay",
                    pending["id"].as_str().unwrap()
                ),
                &f.key,
                &json!({}),
            )
            .await;
        problem(r, 409, "conflict").await;
        let r = app
            .send_json(
                Method::DELETE,
                &format!("/api/v1/webhooks/{flaky}"),
                &f.key,
                &json!({}),
            )
            .await;
        assert_eq!(r.status(), 204);
        problem(
            app.get(&format!("/api/v1/webhooks/{flaky}/deliveries"), &f.key)
                .await,
            404,
            "not_found",
        )
        .await;
        let audit = json(app.get("/api/v1/audit-log?limit=50", &f.key).await, 200).await;
        for action in ["webhook.create", "webhook.replay", "webhook.delete"] {
            assert!(audit.to_string().contains(action), "{action}");
        }
    }
}

#[tokio::test]
async fn bad_and_internal_urls_bad_events_and_missing_scopes_are_refused() {
    for backend in backends().await {
        let app = TestApp::spawn(backend).await;
        let f = app.tenant("acme").await;
        let refused = |url: &'static str, events: Value| {
            let app = &app;
            let key = f.key.clone();
            async move {
                let r = app
                    .send_json(
                        Method::POST,
                        "/api/v1/webhooks",
                        &key,
                        &json!({ "url": url, "events": events }),
                    )
                    .await;
                problem(r, 422, "validation_failed").await
            }
        };
        for url in [
            "http://hooks.example.com/in",
            "https://127.0.0.1/in",
            "https://localhost:8443/in",
            "https://169.254.169.254/latest",
            "https://[::1]/in",
            "https://10.1.2.3/in",
            "ftp://hooks.example.com",
            "not a url",
        ] {
            let p = refused(url, json!(["message.created"])).await;
            assert!(p.to_string().contains("url"), "{url}: {p}");
        }
        for events in [
            json!([]),
            json!(["webhook.test"]),
            json!(["message.created", "message.created"]),
            json!(["no.such.event"]),
        ] {
            let r = app
                .send_json(
                    Method::POST,
                    "/api/v1/webhooks",
                    &f.key,
                    &json!({ "url": "https://hooks.example.com/in", "events": events }),
                )
                .await;
            assert_eq!(r.status(), 422, "{events}");
        }
        // A key that may only read integrations can list but not create.
        let reader = app.api_key(&f.key, &["integrations:read"]).await;
        json(app.get("/api/v1/webhooks", &reader).await, 200).await;
        let r = app
            .send_json(
                Method::POST,
                "/api/v1/webhooks",
                &reader,
                &json!({ "url": "https://hooks.example.com/in", "events": ["message.created"] }),
            )
            .await;
        problem(r, 403, "forbidden").await;
        // At most 20 endpoints.
        for i in 0..20 {
            create(
                &app,
                &f.key,
                &format!("https://hooks.example.com/{i}"),
                &["message.created"],
            )
            .await;
        }
        let r = app
            .send_json(
                Method::POST,
                "/api/v1/webhooks",
                &f.key,
                &json!({ "url": "https://hooks.example.com/21", "events": ["message.created"] }),
            )
            .await;
        problem(r, 409, "conflict").await;
    }
}
