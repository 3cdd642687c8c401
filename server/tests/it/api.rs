//! The REST API: keys, scopes, errors, settings, audit log.

use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn key_lifecycle_with_scopes_and_revocation() {
    for backend in backends().await {
        let app = TestApp::spawn(backend).await;
        let acme = app.tenant("acme").await;

        let tenant = json(app.get("/api/v1/tenant", &acme.key).await, 200).await;
        assert_eq!(tenant["slug"], "acme");

        let created = json(
            app.send_json(
                Method::POST,
                "/api/v1/api-keys",
                &acme.key,
                &json!({ "name": "reader", "scopes": ["tenant:read"] }),
            )
            .await,
            201,
        )
        .await;
        let secret = created["secret"].as_str().expect("secret").to_string();
        let id = created["key"]["id"].as_str().expect("id").to_string();
        assert!(secret.starts_with(created["key"]["prefix"].as_str().unwrap()));
        assert!(secret.starts_with("apk_"));

        json(app.get("/api/v1/tenant", &secret).await, 200).await;
        let denied = problem(app.get("/api/v1/api-keys", &secret).await, 403, "forbidden").await;
        assert!(denied["detail"].as_str().unwrap().contains("api_keys:read"));
        let escalation = app
            .send_json(
                Method::POST,
                "/api/v1/api-keys",
                &secret,
                &json!({"name": "x", "scopes": ["tenant:read"]}),
            )
            .await;
        problem(escalation, 403, "forbidden").await;

        // The list never carries secrets; it shows the new key.
        let list = json(app.get("/api/v1/api-keys", &acme.key).await, 200).await;
        assert_eq!(list.as_array().unwrap().len(), 2);
        assert!(!list.to_string().contains(&secret));

        let revoked = json(
            app.send_json(
                Method::DELETE,
                &format!("/api/v1/api-keys/{id}"),
                &acme.key,
                &json!({}),
            )
            .await,
            200,
        )
        .await;
        assert!(revoked["revoked_at"].is_string());
        problem(
            app.get("/api/v1/tenant", &secret).await,
            401,
            "unauthorized",
        )
        .await;
        // Revoking twice is harmless.
        json(
            app.send_json(
                Method::DELETE,
                &format!("/api/v1/api-keys/{id}"),
                &acme.key,
                &json!({}),
            )
            .await,
            200,
        )
        .await;

        // Use is recorded (off the request path, so allow it a moment).
        let mut used = false;
        for _ in 0..50 {
            let key = json(
                app.get(&format!("/api/v1/api-keys/{id}"), &acme.key).await,
                200,
            )
            .await;
            if key["last_used_at"].is_string() {
                used = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(used, "{backend:?}: last_used_at was never set");
    }
}

#[tokio::test]
async fn errors_are_problem_json() {
    for backend in backends().await {
        let app = TestApp::spawn(backend).await;
        let acme = app.tenant("acme").await;

        let anonymous = app
            .client
            .get(app.url("/api/v1/tenant"))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
        problem(anonymous, 401, "unauthorized").await;
        problem(
            app.get("/api/v1/tenant", "apk_notarealkey1_abcdef").await,
            401,
            "unauthorized",
        )
        .await;
        let forged = format!("{}x", acme.key);
        problem(
            app.get("/api/v1/tenant", &forged).await,
            401,
            "unauthorized",
        )
        .await;

        let invalid = app
            .send_json(
                Method::POST,
                "/api/v1/api-keys",
                &acme.key,
                &json!({ "name": " ", "scopes": ["nope:read", "tenant:admin"] }),
            )
            .await;
        let body = problem(invalid, 422, "validation_failed").await;
        let fields: Vec<&str> = body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["name", "scopes[0]", "scopes[1]"], "{body}");

        let no_scopes = app
            .send_json(
                Method::POST,
                "/api/v1/api-keys",
                &acme.key,
                &json!({ "name": "x", "scopes": [] }),
            )
            .await;
        problem(no_scopes, 422, "validation_failed").await;

        let malformed = app
            .client
            .post(app.url("/api/v1/api-keys"))
            .bearer_auth(&acme.key)
            .header("content-type", "application/json")
            .body("{\"name\": ")
            .send()
            .await
            .unwrap();
        problem(malformed, 422, "validation_failed").await;

        let missing = format!("/api/v1/api-keys/{}", uuid::Uuid::new_v4());
        problem(app.get(&missing, &acme.key).await, 404, "not_found").await;
        problem(
            app.get("/api/v1/api-keys/not-a-uuid", &acme.key).await,
            404,
            "not_found",
        )
        .await;
        problem(
            app.get("/api/v1/no-such-thing", &acme.key).await,
            404,
            "not_found",
        )
        .await;

        // Nothing was lost or half-written by the rejected requests.
        let list = json(app.get("/api/v1/api-keys", &acme.key).await, 200).await;
        assert_eq!(list.as_array().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn tenant_settings_are_validated_and_audited() {
    for backend in backends().await {
        let app = TestApp::spawn(backend).await;
        let acme = app.tenant("acme").await;

        let bad = app
            .send_json(
                Method::PATCH,
                "/api/v1/tenant",
                &acme.key,
                &json!({
                    "name": "",
                    "timezone": "Mars/Olympus",
                    "business_hours": [{ "weekday": 0, "open": "18:00", "close": "09:00" }]
                }),
            )
            .await;
        let body = problem(bad, 422, "validation_failed").await;
        assert_eq!(body["errors"].as_array().unwrap().len(), 3, "{body}");

        let good = app
            .send_json(Method::PATCH, "/api/v1/tenant", &acme.key, &json!({
                "name": "Acme Dental",
                "timezone": "Europe/Berlin",
                "business_hours": [{ "weekday": 5, "open": "10:00", "close": "14:00" }, { "weekday": 1, "open": "08:00", "close": "18:00" }]
            }))
            .await;
        let tenant = json(good, 200).await;
        assert_eq!(tenant["name"], "Acme Dental");
        assert_eq!(tenant["timezone"], "Europe/Berlin");
        assert_eq!(
            tenant["business_hours"][0]["weekday"], 1,
            "sorted by weekday"
        );

        let audit = json(
            app.get("/api/v1/audit-log?action=tenant.update", &acme.key)
                .await,
            200,
        )
        .await;
        let items = audit["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert!(items[0]["actor"].as_str().unwrap().starts_with("key:apk_"));
    }
}

#[tokio::test]
async fn audit_log_is_filtered_and_cursor_paginated() {
    for backend in backends().await {
        let app = TestApp::spawn(backend).await;
        let acme = app.tenant("acme").await;
        for i in 0..7 {
            let r = app
                .send_json(
                    Method::POST,
                    "/api/v1/api-keys",
                    &acme.key,
                    &json!({ "name": format!("k{i}"), "scopes": ["audit:read"] }),
                )
                .await;
            assert_eq!(r.status(), 201);
        }
        let mut seen = Vec::new();
        let mut path = "/api/v1/audit-log?action=api_key.create&limit=3".to_string();
        loop {
            let page = json(app.get(&path, &acme.key).await, 200).await;
            let items = page["items"].as_array().unwrap();
            assert!(items.len() <= 3);
            seen.extend(items.iter().map(|e| e["id"].as_i64().unwrap()));
            match page["next_cursor"].as_str() {
                Some(c) => {
                    path = format!("/api/v1/audit-log?action=api_key.create&limit=3&cursor={c}")
                }
                None => break,
            }
        }
        // 7 created here plus the fixture's own key, newest first, each once.
        assert_eq!(seen.len(), 8, "{seen:?}");
        assert!(seen.windows(2).all(|w| w[0] > w[1]), "{seen:?}");

        let by_cli = json(app.get("/api/v1/audit-log?actor=cli", &acme.key).await, 200).await;
        assert!(by_cli["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"] == "cli"));
        assert!(!by_cli["items"].as_array().unwrap().is_empty());

        let future = json(
            app.get("/api/v1/audit-log?since=2999-01-01T00:00:00Z", &acme.key)
                .await,
            200,
        )
        .await;
        assert!(future["items"].as_array().unwrap().is_empty());
        assert!(future["next_cursor"].is_null());

        problem(
            app.get("/api/v1/audit-log?limit=0", &acme.key).await,
            422,
            "validation_failed",
        )
        .await;
        problem(
            app.get("/api/v1/audit-log?cursor=abc", &acme.key).await,
            422,
            "validation_failed",
        )
        .await;
        problem(
            app.get("/api/v1/audit-log?since=yesterday", &acme.key)
                .await,
            422,
            "validation_failed",
        )
        .await;
    }
}
