//! Server functions: the console's door into the service layer. Each body is one call.
//! Endpoints are named explicitly (`/_fn/NAME`) so their URLs are stable.

use leptos::prelude::*;
use uuid::Uuid;

use crate::error::AppError;
use crate::types::*;

#[cfg(feature = "ssr")]
use crate::services::{account_access, console_access, current_user, use_services};

#[server(prefix = "/_fn", endpoint = "whoami")]
pub async fn whoami() -> Result<CurrentUser, AppError> {
    current_user()
}

#[server(prefix = "/_fn", endpoint = "get_tenant")]
pub async fn get_tenant() -> Result<Tenant, AppError> {
    use_services()?.tenancy.get_tenant(&console_access()?).await
}

#[server(prefix = "/_fn", endpoint = "save_settings")]
pub async fn save_settings(update: UpdateTenant) -> Result<Tenant, AppError> {
    use_services()?
        .tenancy
        .update_tenant(&console_access()?, update)
        .await
}

#[server(prefix = "/_fn", endpoint = "list_members")]
pub async fn list_members() -> Result<Vec<Member>, AppError> {
    use_services()?
        .tenancy
        .list_members(&console_access()?)
        .await
}

// `name` keeps the struct apart from the `InviteMember` request type.
#[server(name = SendInvitation, prefix = "/_fn", endpoint = "invite_member")]
pub async fn invite_member(invite: InviteMember) -> Result<CreatedInvitation, AppError> {
    use_services()?
        .tenancy
        .invite_member(&console_access()?, invite)
        .await
}

#[server(prefix = "/_fn", endpoint = "list_invitations")]
pub async fn list_invitations() -> Result<Vec<Invitation>, AppError> {
    use_services()?
        .tenancy
        .list_invitations(&console_access()?)
        .await
}

#[server(prefix = "/_fn", endpoint = "revoke_invitation")]
pub async fn revoke_invitation(id: Uuid) -> Result<Invitation, AppError> {
    use_services()?
        .tenancy
        .revoke_invitation(&console_access()?, id)
        .await
}

#[server(prefix = "/_fn", endpoint = "preview_invitation")]
pub async fn preview_invitation(token: String) -> Result<InvitationPreview, AppError> {
    use_services()?.account.preview_invitation(&token).await
}

#[server(prefix = "/_fn", endpoint = "change_role")]
pub async fn change_role(user_id: Uuid, role: Role) -> Result<Member, AppError> {
    use_services()?
        .tenancy
        .change_role(&console_access()?, user_id, role)
        .await
}

#[server(prefix = "/_fn", endpoint = "remove_member")]
pub async fn remove_member(user_id: Uuid) -> Result<(), AppError> {
    use_services()?
        .tenancy
        .remove_member(&console_access()?, user_id)
        .await
}

#[server(prefix = "/_fn", endpoint = "list_api_keys")]
pub async fn list_api_keys() -> Result<Vec<ApiKey>, AppError> {
    use_services()?
        .tenancy
        .list_api_keys(&console_access()?)
        .await
}

#[server(prefix = "/_fn", endpoint = "issue_api_key")]
pub async fn issue_api_key(create: CreateApiKey) -> Result<CreatedApiKey, AppError> {
    use_services()?
        .tenancy
        .create_api_key(&console_access()?, create)
        .await
}

#[server(prefix = "/_fn", endpoint = "revoke_api_key")]
pub async fn revoke_api_key(id: Uuid) -> Result<ApiKey, AppError> {
    use_services()?
        .tenancy
        .revoke_api_key(&console_access()?, id)
        .await
}

#[server(prefix = "/_fn", endpoint = "list_audit")]
pub async fn list_audit(query: AuditQuery) -> Result<Page<AuditEntry>, AppError> {
    use_services()?
        .tenancy
        .list_audit(&console_access()?, query)
        .await
}

#[server(prefix = "/_fn", endpoint = "change_password")]
pub async fn change_password(change: PasswordChange) -> Result<(), AppError> {
    use_services()?
        .account
        .change_password(&account_access()?, change)
        .await
}

#[server(prefix = "/_fn", endpoint = "job_stats")]
pub async fn get_job_stats() -> Result<JobStats, AppError> {
    use_services()?.jobs.job_stats(&console_access()?).await
}

