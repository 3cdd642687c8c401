//! Workflows started from outside: a signed webhook per workflow (`webhook_secret`, sealed
//! with the key ring), the tenant's event a published version listens to (`trigger_event`,
//! read with the tenant's webhook subscriptions on every event), and the key that makes a
//! delivery, an event or a schedule tick start one run however often it arrives
//! (`workflow_runs.trigger_key`, unique per workflow; NULL for runs started by hand). A run
//! also counts the tokens, cost and calls of the model its steps asked, for the tenant's usage.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Workflows {
    Table,
    WebhookSecret,
    TriggerEvent,
}

#[derive(DeriveIden)]
enum WorkflowRuns {
    Table,
    WorkflowId,
    TriggerKey,
    PromptTokens,
    CompletionTokens,
    CostMicros,
    LlmCalls,
}

const INDEX: &str = "idx_workflow_runs_trigger_key";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite takes one change per `ALTER TABLE`.
        for mut column in [
            text_null(Workflows::WebhookSecret).to_owned(),
            string_len_null(Workflows::TriggerEvent, 40).to_owned(),
        ] {
            m.alter_table(
                Table::alter()
                    .table(Workflows::Table)
                    .add_column(&mut column)
                    .to_owned(),
            )
            .await?;
        }
        for mut column in [
            string_len_null(WorkflowRuns::TriggerKey, 160).to_owned(),
            big_integer(WorkflowRuns::PromptTokens)
                .default(0)
                .to_owned(),
            big_integer(WorkflowRuns::CompletionTokens)
                .default(0)
                .to_owned(),
            big_integer(WorkflowRuns::CostMicros).default(0).to_owned(),
            integer(WorkflowRuns::LlmCalls).default(0).to_owned(),
        ] {
            m.alter_table(
                Table::alter()
                    .table(WorkflowRuns::Table)
                    .add_column(&mut column)
                    .to_owned(),
            )
            .await?;
        }
        // NULLs are distinct in a unique index on both backends: runs started by hand have none.
        m.create_index(
            Index::create()
                .name(INDEX)
                .table(WorkflowRuns::Table)
                .col(WorkflowRuns::WorkflowId)
                .col(WorkflowRuns::TriggerKey)
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name(INDEX)
                .table(WorkflowRuns::Table)
                .to_owned(),
        )
        .await?;
        for column in [
            WorkflowRuns::LlmCalls,
            WorkflowRuns::CostMicros,
            WorkflowRuns::CompletionTokens,
            WorkflowRuns::PromptTokens,
            WorkflowRuns::TriggerKey,
        ] {
            m.alter_table(
                Table::alter()
                    .table(WorkflowRuns::Table)
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        for column in [Workflows::TriggerEvent, Workflows::WebhookSecret] {
            m.alter_table(
                Table::alter()
                    .table(Workflows::Table)
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
