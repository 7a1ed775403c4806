//! Building the application and serving it until asked to stop.

use portcullis::clock::secs;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::http::{HeaderName, HeaderValue};
use portcullis::clock::{Clock, SystemClock};
use portcullis::jwt::Verifier;
use portcullis::password::{HashParams, PasswordHasher};
use portcullis::session::Sessions;
use portcullis::strategy::{Bearer, Chain, Session};
use portcullis_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::limit::RequestBodyLimitLayer;

pub use crate::banner::{Connections, Started};
use crate::banner::{banner, raise_descriptors};
use crate::config::{Config, redact_url};
use crate::keyring::KeyRing;
use crate::routes;
use crate::state::{AppState, Inner, validation};
use crate::throttle::Throttle;

/// A running server, for tests and for `main`.
#[derive(Debug)]
pub struct Running {
    /// The address it listens on (useful with port 0).
    pub addr: SocketAddr,
    /// Where `GET /metrics` is served, when `metrics_bind` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// What a person starting it should be told (see [`Running::banner`]).
    pub started: Started,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// The start-up banner: version, address, issuer, database, keys, pages.
    pub fn banner(&self) -> String {
        banner(self.addr, &self.started)
    }

    /// Stops accepting connections, lets in-flight requests finish, and waits.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await.context("server task")?
    }

    /// Waits until the server stops by itself (it does not, unless it fails).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("server task")?
    }

    /// A handle that stops the server when signalled.
    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Opens the store, loads keys and revocations, binds, and starts serving.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    start_with(config, Arc::new(SystemClock)).await
}

