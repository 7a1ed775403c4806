//! What a sign-in through an upstream provider leads to, once the library's OpenID
//! Connect client has checked the provider's answer (`providers.rs`).
//!
//! The rules (docs/security-model.md, "Upstream providers"):
//! - an identity is the provider's `sub`, never an address: an upstream account is
//!   linked to an account here only by its first sign-in (which creates the account)
//!   or by a person already signed in here who asks for the link;
//! - a first sign-in whose proven address an account here has already proven creates
//!   nothing: the person is told to sign in to that account and link the provider
//!   from it (a provider that says an address is proven must not hand over the
//!   account that proved it here);
//! - an account with a second factor is asked for it after the provider, as after a
//!   password;
//! - new accounts are throttled per client address like signups.

use std::net::IpAddr;

use portcullis::jwt::{Claims, random_id};
use portcullis::username::{check_new_username, normalize_username, skeleton};
use portcullis_store::{Linked, LinkedIdentity, NewUser, Settlement, User};

use crate::accounts::{SignedIn, federated_amr};
use crate::audit::{Entry, Kind};
use crate::error::ApiError;
use crate::factors::Pending;
use crate::state::AppState;

/// The person a provider signed in, from its ID token.
#[derive(Clone, Debug)]
pub(crate) struct Person {
    /// `sub` at the provider.
    pub subject: String,
    /// What to call them on the account page (their name there).
    pub label: String,
    /// Usernames to try for a new account, best first.
    names: Vec<String>,
    /// Their address there, and whether the provider says it is proven.
    email: Option<String>,
    email_verified: bool,
}

/// The longest `sub` kept: OpenID Connect Core §2 says a subject "MUST NOT exceed 255
/// ASCII characters in length". A provider chosen by the operator sends it, but an
/// identity is stored and looked up by it, so a longer one is refused, not kept.
const MAX_SUBJECT: usize = 255;

impl Person {
    /// From a verified ID token's claims; `None` without a `sub`, or with one longer
    /// than [`MAX_SUBJECT`] bytes.
    pub(crate) fn from_claims(claims: &Claims) -> Option<Person> {
        let subject = claims
            .sub
            .clone()
            .filter(|s| !s.is_empty() && s.len() <= MAX_SUBJECT)?;
        let text = |name: &str| {
            claims
                .extra
                .get(name)
                .and_then(|v| v.as_str())
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let email = text("email");
        // A boolean, as OpenID Connect says; some providers send the string "true".
        let email_verified = match claims.extra.get("email_verified") {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) => s == "true",
            _ => false,
        };
        let mut names: Vec<String> = ["preferred_username", "nickname"]
            .iter()
            .filter_map(|c| text(c))
            .collect();
        if let Some(local) = email.as_deref().and_then(|e| e.split('@').next()) {
            names.push(local.to_owned());
        }
        if let Some(name) = text("name") {
            names.push(name.replace(char::is_whitespace, "."));
        }
        let label = text("preferred_username")
            .or_else(|| email.clone())
            .or_else(|| text("name"))
            .unwrap_or_else(|| subject.clone());
        Some(Person {
            subject,
            label: label.chars().take(128).collect(),
            names,
            email,
            email_verified,
        })
    }
}

impl Person {
    /// From GitHub's REST API with the sign-in's access token: `GET /user` (the id,
    /// never the login, is the subject: a login can be renamed and reused) and
    /// `GET /user/emails` (the primary address, and whether GitHub verified it).
    pub(crate) async fn from_github(api: &str, access_token: &str) -> Result<Person, String> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        let get = |path: &str| {
            http.get(format!("{api}{path}"))
                .bearer_auth(access_token)
                .header(reqwest::header::ACCEPT, "application/vnd.github+json")
                .header("x-github-api-version", "2022-11-28")
                .header(reqwest::header::USER_AGENT, "portcullis")
                .send()
        };
        let read = |r: reqwest::Response| async move {
            if !r.status().is_success() {
                return Err(format!("GitHub's API answered {}", r.status()));
            }
            let bytes = r.bytes().await.map_err(|e| e.to_string())?;
            if bytes.len() > 1024 * 1024 {
                return Err("GitHub's API answered more than 1 MiB".into());
            }
            serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| e.to_string())
        };
        let user = read(get("/user").await.map_err(|e| e.to_string())?).await?;
        let subject = match &user["id"] {
            serde_json::Value::Number(n) => n.to_string(),
            _ => return Err("GitHub's user has no numeric id".into()),
        };
        // Without `user:email` granted, the list is refused: no address, then.
        let emails = match get("/user/emails").await {
            Ok(r) => read(r).await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        let primary = emails
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["primary"] == true);
        let text = |v: &serde_json::Value| {
            v.as_str()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let login = text(&user["login"]);
        let mut names: Vec<String> = login.iter().cloned().collect();
        if let Some(name) = text(&user["name"]) {
            names.push(name.replace(char::is_whitespace, "."));
        }
        Ok(Person {
            label: login.clone().unwrap_or_else(|| subject.clone()),
            subject,
            names,
            email: primary.and_then(|e| text(&e["email"])),
            email_verified: primary.is_some_and(|e| e["verified"] == true),
        })
    }
}

