//! Opaque credentials: 256 random bits, shown to their holder once as 43 base64url
//! characters, stored only as their SHA-256. Refresh tokens, session secrets and the
//! server's device credentials are all this one type underneath, so they are made,
//! parsed and hashed the same way.

use std::fmt;

use aws_lc_rs::digest;
use zeroize::Zeroizing;

use crate::b64;

/// Length of the text form: 32 bytes in unpadded base64url.
pub const OPAQUE_LEN: usize = 43;

/// A 256-bit opaque credential. `Debug` is redacted; the text is wiped on drop.
pub struct Opaque(Zeroizing<String>);

impl fmt::Debug for Opaque {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Opaque([redacted])")
    }
}

impl Opaque {
    /// A fresh one, from the system's CSPRNG.
    pub fn generate() -> Result<Opaque, crate::keys::Error> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(bytes.as_mut_slice())?;
        Ok(Opaque(Zeroizing::new(b64::encode(bytes.as_slice()))))
    }

    /// Parses presented text: exactly 43 base64url characters that decode canonically
    /// to 32 bytes, or `None`.
    pub fn parse(presented: &str) -> Option<Opaque> {
        well_formed(presented).then(|| Opaque(Zeroizing::new(presented.to_owned())))
    }

    /// The text, to hand to its holder.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The SHA-256 of the text: what is stored and looked up.
    pub fn sha256(&self) -> [u8; 32] {
        sha256(self.0.as_bytes())
    }
}

/// True when `presented` is the shape [`Opaque::parse`] accepts (nothing is kept).
pub(crate) fn well_formed(presented: &str) -> bool {
    if presented.len() != OPAQUE_LEN {
        return false;
    }
    let mut bytes = Zeroizing::new([0u8; 32]);
    b64::decode_into(presented.as_bytes(), bytes.as_mut_slice()).is_some()
}

/// SHA-256, as stored for every opaque credential (and for API keys).
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ones_parse_differ_and_stay_out_of_debug() {
        let a = Opaque::generate().unwrap();
        let b = Opaque::generate().unwrap();
        assert_eq!(a.expose().len(), OPAQUE_LEN);
        assert_ne!(a.expose(), b.expose());
        assert_eq!(Opaque::parse(a.expose()).unwrap().sha256(), a.sha256());
        assert!(!format!("{a:?}").contains(a.expose()));
    }

    #[test]
    fn only_the_exact_canonical_shape_parses() {
        let good = Opaque::generate().unwrap();
        let text = good.expose();
        assert!(Opaque::parse(&text[1..]).is_none());
        assert!(Opaque::parse(&format!("{text}A")).is_none());
        assert!(Opaque::parse(&format!("{}=", &text[..42])).is_none());
        assert!(Opaque::parse(&format!("{}+", &text[..42])).is_none());
        // The last character carries 4 bits of padding: they must be zero.
        let mut bits = text[..42].to_owned();
        bits.push('B');
        assert!(
            Opaque::parse(&bits).is_none(),
            "non-canonical trailing bits"
        );
        assert!(Opaque::parse("").is_none());
    }
}
