//! The listener: accepting connections with a cap, and the per-connection limits that
//! keep idle, slow or abandoned clients from holding the server.
//!
//! `axum::serve` has no knobs for these, so connections are served here with hyper's
//! HTTP/1 connection builder, the machinery axum uses underneath:
//!
//! - **`max_connections`**: a connection beyond the cap gets a short `503` with
//!   `Retry-After` and is closed at once, so it costs nothing while it waits;
//! - **`max_connections_per_address`**: no one address (an IPv6 /64) holds more than
//!   this many of them, so an attacker who reconnects as fast as connections close
//!   cannot hold the whole cap; a trusted proxy's address is not capped (its
//!   connections carry everyone);
//! - **`header_read_timeout`** (HTTP/1): from the moment the server waits for a request
//!   until its head has arrived; it also closes a keep-alive connection left idle
//!   between requests, and a slowloris that sends its head a byte at a time;
//! - **`idle_timeout`**: a connection on which no byte moves either way for this long
//!   is closed, whatever its state (a body that stops arriving, a client that stops
//!   reading the answer);
//! - the whole-request timeout is a tower layer around the router (`startup::app`).
//!
//! Graceful shutdown: on the signal the listener stops accepting, and every connection
//! finishes the request it is serving, then closes.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt as _;

/// The connection limits, from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once; more are refused with 503.
    pub max_connections: usize,
    /// Connections one address (an IPv6 /64) may hold at once; more are refused with
    /// 503. Trusted proxies are not capped.
    pub max_connections_per_address: usize,
    /// Time to send a request head, idle keep-alive wait included.
    pub header_read_timeout: Duration,
    /// Time with no byte read or written before a connection is closed.
    pub idle_timeout: Duration,
}

/// What a connection over the cap is told before it is closed.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\ncache-control: no-store\r\nretry-after: 1\r\n\
connection: close\r\ncontent-length: 97\r\n\r\n\
{\"error\":\"temporarily_unavailable\",\"error_description\":\"too many connections; try again shortly\"}";

/// What a connection over its address's share is told before it is closed.
const OVER_ADDRESS_SHARE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\ncache-control: no-store\r\nretry-after: 1\r\n\
connection: close\r\ncontent-length: 115\r\n\r\n\
{\"error\":\"temporarily_unavailable\",\"error_description\":\"too many connections from your address; try again shortly\"}";

/// What the connections of one address are counted under: the address, or its /64
/// for IPv6 (one subscriber's whole prefix), IPv4 written as IPv6 taken as IPv4.
fn address_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(octets.into())
            }
        },
        v4 => v4,
    }
}

