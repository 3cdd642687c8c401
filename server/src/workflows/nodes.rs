//! The workflow node kinds, as engine [`Node`]s over [`StepCx`].
//!
//! A node reads the run's variables (`trigger`, `vars`, `nodes.<id>`) through templates, does
//! its work and returns its output; the driver (`run`) stores the output under `nodes.<id>`.
//! Side-effecting nodes make their effect idempotent with the step's key (an email job's
//! idempotency key, a booking id derived from it, an `Idempotency-Key` header) and declare
//! their compensation, which the driver registers before they run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use app::services::{Access, Actor};
use app::types::{BookingSource, NodeKind, NodeTest};

use super::ai::{self, Asker};
use super::expr;
use super::secrets::{self, Secrets};
use crate::engine::{ConvState, Events, Node, NodeRegistry, StepOutput, Suspend};
use crate::integrations::calendar::{self, Calendar, CalendarError, NewBooking};
use crate::integrations::email::{self, OutgoingEmail};
use crate::store::{bookings, tenant_email_settings, tenants};

/// Largest HTTP response body a step reads.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Longest booking a step may make.
const MAX_BOOKING_MINUTES: i64 = 24 * 60;

/// What the nodes of every run share.
pub struct WorkflowRuntime {
    pub db: DatabaseConnection,
    /// The agents (an `agent` step talks to one) and what they use, which the nodes use too:
    /// the tenants' LLM providers, their knowledge, their calendars and the platform's email
    /// (`SMTP_URL`; a tenant may also have its own provider).
    pub conversations: Arc<crate::agents::service::ConversationServiceImpl>,
    /// For tenant-given URLs: public addresses only unless `FETCH_ALLOW_PRIVATE`.
    pub http: reqwest::Client,
    pub allow_private: bool,
    /// Opens the tenants' secrets for HTTP steps.
    pub keys: crate::secrets::KeyRing,
    /// Starts and cancels runs for "Run a workflow" steps (set once both exist).
    pub service: std::sync::OnceLock<Arc<super::service::WorkflowServiceImpl>>,
}

impl WorkflowRuntime {
    pub fn new(
        db: DatabaseConnection,
        conversations: Arc<crate::agents::service::ConversationServiceImpl>,
        keys: crate::secrets::KeyRing,
        allow_private: bool,
    ) -> anyhow::Result<WorkflowRuntime> {
        use anyhow::Context;
        let http = crate::outbound::guard::guarded(
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_millis(super::MAX_TIMEOUT_MS)),
            allow_private,
        )
        .context("preparing the workflows' HTTP client")?;
        Ok(WorkflowRuntime {
            db,
            conversations,
            http,
            allow_private,
            keys,
            service: std::sync::OnceLock::new(),
        })
    }

    /// What starts and cancels the runs that steps call.
    pub fn service(&self) -> Option<&Arc<super::service::WorkflowServiceImpl>> {
        self.service.get()
    }

    pub fn agents(&self) -> &crate::agents::Runtime {
        self.conversations.runtime()
    }

    fn calendar(&self) -> &dyn Calendar {
        self.agents().calendar.as_ref()
    }
}

/// What one step of one run sees.
pub struct StepCx {
    pub rt: Arc<WorkflowRuntime>,
    pub tenant_id: Uuid,
    pub run_id: Uuid,
    pub workflow_id: Uuid,
    pub node: String,
    pub seq: u32,
    pub attempt: u32,
    /// What this step's calls to the model spent (counted whether the step succeeds or not).
    pub spent: std::sync::Mutex<app::types::Usage>,
}

impl StepCx {
    /// Names this step's effect: the same for every execution of the step, so an effect
    /// whose answer was lost (the worker died) is recognised when the step runs again.
    pub fn key(&self) -> String {
        format!("wf:{}:{}", self.run_id, self.seq)
    }

