//! Tenants, members and API keys: the `TenancyService` the console and the REST API share.

pub mod invitations;
mod service;
pub mod validate;

pub use invitations::Invites;
pub use service::TenancyServiceImpl;

use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseConnection, DbErr, QueryOrder, SqlErr,
    TransactionTrait,
};

use app::error::AppError;
use app::types::{BusinessHours, CreateTenant, Role, Tenant, TenantMembership};

use crate::http::tenant_policy::TenantLimits;
use crate::store::audit_log::Record;
use crate::store::{memberships, tenants, users};

/// Logs a database failure with its cause and hides the details from the caller.
pub fn db_error(e: DbErr) -> AppError {
    if let Some(SqlErr::UniqueConstraintViolation(_)) = e.sql_err() {
        return AppError::Conflict("that already exists".into());
    }
    tracing::error!(error = %e, "database error");
    AppError::Internal("database error".into())
}

pub fn to_tenant(m: tenants::Model) -> Tenant {
    let business_hours = m
        .business_hours
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    Tenant {
        id: m.id,
        slug: m.slug,
        name: m.name,
        timezone: m.timezone,
        business_hours,
        allowed_origins: m
            .allowed_origins
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default(),
        agent_policy: m
            .agent_policy
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default(),
        created_at: m.created_at,
    }
}

/// Monday to Friday, nine to five: what a new tenant starts with.
fn default_business_hours() -> Vec<BusinessHours> {
    (0..5)
        .map(|weekday| BusinessHours {
            weekday,
            open: "09:00".into(),
            close: "17:00".into(),
        })
        .collect()
}

pub async fn create_tenant(
    db: &impl ConnectionTrait,
    slug: &str,
    name: &str,
) -> Result<Tenant, AppError> {
    app::validate::check(&CreateTenant {
        slug: slug.to_string(),
        name: name.to_string(),
    })?;
    let name = name.trim().to_string();
    if find_by_slug(db, slug).await?.is_some() {
        return Err(AppError::Conflict(format!(
            "a tenant with slug '{slug}' exists"
        )));
    }
    let now = Utc::now();
    let model = tenants::ActiveModel {
        id: Set(Uuid::now_v7()),
        slug: Set(slug.to_string()),
        name: Set(name),
        timezone: Set("UTC".into()),
        business_hours: Set(serde_json::to_value(default_business_hours()).ok()),
        rate_limits: Set(None),
        allowed_origins: Set(None),
        agent_policy: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await
    .map_err(db_error)?;
    Ok(to_tenant(model))
}

pub async fn find_by_slug(
    db: &impl ConnectionTrait,
    slug: &str,
) -> Result<Option<Tenant>, AppError> {
    Ok(tenants::Entity::find()
        .filter(tenants::Column::Slug.eq(slug))
        .one(db)
        .await
        .map_err(db_error)?
        .map(to_tenant))
}

pub async fn list_tenants(db: &impl ConnectionTrait) -> Result<Vec<Tenant>, AppError> {
    Ok(tenants::Entity::find()
        .order_by_asc(tenants::Column::Slug)
        .all(db)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(to_tenant)
        .collect())
}

/// The tenants a user belongs to, oldest membership first.
pub async fn memberships_of(
    db: &impl ConnectionTrait,
    user_id: Uuid,
) -> Result<Vec<TenantMembership>, AppError> {
    let rows = memberships::Entity::find()
        .filter(memberships::Column::UserId.eq(user_id))
        .find_also_related(tenants::Entity)
        .order_by_asc(memberships::Column::CreatedAt)
        .all(db)
        .await
        .map_err(db_error)?;
    Ok(rows
        .into_iter()
        .filter_map(|(m, t)| {
            let t = t?;
            Some(TenantMembership {
                tenant_id: t.id,
                slug: t.slug,
                name: t.name,
                role: m.role(),
            })
        })
        .collect())
}

/// Full access to one tenant for the operator's CLI and start-up tasks.
pub fn cli_access(tenant_id: Uuid) -> app::services::Access {
    app::services::Access {
        tenant_id,
        actor: app::services::Actor::Cli,
        role: Some(Role::Owner),
        scopes: app::types::Scope::all(),
        ip: None,
    }
}

/// Full access to one tenant for a scheduled task of the platform (audited as `system:{task}`).
pub fn system_access(tenant_id: Uuid, task: &str) -> app::services::Access {
    app::services::Access {
        actor: app::services::Actor::System {
            task: task.to_string(),
        },
        ..cli_access(tenant_id)
    }
}

/// A tenant's own rate limits (empty when it uses the defaults).
pub async fn rate_limits(
    db: &DatabaseConnection,
    tenant_id: Uuid,
) -> Result<TenantLimits, AppError> {
    let tenant = tenants::Entity::find_by_id(tenant_id)
        .one(db)
        .await
        .map_err(db_error)?
        .ok_or_else(|| AppError::not_found("tenant"))?;
    Ok(tenant
        .rate_limits
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default())
}

/// Sets a tenant's own rate limits (a platform operator's action, audited as `cli`).
pub async fn set_rate_limits(
    db: &DatabaseConnection,
    tenant_id: Uuid,
    limits: TenantLimits,
) -> Result<(), AppError> {
    app::validate::check(&limits)?;
    let value = serde_json::to_value(limits).map_err(|e| AppError::Internal(e.to_string()))?;
    let txn = db.begin().await.map_err(db_error)?;
    tenants::ActiveModel {
        id: Set(tenant_id),
        rate_limits: Set(Some(value.clone())),
        updated_at: Set(Utc::now()),
        ..Default::default()
    }
    .update(&txn)
    .await
    .map_err(db_error)?;
    Record::by(
        &cli_access(tenant_id),
        "tenant.rate_limits",
        format!("tenant:{tenant_id}"),
    )
    .details(value)
    .write(&txn)
    .await
    .map_err(db_error)?;
    txn.commit().await.map_err(db_error)
}

/// A membership of `user_id` in `tenant_id` with `role`, starting now.
pub(crate) fn new_membership(
    tenant_id: Uuid,
    user_id: Uuid,
    role: &str,
) -> memberships::ActiveModel {
    memberships::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(tenant_id),
        user_id: Set(user_id),
        role: Set(role.to_string()),
        created_at: Set(Utc::now()),
    }
}

