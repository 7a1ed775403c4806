//! A server-rendered axum application that signs people in with an OpenID Connect
//! provider, in about ten lines (feature `webapp`): the counterpart of
//! express-openid-connect.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{Router, routing::get};
//! use portcullis::oidc::web::{Person, WebApp};
//!
//! let auth = WebApp::builder("https://id.example.com", "notes", "https://notes.example.com")
//!     .client_secret("…")
//!     .key([7; 32]) // 32 random bytes, secret, the same on every instance
//!     .build()
//!     .await?;
//! let app: Router = auth.install(Router::new().route("/", get(home)));
//!
//! async fn home(person: Person) -> String {
//!     format!("Hello, {}", person.name())
//! }
//! # Ok(()) }
//! ```
//!
//! [`WebApp::install`] adds three routes — `GET /auth/login` (off to the provider),
//! `GET /auth/callback` (back: every check of [`OidcClient::complete`], then a cookie
//! session) and `POST /auth/logout` (a form with the session's CSRF token: the session
//! ends here, then at the provider) — and makes the extractors work on every route:
//!
//! - [`Person`]: the signed-in person, with their typed ID-token claims ([`IdClaims`]),
//!   the ID token, the session's CSRF token for forms, and the application's own data
//!   ([`Person::data`], [`Person::with_data`]). A route that takes it is for people
//!   only: a browser without a session is sent to sign in and comes back (303), a
//!   program gets 401. `Option<Person>` takes anyone.
//! - [`CsrfForm`]: a form posted by the signed-in person, its `csrf_token` field
//!   checked against the session (in constant time); a missing or wrong token is 403.
//!
//! The session is the library's [`Sessions`] (in memory by default, or any
//! [`crate::session::SessionStore`]); what the application shows about the person
//! travels beside it in a second cookie, sealed with AES-256-GCM under the key and
//! bound to the session's id, so it can be neither read nor moved to another session,
//! and it is worth nothing once the session ends.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use super::flow::{SealedCookie, local_path};
use super::{OidcClient, OidcError};
use crate::clock::SystemClock;
use crate::session::{MemorySessionStore, SessionConfig, SessionContext, Sessions};

/// A key for [`WebAppBuilder::key`] from its text: 32 bytes in base64url (as
/// `openssl rand -base64 32 | tr '+/' '-_'` makes, padding optional).
pub fn parse_key(text: &str) -> Result<[u8; 32], OidcError> {
    crate::b64::decode(text.trim().trim_end_matches('=').as_bytes())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| OidcError::Config("a key is 32 bytes in base64url".into()))
}

/// Where the routes are, under the prefix (default `/auth`).
const LOGIN: &str = "/login";
const CALLBACK: &str = "/callback";
const LOGOUT: &str = "/logout";

/// The most a form posted to a [`CsrfForm`] may hold.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// Builds a [`WebApp`]: see [`WebApp::builder`].
#[must_use = "call .build().await"]
pub struct WebAppBuilder {
    issuer: String,
    client_id: String,
    url: String,
    client_secret: Option<String>,
    scope: String,
    key: Option<[u8; 32]>,
    sessions: Option<Sessions>,
    prefix: String,
}

