//! Google Calendar over OAuth, on SQLite and on PostgreSQL + Redis. A fake Google on loopback
//! plays the authorization server as Google does: it redirects back with a code, checks the
//! client's credentials, the redirect URI and the PKCE verifier (S256) at the token endpoint,
//! answers `invalid_grant` to a code used twice or a revoked refresh token, and takes
//! revocations. It plays Calendar's API too: bearer tokens checked (401 for one it no longer
//! takes), free/busy, events created under the client's id (409 for an id it has), moved,
//! deleted (kept as `cancelled`, 410 on a second delete), and listed with sync tokens (410 for
//! one it forgot), in pages.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use chrono::{DateTime, Utc};
use reqwest::{header, Client, Method};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{json, Value};
use sha2::Digest;

use app::types::Role;
use server::integrations::google::STATE_REASONS;
use server::store::{google_connections, oauth_states};

use crate::helpers::*;

const CLIENT_ID: &str = "platform-client.apps.googleusercontent.com";
const CLIENT_SECRET: &str = "platform-client-secret";
const EVENTS: &str = "https://www.googleapis.com/auth/calendar.events";
const FREEBUSY: &str = "https://www.googleapis.com/auth/calendar.freebusy";

#[derive(Default)]
struct Script {
    /// code → (PKCE challenge, redirect URI).
    codes: HashMap<String, (String, String)>,
    used: Vec<String>,
    /// The authorization requests' query parameters.
    asked: Vec<HashMap<String, String>>,
    revoked: Vec<String>,
    /// Replaces the next token answer (status, body).
    next_token: Option<(u16, Value)>,
    issued: usize,
    /// Access tokens the API takes.
    valid: Vec<String>,
    /// Refresh-token grants answered with a new access token.
    refreshes: usize,
    /// Refresh tokens the person revoked in their Google account.
    dead_grants: Vec<String>,
    events: Vec<FakeEvent>,
    /// Meetings in the calendar the platform did not make (free/busy only).
    meetings: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    /// Insert attempts, including refused ones.
    inserts: usize,
    /// Store the next insert but answer 503, as if the answer were lost.
    lose_next_insert_answer: bool,
    /// Every change bumps it; sync tokens are `sync-<seq>`.
    seq: u64,
    forget_sync_tokens: bool,
    page_size: usize,
    /// Free/busy answers these statuses first, in order (rate limited, down).
    busy_failures: Vec<StatusCode>,
    /// Free/busy requests, answered or not.
    busy_asked: usize,
}

#[derive(Clone, Debug)]
struct FakeEvent {
    id: String,
    status: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    body: Value,
    seq: u64,
    updated: DateTime<Utc>,
}

#[derive(Clone, Default)]
struct FakeGoogle {
    addr: Option<SocketAddr>,
    script: Arc<Mutex<Script>>,
}

impl FakeGoogle {
    async fn start() -> FakeGoogle {
        let mut fake = FakeGoogle::default();
        let app = Router::new()
            .route("/auth", get(authorize))
            .route("/token", post(token))
            .route("/revoke", post(revoke))
            .route("/calendar/v3/freeBusy", post(free_busy))
            .route(
                "/calendar/v3/calendars/{calendar}/events",
                post(insert_event).get(list_events),
            )
            .route(
                "/calendar/v3/calendars/{calendar}/events/{event}",
                axum::routing::patch(patch_event).delete(delete_event),
            )
            .with_state(fake.clone());
        fake.addr = Some(serve_fake(app).await);
        fake
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr.unwrap())
    }

    fn config(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GOOGLE_CLIENT_ID", CLIENT_ID.into()),
            ("GOOGLE_CLIENT_SECRET", CLIENT_SECRET.into()),
            ("GOOGLE_AUTH_URL", format!("{}/auth", self.url())),
            ("GOOGLE_TOKEN_URL", format!("{}/token", self.url())),
            ("GOOGLE_REVOKE_URL", format!("{}/revoke", self.url())),
            ("GOOGLE_API_URL", self.url()),
        ]
    }

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap()
    }

    /// The events the platform made, standing or cancelled.
    fn events(&self) -> Vec<FakeEvent> {
        self.script().events.clone()
    }

    fn event(&self, id: &str) -> FakeEvent {
        self.events().into_iter().find(|e| e.id == id).unwrap()
    }

    /// A change made by the business in Google Calendar.
    fn change(&self, id: &str, change: impl FnOnce(&mut FakeEvent)) {
        let mut script = self.script();
        script.seq += 1;
        let seq = script.seq;
        let event = script.events.iter_mut().find(|e| e.id == id).unwrap();
        change(event);
        event.seq = seq;
        event.updated = Utc::now();
    }
}

