//! The verifier end to end: every algorithm, every claim rule with its boundary, the
//! key lookup rules and the verified-token cache.

use std::sync::Arc;
use std::time::Duration;

use portcullis::clock::ManualClock;
use portcullis::jwt::{Reason, TokenBuilder, TypPolicy, Validation, Verifier};
use portcullis::keys::{Algorithm, KeySet, SigningKey};

use crate::support::{AUDIENCE, Fixture, ISSUER, NOW, claims_json, sign_raw, validation};

fn reason(fx: &Fixture, token: &str) -> Reason {
    fx.verifier.verify(token).unwrap_err().reason()
}

#[test]
fn every_algorithm_round_trips_through_the_verifier() {
    for alg in Algorithm::ALL {
        let fx = Fixture::new(alg);
        let token = fx
            .builder()
            .scope("read write")
            .session_id("s1")
            .claim("tenant", "t9")
            .sign_at(&fx.key, &fx.clock)
            .unwrap();
        let verified = fx.verifier.verify(&token).unwrap();
        assert_eq!(verified.header().alg, alg);
        assert_eq!(verified.header().kid.as_deref(), Some("k1"));
        let c = verified.claims();
        assert_eq!(c.sub.as_deref(), Some("user-1"));
        assert_eq!(c.sid.as_deref(), Some("s1"));
        assert_eq!(c.scopes().collect::<Vec<_>>(), ["read", "write"]);
        assert_eq!(c.extra["tenant"], "t9");
        assert_eq!(c.exp, Some(NOW + 900));
        assert!(c.jti.as_ref().is_some_and(|j| j.len() >= 22));
        // A token signed by another key of the same algorithm and kid fails.
        let other = SigningKey::generate(alg, Some("k1".into())).unwrap();
        let forged = fx.builder().sign_at(&other, &fx.clock).unwrap();
        assert_eq!(reason(&fx, &forged), Reason::InvalidSignature, "{alg}");
    }
}

#[test]
fn expiry_boundary_includes_leeway() {
    let fx = Fixture::new(Algorithm::HS256);
    let token = fx.token(); // exp = NOW + 900, leeway 30
    fx.clock.set(NOW + 929);
    assert!(fx.verifier.verify_uncached(&token).is_ok());
    fx.clock.set(NOW + 930);
    assert_eq!(
        fx.verifier.verify_uncached(&token).unwrap_err().reason(),
        Reason::Expired
    );
}

#[test]
fn exp_equal_to_now_is_expired_without_leeway() {
    let clock = ManualClock::new(NOW);
    let key = SigningKey::generate(Algorithm::HS256, None).unwrap();
    let v = Validation::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .leeway(Duration::ZERO)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let verifier = Verifier::new(KeySet::new(vec![key.verifying_key().unwrap()]).unwrap(), v);
    let token = TokenBuilder::access_token(ISSUER, AUDIENCE)
        .subject("u")
        .issued_at(NOW - 10)
        .expires_at(NOW)
        .sign(&key)
        .unwrap();
    assert_eq!(
        verifier.verify(&token).unwrap_err().reason(),
        Reason::Expired
    );
    clock.set(NOW - 1);
    assert!(verifier.verify(&token).is_ok());
}

#[test]
fn not_before_and_issued_at_respect_leeway() {
    let fx = Fixture::new(Algorithm::HS256);
    let nbf = fx
        .builder()
        .not_before(NOW + 31)
        .sign_at(&fx.key, &fx.clock)
        .unwrap();
    assert_eq!(reason(&fx, &nbf), Reason::NotYetValid);
    let nbf_ok = fx
        .builder()
        .not_before(NOW + 30)
        .sign_at(&fx.key, &fx.clock)
        .unwrap();
    assert!(fx.verifier.verify(&nbf_ok).is_ok());
    let future = fx
        .builder()
        .issued_at(NOW + 31)
        .sign_at(&fx.key, &fx.clock)
        .unwrap();
    assert_eq!(reason(&fx, &future), Reason::IssuedInFuture);
    let skewed = fx
        .builder()
        .issued_at(NOW + 30)
        .sign_at(&fx.key, &fx.clock)
        .unwrap();
    assert!(fx.verifier.verify(&skewed).is_ok());
}

