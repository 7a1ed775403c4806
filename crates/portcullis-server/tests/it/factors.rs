//! Issue 24: second factors. Authenticator-app codes computed here from the secret the
//! server hands out (RFC 4226/6238 over aws-lc-rs's HMAC-SHA-1, not the server's
//! crate), recovery codes, the second step of every way in, and what an attacker
//! holding the password tries: replays, codes of other steps, other accounts' tokens,
//! expired and overtaken challenges, and fifty guesses at once. On SQLite and
//! PostgreSQL, on a clock the tests move.

use portcullis::clock::ManualClock;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestServer, claims_of, config, on_each_store, s, still_clock};

const PASSWORD: &str = "correct horse battery";

/// RFC 4648 base32 (no padding) to bytes.
pub(crate) fn base32(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits = 0u64;
    let mut held = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c).expect("base32") as u64;
        bits = (bits << 5) | v;
        held += 5;
        if held >= 8 {
            held -= 8;
            out.push((bits >> held) as u8);
        }
    }
    out
}

/// The six-digit RFC 6238 code of `secret` (base32) at Unix time `at`.
pub(crate) fn totp(secret: &str, at: i64) -> String {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &base32(secret));
    let tag = hmac::sign(&key, &((at / 30) as u64).to_be_bytes());
    let d = tag.as_ref();
    let offset = usize::from(d[19] & 0x0f);
    let value =
        u32::from_be_bytes([d[offset], d[offset + 1], d[offset + 2], d[offset + 3]]) & 0x7fff_ffff;
    format!("{:06}", value % 1_000_000)
}

#[test]
fn the_test_totp_matches_rfc_6238() {
    // Appendix B, SHA-1: the low six digits of 94287082 and 07081804.
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"; // "12345678901234567890"
    assert_eq!(totp(secret, 59), "287082");
    assert_eq!(totp(secret, 1_111_111_109), "081804");
}

fn now(clock: &ManualClock) -> i64 {
    portcullis::clock::Clock::now(clock)
}

