//! Tenants' own email providers end to end, on SQLite and on PostgreSQL + Redis: SendGrid and
//! Mailgun fakes on loopback speak their real APIs (status codes included); the `email.send`
//! job goes through the tenant's provider (no SMTP relay configured at all), the agents'
//! `send_email` tool is offered once the tenant has one; 4xx ends a job at once, 5xx is
//! retried; the key is never returned; another tenant is untouched.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use axum::Router;
use reqwest::Method;
use sea_orm::EntityTrait;
use serde_json::{json, Value};
use uuid::Uuid;

use server::llm::fake::{text, tool, FakeLlm, CHAT_MODEL};

use crate::email::{converse, finished};
use crate::helpers::*;

#[derive(Clone, Debug)]
struct Request {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Request {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }

    fn form(&self) -> HashMap<String, String> {
        let query = String::from_utf8_lossy(&self.body);
        reqwest::Url::parse(&format!("http://form.test/?{query}"))
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect()
    }
}

/// SendGrid (`POST /v3/mail/send`, 202) and Mailgun (`POST /v3/{domain}/messages`, 200) on one
/// loopback server; statuses can be scripted per provider.
#[derive(Clone, Default)]
struct FakeProviders {
    addr: Option<SocketAddr>,
    requests: Arc<Mutex<Vec<Request>>>,
    script: Arc<Mutex<HashMap<&'static str, VecDeque<u16>>>>,
}

impl FakeProviders {
    async fn start() -> FakeProviders {
        let mut fake = FakeProviders::default();
        let app = Router::new()
            .route("/v3/mail/send", post(answer))
            .route("/v3/{domain}/messages", post(answer))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        fake.addr = Some(listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr.unwrap())
    }

