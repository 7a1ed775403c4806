//! What a person's account can do, without HTTP: create it, check its password (with
//! the throttle's admission around the hash), end everything it is signed in with, and
//! sign its access tokens. The routes (`routes::auth`, `routes::session`,
//! `routes::pages`, `routes::oauth`) adapt requests and answers to these; none of them
//! owns an operation another one needs.

use std::borrow::Cow;
use std::net::IpAddr;

use portcullis::jwt::{TokenBuilder, random_id};
use portcullis::password::{Password, PasswordError, Verification};
use portcullis::throttle::Attempt;
use portcullis::username::{check_new_username, normalize_username, skeleton};
use portcullis_store::{Admission, EventKind, NewUser, Settlement, TokenHash, User};

use crate::device::{self, DeviceToken};
use crate::error::ApiError;
use crate::state::AppState;

pub(crate) fn password(text: String) -> Result<Password, ApiError> {
    Password::new(text).map_err(|e| ApiError::InvalidRequest(e.to_string()))
}

pub(crate) fn hashing(e: PasswordError) -> ApiError {
    match e {
        PasswordError::Busy => ApiError::Busy,
        PasswordError::TooShort | PasswordError::TooLong => ApiError::InvalidRequest(e.to_string()),
        other => ApiError::Unexpected(anyhow::anyhow!(other)),
    }
}

/// Who creates an account.
pub(crate) enum Creator {
    /// Its person, signing up from this client address: throttled per address, and
    /// `require_email` applies; the account gets `default_scope`.
    Signup(IpAddr),
    /// An admin (`POST /admin/users`): not throttled, with this scope or
    /// `default_scope`.
    Admin { scope: Option<String> },
}

/// Creates an account (signup, by JSON or by the signup page, or an admin's): a
/// signup is throttled per client address, and a taken name costs the same hash as a
/// free one, so the answer's timing says nothing the 409 does not.
pub(crate) async fn create_account(
    state: &AppState,
    creator: Creator,
    username: &str,
    password_text: String,
    email: Option<&str>,
) -> Result<User, ApiError> {
    let username =
        normalize_username(username).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    check_new_username(&username).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    // An empty field (a form left blank) is no address.
    let email = match email.map(str::trim).filter(|e| !e.is_empty()) {
        Some(text) => Some(
            crate::email::normalize(text)
                .map_err(|e| ApiError::InvalidRequest(format!("email: {}", e.0)))?,
        ),
        None if state.0.config.require_email && matches!(creator, Creator::Signup(_)) => {
            return Err(ApiError::InvalidRequest(
                "email: an email address is required to sign up here".into(),
            ));
        }
        None => None,
    };
    let password = password(password_text)?;
    // The admin route writes its own audit record (it knows the actor).
    let signup = matches!(creator, Creator::Signup(_));
    let (attempts, scope) = match creator {
        Creator::Signup(client) => (
            state.0.throttle.signup(client),
            state.0.config.default_scope.clone(),
        ),
        Creator::Admin { scope } => (
            Vec::new(),
            scope.unwrap_or_else(|| state.0.config.default_scope.clone()),
        ),
    };
    admit(state, &attempts).await?;
    let hash = match state.0.hasher.hash(password).await {
        Ok(hash) => hash,
        Err(e) => {
            settle(state, &attempts, Settlement::NotChecked).await;
            return Err(hashing(e));
        }
    };
    let new = NewUser {
        id: random_id()?,
        skeleton: skeleton(&username),
        username,
        password_hash: hash,
        scope,
        created_at: state.now(),
        email: email.clone(),
    };
    // With an address, its confirmation link and mail are written with the account.
    let created = match email {
        Some(email) => {
            let (token, mail) = crate::links::token_and_mail(
                state,
                portcullis_store::EmailTokenKind::Verify,
                &new.id,
                &new.username,
                email,
            )?;
            state
                .0
                .store
                .create_user_with_token(new, &token, &mail)
                .await
        }
        None => state.0.store.create_user(new).await,
    };
    let user = created.map_err(|e| match e {
        // The name, or a look-alike of it (UTS #39 skeleton), is taken.
        portcullis_store::Error::Conflict => ApiError::UsernameTaken,
        other => other.into(),
    })?;
    tracing::info!(user = %user.id, "account created");
    if signup {
        crate::audit::record(
            state,
            crate::audit::Entry::own(crate::audit::Kind::UserCreated, &user.id)
                .with("via", "signup"),
        )
        .await;
    }
    Ok(user)
}

