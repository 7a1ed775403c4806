//! Argon2id at the OWASP parameters (m = 19 MiB, t = 2, p = 1), two implementations
//! side by side on the same password and salt: `argon2-rust` (what we use) and the
//! RustCrypto `argon2` crate. Both must produce the same tag, which is checked first.
//!
//! Paired and interleaved (`benches/common/paired.rs`): each round hashes with both, in
//! rotating order, so the machine's drift lands on both alike; the figure is the median
//! of the per-round ratios with the 10th–90th percentile.
//!
//! Run: `cargo bench -p portcullis --features password --bench password`.

// A benchmark that cannot set up should stop loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "common/paired.rs"]
mod paired;

use std::hint::black_box;

use paired::{median, paired_rounds, ratio, time};

const PASSWORD: &[u8] = b"correct horse battery staple";
const SALT: &[u8] = b"0123456789abcdef";
const ROUNDS: usize = 61;

fn main() {
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

    let hash_ours = || {
        let mut out = [0u8; 32];
        ours.hash_into(black_box(PASSWORD), SALT, &mut out).unwrap();
        black_box(out);
    };
    let hash_rustcrypto = || {
        let mut out = [0u8; 32];
        rustcrypto
            .hash_password_into(black_box(PASSWORD), SALT, &mut out)
            .unwrap();
        black_box(out);
    };
    let series = paired_rounds(
        &[
            ("argon2-rust", &hash_ours),
            ("argon2 (RustCrypto)", &hash_rustcrypto),
        ],
        ROUNDS,
    );
    println!("argon2id-owasp, {ROUNDS} paired rounds");
    for s in &series {
        println!("  {:<22} median {}", s.name, time(median(&s.ns)));
    }
    println!(
        "  RustCrypto / argon2-rust: {}",
        ratio(&series[1], &series[0])
    );
}
