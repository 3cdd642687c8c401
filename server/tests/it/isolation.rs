//! A key of tenant A gets 404 (or only its own data) for everything of tenant B.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn no_resource_crosses_tenants() {
    for backend in backends().await {
        let app = TestApp::spawn(backend).await;
        let a = app.tenant("alpha").await;
        let b = app.tenant("bravo").await;

        let b_keys = json(app.get("/api/v1/api-keys", &b.key).await, 200).await;
        let b_key_id = b_keys[0]["id"].as_str().unwrap().to_string();

        // Tenant: each key sees its own.
        assert_eq!(
            json(app.get("/api/v1/tenant", &a.key).await, 200).await["slug"],
            "alpha"
        );
        let renamed = app
            .send_json(
                Method::PATCH,
                "/api/v1/tenant",
                &a.key,
                &json!({ "name": "Alpha 2" }),
            )
            .await;
        assert_eq!(renamed.status(), 200);
        assert_eq!(
            json(app.get("/api/v1/tenant", &b.key).await, 200).await["name"],
            "bravo Inc"
        );

        // API keys: B's key is invisible and unrevocable for A.
        problem(
            app.get(&format!("/api/v1/api-keys/{b_key_id}"), &a.key)
                .await,
            404,
            "not_found",
        )
        .await;
        let revoke = app
            .send_json(
                Method::DELETE,
                &format!("/api/v1/api-keys/{b_key_id}"),
                &a.key,
                &json!({}),
            )
            .await;
        problem(revoke, 404, "not_found").await;
        json(app.get("/api/v1/tenant", &b.key).await, 200).await;
        let a_keys = json(app.get("/api/v1/api-keys", &a.key).await, 200).await;
        assert!(!a_keys.to_string().contains(&b_key_id));

        // Members: B's owner is not A's member.
        problem(
            app.get(&format!("/api/v1/members/{}", b.owner_id), &a.key)
                .await,
            404,
            "not_found",
        )
        .await;
        let a_members = json(app.get("/api/v1/members", &a.key).await, 200).await;
        assert!(!a_members.to_string().contains(&b.owner_email));

        // Audit: A's log holds nothing of B's.
        let a_audit = json(app.get("/api/v1/audit-log?limit=200", &a.key).await, 200).await;
        assert!(!a_audit.to_string().contains("bravo"), "{a_audit}");
        assert!(!a_audit.to_string().contains(&b.owner_email));

        // Console: A's owner cannot act on B's key through server functions either.
        let browser = app.signed_in(&a.owner_email, &a.owner_password).await;
        let r = app
            .server_fn(&browser, "revoke_api_key", &format!("id={b_key_id}"))
            .await;
        assert!(r.text().await.unwrap().contains("NotFound"));
        json(app.get("/api/v1/tenant", &b.key).await, 200).await;
        let r = app.server_fn(&browser, "list_members", "").await;
        let members = r.text().await.unwrap();
        assert!(members.contains(&a.owner_email) && !members.contains(&b.owner_email));
    }
}

/// Tenant A's resources, by the collection a path names them with (`/api/v1/<collection>/{…}`).
struct Owned {
    by_collection: std::collections::BTreeMap<&'static str, String>,
    /// Strings only tenant A's data contains.
    markers: Vec<String>,
}

