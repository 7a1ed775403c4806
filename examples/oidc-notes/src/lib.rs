//! A server-rendered notes application that signs people in with an OpenID Connect
//! provider (a Portcullis server, or any other) through the library's web-app kit,
//! `portcullis::oidc::web`. Its authentication is the lines that end in an `(auth)`
//! comment: the README counts them.
//!
//! - `GET /` greets whoever is signed in, or offers to sign in.
//! - `GET /notes` lists the person's notes (people only: a browser that is not signed
//!   in is sent to sign in and comes back; a program gets 401), and `POST /notes` adds
//!   one (a form with the session's CSRF token).
//! - `/auth/login`, `/auth/callback` and `POST /auth/logout` are the kit's.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};
use portcullis::oidc::web::{CsrfForm, Person, WebApp};
use serde::Deserialize;

/// The command line (each also from the environment).
#[derive(Clone, clap::Parser)]
pub struct Args {
    /// Where to listen.
    #[arg(long, env = "NOTES_BIND", default_value = "127.0.0.1:4000")]
    pub bind: SocketAddr,
    /// This application's public URL (its origin; the redirect URI is
    /// `{url}/auth/callback`).
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
    /// The key that seals the sign-in cookies, 32 bytes in base64url; every instance
    /// needs the same. Random at each start when not given (one instance).
    #[arg(long, env = "NOTES_KEY", hide_env_values = true)]
    #[arg(value_parser = portcullis::oidc::web::parse_key)]
    pub key: Option<[u8; 32]>, // (auth)
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

/// Each person's notes, by their `sub` at the provider. A real application keeps them
/// in its database.
type Notes = Arc<Mutex<HashMap<String, Vec<String>>>>;

/// Starts the application on `args.bind`.
pub async fn start(args: Args) -> anyhow::Result<Running> {
    let url = args.url.trim_end_matches('/');
    let auth = WebApp::builder(&args.issuer, &args.client_id, url) // (auth)
        .client_secret(&args.client_secret) // (auth)
        .key(args.key) // (auth)
        .build() // (auth)
        .await?; // (auth)
    let routes = Router::new()
        .route("/", get(home))
        .route("/notes", get(notes).post(add_note))
        .with_state(Notes::default());
    let router = auth
        .install(routes) // (auth)
        // A request not answered within 30 s is answered 408: a client that stops
        // sending, or a provider that stops answering, does not hold a connection.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            std::time::Duration::from_secs(30),
        ));
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

/// The sign-out button: a form with the session's CSRF token.
fn sign_out(person: &Person) -> Markup {
    html! {
        form method="post" action="/auth/logout" { // (auth)
            input type="hidden" name="csrf_token" value=(person.csrf_token()); // (auth)
            button #sign-out type="submit" { "Sign out" }
        }
    }
}

async fn home(person: Option<Person>, // (auth)
) -> Response {
    match person {
        Some(person) => page(
            "Notes",
            html! {
                h1 #hello { "Hello, " (person.name()) }
                p { a #notes href="/notes" { "Your notes" } }
                (sign_out(&person))
            },
        ),
        None => page(
            "Notes",
            html! {
                h1 { "Notes" }
                p { a #sign-in href="/auth/login" { "Sign in with your account" } }
            },
        ),
    }
}

async fn notes(
    person: Person, // (auth)
    State(notes): State<Notes>,
) -> Response {
    let mine = notes
        .lock()
        .map(|n| n.get(&person.claims.sub).cloned().unwrap_or_default())
        .unwrap_or_default();
    page(
        "Your notes",
        html! {
            h1 { "Your notes, " (person.name()) }
            ul #list { @for note in &mine { li { (note) } } }
            form method="post" action="/notes" {
                input type="hidden" name="csrf_token" value=(person.csrf_token()); // (auth)
                label for="note" { "A new note" }
                input #note name="text" required maxlength="500";
                button #add type="submit" { "Add" }
            }
            (sign_out(&person))
        },
    )
}

#[derive(Deserialize)]
struct NewNote {
    text: String,
}

async fn add_note(
    State(notes): State<Notes>,
    CsrfForm(person, note): CsrfForm<NewNote>, // (auth)
) -> Response {
    let text: String = note.text.trim().chars().take(500).collect();
    if !text.is_empty()
        && let Ok(mut n) = notes.lock()
    {
        n.entry(person.claims.sub.clone()).or_default().push(text);
    }
    Redirect::to("/notes").into_response()
}
