//! `WebhookService`: a tenant's endpoints and delivery log (`integrations:read` /
//! `integrations:write`), changes audited in the same transaction.

use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::Order;
use sea_orm::{
    ActiveValue::Set, DatabaseConnection, IntoActiveModel, QueryOrder, TransactionTrait,
};
use serde_json::json;

use app::error::AppError;
use app::services::{Access, WebhookService};
use app::types::{
    Area, DeliveryQuery, DeliveryState, Level, Page, Webhook, WebhookDelivery, WebhookEvent,
    WebhookSettings, WebhookWithSecret,
};
use app::validate::check;

use super::{events_of, queue, Event, MAX_WEBHOOKS, SECRET_PURPOSE};
use crate::outbound::guard;
use crate::secrets::{self, KeyRing};
use crate::store::audit_log::Record;
use crate::store::{webhook_deliveries, webhook_endpoints};
use crate::tenancy::db_error;

const DEFAULT_PAGE: u32 = 20;

pub struct WebhookServiceImpl {
    db: DatabaseConnection,
    keys: KeyRing,
    /// Private addresses and plain `http://` allowed (`FETCH_ALLOW_PRIVATE`).
    allow_private: bool,
}

/// An endpoint URL that may be called: `https://` (or `http://` where private targets are
/// allowed), not an internal address.
pub fn check_url(url: &str, allow_private: bool) -> Result<(), String> {
    guard::check_target(url, allow_private)?;
    if !allow_private && !url.trim().starts_with("https://") {
        return Err("must be an https:// URL".into());
    }
    Ok(())
}

