//! A separate service for posts and comments that trusts a Portcullis server it is
//! pointed at: `Bearer::from_issuer` finds the JWKS by discovery and keeps it current,
//! tokens are verified here, and a `RevocationFollower` (a machine client of the
//! server) brings logouts and disabled accounts from the server's revocation feed.
//!
//! Anyone may read; creating needs scope `posts:write`; deleting needs to be the author
//! or to have scope `admin`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use portcullis::clock::{Clock, SystemClock};
use portcullis::feed::RevocationFollower;
use portcullis::middleware::{AuthLayer, Authenticated, RequireScope};
use portcullis::rejection::Rejection;
use portcullis::strategy::{Bearer, Chain};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::SqlitePool;

/// Command line, or `BLOG_API_*` environment variables. `Debug` hides the secret.
#[derive(Clone, clap::Parser)]
pub struct Args {
    /// The Portcullis server's issuer URL.
    #[arg(long, env = "BLOG_API_ISSUER")]
    pub issuer: String,
    /// The audience tokens must carry (default: the issuer).
    #[arg(long, env = "BLOG_API_AUDIENCE")]
    pub audience: Option<String>,
    /// Address to listen on.
    #[arg(long, env = "BLOG_API_BIND", default_value = "127.0.0.1:8081")]
    pub bind: String,
    /// The blog's own database.
    #[arg(
        long,
        env = "BLOG_API_DATABASE_URL",
        default_value = "sqlite://blog.db"
    )]
    pub database_url: String,
    /// A machine client with scope `revocations:read` (`portcullis clients add`), to
    /// follow the revocation feed.
    #[arg(long, env = "BLOG_API_CLIENT_ID")]
    pub client_id: Option<String>,
    /// Its secret: from `BLOG_API_CLIENT_SECRET`, or the file `--client-secret-file`
    /// names, never a flag (a command line is visible to every user of the machine in
    /// `ps` and lands in shell histories).
    #[arg(skip)]
    pub client_secret: Option<String>,
    /// A file holding the client's secret (one line).
    #[arg(long, env = "BLOG_API_CLIENT_SECRET_FILE", value_name = "FILE")]
    pub client_secret_file: Option<std::path::PathBuf>,
    /// How often to read the feed, in milliseconds.
    #[arg(long, env = "BLOG_API_FEED_INTERVAL_MS", default_value_t = 500)]
    pub feed_interval_ms: u64,
    /// Run without the revocation feed: tokens are accepted until they expire, even
    /// after a logout (for trying the blog out, never for real use).
    #[arg(long, env = "BLOG_API_NO_REVOCATION_FEED")]
    pub no_revocation_feed: bool,
}

impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Args")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("bind", &self.bind)
            .field("database_url", &self.database_url)
            .field("client_id", &self.client_id)
            .field("no_revocation_feed", &self.no_revocation_feed)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("client_secret_file", &self.client_secret_file)
            .finish()
    }
}

impl Args {
    /// The client secret from where it may come: `BLOG_API_CLIENT_SECRET`, or the file
    /// `--client-secret-file` names (trailing newline trimmed). Never a flag.
    pub fn read_secret(mut self) -> anyhow::Result<Args> {
        let from_env = std::env::var("BLOG_API_CLIENT_SECRET").ok();
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
                "give the client secret once: BLOG_API_CLIENT_SECRET or --client-secret-file"
            ),
            (secret, None) | (None, secret) => secret.or(self.client_secret),
        };
        Ok(self)
    }
}

#[derive(Clone)]
struct AppState {
    db: SqlitePool,
}

/// A running blog-api.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
}

