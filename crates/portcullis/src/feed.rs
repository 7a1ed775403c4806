//! Following a Portcullis server's revocation feed from a resource server (cargo
//! feature `remote`): what makes a logout, a "sign out everywhere" or a disabled
//! account reach a service that verifies tokens on its own.
//!
//! The follower authenticates as a machine client (OAuth 2.0 client credentials at the
//! issuer's `token_endpoint`, a client registered with `portcullis clients add NAME
//! --scope revocations:read`), reads every page of the feed before `start` returns,
//! then polls it in the background: paging at once while there is more, logging in
//! again when its token is refused or about to expire, backing off (up to a minute)
//! while the issuer is unreachable, and forgetting entries once no token they could
//! refuse can still be valid.
//!
//! **Failure policy.** While the feed cannot be read, tokens revoked since the last
//! good read would be accepted. After `max_silence` without a successful read (by
//! default the lifetime of the follower's own access token, which is the issuer's
//! access-token lifetime) the follower either refuses every token with 503 until the
//! feed is read again ([`OnSilence::FailClosed`], the default) or keeps accepting
//! them and logs an error every minute ([`OnSilence::LogLoudly`]). It never goes
//! silently open.
//!
//! **Key announcements.** The feed also names the signing keys the issuer added
//! since the cursor (`keys`). A [`crate::strategy::Bearer`] given the follower
//! ([`crate::strategy::Bearer::with_revocation`]) and a remote JWKS refetches the key
//! set at the first token of an announced key it does not hold, whatever the
//! unknown-kid cooldown says: tokens with made-up key ids can arm that cooldown, but
//! they cannot make an emergency rotation (`portcullis keys rotate --now`) wait for
//! it. The one window left is until the follower's next read (its poll interval, 2 s
//! by default); a scheduled rotation publishes its key long before it signs with it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::clock::{Clock, SystemClock, secs};
use crate::http::{HttpFetcher, RemoteError, chain};
use crate::jwt::{Claims, VerifiedToken};
use crate::rejection::TokenFailure;
use crate::remote::discover;
use crate::revocation::{RevocationFeed, RevocationList};
use crate::strategy::RevocationCheck;

/// The scope the feed requires.
pub const FEED_SCOPE: &str = "revocations:read";

/// What the follower does after `max_silence` without reading the feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnSilence {
    /// Refuse every token with 503 `temporarily_unavailable` until the feed is read.
    FailClosed,
    /// Keep accepting tokens the list does not refuse, and log an error every minute.
    LogLoudly,
}

/// Sets up a follower; see the [module documentation](self).
///
/// ```no_run
/// # async fn run() -> Result<(), portcullis::http::RemoteError> {
/// use portcullis::feed::RevocationFollower;
/// use portcullis::strategy::Bearer;
/// let revocations = RevocationFollower::new("https://auth.example", "CLIENT_ID", "CLIENT_SECRET")
///     .start()
///     .await?;
/// let bearer = Bearer::from_issuer("https://auth.example")
///     .audience("api")
///     .build()
///     .await?
///     .with_revocation(revocations);
/// # Ok(()) }
/// ```
pub struct RevocationFollower {
    issuer: String,
    client_id: String,
    client_secret: zeroize::Zeroizing<String>,
    interval: Duration,
    max_silence: Option<Duration>,
    on_silence: OnSilence,
    fetcher: Option<HttpFetcher>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for RevocationFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationFollower")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("interval", &self.interval)
            .field("on_silence", &self.on_silence)
            .finish_non_exhaustive()
    }
}

