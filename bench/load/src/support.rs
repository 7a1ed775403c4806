//! What the one-server harnesses share (`token-memory`, `login-cost`): the release
//! server started on a fresh SQLite file, and Argon2id at the server's parameters.

// Each harness compiles this module into its own binary and uses a part of it.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The server's password parameters (m = 19 MiB, t = 2, p = 1), in the crate it uses.
pub fn server_argon2() -> argon2_rust::Argon2 {
    argon2_rust::Argon2::new(
        argon2_rust::Algorithm::Argon2id,
        argon2_rust::Version::V0x13,
        argon2_rust::Params::builder()
            .memory(argon2_rust::params::Memory::kib(19 * 1024))
            .passes(2)
            .lanes(1)
            .build()
            .expect("the server's Argon2 parameters"),
    )
}

/// A release server on a fresh SQLite file in its own folder, removed with it.
pub struct Server {
    pub child: Child,
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `binary serve` (under `taskset -c CPU` when `cpu` is given) with
    /// `RUST_LOG=warn`, sign-ups not slowed, and `env`; waits until it answers.
    pub async fn start(
        binary: &str,
        cpu: Option<&str>,
        env: &[(String, String)],
    ) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut command = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpu, binary]);
                c
            }
            None => Command::new(binary),
        };
        command
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .args([
                "--database-url",
                &format!("sqlite://{}", dir.path().join("bench.db").display()),
            ])
            .env("RUST_LOG", "warn")
            .env("PORTCULLIS_SIGNUPS_BEFORE_DELAY", "1000000")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let server = Server {
            child: command.spawn()?,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client
                .get(format!("{}/healthz", server.base))
                .send()
                .await
                .is_ok()
            {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("the server did not start")
    }

    /// Creates the account `username` (`POST /auth/signup`, which must answer 201).
    pub async fn sign_up(
        &self,
        client: &reqwest::Client,
        username: &str,
        password: &str,
    ) -> anyhow::Result<()> {
        let r = client
            .post(format!("{}/auth/signup", self.base))
            .json(&serde_json::json!({ "username": username, "password": password }))
            .send()
            .await?;
        anyhow::ensure!(r.status() == 201, "signup of {username}: {}", r.status());
        Ok(())
    }
}

impl Drop for Server {
    /// SIGTERM first, so that a server run under a heap profiler (a `--server` script
    /// that runs it under heaptrack) ends cleanly and writes its profile; then SIGKILL.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
