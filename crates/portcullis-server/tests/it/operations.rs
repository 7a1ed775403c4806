//! What an operator runs: readiness, and backup and restore of the SQLite database.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use crate::support::{TestServer, config, s, sqlite_db};

const PASSWORD: &str = "correct horse battery";

/// Runs the binary with `args`; its output, whatever its status.
fn portcullis(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn readyz_checks_the_store_keys_and_event_log_and_healthz_stays_liveness() {
    let (url, dir) = sqlite_db();
    let server = TestServer::start(config(&url)).await.keep_dir(dir);
    let r = server
        .client
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ready", "{body}");
    for check in ["store", "signing_key"] {
        assert_eq!(body["checks"][check], "ok", "{body}");
    }
    // Informational: "ok", or how many events are still to be applied.
    let events = body["checks"]["event_log"].as_str().unwrap();
    assert!(
        events == "ok" || events.ends_with("not applied yet") || events == "being read",
        "{body}"
    );
    // The API describes itself (OpenAPI 3.1), every route included (a unit test
    // checks the routes against routes/mod.rs).
    let api: Value = server
        .client
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(api["openapi"].as_str().unwrap().starts_with("3.1"), "{api}");
    assert!(api["paths"]["/oauth/token"]["post"].is_object());
    assert!(api["components"]["securitySchemes"]["bearer"].is_object());

    // The database gone (its file removed under the running server is not enough for
    // SQLite, which keeps it open): drop the events table, as a broken store would.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("DROP TABLE events")
        .execute(&pool)
        .await
        .unwrap();
    // Answers are reused for a second (the route is public: one store query a second),
    // so the check waits that long.
    let ready = || async {
        server
            .client
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
    };
    // (a first answer made in the last second may still be served as it was)
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = ready().await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "not_ready", "{body}");
    // A fixed word, not the database's error text.
    assert_eq!(body["checks"]["store"], "unreachable", "{body}");
    let r = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "liveness is not readiness");
    server.stop().await;
}

#[tokio::test]
async fn a_backup_taken_under_load_restores_to_a_server_that_accepts_every_earlier_refresh_token() {
    let (url, dir) = sqlite_db();
    let dir = dir.unwrap();
    let server = Arc::new(TestServer::start(config(&url)).await);
    for name in ["ada", "bo"] {
        assert_eq!(server.signup(name, PASSWORD).await.status(), 201);
    }
    // Refresh tokens issued before the backup: each must work on the restored server.
    let mut before = Vec::new();
    for _ in 0..6 {
        let r: Value = server.login("ada", PASSWORD).await.json().await.unwrap();
        before.push(s(&r, "refresh_token"));
    }

    // A load of logins and refreshes while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (server, stop) = (server.clone(), stop.clone());
        tokio::spawn(async move {
            let mut done = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let r: Value = server.login("bo", PASSWORD).await.json().await.unwrap();
                let r = server.refresh(&s(&r, "refresh_token")).await;
                assert_eq!(r.status(), 200);
                done += 1;
            }
            done
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let file = dir.path().join("backup.db");
    let file_arg = file.display().to_string();
    let out = tokio::task::spawn_blocking({
        let url = url.clone();
        move || portcullis(&["backup", "--database-url", &url, &file_arg])
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stop.store(true, Ordering::Relaxed);
    let during = load.await.unwrap();
    assert!(during > 0, "the load ran");

    // A restore over the database of a running server is refused, and changes nothing.
    let out = portcullis(&[
        "restore",
        "--force",
        "--database-url",
        &url,
        &file.display().to_string(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = server.login("ada", PASSWORD).await.json().await.unwrap();
    assert!(r.get("refresh_token").is_some(), "still serving: {r}");
    // A file name SQLite could misread (a quote, a question mark, a `file:` prefix).
    let odd = dir.path().join("file:it's?.db");
    let out = portcullis(&["backup", "--database-url", &url, &odd.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(odd.exists() && std::fs::metadata(&odd).unwrap().len() > 0);
    assert!(!dir.path().join("file:it's?.db.partial").exists());
    Arc::into_inner(server).unwrap().stop().await;

    // The copy is owner-only, holds no key in the clear, and is a database of ours.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let raw = std::fs::read(&file).unwrap();
    assert!(
        !raw.windows(5).any(|w| w == b"\"d\":\""),
        "a private key in the clear"
    );

    // Restored elsewhere, with the same key-encryption key: every earlier token works.
    let restored = dir.path().join("restored.db");
    let restored_url = format!("sqlite://{}", restored.display());
    let out = portcullis(&[
        "restore",
        "--database-url",
        &restored_url,
        &file.display().to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A second restore over it needs --force.
    let out = portcullis(&[
        "restore",
        "--database-url",
        &restored_url,
        &file.display().to_string(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    std::fs::copy(
        dir.path().join("test.db.kek"),
        dir.path().join("restored.db.kek"),
    )
    .unwrap();
    let server = TestServer::start(config(&restored_url)).await;
    for token in &before {
        let r = server.refresh(token).await;
        assert_eq!(r.status(), 200, "a token issued before the backup");
    }
    server.stop().await;

    // Not a database of ours: refused, nothing replaced.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"not sqlite").unwrap();
    let out = portcullis(&[
        "restore",
        "--force",
        "--database-url",
        &restored_url,
        &junk.display().to_string(),
    ]);
    assert!(!out.status.success());
    assert!(restored.exists());
    // PostgreSQL is pg_dump's job.
    let out = portcullis(&[
        "backup",
        "--database-url",
        "postgres://nobody@127.0.0.1:1/x",
        "x.db",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pg_dump"));
}