#[server(prefix = "/_fn", endpoint = "list_jobs")]
pub async fn list_jobs(query: JobQuery) -> Result<Page<Job>, AppError> {
    use_services()?
        .jobs
        .list_jobs(&console_access()?, query)
        .await
}

#[server(prefix = "/_fn", endpoint = "retry_job")]
pub async fn retry_job(id: Uuid) -> Result<Job, AppError> {
    use_services()?.jobs.retry_job(&console_access()?, id).await
}

#[server(prefix = "/_fn", endpoint = "discard_job")]
pub async fn discard_job(id: Uuid) -> Result<Job, AppError> {
    use_services()?
        .jobs
        .discard_job(&console_access()?, id)
        .await
}

#[server(prefix = "/_fn", endpoint = "list_job_schedules")]
pub async fn list_job_schedules() -> Result<Vec<JobSchedule>, AppError> {
    use_services()?
        .jobs
        .list_schedules(&console_access()?)
        .await
}

#[server(prefix = "/_fn", endpoint = "list_knowledge_bases")]
pub async fn list_knowledge_bases() -> Result<Vec<KnowledgeBase>, AppError> {
    use_services()?
        .knowledge
        .list_knowledge_bases(&console_access()?)
        .await
}

// `name` keeps the struct apart from the `CreateKnowledgeBase` request type.
#[server(name = NewKnowledgeBase, prefix = "/_fn", endpoint = "create_knowledge_base")]
pub async fn create_knowledge_base(
    name: String,
    description: Option<String>,
    visibility: Visibility,
) -> Result<KnowledgeBase, AppError> {
    let create = CreateKnowledgeBase {
        name,
        description,
        visibility: Some(visibility),
        ..Default::default()
    };
    use_services()?
        .knowledge
        .create_knowledge_base(&console_access()?, create)
        .await
}

#[server(prefix = "/_fn", endpoint = "set_knowledge_base_visibility")]
pub async fn set_knowledge_base_visibility(
    id: Uuid,
    visibility: Visibility,
) -> Result<KnowledgeBase, AppError> {
    let update = UpdateKnowledgeBase {
        visibility: Some(visibility),
        ..Default::default()
    };
    use_services()?
        .knowledge
        .update_knowledge_base(&console_access()?, id, update)
        .await
}

#[server(prefix = "/_fn", endpoint = "delete_knowledge_base")]
pub async fn delete_knowledge_base(id: Uuid) -> Result<(), AppError> {
    use_services()?
        .knowledge
        .delete_knowledge_base(&console_access()?, id)
        .await
}

#[server(prefix = "/_fn", endpoint = "list_documents")]
pub async fn list_documents(kb: Uuid, cursor: Option<String>) -> Result<Page<Document>, AppError> {
    let query = DocumentQuery {
        cursor,
        ..Default::default()
    };
    use_services()?
        .knowledge
        .list_documents(&console_access()?, kb, query)
        .await
}

#[server(prefix = "/_fn", endpoint = "delete_document")]
pub async fn delete_document(kb: Uuid, id: Uuid) -> Result<(), AppError> {
    use_services()?
        .knowledge
        .delete_document(&console_access()?, kb, id)
        .await
}

#[server(prefix = "/_fn", endpoint = "search_knowledge")]
pub async fn search_knowledge(
    kb: Uuid,
    query: String,
    mode: String,
    top_k: u32,
    rrf_k: u32,
    adaptive: bool,
) -> Result<SearchResponse, AppError> {
    let mode = SearchMode::parse(&mode)
        .ok_or_else(|| AppError::invalid("mode", "must be hybrid, vector or fulltext"))?;
    let request = SearchRequest {
        query,
        mode: Some(mode),
        top_k: Some(top_k),
        rrf_k: Some(rrf_k),
        adaptive: Some(adaptive),
        ..Default::default()
    };
    use_services()?
        .knowledge
        .search(&console_access()?, kb, request)
        .await
}

#[server(prefix = "/_fn", endpoint = "list_conversations")]
pub async fn list_conversations(query: ConversationQuery) -> Result<Page<Conversation>, AppError> {
    use_services()?
        .conversations
        .list_conversations(&console_access()?, query)
        .await
}

