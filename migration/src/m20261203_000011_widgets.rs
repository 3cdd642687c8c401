//! The website chat widget: a tenant's widgets (settings as JSON, the identity secret sealed
//! with the key ring), the visitors who chat through them, the visitors' refresh tokens
//! (stored as SHA-256 digests, rotated on every use, grouped in families so a reused token
//! revokes its whole family), and on conversations the widget, visitor, page and rating.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Widgets {
    Table,
    Id,
    TenantId,
    PublicId,
    Name,
    Settings,
    Secret,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WidgetVisitors {
    Table,
    Id,
    TenantId,
    WidgetId,
    ExternalId,
    Name,
    Email,
    Verified,
    CreatedAt,
    LastSeenAt,
}

#[derive(DeriveIden)]
enum WidgetRefreshTokens {
    Table,
    Id,
    TenantId,
    WidgetId,
    VisitorId,
    FamilyId,
    TokenHash,
    CreatedAt,
    ExpiresAt,
    UsedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Conversations {
    Table,
    WidgetId,
    VisitorId,
    PageUrl,
    Csat,
    CsatComment,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

/// Rows go with what they belong to.
fn cascade(
    from: (impl IntoIden + 'static, impl IntoIden + 'static),
    to: (impl IntoIden + 'static, impl IntoIden + 'static),
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Widgets::Table)
                .col(uuid(Widgets::Id).primary_key())
                .col(uuid(Widgets::TenantId))
                .col(string_len_uniq(Widgets::PublicId, 40))
                .col(string_len(Widgets::Name, 100))
                .col(json(Widgets::Settings))
                .col(text_null(Widgets::Secret))
                .col(timestamp_with_time_zone(Widgets::CreatedAt))
                .col(timestamp_with_time_zone(Widgets::UpdatedAt))
                .foreign_key(&mut cascade(
                    (Widgets::Table, Widgets::TenantId),
                    (Tenants::Table, Tenants::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("widgets_tenant")
                .table(Widgets::Table)
                .col(Widgets::TenantId)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(WidgetVisitors::Table)
                .col(uuid(WidgetVisitors::Id).primary_key())
                .col(uuid(WidgetVisitors::TenantId))
                .col(uuid(WidgetVisitors::WidgetId))
                .col(string_len_null(WidgetVisitors::ExternalId, 200))
                .col(string_len_null(WidgetVisitors::Name, 200))
                .col(string_len_null(WidgetVisitors::Email, 254))
                .col(boolean(WidgetVisitors::Verified))
                .col(timestamp_with_time_zone(WidgetVisitors::CreatedAt))
                .col(timestamp_with_time_zone(WidgetVisitors::LastSeenAt))
                .foreign_key(&mut cascade(
                    (WidgetVisitors::Table, WidgetVisitors::WidgetId),
                    (Widgets::Table, Widgets::Id),
                ))
                .to_owned(),
        )
        .await?;
        // A verified visitor is one row per widget, whichever device they come from.
        m.create_index(
            Index::create()
                .name("widget_visitors_external")
                .table(WidgetVisitors::Table)
                .col(WidgetVisitors::WidgetId)
                .col(WidgetVisitors::ExternalId)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(WidgetRefreshTokens::Table)
                .col(uuid(WidgetRefreshTokens::Id).primary_key())
                .col(uuid(WidgetRefreshTokens::TenantId))
                .col(uuid(WidgetRefreshTokens::WidgetId))
                .col(uuid(WidgetRefreshTokens::VisitorId))
                .col(uuid(WidgetRefreshTokens::FamilyId))
                .col(string_len_uniq(WidgetRefreshTokens::TokenHash, 64))
                .col(timestamp_with_time_zone(WidgetRefreshTokens::CreatedAt))
                .col(timestamp_with_time_zone(WidgetRefreshTokens::ExpiresAt))
                .col(timestamp_with_time_zone_null(WidgetRefreshTokens::UsedAt))
                .col(timestamp_with_time_zone_null(
                    WidgetRefreshTokens::RevokedAt,
                ))
                .foreign_key(&mut cascade(
                    (WidgetRefreshTokens::Table, WidgetRefreshTokens::VisitorId),
                    (WidgetVisitors::Table, WidgetVisitors::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("widget_refresh_tokens_family")
                .table(WidgetRefreshTokens::Table)
                .col(WidgetRefreshTokens::FamilyId)
                .to_owned(),
        )
        .await?;
        // One column per statement: SQLite alters one at a time.
        for column in [
            uuid_null(Conversations::WidgetId),
            uuid_null(Conversations::VisitorId),
            string_len_null(Conversations::PageUrl, 2000),
            small_integer_null(Conversations::Csat),
            string_len_null(Conversations::CsatComment, 1000),
        ] {
            let mut column = column;
            m.alter_table(
                Table::alter()
                    .table(Conversations::Table)
                    .add_column(&mut column)
                    .to_owned(),
            )
            .await?;
        }
        m.create_index(
            Index::create()
                .name("conversations_visitor")
                .table(Conversations::Table)
                .col(Conversations::VisitorId)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name("conversations_visitor").to_owned())
            .await?;
        for column in [
            Conversations::CsatComment,
            Conversations::Csat,
            Conversations::PageUrl,
            Conversations::VisitorId,
            Conversations::WidgetId,
        ] {
            m.alter_table(
                Table::alter()
                    .table(Conversations::Table)
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        m.drop_table(Table::drop().table(WidgetRefreshTokens::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(WidgetVisitors::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Widgets::Table).to_owned())
            .await
    }
}
