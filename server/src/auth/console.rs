//! Console sign-in, sign-out and tenant switching (plain form posts, so they work before
//! hydration), and the middleware that tells server functions who is signed in.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::{Form, Router};
use serde::Deserialize;
use tower_sessions::Session;
use uuid::Uuid;

use app::services::{Access, AccountAccess, Actor};
use app::types::{CurrentUser, TenantMembership};

use super::{AuthSession, Credentials};
use crate::http::client_ip::{client_ip, ClientIp};
use crate::http::error::ApiError;
use crate::state::AppState;
use crate::store::audit_log::Record;
use crate::tenancy::invitations::{Acceptance, Refusal};
use crate::tenancy::{db_error, memberships_of};

const TENANT_KEY: &str = "tenant_id";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/auth/switch-tenant", post(switch_tenant))
        .route("/auth/accept-invitation", post(accept_invitation))
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
    next: Option<String>,
}

/// Only same-site relative paths, so the sign-in form cannot be used to redirect elsewhere.
/// Where to go after signing in: a path on this site, never another origin. `next` is
/// refused if it has control characters or backslashes (browsers drop tabs and newlines and
/// read `\` as `/`, so `/\t/evil.example` would leave the site), then resolved against this
/// site the way a browser resolves it; the normalised path (and query) is what is returned,
/// and only if it is still here and not protocol-relative (`/..//evil.example`).
fn safe_next(next: Option<&str>) -> String {
    let home = || "/".to_string();
    let Some(next) = next else { return home() };
    if !next.starts_with('/') || next.chars().any(|c| c.is_control() || c == '\\') {
        return home();
    }
    let Ok(here) = reqwest::Url::parse("http://console.invalid/") else {
        return home();
    };
    match here.join(next) {
        Ok(url) if url.origin() == here.origin() && !url.path().starts_with("//") => {
            match url.query() {
                Some(query) => format!("{}?{query}", url.path()),
                None => url.path().to_string(),
            }
        }
        _ => home(),
    }
}

fn back_to_login(error: &str, next: &str) -> Response {
    Redirect::to(&login_url(&[("error", error), ("next", next)])).into_response()
}

fn login_url(query: &[(&str, &str)]) -> String {
    format!(
        "/login?{}",
        serde_urlencoded::to_string(query).unwrap_or_default()
    )
}

async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    mut auth: AuthSession,
    session: Session,
    Form(form): Form<LoginForm>,
) -> Result<Response, ApiError> {
    let next = safe_next(form.next.as_deref());
    let email = form.email.trim().to_lowercase();
    if super::throttle::check_login(
        &state.kv,
        state.config.login_attempts_per_minute,
        &email,
        ip.as_deref().unwrap_or("unknown"),
    )
    .await
    .is_err()
    {
        tracing::warn!("sign-in throttled");
        return Ok(back_to_login("throttled", &next));
    }
    let creds = Credentials {
        email: email.clone(),
        password: form.password,
    };
    let user = auth.authenticate(creds).await.map_err(|e| {
        tracing::error!(error = %e, "sign-in backend failed");
        app::error::AppError::Internal("sign-in failed".into())
    })?;
    let Some(user) = user else {
        audit_sign_in(&state, None, &email, "auth.sign_in_failed", ip).await?;
        return Ok(back_to_login("invalid", &next));
    };
    let memberships = memberships_of(&state.db, user.id).await?;
    let Some(first) = memberships.first() else {
        audit_sign_in(&state, None, &email, "auth.sign_in_failed", ip).await?;
        return Ok(back_to_login("no_tenant", &next));
    };
    auth.login(&user).await.map_err(|e| {
        tracing::error!(error = %e, "session login failed");
        app::error::AppError::Internal("sign-in failed".into())
    })?;
    set_tenant(&session, first.tenant_id).await?;
    audit_sign_in(&state, Some(first.tenant_id), &email, "auth.sign_in", ip).await?;
    if user.must_change_password {
        return Ok(Redirect::to("/account?first=1").into_response());
    }
    Ok(Redirect::to(&next).into_response())
}