#[server(prefix = "/_fn", endpoint = "get_conversation")]
pub async fn get_conversation(id: Uuid) -> Result<ConversationDetail, AppError> {
    use_services()?
        .conversations
        .get_conversation(&console_access()?, id)
        .await
}

#[server(prefix = "/_fn", endpoint = "start_conversation")]
pub async fn start_conversation() -> Result<Conversation, AppError> {
    let create = CreateConversation {
        channel: Some(Channel::Console),
        title: None,
        history: Vec::new(),
    };
    use_services()?
        .conversations
        .create_conversation(&console_access()?, create)
        .await
}

/// The playground's message: answered like a customer's, with the step trace.
#[server(prefix = "/_fn", endpoint = "send_message")]
pub async fn send_message(id: Uuid, content: String) -> Result<TurnResult, AppError> {
    let message = PostMessage {
        content,
        stream: false,
    };
    let silent: crate::services::EventSink = std::sync::Arc::new(|_| {});
    use_services()?
        .conversations
        .post_message(&console_access()?, id, message, silent)
        .await
}

#[server(prefix = "/_fn", endpoint = "take_over")]
pub async fn take_over(id: Uuid) -> Result<Conversation, AppError> {
    use_services()?
        .conversations
        .take_over(&console_access()?, id)
        .await
}

#[server(prefix = "/_fn", endpoint = "hand_back")]
pub async fn hand_back(id: Uuid) -> Result<Conversation, AppError> {
    use_services()?
        .conversations
        .hand_back(&console_access()?, id)
        .await
}

#[server(prefix = "/_fn", endpoint = "reply_as_operator")]
pub async fn reply_as_operator(id: Uuid, content: String) -> Result<Message, AppError> {
    use_services()?
        .conversations
        .operator_reply(&console_access()?, id, OperatorReply { content })
        .await
}

#[server(prefix = "/_fn", endpoint = "list_router_rules")]
pub async fn list_router_rules() -> Result<Vec<RouterRule>, AppError> {
    use_services()?
        .conversations
        .list_router_rules(&console_access()?)
        .await
}

#[server(prefix = "/_fn", endpoint = "add_router_rule")]
pub async fn add_router_rule(create: CreateRouterRule) -> Result<RouterRule, AppError> {
    use_services()?
        .conversations
        .create_router_rule(&console_access()?, create)
        .await
}

#[server(prefix = "/_fn", endpoint = "delete_router_rule")]
pub async fn delete_router_rule(id: Uuid) -> Result<(), AppError> {
    use_services()?
        .conversations
        .delete_router_rule(&console_access()?, id)
        .await
}

#[server(prefix = "/_fn", endpoint = "get_prompt")]
pub async fn get_prompt(agent: String) -> Result<AgentPrompt, AppError> {
    use_services()?
        .conversations
        .get_prompt(&console_access()?, &agent)
        .await
}

#[server(prefix = "/_fn", endpoint = "store_prompt")]
pub async fn store_prompt(agent: String, save: SavePrompt) -> Result<AgentPrompt, AppError> {
    use_services()?
        .conversations
        .save_prompt(&console_access()?, &agent, save)
        .await
}

#[server(prefix = "/_fn", endpoint = "restore_default_prompt")]
pub async fn restore_default_prompt(agent: String) -> Result<AgentPrompt, AppError> {
    use_services()?
        .conversations
        .restore_default_prompt(&console_access()?, &agent)
        .await
}

#[server(prefix = "/_fn", endpoint = "diff_prompts")]
pub async fn diff_prompts(agent: String, from: u32, to: u32) -> Result<PromptDiff, AppError> {
    use_services()?
        .conversations
        .diff_prompts(&console_access()?, &agent, PromptDiffQuery { from, to })
        .await
}

#[server(prefix = "/_fn", endpoint = "get_llm_settings")]
pub async fn get_llm_settings() -> Result<LlmSettings, AppError> {
    use_services()?
        .llm
        .get_llm_settings(&console_access()?)
        .await
}

