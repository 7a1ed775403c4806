//! Configuration: a TOML file, overridden by `PORTCULLIS_*` environment variables,
//! overridden by command-line flags. Everything is read raw first, then checked once
//! into a typed [`Config`] with messages that name the setting.

mod env;

use portcullis::clock::secs;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use portcullis::keys::Algorithm;
use portcullis::session::SessionConfig;
use serde::Deserialize;

use env::FromEnv;

/// The `max-age` of the JWKS document: resource servers refetch it at least this often.
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(300);

/// A duration in a config file: seconds, or text like `15m`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Seconds(u64),
    Text(String),
}

impl RawDuration {
    fn parse(&self, name: &str) -> anyhow::Result<Duration> {
        match self {
            RawDuration::Seconds(s) => Ok(Duration::from_secs(*s)),
            RawDuration::Text(t) => parse_duration(t).with_context(|| format!("setting {name}")),
        }
    }
}

pub(crate) fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    if let Ok(secs) = text.trim().parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text.trim())
        .map_err(|e| anyhow!("{text:?} is not a duration ({e}); try 15m, 14d or 900"))
}

/// Declares every setting once: the field of [`RawConfig`] (read from TOML by serde)
/// and its `PORTCULLIS_<NAME>` environment variable (read by [`FromEnv`]), so a new
/// setting is one line here plus its check in `TryFrom<RawConfig>`.
macro_rules! settings {
    ($($name:ident: $ty:ty,)*) => {
        /// Settings as written, every one optional.
        #[derive(Clone, Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct RawConfig {
            $($name: Option<$ty>,)*
        }

        impl RawConfig {
            /// Sets the setting `key` (lower case, without the prefix) from the
            /// environment variable `var`; false when no setting has that name.
            fn set_from_env(&mut self, var: &str, key: &str, value: String) -> anyhow::Result<bool> {
                $(
                    if key == stringify!($name) {
                        self.$name = Some(<$ty as FromEnv>::from_env(var, value)?);
                        return Ok(true);
                    }
                )*
                Ok(false)
            }

            /// Every setting's name.
            const NAMES: &'static [&'static str] = &[$(stringify!($name)),*];
        }
    };
}

settings! {
    bind: String,
    database_url: String,
    issuer: String,
    audience: String,
    signing_alg: String,
    access_token_ttl: RawDuration,
    refresh_grace: RawDuration,
    refresh_idle: RawDuration,
    refresh_absolute: RawDuration,
    default_scope: String,
    mfa_required_for_scopes: Vec<String>,
    hash_concurrency: usize,
    hash_queue: usize,
    max_body_bytes: usize,
    login_failures_before_delay: u32,
    login_max_delay: RawDuration,
    event_poll_interval: RawDuration,
    session_idle: RawDuration,
    session_absolute: RawDuration,
    session_token_ttl: RawDuration,
    sessions_allow_insecure_http: bool,
    session_cookie_domain: String,
    trusted_proxies: Vec<String>,
    forward_auth_domains: Vec<String>,
    forwarded_header: String,
    signups_before_delay: u32,
    signup_max_delay: RawDuration,
    require_email: bool,
    device_lifetime: RawDuration,
    max_connections: usize,
    max_connections_per_address: usize,
    header_read_timeout: RawDuration,
    idle_timeout: RawDuration,
    request_timeout: RawDuration,
    key_encryption_key: SecretText,
    key_encryption_key_file: std::path::PathBuf,
    previous_key_encryption_key: SecretText,
    previous_key_encryption_key_file: std::path::PathBuf,
    smtp_url: SecretText,
    smtp_password_file: std::path::PathBuf,
    mail_from: String,
    mail_folder: std::path::PathBuf,
    mail_templates: std::path::PathBuf,
    verify_token_ttl: RawDuration,
    reset_token_ttl: RawDuration,
    mail_lease: RawDuration,
    audit_retention: RawDuration,
    webhook_timeout: RawDuration,
    webhook_allow_loopback: bool,
    key_rotation_interval: RawDuration,
    key_publication_delay: RawDuration,
    metrics_bind: String,
    token_cache_entries: usize,
}

