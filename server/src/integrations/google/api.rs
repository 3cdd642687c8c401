//! Google Calendar's API as one tenant's connection: an access token that is refreshed before
//! it expires and when Google answers 401, one refresh at a time per connection across every
//! process (a lease in the connection's row), and the calls the calendar makes: free/busy,
//! creating an event under an id we choose (so a retried call cannot book twice: Google
//! answers 409 for an id it has), moving, deleting, and listing changes with sync tokens.
//!
//! Every call, token refreshes included, goes through the `google` circuit. A refresh that
//! Google refuses with `invalid_grant` (revoked, expired, password changed) marks the
//! connection "needs reconnect", which the console shows and the calendar falls back on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use oauth2::basic::{BasicErrorResponseType, BasicTokenType};
use oauth2::{RefreshToken, RequestTokenError, TokenResponse};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{Condition, TransactionTrait};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use app::types::GoogleStatus;

use super::{GoogleOAuth, ACCESS_PURPOSE, REFRESH_PURPOSE};
use crate::config::CircuitConfig;
use crate::outbound::{describe, HttpError, OutboundClient, OutboundError};
use crate::secrets::aad;
use crate::store::audit_log::Record;
use crate::store::google_connections::{self, Column};

/// A token with less than this left is refreshed before use.
const EARLY: chrono::Duration = chrono::Duration::minutes(5);
/// How long a refresh may hold the connection's lease.
const LEASE: chrono::Duration = chrono::Duration::seconds(30);
/// How long a call waits for another process's refresh.
const WAIT: Duration = Duration::from_secs(20);
/// Attempts of a call that failed for want of an answer (429, 5xx, none).
const ATTEMPTS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Google Calendar is not connected")]
    NotConnected,
    #[error("Google Calendar needs reconnecting: Google no longer accepts the platform's access")]
    NeedsReconnect,
    /// No answer, 429 or 5xx: worth trying again.
    #[error("Google Calendar cannot be reached now ({0})")]
    Unavailable(String),
    /// The `google` circuit is open: not called, not retried.
    #[error("Google Calendar cannot be reached now (it failed repeatedly; the platform waits before trying again)")]
    CircuitOpen,
    /// Google refused the request itself.
    #[error("Google Calendar answered {status}: {body}")]
    Refused { status: u16, body: String },
}

impl ApiError {
    fn status(&self) -> Option<u16> {
        match self {
            ApiError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn db(e: DbErr) -> ApiError {
    ApiError::Unavailable(format!("the database failed: {e}"))
}

fn http(e: OutboundError<HttpError>) -> ApiError {
    match e {
        OutboundError::Unavailable(_) => ApiError::CircuitOpen,
        OutboundError::Call(HttpError::Transport(e)) => ApiError::Unavailable(describe(&e).into()),
        OutboundError::Call(e @ HttpError::Status { .. }) if e.is_service_failure() => {
            ApiError::Unavailable(e.to_string())
        }
        OutboundError::Call(HttpError::Status { status, body }) => {
            ApiError::Refused { status, body }
        }
    }
}

/// An event as the calendar writes it.
pub struct EventDraft<'a> {
    pub id: &'a str,
    pub booking: Uuid,
    pub summary: String,
    pub description: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub attendee: Option<(&'a str, &'a str)>,
}

/// An event as the sync reads it.
#[derive(Debug, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(default)]
    pub status: String,
    pub start: Option<When>,
    pub end: Option<When>,
    /// When the event last changed.
    pub updated: Option<DateTime<Utc>>,
    #[serde(rename = "extendedProperties")]
    pub extended: Option<Extended>,
}

#[derive(Debug, Deserialize)]
pub struct When {
    #[serde(rename = "dateTime")]
    pub date_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
pub struct Extended {
    #[serde(default)]
    pub private: std::collections::HashMap<String, String>,
}

/// The private property that marks an event as one of our bookings.
pub const BOOKING_PROPERTY: &str = "platform_booking";

impl Event {
    pub fn booking(&self) -> Option<Uuid> {
        self.extended
            .as_ref()?
            .private
            .get(BOOKING_PROPERTY)?
            .parse()
            .ok()
    }

    pub fn interval(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        Some((
            self.start.as_ref()?.date_time?,
            self.end.as_ref()?.date_time?,
        ))
    }
}

/// One page of changes.
#[derive(Debug, Deserialize)]
pub struct Changes {
    #[serde(default)]
    pub items: Vec<Event>,
    #[serde(rename = "nextPageToken")]
    pub next_page: Option<String>,
    #[serde(rename = "nextSyncToken")]
    pub next_sync: Option<String>,
}

#[derive(Clone)]
pub struct GoogleApi {
    oauth: Arc<GoogleOAuth>,
    client: OutboundClient,
    api_url: String,
}

impl GoogleApi {
    pub fn new(
        oauth: Arc<GoogleOAuth>,
        api_url: &str,
        circuit: CircuitConfig,
    ) -> anyhow::Result<GoogleApi> {
        Ok(GoogleApi {
            oauth,
            client: OutboundClient::new("google", circuit)?,
            api_url: api_url.trim_end_matches('/').to_string(),
        })
    }

