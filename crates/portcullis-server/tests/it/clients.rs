//! Machine clients: `portcullis clients …` and the client-credentials grant at
//! `POST /oauth/token` (RFC 6749 §4.4), on SQLite and PostgreSQL.

use base64::Engine as _;
use serde_json::Value;

use crate::support::{TestServer, config, on_each_store};

/// Runs `portcullis clients ARGS` on the test's database; stdout, or a panic with stderr.
fn clients(url: &str, args: &[&str]) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.arg("clients").args(args).args(["--database-url", url]);
    let out = cmd.output().unwrap();
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
            serde_json::from_str(&clients(&url, &["add", "blog", "--scope", "revocations:read audit"])).unwrap();
        let id = added["client_id"].as_str().unwrap().to_owned();
        let secret = added["client_secret"].as_str().unwrap().to_owned();
        assert!(clients(&url, &["list"]).contains(&format!("{id}\tblog\trevocations:read audit\tfalse")));

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

        // Another grant type, a missing one, JSON instead of a form.
        let (status, _, body) = token_request(&server, Some((&id, &secret)), &[("grant_type", "password")]).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("unsupported_grant_type")));
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

        // Disabled: no new token, and the one it has is refused at once.
        assert!(clients(&url, &["disable", "blog"]).contains("disabled"));
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
        clients(&url, &["enable", "blog"]);
        let rotated: Value = serde_json::from_str(&clients(&url, &["rotate-secret", "blog"])).unwrap();
        let new_secret = rotated["client_secret"].as_str().unwrap();
        let (status, _, _) = token_request(&server, Some((&id, &secret)), &grant).await;
        assert_eq!(status, 401);
        let (status, _, _) = token_request(&server, Some((&id, new_secret)), &grant).await;
        assert_eq!(status, 200);
        server.stop().await;
    }
}