async fn post_bearer(
    server: &TestServer,
    path: &str,
    access: &str,
    body: Value,
) -> reqwest::Response {
    server
        .client
        .post(server.url(path))
        .bearer_auth(access)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// An account with a confirmed authenticator app: its secret, its recovery codes, and
/// the tokens of the login that set it up. Leaves the clock on a step no code was
/// used in.
pub(crate) async fn enrolled(
    server: &TestServer,
    clock: &ManualClock,
    name: &str,
) -> (String, Vec<String>) {
    let tokens = server.account(name).await;
    let access = s(&tokens, "access_token");
    let r = post_bearer(
        server,
        "/auth/mfa/totp",
        &access,
        json!({ "password": PASSWORD }),
    )
    .await;
    assert_eq!(r.status(), 200);
    let secret = s(&r.json::<Value>().await.unwrap(), "secret");
    let r = post_bearer(
        server,
        "/auth/mfa/totp/confirm",
        &access,
        json!({ "code": totp(&secret, now(clock)) }),
    )
    .await;
    assert_eq!(r.status(), 200);
    let codes: Vec<String> = r.json::<Value>().await.unwrap()["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    clock.advance(30);
    (secret, codes)
}

/// The password step of an account with a factor: its `mfa_token`.
async fn challenge(server: &TestServer, name: &str) -> String {
    let r = server.login(name, PASSWORD).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["mfa_required"], true, "{body}");
    s(&body, "mfa_token")
}

async fn second_step(
    server: &TestServer,
    token: &str,
    method: &str,
    code: &str,
) -> reqwest::Response {
    server
        .post(
            "/auth/login/mfa",
            json!({ "mfa_token": token, "method": method, "code": code }),
        )
        .await
}

async fn error_of(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

on_each_store! {
    /// Enrolment changes nothing until confirmed; then a right password alone gets no
    /// token, session or device credential, and the second step gets tokens whose
    /// `amr` says both factors, kept through refreshes. A code works once; a code of an
    /// earlier step never does after a later one.
    async fn totp_enrolment_and_the_second_step(url, dir) {
        let clock = still_clock();
        let server = TestServer::start_with(config(&url), clock.clone()).await.keep_dir(dir);
        let tokens = server.account("tess").await;
        assert_eq!(claims_of(&s(&tokens, "access_token"))["amr"], json!(["pwd"]));
        assert_eq!(claims_of(&s(&tokens, "access_token"))["acr"], "aal1");
        let access = s(&tokens, "access_token");
        // The password again, or nothing happens.
        let r = post_bearer(&server, "/auth/mfa/totp", &access, json!({ "password": "not the password" })).await;
        assert_eq!(error_of(r).await, (StatusCode::FORBIDDEN, "wrong_password".into()));
        let r = post_bearer(&server, "/auth/mfa/totp", &access, json!({})).await;
        assert_eq!(r.status(), 400);
        let r = post_bearer(&server, "/auth/mfa/totp", &access, json!({ "password": PASSWORD })).await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        let secret = s(&body, "secret");
        assert_eq!(base32(&secret).len(), 20, "160-bit secret");
        let uri = s(&body, "otpauth_uri");
        assert!(uri.starts_with("otpauth://totp/portcullis.test:tess?secret="), "{uri}");
        assert!(uri.contains("issuer=portcullis.test"), "{uri}");
        // Until confirmed, a password alone still signs in.
        let r = server.login("tess", PASSWORD).await;
        assert!(r.json::<Value>().await.unwrap()["access_token"].is_string());
        // A wrong confirmation code changes nothing.
        let wrong = totp(&secret, now(&clock) + 120);
        let r = post_bearer(&server, "/auth/mfa/totp/confirm", &access, json!({ "code": wrong })).await;
        assert_eq!(error_of(r).await, (StatusCode::UNAUTHORIZED, "invalid_code".into()));
        let r = server.login("tess", PASSWORD).await;
        assert!(r.json::<Value>().await.unwrap()["access_token"].is_string());
        let r = post_bearer(&server, "/auth/mfa/totp/confirm", &access, json!({ "code": totp(&secret, now(&clock)) })).await;
        assert_eq!(r.status(), 200);
        let codes = r.json::<Value>().await.unwrap()["recovery_codes"].as_array().unwrap().clone();
        assert_eq!(codes.len(), 10);
        // Confirmed once: a second confirmation, or a second enrolment, is a conflict.
        let r = post_bearer(&server, "/auth/mfa/totp/confirm", &access, json!({ "code": totp(&secret, now(&clock)) })).await;
        assert_eq!(r.status(), 409);
        let r = post_bearer(&server, "/auth/mfa/totp", &access, json!({ "password": PASSWORD })).await;
        assert_eq!(r.status(), 409);
        let r = server.client.get(server.url("/auth/mfa")).bearer_auth(&access).send().await.unwrap();
        let status: Value = r.json().await.unwrap();
        assert_eq!(status["methods"], json!(["totp"]));
        assert_eq!(status["recovery_codes_left"], 10);

        // The password step: no tokens, no device credential.
        let r = server.login("tess", PASSWORD).await;
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["mfa_required"], true);
        assert_eq!(body["methods"], json!(["totp", "recovery_code"]));
        assert!(body.get("access_token").is_none() && body.get("refresh_token").is_none());
        assert!(body.get("device_token").is_none());
        let token = s(&body, "mfa_token");
        // The confirmation spent this step's code.
        let r = second_step(&server, &token, "totp", &totp(&secret, now(&clock))).await;
        assert_eq!(error_of(r).await, (StatusCode::UNAUTHORIZED, "invalid_code".into()));
        clock.advance(30);
        let code = totp(&secret, now(&clock));
        let r = second_step(&server, &token, "totp", &code).await;
        assert_eq!(r.status(), 200);
        let tokens: Value = r.json().await.unwrap();
        let claims = claims_of(&s(&tokens, "access_token"));
        assert_eq!(claims["amr"], json!(["pwd", "otp", "mfa"]));
        assert_eq!(claims["acr"], "aal2");
        assert!(tokens["device_token"].is_string(), "a new device's credential comes after both steps");
        assert_eq!(server.me(&s(&tokens, "access_token")).await.status(), 200);
        // Refreshes keep how the sign-in was made.
        let r = server.refresh(&s(&tokens, "refresh_token")).await;
        let refreshed: Value = r.json().await.unwrap();
        assert_eq!(claims_of(&s(&refreshed, "access_token"))["amr"], json!(["pwd", "otp", "mfa"]));
        // The token worked once; the code works once, with any challenge.
        let r = second_step(&server, &token, "totp", &code).await;
        assert_eq!(error_of(r).await, (StatusCode::BAD_REQUEST, "invalid_mfa_token".into()));
        let again = challenge(&server, "tess").await;
        let r = second_step(&server, &again, "totp", &code).await;
        assert_eq!(error_of(r).await, (StatusCode::UNAUTHORIZED, "invalid_code".into()));
        // Nor does the code of the step before, now that a later one was used.
        let r = second_step(&server, &again, "totp", &totp(&secret, now(&clock) - 30)).await;
        assert_eq!(error_of(r).await, (StatusCode::UNAUTHORIZED, "invalid_code".into()));
        // The next step's code (a phone a little ahead) works.
        let r = second_step(&server, &again, "totp", &totp(&secret, now(&clock) + 30)).await;
        assert_eq!(r.status(), 200);
    }
}

on_each_store! {
    /// A recovery code signs in once, however it is typed; the count left shows; a new
    /// set voids the old; removing the app needs the password and takes the codes.
    async fn recovery_codes_work_once_and_removal_needs_the_password(url, dir) {
        let clock = still_clock();
        let server = TestServer::start_with(config(&url), clock.clone()).await.keep_dir(dir);
        let (secret, codes) = enrolled(&server, &clock, "rory").await;
        let token = challenge(&server, "rory").await;
        let typed = codes[3].to_lowercase().replace('-', " ");
        let r = second_step(&server, &token, "recovery_code", &typed).await;
        assert_eq!(r.status(), 200);
        let tokens: Value = r.json().await.unwrap();
        assert_eq!(claims_of(&s(&tokens, "access_token"))["amr"], json!(["pwd", "otp", "mfa"]));
        let access = s(&tokens, "access_token");
        let token = challenge(&server, "rory").await;
        let r = second_step(&server, &token, "recovery_code", &codes[3]).await;
        assert_eq!(error_of(r).await, (StatusCode::UNAUTHORIZED, "invalid_code".into()));
        let r = server.client.get(server.url("/auth/mfa")).bearer_auth(&access).send().await.unwrap();
        let status: Value = r.json().await.unwrap();
        assert_eq!(status["recovery_codes_left"], 9);
        assert_eq!(status["recovery_code_last_used_at"], now(&clock));
        // Another account's code is no code here.
        let (_, others) = enrolled(&server, &clock, "sina").await;
        let r = second_step(&server, &token, "recovery_code", &others[0]).await;
        assert_eq!(error_of(r).await, (StatusCode::UNAUTHORIZED, "invalid_code".into()));
        // Malformed codes and methods.
        let r = second_step(&server, &token, "recovery_code", "AAAA-BBBB").await;
        assert_eq!(error_of(r).await, (StatusCode::UNAUTHORIZED, "invalid_code".into()));
        let r = second_step(&server, &token, "sms", "123456").await;
        assert_eq!(error_of(r).await, (StatusCode::BAD_REQUEST, "invalid_request".into()));
        let r = second_step(&server, &token, "totp", &"1".repeat(65)).await;
        assert_eq!(r.status(), 400);
        // A new set: the old codes stop working.
        let r = post_bearer(&server, "/auth/mfa/recovery-codes", &access, json!({ "password": "wrong password" })).await;
        assert_eq!(r.status(), 403);
        let r = post_bearer(&server, "/auth/mfa/recovery-codes", &access, json!({ "password": PASSWORD })).await;
        assert_eq!(r.status(), 200);
        let fresh = r.json::<Value>().await.unwrap()["recovery_codes"][0].as_str().unwrap().to_owned();
        let token = challenge(&server, "rory").await;
        let r = second_step(&server, &token, "recovery_code", &codes[4]).await;
        assert_eq!(r.status(), 401);
        let r = second_step(&server, &token, "recovery_code", &fresh).await;
        assert_eq!(r.status(), 200);
        // Removing the app: the password, not the session alone.
        let delete = |body: Value| {
            server.client.delete(server.url("/auth/mfa/totp")).bearer_auth(&access).json(&body).send()
        };
        assert_eq!(delete(json!({})).await.unwrap().status(), 400);
        assert_eq!(delete(json!({ "password": "wrong password" })).await.unwrap().status(), 403);
        let token = challenge(&server, "rory").await;
        assert_eq!(delete(json!({ "password": PASSWORD })).await.unwrap().status(), 204);
        assert_eq!(delete(json!({ "password": PASSWORD })).await.unwrap().status(), 409);
        // A password alone signs in again; the codes went with the app; a challenge
        // made before the removal still needs a code the account no longer has.
        let r = server.login("rory", PASSWORD).await;
        assert!(r.json::<Value>().await.unwrap()["access_token"].is_string());
        let r = second_step(&server, &token, "totp", &totp(&secret, now(&clock))).await;
        assert_eq!(r.status(), 401);
        let r = server.client.get(server.url("/auth/mfa")).bearer_auth(&access).send().await.unwrap();
        assert_eq!(r.json::<Value>().await.unwrap()["recovery_codes_left"], 0);
        let r = post_bearer(&server, "/auth/mfa/recovery-codes", &access, json!({ "password": PASSWORD })).await;
        assert_eq!(r.status(), 409);
    }
}

on_each_store! {
    /// An `mfa_token` is refused when malformed, unknown, expired, out of attempts, or
    /// overtaken by a password change, a logout everywhere or a disabling; a code is
    /// checked against the token's account only; a device credential skips nothing.
    async fn mfa_tokens_that_do_not_work(url, dir) {
        let clock = still_clock();
        let server = TestServer::start_with(config(&url), clock.clone()).await.keep_dir(dir);
        let (secret, _) = enrolled(&server, &clock, "abby").await;
        let (other, _) = enrolled(&server, &clock, "bert").await;
        let code = || totp(&secret, now(&clock));
        let invalid = (StatusCode::BAD_REQUEST, "invalid_mfa_token".to_owned());
        for bad in ["", "short", &"A".repeat(43), &"!".repeat(43)] {
            assert_eq!(error_of(second_step(&server, bad, "totp", &code()).await).await, invalid, "{bad:?}");
        }
        // Expired: five minutes.
        let token = challenge(&server, "abby").await;
        clock.advance(301);
        assert_eq!(error_of(second_step(&server, &token, "totp", &code()).await).await, invalid);
        // Another account's token: the code is checked against that account's secret.
        let berts = challenge(&server, "bert").await;
        let r = second_step(&server, &berts, "totp", &code()).await;
        assert_eq!(r.status(), 401);
        let r = second_step(&server, &berts, "totp", &totp(&other, now(&clock))).await;
        assert_eq!(r.status(), 200);
        // Five codes per token: the sixth try is refused even with the right code.
        clock.advance(30);
        let token = challenge(&server, "abby").await;
        let wrong = if code() == "000000" { "111111" } else { "000000" };
        for _ in 0..4 {
            assert_eq!(second_step(&server, &token, "totp", wrong).await.status(), 401);
        }
        assert_eq!(second_step(&server, &token, "recovery_code", "AAAA-AAAA-AAAA-AAAA").await.status(), 401);
        assert_eq!(error_of(second_step(&server, &token, "totp", &code()).await).await, invalid);
        // The throttle (its own counters, the password's rule) waits out the failures.
        clock.advance(120);
        // Overtaken: a password change, a logout everywhere, a disabled account.
        let token = challenge(&server, "abby").await;
        let tokens = {
            let t = challenge(&server, "abby").await;
            second_step(&server, &t, "totp", &code()).await.json::<Value>().await.unwrap()
        };
        let access = s(&tokens, "access_token");
        let r = post_bearer(&server, "/auth/password/change", &access, json!({ "current_password": PASSWORD, "new_password": "another long password" })).await;
        assert_eq!(r.status(), 204);
        clock.advance(30);
        assert_eq!(error_of(second_step(&server, &token, "totp", &code()).await).await, invalid);
        let r = server.login("abby", "another long password").await;
        let token = s(&r.json::<Value>().await.unwrap(), "mfa_token");
        let r = post_bearer(&server, "/auth/logout-all", &access, json!({})).await;
        assert_eq!(r.status(), 204);
        assert_eq!(error_of(second_step(&server, &token, "totp", &code()).await).await, invalid);
        let r = server.login("abby", "another long password").await;
        let token = s(&r.json::<Value>().await.unwrap(), "mfa_token");
        let store = portcullis_store::open(&url).await.unwrap();
        store.set_disabled("abby", true).await.unwrap();
        assert_eq!(error_of(second_step(&server, &token, "totp", &code()).await).await, invalid);
        store.set_disabled("abby", false).await.unwrap();
        // A known device gets the second step too.
        let r = server.login("bert", PASSWORD).await;
        let token = s(&r.json::<Value>().await.unwrap(), "mfa_token");
        clock.advance(30);
        let r = second_step(&server, &token, "totp", &totp(&other, now(&clock))).await;
        let device = s(&r.json::<Value>().await.unwrap(), "device_token");
        let r = server.post("/auth/login", json!({ "username": "bert", "password": PASSWORD, "device_token": device })).await;
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["mfa_required"], true, "{body}");
        assert!(body.get("access_token").is_none());
    }
}

