//! `/api/v1/bookings`: the tenant's appointments, whoever made them (`bookings:read` /
//! `bookings:write`). Times a caller sends are local to the tenant's time zone.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use uuid::Uuid;

use app::types::{Booking, BookingQuery, CancelBooking, CreateBooking, Page, RescheduleBooking};

use crate::auth::ApiAccess;
use crate::http::error::{ApiJson, ApiPath, ApiQuery, ApiResult, Problem};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/bookings", get(list_bookings).post(create_booking))
        .route("/api/v1/bookings/{id}", get(get_booking))
        .route("/api/v1/bookings/{id}/reschedule", post(reschedule_booking))
        .route("/api/v1/bookings/{id}/cancel", post(cancel_booking))
}

/// Bookings by start time, filtered by days (tenant's time zone), status, customer or
/// conversation; cancelled ones included unless `status` says otherwise.
#[utoipa::path(get, path = "/api/v1/bookings", tag = "bookings", params(BookingQuery),
    responses(
        (status = 200, body = Page<Booking>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_bookings(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiQuery(query): ApiQuery<BookingQuery>,
) -> ApiResult<Json<Page<Booking>>> {
    Ok(Json(s.services.bookings.list_bookings(&a, query).await?))
}

/// Book an appointment. The customer gets a confirmation by email unless `notify` is false
/// (and only when the tenant can send email).
#[utoipa::path(post, path = "/api/v1/bookings", tag = "bookings", request_body = CreateBooking,
    responses(
        (status = 201, body = Booking),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The time overlaps a confirmed booking", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_booking(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiJson(booking): ApiJson<CreateBooking>,
) -> ApiResult<(StatusCode, Json<Booking>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.services.bookings.create_booking(&a, booking).await?),
    ))
}

/// One booking.
#[utoipa::path(get, path = "/api/v1/bookings/{id}", tag = "bookings",
    params(("id" = Uuid, Path, description = "The booking's id")),
    responses(
        (status = 200, body = Booking),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_booking(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Booking>> {
    Ok(Json(s.services.bookings.get_booking(&a, id).await?))
}

/// Move a confirmed booking to another time; the customer is told unless `notify` is false.
#[utoipa::path(post, path = "/api/v1/bookings/{id}/reschedule", tag = "bookings",
    request_body = RescheduleBooking,
    params(("id" = Uuid, Path, description = "The booking's id")),
    responses(
        (status = 200, body = Booking),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The new time overlaps another booking, or the booking is cancelled", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn reschedule_booking(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(change): ApiJson<RescheduleBooking>,
) -> ApiResult<Json<Booking>> {
    Ok(Json(
        s.services
            .bookings
            .reschedule_booking(&a, id, change)
            .await?,
    ))
}

/// Cancel a confirmed booking (its time is free again); the customer is told unless
/// `notify` is false.
#[utoipa::path(post, path = "/api/v1/bookings/{id}/cancel", tag = "bookings",
    request_body = CancelBooking,
    params(("id" = Uuid, Path, description = "The booking's id")),
    responses(
        (status = 200, body = Booking),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The booking is already cancelled", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel_booking(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(cancel): ApiJson<CancelBooking>,
) -> ApiResult<Json<Booking>> {
    Ok(Json(
        s.services.bookings.cancel_booking(&a, id, cancel).await?,
    ))
}
