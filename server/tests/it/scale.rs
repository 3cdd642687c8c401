//! Several server and worker processes behind one PostgreSQL, one Redis and one bucket behave
//! as one installation: they share rate-limit budgets exactly, accept each other's sessions, and
//! see one knowledge store.

use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::future::join_all;
use reqwest::header;
use reqwest::multipart::Form;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::helpers::*;
use crate::knowledge::{file, table_of};
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

/// `server <command>` on the shared database and store, with `extra` settings.
fn process(
    command: &str,
    dir: &std::path::Path,
    database_url: &str,
    namespace: &str,
    extra: &[(&str, &str)],
) -> Command {
    let mut process = Command::new(env!("CARGO_BIN_EXE_server"));
    process
        .arg(command)
        .env("DATA_DIR", dir)
        .env("DATABASE_URL", database_url)
        .env("REDIS_URL", redis_url())
        .env("KV_NAMESPACE", namespace)
        .env("DEMO_TENANT", "false")
        .env("EMBEDDING_MODEL_DIR", MODEL_DIR)
        .env("RUST_LOG", "warn")
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .kill_on_drop(true);
    process
}

async fn start(
    dir: &std::path::Path,
    database_url: &str,
    namespace: &str,
    extra: &[(&str, &str)],
) -> Instance {
    let port = free_port();
    let child = process("serve", dir, database_url, namespace, extra)
        .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
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
    // The process started itself again with the allocator settings the model needs (same
    // pid). glibc may rewrite the variable as it parses it (':' became NUL here), so each
    // setting is looked for on its own.
    let environ = std::fs::read(format!("/proc/{}/environ", child.id().expect("pid")))
        .expect("the instance's environment");
    let settings: Vec<&[u8]> = environ.split(|b| *b == 0 || *b == b':').collect();
    for (i, setting) in server::rag::embed::MALLOC_TUNABLES.split(':').enumerate() {
        let wanted = if i == 0 {
            format!("GLIBC_TUNABLES={setting}")
        } else {
            setting.to_string()
        };
        assert!(
            settings.contains(&wanted.as_bytes()),
            "the instance runs without {wanted}"
        );
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
    let limit = [("RATE_LIMIT_READ_PER_MINUTE", "10")];
    let a = start(&setup.dir, &setup.database_url, &namespace, &limit).await;
    let b = start(&setup.dir, &setup.database_url, &namespace, &limit).await;

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

/// An S3-compatible server on loopback (moto, from PyPI `moto[server]`, which `make test`
/// installs) with one empty bucket; `None` (said loudly) where moto is missing outside CI.
struct Bucket {
    endpoint: String,
    name: String,
    _server: Child,
}

impl Bucket {
    async fn start() -> Option<Bucket> {
        let installed = Command::new("python3")
            .args(["-c", "import moto.server"])
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success());
        if !installed {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but moto is missing (pip install 'moto[server]')"
            );
            eprintln!("\n!!! moto is not installed; SKIPPING the object-storage test !!!\n");
            return None;
        }
        let port = free_port();
        let server = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start moto");
        let endpoint = format!("http://127.0.0.1:{port}");
        let name = format!("kb-{}", uuid::Uuid::new_v4().simple());
        let deadline = Instant::now() + Duration::from_secs(30);
        // Creating the bucket is also the readiness probe.
        loop {
            if let Ok(r) = client().put(format!("{endpoint}/{name}")).send().await {
                assert_eq!(
                    r.status(),
                    200,
                    "create bucket: {}",
                    r.text().await.unwrap()
                );
                break;
            }
            assert!(Instant::now() < deadline, "moto never answered on {port}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(Bucket {
            endpoint,
            name,
            _server: server,
        })
    }
}

async fn search(base: &str, key: &str, kb: &str, query: &str) -> Value {
    let r = client()
        .post(format!("{base}/api/v1/knowledge-bases/{kb}/search"))
        .bearer_auth(key)
        .json(&json!({ "query": query, "mode": "fulltext" }))
        .send()
        .await
        .unwrap();
    json(r, 200).await
}

