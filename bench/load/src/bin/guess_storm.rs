//! Guess storm: how many password guesses reach the hasher when an attacker fires
//! concurrent bursts at one account for minutes, and whether the owner's known device
//! still gets in on the first try throughout.
//!
//! The server runs in this process on a fresh SQLite file with the default throttle
//! settings, over real HTTP on a loopback port. Every `--interval-ms` the attacker
//! fires `--burst` concurrent wrong guesses; every `--owner-every` seconds the owner
//! logs in with the device credential an earlier login gave it. A 401 is a guess that
//! was checked (hashed); a 429 is one the throttle turned away before hashing.
//!
//! Run: `cargo run --release -p portcullis-load --bin guess-storm -- [--seconds 180]`.

// A harness that cannot set up should stop loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use portcullis::clock::secs;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use portcullis::throttle::Budget;
use portcullis_server::config::Config;
use serde_json::{Value, json};

#[derive(Parser, Debug)]
struct Args {
    /// How long the storm lasts.
    #[arg(long, default_value_t = 180)]
    seconds: u64,
    /// Concurrent guesses per burst.
    #[arg(long, default_value_t = 60)]
    burst: usize,
    /// Milliseconds between bursts.
    #[arg(long, default_value_t = 250)]
    interval_ms: u64,
    /// Seconds between the owner's logins.
    #[arg(long, default_value_t = 5)]
    owner_every: u64,
}

const PASSWORD: &str = "the owner's correct password";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let mut config = Config::defaults()?;
    config.bind = "127.0.0.1:0".parse()?;
    config.database_url = format!("sqlite://{}", dir.path().join("storm.db").display());
    let budget = portcullis_server::throttle::Throttle::new(&config).account_budget();
    let running = portcullis_server::startup::start(config).await?;
    let base = format!("http://{}", running.addr);
    let client = reqwest::Client::new();

    let owner = json!({ "username": "owner", "password": PASSWORD });
    let r = client
        .post(format!("{base}/auth/signup"))
        .json(&owner)
        .send()
        .await?;
    assert_eq!(r.status(), 201, "signup");
    let first: Value = client
        .post(format!("{base}/auth/login"))
        .json(&owner)
        .send()
        .await?
        .json()
        .await?;
    let device = first["device_token"]
        .as_str()
        .expect("a device token")
        .to_owned();

    let checked = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let others = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<
        String,
        u64,
    >::new()));
    let started = Instant::now();
    let end = started + Duration::from_secs(args.seconds);

    let attacker = {
        let (client, base) = (client.clone(), base.clone());
        let (checked, refused, other) = (checked.clone(), refused.clone(), other.clone());
        let others = others.clone();
        let (burst, interval) = (args.burst, Duration::from_millis(args.interval_ms));
        tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < end {
                let tasks: Vec<_> = (0..burst)
                    .map(|_| {
                        n += 1;
                        let body =
                            json!({ "username": "owner", "password": format!("wrong guess {n}") });
                        let req = client.post(format!("{base}/auth/login")).json(&body);
                        tokio::spawn(async move { req.send().await.map(|r| r.status().as_u16()) })
                    })
                    .collect();
                for t in tasks {
                    match t.await.unwrap() {
                        Ok(401) => checked.fetch_add(1, Ordering::Relaxed),
                        Ok(429) => refused.fetch_add(1, Ordering::Relaxed),
                        answer => {
                            let what = match answer {
                                Ok(status) => status.to_string(),
                                Err(e) => format!("error: {e}"),
                            };
                            *others.lock().unwrap().entry(what).or_default() += 1;
                            other.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
                tokio::time::sleep(interval).await;
            }
        })
    };

    let (mut owner_ok, mut owner_tries) = (0u64, 0u64);
    let body = json!({ "username": "owner", "password": PASSWORD, "device_token": device });
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(args.owner_every)).await;
        let status = client
            .post(format!("{base}/auth/login"))
            .json(&body)
            .send()
            .await?
            .status();
        owner_tries += 1;
        if status == 200 {
            owner_ok += 1;
        } else {
            eprintln!(
                "owner's known device refused at {:?}: {status}",
                started.elapsed()
            );
        }
    }
    attacker.await?;
    let elapsed = started.elapsed();
    let allowed = budget_for(budget, elapsed);
    let checked = checked.load(Ordering::Relaxed);
    println!(
        "storm: {} s, bursts of {} every {} ms",
        elapsed.as_secs(),
        args.burst,
        args.interval_ms
    );
    println!(
        "guesses sent {}, reached the hasher {checked}, turned away {}, other answers {}",
        checked + refused.load(Ordering::Relaxed) + other.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed)
    );
    for (what, n) in others.lock().unwrap().iter() {
        println!("  other answer {what}: {n}");
    }
    println!("documented budget for {} s: {allowed}", elapsed.as_secs());
    println!("owner's known device: {owner_ok}/{owner_tries} logins on the first try");
    running.stop().await?;
    if checked > allowed || owner_ok != owner_tries {
        anyhow::bail!("the throttle did not hold");
    }
    Ok(())
}

/// The most guesses the account budget admits in `elapsed`, rounded up to the next
/// whole second (the throttle counts in seconds).
fn budget_for(budget: Budget, elapsed: Duration) -> u64 {
    budget.most_in(secs(elapsed) + 1)
}
