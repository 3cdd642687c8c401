use axum::extract::State;
use axum::Json;

use app::types::{AuditEntry, AuditQuery, Page};

use crate::auth::ApiAccess;
use crate::http::error::{ApiQuery, ApiResult, Problem};
use crate::state::AppState;

/// The tenant's audit log, newest first. Follow `next_cursor` for older entries.
#[utoipa::path(get, path = "/api/v1/audit-log", tag = "audit", params(AuditQuery),
    responses(
        (status = 200, body = Page<AuditEntry>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_audit(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Page<AuditEntry>>> {
    Ok(Json(s.services.tenancy.list_audit(&a, query).await?))
}