/// A secret setting: deserialized like a string, never shown by `Debug`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
struct SecretText(String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Flags given on the command line; they win over the file and the environment.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--bind`.
    pub bind: Option<String>,
    /// `--database-url`.
    pub database_url: Option<String>,
    /// `--issuer`.
    pub issuer: Option<String>,
}

/// The checked configuration. Every default is listed in docs/defaults.md. `Debug`
/// hides a password in the database URL.
#[derive(Clone)]
pub struct Config {
    /// Defaults to 127.0.0.1:8080.
    pub bind: SocketAddr,
    /// Defaults to `sqlite://portcullis.db`.
    pub database_url: String,
    /// Defaults to `http://` + the bind address.
    pub issuer: String,
    /// Defaults to the issuer.
    pub audience: String,
    /// Defaults to RS256 for a new database; see [`Config::alg_after`].
    pub signing_alg: Algorithm,
    /// Whether `signing_alg` was set (else an existing database keeps its algorithm).
    pub signing_alg_set: bool,
    /// Defaults to 15 minutes.
    pub access_token_ttl: Duration,
    /// Defaults to 10 seconds.
    pub refresh_grace: Duration,
    /// Defaults to 14 days.
    pub refresh_idle: Duration,
    /// Defaults to 30 days.
    pub refresh_absolute: Duration,
    /// Scope given to new accounts. Defaults to none.
    pub default_scope: String,
    /// Scopes a sign-in gets only with two factors (`amr` with `mfa`): a password-only
    /// sign-in of an account that has them gets the others. Defaults to none.
    pub mfa_required_for_scopes: Vec<String>,
    /// Defaults to the number of cores minus one, at least one.
    pub hash_concurrency: usize,
    /// Defaults to 64 waiting hashes; beyond that, 503.
    pub hash_queue: usize,
    /// Defaults to 16 KiB.
    pub max_body_bytes: usize,
    /// Login attempts per account from unknown devices, per known device, and 4× that
    /// per client address, before delays start. An attempt counts from the moment it
    /// is admitted until it succeeds. Defaults to 5.
    pub login_failures_before_delay: u32,
    /// The longest delay login throttling imposes. Defaults to 60 seconds.
    pub login_max_delay: Duration,
    /// Account creations per client address before delays start (every signup counts,
    /// successful or not). Defaults to 5.
    pub signups_before_delay: u32,
    /// A signup must give an email address. Defaults to false.
    pub require_email: bool,
    /// The longest delay signup throttling imposes. Defaults to 5 minutes.
    pub signup_max_delay: Duration,
    /// How long a device that signed in stays known without signing in again (its
    /// attempts are throttled apart from anonymous ones). Defaults to 90 days.
    pub device_lifetime: Duration,
    /// Connections served at once; beyond, 503 and close. Defaults to 4096.
    pub max_connections: usize,
    /// Connections one address (an IPv6 /64) may hold at once; beyond, 503 and close.
    /// Trusted proxies are exempt. Defaults to an eighth of `max_connections`, at
    /// least 16.
    pub max_connections_per_address: usize,
    /// Time a client has to send a request head once the server waits for one (an
    /// idle keep-alive connection included). Defaults to 10 seconds.
    pub header_read_timeout: Duration,
    /// A connection on which no byte moves for this long is closed. Defaults to 60
    /// seconds.
    pub idle_timeout: Duration,
    /// A request not answered within this is answered 408. Defaults to 30 seconds.
    pub request_timeout: Duration,
    /// How often a new signing key is made, automatically (zero: never). Defaults to
    /// 30 days.
    pub key_rotation_interval: Duration,
    /// How long a new key is published before it signs. Defaults to the JWKS
    /// `max-age` (5 minutes) plus one unknown-kid cooldown (30 s): a resource server
    /// that caches the JWKS as told has the key before it sees a token signed by it.
    pub key_publication_delay: Duration,
    /// Where the key-encryption key of the signing keys comes from (see `kek.rs`).
    /// Defaults to a file beside an SQLite database; required with PostgreSQL.
    pub kek: crate::kek::KekSetting,
    /// Hosts of apps behind a reverse proxy that asks `GET /auth/forward`: the sign-in
    /// page goes back to a URL on one of them (`return_to`). `example.com` is that host
    /// alone, `.example.com` any host under it. Defaults to none.
    pub forward_auth_domains: Vec<String>,
    /// Peers whose `Forwarded` / `X-Forwarded-For` headers name the client address.
    /// Defaults to none: the TCP peer is the client.
    pub trusted_proxies: crate::client::TrustedProxies,
    /// Where `GET /metrics` (Prometheus text) is served: its own address, never the
    /// public port. Defaults to none: no metrics endpoint.
    pub metrics_bind: Option<SocketAddr>,
    /// Verified access tokens remembered (a repeat skips the signature check), about
    /// 1 KB each; never more than this many. Defaults to 10,000; 0 turns the cache
    /// off.
    pub token_cache_entries: usize,
    /// How often an instance reads the event log (revocations, key changes) when not
    /// woken by a notification. Defaults to 500 ms.
    pub event_poll_interval: Duration,
    /// Cookie sessions: their origin is the issuer's (it decides the cookie's
    /// attributes and which `Origin` may change state); idle timeout defaults to 30
    /// minutes, absolute to 12 hours. An `http` issuer on a host that is not loopback is
    /// refused unless `sessions_allow_insecure_http` is set.
    pub sessions: SessionConfig,
    /// Lifetime of the access tokens `POST /session/token` mints. Defaults to 5
    /// minutes; at most `access_token_ttl`.
    pub session_token_ttl: Duration,
    /// Where mail goes (see `mail.rs`). Defaults to `.eml` files in a folder beside the
    /// database.
    pub mail: MailSettings,
    /// `audit_retention`: how long the audit trail keeps a record. Defaults to 365
    /// days; at least 1 day.
    pub audit_retention: Duration,
    /// `webhook_timeout`: how long a webhook receiver has to answer a delivery before
    /// it counts as failed (and is tried again). Defaults to 10 seconds; 1 s – 60 s.
    pub webhook_timeout: Duration,
    /// `webhook_allow_loopback`: webhook URLs may name a loopback address, over plain
    /// `http` too (for tests and a receiver on the same machine). Defaults to false:
    /// `https` only, to public addresses only.
    pub webhook_allow_loopback: bool,
}

