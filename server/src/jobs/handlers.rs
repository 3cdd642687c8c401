//! The platform's own job kinds. Features register theirs next to these (`registry`).

use super::worker::{JobContext, JobHandler, Registry};
use crate::store::audit_log::Record;

/// Does nothing: measures the queue itself (`server bench jobs`) and proves a worker is alive.
pub struct Noop;

#[async_trait::async_trait]
impl JobHandler for Noop {
    fn kind(&self) -> &'static str {
        "platform.noop"
    }

    fn concurrency(&self) -> usize {
        16
    }

    async fn run(&self, _: &mut JobContext) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Writes one audit entry (`job.echo`, target = the payload's `target`) in the job's own
/// transaction: a diagnostic whose effect is visible, and exactly once however often the job
/// is taken over (the crash-safety test counts these entries).
pub struct Echo;

#[async_trait::async_trait]
impl JobHandler for Echo {
    fn kind(&self) -> &'static str {
        "platform.echo"
    }

    fn concurrency(&self) -> usize {
        8
    }

    async fn run(&self, ctx: &mut JobContext) -> anyhow::Result<()> {
        let target = ctx.payload()["target"]
            .as_str()
            .unwrap_or("unnamed")
            .to_string();
        // The "work" comes first; the transaction is opened only to record the outcome.
        let delay_ms = ctx.payload()["delay_ms"].as_u64().unwrap_or(0);
        if delay_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        }
        let tenant_id = ctx.tenant_id();
        let txn = ctx.transaction().await?;
        Record {
            tenant_id,
            actor: "job".into(),
            action: "job.echo",
            target,
            ip: None,
            details: None,
        }
        .write(txn)
        .await?;
        Ok(())
    }
}

/// Every kind this build can run; `mailer` delivers `email.send` (`None` without `SMTP_URL`)
/// unless the tenant has its own provider (`providers`),
/// opening sealed bodies with `keys`, which also open webhook secrets (`webhook.deliver` runs
/// only with them).
pub fn registry(
    knowledge: &std::sync::Arc<crate::rag::Knowledge>,
    mailer: Option<std::sync::Arc<dyn crate::integrations::email::Mailer>>,
    keys: Option<crate::secrets::KeyRing>,
    providers: Option<crate::integrations::email_providers::EmailProviders>,
) -> Registry {
    use crate::integrations::webhooks::deliver::Deliver;
    let webhooks = keys.clone().and_then(|keys| {
        Deliver::new(keys, knowledge.config.fetch_allow_private)
            .map_err(|e| tracing::error!(error = %e, "webhooks cannot be delivered"))
            .ok()
    });
    let registry = Registry::default()
        .with(Noop)
        .with(Echo)
        .with(crate::rag::ingest::Ingest::new(knowledge.clone()))
        .with(crate::integrations::email::SendEmail::new(
            mailer, keys, providers,
        ))
        .with(crate::widget::sweep::Sweep)
        .with(crate::integrations::webhooks::sweep::Sweep);
    match webhooks {
        Some(deliver) => registry.with(deliver),
        None => registry,
    }
}