/// Open connections per address.
#[derive(Debug, Default)]
struct PerAddress {
    counts: std::sync::Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in its address's share; given back when dropped.
#[derive(Debug)]
struct AddressPermit {
    table: Arc<PerAddress>,
    key: IpAddr,
}

impl PerAddress {
    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // A count is plain data: a panic elsewhere leaves it usable.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for one more connection of `peer`, if its address has one left.
    fn admit(self: &Arc<Self>, peer: IpAddr, cap: usize) -> Option<AddressPermit> {
        let key = address_key(peer);
        let mut counts = self.counts();
        let count = counts.entry(key).or_insert(0);
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(AddressPermit {
            table: self.clone(),
            key,
        })
    }
}

impl Drop for AddressPermit {
    fn drop(&mut self) {
        let mut counts = self.table.counts();
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// Serves `app` on `listener` until `stop` turns true, then waits for the requests in
/// flight. Connections from `uncapped` addresses (trusted proxies) are not held to
/// the per-address share.
pub async fn serve<S>(
    listener: TcpListener,
    app: S,
    limits: Limits,
    uncapped: crate::client::TrustedProxies,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()>
where
    S: tower::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let per_address = Arc::new(PerAddress::default());
    // `()` out, so no borrow of the channel is held across the loop's awaits.
    let mut stopped = std::pin::pin!(async move {
        let _ = stop.wait_for(|s| *s).await;
    });
    // A flood of refused connections is said once a second, with its count, not once
    // a connection: the log must not become the next thing to fill up.
    let (mut over_share, mut over_cap) = (Sparse::default(), Sparse::default());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: the listener itself is
                    // fine, so wait a moment instead of spinning or giving up.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stopped => break,
        };
        let share = if uncapped.trusts(peer.ip()) {
            None
        } else {
            match per_address.admit(peer.ip(), limits.max_connections_per_address) {
                Some(place) => Some(place),
                None => {
                    if let Some(refused) = over_share.note() {
                        tracing::warn!(%peer, max = limits.max_connections_per_address, refused, "connection refused: its address holds its share of connections (refused: how many in the last second)");
                    }
                    tokio::spawn(refuse(stream, OVER_ADDRESS_SHARE));
                    continue;
                }
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if let Some(refused) = over_cap.note() {
                tracing::warn!(%peer, max = limits.max_connections, refused, "connection refused: at the connection cap (refused: how many in the last second)");
            }
            tokio::spawn(refuse(stream, OVER_CAPACITY));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request)
        });
        let io = TokioIo::new(Idle::new(stream, limits.idle_timeout));
        let connection = graceful.watch(builder.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(permit);
            drop(share);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Counts a repeated event and says when to log it: the first time, then at most once
/// a second, with how many there were since it was last said.
#[derive(Default)]
struct Sparse {
    said_at: Option<std::time::Instant>,
    unsaid: u64,
}

impl Sparse {
    fn note(&mut self) -> Option<u64> {
        self.unsaid += 1;
        let now = std::time::Instant::now();
        if self
            .said_at
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1))
        {
            return None;
        }
        self.said_at = Some(now);
        Some(std::mem::take(&mut self.unsaid))
    }
}

/// Tells a connection over a cap to come back later, without waiting on it long.
async fn refuse(mut stream: TcpStream, answer: &'static [u8]) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(answer).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// A stream that fails with `TimedOut` once no byte has moved either way for
/// `timeout`. The timer is boxed so the stream stays `Unpin`, as hyper wants.
struct Idle<S> {
    inner: S,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
    /// The last read or write that moved bytes. Progress only notes the time; the
    /// timer is moved when it fires early (re-arming a tokio timer on every read and
    /// write was a measurable part of a small request's cost).
    last: Instant,
}

impl<S> Idle<S> {
    fn new(inner: S, timeout: Duration) -> Idle<S> {
        Idle {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
            last: Instant::now(),
        }
    }

    /// Progress pushes the deadline back; no progress past it is an error.
    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
        progressed: bool,
    ) -> Poll<io::Result<T>> {
        if progressed {
            self.last = Instant::now();
            return polled;
        }
        if polled.is_pending() && self.deadline.as_mut().poll(cx).is_ready() {
            let due = self.last + self.timeout;
            if Instant::now() >= due {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle for too long",
                )));
            }
            // Bytes moved since it was set: wait for the rest of the idle time (and
            // register this task with the moved timer).
            self.deadline.as_mut().reset(due);
            let _ = self.deadline.as_mut().poll(cx);
        }
        polled
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Idle<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let progressed = matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before;
        self.check(cx, polled, progressed)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Idle<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        let progressed = matches!(polled, Poll::Ready(Ok(n)) if n > 0);
        self.check(cx, polled, progressed)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        let progressed = matches!(polled, Poll::Ready(Ok(n)) if n > 0);
        self.check(cx, polled, progressed)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_refusals_is_said_once_a_second_with_its_count() {
        let mut sparse = Sparse::default();
        assert_eq!(sparse.note(), Some(1), "the first is said at once");
        for _ in 0..10_000 {
            assert_eq!(sparse.note(), None);
        }
        sparse.said_at = sparse
            .said_at
            .and_then(|at| at.checked_sub(Duration::from_millis(1001)));
        assert_eq!(sparse.note(), Some(10_001), "then with the count since");
    }

    #[test]
    fn the_canned_answers_say_their_length() {
        for answer in [OVER_CAPACITY, OVER_ADDRESS_SHARE] {
            let text = std::str::from_utf8(answer).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .unwrap();
            assert_eq!(length.parse::<usize>().unwrap(), body.len(), "{text}");
            serde_json::from_str::<serde_json::Value>(body).unwrap();
        }
    }

    #[test]
    fn an_address_gets_its_share_and_its_places_come_back() {
        let table = Arc::new(PerAddress::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let held: Vec<_> = (0..3).map(|_| table.admit(a, 3).unwrap()).collect();
        assert!(table.admit(a, 3).is_none(), "its share is taken");
        // Another address is counted apart; the same address as IPv6-mapped is not.
        assert!(table.admit("192.0.2.2".parse().unwrap(), 3).is_some());
        assert!(
            table
                .admit("::ffff:192.0.2.1".parse().unwrap(), 3)
                .is_none()
        );
        drop(held);
        assert!(table.admit(a, 3).is_some(), "places come back");
        assert!(
            table.counts().len() <= 1,
            "no entry left for closed connections"
        );
    }

    #[test]
    fn an_ipv6_subscriber_is_counted_by_its_slash_64() {
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(one), address_key(same));
        assert_ne!(address_key(one), address_key(other));
    }
}
