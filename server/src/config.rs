//! One typed configuration, read once at start-up from an optional TOML file and the
//! environment. Each key is named after its environment variable; a bad value stops start-up
//! with a message naming that variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

const KEYS: [&str; 77] = [
    "LEPTOS_SITE_ADDR",
    "LEPTOS_SITE_ROOT",
    "DATA_DIR",
    "DATABASE_URL",
    "PUBLIC_URL",
    "LOG_FORMAT",
    "DEMO_TENANT",
    "LOGIN_ATTEMPTS_PER_MINUTE",
    "SESSION_HOURS",
    "CORS_ALLOWED_ORIGINS",
    "MAX_BODY_BYTES",
    "REQUEST_TIMEOUT_SECS",
    "METRICS_TOKEN",
    "REDIS_URL",
    "KV_NAMESPACE",
    "RATE_LIMIT_READ_PER_MINUTE",
    "RATE_LIMIT_WRITE_PER_MINUTE",
    "RATE_LIMIT_TENANT_PER_MINUTE",
    "RATE_LIMIT_PUBLIC_PER_MINUTE",
    "PLATFORM_ADMINS",
    "CIRCUIT_FAILURES",
    "CIRCUIT_OPEN_SECS",
    "OUTBOUND_TIMEOUT_SECS",
    "JOBS_IN_PROCESS",
    "JOB_POLL_MS",
    "JOB_LEASE_SECS",
    "JOB_SHUTDOWN_GRACE_SECS",
    "JOB_BACKOFF_BASE_SECS",
    "JOB_BACKOFF_CAP_SECS",
    "LANCEDB_URI",
    "S3_ENDPOINT",
    "S3_REGION",
    "S3_ACCESS_KEY_ID",
    "S3_SECRET_ACCESS_KEY",
    "S3_ALLOW_HTTP",
    "EMBEDDING_MODEL_DIR",
    "EMBEDDINGS_URL",
    "EMBEDDINGS_API_KEY",
    "EMBEDDING_BATCH_SIZE",
    "RERANK_URL",
    "RERANK_MODEL",
    "RERANK_API_KEY",
    "MAX_UPLOAD_BYTES",
    "FETCH_ALLOW_PRIVATE",
    "SEARCH_CACHE_TTL_SECS",
    "VECTOR_INDEX_THRESHOLD",
    "LLM_BASE_URL",
    "LLM_API_KEY",
    "LLM_MODEL",
    "LLM_ROUTER_MODEL",
    "LLM_PRICES",
    "LLM_TIMEOUT_SECS",
    "LLM_RETRIES",
    "SMTP_URL",
    "SMTP_FROM",
    "SECRETS_KEYS",
    "LLM_MAX_CALL_SECS",
    "TURN_LEASE_SECS",
    "WIDGET_TOKEN_SECS",
    "SENDGRID_API_URL",
    "MAILGUN_API_URL",
    "MAILGUN_EU_API_URL",
    "TRUSTED_PROXIES",
    "MAX_EXTRACTED_BYTES",
    "EXTRACT_PROGRAM",
    "EXTRACT_MEMORY_MB",
    "EXTRACT_TIMEOUT_SECS",
    "TRANSCRIBE_URL",
    "TRANSCRIBE_MODEL",
    "TRANSCRIBE_API_KEY",
    "TRANSCRIBE_TIMEOUT_SECS",
    "GOOGLE_CLIENT_ID",
    "GOOGLE_CLIENT_SECRET",
    "GOOGLE_AUTH_URL",
    "GOOGLE_TOKEN_URL",
    "GOOGLE_REVOKE_URL",
    "GOOGLE_API_URL",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// What the file and environment say, secrets still in plain strings: no `Debug`.
#[derive(Clone, Serialize, Deserialize)]
struct Raw {
    leptos_site_addr: SocketAddr,
    leptos_site_root: PathBuf,
    data_dir: PathBuf,
    database_url: Option<String>,
    public_url: Option<String>,
    log_format: LogFormat,
    demo_tenant: bool,
    login_attempts_per_minute: u32,
    session_hours: u32,
    cors_allowed_origins: String,
    trusted_proxies: String,
    max_body_bytes: usize,
    request_timeout_secs: u64,
    metrics_token: Option<String>,
    redis_url: Option<String>,
    kv_namespace: String,
    rate_limit_read_per_minute: u32,
    rate_limit_write_per_minute: u32,
    rate_limit_tenant_per_minute: u32,
    rate_limit_public_per_minute: u32,
    platform_admins: String,
    circuit_failures: u32,
    circuit_open_secs: u64,
    outbound_timeout_secs: u64,
    jobs_in_process: bool,
    job_poll_ms: u64,
    job_lease_secs: u64,
    job_shutdown_grace_secs: u64,
    job_backoff_base_secs: u64,
    job_backoff_cap_secs: u64,
    lancedb_uri: Option<String>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    s3_access_key_id: Option<String>,
    s3_secret_access_key: Option<String>,
    s3_allow_http: bool,
    embedding_model_dir: Option<PathBuf>,
    embeddings_url: Option<String>,
    embeddings_api_key: Option<String>,
    embedding_batch_size: usize,
    rerank_url: Option<String>,
    rerank_model: Option<String>,
    rerank_api_key: Option<String>,
    max_upload_bytes: usize,
    max_extracted_bytes: usize,
    extract_program: Option<PathBuf>,
    extract_memory_mb: u64,
    extract_timeout_secs: u64,
    fetch_allow_private: bool,
    search_cache_ttl_secs: u64,
    vector_index_threshold: usize,
    llm_base_url: Option<String>,
    llm_api_key: Option<String>,
    llm_model: String,
    llm_router_model: Option<String>,
    llm_prices: String,
    llm_timeout_secs: u64,
    llm_max_call_secs: u64,
    turn_lease_secs: u64,
    widget_token_secs: u64,
    llm_retries: u32,
    smtp_url: Option<String>,
    smtp_from: String,
    secrets_keys: Option<String>,
    sendgrid_api_url: String,
    mailgun_api_url: String,
    mailgun_eu_api_url: String,
    transcribe_url: Option<String>,
    transcribe_model: String,
    transcribe_api_key: Option<String>,
    transcribe_timeout_secs: u64,
    google_client_id: Option<String>,
    google_client_secret: Option<String>,
    google_auth_url: String,
    google_token_url: String,
    google_revoke_url: String,
    google_api_url: String,
}

impl Default for Raw {
    fn default() -> Self {
        Raw {
            leptos_site_addr: SocketAddr::from(([127, 0, 0, 1], 3000)),
            leptos_site_root: PathBuf::from("target/site"),
            data_dir: PathBuf::from("data"),
            database_url: None,
            public_url: None,
            log_format: LogFormat::Text,
            demo_tenant: true,
            login_attempts_per_minute: 5,
            session_hours: 12,
            cors_allowed_origins: String::new(),
            trusted_proxies: String::new(),
            max_body_bytes: 2 * 1024 * 1024,
            request_timeout_secs: 30,
            metrics_token: None,
            redis_url: None,
            kv_namespace: "ap".into(),
            rate_limit_read_per_minute: 600,
            rate_limit_write_per_minute: 120,
            rate_limit_tenant_per_minute: 3000,
            rate_limit_public_per_minute: 120,
            platform_admins: String::new(),
            circuit_failures: 5,
            circuit_open_secs: 60,
            outbound_timeout_secs: 30,
            jobs_in_process: true,
            job_poll_ms: 250,
            job_lease_secs: 300,
            job_shutdown_grace_secs: 20,
            job_backoff_base_secs: 5,
            job_backoff_cap_secs: 3600,
            lancedb_uri: None,
            s3_endpoint: None,
            s3_region: None,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_allow_http: false,
            embedding_model_dir: None,
            embeddings_url: None,
            embeddings_api_key: None,
            embedding_batch_size: 32,
            rerank_url: None,
            rerank_model: None,
            rerank_api_key: None,
            max_upload_bytes: 20 * 1024 * 1024,
            max_extracted_bytes: 64 * 1024 * 1024,
            extract_program: None,
            extract_memory_mb: 1024,
            extract_timeout_secs: 120,
            fetch_allow_private: false,
            search_cache_ttl_secs: 30,
            vector_index_threshold: 20_000,
            llm_base_url: None,
            llm_api_key: None,
            llm_model: "gpt-4o-mini".into(),
            llm_router_model: None,
            llm_prices: "gpt-4o-mini=0.15/0.60,gpt-4o=2.50/10.00,gpt-4.1-mini=0.40/1.60".into(),
            llm_timeout_secs: 60,
            llm_max_call_secs: 300,
            turn_lease_secs: 300,
            widget_token_secs: 900,
            llm_retries: 2,
            smtp_url: None,
            smtp_from: "Agent Platform <noreply@localhost>".into(),
            sendgrid_api_url: "https://api.sendgrid.com".into(),
            mailgun_api_url: "https://api.mailgun.net".into(),
            mailgun_eu_api_url: "https://api.eu.mailgun.net".into(),
            transcribe_url: None,
            transcribe_model: "whisper-1".into(),
            transcribe_api_key: None,
            transcribe_timeout_secs: 120,
            google_client_id: None,
            google_client_secret: None,
            google_auth_url: "https://accounts.google.com/o/oauth2/v2/auth".into(),
            google_token_url: "https://oauth2.googleapis.com/token".into(),
            google_revoke_url: "https://oauth2.googleapis.com/revoke".into(),
            google_api_url: "https://www.googleapis.com".into(),
            secrets_keys: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the HTTP server listens (`LEPTOS_SITE_ADDR`).
    pub site_addr: SocketAddr,
    /// The folder cargo-leptos built the WASM bundle, CSS and assets into (`LEPTOS_SITE_ROOT`).
    pub site_root: PathBuf,
    /// Local state for the embedded defaults (`DATA_DIR`).
    pub data_dir: PathBuf,
    /// SQLite file under `DATA_DIR` unless `DATABASE_URL` names another database.
    pub database_url: SecretString,
    /// The address users reach the console at; `https://` turns on Secure cookies.
    pub public_url: Option<String>,
    pub log_format: LogFormat,
    /// Create a demo tenant with an admin user when the database has no tenant.
    pub demo_tenant: bool,
    /// Failed sign-ins allowed per minute for one email or one address.
    pub login_attempts_per_minute: u32,
    /// Console sessions end after this many hours without activity.
    pub session_hours: u32,
    /// Browser origins allowed to call the REST API (CORS); none by default.
    pub cors_allowed_origins: Vec<String>,
    /// A turn's hold on its conversation, renewed while it runs (`TURN_LEASE_SECS`).
    pub turn_lease: std::time::Duration,
    /// How long a widget visitor's access token works (`WIDGET_TOKEN_SECS`).
    pub widget_token: std::time::Duration,
    /// Load balancers whose forwarded-for headers name the client (`TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// A request still running after this long is answered 408.
    pub request_timeout: std::time::Duration,
    /// Bearer token for `/metrics`; without one the endpoint is off.
    pub metrics_token: Option<SecretString>,
    /// Redis for cache, rate limits and sessions, shared by every instance; in-process without.
    pub redis_url: Option<SecretString>,
    /// Prefix of every cache and rate-limit key, separating environments sharing one Redis.
    pub kv_namespace: String,
    /// Default budgets; tenants may have their own (`server tenant limits`).
    pub rate_limits: RateLimitConfig,
    /// Emails of platform operators: their sessions and the API keys they issued skip rate limits.
    pub platform_admins: Vec<String>,
    /// Circuit breakers and timeouts of calls to external services.
    pub circuit: CircuitConfig,
    /// Run a job worker inside `server serve` (turn off when `server worker` processes run).
    pub jobs_in_process: bool,
    pub jobs: crate::jobs::WorkerConfig,
    pub knowledge: crate::rag::KnowledgeConfig,
    pub llm: crate::llm::LlmConfig,
    /// Outgoing email (`SMTP_URL`, `SMTP_FROM`); the agents' `send_email` tool needs it.
    pub smtp: Option<crate::integrations::email::SmtpConfig>,
    /// Where tenants' own email providers are reached (`SENDGRID_API_URL`, `MAILGUN_API_URL`,
    /// `MAILGUN_EU_API_URL`); tests point them at fakes on loopback.
    pub email_apis: crate::integrations::email_providers::ProviderUrls,
    /// Speech to text for customers' voice messages (`TRANSCRIBE_URL`, an OpenAI-compatible
    /// API base such as `https://api.openai.com/v1`; `TRANSCRIBE_MODEL`, `TRANSCRIBE_API_KEY`,
    /// `TRANSCRIBE_TIMEOUT_SECS`); none without a URL.
    pub transcribe: Option<crate::llm::transcribe::TranscribeConfig>,
    /// The platform's Google OAuth client (`GOOGLE_CLIENT_ID`, `GOOGLE_CLIENT_SECRET`) and
    /// Google's endpoints (`GOOGLE_AUTH_URL`, `GOOGLE_TOKEN_URL`, `GOOGLE_REVOKE_URL`,
    /// `GOOGLE_API_URL`; tests point them at a fake); none without a client id.
    pub google: Option<crate::integrations::google::GoogleConfig>,
    /// Keys encrypting stored secrets (`SECRETS_KEYS`: `id:base64,…`, the first encrypts);
    /// `DATA_DIR/secrets.key` when unset ([`crate::secrets::KeyRing::load`]).
    pub secrets_keys: Option<crate::secrets::KeyRing>,
}

/// How calls to an external service fail fast once it is down.
#[derive(Debug, Clone, Copy)]
pub struct CircuitConfig {
    /// Consecutive failures that open the circuit (`CIRCUIT_FAILURES`).
    pub failures: u32,
    /// How long it stays open before one call may try again (`CIRCUIT_OPEN_SECS`).
    pub open_for: std::time::Duration,
    /// Longest wait for one call (`OUTBOUND_TIMEOUT_SECS`).
    pub timeout: std::time::Duration,
}

/// Requests per minute, by route class.
#[derive(Debug, Clone, Copy)]
pub struct RateLimitConfig {
    /// Per API key, reads (GET, HEAD).
    pub read: u32,
    /// Per API key, writes.
    pub write: u32,
    /// Per tenant, all keys and console users together.
    pub tenant: u32,
    /// Per client address, unauthenticated requests.
    pub public: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Reads `CONFIG_FILE` (default `agent-platform.toml`, if present) and the environment.
    pub fn load() -> Result<Config, ConfigError> {
        let file = std::env::var("CONFIG_FILE").unwrap_or_else(|_| "agent-platform.toml".into());
        let figment = Figment::from(Serialized::defaults(Raw::default()))
            .merge(Toml::file(file))
            .merge(Env::raw().filter(|k| KEYS.contains(&k.as_str().to_uppercase().as_str())));
        Self::from_figment(figment)
    }

    /// Defaults plus the given overrides; what tests and tools use.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Raw::default()));
        for (key, value) in pairs {
            // Parsed as the environment provider parses, so "5" is a number and "true" a bool.
            let value: figment::value::Value = value.parse().unwrap_or_else(|e| match e {});
            figment = figment.merge((key.to_lowercase(), value));
        }
        Self::from_figment(figment)
    }

    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let raw: Raw = figment.extract().map_err(|e| {
            let key = e.path.last().map(|k| k.to_uppercase()).unwrap_or_default();
            ConfigError(format!("invalid value for {key}: {}", e.kind))
        })?;
        raw.validate()
    }
}

impl Raw {
    fn validate(self) -> Result<Config, ConfigError> {
        if self.login_attempts_per_minute == 0 {
            return Err(ConfigError(
                "invalid value for LOGIN_ATTEMPTS_PER_MINUTE: must be at least 1".into(),
            ));
        }
        if self.session_hours == 0 {
            return Err(ConfigError(
                "invalid value for SESSION_HOURS: must be at least 1".into(),
            ));
        }
        if let Some(url) = &self.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError(
                    "invalid value for PUBLIC_URL: must start with http:// or https://".into(),
                ));
            }
        }
        if self.max_body_bytes < 1024 {
            return Err(ConfigError(
                "invalid value for MAX_BODY_BYTES: must be at least 1024".into(),
            ));
        }
        for (key, value) in [
            (
                "RATE_LIMIT_READ_PER_MINUTE",
                self.rate_limit_read_per_minute,
            ),
            (
                "RATE_LIMIT_WRITE_PER_MINUTE",
                self.rate_limit_write_per_minute,
            ),
            (
                "RATE_LIMIT_TENANT_PER_MINUTE",
                self.rate_limit_tenant_per_minute,
            ),
            (
                "RATE_LIMIT_PUBLIC_PER_MINUTE",
                self.rate_limit_public_per_minute,
            ),
            ("CIRCUIT_FAILURES", self.circuit_failures),
            ("CIRCUIT_OPEN_SECS", u32::from(self.circuit_open_secs > 0)),
            (
                "OUTBOUND_TIMEOUT_SECS",
                u32::from(self.outbound_timeout_secs > 0),
            ),
        ] {
            if value == 0 {
                return Err(ConfigError(format!(
                    "invalid value for {key}: must be at least 1"
                )));
            }
        }
        if let Some(url) = self.redis_url.as_deref().filter(|u| !u.is_empty()) {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(ConfigError(
                    "invalid value for REDIS_URL: expected redis://… or rediss://…".into(),
                ));
            }
        }
        if self.kv_namespace.is_empty() || self.kv_namespace.contains(char::is_whitespace) {
            return Err(ConfigError(
                "invalid value for KV_NAMESPACE: must be a non-empty word".into(),
            ));
        }
        if self.request_timeout_secs == 0 {
            return Err(ConfigError(
                "invalid value for REQUEST_TIMEOUT_SECS: must be at least 1".into(),
            ));
        }
        let cors_allowed_origins: Vec<String> = self
            .cors_allowed_origins
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_string())
            .filter(|o| !o.is_empty())
            .collect();
        if let Some(bad) = cors_allowed_origins.iter().find(|o| {
            !(o.starts_with("http://") || o.starts_with("https://"))
                || o.contains(char::is_whitespace)
                || o.splitn(4, '/').nth(3).is_some()
        }) {
            return Err(ConfigError(format!(
                "invalid value for CORS_ALLOWED_ORIGINS: '{bad}' is not an origin like https://example.com"
            )));
        }
        for (key, url) in [
            ("EMBEDDINGS_URL", &self.embeddings_url),
            ("RERANK_URL", &self.rerank_url),
            ("LLM_BASE_URL", &self.llm_base_url),
        ] {
            if let Some(url) = url.as_deref().filter(|u| !u.is_empty()) {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(ConfigError(format!(
                        "invalid value for {key}: must start with http:// or https://"
                    )));
                }
            }
        }
        if self.embedding_batch_size == 0 || self.embedding_batch_size > 2048 {
            return Err(ConfigError(
                "invalid value for EMBEDDING_BATCH_SIZE: must be 1–2048".into(),
            ));
        }
        if self.max_upload_bytes < 1024 {
            return Err(ConfigError(
                "invalid value for MAX_UPLOAD_BYTES: must be at least 1024".into(),
            ));
        }
        if self.extract_memory_mb < 64 || self.extract_timeout_secs == 0 {
            return Err(ConfigError(
                "invalid value for EXTRACT_MEMORY_MB or EXTRACT_TIMEOUT_SECS: at least 64 MiB and 1 s"
                    .into(),
            ));
        }
        if self.max_extracted_bytes < 1024 {
            return Err(ConfigError(
                "invalid value for MAX_EXTRACTED_BYTES: must be at least 1024".into(),
            ));
        }
        let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        if self.llm_model.trim().is_empty() {
            return Err(ConfigError(
                "invalid value for LLM_MODEL: must not be empty".into(),
            ));
        }
        if self.llm_timeout_secs == 0 || self.llm_retries > 10 {
            return Err(ConfigError(
                "invalid value for LLM_TIMEOUT_SECS or LLM_RETRIES: at least 1 s, at most 10 retries"
                    .into(),
            ));
        }
        if self.llm_max_call_secs < self.llm_timeout_secs {
            return Err(ConfigError(
                "invalid value for LLM_MAX_CALL_SECS: must be at least LLM_TIMEOUT_SECS".into(),
            ));
        }
        let llm = crate::llm::LlmConfig {
            base_url: non_empty(self.llm_base_url),
            api_key: non_empty(self.llm_api_key).map(SecretString::from),
            router_model: non_empty(self.llm_router_model)
                .unwrap_or_else(|| self.llm_model.clone()),
            chat_model: self.llm_model,
            prices: crate::llm::LlmConfig::parse_prices(&self.llm_prices)
                .map_err(|e| ConfigError(format!("invalid value for LLM_PRICES: {e}")))?,
            timeout: std::time::Duration::from_secs(self.llm_timeout_secs),
            max_call: std::time::Duration::from_secs(self.llm_max_call_secs),
            retries: self.llm_retries,
        };
        let smtp_from: lettre::message::Mailbox = self.smtp_from.trim().parse().map_err(|e| {
            ConfigError(format!(
                "invalid value for SMTP_FROM: {e} (expected a mailbox like `Shop <noreply@shop.example>`)"
            ))
        })?;
        let smtp = match non_empty(self.smtp_url) {
            Some(url) => {
                crate::integrations::email::check_url(&url)
                    .map_err(|e| ConfigError(format!("invalid value for SMTP_URL: {e}")))?;
                Some(crate::integrations::email::SmtpConfig {
                    url: SecretString::from(url),
                    from: smtp_from,
                })
            }
            None => None,
        };
        let api_url = |key: &str, value: String| {
            app::validate::http_url(&value, &())
                .map(|()| value.trim().trim_end_matches('/').to_string())
                .map_err(|e| ConfigError(format!("invalid value for {key}: {e}")))
        };
        let email_apis = crate::integrations::email_providers::ProviderUrls {
            sendgrid: api_url("SENDGRID_API_URL", self.sendgrid_api_url)?,
            mailgun: api_url("MAILGUN_API_URL", self.mailgun_api_url)?,
            mailgun_eu: api_url("MAILGUN_EU_API_URL", self.mailgun_eu_api_url)?,
        };
        let transcribe = match non_empty(self.transcribe_url) {
            Some(url) => Some(crate::llm::transcribe::TranscribeConfig {
                base_url: api_url("TRANSCRIBE_URL", url)?,
                model: self.transcribe_model.trim().to_string(),
                api_key: non_empty(self.transcribe_api_key).map(SecretString::from),
                timeout: std::time::Duration::from_secs(self.transcribe_timeout_secs.max(1)),
            }),
            None => None,
        };
        let google = match (
            non_empty(self.google_client_id),
            non_empty(self.google_client_secret),
        ) {
            (Some(client_id), Some(secret)) => Some(crate::integrations::google::GoogleConfig {
                client_id,
                client_secret: SecretString::from(secret),
                auth_url: api_url("GOOGLE_AUTH_URL", self.google_auth_url)?,
                token_url: api_url("GOOGLE_TOKEN_URL", self.google_token_url)?,
                revoke_url: api_url("GOOGLE_REVOKE_URL", self.google_revoke_url)?,
                api_url: api_url("GOOGLE_API_URL", self.google_api_url)?,
            }),
            (None, None) => None,
            _ => {
                return Err(ConfigError(
                    "GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET go together".into(),
                ))
            }
        };
        let secrets_keys = non_empty(self.secrets_keys)
            .map(|text| {
                crate::secrets::KeyRing::parse(&text)
                    .map_err(|e| ConfigError(format!("invalid value for SECRETS_KEYS: {e}")))
            })
            .transpose()?;
        let lancedb_uri = non_empty(self.lancedb_uri)
            .unwrap_or_else(|| self.data_dir.join("lancedb").to_string_lossy().into_owned());
        if let Some((scheme, rest)) = lancedb_uri.split_once("://") {
            if scheme != "s3" && scheme != "file" {
                return Err(ConfigError(format!(
                    "invalid value for LANCEDB_URI: {scheme}:// is not supported; use a folder or s3://bucket/prefix"
                )));
            }
            if scheme == "s3" && rest.split('/').next().unwrap_or_default().is_empty() {
                return Err(ConfigError(
                    "invalid value for LANCEDB_URI: s3:// needs a bucket (s3://bucket/prefix)"
                        .into(),
                ));
            }
        }
        let s3_endpoint = non_empty(self.s3_endpoint);
        if let Some(endpoint) = &s3_endpoint {
            if !(endpoint.starts_with("https://")
                || self.s3_allow_http && endpoint.starts_with("http://"))
            {
                return Err(ConfigError(
                    "invalid value for S3_ENDPOINT: must start with https:// (or http:// with S3_ALLOW_HTTP=true)".into(),
                ));
            }
        }
        let knowledge = crate::rag::KnowledgeConfig {
            lancedb_uri,
            s3: crate::rag::lance::S3Settings {
                endpoint: s3_endpoint,
                region: non_empty(self.s3_region),
                access_key_id: non_empty(self.s3_access_key_id),
                secret_access_key: non_empty(self.s3_secret_access_key).map(SecretString::from),
                allow_http: self.s3_allow_http,
            },
            model_dir: self
                .embedding_model_dir
                .clone()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| self.data_dir.join("models").join("all-MiniLM-L6-v2")),
            embeddings_url: non_empty(self.embeddings_url),
            embeddings_api_key: non_empty(self.embeddings_api_key).map(SecretString::from),
            embed_batch: self.embedding_batch_size,
            rerank_url: non_empty(self.rerank_url),
            rerank_model: non_empty(self.rerank_model),
            rerank_api_key: non_empty(self.rerank_api_key).map(SecretString::from),
            max_upload_bytes: self.max_upload_bytes,
            max_extracted_bytes: self.max_extracted_bytes,
            sandbox: crate::rag::sandbox::Sandbox {
                program: self
                    .extract_program
                    .clone()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or_else(crate::rag::sandbox::Sandbox::this_binary),
                memory_mb: self.extract_memory_mb,
                timeout: std::time::Duration::from_secs(self.extract_timeout_secs),
            },
            fetch_allow_private: self.fetch_allow_private,
            search_cache_ttl: std::time::Duration::from_secs(self.search_cache_ttl_secs),
            vector_index_threshold: self.vector_index_threshold.max(256),
        };
        let database_url = match self.database_url.filter(|u| !u.is_empty()) {
            Some(url) if url.starts_with("sqlite:") || url.starts_with("postgres") => url,
            Some(_) => {
                return Err(ConfigError(
                    "invalid value for DATABASE_URL: expected sqlite:… or postgres://…".into(),
                ))
            }
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("platform.db").display()
            ),
        };
        let trusted_proxies = crate::http::client_ip::parse_trusted(&self.trusted_proxies)
            .map_err(|e| ConfigError(format!("invalid value for TRUSTED_PROXIES: {e}")))?;
        Ok(Config {
            site_addr: self.leptos_site_addr,
            site_root: self.leptos_site_root,
            data_dir: self.data_dir,
            database_url: SecretString::from(database_url),
            public_url: self.public_url,
            log_format: self.log_format,
            demo_tenant: self.demo_tenant,
            login_attempts_per_minute: self.login_attempts_per_minute,
            session_hours: self.session_hours,
            cors_allowed_origins,
            trusted_proxies,
            turn_lease: std::time::Duration::from_secs(self.turn_lease_secs.max(1)),
            widget_token: std::time::Duration::from_secs(self.widget_token_secs.clamp(1, 86_400)),
            max_body_bytes: self.max_body_bytes,
            request_timeout: std::time::Duration::from_secs(self.request_timeout_secs),
            metrics_token: self
                .metrics_token
                .filter(|t| !t.is_empty())
                .map(SecretString::from),
            redis_url: self
                .redis_url
                .filter(|u| !u.is_empty())
                .map(SecretString::from),
            kv_namespace: self.kv_namespace,
            rate_limits: RateLimitConfig {
                read: self.rate_limit_read_per_minute,
                write: self.rate_limit_write_per_minute,
                tenant: self.rate_limit_tenant_per_minute,
                public: self.rate_limit_public_per_minute,
            },
            platform_admins: self
                .platform_admins
                .split(',')
                .map(|e| e.trim().to_lowercase())
                .filter(|e| !e.is_empty())
                .collect(),
            circuit: CircuitConfig {
                failures: self.circuit_failures,
                open_for: std::time::Duration::from_secs(self.circuit_open_secs),
                timeout: std::time::Duration::from_secs(self.outbound_timeout_secs),
            },
            jobs_in_process: self.jobs_in_process,
            jobs: crate::jobs::WorkerConfig {
                poll: std::time::Duration::from_millis(self.job_poll_ms),
                lease: std::time::Duration::from_secs(self.job_lease_secs),
                shutdown_grace: std::time::Duration::from_secs(self.job_shutdown_grace_secs),
                backoff_base: std::time::Duration::from_secs(self.job_backoff_base_secs),
                backoff_cap: std::time::Duration::from_secs(self.job_backoff_cap_secs),
                schedules: true,
            },
            knowledge,
            llm,
            smtp,
            email_apis,
            transcribe,
            google,
            secrets_keys,
        })
    }
}