impl Owned {
    async fn make(app: &TestApp, a: &Fixture) -> Owned {
        use crate::knowledge::{create_kb, file, upload};
        let kb = create_kb(
            app,
            &a.key,
            json!({ "name": "Alpha secret handbook", "description": "alpha-kb-marker" }),
        )
        .await;
        let kb = kb["id"].as_str().unwrap().to_string();
        let form = reqwest::multipart::Form::new().part(
            "files",
            file(
                "alpha.md",
                "text/markdown",
                "alpha-document-marker: the vault code",
            ),
        );
        let docs = json(upload(app, &a.key, &kb, form).await, 202).await;
        let doc = docs[0]["id"].as_str().unwrap().to_string();
        let conversation = json(
            app.send_json(Method::POST, "/api/v1/conversations", &a.key, &json!({}))
                .await,
            201,
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let turn = json(
            app.send_json(
                Method::POST,
                &format!("/api/v1/conversations/{conversation}/messages"),
                &a.key,
                &json!({ "content": "alpha-message-marker" }),
            )
            .await,
            200,
        )
        .await;
        let message = turn["reply"]["id"].as_str().unwrap().to_string();
        let agent = json(
            app.send_json(
                Method::POST,
                "/api/v1/agents",
                &a.key,
                &json!({ "name": "alphaagent", "description": "alpha-agent-marker",
                         "prompt": "You help alpha.", "tools": [], "knowledge_base_ids": [] }),
            )
            .await,
            201,
        )
        .await["name"]
            .as_str()
            .unwrap()
            .to_string();
        let rule = json(
            app.send_json(
                Method::POST,
                "/api/v1/router-rules",
                &a.key,
                &json!({ "name": "alpha-rule-marker", "agent": "sales", "kind": "keyword",
                         "pattern": "alpha" }),
            )
            .await,
            201,
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let invitation = json(
            app.send_json(
                Method::POST,
                "/api/v1/invitations",
                &a.key,
                &json!({ "email": "alpha-invitee@alpha.test", "role": "viewer" }),
            )
            .await,
            201,
        )
        .await["invitation"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let widget = json(
            app.send_json(
                Method::POST,
                "/api/v1/widgets",
                &a.key,
                &json!({ "name": "alpha-widget-marker", "allowed_domains": ["https://alpha.test"] }),
            )
            .await,
            201,
        )
        .await;
        let widget_public_id = widget["widget"]["public_id"].as_str().unwrap().to_string();
        let widget = widget["widget"]["id"].as_str().unwrap().to_string();
        let webhook = json(
            app.send_json(
                Method::POST,
                "/api/v1/webhooks",
                &a.key,
                &json!({ "url": "https://alpha-webhook-marker.example/in",
                         "events": ["message.created"] }),
            )
            .await,
            201,
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let delivery = json(
            app.send_json(
                Method::POST,
                &format!("/api/v1/webhooks/{webhook}/test"),
                &a.key,
                &json!({}),
            )
            .await,
            202,
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        json(
            app.send_json(
                Method::PUT,
                "/api/v1/email-settings",
                &a.key,
                &json!({ "provider": "sendgrid", "from": "Alpha <alpha-mail-marker@alpha.test>",
                         "api_key": "SG.alpha-key-marker" }),
            )
            .await,
            200,
        )
        .await;
        let start = (chrono::Utc::now() + chrono::Duration::days(2)).format("%Y-%m-%dT10:00");
        let booking = json(
            app.send_json(
                Method::POST,
                "/api/v1/bookings",
                &a.key,
                &json!({ "start": start.to_string(), "duration_minutes": 30,
                         "name": "alpha-booking-marker", "email": "alpha-customer@alpha.test",
                         "note": "alpha-note-marker" }),
            )
            .await,
            201,
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        json(
            app.send_json(
                Method::PUT,
                "/api/v1/chatwoot",
                &a.key,
                &json!({ "base_url": "https://alpha-chatwoot-marker.example", "account_id": 1,
                         "inbox_id": 1, "access_token": "alpha-chatwoot-token" }),
            )
            .await,
            200,
        )
        .await;
        // A Google connection of A's (made by the OAuth flow in `google.rs`; here a row, since
        // the probe never reaches Google for it).
        {
            use sea_orm::{ActiveValue::Set, EntityTrait};
            use server::store::google_connections;
            let now = chrono::Utc::now();
            google_connections::Entity::insert(google_connections::ActiveModel {
                id: Set(uuid::Uuid::now_v7()),
                tenant_id: Set(a.tenant_id),
                connected_by: Set(Some(a.owner_id)),
                access_token: Set("sealed-access".into()),
                refresh_token: Set("sealed-refresh".into()),
                expires_at: Set(now),
                scopes: Set("alpha-google-marker".into()),
                status: Set("connected".into()),
                calendar_id: Set("primary".into()),
                last_error: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
                fallback: Set("built_in".into()),
                sync_token: Set(None),
                synced_at: Set(None),
                lease_until: Set(None),
                lease_holder: Set(None),
            })
            .exec_without_returning(&app.db)
            .await
            .unwrap();
        }
        let workflow = json(
            app.send_json(
                Method::POST,
                "/api/v1/workflows",
                &a.key,
                &json!({ "name": "alpha-workflow-marker", "definition": {
                    "nodes": [{"id": "start", "kind": "manual_trigger"},
                              {"id": "ask", "kind": "approval", "config": {"prompt": "alpha-approval-marker"}}],
                    "edges": [{"from": "start", "to": "ask"}]
                }}),
            )
            .await,
            201,
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        json(
            app.send_json(
                Method::POST,
                &format!("/api/v1/workflows/{workflow}/publish"),
                &a.key,
                &json!({}),
            )
            .await,
            201,
        )
        .await;
        let run = json(
            app.send_json(
                Method::POST,
                &format!("/api/v1/workflows/{workflow}/runs"),
                &a.key,
                &json!({ "input": {"note": "alpha-run-marker"} }),
            )
            .await,
            202,
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        json(
            app.send_json(
                Method::PUT,
                "/api/v1/workflow-secrets/ALPHA_SECRET_MARKER",
                &a.key,
                &json!({ "value": "alpha-secret-value-marker" }),
            )
            .await,
            200,
        )
        .await;
        // A's playground is answered by its own conversation graph.
        let graph = json(
            app.send_json(
                Method::POST,
                "/api/v1/workflows",
                &a.key,
                &json!({ "name": "alpha-graph-marker", "definition": {
                    "nodes": [{"id": "start", "kind": "message_trigger"},
                              {"id": "answer", "kind": "specialist"},
                              {"id": "person", "kind": "handoff"}],
                    "edges": [{"from": "start", "to": "answer"},
                              {"from": "answer", "port": "handoff", "to": "person"}]
                }}),
            )
            .await,
            201,
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        json(
            app.send_json(
                Method::POST,
                &format!("/api/v1/workflows/{graph}/publish"),
                &a.key,
                &json!({}),
            )
            .await,
            201,
        )
        .await;
        json(
            app.send_json(
                Method::PUT,
                "/api/v1/conversation-graphs/console",
                &a.key,
                &json!({ "workflow_id": graph }),
            )
            .await,
            200,
        )
        .await;
        let keys = json(app.get("/api/v1/api-keys", &a.key).await, 200).await;
        let key = keys[0]["id"].as_str().unwrap().to_string();
        let jobs = json(app.get("/api/v1/jobs", &a.key).await, 200).await;
        let job = jobs["items"][0]["id"].as_str().unwrap().to_string();
        let mut by_collection = std::collections::BTreeMap::new();
        by_collection.insert("knowledge-bases", kb.clone());
        by_collection.insert("documents", doc.clone());
        by_collection.insert("conversations", conversation.clone());
        by_collection.insert("messages", message.clone());
        by_collection.insert("agents", agent);
        by_collection.insert("router-rules", rule.clone());
        by_collection.insert("invitations", invitation.clone());
        by_collection.insert("api-keys", key.clone());
        by_collection.insert("jobs", job.clone());
        by_collection.insert("members", a.owner_id.to_string());
        by_collection.insert("widgets", widget.clone());
        by_collection.insert("webhooks", webhook.clone());
        by_collection.insert("deliveries", delivery.clone());
        by_collection.insert("bookings", booking.clone());
        by_collection.insert("workflows", workflow.clone());
        by_collection.insert("versions", "1".to_string());
        by_collection.insert("workflow-runs", run.clone());
        by_collection.insert("workflow-secrets", "ALPHA_SECRET_MARKER".to_string());
        by_collection.insert("conversation-graphs", "console".to_string());
        let mut markers: Vec<String> = [
            "alpha-kb-marker",
            "alpha-document-marker",
            "alpha-message-marker",
            "alpha-agent-marker",
            "alpha-rule-marker",
            "alpha-invitee@alpha.test",
            "Alpha secret handbook",
            "alpha-widget-marker",
            "alpha-webhook-marker",
            "alpha-mail-marker",
            "alpha-key-marker",
            "alpha-booking-marker",
            "alpha-customer@alpha.test",
            "alpha-note-marker",
            "alpha-chatwoot-marker",
            "alpha-google-marker",
            "alpha-workflow-marker",
            "alpha-approval-marker",
            "alpha-run-marker",
            "alpha-secret-value-marker",
            "alpha-graph-marker",
            &widget_public_id,
            &a.owner_email,
        ]
        .into_iter()
        .map(String::from)
        .collect();
        markers.extend([
            kb,
            doc,
            conversation,
            message,
            rule,
            invitation,
            key,
            job,
            widget,
            webhook,
            delivery,
            booking,
            workflow,
            run,
            graph.clone(),
        ]);
        markers.push(a.owner_id.to_string());
        markers.push(a.tenant_id.to_string());
        Owned {
            by_collection,
            markers,
        }
    }

    /// The path with every `{param}` replaced by A's resource of the collection before it.
    fn fill(&self, path: &str) -> Result<String, String> {
        let mut filled = Vec::new();
        let mut previous = "";
        for segment in path.split('/') {
            if segment.starts_with('{') {
                let id = self
                    .by_collection
                    .get(previous)
                    .ok_or_else(|| format!("{path}: no tenant-A resource for `{previous}`"))?;
                filled.push(id.clone());
            } else {
                filled.push(segment.to_string());
                previous = segment;
            }
        }
        Ok(filled.join("/"))
    }

    fn leaked(&self, body: &str) -> Option<&str> {
        self.markers
            .iter()
            .find(|m| body.contains(m.as_str()))
            .map(String::as_str)
    }
}

/// A value the schema accepts, made of its required parts: enums take their first value,
/// uuids are `uuid` (tenant A's knowledge base, to try references across tenants too).
fn example(schema: &Value, doc: &Value, uuid: &str, depth: usize) -> Value {
    if depth > 12 {
        return Value::Null;
    }
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or_default();
        return example(&doc["components"]["schemas"][name], doc, uuid, depth + 1);
    }
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    if let Some(parts) = schema["allOf"].as_array() {
        let mut merged = serde_json::Map::new();
        for part in parts {
            if let Value::Object(fields) = example(part, doc, uuid, depth + 1) {
                merged.extend(fields);
            }
        }
        return Value::Object(merged);
    }
    for combinator in ["oneOf", "anyOf"] {
        if let Some(variants) = schema[combinator].as_array() {
            let chosen = variants
                .iter()
                .find(|v| v["type"] != "null")
                .unwrap_or(&Value::Null);
            return example(chosen, doc, uuid, depth + 1);
        }
    }
    let kind = match &schema["type"] {
        Value::Array(types) => types
            .iter()
            .find(|t| *t != "null")
            .and_then(Value::as_str)
            .unwrap_or("null"),
        other => other.as_str().unwrap_or("object"),
    };
    match kind {
        "object" => {
            let mut object = serde_json::Map::new();
            for name in schema["required"].as_array().into_iter().flatten() {
                let name = name.as_str().unwrap_or_default();
                let property = &schema["properties"][name];
                object.insert(name.to_string(), example(property, doc, uuid, depth + 1));
            }
            Value::Object(object)
        }
        "array" => {
            let min = schema["minItems"].as_u64().unwrap_or(0);
            if min == 0 {
                json!([])
            } else {
                json!([example(&schema["items"], doc, uuid, depth + 1)])
            }
        }
        "string" if schema["example"].is_string() => schema["example"].clone(),
        "string" => match schema["format"].as_str() {
            Some("uuid") => json!(uuid),
            Some("date-time") => json!(chrono::Utc::now().to_rfc3339()),
            Some("email") => json!("probe@bravo.test"),
            _ => json!("probe"),
        },
        "integer" | "number" => json!(schema["minimum"].as_f64().map_or(1, |m| m.max(1.0) as i64)),
        "boolean" => json!(false),
        _ => Value::Null,
    }
}

/// The cross-tenant probe, generated from the OpenAPI document: every (path, method) is
/// called with tenant B's key. Where the path names a resource, it names tenant A's, and the
/// answer must be 403 or 404; every answer, whatever its status, must hold none of A's data;
/// and A's resources are all still there afterwards. A new endpoint is probed without anyone
/// editing this test (a path under a collection the probe has no resource for fails it).
#[tokio::test]
async fn the_openapi_document_is_probed_across_tenants() {
    for backend in backends().await {
        let app = TestApp::spawn_with(backend, &[("JOB_POLL_MS", "50")]).await;
        let a = app.tenant("alpha").await;
        let b = app.tenant("bravo").await;
        let owned = Owned::make(&app, &a).await;
        let doc: Value = app
            .client
            .get(app.url("/api/v1/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut probed = 0;
        let mut failures = Vec::new();
        let kb = owned.by_collection["knowledge-bases"].clone();
        for (path, methods) in doc["paths"].as_object().unwrap() {
            // A visitor's endpoints take no API key; `widgets.rs` tries visitors across
            // visitors, widgets and tenants.
            // Chatwoot's hook takes no API key but a signature; `chatwoot.rs` tries forged
            // deliveries and another tenant's secret.
            if path.starts_with("/widget-api/") || path.starts_with("/hooks/") {
                continue;
            }
            for (method, operation) in methods.as_object().unwrap() {
                // Secrets are named within a tenant: B's PUT of A's name makes B's own secret,
                // and its DELETE deletes that (A's is checked untouched below). So are channels:
                // B's PUT chooses B's own graph (A's workflow is not B's to choose).
                let names_a_resource = path.contains('{')
                    && path != "/api/v1/workflow-secrets/{name}"
                    && path != "/api/v1/conversation-graphs/{channel}";
                let url = match owned.fill(path) {
                    Ok(url) => url,
                    Err(e) => {
                        failures.push(e);
                        continue;
                    }
                };
                let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let content = &operation["requestBody"]["content"];
                let query: Vec<(String, String)> = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == "query" && p["required"] == true)
                    .map(|p| {
                        let value = match example(&p["schema"], &doc, &kb, 0) {
                            Value::String(s) => s,
                            other => other.to_string(),
                        };
                        (p["name"].as_str().unwrap_or_default().to_string(), value)
                    })
                    .collect();
                let mut request = app
                    .client
                    .request(method.clone(), app.url(&url))
                    .query(&query)
                    .bearer_auth(&b.key);
                if let Some(schema) = content.get("application/json").map(|c| &c["schema"]) {
                    request = request.json(&example(schema, &doc, &kb, 0));
                } else if content.get("multipart/form-data").is_some() {
                    let form = reqwest::multipart::Form::new().part(
                        "files",
                        crate::knowledge::file("probe.md", "text/markdown", "probe"),
                    );
                    request = request.multipart(form);
                }
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                let body = response.text().await.unwrap();
                probed += 1;
                if names_a_resource && status != 403 && status != 404 {
                    failures.push(format!(
                        "{method} {path}: {status} for tenant A's resource: {body}"
                    ));
                }
                if let Some(marker) = owned.leaked(&body) {
                    failures.push(format!("{method} {path}: answer holds A's `{marker}`"));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        println!("cross-tenant probe ({backend:?}): {probed} (path, method) pairs, none crossed");
        assert!(probed >= 50, "only {probed} operations probed");

        // Nothing of A's was changed or removed by B's attempts.
        for path in [
            format!("/api/v1/knowledge-bases/{kb}"),
            format!(
                "/api/v1/knowledge-bases/{kb}/documents/{}",
                owned.by_collection["documents"]
            ),
            format!(
                "/api/v1/conversations/{}",
                owned.by_collection["conversations"]
            ),
            format!("/api/v1/api-keys/{}", owned.by_collection["api-keys"]),
            format!("/api/v1/jobs/{}", owned.by_collection["jobs"]),
            format!("/api/v1/members/{}", a.owner_id),
            format!("/api/v1/agents/{}/prompt", owned.by_collection["agents"]),
            format!("/api/v1/widgets/{}", owned.by_collection["widgets"]),
            format!("/api/v1/webhooks/{}", owned.by_collection["webhooks"]),
        ] {
            json(app.get(&path, &a.key).await, 200).await;
        }
        let booking = format!("/api/v1/bookings/{}", owned.by_collection["bookings"]);
        assert_eq!(
            json(app.get(&booking, &a.key).await, 200).await["status"],
            "confirmed"
        );
        let invitations = json(app.get("/api/v1/invitations", &a.key).await, 200).await;
        assert_eq!(invitations[0]["status"], "pending");
        let rules = json(app.get("/api/v1/router-rules", &a.key).await, 200).await;
        assert!(rules.to_string().contains("alpha-rule-marker"));
        let email = json(app.get("/api/v1/email-settings", &a.key).await, 200).await;
        assert_eq!(email["provider"], "sendgrid");
        let chatwoot = json(app.get("/api/v1/chatwoot", &a.key).await, 200).await;
        assert_eq!(
            chatwoot["base_url"],
            "https://alpha-chatwoot-marker.example"
        );
        let secrets = json(app.get("/api/v1/workflow-secrets", &a.key).await, 200).await;
        assert_eq!(secrets.as_array().unwrap().len(), 1, "{secrets:#}");
        assert_eq!(secrets[0]["name"], "ALPHA_SECRET_MARKER");
        assert_eq!(
            secrets[0]["created_at"], secrets[0]["updated_at"],
            "B's attempts changed A's secret: {secrets:#}"
        );
        let graphs = json(app.get("/api/v1/conversation-graphs", &a.key).await, 200).await;
        let console = graphs["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["channel"] == "console")
            .unwrap();
        assert_eq!(console["workflow_name"], "alpha-graph-marker", "{graphs:#}");
        let google = json(app.get("/api/v1/google-calendar", &a.key).await, 200).await;
        assert_eq!(google["fallback"], "built_in");
        assert_eq!(google["scopes"], json!(["alpha-google-marker"]));
    }
}