on_each_store! {
    /// Fifty second steps at once with guessed codes on one `mfa_token`: five reach
    /// the check, the rest are refused before it; and the same right code sent with
    /// two challenges at once (one per instance) signs in once.
    async fn fifty_guesses_at_once_and_one_code_on_two_instances(url, dir) {
        let clock = still_clock();
        let server = TestServer::start_with(config(&url), clock.clone()).await;
        let (secret, _) = enrolled(&server, &clock, "gina").await;
        let token = challenge(&server, "gina").await;
        let right = totp(&secret, now(&clock));
        let guesses: Vec<String> = (0..50u32)
            .map(|i| format!("{:06}", (i * 7919 + 13) % 1_000_000))
            .filter(|g| *g != right && *g != totp(&secret, now(&clock) - 30) && *g != totp(&secret, now(&clock) + 30))
            .collect();
        let tasks: Vec<_> = guesses
            .iter()
            .map(|g| {
                let (client, url, token, g) = (server.client.clone(), server.url("/auth/login/mfa"), token.clone(), g.clone());
                tokio::spawn(async move {
                    let r = client.post(url).json(&json!({ "mfa_token": token, "method": "totp", "code": g })).send().await.unwrap();
                    let status = r.status();
                    let body: Value = r.json().await.unwrap();
                    (status, body["error"].as_str().unwrap_or_default().to_owned())
                })
            })
            .collect();
        let mut checked = 0;
        for t in tasks {
            match t.await.unwrap() {
                (StatusCode::UNAUTHORIZED, e) if e == "invalid_code" => checked += 1,
                (StatusCode::BAD_REQUEST, e) if e == "invalid_mfa_token" => {}
                (StatusCode::TOO_MANY_REQUESTS, _) => {}
                other => panic!("unexpected answer to a guess: {other:?}"),
            }
        }
        assert!(checked <= 5, "{checked} guesses reached the check; the budget is 5 per mfa_token");
        assert!(checked >= 1, "some guesses must be checked");
        // The token is spent: the right code no longer helps it.
        assert_eq!(second_step(&server, &token, "totp", &right).await.status(), 400);

        // The owner signs in: the guesses' counts are cleared (the password's rule).
        clock.advance(600);
        let owner = challenge(&server, "gina").await;
        assert_eq!(second_step(&server, &owner, "totp", &totp(&secret, now(&clock))).await.status(), 200);
        // Two instances on one database, one right code, two challenges, sent at once.
        clock.advance(30);
        let second = TestServer::start_with(config(&url), clock.clone()).await;
        let (a, b) = (challenge(&server, "gina").await, challenge(&second, "gina").await);
        let code = totp(&secret, now(&clock));
        let (ra, rb) = tokio::join!(
            second_step(&server, &a, "totp", &code),
            second_step(&second, &b, "totp", &code)
        );
        let mut statuses = [ra.status().as_u16(), rb.status().as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 401], "one code, one sign-in");
        second.stop().await;
        server.stop().await;
        drop(dir);
    }
}

