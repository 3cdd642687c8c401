//! Conversations with the agent graph: their messages, the step-by-step record of each turn,
//! the tenant's router rules and prompts (versioned), and the built-in calendar's bookings.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Conversations {
    Table,
    Id,
    TenantId,
    Channel,
    Status,
    Agent,
    Title,
    Checkpoint,
    Turns,
    PromptTokens,
    CompletionTokens,
    CostMicros,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    TenantId,
    ConversationId,
    Role,
    Agent,
    Content,
    Sources,
    Usage,
    Feedback,
    FeedbackComment,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RunSteps {
    Table,
    Id,
    TenantId,
    ConversationId,
    MessageId,
    Seq,
    Node,
    Detail,
    PromptTokens,
    CompletionTokens,
    DurationMs,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RouterRules {
    Table,
    Id,
    TenantId,
    Name,
    Agent,
    Kind,
    Pattern,
    Priority,
    Enabled,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Bookings {
    Table,
    Id,
    TenantId,
    ConversationId,
    StartsAt,
    EndsAt,
    Name,
    Email,
    Note,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Prompts {
    Table,
    Id,
    TenantId,
    Agent,
    Version,
    Text,
    Note,
    CreatedBy,
    CreatedAt,
}

fn tenant_fk(
    table: impl IntoIden + 'static,
    column: impl IntoIden + 'static,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, column)
        .to(Tenants::Table, Tenants::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

fn conversation_fk(
    table: impl IntoIden + 'static,
    column: impl IntoIden + 'static,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, column)
        .to(Conversations::Table, Conversations::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Conversations::Table)
                .col(uuid(Conversations::Id).primary_key())
                .col(uuid(Conversations::TenantId))
                .col(string_len(Conversations::Channel, 16))
                .col(string_len(Conversations::Status, 16))
                .col(string_len(Conversations::Agent, 64))
                .col(string_len(Conversations::Title, 200))
                .col(json(Conversations::Checkpoint))
                .col(integer(Conversations::Turns))
                .col(big_integer(Conversations::PromptTokens))
                .col(big_integer(Conversations::CompletionTokens))
                .col(big_integer(Conversations::CostMicros))
                .col(timestamp_with_time_zone(Conversations::CreatedAt))
                .col(timestamp_with_time_zone(Conversations::UpdatedAt))
                .foreign_key(&mut tenant_fk(
                    Conversations::Table,
                    Conversations::TenantId,
                ))
                .to_owned(),
        )
        .await?;
        // Listing a tenant's conversations newest first, and the handoff queue.
        m.create_index(
            Index::create()
                .name("ix_conversations_tenant_id")
                .table(Conversations::Table)
                .col(Conversations::TenantId)
                .col(Conversations::Id)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_conversations_tenant_status")
                .table(Conversations::Table)
                .col(Conversations::TenantId)
                .col(Conversations::Status)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Messages::Table)
                .col(uuid(Messages::Id).primary_key())
                .col(uuid(Messages::TenantId))
                .col(uuid(Messages::ConversationId))
                .col(string_len(Messages::Role, 16))
                .col(string_len_null(Messages::Agent, 64))
                .col(text(Messages::Content))
                .col(json(Messages::Sources))
                .col(json_null(Messages::Usage))
                .col(small_integer_null(Messages::Feedback))
                .col(text_null(Messages::FeedbackComment))
                .col(timestamp_with_time_zone(Messages::CreatedAt))
                .foreign_key(&mut tenant_fk(Messages::Table, Messages::TenantId))
                .foreign_key(&mut conversation_fk(
                    Messages::Table,
                    Messages::ConversationId,
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_messages_conversation_id")
                .table(Messages::Table)
                .col(Messages::ConversationId)
                .col(Messages::Id)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(RunSteps::Table)
                .col(uuid(RunSteps::Id).primary_key())
                .col(uuid(RunSteps::TenantId))
                .col(uuid(RunSteps::ConversationId))
                .col(uuid(RunSteps::MessageId))
                .col(integer(RunSteps::Seq))
                .col(string_len(RunSteps::Node, 64))
                .col(json(RunSteps::Detail))
                .col(integer(RunSteps::PromptTokens))
                .col(integer(RunSteps::CompletionTokens))
                .col(integer(RunSteps::DurationMs))
                .col(timestamp_with_time_zone(RunSteps::CreatedAt))
                .foreign_key(&mut tenant_fk(RunSteps::Table, RunSteps::TenantId))
                .foreign_key(&mut conversation_fk(
                    RunSteps::Table,
                    RunSteps::ConversationId,
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_run_steps_message_seq")
                .table(RunSteps::Table)
                .col(RunSteps::MessageId)
                .col(RunSteps::Seq)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(RouterRules::Table)
                .col(uuid(RouterRules::Id).primary_key())
                .col(uuid(RouterRules::TenantId))
                .col(string_len(RouterRules::Name, 100))
                .col(string_len(RouterRules::Agent, 64))
                .col(string_len(RouterRules::Kind, 16))
                .col(text(RouterRules::Pattern))
                .col(integer(RouterRules::Priority))
                .col(boolean(RouterRules::Enabled))
                .col(timestamp_with_time_zone(RouterRules::CreatedAt))
                .col(timestamp_with_time_zone(RouterRules::UpdatedAt))
                .foreign_key(&mut tenant_fk(RouterRules::Table, RouterRules::TenantId))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_router_rules_tenant")
                .table(RouterRules::Table)
                .col(RouterRules::TenantId)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Bookings::Table)
                .col(uuid(Bookings::Id).primary_key())
                .col(uuid(Bookings::TenantId))
                .col(uuid_null(Bookings::ConversationId))
                .col(timestamp_with_time_zone(Bookings::StartsAt))
                .col(timestamp_with_time_zone(Bookings::EndsAt))
                .col(string_len(Bookings::Name, 200))
                .col(string_len(Bookings::Email, 320))
                .col(text(Bookings::Note))
                .col(timestamp_with_time_zone(Bookings::CreatedAt))
                .foreign_key(&mut tenant_fk(Bookings::Table, Bookings::TenantId))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_bookings_tenant_starts")
                .table(Bookings::Table)
                .col(Bookings::TenantId)
                .col(Bookings::StartsAt)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Prompts::Table)
                .col(uuid(Prompts::Id).primary_key())
                .col(uuid(Prompts::TenantId))
                .col(string_len(Prompts::Agent, 64))
                .col(integer(Prompts::Version))
                .col(text(Prompts::Text))
                .col(string_len(Prompts::Note, 200))
                .col(string_len(Prompts::CreatedBy, 200))
                .col(timestamp_with_time_zone(Prompts::CreatedAt))
                .foreign_key(&mut tenant_fk(Prompts::Table, Prompts::TenantId))
                .to_owned(),
        )
        .await?;
        // One row per version; two editors saving at once cannot both get the same number.
        m.create_index(
            Index::create()
                .name("ux_prompts_tenant_agent_version")
                .table(Prompts::Table)
                .col(Prompts::TenantId)
                .col(Prompts::Agent)
                .col(Prompts::Version)
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Prompts::Table.into_iden(),
            Bookings::Table.into_iden(),
            RouterRules::Table.into_iden(),
            RunSteps::Table.into_iden(),
            Messages::Table.into_iden(),
            Conversations::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
