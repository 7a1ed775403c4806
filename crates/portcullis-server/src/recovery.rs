//! Getting back into an account, and changing what proves it is yours, without HTTP:
//! address verification, password reset, password and address change. The routes
//! (`routes::recovery`) and the CLI (`users reset-link`) adapt these.
//!
//! Every link carries a one-time token: 256 random bits ([`Opaque`]), of which the
//! store keeps only the SHA-256, written in the same transaction as the mail that
//! carries it (the outbox, `mail.rs`). One live token per account and purpose: a new
//! one voids the earlier ones; a use, a password change or a reset voids them too.

use std::net::IpAddr;

use portcullis::opaque::Opaque;
use portcullis::password::Verification;
use portcullis_store::{EmailTokenKind, EventKind, Purpose, Redeemed, TokenHash, User};

use crate::accounts::{admit, hashing, password, settle};
use crate::error::ApiError;
use crate::links::{held, mail, new_token, token_and_mail};
use crate::state::AppState;
use crate::templates::MailKind;
use portcullis_store::Settlement;

/// `POST /auth/email/resend`: a new confirmation link for the account's unverified
/// address (throttled per account and client address). An account without an address,
/// or whose address is verified, is a 400.
pub(crate) async fn resend(
    state: &AppState,
    client: IpAddr,
    user_id: &str,
) -> Result<(), ApiError> {
    let user = state
        .0
        .store
        .user_by_id(user_id)
        .await?
        .ok_or(ApiError::InvalidCredentials)?;
    let Some(address) = user.email.as_deref() else {
        return Err(ApiError::InvalidRequest(
            "this account has no email address".into(),
        ));
    };
    if user.email_verified {
        return Err(ApiError::InvalidRequest(
            "this account's email address is already verified".into(),
        ));
    }
    admit(state, &state.0.throttle.mail_to_account(client, &user.id)).await?;
    let (token, message) = token_and_mail(
        state,
        EmailTokenKind::Verify,
        &user.id,
        &user.username,
        held(address)?,
    )?;
    if !state
        .0
        .store
        .issue_email_token(&token, &[message], state.now())
        .await?
    {
        // The address changed or the account was disabled meanwhile.
        return Err(ApiError::InvalidRequest(
            "this account's email address changed; try again".into(),
        ));
    }
    tracing::info!(user = %user.id, "address confirmation sent again");
    Ok(())
}

/// What a forgotten-password request names.
pub(crate) enum Forgotten {
    Email(String),
    Username(String),
}

/// `POST /auth/password/forgot`: admitted by the throttle (keyed by what was typed, so
/// the same whether or not an account matches), then answered at once; the lookup and
/// the mail happen after the answer, so neither its timing nor its status says whether
/// an account matched. A link goes only to a verified address of an enabled account.
pub(crate) async fn forgot(
    state: &AppState,
    client: IpAddr,
    asked: Forgotten,
) -> Result<(), ApiError> {
    let key = match &asked {
        Forgotten::Email(text) => match crate::email::normalize(text) {
            Ok(email) => format!("email:{}", email.key),
            Err(e) => return Err(ApiError::InvalidRequest(format!("email: {}", e.0))),
        },
        Forgotten::Username(text) => match portcullis::username::normalize_username(text) {
            Ok(name) => format!("name:{name}"),
            // No account can have such a name: nothing to send, and nothing to tell.
            Err(_) => format!("name?:{}", text.chars().take(64).collect::<String>()),
        },
    };
    admit(state, &state.0.throttle.mail(client, &key)).await?;
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = send_reset(&state, &asked).await {
            tracing::warn!(error = ?e, "a reset link could not be queued");
        }
    });
    Ok(())
}

