use super::*;
use crate::clock::ManualClock;
use crate::jwt::Validation;
use crate::keys::{Algorithm, SigningKey};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Fake {
    calls: AtomicUsize,
    body: Mutex<Result<String, String>>,
    max_age: Option<Duration>,
}

impl JwksFetcher for Fake {
    fn fetch<'a>(&'a self, _url: &'a str) -> FetchFuture<'a> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            let body = self.body.lock().unwrap().clone()?;
            Ok(Fetched {
                body,
                max_age: self.max_age,
            })
        })
    }
}

fn setup(
    max_age: Option<Duration>,
) -> (
    Arc<Fake>,
    RemoteJwks,
    Arc<Verifier>,
    ManualClock,
    SigningKey,
) {
    let key = SigningKey::generate(Algorithm::EdDSA, Some("k1".into())).unwrap();
    let jwks = KeySet::new(vec![key.verifying_key().unwrap()])
        .unwrap()
        .to_public_jwks()
        .unwrap()
        .to_json();
    let fake = Arc::new(Fake {
        calls: AtomicUsize::new(0),
        body: Mutex::new(Ok(jwks)),
        max_age,
    });
    let clock = ManualClock::new(1_000_000);
    let verifier = Arc::new(Verifier::new(
        KeySet::default(),
        Validation::builder()
            .issuer("i")
            .audience("a")
            .build()
            .unwrap(),
    ));
    let remote = RemoteJwks::new(
        "https://i/jwks",
        fake.clone(),
        verifier.clone(),
        Arc::new(clock.clone()),
    );
    (fake, remote, verifier, clock, key)
}