fn issue(script: &mut Script) -> String {
    script.issued += 1;
    let token = format!("ya29.access-{}", script.issued);
    script.valid.push(token.clone());
    token
}

/// The bearer token, if the API takes it.
fn bearer(fake: &FakeGoogle, headers: &HeaderMap) -> bool {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    fake.script().valid.iter().any(|t| t == token)
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "error": { "code": 401, "message": "Invalid Credentials" } })),
    )
        .into_response()
}

fn google_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": status.as_u16(), "message": message } })),
    )
        .into_response()
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

async fn free_busy(
    State(fake): State<FakeGoogle>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !bearer(&fake, &headers) {
        return unauthorized();
    }
    {
        let mut script = fake.script();
        script.busy_asked += 1;
        if !script.busy_failures.is_empty() {
            let status = script.busy_failures.remove(0);
            return google_error(status, "Rate Limit Exceeded or Backend Error");
        }
    }
    let (from, to) = (time(&body["timeMin"]), time(&body["timeMax"]));
    let calendar = body["items"][0]["id"].as_str().unwrap().to_string();
    let script = fake.script();
    let mut busy: Vec<(DateTime<Utc>, DateTime<Utc>)> = script
        .events
        .iter()
        .filter(|e| e.status == "confirmed")
        .map(|e| (e.start, e.end))
        .chain(script.meetings.iter().copied())
        .filter(|(s, e)| *s < to && *e > from)
        .collect();
    busy.sort();
    // Google merges touching and overlapping intervals.
    let mut merged: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    for (s, e) in busy {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    let busy: Vec<Value> = merged
        .iter()
        .map(|(s, e)| json!({ "start": s.to_rfc3339(), "end": e.to_rfc3339() }))
        .collect();
    Json(json!({
        "kind": "calendar#freeBusy",
        "timeMin": body["timeMin"],
        "timeMax": body["timeMax"],
        "calendars": { calendar: { "busy": busy } }
    }))
    .into_response()
}

async fn insert_event(
    State(fake): State<FakeGoogle>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !bearer(&fake, &headers) {
        return unauthorized();
    }
    let mut script = fake.script();
    script.inserts += 1;
    let id = body["id"].as_str().unwrap_or_default().to_string();
    let valid = (5..=1024).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='v').contains(&c));
    if !valid {
        return google_error(StatusCode::BAD_REQUEST, "Invalid resource id value.");
    }
    if script.events.iter().any(|e| e.id == id) {
        return google_error(
            StatusCode::CONFLICT,
            "The requested identifier already exists.",
        );
    }
    script.seq += 1;
    let event = FakeEvent {
        id,
        status: "confirmed".into(),
        start: time(&body["start"]["dateTime"]),
        end: time(&body["end"]["dateTime"]),
        body: body.clone(),
        seq: script.seq,
        updated: Utc::now(),
    };
    script.events.push(event);
    if std::mem::take(&mut script.lose_next_insert_answer) {
        return google_error(StatusCode::SERVICE_UNAVAILABLE, "Backend Error");
    }
    Json(body).into_response()
}

async fn patch_event(
    State(fake): State<FakeGoogle>,
    axum::extract::Path((_, id)): axum::extract::Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !bearer(&fake, &headers) {
        return unauthorized();
    }
    if !fake
        .events()
        .iter()
        .any(|e| e.id == id && e.status == "confirmed")
    {
        return google_error(StatusCode::NOT_FOUND, "Not Found");
    }
    fake.change(&id, |e| {
        e.start = time(&body["start"]["dateTime"]);
        e.end = time(&body["end"]["dateTime"]);
    });
    StatusCode::OK.into_response()
}

async fn delete_event(
    State(fake): State<FakeGoogle>,
    axum::extract::Path((_, id)): axum::extract::Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !bearer(&fake, &headers) {
        return unauthorized();
    }
    match fake.events().iter().find(|e| e.id == id) {
        None => google_error(StatusCode::NOT_FOUND, "Not Found"),
        Some(e) if e.status == "cancelled" => {
            google_error(StatusCode::GONE, "Resource has been deleted")
        }
        Some(_) => {
            fake.change(&id, |e| e.status = "cancelled".into());
            StatusCode::NO_CONTENT.into_response()
        }
    }
}

