//! A real server on a random port, on a fresh SQLite file or a fresh PostgreSQL database.

use std::time::Duration;

use portcullis_server::config::Config;
use portcullis_server::startup::{self, Running};
use serde_json::{Value, json};

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub database_url: String,
    running: Option<Running>,
    _dir: Option<tempfile::TempDir>,
}

/// A new, empty PostgreSQL database for one test.
pub async fn fresh_postgres() -> Option<String> {
    let admin = std::env::var("PORTCULLIS_TEST_POSTGRES").ok()?;
    let name = format!(
        "pc_test_{}",
        portcullis::jwt::random_id()
            .unwrap()
            .to_lowercase()
            .replace(['-', '_'], "")
    );
    let pool = sqlx::PgPool::connect(&admin)
        .await
        .expect("PORTCULLIS_TEST_POSTGRES must be reachable");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (base, _) = admin.rsplit_once('/').unwrap();
    Some(format!("{base}/{name}"))
}

pub fn config(database_url: &str) -> Config {
    let mut c = Config::defaults().unwrap();
    c.bind = "127.0.0.1:0".parse().unwrap();
    c.database_url = database_url.to_owned();
    c.issuer = "http://portcullis.test".into();
    c.audience = "http://portcullis.test".into();
    c.sessions =
        portcullis::session::SessionConfig::insecure_allow_http("http://portcullis.test").unwrap();
    c.hash_concurrency = 2;
    c.event_poll_interval = Duration::from_millis(100);
    // Tests create many accounts from 127.0.0.1; the signup tests set their own budget.
    c.signups_before_delay = 10_000;
    // SQLite keeps its key-encryption key beside the database (the default); PostgreSQL
    // needs one configured, the same for every instance of a test.
    if database_url.starts_with("postgres") {
        c.kek.inline = Some(zeroize::Zeroizing::new(TEST_KEK.to_owned()));
    }
    c
}

/// The key-encryption key of PostgreSQL test databases (32 bytes, base64url).
pub const TEST_KEK: &str = "cG9ydGN1bGxpcy10ZXN0LWtleS1lbmNyeXB0aW9uISE";

/// Sends the servers' log to libtest's captured output: a test that passes shows
/// nothing, a failing one prints its server's log (`RUST_LOG` filters, default info;
/// `--nocapture` shows it live).
fn test_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .with_ansi(false)
            .try_init();
    });
}

impl TestServer {
    pub async fn start(config: Config) -> TestServer {
        Self::start_with(config, std::sync::Arc::new(portcullis::clock::SystemClock)).await
    }

    /// With an injected clock, for tests about time.
    pub async fn start_with(
        config: Config,
        clock: std::sync::Arc<dyn portcullis::clock::Clock>,
    ) -> TestServer {
        test_log();
        let database_url = config.database_url.clone();
        let running = startup::start_with(config, clock)
            .await
            .expect("server starts");
        TestServer {
            base: format!("http://{}", running.addr),
            client: reqwest::Client::new(),
            database_url,
            running: Some(running),
            _dir: None,
        }
    }

    pub fn keep_dir(mut self, dir: Option<tempfile::TempDir>) -> Self {
        self._dir = dir;
        self
    }

    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        self.running.take().unwrap().stop().await.unwrap();
        self._dir.take()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn signup(&self, username: &str, password: &str) -> reqwest::Response {
        self.post(
            "/auth/signup",
            json!({ "username": username, "password": password }),
        )
        .await
    }

    pub async fn login(&self, username: &str, password: &str) -> reqwest::Response {
        self.post(
            "/auth/login",
            json!({ "username": username, "password": password }),
        )
        .await
    }

    /// Signs up and logs in; returns the token response.
    pub async fn account(&self, username: &str) -> Value {
        assert_eq!(
            self.signup(username, "correct horse battery")
                .await
                .status(),
            201
        );
        let r = self.login(username, "correct horse battery").await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    pub async fn me(&self, access: &str) -> reqwest::Response {
        self.client
            .get(self.url("/auth/me"))
            .bearer_auth(access)
            .send()
            .await
            .unwrap()
    }

    pub async fn refresh(&self, refresh: &str) -> reqwest::Response {
        self.post("/auth/refresh", json!({ "refresh_token": refresh }))
            .await
    }
}

pub fn s(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
        .to_owned()
}

/// A clock that stands still at the present until the test moves it: delays and
/// lifetimes end only when the test says so, whatever the machine's speed.
pub fn still_clock() -> std::sync::Arc<portcullis::clock::ManualClock> {
    let now = portcullis::clock::Clock::now(&portcullis::clock::SystemClock);
    std::sync::Arc::new(portcullis::clock::ManualClock::new(now))
}

/// Drops a test database (connections still open to it are ended). Called when a test
/// passed; a failed test leaves its database for a look, and `.ci/run` drops leftovers.
pub async fn drop_postgres(url: &str) {
    let Ok(admin) = std::env::var("PORTCULLIS_TEST_POSTGRES") else {
        return;
    };
    let Some((_, name)) = url.rsplit_once('/') else {
        return;
    };
    let pool = sqlx::PgPool::connect(&admin).await.unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

/// A fresh SQLite database in a folder of its own.
pub fn sqlite_db() -> (String, Option<tempfile::TempDir>) {
    let dir = tempfile::tempdir().unwrap();
    (
        format!("sqlite://{}", dir.path().join("test.db").display()),
        Some(dir),
    )
}

/// One test body, run as two named tests: `NAME::sqlite` and `NAME::postgres` (the
/// latter says it skipped when `PORTCULLIS_TEST_POSTGRES` is not set).
macro_rules! on_each_store {
    ($(#[$meta:meta])* async fn $name:ident($url:ident, $dir:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($url: String, $dir: Option<tempfile::TempDir>) $body

            #[tokio::test]
            async fn sqlite() {
                let (url, dir) = crate::support::sqlite_db();
                run(url, dir).await;
            }

            #[tokio::test]
            async fn postgres() {
                match crate::support::fresh_postgres().await {
                    Some(url) => {
                        run(url.clone(), None).await;
                        crate::support::drop_postgres(&url).await;
                    }
                    None => eprintln!("skipped: PORTCULLIS_TEST_POSTGRES is not set"),
                }
            }
        }
    };
}
pub(crate) use on_each_store;

/// Polls `check` for up to three seconds (instances look at the clock and the event log
/// every second or faster).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The claims of a token, unverified (the test issued it).
pub fn claims_of(token: &str) -> Value {
    let (_, payload) = portcullis::jwt::jws::insecure_decode(token, 8192).unwrap();
    serde_json::from_slice(&payload).unwrap()
}
