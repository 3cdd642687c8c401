//! The application-service contract. `server` implements these traits; server functions and REST
//! handlers both call them, so each rule (validation, permissions, tenancy, audit) lives once.

use std::sync::Arc;

use uuid::Uuid;

use crate::error::AppError;
use crate::types::*;

/// Who is acting, seen by the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    User {
        id: Uuid,
        email: String,
    },
    ApiKey {
        id: Uuid,
        prefix: String,
    },
    /// A website visitor chatting through a widget: may reach only their own conversations
    /// on that widget (`server::widget` checks before calling a service).
    Visitor {
        id: Uuid,
        widget_id: Uuid,
    },
    /// A customer writing through a connected channel (Chatwoot): reaches only the
    /// conversations the channel maps to them (`server::integrations::chatwoot`).
    Channel {
        channel: Channel,
        /// Who writes, in the channel's terms (e.g. `<connection>/<contact>`).
        customer: String,
    },
    Cli,
    /// The platform itself, doing a scheduled task for the tenant (e.g. `google-sync`).
    System {
        task: String,
    },
}

impl Actor {
    pub fn label(&self) -> String {
        match self {
            Actor::User { email, .. } => format!("user:{email}"),
            Actor::ApiKey { prefix, .. } => format!("key:{prefix}"),
            Actor::Visitor { id, .. } => format!("visitor:{id}"),
            Actor::Channel { channel, customer } => format!("{}:{customer}", channel.as_str()),
            Actor::Cli => "cli".to_string(),
            Actor::System { task } => format!("system:{task}"),
        }
    }
}

/// An authenticated caller inside one tenant: every service call carries one.
#[derive(Clone, Debug)]
pub struct Access {
    pub tenant_id: Uuid,
    pub actor: Actor,
    /// The role when the caller is a console user; API keys have none.
    pub role: Option<Role>,
    pub scopes: Vec<Scope>,
    pub ip: Option<String>,
}

impl Access {
    pub fn require(&self, area: Area, level: Level) -> Result<(), AppError> {
        if self.scopes.iter().any(|s| s.allows(area, level)) {
            Ok(())
        } else {
            let level = if level == Level::Write {
                "write"
            } else {
                "read"
            };
            Err(AppError::Forbidden(format!(
                "this needs the {}:{level} permission",
                area.as_str()
            )))
        }
    }
}

#[async_trait::async_trait]
pub trait TenancyService: Send + Sync {
    async fn get_tenant(&self, access: &Access) -> Result<Tenant, AppError>;
    async fn update_tenant(
        &self,
        access: &Access,
        update: UpdateTenant,
    ) -> Result<Tenant, AppError>;

    async fn list_members(&self, access: &Access) -> Result<Vec<Member>, AppError>;
    async fn get_member(&self, access: &Access, user_id: Uuid) -> Result<Member, AppError>;
    /// Invites `email` with `role` (`members:write`). The response is the same whether or not
    /// the email has an account anywhere on the platform. A pending invitation to the same
    /// email is replaced.
    async fn invite_member(
        &self,
        access: &Access,
        invite: InviteMember,
    ) -> Result<CreatedInvitation, AppError>;
    /// Invitations, newest first (`members:read`).
    async fn list_invitations(&self, access: &Access) -> Result<Vec<Invitation>, AppError>;
    /// Revokes a pending invitation (`members:write`); its link stops working.
    async fn revoke_invitation(&self, access: &Access, id: Uuid) -> Result<Invitation, AppError>;
    async fn change_role(
        &self,
        access: &Access,
        user_id: Uuid,
        role: Role,
    ) -> Result<Member, AppError>;
    async fn remove_member(&self, access: &Access, user_id: Uuid) -> Result<(), AppError>;

    async fn list_api_keys(&self, access: &Access) -> Result<Vec<ApiKey>, AppError>;
    async fn get_api_key(&self, access: &Access, id: Uuid) -> Result<ApiKey, AppError>;
    async fn create_api_key(
        &self,
        access: &Access,
        create: CreateApiKey,
    ) -> Result<CreatedApiKey, AppError>;
    async fn revoke_api_key(&self, access: &Access, id: Uuid) -> Result<ApiKey, AppError>;

    async fn list_audit(
        &self,
        access: &Access,
        query: AuditQuery,
    ) -> Result<Page<AuditEntry>, AppError>;
}

