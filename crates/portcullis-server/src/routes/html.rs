//! How every page is sent: the security headers, the layout, the error box, and the
//! page a refusal becomes, shared by the account pages (`pages`) and the OAuth pages
//! (`oauth`).

use axum::body::Body;
use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};

use portcullis::rejection::Refusal;

use super::cookie::{CookieSession, read_form};
use crate::error::{ApiError, ForPeople};

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// An HTML page with the security headers every page gets.
pub(crate) fn page(status: StatusCode, markup: Markup) -> Response {
    page_with_form_target(status, markup, None)
}

/// [`page`], for a page whose form may end in a redirect to `target` (a CSP source: an
/// OAuth client's origin). Browsers hold the redirects that follow a form submission to
/// `form-action` too, so the sign-in and consent pages of an authorization request
/// name the client they send the person back to.
pub(crate) fn page_with_form_target(
    status: StatusCode,
    markup: Markup,
    target: Option<&str>,
) -> Response {
    send(status, markup, target, false)
}

/// [`page_with_form_target`], for a page with passkey buttons: it may run our one
/// script (`/assets/passkeys.js`) and that script may call us (`script-src 'self';
/// connect-src 'self'`); nothing else changes.
pub(crate) fn page_with_script(
    status: StatusCode,
    markup: Markup,
    target: Option<&str>,
) -> Response {
    send(status, markup, target, true)
}

fn send(status: StatusCode, markup: Markup, target: Option<&str>, script: bool) -> Response {
    let mut r = (status, markup).into_response();
    let mut policy = CSP.to_owned();
    if let Some(t) = target {
        policy = policy.replace("form-action 'self'", &format!("form-action 'self' {t}"));
    }
    if script {
        policy.push_str("; script-src 'self'; connect-src 'self'");
    }
    let csp = HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static(CSP));
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(crate) fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Portcullis" }
                link rel="stylesheet" href="/assets/portcullis.css";
            }
            body {
                header { p.brand { "Portcullis" } }
                main { (body) }
            }
        }
    }
}

/// The error box: announced by screen readers when the page loads with it.
pub(crate) fn error_box(error: Option<&str>) -> Markup {
    html! {
        @if let Some(message) = error {
            p #form-error .error role="alert" { (message) }
        }
    }
}

/// What a person should read for a failed form, and the status to send it with (the
/// same status the JSON answer has: `ApiError::status`).
fn explain(e: ApiError) -> (StatusCode, String, Option<i64>) {
    (e.status(), e.for_people(), e.retry_after())
}

pub(crate) fn failed(e: ApiError, render: impl FnOnce(&str) -> Markup) -> Response {
    failed_with_target(e, render, None)
}

pub(crate) fn failed_with_target(
    e: ApiError,
    render: impl FnOnce(&str) -> Markup,
    target: Option<&str>,
) -> Response {
    // For the log layer, as the JSON answers do.
    let refusal = match &e {
        ApiError::Auth(rejection) => Some(Refusal(rejection.clone())),
        _ => None,
    };
    let failure = match &e {
        ApiError::Unexpected(error) => {
            Some(crate::error::Failure::Unexpected(format!("{error:#}")))
        }
        _ => None,
    };
    let (status, message, retry_after) = explain(e);
    let mut r = page_with_form_target(status, render(&message), target);
    if let Some(failure) = failure {
        r.extensions_mut().insert(failure);
    }
    if let Some(refusal) = refusal {
        r.extensions_mut().insert(refusal);
    }
    if let Some(secs) = retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    r
}

/// Pages answer in HTML, also when the `AuthLayer` in front of them refuses a request
/// before any handler runs (a cross-site form, a bad bearer token, the session store
/// down): the layer's JSON refusal becomes the "That did not work" page, with the same
/// status and headers. For `/account*` and the OAuth forms (`/oauth/authorize`,
/// `/oauth/logout`) always; elsewhere (`/session/logout`) when the request was a form.
pub async fn html_refusals(request: Request, next: axum::middleware::Next) -> Response {
    let path = request.uri().path();
    let page_request = path.starts_with("/account")
        || path.starts_with("/oauth/")
        || super::cookie::is_form(request.headers());
    let response = next.run(request).await;
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !page_request || !is_json || response.status().is_success() {
        return response;
    }
    // Read by type, never from the JSON text: a refused credential carries the
    // library's `Refusal`, any other failure of ours its text for people.
    let message = if let Some(Refusal(rejection)) = response.extensions().get::<Refusal>() {
        ApiError::Auth(rejection.clone()).for_people()
    } else if let Some(ForPeople(text)) = response.extensions().get::<ForPeople>() {
        text.clone()
    } else {
        "That request was refused.".to_owned()
    };
    let (parts, _body) = response.into_parts();
    let mut html = page(
        parts.status,
        layout(
            "Refused",
            html! {
                h1 { "That did not work" }
                (error_box(Some(&message)))
                p { a href="/account" { "Back to your account" } }
            },
        ),
    );
    // The challenge and any Retry-After stay; the body and its type are the page's.
    for name in [header::WWW_AUTHENTICATE, header::RETRY_AFTER] {
        if let Some(value) = parts.headers.get(&name) {
            html.headers_mut().insert(name, value.clone());
        }
    }
    // So do the extensions: the `Refusal` or `Failure` the log layer (`error::finish`)
    // records the answer by.
    *html.extensions_mut() = parts.extensions;
    html
}

