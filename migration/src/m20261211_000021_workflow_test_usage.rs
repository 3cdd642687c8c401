//! What the model cost when a workflow's step was tried in the editor ("Test this step"): no run
//! or conversation holds those calls, so each test that asked the model leaves a row here, and
//! the usage summary adds them up by time.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WorkflowTestUsage {
    Table,
    Id,
    TenantId,
    WorkflowId,
    Node,
    PromptTokens,
    CompletionTokens,
    CostMicros,
    LlmCalls,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

const INDEX: &str = "idx_workflow_test_usage_tenant_time";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(WorkflowTestUsage::Table)
                .col(uuid(WorkflowTestUsage::Id).primary_key())
                .col(uuid(WorkflowTestUsage::TenantId))
                // No foreign key: what a deleted workflow's tests cost still counts.
                .col(uuid(WorkflowTestUsage::WorkflowId))
                .col(string_len(WorkflowTestUsage::Node, 64))
                .col(big_integer(WorkflowTestUsage::PromptTokens))
                .col(big_integer(WorkflowTestUsage::CompletionTokens))
                .col(big_integer(WorkflowTestUsage::CostMicros))
                .col(big_integer(WorkflowTestUsage::LlmCalls))
                .col(timestamp_with_time_zone(WorkflowTestUsage::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(WorkflowTestUsage::Table, WorkflowTestUsage::TenantId)
                        .to(Tenants::Table, Tenants::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name(INDEX)
                .table(WorkflowTestUsage::Table)
                .col(WorkflowTestUsage::TenantId)
                .col(WorkflowTestUsage::CreatedAt)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(WorkflowTestUsage::Table).to_owned())
            .await
    }
}
