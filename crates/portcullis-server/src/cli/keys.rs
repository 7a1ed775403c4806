//! `portcullis keys …`

use anyhow::{Context as _, bail};
use clap::Subcommand;
use portcullis::jwt::random_id;
use portcullis::keys::{Algorithm, Jwk, Jwks, SigningKey, VerifyingKey};

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Print a new private JWK. Handle the output as a secret.
    Generate {
        /// The algorithm the key is for: HS256, HS384, HS512, RS256, RS384, RS512,
        /// PS256, PS384, PS512, ES256, ES384, ES512 or EdDSA.
        #[arg(long)]
        alg: Algorithm,
        /// Key id; defaults to a random one.
        #[arg(long)]
        kid: Option<String>,
    },
    /// Read a private JWK or JWK Set on stdin and print the public JWK Set.
    /// HMAC keys are secrets and are left out.
    Public,
    /// Server keys: make a new signing key active (on the configured database).
    #[command(flatten)]
    Server(super::serve::ServerKeysCommand),
}

pub(crate) fn run(cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Generate { alg, kid } => {
            let kid = match kid {
                Some(kid) => kid,
                None => random_id()?,
            };
            let key = SigningKey::generate(alg, Some(kid))?;
            let jwk = key.to_jwk()?;
            println!("{}", pretty(&jwk)?);
            Ok(())
        }
        KeysCommand::Server(cmd) => super::serve::server_keys(cmd),
        KeysCommand::Public => {
            let input = super::read_stdin()?;
            let jwks = parse_jwk_or_jwks(&input)?;
            let mut public = Jwks::default();
            for jwk in &jwks.keys {
                let key = VerifyingKey::from_jwk(jwk)
                    .with_context(|| format!("key {:?}", jwk.kid.as_deref().unwrap_or("")))?;
                if !key.is_secret() {
                    public.keys.push(key.to_jwk()?);
                }
            }
            if public.keys.is_empty() && !jwks.keys.is_empty() {
                bail!("no public keys: HMAC keys are shared secrets and have no public form");
            }
            println!("{}", public.to_json_pretty());
            Ok(())
        }
    }
}

/// Accepts either one JWK or a JWK Set.
pub(crate) fn parse_jwk_or_jwks(text: &str) -> anyhow::Result<Jwks> {
    let is_set = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .is_some_and(|v| v.get("keys").is_some());
    Ok(if is_set {
        Jwks::from_json(text)?
    } else {
        Jwks {
            keys: vec![Jwk::from_json(text)?],
        }
    })
}

fn pretty(jwk: &Jwk) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(jwk)?)
}
