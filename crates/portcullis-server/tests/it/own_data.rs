//! Issue 25: a person's own data. `GET /auth/me/export` gives everything the server
//! holds about the signed-in person and nothing secret; `DELETE /auth/me` erases the
//! account as an admin's erasure does, after the password, never the last admin, and
//! not from another site. On SQLite and PostgreSQL.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestServer, config, on_each_store, s, still_clock};

const PASSWORD: &str = "correct horse battery";
const ORIGIN: &str = "http://portcullis.test";

async fn export(
    server: &TestServer,
    token: &str,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let r = server
        .client
        .get(server.url("/auth/me/export"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status(), r.headers().clone(), r.text().await.unwrap())
}

async fn delete_me(server: &TestServer, token: &str, body: &str) -> (StatusCode, Value) {
    let r = server
        .client
        .delete(server.url("/auth/me"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

on_each_store! {
    /// The export lists the account, its sign-ins, the application it allowed, its
    /// devices, its mail links and mail, its audit records — and no password, hash,
    /// token or second-factor secret. The deletion refuses a wrong password, a bad
    /// body, a cookie without its CSRF proof, and the last admin, each changing
    /// nothing; then erases: tokens refused at once, login refused, the mail to the
    /// address gone, the trail's addresses blanked, the erasure recorded as the
    /// person's own.
    async fn a_person_exports_their_data_and_deletes_their_account(url, dir) {
        let clock = still_clock();
        let now = || portcullis::clock::Clock::now(clock.as_ref());
        let server = TestServer::start_with(config(&url), clock.clone()).await.keep_dir(dir);
        let store = portcullis_store::open(&url).await.unwrap();
        let r = server.post("/auth/signup", json!({ "username": "pia", "password": PASSWORD, "email": "pia@example.com" })).await;
        assert_eq!(r.status(), 201);
        let pia = store.user_by_username("pia").await.unwrap().unwrap();
        clock.advance(2);
        let tokens: Value = server.login("pia", PASSWORD).await.json().await.unwrap();
        let (access, refresh) = (s(&tokens, "access_token"), s(&tokens, "refresh_token"));
        // A second factor, whose secret must not leave.
        let r = server.client.post(server.url("/auth/mfa/totp")).bearer_auth(&access).json(&json!({ "password": PASSWORD })).send().await.unwrap();
        let totp_secret = s(&r.json::<Value>().await.unwrap(), "secret");
        // An application she allowed.
        let added: Value = serde_json::from_str(&crate::clients::clients(&url, &[
            "add", "notes", "--scope", "openid", "--redirect-uri", "https://notes.example/cb",
        ]).await).unwrap();
        store.grant_consent(&pia.id, &s(&added, "client_id"), "openid", now()).await.unwrap();
        // A browser session too.
        let r = server.post("/session/login", json!({ "username": "pia", "password": PASSWORD })).await;
        assert_eq!(r.status(), 200);
        let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        let csrf = s(&r.json::<Value>().await.unwrap(), "csrf_token");

        // Nobody, a machine client: refused.
        let r = server.client.get(server.url("/auth/me/export")).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let machine: Value = serde_json::from_str(&crate::clients::clients(&url, &["add", "bot"]).await).unwrap();
        let r = server.client.post(server.url("/oauth/token"))
            .basic_auth(s(&machine, "client_id"), Some(s(&machine, "client_secret")))
            .form(&[("grant_type", "client_credentials")]).send().await.unwrap();
        let bot = s(&r.json::<Value>().await.unwrap(), "access_token");
        assert_eq!(export(&server, &bot).await.0, StatusCode::FORBIDDEN);

        let (st, headers, text) = export(&server, &access).await;
        assert_eq!(st, 200, "{text}");
        assert_eq!(headers["cache-control"], "no-store");
        assert!(headers["content-disposition"].to_str().unwrap().starts_with("attachment"));
        let data: Value = serde_json::from_str(&text).unwrap();
        assert_eq!((data["account"]["id"].as_str(), data["account"]["username"].as_str(), data["account"]["email"].as_str()),
            (Some(pia.id.as_str()), Some("pia"), Some("pia@example.com")));
        assert_eq!(data["api_logins"].as_array().unwrap().len(), 1, "{data}");
        assert_eq!(data["sessions"].as_array().unwrap().len(), 1, "{data}");
        assert_eq!(data["applications"][0]["name"], "notes");
        assert_eq!(data["second_factors"]["totp"]["confirmed_at"], Value::Null, "enrolment waits for its first code");
        assert_eq!((data["mail_links"][0]["kind"].as_str(), data["mail_links"][0]["email"].as_str()), (Some("verify"), Some("pia@example.com")));
        assert_eq!(data["mail"][0]["to"], "pia@example.com");
        let kinds: Vec<&str> = data["audit"].as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
        assert!(kinds.starts_with(&["user.created", "login.succeeded"]), "{kinds:?}");
        assert_eq!(data["audit_truncated"], false);
        let cookie_value = cookie.split_once('=').unwrap().1;
        for secret in [PASSWORD, &access, &refresh, &totp_secret, &pia.password_hash, &csrf, cookie_value] {
            assert!(!text.contains(secret), "a secret in the export: {secret}");
        }
        // The cookie session exports the same account.
        let r = server.client.get(server.url("/auth/me/export")).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["account"]["id"], pia.id.as_str());

        // Refusals that change nothing.
        for (body, status, error) in [
            (r#"{"password": "wrong password!"}"#, 403, "wrong_password"),
            (r#"{"password": 12}"#, 400, "invalid_request"),
            (r#"{"password": "#, 400, "invalid_request"),
            (r#"{}"#, 400, "invalid_request"),
            (r#"{"password": "correct horse battery", "force": true}"#, 400, "invalid_request"),
        ] {
            let (st, answer) = delete_me(&server, &access, body).await;
            assert_eq!((st.as_u16(), answer["error"].as_str()), (status, Some(error)), "{body}: {answer}");
        }
        let r = server.client.delete(server.url("/auth/me")).bearer_auth(&access).header("content-type", "text/plain")
            .body(format!(r#"{{"password": "{PASSWORD}"}}"#)).send().await.unwrap();
        assert_eq!(r.status(), 415, "not JSON");
        assert_eq!(delete_me(&server, &bot, &json!({ "password": PASSWORD }).to_string()).await.0, 403);
        // The cookie from another site, or without its CSRF proof.
        for extra in [vec![("origin", "https://evil.example")], vec![]] {
            let mut req = server.client.delete(server.url("/auth/me")).header("cookie", &cookie).json(&json!({ "password": PASSWORD }));
            for (k, v) in extra {
                req = req.header(k, v);
            }
            assert_eq!(req.send().await.unwrap().status(), 403);
        }
        assert!(store.user_by_id(&pia.id).await.unwrap().is_some());
        assert_eq!(server.me(&access).await.status(), 200);

        // The last admin stays.
        assert_eq!(server.signup("root", PASSWORD).await.status(), 201);
        store.set_scope("root", "admin", now()).await.unwrap();
        clock.advance(2);
        let root = s(&server.login("root", PASSWORD).await.json::<Value>().await.unwrap(), "access_token");
        let (st, answer) = delete_me(&server, &root, &json!({ "password": PASSWORD }).to_string()).await;
        assert_eq!((st, answer["error"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "{answer}");
        assert!(store.user_by_username("root").await.unwrap().is_some());

        // Erased, with the cookie and its proof: everything ends at once.
        let r = server.client.delete(server.url("/auth/me")).header("cookie", &cookie).header("origin", ORIGIN)
            .header("x-csrf-token", &csrf).json(&json!({ "password": PASSWORD })).send().await.unwrap();
        assert_eq!(r.status(), 204);
        assert!(r.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"), "the cookie is cleared");
        assert_eq!(server.me(&access).await.status(), 401);
        assert_eq!(server.refresh(&refresh).await.status(), 400);
        assert_eq!(server.login("pia", PASSWORD).await.status(), 401);
        assert_eq!(export(&server, &access).await.0, 401);
        assert!(store.user_by_id(&pia.id).await.unwrap().is_none());
        let records = store.account_records(&pia.id).await.unwrap();
        assert_eq!(records, portcullis_store::AccountRecords::default());
        let trail = store.audit(&portcullis_store::AuditFilter { subject: Some(&pia.id), kind: None, after: None, since: None, limit: 100 }).await.unwrap();
        assert!(trail.iter().all(|r| r.address.is_none() && r.user_agent.is_none()), "{trail:?}");
        let last = trail.last().unwrap();
        assert_eq!((last.kind.as_str(), last.actor.clone()), ("user.deleted", Some(format!("user:{}", pia.id))));
        // The name is free again, for someone new.
        clock.advance(2);
        assert_eq!(server.signup("pia", PASSWORD).await.status(), 201);
    }
}

on_each_store! {
    /// The last two admins erase themselves at the same moment: one goes, one stays.
    async fn two_last_admins_deleting_themselves_at_once_leave_one(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        let store = portcullis_store::open(&url).await.unwrap();
        for name in ["ada", "bob"] {
            assert_eq!(server.signup(name, PASSWORD).await.status(), 201);
            store.set_scope(name, "admin", 0).await.unwrap();
        }
        let mut tokens = Vec::new();
        for name in ["ada", "bob"] {
            tokens.push(s(&server.login(name, PASSWORD).await.json::<Value>().await.unwrap(), "access_token"));
        }
        let body = json!({ "password": PASSWORD }).to_string();
        let (a, b) = tokio::join!(delete_me(&server, &tokens[0], &body), delete_me(&server, &tokens[1], &body));
        let mut statuses = [a.0.as_u16(), b.0.as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [204, 409], "{a:?} {b:?}");
        assert_eq!(store.list_users().await.unwrap().len(), 1);
    }
}
