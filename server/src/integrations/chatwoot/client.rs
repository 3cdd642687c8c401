//! Chatwoot's application API, as the agent bot: messages and private notes
//! (`POST /api/v1/accounts/{account}/conversations/{conversation}/messages`) and handing a
//! conversation to people (`…/toggle_status` with `open`), authenticated with the bot's
//! `api_access_token`. A tenant chooses the installation's URL, so requests go through the
//! guarded client (no internal addresses, no redirects) and each connection has its own
//! circuit (`chatwoot:<tenant>`): one tenant's broken installation never fails another's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use uuid::Uuid;

use crate::config::CircuitConfig;
use crate::outbound::{guard, Breaker, HttpError, OutboundError};

/// A connection as the client uses it.
pub struct Conn {
    pub tenant_id: Uuid,
    pub base_url: String,
    pub account_id: i64,
    pub token: SecretString,
}

#[derive(Clone)]
pub struct ChatwootApi {
    http: reqwest::Client,
    circuit: CircuitConfig,
    breakers: Arc<Mutex<HashMap<Uuid, Breaker>>>,
}

impl ChatwootApi {
    /// `allow_private`: whether installations on private addresses (and plain `http://`) may
    /// be called (`FETCH_ALLOW_PRIVATE`).
    pub fn new(circuit: CircuitConfig, allow_private: bool) -> anyhow::Result<ChatwootApi> {
        let builder = crate::llm::http_client()
            .connect_timeout(Duration::from_secs(5))
            .timeout(circuit.timeout);
        Ok(ChatwootApi {
            http: guard::guarded(builder, allow_private)?,
            circuit,
            breakers: Arc::default(),
        })
    }

    fn breaker(&self, tenant: Uuid) -> Breaker {
        let mut breakers = self
            .breakers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        breakers
            .entry(tenant)
            .or_insert_with(|| Breaker::new(&format!("chatwoot:{tenant}"), self.circuit))
            .clone()
    }

    fn url(conn: &Conn, conversation: i64, rest: &str) -> String {
        format!(
            "{}/api/v1/accounts/{}/conversations/{conversation}/{rest}",
            conn.base_url.trim_end_matches('/'),
            conn.account_id
        )
    }

    async fn post(
        &self,
        conn: &Conn,
        url: String,
        body: serde_json::Value,
    ) -> Result<(), OutboundError<HttpError>> {
        let request = self
            .http
            .post(url)
            .header("api_access_token", conn.token.expose_secret())
            .json(&body);
        self.breaker(conn.tenant_id)
            .call_with(HttpError::is_service_failure, async move {
                let response = request.send().await?;
                let status = response.status();
                if status.is_success() {
                    return Ok(());
                }
                let mut body = response.text().await.unwrap_or_default();
                body.truncate(body.floor_char_boundary(300));
                Err(HttpError::Status {
                    status: status.as_u16(),
                    body,
                })
            })
            .await
    }

    /// A message to the customer, or (`private`) a note only Chatwoot's agents see.
    pub async fn message(
        &self,
        conn: &Conn,
        conversation: i64,
        content: &str,
        private: bool,
    ) -> Result<(), OutboundError<HttpError>> {
        let body = json!({
            "content": content,
            "message_type": "outgoing",
            "private": private,
            "content_type": "text",
        });
        self.post(conn, Self::url(conn, conversation, "messages"), body)
            .await
    }

    /// Sets the conversation's status: `open` hands it to people, `pending` to the bot.
    pub async fn set_status(
        &self,
        conn: &Conn,
        conversation: i64,
        status: &str,
    ) -> Result<(), OutboundError<HttpError>> {
        self.post(
            conn,
            Self::url(conn, conversation, "toggle_status"),
            json!({ "status": status }),
        )
        .await
    }
}
