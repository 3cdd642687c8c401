//! A tenant's secrets for its workflows' HTTP steps (`{{ secrets.NAME }}`): a name, unique per
//! tenant, and the value sealed with the key ring (`workflow.secret`), never returned.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WorkflowSecrets {
    Table,
    Id,
    TenantId,
    Name,
    Value,
    UpdatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

const INDEX: &str = "idx_workflow_secrets_name";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(WorkflowSecrets::Table)
                .col(uuid(WorkflowSecrets::Id).primary_key())
                .col(uuid(WorkflowSecrets::TenantId))
                .col(string_len(WorkflowSecrets::Name, 64))
                .col(text(WorkflowSecrets::Value))
                .col(string_len(WorkflowSecrets::UpdatedBy, 200))
                .col(timestamp_with_time_zone(WorkflowSecrets::CreatedAt))
                .col(timestamp_with_time_zone(WorkflowSecrets::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(WorkflowSecrets::Table, WorkflowSecrets::TenantId)
                        .to(Tenants::Table, Tenants::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name(INDEX)
                .table(WorkflowSecrets::Table)
                .col(WorkflowSecrets::TenantId)
                .col(WorkflowSecrets::Name)
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(WorkflowSecrets::Table).to_owned())
            .await
    }
}
