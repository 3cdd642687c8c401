//! The nodes that use what the agents use: an LLM step (text or structured output), knowledge
//! retrieval and a question classifier; and the switch, which branches like the classifier
//! but on a value. Their work is a function of the rendered configuration and the tenant, so a
//! run's step and the editor's "Test this step" make the same calls.

use serde_json::{json, Map, Value};

use async_openai::types::chat::{
    ChatCompletionRequestMessage, ResponseFormat, ResponseFormatJsonSchema,
};
use sea_orm::DatabaseConnection;

use app::services::Access;
use app::types::{valid_node_id, Usage, LLM_OUTPUT_TYPES};

use super::expr;
use super::nodes::{context, done, leave, required, text, StepCx};
use crate::agents::tools::{readable_by_agents, search_bases, untrusted};
use crate::engine::{ConvState, Events, Node, StepOutput};
use crate::llm::{self, CallOptions, ModelRole};

/// Classes of a classifier and cases of a switch, at most.
const MAX_BRANCHES: usize = 50;
/// Fields of a structured output, at most.
const MAX_FIELDS: usize = 50;
/// Passages a knowledge step returns, at most.
pub const MAX_PASSAGES: u64 = 20;
/// The port a classifier leaves by when no class fits.
pub const OTHER: &str = "other";
/// The port a switch leaves by when no case matches.
pub const DEFAULT: &str = "default";

/// A tenant asking, with what the agents use.
pub struct Asker<'a> {
    pub agents: &'a crate::agents::Runtime,
    pub db: &'a DatabaseConnection,
    /// The workflow acting in its tenant.
    pub access: Access,
    /// Where the tokens and cost of every call are added up.
    pub spent: &'a std::sync::Mutex<Usage>,
}

impl Asker<'_> {
    /// Asks the tenant's own LLM provider, or the platform's; what the call spent is added to
    /// `spent`, whatever the answer is worth.
    async fn chat(
        &self,
        role: ModelRole,
        options: CallOptions,
        messages: Vec<ChatCompletionRequestMessage>,
    ) -> Result<String, String> {
        let llm = self
            .agents
            .llm
            .for_tenant(self.db, self.access.tenant_id)
            .await
            .map_err(|e| e.to_string())?;
        let completion = llm
            .chat_with(role, options, messages, Vec::new(), &mut |_| {})
            .await
            .map_err(|e| e.to_string())?;
        if let Ok(mut spent) = self.spent.lock() {
            spent.add(&completion.usage);
        }
        Ok(completion.content)
    }
}

/// OpenAI's structured output: answers that follow `schema` (strict).
fn json_schema(name: &str, schema: Value) -> ResponseFormat {
    ResponseFormat::JsonSchema {
        json_schema: ResponseFormatJsonSchema {
            description: None,
            name: name.into(),
            schema: Some(schema),
            strict: Some(true),
        },
    }
}

/// What the steps that ask the model or search need of where they run: a run's step, or a
/// turn of a conversation graph.
pub trait Asks: Send + Sync {
    fn asker(&self) -> Asker<'_>;
}

impl Asks for StepCx {
    fn asker(&self) -> Asker<'_> {
        Asker {
            agents: self.rt.agents(),
            db: &self.rt.db,
            access: self.access(),
            spent: &self.spent,
        }
    }
}

/// `key`'s object of texts as (name, text) pairs, its names checked as port or field names.
fn named(config: &Value, key: &str, reserved: &[&str]) -> Result<Vec<(String, String)>, String> {
    let map = match config.get(key) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(format!("`{key}` must be an object")),
    };
    map.iter()
        .map(|(name, value)| {
            if !valid_node_id(name) || reserved.contains(&name.as_str()) {
                return Err(format!(
                    "`{name}` in `{key}`: a name is 1–64 letters, digits, `_` or `-`, and not {}",
                    reserved.join(", ")
                ));
            }
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Ok((name.clone(), value))
        })
        .collect()
}

/// An LLM step: what it asks, from its configuration.
pub struct LlmStep {
    config: Value,
    /// Structured output: (field, type).
    fields: Vec<(String, String)>,
}

