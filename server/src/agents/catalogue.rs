//! A tenant's specialists: the built-in ones, as the tenant changed them (description, tools,
//! knowledge bases), plus the ones it defined. Both are rows of `agents`; a row named like a
//! built-in agent (and without a prompt) is that agent's override, so "reset" is deleting it.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter, TransactionTrait,
};
use uuid::Uuid;

use app::error::AppError;
use app::services::{Access, KnowledgeService};
use app::types::{
    Agent, AgentCatalogue, AgentTool, Area, CreateAgent, Level, UpdateAgent, MAX_CUSTOM_AGENTS,
};
use app::validate::check;

use crate::store::audit_log::Record;
use crate::store::{agents, prompts, router_rules};
use crate::tenancy::db_error;

use super::specialists::{built_in, Specialist};
use super::tools::ToolName;

/// The tenant's specialists, built-in ones first.
pub async fn load(db: &impl ConnectionTrait, tenant: Uuid) -> Result<Vec<Specialist>, AppError> {
    let rows = agents::Entity::find()
        .filter(agents::Column::TenantId.eq(tenant))
        .all(db)
        .await
        .map_err(db_error)?;
    Ok(merge(built_in(), rows))
}

fn merge(mut specialists: Vec<Specialist>, mut rows: Vec<agents::Model>) -> Vec<Specialist> {
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    for row in rows {
        let tools = parse_tools(&row.tools);
        let knowledge_bases: Vec<Uuid> =
            serde_json::from_value(row.knowledge_base_ids).unwrap_or_default();
        match specialists.iter_mut().find(|s| s.name == row.name) {
            Some(s) if s.built_in => {
                s.description = row.description;
                s.tools = tools;
                s.knowledge_bases = knowledge_bases;
                s.customised = true;
                s.updated_at = Some(row.updated_at);
            }
            Some(_) => {}
            None => specialists.push(Specialist {
                name: row.name,
                description: row.description,
                prompt: row.prompt.unwrap_or_default(),
                tools,
                knowledge_bases,
                built_in: false,
                customised: false,
                updated_at: Some(row.updated_at),
            }),
        }
    }
    specialists
}

fn parse_tools(value: &serde_json::Value) -> Vec<ToolName> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().and_then(ToolName::parse))
        .collect()
}

pub fn to_agent(s: &Specialist) -> Agent {
    Agent {
        name: s.name.clone(),
        description: s.description.clone(),
        built_in: s.built_in,
        customised: s.customised,
        tools: s.tools.iter().map(|t| t.as_str().to_string()).collect(),
        knowledge_base_ids: s.knowledge_bases.clone(),
        updated_at: s.updated_at,
    }
}

fn tool_catalogue() -> Vec<AgentTool> {
    ToolName::ALL
        .into_iter()
        .map(|tool| {
            // The model's definition is the one place a tool is described.
            let definition = serde_json::to_value(tool.definition(&[])).unwrap_or_default();
            AgentTool {
                name: tool.as_str().into(),
                description: definition["function"]["description"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
            }
        })
        .collect()
}

/// The agent named `name`, or 404.
pub async fn find(
    db: &impl ConnectionTrait,
    tenant: Uuid,
    name: &str,
) -> Result<Specialist, AppError> {
    load(db, tenant)
        .await?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| AppError::not_found("agent"))
}

/// Tool names that exist, deduplicated in the given order.
fn valid_tools(names: &[String]) -> Result<Vec<String>, AppError> {
    let mut tools: Vec<String> = Vec::new();
    for name in names {
        let tool = ToolName::parse(name.trim()).ok_or_else(|| {
            let known: Vec<&str> = ToolName::ALL.iter().map(|t| t.as_str()).collect();
            AppError::invalid(
                "tools",
                format!("unknown tool '{name}'; known: {}", known.join(", ")),
            )
        })?;
        if !tools.iter().any(|t| t == tool.as_str()) {
            tools.push(tool.as_str().to_string());
        }
    }
    Ok(tools)
}

fn new_row(
    tenant: Uuid,
    name: &str,
    description: &str,
    prompt: Option<String>,
    tools: &[String],
    knowledge_bases: &[Uuid],
) -> agents::ActiveModel {
    let now = Utc::now();
    agents::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(tenant),
        name: Set(name.to_string()),
        description: Set(description.to_string()),
        prompt: Set(prompt),
        tools: Set(serde_json::json!(tools)),
        knowledge_base_ids: Set(serde_json::json!(knowledge_bases)),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

/// The agents' CRUD, shared by the REST API and the console through `ConversationService`.
pub struct Catalogue<'a> {
    pub db: &'a DatabaseConnection,
    pub knowledge: &'a dyn KnowledgeService,
}

