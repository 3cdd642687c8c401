//! Tenants' own email providers, over HTTP: SendGrid (v3 mail send) and Mailgun (messages
//! API), each a [`Mailer`] sending from the tenant's address with its API key (sealed with the
//! key ring). The `email.send` job uses the tenant's provider when it has one
//! ([`EmailProviders::for_tenant`]) and the platform's SMTP relay otherwise.
//!
//! Answers map as SMTP replies do: 429 and 5xx (and no answer, or an open circuit) are
//! transient and retried; other 4xx (a refused key, a sender the account may not use, a
//! malformed message) are permanent and end the job at once.

use std::sync::Arc;

use chrono::Utc;
use lettre::message::Mailbox;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, TransactionTrait,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use uuid::Uuid;

use app::error::AppError;
use app::services::{Access, EmailSettingsService};
use app::types::{
    Area, EmailProvider, EmailSettings, Job, Level, MailgunRegion, TestEmail, UpdateEmailSettings,
};
use app::validate::check;

use super::email::{EmailError, EmailQueue, Mailer, OutgoingEmail};
use crate::config::CircuitConfig;
use crate::outbound::{HttpError, OutboundClient, OutboundError};
use crate::secrets::{aad, KeyRing, Rotation};
use crate::store::audit_log::Record;
use crate::store::tenant_email_settings::{self as settings, Column};
use crate::tenancy::db_error;

/// What a tenant's API key is bound to (with the tenant id).
pub const API_KEY_PURPOSE: &str = "tenant_email_settings.api_key";

/// Where the providers' APIs are (`SENDGRID_API_URL`, `MAILGUN_API_URL`, `MAILGUN_EU_API_URL`).
#[derive(Clone, Debug)]
pub struct ProviderUrls {
    pub sendgrid: String,
    pub mailgun: String,
    pub mailgun_eu: String,
}

/// The HTTP clients of the providers (a circuit each) and what opens tenants' keys.
#[derive(Clone)]
pub struct EmailProviders {
    sendgrid: OutboundClient,
    mailgun: OutboundClient,
    urls: ProviderUrls,
    keys: KeyRing,
}

impl EmailProviders {
    pub fn new(
        urls: ProviderUrls,
        circuit: CircuitConfig,
        keys: KeyRing,
    ) -> Result<EmailProviders, reqwest::Error> {
        Ok(EmailProviders {
            sendgrid: OutboundClient::new("sendgrid", circuit)?,
            mailgun: OutboundClient::new("mailgun", circuit)?,
            urls,
            keys,
        })
    }

    /// The tenant's own mailer, or `None` when it sends through the platform's relay.
    pub async fn for_tenant(
        &self,
        db: &impl ConnectionTrait,
        tenant: Uuid,
    ) -> Result<Option<Arc<dyn Mailer>>, EmailError> {
        let row = settings::Entity::find_by_id(tenant)
            .one(db)
            .await
            .map_err(|e| EmailError::Connection(format!("reading the email settings: {e}")))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let key = self
            .keys
            .decrypt_str(&aad(API_KEY_PURPOSE, tenant), &row.api_key_encrypted)
            .map_err(|e| EmailError::Config(format!("the stored API key cannot be opened: {e}")))?;
        let key = SecretString::from(key.to_string());
        let from: Mailbox = row
            .from_address
            .parse()
            .map_err(|e| EmailError::Config(format!("the sender {}: {e}", row.from_address)))?;
        let mailer: Arc<dyn Mailer> = match EmailProvider::parse(&row.provider) {
            Some(EmailProvider::Sendgrid) => Arc::new(SendGrid {
                client: self.sendgrid.clone(),
                url: format!("{}/v3/mail/send", self.urls.sendgrid),
                key,
                from,
            }),
            Some(EmailProvider::Mailgun) => {
                let base = match MailgunRegion::parse(&row.mailgun_region) {
                    Some(MailgunRegion::Eu) => &self.urls.mailgun_eu,
                    _ => &self.urls.mailgun,
                };
                let domain = row.mailgun_domain.unwrap_or_default();
                Arc::new(Mailgun {
                    client: self.mailgun.clone(),
                    url: format!("{base}/v3/{domain}/messages"),
                    key,
                    from,
                })
            }
            _ => {
                return Err(EmailError::Config(format!(
                    "unknown email provider {}",
                    row.provider
                )))
            }
        };
        Ok(Some(mailer))
    }
}