/// Takes a slot in every counter of `attempts`, or answers 429.
pub(crate) async fn admit(state: &AppState, attempts: &[Attempt]) -> Result<(), ApiError> {
    match state.0.store.admit(attempts, state.now()).await? {
        Admission::Admitted => Ok(()),
        Admission::Refused { retry_after } => Err(ApiError::Throttled {
            retry_after: retry_after.max(1),
        }),
    }
}

/// Ends an admitted attempt. A store failure here is logged, never answered: it leaves
/// the attempt counted, which is the safe side.
pub(crate) async fn settle(state: &AppState, attempts: &[Attempt], how: Settlement) {
    if let Err(e) = state.0.store.settle(attempts, how).await {
        tracing::warn!(error = %e, "settling a throttled attempt failed");
    }
}

/// A sign-in with every factor the account has: its password alone, or its password
/// and a second factor (`factors::second_step`, which builds it with
/// [`SignedIn::second_factor`]).
pub(crate) struct SignedIn {
    pub user: User,
    /// A credential for this client, when it was not a known device of the account.
    pub new_device: Option<DeviceToken>,
    /// The password, when the stored hash is due for a rehash ([`login_stands`]).
    rehash: Option<Password>,
    /// How it was authenticated (RFC 8176 values, space separated, and `idp:NAME`
    /// after an upstream provider: [`amr_values`], [`idp_of`]): the `amr` of its
    /// tokens.
    pub amr: Cow<'static, str>,
    /// What the last step has still to write, with the grant.
    deferred: Deferred,
}

/// The writes of a right password or second factor that wait for the grant, so that a
/// refresh family is started with them in one transaction
/// (`portcullis_store::LoginStore::finish_family_login`): the throttle's settlement as
/// a success and the new device's row. A grant that starts otherwise (a cookie
/// session) writes them first, on their own ([`write_deferred`]). Never written (the
/// step's error answered first): the attempt stays counted, the safe side, and the
/// device credential, never handed out, was never stored.
#[derive(Default)]
pub(crate) struct Deferred {
    pub settle: Vec<Attempt>,
    pub device: Option<TokenHash>,
}

impl SignedIn {
    /// Both steps done: `user` as the second step read it, with what that step has
    /// still to write.
    pub(crate) fn second_factor(
        user: User,
        new_device: Option<DeviceToken>,
        amr: impl Into<Cow<'static, str>>,
        deferred: Deferred,
    ) -> SignedIn {
        SignedIn {
            user,
            new_device,
            rehash: None,
            amr: amr.into(),
            deferred,
        }
    }

    /// What the last step has still to write; nothing after the first call.
    pub(crate) fn take_deferred(&mut self) -> Deferred {
        std::mem::take(&mut self.deferred)
    }
}

/// Writes what the last step of `signed_in` deferred, on its own: for a grant that is
/// not a refresh family.
pub(crate) async fn write_deferred(
    state: &AppState,
    signed_in: &mut SignedIn,
) -> Result<(), ApiError> {
    let Deferred {
        settle: attempts,
        device,
    } = signed_in.take_deferred();
    settle(state, &attempts, Settlement::Success).await;
    if let Some(hash) = device {
        state
            .0
            .store
            .add_device(&hash, &signed_in.user.id, state.now())
            .await?;
    }
    Ok(())
}

/// A new device credential, not stored yet: its hash goes with the grant
/// ([`Deferred`]).
pub(crate) fn mint_device() -> Result<(DeviceToken, TokenHash), ApiError> {
    let token = device::mint()?;
    let hash = TokenHash(token.sha256());
    Ok((token, hash))
}

/// [`mint_device`] for a client that was not a known device of the account; nothing
/// for one that was.
pub(crate) fn unless_known(
    known: bool,
) -> Result<(Option<DeviceToken>, Option<TokenHash>), ApiError> {
    if known {
        return Ok((None, None));
    }
    let (token, hash) = mint_device()?;
    Ok((Some(token), Some(hash)))
}

/// The `amr` a grant stores after an upstream provider's sign-in: `fed` (the value
/// Microsoft's and others' tokens use for a federated sign-in; RFC 8176 registers
/// none) and the provider as `idp:NAME`, which [`amr_values`] leaves out and
/// [`idp_of`] reads.
pub(crate) fn federated_amr(provider: &str) -> String {
    format!("{AMR_FEDERATED} {IDP_PREFIX}{provider}")
}

