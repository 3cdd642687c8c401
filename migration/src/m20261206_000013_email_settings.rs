//! A tenant's own email provider (SendGrid or Mailgun over HTTP): its sender address, its API
//! key sealed with the key ring, and for Mailgun the sending domain and region. Tenants
//! without a row send through the platform's SMTP relay.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum TenantEmailSettings {
    Table,
    TenantId,
    Provider,
    FromAddress,
    ApiKeyEncrypted,
    MailgunDomain,
    MailgunRegion,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(TenantEmailSettings::Table)
                .col(uuid(TenantEmailSettings::TenantId).primary_key())
                .col(string_len(TenantEmailSettings::Provider, 20))
                .col(string_len(TenantEmailSettings::FromAddress, 320))
                .col(text(TenantEmailSettings::ApiKeyEncrypted))
                .col(string_len_null(TenantEmailSettings::MailgunDomain, 253))
                .col(string_len(TenantEmailSettings::MailgunRegion, 2))
                .col(timestamp_with_time_zone(TenantEmailSettings::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(TenantEmailSettings::Table, TenantEmailSettings::TenantId)
                        .to(Tenants::Table, Tenants::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(TenantEmailSettings::Table).to_owned())
            .await
    }
}
