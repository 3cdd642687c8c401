//! The tenancy service: every query here is scoped by `access.tenant_id`, every change is
//! permission-checked and written to the audit log in the same transaction.

use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::{
    ActiveValue::Set, DatabaseConnection, DatabaseTransaction, QueryOrder, TransactionTrait,
};
use serde_json::json;

use app::error::AppError;
use app::services::{Access, Actor, TenancyService};
use app::types::*;
use app::validate::{check, normal_origin};

use super::{db_error, to_tenant, validate};
use crate::auth::{api_key, password};
use crate::kv::Kv;
use crate::store::audit_log::{self, Record};
use crate::store::{api_keys, memberships, tenants, users};

pub struct TenancyServiceImpl {
    db: DatabaseConnection,
    kv: Kv,
}

impl TenancyServiceImpl {
    pub fn new(db: DatabaseConnection, kv: Kv) -> Self {
        Self { db, kv }
    }

    /// The member on whose authority a key made by `access` exists: the user, or the owner
    /// of the key that makes it; none for the CLI.
    async fn key_owner(&self, access: &Access) -> Result<Option<Uuid>, AppError> {
        Ok(match &access.actor {
            Actor::User { id, .. } => Some(*id),
            Actor::ApiKey { id, .. } => self.api_key_model(access, *id).await?.owner_user_id,
            Actor::Cli => None,
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

    async fn insert_membership(
        &self,
        db: &impl ConnectionTrait,
        access: &Access,
        user: &users::Model,
        role: Role,
    ) -> Result<Member, AppError> {
        let row = memberships::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(access.tenant_id),
            user_id: Set(user.id),
            role: Set(role.as_str().to_string()),
            created_at: Set(Utc::now()),
        }
        .insert(db)
        .await
        .map_err(db_error)?;
        Ok(to_member(row, user.clone()))
    }
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

    async fn add_member(&self, access: &Access, add: AddMember) -> Result<Member, AppError> {
        access.require(Area::Members, Level::Write)?;
        check(&add)?;
        let email = validate::normal_email(&add.email);
        guard_owner_role(access, add.role == Role::Owner)?;
        let user = users::Entity::find()
            .filter(users::Column::Email.eq(email.as_str()))
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or_else(|| {
                AppError::invalid("email", "no user has this email; create a new user instead")
            })?;
        if self.membership(access, user.id).await.is_ok() {
            return Err(AppError::Conflict(format!("{email} is already a member")));
        }
        let txn = self.db.begin().await.map_err(db_error)?;
        let member = self
            .insert_membership(&txn, access, &user, add.role)
            .await?;
        Record::by(access, "member.add", format!("user:{email}"))
            .details(json!({ "role": add.role }))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(member)
    }

    async fn create_user(
        &self,
        access: &Access,
        create: CreateUser,
    ) -> Result<CreatedUser, AppError> {
        access.require(Area::Members, Level::Write)?;
        check(&create)?;
        let email = validate::normal_email(&create.email);
        let name = create.name.trim().to_string();
        guard_owner_role(access, create.role == Role::Owner)?;
        let exists = users::Entity::find()
            .filter(users::Column::Email.eq(email.as_str()))
            .count(&self.db)
            .await
            .map_err(db_error)?;
        if exists > 0 {
            return Err(AppError::Conflict(format!(
                "a user with email {email} exists; add them as a member instead"
            )));
        }
        let temporary_password = password::temporary();
        let password_hash = password::hash(temporary_password.clone()).await?;
        let txn = self.db.begin().await.map_err(db_error)?;
        let user = users::ActiveModel {
            id: Set(Uuid::now_v7()),
            email: Set(email.clone()),
            name: Set(name),
            password_hash: Set(password_hash),
            must_change_password: Set(true),
            created_at: Set(Utc::now()),
        }
        .insert(&txn)
        .await
        .map_err(db_error)?;
        let member = self
            .insert_membership(&txn, access, &user, create.role)
            .await?;
        Record::by(access, "member.create_user", format!("user:{email}"))
            .details(json!({ "role": create.role }))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(CreatedUser {
            member,
            temporary_password,
        })
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