async fn list_events(
    State(fake): State<FakeGoogle>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !bearer(&fake, &headers) {
        return unauthorized();
    }
    let script = fake.script();
    let since = match q.get("syncToken") {
        Some(_) if script.forget_sync_tokens => {
            return google_error(
                StatusCode::GONE,
                "Sync token is no longer valid, a full sync is required.",
            )
        }
        Some(token) => Some(token.strip_prefix("sync-").unwrap().parse::<u64>().unwrap()),
        None => None,
    };
    // A full listing leaves deleted events out; an incremental one brings them.
    let mut changed: Vec<&FakeEvent> = script
        .events
        .iter()
        .filter(|e| match since {
            Some(since) => e.seq > since,
            None => e.status == "confirmed",
        })
        .collect();
    changed.sort_by_key(|e| e.seq);
    let size = script
        .page_size
        .max(1)
        .min(q["maxResults"].parse().unwrap());
    let offset: usize = q.get("pageToken").map_or(0, |p| p.parse().unwrap());
    let page: Vec<Value> = changed
        .iter()
        .skip(offset)
        .take(size)
        .map(|e| {
            let mut item = e.body.clone();
            item["id"] = json!(e.id);
            item["status"] = json!(e.status);
            item["start"] = json!({ "dateTime": e.start.to_rfc3339() });
            item["end"] = json!({ "dateTime": e.end.to_rfc3339() });
            item["updated"] = json!(e.updated.to_rfc3339());
            item
        })
        .collect();
    let mut answer = json!({ "kind": "calendar#events", "items": page });
    if offset + size < changed.len() {
        answer["nextPageToken"] = json!((offset + size).to_string());
    } else {
        answer["nextSyncToken"] = json!(format!("sync-{}", script.seq));
    }
    Json(answer).into_response()
}

/// The consent screen, already agreed to: back to the client with a code.
async fn authorize(
    State(fake): State<FakeGoogle>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut script = fake.script();
    script.asked.push(q.clone());
    if q.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || q.get("code_challenge_method").map(String::as_str) != Some("S256")
    {
        return (StatusCode::BAD_REQUEST, "invalid_request").into_response();
    }
    let code = format!("4/code-{}", script.codes.len());
    let redirect = q["redirect_uri"].clone();
    script.codes.insert(
        code.clone(),
        (q["code_challenge"].clone(), redirect.clone()),
    );
    let state = q.get("state").cloned().unwrap_or_default();
    let mut back = reqwest::Url::parse(&redirect).unwrap();
    back.query_pairs_mut()
        .append_pair("state", &state)
        .append_pair("code", &code)
        .append_pair("scope", &format!("{EVENTS} {FREEBUSY}"));
    Redirect::to(back.as_str()).into_response()
}

fn token_error(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response()
}

async fn token(
    State(fake): State<FakeGoogle>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(format!("Basic {basic}").as_str());
    if !authorized {
        return token_error("invalid_client");
    }
    if form.get("grant_type").map(String::as_str) == Some("refresh_token") {
        let refresh = form.get("refresh_token").cloned().unwrap_or_default();
        let access = {
            let mut script = fake.script();
            if script.dead_grants.contains(&refresh) || !refresh.starts_with("1//refresh-") {
                return token_error("invalid_grant");
            }
            script.refreshes += 1;
            issue(&mut script)
        };
        // Slow enough for concurrent callers to meet at the lease.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        return Json(json!({
            "access_token": access,
            "expires_in": 3599,
            "scope": format!("{EVENTS} {FREEBUSY}"),
            "token_type": "Bearer"
        }))
        .into_response();
    }
    let mut script = fake.script();
    let code = form.get("code").cloned().unwrap_or_default();
    let Some((challenge, redirect)) = script.codes.get(&code).cloned() else {
        return token_error("invalid_grant");
    };
    if script.used.contains(&code) {
        return token_error("invalid_grant");
    }
    script.used.push(code);
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    if computed != challenge || form.get("redirect_uri") != Some(&redirect) {
        return token_error("invalid_grant");
    }
    if let Some((status, body)) = script.next_token.take() {
        return (StatusCode::from_u16(status).unwrap(), Json(body)).into_response();
    }
    let access = issue(&mut script);
    Json(json!({
        "access_token": access,
        "expires_in": 3599,
        "refresh_token": format!("1//refresh-{}", script.issued),
        "scope": format!("{EVENTS} {FREEBUSY}"),
        "token_type": "Bearer"
    }))
    .into_response()
}

