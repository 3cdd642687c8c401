//! The router: which specialist answers a message. Built-in emergency words always win, then
//! the tenant's rules by priority, then (with a provider) the LLM's classification, then the
//! current specialist, then `support`.

use regex::{Regex, RegexBuilder};

use app::types::{RouteDecision, RuleKind};

use crate::llm::{self, Llm, ModelRole};
use crate::store::router_rules;

use super::specialists::Specialist;

/// Words that mean someone may be in danger, in any tenant's conversations.
const EMERGENCY_WORDS: &[&str] = &[
    "emergency",
    "urgent help",
    "fire",
    "smoke",
    "gas leak",
    "smell gas",
    "flooding",
    "burst pipe",
    "bleeding",
    "unconscious",
    "not breathing",
    "chest pain",
    "heart attack",
    "ambulance",
    "overdose",
    "suicide",
    "911",
    "112",
    "999",
];

/// A tenant's rule, compiled.
pub struct Rule {
    pub name: String,
    pub agent: String,
    pub priority: i32,
    pattern: Regex,
}

/// Keyword rules: any comma-separated word or phrase, whole words, any case.
fn keyword_regex(pattern: &str) -> Result<Regex, regex::Error> {
    let alternatives: Vec<String> = pattern
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(|w| regex::escape(w).replace("\\ ", r"\s+").replace(' ', r"\s+"))
        .collect();
    if alternatives.is_empty() {
        return Regex::new("$^");
    }
    RegexBuilder::new(&format!(r"\b(?:{})\b", alternatives.join("|")))
        .case_insensitive(true)
        .size_limit(1 << 20)
        .build()
}

/// Compiles a rule's pattern; the error is what a person should read.
pub fn compile(kind: RuleKind, pattern: &str) -> Result<Regex, String> {
    match kind {
        RuleKind::Keyword => keyword_regex(pattern).map_err(|e| e.to_string()),
        RuleKind::Regex => RegexBuilder::new(pattern)
            .case_insensitive(true)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| format!("not a valid regular expression: {e}")),
    }
}

impl Rule {
    /// Enabled rules, highest priority first (rules whose pattern no longer compiles are
    /// skipped and logged).
    pub fn load(models: Vec<router_rules::Model>) -> Vec<Rule> {
        let mut rules: Vec<Rule> = models
            .into_iter()
            .filter(|m| m.enabled)
            .filter_map(|m| {
                let kind = RuleKind::parse(&m.kind)?;
                match compile(kind, &m.pattern) {
                    Ok(pattern) => Some(Rule {
                        name: m.name,
                        agent: m.agent,
                        priority: m.priority,
                        pattern,
                    }),
                    Err(e) => {
                        tracing::warn!(rule = %m.id, error = %e, "router rule skipped");
                        None
                    }
                }
            })
            .collect();
        rules.sort_by_key(|r| std::cmp::Reverse(r.priority));
        rules
    }
}

fn is_emergency(text: &str) -> bool {
    static RE: std::sync::OnceLock<Option<Regex>> = std::sync::OnceLock::new();
    RE.get_or_init(|| keyword_regex(&EMERGENCY_WORDS.join(",")).ok())
        .as_ref()
        .is_some_and(|re| re.is_match(text))
}

/// The conversation variable naming the one specialist a widget's conversations go to.
pub const PINNED_AGENT: &str = "pinned_agent";

/// The specialist a conversation is pinned to, when it still exists; emergencies still go to
/// the emergency specialist.
pub fn pinned(
    text: &str,
    vars: &std::collections::BTreeMap<String, serde_json::Value>,
    agents: &[Specialist],
) -> Option<RouteDecision> {
    let agent = vars.get(PINNED_AGENT)?.as_str()?;
    if is_emergency(text) || !agents.iter().any(|a| a.name == agent) {
        return None;
    }
    Some(RouteDecision {
        agent: agent.to_string(),
        by: "pinned".into(),
        rule: None,
    })
}

/// The decision without an LLM: emergency words, then rules.
pub fn by_rules(text: &str, rules: &[Rule], agents: &[Specialist]) -> Option<RouteDecision> {
    if is_emergency(text) {
        return Some(RouteDecision {
            agent: "emergency".into(),
            by: "emergency".into(),
            rule: None,
        });
    }
    rules
        .iter()
        .filter(|r| agents.iter().any(|a| a.name == r.agent))
        .find(|r| r.pattern.is_match(text))
        .map(|r| RouteDecision {
            agent: r.agent.clone(),
            by: "rule".into(),
            rule: Some(r.name.clone()),
        })
}