/// `amr` of a sign-in through an upstream provider.
pub(crate) const AMR_FEDERATED: &str = "fed";
/// How a stored `amr` names the upstream provider of its sign-in.
const IDP_PREFIX: &str = "idp:";

/// The `amr` values of a stored `amr` (RFC 8176 and `fed`): without the provider.
pub(crate) fn amr_values(stored: &str) -> impl Iterator<Item = &str> {
    stored
        .split_ascii_whitespace()
        .filter(|v| !v.starts_with(IDP_PREFIX))
}

/// The upstream provider a stored `amr` names, if its sign-in went through one.
pub(crate) fn idp_of(stored: &str) -> Option<&str> {
    stored
        .split_ascii_whitespace()
        .find_map(|v| v.strip_prefix(IDP_PREFIX))
}

/// What a right password leads to.
pub(crate) enum Step {
    /// Signed in: the account has no second factor.
    Done(SignedIn),
    /// The account has a second factor: `factors::password_step` makes the challenge.
    /// No grant, session or device credential yet.
    SecondFactor(PasswordRight),
}

/// A right password for an account with a second factor.
pub(crate) struct PasswordRight {
    pub user: User,
    /// The known device the password step was admitted as, if any: the second step
    /// spends the same lane.
    pub device: Option<TokenHash>,
}

/// `amr` of a password alone (RFC 8176).
pub(crate) const AMR_PASSWORD: &str = "pwd";
/// `amr` of a password and a one-time code (an authenticator app's, or a recovery
/// code: a single-use secret, NIST's "look-up secret").
pub(crate) const AMR_PASSWORD_OTP: &str = "pwd otp mfa";

/// The `acr` of a sign-in by its `amr`: `aal2` (NIST SP 800-63B) when two factors were
/// used, `aal1` otherwise.
pub(crate) fn acr_of(amr: &str) -> &'static str {
    if amr.split_ascii_whitespace().any(|v| v == "mfa") {
        "aal2"
    } else {
        "aal1"
    }
}

/// A password login, admitted by the throttle before the password is hashed, with one
/// full verify for unknown and disabled accounts and a rehash in the background when
/// the parameters changed. Shared by token login, session login and the login page.
pub(crate) async fn check_password(
    state: &AppState,
    client: IpAddr,
    device: Option<DeviceToken>,
    username_text: &str,
    password_text: String,
) -> Result<Step, ApiError> {
    let mut refused = None;
    let checked = check_password_once(
        state,
        client,
        device,
        username_text,
        password_text,
        &mut refused,
    )
    .await;
    let outcome = match &checked {
        Ok(_) => "success",
        Err(ApiError::InvalidCredentials) => "invalid_credentials",
        Err(ApiError::Throttled { .. }) => "throttled",
        Err(ApiError::Busy) => "busy",
        Err(ApiError::InvalidRequest(_)) => "invalid_request",
        Err(_) => "error",
    };
    crate::prometheus::login(outcome);
    // A refusal for load (no hashing slot) judged nothing, and recording each one
    // would add a write per request to an overloaded server.
    if checked.is_err() && outcome != "busy" {
        // Why, as the server knows it (the answer says less): the account when one
        // matched, never the name or password typed.
        let (subject, reason) = match refused {
            Some(found) => found,
            None => (None, outcome),
        };
        let mut entry =
            crate::audit::Entry::new(crate::audit::Kind::LoginFailed, crate::audit::Actor::Nobody)
                .with("reason", reason)
                .with("step", "password");
        if let Some(id) = &subject {
            entry = entry.on(id);
        }
        crate::audit::record(state, entry).await;
    }
    checked
}