    /// An id derived from the step's key (for the booking it makes).
    pub fn derived_id(&self, purpose: &str) -> Uuid {
        let digest = Sha256::digest(format!("{purpose}:{}", self.key()).as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    /// The workflow acting in its tenant (audit: `system:workflow:<id>`).
    pub fn access(&self) -> Access {
        access_for(self.tenant_id, self.workflow_id)
    }
}

pub fn access_for(tenant_id: Uuid, workflow_id: Uuid) -> Access {
    Access {
        tenant_id,
        actor: Actor::System {
            task: format!("workflow:{workflow_id}"),
        },
        role: None,
        scopes: Vec::new(),
        ip: None,
    }
}

/// Whether `access` is one of the tenant's workflows acting ([`access_for`]).
pub fn is_workflow(access: &Access) -> bool {
    matches!(&access.actor, Actor::System { task } if task.starts_with("workflow:"))
}

/// The variables templates see.
pub fn context(state: &ConvState) -> Value {
    json!({
        "trigger": state.vars.get("trigger").cloned().unwrap_or(Value::Null),
        "vars": state.vars.get("vars").cloned().unwrap_or_else(|| json!({})),
        "nodes": state.vars.get(crate::engine::NODES).cloned().unwrap_or_else(|| json!({})),
    })
}

pub(super) fn done(output: Value) -> StepOutput {
    StepOutput {
        output: Some(output),
        ..Default::default()
    }
}

/// Not done: run the node again at `at` (its state is checkpointed meanwhile).
pub(super) fn until(at: DateTime<Utc>) -> StepOutput {
    StepOutput {
        suspend: Some(Suspend::Until { at }),
        ..Default::default()
    }
}

/// The longest pause between two looks at runs a step waits for.
const MAX_LOOK_SECS: i64 = 300;

/// Not done: the step waits for other runs (`memo`, kept in the state with how many times it
/// has looked) and looks again after 2, 4, 8 … seconds, at most five minutes; the end of a run
/// it waits for wakes it sooner.
pub(super) fn look_again(
    state: &mut ConvState,
    area: &str,
    node: &str,
    mut memo: Value,
    looks: i64,
) -> StepOutput {
    memo["looks"] = json!(looks + 1);
    set_memo(state, area, node, Some(memo));
    let pause = (2i64 << looks.clamp(0, 20)).min(MAX_LOOK_SECS);
    until(Utc::now() + chrono::Duration::seconds(pause))
}

pub(super) fn leave(port: &str, output: Value) -> StepOutput {
    StepOutput {
        output: Some(output),
        port: Some(port.to_string()),
        ..Default::default()
    }
}

pub(super) fn text(config: &Value, key: &str) -> Option<String> {
    config.get(key).and_then(Value::as_str).map(str::to_string)
}

pub(super) fn required(config: &Value, key: &str) -> Result<String, String> {
    match text(config, key) {
        Some(t) if !t.trim().is_empty() => Ok(t),
        _ => Err(format!("`{key}` is required")),
    }
}

/// A per-node memory in the run's state (`vars.<area>.<node>`): a wait's deadline, an
/// approval's answer.
pub(super) fn memo<'a>(state: &'a ConvState, area: &str, node: &str) -> Option<&'a Value> {
    state.vars.get(area).and_then(|m| m.get(node))
}

pub(super) fn set_memo(state: &mut ConvState, area: &str, node: &str, value: Option<Value>) {
    let map = state
        .vars
        .entry(area.to_string())
        .or_insert_with(|| json!({}));
    if let Some(map) = map.as_object_mut() {
        match value {
            Some(v) => {
                map.insert(node.to_string(), v);
            }
            None => {
                map.remove(node);
            }
        }
    }
}

/// Where a person's answer to an approval is kept until the node reads it.
pub const APPROVALS: &str = "approvals";
const WAITS: &str = "waits";

struct Trigger;

#[async_trait::async_trait]
impl<C: Send + Sync> Node<C> for Trigger {
    async fn run(&self, _: &C, state: &mut ConvState, _: Events<'_>) -> Result<StepOutput, String> {
        Ok(done(
            state.vars.get("trigger").cloned().unwrap_or(Value::Null),
        ))
    }
}

struct Set {
    values: BTreeMap<String, Value>,
}

#[async_trait::async_trait]
impl<C: Send + Sync> Node<C> for Set {
    async fn run(&self, _: &C, state: &mut ConvState, _: Events<'_>) -> Result<StepOutput, String> {
        let ctx = context(state);
        let mut set = serde_json::Map::new();
        for (name, template) in &self.values {
            set.insert(name.clone(), expr::render_value(template, &ctx)?);
        }
        let vars = state.vars.entry("vars".into()).or_insert_with(|| json!({}));
        if let Some(vars) = vars.as_object_mut() {
            vars.extend(set.clone());
        }
        Ok(done(Value::Object(set)))
    }
}

struct Template {
    template: String,
}

#[async_trait::async_trait]
impl<C: Send + Sync> Node<C> for Template {
    async fn run(&self, _: &C, state: &mut ConvState, _: Events<'_>) -> Result<StepOutput, String> {
        Ok(done(
            json!({ "text": expr::render(&self.template, &context(state))? }),
        ))
    }
}

struct Condition {
    expression: String,
}