/// The signed-in user's own account.
#[async_trait::async_trait]
pub trait AccountService: Send + Sync {
    /// Replaces the caller's password; every session made with the old one ends.
    async fn change_password(
        &self,
        access: &Access,
        change: PasswordChange,
    ) -> Result<(), AppError>;
    /// What an invitation link offers, to whoever holds it (no sign-in needed); a used,
    /// revoked, expired or unknown token is `not_found`.
    async fn preview_invitation(&self, token: &str) -> Result<InvitationPreview, AppError>;
}

/// Everything the server hands to server functions, one `Arc<dyn …>` per area.
#[derive(Clone)]
pub struct Services {
    pub tenancy: Arc<dyn TenancyService>,
    pub account: Arc<dyn AccountService>,
    pub jobs: Arc<dyn JobService>,
    pub knowledge: Arc<dyn KnowledgeService>,
    pub conversations: Arc<dyn ConversationService>,
    pub llm: Arc<dyn LlmSettingsService>,
    pub widgets: Arc<dyn WidgetService>,
    pub webhooks: Arc<dyn WebhookService>,
    pub email: Arc<dyn EmailSettingsService>,
    pub bookings: Arc<dyn BookingService>,
    pub chatwoot: Arc<dyn ChatwootService>,
    pub google: Arc<dyn GoogleCalendarService>,
    pub workflows: Arc<dyn WorkflowService>,
}

/// The tenant's workflows (`workflows:read` / `workflows:write`): drafts, published versions
/// and runs. Changes are audited; runs execute as jobs.
#[async_trait::async_trait]
pub trait WorkflowService: Send + Sync {
    async fn list_workflows(&self, access: &Access) -> Result<Vec<WorkflowSummary>, AppError>;
    async fn get_workflow(&self, access: &Access, id: Uuid) -> Result<Workflow, AppError>;
    /// A new workflow whose draft is `definition` (or a manual trigger alone).
    async fn create_workflow(
        &self,
        access: &Access,
        create: CreateWorkflow,
    ) -> Result<Workflow, AppError>;
    /// Saves the draft (and name, description). A draft may have problems; publishing may not.
    async fn update_workflow(
        &self,
        access: &Access,
        id: Uuid,
        update: UpdateWorkflow,
    ) -> Result<Workflow, AppError>;
    /// Deletes the workflow with its versions and runs; refused while runs are unfinished.
    async fn delete_workflow(&self, access: &Access, id: Uuid) -> Result<(), AppError>;
    /// Makes the draft the next immutable version (422 with the problems when it has any).
    async fn publish_workflow(
        &self,
        access: &Access,
        id: Uuid,
        publish: PublishWorkflow,
    ) -> Result<WorkflowVersion, AppError>;
    /// Published versions, newest first.
    async fn list_versions(
        &self,
        access: &Access,
        id: Uuid,
    ) -> Result<Vec<WorkflowVersion>, AppError>;
    async fn get_version(
        &self,
        access: &Access,
        id: Uuid,
        number: u32,
    ) -> Result<WorkflowVersion, AppError>;
    /// Copies a version into the draft.
    async fn restore_version(
        &self,
        access: &Access,
        id: Uuid,
        number: u32,
    ) -> Result<Workflow, AppError>;
    /// What changed from version `from` to version `to`.
    async fn diff_versions(
        &self,
        access: &Access,
        id: Uuid,
        from: u32,
        to: Option<u32>,
    ) -> Result<WorkflowDiff, AppError>;
    /// Tries one node of the draft with sample values; nothing is sent.
    async fn test_node(
        &self,
        access: &Access,
        id: Uuid,
        test: TestNode,
    ) -> Result<NodeTest, AppError>;
    /// Starts a run of a published version; its `trigger` says from where (`console`, `api`).
    async fn start_run(
        &self,
        access: &Access,
        id: Uuid,
        start: StartRun,
    ) -> Result<WorkflowRun, AppError>;
    async fn list_runs(
        &self,
        access: &Access,
        id: Uuid,
        query: RunQuery,
    ) -> Result<Page<WorkflowRun>, AppError>;
    async fn get_run(&self, access: &Access, run_id: Uuid) -> Result<RunDetail, AppError>;
    /// Stops an unfinished run; what its steps did is compensated.
    async fn cancel_run(&self, access: &Access, run_id: Uuid) -> Result<WorkflowRun, AppError>;
    /// Answers a run waiting for approval; it resumes by `approved` or `rejected`.
    async fn decide_run(
        &self,
        access: &Access,
        run_id: Uuid,
        decision: ApprovalDecision,
    ) -> Result<WorkflowRun, AppError>;
    /// Makes a new secret for the workflow's webhook trigger (the old one stops working) and
    /// returns it, this once, with the URL.
    async fn rotate_webhook_secret(
        &self,
        access: &Access,
        id: Uuid,
    ) -> Result<WorkflowWebhook, AppError>;
    /// The secrets HTTP steps can use, by name (never their values).
    async fn list_secrets(&self, access: &Access) -> Result<Vec<WorkflowSecret>, AppError>;
    /// Creates the secret `name` or replaces its value.
    async fn set_secret(
        &self,
        access: &Access,
        name: String,
        set: SetWorkflowSecret,
    ) -> Result<WorkflowSecret, AppError>;
    /// Deletes it; steps that use it fail from then on, naming it.
    async fn delete_secret(&self, access: &Access, name: String) -> Result<(), AppError>;
    /// Which graph answers each channel, and the workflows that could.
    async fn conversation_graphs(&self, access: &Access) -> Result<ConversationGraphs, AppError>;
    /// Chooses the graph that answers `channel`'s messages from the next turn on (a published
    /// workflow started by a customer's message, or none for the default graph).
    async fn set_conversation_graph(
        &self,
        access: &Access,
        channel: Channel,
        set: SetChannelGraph,
    ) -> Result<ConversationGraphs, AppError>;
}

