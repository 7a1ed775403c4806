//! Sign and verify, for every algorithm, three ways in the same run:
//!
//! - `portcullis`: our full path (format checks, header, key lookup, signature, claims,
//!   every validation rule), with the verified-token cache off;
//! - `aws-lc-rs`: the bare signature primitive on the same bytes (signing input and
//!   signature of the same token), with a pre-parsed key: the floor we cannot go under;
//! - `jsonwebtoken`: the jsonwebtoken crate (aws_lc_rs backend) on the same token, with
//!   issuer, audience and required claims set like ours. It has no ES512.
//!
//! Plus `verify-cached`: a repeat verification that hits the cache.
//!
//! `bench/criterion_report.py` turns the results into tables; `benches/ratios.rs`
//! measures the ratios interleaved, which is what docs/BENCHMARKS.md reports.

// A benchmark that cannot set up should stop loudly; and the raw HMAC key stays inline
// in its enum, as the primitive is measured without our boxing.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::large_enum_variant)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use common::{JwtClaims, builder, case};
use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::keys::Algorithm;

fn bench(c: &mut Criterion) {
    let rng = SystemRandom::new();
    for alg in Algorithm::ALL {
        let case = case(alg);
        // Sanity: every contender accepts the token before we time it.
        assert!(case.verifier.verify_uncached(&case.token).is_ok());
        assert!(case.verify_raw(), "{alg}: raw verify");
        if let Some((_, dec, v, _)) = &case.jwt {
            jsonwebtoken::decode::<JwtClaims>(&case.token, dec, v).expect("jsonwebtoken accepts");
        }

        let mut g = c.benchmark_group(format!("verify-{alg}"));
        g.bench_function("portcullis", |b| {
            b.iter(|| {
                case.verifier
                    .verify_uncached(black_box(&case.token))
                    .expect("valid")
            })
        });
        g.bench_function("aws-lc-rs", |b| b.iter(|| black_box(&case).verify_raw()));
        if let Some((_, dec, v, _)) = &case.jwt {
            g.bench_function("jsonwebtoken", |b| {
                b.iter(|| {
                    jsonwebtoken::decode::<JwtClaims>(black_box(&case.token), dec, v)
                        .expect("valid")
                })
            });
        }
        g.finish();

        let mut g = c.benchmark_group(format!("sign-{alg}"));
        g.bench_function("portcullis", |b| {
            b.iter(|| builder().sign(black_box(&case.key)).expect("sign"))
        });
        g.bench_function("aws-lc-rs", |b| b.iter(|| black_box(&case).sign_raw(&rng)));
        if let Some((enc, _, _, header)) = &case.jwt {
            let claims = case.claims_json();
            g.bench_function("jsonwebtoken", |b| {
                b.iter(|| jsonwebtoken::encode(header, black_box(&claims), enc).expect("sign"))
            });
        }
        g.finish();

        if matches!(
            alg,
            Algorithm::HS256 | Algorithm::EdDSA | Algorithm::ES256 | Algorithm::RS256
        ) {
            case.cached.verify(&case.token).expect("valid");
            let mut g = c.benchmark_group(format!("verify-cached-{alg}"));
            g.bench_function("portcullis", |b| {
                b.iter(|| case.cached.verify(black_box(&case.token)).expect("valid"))
            });
            g.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(700))
        .measurement_time(Duration::from_secs(2))
        .sample_size(40);
    targets = bench
}
criterion_main!(benches);