/// Where mail goes and who it is from. `Debug` hides the SMTP URL (it may hold a
/// password).
#[derive(Clone, Default)]
pub struct MailSettings {
    /// `smtp_url` / `PORTCULLIS_SMTP_URL`: an SMTP server; none means the folder.
    pub smtp_url: Option<String>,
    /// `mail_from`: the sender. Defaults to `Portcullis <noreply@ISSUER-HOST>`.
    pub from: String,
    /// `mail_folder`: where mail is written without `smtp_url`.
    pub folder: Option<std::path::PathBuf>,
    /// The mails' texts: built in, or from `mail_templates` (`templates.rs`).
    pub templates: crate::templates::Templates,
    /// `verify_token_ttl`: how long an address-confirmation link works. Defaults to
    /// 24 hours.
    pub verify_token_ttl: Duration,
    /// `reset_token_ttl`: how long a password-reset link works. Defaults to 30
    /// minutes; between 5 minutes and 24 hours.
    pub reset_token_ttl: Duration,
    /// `mail_lease`: how long a sender holds a message it claimed; a sender that dies
    /// leaves it to another (or to itself, restarted) this long after. Each SMTP
    /// conversation is given half of it. Defaults to 60 seconds; between 10 seconds
    /// and 1 hour.
    pub lease: Duration,
}

/// `smtp_url` with the password read from `smtp_password_file` (its trailing line
/// break removed): the URL must name a user and hold no password of its own.
fn with_smtp_password(url: Option<&str>, file: &std::path::Path) -> anyhow::Result<String> {
    let Some(url) = url else {
        bail!("smtp_password_file is set without smtp_url");
    };
    let mut parsed = url::Url::parse(url).map_err(|_| anyhow!("smtp_url is not a URL"))?;
    if parsed.username().is_empty() {
        bail!("smtp_password_file needs a user in smtp_url (smtps://USER@host)");
    }
    if parsed.password().is_some() {
        bail!("set the SMTP password in smtp_url or in smtp_password_file, not both");
    }
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading smtp_password_file {}", file.display()))?;
    let password = text.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        bail!("smtp_password_file {} is empty", file.display());
    }
    parsed
        .set_password(Some(password))
        .map_err(|_| anyhow!("smtp_url cannot carry a password"))?;
    Ok(parsed.to_string())
}

