//! A login's CPU against a bare password hash's, on one core (issue 30).
//!
//! Starts the release server pinned to one CPU (`taskset -c 0`: one async worker, as
//! the runtime counts the cores it may use) with one hashing slot, on a fresh SQLite
//! file, and signs one account in, over and over, from two clients. In rounds, in turn:
//!
//! - **bare**: Argon2id at the server's parameters (m = 19 MiB, t = 2, p = 1, the
//!   same crate) in a child process of this program on the server's CPU, its CPU
//!   time read from `/proc/thread-self/schedstat` (nanoseconds), two ways: through
//!   a kept arena (argon2-rust's `Hasher`, as the server hashes) and one-shot (a
//!   fresh arena per hash, paying its page faults);
//! - **logins**: `POST /auth/login`, the server process's CPU time (every thread: the
//!   worker, the hashing thread, SQLite's) read from `/proc/PID/stat` (in 10 ms ticks:
//!   100 logins a round make that 1 % of a round).
//!
//! The ratio of a round is the server's CPU per login over the bare CPU per hash
//! through a kept arena (the same call the server makes, so a cheaper hash in the
//! server is not counted as less overhead); the run prints each round's, their median
//! and range, and the verdict of the target (≤ 1.10 in every round). The ratio over
//! the one-shot hash is printed beside it, for comparison with earlier runs. The bare
//! hash runs on the server's CPU too (in a child process under `taskset -c CPU`), so
//! both meet the same core and caches.
//!
//! Where the rest goes is a profile's to say, not this harness's (the hash runs on
//! whichever of the runtime's blocking threads is free, so no one thread is "the
//! hash"): docs/BENCHMARKS.md has one, from `perf record` on the server under this
//! load.
//!
//! Run: `cargo build --release --bin portcullis && cargo build --release -p
//! portcullis-load && target/release/login-cost --server target/release/portcullis`.

// A benchmark that cannot set up should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support.rs"]
mod support;

use clap::Parser;
use serde_json::json;
use support::Server;

#[derive(Parser)]
#[command(about = "A login's CPU against a bare Argon2id hash, on one core")]
struct Args {
    /// The server binary.
    #[arg(long, default_value = "target/release/portcullis")]
    server: String,
    /// Rounds.
    #[arg(long, default_value_t = 9)]
    rounds: usize,
    /// Hashes and logins per round.
    #[arg(long, default_value_t = 100)]
    per_round: usize,
    /// The CPU the server is pinned to (and the bare hash).
    #[arg(long, default_value = "0")]
    cpu: String,
    /// Internal: run this many bare hashes here and print the CPU seconds of one.
    #[arg(long, hide = true)]
    bare_hashes: Option<usize>,
}

const PASSWORD: &str = "correct horse battery staple";

/// User + system CPU seconds in a `/proc/.../stat` file.
fn cpu_of(stat: &str) -> f64 {
    let text = std::fs::read_to_string(stat).unwrap();
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // The kernel's USER_HZ is 100 on Linux whatever the tick rate.
    ticks as f64 / 100.0
}

/// The context switches (voluntary and not) of every thread of process `pid` so far:
/// each hand-off between the async worker, the hashing thread and SQLite's threads
/// is one or two, so fewer round trips to the database show here exactly where the
/// CPU figures are too noisy to.
fn switches_of(pid: u32) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        // A thread that ended meanwhile has no status left: it counts no more.
        let Ok(status) = std::fs::read_to_string(task.unwrap().path().join("status")) else {
            continue;
        };
        total += status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

/// This thread's CPU seconds, to the nanosecond (the scheduler's own count).
fn thread_cpu() -> f64 {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    let ns: u64 = text.split_whitespace().next().unwrap().parse().unwrap();
    ns as f64 / 1e9
}

