//! Shared fixtures.

use std::sync::Arc;

use portcullis::clock::ManualClock;
use portcullis::jwt::{TokenBuilder, Validation, Verifier};
use portcullis::keys::{Algorithm, KeySet, SigningKey};

pub const ISSUER: &str = "https://issuer.example";
pub const AUDIENCE: &str = "api";
/// 2026-01-01T00:00:00Z.
pub const NOW: i64 = 1_767_225_600;

pub struct Fixture {
    pub key: SigningKey,
    pub clock: ManualClock,
    pub verifier: Verifier,
}

impl Fixture {
    pub fn new(alg: Algorithm) -> Fixture {
        let key = SigningKey::generate(alg, Some("k1".into())).unwrap();
        let clock = ManualClock::new(NOW);
        let verifier = Verifier::new(
            KeySet::new(vec![key.verifying_key().unwrap()]).unwrap(),
            validation(&clock),
        );
        Fixture {
            key,
            clock,
            verifier,
        }
    }

    /// A valid access token issued now for 15 minutes.
    pub fn token(&self) -> String {
        self.builder().sign_at(&self.key, &self.clock).unwrap()
    }

    pub fn builder(&self) -> TokenBuilder {
        TokenBuilder::access_token(ISSUER, AUDIENCE).subject("user-1")
    }
}

pub fn validation(clock: &ManualClock) -> Validation {
    Validation::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap()
}

/// Base64url without padding, for hand-made tokens.
pub fn b64(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, &b| acc << 8 | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            let idx = (n >> (18 - 6 * i)) & 63;
            out.write_char(ALPHABET[idx as usize] as char).unwrap();
        }
    }
    out
}

/// Signs arbitrary header and payload JSON text with `key`, bypassing the builder.
pub fn sign_raw(header: &str, payload: &str, key: &SigningKey) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = key.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", b64(&sig))
}

/// Claims for `sign_raw`: valid at [`NOW`] for 15 minutes.
pub fn claims_json(extra: &str) -> String {
    format!(
        r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","sub":"user-1","iat":{NOW},"exp":{}{extra}}}"#,
        NOW + 900
    )
}
