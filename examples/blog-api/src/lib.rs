//! A separate service for posts and comments that trusts a Portcullis server it is
//! pointed at: it finds the JWKS by discovery, verifies tokens locally with the
//! library's `Bearer` strategy, and learns of logouts from the server's revocation feed.
//!
//! Anyone may read; creating needs scope `posts:write`; deleting needs to be the author
//! or to have scope `admin`.

use portcullis::clock::secs;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use portcullis::clock::{Clock as _, SystemClock};
use portcullis::jwt::{Validation, Verifier};
use portcullis::keys::KeySet;
use portcullis::middleware::{AuthLayer, Authenticated};
use portcullis::rejection::Rejection;
use portcullis::remote::{FetchFuture, Fetched, JwksFetcher, RemoteJwks, discover, max_age};
use portcullis::revocation::{RevocationFeed, RevocationList};
use portcullis::strategy::{Bearer, Chain};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::SqlitePool;

/// Command line, or `BLOG_API_*` environment variables. `Debug` hides the password.
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
    /// A service account with scope `revocations:read`, to follow the revocation feed.
    #[arg(long, env = "BLOG_API_SERVICE_USERNAME")]
    pub service_username: Option<String>,
    /// Its password.
    #[arg(long, env = "BLOG_API_SERVICE_PASSWORD")]
    pub service_password: Option<String>,
    /// How often to read the feed, in milliseconds.
    #[arg(long, env = "BLOG_API_FEED_INTERVAL_MS", default_value_t = 500)]
    pub feed_interval_ms: u64,
}

impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Args")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("bind", &self.bind)
            .field("database_url", &self.database_url)
            .field("service_username", &self.service_username)
            .field(
                "service_password",
                &self.service_password.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// `JwksFetcher` over reqwest, with a timeout.
struct Http(reqwest::Client);

impl JwksFetcher for Http {
    fn fetch<'a>(&'a self, url: &'a str) -> FetchFuture<'a> {
        Box::pin(async move {
            let r = self.0.get(url).send().await.map_err(|e| chain(&e))?;
            if !r.status().is_success() {
                return Err(format!("{url}: {}", r.status()));
            }
            let age = r
                .headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok())
                .and_then(max_age);
            let body = r.text().await.map_err(|e| chain(&e))?;
            Ok(Fetched { body, max_age: age })
        })
    }
}

/// An error with its causes, `outer: inner: root`: reqwest's own message ("error
/// sending request") says nothing of why without them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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

/// Starts the service.
pub async fn start(args: Args) -> anyhow::Result<Running> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let fetcher = Arc::new(Http(http.clone()));
    let jwks_uri = discover(&args.issuer, fetcher.as_ref())
        .await
        .map_err(|e| anyhow::anyhow!("discovering {}: {e}", args.issuer))?;
    let audience = args.audience.clone().unwrap_or_else(|| args.issuer.clone());
    let verifier = Arc::new(Verifier::new(
        KeySet::default(),
        Validation::builder()
            .issuer(&args.issuer)
            .audience(audience)
            .build()?,
    ));
    let remote = Arc::new(RemoteJwks::new(
        jwks_uri,
        fetcher,
        verifier.clone(),
        Arc::new(SystemClock),
    ));
    remote
        .refresh_if_stale()
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let revocations = Arc::new(RevocationList::new());
    if let (Some(user), Some(pass)) = (&args.service_username, &args.service_password) {
        let account = ServiceAccount {
            http,
            base: args.issuer.trim_end_matches('/').to_owned(),
            username: user.clone(),
            password: pass.clone(),
        };
        // Credentials that do not work are a configuration error: say so now, rather
        // than start without the feed (and accept revoked tokens until they expire).
        let token = account.login().await.map_err(|e| {
            anyhow::anyhow!("the revocation feed's service account cannot log in: {e}")
        })?;
        tokio::spawn(follow_feed(
            account,
            token,
            revocations.clone(),
            Duration::from_millis(args.feed_interval_ms.max(50)),
        ));
    }
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
    let chain = Chain::new().with(
        Bearer::new(verifier)
            .with_remote_jwks(remote)
            .with_revocation(revocations),
    );
    let app = Router::new()
        .route("/posts", get(list_posts).post(create_post))
        .route("/posts/{id}", get(get_post).delete(delete_post))
        .route(
            "/posts/{id}/comments",
            get(list_comments).post(create_comment),
        )
        .route(
            "/posts/{id}/comments/{cid}",
            axum::routing::delete(delete_comment),
        )
        .layer(AuthLayer::optional(chain))
        .with_state(AppState { db });
    let listener = tokio::net::TcpListener::bind(&args.bind).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Running { addr })
}