/// The authentication setup: every token from the issuer, checked against its feed.
/// Starting fails, with the cause, when the issuer cannot be trusted (no metadata, no
/// keys) or the client cannot read the feed (wrong secret, missing scope).
async fn auth(args: &Args, clock: Arc<dyn Clock>) -> anyhow::Result<AuthLayer> {
    let issuer = &args.issuer;
    let audience = args.audience.as_deref().unwrap_or(issuer);
    let remote = Bearer::from_issuer(issuer)
        .audience(audience)
        .clock(clock.clone());
    let bearer = remote.build().await?;
    let bearer = match (&args.client_id, &args.client_secret) {
        (Some(id), Some(secret)) if !args.no_revocation_feed => {
            let every = Duration::from_millis(args.feed_interval_ms);
            let feed = RevocationFollower::new(issuer, id, secret)
                .interval(every)
                .clock(clock);
            let revocations = feed.start().await.context("revocation feed")?;
            bearer.with_revocation(revocations)
        }
        (None, None) if args.no_revocation_feed => {
            tracing::warn!("no revocation feed: logged-out tokens work until they expire");
            bearer
        }
        _ => anyhow::bail!("give --client-id and --client-secret, or --no-revocation-feed only"),
    };
    Ok(AuthLayer::optional(Chain::new().with(bearer)))
}

/// Starts the service.
pub async fn start(args: Args) -> anyhow::Result<Running> {
    start_with_clock(args, Arc::new(SystemClock)).await
}

/// [`start`] on an injected clock: tests move it instead of waiting (tokens' times, the
/// key cache's refetch cooldown and the feed's silence all read it).
pub async fn start_with_clock(args: Args, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    let auth = auth(&args, clock).await?;
    let options = args
        .database_url
        .parse::<sqlx::sqlite::SqliteConnectOptions>()?
        .create_if_missing(true);
    let db = SqlitePool::connect_with(options)
        .await
        .context("opening the blog database")?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS posts (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL, \
         body TEXT NOT NULL, author TEXT NOT NULL)",
    )
    .execute(&db)
    .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS comments (id INTEGER PRIMARY KEY AUTOINCREMENT, post_id INTEGER NOT NULL \
         REFERENCES posts (id) ON DELETE CASCADE, body TEXT NOT NULL, author TEXT NOT NULL)",
    )
    .execute(&db)
    .await?;
    // Writing needs `posts:write`; reading is open, deleting checks the author.
    let writes = Router::new()
        .route("/posts", axum::routing::post(create_post))
        .route("/posts/{id}/comments", axum::routing::post(create_comment))
        .route_layer(RequireScope::all(["posts:write"]));
    let app = Router::new()
        .route("/posts", get(list_posts))
        .route("/posts/{id}", get(get_post).delete(delete_post))
        .route("/posts/{id}/comments", get(list_comments))
        .route(
            "/posts/{id}/comments/{cid}",
            axum::routing::delete(delete_comment),
        )
        .merge(writes)
        .layer(auth)
        // A request not answered within 30 s is answered 408: a client that stops
        // sending its body, or a stuck handler, does not hold a connection for ever.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .with_state(AppState { db });
    let listener = tokio::net::TcpListener::bind(&args.bind).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Running { addr })
}

/// Errors of this service.
enum ApiError {
    NotFound,
    Auth(Rejection),
    BadRequest(String),
    Db(sqlx::Error),
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Db(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::NotFound => {
                (StatusCode::NOT_FOUND, Json(json!({"error": "not_found"}))).into_response()
            }
            ApiError::Auth(r) => r.into_response(),
            ApiError::BadRequest(m) => (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "invalid_request", "error_description": m})),
            )
                .into_response(),
            ApiError::Db(e) => {
                tracing::error!(error = %e, "database");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({"error": "server_error"})),
                )
                    .into_response()
            }
        }
    }
}