#[async_trait::async_trait]
impl<C: Send + Sync> Node<C> for Condition {
    async fn run(&self, _: &C, state: &mut ConvState, _: Events<'_>) -> Result<StepOutput, String> {
        let result = expr::holds(&self.expression, &context(state))?;
        Ok(leave(
            if result { "true" } else { "false" },
            json!({ "result": result }),
        ))
    }
}

/// Where a loop keeps its list and the next item's index while it goes round.
const LOOPS: &str = "loops";

struct Loop {
    items: String,
    max: u64,
}

impl Loop {
    fn parse(config: &Value) -> Result<Loop, String> {
        let items = required(config, "items")?;
        let max = match config.get("max") {
            None | Some(Value::Null) => 100,
            Some(v) => v
                .as_u64()
                .filter(|m| (1..=app::types::MAX_LOOP_ITEMS).contains(m))
                .ok_or_else(|| {
                    format!(
                        "`max` must be a whole number from 1 to {}",
                        app::types::MAX_LOOP_ITEMS
                    )
                })?,
        };
        Ok(Loop { items, max })
    }

    /// The list `items` gives in `ctx`, within `max`.
    fn list(&self, ctx: &Value) -> Result<Vec<Value>, String> {
        match expr::eval(&self.items, ctx)? {
            Value::Array(items) if items.len() as u64 > self.max => Err(format!(
                "`{}` has {} items; this loop takes at most {}",
                self.items,
                items.len(),
                self.max
            )),
            Value::Array(items) => Ok(items),
            Value::Null => Ok(Vec::new()),
            other => Err(format!(
                "`{}` is not a list (it is {})",
                self.items,
                match other {
                    Value::Object(_) => "an object",
                    Value::String(_) => "a text",
                    Value::Number(_) => "a number",
                    _ => "a true/false",
                }
            )),
        }
    }
}

#[async_trait::async_trait]
impl Node<StepCx> for Loop {
    /// Entered from before the loop, it reads the list; entered again from its `each` branch,
    /// it moves to the next item. After the last it forgets the list, so a loop inside another
    /// starts over on its next entry.
    async fn run(
        &self,
        cx: &StepCx,
        state: &mut ConvState,
        _: Events<'_>,
    ) -> Result<StepOutput, String> {
        let (items, index) = match memo(state, LOOPS, &cx.node) {
            Some(going) => (
                going["items"].as_array().cloned().unwrap_or_default(),
                going["next"].as_u64().unwrap_or(0) as usize,
            ),
            None => (self.list(&context(state))?, 0),
        };
        let count = items.len();
        match items.get(index).cloned() {
            Some(item) => {
                set_memo(
                    state,
                    LOOPS,
                    &cx.node,
                    Some(json!({ "items": items, "next": index + 1 })),
                );
                Ok(leave(
                    "each",
                    json!({ "item": item, "index": index, "count": count }),
                ))
            }
            None => {
                set_memo(state, LOOPS, &cx.node, None);
                Ok(leave("done", json!({ "count": count })))
            }
        }
    }
}

struct Http {
    request: Value,
    compensation: Option<Value>,
}

/// Sends the request `spec` (`method`, `url`, `headers`, `body`, rendered) and reads at most
/// [`MAX_RESPONSE_BYTES`]; a status outside 2xx is an error.
pub async fn send(rt: &WorkflowRuntime, spec: &Value, key: &str) -> Result<Value, String> {
    let method = text(spec, "method").unwrap_or_else(|| "GET".into());
    let method = reqwest::Method::from_bytes(method.trim().to_uppercase().as_bytes())
        .map_err(|_| format!("`{method}` is not an HTTP method"))?;
    let url = required(spec, "url")?;
    crate::outbound::guard::check_target(&url, rt.allow_private)?;
    let mut request = rt
        .http
        .request(method, url.trim())
        .header("Idempotency-Key", key);
    if let Some(headers) = spec.get("headers").and_then(Value::as_object) {
        for (name, value) in headers {
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            request = request.header(name.as_str(), value);
        }
    }
    match spec.get("body") {
        None | Some(Value::Null) => {}
        Some(Value::String(body)) => request = request.body(body.clone()),
        Some(body) => request = request.json(body),
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| format!("the request failed: {}", crate::outbound::describe(&e)))?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        format!(
            "reading the response failed: {}",
            crate::outbound::describe(&e)
        )
    })? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(format!(
                "the response is larger than {MAX_RESPONSE_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    let body = serde_json::from_slice::<Value>(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    if !status.is_success() {
        let excerpt: String = match &body {
            Value::String(s) => s.chars().take(200).collect(),
            other => other.to_string().chars().take(200).collect(),
        };
        return Err(format!(
            "HTTP {} from the server: {excerpt}",
            status.as_u16()
        ));
    }
    Ok(json!({ "status": status.as_u16(), "body": body }))
}

