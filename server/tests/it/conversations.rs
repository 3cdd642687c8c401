//! Conversations end to end over REST: offline mode (answers from the documents, routing by
//! rules), the LLM path through a fake OpenAI-compatible server on loopback (routing by LLM,
//! tools, a booking and a refused double booking, transfer between specialists), human
//! handoff and return, SSE event order, an LLM outage, a restart mid-conversation and tenant
//! isolation. Each on SQLite and on PostgreSQL + Redis.

use reqwest::multipart::Form;
use reqwest::Method;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{json, Value};

use app::types::{BusinessHours, UpdateTenant};
use server::tenancy;

use crate::helpers::*;
use crate::knowledge::{create_kb, file, settled, upload};
use server::llm::fake::{text, tool, FakeLlm, CHAT_MODEL, ROUTER_MODEL};

const HANDBOOK: &str = "# Opening hours\n\nOur shop opens Monday to Friday from nine to six. \
On Saturdays the shop opens from ten to one. We are closed on Sundays.\n\n# Parking\n\n\
Parking behind the shop is free for customers.";

pub(crate) async fn spawn(
    backend: Backend,
    fake: Option<&FakeLlm>,
    extra: &[(&str, &str)],
) -> TestApp {
    let owned = fake.map(FakeLlm::config).unwrap_or_default();
    let mut pairs: Vec<(&str, &str)> = vec![("JOB_POLL_MS", "50")];
    pairs.extend(owned.iter().map(|(k, v)| (*k, v.as_str())));
    pairs.extend_from_slice(extra);
    TestApp::spawn_with(backend, &pairs).await
}

/// A knowledge base holding the handbook, ingested.
pub(crate) async fn handbook(app: &TestApp, key: &str) {
    let kb = create_kb(app, key, json!({ "name": "Handbook" })).await;
    let kb = kb["id"].as_str().unwrap();
    let form = Form::new().part("files", file("handbook.md", "text/markdown", HANDBOOK));
    let docs = json(upload(app, key, kb, form).await, 202).await;
    let doc = settled(app, key, kb, docs[0]["id"].as_str().unwrap()).await;
    assert_eq!(doc["status"], "ready", "{doc}");
}

pub(crate) async fn start(app: &TestApp, key: &str) -> String {
    let c = json(
        app.send_json(Method::POST, "/api/v1/conversations", key, &json!({}))
            .await,
        201,
    )
    .await;
    assert_eq!(c["status"], "bot");
    c["id"].as_str().unwrap().to_string()
}

pub(crate) async fn say(app: &TestApp, key: &str, conversation: &str, content: &str) -> Value {
    json(
        app.send_json(
            Method::POST,
            &format!("/api/v1/conversations/{conversation}/messages"),
            key,
            &json!({ "content": content }),
        )
        .await,
        200,
    )
    .await
}

pub(crate) async fn post(app: &TestApp, key: &str, path: &str, body: Value) -> reqwest::Response {
    app.send_json(Method::POST, path, key, &body).await
}

pub(crate) fn route(turn: &Value) -> (String, String) {
    let r = &turn["steps"][0]["detail"]["route"];
    (
        r["agent"].as_str().unwrap_or_default().into(),
        r["by"].as_str().unwrap_or_default().into(),
    )
}