pub(crate) fn refused(e: ApiError) -> Response {
    failed(e, |message| {
        layout(
            "Refused",
            html! {
                h1 { "That did not work" }
                (error_box(Some(message)))
                p { a href="/account" { "Back to your account" } }
            },
        )
    })
}

/// A moment for people: "2026-11-29 05:03 UTC".
pub(crate) fn when(secs: i64) -> String {
    let t = portcullis::clock::system_time(secs);
    // "2026-11-29T05:03:00Z" → "2026-11-29 05:03 UTC"
    let text = humantime::format_rfc3339_seconds(t).to_string();
    format!("{} {} UTC", &text[..10], &text[11..16])
}

/// The account page again with `notice` or `error` over its forms (303 back to it
/// with a query naming the outcome).
pub(super) fn back_to_account(outcome: &str) -> Response {
    Redirect::to(&format!("/account?done={outcome}")).into_response()
}

/// A refused account form: a page saying why, with the way back.
pub(super) fn account_refused(e: ApiError) -> Response {
    failed(e, |message| {
        layout(
            "That did not work",
            html! {
                h1 { "That did not work" }
                (error_box(Some(message)))
                p { a href="/account" { "Back to your account" } }
            },
        )
    })
}

/// Reads an account form of type `T` posted in a cookie session, its synchronizer
/// token checked; or the page to answer instead: the sign-in page when nobody is
/// signed in, the refusal's page otherwise.
pub(super) async fn account_form<T: serde::de::DeserializeOwned>(
    signed_in: Result<Option<CookieSession>, ApiError>,
    request: Request,
    csrf: impl Fn(&T) -> &str,
) -> Result<(portcullis::strategy::Identity, T), Response> {
    let read = async {
        let signed_in = signed_in?;
        if signed_in.is_none() {
            return Ok(None);
        }
        let (parts, body): (Parts, Body) = request.into_parts();
        let form: T = read_form(parts, body).await?;
        Ok(super::cookie::form_session(Ok(signed_in), csrf(&form))?
            .map(|identity| (identity, form)))
    };
    match read.await {
        Ok(Some(found)) => Ok(found),
        // Signed out meanwhile: to the sign-in page.
        Ok(None) => Err(Redirect::to("/login").into_response()),
        Err(e) => Err(refused(e)),
    }
}

#[cfg(test)]
mod tests {
    use portcullis::rejection::Rejection;

    use super::*;

    /// Issue 14: the pages answered 500 for `InvalidGrant`, which the JSON routes answer
    /// 400; now both take the status from `ApiError::status`.
    #[test]
    fn a_page_answers_every_failure_with_the_status_the_json_route_gives() {
        let cases = || {
            vec![
                (ApiError::InvalidRequest("bad".into()), 400, None),
                (ApiError::UsernameTaken, 409, None),
                (ApiError::InvalidCredentials, 401, None),
                (ApiError::InvalidGrant, 400, None),
                (ApiError::Throttled { retry_after: 7 }, 429, Some(7)),
                (ApiError::Busy, 503, Some(1)),
                (ApiError::Auth(Rejection::CrossSiteRequest), 403, None),
                (ApiError::Auth(Rejection::MissingCredentials), 401, None),
                (ApiError::NotFound("gone"), 404, None),
                (ApiError::TooLarge, 413, None),
                (
                    ApiError::UnsupportedMediaType("text/plain".into()),
                    415,
                    None,
                ),
                (ApiError::Unexpected(anyhow::anyhow!("boom")), 500, None),
            ]
        };
        for ((page, status, retry), (json, _, _)) in cases().into_iter().zip(cases()) {
            let json = json.into_response();
            let (page_status, _, page_retry) = explain(page);
            assert_eq!(page_status.as_u16(), status);
            assert_eq!(json.status().as_u16(), status);
            assert_eq!(page_retry, retry);
            assert_eq!(
                json.headers().get(header::RETRY_AFTER).map(|v| v
                    .to_str()
                    .unwrap()
                    .parse::<i64>()
                    .unwrap()),
                retry
            );
        }
    }
}
