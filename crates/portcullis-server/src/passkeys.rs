//! Passkeys (WebAuthn): registering them on an account, and signing in with them,
//! passwordless or as the second step after a password.
//!
//! Every check of a ceremony is webauthn-rs's (the challenge, the origin, the RP id
//! hash, user verification, the signature over the authenticator data, the counter):
//! CBOR, COSE keys and attestation formats are not code we write. We keep what it
//! needs between a ceremony's start and finish server-side, in the store (so any
//! instance may finish what another started), for [`CEREMONY_TTL`] seconds and one use;
//! the browser gets an opaque `ceremony` token naming it.
//!
//! The relying party is the issuer: its host is the RP id and its origin the only
//! origin accepted. Passkeys are registered with user verification required and as
//! discoverable credentials, so that one signs in without a username: a passkey with
//! its PIN or biometric is two factors by itself (`amr` `hwk`/`swk`, `user`, `mfa`;
//! NIST SP 800-63B AAL2). As the second step after a password it is `pwd`, `hwk` or
//! `swk`, and `mfa`. `swk` is a passkey its authenticator may copy to other devices
//! (backup eligible: a synced passkey); `hwk`, one bound to its device.

use portcullis::opaque::Opaque;
use portcullis_store::{
    Ceremony, CeremonyKind, Completion, NewCeremony, NewPasskey, SecondFactor, TokenHash, User,
};
use std::net::IpAddr;
use webauthn_rs::prelude::{
    AuthenticationResult, CreationChallengeResponse, CredentialID, DiscoverableAuthentication,
    DiscoverableKey, Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, RequestChallengeResponse, Url, Uuid, Webauthn, WebauthnBuilder,
};

use crate::accounts::SignedIn;
use crate::error::ApiError;
use crate::state::AppState;

/// Seconds between a ceremony's start and its finish, at most.
pub(crate) const CEREMONY_TTL: i64 = 300;
/// Passkeys one account may have.
pub(crate) const MAX_PASSKEYS: usize = 10;
/// The longest label.
const MAX_LABEL: usize = 64;

/// The relying party, from the issuer: its host is the RP id, its origin the only one.
pub fn relying_party(issuer: &str) -> anyhow::Result<Webauthn> {
    let origin = Url::parse(issuer)?;
    // Asked first, not left to the builder: it logs an error of its own for an
    // address, which the default issuer (`http://127.0.0.1:8080`) would print at
    // every start.
    let host = match origin.host() {
        Some(url::Host::Domain(host)) => host.to_owned(),
        Some(_) => anyhow::bail!("the issuer's host is an address, not a domain name"),
        None => anyhow::bail!("the issuer {issuer} has no host"),
    };
    Ok(WebauthnBuilder::new(&host, &origin)?
        .rp_name(&host)
        .build()?)
}

/// The user handle a passkey stores for an account: 16 bytes derived from its id, so
/// nothing about the account but this is kept on the authenticator.
fn user_handle(user_id: &str) -> Uuid {
    let mut input = b"portcullis webauthn user\0".to_vec();
    input.extend_from_slice(user_id.as_bytes());
    let digest = portcullis::opaque::sha256(&input);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(bytes)
}

fn credential_key(id: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
}

fn cred_key(id: &CredentialID) -> String {
    credential_key(id.as_ref())
}

fn webauthn(state: &AppState) -> Result<&Webauthn, ApiError> {
    state.0.webauthn.as_deref().ok_or(ApiError::NotFound(
        "passkeys need an issuer whose host is a domain name (localhost works), not an IP address",
    ))
}

fn refused(what: &'static str) -> impl FnOnce(webauthn_rs::prelude::WebauthnError) -> ApiError {
    move |e| {
        tracing::info!(error = %e, "passkey ceremony refused: {what}");
        ApiError::PasskeyRefused
    }
}

fn state_json<T: serde::Serialize>(state: &T) -> Result<String, ApiError> {
    serde_json::to_string(state).map_err(|e| ApiError::Unexpected(e.into()))
}

fn state_from<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ApiError> {
    serde_json::from_str(text).map_err(|e| ApiError::Unexpected(e.into()))
}

/// A ceremony started: the options for the browser, and the token naming it.
pub(crate) struct Started {
    pub options: serde_json::Value,
    pub ceremony: Opaque,
}

impl Started {
    pub(crate) fn json(&self) -> serde_json::Value {
        let mut body = self.options.clone();
        body["ceremony"] = self.ceremony.expose().into();
        body
    }
}

