//! The strategy chain, the middleware and the extractors, in process through tower.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode};
use portcullis::keys::Algorithm;
use portcullis::middleware::{AuthLayer, Authenticated};
use portcullis::strategy::{ApiKey, ApiKeyRecord, Bearer, Chain, MemoryApiKeys};
use serde::Deserialize;
use tower::ServiceExt as _;

use crate::support::{Fixture, NOW};

const SERVICE_KEY: &str = "pk_live_0123456789abcdefghijklmnopqrstuv";

fn api_keys() -> Arc<MemoryApiKeys> {
    let keys = MemoryApiKeys::default();
    keys.insert(
        SERVICE_KEY,
        ApiKeyRecord {
            subject: "service".into(),
            scopes: vec!["posts:write".into()],
        },
    );
    Arc::new(keys)
}

#[derive(Deserialize)]
struct Tenant {
    tenant: Option<String>,
}

fn app(fx: &Fixture, required: bool) -> Router {
    let verifier = Arc::new(portcullis::jwt::Verifier::new(
        fx.verifier.with_keys(|k| k.clone()),
        crate::support::validation(&fx.clock),
    ));
    let chain = Chain::new()
        .with(Bearer::new(verifier))
        .with(ApiKey::new(api_keys()));
    let layer = if required {
        AuthLayer::required(chain)
    } else {
        AuthLayer::optional(chain)
    };
    Router::new()
        .route(
            "/me",
            get(|auth: Authenticated<Tenant>| async move {
                format!(
                    "{} {} {:?}",
                    auth.identity.strategy(),
                    auth.identity.subject(),
                    auth.claims.tenant
                )
            }),
        )
        .route(
            "/maybe",
            get(|auth: Option<Authenticated>| async move {
                auth.map_or("anonymous".to_owned(), |a| a.identity.subject().to_owned())
            }),
        )
        .route(
            "/write",
            get(|auth: Authenticated| async move {
                auth.identity.require_all(&["posts:write"])?;
                Ok::<_, portcullis::rejection::Rejection>("written")
            }),
        )
        .layer(layer)
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, http::HeaderMap, String) {
    let r = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = r.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    (
        parts.status,
        parts.headers,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

fn get_with(path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::get(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn a_valid_token_reaches_the_handler_with_its_custom_claims() {
    let fx = Fixture::new(Algorithm::EdDSA);
    let token = fx
        .builder()
        .claim("tenant", "t1")
        .sign_at(&fx.key, &fx.clock)
        .unwrap();
    let (status, _, body) = send(
        &app(&fx, true),
        get_with("/me", &[("authorization", &format!("Bearer {token}"))]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "bearer user-1 Some(\"t1\")");
}

#[tokio::test]
async fn missing_credentials_get_a_bare_challenge_and_bad_tokens_invalid_token() {
    let fx = Fixture::new(Algorithm::EdDSA);
    let app = app(&fx, true);
    let (status, headers, _) = send(&app, get_with("/me", &[])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"api\"");
    let (status, headers, body) =
        send(&app, get_with("/me", &[("authorization", "Bearer a.b.c")])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    assert!(body.contains("invalid_token") && !body.contains("malformed"));
    fx.clock.set(NOW + 10_000);
    let token = fx.token();
    fx.clock.set(NOW + 20_000);
    let (_, _, expired) = send(
        &app,
        get_with("/me", &[("authorization", &format!("Bearer {token}"))]),
    )
    .await;
    assert_eq!(
        expired, body,
        "an expired token gets the same answer as garbage"
    );
}

#[tokio::test]
async fn a_bad_bearer_token_never_falls_through_to_the_next_strategy() {
    let fx = Fixture::new(Algorithm::EdDSA);
    let app = app(&fx, true);
    let (status, _, body) = send(&app, get_with("/me", &[("x-api-key", SERVICE_KEY)])).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "api_key service None")
    );
    let (status, _, _) = send(
        &app,
        get_with(
            "/me",
            &[("authorization", "Bearer nope"), ("x-api-key", SERVICE_KEY)],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn optional_auth_lets_anonymous_requests_through_but_not_bad_tokens() {
    let fx = Fixture::new(Algorithm::HS256);
    let app = app(&fx, false);
    let (status, _, body) = send(&app, get_with("/maybe", &[])).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "anonymous"));
    let token = fx.token();
    let (_, _, body) = send(
        &app,
        get_with("/maybe", &[("authorization", &format!("Bearer {token}"))]),
    )
    .await;
    assert_eq!(body, "user-1");
    let (status, _, _) = send(
        &app,
        get_with("/maybe", &[("authorization", "Bearer x.y.z")]),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn missing_scope_is_403_insufficient_scope_naming_it() {
    let fx = Fixture::new(Algorithm::HS256);
    let app = app(&fx, true);
    let token = fx
        .builder()
        .scope("read")
        .sign_at(&fx.key, &fx.clock)
        .unwrap();
    let (status, headers, body) = send(
        &app,
        get_with("/write", &[("authorization", &format!("Bearer {token}"))]),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("scope=\"posts:write\"")
    );
    assert!(body.contains("insufficient_scope"));
    let token = fx
        .builder()
        .scope("read posts:write")
        .sign_at(&fx.key, &fx.clock)
        .unwrap();
    let (status, _, _) = send(
        &app,
        get_with("/write", &[("authorization", &format!("Bearer {token}"))]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn malformed_bearer_requests_are_400_invalid_request() {
    let fx = Fixture::new(Algorithm::HS256);
    let app = app(&fx, true);
    let token = fx.token();
    let query = Request::get(format!("/me?access_token={token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, query).await.0, StatusCode::BAD_REQUEST);
    let two = Request::get("/me")
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, two).await.0, StatusCode::BAD_REQUEST);
    let (status, _, _) = send(
        &app,
        get_with("/me", &[("authorization", "Basic dXNlcjpwYXNz")]),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "another scheme is skipped, then nobody is found"
    );
    // Outside the b64token syntax of RFC 6750 §2.1: a malformed request, not a bad token
    // (the syntax is checked after verification fails, so both paths are covered).
    for bad in [
        format!("Bearer {token}$"),
        format!("Bearer a b{token}"),
        "Bearer ".to_owned(),
        "Bearer".to_owned(),
    ] {
        let (status, _, body) = send(&app, get_with("/me", &[("authorization", &bad)])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(body.contains("invalid_request"), "{bad}: {body}");
    }
    let obs_text = Request::get("/me")
        .header(
            "authorization",
            http::HeaderValue::from_bytes(format!("Bearer {token}\u{e9}").as_bytes()).unwrap(),
        )
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, obs_text).await.0, StatusCode::BAD_REQUEST);
    // Well-formed but not a valid token: 401 invalid_token.
    let (status, _, body) = send(
        &app,
        get_with("/me", &[("authorization", &format!("Bearer {token}x"))]),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("invalid_token"), "{body}");
}

/// Issue 9, finding 9: `Basic` first and a `Bearer` second slipped past the bearer
/// strategy, which read only the first header.
#[tokio::test]
async fn stacked_authorization_headers_are_refused_in_either_order() {
    let fx = Fixture::new(Algorithm::EdDSA);
    let token = format!("Bearer {}", fx.token());
    for app in [app(&fx, true), app(&fx, false)] {
        for pair in [
            ["Basic dXNlcjpwYXNz", token.as_str()],
            [token.as_str(), "Basic dXNlcjpwYXNz"],
            ["Basic dXNlcjpwYXNz", "Bearer not.a.token"],
            ["Basic dXNlcjpwYXNz", "Basic dXNlcjpwYXNz"],
        ] {
            for path in ["/me", "/maybe"] {
                let req = get_with(
                    path,
                    &[("authorization", pair[0]), ("authorization", pair[1])],
                );
                let (status, _, body) = send(&app, req).await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {pair:?}");
                assert!(body.contains("invalid_request"), "{body}");
            }
        }
    }
}

#[tokio::test]
async fn unknown_api_keys_are_401_and_malformed_ones_400() {
    let fx = Fixture::new(Algorithm::EdDSA);
    let app = app(&fx, true);
    let (status, headers, body) =
        send(&app, get_with("/me", &[("x-api-key", "pk_live_unknown")])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("invalid_token"));
    // A key is not an access token: its refusal says so, under its own scheme.
    assert!(body.contains("the API key is invalid"), "{body}");
    assert!(!body.contains("access token"), "{body}");
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("ApiKey realm=\"api\""), "{challenge}");
    let (status, _, _) = send(&app, get_with("/me", &[("x-api-key", "two words")])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = send(&app, get_with("/write", &[("x-api-key", SERVICE_KEY)])).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the key's scopes are the identity's"
    );
}

struct ServedJwks(std::sync::Mutex<String>, std::sync::atomic::AtomicUsize);

impl portcullis::remote::JwksFetcher for ServedJwks {
    fn fetch<'a>(&'a self, _url: &'a str) -> portcullis::remote::FetchFuture<'a> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let body = self.0.lock().unwrap().clone();
        Box::pin(std::future::ready(Ok(portcullis::remote::Fetched {
            body,
            max_age: None,
        })))
    }
}

#[tokio::test]
async fn a_remote_jwks_is_loaded_on_demand_and_refetched_for_a_new_kid() {
    use portcullis::keys::{KeySet, SigningKey};
    let fx = Fixture::new(Algorithm::EdDSA);
    let jwks = |keys: &[&SigningKey]| {
        KeySet::new(keys.iter().map(|k| k.verifying_key().unwrap()).collect())
            .unwrap()
            .to_public_jwks()
            .unwrap()
            .to_json()
    };
    let served = Arc::new(ServedJwks(
        std::sync::Mutex::new(jwks(&[&fx.key])),
        Default::default(),
    ));
    let verifier = Arc::new(portcullis::jwt::Verifier::new(
        KeySet::default(),
        crate::support::validation(&fx.clock),
    ));
    let remote = Arc::new(portcullis::remote::RemoteJwks::new(
        "https://issuer.example/jwks",
        served.clone(),
        verifier.clone(),
        Arc::new(fx.clock.clone()),
    ));
    let app = Router::new()
        .route(
            "/me",
            get(|auth: Authenticated| async move { auth.identity.subject().to_owned() }),
        )
        .layer(AuthLayer::required(
            Chain::new().with(Bearer::new(verifier).with_remote_jwks(remote)),
        ));
    let token = fx.token();
    let (status, _, _) = send(
        &app,
        get_with("/me", &[("authorization", &format!("Bearer {token}"))]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // The issuer rotates: a token with a new kid is refetched for at once (the
    // start-up fetch does not hold it back)…
    let k2 = SigningKey::generate(Algorithm::EdDSA, Some("k2".into())).unwrap();
    *served.0.lock().unwrap() = jwks(&[&fx.key, &k2]);
    let new_token = fx.builder().sign_at(&k2, &fx.clock).unwrap();
    let auth = format!("Bearer {new_token}");
    assert_eq!(
        send(&app, get_with("/me", &[("authorization", &auth)]))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(served.1.load(std::sync::atomic::Ordering::SeqCst), 2);
    // …but unknown kids are refetched for at most once per cooldown.
    let k3 = SigningKey::generate(Algorithm::EdDSA, Some("k3".into())).unwrap();
    *served.0.lock().unwrap() = jwks(&[&fx.key, &k2, &k3]);
    let auth = format!("Bearer {}", fx.builder().sign_at(&k3, &fx.clock).unwrap());
    assert_eq!(
        send(&app, get_with("/me", &[("authorization", &auth)]))
            .await
            .0,
        StatusCode::UNAUTHORIZED,
        "within the cooldown"
    );
    fx.clock.advance(31);
    assert_eq!(
        send(&app, get_with("/me", &[("authorization", &auth)]))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(served.1.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[tokio::test]
async fn several_issuers_are_allowed_by_name_and_others_refused() {
    use portcullis::jwt::{TokenBuilder, Validation, Verifier};
    use portcullis::keys::{KeySet, SigningKey};
    use portcullis::strategy::Issuers;
    let clock = portcullis::clock::ManualClock::new(NOW);
    let bearer_for = |iss: &str, key: &SigningKey| {
        Bearer::new(Arc::new(Verifier::new(
            KeySet::new(vec![key.verifying_key().unwrap()]).unwrap(),
            Validation::builder()
                .issuer(iss)
                .audience("api")
                .clock(Arc::new(clock.clone()))
                .build()
                .unwrap(),
        )))
    };
    let (ka, kb, kc) = (
        SigningKey::generate(Algorithm::EdDSA, Some("a".into())).unwrap(),
        SigningKey::generate(Algorithm::ES256, Some("b".into())).unwrap(),
        SigningKey::generate(Algorithm::EdDSA, Some("c".into())).unwrap(),
    );
    let chain = Chain::new().with(
        Issuers::new()
            .with("https://a.example", bearer_for("https://a.example", &ka))
            .with("https://b.example", bearer_for("https://b.example", &kb)),
    );
    let app = Router::new()
        .route(
            "/me",
            get(|auth: Authenticated| async move { auth.identity.subject().to_owned() }),
        )
        .layer(AuthLayer::required(chain));
    let token = |iss: &str, key: &SigningKey| {
        TokenBuilder::access_token(iss, "api")
            .subject(iss)
            .sign_at(key, &clock)
            .unwrap()
    };
    for (iss, key, want) in [
        ("https://a.example", &ka, StatusCode::OK),
        ("https://b.example", &kb, StatusCode::OK),
        ("https://c.example", &kc, StatusCode::UNAUTHORIZED),
        // Claiming issuer A with another key is still refused by A's verifier.
        ("https://a.example", &kc, StatusCode::UNAUTHORIZED),
    ] {
        let t = token(iss, key);
        let (status, _, body) = send(
            &app,
            get_with("/me", &[("authorization", &format!("Bearer {t}"))]),
        )
        .await;
        assert_eq!(status, want, "{iss}");
        if want == StatusCode::OK {
            assert_eq!(body, iss);
        }
    }
    let t = token("https://a.example", &ka);
    let (status, _, _) = send(
        &app,
        get_with("/me", &[("authorization", &format!("Bearer {t}~$"))]),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "malformed, whoever it names"
    );
}

/// The registered claims a route commonly wants, with a custom one.
#[derive(Deserialize)]
struct Whole {
    sub: String,
    scope: String,
    exp: i64,
    tenant: String,
}

#[tokio::test]
async fn typed_claims_come_from_the_whole_set_registered_claims_included() {
    let fx = Fixture::new(Algorithm::EdDSA);
    let verifier = Arc::new(portcullis::jwt::Verifier::new(
        fx.verifier.with_keys(|k| k.clone()),
        crate::support::validation(&fx.clock),
    ));
    let app = Router::new()
        .route(
            "/whole",
            get(|auth: Authenticated<Whole>| async move {
                let c = auth.claims;
                format!("{} {} {} {}", c.sub, c.scope, c.exp > 0, c.tenant)
            }),
        )
        .route(
            "/key",
            get(|auth: Authenticated<Whole>| async move { auth.claims.sub }),
        )
        .layer(AuthLayer::required(
            Chain::new()
                .with(Bearer::new(verifier))
                .with(ApiKey::new(api_keys())),
        ));
    let token = fx
        .builder()
        .scope("read")
        .claim("tenant", "t1")
        .sign_at(&fx.key, &fx.clock)
        .unwrap();
    let auth = format!("Bearer {token}");
    let (status, _, body) = send(&app, get_with("/whole", &[("authorization", &auth)])).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "user-1 read true t1")
    );
    // A token without a claim the type needs: 401, not a panic or a 500.
    let token = fx
        .builder()
        .scope("read")
        .sign_at(&fx.key, &fx.clock)
        .unwrap();
    let auth = format!("Bearer {token}");
    let (status, _, _) = send(&app, get_with("/whole", &[("authorization", &auth)])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn every_refusal_behind_a_layer_carries_the_layers_realm() {
    let fx = Fixture::new(Algorithm::HS256);
    let verifier = Arc::new(portcullis::jwt::Verifier::new(
        fx.verifier.with_keys(|k| k.clone()),
        crate::support::validation(&fx.clock),
    ));
    let app = Router::new()
        .route(
            "/write",
            get(|auth: Authenticated| async move {
                auth.identity.require_all(&["posts:write"])?;
                Ok::<_, portcullis::rejection::Rejection>("written")
            }),
        )
        .route(
            "/typed",
            get(|auth: Authenticated<Whole>| async move { auth.claims.sub }),
        )
        .route("/scoped", get(|| async { "scoped" }))
        .route_layer(portcullis::middleware::RequireScope::all(["notes:write"]))
        .route(
            "/anyone",
            get(|auth: Authenticated| async move { auth.identity.subject().to_owned() }),
        )
        .layer(AuthLayer::optional(Chain::new().with(Bearer::new(verifier))).with_realm("notes"));
    let token = fx
        .builder()
        .scope("read")
        .sign_at(&fx.key, &fx.clock)
        .unwrap();
    let auth = format!("Bearer {token}");
    for (path, headers, status) in [
        ("/anyone", vec![], StatusCode::UNAUTHORIZED),
        ("/scoped", vec![], StatusCode::UNAUTHORIZED),
        (
            "/scoped",
            vec![("authorization", auth.as_str())],
            StatusCode::FORBIDDEN,
        ),
        (
            "/anyone",
            vec![("authorization", "Bearer x.y.z")],
            StatusCode::UNAUTHORIZED,
        ),
    ] {
        let (got, h, _) = send(&app, get_with(path, &headers)).await;
        assert_eq!(got, status, "{path}");
        let challenge = h["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.starts_with("Bearer realm=\"notes\""),
            "{path}: {challenge}"
        );
    }
    // The handler's own refusals too: `require_all` and a claims type that does not fit.
    let token = fx
        .builder()
        .scope("read notes:write")
        .sign_at(&fx.key, &fx.clock)
        .unwrap();
    let auth = format!("Bearer {token}");
    for (path, status) in [
        ("/write", StatusCode::FORBIDDEN),
        ("/typed", StatusCode::UNAUTHORIZED),
    ] {
        let (got, h, _) = send(&app, get_with(path, &[("authorization", &auth)])).await;
        assert_eq!(got, status, "{path}");
        let challenge = h["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.starts_with("Bearer realm=\"notes\""),
            "{path}: {challenge}"
        );
    }
}

#[tokio::test]
async fn require_scope_all_and_any_guard_routes_with_the_scope_answer() {
    use portcullis::middleware::RequireScope;
    let fx = Fixture::new(Algorithm::EdDSA);
    let verifier = Arc::new(portcullis::jwt::Verifier::new(
        fx.verifier.with_keys(|k| k.clone()),
        crate::support::validation(&fx.clock),
    ));
    let app = Router::new()
        .route("/both", get(|| async { "both" }))
        .route_layer(RequireScope::all(["notes:read", "notes:write"]))
        .merge(
            Router::new()
                .route("/either", get(|| async { "either" }))
                .route_layer(RequireScope::any(["notes:read", "admin"])),
        )
        .route("/open", get(|| async { "open" }))
        .layer(AuthLayer::optional(
            Chain::new().with(Bearer::new(verifier)),
        ));
    let with = |scope: &str| {
        let token = fx
            .builder()
            .scope(scope)
            .sign_at(&fx.key, &fx.clock)
            .unwrap();
        format!("Bearer {token}")
    };
    for (scope, path, status) in [
        ("notes:read notes:write", "/both", StatusCode::OK),
        ("notes:read", "/both", StatusCode::FORBIDDEN),
        ("", "/both", StatusCode::FORBIDDEN),
        ("admin", "/either", StatusCode::OK),
        ("notes:read", "/either", StatusCode::OK),
        ("notes:write", "/either", StatusCode::FORBIDDEN),
        ("", "/open", StatusCode::OK),
    ] {
        let auth = with(scope);
        let (got, h, body) = send(&app, get_with(path, &[("authorization", &auth)])).await;
        assert_eq!(got, status, "{scope:?} on {path}");
        if status == StatusCode::FORBIDDEN {
            assert!(body.contains("insufficient_scope"), "{body}");
            let challenge = h["www-authenticate"].to_str().unwrap();
            assert!(
                challenge.contains("error=\"insufficient_scope\""),
                "{challenge}"
            );
        }
    }
    let (got, _, _) = send(&app, get_with("/both", &[])).await;
    assert_eq!(got, StatusCode::UNAUTHORIZED, "anonymous");
    let (got, _, _) = send(&app, get_with("/open", &[])).await;
    assert_eq!(got, StatusCode::OK);
}

/// Every refusal is recorded once (counted under its reason), whether the layer
/// answered it or a route behind the layer did, and carries its `Refusal` for an
/// application that renders or logs answers itself; `record_refusals(false)` leaves
/// the recording to that application.
#[test]
fn each_refusal_is_counted_once_and_carries_its_refusal() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use portcullis::rejection::{Refusal, Rejection};

    let fx = Fixture::new(Algorithm::EdDSA);
    let without_scope = fx.token();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let refusals = |app: Router| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let answers = metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                let mut answers = Vec::new();
                for request in [
                    // Refused by the layer: no credentials.
                    get_with("/me", &[]),
                    // Refused by the route behind it: a token without posts:write.
                    get_with(
                        "/write",
                        &[("authorization", &format!("Bearer {without_scope}"))],
                    ),
                ] {
                    let r = app.clone().oneshot(request).await.unwrap();
                    answers.push(r.extensions().get::<Refusal>().map(|r| r.0.clone()));
                }
                answers
            })
        });
        let mut counts: Vec<(String, u64)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| key.key().name() == "portcullis_rejections_total")
            .map(|(key, _, _, value)| {
                let reason = key.key().labels().find(|l| l.key() == "reason").unwrap();
                let DebugValue::Counter(n) = value else {
                    panic!("not a counter")
                };
                (reason.value().to_owned(), n)
            })
            .collect();
        counts.sort();
        (answers, counts)
    };
    let (answers, counts) = refusals(app(&fx, true));
    assert!(matches!(
        answers.as_slice(),
        [
            Some(Rejection::MissingCredentials),
            Some(Rejection::InsufficientScope(_))
        ]
    ));
    assert_eq!(
        counts,
        [
            ("insufficient_scope".to_owned(), 1),
            ("missing_credentials".to_owned(), 1)
        ]
    );

    // Left to the application: nothing counted here, the refusals still carried.
    let quiet = Router::new()
        .route("/me", get(|_: Authenticated| async { "me" }))
        .route(
            "/write",
            get(|auth: Authenticated| async move {
                auth.identity.require_all(&["posts:write"])?;
                Ok::<_, Rejection>("written")
            }),
        )
        .layer(
            AuthLayer::required(Chain::new().with(Bearer::new(Arc::new(
                portcullis::jwt::Verifier::new(
                    fx.verifier.with_keys(|k| k.clone()),
                    crate::support::validation(&fx.clock),
                ),
            ))))
            .record_refusals(false),
        );
    let (answers, counts) = refusals(quiet);
    assert!(answers.iter().all(Option::is_some));
    assert!(counts.is_empty(), "{counts:?}");
}

/// `/me` behind a bearer strategy of `fx`'s keys (its own verifier, cache on) that
/// consults `check` after a token verifies.
fn me_with_revocation(fx: &Fixture, check: impl portcullis::strategy::RevocationCheck) -> Router {
    let verifier = Arc::new(portcullis::jwt::Verifier::new(
        fx.verifier.with_keys(|k| k.clone()),
        crate::support::validation(&fx.clock),
    ));
    Router::new()
        .route("/me", get(|_: Authenticated| async { "me" }))
        .layer(AuthLayer::required(
            Chain::new().with(Bearer::new(verifier).with_revocation(Arc::new(check))),
        ))
}

/// A refusal that is not the credential's fault (here: the revocation feed unread for
/// too long) is a 503 that says when to come back (issue 28, finding 13).
#[tokio::test]
async fn a_503_refusal_says_when_to_try_again() {
    use portcullis::jwt::Claims;
    use portcullis::rejection::TokenFailure;
    use portcullis::strategy::RevocationCheck;

    struct Unknown;
    impl RevocationCheck for Unknown {
        fn check(&self, _: &Claims) -> Result<(), TokenFailure> {
            Err(TokenFailure::RevocationsUnknown)
        }
    }
    let fx = Fixture::new(Algorithm::EdDSA);
    let app = me_with_revocation(&fx, Unknown);
    let (status, headers, _) = send(
        &app,
        get_with(
            "/me",
            &[("authorization", &format!("Bearer {}", fx.token()))],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers.get("retry-after").unwrap(), "5");
}

/// A revocation check written against `check(&Claims)` alone still sees every claim,
/// the ones outside the registered set included (the default `check_token` hands it
/// the whole set), on the first request and on a cached repeat.
#[tokio::test]
async fn a_revocation_check_of_its_own_sees_the_other_claims() {
    use portcullis::jwt::Claims;
    use portcullis::rejection::TokenFailure;
    use portcullis::strategy::RevocationCheck;

    struct BlockedTenant;
    impl RevocationCheck for BlockedTenant {
        fn check(&self, claims: &Claims) -> Result<(), TokenFailure> {
            match claims.extra.get("tenant").and_then(|t| t.as_str()) {
                Some("blocked") => Err(TokenFailure::SessionRevoked),
                _ => Ok(()),
            }
        }
    }
    let fx = Fixture::new(Algorithm::EdDSA);
    let app = me_with_revocation(&fx, BlockedTenant);
    let token = |tenant: &str| {
        fx.builder()
            .claim("tenant", tenant)
            .sign_at(&fx.key, &fx.clock)
            .unwrap()
    };
    let (blocked, open) = (token("blocked"), token("open"));
    for _ in 0..2 {
        let (status, _, _) = send(
            &app,
            get_with("/me", &[("authorization", &format!("Bearer {blocked}"))]),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _, _) = send(
            &app,
            get_with("/me", &[("authorization", &format!("Bearer {open}"))]),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
}
