//! The chat widget's server side: widgets over `/api/v1/widgets`, visitor sessions (domain
//! lock, identity verification, token expiry and rotation with reuse detection), what a
//! visitor's token reaches (and what it does not), limits, and an operator's replies reaching
//! the visitor's event stream.

use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, Response};
use serde_json::{json, Value};

use server::widget::tokens::identity_hash;

use crate::conversations::{handbook, spawn, sse};
use crate::helpers::*;

const SHOP: &str = "https://shop.example";

/// Widget settings with `changes` applied.
fn settings(changes: Value) -> Value {
    let mut s = json!({
        "name": "Shop chat",
        "greeting": "Hi! Ask us anything.",
        "starter_prompts": ["When are you open?"],
        "color": "#0F766E",
        "allowed_domains": [format!("{SHOP}/")],
    });
    for (k, v) in changes.as_object().unwrap() {
        s[k] = v.clone();
    }
    s
}

/// A new widget: (its id, public id, identity secret).
async fn widget(app: &TestApp, key: &str, changes: Value) -> (String, String, String) {
    let created = json(
        app.send_json(Method::POST, "/api/v1/widgets", key, &settings(changes))
            .await,
        201,
    )
    .await;
    (
        created["widget"]["id"].as_str().unwrap().to_string(),
        created["widget"]["public_id"].as_str().unwrap().to_string(),
        created["secret"].as_str().unwrap().to_string(),
    )
}