/// The tenant's Google Calendar connection (`integrations:read` / `integrations:write`). It is
/// made by the OAuth flow in the browser, not here.
#[async_trait::async_trait]
pub trait GoogleCalendarService: Send + Sync {
    /// Whether the platform has a Google client, so tenants can connect.
    fn configured(&self) -> bool;
    /// The connection, or `not_found` when there is none.
    async fn get_google_calendar(&self, access: &Access) -> Result<GoogleCalendar, AppError>;
    /// Changes the tenant's choices (what the agents do while it needs reconnecting).
    async fn update_google_calendar(
        &self,
        access: &Access,
        settings: GoogleSettings,
    ) -> Result<GoogleCalendar, AppError>;
    /// Revokes the grant at Google and deletes the tokens.
    async fn disconnect_google_calendar(&self, access: &Access) -> Result<(), AppError>;
}

/// The tenant's Chatwoot inbox as a channel (`integrations:read` / `integrations:write`):
/// its agents answer the inbox's customers through an agent bot.
#[async_trait::async_trait]
pub trait ChatwootService: Send + Sync {
    /// The connection, or `not_found` when there is none.
    async fn get_chatwoot(&self, access: &Access) -> Result<ChatwootConnection, AppError>;
    /// Connects the inbox, or changes the connection. A new connection gets a webhook secret,
    /// returned this once; it needs an access token.
    async fn save_chatwoot(
        &self,
        access: &Access,
        settings: ChatwootSettings,
    ) -> Result<ChatwootConnection, AppError>;
    /// A new webhook secret (returned this once); the old one stops working at once.
    async fn rotate_chatwoot_secret(&self, access: &Access)
        -> Result<ChatwootConnection, AppError>;
    /// Disconnects: the token and secret are deleted; the conversations stay.
    async fn delete_chatwoot(&self, access: &Access) -> Result<(), AppError>;
}

/// The tenant's appointments (`bookings:read` / `bookings:write`), whoever made them. Changes
/// go through the tenant's calendar, are audited, emit webhook events and email the customer.
#[async_trait::async_trait]
pub trait BookingService: Send + Sync {
    /// By start time, then id.
    async fn list_bookings(
        &self,
        access: &Access,
        query: BookingQuery,
    ) -> Result<Page<Booking>, AppError>;
    async fn get_booking(&self, access: &Access, id: Uuid) -> Result<Booking, AppError>;
    /// Refused with a conflict when the time overlaps a confirmed booking.
    async fn create_booking(
        &self,
        access: &Access,
        booking: CreateBooking,
    ) -> Result<Booking, AppError>;
    async fn reschedule_booking(
        &self,
        access: &Access,
        id: Uuid,
        change: RescheduleBooking,
    ) -> Result<Booking, AppError>;
    async fn cancel_booking(
        &self,
        access: &Access,
        id: Uuid,
        cancel: CancelBooking,
    ) -> Result<Booking, AppError>;
}

