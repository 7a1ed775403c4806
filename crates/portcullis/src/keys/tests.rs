//! Unit tests across the key types: generation, signing, JWK and PEM round trips.

use super::*;

const MESSAGE: &[u8] = b"header.payload";

fn all_keys() -> Vec<SigningKey> {
    Algorithm::ALL
        .into_iter()
        .map(|alg| SigningKey::generate(alg, Some(format!("kid-{alg}"))).unwrap())
        .collect()
}

#[test]
fn every_algorithm_signs_and_verifies_and_rejects_tampering() {
    for key in all_keys() {
        let alg = key.algorithm();
        let sig = key.sign(MESSAGE).unwrap();
        let public = key.verifying_key().unwrap();
        assert_eq!(public.algorithm(), alg);
        assert!(public.verify_signature(MESSAGE, &sig), "{alg}");
        assert!(!public.verify_signature(b"header.payloaD", &sig), "{alg}");
        let mut bad = sig.clone();
        bad[0] ^= 1;
        assert!(!public.verify_signature(MESSAGE, &bad), "{alg}");
        assert!(
            !public.verify_signature(MESSAGE, &sig[..sig.len() - 1]),
            "{alg}"
        );
        assert!(!public.verify_signature(MESSAGE, &[]), "{alg}");
    }
}

#[test]
fn private_jwk_round_trips_and_signs_the_same() {
    for key in all_keys() {
        let jwk = key.to_jwk().unwrap();
        assert!(jwk.is_private());
        assert_eq!(jwk.use_.as_deref(), Some("sig"));
        let again = SigningKey::from_jwk(&Jwk::from_json(&jwk.to_json()).unwrap()).unwrap();
        assert_eq!(again.kid(), key.kid());
        let sig = again.sign(MESSAGE).unwrap();
        assert!(key.verifying_key().unwrap().verify_signature(MESSAGE, &sig));
    }
}

#[test]
fn public_jwk_has_no_private_members_and_round_trips() {
    for key in all_keys() {
        let public = key.verifying_key().unwrap();
        if public.is_secret() {
            assert!(public.to_jwk().is_err());
            continue;
        }
        let jwk = public.to_jwk().unwrap();
        assert!(!jwk.is_private(), "{:?}", key.algorithm());
        let imported = VerifyingKey::from_jwk(&jwk).unwrap();
        let sig = key.sign(MESSAGE).unwrap();
        assert!(imported.verify_signature(MESSAGE, &sig));
    }
}

#[test]
fn pem_round_trips() {
    for key in all_keys() {
        let alg = key.algorithm();
        if alg.family() == KeyFamily::Hmac {
            assert!(key.to_pkcs8_pem().is_err());
            continue;
        }
        let pem = key.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let again = SigningKey::from_pkcs8_pem(&pem, Some(alg), None).unwrap();
        let public_pem = key.verifying_key().unwrap().to_public_pem().unwrap();
        let public = VerifyingKey::from_public_pem(&public_pem, Some(alg), None).unwrap();
        assert!(public.verify_signature(MESSAGE, &again.sign(MESSAGE).unwrap()));
    }
}

#[test]
fn rsa_pem_needs_an_algorithm_and_ec_pem_infers_it() {
    let rsa = SigningKey::generate(Algorithm::PS256, None).unwrap();
    let pem = rsa.to_pkcs8_pem().unwrap();
    assert!(SigningKey::from_pkcs8_pem(&pem, None, None).is_err());
    assert!(SigningKey::from_pkcs8_pem(&pem, Some(Algorithm::ES256), None).is_err());
    let ec = SigningKey::generate(Algorithm::ES384, None).unwrap();
    let pem = ec.to_pkcs8_pem().unwrap();
    assert_eq!(
        SigningKey::from_pkcs8_pem(&pem, None, None)
            .unwrap()
            .algorithm(),
        Algorithm::ES384
    );
    assert!(SigningKey::from_pkcs8_pem(&pem, Some(Algorithm::ES256), None).is_err());
}

#[test]
fn short_hmac_secrets_are_refused() {
    assert!(matches!(
        SigningKey::from_hmac_secret(Algorithm::HS256, &[7; 31], None),
        Err(Error::WeakKey(_))
    ));
    assert!(matches!(
        VerifyingKey::from_hmac_secret(Algorithm::HS512, &[7; 63], None),
        Err(Error::WeakKey(_))
    ));
    assert!(VerifyingKey::from_hmac_secret(Algorithm::HS256, &[7; 32], None).is_ok());
    assert!(VerifyingKey::from_hmac_secret(Algorithm::ES256, &[7; 32], None).is_err());
}