impl RevocationFollower {
    /// Follows `issuer`'s feed as the machine client `client_id`.
    pub fn new(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> RevocationFollower {
        RevocationFollower {
            issuer: issuer.into(),
            client_id: client_id.into(),
            client_secret: zeroize::Zeroizing::new(client_secret.into()),
            interval: Duration::from_secs(2),
            max_silence: None,
            on_silence: OnSilence::FailClosed,
            fetcher: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// How often the feed is read when nothing is waiting (default 2 s): the bound on
    /// how long a revocation takes to reach this service.
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> RevocationFollower {
        self.interval = interval.max(Duration::from_millis(50));
        self
    }

    /// How long the feed may go unread before [`OnSilence`] applies (default: the
    /// issuer's access-token lifetime, as its token endpoint states it).
    #[must_use]
    pub fn max_silence(mut self, silence: Duration) -> RevocationFollower {
        self.max_silence = Some(silence);
        self
    }

    /// What happens after `max_silence` (default [`OnSilence::FailClosed`]).
    #[must_use]
    pub fn on_silence(mut self, policy: OnSilence) -> RevocationFollower {
        self.on_silence = policy;
        self
    }

    /// Uses this HTTP client.
    #[must_use]
    pub fn fetcher(mut self, fetcher: HttpFetcher) -> RevocationFollower {
        self.fetcher = Some(fetcher);
        self
    }

    /// The clock (tests).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> RevocationFollower {
        self.clock = clock;
        self
    }

    /// Discovers the issuer, logs in as the client, reads the whole feed, and starts
    /// following it on the current tokio runtime. Fails at once when any of that fails:
    /// a service should not start unable to learn of revocations.
    pub async fn start(self) -> Result<Arc<FollowedRevocations>, RemoteError> {
        let fetcher = match self.fetcher.clone() {
            Some(f) => f,
            None => HttpFetcher::new()?,
        };
        let metadata = discover(&self.issuer, &fetcher).await?;
        let missing = |what: &str| {
            RemoteError::Refused(format!(
                "{} has no {what} in its metadata: is it a Portcullis server?",
                self.issuer
            ))
        };
        let token_endpoint = metadata
            .token_endpoint
            .clone()
            .ok_or_else(|| missing("token_endpoint"))?;
        let feed_url = metadata
            .portcullis_revocation_feed
            .clone()
            .ok_or_else(|| missing("portcullis_revocation_feed"))?;
        let client = Client {
            http: fetcher.client().clone(),
            token_endpoint,
            feed_url,
            id: self.client_id,
            secret: self.client_secret,
        };
        let token = client.token().await?;
        // Whatever the issuer says its lifetime is, the default stays between a minute
        // and a day; and no silence bound is shorter than two polls.
        let max_silence = self
            .max_silence
            .unwrap_or(Duration::from_secs(
                token.lifetime.clamp(60, 86_400).unsigned_abs(),
            ))
            .max(self.interval.saturating_mul(2));
        let followed = Arc::new(FollowedRevocations {
            list: RevocationList::new(),
            last_read: AtomicI64::new(self.clock.now()),
            max_silence: secs(max_silence),
            on_silence: self.on_silence,
            clock: self.clock.clone(),
            last_warning: AtomicI64::new(i64::MIN),
            silent: AtomicBool::new(false),
            announced: Mutex::default(),
        });
        while client
            .page(&token.access, &followed)
            .await
            .map_err(|e| RemoteError::Refused(e.to_string()))?
        {}
        followed.read_now();
        tokio::spawn(follow(
            client,
            Some(token),
            Arc::downgrade(&followed),
            self.interval,
            self.clock,
        ));
        Ok(followed)
    }
}

/// The revocations a follower keeps current: a [`RevocationCheck`] for
/// [`crate::strategy::Bearer::with_revocation`].
#[derive(Debug)]
pub struct FollowedRevocations {
    list: RevocationList,
    last_read: AtomicI64,
    max_silence: i64,
    on_silence: OnSilence,
    clock: Arc<dyn Clock>,
    last_warning: AtomicI64,
    silent: AtomicBool,
    /// The key ids the issuer announced, newest last (at most [`ANNOUNCED_KEYS`]).
    announced: Mutex<VecDeque<String>>,
}

/// How many announced key ids a follower remembers: far more than an issuer publishes
/// at once (the active key, the next one, those still verifying).
const ANNOUNCED_KEYS: usize = 32;

impl FollowedRevocations {
    /// The list as read so far.
    pub fn list(&self) -> &RevocationList {
        &self.list
    }

    /// Seconds since the feed was last read successfully.
    pub fn silence(&self) -> i64 {
        self.clock.now() - self.last_read.load(Ordering::Acquire)
    }

    /// True when the issuer announced key `kid` in the feed.
    pub fn key_announced(&self, kid: &str) -> bool {
        self.announced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(|k| k == kid)
    }

    fn announce(&self, kids: &[String]) {
        let mut announced = self
            .announced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for kid in kids {
            if !announced.contains(kid) {
                announced.push_back(kid.clone());
            }
        }
        while announced.len() > ANNOUNCED_KEYS {
            announced.pop_front();
        }
    }

    fn read_now(&self) {
        self.last_read.store(self.clock.now(), Ordering::Release);
        if self.silent.swap(false, Ordering::AcqRel) {
            tracing::info!("revocation feed: read again; tokens are checked against it");
        }
    }
}

impl RevocationCheck for FollowedRevocations {
    // Its list reads `sid`, `sub` and `iat` alone.
    fn check_token(&self, token: &VerifiedToken) -> Result<(), TokenFailure> {
        self.check(token.registered_claims())
    }

    fn check(&self, claims: &Claims) -> Result<(), TokenFailure> {
        let silence = self.silence();
        if silence > self.max_silence {
            self.silent.store(true, Ordering::Release);
            match self.on_silence {
                OnSilence::FailClosed => return Err(TokenFailure::RevocationsUnknown),
                OnSilence::LogLoudly => {
                    let now = self.clock.now();
                    let last = self.last_warning.load(Ordering::Acquire);
                    if now.saturating_sub(last) >= 60
                        && self
                            .last_warning
                            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                            .is_ok()
                    {
                        tracing::error!(
                            silence_s = silence,
                            "revocation feed unread for too long: tokens revoked since are being accepted"
                        );
                    }
                }
            }
        }
        self.list.check(claims)
    }

    fn key_announced(&self, kid: &str) -> bool {
        FollowedRevocations::key_announced(self, kid)
    }
}

/// A page as the server sends it: the feed, and the key ids added since the cursor
/// (absent from servers before key announcements).
#[derive(serde::Deserialize)]
struct Page {
    #[serde(flatten)]
    feed: RevocationFeed,
    #[serde(default)]
    keys: Vec<String>,
}

/// The follower's client: its credentials and the issuer's endpoints.
struct Client {
    http: reqwest::Client,
    token_endpoint: String,
    feed_url: String,
    id: String,
    secret: zeroize::Zeroizing<String>,
}

/// An access token of the client's, with its lifetime in seconds and when it was got.
struct Token {
    access: String,
    lifetime: i64,
    got_at: std::time::Instant,
}

/// Why one read failed.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    /// The token was refused (expired, or the client was disabled): log in again.
    #[error("the feed refused the client's token")]
    Unauthorized,
    /// Anything else: back off.
    #[error("{0}")]
    Failed(String),
}

impl Client {
    /// The client-credentials grant (RFC 6749 §4.4), `client_secret_basic`. Our ids
    /// and secrets are URL-safe, so the form-encoding RFC 6749 §2.3.1 asks for before
    /// base64 leaves them as they are.
    async fn token(&self) -> Result<Token, RemoteError> {
        let url = &self.token_endpoint;
        let r = self
            .http
            .post(url)
            .basic_auth(&self.id, Some(self.secret.as_str()))
            .form(&[("grant_type", "client_credentials"), ("scope", FEED_SCOPE)])
            .send()
            .await
            .map_err(|e| RemoteError::Refused(format!("{url}: {}", chain(&e))))?;
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        if !status.is_success() {
            let error = body["error"].as_str().unwrap_or("an error");
            return Err(RemoteError::Refused(format!(
                "{url} answered {status} {error} for client {:?}{}",
                self.id,
                match error {
                    "invalid_client" =>
                        ": check the client id and secret (portcullis clients list)".to_owned(),
                    "invalid_scope" | "unauthorized_client" => format!(
                        ": the client must be registered with the scope {FEED_SCOPE} \
                         (portcullis clients add NAME --scope {FEED_SCOPE})"
                    ),
                    _ => String::new(),
                }
            )));
        }
        let access = body["access_token"]
            .as_str()
            .ok_or_else(|| RemoteError::Refused(format!("{url}: no access_token")))?;
        Ok(Token {
            access: access.to_owned(),
            // Bounded, whatever the issuer sent: the arithmetic on it cannot overflow.
            lifetime: body["expires_in"].as_i64().unwrap_or(300).clamp(1, 86_400),
            got_at: std::time::Instant::now(),
        })
    }