#[tokio::test]
async fn offline_mode_answers_from_documents_routes_by_rules_and_hands_off() {
    for backend in backends().await {
        let app = spawn(backend, None, &[]).await;
        let f = app.tenant("acme").await;
        handbook(&app, &f.key).await;
        let c = start(&app, &f.key).await;

        let turn = say(&app, &f.key, &c, "When does the shop open on Saturdays?").await;
        let reply = turn["reply"]["content"].as_str().unwrap();
        assert!(reply.starts_with("This is an automatic answer"), "{reply}");
        assert!(
            reply.contains("On Saturdays the shop opens from ten to one. [1]"),
            "{reply}"
        );
        assert!(!reply.contains("Parking"), "{reply}");
        assert_eq!(
            turn["reply"]["sources"][0]["document_title"],
            "Opening hours"
        );
        assert_eq!(route(&turn), ("support".into(), "default".into()));
        let nodes: Vec<&str> = turn["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["node"].as_str().unwrap())
            .collect();
        assert_eq!(nodes, ["router", "specialist"]);
        assert!(turn["steps"][1]["detail"]["offline"]
            .as_str()
            .unwrap()
            .contains("no LLM"));
        assert_eq!(
            turn["conversation"]["title"],
            "When does the shop open on Saturdays?"
        );

        // Rules: bad ones are refused with the reason; a good one routes.
        let bad = post(
            &app,
            &f.key,
            "/api/v1/router-rules",
            json!({"name": "x", "agent": "sales", "kind": "regex", "pattern": "(unclosed"}),
        )
        .await;
        let body = problem(bad, 422, "validation_failed").await;
        assert!(body.to_string().contains("regular expression"), "{body}");
        let bad = post(
            &app,
            &f.key,
            "/api/v1/router-rules",
            json!({"name": "x", "agent": "ghost", "kind": "keyword", "pattern": "boo"}),
        )
        .await;
        problem(bad, 422, "validation_failed").await;
        let rule = json(post(&app, &f.key, "/api/v1/router-rules",
            json!({"name": "prices", "agent": "sales", "kind": "keyword", "pattern": "price, how much", "priority": 5})).await, 201).await;
        let turn = say(&app, &f.key, &c, "How much is parking?").await;
        assert_eq!(route(&turn), ("sales".into(), "rule".into()));
        assert_eq!(turn["steps"][0]["detail"]["route"]["rule"], "prices");
        assert_eq!(turn["conversation"]["agent"], "sales");
        // No rule matches: the conversation stays with its specialist.
        let turn = say(&app, &f.key, &c, "And on Sundays?").await;
        assert_eq!(route(&turn), ("sales".into(), "sticky".into()));

        // Emergency words win over every rule; the emergency agent hands over to a person.
        let turn = say(
            &app,
            &f.key,
            &c,
            "How much? There is a gas leak in the shop!",
        )
        .await;
        assert_eq!(route(&turn), ("emergency".into(), "emergency".into()));
        assert!(turn["reply"]["content"].as_str().unwrap().contains("112"));
        assert_eq!(turn["conversation"]["status"], "waiting_human");
        let queue = json(
            app.get("/api/v1/conversations?status=waiting_human", &f.key)
                .await,
            200,
        )
        .await;
        assert_eq!(queue["items"].as_array().unwrap().len(), 1);
        assert_eq!(queue["items"][0]["id"], c.as_str());

        // While a person owns it the bot is silent.
        let turn = say(&app, &f.key, &c, "Hello? Anyone?").await;
        assert!(turn["reply"].is_null(), "{turn}");
        assert!(turn["steps"].as_array().unwrap().is_empty());
        let reply = json(
            post(
                &app,
                &f.key,
                &format!("/api/v1/conversations/{c}/replies"),
                json!({"content": "This is Ana, the fire brigade is on its way."}),
            )
            .await,
            201,
        )
        .await;
        assert_eq!(reply["role"], "operator");
        let conv = json(
            app.get(&format!("/api/v1/conversations/{c}"), &f.key).await,
            200,
        )
        .await;
        assert_eq!(conv["conversation"]["status"], "human");
        let roles: Vec<&str> = conv["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(
            roles,
            [
                "user",
                "assistant",
                "user",
                "assistant",
                "user",
                "assistant",
                "user",
                "assistant",
                "user",
                "operator"
            ]
        );

        // Back to the bot.
        let back = json(
            post(
                &app,
                &f.key,
                &format!("/api/v1/conversations/{c}/hand-back"),
                json!({}),
            )
            .await,
            200,
        )
        .await;
        assert_eq!(back["status"], "bot");
        let turn = say(&app, &f.key, &c, "Is parking free?").await;
        assert!(
            turn["reply"]["content"]
                .as_str()
                .unwrap()
                .contains("free for customers"),
            "{turn}"
        );
        let again = post(
            &app,
            &f.key,
            &format!("/api/v1/conversations/{c}/hand-back"),
            json!({}),
        )
        .await;
        assert_eq!(
            again.status(),
            200,
            "handing back a bot conversation changes nothing"
        );

        // Feedback on an answer; a customer's own message cannot be rated.
        let answer = turn["reply"]["id"].as_str().unwrap();
        let rated = json(
            post(
                &app,
                &f.key,
                &format!("/api/v1/conversations/{c}/messages/{answer}/feedback"),
                json!({"rating": "down", "comment": "too long"}),
            )
            .await,
            200,
        )
        .await;
        assert_eq!(rated["feedback"], "down");
        let own = turn["message"]["id"].as_str().unwrap();
        let bad = post(
            &app,
            &f.key,
            &format!("/api/v1/conversations/{c}/messages/{own}/feedback"),
            json!({"rating": "up"}),
        )
        .await;
        problem(bad, 422, "validation_failed").await;
        let bad = post(
            &app,
            &f.key,
            &format!("/api/v1/conversations/{c}/messages"),
            json!({"content": "  "}),
        )
        .await;
        problem(bad, 422, "validation_failed").await;

        // The step trace is kept per customer message.
        let steps = json(
            app.get(
                &format!("/api/v1/conversations/{c}/messages/{own}/steps"),
                &f.key,
            )
            .await,
            200,
        )
        .await;
        assert_eq!(steps.as_array().unwrap().len(), 2);
        let rule_id = rule["id"].as_str().unwrap();
        let gone = app
            .client
            .delete(app.url(&format!("/api/v1/router-rules/{rule_id}")))
            .bearer_auth(&f.key)
            .send()
            .await
            .unwrap();
        assert_eq!(gone.status(), 204);
    }
}

/// The tenant's calendar: Lisbon time, open every day 08:00–20:00.
pub(crate) async fn open_every_day(app: &TestApp, f: &Fixture) {
    app.services
        .tenancy
        .update_tenant(
            &tenancy::cli_access(f.tenant_id),
            UpdateTenant {
                timezone: Some("Europe/Lisbon".into()),
                business_hours: Some(
                    (0..7)
                        .map(|weekday| BusinessHours {
                            weekday,
                            open: "08:00".into(),
                            close: "20:00".into(),
                        })
                        .collect(),
                ),
                ..Default::default()
            },
        )
        .await
        .unwrap();
}

pub(crate) fn tomorrow_at(hour: u32) -> String {
    let lisbon: chrono_tz::Tz = "Europe/Lisbon".parse().unwrap();
    let day = chrono::Utc::now().with_timezone(&lisbon).date_naive() + chrono::Duration::days(1);
    format!("{day} {hour:02}:00")
}

#[tokio::test]
async fn the_llm_routes_transfers_books_and_refuses_a_double_booking() {
    for backend in backends().await {
        let fake = FakeLlm::start().await.unwrap();
        let app = spawn(backend, Some(&fake), &[]).await;
        let f = app.tenant("acme").await;
        open_every_day(&app, &f).await;
        let start_at = tomorrow_at(10);
        let booking = json!({"start": start_at, "name": "Rui", "email": "rui@example.com"});

        // Sales gets the message, passes it to scheduling, which books.
        fake.route(text("sales"));
        fake.chat(tool(
            "transfer_to_agent",
            json!({"agent": "scheduling", "reason": "wants a visit"}),
        ));
        fake.chat(tool("create_booking", booking.clone()));
        fake.chat(text("You are booked for tomorrow at 10:00."));
        let c = start(&app, &f.key).await;
        let turn = say(&app, &f.key, &c, "I'd like to come by tomorrow at ten").await;
        assert_eq!(route(&turn), ("sales".into(), "llm".into()));
        let nodes: Vec<&str> = turn["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["node"].as_str().unwrap())
            .collect();
        assert_eq!(nodes, ["router", "specialist", "transfer", "specialist"]);
        let call = &turn["steps"][3]["detail"]["tool_calls"][0];
        assert_eq!(call["name"], "create_booking");
        assert_eq!(call["ok"], true, "{call}");
        assert_eq!(
            turn["reply"]["content"],
            "You are booked for tomorrow at 10:00."
        );
        assert_eq!(turn["reply"]["agent"], "scheduling");
        assert_eq!(turn["conversation"]["agent"], "scheduling");
        assert_eq!(
            server::store::bookings::Entity::find()
                .count(&app.db)
                .await
                .unwrap(),
            1
        );
        // The specialists saw their own prompt, with the tenant's variables filled in.
        let chats = fake.requests_for(CHAT_MODEL);
        assert_eq!(chats.len(), 3);
        let system = chats[1]["messages"][0]["content"].as_str().unwrap();
        assert!(
            system.contains("scheduling agent")
                && system.contains("acme Inc")
                && system.contains("Europe/Lisbon"),
            "{system}"
        );
        assert!(chats[1]["tools"].to_string().contains("create_booking"));
        assert!(
            !chats[0]["tools"].to_string().contains("create_booking"),
            "sales cannot book"
        );
        // Tokens and cost are counted per turn and per conversation (1 $/2 $ per million).
        let usage = &turn["reply"]["usage"];
        assert_eq!(usage["llm_calls"], 4);
        assert!(usage["prompt_tokens"].as_u64().unwrap() > 0);
        assert!(usage["cost_usd"].as_f64().unwrap() > 0.0);
        assert_eq!(
            turn["conversation"]["usage"]["prompt_tokens"],
            usage["prompt_tokens"]
        );

        // Another customer wants the same time: refused, and the model is told so.
        fake.route(text("scheduling"));
        fake.chat(tool("create_booking", booking.clone()));
        fake.chat(text("Sorry, 10:00 is taken. How about 11:00?"));
        let other = start(&app, &f.key).await;
        let turn = say(&app, &f.key, &other, "Book me tomorrow at ten please").await;
        let call = &turn["steps"][1]["detail"]["tool_calls"][0];
        assert_eq!(call["ok"], false);
        assert!(
            call["result"].as_str().unwrap().contains("already booked"),
            "{call}"
        );
        let last = fake.requests_for(CHAT_MODEL).pop().unwrap();
        let tool_message = last["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["role"] == "tool")
            .unwrap()
            .clone();
        assert!(tool_message["content"]
            .as_str()
            .unwrap()
            .contains("already booked"));
        assert_eq!(
            server::store::bookings::Entity::find()
                .count(&app.db)
                .await
                .unwrap(),
            1
        );

        // Outside business hours is refused too.
        fake.route(text("scheduling"));
        fake.chat(tool(
            "create_booking",
            json!({"start": tomorrow_at(21), "name": "Rui", "email": "rui@example.com"}),
        ));
        fake.chat(text("We close at 20:00."));
        let turn = say(&app, &f.key, &other, "Or at nine in the evening?").await;
        let call = &turn["steps"][1]["detail"]["tool_calls"][0];
        assert!(
            call["result"]
                .as_str()
                .unwrap()
                .contains("outside business hours"),
            "{call}"
        );

        // The LLM hands over to a person.
        fake.route(text("support"));
        fake.chat(tool(
            "handoff_to_human",
            json!({"reason": "asks for the manager"}),
        ));
        let turn = say(&app, &f.key, &other, "I want to talk to the manager").await;
        assert_eq!(turn["conversation"]["status"], "waiting_human");
        assert!(turn["reply"]["content"]
            .as_str()
            .unwrap()
            .contains("member of our team"));
    }
}

/// `(event, data)` pairs of a Server-Sent Events body.
pub(crate) fn sse(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let mut event = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = Some(e.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).ok();
                }
            }
            Some((event?, data?))
        })
        .collect()
}

