//! Invitations: created, listed, revoked, accepted once, expired, mailed with the link sealed
//! out of the tenant's sight, and invisible to other tenants. Each on SQLite and on
//! PostgreSQL + Redis.

use std::time::Duration;

use reqwest::Method;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{json, Value};

use server::store::{invitations, jobs as job_rows};

use crate::fake_smtp::FakeSmtp;
use crate::helpers::*;

fn invite(email: &str, role: &str) -> Value {
    json!({ "email": email, "role": role })
}

async fn create(app: &TestApp, key: &str, email: &str, role: &str) -> Value {
    json(
        app.send_json(
            Method::POST,
            "/api/v1/invitations",
            key,
            &invite(email, role),
        )
        .await,
        201,
    )
    .await
}

const NEW_ACCOUNT: [(&str, &str); 3] = [
    ("name", "Nina"),
    ("password", "ninas-own-password"),
    ("repeat", "ninas-own-password"),
];

#[tokio::test]
async fn an_invitation_is_used_once_and_can_be_revoked_or_expire() {
    for backend in backends().await {
        let app = TestApp::spawn(backend).await;
        let acme = app.tenant("acme").await;
        let other = app.tenant("other").await;

        // Refused before anything is stored.
        let bad = app
            .send_json(
                Method::POST,
                "/api/v1/invitations",
                &acme.key,
                &invite("not-an-email", "viewer"),
            )
            .await;
        problem(bad, 422, "validation_failed").await;
        let member = app
            .send_json(
                Method::POST,
                "/api/v1/invitations",
                &acme.key,
                &invite(&acme.owner_email, "viewer"),
            )
            .await;
        problem(member, 409, "conflict").await;

        // Accepted once; the new member has the invited role.
        let sent = create(&app, &acme.key, "nina@acme.test", "editor").await;
        let link = sent["link"].as_str().unwrap().to_string();
        let page = app
            .client
            .get(app.url(&format!(
                "/invite?token={}",
                link.split("token=").nth(1).unwrap()
            )))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("acme Inc") && page.contains("nina@acme.test"));
        let short = app
            .accept_invitation(
                &client(),
                &link,
                &[("name", "Nina"), ("password", "short"), ("repeat", "short")],
            )
            .await;
        assert!(short.contains("error=short"), "{short}");
        let nameless = app
            .accept_invitation(
                &client(),
                &link,
                &[
                    ("password", "ninas-own-password"),
                    ("repeat", "ninas-own-password"),
                ],
            )
            .await;
        assert!(nameless.contains("error=name"), "{nameless}");
        assert_eq!(
            app.accept_invitation(&client(), &link, &NEW_ACCOUNT).await,
            "/"
        );
        let again = app.accept_invitation(&client(), &link, &NEW_ACCOUNT).await;
        assert!(again.contains("error=invalid"), "{again}");
        let members = json(app.get("/api/v1/members", &acme.key).await, 200).await;
        let nina = members
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["email"] == "nina@acme.test")
            .expect("nina is a member");
        assert_eq!(nina["role"], "editor");

        // A member of one tenant joins another with the password they already have.
        let joined = create(&app, &other.key, "nina@acme.test", "viewer").await;
        let link2 = joined["link"].as_str().unwrap();
        let wrong = app
            .accept_invitation(&client(), link2, &[("password", "not hers")])
            .await;
        assert!(wrong.contains("error=password"), "{wrong}");
        assert_eq!(
            app.accept_invitation(&client(), link2, &[("password", "ninas-own-password")])
                .await,
            "/"
        );

        // Revoked: the link stops working; revoking twice is harmless.
        let sent = create(&app, &acme.key, "rex@acme.test", "viewer").await;
        let id = sent["invitation"]["id"].as_str().unwrap();
        let path = format!("/api/v1/invitations/{id}");
        // Another tenant cannot see or revoke it.
        let foreign = app
            .send_json(Method::DELETE, &path, &other.key, &json!({}))
            .await;
        problem(foreign, 404, "not_found").await;
        let listed = json(app.get("/api/v1/invitations", &other.key).await, 200).await;
        assert!(!listed.to_string().contains("rex@acme.test"));
        let revoked = json(
            app.send_json(Method::DELETE, &path, &acme.key, &json!({}))
                .await,
            200,
        )
        .await;
        assert_eq!(revoked["status"], "revoked");
        json(
            app.send_json(Method::DELETE, &path, &acme.key, &json!({}))
                .await,
            200,
        )
        .await;
        let used = app
            .accept_invitation(&client(), sent["link"].as_str().unwrap(), &NEW_ACCOUNT)
            .await;
        assert!(used.contains("error=invalid"), "{used}");

        // Inviting again replaces the pending invitation: the first link stops working.
        let first = create(&app, &acme.key, "sam@acme.test", "viewer").await;
        let second = create(&app, &acme.key, "sam@acme.test", "editor").await;
        let stale = app
            .accept_invitation(&client(), first["link"].as_str().unwrap(), &NEW_ACCOUNT)
            .await;
        assert!(stale.contains("error=invalid"), "{stale}");

        // Expired: past its date the link is refused and the list says so.
        let id = second["invitation"]["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        invitations::Entity::update(invitations::ActiveModel {
            id: Set(id),
            expires_at: Set(chrono::Utc::now() - chrono::Duration::minutes(1)),
            ..Default::default()
        })
        .exec(&app.db)
        .await
        .unwrap();
        let late = app
            .accept_invitation(&client(), second["link"].as_str().unwrap(), &NEW_ACCOUNT)
            .await;
        assert!(late.contains("error=invalid"), "{late}");
        let listed = json(app.get("/api/v1/invitations", &acme.key).await, 200).await;
        let statuses: Vec<(&str, &str)> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["email"].as_str().unwrap(), i["status"].as_str().unwrap()))
            .collect();
        for expected in [
            ("sam@acme.test", "expired"),
            ("sam@acme.test", "revoked"),
            ("rex@acme.test", "revoked"),
            ("nina@acme.test", "accepted"),
        ] {
            assert!(statuses.contains(&expected), "{expected:?} in {statuses:?}");
        }
        assert!(
            !listed.to_string().contains("inv_"),
            "links are never listed"
        );

        // A viewer's key cannot invite; only an owner invites owners.
        let viewer_key = app.api_key(&acme.key, &["members:read"]).await;
        let r = app
            .send_json(
                Method::POST,
                "/api/v1/invitations",
                &viewer_key,
                &invite("v@acme.test", "viewer"),
            )
            .await;
        problem(r, 403, "forbidden").await;
    }
}

