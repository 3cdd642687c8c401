//! Tells a widget's event stream that its conversation changed (an operator's reply, a
//! take-over, an answer written from another tab), on this instance at once and on the others
//! within a poll: a change stamps the conversation's entry in the shared store, and streams
//! look at the stamp when woken locally or every [`POLL`].

use std::time::Duration;

use tokio::sync::broadcast;
use uuid::Uuid;

use crate::kv::{Kv, Scope};

/// How often a stream asks the shared store whether another instance changed its conversation.
pub const POLL: Duration = Duration::from_secs(2);
const AREA: &str = "live";
const KEEP: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone)]
pub struct Live {
    kv: Kv,
    local: broadcast::Sender<Uuid>,
}

impl Live {
    pub fn new(kv: Kv) -> Live {
        Live {
            kv,
            local: broadcast::channel(1024).0,
        }
    }

    /// Marks `conversation` changed: the stamp first, then the local wake-up, so a woken
    /// stream finds the new stamp. Failures are logged (streams then notice on this instance
    /// only).
    pub async fn changed(&self, tenant: Uuid, conversation: Uuid) {
        let stamp = chrono::Utc::now().timestamp_micros();
        if let Err(e) = self
            .kv
            .set(
                Scope::Tenant(tenant),
                AREA,
                &conversation.to_string(),
                &stamp,
                KEEP,
            )
            .await
        {
            tracing::warn!(error = %e, "a conversation change could not be published");
        }
        let _ = self.local.send(conversation);
    }

    /// The stamp of the last change, if any is known.
    pub async fn stamp(&self, tenant: Uuid, conversation: Uuid) -> Option<i64> {
        self.kv
            .get(Scope::Tenant(tenant), AREA, &conversation.to_string())
            .await
            .ok()
            .flatten()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Uuid> {
        self.local.subscribe()
    }
}
