//! Email addresses on accounts (issue 23, its first part): given at signup, normalised,
//! required with `require_email`, shown by `/auth/me` from a token and from a session,
//! unique among verified addresses only, set by an operator. On SQLite and PostgreSQL.

use serde_json::{Value, json};

use crate::support::{TestServer, config, on_each_store, s};

const PASSWORD: &str = "correct horse battery";

/// Runs `portcullis users ARGS` on the test's database: (exit code, stdout, stderr).
async fn users(url: &str, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("users")
        .args(args)
        .args(["--database-url", url])
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

on_each_store! {
    async fn signup_takes_an_address_normalised_and_me_shows_it(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        // Signup with an address: its domain in lower-case ASCII, not yet verified.
        let r = server
            .post("/auth/signup", json!({"username": "ana", "password": PASSWORD, "email": " Ana.Lima@Bücher.Example "}))
            .await;
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["email"], "Ana.Lima@xn--bcher-kva.example");
        assert_eq!(body["email_verified"], false);
        // Without one, as before: no email members at all.
        let r = server.post("/auth/signup", json!({"username": "ben", "password": PASSWORD})).await;
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        assert!(body.get("email").is_none(), "{body}");

        // /auth/me from a token, and from a cookie session, says the same.
        let tokens: Value = server.login("ana", PASSWORD).await.json().await.unwrap();
        let me: Value = server.me(&s(&tokens, "access_token")).await.json().await.unwrap();
        assert_eq!((&me["email"], &me["email_verified"]), (&json!("Ana.Lima@xn--bcher-kva.example"), &json!(false)));
        let session = server
            .client
            .post(server.url("/session/login"))
            .json(&json!({"username": "ana", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        let cookie = session.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        let me: Value = reqwest::Client::new()
            .get(server.url("/auth/me"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!((&me["email"], &me["email_verified"]), (&json!("Ana.Lima@xn--bcher-kva.example"), &json!(false)));
        let tokens: Value = server.login("ben", PASSWORD).await.json().await.unwrap();
        let me: Value = server.me(&s(&tokens, "access_token")).await.json().await.unwrap();
        assert!(me.get("email").is_none(), "{me}");
    }
}

on_each_store! {
    async fn a_bad_address_is_refused_with_its_reason_and_creates_nothing(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        for bad in ["ana", "ana@localhost", "ana@[127.0.0.1]", "a na@example.com", "ana@example.com\r\nBcc: x@y.example"] {
            let r = server.post("/auth/signup", json!({"username": "ana", "password": PASSWORD, "email": bad})).await;
            assert_eq!(r.status(), 400, "{bad:?}");
            let body: Value = r.json().await.unwrap();
            assert!(body["error_description"].as_str().unwrap().starts_with("email: "), "{body}");
        }
        let r = server.post("/auth/signup", json!({"username": "ana", "password": PASSWORD, "email": 42})).await;
        assert_eq!(r.status(), 400, "a number is not an address");
        // Nothing was created: the name is still free.
        assert_eq!(server.signup("ana", PASSWORD).await.status(), 201);

        // With require_email, a signup without an address is refused, on the page too.
        let dir = server.stop().await;
        let mut c = config(&url);
        c.require_email = true;
        let server = TestServer::start(c).await.keep_dir(dir);
        let r = server.post("/auth/signup", json!({"username": "cleo", "password": PASSWORD})).await;
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error_description"], "email: an email address is required to sign up here");
        let page = reqwest::Client::new().get(server.url("/signup")).send().await.unwrap().text().await.unwrap();
        assert!(page.contains("name=\"email\"") && page.contains("required"), "{page}");
        let r = server.post("/auth/signup", json!({"username": "cleo", "password": PASSWORD, "email": "cleo@example.com"})).await;
        assert_eq!(r.status(), 201);
    }
}

on_each_store! {
    async fn a_verified_address_belongs_to_one_account_and_an_unverified_one_blocks_nobody(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        // Two accounts may give one address (in any case) while nobody has proven it.
        for (name, email) in [("dora", "dora@example.com"), ("eve", "DORA@Example.com")] {
            let r = server.post("/auth/signup", json!({"username": name, "password": PASSWORD, "email": email})).await;
            assert_eq!(r.status(), 201, "{name}");
        }
        // An operator marks dora's verified; eve's copy, in another case, cannot be.
        let (code, out, err) = users(&url, &["set-email", "dora", "dora@example.com", "--verified"]).await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.trim(), "dora: email is now dora@example.com (verified)");
        let (code, _, err) = users(&url, &["set-email", "eve", "Dora@EXAMPLE.com", "--verified"]).await;
        assert_ne!(code, 0);
        assert!(err.contains("another account has verified that address"), "{err}");
        // Unverified, it still may be given.
        let (code, out, _) = users(&url, &["set-email", "eve", "Dora@EXAMPLE.com"]).await;
        assert_eq!(code, 0);
        assert_eq!(out.trim(), "eve: email is now Dora@example.com (not verified)");
        let (code, _, err) = users(&url, &["set-email", "nobody", "x@example.com"]).await;
        assert_ne!(code, 0);
        assert!(err.contains("no such user"), "{err}");
        let (code, _, err) = users(&url, &["set-email", "eve", "not an address"]).await;
        assert_ne!(code, 0);
        assert!(err.contains("@"), "{err}");
        // A new login carries the verified address.
        let tokens: Value = server.login("dora", PASSWORD).await.json().await.unwrap();
        let me: Value = server.me(&s(&tokens, "access_token")).await.json().await.unwrap();
        assert_eq!((&me["email"], &me["email_verified"]), (&json!("dora@example.com"), &json!(true)));
        let (code, out, _) = users(&url, &["set-email", "dora", "--remove"]).await;
        assert_eq!((code, out.trim()), (0, "dora: email removed"));
        // Removed, the address is free to be verified by eve.
        let (code, _, err) = users(&url, &["set-email", "eve", "dora@example.com", "--verified"]).await;
        assert_eq!(code, 0, "{err}");
    }
}
