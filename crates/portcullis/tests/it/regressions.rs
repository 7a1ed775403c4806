//! One named test per known advisory class of JWT libraries. Each builds the hostile
//! token by hand and checks it is refused for the right reason.

use portcullis::jwt::Reason;
use portcullis::keys::{Algorithm, KeySet, SigningKey};

use crate::support::{Fixture, b64, claims_json, sign_raw};

fn reason(fx: &Fixture, token: &str) -> Reason {
    fx.verifier.verify(token).unwrap_err().reason()
}

/// CVE-2015-9235 and the "alg: none" family: an unsigned token never verifies, however
/// `none` is spelled, with or without a signature segment.
#[test]
fn alg_none_is_refused_in_every_spelling() {
    let fx = Fixture::new(Algorithm::EdDSA);
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = format!(r#"{{"alg":"{alg}","typ":"at+jwt","kid":"k1"}}"#);
        let unsigned = format!(
            "{}.{}.",
            b64(header.as_bytes()),
            b64(claims_json("").as_bytes())
        );
        assert_eq!(
            reason(&fx, &unsigned),
            Reason::Malformed,
            "{alg} without signature"
        );
        let with_sig = format!("{unsigned}AAAA");
        assert_eq!(
            reason(&fx, &with_sig),
            Reason::UnsupportedAlgorithm,
            "{alg} with signature"
        );
    }
}

/// CVE-2015-9235 (HS/RS confusion): an attacker signs HS256 with the RSA public key's
/// bytes as the HMAC secret. The key bound to the `kid` is RS256, so the HS256 header
/// never reaches an HMAC check.
#[test]
fn hs256_token_is_never_checked_with_an_rsa_public_key() {
    let rsa = SigningKey::generate(Algorithm::RS256, Some("rsa".into())).unwrap();
    let public = rsa.verifying_key().unwrap();
    let pem = public.to_public_pem().unwrap();
    let forger =
        SigningKey::from_hmac_secret(Algorithm::HS256, pem.as_bytes(), Some("rsa".into())).unwrap();
    let fx = Fixture::new(Algorithm::RS256);
    fx.verifier
        .set_keys(KeySet::new(vec![public.clone()]).unwrap());
    let header = r#"{"alg":"HS256","typ":"at+jwt","kid":"rsa"}"#;
    let forged = sign_raw(header, &claims_json(""), &forger);
    assert_eq!(reason(&fx, &forged), Reason::UnsupportedAlgorithm);
    // Without a kid there is no HS256 key in the set at all.
    let forged = sign_raw(
        r#"{"alg":"HS256","typ":"at+jwt"}"#,
        &claims_json(""),
        &forger,
    );
    assert_eq!(reason(&fx, &forged), Reason::UnknownKey);
    // Same with the JWK's modulus bytes as the secret.
    let n = public.to_jwk().unwrap().n.clone().unwrap();
    let forger = SigningKey::from_hmac_secret(Algorithm::HS256, n.as_bytes(), None).unwrap();
    let forged = sign_raw(header, &claims_json(""), &forger);
    assert_eq!(reason(&fx, &forged), Reason::UnsupportedAlgorithm);
}

/// CVE-2022-21449 ("psychic signatures"): r = s = 0 must never verify, nor r or s
/// equal to the group order.
#[test]
fn psychic_ecdsa_signatures_are_refused() {
    let fx = Fixture::new(Algorithm::ES256);
    let good = fx.token();
    let input = &good[..good.rfind('.').unwrap()];
    let zero = format!("{input}.{}", b64(&[0u8; 64]));
    assert_eq!(reason(&fx, &zero), Reason::InvalidSignature);
    // n of P-256.
    let n: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];
    let order = format!("{input}.{}", b64(&[n, n].concat()));
    assert_eq!(reason(&fx, &order), Reason::InvalidSignature);
    let mut one = [0u8; 32];
    one[31] = 1;
    let r_zero = format!("{input}.{}", b64(&[[0u8; 32], one].concat()));
    assert_eq!(reason(&fx, &r_zero), Reason::InvalidSignature);
    let s_zero = format!("{input}.{}", b64(&[one, [0u8; 32]].concat()));
    assert_eq!(reason(&fx, &s_zero), Reason::InvalidSignature);
    let above = format!("{input}.{}", b64(&[[0xffu8; 32], [0xffu8; 32]].concat()));
    assert_eq!(reason(&fx, &above), Reason::InvalidSignature);
    // The other curves, with all-zero signatures of their exact lengths.
    for (alg, len) in [(Algorithm::ES384, 96), (Algorithm::ES512, 132)] {
        let fx = Fixture::new(alg);
        let good = fx.token();
        let input = &good[..good.rfind('.').unwrap()];
        let zero = format!("{input}.{}", b64(&vec![0u8; len]));
        assert_eq!(reason(&fx, &zero), Reason::InvalidSignature, "{alg}");
    }
}

