//! `ConversationService`: conversations of one tenant at a time, each customer message run
//! through the tenant's agent graph with every step recorded and the state checkpointed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Datelike;
use chrono::Utc;
use sea_orm::sea_query::{Alias, Expr, Func, SimpleExpr};
use sea_orm::Order;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait,
    DatabaseConnection, EntityTrait, FromQueryResult, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, TransactionTrait, TryIntoModel,
};
use uuid::Uuid;

use app::error::AppError;
use app::services::{Access, ConversationService, EventSink};
use app::types::{
    Agent, AgentCatalogue, AgentPrompt, Area, BusinessHours, Channel, Conversation,
    ConversationDetail, ConversationQuery, ConversationStatus, CreateAgent, CreateConversation,
    CreateRouterRule, Feedback, Level, Message, MessageRole, OperatorReply, Page, PostMessage,
    PromptDiff, PromptDiffQuery, Rating, RouterRule, RuleKind, SavePrompt, Source, Step,
    StreamEvent, TurnResult, UpdateAgent, Usage, UsageQuery, UsageSummary, Visitor, WebhookEvent,
    WidgetOrigin,
};
use app::validate::check;

use crate::engine::{Checkpoint, ConvState, EngineError, Graph, StepRecord, StepSink, Turn};
use crate::integrations::chatwoot::{self, Mirror};
use crate::integrations::email::EmailQueue;
use crate::integrations::webhooks::{self, Event, Subscriptions};
use crate::store::audit_log::Record;
use crate::store::{
    conversations, messages, router_rules, run_steps, tenants, widget_visitors, workflow_runs,
    workflow_test_usage,
};
use crate::tenancy::db_error;

use super::catalogue::{self, Catalogue};
use super::prompts;
use super::router::{self, Rule};
use super::specialists::Specialist;
use super::{disclosure, nodes, Runtime, TurnContext};

const DEFAULT_PAGE: u32 = 50;
/// Messages kept in the checkpoint for the agents' context.
const HISTORY_KEPT: usize = 40;
/// How long a message waits for the turn before it to finish.
const TURN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// A waiting message looks again after this long at first, then twice as long each time
/// (with jitter), up to [`TURN_WAIT_MAX_PAUSE`]: not an UPDATE every 50 ms for 30 s.
const TURN_WAIT_FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);
const TURN_WAIT_MAX_PAUSE: std::time::Duration = std::time::Duration::from_secs(2);
const FALLBACK: &str =
    "Sorry, something went wrong on our side. Please try again, or ask for a person.";

/// What a widget's conversation starts with besides `CreateConversation`.
pub struct WidgetLink {
    pub widget_id: Uuid,
    pub visitor_id: Uuid,
    pub page_url: Option<String>,
    /// The specialist the widget is pinned to.
    pub agent: Option<String>,
    /// The visitor's email as the tenant's site vouched for it: `send_email` may write to it.
    pub verified_email: Option<String>,
}

pub struct ConversationServiceImpl {
    db: DatabaseConnection,
    rt: Arc<Runtime>,
    graph: Graph<TurnContext>,
    /// What the agents of each tenant are configured with, as of the version read with it.
    configs: moka::future::Cache<Uuid, Arc<TenantConfig>>,
}

/// What a turn reads of its tenant's agent configuration: read again only when its
/// [`ConfigVersion`] changes, not on every turn.
struct TenantConfig {
    version: ConfigVersion,
    /// The router rules, compiled.
    rules: Arc<Vec<Rule>>,
    specialists: Arc<Vec<Specialist>>,
    prompts: Arc<HashMap<String, String>>,
    llm: Arc<crate::llm::Llm>,
    /// The webhook endpoints that take its events.
    hooks: Subscriptions,
    /// The conversation graphs it chose, by channel (the others: the default graph).
    graphs: HashMap<String, Arc<Graph<TurnContext>>>,
}

/// Fingerprints of a tenant's router rules, specialists, prompts, LLM settings and webhook
/// endpoints, read with the tenant's row in one query: each table's row count and newest
/// change (a row added, changed or deleted changes one of them), the LLM settings' change time
/// (`None`: the platform's provider).
#[derive(Clone, Debug, PartialEq, Eq)]
struct ConfigVersion {
    rules: String,
    agents: String,
    prompts: String,
    llm: Option<String>,
    webhooks: String,
    /// When the tenant's own email provider was set (`None`: the platform's relay).
    email: Option<String>,
    /// Its conversation graphs per channel and their published versions.
    graphs: String,
}

/// Tenants whose agent configuration is kept.
const CONFIG_CACHE_TENANTS: u64 = 10_000;

impl ConversationServiceImpl {
    /// What every turn shares (the calendar, email, the LLM providers), for the workflows'
    /// steps.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.rt
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn new(db: DatabaseConnection, rt: Arc<Runtime>) -> Result<Self, EngineError> {
        let graph = Graph::build(&super::default_graph(), &nodes::registry())?;
        let configs = moka::future::Cache::new(CONFIG_CACHE_TENANTS);
        Ok(ConversationServiceImpl {
            db,
            rt,
            graph,
            configs,
        })
    }

    async fn conversation(
        &self,
        access: &Access,
        id: Uuid,
    ) -> Result<conversations::Model, AppError> {
        conversations::Entity::find_by_id(id)
            .filter(conversations::Column::TenantId.eq(access.tenant_id))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or_else(|| AppError::not_found("conversation"))
    }

    /// The tenant's row and the version of its agent configuration, in one query.
    async fn tenant_for_turn(
        &self,
        tenant: Uuid,
    ) -> Result<(tenants::Model, ConfigVersion), AppError> {
        let fingerprint = |table: &str, changed: &str| {
            Expr::cust(format!(
                "(SELECT CAST(COUNT(*) AS TEXT) || '/' || COALESCE(CAST(MAX(x.{changed}) AS TEXT), '') \
                 FROM {table} x WHERE x.tenant_id = tenants.id)"
            ))
        };
        let statement = tenants::Entity::find_by_id(tenant)
            .column_as(fingerprint("router_rules", "updated_at"), "rules_version")
            .column_as(fingerprint("agents", "updated_at"), "agents_version")
            .column_as(fingerprint("prompts", "created_at"), "prompts_version")
            .column_as(
                Expr::cust(
                    "(SELECT CAST(s.updated_at AS TEXT) FROM tenant_llm_settings s \
                     WHERE s.tenant_id = tenants.id)",
                ),
                "llm_version",
            )
            .column_as(Expr::cust(webhooks::FINGERPRINT), "webhooks_version")
            .column_as(
                Expr::cust(crate::workflows::conversation::FINGERPRINT),
                "graphs_version",
            )
            .column_as(
                Expr::cust(
                    "(SELECT CAST(e.updated_at AS TEXT) FROM tenant_email_settings e \
                     WHERE e.tenant_id = tenants.id)",
                ),
                "email_version",
            )
            .build(self.db.get_database_backend());
        let row = self
            .db
            .query_one(statement)
            .await
            .map_err(db_error)?
            .ok_or_else(|| AppError::not_found("tenant"))?;
        let version = ConfigVersion {
            rules: row.try_get("", "rules_version").map_err(db_error)?,
            agents: row.try_get("", "agents_version").map_err(db_error)?,
            prompts: row.try_get("", "prompts_version").map_err(db_error)?,
            llm: row.try_get("", "llm_version").map_err(db_error)?,
            webhooks: row.try_get("", "webhooks_version").map_err(db_error)?,
            email: row.try_get("", "email_version").map_err(db_error)?,
            graphs: row.try_get("", "graphs_version").map_err(db_error)?,
        };
        let tenant = tenants::Model::from_query_result(&row, "").map_err(db_error)?;
        Ok((tenant, version))
    }

