//! Per-request cost of authentication, tokens against sessions, measured side by side:
//!
//! 1. **In process**, the strategy alone (what the middleware runs on every request):
//!    a bearer token already verified (cached), a bearer token verified afresh (one
//!    Ed25519 signature check), and a session cookie looked up in memory, in SQLite
//!    and (with `--postgres URL`) in PostgreSQL.
//! 2. **Over HTTP**, the real server (in process, SQLite, one keep-alive connection):
//!    `GET /auth/me` with the bearer token against the same with the cookie.
//!
//! Paired and interleaved (see `crates/portcullis/benches/common/paired.rs`): every
//! round runs a batch of each contender back to back, so the machine's drift falls on
//! all of them alike. docs/tokens-vs-sessions.md reports a run.
//!
//! Run: `cargo run --release -p portcullis-load --bin auth-cost -- [--postgres URL]`
//! (the PostgreSQL database is written to: a user and its sessions are added).

// A benchmark that cannot set up should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../../crates/portcullis/benches/common/paired.rs"]
mod paired;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use http::request::Parts;
use paired::{median, paired_rounds, percentile, time};
use portcullis::clock::SystemClock;
use portcullis::jwt::{TokenBuilder, Validation, Verifier, random_id};
use portcullis::keys::{Algorithm, KeySet, SigningKey};
use portcullis::session::{MemorySessionStore, SessionConfig, SessionStore, Sessions};
use portcullis::strategy::{Bearer, Chain, Session};
use portcullis_store::{NewUser, Store};

#[derive(Parser)]
#[command(about = "Per-request cost of a session lookup against token verification")]
struct Args {
    /// Also measure sessions in this PostgreSQL database.
    #[arg(long)]
    postgres: Option<String>,
    /// Rounds per measurement.
    #[arg(long, default_value_t = 301)]
    rounds: usize,
}

const ORIGIN: &str = "https://app.example";

fn parts(header: (&str, &str)) -> Parts {
    http::Request::get("/me")
        .header(header.0, header.1)
        .body(())
        .unwrap()
        .into_parts()
        .0
}

/// A session in `store` for a user the store knows (SQL stores refuse sessions of
/// unknown or disabled users); its request parts.
async fn session_request(store: Arc<dyn SessionStore>, user: &str) -> (Sessions, Parts) {
    let config = SessionConfig::for_origin(ORIGIN).unwrap();
    let sessions = Sessions::new(store, config, Arc::new(SystemClock));
    let started = sessions.start(user, "read", "bench").await.unwrap();
    let cookie = started
        .set_cookie
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    (sessions, parts(("cookie", &cookie)))
}

async fn sql_user(store: &dyn Store) -> String {
    let id = random_id().unwrap();
    let username = format!("bench-{}", id.to_lowercase());
    store
        .create_user(NewUser {
            id: id.clone(),
            skeleton: portcullis::username::skeleton(&username),
            username,
            password_hash: "$argon2id$not-used".into(),
            scope: "read".into(),
            created_at: 0,
            email: None,
        })
        .await
        .unwrap();
    id
}

