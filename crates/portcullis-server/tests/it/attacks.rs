//! The login, signup and refresh rules as an attacker tries them: many requests at
//! once, two instances, forged forwarding headers, look-alike names, stacked
//! credentials. Each test names the finding it guards (issue 9 of the tracker); each
//! runs on SQLite and on PostgreSQL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::clock::ManualClock;
use portcullis::refresh::RefreshToken;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestServer, claims_of, config, eventually, on_each_store, s, still_clock};

const PASSWORD: &str = "correct horse battery";

async fn start(url: &str, clock: &Arc<ManualClock>) -> TestServer {
    TestServer::start_with(config(url), clock.clone()).await
}

fn no_cookies() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn login_with(
    server: &TestServer,
    name: &str,
    password: &str,
    extra: &[(&str, &str)],
    device: Option<&str>,
) -> reqwest::Response {
    let mut body = json!({ "username": name, "password": password });
    if let Some(device) = device {
        body["device_token"] = device.into();
    }
    let mut req = no_cookies().post(server.url("/auth/login")).json(&body);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// Logs `name` in to a cookie session; the `name=value` of its session cookie.
async fn session_cookie(server: &TestServer, name: &str) -> String {
    let r = session_login(server, name, None).await;
    assert_eq!(r.status(), 200);
    let set = r.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

async fn session_login(server: &TestServer, name: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut req = no_cookies()
        .post(server.url("/session/login"))
        .json(&json!({ "username": name, "password": PASSWORD }));
    if let Some(cookie) = cookie {
        req = req.header("cookie", cookie);
    }
    req.send().await.unwrap()
}

/// Fires `n` wrong guesses at `name` at once; how many reached the password check
/// (401) and how many the throttle refused (429).
async fn burst(server: &TestServer, name: &str, n: usize) -> (usize, usize) {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (url, name) = (server.url("/auth/login"), name.to_owned());
            tokio::spawn(async move {
                no_cookies()
                    .post(url)
                    .json(&json!({ "username": name, "password": format!("wrong guess {i}") }))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    let (mut checked, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::UNAUTHORIZED => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    (checked, refused)
}

on_each_store! {
    /// Finding 1: guesses sent together all passed a check-then-record throttle.
    async fn concurrent_guesses_get_no_more_checks_than_the_budget(url, dir) {
        let clock = still_clock();
        let server = start(&url, &clock).await.keep_dir(dir);
        assert_eq!(server.signup("alice", PASSWORD).await.status(), 201);
        let (checked, refused) = burst(&server, "alice", 60).await;
        assert_eq!((checked, refused), (5, 55), "five free attempts, however sent");
        // The right password is refused too while the account waits…
        let r = server.login("alice", PASSWORD).await;
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "1");
        // …and a second later one more attempt is admitted, and only one.
        clock.advance(1);
        let (checked, _) = burst(&server, "alice", 20).await;
        assert_eq!(checked, 1);
    }
}

on_each_store! {
    /// Issue 28, finding 5: a brand-new device of the owner waited like the attacker,
    /// who won every block expiry: the account had one counter for every address. Now
    /// an attacker at one address runs the account's budget down at that address only;
    /// guesses spread over many addresses are held by the account-wide counter.
    async fn an_attacker_at_one_address_never_locks_out_the_owners_new_device(url, dir) {
        let clock = still_clock();
        let mut c = config(&url);
        c.trusted_proxies = portcullis_server::client::TrustedProxies::parse(&["127.0.0.1/32"]).unwrap();
        let throttle = portcullis_server::throttle::Throttle::new(&c);
        let server = TestServer::start_with(c, clock.clone()).await.keep_dir(dir);
        assert_eq!(server.signup("alice", PASSWORD).await.status(), 201);

        // The attacker, at one address, takes every slot the moment it opens: twice the
        // free attempts, each after waiting out the delay it was told.
        let attacker = [("x-forwarded-for", "203.0.113.66")];
        let mut failures = 0;
        while failures < 2 * throttle.account_budget().free {
            let r = login_with(&server, "alice", &format!("wrong guess {failures}"), &attacker, None).await;
            match r.status().as_u16() {
                401 => failures += 1,
                429 => {
                    let wait: i64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
                    clock.advance(wait);
                }
                other => panic!("{other}"),
            }
        }
        // Its next guess must wait...
        assert_eq!(login_with(&server, "alice", "one more guess", &attacker, None).await.status(), 429);
        // ...but the owner, on a phone that never signed in before, elsewhere, in that
        // same second, gets in with the right password.
        let r = login_with(&server, "alice", PASSWORD, &[("x-forwarded-for", "198.51.100.7")], None).await;
        assert_eq!(r.status(), 200, "the owner's new device is kept out by the attacker");

        // An attacker at many addresses at once is held by the account-wide budget:
        // at one instant, exactly its free attempts are checked, and then everyone at a
        // new address waits, the owner too (docs/security-model.md, G20).
        let wide = throttle.account_wide_budget().free;
        let mut checked = 0;
        for i in 0..wide + 10 {
            let bot = format!("192.0.2.{i}");
            let r = login_with(&server, "alice", "spread guess", &[("x-forwarded-for", &bot)], None).await;
            if r.status() == 401 {
                checked += 1;
            } else {
                assert_eq!(r.status(), 429);
            }
        }
        assert_eq!(checked, wide);
        let cafe = [("x-forwarded-for", "198.51.100.99")];
        assert_eq!(login_with(&server, "alice", PASSWORD, &cafe, None).await.status(), 429);
    }
}

on_each_store! {
    /// Finding 2: one wrong guess a minute kept the owner out for good.
    async fn an_attacker_never_locks_out_the_owners_known_device(url, dir) {
        let clock = still_clock();
        let server = start(&url, &clock).await.keep_dir(dir);
        assert_eq!(server.signup("alice", PASSWORD).await.status(), 201);
        assert_eq!(server.signup("mallory", PASSWORD).await.status(), 201);
        // The owner's phone signed in once and kept its device credential.
        let first: Value = login_with(&server, "alice", PASSWORD, &[], None).await.json().await.unwrap();
        let device = s(&first, "device_token");
        // The attacker's own account gives it a device credential too: for mallory only.
        let theirs: Value = login_with(&server, "mallory", PASSWORD, &[], None).await.json().await.unwrap();
        let attacker_device = s(&theirs, "device_token");

        let (checked, _) = burst(&server, "alice", 30).await;
        assert_eq!(checked, 5);
        // Anonymous attempts wait, even with someone else's device credential…
        assert_eq!(login_with(&server, "alice", PASSWORD, &[], None).await.status(), 429);
        assert_eq!(
            login_with(&server, "alice", PASSWORD, &[], Some(&attacker_device)).await.status(),
            429
        );
        // …but the owner's device gets in on the first try, and keeps its credential.
        let r = login_with(&server, "alice", PASSWORD, &[], Some(&device)).await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert!(body.get("device_token").is_none(), "already a known device");

        // A browser the same way: the session login's device cookie.
        let r = session_login(&server, "mallory", None).await;
        let device_cookie = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|c| c.starts_with("portcullis_device="))
            .expect("a device cookie");
        assert!(device_cookie.contains("HttpOnly") && device_cookie.contains("SameSite=Strict"));
        assert_eq!(burst(&server, "mallory", 30).await, (5, 25));
        // Without the device cookie the browser waits like anyone…
        assert_eq!(session_login(&server, "mallory", None).await.status(), 429);
        let cookie = device_cookie.split(';').next().unwrap().to_owned();
        assert_eq!(session_login(&server, "mallory", Some(&cookie)).await.status(), 200);

        // A stolen device credential is throttled on its own budget.
        for i in 0..5 {
            let r = login_with(&server, "alice", &format!("wrong guess {i}"), &[], Some(&device)).await;
            assert_eq!(r.status(), 401);
        }
        assert_eq!(login_with(&server, "alice", "wrong guess 6", &[], Some(&device)).await.status(), 429);
    }
}

on_each_store! {
    /// Finding 3: behind a proxy every client had the proxy's address; and a client
    /// must not choose its own address by sending forwarding headers.
    async fn forwarding_headers_count_only_from_trusted_proxies(url, dir) {
        // No trusted proxy: forged headers change nothing, the peer is the client.
        let clock = still_clock();
        let server = start(&url, &clock).await.keep_dir(dir);
        for i in 0..20 {
            let forged = format!("203.0.113.{i}");
            let r = login_with(&server, &format!("nobody{i}"), "wrong password", &[("x-forwarded-for", &forged), ("forwarded", &format!("for={forged}"))], None).await;
            assert_eq!(r.status(), 401);
        }
        let r = login_with(&server, "someone", "wrong password", &[("x-forwarded-for", "198.51.100.1")], None).await;
        assert_eq!(r.status(), 429, "the address budget is spent whatever the headers say");
        let dir = server.stop().await;

        // Behind a trusted proxy: each client has its own address budget.
        let mut c = config(&url);
        c.trusted_proxies = portcullis_server::client::TrustedProxies::parse(&["127.0.0.1/32"]).unwrap();
        let server = TestServer::start_with(c, clock.clone()).await.keep_dir(dir);
        assert_eq!(server.signup("bob", PASSWORD).await.status(), 201);
        for i in 0..20 {
            let r = login_with(&server, &format!("other{i}"), "wrong password", &[("x-forwarded-for", "6.6.6.6, 203.0.113.7")], None).await;
            assert_eq!(r.status(), 401);
        }
        let r = login_with(&server, "someone", "wrong password", &[("x-forwarded-for", "203.0.113.7")], None).await;
        assert_eq!(r.status(), 429, "the attacker's address is throttled");
        // Another client of the same proxy, even one naming the attacker's address
        // first, is itself.
        let r = login_with(&server, "bob", PASSWORD, &[("x-forwarded-for", "203.0.113.7, 198.51.100.20")], None).await;
        assert_eq!(r.status(), 200);
    }
}

on_each_store! {
    /// Finding 4: each instance throttled on its own.
    async fn two_instances_share_one_budget(url, dir) {
        let clock = still_clock();
        let a = start(&url, &clock).await.keep_dir(dir);
        let b = start(&url, &clock).await;
        assert_eq!(a.signup("alice", PASSWORD).await.status(), 201);
        for i in 0..5 {
            let on = if i % 2 == 0 { &a } else { &b };
            assert_eq!(on.login("alice", "wrong password").await.status(), 401);
        }
        assert_eq!(b.login("alice", "wrong password").await.status(), 429);
        assert_eq!(a.login("alice", "wrong password").await.status(), 429);
        b.stop().await;
    }
}

/// The SHA-256 the store keeps of a refresh token.
fn stored_hash(token: &str) -> Vec<u8> {
    RefreshToken::parse(token).unwrap().hash().to_vec()
}

async fn live_hash(url: &str, family_of: &str) -> Vec<u8> {
    let sql = "SELECT f.current_hash FROM refresh_families f \
               JOIN refresh_tokens t ON t.family_id = f.id WHERE t.hash = $1";
    let hash = stored_hash(family_of);
    if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query_as::<_, (Vec<u8>,)>(sql)
            .bind(hash)
            .fetch_one(&pool)
            .await
            .unwrap()
            .0
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query_as::<_, (Vec<u8>,)>(sql)
            .bind(hash)
            .fetch_one(&pool)
            .await
            .unwrap()
            .0
    }
}

on_each_store! {
    /// Finding 5: 50 concurrent refreshes of one token left 50 live tokens.
    async fn fifty_concurrent_refreshes_leave_one_live_chain(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        let tokens = server.account("alice").await;
        let refresh = s(&tokens, "refresh_token");
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (url, body) = (server.url("/auth/refresh"), json!({ "refresh_token": refresh }));
                tokio::spawn(async move {
                    let r = no_cookies().post(url).json(&body).send().await.unwrap();
                    (r.status(), r.json::<Value>().await.unwrap())
                })
            })
            .collect();
        let mut issued = Vec::new();
        for t in tasks {
            let (status, body) = t.await.unwrap();
            match status.as_u16() {
                200 => issued.push(s(&body, "refresh_token")),
                400 => assert_eq!(body["error"], "invalid_grant"),
                other => panic!("unexpected {other}: {body}"),
            }
        }
        assert!(!issued.is_empty());
        // Exactly one of the tokens handed out is live.
        let live = live_hash(&url, &refresh).await;
        let winners: Vec<&String> = issued.iter().filter(|t| stored_hash(t) == live).collect();
        assert_eq!(winners.len(), 1, "{} issued", issued.len());
        let winner = winners[0].clone();
        // Concurrent retries within the grace window each get a pair: there are losers.
        let loser = issued
            .iter()
            .find(|t| **t != winner)
            .cloned()
            .expect("a racer's token");
        // The live one refreshes once more…
        let next = server.refresh(&winner).await;
        assert_eq!(next.status(), 200);
        let next: Value = next.json().await.unwrap();
        // …and a racer's token is reuse: the family ends, the live chain with it.
        assert_eq!(server.refresh(&loser).await.status(), 400);
        assert_eq!(server.refresh(&s(&next, "refresh_token")).await.status(), 400);
    }
}

