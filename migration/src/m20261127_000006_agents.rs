//! Tenants' own agents: specialists they define (description, base prompt, tools, knowledge
//! bases) and their changes to the built-in ones (a row named like a built-in overrides it).
//! Also the lease that lets one turn at a time run in a conversation, and its LLM call count.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Agents {
    Table,
    Id,
    TenantId,
    Name,
    Description,
    Prompt,
    Tools,
    KnowledgeBaseIds,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Conversations {
    Table,
    BusyUntil,
    LlmCalls,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Agents::Table)
                .col(uuid(Agents::Id).primary_key())
                .col(uuid(Agents::TenantId))
                .col(string_len(Agents::Name, 64))
                .col(string_len(Agents::Description, 500))
                // The default prompt of a tenant-defined agent; null for a built-in's override.
                .col(text_null(Agents::Prompt))
                .col(json(Agents::Tools))
                .col(json(Agents::KnowledgeBaseIds))
                .col(timestamp_with_time_zone(Agents::CreatedAt))
                .col(timestamp_with_time_zone(Agents::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Agents::Table, Agents::TenantId)
                        .to(Tenants::Table, Tenants::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_agents_tenant_name")
                .table(Agents::Table)
                .col(Agents::TenantId)
                .col(Agents::Name)
                .unique()
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Conversations::Table)
                .add_column(timestamp_with_time_zone_null(Conversations::BusyUntil))
                .to_owned(),
        )
        .await?;
        // SQLite adds one column per statement.
        m.alter_table(
            Table::alter()
                .table(Conversations::Table)
                .add_column(integer(Conversations::LlmCalls).default(0))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Conversations::Table)
                .drop_column(Conversations::BusyUntil)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Conversations::Table)
                .drop_column(Conversations::LlmCalls)
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table(Agents::Table).to_owned())
            .await
    }
}
