//! Upstream identity providers: the OpenID Connect clients this server signs people
//! in through (`portcullis providers add`), built from their rows on first use.
//!
//! A provider's client is the library's [`OidcClient`], so every check it makes
//! applies to an upstream sign-in: PKCE (S256), `state` bound to the browser by a
//! sealed flow cookie, `nonce`, RFC 9207's `iss`, the ID token's signature over the
//! provider's JWKS (refreshed in the background), its issuer, audience, `azp` and
//! lifetime. The flow cookie is sealed under a key derived from the key-encryption
//! key ([`crate::kek::Kek::flow_key`]), so a sign-in begun on one instance ends on
//! any other.
//!
//! A client is built (discovery, then the provider's keys) the first time someone
//! signs in through the provider, and again whenever its row changes; a provider that
//! is down when the server starts costs nothing until someone tries it, and then
//! answers a page that says so rather than failing the start.

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::bail;
use portcullis::oidc::{OidcClient, OidcError};
use portcullis_store::Provider;
use zeroize::Zeroizing;

use crate::kek::{Kek, Keks};

/// The kinds of provider: any OpenID Connect provider, by discovery.
pub const KIND_OIDC: &str = "oidc";
/// GitHub (or GitHub Enterprise Server): OAuth 2.0 without OpenID Connect; who signed
/// in is asked of its REST API.
pub const KIND_GITHUB: &str = "github";

/// GitHub's site, the default issuer of the `github` preset.
pub const GITHUB: &str = "https://github.com";
/// The scopes asked of GitHub: the profile, and the addresses with whether each is
/// verified.
pub const GITHUB_SCOPE: &str = "read:user user:email";

/// GitHub's endpoints under a site: authorization, token, and its REST API (github.com
/// serves it at api.github.com, GitHub Enterprise Server at `/api/v3`).
pub fn github_endpoints(site: &str) -> (String, String, String) {
    let site = site.trim_end_matches('/');
    let api = if site == GITHUB {
        "https://api.github.com".to_owned()
    } else {
        format!("{site}/api/v3")
    };
    (
        format!("{site}/login/oauth/authorize"),
        format!("{site}/login/oauth/access_token"),
        api,
    )
}

/// The scopes asked of an OpenID Connect provider unless told otherwise.
pub const DEFAULT_SCOPE: &str = "openid email profile";

/// A provider's name: 1–32 of `a-z`, `0-9` and `-`, beginning with a letter (it is a
/// path segment: `/login/NAME`).
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        bail!(
            "a provider's name is 1 to 32 lower-case letters, digits and '-', beginning with a \
             letter (it becomes /login/NAME): {name:?}"
        );
    }
    Ok(())
}

/// The context a provider's secret is sealed with: a sealed secret moved to another
/// provider's row does not open.
fn context(name: &str) -> String {
    format!("provider:{name}")
}

/// Seals a provider's client secret under the key-encryption key.
pub fn seal_secret(kek: &Kek, name: &str, secret: &str) -> anyhow::Result<String> {
    kek.seal(&context(name), "CLIENT_SECRET", secret)
}

fn open_secret(keks: &Keks, name: &str, sealed: &str) -> anyhow::Result<Zeroizing<String>> {
    keks.open(&context(name), "CLIENT_SECRET", sealed)
}

/// `portcullis keys rewrap`: every provider's secret re-sealed under `new` (those
/// already under it stay); how many were moved.
pub(crate) async fn rewrap_secrets(
    store: &dyn portcullis_store::Store,
    old: &Keks,
    new: &Kek,
) -> anyhow::Result<usize> {
    let mut moved = 0;
    for provider in store.providers().await? {
        let Some(sealed) = &provider.sealed_secret else {
            continue;
        };
        if crate::kek::sealed_under(sealed) == Some(new.id()) {
            continue;
        }
        let plain = open_secret(old, &provider.name, sealed)?;
        let resealed = seal_secret(new, &provider.name, &plain)?;
        if store.set_provider_secret(&provider.name, &resealed).await? {
            moved += 1;
        }
    }
    Ok(moved)
}

/// The redirect URI of a provider at this server: what to register there.
pub fn redirect_uri(issuer: &str, name: &str) -> String {
    format!("{}/login/{name}/callback", issuer.trim_end_matches('/'))
}

/// The clients built so far, by provider name, each with the row and the KEK it was
/// built from.
#[derive(Default)]
pub(crate) struct Upstreams {
    built: Mutex<HashMap<String, (Provider, String, OidcClient)>>,
}

impl Upstreams {
    /// The client of `provider`, built now when there is none yet or its row (or the
    /// KEK) changed since. Built without holding the lock: two first sign-ins at once
    /// may both build, and the later one is kept.
    pub(crate) async fn client(
        &self,
        provider: &Provider,
        keks: &Keks,
        issuer: &str,
    ) -> Result<OidcClient, OidcError> {
        let kek = keks.current();
        if let Some((row, kek_id, client)) = self.lock().get(&provider.name)
            && row == provider
            && kek_id == kek.id()
        {
            return Ok(client.clone());
        }
        let mut builder = OidcClient::builder(
            &provider.issuer,
            &provider.client_id,
            redirect_uri(issuer, &provider.name),
        )
        .scope(&provider.scope)
        .flow_key(kek.flow_key());
        if provider.kind == KIND_GITHUB {
            let (authorization, token, _) = github_endpoints(&provider.issuer);
            builder = builder.oauth2_endpoints(authorization, token);
        }
        if let Some(sealed) = &provider.sealed_secret {
            let secret = open_secret(keks, &provider.name, sealed)
                .map_err(|e| OidcError::Config(format!("the client secret: {e:#}")))?;
            builder = builder.client_secret(secret.as_str());
        }
        let client = builder.build().await?;
        self.lock().insert(
            provider.name.clone(),
            (provider.clone(), kek.id().to_owned(), client.clone()),
        );
        Ok(client)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Provider, String, OidcClient)>> {
        // A panic while holding it leaves a map that is still whole.
        self.built.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_path_segments() {
        for good in ["corp", "github", "a", "okta-eu-2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Corp",
            "2fa",
            "-x",
            "a/b",
            "a b",
            "a.b",
            "é",
            &"a".repeat(33),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