impl LlmStep {
    pub fn parse(config: &Value) -> Result<LlmStep, String> {
        required(config, "prompt")?;
        let fields = named(config, "output", &[])?;
        if fields.len() > MAX_FIELDS {
            return Err(format!("the output may have at most {MAX_FIELDS} fields"));
        }
        if let Some((name, ty)) = fields
            .iter()
            .find(|(_, ty)| !LLM_OUTPUT_TYPES.contains(&ty.trim()))
        {
            return Err(format!(
                "output `{name}` is `{ty}`: the types are {}",
                LLM_OUTPUT_TYPES.join(", ")
            ));
        }
        Ok(LlmStep {
            config: config.clone(),
            fields: fields
                .into_iter()
                .map(|(n, t)| (n, t.trim().to_string()))
                .collect(),
        })
    }

    /// The prompt and system message filled in, for a call and for a test to show.
    pub fn render(&self, ctx: &Value) -> Result<Value, String> {
        let mut rendered = self.config.clone();
        for key in ["prompt", "system"] {
            if let Some(template) = text(&self.config, key) {
                rendered[key] = Value::String(expr::render(&template, ctx)?);
            }
        }
        Ok(rendered)
    }

    /// Asks the tenant's model with the `rendered` configuration.
    pub async fn ask(&self, a: &Asker<'_>, rendered: &Value) -> Result<Value, String> {
        let (role, model) = match text(rendered, "model").unwrap_or_default().trim() {
            "" | "chat" => (ModelRole::Chat, None),
            "router" => (ModelRole::Router, None),
            name => (ModelRole::Chat, Some(name.to_string())),
        };
        let mut messages = Vec::new();
        if let Some(system) = text(rendered, "system").filter(|s| !s.trim().is_empty()) {
            messages.push(llm::system(&system));
        }
        messages.push(llm::user(&required(rendered, "prompt")?));
        let response_format =
            (!self.fields.is_empty()).then(|| json_schema("output", schema(&self.fields)));
        let options = CallOptions {
            model,
            response_format,
        };
        let answer = a.chat(role, options, messages).await?;
        if self.fields.is_empty() {
            return Ok(json!({ "text": answer }));
        }
        structured(&answer, &self.fields)
    }
}

/// The JSON Schema of a structured output (strict: every field required, no others).
fn schema(fields: &[(String, String)]) -> Value {
    let properties: Map<String, Value> = fields
        .iter()
        .map(|(name, ty)| {
            let schema = match ty.as_str() {
                "list" => json!({"type": "array", "items": {"type": "string"}}),
                ty => json!({ "type": ty }),
            };
            (name.clone(), schema)
        })
        .collect();
    let required: Vec<&str> = fields.iter().map(|(name, _)| name.as_str()).collect();
    json!({
        "type": "object", "properties": properties, "required": required,
        "additionalProperties": false
    })
}

