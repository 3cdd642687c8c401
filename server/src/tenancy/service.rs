//! The tenancy service: every query here is scoped by `access.tenant_id`, every change is
//! permission-checked and written to the audit log in the same transaction.

use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::{
    ActiveValue::Set, DatabaseConnection, DatabaseTransaction, QueryOrder, QuerySelect,
    TransactionTrait,
};
use serde_json::json;

use app::error::AppError;
use app::services::{Access, Actor, TenancyService};
use app::types::*;
use app::validate::{check, normal_origin};

use super::invitations::{self, Invites};
use super::{db_error, to_tenant, validate};
use crate::auth::api_key;
use crate::integrations::email::{self, OutgoingEmail};
use crate::kv::Kv;
use crate::store::audit_log::{self, Record};
use crate::store::invitations as invitation;
use crate::store::{api_keys, memberships, tenants, users};

pub struct TenancyServiceImpl {
    db: DatabaseConnection,
    kv: Kv,
    invites: Invites,
}

/// The most invitations a list returns (newest first).
const INVITATIONS_LISTED: u64 = 200;

impl TenancyServiceImpl {
    pub fn new(db: DatabaseConnection, kv: Kv, invites: Invites) -> Self {
        Self { db, kv, invites }
    }

    /// The member of this tenant with `email`, if any.
    async fn member_by_email(
        &self,
        access: &Access,
        email: &str,
    ) -> Result<Option<memberships::Model>, AppError> {
        memberships::Entity::find()
            .filter(memberships::Column::TenantId.eq(access.tenant_id))
            .inner_join(users::Entity)
            .filter(users::Column::Email.eq(email))
            .one(&self.db)
            .await
            .map_err(db_error)
    }

    /// The member on whose authority a key made by `access` exists: the user, or the owner
    /// of the key that makes it; none for the CLI.
    async fn key_owner(&self, access: &Access) -> Result<Option<Uuid>, AppError> {
        Ok(match &access.actor {
            Actor::User { id, .. } => Some(*id),
            Actor::ApiKey { id, .. } => self.api_key_model(access, *id).await?.owner_user_id,
            Actor::Visitor { .. } | Actor::Channel { .. } | Actor::Cli | Actor::System { .. } => {
                None
            }
        })
    }

    /// Narrows the active keys `user_id` owns in this tenant to what `role` may do (none:
    /// revokes them all), audited in `txn`. Returns the prefixes to drop from the key cache
    /// once `txn` has committed.
    async fn narrow_keys_of(
        &self,
        txn: &DatabaseTransaction,
        access: &Access,
        user_id: Uuid,
        role: Option<Role>,
    ) -> Result<Vec<String>, AppError> {
        let keys = api_keys::Entity::find()
            .filter(api_keys::Column::TenantId.eq(access.tenant_id))
            .filter(api_keys::Column::OwnerUserId.eq(user_id))
            .filter(api_keys::Column::RevokedAt.is_null())
            .all(txn)
            .await
            .map_err(db_error)?;
        let allowed = role.map(Role::scopes).unwrap_or_default();
        let mut changed = Vec::new();
        for key in keys {
            let scopes: Vec<String> =
                serde_json::from_value(key.scopes.clone()).unwrap_or_default();
            let kept: Vec<String> = scopes
                .iter()
                .filter(|name| {
                    Scope::parse(name)
                        .is_some_and(|s| allowed.iter().any(|mine| mine.allows(s.area, s.level)))
                })
                .cloned()
                .collect();
            if kept == scopes {
                continue;
            }
            let prefix = key.prefix.clone();
            let mut row: api_keys::ActiveModel = key.into();
            let record = if kept.is_empty() {
                row.revoked_at = Set(Some(Utc::now()));
                Record::by(access, "api_key.revoke", format!("key:{prefix}"))
                    .details(json!({ "reason": "its owner no longer holds these permissions" }))
            } else {
                row.scopes = Set(json!(kept));
                Record::by(access, "api_key.narrow", format!("key:{prefix}"))
                    .details(json!({ "from": scopes, "to": kept }))
            };
            row.update(txn).await.map_err(db_error)?;
            record.write(txn).await.map_err(db_error)?;
            changed.push(prefix);
        }
        Ok(changed)
    }