    /// The tenant's agent configuration at `version`, read from the database only when the
    /// cached one is of another version. Rows are read after the version, so they are never
    /// older than it: a change in between is read again on the next turn.
    async fn tenant_config(
        &self,
        tenant: Uuid,
        version: ConfigVersion,
    ) -> Result<Arc<TenantConfig>, AppError> {
        if let Some(cached) = self.configs.get(&tenant).await {
            if cached.version == version {
                return Ok(cached);
            }
        }
        let rules = router_rules::Entity::find()
            .filter(router_rules::Column::TenantId.eq(tenant))
            .all(&self.db)
            .await
            .map_err(db_error)?;
        let config = Arc::new(TenantConfig {
            version,
            rules: Arc::new(Rule::load(rules)),
            specialists: Arc::new(catalogue::load(&self.db, tenant).await?),
            prompts: Arc::new(prompts::current(&self.db, tenant).await?),
            llm: self.rt.llm.for_tenant(&self.db, tenant).await?,
            hooks: Subscriptions::load(&self.db, tenant)
                .await
                .map_err(db_error)?,
            graphs: crate::workflows::conversation::load(&self.db, tenant).await?,
        });
        self.configs.insert(tenant, config.clone()).await;
        Ok(config)
    }

    fn context(
        &self,
        access: &Access,
        conversation_id: Uuid,
        tenant: tenants::Model,
        config: &TenantConfig,
    ) -> TurnContext {
        let business_hours: Vec<BusinessHours> = tenant
            .business_hours
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        TurnContext {
            rt: self.rt.clone(),
            db: self.db.clone(),
            llm: config.llm.clone(),
            access: access.clone(),
            knowledge_access: super::knowledge_reader(access),
            conversation_id,
            company: tenant.name,
            timezone: tenant.timezone,
            business_hours,
            policy: agent_policy(tenant.agent_policy),
            rules: config.rules.clone(),
            specialists: config.specialists.clone(),
            prompts: config.prompts.clone(),
            email: (self.rt.email.is_some() || config.version.email.is_some())
                .then(|| EmailQueue::new(self.db.clone())),
            spent: Default::default(),
        }
    }

    /// Whether the tenant stores its transcripts masked.
    async fn redacts(&self, access: &Access) -> Result<bool, AppError> {
        let policy: Option<Option<serde_json::Value>> =
            tenants::Entity::find_by_id(access.tenant_id)
                .select_only()
                .column(tenants::Column::AgentPolicy)
                .into_tuple()
                .one(&self.db)
                .await
                .map_err(db_error)?;
        Ok(agent_policy(policy.flatten()).redact_transcripts)
    }

    async fn specialist(&self, access: &Access, agent: &str) -> Result<Specialist, AppError> {
        catalogue::find(&self.db, access.tenant_id, agent).await
    }

