//! The built-in agent graph, expressed on [`crate::engine`]: a router sends each customer
//! message to a specialist (sales, support, scheduling, emergency), which answers with the LLM
//! and its tools or, without one, from the documents; specialists pass the conversation to
//! each other or to a person.
//!
//! - [`router`] decides by emergency words, tenant rules, then LLM classification.
//! - [`specialists`] defines the built-in agents and their prompts, [`catalogue`] the tenant's
//!   changes and own agents; [`tools`] what they can do;
//!   [`offline`] the answers without an LLM (bookings go to
//!   [`crate::integrations::calendar`]).
//! - [`nodes`] are the graph's node kinds; [`service`] the `ConversationService`.

pub mod bench;
pub mod catalogue;
pub mod disclosure;
pub mod nodes;
pub mod offline;
pub mod prompts;
pub mod router;
pub mod service;
pub mod specialists;
pub mod tools;

use std::sync::Arc;

use chrono_tz::Tz;
use uuid::Uuid;

use app::services::{Access, KnowledgeService};
use app::types::BusinessHours;

use crate::engine::{Condition, EdgeDef, GraphDef, NodeDef};
use crate::llm::{Llm, Providers};

use crate::integrations::calendar::Calendar;
use router::Rule;
use specialists::Specialist;

/// What every turn of every tenant shares.
pub struct Runtime {
    /// The platform's provider and the tenants' own ([`Providers::for_tenant`]).
    pub llm: Providers,
    pub knowledge: Arc<dyn KnowledgeService>,
    pub calendar: Arc<dyn Calendar>,
    pub email: Option<crate::integrations::email::EmailQueue>, // `send_email`; None without SMTP
    /// How long a turn's hold on its conversation lasts unless renewed (`TURN_LEASE_SECS`): the
    /// running turn renews it, a crashed process's runs out.
    pub turn_lease: std::time::Duration,
    /// Budgets of what agents do on their own (emails per tenant and caller per day).
    pub kv: crate::kv::Kv,
    /// Wakes the event streams of widget conversations when they change.
    pub live: crate::widget::live::Live,
}

/// What the nodes of one turn see.
pub struct TurnContext {
    pub rt: Arc<Runtime>,
    pub db: sea_orm::DatabaseConnection,
    /// The tenant's LLM provider (its own, or the platform's).
    pub llm: Arc<Llm>,
    /// Who posted the message.
    pub access: Access,
    /// The agents read the tenant's knowledge whatever the caller's scopes.
    pub knowledge_access: Access,
    pub conversation_id: Uuid,
    pub company: String,
    pub timezone: String,
    pub business_hours: Vec<BusinessHours>,
    /// What the agents may do on their own (the tenant's settings).
    pub policy: app::types::AgentPolicy,
    /// The tenant's router rules, compiled (cached per tenant until they change).
    pub rules: Arc<Vec<Rule>>,
    /// The tenant's specialists ([`catalogue::load`]).
    pub specialists: Arc<Vec<Specialist>>,
    /// The tenant's own prompts by agent (the built-in ones otherwise).
    pub prompts: Arc<std::collections::HashMap<String, String>>,
    /// Where `send_email` queues mail: set when the tenant has its own provider or the
    /// platform an SMTP relay (the tool is not offered otherwise).
    pub email: Option<crate::integrations::email::EmailQueue>,
    /// What a conversation graph's steps spent asking the model (each step takes it into its
    /// own usage).
    pub spent: std::sync::Mutex<app::types::Usage>,
}

impl TurnContext {
    pub fn tenant_id(&self) -> Uuid {
        self.access.tenant_id
    }

    pub fn tz(&self) -> Tz {
        crate::integrations::calendar::zone(&self.timezone)
    }

    pub fn specialist(&self, name: &str) -> Option<&Specialist> {
        self.specialists.iter().find(|s| s.name == name)
    }

    /// The prompt template the specialist answers with.
    pub fn prompt_of<'a>(&'a self, specialist: &'a Specialist) -> &'a str {
        self.prompts
            .get(&specialist.name)
            .map_or(specialist.prompt.as_str(), String::as_str)
    }
}

/// The caller's tenant with read access to its knowledge only: what the agents search with,
/// whatever the caller's own scopes.
pub fn knowledge_reader(access: &Access) -> Access {
    Access {
        scopes: app::types::Scope::parse("knowledge:read")
            .into_iter()
            .collect(),
        ..access.clone()
    }
}

/// The graph every tenant starts with:
/// router → specialist → (transfer → specialist)* → (handoff) → end.
pub fn default_graph() -> GraphDef {
    let node = |id: &str, kind: &str| NodeDef {
        id: id.into(),
        kind: kind.into(),
        config: serde_json::Value::Null,
    };
    let edge = |from: &str, to: &str, when: Condition| EdgeDef {
        from: from.into(),
        to: to.into(),
        when,
    };
    GraphDef {
        start: "router".into(),
        nodes: vec![
            node("router", "router"),
            node("specialist", "specialist"),
            node("transfer", "transfer"),
            node("handoff", "handoff"),
        ],
        edges: vec![
            edge("router", "specialist", Condition::Always),
            edge("specialist", "handoff", Condition::Handoff),
            edge("specialist", "transfer", Condition::Transfer),
            edge("specialist", crate::engine::END, Condition::Always),
            edge("transfer", "specialist", Condition::Always),
            edge("handoff", crate::engine::END, Condition::Always),
        ],
        max_steps: 8,
    }
}
