//! Google Calendar over OAuth 2.0 (the `oauth2` crate): authorization code with PKCE (S256),
//! offline access, the narrowest calendar scopes that book (`calendar.events`, and
//! `calendar.freebusy` for availability).
//!
//! The `state` sent to Google is `{id}.{secret}`: 256 random bits, of which only the SHA-256 is
//! stored, with the user, the tenant and (hashed) the console session that started it, and the
//! PKCE verifier (sealed). The callback refuses, logs and counts
//! (`oauth_state_rejections_total{reason}`) a state that is missing, unknown, wrong (compared
//! in constant time), used before (a conditional update makes it single-use even under a
//! race), older than 10 minutes, or brought by another user, tenant or session. The token
//! response must be a bearer token with a refresh token and the calendar scope; the tokens are
//! sealed with the key ring, bound to the tenant, and rotate with it. Disconnecting revokes
//! the grant at Google and deletes the tokens.
//!
//! Once connected: [`api`] (tokens refreshed one at a time, the Calendar calls), [`calendar`]
//! (the tenant's calendar the agents and the Bookings page use), [`sync`] (the 15-minute job).

pub mod api;
pub mod calendar;
pub mod routes;
pub mod sync;

use std::time::Duration;

use chrono::Utc;
use oauth2::basic::{BasicClient, BasicTokenType};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, TokenUrl,
};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, DatabaseConnection, TransactionTrait};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sha2::Digest;

use app::error::AppError;
use app::services::{Access, Actor, GoogleCalendarService};
use app::types::{Area, CalendarFallback, GoogleCalendar, GoogleSettings, GoogleStatus, Level};

use crate::auth::api_key::{constant_time_eq, hex};
use crate::secrets::{self, aad, KeyRing, Rotation};
use crate::store::audit_log::Record;
use crate::store::{google_connections, oauth_states};
use crate::tenancy::db_error;

/// Create, change and delete events; read free/busy. Nothing else of the account.
pub const SCOPES: [&str; 2] = [
    "https://www.googleapis.com/auth/calendar.events",
    "https://www.googleapis.com/auth/calendar.freebusy",
];
pub const ACCESS_PURPOSE: &str = "google.access_token";
pub const REFRESH_PURPOSE: &str = "google.refresh_token";
const VERIFIER_PURPOSE: &str = "oauth.verifier";
/// How long an authorization request may take.
pub const STATE_TTL: Duration = Duration::from_secs(600);
pub const STATE_REJECTIONS: &str = "oauth_state_rejections_total";
/// The refusals that are about the state (the others: Google's answer, or ours failing).
pub const STATE_REASONS: [&str; 7] = [
    "missing",
    "unknown",
    "mismatch",
    "reused",
    "expired",
    "wrong_user",
    "wrong_session",
];
const PROVIDER: &str = "google";

#[derive(Clone, Debug)]
pub struct GoogleConfig {
    pub client_id: String,
    pub client_secret: SecretString,
    pub auth_url: String,
    pub token_url: String,
    pub revoke_url: String,
    pub api_url: String,
}

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// Why a callback was refused: `reason` is the metric's label, `message` what the person sees.
#[derive(Debug)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

fn refusal(reason: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        message: message.into(),
    }
}

/// What Google sends back to the callback.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Callback {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
}

fn sha256_hex(text: &str) -> String {
    hex(&sha2::Sha256::digest(text.as_bytes()))
}

/// The OAuth flow and the connection's tokens.
pub struct GoogleOAuth {
    db: DatabaseConnection,
    keys: KeyRing,
    client: Client,
    /// No redirects (the oauth2 crate's advice against SSRF through the token endpoint).
    http: reqwest::Client,
    revoke_url: String,
}

impl GoogleOAuth {
    /// `console_url`: where the callback is (`/integrations/google/callback` below it).
    pub fn new(
        config: &GoogleConfig,
        console_url: &str,
        db: DatabaseConnection,
        keys: KeyRing,
    ) -> anyhow::Result<GoogleOAuth> {
        let client = BasicClient::new(ClientId::new(config.client_id.clone()))
            .set_client_secret(ClientSecret::new(
                config.client_secret.expose_secret().to_string(),
            ))
            .set_auth_uri(AuthUrl::new(config.auth_url.clone())?)
            .set_token_uri(TokenUrl::new(config.token_url.clone())?)
            .set_redirect_uri(RedirectUrl::new(format!(
                "{}/integrations/google/callback",
                console_url.trim_end_matches('/')
            ))?);
        let http = crate::llm::http_client()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(GoogleOAuth {
            db,
            keys,
            client,
            http,
            revoke_url: config.revoke_url.clone(),
        })
    }

