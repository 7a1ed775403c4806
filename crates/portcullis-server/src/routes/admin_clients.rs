//! OAuth clients, for the admin API (`/admin/clients…`) and `portcullis clients`: the
//! rules a client must keep (its name, scope and URIs), its JSON, and the handlers.
//! The CLI and the API share these, so a client registered one way is what the other
//! would have registered.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use portcullis::opaque::Opaque;
use portcullis::strategy::Identity;
use portcullis_store::{Client, ClientChange};
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::JsonBody;
use super::token_json;
use crate::audit::{self, Actor, Entry, Kind};
use crate::error::ApiError;
use crate::state::AppState;

/// What a name may be: what fits in a log line and a table.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err("a client name is 1–64 of the characters a-z A-Z 0-9 - _ .".into())
    }
}

/// A scope as written: its words, once each, space separated.
pub(crate) fn checked_scope(text: &str) -> Result<String, String> {
    let mut words: Vec<&str> = Vec::new();
    for w in text.split_whitespace() {
        if !crate::config::is_scope_token(w) {
            return Err(
                "scope: printable ASCII words, no quotes or backslashes (RFC 6749 §3.3)".into(),
            );
        }
        if !words.contains(&w) {
            words.push(w);
        }
    }
    Ok(words.join(" "))
}

/// The URIs, checked, once each, as stored (space separated).
pub(crate) fn uri_list(uris: &[String], what: &str) -> Result<String, String> {
    if uris.len() > 20 {
        return Err(format!("{what}: at most 20"));
    }
    let mut unique: Vec<&str> = Vec::new();
    for uri in uris {
        super::redirect_check(uri).map_err(|why| format!("{what} {uri:?}: {why}"))?;
        if !unique.contains(&uri.as_str()) {
            unique.push(uri);
        }
    }
    Ok(unique.join(" "))
}

/// A new secret: 256 random bits, shown once, kept as its SHA-256.
pub(crate) fn new_secret() -> Result<Opaque, ApiError> {
    Opaque::generate()
        .map_err(|_| ApiError::Unexpected(anyhow::anyhow!("the system random generator failed")))
}

/// What kind of client, in words.
pub(crate) fn kind(client: &Client) -> &'static str {
    match (client.redirect_uris.is_empty(), client.public) {
        (true, _) => "machine",
        (false, false) => "confidential",
        (false, true) => "public",
    }
}

/// A client as the API and the CLI show it; with its secret when it was just made.
pub(crate) fn client_json(client: &Client, secret: Option<&Opaque>) -> Value {
    let mut shown = json!({
        "client_id": client.id,
        "name": client.name,
        "type": kind(client),
        "scope": client.scope,
        "disabled": client.disabled,
        "first_party": client.first_party,
        "redirect_uris": client.redirect_uri_list().collect::<Vec<_>>(),
        "post_logout_redirect_uris": client.post_logout_uri_list().collect::<Vec<_>>(),
        "created_at": client.created_at,
    });
    if let Some(secret) = secret {
        shown["client_secret"] = secret.expose().into();
    }
    shown
}

/// A client to register, as asked.
pub(crate) struct NewClient {
    pub(crate) name: String,
    pub(crate) scope: String,
    pub(crate) redirect_uris: Vec<String>,
    pub(crate) post_logout_redirect_uris: Vec<String>,
    pub(crate) public: bool,
    pub(crate) first_party: bool,
}

/// Checks `new` and makes the client, with its secret unless it is public.
pub(crate) fn build(new: NewClient, now: i64) -> Result<(Client, Option<Opaque>), ApiError> {
    let bad = ApiError::InvalidRequest;
    check_name(&new.name).map_err(bad)?;
    let scope = checked_scope(&new.scope).map_err(bad)?;
    let redirect_uris = uri_list(&new.redirect_uris, "redirect_uris").map_err(bad)?;
    let post_logout_redirect_uris =
        uri_list(&new.post_logout_redirect_uris, "post_logout_redirect_uris").map_err(bad)?;
    shape(
        &redirect_uris,
        &post_logout_redirect_uris,
        new.public,
        new.first_party,
    )
    .map_err(bad)?;
    let secret = if new.public {
        None
    } else {
        Some(new_secret()?)
    };
    let client = Client {
        id: portcullis::jwt::random_id()
            .map_err(|_| ApiError::Unexpected(anyhow::anyhow!("no random id")))?,
        name: new.name,
        secret_hash: secret
            .as_ref()
            .map(|s| s.sha256().to_vec())
            .unwrap_or_default(),
        scope,
        disabled: false,
        not_before: 0,
        created_at: now,
        redirect_uris,
        post_logout_redirect_uris,
        public: new.public,
        first_party: new.first_party,
    };
    Ok((client, secret))
}

