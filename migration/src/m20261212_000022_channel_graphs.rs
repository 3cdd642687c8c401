//! Which conversation graph answers each of a tenant's channels: a row per channel that has
//! one (a workflow started by a customer's message; its published version answers). A channel
//! without a row, or whose workflow is deleted, is answered by the default graph.
//!
//! `workflows.trigger_kind` is the kind of its published version's trigger, so the workflows
//! that may be chosen are found without reading definitions (none published before this
//! migration starts on a message: it is left empty for them).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ChannelGraphs {
    Table,
    TenantId,
    Channel,
    WorkflowId,
    UpdatedBy,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Workflows {
    Table,
    Id,
    TriggerKind,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Workflows::Table)
                .add_column(string_len_null(Workflows::TriggerKind, 32))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ChannelGraphs::Table)
                .col(uuid(ChannelGraphs::TenantId))
                .col(string_len(ChannelGraphs::Channel, 32))
                .col(uuid(ChannelGraphs::WorkflowId))
                .col(string_len(ChannelGraphs::UpdatedBy, 200))
                .col(timestamp_with_time_zone(ChannelGraphs::UpdatedAt))
                .primary_key(
                    Index::create()
                        .col(ChannelGraphs::TenantId)
                        .col(ChannelGraphs::Channel),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(ChannelGraphs::Table, ChannelGraphs::TenantId)
                        .to(Tenants::Table, Tenants::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(ChannelGraphs::Table, ChannelGraphs::WorkflowId)
                        .to(Workflows::Table, Workflows::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(ChannelGraphs::Table).to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table(Workflows::Table)
                .drop_column(Workflows::TriggerKind)
                .to_owned(),
        )
        .await
    }
}
