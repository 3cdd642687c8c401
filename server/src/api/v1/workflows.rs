//! `/api/v1/workflows`: drafts, published versions and runs of the tenant's workflows
//! (`workflows:read` / `workflows:write`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use uuid::Uuid;

use app::types::{
    ApprovalDecision, Channel, ConversationGraphs, CreateWorkflow, NodeTest, Page, PublishWorkflow,
    RunDetail, RunQuery, SetChannelGraph, SetWorkflowSecret, StartRun, TestNode, UpdateWorkflow,
    VersionDiffQuery, Workflow, WorkflowDefinition, WorkflowDiff, WorkflowRun, WorkflowSecret,
    WorkflowSummary, WorkflowVersion, WorkflowWebhook,
};

use crate::auth::ApiAccess;
use crate::http::error::{ApiJson, ApiPath, ApiQuery, ApiResult, Problem};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/workflows",
            get(list_workflows).post(create_workflow),
        )
        .route(
            "/api/v1/workflows/{id}",
            get(get_workflow)
                .patch(update_workflow)
                .delete(delete_workflow),
        )
        .route("/api/v1/workflows/{id}/export", get(export_workflow))
        .route("/api/v1/workflows/{id}/publish", post(publish_workflow))
        .route(
            "/api/v1/workflows/{id}/webhook-secret",
            post(rotate_webhook_secret),
        )
        .route("/api/v1/workflow-secrets", get(list_secrets))
        .route("/api/v1/conversation-graphs", get(conversation_graphs))
        .route(
            "/api/v1/conversation-graphs/{channel}",
            put(set_conversation_graph),
        )
        .route(
            "/api/v1/workflow-secrets/{name}",
            put(set_secret).delete(delete_secret),
        )
        .route("/api/v1/workflows/{id}/versions", get(list_versions))
        .route("/api/v1/workflows/{id}/versions/{number}", get(get_version))
        .route(
            "/api/v1/workflows/{id}/versions/{number}/restore",
            post(restore_version),
        )
        .route("/api/v1/workflows/{id}/diff", get(diff_versions))
        .route("/api/v1/workflows/{id}/test-node", post(test_node))
        .route(
            "/api/v1/workflows/{id}/runs",
            get(list_runs).post(start_run),
        )
        .route("/api/v1/workflow-runs/{run}", get(get_run))
        .route("/api/v1/workflow-runs/{run}/cancel", post(cancel_run))
        .route("/api/v1/workflow-runs/{run}/decision", post(decide_run))
}

