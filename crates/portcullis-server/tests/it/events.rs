//! Instances on one PostgreSQL database hear of each other's revocations through
//! LISTEN/NOTIFY, not by polling: these instances poll ten minutes apart, so what they
//! learn within seconds they learned by notification (with the listener off, both
//! checks fail: tried by disabling it).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{TestServer, config, s};

/// An instance that hears of other instances' events only by `LISTEN`.
fn notified_only(url: &str) -> portcullis_server::config::Config {
    let mut c = config(url);
    c.event_poll_interval = Duration::from_secs(600);
    c
}

/// Waits until `b` refuses `access`, failing after `limit`.
async fn refused_within(b: &TestServer, access: &str, limit: Duration, what: &str) {
    let start = Instant::now();
    while b.me(access).await.status() != 401 {
        assert!(
            start.elapsed() < limit,
            "{what}: still accepted after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn postgres_instances_hear_revocations_by_notification_not_by_polling() {
    let Some(url) = crate::support::fresh_postgres().await else {
        eprintln!("PORTCULLIS_TEST_POSTGRES not set: skipping");
        return;
    };
    let a = TestServer::start(notified_only(&url)).await;
    let b = TestServer::start(notified_only(&url)).await;
    let first = a.account("olga").await;
    let second = a.login("olga", "correct horse battery").await;
    assert_eq!(second.status(), 200);
    let second: serde_json::Value = second.json().await.unwrap();
    for tokens in [&first, &second] {
        assert_eq!(b.me(&s(tokens, "access_token")).await.status(), 200);
    }

    // A logout on A reaches B at once.
    let r = a
        .post(
            "/auth/logout",
            json!({"refresh_token": s(&first, "refresh_token")}),
        )
        .await;
    assert_eq!(r.status(), 204);
    refused_within(
        &b,
        &s(&first, "access_token"),
        Duration::from_secs(1),
        "a logout",
    )
    .await;

    // After the database cut every connection (a restart), the listener connects
    // again within about a second and reads what it missed.
    let db = url.rsplit('/').next().unwrap().to_owned();
    let admin = sqlx::PgPool::connect(&std::env::var("PORTCULLIS_TEST_POSTGRES").unwrap())
        .await
        .unwrap();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&db)
    .execute(&admin)
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = a
        .post(
            "/auth/logout",
            json!({"refresh_token": s(&second, "refresh_token")}),
        )
        .await;
    assert_eq!(r.status(), 204);
    refused_within(
        &b,
        &s(&second, "access_token"),
        Duration::from_secs(3),
        "a logout after the connections were cut",
    )
    .await;
    admin.close().await;
    a.stop().await;
    b.stop().await;
    crate::support::drop_postgres(&url).await;
}

/// Issue 28, finding 11: a PostgreSQL start refused for want of a key-encryption key
/// says so before it touches the database (it used to create every table first).
#[tokio::test]
async fn a_postgres_start_without_a_key_encryption_key_writes_nothing() {
    let Some(url) = crate::support::fresh_postgres().await else {
        eprintln!("skipped: PORTCULLIS_TEST_POSTGRES is not set");
        return;
    };
    let mut c = config(&url);
    c.kek.inline = None;
    c.kek.file = None;
    let err = match portcullis_server::startup::start(c).await {
        Ok(_) => panic!("started without a key-encryption key"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("PORTCULLIS_KEY_ENCRYPTION_KEY"), "{err}");
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let (tables,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(tables, 0, "nothing was written");
    crate::support::drop_postgres(&url).await;
}
