//! `/api/v1/agents`: the tenant's specialists — the built-in ones, which it may change, and
//! its own. Their prompts are under `/api/v1/agents/{agent}/prompt` (see `conversations`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

use app::types::{Agent, AgentCatalogue, CreateAgent, UpdateAgent};

use crate::auth::ApiAccess;
use crate::http::error::{ApiJson, ApiPath, ApiResult, Problem};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/agents", get(list_agents).post(create_agent))
        .route(
            "/api/v1/agents/{agent}",
            axum::routing::patch(update_agent).delete(delete_agent),
        )
}

/// The tenant's agents (built-in first) and the tools an agent can be given.
#[utoipa::path(get, path = "/api/v1/agents", tag = "conversations",
    responses(
        (status = 200, body = AgentCatalogue),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_agents(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
) -> ApiResult<Json<AgentCatalogue>> {
    Ok(Json(s.services.conversations.list_agents(&a).await?))
}

/// Define a specialist: the router sends to it by rule or by its description, and the other
/// agents can transfer to it. Its prompt is version 0 of its prompt history.
#[utoipa::path(post, path = "/api/v1/agents", tag = "conversations",
    request_body = CreateAgent,
    responses(
        (status = 201, body = Agent),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken, or the tenant has 20 agents of its own", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_agent(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiJson(create): ApiJson<CreateAgent>,
) -> ApiResult<(StatusCode, Json<Agent>)> {
    let agent = s.services.conversations.create_agent(&a, create).await?;
    Ok((StatusCode::CREATED, Json(agent)))
}

/// Change an agent's description, tools or knowledge bases (built-in agents too).
#[utoipa::path(patch, path = "/api/v1/agents/{agent}", tag = "conversations",
    params(("agent" = String, Path, description = "The agent's name")),
    request_body = UpdateAgent,
    responses(
        (status = 200, body = Agent),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_agent(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(agent): ApiPath<String>,
    ApiJson(update): ApiJson<UpdateAgent>,
) -> ApiResult<Json<Agent>> {
    Ok(Json(
        s.services
            .conversations
            .update_agent(&a, &agent, update)
            .await?,
    ))
}

/// Delete one of the tenant's agents (with its prompt versions), or undo the changes to a
/// built-in one. Refused while router rules send messages to it.
#[utoipa::path(delete, path = "/api/v1/agents/{agent}", tag = "conversations",
    params(("agent" = String, Path, description = "The agent's name")),
    responses(
        (status = 204, description = "Deleted, or reset to the built-in definition"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_agent(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(agent): ApiPath<String>,
) -> ApiResult<StatusCode> {
    s.services.conversations.delete_agent(&a, &agent).await?;
    Ok(StatusCode::NO_CONTENT)
}