    fn catalogue(&self) -> Catalogue<'_> {
        Catalogue {
            db: &self.db,
            knowledge: self.rt.knowledge.as_ref(),
        }
    }

    fn lease_until(&self, now: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
        now + chrono::Duration::from_std(self.rt.turn_lease)
            .unwrap_or_else(|_| chrono::Duration::minutes(5))
    }

    /// Takes the conversation for one turn, waiting for the turn before it to finish; the
    /// conversation as taken.
    async fn lease(&self, access: &Access, id: Uuid) -> Result<conversations::Model, AppError> {
        let deadline = tokio::time::Instant::now() + TURN_WAIT;
        let mut pause = TURN_WAIT_FIRST_PAUSE;
        loop {
            let now = Utc::now();
            let taken = conversations::Entity::update_many()
                .col_expr(
                    conversations::Column::BusyUntil,
                    Expr::value(self.lease_until(now)),
                )
                .filter(conversations::Column::Id.eq(id))
                .filter(conversations::Column::TenantId.eq(access.tenant_id))
                .filter(
                    Condition::any()
                        .add(conversations::Column::BusyUntil.is_null())
                        .add(conversations::Column::BusyUntil.lt(now)),
                )
                .exec_with_returning(&self.db)
                .await
                .map_err(db_error)?;
            if let Some(conversation) = taken.into_iter().next() {
                return Ok(conversation);
            }
            // Not found, or busy.
            self.conversation(access, id).await?;
            if tokio::time::Instant::now() >= deadline {
                return Err(AppError::Conflict(
                    "the answer to an earlier message is still being written; try again in a moment"
                        .into(),
                ));
            }
            let jitter = pause.mul_f64(rand::random::<f64>() * 0.5);
            tokio::time::sleep((pause + jitter).min(deadline - tokio::time::Instant::now())).await;
            pause = (pause * 2).min(TURN_WAIT_MAX_PAUSE);
        }
    }

    /// Runs `work` while holding the conversation, renewing the lease every third of its
    /// length, so a turn longer than the lease (slow tools, a slow provider) is never joined
    /// by the next message's.
    async fn holding<T>(
        &self,
        access: &Access,
        id: Uuid,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        tokio::pin!(work);
        let mut renew = tokio::time::interval(self.rt.turn_lease / 3);
        renew.tick().await;
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = renew.tick() => {
                    if let Err(e) = self.renew(access, id).await {
                        tracing::warn!(error = %e, conversation = %id, "turn lease not renewed");
                    }
                }
            }
        }
    }

    /// Extends the conversation's lease unless the turn already released it (its answer's
    /// transaction does: the renewal may come just after).
    async fn renew(&self, access: &Access, id: Uuid) -> Result<(), sea_orm::DbErr> {
        conversations::Entity::update_many()
            .col_expr(
                conversations::Column::BusyUntil,
                Expr::value(self.lease_until(Utc::now())),
            )
            .filter(conversations::Column::Id.eq(id))
            .filter(conversations::Column::TenantId.eq(access.tenant_id))
            .filter(conversations::Column::BusyUntil.is_not_null())
            .exec(&self.db)
            .await
            .map(|_| ())
    }

    /// Ends the conversation's lease, after a turn that failed before its answer was saved.
    async fn release(&self, access: &Access, id: Uuid) {
        let released = conversations::Entity::update_many()
            .col_expr(
                conversations::Column::BusyUntil,
                Expr::value(Option::<chrono::DateTime<Utc>>::None),
            )
            .filter(conversations::Column::Id.eq(id))
            .filter(conversations::Column::TenantId.eq(access.tenant_id))
            .exec(&self.db)
            .await;
        if let Err(e) = released {
            // The lease runs out by itself.
            tracing::warn!(error = %e, conversation = %id, "turn lease not released");
        }
    }

    /// Starts a conversation; a widget's carries its widget, visitor and page.
    pub async fn create_linked(
        &self,
        access: &Access,
        create: CreateConversation,
        link: Option<WidgetLink>,
    ) -> Result<Conversation, AppError> {
        let agent = link.as_ref().and_then(|l| l.agent.clone());
        self.create_with(access, create, Uuid::now_v7(), link, agent)
            .await
    }

    /// Starts a conversation with the given id, pinned to `agent` (a workflow's `agent` step:
    /// the id comes from the step, so a step run again finds its conversation).
    pub async fn create_pinned(
        &self,
        access: &Access,
        create: CreateConversation,
        id: Uuid,
        agent: &str,
    ) -> Result<Conversation, AppError> {
        self.create_with(access, create, id, None, Some(agent.to_string()))
            .await
    }

    async fn create_with(
        &self,
        access: &Access,
        create: CreateConversation,
        id: Uuid,
        link: Option<WidgetLink>,
        agent: Option<String>,
    ) -> Result<Conversation, AppError> {
        access.require(Area::Conversations, Level::Write)?;
        check(&create)?;
        let now = Utc::now();
        let redact = self.redacts(access).await?;
        let mut checkpoint = Checkpoint::default();
        for m in &create.history {
            push_history(
                &mut checkpoint.state,
                m.role,
                &stored(m.content.trim(), redact),
                None,
            );
        }
        if let Some(email) = link.as_ref().and_then(|l| l.verified_email.as_ref()) {
            super::tools::remember_customer_emails(&mut checkpoint.state, email);
        }
        if let Some(agent) = agent {
            checkpoint
                .state
                .vars
                .insert(super::router::PINNED_AGENT.into(), agent.into());
        }
        let txn = self.db.begin().await.map_err(db_error)?;
        let conv = conversations::ActiveModel {
            id: Set(id),
            tenant_id: Set(access.tenant_id),
            channel: Set(create.channel.unwrap_or(Channel::Api).as_str().into()),
            status: Set(ConversationStatus::Bot.as_str().into()),
            agent: Set(String::new()),
            title: Set(create
                .title
                .map(|t| t.trim().to_string())
                .unwrap_or_default()),
            checkpoint: Set(serde_json::to_value(checkpoint).unwrap_or_default()),
            turns: Set(0),
            prompt_tokens: Set(0),
            completion_tokens: Set(0),
            cost_micros: Set(0),
            llm_calls: Set(0),
            busy_until: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            widget_id: Set(link.as_ref().map(|l| l.widget_id)),
            visitor_id: Set(link.as_ref().map(|l| l.visitor_id)),
            page_url: Set(link.and_then(|l| l.page_url)),
            csat: Set(None),
            csat_comment: Set(None),
        }
        .insert(&txn)
        .await
        .map_err(db_error)?;
        for m in &create.history {
            message_row(
                &conv,
                m.role,
                None,
                &stored(m.content.trim(), redact),
                &[],
                None,
            )
            .insert(&txn)
            .await
            .map_err(db_error)?;
        }
        let created = to_conversation(conv);
        webhooks::emit(
            &txn,
            access.tenant_id,
            &[Event::new(WebhookEvent::ConversationCreated, &created).caused_by(access)],
        )
        .await
        .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(created)
    }

    /// One turn on the leased conversation `conv`; the transaction that saves the answer also
    /// ends the lease.
    async fn run_message(
        &self,
        access: &Access,
        conv: conversations::Model,
        message: PostMessage,
        events: EventSink,
    ) -> Result<TurnResult, AppError> {
        let id = conv.id;
        let content = message.content.trim().to_string();
        let status = ConversationStatus::parse(&conv.status).unwrap_or(ConversationStatus::Bot);
        if status == ConversationStatus::Closed {
            return Err(AppError::Conflict("the conversation is closed".into()));
        }
        let (tenant, version) = self.tenant_for_turn(access.tenant_id).await?;
        let config = self.tenant_config(access.tenant_id, version).await?;
        let redact = agent_policy(tenant.agent_policy.clone()).redact_transcripts;
        let kept = stored(&content, redact);
        let user = message_row(&conv, MessageRole::User, None, &kept, &[], None);
        let user = if config.hooks.wants(WebhookEvent::MessageCreated) {
            // The message and its event commit together.
            let txn = self.db.begin().await.map_err(db_error)?;
            let user = user.insert(&txn).await.map_err(db_error)?;
            let created = message_event(&conv, &user).caused_by(access);
            config
                .hooks
                .emit(&txn, access.tenant_id, &[created])
                .await
                .map_err(db_error)?;
            txn.commit().await.map_err(db_error)?;
            user
        } else {
            user.insert(&self.db).await.map_err(db_error)?
        };
        let user_message = Message {
            content: content.clone(),
            ..to_message(user.clone())
        };
        let mut checkpoint = checkpoint_of(&conv);
        if status != ConversationStatus::Bot {
            // A person owns the conversation: the bot stays silent.
            super::tools::remember_customer_emails(&mut checkpoint.state, &content);
            push_history(&mut checkpoint.state, MessageRole::User, &kept, None);
            let mut active = conv.clone().into_active_model();
            active.checkpoint = Set(serde_json::to_value(&checkpoint).unwrap_or_default());
            active.updated_at = Set(Utc::now());
            active.busy_until = Set(None);
            let conv = save(&self.db, id, active).await.map_err(db_error)?;
            self.changed(&conv).await;
            events(StreamEvent::MessageDone {
                message_id: None,
                agent: conv.agent.clone(),
                status,
                usage: Usage::default(),
            });
            return Ok(TurnResult {
                conversation: to_conversation(conv),
                message: user_message,
                reply: None,
                steps: Vec::new(),
            });
        }
        let mut state = checkpoint.state;
        super::tools::remember_customer_emails(&mut state, &content);
        state.input = content.clone();
        state.reply = None;
        state.sources.clear();
        state.transfer = None;
        state.handoff = None;
        state.route = None;
        // The tenant's conversation graph for the channel, if it chose one: its steps read the
        // message as `trigger` and the earlier steps' outputs as `nodes`, which are this turn's
        // only (`vars` stay with the conversation).
        let graph = match config.graphs.get(&conv.channel) {
            Some(graph) => {
                state.vars.insert(
                    "trigger".into(),
                    crate::workflows::conversation::trigger(&state, &conv.channel, id),
                );
                state.vars.remove(crate::engine::NODES);
                graph.as_ref()
            }
            None => &self.graph,
        };
        let cx = self.context(access, id, tenant, &config);
        let sink = DbSink {
            db: self.db.clone(),
            conversation: conv.clone(),
            message_id: user.id,
            redact,
            steps: Mutex::new(Vec::new()),
            usage: Mutex::new(Usage::default()),
            pending: Mutex::new(Vec::new()),
        };
        let outcome = graph.run_turn(&cx, &mut state, None, &sink, &*events).await;
        state.vars.remove("trigger");
        state.vars.remove(crate::engine::NODES);
        let steps = sink.steps.into_inner().unwrap_or_default();
        let mut usage = sink.usage.into_inner().unwrap_or_default();
        // A conversation graph's step that failed the turn still asked the model.
        usage.add(&crate::workflows::conversation::take_spent(&cx));
        let unsaved_steps = sink.pending.into_inner().unwrap_or_default();
        if let Err(e) = outcome {
            tracing::error!(conversation = %id, error = %e, "the turn failed");
            if let EngineError::Persist(_) = e {
                return Err(AppError::Internal(
                    "the conversation could not be saved".into(),
                ));
            }
            events(StreamEvent::MessageDelta {
                text: FALLBACK.into(),
            });
            state.reply = Some(FALLBACK.into());
        }
        let reply_text = state.reply.take().unwrap_or_else(|| FALLBACK.into());
        let agent = state.agent.clone().unwrap_or_else(|| "support".into());
        let sources = std::mem::take(&mut state.sources);
        let handoff_reason = state.handoff.clone();
        let new_status = if state.handoff.is_some() {
            ConversationStatus::WaitingHuman
        } else {
            ConversationStatus::Bot
        };
        tracing::info!(
            conversation = %id,
            agent = %agent,
            route = state.route.as_ref().map_or("", |r| r.by.as_str()),
            steps = steps.len(),
            llm_calls = usage.llm_calls,
            handoff = state.handoff.is_some(),
            message = %crate::pii::mask(&content),
            "turn answered"
        );
        push_history(&mut state, MessageRole::User, &kept, None);
        push_history(
            &mut state,
            MessageRole::Assistant,
            &stored(&reply_text, redact),
            Some(agent.clone()),
        );
        state.input.clear();

        let txn = self.db.begin().await.map_err(db_error)?;
        if !unsaved_steps.is_empty() {
            run_steps::Entity::insert_many(unsaved_steps)
                .exec_without_returning(&txn)
                .await
                .map_err(db_error)?;
        }
        let reply = message_row(
            &conv,
            MessageRole::Assistant,
            Some(agent.clone()),
            &stored(&reply_text, redact),
            &sources,
            Some(&usage),
        )
        .insert(&txn)
        .await
        .map_err(db_error)?;
        let title = if conv.title.is_empty() {
            kept.chars().take(80).collect()
        } else {
            conv.title.clone()
        };
        let mut active = conv.clone().into_active_model();
        active.agent = Set(agent.clone());
        active.status = Set(new_status.as_str().into());
        active.title = Set(title);
        active.turns = Set(conv.turns + 1);
        active.prompt_tokens = Set(conv.prompt_tokens + usage.prompt_tokens as i64);
        active.completion_tokens = Set(conv.completion_tokens + usage.completion_tokens as i64);
        active.cost_micros = Set(conv.cost_micros + (usage.cost_usd * 1_000_000.0).round() as i64);
        active.llm_calls = Set(conv.llm_calls + i32::try_from(usage.llm_calls).unwrap_or(i32::MAX));
        active.checkpoint =
            Set(serde_json::to_value(Checkpoint { state, next: None }).unwrap_or_default());
        active.updated_at = Set(Utc::now());
        active.busy_until = Set(None);
        let conv = save(&txn, id, active).await.map_err(db_error)?;
        let mut happened = vec![message_event(&conv, &reply).caused_by(access)];
        if new_status == ConversationStatus::WaitingHuman {
            happened.push(
                Event::new(
                    WebhookEvent::HandoffRequested,
                    serde_json::json!({
                        "conversation": to_conversation(conv.clone()),
                        "agent": agent,
                        "reason": handoff_reason.map(|r| stored(&r, redact)),
                    }),
                )
                .caused_by(access),
            );
        }
        config
            .hooks
            .emit(&txn, access.tenant_id, &happened)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        self.changed(&conv).await;

        if !sources.is_empty() {
            events(StreamEvent::Sources { sources });
        }
        events(StreamEvent::MessageDone {
            message_id: Some(reply.id),
            agent,
            status: new_status,
            usage,
        });
        // The caller gets the answer as given; what is stored may be masked.
        Ok(TurnResult {
            conversation: to_conversation(conv),
            message: user_message,
            reply: Some(Message {
                content: reply_text,
                ..to_message(reply)
            }),
            steps,
        })
    }

    async fn write_operator_reply(
        &self,
        access: &Access,
        id: Uuid,
        reply: OperatorReply,
    ) -> Result<Message, AppError> {
        let content = stored(reply.content.trim(), self.redacts(access).await?);
        let model = self.conversation(access, id).await?;
        let mut checkpoint = checkpoint_of(&model);
        push_history(&mut checkpoint.state, MessageRole::Operator, &content, None);
        let txn = self.db.begin().await.map_err(db_error)?;
        let message = message_row(&model, MessageRole::Operator, None, &content, &[], None)
            .insert(&txn)
            .await
            .map_err(db_error)?;
        let created = message_event(&model, &message);
        chatwoot::mirror(&txn, access, &model, Mirror::Reply(reply.content.trim()))
            .await
            .map_err(db_error)?;
        let mut active = model.into_active_model();
        active.checkpoint = Set(serde_json::to_value(&checkpoint).unwrap_or_default());
        active.updated_at = Set(Utc::now());
        let model = active.update(&txn).await.map_err(db_error)?;
        webhooks::emit(&txn, access.tenant_id, &[created])
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        self.changed(&model).await;
        Ok(to_message(message))
    }

    /// Sets the status when the conversation is in one of `from`.
    async fn move_status(
        &self,
        access: &Access,
        id: Uuid,
        from: &[ConversationStatus],
        to: ConversationStatus,
        action: &str,
    ) -> Result<Conversation, AppError> {
        access.require(Area::Conversations, Level::Write)?;
        let conv = self.conversation(access, id).await?;
        let status = ConversationStatus::parse(&conv.status).unwrap_or(ConversationStatus::Bot);
        if status == to {
            return Ok(to_conversation(conv));
        }
        if !from.contains(&status) {
            return Err(AppError::Conflict(format!(
                "the conversation is {}",
                status.as_str()
            )));
        }
        let txn = self.db.begin().await.map_err(db_error)?;
        let mut active = conv.into_active_model();
        active.status = Set(to.as_str().into());
        active.updated_at = Set(Utc::now());
        let conv = active.update(&txn).await.map_err(db_error)?;
        Record::by(access, action, id.to_string())
            .write(&txn)
            .await
            .map_err(db_error)?;
        chatwoot::mirror(&txn, access, &conv, Mirror::Status(to))
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        self.changed(&conv).await;
        Ok(to_conversation(conv))
    }

    /// The visitors of widget conversations, as their widgets know them.
    async fn attach_visitors(
        &self,
        access: &Access,
        conversations: &mut [Conversation],
    ) -> Result<(), AppError> {
        let ids: Vec<Uuid> = conversations
            .iter()
            .filter_map(|c| Some(c.widget.as_ref()?.visitor.as_ref()?.id))
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let visitors = widget_visitors::Entity::find()
            .filter(widget_visitors::Column::TenantId.eq(access.tenant_id))
            .filter(widget_visitors::Column::Id.is_in(ids))
            .all(&self.db)
            .await
            .map_err(db_error)?;
        for origin in conversations.iter_mut().filter_map(|c| c.widget.as_mut()) {
            let visitor_id = origin.visitor.as_ref().map(|v| v.id);
            // Gone with its widget: the conversation stays, the visitor's details do not.
            origin.visitor = visitors
                .iter()
                .find(|v| Some(v.id) == visitor_id)
                .map(widget_visitors::Model::to_visitor);
        }
        Ok(())
    }

    /// Wakes the widget's event streams of a widget conversation.
    async fn changed(&self, conv: &conversations::Model) {
        if conv.widget_id.is_some() {
            self.rt.live.changed(conv.tenant_id, conv.id).await;
        }
    }
}

