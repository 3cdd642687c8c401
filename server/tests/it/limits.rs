//! Rate limits: exact under concurrency on both stores, shared per tenant, per address for
//! anonymous callers and bad keys, overridable per tenant, skipped by platform admins.

use std::time::{Duration, Instant};

use futures::future::join_all;
use reqwest::Response;

use app::services::{Access, Actor};
use app::types::{CreateApiKey, Role, Scope};
use server::http::tenant_policy::TenantLimits;
use server::tenancy;

use crate::helpers::*;

/// Requests a GCRA budget of `limit` per minute may admit within `elapsed`: the burst plus one
/// per refill interval.
pub fn admissible(limit: u32, elapsed: Duration) -> usize {
    let interval = 60.0 / f64::from(limit);
    limit as usize + (elapsed.as_secs_f64() / interval).floor() as usize
}

/// Sends `n` concurrent GETs with `key`; returns (accepted, refused responses' bodies, elapsed).
async fn burst(app: &TestApp, path: &str, key: &str, n: usize) -> (Vec<Response>, Duration) {
    let started = Instant::now();
    let responses = join_all((0..n).map(|_| app.get(path, key))).await;
    (responses, started.elapsed())
}

fn header(r: &Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn key_budget_is_exact_under_concurrency() {
    for backend in backends().await {
        let app = TestApp::spawn_with(backend, &[("RATE_LIMIT_READ_PER_MINUTE", "10")]).await;
        let f = app.tenant("acme").await;
        let (responses, elapsed) = burst(&app, "/api/v1/tenant", &f.key, 100).await;
        let (ok, refused): (Vec<_>, Vec<_>) =
            responses.into_iter().partition(|r| r.status() == 200);
        assert!(
            ok.len() >= 10 && ok.len() <= admissible(10, elapsed),
            "{backend:?}: {} of 100 admitted in {elapsed:?}",
            ok.len()
        );
        assert_eq!(header(&ok[0], "ratelimit-limit"), "10");
        assert_eq!(header(&ok[0], "x-ratelimit-limit"), "10");
        let remaining: Vec<u32> = ok
            .iter()
            .map(|r| header(r, "ratelimit-remaining").parse().unwrap())
            .collect();
        assert!(
            remaining.contains(&0) && remaining.contains(&9),
            "{remaining:?}"
        );
        let refusal = refused.into_iter().next().expect("some refused");
        let retry: u64 = header(&refusal, "retry-after").parse().unwrap();
        assert!((1..=6).contains(&retry), "Retry-After {retry}");
        assert_eq!(header(&refusal, "ratelimit-remaining"), "0");
        assert!(header(&refusal, "ratelimit-reset").parse::<u64>().unwrap() > 0);
        problem(refusal, 429, "rate_limited").await;

        // Writes have their own budget: still open after the reads ran out.
        let r = app
            .send_json(
                reqwest::Method::PATCH,
                "/api/v1/tenant",
                &f.key,
                &serde_json::json!({"name": "Acme"}),
            )
            .await;
        assert_eq!(r.status(), 200, "{backend:?}");
    }
}

#[tokio::test]
async fn tenant_budget_is_shared_by_its_keys_and_can_be_overridden() {
    for backend in backends().await {
        let app = TestApp::spawn_with(backend, &[("RATE_LIMIT_READ_PER_MINUTE", "100")]).await;
        let a = app.tenant("alpha").await;
        let b = app.tenant("bravo").await;
        let twelve = TenantLimits {
            tenant_per_minute: Some(12),
            ..Default::default()
        };
        tenancy::set_rate_limits(&app.db, a.tenant_id, twelve)
            .await
            .unwrap();
        let second = app
            .services
            .tenancy
            .create_api_key(
                &tenancy::cli_access(a.tenant_id),
                CreateApiKey {
                    name: "second".into(),
                    scopes: vec!["tenant:read".into()],
                },
            )
            .await
            .unwrap()
            .secret;
        let started = Instant::now();
        let responses = join_all(
            (0..40).map(|i| app.get("/api/v1/tenant", if i % 2 == 0 { &a.key } else { &second })),
        )
        .await;
        let admitted = responses.iter().filter(|r| r.status() == 200).count();
        let bound = admissible(12, started.elapsed());
        assert!(
            (12..=bound).contains(&admitted),
            "{backend:?}: {admitted} admitted, tenant budget 12"
        );
        // Another tenant's budget is untouched.
        assert_eq!(app.get("/api/v1/tenant", &b.key).await.status(), 200);

        // Zero is refused with a clear error, and nothing changes.
        let err = tenancy::set_rate_limits(
            &app.db,
            a.tenant_id,
            TenantLimits {
                read_per_minute: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), "validation_failed");
        assert_eq!(
            tenancy::rate_limits(&app.db, a.tenant_id).await.unwrap(),
            twelve
        );
    }
}

#[tokio::test]
async fn anonymous_requests_and_bad_keys_spend_the_address_budget() {
    for backend in backends().await {
        let app = TestApp::spawn_with(backend, &[("RATE_LIMIT_PUBLIC_PER_MINUTE", "5")]).await;
        let f = app.tenant("acme").await;
        for _ in 0..3 {
            let r = app
                .client
                .get(app.url("/api/v1/openapi.json"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        for _ in 0..2 {
            let r = app.get("/api/v1/tenant", "apk_AAAAAAAAAAAA_wrong").await;
            problem(r, 401, "unauthorized").await;
        }
        let r = app.get("/api/v1/tenant", "apk_AAAAAAAAAAAA_wrong").await;
        problem(r, 429, "rate_limited").await;
        let r = app
            .client
            .get(app.url("/api/v1/openapi.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429, "{backend:?}");
        // A valid key has its own budget, not the address's.
        assert_eq!(app.get("/api/v1/tenant", &f.key).await.status(), 200);
    }
}

#[tokio::test]
async fn platform_admins_skip_limits() {
    for backend in backends().await {
        let app = TestApp::spawn_with(
            backend,
            &[
                ("RATE_LIMIT_READ_PER_MINUTE", "2"),
                ("PLATFORM_ADMINS", "Owner@Ops.test"),
            ],
        )
        .await;
        let f = app.tenant("ops").await;
        let owner = Access {
            tenant_id: f.tenant_id,
            actor: Actor::User {
                id: f.owner_id,
                email: f.owner_email.clone(),
            },
            role: Some(Role::Owner),
            scopes: Role::Owner.scopes(),
            ip: None,
        };
        let admin_key = app
            .services
            .tenancy
            .create_api_key(
                &owner,
                CreateApiKey {
                    name: "operator".into(),
                    scopes: Scope::all().iter().map(ToString::to_string).collect(),
                },
            )
            .await
            .unwrap()
            .secret;
        let (responses, _) = burst(&app, "/api/v1/tenant", &admin_key, 20).await;
        assert!(responses.iter().all(|r| r.status() == 200), "{backend:?}");
        assert!(responses[0].headers().get("ratelimit-limit").is_none());
        // The fixture key was issued by the CLI, not by an admin: limited.
        let (responses, elapsed) = burst(&app, "/api/v1/tenant", &f.key, 10).await;
        let admitted = responses.iter().filter(|r| r.status() == 200).count();
        assert!(
            (2..=admissible(2, elapsed)).contains(&admitted),
            "{admitted}"
        );

        // Console sessions of a platform admin are not limited either; others are.
        let browser = app.signed_in(&f.owner_email, &f.owner_password).await;
        for _ in 0..5 {
            let r = app.server_fn(&browser, "whoami", "").await;
            assert_eq!(r.status(), 200);
        }
        let (viewer, password) = app.user(&f, "viewer", Role::Viewer).await;
        let browser = app.signed_in(&viewer, &password).await;
        let statuses: Vec<u16> = join_all((0..5).map(|_| app.server_fn(&browser, "whoami", "")))
            .await
            .iter()
            .map(|r| r.status().as_u16())
            .collect();
        assert!(statuses.contains(&429), "{statuses:?}");
    }
}
