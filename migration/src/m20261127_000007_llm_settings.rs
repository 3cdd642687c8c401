//! A tenant's own LLM provider: endpoint, models and the API key, encrypted
//! (`v1:<key id>:<data>`, see the server's `secrets` module). No row: the platform's provider.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum TenantLlmSettings {
    Table,
    TenantId,
    BaseUrl,
    ChatModel,
    RouterModel,
    ApiKeyEncrypted,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(TenantLlmSettings::Table)
                .col(uuid(TenantLlmSettings::TenantId).primary_key())
                .col(text(TenantLlmSettings::BaseUrl))
                .col(string_len(TenantLlmSettings::ChatModel, 200))
                .col(string_len_null(TenantLlmSettings::RouterModel, 200))
                .col(text_null(TenantLlmSettings::ApiKeyEncrypted))
                .col(timestamp_with_time_zone(TenantLlmSettings::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(TenantLlmSettings::Table, TenantLlmSettings::TenantId)
                        .to(Tenants::Table, Tenants::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(TenantLlmSettings::Table).to_owned())
            .await
    }
}