/// Where a sign-in through a provider ended.
pub(crate) enum Outcome {
    /// Signed in: start a session.
    SignedIn(Box<SignedIn>),
    /// The account has a second factor: ask for it.
    SecondFactor(Pending),
    /// The account is disabled.
    Disabled,
    /// No account has this identity, and the address it comes with is one an account
    /// here has proven: nothing was created.
    AddressTaken,
}

/// A sign-in through `provider` by `person`: the linked account, or a new one.
pub(crate) async fn sign_in(
    state: &AppState,
    client: IpAddr,
    provider: &str,
    person: &Person,
) -> Result<Outcome, ApiError> {
    let now = state.now();
    let store = &state.0.store;
    let user = match store.identity_owner(provider, &person.subject, now).await? {
        Some(user) => user,
        None => match create(state, client, provider, person).await? {
            Created::User(user) => user,
            Created::AddressTaken => return Ok(Outcome::AddressTaken),
        },
    };
    if user.disabled {
        tracing::info!(user = %user.id, provider, "upstream sign-in of a disabled account: refused");
        crate::audit::record(
            state,
            Entry::new(Kind::LoginFailed, crate::audit::Actor::Nobody)
                .on(&user.id)
                .with("reason", "disabled")
                .with("step", "provider")
                .with("provider", provider),
        )
        .await;
        return Ok(Outcome::Disabled);
    }
    let amr = federated_amr(provider);
    if user.has_second_factor() {
        let pending = crate::factors::challenge(state, &user, None, &amr).await?;
        return Ok(Outcome::SecondFactor(pending));
    }
    // The new device's row is written with the grant.
    let (device, device_hash) = crate::accounts::mint_device()?;
    let deferred = crate::accounts::Deferred {
        settle: Vec::new(),
        device: Some(device_hash),
    };
    Ok(Outcome::SignedIn(Box::new(SignedIn::second_factor(
        user,
        Some(device),
        amr,
        deferred,
    ))))
}

enum Created {
    User(User),
    AddressTaken,
}

/// A new account for `person`, linked to them; or the account that already has their
/// identity, when another sign-in of theirs created it a moment ago.
async fn create(
    state: &AppState,
    client: IpAddr,
    provider: &str,
    person: &Person,
) -> Result<Created, ApiError> {
    let store = &state.0.store;
    let email = person
        .email
        .as_deref()
        .and_then(|e| crate::email::normalize(e).ok());
    let verified = person.email_verified && email.is_some();
    // Never linked, never created, by an address alone: an account here that has
    // proven the same address is its owner's, and they link the provider themselves.
    if let Some(email) = &email
        && store.user_by_verified_email(&email.key).await?.is_some()
    {
        tracing::info!(
            provider,
            "upstream sign-in: its address is an existing account's; nothing created"
        );
        return Ok(Created::AddressTaken);
    }
    let attempts = state.0.throttle.signup(client);
    crate::accounts::admit(state, &attempts).await?;
    let now = state.now();
    let identity = LinkedIdentity {
        provider: provider.to_owned(),
        subject: person.subject.clone(),
        user_id: String::new(),
        label: person.label.clone(),
        created_at: now,
        last_used_at: now,
    };
    let mut tried = 0;
    for username in candidates(&person.names) {
        tried += 1;
        let new = NewUser {
            id: random_id()?,
            skeleton: skeleton(&username),
            username,
            // No password: only the provider (or a passkey, or a password set later
            // through a reset) signs this account in.
            password_hash: String::new(),
            scope: state.0.config.default_scope.clone(),
            created_at: now,
            email: email.clone(),
        };
        match store
            .create_user_with_identity(new, verified, &identity)
            .await
        {
            Ok(user) => {
                crate::accounts::settle(state, &attempts, Settlement::Success).await;
                tracing::info!(user = %user.id, provider, "account created through an upstream provider");
                crate::audit::record(
                    state,
                    Entry::own(Kind::UserCreated, &user.id)
                        .with("via", "provider")
                        .with("provider", provider),
                )
                .await;
                return Ok(Created::User(user));
            }
            Err(portcullis_store::Error::Conflict) => {
                // Which uniqueness: the identity (a second sign-in at once), the
                // address (proven meanwhile), or the name (try the next).
                if let Some(user) = store.identity_owner(provider, &person.subject, now).await? {
                    crate::accounts::settle(state, &attempts, Settlement::NotChecked).await;
                    return Ok(Created::User(user));
                }
                if let Some(email) = &email
                    && verified
                    && store.user_by_verified_email(&email.key).await?.is_some()
                {
                    crate::accounts::settle(state, &attempts, Settlement::NotChecked).await;
                    return Ok(Created::AddressTaken);
                }
            }
            Err(e) => {
                crate::accounts::settle(state, &attempts, Settlement::NotChecked).await;
                return Err(e.into());
            }
        }
    }
    crate::accounts::settle(state, &attempts, Settlement::NotChecked).await;
    Err(ApiError::Unexpected(anyhow::anyhow!(
        "no free username for an upstream account after {tried} tries"
    )))
}