    /// Starts an authorization for the signed-in person of `access` in console session
    /// `session`: the address to send the browser to.
    pub async fn start(&self, access: &Access, session: &str) -> Result<String, AppError> {
        access.require(Area::Integrations, Level::Write)?;
        let Actor::User { id: user, .. } = &access.actor else {
            return Err(AppError::Forbidden(
                "a person connects Google Calendar, in the console".into(),
            ));
        };
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let id = Uuid::new_v4();
        let secret = CsrfToken::new_random_len(32);
        let now = Utc::now();
        let sealed = self
            .keys
            .encrypt_str(&aad(VERIFIER_PURPOSE, access.tenant_id), verifier.secret())
            .map_err(|e| AppError::Internal(format!("sealing the verifier: {e}")))?;
        // The tenant's states an hour past their expiry go (a replay of one is then
        // `unknown` instead of `reused`: refused all the same).
        oauth_states::Entity::delete_many()
            .filter(oauth_states::Column::TenantId.eq(access.tenant_id))
            .filter(oauth_states::Column::ExpiresAt.lt(now - chrono::Duration::hours(1)))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        oauth_states::ActiveModel {
            id: Set(id),
            tenant_id: Set(access.tenant_id),
            user_id: Set(*user),
            provider: Set(PROVIDER.into()),
            secret_hash: Set(sha256_hex(secret.secret())),
            session_hash: Set(sha256_hex(session)),
            verifier: Set(sealed),
            created_at: Set(now),
            expires_at: Set(now + STATE_TTL),
            used_at: Set(None),
        }
        .insert(&self.db)
        .await
        .map_err(db_error)?;
        let state = format!("{}.{}", id.simple(), secret.secret());
        let (url, _) = self
            .client
            .authorize_url(|| CsrfToken::new(state))
            .add_scopes(SCOPES.iter().map(|s| Scope::new((*s).to_string())))
            .add_extra_param("access_type", "offline")
            .add_extra_param("prompt", "consent")
            .add_extra_param("include_granted_scopes", "false")
            .set_pkce_challenge(challenge)
            .url();
        Ok(url.to_string())
    }

    /// Checks the callback's state, exchanges the code and stores the tokens.
    pub async fn finish(
        &self,
        access: Option<&Access>,
        session: Option<&str>,
        callback: Callback,
    ) -> Result<(), Refusal> {
        let result = self.checked(access, session, callback).await;
        if let Err(refused) = &result {
            if STATE_REASONS.contains(&refused.reason) {
                metrics::counter!(STATE_REJECTIONS, "provider" => PROVIDER, "reason" => refused.reason)
                    .increment(1);
            }
            tracing::warn!(
                reason = refused.reason,
                "a Google authorization was refused"
            );
        }
        result
    }

