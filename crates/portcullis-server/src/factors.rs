//! Second factors, without HTTP: authenticator-app codes (RFC 6238 TOTP), recovery
//! codes, and the second step of a sign-in.
//!
//! A password that is right for an account with a second factor ends in a *challenge*,
//! not a grant: a random `mfa_token` (stored as its SHA-256) bound to the account and
//! to its "not before" at the password check, good for [`CHALLENGE_TTL`] seconds and
//! [`ATTEMPTS_PER_CHALLENGE`] codes. The second step spends one attempt of the
//! challenge (atomically, in the store) and one slot of the same throttle rule as
//! passwords (its own counters, `mfa:` + the account id), checks the code here, and
//! has the store spend the code and the challenge in one transaction under the
//! account's row. A password change, a reset, a logout everywhere or a disabling voids
//! the challenges made before it.
//!
//! TOTP: SHA-1, 6 digits, 30-second steps, the step before and after accepted (a
//! phone's clock is often off by some seconds). A code is accepted once per account:
//! the store keeps the last accepted step and accepts only a later one, with an update
//! that is its own check, so two instances cannot both accept one code. The secret is
//! sealed at rest with the key-encryption key, as the signing keys are, with the
//! account's id as authenticated data (a sealed secret moved to another row does not
//! open).
//!
//! Recovery codes: ten, 80 random bits each, shown once as `XXXX-XXXX-XXXX-XXXX`
//! (RFC 4648 base32), stored as the SHA-256 of the account id and the code, each
//! accepted once. 80 bits need no slow hash: no copy of the database makes guessing
//! one feasible.

use portcullis::opaque::Opaque;
use portcullis_store::{Challenge, Completion, NewChallenge, SecondFactor, TokenHash, User};
use std::net::IpAddr;
use totp_rs::{Algorithm, TOTP};
use zeroize::Zeroizing;

use crate::accounts::{AMR_PASSWORD_OTP, SignedIn, Step};
use crate::audit::{Actor, Entry, Kind};
use crate::error::ApiError;
use crate::state::AppState;
use crate::throttle::hex;

/// Seconds a challenge (an `mfa_token`) works.
pub(crate) const CHALLENGE_TTL: i64 = 300;
/// Codes one challenge may try; then sign in again.
pub(crate) const ATTEMPTS_PER_CHALLENGE: i64 = 5;
/// Recovery codes in a set.
pub(crate) const RECOVERY_CODES: usize = 10;
/// Wrong authenticator codes, since the last successful second step, at which codes
/// are refused, right or wrong (NIST SP 800-63B §5.2.2: no more than 100 consecutive
/// failures). A recovery code still signs in, and starts the count over.
pub(crate) const TOTP_FAILURE_LIMIT: i64 = 100;
/// RFC 6238 time step, seconds.
const STEP: i64 = 30;
const DIGITS: usize = 6;
/// Bytes of a new TOTP secret: 160 bits, RFC 4226's recommendation for HMAC-SHA-1.
const SECRET_BYTES: usize = 20;
/// Characters of a recovery code without its dashes: 16 base32 digits, 80 bits.
const RECOVERY_CHARS: usize = 16;
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// How a second step proves itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    Totp,
    RecoveryCode,
}

impl Method {
    pub(crate) fn parse(text: &str) -> Result<Method, ApiError> {
        match text {
            "totp" => Ok(Method::Totp),
            "recovery_code" => Ok(Method::RecoveryCode),
            "webauthn" => Err(ApiError::InvalidRequest(
                "method: a passkey's second step is POST /auth/webauthn/login/finish".into(),
            )),
            _ => Err(ApiError::InvalidRequest(
                "method: must be \"totp\" or \"recovery_code\"".into(),
            )),
        }
    }
}

/// The methods a challenge offers for `user`.
pub(crate) fn methods(user: &User) -> Vec<&'static str> {
    let mut methods: Vec<&'static str> = user
        .factors()
        .filter_map(|f| match f {
            "totp" => Some("totp"),
            "webauthn" => Some("webauthn"),
            _ => None,
        })
        .collect();
    methods.push("recovery_code");
    methods
}

/// A password step awaiting its second factor: the `mfa_token` to hand back once.
pub(crate) struct Pending {
    pub token: Opaque,
    pub methods: Vec<&'static str>,
}

