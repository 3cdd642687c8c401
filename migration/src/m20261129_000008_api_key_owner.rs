//! The user on whose authority an API key exists (`owner_user_id`): the member who created it,
//! or the owner of the key that created it; none for keys made by the operator's CLI. Removing
//! a member revokes their keys and lowering their role narrows them. Existing keys are
//! attributed from `created_by` (`user:EMAIL`, `key:PREFIX`).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    TenantId,
    OwnerUserId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(ApiKeys::Table)
                .add_column(uuid_null(ApiKeys::OwnerUserId))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("api_keys_owner")
                .table(ApiKeys::Table)
                .col(ApiKeys::TenantId)
                .col(ApiKeys::OwnerUserId)
                .to_owned(),
        )
        .await?;
        let db = m.get_connection();
        db.execute_unprepared(
            "UPDATE api_keys SET owner_user_id = \
             (SELECT users.id FROM users WHERE 'user:' || users.email = api_keys.created_by)",
        )
        .await?;
        // Keys made by keys, a few generations deep.
        for _ in 0..4 {
            db.execute_unprepared(
                "UPDATE api_keys SET owner_user_id = \
                 (SELECT k.owner_user_id FROM api_keys k \
                  WHERE 'key:' || k.prefix = api_keys.created_by AND k.tenant_id = api_keys.tenant_id) \
                 WHERE owner_user_id IS NULL AND created_by LIKE 'key:%'",
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("api_keys_owner")
                .table(ApiKeys::Table)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(ApiKeys::Table)
                .drop_column(ApiKeys::OwnerUserId)
                .to_owned(),
        )
        .await
    }
}
