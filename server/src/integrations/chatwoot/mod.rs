//! Chatwoot as a channel. A tenant connects one Chatwoot inbox (its installation, account,
//! inbox and agent bot token; `service`); Chatwoot posts the inbox's events to
//! `/hooks/chatwoot/{connection}` (`hook`), signed with a secret we made. The hook verifies,
//! drops repeats and answers at once; an `chatwoot.event` job runs the agents' turn (`job`)
//! and `chatwoot.send` jobs answer through Chatwoot's API (`client`).
//!
//! Which messages the bot takes ([`interpret`]): a customer's (`incoming`, not private, sent by
//! a contact) in the connected inbox, which it answers, and a team member's (`outgoing`, not
//! private, sent by a `user`), which the transcript keeps as a person's message. Its own answers
//! come back as `outgoing` from an `agent_bot` and are dropped, so the bot cannot talk to
//! itself. While a person owns the conversation (Chatwoot status `open`) the bot stays silent;
//! when it goes back to `pending` the bot answers again.

pub mod bench;
pub mod client;
pub mod hook;
pub mod job;
pub mod service;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use app::services::{Access, Actor};
use app::types::{Channel, ConversationStatus};

use crate::secrets::{self, KeyRing, Rotation};
use crate::store::{chatwoot_connections, chatwoot_conversations, conversations};

/// What the agent bot's token is bound to (with the tenant id).
pub const TOKEN_PURPOSE: &str = "chatwoot.token";
/// What the webhook secret is bound to (with the tenant id).
pub const SECRET_PURPOSE: &str = "chatwoot.secret";
/// The job that runs a turn for a customer's message (or follows a status change).
pub const EVENT: &str = "chatwoot.event";
/// The job that sends one thing to Chatwoot (a message, a private note, opening the
/// conversation for people).
pub const SEND: &str = "chatwoot.send";
/// How long a delivery id is remembered, to drop repeats.
pub const DELIVERY_TTL: Duration = Duration::from_secs(24 * 3600);
/// Voice messages transcribed per customer message.
pub const MAX_AUDIO: usize = 3;

/// Where Chatwoot posts a connection's events, below the console's address.
pub fn hook_path(connection: Uuid) -> String {
    format!("/hooks/chatwoot/{connection}")
}

/// What a job needs of an accepted event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Inbound {
    pub connection_id: Uuid,
    /// Chatwoot's conversation (the number in its URLs).
    pub conversation: i64,
    /// Chatwoot's status of it: `pending` (the bot's), `open` (people's), `resolved`, `snoozed`.
    pub status: Option<String>,
    pub contact: Option<i64>,
    pub contact_name: Option<String>,
    /// A customer's message; `None` for a status change.
    pub message: Option<InboundMessage>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InboundMessage {
    /// Chatwoot's message id.
    pub id: Option<i64>,
    pub content: String,
    /// Voice messages to transcribe (at most [`MAX_AUDIO`]).
    pub audio: Vec<String>,
    /// Written by this person of the team in Chatwoot, not by the customer: kept in the
    /// transcript as an operator's message, never answered.
    #[serde(default)]
    pub by_agent: Option<String>,
}

/// Why an event is not taken (answered 200 all the same: Chatwoot need not send it again).
#[derive(Debug, PartialEq, Eq)]
pub enum Ignored {
    /// An event the channel does not use (typing, contact updates…).
    Event,
    /// The bot's own answer, a private note, a template or activity message.
    NotFromCustomer,
    /// Another inbox or account than the connection's.
    OtherInbox,
}

