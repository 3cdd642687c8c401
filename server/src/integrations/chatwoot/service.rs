//! `ChatwootService`: the tenant's connection (`integrations:read` / `integrations:write`),
//! changes audited in the same transaction. The token and the webhook secret are sealed with
//! the key ring; the secret is returned only when it is made.

use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, DatabaseConnection, IntoActiveModel, TransactionTrait};
use serde_json::json;

use app::error::AppError;
use app::services::{Access, ChatwootService};
use app::types::{Area, ChatwootConnection, ChatwootSettings, Level};
use app::validate::check;

use super::{hook_path, SECRET_PURPOSE, TOKEN_PURPOSE};
use crate::integrations::webhooks::service::check_url;
use crate::secrets::{self, aad, KeyRing};
use crate::store::audit_log::Record;
use crate::store::chatwoot_connections::{self as connections, Column, Entity};
use crate::tenancy::db_error;

pub struct ChatwootServiceImpl {
    db: DatabaseConnection,
    keys: KeyRing,
    /// The console's address: webhook URLs are below it.
    console_url: String,
    /// Installations on private addresses (and plain `http://`) allowed (`FETCH_ALLOW_PRIVATE`).
    allow_private: bool,
}

impl ChatwootServiceImpl {
    pub fn new(
        db: DatabaseConnection,
        keys: KeyRing,
        console_url: String,
        allow_private: bool,
    ) -> Self {
        ChatwootServiceImpl {
            db,
            keys,
            console_url,
            allow_private,
        }
    }

    async fn row(&self, access: &Access) -> Result<Option<connections::Model>, AppError> {
        Entity::find()
            .filter(Column::TenantId.eq(access.tenant_id))
            .one(&self.db)
            .await
            .map_err(db_error)
    }

    fn to_connection(&self, m: connections::Model, secret: Option<String>) -> ChatwootConnection {
        ChatwootConnection {
            id: m.id,
            token_hint: self.keys.hint(
                &aad(TOKEN_PURPOSE, m.tenant_id),
                &m.token,
                "Chatwoot token",
            ),
            webhook_url: format!(
                "{}{}",
                self.console_url.trim_end_matches('/'),
                hook_path(m.id)
            ),
            webhook_secret: secret,
            base_url: m.base_url,
            account_id: u64::try_from(m.account_id).unwrap_or(0),
            inbox_id: u64::try_from(m.inbox_id).unwrap_or(0),
            enabled: m.enabled,
            last_event_at: m.last_event_at,
            last_error: m.last_error,
            last_error_at: m.last_error_at,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }

    fn seal_token(&self, access: &Access, token: &str) -> Result<String, AppError> {
        self.keys
            .encrypt_str(&aad(TOKEN_PURPOSE, access.tenant_id), token.trim())
            .map_err(|e| {
                tracing::error!(error = %e, "a Chatwoot token could not be sealed");
                AppError::Internal("the token could not be stored".into())
            })
    }
}

fn id_of(value: u64, field: &str) -> Result<i64, AppError> {
    i64::try_from(value).map_err(|_| AppError::invalid(field, "is too large"))
}

#[async_trait::async_trait]
impl ChatwootService for ChatwootServiceImpl {
    async fn get_chatwoot(&self, access: &Access) -> Result<ChatwootConnection, AppError> {
        access.require(Area::Integrations, Level::Read)?;
        let row = self
            .row(access)
            .await?
            .ok_or_else(|| AppError::not_found("Chatwoot connection"))?;
        Ok(self.to_connection(row, None))
    }

