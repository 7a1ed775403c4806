//! The cost the middleware adds to a route, in process through tower `oneshot`: the
//! same axum route unprotected, protected with an already-verified (cached) token, and
//! protected with a fresh token each time (full verification), next to the bare
//! signature check of that token.
//!
//! Run: `cargo bench -p portcullis --bench middleware`.

// A benchmark that cannot set up should stop loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use portcullis::jwt::{TokenBuilder, Validation, Verifier};
use portcullis::keys::{Algorithm, KeySet, SigningKey};
use portcullis::middleware::{AuthLayer, Authenticated};
use portcullis::strategy::{Bearer, Chain};
use tower::ServiceExt as _;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let key = SigningKey::generate(Algorithm::EdDSA, Some("k1".into())).unwrap();
    let keys = KeySet::new(vec![key.verifying_key().unwrap()]).unwrap();
    let policy = || {
        Validation::builder()
            .issuer("https://issuer.example")
            .audience("api")
            .build()
            .unwrap()
    };
    let token = || {
        TokenBuilder::access_token("https://issuer.example", "api")
            .subject("user-1")
            .claim("sid", "s1")
            .sign(&key)
            .unwrap()
    };
    let cached = Arc::new(Verifier::new(keys.clone(), policy()));
    let uncached = Arc::new(Verifier::new(keys, policy()).with_cache(0, 0));
    // Each router gets `with_state(())` below, as `axum::serve` does: it turns the routes
    // into services once, instead of re-applying layers to the handler per request.
    let route = || Router::new().route("/", get(|| async { "user-1".to_owned() }));
    let protected_route = || {
        Router::new().route(
            "/",
            get(|auth: Authenticated| async move { auth.identity.subject().to_owned() }),
        )
    };
    let open = route().with_state(());
    let protected = protected_route()
        .layer(AuthLayer::required(Chain::new().with(Bearer::new(cached))))
        .with_state(());
    let protected_fresh = protected_route()
        .layer(AuthLayer::required(
            Chain::new().with(Bearer::new(uncached)),
        ))
        .with_state(());
    let t = token();
    let request = |auth: Option<&str>| {
        let mut b = Request::get("/");
        if let Some(t) = auth {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.body(Body::empty()).unwrap()
    };
    // Sanity: the protected routes accept the token.
    let status = rt
        .block_on(protected.clone().oneshot(request(Some(&t))))
        .unwrap()
        .status();
    assert_eq!(status, 200);

    let (input, sig) = t.rsplit_once('.').unwrap();
    let sig = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sig)
            .unwrap()
    };
    let public = key.verifying_key().unwrap();

    let mut g = c.benchmark_group("route");
    // The same request (Authorization header included) for every route, so the only
    // difference is the middleware and the extractor.
    g.bench_function("unprotected", |b| {
        b.iter(|| {
            rt.block_on(open.clone().oneshot(request(Some(black_box(&t)))))
                .unwrap()
        })
    });
    g.bench_function("protected, cached token", |b| {
        b.iter(|| {
            rt.block_on(protected.clone().oneshot(request(Some(black_box(&t)))))
                .unwrap()
        })
    });
    g.bench_function("protected, fresh verification", |b| {
        b.iter(|| {
            rt.block_on(
                protected_fresh
                    .clone()
                    .oneshot(request(Some(black_box(&t)))),
            )
            .unwrap()
        })
    });
    g.bench_function("bare Ed25519 verify", |b| {
        b.iter(|| public.verify_signature(black_box(input.as_bytes()), &sig))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(700))
        .measurement_time(Duration::from_secs(3))
        .sample_size(40);
    targets = bench
}
criterion_main!(benches);