fn int(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

fn text(v: &Value) -> Option<String> {
    v.as_str()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Reads a Chatwoot webhook body: the customer's message or a status change the bot must
/// follow, or why it is ignored.
pub fn interpret(
    connection: &chatwoot_connections::Model,
    body: &Value,
) -> Result<Inbound, Ignored> {
    let event = body["event"].as_str().unwrap_or_default();
    let account = int(&body["account"]["id"]);
    if account.is_some_and(|a| a != connection.account_id) {
        return Err(Ignored::OtherInbox);
    }
    match event {
        "message_created" => {
            let conversation = &body["conversation"];
            let inbox = int(&body["inbox"]["id"]).or_else(|| int(&conversation["inbox_id"]));
            if inbox.is_some_and(|i| i != connection.inbox_id) {
                return Err(Ignored::OtherInbox);
            }
            // `message_type` is a name in webhooks and a number (0 = incoming, 1 = outgoing)
            // in the API.
            let kind = |name: &str, number: i64| {
                matches!(&body["message_type"], Value::String(t) if t == name)
                    || body["message_type"].as_i64() == Some(number)
            };
            let private = body["private"].as_bool().unwrap_or(false);
            let sender = &body["sender"];
            let sender_type = sender["type"].as_str().map(str::to_ascii_lowercase);
            let from_contact = sender_type.as_deref().is_none_or(|t| t == "contact");
            // A person of the team answering in Chatwoot (not the bot, whose answers come back
            // as outgoing messages from an `agent_bot`).
            let by_agent = kind("outgoing", 1) && sender_type.as_deref() == Some("user");
            if private || !(kind("incoming", 0) && from_contact || by_agent) {
                return Err(Ignored::NotFromCustomer);
            }
            let contact = if by_agent {
                &conversation["meta"]["sender"]
            } else {
                sender
            };
            let conversation_id = int(&conversation["id"]).ok_or(Ignored::Event)?;
            let audio = body["attachments"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .filter(|a| a["file_type"].as_str() == Some("audio"))
                        .filter_map(|a| text(&a["data_url"]))
                        .take(MAX_AUDIO)
                        .collect()
                })
                .unwrap_or_default();
            let content = text(&body["content"]).unwrap_or_default();
            Ok(Inbound {
                connection_id: connection.id,
                conversation: conversation_id,
                status: text(&conversation["status"]),
                contact: int(&contact["id"]),
                contact_name: text(&contact["name"]),
                message: Some(InboundMessage {
                    id: int(&body["id"]),
                    content,
                    audio,
                    by_agent: by_agent.then(|| text(&sender["name"]).unwrap_or_default()),
                }),
            })
        }
        "conversation_status_changed" => {
            let inbox = int(&body["inbox_id"]);
            if inbox.is_some_and(|i| i != connection.inbox_id) {
                return Err(Ignored::OtherInbox);
            }
            let sender = &body["meta"]["sender"];
            Ok(Inbound {
                connection_id: connection.id,
                conversation: int(&body["id"]).ok_or(Ignored::Event)?,
                status: text(&body["status"]),
                contact: int(&sender["id"]),
                contact_name: text(&sender["name"]),
                message: None,
            })
        }
        _ => Err(Ignored::Event),
    }
}

/// What a person did in the console to a conversation that came from Chatwoot.
pub enum Mirror<'a> {
    /// An operator's reply: the customer gets it in Chatwoot.
    Reply(&'a str),
    /// Taken over (`human`: open for people in Chatwoot) or handed back (`bot`: pending).
    Status(ConversationStatus),
}

/// Mirrors `what` in Chatwoot when `conversation` came from there and the change is not
/// Chatwoot's own (which would echo it back): queues a `chatwoot.send` on `conn`, the caller's
/// transaction, after its first write. Costs nothing for other channels.
pub async fn mirror(
    conn: &impl ConnectionTrait,
    access: &Access,
    conversation: &conversations::Model,
    what: Mirror<'_>,
) -> Result<(), DbErr> {
    if conversation.channel != Channel::Chatwoot.as_str()
        || matches!(access.actor, Actor::Channel { .. })
    {
        return Ok(());
    }
    let action = match what {
        Mirror::Reply(content) => job::Action::Message {
            content: content.to_string(),
        },
        Mirror::Status(ConversationStatus::Human) => job::Action::Status {
            status: "open".into(),
        },
        Mirror::Status(ConversationStatus::Bot) => job::Action::Status {
            status: "pending".into(),
        },
        Mirror::Status(_) => return Ok(()),
    };
    let Some(map) = chatwoot_conversations::Entity::find()
        .filter(chatwoot_conversations::Column::ConversationId.eq(conversation.id))
        .filter(chatwoot_conversations::Column::TenantId.eq(access.tenant_id))
        .one(conn)
        .await?
    else {
        return Ok(());
    };
    job::queue(
        conn,
        access.tenant_id,
        job::Outgoing {
            connection_id: map.connection_id,
            conversation: map.chatwoot_id,
            actions: vec![action],
        },
    )
    .await
}

/// Re-encrypts every connection's token and secret not yet under the current key.
pub async fn rotate(
    db: &sea_orm::DatabaseConnection,
    keys: &KeyRing,
) -> Result<Rotation, sea_orm::DbErr> {
    use chatwoot_connections::{Column, Entity};
    let mut rotation = secrets::rotate_column::<Entity>(
        db,
        keys,
        "Chatwoot token",
        TOKEN_PURPOSE,
        (Column::Id, Column::TenantId, Column::Token),
    )
    .await?;
    rotation.add(
        secrets::rotate_column::<Entity>(
            db,
            keys,
            "Chatwoot webhook secret",
            SECRET_PURPOSE,
            (Column::Id, Column::TenantId, Column::Secret),
        )
        .await?,
    );
    Ok(rotation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn connection() -> chatwoot_connections::Model {
        let now = chrono::Utc::now();
        chatwoot_connections::Model {
            id: Uuid::nil(),
            tenant_id: Uuid::nil(),
            base_url: "https://chat.example".into(),
            account_id: 1,
            inbox_id: 7,
            token: String::new(),
            secret: String::new(),
            enabled: true,
            last_event_at: None,
            last_error: None,
            last_error_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    fn message(message_type: Value, sender_type: &str, private: bool) -> Value {
        json!({
            "event": "message_created", "id": 501, "content": " Hello there ",
            "message_type": message_type, "private": private,
            "sender": { "id": 42, "name": "Ana", "type": sender_type },
            "conversation": { "id": 12, "status": "pending", "inbox_id": 7 },
            "account": { "id": 1 }, "inbox": { "id": 7 },
            "attachments": [
                { "file_type": "image", "data_url": "https://chat.example/i.png" },
                { "file_type": "audio", "data_url": "https://chat.example/v.ogg" }
            ]
        })
    }

    #[test]
    fn a_customers_message_is_taken_with_its_voice_notes() {
        let inbound =
            interpret(&connection(), &message(json!("incoming"), "contact", false)).unwrap();
        assert_eq!(inbound.conversation, 12);
        assert_eq!(inbound.status.as_deref(), Some("pending"));
        assert_eq!(inbound.contact, Some(42));
        let said = inbound.message.unwrap();
        assert_eq!(said.content, "Hello there");
        assert_eq!(said.id, Some(501));
        assert_eq!(said.audio, vec!["https://chat.example/v.ogg".to_string()]);
        // The API's numeric form of `incoming` too.
        assert!(interpret(&connection(), &message(json!(0), "contact", false)).is_ok());
    }

    #[test]
    fn the_bot_never_takes_its_own_or_an_agents_or_a_private_message() {
        let c = connection();
        for (kind, sender, private) in [
            (json!("outgoing"), "agent_bot", false),
            (json!("outgoing"), "user", true),
            (json!("activity"), "contact", false),
            (json!("template"), "contact", false),
            (json!("incoming"), "contact", true),
            (json!("incoming"), "user", false),
        ] {
            assert_eq!(
                interpret(&c, &message(kind.clone(), sender, private)),
                Err(Ignored::NotFromCustomer),
                "{kind} {sender} {private}"
            );
        }
    }

    #[test]
    fn a_team_members_answer_is_kept_for_the_transcript_never_answered() {
        for kind in [json!("outgoing"), json!(1)] {
            let mut body = message(kind, "user", false);
            body["sender"]["name"] = json!("Rita");
            body["conversation"]["meta"] = json!({ "sender": { "id": 42, "name": "Ana" } });
            let inbound = interpret(&connection(), &body).unwrap();
            assert_eq!(inbound.contact_name.as_deref(), Some("Ana"));
            assert_eq!(inbound.message.unwrap().by_agent.as_deref(), Some("Rita"));
        }
        let customer = interpret(&connection(), &message(json!("incoming"), "contact", false));
        assert_eq!(customer.unwrap().message.unwrap().by_agent, None);
    }

    #[test]
    fn other_inboxes_and_events_are_ignored() {
        let c = connection();
        let mut other = message(json!("incoming"), "contact", false);
        other["inbox"]["id"] = json!(8);
        assert_eq!(interpret(&c, &other), Err(Ignored::OtherInbox));
        let mut account = message(json!("incoming"), "contact", false);
        account["account"]["id"] = json!(2);
        assert_eq!(interpret(&c, &account), Err(Ignored::OtherInbox));
        assert_eq!(
            interpret(&c, &json!({ "event": "conversation_typing_on" })),
            Err(Ignored::Event)
        );
        let status = json!({
            "event": "conversation_status_changed", "id": 12, "status": "open", "inbox_id": 7,
            "meta": { "sender": { "id": 42, "name": "Ana" } }, "account": { "id": 1 }
        });
        let inbound = interpret(&c, &status).unwrap();
        assert_eq!(
            (inbound.conversation, inbound.status.as_deref()),
            (12, Some("open"))
        );
        assert!(inbound.message.is_none());
    }
}
