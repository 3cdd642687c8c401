//! Tenants' own LLM providers: a tenant's turns go to its endpoint with its key while another
//! tenant stays on the platform's; the key is stored encrypted and never returned; tenants
//! cannot read or change each other's settings (a ciphertext copied across does not decrypt);
//! one tenant's broken endpoint opens only its own circuit; `server secrets rotate`
//! re-encrypts the keys; bad input is a 422. Each on SQLite and on PostgreSQL + Redis.

use reqwest::Method;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, IntoActiveModel};
use serde_json::{json, Value};

use app::types::CreateApiKey;
use server::llm::fake::{text, FakeLlm, ROUTER_MODEL};
use server::store::tenant_llm_settings;

use crate::helpers::*;

const TENANT_KEY: &str = "sk-tenant-acme-0123456789wxyz";
const TENANT_MODEL: &str = "acme-chat";

/// The platform's provider is `platform` (if any); internal endpoints are allowed because the
/// fakes listen on loopback.
async fn spawn(backend: Backend, platform: Option<&FakeLlm>, extra: &[(&str, &str)]) -> TestApp {
    let owned = platform.map(FakeLlm::config).unwrap_or_default();
    let mut pairs: Vec<(&str, &str)> = vec![("FETCH_ALLOW_PRIVATE", "true")];
    pairs.extend(owned.iter().map(|(k, v)| (*k, v.as_str())));
    pairs.extend_from_slice(extra);
    TestApp::spawn_with(backend, &pairs).await
}

fn own_provider(fake: &FakeLlm) -> Value {
    json!({
        "base_url": fake.base_url,
        "chat_model": TENANT_MODEL,
        "router_model": ROUTER_MODEL,
        "api_key": TENANT_KEY,
    })
}

async fn put(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    app.send_json(Method::PUT, "/api/v1/llm-settings", key, body)
        .await
}

async fn settings(app: &TestApp, key: &str) -> Value {
    json(app.get("/api/v1/llm-settings", key).await, 200).await
}

pub(crate) async fn turn(app: &TestApp, key: &str, content: &str) -> reqwest::Response {
    let c = json(
        app.send_json(Method::POST, "/api/v1/conversations", key, &json!({}))
            .await,
        201,
    )
    .await;
    let id = c["id"].as_str().unwrap();
    app.send_json(
        Method::POST,
        &format!("/api/v1/conversations/{id}/messages"),
        key,
        &json!({ "content": content }),
    )
    .await
}

/// One message in a new conversation; the turn's JSON.
pub(crate) async fn say(app: &TestApp, key: &str, content: &str) -> Value {
    json(turn(app, key, content).await, 200).await
}

