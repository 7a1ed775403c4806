//! Upstream identity providers and the identities linked to accounts:
//! [`ProviderStore`] and its types.
//!
//! A provider is an OpenID Connect provider (or GitHub's OAuth 2.0) that people may
//! sign in with; an identity is one person at one provider (`sub` there), linked to
//! exactly one account here. Removing a provider keeps its identities: the same name
//! added again signs the same people in to the same accounts.

use std::fmt;

use crate::{Error, NewUser, User};

/// An upstream provider, as `portcullis providers add` registered it.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Provider {
    /// Its name here: lower-case letters, digits and `-` (`/login/NAME`).
    pub name: String,
    /// `oidc` (any OpenID Connect provider, by discovery) or `github`.
    pub kind: String,
    /// The issuer (OpenID Connect) or the site (`https://github.com`).
    pub issuer: String,
    /// This server's client id there.
    pub client_id: String,
    /// The client secret, sealed with the key-encryption key; `None` for a public
    /// client.
    pub sealed_secret: Option<String>,
    /// The scopes asked for, space separated.
    pub scope: String,
    /// What the sign-in page's button says after "Continue with".
    pub display_name: String,
    /// When it was added.
    pub created_at: i64,
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// One person at one provider, linked to an account.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct LinkedIdentity {
    /// The provider's name.
    pub provider: String,
    /// The person there (`sub`, or GitHub's numeric id): never an address.
    pub subject: String,
    /// The account it signs in to.
    pub user_id: String,
    /// What the provider called the person when the link was made (for the account
    /// page: "GitHub — octocat").
    pub label: String,
    /// When it was linked.
    pub created_at: i64,
    /// When it last signed in.
    pub last_used_at: i64,
}

/// What linking an identity to an account did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Linked {
    /// Linked now.
    Done,
    /// It was already linked to this account.
    Already,
    /// It is linked to another account (whose id this is): nothing changed.
    Taken(String),
    /// The account is gone or disabled.
    NoAccount,
}

/// What unlinking did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unlinked {
    /// The link is gone.
    Done,
    /// Refused: it is the account's last way in (no password, no passkey, no other
    /// link).
    LastWayIn,
    /// The account has no such link.
    NotFound,
}

/// Upstream providers and linked identities. Part of [`crate::Store`].
#[async_trait::async_trait]
pub trait ProviderStore: Send + Sync + 'static {
    /// Registers a provider; a taken name is [`Error::Conflict`].
    async fn add_provider(&self, provider: &Provider) -> Result<(), Error>;

    /// Every provider, by name.
    async fn providers(&self) -> Result<Vec<Provider>, Error>;

    /// Removes a provider (its identities stay, see the module documentation); false
    /// when there was none of that name.
    async fn remove_provider(&self, name: &str) -> Result<bool, Error>;

    /// Replaces a provider's sealed secret (`keys rewrap`); false when there is none
    /// of that name.
    async fn set_provider_secret(&self, name: &str, sealed: &str) -> Result<bool, Error>;

    /// The account an identity signs in to, with the identity marked used at `now`;
    /// `None` when it is linked to none.
    async fn identity_owner(
        &self,
        provider: &str,
        subject: &str,
        now: i64,
    ) -> Result<Option<User>, Error>;

    /// Links an identity to an account (`identity.user_id`), under the account's lock.
    async fn link_identity(&self, identity: &LinkedIdentity) -> Result<Linked, Error>;

    /// Creates an account and links an identity to it, in one transaction; with
    /// `email_verified`, the new account's address counts as proven. A taken username
    /// (or look-alike), a verified address another account has proven, or an identity
    /// already linked is [`Error::Conflict`], and nothing is written.
    async fn create_user_with_identity(
        &self,
        user: NewUser,
        email_verified: bool,
        identity: &LinkedIdentity,
    ) -> Result<User, Error>;

    /// An account's links, oldest first.
    async fn identities_of(&self, user_id: &str) -> Result<Vec<LinkedIdentity>, Error>;

    /// Removes an account's link to `provider`, unless it is the account's last way
    /// in; the account's row is locked first, so two unlinks at once cannot remove the
    /// last two ways.
    async fn unlink_identity(&self, user_id: &str, provider: &str) -> Result<Unlinked, Error>;
}
