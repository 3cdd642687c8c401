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

/// Item 1. An admin of tenant A once could create a global account for any email, learn its
/// temporary password, and wait for tenant B to add that email (as the 409 advised), then
/// sign in as that person and switch into B. Now people join only through invitations: A's
/// admin can at most make an account by following A's own link, B's invitation works only
/// with B's link (which A never sees), the inviting side's answers are the same whether or
/// not the email has an account, and the old ways in are gone.
#[tokio::test]
async fn an_admin_cannot_claim_an_account_in_another_tenant() {
    for backend in backends().await {
        let app = TestApp::spawn(backend).await;
        let a = app.tenant("alpha").await;
        let b = app.tenant("bravo").await;
        let victim = "victim@shared.test";
        let invite = |email: &str| json!({ "email": email, "role": "admin" });

        // The old doors are closed: no creating users, no attaching accounts.
        let attacker = app.signed_in(&a.owner_email, &a.owner_password).await;
        for old in ["create_member", "add_existing_member"] {
            let r = app
                .server_fn(
                    &attacker,
                    old,
                    &format!("create[email]={victim}&create[name]=V&create[role]=owner"),
                )
                .await;
            assert!(!r.status().is_success(), "{old} still answers");
        }
        let r = app
            .send_json(Method::POST, "/api/v1/members", &a.key, &invite(victim))
            .await;
        assert!(r.status().as_u16() == 404 || r.status().as_u16() == 405);

        // A invites the victim's email and follows its own link, choosing the password.
        let sent = json(
            app.send_json(Method::POST, "/api/v1/invitations", &a.key, &invite(victim))
                .await,
            201,
        )
        .await;
        let own_link = sent["link"].as_str().unwrap();
        let to = app
            .accept_invitation(
                &client(),
                own_link,
                &[
                    ("name", "Victim"),
                    ("password", "attacker-chosen-pw"),
                    ("repeat", "attacker-chosen-pw"),
                ],
            )
            .await;
        assert_eq!(to, "/");

        // B invites the same email: the answer looks exactly like one for an email nobody
        // has ever used, so B learns nothing about accounts elsewhere.
        let known = json(
            app.send_json(Method::POST, "/api/v1/invitations", &b.key, &invite(victim))
                .await,
            201,
        )
        .await;
        let unknown = json(
            app.send_json(
                Method::POST,
                "/api/v1/invitations",
                &b.key,
                &invite("nobody@shared.test"),
            )
            .await,
            201,
        )
        .await;
        let shape = |v: &serde_json::Value| {
            let mut keys: Vec<String> = v["invitation"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            keys.sort();
            (
                keys,
                v["invitation"]["status"].clone(),
                v["emailed"].clone(),
            )
        };
        assert_eq!(shape(&known), shape(&unknown));

        // The attacker signs in as the victim: only A is there, B is out of reach.
        let as_victim = app.signed_in(victim, "attacker-chosen-pw").await;
        let me: serde_json::Value = app
            .server_fn(&as_victim, "whoami", "")
            .await
            .json()
            .await
            .unwrap();
        let tenants: Vec<&str> = me["memberships"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["slug"].as_str().unwrap())
            .collect();
        assert_eq!(tenants, ["alpha"]);
        let switch = as_victim
            .post(app.url("/auth/switch-tenant"))
            .header(reqwest::header::ORIGIN, &app.base)
            .form(&[("tenant", "bravo")])
            .send()
            .await
            .unwrap();
        assert_eq!(switch.status(), 404);
        let members = json(app.get("/api/v1/members", &b.key).await, 200).await;
        assert!(!members.to_string().contains(victim), "{members}");

        // B's link, in the real person's hands, needs the account's own password: guessing
        // fails, and nobody learned a password they did not choose.
        let b_link = known["link"].as_str().unwrap();
        let to = app
            .accept_invitation(&client(), b_link, &[("password", "a guess")])
            .await;
        assert!(to.contains("error=password"), "{to}");
        let members = json(app.get("/api/v1/members", &b.key).await, 200).await;
        assert!(!members.to_string().contains(victim), "{members}");
    }
}

/// Item 4. `send_email` was an open relay: any recipient, and a fresh quota with every new
/// conversation. Now the recipient must be an address the customer wrote in the conversation
/// or one the tenant allows, and daily budgets per caller and per tenant bound the volume;
/// every refusal is in the step trace, and passages from documents reach the model fenced as
/// data.
#[tokio::test]
async fn send_email_cannot_be_used_as_a_relay() {
    use crate::email::{converse, email_jobs, spawn};
    use crate::fake_smtp::FakeSmtp;
    use server::llm::fake::{tool, CHAT_MODEL};

    for backend in backends().await {
        let smtp = FakeSmtp::start().await;
        let fake = FakeLlm::start().await.unwrap();
        let app = spawn(backend, &fake, Some(&smtp)).await;
        let f = app.tenant("acme").await;
        let policy = json!({ "agent_policy": {
            "email_recipients": ["@ACME.test", "desk@partner.test"],
            "emails_per_day": 3, "emails_per_caller_per_day": 2,
            "bookings_per_conversation": 1, "booking_horizon_days": 30,
        }});
        let saved = json(
            app.send_json(Method::PATCH, "/api/v1/tenant", &f.key, &policy)
                .await,
            200,
        )
        .await;
        assert_eq!(
            saved["agent_policy"]["email_recipients"],
            json!(["@acme.test", "desk@partner.test"])
        );
        let bad = app
            .send_json(
                Method::PATCH,
                "/api/v1/tenant",
                &f.key,
                &json!({ "agent_policy": { "email_recipients": ["nope"], "booking_horizon_days": 0 } }),
            )
            .await;
        let bad = problem(bad, 422, "validation_failed").await.to_string();
        assert!(
            bad.contains("email_recipients") && bad.contains("booking_horizon_days"),
            "{bad}"
        );

        let mail = |to: &str| {
            fake.route(text("support"));
            fake.chat(tool(
                "send_email",
                json!({"to": to, "subject": "Hi", "body": "Hello"}),
            ));
            fake.chat(text("Done."));
        };
        let outcome = |turn: &serde_json::Value| {
            let call = &turn["steps"][1]["detail"]["tool_calls"][0];
            (call["ok"].as_bool().unwrap(), call["result"].to_string())
        };

        // Text planted in a document (or the customer) names a stranger: refused.
        mail("attacker@evil.test");
        let turn = converse(&app, &f.key, "What are your opening hours?").await;
        let (ok, result) = outcome(&turn);
        assert!(
            !ok && result.contains("not an address the customer wrote"),
            "{result}"
        );
        assert!(email_jobs(&app).await.is_empty());

        // The customer's own address, and the tenant's allowed ones, are fine.
        mail("rui@example.com");
        let turn = converse(&app, &f.key, "Send it to me: Rui@Example.com").await;
        assert!(outcome(&turn).0, "{}", outcome(&turn).1);
        mail("billing@acme.test");
        let turn = converse(&app, &f.key, "Tell billing").await;
        assert!(outcome(&turn).0, "{}", outcome(&turn).1);

        // New conversations no longer mean new quotas: this key has spent its two.
        mail("desk@partner.test");
        let turn = converse(&app, &f.key, "And the partner desk").await;
        let (ok, result) = outcome(&turn);
        assert!(
            !ok && result.contains("as many emails sent today"),
            "{result}"
        );

        // Another caller has its own budget, until the tenant's three for the day are spent.
        let other = app.api_key(&f.key, &["conversations:write"]).await;
        mail("desk@partner.test");
        assert!(outcome(&converse(&app, &other, "Partner desk please").await).0);
        mail("desk@partner.test");
        let (ok, result) = outcome(&converse(&app, &other, "Once more").await);
        assert!(
            !ok && result.contains("the company's agents have sent as many"),
            "{result}"
        );
        assert_eq!(email_jobs(&app).await.len(), 3);
        assert!(fake.requests_for(CHAT_MODEL).len() >= 12);
    }
}

/// Item 11. The booking tool had no limit per conversation and no horizon: one conversation
/// could fill the calendar for years. Now the tenant's policy bounds both (defaults: 2 per
/// conversation, 90 days), and business hours still apply.
#[tokio::test]
async fn one_conversation_cannot_fill_the_calendar() {
    use crate::conversations::{open_every_day, say, spawn, start, tomorrow_at};
    use server::llm::fake::tool;

    for backend in backends().await {
        let fake = FakeLlm::start().await.unwrap();
        let app = spawn(backend, Some(&fake), &[]).await;
        let f = app.tenant("acme").await;
        open_every_day(&app, &f).await;
        let tenant = json(app.get("/api/v1/tenant", &f.key).await, 200).await;
        assert_eq!(tenant["agent_policy"]["bookings_per_conversation"], 2);
        assert_eq!(tenant["agent_policy"]["booking_horizon_days"], 90);
        let policy = json!({ "agent_policy": {
            "bookings_per_conversation": 1, "booking_horizon_days": 30,
        }});
        json(
            app.send_json(Method::PATCH, "/api/v1/tenant", &f.key, &policy)
                .await,
            200,
        )
        .await;
        let book = |start: String| {
            fake.route(text("scheduling"));
            fake.chat(tool(
                "create_booking",
                json!({"start": start, "name": "Rui", "email": "rui@example.com"}),
            ));
            fake.chat(text("Done."));
        };
        let outcome = |turn: &serde_json::Value| {
            let call = &turn["steps"][1]["detail"]["tool_calls"][0];
            (call["ok"].as_bool().unwrap(), call["result"].to_string())
        };
        let c = start(&app, &f.key).await;

        // Beyond the horizon: refused.
        let far = (chrono::Utc::now() + chrono::Duration::days(40))
            .format("%Y-%m-%d 10:00")
            .to_string();
        book(far);
        let (ok, result) = outcome(&say(&app, &f.key, &c, "Book me in 40 days").await);
        assert!(!ok && result.contains("at most 30 days ahead"), "{result}");

        // One booking, then the conversation has made as many as it may.
        book(tomorrow_at(10));
        let (ok, result) = outcome(&say(&app, &f.key, &c, "Tomorrow at ten").await);
        assert!(ok, "{result}");
        book(tomorrow_at(11));
        let (ok, result) = outcome(&say(&app, &f.key, &c, "And at eleven").await);
        assert!(!ok && result.contains("as many as it may"), "{result}");
        use sea_orm::{EntityTrait, PaginatorTrait};
        assert_eq!(
            server::store::bookings::Entity::find()
                .count(&app.db)
                .await
                .unwrap(),
            1
        );
    }
}

/// Item 12. A request that read a key just before its revocation could cache the old record
/// for a minute after it, and a deleted tenant's keys stayed cached. Now a change leaves a
/// mark in the cache that records read earlier cannot overwrite (`set_nx`), the tenant's
/// deletion marks its keys, and the key is refused at once, on both stores.
#[tokio::test]
async fn a_revoked_key_cannot_be_cached_again() {
    use server::kv::Scope;
    for backend in backends().await {
        let app = TestApp::spawn(backend).await;
        let f = app.tenant("acme").await;
        let created = json(
            app.send_json(
                Method::POST,
                "/api/v1/api-keys",
                &f.key,
                &json!({ "name": "soon gone", "scopes": ["tenant:read"] }),
            )
            .await,
            201,
        )
        .await;
        let secret = created["secret"].as_str().unwrap();
        let prefix = created["key"]["prefix"].as_str().unwrap();
        let id = created["key"]["id"].as_str().unwrap();
        // In use, so cached.
        json(app.get("/api/v1/tenant", secret).await, 200).await;
        json(
            app.send_json(
                Method::DELETE,
                &format!("/api/v1/api-keys/{id}"),
                &f.key,
                &json!({}),
            )
            .await,
            200,
        )
        .await;
        // A request that read the key before the revocation now tries to cache it: the slot
        // is taken by the revocation's mark.
        let stale_fill = app
            .kv
            .set_nx(
                Scope::Platform,
                "apikey",
                prefix,
                &"the old record",
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        assert!(
            !stale_fill,
            "a record read before the revocation was cached again"
        );
        problem(app.get("/api/v1/tenant", secret).await, 401, "unauthorized").await;
    }
}

/// Sleeps for the payload's `ms`, two at a time.
struct Slow;

#[async_trait::async_trait]
impl server::jobs::JobHandler for Slow {
    fn kind(&self) -> &'static str {
        "test.slow"
    }

    fn concurrency(&self) -> usize {
        2
    }

    async fn run(&self, ctx: &mut server::jobs::JobContext) -> anyhow::Result<()> {
        let ms = ctx.payload()["ms"].as_u64().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(())
    }
}

/// Item 18. Jobs were claimed oldest first across tenants, so one tenant's bulk upload made
/// every other tenant's ingestion wait for the whole backlog. Now a tenant with fewer jobs
/// running goes first: another tenant's job runs while most of the backlog still waits.
#[tokio::test]
async fn one_tenants_backlog_does_not_hold_up_another() {
    use crate::jobs::{start_worker, wait_for, worker_config};
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    use server::jobs::{enqueue, NewJob, Registry};
    use server::store::jobs as job_rows;

    for backend in backends().await {
        let app = TestApp::spawn_with(backend, &[("JOBS_IN_PROCESS", "false")]).await;
        let bulk = app.tenant("bulk").await;
        let small = app.tenant("small").await;
        for _ in 0..100 {
            enqueue(
                &app.db,
                NewJob::new(Some(bulk.tenant_id), "test.slow", json!({ "ms": 40 })),
            )
            .await
            .unwrap();
        }
        let (stop, worker) = start_worker(
            &app.db,
            Registry::default().with(Slow),
            worker_config(Duration::from_millis(10)),
        );
        // The backlog is being worked on when the other tenant's job arrives.
        let state_of = |tenant: uuid::Uuid, state: &'static str| {
            job_rows::Entity::find()
                .filter(job_rows::Column::TenantId.eq(tenant))
                .filter(job_rows::Column::State.eq(state))
                .count(&app.db)
        };
        wait_for(
            "the backlog to start",
            Duration::from_secs(20),
            async || state_of(bulk.tenant_id, "succeeded").await.unwrap() >= 2,
        )
        .await;
        let id = enqueue(
            &app.db,
            NewJob::new(Some(small.tenant_id), "test.slow", json!({ "ms": 1 })),
        )
        .await
        .unwrap()
        .unwrap();
        wait_for(
            "the other tenant's job",
            Duration::from_secs(30),
            async || {
                let job = job_rows::Entity::find_by_id(id).one(&app.db).await.unwrap();
                job.is_some_and(|j| j.state == "succeeded")
            },
        )
        .await;
        let still_queued = state_of(bulk.tenant_id, "queued").await.unwrap();
        assert!(
            still_queued >= 50,
            "the other tenant waited for most of the backlog: {still_queued} of 100 left"
        );
        let _ = stop.send(true);
        let _ = worker.await;
    }
}

