//! One conformance suite, run against SQLite always and PostgreSQL whenever
//! `PORTCULLIS_TEST_POSTGRES` is set (each test in a database of its own).

// Helpers outside #[test] functions unwrap too: a panic there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use portcullis::session::{NewSession, SessionHash, SessionRecord};
use portcullis::throttle::{Admission, Attempt, Budget, Lane, Settlement};
use portcullis_store::{
    AuthCode, CeremonyKind, Client, ClientChange, CodeExchange, Completion, Error, EventKind,
    Exchanged, FamilyLogin, FamilyStart, NewCeremony, NewChallenge, NewPasskey, NewUser, Retention,
    Rotation, RotationPolicy, SecondFactor, Store, StoredKey, TokenHash,
};

struct Db {
    store: Arc<dyn Store>,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    /// A second store on the same database: another instance.
    async fn another_instance(&self) -> Arc<dyn Store> {
        portcullis_store::open(&self.url).await.unwrap()
    }

    /// One value read straight from the database, as text.
    async fn read(&self, sql: &str) -> Option<Vec<u8>> {
        if self.url.starts_with("sqlite") {
            let pool = sqlx::SqlitePool::connect(&self.url).await.unwrap();
            let v: Option<(Option<Vec<u8>>,)> =
                sqlx::query_as(sql).fetch_optional(&pool).await.unwrap();
            v.and_then(|(v,)| v)
        } else {
            let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
            let v: Option<(Option<Vec<u8>>,)> =
                sqlx::query_as(sql).fetch_optional(&pool).await.unwrap();
            v.and_then(|(v,)| v)
        }
    }
}

/// A fresh SQLite database in a folder of its own.
async fn sqlite() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    Db {
        store: portcullis_store::open(&url).await.unwrap(),
        url,
        _dir: Some(dir),
    }
}

/// A fresh PostgreSQL database, when `PORTCULLIS_TEST_POSTGRES` is set.
async fn postgres() -> Option<Db> {
    let admin = std::env::var("PORTCULLIS_TEST_POSTGRES").ok()?;
    let name = format!("pc_test_store_{}", std::process::id()) + &unique();
    let pool = sqlx::PgPool::connect(&admin)
        .await
        .expect("PORTCULLIS_TEST_POSTGRES reachable");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (base, _) = admin.rsplit_once('/').unwrap();
    let url = format!("{base}/{name}");
    Some(Db {
        store: portcullis_store::open(&url).await.unwrap(),
        url,
        _dir: None,
    })
}