impl Pending {
    /// The JSON answer of a password step that needs a second one.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "mfa_required": true,
            "mfa_token": self.token.expose(),
            "methods": self.methods,
            "expires_in": CHALLENGE_TTL,
        })
    }
}

/// What a password step leads to.
pub(crate) enum LoginStep {
    /// Signed in: the account has no second factor.
    Done(Box<SignedIn>),
    /// The account has a second factor: the challenge to answer.
    SecondFactor(Pending),
}

/// A password sign-in (`accounts::check_password`), then, for an account with a
/// second factor, its challenge: the one way every route signs a person in by password.
pub(crate) async fn password_step(
    state: &AppState,
    client: IpAddr,
    device: Option<crate::device::DeviceToken>,
    username: &str,
    password: String,
) -> Result<LoginStep, ApiError> {
    match crate::accounts::check_password(state, client, device, username, password).await? {
        Step::Done(signed_in) => Ok(LoginStep::Done(Box::new(signed_in))),
        Step::SecondFactor(right) => Ok(LoginStep::SecondFactor(
            challenge(
                state,
                &right.user,
                right.device.as_ref(),
                crate::accounts::AMR_PASSWORD,
            )
            .await?,
        )),
    }
}

/// Makes the challenge of a right password for an account with a second factor.
/// `device`: the known device the password step was admitted as, if any (the second
/// step is throttled in the same lane); `first_step`: the `amr` of the first step
/// (`pwd`, or an upstream provider's [`crate::accounts::federated_amr`]).
pub(crate) async fn challenge(
    state: &AppState,
    user: &User,
    device: Option<&TokenHash>,
    first_step: &str,
) -> Result<Pending, ApiError> {
    let token = Opaque::generate()?;
    let now = state.now();
    state
        .0
        .store
        .create_challenge(&NewChallenge {
            hash: TokenHash(token.sha256()),
            user_id: user.id.clone(),
            not_before: user.not_before,
            device: device.map(|d| hex(&d.0)),
            created_at: now,
            expires_at: now + CHALLENGE_TTL,
            first_step: first_step.to_owned(),
        })
        .await?;
    tracing::info!(user = %user.id, "password right: second factor asked for");
    Ok(Pending {
        token,
        methods: methods(user),
    })
}

/// The second step of a sign-in: `code` for `method` against the challenge that
/// `mfa_token` names. A right, unspent code spends itself and the challenge and signs
/// the account in (with a device credential when the password step's client was not a
/// known device yet).
pub(crate) async fn second_step(
    state: &AppState,
    client: IpAddr,
    mfa_token: &str,
    method: Method,
    code: &str,
) -> Result<SignedIn, ApiError> {
    let mut account = None;
    let done = second_step_once(state, client, mfa_token, method, code, &mut account).await;
    let factor = match method {
        Method::Totp => "totp",
        Method::RecoveryCode => "recovery_code",
    };
    let entry = match (&done, account) {
        (Ok(signed_in), _) => Some(Entry::own(Kind::MfaUsed, &signed_in.user.id)),
        // Known account, wrong code (or throttled, or locked): the trail says which.
        (Err(e), Some(user_id)) => Some(
            Entry::new(Kind::MfaFailed, Actor::Nobody)
                .on(&user_id)
                .with(
                    "reason",
                    match e {
                        ApiError::InvalidCode => "wrong_code",
                        ApiError::FactorLocked => "locked",
                        ApiError::Throttled { .. } => "throttled",
                        ApiError::InvalidMfaToken => "invalid_mfa_token",
                        _ => "error",
                    },
                ),
        ),
        // An unknown or spent mfa_token: nobody's.
        (Err(_), None) => None,
    };
    if let Some(entry) = entry {
        crate::audit::record(state, entry.with("factor", factor)).await;
    }
    done
}

