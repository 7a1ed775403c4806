//! A person's own data: `GET /auth/me/export` (everything the server holds about the
//! signed-in person, as JSON) and `DELETE /auth/me` (erasure, the password asked
//! again), with the account page's form for the second.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::JsonBody;
use super::client_addr::ClientAddr;
use super::cookie::{CookieSession, Person, redirect_with_cookie};
use super::html::{account_form, account_refused};
use super::token_json;
use crate::error::ApiError;
use crate::state::AppState;

/// The most audit records an export carries (the newest are dropped past it, and the
/// export says so): a year of an ordinary account's records is far fewer.
const MAX_AUDIT: usize = 10_000;

/// Everything the server holds about `user_id`, as its export shows it. No secret is
/// in it: no password hash, no token or its hash, no second factor's secret, no mail
/// body (a mail may hold a live link).
async fn export(state: &AppState, user_id: &str) -> Result<Value, ApiError> {
    let s = &state.0;
    let user = crate::recovery::signed_in_user(state, user_id).await?;
    let (sessions, api_logins) = super::cookie::sign_ins_json(state, &user.id).await?;
    let apps = s.store.consents_of(&user.id).await?;
    let factors = crate::factors::overview(state, &user).await?;
    let totp = s.store.totp_of(&user.id).await?;
    let records = s.store.account_records(&user.id).await?;
    let identities = s.store.identities_of(&user.id).await?;
    let mut audit = Vec::new();
    let mut after = None;
    let mut truncated = false;
    loop {
        let page = s
            .store
            .audit(&portcullis_store::AuditFilter {
                subject: Some(&user.id),
                kind: None,
                after,
                since: None,
                limit: 1000,
            })
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        audit.extend(page);
        if audit.len() >= MAX_AUDIT {
            truncated = audit.len() > MAX_AUDIT;
            audit.truncate(MAX_AUDIT);
            break;
        }
    }
    Ok(json!({
        "exported_at": state.now(),
        "account": {
            "id": user.id,
            "username": user.username,
            "email": user.email,
            "email_verified": user.email_verified,
            "scope": user.scope,
            "disabled": user.disabled,
            "created_at": user.created_at,
        },
        "second_factors": {
            "methods": factors.methods,
            "totp": totp.map(|t| json!({ "confirmed_at": t.confirmed_at })),
            "recovery_codes_left": factors.recovery_codes_left,
            "recovery_code_last_used_at": factors.recovery_code_last_used_at,
            "passkeys": factors.passkeys.iter().map(|p| json!({
                "id": p.id, "label": p.label, "created_at": p.created_at, "last_used_at": p.last_used_at,
            })).collect::<Vec<_>>(),
        },
        "providers": identities.iter().map(|i| json!({
            "provider": i.provider, "subject": i.subject, "name_there": i.label,
            "linked_at": i.created_at, "last_used_at": i.last_used_at,
        })).collect::<Vec<_>>(),
        "sessions": sessions,
        "api_logins": api_logins,
        "applications": apps.iter().map(|a| json!({
            "client_id": a.client_id, "name": a.client_name, "scope": a.scope, "allowed_at": a.created_at,
        })).collect::<Vec<_>>(),
        "devices": records.devices.iter().map(|(created_at, last_used_at)| json!({
            "created_at": created_at, "last_used_at": last_used_at,
        })).collect::<Vec<_>>(),
        "mail_links": records.mail_links.iter().map(|l| json!({
            "kind": l.kind, "email": l.email, "created_at": l.created_at,
            "expires_at": l.expires_at, "used_at": l.used_at,
        })).collect::<Vec<_>>(),
        "mail": records.mail.iter().map(|m| json!({
            "to": m.recipient, "subject": m.subject, "created_at": m.created_at, "sent_at": m.sent_at,
        })).collect::<Vec<_>>(),
        "audit": audit.iter().map(|r| json!({
            "at": r.at, "kind": r.kind, "actor": r.actor, "address": r.address,
            "user_agent": r.user_agent,
            "detail": serde_json::from_str::<Value>(&r.detail).unwrap_or(Value::Null),
        })).collect::<Vec<_>>(),
        "audit_truncated": truncated,
    }))
}