async fn send_reset(state: &AppState, asked: &Forgotten) -> Result<(), ApiError> {
    let store = &state.0.store;
    let user = match asked {
        Forgotten::Email(text) => match crate::email::normalize(text) {
            Ok(email) => store.user_by_verified_email(&email.key).await?,
            Err(_) => None,
        },
        Forgotten::Username(text) => match portcullis::username::normalize_username(text) {
            Ok(name) => store.user_by_username(&name).await?,
            Err(_) => None,
        },
    };
    let Some(user) = user.filter(|u| !u.disabled && u.email_verified) else {
        tracing::info!("password reset asked for no account with a verified address: nothing sent");
        return Ok(());
    };
    let Some(address) = user.email.as_deref() else {
        return Ok(());
    };
    // Per account too: asking by address and by username spends one budget.
    if let Err(e) = admit(state, &state.0.throttle.account_mail(&user.id)).await {
        tracing::info!(user = %user.id, error = ?e, "password reset asked too often: nothing sent");
        return Ok(());
    }
    let (token, message) = token_and_mail(
        state,
        EmailTokenKind::Reset,
        &user.id,
        &user.username,
        held(address)?,
    )?;
    // False when the account no longer fits (disabled, address changed meanwhile).
    let issued = state
        .0
        .store
        .issue_email_token(&token, &[message], state.now())
        .await?;
    tracing::info!(user = %user.id, issued, "password reset link queued");
    Ok(())
}

/// `POST /auth/email/verify`: confirms an address with the token of its link.
pub(crate) async fn verify(state: &AppState, token: &str) -> Result<String, ApiError> {
    let token = Opaque::parse(token).ok_or(ApiError::InvalidLink)?;
    match state
        .0
        .store
        .redeem_email_token(&TokenHash(token.sha256()), Purpose::Address, state.now())
        .await
    {
        Ok(Redeemed::Verified { user_id, email }) => {
            state.0.session_cache.forget_user(&user_id);
            tracing::info!(user = %user_id, "email address verified");
            crate::audit::record(
                state,
                crate::audit::Entry::own(crate::audit::Kind::EmailVerified, &user_id),
            )
            .await;
            Ok(email)
        }
        Ok(_) => Err(ApiError::InvalidLink),
        Err(portcullis_store::Error::Conflict) => Err(ApiError::EmailTaken),
        Err(e) => Err(e.into()),
    }
}

/// `POST /auth/password/reset`: sets a new password with the token of a reset link,
/// and ends everything the account was signed in with, here before the answer and
/// everywhere through the event log.
pub(crate) async fn reset(
    state: &AppState,
    client: IpAddr,
    token: &str,
    new_password: String,
) -> Result<(), ApiError> {
    let new_password = password(new_password)?;
    let token = Opaque::parse(token).ok_or(ApiError::InvalidLink)?;
    let attempts = state.0.throttle.reset(client);
    admit(state, &attempts).await?;
    let hash = match state.0.hasher.hash(new_password).await {
        Ok(hash) => hash,
        Err(e) => {
            settle(state, &attempts, Settlement::NotChecked).await;
            return Err(hashing(e));
        }
    };
    let now = state.now();
    match state
        .0
        .store
        .redeem_email_token(&TokenHash(token.sha256()), Purpose::Password(&hash), now)
        .await?
    {
        Redeemed::PasswordReset {
            user_id,
            ended,
            not_before,
        } => {
            for id in &ended {
                crate::events::apply_own(state, EventKind::FamilyRevoked, id, now);
            }
            crate::events::apply_own(state, EventKind::UserNotBefore, &user_id, not_before);
            tracing::info!(user = %user_id, ended = ended.len(), "password reset");
            crate::audit::record(
                state,
                crate::audit::Entry::new(
                    crate::audit::Kind::PasswordReset,
                    crate::audit::Actor::Nobody,
                )
                .on(&user_id)
                .with("ended", ended.len())
                .with("via", "reset_link"),
            )
            .await;
            Ok(())
        }
        _ => Err(ApiError::InvalidLink),
    }
}

/// Checks a signed-in person's current password, through the same throttle as a
/// login (the account's counters at this address), so that a stolen session cannot
/// guess it faster than a login could.
pub(crate) async fn confirm_password(
    state: &AppState,
    client: IpAddr,
    user: &User,
    text: String,
) -> Result<(), ApiError> {
    let presented = password(text).map_err(|_| ApiError::WrongPassword)?;
    let attempts = state.0.throttle.login(&user.username, client, None);
    admit(state, &attempts).await?;
    match state
        .0
        .hasher
        .verify(presented, Some(&user.password_hash))
        .await
    {
        Ok(Verification::Match { .. }) => {
            settle(state, &attempts, Settlement::Success).await;
            Ok(())
        }
        Ok(_) => Err(ApiError::WrongPassword),
        Err(e) => {
            settle(state, &attempts, Settlement::NotChecked).await;
            Err(hashing(e))
        }
    }
}