/// RFC 7518 §3.4: a DER-encoded ECDSA signature, or one of the wrong length, is refused.
#[test]
fn der_encoded_or_truncated_ecdsa_signatures_are_refused() {
    let fx = Fixture::new(Algorithm::ES256);
    let good = fx.token();
    let (input, sig) = good.rsplit_once('.').unwrap();
    let raw = portcullis_b64_decode(sig);
    let mut der = vec![0x30, 0x44, 0x02, 0x20];
    der.extend_from_slice(&raw[..32]);
    der.extend_from_slice(&[0x02, 0x20]);
    der.extend_from_slice(&raw[32..]);
    assert_eq!(
        reason(&fx, &format!("{input}.{}", b64(&der))),
        Reason::InvalidSignature
    );
    assert_eq!(
        reason(&fx, &format!("{input}.{}", b64(&raw[..63]))),
        Reason::InvalidSignature
    );
}

fn portcullis_b64_decode(s: &str) -> Vec<u8> {
    // Decode through a JWS with that payload: the library's own strict decoder.
    let (_, payload) = portcullis::jwt::jws::insecure_decode(&format!("e30.{s}.AA"), 8192).unwrap();
    payload
}

/// CVE-2025-30204 (golang-jwt): a header of many dots made parsing allocate per dot.
/// Here the characters and the dot count are checked in one pass first.
#[test]
fn a_token_of_many_dots_is_refused_before_any_decoding() {
    let fx = Fixture::new(Algorithm::HS256);
    let dots = format!("e30{}", ".".repeat(8000));
    assert_eq!(reason(&fx, &dots), Reason::Malformed);
    let too_many = ".".repeat(100_000);
    assert_eq!(reason(&fx, &too_many), Reason::TooLarge);
}

/// RFC 7519 §7.2: JWE (five segments) and the JWS JSON serialization are refused.
#[test]
fn jwe_and_json_serialization_are_refused() {
    let fx = Fixture::new(Algorithm::HS256);
    assert_eq!(
        reason(&fx, "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d"),
        Reason::Malformed
    );
    let json = r#"{"payload":"e30","signatures":[{"protected":"e30","signature":"AA"}]}"#;
    assert_eq!(reason(&fx, json), Reason::Malformed);
}

/// CVE-2018-0114 (embedded `jwk`) and `jku`/`x5u` key-URL injection: headers that make a
/// verifier trust or fetch a key are refused, as are `crit`, `zip`, `b64` and nested JWTs.
#[test]
fn headers_that_bring_their_own_key_or_change_processing_are_refused() {
    let fx = Fixture::new(Algorithm::EdDSA);
    let jwk = fx.key.verifying_key().unwrap().to_jwk().unwrap().to_json();
    for extra in [
        format!(r#","jwk":{jwk}"#),
        r#","jku":"https://attacker.example/jwks.json""#.to_owned(),
        r#","x5u":"https://attacker.example/cert.pem""#.to_owned(),
        r#","x5c":["MIIB"]"#.to_owned(),
        r#","crit":["exp"],"exp":1"#.to_owned(),
        r#","zip":"DEF""#.to_owned(),
        r#","b64":false,"crit":["b64"]"#.to_owned(),
        r#","cty":"JWT""#.to_owned(),
    ] {
        let header = format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"k1"{extra}}}"#);
        let token = sign_raw(&header, &claims_json(""), &fx.key);
        assert_eq!(reason(&fx, &token), Reason::UnsupportedHeader, "{extra}");
    }
}