/// The tenant's chat widgets (`widgets:read` / `widgets:write`). What visitors do through a
/// widget is not here: the widget's own endpoints serve them (`server::widget`).
#[async_trait::async_trait]
pub trait WidgetService: Send + Sync {
    async fn list_widgets(&self, access: &Access) -> Result<Vec<Widget>, AppError>;
    async fn get_widget(&self, access: &Access, id: Uuid) -> Result<Widget, AppError>;
    /// A new widget with a fresh identity-verification secret (shown once).
    async fn create_widget(
        &self,
        access: &Access,
        settings: WidgetSettings,
    ) -> Result<WidgetWithSecret, AppError>;
    /// Replaces the widget's settings.
    async fn update_widget(
        &self,
        access: &Access,
        id: Uuid,
        settings: WidgetSettings,
    ) -> Result<Widget, AppError>;
    /// A new identity-verification secret; the old one stops working at once.
    async fn rotate_widget_secret(
        &self,
        access: &Access,
        id: Uuid,
    ) -> Result<WidgetWithSecret, AppError>;
    /// Deletes the widget and its visitors' sessions; their conversations stay.
    async fn delete_widget(&self, access: &Access, id: Uuid) -> Result<(), AppError>;
}

/// The tenant's outgoing webhooks (`integrations:read` / `integrations:write`): endpoints, the
/// events they take, and the log of deliveries.
#[async_trait::async_trait]
pub trait WebhookService: Send + Sync {
    async fn list_webhooks(&self, access: &Access) -> Result<Vec<Webhook>, AppError>;
    async fn get_webhook(&self, access: &Access, id: Uuid) -> Result<Webhook, AppError>;
    /// A new endpoint with a fresh signing secret (shown once).
    async fn create_webhook(
        &self,
        access: &Access,
        settings: WebhookSettings,
    ) -> Result<WebhookWithSecret, AppError>;
    /// Replaces the endpoint's settings; deliveries already queued keep their body.
    async fn update_webhook(
        &self,
        access: &Access,
        id: Uuid,
        settings: WebhookSettings,
    ) -> Result<Webhook, AppError>;
    /// A new signing secret; the old one stops being used at once.
    async fn rotate_webhook_secret(
        &self,
        access: &Access,
        id: Uuid,
    ) -> Result<WebhookWithSecret, AppError>;
    /// Deletes the endpoint and its delivery log.
    async fn delete_webhook(&self, access: &Access, id: Uuid) -> Result<(), AppError>;
    /// Queues a `webhook.test` event to the endpoint, whatever it subscribes to.
    async fn test_webhook(&self, access: &Access, id: Uuid) -> Result<WebhookDelivery, AppError>;
    /// The endpoint's deliveries, newest first.
    async fn list_deliveries(
        &self,
        access: &Access,
        id: Uuid,
        query: DeliveryQuery,
    ) -> Result<Page<WebhookDelivery>, AppError>;
    /// Sends a past delivery's event again, as a new delivery with the same event id and body.
    async fn replay_delivery(
        &self,
        access: &Access,
        id: Uuid,
        delivery: Uuid,
    ) -> Result<WebhookDelivery, AppError>;
}

/// Which service sends the tenant's email (`integrations:read` / `integrations:write`): the
/// platform's SMTP relay, or the tenant's own SendGrid or Mailgun account.
#[async_trait::async_trait]
pub trait EmailSettingsService: Send + Sync {
    async fn get_email_settings(&self, access: &Access) -> Result<EmailSettings, AppError>;
    /// Sends through the tenant's own provider from now on.
    async fn update_email_settings(
        &self,
        access: &Access,
        update: UpdateEmailSettings,
    ) -> Result<EmailSettings, AppError>;
    /// Back to the platform's relay; the stored key is deleted.
    async fn reset_email_settings(&self, access: &Access) -> Result<EmailSettings, AppError>;
    /// Queues a short message to `to` through the provider in use; returns its job.
    async fn send_test_email(&self, access: &Access, test: TestEmail) -> Result<Job, AppError>;
}

/// The tenant's LLM provider: its own OpenAI-compatible endpoint and key, or the platform's.
#[async_trait::async_trait]
pub trait LlmSettingsService: Send + Sync {
    /// The provider in use (`tenant:read`); never the key, only its last characters.
    async fn get_llm_settings(&self, access: &Access) -> Result<LlmSettings, AppError>;
    /// The tenant's own provider (`tenant:write`), used from the next turn; the key is stored
    /// encrypted.
    async fn update_llm_settings(
        &self,
        access: &Access,
        update: UpdateLlmSettings,
    ) -> Result<LlmSettings, AppError>;
    /// Back to the platform's provider (`tenant:write`); the stored key is deleted.
    async fn reset_llm_settings(&self, access: &Access) -> Result<LlmSettings, AppError>;
}

