//! Database migrations, run at start-up (`server serve`) and by `server migrate`.

pub use sea_orm_migration::prelude::*;

mod m20261126_000001_foundation;
mod m20261126_000002_tenant_policy;
mod m20261126_000003_jobs;
mod m20261126_000004_knowledge;
mod m20261127_000005_conversations;
mod m20261127_000006_agents;
mod m20261127_000007_llm_settings;
mod m20261129_000008_api_key_owner;
mod m20261129_000009_invitations;
mod m20261129_000010_agent_safety;
mod m20261203_000011_widgets;
mod m20261206_000012_webhooks;
mod m20261206_000013_email_settings;
mod m20261206_000014_booking_status;
mod m20261207_000015_chatwoot;
mod m20261207_000016_google;
mod m20261208_000017_google_calendar;
mod m20261209_000018_workflows;
mod m20261210_000019_workflow_triggers;
mod m20261210_000020_workflow_secrets;
mod m20261211_000021_workflow_test_usage;
mod m20261212_000022_channel_graphs;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_foundation::Migration),
            Box::new(m20261126_000002_tenant_policy::Migration),
            Box::new(m20261126_000003_jobs::Migration),
            Box::new(m20261126_000004_knowledge::Migration),
            Box::new(m20261127_000005_conversations::Migration),
            Box::new(m20261127_000006_agents::Migration),
            Box::new(m20261127_000007_llm_settings::Migration),
            Box::new(m20261129_000008_api_key_owner::Migration),
            Box::new(m20261129_000009_invitations::Migration),
            Box::new(m20261129_000010_agent_safety::Migration),
            Box::new(m20261203_000011_widgets::Migration),
            Box::new(m20261206_000012_webhooks::Migration),
            Box::new(m20261206_000013_email_settings::Migration),
            Box::new(m20261206_000014_booking_status::Migration),
            Box::new(m20261207_000015_chatwoot::Migration),
            Box::new(m20261207_000016_google::Migration),
            Box::new(m20261208_000017_google_calendar::Migration),
            Box::new(m20261209_000018_workflows::Migration),
            Box::new(m20261210_000019_workflow_triggers::Migration),
            Box::new(m20261210_000020_workflow_secrets::Migration),
            Box::new(m20261211_000021_workflow_test_usage::Migration),
            Box::new(m20261212_000022_channel_graphs::Migration),
        ]
    }
}
