//! OAuth grants as pure decisions: what scope a grant is worth for an account, and
//! whether an authorization code may start one ([`decide_exchange`]), so that every
//! store applies the same rules and the rules are tested without a database.
//!
//! A store reads the code and what it depends on under its locks (the person's row,
//! the client's, the code's and the sign-in session's), asks [`decide_exchange`], and
//! writes what the answer says in the same transaction, as it does with
//! [`crate::refresh::decide`] for refresh tokens. The Portcullis server keeps codes in
//! its database (see `GrantStore::exchange_code` in portcullis-store).
//!
//! **Unstable** (feature `server`): a building block of the Portcullis server, public for
//! it and outside the library's semver promise.

/// Scopes about who the person is (OpenID Connect), not what they may do: a client may
/// be granted them whatever the account's own scope says.
pub const IDENTITY_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

/// What a grant of `granted` is worth for an account whose scope is `account`: the
/// identity scopes it names, and those of its other scopes the account still has, in
/// `granted`'s order.
pub fn effective_scope(granted: &str, account: &str) -> String {
    granted
        .split_whitespace()
        .filter(|s| IDENTITY_SCOPES.contains(s) || has_scope(account, s))
        .collect::<Vec<_>>()
        .join(" ")
}

/// True when `new` lacks a scope `old` had: tokens issued with `old` must then stop
/// being honoured.
pub fn removes_scope(old: &str, new: &str) -> bool {
    old.split_whitespace().any(|s| !has_scope(new, s))
}

fn has_scope(list: &str, scope: &str) -> bool {
    list.split_whitespace().any(|s| s == scope)
}

/// An authorization code as the store holds it, and the state of what it depends on,
/// read under the store's locks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeView<'a> {
    /// An exchange of this code came before (successful or not).
    pub used: bool,
    /// When it stops being redeemable (seconds since the epoch).
    pub expires_at: i64,
    /// The client it was issued to.
    pub client_id: &'a str,
    /// The redirect URI of its authorization request.
    pub redirect_uri: &'a str,
    /// The PKCE challenge of its authorization request (S256, base64url).
    pub challenge: &'a str,
    /// The person who signed in still has an enabled account.
    pub person_enabled: bool,
    /// The client is still registered and enabled.
    pub client_enabled: bool,
    /// The cookie session the person signed in with is theirs and not ended: a
    /// sign-out within the code's minute ends what the code would have started.
    pub session_live: bool,
}

/// What a token request presents with the code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Presented<'a> {
    /// The authenticated client.
    pub client_id: &'a str,
    /// The token request's `redirect_uri`.
    pub redirect_uri: &'a str,
    /// BASE64URL(SHA-256(code_verifier)) of the token request.
    pub challenge: &'a str,
}

/// What to do with a presented code. Whatever the answer, a known code is used up: a
/// code is tried once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exchange {
    /// Start the grant (a refresh family for the client).
    Grant,
    /// The code was used before: whoever holds it now may not be who held it first,
    /// so what its first exchange started is revoked.
    Replay,
    /// Expired, for another client or redirect URI, a PKCE mismatch, or the person,
    /// client or session is gone: nothing starts.
    Refuse,
}

/// The exchange rule. Refusals are not told apart to the caller (RFC 6749 §5.2's
/// `invalid_grant` covers them all), so the order of the checks reveals nothing.
pub fn decide_exchange(code: &CodeView<'_>, presented: &Presented<'_>, now: i64) -> Exchange {
    if code.used {
        return Exchange::Replay;
    }
    let matches = now < code.expires_at
        && code.client_id == presented.client_id
        && code.redirect_uri == presented.redirect_uri
        // The challenge is no secret (it travelled in the authorization request's
        // URL); the verifier it came from is, and only its hash is compared here.
        && code.challenge == presented.challenge;
    if matches && code.person_enabled && code.client_enabled && code.session_live {
        Exchange::Grant
    } else {
        Exchange::Refuse
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> CodeView<'static> {
        CodeView {
            used: false,
            expires_at: 1060,
            client_id: "c1",
            redirect_uri: "https://app.example/cb",
            challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            person_enabled: true,
            client_enabled: true,
            session_live: true,
        }
    }

    fn presented() -> Presented<'static> {
        Presented {
            client_id: "c1",
            redirect_uri: "https://app.example/cb",
            challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        }
    }

    #[test]
    fn a_fresh_matching_code_is_granted() {
        assert_eq!(
            decide_exchange(&good(), &presented(), 1000),
            Exchange::Grant
        );
        assert_eq!(
            decide_exchange(&good(), &presented(), 1059),
            Exchange::Grant
        );
    }

    #[test]
    fn each_refusal_on_its_own() {
        type Spoil = fn(&mut CodeView<'static>, &mut Presented<'static>, &mut i64);
        let cases: [(&str, Spoil); 10] = [
            ("expired at its end", |_, _, now| *now = 1060),
            ("expired after", |_, _, now| *now = 5000),
            ("another client", |_, p, _| p.client_id = "c2"),
            ("another redirect URI", |_, p, _| {
                p.redirect_uri = "https://app.example/cb2";
            }),
            ("a redirect URI differing in case", |_, p, _| {
                p.redirect_uri = "https://APP.example/cb";
            }),
            ("a PKCE mismatch", |_, p, _| {
                p.challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN";
            }),
            ("an empty challenge", |_, p, _| p.challenge = ""),
            ("the person disabled", |c, _, _| c.person_enabled = false),
            ("the client disabled", |c, _, _| c.client_enabled = false),
            ("the session ended", |c, _, _| c.session_live = false),
        ];
        for (name, spoil) in cases {
            let (mut code, mut p, mut now) = (good(), presented(), 1000);
            spoil(&mut code, &mut p, &mut now);
            assert_eq!(decide_exchange(&code, &p, now), Exchange::Refuse, "{name}");
        }
    }

    #[test]
    fn a_used_code_is_a_replay_whatever_else_holds() {
        let mut code = good();
        code.used = true;
        assert_eq!(decide_exchange(&code, &presented(), 1000), Exchange::Replay);
        // Even presented by another client, after expiry, with the account gone: the
        // first exchange's grant must still end.
        code.person_enabled = false;
        code.session_live = false;
        let other = Presented {
            client_id: "c2",
            ..presented()
        };
        assert_eq!(decide_exchange(&code, &other, 9999), Exchange::Replay);
    }

    #[test]
    fn a_grant_keeps_identity_scopes_and_loses_what_the_account_lost() {
        assert_eq!(effective_scope("openid read write", "read"), "openid read");
        assert_eq!(effective_scope("profile admin", ""), "profile");
        assert_eq!(effective_scope("", "read"), "");
        // Nothing the account has beyond the grant is added.
        assert_eq!(effective_scope("read", "read write admin"), "read");
        // A scope that is a prefix of another is not the other.
        assert_eq!(effective_scope("read:all", "read"), "");
    }

    #[test]
    fn removing_is_losing_any_scope() {
        assert!(removes_scope("read write", "read"));
        assert!(!removes_scope("read", "read write"));
        assert!(!removes_scope("", ""));
        assert!(removes_scope("read", ""));
        // Order and spacing do not matter.
        assert!(!removes_scope("a  b", "b a"));
    }
}