    fn answer(&self, provider: &'static str, statuses: &[u16]) {
        self.script
            .lock()
            .unwrap()
            .insert(provider, statuses.iter().copied().collect());
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

async fn answer(
    State(fake): State<FakeProviders>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let path = uri.path().to_string();
    let provider = if path == "/v3/mail/send" {
        "sendgrid"
    } else {
        "mailgun"
    };
    fake.requests.lock().unwrap().push(Request {
        path,
        headers,
        body,
    });
    let scripted = fake
        .script
        .lock()
        .unwrap()
        .get_mut(provider)
        .and_then(VecDeque::pop_front);
    match (provider, scripted) {
        (_, Some(status)) => (
            StatusCode::from_u16(status).unwrap(),
            json!({"errors": [{"message": "scripted failure"}]}).to_string(),
        ),
        ("sendgrid", None) => (StatusCode::ACCEPTED, String::new()),
        _ => (
            StatusCode::OK,
            json!({"id": "<20261206.1@mg.acme.test>", "message": "Queued. Thank you."}).to_string(),
        ),
    }
}

async fn put_settings(app: &TestApp, key: &str, body: Value) -> reqwest::Response {
    app.send_json(Method::PUT, "/api/v1/email-settings", key, &body)
        .await
}

/// Queues a test message; returns its job once finished.
async fn test_message(app: &TestApp, key: &str) -> server::store::jobs::Model {
    let job = json(
        app.send_json(
            Method::POST,
            "/api/v1/email-settings/test",
            key,
            &json!({ "to": "rui@example.com" }),
        )
        .await,
        202,
    )
    .await;
    let id: Uuid = job["id"].as_str().unwrap().parse().unwrap();
    finished(app, id).await
}

#[tokio::test]
async fn tenants_send_through_their_own_sendgrid_or_mailgun() {
    for backend in backends().await {
        let providers = FakeProviders::start().await;
        let fake = FakeLlm::start().await.unwrap();
        let llm = fake.config();
        let url = providers.url();
        let mut pairs: Vec<(&str, &str)> = vec![
            ("JOB_POLL_MS", "50"),
            ("JOB_BACKOFF_BASE_SECS", "0"),
            ("SENDGRID_API_URL", url.as_str()),
            ("MAILGUN_API_URL", url.as_str()),
        ];
        pairs.extend(llm.iter().map(|(k, v)| (*k, v.as_str())));
        let app = TestApp::spawn_with(backend, &pairs).await;
        let f = app.tenant("acme").await;
        let other = app.tenant("globex").await;

        // No relay and no provider: nothing can be sent, and the tool is not offered.
        let settings = json(app.get("/api/v1/email-settings", &f.key).await, 200).await;
        assert_eq!(settings["provider"], "platform");
        assert_eq!(settings["available"], false);
        let r = app
            .send_json(
                Method::POST,
                "/api/v1/email-settings/test",
                &f.key,
                &json!({ "to": "rui@example.com" }),
            )
            .await;
        problem(r, 409, "conflict").await;
        fake.route(text("support"));
        fake.chat(text("Hello."));
        converse(&app, &f.key, "Hi").await;
        assert!(!fake.requests_for(CHAT_MODEL)[0]["tools"]
            .to_string()
            .contains("send_email"));

        // Bad settings are refused with the field.
        for (body, field) in [
            (
                json!({ "provider": "sendgrid", "from": "desk@acme.test" }),
                "api_key",
            ),
            (
                json!({ "provider": "sendgrid", "from": "not an address", "api_key": "SG.k-123456789" }),
                "from",
            ),
            (
                json!({ "provider": "mailgun", "from": "desk@acme.test", "api_key": "key-123456789" }),
                "mailgun_domain",
            ),
            (
                json!({ "provider": "mailgun", "from": "desk@acme.test", "api_key": "key-1", "mailgun_domain": "no_dots" }),
                "mailgun_domain",
            ),
            (
                json!({ "provider": "platform", "from": "desk@acme.test", "api_key": "k-123456789" }),
                "provider",
            ),
        ] {
            let p = problem(
                put_settings(&app, &f.key, body.clone()).await,
                422,
                "validation_failed",
            )
            .await;
            assert!(p.to_string().contains(field), "{body}: {p}");
        }

        // SendGrid.
        let saved = json(
            put_settings(
                &app,
                &f.key,
                json!({ "provider": "sendgrid", "from": "Acme Desk <desk@acme.test>",
                        "api_key": "SG.secret-key-123456" }),
            )
            .await,
            200,
        )
        .await;
        assert_eq!(saved["provider"], "sendgrid");
        assert_eq!(saved["api_key_hint"], "3456");
        assert!(!saved.to_string().contains("secret-key"));
        let job = test_message(&app, &f.key).await;
        assert_eq!(job.state, "succeeded", "{:?}", job.last_error);
        let sent = providers.requests().pop().unwrap();
        assert_eq!(sent.path, "/v3/mail/send");
        assert_eq!(sent.header("authorization"), "Bearer SG.secret-key-123456");
        let body: Value = serde_json::from_slice(&sent.body).unwrap();
        assert_eq!(
            body["personalizations"][0]["to"][0]["email"],
            "rui@example.com"
        );
        assert_eq!(
            body["from"],
            json!({ "email": "desk@acme.test", "name": "Acme Desk" })
        );
        assert_eq!(body["subject"], "Test message from your agents");
        assert_eq!(body["content"][0]["type"], "text/plain");

        // The agents may now send email, through SendGrid.
        fake.route(text("support"));
        fake.chat(tool(
            "send_email",
            json!({"to": "rui@example.com", "subject": "Your summary", "body": "We open at nine."}),
        ));
        fake.chat(text("Sent."));
        let before = fake.requests_for(CHAT_MODEL).len();
        let turn = converse(&app, &f.key, "Email me a summary: rui@example.com").await;
        assert!(fake.requests_for(CHAT_MODEL)[before]["tools"]
            .to_string()
            .contains("send_email"));
        let call = &turn["steps"][1]["detail"]["tool_calls"][0];
        let result: Value = serde_json::from_str(call["result"].as_str().unwrap()).unwrap();
        let id: Uuid = result["job_id"].as_str().unwrap().parse().unwrap();
        assert_eq!(finished(&app, id).await.state, "succeeded");
        let body: Value =
            serde_json::from_slice(&providers.requests().pop().unwrap().body).unwrap();
        assert_eq!(body["subject"], "Your summary");

        // Mailgun (EU accounts use MAILGUN_EU_API_URL); a new provider needs its own key.
        let r = put_settings(
            &app,
            &f.key,
            json!({ "provider": "mailgun", "from": "Acme Desk <desk@acme.test>",
                    "mailgun_domain": "mg.acme.test" }),
        )
        .await;
        problem(r, 422, "validation_failed").await;
        json(
            put_settings(
                &app,
                &f.key,
                json!({ "provider": "mailgun", "from": "Acme Desk <desk@acme.test>",
                        "mailgun_domain": "MG.acme.test", "api_key": "key-mailgun-abcdef" }),
            )
            .await,
            200,
        )
        .await;
        let job = test_message(&app, &f.key).await;
        assert_eq!(job.state, "succeeded", "{:?}", job.last_error);
        let sent = providers.requests().pop().unwrap();
        assert_eq!(sent.path, "/v3/mg.acme.test/messages");
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode("api:key-mailgun-abcdef");
        assert_eq!(sent.header("authorization"), format!("Basic {basic}"));
        let form = sent.form();
        assert_eq!(form["from"], "Acme Desk <desk@acme.test>");
        assert_eq!(form["to"], "rui@example.com");
        assert_eq!(form["h:Message-Id"], format!("<{}@acme.test>", job.id));

        // 5xx is retried; 4xx ends the job at once.
        providers.answer("mailgun", &[503]);
        let job = test_message(&app, &f.key).await;
        assert_eq!((job.state.as_str(), job.attempts), ("succeeded", 2));
        providers.answer("mailgun", &[400]);
        let job = test_message(&app, &f.key).await;
        assert_eq!((job.state.as_str(), job.attempts), ("dead", 1));
        assert!(job.last_error.unwrap().contains("Mailgun answered 400"));
        providers.answer("mailgun", &[401]);
        let job = test_message(&app, &f.key).await;
        assert_eq!(job.state, "dead");
        assert!(job.last_error.unwrap().contains("refused the API key"));

        // Another tenant still has the platform's (absent) relay.
        let theirs = json(app.get("/api/v1/email-settings", &other.key).await, 200).await;
        assert_eq!(theirs["provider"], "platform");

        // Back to the platform's relay; the key is gone.
        let reset = json(
            app.send_json(Method::DELETE, "/api/v1/email-settings", &f.key, &json!({}))
                .await,
            200,
        )
        .await;
        assert_eq!(reset["provider"], "platform");
        let row = server::store::tenant_email_settings::Entity::find_by_id(f.tenant_id)
            .one(&app.db)
            .await
            .unwrap();
        assert!(row.is_none());
        let audit = json(app.get("/api/v1/audit-log?limit=50", &f.key).await, 200).await;
        assert!(audit.to_string().contains("email_settings.updated"));
        assert!(audit.to_string().contains("email_settings.deleted"));
        assert!(!audit.to_string().contains("key-mailgun"));
    }
}
