//! The tenant's agents over REST: its own specialists (routed to by rule and by the LLM,
//! searching only their knowledge bases), changes to built-in ones, validation and tenant
//! isolation; one turn at a time per conversation; usage and cost summed per tenant.
//! Each on SQLite and on PostgreSQL + Redis.

use reqwest::multipart::Form;
use reqwest::Method;
use serde_json::{json, Value};

use crate::conversations::{post, route, say, spawn, start};
use crate::helpers::*;
use crate::knowledge::{create_kb, file, settled, upload};
use server::llm::fake::{text, tool, FakeLlm, CHAT_MODEL, ROUTER_MODEL};

/// A knowledge base holding one ingested Markdown document; returns its id.
async fn kb_with(app: &TestApp, key: &str, name: &str, markdown: &str) -> String {
    let kb = create_kb(app, key, json!({ "name": name })).await;
    let kb = kb["id"].as_str().unwrap().to_string();
    let form = Form::new().part(
        "files",
        file(&format!("{name}.md"), "text/markdown", markdown.to_string()),
    );
    let docs = json(upload(app, key, &kb, form).await, 202).await;
    let doc = settled(app, key, &kb, docs[0]["id"].as_str().unwrap()).await;
    assert_eq!(doc["status"], "ready", "{doc}");
    kb
}

async fn agents(app: &TestApp, key: &str) -> Value {
    json(app.get("/api/v1/agents", key).await, 200).await
}