/// `kid` is an opaque map key: path traversal, SQL and URLs find nothing.
#[test]
fn kid_injection_finds_no_key() {
    let fx = Fixture::new(Algorithm::HS256);
    for kid in [
        "../../../../dev/null",
        "' OR '1'='1",
        "https://attacker.example/k",
        "k1\u{0}",
        "K1",
    ] {
        let header = format!(
            r#"{{"alg":"HS256","typ":"at+jwt","kid":{}}}"#,
            serde_json::json!(kid)
        );
        let token = sign_raw(&header, &claims_json(""), &fx.key);
        assert_eq!(reason(&fx, &token), Reason::UnknownKey, "{kid}");
    }
}

/// Duplicate member names: some libraries take the last (or first) value. A duplicated
/// claim, header member or nested member is refused.
#[test]
fn duplicate_claims_and_header_members_are_refused() {
    let fx = Fixture::new(Algorithm::HS256);
    let header = r#"{"alg":"HS256","typ":"at+jwt","kid":"k1"}"#;
    for claims in [
        claims_json(r#","admin":false,"admin":true"#),
        claims_json(r#","sub":"root""#),
        claims_json(r#","ctx":{"role":"user","role":"admin"}"#),
    ] {
        let token = sign_raw(header, &claims, &fx.key);
        assert_eq!(reason(&fx, &token), Reason::Malformed, "{claims}");
    }
    let dup_header = r#"{"alg":"HS256","typ":"at+jwt","kid":"k1","typ":"at+jwt"}"#;
    let token = sign_raw(dup_header, &claims_json(""), &fx.key);
    assert_eq!(reason(&fx, &token), Reason::Malformed);
}

/// Claims that weaker libraries accept: exp = 2^64-1, string dates, iss as an array,
/// an empty sub.
#[test]
fn out_of_range_or_mistyped_claims_are_refused() {
    let fx = Fixture::new(Algorithm::HS256);
    let header = r#"{"alg":"HS256","typ":"at+jwt","kid":"k1"}"#;
    let base = |exp: &str, iss: &str, sub: &str| {
        format!(
            r#"{{"iss":{iss},"aud":"api","sub":{sub},"iat":{},"exp":{exp}}}"#,
            crate::support::NOW
        )
    };
    let iss = r#""https://issuer.example""#;
    for (claims, want) in [
        (
            base("18446744073709551615", iss, r#""u""#),
            Reason::InvalidClaim,
        ),
        (base(r#""1767226500""#, iss, r#""u""#), Reason::InvalidClaim),
        (base("1e20", iss, r#""u""#), Reason::InvalidClaim),
        (base("-1", iss, r#""u""#), Reason::InvalidClaim),
        (base("null", iss, r#""u""#), Reason::InvalidClaim),
        (
            base("1767226500", r#"["https://issuer.example"]"#, r#""u""#),
            Reason::InvalidClaim,
        ),
        (base("1767226500", iss, r#""""#), Reason::InvalidClaim),
        (base("1767226500", iss, "42"), Reason::InvalidClaim),
    ] {
        let token = sign_raw(header, &claims, &fx.key);
        assert_eq!(reason(&fx, &token), want, "{claims}");
    }
}

/// RFC 8725 §3.11 / RFC 9068 §4: a token without `typ: at+jwt` (an ID token, a refresh
/// token in JWT form, an untyped JWT) never passes as an access token.
#[test]
fn tokens_of_another_type_are_not_access_tokens() {
    let fx = Fixture::new(Algorithm::HS256);
    for header in [
        r#"{"alg":"HS256","kid":"k1"}"#,
        r#"{"alg":"HS256","kid":"k1","typ":"JWT"}"#,
        r#"{"alg":"HS256","kid":"k1","typ":"refresh+jwt"}"#,
        r#"{"alg":"HS256","kid":"k1","typ":"application/jwt"}"#,
    ] {
        let token = sign_raw(header, &claims_json(""), &fx.key);
        assert_eq!(reason(&fx, &token), Reason::InvalidType, "{header}");
    }
    let ok = sign_raw(
        r#"{"alg":"HS256","kid":"k1","typ":"application/AT+JWT"}"#,
        &claims_json(""),
        &fx.key,
    );
    assert!(fx.verifier.verify(&ok).is_ok());
}

/// Signature stripping and non-canonical base64url: an empty signature is never
/// accepted, and bits beyond the encoded length must be zero.
#[test]
fn stripped_or_non_canonical_signatures_are_refused() {
    let fx = Fixture::new(Algorithm::HS256);
    let good = fx.token();
    let (input, sig) = good.rsplit_once('.').unwrap();
    assert_eq!(reason(&fx, &format!("{input}.")), Reason::Malformed);
    // A 32-byte MAC is 43 characters; the last one carries 2 unused bits.
    let last = sig.as_bytes()[42];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let pos = alphabet.iter().position(|&c| c == last).unwrap();
    let tweaked = alphabet[pos ^ 1] as char;
    let token = format!("{input}.{}{tweaked}", &sig[..42]);
    assert_eq!(reason(&fx, &token), Reason::Malformed);
}

/// RFC 7518 §3.2, §3.3: weak keys never enter a key set.
#[test]
fn weak_keys_are_refused_at_import() {
    assert!(SigningKey::from_hmac_secret(Algorithm::HS256, b"secret", None).is_err());
    assert!(SigningKey::from_hmac_secret(Algorithm::HS256, &[0x41; 31], None).is_err());
    // RSA 1024 and e = 1 are covered by the Wycheproof JSON Web Key vectors 8 and 9.
}

/// Deep nesting in a signed claim or header member is refused by the depth bound, not
/// by a stack overflow, through the whole verifier.
#[test]
fn deeply_nested_claims_and_header_members_are_malformed() {
    let fx = Fixture::new(Algorithm::HS256);
    let deep = format!("{}1{}", "[".repeat(64), "]".repeat(64));
    let token = sign_raw(
        r#"{"alg":"HS256","typ":"at+jwt","kid":"k1"}"#,
        &claims_json(&format!(r#","deep":{deep}"#)),
        &fx.key,
    );
    assert_eq!(reason(&fx, &token), Reason::Malformed);
    let header = format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"k1","x":{deep}}}"#);
    let token = sign_raw(&header, &claims_json(""), &fx.key);
    assert_eq!(reason(&fx, &token), Reason::Malformed);
    // Fifteen levels inside a claim are fine.
    let ok = format!("{}1{}", "[".repeat(14), "]".repeat(14));
    let token = sign_raw(
        r#"{"alg":"HS256","typ":"at+jwt","kid":"k1"}"#,
        &claims_json(&format!(r#","ok":{ok}"#)),
        &fx.key,
    );
    assert!(fx.verifier.verify(&token).is_ok());
}

/// Invalid UTF-8 inside a signed claims set is malformed, not a panic or a lossy string.
#[test]
fn invalid_utf8_in_signed_claims_is_malformed() {
    let fx = Fixture::new(Algorithm::HS256);
    let header = b64(br#"{"alg":"HS256","typ":"at+jwt","kid":"k1"}"#);
    let mut claims = claims_json("").into_bytes();
    let at = claims.len() - 1;
    claims.splice(at..at, br#","x":"\xff""#.iter().copied());
    let input = format!("{header}.{}", b64(&claims));
    let sig = fx.key.sign(input.as_bytes()).unwrap();
    let token = format!("{input}.{}", b64(&sig));
    assert_eq!(reason(&fx, &token), Reason::Malformed);
}

/// RFC 7518 §3.3 and our policy: an RSA key must be 2048–8192 bits with e = 65537.
#[test]
fn rsa_keys_with_another_exponent_or_an_even_modulus_are_refused() {
    use portcullis::keys::VerifyingKey;
    let rsa = SigningKey::generate(Algorithm::RS256, None).unwrap();
    let mut jwk = rsa.verifying_key().unwrap().to_jwk().unwrap();
    jwk.e = Some(b64(&[3]));
    assert!(matches!(
        VerifyingKey::from_jwk(&jwk),
        Err(portcullis::keys::Error::WeakKey(_))
    ));
    jwk.e = Some(b64(&[1, 0, 1]));
    let mut n = portcullis_b64_decode(jwk.n.as_deref().unwrap());
    *n.last_mut().unwrap() &= 0xfe;
    jwk.n = Some(b64(&n));
    assert!(VerifyingKey::from_jwk(&jwk).is_err());
}