/// Renders the request `template` with `ctx` and the tenant's secrets it names, and sends it;
/// a secret that comes back in the answer or an error is redacted.
pub async fn send_with_secrets(
    rt: &WorkflowRuntime,
    tenant: Uuid,
    template: &Value,
    ctx: &Value,
    key: &str,
) -> Result<Value, String> {
    let names = secrets::referenced(template);
    let secrets = Secrets::load(&rt.db, &rt.keys, tenant, &names).await?;
    let spec =
        expr::render_value(template, &secrets.context(ctx)).map_err(|e| secrets.redact(&e))?;
    match send(rt, &spec, key).await {
        Ok(answer) => Ok(secrets.redact_value(answer)),
        Err(e) => Err(secrets.redact(&e)),
    }
}

#[async_trait::async_trait]
impl Node<StepCx> for Http {
    async fn run(
        &self,
        cx: &StepCx,
        state: &mut ConvState,
        _: Events<'_>,
    ) -> Result<StepOutput, String> {
        let answer = send_with_secrets(
            &cx.rt,
            cx.tenant_id,
            &self.request,
            &context(state),
            &cx.key(),
        )
        .await?;
        Ok(done(answer))
    }

    fn compensation(&self, cx: &StepCx, _: &ConvState) -> Option<Value> {
        // Rendered when it runs, so it can use this step's response (`nodes.<id>.body.id`).
        self.compensation
            .as_ref()
            .map(|request| json!({"type": "http", "node": cx.node, "request": request}))
    }
}

struct Email {
    config: Value,
}

async fn can_email(cx: &StepCx) -> Result<bool, String> {
    if cx.rt.agents().email.is_some() {
        return Ok(true);
    }
    let own = tenant_email_settings::Entity::find()
        .filter(tenant_email_settings::Column::TenantId.eq(cx.tenant_id))
        .count(&cx.rt.db)
        .await
        .map_err(|e| e.to_string())?;
    Ok(own > 0)
}

/// Queues one email, once per `key` (the job's idempotency key).
pub async fn queue_email(
    cx: &StepCx,
    to: &str,
    subject: &str,
    body: &str,
    key: String,
) -> Result<Value, String> {
    if !can_email(cx).await? {
        return Err(
            "email is not set up: the platform has no SMTP server and the tenant no email provider"
                .into(),
        );
    }
    let to = email::parse_address("to", to).map_err(|e| e.to_string())?;
    if subject.trim().is_empty() || subject.len() > 200 {
        return Err("the subject must be 1–200 characters".into());
    }
    let message = OutgoingEmail {
        to: to.clone(),
        subject: subject.trim().to_string(),
        body: body.to_string(),
        reply_to: None,
        message_id: None,
    };
    let job = email::enqueue_keyed(&cx.rt.db, cx.tenant_id, &message, key)
        .await
        .map_err(|e| format!("the email could not be queued: {e}"))?;
    Ok(json!({ "queued": true, "to": to.to_string(), "job_id": job }))
}

#[async_trait::async_trait]
impl Node<StepCx> for Email {
    async fn run(
        &self,
        cx: &StepCx,
        state: &mut ConvState,
        _: Events<'_>,
    ) -> Result<StepOutput, String> {
        let c = expr::render_value(&self.config, &context(state))?;
        let out = queue_email(
            cx,
            &required(&c, "to")?,
            &required(&c, "subject")?,
            &text(&c, "body").unwrap_or_default(),
            cx.key(),
        )
        .await?;
        Ok(done(out))
    }

    fn compensation(&self, cx: &StepCx, _: &ConvState) -> Option<Value> {
        Some(match self.config.get("compensation") {
            Some(follow_up) if follow_up.is_object() => json!({
                "type": "email", "node": cx.node, "to": self.config.get("to"), "message": follow_up
            }),
            _ => json!({"type": "not_compensable", "node": cx.node, "what": "an email was sent"}),
        })
    }
}

struct Booking {
    config: Value,
}

async fn tenant_zone(db: &DatabaseConnection, tenant: Uuid) -> Result<chrono_tz::Tz, String> {
    Ok(tenants::Entity::find_by_id(tenant)
        .one(db)
        .await
        .map_err(|e| e.to_string())?
        .map_or(chrono_tz::UTC, |t| calendar::zone(&t.timezone)))
}

