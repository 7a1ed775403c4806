//! Cookies as every Portcullis cookie is read and written (the session, the OpenID
//! Connect sign-in flow, the server's device credential), on the `cookie` crate: one
//! rule for reading (exactly one cookie of the name counts) and one shape for writing
//! (`Path=/`, `HttpOnly`, `SameSite`, `Max-Age`, and `Secure` over https).

use std::time::Duration;

use ::cookie::Cookie;
use http::{HeaderMap, HeaderValue, header};

/// The value of the one cookie named `name` in a request; `None` when there is none or
/// when there are several: a cookie planted beside ours (from a sibling subdomain, or
/// over plain http) must not choose which one counts.
///
/// Read by hand rather than with the `cookie` crate's `Cookie::split_parse`, which
/// builds a whole `Cookie` (attributes and all) per pair: every request with a session
/// cookie reads it, and that parse was about 0.25 µs of a 11 µs request in a profile of
/// `/auth/me`. The rule is the crate's, pair for pair (a property test below holds the
/// two to the same answers): pairs split at `;`, each trimmed; a pair without `=` or
/// with an empty name is skipped; the name and the value are trimmed around the first
/// `=`; nothing is unquoted or percent-decoded.
pub fn single<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let mut found = None;
    for value in headers.get_all(header::COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            let Some((n, v)) = pair.split_once('=') else {
                continue;
            };
            if n.trim() == name && !name.is_empty() {
                if found.is_some() {
                    return None;
                }
                found = Some(v.trim());
            }
        }
    }
    found
}

/// Whether a browser sends a cookie along with requests another site starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SameSite {
    /// With top-level navigations from another site (a sign-in coming back), not with
    /// its forms or subrequests.
    Lax,
    /// Only with requests this site starts.
    Strict,
}

/// The `Set-Cookie` value that sets `name` to `value` for `max_age` (zero removes it),
/// for the whole origin, out of reach of scripts, and `Secure` when `secure`. Marked
/// sensitive: kept out of `Debug` output and HTTP/2 header compression tables.
pub fn set(
    name: &str,
    value: &str,
    same_site: SameSite,
    max_age: Duration,
    secure: bool,
) -> HeaderValue {
    set_in(name, value, same_site, max_age, secure, None)
}

/// [`set`], for every host under `domain` too when one is given (`Domain=`).
pub(crate) fn set_in(
    name: &str,
    value: &str,
    same_site: SameSite,
    max_age: Duration,
    secure: bool,
    domain: Option<&str>,
) -> HeaderValue {
    let mut cookie = Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .same_site(match same_site {
            SameSite::Lax => ::cookie::SameSite::Lax,
            SameSite::Strict => ::cookie::SameSite::Strict,
        })
        .max_age(::cookie::time::Duration::seconds(
            i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
        ))
        .secure(secure)
        .build();
    if let Some(domain) = domain {
        cookie.set_domain(domain.to_owned());
    }
    // Our names and values are fixed ASCII and base64url: always a valid header value.
    let mut value =
        HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""));
    value.set_sensitive(true);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn exactly_one_cookie_of_the_name_counts() {
        assert_eq!(single(&headers(&["a=1; b=2"]), "b"), Some("2"));
        assert_eq!(single(&headers(&["a=1", "b=2"]), "b"), Some("2"));
        assert_eq!(single(&headers(&["a=1"]), "b"), None);
        // Planted beside ours, in one header or two: neither counts.
        assert_eq!(single(&headers(&["b=1; b=2"]), "b"), None);
        assert_eq!(single(&headers(&["b=1", "b=2"]), "b"), None);
        // A name that only starts like ours is another cookie.
        assert_eq!(single(&headers(&["bb=1; b=2"]), "b"), Some("2"));
        // Garbage beside it is skipped.
        assert_eq!(single(&headers(&["junk; b=2"]), "b"), Some("2"));
    }

    /// What the `cookie` crate's parser says `single` is: the rule `single` keeps.
    fn single_by_the_cookie_crate<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
        let mut found = None;
        for value in headers.get_all(header::COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            for cookie in Cookie::split_parse(text).flatten() {
                if cookie.name_raw() == Some(name) {
                    if found.is_some() {
                        return None;
                    }
                    found = cookie.value_raw();
                }
            }
        }
        found
    }

    proptest::proptest! {
        /// Any header a client can send, read by hand and by the `cookie` crate: the
        /// same cookie, or none, for our names and for names that look like them.
        #[test]
        fn single_reads_as_the_cookie_crate_does(
            values in proptest::collection::vec("[ab=; \\t\"%,x-]{0,24}", 1..3),
            name in proptest::sample::select(vec!["a", "b", "ab", " a", "a ", ""]),
        ) {
            let h = headers(&values.iter().map(String::as_str).collect::<Vec<_>>());
            proptest::prop_assert_eq!(single(&h, name), single_by_the_cookie_crate(&h, name));
        }
    }

    #[test]
    fn a_cookie_with_spaces_or_an_empty_value_reads_as_before() {
        for (values, name) in [
            (&[" a = 1 ;b=2"][..], "a"),
            (&["a=; b=2"][..], "a"),
            (&["=1; a=2"][..], ""),
            (&["a=\"q\"; b"][..], "a"),
            (&["a=1=2"][..], "a"),
            (&["\ta=1"][..], "a"),
        ] {
            let h = headers(values);
            assert_eq!(
                single(&h, name),
                single_by_the_cookie_crate(&h, name),
                "{values:?}"
            );
        }
    }

    #[test]
    fn a_set_cookie_has_every_attribute() {
        let v = set("n", "v", SameSite::Strict, Duration::from_secs(600), true);
        let text = v.to_str().unwrap();
        assert!(text.starts_with("n=v"), "{text}");
        for attr in [
            "Path=/",
            "HttpOnly",
            "SameSite=Strict",
            "Max-Age=600",
            "Secure",
        ] {
            assert!(text.contains(attr), "{attr} in {text}");
        }
        assert!(v.is_sensitive());
        let cleared = set("n", "", SameSite::Lax, Duration::ZERO, false);
        let text = cleared.to_str().unwrap();
        assert!(
            text.contains("Max-Age=0") && !text.contains("Secure"),
            "{text}"
        );
    }
}