async fn start_session(app: &TestApp, public_id: &str, body: Value) -> Response {
    app.client
        .post(app.url(&format!("/widget-api/v1/widgets/{public_id}/sessions")))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// A session on the shop's page: (access token, refresh token, visitor id).
async fn visitor(app: &TestApp, public_id: &str) -> (String, String, String) {
    let s = json(
        start_session(app, public_id, json!({ "origin": SHOP })).await,
        201,
    )
    .await;
    (
        s["access_token"].as_str().unwrap().to_string(),
        s["refresh_token"].as_str().unwrap().to_string(),
        s["visitor"]["id"].as_str().unwrap().to_string(),
    )
}

async fn refresh(app: &TestApp, token: &str) -> Response {
    app.client
        .post(app.url("/widget-api/v1/sessions/refresh"))
        .json(&json!({ "refresh_token": token, "origin": SHOP }))
        .send()
        .await
        .unwrap()
}

async fn as_visitor(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Value,
) -> Response {
    let mut request = app
        .client
        .request(method.clone(), app.url(path))
        .bearer_auth(token);
    if method != Method::GET {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

async fn conversation(app: &TestApp, token: &str) -> String {
    json(
        as_visitor(
            app,
            Method::POST,
            "/widget-api/v1/conversations",
            token,
            json!({ "page_url": "https://shop.example/pricing" }),
        )
        .await,
        201,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Sends a message and reads the whole answer stream.
async fn send(app: &TestApp, token: &str, conversation: &str, content: &str) -> Response {
    as_visitor(
        app,
        Method::POST,
        &format!("/widget-api/v1/conversations/{conversation}/messages"),
        token,
        json!({ "content": content }),
    )
    .await
}

#[tokio::test]
async fn widgets_are_managed_over_the_api_validated_scoped_and_audited() {
    for backend in backends().await {
        let app = TestApp::spawn(backend).await;
        let f = app.tenant("acme").await;
        let created = json(
            app.send_json(
                Method::POST,
                "/api/v1/widgets",
                &f.key,
                &settings(json!({})),
            )
            .await,
            201,
        )
        .await;
        let w = &created["widget"];
        let id = w["id"].as_str().unwrap();
        let public_id = w["public_id"].as_str().unwrap();
        assert!(public_id.starts_with("wgt_"), "{w}");
        assert_eq!(created["secret"].as_str().unwrap().len(), 64);
        assert!(w["snippet"].as_str().unwrap().contains(public_id));
        assert!(w["snippet"].as_str().unwrap().contains("/widget.js"));
        assert_eq!(w["has_secret"], true);
        // Stored normalised; the secret is never shown again.
        assert_eq!(w["settings"]["allowed_domains"], json!([SHOP]));
        assert_eq!(w["settings"]["color"], "#0f766e");
        let read = json(app.get(&format!("/api/v1/widgets/{id}"), &f.key).await, 200).await;
        assert!(read.get("secret").is_none());
        assert_eq!(read["settings"]["identity"], "off");

        for (field, bad) in [
            ("color", json!("teal")),
            ("allowed_domains", json!(["shop.example"])),
            ("starter_prompts", json!(["a", "b", "c", "d", "e"])),
            ("messages_per_hour", json!(0)),
            ("max_message_length", json!(9000)),
            ("language", json!("english!")),
            ("name", json!("")),
        ] {
            let body = problem(
                app.send_json(
                    Method::POST,
                    "/api/v1/widgets",
                    &f.key,
                    &settings(json!({ field: bad })),
                )
                .await,
                422,
                "validation_failed",
            )
            .await;
            assert!(body.to_string().contains(field), "{field}: {body}");
        }
        problem(
            app.send_json(
                Method::POST,
                "/api/v1/widgets",
                &f.key,
                &settings(json!({ "agent": "nobody" })),
            )
            .await,
            422,
            "validation_failed",
        )
        .await;

        let updated = json(
            app.send_json(
                Method::PUT,
                &format!("/api/v1/widgets/{id}"),
                &f.key,
                &settings(json!({ "agent": "sales", "identity": "enforced", "name": "Sales" })),
            )
            .await,
            200,
        )
        .await;
        assert_eq!(updated["settings"]["agent"], "sales");
        assert_eq!(updated["settings"]["name"], "Sales");
        let rotated = json(
            app.send_json(
                Method::POST,
                &format!("/api/v1/widgets/{id}/rotate-secret"),
                &f.key,
                &json!({}),
            )
            .await,
            200,
        )
        .await;
        assert_ne!(rotated["secret"], created["secret"]);

        // A key that may only read widgets cannot change them.
        let reader = app.api_key(&f.key, &["widgets:read"]).await;
        assert_eq!(
            json(app.get("/api/v1/widgets", &reader).await, 200)
                .await
                .as_array()
                .unwrap()
                .len(),
            1
        );
        problem(
            app.send_json(
                Method::POST,
                "/api/v1/widgets",
                &reader,
                &settings(json!({})),
            )
            .await,
            403,
            "forbidden",
        )
        .await;

        let deleted = app
            .client
            .delete(app.url(&format!("/api/v1/widgets/{id}")))
            .bearer_auth(&f.key)
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), 204);
        problem(
            app.get(&format!("/api/v1/widgets/{id}"), &f.key).await,
            404,
            "not_found",
        )
        .await;
        problem(
            start_session(&app, public_id, json!({ "origin": SHOP })).await,
            404,
            "not_found",
        )
        .await;

        let actions = app.audit_actions(&f.key).await;
        for action in [
            "widget.create",
            "widget.update",
            "widget.rotate_secret",
            "widget.delete",
        ] {
            assert!(
                actions.iter().any(|a| a == action),
                "{action} in {actions:?}"
            );
        }
    }
}

#[tokio::test]
async fn sessions_hold_the_domain_lock_and_the_identity_rules() {
    for backend in backends().await {
        let app = TestApp::spawn(backend).await;
        let f = app.tenant("acme").await;
        let (_, open, _) = widget(&app, &f.key, json!({})).await;
        let (_, nowhere, _) = widget(&app, &f.key, json!({ "allowed_domains": [] })).await;
        let (enforced_id, enforced, secret) =
            widget(&app, &f.key, json!({ "identity": "enforced" })).await;

        // The frame's page may be framed by the allowed sites and the console only.
        let ancestors = |csp: &str| -> Vec<String> {
            let directive = csp.split("frame-ancestors ").nth(1).unwrap_or_default();
            directive
                .split(';')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .map(String::from)
                .collect()
        };
        let page = app
            .client
            .get(app.url(&format!("/widget/{open}")))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.headers().get("x-frame-options").is_none());
        let csp = page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        let sources = ancestors(&csp);
        assert_eq!(sources.len(), 3, "'self', the console and the shop: {csp}");
        assert!(sources.contains(&"'self'".to_string()) && sources.contains(&SHOP.to_string()));
        let nowhere_page = app
            .client
            .get(app.url(&format!("/widget/{nowhere}")))
            .send()
            .await
            .unwrap();
        let nowhere_csp = nowhere_page.headers()["content-security-policy"]
            .to_str()
            .unwrap();
        assert_eq!(
            ancestors(nowhere_csp).len(),
            2,
            "the console only: {nowhere_csp}"
        );
        let missing = app
            .client
            .get(app.url("/widget/wgt_missing"))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);

        let ok = json(
            start_session(&app, &open, json!({ "origin": SHOP })).await,
            201,
        )
        .await;
        assert_eq!(ok["widget"]["greeting"], "Hi! Ask us anything.");
        assert_eq!(ok["visitor"]["verified"], false);
        assert!(ok.to_string().find("allowed_domains").is_none(), "{ok}");
        for origin in [
            "https://evil.example",
            "http://shop.example",
            "https://shop.example.evil.test",
        ] {
            problem(
                start_session(&app, &open, json!({ "origin": origin })).await,
                403,
                "forbidden",
            )
            .await;
        }
        // No allowed domains: no site at all may use it.
        problem(
            start_session(&app, &nowhere, json!({ "origin": SHOP })).await,
            403,
            "forbidden",
        )
        .await;
        problem(
            start_session(&app, "wgt_doesnotexist", json!({ "origin": SHOP })).await,
            404,
            "not_found",
        )
        .await;

        // Enforced identity: nobody without the site's signature.
        problem(
            start_session(&app, &enforced, json!({ "origin": SHOP })).await,
            403,
            "forbidden",
        )
        .await;
        let id = "customer-42";
        for hash in [
            "0".repeat(64),
            identity_hash("a guessed secret", id),
            identity_hash(&secret, "customer-43"),
        ] {
            problem(
                start_session(
                    &app,
                    &enforced,
                    json!({ "origin": SHOP, "identity": { "id": id, "hash": hash } }),
                )
                .await,
                403,
                "forbidden",
            )
            .await;
        }
        let identity = json!({ "id": id, "hash": identity_hash(&secret, id),
                               "name": "Ada", "email": "Ada@Customer.test" });
        let first = json(
            start_session(
                &app,
                &enforced,
                json!({ "origin": SHOP, "identity": identity }),
            )
            .await,
            201,
        )
        .await;
        assert_eq!(first["visitor"]["verified"], true);
        assert_eq!(first["visitor"]["email"], "ada@customer.test");
        let token = first["access_token"].as_str().unwrap();
        let c = conversation(&app, token).await;
        // Another device: the same visitor, who sees the earlier conversation.
        let second = json(
            start_session(
                &app,
                &enforced,
                json!({ "origin": SHOP, "identity": identity }),
            )
            .await,
            201,
        )
        .await;
        assert_eq!(second["visitor"]["id"], first["visitor"]["id"]);
        let listed = json(
            as_visitor(
                &app,
                Method::GET,
                "/widget-api/v1/conversations",
                second["access_token"].as_str().unwrap(),
                json!({}),
            )
            .await,
            200,
        )
        .await;
        assert_eq!(listed[0]["id"], c.as_str());
        // A verified visitor's details come from the site only.
        problem(
            as_visitor(
                &app,
                Method::PATCH,
                "/widget-api/v1/visitor",
                token,
                json!({ "email": "someone@else.test" }),
            )
            .await,
            409,
            "conflict",
        )
        .await;

        // The old secret stops working once rotated.
        app.send_json(
            Method::POST,
            &format!("/api/v1/widgets/{enforced_id}/rotate-secret"),
            &f.key,
            &json!({}),
        )
        .await;
        problem(
            start_session(
                &app,
                &enforced,
                json!({ "origin": SHOP, "identity": identity }),
            )
            .await,
            403,
            "forbidden",
        )
        .await;
    }
}

#[tokio::test]
async fn visitor_tokens_expire_and_refresh_tokens_rotate_once() {
    for backend in backends().await {
        let app = TestApp::spawn_with(backend, &[("WIDGET_TOKEN_SECS", "1")]).await;
        let f = app.tenant("acme").await;
        let (_, public_id, _) = widget(&app, &f.key, json!({})).await;
        let (access, refresh_token, visitor_id) = visitor(&app, &public_id).await;
        let list = "/widget-api/v1/conversations";
        json(
            as_visitor(&app, Method::GET, list, &access, json!({})).await,
            200,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(2100)).await;
        problem(
            as_visitor(&app, Method::GET, list, &access, json!({})).await,
            401,
            "unauthorized",
        )
        .await;

        let next = json(refresh(&app, &refresh_token).await, 200).await;
        assert_eq!(
            next["visitor"]["id"],
            visitor_id.as_str(),
            "the same visitor"
        );
        let next_refresh = next["refresh_token"].as_str().unwrap();
        assert_ne!(next_refresh, refresh_token);
        json(
            as_visitor(
                &app,
                Method::GET,
                list,
                next["access_token"].as_str().unwrap(),
                json!({}),
            )
            .await,
            200,
        )
        .await;
        // The first token again: someone copied it. The whole family ends.
        problem(refresh(&app, &refresh_token).await, 401, "unauthorized").await;
        problem(refresh(&app, next_refresh).await, 401, "unauthorized").await;
        // Malformed and unknown tokens.
        problem(refresh(&app, "wrt_nope").await, 401, "unauthorized").await;
        problem(
            refresh(&app, &format!("wrt_{}", "a".repeat(43))).await,
            401,
            "unauthorized",
        )
        .await;

        // Two refreshes racing with one token: exactly one wins.
        let (_, racing, _) = visitor(&app, &public_id).await;
        let (a, b) = tokio::join!(refresh(&app, &racing), refresh(&app, &racing));
        let mut statuses = [a.status().as_u16(), b.status().as_u16()];
        statuses.sort();
        assert_eq!(statuses, [200, 401]);
    }
}

/// The hourly sweep: refresh tokens a day past expiry go; anonymous visitors idle for 30 days
/// without a conversation go with their tokens; identified visitors and visitors with a
/// conversation stay, whatever their age, in every tenant.
#[tokio::test]
async fn spent_tokens_and_idle_anonymous_visitors_are_swept() {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    use server::store::{job_schedules, widget_refresh_tokens as tokens, widget_visitors};
    use server::widget::sweep::{self, Swept};

    for backend in backends().await {
        let app = TestApp::spawn(backend).await;
        let schedules = job_schedules::Entity::find()
            .filter(job_schedules::Column::Name.eq(sweep::SCHEDULE))
            .filter(job_schedules::Column::TenantId.is_null())
            .all(&app.db)
            .await
            .unwrap();
        assert_eq!(
            schedules.len(),
            1,
            "the sweep is on the platform's schedule"
        );
        assert_eq!(schedules[0].kind, sweep::KIND);

        let mut ids = Vec::new();
        for name in ["acme", "bravo"] {
            let f = app.tenant(name).await;
            let (_, public_id, _) = widget(&app, &f.key, json!({})).await;
            let idle = visitor(&app, &public_id).await.2;
            let (talker_token, _, talker) = visitor(&app, &public_id).await;
            conversation(&app, &talker_token).await;
            let known = visitor(&app, &public_id).await.2;
            let (_, fresh_refresh, fresh) = visitor(&app, &public_id).await;
            ids.push((idle, talker, known, fresh, fresh_refresh));
        }
        let uuid = |s: &str| s.parse::<uuid::Uuid>().unwrap();
        let long_ago = chrono::Utc::now() - chrono::Duration::days(sweep::IDLE_DAYS + 1);
        for (idle, talker, known, _, _) in &ids {
            widget_visitors::Entity::update_many()
                .col_expr(widget_visitors::Column::LastSeenAt, Expr::value(long_ago))
                .filter(widget_visitors::Column::Id.is_in([uuid(idle), uuid(talker), uuid(known)]))
                .exec(&app.db)
                .await
                .unwrap();
            widget_visitors::Entity::update_many()
                .col_expr(
                    widget_visitors::Column::ExternalId,
                    Expr::value("customer-7"),
                )
                .filter(widget_visitors::Column::Id.eq(uuid(known)))
                .exec(&app.db)
                .await
                .unwrap();
        }
        // The fresh visitors' first refresh tokens: used, and expired two days ago.
        let (_, _, _, fresh, fresh_refresh) = &ids[0];
        let next = json(refresh(&app, fresh_refresh).await, 200).await;
        tokens::Entity::update_many()
            .col_expr(
                tokens::Column::ExpiresAt,
                Expr::value(chrono::Utc::now() - chrono::Duration::days(2)),
            )
            .filter(tokens::Column::VisitorId.eq(uuid(fresh)))
            .filter(tokens::Column::UsedAt.is_not_null())
            .exec(&app.db)
            .await
            .unwrap();

        let swept = sweep::sweep(&app.db).await.unwrap();
        assert_eq!(
            swept,
            Swept {
                refresh_tokens: 3,
                visitors: 2
            },
            "two idle visitors' tokens and one expired token"
        );
        for (idle, talker, known, fresh, _) in &ids {
            let left = |id: &str| {
                let id = uuid(id);
                let db = app.db.clone();
                async move {
                    widget_visitors::Entity::find_by_id(id)
                        .one(&db)
                        .await
                        .unwrap()
                        .is_some()
                }
            };
            assert!(!left(idle).await, "the idle anonymous visitor is gone");
            assert!(left(talker).await, "a visitor with a conversation stays");
            assert!(left(known).await, "an identified visitor stays");
            assert!(left(fresh).await);
            let tokens_left = tokens::Entity::find()
                .filter(tokens::Column::VisitorId.eq(uuid(idle)))
                .count(&app.db)
                .await
                .unwrap();
            assert_eq!(tokens_left, 0);
        }
        // The fresh visitor's current token still works; the swept one is unknown now.
        json(
            refresh(&app, next["refresh_token"].as_str().unwrap()).await,
            200,
        )
        .await;
        problem(refresh(&app, fresh_refresh).await, 401, "unauthorized").await;
        assert_eq!(sweep::sweep(&app.db).await.unwrap(), Swept::default());
    }
}

#[tokio::test]
async fn a_visitor_reaches_only_their_own_conversations() {
    for backend in backends().await {
        let app = spawn(backend, None, &[]).await;
        let a = app.tenant("alpha").await;
        let b = app.tenant("bravo").await;
        handbook(&app, &a.key).await;
        let (widget_id, w1, _) = widget(&app, &a.key, json!({})).await;
        let (_, w2, _) = widget(&app, &a.key, json!({})).await;
        let (_, wb, _) = widget(&app, &b.key, json!({})).await;
        let (owner, _, owner_id) = visitor(&app, &w1).await;
        let c = conversation(&app, &owner).await;

        let answer = send(&app, &owner, &c, "When are you open on Saturday?").await;
        assert_eq!(answer.status(), 200);
        let events = sse(&answer.text().await.unwrap());
        let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
        assert!(names.contains(&"message.delta"), "{names:?}");
        assert_eq!(names.last(), Some(&"message.done"), "{names:?}");
        for internal in ["tool.call", "tool.result", "agent.handoff"] {
            assert!(!names.contains(&internal), "{names:?}");
        }
        let transcript = json(
            as_visitor(
                &app,
                Method::GET,
                &format!("/widget-api/v1/conversations/{c}"),
                &owner,
                json!({}),
            )
            .await,
            200,
        )
        .await;
        let messages = transcript["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 2, "{transcript}");
        assert_eq!(messages[1]["role"], "assistant");
        assert!(messages[1]["html"].as_str().unwrap().starts_with('<'));
        assert!(
            messages[1].get("usage").is_none(),
            "no internals: {transcript}"
        );
        let answer_id = messages[1]["id"].as_str().unwrap().to_string();

        // The tenant sees it on the Conversations page's API, with where it came from.
        let listed = json(
            app.get("/api/v1/conversations?channel=widget", &a.key)
                .await,
            200,
        )
        .await;
        let seen = &listed["items"][0];
        assert_eq!(seen["id"], c.as_str());
        assert_eq!(seen["widget"]["widget_id"], widget_id.as_str());
        assert_eq!(seen["widget"]["page_url"], "https://shop.example/pricing");
        assert_eq!(seen["widget"]["visitor"]["id"], owner_id.as_str());

        let (other, _, _) = visitor(&app, &w1).await;
        let (elsewhere, _, _) = visitor(&app, &w2).await;
        let (foreign, _, _) = visitor(&app, &wb).await;
        for (who, token) in [
            ("another visitor", &other),
            ("another widget's", &elsewhere),
            ("another tenant's", &foreign),
        ] {
            for (method, path, body) in [
                (
                    Method::GET,
                    format!("/widget-api/v1/conversations/{c}"),
                    json!({}),
                ),
                (
                    Method::GET,
                    format!("/widget-api/v1/conversations/{c}/events"),
                    json!({}),
                ),
                (
                    Method::POST,
                    format!("/widget-api/v1/conversations/{c}/messages"),
                    json!({ "content": "let me in" }),
                ),
                (
                    Method::POST,
                    format!("/widget-api/v1/conversations/{c}/messages/{answer_id}/feedback"),
                    json!({ "rating": "down" }),
                ),
                (
                    Method::POST,
                    format!("/widget-api/v1/conversations/{c}/rating"),
                    json!({ "score": 1 }),
                ),
            ] {
                let r = as_visitor(&app, method.clone(), &path, token, body).await;
                assert_eq!(r.status(), 404, "{who}: {method} {path}");
            }
            let listed = json(
                as_visitor(
                    &app,
                    Method::GET,
                    "/widget-api/v1/conversations",
                    token,
                    json!({}),
                )
                .await,
                200,
            )
            .await;
            assert_eq!(listed, json!([]), "{who}");
        }
        // A visitor's token is no API key, and an API key is no visitor's token.
        for path in ["/api/v1/tenant", "/api/v1/conversations", "/api/v1/widgets"] {
            problem(app.get(path, &owner).await, 401, "unauthorized").await;
        }
        problem(
            as_visitor(
                &app,
                Method::GET,
                "/widget-api/v1/conversations",
                &a.key,
                json!({}),
            )
            .await,
            401,
            "unauthorized",
        )
        .await;
        // Nothing of B's visitor's attempts landed in A's conversation.
        let after = json(
            app.get(&format!("/api/v1/conversations/{c}"), &a.key).await,
            200,
        )
        .await;
        assert_eq!(after["messages"].as_array().unwrap().len(), 2);
        assert!(after["conversation"]["widget"]["csat"].is_null());
        assert!(after["messages"][1]["feedback"].is_null());

        // The owner rates the answer and the conversation.
        json(
            as_visitor(
                &app,
                Method::POST,
                &format!("/widget-api/v1/conversations/{c}/messages/{answer_id}/feedback"),
                &owner,
                json!({ "rating": "up" }),
            )
            .await,
            200,
        )
        .await;
        problem(
            as_visitor(
                &app,
                Method::POST,
                &format!("/widget-api/v1/conversations/{c}/rating"),
                &owner,
                json!({ "score": 6 }),
            )
            .await,
            422,
            "validation_failed",
        )
        .await;
        json(
            as_visitor(
                &app,
                Method::POST,
                &format!("/widget-api/v1/conversations/{c}/rating"),
                &owner,
                json!({ "score": 5, "comment": "Quick and clear" }),
            )
            .await,
            200,
        )
        .await;
        let rated = json(
            app.get(&format!("/api/v1/conversations/{c}"), &a.key).await,
            200,
        )
        .await;
        assert_eq!(rated["conversation"]["widget"]["csat"], 5);
        assert_eq!(
            rated["conversation"]["widget"]["csat_comment"],
            "Quick and clear"
        );
        assert_eq!(rated["messages"][1]["feedback"], "up");
    }
}

#[tokio::test]
async fn visitors_are_held_to_the_widgets_limits() {
    for backend in backends().await {
        let app = TestApp::spawn(backend).await;
        let f = app.tenant("acme").await;
        let (_, public_id, _) = widget(
            &app,
            &f.key,
            json!({ "messages_per_hour": 2, "max_message_length": 20, "prechat": "required" }),
        )
        .await;
        let (token, _, _) = visitor(&app, &public_id).await;
        // The pre-chat form first.
        problem(
            as_visitor(
                &app,
                Method::POST,
                "/widget-api/v1/conversations",
                &token,
                json!({}),
            )
            .await,
            422,
            "validation_failed",
        )
        .await;
        problem(
            as_visitor(
                &app,
                Method::PATCH,
                "/widget-api/v1/visitor",
                &token,
                json!({ "name": "Ada", "email": "not an email" }),
            )
            .await,
            422,
            "validation_failed",
        )
        .await;
        json(
            as_visitor(
                &app,
                Method::PATCH,
                "/widget-api/v1/visitor",
                &token,
                json!({ "name": "Ada", "email": "ada@customer.test" }),
            )
            .await,
            200,
        )
        .await;
        let c = conversation(&app, &token).await;
        let long = send(&app, &token, &c, "this message is far too long for it").await;
        let body = problem(long, 422, "validation_failed").await;
        assert!(body.to_string().contains("at most 20"), "{body}");
        for _ in 0..2 {
            let r = send(&app, &token, &c, "hello").await;
            assert_eq!(r.status(), 200);
            r.text().await.unwrap();
        }
        let refused = send(&app, &token, &c, "hello").await;
        assert!(refused.headers().contains_key("retry-after"));
        assert_eq!(refused.headers()["ratelimit-remaining"], "0");
        problem(refused, 429, "rate_limited").await;
        // Another visitor of the same widget has their own budget.
        let (second, _, _) = visitor(&app, &public_id).await;
        as_visitor(
            &app,
            Method::PATCH,
            "/widget-api/v1/visitor",
            &second,
            json!({ "name": "Bo", "email": "bo@customer.test" }),
        )
        .await;
        let c2 = conversation(&app, &second).await;
        assert_eq!(send(&app, &second, &c2, "hello").await.status(), 200);
    }
}

/// Reads an event stream until `found` holds for the events so far (or 20 s pass).
async fn follow_until(
    response: Response,
    found: impl Fn(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let events = sse(&text);
        if found(&events) {
            return events;
        }
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(bytes))) => text.push_str(&String::from_utf8_lossy(&bytes)),
            _ => panic!("the stream ended or stalled; so far: {events:?}"),
        }
    }
}

