//! Chatwoot as a channel: a tenant's connection (its Chatwoot installation, account and inbox,
//! the agent bot's token and the webhook secret, both sealed with the key ring) and which
//! Chatwoot conversation is which of ours.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ChatwootConnections {
    Table,
    Id,
    TenantId,
    BaseUrl,
    AccountId,
    InboxId,
    Token,
    Secret,
    Enabled,
    LastEventAt,
    LastError,
    LastErrorAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ChatwootConversations {
    Table,
    ConnectionId,
    ChatwootId,
    TenantId,
    ConversationId,
    ContactId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Conversations {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(ChatwootConnections::Table)
                .col(uuid(ChatwootConnections::Id).primary_key())
                .col(uuid_uniq(ChatwootConnections::TenantId))
                .col(string_len(ChatwootConnections::BaseUrl, 2000))
                .col(big_integer(ChatwootConnections::AccountId))
                .col(big_integer(ChatwootConnections::InboxId))
                .col(text(ChatwootConnections::Token))
                .col(text(ChatwootConnections::Secret))
                .col(boolean(ChatwootConnections::Enabled))
                .col(timestamp_with_time_zone_null(
                    ChatwootConnections::LastEventAt,
                ))
                .col(string_len_null(ChatwootConnections::LastError, 1000))
                .col(timestamp_with_time_zone_null(
                    ChatwootConnections::LastErrorAt,
                ))
                .col(timestamp_with_time_zone(ChatwootConnections::CreatedAt))
                .col(timestamp_with_time_zone(ChatwootConnections::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(ChatwootConnections::Table, ChatwootConnections::TenantId)
                        .to(Tenants::Table, Tenants::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ChatwootConversations::Table)
                .col(uuid(ChatwootConversations::ConnectionId))
                .col(big_integer(ChatwootConversations::ChatwootId))
                .col(uuid(ChatwootConversations::TenantId))
                .col(uuid_uniq(ChatwootConversations::ConversationId))
                .col(big_integer_null(ChatwootConversations::ContactId))
                .col(timestamp_with_time_zone(ChatwootConversations::CreatedAt))
                .primary_key(
                    Index::create()
                        .col(ChatwootConversations::ConnectionId)
                        .col(ChatwootConversations::ChatwootId),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(
                            ChatwootConversations::Table,
                            ChatwootConversations::ConnectionId,
                        )
                        .to(ChatwootConnections::Table, ChatwootConnections::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(
                            ChatwootConversations::Table,
                            ChatwootConversations::ConversationId,
                        )
                        .to(Conversations::Table, Conversations::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(ChatwootConversations::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(ChatwootConnections::Table).to_owned())
            .await
    }
}
