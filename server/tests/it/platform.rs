//! Health, request ids, the OpenAPI document, migrations and the demo tenant.

use sea_orm::{ConnectionTrait, Database};
use sea_orm_migration::MigratorTrait;

use crate::helpers::*;

#[tokio::test]
async fn health_readiness_and_request_ids() {
    for backend in backends().await {
        let app = TestApp::spawn(backend).await;
        let health = app.client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let generated = health.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(generated.len(), 36, "a UUID: {generated}");
        assert_eq!(
            app.client
                .get(app.url("/readyz"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        let echoed = app
            .client
            .get(app.url("/healthz"))
            .header("x-request-id", "trace-me-42")
            .send()
            .await
            .unwrap();
        assert_eq!(echoed.headers()["x-request-id"], "trace-me-42");
        assert_eq!(echoed.headers()["x-content-type-options"], "nosniff");
        let login = app.client.get(app.url("/login")).send().await.unwrap();
        assert_eq!(login.headers()["x-frame-options"], "DENY");
        // Console pages: a strict policy whose nonce is the one on this page's inline script,
        // and a fresh one per response.
        let csp = login.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        let nonce = csp
            .split("'nonce-")
            .nth(1)
            .and_then(|rest| rest.split('\'').next())
            .expect("nonce in CSP")
            .to_string();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("object-src 'none'"));
        let html = login.text().await.unwrap();
        assert!(html.contains(&format!("nonce=\"{nonce}\"")), "{html}");
        let again = app.client.get(app.url("/login")).send().await.unwrap();
        assert!(!again.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains(&nonce));
        // Other console responses (server functions) still refuse framing.
        let fn_call = app
            .client
            .post(app.url("/_fn/whoami"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            fn_call.headers()["content-security-policy"],
            "frame-ancestors 'none'"
        );
    }
}

/// The document is generated from code; this snapshot makes every change to it deliberate.
/// Run with `UPDATE_SNAPSHOTS=1` to accept a change.
/// Keys in sorted order, whether or not a dependency turned on serde_json's `preserve_order`,
/// so the snapshot diffs by content only.
fn sorted(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(items) => items.into_iter().map(sorted).collect(),
        other => other,
    }
}

#[tokio::test]
async fn openapi_document_matches_snapshot() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let doc: serde_json::Value = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/tenant",
        "/api/v1/members",
        "/api/v1/members/{user_id}",
        "/api/v1/api-keys",
        "/api/v1/api-keys/{id}",
        "/api/v1/audit-log",
        "/api/v1/knowledge-bases",
        "/api/v1/knowledge-bases/{kb}/documents",
        "/api/v1/knowledge-bases/{kb}/search",
    ] {
        assert!(paths.contains_key(path), "{path} undocumented");
    }
    let snapshot =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/openapi.json");
    let rendered = serde_json::to_string_pretty(&sorted(doc)).unwrap() + "\n";
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&snapshot, &rendered).unwrap();
    }
    let expected = std::fs::read_to_string(&snapshot).unwrap_or_default();
    assert!(
        expected == rendered,
        "OpenAPI document changed; review and rerun with UPDATE_SNAPSHOTS=1"
    );

    let docs = app
        .client
        .get(app.url("/api/docs"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(docs.contains("/swagger-ui/swagger-ui-bundle.js"));
}

#[tokio::test]
async fn migrations_go_up_and_down() {
    for backend in backends().await {
        let dir = scratch_dir();
        let url = fresh_database(backend, &dir).await;
        let db = Database::connect(&url).await.unwrap();
        let tables = ["tenants", "users", "memberships", "api_keys", "audit_log"];
        migration::Migrator::up(&db, None).await.unwrap();
        let manager = sea_orm_migration::SchemaManager::new(&db);
        for t in tables {
            assert!(
                manager.has_table(t).await.unwrap(),
                "{backend:?}: {t} missing after up"
            );
        }
        migration::Migrator::down(&db, None).await.unwrap();
        for t in tables {
            assert!(
                !manager.has_table(t).await.unwrap(),
                "{backend:?}: {t} left after down"
            );
        }
        migration::Migrator::up(&db, None).await.unwrap();
        assert!(manager.has_table("audit_log").await.unwrap());
        // Unique slugs are enforced by the database itself.
        let now = "2026-01-01 00:00:00+00:00";
        let insert = |id: &str| {
            format!(
            "INSERT INTO tenants (id, slug, name, timezone, created_at, updated_at) VALUES ('{id}', 'dup', 'x', 'UTC', '{now}', '{now}')"
        )
        };
        db.execute_unprepared(&insert("00000000-0000-0000-0000-000000000001"))
            .await
            .unwrap();
        assert!(db
            .execute_unprepared(&insert("00000000-0000-0000-0000-000000000002"))
            .await
            .is_err());
        let _ = db.close().await;
        let _ = std::fs::remove_dir_all(dir);
        if backend == Backend::Postgres {
            drop_database(&url);
        }
    }
}

#[tokio::test]
async fn first_start_seeds_a_demo_tenant_once() {
    for backend in backends().await {
        let dir = scratch_dir();
        let url = fresh_database(backend, &dir).await;
        let app = TestApp::spawn_on(
            backend,
            dir.clone(),
            url.clone(),
            &[("DEMO_TENANT", "true")],
        )
        .await;
        let credentials = std::fs::read_to_string(dir.join("demo-credentials.txt")).unwrap();
        // It holds a password: readable by its owner only.
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.join("demo-credentials.txt"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        let password = credentials
            .lines()
            .find_map(|l| l.trim().strip_prefix("password:"))
            .unwrap()
            .trim()
            .to_string();
        let browser = app.signed_in(server::startup::DEMO_EMAIL, &password).await;
        let me: serde_json::Value = app
            .server_fn(&browser, "whoami", "")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(me["tenant"]["slug"], "demo");
        assert_eq!(me["tenant"]["role"], "owner");
        let again = TestApp::spawn_on(backend, dir.clone(), url, &[("DEMO_TENANT", "true")]).await;
        let tenants = server::tenancy::list_tenants(&again.db).await.unwrap();
        assert_eq!(tenants.len(), 1);
        drop(again);
        drop(app);
    }
}

#[tokio::test]
async fn cors_admits_only_configured_origins() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[(
            "CORS_ALLOWED_ORIGINS",
            "https://shop.example, https://app.example/",
        )],
    )
    .await;
    let acme = app.tenant("acme").await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/api/v1/tenant"))
            .header("origin", origin)
            .header("access-control-request-method", "PATCH")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let allowed = preflight("https://shop.example").await.unwrap();
    assert!(allowed.status().is_success());
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    let methods = allowed.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(methods.contains("PATCH"), "{methods}");
    assert!(allowed
        .headers()
        .get("access-control-allow-credentials")
        .is_none());
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    let actual = app
        .client
        .get(app.url("/api/v1/tenant"))
        .bearer_auth(&acme.key)
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        actual.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(actual.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .contains("x-request-id"));

    // The console is not an API: no CORS there, and none at all when nothing is configured.
    let login = app
        .client
        .get(app.url("/login"))
        .header("origin", "https://shop.example")
        .send()
        .await
        .unwrap();
    assert!(login.headers().get("access-control-allow-origin").is_none());
    let plain = TestApp::spawn(Backend::Sqlite).await;
    let r = plain
        .client
        .get(plain.url("/api/v1/openapi.json"))
        .header("origin", "https://shop.example")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn each_tenant_names_the_sites_that_may_call_it() {
    for backend in backends().await {
        let app = TestApp::spawn(backend).await;
        let acme = app.tenant("acme").await;
        let bravo = app.tenant("bravo").await;
        let patch = |key: &str, origins: serde_json::Value| {
            let key = key.to_string();
            let app = &app;
            async move {
                app.send_json(
                    reqwest::Method::PATCH,
                    "/api/v1/tenant",
                    &key,
                    &serde_json::json!({ "allowed_origins": origins }),
                )
                .await
            }
        };
        let body = problem(
            patch(
                &acme.key,
                serde_json::json!(["https://ok.example", "shop.example/x"]),
            )
            .await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(body["errors"][0]["field"], "allowed_origins", "{body}");
        let saved = json(
            patch(
                &acme.key,
                serde_json::json!(["https://Shop.Acme.example/", "https://shop.acme.example"]),
            )
            .await,
            200,
        )
        .await;
        assert_eq!(
            saved["allowed_origins"],
            serde_json::json!(["https://shop.acme.example"])
        );

        let shop = "https://shop.acme.example";
        let preflight = |origin: &'static str| {
            app.client
                .request(reqwest::Method::OPTIONS, app.url("/api/v1/tenant"))
                .header("origin", origin)
                .header("access-control-request-method", "GET")
                .send()
        };
        let ok = preflight("https://shop.acme.example").await.unwrap();
        assert_eq!(ok.headers()["access-control-allow-origin"], shop);
        let evil = preflight("https://evil.example").await.unwrap();
        assert!(evil.headers().get("access-control-allow-origin").is_none());

        let from = |origin: &'static str, key: &str| {
            app.client
                .get(app.url("/api/v1/tenant"))
                .bearer_auth(key)
                .header("origin", origin)
                .send()
        };
        let r = from("https://shop.acme.example", &acme.key).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["access-control-allow-origin"], shop);
        // Acme's site is not allowed to use Bravo's key, nor is any other site Acme's.
        problem(
            from("https://shop.acme.example", &bravo.key).await.unwrap(),
            403,
            "forbidden",
        )
        .await;
        problem(
            from("https://evil.example", &acme.key).await.unwrap(),
            403,
            "forbidden",
        )
        .await;
        // Same-site calls (the console, the API docs) need no configuration.
        let same = app
            .client
            .get(app.url("/api/v1/tenant"))
            .bearer_auth(&bravo.key)
            .header("origin", app.base.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(same.status(), 200);
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused_whole() {
    for backend in backends().await {
        let app = TestApp::spawn_with(backend, &[("MAX_BODY_BYTES", "2048")]).await;
        let acme = app.tenant("acme").await;
        let big = serde_json::json!({ "name": "x".repeat(4096), "scopes": ["tenant:read"] });
        let r = app
            .send_json(reqwest::Method::POST, "/api/v1/api-keys", &acme.key, &big)
            .await;
        let body = problem(r, 413, "payload_too_large").await;
        assert!(body["detail"].as_str().unwrap().contains("2048"), "{body}");
        let keys = json(app.get("/api/v1/api-keys", &acme.key).await, 200).await;
        assert_eq!(keys.as_array().unwrap().len(), 1, "nothing was created");
    }
}

#[tokio::test]
async fn metrics_need_the_token_and_describe_traffic() {
    for backend in backends().await {
        let app = TestApp::spawn_with(
            backend,
            &[
                ("METRICS_TOKEN", "scrape-me"),
                ("RATE_LIMIT_PUBLIC_PER_MINUTE", "2"),
            ],
        )
        .await;
        let acme = app.tenant("acme").await;
        json(app.get("/api/v1/tenant", &acme.key).await, 200).await;
        problem(
            app.get("/api/v1/tenant", "apk_wrongwrongwr_x").await,
            401,
            "unauthorized",
        )
        .await;
        app.get("/api/v1/tenant", "apk_wrongwrongwr_x").await;
        problem(
            app.get("/api/v1/tenant", "apk_wrongwrongwr_x").await,
            429,
            "rate_limited",
        )
        .await;

        problem(
            app.client.get(app.url("/metrics")).send().await.unwrap(),
            401,
            "unauthorized",
        )
        .await;
        problem(app.get("/metrics", "wrong").await, 401, "unauthorized").await;
        let text = app.get("/metrics", "scrape-me").await.text().await.unwrap();
        let mut expected = vec![
            r#"http_requests_total{method="GET",route="/api/v1/tenant",status="200"}"#,
            r#"http_requests_total{method="GET",route="/api/v1/tenant",status="401"}"#,
            r#"http_request_duration_seconds_bucket{method="GET",route="/api/v1/tenant",status="200",le="0.005"}"#,
            "http_requests_in_flight",
            r#"db_pool_connections{state="open"}"#,
            r#"rate_limit_rejections_total{class="public"}"#,
        ];
        if backend == Backend::Postgres {
            expected.push(r#"redis_pool_connections{state="connected"} 4"#);
        }
        for expected in expected {
            assert!(text.contains(expected), "{expected} missing from:\n{text}");
        }
    }

    // Without a token configured the endpoint does not exist.
    let plain = TestApp::spawn(Backend::Sqlite).await;
    problem(plain.get("/metrics", "scrape-me").await, 404, "not_found").await;
}

#[tokio::test]
async fn a_stalled_request_is_answered_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(Backend::Sqlite, &[("REQUEST_TIMEOUT_SECS", "1")]).await;
    let acme = app.tenant("acme").await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // Promise a body, send one byte of it, then stall.
    let head = format!(
        "POST /api/v1/api-keys HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
        acme.key
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("answered before the test gave up")
        .unwrap();
    let status_line = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(status_line.starts_with("HTTP/1.1 408"), "{status_line}");
}