/// Drops a test database once its test passed (its stores are gone by then; any
/// connection left open is ended).
async fn drop_postgres(url: &str) {
    let admin = std::env::var("PORTCULLIS_TEST_POSTGRES").unwrap();
    let (_, name) = url.rsplit_once('/').unwrap();
    let pool = sqlx::PgPool::connect(&admin).await.unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

/// One conformance test, run as two named tests: `NAME::sqlite` and `NAME::postgres`
/// (which says it skipped when `PORTCULLIS_TEST_POSTGRES` is not set).
macro_rules! conformance {
    ($(#[$meta:meta])* async fn $name:ident($db:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($db: Db) $body

            #[tokio::test]
            async fn sqlite() {
                run(super::sqlite().await).await;
            }

            #[tokio::test]
            async fn postgres() {
                match super::postgres().await {
                    Some(db) => {
                        let url = db.url.clone();
                        run(db).await;
                        super::drop_postgres(&url).await;
                    }
                    None => eprintln!("skipped: PORTCULLIS_TEST_POSTGRES is not set"),
                }
            }
        }
    };
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "_{}_{}",
        N.fetch_add(1, Ordering::SeqCst),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

fn hash(n: u8) -> TokenHash {
    TokenHash([n; 32])
}

const POLICY: RotationPolicy = RotationPolicy {
    grace: 10,
    idle: 100,
    absolute: 1000,
};

async fn user(store: &dyn Store, name: &str) -> String {
    let id = format!("id-{name}");
    store
        .create_user(NewUser {
            id: id.clone(),
            username: name.into(),
            skeleton: portcullis::username::skeleton(name),
            password_hash: "$argon2id$stub".into(),
            scope: "read".into(),
            created_at: 1,
            email: None,
        })
        .await
        .unwrap();
    id
}

fn retention(keep: i64) -> Retention {
    Retention {
        keep,
        rotation: POLICY,
        device_idle: 10_000,
        throttle_idle: 900,
        mail_kept: 1_000,
        audit_kept: 5_000,
    }
}

conformance! {
    async fn users_are_created_found_and_updated(db) {
        let s = db.store.as_ref();
        let id = user(s, "alice").await;
        assert!(
            matches!(
                s.create_user(NewUser {
                    id: "other".into(),
                    username: "alice".into(),
                    skeleton: "alice".into(),
                    password_hash: "x".into(),
                    scope: String::new(),
                    created_at: 1,
                    email: None,
                })
                .await,
                Err(portcullis_store::Error::Conflict)
            ),
            "{}",
            s.backend()
        );
        let found = s.user_by_username("alice").await.unwrap().unwrap();
        assert_eq!(found.id, id);
        assert_eq!(s.user_by_id(&id).await.unwrap().unwrap().username, "alice");
        assert!(s.user_by_username("bob").await.unwrap().is_none());
        assert!(
            s.set_scope("alice", "read write", 5)
                .await
                .unwrap()
                .is_some()
        );
        assert!(s.set_scope("nobody", "read", 5).await.unwrap().is_none());
        assert!(s.set_disabled("alice", true).await.unwrap());
        assert!(!s.set_disabled("nobody", true).await.unwrap());
        // A rehash replaces the hash it was made from, never one that replaced it since
        // (a reset between a login and its rehash).
        assert!(!s.set_password_hash(&id, "$argon2id$not-this-one", "$argon2id$lost").await.unwrap());
        assert!(s.set_password_hash(&id, "$argon2id$stub", "$argon2id$new").await.unwrap());
        let u = s.user_by_id(&id).await.unwrap().unwrap();
        assert_eq!(
            (u.scope.as_str(), u.disabled, u.password_hash.as_str()),
            ("read write", true, "$argon2id$new")
        );
        assert_eq!(s.list_users().await.unwrap().len(), 1);
    }
}

conformance! {
    async fn rotation_reuse_grace_and_expiry(db) {
        let s = db.store.as_ref();
        let uid = user(s, "carol").await;
        let started = s.create_family("fam", &uid, &hash(1), "", 1000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((started.scope.as_str(), started.not_before), ("read", 0));
        let Rotation::Rotated {
            retry: false,
            family_id,
            user_id,
            scope,
            not_before,
            amr,
        } = s.rotate(&hash(1), &hash(2), 1001, POLICY).await.unwrap()
        else {
            panic!("{}: first use rotates", s.backend());
        };
        assert_eq!(
            (family_id.as_str(), user_id.as_str(), scope.as_str(), not_before),
            ("fam", uid.as_str(), "read", 0)
        );
        // A family started by `create_family` is a password's.
        assert_eq!(amr, "pwd");
        // Within the grace window the old token gets another pair.
        assert!(matches!(
            s.rotate(&hash(1), &hash(3), 1005, POLICY).await.unwrap(),
            Rotation::Rotated { retry: true, .. }
        ));
        // After it, reuse revokes the family.
        assert_eq!(
            s.rotate(&hash(1), &hash(4), 1012, POLICY).await.unwrap(),
            Rotation::ReuseDetected {
                family_id: "fam".into(),
                user_id: uid.clone()
            }
        );
        assert_eq!(
            s.rotate(&hash(2), &hash(5), 1013, POLICY).await.unwrap(),
            Rotation::Refused
        );
        assert_eq!(
            s.rotate(&hash(9), &hash(6), 1013, POLICY).await.unwrap(),
            Rotation::Refused,
            "unknown"
        );
        let revoked = s.revoked_since(1000).await.unwrap();
        assert_eq!(revoked.families, vec!["fam".to_owned()]);

        s.create_family("idle", &uid, &hash(10), "", 2000)
            .await
            .unwrap();
        assert_eq!(
            s.rotate(&hash(10), &hash(11), 2101, POLICY).await.unwrap(),
            Rotation::Refused,
            "idle"
        );
        s.create_family("old", &uid, &hash(20), "", 3000)
            .await
            .unwrap();
        let mut t = 3000;
        let mut current = 20u8;
        while t < 3990 {
            t += 90;
            assert!(matches!(
                s.rotate(&hash(current), &hash(current + 1), t, POLICY)
                    .await
                    .unwrap(),
                Rotation::Rotated { .. }
            ));
            current += 1;
        }
        assert_eq!(
            s.rotate(&hash(current), &hash(99), 4010, POLICY)
                .await
                .unwrap(),
            Rotation::Refused,
            "absolute"
        );

        s.create_family("off", &uid, &hash(40), "", 5000)
            .await
            .unwrap();
        s.set_disabled("carol", true).await.unwrap();
        assert_eq!(
            s.rotate(&hash(40), &hash(41), 5001, POLICY).await.unwrap(),
            Rotation::Refused,
            "disabled"
        );
    }
}

conformance! {
    async fn concurrent_rotations_of_one_token_have_one_winner(db) {
        let uid = user(db.store.as_ref(), "dan").await;
        db.store
            .create_family("fam", &uid, &hash(1), "", 1000)
            .await
            .unwrap();
        let no_grace = RotationPolicy { grace: 0, ..POLICY };
        let tasks: Vec<_> = (0..8u8)
            .map(|i| {
                let store = db.store.clone();
                tokio::spawn(async move {
                    store
                        .rotate(&hash(1), &hash(100 + i), 1001, no_grace)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut rotated = 0;
        for t in tasks {
            if matches!(t.await.unwrap(), Rotation::Rotated { .. }) {
                rotated += 1;
            }
        }
        assert_eq!(rotated, 1, "{}", db.store.backend());
    }
}

conformance! {
    async fn logout_and_logout_all_are_recorded_as_events(db) {
        let s = db.store.as_ref();
        let uid = user(s, "erin").await;
        s.create_family("a", &uid, &hash(1), "", 100).await.unwrap();
        s.create_family("b", &uid, &hash(2), "", 100).await.unwrap();
        let start = s.last_event_id().await.unwrap();
        assert_eq!(
            s.revoke_family_of(&hash(1), 200).await.unwrap().as_deref(),
            Some("a")
        );
        assert_eq!(s.revoke_family_of(&hash(7), 200).await.unwrap(), None);
        assert_eq!(
            s.revoke_user(&uid, 300).await.unwrap(),
            vec!["b".to_owned()]
        );
        let events = s.events_after(start, 100).await.unwrap();
        let kinds: Vec<_> = events
            .iter()
            .map(|e| (e.kind, e.subject.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                (EventKind::FamilyRevoked, "a"),
                (EventKind::FamilyRevoked, "b"),
                (EventKind::UserNotBefore, uid.as_str())
            ]
        );
        assert!(events.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(s.last_event_id().await.unwrap(), events.last().unwrap().id);
        // Every token of second 300 is refused, those issued before the logout in it
        // included: "not before" is the next second.
        assert_eq!(s.user_by_id(&uid).await.unwrap().unwrap().not_before, 301);
        assert_eq!(events.last().unwrap().at, 301);
        let state = s.revoked_since(250).await.unwrap();
        assert_eq!(state.families, vec!["b".to_owned()]);
        assert_eq!(state.not_before, vec![(uid.clone(), 301)]);
    }
}

conformance! {
    async fn signing_keys_come_in_activation_order_and_a_key_has_one_successor(db) {
        let s = db.store.as_ref();
        let key = |kid: &str, at, activates, predecessor: Option<&str>| StoredKey {
            kid: kid.into(),
            alg: "EdDSA".into(),
            private_jwk: "{}".into(),
            created_at: at,
            activates_at: activates,
            predecessor: predecessor.map(str::to_owned),
        };
        s.add_signing_key(&key("k1", 10, 10, None), "").await.unwrap();
        s.add_signing_key(&key("k3", 30, 100, Some("k1")), "")
            .await
            .unwrap();
        s.add_signing_key(&key("k2", 20, 50, None), "").await.unwrap();
        // A second successor of k1 (another instance rotating at the same moment).
        assert!(matches!(
            s.add_signing_key(&key("k4", 31, 101, Some("k1")), "").await,
            Err(portcullis_store::Error::Conflict)
        ));
        let keys = s.signing_keys().await.unwrap();
        assert_eq!(
            keys.iter()
                .map(|k| (k.kid.as_str(), k.activates_at))
                .collect::<Vec<_>>(),
            [("k1", 10), ("k2", 50), ("k3", 100)]
        );
        let events = s.events_after(0, 10).await.unwrap();
        assert_eq!(
            events
                .iter()
                .filter(|e| e.kind == EventKind::KeysChanged)
                .count(),
            3
        );
    }
}

conformance! {
    /// Issue 28, finding 1: an instance still on the old key-encryption key added a key
    /// under it after `keys rewrap`, and no instance could start on the database.
    async fn keys_stay_under_one_key_encryption_key(db) {
        let s = db.store.as_ref();
        let key = |kid: &str, material: &str| StoredKey {
            kid: kid.into(),
            alg: "EdDSA".into(),
            private_jwk: material.into(),
            created_at: 10,
            activates_at: 10,
            predecessor: None,
        };
        s.add_signing_key(&key("k1", "enc:v2:OLD:aaaa"), "enc:v2:OLD:").await.unwrap();
        s.add_signing_key(&key("k2", "enc:v2:OLD:bbbb"), "enc:v2:OLD:").await.unwrap();
        // A rewrap that missed a key (added after it read them) is refused whole.
        assert!(matches!(
            s.replace_key_material(&[("k1".into(), "enc:v2:NEW:cccc".into())], true).await,
            Err(portcullis_store::Error::Outdated(_))
        ));
        assert!(s.signing_keys().await.unwrap().iter().all(|k| k.private_jwk.starts_with("enc:v2:OLD:")));
        s.replace_key_material(
            &[("k1".into(), "enc:v2:NEW:cccc".into()), ("k2".into(), "enc:v2:NEW:dddd".into())],
            true,
        )
        .await
        .unwrap();
        // The instance that still seals under the old KEK adds nothing.
        assert!(matches!(
            s.add_signing_key(&key("k3", "enc:v2:OLD:eeee"), "enc:v2:OLD:").await,
            Err(portcullis_store::Error::Outdated(_))
        ));
        // A caller claiming the new prefix with material under another is refused too.
        assert!(matches!(
            s.add_signing_key(&key("k3", "enc:v2:OLD:eeee"), "enc:v2:NEW:").await,
            Err(portcullis_store::Error::Outdated(_))
        ));
        s.add_signing_key(&key("k3", "enc:v2:NEW:ffff"), "enc:v2:NEW:").await.unwrap();
        let keys = s.signing_keys().await.unwrap();
        assert_eq!(keys.len(), 3);
        assert!(keys.iter().all(|k| k.private_jwk.starts_with("enc:v2:NEW:")));
    }
}

fn new_session(id: &str, secret: u8, subject: &str, at: i64) -> NewSession {
    NewSession {
        id: id.into(),
        hash: SessionHash([secret; 32]),
        subject: subject.into(),
        scope: "read write".into(),
        label: "Firefox on Linux".into(),
        created_at: at,
        expires_at: at + 1000,
    }
}

conformance! {
    async fn sessions_are_found_by_hash_touched_listed_and_revoked(db) {
        let s = db.store.as_ref();
        let uid = user(s, "fay").await;
        let other = user(s, "gus").await;
        s.create_session(&new_session("s1", 1, &uid, 100))
            .await
            .unwrap();
        s.create_session(&new_session("s2", 2, &uid, 110))
            .await
            .unwrap();
        s.create_session(&new_session("s3", 3, &other, 120))
            .await
            .unwrap();
        let found = s
            .find_session(&SessionHash([1; 32]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            found,
            SessionRecord::new("s1", uid.clone(), "read write", 100, 1100)
                .with_label("Firefox on Linux")
                .with_last_seen_at(100)
                .with_amr("pwd"),
            "a session row says a password until told otherwise"
        );
        assert!(
            s.find_session(&SessionHash([9; 32]))
                .await
                .unwrap()
                .is_none()
        );
        // A taken secret hash is refused (a collision must never merge two sessions).
        assert!(
            s.create_session(&new_session("s4", 1, &uid, 130))
                .await
                .is_err()
        );

        s.touch_session("s1", 150).await.unwrap();
        s.touch_session("s1", 140).await.unwrap(); // never moves back
        let found = s
            .find_session(&SessionHash([1; 32]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.last_seen_at, 150);

        let ids = |v: Vec<SessionRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(s.sessions_of(&uid).await.unwrap()), ["s2", "s1"]);

        let start = s.last_event_id().await.unwrap();
        // Only the owner's revocation counts; twice is once.
        assert!(!s.revoke_session("s1", Some(&other), 200).await.unwrap());
        assert!(s.revoke_session("s1", Some(&uid), 200).await.unwrap());
        assert!(!s.revoke_session("s1", Some(&uid), 201).await.unwrap());
        assert!(
            s.find_session(&SessionHash([1; 32]))
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(ids(s.sessions_of(&uid).await.unwrap()), ["s2"]);
        assert_eq!(s.revoke_sessions_of(&other, 210).await.unwrap(), ["s3"]);
        // Whoever's it is (an expired session revoked on sight).
        s.create_session(&new_session("s5", 5, &uid, 150))
            .await
            .unwrap();
        assert!(s.revoke_session("s5", None, 220).await.unwrap());
        assert!(
            s.find_session(&SessionHash([5; 32]))
                .await
                .unwrap()
                .is_none()
        );
        let events: Vec<_> = s
            .events_after(start, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.kind, e.subject))
            .collect();
        assert_eq!(
            events,
            [
                (EventKind::SessionRevoked, "s1".to_owned()),
                (EventKind::SessionRevoked, "s3".to_owned()),
                (EventKind::SessionRevoked, "s5".to_owned())
            ]
        );
        let state = s.revoked_since(200).await.unwrap();
        let mut sids = state.families.clone();
        sids.sort();
        assert_eq!(sids, ["s1", "s3", "s5"]);
    }
}

conformance! {
    async fn logout_all_ends_sessions_and_families_together_and_disabled_users_have_none(db) {
        let s = db.store.as_ref();
        let uid = user(s, "hal").await;
        s.create_family("f1", &uid, &hash(1), "", 100)
            .await
            .unwrap();
        s.create_session(&new_session("s1", 1, &uid, 100))
            .await
            .unwrap();
        let mut revoked = s.revoke_user(&uid, 300).await.unwrap();
        revoked.sort();
        assert_eq!(revoked, ["f1", "s1"]);
        assert!(
            s.find_session(&SessionHash([1; 32]))
                .await
                .unwrap()
                .is_none()
        );
        assert!(s.sessions_of(&uid).await.unwrap().is_empty());

        s.create_session(&new_session("s2", 2, &uid, 400))
            .await
            .unwrap();
        assert!(
            s.find_session(&SessionHash([2; 32]))
                .await
                .unwrap()
                .is_some()
        );
        assert!(s.set_disabled("hal", true).await.unwrap());
        assert!(
            s.find_session(&SessionHash([2; 32]))
                .await
                .unwrap()
                .is_none()
        );
        assert!(s.set_disabled("hal", false).await.unwrap());
        assert!(
            s.find_session(&SessionHash([2; 32]))
                .await
                .unwrap()
                .is_some()
        );
    }
}

conformance! {
    async fn pruning_deletes_only_what_ended_before_the_cutoff(db) {
        let s = db.store.as_ref();
        let uid = user(s, "ola").await;
        // Families: revoked long ago, idle too long, too old, and a live one.
        s.create_family("revoked", &uid, &hash(1), "", 100)
            .await
            .unwrap();
        s.revoke_family_of(&hash(1), 150).await.unwrap();
        s.create_family("idle", &uid, &hash(2), "", 100)
            .await
            .unwrap();
        s.create_family("ancient", &uid, &hash(3), "", 10)
            .await
            .unwrap();
        s.rotate(&hash(3), &hash(4), 1005, POLICY).await.unwrap();
        s.create_family("live", &uid, &hash(5), "", 1100)
            .await
            .unwrap();
        s.create_family("revoked-recently", &uid, &hash(6), "", 1100)
            .await
            .unwrap();
        s.revoke_family_of(&hash(6), 1180).await.unwrap();
        // Sessions: revoked long ago, past their end, revoked recently, live.
        s.create_session(&new_session("s-revoked", 1, &uid, 100))
            .await
            .unwrap();
        s.revoke_session("s-revoked", None, 150).await.unwrap();
        let mut ended = new_session("s-ended", 2, &uid, 100);
        ended.expires_at = 160;
        s.create_session(&ended).await.unwrap();
        s.create_session(&new_session("s-recent", 3, &uid, 1100))
            .await
            .unwrap();
        s.revoke_session("s-recent", None, 1180).await.unwrap();
        s.create_session(&new_session("s-live", 4, &uid, 1100))
            .await
            .unwrap();
        let events_before = s.events_after(0, 100).await.unwrap();
        let last = s.last_event_id().await.unwrap();

        // now 1200, keep 100: the cutoff is 1100. POLICY: idle 100, absolute 1000.
        let pruned = s.prune(1200, &retention(100)).await.unwrap();
        assert_eq!(pruned.families, 3, "revoked, idle and ancient");
        assert_eq!(pruned.sessions, 2, "revoked and ended");
        let old_events = events_before.iter().filter(|e| e.at < 1100).count() as u64;
        assert!(old_events >= 2);
        assert_eq!(pruned.events, old_events);

        let left: Vec<String> = s
            .events_after(0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.subject)
            .collect();
        assert_eq!(left, ["revoked-recently", "s-recent"]);
        assert_eq!(
            s.last_event_id().await.unwrap(),
            last,
            "ids are never reused"
        );
        // The live ones still work; the pruned refresh tokens are simply unknown.
        assert!(
            s.find_session(&SessionHash([4; 32]))
                .await
                .unwrap()
                .is_some()
        );
        assert!(matches!(
            s.rotate(&hash(5), &hash(7), 1150, POLICY).await.unwrap(),
            Rotation::Rotated { .. }
        ));
        assert_eq!(
            s.rotate(&hash(2), &hash(8), 1150, POLICY).await.unwrap(),
            Rotation::Refused
        );
        // A revocation that still matters is still reported at startup.
        let state = s.revoked_since(1100).await.unwrap();
        let mut sids = state.families;
        sids.sort();
        assert_eq!(sids, ["revoked-recently", "s-recent"]);
        // Nothing left to do the second time.
        assert_eq!(
            s.prune(1200, &retention(100)).await.unwrap(),
            Default::default()
        );
    }
}

conformance! {
    async fn fifty_concurrent_refreshes_leave_one_live_token_in_the_family(db) {
        let uid = user(db.store.as_ref(), "erin").await;
        db.store
            .create_family("fam", &uid, &hash(1), "", 1000)
            .await
            .unwrap();
        let tasks: Vec<_> = (0..50u8)
            .map(|i| {
                let store = db.store.clone();
                tokio::spawn(async move {
                    let next = hash(100 + i);
                    (
                        next.clone(),
                        store.rotate(&hash(1), &next, 1001, POLICY).await.unwrap(),
                    )
                })
            })
            .collect();
        let mut issued = Vec::new();
        let mut plain = 0;
        for t in tasks {
            match t.await.unwrap() {
                (next, Rotation::Rotated { retry, .. }) => {
                    plain += usize::from(!retry);
                    issued.push(next);
                }
                (_, other) => panic!("{}: {other:?}", db.store.backend()),
            }
        }
        let backend = db.store.backend();
        assert_eq!(plain, 1, "{backend}: one rotation, the rest retries");
        // The family names one live token, and it is one of those handed out.
        let live = db
            .read("SELECT current_hash FROM refresh_families WHERE id = 'fam'")
            .await
            .unwrap();
        let winner = issued
            .iter()
            .find(|h| h.0[..] == live[..])
            .expect("issued")
            .clone();
        let losers: Vec<_> = issued.iter().filter(|h| **h != winner).cloned().collect();
        assert_eq!(losers.len(), 49);
        // The live one rotates; any other one is reuse and ends the whole family.
        assert!(matches!(
            db.store
                .rotate(&winner, &hash(200), 1002, POLICY)
                .await
                .unwrap(),
            Rotation::Rotated { retry: false, .. }
        ));
        assert_eq!(
            db.store
                .rotate(&losers[7], &hash(201), 1003, POLICY)
                .await
                .unwrap(),
            Rotation::ReuseDetected {
                family_id: "fam".into(),
                user_id: uid.clone()
            },
            "{backend}"
        );
        assert_eq!(
            db.store
                .rotate(&hash(200), &hash(202), 1004, POLICY)
                .await
                .unwrap(),
            Rotation::Refused
        );
    }
}

conformance! {
    async fn a_retry_within_grace_kills_the_successor_it_replaces(db) {
        let s = db.store.as_ref();
        let uid = user(s, "fay").await;
        s.create_family("fam", &uid, &hash(1), "", 1000)
            .await
            .unwrap();
        // The owner rotates; a thief replays the old token within the grace window.
        s.rotate(&hash(1), &hash(2), 1001, POLICY).await.unwrap();
        assert!(matches!(
            s.rotate(&hash(1), &hash(3), 1002, POLICY).await.unwrap(),
            Rotation::Rotated { retry: true, .. }
        ));
        // The owner's next use of the replaced successor is reuse: the family ends,
        // the thief's chain with it.
        assert!(matches!(
            s.rotate(&hash(2), &hash(4), 1003, POLICY).await.unwrap(),
            Rotation::ReuseDetected { .. }
        ));
        assert_eq!(
            s.rotate(&hash(3), &hash(5), 1004, POLICY).await.unwrap(),
            Rotation::Refused
        );
    }
}

fn login_attempts(account: &str) -> Vec<Attempt> {
    vec![
        Attempt {
            key: format!("account:{account}"),
            budget: Budget::new(5, 60),
            lane: Lane::Account,
        },
        Attempt {
            key: "address:192.0.2.1".into(),
            budget: Budget::new(20, 60),
            lane: Lane::Address,
        },
    ]
}

conformance! {
    async fn concurrent_attempts_on_two_instances_share_one_budget(db) {
        let other = db.another_instance().await;
        let tasks: Vec<_> = (0..60)
            .map(|i| {
                let store = if i % 2 == 0 {
                    db.store.clone()
                } else {
                    other.clone()
                };
                tokio::spawn(
                    async move { store.admit(&login_attempts("gus"), 5000).await.unwrap() },
                )
            })
            .collect();
        let mut admitted = 0;
        for t in tasks {
            match t.await.unwrap() {
                Admission::Admitted => admitted += 1,
                Admission::Refused { retry_after } => assert!(retry_after >= 1),
            }
        }
        assert_eq!(admitted, 5, "{}", db.store.backend());
        // Waiting out the delay admits one more, and only one.
        assert_eq!(
            db.store.admit(&login_attempts("gus"), 5001).await.unwrap(),
            Admission::Admitted
        );
        assert_eq!(
            other.admit(&login_attempts("gus"), 5001).await.unwrap(),
            Admission::Refused { retry_after: 2 }
        );
    }
}

conformance! {
    async fn a_success_clears_the_account_and_gives_back_the_address_slot(db) {
        let s = db.store.as_ref();
        for _ in 0..4 {
            assert_eq!(
                s.admit(&login_attempts("hal"), 10).await.unwrap(),
                Admission::Admitted
            );
        }
        assert_eq!(
            s.admit(&login_attempts("hal"), 10).await.unwrap(),
            Admission::Admitted
        );
        s.settle(&login_attempts("hal"), Settlement::Success)
            .await
            .unwrap();
        // The account starts over: five more attempts at once.
        for _ in 0..5 {
            assert_eq!(
                s.admit(&login_attempts("hal"), 11).await.unwrap(),
                Admission::Admitted
            );
        }
        // The address holds 4 + 5 = 9 of its 20. Twenty logins that succeed (more than
        // the 11 left) all pass: each success gives its address slot back.
        for _ in 0..20 {
            assert_eq!(
                s.admit(&login_attempts("ivy"), 11).await.unwrap(),
                Admission::Admitted
            );
            s.settle(&login_attempts("ivy"), Settlement::Success)
                .await
                .unwrap();
        }
        // A never-checked attempt is given back too, on the account as well: five more
        // attempts after one that the server could not check.
        assert_eq!(s.admit(&login_attempts("joe"), 11).await.unwrap(), Admission::Admitted);
        s.settle(&login_attempts("joe"), Settlement::NotChecked).await.unwrap();
        for _ in 0..5 {
            assert_eq!(s.admit(&login_attempts("joe"), 11).await.unwrap(), Admission::Admitted);
        }
        // Spent counters go with retention; live ones stay.
        assert_eq!(
            s.prune(11 + 899, &retention(100)).await.unwrap().throttle,
            0
        );
        assert!(s.prune(11 + 900, &retention(100)).await.unwrap().throttle >= 1);
    }
}

conformance! {
    async fn devices_are_known_by_hash_until_unused_too_long(db) {
        let s = db.store.as_ref();
        let uid = user(s, "jan").await;
        s.add_device(&hash(9), &uid, 100).await.unwrap();
        assert_eq!(
            s.device_owner(&hash(9), 150, 100).await.unwrap(),
            Some(uid.clone())
        );
        assert_eq!(s.device_owner(&hash(8), 150, 100).await.unwrap(), None);
        // Used at 150: still known at 250, forgotten after 100 s more unused.
        assert_eq!(s.device_owner(&hash(9), 250, 100).await.unwrap(), Some(uid));
        assert_eq!(s.device_owner(&hash(9), 351, 100).await.unwrap(), None);
        let r = Retention {
            device_idle: 100,
            ..retention(100)
        };
        assert_eq!(s.prune(351, &r).await.unwrap().devices, 1);
    }
}

conformance! {
    async fn a_scope_change_reaches_live_families_and_sessions_and_a_removal_moves_not_before(db) {
        let s = db.store.as_ref();
        let uid = user(s, "kim").await;
        s.set_scope("kim", "read admin", 10).await.unwrap();
        s.create_family("fam", &uid, &hash(1), "", 1000)
            .await
            .unwrap();
        s.create_family("gone", &uid, &hash(2), "", 1000)
            .await
            .unwrap();
        s.revoke_family_of(&hash(2), 1001).await.unwrap();
        s.create_session(&new_session("sess", 3, &uid, 1000))
            .await
            .unwrap();
        let added = s
            .set_scope("kim", "read admin write", 1002)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (added.removed, added.families, added.sessions),
            (false, 1, 1)
        );
        assert_eq!(s.user_by_id(&uid).await.unwrap().unwrap().not_before, 0);
        let cursor = s.last_event_id().await.unwrap();
        let removed = s.set_scope("kim", "read", 1003).await.unwrap().unwrap();
        assert!(removed.removed);
        // The next refresh mints the new scope, and so does the session.
        let Rotation::Rotated { scope, .. } =
            s.rotate(&hash(1), &hash(4), 1004, POLICY).await.unwrap()
        else {
            panic!("rotates");
        };
        assert_eq!(scope, "read");
        let session = s
            .find_session(&SessionHash([3; 32]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(session.scope, "read");
        // Tokens issued before the removal are refused on every instance, those of
        // its own second included; the next family start and rotation read that.
        assert_eq!(s.user_by_id(&uid).await.unwrap().unwrap().not_before, 1004);
        let events = s.events_after(cursor, 10).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].kind, events[0].subject.as_str(), events[0].at),
            (EventKind::UserNotBefore, uid.as_str(), 1004)
        );
        let started = s.create_family("later", &uid, &hash(9), "", 1003).await.unwrap().unwrap();
        assert_eq!((started.scope.as_str(), started.not_before), ("read", 1004));
        let Rotation::Rotated { not_before, .. } =
            s.rotate(&hash(4), &hash(5), 1005, POLICY).await.unwrap()
        else {
            panic!("rotates");
        };
        assert_eq!(not_before, 1004);
    }
}

conformance! {
    async fn a_look_alike_of_an_existing_username_is_taken(db) {
        let s = db.store.as_ref();
        user(s, "alice").await;
        for lookalike in ["\u{430}lice", "al\u{131}ce"] {
            let r = s
                .create_user(NewUser {
                    id: format!("id-{lookalike}"),
                    username: lookalike.into(),
                    skeleton: portcullis::username::skeleton(lookalike),
                    password_hash: "x".into(),
                    scope: String::new(),
                    created_at: 1,
                    email: None,
                })
                .await;
            assert!(
                matches!(r, Err(portcullis_store::Error::Conflict)),
                "{lookalike}: {r:?}"
            );
        }
    }
}

conformance! {
    async fn api_logins_are_listed_live_and_revoked_one_by_one_by_their_owner(db) {
        let s = db.store.as_ref();
        let uid = user(s, "lena").await;
        let other = user(s, "otto").await;
        s.create_family("phone", &uid, &hash(1), "App/1.0", 1000).await.unwrap();
        s.create_family("laptop", &uid, &hash(2), "curl/8.5.0", 1010).await.unwrap();
        s.create_family("idle", &uid, &hash(3), "", 900).await.unwrap();
        s.create_family("gone", &uid, &hash(4), "", 1020).await.unwrap();
        s.create_family("theirs", &other, &hash(5), "", 1020).await.unwrap();
        s.revoke_family_of(&hash(4), 1030).await.unwrap();
        // The phone refreshed last: it comes first. "idle" was last used 101 s ago.
        assert!(matches!(
            s.rotate(&hash(1), &hash(11), 1040, POLICY).await.unwrap(),
            Rotation::Rotated { .. }
        ));
        let listed = s.families_of(&uid, 1001 + POLICY.idle, POLICY).await.unwrap();
        let summary: Vec<_> = listed
            .iter()
            .map(|f| (f.id.as_str(), f.label.as_str(), f.created_at, f.last_used_at))
            .collect();
        assert_eq!(
            summary,
            [("phone", "App/1.0", 1000, 1040), ("laptop", "curl/8.5.0", 1010, 1010)]
        );
        // Past the absolute lifetime nothing is live.
        assert!(s.families_of(&uid, 1000 + POLICY.absolute + 1, POLICY).await.unwrap().is_empty());

        // Only the owner can end a family, once, with an event for other instances.
        let start = s.last_event_id().await.unwrap();
        assert!(!s.revoke_family(&other, "laptop", 1050).await.unwrap());
        assert!(!s.revoke_family(&uid, "theirs", 1050).await.unwrap());
        assert!(s.revoke_family(&uid, "laptop", 1050).await.unwrap());
        assert!(!s.revoke_family(&uid, "laptop", 1051).await.unwrap(), "already revoked");
        let events = s.events_after(start, 100).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].kind, events[0].subject.as_str()), (EventKind::FamilyRevoked, "laptop"));
        assert_eq!(
            s.rotate(&hash(2), &hash(12), 1052, POLICY).await.unwrap(),
            Rotation::Refused
        );
        let ids: Vec<_> = s.families_of(&uid, 1052, POLICY).await.unwrap().into_iter().map(|f| f.id).collect();
        assert_eq!(ids, ["phone"]);
    }
}

conformance! {
    async fn clients_are_registered_once_by_name_and_disabling_refuses_their_tokens(db) {
        let s = db.store.as_ref();
        let client = Client {
            id: "cl_1".into(),
            name: "blog".into(),
            secret_hash: vec![7; 32],
            scope: "revocations:read".into(),
            disabled: false,
            not_before: 0,
            created_at: 100,
            redirect_uris: String::new(),
            post_logout_redirect_uris: String::new(),
            public: false,
            first_party: false,
        };
        s.add_client(&client).await.unwrap();
        let same_name = Client { id: "cl_2".into(), ..client.clone() };
        assert!(matches!(s.add_client(&same_name).await, Err(Error::Conflict)));
        assert_eq!(s.client_by_id("cl_1").await.unwrap().as_ref(), Some(&client));
        assert_eq!(s.client_by_id("cl_2").await.unwrap(), None);
        assert_eq!(s.clients().await.unwrap(), vec![client.clone()]);

        let rotated = s.set_client_secret("cl_1", &[9; 32]).await.unwrap().unwrap();
        assert_eq!(rotated.secret_hash, vec![9; 32]);
        assert!(s.set_client_secret("nobody", &[9; 32]).await.unwrap().is_none());

        // A change writes what it names and nothing else.
        let disable = |on| ClientChange { disabled: Some(on), ..ClientChange::default() };
        let renamed = s
            .update_client("cl_1", &ClientChange { name: Some("journal"), scope: Some("a b"), ..ClientChange::default() }, 450)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((renamed.client.name.as_str(), renamed.client.scope.as_str()), ("journal", "a b"));
        assert_eq!(renamed.client.secret_hash, vec![9; 32]);
        assert!(!renamed.disabled_now && renamed.ended.is_empty());
        // "revocations:read" was taken away: its tokens so far are refused.
        assert!(renamed.tokens_refused);
        assert_eq!(renamed.client.not_before, 451);
        let widened = ClientChange { scope: Some("a b c"), ..ClientChange::default() };
        let widened = s.update_client("cl_1", &widened, 455).await.unwrap().unwrap();
        assert!(!widened.tokens_refused, "nothing taken away");
        assert_eq!(widened.client.not_before, 451);
        s.add_client(&Client { id: "cl_2".into(), name: "other".into(), ..client.clone() }).await.unwrap();
        let taken = ClientChange { name: Some("other"), ..ClientChange::default() };
        assert!(matches!(s.update_client("cl_1", &taken, 460).await, Err(Error::Conflict)));
        assert_eq!(s.client_by_id("cl_1").await.unwrap().unwrap().name, "journal", "nothing written");
        assert!(s.update_client("nobody", &disable(true), 460).await.unwrap().is_none());

        // Disabling moves "not before" with an event, which the revocation state shows.
        let start = s.last_event_id().await.unwrap();
        let off = s.update_client("cl_1", &disable(true), 500).await.unwrap().unwrap();
        assert!(off.client.disabled && off.disabled_now);
        // Tokens of the disabling second are refused too: "not before" is the next one.
        assert_eq!(off.client.not_before, 501);
        let events = s.events_after(start, 10).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].kind, events[0].subject.as_str(), events[0].at), (EventKind::UserNotBefore, "cl_1", 501));
        let state = s.revoked_since(400).await.unwrap();
        assert!(state.not_before.contains(&("cl_1".to_owned(), 501)));
        // Disabling a disabled client again moves nothing.
        let again = s.update_client("cl_1", &disable(true), 550).await.unwrap().unwrap();
        assert!(!again.disabled_now);
        assert_eq!(again.client.not_before, 501);
        assert_eq!(s.events_after(start, 10).await.unwrap().len(), 1);
        // Enabling keeps the "not before": old tokens stay refused.
        let on = s.update_client("cl_1", &disable(false), 600).await.unwrap().unwrap();
        assert!(!on.client.disabled);
        assert_eq!(on.client.not_before, 501);

        // Deleting refuses its tokens (an event) and frees the name.
        let start = s.last_event_id().await.unwrap();
        assert_eq!(s.delete_client("cl_1", 700).await.unwrap(), Some(Vec::new()));
        let events = s.events_after(start, 10).await.unwrap();
        assert_eq!((events[0].kind, events[0].subject.as_str(), events[0].at), (EventKind::UserNotBefore, "cl_1", 701));
        assert_eq!(s.client_by_id("cl_1").await.unwrap(), None);
        assert_eq!(s.delete_client("cl_1", 710).await.unwrap(), None);
        s.add_client(&Client { id: "cl_3".into(), name: "journal".into(), ..client.clone() }).await.unwrap();
    }
}

/// SQLite checkpoints run in the background, not in a commit: a few writes (far
/// below the 1,000 WAL pages that used to trigger one) reach the database file itself
/// within a couple of seconds, with no commit paying for it.
/// A code-flow client and a code for `user_id`, issued at 1000 for a minute.
async fn code_for(s: &dyn Store, user_id: &str, code: u8) -> AuthCode {
    if s.client_by_id("app").await.unwrap().is_none() {
        s.add_client(&Client {
            id: "app".into(),
            name: "app".into(),
            secret_hash: Vec::new(),
            scope: "openid read write".into(),
            disabled: false,
            not_before: 0,
            created_at: 1,
            redirect_uris: "https://app.example/cb".into(),
            post_logout_redirect_uris: String::new(),
            public: true,
            first_party: false,
        })
        .await
        .unwrap();
    }
    // The session the person signed in with; a second code of the same person finds it
    // already there.
    let _ = s
        .create_session(&new_session(
            &format!("sess-{user_id}"),
            user_id
                .bytes()
                .fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b)),
            user_id,
            900,
        ))
        .await;
    let code = AuthCode {
        hash: vec![code; 32],
        client_id: "app".into(),
        user_id: user_id.into(),
        redirect_uri: "https://app.example/cb".into(),
        scope: "openid read write".into(),
        code_challenge: "challenge".into(),
        nonce: Some("n-1".into()),
        auth_time: 990,
        session_id: format!("sess-{user_id}"),
        amr: "pwd otp mfa".into(),
        created_at: 1000,
        expires_at: 1060,
    };
    s.add_code(&code).await.unwrap();
    code
}