/// The account the feed is read as.
struct ServiceAccount {
    http: reqwest::Client,
    base: String,
    username: String,
    password: String,
}

/// Why a service-account login failed.
enum LoginError {
    /// The server refused the credentials (wrong password, unknown or disabled user):
    /// retrying soon cannot help, and would spend the account's login budget.
    Refused(String),
    /// Throttled: try again after this long.
    Throttled(Duration),
    /// The server could not be reached or answered oddly: worth retrying.
    Unavailable(String),
}

impl std::fmt::Display for LoginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoginError::Refused(why) => write!(
                f,
                "{why}: check --service-username and --service-password (BLOG_API_SERVICE_*)"
            ),
            LoginError::Throttled(wait) => {
                write!(f, "throttled by the server; retry in {} s", wait.as_secs())
            }
            LoginError::Unavailable(why) => f.write_str(why),
        }
    }
}

impl ServiceAccount {
    async fn login(&self) -> Result<String, LoginError> {
        let url = format!("{}/auth/login", self.base);
        let r = self
            .http
            .post(&url)
            .json(&json!({"username": self.username, "password": self.password}))
            .send()
            .await
            .map_err(|e| LoginError::Unavailable(format!("{url}: {}", chain(&e))))?;
        let status = r.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            let wait = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(60);
            return Err(LoginError::Throttled(Duration::from_secs(wait)));
        }
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if status.is_client_error() {
            let code = body["error"].as_str().unwrap_or("refused");
            return Err(LoginError::Refused(format!(
                "{url} answered {status} {code} for user {:?}",
                self.username
            )));
        }
        match body["access_token"].as_str() {
            Some(token) if status.is_success() => Ok(token.to_owned()),
            _ => Err(LoginError::Unavailable(format!("{url} answered {status}"))),
        }
    }
}

/// Applies the revocation feed, forever, logging in again when the token expires.
/// Failures back off (doubling up to 5 minutes, or as long as the server asks) and are
/// logged as errors: while the feed is not read, revoked tokens are accepted until they
/// expire.
async fn follow_feed(
    account: ServiceAccount,
    token: String,
    list: Arc<RevocationList>,
    every: Duration,
) {
    const MAX_BACKOFF: Duration = Duration::from_secs(300);
    let mut token = Some(token);
    let mut backoff = every;
    // Revocations matter only while a token they refuse can be alive: at most the
    // verifier's longest accepted lifetime plus its leeway.
    let period = portcullis::jwt::DEFAULT_MAX_LIFETIME + portcullis::jwt::DEFAULT_LEEWAY;
    let mut pruned = std::time::Instant::now();
    loop {
        if pruned.elapsed() >= period {
            list.prune(SystemClock.now() - secs(period));
            pruned = std::time::Instant::now();
        }
        let t = match token.take() {
            Some(t) => t,
            None => match account.login().await {
                Ok(t) => t,
                Err(e) => {
                    let wait = match &e {
                        LoginError::Throttled(wait) => *wait,
                        _ => backoff,
                    };
                    tracing::error!(
                        error = %e,
                        retry_in_s = wait.as_secs(),
                        "revocation feed: service account login failed; revoked tokens are accepted until they expire"
                    );
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            },
        };
        let url = format!("{}/auth/revocations?since={}", account.base, list.cursor());
        match account.http.get(&url).bearer_auth(&t).send().await {
            Ok(r) if r.status().is_success() => match r.json::<RevocationFeed>().await {
                Ok(feed) => {
                    list.apply(&feed);
                    backoff = every;
                    token = Some(t);
                    if feed.more {
                        continue;
                    }
                }
                Err(e) => tracing::error!(error = %chain(&e), "revocation feed: unreadable page"),
            },
            // Expired token: log in again now.
            Ok(r) if r.status() == StatusCode::UNAUTHORIZED => continue,
            Ok(r) => {
                tracing::error!(status = %r.status(), "revocation feed: refused; is the service account granted revocations:read?");
                token = Some(t);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => {
                tracing::error!(error = %chain(&e), "revocation feed: server unreachable");
                token = Some(t);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        tokio::time::sleep(backoff).await;
    }
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
    let auth = signed_in(auth)?;
    auth.identity
        .require_all(&["posts:write"])
        .map_err(ApiError::Auth)?;
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
    auth.identity
        .require_all(&["posts:write"])
        .map_err(ApiError::Auth)?;
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
