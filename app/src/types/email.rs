//! Which email service sends a tenant's mail: the platform's SMTP relay, or the tenant's own
//! SendGrid or Mailgun account (console Integrations page and `/api/v1/email-settings`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::validate as v;

#[cfg(feature = "ssr")]
use utoipa::ToSchema;

string_enum! {
    /// Who sends the tenant's email.
    EmailProvider {
        /// The platform's SMTP relay (`SMTP_URL`), with the platform's sender.
        Platform = "platform",
        /// SendGrid's v3 mail send API.
        Sendgrid = "sendgrid",
        /// Mailgun's messages API.
        Mailgun = "mailgun",
    }
}

string_enum! {
    /// Where a Mailgun account lives.
    #[derive(Default)]
    MailgunRegion {
        #[default]
        Us = "us",
        Eu = "eu",
    }
}

/// The provider in use. The API key is never returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct EmailSettings {
    pub provider: EmailProvider,
    /// Whether email can be sent at all (the platform's relay may not be configured).
    pub available: bool,
    /// The sender of the tenant's own provider.
    pub from: Option<String>,
    pub mailgun_domain: Option<String>,
    pub mailgun_region: Option<MailgunRegion>,
    /// The stored key's last four characters, to recognise it.
    pub api_key_hint: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// The tenant's own provider. Leaving `api_key` out keeps the stored key of the same provider.
#[derive(Clone, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct UpdateEmailSettings {
    /// sendgrid or mailgun (`DELETE` goes back to the platform's relay).
    #[garde(custom(v::own_email_provider))]
    pub provider: EmailProvider,
    /// The sender: `Shop <hello@shop.example>` or `hello@shop.example`, an address the
    /// provider lets the account send from.
    #[garde(custom(v::mailbox))]
    pub from: String,
    /// Mailgun's sending domain, e.g. `mg.shop.example`.
    #[serde(default)]
    #[garde(custom(v::optional(v::domain)))]
    pub mailgun_domain: Option<String>,
    #[serde(default)]
    #[garde(skip)]
    pub mailgun_region: MailgunRegion,
    /// A new key (stored encrypted); absent keeps the stored one.
    #[serde(default)]
    #[garde(custom(v::optional(v::api_key)))]
    pub api_key: Option<String>,
}

/// The key stays out of logs.
impl std::fmt::Debug for UpdateEmailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdateEmailSettings")
            .field("provider", &self.provider)
            .field("from", &self.from)
            .field("mailgun_domain", &self.mailgun_domain)
            .field("mailgun_region", &self.mailgun_region)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// Where a test message goes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct TestEmail {
    #[garde(custom(v::email))]
    pub to: String,
}