#[tokio::test]
async fn an_operators_take_over_and_replies_reach_the_visitor_live() {
    for backend in backends().await {
        let app = TestApp::spawn(backend).await;
        let f = app.tenant("acme").await;
        let (_, public_id, _) = widget(&app, &f.key, json!({})).await;
        let (token, _, _) = visitor(&app, &public_id).await;
        let c = conversation(&app, &token).await;
        let events = app
            .client
            .get(app.url(&format!("/widget-api/v1/conversations/{c}/events")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(events.status(), 200);
        let operator = tokio::spawn({
            let (base, key, c) = (app.base.clone(), f.key.clone(), c.clone());
            async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let http = client();
                for (path, body) in [
                    (format!("/api/v1/conversations/{c}/take-over"), json!({})),
                    (
                        format!("/api/v1/conversations/{c}/replies"),
                        json!({ "content": "Hi, this is **Sam** from the shop." }),
                    ),
                ] {
                    let r = http
                        .post(format!("{base}{path}"))
                        .bearer_auth(&key)
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success(), "{path}: {}", r.status());
                }
            }
        });
        let seen = follow_until(events, |events| {
            events
                .iter()
                .any(|(e, d)| e == "message" && d["role"] == "operator")
        })
        .await;
        operator.await.unwrap();
        assert!(
            seen.iter()
                .any(|(e, d)| e == "status" && d["status"] == "human"),
            "{seen:?}"
        );
        let (_, reply) = seen.iter().find(|(e, _)| e == "message").unwrap();
        assert_eq!(
            reply["html"],
            "<p>Hi, this is <strong>Sam</strong> from the shop.</p>\n"
        );

        // While a person owns it the bot stays silent; the visitor's message waits for them.
        let quiet = send(&app, &token, &c, "Thanks Sam").await;
        let names: Vec<String> = sse(&quiet.text().await.unwrap())
            .into_iter()
            .map(|(e, _)| e)
            .collect();
        assert_eq!(names, ["message.done"]);

        // Resuming after the operator's reply gives what came later, nothing twice.
        let reply_id = reply["id"].as_str().unwrap();
        let resumed = app
            .client
            .get(app.url(&format!("/widget-api/v1/conversations/{c}/events")))
            .header("last-event-id", reply_id)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let later =
            follow_until(resumed, |events| events.iter().any(|(e, _)| e == "message")).await;
        let messages: Vec<&Value> = later
            .iter()
            .filter(|(e, _)| e == "message")
            .map(|(_, d)| d)
            .collect();
        assert_eq!(messages.len(), 1, "{later:?}");
        assert_eq!(messages[0]["content"], "Thanks Sam");
    }
}