async fn second_step_once(
    state: &AppState,
    client: IpAddr,
    mfa_token: &str,
    method: Method,
    code: &str,
    account: &mut Option<String>,
) -> Result<SignedIn, ApiError> {
    let s = &state.0;
    let token = Opaque::parse(mfa_token).ok_or(ApiError::InvalidMfaToken)?;
    let hash = TokenHash(token.sha256());
    let now = state.now();
    let challenge: Challenge = s
        .store
        .try_challenge(&hash, ATTEMPTS_PER_CHALLENGE, now)
        .await?
        .ok_or(ApiError::InvalidMfaToken)?;
    *account = Some(challenge.user_id.clone());
    let device = challenge.device.as_deref().and_then(unhex);
    let attempts = s.throttle.login(
        &format!("mfa:{}", challenge.user_id),
        client,
        device.as_ref(),
    );
    crate::accounts::admit(state, &attempts).await?;
    let recovery_hash;
    let factor = match method {
        Method::Totp => {
            let Some(step) = totp_step(state, &challenge.user_id, code, now).await? else {
                return Err(wrong_code(state, &challenge).await?);
            };
            SecondFactor::Totp {
                step,
                failure_limit: TOTP_FAILURE_LIMIT,
            }
        }
        Method::RecoveryCode => {
            let Some(normalized) = normalize_recovery_code(code) else {
                tracing::info!(user = %challenge.user_id, attempt = challenge.attempts, "second step: malformed recovery code");
                return Err(ApiError::InvalidCode);
            };
            recovery_hash = recovery_code_hash(&challenge.user_id, &normalized);
            SecondFactor::RecoveryCode(&recovery_hash)
        }
    };
    let user = match s.store.complete_challenge(&hash, factor, now).await? {
        Completion::Done(user) => user,
        Completion::Refused if method == Method::Totp => {
            tracing::info!(user = %challenge.user_id, "second step: code already used");
            return Err(wrong_code(state, &challenge).await?);
        }
        Completion::Refused => {
            tracing::info!(user = %challenge.user_id, "second step: unknown or used recovery code");
            return Err(ApiError::InvalidCode);
        }
        Completion::Locked => {
            tracing::warn!(user = %challenge.user_id, "second step: authenticator codes locked");
            return Err(ApiError::FactorLocked);
        }
        Completion::Invalid => return Err(ApiError::InvalidMfaToken),
    };
    if method == Method::RecoveryCode {
        tracing::warn!(user = %user.id, "recovery code used");
    }
    // The settlement and the new device's row are written with the grant.
    let (new_device, device_hash) = crate::accounts::unless_known(device.is_some())?;
    let amr = match challenge.first_step.as_str() {
        crate::accounts::AMR_PASSWORD => AMR_PASSWORD_OTP.into(),
        first => format!("{first} otp mfa"),
    };
    let deferred = crate::accounts::Deferred {
        settle: attempts,
        device: device_hash,
    };
    Ok(SignedIn::second_factor(user, new_device, amr, deferred))
}

/// Counts a wrong (or replayed) authenticator code; the answer: `invalid_code`, or
/// `second_factor_locked` once the count reaches [`TOTP_FAILURE_LIMIT`].
async fn wrong_code(state: &AppState, challenge: &Challenge) -> Result<ApiError, ApiError> {
    let failures = state
        .0
        .store
        .count_factor_failure(&challenge.user_id)
        .await?;
    tracing::info!(user = %challenge.user_id, attempt = challenge.attempts, failures, "second step: wrong code");
    Ok(if failures >= TOTP_FAILURE_LIMIT {
        ApiError::FactorLocked
    } else {
        ApiError::InvalidCode
    })
}

/// The time step a TOTP code matches for the account's confirmed secret, within one
/// step of now; `None` for a wrong code, or no confirmed secret.
async fn totp_step(
    state: &AppState,
    user_id: &str,
    code: &str,
    now: i64,
) -> Result<Option<i64>, ApiError> {
    let Some(stored) = state.0.store.totp_of(user_id).await? else {
        return Ok(None);
    };
    if stored.confirmed_at.is_none() {
        return Ok(None);
    }
    let secret = open_secret(state, user_id, &stored.sealed_secret)?;
    Ok(matching_step(&totp(secret.to_vec(), "")?, code, now))
}

/// The step within one of `now`'s whose code `code` is, if any: each candidate is
/// compared in constant time (`TOTP::check` on that step's time).
pub(crate) fn matching_step(totp: &TOTP, code: &str, now: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = now.div_euclid(STEP);
    (current - 1..=current + 1)
        .find(|step| u64::try_from(step * STEP).is_ok_and(|t| totp.check(code, t)))
}

/// A TOTP generator for a secret (`account` labels its `otpauth://` URI).
fn totp(secret: Vec<u8>, account: &str) -> Result<TOTP, ApiError> {
    TOTP::new(
        Algorithm::SHA1,
        DIGITS,
        0,
        STEP as u64,
        secret,
        None,
        account.replace(':', "_"),
    )
    .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("TOTP: {e}")))
}

