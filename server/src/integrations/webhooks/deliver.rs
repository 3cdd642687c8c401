//! The `webhook.deliver` job: one signed POST of one event to one endpoint.

use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::header::{CONTENT_TYPE, USER_AGENT};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};
use uuid::Uuid;

use app::types::DeliveryState;

use super::{signature, DELIVER, SECRET_PURPOSE};
use crate::jobs::{JobContext, JobHandler, Permanent};
use crate::outbound::guard;
use crate::secrets::{aad, KeyRing};
use crate::store::webhook_deliveries::{self, Column};
use crate::store::webhook_endpoints;

/// How long an endpoint has to answer (connection included).
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an answer's body the delivery log keeps.
const KEPT_BODY: usize = 1000;
pub const DELIVERIES: &str = "webhook_deliveries_total";

pub struct Deliver {
    http: reqwest::Client,
    keys: KeyRing,
    allow_private: bool,
}

impl Deliver {
    /// `allow_private`: whether endpoints on private and loopback addresses (and plain
    /// `http://`) may be called (`FETCH_ALLOW_PRIVATE`).
    pub fn new(keys: KeyRing, allow_private: bool) -> anyhow::Result<Deliver> {
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(TIMEOUT);
        Ok(Deliver {
            http: guard::guarded(builder, allow_private)?,
            keys,
            allow_private,
        })
    }
}

/// What one attempt came to.
struct Attempt {
    status: Option<u16>,
    body: Option<String>,
    error: Option<String>,
    duration: Duration,
}

impl Attempt {
    fn refused(error: String) -> Attempt {
        Attempt {
            status: None,
            body: None,
            error: Some(error),
            duration: Duration::ZERO,
        }
    }

    fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

#[derive(serde::Deserialize)]
struct Payload {
    delivery_id: Uuid,
}

#[async_trait::async_trait]
impl JobHandler for Deliver {
    fn kind(&self) -> &'static str {
        DELIVER
    }

    fn concurrency(&self) -> usize {
        16
    }

    fn timeout(&self) -> Duration {
        TIMEOUT * 3
    }

    async fn run(&self, ctx: &mut JobContext) -> anyhow::Result<()> {
        let payload: Payload = serde_json::from_value(ctx.payload().clone())
            .map_err(|e| Permanent(format!("the payload names no delivery: {e}")))?;
        let tenant = ctx
            .tenant_id()
            .ok_or_else(|| Permanent("a webhook delivery needs a tenant".into()))?;
        let Some(delivery) = webhook_deliveries::Entity::find_by_id(payload.delivery_id)
            .filter(Column::TenantId.eq(tenant))
            .one(ctx.db())
            .await?
        else {
            return Ok(()); // deleted with its endpoint
        };
        // A failed delivery runs again only when its dead job is retried (Jobs page).
        if delivery.state == DeliveryState::Delivered.as_str() {
            return Ok(());
        }
        let Some(endpoint) = webhook_endpoints::Entity::find_by_id(delivery.endpoint_id)
            .filter(webhook_endpoints::Column::TenantId.eq(tenant))
            .one(ctx.db())
            .await?
        else {
            return Ok(());
        };
        let attempt = if endpoint.enabled {
            self.attempt(&endpoint, &delivery).await
        } else {
            Attempt::refused("the endpoint is disabled".into())
        };
        let last = ctx.is_last_attempt() || !endpoint.enabled;
        let state = match (attempt.succeeded(), last) {
            (true, _) => DeliveryState::Delivered,
            (false, true) => DeliveryState::Failed,
            (false, false) => DeliveryState::Pending,
        };
        let outcome = match state {
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
            DeliveryState::Pending => "retrying",
        };
        metrics::counter!(DELIVERIES, "outcome" => outcome).increment(1);
        if attempt.succeeded() {
            // Recorded with the job's completion, so a delivery is marked delivered once.
            let txn = ctx.transaction().await?;
            record(txn, &delivery, &attempt, state).await?;
            return Ok(());
        }
        if !endpoint.enabled {
            // Disabled on purpose: the delivery is failed, the job is not (no dead letter).
            let txn = ctx.transaction().await?;
            record(txn, &delivery, &attempt, state).await?;
            return Ok(());
        }
        record(ctx.db(), &delivery, &attempt, state).await?;
        let error = attempt.error.unwrap_or_default();
        tracing::info!(delivery = %delivery.id, endpoint = %endpoint.id, %error, "webhook delivery failed");
        anyhow::bail!(error)
    }
}

