//! The attack suite: one test per attack found by the security review, named after the attack.
//! Each runs on SQLite and on PostgreSQL + Redis.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use server::llm::fake::{chunk, text, FakeLlm, Reply, ROUTER_MODEL};

use crate::helpers::*;
use crate::llm_settings::say;

/// A tenant points its own LLM provider at a server it controls and answers with a tool-call
/// index of 2^32 − 1 (once made us allocate ~300 GB and abort), an endless answer, and a
/// trickle that kept every chunk within the timeout. Each turn ends in the offline answer
/// within the bounds, and another tenant is served all along.
#[tokio::test]
async fn a_hostile_tenant_llm_endpoint_cannot_exhaust_memory_or_hold_a_turn() {
    for backend in backends().await {
        let platform = FakeLlm::start().await.unwrap();
        let hostile = FakeLlm::start().await.unwrap();
        let config = platform.config();
        let mut pairs: Vec<(&str, &str)> = vec![
            ("FETCH_ALLOW_PRIVATE", "true"),
            ("LLM_TIMEOUT_SECS", "1"),
            ("LLM_MAX_CALL_SECS", "2"),
        ];
        pairs.extend(config.iter().map(|(k, v)| (*k, v.as_str())));
        let app = TestApp::spawn_with(backend, &pairs).await;
        let mallory = app.tenant("mallory").await;
        let acme = app.tenant("acme").await;
        let own = json!({
            "base_url": hostile.base_url, "chat_model": "evil", "router_model": ROUTER_MODEL,
            "api_key": "sk-mallory-0123456789",
        });
        json(
            app.send_json(Method::PUT, "/api/v1/llm-settings", &mallory.key, &own)
                .await,
            200,
        )
        .await;

        let huge_index = chunk(
            json!({"tool_calls": [{"index": u32::MAX, "id": "call_x", "type": "function",
                   "function": {"name": "search_knowledge", "arguments": "{}"}}]}),
            None,
        );
        let attacks = [
            (
                "a tool call at index 2^32-1",
                Reply::Chunks(vec![huge_index]),
            ),
            ("a 4 MiB answer", Reply::Flood(4 << 20)),
            (
                "a word every 100 ms without end",
                Reply::Trickle(Duration::from_millis(100)),
            ),
        ];
        for (attack, reply) in attacks {
            hostile.chat(reply);
            let started = Instant::now();
            let turn = say(&app, &mallory.key, "Hello there").await;
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "{attack}: the turn took {:?}",
                started.elapsed()
            );
            let offline = turn["steps"][1]["detail"]["offline"].as_str();
            assert!(
                offline.is_some_and(|why| why.contains("failed")),
                "{attack}: {turn}"
            );

            platform.chat(text("Fine, thanks."));
            let other = say(&app, &acme.key, "Hello").await;
            assert_eq!(other["reply"]["content"], "Fine, thanks.", "{attack}");
        }
    }
}

