//! The tenant's side of widgets: create, change, rotate the identity secret, delete
//! (`widgets:read` / `widgets:write`), audited in the same transaction.

use chrono::Utc;
use rand::distributions::{Alphanumeric, DistString};
use sea_orm::entity::prelude::*;
use sea_orm::{
    ActiveValue::Set, DatabaseConnection, IntoActiveModel, QueryOrder, TransactionTrait,
};
use serde_json::json;

use app::error::AppError;
use app::services::{Access, WidgetService};
use app::types::{Area, Level, Widget, WidgetSettings, WidgetWithSecret};
use app::validate::{check, normal_origin};

use super::tokens;
use crate::secrets::{self, KeyRing};
use crate::store::audit_log::Record;
use crate::store::widgets;
use crate::tenancy::db_error;

/// Widgets one tenant may have.
pub const MAX_WIDGETS: u64 = 50;
const SECRET_PURPOSE: &str = "widget.secret";

pub struct WidgetServiceImpl {
    db: DatabaseConnection,
    keys: KeyRing,
    /// Where the snippet loads the widget from (`PUBLIC_URL`).
    console_url: String,
}

/// The settings as stored: trimmed, domains in their compared form.
fn normalised(mut settings: WidgetSettings) -> WidgetSettings {
    settings.name = settings.name.trim().to_string();
    settings.greeting = settings.greeting.trim().to_string();
    settings.launcher_label = settings.launcher_label.trim().to_string();
    settings.offline_message = settings.offline_message.trim().to_string();
    settings.color = settings.color.to_lowercase();
    settings.starter_prompts = settings
        .starter_prompts
        .iter()
        .map(|p| p.trim().to_string())
        .collect();
    let mut domains: Vec<String> = settings
        .allowed_domains
        .iter()
        .map(|d| normal_origin(d))
        .collect();
    domains.dedup();
    settings.allowed_domains = domains;
    settings
}

/// The settings a row holds (its name is a column of its own).
pub fn settings_of(m: &widgets::Model) -> WidgetSettings {
    let mut settings: WidgetSettings =
        serde_json::from_value(m.settings.clone()).unwrap_or_default();
    settings.name = m.name.clone();
    settings
}

pub fn snippet(console_url: &str, public_id: &str) -> String {
    format!(
        "<script src=\"{}/widget.js\" data-widget=\"{public_id}\" async></script>",
        console_url.trim_end_matches('/')
    )
}

/// Re-encrypts every widget's identity secret not yet under the current key.
pub async fn rotate(
    db: &DatabaseConnection,
    keys: &KeyRing,
) -> Result<secrets::Rotation, sea_orm::DbErr> {
    secrets::rotate_column::<widgets::Entity>(
        db,
        keys,
        "widget secret",
        SECRET_PURPOSE,
        (
            widgets::Column::Id,
            widgets::Column::TenantId,
            widgets::Column::Secret,
        ),
    )
    .await
}

/// The sealed identity secret of a widget, opened.
pub fn identity_secret(keys: &KeyRing, m: &widgets::Model) -> Option<String> {
    let sealed = m.secret.as_deref()?;
    keys.decrypt_str(&secrets::aad(SECRET_PURPOSE, m.tenant_id), sealed)
        .map(|s| s.to_string())
        .map_err(|e| tracing::error!(widget = %m.id, error = %e, "a widget secret does not open"))
        .ok()
}

impl WidgetServiceImpl {
    pub fn new(db: DatabaseConnection, keys: KeyRing, console_url: String) -> Self {
        WidgetServiceImpl {
            db,
            keys,
            console_url,
        }
    }

    fn to_widget(&self, m: widgets::Model) -> Widget {
        Widget {
            id: m.id,
            snippet: snippet(&self.console_url, &m.public_id),
            settings: settings_of(&m),
            has_secret: m.secret.is_some(),
            public_id: m.public_id,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }

    async fn row(&self, access: &Access, id: Uuid) -> Result<widgets::Model, AppError> {
        widgets::Entity::find_by_id(id)
            .filter(widgets::Column::TenantId.eq(access.tenant_id))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or_else(|| AppError::not_found("widget"))
    }

    /// A new secret, and its sealed form for the row.
    fn new_secret(&self, tenant: Uuid) -> Result<(String, String), AppError> {
        let secret = tokens::new_identity_secret();
        let sealed = self
            .keys
            .encrypt_str(&secrets::aad(SECRET_PURPOSE, tenant), &secret)
            .map_err(|e| {
                tracing::error!(error = %e, "a widget secret could not be sealed");
                AppError::Internal("the secret could not be stored".into())
            })?;
        Ok((secret, sealed))
    }

    /// The agent a widget is pinned to must be one of the tenant's specialists.
    async fn check_agent(
        &self,
        access: &Access,
        settings: &WidgetSettings,
    ) -> Result<(), AppError> {
        let Some(agent) = &settings.agent else {
            return Ok(());
        };
        let specialists = crate::agents::catalogue::load(&self.db, access.tenant_id).await?;
        if specialists.iter().any(|s| &s.name == agent) {
            Ok(())
        } else {
            Err(AppError::invalid("agent", "is not one of your agents"))
        }
    }
}

#[async_trait::async_trait]
impl WidgetService for WidgetServiceImpl {
    async fn list_widgets(&self, access: &Access) -> Result<Vec<Widget>, AppError> {
        access.require(Area::Widgets, Level::Read)?;
        Ok(widgets::Entity::find()
            .filter(widgets::Column::TenantId.eq(access.tenant_id))
            .order_by_asc(widgets::Column::CreatedAt)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|m| self.to_widget(m))
            .collect())
    }

