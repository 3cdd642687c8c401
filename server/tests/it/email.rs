//! The `send_email` tool end to end: the fake LLM calls it, the `email.send` job delivers
//! through lettre to a fake SMTP server on loopback; invalid input is a tool error that queues
//! nothing; a permanent rejection ends the job at once, a transient one is retried; without
//! `SMTP_URL` the tool is not offered. Each on SQLite and on PostgreSQL + Redis.

use std::time::Duration;

use reqwest::Method;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{json, Value};
use uuid::Uuid;

use server::jobs::{enqueue, NewJob};
use server::llm::fake::{text, tool, FakeLlm, Reply, CHAT_MODEL};
use server::store::{audit_log, jobs as job_rows};

use crate::fake_smtp::{FakeSmtp, Step};
use crate::helpers::*;

const KIND: &str = "email.send";

pub(crate) async fn spawn(backend: Backend, fake: &FakeLlm, smtp: Option<&FakeSmtp>) -> TestApp {
    let owned = fake.config();
    let url = smtp.map(FakeSmtp::url);
    let mut pairs: Vec<(&str, &str)> = vec![
        ("JOB_POLL_MS", "50"),
        ("JOB_BACKOFF_BASE_SECS", "0"),
        ("SMTP_FROM", "Acme Desk <desk@acme.test>"),
    ];
    pairs.extend(owned.iter().map(|(k, v)| (*k, v.as_str())));
    if let Some(url) = &url {
        pairs.push(("SMTP_URL", url.as_str()));
    }
    TestApp::spawn_with(backend, &pairs).await
}

/// A new conversation and one customer message; returns the turn.
pub(crate) async fn converse(app: &TestApp, key: &str, content: &str) -> Value {
    let c = json(
        app.send_json(Method::POST, "/api/v1/conversations", key, &json!({}))
            .await,
        201,
    )
    .await;
    let c = c["id"].as_str().unwrap();
    json(
        app.send_json(
            Method::POST,
            &format!("/api/v1/conversations/{c}/messages"),
            key,
            &json!({ "content": content }),
        )
        .await,
        200,
    )
    .await
}

pub(crate) async fn email_jobs(app: &TestApp) -> Vec<job_rows::Model> {
    job_rows::Entity::find()
        .filter(job_rows::Column::Kind.eq(KIND))
        .all(&app.db)
        .await
        .unwrap()
}

