//! Who is asking at the token, introspection and revocation endpoints (RFC 6749 §2.3).
//!
//! A confidential client proves itself with its secret, in an HTTP Basic header
//! (`client_secret_basic`) or in the form (`client_secret_post`), never both. A public
//! client (a single-page or native app) has no secret and names itself with
//! `client_id` alone; where that is enough is the caller's choice (`Public`).
//!
//! Secrets are 256 random bits stored as SHA-256 and compared in constant time.
//! Guessing one is hopeless, so these endpoints have no throttle.

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use portcullis::opaque::Opaque;
use portcullis_store::Client;

use crate::error::ApiError;
use crate::state::AppState;

/// Whether a public client, which proves nothing, may ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Public {
    /// Yes: what it asks for is bound to it some other way (a code to its PKCE
    /// verifier, a refresh token to its family).
    Allowed,
    /// No: the answer is worth something on its own (introspection).
    Refused,
}

/// The client's credentials, from the one method it used.
struct Presented {
    id: String,
    secret: Option<String>,
}

fn percent_decoded(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

fn basic(headers: &HeaderMap) -> Result<Option<Presented>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ApiError::InvalidClient)?;
    let Some(encoded) = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, rest)| rest.trim())
    else {
        return Err(ApiError::InvalidClient);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(ApiError::InvalidClient)?;
    let (id, secret) = decoded.split_once(':').ok_or(ApiError::InvalidClient)?;
    Ok(Some(Presented {
        id: percent_decoded(id).ok_or(ApiError::InvalidClient)?,
        secret: Some(percent_decoded(secret).ok_or(ApiError::InvalidClient)?),
    }))
}

/// The authenticated client, or 401 `invalid_client` (unknown, disabled, wrong secret,
/// a secret from a public client, none from a confidential one: all alike).
pub(super) async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    client_id: Option<&str>,
    client_secret: Option<&str>,
    public: Public,
) -> Result<Client, ApiError> {
    let presented = match (basic(headers)?, client_id, client_secret) {
        // A form `client_id` beside the header is tolerated when it names the same
        // client (some libraries send both); anything more is two methods.
        (Some(b), id, None) if id.is_none_or(|id| id == b.id) => b,
        (Some(_), _, _) => {
            return Err(ApiError::InvalidRequest(
                "use one client authentication method: the Authorization header or the form".into(),
            ));
        }
        (None, Some(id), secret) => Presented {
            id: id.to_owned(),
            secret: secret.map(str::to_owned),
        },
        (None, None, _) => return Err(ApiError::InvalidClient),
    };
    let client = state
        .0
        .store
        .client_by_id(&presented.id)
        .await?
        .filter(|c| !c.disabled)
        .ok_or(ApiError::InvalidClient)?;
    match (client.public, presented.secret) {
        (true, None) if public == Public::Allowed => Ok(client),
        (false, Some(secret)) => {
            let secret = Opaque::parse(&secret).ok_or(ApiError::InvalidClient)?;
            aws_lc_rs::constant_time::verify_slices_are_equal(
                &secret.sha256(),
                &client.secret_hash,
            )
            .map_err(|_| ApiError::InvalidClient)?;
            Ok(client)
        }
        _ => Err(ApiError::InvalidClient),
    }
}