fn excerpt(text: &str) -> String {
    let mut out: String = text.chars().take(200).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// The fields of a structured answer, each of its type; anything else is an error that says
/// what is wrong (the step fails, and its retries ask again).
pub fn structured(answer: &str, fields: &[(String, String)]) -> Result<Value, String> {
    let trimmed = answer.trim();
    // Some models fence JSON even when asked for JSON.
    let unfenced = trimmed
        .strip_prefix("```json")
        .or_else(|| trimmed.strip_prefix("```"))
        .and_then(|t| t.strip_suffix("```"))
        .map_or(trimmed, str::trim);
    let Ok(Value::Object(mut object)) = serde_json::from_str::<Value>(unfenced) else {
        return Err(format!(
            "the answer is not a JSON object: {}",
            excerpt(trimmed)
        ));
    };
    let mut out = Map::new();
    for (name, ty) in fields {
        let value = object
            .remove(name)
            .ok_or_else(|| format!("the answer has no `{name}`: {}", excerpt(trimmed)))?;
        let fits = match ty.as_str() {
            "string" => value.is_string(),
            "number" => value.is_number(),
            "integer" => value.is_i64() || value.is_u64(),
            "boolean" => value.is_boolean(),
            "list" => value
                .as_array()
                .is_some_and(|items| items.iter().all(Value::is_string)),
            _ => false,
        };
        if !fits {
            return Err(format!(
                "the answer's `{name}` is not a {ty}: {}",
                excerpt(&value.to_string())
            ));
        }
        out.insert(name.clone(), value);
    }
    Ok(Value::Object(out))
}

#[async_trait::async_trait]
impl<C: Asks> Node<C> for LlmStep {
    async fn run(
        &self,
        cx: &C,
        state: &mut ConvState,
        _: Events<'_>,
    ) -> Result<StepOutput, String> {
        let rendered = self.render(&context(state))?;
        Ok(done(self.ask(&cx.asker(), &rendered).await?))
    }
}

/// A knowledge step: what it searches.
pub struct KnowledgeStep {
    query: String,
    top_k: u64,
    base: Option<String>,
}

impl KnowledgeStep {
    pub fn parse(config: &Value) -> Result<KnowledgeStep, String> {
        let top_k = match config.get("top_k") {
            None | Some(Value::Null) => Some(5),
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            Some(_) => None,
        }
        .filter(|k| (1..=MAX_PASSAGES).contains(k))
        .ok_or_else(|| format!("top_k must be 1–{MAX_PASSAGES}"))?;
        Ok(KnowledgeStep {
            query: required(config, "query")?,
            top_k,
            base: text(config, "knowledge_base").filter(|b| !b.trim().is_empty()),
        })
    }

    pub fn render(&self, ctx: &Value) -> Result<String, String> {
        expr::render(&self.query, ctx)
    }

    /// The best passages of the tenant's knowledge bases that agents read (the one named, or
    /// all of them) for `query`.
    pub async fn search(&self, a: &Asker<'_>, query: &str) -> Result<Value, String> {
        if query.trim().is_empty() {
            return Err("the query is empty".into());
        }
        let reader = crate::agents::knowledge_reader(&a.access);
        let knowledge = a.agents.knowledge.as_ref();
        let bases = knowledge
            .list_knowledge_bases(&reader)
            .await
            .map_err(|e| format!("the knowledge bases could not be listed: {e}"))?;
        let wanted = self.base.as_deref().map(str::trim);
        let bases: Vec<_> = readable_by_agents(bases)
            .filter(|kb| {
                wanted.is_none_or(|w| kb.id.to_string() == w || kb.name.eq_ignore_ascii_case(w))
            })
            .map(|kb| kb.id)
            .collect();
        if let (Some(name), true) = (wanted, bases.is_empty()) {
            return Err(format!(
                "no knowledge base that agents read is named `{name}`"
            ));
        }
        let (sources, failures) =
            search_bases(knowledge, &reader, &bases, query, self.top_k as usize).await;
        if let Some(e) = failures.into_iter().next() {
            return Err(format!("the knowledge search failed: {e}"));
        }
        let passages: Vec<Value> = sources
            .iter()
            .map(|s| {
                json!({
                    "title": s.document_title, "text": s.text, "score": s.score,
                    "document_id": s.document_id, "source": s.source
                })
            })
            .collect();
        let joined = sources
            .iter()
            .enumerate()
            .map(|(i, s)| format!("[{}] {}\n{}", i + 1, s.document_title, s.text))
            .collect::<Vec<_>>()
            .join("\n\n");
        Ok(json!({
            "found": sources.len(),
            "passages": passages,
            // For a prompt: fenced as data, like the agents' search results.
            "text": if sources.is_empty() { String::new() } else { untrusted(&joined) },
        }))
    }
}

#[async_trait::async_trait]
impl<C: Asks> Node<C> for KnowledgeStep {
    async fn run(
        &self,
        cx: &C,
        state: &mut ConvState,
        _: Events<'_>,
    ) -> Result<StepOutput, String> {
        let query = self.render(&context(state))?;
        Ok(done(self.search(&cx.asker(), &query).await?))
    }
}

/// A classifier step: what it sorts into.
pub struct ClassifierStep {
    input: String,
    classes: Vec<(String, String)>,
}

impl ClassifierStep {
    pub fn parse(config: &Value) -> Result<ClassifierStep, String> {
        let classes = named(config, "classes", &[OTHER, "error"])?;
        if classes.is_empty() || classes.len() > MAX_BRANCHES {
            return Err(format!("a classifier needs 1–{MAX_BRANCHES} classes"));
        }
        if let Some((name, _)) = classes.iter().find(|(_, d)| d.trim().is_empty()) {
            return Err(format!("the class `{name}` needs a description"));
        }
        Ok(ClassifierStep {
            input: required(config, "input")?,
            classes,
        })
    }

    pub fn render(&self, ctx: &Value) -> Result<String, String> {
        expr::render(&self.input, ctx)
    }

    /// The class the tenant's router model gives `input` (`other` when none fits).
    pub async fn classify(&self, a: &Asker<'_>, input: &str) -> Result<String, String> {
        let catalogue: String = self
            .classes
            .iter()
            .map(|(name, description)| format!("- {name}: {description}\n"))
            .collect();
        let prompt = format!(
            "Sort the user's text into one of these classes.\nClasses:\n{catalogue}- {OTHER}: \
             none of the above\nAnswer with JSON: {{\"class\": \"<name>\"}}."
        );
        let mut names: Vec<&str> = self.classes.iter().map(|(n, _)| n.as_str()).collect();
        names.push(OTHER);
        let schema = json!({
            "type": "object", "properties": {"class": {"type": "string", "enum": names}},
            "required": ["class"], "additionalProperties": false
        });
        let options = CallOptions {
            model: None,
            response_format: Some(json_schema("class", schema)),
        };
        let messages = vec![llm::system(&prompt), llm::user(input)];
        let answer = a.chat(ModelRole::Router, options, messages).await?;
        Ok(pick(&answer, &names).to_string())
    }
}

/// The class an answer names: `{"class": …}`, or a bare name, or the longest name it contains
/// (a provider that ignores the response format); `other` otherwise.
pub fn pick<'a>(answer: &str, names: &[&'a str]) -> &'a str {
    let said = serde_json::from_str::<Value>(answer.trim())
        .ok()
        .and_then(|v| v.get("class").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| answer.to_string())
        .trim()
        .to_lowercase();
    names
        .iter()
        .find(|n| n.to_lowercase() == said)
        .or_else(|| {
            names
                .iter()
                .filter(|n| said.contains(&n.to_lowercase()))
                .max_by_key(|n| n.len())
        })
        .copied()
        .unwrap_or(OTHER)
}