#[test]
fn lifetime_above_the_maximum_is_refused() {
    let fx = Fixture::new(Algorithm::HS256);
    let long = fx
        .builder()
        .expires_in(Duration::from_secs(24 * 3600 + 1))
        .sign_at(&fx.key, &fx.clock)
        .unwrap();
    assert_eq!(reason(&fx, &long), Reason::LifetimeTooLong);
    let max = fx
        .builder()
        .expires_in(Duration::from_secs(24 * 3600))
        .sign_at(&fx.key, &fx.clock)
        .unwrap();
    assert!(fx.verifier.verify(&max).is_ok());
    let backwards = fx
        .builder()
        .issued_at(NOW)
        .expires_at(NOW - 1)
        .sign_at(&fx.key, &fx.clock);
    // Still inside the leeway, so not expired; but it ends before it begins.
    assert_eq!(reason(&fx, &backwards.unwrap()), Reason::InvalidClaim);
}

#[test]
fn without_iat_the_lifetime_counts_from_now() {
    let clock = ManualClock::new(NOW);
    let key = SigningKey::generate(Algorithm::HS256, None).unwrap();
    let v = Validation::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .required_claims(["exp"])
        .max_lifetime(Duration::from_secs(600))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let verifier = Verifier::new(KeySet::new(vec![key.verifying_key().unwrap()]).unwrap(), v);
    let far = sign_raw(
        r#"{"alg":"HS256","typ":"at+jwt"}"#,
        &format!(
            r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{}}}"#,
            NOW + 601
        ),
        &key,
    );
    assert_eq!(
        verifier.verify(&far).unwrap_err().reason(),
        Reason::LifetimeTooLong
    );
    clock.set(NOW + 1);
    assert!(verifier.verify(&far).is_ok());
}