/// Files crafted to take the process down for every tenant: a CSV and a JSON that expand a
/// thousandfold when flattened, a PDF decompression bomb, a PDF whose form draws itself (a
/// stack overflow in pdf-extract), a DOCX zip bomb that lies about its size, and HTML nested
/// 20 000 deep (minutes of parsing). Each fails alone with a reason; a good document beside
/// them is ready and found; the process (this test's) is still there.
#[tokio::test]
async fn hostile_documents_fail_alone_and_cannot_take_the_process_down() {
    use crate::hostile;
    use crate::knowledge::{create_kb, file, settled, upload};
    use reqwest::multipart::Form;

    for backend in backends().await {
        let app = TestApp::spawn_with(
            backend,
            &[
                ("JOB_POLL_MS", "50"),
                ("EXTRACT_MEMORY_MB", "256"),
                ("EXTRACT_TIMEOUT_SECS", "60"),
            ],
        )
        .await;
        let f = app.tenant("acme").await;
        let kb = create_kb(&app, &f.key, json!({ "name": "Docs" })).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let attacks: Vec<(&str, &str, Vec<u8>, &str)> = vec![
            (
                "rows.csv",
                "text/csv",
                hostile::csv_bomb(1000),
                "larger than",
            ),
            (
                "tree.json",
                "application/json",
                hostile::json_bomb(),
                "larger than",
            ),
            (
                "bomb.pdf",
                "application/pdf",
                hostile::pdf_bomb(1 << 29),
                "crashed",
            ),
            (
                "loop.pdf",
                "application/pdf",
                hostile::pdf_drawing_itself(),
                "crashed",
            ),
            (
                "bomb.docx",
                server::rag::extract::DOCX_CONTENT_TYPE,
                hostile::docx_bomb(100 << 20),
                "docx",
            ),
            // Parsing time grows with the square of the depth: refused before parsing.
            (
                "deep.html",
                "text/html",
                hostile::nested_html(20_000),
                "nested",
            ),
        ];
        let mut form = Form::new().part(
            "files",
            file(
                "good.txt",
                "text/plain",
                "Our parking lot behind the building is free for customers.",
            ),
        );
        for (name, mime, bytes, _) in &attacks {
            form = form.part("files", file(name, mime, bytes.clone()));
        }
        let docs = json(upload(&app, &f.key, &kb, form).await, 202).await;
        let ids: Vec<String> = docs
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect();
        let good = settled(&app, &f.key, &kb, &ids[0]).await;
        assert_eq!(good["status"], "ready", "{good}");
        for ((name, _, _, reason), id) in attacks.iter().zip(&ids[1..]) {
            let doc = settled(&app, &f.key, &kb, id).await;
            assert_eq!(doc["status"], "failed", "{name}: {doc}");
            let error = doc["error"].as_str().unwrap_or_default();
            assert!(error.contains(reason), "{name}: {error}");
        }

        let found = json(
            app.send_json(
                Method::POST,
                &format!("/api/v1/knowledge-bases/{kb}/search"),
                &f.key,
                &json!({ "query": "is parking free", "mode": "fulltext" }),
            )
            .await,
            200,
        )
        .await;
        assert_eq!(found["hits"][0]["source"], "good.txt", "{found}");
    }
}

