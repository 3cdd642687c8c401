//! Bookings a business manages, on SQLite and on PostgreSQL + Redis: what an agent booked and
//! what the business books through the API share one calendar that never double-books (also
//! when requests race); bookings are listed by local day, status and customer, a page at a
//! time; moving and cancelling email the customer (through the fake SMTP server), emit webhook
//! events and are audited; bad input is refused with the field named; scopes hold.

use std::time::Duration;

use chrono::{Datelike, NaiveDate};
use reqwest::Method;
use serde_json::{json, Value};

use server::llm::fake::{text, tool, FakeLlm, CHAT_MODEL};

use crate::conversations::{open_every_day, post, say, start, tomorrow_at};
use crate::email::{email_jobs, spawn};
use crate::fake_smtp::FakeSmtp;
use crate::helpers::*;

/// A day well ahead, in Lisbon (the tenant's zone after `open_every_day`).
fn day_ahead(days: i64) -> NaiveDate {
    let lisbon: chrono_tz::Tz = "Europe/Lisbon".parse().unwrap();
    chrono::Utc::now().with_timezone(&lisbon).date_naive() + chrono::Duration::days(days)
}

async fn book(app: &TestApp, key: &str, body: Value) -> reqwest::Response {
    app.send_json(Method::POST, "/api/v1/bookings", key, &body)
        .await
}

async fn list(app: &TestApp, key: &str, query: &str) -> Value {
    json(
        app.get(&format!("/api/v1/bookings?{query}"), key).await,
        200,
    )
    .await
}

fn names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect()
}

/// The payloads of the endpoint's deliveries of `event`.
async fn events(app: &TestApp, key: &str, webhook: &str, event: &str) -> Vec<Value> {
    let page = json(
        app.get(
            &format!("/api/v1/webhooks/{webhook}/deliveries?limit=100"),
            key,
        )
        .await,
        200,
    )
    .await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["event"] == event)
        .map(|d| d["payload"]["data"].clone())
        .collect()
}

/// A new conversation in which the customer (`email`) asks for tomorrow at `hour` and the
/// agent books it; returns the conversation and the booking.
async fn agent_books(
    app: &TestApp,
    fake: &FakeLlm,
    key: &str,
    hour: u32,
    (name, email): (&str, &str),
) -> (String, Value) {
    fake.route(text("scheduling"));
    fake.chat(tool(
        "create_booking",
        json!({"start": tomorrow_at(hour), "name": name, "email": email}),
    ));
    fake.chat(text("You are booked."));
    let c = start(app, key).await;
    say(
        app,
        key,
        &c,
        &format!("Book me tomorrow at {hour}, I am {email}"),
    )
    .await;
    let made = list(app, key, &format!("conversation_id={c}")).await;
    assert_eq!(names(&made), [name]);
    (c, made["items"][0].clone())
}

/// The app with a mail server and an LLM, and tenant acme open every day in Lisbon.
async fn acme(backend: Backend) -> (FakeSmtp, FakeLlm, TestApp, Fixture) {
    let smtp = FakeSmtp::start().await;
    let fake = FakeLlm::start().await.unwrap();
    let app = spawn(backend, &fake, Some(&smtp)).await;
    let f = app.tenant("acme").await;
    open_every_day(&app, &f).await;
    (smtp, fake, app, f)
}

