//! Console sign-in, sessions, CSRF, roles, tenant switching and throttling.

use reqwest::header;
use serde_json::Value;

use app::types::{CreateUser, Role};

use crate::helpers::*;

#[tokio::test]
async fn sign_in_use_the_console_and_sign_out() {
    for backend in backends().await {
        let app = TestApp::spawn(backend).await;
        let acme = app.tenant("acme").await;
        let browser = client();

        let anonymous = browser.get(app.url("/keys")).send().await.unwrap();
        assert_eq!(anonymous.status(), 303);
        assert_eq!(location(&anonymous), "/login?next=%2Fkeys");
        // A page outside the navigation too (the workflow editor, opened from the list).
        let editor = browser
            .get(app.url("/workflows/edit?open=00000000-0000-0000-0000-000000000000"))
            .send()
            .await
            .unwrap();
        assert_eq!(editor.status(), 303);
        assert_eq!(location(&editor), "/login?next=%2Fworkflows%2Fedit");
        let login_page = browser
            .get(app.url("/login"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(login_page.contains("action=\"/auth/login\""));

        // A sign-in posted from another site is refused.
        let forged = browser
            .post(app.url("/auth/login"))
            .header(header::ORIGIN, "http://evil.example")
            .form(&[
                ("email", acme.owner_email.as_str()),
                ("password", acme.owner_password.as_str()),
            ])
            .send()
            .await
            .unwrap();
        problem(forged, 403, "forbidden").await;

        let wrong = app
            .sign_in(&browser, &acme.owner_email, "wrong password")
            .await;
        assert!(location(&wrong).starts_with("/login?error=invalid"));

        let ok = app
            .sign_in(&browser, &acme.owner_email, &acme.owner_password)
            .await;
        assert_eq!(location(&ok), "/");
        let cookie = ok.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
            "{cookie}"
        );

        let home = browser.get(app.url("/")).send().await.unwrap();
        assert_eq!(home.status(), 200);
        assert!(home.text().await.unwrap().contains("API keys"));

        // Server functions act as the signed-in user, through the same service as REST.
        let me: Value = app
            .server_fn(&browser, "whoami", "")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(me["tenant"]["slug"], "acme");
        assert_eq!(me["tenant"]["role"], "owner");
        let issued = app
            .server_fn(
                &browser,
                "issue_api_key",
                "create[name]=console&create[scopes][0]=tenant:read",
            )
            .await;
        let issued: Value = issued.json().await.unwrap();
        let secret = issued["secret"].as_str().expect("secret").to_string();
        json(app.get("/api/v1/tenant", &secret).await, 200).await;

        // A write without our Origin is refused even with the session cookie.
        let csrf = browser
            .post(app.url("/_fn/issue_api_key"))
            .header(header::ORIGIN, "http://evil.example")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("create[name]=evil&create[scopes][0]=tenant:read")
            .send()
            .await
            .unwrap();
        assert_eq!(csrf.status(), 403);

        let audit = json(app.get("/api/v1/audit-log", &acme.key).await, 200).await;
        let actions: Vec<&str> = audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert!(actions.contains(&"auth.sign_in"), "{actions:?}");
        let key_by_user = audit["items"].as_array().unwrap().iter().find(|e| {
            e["action"] == "api_key.create" && e["actor"] == format!("user:{}", acme.owner_email)
        });
        assert!(
            key_by_user.is_some_and(|e| e["ip"] == "127.0.0.1"),
            "{audit}"
        );

        let out = browser
            .post(app.url("/auth/logout"))
            .header(header::ORIGIN, &app.base)
            .send()
            .await
            .unwrap();
        assert_eq!(location(&out), "/login?signed_out=1");
        assert_eq!(
            browser.get(app.url("/")).send().await.unwrap().status(),
            303
        );
        let after = app
            .server_fn(&browser, "list_api_keys", "")
            .await
            .text()
            .await
            .unwrap();
        assert!(after.contains("Unauthorized"), "{after}");
    }
}

#[tokio::test]
async fn a_viewer_changes_nothing() {
    for backend in backends().await {
        let app = TestApp::spawn(backend).await;
        let acme = app.tenant("acme").await;
        let (email, password) = app.user(&acme, "vera", Role::Viewer).await;
        let browser = app.signed_in(&email, &password).await;

        let keys = app.server_fn(&browser, "list_api_keys", "").await;
        assert!(keys.status().is_success());
        let refused = app
            .server_fn(
                &browser,
                "issue_api_key",
                "create[name]=mine&create[scopes][0]=tenant:read",
            )
            .await
            .text()
            .await
            .unwrap();
        assert!(refused.contains("Forbidden"), "{refused}");
        let rename = app
            .server_fn(&browser, "save_settings", "update[name]=Hacked")
            .await
            .text()
            .await
            .unwrap();
        assert!(rename.contains("Forbidden"), "{rename}");
        let promote = app
            .server_fn(
                &browser,
                "change_role",
                &format!("user_id={}&role=owner", acme.owner_id),
            )
            .await
            .text()
            .await
            .unwrap();
        assert!(promote.contains("Forbidden"), "{promote}");

        let list = json(app.get("/api/v1/api-keys", &acme.key).await, 200).await;
        assert_eq!(list.as_array().unwrap().len(), 1, "no key was created");
        assert_eq!(
            json(app.get("/api/v1/tenant", &acme.key).await, 200).await["name"],
            "acme Inc"
        );
    }
}

#[tokio::test]
async fn membership_rules() {
    for backend in backends().await {
        let app = TestApp::spawn(backend).await;
        let acme = app.tenant("acme").await;
        let (admin_email, admin_password) = app.user(&acme, "ada", Role::Admin).await;
        let admin = app.signed_in(&admin_email, &admin_password).await;

        // An admin may invite editors but not owners, and cannot demote the owner.
        let created: Value = app
            .server_fn(
                &admin,
                "invite_member",
                "invite[email]=ed@acme.test&invite[role]=editor",
            )
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(created["invitation"]["role"], "editor");
        assert_eq!(created["invitation"]["status"], "pending");
        assert_eq!(created["emailed"], false, "no SMTP in this app");
        let link = created["link"].as_str().unwrap().to_string();
        let ed = client();
        let to = app
            .accept_invitation(
                &ed,
                &link,
                &[
                    ("name", "Ed"),
                    ("password", "eds-own-password"),
                    ("repeat", "eds-own-password"),
                ],
            )
            .await;
        assert_eq!(to, "/", "accepting signs the new member in");
        let me: Value = app.server_fn(&ed, "whoami", "").await.json().await.unwrap();
        assert_eq!(me["tenant"]["role"], "editor");
        app.signed_in("ed@acme.test", "eds-own-password").await;
        let owner = app
            .server_fn(
                &admin,
                "invite_member",
                "invite[email]=o2@acme.test&invite[role]=owner",
            )
            .await;
        assert!(owner.text().await.unwrap().contains("Forbidden"));
        let demote = app
            .server_fn(
                &admin,
                "change_role",
                &format!("user_id={}&role=viewer", acme.owner_id),
            )
            .await;
        assert!(demote.text().await.unwrap().contains("Forbidden"));
        let dup = app
            .server_fn(
                &admin,
                "invite_member",
                "invite[email]=ED@acme.test&invite[role]=viewer",
            )
            .await;
        assert!(dup.text().await.unwrap().contains("Conflict"));
        let bad = app
            .server_fn(
                &admin,
                "invite_member",
                "invite[email]=nope&invite[role]=viewer",
            )
            .await;
        let bad = bad.text().await.unwrap();
        assert!(bad.contains("Validation") && bad.contains("email"), "{bad}");

        // The owner cannot leave the tenant ownerless.
        let owner_browser = app.signed_in(&acme.owner_email, &acme.owner_password).await;
        let last = app
            .server_fn(
                &owner_browser,
                "remove_member",
                &format!("user_id={}", acme.owner_id),
            )
            .await;
        assert!(last.text().await.unwrap().contains("at least one owner"));

        // Changes land in the audit log.
        let members = json(app.get("/api/v1/members", &acme.key).await, 200).await;
        let ed = members
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["email"] == "ed@acme.test")
            .unwrap();
        let ed_id = ed["user_id"].as_str().unwrap();
        let changed = app
            .server_fn(
                &admin,
                "change_role",
                &format!("user_id={ed_id}&role=viewer"),
            )
            .await;
        assert!(changed.status().is_success());
        let removed = app
            .server_fn(&admin, "remove_member", &format!("user_id={ed_id}"))
            .await;
        assert!(removed.status().is_success());
        let actions = app.audit_actions(&acme.key).await;
        for expected in [
            "invitation.create",
            "invitation.accept",
            "member.role_change",
            "member.remove",
        ] {
            assert!(
                actions.iter().any(|a| a == expected),
                "{expected} missing from {actions:?}"
            );
        }
    }
}