/// `GET /auth/me/export` (bearer, or the session cookie) → 200 everything the server
/// holds about the person, as a JSON download.
#[utoipa::path(get, path = "/auth/me/export", tag = "accounts",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "Everything the server holds about you: the account, second factors (never their secrets), sessions, API logins, applications allowed, known devices, mail links and mail (no bodies), your audit records"),
        crate::routes::schemas::CredentialRefusals,
        (status = 403, description = "access_denied (a machine client, or an application acting for the person)", body = super::schemas::ErrorBody),
    ))]
pub async fn export_me(
    State(state): State<AppState>,
    Person(identity): Person,
) -> Result<Response, ApiError> {
    let body = export(&state, identity.subject()).await?;
    tracing::info!(user = %identity.subject(), "personal data exported");
    let mut response = token_json(body);
    response.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"portcullis-account.json\""),
    );
    Ok(response)
}

/// `{"password"}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteRequest {
    /// The account's password, asked again.
    password: String,
}

/// Checks the password (throttled as a login is), then erases the account.
async fn delete_account(
    state: &AppState,
    client: std::net::IpAddr,
    user_id: &str,
    password: String,
) -> Result<(), ApiError> {
    let user = crate::recovery::signed_in_user(state, user_id).await?;
    crate::recovery::confirm_password(state, client, &user, password).await?;
    crate::accounts::erase(state, &user.id, crate::audit::Actor::User(user.id.clone())).await?;
    tracing::warn!(user = %user.id, "account erased by its owner");
    Ok(())
}

/// `DELETE /auth/me {"password"}` (bearer, or the session cookie with the CSRF checks)
/// → 204: the account is erased as an admin's `DELETE /admin/users/{id}` erases it.
#[utoipa::path(delete, path = "/auth/me", tag = "accounts", request_body = DeleteRequest,
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 204, description = "Erased: every sign-in ended, the account and what references it deleted"),
        crate::routes::schemas::CredentialRefusals,
        (status = 403, description = "wrong_password, or access_denied (cross-site, a machine client)", body = super::schemas::ErrorBody),
        (status = 409, description = "conflict: the last enabled account with admin", body = super::schemas::ErrorBody),
        crate::routes::schemas::JsonBodyRefusals,
        (status = 429, description = "too_many_requests, with Retry-After", body = super::schemas::ErrorBody),
        (status = 503, description = "temporarily_unavailable, with Retry-After", body = super::schemas::ErrorBody),
    ))]
pub async fn delete_me(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Person(identity): Person,
    JsonBody(body): JsonBody<DeleteRequest>,
) -> Result<Response, ApiError> {
    delete_account(&state, client, identity.subject(), body.password).await?;
    Ok(super::cookie::no_content(
        &state,
        identity.session().is_some(),
    ))
}

/// The account page's deletion form.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountDeleteForm {
    #[serde(default)]
    csrf_token: String,
    password: String,
}

/// `POST /account/delete` (form): erases the account, then the sign-in page says so.
#[utoipa::path(post, path = "/account/delete", tag = "pages",
    request_body(content = AccountDeleteForm, content_type = "application/x-www-form-urlencoded"),
    security(("session" = [])),
    responses(
        (status = 303, description = "To /login?signed_out=deleted, the cookie cleared"),
        (status = 401, description = "Signed out meanwhile, or a bad bearer token: pages are for the session cookie (HTML)", content_type = "text/html"),
        (status = 403, description = "The password is wrong, a wrong form token, or a cross-site form (HTML)", content_type = "text/html"),
        (status = 409, description = "The last account with admin (HTML)", content_type = "text/html"),
        (status = 429, description = "Too many attempts (HTML)", content_type = "text/html"),
    ))]
pub async fn account_delete(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    signed_in: Result<Option<CookieSession>, ApiError>,
    request: Request,
) -> Response {
    let (identity, form) =
        match account_form(signed_in, request, |f: &AccountDeleteForm| &f.csrf_token).await {
            Ok(found) => found,
            Err(page) => return page,
        };
    match delete_account(&state, client, identity.subject(), form.password).await {
        Ok(()) => redirect_with_cookie(
            super::pages::ACCOUNT_DELETED,
            state.0.sessions.config().clear_cookie(),
        ),
        Err(e) => account_refused(e),
    }
}
