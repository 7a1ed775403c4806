//! Machine clients: `portcullis clients …` and the client-credentials grant at
//! `POST /oauth/token` (RFC 6749 §4.4), on SQLite and PostgreSQL.

use base64::Engine as _;
use serde_json::Value;

use crate::support::{TestServer, config, on_each_store};

/// Runs `portcullis clients ARGS` on the test's database; stdout, or a panic with stderr.
///
/// Awaited, never blocking: a test's runtime has one thread, which the in-process
/// server's tasks share; a blocking wait for a CLI that needs the write lock one of
/// those tasks holds would stall both until SQLite's busy timeout.
pub(crate) async fn clients(url: &str, args: &[&str]) -> String {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.arg("clients").args(args).args(["--database-url", url]);
    let out = cmd.output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn token_request(
    server: &TestServer,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = server.client.post(server.url("/oauth/token")).form(form);
    if let Some((id, secret)) = basic {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        req = req.header("authorization", format!("Basic {encoded}"));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

on_each_store! {
    async fn a_client_gets_tokens_as_itself_within_its_scope_and_nothing_else(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        let added: Value =
            serde_json::from_str(&clients(&url, &["add", "blog", "--scope", "revocations:read audit"]).await).unwrap();
        let id = added["client_id"].as_str().unwrap().to_owned();
        let secret = added["client_secret"].as_str().unwrap().to_owned();
        assert!(clients(&url, &["list"]).await.contains(&format!("{id}\tblog\tmachine\trevocations:read audit\tfalse")));

        // client_secret_basic, all its scopes.
        let grant = [("grant_type", "client_credentials")];
        let (status, headers, body) = token_request(&server, Some((&id, &secret)), &grant).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["scope"], "revocations:read audit");
        assert!(body.get("refresh_token").is_none());
        let access = body["access_token"].as_str().unwrap().to_owned();
        // The token is the client's, and reads the revocation feed.
        let claims = crate::support::claims_of(&access);
        assert_eq!(claims["sub"], id.as_str());
        assert_eq!(claims["client_id"], id.as_str());
        let r = server
            .client
            .get(server.url("/auth/revocations"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);

        // client_secret_post, a narrower scope.
        let (status, _, body) = token_request(
            &server,
            None,
            &[("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", &secret), ("scope", "audit")],
        )
        .await;
        assert_eq!((status, body["scope"].as_str()), (200, Some("audit")));

        // A scope beyond the client's: invalid_scope.
        let (status, _, body) = token_request(
            &server,
            Some((&id, &secret)),
            &[("grant_type", "client_credentials"), ("scope", "revocations:read admin")],
        )
        .await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")));

        // Wrong secret, unknown client, no credentials, two methods at once.
        let wrong = portcullis::opaque::Opaque::generate().unwrap();
        for (basic, form) in [
            (Some((id.as_str(), wrong.expose())), vec![]),
            (Some(("no-such-client", secret.as_str())), vec![]),
            (Some((id.as_str(), "not a secret")), vec![]),
            (None, vec![("client_id", id.as_str())]),
            (None, vec![]),
        ] {
            let mut f = vec![("grant_type", "client_credentials")];
            f.extend(form);
            let (status, headers, body) = token_request(&server, basic, &f).await;
            assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{basic:?}");
            assert_eq!(headers["www-authenticate"], "Basic realm=\"portcullis\"");
        }
        let (status, _, body) = token_request(
            &server,
            Some((&id, &secret)),
            &[("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", &secret)],
        )
        .await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")));

        // An empty scope, or one named twice, or a repeated parameter.
        let (status, _, body) = token_request(
            &server,
            Some((&id, &secret)),
            &[("grant_type", "client_credentials"), ("scope", " ")],
        )
        .await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")));
        let (status, _, body) = token_request(
            &server,
            Some((&id, &secret)),
            &[("grant_type", "client_credentials"), ("scope", "audit audit")],
        )
        .await;
        assert_eq!((status, body["scope"].as_str()), (200, Some("audit")));
        let (status, _, body) = token_request(
            &server,
            Some((&id, &secret)),
            &[("grant_type", "client_credentials"), ("grant_type", "client_credentials")],
        )
        .await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")));

        // Another grant type (its description echoes nothing sent: RFC 6749 §5.2 allows
        // no quotes or backslashes there), a missing one, JSON instead of a form.
        let (status, _, body) =
            token_request(&server, Some((&id, &secret)), &[("grant_type", "pass\"word\\")]).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("unsupported_grant_type")));
        let described = body["error_description"].as_str().unwrap();
        assert!(!described.contains('"') && !described.contains('\\'), "{described}");
        let (status, _, body) = token_request(&server, Some((&id, &secret)), &[]).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")));
        let r = server
            .client
            .post(server.url("/oauth/token"))
            .json(&serde_json::json!({"grant_type": "client_credentials"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415);

        // A client is not a person: routes about a person's sessions and account refuse
        // its token (it would otherwise "log out everywhere" an id that is no user's).
        for (method, path) in [
            (reqwest::Method::GET, "/auth/me"),
            (reqwest::Method::POST, "/auth/logout-all"),
            (reqwest::Method::GET, "/session/list"),
            (reqwest::Method::DELETE, "/session/anything"),
        ] {
            let r = server
                .client
                .request(method, server.url(path))
                .bearer_auth(&access)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{path}");
        }

        // Disabled: no new token, and the one it has is refused at once.
        assert!(clients(&url, &["disable", "blog"]).await.contains("disabled"));
        let (status, _, body) = token_request(&server, Some((&id, &secret)), &grant).await;
        assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
        crate::support::eventually("the disabled client's token is refused", || async {
            server
                .client
                .get(server.url("/auth/revocations"))
                .bearer_auth(&access)
                .send()
                .await
                .unwrap()
                .status()
                == 401
        })
        .await;
        // Enabled with a new secret: the old one no longer works.
        clients(&url, &["enable", "blog"]).await;
        let rotated: Value = serde_json::from_str(&clients(&url, &["rotate-secret", "blog"]).await).unwrap();
        let new_secret = rotated["client_secret"].as_str().unwrap();
        let (status, _, _) = token_request(&server, Some((&id, &secret)), &grant).await;
        assert_eq!(status, 401);
        let (status, _, _) = token_request(&server, Some((&id, new_secret)), &grant).await;
        assert_eq!(status, 200);
        server.stop().await;
    }
}

/// PostgreSQL hands out event ids before their transactions commit, and may commit them
/// out of order. A feed reader must never be moved past an id whose event it has not
/// seen: here a revocation is held uncommitted while a later one commits, and the
/// follower must still get both.
#[tokio::test]
async fn the_feed_never_skips_an_event_committed_out_of_order() {
    let Some(url) = crate::support::fresh_postgres().await else {
        eprintln!("skipped: PORTCULLIS_TEST_POSTGRES is not set");
        return;
    };
    let server = TestServer::start(config(&url)).await;
    let added: Value = serde_json::from_str(
        &clients(&url, &["add", "follower", "--scope", "revocations:read"]).await,
    )
    .unwrap();
    let (id, secret) = (
        added["client_id"].as_str().unwrap(),
        added["client_secret"].as_str().unwrap(),
    );
    let (_, _, body) = token_request(
        &server,
        Some((id, secret)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    let access = body["access_token"].as_str().unwrap().to_owned();
    let read = |since: i64| {
        let (server, access) = (&server, access.clone());
        async move {
            let r = server
                .client
                .get(server.url(&format!("/auth/revocations?since={since}")))
                .bearer_auth(access)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let start = read(0).await["cursor"].as_i64().unwrap();

    // A revocation whose transaction has taken its id but not committed yet.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let mut held = pool.begin().await.unwrap();
    let held_id: i64 = sqlx::query_scalar(
        "INSERT INTO events (kind, subject, at) VALUES ('session_revoked', 'held-sid', 0) RETURNING id",
    )
    .fetch_one(&mut *held)
    .await
    .unwrap();
    // A later one commits first.
    let later_id: i64 = sqlx::query_scalar(
        "INSERT INTO events (kind, subject, at) VALUES ('session_revoked', 'later-sid', 0) RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(later_id > held_id);

    let page = read(start).await;
    let cursor = page["cursor"].as_i64().unwrap();
    assert!(
        cursor < held_id,
        "the cursor jumped past an uncommitted event: {page}"
    );

    held.commit().await.unwrap();
    // The instance waits at the gap until the held event commits (or 10 s pass).
    let mut seen = Vec::new();
    let mut cursor = cursor;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !(seen.iter().any(|s| s == "held-sid") && seen.iter().any(|s| s == "later-sid")) {
        assert!(
            std::time::Instant::now() < deadline,
            "missed a revocation: saw {seen:?}"
        );
        let page = read(cursor).await;
        cursor = page["cursor"].as_i64().unwrap();
        for sid in page["revoked_sessions"].as_array().unwrap() {
            seen.push(sid.as_str().unwrap().to_owned());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server.stop().await;
    pool.close().await;
    crate::support::drop_postgres(&url).await;
}
