//! Prometheus metrics at `GET /metrics`, on their own listener (`metrics_bind`; off by
//! default, never on the public port). Labels name routes, outcomes, reasons and key
//! states: never a user, an id or a token.
//!
//! Counters and histograms are recorded where things happen, through the `metrics`
//! facade (the library records `portcullis_rejections_total` and
//! `portcullis_hash_wait_seconds` the same way); gauges are read at scrape time from
//! the state they describe.

use std::sync::OnceLock;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::state::AppState;

/// Seconds, for latency histograms: 0.5 ms to 10 s.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's Prometheus recorder, installed by the first server that serves metrics
/// (later ones in the same process share it); `None` when the application installed
/// another `metrics` recorder first.
fn handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .clone()
}

/// Binds `addr` and serves `GET /metrics` until `stop`. Fails when the address cannot
/// be bound or another metrics recorder is installed.
pub async fn start(
    addr: std::net::SocketAddr,
    state: AppState,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    let handle = handle().ok_or_else(|| {
        anyhow::anyhow!(
            "metrics_bind is set but another metrics recorder is installed in this process"
        )
    })?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding metrics_bind {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    // Histograms keep raw samples until drained: drain them every few seconds even
    // when nobody scrapes, so memory stays bounded.
    let upkeep = {
        let (handle, mut stop) = (handle.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => handle.run_upkeep(),
                    _ = stop.changed() => return,
                }
            }
        })
    };
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state((state, handle));
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stop.changed().await;
        });
        if let Err(e) = served.await {
            tracing::warn!(error = %e, "the metrics listener stopped");
        }
        upkeep.abort();
    });
    Ok((bound, task))
}

/// Sets the gauges from the state, then renders everything.
async fn scrape(State((state, handle)): State<(AppState, PrometheusHandle)>) -> Response {
    let s = &state.0;
    metrics::gauge!("portcullis_hash_in_flight").set(s.hasher.in_flight() as f64);
    if let Some(cache) = s.verifier.cache_stats() {
        metrics::counter!("portcullis_token_cache_hits_total").absolute(cache.hits);
        metrics::counter!("portcullis_token_cache_misses_total").absolute(cache.misses);
        metrics::gauge!("portcullis_token_cache_entries").set(cache.entries as f64);
    }
    let cached = s.session_cache.stats();
    metrics::gauge!("portcullis_session_cache_entries").set(cached.entries as f64);
    metrics::counter!("portcullis_session_cache_hits_total").absolute(cached.hits);
    metrics::counter!("portcullis_session_cache_misses_total").absolute(cached.misses);
    let (sessions, users) = s.revocations.len();
    metrics::gauge!("portcullis_revocations_held", "kind" => "sessions").set(sessions as f64);
    metrics::gauge!("portcullis_revocations_held", "kind" => "not_before").set(users as f64);
    let keys = s.keys.current();
    for state_name in ["next", "current", "retired"] {
        let n = keys
            .listing
            .iter()
            .filter(|k| k.state.as_str() == state_name)
            .count();
        metrics::gauge!("portcullis_signing_keys", "state" => state_name).set(n as f64);
    }
    match s.store.live_sessions(state.now()).await {
        Ok(n) => metrics::gauge!("portcullis_sessions_live").set(n as f64),
        Err(e) => tracing::warn!(error = %e, "counting live sessions for /metrics failed"),
    }
    let mut response = (StatusCode::OK, handle.render()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Counts every answer by route template, method and status, and times it. The route
/// is axum's matched path (`/session/{id}`), never the request's own path.
pub async fn observe(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    // Known methods by name; anything else one value, so a client cannot mint labels.
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        _ => "other",
    };
    let mut seen = Observed {
        route,
        method,
        started: Instant::now(),
        status: None,
    };
    let response = next.run(request).await;
    seen.status = Some(response.status().as_u16());
    response
}

/// One answer being timed. Recorded when dropped: a request dropped before its answer
/// (the request timeout gave up on it and the client got 408, or the client went away)
/// is counted with status `dropped`, so slow requests are not missing from the counts.
struct Observed {
    route: String,
    method: &'static str,
    started: Instant,
    status: Option<u16>,
}

impl Drop for Observed {
    fn drop(&mut self) {
        let status = self
            .status
            .map_or_else(|| "dropped".to_owned(), |s| s.to_string());
        let route = std::mem::take(&mut self.route);
        metrics::counter!("portcullis_http_requests_total", "route" => route.clone(), "method" => self.method, "status" => status)
            .increment(1);
        metrics::histogram!("portcullis_http_request_duration_seconds", "route" => route, "method" => self.method)
            .record(self.started.elapsed().as_secs_f64());
    }
}

/// Counts a login attempt by its outcome.
pub fn login(outcome: &'static str) {
    metrics::counter!("portcullis_logins_total", "outcome" => outcome).increment(1);
}

/// Counts a delivery of the outbox by its outcome: `sent`, `retry` or `failed`.
pub fn mail(outcome: &'static str) {
    metrics::counter!("portcullis_mail_deliveries_total", "outcome" => outcome).increment(1);
}

/// One webhook delivery attempt: `delivered`, `retry` or `failed` (given up on).
pub fn webhook(outcome: &'static str) {
    metrics::counter!("portcullis_webhook_deliveries_total", "outcome" => outcome).increment(1);
}

/// The outbox now: messages waiting, sent, and given up on.
pub fn mail_queue(queue: portcullis_store::MailQueue) {
    for (state, n) in [
        ("waiting", queue.waiting),
        ("sent", queue.sent),
        ("failed", queue.failed),
    ] {
        metrics::gauge!("portcullis_mail_outbox", "state" => state).set(n as f64);
    }
}

/// Counts a refresh by its outcome.
pub fn refresh(outcome: &'static str) {
    metrics::counter!("portcullis_refreshes_total", "outcome" => outcome).increment(1);
}