impl Config {
    pub fn database_url(&self) -> &str {
        self.database_url.expose_secret()
    }

    pub fn redis_url(&self) -> Option<&str> {
        self.redis_url.as_ref().map(|u| u.expose_secret())
    }

    pub fn is_platform_admin(&self, email: &str) -> bool {
        self.platform_admins
            .iter()
            .any(|a| a.eq_ignore_ascii_case(email))
    }

    pub fn is_sqlite(&self) -> bool {
        self.database_url().starts_with("sqlite:")
    }

    pub fn secure_cookies(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
    }

    /// Where people open the console, for messages.
    pub fn console_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.site_addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_value_names_the_variable() {
        let err = Config::from_pairs(&[("LOGIN_ATTEMPTS_PER_MINUTE", "lots")]).unwrap_err();
        assert!(
            err.to_string().contains("LOGIN_ATTEMPTS_PER_MINUTE"),
            "{err}"
        );
        let err = Config::from_pairs(&[("LEPTOS_SITE_ADDR", "nowhere")]).unwrap_err();
        assert!(err.to_string().contains("LEPTOS_SITE_ADDR"), "{err}");
        let err =
            Config::from_pairs(&[("CORS_ALLOWED_ORIGINS", "https://a.example/path")]).unwrap_err();
        assert!(err.to_string().contains("CORS_ALLOWED_ORIGINS"), "{err}");
        let err = Config::from_pairs(&[("DATABASE_URL", "mysql://x")]).unwrap_err();
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");
        let err = Config::from_pairs(&[("SMTP_URL", "mail.example.com:25")]).unwrap_err();
        assert!(err.to_string().contains("SMTP_URL"), "{err}");
        let err = Config::from_pairs(&[("SMTP_FROM", "not a mailbox")]).unwrap_err();
        assert!(err.to_string().contains("SMTP_FROM"), "{err}");
        let err = Config::from_pairs(&[("SECRETS_KEYS", "k1:c2hvcnQ=")]).unwrap_err();
        assert!(err.to_string().contains("SECRETS_KEYS"), "{err}");
    }