/// The job once it left the queue for good (succeeded, or dead).
pub(crate) async fn finished(app: &TestApp, id: Uuid) -> job_rows::Model {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let job = job_rows::Entity::find_by_id(id)
            .one(&app.db)
            .await
            .unwrap()
            .unwrap();
        if job.state == "succeeded" || job.state == "dead" {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} is still {} after {} attempts: {:?}",
            job.state,
            job.attempts,
            job.last_error
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sent_audits(app: &TestApp, tenant: Uuid) -> Vec<audit_log::Model> {
    audit_log::Entity::find()
        .filter(audit_log::Column::TenantId.eq(tenant))
        .filter(audit_log::Column::Action.eq("email.sent"))
        .all(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_specialist_emails_the_customer_through_smtp() {
    for backend in backends().await {
        let smtp = FakeSmtp::start().await;
        let fake = FakeLlm::start().await.unwrap();
        let app = spawn(backend, &fake, Some(&smtp)).await;
        let f = app.tenant("acme").await;
        let body = "Hello Rui,\n\nas promised: we open at nine.\n.\nSee you soon!";
        fake.route(text("support"));
        fake.chat(tool(
            "send_email",
            json!({"to": "rui@example.com", "subject": "Your summary", "body": body}),
        ));
        fake.chat(text("I have emailed you a summary."));
        let turn = converse(&app, &f.key, "Please email me a summary: rui@example.com").await;

        let call = &turn["steps"][1]["detail"]["tool_calls"][0];
        assert_eq!(call["name"], "send_email");
        assert_eq!(call["ok"], true, "{call}");
        let result: Value = serde_json::from_str(call["result"].as_str().unwrap()).unwrap();
        assert_eq!(result["queued"], true, "{result}");
        let job_id: Uuid = result["job_id"].as_str().unwrap().parse().unwrap();
        assert_eq!(turn["reply"]["content"], "I have emailed you a summary.");
        // The tool was offered, with its schema.
        let chats = fake.requests_for(CHAT_MODEL);
        assert!(chats[0]["tools"].to_string().contains("send_email"));

        let received = smtp.wait_for(1, Duration::from_secs(20)).await;
        assert_eq!(received.len(), 1);
        let message = &received[0];
        assert_eq!(message.mail_from, "desk@acme.test");
        assert_eq!(message.rcpt_to, ["rui@example.com"]);
        assert_eq!(message.header("To").unwrap(), "rui@example.com");
        let from = message.header("From").unwrap();
        assert!(
            from.contains("Acme Desk") && from.ends_with("<desk@acme.test>"),
            "{from}"
        );
        assert_eq!(message.header("Subject").unwrap(), "Your summary");
        assert_eq!(
            message.header("Message-ID").unwrap(),
            format!("<{job_id}@acme.test>")
        );
        // Line endings are CRLF on the wire; a line of one dot survives dot-stuffing.
        assert_eq!(message.body(), body.replace('\n', "\r\n"));

        let job = finished(&app, job_id).await;
        assert_eq!(job.state, "succeeded", "{:?}", job.last_error);
        assert_eq!(job.tenant_id, Some(f.tenant_id));
        assert_eq!(job.attempts, 1);
        let conversation = turn["conversation"]["id"].as_str().unwrap();
        assert_eq!(job.payload["conversation_id"], conversation);
        let audits = sent_audits(&app, f.tenant_id).await;
        assert_eq!(audits.len(), 1);
        assert_eq!(audits[0].target, job_id.to_string());
        let details = audits[0].details.clone().unwrap();
        assert_eq!(details["to"], "rui@example.com");
        assert_eq!(details["subject"], "Your summary");
        assert_eq!(details["conversation_id"], conversation);

        // Three emails per conversation at most: the bot is no relay for anyone's mail.
        fake.route(text("support"));
        let again = json!({"to": "rui@example.com", "subject": "Again", "body": "Hi"});
        fake.chat(Reply::Tools(vec![
            ("send_email".into(), again.clone()),
            ("send_email".into(), again.clone()),
            ("send_email".into(), again),
        ]));
        fake.chat(text("Sent what I could."));
        let turn = crate::conversations::say(&app, &f.key, conversation, "Send it thrice").await;
        let calls = turn["steps"][1]["detail"]["tool_calls"].as_array().unwrap();
        let ok: Vec<bool> = calls.iter().map(|c| c["ok"].as_bool().unwrap()).collect();
        assert_eq!(ok, [true, true, false], "{calls:?}");
        assert!(calls[2]["result"]
            .as_str()
            .unwrap()
            .contains("as many emails as it may"));
        assert_eq!(email_jobs(&app).await.len(), 3);
    }
}

#[tokio::test]
async fn bad_input_is_a_tool_error_and_without_smtp_the_tool_is_not_offered() {
    for backend in backends().await {
        let smtp = FakeSmtp::start().await;
        let fake = FakeLlm::start().await.unwrap();
        let app = spawn(backend, &fake, Some(&smtp)).await;
        let f = app.tenant("acme").await;
        fake.route(text("sales"));
        fake.chat(tool(
            "send_email",
            json!({"to": "rui at example dot com", "subject": "Quote", "body": "Hi"}),
        ));
        fake.chat(text("Could you check your email address?"));
        let turn = converse(&app, &f.key, "Send me the quote").await;
        let call = &turn["steps"][1]["detail"]["tool_calls"][0];
        assert_eq!(call["ok"], false, "{call}");
        let result: Value = serde_json::from_str(call["result"].as_str().unwrap()).unwrap();
        assert_eq!(result["queued"], false);
        assert!(
            result["error"]
                .as_str()
                .unwrap()
                .contains("is not an email address"),
            "{result}"
        );
        // The model was told why.
        let last = fake.requests_for(CHAT_MODEL).pop().unwrap();
        assert!(last["messages"]
            .to_string()
            .contains("is not an email address"));

        fake.route(text("sales"));
        fake.chat(tool(
            "send_email",
            json!({"to": "rui@example.com", "subject": "x".repeat(201), "body": "Hi"}),
        ));
        fake.chat(text("Sorry."));
        let turn = converse(&app, &f.key, "Send me the quote").await;
        let call = &turn["steps"][1]["detail"]["tool_calls"][0];
        assert_eq!(call["ok"], false, "{call}");
        assert!(call["result"].as_str().unwrap().contains("longer than 200"));
        assert!(email_jobs(&app).await.is_empty(), "nothing was queued");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(smtp.connections(), 0);
        drop(app);

        // Without SMTP_URL the model is not offered the tool, and calling it anyway fails.
        let app = spawn(backend, &fake, None).await;
        let f = app.tenant("acme").await;
        let before = fake.requests_for(CHAT_MODEL).len();
        fake.route(text("support"));
        fake.chat(tool(
            "send_email",
            json!({"to": "rui@example.com", "subject": "Summary", "body": "Hi"}),
        ));
        fake.chat(text("I cannot send email, sorry."));
        let turn = converse(&app, &f.key, "Email me a summary").await;
        let chats = fake.requests_for(CHAT_MODEL);
        assert!(chats.len() > before);
        assert!(!chats[before]["tools"].to_string().contains("send_email"));
        assert!(chats[before]["tools"]
            .to_string()
            .contains("knowledge_search"));
        let call = &turn["steps"][1]["detail"]["tool_calls"][0];
        assert_eq!(call["ok"], false, "{call}");
        assert!(call["result"]
            .as_str()
            .unwrap()
            .contains("not one of your tools"));
        assert!(email_jobs(&app).await.is_empty());
    }
}

#[tokio::test]
async fn a_permanent_rejection_ends_the_job_at_once_and_a_transient_one_is_retried() {
    for backend in backends().await {
        let smtp = FakeSmtp::start().await;
        let fake = FakeLlm::start().await.unwrap();
        let app = spawn(backend, &fake, Some(&smtp)).await;
        let f = app.tenant("acme").await;
        let job = |to: &str| {
            NewJob::new(
                Some(f.tenant_id),
                KIND,
                json!({"to": to, "subject": "Your quote", "body": "Attached below."}),
            )
        };

        // 550 to RCPT: dead after one attempt, nothing delivered, nothing audited.
        smtp.fail(Step::Rcpt, "550 5.1.1 <ghost@example.com>: no such user");
        let id = enqueue(&app.db, job("ghost@example.com"))
            .await
            .unwrap()
            .unwrap();
        let dead = finished(&app, id).await;
        assert_eq!(dead.state, "dead");
        assert_eq!(dead.attempts, 1, "a permanent failure is not retried");
        assert!(dead.max_attempts > 1);
        let error = dead.last_error.unwrap();
        assert!(
            error.contains("refused") && error.contains("550"),
            "{error}"
        );
        assert!(
            !error.contains("ghost@example.com"),
            "addresses are masked in errors: {error}"
        );
        assert!(smtp.received().is_empty());
        assert!(sent_audits(&app, f.tenant_id).await.is_empty());

        // A payload that is no email (enqueued by hand) is dead at once too.
        let id = enqueue(&app.db, job("not-an-address"))
            .await
            .unwrap()
            .unwrap();
        let dead = finished(&app, id).await;
        assert_eq!((dead.state.as_str(), dead.attempts), ("dead", 1));

        // 451 once: retried with backoff, then delivered.
        smtp.clear_failures();
        smtp.fail_once(Step::Mail, "451 4.7.1 greylisted, try again later");
        let id = enqueue(&app.db, job("rui@example.com"))
            .await
            .unwrap()
            .unwrap();
        let done = finished(&app, id).await;
        assert_eq!(done.state, "succeeded", "{:?}", done.last_error);
        assert_eq!(done.attempts, 2);
        assert!(done.errors.to_string().contains("451"), "{}", done.errors);
        let received = smtp.wait_for(1, Duration::from_secs(5)).await;
        assert_eq!(received[0].rcpt_to, ["rui@example.com"]);
        assert_eq!(sent_audits(&app, f.tenant_id).await.len(), 1);
        assert_eq!(
            job_rows::Entity::find()
                .filter(job_rows::Column::State.eq("dead"))
                .count(&app.db)
                .await
                .unwrap(),
            2
        );
    }
}
