//! Persistence: sea-orm entities and the connection. Every query on tenant-owned rows filters
//! by `tenant_id`; the functions that do so live next to the services that use them.

pub mod agents;
pub mod api_keys;
pub mod audit_log;
pub mod bookings;
pub mod channel_graphs;
pub mod chatwoot_connections;
pub mod chatwoot_conversations;
pub mod conversations;
pub mod document_contents;
pub mod documents;
pub mod embedding_cache;
pub mod google_connections;
pub mod invitations;
pub mod job_schedules;
pub mod jobs;
pub mod knowledge_bases;
pub mod memberships;
pub mod messages;
pub mod oauth_states;
pub mod prompts;
pub mod router_rules;
pub mod run_steps;
pub mod tenant_email_settings;
pub mod tenant_llm_settings;
pub mod tenants;
pub mod users;
pub mod webhook_deliveries;
pub mod webhook_endpoints;
pub mod widget_refresh_tokens;
pub mod widget_visitors;
pub mod widgets;
pub mod workflow_compensations;
pub mod workflow_runs;
pub mod workflow_secrets;
pub mod workflow_steps;
pub mod workflow_test_usage;
pub mod workflow_versions;
pub mod workflows;

use sea_orm::{
    ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, EntityTrait,
    Order, QueryFilter, QueryOrder, QuerySelect, Select,
};

use app::error::AppError;
use app::types::Page;
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

/// `text` inside a `LIKE` pattern escaped with a backslash: its `%`, `_` and backslashes match
/// only themselves.
pub fn like_literal(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// One page of `select` in `order` of the key column `id` (ids are UUIDv7 or sequences, so
/// that is the order of creation), continuing after `cursor`: the last key of the page before,
/// as the previous page's `next_cursor` gave it. One row more than `limit` is read only to tell
/// whether a next page exists.
pub async fn page_by_id<E, K>(
    db: &impl ConnectionTrait,
    select: Select<E>,
    (id, order): (E::Column, Order),
    cursor: Option<&str>,
    limit: u32,
    id_of: impl Fn(&E::Model) -> K,
) -> Result<Page<E::Model>, AppError>
where
    E: EntityTrait,
    K: std::str::FromStr + Into<sea_orm::Value> + ToString,
{
    let mut select = select;
    if let Some(cursor) = cursor {
        let after: K = cursor
            .parse()
            .map_err(|_| AppError::invalid("cursor", "is not a cursor from a previous page"))?;
        select = select.filter(match order {
            Order::Asc => id.gt(after),
            _ => id.lt(after),
        });
    }
    let mut rows = select
        .order_by(id, order)
        .limit(u64::from(limit) + 1)
        .all(db)
        .await
        .map_err(crate::tenancy::db_error)?;
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|r| id_of(r).to_string())
    } else {
        None
    };
    Ok(Page {
        items: rows,
        next_cursor,
    })
}

pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    migration::Migrator::up(db, None).await
}
