//! A server-rendered application that signs people in with an OpenID Connect provider
//! (a Portcullis server, or any other) through `portcullis::oidc`, and then keeps its
//! own cookie sessions with `portcullis::session`. About a hundred lines of it are the
//! sign-in; the rest is the page.
//!
//! - `GET /` shows who is signed in, or a "Sign in" link.
//! - `GET /auth/login` starts a sign-in at the provider (PKCE, state and nonce in the
//!   sealed flow cookie) and `GET /auth/callback` ends it: every check is the
//!   library's, then a local session starts.
//! - `POST /auth/logout` (with the session's form token) ends the local session and
//!   sends the browser to the provider's logout, which sends it back here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use maud::{DOCTYPE, Markup, html};
use portcullis::clock::SystemClock;
use portcullis::oidc::OidcClient;
use portcullis::session::{MemorySessionStore, SessionConfig, Sessions};
use serde::Deserialize;

/// The command line (each also from the environment).
#[derive(Clone, clap::Parser)]
pub struct Args {
    /// Where to listen.
    #[arg(long, env = "NOTES_BIND", default_value = "127.0.0.1:4000")]
    pub bind: SocketAddr,
    /// This application's public URL (its origin; the redirect URIs hang off it).
    #[arg(long, env = "NOTES_URL", default_value = "http://127.0.0.1:4000")]
    pub url: String,
    /// The OpenID Connect provider (its issuer).
    #[arg(long, env = "NOTES_ISSUER")]
    pub issuer: String,
    /// The client id the provider gave this application.
    #[arg(long, env = "NOTES_CLIENT_ID")]
    pub client_id: String,
    /// Its client secret: from `NOTES_CLIENT_SECRET`, or the file
    /// `--client-secret-file` names, never a flag (a command line is visible to every
    /// user of the machine in `ps` and lands in shell histories).
    #[arg(skip)]
    pub client_secret: String,
    /// A file holding the client secret (one line).
    #[arg(long, env = "NOTES_CLIENT_SECRET_FILE", value_name = "FILE")]
    pub client_secret_file: Option<std::path::PathBuf>,
    /// The key that seals the sign-in flow cookie, 32 bytes in base64url; every
    /// instance needs the same. Random at each start when not given (one instance).
    #[arg(long, env = "NOTES_FLOW_KEY", hide_env_values = true)]
    pub flow_key: Option<String>,
}

impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Args")
            .field("bind", &self.bind)
            .field("url", &self.url)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl Args {
    /// The client secret from where it may come: `NOTES_CLIENT_SECRET`, or the file
    /// `--client-secret-file` names (trailing newline trimmed). Never a flag.
    pub fn read_secret(mut self) -> anyhow::Result<Args> {
        let from_env = std::env::var("NOTES_CLIENT_SECRET").ok();
        let from_file = match &self.client_secret_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            ),
            None => None,
        };
        self.client_secret = match (from_env, from_file) {
            (Some(_), Some(_)) => anyhow::bail!(
                "give the client secret once: NOTES_CLIENT_SECRET or --client-secret-file"
            ),
            (Some(secret), None) | (None, Some(secret)) => secret,
            (None, None) => anyhow::bail!(
                "the client secret is missing: set NOTES_CLIENT_SECRET or --client-secret-file"
            ),
        };
        Ok(self)
    }
}

/// A running application.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
}

#[derive(Clone)]
struct App {
    oidc: OidcClient,
    sessions: Sessions,
    url: String,
    /// What the page shows and logout needs, by local session id. A real
    /// application keeps this with its sessions.
    people: Arc<Mutex<HashMap<String, Person>>>,
}

#[derive(Clone)]
struct Person {
    name: String,
    id_token: String,
}

/// Starts the application on `args.bind`.
pub async fn start(args: Args) -> anyhow::Result<Running> {
    let flow_key = match &args.flow_key {
        Some(text) => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| anyhow::anyhow!("flow_key must be 32 bytes in base64url"))?,
        None => {
            let mut key = [0u8; 32];
            for chunk in key.chunks_mut(16) {
                chunk.copy_from_slice(&portcullis::jwt::random_bits()?);
            }
            key
        }
    };
    let url = args.url.trim_end_matches('/').to_owned();
    let oidc = OidcClient::builder(
        &args.issuer,
        &args.client_id,
        format!("{url}/auth/callback"),
    )
    .client_secret(&args.client_secret)
    .scope("openid profile")
    .flow_key(flow_key)
    .build()
    .await?;
    let sessions = Sessions::new(
        Arc::new(MemorySessionStore::new()),
        SessionConfig::for_origin(&url)?,
        Arc::new(SystemClock),
    );
    let app = App {
        oidc,
        sessions,
        url,
        people: Arc::default(),
    };
    let router = Router::new()
        .route("/", get(home))
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/logout", post(logout))
        // A request not answered within 30 s is answered 408: a client that stops
        // sending, or a provider that stops answering, does not hold a connection.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            std::time::Duration::from_secs(30),
        ))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(args.bind).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "oidc-notes stopped");
        }
    });
    Ok(Running { addr })
}