    async fn get_widget(&self, access: &Access, id: Uuid) -> Result<Widget, AppError> {
        access.require(Area::Widgets, Level::Read)?;
        Ok(self.to_widget(self.row(access, id).await?))
    }

    async fn create_widget(
        &self,
        access: &Access,
        settings: WidgetSettings,
    ) -> Result<WidgetWithSecret, AppError> {
        access.require(Area::Widgets, Level::Write)?;
        check(&settings)?;
        let settings = normalised(settings);
        self.check_agent(access, &settings).await?;
        let count = widgets::Entity::find()
            .filter(widgets::Column::TenantId.eq(access.tenant_id))
            .count(&self.db)
            .await
            .map_err(db_error)?;
        if count >= MAX_WIDGETS {
            return Err(AppError::Conflict(format!(
                "a tenant may have at most {MAX_WIDGETS} widgets"
            )));
        }
        let (secret, sealed) = self.new_secret(access.tenant_id)?;
        let now = Utc::now();
        let public_id = format!(
            "wgt_{}",
            Alphanumeric.sample_string(&mut rand::thread_rng(), 20)
        );
        let txn = self.db.begin().await.map_err(db_error)?;
        let row = widgets::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(access.tenant_id),
            public_id: Set(public_id.clone()),
            name: Set(settings.name.clone()),
            settings: Set(serde_json::to_value(&settings).unwrap_or_default()),
            secret: Set(Some(sealed)),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await
        .map_err(db_error)?;
        Record::by(access, "widget.create", format!("widget:{public_id}"))
            .details(json!({ "name": settings.name, "allowed_domains": settings.allowed_domains }))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(WidgetWithSecret {
            widget: self.to_widget(row),
            secret,
        })
    }

    async fn update_widget(
        &self,
        access: &Access,
        id: Uuid,
        settings: WidgetSettings,
    ) -> Result<Widget, AppError> {
        access.require(Area::Widgets, Level::Write)?;
        let row = self.row(access, id).await?;
        check(&settings)?;
        let settings = normalised(settings);
        self.check_agent(access, &settings).await?;
        let before = settings_of(&row);
        let public_id = row.public_id.clone();
        let txn = self.db.begin().await.map_err(db_error)?;
        let mut active = row.into_active_model();
        active.name = Set(settings.name.clone());
        active.settings = Set(serde_json::to_value(&settings).unwrap_or_default());
        active.updated_at = Set(Utc::now());
        let row = active.update(&txn).await.map_err(db_error)?;
        Record::by(access, "widget.update", format!("widget:{public_id}"))
            .details(json!({
                "allowed_domains": { "from": before.allowed_domains, "to": settings.allowed_domains },
                "identity": { "from": before.identity.as_str(), "to": settings.identity.as_str() },
            }))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(self.to_widget(row))
    }

    async fn rotate_widget_secret(
        &self,
        access: &Access,
        id: Uuid,
    ) -> Result<WidgetWithSecret, AppError> {
        access.require(Area::Widgets, Level::Write)?;
        let row = self.row(access, id).await?;
        let (secret, sealed) = self.new_secret(access.tenant_id)?;
        let public_id = row.public_id.clone();
        let txn = self.db.begin().await.map_err(db_error)?;
        let mut active = row.into_active_model();
        active.secret = Set(Some(sealed));
        active.updated_at = Set(Utc::now());
        let row = active.update(&txn).await.map_err(db_error)?;
        Record::by(
            access,
            "widget.rotate_secret",
            format!("widget:{public_id}"),
        )
        .write(&txn)
        .await
        .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(WidgetWithSecret {
            widget: self.to_widget(row),
            secret,
        })
    }

    async fn delete_widget(&self, access: &Access, id: Uuid) -> Result<(), AppError> {
        access.require(Area::Widgets, Level::Write)?;
        let row = self.row(access, id).await?;
        let txn = self.db.begin().await.map_err(db_error)?;
        // Visitors and their refresh tokens go with it (foreign keys cascade).
        widgets::Entity::delete_by_id(row.id)
            .exec(&txn)
            .await
            .map_err(db_error)?;
        Record::by(access, "widget.delete", format!("widget:{}", row.public_id))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(())
    }
}
