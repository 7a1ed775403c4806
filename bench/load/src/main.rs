//! Load harness for `portcullis serve`, side by side on one machine.
//!
//! Starts the release server binary as a separate process on a fresh database for each
//! scenario, drives it over HTTP from this process, and prints the figures that
//! docs/BENCHMARKS.md reports:
//!
//! - the bare Argon2id rate (the same parameters, on as many threads as the server's
//!   hashing pool) next to logins per second;
//! - refreshes per second, on SQLite and (with `--postgres URL`) on PostgreSQL;
//! - `/auth/me` requests per second and latency percentiles, idle and during a login
//!   storm.
//!
//! Run: `cargo build --release --bin portcullis && cargo run --release -p portcullis-load -- [--postgres URL]`.

// A load harness that cannot set up should stop loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

mod support;
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser, Debug)]
struct Args {
    /// The server binary.
    #[arg(long, default_value = "target/release/portcullis")]
    server: String,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Also measure refreshes on this PostgreSQL (a fresh database is created in it).
    #[arg(long)]
    postgres: Option<String>,
    /// Concurrent clients for /auth/me.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Only the refresh measurements (part 3).
    #[arg(long)]
    refresh_only: bool,
}

struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(args: &Args, database_url: Option<String>) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = database_url
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("load.db").display()));
    let child = Command::new(&args.server)
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            &url,
        ])
        .env("RUST_LOG", "warn")
        // The scenarios create many accounts from one address on purpose.
        .env("PORTCULLIS_SIGNUPS_BEFORE_DELAY", "1000000")
        // PostgreSQL needs a key-encryption key; SQLite makes one beside the database.
        .env(
            "PORTCULLIS_KEY_ENCRYPTION_KEY",
            "bG9hZC1oYXJuZXNzLWtleS1lbmNyeXB0aW9uLWtleSE",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (build it with cargo build --release)",
                args.server
            )
        })?;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            return Ok(Server {
                child,
                base,
                _dir: dir,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the server did not start")
}

const PASSWORD: &str = "correct horse battery staple";

async fn account(client: &reqwest::Client, base: &str, name: &str) -> Value {
    let body = json!({ "username": name, "password": PASSWORD });
    let r = client
        .post(format!("{base}/auth/signup"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "signup");
    client
        .post(format!("{base}/auth/login"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The `p` quantile of sorted latencies, in µs (callers divide by 1000 for ms).
fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64
}

/// Runs `clients` loops of `op` for `seconds`; returns (ops/s, sorted latencies in µs).
async fn drive<F, Fut>(clients: usize, seconds: u64, op: F) -> (f64, Vec<u64>)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let (op, stop) = (op.clone(), stop.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    if op(i).await {
                        lat.push(t.elapsed().as_micros() as u64);
                    }
                }
                lat
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    (all.len() as f64 / elapsed, all)
}

/// Argon2id at the server's parameters on `threads` threads, for `seconds`.
fn bare_hash_rate(threads: usize, seconds: u64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let argon2 = support::server_argon2();
                let mut n = 0u64;
                let mut out = [0u8; 32];
                while !stop.load(Ordering::Relaxed) {
                    argon2
                        .hash_into(PASSWORD.as_bytes(), b"0123456789abcdef", &mut out)
                        .unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    total as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pool = std::thread::available_parallelism()
        .map_or(1, |n| n.get().saturating_sub(1))
        .max(1);
    println!(
        "machine: {} cores; server hashing pool: {pool}; {} s per measurement\n",
        pool + 1,
        args.seconds
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;

    if !args.refresh_only {
        logins_and_reads(&args, &client, pool).await?;
    }
    refreshes(&args, &client).await
}

/// Parts 1 and 2: logins against the bare hash rate, and /auth/me idle and in a storm.
async fn logins_and_reads(
    args: &Args,
    client: &reqwest::Client,
    pool: usize,
) -> anyhow::Result<()> {
    let client = client.clone();
    // 1. Logins next to the bare hash rate, interleaved: each round measures the bare
    //    rate, then logins, for a fifth of the time; the overhead is taken per round.
    let server = start(args, None).await?;
    account(&client, &server.base, "loader").await;
    let window = (args.seconds / 2).max(2);
    let mut overheads = Vec::new();
    let (mut bares, mut rates, mut lats) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        let bare = tokio::task::spawn_blocking(move || bare_hash_rate(pool, window)).await?;
        let (base, c) = (server.base.clone(), client.clone());
        let (logins, lat) = drive(pool * 2, window, move |_| {
            let (base, c) = (base.clone(), c.clone());
            async move {
                let r = c
                    .post(format!("{base}/auth/login"))
                    .json(&json!({"username": "loader", "password": PASSWORD}))
                    .send()
                    .await;
                r.is_ok_and(|r| r.status() == 200)
            }
        })
        .await;
        overheads.push((1.0 - logins / bare) * 100.0);
        bares.push(bare);
        rates.push(logins);
        lats.extend(lat);
    }
    lats.sort_unstable();
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "bare Argon2id ({pool} thread), per round: {}",
        bares
            .iter()
            .map(|b| format!("{b:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "logins ({} clients), per round: {}",
        pool * 2,
        rates
            .iter()
            .map(|b| format!("{b:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "login latency: p50 {:.1} ms, p99 {:.1} ms",
        percentile(&lats, 0.5) / 1000.0,
        percentile(&lats, 0.99) / 1000.0
    );
    println!(
        "login overhead beyond hashing, per round: {} → median {:.1}%\n",
        overheads
            .iter()
            .map(|o| format!("{o:.1}%"))
            .collect::<Vec<_>>()
            .join(", "),
        med(&mut overheads)
    );

    // 2. /auth/me idle, then during a login storm.
    let token = account(&client, &server.base, "reader").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let me = |base: String, c: reqwest::Client, token: String| {
        move |_| {
            let (base, c, token) = (base.clone(), c.clone(), token.clone());
            async move {
                c.get(format!("{base}/auth/me"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
            }
        }
    };
    let (idle_rps, idle) = drive(
        args.clients,
        args.seconds,
        me(server.base.clone(), client.clone(), token.clone()),
    )
    .await;
    let storm_stop = Arc::new(AtomicBool::new(false));
    let storm: Vec<_> = (0..pool * 4)
        .map(|_| {
            let (base, c, stop) = (server.base.clone(), client.clone(), storm_stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let r = c
                        .post(format!("{base}/auth/login"))
                        .json(&json!({"username": "loader", "password": PASSWORD}))
                        .send()
                        .await;
                    if r.is_ok_and(|r| r.status() == 200) {
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (storm_rps, during) = drive(
        args.clients,
        args.seconds,
        me(server.base.clone(), client.clone(), token.clone()),
    )
    .await;
    storm_stop.store(true, Ordering::Relaxed);
    let mut storm_logins = 0;
    for s in storm {
        storm_logins += s.await.unwrap();
    }
    println!(
        "/auth/me idle ({} clients): {idle_rps:.0} req/s, p50 {:.2} ms, p99 {:.2} ms",
        args.clients,
        percentile(&idle, 0.5) / 1000.0,
        percentile(&idle, 0.99) / 1000.0
    );
    println!(
        "/auth/me during a login storm ({} login clients, {storm_logins} logins): {storm_rps:.0} req/s, p50 {:.2} ms, p99 {:.2} ms",
        pool * 4,
        percentile(&during, 0.5) / 1000.0,
        percentile(&during, 0.99) / 1000.0
    );
    println!(
        "p99 during storm / p99 idle: {:.2}\n",
        percentile(&during, 0.99) / percentile(&idle, 0.99)
    );
    drop(server);
    Ok(())
}

/// Part 3: refreshes per second, and their latency, on SQLite and PostgreSQL.
async fn refreshes(args: &Args, client: &reqwest::Client) -> anyhow::Result<()> {
    // 3. Refreshes per second.
    let mut stores = vec![("sqlite", None)];
    if let Some(pg) = &args.postgres {
        let name = format!("pc_load_{}", std::process::id());
        let admin = tokio::process::Command::new("psql")
            .arg(pg)
            .arg("-qc")
            .arg(format!("CREATE DATABASE {name}"))
            .status()
            .await?;
        if !admin.success() {
            bail!("could not create the load-test database in {pg}");
        }
        let (base, _) = pg
            .rsplit_once('/')
            .context("postgres URL without a database")?;
        stores.push(("postgres", Some(format!("{base}/{name}"))));
    }
    for (label, url) in stores {
        let server = start(args, url).await?;
        let clients = 8;
        let mut chains = Vec::new();
        for i in 0..clients {
            let t = account(client, &server.base, &format!("r{i}")).await;
            chains.push(Arc::new(tokio::sync::Mutex::new(
                t["refresh_token"].as_str().unwrap().to_owned(),
            )));
        }
        let chains = Arc::new(chains);
        let (base, c) = (server.base.clone(), client.clone());
        let (rate, lat) = drive(clients, args.seconds, move |i| {
            let (base, c, chains) = (base.clone(), c.clone(), chains.clone());
            async move {
                let mut token = chains[i].lock().await;
                let r = c
                    .post(format!("{base}/auth/refresh"))
                    .json(&json!({"refresh_token": *token}))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => {
                        let v: Value = r.json().await.unwrap();
                        *token = v["refresh_token"].as_str().unwrap().to_owned();
                        true
                    }
                    _ => false,
                }
            }
        })
        .await;
        println!(
            "refreshes on {label} ({clients} clients): {rate:.0}/s, p50 {:.2} ms, p99 {:.2} ms",
            percentile(&lat, 0.5) / 1000.0,
            percentile(&lat, 0.99) / 1000.0
        );
    }
    Ok(())
}