/// Usernames for a new account, in order: each hint that is a valid new username,
/// then the first with `-2` … `-9`, then random ones (`user-` and 8 hex digits).
fn candidates(hints: &[String]) -> impl Iterator<Item = String> {
    let valid: Vec<String> = hints
        .iter()
        .filter_map(|h| {
            // Room for a suffix within the length limit.
            let cut: String = h.chars().take(48).collect();
            normalize_username(&cut)
                .ok()
                .filter(|n| check_new_username(n).is_ok())
        })
        .collect();
    let base = valid.first().cloned();
    let numbered = base
        .into_iter()
        .flat_map(|b| (2..10).map(move |n| format!("{b}-{n}")));
    let random = (0..8).filter_map(|_| {
        let mut bytes = [0u8; 4];
        aws_lc_rs::rand::fill(&mut bytes).ok()?;
        Some(format!(
            "user-{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ))
    });
    let mut seen = std::collections::HashSet::new();
    valid
        .into_iter()
        .chain(numbered)
        .chain(random)
        .filter(move |n| seen.insert(n.clone()))
}

/// What linking a provider to a signed-in account did.
pub(crate) enum LinkOutcome {
    /// Linked (or it already was).
    Linked,
    /// The upstream identity is another account's here.
    Taken,
    /// The account already has another identity at this provider.
    OtherAtProvider,
    /// The account is gone or disabled.
    NoAccount,
}

/// Links `person` at `provider` to the signed-in account `user_id`.
pub(crate) async fn link(
    state: &AppState,
    user_id: &str,
    provider: &str,
    person: &Person,
) -> Result<LinkOutcome, ApiError> {
    let now = state.now();
    let identity = LinkedIdentity {
        provider: provider.to_owned(),
        subject: person.subject.clone(),
        user_id: user_id.to_owned(),
        label: person.label.clone(),
        created_at: now,
        last_used_at: now,
    };
    let outcome = match state.0.store.link_identity(&identity).await {
        Ok(Linked::Done) => {
            tracing::info!(user = %user_id, provider, "upstream identity linked");
            crate::audit::record(
                state,
                Entry::own(Kind::IdentityLinked, user_id).with("provider", provider),
            )
            .await;
            LinkOutcome::Linked
        }
        Ok(Linked::Already) => LinkOutcome::Linked,
        Ok(Linked::Taken(_)) => {
            tracing::info!(user = %user_id, provider, "upstream identity is another account's: not linked");
            LinkOutcome::Taken
        }
        Ok(Linked::NoAccount) => LinkOutcome::NoAccount,
        Err(portcullis_store::Error::Conflict) => LinkOutcome::OtherAtProvider,
        Err(e) => return Err(e.into()),
    };
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_over_255_bytes_is_refused_not_kept() {
        let with_sub = |sub: &str| {
            let mut claims = Claims::default();
            claims.sub = Some(sub.to_owned());
            Person::from_claims(&claims)
        };
        assert_eq!(with_sub(&"a".repeat(255)).unwrap().subject.len(), 255);
        assert!(with_sub(&"a".repeat(256)).is_none());
        // 128 two-byte characters: 256 bytes, over the cap (bytes are counted, as the
        // spec's ASCII characters are bytes).
        assert!(with_sub(&"é".repeat(128)).is_none());
        assert!(with_sub("").is_none());
        assert!(Person::from_claims(&Claims::default()).is_none());
    }

    #[test]
    fn usernames_come_from_the_hints_then_numbers_then_chance() {
        // A name with a space is no username; the next hint is taken.
        let names: Vec<String> =
            candidates(&["Ada Lovelace".into(), "Ada".into(), "ada".into()]).collect();
        assert_eq!(names[0], "ada");
        assert_eq!(names.iter().filter(|n| *n == "ada").count(), 1);
        assert!(names.iter().any(|n| n.ends_with("-2")));
        assert!(names.iter().any(|n| n.starts_with("user-")));
        // Nothing usable: random names only.
        let names: Vec<String> = candidates(&["".into()]).collect();
        assert!(!names.is_empty() && names.iter().all(|n| n.starts_with("user-")));
    }
}
