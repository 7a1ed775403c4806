//! Opaque refresh tokens: 256 random bits, shown to the client once, stored only as
//! their SHA-256; and the rotation rule of a refresh family, as a pure function over
//! the stored rows ([`decide`]), so that every store applies the same rule.
//!
//! A family has exactly one live refresh token at any moment. Redeeming it rotates it.
//! A client that lost the answer may redeem the token it just rotated once more within
//! a short grace window: it gets a fresh pair, and the successor it lost dies (one live
//! chain, whoever raced). Any other known token of the family is reuse: the family is
//! revoked, because two parties hold its tokens (RFC 9700 §4.14.2).
//!
//! **Unstable** (feature `server`): a building block of the Portcullis server, public for
//! it and outside the library's semver promise.

use std::fmt;

use crate::opaque::Opaque;

/// A refresh token as handed to a client: an [`Opaque`] credential. Never logged:
/// `Debug` is redacted.
pub struct RefreshToken(Opaque);

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken([redacted])")
    }
}

/// Length of an encoded refresh token: 32 bytes in unpadded base64url.
pub const REFRESH_TOKEN_LEN: usize = crate::opaque::OPAQUE_LEN;

impl RefreshToken {
    /// A fresh token of 256 random bits.
    pub fn generate() -> Result<RefreshToken, crate::keys::Error> {
        Ok(RefreshToken(Opaque::generate()?))
    }

    /// Parses a token a client presented: exactly 43 base64url characters that decode
    /// canonically, or `None`.
    pub fn parse(presented: &str) -> Option<RefreshToken> {
        Opaque::parse(presented).map(RefreshToken)
    }

    /// The token text, to send to the client.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The SHA-256 of the token: what is stored and looked up.
    pub fn hash(&self) -> [u8; 32] {
        self.0.sha256()
    }
}

/// Lifetimes that govern a rotation, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationPolicy {
    /// The token just rotated may be redeemed again within this window, replacing its
    /// successor (0 turns it off).
    pub grace: i64,
    /// A family unused for this long is over.
    pub idle: i64,
    /// A family older than this is over.
    pub absolute: i64,
}

/// What the store holds about the family of a presented token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FamilyView {
    /// The family was revoked (logout, reuse).
    pub revoked: bool,
    /// The family's user is disabled.
    pub user_disabled: bool,
    /// When the family started.
    pub created_at: i64,
    /// When a token of it was last redeemed.
    pub last_used_at: i64,
    /// The SHA-256 of its one live token.
    pub current: [u8; 32],
    /// The SHA-256 of the token `current` replaced, and when it was rotated.
    pub previous: Option<([u8; 32], i64)>,
}

impl fmt::Debug for FamilyView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FamilyView")
            .field("revoked", &self.revoked)
            .field("user_disabled", &self.user_disabled)
            .field("created_at", &self.created_at)
            .field("last_used_at", &self.last_used_at)
            .finish_non_exhaustive()
    }
}

/// What to do with a presented token of a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// It is the live token: the successor becomes live, the presented token becomes
    /// `previous`, rotated now.
    Rotate,
    /// It is the token rotated less than the grace window ago: the successor becomes
    /// live in place of the one issued then (which dies); `previous` and its rotation
    /// time stay, so retries never stretch the window.
    RetryWithinGrace,
    /// Any other token of the family: revoke the family.
    Reuse,
    /// The family is revoked, expired, or its user disabled: refuse, change nothing.
    Refuse,
}

/// The rotation rule. `presented` is the SHA-256 of a token the store found in
/// `family`; the store applies the decision under the same lock it read `family` with.
pub fn decide(
    presented: &[u8; 32],
    family: &FamilyView,
    now: i64,
    policy: RotationPolicy,
) -> Decision {
    let expired =
        now - family.last_used_at > policy.idle || now - family.created_at > policy.absolute;
    if family.revoked || family.user_disabled || expired {
        return Decision::Refuse;
    }
    if ct_eq(presented, &family.current) {
        return Decision::Rotate;
    }
    match family.previous {
        Some((previous, rotated_at))
            if ct_eq(presented, &previous)
                && policy.grace > 0
                && now - rotated_at < policy.grace =>
        {
            Decision::RetryWithinGrace
        }
        _ => Decision::Reuse,
    }
}

/// Hashes are not secret (the store holds them), but there is no reason to leak
/// through timing which one matched.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RotationPolicy = RotationPolicy {
        grace: 10,
        idle: 100,
        absolute: 1000,
    };

    fn family(current: u8, previous: Option<(u8, i64)>) -> FamilyView {
        FamilyView {
            revoked: false,
            user_disabled: false,
            created_at: 0,
            last_used_at: 0,
            current: [current; 32],
            previous: previous.map(|(h, at)| ([h; 32], at)),
        }
    }

    #[test]
    fn the_live_token_rotates_and_the_previous_one_retries_only_within_grace() {
        let f = family(2, Some((1, 50)));
        assert_eq!(decide(&[2; 32], &f, 55, POLICY), Decision::Rotate);
        assert_eq!(decide(&[1; 32], &f, 59, POLICY), Decision::RetryWithinGrace);
        assert_eq!(decide(&[1; 32], &f, 60, POLICY), Decision::Reuse);
        // An older token, or a successor a retry replaced, is reuse at once.
        assert_eq!(decide(&[0; 32], &f, 51, POLICY), Decision::Reuse);
        let no_grace = RotationPolicy { grace: 0, ..POLICY };
        assert_eq!(decide(&[1; 32], &f, 50, no_grace), Decision::Reuse);
    }

    #[test]
    fn revoked_expired_and_disabled_families_refuse_every_token() {
        let live = family(2, Some((1, 50)));
        for f in [
            FamilyView {
                revoked: true,
                ..live
            },
            FamilyView {
                user_disabled: true,
                ..live
            },
        ] {
            assert_eq!(decide(&[2; 32], &f, 55, POLICY), Decision::Refuse);
            assert_eq!(decide(&[0; 32], &f, 55, POLICY), Decision::Refuse);
        }
        assert_eq!(
            decide(&[2; 32], &live, 101, POLICY),
            Decision::Refuse,
            "idle"
        );
        let used = FamilyView {
            last_used_at: 950,
            ..live
        };
        assert_eq!(
            decide(&[2; 32], &used, 1001, POLICY),
            Decision::Refuse,
            "absolute"
        );
        assert_eq!(decide(&[2; 32], &used, 1000, POLICY), Decision::Rotate);
    }

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
