//! Cookie sessions through the middleware, on the in-memory store: the strategy, its
//! CSRF checks and its timeouts. (The SQL stores and the server's routes are tested in
//! portcullis-store and portcullis-server.)

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use http::{Request, StatusCode};
use portcullis::clock::ManualClock;
use portcullis::keys::Algorithm;
use portcullis::middleware::{AuthLayer, Authenticated};
use portcullis::session::{MemorySessionStore, SessionConfig, Sessions};
use portcullis::strategy::{Bearer, Chain, Session};
use tower::ServiceExt as _;

use crate::support::{Fixture, NOW};

struct App {
    router: Router,
    sessions: Sessions,
    clock: ManualClock,
    fx: Fixture,
}

fn app() -> App {
    let fx = Fixture::new(Algorithm::EdDSA);
    let clock = ManualClock::new(NOW);
    let config = SessionConfig::for_origin("https://app.example")
        .unwrap()
        .with_timeouts(Duration::from_secs(600), Duration::from_secs(3600))
        .unwrap();
    let sessions = Sessions::new(
        Arc::new(MemorySessionStore::new()),
        config,
        Arc::new(clock.clone()),
    );
    let verifier = Arc::new(portcullis::jwt::Verifier::new(
        fx.verifier.with_keys(|k| k.clone()),
        crate::support::validation(&fx.clock),
    ));
    let chain = Chain::new()
        .with(Bearer::new(verifier))
        .with(Session::new(sessions.clone()));
    let who = |auth: Authenticated| async move {
        format!("{} {}", auth.identity.strategy(), auth.identity.subject())
    };
    let router = Router::new()
        .route("/me", get(who))
        .route("/change", post(who))
        .layer(AuthLayer::required(chain));
    App {
        router,
        sessions,
        clock,
        fx,
    }
}

async fn send(app: &App, req: Request<Body>) -> (StatusCode, String) {
    let r = app.router.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::empty()).unwrap()
}

/// The `name=value` part of a `Set-Cookie` value.
fn cookie_pair(set_cookie: &http::HeaderValue) -> String {
    set_cookie
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_session_cookie_authenticates_and_a_started_session_is_always_new() {
    let app = app();
    let a = app.sessions.start("user-1", "read", "test").await.unwrap();
    let b = app.sessions.start("user-1", "read", "test").await.unwrap();
    assert_ne!(a.context.id(), b.context.id());
    assert_ne!(cookie_pair(&a.set_cookie), cookie_pair(&b.set_cookie));
    let cookie = cookie_pair(&a.set_cookie);
    let (status, body) = send(&app, request("GET", "/me", &[("cookie", &cookie)])).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "session user-1"));
    // A value we never issued authenticates nobody.
    let planted = "__Host-portcullis_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let (status, _) = send(&app, request("GET", "/me", &[("cookie", planted)])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_cross_site_state_change_is_refused_and_a_same_origin_one_passes() {
    let app = app();
    let s = app.sessions.start("user-1", "", "test").await.unwrap();
    let cookie = cookie_pair(&s.set_cookie);
    let token = s.context.csrf_token().to_owned();
    for (headers, want) in [
        (
            vec![("sec-fetch-site", "cross-site")],
            StatusCode::FORBIDDEN,
        ),
        (
            vec![("origin", "https://evil.example")],
            StatusCode::FORBIDDEN,
        ),
        (vec![], StatusCode::FORBIDDEN),
        (vec![("sec-fetch-site", "same-origin")], StatusCode::OK),
        (vec![("origin", "https://app.example")], StatusCode::OK),
        (vec![("x-csrf-token", token.as_str())], StatusCode::OK),
    ] {
        let mut h = headers.clone();
        h.push(("cookie", &cookie));
        let (status, body) = send(&app, request("POST", "/change", &h)).await;
        assert_eq!(status, want, "{headers:?}: {body}");
        if want == StatusCode::FORBIDDEN {
            assert!(body.contains("access_denied"), "{body}");
        }
    }
}