#[server(prefix = "/_fn", endpoint = "save_llm_settings")]
pub async fn save_llm_settings(update: UpdateLlmSettings) -> Result<LlmSettings, AppError> {
    use_services()?
        .llm
        .update_llm_settings(&console_access()?, update)
        .await
}

#[server(prefix = "/_fn", endpoint = "reset_llm_settings")]
pub async fn reset_llm_settings() -> Result<LlmSettings, AppError> {
    use_services()?
        .llm
        .reset_llm_settings(&console_access()?)
        .await
}

#[server(prefix = "/_fn", endpoint = "list_agents")]
pub async fn list_agents() -> Result<AgentCatalogue, AppError> {
    use_services()?
        .conversations
        .list_agents(&console_access()?)
        .await
}

#[server(prefix = "/_fn", endpoint = "add_agent")]
pub async fn add_agent(create: CreateAgent) -> Result<Agent, AppError> {
    use_services()?
        .conversations
        .create_agent(&console_access()?, create)
        .await
}

#[server(prefix = "/_fn", endpoint = "change_agent")]
pub async fn change_agent(agent: String, update: UpdateAgent) -> Result<Agent, AppError> {
    use_services()?
        .conversations
        .update_agent(&console_access()?, &agent, update)
        .await
}

#[server(prefix = "/_fn", endpoint = "remove_agent")]
pub async fn remove_agent(agent: String) -> Result<(), AppError> {
    use_services()?
        .conversations
        .delete_agent(&console_access()?, &agent)
        .await
}

#[server(prefix = "/_fn", endpoint = "get_usage")]
pub async fn get_usage() -> Result<UsageSummary, AppError> {
    use_services()?
        .conversations
        .usage(&console_access()?, UsageQuery::default())
        .await
}

#[server(prefix = "/_fn", endpoint = "list_widgets")]
pub async fn list_widgets() -> Result<Vec<Widget>, AppError> {
    use_services()?
        .widgets
        .list_widgets(&console_access()?)
        .await
}

#[server(prefix = "/_fn", endpoint = "create_widget")]
pub async fn create_widget(settings: WidgetSettings) -> Result<WidgetWithSecret, AppError> {
    use_services()?
        .widgets
        .create_widget(&console_access()?, settings)
        .await
}

#[server(prefix = "/_fn", endpoint = "update_widget")]
pub async fn update_widget(id: Uuid, settings: WidgetSettings) -> Result<Widget, AppError> {
    use_services()?
        .widgets
        .update_widget(&console_access()?, id, settings)
        .await
}

#[server(prefix = "/_fn", endpoint = "rotate_widget_secret")]
pub async fn rotate_widget_secret(id: Uuid) -> Result<WidgetWithSecret, AppError> {
    use_services()?
        .widgets
        .rotate_widget_secret(&console_access()?, id)
        .await
}

#[server(prefix = "/_fn", endpoint = "delete_widget")]
pub async fn delete_widget(id: Uuid) -> Result<(), AppError> {
    use_services()?
        .widgets
        .delete_widget(&console_access()?, id)
        .await
}

#[server(prefix = "/_fn", endpoint = "list_webhooks")]
pub async fn list_webhooks() -> Result<Vec<Webhook>, AppError> {
    use_services()?
        .webhooks
        .list_webhooks(&console_access()?)
        .await
}

#[server(prefix = "/_fn", endpoint = "create_webhook")]
pub async fn create_webhook(settings: WebhookSettings) -> Result<WebhookWithSecret, AppError> {
    use_services()?
        .webhooks
        .create_webhook(&console_access()?, settings)
        .await
}

#[server(prefix = "/_fn", endpoint = "update_webhook")]
pub async fn update_webhook(id: Uuid, settings: WebhookSettings) -> Result<Webhook, AppError> {
    use_services()?
        .webhooks
        .update_webhook(&console_access()?, id, settings)
        .await
}

#[server(prefix = "/_fn", endpoint = "rotate_webhook_secret")]
pub async fn rotate_webhook_secret(id: Uuid) -> Result<WebhookWithSecret, AppError> {
    use_services()?
        .webhooks
        .rotate_webhook_secret(&console_access()?, id)
        .await
}