    async fn save_chatwoot(
        &self,
        access: &Access,
        settings: ChatwootSettings,
    ) -> Result<ChatwootConnection, AppError> {
        access.require(Area::Integrations, Level::Write)?;
        check(&settings)?;
        let base_url = settings.base_url.trim().trim_end_matches('/').to_string();
        check_url(&base_url, self.allow_private).map_err(|e| AppError::invalid("base_url", e))?;
        let account_id = id_of(settings.account_id, "account_id")?;
        let inbox_id = id_of(settings.inbox_id, "inbox_id")?;
        let token = settings
            .access_token
            .as_deref()
            .map(|t| self.seal_token(access, t))
            .transpose()?;
        let now = Utc::now();
        let details = json!({
            "base_url": base_url,
            "account_id": account_id,
            "inbox_id": inbox_id,
            "enabled": settings.enabled,
            "token_changed": token.is_some(),
        });
        // Read before the transaction, whose first statement must be a write (SQLite; see the
        // architecture notes); two racing first connections meet the unique tenant column.
        let existing = self.row(access).await?;
        let txn = self.db.begin().await.map_err(db_error)?;
        let (row, secret) = match existing {
            Some(row) => {
                let mut active = row.into_active_model();
                active.base_url = Set(base_url);
                active.account_id = Set(account_id);
                active.inbox_id = Set(inbox_id);
                active.enabled = Set(settings.enabled);
                if let Some(token) = token {
                    active.token = Set(token);
                    active.last_error = Set(None);
                    active.last_error_at = Set(None);
                }
                active.updated_at = Set(now);
                let row = active.update(&txn).await.map_err(db_error)?;
                Record::by(access, "chatwoot.update", format!("chatwoot:{}", row.id))
                    .details(details)
                    .write(&txn)
                    .await
                    .map_err(db_error)?;
                (row, None)
            }
            None => {
                let token = token.ok_or_else(|| {
                    AppError::invalid(
                        "access_token",
                        "the agent bot's access token is needed to connect",
                    )
                })?;
                let (secret, sealed) =
                    secrets::generate(&self.keys, "cwsec_", SECRET_PURPOSE, access.tenant_id)?;
                let row = connections::ActiveModel {
                    id: Set(Uuid::now_v7()),
                    tenant_id: Set(access.tenant_id),
                    base_url: Set(base_url),
                    account_id: Set(account_id),
                    inbox_id: Set(inbox_id),
                    token: Set(token),
                    secret: Set(sealed),
                    enabled: Set(settings.enabled),
                    last_event_at: Set(None),
                    last_error: Set(None),
                    last_error_at: Set(None),
                    created_at: Set(now),
                    updated_at: Set(now),
                }
                .insert(&txn)
                .await
                .map_err(db_error)?;
                Record::by(access, "chatwoot.connect", format!("chatwoot:{}", row.id))
                    .details(details)
                    .write(&txn)
                    .await
                    .map_err(db_error)?;
                (row, Some(secret))
            }
        };
        txn.commit().await.map_err(db_error)?;
        Ok(self.to_connection(row, secret))
    }

    async fn rotate_chatwoot_secret(
        &self,
        access: &Access,
    ) -> Result<ChatwootConnection, AppError> {
        access.require(Area::Integrations, Level::Write)?;
        let row = self
            .row(access)
            .await?
            .ok_or_else(|| AppError::not_found("Chatwoot connection"))?;
        let (secret, sealed) =
            secrets::generate(&self.keys, "cwsec_", SECRET_PURPOSE, access.tenant_id)?;
        let txn = self.db.begin().await.map_err(db_error)?;
        let id = row.id;
        let mut active = row.into_active_model();
        active.secret = Set(sealed);
        active.updated_at = Set(Utc::now());
        let row = active.update(&txn).await.map_err(db_error)?;
        Record::by(access, "chatwoot.rotate_secret", format!("chatwoot:{id}"))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(self.to_connection(row, Some(secret)))
    }

    async fn delete_chatwoot(&self, access: &Access) -> Result<(), AppError> {
        access.require(Area::Integrations, Level::Write)?;
        let row = self
            .row(access)
            .await?
            .ok_or_else(|| AppError::not_found("Chatwoot connection"))?;
        let txn = self.db.begin().await.map_err(db_error)?;
        // The conversation map goes with it (the foreign key cascades); the conversations stay.
        Entity::delete_many()
            .filter(Column::Id.eq(row.id))
            .filter(Column::TenantId.eq(access.tenant_id))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        Record::by(
            access,
            "chatwoot.disconnect",
            format!("chatwoot:{}", row.id),
        )
        .details(json!({ "base_url": row.base_url }))
        .write(&txn)
        .await
        .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(())
    }
}