    async fn tenant_model(&self, access: &Access) -> Result<tenants::Model, AppError> {
        tenants::Entity::find_by_id(access.tenant_id)
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or_else(|| AppError::not_found("tenant"))
    }

    async fn membership(
        &self,
        access: &Access,
        user_id: Uuid,
    ) -> Result<(memberships::Model, users::Model), AppError> {
        memberships::Entity::find()
            .filter(memberships::Column::TenantId.eq(access.tenant_id))
            .filter(memberships::Column::UserId.eq(user_id))
            .find_also_related(users::Entity)
            .one(&self.db)
            .await
            .map_err(db_error)?
            .and_then(|(m, u)| Some((m, u?)))
            .ok_or_else(|| AppError::not_found("member"))
    }

    async fn owner_count(&self, access: &Access) -> Result<u64, AppError> {
        memberships::Entity::find()
            .filter(memberships::Column::TenantId.eq(access.tenant_id))
            .filter(memberships::Column::Role.eq(Role::Owner.as_str()))
            .count(&self.db)
            .await
            .map_err(db_error)
    }

    async fn api_key_model(&self, access: &Access, id: Uuid) -> Result<api_keys::Model, AppError> {
        api_keys::Entity::find_by_id(id)
            .filter(api_keys::Column::TenantId.eq(access.tenant_id))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or_else(|| AppError::not_found("API key"))
    }
}

/// The invitation mail: who invites, to what, and the link (sealed in the job's payload).
fn invitation_email(
    to: &str,
    tenant: &str,
    access: &Access,
    role: Role,
    link: &str,
) -> Option<OutgoingEmail> {
    let inviter = match &access.actor {
        Actor::User { email, .. } => email.clone(),
        _ => format!("The administrators of {tenant}"),
    };
    let body = format!(
        "{inviter} invited you to join {tenant} on Agent Platform as {role}.\n\n\
         Accept the invitation here:\n{link}\n\n\
         The link works once and expires in {days} days. If you did not expect this \
         invitation, ignore this email.\n",
        role = role.as_str(),
        days = invitations::VALID_DAYS,
    );
    let subject: String = format!("You are invited to {tenant}")
        .chars()
        .take(150)
        .collect();
    OutgoingEmail::new(to, &subject, &body).ok()
}

/// Only an owner (a person, or the operator's CLI) may hand out or take away the owner role;
/// API keys never can.
fn guard_owner_role(access: &Access, touches_owner: bool) -> Result<(), AppError> {
    if touches_owner && access.role != Some(Role::Owner) {
        return Err(AppError::Forbidden(
            "only an owner can grant or change the owner role".into(),
        ));
    }
    Ok(())
}

fn to_member(m: memberships::Model, u: users::Model) -> Member {
    Member {
        user_id: u.id,
        email: u.email,
        name: u.name,
        role: m.role(),
        joined_at: m.created_at,
    }
}

fn to_api_key(m: api_keys::Model) -> ApiKey {
    ApiKey {
        id: m.id,
        name: m.name,
        prefix: m.prefix,
        scopes: serde_json::from_value(m.scopes).unwrap_or_default(),
        created_by: m.created_by,
        created_at: m.created_at,
        last_used_at: m.last_used_at,
        revoked_at: m.revoked_at,
    }
}

#[async_trait::async_trait]
impl TenancyService for TenancyServiceImpl {
    async fn get_tenant(&self, access: &Access) -> Result<Tenant, AppError> {
        access.require(Area::Tenant, Level::Read)?;
        self.tenant_model(access).await.map(to_tenant)
    }

