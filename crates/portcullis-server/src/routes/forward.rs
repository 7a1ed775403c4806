//! `GET /auth/forward`: forward authentication for apps behind a reverse proxy
//! (nginx `auth_request`, Traefik `forwardAuth`, Caddy `forward_auth`), as
//! oauth2-proxy and Authelia answer it.
//!
//! The proxy asks before each request to the app it protects, with the request's
//! cookies and `Authorization` header. The answer authenticates them exactly as
//! `GET /auth/me` does (a bearer token, else the session cookie, from memory), and says:
//! - **200** with identity headers for the upstream: `X-Auth-Request-User` (the
//!   username), `X-Auth-Request-Preferred-Username`, `X-Auth-Request-Email` (a verified
//!   address only), `X-Portcullis-Sub`, `X-Portcullis-Scope`;
//! - **403** when the person lacks a scope the location asks for (`?scope=a+b`);
//! - when the sign-in lacks an authentication method the location asks for
//!   (`?amr=mfa`: RFC 8176 values, all needed): **401** with RFC 9470's step-up
//!   challenge (`error="insufficient_user_authentication"`, `acr_values="aal2"` for
//!   `mfa`) to a program, **403** with a page saying how to turn a second factor on
//!   to a browser (signing in again would not help: an account with a second factor
//!   is always asked for it);
//! - **401** to an API client (no `text/html` in `Accept`), with the RFC 6750 challenge;
//! - to a browser, the way to the sign-in page with the original URL as `return_to`:
//!   a **302** there when the proxy follows Traefik's and Caddy's convention
//!   (`X-Forwarded-Uri`), or a **401** naming it in `X-Portcullis-Login` for nginx,
//!   whose `auth_request` passes only 2xx, 401 and 403 on (its `error_page 401`
//!   redirects there; docs/deployment.md).
//!
//! The original request's method, scheme, host and path come from `X-Forwarded-Method`,
//! `X-Forwarded-Proto`, `X-Forwarded-Host` and `X-Forwarded-Uri` (or nginx's
//! `X-Original-URI`), read only from a peer in `trusted_proxies`: from anyone else they
//! could make the sign-in page send people anywhere.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis::rejection::Rejection;
use portcullis::strategy::{Actor, Identity};
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::AppState;

/// `?scope=a+b&amr=mfa`: scopes and authentication methods the location needs.
#[derive(Deserialize, Default)]
struct ForwardQuery {
    scope: Option<String>,
    amr: Option<String>,
}

/// The words of a query value: space (or `+`) separated.
fn words(value: &str) -> Vec<&str> {
    value.split([' ', '+']).filter(|s| !s.is_empty()).collect()
}

/// The request the proxy asks about, as a trusted proxy tells it.
struct Original {
    url: String,
    /// nginx's convention (`X-Original-URI`): a refusal is a 401 with the way to the
    /// sign-in page in a header, not a redirect.
    nginx: bool,
}

impl Original {
    fn read(headers: &HeaderMap) -> Option<Original> {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let (uri, nginx) = match (get("x-forwarded-uri"), get("x-original-uri")) {
            (Some(uri), _) => (uri, false),
            (None, Some(uri)) => (uri, true),
            (None, None) => return None,
        };
        let scheme = match get("x-forwarded-proto").unwrap_or("https") {
            "https" => "https",
            "http" => "http",
            _ => return None,
        };
        let host = get("x-forwarded-host").or_else(|| get("host"))?;
        let host_ok = !host.is_empty()
            && host.len() <= 255
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
        let uri_ok = uri.starts_with('/')
            && !uri.starts_with("//")
            && uri.len() <= 4096
            && !uri
                .bytes()
                .any(|b| b.is_ascii_control() || b == b' ' || b == b'\\');
        (host_ok && uri_ok).then(|| Original {
            url: format!("{scheme}://{host}{uri}"),
            nginx,
        })
    }
}

/// A URL the sign-in page may go back to after signing in, besides an authorization
/// request of ours: an `https` URL (or `http` on a loopback host, for development)
/// whose host `forward_auth_domains` names, with no credentials in it.
pub(in crate::routes) fn forward_target(
    config: &crate::config::Config,
    to: &str,
) -> Option<String> {
    if config.forward_auth_domains.is_empty()
        || to.len() > 4096
        || to.bytes().any(|b| b.is_ascii_control() || b == b'\\')
    {
        return None;
    }
    let url = url::Url::parse(to).ok()?;
    let host = url.host_str()?.to_ascii_lowercase();
    let scheme_ok =
        url.scheme() == "https" || (url.scheme() == "http" && crate::client::loopback_host(&host));
    let named = config
        .forward_auth_domains
        .iter()
        .any(|d| match d.strip_prefix('.') {
            Some(parent) => host == parent || host.ends_with(d.as_str()),
            None => host == *d,
        });
    (scheme_ok && named && url.username().is_empty() && url.password().is_none())
        .then(|| url.to_string())
}