#[server(prefix = "/_fn", endpoint = "delete_webhook")]
pub async fn delete_webhook(id: Uuid) -> Result<(), AppError> {
    use_services()?
        .webhooks
        .delete_webhook(&console_access()?, id)
        .await
}

#[server(prefix = "/_fn", endpoint = "test_webhook")]
pub async fn test_webhook(id: Uuid) -> Result<WebhookDelivery, AppError> {
    use_services()?
        .webhooks
        .test_webhook(&console_access()?, id)
        .await
}

#[server(prefix = "/_fn", endpoint = "list_webhook_deliveries")]
pub async fn list_webhook_deliveries(
    id: Uuid,
    query: DeliveryQuery,
) -> Result<Page<WebhookDelivery>, AppError> {
    use_services()?
        .webhooks
        .list_deliveries(&console_access()?, id, query)
        .await
}

#[server(prefix = "/_fn", endpoint = "replay_webhook_delivery")]
pub async fn replay_webhook_delivery(
    id: Uuid,
    delivery: Uuid,
) -> Result<WebhookDelivery, AppError> {
    use_services()?
        .webhooks
        .replay_delivery(&console_access()?, id, delivery)
        .await
}

#[server(prefix = "/_fn", endpoint = "get_email_settings")]
pub async fn get_email_settings() -> Result<EmailSettings, AppError> {
    use_services()?
        .email
        .get_email_settings(&console_access()?)
        .await
}

#[server(prefix = "/_fn", endpoint = "save_email_settings")]
pub async fn save_email_settings(update: UpdateEmailSettings) -> Result<EmailSettings, AppError> {
    use_services()?
        .email
        .update_email_settings(&console_access()?, update)
        .await
}

#[server(prefix = "/_fn", endpoint = "reset_email_settings")]
pub async fn reset_email_settings() -> Result<EmailSettings, AppError> {
    use_services()?
        .email
        .reset_email_settings(&console_access()?)
        .await
}

/// The Google Calendar panel: whether the platform can connect one, and the connection.
#[server(prefix = "/_fn", endpoint = "get_google_calendar")]
pub async fn get_google_calendar() -> Result<GooglePanel, AppError> {
    let google = use_services()?.google;
    let connection = match google.get_google_calendar(&console_access()?).await {
        Err(AppError::NotFound(_)) => None,
        other => Some(other?),
    };
    Ok(GooglePanel {
        configured: google.configured(),
        connection,
    })
}

#[server(prefix = "/_fn", endpoint = "update_google_calendar")]
pub async fn update_google_calendar(settings: GoogleSettings) -> Result<GoogleCalendar, AppError> {
    use_services()?
        .google
        .update_google_calendar(&console_access()?, settings)
        .await
}

#[server(prefix = "/_fn", endpoint = "disconnect_google_calendar")]
pub async fn disconnect_google_calendar() -> Result<(), AppError> {
    use_services()?
        .google
        .disconnect_google_calendar(&console_access()?)
        .await
}

/// The Chatwoot connection; `None` when there is none.
#[server(prefix = "/_fn", endpoint = "get_chatwoot")]
pub async fn get_chatwoot() -> Result<Option<ChatwootConnection>, AppError> {
    match use_services()?
        .chatwoot
        .get_chatwoot(&console_access()?)
        .await
    {
        Err(AppError::NotFound(_)) => Ok(None),
        other => other.map(Some),
    }
}

#[server(prefix = "/_fn", endpoint = "save_chatwoot")]
pub async fn save_chatwoot(settings: ChatwootSettings) -> Result<ChatwootConnection, AppError> {
    use_services()?
        .chatwoot
        .save_chatwoot(&console_access()?, settings)
        .await
}

#[server(prefix = "/_fn", endpoint = "rotate_chatwoot_secret")]
pub async fn rotate_chatwoot_secret() -> Result<ChatwootConnection, AppError> {
    use_services()?
        .chatwoot
        .rotate_chatwoot_secret(&console_access()?)
        .await
}

#[server(prefix = "/_fn", endpoint = "delete_chatwoot")]
pub async fn delete_chatwoot() -> Result<(), AppError> {
    use_services()?
        .chatwoot
        .delete_chatwoot(&console_access()?)
        .await
}

