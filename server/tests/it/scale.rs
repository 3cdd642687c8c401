//! Two server processes behind one PostgreSQL and one Redis behave as one installation:
//! they share rate-limit budgets exactly and accept each other's sessions.

use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::future::join_all;
use reqwest::header;
use tokio::process::{Child, Command};

use crate::helpers::*;
use crate::limits::admissible;

struct Instance {
    base: String,
    _child: Child,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn start(dir: &std::path::Path, database_url: &str, namespace: &str) -> Instance {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_server"))
        .arg("serve")
        .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
        .env("DATA_DIR", dir)
        .env("DATABASE_URL", database_url)
        .env("REDIS_URL", redis_url())
        .env("KV_NAMESPACE", namespace)
        .env("DEMO_TENANT", "false")
        .env("RATE_LIMIT_READ_PER_MINUTE", "10")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start server process");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/readyz")).await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "instance on {port} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Instance {
        base,
        _child: child,
    }
}

#[tokio::test]
async fn two_instances_share_budgets_and_sessions() {
    if !backends().await.contains(&Backend::Postgres) {
        return; // said loudly by backends()
    }
    // The in-process app prepares the database and fixtures; traffic goes to the processes.
    let setup = TestApp::spawn(Backend::Postgres).await;
    let f = setup.tenant("acme").await;
    let namespace = format!("it-{}", uuid::Uuid::new_v4().simple());
    let a = start(&setup.dir, &setup.database_url, &namespace).await;
    let b = start(&setup.dir, &setup.database_url, &namespace).await;

    // A burst of 10 x L over both instances: at most L (plus refills) admitted.
    let http = client();
    let started = Instant::now();
    let responses = join_all((0..100).map(|i| {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        http.get(format!("{base}/api/v1/tenant"))
            .bearer_auth(&f.key)
            .send()
    }))
    .await;
    let elapsed = started.elapsed();
    let statuses: Vec<u16> = responses
        .into_iter()
        .map(|r| r.expect("response").status().as_u16())
        .collect();
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(
        admitted + statuses.iter().filter(|s| **s == 429).count(),
        100
    );
    assert!(
        (10..=admissible(10, elapsed)).contains(&admitted),
        "{admitted} of 100 admitted across two instances in {elapsed:?}"
    );

    // A session made on one instance is valid on the other.
    let browser = client();
    let r = browser
        .post(format!("{}/auth/login", a.base))
        .header(header::ORIGIN, &a.base)
        .form(&[
            ("email", f.owner_email.as_str()),
            ("password", f.owner_password.as_str()),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("session cookie")
        .to_string();
    let fresh = reqwest::Client::new();
    let me: serde_json::Value = fresh
        .post(format!("{}/_fn/whoami", b.base))
        .header(header::COOKIE, &cookie)
        .header(header::ORIGIN, &b.base)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], f.owner_email.as_str(), "{me}");
    // Without the cookie the other instance knows nobody.
    let anonymous = fresh
        .post(format!("{}/_fn/whoami", b.base))
        .header(header::ORIGIN, &b.base)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_ne!(anonymous.status(), 200);
}
