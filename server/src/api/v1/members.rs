use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use uuid::Uuid;

use app::types::{CreatedInvitation, Invitation, InviteMember, Member, UpdateMember};

use crate::auth::ApiAccess;
use crate::http::error::{ApiJson, ApiPath, ApiResult, Problem};
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

/// Change a member's role (`members:write`). Only an owner grants or takes away the owner
/// role; a tenant keeps at least one owner. Their API keys are narrowed to the new role.
#[utoipa::path(patch, path = "/api/v1/members/{user_id}", tag = "members",
    params(("user_id" = Uuid, Path, description = "The member's user id")),
    request_body = UpdateMember,
    responses(
        (status = 200, body = Member),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_member(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(user_id): ApiPath<Uuid>,
    ApiJson(update): ApiJson<UpdateMember>,
) -> ApiResult<Json<Member>> {
    Ok(Json(
        s.services
            .tenancy
            .change_role(&a, user_id, update.role)
            .await?,
    ))
}

/// Remove a member (`members:write`); their API keys in this tenant are revoked.
#[utoipa::path(delete, path = "/api/v1/members/{user_id}", tag = "members",
    params(("user_id" = Uuid, Path, description = "The member's user id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn remove_member(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(user_id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    s.services.tenancy.remove_member(&a, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Invitations, newest first (`members:read`); links are never returned again.
#[utoipa::path(get, path = "/api/v1/invitations", tag = "members",
    responses(
        (status = 200, body = Vec<Invitation>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_invitations(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
) -> ApiResult<Json<Vec<Invitation>>> {
    Ok(Json(s.services.tenancy.list_invitations(&a).await?))
}

/// Invite a person (`members:write`). The response holds the single-use `link` this once;
/// pass it on (it is also emailed when the platform sends email). It expires after 7 days. The
/// answer is the same whether or not the email has an account elsewhere on the platform; a
/// pending invitation to the same email is replaced.
#[utoipa::path(post, path = "/api/v1/invitations", tag = "members", request_body = InviteMember,
    responses(
        (status = 201, body = CreatedInvitation),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "Already a member"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn invite_member(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiJson(invite): ApiJson<InviteMember>,
) -> ApiResult<(StatusCode, Json<CreatedInvitation>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.services.tenancy.invite_member(&a, invite).await?),
    ))
}

/// Revoke a pending invitation (`members:write`); its link stops working. Revoking a revoked
/// or expired one is harmless; an accepted one is a conflict (remove the member instead).
#[utoipa::path(delete, path = "/api/v1/invitations/{id}", tag = "members",
    params(("id" = Uuid, Path, description = "The invitation's id")),
    responses(
        (status = 200, body = Invitation, description = "The revoked invitation"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke_invitation(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Invitation>> {
    Ok(Json(s.services.tenancy.revoke_invitation(&a, id).await?))
}
