//! Issue 31: accounts imported from a Passport app keep their passwords. The hashes
//! are made afresh on every run by the libraries such apps use — Node's `bcrypt` and
//! `bcryptjs`, Python's `bcrypt` and `argon2-cffi`, and scrypt and PBKDF2 from Node's
//! `crypto` and Python's `hashlib` written as PHC strings by the documented one-liners
//! (`tests/vectors/`) — imported with `portcullis users import`, then used to sign in
//! over HTTP, where each becomes Argon2id.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{TestServer, config, on_each_store};

/// One account the hash makers made: its name, password and hash.
#[derive(Debug, Clone)]
struct Vector {
    username: String,
    password: String,
    password_hash: String,
    made_by: String,
}

/// Runs the Node and Python hash makers: `PORTCULLIS_TEST_NODE_MODULES` (a folder
/// with `bcrypt` and `bcryptjs`) and `PORTCULLIS_TEST_HASH_PYTHON` (a Python with
/// `bcrypt` and `argon2-cffi`), which `.ci/run` installs. `None` skips, unless
/// `PORTCULLIS_REQUIRE_HASHERS` is set (CI).
fn vectors() -> Option<Vec<Vector>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let node = std::env::var("PORTCULLIS_TEST_NODE_MODULES")
        .ok()
        .and_then(|modules| {
            Command::new("node")
                .arg(dir.join("legacy-hashes.js"))
                .env("NODE_PATH", modules)
                .output()
                .ok()
                .filter(|o| o.status.success())
        });
    let python = std::env::var("PORTCULLIS_TEST_HASH_PYTHON")
        .ok()
        .and_then(|python| {
            Command::new(python)
                .arg(dir.join("legacy_hashes.py"))
                .output()
                .ok()
                .filter(|o| o.status.success())
        });
    let (Some(node), Some(python)) = (node, python) else {
        assert!(
            std::env::var_os("PORTCULLIS_REQUIRE_HASHERS").is_none(),
            "PORTCULLIS_REQUIRE_HASHERS is set but the Node or Python hash makers did not run"
        );
        eprintln!(
            "skipped: set PORTCULLIS_TEST_NODE_MODULES and PORTCULLIS_TEST_HASH_PYTHON (.ci/run does)"
        );
        return None;
    };
    let mut out = Vec::new();
    for text in [node.stdout, python.stdout] {
        for line in String::from_utf8(text).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            out.push(Vector {
                username: v["username"].as_str().unwrap().into(),
                password: v["password"].as_str().unwrap().into(),
                password_hash: v["password_hash"].as_str().unwrap().into(),
                made_by: v["made_by"].as_str().unwrap().into(),
            });
        }
    }
    assert!(out.len() >= 11, "{out:?}");
    Some(out)
}

/// `portcullis users import` on the test's database, awaited (`clients::clients` says
/// why never blocking).
async fn import(url: &str, file: &std::path::Path, flags: &[&str]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.args(["users", "import"])
        .arg(file)
        .args(flags)
        .args(["--database-url", url]);
    if url.starts_with("postgres") {
        cmd.env("PORTCULLIS_KEY_ENCRYPTION_KEY", crate::support::TEST_KEK);
    }
    cmd.output().await.unwrap()
}

async fn stored_hash(url: &str, username: &str) -> String {
    let store = portcullis_store::open(url).await.unwrap();
    store
        .user_by_username(username)
        .await
        .unwrap()
        .unwrap()
        .password_hash
}

