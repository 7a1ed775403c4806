//! The flow cookie: what a sign-in remembers between leaving for the provider and
//! coming back (`state`, `nonce`, the PKCE verifier, where to return), sealed with
//! AES-256-GCM and bound to the issuer, the client and the redirect URI.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{FLOW_LIFETIME, OidcError};
use crate::cookies::{self, SameSite};

/// What the flow cookie holds (sealed).
#[derive(Serialize, Deserialize)]
pub(super) struct Flow {
    /// `state`.
    pub(super) s: String,
    /// `nonce`.
    pub(super) n: String,
    /// The PKCE verifier.
    pub(super) v: String,
    /// Where to go afterwards.
    pub(super) r: String,
    /// Until when (seconds).
    pub(super) e: i64,
}

pub(super) fn random_text() -> Result<String, OidcError> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| OidcError::Config("the system random generator failed".into()))?;
    Ok(crate::b64::encode(&bytes))
}

/// `return_to` when it is a path of this application (no other origin, no
/// scheme-relative `//host`, no backslash tricks).
pub(super) fn local_path(return_to: &str) -> bool {
    return_to.starts_with('/')
        && !return_to.starts_with("//")
        && !return_to
            .bytes()
            .any(|b| b == b'\\' || b.is_ascii_control())
        && return_to.len() <= 512
}

/// A cookie whose value is sealed with AES-256-GCM (a random nonce per cookie; the
/// cookie's name, a binding and, per value, extra data are the associated data, so a
/// value cannot be moved to another cookie, client or session): the flow cookie, and
/// the web-app kit's person cookie.
pub(super) struct SealedCookie {
    key: RandomizedNonceKey,
    name: String,
    secure: bool,
    /// Associated data: the cookie's name and the binding.
    aad: Vec<u8>,
}

impl SealedCookie {
    /// `base` is the cookie's name over plain http (loopback development); over https
    /// it is `__Host-` + `base`: only this origin, only over https, only `Path=/`.
    pub(super) fn new(
        key: &[u8; 32],
        secure: bool,
        base: &str,
        binding: String,
    ) -> Result<SealedCookie, OidcError> {
        let name = if secure {
            format!("__Host-{base}")
        } else {
            base.to_owned()
        };
        Ok(SealedCookie {
            aad: format!("{name}\n{binding}").into_bytes(),
            key: RandomizedNonceKey::new(&AES_256_GCM, key)
                .map_err(|_| OidcError::Config("the cookie key".into()))?,
            name,
            secure,
        })
    }

    fn header(&self, value: &str, max_age: Duration) -> HeaderValue {
        cookies::set(&self.name, value, SameSite::Lax, max_age, self.secure)
    }

    /// The `Set-Cookie` of `value`, sealed with `extra` as associated data too.
    pub(super) fn set<T: Serialize>(
        &self,
        value: &T,
        extra: &[u8],
        max_age: Duration,
    ) -> Result<HeaderValue, OidcError> {
        let sealed = self.seal(value, extra)?;
        // Browsers drop a cookie over 4 KiB.
        if sealed.len() > 3800 {
            return Err(OidcError::Config(format!(
                "the cookie {} would be too large",
                self.name
            )));
        }
        Ok(self.header(&sealed, max_age))
    }

    pub(super) fn clear(&self) -> HeaderValue {
        self.header("", Duration::ZERO)
    }

    fn aad(&self, extra: &[u8]) -> Vec<u8> {
        let mut aad = self.aad.clone();
        aad.push(b'\n');
        aad.extend_from_slice(extra);
        aad
    }

    pub(super) fn seal<T: Serialize>(&self, value: &T, extra: &[u8]) -> Result<String, OidcError> {
        let mut data =
            serde_json::to_vec(value).map_err(|e| OidcError::Config(format!("sealing: {e}")))?;
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(self.aad(extra).as_slice()), &mut data)
            .map_err(|_| OidcError::Config("sealing a cookie failed".into()))?;
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&data);
        Ok(crate::b64::encode(&out))
    }

    pub(super) fn open<T: DeserializeOwned>(&self, text: &str, extra: &[u8]) -> Option<T> {
        let mut bytes = crate::b64::decode(text.as_bytes())?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let mut data = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).ok()?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(self.aad(extra).as_slice()), &mut data)
            .ok()?;
        serde_json::from_slice(plain).ok()
    }

    /// The value of the one cookie of this name; none when there are several (a cookie
    /// planted beside ours, from a sibling subdomain, must not choose which counts).
    pub(super) fn read<T: DeserializeOwned>(&self, headers: &HeaderMap, extra: &[u8]) -> Option<T> {
        self.open(cookies::single(headers, &self.name)?, extra)
    }
}

/// The flow cookie: what a sign-in must remember between leaving and coming back,
/// bound to the issuer, the client and its redirect URI.
pub(super) struct FlowCookie(SealedCookie);

impl FlowCookie {
    pub(super) fn new(
        key: &[u8; 32],
        secure: bool,
        binding: String,
    ) -> Result<FlowCookie, OidcError> {
        Ok(FlowCookie(SealedCookie::new(
            key,
            secure,
            "portcullis_oidc",
            binding,
        )?))
    }

    pub(super) fn set(&self, flow: &Flow) -> Result<HeaderValue, OidcError> {
        self.0.set(flow, b"flow", FLOW_LIFETIME)
    }

    pub(super) fn clear(&self) -> HeaderValue {
        self.0.clear()
    }

    #[cfg(test)]
    pub(super) fn open(&self, text: &str) -> Option<Flow> {
        self.0.open(text, b"flow")
    }

    pub(super) fn read(&self, headers: &HeaderMap) -> Option<Flow> {
        self.0.read(headers, b"flow")
    }
}