async fn check_password_once(
    state: &AppState,
    client: IpAddr,
    device: Option<DeviceToken>,
    username_text: &str,
    password_text: String,
    refused: &mut Option<(Option<String>, &'static str)>,
) -> Result<Step, ApiError> {
    let s = &state.0;
    // An unusable name cannot match any account: answer like a wrong password.
    let username = normalize_username(username_text).ok();
    let password = password(password_text)?;
    let account_key = username
        .clone()
        .unwrap_or_else(|| username_text.chars().take(64).collect());
    let user = match &username {
        Some(name) => s.store.user_by_username(name).await?,
        None => None,
    };
    // A device credential counts only for the account it was issued to. It is looked
    // up whether or not the account exists, so the lookup tells nothing about that.
    let known_device = match &device {
        Some(token) => device::owner(state, token)
            .await?
            .filter(|owner| user.as_ref().is_some_and(|u| u.id == *owner))
            .map(|_| TokenHash(token.sha256())),
        None => None,
    };
    let attempts = s
        .throttle
        .login(&account_key, client, known_device.as_ref());
    let known = user.as_ref().map(|u| u.id.clone());
    if let Err(e) = admit(state, &attempts).await {
        *refused = Some((known, "throttled"));
        return Err(e);
    }
    let disabled = user.as_ref().is_some_and(|u| u.disabled);
    // An account made through an upstream provider has no password: it is checked
    // like an unknown one (the same full verify, so its timing tells nothing).
    let passwordless = user.as_ref().is_some_and(|u| !u.has_password());
    let usable = user.filter(|u| !u.disabled && u.has_password());
    // Unknown, disabled and wrong-password logins all run one full verify.
    let verification = match s
        .hasher
        .verify(
            password_clone(&password)?,
            usable.as_ref().map(|u| u.password_hash.as_str()),
        )
        .await
    {
        Ok(verification) => verification,
        Err(e) => {
            settle(state, &attempts, Settlement::NotChecked).await;
            return Err(hashing(e));
        }
    };
    let (Verification::Match { needs_rehash }, Some(user)) = (verification, usable) else {
        // Counted when admitted: nothing more to write.
        tracing::info!(peer = %client, known_device = known_device.is_some(), "login refused");
        *refused = Some(match known {
            None => (None, "unknown_account"),
            Some(id) if disabled => (Some(id), "disabled"),
            Some(id) if passwordless => (Some(id), "no_password"),
            Some(id) => (Some(id), "wrong_password"),
        });
        return Err(ApiError::InvalidCredentials);
    };
    if user.has_second_factor() {
        // No grant follows this step: settled now (the second step is admitted and
        // settled on its own).
        settle(state, &attempts, Settlement::Success).await;
        // The password is right, so a rehash may be stored now; it is, before the
        // challenge, so that the second step finds the hash it will compare with.
        if needs_rehash {
            rehash(state, user.id.clone(), user.password_hash.clone(), password).await;
        }
        // A known device spends its own lane in the second step too; it skips nothing.
        return Ok(Step::SecondFactor(PasswordRight {
            user,
            device: known_device,
        }));
    }
    // The settlement and the new device's row are written with the grant.
    let (new_device, device_hash) = unless_known(known_device.is_some())?;
    Ok(Step::Done(SignedIn {
        user,
        new_device,
        rehash: needs_rehash.then_some(password),
        amr: AMR_PASSWORD.into(),
        deferred: Deferred {
            settle: attempts,
            device: device_hash,
        },
    }))
}

/// After a login wrote its cookie session: false when it was overtaken
/// ([`overtaken`]; the caller ends the session and refuses the login). A refresh
/// family decides this inside the transaction that starts it instead
/// (`LoginStore::finish_family_login`, then [`rehash_later`]).
/// Otherwise, when the stored hash is due for one (other parameters, or a hash
/// imported from another system), rehashes the password in the background and stores
/// it only over the hash this login checked, so that a reset or a change made
/// meanwhile is never undone by the old password's rehash.
pub(crate) async fn login_stands(
    state: &AppState,
    signed_in: &mut SignedIn,
) -> Result<bool, ApiError> {
    if overtaken(state, &signed_in.user).await? {
        return Ok(false);
    }
    rehash_later(state, signed_in);
    Ok(true)
}

/// When the stored hash is due for one, rehashes the password in the background
/// ([`login_stands`]); for a login that stands.
pub(crate) fn rehash_later(state: &AppState, signed_in: &mut SignedIn) {
    if let Some(password) = signed_in.rehash.take() {
        let state = state.clone();
        let (user_id, checked) = (
            signed_in.user.id.clone(),
            signed_in.user.password_hash.clone(),
        );
        tokio::spawn(async move { rehash(&state, user_id, checked, password).await });
    }
}

/// Rehashes a right password with the current parameters and stores it over
/// `checked`, the hash the login verified, only if that is still the stored one.
async fn rehash(state: &AppState, user_id: String, checked: String, password: Password) {
    let stored = match state.0.hasher.hash(password).await {
        Ok(hash) => {
            state
                .0
                .store
                .set_password_hash(&user_id, &checked, &hash)
                .await
        }
        Err(e) => return tracing::warn!(error = %e, "could not rehash the password"),
    };
    match stored {
        Ok(true) => tracing::info!(user = %user_id, "password rehashed"),
        Ok(false) => {
            tracing::info!(user = %user_id, "password changed before its rehash was stored: rehash dropped")
        }
        Err(e) => tracing::warn!(error = %e, "could not store the rehashed password"),
    }
}

/// Whether a login that checked `before`'s password was overtaken, before it started
/// its family or session, by a password reset or change, a logout everywhere, or the
/// account's disabling: the account's password or "not before" is no longer the one
/// read. Such a login must not outlive what overtook it (a reset racing a login with
/// the old password). Read after the grant is written, so that whatever commits
/// later ends the grant itself.
async fn overtaken(state: &AppState, before: &User) -> Result<bool, ApiError> {
    Ok(match state.0.store.user_by_id(&before.id).await? {
        Some(now) => {
            now.disabled
                || now.not_before != before.not_before
                || now.password_hash != before.password_hash
        }
        None => true,
    })
}

/// `Password` is not `Clone` (it is a secret); a rehash needs it once more.
fn password_clone(p: &Password) -> Result<Password, ApiError> {
    Password::new(p.expose().to_owned()).map_err(hashing)
}

/// The scope of the admin API, which the last enabled account that has it keeps.
pub(crate) const ADMIN_SCOPE: &str = "admin";

/// Erases an account (an admin's `DELETE /admin/users/{id}`, the person's own `DELETE
/// /auth/me`): one transaction in the store ends its sessions, families and tokens and
/// removes its row with everything that references it, its mail, and the addresses in
/// its audit records; applied here before the answer. The last enabled account with
/// `admin` is refused (409), whoever asks.
pub(crate) async fn erase(
    state: &AppState,
    user_id: &str,
    actor: crate::audit::Actor,
) -> Result<(), ApiError> {
    let now = state.now();
    match state.0.store.delete_user(user_id, ADMIN_SCOPE, now).await? {
        portcullis_store::Deleted::NotFound => Err(ApiError::NotFound("no such account")),
        portcullis_store::Deleted::LastWith => Err(ApiError::Conflict(
            "this is the last enabled account with admin: give admin to another first",
        )),
        portcullis_store::Deleted::Done(ended) => {
            apply_ended(state, user_id, &ended, now);
            // A person's own erasure is recorded without the address and user agent
            // it came from: they would name the person the erasure removed.
            let own = actor == crate::audit::Actor::User(user_id.to_owned());
            let mut entry = crate::audit::Entry::new(crate::audit::Kind::UserDeleted, actor)
                .on(user_id)
                .with("via", if own { "self" } else { "admin" });
            if own {
                entry = entry.without_origin();
            }
            crate::audit::record(state, entry).await;
            Ok(())
        }
    }
}

/// Logout everywhere: one transaction in the store (with its events), applied here
/// before the answer; other instances follow the event log.
pub(crate) async fn end_everything(
    state: &AppState,
    user_id: &str,
    actor: crate::audit::Actor,
) -> Result<(), ApiError> {
    let now = state.now();
    let ended = state.0.store.revoke_user(user_id, now).await?;
    apply_ended(state, user_id, &ended, now);
    tracing::info!(user = %user_id, sessions = ended.len(), "logout everywhere");
    crate::audit::record(
        state,
        crate::audit::Entry::new(crate::audit::Kind::LogoutEverywhere, actor)
            .on(user_id)
            .with("ended", ended.len()),
    )
    .await;
    Ok(())
}

/// After the store ended every grant of `user_id` at `now` (a logout everywhere, an
/// erasure, a reset of its factors): refused here before the answer (other instances
/// follow the log): every family and session ended, and every token of the person's
/// issued up to now, this second included.
pub(crate) fn apply_ended(state: &AppState, user_id: &str, ended: &[String], now: i64) {
    for id in ended {
        crate::events::apply_own(state, EventKind::FamilyRevoked, id, now);
    }
    crate::events::apply_own(
        state,
        EventKind::UserNotBefore,
        user_id,
        portcullis_store::not_before_after(now),
    );
    state.0.session_cache.forget_user(user_id);
}

/// The `iat` of a token for `sub`: now, once the clock has reached the subject's
/// "not before".
///
/// A revocation in this very second writes "not before" the next one
/// (`portcullis_store::not_before_after`), so that the tokens of this second issued
/// before it are refused. A token issued after it in the same second must therefore
/// wait for the next second (at most one), or it would be refused too. It waits
/// rather than being stamped ahead: a stamp ahead could be overtaken by a second
/// revocation in that same second, which would then not reach it. `known` is the "not
/// before" the store read in the transaction that decided the grant (exact even before
/// this instance hears of a revocation made elsewhere); this instance's own list
/// covers the rest. A clock that does not move on within a few seconds (a test's
/// frozen clock) gets 503, never a token that would be refused.
pub(crate) async fn issued_at(state: &AppState, sub: &str, known: i64) -> Result<i64, ApiError> {
    let held = state.0.revocations.not_before(sub).unwrap_or(0);
    let not_before = known.max(held);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let now = state.now();
        if now >= not_before {
            return Ok(now);
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(user = %sub, not_before, now, "the clock did not reach the account's \"not before\"");
            return Err(ApiError::Busy);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// What an access token is minted for: a session or refresh family `sid`, its scope,
/// and how its sign-in was authenticated (`amr`, RFC 8176 values, space separated).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grant<'a> {
    pub sid: &'a str,
    pub scope: &'a str,
    pub amr: &'a str,
}

/// The scope a grant signed in as `amr` may use: `scope` without the scopes of
/// `mfa_required_for_scopes` when the sign-in had one factor. Applied wherever a
/// person's scope is handed out or read (tokens minted, a session's scope), never
/// stored: a scope change later gives a family the account's whole scope, and this
/// still withholds what its sign-in did not earn.
pub(crate) fn granted_scope<'a>(
    config: &crate::config::Config,
    scope: &'a str,
    amr: &str,
) -> std::borrow::Cow<'a, str> {
    let withheld = &config.mfa_required_for_scopes;
    if withheld.is_empty() || amr.split_ascii_whitespace().any(|m| m == "mfa") {
        return scope.into();
    }
    scope
        .split_ascii_whitespace()
        .filter(|s| !withheld.iter().any(|w| w == s))
        .collect::<Vec<_>>()
        .join(" ")
        .into()
}