#[tokio::test]
async fn streamed_answers_send_events_in_order() {
    for backend in backends().await {
        let fake = FakeLlm::start().await.unwrap();
        let app = spawn(backend, Some(&fake), &[]).await;
        let f = app.tenant("acme").await;
        handbook(&app, &f.key).await;
        fake.route(text("support"));
        fake.chat(tool(
            "knowledge_search",
            json!({"query": "saturday opening hours"}),
        ));
        fake.chat(text("We open from ten to one on Saturdays [1]."));
        let c = start(&app, &f.key).await;
        let response = app
            .client
            .post(app.url(&format!("/api/v1/conversations/{c}/messages?stream=true")))
            .bearer_auth(&f.key)
            .json(&json!({"content": "Are you open on Saturday?"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        let events = sse(&response.text().await.unwrap());
        let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
        let deltas = names.iter().filter(|n| **n == "message.delta").count();
        assert!(deltas >= 5, "the answer arrives word by word: {names:?}");
        let mut expected = vec!["agent.handoff", "tool.call", "tool.result"];
        expected.extend(std::iter::repeat_n("message.delta", deltas));
        expected.extend(["sources", "message.done"]);
        assert_eq!(names, expected);
        let text: String = events
            .iter()
            .filter(|(e, _)| e == "message.delta")
            .map(|(_, d)| d["text"].as_str().unwrap())
            .collect();
        assert_eq!(text, "We open from ten to one on Saturdays [1].");
        assert_eq!(events[1].1["arguments"]["query"], "saturday opening hours");
        assert!(events[2].1["result"]
            .as_str()
            .unwrap()
            .contains("[1] Opening hours"));
        let done = &events.last().unwrap().1;
        assert_eq!(done["agent"], "support");
        assert_eq!(done["usage"]["llm_calls"], 3);
        // The streamed answer was saved like any other.
        let conv = json(
            app.get(&format!("/api/v1/conversations/{c}"), &f.key).await,
            200,
        )
        .await;
        assert_eq!(
            conv["messages"][1]["content"],
            "We open from ten to one on Saturdays [1]."
        );
        assert_eq!(conv["messages"][1]["id"], done["message_id"]);

        // Errors before the first event are ordinary problem responses.
        let missing = uuid::Uuid::now_v7();
        let r = app
            .client
            .post(app.url(&format!("/api/v1/conversations/{missing}/messages")))
            .bearer_auth(&f.key)
            .json(&json!({"content": "hi", "stream": true}))
            .send()
            .await
            .unwrap();
        problem(r, 404, "not_found").await;
    }
}

#[tokio::test]
async fn an_llm_outage_opens_the_circuit_and_customers_get_offline_answers() {
    for backend in backends().await {
        let fake = FakeLlm::start().await.unwrap();
        let app = spawn(
            backend,
            Some(&fake),
            &[("CIRCUIT_FAILURES", "2"), ("CIRCUIT_OPEN_SECS", "60")],
        )
        .await;
        let f = app.tenant("acme").await;
        handbook(&app, &f.key).await;
        fake.set_down(Some(503));
        let c = start(&app, &f.key).await;
        let mut reasons = Vec::new();
        for _ in 0..4 {
            let turn = say(&app, &f.key, &c, "Is parking free for customers?").await;
            let reply = turn["reply"]["content"].as_str().unwrap();
            assert!(reply.contains("free for customers"), "{reply}");
            reasons.push(
                turn["steps"][1]["detail"]["offline"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        // Router + specialist failed once each; then the circuit opened and nobody called.
        assert_eq!(fake.requests().len(), 2, "calls after the circuit opened");
        assert!(reasons[0].contains("failed"), "{reasons:?}");
        assert!(reasons[3].contains("circuit open"), "{reasons:?}");
    }
}

#[tokio::test]
async fn a_conversation_continues_after_a_restart() {
    for backend in backends().await {
        let fake = FakeLlm::start().await.unwrap();
        let first = spawn(backend, Some(&fake), &[]).await;
        let f = first.tenant("acme").await;
        fake.route(text("sales"));
        fake.chat(text("Our basic plan costs 10 euros."));
        let c = start(&first, &f.key).await;
        say(&first, &f.key, &c, "What do your plans cost?").await;

        // A new process on the same database: the state comes from the checkpoint.
        let config = fake.config();
        let mut pairs: Vec<(&str, &str)> = config.iter().map(|(k, v)| (*k, v.as_str())).collect();
        pairs.push(("JOB_POLL_MS", "50"));
        let second =
            TestApp::spawn_on(backend, scratch_dir(), first.database_url.clone(), &pairs).await;
        fake.route(text("no idea"));
        fake.chat(text("The team plan is 45 euros."));
        let turn = say(&second, &f.key, &c, "And for a team?").await;
        assert_eq!(route(&turn), ("sales".into(), "sticky".into()));
        let last = fake.requests_for(CHAT_MODEL).pop().unwrap();
        let contents: Vec<&str> = last["messages"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1)
            .map(|m| m["content"].as_str().unwrap())
            .collect();
        assert_eq!(
            contents,
            [
                "What do your plans cost?",
                "Our basic plan costs 10 euros.",
                "And for a team?"
            ]
        );
        assert_eq!(turn["conversation"]["turns"], 2);
        assert_eq!(fake.requests_for(ROUTER_MODEL).len(), 2);
    }
}

#[tokio::test]
async fn tenants_never_see_each_others_conversations() {
    for backend in backends().await {
        let app = spawn(backend, None, &[]).await;
        let a = app.tenant("alpha").await;
        let b = app.tenant("beta").await;
        let c = start(&app, &a.key).await;
        let turn = say(&app, &a.key, &c, "hello").await;
        let m = turn["reply"]["id"].as_str().unwrap();
        let own = turn["message"]["id"].as_str().unwrap();
        for path in [
            format!("/api/v1/conversations/{c}"),
            format!("/api/v1/conversations/{c}/messages/{own}/steps"),
        ] {
            problem(app.get(&path, &b.key).await, 404, "not_found").await;
        }
        for (path, body) in [
            (
                format!("/api/v1/conversations/{c}/messages"),
                json!({"content": "hi"}),
            ),
            (
                format!("/api/v1/conversations/{c}/messages/{m}/feedback"),
                json!({"rating": "up"}),
            ),
            (format!("/api/v1/conversations/{c}/take-over"), json!({})),
            (format!("/api/v1/conversations/{c}/hand-back"), json!({})),
            (
                format!("/api/v1/conversations/{c}/replies"),
                json!({"content": "hi"}),
            ),
        ] {
            problem(post(&app, &b.key, &path, body).await, 404, "not_found").await;
        }
        let list = json(app.get("/api/v1/conversations", &b.key).await, 200).await;
        assert!(list["items"].as_array().unwrap().is_empty());
        let rule = json(
            post(
                &app,
                &a.key,
                "/api/v1/router-rules",
                json!({"name": "r", "agent": "sales", "kind": "keyword", "pattern": "buy"}),
            )
            .await,
            201,
        )
        .await;
        let rules = json(app.get("/api/v1/router-rules", &b.key).await, 200).await;
        assert!(rules.as_array().unwrap().is_empty());
        let id = rule["id"].as_str().unwrap();
        let r = app
            .client
            .delete(app.url(&format!("/api/v1/router-rules/{id}")))
            .bearer_auth(&b.key)
            .send()
            .await
            .unwrap();
        problem(r, 404, "not_found").await;
        // Beta's message with the same words is not routed by alpha's rule.
        let cb = start(&app, &b.key).await;
        let turn = say(&app, &b.key, &cb, "I want to buy").await;
        assert_eq!(route(&turn).1, "default");
        // Pagination: alpha's list pages by cursor.
        for _ in 0..2 {
            start(&app, &a.key).await;
        }
        let page = json(app.get("/api/v1/conversations?limit=2", &a.key).await, 200).await;
        assert_eq!(page["items"].as_array().unwrap().len(), 2);
        let cursor = page["next_cursor"].as_str().unwrap();
        let rest = json(
            app.get(
                &format!("/api/v1/conversations?limit=2&cursor={cursor}"),
                &a.key,
            )
            .await,
            200,
        )
        .await;
        assert_eq!(rest["items"].as_array().unwrap().len(), 1);
        assert_eq!(rest["items"][0]["id"], c.as_str());
    }
}

#[tokio::test]
async fn openai_clients_talk_to_the_agents_through_chat_completions() {
    use async_openai::config::OpenAIConfig;
    use async_openai::types::chat::{
        ChatCompletionRequestMessage, CreateChatCompletionRequestArgs,
    };
    use futures::StreamExt;

    for backend in backends().await {
        let fake = FakeLlm::start().await.unwrap();
        let app = spawn(backend, Some(&fake), &[]).await;
        let f = app.tenant("acme").await;
        let client = async_openai::Client::with_config(
            OpenAIConfig::new()
                .with_api_base(app.url("/v1"))
                .with_api_key(f.key.clone()),
        );
        let messages: Vec<ChatCompletionRequestMessage> = vec![
            ChatCompletionRequestMessage::System("be nice".into()),
            ChatCompletionRequestMessage::User("What do your plans cost?".into()),
            ChatCompletionRequestMessage::Assistant("The basic plan is 10 euros.".into()),
            ChatCompletionRequestMessage::User("And the team plan?".into()),
        ];
        fake.route(text("sales"));
        fake.chat(text("The team plan is 45 euros."));
        let request = CreateChatCompletionRequestArgs::default()
            .model("my-agents")
            .messages(messages.clone())
            .build()
            .unwrap();
        let answer = client.chat().create(request).await.unwrap();
        assert_eq!(
            answer.choices[0].message.content.as_deref(),
            Some("The team plan is 45 euros.")
        );
        assert_eq!(answer.model, "my-agents");
        assert!(answer.usage.unwrap().prompt_tokens > 0);
        // The earlier messages reached the specialist as history.
        let sent = fake.requests_for(CHAT_MODEL).pop().unwrap();
        let contents: Vec<&str> = sent["messages"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1)
            .map(|m| m["content"].as_str().unwrap())
            .collect();
        assert_eq!(
            contents,
            [
                "What do your plans cost?",
                "The basic plan is 10 euros.",
                "And the team plan?"
            ]
        );
        let list = json(
            app.get("/api/v1/conversations?channel=openai", &f.key)
                .await,
            200,
        )
        .await;
        assert_eq!(list["items"][0]["turns"], 1);

        // Streaming, through the SDK's own SSE parser.
        fake.route(text("sales"));
        fake.chat(text("Streaming works fine here."));
        let request = CreateChatCompletionRequestArgs::default()
            .model("my-agents")
            .messages(messages)
            .build()
            .unwrap();
        let mut stream = client.chat().create_stream(request).await.unwrap();
        let mut text_seen = String::new();
        let mut finished = false;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap();
            for choice in chunk.choices {
                text_seen.push_str(choice.delta.content.as_deref().unwrap_or_default());
                finished |= choice.finish_reason.is_some();
            }
        }
        assert_eq!(text_seen, "Streaming works fine here.");
        assert!(finished);

        // A bad key is refused the OpenAI way round: 401.
        let r = app
            .client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth("apk_nope")
            .json(&json!({"model": "x", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let r = post(
            &app,
            &f.key,
            "/v1/chat/completions",
            json!({"messages": [{"role": "assistant", "content": "hi"}]}),
        )
        .await;
        problem(r, 422, "validation_failed").await;
    }
}

#[tokio::test]
async fn prompts_are_versioned_diffed_restored_and_used_by_the_agents() {
    for backend in backends().await {
        let fake = FakeLlm::start().await.unwrap();
        let app = spawn(backend, Some(&fake), &[]).await;
        let f = app.tenant("acme").await;
        let other = app.tenant("other").await;
        let path = "/api/v1/agents/support/prompt";
        let p = json(app.get(path, &f.key).await, 200).await;
        assert_eq!(p["current"]["version"], 0);
        assert_eq!(p["history"].as_array().unwrap().len(), 1);
        assert!(p["variables"].to_string().contains("{{company}}"));
        let default_text = p["current"]["text"].clone();

        for (text, note) in [
            ("You help customers of {{company}}.\nBe brief.", "first"),
            ("You help customers of {{company}}.\nBe warm.", "warmer"),
        ] {
            json(
                app.send_json(
                    Method::PUT,
                    path,
                    &f.key,
                    &json!({"text": text, "note": note}),
                )
                .await,
                200,
            )
            .await;
        }
        let p = json(app.get(path, &f.key).await, 200).await;
        assert_eq!(p["current"]["version"], 2);
        assert_eq!(p["history"][0]["note"], "warmer");
        assert_eq!(p["history"].as_array().unwrap().len(), 3);
        assert!(p["history"][0]["created_by"]
            .as_str()
            .unwrap()
            .starts_with("key:"));
        let d = json(
            app.get(&format!("{path}/diff?from=1&to=2"), &f.key).await,
            200,
        )
        .await;
        assert!(
            d["diff"]
                .as_str()
                .unwrap()
                .contains("-Be brief.\n+Be warm.\n"),
            "{d}"
        );
        problem(
            app.get(&format!("{path}/diff?from=1&to=9"), &f.key).await,
            422,
            "validation_failed",
        )
        .await;
        problem(
            app.get("/api/v1/agents/ghost/prompt", &f.key).await,
            404,
            "not_found",
        )
        .await;
        let blank = app
            .send_json(Method::PUT, path, &f.key, &json!({"text": "   "}))
            .await;
        problem(blank, 422, "validation_failed").await;

        // The specialist answers with the tenant's newest version, variables filled in.
        fake.route(text("support"));
        fake.chat(text("Hi!"));
        let c = start(&app, &f.key).await;
        say(&app, &f.key, &c, "hello").await;
        let sent = fake.requests_for(CHAT_MODEL).pop().unwrap();
        assert_eq!(
            sent["messages"][0]["content"],
            "You help customers of acme Inc.\nBe warm."
        );

        // Another tenant still has the default; restoring it here is one more version.
        let theirs = json(app.get(path, &other.key).await, 200).await;
        assert_eq!(theirs["current"]["version"], 0);
        let restored = json(
            app.send_json(
                Method::POST,
                &format!("{path}/restore-default"),
                &f.key,
                &json!({}),
            )
            .await,
            200,
        )
        .await;
        assert_eq!(restored["current"]["version"], 3);
        assert_eq!(restored["current"]["text"], default_text);
        assert_eq!(restored["history"].as_array().unwrap().len(), 4);
    }
}