async fn audit_sign_in(
    state: &AppState,
    tenant_id: Option<Uuid>,
    email: &str,
    action: &str,
    ip: Option<String>,
) -> Result<(), ApiError> {
    Record {
        tenant_id,
        actor: format!("user:{email}"),
        action,
        target: format!("user:{email}"),
        ip,
        details: None,
    }
    .write(&state.db)
    .await
    .map_err(|e| ApiError::from(db_error(e)))
}

async fn set_tenant(session: &Session, tenant_id: Uuid) -> Result<(), ApiError> {
    session.insert(TENANT_KEY, tenant_id).await.map_err(|e| {
        tracing::error!(error = %e, "session write failed");
        ApiError::from(app::error::AppError::Internal(
            "session write failed".into(),
        ))
    })
}

async fn logout(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    mut auth: AuthSession,
    session: Session,
) -> Result<Response, ApiError> {
    let tenant: Option<Uuid> = session.get(TENANT_KEY).await.ok().flatten();
    if let Ok(Some(user)) = auth.logout().await {
        audit_sign_in(&state, tenant, &user.email, "auth.sign_out", ip).await?;
    }
    let _ = session.flush().await;
    Ok(Redirect::to("/login?signed_out=1").into_response())
}

#[derive(Deserialize)]
struct AcceptForm {
    token: String,
    #[serde(default)]
    name: String,
    password: String,
    #[serde(default)]
    repeat: String,
}

/// Accepts an invitation: signs the person in (into the tenant they joined) or sends them back
/// to the invitation page with the reason. Throttled like sign-in, by email and address.
async fn accept_invitation(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    mut auth: AuthSession,
    session: Session,
    Form(form): Form<AcceptForm>,
) -> Result<Response, ApiError> {
    let back = |code: &str| {
        let query = serde_urlencoded::to_string([("token", form.token.as_str()), ("error", code)])
            .unwrap_or_default();
        Redirect::to(&format!("/invite?{query}")).into_response()
    };
    let email = match crate::tenancy::invitations::preview(&state.db, &form.token).await {
        Ok(preview) => preview.email,
        Err(_) => return Ok(back(Refusal::Invalid.code())),
    };
    if super::throttle::check_login(
        &state.kv,
        state.config.login_attempts_per_minute,
        &email,
        ip.as_deref().unwrap_or("unknown"),
    )
    .await
    .is_err()
    {
        return Ok(back("throttled"));
    }
    let acceptance = Acceptance {
        name: form.name.clone(),
        password: form.password.clone(),
        repeat: form.repeat.clone(),
    };
    let (user, tenant_id) =
        match crate::tenancy::invitations::accept(&state.db, &form.token, acceptance, ip).await? {
            Ok(done) => done,
            Err(refusal) => return Ok(back(refusal.code())),
        };
    let user = super::backend::SessionUser::from(user);
    let must_change = user.must_change_password;
    auth.login(&user).await.map_err(|e| {
        tracing::error!(error = %e, "session login failed");
        app::error::AppError::Internal("sign-in failed".into())
    })?;
    set_tenant(&session, tenant_id).await?;
    let to = if must_change { "/account?first=1" } else { "/" };
    Ok(Redirect::to(to).into_response())
}

#[derive(Deserialize)]
struct SwitchForm {
    tenant: String,
}

async fn switch_tenant(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    auth: AuthSession,
    session: Session,
    Form(form): Form<SwitchForm>,
) -> Result<Response, ApiError> {
    let Some(user) = auth.user else {
        return Ok(Redirect::to("/login").into_response());
    };
    let memberships = memberships_of(&state.db, user.id).await?;
    let Some(target) = memberships.iter().find(|m| m.slug == form.tenant) else {
        return Err(app::error::AppError::not_found("tenant").into());
    };
    set_tenant(&session, target.tenant_id).await?;
    audit_sign_in(
        &state,
        Some(target.tenant_id),
        &user.email,
        "auth.switch_tenant",
        ip,
    )
    .await?;
    Ok(Redirect::to("/").into_response())
}