fn to_webhook(m: webhook_endpoints::Model) -> Webhook {
    Webhook {
        id: m.id,
        settings: WebhookSettings {
            url: m.url,
            description: m.description,
            events: events_of(&m.events),
            enabled: m.enabled,
        },
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

pub fn to_delivery(m: webhook_deliveries::Model) -> WebhookDelivery {
    WebhookDelivery {
        id: m.id,
        webhook_id: m.endpoint_id,
        event_id: m.event_id,
        event: WebhookEvent::parse(&m.event_type).unwrap_or(WebhookEvent::Test),
        state: DeliveryState::parse(&m.state).unwrap_or(DeliveryState::Pending),
        attempts: u32::try_from(m.attempts).unwrap_or(0),
        response_status: m.response_status.and_then(|s| u16::try_from(s).ok()),
        response_body: m.response_body,
        last_error: m.last_error,
        duration_ms: m.duration_ms.and_then(|d| u32::try_from(d).ok()),
        replay_of: m.replay_of,
        payload: m.payload,
        created_at: m.created_at,
        last_attempt_at: m.last_attempt_at,
        delivered_at: m.delivered_at,
    }
}

/// The settings as stored: trimmed, events in the order the platform lists them.
fn normalised(mut settings: WebhookSettings) -> WebhookSettings {
    settings.url = settings.url.trim().to_string();
    settings.description = settings.description.trim().to_string();
    settings.events = WebhookEvent::subscribable()
        .filter(|e| settings.events.contains(e))
        .collect();
    settings
}

fn events_json(settings: &WebhookSettings) -> serde_json::Value {
    json!(settings
        .events
        .iter()
        .map(|e| e.as_str())
        .collect::<Vec<_>>())
}

impl WebhookServiceImpl {
    pub fn new(db: DatabaseConnection, keys: KeyRing, allow_private: bool) -> Self {
        WebhookServiceImpl {
            db,
            keys,
            allow_private,
        }
    }

    async fn row(&self, access: &Access, id: Uuid) -> Result<webhook_endpoints::Model, AppError> {
        webhook_endpoints::Entity::find_by_id(id)
            .filter(webhook_endpoints::Column::TenantId.eq(access.tenant_id))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or_else(|| AppError::not_found("webhook"))
    }

    /// Validated and normalised settings.
    fn valid(&self, settings: WebhookSettings) -> Result<WebhookSettings, AppError> {
        check(&settings)?;
        let settings = normalised(settings);
        check_url(&settings.url, self.allow_private).map_err(|e| AppError::invalid("url", e))?;
        Ok(settings)
    }

    /// A new secret, and its sealed form for the row.
    fn new_secret(&self, tenant: Uuid) -> Result<(String, String), AppError> {
        secrets::generate(&self.keys, "whsec_", SECRET_PURPOSE, tenant)
    }
}

#[async_trait::async_trait]
impl WebhookService for WebhookServiceImpl {
    async fn list_webhooks(&self, access: &Access) -> Result<Vec<Webhook>, AppError> {
        access.require(Area::Integrations, Level::Read)?;
        Ok(webhook_endpoints::Entity::find()
            .filter(webhook_endpoints::Column::TenantId.eq(access.tenant_id))
            .order_by_asc(webhook_endpoints::Column::CreatedAt)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(to_webhook)
            .collect())
    }

    async fn get_webhook(&self, access: &Access, id: Uuid) -> Result<Webhook, AppError> {
        access.require(Area::Integrations, Level::Read)?;
        Ok(to_webhook(self.row(access, id).await?))
    }

    async fn create_webhook(
        &self,
        access: &Access,
        settings: WebhookSettings,
    ) -> Result<WebhookWithSecret, AppError> {
        access.require(Area::Integrations, Level::Write)?;
        let settings = self.valid(settings)?;
        let count = webhook_endpoints::Entity::find()
            .filter(webhook_endpoints::Column::TenantId.eq(access.tenant_id))
            .count(&self.db)
            .await
            .map_err(db_error)?;
        if count >= MAX_WEBHOOKS {
            return Err(AppError::Conflict(format!(
                "a tenant may have at most {MAX_WEBHOOKS} webhook endpoints"
            )));
        }
        let (secret, sealed) = self.new_secret(access.tenant_id)?;
        let now = Utc::now();
        let id = Uuid::now_v7();
        let txn = self.db.begin().await.map_err(db_error)?;
        let row = webhook_endpoints::ActiveModel {
            id: Set(id),
            tenant_id: Set(access.tenant_id),
            url: Set(settings.url.clone()),
            description: Set(settings.description.clone()),
            events: Set(events_json(&settings)),
            enabled: Set(settings.enabled),
            secret: Set(sealed),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await
        .map_err(db_error)?;
        Record::by(access, "webhook.create", format!("webhook:{id}"))
            .details(json!({ "url": settings.url, "events": events_json(&settings) }))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(WebhookWithSecret {
            webhook: to_webhook(row),
            secret,
        })
    }

    async fn update_webhook(
        &self,
        access: &Access,
        id: Uuid,
        settings: WebhookSettings,
    ) -> Result<Webhook, AppError> {
        access.require(Area::Integrations, Level::Write)?;
        let row = self.row(access, id).await?;
        let settings = self.valid(settings)?;
        let before = to_webhook(row.clone()).settings;
        let txn = self.db.begin().await.map_err(db_error)?;
        let mut active = row.into_active_model();
        active.url = Set(settings.url.clone());
        active.description = Set(settings.description.clone());
        active.events = Set(events_json(&settings));
        active.enabled = Set(settings.enabled);
        active.updated_at = Set(Utc::now());
        let row = active.update(&txn).await.map_err(db_error)?;
        Record::by(access, "webhook.update", format!("webhook:{id}"))
            .details(json!({
                "url": { "from": before.url, "to": settings.url },
                "events": { "from": events_json(&before), "to": events_json(&settings) },
                "enabled": { "from": before.enabled, "to": settings.enabled },
            }))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(to_webhook(row))
    }

    async fn rotate_webhook_secret(
        &self,
        access: &Access,
        id: Uuid,
    ) -> Result<WebhookWithSecret, AppError> {
        access.require(Area::Integrations, Level::Write)?;
        let row = self.row(access, id).await?;
        let (secret, sealed) = self.new_secret(access.tenant_id)?;
        let txn = self.db.begin().await.map_err(db_error)?;
        let mut active = row.into_active_model();
        active.secret = Set(sealed);
        active.updated_at = Set(Utc::now());
        let row = active.update(&txn).await.map_err(db_error)?;
        Record::by(access, "webhook.rotate_secret", format!("webhook:{id}"))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(WebhookWithSecret {
            webhook: to_webhook(row),
            secret,
        })
    }

    async fn delete_webhook(&self, access: &Access, id: Uuid) -> Result<(), AppError> {
        access.require(Area::Integrations, Level::Write)?;
        let row = self.row(access, id).await?;
        let txn = self.db.begin().await.map_err(db_error)?;
        // Its deliveries go with it (the foreign key cascades); their queued jobs find nothing.
        webhook_endpoints::Entity::delete_by_id(row.id)
            .exec(&txn)
            .await
            .map_err(db_error)?;
        Record::by(access, "webhook.delete", format!("webhook:{id}"))
            .details(json!({ "url": row.url }))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(())
    }

    async fn test_webhook(&self, access: &Access, id: Uuid) -> Result<WebhookDelivery, AppError> {
        access.require(Area::Integrations, Level::Write)?;
        let row = self.row(access, id).await?;
        let event = Event::new(
            WebhookEvent::Test,
            json!({ "message": "A test event: your endpoint is reachable and can check signatures." }),
        );
        let event_id = Uuid::now_v7();
        let body = event.body(event_id, access.tenant_id);
        let txn = self.db.begin().await.map_err(db_error)?;
        let delivery = queue(
            &txn,
            access.tenant_id,
            row.id,
            event_id,
            event.kind,
            body,
            None,
        )
        .await
        .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(to_delivery(delivery))
    }

    async fn list_deliveries(
        &self,
        access: &Access,
        id: Uuid,
        query: DeliveryQuery,
    ) -> Result<Page<WebhookDelivery>, AppError> {
        access.require(Area::Integrations, Level::Read)?;
        check(&query)?;
        let endpoint = self.row(access, id).await?;
        let limit = query.limit.unwrap_or(DEFAULT_PAGE);
        let mut select = webhook_deliveries::Entity::find()
            .filter(webhook_deliveries::Column::TenantId.eq(access.tenant_id))
            .filter(webhook_deliveries::Column::EndpointId.eq(endpoint.id));
        if let Some(state) = query.state {
            select = select.filter(webhook_deliveries::Column::State.eq(state.as_str()));
        }
        let page = crate::store::page_by_id(
            &self.db,
            select,
            (webhook_deliveries::Column::Id, Order::Desc),
            query.cursor.as_deref(),
            limit,
            |r| r.id,
        )
        .await?;
        Ok(page.map(to_delivery))
    }

    async fn replay_delivery(
        &self,
        access: &Access,
        id: Uuid,
        delivery: Uuid,
    ) -> Result<WebhookDelivery, AppError> {
        access.require(Area::Integrations, Level::Write)?;
        let endpoint = self.row(access, id).await?;
        let original = webhook_deliveries::Entity::find_by_id(delivery)
            .filter(webhook_deliveries::Column::TenantId.eq(access.tenant_id))
            .filter(webhook_deliveries::Column::EndpointId.eq(endpoint.id))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or_else(|| AppError::not_found("delivery"))?;
        if original.state == DeliveryState::Pending.as_str() {
            return Err(AppError::Conflict(
                "the delivery is still being attempted; replay it once it has succeeded or failed"
                    .into(),
            ));
        }
        let kind = WebhookEvent::parse(&original.event_type).unwrap_or(WebhookEvent::Test);
        let txn = self.db.begin().await.map_err(db_error)?;
        let replay = queue(
            &txn,
            access.tenant_id,
            endpoint.id,
            original.event_id,
            kind,
            original.payload.clone(),
            Some(original.id),
        )
        .await
        .map_err(db_error)?;
        Record::by(access, "webhook.replay", format!("webhook:{id}"))
            .details(json!({ "delivery": original.id, "event": original.event_id }))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(to_delivery(replay))
    }
}
