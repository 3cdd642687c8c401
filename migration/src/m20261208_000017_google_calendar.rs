//! Google Calendar as the tenant's calendar: what the agents do while the connection needs
//! reconnecting (`fallback`: book in the built-in calendar, or refuse), the incremental sync's
//! token and time, and the lease that lets one process at a time refresh the access token.
//! Each booking says which calendar holds it (`provider`) and the event there (`external_id`).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum GoogleConnections {
    Table,
    Fallback,
    SyncToken,
    SyncedAt,
    LeaseUntil,
    LeaseHolder,
}

#[derive(DeriveIden)]
enum Bookings {
    Table,
    TenantId,
    Provider,
    ExternalId,
}

const INDEX: &str = "idx_bookings_external";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite takes one change per `ALTER TABLE`.
        for mut column in [
            string_len(GoogleConnections::Fallback, 16)
                .default("built_in")
                .to_owned(),
            text_null(GoogleConnections::SyncToken).to_owned(),
            timestamp_with_time_zone_null(GoogleConnections::SyncedAt).to_owned(),
            timestamp_with_time_zone_null(GoogleConnections::LeaseUntil).to_owned(),
            uuid_null(GoogleConnections::LeaseHolder).to_owned(),
        ] {
            m.alter_table(
                Table::alter()
                    .table(GoogleConnections::Table)
                    .add_column(&mut column)
                    .to_owned(),
            )
            .await?;
        }
        for mut column in [
            string_len(Bookings::Provider, 16)
                .default("built_in")
                .to_owned(),
            string_len_null(Bookings::ExternalId, 1024).to_owned(),
        ] {
            m.alter_table(
                Table::alter()
                    .table(Bookings::Table)
                    .add_column(&mut column)
                    .to_owned(),
            )
            .await?;
        }
        m.create_index(
            Index::create()
                .name(INDEX)
                .table(Bookings::Table)
                .col(Bookings::TenantId)
                .col(Bookings::ExternalId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name(INDEX).table(Bookings::Table).to_owned())
            .await?;
        for column in [Bookings::ExternalId, Bookings::Provider] {
            m.alter_table(
                Table::alter()
                    .table(Bookings::Table)
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        for column in [
            GoogleConnections::LeaseHolder,
            GoogleConnections::LeaseUntil,
            GoogleConnections::SyncedAt,
            GoogleConnections::SyncToken,
            GoogleConnections::Fallback,
        ] {
            m.alter_table(
                Table::alter()
                    .table(GoogleConnections::Table)
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
