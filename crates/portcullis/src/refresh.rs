//! Opaque refresh tokens: 256 random bits, shown to the client once, stored only as
//! their SHA-256.

use std::fmt;

use aws_lc_rs::digest;
use zeroize::Zeroizing;

use crate::b64;

/// A refresh token as handed to a client. Never logged: `Debug` is redacted.
pub struct RefreshToken(Zeroizing<String>);

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken([redacted])")
    }
}

/// Length of an encoded refresh token: 32 bytes in unpadded base64url.
pub const REFRESH_TOKEN_LEN: usize = 43;

impl RefreshToken {
    /// A fresh token of 256 random bits.
    pub fn generate() -> Result<RefreshToken, crate::keys::Error> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(bytes.as_mut_slice())?;
        Ok(RefreshToken(Zeroizing::new(b64::encode(bytes.as_slice()))))
    }

    /// Parses a token a client presented: exactly 43 base64url characters that decode
    /// canonically, or `None`.
    pub fn parse(presented: &str) -> Option<RefreshToken> {
        if presented.len() != REFRESH_TOKEN_LEN {
            return None;
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        b64::decode_into(presented.as_bytes(), bytes.as_mut_slice())?;
        Some(RefreshToken(Zeroizing::new(presented.to_owned())))
    }

    /// The token text, to send to the client.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The SHA-256 of the token: what is stored and looked up.
    pub fn hash(&self) -> [u8; 32] {
        let digest = digest::digest(&digest::SHA256, self.0.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_differ() {
        let a = RefreshToken::generate().unwrap();
        let b = RefreshToken::generate().unwrap();
        assert_eq!(a.expose().len(), REFRESH_TOKEN_LEN);
        assert_ne!(a.expose(), b.expose());
        assert_eq!(RefreshToken::parse(a.expose()).unwrap().hash(), a.hash());
        assert!(!format!("{a:?}").contains(a.expose()));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = RefreshToken::generate().unwrap();
        let text = good.expose();
        assert!(RefreshToken::parse(&text[1..]).is_none());
        assert!(RefreshToken::parse(&format!("{text}A")).is_none());
        assert!(RefreshToken::parse(&format!("{}=", &text[..42])).is_none());
        assert!(RefreshToken::parse(&format!("{}+", &text[..42])).is_none());
        assert!(RefreshToken::parse("").is_none());
    }
}