#[tokio::test]
async fn tenant_switcher() {
    for backend in backends().await {
        let app = TestApp::spawn(backend).await;
        let a = app.tenant("alpha").await;
        let b = app.tenant("bravo").await;
        app.tenant("charlie").await;
        server::tenancy::bootstrap_member(
            &app.db,
            b.tenant_id,
            CreateUser {
                email: a.owner_email.clone(),
                name: "ignored: the account exists".into(),
                role: Role::Viewer,
            },
            false,
        )
        .await
        .unwrap();
        let browser = app.signed_in(&a.owner_email, &a.owner_password).await;
        let me: Value = app
            .server_fn(&browser, "whoami", "")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(me["tenant"]["slug"], "alpha");
        assert_eq!(me["memberships"].as_array().unwrap().len(), 2);

        let switch = |slug: &'static str| {
            browser
                .post(app.url("/auth/switch-tenant"))
                .header(header::ORIGIN, &app.base)
                .form(&[("tenant", slug)])
                .send()
        };
        assert_eq!(switch("bravo").await.unwrap().status(), 303);
        let me: Value = app
            .server_fn(&browser, "whoami", "")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(me["tenant"]["slug"], "bravo");
        assert_eq!(me["tenant"]["role"], "viewer");
        let keys = app
            .server_fn(&browser, "list_api_keys", "")
            .await
            .text()
            .await
            .unwrap();
        assert!(!keys.contains(&a.slug) && keys.contains("fixture"));

        // Not a member of charlie: refused, and the session stays in bravo.
        assert_eq!(switch("charlie").await.unwrap().status(), 404);
        let me: Value = app
            .server_fn(&browser, "whoami", "")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(me["tenant"]["slug"], "bravo");
    }
}