#[tokio::test]
async fn an_invitation_is_mailed_without_the_link_showing_in_jobs() {
    for backend in backends().await {
        let smtp = FakeSmtp::start().await;
        let url = smtp.url();
        let app = TestApp::spawn_with(
            backend,
            &[
                ("SMTP_URL", url.as_str()),
                ("SMTP_FROM", "Platform <noreply@platform.test>"),
                ("JOB_POLL_MS", "50"),
                ("PUBLIC_URL", "https://console.example"),
            ],
        )
        .await;
        let acme = app.tenant("acme").await;
        let sent = create(&app, &acme.key, "mia@elsewhere.test", "viewer").await;
        assert_eq!(sent["emailed"], true);
        let link = sent["link"].as_str().unwrap();
        assert!(
            link.starts_with("https://console.example/invite?token=inv_"),
            "{link}"
        );
        let mail = smtp.wait_for(1, Duration::from_secs(20)).await;
        // The body travels quoted-printable (the link line is long): undo the soft breaks.
        let body = mail[0]
            .body()
            .replace("=\r\n", "")
            .replace("=\n", "")
            .replace("=3D", "=");
        assert!(body.contains(link), "{body}");
        assert!(body.contains("acme Inc"));
        assert_eq!(mail[0].rcpt_to, ["mia@elsewhere.test"]);

        // The tenant's jobs show who was mailed, never the body with the token.
        let token = link.split("token=").nth(1).unwrap();
        let jobs = job_rows::Entity::find()
            .filter(job_rows::Column::Kind.eq("email.send"))
            .all(&app.db)
            .await
            .unwrap();
        assert_eq!(jobs.len(), 1);
        assert!(!jobs[0].payload.to_string().contains(token));
        let listed = app.get("/api/v1/jobs?kind=email.send", &acme.key).await;
        assert!(!listed.text().await.unwrap().contains(token));
    }
}