/// The origin of a URL, for the sign-in page's `form-action` (the form's redirects end
/// there).
pub(in crate::routes) fn origin_of(url: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()
        .map(|u| u.origin().ascii_serialization())
}

/// `GET /auth/forward` (any method a proxy sends; see the module documentation).
#[utoipa::path(get, path = "/auth/forward", tag = "accounts",
    security(("bearer" = []), ("session" = [])),
    params(
        ("scope" = Option<String>, Query, description = "Scopes the protected location needs, space separated: 403 without"),
        ("amr" = Option<String>, Query, description = "Authentication methods (RFC 8176: mfa, otp, hwk, …) the sign-in must have used, all of them: without, 401 insufficient_user_authentication to a program, 403 to a browser"),
        ("X-Forwarded-Uri" = Option<String>, Header, description = "The original path and query (Traefik, Caddy); from a trusted proxy"),
        ("X-Original-URI" = Option<String>, Header, description = "The original path and query (nginx); from a trusted proxy"),
    ),
    responses(
        (status = 200, description = "Signed in: identity headers X-Auth-Request-User, X-Auth-Request-Preferred-Username, X-Auth-Request-Email (verified only), X-Portcullis-Sub, X-Portcullis-Scope"),
        (status = 302, description = "A browser, behind Traefik or Caddy (X-Forwarded-Uri): to the sign-in page, return_to the original URL"),
        (status = 400, description = "A malformed Authorization header", body = super::schemas::ErrorBody),
        (status = 401, description = "Not signed in: the RFC 6750 challenge; for a browser behind nginx, X-Portcullis-Login names the sign-in page with return_to. Or a program's sign-in without the location's ?amr=: insufficient_user_authentication (RFC 9470)", body = super::schemas::ErrorBody),
        (status = 403, description = "insufficient_scope (the location's ?scope=), access_denied (a machine client), or a browser's sign-in without the location's ?amr= (an HTML page)", body = super::schemas::ErrorBody),
    ))]
