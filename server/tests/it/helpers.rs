//! Spawning the app per backend, fixtures, and a client that speaks to it.

use std::path::PathBuf;

use reqwest::{header, Client, Response};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::Value;
use uuid::Uuid;

use app::services::Services;
use app::types::{CreateApiKey, CreateUser, Role, Scope};
use secrecy::ExposeSecret;
use server::config::Config;
use server::startup::Application;
use server::tenancy;

/// The embedded defaults (SQLite, in-process cache and budgets) or the servers an installation
/// at scale uses (PostgreSQL and Redis, sessions in Redis).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

async fn redis_reachable() -> Result<(), String> {
    let url = redis_url();
    let addr = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    tokio::net::TcpStream::connect(&addr)
        .await
        .map(|_| ())
        .map_err(|e| format!("Redis at {url}: {e}"))
}

/// The PostgreSQL the tests create their databases in.
fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// Both backends, or SQLite alone when PostgreSQL is unreachable outside CI (said loudly).
pub async fn backends() -> Vec<Backend> {
    let servers = match Database::connect(postgres_admin_url()).await {
        Ok(db) => {
            let _ = db.close().await;
            redis_reachable().await
        }
        Err(e) => Err(format!("PostgreSQL at {}: {e}", postgres_admin_url())),
    };
    match servers {
        Ok(()) => vec![Backend::Sqlite, Backend::Postgres],
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("CI is set but a server is unreachable: {e}")
        }
        Err(e) => {
            eprintln!("\n!!! {e}; SKIPPING the PostgreSQL + Redis half of this test !!!\n");
            vec![Backend::Sqlite]
        }
    }
}

pub fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ap-it-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A fresh database URL for one test on `backend`.
pub async fn fresh_database(backend: Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}?mode=rwc", dir.join("it.db").display()),
        Backend::Postgres => {
            let name = format!("it_{}", Uuid::new_v4().simple());
            let admin = Database::connect(postgres_admin_url())
                .await
                .expect("postgres");
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create database");
            let _ = admin.close().await;
            let base = postgres_admin_url();
            let (server, _) = base.rsplit_once('/').expect("postgres url has a database");
            format!("{server}/{name}")
        }
    }
}

/// all-MiniLM-L6-v2 as `make models` fetches it.
pub const MODEL_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../data/models/all-MiniLM-L6-v2"
);

pub struct TestApp {
    pub backend: Backend,
    pub knowledge: std::sync::Arc<server::rag::Knowledge>,
    pub base: String,
    pub client: Client,
    pub db: DatabaseConnection,
    pub services: Services,
    /// The app's shared store (in-process, or Redis).
    pub kv: server::kv::Kv,
    pub dir: PathBuf,
    pub database_url: String,
}