/// Item 19. Transcripts kept customers' emails and phone numbers in clear for every reader of
/// the tenant's conversations. A tenant may now store them masked (off by default): messages,
/// titles and the tool calls of the step trace; the live answer is not masked.
#[tokio::test]
async fn a_tenant_can_keep_personal_data_out_of_stored_transcripts() {
    use crate::conversations::{say, start};
    for backend in backends().await {
        let app = TestApp::spawn(backend).await;
        let f = app.tenant("acme").await;
        let personal = "I am rui@example.com, call me on +351 912 345 678";

        // Off by default: stored as written.
        let c = start(&app, &f.key).await;
        say(&app, &f.key, &c, personal).await;
        let kept = json(
            app.get(&format!("/api/v1/conversations/{c}"), &f.key).await,
            200,
        )
        .await;
        assert!(kept.to_string().contains("rui@example.com"));

        json(
            app.send_json(
                Method::PATCH,
                "/api/v1/tenant",
                &f.key,
                &json!({ "agent_policy": { "redact_transcripts": true } }),
            )
            .await,
            200,
        )
        .await;
        let c = start(&app, &f.key).await;
        let turn = say(&app, &f.key, &c, personal).await;
        assert_eq!(
            turn["message"]["content"], personal,
            "the caller's own turn is as sent"
        );
        let stored = json(
            app.get(&format!("/api/v1/conversations/{c}"), &f.key).await,
            200,
        )
        .await;
        let text = stored.to_string();
        assert!(
            !text.contains("rui@example.com") && !text.contains("912 345 678"),
            "{text}"
        );
        assert!(text.contains("I am"), "{text}");
        let list = json(app.get("/api/v1/conversations", &f.key).await, 200).await;
        let listed = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|item| item["id"] == c.as_str())
            .unwrap();
        assert!(
            !listed["title"].as_str().unwrap().contains("912 345 678"),
            "titles are masked too: {listed}"
        );
    }
}