/// A new enrolment's secret and what a person scans.
pub(crate) struct Enrolment {
    /// Base32, for typing into an app.
    pub secret: Zeroizing<String>,
    /// The `otpauth://totp/…` URI.
    pub uri: Zeroizing<String>,
}

impl Enrolment {
    /// The URI as a QR code, an SVG document.
    pub(crate) fn qr_svg(&self) -> Result<String, ApiError> {
        let code = qrcode::QrCode::new(self.uri.as_bytes())
            .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("QR code: {e}")))?;
        Ok(code
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .build())
    }
}

/// Starts (or restarts) the enrolment of an authenticator app: a new secret, sealed
/// and stored unconfirmed. 409 when one is confirmed already.
pub(crate) async fn begin_totp(state: &AppState, user: &User) -> Result<Enrolment, ApiError> {
    let mut bytes = Zeroizing::new(vec![0u8; SECRET_BYTES]);
    aws_lc_rs::rand::fill(bytes.as_mut_slice())
        .map_err(|_| ApiError::Unexpected(anyhow::anyhow!("no randomness")))?;
    let mut generator = totp(bytes.to_vec(), &user.username)?;
    generator.issuer = Some(issuer_label(state));
    let secret = Zeroizing::new(generator.get_secret_base32());
    let uri = Zeroizing::new(generator.get_url());
    let sealed = seal_secret(state, &user.id, &bytes)?;
    if !state
        .0
        .store
        .begin_totp(&user.id, &sealed, state.now())
        .await?
    {
        return Err(ApiError::Conflict(
            "an authenticator app is already set up: remove it first",
        ));
    }
    tracing::info!(user = %user.id, "authenticator enrolment started");
    Ok(Enrolment { secret, uri })
}

/// Confirms a pending enrolment with a code from the app; the new recovery codes.
pub(crate) async fn confirm_totp(
    state: &AppState,
    user_id: &str,
    code: &str,
) -> Result<Vec<String>, ApiError> {
    let now = state.now();
    let stored = state
        .0
        .store
        .totp_of(user_id)
        .await?
        .filter(|t| t.confirmed_at.is_none())
        .ok_or(ApiError::Conflict(
            "no authenticator app is waiting to be confirmed: start with POST /auth/mfa/totp",
        ))?;
    let secret = open_secret(state, user_id, &stored.sealed_secret)?;
    let step =
        matching_step(&totp(secret.to_vec(), "")?, code, now).ok_or(ApiError::InvalidCode)?;
    let (codes, hashes) = new_recovery_codes(user_id)?;
    if !state
        .0
        .store
        .confirm_totp(user_id, step, &hashes, now)
        .await?
    {
        // Confirmed meanwhile (another tab), or this code's step was used.
        return Err(ApiError::InvalidCode);
    }
    tracing::info!(user = %user_id, "authenticator app confirmed");
    crate::audit::record(
        state,
        Entry::own(Kind::MfaEnrolled, user_id).with("factor", "totp"),
    )
    .await;
    Ok(codes)
}

/// A new set of recovery codes, and their hashes.
pub(crate) fn new_recovery_codes(user_id: &str) -> Result<(Vec<String>, Vec<TokenHash>), ApiError> {
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    let mut hashes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let mut bytes = Zeroizing::new([0u8; RECOVERY_CHARS]);
        aws_lc_rs::rand::fill(bytes.as_mut_slice())
            .map_err(|_| ApiError::Unexpected(anyhow::anyhow!("no randomness")))?;
        // 16 uniform base32 digits (5 bits of each random byte: 80 bits).
        let plain: String = bytes
            .iter()
            .map(|b| BASE32[usize::from(b & 31)] as char)
            .collect();
        hashes.push(recovery_code_hash(user_id, &plain));
        codes.push(
            plain
                .as_bytes()
                .chunks(4)
                .map(|c| std::str::from_utf8(c).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("-"),
        );
    }
    Ok((codes, hashes))
}

/// A recovery code as typed, to its 16 base32 digits: case, dashes and spaces do not
/// matter; anything else makes it no code.
pub(crate) fn normalize_recovery_code(text: &str) -> Option<String> {
    let plain: String = text
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (plain.len() == RECOVERY_CHARS && plain.bytes().all(|b| BASE32.contains(&b))).then_some(plain)
}

