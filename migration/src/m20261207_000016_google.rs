//! Google Calendar over OAuth: a tenant's connection (its tokens sealed with the key ring, its
//! state, the calendar it books in) and the single-use `state` of each authorization request,
//! bound to the user, the tenant and the session that started it.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum GoogleConnections {
    Table,
    Id,
    TenantId,
    ConnectedBy,
    AccessToken,
    RefreshToken,
    ExpiresAt,
    Scopes,
    Status,
    CalendarId,
    LastError,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum OauthStates {
    Table,
    Id,
    TenantId,
    UserId,
    Provider,
    SecretHash,
    SessionHash,
    Verifier,
    CreatedAt,
    ExpiresAt,
    UsedAt,
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
                .table(GoogleConnections::Table)
                .col(uuid(GoogleConnections::Id).primary_key())
                .col(uuid_uniq(GoogleConnections::TenantId))
                .col(uuid_null(GoogleConnections::ConnectedBy))
                .col(text(GoogleConnections::AccessToken))
                .col(text(GoogleConnections::RefreshToken))
                .col(timestamp_with_time_zone(GoogleConnections::ExpiresAt))
                .col(string_len(GoogleConnections::Scopes, 1000))
                .col(string_len(GoogleConnections::Status, 30))
                .col(string_len(GoogleConnections::CalendarId, 300))
                .col(string_len_null(GoogleConnections::LastError, 1000))
                .col(timestamp_with_time_zone(GoogleConnections::CreatedAt))
                .col(timestamp_with_time_zone(GoogleConnections::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(GoogleConnections::Table, GoogleConnections::TenantId)
                        .to(Tenants::Table, Tenants::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(OauthStates::Table)
                .col(uuid(OauthStates::Id).primary_key())
                .col(uuid(OauthStates::TenantId))
                .col(uuid(OauthStates::UserId))
                .col(string_len(OauthStates::Provider, 30))
                .col(string_len(OauthStates::SecretHash, 64))
                .col(string_len(OauthStates::SessionHash, 64))
                .col(text(OauthStates::Verifier))
                .col(timestamp_with_time_zone(OauthStates::CreatedAt))
                .col(timestamp_with_time_zone(OauthStates::ExpiresAt))
                .col(timestamp_with_time_zone_null(OauthStates::UsedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(OauthStates::Table, OauthStates::TenantId)
                        .to(Tenants::Table, Tenants::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("oauth_states_expires")
                .table(OauthStates::Table)
                .col(OauthStates::ExpiresAt)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(OauthStates::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(GoogleConnections::Table).to_owned())
            .await
    }
}