fn page(title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { (title) " · Notes" } }
            body { main { (body) } }
        }
    };
    let mut r = markup.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    // No other site may frame these pages (a framed "Sign out" button is a click
    // away from being clickjacked), nor run script or load anything in them. No
    // `form-action`: signing out posts here and is sent on to the provider.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    r
}

async fn home(State(app): State<App>, headers: HeaderMap) -> Response {
    let session = app.sessions.lookup(&headers).await.ok().flatten();
    let person = session
        .as_ref()
        .and_then(|s| app.people.lock().ok().and_then(|p| p.get(s.id()).cloned()));
    match (session, person) {
        (Some(session), Some(person)) => page(
            "Your notes",
            html! {
                h1 #hello { "Hello, " (person.name) }
                form method="post" action="/auth/logout" {
                    input type="hidden" name="csrf_token" value=(session.csrf_token());
                    button #sign-out type="submit" { "Sign out" }
                }
            },
        ),
        _ => page(
            "Notes",
            html! {
                h1 { "Notes" }
                p { a #sign-in href="/auth/login" { "Sign in with your account" } }
            },
        ),
    }
}

#[derive(Deserialize)]
struct LoginQuery {
    return_to: Option<String>,
}

async fn login(State(app): State<App>, Query(q): Query<LoginQuery>) -> Response {
    match app.oidc.begin(q.return_to.as_deref().unwrap_or("/")) {
        Ok(begun) => {
            let mut r = Redirect::to(&begun.location).into_response();
            r.headers_mut().insert(header::SET_COOKIE, begun.set_cookie);
            r
        }
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn callback(State(app): State<App>, headers: HeaderMap, uri: axum::http::Uri) -> Response {
    let signed_in = match app.oidc.complete(&headers, uri.query().unwrap_or("")).await {
        Ok(signed_in) => signed_in,
        Err(e) if e.is_user_error() => {
            tracing::info!(error = %e, "sign-in not completed");
            return failure(
                StatusCode::BAD_REQUEST,
                "That sign-in did not complete. Try again.",
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "sign-in failed");
            return failure(
                StatusCode::BAD_GATEWAY,
                "The sign-in service answered something we cannot use.",
            );
        }
    };
    let sub = signed_in.claims.sub.clone().unwrap_or_default();
    let name = signed_in
        .claims
        .extra
        .get("preferred_username")
        .and_then(|n| n.as_str())
        .unwrap_or(&sub)
        .to_owned();
    let label = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // A browser signing in again leaves its previous session here: it ends.
    if let Ok(Some(previous)) = app.sessions.lookup(&headers).await {
        let _ = app
            .sessions
            .end(previous.id(), &previous.record().subject)
            .await;
        if let Ok(mut people) = app.people.lock() {
            people.remove(previous.id());
        }
    }
    let started = match app.sessions.start(&sub, "", label).await {
        Ok(started) => started,
        Err(e) => return failure(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    if let Ok(mut people) = app.people.lock() {
        people.insert(
            started.context.id().to_owned(),
            Person {
                name,
                id_token: signed_in.id_token.clone(),
            },
        );
    }
    let mut r = Redirect::to(&signed_in.return_to).into_response();
    let h = r.headers_mut();
    h.append(header::SET_COOKIE, signed_in.clear_cookie);
    h.append(header::SET_COOKIE, started.set_cookie);
    r
}

#[derive(Deserialize)]
struct LogoutForm {
    csrf_token: String,
}

async fn logout(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    let Ok(Some(session)) = app.sessions.lookup(&headers).await else {
        return Redirect::to("/").into_response();
    };
    if session.check_csrf_token(&form.csrf_token).is_err() {
        return failure(StatusCode::FORBIDDEN, "That form was not ours.");
    }
    let person = app
        .people
        .lock()
        .ok()
        .and_then(|mut p| p.remove(session.id()));
    if let Err(e) = app
        .sessions
        .end(session.id(), &session.record().subject)
        .await
    {
        tracing::warn!(error = %e, "ending the session failed");
        return failure(
            StatusCode::SERVICE_UNAVAILABLE,
            "Signing out failed. Try again.",
        );
    }
    // Signed out here; now at the provider too, which sends the browser back home.
    let to = person
        .and_then(|p| {
            app.oidc
                .logout_url(&p.id_token, Some(&format!("{}/", app.url)))
        })
        .unwrap_or_else(|| "/".to_owned());
    let mut r = Redirect::to(&to).into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, app.sessions.config().clear_cookie());
    r
}

fn failure(status: StatusCode, message: &str) -> Response {
    let mut r = page(
        "Sign-in failed",
        html! { h1 { "Sign-in failed" } p #problem { (message) } p { a href="/" { "Back" } } },
    );
    *r.status_mut() = status;
    r
}