pub async fn forward(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
) -> Response {
    // The request's own parts, not a copy of them (this runs before every request the
    // proxy lets through).
    let (parts, _) = request.into_parts();
    let query: ForwardQuery = match parts.uri.query() {
        Some(_) => axum::extract::Query::try_from_uri(&parts.uri)
            .map(|q| q.0)
            .unwrap_or_default(),
        None => ForwardQuery::default(),
    };
    let original = state
        .0
        .config
        .trusted_proxies
        .trusts(peer.ip())
        .then(|| Original::read(&parts.headers))
        .flatten();
    let identity = match state.0.chain.authenticate(&parts).await {
        Ok(Some(identity)) => identity,
        Ok(None) => {
            return refuse(
                &state,
                &parts.headers,
                original,
                Rejection::MissingCredentials,
            );
        }
        Err(rejection) => return refuse(&state, &parts.headers, original, rejection),
    };
    if !matches!(identity.actor(), Actor::Person { .. }) {
        return ApiError::NotForClients.into_response();
    }
    if let Some(wanted) = query.amr.as_deref() {
        let wanted = words(wanted);
        let has = identity.amr();
        if !wanted.iter().all(|w| has.contains(w)) {
            return weak_sign_in(&state, &parts.headers, &wanted);
        }
    }
    if let Some(wanted) = query.scope.as_deref() {
        let wanted = words(wanted);
        let has = crate::accounts::person_scope(&state.0.config, &identity);
        if !wanted
            .iter()
            .all(|w| has.split_ascii_whitespace().any(|h| h == *w))
        {
            return ApiError::Auth(Rejection::InsufficientScope(wanted.join(" "))).into_response();
        }
    }
    let mut r = StatusCode::OK.into_response();
    if let Err(e) = identity_headers(&state, &identity, r.headers_mut()).await {
        return e.into_response();
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Whether the request comes from a browser: an `Accept` with `text/html`.
fn from_browser(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

/// Signed in, but not with the methods the location asks for.
fn weak_sign_in(state: &AppState, headers: &HeaderMap, wanted: &[&str]) -> Response {
    if !from_browser(headers) {
        let acr = if wanted.contains(&"mfa") { "aal2" } else { "" };
        return ApiError::Auth(Rejection::InsufficientUserAuthentication(acr.into()))
            .into_response();
    }
    // The page shows at the protected app's address: the way to the account is whole.
    let account = format!("{}/account", state.0.config.issuer.trim_end_matches('/'));
    let page = super::html::layout(
        "A second factor is needed",
        maud::html! {
            h1 { "This page needs a second factor" }
            p #step-up { "You are signed in, but this page asks for a sign-in that used a second factor (an authenticator app or a passkey). Turn one on from your account, sign out, and sign in again with it." }
            p { a #account href=(account) { "Your account" } }
        },
    );
    let mut r = (StatusCode::FORBIDDEN, page).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Not signed in (or the credential was refused): 401 for a program; for a browser,
/// the way to the sign-in page, back to the original URL when it is one of ours.
fn refuse(
    state: &AppState,
    headers: &HeaderMap,
    original: Option<Original>,
    rejection: Rejection,
) -> Response {
    let mut r = ApiError::Auth(rejection).into_response();
    if !from_browser(headers) {
        return r;
    }
    let issuer = state.0.config.issuer.trim_end_matches('/');
    let back = original
        .as_ref()
        .and_then(|o| forward_target(&state.0.config, &o.url));
    let login = match &back {
        Some(url) => format!(
            "{issuer}/login?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("return_to", url)
                .finish()
        ),
        None => format!("{issuer}/login"),
    };
    let Ok(location) = HeaderValue::from_str(&login) else {
        return r;
    };
    if original.as_ref().is_some_and(|o| !o.nginx) {
        let mut redirect = StatusCode::FOUND.into_response();
        redirect.headers_mut().insert(header::LOCATION, location);
        redirect
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return redirect;
    }
    r.headers_mut()
        .insert(HeaderName::from_static("x-portcullis-login"), location);
    r
}

/// The headers the upstream reads: who is signed in, from the token alone for a
/// bearer request, from the session and the in-memory profile for a cookie.
async fn identity_headers(
    state: &AppState,
    identity: &Identity,
    headers: &mut HeaderMap,
) -> Result<(), ApiError> {
    let (username, email): (Option<String>, Option<String>) = match identity.token() {
        Some(token) => {
            let name = token
                .claim("preferred_username")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned);
            let verified = token
                .claim("email_verified")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false);
            let email = token
                .claim("email")
                .and_then(serde_json::Value::as_str)
                .filter(|_| verified)
                .map(str::to_owned);
            (name, email)
        }
        None => {
            let profile = super::auth::profile(state, identity.subject()).await?;
            let email = profile
                .email
                .as_ref()
                .filter(|(_, v)| *v)
                .map(|(e, _)| e.clone());
            (Some(profile.username.clone()), email)
        }
    };
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    put("x-portcullis-sub", identity.subject());
    match identity.token() {
        // The token's own scope string, as it is.
        Some(token) => put(
            "x-portcullis-scope",
            token.registered_claims().scope.as_deref().unwrap_or(""),
        ),
        None => put(
            "x-portcullis-scope",
            &crate::accounts::person_scope(&state.0.config, identity),
        ),
    }
    if let Some(name) = &username {
        put("x-auth-request-user", name);
        put("x-auth-request-preferred-username", name);
    }
    if let Some(email) = &email {
        put("x-auth-request-email", email);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(domains: &[&str]) -> crate::config::Config {
        let mut c = crate::config::Config::defaults().unwrap();
        c.forward_auth_domains = domains.iter().map(|d| (*d).to_owned()).collect();
        c
    }

    #[test]
    fn only_the_protected_hosts_over_https_without_credentials_are_a_way_back() {
        let c = config(&["app.test", ".apps.test"]);
        for ok in [
            "https://app.test/dash?x=1",
            "https://a.apps.test/",
            "https://apps.test/",
        ] {
            assert!(forward_target(&c, ok).is_some(), "{ok}");
        }
        for refused in [
            "https://user:pw@app.test/",
            "https://user@app.test/",
            "http://app.test/",
            "https://evil.test/",
            "https://app.test.evil.test/",
            "https://evilapps.test/",
            "javascript:alert(1)",
            "//app.test/",
            "/dash",
            "https://app.test/\u{0}",
        ] {
            assert_eq!(forward_target(&c, refused), None, "{refused}");
        }
        // Plain http only on this machine; nothing at all without the setting.
        let local = config(&["127.0.0.1", "localhost"]);
        assert!(forward_target(&local, "http://127.0.0.1:8081/x").is_some());
        assert!(forward_target(&local, "http://localhost/x").is_some());
        assert_eq!(forward_target(&config(&[]), "https://app.test/"), None);
    }

    #[test]
    fn a_proxys_description_of_the_original_request_is_checked() {
        let read = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            Original::read(&h).map(|o| (o.url, o.nginx))
        };
        let base = [
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "app.test"),
        ];
        assert_eq!(
            read(&[base[0], base[1], ("x-forwarded-uri", "/a?b=c")]),
            Some(("https://app.test/a?b=c".into(), false))
        );
        assert_eq!(
            read(&[base[0], base[1], ("x-original-uri", "/a")]),
            Some(("https://app.test/a".into(), true))
        );
        for bad in [
            [base[0], base[1], ("x-forwarded-uri", "//evil.test/")],
            [base[0], base[1], ("x-forwarded-uri", "relative")],
            [base[0], base[1], ("x-forwarded-uri", "/a b")],
            [
                base[0],
                ("x-forwarded-host", "app.test/evil"),
                ("x-forwarded-uri", "/"),
            ],
            [
                base[0],
                ("x-forwarded-host", "user@evil.test"),
                ("x-forwarded-uri", "/"),
            ],
            [
                ("x-forwarded-proto", "ftp"),
                base[1],
                ("x-forwarded-uri", "/"),
            ],
        ] {
            assert_eq!(read(&bad), None, "{bad:?}");
        }
        assert_eq!(read(&base), None, "no path: nothing to go back to");
    }
}
