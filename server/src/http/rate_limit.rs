//! Rate limiting: GCRA budgets in the shared store (`crate::kv`), so every instance behind one
//! Redis spends the same budget.
//!
//! - An authenticated caller (API key or console user) spends its own budget for the route
//!   class (reads: GET/HEAD; writes: the rest) and its tenant's budget, shared by all of the
//!   tenant's keys and users. A tenant may have its own figures (`server tenant limits`).
//! - An anonymous request, or one with a bad key, spends its address's public budget.
//! - Platform operators (`PLATFORM_ADMINS`) skip the limits.
//!
//! Every answer carries `RateLimit-Limit/-Remaining/-Reset` and the `X-RateLimit-*` twins for
//! the tightest budget it touched; a refusal is 429 problem+json with `Retry-After`.
//! When the store is unreachable requests are let through (and logged): an outage of the
//! cache must not become an outage of the API.

use axum::extract::{Request, State};
use axum::http::{Extensions, HeaderMap, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use app::error::AppError;
use app::services::{Access, AccountAccess, Actor};

use super::client_ip::client_ip;
use super::error::ApiError;
use super::tenant_policy::{self, TenantPolicy};
use crate::auth::PlatformAdmin;
use crate::kv::{Decision, Rate, Scope};
use crate::state::AppState;

pub const REJECTIONS: &str = "rate_limit_rejections_total";

#[derive(Clone, Copy)]
enum Class {
    Read,
    Write,
}

impl Class {
    fn of(method: &Method) -> Class {
        if method == Method::GET || method == Method::HEAD || method == Method::OPTIONS {
            Class::Read
        } else {
            Class::Write
        }
    }

    fn name(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Write => "write",
        }
    }
}

/// Spends one unit; `None` when the store failed (the request goes through).
async fn spend(state: &AppState, scope: Scope, bucket: &str, rate: Rate) -> Option<Decision> {
    match state.kv.spend(scope, bucket, rate).await {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!(error = %e, "rate limiter unavailable; request let through");
            None
        }
    }
}

/// The tighter of two decisions: a refusal wins, then the fewer remaining.
fn tighter(a: Option<Decision>, b: Option<Decision>) -> Option<Decision> {
    match (a, b) {
        (Some(a), Some(b)) => Some(match (a.allowed, b.allowed) {
            (false, true) => a,
            (true, false) => b,
            _ if a.remaining <= b.remaining => a,
            _ => b,
        }),
        (a, b) => a.or(b),
    }
}

/// An authenticated caller: its own budget for the class, then its tenant's.
async fn spend_access(
    state: &AppState,
    access: &Access,
    known: Option<&TenantPolicy>,
    class: Class,
) -> Option<Decision> {
    let own = match &access.actor {
        Actor::ApiKey { id, .. } => format!("key:{id}:{}", class.name()),
        Actor::User { id, .. } => format!("user:{id}:{}", class.name()),
        // Visitors spend the widget's budgets (`widget::limits`), channels their own.
        Actor::Visitor { .. } | Actor::Channel { .. } | Actor::Cli | Actor::System { .. } => {
            return None
        }
    };
    let defaults = state.config.rate_limits;
    let limits = match known {
        Some(policy) => policy.limits,
        None => tenant_policy::get(state, access.tenant_id).await.limits,
    };
    let per_caller = match class {
        Class::Read => limits.read_per_minute.unwrap_or(defaults.read),
        Class::Write => limits.write_per_minute.unwrap_or(defaults.write),
    };
    let scope = Scope::Tenant(access.tenant_id);
    let own = spend(state, scope, &own, Rate::per_minute(per_caller)).await;
    if own.is_some_and(|d| !d.allowed) {
        return own;
    }
    let per_tenant = limits.tenant_per_minute.unwrap_or(defaults.tenant);
    let tenant = spend(state, scope, "tenant", Rate::per_minute(per_tenant)).await;
    tighter(own, tenant)
}