/// [`start`] with an injected clock.
pub async fn start_with(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    let sqlite_file =
        crate::kek::sqlite_path(&config.database_url).map(|p| std::path::absolute(&p).unwrap_or(p));
    let database_created = sqlite_file.as_ref().is_some_and(|p| !p.exists());
    crate::kek::check_configured(&config.kek, &config.database_url)?;
    // Mail settings are checked before the database is touched, as the KEK is.
    let mail_transport = std::sync::Arc::new(crate::mail::Transport::from_settings(
        config.mail.smtp_url.as_deref(),
        config.mail_folder(),
        config.mail.lease,
    )?);
    let mail_from: lettre::message::Mailbox = config.mail.from.parse().context("mail_from")?;
    let store = portcullis_store::open(&config.database_url)
        .await
        .with_context(|| format!("opening the database {}", redact_url(&config.database_url)))?;
    // Held while serving: `portcullis restore` refuses to replace a database in use.
    let database_lock = match &sqlite_file {
        Some(path) => Some(crate::kek::lock_database(path, false).with_context(|| {
            format!(
                "{} is being restored (portcullis restore): try again when it is done",
                path.display()
            )
        })?),
        None => None,
    };
    let now = clock.now();
    // Keys retired less than a token lifetime (plus leeway) ago still verify.
    let keep_for = config.revocation_window();
    let (keks, kek_generated) = crate::keyring::open_kek(store.as_ref(), &config).await?;
    if kek_generated {
        tracing::info!(source = %keks.current().source, "generated a key-encryption key for the signing keys; back it up with the database, which is useless without it");
    }
    let first_key = store.signing_keys().await?.is_empty();
    // For the banner: the KEK's id and where it comes from (a file as an absolute path).
    let kek_where = {
        let current = keks.current();
        let source = match current.source.strip_prefix("the file ") {
            Some(path) => {
                let path = std::path::PathBuf::from(path);
                std::path::absolute(&path)
                    .unwrap_or(path)
                    .display()
                    .to_string()
            }
            None => current.source.clone(),
        };
        let mut text = format!("{} in {source}", current.id());
        if let Some(previous) = keks.previous() {
            text += &format!(
                " (and the previous one, {}, during a change of key)",
                previous.id()
            );
        }
        text
    };
    let keys = KeyRing::load(store.as_ref(), keks, config.signing_alg, keep_for, now).await?;
    // A database made before HMAC was refused may hold one: its tokens cannot be
    // verified through the JWKS by anyone. Say how to leave it rather than serve it.
    let signing = keys.current().active.algorithm();
    if let Err(e) = crate::config::publishable(signing) {
        anyhow::bail!(
            "the current signing key: {e}. Make a new one: portcullis keys rotate --now --alg RS256"
        );
    }
    crate::events::log_keys(&keys.current(), "signing key");
    // The cursor first, then the state: a revocation committed in between is both in
    // the state and after the cursor (applying it twice is harmless), never in neither.
    // The cursor starts a little behind the newest id, so that a lower id still being
    // committed (PostgreSQL commits out of order) is read when it lands.
    let cursor = (store.last_event_id().await? - 100).max(0);
    let revocations = Arc::new(crate::revocation::from_state(
        store.revoked_since(now - secs(keep_for)).await?,
    ));
    let hasher = PasswordHasher::new(
        HashParams::default(),
        config.hash_concurrency,
        config.hash_queue,
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let verifier = Verifier::new(
        keys.current().verifying.clone(),
        validation(&config, clock.clone())?,
    );
    // Sized by `token_cache_entries` (the byte bound follows: each entry's measured
    // overhead plus an 8 KiB token at most, so the entry count is what binds), and
    // counted: `cache_watch` warns when the hit rate collapses.
    let entries = config.token_cache_entries;
    let bytes = entries as u64 * (portcullis::jwt::CACHE_ENTRY_OVERHEAD + 8 * 1024);
    let verifier = Arc::new(verifier.with_cache(entries, bytes).with_cache_stats());
    let bearer = Bearer::new(verifier.clone()).with_revocation(revocations.clone());
    let session_cache = Arc::new(crate::session_cache::CachedSessions::new(
        store.clone(),
        crate::session_cache::DEFAULT_ENTRIES,
        clock.clone(),
        config.sessions.idle_timeout(),
    ));
    let sessions = Sessions::new(
        session_cache.clone(),
        config.sessions.clone(),
        clock.clone(),
    );
    let chain = Chain::new()
        .with(bearer.clone())
        .with(Session::new(sessions.clone()));
    let listener = TcpListener::bind(config.bind).await.map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                ": another process listens there (another portcullis? `ss -ltnp 'sport = :{}'` names it); stop it, or choose another address with --bind or PORTCULLIS_BIND",
                config.bind.port()
            ),
            std::io::ErrorKind::PermissionDenied => {
                ": ports below 1024 need privileges; choose a port above 1023 and put a proxy in front".to_owned()
            }
            _ => String::new(),
        };
        anyhow::anyhow!("binding {}: {e}{hint}", config.bind)
    })?;
    let addr = listener.local_addr()?;
    let throttle = Throttle::new(&config);
    // Passkeys need a relying party id, which is a domain name: an issuer on an IP
    // address (the default `http://127.0.0.1:8080`) serves everything else.
    let webauthn = match crate::passkeys::relying_party(&config.issuer) {
        Ok(rp) => Some(Arc::new(rp)),
        Err(e) => {
            tracing::info!(issuer = %config.issuer, reason = %e, "passkeys are off: they need an issuer whose host is a domain name (localhost works)");
            None
        }
    };
    let state = AppState(Arc::new(Inner {
        config,
        store,
        hasher,
        keys,
        verifier,
        revocations,
        bearer,
        sessions,
        session_cache,
        chain,
        throttle,
        webauthn,
        upstreams: Default::default(),
        events: crate::revocation::Cursor::new(cursor),
        clock,
        readiness: std::sync::Mutex::new(None),
    }));
    let (shutdown, stopped) = watch::channel(false);
    let events = tokio::spawn(crate::events::follow(state.clone(), shutdown.subscribe()));
    let retention = tokio::spawn(retain(state.clone(), shutdown.subscribe()));
    tokio::spawn(cache_watch(state.clone(), shutdown.subscribe()));
    let lifecycle = tokio::spawn(key_lifecycle(state.clone(), shutdown.subscribe()));
    mail_transport.prepare()?;
    let mail_sender = tokio::spawn(crate::mail::run(
        state.clone(),
        mail_transport.clone(),
        mail_from,
        shutdown.subscribe(),
    ));
    let webhook_sender = tokio::spawn(crate::webhooks::run(state.clone(), shutdown.subscribe()));
    let app = app(state.clone());
    let metrics = match state.0.config.metrics_bind {
        Some(bind) => {
            Some(crate::prometheus::start(bind, state.clone(), shutdown.subscribe()).await?)
        }
        None => None,
    };
    let metrics_addr = metrics.as_ref().map(|(addr, _)| *addr);
    if let Some(metrics_addr) = metrics_addr {
        tracing::info!(%metrics_addr, "metrics at /metrics");
    }
    tracing::info!(%addr, backend = state.0.store.backend(), issuer = %state.0.config.issuer, "listening");
    let started = Started {
        issuer: state.0.config.issuer.clone(),
        database: match &sqlite_file {
            Some(path) => path.display().to_string(),
            None => redact_url(&state.0.config.database_url),
        },
        database_created,
        key_generated: first_key.then(|| state.0.config.signing_alg.as_str()),
        signing_alg: state.0.keys.current().active.algorithm().as_str(),
        connections: raise_descriptors(
            state.0.config.max_connections,
            state.0.config.max_connections_per_address,
        ),
        kek: kek_where,
        kek_generated,
        mail: mail_transport.describe(),
    };
    let limits = state.0.config.limits();
    let uncapped = state.0.config.trusted_proxies.clone();
    let task = tokio::spawn(async move {
        let served = crate::wire::serve(listener, app, limits, uncapped, stopped.clone())
            .await
            .context("serving");
        events.abort();
        retention.abort();
        lifecycle.abort();
        mail_sender.abort();
        webhook_sender.abort();
        if let Some((_, task)) = metrics {
            task.abort();
        }
        drop(database_lock);
        served
    });
    Ok(Running {
        addr,
        metrics_addr,
        started,
        shutdown,
        task,
    })
}