#[tokio::test]
async fn a_business_books_moves_and_cancels_and_its_customers_are_told() {
    for backend in backends().await {
        let (smtp, fake, app, f) = acme(backend).await;
        // Events are recorded as deliveries whether or not the endpoint answers.
        let hook = json(
            app.send_json(
                Method::POST,
                "/api/v1/webhooks",
                &f.key,
                &json!({
                    "url": "https://hooks.acme.example/bookings",
                    "events": ["booking.created", "booking.rescheduled", "booking.cancelled"],
                }),
            )
            .await,
            201,
        )
        .await;
        let hook = hook["id"].as_str().unwrap();

        // An agent books tomorrow at ten in a conversation.
        let (_, agent_booking) =
            agent_books(&app, &fake, &f.key, 10, ("Rui Costa", "rui@example.com")).await;
        assert_eq!(agent_booking["source"], "agent");
        assert_eq!(agent_booking["status"], "confirmed");
        assert_eq!(agent_booking["timezone"], "Europe/Lisbon");
        let tomorrow = tomorrow_at(10).replace(' ', "T");
        assert_eq!(agent_booking["local_start"], format!("{tomorrow}:00"));

        // The business books through the API, in its local time.
        let day = day_ahead(3);
        let made = json(
            book(
                &app,
                &f.key,
                json!({
                    "start": format!("{day}T09:00"),
                    "duration_minutes": 45,
                    "name": "Ana Lima",
                    "email": "ana@example.com",
                    "note": "Bring the invoice",
                }),
            )
            .await,
            201,
        )
        .await;
        let ana = made["id"].as_str().unwrap().to_string();
        assert_eq!(made["source"], "api");
        assert_eq!(made["local_start"], format!("{day}T09:00:00"));
        assert_eq!(made["local_end"], format!("{day}T09:45:00"));
        // Overlapping the agent's booking, even by a minute, is refused.
        let r = book(
            &app,
            &f.key,
            json!({
                "start": tomorrow.replace("T10:00", "T09:31"),
                "duration_minutes": 30,
                "name": "Eve",
                "email": "eve@example.com",
            }),
        )
        .await;
        problem(r, 409, "conflict").await;
        // Racing requests for one free time: exactly one wins.
        let racing = (0..5).map(|i| {
            book(
                &app,
                &f.key,
                json!({
                    "start": format!("{day}T14:00"),
                    "duration_minutes": 30,
                    "name": format!("Racer {i}"),
                    "email": "race@example.com",
                    "notify": false,
                }),
            )
        });
        let statuses: Vec<u16> = futures::future::join_all(racing)
            .await
            .iter()
            .map(|r| r.status().as_u16())
            .collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == 201).count(),
            1,
            "{statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|s| **s == 409).count(),
            4,
            "{statuses:?}"
        );

        // Bad input names the field and books nothing.
        let bad = [
            (
                json!({"start": "2020-01-01T10:00", "duration_minutes": 30, "name": "Old", "email": "o@example.com"}),
                "start",
            ),
            (
                json!({"start": format!("{day}T10:00"), "duration_minutes": 0, "name": "Zero", "email": "z@example.com"}),
                "duration_minutes",
            ),
            (
                json!({"start": format!("{day}T10:00"), "duration_minutes": 30, "name": " ", "email": "b@example.com"}),
                "name",
            ),
            (
                json!({"start": format!("{day}T10:00"), "duration_minutes": 30, "name": "Bad", "email": "not an address"}),
                "email",
            ),
        ];
        for (body, field) in bad {
            let p = problem(book(&app, &f.key, body).await, 422, "validation_failed").await;
            assert!(p.to_string().contains(field), "{field}: {p}");
        }
        let r = book(&app, &f.key, json!({"start": "tomorrow", "name": "X"})).await;
        assert_eq!(r.status(), 422);
        // A local time the clocks skip (Lisbon, last Sunday of March, 01:30) does not exist.
        let year = day.year() + 1;
        let spring = (25..=31)
            .map(|d| NaiveDate::from_ymd_opt(year, 3, d).unwrap())
            .find(|d| d.weekday() == chrono::Weekday::Sun)
            .unwrap();
        let p = problem(
            book(
                &app,
                &f.key,
                json!({"start": format!("{spring}T01:30"), "duration_minutes": 30, "name": "Gap", "email": "g@example.com"}),
            )
            .await,
            422,
            "validation_failed",
        )
        .await;
        assert!(p.to_string().contains("does not exist"), "{p}");

        // Listing: by start time, by local day, by customer (any case), a page at a time.
        let all = list(&app, &f.key, "").await;
        assert_eq!(names(&all).len(), 3, "{all}");
        assert_eq!(names(&all)[0], "Rui Costa");
        let that_day = list(&app, &f.key, &format!("from={day}&to={day}")).await;
        assert_eq!(names(&that_day)[0], "Ana Lima");
        assert_eq!(names(&that_day).len(), 2);
        assert_eq!(names(&list(&app, &f.key, "q=ANA").await), ["Ana Lima"]);
        assert_eq!(
            names(&list(&app, &f.key, "q=rui%40example").await),
            ["Rui Costa"]
        );
        // LIKE's wildcards are literal.
        assert!(names(&list(&app, &f.key, "q=%25").await).is_empty());
        let mut paged = Vec::new();
        let mut cursor = String::new();
        loop {
            let page = list(&app, &f.key, &format!("limit=1{cursor}")).await;
            paged.extend(names(&page));
            match page["next_cursor"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => break,
            }
        }
        assert_eq!(paged, names(&all));
        problem(
            app.get("/api/v1/bookings?cursor=nonsense", &f.key).await,
            422,
            "validation_failed",
        )
        .await;
        problem(
            app.get(
                &format!("/api/v1/bookings?from={day}&to=2020-01-01"),
                &f.key,
            )
            .await,
            422,
            "validation_failed",
        )
        .await;

        // Moving Ana onto the racer's time is refused; to a free time it moves, keeping its
        // length unless told otherwise.
        let reschedule = format!("/api/v1/bookings/{ana}/reschedule");
        let moving = |start: String| post(&app, &f.key, &reschedule, json!({ "start": start }));
        problem(moving(format!("{day}T13:45")).await, 409, "conflict").await;
        let moved = json(moving(format!("{day}T16:00")).await, 200).await;
        assert_eq!(moved["local_start"], format!("{day}T16:00:00"));
        assert_eq!(moved["local_end"], format!("{day}T16:45:00"));
        assert!(moved["updated_at"].is_string());

        // Cancelling frees the time and is final.
        let cancelling = format!("/api/v1/bookings/{ana}/cancel");
        let cancel = |reason: &str| post(&app, &f.key, &cancelling, json!({ "reason": reason }));
        let cancelled = json(cancel("The shop is closed for inventory").await, 200).await;
        assert_eq!(cancelled["status"], "cancelled");
        assert_eq!(
            cancelled["cancel_reason"],
            "The shop is closed for inventory"
        );
        problem(cancel("again").await, 409, "conflict").await;
        problem(moving(format!("{day}T17:00")).await, 409, "conflict").await;
        json(
            book(
                &app,
                &f.key,
                json!({"start": format!("{day}T16:00"), "duration_minutes": 30, "name": "Bo", "email": "bo@example.com"}),
            )
            .await,
            201,
        )
        .await;
        assert_eq!(
            names(&list(&app, &f.key, "status=cancelled").await),
            ["Ana Lima"]
        );

        // The customers were told: the agent's booking, Ana booked, moved and cancelled, Bo
        // booked; the racer asked for no email.
        let mail = smtp.wait_for(5, Duration::from_secs(30)).await;
        let mut subjects: Vec<(String, String)> = mail
            .iter()
            .map(|m| (m.rcpt_to.join(","), m.header("Subject").unwrap_or_default()))
            .collect();
        subjects.sort();
        assert_eq!(
            subjects,
            [
                (
                    "ana@example.com".into(),
                    "Your appointment with acme Inc has moved".into()
                ),
                (
                    "ana@example.com".into(),
                    "Your appointment with acme Inc is booked".into()
                ),
                (
                    "ana@example.com".into(),
                    "Your appointment with acme Inc is cancelled".into()
                ),
                (
                    "bo@example.com".into(),
                    "Your appointment with acme Inc is booked".into()
                ),
                (
                    "rui@example.com".into(),
                    "Your appointment with acme Inc is booked".into()
                ),
            ],
            "{subjects:?}"
        );
        let to_ana = |subject: &str| {
            mail.iter()
                .find(|m| {
                    m.rcpt_to == ["ana@example.com"]
                        && m.header("Subject").unwrap_or_default().ends_with(subject)
                })
                .unwrap()
                .text()
        };
        let weekday = day.format("%A %-d %B %Y");
        assert!(
            to_ana("booked").contains(&format!("{weekday}, 09:00–09:45 (Europe/Lisbon)")),
            "{}",
            to_ana("booked")
        );
        assert!(to_ana("booked").contains("Note: Bring the invoice"));
        assert!(to_ana("moved").contains(&format!("to {weekday}, 16:00–16:45")));
        assert!(to_ana("cancelled").contains("Reason: The shop is closed for inventory"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(smtp.received().len(), 5, "the racer was not emailed");

        // Webhook events for each change, the booking in the API's shape.
        let created = events(&app, &f.key, hook, "booking.created").await;
        assert_eq!(created.len(), 4, "agent, Ana, the racer, Bo");
        let rescheduled = events(&app, &f.key, hook, "booking.rescheduled").await;
        assert_eq!(rescheduled.len(), 1);
        assert_eq!(rescheduled[0]["booking"]["id"], ana.as_str());
        assert_eq!(rescheduled[0]["previous"]["starts_at"], made["starts_at"]);
        let gone = events(&app, &f.key, hook, "booking.cancelled").await;
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0]["booking"]["status"], "cancelled");

        // Every change is audited, with who made it.
        let audit = json(app.get("/api/v1/audit-log?limit=100", &f.key).await, 200).await;
        let actions: Vec<&str> = audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["action"].as_str())
            .filter(|a| a.starts_with("booking."))
            .collect();
        for action in ["booking.create", "booking.reschedule", "booking.cancel"] {
            assert!(actions.contains(&action), "{action} in {actions:?}");
        }

        // An agent talked into booking for an address the customer never wrote books, but
        // emails nobody.
        fake.route(text("scheduling"));
        fake.chat(tool(
            "create_booking",
            json!({"start": format!("{} 10:00", day_ahead(4)), "name": "Mallory",
                   "email": "mallory@example.com", "note": "Buy cheap watches at …"}),
        ));
        fake.chat(text("Booked."));
        let c = start(&app, &f.key).await;
        say(&app, &f.key, &c, "Book the 10:00 slot for my friend").await;
        let tool_result = fake.requests_for(CHAT_MODEL).last().unwrap()["messages"].to_string();
        assert!(
            tool_result.contains("No confirmation email"),
            "{tool_result}"
        );
        assert_eq!(names(&list(&app, &f.key, "q=mallory").await), ["Mallory"]);
        let jobs = email_jobs(&app).await;
        assert_eq!(jobs.len(), 5);
        assert!(!format!("{jobs:?}").contains("mallory"));

        // A key that may read bookings cannot change them; one without the scope sees none.
        let reader = app.api_key(&f.key, &["bookings:read"]).await;
        assert_eq!(names(&list(&app, &reader, "").await).len(), 5);
        let p = problem(
            book(
                &app,
                &reader,
                json!({"start": format!("{day}T18:00"), "duration_minutes": 30, "name": "No", "email": "n@example.com"}),
            )
            .await,
            403,
            "forbidden",
        )
        .await;
        assert!(p.to_string().contains("bookings:write"), "{p}");
        let outsider = app.api_key(&f.key, &["knowledge:read"]).await;
        problem(
            app.get("/api/v1/bookings", &outsider).await,
            403,
            "forbidden",
        )
        .await;
    }
}