#[async_trait::async_trait]
impl<C: Asks> Node<C> for ClassifierStep {
    async fn run(
        &self,
        cx: &C,
        state: &mut ConvState,
        _: Events<'_>,
    ) -> Result<StepOutput, String> {
        let input = self.render(&context(state))?;
        let class = self.classify(&cx.asker(), &input).await?;
        Ok(leave(&class, json!({ "class": class })))
    }
}

/// A switch step: its value and cases.
pub struct SwitchStep {
    value: String,
    cases: Vec<(String, String)>,
}

impl SwitchStep {
    pub fn parse(config: &Value) -> Result<SwitchStep, String> {
        let cases = named(config, "cases", &[DEFAULT])?;
        if cases.is_empty() || cases.len() > MAX_BRANCHES {
            return Err(format!("a switch needs 1–{MAX_BRANCHES} cases"));
        }
        for (i, (name, value)) in cases.iter().enumerate() {
            let same = |v: &String| v.trim().to_lowercase() == value.trim().to_lowercase();
            if let Some((other, _)) = cases[..i].iter().find(|(_, v)| same(v)) {
                return Err(format!(
                    "the cases `{other}` and `{name}` have the same value"
                ));
            }
        }
        Ok(SwitchStep {
            value: required(config, "value")?,
            cases,
        })
    }

