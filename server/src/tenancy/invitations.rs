//! Invitations: the only way a person joins a tenant from the console or the API. The link's
//! token is 256 bits of randomness stored as a SHA-256 digest; it works once, expires, and can
//! be revoked. Accepting needs the invited email's own password, or, for an email without an
//! account, a name and a password the person chooses. Nobody ever learns another person's
//! password, and the inviting side's responses are the same whether or not the email has an
//! account elsewhere on the platform.

use chrono::{DateTime, Duration, Utc};
use rand::distributions::{Alphanumeric, DistString};
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, DatabaseConnection, TransactionTrait};
use serde_json::json;

use app::error::AppError;
use app::types::{Invitation, InvitationPreview, InvitationStatus, Role, MIN_PASSWORD_LEN};

use super::{db_error, validate};
use crate::auth::{api_key, password};
use crate::secrets::KeyRing;
use crate::store::audit_log::Record;
use crate::store::{invitations, memberships, tenants, users};

/// How long an invitation's link works.
pub const VALID_DAYS: i64 = 7;
const TOKEN_TAG: &str = "inv_";

/// What the tenancy service needs to hand out invitations.
#[derive(Clone)]
pub struct Invites {
    /// Where links point (`PUBLIC_URL`, or the listening address).
    pub console_url: String,
    /// Set when the platform can send email: invitation mails are sealed with these keys.
    pub mail: Option<KeyRing>,
}

/// A fresh token (`inv_` + 43 letters and digits: 256 bits) and its stored digest.
pub fn new_token() -> (String, String) {
    let token = format!(
        "{TOKEN_TAG}{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), 43)
    );
    let digest = api_key::digest(&token);
    (token, digest)
}

pub fn link(console_url: &str, token: &str) -> String {
    format!("{}/invite?token={token}", console_url.trim_end_matches('/'))
}

pub fn status(m: &invitations::Model, now: DateTime<Utc>) -> InvitationStatus {
    if m.accepted_at.is_some() {
        InvitationStatus::Accepted
    } else if m.revoked_at.is_some() {
        InvitationStatus::Revoked
    } else if m.expires_at <= now {
        InvitationStatus::Expired
    } else {
        InvitationStatus::Pending
    }
}

pub fn to_invitation(m: invitations::Model) -> Invitation {
    Invitation {
        id: m.id,
        status: status(&m, Utc::now()),
        email: m.email,
        role: Role::parse(&m.role).unwrap_or(Role::Viewer),
        invited_by: m.invited_by,
        created_at: m.created_at,
        expires_at: m.expires_at,
        accepted_at: m.accepted_at,
    }
}

pub fn expiry(now: DateTime<Utc>) -> DateTime<Utc> {
    now + Duration::days(VALID_DAYS)
}

/// The pending invitation `token` opens, with its tenant.
async fn pending(
    db: &impl ConnectionTrait,
    token: &str,
) -> Result<Option<(invitations::Model, tenants::Model)>, AppError> {
    if !token.starts_with(TOKEN_TAG) || token.len() > 64 {
        return Ok(None);
    }
    let found = invitations::Entity::find()
        .filter(invitations::Column::TokenHash.eq(api_key::digest(token)))
        .find_also_related(tenants::Entity)
        .one(db)
        .await
        .map_err(db_error)?;
    Ok(found.and_then(|(i, t)| {
        (status(&i, Utc::now()) == InvitationStatus::Pending).then_some((i, t?))
    }))
}

pub async fn preview(db: &DatabaseConnection, token: &str) -> Result<InvitationPreview, AppError> {
    let (invitation, tenant) = pending(db, token)
        .await?
        .ok_or_else(|| AppError::not_found("invitation"))?;
    Ok(InvitationPreview {
        tenant_name: tenant.name,
        email: invitation.email,
        role: Role::parse(&invitation.role).unwrap_or(Role::Viewer),
        expires_at: invitation.expires_at,
    })
}

/// What the person sends to accept.
pub struct Acceptance {
    pub name: String,
    pub password: String,
    pub repeat: String,
}