impl Deliver {
    /// Signs and POSTs the delivery's body.
    async fn attempt(
        &self,
        endpoint: &webhook_endpoints::Model,
        delivery: &webhook_deliveries::Model,
    ) -> Attempt {
        if let Err(e) = super::service::check_url(&endpoint.url, self.allow_private) {
            return Attempt::refused(format!("the endpoint's URL {e}"));
        }
        let secret = match self
            .keys
            .decrypt_str(&aad(SECRET_PURPOSE, endpoint.tenant_id), &endpoint.secret)
        {
            Ok(secret) => secret,
            Err(e) => {
                tracing::error!(endpoint = %endpoint.id, error = %e, "a webhook secret does not open");
                return Attempt::refused("the endpoint's secret cannot be opened".into());
            }
        };
        let body = serde_json::to_vec(&delivery.payload).unwrap_or_default();
        let timestamp = Utc::now().timestamp();
        let request = self
            .http
            .post(&endpoint.url)
            .header(CONTENT_TYPE, "application/json")
            .header(
                USER_AGENT,
                concat!("agent-platform-webhooks/", env!("CARGO_PKG_VERSION")),
            )
            .header("X-Webhook-Id", delivery.event_id.to_string())
            .header("X-Webhook-Delivery", delivery.id.to_string())
            .header("X-Webhook-Event", delivery.event_type.as_str())
            .header("X-Webhook-Timestamp", timestamp.to_string())
            .header("X-Webhook-Signature", signature(&secret, timestamp, &body))
            .body(body);
        let started = Instant::now();
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                return Attempt {
                    duration: started.elapsed(),
                    ..Attempt::refused(transport_error(&e))
                }
            }
        };
        let status = response.status();
        let body = read_start(response).await;
        Attempt {
            status: Some(status.as_u16()),
            error: (!status.is_success()).then(|| format!("the endpoint answered {status}")),
            body: Some(body),
            duration: started.elapsed(),
        }
    }
}

/// Why a request got no answer, without the addresses a name resolved to.
fn transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("no answer within {} seconds", TIMEOUT.as_secs())
    } else if e.is_connect() {
        let refused = std::error::Error::source(e)
            .map(|s| s.to_string())
            .filter(|s| s.contains("public address") || s.contains("may not be used"));
        refused.unwrap_or_else(|| "could not connect to the endpoint".into())
    } else if e.is_redirect() || e.status().is_some_and(|s| s.is_redirection()) {
        "the endpoint redirected; redirects are not followed".into()
    } else {
        "the request failed".into()
    }
}

/// The start of the answer's body, read no further than needed.
async fn read_start(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < KEPT_BODY * 4 {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    text.chars().take(KEPT_BODY).collect()
}

async fn record(
    conn: &impl ConnectionTrait,
    delivery: &webhook_deliveries::Model,
    attempt: &Attempt,
    state: DeliveryState,
) -> Result<(), DbErr> {
    let now = Utc::now();
    let mut update = webhook_deliveries::Entity::update_many()
        .col_expr(Column::State, Expr::value(state.as_str()))
        .col_expr(Column::Attempts, Expr::col(Column::Attempts).add(1))
        .col_expr(
            Column::ResponseStatus,
            Expr::value(attempt.status.map(|s| s as i16)),
        )
        .col_expr(Column::ResponseBody, Expr::value(attempt.body.clone()))
        .col_expr(
            Column::LastError,
            Expr::value(
                attempt
                    .error
                    .as_ref()
                    .map(|e| e.chars().take(KEPT_BODY).collect::<String>()),
            ),
        )
        .col_expr(
            Column::DurationMs,
            Expr::value(i32::try_from(attempt.duration.as_millis()).unwrap_or(i32::MAX)),
        )
        .col_expr(Column::LastAttemptAt, Expr::value(now))
        .filter(Column::Id.eq(delivery.id));
    if state == DeliveryState::Delivered {
        update = update.col_expr(Column::DeliveredAt, Expr::value(now));
    }
    update.exec(conn).await.map(|_| ())
}