impl std::fmt::Debug for MailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailSettings")
            .field("smtp_url", &self.smtp_url.as_ref().map(|_| "[redacted]"))
            .field("from", &self.from)
            .field("folder", &self.folder)
            .field("verify_token_ttl", &self.verify_token_ttl)
            .field("reset_token_ttl", &self.reset_token_ttl)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// The folder mail is written to without `smtp_url`: `mail_folder`, else
    /// `<database>.mail` beside an SQLite file, else `portcullis.mail` in the working
    /// folder.
    pub fn mail_folder(&self) -> std::path::PathBuf {
        if let Some(folder) = &self.mail.folder {
            return folder.clone();
        }
        match crate::kek::sqlite_path(&self.database_url) {
            Some(db) => {
                let mut name = db.into_os_string();
                name.push(".mail");
                name.into()
            }
            None => "portcullis.mail".into(),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("database_url", &redact_url(&self.database_url))
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("signing_alg", &self.signing_alg)
            .field("access_token_ttl", &self.access_token_ttl)
            .finish_non_exhaustive()
    }
}

impl RawConfig {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> anyhow::Result<RawConfig> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Applies `PORTCULLIS_*` variables (e.g. `PORTCULLIS_DATABASE_URL`).
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<()> {
        for (name, value) in vars {
            let Some(key) = name.strip_prefix("PORTCULLIS_") else {
                continue;
            };
            // Other tools' variables (PORTCULLIS_TEST_POSTGRES, …) match no setting and
            // are left alone; one that is a setting's name mistyped is refused, as the
            // same typo in the TOML file is.
            let key = key.to_ascii_lowercase();
            if !self.set_from_env(&name, &key, value)?
                && let Some(meant) = Self::NAMES
                    .iter()
                    .find(|setting| strsim::damerau_levenshtein(&key, setting) <= 2)
            {
                bail!(
                    "{name} is not a setting: did you mean PORTCULLIS_{}?",
                    meant.to_ascii_uppercase()
                );
            }
        }
        Ok(())
    }

    /// Applies command-line flags.
    pub fn apply_overrides(&mut self, o: Overrides) {
        if o.bind.is_some() {
            self.bind = o.bind;
        }
        if o.database_url.is_some() {
            self.database_url = o.database_url;
        }
        if o.issuer.is_some() {
            self.issuer = o.issuer;
        }
    }
}

impl TryFrom<RawConfig> for Config {
    type Error = anyhow::Error;