/// Receives the events of a streamed turn as they happen (a no-op when nobody streams).
pub type EventSink = Arc<dyn Fn(StreamEvent) + Send + Sync>;

/// Conversations with the tenant's agents, the human handoff, and the router's rules.
#[async_trait::async_trait]
pub trait ConversationService: Send + Sync {
    async fn create_conversation(
        &self,
        access: &Access,
        create: CreateConversation,
    ) -> Result<Conversation, AppError>;
    async fn list_conversations(
        &self,
        access: &Access,
        query: ConversationQuery,
    ) -> Result<Page<Conversation>, AppError>;
    async fn get_conversation(
        &self,
        access: &Access,
        id: Uuid,
    ) -> Result<ConversationDetail, AppError>;
    /// Runs the agent graph on the customer's message (unless a person owns the
    /// conversation, in which case the bot stays silent).
    async fn post_message(
        &self,
        access: &Access,
        id: Uuid,
        message: PostMessage,
        events: EventSink,
    ) -> Result<TurnResult, AppError>;
    /// The step trace of the turn a customer message started.
    async fn list_steps(
        &self,
        access: &Access,
        id: Uuid,
        message_id: Uuid,
    ) -> Result<Vec<Step>, AppError>;
    async fn rate_message(
        &self,
        access: &Access,
        id: Uuid,
        message_id: Uuid,
        feedback: Feedback,
    ) -> Result<Message, AppError>;
    /// An operator takes the conversation: the bot stays silent.
    async fn take_over(&self, access: &Access, id: Uuid) -> Result<Conversation, AppError>;
    /// The operator gives the conversation back to the bot.
    async fn hand_back(&self, access: &Access, id: Uuid) -> Result<Conversation, AppError>;
    /// An operator's message (taking the conversation if it was waiting for a person).
    async fn operator_reply(
        &self,
        access: &Access,
        id: Uuid,
        reply: OperatorReply,
    ) -> Result<Message, AppError>;

    async fn list_router_rules(&self, access: &Access) -> Result<Vec<RouterRule>, AppError>;
    async fn create_router_rule(
        &self,
        access: &Access,
        create: CreateRouterRule,
    ) -> Result<RouterRule, AppError>;
    async fn delete_router_rule(&self, access: &Access, id: Uuid) -> Result<(), AppError>;

    /// The agent's prompt in use (the tenant's newest version, or the built-in default).
    async fn get_prompt(&self, access: &Access, agent: &str) -> Result<AgentPrompt, AppError>;
    /// Saves a new version, which the agent uses from its next turn.
    async fn save_prompt(
        &self,
        access: &Access,
        agent: &str,
        save: SavePrompt,
    ) -> Result<AgentPrompt, AppError>;
    /// Saves the built-in default as a new version (the history is kept).
    async fn restore_default_prompt(
        &self,
        access: &Access,
        agent: &str,
    ) -> Result<AgentPrompt, AppError>;
    async fn diff_prompts(
        &self,
        access: &Access,
        agent: &str,
        query: PromptDiffQuery,
    ) -> Result<PromptDiff, AppError>;

    /// The tenant's agents (built-in and its own) and the tools they can be given.
    async fn list_agents(&self, access: &Access) -> Result<AgentCatalogue, AppError>;
    /// A specialist of the tenant's own; the router can send to it from the next message.
    async fn create_agent(&self, access: &Access, create: CreateAgent) -> Result<Agent, AppError>;
    /// Changes an agent's description, tools or knowledge bases (built-in ones too).
    async fn update_agent(
        &self,
        access: &Access,
        agent: &str,
        update: UpdateAgent,
    ) -> Result<Agent, AppError>;
    /// Deletes a tenant's own agent, or undoes the changes to a built-in one.
    async fn delete_agent(&self, access: &Access, agent: &str) -> Result<(), AppError>;

    /// Tokens and cost of the tenant's conversations over a period.
    async fn usage(&self, access: &Access, query: UsageQuery) -> Result<UsageSummary, AppError>;
}

/// One file handed to [`KnowledgeService::upload_documents`].
#[derive(Clone, Debug)]
pub struct Upload {
    pub filename: String,
    pub content_type: Option<String>,
    pub bytes: Vec<u8>,
    pub meta: DocumentMeta,
}