#[test]
fn issuer_and_audience_are_compared_exactly() {
    let fx = Fixture::new(Algorithm::HS256);
    let header = r#"{"alg":"HS256","typ":"at+jwt","kid":"k1"}"#;
    let with = |iss: &str, aud: &str| {
        sign_raw(
            header,
            &format!(
                r#"{{"iss":{iss},"aud":{aud},"sub":"u","iat":{NOW},"exp":{}}}"#,
                NOW + 60
            ),
            &fx.key,
        )
    };
    assert!(
        fx.verifier
            .verify(&with(r#""https://issuer.example""#, r#"["x","api"]"#))
            .is_ok()
    );
    assert_eq!(
        reason(&fx, &with(r#""https://issuer.example/""#, r#""api""#)),
        Reason::InvalidIssuer
    );
    assert_eq!(
        reason(&fx, &with(r#""HTTPS://issuer.example""#, r#""api""#)),
        Reason::InvalidIssuer
    );
    assert_eq!(
        reason(&fx, &with(r#""https://issuer.example""#, r#""API""#)),
        Reason::InvalidAudience
    );
    assert_eq!(
        reason(&fx, &with(r#""https://issuer.example""#, r#"[]"#)),
        Reason::InvalidAudience
    );
    let no_aud = sign_raw(
        header,
        &format!(
            r#"{{"iss":"{ISSUER}","sub":"u","iat":{NOW},"exp":{}}}"#,
            NOW + 60
        ),
        &fx.key,
    );
    assert_eq!(reason(&fx, &no_aud), Reason::MissingClaim);
    let no_iss = sign_raw(
        header,
        &format!(
            r#"{{"aud":"api","sub":"u","iat":{NOW},"exp":{}}}"#,
            NOW + 60
        ),
        &fx.key,
    );
    assert_eq!(reason(&fx, &no_iss), Reason::MissingClaim);
}

#[test]
fn required_claims_are_enforced() {
    let fx = Fixture::new(Algorithm::HS256);
    let header = r#"{"alg":"HS256","typ":"at+jwt","kid":"k1"}"#;
    let no_exp = sign_raw(
        header,
        &format!(r#"{{"iss":"{ISSUER}","aud":"api","sub":"u","iat":{NOW}}}"#),
        &fx.key,
    );
    assert_eq!(reason(&fx, &no_exp), Reason::MissingClaim);
    let no_sub = sign_raw(
        header,
        &format!(
            r#"{{"iss":"{ISSUER}","aud":"api","iat":{NOW},"exp":{}}}"#,
            NOW + 9
        ),
        &fx.key,
    );
    assert_eq!(reason(&fx, &no_sub), Reason::MissingClaim);

    let clock = ManualClock::new(NOW);
    let v = Validation::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .required_claims(["sub", "tenant"])
        .clock(Arc::new(clock))
        .build()
        .unwrap();
    let verifier = Verifier::new(
        KeySet::new(vec![fx.key.verifying_key().unwrap()]).unwrap(),
        v,
    );
    let token = sign_raw(header, &claims_json(""), &fx.key);
    assert_eq!(
        verifier.verify(&token).unwrap_err().reason(),
        Reason::MissingClaim
    );
    let token = sign_raw(header, &claims_json(r#","tenant":"t""#), &fx.key);
    assert!(verifier.verify(&token).is_ok());
}

#[test]
fn exp_is_required_even_when_the_required_list_leaves_it_out() {
    let clock = ManualClock::new(NOW);
    let key = SigningKey::generate(Algorithm::HS256, None).unwrap();
    let v = Validation::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .required_claims(Vec::<String>::new())
        .clock(Arc::new(clock))
        .build()
        .unwrap();
    let verifier = Verifier::new(KeySet::new(vec![key.verifying_key().unwrap()]).unwrap(), v);
    let no_exp = sign_raw(
        r#"{"alg":"HS256","typ":"at+jwt"}"#,
        &format!(r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}"}}"#),
        &key,
    );
    assert_eq!(
        verifier.verify(&no_exp).unwrap_err().reason(),
        Reason::MissingClaim
    );
}

#[test]
fn exact_typ_policy_accepts_only_that_media_type() {
    let clock = ManualClock::new(NOW);
    let key = SigningKey::generate(Algorithm::HS256, None).unwrap();
    let v = Validation::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .typ(TypPolicy::Exact("JWT".into()))
        .clock(Arc::new(clock))
        .build()
        .unwrap();
    let verifier = Verifier::new(KeySet::new(vec![key.verifying_key().unwrap()]).unwrap(), v);
    let jwt = sign_raw(
        r#"{"alg":"HS256","typ":"application/jwt"}"#,
        &claims_json(""),
        &key,
    );
    assert!(verifier.verify(&jwt).is_ok());
    let at = sign_raw(r#"{"alg":"HS256","typ":"at+jwt"}"#, &claims_json(""), &key);
    assert_eq!(
        verifier.verify(&at).unwrap_err().reason(),
        Reason::InvalidType
    );
}

#[test]
fn a_token_without_kid_needs_exactly_one_key_of_its_algorithm() {
    let clock = ManualClock::new(NOW);
    let a = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let b = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let ed = SigningKey::generate(Algorithm::EdDSA, Some("ed".into())).unwrap();
    let one = KeySet::new(vec![
        a.verifying_key().unwrap(),
        ed.verifying_key().unwrap(),
    ])
    .unwrap();
    let verifier = Verifier::new(one, validation(&clock));
    let token = TokenBuilder::access_token(ISSUER, AUDIENCE)
        .subject("u")
        .sign_at(&a, &clock)
        .unwrap();
    assert!(verifier.verify(&token).is_ok());
    let two = KeySet::new(vec![a.verifying_key().unwrap(), b.verifying_key().unwrap()]).unwrap();
    verifier.set_keys(two);
    assert_eq!(
        verifier.verify(&token).unwrap_err().reason(),
        Reason::UnknownKey
    );
    verifier.set_keys(KeySet::default());
    assert_eq!(
        verifier.verify(&token).unwrap_err().reason(),
        Reason::UnknownKey
    );
}

#[test]
fn a_cached_token_is_returned_again_but_still_expires() {
    let fx = Fixture::new(Algorithm::EdDSA);
    let token = fx.token();
    let first = fx.verifier.verify(&token).unwrap();
    let second = fx.verifier.verify(&token).unwrap();
    assert!(
        Arc::ptr_eq(&first, &second),
        "second verify should come from the cache"
    );
    fx.clock.set(NOW + 930);
    assert_eq!(reason(&fx, &token), Reason::Expired);
    fx.clock.set(NOW - 31);
    assert_eq!(reason(&fx, &token), Reason::IssuedInFuture);
}

#[test]
fn tokens_of_one_key_share_a_header_and_each_keeps_its_own_claims() {
    let fx = Fixture::new(Algorithm::EdDSA);
    let a = fx.verifier.verify(&fx.token()).unwrap();
    let b = fx
        .verifier
        .verify(
            &fx.builder()
                .subject("someone-else")
                .sign_at(&fx.key, &fx.clock)
                .unwrap(),
        )
        .unwrap();
    assert!(std::ptr::eq(a.header(), b.header()), "one header for both");
    assert_ne!(a.claims().sub, b.claims().sub);
    // A token of another key (another kid) gets its own header, not the shared one.
    let other = SigningKey::generate(Algorithm::EdDSA, Some("k2".into())).unwrap();
    fx.verifier.set_keys(
        KeySet::new(vec![
            fx.key.verifying_key().unwrap(),
            other.verifying_key().unwrap(),
        ])
        .unwrap(),
    );
    let c = fx
        .verifier
        .verify(&fx.builder().sign_at(&other, &fx.clock).unwrap())
        .unwrap();
    assert_eq!(c.header().kid.as_deref(), Some("k2"));
    let d = fx.verifier.verify(&fx.token()).unwrap();
    assert_eq!(d.header().kid, a.header().kid);
    assert_eq!(*d.header(), *a.header());
}

#[test]
fn one_claim_reads_as_the_whole_claims_set_says_and_builds_no_map() {
    let fx = Fixture::new(Algorithm::EdDSA);
    let token = fx
        .builder()
        .scope("read")
        .session_id("s1")
        .claim("tenant", "t9")
        .claim("amr", serde_json::json!(["pwd", "otp"]))
        .claim("zz", serde_json::json!({"k": [1, 2]}))
        .claim("email_verified", true)
        .sign_at(&fx.key, &fx.clock)
        .unwrap();
    let verified = fx.verifier.verify(&token).unwrap();
    // The registered claims alone: typed, and no other claim with them.
    let registered = verified.registered_claims();
    assert_eq!(registered.sub.as_deref(), Some("user-1"));
    assert_eq!(registered.sid.as_deref(), Some("s1"));
    assert!(registered.extra.is_empty(), "{registered:?}");
    // Each other claim, as the full set has it; none for a registered or absent name.
    let all = verified.claims();
    assert_eq!(all.extra.len(), 4, "{all:?}");
    for (name, value) in &all.extra {
        assert_eq!(verified.claim(name), Some(value), "{name}");
    }
    assert_eq!(verified.claim("tenant"), Some(&serde_json::json!("t9")));
    assert_eq!(verified.claim("sub"), None);
    assert_eq!(verified.claim("absent"), None);
    assert_eq!(all.sub, registered.sub);
    // A cache hit is the same token, its claims the same.
    let again = fx.verifier.verify(&token).unwrap();
    assert_eq!(again.claims(), all);
    assert_eq!(again.claim("zz"), Some(&serde_json::json!({"k": [1, 2]})));
}

#[test]
fn a_required_claim_outside_the_registered_ones_is_still_required() {
    let fx = Fixture::new(Algorithm::EdDSA);
    let policy = Validation::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .clock(Arc::new(fx.clock.clone()))
        .required_claims(["exp", "sub", "tenant"])
        .build()
        .unwrap();
    let verifier = Verifier::new(
        KeySet::new(vec![fx.key.verifying_key().unwrap()]).unwrap(),
        policy,
    );
    let without = fx.token();
    assert_eq!(
        verifier.verify(&without).unwrap_err().reason(),
        Reason::MissingClaim
    );
    let with = fx
        .builder()
        .claim("tenant", "t9")
        .sign_at(&fx.key, &fx.clock)
        .unwrap();
    assert!(verifier.verify(&with).is_ok());
}

#[test]
fn a_duplicate_other_claim_is_malformed_on_either_parser() {
    let fx = Fixture::new(Algorithm::HS256);
    // The fast parser (flat members) and the full one (a nested value) both refuse.
    for extra in [
        r#","tenant":"a","tenant":"b""#,
        r#","tenant":{"x":1},"tenant":"b""#,
        r#","b":1,"a":2,"c":3,"a":4"#,
    ] {
        let header = r#"{"alg":"HS256","typ":"at+jwt","kid":"k1"}"#;
        let token = sign_raw(header, &claims_json(extra), &fx.key);
        assert_eq!(reason(&fx, &token), Reason::Malformed, "{extra}");
    }
}

#[test]
fn the_cache_keeps_both_its_bounds_on_entries_and_on_bytes() {
    // A byte bound made for large tokens must not let many small ones past the
    // entry bound (the server's 10,000-entry cache once held 73,000 tokens).
    let fx = Fixture::new(Algorithm::EdDSA);
    let fill = |verifier: &Verifier| {
        for i in 0..600 {
            let token = fx
                .builder()
                .subject(format!("user-{i}"))
                .sign_at(&fx.key, &fx.clock)
                .unwrap();
            verifier.verify(&token).unwrap();
        }
        verifier.cache_stats().unwrap()
    };
    let policy = || validation(&fx.clock);
    let keys = || KeySet::new(vec![fx.key.verifying_key().unwrap()]).unwrap();
    let by_count = Verifier::new(keys(), policy())
        .with_cache(50, 100 * 1024 * 1024)
        .with_cache_stats();
    let stats = fill(&by_count);
    assert!(stats.entries <= 50, "{stats:?}");
    assert!(
        stats.entries >= 25,
        "the cache should still hold tokens: {stats:?}"
    );
    // The bytes bound: 40 KB holds at most 40 entries of CACHE_ENTRY_OVERHEAD bytes.
    let by_bytes = Verifier::new(keys(), policy())
        .with_cache(10_000, 40_000)
        .with_cache_stats();
    let stats = fill(&by_bytes);
    assert!(
        stats.entries <= 40_000 / portcullis::jwt::CACHE_ENTRY_OVERHEAD,
        "{stats:?}"
    );
    assert!(stats.bytes <= 40_000, "{stats:?}");
    assert!(stats.entries > 0, "{stats:?}");
}

#[test]
fn changing_the_key_set_flushes_the_cache() {
    let fx = Fixture::new(Algorithm::EdDSA);
    let token = fx.token();
    fx.verifier.verify(&token).unwrap();
    let other = SigningKey::generate(Algorithm::EdDSA, Some("k2".into())).unwrap();
    fx.verifier
        .set_keys(KeySet::new(vec![other.verifying_key().unwrap()]).unwrap());
    assert_eq!(reason(&fx, &token), Reason::UnknownKey);
}

#[test]
fn failures_are_not_cached_and_a_near_copy_is_not_a_hit() {
    let fx = Fixture::new(Algorithm::HS256);
    let token = fx.token();
    fx.verifier.verify(&token).unwrap();
    // Same bytes but one: a different cache key, verified afresh, and refused.
    let mut bytes = token.clone().into_bytes();
    let i = bytes.len() - 5;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let near = String::from_utf8(bytes).unwrap();
    assert_eq!(reason(&fx, &near), Reason::InvalidSignature);
    assert_eq!(reason(&fx, &near), Reason::InvalidSignature);
    // A change far from the end (the signature's tail unchanged): another digest, so
    // no hit, and refused.
    let mut bytes = token.clone().into_bytes();
    let i = bytes.len() - 30;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let same_tail = String::from_utf8(bytes).unwrap();
    assert_eq!(reason(&fx, &same_tail), Reason::InvalidSignature);
    // A failure is not remembered: a token not valid yet verifies once it is.
    let now = portcullis::clock::Clock::now(&fx.clock);
    let early = fx
        .builder()
        .not_before(now + 120)
        .sign_at(&fx.key, &fx.clock)
        .unwrap();
    assert_eq!(reason(&fx, &early), Reason::NotYetValid);
    fx.clock.advance(121);
    assert!(fx.verifier.verify(&early).is_ok());
}

#[test]
fn an_oversized_token_is_refused_as_too_large() {
    let fx = Fixture::new(Algorithm::HS256);
    let big = fx
        .builder()
        .claim("pad", "x".repeat(9000))
        .sign_at(&fx.key, &fx.clock)
        .unwrap();
    assert_eq!(reason(&fx, &big), Reason::TooLarge);
}

#[test]
fn the_maximum_token_size_setting_is_bounded() {
    use portcullis::jwt::PolicyError;
    let b = || Validation::builder().issuer(ISSUER).audience(AUDIENCE);
    assert_eq!(
        b().max_token_size(255).build().unwrap_err(),
        PolicyError::TokenSize(255)
    );
    assert_eq!(
        b().max_token_size(65537).build().unwrap_err(),
        PolicyError::TokenSize(65537)
    );
    assert!(b().max_token_size(256).build().is_ok());
    assert!(b().max_token_size(65536).build().is_ok());
}

/// Who is acting is read from the credential by RFC 9068's rule, not guessed by each
/// application: no `client_id` is a person, `client_id` with another `sub` is an
/// application acting for that person, `client_id` equal to `sub` is a client alone.
#[test]
fn the_actor_of_a_token_is_a_person_an_application_for_a_person_or_a_client() {
    use portcullis::strategy::{Actor, Identity};
    let fx = Fixture::new(Algorithm::EdDSA);
    let identity = |builder: portcullis::jwt::TokenBuilder| {
        let token = builder.sign_at(&fx.key, &fx.clock).unwrap();
        Identity::from_token(fx.verifier.verify(&token).unwrap(), "bearer")
    };
    assert_eq!(
        identity(fx.builder()).actor(),
        Actor::Person { subject: "user-1" }
    );
    assert_eq!(
        identity(fx.builder().claim("client_id", "app-7")).actor(),
        Actor::Delegated {
            subject: "user-1",
            client_id: "app-7"
        }
    );
    assert_eq!(
        identity(fx.builder().subject("app-7").claim("client_id", "app-7")).actor(),
        Actor::Client { client_id: "app-7" }
    );
    // A `client_id` that is not a string names no client, but a client is involved:
    // never the person acting alone.
    assert_eq!(
        identity(fx.builder().claim("client_id", 7)).actor(),
        Actor::Delegated {
            subject: "user-1",
            client_id: ""
        }
    );
    // Established without a token (an API key, a session): the subject itself.
    assert_eq!(
        Identity::new("svc", vec![], "api_key").actor(),
        Actor::Person { subject: "svc" }
    );
}