fn calendar_error(e: CalendarError) -> String {
    e.to_string()
}

#[async_trait::async_trait]
impl Node<StepCx> for Booking {
    async fn run(
        &self,
        cx: &StepCx,
        state: &mut ConvState,
        _: Events<'_>,
    ) -> Result<StepOutput, String> {
        let c = expr::render_value(&self.config, &context(state))?;
        let id = cx.derived_id("booking");
        // The step ran before and its booking was made (the answer was lost): that is it.
        if let Some(row) = bookings::Entity::find_by_id(id)
            .filter(bookings::Column::TenantId.eq(cx.tenant_id))
            .one(&cx.rt.db)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(done(booking_output(&row.id, row.starts_at, row.ends_at)));
        }
        let tz = tenant_zone(&cx.rt.db, cx.tenant_id).await?;
        let start = required(&c, "starts_at")?;
        let local = NaiveDateTime::parse_from_str(start.trim(), "%Y-%m-%dT%H:%M")
            .or_else(|_| NaiveDateTime::parse_from_str(start.trim(), "%Y-%m-%dT%H:%M:%S"))
            .map_err(|_| {
                format!("starts_at `{start}` is not a local time like 2026-12-08T10:00")
            })?;
        let starts_at = calendar::local_to_utc(tz, local)
            .ok_or_else(|| format!("{local} does not exist in {tz} (the clocks go forward)"))?;
        let minutes = match c.get("minutes") {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            None => Some(30),
            _ => None,
        }
        .filter(|m| (5..=MAX_BOOKING_MINUTES).contains(m))
        .ok_or_else(|| format!("minutes must be 5–{MAX_BOOKING_MINUTES}"))?;
        let name = required(&c, "name")?;
        let address = required(&c, "email")?;
        email::parse_address("email", &address).map_err(|e| e.to_string())?;
        let booking = cx
            .rt
            .calendar()
            .book(
                &cx.access(),
                NewBooking {
                    id: Some(id),
                    conversation_id: None,
                    starts_at,
                    ends_at: starts_at + chrono::Duration::minutes(minutes),
                    name: name.chars().take(200).collect(),
                    email: address.trim().to_string(),
                    note: text(&c, "note")
                        .unwrap_or_default()
                        .chars()
                        .take(2000)
                        .collect(),
                    source: BookingSource::Workflow,
                    notify: false,
                },
            )
            .await
            .map_err(calendar_error)?;
        Ok(done(booking_output(
            &booking.id,
            booking.starts_at,
            booking.ends_at,
        )))
    }

    fn compensation(&self, cx: &StepCx, _: &ConvState) -> Option<Value> {
        Some(
            json!({"type": "cancel_booking", "node": cx.node, "booking_id": cx.derived_id("booking")}),
        )
    }
}

fn booking_output(id: &Uuid, starts_at: DateTime<Utc>, ends_at: DateTime<Utc>) -> Value {
    json!({ "booking_id": id, "starts_at": starts_at, "ends_at": ends_at })
}

/// Cancels the tenant's booking `id`; a booking that does not exist (its step never made it)
/// or is already cancelled is reported as such, not as a failure.
pub async fn cancel_booking(
    rt: &WorkflowRuntime,
    access: &Access,
    id: Uuid,
    reason: &str,
) -> Result<&'static str, String> {
    match rt.calendar().cancel(access, id, reason, false).await {
        Ok(_) => Ok("cancelled"),
        Err(CalendarError::NotFound) => Ok("not_found"),
        Err(CalendarError::Cancelled) => Ok("already_cancelled"),
        Err(e) => Err(calendar_error(e)),
    }
}

struct CancelBooking {
    config: Value,
}

#[async_trait::async_trait]
impl Node<StepCx> for CancelBooking {
    async fn run(
        &self,
        cx: &StepCx,
        state: &mut ConvState,
        _: Events<'_>,
    ) -> Result<StepOutput, String> {
        let c = expr::render_value(&self.config, &context(state))?;
        let id = required(&c, "booking_id")?;
        let id: Uuid = id
            .trim()
            .parse()
            .map_err(|_| format!("`{id}` is not a booking id"))?;
        let reason = text(&c, "reason").unwrap_or_else(|| "cancelled by a workflow".into());
        let outcome = cancel_booking(&cx.rt, &cx.access(), id, &reason).await?;
        if outcome == "not_found" {
            return Err(format!("no booking {id}"));
        }
        Ok(done(json!({ "booking_id": id, "outcome": outcome })))
    }
}