async fn keep(
    state: &AppState,
    kind: CeremonyKind,
    user_id: Option<&str>,
    challenge: Option<TokenHash>,
    state_text: String,
    options: serde_json::Value,
) -> Result<Started, ApiError> {
    let ceremony = Opaque::generate()?;
    state
        .0
        .store
        .create_ceremony(&NewCeremony {
            hash: TokenHash(ceremony.sha256()),
            kind,
            user_id: user_id.map(str::to_owned),
            challenge,
            state: state_text,
            expires_at: state.now() + CEREMONY_TTL,
        })
        .await?;
    Ok(Started { options, ceremony })
}

async fn take(state: &AppState, token: &str, kind: CeremonyKind) -> Result<Ceremony, ApiError> {
    let token = Opaque::parse(token).ok_or(ApiError::PasskeyRefused)?;
    state
        .0
        .store
        .take_ceremony(&TokenHash(token.sha256()), state.now())
        .await?
        .filter(|c| c.kind == kind)
        .ok_or(ApiError::PasskeyRefused)
}

/// `POST /auth/webauthn/register/start {password}`: the password again, then the
/// options for `navigator.credentials.create`.
pub(crate) async fn register_start(
    state: &AppState,
    client: IpAddr,
    user_id: &str,
    password: String,
) -> Result<Started, ApiError> {
    let user = crate::recovery::signed_in_user(state, user_id).await?;
    crate::recovery::confirm_password(state, client, &user, password).await?;
    let existing = state.0.store.passkeys_of(&user.id).await?;
    if existing.len() >= MAX_PASSKEYS {
        return Err(ApiError::Conflict(
            "an account keeps ten passkeys at most: remove one first",
        ));
    }
    let exclude: Vec<CredentialID> = existing
        .iter()
        .filter_map(|p| state_from::<Passkey>(&p.credential).ok())
        .map(|p| p.cred_id().clone())
        .collect();
    let (options, registration): (CreationChallengeResponse, PasskeyRegistration) =
        webauthn(state)?
            .start_passkey_registration(
                user_handle(&user.id),
                &user.username,
                &user.username,
                Some(exclude),
            )
            .map_err(|e| ApiError::Unexpected(e.into()))?;
    let mut options = serde_json::to_value(&options).map_err(|e| ApiError::Unexpected(e.into()))?;
    // A passkey one signs in with without a username: a discoverable credential.
    options["publicKey"]["authenticatorSelection"]["residentKey"] = "required".into();
    options["publicKey"]["authenticatorSelection"]["requireResidentKey"] = true.into();
    keep(
        state,
        CeremonyKind::Register,
        Some(&user.id),
        None,
        state_json(&registration)?,
        options,
    )
    .await
}

/// `POST /auth/webauthn/register/finish {ceremony, credential, label}`: the new
/// passkey, on the account that started the ceremony (and is the one asking).
pub(crate) async fn register_finish(
    state: &AppState,
    user_id: &str,
    ceremony: &str,
    credential: &RegisterPublicKeyCredential,
    label: &str,
) -> Result<Registered, ApiError> {
    let label = label.trim();
    if label.chars().count() > MAX_LABEL || label.chars().any(char::is_control) {
        return Err(ApiError::InvalidRequest(
            "label: at most 64 characters, none of them control characters".into(),
        ));
    }
    let label = if label.is_empty() { "Passkey" } else { label };
    let taken = take(state, ceremony, CeremonyKind::Register).await?;
    if taken.user_id.as_deref() != Some(user_id) {
        return Err(ApiError::PasskeyRefused);
    }
    let registration: PasskeyRegistration = state_from(&taken.state)?;
    let passkey = webauthn(state)?
        .finish_passkey_registration(credential, &registration)
        .map_err(refused("registration"))?;
    let id = cred_key(passkey.cred_id());
    let added = state
        .0
        .store
        .add_passkey(
            &NewPasskey {
                id: id.clone(),
                user_id: user_id.to_owned(),
                label: label.to_owned(),
                credential: state_json(&passkey)?,
            },
            MAX_PASSKEYS,
            state.now(),
        )
        .await?;
    if !added {
        return Err(ApiError::Conflict(
            "this passkey is registered already, or the account has ten",
        ));
    }
    tracing::info!(user = %user_id, passkey = %id, "passkey added");
    crate::audit::record(
        state,
        crate::audit::Entry::own(crate::audit::Kind::MfaEnrolled, user_id)
            .with("factor", "passkey")
            .with("passkey", id.as_str()),
    )
    .await;
    // An account's first factor comes with recovery codes, as an authenticator app's
    // does: without them, a lost passkey would leave only an operator's reset.
    let recovery_codes = match state.0.store.recovery_codes_left(user_id).await? {
        (0, None) => {
            let (codes, hashes) = crate::factors::new_recovery_codes(user_id)?;
            state
                .0
                .store
                .replace_recovery_codes(user_id, &hashes, state.now())
                .await?;
            Some(codes)
        }
        _ => None,
    };
    Ok(Registered {
        id,
        label: label.to_owned(),
        recovery_codes,
    })
}

