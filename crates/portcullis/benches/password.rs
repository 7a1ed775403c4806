//! Argon2id at the OWASP parameters (m = 19 MiB, t = 2, p = 1), two implementations
//! side by side on the same password and salt: `argon2-rust` (what we use) and the
//! RustCrypto `argon2` crate. Both must produce the same tag, which is checked first.
//!
//! Run: `cargo bench -p portcullis --bench password`.

// A benchmark that cannot set up should stop loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

const PASSWORD: &[u8] = b"correct horse battery staple";
const SALT: &[u8] = b"0123456789abcdef";

fn bench(c: &mut Criterion) {
    let ours = argon2_rust::Argon2::new(
        argon2_rust::Algorithm::Argon2id,
        argon2_rust::Version::V0x13,
        argon2_rust::Params::builder()
            .memory(argon2_rust::params::Memory::kib(19 * 1024))
            .passes(2)
            .lanes(1)
            .build()
            .unwrap(),
    );
    let rustcrypto = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(19 * 1024, 2, 1, Some(32)).unwrap(),
    );
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    ours.hash_into(PASSWORD, SALT, &mut a).unwrap();
    rustcrypto
        .hash_password_into(PASSWORD, SALT, &mut b)
        .unwrap();
    assert_eq!(a, b, "both implementations compute the same Argon2id tag");

    let mut g = c.benchmark_group("argon2id-owasp");
    g.bench_function("argon2-rust", |bench| {
        bench.iter(|| {
            let mut out = [0u8; 32];
            ours.hash_into(black_box(PASSWORD), SALT, &mut out).unwrap();
            out
        })
    });
    g.bench_function("argon2 (RustCrypto)", |bench| {
        bench.iter(|| {
            let mut out = [0u8; 32];
            rustcrypto
                .hash_password_into(black_box(PASSWORD), SALT, &mut out)
                .unwrap();
            out
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6))
        .sample_size(20);
    targets = bench
}
criterion_main!(benches);