/// What [`bootstrap_member`] did: `password` is the new account's, `None` when the email
/// already had an account (its password is unchanged).
pub struct Bootstrapped {
    pub member: app::types::Member,
    pub password: Option<secrecy::SecretString>,
}

/// The platform operator's way to put a person into a tenant (the CLI's `user create`, the
/// demo seed): the email's account, made now with a random password when it has none, becomes
/// a member with `create.role`. A `temporary` password must be replaced at first sign-in, and
/// the account can do nothing else until it is. Audited as `cli`. Console users and API keys
/// invite instead.
pub async fn bootstrap_member(
    db: &DatabaseConnection,
    tenant_id: Uuid,
    create: app::types::CreateUser,
    temporary: bool,
) -> Result<Bootstrapped, AppError> {
    use crate::auth::password;
    use secrecy::ExposeSecret;

    app::validate::check(&create)?;
    let email = validate::normal_email(&create.email);
    let existing = users::Entity::find()
        .filter(users::Column::Email.eq(email.as_str()))
        .one(db)
        .await
        .map_err(db_error)?;
    let fresh = match existing {
        Some(_) => None,
        None => {
            let secret = secrecy::SecretString::from(password::temporary());
            let hash = password::hash(secret.expose_secret().to_string()).await?;
            Some((secret, hash))
        }
    };
    let now = Utc::now();
    let txn = db.begin().await.map_err(db_error)?;
    let (user, action) = match (existing, &fresh) {
        (Some(user), _) => (user, "member.add"),
        (None, Some((_, hash))) => {
            let user = users::ActiveModel {
                id: Set(Uuid::now_v7()),
                email: Set(email.clone()),
                name: Set(create.name.trim().to_string()),
                password_hash: Set(hash.clone()),
                must_change_password: Set(temporary),
                created_at: Set(now),
            }
            .insert(&txn)
            .await
            .map_err(db_error)?;
            (user, "member.create_user")
        }
        (None, None) => return Err(AppError::Internal("no account".into())),
    };
    let membership = new_membership(tenant_id, user.id, create.role.as_str())
        .insert(&txn)
        .await
        .map_err(|e| match db_error(e) {
            AppError::Conflict(_) => AppError::Conflict(format!("{email} is already a member")),
            other => other,
        })?;
    Record::by(&cli_access(tenant_id), action, format!("user:{email}"))
        .details(serde_json::json!({ "role": create.role }))
        .write(&txn)
        .await
        .map_err(db_error)?;
    txn.commit().await.map_err(db_error)?;
    Ok(Bootstrapped {
        member: app::types::Member {
            user_id: user.id,
            email: user.email,
            name: user.name,
            role: membership.role(),
            joined_at: membership.created_at,
        },
        password: fresh.map(|(secret, _)| secret),
    })
}
