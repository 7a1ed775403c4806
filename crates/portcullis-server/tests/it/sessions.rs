//! Cookie sessions over real HTTP, on SQLite and (when configured) PostgreSQL: the
//! cookie, fixation, CSRF, logout, timeouts, the device list, the session-to-token
//! exchange, logout everywhere, and the server-rendered pages.

use std::sync::Arc;
use std::time::Duration;

use portcullis::clock::ManualClock;
use portcullis::session::SessionConfig;
use reqwest::header::{HeaderMap, SET_COOKIE};
use serde_json::{Value, json};

use crate::support::{TestServer, config, on_each_store, s, sqlite_db};

const ORIGIN: &str = "http://portcullis.test";
const PASSWORD: &str = "correct horse battery";

/// A client that shows redirects instead of following them, and keeps no cookies (the
/// tests send them by hand, to control exactly what is presented).
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The `name=value` of the response's session cookie.
fn cookie_of(headers: &HeaderMap) -> String {
    let set = headers
        .get(SET_COOKIE)
        .expect("a Set-Cookie header")
        .to_str()
        .unwrap();
    set.split(';').next().unwrap().to_owned()
}

/// Signs up `name` and logs in a cookie session; its cookie.
async fn session(server: &TestServer, name: &str) -> String {
    let _ = server.signup(name, PASSWORD).await;
    let r = session_login(server, name, &[]).await;
    assert_eq!(r.status(), 200);
    cookie_of(r.headers())
}

async fn session_login(server: &TestServer, name: &str, cookie: &[&str]) -> reqwest::Response {
    let mut req = client()
        .post(server.url("/session/login"))
        .json(&json!({ "username": name, "password": PASSWORD }));
    for c in cookie {
        req = req.header("cookie", *c);
    }
    req.send().await.unwrap()
}

