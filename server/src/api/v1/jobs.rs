use axum::extract::State;
use axum::Json;
use uuid::Uuid;

use app::types::{Job, JobQuery, JobSchedule, JobStats, Page};

use crate::auth::ApiAccess;
use crate::http::error::{ApiPath, ApiQuery, ApiResult, Problem};
use crate::state::AppState;

/// The tenant's background jobs, newest first, filtered by state and kind. Follow
/// `next_cursor` for older ones.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", params(JobQuery),
    responses(
        (status = 200, body = Page<Job>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_jobs(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiQuery(query): ApiQuery<JobQuery>,
) -> ApiResult<Json<Page<Job>>> {
    Ok(Json(s.services.jobs.list_jobs(&a, query).await?))
}

/// Counts by kind and state, and how many finished in the last hour.
#[utoipa::path(get, path = "/api/v1/jobs/stats", tag = "jobs",
    responses(
        (status = 200, body = JobStats),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn job_stats(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
) -> ApiResult<Json<JobStats>> {
    Ok(Json(s.services.jobs.job_stats(&a).await?))
}

/// One job with its progress and every failed attempt's error.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, body = Job),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_job(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Job>> {
    Ok(Json(s.services.jobs.get_job(&a, id).await?))
}

/// Run a dead (or discarded) job again, with a fresh set of attempts.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/retry", tag = "jobs",
    params(("id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, body = Job, description = "The job, queued again"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn retry_job(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Job>> {
    Ok(Json(s.services.jobs.retry_job(&a, id).await?))
}

/// Set a queued or dead job aside for good; it will not run.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/discard", tag = "jobs",
    params(("id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, body = Job, description = "The discarded job"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn discard_job(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Job>> {
    Ok(Json(s.services.jobs.discard_job(&a, id).await?))
}

/// The tenant's recurring jobs: cron expression, time zone, next and last run.
#[utoipa::path(get, path = "/api/v1/job-schedules", tag = "jobs",
    responses(
        (status = 200, body = Vec<JobSchedule>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_schedules(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
) -> ApiResult<Json<Vec<JobSchedule>>> {
    Ok(Json(s.services.jobs.list_schedules(&a).await?))
}