    async fn update_tenant(
        &self,
        access: &Access,
        update: UpdateTenant,
    ) -> Result<Tenant, AppError> {
        access.require(Area::Tenant, Level::Write)?;
        check(&update)?;
        let current = self.tenant_model(access).await?;
        let mut row: tenants::ActiveModel = current.into();
        if let Some(name) = &update.name {
            row.name = Set(name.trim().to_string());
        }
        if let Some(tz) = &update.timezone {
            row.timezone = Set(validate::canonical_timezone(tz));
        }
        if let Some(origins) = &update.allowed_origins {
            let mut normal: Vec<String> = origins.iter().map(|o| normal_origin(o)).collect();
            normal.sort();
            normal.dedup();
            row.allowed_origins = Set(serde_json::to_value(normal).ok());
        }
        if let Some(mut policy) = update.agent_policy.clone() {
            for r in policy.email_recipients.iter_mut() {
                *r = r.trim().to_lowercase();
            }
            policy.email_recipients.sort();
            policy.email_recipients.dedup();
            row.agent_policy = Set(serde_json::to_value(policy).ok());
        }
        if let Some(mut hours) = update.business_hours {
            hours.sort_by_key(|h| h.weekday);
            row.business_hours = Set(serde_json::to_value(hours).ok());
        }
        row.updated_at = Set(Utc::now());
        let txn = self.db.begin().await.map_err(db_error)?;
        let saved = row.update(&txn).await.map_err(db_error)?;
        Record::by(access, "tenant.update", format!("tenant:{}", saved.slug))
            .details(json!({
                "name": saved.name,
                "timezone": saved.timezone,
                "allowed_origins": saved.allowed_origins,
                "agent_policy": saved.agent_policy,
            }))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        crate::http::tenant_policy::forget(&self.kv, saved.id).await;
        Ok(to_tenant(saved))
    }