/// What makes sense together: a public or first-party client signs people in (it has
/// a redirect URI), and only such a client has somewhere to go after signing out.
fn shape(
    redirect_uris: &str,
    post_logout_redirect_uris: &str,
    public: bool,
    first_party: bool,
) -> Result<(), String> {
    if redirect_uris.is_empty() {
        if public {
            return Err("a public client signs people in: it needs redirect_uris".into());
        }
        if first_party {
            return Err("first_party is for clients that sign people in (redirect_uris)".into());
        }
        if !post_logout_redirect_uris.is_empty() {
            return Err("post_logout_redirect_uris are for clients with redirect_uris".into());
        }
    }
    Ok(())
}

/// Registers `client`; a taken name is a clear refusal.
pub(crate) async fn add(
    store: &dyn portcullis_store::Store,
    client: &Client,
) -> Result<(), ApiError> {
    store.add_client(client).await.map_err(|e| match e {
        portcullis_store::Error::Conflict => ApiError::Conflict("a client with this name exists"),
        other => other.into(),
    })
}

/// The words of `before` that `after` does not have.
pub(crate) fn taken_away<'a>(before: &'a str, after: &str) -> Vec<&'a str> {
    before
        .split_whitespace()
        .filter(|w| !after.split_whitespace().any(|a| a == *w))
        .collect()
}

async fn target(state: &AppState, id: &str) -> Result<Client, ApiError> {
    state
        .0
        .store
        .client_by_id(id)
        .await?
        .ok_or(ApiError::NotFound("no such client"))
}

/// `GET /admin/clients` → 200 `{"clients": [...]}`, by name (clients are few: no
/// pages).
#[utoipa::path(get, path = "/admin/clients", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every client, by name (no secrets: only their SHA-256 is kept)"),
        (status = 401, description = "unauthorized / invalid_token", body = super::schemas::ErrorBody),
        (status = 403, description = "insufficient_scope: admin", body = super::schemas::ErrorBody),
    ))]
pub async fn list_clients(State(state): State<AppState>) -> Result<Response, ApiError> {
    let clients = state.0.store.clients().await?;
    Ok(token_json(json!({
        "clients": clients.iter().map(|c| client_json(c, None)).collect::<Vec<_>>(),
    })))
}

/// `GET /admin/clients/{id}` → 200 the client.
#[utoipa::path(get, path = "/admin/clients/{id}", tag = "admin",
    params(("id" = String, Path, description = "The client's id (its client_id)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The client"),
        (status = 401, description = "unauthorized / invalid_token", body = super::schemas::ErrorBody),
        (status = 403, description = "insufficient_scope: admin", body = super::schemas::ErrorBody),
        (status = 404, description = "not_found", body = super::schemas::ErrorBody),
    ))]
pub async fn get_client(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(token_json(client_json(&target(&state, &id).await?, None)))
}

/// `{name, scope?, redirect_uris?, post_logout_redirect_uris?, public?, first_party?}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientRegistration {
    /// Unique; 1–64 of a-z A-Z 0-9 - _ . (the consent page shows it).
    #[schema(min_length = 1, max_length = 64)]
    name: String,
    /// The scopes it may get, space separated (for a client that signs people in,
    /// the most it may ask of them).
    #[serde(default)]
    scope: String,
    /// Where the authorization-code flow may send people back (https, http on a
    /// loopback address, or a native app's scheme), matched exactly. None: a machine
    /// client (client credentials only).
    #[serde(default)]
    redirect_uris: Vec<String>,
    /// Where RP-initiated logout may send people afterwards.
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
    /// A single-page or native app: no secret, PKCE only.
    #[serde(default)]
    public: bool,
    /// Yours: people are not asked to consent.
    #[serde(default)]
    first_party: bool,
}

/// `POST /admin/clients {...}` → 201 the client with its `client_secret` (unless
/// public), shown this once: only its SHA-256 is kept.
#[utoipa::path(post, path = "/admin/clients", tag = "admin", request_body = ClientRegistration,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The client, with its secret (shown once)"),
        (status = 400, description = "invalid_request (a name, scope or URI that is not one; a public or first-party client without redirect_uris)", body = super::schemas::ErrorBody),
        (status = 401, description = "unauthorized / invalid_token", body = super::schemas::ErrorBody),
        (status = 403, description = "insufficient_scope: admin", body = super::schemas::ErrorBody),
        (status = 409, description = "conflict: the name is taken", body = super::schemas::ErrorBody),
        crate::routes::schemas::JsonBodyRefusals,
    ))]
