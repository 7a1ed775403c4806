//! Token verification on arbitrary input.
//!
//! Two paths per input: the raw bytes as a token (format checks, header, key lookup,
//! signature), and the input split into header and claims text that is then signed
//! with a real key, so the fuzzer also reaches the claims parser and the validation
//! rules behind the signature check. Any accepted token must carry a valid signature
//! from a key in the set, which the second path checks by construction.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use portcullis::clock::ManualClock;
use portcullis::jwt::{Validation, Verifier, jws};
use portcullis::keys::{Algorithm, KeySet, SigningKey};

struct Target {
    hs: SigningKey,
    verifier: Verifier,
}

static TARGET: LazyLock<Target> = LazyLock::new(|| {
    let hs = SigningKey::from_hmac_secret(Algorithm::HS256, &[7u8; 32], Some("hs".into()))
        .expect("valid HMAC key");
    let ed = SigningKey::generate(Algorithm::EdDSA, Some("ed".into())).expect("key");
    let es = SigningKey::generate(Algorithm::ES256, None).expect("key");
    let keys = KeySet::new(vec![
        hs.verifying_key().expect("key"),
        ed.verifying_key().expect("key"),
        es.verifying_key().expect("key"),
    ])
    .expect("distinct kids");
    let validation = Validation::builder()
        .issuer("iss")
        .audience("aud")
        .clock(Arc::new(ManualClock::new(1_700_000_000)))
        .build()
        .expect("valid policy");
    Target {
        hs,
        verifier: Verifier::new(keys, validation).with_cache(64, 1 << 20),
    }
});

fuzz_target!(|data: &[u8]| {
    let target = &*TARGET;
    let text = String::from_utf8_lossy(data);
    let _ = target.verifier.verify(&text);
    let _ = jws::insecure_decode(&text, 8192);

    // Split at the first NUL: header JSON, then claims JSON; sign them for real.
    if let Some(pos) = data.iter().position(|&b| b == 0) {
        let (header, claims) = (&data[..pos], &data[pos + 1..]);
        let input = format!("{}.{}", b64(header), b64(claims));
        if let Ok(sig) = target.hs.sign(input.as_bytes()) {
            let token = format!("{input}.{}", b64(&sig));
            if let Ok(verified) = target.verifier.verify(&token) {
                // Whatever passed must satisfy the policy it passed.
                let claims = verified.claims();
                assert_eq!(claims.iss.as_deref(), Some("iss"));
                assert!(claims.aud.as_ref().is_some_and(|a| a.contains("aud")));
                assert!(claims.exp.is_some() && claims.sub.as_deref().is_some_and(|s| !s.is_empty()));
            }
        }
    }
});

fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, &b| acc << 8 | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}