/// An admin (or a stolen console session) points the tenant's LLM endpoint at another host
/// without entering a key, hoping the stored key follows: it is refused, and a change that
/// clears the key sends none.
#[tokio::test]
async fn a_changed_llm_endpoint_never_receives_the_stored_key() {
    for backend in backends().await {
        let genuine = FakeLlm::start().await.unwrap();
        let thief = FakeLlm::start().await.unwrap();
        let app = TestApp::spawn_with(backend, &[("FETCH_ALLOW_PRIVATE", "true")]).await;
        let acme = app.tenant("acme").await;
        let secret = "sk-acme-genuine-0123456789";
        let settings = |base_url: &str, api_key: Option<&str>, clear: bool| {
            json!({
                "base_url": base_url, "chat_model": "acme-chat", "router_model": ROUTER_MODEL,
                "api_key": api_key, "clear_api_key": clear,
            })
        };
        let put = |body: serde_json::Value| {
            let app = &app;
            let key = acme.key.clone();
            async move {
                app.send_json(Method::PUT, "/api/v1/llm-settings", &key, &body)
                    .await
            }
        };
        json(
            put(settings(&genuine.base_url, Some(secret), false)).await,
            200,
        )
        .await;

        let refused = problem(
            put(settings(&thief.base_url, None, false)).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(refused["errors"][0]["field"], "api_key", "{refused}");
        say(&app, &acme.key, "Hello").await;
        assert!(thief.requests().is_empty(), "the thief's host was called");
        assert!(!genuine.requests().is_empty());

        let moved = json(put(settings(&thief.base_url, None, true)).await, 200).await;
        assert_eq!(moved["api_key_set"], false, "{moved}");
        say(&app, &acme.key, "Hello again").await;
        assert!(!thief.requests().is_empty());
        assert!(
            thief.authorizations().iter().all(|a| !a.contains(secret)),
            "{:?}",
            thief.authorizations()
        );
    }
}

/// A member made keys, then was demoted and finally removed: their keys kept the old scopes
/// and kept working. Now a demotion narrows them (a key left with nothing is revoked) and a
/// removal revokes them, in the same transaction as the change, audited.
#[tokio::test]
async fn a_removed_or_demoted_members_keys_lose_what_the_member_lost() {
    use app::services::{Access, Actor};
    use app::types::{CreateApiKey, Role};

    for backend in backends().await {
        let app = TestApp::spawn(backend).await;
        let f = app.tenant("acme").await;
        let (email, _) = app.user(&f, "ed", Role::Admin).await;
        let ed = app
            .services
            .tenancy
            .list_members(&server::tenancy::cli_access(f.tenant_id))
            .await
            .unwrap()
            .into_iter()
            .find(|m| m.email == email)
            .unwrap();
        let as_ed = Access {
            tenant_id: f.tenant_id,
            actor: Actor::User {
                id: ed.user_id,
                email: email.clone(),
            },
            role: Some(Role::Admin),
            scopes: Role::Admin.scopes(),
            ip: None,
        };
        let key = |name: &str, scopes: &[&str]| CreateApiKey {
            name: name.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        };
        let writer = app
            .services
            .tenancy
            .create_api_key(
                &as_ed,
                key(
                    "writer",
                    &["knowledge:write", "members:write", "tenant:read"],
                ),
            )
            .await
            .unwrap()
            .secret;
        let only_members = app
            .services
            .tenancy
            .create_api_key(&as_ed, key("only members", &["members:write"]))
            .await
            .unwrap()
            .secret;
        let kb = json!({ "name": "Ed's" });
        let create_kb = |secret: String| {
            let app = &app;
            let kb = kb.clone();
            async move {
                app.send_json(Method::POST, "/api/v1/knowledge-bases", &secret, &kb)
                    .await
                    .status()
                    .as_u16()
            }
        };
        assert_eq!(create_kb(writer.clone()).await, 201);
        // The keys are cached now; the change must reach the cache too.
        assert_eq!(app.get("/api/v1/tenant", &writer).await.status(), 200);

        let cli = server::tenancy::cli_access(f.tenant_id);
        app.services
            .tenancy
            .change_role(&cli, ed.user_id, Role::Viewer)
            .await
            .unwrap();
        assert_eq!(create_kb(writer.clone()).await, 403, "a viewer's key wrote");
        assert_eq!(app.get("/api/v1/tenant", &writer).await.status(), 200);
        assert_eq!(
            app.get("/api/v1/tenant", &only_members).await.status(),
            401,
            "a key left with no permission is revoked"
        );

        app.services
            .tenancy
            .remove_member(&cli, ed.user_id)
            .await
            .unwrap();
        assert_eq!(app.get("/api/v1/tenant", &writer).await.status(), 401);

        let audit = json(
            app.get("/api/v1/audit-log?action=api_key.narrow", &f.key)
                .await,
            200,
        )
        .await;
        assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");
        let revoked = json(
            app.get("/api/v1/audit-log?action=api_key.revoke", &f.key)
                .await,
            200,
        )
        .await;
        assert_eq!(revoked["items"].as_array().unwrap().len(), 2, "{revoked}");
    }
}

/// One tenant creates knowledge bases for models the shared embeddings endpoint does not know;
/// each 4xx used to count as a failure of the endpoint and opened its circuit for everyone.
#[tokio::test]
async fn unknown_embedding_models_cannot_open_the_shared_circuit() {
    use axum::routing::post;
    use axum::Json;

    async fn embeddings(Json(body): Json<serde_json::Value>) -> axum::response::Response {
        use axum::response::IntoResponse;
        if body["model"] != "known" {
            let error = json!({"error": {"message": "The model does not exist",
                                         "type": "invalid_request_error", "code": "model_not_found"}});
            return (axum::http::StatusCode::NOT_FOUND, Json(error)).into_response();
        }
        let n = body["input"].as_array().map_or(1, Vec::len);
        let data: Vec<_> = (0..n)
            .map(|i| json!({"object": "embedding", "index": i, "embedding": [1.0, 0.0, 0.0]}))
            .collect();
        Json(json!({"object": "list", "data": data, "model": "known",
                    "usage": {"prompt_tokens": 1, "total_tokens": 1}}))
        .into_response()
    }

    for backend in backends().await {
        let router = axum::Router::new().route("/v1/embeddings", post(embeddings));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        let app = TestApp::spawn_with(
            backend,
            &[("EMBEDDINGS_URL", &url), ("CIRCUIT_FAILURES", "2")],
        )
        .await;
        let mallory = app.tenant("mallory").await;
        let acme = app.tenant("acme").await;
        for i in 0..6 {
            let body =
                json!({ "name": format!("kb {i}"), "embedding_model": format!("openai/nope-{i}") });
            let refused = problem(
                app.send_json(Method::POST, "/api/v1/knowledge-bases", &mallory.key, &body)
                    .await,
                422,
                "validation_failed",
            )
            .await;
            assert_eq!(
                refused["errors"][0]["field"], "embedding_model",
                "{refused}"
            );
        }
        let body = json!({ "name": "Docs", "embedding_model": "openai/known" });
        let kb = json(
            app.send_json(Method::POST, "/api/v1/knowledge-bases", &acme.key, &body)
                .await,
            201,
        )
        .await;
        assert_eq!(kb["embedding_dim"], 3, "{kb}");
    }
}

/// Sign in from "address" `from` (an `X-Forwarded-For` header); the redirect's target.
async fn sign_in_from(app: &TestApp, from: &str, email: &str, password: &str) -> String {
    let response = client()
        .post(app.url("/auth/login"))
        .header("origin", app.url(""))
        .header("x-forwarded-for", from)
        .form(&[("email", email), ("password", password), ("next", "/")])
        .send()
        .await
        .unwrap();
    location(&response)
}

/// Behind a load balancer every client had the balancer's address, so twenty failed sign-ins
/// locked out everyone; and anyone could lock a known user out by spending their email's
/// budget. Now only TRUSTED_PROXIES name the client, and an email's budget is per address.
#[tokio::test]
async fn sign_in_throttling_cannot_lock_out_others_or_be_dodged_with_forged_headers() {
    for backend in backends().await {
        let app = TestApp::spawn_with(
            backend,
            &[
                ("LOGIN_ATTEMPTS_PER_MINUTE", "3"),
                ("TRUSTED_PROXIES", "127.0.0.1"),
            ],
        )
        .await;
        let f = app.tenant("acme").await;
        let mut throttled = false;
        for _ in 0..15 {
            let to = sign_in_from(&app, "203.0.113.7", &f.owner_email, "guess").await;
            throttled |= to.contains("error=throttled");
        }
        assert!(throttled, "guessing from one address is throttled");
        // The owner, elsewhere behind the same balancer, signs in.
        let to = sign_in_from(&app, "198.51.100.9", &f.owner_email, &f.owner_password).await;
        assert!(!to.contains("error="), "{to}");

        // Without trusted proxies the header is the client's word and changes nothing.
        let direct = TestApp::spawn_with(backend, &[("LOGIN_ATTEMPTS_PER_MINUTE", "3")]).await;
        let g = direct.tenant("beta").await;
        let mut throttled = false;
        for i in 0..15 {
            let forged = format!("192.0.2.{i}");
            let to = sign_in_from(&direct, &forged, &g.owner_email, "guess").await;
            throttled |= to.contains("error=throttled");
        }
        assert!(
            throttled,
            "rotating a forged X-Forwarded-For dodged the throttle"
        );
    }
}

/// A turn longer than its lease (a slow provider) used to lose its hold after five minutes,
/// and the next message then ran beside it from the same checkpoint, dropping one exchange.
/// The running turn now renews the lease: with a one-second lease and a five-second turn, the
/// second message waits and its turn sees the first exchange.
#[tokio::test]
async fn a_turn_longer_than_its_lease_is_not_joined_by_the_next_message() {
    use crate::conversations::{spawn, start};
    use server::llm::fake::CHAT_MODEL;

    for backend in backends().await {
        let fake = FakeLlm::start().await.unwrap();
        let app = spawn(backend, Some(&fake), &[("TURN_LEASE_SECS", "1")]).await;
        let f = app.tenant("acme").await;
        let c = start(&app, &f.key).await;
        fake.set_delay(Duration::from_millis(2500));
        fake.chat(text("First answer."));
        fake.chat(text("Second answer."));
        let post = |content: &'static str| {
            let (app, key, c) = (&app, f.key.clone(), c.clone());
            async move { crate::conversations::say(app, &key, &c, content).await }
        };
        let first = post("first question");
        let second = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            post("second question").await
        };
        let (first, second) = tokio::join!(first, second);
        assert_eq!(first["reply"]["content"], "First answer.");
        assert_eq!(second["reply"]["content"], "Second answer.");
        let last = fake.requests_for(CHAT_MODEL).pop().unwrap();
        let history = last["messages"].to_string();
        assert!(
            history.contains("first question") && history.contains("First answer."),
            "the second turn started without the first exchange: {history}"
        );
    }
}
