//! The durable job queue: jobs (with their error history) and cron schedules.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Id,
    TenantId,
    Kind,
    Payload,
    State,
    DedupeKey,
    Attempts,
    MaxAttempts,
    RunAt,
    LockedBy,
    LockedUntil,
    Progress,
    LastError,
    Errors,
    EnqueuedAt,
    StartedAt,
    FinishedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum JobSchedules {
    Table,
    Id,
    TenantId,
    Name,
    Kind,
    Payload,
    Cron,
    Timezone,
    NextRunAt,
    LastRunAt,
    Enabled,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Jobs::Table)
                .col(uuid(Jobs::Id).primary_key())
                .col(uuid_null(Jobs::TenantId))
                .col(string_len(Jobs::Kind, 100))
                .col(json(Jobs::Payload))
                .col(string_len(Jobs::State, 16))
                .col(string_len_null(Jobs::DedupeKey, 400).unique_key())
                .col(integer(Jobs::Attempts))
                .col(integer(Jobs::MaxAttempts))
                .col(timestamp_with_time_zone(Jobs::RunAt))
                .col(string_len_null(Jobs::LockedBy, 100))
                .col(timestamp_with_time_zone_null(Jobs::LockedUntil))
                .col(small_integer(Jobs::Progress))
                .col(text_null(Jobs::LastError))
                .col(json(Jobs::Errors))
                .col(timestamp_with_time_zone(Jobs::EnqueuedAt))
                .col(timestamp_with_time_zone_null(Jobs::StartedAt))
                .col(timestamp_with_time_zone_null(Jobs::FinishedAt))
                .col(timestamp_with_time_zone(Jobs::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Jobs::Table, Jobs::TenantId)
                        .to(Tenants::Table, Tenants::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // What workers claim: due jobs by state and time.
        m.create_index(
            Index::create()
                .name("ix_jobs_state_run_at")
                .table(Jobs::Table)
                .col(Jobs::State)
                .col(Jobs::RunAt)
                .to_owned(),
        )
        .await?;
        // What the console lists: a tenant's jobs, newest first.
        m.create_index(
            Index::create()
                .name("ix_jobs_tenant_enqueued")
                .table(Jobs::Table)
                .col(Jobs::TenantId)
                .col(Jobs::EnqueuedAt)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(JobSchedules::Table)
                .col(uuid(JobSchedules::Id).primary_key())
                .col(uuid_null(JobSchedules::TenantId))
                .col(string_len(JobSchedules::Name, 100))
                .col(string_len(JobSchedules::Kind, 100))
                .col(json(JobSchedules::Payload))
                .col(string_len(JobSchedules::Cron, 100))
                .col(string_len(JobSchedules::Timezone, 64))
                .col(timestamp_with_time_zone(JobSchedules::NextRunAt))
                .col(timestamp_with_time_zone_null(JobSchedules::LastRunAt))
                .col(boolean(JobSchedules::Enabled))
                .col(timestamp_with_time_zone(JobSchedules::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(JobSchedules::Table, JobSchedules::TenantId)
                        .to(Tenants::Table, Tenants::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_job_schedules_tenant_name")
                .table(JobSchedules::Table)
                .col(JobSchedules::TenantId)
                .col(JobSchedules::Name)
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(JobSchedules::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Jobs::Table).to_owned())
            .await
    }
}