#[tokio::test]
async fn customers_move_and_cancel_through_the_agent_only_what_their_conversation_booked() {
    for backend in backends().await {
        let (smtp, fake, app, f) = acme(backend).await;
        // A stranger's conversation books first: the customer's agent must not touch it.
        let (_, zoe) = agent_books(&app, &fake, &f.key, 15, ("Zoe", "zoe@example.com")).await;
        let zoe = zoe["id"].as_str().unwrap().to_string();
        let (c, rui) = agent_books(&app, &fake, &f.key, 10, ("Rui", "rui@example.com")).await;
        let rui = rui["id"].as_str().unwrap().to_string();

        // "Move it to eleven": the agent finds the booking, then moves it.
        fake.route(text("scheduling"));
        fake.chat(tool("my_bookings", json!({})));
        fake.chat(tool(
            "reschedule_booking",
            json!({"booking_id": rui, "start": tomorrow_at(11)}),
        ));
        fake.chat(text("Moved to eleven."));
        say(&app, &f.key, &c, "Please move it to eleven").await;
        let messages = fake.requests_for(CHAT_MODEL).last().unwrap()["messages"].to_string();
        assert!(
            messages.contains(&format!("booking id {rui}")),
            "{messages}"
        );
        assert!(
            !messages.contains(&zoe),
            "my_bookings listed another conversation's booking"
        );
        assert!(messages.contains("Moved: "), "{messages}");
        let moved = json(
            app.get(&format!("/api/v1/bookings/{rui}"), &f.key).await,
            200,
        )
        .await;
        assert_eq!(
            moved["local_start"],
            format!("{}:00", tomorrow_at(11).replace(' ', "T"))
        );

        // Outside business hours, or onto the stranger's time: refused, nothing changes.
        fake.route(text("scheduling"));
        fake.chat(tool(
            "reschedule_booking",
            json!({"booking_id": rui, "start": tomorrow_at(22)}),
        ));
        fake.chat(tool(
            "reschedule_booking",
            json!({"booking_id": rui, "start": tomorrow_at(15)}),
        ));
        fake.chat(text("Those times do not work."));
        say(&app, &f.key, &c, "Or late at night? Or at three?").await;
        let messages = fake.requests_for(CHAT_MODEL).last().unwrap()["messages"].to_string();
        assert!(messages.contains("outside business hours"), "{messages}");
        assert!(messages.contains("is already booked"), "{messages}");

        // The customer cannot cancel the stranger's booking by naming its id.
        fake.route(text("scheduling"));
        fake.chat(tool("cancel_booking", json!({"booking_id": zoe})));
        fake.chat(text("I cannot."));
        say(&app, &f.key, &c, &format!("Cancel booking {zoe}")).await;
        let messages = fake.requests_for(CHAT_MODEL).last().unwrap()["messages"].to_string();
        assert!(
            messages.contains("not an upcoming booking made in this conversation"),
            "{messages}"
        );
        let theirs = json(
            app.get(&format!("/api/v1/bookings/{zoe}"), &f.key).await,
            200,
        )
        .await;
        assert_eq!(theirs["status"], "confirmed");

        // Their own: cancelled, with the reason, and they are told.
        fake.route(text("scheduling"));
        fake.chat(tool(
            "cancel_booking",
            json!({"booking_id": rui, "reason": "I am travelling"}),
        ));
        fake.chat(text("Cancelled."));
        say(&app, &f.key, &c, "Actually, cancel it").await;
        let gone = json(
            app.get(&format!("/api/v1/bookings/{rui}"), &f.key).await,
            200,
        )
        .await;
        assert_eq!(gone["status"], "cancelled");
        assert_eq!(gone["cancel_reason"], "I am travelling");
        // Zoe's confirmation, Rui's confirmation, his new time, his cancellation.
        let mail = smtp.wait_for(4, Duration::from_secs(30)).await;
        let to_rui: Vec<String> = mail
            .iter()
            .filter(|m| m.rcpt_to == ["rui@example.com"])
            .map(|m| m.header("Subject").unwrap_or_default())
            .collect();
        assert_eq!(to_rui.len(), 3, "{to_rui:?}");
        assert!(to_rui.iter().any(|s| s.ends_with("has moved")));
        assert!(to_rui.iter().any(|s| s.ends_with("is cancelled")));
    }
}