    async fn checked(
        &self,
        access: Option<&Access>,
        session: Option<&str>,
        callback: Callback,
    ) -> Result<(), Refusal> {
        let stale = "this link is no longer valid; connect again from the Integrations page";
        let state = callback
            .state
            .ok_or_else(|| refusal("missing", "the answer from Google carries no state"))?;
        let (id, secret) = state
            .split_once('.')
            .and_then(|(id, secret)| Some((Uuid::parse_str(id).ok()?, secret)))
            .ok_or_else(|| refusal("unknown", stale))?;
        let row = oauth_states::Entity::find_by_id(id)
            .filter(oauth_states::Column::Provider.eq(PROVIDER))
            .one(&self.db)
            .await
            .map_err(|_| refusal("unavailable", "try again"))?
            .ok_or_else(|| refusal("unknown", stale))?;
        if !constant_time_eq(sha256_hex(secret).as_bytes(), row.secret_hash.as_bytes()) {
            return Err(refusal("mismatch", stale));
        }
        // Single use: the first to mark it wins, whatever else is wrong with it.
        let used = oauth_states::Entity::update_many()
            .col_expr(oauth_states::Column::UsedAt, Expr::value(Utc::now()))
            .filter(oauth_states::Column::Id.eq(row.id))
            .filter(oauth_states::Column::UsedAt.is_null())
            .exec(&self.db)
            .await
            .map_err(|_| refusal("unavailable", "try again"))?;
        if used.rows_affected == 0 {
            return Err(refusal("reused", stale));
        }
        if row.expires_at < Utc::now() {
            return Err(refusal(
                "expired",
                "the connection took longer than 10 minutes; connect again",
            ));
        }
        let access = access
            .filter(|a| {
                a.tenant_id == row.tenant_id
                    && matches!(&a.actor, Actor::User { id, .. } if *id == row.user_id)
            })
            .ok_or_else(|| {
                refusal(
                    "wrong_user",
                    "this connection was started by someone else (or in another tenant); connect again yourself",
                )
            })?;
        let same_session = session.is_some_and(|s| {
            constant_time_eq(sha256_hex(s).as_bytes(), row.session_hash.as_bytes())
        });
        if !same_session {
            return Err(refusal(
                "wrong_session",
                "this connection was started in another sign-in; connect again",
            ));
        }
        if let Some(error) = callback.error {
            let error: String = error.chars().take(100).collect();
            return Err(refusal(
                "denied",
                format!("Google did not grant access ({error})"),
            ));
        }
        let code = callback
            .code
            .ok_or_else(|| refusal("missing_code", "the answer from Google carries no code"))?;
        let verifier = self
            .keys
            .decrypt_str(&aad(VERIFIER_PURPOSE, row.tenant_id), &row.verifier)
            .map_err(|_| {
                refusal(
                    "unavailable",
                    "the request cannot be completed; connect again",
                )
            })?;
        let token = self
            .client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_string()))
            .request_async(&self.http)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "Google refused the code");
                refusal(
                    "token_refused",
                    "Google refused to complete the connection; connect again",
                )
            })?;
        // The answer must be what was asked for.
        if *token.token_type() != BasicTokenType::Bearer {
            return Err(refusal("bad_token", "Google sent an unusable token"));
        }
        let refresh = token.refresh_token().ok_or_else(|| {
            refusal(
                "bad_token",
                "Google sent no refresh token: remove the platform's access in your Google account and connect again",
            )
        })?;
        let granted: Vec<String> = match token.scopes() {
            Some(scopes) => scopes.iter().map(|s| s.to_string()).collect(),
            None => SCOPES.iter().map(|s| (*s).to_string()).collect(),
        };
        if !granted.iter().any(|s| s == SCOPES[0]) {
            return Err(refusal(
                "bad_token",
                "calendar access was not granted; connect again and allow it",
            ));
        }
        let expires_in = token
            .expires_in()
            .unwrap_or(Duration::from_secs(3600))
            .min(Duration::from_secs(24 * 3600));
        self.store(
            access,
            token.access_token().secret(),
            refresh.secret(),
            expires_in,
            &granted.join(" "),
        )
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "storing the Google connection failed");
            refusal(
                "unavailable",
                "the connection could not be stored; try again",
            )
        })
    }

    async fn store(
        &self,
        access: &Access,
        access_token: &str,
        refresh_token: &str,
        expires_in: Duration,
        scopes: &str,
    ) -> Result<(), AppError> {
        let tenant = access.tenant_id;
        let seal = |purpose: &str, text: &str| {
            self.keys
                .encrypt_str(&aad(purpose, tenant), text)
                .map_err(|e| AppError::Internal(format!("sealing a token: {e}")))
        };
        let now = Utc::now();
        let user = match &access.actor {
            Actor::User { id, .. } => Some(*id),
            _ => None,
        };
        let row = google_connections::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(tenant),
            connected_by: Set(user),
            access_token: Set(seal(ACCESS_PURPOSE, access_token)?),
            refresh_token: Set(seal(REFRESH_PURPOSE, refresh_token)?),
            expires_at: Set(now + expires_in),
            scopes: Set(scopes.chars().take(1000).collect()),
            status: Set(GoogleStatus::Connected.as_str().into()),
            calendar_id: Set("primary".into()),
            last_error: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            fallback: Set(CalendarFallback::BuiltIn.as_str().into()),
            sync_token: Set(None),
            synced_at: Set(None),
            lease_until: Set(None),
            lease_holder: Set(None),
        };
        let txn = self.db.begin().await.map_err(db_error)?;
        google_connections::Entity::insert(row)
            .on_conflict(
                OnConflict::column(google_connections::Column::TenantId)
                    .update_columns([
                        google_connections::Column::ConnectedBy,
                        google_connections::Column::AccessToken,
                        google_connections::Column::RefreshToken,
                        google_connections::Column::ExpiresAt,
                        google_connections::Column::Scopes,
                        google_connections::Column::Status,
                        google_connections::Column::LastError,
                        google_connections::Column::UpdatedAt,
                        // A new grant may see another account: the next sync lists everything.
                        google_connections::Column::SyncToken,
                        google_connections::Column::LeaseUntil,
                        google_connections::Column::LeaseHolder,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await
            .map_err(db_error)?;
        Record::by(access, "google.connect", "google-calendar")
            .details(json!({ "scopes": scopes }))
            .write(&txn)
            .await
            .map_err(db_error)?;
        sync::start(&txn, tenant).await.map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(())
    }

    /// Revokes `refresh_token` (sealed) at Google (`POST {revoke}` with `token`, as Google
    /// documents it; the oauth2 crate's RFC 7009 client insists on https, which the fake on
    /// loopback cannot offer). A token Google no longer knows counts as revoked.
    async fn revoke(&self, tenant: Uuid, sealed: &str) -> Result<(), String> {
        let token = self
            .keys
            .decrypt_str(&aad(REFRESH_PURPOSE, tenant), sealed)
            .map_err(|e| format!("the stored token cannot be opened: {e}"))?;
        let response = self
            .http
            .post(&self.revoke_url)
            .form(&[("token", token.as_str())])
            .send()
            .await
            .map_err(|e| {
                format!(
                    "Google could not be reached: {}",
                    crate::outbound::describe(&e)
                )
            })?;
        match response.status().as_u16() {
            200 | 400 => Ok(()),
            status => Err(format!("Google answered {status}")),
        }
    }
}

fn to_calendar(m: google_connections::Model) -> GoogleCalendar {
    GoogleCalendar {
        status: GoogleStatus::parse(&m.status).unwrap_or(GoogleStatus::NeedsReconnect),
        calendar_id: m.calendar_id,
        scopes: m.scopes.split_whitespace().map(String::from).collect(),
        connected_by: m.connected_by,
        last_error: m.last_error,
        fallback: CalendarFallback::parse(&m.fallback).unwrap_or(CalendarFallback::BuiltIn),
        synced_at: m.synced_at,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

/// `GoogleCalendarService`; without the platform's Google client (`GOOGLE_CLIENT_ID`) there
/// is nothing to connect, but a stored connection can still be read and deleted.
pub struct GoogleServiceImpl {
    db: DatabaseConnection,
    oauth: Option<std::sync::Arc<GoogleOAuth>>,
}

impl GoogleServiceImpl {
    pub fn new(db: DatabaseConnection, oauth: Option<std::sync::Arc<GoogleOAuth>>) -> Self {
        GoogleServiceImpl { db, oauth }
    }

    async fn row(&self, access: &Access) -> Result<google_connections::Model, AppError> {
        google_connections::Entity::find()
            .filter(google_connections::Column::TenantId.eq(access.tenant_id))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or_else(|| AppError::not_found("Google Calendar connection"))
    }
}

#[async_trait::async_trait]
impl GoogleCalendarService for GoogleServiceImpl {
    fn configured(&self) -> bool {
        self.oauth.is_some()
    }

    async fn get_google_calendar(&self, access: &Access) -> Result<GoogleCalendar, AppError> {
        access.require(Area::Integrations, Level::Read)?;
        Ok(to_calendar(self.row(access).await?))
    }

    async fn update_google_calendar(
        &self,
        access: &Access,
        settings: GoogleSettings,
    ) -> Result<GoogleCalendar, AppError> {
        access.require(Area::Integrations, Level::Write)?;
        let row = self.row(access).await?;
        let txn = self.db.begin().await.map_err(db_error)?;
        let mut active: google_connections::ActiveModel = row.into();
        active.fallback = Set(settings.fallback.as_str().into());
        active.updated_at = Set(Utc::now());
        let row = active.update(&txn).await.map_err(db_error)?;
        Record::by(access, "google.update", "google-calendar")
            .details(json!({ "fallback": settings.fallback.as_str() }))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(to_calendar(row))
    }

    async fn disconnect_google_calendar(&self, access: &Access) -> Result<(), AppError> {
        access.require(Area::Integrations, Level::Write)?;
        let row = self.row(access).await?;
        // Revoked first: a grant that could not be revoked is still deleted here (the person
        // can remove it in their Google account), and the audit says so.
        let revoked = match &self.oauth {
            Some(oauth) => oauth.revoke(access.tenant_id, &row.refresh_token).await,
            None => Err("the platform has no Google client configured".into()),
        };
        if let Err(e) = &revoked {
            tracing::warn!(error = %e, "a Google grant could not be revoked");
        }
        let txn = self.db.begin().await.map_err(db_error)?;
        google_connections::Entity::delete_many()
            .filter(google_connections::Column::Id.eq(row.id))
            .filter(google_connections::Column::TenantId.eq(access.tenant_id))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        Record::by(access, "google.disconnect", "google-calendar")
            .details(json!({ "revoked": revoked.is_ok(), "revoke_error": revoked.err() }))
            .write(&txn)
            .await
            .map_err(db_error)?;
        sync::stop(&txn, access.tenant_id).await.map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(())
    }
}

/// Re-encrypts every connection's tokens not yet under the current key.
pub async fn rotate(db: &DatabaseConnection, keys: &KeyRing) -> Result<Rotation, DbErr> {
    use google_connections::{Column, Entity};
    let mut rotation = secrets::rotate_column::<Entity>(
        db,
        keys,
        "Google access token",
        ACCESS_PURPOSE,
        (Column::Id, Column::TenantId, Column::AccessToken),
    )
    .await?;
    rotation.add(
        secrets::rotate_column::<Entity>(
            db,
            keys,
            "Google refresh token",
            REFRESH_PURPOSE,
            (Column::Id, Column::TenantId, Column::RefreshToken),
        )
        .await?,
    );
    Ok(rotation)
}
