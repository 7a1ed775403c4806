//! Issue 25: the audit trail and webhooks, on SQLite and PostgreSQL. A scripted
//! session's trail lists exactly its events with their actors; nothing secret is in
//! the trail, the outbox or the CLI's export; webhooks reach a receiver that verifies
//! them with the Standard Webhooks Python library, through its outage, its 500s and its
//! slowness, and back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TEST_KEK, TestServer, config, on_each_store, s, still_clock};

/// Polls `check` for up to twenty seconds: a delivery waits for the sender's next
/// round (each second), and a slow receiver holds it for the timeout.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const PASSWORD: &str = "correct horse battery";

/// Runs `portcullis ARGS --database-url URL` (with the tests' key-encryption key on
/// PostgreSQL and loopback webhooks allowed); (success, stdout, stderr).
async fn cli(url: &str, args: &[&str]) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.args(args).args(["--database-url", url]);
    if url.starts_with("postgres") {
        cmd.env("PORTCULLIS_KEY_ENCRYPTION_KEY", TEST_KEK);
    }
    cmd.env("PORTCULLIS_WEBHOOK_ALLOW_LOOPBACK", "true");
    let out = cmd.output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

async fn get(server: &TestServer, path: &str, token: &str) -> (StatusCode, Value) {
    let r = server
        .client
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// An admin's access token: `root`, signed up, given `admin`, signed in.
async fn admin(server: &TestServer, url: &str) -> String {
    assert_eq!(server.signup("root", PASSWORD).await.status(), 201);
    let (ok, _, err) = cli(url, &["users", "grant-scope", "root", "admin"]).await;
    assert!(ok, "{err}");
    s(
        &server
            .login("root", PASSWORD)
            .await
            .json::<Value>()
            .await
            .unwrap(),
        "access_token",
    )
}

async fn id_of(url: &str, name: &str) -> String {
    let store = portcullis_store::open(url).await.unwrap();
    store.user_by_username(name).await.unwrap().unwrap().id
}

/// Every text column of the trail and the webhook outbox, read from the database.
async fn stored_text(url: &str) -> String {
    let mut text = String::new();
    let store = portcullis_store::open(url).await.unwrap();
    for r in store
        .audit(&portcullis_store::AuditFilter {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
    {
        text.push_str(&format!("{r:?}\n"));
    }
    let rows: Vec<(String, String, String)> = if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query_as(
            "SELECT message_id, payload, COALESCE(last_error, '') FROM webhook_deliveries",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    } else {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query_as(
            "SELECT message_id, payload, COALESCE(last_error, '') FROM webhook_deliveries",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    for (a, b, c) in rows {
        text.push_str(&format!("{a} {b} {c}\n"));
    }
    text
}

on_each_store! {
    /// Signup, a failed login, a login, a refresh token reused, an admin's disabling:
    /// the person's trail is exactly those, with their actors, addresses and user
    /// agents; the admin API pages it with a cursor and filters it; `portcullis audit`
    /// lists the same; no password or token used is anywhere in it.
    async fn the_trail_of_a_scripted_session_lists_exactly_its_events(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        let root = admin(&server, &url).await;
        let root_id = id_of(&url, "root").await;

        let r = server.client.post(server.url("/auth/signup")).header("user-agent", "audit-test/1.0")
            .json(&json!({ "username": "alice", "password": PASSWORD })).send().await.unwrap();
        assert_eq!(r.status(), 201);
        let alice = id_of(&url, "alice").await;
        assert_eq!(server.login("alice", "not the password").await.status(), 401);
        let tokens: Value = server.login("alice", PASSWORD).await.json().await.unwrap();
        let first = s(&tokens, "refresh_token");
        let access = s(&tokens, "access_token");
        let next: Value = server.refresh(&first).await.json().await.unwrap();
        let second = s(&next, "refresh_token");
        // Two rotations on, the first token is no retry within the grace window: reuse.
        let third = s(&server.refresh(&second).await.json::<Value>().await.unwrap(), "refresh_token");
        assert_eq!(server.refresh(&first).await.status(), 400, "the reused token is refused");
        let r = server.client.patch(server.url(&format!("/admin/users/{alice}"))).bearer_auth(&root)
            .json(&json!({ "disabled": true })).send().await.unwrap();
        assert_eq!(r.status(), 200);

        let (st, page) = get(&server, &format!("/admin/audit?user={alice}"), &root).await;
        assert_eq!(st, 200, "{page}");
        let records = page["records"].as_array().unwrap();
        let seen: Vec<(&str, Option<&str>)> = records.iter()
            .map(|r| (r["kind"].as_str().unwrap(), r["actor"].as_str())).collect();
        let by_alice = format!("user:{alice}");
        let by_root = format!("user:{root_id}");
        assert_eq!(seen, [
            ("user.created", Some(by_alice.as_str())),
            ("login.failed", None),
            ("login.succeeded", Some(by_alice.as_str())),
            ("refresh.reused", None),
            ("logout.everywhere", Some(by_root.as_str())),
            ("user.disabled", Some(by_root.as_str())),
        ]);
        assert_eq!(records[0]["user_agent"], "audit-test/1.0");
        assert_eq!(records[0]["address"], "127.0.0.1");
        assert_eq!(records[1]["detail"]["reason"], "wrong_password");
        assert_eq!(records[2]["detail"]["via"], "token");
        for r in records {
            assert_eq!(r["user"].as_str(), Some(alice.as_str()));
        }
        // An unknown name is a failure about nobody.
        assert_eq!(server.login("nobody-here", PASSWORD).await.status(), 401);
        let (_, failed) = get(&server, "/admin/audit?kind=login.failed", &root).await;
        let failed = failed["records"].as_array().unwrap();
        assert_eq!(failed.last().unwrap()["detail"]["reason"], "unknown_account");
        assert!(failed.last().unwrap()["user"].is_null());

        // Pages with a cursor: every record once, in order.
        let mut ids = Vec::new();
        let mut after = String::new();
        loop {
            let (st, page) = get(&server, &format!("/admin/audit?limit=2{after}"), &root).await;
            assert_eq!(st, 200);
            ids.extend(page["records"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()));
            match page["next"].as_str() {
                Some(next) => after = format!("&after={next}"),
                None => break,
            }
        }
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(ids, sorted);
        assert!(ids.len() >= 9, "{ids:?}");

        // Bad queries, and callers without admin.
        for bad in ["limit=0", "limit=201", "after=x", "after=-1", "kind=user.exploded", "sort=id"] {
            let (st, body) = get(&server, &format!("/admin/audit?{bad}"), &root).await;
            assert_eq!((st, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{bad}");
        }
        assert_eq!(server.signup("bob", PASSWORD).await.status(), 201);
        let bob = s(&server.login("bob", PASSWORD).await.json::<Value>().await.unwrap(), "access_token");
        assert_eq!(get(&server, "/admin/audit", &bob).await.0, StatusCode::FORBIDDEN);
        assert_eq!(server.client.get(server.url("/admin/audit")).send().await.unwrap().status(), 401);

        // The CLI reads the same trail.
        let (ok, out, err) = cli(&url, &["audit", "--user", "alice", "--json"]).await;
        assert!(ok, "{err}");
        let kinds: Vec<String> = out.lines().map(|l| s(&serde_json::from_str(l).unwrap(), "kind")).collect();
        assert_eq!(kinds, ["user.created", "login.failed", "login.succeeded", "refresh.reused", "logout.everywhere", "user.disabled"]);
        let (ok, table, _) = cli(&url, &["audit", "--kind", "user.disabled", "--since", "1h"]).await;
        assert!(ok);
        assert_eq!(table.lines().count(), 2, "{table}");
        assert!(!cli(&url, &["audit", "--kind", "nope"]).await.0);

        // Nothing secret: not the password, not a token, in the table, the outbox or
        // the export.
        let stored = stored_text(&url).await + &out + &table;
        for secret in [PASSWORD, "not the password", first.as_str(), second.as_str(), third.as_str(), access.as_str(), root.as_str(), bob.as_str()] {
            assert!(!stored.contains(secret), "a secret is in the audit trail");
        }
        // Not even the names typed: the trail holds ids.
        assert!(!stored.contains("nobody-here"));

        // Erasure: the account's records stay under its id, without its addresses.
        let r = server.client.delete(server.url(&format!("/admin/users/{alice}"))).bearer_auth(&root).send().await.unwrap();
        assert_eq!(r.status(), 204);
        let (_, page) = get(&server, &format!("/admin/audit?user={alice}"), &root).await;
        let records = page["records"].as_array().unwrap();
        assert_eq!(records.last().unwrap()["kind"], "user.deleted");
        for r in &records[..records.len() - 1] {
            assert!(r["address"].is_null() && r["user_agent"].is_null(), "{r}");
        }
    }
}

/// A Python able to run the Standard Webhooks library: `PORTCULLIS_TEST_WEBHOOK_PYTHON`,
/// or `python3` if it imports it. `None` skips, unless `PORTCULLIS_REQUIRE_WEBHOOKS`
/// is set (CI).
fn webhook_python() -> Option<String> {
    let python =
        std::env::var("PORTCULLIS_TEST_WEBHOOK_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = std::process::Command::new(&python)
        .args(["-c", "import standardwebhooks"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    assert!(
        std::env::var_os("PORTCULLIS_REQUIRE_WEBHOOKS").is_none(),
        "PORTCULLIS_REQUIRE_WEBHOOKS is set but {python} cannot import standardwebhooks"
    );
    eprintln!("skipped: no Python with standardwebhooks (set PORTCULLIS_TEST_WEBHOOK_PYTHON)");
    None
}

/// The receiver script, on `port`, writing into `folder`; killed when dropped.
struct Receiver(std::process::Child);

impl Receiver {
    async fn start(python: &str, secret_file: &Path, port: u16, folder: &Path) -> Receiver {
        let _ = std::fs::remove_file(folder.join("ready"));
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/webhook_receiver.py");
        let child = std::process::Command::new(python)
            .arg(script)
            .arg(secret_file)
            .arg(port.to_string())
            .arg(folder)
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if folder.join("ready").exists() {
                return Receiver(child);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
        panic!("the webhook receiver did not start");
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the receiver accepted: (webhook-id, payload).
fn received(folder: &Path) -> Vec<(String, Value)> {
    std::fs::read_to_string(folder.join("received"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (s(&v, "id"), v["payload"].clone())
        })
        .collect()
}

fn types(folder: &Path) -> Vec<String> {
    received(folder).iter().map(|(_, p)| s(p, "type")).collect()
}

on_each_store! {
    /// Webhooks from `portcullis webhooks add` to a receiver that verifies them with
    /// the Standard Webhooks library: delivered, then held through an hour's outage, a
    /// 500 and a receiver slower than the timeout, and delivered when it is back, each
    /// message once with its stable id; `webhooks list|test|remove`; URLs that are not
    /// https to a public address are refused.
    async fn webhooks_reach_a_verifying_receiver_through_its_outage(url, dir) {
        let Some(python) = webhook_python() else { return };
        let work = tempfile::tempdir().unwrap();
        let folder = work.path();
        let secret_file = folder.join("secret");
        std::fs::write(&secret_file, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let receiver = Receiver::start(&python, &secret_file, port, folder).await;

        let clock = still_clock();
        let mut c = config(&url);
        c.webhook_allow_loopback = true;
        c.webhook_timeout = Duration::from_secs(1);
        let server = TestServer::start_with(c, clock.clone()).await.keep_dir(dir);
        let root = admin(&server, &url).await;

        // Refused URLs.
        for bad in ["http://hooks.example.com/in", "https://10.0.0.7/in", "https://169.254.169.254/", "ftp://x.example/", "https://u:p@hooks.example.com/"] {
            let (ok, _, err) = cli(&url, &["webhooks", "add", bad, "--events", "user.created"]).await;
            assert!(!ok, "{bad} was accepted");
            assert!(!err.is_empty());
        }
        let (ok, _, err) = cli(&url, &["webhooks", "add", "https://hooks.example.com/", "--events", "user.exploded"]).await;
        assert!(!ok && err.contains("--events"), "{err}");

        let target = format!("http://127.0.0.1:{port}/hook");
        let (ok, out, err) = cli(&url, &["webhooks", "add", &target, "--events", "user.created,user.disabled,session.revoked",
            "--secret-file", secret_file.to_str().unwrap()]).await;
        assert!(ok, "{err}");
        let hook: Value = serde_json::from_str(&out).unwrap();
        assert!(hook.get("secret").is_none(), "a given secret is not printed");
        let hook_id = s(&hook, "id");
        // One more, with a secret made for it (printed once), removed again.
        let (ok, out, _) = cli(&url, &["webhooks", "add", "https://hooks.example.com/in", "--events", "*"]).await;
        assert!(ok);
        let other: Value = serde_json::from_str(&out).unwrap();
        assert!(s(&other, "secret").starts_with("whsec_"));

        // Delivered and verified.
        assert_eq!(server.signup("alice", PASSWORD).await.status(), 201);
        let alice = id_of(&url, "alice").await;
        eventually("user.created reaches the receiver", || async { types(folder).contains(&"user.created".to_owned()) }).await;
        let created = received(folder).into_iter().find(|(_, p)| p["data"]["user_id"] == alice.as_str()).unwrap();
        assert!(created.0.starts_with("msg_"));
        assert_eq!(created.1["data"]["actor"], format!("user:{alice}"));
        let (ok, _, _) = cli(&url, &["webhooks", "remove", &s(&other, "id")]).await;
        assert!(ok);

        // The receiver goes away for an hour: a disabling's two messages wait.
        drop(receiver);
        let before = received(folder).len();
        let r = server.client.patch(server.url(&format!("/admin/users/{alice}"))).bearer_auth(&root)
            .json(&json!({ "disabled": true })).send().await.unwrap();
        assert_eq!(r.status(), 200);
        eventually("the deliveries fail and wait", || async {
            let (_, list, _) = cli(&url, &["webhooks", "list"]).await;
            list.lines().any(|l| l.starts_with(&hook_id) && l.split('\t').nth(3) == Some("2") && !l.ends_with("\t-"))
        }).await;
        for _ in 0..6 {
            clock.advance(600);
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        assert_eq!(received(folder).len(), before, "nothing arrives while the receiver is down");
        let receiver = Receiver::start(&python, &secret_file, port, folder).await;
        clock.advance(3600);
        eventually("both wait no more", || async { received(folder).len() == before + 2 }).await;
        let t = types(folder);
        assert!(t.contains(&"user.disabled".to_owned()) && t.contains(&"session.revoked".to_owned()), "{t:?}");

        // A 500, then a receiver slower than webhook_timeout: tried again, not lost.
        std::fs::write(folder.join("mode"), "fail").unwrap();
        assert_eq!(server.signup("bob", PASSWORD).await.status(), 201);
        eventually("the 500 is written down", || async {
            cli(&url, &["webhooks", "list"]).await.1.contains("the receiver answered 500")
        }).await;
        std::fs::write(folder.join("mode"), "slow").unwrap();
        clock.advance(3600);
        eventually("the timeout is written down", || async {
            cli(&url, &["webhooks", "list"]).await.1.contains("no answer in time")
        }).await;
        std::fs::write(folder.join("mode"), "ok").unwrap();
        // The slow receiver may have recorded it after the timeout: at least once.
        clock.advance(3600);
        let bob = id_of(&url, "bob").await;
        eventually("bob's user.created arrives", || async {
            received(folder).iter().any(|(_, p)| p["data"]["user_id"] == bob.as_str())
        }).await;

        // `webhooks test` queues one for a running server.
        let (ok, out, _) = cli(&url, &["webhooks", "test", &hook_id]).await;
        assert!(ok);
        let test_id = out.split(':').next().unwrap().to_owned();
        eventually("the test message arrives", || async { received(folder).iter().any(|(id, _)| *id == test_id) }).await;
        assert!(!cli(&url, &["webhooks", "test", "wh_nope"]).await.0);

        // Every message has its own id; one id is one event (a retry repeats its id).
        let all = received(folder);
        let mut by_id = std::collections::HashMap::new();
        for (id, payload) in &all {
            let earlier = by_id.insert(id.clone(), payload.clone());
            assert!(earlier.is_none_or(|p| p == *payload), "one id, two bodies");
        }
        assert!(!folder.join("refused").exists(), "every delivery verified");
        // A delivery the slow receiver recorded after the timeout is still due again on
        // the server (its retry waits on the clock): once the clock has moved on,
        // nothing waits and nothing was given up.
        let mut line = String::new();
        for _ in 0..20 {
            let (_, list, _) = cli(&url, &["webhooks", "list"]).await;
            line = list.lines().find(|l| l.starts_with(&hook_id)).unwrap().to_owned();
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols[5], "0", "nothing given up: {line}");
            if cols[3] == "0" {
                break;
            }
            clock.advance(3600);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!((cols[3], cols[5]), ("0", "0"), "nothing waits, nothing given up: {line}");
        drop(receiver);
    }
}
