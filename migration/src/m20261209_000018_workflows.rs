//! Workflows: a tenant's graphs (the draft being edited), their immutable published versions,
//! their runs (checkpoint after every step), each step attempt, and the compensations
//! registered before side-effecting steps ran (SAGA).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Workflows {
    Table,
    Id,
    TenantId,
    Name,
    Description,
    Draft,
    DraftRevision,
    LatestVersion,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WorkflowVersions {
    Table,
    Id,
    TenantId,
    WorkflowId,
    Number,
    Definition,
    Note,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum WorkflowRuns {
    Table,
    Id,
    TenantId,
    WorkflowId,
    VersionId,
    VersionNumber,
    Status,
    Trigger,
    Input,
    State,
    NextNode,
    Seq,
    Attempt,
    Waiting,
    Output,
    Error,
    CancelRequested,
    Compensation,
    LeaseOwner,
    LeaseUntil,
    CreatedBy,
    CreatedAt,
    StartedAt,
    FinishedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WorkflowSteps {
    Table,
    Id,
    TenantId,
    RunId,
    Seq,
    Node,
    Kind,
    Attempt,
    Status,
    Output,
    Port,
    Error,
    DurationMs,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum WorkflowCompensations {
    Table,
    Id,
    TenantId,
    RunId,
    Seq,
    Node,
    Action,
    Status,
    Attempts,
    Error,
    CreatedAt,
    FinishedAt,
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
                .table(Workflows::Table)
                .col(uuid(Workflows::Id).primary_key())
                .col(uuid(Workflows::TenantId))
                .col(string_len(Workflows::Name, 100))
                .col(string_len(Workflows::Description, 500))
                .col(json(Workflows::Draft))
                .col(big_integer(Workflows::DraftRevision))
                .col(integer_null(Workflows::LatestVersion))
                .col(timestamp_with_time_zone(Workflows::CreatedAt))
                .col(timestamp_with_time_zone(Workflows::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Workflows::Table, Workflows::TenantId)
                        .to(Tenants::Table, Tenants::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("workflows_tenant_name")
                .table(Workflows::Table)
                .col(Workflows::TenantId)
                .col(Workflows::Name)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(WorkflowVersions::Table)
                .col(uuid(WorkflowVersions::Id).primary_key())
                .col(uuid(WorkflowVersions::TenantId))
                .col(uuid(WorkflowVersions::WorkflowId))
                .col(integer(WorkflowVersions::Number))
                .col(json(WorkflowVersions::Definition))
                .col(string_len(WorkflowVersions::Note, 500))
                .col(string_len(WorkflowVersions::CreatedBy, 200))
                .col(timestamp_with_time_zone(WorkflowVersions::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(WorkflowVersions::Table, WorkflowVersions::WorkflowId)
                        .to(Workflows::Table, Workflows::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // Two publishes at once: one gets the number, the other a conflict.
        m.create_index(
            Index::create()
                .name("workflow_versions_number")
                .table(WorkflowVersions::Table)
                .col(WorkflowVersions::WorkflowId)
                .col(WorkflowVersions::Number)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(WorkflowRuns::Table)
                .col(uuid(WorkflowRuns::Id).primary_key())
                .col(uuid(WorkflowRuns::TenantId))
                .col(uuid(WorkflowRuns::WorkflowId))
                .col(uuid(WorkflowRuns::VersionId))
                .col(integer(WorkflowRuns::VersionNumber))
                .col(string_len(WorkflowRuns::Status, 20))
                .col(string_len(WorkflowRuns::Trigger, 40))
                .col(json(WorkflowRuns::Input))
                .col(json(WorkflowRuns::State))
                .col(string_len_null(WorkflowRuns::NextNode, 64))
                .col(integer(WorkflowRuns::Seq))
                .col(integer(WorkflowRuns::Attempt))
                .col(json_null(WorkflowRuns::Waiting))
                .col(json_null(WorkflowRuns::Output))
                .col(text_null(WorkflowRuns::Error))
                .col(boolean(WorkflowRuns::CancelRequested))
                .col(string_len_null(WorkflowRuns::Compensation, 20))
                .col(uuid_null(WorkflowRuns::LeaseOwner))
                .col(timestamp_with_time_zone_null(WorkflowRuns::LeaseUntil))
                .col(string_len(WorkflowRuns::CreatedBy, 200))
                .col(timestamp_with_time_zone(WorkflowRuns::CreatedAt))
                .col(timestamp_with_time_zone_null(WorkflowRuns::StartedAt))
                .col(timestamp_with_time_zone_null(WorkflowRuns::FinishedAt))
                .col(timestamp_with_time_zone(WorkflowRuns::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(WorkflowRuns::Table, WorkflowRuns::WorkflowId)
                        .to(Workflows::Table, Workflows::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // A workflow's runs, newest first (ids are UUIDv7).
        m.create_index(
            Index::create()
                .name("workflow_runs_workflow")
                .table(WorkflowRuns::Table)
                .col(WorkflowRuns::WorkflowId)
                .col(WorkflowRuns::Id)
                .to_owned(),
        )
        .await?;
        // Unfinished runs per tenant (the concurrency limit counts them).
        m.create_index(
            Index::create()
                .name("workflow_runs_tenant_status")
                .table(WorkflowRuns::Table)
                .col(WorkflowRuns::TenantId)
                .col(WorkflowRuns::Status)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(WorkflowSteps::Table)
                .col(uuid(WorkflowSteps::Id).primary_key())
                .col(uuid(WorkflowSteps::TenantId))
                .col(uuid(WorkflowSteps::RunId))
                .col(integer(WorkflowSteps::Seq))
                .col(string_len(WorkflowSteps::Node, 64))
                .col(string_len(WorkflowSteps::Kind, 40))
                .col(integer(WorkflowSteps::Attempt))
                .col(string_len(WorkflowSteps::Status, 20))
                .col(json_null(WorkflowSteps::Output))
                .col(string_len_null(WorkflowSteps::Port, 40))
                .col(text_null(WorkflowSteps::Error))
                .col(integer_null(WorkflowSteps::DurationMs))
                .col(timestamp_with_time_zone(WorkflowSteps::StartedAt))
                .col(timestamp_with_time_zone_null(WorkflowSteps::FinishedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(WorkflowSteps::Table, WorkflowSteps::RunId)
                        .to(WorkflowRuns::Table, WorkflowRuns::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // One row per attempt: a worker resuming an attempt its predecessor began finds it.
        m.create_index(
            Index::create()
                .name("workflow_steps_attempt")
                .table(WorkflowSteps::Table)
                .col(WorkflowSteps::RunId)
                .col(WorkflowSteps::Seq)
                .col(WorkflowSteps::Attempt)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(WorkflowCompensations::Table)
                .col(uuid(WorkflowCompensations::Id).primary_key())
                .col(uuid(WorkflowCompensations::TenantId))
                .col(uuid(WorkflowCompensations::RunId))
                .col(integer(WorkflowCompensations::Seq))
                .col(string_len(WorkflowCompensations::Node, 64))
                .col(json(WorkflowCompensations::Action))
                .col(string_len(WorkflowCompensations::Status, 20))
                .col(integer(WorkflowCompensations::Attempts))
                .col(text_null(WorkflowCompensations::Error))
                .col(timestamp_with_time_zone(WorkflowCompensations::CreatedAt))
                .col(timestamp_with_time_zone_null(
                    WorkflowCompensations::FinishedAt,
                ))
                .foreign_key(
                    ForeignKey::create()
                        .from(WorkflowCompensations::Table, WorkflowCompensations::RunId)
                        .to(WorkflowRuns::Table, WorkflowRuns::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("workflow_compensations_step")
                .table(WorkflowCompensations::Table)
                .col(WorkflowCompensations::RunId)
                .col(WorkflowCompensations::Seq)
                .unique()
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            WorkflowCompensations::Table.into_iden(),
            WorkflowSteps::Table.into_iden(),
            WorkflowRuns::Table.into_iden(),
            WorkflowVersions::Table.into_iden(),
            Workflows::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