/// A passkey just registered.
pub(crate) struct Registered {
    pub id: String,
    pub label: String,
    /// New recovery codes, when the passkey is the account's first second factor.
    pub recovery_codes: Option<Vec<String>>,
}

/// `POST /auth/webauthn/login/start`: with no `mfa_token`, a passwordless sign-in
/// (any discoverable passkey); with one, the second step of that password sign-in
/// (the account's passkeys only).
pub(crate) async fn login_start(
    state: &AppState,
    client: IpAddr,
    mfa_token: Option<&str>,
) -> Result<Started, ApiError> {
    webauthn(state)?;
    crate::accounts::admit(state, &state.0.throttle.ceremony(client)).await?;
    match mfa_token {
        None => {
            let (mut options, auth): (RequestChallengeResponse, DiscoverableAuthentication) =
                webauthn(state)?
                    .start_discoverable_authentication()
                    .map_err(|e| ApiError::Unexpected(e.into()))?;
            // A button, not an autofill field: the browser asks at once.
            options.mediation = None;
            let options =
                serde_json::to_value(&options).map_err(|e| ApiError::Unexpected(e.into()))?;
            keep(
                state,
                CeremonyKind::SignIn,
                None,
                None,
                state_json(&auth)?,
                options,
            )
            .await
        }
        Some(token) => {
            let token = Opaque::parse(token).ok_or(ApiError::InvalidMfaToken)?;
            let hash = TokenHash(token.sha256());
            let user_id = state
                .0
                .store
                .challenge_user(&hash, state.now())
                .await?
                .ok_or(ApiError::InvalidMfaToken)?;
            let passkeys: Vec<Passkey> = state
                .0
                .store
                .passkeys_of(&user_id)
                .await?
                .iter()
                .filter_map(|p| state_from(&p.credential).ok())
                .collect();
            if passkeys.is_empty() {
                return Err(ApiError::Conflict("this account has no passkey"));
            }
            let (options, auth): (RequestChallengeResponse, PasskeyAuthentication) =
                webauthn(state)?
                    .start_passkey_authentication(&passkeys)
                    .map_err(|e| ApiError::Unexpected(e.into()))?;
            let options =
                serde_json::to_value(&options).map_err(|e| ApiError::Unexpected(e.into()))?;
            keep(
                state,
                CeremonyKind::SecondStep,
                Some(&user_id),
                Some(hash),
                state_json(&auth)?,
                options,
            )
            .await
        }
    }
}

/// The `amr` of a passkey sign-in: its own two factors, or after a password.
fn amr(result: &AuthenticationResult, after_password: bool) -> &'static str {
    match (after_password, result.backup_eligible()) {
        (false, false) => "hwk user mfa",
        (false, true) => "swk user mfa",
        (true, false) => "pwd hwk mfa",
        (true, true) => "pwd swk mfa",
    }
}