pub async fn create_client(
    State(state): State<AppState>,
    axum::Extension(actor): axum::Extension<Identity>,
    JsonBody(body): JsonBody<ClientRegistration>,
) -> Result<Response, ApiError> {
    let (client, secret) = build(
        NewClient {
            name: body.name,
            scope: body.scope,
            redirect_uris: body.redirect_uris,
            post_logout_redirect_uris: body.post_logout_redirect_uris,
            public: body.public,
            first_party: body.first_party,
        },
        state.now(),
    )?;
    add(state.0.store.as_ref(), &client).await?;
    tracing::warn!(actor = %actor.subject(), client = %client.id, "client registered by an admin");
    audit::record(
        &state,
        Entry::new(Kind::ClientCreated, Actor::of_identity(&actor))
            .on(&client.id)
            .with("name", client.name.as_str())
            .with("via", "admin"),
    )
    .await;
    let mut response = token_json(client_json(&client, secret.as_ref()));
    *response.status_mut() = StatusCode::CREATED;
    Ok(response)
}

/// `{name?, scope?, redirect_uris?, post_logout_redirect_uris?, first_party?, disabled?}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientUpdate {
    /// A new unique name.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64)]
    name: Option<String>,
    /// The whole scope (taking one away refuses the tokens issued to it before, and a
    /// grant it holds for people loses it at its next refresh).
    #[serde(default)]
    scope: Option<String>,
    /// The whole list of redirect URIs.
    #[serde(default)]
    redirect_uris: Option<Vec<String>>,
    /// The whole list of post-logout redirect URIs.
    #[serde(default)]
    post_logout_redirect_uris: Option<Vec<String>>,
    /// Whether people are asked to consent.
    #[serde(default)]
    first_party: Option<bool>,
    /// Disable (its tokens and the grants it holds for people end) or enable it.
    #[serde(default)]
    disabled: Option<bool>,
}

/// `PATCH /admin/clients/{id} {...}` → 200 the client as it is now. A client that
/// calls the API with its own token cannot disable itself nor take `admin` from
/// itself.
#[utoipa::path(patch, path = "/admin/clients/{id}", tag = "admin", request_body = ClientUpdate,
    params(("id" = String, Path, description = "The client's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The client, changed"),
        (status = 400, description = "invalid_request", body = super::schemas::ErrorBody),
        (status = 401, description = "unauthorized / invalid_token", body = super::schemas::ErrorBody),
        (status = 403, description = "insufficient_scope: admin", body = super::schemas::ErrorBody),
        (status = 404, description = "not_found", body = super::schemas::ErrorBody),
        (status = 409, description = "conflict: the name is taken, or itself (disabling, removing admin)", body = super::schemas::ErrorBody),
        crate::routes::schemas::JsonBodyRefusals,
    ))]
pub async fn patch_client(
    State(state): State<AppState>,
    axum::Extension(actor): axum::Extension<Identity>,
    Path(id): Path<String>,
    JsonBody(change): JsonBody<ClientUpdate>,
) -> Result<Response, ApiError> {
    let client = target(&state, &id).await?;
    let bad = ApiError::InvalidRequest;
    // Everything is checked before anything changes.
    if let Some(name) = &change.name {
        check_name(name).map_err(bad)?;
    }
    let scope = change
        .scope
        .as_deref()
        .map(checked_scope)
        .transpose()
        .map_err(bad)?;
    let redirect_uris = change
        .redirect_uris
        .as_deref()
        .map(|u| uri_list(u, "redirect_uris"))
        .transpose()
        .map_err(bad)?;
    let post_logout = change
        .post_logout_redirect_uris
        .as_deref()
        .map(|u| uri_list(u, "post_logout_redirect_uris"))
        .transpose()
        .map_err(bad)?;
    shape(
        redirect_uris.as_deref().unwrap_or(&client.redirect_uris),
        post_logout
            .as_deref()
            .unwrap_or(&client.post_logout_redirect_uris),
        client.public,
        change.first_party.unwrap_or(client.first_party),
    )
    .map_err(bad)?;
    let itself = actor.subject() == client.id;
    if itself && change.disabled == Some(true) {
        return Err(ApiError::Conflict("a client cannot disable itself"));
    }
    if itself
        && let Some(scope) = &scope
        && taken_away(&client.scope, scope).contains(&super::ADMIN_SCOPE)
    {
        return Err(ApiError::Conflict("a client cannot take admin from itself"));
    }
    let now = state.now();
    let changed = state
        .0
        .store
        .update_client(
            &id,
            &ClientChange {
                name: change.name.as_deref(),
                scope: scope.as_deref(),
                redirect_uris: redirect_uris.as_deref(),
                post_logout_redirect_uris: post_logout.as_deref(),
                first_party: change.first_party,
                disabled: change.disabled,
            },
            now,
        )
        .await
        .map_err(|e| match e {
            portcullis_store::Error::Conflict => {
                ApiError::Conflict("a client with this name exists")
            }
            other => other.into(),
        })?
        .ok_or(ApiError::NotFound("no such client"))?;
    if changed.tokens_refused {
        crate::accounts::apply_ended(&state, &id, &changed.ended, now);
    }
    tracing::warn!(actor = %actor.subject(), client = %id, "client changed by an admin");
    let fields = changed_fields(&client, &changed.client);
    if !fields.is_empty() {
        audit::record(
            &state,
            Entry::new(Kind::ClientUpdated, Actor::of_identity(&actor))
                .on(&id)
                .with("fields", fields)
                .with("via", "admin"),
        )
        .await;
    }
    Ok(token_json(client_json(&changed.client, None)))
}