async fn stored_row(app: &TestApp, f: &Fixture) -> Option<tenant_llm_settings::Model> {
    tenant_llm_settings::Entity::find_by_id(f.tenant_id)
        .one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_tenants_own_provider_answers_its_turns_and_the_key_never_comes_back() {
    for backend in backends().await {
        let platform = FakeLlm::start().await.unwrap();
        let own = FakeLlm::start().await.unwrap();
        let app = spawn(backend, Some(&platform), &[]).await;
        let acme = app.tenant("acme").await;
        let beta = app.tenant("beta").await;

        let before = settings(&app, &acme.key).await;
        assert_eq!(before["source"], "platform", "{before}");
        assert_eq!(
            before["base_url"],
            Value::Null,
            "the platform's URL stays private"
        );
        assert_eq!(before["api_key_set"], false);

        let saved = json(put(&app, &acme.key, &own_provider(&own)).await, 200).await;
        assert_eq!(saved["source"], "tenant");
        assert_eq!(saved["base_url"], own.base_url.as_str());
        assert_eq!(saved["chat_model"], TENANT_MODEL);
        assert_eq!(saved["api_key_set"], true);
        assert_eq!(saved["api_key_hint"], "wxyz");
        assert!(!saved.to_string().contains(TENANT_KEY), "{saved}");
        let shown = settings(&app, &acme.key).await;
        assert_eq!(shown["api_key_hint"], "wxyz");
        assert!(!shown.to_string().contains("0123456789"), "{shown}");

        // The database holds ciphertext only; the audit trail names the change, not the key.
        let row = stored_row(&app, &acme).await.unwrap();
        let sealed = row.api_key_encrypted.clone().unwrap();
        assert!(sealed.starts_with("v1:"), "{sealed}");
        assert!(!format!("{row:?}").contains(TENANT_KEY));
        assert!(!format!("{row:?}").contains("0123456789"));
        let audit = json(
            app.get("/api/v1/audit-log?action=llm_settings.updated", &acme.key)
                .await,
            200,
        )
        .await;
        assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");
        assert_eq!(audit["items"][0]["details"]["api_key"], "replaced");
        assert!(!audit.to_string().contains(TENANT_KEY));

        // Acme's turn goes to its own endpoint, with its key and model; Beta's to the platform.
        own.route(text("sales"));
        own.chat(text("Answered by Acme's own model."));
        let answer = say(&app, &acme.key, "What do your plans cost?").await;
        assert_eq!(
            answer["reply"]["content"], "Answered by Acme's own model.",
            "{answer}"
        );
        assert_eq!(own.requests_for(TENANT_MODEL).len(), 1);
        assert_eq!(
            own.authorizations(),
            vec![format!("Bearer {TENANT_KEY}"); 2]
        );
        assert!(platform.requests().is_empty(), "the platform was called");
        platform.chat(text("Answered by the platform."));
        let answer = say(&app, &beta.key, "Hello?").await;
        assert_eq!(answer["reply"]["content"], "Answered by the platform.");
        assert_eq!(
            own.requests().len(),
            2,
            "Beta's turn reached Acme's provider"
        );
        assert!(platform
            .authorizations()
            .iter()
            .all(|a| a == "Bearer sk-test"));

        // Keeping the key: a change without one leaves it stored.
        let mut change = own_provider(&own);
        change["api_key"] = Value::Null;
        change["router_model"] = Value::Null;
        let saved = json(put(&app, &acme.key, &change).await, 200).await;
        assert_eq!(saved["api_key_hint"], "wxyz");
        assert_eq!(saved["router_model"], Value::Null);
        say(&app, &acme.key, "Again?").await;
        assert!(own
            .authorizations()
            .iter()
            .all(|a| a == &format!("Bearer {TENANT_KEY}")));
        // Clearing it: no key is sent any more.
        change["clear_api_key"] = json!(true);
        let saved = json(put(&app, &acme.key, &change).await, 200).await;
        assert_eq!(saved["api_key_set"], false);
        assert_eq!(
            stored_row(&app, &acme).await.unwrap().api_key_encrypted,
            None
        );

        // Back to the platform's provider.
        let reset = json(
            app.send_json(
                Method::DELETE,
                "/api/v1/llm-settings",
                &acme.key,
                &json!({}),
            )
            .await,
            200,
        )
        .await;
        assert_eq!(reset["source"], "platform");
        assert!(stored_row(&app, &acme).await.is_none());
        let calls = own.requests().len();
        platform.chat(text("Platform again."));
        let answer = say(&app, &acme.key, "Still there?").await;
        assert_eq!(answer["reply"]["content"], "Platform again.");
        assert_eq!(own.requests().len(), calls);
    }
}

#[tokio::test]
async fn one_tenants_broken_provider_opens_only_its_own_circuit() {
    for backend in backends().await {
        let platform = FakeLlm::start().await.unwrap();
        let own = FakeLlm::start().await.unwrap();
        let app = spawn(
            backend,
            Some(&platform),
            &[("CIRCUIT_FAILURES", "2"), ("CIRCUIT_OPEN_SECS", "60")],
        )
        .await;
        let acme = app.tenant("acme").await;
        let beta = app.tenant("beta").await;
        json(put(&app, &acme.key, &own_provider(&own)).await, 200).await;
        own.set_down(Some(503));
        let mut reasons = Vec::new();
        for _ in 0..3 {
            let answer = say(&app, &acme.key, "Is anyone there?").await;
            reasons.push(answer["steps"][1]["detail"]["offline"].to_string());
        }
        assert_eq!(own.requests().len(), 2, "calls after Acme's circuit opened");
        assert!(reasons[2].contains("circuit open"), "{reasons:?}");
        // Beta's provider (the platform's) is untouched.
        platform.chat(text("Platform is fine."));
        let answer = say(&app, &beta.key, "Hello?").await;
        assert_eq!(answer["reply"]["content"], "Platform is fine.");
        assert_eq!(answer["steps"][1]["detail"]["offline"], Value::Null);
    }
}

#[tokio::test]
async fn tenants_cannot_read_change_or_borrow_each_others_provider() {
    for backend in backends().await {
        let own = FakeLlm::start().await.unwrap();
        let app = spawn(backend, None, &[]).await;
        let acme = app.tenant("acme").await;
        let beta = app.tenant("beta").await;
        json(put(&app, &acme.key, &own_provider(&own)).await, 200).await;

        // Beta sees its own (offline) settings, never Acme's, and its changes stay its own.
        let theirs = settings(&app, &beta.key).await;
        assert_eq!(theirs["source"], "offline", "{theirs}");
        assert!(!theirs.to_string().contains(&own.base_url));
        let mut beta_change = own_provider(&own);
        beta_change["chat_model"] = json!("beta-chat");
        beta_change["api_key"] = json!("sk-beta-0000000000");
        json(put(&app, &beta.key, &beta_change).await, 200).await;
        json(
            app.send_json(
                Method::DELETE,
                "/api/v1/llm-settings",
                &beta.key,
                &json!({}),
            )
            .await,
            200,
        )
        .await;
        let mine = settings(&app, &acme.key).await;
        assert_eq!(mine["chat_model"], TENANT_MODEL);
        assert_eq!(mine["api_key_hint"], "wxyz");

        // Acme's ciphertext copied into Beta's row does not decrypt there.
        json(put(&app, &beta.key, &beta_change).await, 200).await;
        let sealed = stored_row(&app, &acme).await.unwrap().api_key_encrypted;
        let mut row = stored_row(&app, &beta).await.unwrap().into_active_model();
        row.api_key_encrypted = Set(sealed);
        row.updated_at = Set(chrono::Utc::now());
        row.update(&app.db).await.unwrap();
        let shown = settings(&app, &beta.key).await;
        assert_eq!(shown["api_key_set"], true);
        assert_eq!(shown["api_key_hint"], Value::Null, "{shown}");
        let calls = own.requests().len();
        problem(turn(&app, &beta.key, "Hello?").await, 503, "unavailable").await;
        assert_eq!(own.requests().len(), calls, "Acme's key was used for Beta");

        // Reading needs tenant:read; changing needs tenant:write.
        let access = server::tenancy::cli_access(acme.tenant_id);
        let reader = app
            .services
            .tenancy
            .create_api_key(
                &access,
                CreateApiKey {
                    name: "reader".into(),
                    scopes: vec!["tenant:read".into()],
                },
            )
            .await
            .unwrap()
            .secret;
        settings(&app, &reader).await;
        problem(
            put(&app, &reader, &own_provider(&own)).await,
            403,
            "forbidden",
        )
        .await;
        problem(
            app.send_json(Method::DELETE, "/api/v1/llm-settings", &reader, &json!({}))
                .await,
            403,
            "forbidden",
        )
        .await;
        let outsider = app
            .services
            .tenancy
            .create_api_key(
                &access,
                CreateApiKey {
                    name: "outsider".into(),
                    scopes: vec!["knowledge:read".into()],
                },
            )
            .await
            .unwrap()
            .secret;
        problem(
            app.get("/api/v1/llm-settings", &outsider).await,
            403,
            "forbidden",
        )
        .await;

        // The console reads the same settings through its server function.
        let browser = app.signed_in(&acme.owner_email, &acme.owner_password).await;
        let shown: Value = app
            .server_fn(&browser, "get_llm_settings", "")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(shown["api_key_hint"], "wxyz", "{shown}");
        assert!(!shown.to_string().contains(TENANT_KEY));
    }
}

#[tokio::test]
async fn bad_settings_are_refused_with_the_failing_fields() {
    for backend in backends().await {
        // Internal addresses are refused by default.
        let app = TestApp::spawn(backend).await;
        let f = app.tenant("acme").await;
        let body = problem(
            put(
                &app,
                &f.key,
                &json!({
                    "base_url": "ftp://models.example",
                    "chat_model": " ",
                    "router_model": "x".repeat(201),
                    "api_key": "sk with spaces",
                }),
            )
            .await,
            422,
            "validation_failed",
        )
        .await;
        let mut fields: Vec<&str> = body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        fields.sort();
        assert_eq!(
            fields,
            ["api_key", "base_url", "chat_model", "router_model"],
            "{body}"
        );
        for url in [
            "http://127.0.0.1:11434/v1",
            "http://localhost:11434/v1",
            "http://169.254.169.254/v1",
        ] {
            let body = problem(
                put(&app, &f.key, &json!({"base_url": url, "chat_model": "m"})).await,
                422,
                "validation_failed",
            )
            .await;
            assert_eq!(body["errors"][0]["field"], "base_url", "{body}");
        }
        let body = problem(
            put(
                &app,
                &f.key,
                &json!({"base_url": "https://models.example/v1", "chat_model": "m",
                        "api_key": "sk-new-key-123", "clear_api_key": true}),
            )
            .await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(body["errors"][0]["field"], "clear_api_key", "{body}");
        assert!(stored_row(&app, &f).await.is_none());
        let shown = settings(&app, &f.key).await;
        assert_eq!(shown["source"], "offline");
    }
}

fn secrets_cmd(dir: &std::path::Path, url: &str, keys: &str) -> (bool, String, String) {
    crate::cli::server_cmd_with(dir, url, &["secrets", "rotate"], &[("SECRETS_KEYS", keys)])
}

#[tokio::test]
async fn rotation_reencrypts_the_keys_and_turns_still_work() {
    let k1 = server::secrets::new_key("k1").unwrap().as_str().to_owned();
    let k2 = server::secrets::new_key("k2").unwrap().as_str().to_owned();
    for backend in backends().await {
        let own = FakeLlm::start().await.unwrap();
        let old = spawn(backend, None, &[("SECRETS_KEYS", k1.as_str())]).await;
        let f = old.tenant("acme").await;
        json(put(&old, &f.key, &own_provider(&own)).await, 200).await;
        let before = stored_row(&old, &f)
            .await
            .unwrap()
            .api_key_encrypted
            .unwrap();
        assert!(before.starts_with("v1:k1:"), "{before}");

        // A ring without the key that encrypted it names the missing key and changes nothing.
        let (ok, _, err) = secrets_cmd(&scratch_dir(), &old.database_url, &k2);
        assert!(!ok && err.contains("'k1'"), "{err}");
        // The new key first, the old one still there: every secret moves to the new key.
        let ring = format!("{k2},{k1}");
        let (ok, out, err) = secrets_cmd(&scratch_dir(), &old.database_url, &ring);
        assert!(ok, "{out}{err}");
        assert!(
            out.contains("re-encrypted 1 secrets with key 'k2'"),
            "{out}"
        );
        let after = stored_row(&old, &f)
            .await
            .unwrap()
            .api_key_encrypted
            .unwrap();
        assert!(after.starts_with("v1:k2:"), "{after}");
        assert!(!after.contains(TENANT_KEY));
        let (ok, out, _) = secrets_cmd(&scratch_dir(), &old.database_url, &ring);
        assert!(ok && out.contains("re-encrypted 0 secrets"), "{out}");

        // With the old key dropped, a server reads the key and the tenant's turns still work.
        let new = TestApp::spawn_on(
            backend,
            scratch_dir(),
            old.database_url.clone(),
            &[
                ("SECRETS_KEYS", k2.as_str()),
                ("FETCH_ALLOW_PRIVATE", "true"),
            ],
        )
        .await;
        assert_eq!(settings(&new, &f.key).await["api_key_hint"], "wxyz");
        own.route(text("support"));
        own.chat(text("Still answered by Acme's model."));
        let answer = say(&new, &f.key, "Hello after the rotation?").await;
        assert_eq!(
            answer["reply"]["content"],
            "Still answered by Acme's model."
        );
        assert_eq!(
            own.authorizations().last().unwrap(),
            &format!("Bearer {TENANT_KEY}")
        );
    }
}