#[tokio::test]
async fn a_bad_bearer_token_never_falls_back_to_the_cookie() {
    let app = app();
    let s = app.sessions.start("user-1", "", "test").await.unwrap();
    let cookie = cookie_pair(&s.set_cookie);
    let bad = format!("Bearer {}x", app.fx.token());
    let (status, body) = send(
        &app,
        request(
            "GET",
            "/me",
            &[("cookie", &cookie), ("authorization", &bad)],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("invalid_token"), "{body}");
    // A good token wins over the cookie, and needs no CSRF proof.
    let good = format!("Bearer {}", app.fx.token());
    let (status, body) = send(
        &app,
        request(
            "POST",
            "/change",
            &[("cookie", &cookie), ("authorization", &good)],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("bearer "), "{body}");
}

#[tokio::test]
async fn sessions_end_when_idle_when_too_old_and_when_revoked() {
    let app = app();
    let cookie_of = |s: &portcullis::session::Started| cookie_pair(&s.set_cookie);
    let me = |cookie: String| request("GET", "/me", &[("cookie", &cookie)]);

    // Idle: 600 s without a request.
    let s = app.sessions.start("user-1", "", "test").await.unwrap();
    app.clock.advance(599);
    assert_eq!(send(&app, me(cookie_of(&s))).await.0, StatusCode::OK);
    app.clock.advance(599);
    assert_eq!(
        send(&app, me(cookie_of(&s))).await.0,
        StatusCode::OK,
        "use keeps it alive"
    );
    app.clock.advance(600);
    assert_eq!(
        send(&app, me(cookie_of(&s))).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Absolute: 3600 s however busy.
    let s = app.sessions.start("user-1", "", "test").await.unwrap();
    for _ in 0..11 {
        app.clock.advance(300);
        assert_eq!(send(&app, me(cookie_of(&s))).await.0, StatusCode::OK);
    }
    app.clock.advance(300);
    assert_eq!(
        send(&app, me(cookie_of(&s))).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Revoked: by its owner only.
    let s = app.sessions.start("user-1", "", "test").await.unwrap();
    assert!(!app.sessions.end(s.context.id(), "user-2").await.unwrap());
    assert_eq!(send(&app, me(cookie_of(&s))).await.0, StatusCode::OK);
    assert!(app.sessions.end(s.context.id(), "user-1").await.unwrap());
    assert_eq!(
        send(&app, me(cookie_of(&s))).await.0,
        StatusCode::UNAUTHORIZED
    );

    // All of a user's, and nobody else's.
    let a = app.sessions.start("user-1", "", "test").await.unwrap();
    let b = app.sessions.start("user-1", "", "test").await.unwrap();
    let other = app.sessions.start("user-2", "", "test").await.unwrap();
    assert_eq!(app.sessions.list("user-1").await.unwrap().len(), 2);
    assert_eq!(app.sessions.end_all("user-1").await.unwrap().len(), 2);
    for s in [&a, &b] {
        assert_eq!(
            send(&app, me(cookie_of(s))).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(send(&app, me(cookie_of(&other))).await.0, StatusCode::OK);
}

/// A store that knows its sessions in memory and says so through `cached_session`
/// (as the server's cache does), counting the lookups that had to wait.
struct InMemoryFirst {
    inner: MemorySessionStore,
    waited: std::sync::atomic::AtomicUsize,
}

impl portcullis::session::SessionStore for InMemoryFirst {
    fn create_session<'a>(
        &'a self,
        s: &'a portcullis::session::NewSession,
    ) -> portcullis::session::StoreFuture<'a, ()> {
        self.inner.create_session(s)
    }
    fn find_session<'a>(
        &'a self,
        h: &'a portcullis::session::SessionHash,
    ) -> portcullis::session::StoreFuture<'a, Option<portcullis::session::SessionRecord>> {
        self.waited
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.find_session(h)
    }
    fn cached_session(
        &self,
        h: &portcullis::session::SessionHash,
    ) -> Option<Arc<portcullis::session::SessionRecord>> {
        // The memory store's lookup never waits: polled once, it is done.
        let mut find = self.inner.find_session(h);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match find.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(Ok(found)) => found.map(Arc::new),
            _ => None,
        }
    }
    fn touch_session<'a>(
        &'a self,
        id: &'a str,
        at: i64,
    ) -> portcullis::session::StoreFuture<'a, ()> {
        self.inner.touch_session(id, at)
    }
    fn revoke_session<'a>(
        &'a self,
        id: &'a str,
        s: Option<&'a str>,
        at: i64,
    ) -> portcullis::session::StoreFuture<'a, bool> {
        self.inner.revoke_session(id, s, at)
    }
    fn revoke_sessions_of<'a>(
        &'a self,
        s: &'a str,
        at: i64,
    ) -> portcullis::session::StoreFuture<'a, Vec<String>> {
        self.inner.revoke_sessions_of(s, at)
    }
    fn sessions_of<'a>(
        &'a self,
        s: &'a str,
    ) -> portcullis::session::StoreFuture<'a, Vec<portcullis::session::SessionRecord>> {
        self.inner.sessions_of(s)
    }
}

