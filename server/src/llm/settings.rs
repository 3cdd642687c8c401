//! `LlmSettingsService`: a tenant's own provider (endpoint, models, API key encrypted with the
//! platform's key ring), or back to the platform's. The key is never returned, only its last
//! four characters; changes are audited without it. [`rotate`] re-encrypts the stored keys for
//! `server secrets rotate`.

use chrono::Utc;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, DatabaseConnection, DbErr, EntityTrait, TransactionTrait};
use serde_json::json;
use uuid::Uuid;

use app::error::AppError;
use app::services::{Access, LlmSettingsService};
use app::types::{Area, Level, LlmSettings, LlmSource, UpdateLlmSettings};
use app::validate::check;

use crate::secrets::{KeyRing, Rotation};
use crate::store::audit_log::Record;
use crate::store::tenant_llm_settings::{self as settings, Column};
use crate::tenancy::db_error;

use super::providers::{api_key_aad, check_target};
use super::Providers;

pub struct LlmSettingsServiceImpl {
    db: DatabaseConnection,
    providers: Providers,
}

impl LlmSettingsServiceImpl {
    pub fn new(db: DatabaseConnection, providers: Providers) -> Self {
        LlmSettingsServiceImpl { db, providers }
    }

    async fn row(&self, tenant_id: Uuid) -> Result<Option<settings::Model>, AppError> {
        settings::Entity::find_by_id(tenant_id)
            .one(&self.db)
            .await
            .map_err(db_error)
    }

    fn view(&self, row: Option<settings::Model>) -> LlmSettings {
        if let Some(row) = row {
            return LlmSettings {
                source: LlmSource::Tenant,
                api_key_set: row.api_key_encrypted.is_some(),
                api_key_hint: row.api_key_encrypted.as_deref().and_then(|sealed| {
                    self.providers.keys().hint(
                        &api_key_aad(row.tenant_id),
                        sealed,
                        &format!("LLM API key of tenant {}", row.tenant_id),
                    )
                }),
                base_url: Some(row.base_url),
                chat_model: Some(row.chat_model),
                router_model: row.router_model,
                updated_at: Some(row.updated_at),
            };
        }
        let platform = self.providers.platform_config();
        let configured = self.providers.platform().is_configured();
        LlmSettings {
            source: if configured {
                LlmSource::Platform
            } else {
                LlmSource::Offline
            },
            // The platform's endpoint is the operator's business.
            base_url: None,
            chat_model: configured.then(|| platform.chat_model.clone()),
            router_model: configured.then(|| platform.router_model.clone()),
            api_key_set: false,
            api_key_hint: None,
            updated_at: None,
        }
    }
}

fn trimmed(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

#[async_trait::async_trait]
impl LlmSettingsService for LlmSettingsServiceImpl {
    async fn get_llm_settings(&self, access: &Access) -> Result<LlmSettings, AppError> {
        access.require(Area::Tenant, Level::Read)?;
        let row = self.row(access.tenant_id).await?;
        Ok(self.view(row))
    }

    async fn update_llm_settings(
        &self,
        access: &Access,
        update: UpdateLlmSettings,
    ) -> Result<LlmSettings, AppError> {
        access.require(Area::Tenant, Level::Write)?;
        check(&update)?;
        if update.api_key.is_some() && update.clear_api_key {
            return Err(AppError::invalid(
                "clear_api_key",
                "cannot be combined with a new api_key",
            ));
        }
        let base_url = update.base_url.trim().to_string();
        check_target(&base_url, self.providers.allow_private())
            .map_err(|e| AppError::invalid("base_url", e))?;
        // The stored key belongs to the stored endpoint: sending it to another host would hand
        // it to whoever runs that host. A new endpoint needs its key again (or none).
        if update.api_key.is_none() && !update.clear_api_key {
            let stored = self.row(access.tenant_id).await?;
            if stored.is_some_and(|row| row.api_key_encrypted.is_some() && row.base_url != base_url)
            {
                return Err(AppError::invalid(
                    "api_key",
                    "the endpoint changed: enter its API key again, or clear the stored key",
                ));
            }
        }
        let chat_model = update.chat_model.trim().to_string();
        let router_model = trimmed(update.router_model);
        let sealed = match &update.api_key {
            Some(key) => Some(
                self.providers
                    .keys()
                    .encrypt_str(&api_key_aad(access.tenant_id), key)
                    .map_err(|e| AppError::Internal(e.to_string()))?,
            ),
            None => None,
        };
        let key_change = if sealed.is_some() {
            "replaced"
        } else if update.clear_api_key {
            "deleted"
        } else {
            "unchanged"
        };
        let mut columns = vec![
            Column::BaseUrl,
            Column::ChatModel,
            Column::RouterModel,
            Column::UpdatedAt,
        ];
        if sealed.is_some() || update.clear_api_key {
            columns.push(Column::ApiKeyEncrypted);
        }
        let key_replaced = sealed.is_some();
        let row = settings::ActiveModel {
            tenant_id: Set(access.tenant_id),
            base_url: Set(base_url.clone()),
            chat_model: Set(chat_model.clone()),
            router_model: Set(router_model.clone()),
            api_key_encrypted: Set(sealed),
            updated_at: Set(Utc::now()),
        };
        // Writes first (an upsert, no read): on SQLite a transaction that reads before it
        // writes fails when another writer committed in between.
        let txn = self.db.begin().await.map_err(db_error)?;
        let mut on_conflict = OnConflict::column(Column::TenantId);
        on_conflict.update_columns(columns);
        if !key_replaced && !update.clear_api_key {
            // Also when another request changed the endpoint since the check above: a key is
            // kept only for the endpoint it was entered for.
            on_conflict.value(
                Column::ApiKeyEncrypted,
                Expr::cust(
                    "CASE WHEN tenant_llm_settings.base_url = excluded.base_url \
                     THEN tenant_llm_settings.api_key_encrypted END",
                ),
            );
        }
        settings::Entity::insert(row)
            .on_conflict(on_conflict.to_owned())
            .exec_without_returning(&txn)
            .await
            .map_err(db_error)?;
        Record::by(access, "llm_settings.updated", "llm_settings")
            .details(json!({
                "base_url": base_url,
                "chat_model": chat_model,
                "router_model": router_model,
                "api_key": key_change,
            }))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        self.providers.forget(access.tenant_id).await;
        let row = self.row(access.tenant_id).await?;
        Ok(self.view(row))
    }

    async fn reset_llm_settings(&self, access: &Access) -> Result<LlmSettings, AppError> {
        access.require(Area::Tenant, Level::Write)?;
        let txn = self.db.begin().await.map_err(db_error)?;
        let deleted = settings::Entity::delete_by_id(access.tenant_id)
            .exec(&txn)
            .await
            .map_err(db_error)?;
        if deleted.rows_affected > 0 {
            Record::by(access, "llm_settings.deleted", "llm_settings")
                .write(&txn)
                .await
                .map_err(db_error)?;
        }
        txn.commit().await.map_err(db_error)?;
        self.providers.forget(access.tenant_id).await;
        Ok(self.view(None))
    }
}

/// Re-encrypts every stored API key not yet under the current key.
pub async fn rotate(db: &DatabaseConnection, keys: &KeyRing) -> Result<Rotation, DbErr> {
    crate::secrets::rotate_column::<settings::Entity>(
        db,
        keys,
        "LLM API key of tenant",
        super::providers::API_KEY_PURPOSE,
        (Column::TenantId, Column::TenantId, Column::ApiKeyEncrypted),
    )
    .await
}