fn exchange<'a>(code: &'a TokenHash, family: &'a str, refresh: &'a TokenHash) -> CodeExchange<'a> {
    CodeExchange {
        code,
        client_id: "app",
        redirect_uri: "https://app.example/cb",
        challenge: "challenge",
        family_id: family,
        refresh,
        label: "app",
    }
}

conformance! {
    async fn a_code_is_exchanged_once_and_a_replay_revokes_what_it_issued(db) {
        let s = db.store.as_ref();
        let uid = user(s, "olga").await;
        code_for(s, &uid, 1).await;
        let Exchanged::Granted { code, scope, username, not_before, .. } =
            s.exchange_code(&exchange(&hash(1), "fam1", &hash(50)), 1010).await.unwrap()
        else {
            panic!("{}: a fresh code is granted", s.backend());
        };
        // The account has "read" only: "write" is not granted, "openid" is.
        assert_eq!((scope.as_str(), username.as_str(), not_before), ("openid read", "olga", 0));
        assert_eq!((code.nonce.as_deref(), code.auth_time), (Some("n-1"), 990));
        // The family belongs to the client: refreshed by it only.
        assert_eq!(
            s.rotate(&hash(50), &hash(51), 1011, POLICY).await.unwrap(),
            Rotation::Refused,
            "a password-login refresh cannot redeem a client's family"
        );
        assert_eq!(
            s.rotate_for(Some("other"), &hash(50), &hash(51), 1011, POLICY).await.unwrap(),
            Rotation::Refused
        );
        let Rotation::Rotated { amr, .. } =
            s.rotate_for(Some("app"), &hash(50), &hash(52), 1011, POLICY).await.unwrap()
        else {
            panic!("{}: the refusals above burned nothing", s.backend());
        };
        assert_eq!(amr, "pwd otp mfa", "the family keeps how its sign-in was made");
        let before = s.last_event_id().await.unwrap();
        assert_eq!(
            s.exchange_code(&exchange(&hash(1), "fam2", &hash(60)), 1012).await.unwrap(),
            Exchanged::Replayed { family_id: Some("fam1".into()) }
        );
        let events = s.events_after(before, 10).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].kind, events[0].subject.as_str()), (EventKind::FamilyRevoked, "fam1"));
        assert_eq!(
            s.rotate_for(Some("app"), &hash(52), &hash(53), 1013, POLICY).await.unwrap(),
            Rotation::Refused,
            "the family the code issued is revoked"
        );
        // The replay started nothing.
        assert!(s.refresh_info(&hash(60), 1013, POLICY).await.unwrap().is_none());
        assert_eq!(s.exchange_code(&exchange(&hash(7), "f", &hash(70)), 1012).await.unwrap(), Exchanged::Refused, "unknown");
    }
}