    fn try_from(raw: RawConfig) -> anyhow::Result<Config> {
        let bind_text = raw.bind.unwrap_or_else(|| "127.0.0.1:8080".into());
        // An address, or a name and port (`localhost:8080`), resolved once, here.
        let bind: SocketAddr = match bind_text.parse() {
            Ok(addr) => addr,
            Err(_) => std::net::ToSocketAddrs::to_socket_addrs(bind_text.as_str())
                .ok()
                .and_then(|mut addrs| addrs.next())
                .with_context(|| {
                    format!(
                        "bind {bind_text:?} is not an address like 127.0.0.1:8080 or localhost:8080"
                    )
                })?,
        };
        let metrics_bind = match raw.metrics_bind.as_deref() {
            None | Some("") => None,
            Some(text) => Some(text.parse::<SocketAddr>().with_context(|| {
                format!("metrics_bind {text:?} is not an address like 127.0.0.1:9090")
            })?),
        };
        let issuer_given = raw.issuer.is_some();
        let database_url = raw
            .database_url
            .unwrap_or_else(|| "sqlite://portcullis.db".into());
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            bail!(
                "database_url {:?} must start with sqlite:// or postgres://",
                redact_url(&database_url)
            );
        }
        let issuer = raw.issuer.unwrap_or_else(|| format!("http://{bind}"));
        if issuer.is_empty() || issuer.chars().any(char::is_whitespace) {
            bail!("issuer {issuer:?} must be a non-empty URL without spaces");
        }
        let audience = raw.audience.unwrap_or_else(|| issuer.clone());
        let signing_alg_set = raw.signing_alg.is_some();
        let signing_alg = match raw.signing_alg {
            // Every common JWT library verifies RS256, and it is the cheapest to verify
            // for most of them (docs/defaults.md, "The signing algorithm").
            None => Algorithm::RS256,
            Some(name) => name.parse().map_err(|e| anyhow!("signing_alg: {e}"))?,
        };
        publishable(signing_alg).map_err(|e| anyhow!("signing_alg: {e}"))?;
        let dur = |v: &Option<RawDuration>, name: &str, default: u64| -> anyhow::Result<Duration> {
            v.as_ref()
                .map_or(Ok(Duration::from_secs(default)), |d| d.parse(name))
        };
        let access_token_ttl = dur(&raw.access_token_ttl, "access_token_ttl", 15 * 60)?;
        if access_token_ttl < Duration::from_secs(30)
            || access_token_ttl > Duration::from_secs(24 * 3600)
        {
            bail!("access_token_ttl must be between 30s and 24h");
        }
        let refresh_idle = dur(&raw.refresh_idle, "refresh_idle", 14 * 86_400)?;
        let refresh_absolute = dur(&raw.refresh_absolute, "refresh_absolute", 30 * 86_400)?;
        if refresh_idle > refresh_absolute {
            bail!("refresh_idle must not be longer than refresh_absolute");
        }
        let refresh_grace = dur(&raw.refresh_grace, "refresh_grace", 10)?;
        if refresh_grace > Duration::from_secs(120) {
            bail!("refresh_grace must be at most 2m: it lets a stolen token be replayed");
        }
        let max_body_bytes = raw.max_body_bytes.unwrap_or(16 * 1024);
        if !(1024..=1024 * 1024).contains(&max_body_bytes) {
            bail!("max_body_bytes must be between 1024 and 1048576");
        }
        let hash_concurrency = raw
            .hash_concurrency
            .unwrap_or_else(portcullis::password::default_concurrency);
        if hash_concurrency == 0 {
            bail!("hash_concurrency must be at least 1");
        }
        let origin = origin_of(&issuer)
            .with_context(|| format!("issuer {issuer:?} must be an http(s) URL"))?;
        let sessions = if raw.sessions_allow_insecure_http.unwrap_or(false) {
            SessionConfig::insecure_allow_http(&origin)
        } else {
            SessionConfig::for_origin(&origin)
        }
        .map_err(|e| {
            if issuer_given {
                anyhow!(
                    "issuer {issuer:?}: {e}. Use the https URL clients reach the server by, or \
                     set sessions_allow_insecure_http = true on a private test network"
                )
            } else {
                // The issuer was made from the bind address: the fix is to name the
                // public URL, not to weaken the cookie.
                anyhow!(
                    "bind {bind} serves other machines, so the issuer must be the https URL \
                     they use: pass --issuer https://your.host (or set issuer); plain http \
                     off this machine needs sessions_allow_insecure_http = true, for private \
                     test networks only"
                )
            }
        })?
        .with_timeouts(
            dur(&raw.session_idle, "session_idle", 30 * 60)?,
            dur(&raw.session_absolute, "session_absolute", 12 * 3600)?,
        )
        .map_err(|e| anyhow!("session_idle / session_absolute: {e}"))?;
        let sessions = match raw.session_cookie_domain.as_deref().map(str::trim) {
            Some(domain) if !domain.is_empty() => {
                sessions.with_cookie_domain(domain).map_err(|e| {
                    anyhow!("session_cookie_domain: {e} (the issuer's host is {origin})")
                })?
            }
            _ => sessions,
        };
        // 5 minutes, or the access-token lifetime when that is shorter.
        let session_token_ttl = dur(
            &raw.session_token_ttl,
            "session_token_ttl",
            (5 * 60).min(access_token_ttl.as_secs()),
        )?;
        if session_token_ttl < Duration::from_secs(30) || session_token_ttl > access_token_ttl {
            bail!("session_token_ttl must be between 30s and access_token_ttl");
        }
        let forwarded_header: crate::client::ForwardedHeader = match &raw.forwarded_header {
            None => crate::client::ForwardedHeader::default(),
            Some(text) => text.parse().map_err(|e| anyhow!("forwarded_header: {e}"))?,
        };
        let trusted_proxies =
            crate::client::TrustedProxies::parse(raw.trusted_proxies.as_deref().unwrap_or(&[]))
                .map_err(|e| anyhow!("trusted_proxies: {e}"))?
                .with_header(forwarded_header);
        let login_max_delay = dur(&raw.login_max_delay, "login_max_delay", 60)?;
        let signup_max_delay = dur(&raw.signup_max_delay, "signup_max_delay", 5 * 60)?;
        for (name, d) in [
            ("login_max_delay", login_max_delay),
            ("signup_max_delay", signup_max_delay),
        ] {
            if d < Duration::from_secs(1) || d > Duration::from_secs(3600) {
                bail!("{name} must be between 1s and 1h");
            }
        }
        let device_lifetime = dur(&raw.device_lifetime, "device_lifetime", 90 * 86_400)?;
        if device_lifetime < Duration::from_secs(3600) {
            bail!("device_lifetime must be at least 1h");
        }
        let token_cache_entries = raw.token_cache_entries.unwrap_or(10_000);
        if token_cache_entries > 10_000_000 {
            bail!("token_cache_entries must be at most 10000000 (about 20 GiB)");
        }
        let max_connections = raw.max_connections.unwrap_or(4096);
        if !(16..=1_000_000).contains(&max_connections) {
            bail!("max_connections must be between 16 and 1000000");
        }
        let max_connections_per_address = raw
            .max_connections_per_address
            .unwrap_or((max_connections / 8).max(16));
        if !(1..=max_connections).contains(&max_connections_per_address) {
            bail!(
                "max_connections_per_address must be between 1 and max_connections ({max_connections})"
            );
        }
        let header_read_timeout = dur(&raw.header_read_timeout, "header_read_timeout", 10)?;
        let idle_timeout = dur(&raw.idle_timeout, "idle_timeout", 60)?;
        let request_timeout = dur(&raw.request_timeout, "request_timeout", 30)?;
        for (name, d) in [
            ("header_read_timeout", header_read_timeout),
            ("idle_timeout", idle_timeout),
            ("request_timeout", request_timeout),
        ] {
            if d < Duration::from_secs(1) || d > Duration::from_secs(3600) {
                bail!("{name} must be between 1s and 1h");
            }
        }
        if idle_timeout <= request_timeout {
            bail!(
                "idle_timeout must be longer than request_timeout (a slow answer is not idleness)"
            );
        }
        let key_publication_delay = dur(
            &raw.key_publication_delay,
            "key_publication_delay",
            JWKS_MAX_AGE.as_secs() + 30,
        )?;
        if key_publication_delay > Duration::from_secs(86_400) {
            bail!("key_publication_delay must be at most 1d");
        }
        let key_rotation_interval = dur(
            &raw.key_rotation_interval,
            "key_rotation_interval",
            30 * 86_400,
        )?;
        if !key_rotation_interval.is_zero()
            && key_rotation_interval < key_publication_delay + Duration::from_secs(60)
        {
            bail!("key_rotation_interval must be 0 (off) or at least key_publication_delay + 1m");
        }
        if raw.key_encryption_key.is_some() && raw.key_encryption_key_file.is_some() {
            bail!("set key_encryption_key or key_encryption_key_file, not both");
        }
        if raw.previous_key_encryption_key.is_some()
            && raw.previous_key_encryption_key_file.is_some()
        {
            bail!("set previous_key_encryption_key or previous_key_encryption_key_file, not both");
        }
        let mut mfa_required_for_scopes = Vec::new();
        for scope in raw.mfa_required_for_scopes.clone().unwrap_or_default() {
            let scope = scope.trim().to_owned();
            if !is_scope_token(&scope) {
                bail!(
                    "mfa_required_for_scopes: {scope:?} is not a scope (printable ASCII, no \
                     spaces, quotes or backslashes: RFC 6749 §3.3)"
                );
            }
            mfa_required_for_scopes.push(scope);
        }
        let mut forward_auth_domains = Vec::new();
        for entry in raw.forward_auth_domains.unwrap_or_default() {
            let domain = entry.trim().to_ascii_lowercase();
            let name = domain.strip_prefix('.').unwrap_or(&domain);
            let ok = !name.is_empty()
                && name.len() <= 253
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !ok {
                bail!(
                    "forward_auth_domains: {entry:?} is not a host name (app.example.com) or a \
                     domain with a leading dot (.example.com)"
                );
            }
            forward_auth_domains.push(domain);
        }
        let verify_token_ttl = dur(&raw.verify_token_ttl, "verify_token_ttl", 86_400)?;
        if verify_token_ttl < Duration::from_secs(300)
            || verify_token_ttl > Duration::from_secs(7 * 86_400)
        {
            bail!("verify_token_ttl must be between 5m and 7d");
        }
        let reset_token_ttl = dur(&raw.reset_token_ttl, "reset_token_ttl", 30 * 60)?;
        if reset_token_ttl < Duration::from_secs(300)
            || reset_token_ttl > Duration::from_secs(86_400)
        {
            bail!("reset_token_ttl must be between 5m and 1d");
        }
        let lease = dur(&raw.mail_lease, "mail_lease", 60)?;
        if lease < Duration::from_secs(10) || lease > Duration::from_secs(3600) {
            bail!("mail_lease must be between 10s and 1h");
        }
        let audit_retention = dur(&raw.audit_retention, "audit_retention", 365 * 86_400)?;
        if audit_retention < Duration::from_secs(86_400) {
            bail!("audit_retention must be at least 1d");
        }
        let webhook_timeout = dur(&raw.webhook_timeout, "webhook_timeout", 10)?;
        if webhook_timeout < Duration::from_secs(1) || webhook_timeout > Duration::from_secs(60) {
            bail!("webhook_timeout must be between 1s and 60s");
        }
        let mut smtp_url = raw.smtp_url.map(|s| s.0).filter(|s| !s.trim().is_empty());
        if let Some(file) = &raw.smtp_password_file {
            smtp_url = Some(with_smtp_password(smtp_url.as_deref(), file)?);
        }
        let mail = MailSettings {
            smtp_url,
            folder: raw.mail_folder,
            templates: crate::templates::Templates::load(raw.mail_templates.as_deref())?,
            verify_token_ttl,
            reset_token_ttl,
            lease,
            from: match raw.mail_from {
                Some(from) => from,
                None => {
                    let host = url::Url::parse(&issuer)
                        .ok()
                        .and_then(|u| u.host_str().map(str::to_owned))
                        .filter(|h| h.contains('.') && h.parse::<std::net::IpAddr>().is_err())
                        .unwrap_or_else(|| "localhost.localdomain".to_owned());
                    format!("Portcullis <noreply@{host}>")
                }
            },
        };
        if mail.from.parse::<lettre::message::Mailbox>().is_err() {
            bail!(
                "mail_from {:?} is not an address (Name <user@example.com>)",
                mail.from
            );
        }
        Ok(Config {
            key_rotation_interval,
            key_publication_delay,
            kek: crate::kek::KekSetting {
                inline: raw.key_encryption_key.map(|s| zeroize::Zeroizing::new(s.0)),
                file: raw.key_encryption_key_file,
                previous_inline: raw
                    .previous_key_encryption_key
                    .map(|s| zeroize::Zeroizing::new(s.0)),
                previous_file: raw.previous_key_encryption_key_file,
            },
            max_connections,
            max_connections_per_address,
            header_read_timeout,
            idle_timeout,
            request_timeout,
            trusted_proxies,
            forward_auth_domains,
            metrics_bind,
            token_cache_entries,
            signups_before_delay: raw.signups_before_delay.unwrap_or(5).max(1),
            require_email: raw.require_email.unwrap_or(false),
            mail,
            audit_retention,
            webhook_timeout,
            webhook_allow_loopback: raw.webhook_allow_loopback.unwrap_or(false),
            signup_max_delay,
            device_lifetime,
            sessions,
            session_token_ttl,
            bind,
            database_url,
            issuer,
            audience,
            signing_alg,
            signing_alg_set,
            access_token_ttl,
            refresh_grace,
            refresh_idle,
            refresh_absolute,
            default_scope: raw.default_scope.unwrap_or_default(),
            mfa_required_for_scopes,
            hash_concurrency,
            hash_queue: raw.hash_queue.unwrap_or(64),
            max_body_bytes,
            login_failures_before_delay: raw.login_failures_before_delay.unwrap_or(5).max(1),
            login_max_delay,
            event_poll_interval: match &raw.event_poll_interval {
                None => Duration::from_millis(500),
                Some(d) => d
                    .parse("event_poll_interval")?
                    .clamp(Duration::from_millis(50), Duration::from_secs(1)),
            },
        })
    }
}