/// Asks the router model which specialist fits; `None` when it cannot tell or is unavailable.
pub async fn by_llm(
    llm: &Llm,
    text: &str,
    agents: &[Specialist],
) -> (Option<RouteDecision>, app::types::Usage, Option<String>) {
    if !llm.is_available() {
        return (None, app::types::Usage::default(), None);
    }
    let catalogue: String = agents
        .iter()
        .map(|a| format!("- {}: {}\n", a.name, a.description))
        .collect();
    let prompt = format!(
        "You route a customer's message to the agent that should answer it.\nAgents:\n{catalogue}\nReply with the agent's name only."
    );
    let messages = vec![llm::system(&prompt), llm::user(text)];
    match llm
        .chat(ModelRole::Router, messages, Vec::new(), &mut |_| {})
        .await
    {
        Ok(completion) => {
            let answer = completion.content.trim().to_lowercase();
            let agent = agents
                .iter()
                .filter(|a| answer.contains(&a.name))
                .max_by_key(|a| a.name.len())
                .map(|a| a.name.clone());
            let decision = agent.map(|agent| RouteDecision {
                agent,
                by: "llm".into(),
                rule: None,
            });
            (decision, completion.usage, None)
        }
        Err(e) => (None, app::types::Usage::default(), Some(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        name: &str,
        agent: &str,
        kind: RuleKind,
        pattern: &str,
        priority: i32,
    ) -> router_rules::Model {
        router_rules::Model {
            id: uuid::Uuid::now_v7(),
            tenant_id: uuid::Uuid::nil(),
            name: name.into(),
            agent: agent.into(),
            kind: kind.as_str().into(),
            pattern: pattern.into(),
            priority,
            enabled: true,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_pinned_specialist_answers_except_in_an_emergency() {
        let agents = super::super::specialists::built_in();
        let mut vars = std::collections::BTreeMap::new();
        assert_eq!(pinned("What does it cost?", &vars, &agents), None);
        vars.insert(PINNED_AGENT.to_string(), serde_json::json!("sales"));
        let decision = pinned("Can I book a repair?", &vars, &agents).unwrap();
        assert_eq!(
            (decision.agent.as_str(), decision.by.as_str()),
            ("sales", "pinned")
        );
        assert_eq!(pinned("I smell gas in the basement", &vars, &agents), None);
        vars.insert(PINNED_AGENT.to_string(), serde_json::json!("deleted-agent"));
        assert_eq!(pinned("Can I book a repair?", &vars, &agents), None);
    }

    #[test]
    fn emergency_words_win_then_rules_by_priority_on_word_boundaries() {
        let agents = super::super::specialists::built_in();
        let rules = Rule::load(vec![
            rule(
                "prices",
                "sales",
                RuleKind::Keyword,
                "price, how much, quote",
                1,
            ),
            rule(
                "book",
                "scheduling",
                RuleKind::Regex,
                r"\b(book|appointment)s?\b",
                5,
            ),
        ]);
        let pick = |t: &str| by_rules(t, &rules, &agents).map(|d| (d.agent, d.by, d.rule));
        assert_eq!(
            pick("How MUCH is a  quote?"),
            Some(("sales".into(), "rule".into(), Some("prices".into())))
        );
        assert_eq!(pick("What's the priceless item?"), None, "whole words only");
        assert_eq!(
            pick("book an appointment, how much?"),
            Some(("scheduling".into(), "rule".into(), Some("book".into())))
        );
        assert_eq!(
            pick("there is a gas leak, how much to book?"),
            Some(("emergency".into(), "emergency".into(), None))
        );
    }

    #[test]
    fn bad_patterns_are_explained_and_rules_for_unknown_agents_never_fire() {
        assert!(compile(RuleKind::Regex, "(unclosed")
            .unwrap_err()
            .contains("regular expression"));
        let agents = super::super::specialists::built_in();
        let rules = Rule::load(vec![rule("ghost", "ghost", RuleKind::Keyword, "hello", 9)]);
        assert_eq!(by_rules("hello", &rules, &agents), None);
    }
}
