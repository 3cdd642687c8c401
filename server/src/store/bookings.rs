use sea_orm::entity::prelude::*;

/// An appointment: the platform's record of every booking, whichever calendar holds it.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "bookings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub conversation_id: Option<Uuid>,
    pub starts_at: DateTimeUtc,
    pub ends_at: DateTimeUtc,
    pub name: String,
    pub email: String,
    pub note: String,
    pub created_at: DateTimeUtc,
    /// `confirmed` or `cancelled` (`app::types::BookingStatus`).
    pub status: String,
    /// `agent`, `console` or `api` (`app::types::BookingSource`).
    pub source: String,
    pub updated_at: Option<DateTimeUtc>,
    pub cancelled_at: Option<DateTimeUtc>,
    pub cancel_reason: Option<String>,
    /// The calendar that holds it: `built_in` or `google` (`app::types::CalendarProvider`).
    pub provider: String,
    /// The event's id in that calendar (Google: the id we chose when creating it).
    pub external_id: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
