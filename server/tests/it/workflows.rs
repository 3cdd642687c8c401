//! Workflows end to end over the REST API, on SQLite and on PostgreSQL + Redis: drafts,
//! publishing (problems refused), versions, diff and restore; runs as jobs against a real HTTP
//! server on loopback; retries; compensation newest first when a later step fails (a booking
//! cancelled, a compensating request sent, itself retried); approvals pausing a run pinned to
//! its version; cancellation; a worker killed mid-run; limits; another tenant's workflows
//! and runs out of reach.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method as HttpMethod, StatusCode};
use axum::routing::any;
use axum::Router;
use reqwest::Method;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{json, Value};

use server::store::{bookings, jobs as job_rows, workflow_steps};

use crate::helpers::*;
use crate::jobs::{wait_for, worker_process};

/// One request the fake service got.
#[derive(Clone, Debug)]
struct Hit {
    method: String,
    path: String,
    key: String,
}

/// An HTTP service on loopback: records every request to `/{name}` and answers with the
/// statuses scripted for that name (200 with `{"id": "<name>-1"}` once they run out), after
/// `delay_ms` when one is set.
#[derive(Clone, Default)]
struct Service {
    base: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    script: Arc<Mutex<HashMap<String, VecDeque<u16>>>>,
    delay_ms: Arc<Mutex<u64>>,
}

impl Service {
    async fn start() -> Service {
        let mut service = Service::default();
        let router = Router::new()
            .route("/{name}", any(hit))
            .with_state(service.clone());
        service.base = format!("http://{}", serve_fake(router).await);
        service
    }

    fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base)
    }

    fn answer(&self, name: &str, statuses: &[u16]) {
        self.script
            .lock()
            .unwrap()
            .insert(name.into(), statuses.iter().copied().collect());
    }

    fn hits(&self, name: &str) -> Vec<Hit> {
        let path = format!("/{name}");
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path == path)
            .cloned()
            .collect()
    }

    fn all(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
}

async fn hit(
    State(service): State<Service>,
    Path(name): Path<String>,
    method: HttpMethod,
    headers: HeaderMap,
) -> (StatusCode, axum::Json<Value>) {
    service.hits.lock().unwrap().push(Hit {
        method: method.to_string(),
        path: format!("/{name}"),
        key: headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
    });
    let delay = *service.delay_ms.lock().unwrap();
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = service
        .script
        .lock()
        .unwrap()
        .get_mut(&name)
        .and_then(VecDeque::pop_front)
        .unwrap_or(200);
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({ "id": format!("{name}-1"), "status": status })),
    )
}

const SETTINGS: [(&str, &str); 2] = [("JOB_POLL_MS", "50"), ("FETCH_ALLOW_PRIVATE", "true")];

async fn create(app: &TestApp, key: &str, name: &str, definition: Value) -> Value {
    json(
        app.send_json(
            Method::POST,
            "/api/v1/workflows",
            key,
            &json!({ "name": name, "definition": definition }),
        )
        .await,
        201,
    )
    .await
}

async fn publish(app: &TestApp, key: &str, id: &str, note: &str) -> Value {
    json(
        app.send_json(
            Method::POST,
            &format!("/api/v1/workflows/{id}/publish"),
            key,
            &json!({ "note": note }),
        )
        .await,
        201,
    )
    .await
}

async fn start(app: &TestApp, key: &str, id: &str, body: Value) -> String {
    let run = json(
        app.send_json(
            Method::POST,
            &format!("/api/v1/workflows/{id}/runs"),
            key,
            &body,
        )
        .await,
        202,
    )
    .await;
    run["id"].as_str().unwrap().to_string()
}

async fn run_detail(app: &TestApp, key: &str, run: &str) -> Value {
    json(
        app.get(&format!("/api/v1/workflow-runs/{run}"), key).await,
        200,
    )
    .await
}