/// The tenant's workflows, by name.
#[utoipa::path(get, path = "/api/v1/workflows", tag = "workflows",
    responses(
        (status = 200, body = Vec<WorkflowSummary>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_workflows(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
) -> ApiResult<Json<Vec<WorkflowSummary>>> {
    Ok(Json(s.services.workflows.list_workflows(&a).await?))
}

/// Create a workflow. Its draft is `definition` (an export, to import one) or a trigger alone;
/// a draft may have problems, which `problems` lists and publishing refuses.
#[utoipa::path(post, path = "/api/v1/workflows", tag = "workflows",
    request_body = CreateWorkflow,
    responses(
        (status = 201, body = Workflow),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_workflow(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiJson(create): ApiJson<CreateWorkflow>,
) -> ApiResult<(StatusCode, Json<Workflow>)> {
    let workflow = s.services.workflows.create_workflow(&a, create).await?;
    Ok((StatusCode::CREATED, Json(workflow)))
}

/// A workflow with its draft and the draft's problems.
#[utoipa::path(get, path = "/api/v1/workflows/{id}", tag = "workflows",
    params(("id" = Uuid, Path, description = "The workflow's id")),
    responses(
        (status = 200, body = Workflow),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_workflow(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Workflow>> {
    Ok(Json(s.services.workflows.get_workflow(&a, id).await?))
}

/// Save the draft, name or description. Send `base_revision` (the `draft_revision` you
/// loaded): a save made on a stale copy is refused with 409 instead of overwriting.
#[utoipa::path(patch, path = "/api/v1/workflows/{id}", tag = "workflows",
    params(("id" = Uuid, Path, description = "The workflow's id")),
    request_body = UpdateWorkflow,
    responses(
        (status = 200, body = Workflow),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The draft changed meanwhile, or the name is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_workflow(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(update): ApiJson<UpdateWorkflow>,
) -> ApiResult<Json<Workflow>> {
    Ok(Json(
        s.services.workflows.update_workflow(&a, id, update).await?,
    ))
}

/// Delete a workflow with its versions and finished runs (refused while runs are unfinished).
#[utoipa::path(delete, path = "/api/v1/workflows/{id}", tag = "workflows",
    params(("id" = Uuid, Path, description = "The workflow's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_workflow(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    s.services.workflows.delete_workflow(&a, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The draft as a file to import elsewhere (`definition` of `POST /api/v1/workflows`).
#[utoipa::path(get, path = "/api/v1/workflows/{id}/export", tag = "workflows",
    params(("id" = Uuid, Path, description = "The workflow's id")),
    responses(
        (status = 200, body = WorkflowDefinition),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn export_workflow(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<WorkflowDefinition>> {
    Ok(Json(s.services.workflows.get_workflow(&a, id).await?.draft))
}

/// Publish the draft as the next immutable version; 422 lists its problems per node
/// (`draft.nodes.<id>`).
#[utoipa::path(post, path = "/api/v1/workflows/{id}/publish", tag = "workflows",
    params(("id" = Uuid, Path, description = "The workflow's id")),
    request_body = PublishWorkflow,
    responses(
        (status = 201, body = WorkflowVersion),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn publish_workflow(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(publish): ApiJson<PublishWorkflow>,
) -> ApiResult<(StatusCode, Json<WorkflowVersion>)> {
    let version = s
        .services
        .workflows
        .publish_workflow(&a, id, publish)
        .await?;
    Ok((StatusCode::CREATED, Json(version)))
}

/// Make a new secret for the workflow's webhook trigger and see it, this once, with the URL
/// (`POST /hooks/workflows/{id}`, signed like the outgoing webhooks). The previous secret
/// stops working at once.
#[utoipa::path(post, path = "/api/v1/workflows/{id}/webhook-secret", tag = "workflows",
    params(("id" = Uuid, Path, description = "The workflow's id")),
    responses(
        (status = 201, body = WorkflowWebhook),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rotate_webhook_secret(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<(StatusCode, Json<WorkflowWebhook>)> {
    let hook = s.services.workflows.rotate_webhook_secret(&a, id).await?;
    Ok((StatusCode::CREATED, Json(hook)))
}

/// Which graph answers each channel's messages (a conversation graph, or the default one:
/// router → specialist → handoff), and the workflows that could: published, started by a
/// customer's message.
#[utoipa::path(get, path = "/api/v1/conversation-graphs", tag = "workflows",
    responses(
        (status = 200, body = ConversationGraphs),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn conversation_graphs(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
) -> ApiResult<Json<ConversationGraphs>> {
    Ok(Json(s.services.workflows.conversation_graphs(&a).await?))
}

/// Choose the graph that answers a channel's messages from the next message on: a published
/// workflow whose start is "A customer writes" (its latest published version answers, and each
/// new version as it is published), or `null` for the default graph.
#[utoipa::path(put, path = "/api/v1/conversation-graphs/{channel}", tag = "workflows",
    params(("channel" = Channel, Path, description = "console (the playground), api, openai, widget or chatwoot")),
    request_body = SetChannelGraph,
    responses(
        (status = 200, body = ConversationGraphs),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workflow in the tenant", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a channel a graph answers, or the workflow is not a published conversation graph", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn set_conversation_graph(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(channel): ApiPath<Channel>,
    ApiJson(set): ApiJson<SetChannelGraph>,
) -> ApiResult<Json<ConversationGraphs>> {
    Ok(Json(
        s.services
            .workflows
            .set_conversation_graph(&a, channel, set)
            .await?,
    ))
}

/// The secrets HTTP steps can use as `{{ secrets.NAME }}`, by name; values are never returned.
#[utoipa::path(get, path = "/api/v1/workflow-secrets", tag = "workflows",
    responses(
        (status = 200, body = Vec<WorkflowSecret>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_secrets(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
) -> ApiResult<Json<Vec<WorkflowSecret>>> {
    Ok(Json(s.services.workflows.list_secrets(&a).await?))
}

/// Create a secret or replace its value. Runs read it when their HTTP step sends its request;
/// it never appears in a run's trace (a value that comes back is shown as `[secret NAME]`).
#[utoipa::path(put, path = "/api/v1/workflow-secrets/{name}", tag = "workflows",
    params(("name" = String, Path, description = "1–64 letters, digits or `_`, not starting with a digit")),
    request_body = SetWorkflowSecret,
    responses(
        (status = 200, body = WorkflowSecret),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The tenant has as many secrets as it may", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn set_secret(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(name): ApiPath<String>,
    ApiJson(set): ApiJson<SetWorkflowSecret>,
) -> ApiResult<Json<WorkflowSecret>> {
    Ok(Json(s.services.workflows.set_secret(&a, name, set).await?))
}

/// Delete a secret; steps that use it fail from then on, naming it.
#[utoipa::path(delete, path = "/api/v1/workflow-secrets/{name}", tag = "workflows",
    params(("name" = String, Path, description = "The secret's name")),
    responses(
        (status = 204),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_secret(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    s.services.workflows.delete_secret(&a, name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Published versions, newest first.
#[utoipa::path(get, path = "/api/v1/workflows/{id}/versions", tag = "workflows",
    params(("id" = Uuid, Path, description = "The workflow's id")),
    responses(
        (status = 200, body = Vec<WorkflowVersion>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_versions(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Vec<WorkflowVersion>>> {
    Ok(Json(s.services.workflows.list_versions(&a, id).await?))
}

/// One published version.
#[utoipa::path(get, path = "/api/v1/workflows/{id}/versions/{number}", tag = "workflows",
    params(
        ("id" = Uuid, Path, description = "The workflow's id"),
        ("number" = u32, Path, description = "The version's number"),
    ),
    responses(
        (status = 200, body = WorkflowVersion),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_version(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath((id, number)): ApiPath<(Uuid, u32)>,
) -> ApiResult<Json<WorkflowVersion>> {
    Ok(Json(
        s.services.workflows.get_version(&a, id, number).await?,
    ))
}

/// Copy a published version into the draft.
#[utoipa::path(post, path = "/api/v1/workflows/{id}/versions/{number}/restore", tag = "workflows",
    params(
        ("id" = Uuid, Path, description = "The workflow's id"),
        ("number" = u32, Path, description = "The version's number"),
    ),
    responses(
        (status = 200, body = Workflow),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn restore_version(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath((id, number)): ApiPath<(Uuid, u32)>,
) -> ApiResult<Json<Workflow>> {
    Ok(Json(
        s.services.workflows.restore_version(&a, id, number).await?,
    ))
}

/// What changed between two versions, or from a version to the draft (`to` absent): nodes
/// added, removed, changed (which fields) or moved, edges added or removed, variables changed.
#[utoipa::path(get, path = "/api/v1/workflows/{id}/diff", tag = "workflows",
    params(("id" = Uuid, Path, description = "The workflow's id"), VersionDiffQuery),
    responses(
        (status = 200, body = WorkflowDiff),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn diff_versions(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<VersionDiffQuery>,
) -> ApiResult<Json<WorkflowDiff>> {
    Ok(Json(
        s.services
            .workflows
            .diff_versions(&a, id, query.from, query.to)
            .await?,
    ))
}

/// Try one node of the draft with sample values: the nodes without effects (set, template,
/// condition, switch, end) compute their output and exit; LLM, classifier and knowledge steps
/// ask the tenant's model and search for real (these need `workflows:write`: they spend tokens
/// and read knowledge); the others show their configuration filled in. Nothing is sent, booked
/// or emailed, and no agent is asked.
#[utoipa::path(post, path = "/api/v1/workflows/{id}/test-node", tag = "workflows",
    params(("id" = Uuid, Path, description = "The workflow's id")),
    request_body = TestNode,
    responses(
        (status = 200, body = NodeTest),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn test_node(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(test): ApiJson<TestNode>,
) -> ApiResult<Json<NodeTest>> {
    Ok(Json(s.services.workflows.test_node(&a, id, test).await?))
}

/// Start a run of the newest published version (or `version`) with `input` as the trigger's
/// payload. The run goes on in the background: follow it with `GET /api/v1/workflow-runs/{run}`.
#[utoipa::path(post, path = "/api/v1/workflows/{id}/runs", tag = "workflows",
    params(("id" = Uuid, Path, description = "The workflow's id")),
    request_body = StartRun,
    responses(
        (status = 202, body = WorkflowRun),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Nothing published yet, or too many unfinished runs", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn start_run(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(start): ApiJson<StartRun>,
) -> ApiResult<(StatusCode, Json<WorkflowRun>)> {
    let run = s.services.workflows.start_run(&a, id, start).await?;
    Ok((StatusCode::ACCEPTED, Json(run)))
}

/// The workflow's runs, newest first, filtered by status, version or trigger.
#[utoipa::path(get, path = "/api/v1/workflows/{id}/runs", tag = "workflows",
    params(("id" = Uuid, Path, description = "The workflow's id"), RunQuery),
    responses(
        (status = 200, body = Page<WorkflowRun>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_runs(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<RunQuery>,
) -> ApiResult<Json<Page<WorkflowRun>>> {
    Ok(Json(s.services.workflows.list_runs(&a, id, query).await?))
}

/// A run with its trace: every step attempt (output, port, error, duration) and every
/// compensation with its outcome.
#[utoipa::path(get, path = "/api/v1/workflow-runs/{run}", tag = "workflows",
    params(("run" = Uuid, Path, description = "The run's id")),
    responses(
        (status = 200, body = RunDetail),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_run(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(run): ApiPath<Uuid>,
) -> ApiResult<Json<RunDetail>> {
    Ok(Json(s.services.workflows.get_run(&a, run).await?))
}

/// Cancel an unfinished run: it stops after its current step and what its steps did is
/// compensated.
#[utoipa::path(post, path = "/api/v1/workflow-runs/{run}/cancel", tag = "workflows",
    params(("run" = Uuid, Path, description = "The run's id")),
    responses(
        (status = 202, body = WorkflowRun),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The run has finished", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel_run(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(run): ApiPath<Uuid>,
) -> ApiResult<(StatusCode, Json<WorkflowRun>)> {
    let run = s.services.workflows.cancel_run(&a, run).await?;
    Ok((StatusCode::ACCEPTED, Json(run)))
}

/// Approve or reject a run waiting for approval; it goes on by `approved` or `rejected`.
#[utoipa::path(post, path = "/api/v1/workflow-runs/{run}/decision", tag = "workflows",
    params(("run" = Uuid, Path, description = "The run's id")),
    request_body = ApprovalDecision,
    responses(
        (status = 202, body = WorkflowRun),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The run is not waiting for an approval", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn decide_run(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(run): ApiPath<Uuid>,
    ApiJson(decision): ApiJson<ApprovalDecision>,
) -> ApiResult<(StatusCode, Json<WorkflowRun>)> {
    let run = s.services.workflows.decide_run(&a, run, decision).await?;
    Ok((StatusCode::ACCEPTED, Json(run)))
}