#[server(prefix = "/_fn", endpoint = "send_test_email")]
pub async fn send_test_email(test: TestEmail) -> Result<Job, AppError> {
    use_services()?
        .email
        .send_test_email(&console_access()?, test)
        .await
}

#[server(prefix = "/_fn", endpoint = "list_bookings")]
pub async fn list_bookings(query: BookingQuery) -> Result<Page<Booking>, AppError> {
    use_services()?
        .bookings
        .list_bookings(&console_access()?, query)
        .await
}

#[server(prefix = "/_fn", endpoint = "get_booking")]
pub async fn get_booking(id: Uuid) -> Result<Booking, AppError> {
    use_services()?
        .bookings
        .get_booking(&console_access()?, id)
        .await
}

// `name` keeps the struct apart from the `CreateBooking` request type.
#[server(name = BookAppointment, prefix = "/_fn", endpoint = "create_booking")]
pub async fn create_booking(booking: CreateBooking) -> Result<Booking, AppError> {
    use_services()?
        .bookings
        .create_booking(&console_access()?, booking)
        .await
}

#[server(name = MoveBooking, prefix = "/_fn", endpoint = "reschedule_booking")]
pub async fn reschedule_booking(id: Uuid, change: RescheduleBooking) -> Result<Booking, AppError> {
    use_services()?
        .bookings
        .reschedule_booking(&console_access()?, id, change)
        .await
}

#[server(name = CallOffBooking, prefix = "/_fn", endpoint = "cancel_booking")]
pub async fn cancel_booking(id: Uuid, cancel: CancelBooking) -> Result<Booking, AppError> {
    use_services()?
        .bookings
        .cancel_booking(&console_access()?, id, cancel)
        .await
}

#[server(prefix = "/_fn", endpoint = "list_workflows")]
pub async fn list_workflows() -> Result<Vec<WorkflowSummary>, AppError> {
    use_services()?
        .workflows
        .list_workflows(&console_access()?)
        .await
}

#[server(prefix = "/_fn", endpoint = "get_workflow")]
pub async fn get_workflow(id: Uuid) -> Result<Workflow, AppError> {
    use_services()?
        .workflows
        .get_workflow(&console_access()?, id)
        .await
}

// Definitions and run inputs are free-form JSON: sent as JSON, not as a form, which would
// turn their numbers and booleans into strings. `name` keeps the struct apart from the
// `CreateWorkflow` request type.
#[server(name = NewWorkflow, prefix = "/_fn", endpoint = "create_workflow", input = server_fn::codec::Json)]
pub async fn create_workflow(create: CreateWorkflow) -> Result<Workflow, AppError> {
    use_services()?
        .workflows
        .create_workflow(&console_access()?, create)
        .await
}

#[server(name = SaveWorkflow, prefix = "/_fn", endpoint = "update_workflow", input = server_fn::codec::Json)]
pub async fn update_workflow(id: Uuid, update: UpdateWorkflow) -> Result<Workflow, AppError> {
    use_services()?
        .workflows
        .update_workflow(&console_access()?, id, update)
        .await
}

#[server(prefix = "/_fn", endpoint = "delete_workflow")]
pub async fn delete_workflow(id: Uuid) -> Result<(), AppError> {
    use_services()?
        .workflows
        .delete_workflow(&console_access()?, id)
        .await
}

#[server(name = PublishDraft, prefix = "/_fn", endpoint = "publish_workflow")]
pub async fn publish_workflow(
    id: Uuid,
    publish: PublishWorkflow,
) -> Result<WorkflowVersion, AppError> {
    use_services()?
        .workflows
        .publish_workflow(&console_access()?, id, publish)
        .await
}

#[server(prefix = "/_fn", endpoint = "list_workflow_secrets")]
pub async fn list_workflow_secrets() -> Result<Vec<WorkflowSecret>, AppError> {
    use_services()?
        .workflows
        .list_secrets(&console_access()?)
        .await
}

#[server(name = SaveWorkflowSecret, prefix = "/_fn", endpoint = "set_workflow_secret")]
pub async fn set_workflow_secret(name: String, value: String) -> Result<WorkflowSecret, AppError> {
    use_services()?
        .workflows
        .set_secret(&console_access()?, name, SetWorkflowSecret { value })
        .await
}

