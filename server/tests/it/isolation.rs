//! A key of tenant A gets 404 (or only its own data) for everything of tenant B.

use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn no_resource_crosses_tenants() {
    for backend in backends().await {
        let app = TestApp::spawn(backend).await;
        let a = app.tenant("alpha").await;
        let b = app.tenant("bravo").await;

        let b_keys = json(app.get("/api/v1/api-keys", &b.key).await, 200).await;
        let b_key_id = b_keys[0]["id"].as_str().unwrap().to_string();

        // Tenant: each key sees its own.
        assert_eq!(
            json(app.get("/api/v1/tenant", &a.key).await, 200).await["slug"],
            "alpha"
        );
        let renamed = app
            .send_json(
                Method::PATCH,
                "/api/v1/tenant",
                &a.key,
                &json!({ "name": "Alpha 2" }),
            )
            .await;
        assert_eq!(renamed.status(), 200);
        assert_eq!(
            json(app.get("/api/v1/tenant", &b.key).await, 200).await["name"],
            "bravo Inc"
        );

        // API keys: B's key is invisible and unrevocable for A.
        problem(
            app.get(&format!("/api/v1/api-keys/{b_key_id}"), &a.key)
                .await,
            404,
            "not_found",
        )
        .await;
        let revoke = app
            .send_json(
                Method::DELETE,
                &format!("/api/v1/api-keys/{b_key_id}"),
                &a.key,
                &json!({}),
            )
            .await;
        problem(revoke, 404, "not_found").await;
        json(app.get("/api/v1/tenant", &b.key).await, 200).await;
        let a_keys = json(app.get("/api/v1/api-keys", &a.key).await, 200).await;
        assert!(!a_keys.to_string().contains(&b_key_id));

        // Members: B's owner is not A's member.
        problem(
            app.get(&format!("/api/v1/members/{}", b.owner_id), &a.key)
                .await,
            404,
            "not_found",
        )
        .await;
        let a_members = json(app.get("/api/v1/members", &a.key).await, 200).await;
        assert!(!a_members.to_string().contains(&b.owner_email));

        // Audit: A's log holds nothing of B's.
        let a_audit = json(app.get("/api/v1/audit-log?limit=200", &a.key).await, 200).await;
        assert!(!a_audit.to_string().contains("bravo"), "{a_audit}");
        assert!(!a_audit.to_string().contains(&b.owner_email));

        // Console: A's owner cannot act on B's key through server functions either.
        let browser = app.signed_in(&a.owner_email, &a.owner_password).await;
        let r = app
            .server_fn(&browser, "revoke_api_key", &format!("id={b_key_id}"))
            .await;
        assert!(r.text().await.unwrap().contains("NotFound"));
        json(app.get("/api/v1/tenant", &b.key).await, 200).await;
        let r = app.server_fn(&browser, "list_members", "").await;
        let members = r.text().await.unwrap();
        assert!(members.contains(&a.owner_email) && !members.contains(&b.owner_email));
    }
}
