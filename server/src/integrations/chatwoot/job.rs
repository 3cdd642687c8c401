//! The Chatwoot channel's jobs. `chatwoot.event` follows Chatwoot's status of the conversation
//! (`open`: people answer, the bot is silent; `pending`: the bot's again), turns voice notes
//! into text, runs the agents' turn and queues what goes back; `chatwoot.send` sends it, one
//! call at a time in order (each job queues the next when it succeeds), so a retried call
//! never repeats the ones before it.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, QueryOrder};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use app::error::AppError;
use app::services::{Access, Actor, ConversationService};
use app::types::{
    Area, Channel, ConversationStatus, CreateConversation, Level, MessageRole, OperatorReply,
    PostMessage, Scope,
};

use super::client::{ChatwootApi, Conn};
use super::{Inbound, InboundMessage, EVENT, SEND, TOKEN_PURPOSE};
use crate::jobs::{self, JobContext, JobHandler, NewJob, Permanent};
use crate::llm::transcribe::{Transcriber, MAX_AUDIO_BYTES};
use crate::outbound::{HttpError, OutboundError};
use crate::rag::fetch::{self, Accept, FetchPolicy};
use crate::secrets::{aad, KeyRing};
use crate::store::{chatwoot_connections, chatwoot_conversations, conversations, messages};

/// The longest customer message the agents take (`PostMessage`'s limit).
const MAX_MESSAGE_CHARS: usize = 8000;

/// One call to Chatwoot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// A message to the customer.
    Message { content: String },
    /// A private note for Chatwoot's agents.
    Note { content: String },
    /// Set Chatwoot's status of the conversation: `open` hands it to people, `pending` back
    /// to the bot (`toggle_status`).
    Status { status: String },
}

/// What a `chatwoot.send` job does: `actions[0]`, then queues the rest.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Outgoing {
    pub connection_id: Uuid,
    pub conversation: i64,
    pub actions: Vec<Action>,
}

/// Queues `outgoing` (nothing when it has no action), on `conn` (the caller's transaction).
pub async fn queue(
    conn: &impl ConnectionTrait,
    tenant: Uuid,
    outgoing: Outgoing,
) -> Result<(), DbErr> {
    if outgoing.actions.is_empty() {
        return Ok(());
    }
    jobs::enqueue(
        conn,
        NewJob::new(
            Some(tenant),
            SEND,
            serde_json::to_value(outgoing).unwrap_or_default(),
        )
        .max_attempts(8),
    )
    .await
    .map(|_| ())
}

fn permanent(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Permanent(message.into()))
}

/// A service error as a job failure: what no retry can mend ends the job.
fn job_error(e: AppError) -> anyhow::Error {
    match e {
        AppError::Validation(_) | AppError::NotFound(_) | AppError::Forbidden(_) => {
            permanent(e.to_string())
        }
        other => anyhow::anyhow!(other.to_string()),
    }
}

/// The connection of a job, if it is still there.
async fn connection(
    db: &impl ConnectionTrait,
    tenant: Uuid,
    id: Uuid,
) -> Result<Option<chatwoot_connections::Model>, DbErr> {
    chatwoot_connections::Entity::find_by_id(id)
        .filter(chatwoot_connections::Column::TenantId.eq(tenant))
        .one(db)
        .await
}

/// A file name with an extension the transcription service can read the format from.
fn audio_name(fetched: &fetch::Fetched) -> String {
    if fetched
        .filename
        .rsplit_once('.')
        .is_some_and(|(_, ext)| ext.len() <= 5)
    {
        return fetched.filename.clone();
    }
    let essence = fetched
        .content_type
        .as_deref()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let ext = match essence.as_str() {
        "audio/mpeg" | "audio/mp3" => "mp3",
        "audio/wav" | "audio/x-wav" | "audio/wave" => "wav",
        "audio/webm" | "video/webm" => "webm",
        "audio/mp4" | "audio/m4a" | "audio/x-m4a" => "m4a",
        "audio/flac" => "flac",
        _ => "ogg",
    };
    format!("voice.{ext}")
}

pub struct ChatwootEvent {
    conversations: Arc<dyn ConversationService>,
    transcriber: Option<Transcriber>,
    allow_private: bool,
    console_url: String,
}

impl ChatwootEvent {
    pub fn new(
        conversations: Arc<dyn ConversationService>,
        transcriber: Option<Transcriber>,
        allow_private: bool,
        console_url: String,
    ) -> ChatwootEvent {
        ChatwootEvent {
            conversations,
            transcriber,
            allow_private,
            console_url,
        }
    }

