//! Signing keys moving through their states on a running server, with the clock moved
//! by the test: next (published, not signing), current, retired (verifying until its
//! last token expired), gone — on two instances at once, with no restart — and the
//! automatic rotation, decided once for all instances.

use std::time::Duration;

use portcullis::clock::Clock as _;
use portcullis::jwt::TokenBuilder;
use portcullis::keys::{Jwk, SigningKey};
use serde_json::Value;

use crate::support::{TestServer, config, eventually, on_each_store, still_clock};

async fn kids_published(server: &TestServer) -> Vec<String> {
    let jwks: Value = server
        .client
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// The kid a fresh login's access token is signed with.
async fn signing_kid(server: &TestServer, name: &str) -> String {
    let tokens: Value = server
        .login(name, "correct horse battery")
        .await
        .json()
        .await
        .unwrap();
    kid_of(tokens["access_token"].as_str().unwrap())
}

fn kid_of(token: &str) -> String {
    let (header, _) = portcullis::jwt::jws::insecure_decode(token, 8192).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

/// The private key of `kid`, as an attacker holding the database and its KEK would have.
async fn private_key(url: &str, kid: &str) -> SigningKey {
    let c = config(url);
    let kek = portcullis_server::kek::resolve(&c.kek, url, true)
        .unwrap()
        .0;
    let store = portcullis_store::open(url).await.unwrap();
    let stored = store
        .signing_keys()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.kid == kid)
        .unwrap();
    let jwk = kek
        .open(&stored.kid, &stored.alg, &stored.private_jwk)
        .unwrap();
    SigningKey::from_jwk(&Jwk::from_json(&jwk).unwrap()).unwrap()
}

on_each_store! {
    async fn keys_move_from_next_to_gone_on_time_on_every_instance(url, dir) {
        let clock = still_clock();
        let a = TestServer::start_with(config(&url), clock.clone()).await.keep_dir(dir);
        let b = TestServer::start_with(config(&url), clock.clone()).await;
        let old = a.account("alice").await;
        let k1 = kid_of(old["access_token"].as_str().unwrap());

        // A rotation, as an operator runs it (the real clock is the test clock's start).
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
        cmd.args(["keys", "rotate", "--database-url", &url]);
        if url.starts_with("postgres") {
            cmd.env("PORTCULLIS_KEY_ENCRYPTION_KEY", crate::support::TEST_KEK);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let k2 = String::from_utf8(out.stdout).unwrap().trim().to_owned();

        let store = portcullis_store::open(&url).await.unwrap();
        let signs_from = store.signing_keys().await.unwrap()[1].activates_at;
        assert!(signs_from >= clock.now() + 300, "published well before it signs");

        // Next: published on both instances at once, not signing.
        let k2r = &k2;
        for s in [&a, &b] {
            eventually("the next key is published", move || async move {
                kids_published(s).await.contains(k2r)
            })
            .await;
            assert_eq!(signing_kid(s, "alice").await, k1, "it does not sign yet");
        }

        // Current once its publication delay has passed: both sign with it, no restart.
        clock.set(signs_from);
        for s in [&a, &b] {
            eventually("the next key starts signing", move || async move {
                signing_kid(s, "alice").await == *k2r
            })
            .await;
        }
        // Retired: the old key still verifies its tokens, and is still published.
        let forger = private_key(&url, &k1).await;
        let forged = || {
            TokenBuilder::access_token("http://portcullis.test", "http://portcullis.test")
                .subject("someone")
                .session_id("forged-sid")
                .expires_in(Duration::from_secs(600))
                .sign_at(&forger, clock.as_ref())
                .unwrap()
        };
        for s in [&a, &b] {
            assert_eq!(s.me(old["access_token"].as_str().unwrap()).await.status(), 200);
            assert!(kids_published(s).await.contains(&k1));
            // Within its window a retired key still verifies whatever it signs (that is
            // what the window is for) — so the refusal below is the key being gone.
            assert_eq!(s.me(&forged()).await.status(), 200);
        }
        // Gone once its last token has expired (15 min + 60 s after it stopped signing):
        // out of the JWKS, and a token it signs now is refused everywhere.
        clock.set(signs_from + 900 + 60 + 2);
        let k1r = &k1;
        for s in [&a, &b] {
            eventually("the retired key leaves the JWKS", move || async move {
                !kids_published(s).await.contains(k1r)
            })
            .await;
            assert_eq!(s.me(&forged()).await.status(), 401, "a new token from a gone key");
        }
        b.stop().await;
    }
}

on_each_store! {
    async fn automatic_rotation_adds_one_key_per_interval_across_instances(url, dir) {
        let clock = still_clock();
        let mut c = config(&url);
        c.key_rotation_interval = Duration::from_secs(3600);
        let a = TestServer::start_with(c.clone(), clock.clone()).await.keep_dir(dir);
        let b = TestServer::start_with(c, clock.clone()).await;
        a.account("alice").await;
        let k1 = signing_kid(&a, "alice").await;
        // Due: the successor must be published a publication delay before the hour.
        clock.advance(3600 - 330 + 1);
        let (ra, rb) = (&a, &b);
        eventually("an automatic rotation publishes a key", move || async move {
            kids_published(ra).await.len() == 2 && kids_published(rb).await.len() == 2
        })
        .await;
        // Both instances were due at once; the store let one of them add the key.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let store = portcullis_store::open(&url).await.unwrap();
        let keys = store.signing_keys().await.unwrap();
        assert_eq!(keys.len(), 2, "one key per interval");
        assert_eq!(keys[1].predecessor.as_deref(), Some(k1.as_str()));
        assert_eq!(signing_kid(&b, "alice").await, k1, "published, not signing yet");
        clock.set(keys[1].activates_at);
        let k2 = &keys[1].kid;
        for s in [&a, &b] {
            eventually("the new key signs on the hour", move || async move {
                signing_kid(s, "alice").await == *k2
            })
            .await;
        }
        b.stop().await;
    }
}