on_each_store! {
    /// The cookie session's sign-in: the same second step, the session's tokens carry
    /// its `amr`, and the library's step-up rule reads it.
    async fn session_login_with_a_second_factor(url, dir) {
        let clock = still_clock();
        let server = TestServer::start_with(config(&url), clock.clone()).await.keep_dir(dir);
        let (secret, _) = enrolled(&server, &clock, "sam").await;
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let r = client.post(server.url("/session/login")).json(&json!({ "username": "sam", "password": PASSWORD })).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("set-cookie").is_none(), "no session before the second step");
        let token = s(&r.json::<Value>().await.unwrap(), "mfa_token");
        let r = client.post(server.url("/session/login/mfa")).json(&json!({ "mfa_token": token, "method": "totp", "code": totp(&secret, now(&clock)) })).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let cookie = r.headers().get_all("set-cookie").iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
            .find(|c| c.contains("session"))
            .unwrap();
        let r = client.post(server.url("/session/token")).header("cookie", &cookie).header("origin", "http://portcullis.test").send().await.unwrap();
        assert_eq!(r.status(), 200);
        let access = s(&r.json::<Value>().await.unwrap(), "access_token");
        assert_eq!(claims_of(&access)["amr"], json!(["pwd", "otp", "mfa"]));
        // A password-only session says so.
        let _ = server.signup("pia", PASSWORD).await;
        let r = client.post(server.url("/session/login")).json(&json!({ "username": "pia", "password": PASSWORD })).send().await.unwrap();
        let cookie = r.headers().get_all("set-cookie").iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
            .find(|c| c.contains("session"))
            .unwrap();
        let r = client.post(server.url("/session/token")).header("cookie", &cookie).header("origin", "http://portcullis.test").send().await.unwrap();
        let access = s(&r.json::<Value>().await.unwrap(), "access_token");
        assert_eq!(claims_of(&access)["amr"], json!(["pwd"]));
        // A wrong JSON second step: invalid_code; no cookie.
        let r = client.post(server.url("/session/login")).json(&json!({ "username": "sam", "password": PASSWORD })).send().await.unwrap();
        let token = s(&r.json::<Value>().await.unwrap(), "mfa_token");
        let r = client.post(server.url("/session/login/mfa")).json(&json!({ "mfa_token": token, "method": "totp", "code": "12345x" })).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers().get("set-cookie").is_none());
    }
}