/// What a test changes in a good exchange.
type Spoil = fn(&mut CodeExchange<'_>);

conformance! {
    async fn a_code_that_does_not_match_is_refused_and_used_up(db) {
        let s = db.store.as_ref();
        let uid = user(s, "pia").await;
        let cases: [(u8, Spoil, i64); 4] = [
            (1, |x| x.client_id = "other", 1010),
            (2, |x| x.redirect_uri = "https://app.example/cb/", 1010),
            (3, |x| x.challenge = "wrong", 1010),
            (4, |_| {}, 1060),
        ];
        for (n, spoil, at) in cases {
            code_for(s, &uid, n).await;
            let (code, refresh) = (hash(n), hash(100 + n));
            let mut x = exchange(&code, "never", &refresh);
            spoil(&mut x);
            assert_eq!(s.exchange_code(&x, at).await.unwrap(), Exchanged::Refused, "case {n}");
            // The right request afterwards gets nothing either: the code is used.
            let right = exchange(&code, "never", &refresh);
            assert_eq!(
                s.exchange_code(&right, 1011).await.unwrap(),
                Exchanged::Replayed { family_id: None },
                "case {n}"
            );
        }
        code_for(s, &uid, 9).await;
        s.set_disabled("pia", true).await.unwrap();
        assert_eq!(
            s.exchange_code(&exchange(&hash(9), "never", &hash(109)), 1010).await.unwrap(),
            Exchanged::Refused,
            "disabled account"
        );
    }
}

conformance! {
    async fn concurrent_exchanges_of_one_code_grant_once(db) {
        let uid = user(db.store.as_ref(), "quinn").await;
        code_for(db.store.as_ref(), &uid, 1).await;
        let tasks: Vec<_> = (0..8u8)
            .map(|i| {
                let store = db.store.clone();
                tokio::spawn(async move {
                    let family = format!("fam{i}");
                    let (code, refresh) = (hash(1), hash(100 + i));
                    store
                        .exchange_code(&exchange(&code, &family, &refresh), 1010)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut granted = 0;
        for t in tasks {
            match t.await.unwrap() {
                Exchanged::Granted { .. } => granted += 1,
                Exchanged::Replayed { .. } => {}
                Exchanged::Refused => panic!("a good code is granted or replayed"),
            }
        }
        assert_eq!(granted, 1, "{}", db.store.backend());
    }
}

conformance! {
    async fn consents_add_up_and_withdrawing_one_ends_the_clients_grants(db) {
        let s = db.store.as_ref();
        let uid = user(s, "rosa").await;
        code_for(s, &uid, 1).await;
        assert_eq!(s.consent(&uid, "app").await.unwrap(), None);
        s.grant_consent(&uid, "app", "openid read", 100).await.unwrap();
        s.grant_consent(&uid, "app", "read write", 200).await.unwrap();
        assert_eq!(s.consent(&uid, "app").await.unwrap().as_deref(), Some("openid read write"));
        let listed = s.consents_of(&uid).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].client_name.as_str(), listed[0].created_at), ("app", 200));
        assert!(matches!(
            s.exchange_code(&exchange(&hash(1), "fam", &hash(50)), 1010).await.unwrap(),
            Exchanged::Granted { .. }
        ));
        // A password login of the same person is not the client's: it survives.
        s.create_family("own", &uid, &hash(80), "", 1010).await.unwrap();
        let before = s.last_event_id().await.unwrap();
        let ended = s.revoke_consent(&uid, "app", 1020).await.unwrap();
        assert_eq!(ended, Some(vec!["fam".to_owned()]), "the grant is named");
        assert_eq!(s.consent(&uid, "app").await.unwrap(), None);
        let events = s.events_after(before, 10).await.unwrap();
        assert_eq!(events.iter().map(|e| e.subject.as_str()).collect::<Vec<_>>(), ["fam"]);
        assert!(s.refresh_info(&hash(50), 1021, POLICY).await.unwrap().is_none());
        assert!(s.refresh_info(&hash(80), 1021, POLICY).await.unwrap().is_some());
        assert!(s.revoke_consent(&uid, "app", 1030).await.unwrap().is_none(), "nothing left");
    }
}

conformance! {
    async fn a_clients_grant_loses_a_removed_scope_and_never_gains_one(db) {
        let s = db.store.as_ref();
        let uid = user(s, "sven").await;
        s.set_scope("sven", "read write", 900).await.unwrap();
        code_for(s, &uid, 1).await;
        let Exchanged::Granted { scope, .. } =
            s.exchange_code(&exchange(&hash(1), "fam", &hash(50)), 1010).await.unwrap()
        else {
            panic!("granted");
        };
        assert_eq!(scope, "openid read write");
        s.set_scope("sven", "read admin", 1011).await.unwrap();
        let info = s.refresh_info(&hash(50), 1012, POLICY).await.unwrap().unwrap();
        assert_eq!(info.scope, "openid read", "write is gone; admin was never granted");
        assert_eq!(info.client_id.as_deref(), Some("app"));
        assert_eq!((info.user_id.as_str(), info.family_id.as_str()), (uid.as_str(), "fam"));
        assert_eq!(info.expires_at, 1010 + POLICY.idle);
        let Rotation::Rotated { scope, .. } =
            s.rotate_for(Some("app"), &hash(50), &hash(51), 1013, POLICY).await.unwrap()
        else {
            panic!("rotates");
        };
        assert_eq!(scope, "openid read");
        // A rotated token is no longer live for introspection; its successor is.
        assert!(s.refresh_info(&hash(50), 1013, POLICY).await.unwrap().is_none());
        assert!(s.refresh_info(&hash(51), 1013, POLICY).await.unwrap().is_some());
        assert!(s.refresh_info(&hash(51), 1013 + POLICY.idle + 1, POLICY).await.unwrap().is_none(), "idle");
    }
}

conformance! {
    async fn a_code_dies_with_the_consent_the_logout_or_the_session_it_came_from(db) {
        let s = db.store.as_ref();
        let uid = user(s, "uma").await;
        // Removing the app uses up its unexchanged codes.
        code_for(s, &uid, 1).await;
        s.grant_consent(&uid, "app", "openid", 1000).await.unwrap();
        assert!(s.revoke_consent(&uid, "app", 1001).await.unwrap().is_some());
        assert!(!matches!(
            s.exchange_code(&exchange(&hash(1), "f1", &hash(51)), 1002).await.unwrap(),
            Exchanged::Granted { .. }
        ));
        // So does a logout everywhere.
        code_for(s, &uid, 2).await;
        s.revoke_user(&uid, 1003).await.unwrap();
        assert!(!matches!(
            s.exchange_code(&exchange(&hash(2), "f2", &hash(52)), 1004).await.unwrap(),
            Exchanged::Granted { .. }
        ));
        // And the end of the session the person signed in with.
        let vic = user(s, "vic").await;
        let mut code = code_for(s, &vic, 3).await;
        assert!(s.revoke_session(&code.session_id, Some(&vic), 1005).await.unwrap());
        assert_eq!(
            s.exchange_code(&exchange(&hash(3), "f3", &hash(53)), 1006).await.unwrap(),
            Exchanged::Refused
        );
        // A disabled client's code starts nothing.
        code.hash = vec![4; 32];
        s.create_session(&new_session("live", 201, &vic, 1000)).await.unwrap();
        code.session_id = "live".into();
        s.add_code(&code).await.unwrap();
        s.update_client("app", &ClientChange { disabled: Some(true), ..ClientChange::default() }, 1007)
            .await
            .unwrap();
        assert_eq!(
            s.exchange_code(&exchange(&hash(4), "f4", &hash(54)), 1008).await.unwrap(),
            Exchanged::Refused
        );
    }
}

conformance! {
    async fn a_scope_removed_while_a_code_is_exchanged_never_reaches_the_grant(db) {
        let uid = user(db.store.as_ref(), "wes").await;
        for n in 1..=12u8 {
            let s = db.store.as_ref();
            s.set_scope("wes", "read write", 900).await.unwrap();
            code_for(s, &uid, n).await;
            let family = format!("fam{n}");
            let (a, b) = (db.store.clone(), db.store.clone());
            let (code, refresh) = (hash(n), hash(100 + n));
            let fam = family.clone();
            let exchanging = tokio::spawn(async move {
                a.exchange_code(&exchange(&code, &fam, &refresh), 1010).await.unwrap()
            });
            let removing = tokio::spawn(async move { b.set_scope("wes", "read", 1010).await.unwrap() });
            let exchanged = exchanging.await.unwrap();
            removing.await.unwrap();
            assert!(matches!(exchanged, Exchanged::Granted { .. }), "{}", s.backend());
            let info = s.refresh_info(&hash(100 + n), 1011, POLICY).await.unwrap().unwrap();
            assert!(!info.scope.split_whitespace().any(|x| x == "write"), "{}: round {n}: {}", s.backend(), info.scope);
        }
    }
}

conformance! {
    async fn disabling_a_client_ends_the_grants_it_holds(db) {
        let s = db.store.as_ref();
        let uid = user(s, "tess").await;
        code_for(s, &uid, 1).await;
        assert!(matches!(
            s.exchange_code(&exchange(&hash(1), "fam", &hash(50)), 1010).await.unwrap(),
            Exchanged::Granted { .. }
        ));
        assert_eq!(s.family_of(&hash(50)).await.unwrap(), Some(("fam".into(), Some("app".into()))));
        assert!(!s.revoke_client_family("other", "fam", 1011).await.unwrap(), "not its family");
        let before = s.last_event_id().await.unwrap();
        let off = s
            .update_client("app", &ClientChange { disabled: Some(true), ..ClientChange::default() }, 1012)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(off.ended, ["fam"]);
        let revoked: Vec<_> = s
            .events_after(before, 10)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == EventKind::FamilyRevoked)
            .map(|e| e.subject)
            .collect();
        assert_eq!(revoked, ["fam"]);
        assert!(s.refresh_info(&hash(50), 1013, POLICY).await.unwrap().is_none());
        assert!(!s.revoke_client_family("app", "fam", 1014).await.unwrap(), "already revoked");
    }
}

conformance! {
    async fn deleting_a_client_ends_its_grants_codes_and_consents(db) {
        let s = db.store.as_ref();
        let uid = user(s, "tara").await;
        code_for(s, &uid, 1).await;
        assert!(matches!(
            s.exchange_code(&exchange(&hash(1), "fam", &hash(50)), 1010).await.unwrap(),
            Exchanged::Granted { .. }
        ));
        code_for(s, &uid, 2).await; // not exchanged yet
        s.grant_consent(&uid, "app", "read", 1010).await.unwrap();
        assert_eq!(s.delete_client("app", 1012).await.unwrap(), Some(vec!["fam".to_owned()]));
        assert!(s.refresh_info(&hash(50), 1013, POLICY).await.unwrap().is_none());
        assert_eq!(s.consent(&uid, "app").await.unwrap(), None);
        assert_eq!(
            s.exchange_code(&exchange(&hash(2), "f2", &hash(52)), 1013).await.unwrap(),
            Exchanged::Refused
        );
        // The revoked family is still known: its token presented again is reuse, not a
        // stranger's guess.
        assert_eq!(s.family_of(&hash(50)).await.unwrap(), Some(("fam".into(), Some("app".into()))));
    }
}

#[tokio::test]
async fn sqlite_writes_reach_the_database_file_by_background_checkpoints() {
    let db = sqlite().await;
    let path = db.url.trim_start_matches("sqlite://").to_owned();
    let _ = user(db.store.as_ref(), "checkpointed-marker-name").await;
    let in_main_file = || {
        std::fs::read(&path)
            .unwrap()
            .windows(24)
            .any(|w| w == b"checkpointed-marker-name")
    };
    let start = std::time::Instant::now();
    while !in_main_file() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "the row is still only in the WAL after 5 s: no checkpoint ran"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn mail(n: usize) -> portcullis_store::NewMail {
    portcullis_store::NewMail {
        message_id: format!("m{n}@portcullis.test"),
        recipient: format!("r{n}@example.com"),
        subject: "s".into(),
        text_body: "t".into(),
        html_body: "<p>h</p>".into(),
    }
}

conformance! {
    /// Issue 23: the outbox hands each due message to one sender at a time, takes back
    /// the claims of a sender that died once their lease ends, and keeps every outcome.
    async fn the_outbox_claims_each_message_once_and_retries_what_was_not_sent(db) {
        let s = db.store.as_ref();
        for n in 1..=3 {
            s.enqueue_mail(&mail(n), 1000).await.unwrap();
        }
        // A duplicate Message-ID is refused: one message, one id.
        assert!(matches!(s.enqueue_mail(&mail(1), 1000).await, Err(portcullis_store::Error::Conflict)));
        let first = s.claim_mail(1000, 30, 2).await.unwrap();
        assert_eq!(first.iter().map(|m| (m.message_id.as_str(), m.attempts)).collect::<Vec<_>>(),
            [("m1@portcullis.test", 1), ("m2@portcullis.test", 1)]);
        // While their lease runs, another claim gets only the third.
        let second = s.claim_mail(1001, 30, 10).await.unwrap();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].message_id, "m3@portcullis.test");
        assert!(s.claim_mail(1002, 30, 10).await.unwrap().is_empty());
        s.mail_sent(first[0].id, 1003).await.unwrap();
        s.mail_failed(first[1].id, 1003, "451 try later", Some(1060)).await.unwrap();
        assert!(s.claim_mail(1030, 30, 10).await.unwrap().is_empty(), "m2 not due yet; m3 still held");
        // The retry comes due; the third's sender died and its lease ended at 1031.
        let again = s.claim_mail(1060, 30, 10).await.unwrap();
        assert_eq!(again.iter().map(|m| (m.message_id.as_str(), m.attempts)).collect::<Vec<_>>(),
            [("m2@portcullis.test", 2), ("m3@portcullis.test", 2)]);
        s.mail_failed(again[0].id, 1061, "550 no such mailbox", None).await.unwrap();
        assert_eq!(
            s.mail_queue().await.unwrap(),
            portcullis_store::MailQueue { waiting: 1, sent: 1, failed: 1 }
        );
        // Sent and failed messages are never claimed again.
        s.mail_sent(again[1].id, 1062).await.unwrap();
        assert!(s.claim_mail(5000, 30, 10).await.unwrap().is_empty());
        assert_eq!(
            s.mail_queue().await.unwrap(),
            portcullis_store::MailQueue { waiting: 0, sent: 2, failed: 1 }
        );
    }
}