#[tokio::test]
async fn sign_in_is_throttled() {
    for backend in backends().await {
        let app = TestApp::spawn_with(backend, &[("LOGIN_ATTEMPTS_PER_MINUTE", "3")]).await;
        let acme = app.tenant("acme").await;
        let browser = client();
        for _ in 0..3 {
            let r = app.sign_in(&browser, &acme.owner_email, "guess").await;
            assert!(location(&r).starts_with("/login?error=invalid"));
        }
        let r = app
            .sign_in(&browser, &acme.owner_email, &acme.owner_password)
            .await;
        assert!(
            location(&r).starts_with("/login?error=throttled"),
            "{}",
            location(&r)
        );
    }
}

#[tokio::test]
async fn temporary_password_is_replaced() {
    for backend in backends().await {
        let app = TestApp::spawn(backend).await;
        let acme = app.tenant("acme").await;
        let (email, temporary) = app.temporary_user(&acme, "tim", Role::Admin).await;
        let browser = client();
        let first = app.sign_in(&browser, &email, &temporary).await;
        assert_eq!(location(&first), "/account?first=1");
        let form =
            |current: &str, new: &str| format!("change[current]={current}&change[new]={new}");

        // Until they choose their own password the account can do nothing else: every server
        // function refuses (not only a redirect), and console pages lead to the account page.
        for (name, args) in [
            ("list_members", ""),
            ("get_tenant", ""),
            ("list_api_keys", ""),
            (
                "invite_member",
                "invite[email]=x@acme.test&invite[role]=owner",
            ),
            (
                "issue_api_key",
                "create[name]=k&create[scopes][0]=tenant:read",
            ),
        ] {
            let refused = app
                .server_fn(&browser, name, args)
                .await
                .text()
                .await
                .unwrap();
            assert!(
                refused.contains("choose your own password first"),
                "{name}: {refused}"
            );
        }
        let page = browser.get(app.url("/keys")).send().await.unwrap();
        assert_eq!(location(&page), "/account?first=1");
        let me: Value = app
            .server_fn(&browser, "whoami", "")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(me["must_change_password"], true);

        let wrong = app
            .server_fn(
                &browser,
                "change_password",
                &form("nope", "a-new-long-password"),
            )
            .await;
        assert!(wrong.text().await.unwrap().contains("current"));
        let short = app
            .server_fn(&browser, "change_password", &form(&temporary, "short"))
            .await;
        assert!(short.text().await.unwrap().contains("Validation"));
        let ok = app
            .server_fn(
                &browser,
                "change_password",
                &form(&temporary, "a-new-long-password"),
            )
            .await;
        assert!(ok.status().is_success());

        // Sessions made with the old password end; the old password no longer works.
        let me = app
            .server_fn(&browser, "whoami", "")
            .await
            .text()
            .await
            .unwrap();
        assert!(me.contains("Unauthorized"), "{me}");
        let old = app.sign_in(&client(), &email, &temporary).await;
        assert!(location(&old).starts_with("/login?error=invalid"));
        let again = client();
        let new = app.sign_in(&again, &email, "a-new-long-password").await;
        assert_eq!(location(&new), "/");
        let members = app.server_fn(&again, "list_members", "").await;
        assert!(members.status().is_success());

        let audit = json(
            app.get("/api/v1/audit-log?action=user.password_change", &acme.key)
                .await,
            200,
        )
        .await;
        assert_eq!(audit["items"].as_array().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn session_cookie_is_secure_behind_https() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[("PUBLIC_URL", "https://console.example")],
    )
    .await;
    let acme = app.tenant("acme").await;
    let response = app
        .sign_in(&client(), &acme.owner_email, &acme.owner_password)
        .await;
    let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
}