/// The names of the members that differ between `before` and `after`.
pub(crate) fn changed_fields(before: &Client, after: &Client) -> Vec<&'static str> {
    [
        ("name", before.name != after.name),
        ("scope", before.scope != after.scope),
        ("redirect_uris", before.redirect_uris != after.redirect_uris),
        (
            "post_logout_redirect_uris",
            before.post_logout_redirect_uris != after.post_logout_redirect_uris,
        ),
        ("first_party", before.first_party != after.first_party),
        ("disabled", before.disabled != after.disabled),
    ]
    .into_iter()
    .filter_map(|(name, differs)| differs.then_some(name))
    .collect()
}

/// `DELETE /admin/clients/{id}` → 204: its tokens are refused everywhere, the grants
/// it holds for people revoked, its codes and the consents given to it deleted.
#[utoipa::path(delete, path = "/admin/clients/{id}", tag = "admin",
    params(("id" = String, Path, description = "The client's id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "unauthorized / invalid_token", body = super::schemas::ErrorBody),
        (status = 403, description = "insufficient_scope: admin", body = super::schemas::ErrorBody),
        (status = 404, description = "not_found", body = super::schemas::ErrorBody),
        (status = 409, description = "conflict: a client deleting itself", body = super::schemas::ErrorBody),
    ))]
pub async fn delete_client(
    State(state): State<AppState>,
    axum::Extension(actor): axum::Extension<Identity>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if actor.subject() == id {
        return Err(ApiError::Conflict("a client cannot delete itself"));
    }
    let client = target(&state, &id).await?;
    let now = state.now();
    let ended = state
        .0
        .store
        .delete_client(&id, now)
        .await?
        .ok_or(ApiError::NotFound("no such client"))?;
    crate::accounts::apply_ended(&state, &id, &ended, now);
    tracing::warn!(actor = %actor.subject(), client = %id, "client deleted by an admin");
    audit::record(
        &state,
        Entry::new(Kind::ClientDeleted, Actor::of_identity(&actor))
            .on(&id)
            .with("name", client.name.as_str())
            .with("via", "admin"),
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /admin/clients/{id}/secret` → 200 the client with its new `client_secret`,
/// shown this once; the old secret stops working at once (tokens already issued live
/// out their lifetime).
#[utoipa::path(post, path = "/admin/clients/{id}/secret", tag = "admin",
    params(("id" = String, Path, description = "The client's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The client, with its new secret (shown once)"),
        (status = 401, description = "unauthorized / invalid_token", body = super::schemas::ErrorBody),
        (status = 403, description = "insufficient_scope: admin", body = super::schemas::ErrorBody),
        (status = 404, description = "not_found", body = super::schemas::ErrorBody),
        (status = 409, description = "conflict: a public client has no secret", body = super::schemas::ErrorBody),
    ))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    axum::Extension(actor): axum::Extension<Identity>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if target(&state, &id).await?.public {
        return Err(ApiError::Conflict("a public client has no secret"));
    }
    let secret = new_secret()?;
    let client = state
        .0
        .store
        .set_client_secret(&id, &secret.sha256())
        .await?
        .ok_or(ApiError::NotFound("no such client"))?;
    tracing::warn!(actor = %actor.subject(), client = %id, "client secret replaced by an admin");
    audit::record(
        &state,
        Entry::new(Kind::ClientSecretRotated, Actor::of_identity(&actor))
            .on(&id)
            .with("via", "admin"),
    )
    .await;
    Ok(token_json(client_json(&client, Some(&secret))))
}