    /// The tenant's connection, if it can be used.
    pub async fn connection(&self, tenant: Uuid) -> Result<google_connections::Model, ApiError> {
        let row = google_connections::Entity::find()
            .filter(Column::TenantId.eq(tenant))
            .one(&self.oauth.db)
            .await
            .map_err(db)?
            .ok_or(ApiError::NotConnected)?;
        if row.status != GoogleStatus::Connected.as_str() {
            return Err(ApiError::NeedsReconnect);
        }
        Ok(row)
    }

    fn open(&self, row: &google_connections::Model) -> Result<SecretString, ApiError> {
        self.oauth
            .keys
            .decrypt_str(&aad(ACCESS_PURPOSE, row.tenant_id), &row.access_token)
            .map(|token| SecretString::from(token.as_str()))
            .map_err(|e| ApiError::Unavailable(format!("the stored token cannot be opened: {e}")))
    }

    /// A usable access token with the row it came from: the stored one while it has more than
    /// five minutes left; otherwise, or when Google refused `stale` (the sealed token of a
    /// 401), a new one. One process refreshes; the others wait for its token.
    pub async fn token(
        &self,
        tenant: Uuid,
        stale: Option<&str>,
    ) -> Result<(google_connections::Model, SecretString), ApiError> {
        let deadline = Instant::now() + WAIT;
        loop {
            let row = self.connection(tenant).await?;
            let fresh = match stale {
                Some(stale) => row.access_token != stale,
                None => row.expires_at > Utc::now() + EARLY,
            };
            if fresh {
                let token = self.open(&row)?;
                return Ok((row, token));
            }
            if let Some(holder) = self.lease(&row).await? {
                return self.refresh(row, holder).await;
            }
            if Instant::now() > deadline {
                return Err(ApiError::Unavailable(
                    "another process's refresh of the token did not finish".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Takes the connection's refresh lease, unless someone holds it or has already replaced
    /// the token: the holder's id, or `None`.
    async fn lease(&self, row: &google_connections::Model) -> Result<Option<Uuid>, ApiError> {
        let holder = Uuid::new_v4();
        let now = Utc::now();
        let taken = google_connections::Entity::update_many()
            .col_expr(Column::LeaseUntil, Expr::value(now + LEASE))
            .col_expr(Column::LeaseHolder, Expr::value(holder))
            .filter(Column::Id.eq(row.id))
            .filter(Column::AccessToken.eq(row.access_token.clone()))
            .filter(
                Condition::any()
                    .add(Column::LeaseUntil.is_null())
                    .add(Column::LeaseUntil.lt(now)),
            )
            .exec(&self.oauth.db)
            .await
            .map_err(db)?;
        Ok((taken.rows_affected == 1).then_some(holder))
    }

    /// Asks Google for a new access token with the refresh token, under the lease `holder`.
    async fn refresh(
        &self,
        row: google_connections::Model,
        holder: Uuid,
    ) -> Result<(google_connections::Model, SecretString), ApiError> {
        let result = self.exchange(&row).await;
        let mut update = google_connections::Entity::update_many()
            .col_expr(Column::LeaseUntil, Expr::value(Option::<DateTimeUtc>::None))
            .col_expr(Column::LeaseHolder, Expr::value(Option::<Uuid>::None))
            .filter(Column::Id.eq(row.id))
            .filter(Column::LeaseHolder.eq(holder));
        let now = Utc::now();
        match result {
            Ok((access, refresh, expires_in)) => {
                let seal = |purpose: &str, text: &str| {
                    self.oauth
                        .keys
                        .encrypt_str(&aad(purpose, row.tenant_id), text)
                        .map_err(|e| ApiError::Unavailable(format!("sealing a token: {e}")))
                };
                let sealed = seal(ACCESS_PURPOSE, access.expose_secret())?;
                update = update
                    .col_expr(Column::AccessToken, Expr::value(sealed))
                    .col_expr(Column::ExpiresAt, Expr::value(now + expires_in))
                    .col_expr(Column::UpdatedAt, Expr::value(now));
                // Google may rotate the refresh token too.
                if let Some(refresh) = refresh {
                    let sealed = seal(REFRESH_PURPOSE, refresh.expose_secret())?;
                    update = update.col_expr(Column::RefreshToken, Expr::value(sealed));
                }
                update.exec(&self.oauth.db).await.map_err(db)?;
                tracing::info!(tenant = %row.tenant_id, "Google access token refreshed");
                Ok((row, access))
            }
            Err(ApiError::NeedsReconnect) => {
                let error = "Google refused the grant (invalid_grant): it was revoked or has \
                             expired. Connect Google Calendar again.";
                let txn = self.oauth.db.begin().await.map_err(db)?;
                update
                    .col_expr(
                        Column::Status,
                        Expr::value(GoogleStatus::NeedsReconnect.as_str()),
                    )
                    .col_expr(Column::LastError, Expr::value(error))
                    .col_expr(Column::UpdatedAt, Expr::value(now))
                    .exec(&txn)
                    .await
                    .map_err(db)?;
                Record {
                    tenant_id: Some(row.tenant_id),
                    actor: "system:google".into(),
                    action: "google.needs_reconnect",
                    target: "google-calendar".into(),
                    ip: None,
                    details: Some(json!({ "error": "invalid_grant" })),
                }
                .write(&txn)
                .await
                .map_err(db)?;
                txn.commit().await.map_err(db)?;
                tracing::warn!(tenant = %row.tenant_id, "Google Calendar needs reconnecting (invalid_grant)");
                Err(ApiError::NeedsReconnect)
            }
            Err(e) => {
                update.exec(&self.oauth.db).await.map_err(db)?;
                Err(e)
            }
        }
    }

    /// The refresh-token grant: the access token, a new refresh token if Google rotated it,
    /// and how long the access token lasts.
    async fn exchange(
        &self,
        row: &google_connections::Model,
    ) -> Result<(SecretString, Option<SecretString>, chrono::Duration), ApiError> {
        let refresh = self
            .oauth
            .keys
            .decrypt_str(&aad(REFRESH_PURPOSE, row.tenant_id), &row.refresh_token)
            .map_err(|e| {
                ApiError::Unavailable(format!("the stored token cannot be opened: {e}"))
            })?;
        let refresh = RefreshToken::new(refresh.to_string());
        let request = self
            .oauth
            .client
            .exchange_refresh_token(&refresh)
            .request_async(&self.oauth.http);
        // Google's refusals (4xx with an error) say nothing about its health.
        let token = self
            .client
            .breaker()
            .call_with(
                |e| !matches!(e, RequestTokenError::ServerResponse(_)),
                request,
            )
            .await
            .map_err(|e| match e {
                OutboundError::Call(RequestTokenError::ServerResponse(e))
                    if *e.error() == BasicErrorResponseType::InvalidGrant =>
                {
                    ApiError::NeedsReconnect
                }
                OutboundError::Call(RequestTokenError::ServerResponse(e)) => ApiError::Refused {
                    status: 400,
                    body: e.error().to_string(),
                },
                OutboundError::Unavailable(_) => ApiError::CircuitOpen,
                OutboundError::Call(e) => ApiError::Unavailable(format!("token refresh: {e}")),
            })?;
        if *token.token_type() != BasicTokenType::Bearer {
            return Err(ApiError::Unavailable(
                "Google sent an unusable token".into(),
            ));
        }
        let expires_in = token
            .expires_in()
            .unwrap_or(Duration::from_secs(3600))
            .min(Duration::from_secs(24 * 3600));
        Ok((
            SecretString::from(token.access_token().secret().clone()),
            token
                .refresh_token()
                .map(|t| SecretString::from(t.secret().clone())),
            chrono::Duration::from_std(expires_in).unwrap_or(chrono::Duration::hours(1)),
        ))
    }

    /// Sends a request with the tenant's token; on a 401 once more with a refreshed one; on
    /// no answer, 429 or 5xx up to [`ATTEMPTS`] times (every call here is idempotent).
    async fn send(
        &self,
        tenant: Uuid,
        make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ApiError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.authorized(tenant, &make).await;
            match result {
                Err(ApiError::Unavailable(_)) if attempt < ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(200 * 4u64.pow(attempt - 1))).await;
                }
                other => return other,
            }
        }
    }

    async fn authorized(
        &self,
        tenant: Uuid,
        make: &impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ApiError> {
        let (row, token) = self.token(tenant, None).await?;
        let first = self
            .client
            .send(make(self.client.http()).bearer_auth(token.expose_secret()))
            .await
            .map_err(http);
        if first.as_ref().err().and_then(ApiError::status) != Some(401) {
            return first;
        }
        let (_, token) = self.token(tenant, Some(&row.access_token)).await?;
        self.client
            .send(make(self.client.http()).bearer_auth(token.expose_secret()))
            .await
            .map_err(http)
    }

    /// `{api}/calendar/v3/calendars/{calendar}/events[/{event}]`, each part escaped.
    fn events_url(&self, calendar: &str, event: Option<&str>) -> reqwest::Url {
        let mut url = reqwest::Url::parse(&format!("{}/calendar/v3", self.api_url))
            .unwrap_or_else(|_| unreachable!("the API address was checked at start-up"));
        if let Ok(mut path) = url.path_segments_mut() {
            path.extend(["calendars", calendar, "events"]);
            if let Some(event) = event {
                path.push(event);
            }
        }
        url
    }

    /// The busy intervals of `calendar` within `[from, to)`.
    pub async fn free_busy(
        &self,
        tenant: Uuid,
        calendar: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>, ApiError> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            calendars: std::collections::HashMap<String, Busy>,
        }
        #[derive(Deserialize)]
        struct Busy {
            #[serde(default)]
            busy: Vec<Interval>,
            #[serde(default)]
            errors: Vec<serde_json::Value>,
        }
        #[derive(Deserialize)]
        struct Interval {
            start: DateTime<Utc>,
            end: DateTime<Utc>,
        }
        let body = json!({
            "timeMin": from.to_rfc3339(),
            "timeMax": to.to_rfc3339(),
            "items": [{ "id": calendar }],
        });
        let url = format!("{}/calendar/v3/freeBusy", self.api_url);
        let answer: Answer = self
            .send(tenant, |http| http.post(&url).json(&body))
            .await?
            .json()
            .await
            .map_err(|e| ApiError::Unavailable(format!("unreadable free/busy: {e}")))?;
        let Some(busy) = answer.calendars.get(calendar) else {
            return Err(ApiError::Unavailable(
                "free/busy left the calendar out".into(),
            ));
        };
        if !busy.errors.is_empty() {
            return Err(ApiError::Refused {
                status: 200,
                body: format!("free/busy: {}", json!(busy.errors)),
            });
        }
        Ok(busy.busy.iter().map(|i| (i.start, i.end)).collect())
    }

    /// Creates the event under its id; an id Google already has is the same event, created
    /// by an earlier attempt.
    pub async fn insert(
        &self,
        tenant: Uuid,
        calendar: &str,
        event: &EventDraft<'_>,
    ) -> Result<(), ApiError> {
        let attendees: Vec<_> = event
            .attendee
            .iter()
            .map(|(email, name)| json!({ "email": email, "displayName": name }))
            .collect();
        let body = json!({
            "id": event.id,
            "summary": event.summary,
            "description": event.description,
            "start": { "dateTime": event.starts_at.to_rfc3339() },
            "end": { "dateTime": event.ends_at.to_rfc3339() },
            "attendees": attendees,
            "extendedProperties": { "private": { BOOKING_PROPERTY: event.booking.to_string() } },
        });
        let mut url = self.events_url(calendar, None);
        url.query_pairs_mut().append_pair("sendUpdates", "none");
        match self
            .send(tenant, |http| http.post(url.clone()).json(&body))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(409) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Moves the event.
    pub async fn patch(
        &self,
        tenant: Uuid,
        calendar: &str,
        event: &str,
        (starts_at, ends_at): (DateTime<Utc>, DateTime<Utc>),
    ) -> Result<(), ApiError> {
        let body = json!({
            "start": { "dateTime": starts_at.to_rfc3339() },
            "end": { "dateTime": ends_at.to_rfc3339() },
        });
        let mut url = self.events_url(calendar, Some(event));
        url.query_pairs_mut().append_pair("sendUpdates", "none");
        self.send(tenant, |http| http.patch(url.clone()).json(&body))
            .await
            .map(|_| ())
    }

    /// Deletes the event; one Google no longer has (404, 410) is deleted already.
    pub async fn delete(&self, tenant: Uuid, calendar: &str, event: &str) -> Result<(), ApiError> {
        let mut url = self.events_url(calendar, Some(event));
        url.query_pairs_mut().append_pair("sendUpdates", "none");
        match self.send(tenant, |http| http.delete(url.clone())).await {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.status(), Some(404 | 410)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One page of the events changed since `sync` (every event when `None`); `Ok(None)` when
    /// Google no longer knows the sync token (410) and a full sync must start over.
    pub async fn changes(
        &self,
        tenant: Uuid,
        calendar: &str,
        sync: Option<&str>,
        page: Option<&str>,
    ) -> Result<Option<Changes>, ApiError> {
        let mut url = self.events_url(calendar, None);
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("maxResults", "250");
            if let Some(sync) = sync {
                query.append_pair("syncToken", sync);
            }
            if let Some(page) = page {
                query.append_pair("pageToken", page);
            }
        }
        match self.send(tenant, |http| http.get(url.clone())).await {
            Ok(response) => Ok(Some(response.json().await.map_err(|e| {
                ApiError::Unavailable(format!("unreadable list of events: {e}"))
            })?)),
            Err(e) if e.status() == Some(410) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