on_each_store! {
    async fn imported_hashes_of_node_and_python_libraries_sign_in_and_become_argon2id(url, dir) {
        let Some(vectors) = vectors() else { return };
        let mut c = config(&url);
        // Two wrong passwords per account from one address: a test of imports, not of
        // the throttle (docs/security-model.md L1–L3 have their own).
        c.login_failures_before_delay = 100;
        let server = TestServer::start(c).await.keep_dir(dir);
        let work = tempfile::tempdir().unwrap();
        let file = work.path().join("users.jsonl");
        let mut lines: Vec<String> = vectors
            .iter()
            .map(|v| json!({ "username": v.username, "password_hash": v.password_hash, "email": format!("{}@example.com", v.username), "email_verified": true, "created_at": "2020-01-02T03:04:05Z" }).to_string())
            .collect();
        // Bad lines, each reported with its number; the rest still import.
        lines.push("{not json".into()); // line 12+
        lines.push(json!({ "username": "plain", "password_hash": "hunter22hunter22" }).to_string());
        lines.push(json!({ "username": "md5user", "password_hash": "5f4dcc3b5aa765d61d8327deb882cf99" }).to_string());
        lines.push(json!({ "username": "node-bcrypt", "password_hash": "$2b$10$skWkwxhMyfzSUe8VFk5v/u8CZ7DHKmYy81JzXgI5hJImE3GUMQa5a" }).to_string());
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        let n = vectors.len();

        let dry = import(&url, &file, &["--dry-run"]).await;
        let dry_out = String::from_utf8_lossy(&dry.stdout).to_string();
        assert!(dry_out.starts_with(&format!("dry run: would have imported {}", n + 1)), "{dry_out}{}", String::from_utf8_lossy(&dry.stderr));
        assert!(portcullis_store::open(&url).await.unwrap().user_by_username(&vectors[0].username).await.unwrap().is_none());

        let out = import(&url, &file, &[]).await;
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(2), "a refused line makes exit 2: {stdout}{stderr}");
        assert!(stdout.starts_with(&format!("imported {}, updated 0, skipped 1 (username taken), refused 2", n + 1)), "{stdout}{stderr}");
        assert!(stderr.contains(&format!("line {}: refused: not an account", n + 1)), "{stderr}");
        assert!(stderr.contains(&format!("line {}: refused: password_hash", n + 2)), "{stderr}");
        assert!(stderr.contains(&format!("line {}: imported disabled", n + 3)), "{stderr}");
        // One audit record for the run (none for the dry run), with its counts.
        let store = portcullis_store::open(&url).await.unwrap();
        let runs = store.audit(&portcullis_store::AuditFilter { subject: None, kind: Some("users.imported"), after: None, since: None, limit: 10 }).await.unwrap();
        assert_eq!(runs.len(), 1, "{runs:?}");
        let detail: serde_json::Value = serde_json::from_str(&runs[0].detail).unwrap();
        assert_eq!((runs[0].actor.as_deref(), &detail["imported"], &detail["refused"], &detail["disabled_weak"]),
            (Some("operator"), &json!(n + 1), &json!(2), &json!(1)));

        // Each kind: a wrong password is refused; the right one signs in, and the stored
        // hash becomes Argon2id at the server's parameters; it signs in again after.
        for v in &vectors {
            assert_eq!(server.login(&v.username, "not the password at all").await.status(), 401, "{}", v.made_by);
            assert_eq!(stored_hash(&url, &v.username).await, v.password_hash);
        }
        for (n, v) in vectors.iter().enumerate() {
            // Every other account signs in with a cookie session (the pages' way, and
            // the OAuth sign-in's), the others with a JSON login: both rehash.
            let r = if n % 2 == 0 {
                server.login(&v.username, &v.password).await
            } else {
                server.post("/session/login", json!({ "username": v.username, "password": v.password })).await
            };
            assert_eq!(r.status(), 200, "{}", v.made_by);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let now = stored_hash(&url, &v.username).await;
                if now.starts_with("$argon2id$v=19$m=19456,t=2,p=1$") {
                    break;
                }
                assert!(Instant::now() < deadline, "{}: still {now}", v.made_by);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(server.login(&v.username, &v.password).await.status(), 200, "{} after the upgrade", v.made_by);
            assert_eq!(server.login(&v.username, "not the password at all").await.status(), 401);
        }
        // The account with a hash too weak to keep is there, disabled, and no password
        // opens it.
        let store = portcullis_store::open(&url).await.unwrap();
        let md5 = store.user_by_username("md5user").await.unwrap().unwrap();
        assert!(md5.disabled && md5.password_hash.starts_with('!'));
        assert_eq!(server.login("md5user", "password").await.status(), 401);
        // The same file again: nothing new; every account skipped.
        let again = import(&url, &file, &[]).await;
        assert!(String::from_utf8_lossy(&again.stdout).starts_with(&format!("imported 0, updated 0, skipped {}", n + 2)), "{}", String::from_utf8_lossy(&again.stdout));
        server.stop().await;
    }
}