/// Puts `CurrentUser` and `Access` into the request for server functions, and sends anonymous
/// visitors of console pages to the sign-in page.
pub async fn console_context(
    State(state): State<AppState>,
    auth: AuthSession,
    session: Session,
    mut req: Request,
    next: Next,
) -> Response {
    if let Some(user) = auth.user {
        let chosen: Option<Uuid> = session.get(TENANT_KEY).await.ok().flatten();
        match memberships_of(&state.db, user.id).await {
            Ok(memberships) => {
                let current = memberships
                    .iter()
                    .find(|m| Some(m.tenant_id) == chosen)
                    .or(memberships.first())
                    .cloned();
                if let Some(tenant) = current {
                    let ip = client_ip(req.extensions());
                    insert_user(&mut req, &user, tenant, memberships, ip);
                }
            }
            Err(e) => return ApiError::from(e).into_response(),
        }
    }
    let me = req.extensions().get::<CurrentUser>();
    let anonymous = me.is_none();
    let must_change = me.is_some_and(|me| me.must_change_password);
    let path = req.uri().path();
    let console_page =
        app::CONSOLE_PAGES.iter().any(|(p, _)| *p == path) || app::CONSOLE_SUBPAGES.contains(&path);
    if anonymous && console_page {
        return Redirect::to(&login_url(&[("next", path)])).into_response();
    }
    // The server functions refuse such an account anyway (it has no `Access`); pages send it
    // to the one thing it may do.
    if must_change && console_page && path != "/account" {
        return Redirect::to("/account?first=1").into_response();
    }
    next.run(req).await
}

/// Every signed-in person gets `AccountAccess` (their own account); only one who has chosen
/// their own password also gets `Access` to the tenant, which every other server function needs.
fn insert_user(
    req: &mut Request,
    user: &super::backend::SessionUser,
    tenant: TenantMembership,
    memberships: Vec<TenantMembership>,
    ip: Option<String>,
) {
    let access = Access {
        tenant_id: tenant.tenant_id,
        actor: Actor::User {
            id: user.id,
            email: user.email.clone(),
        },
        role: Some(tenant.role),
        scopes: tenant.role.scopes(),
        ip,
    };
    req.extensions_mut().insert(AccountAccess(Access {
        role: None,
        scopes: Vec::new(),
        ..access.clone()
    }));
    if !user.must_change_password {
        req.extensions_mut().insert(access);
    }
    req.extensions_mut().insert(CurrentUser {
        user_id: user.id,
        email: user.email.clone(),
        name: user.name.clone(),
        tenant,
        memberships,
        must_change_password: user.must_change_password,
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn next_is_always_local() {
        use super::safe_next;
        assert_eq!(safe_next(Some("/keys")), "/keys");
        assert_eq!(
            safe_next(Some("/knowledge?kb=1&x=%2F")),
            "/knowledge?kb=1&x=%2F"
        );
        assert_eq!(safe_next(None), "/");
        for hostile in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\n/evil.example",
            "/\u{0}/evil.example",
            "/\u{7f}/evil.example",
            "/\u{85}/evil.example",
            "/..//evil.example",
            "/./..//evil.example",
            "/%2e%2e//evil.example",
            "javascript:alert(1)",
            " /\t/evil.example",
            "",
        ] {
            assert_eq!(safe_next(Some(hostile)), "/", "{hostile:?}");
        }
        // Encoded slashes and spaces stay within the path.
        assert_eq!(
            safe_next(Some("/%2F%2Fevil.example")),
            "/%2F%2Fevil.example"
        );
        assert_eq!(safe_next(Some("/ /x")), "/%20/x");
    }
}
