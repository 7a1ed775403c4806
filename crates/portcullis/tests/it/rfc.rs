//! The worked examples of RFC 7515 Appendix A.1–A.4, RFC 7520 §4.1–4.4 and RFC 8037
//! Appendix A.4.

use std::sync::Arc;

use portcullis::clock::ManualClock;
use portcullis::jwt::{Reason, TypPolicy, Validation, Verifier, jws};
use portcullis::keys::{Jwk, Jwks, KeySet, SigningKey};
use serde_json::Value;

fn data(path: &str) -> Value {
    let path = format!("{}/tests/data/{path}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn jwk_with_alg(jwk: &Value, alg: &str) -> Jwk {
    let mut jwk = Jwk::from_json(&jwk.to_string()).unwrap();
    jwk.alg = Some(alg.to_owned());
    jwk
}

fn strict_b64(s: &str) -> Vec<u8> {
    jws::insecure_decode(&format!("e30.{s}.AA"), 1 << 20)
        .unwrap()
        .1
}

/// Every vector verifies with its key, yields its payload, and fails with one bit of
/// the signature flipped. Deterministic algorithms re-sign to the same bytes.
#[test]
fn rfc_7515_and_8037_examples_verify() {
    let vectors = data("rfc/vectors.json");
    let vectors = vectors.as_array().unwrap();
    assert_eq!(vectors.len(), 5);
    for v in vectors {
        let source = v["source"].as_str().unwrap();
        let alg = v["alg"].as_str().unwrap();
        let token = v["jws"].as_str().unwrap();
        let jwk = jwk_with_alg(&v["jwk"], alg);
        let set = KeySet::from_jwks(&Jwks {
            keys: vec![jwk.clone()],
        })
        .unwrap();
        let (header, payload) =
            jws::verify(token, &set, 1 << 16).unwrap_or_else(|e| panic!("{source}: {e}"));
        assert_eq!(header.alg.as_str(), alg, "{source}");
        assert_eq!(
            payload,
            strict_b64(v["payload_b64"].as_str().unwrap()),
            "{source}"
        );

        let (input, sig) = token.rsplit_once('.').unwrap();
        let mut sig_bytes = strict_b64(sig);
        sig_bytes[0] ^= 0x80;
        let tampered = format!("{input}.{}", b64(&sig_bytes));
        let err = jws::verify(&tampered, &set, 1 << 16).unwrap_err();
        assert_eq!(err.reason(), Reason::InvalidSignature, "{source}");

        let signing = SigningKey::from_jwk(&jwk).unwrap();
        if matches!(alg, "HS256" | "RS256" | "EdDSA") {
            assert_eq!(
                signing.sign(input.as_bytes()).unwrap(),
                strict_b64(sig),
                "{source}"
            );
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    crate::support::b64(bytes)
}

/// RFC 7515 A.1 is a JWT: through the full verifier, with `typ: JWT` and its claims.
#[test]
fn rfc_7515_a1_passes_as_a_jwt_until_it_expires() {
    let vectors = data("rfc/vectors.json");
    let v = &vectors[0];
    assert_eq!(v["source"], "RFC 7515 A.1");
    let set = KeySet::from_jwks(&Jwks {
        keys: vec![jwk_with_alg(&v["jwk"], "HS256")],
    })
    .unwrap();
    let clock = ManualClock::new(1_300_819_000);
    let validation = Validation::builder()
        .issuer("joe")
        .insecure_skip_audience()
        .typ(TypPolicy::Exact("JWT".into()))
        .required_claims(["exp"])
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let verifier = Verifier::new(set, validation);
    let token = v["jws"].as_str().unwrap();
    let verified = verifier.verify(token).unwrap();
    assert_eq!(verified.claims().exp, Some(1_300_819_380));
    assert_eq!(verified.claims().extra["http://example.com/is_root"], true);
    clock.set(1_300_819_380 + 30);
    assert_eq!(
        verifier.verify(token).unwrap_err().reason(),
        Reason::Expired
    );
}

/// RFC 7520 §4.1 (RS256, Figure 13), §4.2 (PS384, Figure 20), §4.3 (ES512, Figure 27)
/// and §4.4 (HS256, Figure 35), with the keys as Wycheproof carries them. Two of its JWKs
/// name the wrong algorithm (PS256, and the unregistered "ES521"); here each key's `alg`
/// is the one the RFC section uses.
#[test]
fn rfc_7520_section_4_examples_verify() {
    let doc = data("wycheproof/json_web_signature_test.json");
    let mut seen = Vec::new();
    for group in doc["testGroups"].as_array().unwrap() {
        if group["comment"] != "rfc7520" {
            continue;
        }
        for test in group["tests"].as_array().unwrap() {
            let (section, alg) = match test["comment"].as_str().unwrap() {
                "Figure13" => ("4.1", "RS256"),
                "Figure20" => ("4.2", "PS384"),
                "Figure27" => ("4.3", "ES512"),
                "Figure35" => ("4.4", "HS256"),
                other => panic!("unexpected {other}"),
            };
            let key = group.get("public").unwrap_or(&group["private"]);
            let set = KeySet::from_jwks(&Jwks {
                keys: vec![jwk_with_alg(key, alg)],
            })
            .unwrap();
            let (_, payload) = jws::verify(test["jws"].as_str().unwrap(), &set, 1 << 16)
                .unwrap_or_else(|e| panic!("RFC 7520 §{section}: {e}"));
            assert!(
                String::from_utf8(payload)
                    .unwrap()
                    .starts_with("It\u{2019}s a dangerous business, Frodo")
            );
            seen.push(section);
        }
    }
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, ["4.1", "4.2", "4.3", "4.4"]);
}