#[test]
fn debug_output_never_contains_secrets() {
    let key =
        SigningKey::from_hmac_secret(Algorithm::HS256, b"0123456789abcdef0123456789abcdef", None)
            .unwrap();
    let shown = format!("{key:?} {:?}", key.verifying_key().unwrap());
    assert!(!shown.contains("0123456789"), "{shown}");
    assert!(shown.contains("[redacted]"));
}

#[test]
fn jwk_alg_must_agree_with_kty_and_curve() {
    let ec = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let mut jwk = ec.verifying_key().unwrap().to_jwk().unwrap();
    jwk.alg = Some("ES384".into());
    assert!(VerifyingKey::from_jwk(&jwk).is_err());
    jwk.alg = Some("RS256".into());
    assert!(VerifyingKey::from_jwk(&jwk).is_err());
    jwk.alg = None;
    assert_eq!(
        VerifyingKey::from_jwk(&jwk).unwrap().algorithm(),
        Algorithm::ES256
    );
    jwk.kty = "OKP".into();
    assert!(VerifyingKey::from_jwk(&jwk).is_err());

    let rsa = SigningKey::generate(Algorithm::RS256, None).unwrap();
    let mut jwk = rsa.verifying_key().unwrap().to_jwk().unwrap();
    jwk.alg = None;
    assert!(VerifyingKey::from_jwk(&jwk).is_err(), "RSA JWKs need alg");
    jwk.alg = Some("HS256".into());
    assert!(VerifyingKey::from_jwk(&jwk).is_err());
}

#[test]
fn an_ec_point_off_the_curve_is_refused() {
    let ec = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let mut jwk = ec.verifying_key().unwrap().to_jwk().unwrap();
    let mut y = crate::b64::decode(jwk.y.as_ref().unwrap().as_bytes()).unwrap();
    y[31] ^= 1;
    jwk.y = Some(crate::b64::encode(&y));
    assert!(VerifyingKey::from_jwk(&jwk).is_err());
}

#[test]
fn key_set_refuses_duplicate_kids_and_selects_by_kid_then_by_algorithm() {
    let a = SigningKey::generate(Algorithm::ES256, Some("a".into())).unwrap();
    let b = SigningKey::generate(Algorithm::ES256, Some("a".into())).unwrap();
    assert!(matches!(
        KeySet::new(vec![a.verifying_key().unwrap(), b.verifying_key().unwrap()]),
        Err(Error::DuplicateKid(_))
    ));

    let ed = SigningKey::generate(Algorithm::EdDSA, Some("ed".into())).unwrap();
    let set = KeySet::new(vec![
        a.verifying_key().unwrap(),
        ed.verifying_key().unwrap(),
    ])
    .unwrap();
    assert_eq!(
        set.select(Algorithm::ES256, Some("a")).unwrap().kid(),
        Some("a")
    );
    assert_eq!(
        set.select(Algorithm::EdDSA, None).unwrap().kid(),
        Some("ed")
    );
    assert_eq!(
        set.select(Algorithm::ES256, Some("nope")).unwrap_err(),
        Miss::Unknown
    );
    assert_eq!(
        set.select(Algorithm::HS256, Some("a")).unwrap_err(),
        Miss::AlgorithmMismatch(Algorithm::ES256)
    );
    assert_eq!(
        set.select(Algorithm::ES384, None).unwrap_err(),
        Miss::Unknown
    );

    let b2 = SigningKey::generate(Algorithm::ES256, Some("b".into())).unwrap();
    let two = KeySet::new(vec![
        a.verifying_key().unwrap(),
        b2.verifying_key().unwrap(),
    ])
    .unwrap();
    assert_eq!(
        two.select(Algorithm::ES256, None).unwrap_err(),
        Miss::Unknown
    );
}

#[test]
fn public_jwks_leaves_out_hmac_secrets() {
    let h = SigningKey::generate(Algorithm::HS256, Some("h".into())).unwrap();
    let e = SigningKey::generate(Algorithm::EdDSA, Some("e".into())).unwrap();
    let set = KeySet::new(vec![h.verifying_key().unwrap(), e.verifying_key().unwrap()]).unwrap();
    let jwks = set.to_public_jwks().unwrap();
    assert_eq!(jwks.keys.len(), 1);
    assert_eq!(jwks.keys[0].kid.as_deref(), Some("e"));
    let again = KeySet::from_jwks_json(&jwks.to_json()).unwrap();
    assert_eq!(again.len(), 1);
}