conformance! {
    /// Issue 23: two instances on one database, claiming at once, never hand one
    /// message to both.
    async fn two_instances_never_claim_one_message_twice(db) {
        let s = db.store.clone();
        for n in 0..60 {
            s.enqueue_mail(&mail(n), 1000).await.unwrap();
        }
        let other = db.another_instance().await;
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = if i % 2 == 0 { s.clone() } else { other.clone() };
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    loop {
                        let claimed = store.claim_mail(1000, 300, 3).await.unwrap();
                        if claimed.is_empty() {
                            return got;
                        }
                        got.extend(claimed.into_iter().map(|m| m.id));
                    }
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let total = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!((total, all.len()), (60, 60), "every message once");
    }
}

conformance! {
    /// Issue 23: sent and failed messages leave the outbox after `mail_kept`; a message
    /// still waiting never does, however old.
    async fn pruning_the_outbox_keeps_what_is_still_to_be_sent(db) {
        let s = db.store.as_ref();
        for n in 1..=3 {
            s.enqueue_mail(&mail(n), 100).await.unwrap();
        }
        let claimed = s.claim_mail(100, 30, 2).await.unwrap();
        s.mail_sent(claimed[0].id, 200).await.unwrap();
        s.mail_failed(claimed[1].id, 300, "550 no such user", None).await.unwrap();
        // mail_kept is 1,000 s: at 1,250 the sent one (200) goes, the failed one (300) stays.
        assert_eq!(s.prune(1250, &retention(100)).await.unwrap().mail, 1);
        assert_eq!(s.prune(1350, &retention(100)).await.unwrap().mail, 1);
        assert_eq!(s.prune(100_000, &retention(100)).await.unwrap().mail, 0);
        assert_eq!(
            s.mail_queue().await.unwrap(),
            portcullis_store::MailQueue { waiting: 1, sent: 0, failed: 0 }
        );
    }
}

fn address(text: &str) -> portcullis_store::Email {
    portcullis_store::Email {
        address: text.into(),
        key: text.to_lowercase(),
    }
}

fn email_token(
    n: u8,
    user_id: &str,
    kind: portcullis_store::EmailTokenKind,
    email: &str,
) -> portcullis_store::NewEmailToken {
    portcullis_store::NewEmailToken {
        hash: hash(n),
        user_id: user_id.into(),
        kind,
        email: address(email),
        expires_at: 2000,
    }
}

async fn user_with_email(s: &dyn Store, name: &str, email: &str, verified: bool) -> String {
    let id = user(s, name).await;
    assert!(
        s.set_email(name, Some(&address(email)), verified)
            .await
            .unwrap()
    );
    id
}

conformance! {
    /// Issue 23: a verification token is issued with its mail in one transaction, works
    /// once, before it expires, for its purpose only; a token for an address the
    /// account no longer has is issued nowhere.
    async fn a_verification_token_works_once_for_its_account_and_address(db) {
        use portcullis_store::{EmailTokenKind::*, Purpose, Redeemed};
        let s = db.store.as_ref();
        let uid = user_with_email(s, "vera", "Vera@example.com", false).await;
        // Another address than the account's: nothing is written, not even the mail.
        assert!(!s.issue_email_token(&email_token(1, &uid, Verify, "other@example.com"), &[mail(1)], 1000).await.unwrap());
        assert_eq!(s.mail_queue().await.unwrap().waiting, 0);
        assert!(s.issue_email_token(&email_token(2, &uid, Verify, "Vera@example.com"), &[mail(2)], 1000).await.unwrap());
        assert_eq!(s.mail_queue().await.unwrap().waiting, 1);
        // Unknown, altered, or for another purpose: nothing.
        assert_eq!(s.redeem_email_token(&hash(9), Purpose::Address, 1001).await.unwrap(), Redeemed::Invalid);
        assert_eq!(s.redeem_email_token(&hash(2), Purpose::Password("$x"), 1001).await.unwrap(), Redeemed::Invalid);
        assert!(!s.user_by_id(&uid).await.unwrap().unwrap().email_verified);
        // Expired: nothing.
        assert_eq!(s.redeem_email_token(&hash(2), Purpose::Address, 2000).await.unwrap(), Redeemed::Invalid);
        assert_eq!(
            s.redeem_email_token(&hash(2), Purpose::Address, 1999).await.unwrap(),
            Redeemed::Verified { user_id: uid.clone(), email: "Vera@example.com".into() }
        );
        assert!(s.user_by_id(&uid).await.unwrap().unwrap().email_verified);
        // Used.
        assert_eq!(s.redeem_email_token(&hash(2), Purpose::Address, 1999).await.unwrap(), Redeemed::Invalid);
        // Only the hash is kept.
        let stored = db.read("SELECT hash FROM email_tokens").await.unwrap();
        assert_eq!(stored, vec![2u8; 32]);
        // A token for the address the account had before a change verifies nothing.
        let wes = user_with_email(s, "wes", "wes@example.com", false).await;
        assert!(s.issue_email_token(&email_token(3, &wes, Verify, "wes@example.com"), &[], 1000).await.unwrap());
        assert!(s.set_email("wes", Some(&address("wes2@example.com")), false).await.unwrap());
        assert_eq!(s.redeem_email_token(&hash(3), Purpose::Address, 1001).await.unwrap(), Redeemed::Invalid);
        assert!(!s.user_by_id(&wes).await.unwrap().unwrap().email_verified);
    }
}