/// A provider's answer as an [`EmailError`]: 429/5xx and no answer are transient, other 4xx
/// permanent.
fn provider_error(provider: &str, e: OutboundError<HttpError>) -> EmailError {
    match e {
        OutboundError::Unavailable(_) => EmailError::Unavailable,
        OutboundError::Call(HttpError::Transport(e)) => {
            EmailError::Connection(format!("{provider}: {}", crate::outbound::describe(&e)))
        }
        OutboundError::Call(HttpError::Status { status, body }) => {
            let body: String = body.chars().take(300).collect();
            let what = format!("{provider} answered {status}: {body}");
            match status {
                401 | 403 => {
                    EmailError::Rejected(format!("{provider} refused the API key: {body}"))
                }
                429 | 500.. => EmailError::Deferred(what),
                _ => EmailError::Rejected(what),
            }
        }
    }
}

/// SendGrid's v3 mail send (`POST /v3/mail/send`, bearer key, JSON; 202 when accepted).
struct SendGrid {
    client: OutboundClient,
    url: String,
    key: SecretString,
    from: Mailbox,
}

#[async_trait::async_trait]
impl Mailer for SendGrid {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), EmailError> {
        let mut body = json!({
            "personalizations": [{ "to": [{ "email": email.to.to_string() }] }],
            "from": { "email": self.from.email.to_string(), "name": self.from.name },
            "subject": email.subject,
            "content": [{ "type": "text/plain", "value": email.body }],
        });
        if let Some(reply_to) = &email.reply_to {
            body["reply_to"] = json!({ "email": reply_to.to_string() });
        }
        if let Some(id) = email.message_id {
            body["custom_args"] = json!({ "message_ref": id.to_string() });
        }
        let request = self
            .client
            .http()
            .post(&self.url)
            .bearer_auth(self.key.expose_secret())
            .json(&body);
        self.client
            .send(request)
            .await
            .map(|_| ())
            .map_err(|e| provider_error("SendGrid", e))
    }
}

/// Mailgun's messages API (`POST /v3/{domain}/messages`, basic auth `api:KEY`, a form).
struct Mailgun {
    client: OutboundClient,
    url: String,
    key: SecretString,
    from: Mailbox,
}

#[async_trait::async_trait]
impl Mailer for Mailgun {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), EmailError> {
        let mut form = vec![
            ("from", self.from.to_string()),
            ("to", email.to.to_string()),
            ("subject", email.subject.clone()),
            ("text", email.body.clone()),
        ];
        if let Some(reply_to) = &email.reply_to {
            form.push(("h:Reply-To", reply_to.to_string()));
        }
        if let Some(id) = email.message_id {
            form.push((
                "h:Message-Id",
                format!("<{id}@{}>", self.from.email.domain()),
            ));
        }
        let request = self
            .client
            .http()
            .post(&self.url)
            .basic_auth("api", Some(self.key.expose_secret()))
            .form(&form);
        self.client
            .send(request)
            .await
            .map(|_| ())
            .map_err(|e| provider_error("Mailgun", e))
    }
}

/// `EmailSettingsService`: which provider sends the tenant's mail.
pub struct EmailSettingsServiceImpl {
    db: DatabaseConnection,
    keys: KeyRing,
    /// Whether the platform's SMTP relay is configured.
    platform: bool,
}

impl EmailSettingsServiceImpl {
    pub fn new(db: DatabaseConnection, keys: KeyRing, platform: bool) -> Self {
        EmailSettingsServiceImpl { db, keys, platform }
    }

    async fn row(&self, tenant: Uuid) -> Result<Option<settings::Model>, AppError> {
        settings::Entity::find_by_id(tenant)
            .one(&self.db)
            .await
            .map_err(db_error)
    }

    fn view(&self, row: Option<settings::Model>) -> EmailSettings {
        let Some(row) = row else {
            return EmailSettings {
                provider: EmailProvider::Platform,
                available: self.platform,
                from: None,
                mailgun_domain: None,
                mailgun_region: None,
                api_key_hint: None,
                updated_at: None,
            };
        };
        let hint = self.keys.hint(
            &aad(API_KEY_PURPOSE, row.tenant_id),
            &row.api_key_encrypted,
            &format!("email API key of tenant {}", row.tenant_id),
        );
        let provider = EmailProvider::parse(&row.provider).unwrap_or(EmailProvider::Platform);
        EmailSettings {
            provider,
            available: true,
            from: Some(row.from_address),
            mailgun_region: (provider == EmailProvider::Mailgun)
                .then(|| MailgunRegion::parse(&row.mailgun_region).unwrap_or_default()),
            mailgun_domain: row.mailgun_domain,
            api_key_hint: hint,
            updated_at: Some(row.updated_at),
        }
    }
}

#[async_trait::async_trait]
impl EmailSettingsService for EmailSettingsServiceImpl {
    async fn get_email_settings(&self, access: &Access) -> Result<EmailSettings, AppError> {
        access.require(Area::Integrations, Level::Read)?;
        Ok(self.view(self.row(access.tenant_id).await?))
    }