async fn me(server: &TestServer, cookie: &str) -> reqwest::Response {
    client()
        .get(server.url("/auth/me"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

/// A state-changing request with the cookie and `headers` (e.g. an Origin).
async fn post(
    server: &TestServer,
    path: &str,
    cookie: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = client().post(server.url(path)).header("cookie", cookie);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

on_each_store! {
    async fn a_session_login_sets_a_strict_cookie_that_auth_me_accepts(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        let _ = server.signup("alice", PASSWORD).await;
        let r = session_login(&server, "alice", &[]).await;
        assert_eq!(r.status(), 200, "{url}");
        assert_eq!(r.headers()["cache-control"], "no-store");
        let set = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
        for attr in [
            "portcullis_session=",
            "Path=/",
            "HttpOnly",
            "SameSite=Lax",
            "Max-Age=",
        ] {
            assert!(set.contains(attr), "{set}");
        }
        assert!(!set.contains("Domain"), "{set}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["user"]["username"], "alice");
        assert!(body["csrf_token"].as_str().unwrap().len() >= 40);
        let cookie = set.split(';').next().unwrap().to_owned();
        let who: Value = me(&server, &cookie).await.json().await.unwrap();
        assert_eq!(who["username"], "alice");
        assert_eq!(who["id"], body["user"]["id"]);
        // The same credentials, wrong password: nothing is set.
        let wrong = client()
            .post(server.url("/session/login"))
            .json(&json!({ "username": "alice", "password": "not the password" }))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);
        assert!(wrong.headers().get(SET_COOKIE).is_none());
        server.stop().await;
    }
}

#[tokio::test]
async fn an_https_issuer_gets_the_host_prefixed_secure_cookie() {
    let (url, dir) = sqlite_db();
    let mut c = config(&url);
    c.issuer = "https://auth.example".into();
    c.audience = c.issuer.clone();
    c.sessions = SessionConfig::for_origin("https://auth.example").unwrap();
    let server = TestServer::start(c).await.keep_dir(dir);
    let _ = server.signup("alice", PASSWORD).await;
    let r = session_login(&server, "alice", &[]).await;
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(set.starts_with("__Host-portcullis_session="), "{set}");
    for attr in ["Path=/", "HttpOnly", "SameSite=Lax", "Secure"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("Domain"), "{set}");
    let cookie = cookie_of(r.headers());
    assert_eq!(me(&server, &cookie).await.status(), 200);
    // The development cookie name means nothing on an https site.
    let dev = cookie.replace("__Host-portcullis_session", "portcullis_session");
    assert_eq!(me(&server, &dev).await.status(), 401);
    server.stop().await;
}

on_each_store! {
    async fn an_id_planted_before_login_is_not_kept(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        let _ = server.signup("victim", PASSWORD).await;
        // A value the attacker made up, and a real session of the attacker's own.
        let made_up = "portcullis_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let attackers = session(&server, "mallory").await;
        for planted in [made_up, attackers.as_str()] {
            let r = session_login(&server, "victim", &[planted]).await;
            assert_eq!(r.status(), 200, "{url}");
            let issued = cookie_of(r.headers());
            assert_ne!(issued, planted, "a new id at login");
            let who: Value = me(&server, &issued).await.json().await.unwrap();
            assert_eq!(who["username"], "victim");
            assert_eq!(
                me(&server, planted).await.status(),
                401,
                "the planted id is not the victim's session"
            );
        }
        server.stop().await;
    }
}

on_each_store! {
    async fn a_cross_site_post_is_refused_and_changes_nothing(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        let cookie = session(&server, "alice").await;
        for headers in [
            vec![("origin", "https://evil.example")],
            vec![("sec-fetch-site", "cross-site")],
            vec![("sec-fetch-site", "same-site")],
            vec![("origin", "null")],
            vec![],
        ] {
            for path in ["/session/logout", "/auth/logout-all", "/session/token"] {
                let r = post(&server, path, &cookie, &headers).await;
                assert_eq!(r.status(), 403, "{url} {path} {headers:?}");
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["error"], "access_denied");
                // The refusal says what a legitimate client sends instead.
                let said = body["error_description"].as_str().unwrap();
                assert!(said.contains("Origin") && said.contains("X-CSRF-Token"), "{said}");
            }
        }
        assert_eq!(me(&server, &cookie).await.status(), 200, "still signed in");
        // A cross-site login form (login CSRF) is refused too.
        let r = client()
            .post(server.url("/session/login"))
            .header("origin", "https://evil.example")
            .form(&[("username", "alice"), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.headers().get(SET_COOKIE).is_none());
        // From our own origin, it works.
        let r = post(&server, "/session/logout", &cookie, &[("origin", ORIGIN)]).await;
        assert_eq!(r.status(), 204);
        server.stop().await;
    }
}

on_each_store! {
    async fn logout_ends_the_session_on_the_server(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        let cookie = session(&server, "alice").await;
        let r = post(
            &server,
            "/session/logout",
            &cookie,
            &[("sec-fetch-site", "same-origin")],
        )
        .await;
        assert_eq!(r.status(), 204, "{url}");
        let cleared = r.headers()[SET_COOKIE].to_str().unwrap();
        assert!(cleared.contains("Max-Age=0"), "{cleared}");
        // The browser forgets it; a copy replayed later is refused by the server.
        assert_eq!(me(&server, &cookie).await.status(), 401);
        let list = client()
            .get(server.url("/session/list"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(list.status(), 401);
        let again = post(&server, "/session/logout", &cookie, &[("origin", ORIGIN)]).await;
        assert_eq!(again.status(), 401);
        server.stop().await;
    }
}

on_each_store! {
    async fn an_expired_session_is_refused(url, dir) {
        let mut c = config(&url);
        c.sessions = c
            .sessions
            .with_timeouts(Duration::from_secs(600), Duration::from_secs(3600))
            .unwrap();
        let clock = ManualClock::new(1_800_000_000);
        let server = TestServer::start_with(c, Arc::new(clock.clone()))
            .await
            .keep_dir(dir);

        // Idle for the whole idle timeout.
        let cookie = session(&server, "alice").await;
        clock.advance(599);
        assert_eq!(me(&server, &cookie).await.status(), 200, "{url}");
        clock.advance(599);
        assert_eq!(
            me(&server, &cookie).await.status(),
            200,
            "use keeps it alive"
        );
        clock.advance(600);
        assert_eq!(me(&server, &cookie).await.status(), 401, "idle");

        // Busy, but past the absolute timeout.
        let cookie = session(&server, "alice").await;
        for _ in 0..11 {
            clock.advance(300);
            assert_eq!(me(&server, &cookie).await.status(), 200);
        }
        // 100 s before the end, a minted token lives 100 s, not session_token_ttl.
        clock.advance(200);
        let minted = post(&server, "/session/token", &cookie, &[("origin", ORIGIN)]).await;
        assert_eq!(minted.json::<Value>().await.unwrap()["expires_in"], 100);
        clock.advance(100);
        assert_eq!(me(&server, &cookie).await.status(), 401, "absolute");
        server.stop().await;
    }
}

on_each_store! {
    async fn sessions_are_listed_and_revoked_by_their_owner_only(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        let a = session(&server, "alice").await;
        let b_login = session_login(&server, "alice", &[]).await;
        let b_id = b_login.json::<Value>().await.unwrap()["session"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let bob = session(&server, "bob").await;

        let list: Value = client()
            .get(server.url("/session/list"))
            .header("cookie", &a)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let sessions = list["sessions"].as_array().unwrap();
        assert_eq!(sessions.len(), 2, "{url}: {list}");
        assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
        assert!(
            sessions
                .iter()
                .any(|s| s["id"] == b_id.as_str() && s["current"] == false)
        );

        // Bob cannot end Alice's session; it is not his to know about.
        let r = client()
            .delete(server.url(&format!("/session/{b_id}")))
            .header("cookie", &bob)
            .header("origin", ORIGIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        // Alice can, from her other session; a DELETE by cookie needs same-origin proof.
        let cross = client()
            .delete(server.url(&format!("/session/{b_id}")))
            .header("cookie", &a)
            .send()
            .await
            .unwrap();
        assert_eq!(cross.status(), 403);
        let r = client()
            .delete(server.url(&format!("/session/{b_id}")))
            .header("cookie", &a)
            .header("origin", ORIGIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let list: Value = client()
            .get(server.url("/session/list"))
            .header("cookie", &a)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list["sessions"].as_array().unwrap().len(), 1);

        // With a bearer token the same works, without CSRF proof (no ambient credential).
        let tokens = server
            .login("alice", PASSWORD)
            .await
            .json::<Value>()
            .await
            .unwrap();
        let access = s(&tokens, "access_token");
        let listed: Value = client()
            .get(server.url("/session/list"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let a_id = listed["sessions"][0]["id"].as_str().unwrap().to_owned();
        let r = client()
            .delete(server.url(&format!("/session/{a_id}")))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(me(&server, &a).await.status(), 401);
        assert_eq!(me(&server, &bob).await.status(), 200);
        server.stop().await;
    }
}

on_each_store! {
    async fn a_session_token_works_until_its_session_ends(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        let cookie = session(&server, "alice").await;
        let r = post(&server, "/session/token", &cookie, &[("origin", ORIGIN)]).await;
        assert_eq!(r.status(), 200, "{url}");
        assert_eq!(r.headers()["cache-control"], "no-store");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 300);
        assert!(body.get("refresh_token").is_none());
        let access = s(&body, "access_token");
        let who: Value = server.me(&access).await.json().await.unwrap();
        assert_eq!(who["username"], "alice");
        // A bearer token cannot mint more tokens this way.
        let r = client()
            .post(server.url("/session/token"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        // Ending the session revokes what it minted (its sid).
        let r = post(&server, "/session/logout", &cookie, &[("origin", ORIGIN)]).await;
        assert_eq!(r.status(), 204);
        assert_eq!(server.me(&access).await.status(), 401);
        server.stop().await;
    }
}

on_each_store! {
    async fn logout_everywhere_ends_sessions_and_refresh_families_together(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        let cookie = session(&server, "alice").await;
        let other = session_login(&server, "alice", &[]).await;
        let other = cookie_of(other.headers());
        let tokens = server
            .login("alice", PASSWORD)
            .await
            .json::<Value>()
            .await
            .unwrap();
        let r = post(&server, "/auth/logout-all", &cookie, &[("origin", ORIGIN)]).await;
        assert_eq!(r.status(), 204, "{url}");
        assert!(
            r.headers()[SET_COOKIE]
                .to_str()
                .unwrap()
                .contains("Max-Age=0")
        );
        assert_eq!(me(&server, &cookie).await.status(), 401);
        assert_eq!(me(&server, &other).await.status(), 401);
        assert_eq!(server.me(&s(&tokens, "access_token")).await.status(), 401);
        assert_eq!(
            server.refresh(&s(&tokens, "refresh_token")).await.status(),
            400
        );

        // And the other way round: a bearer logout-all ends the cookie sessions.
        let cookie = session(&server, "alice").await;
        let tokens = server
            .login("alice", PASSWORD)
            .await
            .json::<Value>()
            .await
            .unwrap();
        let r = client()
            .post(server.url("/auth/logout-all"))
            .bearer_auth(s(&tokens, "access_token"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(me(&server, &cookie).await.status(), 401);
        server.stop().await;
    }
}

on_each_store! {
    async fn the_pages_keep_what_was_typed_show_errors_and_need_the_form_token(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        let form = |path: &str, fields: &[(&str, &str)], cookie: Option<&str>| {
            let mut req = client()
                .post(server.url(path))
                .header("origin", ORIGIN)
                .form(fields);
            if let Some(c) = cookie {
                req = req.header("cookie", c);
            }
            req.send()
        };
        // Signup with a short password: the form comes back with the name, not the password.
        let r = form(
            "/signup",
            &[("username", "Carol"), ("password", "short")],
            None,
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 400, "{url}");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
        let html = r.text().await.unwrap();
        assert!(html.contains("role=\"alert\""), "{html}");
        assert!(html.contains("value=\"Carol\""), "{html}");
        assert!(!html.contains("short\""), "{html}");

        // Signup that works signs in and goes to the account page.
        let r = form(
            "/signup",
            &[("username", "Carol"), ("password", PASSWORD)],
            None,
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], "/account");
        let cookie = cookie_of(r.headers());

        // A failed login keeps the username and says why.
        let r = form(
            "/session/login",
            &[("username", "carol"), ("password", "wrong password!")],
            None,
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 401);
        let html = r.text().await.unwrap();
        assert!(
            html.contains("The username or password is wrong."),
            "{html}"
        );
        assert!(html.contains("value=\"carol\""));
        assert!(!html.contains("wrong password!"));
        // Hostile input is escaped, not interpreted.
        let r = form(
            "/session/login",
            &[
                ("username", "<script>x</script>"),
                ("password", "whatever123"),
            ],
            None,
        )
        .await
        .unwrap();
        let html = r.text().await.unwrap();
        assert!(!html.contains("<script>x"), "{html}");
        assert!(html.contains("&lt;script&gt;x"), "{html}");

        // The account page.
        let page = client()
            .get(server.url("/account"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        assert!(
            html.contains("carol") && html.contains("(this browser)"),
            "{html}"
        );
        let token = html
            .split("name=\"csrf_token\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_owned();
        // Strangers are sent to sign in.
        let r = client().get(server.url("/account")).send().await.unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], "/login");

        // Forms that change state need the session's token, even from our origin.
        let r = form(
            "/session/logout",
            &[("csrf_token", "forged")],
            Some(&cookie),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 403);
        let r = form("/account/logout-all", &[], Some(&cookie))
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        assert_eq!(me(&server, &cookie).await.status(), 200, "still signed in");
        let r = form("/session/logout", &[("csrf_token", &token)], Some(&cookie))
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], "/login?signed_out=here");
        assert_eq!(me(&server, &cookie).await.status(), 401);
        server.stop().await;
    }
}

/// Polls until `server` refuses `cookie` (or, with `access`, that bearer token) with
/// 401, failing after a second: the bound docs/http-api.md gives other instances.
async fn refused_within_a_second(server: &TestServer, cookie: &str, access: Option<&str>) {
    let start = std::time::Instant::now();
    loop {
        let status = match access {
            Some(token) => server.me(token).await.status(),
            None => me(server, cookie).await.status(),
        };
        if status == 401 {
            return;
        }
        assert_eq!(status, 200);
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "still accepted after 1 s (token: {})",
            access.is_some()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

on_each_store! {
    /// Instance b answers sessions from memory (session_cache.rs); a logout on a must
    /// still reach it, through the event log, within a second — the cookie and the
    /// tokens minted from it alike. Also after b has cached the session many times
    /// over, and for "sign out everywhere".
    async fn a_session_ended_on_one_instance_is_refused_by_another_with_its_tokens(url, dir) {
        let a = TestServer::start(config(&url)).await.keep_dir(dir);
        let b = TestServer::start(config(&url)).await;
        let cookie = session(&a, "kim").await;
        for _ in 0..20 {
            assert_eq!(me(&b, &cookie).await.status(), 200, "b reads a's sessions");
        }
        let minted = post(&b, "/session/token", &cookie, &[("origin", ORIGIN)]).await;
        let access = s(&minted.json::<Value>().await.unwrap(), "access_token");
        assert_eq!(a.me(&access).await.status(), 200);

        let r = post(&a, "/session/logout", &cookie, &[("origin", ORIGIN)]).await;
        assert_eq!(r.status(), 204);
        assert_eq!(me(&a, &cookie).await.status(), 401, "a: at once");
        refused_within_a_second(&b, &cookie, None).await;
        refused_within_a_second(&b, &cookie, Some(&access)).await;

        // Sign out everywhere, on b this time, of two sessions a has cached.
        let first = session(&a, "lou").await;
        let second = session_login(&a, "lou", &[]).await;
        let second = cookie_of(second.headers());
        for c in [&first, &second] {
            assert_eq!(me(&a, c).await.status(), 200);
        }
        let r = post(&b, "/auth/logout-all", &first, &[("origin", ORIGIN)]).await;
        assert!(r.status().is_success(), "{}", r.status());
        for c in [&first, &second] {
            refused_within_a_second(&a, c, None).await;
        }
        a.stop().await;
        b.stop().await;
    }
}

on_each_store! {
    async fn a_script_without_origin_headers_proves_itself_with_the_csrf_token(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        let _ = server.signup("ivy", PASSWORD).await;
        let login = session_login(&server, "ivy", &[]).await;
        let cookie = cookie_of(login.headers());
        let token = s(&login.json::<Value>().await.unwrap(), "csrf_token");
        let r = post(
            &server,
            "/session/token",
            &cookie,
            &[("x-csrf-token", "forged")],
        )
        .await;
        assert_eq!(r.status(), 403, "{url}");
        let r = post(
            &server,
            "/session/token",
            &cookie,
            &[("x-csrf-token", &token)],
        )
        .await;
        assert_eq!(r.status(), 200);
        // A token of another session does not pass for this one.
        let other = session_login(&server, "ivy", &[]).await;
        let other_cookie = cookie_of(other.headers());
        let r = post(
            &server,
            "/session/token",
            &other_cookie,
            &[("x-csrf-token", &token)],
        )
        .await;
        assert_eq!(r.status(), 403);
        // A bad bearer token beside a good cookie is refused, not passed over.
        let r = client()
            .post(server.url("/session/token"))
            .header("cookie", &cookie)
            .header("origin", ORIGIN)
            .bearer_auth("not.a.token")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_token");
        server.stop().await;
    }
}

on_each_store! {
    async fn account_forms_refuse_forged_tokens_other_origins_and_other_peoples_sessions(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        let first = session(&server, "jo").await;
        // Another of Jo's sessions: its token must not pass for the first one's forms.
        let login = session_login(&server, "jo", &[]).await;
        let jo_token = s(&login.json::<Value>().await.unwrap(), "csrf_token");
        let jo = {
            // The account forms carry the token of the session that shows them.
            let page = client()
                .get(server.url("/account"))
                .header("cookie", &first)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let token = page
                .split("name=\"csrf_token\" value=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap()
                .to_owned();
            (first, token)
        };
        let max = session(&server, "max").await;
        let max_id = client()
            .get(server.url("/session/list"))
            .header("cookie", &max)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["sessions"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let revoke = |cookie: &str, token: &str, origin: &str, id: &str| {
            client()
                .post(server.url(&format!("/account/sessions/{id}/revoke")))
                .header("cookie", cookie)
                .header("origin", origin)
                .form(&[("csrf_token", token)])
                .send()
        };
        // Forged token, another session's token, another origin: 403, nothing ends.
        for (token, origin) in [
            ("forged", ORIGIN),
            (jo_token.as_str(), ORIGIN),
            (jo.1.as_str(), "https://evil.example"),
        ] {
            let r = revoke(&jo.0, token, origin, &max_id).await.unwrap();
            assert_eq!(r.status(), 403, "{url} {token} {origin}");
        }
        // Jo's own valid form, naming Max's session: it is not Jo's to end.
        let r = revoke(&jo.0, &jo.1, ORIGIN, &max_id).await.unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(
            me(&server, &max).await.status(),
            200,
            "max is still signed in"
        );
        assert_eq!(me(&server, &jo.0).await.status(), 200);
        server.stop().await;
    }
}

/// Issue 28, finding 9: the sign-up form goes on to the authorization request it came
/// from, and only to one: a `return_to` anywhere else (another site, a path of ours
/// that is not an authorization request) goes to the account page, and a made-up
/// request names no application.
#[tokio::test]
async fn signup_goes_on_to_an_authorization_request_and_nowhere_else() {
    let (url, dir) = sqlite_db();
    let server = TestServer::start(config(&url)).await.keep_dir(dir);
    let signup = |name: &'static str, return_to: &'static str| {
        client()
            .post(server.url("/signup"))
            .header("origin", ORIGIN)
            .form(&[
                ("username", name),
                ("password", PASSWORD),
                ("return_to", return_to),
            ])
            .send()
    };
    let request = "/oauth/authorize?response_type=code&client_id=abc&state=1";
    let r = signup("mia", request).await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], request);
    for elsewhere in [
        "https://evil.example/",
        "//evil.example/",
        "/account/logout-all",
        "/oauth/authorize\\x",
    ] {
        let r = client()
            .post(server.url("/signup"))
            .header("origin", ORIGIN)
            .form(&[
                ("username", format!("n{}", elsewhere.len())),
                ("password", PASSWORD.into()),
                ("return_to", elsewhere.into()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{elsewhere}");
        assert_eq!(r.headers()["location"], "/account", "{elsewhere}");
    }
    // The page keeps the request, names no application for an unknown client, and
    // its sign-in link keeps the way back.
    let page = client()
        .get(server.url(&format!(
            "/signup?return_to={}",
            url::form_urlencoded::byte_serialize(request.as_bytes()).collect::<String>()
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("An application asks you to sign in"),
        "{page}"
    );
    assert!(!page.contains("app-name"), "{page}");
    assert!(page.contains("name=\"return_to\""), "{page}");
    assert!(
        page.contains("href=\"/login?return_to=%2Foauth%2Fauthorize%3F"),
        "{page}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_cross_site_signup_form_creates_nothing() {
    let (url, dir) = sqlite_db();
    let server = TestServer::start(config(&url)).await.keep_dir(dir);
    let r = client()
        .post(server.url("/signup"))
        .header("sec-fetch-site", "cross-site")
        .form(&[("username", "lee"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get(SET_COOKIE).is_none());
    assert_eq!(
        server.signup("lee", PASSWORD).await.status(),
        201,
        "the name is free"
    );
    server.stop().await;
}

on_each_store! {
    async fn disabling_an_account_ends_its_sessions_and_tokens(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        let cookie = session(&server, "nat").await;
        let minted = post(&server, "/session/token", &cookie, &[("origin", ORIGIN)]).await;
        let access = s(&minted.json::<Value>().await.unwrap(), "access_token");
        let disable = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args([
                "users",
                "disable",
                "nat",
                "--database-url",
                &server.database_url,
            ])
            .output()
            .await
            .unwrap();
        assert!(
            disable.status.success(),
            "{}",
            String::from_utf8_lossy(&disable.stderr)
        );
        // The CLI is another process: the server learns of it from the event log.
        refused_within_a_second(&server, &cookie, None).await;
        let start = std::time::Instant::now();
        while server.me(&access).await.status() != 401 {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "the disabled user's token still works"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let again = session_login(&server, "nat", &[]).await;
        assert_eq!(again.status(), 401);
        server.stop().await;
    }
}

on_each_store! {
    async fn ended_sessions_are_pruned_once_no_token_can_need_them(url, dir) {
        let clock = ManualClock::new(1_800_000_000);
        // Known devices are forgotten after 5 minutes here: the device row each login
        // leaves is the witness that a pruning pass ran while the ended session stayed.
        let mut c = config(&url);
        c.device_lifetime = Duration::from_secs(300);
        let server = TestServer::start_with(c.clone(), Arc::new(clock.clone()))
            .await
            .keep_dir(dir);
        let ended = session(&server, "pia").await;
        let r = post(&server, "/session/logout", &ended, &[("origin", ORIGIN)]).await;
        assert_eq!(r.status(), 204);
        let live = session(&server, "pia").await;
        let dir = server.stop().await;
        let db_url = url.as_str();
        let count_of = |table: &'static str| async move {
            let sql = format!("SELECT COUNT(*) FROM {table}");
            if db_url.starts_with("sqlite") {
                let pool = sqlx::SqlitePool::connect(db_url).await.unwrap();
                sqlx::query_scalar::<_, i64>(&sql)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            } else {
                let pool = sqlx::PgPool::connect(db_url).await.unwrap();
                sqlx::query_scalar::<_, i64>(&sql)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        let count = || count_of("sessions");
        assert_eq!(count().await, 2, "{url}");
        assert!(count_of("devices").await > 0, "{url}");

        // Within the access-token lifetime the ended row stays (its tokens may live):
        // a start 10 minutes on prunes the devices but keeps both sessions.
        clock.advance(600);
        let server = TestServer::start_with(c.clone(), Arc::new(clock.clone()))
            .await
            .keep_dir(dir);
        let start = std::time::Instant::now();
        while count_of("devices").await != 0 {
            assert!(start.elapsed() < Duration::from_secs(5), "no pruning pass ran");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(count().await, 2, "pruned inside the window: {url}");
        let dir = server.stop().await;

        // After it, the next start prunes it. The live session is untouched.
        clock.advance(900 + 61 - 600);
        let server = TestServer::start_with(c, Arc::new(clock.clone()))
            .await
            .keep_dir(dir);
        let start = std::time::Instant::now();
        while count().await != 1 {
            assert!(start.elapsed() < Duration::from_secs(5), "not pruned");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(me(&server, &live).await.status(), 200);
        assert_eq!(me(&server, &ended).await.status(), 401);
        server.stop().await;
    }
}

on_each_store! {
    async fn api_logins_are_listed_beside_sessions_and_revocable_one_by_one(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        let cookie = session(&server, "nina").await;
        let login = |ua: &'static str| {
            let server = &server;
            async move {
                let r = client()
                    .post(server.url("/auth/login"))
                    .header("user-agent", ua)
                    .json(&json!({ "username": "nina", "password": PASSWORD }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.json::<Value>().await.unwrap()
            }
        };
        let script = login("curl/8.5.0").await;
        let app = login("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0").await;
        let access = s(&script, "access_token");

        // With the script's own token: both API logins, the script's marked current.
        let r = client()
            .get(server.url("/session/list"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let list: Value = r.json().await.unwrap();
        let logins = list["api_logins"].as_array().unwrap();
        assert_eq!(logins.len(), 2, "{list}");
        let mine = logins.iter().find(|l| l["current"] == true).unwrap();
        assert_eq!(mine["device"], "curl");
        assert_eq!(mine["label"], "curl/8.5.0");
        let other = logins.iter().find(|l| l["current"] == false).unwrap();
        assert_eq!(other["device"], "Firefox on Linux");
        assert_eq!(list["sessions"].as_array().unwrap().len(), 1);
        let script_id = s(mine, "id");

        // The account page shows them, each with a revoke form.
        let page = client()
            .get(server.url("/account"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains(&format!("data-api-login=\"{script_id}\"")), "{page}");
        assert!(page.contains("Firefox on Linux"));
        assert!(page.contains(&format!("/account/sessions/{script_id}/revoke")));

        // Ending the script's login from the browser session: its refresh token and
        // access token stop working at once; the app's go on.
        let r = client()
            .delete(server.url(&format!("/session/{script_id}")))
            .header("cookie", &cookie)
            .header("origin", ORIGIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let r = server
            .post("/auth/refresh", json!({ "refresh_token": s(&script, "refresh_token") }))
            .await;
        assert_eq!(r.status(), 400);
        let r = client().get(server.url("/auth/me")).bearer_auth(&access).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let r = server
            .post("/auth/refresh", json!({ "refresh_token": s(&app, "refresh_token") }))
            .await;
        assert_eq!(r.status(), 200);

        // Twice, or someone else's: 404, nothing ended.
        let r = client()
            .delete(server.url(&format!("/session/{script_id}")))
            .header("cookie", &cookie)
            .header("origin", ORIGIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let stranger = session(&server, "omar").await;
        let app_id = s(other, "id");
        let r = client()
            .delete(server.url(&format!("/session/{app_id}")))
            .header("cookie", &stranger)
            .header("origin", ORIGIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let list: Value = client()
            .get(server.url("/session/list"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ids: Vec<_> = list["api_logins"].as_array().unwrap().iter().map(|l| s(l, "id")).collect();
        assert_eq!(ids, [app_id]);
        server.stop().await;
    }
}

on_each_store! {
    async fn page_routes_answer_refusals_in_html_and_change_nothing(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        let cookie = session(&server, "hana").await;
        // A cross-site form: refused by the layer before any handler, as a page.
        let r = client()
            .post(server.url("/account/logout-all"))
            .header("cookie", &cookie)
            .header("origin", "https://evil.example")
            .form(&[("csrf_token", "anything")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        assert!(r.headers().contains_key("content-security-policy"));
        let html = r.text().await.unwrap();
        assert!(html.contains("sent from another site"), "{html}");
        // A bad bearer token on a page: HTML too, with its challenge.
        let r = client()
            .get(server.url("/account"))
            .header("cookie", &cookie)
            .bearer_auth("not.a.token")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers().contains_key("www-authenticate"));
        assert!(r.text().await.unwrap().contains("sign in again"));
        // The JSON API keeps its JSON.
        let r = client()
            .post(server.url("/auth/logout-all"))
            .header("cookie", &cookie)
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        assert_eq!(me(&server, &cookie).await.status(), 200, "still signed in");
        server.stop().await;
    }
}