/// A database URL without its password, for messages: the password of the userinfo
/// and a `password=` query parameter are replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let parsed = url::Url::parse(url).ok().filter(|u| !u.cannot_be_a_base());
    let Some(mut parsed) = parsed else {
        // Not a URL with an authority: show only the scheme.
        return format!("{}:…", url.split(':').next().unwrap_or_default());
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if k.eq_ignore_ascii_case("password") {
                    "***".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string().replace("%2A%2A%2A", "***")
}

/// `scheme://host[:port]` of a URL.
/// (Parsed with the `url` crate: case, IDNA and default ports as browsers do.)
fn origin_of(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let origin = url.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

impl Config {
    /// The algorithm of a key that follows one of `newest` (the newest stored key's
    /// algorithm, if any): `signing_alg` when it was set, else the algorithm the
    /// database already signs with. A changed default never changes a running
    /// deployment's tokens under its resource servers at the next rotation; a new
    /// database gets the default.
    pub fn alg_after(&self, newest: Option<Algorithm>) -> Algorithm {
        match newest {
            Some(alg) if !self.signing_alg_set => alg,
            _ => self.signing_alg,
        }
    }

    /// How long a revocation, a retired key or an ended record can still matter: the
    /// access-token lifetime plus the verifier's leeway, rounded up to a minute.
    pub fn revocation_window(&self) -> Duration {
        self.access_token_ttl + Duration::from_secs(60)
    }

    /// The listener's limits.
    pub fn limits(&self) -> crate::wire::Limits {
        crate::wire::Limits {
            max_connections: self.max_connections,
            max_connections_per_address: self.max_connections_per_address,
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
        }
    }

    /// The refresh-token lifetimes, in the store's terms.
    pub fn rotation_policy(&self) -> portcullis_store::RotationPolicy {
        portcullis_store::RotationPolicy {
            grace: secs(self.refresh_grace),
            idle: secs(self.refresh_idle),
            absolute: secs(self.refresh_absolute),
        }
    }

    /// File, then environment, then flags, then checks.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> anyhow::Result<Config> {
        let mut raw = match file {
            Some(path) => RawConfig::from_file(path)?,
            None => RawConfig::default(),
        };
        raw.apply_env(std::env::vars())?;
        raw.apply_overrides(overrides);
        Config::try_from(raw)
    }

    /// The defaults, for tests and tools.
    pub fn defaults() -> anyhow::Result<Config> {
        Config::try_from(RawConfig::default())
    }
}

/// Refuses an algorithm whose key cannot be published: the server's tokens are
/// verified by others through the JWKS, and an HMAC secret has no public half.
pub fn publishable(alg: Algorithm) -> anyhow::Result<()> {
    if alg.family() == portcullis::keys::KeyFamily::Hmac {
        bail!(
            "{alg} is a shared-secret algorithm: its key cannot be published in the JWKS, so \
             no resource server could verify the tokens; use RS256, ES256 or EdDSA"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;

/// A scope token as RFC 6749 §3.3 has it: printable ASCII, no space, quote or
/// backslash.
pub(crate) fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}