    async fn update_email_settings(
        &self,
        access: &Access,
        update: UpdateEmailSettings,
    ) -> Result<EmailSettings, AppError> {
        access.require(Area::Integrations, Level::Write)?;
        check(&update)?;
        let from = update.from.trim().to_string();
        from.parse::<Mailbox>()
            .map_err(|e| AppError::invalid("from", format!("is not a sender address: {e}")))?;
        let mailgun = update.provider == EmailProvider::Mailgun;
        let domain = update
            .mailgun_domain
            .as_deref()
            .map(|d| d.trim().trim_end_matches('.').to_lowercase())
            .filter(|d| !d.is_empty());
        if mailgun && domain.is_none() {
            return Err(AppError::invalid(
                "mailgun_domain",
                "Mailgun needs the sending domain",
            ));
        }
        // A stored key belongs to the provider it was entered for.
        let stored = self.row(access.tenant_id).await?;
        let sealed = match (&update.api_key, stored) {
            (Some(key), _) => self
                .keys
                .encrypt_str(&aad(API_KEY_PURPOSE, access.tenant_id), key.trim())
                .map_err(|e| AppError::Internal(e.to_string()))?,
            (None, Some(row)) if row.provider == update.provider.as_str() => row.api_key_encrypted,
            (None, _) => return Err(AppError::invalid("api_key", "enter the provider's API key")),
        };
        let row = settings::ActiveModel {
            tenant_id: Set(access.tenant_id),
            provider: Set(update.provider.as_str().into()),
            from_address: Set(from.clone()),
            api_key_encrypted: Set(sealed),
            mailgun_domain: Set(domain.clone().filter(|_| mailgun)),
            mailgun_region: Set(update.mailgun_region.as_str().into()),
            updated_at: Set(Utc::now()),
        };
        let txn = self.db.begin().await.map_err(db_error)?;
        settings::Entity::insert(row)
            .on_conflict(
                OnConflict::column(Column::TenantId)
                    .update_columns([
                        Column::Provider,
                        Column::FromAddress,
                        Column::ApiKeyEncrypted,
                        Column::MailgunDomain,
                        Column::MailgunRegion,
                        Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await
            .map_err(db_error)?;
        Record::by(access, "email_settings.updated", "email_settings")
            .details(json!({
                "provider": update.provider.as_str(),
                "from": from,
                "mailgun_domain": domain,
                "api_key": if update.api_key.is_some() { "replaced" } else { "unchanged" },
            }))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(self.view(self.row(access.tenant_id).await?))
    }

    async fn reset_email_settings(&self, access: &Access) -> Result<EmailSettings, AppError> {
        access.require(Area::Integrations, Level::Write)?;
        let txn = self.db.begin().await.map_err(db_error)?;
        let deleted = settings::Entity::delete_by_id(access.tenant_id)
            .exec(&txn)
            .await
            .map_err(db_error)?;
        if deleted.rows_affected > 0 {
            Record::by(access, "email_settings.deleted", "email_settings")
                .write(&txn)
                .await
                .map_err(db_error)?;
        }
        txn.commit().await.map_err(db_error)?;
        Ok(self.view(None))
    }

    async fn send_test_email(&self, access: &Access, test: TestEmail) -> Result<Job, AppError> {
        access.require(Area::Integrations, Level::Write)?;
        check(&test)?;
        let own = self.row(access.tenant_id).await?.is_some();
        if !own && !self.platform {
            return Err(AppError::Conflict(
                "no email service: configure SendGrid or Mailgun (the platform has no SMTP relay)"
                    .into(),
            ));
        }
        let email = OutgoingEmail::new(
            &test.to,
            "Test message from your agents",
            "This message confirms that your agents can send email with your current settings.",
        )
        .map_err(|e| AppError::invalid("to", e.to_string()))?;
        let id = EmailQueue::new(self.db.clone())
            .enqueue(access.tenant_id, &email, None)
            .await
            .map_err(db_error)?;
        crate::jobs::service::find(&self.db, access.tenant_id, id)
            .await
            .map(crate::jobs::to_job)
    }
}

/// Re-encrypts every tenant's email API key not yet under the current key.
pub async fn rotate(db: &DatabaseConnection, keys: &KeyRing) -> Result<Rotation, DbErr> {
    crate::secrets::rotate_column::<settings::Entity>(
        db,
        keys,
        "email API key of tenant",
        API_KEY_PURPOSE,
        (Column::TenantId, Column::TenantId, Column::ApiKeyEncrypted),
    )
    .await
}