async fn revoke(
    State(fake): State<FakeGoogle>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    fake.script()
        .revoked
        .push(form.get("token").cloned().unwrap_or_default());
    StatusCode::OK.into_response()
}

/// Starts a connection as `browser` (a signed-in console session): the callback URL Google
/// sends the browser back to.
async fn authorize_as(app: &TestApp, browser: &Client) -> String {
    let started = browser
        .post(app.url("/integrations/google/connect"))
        .header(header::ORIGIN, &app.base)
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 303, "{:?}", started.text().await);
    let consent = location(&started);
    let answered = client().get(&consent).send().await.unwrap();
    assert_eq!(answered.status(), 303, "{consent}");
    // The console's address in tests is the unbound 127.0.0.1:0; the path is what counts.
    let back = reqwest::Url::parse(&location(&answered)).unwrap();
    app.url(&format!(
        "{}?{}",
        back.path(),
        back.query().unwrap_or_default()
    ))
}

/// Follows the callback as `browser`: where it ends (the Integrations page's query).
async fn come_back(browser: &Client, callback: &str) -> String {
    let r = browser.get(callback).send().await.unwrap();
    assert_eq!(r.status(), 303);
    location(&r)
}

fn rejections(reason: &str) -> u64 {
    server::http::metrics::handle()
        .render()
        .lines()
        .filter(|l| l.starts_with("oauth_state_rejections_total{"))
        .filter(|l| l.contains(&format!("reason=\"{reason}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn spawn_with_google(backend: Backend, google: &FakeGoogle) -> TestApp {
    let owned = google.config();
    let pairs: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestApp::spawn_with(backend, &pairs).await
}

#[tokio::test]
async fn google_calendar_is_connected_with_pkce_and_disconnected_with_a_revocation() {
    for backend in backends().await {
        let google = FakeGoogle::start().await;
        let app = spawn_with_google(backend, &google).await;
        let f = app.tenant("acme").await;
        let owner = app.signed_in(&f.owner_email, &f.owner_password).await;
        problem(
            app.get("/api/v1/google-calendar", &f.key).await,
            404,
            "not_found",
        )
        .await;

        // The console's pages let the connect form's answer redirect to Google (browsers hold
        // redirects after a form to the page's form-action).
        let page = owner.get(app.url("/integrations")).send().await.unwrap();
        let policy = page.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            policy.contains(&format!("form-action 'self' {};", google.url())),
            "{policy}"
        );
        let callback = authorize_as(&app, &owner).await;
        let asked = google.script().asked[0].clone();
        assert_eq!(asked["access_type"], "offline");
        assert_eq!(asked["response_type"], "code");
        assert_eq!(asked["scope"], format!("{EVENTS} {FREEBUSY}"));
        // 128-bit id and 256-bit secret.
        let state = &asked["state"];
        let (id, secret) = state.split_once('.').unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(secret)
                .unwrap()
                .len(),
            32
        );
        assert_eq!(
            come_back(&owner, &callback).await,
            "/integrations?google=connected"
        );

        let shown = json(app.get("/api/v1/google-calendar", &f.key).await, 200).await;
        assert_eq!(shown["status"], "connected");
        assert_eq!(shown["scopes"], json!([EVENTS, FREEBUSY]));
        assert_eq!(shown["connected_by"], f.owner_id.to_string());
        assert!(!shown.to_string().contains("ya29") && !shown.to_string().contains("refresh-"));
        let row = google_connections::Entity::find()
            .filter(google_connections::Column::TenantId.eq(f.tenant_id))
            .one(&app.db)
            .await
            .unwrap()
            .unwrap();
        assert!(!row.access_token.contains("ya29") && !row.refresh_token.contains("refresh-"));
        assert!(app
            .audit_actions(&f.key)
            .await
            .iter()
            .any(|a| a == "google.connect"));

        // Disconnecting revokes the refresh token at Google.
        let r = app
            .send_json(
                Method::DELETE,
                "/api/v1/google-calendar",
                &f.key,
                &json!({}),
            )
            .await;
        assert_eq!(r.status(), 204);
        assert_eq!(google.script().revoked, vec!["1//refresh-1".to_string()]);
        problem(
            app.get("/api/v1/google-calendar", &f.key).await,
            404,
            "not_found",
        )
        .await;
        assert!(app
            .audit_actions(&f.key)
            .await
            .iter()
            .any(|a| a == "google.disconnect"));
    }
}

/// The only test that provokes state refusals: the counts are exact.
#[tokio::test]
async fn forged_replayed_expired_and_borrowed_states_are_refused_and_counted() {
    server::http::metrics::handle();
    for backend in backends().await {
        let google = FakeGoogle::start().await;
        let app = spawn_with_google(backend, &google).await;
        let f = app.tenant("acme").await;
        let other = app.tenant("globex").await;
        let owner = app.signed_in(&f.owner_email, &f.owner_password).await;
        let before: Vec<u64> = STATE_REASONS.iter().map(|r| rejections(r)).collect();
        let refused = |to: String| {
            assert!(to.starts_with("/integrations?google_error="), "{to}");
        };

        // No state, an unknown one, a known id with a guessed secret.
        refused(come_back(&owner, &app.url("/integrations/google/callback?code=4/x")).await);
        let unknown = format!("{}.{}", uuid::Uuid::new_v4().simple(), "A".repeat(43));
        refused(
            come_back(
                &owner,
                &app.url(&format!(
                    "/integrations/google/callback?code=4/x&state={unknown}"
                )),
            )
            .await,
        );
        let callback = authorize_as(&app, &owner).await;
        let url = reqwest::Url::parse(&callback).unwrap();
        let state: String = url
            .query_pairs()
            .find(|(k, _)| k == "state")
            .unwrap()
            .1
            .into();
        let (id, _) = state.split_once('.').unwrap();
        let guessed = format!("{id}.{}", "B".repeat(43));
        refused(
            come_back(
                &owner,
                &app.url(&format!(
                    "/integrations/google/callback?code=4/x&state={guessed}"
                )),
            )
            .await,
        );
        // The guess did not use it up: the right browser still completes, then it is used.
        assert_eq!(
            come_back(&owner, &callback).await,
            "/integrations?google=connected"
        );
        refused(come_back(&owner, &callback).await);

        // Older than ten minutes.
        let late = authorize_as(&app, &owner).await;
        oauth_states::Entity::update_many()
            .col_expr(
                oauth_states::Column::ExpiresAt,
                Expr::value(chrono::Utc::now() - chrono::Duration::seconds(1)),
            )
            .filter(oauth_states::Column::UsedAt.is_null())
            .exec(&app.db)
            .await
            .unwrap();
        refused(come_back(&owner, &late).await);

        // Brought back by another member of the tenant, by someone of another tenant, and by
        // the same person in another sign-in: each refused, and each used up the state.
        let (ed, ed_password) = app.user(&f, "ed", Role::Admin).await;
        let ed = app.signed_in(&ed, &ed_password).await;
        let stranger = app
            .signed_in(&other.owner_email, &other.owner_password)
            .await;
        let elsewhere = app.signed_in(&f.owner_email, &f.owner_password).await;
        for thief in [&ed, &stranger] {
            let callback = authorize_as(&app, &owner).await;
            refused(come_back(thief, &callback).await);
            refused(come_back(&owner, &callback).await);
        }
        let callback = authorize_as(&app, &owner).await;
        refused(come_back(&elsewhere, &callback).await);

        // Not counted as state problems: the person said no at Google; Google's answer
        // without a refresh token is refused and nothing is stored.
        let callback = authorize_as(&app, &owner).await;
        let denied = callback.replace("code=", "error=access_denied&code=");
        refused(come_back(&owner, &denied).await);
        google.script().next_token = Some((
            200,
            json!({ "access_token": "ya29.x", "expires_in": 3599, "scope": EVENTS, "token_type": "Bearer" }),
        ));
        let callback = authorize_as(&app, &owner).await;
        let to = come_back(&owner, &callback).await;
        assert!(to.contains("refresh"), "{to}");

        let after: Vec<u64> = STATE_REASONS.iter().map(|r| rejections(r)).collect();
        let counted: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        // missing, unknown, mismatch, reused (the replay + the 2 owner retries after a thief),
        // expired, wrong_user (2 thieves), wrong_session.
        assert_eq!(counted, vec![1, 1, 1, 3, 1, 2, 1]);

        // A viewer may not connect; the other tenant has no connection.
        let (vic, vic_password) = app.user(&f, "vic", Role::Viewer).await;
        let vic = app.signed_in(&vic, &vic_password).await;
        let r = vic
            .post(app.url("/integrations/google/connect"))
            .header(header::ORIGIN, &app.base)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        problem(
            app.get("/api/v1/google-calendar", &other.key).await,
            404,
            "not_found",
        )
        .await;
        // A connect from another site is refused before anything happens.
        let r = owner
            .post(app.url("/integrations/google/connect"))
            .header(header::ORIGIN, "https://evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
    }
}

/// 10:00 on `day` in Lisbon (the tenant's zone after `open_every_day`), as an instant.
fn lisbon(day: chrono::NaiveDate, hm: &str) -> DateTime<Utc> {
    let tz: chrono_tz::Tz = "Europe/Lisbon".parse().unwrap();
    let at =
        chrono::NaiveDateTime::parse_from_str(&format!("{day} {hm}"), "%Y-%m-%d %H:%M").unwrap();
    server::integrations::calendar::local_to_utc(tz, at).unwrap()
}

async fn book_at(
    app: &TestApp,
    key: &str,
    day: chrono::NaiveDate,
    hm: &str,
    name: &str,
) -> reqwest::Response {
    app.send_json(
        Method::POST,
        "/api/v1/bookings",
        key,
        &json!({
            "start": format!("{day}T{hm}"),
            "duration_minutes": 30,
            "name": name,
            "email": format!("{}@example.com", name.to_lowercase()),
            "notify": false,
        }),
    )
    .await
}

async fn set_fallback(app: &TestApp, key: &str, fallback: &str) -> reqwest::Response {
    app.send_json(
        Method::PATCH,
        "/api/v1/google-calendar",
        key,
        &json!({ "fallback": fallback }),
    )
    .await
}

fn simple(id: &Value) -> String {
    id.as_str().unwrap().replace('-', "")
}

/// Runs one `google.sync` job for the tenant through the in-process worker.
async fn sync_now(app: &TestApp, tenant: uuid::Uuid) {
    use server::jobs::{enqueue, NewJob};
    let id = enqueue(&app.db, NewJob::new(Some(tenant), "google.sync", json!({})))
        .await
        .unwrap()
        .unwrap();
    crate::jobs::wait_for(
        "the sync job",
        std::time::Duration::from_secs(20),
        async || {
            let job = server::store::jobs::Entity::find_by_id(id)
                .one(&app.db)
                .await
                .unwrap()
                .unwrap();
            assert!(job.last_error.is_none(), "{:?}", job.last_error);
            job.state == "succeeded"
        },
    )
    .await;
}

#[tokio::test]
async fn bookings_go_to_google_calendar_and_follow_what_the_business_changes_there() {
    for backend in backends().await {
        let google = FakeGoogle::start().await;
        google.script().page_size = 2;
        let app = spawn_with_google(backend, &google).await;
        let f = app.tenant("acme").await;
        crate::conversations::open_every_day(&app, &f).await;
        let other = app.tenant("globex").await;
        let owner = app.signed_in(&f.owner_email, &f.owner_password).await;
        let callback = authorize_as(&app, &owner).await;
        assert_eq!(
            come_back(&owner, &callback).await,
            "/integrations?google=connected"
        );

        // Connecting schedules the sync every 15 minutes (the tenant's schedule) and runs it.
        let schedules = json(app.get("/api/v1/job-schedules", &f.key).await, 200).await;
        let sync = schedules
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "google-sync")
            .unwrap_or_else(|| panic!("{schedules}"));
        assert_eq!(sync["cron"], "*/15 * * * *");
        assert_eq!(sync["kind"], "google.sync");
        crate::jobs::wait_for(
            "the first sync",
            std::time::Duration::from_secs(20),
            async || {
                let shown = json(app.get("/api/v1/google-calendar", &f.key).await, 200).await;
                !shown["synced_at"].is_null()
            },
        )
        .await;

        // A meeting in the calendar blocks its time; a free time is booked there, with the
        // customer as attendee and the booking's mark.
        let day = chrono::Utc::now().date_naive() + chrono::Duration::days(3);
        google
            .script()
            .meetings
            .push((lisbon(day, "10:00"), lisbon(day, "11:00")));
        problem(
            book_at(&app, &f.key, day, "10:30", "Eve").await,
            409,
            "conflict",
        )
        .await;
        let ana = json(book_at(&app, &f.key, day, "11:00", "Ana").await, 201).await;
        assert_eq!(ana["provider"], "google");
        let event = google.event(&simple(&ana["id"]));
        assert_eq!(event.status, "confirmed");
        assert_eq!(event.start, lisbon(day, "11:00"));
        assert_eq!(event.body["attendees"][0]["email"], "ana@example.com");
        assert_eq!(
            event.body["extendedProperties"]["private"]["platform_booking"],
            ana["id"]
        );

        // Rate limited, then down for a moment: retried, and booked.
        google.script().busy_failures = vec![
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::SERVICE_UNAVAILABLE,
        ];
        let asked = google.script().busy_asked;
        let cy = json(book_at(&app, &f.key, day, "13:00", "Cyd").await, 201).await;
        assert_eq!(cy["provider"], "google");
        assert_eq!(google.script().busy_asked, asked + 3);
        // Down for longer: refused with a clear answer, nothing booked anywhere.
        google.script().busy_failures = vec![StatusCode::SERVICE_UNAVAILABLE; 3];
        let events = google.events().len();
        let p = problem(
            book_at(&app, &f.key, day, "13:30", "Dee").await,
            503,
            "unavailable",
        )
        .await;
        assert!(p.to_string().contains("cannot be reached"), "{p}");
        assert_eq!(google.events().len(), events);
        let page = json(app.get("/api/v1/bookings?q=dee", &f.key).await, 200).await;
        assert_eq!(page["items"], json!([]));

        // Google made the event but its answer was lost: the retry under the same id finds
        // it (409), and there is one event.
        google.script().lose_next_insert_answer = true;
        let inserts = google.script().inserts;
        let bo = json(book_at(&app, &f.key, day, "12:00", "Bo").await, 201).await;
        assert_eq!(google.script().inserts, inserts + 2);
        let bo_id = simple(&bo["id"]);
        assert_eq!(google.events().iter().filter(|e| e.id == bo_id).count(), 1);

        // Racing for one time: one booking stands, and one event: the losers' events, if
        // they made any, are deleted again.
        let before = google.events().len();
        let racing = (0..3).map(|i| book_at(&app, &f.key, day, "14:00", ["Cy", "Di", "Ed"][i]));
        let mut statuses: Vec<u16> = futures::future::join_all(racing)
            .await
            .iter()
            .map(|r| r.status().as_u16())
            .collect();
        statuses.sort();
        assert_eq!(statuses, vec![201, 409, 409]);
        let standing = google.events()[before..]
            .iter()
            .filter(|e| e.status == "confirmed")
            .count();
        assert_eq!(standing, 1);

        // An access token about to expire is refreshed once, however many calls need it.
        google_connections::Entity::update_many()
            .col_expr(
                google_connections::Column::ExpiresAt,
                Expr::value(chrono::Utc::now() + chrono::Duration::seconds(30)),
            )
            .filter(google_connections::Column::TenantId.eq(f.tenant_id))
            .exec(&app.db)
            .await
            .unwrap();
        let refreshes = google.script().refreshes;
        let names = ["Fa", "Gu", "Ho", "Iv", "Jo", "Ka"];
        let many = names.iter().enumerate().map(|(i, name)| {
            book_at(
                &app,
                &f.key,
                day,
                ["15:00", "15:30", "16:00", "16:30", "17:00", "17:30"][i],
                name,
            )
        });
        let made: Vec<Value> = futures::future::join_all(
            futures::future::join_all(many)
                .await
                .into_iter()
                .map(|r| json(r, 201)),
        )
        .await;
        assert_eq!(google.script().refreshes, refreshes + 1);

        // Google stops taking the token (401): refreshed once more, and the move goes through.
        google.script().valid.clear();
        let moved = json(
            app.send_json(
                Method::POST,
                &format!("/api/v1/bookings/{}/reschedule", bo["id"].as_str().unwrap()),
                &f.key,
                &json!({ "start": format!("{day}T18:00"), "notify": false }),
            )
            .await,
            200,
        )
        .await;
        assert_eq!(moved["local_start"], format!("{day}T18:00:00"));
        assert_eq!(google.script().refreshes, refreshes + 2);
        assert_eq!(google.event(&bo_id).start, lisbon(day, "18:00"));
        // Moving onto the meeting is refused; Google's event stays.
        let r = app
            .send_json(
                Method::POST,
                &format!("/api/v1/bookings/{}/reschedule", bo["id"].as_str().unwrap()),
                &f.key,
                &json!({ "start": format!("{day}T10:15") }),
            )
            .await;
        problem(r, 409, "conflict").await;
        assert_eq!(google.event(&bo_id).start, lisbon(day, "18:00"));
        // Cancelling deletes the event.
        let r = app
            .send_json(
                Method::POST,
                &format!("/api/v1/bookings/{}/cancel", ana["id"].as_str().unwrap()),
                &f.key,
                &json!({ "reason": "ill", "notify": false }),
            )
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(google.event(&simple(&ana["id"])).status, "cancelled");

        // The business moves one event and deletes another in Google Calendar; an event
        // marked as a booking the platform never recorded (a failed compensation) is left.
        let (fa, gu) = (&made[0], &made[1]);
        google.change(&simple(&fa["id"]), |e| {
            e.start = lisbon(day, "19:00");
            e.end = lisbon(day, "19:45");
        });
        google.change(&simple(&gu["id"]), |e| e.status = "cancelled".into());
        let lost = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            (chrono::Utc::now() - chrono::Duration::hours(1)).timestamp() as u64,
            0,
        ));
        {
            let mut script = google.script();
            script.seq += 1;
            let seq = script.seq;
            script.events.push(FakeEvent {
                id: lost.simple().to_string(),
                status: "confirmed".into(),
                start: lisbon(day, "08:00"),
                end: lisbon(day, "08:30"),
                body: json!({ "extendedProperties": { "private": { "platform_booking": lost.to_string() } } }),
                seq,
                updated: chrono::Utc::now(),
            });
        }
        sync_now(&app, f.tenant_id).await;
        let fa_now = json(
            app.get(
                &format!("/api/v1/bookings/{}", fa["id"].as_str().unwrap()),
                &f.key,
            )
            .await,
            200,
        )
        .await;
        assert_eq!(fa_now["local_start"], format!("{day}T19:00:00"));
        assert_eq!(fa_now["local_end"], format!("{day}T19:45:00"));
        let gu_now = json(
            app.get(
                &format!("/api/v1/bookings/{}", gu["id"].as_str().unwrap()),
                &f.key,
            )
            .await,
            200,
        )
        .await;
        assert_eq!(gu_now["status"], "cancelled");
        assert_eq!(gu_now["cancel_reason"], "cancelled in Google Calendar");
        assert_eq!(google.event(&lost.simple().to_string()).status, "cancelled");
        assert!(app
            .audit_actions(&f.key)
            .await
            .iter()
            .any(|a| a == "booking.reschedule"));
        // Google forgot the sync token: a full listing, and nothing changes twice.
        google.script().forget_sync_tokens = true;
        let events = google.events();
        sync_now(&app, f.tenant_id).await;
        google.script().forget_sync_tokens = false;
        let after: Vec<String> = google.events().iter().map(|e| e.status.clone()).collect();
        let before: Vec<String> = events.iter().map(|e| e.status.clone()).collect();
        assert_eq!(after, before);

        // The person revoked the platform's access in their Google account: the next refresh
        // gets invalid_grant, the connection needs reconnecting, and the tenant's fallback
        // (the built-in calendar, by default) takes the booking.
        google.script().dead_grants.push("1//refresh-1".into());
        google.script().valid.clear();
        let lu = json(book_at(&app, &f.key, day, "09:00", "Lu").await, 201).await;
        assert_eq!(lu["provider"], "built_in");
        let shown = json(app.get("/api/v1/google-calendar", &f.key).await, 200).await;
        assert_eq!(shown["status"], "needs_reconnect");
        assert_eq!(shown["fallback"], "built_in");
        assert!(shown["last_error"]
            .as_str()
            .unwrap()
            .contains("invalid_grant"));
        assert!(app
            .audit_actions(&f.key)
            .await
            .iter()
            .any(|a| a == "google.needs_reconnect"));
        // Or it refuses, with a message the agent can pass on.
        let shown = json(set_fallback(&app, &f.key, "refuse").await, 200).await;
        assert_eq!(shown["fallback"], "refuse");
        let p = problem(
            book_at(&app, &f.key, day, "09:30", "Mo").await,
            503,
            "unavailable",
        )
        .await;
        assert!(p.to_string().contains("reconnect"), "{p}");
        problem(
            set_fallback(&app, &f.key, "sometimes").await,
            422,
            "validation_failed",
        )
        .await;

        // Another tenant never sees any of it: its bookings are built-in, its Google absent.
        let nia = json(book_at(&app, &other.key, day, "11:00", "Nia").await, 201).await;
        assert_eq!(nia["provider"], "built_in");
        problem(
            set_fallback(&app, &other.key, "refuse").await,
            404,
            "not_found",
        )
        .await;

        // Disconnecting removes the schedule.
        let r = app
            .send_json(
                Method::DELETE,
                "/api/v1/google-calendar",
                &f.key,
                &json!({}),
            )
            .await;
        assert_eq!(r.status(), 204);
        let schedules = json(app.get("/api/v1/job-schedules", &f.key).await, 200).await;
        assert!(
            !schedules.to_string().contains("google-sync"),
            "{schedules}"
        );
    }
}
