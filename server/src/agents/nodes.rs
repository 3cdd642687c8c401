//! The node kinds of the agent graph: `router`, `specialist`, `transfer` and `handoff`.

use std::sync::Arc;

use serde_json::Value;

use app::types::{RouteDecision, StepDetail, StreamEvent, ToolCallRecord};

use crate::engine::{ConvState, Events, Node, NodeRegistry, StepOutput};
use crate::llm::{self, LlmError, ModelRole};

use super::specialists::{render, PromptVars, Specialist};
use super::tools::{self, ToolName};
use super::{offline, router, TurnContext};

/// LLM calls one specialist may make in a turn (each tool round is one).
const MAX_LLM_CALLS: u32 = 5;
/// Earlier messages the model sees.
const HISTORY: usize = 12;

pub fn registry() -> NodeRegistry<TurnContext> {
    let mut registry = NodeRegistry::new();
    registry.register("router", Arc::new(|_| Ok(Arc::new(RouterNode) as _)));
    registry.register(
        "specialist",
        Arc::new(|config: &Value| {
            let pinned = match config.get("agent") {
                None | Some(Value::Null) => None,
                Some(Value::String(name)) => Some(name.clone()),
                Some(_) => return Err("agent must be a string".to_string()),
            };
            Ok(Arc::new(SpecialistNode {
                pinned,
                context: None,
            }) as _)
        }),
    );
    registry.register("transfer", Arc::new(|_| Ok(Arc::new(TransferNode) as _)));
    registry.register("handoff", Arc::new(|_| Ok(Arc::new(HandoffNode) as _)));
    registry
}

/// Chooses the specialist: the pinned one, the tenant's rules, then the router model.
pub struct RouterNode;

#[async_trait::async_trait]
impl Node<TurnContext> for RouterNode {
    async fn run(
        &self,
        cx: &TurnContext,
        state: &mut ConvState,
        events: Events<'_>,
    ) -> Result<StepOutput, String> {
        let specialists = &cx.specialists;
        let mut out = StepOutput::default();
        let chosen = router::pinned(&state.input, &state.vars, specialists)
            .or_else(|| router::by_rules(&state.input, &cx.rules, specialists));
        let decision = match chosen {
            Some(decision) => decision,
            None => {
                let (decision, usage, error) =
                    router::by_llm(&cx.llm, &state.input, specialists).await;
                out.detail.llm_calls = usage.llm_calls;
                out.usage = usage;
                out.detail.error = error;
                decision.unwrap_or_else(|| match &state.agent {
                    // Emergencies are re-detected each turn, never kept.
                    Some(agent) if agent != "emergency" && cx.specialist(agent).is_some() => {
                        RouteDecision {
                            agent: agent.clone(),
                            by: "sticky".into(),
                            rule: None,
                        }
                    }
                    _ => RouteDecision {
                        agent: "support".into(),
                        by: "default".into(),
                        rule: None,
                    },
                })
            }
        };
        if state.agent.as_deref() != Some(decision.agent.as_str()) {
            events(StreamEvent::AgentHandoff {
                from: state.agent.clone(),
                to: decision.agent.clone(),
                reason: match &decision.rule {
                    Some(rule) => format!("rule {rule}"),
                    None => decision.by.clone(),
                },
            });
        }
        state.agent = Some(decision.agent.clone());
        state.route = Some(decision.clone());
        out.detail.route = Some(decision);
        Ok(out)
    }
}

/// The chosen (or `pinned`) specialist answers; `context` is added to its instructions (what
/// a conversation graph's steps found for the message).
pub struct SpecialistNode {
    pub pinned: Option<String>,
    pub context: Option<String>,
}

#[async_trait::async_trait]
impl Node<TurnContext> for SpecialistNode {
    async fn run(
        &self,
        cx: &TurnContext,
        state: &mut ConvState,
        events: Events<'_>,
    ) -> Result<StepOutput, String> {
        let name = self
            .pinned
            .clone()
            .or_else(|| state.agent.clone())
            .unwrap_or_else(|| "support".into());
        let specialist = cx
            .specialist(&name)
            .or_else(|| cx.specialist("support"))
            .ok_or("no specialist is defined")?
            .clone();
        state.agent = Some(specialist.name.clone());
        let mut out = StepOutput::default();
        let reason = if cx.llm.is_available() {
            let context = self.context.as_deref().filter(|c| !c.trim().is_empty());
            match with_llm(cx, &specialist, context, state, events, &mut out).await {
                Ok(()) => return Ok(out),
                Err(e) => {
                    tracing::warn!(error = %e, agent = %specialist.name, "answering offline");
                    out.detail.error = Some(e.to_string());
                    e.to_string()
                }
            }
        } else if cx.llm.is_configured() {
            LlmError::Unavailable.to_string()
        } else {
            LlmError::NotConfigured.to_string()
        };
        without_llm(cx, &specialist, state, events).await;
        out.detail.offline = Some(reason);
        Ok(out)
    }
}

