//! Outgoing email: the [`Mailer`] trait, its SMTP implementation (lettre), and the
//! `email.send` job that delivers what the agents' `send_email` tool queued.
//!
//! The tool only validates and enqueues ([`EmailQueue`]); a worker delivers ([`SendEmail`]), so
//! a slow relay never holds up a conversation. Transient failures (no connection, a 4xx reply,
//! an open circuit) are retried with the queue's backoff; permanent ones (a malformed address
//! or message, a 5xx reply) end the job as dead at once ([`Permanent`]). Delivery is
//! at-least-once: a job whose worker dies after the relay accepted the message may send it
//! again, with the same Message-ID (the job's id), which lets receivers drop the copy.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sea_orm::{DatabaseConnection, DbErr};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::config::{CircuitConfig, Config};
use crate::jobs::{self, JobContext, JobHandler, NewJob, Permanent};
use crate::outbound::{Breaker, OutboundError};
use crate::pii;
use crate::secrets::{aad, KeyRing};
use crate::store::audit_log::Record;

/// The job kind that delivers one email.
pub const SEND: &str = "email.send";
pub const MAX_SUBJECT_CHARS: usize = 200;
pub const MAX_BODY_CHARS: usize = 10_000;

/// Where mail goes out.
#[derive(Clone, Debug)]
pub struct SmtpConfig {
    /// lettre's connection URL (`SMTP_URL`): `smtp://host:25` (plain), `smtp://user:pass@host:587?tls=required`
    /// (STARTTLS), `smtps://user:pass@host:465` (TLS). May hold a password.
    pub url: SecretString,
    /// The sender of every message (`SMTP_FROM`).
    pub from: Mailbox,
}

/// Checks an `SMTP_URL` the way the transport will read it (scheme, host, `tls=` parameter).
pub fn check_url(url: &str) -> Result<(), EmailError> {
    AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
        .map(|_| ())
        .map_err(|e| EmailError::Config(e.to_string()))
}

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    /// The address, subject or body cannot be sent; the message says which.
    #[error("{0}")]
    Invalid(String),
    #[error("SMTP settings: {0}")]
    Config(String),
    /// A 5xx reply (or a message this server cannot take): trying again cannot help.
    #[error("the mail server refused the message: {0}")]
    Rejected(String),
    /// A 4xx reply: the server asks to try later.
    #[error("the mail server deferred the message: {0}")]
    Deferred(String),
    #[error("the mail server could not be reached: {0}")]
    Connection(String),
    #[error("the mail server is unavailable (circuit open)")]
    Unavailable,
}

impl EmailError {
    /// Sending the same message again cannot succeed.
    pub fn is_permanent(&self) -> bool {
        matches!(self, EmailError::Invalid(_) | EmailError::Rejected(_))
    }
}

impl From<smtp::Error> for EmailError {
    fn from(e: smtp::Error) -> Self {
        if e.is_permanent() || e.is_client() {
            // Client errors are what this server cannot take (say, SMTPUTF8 it lacks).
            EmailError::Rejected(e.to_string())
        } else if e.is_transient() {
            EmailError::Deferred(e.to_string())
        } else {
            EmailError::Connection(e.to_string())
        }
    }
}

/// One plain-text message to one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingEmail {
    pub to: Address,
    pub subject: String,
    pub body: String,
    pub reply_to: Option<Address>,
    /// Names the message (`<id@sender-domain>`): the job's id, so every retry carries one
    /// Message-ID. A fresh one when absent.
    pub message_id: Option<Uuid>,
}

/// `value` as an email address (lettre's parser), or why not.
pub fn parse_address(field: &str, value: &str) -> Result<Address, EmailError> {
    value.trim().parse::<Address>().map_err(|_| {
        EmailError::Invalid(format!(
            "{field}: '{}' is not an email address like name@example.com",
            value.trim()
        ))
    })
}

impl OutgoingEmail {
    /// Validates what a caller (the model, a job's payload) asks to send.
    pub fn new(to: &str, subject: &str, body: &str) -> Result<OutgoingEmail, EmailError> {
        let to = parse_address("to", to)?;
        let subject = subject.trim();
        if subject.is_empty() {
            return Err(EmailError::Invalid("subject is required".into()));
        }
        if subject.chars().count() > MAX_SUBJECT_CHARS {
            return Err(EmailError::Invalid(format!(
                "subject is longer than {MAX_SUBJECT_CHARS} characters"
            )));
        }
        if subject.chars().any(char::is_control) {
            return Err(EmailError::Invalid("subject must be one line".into()));
        }
        if body.trim().is_empty() {
            return Err(EmailError::Invalid("body is required".into()));
        }
        if body.chars().count() > MAX_BODY_CHARS {
            return Err(EmailError::Invalid(format!(
                "body is longer than {MAX_BODY_CHARS} characters"
            )));
        }
        Ok(OutgoingEmail {
            to,
            subject: subject.to_string(),
            body: body.to_string(),
            reply_to: None,
            message_id: None,
        })
    }