struct Approval {
    prompt: String,
}

#[async_trait::async_trait]
impl Node<StepCx> for Approval {
    async fn run(
        &self,
        cx: &StepCx,
        state: &mut ConvState,
        _: Events<'_>,
    ) -> Result<StepOutput, String> {
        if let Some(answer) = memo(state, APPROVALS, &cx.node).cloned() {
            set_memo(state, APPROVALS, &cx.node, None);
            let approved = answer["approved"].as_bool().unwrap_or(false);
            return Ok(leave(
                if approved { "approved" } else { "rejected" },
                answer,
            ));
        }
        let prompt = expr::render(&self.prompt, &context(state))?;
        Ok(StepOutput {
            suspend: Some(Suspend::Approval { prompt }),
            ..Default::default()
        })
    }
}

struct Wait {
    seconds: Option<u64>,
    until: Option<String>,
}

#[async_trait::async_trait]
impl Node<StepCx> for Wait {
    async fn run(
        &self,
        cx: &StepCx,
        state: &mut ConvState,
        _: Events<'_>,
    ) -> Result<StepOutput, String> {
        let now = Utc::now();
        let at = match memo(state, WAITS, &cx.node).and_then(|v| v.as_str()) {
            Some(at) => at.parse::<DateTime<Utc>>().map_err(|e| e.to_string())?,
            None => {
                let at = match (&self.until, self.seconds) {
                    (Some(until), _) => {
                        let text = expr::render(until, &context(state))?;
                        DateTime::parse_from_rfc3339(text.trim())
                            .map_err(|_| format!("until `{text}` is not an RFC 3339 time"))?
                            .with_timezone(&Utc)
                    }
                    (None, Some(seconds)) => now + Duration::from_secs(seconds),
                    (None, None) => now,
                };
                set_memo(state, WAITS, &cx.node, Some(json!(at)));
                at
            }
        };
        if at > now {
            return Ok(until(at));
        }
        set_memo(state, WAITS, &cx.node, None);
        Ok(done(json!({ "waited_until": at })))
    }
}

struct End {
    output: Value,
}

#[async_trait::async_trait]
impl Node<StepCx> for End {
    async fn run(
        &self,
        _: &StepCx,
        state: &mut ConvState,
        _: Events<'_>,
    ) -> Result<StepOutput, String> {
        Ok(done(expr::render_value(&self.output, &context(state))?))
    }
}

/// `key`'s object (`{}` when absent).
fn object(config: &Value, key: &str) -> Result<Value, String> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(json!({})),
        Some(v) if v.is_object() => Ok(v.clone()),
        Some(_) => Err(format!("`{key}` must be an object")),
    }
}

/// Builds a node of a kind that runs the same in a workflow's run and in a conversation
/// graph's turn (they need no more of where they run than [`ai::Asks`]); `None` for the
/// other kinds.
pub fn build_shared<C: ai::Asks + 'static>(
    kind: NodeKind,
    config: &Value,
) -> Result<Option<Arc<dyn Node<C>>>, String> {
    Ok(Some(match kind {
        NodeKind::ManualTrigger | NodeKind::WebhookTrigger | NodeKind::MessageTrigger => {
            Arc::new(Trigger)
        }
        NodeKind::Set => Arc::new(Set {
            values: serde_json::from_value(object(config, "values")?).map_err(|e| e.to_string())?,
        }),
        NodeKind::Template => Arc::new(Template {
            template: required(config, "template")?,
        }),
        NodeKind::Condition => Arc::new(Condition {
            expression: required(config, "expression")?,
        }),
        NodeKind::Llm => Arc::new(ai::LlmStep::parse(config)?),
        NodeKind::Knowledge => Arc::new(ai::KnowledgeStep::parse(config)?),
        NodeKind::Classifier => Arc::new(ai::ClassifierStep::parse(config)?),
        NodeKind::Switch => Arc::new(ai::SwitchStep::parse(config)?),
        _ => return Ok(None),
    }))
}