impl Catalogue<'_> {
    pub async fn list(&self, access: &Access) -> Result<AgentCatalogue, AppError> {
        access.require(Area::Agents, Level::Read)?;
        let agents = load(self.db, access.tenant_id).await?;
        Ok(AgentCatalogue {
            agents: agents.iter().map(to_agent).collect(),
            tools: tool_catalogue(),
        })
    }

    /// Knowledge base ids that belong to the caller's tenant and are visible to agents, deduplicated.
    async fn own_knowledge_bases(
        &self,
        access: &Access,
        ids: &[Uuid],
    ) -> Result<Vec<Uuid>, AppError> {
        let owned = self
            .knowledge
            .list_knowledge_bases(&super::knowledge_reader(access))
            .await?;
        let mut kept: Vec<Uuid> = Vec::new();
        for id in ids {
            let Some(kb) = owned.iter().find(|kb| kb.id == *id) else {
                return Err(AppError::invalid(
                    "knowledge_base_ids",
                    format!("no knowledge base {id}"),
                ));
            };
            if kb.visibility == app::types::Visibility::Internal {
                return Err(AppError::invalid(
                    "knowledge_base_ids",
                    format!("{} is internal: agents cannot read it", kb.name),
                ));
            }
            if !kept.contains(id) {
                kept.push(*id);
            }
        }
        Ok(kept)
    }

    pub async fn create(&self, access: &Access, create: CreateAgent) -> Result<Agent, AppError> {
        access.require(Area::Agents, Level::Write)?;
        check(&create)?;
        if built_in().iter().any(|s| s.name == create.name) {
            return Err(AppError::invalid(
                "name",
                "is a built-in agent's name; change the built-in agent instead",
            ));
        }
        let tools = valid_tools(&create.tools)?;
        let knowledge_bases = self
            .own_knowledge_bases(access, &create.knowledge_base_ids)
            .await?;
        let custom = agents::Entity::find()
            .filter(agents::Column::TenantId.eq(access.tenant_id))
            .filter(agents::Column::Prompt.is_not_null())
            .count(self.db)
            .await
            .map_err(db_error)?;
        if custom >= MAX_CUSTOM_AGENTS as u64 {
            return Err(AppError::Conflict(format!(
                "a tenant may define at most {MAX_CUSTOM_AGENTS} agents"
            )));
        }
        let txn = self.db.begin().await.map_err(db_error)?;
        let row = new_row(
            access.tenant_id,
            &create.name,
            create.description.trim(),
            Some(create.prompt),
            &tools,
            &knowledge_bases,
        )
        .insert(&txn)
        .await
        .map_err(|e| match db_error(e) {
            AppError::Conflict(_) => AppError::Conflict("an agent with that name exists".into()),
            other => other,
        })?;
        Record::by(access, "agent.create", row.name.clone())
            .details(serde_json::json!({"tools": tools, "knowledge_base_ids": knowledge_bases}))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        self.get(access, &row.name).await
    }

    async fn get(&self, access: &Access, name: &str) -> Result<Agent, AppError> {
        Ok(to_agent(&find(self.db, access.tenant_id, name).await?))
    }

    pub async fn update(
        &self,
        access: &Access,
        name: &str,
        update: UpdateAgent,
    ) -> Result<Agent, AppError> {
        access.require(Area::Agents, Level::Write)?;
        check(&update)?;
        let current = find(self.db, access.tenant_id, name).await?;
        let tools = match &update.tools {
            Some(tools) => valid_tools(tools)?,
            None => current
                .tools
                .iter()
                .map(|t| t.as_str().to_string())
                .collect(),
        };
        let knowledge_bases = match &update.knowledge_base_ids {
            Some(ids) => self.own_knowledge_bases(access, ids).await?,
            None => current.knowledge_bases.clone(),
        };
        let description = update
            .description
            .as_deref()
            .map_or(current.description.clone(), |d| d.trim().to_string());
        let existing = agents::Entity::find()
            .filter(agents::Column::TenantId.eq(access.tenant_id))
            .filter(agents::Column::Name.eq(name))
            .one(self.db)
            .await
            .map_err(db_error)?;
        let txn = self.db.begin().await.map_err(db_error)?;
        match existing {
            Some(row) => {
                let mut active = row.into_active_model();
                active.description = Set(description);
                active.tools = Set(serde_json::json!(tools));
                active.knowledge_base_ids = Set(serde_json::json!(knowledge_bases));
                active.updated_at = Set(Utc::now());
                active.update(&txn).await.map_err(db_error)?;
            }
            // The first change to a built-in agent.
            None => {
                new_row(
                    access.tenant_id,
                    name,
                    &description,
                    None,
                    &tools,
                    &knowledge_bases,
                )
                .insert(&txn)
                .await
                .map_err(db_error)?;
            }
        }
        Record::by(access, "agent.update", name.to_string())
            .details(serde_json::json!({"tools": tools, "knowledge_base_ids": knowledge_bases}))
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        self.get(access, name).await
    }

    /// Deletes a tenant-defined agent with its prompt versions, or undoes the changes to a
    /// built-in one. Refused while router rules send messages to it.
    pub async fn delete(&self, access: &Access, name: &str) -> Result<(), AppError> {
        access.require(Area::Agents, Level::Write)?;
        let agent = find(self.db, access.tenant_id, name).await?;
        if !agent.built_in {
            let rules: Vec<String> = router_rules::Entity::find()
                .filter(router_rules::Column::TenantId.eq(access.tenant_id))
                .filter(router_rules::Column::Agent.eq(name))
                .all(self.db)
                .await
                .map_err(db_error)?
                .into_iter()
                .map(|r| r.name)
                .collect();
            if !rules.is_empty() {
                return Err(AppError::Conflict(format!(
                    "router rules send messages to this agent; delete them first: {}",
                    rules.join(", ")
                )));
            }
        }
        let txn = self.db.begin().await.map_err(db_error)?;
        agents::Entity::delete_many()
            .filter(agents::Column::TenantId.eq(access.tenant_id))
            .filter(agents::Column::Name.eq(name))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        if !agent.built_in {
            prompts::Entity::delete_many()
                .filter(prompts::Column::TenantId.eq(access.tenant_id))
                .filter(prompts::Column::Agent.eq(name))
                .exec(&txn)
                .await
                .map_err(db_error)?;
        }
        let action = if agent.built_in {
            "agent.reset"
        } else {
            "agent.delete"
        };
        Record::by(access, action, name.to_string())
            .write(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, prompt: Option<&str>, tools: &[&str]) -> agents::Model {
        agents::Model {
            id: Uuid::now_v7(),
            tenant_id: Uuid::now_v7(),
            name: name.into(),
            description: format!("{name} things"),
            prompt: prompt.map(Into::into),
            tools: serde_json::json!(tools),
            knowledge_base_ids: serde_json::json!([Uuid::nil()]),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn rows_change_built_ins_and_add_agents() {
        let merged = merge(
            built_in(),
            vec![
                row(
                    "billing",
                    Some("You handle invoices."),
                    &["knowledge_search", "nope"],
                ),
                row("sales", None, &["handoff_to_human"]),
            ],
        );
        assert_eq!(merged.len(), built_in().len() + 1);
        let sales = merged.iter().find(|s| s.name == "sales").unwrap();
        assert!(sales.built_in && sales.customised);
        assert_eq!(sales.tools, vec![ToolName::HandoffToHuman]);
        assert_eq!(sales.description, "sales things");
        // A built-in's prompt is not the row's: its versions live in the prompt editor.
        assert_eq!(sales.prompt, built_in()[0].prompt);
        let billing = merged.last().unwrap();
        assert_eq!(billing.name, "billing");
        assert!(!billing.built_in);
        assert_eq!(billing.prompt, "You handle invoices.");
        assert_eq!(billing.tools, vec![ToolName::KnowledgeSearch]);
        assert_eq!(billing.knowledge_bases, vec![Uuid::nil()]);
    }

    #[test]
    fn unknown_tools_are_refused_and_duplicates_dropped() {
        let tools = valid_tools(&["knowledge_search".into(), "knowledge_search".into()]).unwrap();
        assert_eq!(tools, vec!["knowledge_search"]);
        let err = valid_tools(&["rm_rf".into()]).unwrap_err();
        assert!(format!("{err:?}").contains("rm_rf"), "{err:?}");
    }

    #[test]
    fn every_tool_has_a_description() {
        assert!(tool_catalogue().iter().all(|t| !t.description.is_empty()));
    }
}