    pub fn reply_to(mut self, reply_to: Option<&str>) -> Result<OutgoingEmail, EmailError> {
        self.reply_to = match reply_to.map(str::trim).filter(|r| !r.is_empty()) {
            Some(r) => Some(parse_address("reply_to", r)?),
            None => None,
        };
        Ok(self)
    }
}

/// Sends email. Implementations: [`SmtpMailer`]; tests use a fake SMTP server on loopback.
#[async_trait::async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), EmailError>;
}

/// The platform's mailer, when `SMTP_URL` is set.
pub fn mailer(config: &Config) -> Result<Option<Arc<dyn Mailer>>, EmailError> {
    config
        .smtp
        .as_ref()
        .map(|smtp| SmtpMailer::new(smtp, config.circuit).map(|m| Arc::new(m) as Arc<dyn Mailer>))
        .transpose()
}

/// SMTP through lettre: a connection per message (jobs are few and spread out), behind the
/// `smtp` circuit breaker.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    breaker: Breaker,
}

impl SmtpMailer {
    pub fn new(config: &SmtpConfig, circuit: CircuitConfig) -> Result<SmtpMailer, EmailError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(config.url.expose_secret())
            .map_err(|e| EmailError::Config(e.to_string()))?
            .timeout(Some(circuit.timeout))
            .build::<Tokio1Executor>();
        Ok(SmtpMailer {
            transport,
            from: config.from.clone(),
            breaker: Breaker::new("smtp", circuit),
        })
    }

    fn message(&self, email: &OutgoingEmail) -> Result<Message, EmailError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, email.to.clone()))
            .subject(email.subject.clone())
            .header(ContentType::TEXT_PLAIN);
        if let Some(reply_to) = &email.reply_to {
            builder = builder.reply_to(Mailbox::new(None, reply_to.clone()));
        }
        if let Some(id) = email.message_id {
            builder = builder.message_id(Some(format!("<{id}@{}>", self.from.email.domain())));
        }
        builder
            .body(email.body.clone())
            .map_err(|e| EmailError::Invalid(e.to_string()))
    }
}

/// Whether an SMTP error says the relay is unhealthy (and counts on its circuit): no
/// connection or answer, or `421` (service not available). A refused recipient does not.
fn is_service_failure(e: &smtp::Error) -> bool {
    match e.status() {
        Some(code) => code.to_string() == "421",
        None => !e.is_client(),
    }
}

#[async_trait::async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), EmailError> {
        let message = self.message(email)?;
        let sent = self
            .breaker
            .call_with(is_service_failure, self.transport.send(message))
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(OutboundError::Unavailable(_)) => Err(EmailError::Unavailable),
            Err(OutboundError::Call(e)) => Err(e.into()),
        }
    }
}

/// Queues emails for delivery; the `send_email` tool holds one when SMTP is configured.
#[derive(Clone)]
pub struct EmailQueue {
    db: DatabaseConnection,
}

impl EmailQueue {
    pub fn new(db: DatabaseConnection) -> EmailQueue {
        EmailQueue { db }
    }

    /// Enqueues an `email.send` job in the tenant; returns its id.
    pub async fn enqueue(
        &self,
        tenant_id: Uuid,
        email: &OutgoingEmail,
        conversation_id: Option<Uuid>,
    ) -> Result<Uuid, DbErr> {
        enqueue(&self.db, tenant_id, email, conversation_id).await
    }
}

/// Enqueues (in `conn`, so with the caller's transaction) an `email.send` job in the tenant;
/// returns its id.
pub async fn enqueue(
    conn: &impl sea_orm::ConnectionTrait,
    tenant_id: Uuid,
    email: &OutgoingEmail,
    conversation_id: Option<Uuid>,
) -> Result<Uuid, DbErr> {
    let payload = json!({
        "to": email.to.to_string(),
        "subject": email.subject,
        "body": email.body,
        "reply_to": email.reply_to.as_ref().map(ToString::to_string),
        "conversation_id": conversation_id,
    });
    jobs::enqueue(conn, NewJob::new(Some(tenant_id), SEND, payload))
        .await?
        .ok_or_else(|| DbErr::Custom("the email job was not enqueued".into()))
}

