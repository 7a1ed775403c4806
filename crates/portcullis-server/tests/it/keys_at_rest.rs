//! Signing keys at rest, as someone who reads the database file or a backup would try
//! them: sealed in both stores, useless without the key-encryption key, a wrong key a
//! clear start-up error, old plaintext keys sealed on upgrade, files readable by their
//! owner only.

use portcullis::keys::{Algorithm, SigningKey};
use portcullis_store::StoredKey;

use crate::support::{TEST_KEK, TestServer, config, on_each_store, sqlite_db, still_clock};

/// Every stored private key, as the raw column text.
async fn raw_keys(url: &str) -> Vec<(String, String)> {
    let sql = "SELECT kid, private_jwk FROM signing_keys ORDER BY created_at";
    if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
    }
}

on_each_store! {
    async fn private_keys_are_sealed_in_the_database(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        let rows = raw_keys(&url).await;
        assert_eq!(rows.len(), 1);
        for (kid, material) in &rows {
            assert!(material.starts_with("enc:v2:"), "{kid}: {material}");
            assert!(!material.contains("\"d\""), "no private member in the clear");
        }
        // And the server signs with it.
        let tokens = server.account("alice").await;
        assert_eq!(server.me(tokens["access_token"].as_str().unwrap()).await.status(), 200);
        server.stop().await;
    }
}

on_each_store! {
    async fn a_wrong_key_encryption_key_stops_the_start_with_a_clear_message(url, dir) {
        let mut c = config(&url);
        c.kek.inline = Some(zeroize::Zeroizing::new(TEST_KEK.to_owned()));
        let server = TestServer::start(c.clone()).await.keep_dir(dir);
        let dir = server.stop().await;
        let before = raw_keys(&url).await;
        let right = c.clone();
        let (_, other) = portcullis_server::kek::Kek::generate("test").unwrap();
        c.kek.inline = Some(other);
        let err = portcullis_server::startup::start(c).await.unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains("which this instance does not hold")
                && message.contains("PORTCULLIS_KEY_ENCRYPTION_KEY"),
            "{message}"
        );
        // Nothing was replaced or added, and the right key still opens them.
        assert_eq!(raw_keys(&url).await, before);
        let server = TestServer::start(right).await;
        server.stop().await;
        drop(dir);
    }
}

on_each_store! {
    async fn plaintext_keys_from_before_are_sealed_on_the_first_start(url, dir) {
        let store = portcullis_store::open(&url).await.unwrap();
        let key = SigningKey::generate(Algorithm::EdDSA, Some("old-plain".into())).unwrap();
        store
            .add_signing_key(&StoredKey {
                kid: "old-plain".into(),
                alg: "EdDSA".into(),
                private_jwk: key.to_jwk().unwrap().to_json(),
                created_at: 1_700_000_000,
                activates_at: 1_700_000_000,
                predecessor: None,
            }, "")
            .await
            .unwrap();
        assert!(raw_keys(&url).await[0].1.contains("\"d\""), "plaintext before");
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        let rows = raw_keys(&url).await;
        assert_eq!(rows[0].0, "old-plain");
        assert!(rows[0].1.starts_with("enc:v2:"), "sealed after");
        // Still the same key: tokens carry its kid.
        let tokens = server.account("alice").await;
        let header = portcullis::jwt::jws::insecure_decode(tokens["access_token"].as_str().unwrap(), 8192)
            .unwrap()
            .0;
        assert_eq!(header["kid"], "old-plain");
        server.stop().await;
    }
}

#[tokio::test]
async fn the_embedded_database_and_its_key_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let (url, dir) = sqlite_db();
    let server = TestServer::start(config(&url)).await;
    server.account("alice").await;
    let folder = dir.as_ref().unwrap().path().to_owned();
    for name in ["test.db", "test.db-wal", "test.db-shm", "test.db.kek"] {
        let mode = std::fs::metadata(folder.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{name}: {mode:o}");
    }
    server.stop().await;
    // Without its key-encryption key, the database does not start, and says why.
    std::fs::rename(folder.join("test.db.kek"), folder.join("elsewhere.kek")).unwrap();
    let err = portcullis_server::startup::start(config(&url))
        .await
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("test.db.kek") && message.contains("key_encryption_key_file"),
        "{message}"
    );
    // Pointed at it, it starts.
    let mut c = config(&url);
    c.kek.file = Some(folder.join("elsewhere.kek"));
    let server = TestServer::start(c).await;
    assert_eq!(
        server
            .login("alice", "correct horse battery")
            .await
            .status(),
        200
    );
    server.stop().await;
    drop(dir);
}