/// The bare hash's CPU per hash, `(kept arena, one-shot)`, measured in a child process
/// of this program pinned to `cpu` with `taskset` (the workspace forbids the `unsafe`
/// an affinity call needs).
fn bare_cpu_per_hash(n: usize, cpu: &str) -> (f64, f64) {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("taskset")
        .args(["-c", cpu])
        .arg(exe)
        .args(["--bare-hashes", &n.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "the bare hash's child failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let (kept, one_shot) = text.trim().split_once(' ').unwrap();
    (kept.parse().unwrap(), one_shot.parse().unwrap())
}

/// `n` hashes through a kept arena, then `n` one-shot, on this process's main thread:
/// CPU seconds per hash of each.
fn bare_cpu_in_this_process(n: usize) -> (f64, f64) {
    let argon2 = support::server_argon2();
    let mut out = [0u8; 32];
    let mut hasher = argon2.hasher();
    // The kept arena's first hash allocates it: not timed.
    hasher
        .hash_into(PASSWORD.as_bytes(), b"0123456789abcdef", &mut out)
        .unwrap();
    let before = thread_cpu();
    for _ in 0..n {
        hasher
            .hash_into(PASSWORD.as_bytes(), b"0123456789abcdef", &mut out)
            .unwrap();
    }
    let kept = (thread_cpu() - before) / n as f64;
    let before = thread_cpu();
    for _ in 0..n {
        argon2
            .hash_into(PASSWORD.as_bytes(), b"0123456789abcdef", &mut out)
            .unwrap();
    }
    (kept, (thread_cpu() - before) / n as f64)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(n) = args.bare_hashes {
        let (kept, one_shot) = bare_cpu_in_this_process(n);
        println!("{kept} {one_shot}");
        return Ok(());
    }
    let env = [("PORTCULLIS_HASH_CONCURRENCY".to_owned(), "1".to_owned())];
    let server = Server::start(&args.server, Some(&args.cpu), &env).await?;
    let stat = format!("/proc/{}/stat", server.child.id());
    let base = server.base.clone();
    let client = reqwest::Client::new();
    server.sign_up(&client, "loader", PASSWORD).await?;
    let body = json!({ "username": "loader", "password": PASSWORD });

    let login = |client: reqwest::Client, base: String, body: serde_json::Value, n: usize| async move {
        for _ in 0..n {
            let r = client
                .post(format!("{base}/auth/login"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "login");
        }
    };
    // Warm-up: the server's first logins (connections, statements, the WAL).
    login(client.clone(), base.clone(), body.clone(), 10).await;

    let mut ratios = Vec::new();
    let (mut bares, mut one_shots, mut logins) = (Vec::new(), Vec::new(), Vec::new());
    let mut switch_counts = Vec::new();
    for round in 0..args.rounds {
        let (bare, one_shot) = bare_cpu_per_hash(args.per_round, &args.cpu);
        let before = cpu_of(&stat);
        let switched = switches_of(server.child.id());
        // Two clients, so that the one core always has a login to work on.
        let half = args.per_round / 2;
        tokio::join!(
            login(client.clone(), base.clone(), body.clone(), half),
            login(
                client.clone(),
                base.clone(),
                body.clone(),
                args.per_round - half
            ),
        );
        let per_login = (cpu_of(&stat) - before) / args.per_round as f64;
        let switches = (switches_of(server.child.id()) - switched) as f64 / args.per_round as f64;
        let ratio = per_login / bare;
        println!(
            "round {}: bare hash {:.2} ms CPU (one-shot {:.2}), login {:.2} ms CPU: {ratio:.3} \
             (÷ one-shot {:.3}); {switches:.1} context switches a login",
            round + 1,
            bare * 1e3,
            one_shot * 1e3,
            per_login * 1e3,
            per_login / one_shot,
        );
        ratios.push(ratio);
        bares.push(bare);
        one_shots.push(one_shot);
        logins.push(per_login);
        switch_counts.push(switches);
    }
    let (lo, hi) = ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &r| (a.min(r), b.max(r)));
    println!(
        "\nlogin CPU ÷ bare hash CPU, one core ({} rounds of {}): median {:.3} ({lo:.3}–{hi:.3}); \
         bare {:.2} ms, login {:.2} ms (medians); ÷ the one-shot hash ({:.2} ms): median {:.3}",
        args.rounds,
        args.per_round,
        median(&ratios),
        median(&bares) * 1e3,
        median(&logins) * 1e3,
        median(&one_shots) * 1e3,
        median(&logins) / median(&one_shots),
    );
    println!(
        "context switches a login (the server's threads): median {:.1}",
        median(&switch_counts)
    );
    println!(
        "target ≤ 1.10 in every round: {}",
        if hi <= 1.10 { "met" } else { "not met" }
    );
    Ok(())
}