fn names(catalogue: &Value) -> Vec<String> {
    catalogue["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn tenants_define_agents_that_the_router_and_their_knowledge_serve() {
    for backend in backends().await {
        let fake = FakeLlm::start().await.unwrap();
        let app = spawn(backend, Some(&fake), &[]).await;
        let f = app.tenant("acme").await;
        let other = app.tenant("other").await;
        let handbook = kb_with(
            &app,
            &f.key,
            "handbook",
            "# Opening hours\n\nThe shop opens Monday to Friday from nine to six.",
        )
        .await;
        let billing_kb = kb_with(
            &app,
            &f.key,
            "billing",
            "# Invoices\n\nInvoices are sent on the first day of each month by email.",
        )
        .await;
        let foreign_kb = create_kb(&app, &other.key, json!({ "name": "theirs" })).await;

        let catalogue = agents(&app, &f.key).await;
        assert_eq!(
            names(&catalogue),
            ["sales", "support", "scheduling", "emergency"]
        );
        let tools: Vec<&str> = catalogue["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert!(tools.contains(&"knowledge_search"), "{tools:?}");

        // Bad definitions are refused with the failing field; nothing is stored.
        let billing = json!({
            "name": "billing",
            "description": "invoices, refunds, payment problems",
            "prompt": "You are the billing agent of {{company}}. Use knowledge_search.",
            "tools": ["knowledge_search", "handoff_to_human"],
            "knowledge_base_ids": [billing_kb],
        });
        for (change, field) in [
            (json!({"name": "sales"}), "name"),
            (json!({"name": "Billing!"}), "name"),
            (json!({"tools": ["rm_rf"]}), "tools"),
            (json!({"description": ""}), "description"),
            (
                json!({"knowledge_base_ids": [foreign_kb["id"]]}),
                "knowledge_base_ids",
            ),
        ] {
            let mut body = billing.clone();
            for (k, v) in change.as_object().unwrap() {
                body[k] = v.clone();
            }
            let refused = problem(
                post(&app, &f.key, "/api/v1/agents", body).await,
                422,
                "validation_failed",
            )
            .await;
            assert!(refused.to_string().contains(field), "{field}: {refused}");
        }
        assert_eq!(names(&agents(&app, &f.key).await).len(), 4);

        let created = json(
            post(&app, &f.key, "/api/v1/agents", billing.clone()).await,
            201,
        )
        .await;
        assert_eq!(created["built_in"], false);
        assert_eq!(created["knowledge_base_ids"], json!([billing_kb]));
        problem(
            post(&app, &f.key, "/api/v1/agents", billing.clone()).await,
            409,
            "conflict",
        )
        .await;
        // Its prompt is version 0 of its history.
        let prompt = json(app.get("/api/v1/agents/billing/prompt", &f.key).await, 200).await;
        assert_eq!(prompt["current"]["version"], 0);
        assert!(prompt["current"]["text"]
            .as_str()
            .unwrap()
            .starts_with("You are the billing agent"));

        // The LLM router reads its description; it searches its own knowledge base only.
        fake.route(text("billing"));
        fake.chat(tool(
            "knowledge_search",
            json!({"query": "when does the shop open and when are invoices sent"}),
        ));
        fake.chat(text("Invoices go out on the first of the month [1]."));
        let c = start(&app, &f.key).await;
        let turn = say(&app, &f.key, &c, "When do I get my invoice?").await;
        assert_eq!(route(&turn), ("billing".into(), "llm".into()));
        let router_prompt = fake.requests_for(ROUTER_MODEL)[0]["messages"][0]["content"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            router_prompt.contains("- billing: invoices, refunds, payment problems"),
            "{router_prompt}"
        );
        let sources = turn["reply"]["sources"].as_array().unwrap();
        assert!(!sources.is_empty(), "{turn}");
        assert!(
            sources.iter().all(|s| s["knowledge_base_id"] == billing_kb),
            "{sources:?}"
        );
        let chat = fake.requests_for(CHAT_MODEL);
        assert!(chat[0]["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("billing agent of acme"));

        // Router rules may send to it; while one does, it cannot be deleted.
        let rule = json(
            post(&app, &f.key, "/api/v1/router-rules",
                json!({"name": "invoices", "agent": "billing", "kind": "keyword", "pattern": "invoice"})).await,
            201,
        )
        .await;
        let refused = problem(
            app.send_json(Method::DELETE, "/api/v1/agents/billing", &f.key, &json!({}))
                .await,
            409,
            "conflict",
        )
        .await;
        assert!(refused.to_string().contains("invoices"), "{refused}");

        // A built-in agent limited to one knowledge base, then reset.
        let support = json(
            app.send_json(
                Method::PATCH,
                "/api/v1/agents/support",
                &f.key,
                &json!({"knowledge_base_ids": [handbook]}),
            )
            .await,
            200,
        )
        .await;
        assert_eq!(support["customised"], true);
        assert_eq!(support["knowledge_base_ids"], json!([handbook]));
        assert!(support["tools"]
            .as_array()
            .unwrap()
            .contains(&json!("knowledge_search")));

        // The other tenant sees none of it and can change none of it.
        assert_eq!(names(&agents(&app, &other.key).await).len(), 4);
        let other_support = &agents(&app, &other.key).await["agents"][1];
        assert_eq!(other_support["customised"], false);
        problem(
            app.send_json(
                Method::PATCH,
                "/api/v1/agents/billing",
                &other.key,
                &json!({"description": "mine now"}),
            )
            .await,
            404,
            "not_found",
        )
        .await;
        problem(
            app.get("/api/v1/agents/billing/prompt", &other.key).await,
            404,
            "not_found",
        )
        .await;
        problem(
            app.send_json(
                Method::DELETE,
                "/api/v1/agents/billing",
                &other.key,
                &json!({}),
            )
            .await,
            404,
            "not_found",
        )
        .await;
        problem(
            post(
                &app,
                &other.key,
                "/api/v1/router-rules",
                json!({"name": "x", "agent": "billing", "kind": "keyword", "pattern": "x"}),
            )
            .await,
            422,
            "validation_failed",
        )
        .await;

        let reset = app
            .send_json(Method::DELETE, "/api/v1/agents/support", &f.key, &json!({}))
            .await;
        assert_eq!(reset.status(), 204);
        let rule_path = format!("/api/v1/router-rules/{}", rule["id"].as_str().unwrap());
        let gone = app
            .send_json(Method::DELETE, &rule_path, &f.key, &json!({}))
            .await;
        assert_eq!(gone.status(), 204);
        let deleted = app
            .send_json(Method::DELETE, "/api/v1/agents/billing", &f.key, &json!({}))
            .await;
        assert_eq!(deleted.status(), 204);
        let after = agents(&app, &f.key).await;
        assert_eq!(
            names(&after),
            ["sales", "support", "scheduling", "emergency"]
        );
        assert_eq!(after["agents"][1]["customised"], false);
        problem(
            app.get("/api/v1/agents/billing/prompt", &f.key).await,
            404,
            "not_found",
        )
        .await;
    }
}

#[tokio::test]
async fn one_turn_at_a_time_per_conversation_and_usage_per_tenant() {
    for backend in backends().await {
        let fake = FakeLlm::start().await.unwrap();
        let app = spawn(backend, Some(&fake), &[]).await;
        let f = app.tenant("acme").await;
        let other = app.tenant("other").await;
        fake.set_delay(std::time::Duration::from_millis(300));
        for _ in 0..2 {
            fake.route(text("support"));
        }
        fake.chat(text("First answer."));
        fake.chat(text("Second answer."));
        let c = start(&app, &f.key).await;

        // Two messages at once: the second turn waits for the first and sees its answer.
        let (a, b) = tokio::join!(
            say(&app, &f.key, &c, "first question"),
            say(&app, &f.key, &c, "second question")
        );
        assert!(a["reply"]["content"].is_string(), "{a}");
        assert!(b["reply"]["content"].is_string(), "{b}");
        let chat = fake.requests_for(CHAT_MODEL);
        assert_eq!(chat.len(), 2);
        let seen: Vec<usize> = chat
            .iter()
            .map(|r| r["messages"].as_array().unwrap().len())
            .collect();
        // system + question; system + question, answer, question.
        assert!(
            seen == [2, 4],
            "the later turn must see the earlier one: {seen:?}"
        );
        let detail = json(
            app.get(&format!("/api/v1/conversations/{c}"), &f.key).await,
            200,
        )
        .await;
        assert_eq!(detail["conversation"]["turns"], 2);
        assert_eq!(detail["messages"].as_array().unwrap().len(), 4);

        // Usage of the month: this conversation's four LLM calls, priced.
        let usage = json(app.get("/api/v1/usage", &f.key).await, 200).await;
        assert_eq!(usage["conversations"], 1, "{usage}");
        assert_eq!(usage["turns"], 2, "{usage}");
        assert_eq!(usage["llm_calls"], 4, "{usage}");
        assert_eq!(detail["conversation"]["usage"]["llm_calls"], 4);
        let prompt_tokens = usage["prompt_tokens"].as_u64().unwrap();
        assert!(prompt_tokens > 0, "{usage}");
        let cost = usage["cost_usd"].as_f64().unwrap();
        let expected = (prompt_tokens as f64 + 2.0 * usage["completion_tokens"].as_f64().unwrap())
            / 1_000_000.0;
        assert!((cost - expected).abs() < 1e-5, "{cost} vs {expected}");
        let theirs = json(app.get("/api/v1/usage", &other.key).await, 200).await;
        assert_eq!(theirs["conversations"], 0, "{theirs}");
        assert_eq!(theirs["prompt_tokens"], 0, "{theirs}");
        let before = json(
            app.get("/api/v1/usage?until=2020-01-01T00:00:00Z", &f.key)
                .await,
            422,
        )
        .await;
        assert!(before.to_string().contains("since"), "{before}");
        let old = json(
            app.get(
                "/api/v1/usage?since=2020-01-01T00:00:00Z&until=2020-02-01T00:00:00Z",
                &f.key,
            )
            .await,
            200,
        )
        .await;
        assert_eq!(old["conversations"], 0, "{old}");
    }
}
