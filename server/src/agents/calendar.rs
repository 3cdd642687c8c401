//! Where appointments are booked. [`Calendar`] is the provider trait (the Google Calendar
//! integration will be another one); [`BuiltInCalendar`] keeps bookings in the database.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Set, Statement, TransactionTrait,
};
use uuid::Uuid;

use app::types::WebhookEvent;

use crate::integrations::webhooks::{self, Event};
use crate::store::bookings;

#[derive(Clone, Debug)]
pub struct NewBooking {
    pub conversation_id: Option<Uuid>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub name: String,
    pub email: String,
    pub note: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    #[error("that time overlaps another booking")]
    Conflict,
    #[error("the calendar failed: {0}")]
    Failed(String),
}

#[async_trait::async_trait]
pub trait Calendar: Send + Sync {
    /// Booked intervals overlapping `[from, to)`, by start.
    async fn busy(
        &self,
        tenant: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>, CalendarError>;

    /// Books the interval unless it overlaps another booking (never double-books, even when
    /// two conversations ask at once).
    async fn book(&self, tenant: Uuid, booking: NewBooking) -> Result<Uuid, CalendarError>;
}

pub struct BuiltInCalendar {
    db: DatabaseConnection,
}

impl BuiltInCalendar {
    pub fn new(db: DatabaseConnection) -> Self {
        BuiltInCalendar { db }
    }
}

fn failed(e: sea_orm::DbErr) -> CalendarError {
    CalendarError::Failed(e.to_string())
}

fn overlapping(
    tenant: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sea_orm::Select<bookings::Entity> {
    bookings::Entity::find()
        .filter(bookings::Column::TenantId.eq(tenant))
        .filter(bookings::Column::StartsAt.lt(to))
        .filter(bookings::Column::EndsAt.gt(from))
}

#[async_trait::async_trait]
impl Calendar for BuiltInCalendar {
    async fn busy(
        &self,
        tenant: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>, CalendarError> {
        Ok(overlapping(tenant, from, to)
            .order_by_asc(bookings::Column::StartsAt)
            .all(&self.db)
            .await
            .map_err(failed)?
            .into_iter()
            .map(|b| (b.starts_at, b.ends_at))
            .collect())
    }

    async fn book(&self, tenant: Uuid, booking: NewBooking) -> Result<Uuid, CalendarError> {
        let txn = self.db.begin().await.map_err(failed)?;
        // PostgreSQL: one booking at a time per tenant. SQLite: the insert below makes this
        // transaction the only writer until it ends, so the overlap check sees every booking.
        if txn.get_database_backend() == DatabaseBackend::Postgres {
            txn.execute(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 7))",
                [tenant.to_string().into()],
            ))
            .await
            .map_err(failed)?;
        }
        let id = Uuid::now_v7();
        bookings::ActiveModel {
            id: Set(id),
            tenant_id: Set(tenant),
            conversation_id: Set(booking.conversation_id),
            starts_at: Set(booking.starts_at),
            ends_at: Set(booking.ends_at),
            name: Set(booking.name.clone()),
            email: Set(booking.email.clone()),
            note: Set(booking.note.clone()),
            created_at: Set(Utc::now()),
        }
        .insert(&txn)
        .await
        .map_err(failed)?;
        let clashes = overlapping(tenant, booking.starts_at, booking.ends_at)
            .filter(bookings::Column::Id.ne(id))
            .count(&txn)
            .await
            .map_err(failed)?;
        if clashes > 0 {
            txn.rollback().await.map_err(failed)?;
            return Err(CalendarError::Conflict);
        }
        let event = Event::new(
            WebhookEvent::BookingCreated,
            serde_json::json!({ "booking": {
                "id": id,
                "conversation_id": booking.conversation_id,
                "starts_at": booking.starts_at,
                "ends_at": booking.ends_at,
                "name": booking.name,
                "email": booking.email,
                "note": booking.note,
            }}),
        );
        webhooks::emit(&txn, tenant, &[event])
            .await
            .map_err(failed)?;
        txn.commit().await.map_err(failed)?;
        Ok(id)
    }
}
