//! Property tests: verification and every parser of untrusted input never panic, and
//! no mutation of a valid token is accepted.

use std::sync::LazyLock;

use portcullis::jwt::{Verifier, jws};
use portcullis::keys::{Algorithm, Jwk, Jwks, KeySet, SigningKey};
use proptest::prelude::*;

use crate::support::{Fixture, b64, sign_raw};

struct Shared {
    hs: Fixture,
    ed: Fixture,
    es: Fixture,
}

// Key generation is slow (RSA especially); build the fixtures once for all cases.
static SHARED: LazyLock<Shared> = LazyLock::new(|| Shared {
    hs: Fixture::new(Algorithm::HS256),
    ed: Fixture::new(Algorithm::EdDSA),
    es: Fixture::new(Algorithm::ES256),
});

fn verifiers() -> [&'static Verifier; 3] {
    [
        &SHARED.hs.verifier,
        &SHARED.ed.verifier,
        &SHARED.es.verifier,
    ]
}

/// Strings that look like tokens more often than uniform noise would.
fn token_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_\\-.]{0,300}",
        "[A-Za-z0-9_\\-]{0,80}\\.[A-Za-z0-9_\\-]{0,200}\\.[A-Za-z0-9_\\-]{0,100}",
        "(eyJ[A-Za-z0-9_\\-]{0,60}\\.){1,6}[A-Za-z0-9_\\-]{0,60}",
    ]
}

/// JSON-ish text for headers and claims.
fn json_like() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:e}")),
        "\"[a-z+/]{0,8}\"",
        Just("\"EdDSA\"".to_owned()),
        Just("\"HS256\"".to_owned()),
        Just("\"at+jwt\"".to_owned()),
        Just("\"k1\"".to_owned()),
    ];
    let value = leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("alg"),
                        Just("kid"),
                        Just("typ"),
                        Just("crit"),
                        Just("exp"),
                        Just("iat"),
                        Just("nbf"),
                        Just("iss"),
                        Just("aud"),
                        Just("sub"),
                        Just("x")
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| {
                let members: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    });
    prop_oneof![value, any::<String>()]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn verification_never_panics_on_arbitrary_strings(token in token_like()) {
        for verifier in verifiers() {
            let _ = verifier.verify(&token);
        }
        let _ = jws::insecure_decode(&token, 8192);
    }

    /// Correctly signed tokens with arbitrary header and claims text reach every parser
    /// behind the signature check.
    #[test]
    fn verification_never_panics_on_signed_arbitrary_json(header in json_like(), claims in json_like()) {
        let token = sign_raw(&header, &claims, &SHARED.hs.key);
        let _ = SHARED.hs.verifier.verify(&token);
        let token = sign_raw(&header, &claims, &SHARED.ed.key);
        let _ = SHARED.ed.verifier.verify(&token);
    }

    #[test]
    fn key_parsers_never_panic(text in json_like()) {
        let _ = Jwk::from_json(&text);
        let _ = Jwks::from_json(&text);
        let _ = KeySet::from_jwks_json(&text);
        let wrapped = format!("{{\"keys\":[{text}]}}");
        let _ = KeySet::from_jwks_json(&wrapped);
        let _ = jws::parse_json_object(text.as_bytes());
    }

    #[test]
    fn pem_parsers_never_panic(body in "[A-Za-z0-9+/=\\n]{0,400}") {
        for label in ["PRIVATE KEY", "PUBLIC KEY"] {
            let pem = format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n");
            let _ = SigningKey::from_pkcs8_pem(&pem, None, None);
            let _ = SigningKey::from_pkcs8_pem(&pem, Some(Algorithm::RS256), None);
            let _ = portcullis::keys::VerifyingKey::from_public_pem(&pem, Some(Algorithm::PS256), None);
        }
    }

    /// Changing any one byte of a valid token, or cutting it short, never yields a
    /// token that verifies; not even from the cache, where the original sits (found by
    /// the SHA-256 digest of the token's bytes).
    #[test]
    fn no_single_byte_mutation_of_a_valid_token_is_accepted(
        pick in 0usize..3,
        index in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<bool>(),
    ) {
        let fixture = [&SHARED.hs, &SHARED.ed, &SHARED.es][pick];
        let token = fixture.token();
        prop_assert!(fixture.verifier.verify(&token).is_ok());
        let mut bytes = token.clone().into_bytes();
        let i = index.index(bytes.len());
        if cut {
            bytes.truncate(i);
        } else {
            prop_assume!(bytes[i] != byte);
            bytes[i] = byte;
        }
        let mutated = String::from_utf8_lossy(&bytes).into_owned();
        prop_assert!(fixture.verifier.verify(&mutated).is_err(), "accepted {mutated}");
    }
}

#[test]
fn b64_helper_matches_the_library() {
    // The test helper's encoder must agree with the strict decoder it feeds.
    for len in 0..20u8 {
        let data: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
        let token = format!("e30.{}.AA", b64(&data));
        assert_eq!(jws::insecure_decode(&token, 8192).unwrap().1, data);
    }
}