    #[test]
    fn database_url_is_redacted_and_defaults_to_sqlite_in_data_dir() {
        let config = Config::from_pairs(&[("DATA_DIR", "/tmp/x")]).unwrap();
        assert_eq!(
            config.database_url(),
            "sqlite:///tmp/x/platform.db?mode=rwc"
        );
        let config = Config::from_pairs(&[("DATABASE_URL", "postgres://u:hunter2@h/db")]).unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn every_setting_is_read_from_the_environment() {
        let defaults = serde_json::to_value(Raw::default()).unwrap();
        for key in defaults.as_object().unwrap().keys() {
            let name = key.to_uppercase();
            assert!(KEYS.contains(&name.as_str()), "{name} is missing from KEYS");
        }
        assert_eq!(KEYS.len(), defaults.as_object().unwrap().len());
    }

    #[test]
    fn smtp_is_off_by_default_and_its_password_is_redacted() {
        let config = Config::from_pairs(&[]).unwrap();
        assert!(config.smtp.is_none());
        let config = Config::from_pairs(&[
            ("SMTP_URL", "smtps://bot:hunter2@mail.example.com"),
            ("SMTP_FROM", "Acme <bot@acme.example>"),
        ])
        .unwrap();
        let smtp = config.smtp.as_ref().unwrap();
        assert_eq!(smtp.from.email.to_string(), "bot@acme.example");
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn lancedb_is_a_folder_or_an_s3_bucket() {
        let config = Config::from_pairs(&[("DATA_DIR", "/tmp/x")]).unwrap();
        assert_eq!(config.knowledge.lancedb_uri, "/tmp/x/lancedb");
        assert!(Config::from_pairs(&[("LANCEDB_URI", "file:///srv/kb")]).is_ok());
        for uri in ["gs://bucket/kb", "s3+ddb://bucket/kb", "s3:///kb"] {
            let err = Config::from_pairs(&[("LANCEDB_URI", uri)]).unwrap_err();
            assert!(err.to_string().contains("LANCEDB_URI"), "{uri}: {err}");
        }
        let err = Config::from_pairs(&[("S3_ENDPOINT", "http://127.0.0.1:9000")]).unwrap_err();
        assert!(err.to_string().contains("S3_ENDPOINT"), "{err}");
        let config = Config::from_pairs(&[
            ("LANCEDB_URI", "s3://kb-bucket/prod"),
            ("S3_ENDPOINT", "http://127.0.0.1:9000"),
            ("S3_ALLOW_HTTP", "true"),
            ("S3_SECRET_ACCESS_KEY", "hunter2"),
        ])
        .unwrap();
        assert!(config.knowledge.s3.allow_http);
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