fn signed_in(auth: Option<Authenticated>) -> Result<Authenticated, ApiError> {
    auth.ok_or(ApiError::Auth(Rejection::MissingCredentials))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPost {
    title: String,
    body: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewComment {
    body: String,
}

type PostRow = (i64, String, String, String);

fn post_json((id, title, body, author): PostRow) -> Value {
    json!({"id": id, "title": title, "body": body, "author": author})
}

async fn list_posts(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let rows: Vec<PostRow> =
        sqlx::query_as("SELECT id, title, body, author FROM posts ORDER BY id")
            .fetch_all(&s.db)
            .await?;
    Ok(Json(Value::Array(
        rows.into_iter().map(post_json).collect(),
    )))
}

async fn get_post(State(s): State<AppState>, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    let row: Option<PostRow> =
        sqlx::query_as("SELECT id, title, body, author FROM posts WHERE id = ?")
            .bind(id)
            .fetch_optional(&s.db)
            .await?;
    row.map(|r| Json(post_json(r))).ok_or(ApiError::NotFound)
}

async fn create_post(
    State(s): State<AppState>,
    auth: Option<Authenticated>,
    body: Result<Json<NewPost>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    // RequireScope let only `posts:write` identities this far.
    let auth = signed_in(auth)?;
    let Json(post) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if post.title.trim().is_empty() || post.title.len() > 200 || post.body.len() > 20_000 {
        return Err(ApiError::BadRequest(
            "title must be 1–200 bytes, body at most 20000".into(),
        ));
    }
    let author = auth.identity.subject().to_owned();
    let (id,): (i64,) =
        sqlx::query_as("INSERT INTO posts (title, body, author) VALUES (?, ?, ?) RETURNING id")
            .bind(&post.title)
            .bind(&post.body)
            .bind(&author)
            .fetch_one(&s.db)
            .await?;
    Ok((
        StatusCode::CREATED,
        Json(post_json((id, post.title, post.body, author))),
    )
        .into_response())
}

fn may_delete(auth: &Authenticated, author: &str) -> Result<(), ApiError> {
    if auth.identity.subject() == author || auth.identity.has_scope("admin") {
        Ok(())
    } else {
        Err(ApiError::Auth(Rejection::InsufficientScope("admin".into())))
    }
}

async fn delete_post(
    State(s): State<AppState>,
    auth: Option<Authenticated>,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let auth = signed_in(auth)?;
    let author: Option<(String,)> = sqlx::query_as("SELECT author FROM posts WHERE id = ?")
        .bind(id)
        .fetch_optional(&s.db)
        .await?;
    let (author,) = author.ok_or(ApiError::NotFound)?;
    may_delete(&auth, &author)?;
    sqlx::query("DELETE FROM comments WHERE post_id = ?")
        .bind(id)
        .execute(&s.db)
        .await?;
    sqlx::query("DELETE FROM posts WHERE id = ?")
        .bind(id)
        .execute(&s.db)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_comments(
    State(s): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let _post = get_post(State(s.clone()), Path(id)).await?;
    let rows: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT id, body, author FROM comments WHERE post_id = ? ORDER BY id")
            .bind(id)
            .fetch_all(&s.db)
            .await?;
    Ok(Json(Value::Array(
        rows.into_iter()
            .map(|(id, body, author)| json!({"id": id, "body": body, "author": author}))
            .collect(),
    )))
}

async fn create_comment(
    State(s): State<AppState>,
    auth: Option<Authenticated>,
    Path(id): Path<i64>,
    body: Result<Json<NewComment>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let auth = signed_in(auth)?;
    let Json(c) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if c.body.trim().is_empty() || c.body.len() > 5_000 {
        return Err(ApiError::BadRequest("a comment is 1–5000 bytes".into()));
    }
    let _post = get_post(State(s.clone()), Path(id)).await?;
    let author = auth.identity.subject().to_owned();
    let (cid,): (i64,) = sqlx::query_as(
        "INSERT INTO comments (post_id, body, author) VALUES (?, ?, ?) RETURNING id",
    )
    .bind(id)
    .bind(&c.body)
    .bind(&author)
    .fetch_one(&s.db)
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": cid, "body": c.body, "author": author})),
    )
        .into_response())
}

async fn delete_comment(
    State(s): State<AppState>,
    auth: Option<Authenticated>,
    Path((id, cid)): Path<(i64, i64)>,
) -> Result<StatusCode, ApiError> {
    let auth = signed_in(auth)?;
    let author: Option<(String,)> =
        sqlx::query_as("SELECT author FROM comments WHERE id = ? AND post_id = ?")
            .bind(cid)
            .bind(id)
            .fetch_optional(&s.db)
            .await?;
    let (author,) = author.ok_or(ApiError::NotFound)?;
    may_delete(&auth, &author)?;
    sqlx::query("DELETE FROM comments WHERE id = ?")
        .bind(cid)
        .execute(&s.db)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