/// `POST /auth/webauthn/login/finish {ceremony, credential}`: the assertion checked
/// against the passkey it names (on an enabled account), its counter stored; then the
/// account signed in, or the password step's challenge completed.
pub(crate) async fn login_finish(
    state: &AppState,
    client: IpAddr,
    ceremony: &str,
    credential: &PublicKeyCredential,
) -> Result<SignedIn, ApiError> {
    let token = Opaque::parse(ceremony).ok_or(ApiError::PasskeyRefused)?;
    let hash = TokenHash(token.sha256());
    let now = state.now();
    let taken = state
        .0
        .store
        .take_ceremony(&hash, now)
        .await?
        .ok_or(ApiError::PasskeyRefused)?;
    let named = credential_key(credential.get_credential_id());
    let stored = state
        .0
        .store
        .passkey(&named)
        .await?
        .ok_or(ApiError::PasskeyRefused)?;
    let mut passkey: Passkey = state_from(&stored.credential)?;
    let (result, after_password) = match taken.kind {
        CeremonyKind::SignIn => {
            let auth: DiscoverableAuthentication = state_from(&taken.state)?;
            let (handle, _) = webauthn(state)?
                .identify_discoverable_authentication(credential)
                .map_err(refused("no user handle"))?;
            if handle != user_handle(&stored.user_id) {
                return Err(ApiError::PasskeyRefused);
            }
            let result = webauthn(state)?
                .finish_discoverable_authentication(
                    credential,
                    auth,
                    &[DiscoverableKey::from(&passkey)],
                )
                .map_err(refused("sign-in"))?;
            (result, false)
        }
        CeremonyKind::SecondStep => {
            if taken.user_id.as_deref() != Some(stored.user_id.as_str()) {
                tracing::warn!(passkey = %named, "passkey ceremony refused: another account's passkey");
                return Err(ApiError::PasskeyRefused);
            }
            let auth: PasskeyAuthentication = state_from(&taken.state)?;
            let result = webauthn(state)?
                .finish_passkey_authentication(credential, &auth)
                .map_err(refused("second step"))?;
            (result, true)
        }
        CeremonyKind::Register => return Err(ApiError::PasskeyRefused),
    };
    if !result.user_verified() {
        return Err(ApiError::PasskeyRefused);
    }
    // Its counter and flags as this assertion left them, when they moved.
    let credential = match passkey.update_credential(&result) {
        Some(true) => state_json(&passkey)?,
        _ => stored.credential.clone(),
    };
    state
        .0
        .store
        .touch_passkey(&named, &credential, now)
        .await?;
    let mut amr: std::borrow::Cow<'static, str> = amr(&result, after_password).into();
    let user = if after_password {
        let challenge = taken.challenge.ok_or(ApiError::PasskeyRefused)?;
        let first = state
            .0
            .store
            .try_challenge(&challenge, crate::factors::ATTEMPTS_PER_CHALLENGE, now)
            .await?
            .ok_or(ApiError::InvalidMfaToken)?
            .first_step;
        // After an upstream provider's sign-in rather than a password: its `amr`.
        if let Some(rest) = amr.strip_prefix("pwd ")
            && first != crate::accounts::AMR_PASSWORD
        {
            amr = format!("{first} {rest}").into();
        }
        match state
            .0
            .store
            .complete_challenge(&challenge, SecondFactor::Passkey, now)
            .await?
        {
            Completion::Done(user) => user,
            _ => return Err(ApiError::InvalidMfaToken),
        }
    } else {
        enabled(state, &stored.user_id).await?
    };
    // A sign-in gives back the start it spent at this address (as a right password
    // does), so people behind one address do not run out; failures stay counted. The
    // settlement and the new device's row are written with the grant.
    let (new_device, device_hash) = crate::accounts::mint_device()?;
    let deferred = crate::accounts::Deferred {
        settle: state.0.throttle.ceremony(client),
        device: Some(device_hash),
    };
    tracing::info!(user = %user.id, passkey = %named, amr = %amr, "signed in with a passkey");
    crate::audit::record(
        state,
        crate::audit::Entry::own(crate::audit::Kind::MfaUsed, &user.id)
            .with("factor", "passkey")
            .with("passkey", named.as_str()),
    )
    .await;
    Ok(SignedIn::second_factor(
        user,
        Some(new_device),
        amr,
        deferred,
    ))
}

async fn enabled(state: &AppState, user_id: &str) -> Result<User, ApiError> {
    state
        .0
        .store
        .user_by_id(user_id)
        .await?
        .filter(|u| !u.disabled)
        .ok_or(ApiError::PasskeyRefused)
}

/// `DELETE /auth/webauthn/credentials/{id}`: the password again, then the passkey goes
/// (and the recovery codes, when no factor is left).
pub(crate) async fn remove(
    state: &AppState,
    client: IpAddr,
    user_id: &str,
    id: &str,
    password: String,
) -> Result<(), ApiError> {
    let user = crate::recovery::signed_in_user(state, user_id).await?;
    crate::recovery::confirm_password(state, client, &user, password).await?;
    if !state.0.store.remove_passkey(&user.id, id).await? {
        return Err(ApiError::NotFound("no such passkey of yours"));
    }
    tracing::warn!(user = %user.id, passkey = %id, "passkey removed");
    crate::audit::record(
        state,
        crate::audit::Entry::own(crate::audit::Kind::MfaRemoved, &user.id)
            .with("factor", "passkey")
            .with("passkey", id),
    )
    .await;
    Ok(())
}