impl std::fmt::Debug for WebAppBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebAppBuilder")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl WebAppBuilder {
    /// The client secret of a confidential client.
    pub fn client_secret(mut self, secret: impl Into<String>) -> Self {
        self.client_secret = Some(secret.into());
        self
    }

    /// The scopes to ask for (default `openid profile email`).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = scope.into();
        self
    }

    /// 32 random bytes, secret, the same on every instance: they seal the sign-in's
    /// flow cookie and the person's cookie ([`parse_key`] reads them from base64url).
    /// Without one (or with `None`), a random key is made at start: fine for one
    /// instance, but a restart signs everyone out.
    pub fn key(mut self, key: impl Into<Option<[u8; 32]>>) -> Self {
        self.key = key.into();
        self
    }

    /// The sessions to keep people in (default: in memory, for one instance, with the
    /// cookie rules of the application's origin).
    pub fn sessions(mut self, sessions: Sessions) -> Self {
        self.sessions = Some(sessions);
        self
    }

    /// Where the three routes go (default `/auth`: `/auth/login`, `/auth/callback`,
    /// `/auth/logout`). The redirect URI to register is `{url}{prefix}/callback`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into().trim_end_matches('/').to_owned();
        self
    }

    /// Discovers the provider and fetches its keys (as [`OidcClient`]).
    pub async fn build(self) -> Result<WebApp, OidcError> {
        let key = match self.key {
            Some(key) => key,
            None => {
                tracing::warn!(
                    "no key given: a random one, so a restart signs everyone out and a second instance cannot read this one's cookies"
                );
                let mut key = [0u8; 32];
                aws_lc_rs::rand::fill(&mut key)
                    .map_err(|_| OidcError::Config("the system random generator failed".into()))?;
                key
            }
        };
        let url = self.url.trim_end_matches('/').to_owned();
        if !self.prefix.starts_with('/') || !local_path(&self.prefix) {
            return Err(OidcError::Config(format!(
                "prefix {:?} must be a path",
                self.prefix
            )));
        }
        let mut oidc = OidcClient::builder(
            &self.issuer,
            &self.client_id,
            format!("{url}{}{CALLBACK}", self.prefix),
        )
        .scope(&self.scope)
        .flow_key(key);
        if let Some(secret) = &self.client_secret {
            oidc = oidc.client_secret(secret);
        }
        let oidc = oidc.build().await?;
        let sessions = match self.sessions {
            Some(s) => s,
            None => Sessions::new(
                Arc::new(MemorySessionStore::new()),
                SessionConfig::for_origin(&url)
                    .map_err(|e| OidcError::Config(format!("the application's URL: {e}")))?,
                Arc::new(SystemClock),
            ),
        };
        let secure = url::Url::parse(&url).is_ok_and(|u| u.scheme() == "https");
        let person = SealedCookie::new(
            &key,
            secure,
            "portcullis_person",
            format!("person\n{}\n{}", self.issuer, self.client_id),
        )?;
        Ok(WebApp {
            inner: Arc::new(Inner {
                oidc,
                sessions,
                person,
                url,
                prefix: self.prefix,
            }),
        })
    }
}

/// An application's sign-in with one provider. Cheap to clone.
#[derive(Clone)]
pub struct WebApp {
    inner: Arc<Inner>,
}

struct Inner {
    oidc: OidcClient,
    sessions: Sessions,
    person: SealedCookie,
    url: String,
    prefix: String,
}

impl std::fmt::Debug for WebApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebApp")
            .field("oidc", &self.inner.oidc)
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

impl WebApp {
    /// Signs people in at `issuer` as the client `client_id` of the application at
    /// `url` (its origin: the redirect URI is `{url}/auth/callback`).
    pub fn builder(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        url: impl Into<String>,
    ) -> WebAppBuilder {
        WebAppBuilder {
            issuer: issuer.into(),
            client_id: client_id.into(),
            url: url.into(),
            client_secret: None,
            scope: "openid profile email".into(),
            key: None,
            sessions: None,
            prefix: "/auth".into(),
        }
    }

    /// `router` with the sign-in routes added and the extractors ([`Person`],
    /// [`CsrfForm`]) working on every route.
    pub fn install<S: Clone + Send + Sync + 'static>(&self, router: Router<S>) -> Router<S> {
        let p = &self.inner.prefix;
        router
            .route(&format!("{p}{LOGIN}"), get(login))
            .route(&format!("{p}{CALLBACK}"), get(callback))
            .route(&format!("{p}{LOGOUT}"), post(logout))
            .layer(axum::Extension(self.clone()))
    }

    /// The provider's client.
    pub fn oidc(&self) -> &OidcClient {
        &self.inner.oidc
    }

    /// The sessions people are kept in.
    pub fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    /// The path that signs a person in and comes back to `return_to` (a path of this
    /// application).
    pub fn login_path(&self, return_to: &str) -> String {
        format!(
            "{}{LOGIN}?{}",
            self.inner.prefix,
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("return_to", return_to)
                .finish()
        )
    }

    /// The path of the sign-out form (a POST with the person's
    /// [`Person::csrf_token`] as `csrf_token`).
    pub fn logout_path(&self) -> String {
        format!("{}{LOGOUT}", self.inner.prefix)
    }

    fn from(parts: &Parts) -> Result<WebApp, StatusCode> {
        parts.extensions.get::<WebApp>().cloned().ok_or_else(|| {
            tracing::error!("a Person or CsrfForm on a route outside WebApp::install");
            StatusCode::INTERNAL_SERVER_ERROR
        })
    }

    /// The person of a request, if a live session and its person cookie say so.
    async fn person(&self, headers: &HeaderMap) -> Result<Option<Person>, StatusCode> {
        let session = match self.inner.sessions.lookup(headers).await {
            Ok(Some(s)) => s,
            Ok(None) => return Ok(None),
            Err(e) => {
                tracing::warn!(error = %e, "session lookup failed");
                return Err(StatusCode::SERVICE_UNAVAILABLE);
            }
        };
        let Some(stored) = self
            .inner
            .person
            .read::<Stored>(headers, session.id().as_bytes())
        else {
            return Ok(None);
        };
        let Some(claims) = payload(&stored.t) else {
            return Ok(None);
        };
        Ok(Some(Person {
            claims,
            id_token: stored.t,
            data: stored.d,
            session,
            app: self.clone(),
        }))
    }
}