    async fn list_members(&self, access: &Access) -> Result<Vec<Member>, AppError> {
        access.require(Area::Members, Level::Read)?;
        let rows = memberships::Entity::find()
            .filter(memberships::Column::TenantId.eq(access.tenant_id))
            .find_also_related(users::Entity)
            .order_by_asc(memberships::Column::CreatedAt)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .filter_map(|(m, u)| Some(to_member(m, u?)))
            .collect())
    }

    async fn get_member(&self, access: &Access, user_id: Uuid) -> Result<Member, AppError> {
        access.require(Area::Members, Level::Read)?;
        let (m, u) = self.membership(access, user_id).await?;
        Ok(to_member(m, u))
    }

    async fn invite_member(
        &self,
        access: &Access,
        invite: InviteMember,
    ) -> Result<CreatedInvitation, AppError> {
        access.require(Area::Members, Level::Write)?;
        check(&invite)?;
        let email = validate::normal_email(&invite.email);
        guard_owner_role(access, invite.role == Role::Owner)?;
        if self.member_by_email(access, &email).await?.is_some() {
            return Err(AppError::Conflict(format!("{email} is already a member")));
        }
        let tenant = self.tenant_model(access).await?;
        let now = Utc::now();
        let (token, token_hash) = invitations::new_token();
        let txn = self.db.begin().await.map_err(db_error)?;
        // A new invitation replaces the pending one: its link stops working.
        let replaced = invitation::Entity::update_many()
            .col_expr(invitation::Column::RevokedAt, Expr::value(now))
            .filter(invitation::Column::TenantId.eq(access.tenant_id))
            .filter(invitation::Column::Email.eq(email.as_str()))
            .filter(invitation::Column::AcceptedAt.is_null())
            .filter(invitation::Column::RevokedAt.is_null())
            .exec(&txn)
            .await
            .map_err(db_error)?
            .rows_affected;
        let row = invitation::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(access.tenant_id),
            email: Set(email.clone()),
            role: Set(invite.role.as_str().to_string()),
            token_hash: Set(token_hash),
            invited_by: Set(access.actor.label()),
            created_at: Set(now),
            expires_at: Set(invitations::expiry(now)),
            accepted_at: Set(None),
            accepted_by: Set(None),
            revoked_at: Set(None),
        }
        .insert(&txn)
        .await
        .map_err(db_error)?;
        Record::by(
            access,
            "invitation.create",
            format!("invitation:{}", row.id),
        )
        .details(json!({ "email": email, "role": invite.role, "replaced": replaced }))
        .write(&txn)
        .await
        .map_err(db_error)?;
        let link = invitations::link(&self.invites.console_url, &token);
        let emailed = match &self.invites.mail {
            Some(keys) => {
                let mail = invitation_email(&email, &tenant.name, access, invite.role, &link);
                match mail {
                    Some(mail) => {
                        email::enqueue_sealed(&txn, keys, access.tenant_id, &mail)
                            .await
                            .map_err(db_error)?;
                        true
                    }
                    None => false,
                }
            }
            None => false,
        };
        txn.commit().await.map_err(db_error)?;
        Ok(CreatedInvitation {
            invitation: invitations::to_invitation(row),
            link,
            emailed,
        })
    }

    async fn list_invitations(&self, access: &Access) -> Result<Vec<Invitation>, AppError> {
        access.require(Area::Members, Level::Read)?;
        Ok(invitation::Entity::find()
            .filter(invitation::Column::TenantId.eq(access.tenant_id))
            .order_by_desc(invitation::Column::CreatedAt)
            .limit(INVITATIONS_LISTED)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(invitations::to_invitation)
            .collect())
    }

    async fn revoke_invitation(&self, access: &Access, id: Uuid) -> Result<Invitation, AppError> {
        access.require(Area::Members, Level::Write)?;
        let current = invitation::Entity::find_by_id(id)
            .filter(invitation::Column::TenantId.eq(access.tenant_id))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or_else(|| AppError::not_found("invitation"))?;
        match invitations::status(&current, Utc::now()) {
            InvitationStatus::Accepted => {
                return Err(AppError::Conflict(
                    "this invitation was accepted; remove the member instead".into(),
                ))
            }
            InvitationStatus::Revoked | InvitationStatus::Expired => {
                return Ok(invitations::to_invitation(current))
            }
            InvitationStatus::Pending => {}
        }
        guard_owner_role(access, current.role == Role::Owner.as_str())?;
        let txn = self.db.begin().await.map_err(db_error)?;
        let mut row: invitation::ActiveModel = current.into();
        row.revoked_at = Set(Some(Utc::now()));
        let saved = row.update(&txn).await.map_err(db_error)?;
        Record::by(access, "invitation.revoke", format!("invitation:{id}"))
            .details(json!({ "email": saved.email }))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(invitations::to_invitation(saved))
    }

    async fn change_role(
        &self,
        access: &Access,
        user_id: Uuid,
        role: Role,
    ) -> Result<Member, AppError> {
        access.require(Area::Members, Level::Write)?;
        let (m, u) = self.membership(access, user_id).await?;
        let from = m.role();
        if from == role {
            return Ok(to_member(m, u));
        }
        guard_owner_role(access, from == Role::Owner || role == Role::Owner)?;
        if from == Role::Owner && self.owner_count(access).await? <= 1 {
            return Err(AppError::Conflict(
                "a tenant must keep at least one owner".into(),
            ));
        }
        let txn = self.db.begin().await.map_err(db_error)?;
        let mut row: memberships::ActiveModel = m.into();
        row.role = Set(role.as_str().to_string());
        let saved = row.update(&txn).await.map_err(db_error)?;
        Record::by(access, "member.role_change", format!("user:{}", u.email))
            .details(json!({ "from": from, "to": role }))
            .write(&txn)
            .await
            .map_err(db_error)?;
        // Their keys may do no more than they now may.
        let changed = self
            .narrow_keys_of(&txn, access, user_id, Some(role))
            .await?;
        txn.commit().await.map_err(db_error)?;
        for prefix in changed {
            crate::auth::forget_key(&self.kv, &prefix).await;
        }
        Ok(to_member(saved, u))
    }

    async fn remove_member(&self, access: &Access, user_id: Uuid) -> Result<(), AppError> {
        access.require(Area::Members, Level::Write)?;
        let (m, u) = self.membership(access, user_id).await?;
        let role = m.role();
        guard_owner_role(access, role == Role::Owner)?;
        if role == Role::Owner && self.owner_count(access).await? <= 1 {
            return Err(AppError::Conflict(
                "a tenant must keep at least one owner".into(),
            ));
        }
        let txn = self.db.begin().await.map_err(db_error)?;
        memberships::Entity::delete_by_id(m.id)
            .filter(memberships::Column::TenantId.eq(access.tenant_id))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        Record::by(access, "member.remove", format!("user:{}", u.email))
            .details(json!({ "role": role }))
            .write(&txn)
            .await
            .map_err(db_error)?;
        // Their keys stop working with them.
        let revoked = self.narrow_keys_of(&txn, access, user_id, None).await?;
        txn.commit().await.map_err(db_error)?;
        for prefix in revoked {
            crate::auth::forget_key(&self.kv, &prefix).await;
        }
        Ok(())
    }

    async fn list_api_keys(&self, access: &Access) -> Result<Vec<ApiKey>, AppError> {
        access.require(Area::ApiKeys, Level::Read)?;
        Ok(api_keys::Entity::find()
            .filter(api_keys::Column::TenantId.eq(access.tenant_id))
            .order_by_desc(api_keys::Column::CreatedAt)
            .all(&self.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(to_api_key)
            .collect())
    }

    async fn get_api_key(&self, access: &Access, id: Uuid) -> Result<ApiKey, AppError> {
        access.require(Area::ApiKeys, Level::Read)?;
        self.api_key_model(access, id).await.map(to_api_key)
    }

    async fn create_api_key(
        &self,
        access: &Access,
        create: CreateApiKey,
    ) -> Result<CreatedApiKey, AppError> {
        access.require(Area::ApiKeys, Level::Write)?;
        check(&create)?;
        let name = create.name.trim().to_string();
        let scopes = Scope::parse_list("scopes", &create.scopes)?;
        if let Some(beyond) = scopes.iter().find(|s| {
            !access
                .scopes
                .iter()
                .any(|mine| mine.allows(s.area, s.level))
        }) {
            return Err(AppError::Forbidden(format!(
                "you cannot grant {beyond}, which you do not hold yourself"
            )));
        }
        let owner = self.key_owner(access).await?;
        let key = api_key::generate();
        let scope_names: Vec<String> = scopes.iter().map(ToString::to_string).collect();
        let txn = self.db.begin().await.map_err(db_error)?;
        let row = api_keys::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(access.tenant_id),
            name: Set(name.clone()),
            prefix: Set(key.prefix.clone()),
            secret_hash: Set(key.hash),
            scopes: Set(json!(scope_names)),
            created_by: Set(access.actor.label()),
            owner_user_id: Set(owner),
            created_at: Set(Utc::now()),
            last_used_at: Set(None),
            revoked_at: Set(None),
        }
        .insert(&txn)
        .await
        .map_err(db_error)?;
        Record::by(access, "api_key.create", format!("key:{}", key.prefix))
            .details(json!({ "name": name, "scopes": scope_names }))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(CreatedApiKey {
            key: to_api_key(row),
            secret: key.secret,
        })
    }

    async fn revoke_api_key(&self, access: &Access, id: Uuid) -> Result<ApiKey, AppError> {
        access.require(Area::ApiKeys, Level::Write)?;
        let current = self.api_key_model(access, id).await?;
        if current.revoked_at.is_some() {
            return Ok(to_api_key(current));
        }
        let prefix = current.prefix.clone();
        let txn = self.db.begin().await.map_err(db_error)?;
        let mut row: api_keys::ActiveModel = current.into();
        row.revoked_at = Set(Some(Utc::now()));
        let saved = row.update(&txn).await.map_err(db_error)?;
        Record::by(access, "api_key.revoke", format!("key:{prefix}"))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        crate::auth::forget_key(&self.kv, &saved.prefix).await;
        Ok(to_api_key(saved))
    }

    async fn list_audit(
        &self,
        access: &Access,
        query: AuditQuery,
    ) -> Result<Page<AuditEntry>, AppError> {
        access.require(Area::Audit, Level::Read)?;
        audit_log::list(&self.db, access.tenant_id, &query).await
    }
}