conformance! {
    /// Issue 23: a change of address takes effect when the new address confirms, and
    /// never onto an address another account verified (the token stays unused).
    async fn a_new_address_becomes_the_accounts_when_confirmed_unless_verified_elsewhere(db) {
        use portcullis_store::{EmailTokenKind::*, Purpose, Redeemed};
        let s = db.store.as_ref();
        let uid = user_with_email(s, "cora", "cora@example.com", true).await;
        user_with_email(s, "dex", "taken@example.com", true).await;
        assert!(s.issue_email_token(&email_token(1, &uid, Change, "Taken@example.com"), &[mail(1), mail(2)], 1000).await.unwrap());
        assert_eq!(s.mail_queue().await.unwrap().waiting, 2, "both mails, with the token");
        assert!(matches!(s.redeem_email_token(&hash(1), Purpose::Address, 1001).await, Err(Error::Conflict)));
        let cora = s.user_by_id(&uid).await.unwrap().unwrap();
        assert_eq!((cora.email.as_deref(), cora.email_verified), (Some("cora@example.com"), true));
        // Once the other account lets the address go, the same link works.
        assert!(s.set_email("dex", None, false).await.unwrap());
        assert_eq!(
            s.redeem_email_token(&hash(1), Purpose::Address, 1002).await.unwrap(),
            Redeemed::Verified { user_id: uid.clone(), email: "Taken@example.com".into() }
        );
        let cora = s.user_by_id(&uid).await.unwrap().unwrap();
        assert_eq!((cora.email.as_deref(), cora.email_verified), (Some("Taken@example.com"), true));
    }
}

conformance! {
    /// Issue 23: a reset replaces the password and ends everything the account is
    /// signed in with (families, sessions, codes, devices), with events; a link to an
    /// unverified address, or to one the account no longer has, does nothing.
    async fn a_reset_ends_every_way_the_account_was_signed_in(db) {
        use portcullis_store::{EmailTokenKind::*, Purpose, Redeemed};
        let s = db.store.as_ref();
        let uid = user_with_email(s, "rita", "rita@example.com", false).await;
        // Unverified: no reset link is issued.
        assert!(!s.issue_email_token(&email_token(1, &uid, Reset, "rita@example.com"), &[mail(1)], 1000).await.unwrap());
        assert!(s.set_email("rita", Some(&address("rita@example.com")), true).await.unwrap());
        assert!(s.issue_email_token(&email_token(2, &uid, Reset, "rita@example.com"), &[mail(2)], 1000).await.unwrap());
        s.create_family("fam", &uid, &hash(50), "", 1000).await.unwrap().unwrap();
        s.create_session(&new_session("ses", 51, &uid, 1000)).await.unwrap();
        s.add_device(&hash(52), &uid, 1000).await.unwrap();
        let cursor = s.last_event_id().await.unwrap();
        let Redeemed::PasswordReset { user_id, mut ended, not_before } =
            s.redeem_email_token(&hash(2), Purpose::Password("$argon2id$new"), 1010).await.unwrap()
        else {
            panic!("not reset")
        };
        ended.sort();
        assert_eq!((user_id.as_str(), ended, not_before), (uid.as_str(), vec!["fam".to_owned(), "ses".to_owned()], 1011));
        let rita = s.user_by_id(&uid).await.unwrap().unwrap();
        assert_eq!((rita.password_hash.as_str(), rita.not_before), ("$argon2id$new", 1011));
        assert_eq!(s.device_owner(&hash(52), 1012, 10_000).await.unwrap(), None);
        let kinds: Vec<_> = s.events_after(cursor, 10).await.unwrap().into_iter().map(|e| e.kind).collect();
        assert!(kinds.contains(&EventKind::FamilyRevoked) && kinds.contains(&EventKind::SessionRevoked) && kinds.contains(&EventKind::UserNotBefore), "{kinds:?}");
        assert_eq!(s.redeem_email_token(&hash(2), Purpose::Password("$again"), 1012).await.unwrap(), Redeemed::Invalid);
        // A link sent before the address changed resets nothing.
        assert!(s.issue_email_token(&email_token(3, &uid, Reset, "rita@example.com"), &[], 1020).await.unwrap());
        assert!(s.set_email("rita", Some(&address("rita@elsewhere.example")), true).await.unwrap());
        assert_eq!(s.redeem_email_token(&hash(3), Purpose::Password("$x"), 1021).await.unwrap(), Redeemed::Invalid);
    }
}

conformance! {
    /// Issue 23: of ten reset requests at once, on two instances, one link works: each
    /// new one voids the others.
    async fn ten_reset_requests_at_once_leave_one_live_link(db) {
        use portcullis_store::{EmailTokenKind::*, Purpose, Redeemed};
        let s = db.store.clone();
        let uid = user_with_email(s.as_ref(), "tess", "tess@example.com", true).await;
        let other = db.another_instance().await;
        let tasks: Vec<_> = (0..10u8)
            .map(|n| {
                let store = if n % 2 == 0 { s.clone() } else { other.clone() };
                let token = email_token(100 + n, &uid, Reset, "tess@example.com");
                tokio::spawn(async move { store.issue_email_token(&token, &[mail(usize::from(n))], 1000).await.unwrap() })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap());
        }
        assert_eq!(s.mail_queue().await.unwrap().waiting, 10);
        let mut worked = 0;
        for n in 0..10u8 {
            if let Redeemed::PasswordReset { .. } = s.redeem_email_token(&hash(100 + n), Purpose::Password("$new"), 1001).await.unwrap() {
                worked += 1;
            }
        }
        assert_eq!(worked, 1);
    }
}

conformance! {
    /// Issue 23: changing the password voids reset links and ends every other family
    /// and session, keeping the one it was made from; a change that lost a race (the
    /// password is not the one checked) changes nothing.
    async fn a_password_change_ends_the_others_and_voids_reset_links(db) {
        use portcullis_store::{EmailTokenKind::*, Purpose, Redeemed};
        let s = db.store.as_ref();
        let uid = user_with_email(s, "pia", "pia@example.com", true).await;
        assert!(s.issue_email_token(&email_token(1, &uid, Reset, "pia@example.com"), &[], 1000).await.unwrap());
        s.create_family("mine", &uid, &hash(60), "", 1000).await.unwrap().unwrap();
        s.create_family("theirs", &uid, &hash(61), "", 1000).await.unwrap().unwrap();
        s.create_session(&new_session("ses", 62, &uid, 1000)).await.unwrap();
        assert_eq!(s.change_password(&uid, "$wrong", "$new", Some("mine"), &[mail(1)], 1001).await.unwrap(), None);
        assert_eq!(s.mail_queue().await.unwrap().waiting, 0);
        let mut ended = s.change_password(&uid, "$argon2id$stub", "$new", Some("mine"), &[mail(1)], 1001).await.unwrap().unwrap();
        ended.sort();
        assert_eq!(ended, ["ses", "theirs"]);
        assert_eq!(s.mail_queue().await.unwrap().waiting, 1);
        assert_eq!(s.families_of(&uid, 1002, POLICY).await.unwrap().iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["mine"]);
        assert_eq!(s.redeem_email_token(&hash(1), Purpose::Password("$x"), 1002).await.unwrap(), Redeemed::Invalid);
        assert_eq!(s.user_by_id(&uid).await.unwrap().unwrap().password_hash, "$new");
    }
}

/// A login of `uid` as it read the account (`checked`: its password hash and "not
/// before"), finishing family `id` with an audit record and no new device.
fn family_login<'a>(
    uid: &'a str,
    id: &'a str,
    token: &'a TokenHash,
    checked: (&'a str, i64),
    attempts: &'a [Attempt],
    audit: &'a portcullis_store::NewAudit,
    now: i64,
) -> FamilyLogin<'a> {
    FamilyLogin {
        family_id: id,
        user_id: uid,
        token,
        label: "test",
        amr: "pwd",
        checked_hash: checked.0,
        checked_not_before: checked.1,
        settle: attempts,
        device: None,
        audit: Some(audit),
        now,
    }
}

fn login_record(uid: &str) -> portcullis_store::NewAudit {
    portcullis_store::NewAudit {
        kind: "login.succeeded".into(),
        actor: Some(format!("user:{uid}")),
        subject: Some(uid.into()),
        detail: "{}".into(),
        ..Default::default()
    }
}

async fn login_records(s: &dyn Store, uid: &str) -> usize {
    s.audit(&portcullis_store::AuditFilter {
        subject: Some(uid),
        kind: Some("login.succeeded"),
        after: None,
        since: None,
        limit: 100,
    })
    .await
    .unwrap()
    .len()
}

conformance! {
    /// Issue 30: a login's family, device, audit record and settlement are one
    /// transaction; a login the account's password, "not before" or disabling
    /// overtook starts nothing (and still gives back its throttle slots).
    async fn a_login_finishes_in_one_transaction_and_an_overtaken_one_starts_nothing(db) {
        let s = db.store.as_ref();
        let uid = user(s, "lou").await;
        let attempts = login_attempts("lou");
        let record = login_record(&uid);
        // Four wrong passwords, then a right one: the account's counter is at five.
        for _ in 0..5 {
            assert_eq!(s.admit(&attempts, 10).await.unwrap(), Admission::Admitted);
        }
        assert!(matches!(s.admit(&attempts, 10).await.unwrap(), Admission::Refused { .. }));
        let checked = ("$argon2id$stub", 0);
        let started = s
            .finish_family_login(&FamilyLogin { device: Some(&hash(71)), ..family_login(&uid, "f1", &hash(70), checked, &attempts, &record, 10) })
            .await
            .unwrap();
        assert_eq!(started, FamilyStart::Started(portcullis_store::Started { scope: "read".into(), not_before: 0 }));
        let live: Vec<String> = s.families_of(&uid, 11, POLICY).await.unwrap().into_iter().map(|f| f.id).collect();
        assert_eq!(live, ["f1"]);
        assert_eq!(s.device_owner(&hash(71), 11, 100).await.unwrap(), Some(uid.clone()));
        assert_eq!(login_records(s, &uid).await, 1);
        // Settled as a success: the account starts over.
        for _ in 0..5 {
            assert_eq!(s.admit(&attempts, 11).await.unwrap(), Admission::Admitted);
        }
        // A reset or change committed after the login read the account: nothing starts,
        // no device, no record; the slots still come back.
        assert!(s.change_password(&uid, "$argon2id$stub", "$new", None, &[], 12).await.unwrap().is_some());
        let refused = s
            .finish_family_login(&FamilyLogin { device: Some(&hash(73)), ..family_login(&uid, "f2", &hash(72), checked, &attempts, &record, 12) })
            .await
            .unwrap();
        assert_eq!(refused, FamilyStart::Overtaken);
        assert!(s.families_of(&uid, 13, POLICY).await.unwrap().is_empty(), "the change ended f1; f2 never started");
        assert_eq!(s.device_owner(&hash(73), 13, 100).await.unwrap(), None);
        assert_eq!(login_records(s, &uid).await, 1);
        assert_eq!(s.family_of(&hash(72)).await.unwrap(), None);
        for _ in 0..5 {
            assert_eq!(s.admit(&attempts, 13).await.unwrap(), Admission::Admitted, "settled although overtaken");
        }
        // A logout everywhere moves "not before": a login that read the old one starts
        // nothing; one that read the new one does.
        s.revoke_user(&uid, 20).await.unwrap();
        let moved = s.user_by_id(&uid).await.unwrap().unwrap().not_before;
        assert!(moved > 0);
        let refused = s
            .finish_family_login(&family_login(&uid, "f3", &hash(74), ("$new", 0), &[], &record, 21))
            .await
            .unwrap();
        assert_eq!(refused, FamilyStart::Overtaken);
        let started = s
            .finish_family_login(&family_login(&uid, "f4", &hash(75), ("$new", moved), &[], &record, 21))
            .await
            .unwrap();
        assert!(matches!(started, FamilyStart::Started(_)));
        assert_eq!(login_records(s, &uid).await, 2);
        // Disabled, or gone: refused.
        assert!(s.set_disabled("lou", true).await.unwrap());
        let refused = s
            .finish_family_login(&family_login(&uid, "f5", &hash(76), ("$new", moved), &[], &record, 22))
            .await
            .unwrap();
        assert_eq!(refused, FamilyStart::Refused);
        let refused = s
            .finish_family_login(&family_login("id-nobody", "f6", &hash(77), ("$new", moved), &[], &record, 22))
            .await
            .unwrap();
        assert_eq!(refused, FamilyStart::Refused);
        assert_eq!(login_records(s, &uid).await, 2);
    }
}

