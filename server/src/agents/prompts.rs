//! Tenants' own system prompts per agent, versioned: every save is a new version, restoring
//! the default saves the built-in text as one more, and any two versions can be diffed.

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use uuid::Uuid;

use app::error::AppError;
use app::services::Access;
use app::types::{AgentPrompt, PromptVersion};

use crate::store::audit_log::Record;
use crate::store::prompts;
use crate::tenancy::db_error;

use super::specialists::Specialist;

pub const VARIABLES: [&str; 4] = [
    "{{company}}",
    "{{business_hours}}",
    "{{timezone}}",
    "{{today}}",
];

/// The newest saved prompt of each agent of the tenant.
pub async fn current(
    db: &impl ConnectionTrait,
    tenant: Uuid,
) -> Result<HashMap<String, String>, AppError> {
    // Only the newest version of each agent's prompt is read, not the whole history.
    let newest: Vec<(String, i32)> = prompts::Entity::find()
        .select_only()
        .column(prompts::Column::Agent)
        .column_as(Expr::col(prompts::Column::Version).max(), "version")
        .filter(prompts::Column::TenantId.eq(tenant))
        .group_by(prompts::Column::Agent)
        .into_tuple()
        .all(db)
        .await
        .map_err(db_error)?;
    if newest.is_empty() {
        return Ok(HashMap::new());
    }
    let which = newest
        .iter()
        .fold(Condition::any(), |any, (agent, version)| {
            any.add(
                Condition::all()
                    .add(prompts::Column::Agent.eq(agent.as_str()))
                    .add(prompts::Column::Version.eq(*version)),
            )
        });
    let rows = prompts::Entity::find()
        .filter(prompts::Column::TenantId.eq(tenant))
        .filter(which)
        .all(db)
        .await
        .map_err(db_error)?;
    Ok(rows.into_iter().map(|r| (r.agent, r.text)).collect())
}

fn default_version(specialist: &Specialist) -> PromptVersion {
    PromptVersion {
        version: 0,
        text: specialist.prompt.clone(),
        note: if specialist.built_in {
            "built-in default".into()
        } else {
            "the agent's first prompt".into()
        },
        created_by: "default".into(),
        created_at: None,
    }
}

fn to_version(m: prompts::Model) -> PromptVersion {
    PromptVersion {
        version: u32::try_from(m.version).unwrap_or(0),
        text: m.text,
        note: m.note,
        created_by: m.created_by,
        created_at: Some(m.created_at),
    }
}

/// The agent's prompt with its history, newest first, ending in the default.
pub async fn load(
    db: &impl ConnectionTrait,
    tenant: Uuid,
    specialist: &Specialist,
) -> Result<AgentPrompt, AppError> {
    let mut history: Vec<PromptVersion> = prompts::Entity::find()
        .filter(prompts::Column::TenantId.eq(tenant))
        .filter(prompts::Column::Agent.eq(&specialist.name))
        .order_by_desc(prompts::Column::Version)
        .all(db)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(to_version)
        .collect();
    history.push(default_version(specialist));
    Ok(AgentPrompt {
        agent: specialist.name.clone(),
        current: history[0].clone(),
        history,
        variables: VARIABLES.iter().map(ToString::to_string).collect(),
    })
}

/// Saves `text` as the agent's next version (numbered under a unique index, so two saves at
/// once cannot share a number: the later one gets 409).
pub async fn save(
    db: &(impl TransactionTrait + ConnectionTrait),
    access: &Access,
    agent: &str,
    text: &str,
    note: &str,
) -> Result<(), AppError> {
    let last = prompts::Entity::find()
        .filter(prompts::Column::TenantId.eq(access.tenant_id))
        .filter(prompts::Column::Agent.eq(agent))
        .order_by_desc(prompts::Column::Version)
        .one(db)
        .await
        .map_err(db_error)?
        .map_or(0, |m| m.version);
    // The transaction writes first (SQLite: a transaction that read first fails at once when
    // another connection wrote meanwhile); the unique index settles a race.
    let txn = db.begin().await.map_err(db_error)?;
    prompts::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(access.tenant_id),
        agent: Set(agent.to_string()),
        version: Set(last + 1),
        text: Set(text.to_string()),
        note: Set(note.chars().take(200).collect()),
        created_by: Set(access.actor.label().chars().take(200).collect()),
        created_at: Set(Utc::now()),
    }
    .insert(&txn)
    .await
    .map_err(|e| match db_error(e) {
        AppError::Conflict(_) => {
            AppError::Conflict("someone saved this prompt at the same time; reload it".into())
        }
        other => other,
    })?;
    Record::by(access, "prompt.save", agent.to_string())
        .details(serde_json::json!({ "version": last + 1, "note": note }))
        .write(&txn)
        .await
        .map_err(db_error)?;
    txn.commit().await.map_err(db_error)
}

/// A unified diff from one text to another.
pub fn diff(from_label: &str, from: &str, to_label: &str, to: &str) -> String {
    // Prompts seldom end in a newline; without one every diff would say so twice.
    let lines = |t: &str| {
        if t.ends_with('\n') {
            t.to_string()
        } else {
            format!("{t}\n")
        }
    };
    let (from, to) = (lines(from), lines(to));
    similar::TextDiff::from_lines(&from, &to)
        .unified_diff()
        .context_radius(3)
        .header(from_label, to_label)
        .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn diffs_show_removed_and_added_lines() {
        let d = super::diff("v1", "Be brief.\nBe kind.\n", "v2", "Be brief.\nBe warm.\n");
        assert!(d.contains("--- v1\n+++ v2\n"), "{d}");
        assert!(d.contains("-Be kind.\n+Be warm.\n"), "{d}");
        assert!(d.contains(" Be brief.\n"), "{d}");
    }
}