pub struct Fixture {
    pub tenant_id: Uuid,
    pub slug: String,
    /// A key with every scope.
    pub key: String,
    pub owner_id: Uuid,
    pub owner_email: String,
    pub owner_password: String,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, &[]).await
    }

    pub async fn spawn_with(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
        let dir = scratch_dir();
        let database_url = fresh_database(backend, &dir).await;
        Self::spawn_on(backend, dir, database_url, extra).await
    }

    /// Serves an existing database (e.g. one the CLI prepared).
    pub async fn spawn_on(
        backend: Backend,
        dir: PathBuf,
        database_url: String,
        extra: &[(&str, &str)],
    ) -> TestApp {
        let dir_s = dir.display().to_string();
        let redis = redis_url();
        let namespace = format!("it-{}", Uuid::new_v4().simple());
        let mut pairs = vec![
            ("LEPTOS_SITE_ADDR", "127.0.0.1:0"),
            ("DATA_DIR", dir_s.as_str()),
            ("DATABASE_URL", database_url.as_str()),
            ("DEMO_TENANT", "false"),
            ("LOGIN_ATTEMPTS_PER_MINUTE", "50"),
            ("EMBEDDING_MODEL_DIR", MODEL_DIR),
            // Documents are extracted by the server binary's child process, not this test's.
            ("EXTRACT_PROGRAM", env!("CARGO_BIN_EXE_server")),
        ];
        if backend == Backend::Postgres {
            pairs.push(("REDIS_URL", redis.as_str()));
            pairs.push(("KV_NAMESPACE", namespace.as_str()));
        }
        pairs.extend_from_slice(extra);
        let config = Config::from_pairs(&pairs).expect("test config");
        let app = Application::build(config).await.expect("app builds");
        let base = format!("http://127.0.0.1:{}", app.port());
        let db = app.state().db.clone();
        let services = app.state().services.clone();
        let knowledge = app.state().knowledge.clone();
        let kv = app.state().kv.clone();
        tokio::spawn(app.run(std::future::pending()));
        TestApp {
            backend,
            knowledge,
            base,
            client: client(),
            db,
            services,
            kv,
            dir,
            database_url,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A tenant with an owner (with their own password) and an all-scopes API key.
    pub async fn tenant(&self, slug: &str) -> Fixture {
        let t = tenancy::create_tenant(&self.db, slug, &format!("{slug} Inc"))
            .await
            .expect("tenant");
        let access = tenancy::cli_access(t.id);
        let owner_email = format!("owner@{slug}.test");
        let owner = tenancy::bootstrap_member(
            &self.db,
            t.id,
            CreateUser {
                email: owner_email.clone(),
                name: format!("{slug} owner"),
                role: Role::Owner,
            },
            false,
        )
        .await
        .expect("owner");
        let key = self
            .services
            .tenancy
            .create_api_key(
                &access,
                CreateApiKey {
                    name: "fixture".into(),
                    scopes: Scope::all().iter().map(ToString::to_string).collect(),
                },
            )
            .await
            .expect("key");
        Fixture {
            tenant_id: t.id,
            slug: slug.into(),
            key: key.secret,
            owner_id: owner.member.user_id,
            owner_email,
            owner_password: owner
                .password
                .expect("a new account")
                .expose_secret()
                .to_string(),
        }
    }

    /// A user with `role` in the fixture's tenant; returns (email, password).
    pub async fn user(&self, f: &Fixture, name: &str, role: Role) -> (String, String) {
        let email = format!("{name}@{}.test", f.slug);
        let created = tenancy::bootstrap_member(
            &self.db,
            f.tenant_id,
            CreateUser {
                email: email.clone(),
                name: name.into(),
                role,
            },
            false,
        )
        .await
        .expect("user");
        let password = created.password.expect("a new account");
        (email, password.expose_secret().to_string())
    }

    pub async fn get(&self, path: &str, key: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .expect("request")
    }

    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: &Value,
    ) -> Response {
        self.client
            .request(method, self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// A browser-like client with its own cookie jar, signed in as `email`.
    /// A new API key with `scopes`, made over REST with `key`; returns its secret.
    pub async fn api_key(&self, key: &str, scopes: &[&str]) -> String {
        let created = json(
            self.send_json(
                reqwest::Method::POST,
                "/api/v1/api-keys",
                key,
                &serde_json::json!({ "name": "made by a test", "scopes": scopes }),
            )
            .await,
            201,
        )
        .await;
        created["secret"].as_str().expect("secret").to_string()
    }

    /// A person the operator's CLI added with a temporary password; returns (email, password).
    pub async fn temporary_user(&self, f: &Fixture, name: &str, role: Role) -> (String, String) {
        let email = format!("{name}@{}.test", f.slug);
        let created = tenancy::bootstrap_member(
            &self.db,
            f.tenant_id,
            CreateUser {
                email: email.clone(),
                name: name.into(),
                role,
            },
            true,
        )
        .await
        .expect("user");
        let password = created.password.expect("a new account");
        (email, password.expose_secret().to_string())
    }

    /// Posts the invitation page's form as a browser does; returns the redirect's target.
    pub async fn accept_invitation(
        &self,
        browser: &Client,
        link: &str,
        fields: &[(&str, &str)],
    ) -> String {
        let token = link.split("token=").nth(1).expect("a token in the link");
        let mut form = vec![("token", token)];
        form.extend_from_slice(fields);
        let response = browser
            .post(self.url("/auth/accept-invitation"))
            .header(header::ORIGIN, &self.base)
            .form(&form)
            .send()
            .await
            .expect("accept");
        assert_eq!(response.status(), 303);
        location(&response)
    }

    pub async fn signed_in(&self, email: &str, password: &str) -> Client {
        let browser = client();
        let response = self.sign_in(&browser, email, password).await;
        assert_eq!(response.status(), 303);
        let to = location(&response);
        assert!(
            to == "/" || to == "/account?first=1",
            "sign-in of {email} failed: {to}"
        );
        browser
    }

    pub async fn sign_in(&self, browser: &Client, email: &str, password: &str) -> Response {
        browser
            .post(self.url("/auth/login"))
            .header(header::ORIGIN, &self.base)
            .form(&[("email", email), ("password", password), ("next", "/")])
            .send()
            .await
            .expect("sign in")
    }

    /// Calls a server function as the console does (form-encoded, same origin).
    pub async fn server_fn(&self, browser: &Client, name: &str, form: &str) -> Response {
        browser
            .post(self.url(&format!("/_fn/{name}")))
            .header(header::ORIGIN, &self.base)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form.to_string())
            .send()
            .await
            .expect("server fn")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if self.backend == Backend::Postgres {
            drop_database(&self.database_url);
        }
    }
}

/// Drops a test's PostgreSQL database, ending the connections the app still holds.
pub fn drop_database(url: &str) {
    let Some((_, name)) = url.rsplit_once('/') else {
        return;
    };
    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    // A thread of its own: Drop may run inside the test's runtime, which cannot block.
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            if let Ok(admin) = Database::connect(postgres_admin_url()).await {
                let _ = admin.execute_unprepared(&sql).await;
                let _ = admin.close().await;
            }
        });
    })
    .join();
}

pub fn client() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

pub fn location(r: &Response) -> String {
    r.headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Asserts a problem+json response and returns its body.
pub async fn problem(r: Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status().as_u16(), status, "status");
    let ct = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(ct, "application/problem+json");
    let body: Value = r.json().await.expect("problem body");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    body
}

pub async fn json(r: Response, status: u16) -> Value {
    let actual = r.status().as_u16();
    let body = r.text().await.expect("body");
    assert_eq!(actual, status, "unexpected status; body: {body}");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

impl TestApp {
    /// The actions of the tenant's newest audit entries (up to 100), newest first.
    pub async fn audit_actions(&self, key: &str) -> Vec<String> {
        let audit = json(self.get("/api/v1/audit-log?limit=100", key).await, 200).await;
        audit["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|e| e["action"].as_str().expect("action").to_string())
            .collect()
    }
}

/// Serves `router` (a fake of an outside service) on a free loopback port.
pub async fn serve_fake(router: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}