/// The run once its status is one of `statuses` (waits up to 60 s).
async fn run_until(app: &TestApp, key: &str, run: &str, statuses: &[&str]) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let detail = run_detail(app, key, run).await;
        let status = detail["run"]["status"].as_str().unwrap().to_string();
        if statuses.contains(&status.as_str()) {
            return detail;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run stayed {status}: {detail:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn tomorrow_local(hour: u32) -> String {
    let lisbon: chrono_tz::Tz = "Europe/Lisbon".parse().unwrap();
    let day = chrono::Utc::now().with_timezone(&lisbon).date_naive() + chrono::Duration::days(1);
    format!("{day}T{hour:02}:00")
}

fn node(id: &str, kind: &str, config: Value) -> Value {
    json!({ "id": id, "kind": kind, "config": config })
}

fn edge(from: &str, to: &str) -> Value {
    json!({ "from": from, "to": to })
}

fn edge_by(from: &str, port: &str, to: &str) -> Value {
    json!({ "from": from, "port": port, "to": to })
}

/// A workflow started by hand that does nothing.
fn by_hand() -> Value {
    json!({
        "nodes": [node("start", "manual_trigger", json!({})), node("done", "end", json!({}))],
        "edges": [edge("start", "done")]
    })
}

/// Replaces the workflow's draft with `definition` (on its current revision).
async fn replace_draft(app: &TestApp, key: &str, id: &str, definition: Value) -> Value {
    let current = json(app.get(&format!("/api/v1/workflows/{id}"), key).await, 200).await;
    json(
        app.send_json(
            Method::PATCH,
            &format!("/api/v1/workflows/{id}"),
            key,
            &json!({"draft": definition, "base_revision": current["draft_revision"]}),
        )
        .await,
        200,
    )
    .await
}

#[tokio::test]
async fn a_workflow_is_drafted_published_run_and_versioned() {
    for backend in backends().await {
        let app = TestApp::spawn_with(backend, &SETTINGS).await;
        let f = app.tenant("acme").await;
        let service = Service::start().await;
        let definition = json!({
            "nodes": [
                node("start", "manual_trigger", json!({})),
                node("who", "set", json!({"values": {"greeting": "Hello {{ trigger.name }}"}})),
                node("lookup", "http", json!({"method": "POST", "url": service.url("lookup"), "body": {"name": "{{ trigger.name }}"}})),
                node("vip", "condition", json!({"expression": "trigger.amount > 100"})),
                node("big", "end", json!({"output": {"text": "{{ vars.greeting }}, big spender ({{ nodes.lookup.body.id }})"}})),
                node("small", "end", json!({"output": {"text": "{{ vars.greeting }}"}}))
            ],
            "edges": [
                edge("start", "who"), edge("who", "lookup"), edge("lookup", "vip"),
                edge_by("vip", "true", "big"), edge_by("vip", "false", "small")
            ]
        });
        let wf = create(&app, &f.key, "Greeter", definition).await;
        let id = wf["id"].as_str().unwrap().to_string();
        assert_eq!(wf["problems"], json!([]), "{wf:#}");
        assert_eq!(wf["draft_revision"], 1);

        // Nothing published yet: a run is refused.
        let refused = app
            .send_json(
                Method::POST,
                &format!("/api/v1/workflows/{id}/runs"),
                &f.key,
                &json!({}),
            )
            .await;
        problem(refused, 409, "conflict").await;

        let v1 = publish(&app, &f.key, &id, "first").await;
        assert_eq!(v1["number"], 1);
        let run = start(
            &app,
            &f.key,
            &id,
            json!({"input": {"name": "Ada", "amount": 500}}),
        )
        .await;
        let done = run_until(&app, &f.key, &run, &["succeeded", "failed"]).await;
        assert_eq!(done["run"]["status"], "succeeded", "{done:#}");
        assert_eq!(
            done["run"]["output"]["text"],
            "Hello Ada, big spender (lookup-1)"
        );
        assert_eq!(done["run"]["version"], 1);
        let path: Vec<&str> = done["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["node"].as_str().unwrap())
            .collect();
        assert_eq!(path, ["start", "who", "lookup", "vip", "big"]);
        assert_eq!(done["steps"][3]["port"], "true");
        let hits = service.hits("lookup");
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].method, "POST");
        assert_eq!(
            hits[0].key,
            format!("wf:{run}:2"),
            "the step's idempotency key"
        );

        // A stale save is refused; a current one moves the revision.
        let mut changed = wf["draft"].clone();
        changed["nodes"][5]["config"]["output"]["text"] = json!("Hi {{ trigger.name }}");
        changed["nodes"][5]["position"] = json!({"x": 300.0, "y": 40.0});
        let saved = json(
            app.send_json(
                Method::PATCH,
                &format!("/api/v1/workflows/{id}"),
                &f.key,
                &json!({"draft": changed, "base_revision": 1}),
            )
            .await,
            200,
        )
        .await;
        assert_eq!(saved["draft_revision"], 2);
        let stale = app
            .send_json(
                Method::PATCH,
                &format!("/api/v1/workflows/{id}"),
                &f.key,
                &json!({"description": "lost update", "base_revision": 1}),
            )
            .await;
        problem(stale, 409, "conflict").await;
        publish(&app, &f.key, &id, "friendlier").await;

        // Runs are pinned to the version they start on.
        let old = start(
            &app,
            &f.key,
            &id,
            json!({"input": {"name": "Bo", "amount": 1}, "version": 1}),
        )
        .await;
        let new = start(
            &app,
            &f.key,
            &id,
            json!({"input": {"name": "Bo", "amount": 1}}),
        )
        .await;
        let old = run_until(&app, &f.key, &old, &["succeeded"]).await;
        let new = run_until(&app, &f.key, &new, &["succeeded"]).await;
        assert_eq!(old["run"]["output"]["text"], "Hello Bo");
        assert_eq!(new["run"]["output"]["text"], "Hi Bo");
        assert_eq!(new["run"]["version"], 2);
        let listed = json(
            app.get(&format!("/api/v1/workflows/{id}/runs?version=1"), &f.key)
                .await,
            200,
        )
        .await;
        assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed:#}");

        // The diff names the changed configuration and the moved node; restore brings v1 back.
        let diff = json(
            app.get(&format!("/api/v1/workflows/{id}/diff?from=1&to=2"), &f.key)
                .await,
            200,
        )
        .await;
        assert_eq!(
            diff["changed_nodes"],
            json!([{"node": "small", "fields": ["config.output"]}]),
            "{diff:#}"
        );
        assert_eq!(diff["to_draft"], false);
        // Without `to`, against the draft (here the same as version 2).
        let to_draft = json(
            app.get(&format!("/api/v1/workflows/{id}/diff?from=1"), &f.key)
                .await,
            200,
        )
        .await;
        assert_eq!(
            (to_draft["to"].clone(), to_draft["to_draft"].clone()),
            (json!(0), json!(true))
        );
        assert_eq!(
            to_draft["changed_nodes"], diff["changed_nodes"],
            "{to_draft:#}"
        );
        let restored = json(
            app.send_json(
                Method::POST,
                &format!("/api/v1/workflows/{id}/versions/1/restore"),
                &f.key,
                &json!({}),
            )
            .await,
            200,
        )
        .await;
        assert_eq!(restored["draft"], v1["definition"]);

        // A draft with problems saves, but does not publish; the problems name their nodes.
        let mut broken = restored["draft"].clone();
        broken["nodes"][4]["config"]["output"]["text"] = json!("{{ nodes.ghost.text }}");
        broken["edges"]
            .as_array_mut()
            .unwrap()
            .push(edge_by("vip", "maybe", "small"));
        let saved = json(
            app.send_json(
                Method::PATCH,
                &format!("/api/v1/workflows/{id}"),
                &f.key,
                &json!({"draft": broken}),
            )
            .await,
            200,
        )
        .await;
        assert_eq!(saved["problems"].as_array().unwrap().len(), 2, "{saved:#}");
        let refused = problem(
            app.send_json(
                Method::POST,
                &format!("/api/v1/workflows/{id}/publish"),
                &f.key,
                &json!({}),
            )
            .await,
            422,
            "validation_failed",
        )
        .await;
        let text = refused.to_string();
        assert!(
            text.contains("draft.nodes.big") && text.contains("ghost"),
            "{refused:#}"
        );
        assert!(
            text.contains("draft.nodes.vip") && text.contains("maybe"),
            "{refused:#}"
        );

        // Export and import make the same workflow elsewhere.
        let exported = json(
            app.get(&format!("/api/v1/workflows/{id}/export"), &f.key)
                .await,
            200,
        )
        .await;
        let imported = create(&app, &f.key, "Greeter copy", exported.clone()).await;
        assert_eq!(imported["draft"], exported);

        let actions = app.audit_actions(&f.key).await;
        for action in [
            "workflow.create",
            "workflow.update",
            "workflow.publish",
            "workflow.run",
            "workflow.restore",
        ] {
            assert!(
                actions.iter().any(|a| a == action),
                "{action} in {actions:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_failed_step_compensates_the_earlier_ones_newest_first() {
    for backend in backends().await {
        let app = TestApp::spawn_with(backend, &SETTINGS).await;
        let f = app.tenant("acme").await;
        crate::conversations::open_every_day(&app, &f).await;
        let service = Service::start().await;
        // The charge fails twice (it is retried) and for good; the refund fails once (the
        // compensation is retried too).
        service.answer("charge", &[503, 503, 503]);
        service.answer("refund", &[500]);
        let definition = json!({
            "nodes": [
                node("start", "manual_trigger", json!({})),
                node("book", "booking", json!({"starts_at": tomorrow_local(10), "minutes": 30, "name": "{{ trigger.name }}", "email": "{{ trigger.email }}"})),
                node("reserve", "http", json!({"method": "POST", "url": service.url("reserve"),
                    "compensation": {"method": "DELETE", "url": service.url("refund"), "body": {"reservation": "{{ nodes.reserve.body.id }}"}}})),
                {"id": "charge", "kind": "http", "config": {"method": "POST", "url": service.url("charge")},
                 "retry": {"attempts": 3, "initial_ms": 50, "max_ms": 200}},
                node("done", "end", json!({}))
            ],
            "edges": [edge("start", "book"), edge("book", "reserve"), edge("reserve", "charge"), edge("charge", "done")]
        });
        let wf = create(&app, &f.key, "Book and charge", definition).await;
        let id = wf["id"].as_str().unwrap().to_string();
        publish(&app, &f.key, &id, "").await;
        let run = start(
            &app,
            &f.key,
            &id,
            json!({"input": {"name": "Rui", "email": "rui@example.com"}}),
        )
        .await;
        let done = run_until(&app, &f.key, &run, &["failed", "succeeded"]).await;
        assert_eq!(done["run"]["status"], "failed", "{done:#}");
        assert!(
            done["run"]["error"].as_str().unwrap().contains("charge"),
            "{done:#}"
        );
        assert_eq!(done["run"]["compensation"], "full", "{done:#}");
        assert_eq!(service.hits("charge").len(), 3, "three attempts");
        let charge_steps: Vec<&Value> = done["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["node"] == "charge")
            .collect();
        assert_eq!(charge_steps.len(), 3);
        assert!(charge_steps.iter().all(|s| s["status"] == "failed"));
        assert!(charge_steps[2]["error"].as_str().unwrap().contains("503"));

        // Compensations: the reservation's (retried once) before the booking's.
        let comps = done["compensations"].as_array().unwrap();
        assert_eq!(comps.len(), 2, "{done:#}");
        let (booking_comp, refund) = (&comps[0], &comps[1]);
        assert_eq!(booking_comp["node"], "book");
        assert_eq!(booking_comp["status"], "done");
        assert_eq!(refund["node"], "reserve");
        assert_eq!(refund["status"], "done");
        assert_eq!(refund["attempts"], 2);
        let refunds = service.hits("refund");
        assert_eq!(refunds.len(), 2);
        assert_eq!(refunds[0].method, "DELETE");
        let refund_at: chrono::DateTime<chrono::Utc> =
            refund["finished_at"].as_str().unwrap().parse().unwrap();
        let unbook_at: chrono::DateTime<chrono::Utc> = booking_comp["finished_at"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(refund_at <= unbook_at, "newest first");

        // The booking exists, cancelled, and names the run.
        let booking_id = done["steps"][1]["output"]["booking_id"]
            .as_str()
            .unwrap()
            .to_string();
        let booking = json(
            app.get(&format!("/api/v1/bookings/{booking_id}"), &f.key)
                .await,
            200,
        )
        .await;
        assert_eq!(booking["status"], "cancelled", "{booking:#}");
        assert_eq!(booking["source"], "workflow");

        // A run that succeeds releases its compensations.
        service.answer("charge", &[]);
        let ok = start(
            &app,
            &f.key,
            &id,
            json!({"input": {"name": "Ana", "email": "ana@example.com"}}),
        )
        .await;
        // Same slot: the first booking was cancelled, so it is free again.
        let ok = run_until(&app, &f.key, &ok, &["failed", "succeeded"]).await;
        assert_eq!(ok["run"]["status"], "succeeded", "{ok:#}");
        assert!(ok["compensations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "released"));
        assert_eq!(service.hits("refund").len(), 2, "nothing undone");
    }
}

#[tokio::test]
async fn an_approval_pauses_a_run_pinned_to_its_version_and_a_cancel_ends_one() {
    for backend in backends().await {
        let app = TestApp::spawn_with(backend, &SETTINGS).await;
        let f = app.tenant("acme").await;
        let definition = json!({
            "nodes": [
                node("start", "manual_trigger", json!({})),
                node("ask", "approval", json!({"prompt": "Refund {{ trigger.amount }} EUR?"})),
                node("yes", "end", json!({"output": {"text": "approved v1 by {{ nodes.ask.by }}"}})),
                node("no", "end", json!({"output": {"text": "rejected: {{ nodes.ask.comment }}"}}))
            ],
            "edges": [edge("start", "ask"), edge_by("ask", "approved", "yes"), edge_by("ask", "rejected", "no")]
        });
        let wf = create(&app, &f.key, "Refunds", definition).await;
        let id = wf["id"].as_str().unwrap().to_string();
        publish(&app, &f.key, &id, "").await;
        let first = start(&app, &f.key, &id, json!({"input": {"amount": 40}})).await;
        let second = start(&app, &f.key, &id, json!({"input": {"amount": 900}})).await;
        let third = start(&app, &f.key, &id, json!({"input": {"amount": 7}})).await;
        let waiting = run_until(&app, &f.key, &first, &["waiting"]).await;
        assert_eq!(
            waiting["run"]["waiting"],
            json!({"type": "approval", "node": "ask", "prompt": "Refund 40 EUR?"})
        );

        // v2 changes the approved branch; the waiting run stays on v1.
        let mut v2 = wf["draft"].clone();
        v2["nodes"][2]["config"]["output"]["text"] = json!("approved v2");
        app.send_json(
            Method::PATCH,
            &format!("/api/v1/workflows/{id}"),
            &f.key,
            &json!({"draft": v2}),
        )
        .await;
        publish(&app, &f.key, &id, "v2").await;

        let decide = |run: String, body: Value| {
            let app = &app;
            let key = f.key.clone();
            async move {
                app.send_json(
                    Method::POST,
                    &format!("/api/v1/workflow-runs/{run}/decision"),
                    &key,
                    &body,
                )
                .await
            }
        };
        json(decide(first.clone(), json!({"approved": true})).await, 202).await;
        problem(
            decide(first.clone(), json!({"approved": false})).await,
            409,
            "conflict",
        )
        .await;
        let done = run_until(&app, &f.key, &first, &["succeeded", "failed"]).await;
        let text = done["run"]["output"]["text"].as_str().unwrap();
        assert!(text.starts_with("approved v1 by key:"), "{done:#}");

        run_until(&app, &f.key, &second, &["waiting"]).await;
        json(
            decide(
                second.clone(),
                json!({"approved": false, "comment": "too much"}),
            )
            .await,
            202,
        )
        .await;
        let rejected = run_until(&app, &f.key, &second, &["succeeded"]).await;
        assert_eq!(rejected["run"]["output"]["text"], "rejected: too much");

        run_until(&app, &f.key, &third, &["waiting"]).await;
        let refused = app
            .client
            .delete(app.url(&format!("/api/v1/workflows/{id}")))
            .bearer_auth(&f.key)
            .send()
            .await
            .unwrap();
        let refused = problem(refused, 409, "conflict").await;
        assert!(
            refused.to_string().contains("1 runs have not finished"),
            "{refused}"
        );
        json(
            app.send_json(
                Method::POST,
                &format!("/api/v1/workflow-runs/{third}/cancel"),
                &f.key,
                &json!({}),
            )
            .await,
            202,
        )
        .await;
        let cancelled = run_until(&app, &f.key, &third, &["cancelled"]).await;
        assert_eq!(cancelled["run"]["compensation"], "nothing");
        problem(
            app.send_json(
                Method::POST,
                &format!("/api/v1/workflow-runs/{third}/cancel"),
                &f.key,
                &json!({}),
            )
            .await,
            409,
            "conflict",
        )
        .await;
        // The workflow cannot go while runs are unfinished; it can once they are done.
        let deleted = app
            .client
            .delete(app.url(&format!("/api/v1/workflows/{id}")))
            .bearer_auth(&f.key)
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), 204);
    }
}

#[tokio::test]
async fn workflows_and_runs_of_another_tenant_are_out_of_reach() {
    for backend in backends().await {
        let app = TestApp::spawn_with(backend, &SETTINGS).await;
        let acme = app.tenant("acme").await;
        let rival = app.tenant("rival").await;
        let definition = json!({
            "nodes": [node("start", "manual_trigger", json!({})), node("ask", "approval", json!({}))],
            "edges": [edge("start", "ask")]
        });
        let wf = create(&app, &acme.key, "Secret", definition).await;
        let id = wf["id"].as_str().unwrap().to_string();
        publish(&app, &acme.key, &id, "").await;
        let run = start(&app, &acme.key, &id, json!({})).await;
        run_until(&app, &acme.key, &run, &["waiting"]).await;

        let listed = json(app.get("/api/v1/workflows", &rival.key).await, 200).await;
        assert_eq!(listed, json!([]));
        for path in [
            format!("/api/v1/workflows/{id}"),
            format!("/api/v1/workflows/{id}/versions"),
            format!("/api/v1/workflows/{id}/versions/1"),
            format!("/api/v1/workflows/{id}/runs"),
            format!("/api/v1/workflows/{id}/export"),
            format!("/api/v1/workflow-runs/{run}"),
        ] {
            problem(app.get(&path, &rival.key).await, 404, "not_found").await;
        }
        for (path, body) in [
            (format!("/api/v1/workflows/{id}/publish"), json!({})),
            (format!("/api/v1/workflows/{id}/runs"), json!({})),
            (
                format!("/api/v1/workflows/{id}/versions/1/restore"),
                json!({}),
            ),
            (
                format!("/api/v1/workflows/{id}/test-node"),
                json!({"node": "ask"}),
            ),
            (format!("/api/v1/workflow-runs/{run}/cancel"), json!({})),
            (
                format!("/api/v1/workflow-runs/{run}/decision"),
                json!({"approved": true}),
            ),
        ] {
            let r = app.send_json(Method::POST, &path, &rival.key, &body).await;
            problem(r, 404, "not_found").await;
        }
        let r = app
            .send_json(
                Method::PATCH,
                &format!("/api/v1/workflows/{id}"),
                &rival.key,
                &json!({"name": "mine"}),
            )
            .await;
        problem(r, 404, "not_found").await;
        assert_eq!(
            run_detail(&app, &acme.key, &run).await["run"]["status"],
            "waiting",
            "untouched"
        );

        // Scopes: a read-only key reads but cannot start or decide.
        let reader = app.api_key(&acme.key, &["workflows:read"]).await;
        json(
            app.get(&format!("/api/v1/workflow-runs/{run}"), &reader)
                .await,
            200,
        )
        .await;
        let r = app
            .send_json(
                Method::POST,
                &format!("/api/v1/workflow-runs/{run}/decision"),
                &reader,
                &json!({"approved": true}),
            )
            .await;
        problem(r, 403, "forbidden").await;
        let none = app.api_key(&acme.key, &["knowledge:read"]).await;
        problem(app.get("/api/v1/workflows", &none).await, 403, "forbidden").await;
    }
}

#[tokio::test]
async fn one_node_is_tried_with_sample_values_and_nothing_is_sent() {
    for backend in backends().await {
        let app = TestApp::spawn_with(backend, &SETTINGS).await;
        let f = app.tenant("acme").await;
        let service = Service::start().await;
        let definition = json!({
            "nodes": [
                node("start", "manual_trigger", json!({})),
                node("greet", "template", json!({"template": "Hello {{ trigger.name }}, number {{ nodes.count.n }}"})),
                node("vip", "condition", json!({"expression": "trigger.amount > 100"})),
                node("charge", "http", json!({
                    "method": "POST", "url": service.url("charge"),
                    "body": {"amount": "{{ trigger.amount }}"},
                    "compensation": {"url": service.url("refund")}
                })),
                node("mail", "email", json!({"to": "{{ trigger.email }}", "subject": "Hi {{ trigger.name }}"})),
                node("broken", "template", json!({"template": "{{ trigger.missing.deeper }}"})),
                node("unset", "booking", json!({"starts_at": "{{ trigger.when }}"}))
            ],
            "edges": [
                edge("start", "greet"), edge("greet", "vip"), edge_by("vip", "true", "charge"),
                edge("charge", "mail"), edge_by("vip", "false", "broken")
            ]
        });
        let wf = create(&app, &f.key, "Trial", definition).await;
        let id = wf["id"].as_str().unwrap().to_string();
        let jobs_before = job_rows::Entity::find().count(&app.db).await.unwrap();
        let reader = app.api_key(&f.key, &["workflows:read"]).await;
        let trial = |node: &'static str, amount: u32| {
            let (app, id, reader) = (&app, id.clone(), reader.clone());
            async move {
                let body = json!({
                    "node": node,
                    "trigger": {"name": "Ada", "amount": amount, "email": "ada@example.com"},
                    "nodes": {"count": {"n": 7}}
                });
                json(
                    app.send_json(
                        Method::POST,
                        &format!("/api/v1/workflows/{id}/test-node"),
                        &reader,
                        &body,
                    )
                    .await,
                    200,
                )
                .await
            }
        };

        let greet = trial("greet", 150).await;
        assert_eq!(
            greet["output"],
            json!({"text": "Hello Ada, number 7"}),
            "{greet:#}"
        );
        assert_eq!(greet["error"], Value::Null);
        assert_eq!(trial("vip", 150).await["port"], "true");
        let small = trial("vip", 50).await;
        assert_eq!(
            (small["port"].clone(), small["output"].clone()),
            (json!("false"), json!({"result": false}))
        );
        // Effects are shown filled in, not made: no request, no email job.
        let charge = trial("charge", 150).await;
        assert_eq!(charge["rendered"]["url"], service.url("charge"));
        assert_eq!(charge["rendered"]["body"]["amount"], "150");
        assert!(
            charge["rendered"].get("compensation").is_none(),
            "{charge:#}"
        );
        assert!(charge["note"].as_str().unwrap().contains("does not"));
        assert_eq!(charge["output"], Value::Null);
        let mail = trial("mail", 150).await;
        assert_eq!(
            (
                mail["rendered"]["to"].clone(),
                mail["rendered"]["subject"].clone()
            ),
            (json!("ada@example.com"), json!("Hi Ada"))
        );
        assert!(service.all().is_empty(), "{:?}", service.all());
        assert_eq!(
            job_rows::Entity::find().count(&app.db).await.unwrap(),
            jobs_before
        );
        // A template that fails, and a configuration that is incomplete, say why.
        let broken = trial("broken", 150).await;
        assert!(
            broken["error"]
                .as_str()
                .unwrap()
                .contains("`trigger.missing.deeper` is not set"),
            "{broken:#}"
        );
        // The configuration being edited, not yet saved, is what is tried.
        let edited = json(
            app.send_json(
                Method::POST,
                &format!("/api/v1/workflows/{id}/test-node"),
                &f.key,
                &json!({"trigger": {"name": "Bo"}, "step": node("draft", "template", json!({"template": "Bye {{ trigger.name }}"}))}),
            )
            .await,
            200,
        )
        .await;
        assert_eq!(edited["output"], json!({"text": "Bye Bo"}));
        let unset = trial("unset", 150).await;
        assert!(
            unset["error"]
                .as_str()
                .unwrap()
                .contains("`name` is required"),
            "{unset:#}"
        );

        let r = app
            .send_json(
                Method::POST,
                &format!("/api/v1/workflows/{id}/test-node"),
                &f.key,
                &json!({"node": "ghost"}),
            )
            .await;
        problem(r, 422, "validation_failed").await;
    }
}

#[tokio::test]
async fn hostile_definitions_and_inputs_get_clear_errors() {
    for backend in backends().await {
        let app = TestApp::spawn_with(backend, &SETTINGS).await;
        let f = app.tenant("acme").await;
        // Too many nodes.
        let nodes: Vec<Value> = (0..501)
            .map(|i| node(&format!("n{i}"), "template", json!({"template": "x"})))
            .collect();
        let r = app
            .send_json(
                Method::POST,
                "/api/v1/workflows",
                &f.key,
                &json!({"name": "huge", "definition": {"nodes": nodes}}),
            )
            .await;
        problem(r, 422, "validation_failed").await;
        // A template that would loop for ever runs out of fuel: the step fails, the worker lives.
        let definition = json!({
            "nodes": [
                node("start", "manual_trigger", json!({})),
                node("spin", "template", json!({"template": "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"}))
            ],
            "edges": [edge("start", "spin")]
        });
        let wf = create(&app, &f.key, "Spinner", definition).await;
        let id = wf["id"].as_str().unwrap().to_string();
        publish(&app, &f.key, &id, "").await;
        let run = start(&app, &f.key, &id, json!({})).await;
        let done = run_until(&app, &f.key, &run, &["failed", "succeeded"]).await;
        assert_eq!(done["run"]["status"], "failed");
        assert!(
            done["run"]["error"].as_str().unwrap().contains("fuel"),
            "{done:#}"
        );
        // A huge input is refused before anything runs.
        let big = "x".repeat(70 * 1024);
        let r = app
            .send_json(
                Method::POST,
                &format!("/api/v1/workflows/{id}/runs"),
                &f.key,
                &json!({"input": {"text": big}}),
            )
            .await;
        problem(r, 422, "validation_failed").await;
        // An internal address is refused when the platform forbids them (the default).
        let strict = TestApp::spawn_with(backend, &[("JOB_POLL_MS", "50")]).await;
        let g = strict.tenant("strict").await;
        let definition = json!({
            "nodes": [
                node("start", "manual_trigger", json!({})),
                node("peek", "http", json!({"url": "http://169.254.169.254/latest/meta-data"}))
            ],
            "edges": [edge("start", "peek")]
        });
        let wf = create(&strict, &g.key, "Peek", definition).await;
        let id = wf["id"].as_str().unwrap().to_string();
        publish(&strict, &g.key, &id, "").await;
        let run = start(&strict, &g.key, &id, json!({})).await;
        let done = run_until(&strict, &g.key, &run, &["failed", "succeeded"]).await;
        assert_eq!(done["run"]["status"], "failed");
        assert!(
            done["run"]["error"]
                .as_str()
                .unwrap()
                .contains("169.254.169.254"),
            "{done:#}"
        );
    }
}

#[tokio::test]
async fn a_killed_worker_resumes_the_run_and_applies_no_step_twice() {
    for backend in backends().await {
        let app = TestApp::spawn_with(backend, &[("JOBS_IN_PROCESS", "false")]).await;
        let f = app.tenant("acme").await;
        crate::conversations::open_every_day(&app, &f).await;
        let service = Service::start().await;
        *service.delay_ms.lock().unwrap() = 400;
        let mut nodes = vec![node("start", "manual_trigger", json!({}))];
        let mut edges = Vec::new();
        let mut previous = "start".to_string();
        for i in 0..6 {
            let id = format!("call{i}");
            nodes.push(json!({"id": id, "kind": "http", "config": {"method": "POST", "url": service.url(&id)}, "timeout_ms": 3000}));
            edges.push(edge(&previous, &id));
            previous = id;
            if i == 2 {
                nodes.push(node("book", "booking", json!({"starts_at": tomorrow_local(11), "name": "Rui", "email": "rui@example.com"})));
                edges.push(edge(&previous, "book"));
                previous = "book".into();
            }
        }
        let wf = create(
            &app,
            &f.key,
            "Long",
            json!({"nodes": nodes, "edges": edges}),
        )
        .await;
        let id = wf["id"].as_str().unwrap().to_string();
        publish(&app, &f.key, &id, "").await;
        let run = start(&app, &f.key, &id, json!({})).await;

        let settings = [("JOB_LEASE_SECS", "2"), ("FETCH_ALLOW_PRIVATE", "true")];
        let mut first = worker_process(&app, &settings);
        wait_for("two calls", Duration::from_secs(60), async || {
            service.all().len() >= 2
        })
        .await;
        first.start_kill().unwrap(); // SIGKILL, in the middle of a call
        first.wait().await.unwrap();
        let at_kill = run_detail(&app, &f.key, &run).await;
        assert_ne!(at_kill["run"]["status"], "succeeded");
        let _second = worker_process(&app, &settings);
        let done = run_until(&app, &f.key, &run, &["succeeded", "failed"]).await;
        assert_eq!(done["run"]["status"], "succeeded", "{done:#}");

        // Every step completed once; a call the killed worker had sent was sent again with
        // the same idempotency key, so the service can tell.
        let steps = workflow_steps::Entity::find()
            .filter(workflow_steps::Column::RunId.eq(run.parse::<uuid::Uuid>().unwrap()))
            .filter(workflow_steps::Column::Status.eq("succeeded"))
            .all(&app.db)
            .await
            .unwrap();
        let mut seqs: Vec<i32> = steps.iter().map(|s| s.seq).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (0..8).collect::<Vec<_>>(), "each step once");
        let mut keys: Vec<String> = service.all().into_iter().map(|h| h.key).collect();
        let sent = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 6, "one key per call step");
        assert!(
            sent > 6,
            "the call in flight at the kill was sent again, with its key"
        );
        let booked = bookings::Entity::find()
            .filter(bookings::Column::TenantId.eq(f.tenant_id))
            .count(&app.db)
            .await
            .unwrap();
        assert_eq!(booked, 1, "the booking was made once");
        let jobs = job_rows::Entity::find()
            .filter(job_rows::Column::Kind.eq("workflow.run"))
            .count(&app.db)
            .await
            .unwrap();
        assert!(jobs >= 1);
    }
}

#[tokio::test]
async fn an_email_step_is_sent_once_and_followed_up_when_the_run_fails() {
    for backend in backends().await {
        let smtp = crate::fake_smtp::FakeSmtp::start().await;
        let url = smtp.url();
        let app = TestApp::spawn_with(
            backend,
            &[
                ("JOB_POLL_MS", "50"),
                ("FETCH_ALLOW_PRIVATE", "true"),
                ("SMTP_FROM", "Acme Desk <desk@acme.test>"),
                ("SMTP_URL", url.as_str()),
            ],
        )
        .await;
        let f = app.tenant("acme").await;
        let service = Service::start().await;
        service.answer("crm", &[422]);
        let definition = json!({
            "nodes": [
                node("start", "manual_trigger", json!({})),
                node("welcome", "email", json!({
                    "to": "{{ trigger.email }}", "subject": "Welcome, {{ trigger.name }}",
                    "body": "Your account is being set up.",
                    "compensation": {"subject": "About our last message", "body": "Setting up your account failed; we will be in touch."}
                })),
                node("crm", "http", json!({"method": "POST", "url": service.url("crm")})),
                node("done", "end", json!({}))
            ],
            "edges": [edge("start", "welcome"), edge("welcome", "crm"), edge("crm", "done")]
        });
        let wf = create(&app, &f.key, "Onboarding", definition).await;
        let id = wf["id"].as_str().unwrap().to_string();
        publish(&app, &f.key, &id, "").await;
        let run = start(
            &app,
            &f.key,
            &id,
            json!({"input": {"name": "Ada", "email": "ada@example.com"}}),
        )
        .await;
        let done = run_until(&app, &f.key, &run, &["failed", "succeeded"]).await;
        assert_eq!(done["run"]["status"], "failed", "{done:#}");
        assert!(
            done["run"]["error"].as_str().unwrap().contains("422"),
            "{done:#}"
        );
        assert_eq!(done["run"]["compensation"], "full", "{done:#}");
        assert_eq!(done["steps"][1]["output"]["to"], "ada@example.com");

        let received = smtp.wait_for(2, Duration::from_secs(30)).await;
        let mut subjects: Vec<String> = received
            .iter()
            .map(|m| m.header("Subject").unwrap_or_default())
            .collect();
        subjects.sort();
        assert_eq!(subjects, ["About our last message", "Welcome, Ada"]);
        assert!(received.iter().all(|m| m.rcpt_to == ["ada@example.com"]));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(smtp.received().len(), 2, "each once");
    }
}

/// The steps of a finished run's trace for `node`.
fn steps_of<'a>(detail: &'a Value, node: &str) -> Vec<&'a Value> {
    detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["node"] == node)
        .collect()
}