/// The public budget of the request's client address.
pub fn ip_budget(state: &AppState, extensions: &Extensions) -> (Scope, String, Rate) {
    let ip = client_ip(extensions).unwrap_or_else(|| "unknown".into());
    let rate = Rate::per_minute(state.config.rate_limits.public);
    (Scope::Platform, format!("ip:{ip}"), rate)
}

async fn spend_ip(state: &AppState, extensions: &Extensions) -> Option<Decision> {
    let (scope, bucket, rate) = ip_budget(state, extensions);
    spend(state, scope, &bucket, rate).await
}

/// Spends the client address's public budget; `Err` is the 429 to send.
pub async fn spend_public(state: &AppState, extensions: &Extensions) -> Result<(), Response> {
    match spend_ip(state, extensions).await {
        Some(d) if !d.allowed => Err(refusal(d, "public")),
        _ => Ok(()),
    }
}

/// Spends each budget in turn, stopping at the first refusal; `Err` is the 429 to send, `Ok`
/// the tightest decision (for the headers), `None` when the store could not be asked.
pub async fn spend_all(
    state: &AppState,
    budgets: &[(Scope, String, Rate)],
    class: &'static str,
) -> Result<Option<Decision>, Response> {
    let mut tightest = None;
    for (scope, bucket, rate) in budgets {
        let decision = spend(state, *scope, bucket, *rate).await;
        if let Some(d) = decision.filter(|d| !d.allowed) {
            return Err(refusal(d, class));
        }
        tightest = tighter(tightest, decision);
    }
    Ok(tightest)
}

/// Middleware for the REST API, placed after the key authentication that inserts `Access`.
pub async fn limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let class = Class::of(req.method());
    limit_as(state, class, req, next).await
}

/// The console's variant: only signed-in requests spend budgets (sign-in itself has its own
/// throttle, and anonymous page loads only ever reach the sign-in page). Server functions are
/// all POSTs whatever they do, so console traffic spends the read budget.
pub async fn limit_signed_in(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if signed_in(&req).is_none() {
        return next.run(req).await;
    }
    limit_as(state, Class::Read, req, next).await
}

/// The caller's access: to the tenant, or (an account still on its temporary password) only
/// to its own account; both spend the person's budget.
fn signed_in(req: &Request) -> Option<&Access> {
    let extensions = req.extensions();
    extensions
        .get::<Access>()
        .or_else(|| extensions.get::<AccountAccess>().map(|a| &a.0))
}

async fn limit_as(state: AppState, class: Class, req: Request, next: Next) -> Response {
    if req.extensions().get::<PlatformAdmin>().is_some() {
        return next.run(req).await;
    }
    let decision = match signed_in(&req) {
        Some(access) => {
            if let Actor::User { email, .. } = &access.actor {
                if state.config.is_platform_admin(email) {
                    return next.run(req).await;
                }
            }
            spend_access(&state, access, req.extensions().get(), class).await
        }
        None => spend_ip(&state, req.extensions()).await,
    };
    let label = if signed_in(&req).is_some() {
        class.name()
    } else {
        "public"
    };
    match decision {
        Some(d) if !d.allowed => refusal(d, label),
        Some(d) => {
            let mut response = next.run(req).await;
            write_headers(response.headers_mut(), &d);
            response
        }
        None => next.run(req).await,
    }
}

fn refusal(d: Decision, class: &'static str) -> Response {
    metrics::counter!(REJECTIONS, "class" => class).increment(1);
    let retry_after_secs = d.retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = ApiError(AppError::RateLimited { retry_after_secs }).into_response();
    write_headers(response.headers_mut(), &d);
    response
}

pub fn write_headers(headers: &mut HeaderMap, d: &Decision) {
    let reset = d.reset_after.as_secs_f64().ceil() as u64;
    for (name, value) in [
        ("ratelimit-limit", u64::from(d.limit)),
        ("ratelimit-remaining", u64::from(d.remaining)),
        ("ratelimit-reset", reset),
        ("x-ratelimit-limit", u64::from(d.limit)),
        ("x-ratelimit-remaining", u64::from(d.remaining)),
        ("x-ratelimit-reset", reset),
    ] {
        headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
    }
}