on_each_store! {
    /// Finding 5, as a thief would use it: a replay within the grace window.
    async fn a_thief_replaying_within_grace_gets_no_parallel_chain(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        let tokens = server.account("alice").await;
        let stolen = s(&tokens, "refresh_token");
        let owner: Value = server.refresh(&stolen).await.json().await.unwrap();
        let thief: Value = server.refresh(&stolen).await.json().await.unwrap();
        // The owner's next refresh uses the successor the replay killed: reuse.
        assert_eq!(server.refresh(&s(&owner, "refresh_token")).await.status(), 400);
        // The thief's chain died with the family, and so did its access token.
        assert_eq!(server.refresh(&s(&thief, "refresh_token")).await.status(), 400);
        let deadline = Instant::now() + Duration::from_secs(2);
        while server.me(&s(&thief, "access_token")).await.status() != 401 {
            assert!(Instant::now() < deadline, "the thief's access token still works");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

on_each_store! {
    /// Finding 6: removing a scope left refresh and sessions minting it for weeks.
    async fn a_removed_scope_reaches_refresh_sessions_and_live_tokens(url, dir) {
        let clock = still_clock();
        let server = start(&url, &clock).await.keep_dir(dir);
        assert_eq!(server.signup("alice", PASSWORD).await.status(), 201);
        let store = portcullis_store::open(&url).await.unwrap();
        let now = || portcullis::clock::Clock::now(clock.as_ref());
        store.set_scope("alice", "read admin", now()).await.unwrap().unwrap();
        let tokens: Value = server.login("alice", PASSWORD).await.json().await.unwrap();
        assert_eq!(tokens["scope"], "read admin");
        let cookie = session_cookie(&server, "alice").await;
        clock.advance(1);
        let change = store.set_scope("alice", "read", now()).await.unwrap().unwrap();
        assert!(change.removed);
        assert_eq!((change.families, change.sessions), (1, 1));

        // The access token issued before is refused, on this instance within a poll.
        let deadline = Instant::now() + Duration::from_secs(2);
        while server.me(&s(&tokens, "access_token")).await.status() != 401 {
            assert!(Instant::now() < deadline, "the admin token still works");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Refresh mints the new scope, and its token works. (From the next second on:
        // a token of the removal's own second would be refused with the old ones;
        // `a_revocation_reaches_the_tokens_of_its_own_second` shows the wait.)
        clock.advance(1);
        let refreshed: Value = server.refresh(&s(&tokens, "refresh_token")).await.json().await.unwrap();
        assert_eq!(refreshed["scope"], "read");
        assert_eq!(server.me(&s(&refreshed, "access_token")).await.status(), 200);
        // So do the cookie session and the tokens it mints.
        let me: Value = no_cookies().get(server.url("/auth/me")).header("cookie", &cookie).send().await.unwrap().json().await.unwrap();
        assert_eq!(me["scope"], "read");
        let minted: Value = no_cookies()
            .post(server.url("/session/token"))
            .header("cookie", &cookie)
            .header("origin", "http://portcullis.test")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(minted["scope"], "read");
    }
}

on_each_store! {
    /// Finding 7: signup was an unthrottled account factory.
    async fn signups_are_throttled_per_address(url, dir) {
        let mut c = config(&url);
        c.signups_before_delay = 3;
        let server = TestServer::start_with(c, still_clock()).await.keep_dir(dir);
        assert_eq!(server.signup("one", PASSWORD).await.status(), 201);
        assert_eq!(server.signup("one", PASSWORD).await.status(), 409, "a taken name counts too");
        assert_eq!(server.signup("two", PASSWORD).await.status(), 201);
        let r = server.signup("three", PASSWORD).await;
        assert_eq!(r.status(), 429);
        assert!(r.headers().contains_key("retry-after"));
        // Nothing was created by the refused request.
        let store = portcullis_store::open(&url).await.unwrap();
        assert!(store.user_by_username("three").await.unwrap().is_none());
        // The page says the same.
        let r = no_cookies()
            .post(server.url("/signup"))
            .form(&[("username", "four"), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429);
    }
}

on_each_store! {
    /// Finding 7: 409 answered in 2 ms and 201 in 28 ms, an existence oracle.
    async fn a_taken_username_costs_as_much_as_a_free_one(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        assert_eq!(server.signup("taken", PASSWORD).await.status(), 201);
        let (mut taken, mut free) = (Vec::new(), Vec::new());
        // Interleaved, so machine noise hits both alike; compared by medians.
        for i in 0..7 {
            let t = Instant::now();
            assert_eq!(server.signup("taken", PASSWORD).await.status(), 409);
            taken.push(t.elapsed());
            let t = Instant::now();
            assert_eq!(server.signup(&format!("free{i}"), PASSWORD).await.status(), 201);
            free.push(t.elapsed());
        }
        taken.sort();
        free.sort();
        let ratio = taken[3].as_secs_f64() / free[3].as_secs_f64();
        // Both run one Argon2id hash (tens of ms); without it a 409 takes a few percent.
        assert!(ratio > 0.5, "409 median {:?} vs 201 median {:?}", taken[3], free[3]);
    }
}

on_each_store! {
    /// Finding 8: Cyrillic, Greek and dotless-i look-alikes were separate accounts.
    async fn look_alike_usernames_are_refused(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        assert_eq!(server.signup("alice", PASSWORD).await.status(), 201);
        assert_eq!(server.signup("bob", PASSWORD).await.status(), 201);
        // Mixed scripts: refused with a message that says why.
        for mixed in ["\u{430}lice", "b\u{3bf}b"] {
            let r = server.signup(mixed, PASSWORD).await;
            assert_eq!(r.status(), 400, "{mixed}");
            let body: Value = r.json().await.unwrap();
            assert!(body["error_description"].as_str().unwrap().contains("scripts"), "{body}");
        }
        // One script, but it looks like an existing name: taken.
        let r = server.signup("al\u{131}ce", PASSWORD).await;
        assert_eq!(r.status(), 409);
        // Single-script names of other scripts are fine.
        assert_eq!(server.signup("\u{431}\u{43e}\u{431}", PASSWORD).await.status(), 201);
    }
}

on_each_store! {
    /// Finding 9: `Basic` then a bad `Bearer` plus a cookie authenticated as the
    /// cookie's user, while the reverse order answered 400.
    async fn stacked_credentials_are_refused_in_either_order(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        assert_eq!(server.signup("alice", PASSWORD).await.status(), 201);
        let cookie = session_cookie(&server, "alice").await;
        let ask = |path: &'static str, auth: Vec<&'static str>| {
            let mut req = no_cookies().get(server.url(path)).header("cookie", cookie.clone());
            for a in auth {
                req = req.header("authorization", a);
            }
            req.send()
        };
        for path in ["/auth/me", "/session/list"] {
            for headers in [
                vec!["Basic YWxpY2U6eA==", "Bearer not.a.token"],
                vec!["Bearer not.a.token", "Basic YWxpY2U6eA=="],
                vec!["Basic YWxpY2U6eA=="],
            ] {
                let r = ask(path, headers.clone()).await.unwrap();
                assert_eq!(r.status(), 400, "{path} {headers:?}");
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["error"], "invalid_request");
            }
            assert_eq!(ask(path, vec![]).await.unwrap().status(), 200, "the cookie alone");
        }
    }
}

on_each_store! {
    /// Issue 28, finding 2: "not before" compared whole seconds, so a token issued in
    /// the same second as a scope removal (or a logout everywhere), before it, lived
    /// on for its whole life, here and at every resource server following the feed.
    async fn a_revocation_reaches_the_tokens_of_its_own_second(url, dir) {
        // The clock stands still: everything below happens in one second until the
        // test moves it.
        let clock = still_clock();
        let server = start(&url, &clock).await.keep_dir(dir);
        assert_eq!(server.signup("alice", PASSWORD).await.status(), 201);
        let store = portcullis_store::open(&url).await.unwrap();
        let now = || portcullis::clock::Clock::now(clock.as_ref());
        let second = now();
        store.set_scope("alice", "read admin", second).await.unwrap().unwrap();
        let before: Value = server.login("alice", PASSWORD).await.json().await.unwrap();
        assert_eq!(before["scope"], "read admin");
        assert_eq!(claims_of(&s(&before, "access_token"))["iat"], second);

        // An operator takes `admin` away in that same second.
        assert!(store.set_scope("alice", "read", second).await.unwrap().unwrap().removed);
        eventually("the token issued before the removal, in its second, is refused", || async {
            server.me(&s(&before, "access_token")).await.status() == 401
        })
        .await;

        // A login after it, still in that second, waits for the next one: a token
        // stamped with this second would be refused with the old ones.
        let login = tokio::spawn({
            let (url, client) = (server.url("/auth/login"), server.client.clone());
            async move {
                client
                    .post(url)
                    .json(&json!({ "username": "alice", "password": PASSWORD }))
                    .send()
                    .await
                    .unwrap()
            }
        });
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(!login.is_finished(), "a token of the revoked second was issued");
        clock.advance(1);
        let after: Value = login.await.unwrap().json().await.unwrap();
        assert_eq!(after["scope"], "read");
        let after_access = s(&after, "access_token");
        assert_eq!(claims_of(&after_access)["iat"], second + 1);
        assert_eq!(server.me(&after_access).await.status(), 200);

        // Logout everywhere, in the second of that login: the token is refused
        // (by its family, and by "not before"), and a login after it waits again.
        let other: Value = server.login("alice", PASSWORD).await.json().await.unwrap();
        let ended = server
            .client
            .post(server.url("/auth/logout-all"))
            .bearer_auth(s(&other, "access_token"))
            .send()
            .await
            .unwrap();
        assert_eq!(ended.status(), 204);
        assert_eq!(server.me(&s(&other, "access_token")).await.status(), 401);
        assert_eq!(server.me(&after_access).await.status(), 401);
        let user = store.user_by_username("alice").await.unwrap().unwrap();
        assert_eq!(user.not_before, second + 2, "every token of second {} is refused", second + 1);

        // The feed tells resource servers the same exact rule: tokens with an `iat`
        // before `at` are refused, and `at` is the second after the revocation.
        let added: Value = serde_json::from_str(&crate::clients::clients(
            &url,
            &["add", "follower", "--scope", "revocations:read"],
        ).await)
        .unwrap();
        let machine: Value = server
            .client
            .post(server.url("/oauth/token"))
            .basic_auth(s(&added, "client_id"), Some(s(&added, "client_secret")))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let feed: Value = server
            .client
            .get(server.url("/auth/revocations"))
            .bearer_auth(s(&machine, "access_token"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let at = feed["not_before"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["sub"] == user.id.as_str())
            .map(|n| n["at"].as_i64().unwrap())
            .max()
            .unwrap();
        assert_eq!(at, second + 2);
    }
}
