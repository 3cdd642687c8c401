//! Bookings a business can manage: each booking's `status` (`confirmed` or `cancelled`; a
//! cancelled one no longer blocks its time), where it came from (`source`: an agent, the
//! console or the API), when it last changed, and why it was cancelled.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Bookings {
    Table,
    Status,
    Source,
    UpdatedAt,
    CancelledAt,
    CancelReason,
}

/// SQLite takes one change per `ALTER TABLE`.
fn columns() -> Vec<ColumnDef> {
    vec![
        string_len(Bookings::Status, 16)
            .default("confirmed")
            .to_owned(),
        string_len(Bookings::Source, 16).default("agent").to_owned(),
        timestamp_with_time_zone_null(Bookings::UpdatedAt).to_owned(),
        timestamp_with_time_zone_null(Bookings::CancelledAt).to_owned(),
        string_len_null(Bookings::CancelReason, 500).to_owned(),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for mut column in columns() {
            m.alter_table(
                Table::alter()
                    .table(Bookings::Table)
                    .add_column(&mut column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            Bookings::CancelReason,
            Bookings::CancelledAt,
            Bookings::UpdatedAt,
            Bookings::Source,
            Bookings::Status,
        ] {
            m.alter_table(
                Table::alter()
                    .table(Bookings::Table)
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
