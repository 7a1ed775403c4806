//! A protected axum API that trusts a remote issuer, set up as a user would with the
//! `remote` feature: `Bearer::from_issuer`, `RevocationFollower`, `RequireScope` and
//! typed claims. The issuer here is a stand-in served over real HTTP on a random port
//! (metadata, JWKS, the client-credentials token endpoint and the revocation feed, as
//! a Portcullis server serves them); examples/blog-api runs the same setup against the
//! real server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use portcullis::feed::{OnSilence, RevocationFollower};
use portcullis::jwt::TokenBuilder;
use portcullis::keys::{Algorithm, KeySet, SigningKey};
use portcullis::middleware::{AuthLayer, Authenticated, RequireScope};
use portcullis::revocation::RevocationFeed;
use portcullis::strategy::{Bearer, Chain};
use serde_json::{Value, json};

const CLIENT: &str = "svc";
const SECRET: &str = "s3cret-of-the-service";

/// What the stand-in issuer serves, changeable by the test.
struct Issuer {
    url: String,
    key: SigningKey,
    revoked: Mutex<Vec<String>>,
    feed_up: Mutex<bool>,
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

async fn issuer() -> Arc<Issuer> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let issuer = Arc::new(Issuer {
        url: url.clone(),
        key: SigningKey::generate(Algorithm::EdDSA, Some("k1".into())).unwrap(),
        revoked: Mutex::new(Vec::new()),
        feed_up: Mutex::new(true),
    });
    let metadata = json!({
        "issuer": url,
        "jwks_uri": format!("{url}/jwks"),
        "token_endpoint": format!("{url}/oauth/token"),
        "portcullis_revocation_feed": format!("{url}/auth/revocations"),
    });
    let router = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { axum::Json(metadata) }),
        )
        .route(
            "/jwks",
            get(|State(i): State<Arc<Issuer>>| async move {
                let set = KeySet::new(vec![i.key.verifying_key().unwrap()]).unwrap();
                set.to_public_jwks().unwrap().to_json()
            }),
        )
        .route(
            "/oauth/token",
            post(|State(i): State<Arc<Issuer>>, headers: HeaderMap| async move {
                use base64::Engine as _;
                let expected = base64::engine::general_purpose::STANDARD
                    .encode(format!("{CLIENT}:{SECRET}"));
                if headers["authorization"] != format!("Basic {expected}").as_str() {
                    return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"})));
                }
                let token = TokenBuilder::access_token(&i.url, &i.url)
                    .subject(CLIENT)
                    .scope("revocations:read")
                    .sign(&i.key)
                    .unwrap();
                (StatusCode::OK, axum::Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": 900})))
            }),
        )
        .route(
            "/auth/revocations",
            get(|State(i): State<Arc<Issuer>>, Query(q): Query<Value>| async move {
                if !*i.feed_up.lock().unwrap() {
                    return Err(StatusCode::SERVICE_UNAVAILABLE);
                }
                let since: usize = q["since"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
                let revoked = i.revoked.lock().unwrap();
                Ok(axum::Json(RevocationFeed {
                    cursor: revoked.len() as i64,
                    revoked_sessions: revoked[since.min(revoked.len())..].to_vec(),
                    not_before: vec![],
                    more: false,
                }))
            }),
        )
        .with_state(issuer.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    issuer
}

/// The claims the notes API reads.
#[derive(serde::Deserialize)]
struct Note {
    sub: String,
    tenant: String,
}

/// The route of the notes API.
async fn notes(auth: Authenticated<Note>) -> String {
    format!("{} {}", auth.claims.sub, auth.claims.tenant)
}

#[tokio::test]
async fn a_protected_api_trusting_a_remote_issuer_in_a_few_lines()
-> Result<(), Box<dyn std::error::Error>> {
    let issuer = issuer().await;
    let iss = issuer.url.as_str();

    // The whole setup, as a service writes it (the follower polls every 2 s).
    let revocations = RevocationFollower::new(iss, CLIENT, SECRET).start().await?;
    let bearer = Bearer::from_issuer(iss).audience("notes").build().await?;
    let app = Router::new()
        .route("/notes", get(notes))
        .route_layer(RequireScope::all(["notes:read"]))
        .layer(AuthLayer::required(
            Chain::new().with(bearer.with_revocation(revocations)),
        ));
    // (setup ends: 8 lines)

    let api = serve(app).await;
    let http = reqwest::Client::new();
    let get_notes = |token: String| {
        let http = http.clone();
        let api = api.clone();
        async move {
            let r = http
                .get(format!("{api}/notes"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let token = |scope: &str, sid: &str| {
        TokenBuilder::access_token(iss, "notes")
            .subject("alice")
            .scope(scope)
            .session_id(sid)
            .claim("tenant", "acme")
            .sign(&issuer.key)
            .unwrap()
    };
    assert_eq!(
        get_notes(token("notes:read", "s1")).await,
        (200, "alice acme".into())
    );
    assert_eq!(get_notes(token("other", "s1")).await.0, 403);
    let foreign = SigningKey::generate(Algorithm::EdDSA, Some("k1".into())).unwrap();
    let forged = TokenBuilder::access_token(iss, "notes")
        .subject("alice")
        .scope("notes:read")
        .sign(&foreign)
        .unwrap();
    assert_eq!(get_notes(forged).await.0, 401);
    let other_audience = TokenBuilder::access_token(iss, "billing")
        .subject("alice")
        .scope("notes:read")
        .sign(&issuer.key)
        .unwrap();
    assert_eq!(get_notes(other_audience).await.0, 401);

    // A revocation published by the issuer reaches the API within a poll or two.
    issuer.revoked.lock().unwrap().push("s1".into());
    let started = std::time::Instant::now();
    while get_notes(token("notes:read", "s1")).await.0 != 401 {
        assert!(
            started.elapsed() < Duration::from_secs(7),
            "the revocation never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get_notes(token("notes:read", "s2")).await.0, 200);
    Ok(())
}

#[tokio::test]
async fn a_follower_that_cannot_read_the_feed_fails_closed_after_its_silence() {
    let issuer = issuer().await;
    let iss = issuer.url.as_str();
    let revocations = RevocationFollower::new(iss, CLIENT, SECRET)
        .interval(Duration::from_millis(50))
        .max_silence(Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    let lenient = RevocationFollower::new(iss, CLIENT, SECRET)
        .interval(Duration::from_millis(50))
        .max_silence(Duration::from_secs(1))
        .on_silence(OnSilence::LogLoudly)
        .start()
        .await
        .unwrap();
    let bearer = Bearer::from_issuer(iss)
        .audience("notes")
        .build()
        .await
        .unwrap();
    let strict = serve(Router::new().route("/", get(|| async { "ok" })).layer(
        AuthLayer::required(Chain::new().with(bearer.clone().with_revocation(revocations))),
    ))
    .await;
    let open = serve(
        Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(AuthLayer::required(
                Chain::new().with(bearer.with_revocation(lenient)),
            )),
    )
    .await;
    let token = TokenBuilder::access_token(iss, "notes")
        .subject("bob")
        .sign(&issuer.key)
        .unwrap();
    let status = |url: String| {
        let token = token.clone();
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status(strict.clone()).await, 200);
    *issuer.feed_up.lock().unwrap() = false;
    // Silent for more than a second (the clock counts whole seconds): the strict API
    // answers 503 for every token, the lenient one keeps serving and logs.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(status(strict.clone()).await, 503);
    assert_eq!(status(open.clone()).await, 200);
    // Back: the strict API serves again once the feed has been read.
    *issuer.feed_up.lock().unwrap() = true;
    let started = std::time::Instant::now();
    while status(strict.clone()).await != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never recovered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_issuer_that_cannot_be_reached_fails_the_start_naming_what_was_tried() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let iss = format!("http://127.0.0.1:{port}");
    let err = Bearer::from_issuer(&iss)
        .audience("api")
        .build()
        .await
        .unwrap_err();
    let said = err.to_string();
    assert!(
        said.contains(&format!("{iss}/.well-known/openid-configuration")),
        "{said}"
    );
    assert!(
        said.contains(&format!("{iss}/.well-known/oauth-authorization-server")),
        "{said}"
    );
    assert!(said.to_lowercase().contains("connection refused"), "{said}");
    let err = RevocationFollower::new(&iss, CLIENT, SECRET)
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("openid-configuration"), "{err}");

    // A wrong client secret is refused at start, with what to check.
    let issuer = issuer().await;
    let err = RevocationFollower::new(&issuer.url, CLIENT, "wrong")
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid_client"), "{err}");
}