fn sources(result: &Value) -> Vec<&str> {
    result["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["source"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn instances_and_workers_share_one_knowledge_store_on_a_bucket() {
    if !backends().await.contains(&Backend::Postgres) {
        return; // said loudly by backends()
    }
    let Some(bucket) = Bucket::start().await else {
        return;
    };
    let uri = format!("s3://{}/knowledge", bucket.name);
    let store = [
        ("LANCEDB_URI", uri.as_str()),
        ("S3_ENDPOINT", bucket.endpoint.as_str()),
        ("S3_ALLOW_HTTP", "true"),
        ("S3_REGION", "us-east-1"),
        ("S3_ACCESS_KEY_ID", "it"),
        ("S3_SECRET_ACCESS_KEY", "it-secret"),
        ("JOBS_IN_PROCESS", "false"),
        ("JOB_POLL_MS", "50"),
    ];
    // The in-process app prepares the database and fixtures and looks into the bucket; it runs
    // no jobs, so every document is ingested by a worker process.
    let setup = TestApp::spawn_with(Backend::Postgres, &store).await;
    let f = setup.tenant("acme").await;
    let namespace = format!("it-{}", uuid::Uuid::new_v4().simple());
    let a = start(&setup.dir, &setup.database_url, &namespace, &store).await;
    let b = start(&setup.dir, &setup.database_url, &namespace, &store).await;
    // Two workers, so documents of one knowledge base are committed concurrently.
    let _workers: Vec<Child> = (0..2)
        .map(|_| {
            process(
                "worker",
                &setup.dir,
                &setup.database_url,
                &namespace,
                &store,
            )
            .spawn()
            .expect("start worker process")
        })
        .collect();

    let http = client();
    let kb = http
        .post(format!("{}/api/v1/knowledge-bases", a.base))
        .bearer_auth(&f.key)
        .json(&json!({ "name": "Shared" }))
        .send()
        .await
        .unwrap();
    let kb = json(kb, 201).await["id"].as_str().unwrap().to_string();
    let mut form = Form::new();
    for i in 0..8 {
        let text = format!("Note {i}: the parcel code is zq{i}x and ships from the north depot.");
        form = form.part("files", file(&format!("note{i}.txt"), "text/plain", text));
    }
    let docs = http
        .post(format!("{}/api/v1/knowledge-bases/{kb}/documents", a.base))
        .bearer_auth(&f.key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let docs = json(docs, 202).await;
    let ids: Vec<String> = docs
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();

    // Ingested by the workers, seen through the other instance.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut chunks = 0;
    for id in &ids {
        loop {
            let r = http
                .get(format!(
                    "{}/api/v1/knowledge-bases/{kb}/documents/{id}",
                    b.base
                ))
                .bearer_auth(&f.key)
                .send()
                .await
                .unwrap();
            let doc = json(r, 200).await;
            if doc["status"] == "ready" {
                chunks += doc["chunk_count"].as_u64().unwrap() as usize;
                break;
            }
            assert_ne!(doc["status"], "failed", "{doc}");
            assert!(Instant::now() < deadline, "{id} never became ready: {doc}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // No commit of one worker was lost to the other's.
    let table = table_of(&setup, &kb).await;
    let vectors = &setup.knowledge.vectors;
    assert_eq!(vectors.count(f.tenant_id, &table).await.unwrap(), chunks);
    for i in 0..8 {
        let r = search(&b.base, &f.key, &kb, &format!("zq{i}x")).await;
        assert_eq!(sources(&r), [format!("note{i}.txt")], "{r}");
    }

    // One cache for every instance: what one searched, the other serves.
    let r = search(&a.base, &f.key, &kb, "zq0x").await;
    assert_eq!(r["cached"], true, "{r}");
    assert_eq!(sources(&r), ["note0.txt"]);

    // Deleted through the other instance: gone from the bucket and from every cache.
    let r = http
        .delete(format!(
            "{}/api/v1/knowledge-bases/{kb}/documents/{}",
            b.base, ids[0]
        ))
        .bearer_auth(&f.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    for base in [&a.base, &b.base] {
        let r = search(base, &f.key, &kb, "zq0x").await;
        assert!(sources(&r).is_empty(), "a stale hit after the delete: {r}");
    }
    assert!(vectors.count(f.tenant_id, &table).await.unwrap() < chunks);
    let r = search(&a.base, &f.key, &kb, "zq1x").await;
    assert_eq!(sources(&r), ["note1.txt"]);

    // A bucket that does not exist stops start-up with the store's own message.
    let missing = format!("s3://{}-missing/knowledge", bucket.name);
    let mut wrong = store;
    wrong[0] = ("LANCEDB_URI", missing.as_str());
    let output = process(
        "worker",
        &setup.dir,
        &setup.database_url,
        &namespace,
        &wrong,
    )
    .stderr(Stdio::piped())
    .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("a worker on a missing bucket exits")
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("knowledge store"), "{stderr}");
}