/// Writes the changed columns of a conversation and gives it back without reading the row
/// again (the checkpoint is the largest thing a turn would otherwise parse twice).
async fn save(
    db: &impl ConnectionTrait,
    conversation: Uuid,
    active: conversations::ActiveModel,
) -> Result<conversations::Model, sea_orm::DbErr> {
    conversations::Entity::update_many()
        .set(active.clone())
        .filter(conversations::Column::Id.eq(conversation))
        .exec(db)
        .await?;
    active.try_into_model()
}

/// `message.created` for `message` of `conv`.
fn message_event(conv: &conversations::Model, message: &messages::Model) -> Event {
    Event::new(
        WebhookEvent::MessageCreated,
        serde_json::json!({
            "conversation_id": conv.id,
            "channel": conv.channel,
            "message": to_message(message.clone()),
        }),
    )
}

/// A message row of `conv`, ready to insert.
fn message_row(
    conv: &conversations::Model,
    role: MessageRole,
    agent: Option<String>,
    content: &str,
    sources: &[Source],
    usage: Option<&Usage>,
) -> messages::ActiveModel {
    messages::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(conv.tenant_id),
        conversation_id: Set(conv.id),
        role: Set(role.as_str().into()),
        agent: Set(agent),
        content: Set(content.to_string()),
        sources: Set(serde_json::to_value(sources).unwrap_or_default()),
        usage: Set(usage.and_then(|u| serde_json::to_value(u).ok())),
        feedback: Set(None),
        feedback_comment: Set(None),
        created_at: Set(Utc::now()),
    }
}