#[tokio::test]
async fn ai_steps_classify_search_knowledge_ask_for_fields_and_switch() {
    use crate::knowledge::create_kb;
    use server::llm::fake::{text, FakeLlm, CHAT_MODEL, ROUTER_MODEL};
    for backend in backends().await {
        let fake = FakeLlm::start().await.unwrap();
        let app = crate::conversations::spawn(backend, Some(&fake), &[]).await;
        let f = app.tenant("acme").await;
        let other = app.tenant("other").await;
        crate::conversations::handbook(&app, &f.key).await;
        // Another tenant's knowledge, and an internal one of this tenant: never searched.
        crate::conversations::handbook(&app, &other.key).await;
        create_kb(
            &app,
            &f.key,
            json!({"name": "Payroll", "visibility": "internal"}),
        )
        .await;
        let definition = json!({
            "nodes": [
                node("start", "manual_trigger", json!({})),
                node("topic", "classifier", json!({"input": "{{ trigger.question }}", "classes": {
                    "hours": "Opening hours and visits", "billing": "Invoices and payments"}})),
                node("lookup", "knowledge", json!({"query": "{{ trigger.question }}", "top_k": 3})),
                {"id": "answer", "kind": "llm", "config": {
                    "system": "Answer from the passages only.",
                    "prompt": "{{ nodes.lookup.text }}\n\nQuestion: {{ trigger.question }}",
                    "output": {"answer": "string", "confident": "boolean"}},
                 "retry": {"attempts": 2, "initial_ms": 20, "max_ms": 40}},
                node("sure", "switch", json!({"value": "{{ nodes.answer.confident }}", "cases": {"yes": "true"}})),
                node("done", "end", json!({"output": {"answer": "{{ nodes.answer.answer }}", "topic": "{{ nodes.topic.class }}"}})),
                node("escalate", "end", json!({"output": {"escalated": "{{ trigger.question }}"}})),
                node("bill", "end", json!({"output": {"billing": "yes"}}))
            ],
            "edges": [
                edge("start", "topic"), edge_by("topic", "hours", "lookup"),
                edge_by("topic", "billing", "bill"), edge_by("topic", "other", "escalate"),
                edge("lookup", "answer"), edge("answer", "sure"),
                edge_by("sure", "yes", "done"), edge_by("sure", "default", "escalate")
            ]
        });
        let wf = create(&app, &f.key, "Answer from knowledge", definition).await;
        assert_eq!(wf["problems"], json!([]), "{wf:#}");
        let id = wf["id"].as_str().unwrap().to_string();
        publish(&app, &f.key, &id, "").await;
        let ask = |question: &'static str| {
            let (app, key, id) = (&app, f.key.clone(), id.clone());
            async move {
                let run = start(app, &key, &id, json!({"input": {"question": question}})).await;
                run_until(app, &key, &run, &["failed", "succeeded"]).await
            }
        };

        // Classified, searched, answered with fields, switched on one of them.
        fake.route(text(r#"{"class": "hours"}"#));
        fake.chat(text(
            r#"{"answer": "From ten to one.", "confident": true, "note": "dropped"}"#,
        ));
        let done = ask("When do you open on Saturdays?").await;
        assert_eq!(done["run"]["status"], "succeeded", "{done:#}");
        assert_eq!(
            done["run"]["output"],
            json!({"answer": "From ten to one.", "topic": "hours"}),
            "{done:#}"
        );
        assert_eq!(steps_of(&done, "topic")[0]["port"], "hours");
        let lookup = &steps_of(&done, "lookup")[0]["output"];
        let passages = lookup["passages"].as_array().unwrap();
        assert!(!passages.is_empty() && passages.len() <= 3, "{lookup:#}");
        assert!(
            lookup["text"].as_str().unwrap().contains("ten to one"),
            "{lookup:#}"
        );
        assert_eq!(steps_of(&done, "answer")[0]["output"]["confident"], true);
        assert_eq!(steps_of(&done, "sure")[0]["port"], "yes");
        // What the model was asked: the classes by the router model; the passages and the
        // fields' schema by the chat model.
        let routed = fake.requests_for(ROUTER_MODEL).pop().unwrap();
        assert!(
            routed.to_string().contains("Invoices and payments"),
            "{routed:#}"
        );
        let asked = fake.requests_for(CHAT_MODEL).pop().unwrap();
        let format = &asked["response_format"];
        assert_eq!(format["type"], "json_schema", "{asked:#}");
        assert_eq!(
            format["json_schema"]["schema"]["required"],
            json!(["answer", "confident"])
        );
        let prompt = asked["messages"][1]["content"].to_string();
        assert!(prompt.contains("ten to one"), "{prompt}");
        assert_eq!(
            prompt.matches("Saturdays the shop opens").count(),
            1,
            "one tenant's handbook, not the other's: {prompt}"
        );

        // An answer without the fields fails the attempt; the retry asks again, and an unsure
        // answer takes the switch's default.
        fake.route(text("hours"));
        fake.chat(text("Sorry, I am not sure."));
        fake.chat(text(r#"{"answer": "Maybe.", "confident": false}"#));
        let unsure = ask("Are you open on holidays?").await;
        assert_eq!(unsure["run"]["status"], "succeeded", "{unsure:#}");
        let attempts = steps_of(&unsure, "answer");
        assert_eq!(attempts.len(), 2, "{unsure:#}");
        assert!(attempts[0]["error"]
            .as_str()
            .unwrap()
            .contains("not a JSON object"));
        assert_eq!(steps_of(&unsure, "sure")[0]["port"], "default");
        assert_eq!(
            unsure["run"]["output"]["escalated"],
            "Are you open on holidays?"
        );

        // No class fits: `other`. The model down: the step fails with the provider's error.
        fake.route(text(r#"{"class": "weather"}"#));
        let other_topic = ask("Will it rain?").await;
        assert_eq!(steps_of(&other_topic, "topic")[0]["port"], "other");
        assert_eq!(other_topic["run"]["output"]["escalated"], "Will it rain?");
        fake.set_down(Some(500));
        let down = ask("When do you open?").await;
        assert_eq!(down["run"]["status"], "failed", "{down:#}");
        assert!(
            steps_of(&down, "topic")[0]["error"]
                .as_str()
                .unwrap()
                .contains("LLM"),
            "{down:#}"
        );
        fake.set_down(None);

        // Every call the steps made is the tenant's usage, the failed attempt's too.
        assert_eq!(done["run"]["usage"]["llm_calls"], 2, "{done:#}");
        assert_eq!(unsure["run"]["usage"]["llm_calls"], 3, "{unsure:#}");
        assert!(unsure["run"]["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
        assert_eq!(down["run"]["usage"]["llm_calls"], 0, "{down:#}");
        let usage = json(app.get("/api/v1/usage", &f.key).await, 200).await;
        assert_eq!(usage["workflow_runs"], 4, "{usage:#}");
        assert_eq!(usage["llm_calls"], 2 + 3 + 1, "{usage:#}");
        let theirs = json(app.get("/api/v1/usage", &other.key).await, 200).await;
        assert_eq!(
            (
                theirs["workflow_runs"].as_u64(),
                theirs["llm_calls"].as_u64()
            ),
            (Some(0), Some(0)),
            "{theirs:#}"
        );

        // A knowledge base is named: one of this tenant's that agents read, or the step fails.
        let trial = |node: Value, trigger: Value| {
            let (app, key, id) = (&app, f.key.clone(), id.clone());
            async move {
                let body =
                    json!({"node": node["id"], "trigger": trigger, "nodes": {}, "step": node});
                json(
                    app.send_json(
                        Method::POST,
                        &format!("/api/v1/workflows/{id}/test-node"),
                        &key,
                        &body,
                    )
                    .await,
                    200,
                )
                .await
            }
        };
        let question = json!({"question": "Where can I park?"});
        let named = trial(
            node(
                "lookup",
                "knowledge",
                json!({"query": "{{ trigger.question }}", "knowledge_base": "handbook"}),
            ),
            question.clone(),
        )
        .await;
        assert!(
            named["output"]["text"]
                .as_str()
                .unwrap()
                .contains("Parking"),
            "{named:#}"
        );
        for hidden in ["Payroll", "missing"] {
            let refused = trial(
                node(
                    "lookup",
                    "knowledge",
                    json!({"query": "{{ trigger.question }}", "knowledge_base": hidden}),
                ),
                question.clone(),
            )
            .await;
            assert!(
                refused["error"]
                    .as_str()
                    .unwrap()
                    .contains("no knowledge base that agents read"),
                "{refused:#}"
            );
        }
        // Testing an LLM step asks the model (so a read-only key may not); testing a switch
        // decides on the sample.
        let reader = app.api_key(&f.key, &["workflows:read"]).await;
        let refused = app
            .send_json(
                Method::POST,
                &format!("/api/v1/workflows/{id}/test-node"),
                &reader,
                &json!({"node": "answer", "trigger": question, "nodes": {}}),
            )
            .await;
        assert_eq!(refused.status(), 403);
        fake.chat(text("Free, behind the shop."));
        let asked = trial(
            node("free", "llm", json!({"prompt": "{{ trigger.question }}"})),
            question.clone(),
        )
        .await;
        assert_eq!(asked["output"], json!({"text": "Free, behind the shop."}));
        // That call is the tenant's usage too, counted as a step tried (and not the other's).
        let after = json(app.get("/api/v1/usage", &f.key).await, 200).await;
        assert_eq!(after["step_tests"], 1, "{after:#}");
        assert_eq!(after["workflow_runs"], usage["workflow_runs"]);
        assert_eq!(
            after["llm_calls"].as_u64().unwrap(),
            usage["llm_calls"].as_u64().unwrap() + 1,
            "{after:#}"
        );
        let theirs = json(app.get("/api/v1/usage", &other.key).await, 200).await;
        assert_eq!(theirs["step_tests"], 0, "{theirs:#}");
        let switched = trial(
            node(
                "plan",
                "switch",
                json!({"value": "{{ trigger.plan }}", "cases": {"gold": "gold"}}),
            ),
            json!({"plan": "gold"}),
        )
        .await;
        assert_eq!(switched["port"], "gold", "{switched:#}");

        // Problems: a port a switch lacks, a bad output type.
        let draft = json!({
            "nodes": [
                node("start", "manual_trigger", json!({})),
                node("plan", "switch", json!({"value": "{{ trigger.plan }}", "cases": {"gold": "gold"}})),
                node("ask", "llm", json!({"prompt": "x", "output": {"n": "float"}})),
                node("done", "end", json!({}))
            ],
            "edges": [edge("start", "plan"), edge_by("plan", "silver", "ask"), edge("ask", "done")]
        });
        let wf = create(&app, &f.key, "Broken", draft).await;
        let problems = wf["problems"].to_string();
        assert!(problems.contains("no `silver` port"), "{problems}");
        assert!(problems.contains("`float`"), "{problems}");
    }
}

#[tokio::test]
async fn a_published_schedule_starts_runs_in_the_tenants_time_zone_until_replaced() {
    use sea_orm::sea_query::Expr;
    use server::store::job_schedules;
    for backend in backends().await {
        let app = TestApp::spawn_with(backend, &SETTINGS).await;
        let f = app.tenant("acme").await;
        // Lisbon is the tenant's time zone.
        crate::conversations::open_every_day(&app, &f).await;
        let scheduled = |cron: &str, timezone: &str| {
            json!({
                "nodes": [
                    node("tick", "schedule_trigger", json!({"cron": cron, "timezone": timezone})),
                    node("done", "end", json!({"output": {"at": "{{ trigger.scheduled_at }}"}}))
                ],
                "edges": [edge("tick", "done")]
            })
        };
        let schedule_of = |id: String| {
            let db = app.db.clone();
            async move {
                job_schedules::Entity::find()
                    .filter(job_schedules::Column::TenantId.eq(f.tenant_id))
                    .filter(job_schedules::Column::Name.eq(format!("workflow:{id}")))
                    .one(&db)
                    .await
                    .unwrap()
            }
        };

        // Bad schedules are problems; a schedule every second is refused.
        let wf = create(&app, &f.key, "Bad", scheduled("* * * * * *", "Mars/Base")).await;
        assert!(wf["problems"].to_string().contains("five fields"), "{wf:#}");
        let wf = create(
            &app,
            &f.key,
            "Bad zone",
            scheduled("0 7 * * *", "Mars/Base"),
        )
        .await;
        assert!(
            wf["problems"].to_string().contains("not a time zone"),
            "{wf:#}"
        );

        // Unpublished: no schedule. Published: one, in the tenant's zone.
        let wf = create(&app, &f.key, "Morning", scheduled("30 7 * * *", "")).await;
        let id = wf["id"].as_str().unwrap().to_string();
        assert!(schedule_of(id.clone()).await.is_none());
        assert_eq!(wf["next_run_at"], Value::Null);
        publish(&app, &f.key, &id, "").await;
        let row = schedule_of(id.clone()).await.expect("a schedule");
        assert_eq!(
            (row.cron.as_str(), row.timezone.as_str(), row.kind.as_str()),
            ("30 7 * * *", "Europe/Lisbon", "workflow.scheduled")
        );
        let expected =
            server::jobs::schedule::next_tick("30 7 * * *", "Europe/Lisbon", chrono::Utc::now())
                .unwrap();
        assert_eq!(row.next_run_at, expected);
        let shown = json(
            app.get(&format!("/api/v1/workflows/{id}"), &f.key).await,
            200,
        )
        .await;
        let shown_at: chrono::DateTime<chrono::Utc> =
            shown["next_run_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(shown_at, expected);

        // The tick comes (moved into the past here): one run, by the schedule, of the latest
        // version; the schedule moves on to the next tick.
        job_schedules::Entity::update_many()
            .col_expr(
                job_schedules::Column::NextRunAt,
                Expr::value(chrono::Utc::now() - chrono::Duration::seconds(1)),
            )
            .filter(job_schedules::Column::Id.eq(row.id))
            .exec(&app.db)
            .await
            .unwrap();
        let runs_url = format!("/api/v1/workflows/{id}/runs");
        let first_run = async || {
            let runs = json(app.get(&runs_url, &f.key).await, 200).await;
            runs["items"][0].clone()
        };
        wait_for("the scheduled run", Duration::from_secs(30), async || {
            first_run().await["status"] == "succeeded"
        })
        .await;
        let run = first_run().await;
        assert_eq!(run["trigger"], "schedule", "{run:#}");
        assert_eq!(run["created_by"], "system:schedule", "{run:#}");
        assert!(
            run["output"]["at"].as_str().unwrap().starts_with("20"),
            "{run:#}"
        );
        assert!(schedule_of(id.clone()).await.unwrap().next_run_at > chrono::Utc::now());
        let runs = json(app.get(&runs_url, &f.key).await, 200).await;
        assert_eq!(
            runs["items"].as_array().unwrap().len(),
            1,
            "one run per tick"
        );

        // Its own time zone; then a version with a manual trigger removes the schedule.
        let update = |definition: Value| replace_draft(&app, &f.key, &id, definition);
        update(scheduled("0 9 * * 1-5", "Asia/Tokyo")).await;
        publish(&app, &f.key, &id, "Tokyo").await;
        let row = schedule_of(id.clone()).await.unwrap();
        assert_eq!(
            (row.cron.as_str(), row.timezone.as_str()),
            ("0 9 * * 1-5", "Asia/Tokyo")
        );
        update(by_hand()).await;
        publish(&app, &f.key, &id, "by hand").await;
        assert!(schedule_of(id.clone()).await.is_none());
        let shown = json(
            app.get(&format!("/api/v1/workflows/{id}"), &f.key).await,
            200,
        )
        .await;
        assert_eq!(shown["next_run_at"], Value::Null);

        // Deleting a scheduled workflow deletes its schedule.
        update(scheduled("0 9 * * *", "")).await;
        publish(&app, &f.key, &id, "again").await;
        assert!(schedule_of(id.clone()).await.is_some());
        let gone = app
            .client
            .delete(app.url(&format!("/api/v1/workflows/{id}")))
            .bearer_auth(&f.key)
            .send()
            .await
            .unwrap();
        assert_eq!(gone.status(), 204);
        assert!(schedule_of(id.clone()).await.is_none());
    }
}

#[tokio::test]
async fn an_agent_step_asks_a_pinned_agent_and_its_booking_is_undone_when_the_run_fails() {
    use server::llm::fake::{text, tool, FakeLlm, ROUTER_MODEL};
    for backend in backends().await {
        let fake = FakeLlm::start().await.unwrap();
        let app =
            crate::conversations::spawn(backend, Some(&fake), &[("FETCH_ALLOW_PRIVATE", "true")])
                .await;
        let f = app.tenant("acme").await;
        crate::conversations::open_every_day(&app, &f).await;
        let service = Service::start().await;
        service.answer("charge", &[500]);
        let definition = json!({
            "nodes": [
                node("start", "manual_trigger", json!({})),
                node("ask", "agent", json!({"agent": "scheduling", "message": "{{ trigger.request }}"})),
                node("charge", "http", json!({"method": "POST", "url": service.url("charge")})),
                node("done", "end", json!({"output": {"answer": "{{ nodes.ask.answer }}"}}))
            ],
            "edges": [edge("start", "ask"), edge("ask", "charge"), edge("charge", "done")]
        });
        let wf = create(&app, &f.key, "Book through the agent", definition).await;
        assert_eq!(wf["problems"], json!([]), "{wf:#}");
        let id = wf["id"].as_str().unwrap().to_string();
        publish(&app, &f.key, &id, "").await;

        // The agent books (its tool), answers; the charge fails; the booking is cancelled.
        let slot = crate::conversations::tomorrow_at(11);
        fake.chat(tool(
            "create_booking",
            json!({"start": slot, "name": "Rui", "email": "rui@example.com"}),
        ));
        fake.chat(text("You are booked for tomorrow at 11:00."));
        let run = start(
            &app,
            &f.key,
            &id,
            json!({"input": {"request": "Book me tomorrow at eleven, Rui, rui@example.com"}}),
        )
        .await;
        let done = run_until(&app, &f.key, &run, &["failed", "succeeded"]).await;
        assert_eq!(done["run"]["status"], "failed", "{done:#}");
        let asked = &steps_of(&done, "ask")[0]["output"];
        assert_eq!(asked["answer"], "You are booked for tomorrow at 11:00.");
        assert_eq!(asked["agent"], "scheduling");
        assert_eq!(asked["handoff"], false);
        // Pinned: the router was not asked.
        assert!(fake.requests_for(ROUTER_MODEL).is_empty());
        let conversation = asked["conversation_id"].as_str().unwrap();
        let detail = json(
            app.get(&format!("/api/v1/conversations/{conversation}"), &f.key)
                .await,
            200,
        )
        .await;
        assert_eq!(detail["conversation"]["channel"], "workflow", "{detail:#}");
        let comps = done["compensations"].as_array().unwrap();
        assert_eq!(comps.len(), 1, "{done:#}");
        assert_eq!(
            (comps[0]["node"].as_str(), comps[0]["status"].as_str()),
            (Some("ask"), Some("done"))
        );
        assert_eq!(done["run"]["compensation"], "full");
        let booked = bookings::Entity::find()
            .filter(bookings::Column::TenantId.eq(f.tenant_id))
            .all(&app.db)
            .await
            .unwrap();
        assert_eq!(booked.len(), 1);
        assert_eq!(booked[0].status, "cancelled");
        assert_eq!(
            booked[0].conversation_id.map(|c| c.to_string()).as_deref(),
            Some(conversation)
        );

        // An agent the tenant does not have fails the step, saying which exist.
        let definition = json!({
            "nodes": [
                node("start", "manual_trigger", json!({})),
                node("ask", "agent", json!({"agent": "billing", "message": "hi"})),
                node("done", "end", json!({}))
            ],
            "edges": [edge("start", "ask"), edge("ask", "done")]
        });
        let wf = create(&app, &f.key, "Unknown agent", definition).await;
        let id = wf["id"].as_str().unwrap().to_string();
        publish(&app, &f.key, &id, "").await;
        let run = start(&app, &f.key, &id, json!({"input": {}})).await;
        let failed = run_until(&app, &f.key, &run, &["failed", "succeeded"]).await;
        let error = steps_of(&failed, "ask")[0]["error"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            error.contains("no agent is named `billing`") && error.contains("scheduling"),
            "{error}"
        );
    }
}

/// Posts `body` to a workflow's webhook, signed with `secret` at `timestamp`.
async fn hook_at(
    app: &TestApp,
    id: &str,
    secret: &str,
    timestamp: i64,
    delivery: Option<&str>,
    body: &[u8],
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(&format!("/hooks/workflows/{id}")))
        .header("content-type", "application/json")
        .header("x-webhook-timestamp", timestamp.to_string())
        .header(
            "x-webhook-signature",
            crate::chatwoot::sign(secret, timestamp, body),
        );
    if let Some(d) = delivery {
        request = request.header("x-webhook-id", d);
    }
    request.body(body.to_vec()).send().await.unwrap()
}

async fn make_secret(app: &TestApp, key: &str, id: &str) -> Value {
    json(
        app.send_json(
            Method::POST,
            &format!("/api/v1/workflows/{id}/webhook-secret"),
            key,
            &json!({}),
        )
        .await,
        201,
    )
    .await
}

#[tokio::test]
async fn a_signed_webhook_starts_one_run_per_delivery_and_forgeries_start_none() {
    for backend in backends().await {
        let app = TestApp::spawn_with(backend, &SETTINGS).await;
        let f = app.tenant("acme").await;
        let other = app.tenant("globex").await;
        let wf = create(
            &app,
            &f.key,
            "Orders",
            json!({
                "nodes": [
                    node("hook", "webhook_trigger", json!({})),
                    node("done", "end", json!({"output": {"order": "{{ trigger.order }}"}}))
                ],
                "edges": [edge("hook", "done")]
            }),
        )
        .await;
        let id = wf["id"].as_str().unwrap().to_string();
        assert_eq!(wf["problems"], json!([]), "{wf:#}");
        assert!(
            wf["webhook_url"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/hooks/workflows/{id}")),
            "{wf:#}"
        );
        assert_eq!(wf["webhook_secret_set"], false);
        let now = || chrono::Utc::now().timestamp();
        let body = br#"{"order": 42}"#;

        // No secret yet: nothing can be signed for it.
        let r = hook_at(&app, &id, "whsec_guess", now(), Some("d0"), body).await;
        assert_eq!(r.status(), 401);

        // Another tenant cannot make (or see) its secret.
        let r = app
            .send_json(
                Method::POST,
                &format!("/api/v1/workflows/{id}/webhook-secret"),
                &other.key,
                &json!({}),
            )
            .await;
        assert_eq!(r.status(), 404);
        let hook = make_secret(&app, &f.key, &id).await;
        let secret = hook["secret"].as_str().unwrap().to_string();
        assert!(secret.starts_with("whsec_"), "{hook:#}");
        assert_eq!(hook["url"], wf["webhook_url"]);
        let shown = json(
            app.get(&format!("/api/v1/workflows/{id}"), &f.key).await,
            200,
        )
        .await;
        assert_eq!(shown["webhook_secret_set"], true);
        assert!(!shown.to_string().contains(&secret), "never shown again");

        // Signed, but the workflow is not published: nothing to start.
        let r = hook_at(&app, &id, &secret, now(), Some("d0"), body).await;
        assert_eq!(r.status(), 404);
        publish(&app, &f.key, &id, "").await;

        // A signed delivery starts a run with the body as its trigger.
        let r = hook_at(&app, &id, &secret, now(), Some("d1"), body).await;
        assert_eq!(r.status(), 202);
        let started: Value = r.json().await.unwrap();
        let run = started["run_id"].as_str().unwrap().to_string();
        let detail = run_until(&app, &f.key, &run, &["succeeded"]).await;
        assert_eq!(detail["run"]["output"]["order"], "42", "{detail:#}");
        assert_eq!(detail["run"]["trigger"], "webhook");
        assert_eq!(detail["run"]["created_by"], "system:webhook");

        // The same delivery again (a retry, later): the same run, not a second one.
        let again = hook_at(&app, &id, &secret, now() + 1, Some("d1"), body).await;
        assert_eq!(again.status(), 202);
        let again: Value = again.json().await.unwrap();
        assert_eq!(again["run_id"], started["run_id"]);
        // Without an id, the same signed request replayed is the same run too.
        let ts = now();
        let first: Value = hook_at(&app, &id, &secret, ts, None, body)
            .await
            .json()
            .await
            .unwrap();
        let replayed: Value = hook_at(&app, &id, &secret, ts, None, body)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(first["run_id"], replayed["run_id"]);
        assert_ne!(first["run_id"], started["run_id"]);
        let runs_url = format!("/api/v1/workflows/{id}/runs");
        let runs = json(app.get(&runs_url, &f.key).await, 200).await;
        assert_eq!(runs["items"].as_array().unwrap().len(), 2, "{runs:#}");

        // Forged, stale, unsigned, malformed or aimed elsewhere: refused, and nothing starts.
        let forged = hook_at(&app, &id, "whsec_forged", now(), Some("d2"), body).await;
        assert_eq!(forged.status(), 401);
        let problem: Value = forged.json().await.unwrap();
        assert!(!problem.to_string().contains(&secret));
        let stale = hook_at(&app, &id, &secret, now() - 600, Some("d3"), body).await;
        assert_eq!(stale.status(), 401);
        let unsigned = app
            .client
            .post(app.url(&format!("/hooks/workflows/{id}")))
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(unsigned.status(), 401);
        let tampered = app
            .client
            .post(app.url(&format!("/hooks/workflows/{id}")))
            .header("x-webhook-timestamp", now().to_string())
            .header(
                "x-webhook-signature",
                crate::chatwoot::sign(&secret, now(), body),
            )
            .body(br#"{"order": 43}"#.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(tampered.status(), 401);
        let malformed = hook_at(&app, &id, &secret, now(), Some("d4"), b"{not json").await;
        assert_eq!(malformed.status(), 422);
        let huge = format!(r#"{{"pad": "{}"}}"#, "x".repeat(70_000));
        let huge = hook_at(&app, &id, &secret, now(), Some("d5"), huge.as_bytes()).await;
        assert_eq!(huge.status(), 422);
        for target in [uuid::Uuid::new_v4().to_string(), "nonsense".to_string()] {
            let r = hook_at(&app, &target, &secret, now(), Some("d6"), body).await;
            assert_eq!(r.status(), 404, "{target}");
        }
        let runs = json(app.get(&runs_url, &f.key).await, 200).await;
        assert_eq!(runs["items"].as_array().unwrap().len(), 2, "{runs:#}");

        // A new secret: the old one stops working at once.
        let rotated = make_secret(&app, &f.key, &id).await;
        let new_secret = rotated["secret"].as_str().unwrap().to_string();
        assert_ne!(new_secret, secret);
        let old = hook_at(&app, &id, &secret, now(), Some("d7"), body).await;
        assert_eq!(old.status(), 401);
        let new = hook_at(&app, &id, &new_secret, now(), Some("d7"), body).await;
        assert_eq!(new.status(), 202);

        // Published with another trigger, the URL takes nothing.
        replace_draft(&app, &f.key, &id, by_hand()).await;
        publish(&app, &f.key, &id, "by hand").await;
        let r = hook_at(&app, &id, &new_secret, now(), Some("d8"), body).await;
        assert_eq!(r.status(), 404);

        // Each new secret is in the audit log.
        let audit = json(
            app.get("/api/v1/audit-log?action=workflow.rotate_secret", &f.key)
                .await,
            200,
        )
        .await;
        assert_eq!(audit["items"].as_array().unwrap().len(), 2, "{audit:#}");
    }
}

#[tokio::test]
async fn the_tenants_events_start_runs_but_not_the_events_its_workflows_cause() {
    for backend in backends().await {
        let app = TestApp::spawn_with(backend, &SETTINGS).await;
        let f = app.tenant("acme").await;
        let other = app.tenant("globex").await;
        crate::conversations::open_every_day(&app, &f).await;
        crate::conversations::open_every_day(&app, &other).await;
        let on_event = |event: &str| {
            json!({
                "nodes": [
                    node("when", "event_trigger", json!({"event": event})),
                    node("done", "end", json!({"output": {
                        "type": "{{ trigger.type }}",
                        "who": "{{ trigger.data.booking.name }}"
                    }}))
                ],
                "edges": [edge("when", "done")]
            })
        };
        let bad = create(&app, &f.key, "Bad", on_event("booking.exploded")).await;
        assert!(
            bad["problems"].to_string().contains("not an event"),
            "{bad:#}"
        );
        let wf = create(&app, &f.key, "On booking", on_event("booking.created")).await;
        let id = wf["id"].as_str().unwrap().to_string();
        let runs_url = format!("/api/v1/workflows/{id}/runs");
        let runs = async || json(app.get(&runs_url, &f.key).await, 200).await["items"].clone();
        let event_jobs = async || {
            job_rows::Entity::find()
                .filter(job_rows::Column::Kind.eq("workflow.event"))
                .count(&app.db)
                .await
                .unwrap()
        };
        let book = |key: String, name: &'static str, hour: u32| {
            let app = &app;
            async move {
                let r = app
                    .send_json(
                        Method::POST,
                        "/api/v1/bookings",
                        &key,
                        &json!({"start": tomorrow_local(hour), "duration_minutes": 30,
                                "name": name, "email": "ana@example.com", "notify": false}),
                    )
                    .await;
                assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
            }
        };

        // A draft listens to nothing.
        book(f.key.clone(), "Before", 9).await;
        assert_eq!(event_jobs().await, 0);

        // Published: the tenant's booking starts one run with the event as its trigger.
        publish(&app, &f.key, &id, "").await;
        book(f.key.clone(), "Ana", 10).await;
        wait_for("the event's run", Duration::from_secs(30), async || {
            runs().await[0]["status"] == "succeeded"
        })
        .await;
        let run = runs().await[0].clone();
        assert_eq!(run["trigger"], "event", "{run:#}");
        assert_eq!(run["output"]["type"], "booking.created", "{run:#}");
        assert_eq!(run["output"]["who"], "Ana", "{run:#}");
        assert_eq!(event_jobs().await, 1);

        // Another tenant's booking starts nothing here.
        book(other.key.clone(), "Globex customer", 10).await;
        assert_eq!(event_jobs().await, 1);

        // A booking made by a workflow's step does not start workflows (no loops).
        let booker = create(
            &app,
            &f.key,
            "Books",
            json!({
                "nodes": [
                    node("start", "manual_trigger", json!({})),
                    node("book", "booking", json!({"starts_at": tomorrow_local(12), "minutes": 30, "name": "Rui", "email": "rui@example.com"})),
                    node("done", "end", json!({}))
                ],
                "edges": [edge("start", "book"), edge("book", "done")]
            }),
        )
        .await;
        let booker = booker["id"].as_str().unwrap().to_string();
        publish(&app, &f.key, &booker, "").await;
        let run = start(&app, &f.key, &booker, json!({"input": {}})).await;
        run_until(&app, &f.key, &run, &["succeeded"]).await;
        assert_eq!(
            bookings::Entity::find()
                .filter(bookings::Column::TenantId.eq(f.tenant_id))
                .filter(bookings::Column::Name.eq("Rui"))
                .count(&app.db)
                .await
                .unwrap(),
            1
        );
        assert_eq!(event_jobs().await, 1, "the workflow's own booking");
        assert_eq!(runs().await.as_array().unwrap().len(), 1);

        // Republished with a manual trigger, it listens no more.
        replace_draft(&app, &f.key, &id, by_hand()).await;
        publish(&app, &f.key, &id, "by hand").await;
        book(f.key.clone(), "After", 14).await;
        assert_eq!(event_jobs().await, 1);
    }
}

#[tokio::test]
async fn secrets_reach_http_requests_but_never_a_runs_trace() {
    use axum::http::Uri;
    for backend in backends().await {
        let app = TestApp::spawn_with(backend, &SETTINGS).await;
        let f = app.tenant("acme").await;
        let other = app.tenant("globex").await;
        // A partner API that echoes what it was sent (as some do, in errors too).
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let echo = {
            let seen = seen.clone();
            Router::new().route(
                "/{name}",
                any(
                    move |Path(name): Path<String>, uri: Uri, headers: HeaderMap| {
                        let seen = seen.clone();
                        async move {
                            let auth = headers
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_string();
                            seen.lock().unwrap().push(auth.clone());
                            let status = if name == "fail" { 401 } else { 200 };
                            (
                                StatusCode::from_u16(status).unwrap(),
                                axum::Json(json!({"auth": auth, "query": uri.query()})),
                            )
                        }
                    },
                ),
            )
        };
        let base = format!("http://{}", serve_fake(echo).await);
        let value = "tok-s3cr3t-123";
        let put = |key: String, name: &'static str, body: Value| {
            let app = &app;
            async move {
                app.send_json(
                    Method::PUT,
                    &format!("/api/v1/workflow-secrets/{name}"),
                    &key,
                    &body,
                )
                .await
            }
        };

        // Names are checked; values are never returned.
        assert_eq!(
            put(f.key.clone(), "1bad", json!({"value": "x"}))
                .await
                .status(),
            422
        );
        assert_eq!(
            put(f.key.clone(), "EMPTY", json!({"value": ""}))
                .await
                .status(),
            422
        );
        let saved = put(f.key.clone(), "CRM_TOKEN", json!({"value": "old"})).await;
        assert_eq!(saved.status(), 200);
        let saved = json(
            put(f.key.clone(), "CRM_TOKEN", json!({"value": value})).await,
            200,
        )
        .await;
        assert_eq!(saved["name"], "CRM_TOKEN");
        let listed = app
            .get("/api/v1/workflow-secrets", &f.key)
            .await
            .text()
            .await
            .unwrap();
        assert!(
            listed.contains("CRM_TOKEN") && !listed.contains(value) && !listed.contains("old"),
            "{listed}"
        );
        let theirs = json(app.get("/api/v1/workflow-secrets", &other.key).await, 200).await;
        assert_eq!(theirs, json!([]));

        let calling = |path: &str| {
            json!({
                "nodes": [
                    node("start", "manual_trigger", json!({})),
                    node("call", "http", json!({
                        "method": "GET",
                        "url": format!("{base}/{path}?key={{{{ secrets.CRM_TOKEN }}}}"),
                        "headers": {"Authorization": "Bearer {{ secrets.CRM_TOKEN }}"}
                    })),
                    node("done", "end", json!({"output": {"echo": "{{ nodes.call.body.auth }}"}}))
                ],
                "edges": [edge("start", "call"), edge("call", "done")]
            })
        };
        let wf = create(&app, &f.key, "Calls the CRM", calling("echo")).await;
        assert_eq!(wf["problems"], json!([]), "{wf:#}");
        let id = wf["id"].as_str().unwrap().to_string();
        publish(&app, &f.key, &id, "").await;
        let run = start(&app, &f.key, &id, json!({"input": {}})).await;
        let detail = run_until(&app, &f.key, &run, &["succeeded", "failed"]).await;
        assert_eq!(detail["run"]["status"], "succeeded", "{detail:#}");
        assert_eq!(
            seen.lock().unwrap().last().unwrap(),
            &format!("Bearer {value}")
        );
        let trace = detail.to_string();
        assert!(!trace.contains(value), "the value is in the trace: {trace}");
        assert_eq!(detail["run"]["output"]["echo"], "Bearer [secret CRM_TOKEN]");
        assert!(trace.contains("key=[secret CRM_TOKEN]"), "{trace}");

        // An error that quotes it is redacted too.
        let failing = create(&app, &f.key, "Fails", calling("fail")).await;
        let failing = failing["id"].as_str().unwrap().to_string();
        publish(&app, &f.key, &failing, "").await;
        let run = start(&app, &f.key, &failing, json!({"input": {}})).await;
        let detail = run_until(&app, &f.key, &run, &["failed"]).await;
        let trace = detail.to_string();
        assert!(!trace.contains(value), "{trace}");
        assert!(
            trace.contains("HTTP 401") && trace.contains("[secret CRM_TOKEN]"),
            "{trace}"
        );

        // Tried in the editor: shown with a stand-in, never read.
        let step = calling("echo")["nodes"][1].clone();
        let tried = json(
            app.send_json(
                Method::POST,
                &format!("/api/v1/workflows/{id}/test-node"),
                &f.key,
                &json!({"node": "call", "trigger": {}, "nodes": {}, "step": step}),
            )
            .await,
            200,
        )
        .await;
        assert_eq!(
            tried["rendered"]["headers"]["Authorization"], "Bearer [secret CRM_TOKEN]",
            "{tried:#}"
        );

        // Only HTTP requests may use them: an email or a prompt would keep or send them.
        let leaky = create(
            &app,
            &f.key,
            "Leaky",
            json!({
                "nodes": [
                    node("start", "manual_trigger", json!({})),
                    node("done", "end", json!({"output": {"token": "{{ secrets.CRM_TOKEN }}"}}))
                ],
                "edges": [edge("start", "done")]
            }),
        )
        .await;
        assert!(
            leaky["problems"].to_string().contains("HTTP requests only"),
            "{leaky:#}"
        );

        // Another tenant's workflow cannot read this tenant's secret.
        let theirs = create(&app, &other.key, "Borrow", calling("echo")).await;
        let theirs = theirs["id"].as_str().unwrap().to_string();
        publish(&app, &other.key, &theirs, "").await;
        let run = start(&app, &other.key, &theirs, json!({"input": {}})).await;
        let detail = run_until(&app, &other.key, &run, &["failed"]).await;
        assert!(
            detail.to_string().contains("no secret named `CRM_TOKEN`"),
            "{detail:#}"
        );

        // Deleted, the step fails naming it; the audit log has the changes, not the values.
        let gone = app
            .client
            .delete(app.url("/api/v1/workflow-secrets/CRM_TOKEN"))
            .bearer_auth(&f.key)
            .send()
            .await
            .unwrap();
        assert_eq!(gone.status(), 204);
        let run = start(&app, &f.key, &id, json!({"input": {}})).await;
        let detail = run_until(&app, &f.key, &run, &["failed"]).await;
        assert!(
            detail.to_string().contains("no secret named `CRM_TOKEN`"),
            "{detail:#}"
        );
        let audit = app
            .get("/api/v1/audit-log?action=workflow.secret_set", &f.key)
            .await
            .text()
            .await
            .unwrap();
        assert!(
            audit.contains("workflow_secret:CRM_TOKEN") && !audit.contains(value),
            "{audit}"
        );
    }
}

#[tokio::test]
async fn a_loop_goes_through_a_list_once_per_item_within_its_bound() {
    for backend in backends().await {
        let app = TestApp::spawn_with(backend, &SETTINGS).await;
        let f = app.tenant("acme").await;
        let service = Service::start().await;
        let looping = |max: u64| {
            json!({
                "nodes": [
                    node("start", "manual_trigger", json!({})),
                    node("each", "loop", json!({"items": "trigger.orders", "max": max})),
                    node("call", "http", json!({"method": "POST", "url": service.url("order"),
                                                 "body": "{{ nodes.each.index }}:{{ nodes.each.item.id }}"})),
                    node("done", "end", json!({"output": {"count": "{{ nodes.each.count }}"}}))
                ],
                "edges": [
                    edge("start", "each"), edge_by("each", "each", "call"),
                    edge("call", "each"), edge_by("each", "done", "done")
                ]
            })
        };

        // Cycles go through a loop or are problems; the bound is checked.
        let wf = create(&app, &f.key, "Too many", looping(5_000)).await;
        assert!(wf["problems"].to_string().contains("`max`"), "{wf:#}");
        let round = create(
            &app,
            &f.key,
            "Round and round",
            json!({
                "nodes": [
                    node("start", "manual_trigger", json!({})),
                    node("a", "set", json!({"values": {"x": "1"}})),
                    node("b", "set", json!({"values": {"y": "2"}}))
                ],
                "edges": [edge("start", "a"), edge("a", "b"), edge("b", "a")]
            }),
        )
        .await;
        assert!(
            round["problems"].to_string().contains("passes through no"),
            "{round:#}"
        );

        let wf = create(&app, &f.key, "Each order", looping(3)).await;
        assert_eq!(wf["problems"], json!([]), "{wf:#}");
        let id = wf["id"].as_str().unwrap().to_string();
        publish(&app, &f.key, &id, "").await;
        let orders = |n: usize| json!({"input": {"orders": (1..=n).map(|i| json!({"id": format!("o{i}")})).collect::<Vec<_>>()}});

        // Three orders: three requests, each its own step (and idempotency key), then done.
        let run = start(&app, &f.key, &id, orders(3)).await;
        let detail = run_until(&app, &f.key, &run, &["succeeded", "failed"]).await;
        assert_eq!(detail["run"]["status"], "succeeded", "{detail:#}");
        assert_eq!(detail["run"]["output"]["count"], "3");
        let hits = service.hits("order");
        assert_eq!(hits.len(), 3, "{hits:?}");
        let keys: std::collections::HashSet<_> = hits.iter().map(|h| h.key.clone()).collect();
        assert_eq!(keys.len(), 3, "{hits:?}");
        assert_eq!(
            steps_of(&detail, "each")
                .iter()
                .map(|s| s["port"].as_str().unwrap())
                .collect::<Vec<_>>(),
            vec!["each", "each", "each", "done"]
        );
        assert_eq!(steps_of(&detail, "each")[2]["output"]["item"]["id"], "o3");

        // Run again: it starts over. Empty: straight to done. Too long or not a list: fails.
        let run = start(&app, &f.key, &id, orders(1)).await;
        let again = run_until(&app, &f.key, &run, &["succeeded", "failed"]).await;
        assert_eq!(again["run"]["output"]["count"], "1", "{again:#}");
        let run = start(&app, &f.key, &id, orders(0)).await;
        let empty = run_until(&app, &f.key, &run, &["succeeded", "failed"]).await;
        assert_eq!(empty["run"]["output"]["count"], "0", "{empty:#}");
        assert_eq!(service.hits("order").len(), 4);
        let run = start(&app, &f.key, &id, orders(4)).await;
        let long = run_until(&app, &f.key, &run, &["succeeded", "failed"]).await;
        assert_eq!(long["run"]["status"], "failed");
        assert!(
            long["run"]["error"].as_str().unwrap().contains("at most 3"),
            "{long:#}"
        );
        let run = start(&app, &f.key, &id, json!({"input": {"orders": "o1, o2"}})).await;
        let text = run_until(&app, &f.key, &run, &["succeeded", "failed"]).await;
        assert!(
            text["run"]["error"]
                .as_str()
                .unwrap()
                .contains("not a list"),
            "{text:#}"
        );
        assert_eq!(service.hits("order").len(), 4);
    }
}

#[tokio::test]
async fn a_workflow_runs_another_waits_for_it_and_cancels_it_when_undone() {
    for backend in backends().await {
        let app = TestApp::spawn_with(backend, &SETTINGS).await;
        let f = app.tenant("acme").await;
        let other = app.tenant("globex").await;
        let service = Service::start().await;
        let made = |key: String, name: &'static str, definition: Value| {
            let app = &app;
            async move {
                let wf = create(app, &key, name, definition).await;
                assert_eq!(wf["problems"], json!([]), "{name}: {wf:#}");
                let id = wf["id"].as_str().unwrap().to_string();
                publish(app, &key, &id, "").await;
                id
            }
        };
        let calling = |target: &str, then: Value| {
            json!({
                "nodes": [
                    node("start", "manual_trigger", json!({})),
                    node("call", "workflow", json!({"workflow": target, "input": {"n": "{{ trigger.n }}"}})),
                    then
                ],
                "edges": [edge("start", "call"), edge("call", "done")]
            })
        };
        let child = made(
            f.key.clone(),
            "Double",
            json!({
                "nodes": [
                    node("start", "manual_trigger", json!({})),
                    node("note", "http", json!({"method": "POST", "url": service.url("child"), "body": "{{ trigger.n }}"})),
                    node("done", "end", json!({"output": {"doubled": "{{ trigger.n }}{{ trigger.n }}"}}))
                ],
                "edges": [edge("start", "note"), edge("note", "done")]
            }),
        )
        .await;
        let parent = made(
            f.key.clone(),
            "Caller",
            calling(
                "Double",
                node(
                    "done",
                    "end",
                    json!({"output": {"child": "{{ nodes.call.output.doubled }}"}}),
                ),
            ),
        )
        .await;

        // The child runs with the input the step gives, and its output is the step's.
        let run = start(&app, &f.key, &parent, json!({"input": {"n": "4"}})).await;
        let detail = run_until(&app, &f.key, &run, &["succeeded", "failed"]).await;
        assert_eq!(detail["run"]["status"], "succeeded", "{detail:#}");
        assert_eq!(detail["run"]["output"]["child"], "44");
        let runs = json(
            app.get(&format!("/api/v1/workflows/{child}/runs"), &f.key)
                .await,
            200,
        )
        .await;
        let items = runs["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{runs:#}");
        assert_eq!(items[0]["trigger"], "workflow");
        assert_eq!(service.hits("child").len(), 1);

        // Unknown here (another tenant's name included), itself, or in a circle: it fails.
        let theirs = made(other.key.clone(), "Elsewhere", by_hand()).await;
        let lost = made(
            f.key.clone(),
            "Lost",
            calling("Elsewhere", node("done", "end", json!({}))),
        )
        .await;
        let run = start(&app, &f.key, &lost, json!({"input": {"n": "1"}})).await;
        let failed = run_until(&app, &f.key, &run, &["succeeded", "failed"]).await;
        assert!(
            failed["run"]["error"]
                .as_str()
                .unwrap()
                .contains("no workflow `Elsewhere`"),
            "{failed:#}"
        );
        let runs = json(
            app.get(&format!("/api/v1/workflows/{theirs}/runs"), &other.key)
                .await,
            200,
        )
        .await;
        assert_eq!(runs["items"], json!([]));
        let ping = made(
            f.key.clone(),
            "Ping",
            calling("Pong", node("done", "end", json!({}))),
        )
        .await;
        made(
            f.key.clone(),
            "Pong",
            calling("Ping", node("done", "end", json!({}))),
        )
        .await;
        let run = start(&app, &f.key, &ping, json!({"input": {"n": "1"}})).await;
        let circle = run_until(&app, &f.key, &run, &["succeeded", "failed"]).await;
        assert_eq!(circle["run"]["status"], "failed", "{circle:#}");
        assert!(circle.to_string().contains("at most 5 deep"), "{circle:#}");

        // A child still running when its caller is cancelled is cancelled too.
        let slow = made(
            f.key.clone(),
            "Needs approval",
            json!({
                "nodes": [
                    node("start", "manual_trigger", json!({})),
                    node("ask", "approval", json!({"prompt": "ok?"})),
                    node("done", "end", json!({}))
                ],
                "edges": [edge("start", "ask"), edge_by("ask", "approved", "done")]
            }),
        )
        .await;
        let waiting = made(
            f.key.clone(),
            "Waits",
            calling("Needs approval", node("done", "end", json!({}))),
        )
        .await;
        let run = start(&app, &f.key, &waiting, json!({"input": {"n": "1"}})).await;
        run_until(&app, &f.key, &run, &["waiting"]).await;
        let child_run = async || {
            let runs = json(
                app.get(&format!("/api/v1/workflows/{slow}/runs"), &f.key)
                    .await,
                200,
            )
            .await;
            runs["items"][0].clone()
        };
        wait_for("the child waits", Duration::from_secs(30), async || {
            child_run().await["status"] == "waiting"
        })
        .await;
        let cancelled = app
            .send_json(
                Method::POST,
                &format!("/api/v1/workflow-runs/{run}/cancel"),
                &f.key,
                &json!({}),
            )
            .await;
        assert_eq!(cancelled.status(), 202);
        let detail = run_until(&app, &f.key, &run, &["cancelled"]).await;
        assert_eq!(detail["run"]["compensation"], "full", "{detail:#}");
        wait_for(
            "the child is cancelled",
            Duration::from_secs(30),
            async || child_run().await["status"] == "cancelled",
        )
        .await;
    }
}

/// Start → Parallel → (reserve with an undo request | book, ping, note) → Join → charge → end.
fn branching(service: &Service) -> Value {
    json!({
        "nodes": [
            node("start", "manual_trigger", json!({})),
            node("fork", "parallel", json!({"branches": 2})),
            node("reserve", "http", json!({"method": "POST", "url": service.url("reserve"),
                "compensation": {"method": "DELETE", "url": service.url("unreserve")}})),
            node("book", "booking", json!({"starts_at": "{{ trigger.when }}", "minutes": 30, "name": "{{ trigger.name }}", "email": "ana@example.com"})),
            node("ping", "http", json!({"method": "POST", "url": service.url("ping")})),
            node("note", "set", json!({"values": {"booked": "{{ nodes.book.booking_id }}"}})),
            node("meet", "join", json!({})),
            node("charge", "http", json!({"method": "POST", "url": service.url("charge")})),
            node("done", "end", json!({"output": {
                "reservation": "{{ nodes.reserve.body.id }}",
                "booked": "{{ vars.booked }}",
                "branches": "{{ nodes.fork.branches | length }}"
            }}))
        ],
        "edges": [
            edge("start", "fork"),
            edge_by("fork", "branch1", "reserve"), edge_by("fork", "branch2", "book"),
            edge("reserve", "meet"), edge("book", "ping"), edge("ping", "note"),
            edge("note", "meet"), edge("meet", "charge"), edge("charge", "done")
        ]
    })
}

/// The named customer's bookings that are not cancelled.
async fn standing_bookings(app: &TestApp, tenant: uuid::Uuid, name: &str) -> u64 {
    bookings::Entity::find()
        .filter(bookings::Column::TenantId.eq(tenant))
        .filter(bookings::Column::Name.eq(name))
        .filter(bookings::Column::Status.ne("cancelled"))
        .count(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn parallel_branches_run_at_once_meet_at_the_join_and_are_undone_together() {
    for backend in backends().await {
        let app = TestApp::spawn_with(backend, &SETTINGS).await;
        let f = app.tenant("acme").await;
        crate::conversations::open_every_day(&app, &f).await;
        let service = Service::start().await;
        *service.delay_ms.lock().unwrap() = 300;
        let wf = create(&app, &f.key, "Reserve and book", branching(&service)).await;
        assert_eq!(wf["problems"], json!([]), "{wf:#}");
        let id = wf["id"].as_str().unwrap().to_string();
        publish(&app, &f.key, &id, "").await;

        // Both branches run, at the same time; the run goes on from the Join with their values.
        // One run for `name`, booked tomorrow at `hour`: its id and its final trace.
        let run_for = |name: &'static str, hour: u32| {
            let (app, key, id) = (&app, f.key.clone(), id.clone());
            async move {
                let input = json!({"input": {"name": name, "when": tomorrow_local(hour)}});
                let run = start(app, &key, &id, input).await;
                let done = run_until(app, &key, &run, &["succeeded", "failed"]).await;
                (run, done)
            }
        };
        let (_, ok) = run_for("Ana", 13).await;
        assert_eq!(ok["run"]["status"], "succeeded", "{ok:#}");
        assert_eq!(ok["run"]["output"]["reservation"], "reserve-1", "{ok:#}");
        assert_eq!(ok["run"]["output"]["branches"], "2");
        let booked = ok["run"]["output"]["booked"].as_str().unwrap();
        assert!(booked.parse::<uuid::Uuid>().is_ok(), "{ok:#}");
        // The Parallel step looks at its branches each time one ends (suspended in between).
        let mut nodes: Vec<(&str, &str)> = ok["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["node"].as_str().unwrap(), s["status"].as_str().unwrap()))
            .collect();
        assert!(
            nodes[1..nodes.len() - 4]
                .iter()
                .all(|s| *s == ("fork", "suspended")),
            "{ok:#}"
        );
        nodes.dedup_by_key(|s| s.0);
        let nodes: Vec<&str> = nodes.iter().map(|s| s.0).collect();
        assert_eq!(nodes, ["start", "fork", "meet", "charge", "done"], "{ok:#}");
        let branches = ok["branches"].as_array().unwrap();
        assert_eq!(branches.len(), 2, "{ok:#}");
        let step = |node: &str| {
            branches
                .iter()
                .flat_map(|b| b["steps"].as_array().unwrap())
                .find(|s| s["node"] == node)
                .unwrap_or_else(|| panic!("no {node} step: {ok:#}"))
                .clone()
        };
        let time = |s: &Value, at: &str| {
            s[at]
                .as_str()
                .unwrap()
                .parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()
        };
        // Each request takes 300 ms: they overlapped, so neither branch waited for the other.
        let (reserve, ping) = (step("reserve"), step("ping"));
        assert!(
            time(&reserve, "started_at") < time(&ping, "finished_at")
                && time(&ping, "started_at") < time(&reserve, "finished_at"),
            "the branches' requests did not overlap: {reserve:#} {ping:#}"
        );
        assert!(branches.iter().all(|b| b["run"]["trigger"] == "branch"));
        assert!(branches
            .iter()
            .flat_map(|b| b["compensations"].as_array().unwrap())
            .all(|c| c["status"] == "released"));
        // The runs list shows the run, not its branches (unless asked for them).
        let runs = json(
            app.get(&format!("/api/v1/workflows/{id}/runs"), &f.key)
                .await,
            200,
        )
        .await;
        assert_eq!(runs["items"].as_array().unwrap().len(), 1, "{runs:#}");
        let runs = json(
            app.get(
                &format!("/api/v1/workflows/{id}/runs?trigger=branch"),
                &f.key,
            )
            .await,
            200,
        )
        .await;
        assert_eq!(runs["items"].as_array().unwrap().len(), 2, "{runs:#}");
        assert_eq!(standing_bookings(&app, f.tenant_id, "Ana").await, 1);
        assert!(service.hits("unreserve").is_empty());

        // A step after the Join fails: what both branches did is undone.
        service.answer("charge", &[500]);
        let (_, failed) = run_for("Rui", 14).await;
        assert_eq!(failed["run"]["status"], "failed", "{failed:#}");
        assert_eq!(failed["run"]["compensation"], "full", "{failed:#}");
        let fork = failed["compensations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["node"] == "fork")
            .unwrap()
            .clone();
        assert_eq!(fork["status"], "done", "{failed:#}");
        assert_eq!(service.hits("unreserve").len(), 1, "{failed:#}");
        assert_eq!(standing_bookings(&app, f.tenant_id, "Rui").await, 0);
        let undone: Vec<&Value> = failed["branches"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|b| b["compensations"].as_array().unwrap())
            .collect();
        assert_eq!(undone.len(), 2, "{failed:#}");
        assert!(undone.iter().all(|c| c["status"] == "done"), "{failed:#}");

        // A branch fails: the step fails naming it, and the other branch is undone or stopped.
        service.answer("reserve", &[500]);
        let (run, broken) = run_for("Eva", 15).await;
        assert_eq!(broken["run"]["status"], "failed", "{broken:#}");
        let error = broken["run"]["error"].as_str().unwrap();
        assert!(
            error.contains("branch 1") && error.contains("500"),
            "{broken:#}"
        );
        wait_for(
            "the other branch ends",
            Duration::from_secs(30),
            async || {
                let d = run_detail(&app, &f.key, &run).await;
                d["branches"].as_array().unwrap().iter().all(|b| {
                    ["failed", "cancelled", "succeeded"]
                        .contains(&b["run"]["status"].as_str().unwrap())
                })
            },
        )
        .await;
        wait_for(
            "Eva's booking is undone",
            Duration::from_secs(30),
            async || standing_bookings(&app, f.tenant_id, "Eva").await == 0,
        )
        .await;
        assert_eq!(
            service.hits("charge").len(),
            2,
            "the failed run never reached it"
        );

        // Branches that never meet keep a draft from being published.
        let mut apart = branching(&service);
        apart["edges"] = json!([
            edge("start", "fork"),
            edge_by("fork", "branch1", "reserve"),
            edge_by("fork", "branch2", "book"),
            edge("reserve", "charge"),
            edge("book", "ping"),
            edge("ping", "note"),
            edge("note", "done"),
            edge("charge", "done")
        ]);
        apart["nodes"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["id"] != "meet");
        let wf = create(&app, &f.key, "Apart", apart).await;
        let problems = wf["problems"].to_string();
        assert!(problems.contains("never meet"), "{wf:#}");
        let refused = app
            .send_json(
                Method::POST,
                &format!("/api/v1/workflows/{}/publish", wf["id"].as_str().unwrap()),
                &f.key,
                &json!({"note": ""}),
            )
            .await;
        assert_eq!(refused.status(), 422);
    }
}

async fn conversation_on(app: &TestApp, key: &str, channel: &str) -> String {
    let c = json(
        app.send_json(
            Method::POST,
            "/api/v1/conversations",
            key,
            &json!({ "channel": channel }),
        )
        .await,
        201,
    )
    .await;
    c["id"].as_str().unwrap().to_string()
}

fn nodes_of(turn: &Value) -> Vec<&str> {
    turn["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["node"].as_str().unwrap())
        .collect()
}

async fn choose_graph(
    app: &TestApp,
    key: &str,
    channel: &str,
    workflow: Value,
) -> reqwest::Response {
    app.send_json(
        Method::PUT,
        &format!("/api/v1/conversation-graphs/{channel}"),
        key,
        &json!({ "workflow_id": workflow }),
    )
    .await
}

#[tokio::test]
async fn a_conversation_graph_answers_the_channels_it_is_chosen_for() {
    use crate::conversations::{handbook, say};
    use server::llm::fake::{text, FakeLlm, CHAT_MODEL};
    for backend in backends().await {
        let fake = FakeLlm::start().await.unwrap();
        let app = crate::conversations::spawn(backend, Some(&fake), &[]).await;
        let f = app.tenant("acme").await;
        let other = app.tenant("other").await;
        handbook(&app, &f.key).await;
        // Classify; a visit question is looked up and answered with what was found; billing
        // goes to a person; anything else (and a classifier that fails) to the router.
        let definition = json!({
            "nodes": [
                node("start", "message_trigger", json!({})),
                {"id": "topic", "kind": "classifier", "config": {
                    "input": "{{ trigger.message }}",
                    "classes": {"visit": "Opening hours, visits, parking", "billing": "Invoices and payments"}},
                 "on_error": {"type": "branch"}},
                node("lookup", "knowledge", json!({"query": "{{ trigger.message }}", "top_k": 2})),
                node("note", "set", json!({"values": {"last_topic": "{{ nodes.topic.class }}"}})),
                node("route", "route", json!({})),
                node("answer", "specialist", json!({"context": "{{ nodes.lookup.text }}"})),
                node("person", "handoff", json!({"reason": "billing: {{ trigger.message }}"}))
            ],
            "edges": [
                edge("start", "topic"),
                edge_by("topic", "visit", "lookup"),
                edge("lookup", "note"),
                edge("note", "answer"),
                edge_by("topic", "billing", "person"),
                edge_by("topic", "other", "route"),
                edge_by("topic", "error", "route"),
                edge("route", "answer"),
                edge_by("answer", "handoff", "person")
            ]
        });
        let wf = create(&app, &f.key, "Our graph", definition.clone()).await;
        assert_eq!(wf["problems"], json!([]), "{wf:#}");
        let id = wf["id"].as_str().unwrap().to_string();

        // Not chosen before it is published; a workflow of another tenant, a manual one and a
        // channel no graph answers are refused.
        let early = choose_graph(&app, &f.key, "api", json!(id)).await;
        assert_eq!(early.status(), 422);
        publish(&app, &f.key, &id, "first").await;
        let theirs = create(&app, &other.key, "Theirs", definition.clone()).await;
        publish(&app, &other.key, theirs["id"].as_str().unwrap(), "").await;
        let foreign = choose_graph(&app, &f.key, "api", theirs["id"].clone()).await;
        assert_eq!(foreign.status(), 404);
        let manual = create(&app, &f.key, "By hand", by_hand()).await;
        publish(&app, &f.key, manual["id"].as_str().unwrap(), "").await;
        let wrong = choose_graph(&app, &f.key, "api", manual["id"].clone()).await;
        assert_eq!(wrong.status(), 422);
        let problem: Value = wrong.json().await.unwrap();
        assert!(problem.to_string().contains("customer writes"), "{problem}");
        let channel = choose_graph(&app, &f.key, "workflow", json!(id)).await;
        assert_eq!(channel.status(), 422);
        // A conversation graph is not started as a run.
        let run = app
            .send_json(
                Method::POST,
                &format!("/api/v1/workflows/{id}/runs"),
                &f.key,
                &json!({"input": {}}),
            )
            .await;
        assert_eq!(run.status(), 409);

        let chosen = json(choose_graph(&app, &f.key, "api", json!(id)).await, 200).await;
        let api = chosen["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["channel"] == "api")
            .unwrap();
        assert_eq!(
            (api["workflow_id"].as_str(), api["version"].as_u64()),
            (Some(id.as_str()), Some(1))
        );
        assert_eq!(
            chosen["candidates"].as_array().unwrap().len(),
            1,
            "{chosen:#}"
        );
        // The other tenant sees none of it.
        let theirs_listed = json(
            app.get("/api/v1/conversation-graphs", &other.key).await,
            200,
        )
        .await;
        assert!(theirs_listed["channels"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["workflow_id"].is_null()));

        // A visit question: classified, looked up, answered with the passages in the
        // specialist's instructions.
        let c = conversation_on(&app, &f.key, "api").await;
        fake.route(text("visit"));
        fake.chat(text("We open from ten to one on Saturdays."));
        let turn = say(&app, &f.key, &c, "When do you open on Saturdays?").await;
        assert_eq!(
            nodes_of(&turn),
            ["start", "topic", "lookup", "note", "answer"],
            "{turn:#}"
        );
        assert_eq!(
            turn["reply"]["content"],
            "We open from ten to one on Saturdays."
        );
        assert_eq!(turn["steps"][1]["detail"]["llm_calls"], 1, "{turn:#}");
        assert_eq!(turn["steps"][1]["detail"]["port"], "visit", "{turn:#}");
        let asked = fake.requests_for(CHAT_MODEL).pop().unwrap();
        let instructions = asked["messages"][1]["content"].to_string();
        assert!(instructions.contains("ten to one"), "{asked:#}");
        assert_eq!(turn["reply"]["usage"]["llm_calls"], 2, "{turn:#}");

        // Billing: a person takes over with the graph's reason, without the specialist.
        fake.route(text("billing"));
        let turn = say(&app, &f.key, &c, "I was charged twice").await;
        assert_eq!(nodes_of(&turn), ["start", "topic", "person"], "{turn:#}");
        assert_eq!(turn["conversation"]["status"], "waiting_human");
        assert_eq!(
            turn["steps"][2]["detail"]["handoff"],
            "billing: I was charged twice"
        );

        // The model down: the classifier's error exit, the router's fallback, an answer
        // from the documents.
        let c2 = conversation_on(&app, &f.key, "api").await;
        fake.set_down(Some(503));
        let turn = say(&app, &f.key, &c2, "Is parking free?").await;
        fake.set_down(None);
        assert_eq!(
            nodes_of(&turn),
            ["start", "topic", "route", "answer"],
            "{turn:#}"
        );
        assert!(turn["steps"][1]["detail"]["error"].is_string(), "{turn:#}");
        assert_eq!(turn["steps"][1]["detail"]["port"], "error", "{turn:#}");
        assert!(
            turn["steps"][3]["detail"]["offline"].is_string(),
            "{turn:#}"
        );
        assert!(
            turn["reply"]["content"]
                .as_str()
                .unwrap()
                .contains("Parking"),
            "{turn:#}"
        );

        // Another channel keeps the default graph.
        let console = conversation_on(&app, &f.key, "console").await;
        fake.chat(text("Hello!"));
        let turn = say(&app, &f.key, &console, "sales please: hello").await;
        assert_eq!(nodes_of(&turn)[0], "router", "{turn:#}");

        // Steps that make a customer wait or have effects are refused in a conversation
        // graph; a version that would no longer start on a message is refused while chosen.
        let mut effects = definition.clone();
        effects["nodes"]
            .as_array_mut()
            .unwrap()
            .push(node("pause", "wait", json!({"seconds": 5})));
        effects["edges"]
            .as_array_mut()
            .unwrap()
            .push(edge("answer", "pause"));
        let saved = replace_draft(&app, &f.key, &id, effects).await;
        assert!(
            saved["problems"]
                .to_string()
                .contains("answers while the customer waits"),
            "{saved:#}"
        );
        replace_draft(&app, &f.key, &id, by_hand()).await;
        let refused = app
            .send_json(
                Method::POST,
                &format!("/api/v1/workflows/{id}/publish"),
                &f.key,
                &json!({"note": ""}),
            )
            .await;
        assert_eq!(refused.status(), 409);

        // Deleted: the channel goes back to the default graph.
        let deleted = app
            .send_json(
                Method::DELETE,
                &format!("/api/v1/workflows/{id}"),
                &f.key,
                &json!({}),
            )
            .await;
        assert!(deleted.status().is_success(), "{}", deleted.status());
        let listed = json(app.get("/api/v1/conversation-graphs", &f.key).await, 200).await;
        assert!(
            listed["channels"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["workflow_id"].is_null()),
            "{listed:#}"
        );
        let c3 = conversation_on(&app, &f.key, "api").await;
        fake.chat(text("Hi."));
        let turn = say(&app, &f.key, &c3, "sales please: hi").await;
        assert_eq!(nodes_of(&turn)[0], "router", "{turn:#}");

        // A step that fails the turn: the customer gets the apology, and the call it made
        // still counts.
        let strict = create(
            &app,
            &f.key,
            "Strict",
            json!({
                "nodes": [
                    node("start", "message_trigger", json!({})),
                    node("ask", "llm", json!({"prompt": "{{ trigger.message }}", "output": {"n": "integer"}})),
                    node("answer", "specialist", json!({})),
                    node("person", "handoff", json!({}))
                ],
                "edges": [edge("start", "ask"), edge("ask", "answer"), edge_by("answer", "handoff", "person")]
            }),
        )
        .await;
        let strict = strict["id"].as_str().unwrap().to_string();
        publish(&app, &f.key, &strict, "").await;
        json(choose_graph(&app, &f.key, "api", json!(strict)).await, 200).await;
        let c4 = conversation_on(&app, &f.key, "api").await;
        fake.chat(text("not a number"));
        let turn = say(&app, &f.key, &c4, "How many?").await;
        assert!(
            turn["reply"]["content"]
                .as_str()
                .unwrap()
                .starts_with("Sorry"),
            "{turn:#}"
        );
        assert_eq!(turn["reply"]["usage"]["llm_calls"], 1, "{turn:#}");
    }
}
