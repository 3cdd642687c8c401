//! Persistence: sea-orm entities and the connection. Every query on tenant-owned rows filters
//! by `tenant_id`; the functions that do so live next to the services that use them.

pub mod agents;
pub mod api_keys;
pub mod audit_log;
pub mod bookings;
pub mod conversations;
pub mod document_contents;
pub mod documents;
pub mod embedding_cache;
pub mod invitations;
pub mod job_schedules;
pub mod jobs;
pub mod knowledge_bases;
pub mod memberships;
pub mod messages;
pub mod prompts;
pub mod router_rules;
pub mod run_steps;
pub mod tenant_llm_settings;
pub mod tenants;
pub mod users;
pub mod widget_refresh_tokens;
pub mod widget_visitors;
pub mod widgets;

use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use sea_orm_migration::MigratorTrait;

use crate::config::Config;

/// Connects (creating the SQLite file's folder if needed) and runs pending migrations.
pub async fn connect(config: &Config) -> Result<DatabaseConnection, DbErr> {
    if config.is_sqlite() {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| DbErr::Custom(format!("cannot create DATA_DIR: {e}")))?;
    }
    let mut options = ConnectOptions::new(config.database_url());
    options.sqlx_logging(false);
    if config.is_sqlite() {
        // One writer at a time is what SQLite allows; a small pool avoids lock contention.
        options.max_connections(4);
    }
    let db = Database::connect(options).await?;
    if config.is_sqlite() {
        use sea_orm::ConnectionTrait;
        db.execute_unprepared(
            "PRAGMA foreign_keys = ON; PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000;",
        )
        .await?;
    }
    Ok(db)
}

/// Cursor paging: `rows` were fetched with `limit + 1`. The extra row only tells that there is
/// a next page; it is dropped, and the last kept row's cursor is returned.
pub fn next_cursor<R>(
    rows: &mut Vec<R>,
    limit: u32,
    cursor_of: impl Fn(&R) -> String,
) -> Option<String> {
    if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(cursor_of)
    } else {
        None
    }
}

pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    migration::Migrator::up(db, None).await
}