/// Item 6. The specialists searched every knowledge base, and raw passages reached any caller
/// in steps and `tool.result` events, even a key with only `conversations:write`. Now internal
/// knowledge bases are never read by the agents (nor can an agent be given one), and callers
/// without `knowledge:read` get sources as a short snippet and `knowledge_search` results
/// withheld, in the answer, the stored steps and the stream alike.
#[tokio::test]
async fn a_chat_key_cannot_read_the_documents_behind_the_answers() {
    use crate::conversations::{say, spawn, start};
    use crate::knowledge::{create_kb, file, settled, upload};
    use server::llm::fake::tool;

    const HOURS: &str = "Opening hours: the showroom in Porto opens Monday to Friday from nine \
        to six, and on Saturdays from ten to one. Parking is free in the yard behind the \
        building, and the entrance for wheelchairs is on the left side of the main door. We \
        close on public holidays, and in August the showroom closes at four in the afternoon.";
    const SALARIES: &str =
        "Internal salary table: the managing director earns internal-salary-marker \
        a great deal, the opening hours of the payroll office are nine to five.";

    for backend in backends().await {
        let fake = FakeLlm::start().await.unwrap();
        let app = spawn(backend, Some(&fake), &[]).await;
        let f = app.tenant("acme").await;
        let public = create_kb(&app, &f.key, json!({ "name": "Handbook" })).await;
        assert_eq!(
            public["visibility"], "agents",
            "new knowledge bases serve the agents"
        );
        let internal = create_kb(
            &app,
            &f.key,
            json!({ "name": "Payroll", "visibility": "internal" }),
        )
        .await;
        for (kb, name, text) in [
            (&public, "hours.md", HOURS),
            (&internal, "pay.md", SALARIES),
        ] {
            let kb = kb["id"].as_str().unwrap();
            let form =
                reqwest::multipart::Form::new().part("files", file(name, "text/markdown", text));
            let docs = json(upload(&app, &f.key, kb, form).await, 202).await;
            let doc = settled(&app, &f.key, kb, docs[0]["id"].as_str().unwrap()).await;
            assert_eq!(doc["status"], "ready", "{doc}");
        }
        // People with knowledge:read still search the internal one.
        let found = json(
            app.send_json(
                Method::POST,
                &format!(
                    "/api/v1/knowledge-bases/{}/search",
                    internal["id"].as_str().unwrap()
                ),
                &f.key,
                &json!({ "query": "salary table" }),
            )
            .await,
            200,
        )
        .await;
        assert!(found.to_string().contains("internal-salary-marker"));
        // No agent may be given it.
        let given = app
            .send_json(
                Method::POST,
                "/api/v1/agents",
                &f.key,
                &json!({ "name": "payroll", "description": "pay", "prompt": "Help.",
                         "tools": ["knowledge_search"], "knowledge_base_ids": [internal["id"]] }),
            )
            .await;
        let given = problem(given, 422, "validation_failed").await.to_string();
        assert!(given.contains("internal"), "{given}");

        let search = || {
            fake.route(text("support"));
            fake.chat(tool(
                "knowledge_search",
                json!({ "query": "opening hours" }),
            ));
            fake.chat(text("We open at nine."));
        };
        // The full key sees the passages (fenced as data for the model), never the internal KB.
        search();
        let c = start(&app, &f.key).await;
        let turn = say(&app, &f.key, &c, "When do you open?").await;
        let result = turn["steps"][1]["detail"]["tool_calls"][0]["result"].to_string();
        assert!(
            result.contains("Parking is free") && result.contains("untrusted-data"),
            "{result}"
        );
        assert!(
            !turn.to_string().contains("internal-salary-marker"),
            "{turn}"
        );

        // A chat key: snippets and withheld results, in the answer, the steps and the stream.
        let chat = app.api_key(&f.key, &["conversations:write"]).await;
        search();
        let c = start(&app, &chat).await;
        let turn = say(&app, &chat, &c, "When do you open?").await;
        let result = turn["steps"][1]["detail"]["tool_calls"][0]["result"]
            .as_str()
            .unwrap();
        assert!(result.contains("passages withheld"), "{result}");
        let shown = turn.to_string();
        assert!(!shown.contains("closes at four"), "{shown}");
        for source in turn["reply"]["sources"].as_array().unwrap() {
            assert!(
                source["text"].as_str().unwrap().chars().count() <= 201,
                "{source}"
            );
        }
        let message = turn["message"]["id"].as_str().unwrap();
        let steps = app
            .get(
                &format!("/api/v1/conversations/{c}/messages/{message}/steps"),
                &chat,
            )
            .await;
        // conversations:write includes read: the stored steps are withheld the same way.
        let steps = json(steps, 200).await.to_string();
        assert!(steps.contains("passages withheld") && !steps.contains("Parking is free"));
        search();
        let streamed = app
            .client
            .post(app.url(&format!("/api/v1/conversations/{c}/messages?stream=true")))
            .bearer_auth(&chat)
            .json(&json!({ "content": "And on Saturdays?" }))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(streamed.contains("event: tool.result"), "{streamed}");
        assert!(streamed.contains("passages withheld") && !streamed.contains("closes at four"));
    }
}
