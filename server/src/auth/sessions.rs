//! Console sessions in the database (tower-sessions' SQLx stores on sea-orm's own pool), so
//! they survive restarts and every instance behind a load balancer sees them.

use axum_login::{AuthManagerLayer, AuthManagerLayerBuilder};
use sea_orm::DatabaseConnection;
use tower_sessions::cookie::{time::Duration, SameSite};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};
use tower_sessions::{Expiry, SessionManagerLayer};
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};

use super::Backend;
use crate::config::Config;

pub const COOKIE_NAME: &str = "ap_session";

#[derive(Clone, Debug)]
pub enum DbSessionStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl DbSessionStore {
    /// Uses the database sea-orm is connected to, creating the session table if needed.
    pub async fn new(db: &DatabaseConnection) -> Result<Self, sea_orm::sqlx::Error> {
        let store = match db {
            DatabaseConnection::SqlxSqlitePoolConnection(_) => {
                DbSessionStore::Sqlite(SqliteStore::new(db.get_sqlite_connection_pool().clone()))
            }
            DatabaseConnection::SqlxPostgresPoolConnection(_) => DbSessionStore::Postgres(
                PostgresStore::new(db.get_postgres_connection_pool().clone()),
            ),
            _ => {
                return Err(sea_orm::sqlx::Error::Configuration(
                    "sessions need SQLite or PostgreSQL".into(),
                ))
            }
        };
        match &store {
            DbSessionStore::Sqlite(s) => s.migrate().await?,
            DbSessionStore::Postgres(s) => s.migrate().await?,
        }
        Ok(store)
    }
}

#[async_trait::async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        match self {
            DbSessionStore::Sqlite(s) => s.create(record).await,
            DbSessionStore::Postgres(s) => s.create(record).await,
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self {
            DbSessionStore::Sqlite(s) => s.save(record).await,
            DbSessionStore::Postgres(s) => s.save(record).await,
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match self {
            DbSessionStore::Sqlite(s) => s.load(id).await,
            DbSessionStore::Postgres(s) => s.load(id).await,
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match self {
            DbSessionStore::Sqlite(s) => s.delete(id).await,
            DbSessionStore::Postgres(s) => s.delete(id).await,
        }
    }
}

#[async_trait::async_trait]
impl ExpiredDeletion for DbSessionStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        match self {
            DbSessionStore::Sqlite(s) => s.delete_expired().await,
            DbSessionStore::Postgres(s) => s.delete_expired().await,
        }
    }
}

/// HttpOnly, SameSite=Lax, Secure when the console is served over https.
pub fn session_layer(
    store: DbSessionStore,
    db: DatabaseConnection,
    config: &Config,
) -> AuthManagerLayer<Backend, DbSessionStore> {
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