/// Enqueues an `email.send` job once per `key` (a workflow step's): enqueueing the same key
/// again does nothing and returns `None`.
pub async fn enqueue_keyed(
    conn: &impl sea_orm::ConnectionTrait,
    tenant_id: Uuid,
    email: &OutgoingEmail,
    key: String,
) -> Result<Option<Uuid>, DbErr> {
    let payload = json!({
        "to": email.to.to_string(),
        "subject": email.subject,
        "body": email.body,
    });
    jobs::enqueue(conn, NewJob::new(Some(tenant_id), SEND, payload).key(key)).await
}

/// The key-ring purpose of sealed email bodies.
const SEALED_BODY: &str = "email.body";

/// Enqueues (in `conn`, so with the caller's transaction) an `email.send` job whose body
/// carries a secret, such as a single-use link: the body is stored encrypted with the key
/// ring, so the tenant's Jobs page and API show the recipient and subject but never the body.
pub async fn enqueue_sealed(
    conn: &impl sea_orm::ConnectionTrait,
    keys: &KeyRing,
    tenant_id: Uuid,
    email: &OutgoingEmail,
) -> Result<Uuid, DbErr> {
    let sealed = keys
        .encrypt_str(&aad(SEALED_BODY, tenant_id), &email.body)
        .map_err(|e| DbErr::Custom(e.to_string()))?;
    let payload = json!({
        "to": email.to.to_string(),
        "subject": email.subject,
        "sealed_body": sealed,
    });
    jobs::enqueue(conn, NewJob::new(Some(tenant_id), SEND, payload))
        .await?
        .ok_or_else(|| DbErr::Custom("the email job was not enqueued".into()))
}

/// An `email.send` job's payload: `body`, or `sealed_body` (see [`enqueue_sealed`]).
#[derive(Debug, Deserialize)]
struct EmailJob {
    to: String,
    subject: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    sealed_body: Option<String>,
    #[serde(default)]
    reply_to: Option<String>,
    #[serde(default)]
    conversation_id: Option<Uuid>,
}

/// Delivers one `email.send` job and records `email.sent` in the tenant's audit log.
pub struct SendEmail {
    mailer: Option<Arc<dyn Mailer>>,
    keys: Option<KeyRing>,
    providers: Option<super::email_providers::EmailProviders>,
}

impl SendEmail {
    /// Without a mailer (no `SMTP_URL` on this worker) attempts fail and are retried, so
    /// fixing the worker's settings delivers what was queued. `keys` open sealed bodies;
    /// `providers` send for tenants that have their own (SendGrid, Mailgun).
    pub fn new(
        mailer: Option<Arc<dyn Mailer>>,
        keys: Option<KeyRing>,
        providers: Option<super::email_providers::EmailProviders>,
    ) -> SendEmail {
        SendEmail {
            mailer,
            keys,
            providers,
        }
    }

    /// The tenant's own provider, else the platform's relay.
    async fn mailer_for(&self, ctx: &JobContext) -> anyhow::Result<Arc<dyn Mailer>> {
        if let (Some(providers), Some(tenant)) = (&self.providers, ctx.tenant_id()) {
            match providers.for_tenant(ctx.db(), tenant).await {
                Ok(Some(mailer)) => return Ok(mailer),
                Ok(None) => {}
                Err(e) => anyhow::bail!(masked(&e)),
            }
        }
        self.mailer.clone().ok_or_else(|| {
            anyhow::anyhow!(
                "no email service: SMTP is not configured on this worker (SMTP_URL) and the \
                 tenant has no provider of its own"
            )
        })
    }

    fn body(&self, job: &EmailJob, tenant_id: Option<Uuid>) -> Result<String, Permanent> {
        let Some(sealed) = &job.sealed_body else {
            return Ok(job.body.clone());
        };
        let (Some(keys), Some(tenant_id)) = (&self.keys, tenant_id) else {
            return Err(Permanent(
                "a sealed email needs the key ring and a tenant".into(),
            ));
        };
        keys.decrypt_str(&aad(SEALED_BODY, tenant_id), sealed)
            .map(|body| body.to_string())
            .map_err(|e| Permanent(format!("the sealed body cannot be opened: {e}")))
    }
}

/// Errors end up in logs and the job's record: no addresses in them.
fn masked(e: &EmailError) -> String {
    pii::mask(&e.to_string()).into_owned()
}