on_each_store! {
    /// `portcullis users reset-mfa`: the factors go, every sign-in ends, the event log
    /// says so, and the password alone signs in again.
    async fn an_operator_resets_a_lost_factor(url, dir) {
        let clock = still_clock();
        let server = TestServer::start_with(config(&url), clock.clone()).await.keep_dir(dir);
        let (secret, _) = enrolled(&server, &clock, "otto").await;
        let token = challenge(&server, "otto").await;
        let r = second_step(&server, &token, "totp", &totp(&secret, now(&clock))).await;
        let access = s(&r.json::<Value>().await.unwrap(), "access_token");
        assert_eq!(server.me(&access).await.status(), 200);
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["users", "reset-mfa", "otto", "--database-url", &url])
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("otto: second factors removed (totp)"), "{said}");
        crate::support::eventually("the reset's revocation reaches the server", || async {
            server.me(&access).await.status() == 401
        })
        .await;
        // The clock reaches the account's new "not before"; the password alone works.
        clock.advance(5);
        let r = server.login("otto", PASSWORD).await;
        assert!(r.json::<Value>().await.unwrap()["access_token"].is_string());
        let store = portcullis_store::open(&url).await.unwrap();
        let events = store.events_after(0, 1000).await.unwrap();
        let user = store.user_by_username("otto").await.unwrap().unwrap();
        assert!(events.iter().any(|e| e.kind == portcullis_store::EventKind::FactorsReset && e.subject == user.id));
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["users", "reset-mfa", "nobody", "--database-url", &url])
            .output()
            .await
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("no such user"));
    }
}