/// The application: the router, and around it (outside it, so that they wrap each
/// request once, not each route with a box of its own) the layers every request
/// passes: the request context (id, span, failures logged once, JSON error bodies for
/// what layers and the router answer: 405, 408, 413), the whole-request timeout and the
/// body limit.
pub fn app(state: AppState) -> App {
    let limit = state.0.config.max_body_bytes;
    let timeout = state.0.config.request_timeout;
    let observed = state.0.config.metrics_bind.is_some();
    let router = routes::router(state);
    // Per-route request counts and latencies, only when metrics are served (the layer
    // reads axum's matched route, so it sits on the routes).
    let router = if observed {
        router.layer(axum::middleware::from_fn(crate::prometheus::observe))
    } else {
        router
    };
    tower::ServiceBuilder::new()
        .layer(RequestContextLayer)
        .layer(crate::timeout::TimeoutLayer::new(timeout))
        .map_response(into_axum_body as fn(_) -> _)
        .layer(RequestBodyLimitLayer::new(limit))
        .service(router)
}

/// What [`app`] builds: the router inside the layers every request passes.
pub type App = RequestContext<
    crate::timeout::Timeout<
        tower::util::MapResponse<
            tower_http::limit::RequestBodyLimit<Router>,
            fn(
                axum::http::Response<tower_http::limit::ResponseBody<axum::body::Body>>,
            ) -> axum::response::Response,
        >,
    >,
>;

fn into_axum_body(
    response: axum::http::Response<tower_http::limit::ResponseBody<axum::body::Body>>,
) -> axum::response::Response {
    response.map(axum::body::Body::new)
}

/// The request-context layer: see [`RequestContext`].
#[derive(Clone, Copy, Debug)]
pub struct RequestContextLayer;

impl<S> tower::Layer<S> for RequestContextLayer {
    type Service = RequestContext<S>;

    fn layer(&self, inner: S) -> RequestContext<S> {
        RequestContext { inner }
    }
}

/// Gives the request an id (the caller's `x-request-id`, else a random UUID), runs it
/// in a span that carries the id and with its [`crate::audit::Origin`] (for the audit
/// trail), puts the id on the answer, and passes the answer
/// through `error::finish` (which logs refusals and failures with the id).
///
/// State-changing requests get an `info` span, so every line they log carries their
/// id. Reads (`GET`, `HEAD`) log nothing at `info` but a refusal or a failure, which
/// `finish` logs with the id; a span for each of them cost more than the rest of a
/// bearer request's own work, so theirs is `debug` (`RUST_LOG=debug` brings it back).
/// The path only, never the query: query strings may carry secrets.
///
/// A tower service of our own rather than `axum::middleware::from_fn`, which boxes
/// the rest of the stack and clones it on every request.
#[derive(Clone, Debug)]
pub struct RequestContext<S> {
    inner: S,
}