fn strategies(verifier: Arc<Verifier>) -> Chain {
    Chain::new().with(Bearer::new(verifier))
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();

    // Tokens.
    let key = SigningKey::generate(Algorithm::EdDSA, Some("k1".into())).unwrap();
    let keys = KeySet::new(vec![key.verifying_key().unwrap()]).unwrap();
    let policy = || {
        Validation::builder()
            .issuer(ORIGIN)
            .audience("api")
            .build()
            .unwrap()
    };
    let token = TokenBuilder::access_token(ORIGIN, "api")
        .subject("user-1")
        .session_id("s1")
        .scope("read")
        .expires_in(Duration::from_secs(900))
        .sign(&key)
        .unwrap();
    let bearer_parts = parts(("authorization", &format!("Bearer {token}")));
    let cached = strategies(Arc::new(Verifier::new(keys.clone(), policy())));
    let fresh = strategies(Arc::new(Verifier::new(keys, policy()).with_cache(0, 0)));

    // Sessions.
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Store> = rt
        .block_on(portcullis_store::open(&format!(
            "sqlite://{}",
            dir.path().join("bench.db").display()
        )))
        .unwrap();
    let sqlite_user = rt.block_on(sql_user(sqlite.as_ref()));
    let (memory_sessions, memory_parts) = rt.block_on(session_request(
        Arc::new(MemorySessionStore::new()),
        "user-1",
    ));
    let (sqlite_sessions, sqlite_parts) =
        rt.block_on(session_request(sqlite.clone(), &sqlite_user));
    let postgres = args.postgres.as_deref().map(|url| {
        let store: Arc<dyn Store> = rt.block_on(portcullis_store::open(url)).unwrap();
        let user = rt.block_on(sql_user(store.as_ref()));
        rt.block_on(session_request(store, &user))
    });
    let chain_of = |s: &Sessions| Chain::new().with(Session::new(s.clone()));
    let (memory, sqlite_chain) = (chain_of(&memory_sessions), chain_of(&sqlite_sessions));
    let pg_chain = postgres.as_ref().map(|(s, _)| chain_of(s));

    let run = |chain: &Chain, p: &Parts| {
        let identity = rt.block_on(chain.authenticate(black_box(p))).unwrap();
        black_box(identity.expect("authenticated"));
    };
    // Every contender pays the same block_on, so the differences are the strategies'.
    let c_cached = || run(&cached, &bearer_parts);
    let c_fresh = || run(&fresh, &bearer_parts);
    let c_memory = || run(&memory, &memory_parts);
    let c_sqlite = || run(&sqlite_chain, &sqlite_parts);
    let c_pg = || {
        if let (Some(chain), Some((_, p))) = (&pg_chain, &postgres) {
            run(chain, p);
        }
    };
    let mut contenders: Vec<(&'static str, &dyn Fn())> = vec![
        ("bearer token, already verified (cache hit)", &c_cached),
        ("bearer token, verified afresh (Ed25519)", &c_fresh),
        ("session cookie, in-memory store", &c_memory),
        ("session cookie, SQLite (file, WAL)", &c_sqlite),
    ];
    if postgres.is_some() {
        contenders.push(("session cookie, PostgreSQL (local)", &c_pg));
    }
    eprintln!("measuring the strategies ({} rounds)", args.rounds);
    let s = paired_rounds(&contenders, args.rounds);
    println!(
        "### Strategy cost per request (paired, {} rounds)\n",
        args.rounds
    );
    println!("| credential | median | 10th–90th percentile | × cached token |");
    println!("|---|---:|---|---:|");
    for series in &s {
        let ratio: Vec<f64> = series.ns.iter().zip(&s[0].ns).map(|(a, b)| a / b).collect();
        println!(
            "| {} | {} | {} – {} | {:.1} |",
            series.name,
            time(median(&series.ns)),
            time(percentile(series.ns.clone(), 0.1)),
            time(percentile(series.ns.clone(), 0.9)),
            percentile(ratio, 0.5)
        );
    }

    eprintln!("measuring GET /auth/me over HTTP");
    http_round_trips(&rt, args.rounds);
}

/// `GET /auth/me` on the real server, one keep-alive connection, bearer against cookie.
fn http_round_trips(rt: &tokio::runtime::Runtime, rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = portcullis_server::config::Config::defaults().unwrap();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.database_url = format!("sqlite://{}", dir.path().join("server.db").display());
    let running = rt
        .block_on(portcullis_server::startup::start(config))
        .unwrap();
    let base = format!("http://{}", running.addr);
    let client = reqwest::Client::new();
    let credentials =
        serde_json::json!({ "username": "bench", "password": "correct horse battery" });
    let (access, cookie) = rt.block_on(async {
        client
            .post(format!("{base}/auth/signup"))
            .json(&credentials)
            .send()
            .await
            .unwrap();
        let tokens: serde_json::Value = client
            .post(format!("{base}/auth/login"))
            .json(&credentials)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = client
            .post(format!("{base}/session/login"))
            .json(&credentials)
            .send()
            .await
            .unwrap();
        let cookie = session.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        (tokens["access_token"].as_str().unwrap().to_owned(), cookie)
    });
    let me = |req: reqwest::RequestBuilder| {
        let status = rt.block_on(async { req.send().await.unwrap().status() });
        assert_eq!(status, 200);
    };
    let bearer = || me(client.get(format!("{base}/auth/me")).bearer_auth(&access));
    let session = || {
        me(client
            .get(format!("{base}/auth/me"))
            .header("cookie", &cookie))
    };
    let s = paired_rounds(&[("bearer", &bearer), ("cookie", &session)], rounds);
    let diff: Vec<f64> = s[1].ns.iter().zip(&s[0].ns).map(|(c, b)| c - b).collect();
    println!("\n### GET /auth/me over HTTP (paired, {rounds} rounds, SQLite, one connection)\n");
    println!("| credential | median round trip |");
    println!("|---|---:|");
    println!("| bearer token | {} |", time(median(&s[0].ns)));
    println!("| session cookie | {} |", time(median(&s[1].ns)));
    println!(
        "\ncookie − bearer per request: median {} (10th–90th percentile {} – {})",
        time(percentile(diff.clone(), 0.5)),
        time(percentile(diff.clone(), 0.1)),
        time(percentile(diff, 0.9))
    );
    rt.block_on(running.stop()).unwrap();
}
