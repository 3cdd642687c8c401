//! Connecting Google Calendar over OAuth, on SQLite and on PostgreSQL + Redis. A fake Google on
//! loopback plays the authorization server as Google does: it redirects back with a code, checks
//! the client's credentials, the redirect URI and the PKCE verifier (S256) at the token
//! endpoint, answers `invalid_grant` to a code used twice, and takes revocations.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
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
    script.issued += 1;
    Json(json!({
        "access_token": format!("ya29.access-{}", script.issued),
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