/// Masks personal data in every string of a JSON value.
fn mask_strings(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => *s = crate::pii::mask(s).into_owned(),
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_strings),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(mask_strings),
        _ => {}
    }
}

/// What is stored of `text`: masked when the tenant redacts its transcripts.
fn stored(text: &str, redact: bool) -> String {
    if redact {
        crate::pii::mask(text).into_owned()
    } else {
        text.to_string()
    }
}

/// A tenant's agent policy as stored (the defaults when unset or unreadable).
fn agent_policy(stored: Option<serde_json::Value>) -> app::types::AgentPolicy {
    stored
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

fn checkpoint_of(conv: &conversations::Model) -> Checkpoint {
    serde_json::from_value(conv.checkpoint.clone()).unwrap_or_default()
}

fn push_history(state: &mut ConvState, role: MessageRole, content: &str, agent: Option<String>) {
    state.history.push(Turn {
        role: role.as_str().into(),
        content: content.into(),
        agent,
    });
    let excess = state.history.len().saturating_sub(HISTORY_KEPT);
    state.history.drain(..excess);
}

pub fn to_conversation(m: conversations::Model) -> Conversation {
    Conversation {
        id: m.id,
        channel: Channel::parse(&m.channel).unwrap_or(Channel::Api),
        status: ConversationStatus::parse(&m.status).unwrap_or(ConversationStatus::Bot),
        agent: m.agent,
        title: m.title,
        turns: u32::try_from(m.turns).unwrap_or(0),
        usage: Usage {
            prompt_tokens: u64::try_from(m.prompt_tokens).unwrap_or(0),
            completion_tokens: u64::try_from(m.completion_tokens).unwrap_or(0),
            cost_usd: m.cost_micros as f64 / 1_000_000.0,
            llm_calls: u32::try_from(m.llm_calls).unwrap_or(0),
        },
        created_at: m.created_at,
        updated_at: m.updated_at,
        widget: m.widget_id.map(|widget_id| WidgetOrigin {
            widget_id,
            // Its id only; `attach_visitors` fills in the rest where it is needed.
            visitor: m.visitor_id.map(|id| Visitor {
                id,
                name: None,
                email: None,
                verified: false,
            }),
            page_url: m.page_url,
            csat: m.csat.and_then(|c| u8::try_from(c).ok()),
            csat_comment: m.csat_comment,
        }),
    }
}

pub fn to_message(m: messages::Model) -> Message {
    Message {
        id: m.id,
        role: MessageRole::parse(&m.role).unwrap_or(MessageRole::User),
        agent: m.agent,
        content: m.content,
        sources: serde_json::from_value(m.sources).unwrap_or_default(),
        usage: m.usage.and_then(|u| serde_json::from_value(u).ok()),
        feedback: m
            .feedback
            .map(|f| if f > 0 { Rating::Up } else { Rating::Down }),
        feedback_comment: m.feedback_comment,
        created_at: m.created_at,
    }
}

fn to_step(m: run_steps::Model) -> Step {
    Step {
        seq: u32::try_from(m.seq).unwrap_or(0),
        node: m.node,
        detail: serde_json::from_value(m.detail).unwrap_or_default(),
        prompt_tokens: u32::try_from(m.prompt_tokens).unwrap_or(0),
        completion_tokens: u32::try_from(m.completion_tokens).unwrap_or(0),
        duration_ms: u32::try_from(m.duration_ms).unwrap_or(0),
    }
}

fn to_rule(m: router_rules::Model) -> RouterRule {
    RouterRule {
        id: m.id,
        name: m.name,
        agent: m.agent,
        kind: RuleKind::parse(&m.kind).unwrap_or(RuleKind::Keyword),
        pattern: m.pattern,
        priority: m.priority,
        enabled: m.enabled,
    }
}

/// Keeps each step's record and the checkpoint after it.
struct DbSink {
    db: DatabaseConnection,
    conversation: conversations::Model,
    message_id: Uuid,
    /// The tenant stores transcripts masked: so are the tool calls of its steps.
    redact: bool,
    steps: Mutex<Vec<Step>>,
    /// Tokens and cost of the steps so far (each LLM call priced by its own model).
    usage: Mutex<Usage>,
    /// Steps not saved yet. A step that called tools (booked, emailed, handed off: effects
    /// outside the turn) is saved at once with the checkpoint after it, together with the
    /// steps before it; the others wait for the answer's transaction, which writes the final
    /// checkpoint anyway (a new turn starts at the start node, so nothing resumes from an
    /// intermediate one).
    pending: Mutex<Vec<run_steps::ActiveModel>>,
}

#[async_trait::async_trait]
impl StepSink for DbSink {
    async fn step(&self, r: StepRecord<'_>) -> Result<(), String> {
        let mut detail = r.output.detail.clone();
        if self.redact {
            for call in &mut detail.tool_calls {
                mask_strings(&mut call.arguments);
                call.result = crate::pii::mask(&call.result).into_owned();
            }
        }
        let step = Step {
            seq: r.seq,
            node: r.node.to_string(),
            detail,
            prompt_tokens: u32::try_from(r.output.usage.prompt_tokens).unwrap_or(u32::MAX),
            completion_tokens: u32::try_from(r.output.usage.completion_tokens).unwrap_or(u32::MAX),
            duration_ms: r.duration_ms,
        };
        let row = run_steps::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(self.conversation.tenant_id),
            conversation_id: Set(self.conversation.id),
            message_id: Set(self.message_id),
            seq: Set(step.seq as i32),
            node: Set(step.node.clone()),
            detail: Set(serde_json::to_value(&step.detail).unwrap_or_default()),
            prompt_tokens: Set(step.prompt_tokens as i32),
            completion_tokens: Set(step.completion_tokens as i32),
            duration_ms: Set(step.duration_ms as i32),
            created_at: Set(Utc::now()),
        };
        let rows = {
            let mut pending = self.pending.lock().map_err(|e| e.to_string())?;
            pending.push(row);
            if r.checkpoint.next.is_none() || step.detail.tool_calls.is_empty() {
                Vec::new()
            } else {
                std::mem::take(&mut *pending)
            }
        };
        if !rows.is_empty() {
            let save = async {
                let txn = self.db.begin().await?;
                run_steps::Entity::insert_many(rows)
                    .exec_without_returning(&txn)
                    .await?;
                conversations::Entity::update_many()
                    .col_expr(
                        conversations::Column::Checkpoint,
                        Expr::value(serde_json::to_value(r.checkpoint).unwrap_or_default()),
                    )
                    .filter(conversations::Column::TenantId.eq(self.conversation.tenant_id))
                    .filter(conversations::Column::Id.eq(self.conversation.id))
                    .exec(&txn)
                    .await?;
                txn.commit().await
            };
            save.await.map_err(|e| e.to_string())?;
        }
        if let Ok(mut steps) = self.steps.lock() {
            steps.push(step);
        }
        if let Ok(mut usage) = self.usage.lock() {
            usage.add(&r.output.usage);
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl ConversationService for ConversationServiceImpl {
    async fn create_conversation(
        &self,
        access: &Access,
        create: CreateConversation,
    ) -> Result<Conversation, AppError> {
        self.create_linked(access, create, None).await
    }

    async fn list_conversations(
        &self,
        access: &Access,
        query: ConversationQuery,
    ) -> Result<Page<Conversation>, AppError> {
        access.require(Area::Conversations, Level::Read)?;
        check(&query)?;
        let limit = query.limit.unwrap_or(DEFAULT_PAGE);
        let mut select = conversations::Entity::find()
            .filter(conversations::Column::TenantId.eq(access.tenant_id));
        if let Some(status) = query.status {
            select = select.filter(conversations::Column::Status.eq(status.as_str()));
        }
        if let Some(channel) = query.channel {
            select = select.filter(conversations::Column::Channel.eq(channel.as_str()));
        }
        let mut page = crate::store::page_by_id(
            &self.db,
            select,
            (conversations::Column::Id, Order::Desc),
            query.cursor.as_deref(),
            limit,
            |r| r.id,
        )
        .await?
        .map(to_conversation);
        self.attach_visitors(access, &mut page.items).await?;
        Ok(page)
    }

    async fn get_conversation(
        &self,
        access: &Access,
        id: Uuid,
    ) -> Result<ConversationDetail, AppError> {
        access.require(Area::Conversations, Level::Read)?;
        let conv = self.conversation(access, id).await?;
        let messages = messages::Entity::find()
            .filter(messages::Column::TenantId.eq(access.tenant_id))
            .filter(messages::Column::ConversationId.eq(id))
            .order_by_asc(messages::Column::Id)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        let mut messages: Vec<Message> = messages.into_iter().map(to_message).collect();
        for m in &mut messages {
            disclosure::message(access, m);
        }
        let mut conversation = [to_conversation(conv)];
        self.attach_visitors(access, &mut conversation).await?;
        let [conversation] = conversation;
        Ok(ConversationDetail {
            conversation,
            messages,
        })
    }

    async fn post_message(
        &self,
        access: &Access,
        id: Uuid,
        message: PostMessage,
        events: EventSink,
    ) -> Result<TurnResult, AppError> {
        access.require(Area::Conversations, Level::Write)?;
        check(&message)?;
        let conv = self.lease(access, id).await?;
        let events = disclosure::events(access, events);
        let result = self
            .holding(access, id, self.run_message(access, conv, message, events))
            .await;
        if result.is_err() {
            self.release(access, id).await;
        }
        let mut result = result?;
        disclosure::turn(access, &mut result);
        Ok(result)
    }

    async fn list_steps(
        &self,
        access: &Access,
        id: Uuid,
        message_id: Uuid,
    ) -> Result<Vec<Step>, AppError> {
        access.require(Area::Conversations, Level::Read)?;
        self.conversation(access, id).await?;
        let mut steps: Vec<Step> = run_steps::Entity::find()
            .filter(run_steps::Column::TenantId.eq(access.tenant_id))
            .filter(run_steps::Column::ConversationId.eq(id))
            .filter(run_steps::Column::MessageId.eq(message_id))
            .order_by_asc(run_steps::Column::Seq)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(to_step)
            .collect();
        disclosure::steps(access, &mut steps);
        Ok(steps)
    }

    async fn rate_message(
        &self,
        access: &Access,
        id: Uuid,
        message_id: Uuid,
        feedback: Feedback,
    ) -> Result<Message, AppError> {
        access.require(Area::Conversations, Level::Write)?;
        check(&feedback)?;
        self.conversation(access, id).await?;
        let message = messages::Entity::find_by_id(message_id)
            .filter(messages::Column::TenantId.eq(access.tenant_id))
            .filter(messages::Column::ConversationId.eq(id))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or_else(|| AppError::not_found("message"))?;
        if message.role != MessageRole::Assistant.as_str() {
            return Err(AppError::invalid(
                "message_id",
                "only an agent's answers can be rated",
            ));
        }
        let mut active = message.into_active_model();
        active.feedback = Set(Some(if feedback.rating == Rating::Up { 1 } else { -1 }));
        active.feedback_comment = Set(feedback.comment.map(|c| c.trim().to_string()));
        Ok(to_message(active.update(&self.db).await.map_err(db_error)?))
    }

    async fn take_over(&self, access: &Access, id: Uuid) -> Result<Conversation, AppError> {
        use ConversationStatus::*;
        self.move_status(
            access,
            id,
            &[Bot, WaitingHuman],
            Human,
            "conversation.take_over",
        )
        .await
    }

    async fn hand_back(&self, access: &Access, id: Uuid) -> Result<Conversation, AppError> {
        use ConversationStatus::*;
        self.move_status(
            access,
            id,
            &[Human, WaitingHuman],
            Bot,
            "conversation.hand_back",
        )
        .await
    }

    async fn operator_reply(
        &self,
        access: &Access,
        id: Uuid,
        reply: OperatorReply,
    ) -> Result<Message, AppError> {
        check(&reply)?;
        self.take_over(access, id).await?;
        // After the bot's turn in progress, if any, so its checkpoint does not drop this reply.
        self.lease(access, id).await?;
        let result = self.write_operator_reply(access, id, reply).await;
        self.release(access, id).await;
        result
    }

    async fn list_router_rules(&self, access: &Access) -> Result<Vec<RouterRule>, AppError> {
        access.require(Area::Agents, Level::Read)?;
        let mut rules: Vec<RouterRule> = router_rules::Entity::find()
            .filter(router_rules::Column::TenantId.eq(access.tenant_id))
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(to_rule)
            .collect();
        rules.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(&b.name)));
        Ok(rules)
    }

    async fn create_router_rule(
        &self,
        access: &Access,
        create: CreateRouterRule,
    ) -> Result<RouterRule, AppError> {
        access.require(Area::Agents, Level::Write)?;
        check(&create)?;
        let specialists = catalogue::load(&self.db, access.tenant_id).await?;
        if !specialists.iter().any(|s| s.name == create.agent) {
            let known: Vec<&str> = specialists.iter().map(|s| s.name.as_str()).collect();
            return Err(AppError::invalid(
                "agent",
                format!("must be one of {}", known.join(", ")),
            ));
        }
        router::compile(create.kind, &create.pattern)
            .map_err(|e| AppError::invalid("pattern", e))?;
        let now = Utc::now();
        let txn = self.db.begin().await.map_err(db_error)?;
        let rule = router_rules::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(access.tenant_id),
            name: Set(create.name.trim().to_string()),
            agent: Set(create.agent),
            kind: Set(create.kind.as_str().into()),
            pattern: Set(create.pattern),
            priority: Set(create.priority),
            enabled: Set(create.enabled),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await
        .map_err(db_error)?;
        Record::by(access, "router_rule.create", rule.id.to_string())
            .details(serde_json::json!({"name": rule.name, "agent": rule.agent}))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(to_rule(rule))
    }

    async fn get_prompt(&self, access: &Access, agent: &str) -> Result<AgentPrompt, AppError> {
        access.require(Area::Agents, Level::Read)?;
        let specialist = self.specialist(access, agent).await?;
        prompts::load(&self.db, access.tenant_id, &specialist).await
    }

    async fn save_prompt(
        &self,
        access: &Access,
        agent: &str,
        save: SavePrompt,
    ) -> Result<AgentPrompt, AppError> {
        access.require(Area::Agents, Level::Write)?;
        check(&save)?;
        let specialist = self.specialist(access, agent).await?;
        let note = save.note.as_deref().map(str::trim).unwrap_or_default();
        prompts::save(&self.db, access, agent, save.text.trim(), note).await?;
        prompts::load(&self.db, access.tenant_id, &specialist).await
    }

    async fn restore_default_prompt(
        &self,
        access: &Access,
        agent: &str,
    ) -> Result<AgentPrompt, AppError> {
        access.require(Area::Agents, Level::Write)?;
        let specialist = self.specialist(access, agent).await?;
        prompts::save(
            &self.db,
            access,
            agent,
            &specialist.prompt,
            "restored the default",
        )
        .await?;
        prompts::load(&self.db, access.tenant_id, &specialist).await
    }

    async fn diff_prompts(
        &self,
        access: &Access,
        agent: &str,
        query: PromptDiffQuery,
    ) -> Result<PromptDiff, AppError> {
        let prompt = self.get_prompt(access, agent).await?;
        let text_of = |field: &str, version: u32| {
            prompt
                .history
                .iter()
                .find(|v| v.version == version)
                .map(|v| v.text.clone())
                .ok_or_else(|| AppError::invalid(field, format!("there is no version {version}")))
        };
        let (from, to) = (text_of("from", query.from)?, text_of("to", query.to)?);
        Ok(PromptDiff {
            from: query.from,
            to: query.to,
            diff: prompts::diff(
                &format!("{agent} v{}", query.from),
                &from,
                &format!("{agent} v{}", query.to),
                &to,
            ),
        })
    }

    async fn list_agents(&self, access: &Access) -> Result<AgentCatalogue, AppError> {
        self.catalogue().list(access).await
    }

    async fn create_agent(&self, access: &Access, create: CreateAgent) -> Result<Agent, AppError> {
        self.catalogue().create(access, create).await
    }

    async fn update_agent(
        &self,
        access: &Access,
        agent: &str,
        update: UpdateAgent,
    ) -> Result<Agent, AppError> {
        self.catalogue().update(access, agent, update).await
    }

    async fn delete_agent(&self, access: &Access, agent: &str) -> Result<(), AppError> {
        self.catalogue().delete(access, agent).await
    }

    async fn usage(&self, access: &Access, query: UsageQuery) -> Result<UsageSummary, AppError> {
        access.require(Area::Conversations, Level::Read)?;
        let until = query.until.unwrap_or_else(Utc::now);
        let since = query.since.unwrap_or_else(|| {
            let today = until.date_naive();
            today
                .with_day(1)
                .unwrap_or(today)
                .and_time(chrono::NaiveTime::MIN)
                .and_utc()
        });
        if since >= until {
            return Err(AppError::invalid("since", "must be before until"));
        }
        // PostgreSQL sums BIGINTs as NUMERIC; the cast keeps one integer type on both backends.
        fn sum(column: impl sea_orm::sea_query::IntoColumnRef) -> SimpleExpr {
            SimpleExpr::from(Func::cast_as(
                Func::sum(Expr::col(column)),
                Alias::new("BIGINT"),
            ))
        }
        type Totals = (
            i64,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
        );
        let totals: Option<Totals> = conversations::Entity::find()
            .select_only()
            .column_as(
                Expr::col(conversations::Column::Id).count(),
                "conversations",
            )
            .column_as(sum(conversations::Column::Turns), "turns")
            .column_as(sum(conversations::Column::PromptTokens), "prompt_tokens")
            .column_as(
                sum(conversations::Column::CompletionTokens),
                "completion_tokens",
            )
            .column_as(sum(conversations::Column::CostMicros), "cost_micros")
            .column_as(sum(conversations::Column::LlmCalls), "llm_calls")
            .filter(conversations::Column::TenantId.eq(access.tenant_id))
            .filter(conversations::Column::CreatedAt.gte(since))
            .filter(conversations::Column::CreatedAt.lt(until))
            .into_tuple()
            .one(&self.db)
            .await
            .map_err(db_error)?;
        let (count, turns, prompt, completion, cost, calls) = totals.unwrap_or_default();
        // Workflows' LLM, classifier and knowledge steps ask the model outside conversations.
        // A Parallel step's branches are runs too, but not runs anyone started.
        let runs: Option<(
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
        )> = workflow_runs::Entity::find()
            .select_only()
            .column_as(
                Expr::cust("CAST(SUM(CASE WHEN trigger <> 'branch' THEN 1 ELSE 0 END) AS BIGINT)"),
                "runs",
            )
            .column_as(sum(workflow_runs::Column::PromptTokens), "prompt_tokens")
            .column_as(
                sum(workflow_runs::Column::CompletionTokens),
                "completion_tokens",
            )
            .column_as(sum(workflow_runs::Column::CostMicros), "cost_micros")
            .column_as(sum(workflow_runs::Column::LlmCalls), "llm_calls")
            .filter(workflow_runs::Column::TenantId.eq(access.tenant_id))
            .filter(workflow_runs::Column::CreatedAt.gte(since))
            .filter(workflow_runs::Column::CreatedAt.lt(until))
            .into_tuple()
            .one(&self.db)
            .await
            .map_err(db_error)?;
        let (runs, run_prompt, run_completion, run_cost, run_calls) = runs.unwrap_or_default();
        // "Test this step" asks the model outside any run.
        let tests: Option<(i64, Option<i64>, Option<i64>, Option<i64>, Option<i64>)> =
            workflow_test_usage::Entity::find()
                .select_only()
                .column_as(Expr::col(workflow_test_usage::Column::Id).count(), "tests")
                .column_as(
                    sum(workflow_test_usage::Column::PromptTokens),
                    "prompt_tokens",
                )
                .column_as(
                    sum(workflow_test_usage::Column::CompletionTokens),
                    "completion_tokens",
                )
                .column_as(sum(workflow_test_usage::Column::CostMicros), "cost_micros")
                .column_as(sum(workflow_test_usage::Column::LlmCalls), "llm_calls")
                .filter(workflow_test_usage::Column::TenantId.eq(access.tenant_id))
                .filter(workflow_test_usage::Column::CreatedAt.gte(since))
                .filter(workflow_test_usage::Column::CreatedAt.lt(until))
                .into_tuple()
                .one(&self.db)
                .await
                .map_err(db_error)?;
        let (tests, test_prompt, test_completion, test_cost, test_calls) =
            tests.unwrap_or_default();
        let positive = |v: Option<i64>| u64::try_from(v.unwrap_or(0)).unwrap_or(0);
        Ok(UsageSummary {
            since,
            until,
            conversations: positive(Some(count)),
            turns: positive(turns),
            workflow_runs: positive(runs),
            step_tests: positive(Some(tests)),
            prompt_tokens: positive(prompt) + positive(run_prompt) + positive(test_prompt),
            completion_tokens: positive(completion)
                + positive(run_completion)
                + positive(test_completion),
            cost_usd: (positive(cost) + positive(run_cost) + positive(test_cost)) as f64
                / 1_000_000.0,
            llm_calls: positive(calls) + positive(run_calls) + positive(test_calls),
        })
    }

    async fn delete_router_rule(&self, access: &Access, id: Uuid) -> Result<(), AppError> {
        access.require(Area::Agents, Level::Write)?;
        let txn = self.db.begin().await.map_err(db_error)?;
        let deleted = router_rules::Entity::delete_many()
            .filter(router_rules::Column::TenantId.eq(access.tenant_id))
            .filter(router_rules::Column::Id.eq(id))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        if deleted.rows_affected == 0 {
            return Err(AppError::not_found("router rule"));
        }
        Record::by(access, "router_rule.delete", id.to_string())
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(())
    }
}