    /// The rendered value and the case it matches (`default` when none), ignoring case and
    /// surrounding spaces: templates render booleans as `True` and `False`, and a tenant writes
    /// `true`.
    pub fn decide(&self, ctx: &Value) -> Result<(String, String), String> {
        let value = expr::render(&self.value, ctx)?;
        for (name, case) in &self.cases {
            if expr::render(case, ctx)?.trim().to_lowercase() == value.trim().to_lowercase() {
                return Ok((value, name.clone()));
            }
        }
        Ok((value, DEFAULT.to_string()))
    }
}

#[async_trait::async_trait]
impl<C: Send + Sync> Node<C> for SwitchStep {
    async fn run(&self, _: &C, state: &mut ConvState, _: Events<'_>) -> Result<StepOutput, String> {
        let (value, case) = self.decide(&context(state))?;
        Ok(leave(&case, json!({ "value": value, "case": case })))
    }
}

/// An agent step: which of the tenant's agents, and what it is told.
pub struct AgentStep {
    agent: String,
    message: String,
}

impl AgentStep {
    pub fn parse(config: &Value) -> Result<AgentStep, String> {
        Ok(AgentStep {
            agent: required(config, "agent")?.trim().to_string(),
            message: required(config, "message")?,
        })
    }

    /// The workflow acting in its tenant's conversations.
    fn access(cx: &StepCx) -> Access {
        Access {
            scopes: app::types::Scope::parse("conversations:write")
                .into_iter()
                .collect(),
            ..cx.access()
        }
    }

    fn output(id: uuid::Uuid, c: &app::types::Conversation, answer: &str) -> Value {
        json!({
            "answer": answer,
            "agent": c.agent,
            "handoff": c.status == app::types::ConversationStatus::WaitingHuman,
            "conversation_id": id,
        })
    }
}