conformance! {
    /// Issue 30, as an attacker would race it: logins that checked the old password,
    /// finishing on two instances while the password changes. Whatever the order,
    /// none of them leaves a live family (each either saw the change and started
    /// nothing, or committed first and was ended by it).
    async fn logins_racing_a_password_change_on_two_instances_leave_no_family(db) {
        let other = db.another_instance().await;
        let uid = user(db.store.as_ref(), "max").await;
        let record = Arc::new(login_record(&uid));
        let mut tasks = Vec::new();
        for i in 0..24u8 {
            let store = if i % 2 == 0 { db.store.clone() } else { other.clone() };
            let (who, record) = (uid.clone(), record.clone());
            tasks.push(tokio::spawn(async move {
                let id = format!("race-{i}");
                let token = hash(100 + i);
                store
                    .finish_family_login(&family_login(&who, &id, &token, ("$argon2id$stub", 0), &[], &record, 30))
                    .await
                    .unwrap()
            }));
            if i == 12 {
                let (store, uid) = (db.store.clone(), uid.clone());
                tasks.push(tokio::spawn(async move {
                    store.change_password(&uid, "$argon2id$stub", "$new", None, &[], 30).await.unwrap();
                    FamilyStart::Refused
                }));
            }
        }
        let mut started = 0;
        for t in tasks {
            if matches!(t.await.unwrap(), FamilyStart::Started(_)) {
                started += 1;
            }
        }
        eprintln!("{started} of 24 logins started a family before the change");
        assert_eq!(db.store.user_by_id(&uid).await.unwrap().unwrap().password_hash, "$new");
        assert!(db.store.families_of(&uid, 31, POLICY).await.unwrap().is_empty(), "a login with the old password outlived the change");
        assert_eq!(login_records(db.store.as_ref(), &uid).await, started);
    }
}

fn imported(
    name: &str,
    hash: &str,
    email: Option<&str>,
    verified: bool,
) -> portcullis_store::ImportedUser {
    portcullis_store::ImportedUser {
        user: NewUser {
            id: format!("id-{name}"),
            username: name.into(),
            skeleton: portcullis::username::skeleton(name),
            password_hash: hash.into(),
            scope: "read".into(),
            created_at: 1_600_000_000,
            email: email.map(address),
        },
        email_verified: verified,
        disabled: false,
    }
}

conformance! {
    /// Issue 31: an import batch creates what is new, skips (or with `update` replaces)
    /// what exists, refuses look-alikes and addresses another account verified, and a
    /// dry run keeps nothing.
    async fn an_import_creates_skips_updates_and_refuses_per_account(db) {
        use portcullis_store::ImportOutcome::*;
        let s = db.store.as_ref();
        user_with_email(s, "paypal", "pp@example.com", true).await;
        let batch = vec![
            imported("ann", "$2b$10$a", Some("ann@example.com"), true),
            imported("paypal", "$2b$10$b", None, false),
            imported("pаypal", "$2b$10$c", None, false), // a Cyrillic а
            imported("cy", "$2b$10$d", Some("PP@example.com"), true),
            imported("ann", "$2b$10$e", None, false),
        ];
        let dry = s.import_users(&batch, false, true).await.unwrap();
        assert!(matches!(dry[..], [Imported, Skipped, Refused(_), Refused(_), Skipped]), "{dry:?}");
        assert!(s.user_by_username("ann").await.unwrap().is_none(), "a dry run keeps nothing");
        let done = s.import_users(&batch, false, false).await.unwrap();
        assert_eq!(done, dry);
        let ann = s.user_by_username("ann").await.unwrap().unwrap();
        assert_eq!((ann.password_hash.as_str(), ann.email_verified, ann.created_at), ("$2b$10$a", true, 1_600_000_000));
        assert_eq!(s.user_by_username("paypal").await.unwrap().unwrap().password_hash, "$argon2id$stub");
        // Again: everything there is skipped; with update, replaced.
        let again = s.import_users(&batch[..2], false, false).await.unwrap();
        assert_eq!(again, [Skipped, Skipped]);
        let mut changed = imported("ann", "$2b$10$z", None, false);
        changed.disabled = true;
        assert_eq!(s.import_users(&[changed], true, false).await.unwrap(), [Updated]);
        let ann = s.user_by_username("ann").await.unwrap().unwrap();
        assert_eq!((ann.password_hash.as_str(), ann.disabled, ann.email), ("$2b$10$z", true, None));
    }
}

/// A challenge of `uid`'s password step, as a login makes it.
async fn challenge_for(s: &dyn Store, uid: &str, n: u8, not_before: i64) -> TokenHash {
    s.create_challenge(&NewChallenge {
        hash: hash(n),
        user_id: uid.into(),
        not_before,
        device: None,
        created_at: 1000,
        expires_at: 1300,
        first_step: "pwd".into(),
    })
    .await
    .unwrap();
    hash(n)
}

conformance! {
    /// Enrolment, confirmation and the `factors` column move together; a TOTP step is
    /// spent once and never an earlier one; a recovery code once; a challenge once,
    /// within its attempts and time, and not after a revocation.
    async fn second_factors_are_spent_once(db) {
        let s = db.store.as_ref();
        let uid = user(s, "fay").await;
        assert!(s.begin_totp(&uid, "sealed-1", 1000).await.unwrap());
        assert!(s.begin_totp(&uid, "sealed-2", 1001).await.unwrap(), "an unconfirmed one is replaced");
        assert_eq!(s.user_by_id(&uid).await.unwrap().unwrap().factors, "");
        let codes = [hash(201), hash(202)];
        assert!(s.confirm_totp(&uid, 50, &codes, 1002).await.unwrap());
        assert!(!s.confirm_totp(&uid, 51, &codes, 1002).await.unwrap(), "confirmed once");
        assert!(!s.begin_totp(&uid, "sealed-3", 1003).await.unwrap(), "a confirmed one stays");
        let stored = s.totp_of(&uid).await.unwrap().unwrap();
        assert_eq!((stored.sealed_secret.as_str(), stored.last_step), ("sealed-2", 50));
        assert_eq!(s.user_by_id(&uid).await.unwrap().unwrap().factors, "totp");
        assert_eq!(s.recovery_codes_left(&uid).await.unwrap(), (2, None));

        let c = challenge_for(s, &uid, 1, 0).await;
        assert_eq!(s.complete_challenge(&c, SecondFactor::Totp { step: 50, failure_limit: 100 }, 1010).await.unwrap(), Completion::Refused, "the confirmation's step");
        assert_eq!(s.complete_challenge(&c, SecondFactor::Totp { step: 49, failure_limit: 100 }, 1010).await.unwrap(), Completion::Refused);
        assert!(matches!(s.complete_challenge(&c, SecondFactor::Totp { step: 51, failure_limit: 100 }, 1010).await.unwrap(), Completion::Done(u) if u.id == uid));
        assert_eq!(s.complete_challenge(&c, SecondFactor::Totp { step: 52, failure_limit: 100 }, 1010).await.unwrap(), Completion::Invalid, "used");
        let c = challenge_for(s, &uid, 2, 0).await;
        assert!(matches!(s.complete_challenge(&c, SecondFactor::RecoveryCode(&hash(201)), 1011).await.unwrap(), Completion::Done(_)));
        let c = challenge_for(s, &uid, 3, 0).await;
        assert_eq!(s.complete_challenge(&c, SecondFactor::RecoveryCode(&hash(201)), 1012).await.unwrap(), Completion::Refused);
        assert_eq!(s.complete_challenge(&c, SecondFactor::RecoveryCode(&hash(99)), 1012).await.unwrap(), Completion::Refused);
        assert_eq!(s.recovery_codes_left(&uid).await.unwrap(), (1, Some(1011)));
        // Attempts and time.
        for n in 1..=3 {
            assert_eq!(s.try_challenge(&c, 3, 1012).await.unwrap().unwrap().attempts, n);
        }
        assert_eq!(s.try_challenge(&c, 3, 1012).await.unwrap(), None, "out of attempts");
        let late = challenge_for(s, &uid, 4, 0).await;
        assert_eq!(s.try_challenge(&late, 3, 1300).await.unwrap(), None, "expired");
        assert_eq!(s.complete_challenge(&late, SecondFactor::Totp { step: 60, failure_limit: 100 }, 1300).await.unwrap(), Completion::Invalid);
        // A logout everywhere moves "not before": the challenges made before are void.
        let before = challenge_for(s, &uid, 5, 0).await;
        s.revoke_user(&uid, 1020).await.unwrap();
        assert_eq!(s.complete_challenge(&before, SecondFactor::Totp { step: 60, failure_limit: 100 }, 1021).await.unwrap(), Completion::Invalid);
        // Concurrent completions with one step on ten challenges: one wins.
        let not_before = s.user_by_id(&uid).await.unwrap().unwrap().not_before;
        let mut tasks = Vec::new();
        for n in 10..20u8 {
            let c = challenge_for(s, &uid, n, not_before).await;
            let store = db.store.clone();
            tasks.push(tokio::spawn(async move {
                store.complete_challenge(&c, SecondFactor::Totp { step: 70, failure_limit: 100 }, 1030).await.unwrap()
            }));
        }
        let mut done = 0;
        for t in tasks {
            match t.await.unwrap() {
                Completion::Done(_) => done += 1,
                Completion::Refused => {}
                other @ (Completion::Invalid | Completion::Locked) => {
                    panic!("{}: a live challenge, no failures: {other:?}", s.backend())
                }
            }
        }
        assert_eq!(done, 1, "{}: one step, one sign-in", s.backend());
        // Wrong codes counted up to the limit lock codes, right ones too; a success
        // by recovery code starts the count over.
        for n in 1..=3 {
            assert_eq!(s.count_factor_failure(&uid).await.unwrap(), n);
        }
        let c = challenge_for(s, &uid, 30, not_before).await;
        assert_eq!(s.complete_challenge(&c, SecondFactor::Totp { step: 90, failure_limit: 3 }, 1031).await.unwrap(), Completion::Locked);
        assert!(matches!(s.complete_challenge(&c, SecondFactor::RecoveryCode(&hash(202)), 1031).await.unwrap(), Completion::Done(_)));
        let c = challenge_for(s, &uid, 31, not_before).await;
        assert!(matches!(s.complete_challenge(&c, SecondFactor::Totp { step: 90, failure_limit: 3 }, 1032).await.unwrap(), Completion::Done(_)));
        assert_eq!(s.count_factor_failure(&uid).await.unwrap(), 1);
        // Removal takes the codes when no factor is left; a reset takes everything.
        assert!(s.remove_totp(&uid).await.unwrap());
        assert_eq!(s.user_by_id(&uid).await.unwrap().unwrap().factors, "");
        assert_eq!(s.recovery_codes_left(&uid).await.unwrap().0, 0);
        assert!(!s.replace_recovery_codes(&uid, &codes, 1040).await.unwrap(), "no factor, no codes");
        assert!(s.begin_totp(&uid, "sealed-4", 1041).await.unwrap());
        assert!(s.confirm_totp(&uid, 80, &codes, 1042).await.unwrap());
        let events = s.last_event_id().await.unwrap();
        assert!(s.reset_factors(&uid, 1050).await.unwrap().is_some());
        assert_eq!(s.user_by_id(&uid).await.unwrap().unwrap().factors, "");
        assert_eq!(s.totp_of(&uid).await.unwrap(), None);
        assert!(s.events_after(events, 10).await.unwrap().iter().any(|e| e.kind == EventKind::FactorsReset && e.subject == uid));
        assert_eq!(s.reset_factors("nobody", 1050).await.unwrap(), None);
    }
}

conformance! {
    /// Passkeys: an id is one account's, an account keeps `max`, `factors` says
    /// `webauthn`; a ceremony is taken once, before it expires.
    async fn passkeys_and_ceremonies(db) {
        let s = db.store.as_ref();
        let (ann, bo) = (user(s, "ann").await, user(s, "bo").await);
        let key = |id: &str, user: &str| NewPasskey {
            id: id.into(),
            user_id: user.into(),
            label: "Laptop".into(),
            credential: "{}".into(),
        };
        assert!(s.add_passkey(&key("k1", &ann), 2, 10).await.unwrap());
        assert!(!s.add_passkey(&key("k1", &bo), 2, 10).await.unwrap(), "another account's id");
        assert!(s.add_passkey(&key("k2", &ann), 2, 11).await.unwrap());
        assert!(!s.add_passkey(&key("k3", &ann), 2, 12).await.unwrap(), "at most two here");
        assert_eq!(s.user_by_id(&ann).await.unwrap().unwrap().factors, "webauthn");
        assert_eq!(s.passkeys_of(&ann).await.unwrap().iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["k1", "k2"]);
        s.touch_passkey("k1", "{\"n\":1}", 20).await.unwrap();
        let k1 = s.passkey("k1").await.unwrap().unwrap();
        assert_eq!((k1.credential.as_str(), k1.last_used_at), ("{\"n\":1}", Some(20)));
        assert!(s.begin_totp(&ann, "sealed", 21).await.unwrap());
        assert!(s.confirm_totp(&ann, 5, &[hash(90)], 22).await.unwrap());
        assert_eq!(s.user_by_id(&ann).await.unwrap().unwrap().factors, "totp webauthn");
        assert!(!s.remove_passkey(&bo, "k1").await.unwrap(), "not Bo's");
        assert!(s.remove_passkey(&ann, "k1").await.unwrap());
        assert!(s.remove_passkey(&ann, "k2").await.unwrap());
        assert_eq!(s.user_by_id(&ann).await.unwrap().unwrap().factors, "totp");
        assert_eq!(s.recovery_codes_left(&ann).await.unwrap().0, 1, "the app still stands");
        assert!(s.remove_totp(&ann).await.unwrap());
        assert_eq!(s.recovery_codes_left(&ann).await.unwrap().0, 0);
        // Ceremonies.
        let ceremony = |n: u8, expires_at: i64| NewCeremony {
            hash: hash(n),
            kind: CeremonyKind::SecondStep,
            user_id: Some(ann.clone()),
            challenge: Some(hash(77)),
            state: "{}".into(),
            expires_at,
        };
        s.create_ceremony(&ceremony(1, 100)).await.unwrap();
        s.create_ceremony(&ceremony(2, 100)).await.unwrap();
        let taken = s.take_ceremony(&hash(1), 50).await.unwrap().unwrap();
        assert_eq!((taken.kind, taken.user_id.as_deref(), taken.challenge), (CeremonyKind::SecondStep, Some(ann.as_str()), Some(hash(77))));
        assert_eq!(s.take_ceremony(&hash(1), 50).await.unwrap(), None, "once");
        assert_eq!(s.take_ceremony(&hash(2), 100).await.unwrap(), None, "expired");
        assert_eq!(s.take_ceremony(&hash(3), 50).await.unwrap(), None, "unknown");
    }
}