/// A session the store holds in memory is decided without waiting, by the same rules:
/// the CSRF checks and "one credential" still refuse, and a session due a touch or
/// looking ended takes the waiting path, which touches it or ends it.
#[tokio::test]
async fn a_session_held_in_memory_is_decided_at_once_by_the_same_rules() {
    use portcullis::rejection::Rejection;
    use std::sync::atomic::Ordering::SeqCst;
    let store = Arc::new(InMemoryFirst {
        inner: MemorySessionStore::new(),
        waited: 0.into(),
    });
    let clock = ManualClock::new(NOW);
    let config = SessionConfig::for_origin("https://app.example")
        .unwrap()
        .with_timeouts(Duration::from_secs(600), Duration::from_secs(3600))
        .unwrap();
    let sessions = Sessions::new(store.clone(), config, Arc::new(clock.clone()));
    let chain = Chain::new().with(Session::new(sessions.clone()));
    let s = sessions.start("user-1", "read", "test").await.unwrap();
    let cookie = cookie_pair(&s.set_cookie);
    let parts = |method: &str, extra: &[(&str, &str)]| {
        let mut h = vec![("cookie", cookie.as_str())];
        h.extend_from_slice(extra);
        request(method, "/me", &h).into_parts().0
    };

    // A read: decided at once, nothing waited for.
    let decided = chain
        .authenticate_now(&parts("GET", &[]))
        .expect("decided at once");
    let identity = decided.unwrap().expect("authenticated");
    assert_eq!(
        (identity.strategy(), identity.subject()),
        ("session", "user-1")
    );
    assert_eq!(store.waited.load(SeqCst), 0);
    // A cross-site change, and a cookie beside another scheme: refused at once.
    assert!(matches!(
        chain.authenticate_now(&parts("POST", &[("sec-fetch-site", "cross-site")])),
        Some(Err(Rejection::CrossSiteRequest))
    ));
    assert!(matches!(
        chain.authenticate_now(&parts("GET", &[("authorization", "Basic dTpw")])),
        Some(Err(Rejection::InvalidRequest(_)))
    ));

    // Due a touch: the waiting path, which moves "last seen".
    clock.advance(299);
    assert!(chain.authenticate_now(&parts("GET", &[])).is_none());
    assert!(
        chain
            .authenticate(&parts("GET", &[]))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(store.waited.load(SeqCst), 1);
    let seen = sessions.list("user-1").await.unwrap()[0].last_seen_at;
    assert_eq!(seen, NOW + 299);
    assert!(
        chain.authenticate_now(&parts("GET", &[])).is_some(),
        "touched: at once again"
    );

    // Idle too long: not decided at once; the waiting path ends it.
    clock.advance(600);
    assert!(chain.authenticate_now(&parts("GET", &[])).is_none());
    assert!(
        chain
            .authenticate(&parts("GET", &[]))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        sessions.list("user-1").await.unwrap().is_empty(),
        "revoked on sight"
    );
    assert!(chain.authenticate_now(&parts("GET", &[])).is_none());
}