#[async_trait::async_trait]
impl Node<StepCx> for AgentStep {
    async fn run(
        &self,
        cx: &StepCx,
        state: &mut ConvState,
        _: Events<'_>,
    ) -> Result<StepOutput, String> {
        use app::services::ConversationService;
        use app::types::{Channel, CreateConversation, MessageRole, PostMessage};

        let message = expr::render(&self.message, &context(state))?;
        let agents = crate::agents::catalogue::load(&cx.rt.db, cx.tenant_id)
            .await
            .map_err(|e| e.to_string())?;
        if !agents.iter().any(|a| a.name == self.agent) {
            let names: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
            return Err(format!(
                "no agent is named `{}` (there are {})",
                self.agent,
                names.join(", ")
            ));
        }
        let conversations = &cx.rt.conversations;
        let access = Self::access(cx);
        // The conversation's id comes from the step: a step run again (its answer was lost)
        // finds its conversation, and an answer there is the step's answer.
        let id = cx.derived_id("agent");
        match conversations.get_conversation(&access, id).await {
            Ok(detail) => {
                if let Some(reply) = detail
                    .messages
                    .iter()
                    .rev()
                    .find(|m| m.role == MessageRole::Assistant)
                {
                    return Ok(done(Self::output(id, &detail.conversation, &reply.content)));
                }
            }
            Err(app::error::AppError::NotFound(_)) => {
                let create = CreateConversation {
                    channel: Some(Channel::Workflow),
                    title: Some(format!("Workflow step {}", cx.node)),
                    history: Vec::new(),
                };
                conversations
                    .create_pinned(&access, create, id, &self.agent)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Err(e) => return Err(e.to_string()),
        }
        let post = PostMessage {
            content: message.chars().take(8000).collect(),
            stream: false,
        };
        let turn = conversations
            .post_message(&access, id, post, std::sync::Arc::new(|_| {}))
            .await
            .map_err(|e| e.to_string())?;
        let answer = turn.reply.map(|m| m.content).unwrap_or_default();
        Ok(done(Self::output(id, &turn.conversation, &answer)))
    }

    fn compensation(&self, cx: &StepCx, _: &ConvState) -> Option<Value> {
        Some(json!({
            "type": "agent", "node": cx.node, "conversation_id": cx.derived_id("agent")
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn a_structured_answer_must_have_every_field_with_its_type() {
        let f = fields(&[
            ("answer", "string"),
            ("confident", "boolean"),
            ("score", "integer"),
            ("tags", "list"),
        ]);
        let ok = r#"{"answer": "Yes", "confident": true, "score": 3, "tags": ["a"], "extra": 1}"#;
        assert_eq!(
            structured(ok, &f).unwrap(),
            json!({"answer": "Yes", "confident": true, "score": 3, "tags": ["a"]})
        );
        // Fenced, as some models answer.
        let fenced = format!("```json\n{ok}\n```");
        assert!(structured(&fenced, &f).is_ok());
        let missing = r#"{"answer": "Yes", "score": 3, "tags": []}"#;
        assert!(structured(missing, &f)
            .unwrap_err()
            .contains("no `confident`"));
        let wrong = r#"{"answer": "Yes", "confident": "yes", "score": 3, "tags": []}"#;
        assert!(structured(wrong, &f)
            .unwrap_err()
            .contains("`confident` is not a boolean"));
        let fraction = r#"{"answer": "Yes", "confident": true, "score": 2.5, "tags": []}"#;
        assert!(structured(fraction, &f).unwrap_err().contains("integer"));
        assert!(structured("Sure! Here it is", &f)
            .unwrap_err()
            .contains("not a JSON object"));
    }

    #[test]
    fn output_fields_are_checked_when_the_step_is_built() {
        let bad = json!({"prompt": "x", "output": {"answer": "text"}});
        assert!(LlmStep::parse(&bad).err().unwrap().contains("types are"));
        let bad_name = json!({"prompt": "x", "output": {"an answer": "string"}});
        assert!(LlmStep::parse(&bad_name).is_err());
        let schema = schema(&fields(&[("answer", "string"), ("tags", "list")]));
        assert_eq!(schema["required"], json!(["answer", "tags"]));
        assert_eq!(schema["properties"]["tags"]["items"]["type"], "string");
        assert_eq!(schema["additionalProperties"], false);
    }

    #[test]
    fn a_classifier_answer_is_read_leniently_and_falls_back_to_other() {
        let names = ["sales", "support", "support_urgent", OTHER];
        assert_eq!(pick(r#"{"class": "support"}"#, &names), "support");
        assert_eq!(pick("Support", &names), "support");
        assert_eq!(pick("I'd say support_urgent.", &names), "support_urgent");
        assert_eq!(pick(r#"{"class": "billing"}"#, &names), OTHER);
        assert_eq!(pick("", &names), OTHER);
    }

    #[test]
    fn a_switch_takes_the_matching_case_or_default() {
        let spec = SwitchStep::parse(&json!({
            "value": "{{ trigger.plan }}", "cases": {"gold": "gold", "silver": " silver "}
        }))
        .unwrap();
        let decide = |plan: &str| spec.decide(&json!({"trigger": {"plan": plan}})).unwrap().1;
        assert_eq!(decide("gold"), "gold");
        assert_eq!(decide("Gold "), "gold");
        assert_eq!(decide("silver"), "silver");
        assert_eq!(decide("bronze"), DEFAULT);
        let twice = json!({"value": "x", "cases": {"a": "yes", "b": "Yes"}});
        assert!(SwitchStep::parse(&twice)
            .err()
            .unwrap()
            .contains("same value"));
        let reserved = json!({"value": "x", "cases": {"default": "1"}});
        assert!(SwitchStep::parse(&reserved).is_err());
        // A boolean renders as `True`; the case says `true`.
        let flag =
            SwitchStep::parse(&json!({"value": "{{ trigger.ok }}", "cases": {"yes": "true"}}))
                .unwrap();
        assert_eq!(
            flag.decide(&json!({"trigger": {"ok": true}})).unwrap().1,
            "yes"
        );
        let none = json!({"input": "x", "classes": {}});
        assert!(ClassifierStep::parse(&none).is_err());
    }
}
