//! What moving a Passport app costs (issue 31), measured side by side:
//!
//! 1. **The import**: `portcullis users import` (the release binary beside this one)
//!    of a generated file of `--lines` accounts (bcrypt hashes, addresses, creation
//!    times), into a fresh SQLite database and, with `--postgres URL`, a fresh
//!    PostgreSQL database, alternating, `--runs` times each.
//! 2. **A login's password check** on one core: the server's `PasswordHasher::verify`
//!    (one hashing thread) of a bcrypt cost-10 hash made by Node's `bcrypt`, of the
//!    same made by Python's `bcrypt` at cost 12, of PBKDF2-SHA256 at 310,000 and
//!    scrypt at N = 2^14 (Node's `crypto`), beside Argon2id at the server's parameters;
//!    paired and interleaved (`crates/portcullis/benches/common/paired.rs`).
//!
//! Run: `cargo build --release -p portcullis-server -p portcullis-load && \
//! target/release/import-cost [--postgres postgres://postgres@127.0.0.1:5432/test]`
//! (it creates and drops databases named `pc_bench_import_*` there).

// A benchmark that cannot set up should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../../crates/portcullis/benches/common/paired.rs"]
mod paired;

use std::io::Write as _;
use std::time::Instant;

use clap::Parser;
use paired::{median, paired_rounds, percentile, time};
use portcullis::password::{HashParams, Password, PasswordHasher, Verification};

#[derive(Parser)]
#[command(about = "The import's time, and legacy hashes' login cost beside Argon2id's")]
struct Args {
    /// Also import into fresh databases of this PostgreSQL server.
    #[arg(long)]
    postgres: Option<String>,
    /// Accounts in the generated file.
    #[arg(long, default_value_t = 100_000)]
    lines: usize,
    /// Imports per database kind.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Rounds of the password-check comparison.
    #[arg(long, default_value_t = 31)]
    rounds: usize,
}

// Made by Node's bcrypt 6.0.0 (cost 10), Python's bcrypt 5.0.0 (cost 12), and Node's
// crypto (scrypt, PBKDF2) written as PHC strings, for the passwords beside them.
const BCRYPT_10: (&str, &str) = (
    "node bcrypt password",
    "$2b$10$skWkwxhMyfzSUe8VFk5v/u8CZ7DHKmYy81JzXgI5hJImE3GUMQa5a",
);
const SCRYPT_14: (&str, &str) = (
    "node scrypt password",
    "$scrypt$ln=14,r=8,p=1$bIZ/xHpseT2ots2AGiEaAg$psSFfghU7hRJCgFW6AnlaS99JiwpJQGg1PIkszt6br4",
);
const PBKDF2_310K: (&str, &str) = (
    "node pbkdf2 password",
    "$pbkdf2-sha256$i=310000,l=32$GITe3rnJdm9p61U5qZbHDA$4AKTRgOwzRuowKeZq5306R72kg1N7XxW0VCmCY8F+yo",
);

fn main() {
    let args = Args::parse();
    import_times(&args);
    check_costs(&args);
}

fn import_times(args: &Args) {
    let binary = std::env::current_exe()
        .unwrap()
        .with_file_name("portcullis");
    assert!(
        binary.exists(),
        "build the release server first: cargo build --release -p portcullis-server"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    for n in 0..args.lines {
        writeln!(
            out,
            r#"{{"username":"user{n}","password_hash":"{}","email":"user{n}@example.com","email_verified":true,"created_at":"2020-01-02T03:04:05Z"}}"#,
            BCRYPT_10.1
        )
        .unwrap();
    }
    out.flush().unwrap();
    drop(out);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut times: Vec<(&str, Vec<f64>)> = vec![("sqlite", Vec::new()), ("postgres", Vec::new())];
    for run in 0..args.runs {
        for (kind, series) in &mut times {
            let url = match *kind {
                "sqlite" => format!(
                    "sqlite://{}",
                    dir.path().join(format!("import{run}.db")).display()
                ),
                _ => match &args.postgres {
                    Some(admin) => rt.block_on(fresh_postgres(admin, run)),
                    None => continue,
                },
            };
            // The database exists and is migrated, as a server's is.
            drop(rt.block_on(portcullis_store::open(&url)).unwrap());
            let mut cmd = std::process::Command::new(&binary);
            cmd.args(["users", "import"])
                .arg(&file)
                .args(["--database-url", &url]);
            if url.starts_with("postgres") {
                cmd.env(
                    "PORTCULLIS_KEY_ENCRYPTION_KEY",
                    "cG9ydGN1bGxpcy10ZXN0LWtleS1lbmNyeXB0aW9uISE",
                );
            }
            let started = Instant::now();
            let done = cmd.output().unwrap();
            let secs = started.elapsed().as_secs_f64();
            let stdout = String::from_utf8_lossy(&done.stdout);
            assert!(
                done.status.success() && stdout.starts_with(&format!("imported {}", args.lines)),
                "{stdout}{}",
                String::from_utf8_lossy(&done.stderr)
            );
            println!(
                "import of {} lines into {kind} (run {}): {secs:.2} s",
                args.lines,
                run + 1
            );
            series.push(secs);
        }
    }
    for (kind, series) in &times {
        if series.is_empty() {
            continue;
        }
        let (lo, hi) = series
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), s| (lo.min(*s), hi.max(*s)));
        println!(
            "import, {kind}: {} lines in {lo:.2}–{hi:.2} s over {} runs ({:.0}–{:.0} accounts/s)",
            args.lines,
            series.len(),
            args.lines as f64 / hi,
            args.lines as f64 / lo
        );
    }
}

async fn fresh_postgres(admin: &str, run: usize) -> String {
    let name = format!("pc_bench_import_{}_{run}", std::process::id());
    let pool = sqlx::PgPool::connect(admin).await.unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (base, _) = admin.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

fn check_costs(args: &Args) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let hasher = PasswordHasher::new(HashParams::default(), 1, 4).unwrap();
    let argon2id = rt
        .block_on(hasher.hash(Password::new("argon2id password".into()).unwrap()))
        .unwrap();
    let argon = ("argon2id password", argon2id.as_str());
    let check = |(password, hash): (&str, &str)| {
        let v = rt
            .block_on(hasher.verify(Password::new(password.into()).unwrap(), Some(hash)))
            .unwrap();
        assert!(matches!(v, Verification::Match { .. }));
    };
    let series = paired_rounds(
        &[
            ("argon2id (m=19 MiB, t=2)", &|| check(argon)),
            ("bcrypt cost 10", &|| check(BCRYPT_10)),
            ("scrypt N=2^14, r=8", &|| check(SCRYPT_14)),
            ("pbkdf2-sha256 310,000", &|| check(PBKDF2_310K)),
        ],
        args.rounds,
    );
    let base = median(&series[0].ns);
    println!(
        "a login's password check, one core, {} rounds (median, p10–p90; checks/s; time against Argon2id):",
        args.rounds
    );
    for s in &series {
        let m = median(&s.ns);
        println!(
            "  {:<28} {} ({}–{}), {:.1}/s, {:.2}× Argon2id's time",
            s.name,
            time(m),
            time(percentile(s.ns.clone(), 0.1)),
            time(percentile(s.ns.clone(), 0.9)),
            1e9 / m,
            m / base
        );
    }
}