/// Builds a node of `kind` from its configuration, or says what is wrong with it.
pub fn build(kind: NodeKind, config: &Value) -> Result<Arc<dyn Node<StepCx>>, String> {
    if let Some(node) = build_shared(kind, config)? {
        return Ok(node);
    }
    Ok(match kind {
        NodeKind::EventTrigger => {
            let event = required(config, "event")?;
            if !app::types::TRIGGER_EVENTS.contains(&event.trim()) {
                return Err(format!(
                    "`{event}` is not an event a workflow can start on (one of: {})",
                    app::types::TRIGGER_EVENTS.join(", ")
                ));
            }
            Arc::new(Trigger)
        }
        NodeKind::ScheduleTrigger => {
            let cron = required(config, "cron")?;
            // Minutes at the finest: a schedule every second would start 86,400 runs a day.
            if cron.split_whitespace().count() != 5 {
                return Err(format!(
                    "cron `{cron}`: five fields, minute hour day month weekday (like 0 18 * * 1-5)"
                ));
            }
            crate::jobs::schedule::parse(&cron).map_err(|e| format!("cron `{cron}`: {e}"))?;
            if let Some(tz) = text(config, "timezone").filter(|t| !t.trim().is_empty()) {
                tz.trim()
                    .parse::<chrono_tz::Tz>()
                    .map_err(|_| format!("`{tz}` is not a time zone (like Europe/Lisbon)"))?;
            }
            Arc::new(Trigger)
        }
        NodeKind::Loop => Arc::new(Loop::parse(config)?),
        NodeKind::Parallel => Arc::new(super::parallel::ParallelStep::parse(config)?),
        NodeKind::Join => Arc::new(super::parallel::Join),
        NodeKind::Workflow => Arc::new(super::call::CallStep::parse(config)?),
        NodeKind::Http => {
            required(config, "url")?;
            let compensation = match config.get("compensation") {
                None | Some(Value::Null) => None,
                Some(c) if c.get("url").and_then(Value::as_str).is_some() => Some(c.clone()),
                Some(_) => return Err("`compensation` must be a request with a `url`".into()),
            };
            let mut request = config.clone();
            if let Some(r) = request.as_object_mut() {
                r.remove("compensation");
            }
            Arc::new(Http {
                request,
                compensation,
            })
        }
        NodeKind::Email => {
            required(config, "to")?;
            required(config, "subject")?;
            Arc::new(Email {
                config: config.clone(),
            })
        }
        NodeKind::Booking => {
            for key in ["starts_at", "name", "email"] {
                required(config, key)?;
            }
            Arc::new(Booking {
                config: config.clone(),
            })
        }
        NodeKind::CancelBooking => {
            required(config, "booking_id")?;
            Arc::new(CancelBooking {
                config: config.clone(),
            })
        }
        NodeKind::Approval => Arc::new(Approval {
            prompt: text(config, "prompt").unwrap_or_else(|| "Approve?".into()),
        }),
        NodeKind::Wait => {
            let seconds = config.get("seconds").and_then(Value::as_u64);
            let until = text(config, "until");
            if seconds.is_none() && until.is_none() {
                return Err("`seconds` or `until` is required".into());
            }
            Arc::new(Wait { seconds, until })
        }
        NodeKind::End => Arc::new(End {
            output: object(config, "output")?,
        }),
        NodeKind::Agent => Arc::new(ai::AgentStep::parse(config)?),
        NodeKind::Route | NodeKind::Specialist | NodeKind::Handoff => {
            return Err(super::conversation::ONLY.into())
        }
        // Built above.
        other => return Err(format!("a {} step cannot be built here", other.as_str())),
    })
}

