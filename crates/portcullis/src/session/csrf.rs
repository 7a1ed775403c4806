//! Cross-site request forgery checks for requests authenticated by a session cookie.
//!
//! A browser attaches the cookie to any request to our site, including one a hostile
//! page makes it send. So a state-changing request (any method but GET, HEAD, OPTIONS
//! and TRACE) that a cookie authenticates must prove it comes from our own pages:
//!
//! 1. **Fetch Metadata.** Browsers since 2020–2023 send `Sec-Fetch-Site`;
//!    `same-origin` (and `none`, a navigation the user started) pass.
//! 2. **Origin.** Otherwise the `Origin` header must be the site's origin (or one
//!    allowed with [`super::SessionConfig::with_allowed_origin`], which the browser
//!    calls `same-site` or `cross-site`); `null` never passes.
//! 3. **Token header.** Without either (old browsers, scripts with a cookie jar), the
//!    request must carry the session's synchronizer token in `X-CSRF-Token`.
//!
//! HTML forms also carry the token in a hidden field, which the handler checks with
//! [`super::SessionContext::check_csrf_token`]: a second, independent defence.

use http::request::Parts;
use http::{HeaderMap, Method, header};

use super::{SessionConfig, SessionContext};
use crate::rejection::Rejection;

/// The header a script may send the synchronizer token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// True for methods that must not change state (RFC 9110 §9.2.1).
pub fn is_safe_method(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Passes a request a session cookie authenticated, or refuses it as cross-site.
pub fn check_request(
    parts: &Parts,
    config: &SessionConfig,
    session: &SessionContext,
) -> Result<(), Rejection> {
    if is_safe_method(&parts.method) {
        return Ok(());
    }
    check_origin(&parts.headers, config).or_else(|refused| match refused {
        // Neither header: fall back to the token header.
        Unknown => match parts.headers.get(CSRF_HEADER).map(|v| v.to_str()) {
            Some(Ok(token)) => session.check_csrf_token(token),
            _ => Err(Rejection::CrossSiteRequest),
        },
        CrossSite => Err(Rejection::CrossSiteRequest),
    })
}

/// Why [`check_origin`] did not pass a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refused {
    /// The browser said it comes from elsewhere.
    CrossSite,
    /// No `Sec-Fetch-Site` and no `Origin`: the request cannot tell.
    Unknown,
}
use Refused::{CrossSite, Unknown};

/// The Fetch Metadata and `Origin` checks alone: for forms posted before any session
/// exists (login, signup), where there is no token to fall back on.
pub fn check_origin(headers: &HeaderMap, config: &SessionConfig) -> Result<(), Refused> {
    let site = headers.get("sec-fetch-site").map(|v| v.as_bytes());
    if matches!(site, Some(b"same-origin" | b"none")) {
        return Ok(());
    }
    // Another allowed front end of the site is `same-site` or `cross-site` to the
    // browser; its `Origin`, which pages cannot forge, decides.
    match headers.get(header::ORIGIN).map(|v| v.to_str()) {
        Some(Ok(origin)) if super::origin_of(origin).is_some_and(|o| config.origin_allowed(&o)) => {
            Ok(())
        }
        Some(_) => Err(CrossSite),
        None if site.is_some() => Err(CrossSite),
        None => Err(Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::SessionSecret;
    use crate::session::tests::record;

    fn parts(method: Method, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().method(method).uri("/x");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn ctx() -> (SessionContext, String) {
        let secret = SessionSecret::generate().unwrap();
        let c = SessionContext::new(std::sync::Arc::new(record(0, 10)), secret);
        let token = c.csrf_token().to_owned();
        (c, token)
    }

    /// Issue 14: an origin written with its default port failed every check.
    #[test]
    fn origins_are_compared_as_origins_not_as_text() {
        let (c, _) = ctx();
        for configured in [
            "https://App.example:443",
            "https://app.example/",
            "https://app.example",
        ] {
            let config = SessionConfig::for_origin(configured).unwrap();
            assert_eq!(config.origin(), "https://app.example", "{configured}");
            for sent in [
                "https://app.example",
                "https://app.example:443",
                "HTTPS://APP.EXAMPLE",
            ] {
                let p = parts(Method::POST, &[("origin", sent)]);
                assert!(
                    check_request(&p, &config, &c).is_ok(),
                    "{configured} vs {sent}"
                );
            }
            for other in [
                "https://app.example:8443",
                "http://app.example",
                "https://app.example.evil",
            ] {
                let p = parts(Method::POST, &[("origin", other)]);
                assert!(
                    check_request(&p, &config, &c).is_err(),
                    "{configured} vs {other}"
                );
            }
        }
        let dev = SessionConfig::for_origin("http://localhost:80").unwrap();
        assert_eq!(dev.origin(), "http://localhost");
        assert!(!dev.is_secure());
        for bad in [
            "https://app.example/path",
            "https://user@app.example",
            "ftp://app.example",
            "app.example",
        ] {
            assert!(SessionConfig::for_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn safe_methods_pass_whatever_their_origin() {
        let config = SessionConfig::for_origin("https://app.example").unwrap();
        let (c, _) = ctx();
        for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
            let p = parts(m, &[("sec-fetch-site", "cross-site")]);
            assert!(check_request(&p, &config, &c).is_ok());
        }
    }

    #[test]
    fn unsafe_methods_need_same_origin_proof() {
        let config = SessionConfig::for_origin("https://app.example")
            .unwrap()
            .with_allowed_origin("https://admin.app.example")
            .unwrap();
        let (c, token) = ctx();
        let pass = [
            vec![("sec-fetch-site", "same-origin")],
            vec![("sec-fetch-site", "none")],
            vec![("origin", "https://app.example")],
            vec![("origin", "https://ADMIN.app.example")],
            vec![("x-csrf-token", token.as_str())],
            // What a browser sends from the other allowed front end.
            vec![
                ("sec-fetch-site", "same-site"),
                ("origin", "https://admin.app.example"),
            ],
            vec![
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://admin.app.example"),
            ],
        ];
        for h in &pass {
            for m in [Method::POST, Method::DELETE, Method::PUT, Method::PATCH] {
                assert!(check_request(&parts(m, h), &config, &c).is_ok(), "{h:?}");
            }
        }
        let refuse = [
            vec![("sec-fetch-site", "cross-site")],
            vec![("sec-fetch-site", "same-site")],
            vec![
                ("sec-fetch-site", "same-site"),
                ("origin", "https://blog.app.example"),
            ],
            // Fetch Metadata that says cross-site is not rescued by a token.
            vec![
                ("sec-fetch-site", "cross-site"),
                ("x-csrf-token", token.as_str()),
            ],
            vec![("origin", "https://evil.example")],
            vec![("origin", "null")],
            vec![("origin", "http://app.example")],
            // A wrong token, or an origin that is refused, is not rescued by a token.
            vec![("x-csrf-token", "nope")],
            vec![
                ("origin", "https://evil.example"),
                ("x-csrf-token", token.as_str()),
            ],
            vec![],
        ];
        for h in &refuse {
            assert_eq!(
                check_request(&parts(Method::POST, h), &config, &c),
                Err(Rejection::CrossSiteRequest),
                "{h:?}"
            );
        }
    }
}