    /// Reads one page into `followed`; true when more are waiting.
    async fn page(&self, token: &str, followed: &FollowedRevocations) -> Result<bool, ReadError> {
        let list = &followed.list;
        let sep = if self.feed_url.contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!("{}{sep}since={}", self.feed_url, list.cursor());
        let r = self
            .http
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| ReadError::Failed(format!("{url}: {}", chain(&e))))?;
        match r.status() {
            s if s.is_success() => {}
            reqwest::StatusCode::UNAUTHORIZED => return Err(ReadError::Unauthorized),
            reqwest::StatusCode::FORBIDDEN => {
                return Err(ReadError::Failed(format!(
                    "{url}: 403: the client lacks scope {FEED_SCOPE}"
                )));
            }
            s => return Err(ReadError::Failed(format!("{url}: HTTP {s}"))),
        }
        let Page { feed, keys } = r
            .json()
            .await
            .map_err(|e| ReadError::Failed(format!("{url}: {}", chain(&e))))?;
        list.apply(&feed);
        if !keys.is_empty() {
            tracing::info!(kids = ?keys, "revocation feed: the issuer announced new signing keys");
            followed.announce(&keys);
        }
        if feed.revoked_sessions.is_empty() && feed.not_before.is_empty() {
            tracing::debug!(cursor = feed.cursor, "revocation feed: read, nothing new");
        } else {
            tracing::info!(
                sessions = feed.revoked_sessions.len(),
                not_before = feed.not_before.len(),
                cursor = feed.cursor,
                more = feed.more,
                "revocation feed: page applied"
            );
        }
        Ok(feed.more)
    }
}

