use axum::extract::State;
use axum::Json;
use uuid::Uuid;

use app::types::Member;

use crate::auth::ApiAccess;
use crate::http::error::{ApiPath, ApiResult, Problem};
use crate::state::AppState;

/// Everyone with access to the tenant's console, oldest first.
#[utoipa::path(get, path = "/api/v1/members", tag = "members",
    responses(
        (status = 200, body = Vec<Member>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_members(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
) -> ApiResult<Json<Vec<Member>>> {
    Ok(Json(s.services.tenancy.list_members(&a).await?))
}

/// One member, by user id.
#[utoipa::path(get, path = "/api/v1/members/{user_id}", tag = "members",
    params(("user_id" = Uuid, Path, description = "The member's user id")),
    responses(
        (status = 200, body = Member),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_member(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(user_id): ApiPath<Uuid>,
) -> ApiResult<Json<Member>> {
    Ok(Json(s.services.tenancy.get_member(&a, user_id).await?))
}
