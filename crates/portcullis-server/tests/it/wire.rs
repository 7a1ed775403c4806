//! The listener as an attacker on the open network uses it: thousands of idle
//! connections, slowloris heads, more connections than the cap, and the error answers
//! at the edges (405, 413, 415), all in the JSON shape. Loopback only, bounded in time.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::{TestServer, config, sqlite_db};

fn addr(server: &TestServer) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

/// True once the server has closed the connection (EOF or reset), within `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 256];
    match tokio::time::timeout(wait, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        // Bytes (a 408 or similar) then EOF also count.
        Ok(Ok(_)) => matches!(
            tokio::time::timeout(wait, stream.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        ),
        Err(_) => false,
    }
}

#[tokio::test]
async fn idle_and_slowloris_connections_neither_lock_clients_out_nor_stay_open() {
    let (url, dir) = sqlite_db();
    let mut c = config(&url);
    c.header_read_timeout = Duration::from_secs(3);
    c.request_timeout = Duration::from_secs(4);
    c.idle_timeout = Duration::from_secs(5);
    // All 2,000 come from one address here, where they stand for many clients: the
    // per-address share (one_address_cannot_hold_the_whole_connection_cap) is not
    // what this test is about.
    c.max_connections_per_address = c.max_connections;
    let server = TestServer::start(c).await.keep_dir(dir);
    assert_eq!(
        server
            .signup("alice", "correct horse battery")
            .await
            .status(),
        201
    );
    let target = addr(&server);

    // 1,500 connections that send nothing.
    let mut idle = Vec::with_capacity(1500);
    for _ in 0..1500 {
        idle.push(TcpStream::connect(&target).await.unwrap());
    }
    // 500 that send a request head one header line every half second, forever.
    let mut slow = Vec::with_capacity(500);
    for _ in 0..500 {
        let mut stream = TcpStream::connect(&target).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: portcullis.test\r\n")
            .await
            .unwrap();
        slow.push(tokio::spawn(async move {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(30) {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if stream.write_all(b"x-slow: 1\r\n").await.is_err() {
                    return true;
                }
            }
            false
        }));
    }

    // Everyone else still gets in, at once.
    let fresh = reqwest::Client::new();
    let t = Instant::now();
    let health = tokio::time::timeout(
        Duration::from_secs(1),
        fresh.get(server.url("/healthz")).send(),
    )
    .await
    .expect("healthz within a second")
    .unwrap();
    assert_eq!(health.status(), 200);
    let login = tokio::time::timeout(
        Duration::from_secs(1),
        fresh
            .post(server.url("/auth/login"))
            .json(&json!({"username": "alice", "password": "correct horse battery"}))
            .send(),
    )
    .await
    .expect("a login within a second")
    .unwrap();
    assert_eq!(login.status(), 200);
    eprintln!(
        "healthz and login under 2,000 held connections: {:?}",
        t.elapsed()
    );

    // The idle ones are closed by the header-read timeout, the slow ones too.
    let deadline = Duration::from_secs(10);
    let mut still_open = 0;
    for stream in &mut idle {
        if !closed_within(stream, deadline).await {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "idle connections left open");
    let mut slow_open = 0;
    for task in slow {
        if !task.await.unwrap() {
            slow_open += 1;
        }
    }
    assert_eq!(slow_open, 0, "slowloris connections left open");
    server.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_get_a_clean_503() {
    let (url, dir) = sqlite_db();
    let mut c = config(&url);
    c.max_connections = 16;
    let server = TestServer::start(c).await.keep_dir(dir);
    let target = addr(&server);
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(TcpStream::connect(&target).await.unwrap());
    }
    // Accepted in order: give the server a moment to take all sixteen.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut over = TcpStream::connect(&target).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), over.read_to_string(&mut answer))
        .await
        .expect("answered and closed")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"));
    // A freed slot serves again.
    held.pop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = reqwest::Client::new()
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn every_error_at_the_edges_has_the_json_shape() {
    let (url, dir) = sqlite_db();
    let server = TestServer::start(config(&url)).await.keep_dir(dir);
    let client = reqwest::Client::new();
    let check = |r: reqwest::Response, status: u16| async move {
        assert_eq!(r.status(), status);
        assert_eq!(r.headers()["content-type"], "application/json");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["error"].is_string() && body["error_description"].is_string(),
            "{body}"
        );
        body
    };
    // 405, keeping the Allow header.
    let r = client.get(server.url("/auth/login")).send().await.unwrap();
    assert!(r.headers().contains_key("allow"));
    let body = check(r, 405).await;
    assert_eq!(body["error"], "method_not_allowed");
    // 413, announced and chunked.
    let big = format!(
        "{{\"username\":\"x\",\"password\":\"{}\"}}",
        "a".repeat(64 * 1024)
    );
    let r = client
        .post(server.url("/auth/signup"))
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    check(r, 413).await;
    let chunks = futures_stream(big);
    let r = client
        .post(server.url("/auth/signup"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    check(r, 413).await;
    // 415 for JSON-like types and other charsets; nothing is created.
    for content_type in [
        "application/vnd.api+json",
        "application/json; charset=utf-16",
        "text/plain",
    ] {
        let r = client
            .post(server.url("/auth/signup"))
            .header("content-type", content_type)
            .body(r#"{"username":"mallory","password":"correct horse battery"}"#)
            .send()
            .await
            .unwrap();
        check(r, 415).await;
    }
    let r = client
        .post(server.url("/auth/signup"))
        .header("content-type", "application/json; charset=UTF-8")
        .body(r#"{"username":"mallory","password":"correct horse battery"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "charset=utf-8 is fine");
    server.stop().await;
}

/// A body sent in 1 KiB chunks, without a Content-Length.
fn futures_stream(
    body: String,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    let chunks: Vec<Vec<u8>> = body.into_bytes().chunks(1024).map(<[u8]>::to_vec).collect();
    ChunkStream(chunks.into_iter())
}

struct ChunkStream(std::vec::IntoIter<Vec<u8>>);

impl futures_core::Stream for ChunkStream {
    type Item = Result<Vec<u8>, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(self.0.next().map(Ok))
    }
}

/// Issue 28, finding 4: an attacker who holds connections from one address (and opens
/// new ones as fast as they close) gets its share of the cap, not the whole of it:
/// a client from another address still gets in.
#[tokio::test]
async fn one_address_cannot_hold_the_whole_connection_cap() {
    let (url, dir) = sqlite_db();
    let mut c = config(&url);
    c.max_connections = 40;
    c.max_connections_per_address = 8;
    let server = TestServer::start(c).await.keep_dir(dir);
    let target: std::net::SocketAddr = addr(&server).parse().unwrap();
    let from = |ip: &str| {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind((ip, 0).into()).unwrap();
            socket.connect(target).await.unwrap()
        }
    };
    // The attacker, from 127.0.0.2, opens as many connections as the whole cap.
    let mut held = Vec::new();
    for _ in 0..40 {
        held.push(from("127.0.0.2").await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Its ninth and later were answered 503 and closed at once; eight stay open.
    let mut refused = 0;
    for stream in &mut held {
        let mut buf = [0u8; 256];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await
            && String::from_utf8_lossy(&buf[..n]).contains("too many connections from your address")
        {
            refused += 1;
        }
    }
    assert_eq!(refused, 32, "all but the address's share were refused");
    // Another address is served.
    let mut other = from("127.0.0.3").await;
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), other.read_to_string(&mut answer))
        .await
        .expect("answered")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.stop().await;
}

/// Issue 28, finding 4: a process whose open-file limit cannot hold `max_connections`
/// raises it when it may, and says so in the banner when it may not (beyond the limit
/// new clients would stall unanswered instead of getting a 503).
#[tokio::test]
async fn the_banner_says_when_the_open_file_limit_cannot_hold_the_cap() {
    use tokio::io::AsyncBufReadExt as _;
    let banner_under = |limits: &'static str| async move {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script =
            format!("{limits} && exec \"$0\" serve --bind 127.0.0.1:{port} --database-url \"$1\"");
        let mut child = tokio::process::Command::new("sh")
            .args(["-c", &script, env!("CARGO_BIN_EXE_portcullis")])
            .arg(format!("sqlite://{}", dir.path().join("fd.db").display()))
            .env("RUST_LOG", "off")
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut banner = String::new();
        tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                banner.push_str(&line);
                banner.push('\n');
                if line.trim_start().starts_with("pages") {
                    break;
                }
            }
        })
        .await
        .expect("a banner");
        child.kill().await.unwrap();
        banner
    };
    // Soft and hard limit 300, far below 4,096 connections: said, with the fix.
    let short = banner_under("ulimit -n 300").await;
    assert!(
        short.contains("only 300 open files allowed, 4352 needed"),
        "{short}"
    );
    // A soft limit of 300 under a hard limit that allows more is raised, up to what
    // is needed or the hard limit (which cannot be raised from here).
    let hard: u64 = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "ulimit -Hn"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap_or(u64::MAX);
    let raised = banner_under("ulimit -Sn 300").await;
    let expected = format!("open files raised from 300 to {}", hard.min(4352));
    assert!(raised.contains(&expected), "{expected:?} in {raised}");
}

/// Issue 28, finding 11: a second server on a taken address says what to do.
#[tokio::test]
async fn a_taken_address_is_refused_with_the_way_out() {
    let (url, dir) = sqlite_db();
    let server = TestServer::start(config(&url)).await.keep_dir(dir);
    let (other_url, other_dir) = sqlite_db();
    let mut c = config(&other_url);
    c.bind = addr(&server).parse().unwrap();
    let err = match portcullis_server::startup::start(c).await {
        Ok(_) => panic!("a second server on a taken address started"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("another process listens there") && err.contains("--bind"),
        "{err}"
    );
    drop(other_dir);
    server.stop().await;
}