/// The background loop; ends when the [`FollowedRevocations`] is dropped.
async fn follow(
    client: Client,
    mut token: Option<Token>,
    followed: Weak<FollowedRevocations>,
    interval: Duration,
    clock: Arc<dyn Clock>,
) {
    // Entries matter while a token they refuse can be valid: the longest lifetime a
    // default verifier accepts, plus its leeway.
    let period = crate::jwt::DEFAULT_MAX_LIFETIME + crate::jwt::DEFAULT_LEEWAY;
    let mut pruned = std::time::Instant::now();
    let mut backoff = Backoff::new(interval);
    let mut wait = interval;
    loop {
        tokio::time::sleep(wait).await;
        let Some(state) = followed.upgrade() else {
            return;
        };
        if pruned.elapsed() >= period {
            state.list.prune(clock.now() - secs(period));
            pruned = std::time::Instant::now();
        }
        // A token about to expire (within 30 s, or a fifth of its life) is replaced
        // before it is refused.
        let stale = token.as_ref().is_none_or(|t| {
            let left = t.lifetime - secs(t.got_at.elapsed());
            left < 30.min(t.lifetime / 5)
        });
        if stale {
            match client.token().await {
                Ok(t) => token = Some(t),
                Err(e) => {
                    wait = backoff.fail();
                    tracing::error!(error = %e, retry_in_s = wait.as_secs(), "revocation feed: the client cannot get a token");
                    continue;
                }
            }
        }
        let Some(t) = &token else { continue };
        match client.page(&t.access, &state).await {
            Ok(more) => {
                state.read_now();
                backoff.succeed();
                wait = if more { Duration::ZERO } else { interval };
            }
            Err(e) => {
                // A refused token is dropped: the next round gets a new one. A fresh
                // token refused at once will not do better soon, so it backs off too.
                if matches!(e, ReadError::Unauthorized) {
                    token = None;
                }
                wait = if matches!(e, ReadError::Unauthorized) && !stale {
                    Duration::ZERO
                } else {
                    backoff.fail()
                };
                tracing::error!(error = %e, retry_in_s = wait.as_secs(), "revocation feed: read failed");
            }
        }
    }
}

/// Doubling waits after failures, from the poll interval up to a minute (or the
/// interval, if that is longer); back to the interval after a success.
struct Backoff {
    interval: Duration,
    next: Duration,
}

impl Backoff {
    const MAX: Duration = Duration::from_secs(60);

    fn new(interval: Duration) -> Backoff {
        Backoff {
            interval,
            next: interval,
        }
    }

    fn fail(&mut self) -> Duration {
        let now = self.next;
        self.next = self
            .next
            .saturating_mul(2)
            .min(Self::MAX)
            .max(self.interval);
        now
    }

    fn succeed(&mut self) {
        self.next = self.interval;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute_and_never_panics_on_long_intervals() {
        let mut b = Backoff::new(Duration::from_secs(2));
        let waits: Vec<u64> = (0..8).map(|_| b.fail().as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60, 60]);
        b.succeed();
        assert_eq!(b.fail().as_secs(), 2);
        // An interval above the ceiling is kept (this used to panic in `clamp`).
        let mut b = Backoff::new(Duration::from_secs(120));
        assert_eq!(b.fail().as_secs(), 120);
        assert_eq!(b.fail().as_secs(), 120);
        let mut b = Backoff::new(Duration::MAX);
        assert_eq!(b.fail(), Duration::MAX);
        assert_eq!(b.fail(), Duration::MAX);
    }
}