/// What the person cookie holds (sealed): the ID token and the application's data.
#[derive(Serialize, Deserialize)]
struct Stored {
    t: String,
    #[serde(default)]
    d: Value,
}

/// How long from now until `expires_at` (seconds since the epoch): the person cookie
/// lives as long as its session may.
fn until(expires_at: i64) -> std::time::Duration {
    let now = crate::clock::Clock::now(&SystemClock);
    std::time::Duration::from_secs(u64::try_from(expires_at - now).unwrap_or(0))
}

/// The claims of a JWT this application verified at sign-in (the cookie that carries
/// it is sealed, so it is the one that was verified).
fn payload(token: &str) -> Option<IdClaims> {
    let body = token.split('.').nth(1)?;
    serde_json::from_slice(&crate::b64::decode(body.as_bytes())?).ok()
}

/// The claims of the person's ID token (OpenID Connect Core §5.1), typed; every other
/// claim in `other`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[non_exhaustive]
pub struct IdClaims {
    /// The issuer.
    pub iss: String,
    /// The person at the provider.
    pub sub: String,
    /// When they signed in there, if it says.
    #[serde(default)]
    pub auth_time: Option<i64>,
    /// Their full name.
    #[serde(default)]
    pub name: Option<String>,
    /// The name they go by there.
    #[serde(default)]
    pub preferred_username: Option<String>,
    /// Their address.
    #[serde(default)]
    pub email: Option<String>,
    /// Whether the provider has proven the address.
    #[serde(default)]
    pub email_verified: Option<bool>,
    /// How they signed in (RFC 8176).
    #[serde(default)]
    pub amr: Option<Vec<String>>,
    /// The assurance level of the sign-in.
    #[serde(default)]
    pub acr: Option<String>,
    /// Every other claim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The signed-in person: see the module documentation.
#[derive(Clone)]
pub struct Person {
    /// Their ID token's claims.
    pub claims: IdClaims,
    id_token: String,
    data: Value,
    session: SessionContext,
    app: WebApp,
}

impl std::fmt::Debug for Person {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Person")
            .field("sub", &self.claims.sub)
            .finish_non_exhaustive()
    }
}

impl Person {
    /// What to call them: `preferred_username`, `name`, `email`, or `sub`.
    pub fn name(&self) -> &str {
        let c = &self.claims;
        c.preferred_username
            .as_deref()
            .or(c.name.as_deref())
            .or(c.email.as_deref())
            .unwrap_or(&c.sub)
    }

    /// The ID token (for the provider's logout).
    pub fn id_token(&self) -> &str {
        &self.id_token
    }

    /// The session's CSRF token: the hidden `csrf_token` field of every form that
    /// changes something ([`CsrfForm`] checks it).
    pub fn csrf_token(&self) -> &str {
        self.session.csrf_token()
    }

    /// The session.
    pub fn session(&self) -> &SessionContext {
        &self.session
    }

    /// The application's own data for this person's session, if any was set and it
    /// reads as `T`.
    pub fn data<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_value(self.data.clone()).ok()
    }

    /// Replaces the application's data for this session: the `Set-Cookie` to add to
    /// the answer. The data travels sealed in a cookie beside the ID token: keep it
    /// small (the whole cookie must stay under 4 KB; an error says when it would not).
    pub fn with_data<T: Serialize>(&self, data: &T) -> Result<HeaderValue, OidcError> {
        let stored = Stored {
            t: self.id_token.clone(),
            d: serde_json::to_value(data)
                .map_err(|e| OidcError::Config(format!("the data: {e}")))?,
        };
        self.app.inner.person.set(
            &stored,
            self.session.id().as_bytes(),
            until(self.session.record().expires_at),
        )
    }
}

/// The answer to a request that needs a person and has none: a browser is sent to
/// sign in (303, coming back to the same page), a program gets 401.
#[derive(Debug)]
pub struct SignInFirst {
    to: Option<String>,
}