on_each_store! {
    /// A hundred wrong codes since the last good second step (NIST's limit on
    /// consecutive failures) lock authenticator codes, the right one included, whatever
    /// the throttle's pace; a recovery code still signs in and unlocks them.
    async fn a_hundred_wrong_codes_lock_the_app_until_a_recovery_code(url, dir) {
        let clock = still_clock();
        let server = TestServer::start_with(config(&url), clock.clone()).await.keep_dir(dir);
        let (secret, codes) = enrolled(&server, &clock, "lars").await;
        let mut wrong = 0;
        let mut last = (StatusCode::OK, String::new());
        while wrong < 100 {
            // Three tries per challenge, each after the throttle's longest wait (the
            // address's counter slows this address's password steps too), within the
            // challenge's five minutes.
            clock.advance(61);
            let token = challenge(&server, "lars").await;
            for _ in 0..3 {
                if wrong == 100 {
                    break;
                }
                clock.advance(61);
                let right = totp(&secret, now(&clock));
                let guess = format!("{:06}", (right.parse::<u32>().unwrap() + 500_000) % 1_000_000);
                last = error_of(second_step(&server, &token, "totp", &guess).await).await;
                wrong += 1;
                if wrong < 100 {
                    assert_eq!(last, (StatusCode::UNAUTHORIZED, "invalid_code".into()), "try {wrong}");
                }
            }
        }
        assert_eq!(last, (StatusCode::FORBIDDEN, "second_factor_locked".into()));
        clock.advance(61);
        let token = challenge(&server, "lars").await;
        clock.advance(61);
        let r = second_step(&server, &token, "totp", &totp(&secret, now(&clock))).await;
        assert_eq!(error_of(r).await, (StatusCode::FORBIDDEN, "second_factor_locked".into()), "a right code too");
        clock.advance(61);
        let r = second_step(&server, &token, "recovery_code", &codes[0]).await;
        assert_eq!(r.status(), 200);
        clock.advance(61);
        let token = challenge(&server, "lars").await;
        clock.advance(61);
        let r = second_step(&server, &token, "totp", &totp(&secret, now(&clock))).await;
        assert_eq!(r.status(), 200, "unlocked by the recovery code's sign-in");
    }
}

