//! The audit trail: who did what, when, from where. Written by the services, read per tenant.

use sea_orm::entity::prelude::*;
use sea_orm::Order;
use sea_orm::{ActiveValue::Set, ConnectionTrait};

use app::error::AppError;
use app::services::Access;
use app::types::{AuditEntry, AuditQuery, Page};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: Option<Uuid>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub ip: Option<String>,
    pub details: Option<Json>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// One audit record to write.
pub struct Record<'a> {
    pub tenant_id: Option<Uuid>,
    pub actor: String,
    pub action: &'a str,
    pub target: String,
    pub ip: Option<String>,
    pub details: Option<serde_json::Value>,
}

impl<'a> Record<'a> {
    /// A record of something `access` did in its tenant.
    pub fn by(access: &Access, action: &'a str, target: impl Into<String>) -> Self {
        Record {
            tenant_id: Some(access.tenant_id),
            actor: access.actor.label(),
            action,
            target: target.into(),
            ip: access.ip.clone(),
            details: None,
        }
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Writes the record; pass the transaction of the change it describes, so both land or
    /// neither does.
    pub async fn write(self, db: &impl ConnectionTrait) -> Result<(), DbErr> {
        ActiveModel {
            tenant_id: Set(self.tenant_id),
            actor: Set(self.actor),
            action: Set(self.action.to_string()),
            target: Set(self.target),
            ip: Set(self.ip),
            details: Set(self.details),
            created_at: Set(chrono::Utc::now()),
            ..Default::default()
        }
        .insert(db)
        .await
        .map(|_| ())
    }
}

const DEFAULT_PAGE: u32 = 50;

/// A tenant's audit entries, newest first, filtered and cursor-paginated.
pub async fn list(
    db: &impl ConnectionTrait,
    tenant_id: Uuid,
    query: &AuditQuery,
) -> Result<Page<AuditEntry>, AppError> {
    app::validate::check(query)?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    let mut select = Entity::find().filter(Column::TenantId.eq(tenant_id));
    if let Some(actor) = &query.actor {
        select = select.filter(Column::Actor.eq(actor.as_str()));
    }
    if let Some(action) = &query.action {
        select = select.filter(Column::Action.eq(action.as_str()));
    }
    if let Some(since) = query.since {
        select = select.filter(Column::CreatedAt.gte(since));
    }
    if let Some(until) = query.until {
        select = select.filter(Column::CreatedAt.lt(until));
    }
    let page = super::page_by_id(
        db,
        select,
        (Column::Id, Order::Desc),
        query.cursor.as_deref(),
        limit,
        |r| r.id,
    )
    .await?;
    Ok(page.map(|r| AuditEntry {
        id: r.id,
        actor: r.actor,
        action: r.action,
        target: r.target,
        ip: r.ip,
        details: r.details,
        created_at: r.created_at,
    }))
}