pub(crate) async fn signed_in_user(state: &AppState, user_id: &str) -> Result<User, ApiError> {
    state
        .0
        .store
        .user_by_id(user_id)
        .await?
        .filter(|u| !u.disabled)
        .ok_or(ApiError::Auth(
            portcullis::rejection::Rejection::MissingCredentials,
        ))
}

/// `POST /auth/password/change`: the current password, then the new one; every other
/// refresh family and cookie session ends (`keep`: the one the request came with), and
/// a verified address gets a notice.
pub(crate) async fn change_password(
    state: &AppState,
    client: IpAddr,
    user_id: &str,
    keep: Option<&str>,
    current: String,
    new_password: String,
) -> Result<(), ApiError> {
    let user = signed_in_user(state, user_id).await?;
    let new_password = password(new_password)?;
    confirm_password(state, client, &user, current).await?;
    let hash = state.0.hasher.hash(new_password).await.map_err(hashing)?;
    let notice = match (&user.email, user.email_verified) {
        (Some(address), true) => vec![mail(
            state,
            MailKind::PasswordChanged,
            address,
            &user.username,
            "",
            "",
            address,
        )?],
        _ => Vec::new(),
    };
    let now = state.now();
    let ended = state
        .0
        .store
        .change_password(&user.id, &user.password_hash, &hash, keep, &notice, now)
        .await?
        // Another change or a reset won the race: this one's current password is no
        // longer the account's.
        .ok_or(ApiError::WrongPassword)?;
    for id in &ended {
        crate::events::apply_own(state, EventKind::FamilyRevoked, id, now);
    }
    tracing::info!(user = %user.id, ended = ended.len(), "password changed");
    crate::audit::record(
        state,
        crate::audit::Entry::own(crate::audit::Kind::PasswordChanged, &user.id)
            .with("ended", ended.len()),
    )
    .await;
    Ok(())
}

/// `POST /auth/email/change`: the password, then a confirmation link to the new
/// address and a notice (with no link) to the old one; the address changes when the
/// link is used.
pub(crate) async fn change_email(
    state: &AppState,
    client: IpAddr,
    user_id: &str,
    new_email: &str,
    current: String,
) -> Result<(), ApiError> {
    let user = signed_in_user(state, user_id).await?;
    let email = crate::email::normalize(new_email)
        .map_err(|e| ApiError::InvalidRequest(format!("email: {}", e.0)))?;
    confirm_password(state, client, &user, current).await?;
    if user.email_verified
        && user
            .email
            .as_deref()
            .and_then(|a| crate::email::normalize(a).ok())
            .is_some_and(|old| old.key == email.key)
    {
        return Err(ApiError::InvalidRequest(
            "that is already this account's verified address".into(),
        ));
    }
    admit(state, &state.0.throttle.mail_to_account(client, &user.id)).await?;
    let (token, confirm) = token_and_mail(
        state,
        EmailTokenKind::Change,
        &user.id,
        &user.username,
        email,
    )?;
    let mut mails = vec![confirm];
    if let Some(old) = &user.email {
        mails.push(mail(
            state,
            MailKind::ChangeNotice,
            old,
            &user.username,
            "",
            "",
            old,
        )?);
    }
    if !state
        .0
        .store
        .issue_email_token(&token, &mails, state.now())
        .await?
    {
        return Err(ApiError::Auth(
            portcullis::rejection::Rejection::MissingCredentials,
        ));
    }
    tracing::info!(user = %user.id, "address change asked");
    Ok(())
}

/// `portcullis users reset-link NAME`: a reset link for an account, printed for the
/// operator (no mail is sent; the link is the account's one live reset link). Needs a
/// verified address, as a mailed link does.
pub(crate) async fn reset_link_for_operator(
    config: &crate::config::Config,
    store: &dyn portcullis_store::Store,
    user: &User,
    now: i64,
) -> Result<Option<String>, ApiError> {
    let Some(address) = user.email.as_deref().filter(|_| user.email_verified) else {
        return Ok(None);
    };
    let (token, link) = new_token(config, EmailTokenKind::Reset, &user.id, held(address)?, now)?;
    let issued = store.issue_email_token(&token, &[], now).await?;
    Ok(issued.then_some(link))
}