on_each_store! {
    /// Passkey ceremonies refused before any authenticator is involved: the password
    /// again to register, an `mfa_token` that names nothing, an account without a
    /// passkey, another account's ceremony, malformed credentials; and an issuer on an
    /// IP address has no passkeys at all. (Real assertions are in the browser tests.)
    async fn passkey_ceremonies_refused_without_an_authenticator(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        let ana = s(&server.account("ana").await, "access_token");
        let ben = s(&server.account("ben").await, "access_token");
        let r = post_bearer(&server, "/auth/webauthn/register/start", &ana, json!({ "password": "wrong password" })).await;
        assert_eq!(error_of(r).await, (StatusCode::FORBIDDEN, "wrong_password".into()));
        let r = post_bearer(&server, "/auth/webauthn/register/start", &ana, json!({ "password": PASSWORD })).await;
        assert_eq!(r.status(), 200);
        let started: Value = r.json().await.unwrap();
        let options = &started["publicKey"];
        assert_eq!(options["rp"]["id"], "portcullis.test");
        assert_eq!(options["authenticatorSelection"]["userVerification"], "required");
        assert_eq!(options["authenticatorSelection"]["residentKey"], "required");
        let ceremony = s(&started, "ceremony");
        // Ben finishing Ana's ceremony, and credentials that are not credentials.
        let garbage = json!({ "id": "AAAA", "rawId": "AAAA", "type": "public-key",
            "response": { "attestationObject": "AAAA", "clientDataJSON": "AAAA" }, "extensions": {} });
        let r = post_bearer(&server, "/auth/webauthn/register/finish", &ben, json!({ "ceremony": ceremony, "credential": garbage, "label": "x" })).await;
        assert_eq!(error_of(r).await, (StatusCode::UNAUTHORIZED, "invalid_passkey".into()));
        let r = post_bearer(&server, "/auth/webauthn/register/finish", &ana, json!({ "ceremony": ceremony, "credential": garbage, "label": "x" })).await;
        assert_eq!(error_of(r).await, (StatusCode::UNAUTHORIZED, "invalid_passkey".into()), "the ceremony was spent by Ben's try");
        let r = post_bearer(&server, "/auth/webauthn/register/finish", &ana, json!({ "ceremony": ceremony, "credential": { "id": 5 } })).await;
        assert_eq!(r.status(), 400);
        let r = post_bearer(&server, "/auth/webauthn/register/finish", &ana, json!({ "ceremony": ceremony, "credential": garbage, "label": "x".repeat(65) })).await;
        assert_eq!(r.status(), 400);
        let r = server.client.get(server.url("/auth/webauthn/credentials")).bearer_auth(&ana).send().await.unwrap();
        assert_eq!(r.json::<Value>().await.unwrap()["passkeys"], json!([]), "nothing was added");
        // Sign-in starts: no body is a passwordless start; a bad mfa_token is refused;
        // an account without a passkey has none to offer.
        let r = server.client.post(server.url("/auth/webauthn/login/start")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert!(body["publicKey"]["challenge"].is_string() && body["ceremony"].is_string(), "{body}");
        assert!(body.get("mediation").is_none() || body["mediation"].is_null(), "{body}");
        let r = server.post("/auth/webauthn/login/start", json!({ "mfa_token": "x".repeat(43) })).await;
        assert_eq!(error_of(r).await, (StatusCode::BAD_REQUEST, "invalid_mfa_token".into()));
        let r = server.post("/auth/webauthn/login/start", json!({ "username": "ana" })).await;
        assert_eq!(r.status(), 400, "unknown members");
        let r = server.post("/auth/webauthn/login/finish", json!({ "ceremony": s(&body, "ceremony"), "credential": garbage })).await;
        assert_eq!(r.status(), 400, "an attestation is no assertion");
        // Starts are throttled per address (each keeps a ceremony five minutes): a flood
        // is slowed with Retry-After; a sign-in gives its start back.
        let mut throttled = None;
        for n in 0..40 {
            let r = server.client.post(server.url("/auth/webauthn/login/start")).send().await.unwrap();
            if r.status() == 429 {
                assert!(r.headers().contains_key("retry-after"));
                throttled = Some(n);
                break;
            }
            assert_eq!(r.status(), 200);
        }
        assert!(throttled.is_some_and(|n| n >= 18), "{throttled:?}");
        // An issuer on an IP address: passkeys are off, and say why.
        let mut c = config(&url);
        c.issuer = "http://127.0.0.1:9".into();
        c.audience = c.issuer.clone();
        let ip = TestServer::start(c).await;
        let r = ip.client.post(ip.url("/auth/webauthn/login/start")).send().await.unwrap();
        assert_eq!(r.status(), 404);
        ip.stop().await;
    }
}

on_each_store! {
    /// `mfa_required_for_scopes = ["admin"]`: a password-only sign-in of an account with
    /// `admin` gets the other scopes (tokens, refreshes, a cookie session, forward
    /// authentication); once it signs in with a second factor, it gets `admin` too.
    async fn scopes_that_wait_for_a_second_factor(url, dir) {
        let clock = still_clock();
        let mut c = config(&url);
        c.mfa_required_for_scopes = vec!["admin".into()];
        let server = TestServer::start_with(c, clock.clone()).await.keep_dir(dir);
        assert_eq!(server.signup("adam", PASSWORD).await.status(), 201);
        let store = portcullis_store::open(&url).await.unwrap();
        store.set_scope("adam", "read admin", now(&clock)).await.unwrap();
        clock.advance(2);
        let tokens: Value = server.login("adam", PASSWORD).await.json().await.unwrap();
        assert_eq!(tokens["scope"], "read");
        assert_eq!(claims_of(&s(&tokens, "access_token"))["scope"], "read");
        let refreshed: Value = server.refresh(&s(&tokens, "refresh_token")).await.json().await.unwrap();
        assert_eq!(claims_of(&s(&refreshed, "access_token"))["scope"], "read", "a refresh earns nothing");
        // A cookie session: its token and forward authentication say the same.
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let r = client.post(server.url("/session/login")).json(&json!({ "username": "adam", "password": PASSWORD })).send().await.unwrap();
        let cookie = r.headers().get_all("set-cookie").iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
            .find(|c| c.contains("session")).unwrap();
        let r = client.post(server.url("/session/token")).header("cookie", &cookie).header("origin", "http://portcullis.test").send().await.unwrap();
        assert_eq!(r.json::<Value>().await.unwrap()["scope"], "read");
        let r = client.get(server.url("/auth/me")).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(r.json::<Value>().await.unwrap()["scope"], "read");
        let r = client.get(server.url("/auth/forward?scope=admin")).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(r.status(), 403);
        let r = client.get(server.url("/auth/forward?scope=read")).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-portcullis-scope"], "read");
        // Enrolled, and signed in with both factors: admin too, kept by refreshes.
        let access = s(&refreshed, "access_token");
        let r = post_bearer(&server, "/auth/mfa/totp", &access, json!({ "password": PASSWORD })).await;
        let secret = s(&r.json::<Value>().await.unwrap(), "secret");
        let r = post_bearer(&server, "/auth/mfa/totp/confirm", &access, json!({ "code": totp(&secret, now(&clock)) })).await;
        assert_eq!(r.status(), 200);
        clock.advance(30);
        let token = challenge(&server, "adam").await;
        let r = second_step(&server, &token, "totp", &totp(&secret, now(&clock))).await;
        let tokens: Value = r.json().await.unwrap();
        assert_eq!(tokens["scope"], "read admin");
        let refreshed: Value = server.refresh(&s(&tokens, "refresh_token")).await.json().await.unwrap();
        assert_eq!(claims_of(&s(&refreshed, "access_token"))["scope"], "read admin");
    }
}
