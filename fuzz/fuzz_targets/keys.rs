//! Key parsing on arbitrary input: JWK, JWK Set and PEM must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::keys::{Algorithm, Jwk, KeySet, SigningKey, VerifyingKey};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(jwk) = Jwk::from_json(&text) {
        let _ = VerifyingKey::from_jwk(&jwk);
        let _ = SigningKey::from_jwk(&jwk);
    }
    let _ = KeySet::from_jwks_json(&text);
    let _ = SigningKey::from_pkcs8_der(data, Some(Algorithm::RS256), None);
    let _ = VerifyingKey::from_public_der(data, None, None);
    let _ = SigningKey::from_pkcs8_pem(&text, None, None);
});