#[server(name = DeleteWorkflowSecret, prefix = "/_fn", endpoint = "delete_workflow_secret")]
pub async fn delete_workflow_secret(name: String) -> Result<(), AppError> {
    use_services()?
        .workflows
        .delete_secret(&console_access()?, name)
        .await
}

#[server(prefix = "/_fn", endpoint = "conversation_graphs")]
pub async fn list_conversation_graphs() -> Result<ConversationGraphs, AppError> {
    use_services()?
        .workflows
        .conversation_graphs(&console_access()?)
        .await
}

/// `workflow_id`: empty for the default graph.
#[server(name = ChooseConversationGraph, prefix = "/_fn", endpoint = "set_conversation_graph")]
pub async fn set_conversation_graph(
    channel: Channel,
    workflow_id: Option<Uuid>,
) -> Result<ConversationGraphs, AppError> {
    use_services()?
        .workflows
        .set_conversation_graph(&console_access()?, channel, SetChannelGraph { workflow_id })
        .await
}

#[server(name = RotateWorkflowSecret, prefix = "/_fn", endpoint = "rotate_workflow_webhook_secret")]
pub async fn rotate_workflow_webhook_secret(id: Uuid) -> Result<WorkflowWebhook, AppError> {
    use_services()?
        .workflows
        .rotate_webhook_secret(&console_access()?, id)
        .await
}

#[server(prefix = "/_fn", endpoint = "list_workflow_versions")]
pub async fn list_workflow_versions(id: Uuid) -> Result<Vec<WorkflowVersion>, AppError> {
    use_services()?
        .workflows
        .list_versions(&console_access()?, id)
        .await
}

#[server(prefix = "/_fn", endpoint = "restore_workflow_version")]
pub async fn restore_workflow_version(id: Uuid, number: u32) -> Result<Workflow, AppError> {
    use_services()?
        .workflows
        .restore_version(&console_access()?, id, number)
        .await
}

#[server(prefix = "/_fn", endpoint = "diff_workflow_versions")]
pub async fn diff_workflow_versions(
    id: Uuid,
    from: u32,
    to: Option<u32>,
) -> Result<WorkflowDiff, AppError> {
    use_services()?
        .workflows
        .diff_versions(&console_access()?, id, from, to)
        .await
}

#[server(name = TestWorkflowNode, prefix = "/_fn", endpoint = "test_workflow_node", input = server_fn::codec::Json)]
pub async fn test_workflow_node(id: Uuid, test: TestNode) -> Result<NodeTest, AppError> {
    use_services()?
        .workflows
        .test_node(&console_access()?, id, test)
        .await
}

#[server(prefix = "/_fn", endpoint = "start_workflow_run", input = server_fn::codec::Json)]
pub async fn start_workflow_run(id: Uuid, start: StartRun) -> Result<WorkflowRun, AppError> {
    use_services()?
        .workflows
        .start_run(&console_access()?, id, start)
        .await
}

#[server(prefix = "/_fn", endpoint = "list_workflow_runs")]
pub async fn list_workflow_runs(id: Uuid, query: RunQuery) -> Result<Page<WorkflowRun>, AppError> {
    use_services()?
        .workflows
        .list_runs(&console_access()?, id, query)
        .await
}

#[server(prefix = "/_fn", endpoint = "get_workflow_run")]
pub async fn get_workflow_run(run: Uuid) -> Result<RunDetail, AppError> {
    use_services()?
        .workflows
        .get_run(&console_access()?, run)
        .await
}

#[server(prefix = "/_fn", endpoint = "cancel_workflow_run")]
pub async fn cancel_workflow_run(run: Uuid) -> Result<WorkflowRun, AppError> {
    use_services()?
        .workflows
        .cancel_run(&console_access()?, run)
        .await
}

#[server(prefix = "/_fn", endpoint = "decide_workflow_run")]
pub async fn decide_workflow_run(
    run: Uuid,
    decision: ApprovalDecision,
) -> Result<WorkflowRun, AppError> {
    use_services()?
        .workflows
        .decide_run(&console_access()?, run, decision)
        .await
}