impl IntoResponse for SignInFirst {
    fn into_response(self) -> Response {
        match self.to {
            Some(to) => Redirect::to(&to).into_response(),
            None => (
                StatusCode::UNAUTHORIZED,
                [(header::CACHE_CONTROL, "no-store")],
                "sign in first",
            )
                .into_response(),
        }
    }
}

/// A browser navigating (it asks for HTML, or says it navigates): it can be sent to
/// sign in; anything else is a program.
fn is_browser(headers: &HeaderMap) -> bool {
    let navigates = headers
        .get("sec-fetch-mode")
        .is_some_and(|v| v.as_bytes() == b"navigate");
    let html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    navigates || html
}

impl<S: Send + Sync> FromRequestParts<S> for Person {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let app = WebApp::from(parts).map_err(IntoResponse::into_response)?;
        if let Some(person) = app
            .person(&parts.headers)
            .await
            .map_err(IntoResponse::into_response)?
        {
            return Ok(person);
        }
        // Back to this page after signing in, when it is one a GET can reach again.
        let here = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let back = if parts.method == axum::http::Method::GET && local_path(&here) {
            here
        } else {
            "/".to_owned()
        };
        Err(SignInFirst {
            to: is_browser(&parts.headers).then(|| app.login_path(&back)),
        }
        .into_response())
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Person {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        let app = WebApp::from(parts).map_err(IntoResponse::into_response)?;
        app.person(&parts.headers)
            .await
            .map_err(IntoResponse::into_response)
    }
}

/// A form posted by the signed-in person (`application/x-www-form-urlencoded`, at most
/// 64 KiB), its `csrf_token` field checked against their session; `T` is read from
/// the same fields (it need not name `csrf_token`).
#[derive(Debug)]
pub struct CsrfForm<T>(pub Person, pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for CsrfForm<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let person = <Person as FromRequestParts<S>>::from_request_parts(&mut parts, state).await?;
        let refused = |status: StatusCode, why: &'static str| (status, why).into_response();
        let is_form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| {
                crate::strict_json::media_subtype(t).eq_ignore_ascii_case("x-www-form-urlencoded")
            });
        if !is_form {
            return Err(refused(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "a form, please",
            ));
        }
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| refused(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large"))?;
        let token = url::form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == "csrf_token")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if person.session.check_csrf_token(&token).is_err() {
            return Err(refused(StatusCode::FORBIDDEN, "this form was not ours"));
        }
        let axum::extract::Form(value) = axum::extract::Form::<T>::from_request(
            Request::from_parts(parts, Body::from(bytes)),
            state,
        )
        .await
        .map_err(IntoResponse::into_response)?;
        Ok(CsrfForm(person, value))
    }
}

/// A short page for a failed sign-in.
fn failure(status: StatusCode, message: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        message.to_owned(),
    )
        .into_response()
}

#[derive(Deserialize)]
struct LoginQuery {
    return_to: Option<String>,
}

async fn login(
    axum::Extension(app): axum::Extension<WebApp>,
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Response {
    match app.inner.oidc.begin(q.return_to.as_deref().unwrap_or("/")) {
        Ok(begun) => {
            let mut r = Redirect::to(&begun.location).into_response();
            r.headers_mut().insert(header::SET_COOKIE, begun.set_cookie);
            r
        }
        Err(e) => {
            tracing::warn!(error = %e, "sign-in could not begin");
            failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Signing in is not possible right now.",
            )
        }
    }
}

async fn callback(
    axum::Extension(app): axum::Extension<WebApp>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let i = &app.inner;
    let signed_in = match i.oidc.complete(&headers, uri.query().unwrap_or("")).await {
        Ok(s) => s,
        Err(e) if e.is_user_error() => {
            tracing::info!(error = %e, "sign-in not completed");
            return failure(
                StatusCode::BAD_REQUEST,
                "That sign-in did not complete. Try again.",
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "sign-in failed at the provider");
            return failure(
                StatusCode::BAD_GATEWAY,
                "The sign-in service answered something we cannot use.",
            );
        }
    };
    let sub = signed_in.claims.sub.clone().unwrap_or_default();
    // A browser signing in again leaves its previous session: it ends.
    if let Ok(Some(previous)) = i.sessions.lookup(&headers).await {
        let _ = i
            .sessions
            .end(previous.id(), &previous.record().subject)
            .await;
    }
    let label = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let started = match i.sessions.start(&sub, "", label).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "starting a session failed");
            return failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "Signing in failed. Try again.",
            );
        }
    };
    let stored = Stored {
        t: signed_in.id_token.clone(),
        d: Value::Null,
    };
    let person = match i.person.set(
        &stored,
        started.context.id().as_bytes(),
        until(started.context.record().expires_at),
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "the person cookie");
            return failure(StatusCode::INTERNAL_SERVER_ERROR, "Signing in failed.");
        }
    };
    let mut r = Redirect::to(&signed_in.return_to).into_response();
    let h = r.headers_mut();
    h.append(header::SET_COOKIE, signed_in.clear_cookie);
    h.append(header::SET_COOKIE, started.set_cookie);
    h.append(header::SET_COOKIE, person);
    r
}