impl<S, B> tower::Service<axum::http::Request<B>> for RequestContext<S>
where
    S: tower::Service<
            axum::http::Request<B>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        >,
{
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = ContextFuture<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: axum::http::Request<B>) -> Self::Future {
        use tracing::Instrument as _;
        let id = match request.headers().get(REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let id = random_uuid();
                request.headers_mut().insert(REQUEST_ID, id.clone());
                id
            }
        };
        let read = matches!(
            *request.method(),
            axum::http::Method::GET | axum::http::Method::HEAD
        );
        let shown = id.to_str().unwrap_or("-");
        let span = if !read {
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %shown)
        } else if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %shown)
        } else {
            tracing::Span::none()
        };
        let peer = request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|axum::extract::ConnectInfo(addr)| addr.ip());
        let origin = crate::audit::Origin::of(peer, request.headers());
        ContextFuture {
            inner: origin.scope(self.inner.call(request).instrument(span)),
            id: Some(id),
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of [`RequestContext`]: the inner answer, with its id and `finish`.
    pub struct ContextFuture<F> {
        #[pin]
        inner: tokio::task::futures::TaskLocalFuture<crate::audit::Origin, tracing::instrument::Instrumented<F>>,
        id: Option<HeaderValue>,
    }
}

impl<F> std::future::Future for ContextFuture<F>
where
    F: std::future::Future<Output = Result<axum::response::Response, std::convert::Infallible>>,
{
    type Output = Result<axum::response::Response, std::convert::Infallible>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let Ok(mut response) = std::task::ready!(this.inner.poll(cx));
        if let Some(id) = this.id.take() {
            response.headers_mut().insert(REQUEST_ID, id);
        }
        std::task::Poll::Ready(Ok(crate::error::finish(response)))
    }
}

/// The request id header.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A random (version 4) UUID made by the `uuid` crate from the library's per-thread
/// random buffer: tower-http's `MakeRequestUuid` asked the kernel for 16 bytes on every
/// request, a system call that was a few percent of a bearer request's CPU.
fn random_uuid() -> HeaderValue {
    let bits = portcullis::jwt::random_bits().unwrap_or_default();
    let id = uuid::Builder::from_random_bytes(bits).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut text))
        .unwrap_or(HeaderValue::from_static("-"))
}

/// What the store prunes, and when: ended records after the revocation window, spent
/// throttle counters, forgotten devices.
fn retention(config: &Config) -> portcullis_store::Retention {
    portcullis_store::Retention {
        keep: secs(config.revocation_window()),
        rotation: config.rotation_policy(),
        device_idle: secs(config.device_lifetime),
        throttle_idle: Throttle::new(config).idle(),
        // A week, to answer "was my mail sent?".
        mail_kept: 7 * 86_400,
        audit_kept: secs(config.audit_retention),
    }
}