/// A tenant's knowledge bases, their documents and retrieval over them.
#[async_trait::async_trait]
pub trait KnowledgeService: Send + Sync {
    async fn list_knowledge_bases(&self, access: &Access) -> Result<Vec<KnowledgeBase>, AppError>;
    async fn get_knowledge_base(
        &self,
        access: &Access,
        id: Uuid,
    ) -> Result<KnowledgeBase, AppError>;
    async fn create_knowledge_base(
        &self,
        access: &Access,
        create: CreateKnowledgeBase,
    ) -> Result<KnowledgeBase, AppError>;
    async fn update_knowledge_base(
        &self,
        access: &Access,
        id: Uuid,
        update: UpdateKnowledgeBase,
    ) -> Result<KnowledgeBase, AppError>;
    /// Deletes the knowledge base, its documents and its index.
    async fn delete_knowledge_base(&self, access: &Access, id: Uuid) -> Result<(), AppError>;

    async fn list_documents(
        &self,
        access: &Access,
        kb: Uuid,
        query: DocumentQuery,
    ) -> Result<Page<Document>, AppError>;
    async fn get_document(&self, access: &Access, kb: Uuid, id: Uuid)
        -> Result<Document, AppError>;
    /// Stores the files and queues their ingestion. All or nothing: one unreadable file
    /// refuses the whole upload. A file whose name matches an existing document replaces it.
    async fn upload_documents(
        &self,
        access: &Access,
        kb: Uuid,
        files: Vec<Upload>,
    ) -> Result<Vec<Document>, AppError>;
    /// Queues a document to be fetched from a URL and ingested.
    async fn fetch_document(
        &self,
        access: &Access,
        kb: Uuid,
        fetch: FetchDocument,
    ) -> Result<Document, AppError>;
    /// Deletes a document and its chunks (safe while it is being ingested).
    async fn delete_document(&self, access: &Access, kb: Uuid, id: Uuid) -> Result<(), AppError>;

    async fn search(
        &self,
        access: &Access,
        kb: Uuid,
        request: SearchRequest,
    ) -> Result<SearchResponse, AppError>;
}

/// A tenant's background jobs: what the console's Jobs page and `/api/v1/jobs` show and do.
#[async_trait::async_trait]
pub trait JobService: Send + Sync {
    async fn list_jobs(&self, access: &Access, query: JobQuery) -> Result<Page<Job>, AppError>;
    async fn get_job(&self, access: &Access, id: Uuid) -> Result<Job, AppError>;
    async fn job_stats(&self, access: &Access) -> Result<JobStats, AppError>;
    /// A dead or discarded job runs again, with a fresh set of attempts.
    async fn retry_job(&self, access: &Access, id: Uuid) -> Result<Job, AppError>;
    /// A queued or dead job is set aside for good.
    async fn discard_job(&self, access: &Access, id: Uuid) -> Result<Job, AppError>;
    /// The tenant's recurring jobs, by name.
    async fn list_schedules(&self, access: &Access) -> Result<Vec<JobSchedule>, AppError>;
}

pub fn use_services() -> Result<Services, AppError> {
    leptos::prelude::use_context::<Services>()
        .ok_or_else(|| AppError::Internal("services missing from context".into()))
}

/// The request's parts, which the server's session middleware has annotated.
fn request_parts() -> Result<http::request::Parts, AppError> {
    leptos::prelude::use_context::<http::request::Parts>()
        .ok_or_else(|| AppError::Internal("request missing from context".into()))
}

/// The signed-in console user, as the server's session middleware found them.
pub fn current_user() -> Result<CurrentUser, AppError> {
    request_parts()?
        .extensions
        .get::<CurrentUser>()
        .cloned()
        .ok_or(AppError::Unauthorized)
}

/// The signed-in console user's access to their current tenant. An account still on its
/// temporary password has none: it may only choose its own ([`account_access`]).
pub fn console_access() -> Result<Access, AppError> {
    let parts = request_parts()?;
    if let Some(access) = parts.extensions.get::<Access>() {
        return Ok(access.clone());
    }
    match parts.extensions.get::<CurrentUser>() {
        Some(user) if user.must_change_password => Err(AppError::Forbidden(
            "choose your own password first (Your account)".into(),
        )),
        _ => Err(AppError::Unauthorized),
    }
}

/// The signed-in person acting on their own account, whatever their password's state.
pub fn account_access() -> Result<Access, AppError> {
    request_parts()?
        .extensions
        .get::<AccountAccess>()
        .map(|a| a.0.clone())
        .ok_or(AppError::Unauthorized)
}

/// Set for every signed-in person: what [`account_access`] returns.
#[derive(Clone, Debug)]
pub struct AccountAccess(pub Access);
