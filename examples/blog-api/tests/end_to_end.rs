//! The blog API and a real Portcullis server, both on random ports: a post made with a
//! Portcullis token, and a logout everywhere that reaches the blog through the feed.

// Helpers unwrap: a panic there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Portcullis server's configuration on a free port, its database in `dir`; and its
/// issuer URL. New accounts may write posts.
fn auth_config(dir: &tempfile::TempDir) -> (portcullis_server::config::Config, String) {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let mut config = portcullis_server::config::Config::defaults().unwrap();
    config.bind = format!("127.0.0.1:{port}").parse().unwrap();
    config.database_url = format!("sqlite://{}", dir.path().join("auth.db").display());
    config.issuer = issuer.clone();
    config.audience = issuer.clone();
    config.default_scope = "posts:write".into();
    (config, issuer)
}

#[tokio::test]
async fn posts_need_a_portcullis_token_and_logout_everywhere_reaches_the_blog() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, issuer) = auth_config(&dir);
    let auth_db = config.database_url.clone();
    config.event_poll_interval = Duration::from_millis(100);
    let auth = portcullis_server::startup::start(config).await.unwrap();
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| http.post(format!("{issuer}{path}")).json(&body).send();

    // A machine client that may read the revocation feed, as `portcullis clients add
    // blog --scope revocations:read` registers it.
    let (client_id, client_secret) = register_client(&auth_db, "revocations:read").await;

    let blog = blog_api::start(blog_args(&issuer, &dir, Some((&client_id, &client_secret))))
        .await
        .unwrap();
    let blog_url = format!("http://{}", blog.addr);

    // Alice signs up and logs in on Portcullis, then posts on the blog.
    assert_eq!(
        post(
            "/auth/signup",
            json!({"username": "alice", "password": "correct horse battery"})
        )
        .await
        .unwrap()
        .status(),
        201
    );
    let tokens: Value = post(
        "/auth/login",
        json!({"username": "alice", "password": "correct horse battery"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let created = http
        .post(format!("{blog_url}/posts"))
        .bearer_auth(&access)
        .json(&json!({"title": "Hello", "body": "First post"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let me: Value = http
        .get(format!("{issuer}/auth/me"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["author"], me["id"]);
    let id = created["id"].as_i64().unwrap();

    // Anyone may read; writing needs a token with posts:write.
    let list: Value = http
        .get(format!("{blog_url}/posts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(
        http.get(format!("{blog_url}/posts/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{blog_url}/posts/999"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let anonymous = http
        .post(format!("{blog_url}/posts"))
        .json(&json!({"title": "x", "body": "y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let forged = http
        .post(format!("{blog_url}/posts"))
        .bearer_auth("e30.e30.AA")
        .json(&json!({"title": "x", "body": "y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    // Bob may comment but not delete Alice's post.
    post(
        "/auth/signup",
        json!({"username": "bob", "password": "another password"}),
    )
    .await
    .unwrap();
    let bob: Value = post(
        "/auth/login",
        json!({"username": "bob", "password": "another password"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let bob = bob["access_token"].as_str().unwrap().to_owned();
    let comment = http
        .post(format!("{blog_url}/posts/{id}/comments"))
        .bearer_auth(&bob)
        .json(&json!({"body": "Nice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(comment.status(), 201);
    assert_eq!(
        http.delete(format!("{blog_url}/posts/{id}"))
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );

    // Alice logs out everywhere: within the feed's poll interval the blog refuses her token.
    let all = http
        .post(format!("{issuer}/auth/logout-all"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(all.status(), 204);
    let start = Instant::now();
    loop {
        // A probe that changes nothing: authentication is checked before the (invalid)
        // body, so it answers 400 while the token is accepted and 401 once it is not.
        let r = http
            .post(format!("{blog_url}/posts"))
            .bearer_auth(&access)
            .json(&json!({"title": "", "body": ""}))
            .send()
            .await
            .unwrap();
        if r.status() == 401 {
            break;
        }
        assert_eq!(r.status(), 400);
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "the blog still accepts the token"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // With a fresh login she can delete her post.
    let again: Value = post(
        "/auth/login",
        json!({"username": "alice", "password": "correct horse battery"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let fresh = again["access_token"].as_str().unwrap();
    assert_eq!(
        http.delete(format!("{blog_url}/posts/{id}"))
            .bearer_auth(fresh)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    auth.stop().await.unwrap();
}

/// Issue 10: after `keys rotate`, resource servers caching the JWKS refused new tokens
/// for up to ~30 s. Now a rotation publishes the key before it signs, and the library's
/// unknown-kid refetch is not held back by earlier scheduled fetches: every freshly
/// issued token is accepted across a manual and an automatic rotation.
///
/// Both services run on one clock the test moves (five seconds of it per round), so the
/// 85 seconds of the scenario — two rotations 62 s apart, the 30 s unknown-kid cooldown
/// between — take about a fifth of that in real time (issue 29).
#[tokio::test]
async fn the_blog_accepts_every_fresh_token_across_key_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, issuer) = auth_config(&dir);
    // Published 2 s before signing, and a new key 62 s after the last one (the
    // shortest interval allowed with that delay; resource servers refetch for an
    // unknown kid at most every 30 s).
    config.key_publication_delay = Duration::from_secs(2);
    config.key_rotation_interval = Duration::from_secs(62);
    let now = portcullis::clock::Clock::now(&portcullis::clock::SystemClock);
    let clock = std::sync::Arc::new(portcullis::clock::ManualClock::new(now));
    let auth = portcullis_server::startup::start_with(config.clone(), clock.clone())
        .await
        .unwrap();
    let blog = blog_api::start_with_clock(blog_args(&issuer, &dir, None), clock.clone())
        .await
        .unwrap();
    let blog_url = format!("http://{}", blog.addr);
    let http = reqwest::Client::new();
    let credentials = json!({"username": "alice", "password": "correct horse battery"});
    assert_eq!(
        http.post(format!("{issuer}/auth/signup"))
            .json(&credentials)
            .send()
            .await
            .unwrap()
            .status(),
        201
    );

    let started = portcullis::clock::Clock::now(clock.as_ref());
    let mut rotated_by_hand = false;
    let mut kids = Vec::<String>::new();
    let (mut accepted, mut refused) = (0, Vec::new());
    let real = Instant::now();
    while portcullis::clock::Clock::now(clock.as_ref()) - started < 85 {
        let elapsed = portcullis::clock::Clock::now(clock.as_ref()) - started;
        if !rotated_by_hand && elapsed > 1 {
            let store = portcullis_store::open(&config.database_url).await.unwrap();
            portcullis_server::keyring::rotate(
                store.as_ref(),
                &config,
                portcullis::keys::Algorithm::EdDSA,
                false,
                portcullis::clock::Clock::now(clock.as_ref()),
            )
            .await
            .unwrap();
            rotated_by_hand = true;
        }
        let (kid, access) = login(&http, &issuer, &credentials).await;
        if !kids.contains(&kid) {
            kids.push(kid.clone());
        }
        let r = http
            .post(format!("{blog_url}/posts"))
            .bearer_auth(&access)
            .json(&json!({"title": "t", "body": "b"}))
            .send()
            .await
            .unwrap();
        if r.status() == 201 {
            accepted += 1;
        } else {
            refused.push((elapsed, kid, r.status()));
        }
        // Five seconds of the scenario per round; the server's key lifecycle looks at
        // the clock once a (real) second, so the round waits for one look.
        clock.set(portcullis::clock::Clock::now(clock.as_ref()) + 5);
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    eprintln!("85 s of the scenario in {:?}", real.elapsed());
    assert_eq!(
        kids.len(),
        3,
        "signed with the first key, the rotated one and the automatic one"
    );
    assert!(
        refused.is_empty(),
        "{} accepted, refused: {refused:?}",
        accepted
    );
    auth.stop().await.unwrap();
}

/// Issue 28, finding 3: a token naming a made-up `kid` armed the blog's 30 s
/// unknown-kid cooldown, and the tokens of an emergency rotation (`portcullis keys
/// rotate --now`) were then refused until it ended. The server now names every key it
/// adds in the revocation feed, and the library fetches an announced key past the
/// cooldown.
#[tokio::test]
async fn a_made_up_kid_cannot_hold_back_an_emergency_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, issuer) = auth_config(&dir);
    config.event_poll_interval = Duration::from_millis(100);
    let auth = portcullis_server::startup::start(config.clone())
        .await
        .unwrap();
    let (client_id, client_secret) =
        register_client(&config.database_url, "revocations:read").await;
    let blog = blog_api::start(blog_args(&issuer, &dir, Some((&client_id, &client_secret))))
        .await
        .unwrap();
    let blog_url = format!("http://{}", blog.addr);
    let http = reqwest::Client::new();
    let credentials = json!({"username": "alice", "password": "correct horse battery"});
    let signup = http
        .post(format!("{issuer}/auth/signup"))
        .json(&credentials)
        .send();
    assert_eq!(signup.await.unwrap().status(), 201);
    let login = || login(&http, &issuer, &credentials);
    let write = |access: String| {
        http.post(format!("{blog_url}/posts"))
            .bearer_auth(access)
            .json(&json!({"title": "t", "body": "b"}))
            .send()
    };
    let (first_kid, access) = login().await;
    assert_eq!(write(access).await.unwrap().status(), 201);

    // The attacker: a token of its own key under a kid nobody knows makes the blog
    // refetch once, which starts the 30 s cooldown.
    let own = portcullis::keys::SigningKey::generate(
        portcullis::keys::Algorithm::EdDSA,
        Some("made-up".into()),
    )
    .unwrap();
    let forged = portcullis::jwt::TokenBuilder::access_token(&issuer, &issuer)
        .subject("mallory")
        .scope("posts:write")
        .sign(&own)
        .unwrap();
    assert_eq!(write(forged).await.unwrap().status(), 401);

    // The operator rotates at once, on the database, as `keys rotate --now` does.
    let store = portcullis_store::open(&config.database_url).await.unwrap();
    let now = portcullis::clock::Clock::now(&portcullis::clock::SystemClock);
    let (new_kid, _) = portcullis_server::keyring::rotate(
        store.as_ref(),
        &config,
        portcullis::keys::Algorithm::EdDSA,
        true,
        now,
    )
    .await
    .unwrap();
    assert_ne!(new_kid, first_kid);
    // The server signs with it within its event poll; the blog accepts those tokens
    // within its feed's (100 ms here), not after the cooldown.
    let deadline = Instant::now() + Duration::from_secs(10);
    let access = loop {
        let (kid, access) = login().await;
        if kid == new_kid {
            break access;
        }
        assert!(
            Instant::now() < deadline,
            "the server never signed with the new key"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rotated = Instant::now();
    loop {
        let status = write(access.clone()).await.unwrap().status();
        if status == 201 {
            break;
        }
        assert!(
            rotated.elapsed() < Duration::from_secs(10),
            "the new key's token is still refused ({status}): held back by the cooldown"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    auth.stop().await.unwrap();
}

/// Logs in at `issuer`: the access token's `kid`, and the token.
async fn login(http: &reqwest::Client, issuer: &str, credentials: &Value) -> (String, String) {
    let tokens: Value = http
        .post(format!("{issuer}/auth/login"))
        .json(credentials)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let (header, _) = portcullis::jwt::jws::insecure_decode(&access, 8192).unwrap();
    (header["kid"].as_str().unwrap().to_owned(), access)
}

/// The blog's arguments against `issuer`, with a database in `dir`, following the
/// feed as the client given.
fn blog_args(
    issuer: &str,
    dir: &tempfile::TempDir,
    client: Option<(&str, &str)>,
) -> blog_api::Args {
    blog_api::Args {
        issuer: issuer.to_owned(),
        audience: None,
        bind: "127.0.0.1:0".into(),
        database_url: format!("sqlite://{}", dir.path().join("blog.db").display()),
        client_id: client.map(|(id, _)| id.to_owned()),
        client_secret: client.map(|(_, secret)| secret.to_owned()),
        client_secret_file: None,
        feed_interval_ms: 100,
        no_revocation_feed: client.is_none(),
    }
}

/// Registers a machine client in the server's database; its id and secret.
async fn register_client(db: &str, scope: &str) -> (String, String) {
    let store = portcullis_store::open(db).await.unwrap();
    let secret = portcullis::opaque::Opaque::generate().unwrap();
    let id = portcullis::jwt::random_id().unwrap();
    store
        .add_client(&portcullis_store::Client {
            id: id.clone(),
            name: format!("blog-{scope}"),
            secret_hash: secret.sha256().to_vec(),
            scope: scope.into(),
            disabled: false,
            not_before: 0,
            created_at: 0,
            redirect_uris: String::new(),
            post_logout_redirect_uris: String::new(),
            public: false,
            first_party: false,
        })
        .await
        .unwrap();
    (id, secret.expose().to_owned())
}

#[tokio::test]
async fn a_wrong_client_secret_a_missing_scope_or_a_down_issuer_stops_the_start_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let (config, issuer) = auth_config(&dir);
    let db = config.database_url.clone();
    let auth = portcullis_server::startup::start(config).await.unwrap();
    let (id, secret) = register_client(&db, "revocations:read").await;

    // A wrong secret fails the start at once, naming the client and what to check,
    // instead of running without the feed.
    let wrong = portcullis::opaque::Opaque::generate().unwrap();
    let started = blog_api::start(blog_args(&issuer, &dir, Some((&id, wrong.expose())))).await;
    let message = format!("{:#}", started.expect_err("the start fails"));
    assert!(message.starts_with("revocation feed: "), "{message}");
    assert!(message.contains("invalid_client"), "{message}");
    assert!(message.contains(&id), "{message}");
    // A client without the feed's scope cannot get a token for it.
    let (other, other_secret) = register_client(&db, "posts:read").await;
    let started = blog_api::start(blog_args(&issuer, &dir, Some((&other, &other_secret)))).await;
    let message = format!("{:#}", started.expect_err("the start fails"));
    assert!(message.contains("invalid_scope"), "{message}");
    // ... and the message names the scope it needs (issue 28, finding 13).
    assert!(message.contains("revocations:read"), "{message}");
    // Half a client, or none without saying so, is refused: no silent lack of the feed.
    let mut half = blog_args(&issuer, &dir, Some((&id, &secret)));
    half.client_secret = None;
    let message = format!("{:#}", blog_api::start(half).await.expect_err("refused"));
    assert!(message.contains("--no-revocation-feed"), "{message}");
    let mut none = blog_args(&issuer, &dir, None);
    none.no_revocation_feed = false;
    assert!(blog_api::start(none).await.is_err());
    // The right one starts.
    assert!(
        blog_api::start(blog_args(&issuer, &dir, Some((&id, &secret))))
            .await
            .is_ok()
    );

    // With the issuer down, the error names the URLs tried and the cause.
    auth.stop().await.unwrap();
    let started = blog_api::start(blog_args(&issuer, &dir, Some((&id, &secret)))).await;
    let message = format!("{:#}", started.expect_err("the start fails"));
    assert!(
        message.contains(&format!("{issuer}/.well-known/openid-configuration")),
        "{message}"
    );
    assert!(
        message.to_lowercase().contains("connection refused"),
        "{message}"
    );
}
