//! What the agents may do on their own: a tenant's `agent_policy` (email recipients and caps,
//! booking limits; JSON, defaults when absent) and each knowledge base's `visibility`:
//! `agents` (the built-in specialists may answer from it, as every existing one did) or
//! `internal` (searched only by people and keys with `knowledge:read`).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    AgentPolicy,
}

#[derive(DeriveIden)]
enum KnowledgeBases {
    Table,
    Visibility,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Tenants::Table)
                .add_column(json_null(Tenants::AgentPolicy))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(KnowledgeBases::Table)
                .add_column(string_len(KnowledgeBases::Visibility, 16).default("agents"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(KnowledgeBases::Table)
                .drop_column(KnowledgeBases::Visibility)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Tenants::Table)
                .drop_column(Tenants::AgentPolicy)
                .to_owned(),
        )
        .await
    }
}
