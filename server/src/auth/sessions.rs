//! Console sessions in Redis when configured (tower-sessions' fred-based store, entries expire
//! by Redis TTL), otherwise in the database (tower-sessions' SQLx stores on sea-orm's own pool).
//! Either way they survive restarts and every instance behind a load balancer sees them.

use axum_login::{AuthManagerLayer, AuthManagerLayerBuilder};
use sea_orm::DatabaseConnection;
use tower_sessions::cookie::{time::Duration, SameSite};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};
use tower_sessions::{Expiry, SessionManagerLayer};
use tower_sessions_redis_store::{fred::clients::Pool, RedisStore};
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};

use super::Backend;
use crate::config::Config;

pub const COOKIE_NAME: &str = "ap_session";

#[derive(Clone, Debug)]
pub enum SessionBackend {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
    Redis(RedisStore<Pool>),
}

impl SessionBackend {
    /// Redis when a pool is given; otherwise the database sea-orm is connected to, creating
    /// the session table if needed.
    pub async fn new(
        db: &DatabaseConnection,
        redis: Option<Pool>,
    ) -> Result<Self, sea_orm::sqlx::Error> {
        if let Some(pool) = redis {
            return Ok(SessionBackend::Redis(RedisStore::new(pool)));
        }
        let store = match db {
            DatabaseConnection::SqlxSqlitePoolConnection(_) => {
                SessionBackend::Sqlite(SqliteStore::new(db.get_sqlite_connection_pool().clone()))
            }
            DatabaseConnection::SqlxPostgresPoolConnection(_) => SessionBackend::Postgres(
                PostgresStore::new(db.get_postgres_connection_pool().clone()),
            ),
            _ => {
                return Err(sea_orm::sqlx::Error::Configuration(
                    "sessions need SQLite or PostgreSQL".into(),
                ))
            }
        };
        match &store {
            SessionBackend::Sqlite(s) => s.migrate().await?,
            SessionBackend::Postgres(s) => s.migrate().await?,
            SessionBackend::Redis(_) => {}
        }
        Ok(store)
    }
}

#[async_trait::async_trait]
impl SessionStore for SessionBackend {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        match self {
            SessionBackend::Sqlite(s) => s.create(record).await,
            SessionBackend::Postgres(s) => s.create(record).await,
            SessionBackend::Redis(s) => s.create(record).await,
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self {
            SessionBackend::Sqlite(s) => s.save(record).await,
            SessionBackend::Postgres(s) => s.save(record).await,
            SessionBackend::Redis(s) => s.save(record).await,
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match self {
            SessionBackend::Sqlite(s) => s.load(id).await,
            SessionBackend::Postgres(s) => s.load(id).await,
            SessionBackend::Redis(s) => s.load(id).await,
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match self {
            SessionBackend::Sqlite(s) => s.delete(id).await,
            SessionBackend::Postgres(s) => s.delete(id).await,
            SessionBackend::Redis(s) => s.delete(id).await,
        }
    }
}

#[async_trait::async_trait]
impl ExpiredDeletion for SessionBackend {
    async fn delete_expired(&self) -> session_store::Result<()> {
        match self {
            SessionBackend::Sqlite(s) => s.delete_expired().await,
            SessionBackend::Postgres(s) => s.delete_expired().await,
            // Redis expires sessions itself.
            SessionBackend::Redis(_) => Ok(()),
        }
    }
}

/// HttpOnly, SameSite=Lax, Secure when the console is served over https.
pub fn session_layer(
    store: SessionBackend,
    db: DatabaseConnection,
    config: &Config,
) -> AuthManagerLayer<Backend, SessionBackend> {
    let sessions = SessionManagerLayer::new(store)
        .with_name(COOKIE_NAME)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(config.secure_cookies())
        .with_expiry(Expiry::OnInactivity(Duration::hours(i64::from(
            config.session_hours,
        ))));
    AuthManagerLayerBuilder::new(Backend::new(db), sessions).build()
}