/// The scopes a person's identity may use here, space-separated: a token's as it says
/// (minted with [`granted_scope`] applied), a cookie session's through
/// [`granted_scope`]. Borrowed from the session's record when nothing is withheld and
/// it is already in that form (the common case: a cookie request's `/auth/me` copies
/// nothing).
pub(crate) fn person_scope<'a>(
    config: &crate::config::Config,
    identity: &'a portcullis::strategy::Identity,
) -> std::borrow::Cow<'a, str> {
    let granted = match identity.session() {
        Some(session) => {
            let record = session.record();
            granted_scope(config, &record.scope, &record.amr)
        }
        None => return identity.scopes().collect::<Vec<_>>().join(" ").into(),
    };
    let canonical = !granted.starts_with(' ')
        && !granted.ends_with(' ')
        && !granted.contains("  ")
        && granted
            .bytes()
            .all(|b| b == b' ' || !b.is_ascii_whitespace());
    if canonical {
        granted
    } else {
        granted
            .split_ascii_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .into()
    }
}

/// Adds `amr` (a JSON array) and the `acr` it makes ([`acr_of`]) to a token of a
/// person's sign-in; nothing when the grant does not say (`amr` empty).
pub(crate) fn amr_claims(builder: TokenBuilder, amr: &str) -> TokenBuilder {
    if amr.trim().is_empty() {
        return builder;
    }
    let values: Vec<&str> = amr_values(amr).collect();
    let builder = match idp_of(amr) {
        Some(idp) => builder.claim("idp", idp),
        None => builder,
    };
    builder.claim("amr", values).claim("acr", acr_of(amr))
}

/// Signs an access token for `user` in `grant`, issued at `iat` (from [`issued_at`]).
pub(crate) fn mint_access_token(
    state: &AppState,
    user: &User,
    grant: Grant<'_>,
    ttl: std::time::Duration,
    iat: i64,
) -> Result<String, ApiError> {
    let s = &state.0;
    let keys = s.keys.current();
    let mut builder = TokenBuilder::access_token(&s.config.issuer, &s.config.audience)
        .subject(&user.id)
        .session_id(grant.sid)
        .scope(grant.scope)
        .claim("preferred_username", user.username.as_str());
    builder = amr_claims(builder, grant.amr);
    // Our own first-party token, as the username is: `/auth/me` answers from it.
    if let Some(email) = &user.email {
        builder = builder
            .claim("email", email.as_str())
            .claim("email_verified", user.email_verified);
    }
    builder
        .issued_at(iat)
        .expires_in(ttl)
        .sign_at(&keys.active, s.clock.as_ref())
        .map_err(|e| ApiError::Unexpected(e.into()))
}
