//! The HTTP contract over real HTTP, on SQLite and (when configured) PostgreSQL.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{TestServer, config, on_each_store, s, sqlite_db};

on_each_store! {
    async fn the_whole_flow_works_on_every_store(url, dir) {
        let mut c = config(&url);
        c.refresh_grace = Duration::ZERO;
        let server = TestServer::start(c).await.keep_dir(dir);

        let signup = server.signup("Alice", "correct horse battery").await;
        assert_eq!(signup.status(), 201, "{url}");
        let created: Value = signup.json().await.unwrap();
        assert_eq!(created["username"], "alice");

        let login = server.login("ALICE", "correct horse battery").await;
        assert_eq!(login.status(), 200);
        assert_eq!(login.headers()["cache-control"], "no-store");
        let tokens: Value = login.json().await.unwrap();
        assert_eq!(tokens["token_type"], "Bearer");
        assert_eq!(tokens["expires_in"], 900);
        let access = s(&tokens, "access_token");
        let refresh = s(&tokens, "refresh_token");

        let me: Value = server.me(&access).await.json().await.unwrap();
        assert_eq!(me["id"], created["id"]);
        assert_eq!(me["username"], "alice");

        let rotated = server.refresh(&refresh).await;
        assert_eq!(rotated.status(), 200);
        let rotated: Value = rotated.json().await.unwrap();
        let new_refresh = s(&rotated, "refresh_token");
        assert_ne!(new_refresh, refresh);
        assert_eq!(server.me(&s(&rotated, "access_token")).await.status(), 200);

        // Reusing the rotated token revokes the whole family, new token included.
        let reuse = server.refresh(&refresh).await;
        assert_eq!(reuse.status(), 400);
        assert_eq!(
            reuse.json::<Value>().await.unwrap()["error"],
            "invalid_grant"
        );
        assert_eq!(server.refresh(&new_refresh).await.status(), 400);
        assert_eq!(
            server.me(&s(&rotated, "access_token")).await.status(),
            401,
            "its session is revoked"
        );

        // A second session; logout-all ends it and refuses its access token.
        let second: Value = server
            .login("alice", "correct horse battery")
            .await
            .json()
            .await
            .unwrap();
        let access2 = s(&second, "access_token");
        assert_eq!(server.me(&access2).await.status(), 200);
        let all = server
            .client
            .post(server.url("/auth/logout-all"))
            .bearer_auth(&access2)
            .send()
            .await
            .unwrap();
        assert_eq!(all.status(), 204);
        let refused = server.me(&access2).await;
        assert_eq!(refused.status(), 401);
        assert!(
            refused.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
        assert_eq!(
            server.refresh(&s(&second, "refresh_token")).await.status(),
            400
        );
        assert_eq!(server.me(&access).await.status(), 401, "older tokens too");
        server.stop().await;
    }
}

#[tokio::test]
async fn signup_and_login_errors_follow_the_contract() {
    let (url, dir) = sqlite_db();
    let server = TestServer::start(config(&url)).await.keep_dir(dir);
    assert_eq!(
        server.signup("bob", "correct horse battery").await.status(),
        201
    );

    let taken = server.signup("BOB", "another password").await;
    assert_eq!(taken.status(), 409);
    assert_eq!(
        taken.json::<Value>().await.unwrap()["error"],
        "username_taken"
    );

    for (body, what) in [
        (
            json!({"username": "carol", "password": "short"}),
            "at least 8",
        ),
        (
            json!({"username": "carol", "password": "x".repeat(1025)}),
            "at most 1024",
        ),
        (
            json!({"username": "bad name", "password": "correct horse battery"}),
            "username",
        ),
        (json!({"username": "carol"}), "password"),
        (
            json!({"username": 5, "password": "correct horse battery"}),
            "invalid",
        ),
        (
            json!({"username": "carol", "password": "correct horse battery", "admin": true}),
            "admin",
        ),
    ] {
        let r = server.post("/auth/signup", body.clone()).await;
        assert_eq!(r.status(), 400, "{body}");
        let err: Value = r.json().await.unwrap();
        assert_eq!(err["error"], "invalid_request");
        assert!(
            err["error_description"].as_str().unwrap().contains(what),
            "{err}"
        );
    }
    let malformed = server
        .client
        .post(server.url("/auth/signup"))
        .header("content-type", "application/json")
        .body("{\"username\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let no_type = server
        .client
        .post(server.url("/auth/signup"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(no_type.status(), 400);
    let huge = server
        .client
        .post(server.url("/auth/signup"))
        .header("content-type", "application/json")
        .body(format!(
            "{{\"username\":\"x\",\"password\":\"{}\"}}",
            "a".repeat(64 * 1024)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);

    // Unknown user and wrong password: same status, same body.
    let wrong = server.login("bob", "wrong password!").await;
    let unknown = server.login("nobody", "wrong password!").await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(unknown.status(), 401);
    let (wrong, unknown): (Value, Value) =
        (wrong.json().await.unwrap(), unknown.json().await.unwrap());
    assert_eq!(wrong, unknown);
    assert_eq!(wrong["error"], "invalid_credentials");

    // Nothing was written by the refused signups.
    assert_eq!(
        server
            .login("carol", "correct horse battery")
            .await
            .status(),
        401
    );
    server.stop().await;
}

#[tokio::test]
async fn repeated_failed_logins_are_throttled_with_retry_after() {
    let (url, dir) = sqlite_db();
    // A clock that does not move: the test cannot depend on how fast the machine is.
    let clock = portcullis::clock::ManualClock::new(1_800_000_000);
    let server = TestServer::start_with(config(&url), std::sync::Arc::new(clock.clone()))
        .await
        .keep_dir(dir);
    server.signup("dave", "correct horse battery").await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(server.login("dave", "wrong password!").await);
    }
    let last = statuses.pop().unwrap();
    assert_eq!(last.status(), 429);
    let retry: i64 = last.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    // Even the right password waits: the throttle is checked first.
    assert_eq!(
        server.login("dave", "correct horse battery").await.status(),
        429
    );
    // But not for long: once the delay has passed, the owner gets in.
    clock.advance(retry);
    assert_eq!(
        server.login("dave", "correct horse battery").await.status(),
        200
    );
    server.stop().await;
}

#[tokio::test]
async fn bearer_failures_follow_rfc_6750() {
    let (url, dir) = sqlite_db();
    let server = TestServer::start(config(&url)).await.keep_dir(dir);
    let tokens = server.account("erin").await;
    let access = s(&tokens, "access_token");

    let none = server
        .client
        .get(server.url("/auth/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(
        none.headers()["www-authenticate"],
        "Bearer realm=\"portcullis\""
    );

    let bad = server.me("not.a.token").await;
    assert_eq!(bad.status(), 401);
    assert!(
        bad.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");

    let two = server
        .client
        .get(server.url("/auth/me"))
        .header("authorization", format!("Bearer {access}"))
        .header("authorization", format!("Bearer {access}"))
        .send()
        .await
        .unwrap();
    assert_eq!(two.status(), 400);
    let query = server
        .client
        .get(server.url(&format!("/auth/me?access_token={access}")))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(query.status(), 400);
    let lower = server
        .client
        .get(server.url("/auth/me"))
        .header("authorization", format!("bearer {access}"))
        .send()
        .await
        .unwrap();
    assert_eq!(lower.status(), 200, "the scheme is case-insensitive");
    server.stop().await;
}

#[tokio::test]
async fn logout_revokes_the_family_and_its_access_tokens() {
    let (url, dir) = sqlite_db();
    let server = TestServer::start(config(&url)).await.keep_dir(dir);
    let tokens = server.account("frank").await;
    let r = server
        .post(
            "/auth/logout",
            json!({"refresh_token": s(&tokens, "refresh_token")}),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        server.refresh(&s(&tokens, "refresh_token")).await.status(),
        400
    );
    assert_eq!(server.me(&s(&tokens, "access_token")).await.status(), 401);
    let unknown = server
        .post("/auth/logout", json!({"refresh_token": "A".repeat(43)}))
        .await;
    assert_eq!(unknown.status(), 400);
    assert_eq!(
        unknown.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    let malformed = server
        .post("/auth/logout", json!({"refresh_token": "nope"}))
        .await;
    assert_eq!(malformed.status(), 400);
    server.stop().await;
}

/// A retry within the grace window gets a fresh pair, and the successor it replaces
/// dies: one live chain (issue 9, finding 5 — this test used to assert the fork).
#[tokio::test]
async fn within_the_grace_window_a_retry_gets_a_new_pair_and_the_replaced_successor_dies() {
    let (url, dir) = sqlite_db();
    let server = TestServer::start(config(&url)).await.keep_dir(dir); // grace 10 s
    let tokens = server.account("gina").await;
    let first: Value = server
        .refresh(&s(&tokens, "refresh_token"))
        .await
        .json()
        .await
        .unwrap();
    let again = server.refresh(&s(&tokens, "refresh_token")).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_ne!(s(&again, "refresh_token"), s(&first, "refresh_token"));
    assert_eq!(
        server.refresh(&s(&again, "refresh_token")).await.status(),
        200,
        "the retry's chain is the live one"
    );
    // The successor the retry replaced is dead: using it is reuse.
    let replaced = server.refresh(&s(&first, "refresh_token")).await;
    assert_eq!(replaced.status(), 400);
    assert_eq!(
        replaced.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    server.stop().await;
}

on_each_store! {
    async fn concurrent_refreshes_of_one_token_give_exactly_one_success(url, dir) {
        let mut c = config(&url);
        c.refresh_grace = Duration::ZERO;
        let server = TestServer::start(c).await.keep_dir(dir);
        let tokens = server.account("hank").await;
        let refresh = s(&tokens, "refresh_token");
        let attempts = (0..8).map(|_| server.refresh(&refresh));
        let results = futures_join_all(attempts).await;
        let ok = results.iter().filter(|r| r.status() == 200).count();
        assert_eq!(
            ok,
            1,
            "{url}: {:?}",
            results.iter().map(|r| r.status()).collect::<Vec<_>>()
        );
        server.stop().await;
    }
}

async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let handles: Vec<_> = futures.map(Box::pin).collect();
    let mut out = Vec::new();
    // Poll them all concurrently on this task.
    let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        results[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.extend(results.into_iter().map(Option::unwrap));
    out
}

on_each_store! {
    async fn a_restart_loses_nothing_that_was_acknowledged(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        let tokens = server.account("ivy").await;
        let jwks_before: Value = server
            .client
            .get(server.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let dir = server.stop().await;

        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        assert_eq!(
            server.me(&s(&tokens, "access_token")).await.status(),
            200,
            "same keys after restart"
        );
        assert_eq!(
            server.refresh(&s(&tokens, "refresh_token")).await.status(),
            200
        );
        assert_eq!(
            server.login("ivy", "correct horse battery").await.status(),
            200
        );
        let jwks_after: Value = server
            .client
            .get(server.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(jwks_before, jwks_after);
        server.stop().await;
    }
}

#[tokio::test]
async fn jwks_publishes_the_signing_key_and_healthz_answers() {
    let (url, dir) = sqlite_db();
    let server = TestServer::start(config(&url)).await.keep_dir(dir);
    let tokens = server.account("jack").await;
    let r = server
        .client
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let jwks: Value = r.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].get("d").is_none());
    // The token verifies against the published JWKS with the library alone.
    let set = portcullis::keys::KeySet::from_jwks_json(&jwks.to_string()).unwrap();
    let verifier = portcullis::jwt::Verifier::new(
        set,
        portcullis::jwt::Validation::builder()
            .issuer("http://portcullis.test")
            .audience("http://portcullis.test")
            .build()
            .unwrap(),
    );
    let verified = verifier.verify(&s(&tokens, "access_token")).unwrap();
    assert!(verified.claims().sid.is_some() && verified.claims().jti.is_some());
    assert_eq!(verified.header().typ.as_deref(), Some("at+jwt"));
    let health = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let missing = server.client.get(server.url("/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn two_instances_on_one_postgres_share_revocations_within_a_second() {
    let Some(url) = crate::support::fresh_postgres().await else {
        eprintln!("PORTCULLIS_TEST_POSTGRES not set: skipping the two-instance test");
        return;
    };
    let a = TestServer::start(config(&url)).await;
    let b = TestServer::start(config(&url)).await;
    let tokens = a.account("kate").await;
    let access = s(&tokens, "access_token");
    assert_eq!(
        b.me(&access).await.status(),
        200,
        "b trusts a's keys (same database)"
    );
    let r = a
        .post(
            "/auth/logout",
            json!({"refresh_token": s(&tokens, "refresh_token")}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let start = std::time::Instant::now();
    loop {
        if b.me(&access).await.status() == 401 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "b still accepts the token after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.stop().await;
    b.stop().await;
    crate::support::drop_postgres(&url).await;
}

#[tokio::test]
async fn keys_rotate_now_on_the_database_reaches_the_running_server() {
    let (url, dir) = sqlite_db();
    let server = TestServer::start(config(&url)).await.keep_dir(dir);
    let old = server.account("lena").await;
    // A shared-secret key could not be published in the JWKS: refused, nothing added.
    let hmac = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "keys",
            "rotate",
            "--now",
            "--alg",
            "HS256",
            "--database-url",
        ])
        .arg(&server.database_url)
        .output()
        .unwrap();
    assert!(!hmac.status.success());
    let stderr = String::from_utf8_lossy(&hmac.stderr);
    assert!(
        stderr.contains("cannot be published in the JWKS"),
        "{stderr}"
    );
    // The emergency rotation: signing at once (the gentle one is in key_lifecycle).
    let rotate = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "keys",
            "rotate",
            "--now",
            "--database-url",
            &server.database_url,
        ])
        .output()
        .unwrap();
    assert!(
        rotate.status.success(),
        "{}",
        String::from_utf8_lossy(&rotate.stderr)
    );
    let new_kid = String::from_utf8(rotate.stdout).unwrap().trim().to_owned();
    let start = std::time::Instant::now();
    loop {
        let jwks: Value = server
            .client
            .get(server.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if jwks["keys"].as_array().unwrap().len() == 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "the new key was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // It signs within a second or so (a key never activates in the same second as the
    // one before it).
    let start = std::time::Instant::now();
    let fresh = loop {
        let fresh: Value = server
            .login("lena", "correct horse battery")
            .await
            .json()
            .await
            .unwrap();
        let header = portcullis::jwt::jws::insecure_decode(&s(&fresh, "access_token"), 8192)
            .unwrap()
            .0;
        if header["kid"] == new_kid.as_str() {
            break fresh;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "the new key does not sign"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        server.me(&s(&old, "access_token")).await.status(),
        200,
        "the retired key still verifies"
    );
    assert_eq!(server.me(&s(&fresh, "access_token")).await.status(), 200);
    let list = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["keys", "list", "--database-url", &server.database_url])
        .output()
        .unwrap();
    let listing = String::from_utf8(list.stdout).unwrap();
    assert!(
        listing.contains(&new_kid)
            && listing.contains("\tcurrent")
            && listing.contains("\tretired"),
        "{listing}"
    );
    server.stop().await;
}

#[tokio::test]
async fn admin_commands_manage_accounts_on_the_database() {
    let (url, dir) = sqlite_db();
    let server = TestServer::start(config(&url)).await.keep_dir(dir);
    let run = |args: &[&str], stdin: &str| {
        use std::io::Write as _;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let db = server.database_url.clone();
    let add = run(
        &[
            "users",
            "add",
            "--database-url",
            &db,
            "Mallory",
            "--scope",
            "read",
        ],
        "correct horse battery\n",
    );
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    let tokens: Value = server
        .login("mallory", "correct horse battery")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tokens["scope"], "read");
    let grant = run(
        &[
            "users",
            "grant-scope",
            "--database-url",
            &db,
            "mallory",
            "read write",
        ],
        "",
    );
    assert!(grant.status.success());
    let tokens: Value = server
        .login("mallory", "correct horse battery")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tokens["scope"], "read write");
    let list = run(&["users", "list", "--database-url", &db], "");
    assert!(String::from_utf8_lossy(&list.stdout).contains("mallory\tread write\tfalse"));
    // Add and remove scopes one by one; each command says what it did.
    let out = |o: std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let added = out(run(
        &[
            "users",
            "grant-scope",
            "--database-url",
            &db,
            "mallory",
            "--add",
            "admin",
        ],
        "",
    ));
    assert!(added.contains("\"read write admin\""), "{added}");
    assert!(
        added.contains("2 refresh families and 0 sessions re-scoped"),
        "{added}"
    );
    assert!(!added.contains("refused"), "{added}");
    let removed = out(run(
        &[
            "users",
            "revoke-scope",
            "--database-url",
            &db,
            "mallory",
            "admin",
            "write",
        ],
        "",
    ));
    assert!(removed.contains("scope is now \"read\""), "{removed}");
    assert!(
        removed.contains("access tokens issued before now are refused"),
        "{removed}"
    );
    let both = out(run(
        &[
            "users",
            "grant-scope",
            "--database-url",
            &db,
            "mallory",
            "--add",
            "write",
            "--remove",
            "nothing",
        ],
        "",
    ));
    assert!(both.contains("scope is now \"read write\""), "{both}");
    let neither = run(
        &["users", "grant-scope", "--database-url", &db, "mallory"],
        "",
    );
    assert_eq!(
        neither.status.code(),
        Some(2),
        "a scope, --add or --remove is needed"
    );
    let disable = run(&["users", "disable", "--database-url", &db, "mallory"], "");
    assert!(disable.status.success());
    assert!(
        String::from_utf8_lossy(&disable.stdout).contains("mallory: disabled"),
        "every admin command says what it did"
    );
    assert_eq!(
        server
            .login("mallory", "correct horse battery")
            .await
            .status(),
        401
    );
    assert_eq!(
        server.refresh(&s(&tokens, "refresh_token")).await.status(),
        400,
        "a disabled user cannot refresh"
    );
    let missing = run(&["users", "disable", "--database-url", &db, "nobody"], "");
    assert_eq!(missing.status.code(), Some(2));
    // Enabled again, the account logs in (its old refresh tokens stay ended).
    let enable = out(run(
        &["users", "enable", "--database-url", &db, "mallory"],
        "",
    ));
    assert!(enable.contains("mallory: enabled"), "{enable}");
    assert_eq!(
        server
            .login("mallory", "correct horse battery")
            .await
            .status(),
        200
    );
    assert_eq!(
        server.refresh(&s(&tokens, "refresh_token")).await.status(),
        400
    );
    // Admin commands never create a database: a wrong path is an error that names it.
    let nowhere = format!("sqlite://{}/nowhere.db", std::env::temp_dir().display());
    let wrong = run(&["users", "list", "--database-url", &nowhere], "");
    assert_eq!(wrong.status.code(), Some(2));
    let said = String::from_utf8_lossy(&wrong.stderr).to_string();
    assert!(
        said.contains("no database at") && said.contains("nowhere.db"),
        "{said}"
    );
    assert!(
        !std::env::temp_dir().join("nowhere.db").exists(),
        "nothing created"
    );
    let dup = run(
        &["users", "add", "--database-url", &db, "mallory"],
        "correct horse battery\n",
    );
    assert_eq!(dup.status.code(), Some(2));
    server.stop().await;
}

#[tokio::test]
async fn responses_carry_a_request_id_and_echo_the_callers() {
    let (url, dir) = sqlite_db();
    let server = TestServer::start(config(&url)).await.keep_dir(dir);
    let r = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let r = server
        .client
        .get(server.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    server.stop().await;
}

#[tokio::test]
async fn a_full_hashing_queue_answers_503_with_retry_after() {
    let (url, dir) = sqlite_db();
    let mut c = config(&url);
    c.hash_concurrency = 1;
    c.hash_queue = 0;
    let server = TestServer::start(c).await.keep_dir(dir);
    let names: Vec<String> = (0..6).map(|i| format!("user{i}")).collect();
    let attempts = names
        .iter()
        .map(|name| server.signup(name, "correct horse battery"));
    let results = futures_join_all(attempts).await;
    let statuses: Vec<u16> = results.iter().map(|r| r.status().as_u16()).collect();
    assert!(statuses.contains(&201), "{statuses:?}");
    let busy: Vec<_> = results.iter().filter(|r| r.status() == 503).collect();
    assert!(!busy.is_empty(), "{statuses:?}");
    assert_eq!(busy[0].headers()["retry-after"], "1");
    server.stop().await;
}

#[tokio::test]
async fn revocations_still_spread_after_the_database_drops_every_connection() {
    let Some(url) = crate::support::fresh_postgres().await else {
        eprintln!("PORTCULLIS_TEST_POSTGRES not set: skipping");
        return;
    };
    let a = TestServer::start(config(&url)).await;
    let b = TestServer::start(config(&url)).await;
    let tokens = a.account("nina").await;
    let access = s(&tokens, "access_token");
    assert_eq!(b.me(&access).await.status(), 200);
    // What a database restart does to the servers: every connection is cut, the
    // notification listeners' included.
    let db = url.rsplit('/').next().unwrap().to_owned();
    let admin = sqlx::PgPool::connect(&std::env::var("PORTCULLIS_TEST_POSTGRES").unwrap())
        .await
        .unwrap();
    let killed: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&db)
    .fetch_all(&admin)
    .await
    .unwrap();
    assert!(
        killed.len() >= 2,
        "listeners and pools were connected: {}",
        killed.len()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A's pool reconnects for the logout; B must still learn of it within a second.
    let r = a
        .post(
            "/auth/logout",
            json!({"refresh_token": s(&tokens, "refresh_token")}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let start = std::time::Instant::now();
    while b.me(&access).await.status() != 401 {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "b did not learn of the logout within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    admin.close().await;
    a.stop().await;
    b.stop().await;
    crate::support::drop_postgres(&url).await;
}

#[tokio::test]
async fn sigterm_lets_the_request_in_flight_finish() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let db = format!("sqlite://{}", dir.path().join("term.db").display());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            &db,
        ])
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let start = std::time::Instant::now();
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A request whose body is not yet complete is in flight for certain: send all but
    // its last byte, signal, then finish it.
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let body = r#"{"username":"olga","password":"correct horse battery"}"#;
    let head = format!(
        "POST /auth/signup HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
        .write_all(&body.as_bytes()[..body.len() - 1])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream
        .write_all(&body.as_bytes()[body.len() - 1..])
        .await
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    // And nothing new is accepted once it is gone.
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
    assert!(client.get(format!("{base}/healthz")).send().await.is_err());
}

#[tokio::test]
async fn the_revocation_feed_serves_services_with_the_scope_only() {
    let (url, dir) = sqlite_db();
    let mut c = config(&url);
    c.default_scope = "revocations:read".into();
    let server = TestServer::start(c).await.keep_dir(dir);
    let service = server.account("svc").await;
    let user = server.account("pat").await;
    let feed = |token: String| {
        let server = &server;
        async move {
            server
                .client
                .get(server.url("/auth/revocations?since=0"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    let empty: Value = feed(s(&service, "access_token"))
        .await
        .json()
        .await
        .unwrap();
    let cursor = empty["cursor"].as_i64().unwrap();
    assert_eq!(
        server
            .post(
                "/auth/logout",
                json!({"refresh_token": s(&user, "refresh_token")})
            )
            .await
            .status(),
        204
    );
    let page: Value = feed(s(&service, "access_token"))
        .await
        .json()
        .await
        .unwrap();
    let sid = portcullis::jwt::jws::insecure_decode(&s(&user, "access_token"), 8192)
        .unwrap()
        .1;
    let sid: Value = serde_json::from_slice(&sid).unwrap();
    assert_eq!(page["revoked_sessions"], json!([sid["sid"]]));
    assert!(page["cursor"].as_i64().unwrap() > cursor);
    // Applied to a library list, the user's token is now refused there too.
    let list = portcullis::revocation::RevocationList::new();
    list.apply(&serde_json::from_value(page).unwrap());
    let claims: portcullis::jwt::Claims = {
        let set = portcullis::keys::KeySet::from_jwks_json(
            &server
                .client
                .get(server.url("/.well-known/jwks.json"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        )
        .unwrap();
        let v = portcullis::jwt::Verifier::new(
            set,
            portcullis::jwt::Validation::builder()
                .issuer("http://portcullis.test")
                .audience("http://portcullis.test")
                .build()
                .unwrap(),
        );
        v.verify(&s(&user, "access_token"))
            .unwrap()
            .claims()
            .clone()
    };
    assert!(portcullis::strategy::RevocationCheck::check(&list, &claims).is_err());

    // Without the scope: 403; without a token: 401.
    let mut c2 = config(&url);
    c2.default_scope = String::new();
    let other = TestServer::start(c2).await;
    let plain = other.account("quinn").await;
    let r = other
        .client
        .get(other.url("/auth/revocations"))
        .bearer_auth(s(&plain, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    assert_eq!(
        other
            .client
            .get(other.url("/auth/revocations"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    other.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn metadata_lets_a_resource_server_discover_the_jwks() {
    let (url, dir) = sqlite_db();
    let server = TestServer::start(config(&url)).await.keep_dir(dir);
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let doc: Value = server
            .client
            .get(server.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["issuer"], "http://portcullis.test");
        assert_eq!(
            doc["jwks_uri"],
            "http://portcullis.test/.well-known/jwks.json"
        );
    }
    server.stop().await;
}

/// The first thing a newcomer reads: where the server listens, what it is called, where
/// its data went, what it generated, and where the pages are. `--quiet` drops it.
#[tokio::test]
async fn the_start_up_banner_says_where_everything_is() {
    use tokio::io::AsyncBufReadExt as _;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let db = dir.path().join("banner.db");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--database-url",
        ])
        .arg(format!("sqlite://{}", db.display()))
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut banner = String::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            banner.push_str(&line);
            banner.push('\n');
            if line.trim_start().starts_with("pages") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("a banner");
    for expected in [
        format!(
            "Portcullis {} listening on http://127.0.0.1:{port}",
            env!("CARGO_PKG_VERSION")
        ),
        format!("issuer    http://127.0.0.1:{port}"),
        format!("database  {} (created now)", db.display()),
        "generated a first RS256 signing key".to_owned(),
        format!("{}.kek", db.display()),
        format!("http://127.0.0.1:{port}/signup"),
        format!("http://127.0.0.1:{port}/account"),
    ] {
        assert!(
            banner.contains(&expected),
            "{expected:?} missing in\n{banner}"
        );
    }
    // The default start has nothing to complain of (passkeys are off on an address
    // issuer, said at info level; the passkey library used to log an error there).
    assert!(!banner.contains("ERROR"), "{banner}");
    child.kill().await.unwrap();

    // A second start on the same database: nothing created, nothing generated; quiet.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "serve",
            "--quiet",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--database-url",
        ])
        .arg(format!("sqlite://{}", db.display()))
        .env("RUST_LOG", "off")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let start = std::time::Instant::now();
    while client
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .is_err()
    {
        assert!(start.elapsed() < Duration::from_secs(30), "did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("listening on"),
        "--quiet prints no banner"
    );
}

/// What a newcomer sees when the database is not there: the cause once, with the fix,
/// and quickly.
#[tokio::test]
async fn database_errors_say_what_is_wrong_and_what_to_do() {
    let start = |url: String| async move {
        let mut c = config(&url);
        c.kek.inline = Some(zeroize::Zeroizing::new(crate::support::TEST_KEK.to_owned()));
        let t = std::time::Instant::now();
        let err = portcullis_server::startup::start(c).await.unwrap_err();
        (format!("{err:#}"), t.elapsed())
    };
    // Nothing listens on port 1.
    let (said, took) = start("postgres://postgres@127.0.0.1:1/app".into()).await;
    assert!(
        said.contains("connection refused at 127.0.0.1:1")
            && said.contains("is PostgreSQL running"),
        "{said}"
    );
    assert!(
        took < Duration::from_secs(3),
        "refused within 3 s, took {took:?}"
    );
    assert_eq!(said.matches("refused").count(), 1, "said once: {said}");
    // A folder that does not exist.
    let (said, _) = start("sqlite:///nonexistent-folder-for-test/app.db".into()).await;
    assert!(
        said.contains("folder /nonexistent-folder-for-test does not exist"),
        "{said}"
    );
    assert_eq!(
        said.matches("nonexistent-folder-for-test").count(),
        2,
        "{said}"
    );
    // A PostgreSQL database that does not exist, when there is a server to ask.
    if let Ok(admin) = std::env::var("PORTCULLIS_TEST_POSTGRES") {
        let (base, _) = admin.rsplit_once('/').unwrap();
        let (said, _) = start(format!("{base}/pc_test_missing_db")).await;
        assert!(
            said.contains("\"pc_test_missing_db\" does not exist")
                && said.contains("createdb pc_test_missing_db"),
            "{said}"
        );
    }
}

#[tokio::test]
async fn a_database_keeps_its_algorithm_when_signing_alg_is_not_set() {
    // A deployment made when the default was EdDSA: its resource servers pin EdDSA.
    let (url, dir) = sqlite_db();
    let mut c = config(&url);
    c.signing_alg = portcullis::keys::Algorithm::EdDSA;
    c.signing_alg_set = true;
    let server = TestServer::start(c).await.keep_dir(dir);
    let rotate = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["keys", "rotate", "--database-url", &server.database_url])
            .args(extra)
            .env_remove("PORTCULLIS_SIGNING_ALG")
            .output()
            .unwrap()
    };
    // No signing_alg given: the next key is EdDSA too, not the new default.
    let kept = rotate(&[]);
    let stderr = String::from_utf8_lossy(&kept.stderr);
    assert!(kept.status.success(), "{stderr}");
    assert!(stderr.contains("(EdDSA)"), "{stderr}");
    // Asked for: the new default is one setting away.
    let moved = rotate(&["--alg", "RS256"]);
    let stderr = String::from_utf8_lossy(&moved.stderr);
    assert!(
        moved.status.success() && stderr.contains("(RS256)"),
        "{stderr}"
    );
    server.stop().await;
}
