//! `GET /metrics` after a scripted flow: the counts move by exactly what the flow did.
//! Its own test binary, so that no other test's server shares the process's recorder.

// Helpers unwrap: a panic there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use serde_json::{Value, json};

/// Every sample of the Prometheus text, by its name and labels as written.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn metrics_count_what_a_scripted_flow_did_and_name_no_user() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = portcullis_server::config::Config::defaults().unwrap();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
    config.database_url = format!("sqlite://{}", dir.path().join("m.db").display());
    config.issuer = "http://portcullis.test".into();
    config.audience = config.issuer.clone();
    config.sessions =
        portcullis::session::SessionConfig::insecure_allow_http("http://portcullis.test").unwrap();
    config.refresh_grace = std::time::Duration::ZERO;
    // Short, so that a stalled request times out within the test.
    config.request_timeout = std::time::Duration::from_secs(1);
    let running = portcullis_server::startup::start(config).await.unwrap();
    let base = format!("http://{}", running.addr);
    let metrics_url = format!("http://{}/metrics", running.metrics_addr.unwrap());
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| http.post(format!("{base}{path}")).json(&body).send();

    // Metrics are not on the public port.
    let r = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    let scrape = || async {
        let r = http.get(&metrics_url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        r.text().await.unwrap()
    };
    let _ = scrape().await;

    // The flow: one signup, two good logins, one wrong password, one refresh, the same
    // refresh token again (reuse), one request with a bad token.
    let user = json!({"username": "mia", "password": "correct horse battery"});
    assert_eq!(
        post("/auth/signup", user.clone()).await.unwrap().status(),
        201
    );
    let first: Value = post("/auth/login", user.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let _second: Value = post("/auth/login", user.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let wrong = json!({"username": "mia", "password": "not the password"});
    assert_eq!(post("/auth/login", wrong).await.unwrap().status(), 401);
    let refresh = json!({"refresh_token": first["refresh_token"]});
    assert_eq!(
        post("/auth/refresh", refresh.clone())
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(post("/auth/refresh", refresh).await.unwrap().status(), 400);
    let r = http
        .get(format!("{base}/auth/me"))
        .bearer_auth("a.b.c")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A bad token on an account page: refused as a page (HTML), and still counted.
    let r = http
        .get(format!("{base}/account"))
        .bearer_auth("a.b.c")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );

    // A request whose body never finishes: the request timeout answers 408, and the
    // request is still counted (as dropped before its answer).
    {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut tcp = tokio::net::TcpStream::connect(running.addr).await.unwrap();
        tcp.write_all(
            b"POST /auth/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
        let mut answer = vec![0; 64];
        let n = tcp.read(&mut answer).await.unwrap();
        assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 408"));
    }

    let text = scrape().await;
    let m = samples(&text);
    let get = |name: &str| m.get(name).copied().unwrap_or(0.0);
    assert_eq!(
        get(r#"portcullis_logins_total{outcome="success"}"#),
        2.0,
        "{text}"
    );
    assert_eq!(
        get(r#"portcullis_logins_total{outcome="invalid_credentials"}"#),
        1.0
    );
    assert_eq!(get(r#"portcullis_refreshes_total{outcome="rotated"}"#), 1.0);
    assert_eq!(
        get(r#"portcullis_refreshes_total{outcome="reuse_detected"}"#),
        1.0
    );
    // The reuse revoked a family: applied from the log once.
    assert_eq!(
        get(r#"portcullis_revocations_applied_total{kind="session"}"#),
        1.0
    );
    assert!(
        get(r#"portcullis_rejections_total{reason="malformed"}"#) >= 1.0,
        "{text}"
    );
    // Two refused requests in the flow (a bad token on the API, one on a page), each counted
    // once: by the one layer that records refusals (`error::finish`), not again by the
    // library's `AuthLayer`, and not lost when the refusal became a page.
    let refusals: f64 = m
        .iter()
        .filter(|(name, _)| name.starts_with("portcullis_rejections_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(refusals, 2.0, "{text}");
    assert_eq!(
        get(r#"portcullis_http_requests_total{route="/auth/login",method="POST",status="200"}"#),
        2.0
    );
    assert_eq!(
        get(r#"portcullis_http_requests_total{route="/auth/login",method="POST",status="401"}"#),
        1.0
    );
    assert!(
        get(r#"portcullis_http_request_duration_seconds_count{route="/auth/login",method="POST"}"#)
            >= 3.0
    );
    assert_eq!(
        get(
            r#"portcullis_http_requests_total{route="/auth/login",method="POST",status="dropped"}"#
        ),
        1.0,
        "{text}"
    );
    assert_eq!(get(r#"portcullis_signing_keys{state="current"}"#), 1.0);
    assert!(
        text.contains("portcullis_hash_wait_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("portcullis_token_cache_hits_total"), "{text}");
    assert!(text.contains("portcullis_sessions_live"), "{text}");
    // No user name, id or token in any label.
    assert!(!text.contains("mia"));
    assert!(!text.contains(first["refresh_token"].as_str().unwrap()));
    running.stop().await.unwrap();
}
