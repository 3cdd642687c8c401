//! The admin CLI works on the same database as the server.

use std::process::Command;

use crate::helpers::*;

fn server_cmd(
    app_dir: &std::path::Path,
    database_url: &str,
    args: &[&str],
) -> (bool, String, String) {
    server_cmd_with(app_dir, database_url, args, &[])
}

/// Runs the server binary with `args` on a database: (succeeded, stdout, stderr).
pub(crate) fn server_cmd_with(
    app_dir: &std::path::Path,
    database_url: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(args)
        .env("DATA_DIR", app_dir)
        .env("DATABASE_URL", database_url)
        .env("DEMO_TENANT", "false")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .expect("run server binary");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test]
async fn cli_creates_tenants_users_and_keys() {
    let (ok, help, _) = server_cmd(&scratch_dir(), "sqlite::memory:", &["--help"]);
    assert!(ok);
    for sub in ["serve", "migrate", "tenant", "user", "apikey"] {
        assert!(help.contains(sub), "{sub} missing from --help:\n{help}");
    }
    for backend in backends().await {
        let dir = scratch_dir();
        let url = fresh_database(backend, &dir).await;
        let run = |args: &[&str]| server_cmd(&dir, &url, args);

        let (ok, out, err) = run(&["migrate"]);
        assert!(ok, "{out}{err}");
        let (ok, out, err) = run(&["tenant", "create", "acme", "--name", "Acme Dental"]);
        assert!(ok && out.contains("acme"), "{out}{err}");
        let (ok, _, err) = run(&["tenant", "create", "Bad Slug"]);
        assert!(!ok && err.contains("slug"), "{err}");
        let (ok, out, _) = run(&["tenant", "list"]);
        assert!(ok && out.contains("Acme Dental"));

        let (ok, out, err) = run(&[
            "user",
            "create",
            "bob@acme.test",
            "--tenant",
            "acme",
            "--role",
            "admin",
        ]);
        assert!(ok, "{out}{err}");
        let password = out.lines().last().unwrap().trim().to_string();
        let (ok, _, err) = run(&[
            "user",
            "create",
            "eve@acme.test",
            "--tenant",
            "nope",
            "--role",
            "admin",
        ]);
        assert!(!ok && err.contains("no tenant"), "{err}");
        let (ok, _, err) = run(&["tenant", "create", "beta"]);
        assert!(ok, "{err}");
        let (ok, out, err) = run(&[
            "user",
            "create",
            "bob@acme.test",
            "--tenant",
            "beta",
            "--role",
            "viewer",
        ]);
        assert!(ok && out.contains("already has an account"), "{out}{err}");

        let (ok, out, err) = run(&[
            "apikey",
            "create",
            "--tenant",
            "acme",
            "--scopes",
            "tenant:read,members:read",
        ]);
        assert!(ok, "{out}{err}");
        let key = out.lines().last().unwrap().trim().to_string();
        assert!(key.starts_with("apk_"), "{out}");

        let app = TestApp::spawn_on(backend, dir.clone(), url.clone(), &[]).await;
        assert_eq!(
            json(app.get("/api/v1/tenant", &key).await, 200).await["name"],
            "Acme Dental"
        );
        let members = json(app.get("/api/v1/members", &key).await, 200).await;
        assert_eq!(members[0]["email"], "bob@acme.test");
        app.signed_in("bob@acme.test", &password).await;
        let acme = server::tenancy::find_by_slug(&app.db, "acme")
            .await
            .unwrap()
            .unwrap();
        let audit = app
            .services
            .tenancy
            .list_audit(&server::tenancy::cli_access(acme.id), Default::default())
            .await
            .unwrap();
        let by_cli: Vec<&str> = audit
            .items
            .iter()
            .filter(|e| e.actor == "cli")
            .map(|e| e.action.as_str())
            .collect();
        assert!(
            by_cli.contains(&"api_key.create") && by_cli.contains(&"member.create_user"),
            "{by_cli:?}"
        );
    }
}
