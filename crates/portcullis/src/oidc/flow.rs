//! The flow cookie: what a sign-in remembers between leaving for the provider and
//! coming back (`state`, `nonce`, the PKCE verifier, where to return), sealed with
//! AES-256-GCM and bound to the issuer, the client and the redirect URI.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
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

/// The flow cookie: what a sign-in must remember between leaving and coming back,
/// sealed with AES-256-GCM (a random nonce per cookie; the cookie's name is the
/// associated data, so a value cannot be moved to another cookie).
pub(super) struct FlowCookie {
    key: RandomizedNonceKey,
    name: &'static str,
    secure: bool,
    /// Associated data: the cookie's name, the issuer, the client and its redirect URI.
    aad: Vec<u8>,
}

impl FlowCookie {
    pub(super) fn new(
        key: &[u8; 32],
        secure: bool,
        binding: String,
    ) -> Result<FlowCookie, OidcError> {
        let name = if secure {
            "__Host-portcullis_oidc"
        } else {
            "portcullis_oidc"
        };
        Ok(FlowCookie {
            aad: format!("{name}\n{binding}").into_bytes(),
            key: RandomizedNonceKey::new(&AES_256_GCM, key)
                .map_err(|_| OidcError::Config("flow_key".into()))?,
            // `__Host-`: only this origin, only over https, only Path=/. Plain http
            // (loopback development) cannot have the prefix or `Secure`.
            name: if secure {
                "__Host-portcullis_oidc"
            } else {
                "portcullis_oidc"
            },
            secure,
        })
    }

    fn header(&self, value: &str, max_age: Duration) -> HeaderValue {
        cookies::set(self.name, value, SameSite::Lax, max_age, self.secure)
    }

    pub(super) fn set(&self, flow: &Flow) -> Result<HeaderValue, OidcError> {
        let value = self.seal(flow)?;
        // Browsers drop a cookie over 4 KiB; `return_to` is capped well below that.
        if value.len() > 3000 {
            return Err(OidcError::Config(
                "the flow cookie would be too large".into(),
            ));
        }
        Ok(self.header(&value, FLOW_LIFETIME))
    }

    pub(super) fn clear(&self) -> HeaderValue {
        self.header("", Duration::ZERO)
    }

    pub(super) fn seal(&self, flow: &Flow) -> Result<String, OidcError> {
        let mut data =
            serde_json::to_vec(flow).map_err(|e| OidcError::Config(format!("flow: {e}")))?;
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(self.aad.as_slice()), &mut data)
            .map_err(|_| OidcError::Config("sealing the flow cookie failed".into()))?;
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&data);
        Ok(crate::b64::encode(&out))
    }

    pub(super) fn open(&self, text: &str) -> Option<Flow> {
        let mut bytes = crate::b64::decode(text.as_bytes())?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let mut data = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).ok()?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(self.aad.as_slice()), &mut data)
            .ok()?;
        serde_json::from_slice(plain).ok()
    }

    /// The flow of the one cookie of this name; none when there are several (a cookie
    /// planted beside ours, from a sibling subdomain, must not choose which counts).
    pub(super) fn read(&self, headers: &HeaderMap) -> Option<Flow> {
        self.open(cookies::single(headers, self.name)?)
    }
}
