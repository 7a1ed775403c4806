//! Project Wycheproof JSON Web Signature and JSON Web Key vectors.
//!
//! Every vector must give its labelled result, except the ones in `OVERRIDES`, where
//! our policy is stricter than (or, for mixed key sets, deliberately different from)
//! the label.

use std::collections::BTreeMap;

use portcullis::jwt::jws;
use portcullis::keys::{Jwk, Jwks, KeySet, SigningKey};
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Valid,
    Invalid,
}

/// (file, tcId) → (what we expect instead of the label, why).
const OVERRIDES: &[(&str, u64, Outcome, &str)] = &[
    (
        "json_web_signature_test.json",
        367,
        Outcome::Valid,
        "labelled invalid padding, but the token is byte-identical to the valid tcId 357",
    ),
    (
        "json_web_signature_test.json",
        370,
        Outcome::Valid,
        "labelled invalid padding, but the token is byte-identical to the valid tcId 357",
    ),
    (
        "json_web_signature_test.json",
        372,
        Outcome::Invalid,
        "contains '?', outside base64url: our format check refuses it before decoding",
    ),
    (
        "json_web_signature_test.json",
        373,
        Outcome::Invalid,
        "contains '?', outside base64url: our format check refuses it before decoding",
    ),
    (
        "json_web_signature_test.json",
        346,
        Outcome::Invalid,
        "RFC 7520 Figure 20 is PS384, but the vector's JWK says alg PS256: the key fixes the \
         algorithm, so a PS256 key never checks a PS384 token (rfc.rs checks the figure \
         with the key's alg corrected)",
    ),
    (
        "json_web_signature_test.json",
        350,
        Outcome::Invalid,
        "as tcId 346 (same figure, key with key_ops)",
    ),
    (
        "json_web_signature_test.json",
        347,
        Outcome::Invalid,
        "RFC 7520 Figure 27's JWK here says alg \"ES521\", which is not a registered JOSE \
         name (ES512 is): the key is refused, as Wycheproof's own JSON Web Key tcId 19 \
         expects (rfc.rs checks the figure with alg ES512)",
    ),
    (
        "json_web_signature_test.json",
        351,
        Outcome::Invalid,
        "as tcId 347 (same figure, key with key_ops)",
    ),
    (
        "json_web_key_test.json",
        1,
        Outcome::Valid,
        "a key set may mix algorithm families: each key fixes its own algorithm, so an \
         HS256 token is only ever checked with the HS256 key (the issue asks for mixed sets)",
    ),
];

/// JSON Web Key tcIds whose HMAC key is shorter than the hash output (15 bytes, or
/// empty): RFC 7518 §3.2 forbids them, so the key set itself must refuse them with a
/// weak-key error (the labels say invalid; this checks it is for the right reason).
const SHORT_HMAC_KEY_TCIDS: [u64; 6] = [10, 11, 12, 16, 17, 18];

fn load(file: &str) -> Value {
    let path = format!(
        "{}/tests/data/wycheproof/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn key_set(key: &Value) -> Result<KeySet, portcullis::keys::Error> {
    let text = key.to_string();
    if key.get("keys").is_some() {
        KeySet::from_jwks_json(&text)
    } else {
        KeySet::from_jwks(&Jwks {
            keys: vec![Jwk::from_json(&text)?],
        })
    }
}

struct Run {
    checked: usize,
    overridden: usize,
    failures: Vec<String>,
}

fn run(file: &str) -> Run {
    let doc = load(file);
    let overrides: BTreeMap<u64, Outcome> = OVERRIDES
        .iter()
        .filter(|o| o.0 == file)
        .map(|o| (o.1, o.2))
        .collect();
    let mut run = Run {
        checked: 0,
        overridden: 0,
        failures: Vec::new(),
    };
    for group in doc["testGroups"].as_array().unwrap() {
        let key = group.get("public").unwrap_or(&group["private"]);
        let set = key_set(key);
        for test in group["tests"].as_array().unwrap() {
            let id = test["tcId"].as_u64().unwrap();
            let token = test["jws"].as_str().unwrap();
            let label = match test["result"].as_str().unwrap() {
                "valid" => Outcome::Valid,
                _ => Outcome::Invalid,
            };
            let expected = match overrides.get(&id) {
                Some(&o) => {
                    run.overridden += 1;
                    o
                }
                None => label,
            };
            let short_hmac = file == "json_web_key_test.json" && SHORT_HMAC_KEY_TCIDS.contains(&id);
            let (got, detail) = match &set {
                Err(e) => (Outcome::Invalid, format!("key set refused: {e}")),
                Ok(set) => match jws::verify(token, set, 8192) {
                    Ok(_) => (Outcome::Valid, "verified".to_owned()),
                    Err(e) => (Outcome::Invalid, format!("{}: {e}", e.reason())),
                },
            };
            run.checked += 1;
            if short_hmac {
                if !matches!(&set, Err(portcullis::keys::Error::WeakKey(_))) {
                    run.failures
                        .push(format!("{file} tcId {id}: expected a weak-key error"));
                }
                continue;
            }
            if got != expected {
                run.failures.push(format!(
                    "{file} tcId {id} ({}): expected {expected:?}, got {got:?} — {detail}",
                    test["comment"]
                ));
            }
        }
    }
    run
}

#[test]
fn wycheproof_json_web_signature_vectors() {
    let run = run("json_web_signature_test.json");
    assert!(run.failures.is_empty(), "{}", run.failures.join("\n"));
    assert_eq!(run.checked, 401);
    assert_eq!(run.overridden, 8);
}

#[test]
fn wycheproof_json_web_key_vectors() {
    let run = run("json_web_key_test.json");
    assert!(run.failures.is_empty(), "{}", run.failures.join("\n"));
    assert_eq!(run.checked, 26);
    assert_eq!(run.overridden, 1);
}

/// The private keys of the signature vectors import as signing keys and produce
/// signatures the public keys accept.
#[test]
fn wycheproof_private_keys_import_and_sign() {
    let doc = load("json_web_signature_test.json");
    let mut imported = 0;
    for group in doc["testGroups"].as_array().unwrap() {
        let Ok(jwk) = Jwk::from_json(&group["private"].to_string()) else {
            continue;
        };
        let usable = jwk.use_.as_deref().is_none_or(|u| u == "sig")
            && jwk
                .key_ops
                .as_ref()
                .is_none_or(|ops| ops.iter().any(|o| o == "sign" || o == "verify"));
        let Ok(key) = SigningKey::from_jwk(&jwk) else {
            continue;
        };
        if !usable {
            continue;
        }
        let sig = key.sign(b"a.b").unwrap();
        assert!(key.verifying_key().unwrap().verify_signature(b"a.b", &sig));
        imported += 1;
    }
    // Every signing group but the short-HMAC one, the encryption keys and the
    // key_ops-limited ones.
    assert!(imported >= 15, "only {imported} private keys imported");
}
