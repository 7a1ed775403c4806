//! JSON request bodies with OAuth-shaped errors instead of axum's plain-text ones.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body. `Content-Type` must be `application/json`, with no parameter but
/// `charset=utf-8` (415 otherwise; 400 when it is missing); malformed JSON, wrong
/// types, unknown or missing fields are 400 `invalid_request` saying what is wrong; a
/// body over the limit is 413, announced or chunked.
pub struct JsonBody<T>(pub T);

/// `application/json`, optionally with `charset=utf-8` (any case, any spacing): JSON is
/// UTF-8 (RFC 8259 §8.1), and `application/*+json` types are other formats.
fn check_content_type(value: &str) -> Result<(), ApiError> {
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    let refused = || {
        ApiError::UnsupportedMediaType(format!(
            "Content-Type must be application/json (optionally with charset=utf-8), not {value:?}"
        ))
    };
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(refused());
    }
    for parameter in parts {
        let (name, v) = parameter.split_once('=').ok_or_else(refused)?;
        let v = v.trim().trim_matches('"');
        if !(name.trim().eq_ignore_ascii_case("charset") && v.eq_ignore_ascii_case("utf-8")) {
            return Err(refused());
        }
    }
    Ok(())
}

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(value) = req.headers().get(axum::http::header::CONTENT_TYPE) {
            check_content_type(value.to_str().unwrap_or_default())?;
        }
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(JsonBody(value)),
            // A body over the limit is found while reading a chunked one: 413 as well.
            Err(rejection) if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::TooLarge)
            }
            Err(rejection) => Err(ApiError::InvalidRequest(describe(&rejection))),
        }
    }
}

fn describe(rejection: &JsonRejection) -> String {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            "expected Content-Type: application/json".into()
        }
        JsonRejection::JsonSyntaxError(e) => format!("malformed JSON: {}", e.body_text()),
        JsonRejection::JsonDataError(e) => format!("invalid request body: {}", e.body_text()),
        JsonRejection::BytesRejection(_) => "request body too large or unreadable".into(),
        other => other.body_text(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_json_in_utf_8_is_accepted() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
        ] {
            assert!(check_content_type(ok).is_ok(), "{ok}");
        }
        for bad in [
            "application/problem+json",
            "application/vnd.api+json",
            "application/json; charset=utf-16",
            "application/json; boundary=x",
            "application/json; charset",
            "text/plain",
            "application/jsonx",
        ] {
            assert!(
                matches!(
                    check_content_type(bad),
                    Err(ApiError::UnsupportedMediaType(_))
                ),
                "{bad}"
            );
        }
    }
}