/// What is stored of a recovery code: SHA-256 over a label, the account id and the
/// code, so a code is no other account's and a table of hashes is no list of codes.
pub(crate) fn recovery_code_hash(user_id: &str, normalized: &str) -> TokenHash {
    let mut input = Vec::with_capacity(32 + user_id.len() + normalized.len());
    input.extend_from_slice(b"portcullis recovery code\0");
    input.extend_from_slice(user_id.as_bytes());
    input.push(0);
    input.extend_from_slice(normalized.as_bytes());
    TokenHash(portcullis::opaque::sha256(&input))
}

/// The issuer's host, as authenticator apps show it (`otpauth` allows no colon).
fn issuer_label(state: &AppState) -> String {
    url::Url::parse(&state.0.config.issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "portcullis".into())
}

/// The sealing of a TOTP secret: AES-256-GCM under the key-encryption key, the account
/// id as authenticated data (`kek.rs`).
fn seal_secret(state: &AppState, user_id: &str, secret: &[u8]) -> Result<String, ApiError> {
    let text = Zeroizing::new(hex(secret));
    Ok(state
        .0
        .keys
        .keks()
        .current()
        .seal(&format!("totp:{user_id}"), "TOTP", &text)?)
}

fn open_secret(
    state: &AppState,
    user_id: &str,
    sealed: &str,
) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    let text = state
        .0
        .keys
        .keks()
        .open(&format!("totp:{user_id}"), "TOTP", sealed)?;
    unhex_bytes(&text)
        .map(Zeroizing::new)
        .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("a sealed TOTP secret is damaged")))
}

/// `portcullis keys rewrap`: every authenticator secret re-sealed under `new` (those
/// already under it stay), each only if unchanged meanwhile; how many were moved.
pub(crate) async fn rewrap_secrets(
    store: &dyn portcullis_store::Store,
    old: &crate::kek::Keks,
    new: &crate::kek::Kek,
) -> anyhow::Result<usize> {
    let mut moved = 0;
    for (user_id, sealed) in store.sealed_totp_secrets().await? {
        if crate::kek::sealed_under(&sealed) == Some(new.id()) {
            continue;
        }
        let context = format!("totp:{user_id}");
        let plain = old.open(&context, "TOTP", &sealed)?;
        let resealed = new.seal(&context, "TOTP", &plain)?;
        if store
            .reseal_totp_secret(&user_id, &sealed, &resealed)
            .await?
        {
            moved += 1;
        }
    }
    Ok(moved)
}