    /// Our conversation for Chatwoot's, started on its first message.
    async fn conversation(
        &self,
        db: &DatabaseConnection,
        access: &Access,
        inbound: &Inbound,
    ) -> Result<Option<Uuid>, anyhow::Error> {
        let known = chatwoot_conversations::Entity::find_by_id((
            inbound.connection_id,
            inbound.conversation,
        ))
        .one(db)
        .await?;
        if let Some(known) = known {
            return Ok(Some(known.conversation_id));
        }
        if inbound
            .message
            .as_ref()
            .is_none_or(|m| m.by_agent.is_some())
        {
            // A status change or a team member's message in a conversation the bot never saw.
            return Ok(None);
        }
        let title = inbound
            .contact_name
            .as_deref()
            .map(|n| n.chars().take(100).collect::<String>())
            .unwrap_or_else(|| format!("Chatwoot #{}", inbound.conversation));
        let created = self
            .conversations
            .create_conversation(
                access,
                CreateConversation {
                    channel: Some(Channel::Chatwoot),
                    title: Some(title),
                    history: Vec::new(),
                },
            )
            .await
            .map_err(job_error)?;
        chatwoot_conversations::Entity::insert(chatwoot_conversations::ActiveModel {
            connection_id: Set(inbound.connection_id),
            chatwoot_id: Set(inbound.conversation),
            tenant_id: Set(access.tenant_id),
            conversation_id: Set(created.id),
            contact_id: Set(inbound.contact),
            created_at: Set(Utc::now()),
        })
        .on_conflict(
            OnConflict::columns([
                chatwoot_conversations::Column::ConnectionId,
                chatwoot_conversations::Column::ChatwootId,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
        let winner = chatwoot_conversations::Entity::find_by_id((
            inbound.connection_id,
            inbound.conversation,
        ))
        .one(db)
        .await?
        .map(|m| m.conversation_id);
        if winner != Some(created.id) {
            // Another job started it first: ours stays empty, so it goes.
            conversations::Entity::delete_many()
                .filter(conversations::Column::Id.eq(created.id))
                .filter(conversations::Column::TenantId.eq(access.tenant_id))
                .exec(db)
                .await?;
        }
        Ok(winner)
    }

    /// Follows Chatwoot: `open` means people answer (the bot is silent), `pending` that the
    /// bot answers again. Returns the status afterwards.
    async fn follow_status(
        &self,
        db: &DatabaseConnection,
        access: &Access,
        id: Uuid,
        chatwoot: Option<&str>,
    ) -> Result<ConversationStatus, anyhow::Error> {
        let row = conversations::Entity::find_by_id(id)
            .filter(conversations::Column::TenantId.eq(access.tenant_id))
            .one(db)
            .await?
            .ok_or_else(|| permanent("the conversation is gone"))?;
        let status = ConversationStatus::parse(&row.status).unwrap_or(ConversationStatus::Bot);
        let changed = match (chatwoot, status) {
            (Some("open"), ConversationStatus::Bot | ConversationStatus::WaitingHuman) => {
                Some(self.conversations.take_over(access, id).await)
            }
            (Some("pending"), ConversationStatus::Human | ConversationStatus::WaitingHuman) => {
                Some(self.conversations.hand_back(access, id).await)
            }
            _ => None,
        };
        Ok(match changed {
            Some(Ok(conv)) => conv.status,
            Some(Err(AppError::Conflict(_))) | None => status,
            Some(Err(e)) => return Err(job_error(e)),
        })
    }

    /// The customer's words: the text, then what each voice note says.
    async fn words(&self, message: &InboundMessage) -> Result<String, anyhow::Error> {
        let mut parts = vec![message.content.clone()];
        if let Some(transcriber) = &self.transcriber {
            let policy = FetchPolicy {
                max_bytes: MAX_AUDIO_BYTES,
                allow_private: self.allow_private,
                timeout: Duration::from_secs(60),
                max_redirects: 5,
                accept: Accept::Audio,
            };
            for url in &message.audio {
                let fetched = match fetch::fetch(url, &policy).await {
                    Ok(fetched) => fetched,
                    Err(e) if e.is_transient() => anyhow::bail!("downloading a voice note: {e}"),
                    Err(e) => {
                        tracing::warn!(error = %e, "a voice note could not be downloaded");
                        continue;
                    }
                };
                let name = audio_name(&fetched);
                let text = transcriber.transcribe(&name, fetched.bytes).await?;
                parts.push(text);
            }
        }
        let words = parts
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        Ok(words.chars().take(MAX_MESSAGE_CHARS).collect())
    }

    /// On a retry: the answer of a turn an earlier attempt already ran for `content` (the
    /// attempt failed after the turn was saved), so it is not run twice.
    async fn earlier_answer(
        &self,
        ctx: &JobContext,
        id: Uuid,
        content: &str,
    ) -> Result<Option<Option<String>>, DbErr> {
        let asked = messages::Entity::find()
            .filter(messages::Column::ConversationId.eq(id))
            .filter(messages::Column::Role.eq(MessageRole::User.as_str()))
            .filter(messages::Column::Content.eq(content))
            .filter(messages::Column::CreatedAt.gte(ctx.enqueued_at()))
            .order_by_desc(messages::Column::Id)
            .one(ctx.db())
            .await?;
        let Some(asked) = asked else {
            return Ok(None);
        };
        let answer = messages::Entity::find()
            .filter(messages::Column::ConversationId.eq(id))
            .filter(messages::Column::Id.gt(asked.id))
            .filter(messages::Column::Role.eq(MessageRole::Assistant.as_str()))
            .order_by_asc(messages::Column::Id)
            .one(ctx.db())
            .await?;
        Ok(Some(answer.map(|m| m.content)))
    }

    fn handoff_note(
        &self,
        inbound: &Inbound,
        id: Uuid,
        agent: &str,
        reason: &str,
        said: &str,
    ) -> String {
        let said: String = said.chars().take(500).collect();
        let who = inbound.contact_name.as_deref().unwrap_or("The customer");
        format!(
            "Handed over by the {agent} agent. Reason: {reason}.\n{who} last wrote: \"{said}\"\nTranscript and steps: {}/conversations?open={id}",
            self.console_url.trim_end_matches('/')
        )
    }
}

#[async_trait::async_trait]
impl JobHandler for ChatwootEvent {
    fn kind(&self) -> &'static str {
        EVENT
    }

    fn concurrency(&self) -> usize {
        8
    }

    async fn run(&self, ctx: &mut JobContext) -> anyhow::Result<()> {
        let inbound: Inbound = serde_json::from_value(ctx.payload().clone())
            .map_err(|e| permanent(format!("malformed payload: {e}")))?;
        let tenant = ctx
            .tenant_id()
            .ok_or_else(|| permanent("a Chatwoot event needs a tenant"))?;
        let Some(connection) = connection(ctx.db(), tenant, inbound.connection_id).await? else {
            return Ok(()); // Disconnected meanwhile.
        };
        if !connection.enabled {
            return Ok(());
        }
        let customer = match inbound.contact {
            Some(contact) => format!("{}/{contact}", connection.id),
            None => format!("{}/c{}", connection.id, inbound.conversation),
        };
        let access = Access {
            tenant_id: tenant,
            actor: Actor::Channel {
                channel: Channel::Chatwoot,
                customer,
            },
            role: None,
            scopes: vec![Scope {
                area: Area::Conversations,
                level: Level::Write,
            }],
            ip: None,
        };
        let db = ctx.db().clone();
        let Some(id) = self.conversation(&db, &access, &inbound).await? else {
            return Ok(());
        };
        let status = self
            .follow_status(&db, &access, id, inbound.status.as_deref())
            .await?;
        if status == ConversationStatus::Closed {
            if inbound
                .message
                .as_ref()
                .is_some_and(|m| m.by_agent.is_none())
            {
                return Err(permanent(
                    "the conversation was closed in the console; the bot does not answer it",
                ));
            }
            return Ok(());
        }
        let mut actions = Vec::new();
        if let Some(message) = inbound.message.as_ref().filter(|m| m.by_agent.is_some()) {
            // A person answered in Chatwoot: the transcript keeps it, the bot stays out.
            if !message.content.is_empty() {
                let reply = OperatorReply {
                    content: message.content.chars().take(MAX_MESSAGE_CHARS).collect(),
                };
                self.conversations
                    .operator_reply(&access, id, reply)
                    .await
                    .map_err(job_error)?;
            }
        } else if let Some(message) = &inbound.message {
            let content = self.words(message).await?;
            if content.is_empty() {
                if !message.audio.is_empty() && status == ConversationStatus::Bot {
                    let why = if self.transcriber.is_some() {
                        "it could not be downloaded"
                    } else {
                        "no transcription service is configured (TRANSCRIBE_URL)"
                    };
                    actions.push(Action::Note {
                        content: format!(
                            "A voice message arrived, but {why}, so the bot could not answer it."
                        ),
                    });
                }
            } else {
                let earlier = if ctx.attempt() > 1 {
                    self.earlier_answer(ctx, id, &content).await?
                } else {
                    None
                };
                match earlier {
                    Some(answer) => {
                        actions.extend(answer.map(|content| Action::Message { content }))
                    }
                    None => {
                        let turn = self
                            .conversations
                            .post_message(
                                &access,
                                id,
                                PostMessage {
                                    content: content.clone(),
                                    stream: false,
                                },
                                Arc::new(|_| {}),
                            )
                            .await
                            .map_err(job_error)?;
                        if let Some(reply) = turn.reply {
                            actions.push(Action::Message {
                                content: reply.content,
                            });
                        }
                        let handed_over = status == ConversationStatus::Bot
                            && turn.conversation.status == ConversationStatus::WaitingHuman;
                        if handed_over {
                            let reason = turn
                                .steps
                                .iter()
                                .find_map(|s| s.detail.handoff.clone())
                                .unwrap_or_else(|| "the customer asked for a person".into());
                            let note = self.handoff_note(
                                &inbound,
                                id,
                                &turn.conversation.agent,
                                &reason,
                                &content,
                            );
                            actions.push(Action::Status {
                                status: "open".into(),
                            });
                            actions.push(Action::Note { content: note });
                        }
                    }
                }
            }
        }
        let txn = ctx.transaction().await?;
        chatwoot_connections::Entity::update_many()
            .col_expr(
                chatwoot_connections::Column::LastEventAt,
                Expr::value(Utc::now()),
            )
            .filter(chatwoot_connections::Column::Id.eq(connection.id))
            .exec(txn)
            .await?;
        queue(
            txn,
            tenant,
            Outgoing {
                connection_id: connection.id,
                conversation: inbound.conversation,
                actions,
            },
        )
        .await?;
        Ok(())
    }
}

pub struct ChatwootSend {
    api: ChatwootApi,
    keys: KeyRing,
}

impl ChatwootSend {
    pub fn new(api: ChatwootApi, keys: KeyRing) -> ChatwootSend {
        ChatwootSend { api, keys }
    }
}

/// Records a failure to reach Chatwoot on the connection (shown in the console).
async fn record_error(db: &impl ConnectionTrait, id: Uuid, error: &str) -> Result<(), DbErr> {
    let error: String = error.chars().take(1000).collect();
    chatwoot_connections::Entity::update_many()
        .col_expr(chatwoot_connections::Column::LastError, Expr::value(error))
        .col_expr(
            chatwoot_connections::Column::LastErrorAt,
            Expr::value(Utc::now()),
        )
        .filter(chatwoot_connections::Column::Id.eq(id))
        .exec(db)
        .await
        .map(|_| ())
}

#[async_trait::async_trait]
impl JobHandler for ChatwootSend {
    fn kind(&self) -> &'static str {
        SEND
    }

    fn concurrency(&self) -> usize {
        8
    }

    async fn run(&self, ctx: &mut JobContext) -> anyhow::Result<()> {
        let mut outgoing: Outgoing = serde_json::from_value(ctx.payload().clone())
            .map_err(|e| permanent(format!("malformed payload: {e}")))?;
        let tenant = ctx
            .tenant_id()
            .ok_or_else(|| permanent("a Chatwoot call needs a tenant"))?;
        let Some(connection) = connection(ctx.db(), tenant, outgoing.connection_id).await? else {
            return Ok(()); // Disconnected meanwhile.
        };
        if outgoing.actions.is_empty() {
            return Ok(());
        }
        let action = outgoing.actions.remove(0);
        let token = self
            .keys
            .decrypt_str(&aad(TOKEN_PURPOSE, tenant), &connection.token)
            .map_err(|e| permanent(format!("the stored token cannot be opened: {e}")))?;
        let conn = Conn {
            tenant_id: tenant,
            base_url: connection.base_url.clone(),
            account_id: connection.account_id,
            token: SecretString::from(token.to_string()),
        };
        let result = match &action {
            Action::Message { content } => {
                self.api
                    .message(&conn, outgoing.conversation, content, false)
                    .await
            }
            Action::Note { content } => {
                self.api
                    .message(&conn, outgoing.conversation, content, true)
                    .await
            }
            Action::Status { status } => {
                self.api
                    .set_status(&conn, outgoing.conversation, status)
                    .await
            }
        };
        if let Err(e) = result {
            let (message, lasting) = match &e {
                OutboundError::Unavailable(_) => (
                    "Chatwoot is unavailable (too many failures in a row)".to_string(),
                    false,
                ),
                OutboundError::Call(HttpError::Transport(e)) => (
                    format!(
                        "Chatwoot could not be reached: {}",
                        crate::outbound::describe(e)
                    ),
                    false,
                ),
                OutboundError::Call(HttpError::Status { status, body }) => (
                    format!("Chatwoot answered {status}: {body}"),
                    !(*status == 429 || *status >= 500),
                ),
            };
            if lasting || ctx.is_last_attempt() {
                record_error(ctx.db(), connection.id, &message).await?;
            }
            return Err(if lasting {
                permanent(message)
            } else {
                anyhow::anyhow!(message)
            });
        }
        let txn = ctx.transaction().await?;
        if connection.last_error.is_some() {
            chatwoot_connections::Entity::update_many()
                .col_expr(
                    chatwoot_connections::Column::LastError,
                    Expr::value(Option::<String>::None),
                )
                .filter(chatwoot_connections::Column::Id.eq(connection.id))
                .exec(txn)
                .await?;
        }
        queue(txn, tenant, outgoing).await?;
        Ok(())
    }
}
