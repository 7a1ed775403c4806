//! The session secret (the cookie's value, stored only as its hash) and the
//! synchronizer token derived from it for forms.

use aws_lc_rs::digest;

use super::error::Error;
use crate::b64;
use crate::opaque::Opaque;

/// The secret of a session: an [`Opaque`] 256-bit credential, the cookie's value.
/// Only its hash is ever stored.
pub struct SessionSecret(Opaque);

impl std::fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionSecret([redacted])")
    }
}

impl SessionSecret {
    /// A new random secret.
    pub fn generate() -> Result<SessionSecret, Error> {
        Opaque::generate()
            .map(SessionSecret)
            .map_err(|_| Error::Random)
    }

    /// Parses a presented secret: exactly the shape [`SessionSecret::generate`] makes
    /// (43 base64url characters, canonical).
    pub fn parse(text: &str) -> Option<SessionSecret> {
        Opaque::parse(text).map(SessionSecret)
    }

    /// The cookie's value.
    pub(super) fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The hash the store keeps.
    pub fn hash(&self) -> SessionHash {
        SessionHash(self.0.sha256())
    }

    /// The synchronizer (CSRF) token of this session: derived from the secret with a
    /// domain-separated hash, so it needs no storage, cannot be computed without the
    /// cookie, and does not reveal the cookie.
    pub(super) fn csrf_token(&self) -> String {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"portcullis csrf token v1\0");
        ctx.update(self.0.expose().as_bytes());
        b64::encode(ctx.finish().as_ref())
    }
}

/// SHA-256 of a session secret: what the store looks sessions up by.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionHash(pub [u8; 32]);

impl std::fmt::Debug for SessionHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionHash([redacted])")
    }
}