#[tokio::test]
async fn rewrap_moves_the_keys_to_a_new_key_encryption_key() {
    use crate::factors::{enrolled, totp};
    let (url, dir) = sqlite_db();
    let clock = crate::support::still_clock();
    let server = TestServer::start_with(config(&url), clock.clone()).await;
    let before = server.account("alice").await;
    // An authenticator secret is sealed too: the database file holds no trace of it.
    let (secret, _) = enrolled(&server, &clock, "tove").await;
    server.stop().await;
    let sealed_secret = || async {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let (sealed,): (String,) = sqlx::query_as("SELECT sealed_secret FROM totp_secrets")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        sealed
    };
    let sealed = sealed_secret().await;
    let hex: String = base32_to_hex(&secret);
    assert!(sealed.starts_with("enc:v2:"), "{sealed}");
    assert!(
        !sealed.contains(&secret) && !sealed.to_lowercase().contains(&hex),
        "{sealed}"
    );
    let file = std::fs::read(url.trim_start_matches("sqlite://")).unwrap();
    let text = String::from_utf8_lossy(&file);
    assert!(
        !text.contains(&secret) && !text.contains(&hex),
        "the secret in the file"
    );
    let folder = dir.as_ref().unwrap().path().to_owned();
    // An upstream provider's client secret is sealed too, and moves with the rest.
    let provider_secret = folder.join("corp-secret");
    std::fs::write(&provider_secret, "the-provider-secret-0123456789").unwrap();
    let (ok, _, err) = crate::upstream::portcullis(
        &url,
        &[
            "providers",
            "add",
            "corp",
            "--issuer",
            "https://id.example.com",
            "--client-id",
            "portcullis",
            "--client-secret-file",
            provider_secret.to_str().unwrap(),
        ],
    )
    .await;
    assert!(ok, "{err}");
    let sealed_provider = || async {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let (sealed,): (String,) = sqlx::query_as("SELECT sealed_secret FROM providers")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        sealed
    };
    let before_rewrap = sealed_provider().await;
    assert!(
        before_rewrap.starts_with("enc:v2:") && !before_rewrap.contains("the-provider-secret"),
        "{before_rewrap}"
    );
    let new = folder.join("new.kek");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["keys", "rewrap", "--database-url", &url, "--to"])
        .arg(&new)
        .arg("--generate")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(
            "sealed 1 signing keys, 1 authenticator secrets, 0 webhook secrets and 1 provider secrets"
        ),
        "{said}"
    );
    let resealed = sealed_secret().await;
    assert_ne!(resealed, sealed, "re-sealed under the new key");
    // Under the same new key as the authenticator secret (`enc:v2:ID:`).
    let new_prefix = resealed
        .splitn(4, ':')
        .take(3)
        .collect::<Vec<_>>()
        .join(":");
    assert!(
        sealed_provider()
            .await
            .starts_with(&format!("{new_prefix}:"))
    );
    // The old key opens nothing now; the new one opens everything.
    let err = portcullis_server::startup::start(config(&url))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("does not hold"), "{err:#}");
    let mut c = config(&url);
    c.kek.file = Some(new);
    let server = TestServer::start_with(c, clock.clone()).await;
    assert_eq!(
        server
            .me(before["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    // The app's codes still work: the secret opens under the new key.
    let r = server.login("tove", "correct horse battery").await;
    let token = r.json::<serde_json::Value>().await.unwrap()["mfa_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let now = portcullis::clock::Clock::now(clock.as_ref());
    let r = server
        .post(
            "/auth/login/mfa",
            serde_json::json!({ "mfa_token": token, "method": "totp", "code": totp(&secret, now) }),
        )
        .await;
    assert_eq!(r.status(), 200);
    server.stop().await;
    drop(dir);
}

/// The bytes of a base32 secret, in lower-case hex (how the server seals it).
fn base32_to_hex(secret: &str) -> String {
    crate::factors::base32(secret)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

on_each_store! {
    /// Keys sealed before KEK ids (`enc:v1:`) open as before and get their KEK's id on
    /// the next start.
    async fn keys_sealed_before_kek_ids_get_one_on_the_next_start(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        let before = server.account("alice").await;
        let dir = server.stop().await;
        let (kid, material) = raw_keys(&url).await.remove(0);
        let body = material.splitn(4, ':').nth(3).unwrap().to_owned();
        let sql = "UPDATE signing_keys SET private_jwk = $1 WHERE kid = $2";
        let v1 = format!("enc:v1:{body}");
        if url.starts_with("sqlite") {
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            sqlx::query(sql).bind(&v1).bind(&kid).execute(&pool).await.unwrap();
            pool.close().await;
        } else {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            sqlx::query(sql).bind(&v1).bind(&kid).execute(&pool).await.unwrap();
        }
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        assert_eq!(server.me(before["access_token"].as_str().unwrap()).await.status(), 200);
        let (_, after) = raw_keys(&url).await.remove(0);
        assert!(after.starts_with("enc:v2:"), "{after}");
        assert_ne!(after, material, "sealed afresh");
        server.stop().await;
    }
}

on_each_store! {
    /// Issue 28, finding 1: `keys rewrap` while an instance still ran on the old
    /// key-encryption key let that instance seal its next automatic key under the old
    /// one; the database then held keys under two KEKs and no instance started on it.
    /// Now the store refuses a key under any KEK but the one the others are under, and
    /// an instance holding the new KEK with the old one as previous goes on rotating
    /// across the rewrap without a restart.
    async fn a_rewrap_racing_running_instances_leaves_every_key_under_one_kek(url, dir) {
        let (new_kek, new_text) = portcullis_server::kek::Kek::generate("test").unwrap();
        let mut old_only = config(&url);
        old_only.kek = portcullis_server::kek::KekSetting {
            inline: Some(zeroize::Zeroizing::new(TEST_KEK.to_owned())),
            ..Default::default()
        };
        // Rotating every 62 s, each key published 2 s before it signs.
        old_only.key_rotation_interval = std::time::Duration::from_secs(62);
        old_only.key_publication_delay = std::time::Duration::from_secs(2);
        // The instance restarted ahead of the change: the new KEK, the old as previous.
        let mut both = old_only.clone();
        both.kek = portcullis_server::kek::KekSetting {
            inline: Some(new_text.clone()),
            previous_inline: Some(zeroize::Zeroizing::new(TEST_KEK.to_owned())),
            ..Default::default()
        };
        let clock = still_clock();
        let old_instance = TestServer::start_with(old_only.clone(), clock.clone()).await.keep_dir(dir);
        let both_instance = TestServer::start_with(both.clone(), clock.clone()).await;
        let before = old_instance.account("alice").await;
        let prefix = |kek: &portcullis_server::kek::Kek| kek.prefix();
        let old_kek = portcullis_server::kek::Kek::from_text(TEST_KEK, "test").unwrap();
        assert!(raw_keys(&url).await.iter().all(|(_, m)| m.starts_with(&prefix(&old_kek))));

        // The operator moves the keys to the new KEK while both run.
        let store = portcullis_store::open(&url).await.unwrap();
        let held = portcullis_server::kek::Keks::new(
            portcullis_server::kek::Kek::from_text(TEST_KEK, "test").unwrap(),
            None,
        );
        let moved = portcullis_server::keyring::rewrap(store.as_ref(), &held, &new_kek).await.unwrap();
        assert_eq!(moved, 1);

        // Automatic rotation comes due on both instances: the one holding the new KEK
        // adds the key under it; the one on the old KEK adds nothing.
        clock.advance(63);
        crate::support::eventually("the instance holding the new KEK rotates", || async {
            raw_keys(&url).await.len() == 2
        })
        .await;
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        let rows = raw_keys(&url).await;
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(
            rows.iter().all(|(_, m)| m.starts_with(&prefix(&new_kek))),
            "every key under the new KEK: {rows:?}"
        );

        // Both go on serving (the old one signs with the keys it holds).
        let again = old_instance.account("bob").await;
        assert_eq!(old_instance.me(again["access_token"].as_str().unwrap()).await.status(), 200);
        assert_eq!(both_instance.me(before["access_token"].as_str().unwrap()).await.status(), 200);
        let dir = old_instance.stop().await;
        both_instance.stop().await;

        // An instance with the new KEK alone starts on the database and opens every key.
        let mut new_only = old_only.clone();
        new_only.kek = portcullis_server::kek::KekSetting {
            inline: Some(new_text),
            ..Default::default()
        };
        let fresh = TestServer::start_with(new_only, clock.clone()).await;
        assert_eq!(fresh.me(again["access_token"].as_str().unwrap()).await.status(), 200);
        fresh.stop().await;
        drop(dir);
    }
}