conformance! {
    /// Issue 25: an audit record and its webhook message are written together, the
    /// message once for each endpoint subscribed to its event (or to `*`); deliveries
    /// are claimed once, retried, given up on and counted; the trail filters and
    /// pages; erasure blanks an account's addresses; retention prunes.
    async fn the_audit_trail_and_the_webhook_outbox(db) {
        use portcullis_store::{AuditFilter, NewAudit, NewWebhook, WebhookEvent};
        let s = db.store.as_ref();
        let hook = |id: &str, events: &str| NewWebhook {
            id: id.into(),
            url: format!("https://{id}.example/"),
            events: events.into(),
            sealed_secret: "sealed".into(),
        };
        s.add_webhook(&hook("a", "user.created user.deleted"), 10).await.unwrap();
        s.add_webhook(&hook("b", "*"), 11).await.unwrap();
        s.add_webhook(&hook("c", "user.created_extra"), 12).await.unwrap();
        let uid = user(s, "ann").await;
        let record = |kind: &str, event: Option<&str>| NewAudit {
            kind: kind.into(),
            actor: Some(format!("user:{uid}")),
            subject: Some(uid.clone()),
            address: Some("192.0.2.1".into()),
            user_agent: Some("test".into()),
            detail: "{}".into(),
            webhook: event.map(|e| WebhookEvent {
                event: e.into(),
                message_id: format!("msg_{kind}"),
                payload: "{}".into(),
            }),
        };
        let first = s.append_audit(&record("user.created", Some("user.created")), 100).await.unwrap();
        let second = s.append_audit(&record("login.failed", None), 101).await.unwrap();
        assert!(second > first);
        s.append_audit(&NewAudit { kind: "login.failed".into(), detail: "{}".into(), ..Default::default() }, 102).await.unwrap();
        // a and b get user.created; c's "user.created_extra" is no match.
        let claimed = s.claim_deliveries(100, 30, 10).await.unwrap();
        let mut to: Vec<&str> = claimed.iter().map(|d| d.webhook_id.as_str()).collect();
        to.sort_unstable();
        assert_eq!(to, ["a", "b"]);
        assert_eq!(claimed[0].url, format!("https://{}.example/", claimed[0].webhook_id));
        assert!(s.claim_deliveries(100, 30, 10).await.unwrap().is_empty(), "claimed once");
        s.delivery_done(claimed[0].id, 101).await.unwrap();
        s.delivery_failed(claimed[1].id, 101, "the receiver answered 500", Some(200)).await.unwrap();
        assert!(s.claim_deliveries(150, 30, 10).await.unwrap().is_empty(), "not due yet");
        let again = s.claim_deliveries(200, 30, 10).await.unwrap();
        assert_eq!((again.len(), again[0].attempts), (1, 2));
        s.delivery_failed(again[0].id, 201, "gave up", None).await.unwrap();
        let infos = s.webhooks().await.unwrap();
        let counts: Vec<(&str, i64, i64, i64, Option<&str>)> = infos.iter()
            .map(|w| (w.id.as_str(), w.waiting, w.delivered, w.failed, w.last_error.as_deref())).collect();
        let failed_one = claimed[1].webhook_id.as_str();
        for (id, waiting, delivered, failed, error) in counts {
            match id {
                "c" => assert_eq!((waiting, delivered, failed, error), (0, 0, 0, None)),
                id if id == failed_one => assert_eq!((waiting, delivered, failed, error), (0, 0, 1, Some("gave up"))),
                _ => assert_eq!((waiting, delivered, failed, error), (0, 1, 0, None)),
            }
        }
        // A test message to one endpoint; removing it takes what waits with it.
        let test = WebhookEvent { event: "webhook.test".into(), message_id: "msg_t".into(), payload: "{}".into() };
        assert!(s.enqueue_webhook("c", &test, 300).await.unwrap());
        assert!(!s.enqueue_webhook("zz", &test, 300).await.unwrap());
        assert!(s.remove_webhook("c").await.unwrap());
        assert!(!s.remove_webhook("c").await.unwrap());
        assert!(s.claim_deliveries(300, 30, 10).await.unwrap().is_empty());
        // Filters and pages.
        let all = s.audit(&AuditFilter { limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!(all.len(), 3);
        let about = s.audit(&AuditFilter { subject: Some(&uid), limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!(about.len(), 2);
        let failed = s.audit(&AuditFilter { kind: Some("login.failed"), after: Some(second), limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!((failed.len(), failed[0].subject.as_deref()), (1, None));
        let recent = s.audit(&AuditFilter { since: Some(101), limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!(recent.len(), 2);
        // Erasure keeps the rows under the id, without the address or agent.
        assert!(matches!(s.delete_user(&uid, "admin", 400).await.unwrap(), portcullis_store::Deleted::Done(_)));
        let about = s.audit(&AuditFilter { subject: Some(&uid), limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!(about.len(), 2);
        assert!(about.iter().all(|r| r.address.is_none() && r.user_agent.is_none()));
        // audit_kept is 5,000 s: at 5,101 the row of 100 goes.
        let pruned = s.prune(5_101, &retention(100)).await.unwrap();
        assert_eq!(pruned.audit, 1);
        assert_eq!(pruned.deliveries, 2, "made or given up on over mail_kept ago");
        // Sealed secrets, for rewrap.
        let sealed = s.sealed_webhook_secrets().await.unwrap();
        assert_eq!(sealed.len(), 2);
        assert!(s.reseal_webhook_secret("a", "sealed", "resealed").await.unwrap());
        assert!(!s.reseal_webhook_secret("a", "sealed", "again").await.unwrap(), "only if unchanged");
    }
}

fn corp(name: &str) -> portcullis_store::Provider {
    portcullis_store::Provider {
        name: name.into(),
        kind: "oidc".into(),
        issuer: "https://id.example.com".into(),
        client_id: "portcullis".into(),
        sealed_secret: Some("enc:v2:kek:sealed".into()),
        scope: "openid email".into(),
        display_name: "Corp".into(),
        created_at: 10,
    }
}

fn identity(provider: &str, subject: &str, user_id: &str) -> portcullis_store::LinkedIdentity {
    portcullis_store::LinkedIdentity {
        provider: provider.into(),
        subject: subject.into(),
        user_id: user_id.into(),
        label: subject.into(),
        created_at: 20,
        last_used_at: 20,
    }
}

fn passwordless(name: &str, email: Option<&str>) -> NewUser {
    NewUser {
        id: format!("id-{name}"),
        username: name.into(),
        skeleton: portcullis::username::skeleton(name),
        password_hash: String::new(),
        scope: "read".into(),
        created_at: 1,
        email: email.map(address),
    }
}

conformance! {
    /// Providers are registered once by name and removed without their links; an
    /// account made through one has no password and is found by the identity only.
    async fn providers_and_the_accounts_they_make(db) {
        use portcullis_store::{Linked, Unlinked};
        let s = db.store.as_ref();
        s.add_provider(&corp("corp")).await.unwrap();
        assert!(matches!(s.add_provider(&corp("corp")).await, Err(Error::Conflict)));
        assert_eq!(s.providers().await.unwrap(), vec![corp("corp")]);
        assert!(s.set_provider_secret("corp", "enc:v2:new:sealed").await.unwrap());
        assert!(!s.set_provider_secret("other", "x").await.unwrap());
        assert_eq!(
            s.providers().await.unwrap()[0].sealed_secret.as_deref(),
            Some("enc:v2:new:sealed")
        );

        let ada = s
            .create_user_with_identity(passwordless("ada", Some("ada@example.com")), true, &identity("corp", "s-ada", ""))
            .await
            .unwrap();
        assert!(!ada.has_password() && ada.email_verified);
        let found = s.identity_owner("corp", "s-ada", 30).await.unwrap().unwrap();
        assert_eq!(found.id, ada.id);
        assert_eq!(s.identities_of(&ada.id).await.unwrap()[0].last_used_at, 30);
        assert!(s.identity_owner("corp", "nobody", 30).await.unwrap().is_none());
        // The same subject at another provider is another person.
        assert!(s.identity_owner("elsewhere", "s-ada", 30).await.unwrap().is_none());

        // Creating a second account for a linked identity, or with an address another
        // account has proven, writes nothing.
        let users = s.list_users().await.unwrap().len();
        assert!(matches!(
            s.create_user_with_identity(passwordless("ada2", None), false, &identity("corp", "s-ada", "")).await,
            Err(Error::Conflict)
        ));
        assert!(matches!(
            s.create_user_with_identity(passwordless("ada3", Some("ADA@example.com")), true, &identity("corp", "s-other", "")).await,
            Err(Error::Conflict)
        ));
        assert_eq!(s.list_users().await.unwrap().len(), users);
        assert!(s.identity_owner("corp", "s-other", 30).await.unwrap().is_none());

        // Linking: to an account, once; never to a second account; one per provider.
        let bob = user(s, "bob").await;
        assert_eq!(s.link_identity(&identity("corp", "s-bob", &bob)).await.unwrap(), Linked::Done);
        assert_eq!(s.link_identity(&identity("corp", "s-bob", &bob)).await.unwrap(), Linked::Already);
        assert_eq!(
            s.link_identity(&identity("corp", "s-ada", &bob)).await.unwrap(),
            Linked::Taken(ada.id.clone())
        );
        assert!(matches!(s.link_identity(&identity("corp", "s-bob-2", &bob)).await, Err(Error::Conflict)));
        s.set_disabled("bob", true).await.unwrap();
        assert_eq!(
            s.link_identity(&identity("other", "s-bob", &bob)).await.unwrap(),
            Linked::NoAccount
        );

        // Unlinking: never the last way in; a password is a way in.
        assert_eq!(s.unlink_identity(&ada.id, "corp").await.unwrap(), Unlinked::LastWayIn);
        assert_eq!(s.unlink_identity(&ada.id, "other").await.unwrap(), Unlinked::NotFound);
        assert_eq!(s.unlink_identity(&bob, "corp").await.unwrap(), Unlinked::Done);
        assert!(s.identity_owner("corp", "s-bob", 40).await.unwrap().is_none());

        // Removing the provider keeps the link; the account's erasure takes it.
        assert!(s.remove_provider("corp").await.unwrap());
        assert!(!s.remove_provider("corp").await.unwrap());
        assert!(s.providers().await.unwrap().is_empty());
        assert_eq!(s.identities_of(&ada.id).await.unwrap().len(), 1);
        s.delete_user(&ada.id, "admin", 50).await.unwrap();
        assert!(s.identities_of(&ada.id).await.unwrap().is_empty());
    }
}

conformance! {
    /// An account with no password and two links: two unlinks at once, on two
    /// instances, leave one link (the account's row is locked first).
    async fn two_unlinks_at_once_leave_a_way_in(db) {
        use portcullis_store::Unlinked;
        let s = db.store.clone();
        let other = db.another_instance().await;
        for round in 0..10 {
            let name = format!("cy{round}");
            let cy = s
                .create_user_with_identity(passwordless(&name, None), false, &identity("corp", &name, ""))
                .await
                .unwrap();
            s.link_identity(&identity("hub", &name, &cy.id)).await.unwrap();
            let (a, b) = tokio::join!(
                s.unlink_identity(&cy.id, "corp"),
                other.unlink_identity(&cy.id, "hub"),
            );
            let mut outcomes = [a.unwrap(), b.unwrap()];
            outcomes.sort_by_key(|o| format!("{o:?}"));
            assert_eq!(outcomes, [Unlinked::Done, Unlinked::LastWayIn], "round {round}");
            assert_eq!(s.identities_of(&cy.id).await.unwrap().len(), 1);
        }
    }
}