#[async_trait::async_trait]
impl JobHandler for SendEmail {
    fn kind(&self) -> &'static str {
        SEND
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(180)
    }

    async fn run(&self, ctx: &mut JobContext) -> anyhow::Result<()> {
        let job: EmailJob = serde_json::from_value(ctx.payload().clone())
            .map_err(|e| Permanent(format!("the payload is not an email: {e}")))?;
        let body = self.body(&job, ctx.tenant_id())?;
        let mut email = OutgoingEmail::new(&job.to, &job.subject, &body)
            .and_then(|email| email.reply_to(job.reply_to.as_deref()))
            .map_err(|e| Permanent(masked(&e)))?;
        email.message_id = Some(ctx.id());
        let mailer = self.mailer_for(ctx).await?;
        if let Err(e) = mailer.send(&email).await {
            if e.is_permanent() {
                return Err(Permanent(masked(&e)).into());
            }
            anyhow::bail!(masked(&e));
        }
        tracing::info!(to = %pii::mask(email.to.as_ref()), "email sent");
        let (tenant_id, job_id) = (ctx.tenant_id(), ctx.id());
        let txn = ctx.transaction().await?;
        Record {
            tenant_id,
            actor: "agent".into(),
            action: "email.sent",
            target: job_id.to_string(),
            ip: None,
            details: Some(json!({
                "to": email.to.to_string(),
                "subject": email.subject,
                "conversation_id": job.conversation_id,
            })),
        }
        .write(txn)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_email_is_trimmed_and_kept() {
        let email = OutgoingEmail::new(" rui@example.com ", " Your visit ", "Hello\nRui").unwrap();
        assert_eq!(email.to.to_string(), "rui@example.com");
        assert_eq!(email.subject, "Your visit");
        assert_eq!(email.body, "Hello\nRui");
        let email = email.reply_to(Some("shop@example.com")).unwrap();
        assert_eq!(email.reply_to.unwrap().to_string(), "shop@example.com");
    }

    #[test]
    fn bad_addresses_subjects_and_bodies_are_refused_with_the_reason() {
        let refused = |to: &str, subject: &str, body: &str| {
            let err = OutgoingEmail::new(to, subject, body).unwrap_err();
            assert!(err.is_permanent(), "{err}");
            err.to_string()
        };
        for to in [
            "",
            "rui",
            "rui@",
            "@example.com",
            "rui@exa mple.com",
            "a@b@c",
        ] {
            assert!(
                refused(to, "Hi", "Body").contains("not an email address"),
                "{to}"
            );
        }
        let long = "x".repeat(MAX_SUBJECT_CHARS + 1);
        assert!(refused("a@example.com", &long, "Body").contains("longer than 200"));
        assert!(refused("a@example.com", "Hi\r\nBcc: x@y.z", "Body").contains("one line"));
        assert!(refused("a@example.com", "  ", "Body").contains("subject is required"));
        assert!(refused("a@example.com", "Hi", " \n ").contains("body is required"));
        let long = "é".repeat(MAX_BODY_CHARS + 1);
        assert!(refused("a@example.com", "Hi", &long).contains("longer than 10000"));
        // The limits count characters, not bytes.
        let subject = "é".repeat(MAX_SUBJECT_CHARS);
        let body = "é".repeat(MAX_BODY_CHARS);
        assert!(OutgoingEmail::new("a@example.com", &subject, &body).is_ok());
        let err = OutgoingEmail::new("a@example.com", "Hi", "Body")
            .unwrap()
            .reply_to(Some("nope"))
            .unwrap_err();
        assert!(err.to_string().starts_with("reply_to:"), "{err}");
    }

    #[test]
    fn smtp_urls_are_checked_as_lettre_reads_them() {
        for ok in [
            "smtp://127.0.0.1:2525",
            "smtp://user:pa%40ss@mail.example.com:587?tls=required",
            "smtps://user:pass@mail.example.com",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://mail.example.com",
            "smtp://mail.example.com?tls=sometimes",
            "mail.example.com:25",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn messages_carry_the_sender_reply_to_and_a_stable_message_id() {
        let mailer = SmtpMailer::new(
            &SmtpConfig {
                url: SecretString::from("smtp://127.0.0.1:1".to_string()),
                from: "Acme <bot@acme.example>".parse().unwrap(),
            },
            CircuitConfig {
                failures: 5,
                open_for: Duration::from_secs(60),
                timeout: Duration::from_secs(5),
            },
        )
        .unwrap();
        let id = Uuid::now_v7();
        let mut email = OutgoingEmail::new("rui@example.com", "Summary", "Hello Rui")
            .unwrap()
            .reply_to(Some("desk@acme.example"))
            .unwrap();
        email.message_id = Some(id);
        let text = String::from_utf8(mailer.message(&email).unwrap().formatted()).unwrap();
        assert!(text.contains("From: Acme <bot@acme.example>\r\n"), "{text}");
        assert!(text.contains("To: rui@example.com\r\n"), "{text}");
        assert!(text.contains("Reply-To: desk@acme.example\r\n"), "{text}");
        assert!(text.contains("Subject: Summary\r\n"), "{text}");
        assert!(
            text.contains(&format!("Message-ID: <{id}@acme.example>\r\n")),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\nHello Rui"), "{text}");
    }
}
