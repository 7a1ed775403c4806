//! `portcullis token …`

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, Subcommand};
use portcullis::clock::{Clock as _, ManualClock, SystemClock};
use portcullis::jwt::{DEFAULT_MAX_TOKEN_SIZE, TokenBuilder, TypPolicy, Validation, Verifier, jws};
use portcullis::keys::{Algorithm, Jwk, KeySet, SigningKey, VerifyingKey};

use super::Failure;
use super::keys::parse_jwk_or_jwks;

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Sign a token and print it.
    Sign(SignArgs),
    /// Verify a token; print its claims as JSON on success (exit 0), or
    /// `error: <reason-code>: <message>` on stderr (exit 1).
    Verify(VerifyArgs),
    /// Print a token's header and claims WITHOUT verifying anything.
    Decode {
        /// The token.
        token: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// A private JWK, or an unencrypted PKCS#8 PEM private key.
    #[arg(long)]
    key: PathBuf,
    /// The algorithm, needed for RSA PEM keys (a JWK names its own).
    #[arg(long)]
    alg: Option<Algorithm>,
    /// Key id to put in the header, overriding the key's own.
    #[arg(long)]
    kid: Option<String>,
    /// Claims as a JSON object; iat and exp are filled in unless given.
    #[arg(long, default_value = "{}")]
    claims: String,
    /// Lifetime when the claims have no exp, e.g. 15m, 1h, 900s.
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    expires_in: Duration,
    /// The typ header; "none" for no typ.
    #[arg(long, default_value = "at+jwt")]
    typ: String,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("keys").required(true).args(["jwks", "key"]))]
pub(crate) struct VerifyArgs {
    /// A JWK Set file holding the trusted keys.
    #[arg(long)]
    jwks: Option<PathBuf>,
    /// One key file: a JWK (public or private) or a PEM public or private key.
    #[arg(long)]
    key: Option<PathBuf>,
    /// The algorithm, needed for RSA PEM keys.
    #[arg(long)]
    alg: Option<Algorithm>,
    /// Required issuer (exact match). Without it, any issuer is accepted.
    #[arg(long)]
    iss: Option<String>,
    /// Required audience. Without it, any audience is accepted.
    #[arg(long)]
    aud: Option<String>,
    /// Required typ (a media type, case-insensitive); "any" accepts every typ.
    /// Defaults to at+jwt.
    #[arg(long)]
    typ: Option<String>,
    /// Claims that must be present, comma separated (exp is always required).
    /// Defaults to exp,iat,sub.
    #[arg(long, value_delimiter = ',')]
    require: Option<Vec<String>>,
    /// Clock-skew allowance in seconds (at most 300).
    #[arg(long, default_value_t = 30)]
    leeway: u64,
    /// Longest accepted exp - iat in seconds; 0 for no limit.
    #[arg(long, default_value_t = 86_400)]
    max_lifetime: u64,
    /// Verify as if the time were this (seconds since the epoch).
    #[arg(long)]
    at: Option<i64>,
    /// The token, or - to read it from stdin.
    #[arg(default_value = "-")]
    token: String,
}