fn unhex_bytes(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn unhex(text: &str) -> Option<TokenHash> {
    unhex_bytes(text)?.try_into().ok().map(TokenHash)
}

/// `POST /auth/mfa/totp`: the signed-in person's password, then a new enrolment.
pub(crate) async fn enrol_totp(
    state: &AppState,
    client: IpAddr,
    user_id: &str,
    password: String,
) -> Result<Enrolment, ApiError> {
    let user = crate::recovery::signed_in_user(state, user_id).await?;
    crate::recovery::confirm_password(state, client, &user, password).await?;
    begin_totp(state, &user).await
}

/// `DELETE /auth/mfa/totp`: the password, then the authenticator app is removed (and
/// the recovery codes, when no factor is left). 409 when there is none.
pub(crate) async fn remove_totp(
    state: &AppState,
    client: IpAddr,
    user_id: &str,
    password: String,
) -> Result<(), ApiError> {
    let user = crate::recovery::signed_in_user(state, user_id).await?;
    crate::recovery::confirm_password(state, client, &user, password).await?;
    if !state.0.store.remove_totp(&user.id).await? {
        return Err(ApiError::Conflict("no authenticator app is set up"));
    }
    tracing::warn!(user = %user.id, "authenticator app removed");
    crate::audit::record(
        state,
        Entry::own(Kind::MfaRemoved, &user.id).with("factor", "totp"),
    )
    .await;
    Ok(())
}

/// `POST /auth/mfa/recovery-codes`: the password, then a new set replacing the old.
/// 409 when the account has no second factor (codes stand in for one).
pub(crate) async fn regenerate_recovery_codes(
    state: &AppState,
    client: IpAddr,
    user_id: &str,
    password: String,
) -> Result<Vec<String>, ApiError> {
    let user = crate::recovery::signed_in_user(state, user_id).await?;
    crate::recovery::confirm_password(state, client, &user, password).await?;
    let (codes, hashes) = new_recovery_codes(&user.id)?;
    if !state
        .0
        .store
        .replace_recovery_codes(&user.id, &hashes, state.now())
        .await?
    {
        return Err(ApiError::Conflict(
            "recovery codes come with a second factor: set one up first",
        ));
    }
    tracing::info!(user = %user.id, "recovery codes replaced");
    crate::audit::record(
        state,
        Entry::own(Kind::MfaEnrolled, &user.id).with("factor", "recovery_codes"),
    )
    .await;
    Ok(codes)
}

/// What an account has set up, for `GET /auth/mfa` and the account page.
pub(crate) struct Overview {
    /// Confirmed methods (`totp`, `webauthn`).
    pub methods: Vec<String>,
    /// An authenticator enrolment waits for its first code.
    pub totp_pending: bool,
    pub recovery_codes_left: u32,
    pub recovery_code_last_used_at: Option<i64>,
    /// The account's passkeys, oldest first.
    pub passkeys: Vec<portcullis_store::StoredPasskey>,
    /// Whether this server can register and check passkeys (its issuer's host is a
    /// domain name).
    pub passkeys_available: bool,
}

pub(crate) async fn overview(state: &AppState, user: &User) -> Result<Overview, ApiError> {
    let totp = state.0.store.totp_of(&user.id).await?;
    let (left, last_used) = state.0.store.recovery_codes_left(&user.id).await?;
    Ok(Overview {
        methods: user.factors().map(str::to_owned).collect(),
        totp_pending: totp.is_some_and(|t| t.confirmed_at.is_none()),
        recovery_codes_left: left,
        recovery_code_last_used_at: last_used,
        passkeys: state.0.store.passkeys_of(&user.id).await?,
        passkeys_available: state.0.webauthn.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B's SHA-1 secret and its 8-digit values, cut to the 6 digits
    /// we use (the low six of each).
    #[test]
    fn codes_match_rfc_6238_and_only_within_one_step() {
        let t = totp(b"12345678901234567890".to_vec(), "x").unwrap();
        // 59 s → 94287082; 1111111109 → 07081804; 1234567890 → 89005924.
        assert_eq!(matching_step(&t, "287082", 59), Some(1));
        assert_eq!(matching_step(&t, "081804", 1_111_111_109), Some(37_037_036));
        assert_eq!(matching_step(&t, "005924", 1_234_567_890), Some(41_152_263));
        // The step before and after are accepted; two away is not.
        assert_eq!(
            matching_step(&t, "081804", 1_111_111_109 + 30),
            Some(37_037_036)
        );
        assert_eq!(
            matching_step(&t, "081804", 1_111_111_109 - 30),
            Some(37_037_036)
        );
        assert_eq!(matching_step(&t, "081804", 1_111_111_109 + 60), None);
        assert_eq!(matching_step(&t, "081804", 1_111_111_109 - 60), None);
        // Not six digits: never a match.
        for bad in ["", "08180", "0818045", "08180x", "+81804", "081 804"] {
            assert_eq!(matching_step(&t, bad, 1_111_111_109), None, "{bad:?}");
        }
    }

    #[test]
    fn recovery_codes_are_fresh_and_read_back_however_typed() {
        let (codes, hashes) = new_recovery_codes("u1").unwrap();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), RECOVERY_CODES);
        let first = &codes[0];
        assert_eq!(first.len(), 19);
        let typed = format!(" {} ", first.to_lowercase().replace('-', " "));
        let normalized = normalize_recovery_code(&typed).unwrap();
        assert_eq!(recovery_code_hash("u1", &normalized), hashes[0]);
        // Bound to the account.
        assert_ne!(recovery_code_hash("u2", &normalized), hashes[0]);
        for bad in [
            "",
            "ABCD-EFGH",
            "ABCD-EFGH-IJKL-MNO1",
            "ABCD-EFGH-IJKL-MNOPQ",
        ] {
            assert_eq!(normalize_recovery_code(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn acr_follows_amr() {
        use crate::accounts::{AMR_PASSWORD, acr_of};
        assert_eq!(acr_of(AMR_PASSWORD), "aal1");
        assert_eq!(acr_of(AMR_PASSWORD_OTP), "aal2");
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(
            unhex_bytes(&hex(&[0, 1, 254, 255])).unwrap(),
            vec![0, 1, 254, 255]
        );
        assert_eq!(unhex_bytes("abc"), None);
        assert_eq!(unhex_bytes("zz"), None);
        assert!(unhex(&hex(&[7u8; 32])).is_some());
        assert!(unhex(&hex(&[7u8; 31])).is_none());
    }
}