/// Keeps the database and the in-memory revocation list from growing without end: at
/// start and then once per access-token lifetime (plus leeway), deletes what ended
/// before that window and forgets revocations no live token can need. Every instance
/// runs it; the deletes are idempotent.
async fn retain(state: AppState, mut stop: watch::Receiver<bool>) {
    let keep = state.0.config.revocation_window();
    let retention = retention(&state.0.config);
    loop {
        let now = state.now();
        match state.0.store.prune(now, &retention).await {
            Ok(p) if p != portcullis_store::Pruned::default() => tracing::info!(
                events = p.events,
                sessions = p.sessions,
                families = p.families,
                throttle = p.throttle,
                devices = p.devices,
                mail = p.mail,
                "pruned records that ended"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning failed; trying again later"),
        }
        state.0.revocations.prune(now - secs(keep));
        tokio::select! {
            _ = tokio::time::sleep(keep) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Every minute, looks at the verified-token cache's hits and misses since the last
/// look and warns when the cache is too small for the tokens in use (see
/// [`cache_too_small`]). A cache that misses because the tokens are new (a burst of
/// logins) is not full and says nothing.
async fn cache_watch(state: AppState, mut stop: watch::Receiver<bool>) {
    let capacity = state.0.config.token_cache_entries as u64;
    let mut last = state.0.verifier.cache_stats();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = stop.changed() => return,
        }
        let now = state.0.verifier.cache_stats();
        if let (Some(before), Some(after)) = (last, now) {
            let hits = after.hits.saturating_sub(before.hits);
            let misses = after.misses.saturating_sub(before.misses);
            if cache_too_small(hits, misses, after.entries, capacity) {
                tracing::warn!(
                    hits,
                    misses,
                    entries = after.entries,
                    capacity,
                    "the verified-token cache is too small for the tokens in use: most \
                     requests paid a signature check in the last minute with the cache full; \
                     set token_cache_entries to about the number of access tokens alive at \
                     once (about 1 KB each; docs/defaults.md)"
                );
            }
        }
        last = now;
    }
}

/// True when a minute's `hits` and `misses` say the cache is too small: it is (nearly)
/// full, fewer than half the lookups hit, and there were enough of them to matter.
pub(crate) fn cache_too_small(hits: u64, misses: u64, entries: u64, capacity: u64) -> bool {
    capacity > 0 && misses >= 1_000 && misses > hits && entries * 10 >= capacity * 9
}

/// Moves the keys through their states on time (a next key starts signing, a retired
/// one leaves the JWKS and the verifier), and makes the next key when automatic
/// rotation is due. Checked every second against the injected clock; the decision to
/// rotate is the store's (one successor per key), so several instances add one key.
async fn key_lifecycle(state: AppState, mut stop: watch::Receiver<bool>) {
    let config = &state.0.config;
    let interval = secs(config.key_rotation_interval);
    let delay = secs(config.key_publication_delay);
    // A failure repeats every second until its cause is gone (a KEK this instance does
    // not hold): said at once, then once a minute.
    let mut said_at: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
        let now = state.now();
        let keys = state.0.keys.current();
        if keys.next_change.is_some_and(|at| at <= now) {
            crate::events::reload_keys(&state).await;
        }
        let Some(newest) = keys.newest() else {
            continue;
        };
        if interval == 0 || now < newest.activates_at + interval - delay {
            continue;
        }
        let activates_at = (now + delay).max(newest.activates_at + interval);
        match crate::keyring::add_key(
            state.0.store.as_ref(),
            state.0.keys.keks(),
            config.alg_after(Some(newest.alg)),
            now,
            activates_at,
            Some(&newest.kid),
        )
        .await
        {
            Ok(Some(kid)) => {
                tracing::info!(%kid, activates_at, "automatic key rotation: a new key is published");
                crate::audit::record(
                    &state,
                    crate::audit::Entry::new(
                        crate::audit::Kind::KeyRotated,
                        crate::audit::Actor::System,
                    )
                    .with("kid", kid.as_str())
                    .with("via", "automatic"),
                )
                .await;
                crate::events::reload_keys(&state).await;
            }
            // Another instance made it: the event log brings it here.
            Ok(None) => crate::events::reload_keys(&state).await,
            Err(e) => {
                if said_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                    said_at = Some(std::time::Instant::now());
                    tracing::error!(
                        error = format!("{e:#}"),
                        "automatic key rotation failed; trying again every second"
                    );
                }
            }
        }
    }
}

/// Starts serving and stops on SIGTERM or Ctrl-C, letting in-flight requests finish.
pub async fn run(config: Config, quiet: bool) -> anyhow::Result<()> {
    let running = start(config).await?;
    if !quiet {
        eprint!("{}", running.banner());
    }
    let stop = running.shutdown_handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    running.wait().await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

pub(crate) async fn open_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    portcullis_store::open(url)
        .await
        .with_context(|| format!("opening the database {}", redact_url(url)))
}

#[cfg(test)]
mod request_id_tests {
    use super::*;

    #[test]
    fn request_ids_are_distinct_version_4_uuids() {
        let (a, b) = (random_uuid(), random_uuid());
        assert_ne!(a, b);
        let parsed = uuid::Uuid::try_parse(a.to_str().unwrap()).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(a.to_str().unwrap(), parsed.hyphenated().to_string());
    }
}