/// What a node of `kind` would do with the values in `ctx` (the editor's "Test this step"). The
/// nodes without effects compute their output as a run does (the same calls as their `run`:
/// the LLM, knowledge and classifier steps ask the model and search for real); the others'
/// configurations are filled in and returned, and nothing is sent.
pub async fn preview(kind: NodeKind, config: &Value, ctx: &Value, asker: &Asker<'_>) -> NodeTest {
    let mut test = NodeTest {
        node: String::new(),
        kind,
        rendered: None,
        output: None,
        port: None,
        error: None,
        note: None,
    };
    // A conversation graph's own steps are checked with their graph (`problems`).
    if let (false, Err(e)) = (kind.conversation_only(), build(kind, config)) {
        test.error = Some(e);
        return test;
    }
    // A compensation is filled in when it runs, from the outputs of the steps after this one.
    let mut shown = config.clone();
    if let Some(c) = shown.as_object_mut() {
        c.remove("compensation");
    }
    let rendered = match kind {
        NodeKind::Condition | NodeKind::Switch | NodeKind::Loop => Ok(shown.clone()),
        NodeKind::Llm => ai::LlmStep::parse(config).and_then(|s| s.render(ctx)),
        // Shown with stand-ins: a test never reads (or shows) a secret.
        NodeKind::Http => expr::render_value(
            &shown,
            &Secrets::placeholders(&secrets::referenced(&shown)).context(ctx),
        ),
        _ => expr::render_value(&shown, ctx),
    };
    let outcome = async {
        let rendered = rendered?;
        let field = |key: &str| rendered.get(key).cloned().unwrap_or_else(|| json!({}));
        match kind {
            NodeKind::ManualTrigger
            | NodeKind::ScheduleTrigger
            | NodeKind::WebhookTrigger
            | NodeKind::EventTrigger
            | NodeKind::MessageTrigger => test.output = ctx.get("trigger").cloned(),
            NodeKind::Route => {
                test.note = Some(
                    "a turn sends the message to this agent (or the router's choice)".into(),
                )
            }
            NodeKind::Specialist => {
                test.note = Some(
                    "a turn has the specialist answer the customer (it may book or email); a \
                     test does not"
                        .into(),
                )
            }
            NodeKind::Handoff => {
                test.note = Some("a turn hands the conversation to a person here".into())
            }
            NodeKind::Set => {
                test.output = Some(field("values"));
                test.note = Some("a run sets these as vars.<name>".into());
            }
            NodeKind::Template => test.output = Some(json!({ "text": field("template") })),
            NodeKind::Condition => {
                let expression = required(config, "expression")?;
                let result = expr::holds(&expression, ctx)?;
                test.output = Some(json!({ "result": result }));
                test.port = Some(if result { "true" } else { "false" }.into());
            }
            NodeKind::Loop => {
                let items = Loop::parse(config)?.list(ctx)?;
                test.output = Some(match items.first() {
                    Some(first) => json!({ "item": first, "index": 0, "count": items.len() }),
                    None => json!({ "count": 0 }),
                });
                test.port = Some(if items.is_empty() { "done" } else { "each" }.into());
                test.note = Some(format!("a run goes round {} time(s)", items.len()));
            }
            NodeKind::End => test.output = Some(field("output")),
            NodeKind::Http => {
                test.note = Some(
                    "a run sends this request (with an Idempotency-Key); a test does not".into(),
                )
            }
            NodeKind::Email => test.note = Some("a run queues this email; a test does not".into()),
            NodeKind::Booking => {
                test.note = Some("a run books this in the calendar; a test does not".into())
            }
            NodeKind::CancelBooking => {
                test.note = Some("a run cancels this booking; a test does not".into())
            }
            NodeKind::Approval => {
                test.note = Some("a run pauses here until someone approves or rejects".into())
            }
            NodeKind::Wait => test.note = Some("a run pauses here".into()),
            NodeKind::Llm => {
                let spec = ai::LlmStep::parse(config)?;
                test.output = Some(spec.ask(asker, &rendered).await?);
                test.note = Some("the model was asked (its tokens count)".into());
            }
            NodeKind::Knowledge => {
                let spec = ai::KnowledgeStep::parse(config)?;
                let query = spec.render(ctx)?;
                test.output = Some(spec.search(asker, &query).await?);
            }
            NodeKind::Classifier => {
                let spec = ai::ClassifierStep::parse(config)?;
                let input = spec.render(ctx)?;
                let class = spec.classify(asker, &input).await?;
                test.port = Some(class.clone());
                test.output = Some(json!({ "class": class }));
                test.note = Some("the model was asked (its tokens count)".into());
            }
            NodeKind::Agent => {
                test.note = Some(
                    "a run asks the agent in a conversation of its own (it may book or email); \
                     a test does not"
                        .into(),
                )
            }
            NodeKind::Workflow => {
                test.note = Some(
                    "a run starts that workflow with this input and waits for its output; a test does not"
                        .into(),
                )
            }
            NodeKind::Parallel => {
                test.note = Some(
                    "a run starts every branch at once and goes on from the Join when all have arrived"
                        .into(),
                )
            }
            NodeKind::Join => test.output = Some(json!({})),
            NodeKind::Switch => {
                let (value, case) = ai::SwitchStep::parse(config)?.decide(ctx)?;
                test.output = Some(json!({ "value": value, "case": case }));
                test.port = Some(case);
            }
        }
        if !matches!(
            kind,
            NodeKind::Condition | NodeKind::Switch | NodeKind::Loop
        ) {
            test.rendered = Some(rendered);
        }
        Ok::<(), String>(())
    }
    .await;
    test.error = outcome.err();
    test
}

/// Every kind, for [`crate::engine::Graph::build`].
pub fn registry() -> NodeRegistry<StepCx> {
    let mut registry = NodeRegistry::new();
    for kind in NodeKind::ALL {
        let kind = *kind;
        registry.register(kind.as_str(), Arc::new(move |config| build(kind, config)));
    }
    registry
}