async fn logout(
    axum::Extension(app): axum::Extension<WebApp>,
    CsrfForm(person, _): CsrfForm<std::collections::HashMap<String, String>>,
) -> Response {
    let i = &app.inner;
    if let Err(e) = i
        .sessions
        .end(person.session.id(), &person.session.record().subject)
        .await
    {
        tracing::warn!(error = %e, "ending the session failed");
        return failure(
            StatusCode::SERVICE_UNAVAILABLE,
            "Signing out failed. Try again.",
        );
    }
    // Signed out here; now at the provider too, which sends the browser back home.
    let to = i
        .oidc
        .logout_url(&person.id_token, Some(&format!("{}/", i.url)))
        .unwrap_or_else(|| "/".to_owned());
    let mut r = Redirect::to(&to).into_response();
    let h = r.headers_mut();
    h.append(header::SET_COOKIE, i.sessions.config().clear_cookie());
    h.append(header::SET_COOKIE, i.person.clear());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_32_bytes_of_base64url() {
        let text = crate::b64::encode(&[7u8; 32]);
        assert_eq!(parse_key(&text).unwrap(), [7u8; 32]);
        assert_eq!(parse_key(&format!(" {text}=\n")).unwrap(), [7u8; 32]);
        assert!(parse_key(&crate::b64::encode(&[7u8; 31])).is_err());
        assert!(parse_key("not base64!").is_err());
    }

    #[test]
    fn browsers_are_sent_to_sign_in_programs_are_not() {
        let mut h = HeaderMap::new();
        assert!(!is_browser(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!is_browser(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"),
        );
        assert!(is_browser(&h));
        let mut h = HeaderMap::new();
        h.insert("sec-fetch-mode", HeaderValue::from_static("navigate"));
        assert!(is_browser(&h));
    }

    #[test]
    fn the_person_cookie_opens_only_for_its_session() {
        let cookie = SealedCookie::new(&[3; 32], true, "portcullis_person", "b".into()).unwrap();
        let stored = Stored {
            t: "h.e30.s".into(),
            d: serde_json::json!({"theme": "dark"}),
        };
        let set = cookie
            .set(&stored, b"session-1", std::time::Duration::from_secs(60))
            .unwrap();
        let text = set.to_str().unwrap();
        assert!(text.starts_with("__Host-portcullis_person="), "{text}");
        assert!(!text.contains("dark"), "sealed, not readable");
        let value = text.split(';').next().unwrap().split_once('=').unwrap().1;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("__Host-portcullis_person={value}")).unwrap(),
        );
        let opened: Stored = cookie.read(&headers, b"session-1").unwrap();
        assert_eq!(opened.d["theme"], "dark");
        // Moved to another session, or read by another application's key: nothing.
        assert!(cookie.read::<Stored>(&headers, b"session-2").is_none());
        let other = SealedCookie::new(&[4; 32], true, "portcullis_person", "b".into()).unwrap();
        assert!(other.read::<Stored>(&headers, b"session-1").is_none());
    }

    #[test]
    fn claims_are_read_typed_from_the_token_payload() {
        let body = crate::b64::encode(
            br#"{"iss":"https://id.example","sub":"p1","name":"Ada","email_verified":true,"groups":["a"]}"#,
        );
        let claims = payload(&format!("h.{body}.s")).unwrap();
        assert_eq!(claims.sub, "p1");
        assert_eq!(claims.name.as_deref(), Some("Ada"));
        assert_eq!(claims.email_verified, Some(true));
        assert_eq!(claims.other["groups"], serde_json::json!(["a"]));
        assert!(payload("no-dots").is_none());
        assert!(payload(&format!("h.{}.s", crate::b64::encode(b"{\"sub\":1}"))).is_none());
    }
}
