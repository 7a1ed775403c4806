//! Paired, interleaved measurement of the ratios docs/BENCHMARKS.md reports.
//!
//! This machine is shared and noisy, and criterion measures one benchmark after the
//! other, so drift between them lands in their ratio. Here every round times a batch
//! of each contender back to back, in rotating order, and a ratio is taken per round;
//! the reported figure is the median of those per-round ratios, with its 10th and
//! 90th percentiles to show the spread.
//!
//! Run: `cargo bench -p portcullis --bench ratios` (add an algorithm name to filter).

// A benchmark that cannot set up should stop loudly; and the raw HMAC key stays inline
// in its enum, as the primitive is measured without our boxing.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::large_enum_variant)]

mod common;

use common::paired::{ROUNDS, median, paired, percentile, ratio, time};

use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use common::{JwtClaims, builder, case};
use portcullis::keys::Algorithm;

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    // For profilers: PORTCULLIS_PROFILE=ALG loops our verify of that algorithm for 5 s.
    if let Ok(alg) = std::env::var("PORTCULLIS_PROFILE") {
        let alg: Algorithm = alg.parse().expect("algorithm name");
        let case = case(alg);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            for _ in 0..1000 {
                black_box(
                    case.verifier
                        .verify_uncached(black_box(&case.token))
                        .expect("valid"),
                );
            }
        }
        return;
    }
    // PORTCULLIS_CACHE_MEMORY=ALG: the resident memory one verified-token cache entry
    // costs, from 20,000 distinct tokens of that algorithm (docs/BENCHMARKS.md).
    if let Ok(alg) = std::env::var("PORTCULLIS_CACHE_MEMORY") {
        cache_memory(alg.parse().expect("algorithm name"));
        return;
    }
    // PORTCULLIS_PROFILE_SIGN=ALG loops our signing of that algorithm for 5 s.
    if let Ok(alg) = std::env::var("PORTCULLIS_PROFILE_SIGN") {
        let alg: Algorithm = alg.parse().expect("algorithm name");
        let case = case(alg);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            for _ in 0..1000 {
                black_box(builder().sign(black_box(&case.key)).expect("sign"));
            }
        }
        return;
    }
    if filter.as_deref() == Some("middleware") {
        middleware_overhead();
        return;
    }
    if filter.as_deref() == Some("owned") {
        owned();
        return;
    }
    let rng = SystemRandom::new();
    let mut verify_rows = Vec::new();
    let mut sign_rows = Vec::new();
    let mut cached_rows = Vec::new();
    for alg in Algorithm::ALL {
        if filter
            .as_ref()
            .is_some_and(|f| !alg.as_str().eq_ignore_ascii_case(f))
        {
            continue;
        }
        let case = case(alg);
        eprintln!("measuring {alg}");
        let ours = || {
            black_box(
                case.verifier
                    .verify_uncached(black_box(&case.token))
                    .expect("valid"),
            );
        };
        let raw = || {
            black_box(black_box(&case).verify_raw());
        };
        let cached = || {
            black_box(case.cached.verify(black_box(&case.token)).expect("valid"));
        };
        let peer = || {
            if let Some((_, dec, v, _)) = &case.jwt {
                black_box(
                    jsonwebtoken::decode::<JwtClaims>(black_box(&case.token), dec, v)
                        .expect("valid"),
                );
            }
        };
        let mut contenders: Vec<(&'static str, &dyn Fn())> =
            vec![("portcullis", &ours), ("aws-lc-rs", &raw)];
        if case.jwt.is_some() {
            contenders.push(("jsonwebtoken", &peer));
        }
        contenders.push(("cached", &cached));
        let s = paired(&contenders);
        let peer_cells = if case.jwt.is_some() {
            (time(median(&s[2].ns)), ratio(&s[0], &s[2]))
        } else {
            ("n/a".into(), "n/a".into())
        };
        verify_rows.push(format!(
            "| {alg} | {} | {} | {} | {} | {} |",
            time(median(&s[0].ns)),
            time(median(&s[1].ns)),
            peer_cells.0,
            ratio(&s[0], &s[1]),
            peer_cells.1
        ));
        let c = s
            .iter()
            .find(|x| x.name == "cached")
            .expect("cached series");
        cached_rows.push(format!(
            "| {alg} | {} | {} | {} |",
            time(median(&c.ns)),
            time(median(&s[0].ns)),
            ratio(c, &s[0])
        ));

        let ours_sign = || {
            black_box(builder().sign(black_box(&case.key)).expect("sign"));
        };
        let raw_sign = || {
            black_box(black_box(&case).sign_raw(&rng));
        };
        let claims = case.claims_json();
        let peer_sign = || {
            if let Some((enc, _, _, header)) = &case.jwt {
                black_box(jsonwebtoken::encode(header, black_box(&claims), enc).expect("sign"));
            }
        };
        let mut contenders: Vec<(&'static str, &dyn Fn())> =
            vec![("portcullis", &ours_sign), ("aws-lc-rs", &raw_sign)];
        if case.jwt.is_some() {
            contenders.push(("jsonwebtoken", &peer_sign));
        }
        let s = paired(&contenders);
        let peer_cells = if case.jwt.is_some() {
            (time(median(&s[2].ns)), ratio(&s[0], &s[2]))
        } else {
            ("n/a".into(), "n/a".into())
        };
        sign_rows.push(format!(
            "| {alg} | {} | {} | {} | {} | {} |",
            time(median(&s[0].ns)),
            time(median(&s[1].ns)),
            peer_cells.0,
            ratio(&s[0], &s[1]),
            peer_cells.1
        ));
    }
    println!("### verify (paired, {ROUNDS} rounds)\n");
    println!(
        "| alg | portcullis | aws-lc-rs raw | jsonwebtoken | portcullis / raw | portcullis / jsonwebtoken |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    verify_rows.iter().for_each(|r| println!("{r}"));
    println!("\n### sign (paired, {ROUNDS} rounds)\n");
    println!(
        "| alg | portcullis | aws-lc-rs raw | jsonwebtoken | portcullis / raw | portcullis / jsonwebtoken |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    sign_rows.iter().for_each(|r| println!("{r}"));
    println!("\n### verify, cached repeat (paired with the uncached verify)\n");
    println!("| alg | cached | uncached | cached / uncached |");
    println!("|---|---:|---:|---:|");
    cached_rows.iter().for_each(|r| println!("{r}"));
    println!("\nRatios: median of per-round ratios (10th–90th percentile).");
}

/// The middleware's added cost per request, paired: the same route and request with and
/// without `AuthLayer`, through tower `oneshot` on one runtime; with the token already
/// verified (cached) and verified afresh (cache off), next to the bare signature check.
/// The code we own where a crate would do, each against that crate on the same input
/// (docs/BENCHMARKS.md, "Code we own, and why"): the base64url decoder against the
/// `base64` crate's engine with the same strictness, and the flat-object JSON fast path
/// against the full strict parser it falls back to and plain `serde_json`. A typical
/// RS256 access token of the server: its claims segment and its signature segment.
fn owned() {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use portcullis::__bench;

    let engine = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(false),
    );
    let case = case(Algorithm::RS256);
    let mut segments = case.token.split('.');
    let (_, payload, signature) = (
        segments.next().expect("header"),
        segments.next().expect("payload"),
        segments.next().expect("signature"),
    );
    let claims = __bench::b64_decode(payload.as_bytes()).expect("claims decode");
    assert_eq!(
        engine.decode(payload).expect("base64 crate decodes"),
        claims
    );
    assert_eq!(
        __bench::flat_json(&claims),
        __bench::strict_json(&claims),
        "both parsers read the claims"
    );
    let mut rows = Vec::new();
    for (what, segment) in [
        ("claims segment", payload),
        ("signature segment", signature),
    ] {
        let ours = || {
            black_box(__bench::b64_decode(black_box(segment.as_bytes())));
        };
        let crate_ = || {
            black_box(engine.decode(black_box(segment)).ok());
        };
        let s = paired(&[("ours", &ours), ("base64", &crate_)]);
        rows.push(format!(
            "| base64url decode, {what} ({} chars) | {} | {} | {} |",
            segment.len(),
            time(median(&s[0].ns)),
            time(median(&s[1].ns)),
            ratio(&s[0], &s[1])
        ));
    }
    let fast = || {
        black_box(__bench::flat_json(black_box(&claims)));
    };
    let strict = || {
        black_box(__bench::strict_json(black_box(&claims)));
    };
    let plain = || {
        black_box(serde_json::from_slice::<serde_json::Value>(black_box(&claims)).ok());
    };
    let s = paired(&[("fast", &fast), ("strict", &strict), ("serde_json", &plain)]);
    rows.push(format!(
        "| claims JSON ({} bytes): fast path vs the strict parser | {} | {} | {} |",
        claims.len(),
        time(median(&s[0].ns)),
        time(median(&s[1].ns)),
        ratio(&s[0], &s[1])
    ));
    rows.push(format!(
        "| claims JSON ({} bytes): fast path vs plain serde_json::Value | {} | {} | {} |",
        claims.len(),
        time(median(&s[0].ns)),
        time(median(&s[2].ns)),
        ratio(&s[0], &s[2])
    ));
    println!("| what | ours | the crate | ours ÷ crate, median (p10–p90) |");
    println!("|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}

fn middleware_overhead() {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use portcullis::middleware::{AuthLayer, Authenticated, RequireScope};
    use portcullis::strategy::{Bearer, Chain};
    use tower::ServiceExt as _;

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let case = case(Algorithm::EdDSA);
    let fresh_verifier = case.verifier.clone();
    let verifier = case.cached.clone();
    // `with_state(())` turns the routes into services once, as `axum::serve` does;
    // without it the router re-applies its layers to the handler on every request.
    let open = Router::new()
        .route("/", get(|| async { "user-1234".to_owned() }))
        .with_state(());
    let protected_route = |verifier| {
        Router::new()
            .route(
                "/",
                get(|auth: Authenticated| async move { auth.identity.subject().to_owned() }),
            )
            .layer(AuthLayer::required(
                Chain::new().with(Bearer::new(verifier)),
            ))
            .with_state(())
    };
    let protected = protected_route(verifier.clone());
    let protected_fresh = protected_route(fresh_verifier);
    // The same, with a scope rule as a route layer (the case token carries `read`).
    let scoped = Router::new()
        .route(
            "/",
            get(|auth: Authenticated| async move { auth.identity.subject().to_owned() }),
        )
        .route_layer(RequireScope::all(["read"]))
        .layer(AuthLayer::required(
            Chain::new().with(Bearer::new(verifier.clone())),
        ))
        .with_state(());
    // The scope rule inside the AuthLayer instead of a route layer of its own.
    let in_layer = Router::new()
        .route(
            "/",
            get(|auth: Authenticated| async move { auth.identity.subject().to_owned() }),
        )
        .layer(
            AuthLayer::required(Chain::new().with(Bearer::new(verifier.clone())))
                .require(RequireScope::all(["read"])),
        )
        .with_state(());
    // The floor of any route layer in axum (it boxes the route once more): a layer that
    // does nothing, in the same place.
    let noop = Router::new()
        .route(
            "/",
            get(|auth: Authenticated| async move { auth.identity.subject().to_owned() }),
        )
        .route_layer(tower::layer::util::Identity::new())
        .layer(AuthLayer::required(
            Chain::new().with(Bearer::new(verifier)),
        ))
        .with_state(());
    let header = format!("Bearer {}", case.token);
    let request = || {
        http::Request::get("/")
            .header("authorization", header.as_str())
            .body(Body::empty())
            .expect("request")
    };
    for route in [&protected, &protected_fresh, &scoped, &noop, &in_layer] {
        let status = rt
            .block_on(route.clone().oneshot(request()))
            .expect("response")
            .status();
        assert_eq!(status, 200);
    }
    let plain = || {
        black_box(
            rt.block_on(open.clone().oneshot(request()))
                .expect("response"),
        );
    };
    let guarded = || {
        black_box(
            rt.block_on(protected.clone().oneshot(request()))
                .expect("response"),
        );
    };
    let with_scope = || {
        black_box(
            rt.block_on(scoped.clone().oneshot(request()))
                .expect("response"),
        );
    };
    let with_rule = || {
        black_box(
            rt.block_on(in_layer.clone().oneshot(request()))
                .expect("response"),
        );
    };
    let with_noop = || {
        black_box(
            rt.block_on(noop.clone().oneshot(request()))
                .expect("response"),
        );
    };
    let fresh = || {
        black_box(
            rt.block_on(protected_fresh.clone().oneshot(request()))
                .expect("response"),
        );
    };
    let raw = || {
        black_box(black_box(&case).verify_raw());
    };
    // For instruction counts (valgrind --tool=callgrind, repeatable on a noisy
    // machine): PORTCULLIS_MIDDLEWARE_LOOP=unprotected|protected runs 10,000 requests
    // of one route and nothing else; the difference of two totals / 10,000 is the
    // instructions the middleware adds.
    if let Ok(which) = std::env::var("PORTCULLIS_MIDDLEWARE_LOOP") {
        let f: &dyn Fn() = match which.as_str() {
            "unprotected" => &plain,
            "protected" => &guarded,
            "scoped" => &with_scope,
            other => panic!("PORTCULLIS_MIDDLEWARE_LOOP: unknown route {other}"),
        };
        for _ in 0..10_000 {
            f();
        }
        return;
    }
    let s = paired(&[
        ("unprotected", &plain),
        ("protected", &guarded),
        ("protected, fresh", &fresh),
        ("raw", &raw),
        ("protected + RequireScope", &with_scope),
        ("protected + no-op route layer", &with_noop),
        ("protected, scope rule in the layer", &with_rule),
    ]);
    let added =
        |i: usize| -> Vec<f64> { s[i].ns.iter().zip(&s[0].ns).map(|(p, u)| p - u).collect() };
    let spread = |v: Vec<f64>| {
        format!(
            "{} ({} – {})",
            time(percentile(v.clone(), 0.5)),
            time(percentile(v.clone(), 0.1)),
            time(percentile(v, 0.9))
        )
    };
    println!("### middleware (paired, {ROUNDS} rounds, EdDSA token)\n");
    println!(
        "| contender | median per call | added over unprotected: median (10th–90th percentile) |"
    );
    println!("|---|---:|---|");
    println!("| unprotected route | {} | |", time(median(&s[0].ns)));
    println!(
        "| protected, token already verified (cached) | {} | {} |",
        time(median(&s[1].ns)),
        spread(added(1))
    );
    println!(
        "| protected + `RequireScope::all([\"read\"])`, cached | {} | {} |",
        time(median(&s[4].ns)),
        spread(added(4))
    );
    println!(
        "| protected, `AuthLayer::require(RequireScope::all([\"read\"]))`, cached | {} | {} |",
        time(median(&s[6].ns)),
        spread(added(6))
    );
    println!(
        "| protected + a route layer that does nothing (axum's floor), cached | {} | {} |",
        time(median(&s[5].ns)),
        spread(added(5))
    );
    println!(
        "| protected, token verified afresh (cache off) | {} | {} |",
        time(median(&s[2].ns)),
        spread(added(2))
    );
    println!(
        "| bare Ed25519 signature check (aws-lc-rs) | {} | |",
        time(median(&s[3].ns))
    );
}

/// Resident set size of this process, in bytes (Linux).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .expect("rss field")
        .parse()
        .expect("a number");
    pages * 4096
}

fn cache_memory(alg: Algorithm) {
    use portcullis::jwt::{Validation, Verifier};
    use portcullis::keys::{KeySet, SigningKey};
    const N: usize = 20_000;
    // The server's key ids are JWK thumbprints (43 characters).
    let kid = "x".repeat(43);
    let key = SigningKey::generate(alg, Some(kid)).expect("key");
    // Tokens shaped like the server's access tokens (730 bytes with RS256): iss, aud,
    // sub, exp, iat, jti, sid, scope, preferred_username, amr, acr.
    let tokens: Vec<String> = (0..N)
        .map(|i| {
            builder()
                .subject(format!("01JD{i:022}"))
                .session_id(format!("01JS{i:022}"))
                .scope("notes:read notes:write")
                .claim("preferred_username", format!("person{i}"))
                .claim("amr", vec!["pwd"])
                .claim("acr", "aal1")
                .sign(&key)
                .expect("sign")
        })
        .collect();
    let policy = Validation::builder()
        .issuer(common::ISS)
        .audience(common::AUD)
        .build()
        .expect("policy");
    let keys = KeySet::new(vec![key.verifying_key().expect("public")]).expect("set");
    let verifier = Verifier::new(keys, policy).with_cache(N * 2, u64::MAX);
    let before = rss();
    for t in &tokens {
        black_box(verifier.verify(t).expect("valid"));
    }
    let after = rss();
    let per_entry = (after.saturating_sub(before)) as f64 / N as f64;
    println!(
        "{alg}: token {} bytes; {N} cached tokens took {:.1} MiB resident: {per_entry:.0} bytes per entry",
        tokens[0].len(),
        (after - before) as f64 / (1024.0 * 1024.0)
    );
}
