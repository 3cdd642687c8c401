//! `/api/v1/widgets`: the tenant's website chat widgets (`widgets:read` / `widgets:write`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use uuid::Uuid;

use app::types::{Widget, WidgetSettings, WidgetWithSecret};

use crate::auth::ApiAccess;
use crate::http::error::{ApiJson, ApiPath, ApiResult, Problem};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/widgets", get(list_widgets).post(create_widget))
        .route(
            "/api/v1/widgets/{id}",
            get(get_widget).put(update_widget).delete(delete_widget),
        )
        .route(
            "/api/v1/widgets/{id}/rotate-secret",
            post(rotate_widget_secret),
        )
}

/// The tenant's widgets, oldest first, each with its `<script>` snippet.
#[utoipa::path(get, path = "/api/v1/widgets", tag = "widgets",
    responses(
        (status = 200, body = Vec<Widget>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_widgets(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
) -> ApiResult<Json<Vec<Widget>>> {
    Ok(Json(s.services.widgets.list_widgets(&a).await?))
}

/// Create a widget. The response holds its identity-verification `secret` this once.
#[utoipa::path(post, path = "/api/v1/widgets", tag = "widgets", request_body = WidgetSettings,
    responses(
        (status = 201, body = WidgetWithSecret),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_widget(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiJson(settings): ApiJson<WidgetSettings>,
) -> ApiResult<(StatusCode, Json<WidgetWithSecret>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.services.widgets.create_widget(&a, settings).await?),
    ))
}

/// One widget.
#[utoipa::path(get, path = "/api/v1/widgets/{id}", tag = "widgets",
    params(("id" = Uuid, Path, description = "The widget's id")),
    responses(
        (status = 200, body = Widget),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_widget(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Widget>> {
    Ok(Json(s.services.widgets.get_widget(&a, id).await?))
}

/// Replace a widget's settings; they apply to the next page load and session.
#[utoipa::path(put, path = "/api/v1/widgets/{id}", tag = "widgets", request_body = WidgetSettings,
    params(("id" = Uuid, Path, description = "The widget's id")),
    responses(
        (status = 200, body = Widget),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_widget(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(settings): ApiJson<WidgetSettings>,
) -> ApiResult<Json<Widget>> {
    Ok(Json(
        s.services.widgets.update_widget(&a, id, settings).await?,
    ))
}

/// A new identity-verification secret, shown this once; the old one stops working at once.
#[utoipa::path(post, path = "/api/v1/widgets/{id}/rotate-secret", tag = "widgets",
    params(("id" = Uuid, Path, description = "The widget's id")),
    responses(
        (status = 200, body = WidgetWithSecret),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rotate_widget_secret(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<WidgetWithSecret>> {
    Ok(Json(s.services.widgets.rotate_widget_secret(&a, id).await?))
}

/// Delete a widget: the snippet stops working and its visitors' sessions end; their
/// conversations stay.
#[utoipa::path(delete, path = "/api/v1/widgets/{id}", tag = "widgets",
    params(("id" = Uuid, Path, description = "The widget's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_widget(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    s.services.widgets.delete_widget(&a, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