pub(crate) fn run(cmd: TokenCommand) -> Result<(), Failure> {
    match cmd {
        TokenCommand::Sign(args) => sign(args).map_err(Failure::Usage),
        TokenCommand::Verify(args) => verify(args),
        TokenCommand::Decode { token } => decode(&token).map_err(Failure::Usage),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (try 15m, 1h or 900)"))
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn is_pem(text: &str) -> bool {
    text.trim_start().starts_with("-----BEGIN")
}

fn sign(args: SignArgs) -> anyhow::Result<()> {
    let text = read(&args.key)?;
    let key = if is_pem(&text) {
        SigningKey::from_pkcs8_pem(&text, args.alg, None)
    } else {
        let key = SigningKey::from_jwk(&Jwk::from_json(&text)?);
        match (&key, args.alg) {
            (Ok(k), Some(alg)) if k.algorithm() != alg => {
                bail!("the key is for {}, not {alg}", k.algorithm())
            }
            _ => key,
        }
    }
    .with_context(|| format!("loading the key in {}", args.key.display()))?;
    let key = match args.kid {
        Some(kid) => key.with_kid(Some(kid)),
        None => key,
    };
    let claims = serde_json::Value::Object(
        portcullis::jwt::jws::parse_json_object(args.claims.as_bytes())
            .map_err(|e| anyhow!("--claims: {e}"))?,
    );
    let typ = (args.typ != "none").then_some(args.typ);
    let token = TokenBuilder::new()
        .typ(typ)
        .expires_in(args.expires_in)
        .claims(&claims)?
        .sign(&key)?;
    println!("{token}");
    Ok(())
}

fn load_keys(args: &VerifyArgs) -> anyhow::Result<KeySet> {
    if let Some(path) = &args.jwks {
        return KeySet::from_jwks_json(&read(path)?)
            .with_context(|| format!("loading the key set in {}", path.display()));
    }
    let path = args
        .key
        .as_ref()
        .ok_or_else(|| anyhow!("--jwks or --key is required"))?;
    let text = read(path)?;
    let key = if text.contains("-----BEGIN PRIVATE KEY-----") {
        SigningKey::from_pkcs8_pem(&text, args.alg, None)?.verifying_key()
    } else if is_pem(&text) {
        VerifyingKey::from_public_pem(&text, args.alg, None)
    } else {
        let jwks = parse_jwk_or_jwks(&text)?;
        return KeySet::from_jwks(&jwks)
            .with_context(|| format!("loading the key in {}", path.display()));
    }
    .with_context(|| format!("loading the key in {}", path.display()))?;
    Ok(KeySet::new(vec![key])?)
}

fn verify(args: VerifyArgs) -> Result<(), Failure> {
    let keys = load_keys(&args)?;
    let mut builder = Validation::builder().leeway(Duration::from_secs(args.leeway));
    builder = match args.max_lifetime {
        0 => builder.insecure_unlimited_lifetime(),
        secs => builder.max_lifetime(Duration::from_secs(secs)),
    };
    // Strict by default everywhere else: say so loudly when a check is skipped.
    builder = match &args.iss {
        Some(iss) => builder.issuer(iss),
        None => {
            eprintln!("warning: no --iss: a token from any issuer is accepted");
            builder.insecure_skip_issuer()
        }
    };
    builder = match &args.aud {
        Some(aud) => builder.audience(aud),
        None => {
            eprintln!("warning: no --aud: a token for any audience is accepted");
            builder.insecure_skip_audience()
        }
    };
    builder = match args.typ.as_deref() {
        None => builder,
        Some("any") => builder.typ(TypPolicy::InsecureAny),
        Some(typ) => builder.typ(TypPolicy::Exact(typ.to_owned())),
    };
    if let Some(required) = &args.require {
        builder = builder.required_claims(required.iter().filter(|c| !c.is_empty()).cloned());
    }
    let now = args.at.unwrap_or_else(|| SystemClock.now());
    let validation = builder
        .clock(Arc::new(ManualClock::new(now)))
        .build()
        .map_err(|e| anyhow!("{e}"))?;
    let token = if args.token == "-" {
        super::read_stdin()?.trim().to_owned()
    } else {
        args.token.clone()
    };
    let verified = Verifier::new(keys, validation)
        .verify_uncached(&token)
        .map_err(Failure::Refused)?;
    let out = serde_json::to_string_pretty(verified.claims()).map_err(anyhow::Error::from)?;
    println!("{out}");
    Ok(())
}

fn decode(token: &str) -> anyhow::Result<()> {
    let (header, payload) = jws::insecure_decode(token.trim(), DEFAULT_MAX_TOKEN_SIZE)
        .map_err(|e| anyhow!("{}: {e}", e.reason()))?;
    let claims = match jws::parse_json_object(&payload) {
        Ok(map) => serde_json::Value::Object(map),
        Err(_) => serde_json::Value::String(String::from_utf8_lossy(&payload).into_owned()),
    };
    eprintln!("warning: decoded WITHOUT verification; nothing below is trustworthy");
    let out = serde_json::json!({ "verified": false, "header": header, "claims": claims });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