/// Why an acceptance was refused; `code` is what the invitation page shows.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown, used, revoked or expired.
    Invalid,
    /// The email has an account and this is not its password.
    Password,
    Name,
    Short,
    Mismatch,
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Invalid => "invalid",
            Refusal::Password => "password",
            Refusal::Name => "name",
            Refusal::Short => "short",
            Refusal::Mismatch => "mismatch",
        }
    }
}

/// Accepts the invitation `token` opens: the invited email's account (made now, with the
/// person's own password, if it has none) becomes a member with the invited role, the
/// invitation is used up, and `invitation.accept` is audited, all in one transaction. Returns
/// the account and the tenant it joined.
pub async fn accept(
    db: &DatabaseConnection,
    token: &str,
    form: Acceptance,
    ip: Option<String>,
) -> Result<Result<(users::Model, Uuid), Refusal>, AppError> {
    let Some((invitation, _)) = pending(db, token).await? else {
        return Ok(Err(Refusal::Invalid));
    };
    let existing = users::Entity::find()
        .filter(users::Column::Email.eq(invitation.email.as_str()))
        .one(db)
        .await
        .map_err(db_error)?;
    let new_account = match &existing {
        Some(user) => {
            if !password::verify(form.password, user.password_hash.clone()).await {
                return Ok(Err(Refusal::Password));
            }
            None
        }
        None => {
            let name = form.name.trim().to_string();
            if name.is_empty() || name.chars().count() > 200 {
                return Ok(Err(Refusal::Name));
            }
            let length = form.password.chars().count();
            if !(MIN_PASSWORD_LEN..=128).contains(&length) {
                return Ok(Err(Refusal::Short));
            }
            if form.password != form.repeat {
                return Ok(Err(Refusal::Mismatch));
            }
            Some((name, password::hash(form.password).await?))
        }
    };
    let now = Utc::now();
    let txn = db.begin().await.map_err(db_error)?;
    // Used once: only the first of two racing acceptances changes the row.
    let used = invitations::Entity::update_many()
        .col_expr(invitations::Column::AcceptedAt, Expr::value(now))
        .filter(invitations::Column::Id.eq(invitation.id))
        .filter(invitations::Column::AcceptedAt.is_null())
        .filter(invitations::Column::RevokedAt.is_null())
        .filter(invitations::Column::ExpiresAt.gt(now))
        .exec(&txn)
        .await
        .map_err(db_error)?;
    if used.rows_affected != 1 {
        return Ok(Err(Refusal::Invalid));
    }
    let user = match (existing, new_account) {
        (Some(user), _) => user,
        (None, Some((name, password_hash))) => users::ActiveModel {
            id: Set(Uuid::now_v7()),
            email: Set(validate::normal_email(&invitation.email)),
            name: Set(name),
            password_hash: Set(password_hash),
            must_change_password: Set(false),
            created_at: Set(now),
        }
        .insert(&txn)
        .await
        .map_err(db_error)?,
        (None, None) => return Err(AppError::Internal("no account to accept with".into())),
    };
    invitations::Entity::update_many()
        .col_expr(invitations::Column::AcceptedBy, Expr::value(user.id))
        .filter(invitations::Column::Id.eq(invitation.id))
        .exec(&txn)
        .await
        .map_err(db_error)?;
    let member = memberships::Entity::find()
        .filter(memberships::Column::TenantId.eq(invitation.tenant_id))
        .filter(memberships::Column::UserId.eq(user.id))
        .one(&txn)
        .await
        .map_err(db_error)?;
    if member.is_none() {
        super::new_membership(invitation.tenant_id, user.id, &invitation.role)
            .insert(&txn)
            .await
            .map_err(db_error)?;
    }
    Record {
        tenant_id: Some(invitation.tenant_id),
        actor: format!("user:{}", user.email),
        action: "invitation.accept",
        target: format!("invitation:{}", invitation.id),
        ip,
        details: Some(json!({ "role": invitation.role, "already_member": member.is_some() })),
    }
    .write(&txn)
    .await
    .map_err(db_error)?;
    txn.commit().await.map_err(db_error)?;
    Ok(Ok((user, invitation.tenant_id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_stored_only_as_digests() {
        let (a, digest) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 43);
        assert_eq!(digest, api_key::digest(&a));
        assert!(!digest.contains(&a[4..]));
        assert_eq!(
            link("https://x.test/", &a),
            format!("https://x.test/invite?token={a}")
        );
    }
}