/// An issuer that leaves `alg` off its RSA keys (some do): the key is taken as
/// RS256, and only RS256.
#[tokio::test]
async fn an_rsa_key_without_alg_is_taken_as_rs256_only() {
    let key = SigningKey::generate(Algorithm::RS256, Some("r1".into())).unwrap();
    let mut jwk = key.verifying_key().unwrap().to_jwk().unwrap();
    jwk.alg = None;
    let body = format!(r#"{{"keys":[{}]}}"#, jwk.to_json());
    let fake = Arc::new(Fake {
        calls: AtomicUsize::new(0),
        body: Mutex::new(Ok(body)),
        max_age: None,
    });
    let clock = ManualClock::new(1_000_000);
    let verifier = Arc::new(Verifier::new(
        KeySet::default(),
        Validation::builder()
            .issuer("i")
            .audience("a")
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap(),
    ));
    let remote = RemoteJwks::new("https://i/jwks", fake, verifier.clone(), Arc::new(clock));
    remote.refresh_if_stale().await.unwrap();
    let token = crate::jwt::TokenBuilder::access_token("i", "a")
        .subject("s")
        .issued_at(1_000_000)
        .sign(&key)
        .unwrap();
    assert!(verifier.verify(&token).is_ok());
    // The same RSA key under PS256: refused, not tried.
    let ps = SigningKey::from_pkcs8_pem(
        &key.to_pkcs8_pem().unwrap(),
        Some(Algorithm::PS256),
        Some("r1".into()),
    )
    .unwrap();
    let token = crate::jwt::TokenBuilder::access_token("i", "a")
        .subject("s")
        .issued_at(1_000_000)
        .sign(&ps)
        .unwrap();
    assert!(verifier.verify(&token).is_err());
}

/// A symmetric key in a published key set is a secret anyone can read: it is
/// dropped, and a token signed with it is refused.
#[tokio::test]
async fn a_published_symmetric_key_is_ignored() {
    let (fake, remote, verifier, _clock, key) = setup(None);
    let secret =
        SigningKey::from_hmac_secret(Algorithm::HS256, &[7; 32], Some("h1".into())).unwrap();
    let body = format!(
        r#"{{"keys":[{},{}]}}"#,
        key.verifying_key().unwrap().to_jwk().unwrap().to_json(),
        secret.to_jwk().unwrap().to_json()
    );
    *fake.body.lock().unwrap() = Ok(body);
    remote.refresh_if_stale().await.unwrap();
    assert_eq!(verifier.with_keys(|k| k.len()), 1);
    let forged = crate::jwt::TokenBuilder::access_token("i", "a")
        .subject("s")
        .sign(&secret)
        .unwrap();
    assert!(verifier.verify(&forged).is_err());
}

struct Docs(Vec<(&'static str, String)>);

impl JwksFetcher for Docs {
    fn fetch<'a>(&'a self, url: &'a str) -> FetchFuture<'a> {
        let found = self
            .0
            .iter()
            .find(|(u, _)| *u == url)
            .map(|(_, b)| b.clone());
        Box::pin(std::future::ready(
            found
                .map(|body| Fetched {
                    body,
                    max_age: None,
                })
                .ok_or_else(|| "404".to_owned()),
        ))
    }
}

#[tokio::test]
async fn discovery_checks_the_issuer_and_the_jwks_uri() {
    let oidc = "https://i.example/.well-known/openid-configuration";
    let rfc8414 = "https://i.example/.well-known/oauth-authorization-server";
    let doc = |iss: &str, uri: &str| format!(r#"{{"issuer":"{iss}","jwks_uri":"{uri}"}}"#);
    let ok = Docs(vec![(
        oidc,
        doc("https://i.example", "https://i.example/jwks"),
    )]);
    assert_eq!(
        discover("https://i.example", &ok).await.unwrap().jwks_uri,
        "https://i.example/jwks"
    );
    let fallback = Docs(vec![(
        rfc8414,
        doc("https://i.example", "https://keys.example/j"),
    )]);
    assert_eq!(
        discover("https://i.example", &fallback)
            .await
            .unwrap()
            .jwks_uri,
        "https://keys.example/j"
    );
    let impostor = Docs(vec![(
        oidc,
        doc("https://evil.example", "https://evil.example/jwks"),
    )]);
    assert!(discover("https://i.example", &impostor).await.is_err());
    let plain = Docs(vec![(
        oidc,
        doc("https://i.example", "http://elsewhere/jwks"),
    )]);
    assert!(discover("https://i.example", &plain).await.is_err());
    let local = Docs(vec![(
        "http://127.0.0.1:8080/.well-known/openid-configuration",
        doc(
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/.well-known/jwks.json",
        ),
    )]);
    assert!(
        discover("http://127.0.0.1:8080", &local).await.is_ok(),
        "same origin over http is fine"
    );
    let none = discover("https://i.example", &Docs(vec![]))
        .await
        .unwrap_err();
    assert_eq!(
        none.tried,
        [oidc, rfc8414],
        "the error names the URLs tried"
    );
    assert!(none.to_string().contains(oidc), "{none}");
    let token_elsewhere = Docs(vec![(
        oidc,
        r#"{"issuer":"https://i.example","jwks_uri":"https://i.example/jwks","token_endpoint":"http://evil.example/token"}"#.to_owned(),
    )]);
    assert!(
        discover("https://i.example", &token_elsewhere)
            .await
            .is_err()
    );
    // Plain http is for this machine only.
    let remote_http = Docs(vec![(
        "http://auth.internal/.well-known/openid-configuration",
        doc("http://auth.internal", "http://auth.internal/jwks"),
    )]);
    let refused = discover("http://auth.internal", &remote_http)
        .await
        .unwrap_err();
    assert!(refused.reason.contains("https"), "{refused}");
    for ok in [
        "https://a.example",
        "http://localhost:8080",
        "http://127.0.0.1",
        "http://[::1]:1",
    ] {
        assert!(is_https_or_loopback(ok), "{ok}");
    }
    for bad in [
        "http://10.0.0.1",
        "http://auth.internal",
        "ftp://a.example",
        "not a url",
    ] {
        assert!(!is_https_or_loopback(bad), "{bad}");
    }
}

#[test]
fn max_age_is_read_from_cache_control() {
    assert_eq!(
        max_age("public, max-age=300"),
        Some(Duration::from_secs(300))
    );
    assert_eq!(max_age("no-store"), Some(Duration::ZERO));
    assert_eq!(max_age("public"), None);
    assert_eq!(max_age("Max-Age=\"60\""), Some(Duration::from_secs(60)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_unknown_kids_cause_one_fetch() {
    let (fake, remote, verifier, _clock, _key) = setup(None);
    let remote = Arc::new(remote);
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let remote = remote.clone();
            tokio::spawn(async move { remote.refresh_for_unknown_kid().await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    assert_eq!(verifier.with_keys(KeySet::len), 1);
}

/// Issue 10: the cooldown counted from any fetch, start-up included, so a key
/// published just after start was refused for up to a cooldown.
#[tokio::test]
async fn the_unknown_kid_cooldown_counts_from_unknown_kid_fetches_only() {
    let (fake, remote, _verifier, clock, _key) = setup(None);
    remote.refresh_if_stale().await.unwrap();
    clock.advance(1);
    assert!(
        remote.refresh_for_unknown_kid().await,
        "not delayed by start-up"
    );
    assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
    clock.advance(29);
    assert!(
        !remote.refresh_for_unknown_kid().await,
        "within its own cooldown"
    );
    clock.advance(1);
    assert!(remote.refresh_for_unknown_kid().await);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 3);
}

/// Issue 28, finding 3: a made-up kid arms the cooldown; a kid the issuer announced
/// is fetched past it, once (a kid announced but never published cannot make every
/// request fetch), and not at all when another request fetched it meanwhile.
#[tokio::test]
async fn an_announced_kid_is_fetched_past_the_cooldown_once() {
    let (fake, remote, verifier, clock, _key) = setup(None);
    assert!(
        remote.refresh_for_unknown_kid().await,
        "the made-up kid's fetch"
    );
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    clock.advance(1);
    assert!(!remote.refresh_for_unknown_kid().await, "cooling down");
    assert!(
        remote.refresh_for_announced_kid("k2").await,
        "announced: fetched within the cooldown"
    );
    assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
    assert!(
        !remote.refresh_for_announced_kid("k2").await,
        "a second time, behind the cooldown like any unknown kid"
    );
    assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
    // A kid already held (fetched by another request) costs no fetch.
    assert_eq!(verifier.with_keys(KeySet::len), 1);
    assert!(remote.refresh_for_announced_kid("k1").await);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn max_age_is_followed_between_the_floor_and_the_ceiling() {
    let (fake, remote, _verifier, clock, _key) = setup(Some(Duration::from_secs(300)));
    remote.refresh_if_stale().await.unwrap();
    clock.advance(299);
    remote.refresh_if_stale().await.unwrap();
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1, "fresh for 300 s");
    clock.advance(1);
    remote.refresh_if_stale().await.unwrap();
    assert_eq!(fake.calls.load(Ordering::SeqCst), 2, "stale at 300 s");
    // Two days asked for: a day at most.
    let (fake, remote, _verifier, clock, _key) = setup(Some(Duration::from_secs(2 * 86_400)));
    remote.refresh_if_stale().await.unwrap();
    clock.advance(86_399);
    remote.refresh_if_stale().await.unwrap();
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    clock.advance(1);
    remote.refresh_if_stale().await.unwrap();
    assert_eq!(fake.calls.load(Ordering::SeqCst), 2, "the ceiling holds");
}

#[tokio::test]
async fn the_cache_honours_max_age_within_its_bounds_and_keeps_keys_when_the_issuer_is_down() {
    let (fake, remote, verifier, clock, _key) = setup(Some(Duration::from_secs(5)));
    remote.refresh_if_stale().await.unwrap();
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    clock.advance(30); // max-age 5 s, but the floor is 60 s
    remote.refresh_if_stale().await.unwrap();
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    clock.advance(31);
    *fake.body.lock().unwrap() = Err("connection refused".into());
    assert!(remote.refresh_if_stale().await.is_err());
    assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        verifier.with_keys(KeySet::len),
        1,
        "the last good keys keep serving"
    );
    // A failure counts towards the cooldown: no hammering of a down issuer.
    assert!(remote.refresh_if_stale().await.is_ok());
    assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
}