async fn with_llm(
    cx: &TurnContext,
    specialist: &Specialist,
    context: Option<&str>,
    state: &mut ConvState,
    events: Events<'_>,
    out: &mut StepOutput,
) -> Result<(), LlmError> {
    let prompt = render(
        cx.prompt_of(specialist),
        &PromptVars {
            company: &cx.company,
            timezone: &cx.timezone,
            business_hours: &cx.business_hours,
        },
    );
    let mut messages = vec![llm::system(&prompt)];
    if let Some(context) = context {
        messages.push(llm::system(&format!(
            "For this message you also have:\n{context}"
        )));
    }
    let skip = state.history.len().saturating_sub(HISTORY);
    for turn in &state.history[skip..] {
        messages.push(match turn.role.as_str() {
            "user" => llm::user(&turn.content),
            _ => llm::assistant(&turn.content),
        });
    }
    messages.push(llm::user(&state.input));
    let names: Vec<String> = cx.specialists.iter().map(|s| s.name.clone()).collect();
    let definitions: Vec<_> = specialist
        .tools
        .iter()
        .filter(|t| t.is_offered(cx))
        .map(|t| t.definition(&names))
        .collect();
    for _ in 0..MAX_LLM_CALLS {
        let completion = cx
            .llm
            .chat(
                ModelRole::Chat,
                messages.clone(),
                definitions.clone(),
                &mut |text| {
                    events(StreamEvent::MessageDelta {
                        text: text.to_string(),
                    })
                },
            )
            .await?;
        out.usage.add(&completion.usage);
        out.detail.llm_calls += 1;
        if completion.tool_calls.is_empty() {
            state.reply = Some(completion.content);
            return Ok(());
        }
        messages.push(llm::assistant_tool_calls(
            &completion.content,
            &completion.tool_calls,
        ));
        for call in &completion.tool_calls {
            let arguments: Value = serde_json::from_str(&call.arguments).unwrap_or(Value::Null);
            events(StreamEvent::ToolCall {
                name: call.name.clone(),
                arguments: arguments.clone(),
            });
            let outcome = match ToolName::parse(&call.name)
                .filter(|t| specialist.tools.contains(t) && t.is_offered(cx))
            {
                Some(tool) => tools::execute(cx, state, tool, &arguments).await,
                None => tools::ToolOutcome {
                    ok: false,
                    result: format!("{} is not one of your tools", call.name),
                },
            };
            let shown: String = outcome.result.chars().take(2000).collect();
            events(StreamEvent::ToolResult {
                name: call.name.clone(),
                ok: outcome.ok,
                result: shown.clone(),
            });
            out.detail.tool_calls.push(ToolCallRecord {
                name: call.name.clone(),
                arguments,
                ok: outcome.ok,
                result: shown,
            });
            messages.push(llm::tool_result(&call.id, &outcome.result));
        }
        if state.transfer.is_some() || state.handoff.is_some() {
            // The next node answers (the other specialist, or the handoff message).
            return Ok(());
        }
    }
    let text =
        "Sorry, I could not finish that request. Could you rephrase it, or ask for a person?";
    events(StreamEvent::MessageDelta { text: text.into() });
    state.reply = Some(text.into());
    Ok(())
}

/// Offline mode: the emergency specialist hands over at once; the others quote the documents.
async fn without_llm(
    cx: &TurnContext,
    specialist: &Specialist,
    state: &mut ConvState,
    events: Events<'_>,
) {
    let text = if specialist.name == "emergency" {
        state.handoff = Some("emergency".into());
        offline::EMERGENCY.to_string()
    } else {
        let sources = tools::search_all(cx, &specialist.knowledge_bases, &state.input, 3).await;
        let (text, cited) = offline::answer(&state.input, &sources);
        state.sources = cited;
        text
    };
    events(StreamEvent::MessageDelta { text: text.clone() });
    state.reply = Some(text);
}

/// Gives the conversation to the specialist another asked for.
pub struct TransferNode;

#[async_trait::async_trait]
impl Node<TurnContext> for TransferNode {
    async fn run(
        &self,
        _cx: &TurnContext,
        state: &mut ConvState,
        events: Events<'_>,
    ) -> Result<StepOutput, String> {
        let (agent, reason) = state.transfer.take().ok_or("no transfer was asked for")?;
        events(StreamEvent::AgentHandoff {
            from: state.agent.clone(),
            to: agent.clone(),
            reason: reason.clone(),
        });
        state.agent = Some(agent.clone());
        state.reply = None;
        let decision = RouteDecision {
            agent,
            by: "transfer".into(),
            rule: Some(reason),
        };
        state.route = Some(decision.clone());
        Ok(StepOutput {
            detail: StepDetail {
                route: Some(decision),
                ..Default::default()
            },
            ..Default::default()
        })
    }
}

/// Hands the conversation to a person.
pub struct HandoffNode;

#[async_trait::async_trait]
impl Node<TurnContext> for HandoffNode {
    async fn run(
        &self,
        _cx: &TurnContext,
        state: &mut ConvState,
        events: Events<'_>,
    ) -> Result<StepOutput, String> {
        let reason = state
            .handoff
            .clone()
            .unwrap_or_else(|| "handoff".to_string());
        events(StreamEvent::AgentHandoff {
            from: state.agent.clone(),
            to: "human".into(),
            reason: reason.clone(),
        });
        if state.reply.is_none() {
            events(StreamEvent::MessageDelta {
                text: offline::HANDED_OFF.into(),
            });
            state.reply = Some(offline::HANDED_OFF.into());
        }
        Ok(StepOutput {
            detail: StepDetail {
                handoff: Some(reason),
                ..Default::default()
            },
            ..Default::default()
        })
    }
}
