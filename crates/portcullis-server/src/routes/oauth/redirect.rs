//! Redirect URIs: which may be registered, which match a registered one, and how an
//! answer is sent back to one.
//!
//! Matching is exact string comparison (OAuth 2.1 §2.3.1, RFC 9700 §4.1.3): no prefix,
//! no wildcard, no normalisation, so `https://app.example/cb/` and `…/cb?x=1` are other
//! URIs. The one relaxation is RFC 8252 §7.3's: a native app (a public client) that
//! registered a loopback URI (`http://127.0.0.1/…` or `http://[::1]/…`) may come back on
//! any port of it, since the operating system picks the port at run time.

use portcullis::remote::is_loopback;
use url::Url;

/// The longest redirect URI accepted, registered or requested.
pub(crate) const MAX_URI_LEN: usize = 2048;

/// Why a URI cannot be registered, or `Ok` when it can.
///
/// - absolute, without a fragment (RFC 6749 §3.1.2) and without user information;
/// - `https`, or `http` on a loopback address only (`127.0.0.1`, `[::1]`, `localhost`),
///   for development and native apps;
/// - or a private-use scheme of a native app, in reverse-domain form with a dot
///   (`com.example.app:/callback`, RFC 8252 §7.1).
pub(crate) fn check_registrable(uri: &str) -> Result<(), String> {
    if uri.len() > MAX_URI_LEN {
        return Err(format!("longer than {MAX_URI_LEN} bytes"));
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or a control character".into());
    }
    let url = Url::parse(uri).map_err(|e| format!("not an absolute URI ({e})"))?;
    if url.fragment().is_some() {
        return Err("has a fragment (#…), which a redirect URI may not have".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("carries user information (user@…)".into());
    }
    // A host name of letters, digits, dots and hyphens (or an IP literal): the origin
    // goes into a Content-Security-Policy header, whose grammar has no room for more.
    if let Some(url::Host::Domain(host)) = url.host()
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        return Err(format!("host {host:?} is not a plain host name"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "http" => Err("http is allowed on a loopback address only; use https".into()),
        "javascript" | "data" | "file" | "vbscript" | "blob" | "about" => Err(format!(
            "the {} scheme cannot be a redirect URI",
            url.scheme()
        )),
        scheme if scheme.contains('.') => Ok(()),
        scheme => Err(format!(
            "a native app's scheme is in reverse-domain form (com.example.app:/cb), not {scheme:?}"
        )),
    }
}

/// True when the loopback IP literal rule of RFC 8252 §7.3 applies to `url`: plain
/// http to a loopback address, not to the name `localhost` (§8.3).
fn loopback_ip(url: &Url) -> bool {
    url.scheme() == "http" && is_loopback(url) && !matches!(url.host(), Some(url::Host::Domain(_)))
}

/// True when `requested` is one of `registered`: the same string, or, for a public
/// client, the same loopback IP URI on another port.
pub(crate) fn matches<'a>(
    registered: impl IntoIterator<Item = &'a str>,
    requested: &str,
    public: bool,
) -> bool {
    if requested.len() > MAX_URI_LEN {
        return false;
    }
    let mut loopback: Option<Option<Url>> = None;
    for candidate in registered {
        if candidate == requested {
            return true;
        }
        if !public {
            continue;
        }
        let requested = loopback.get_or_insert_with(|| {
            Url::parse(requested)
                .ok()
                .filter(|u| loopback_ip(u) && u.fragment().is_none())
        });
        let (Some(requested), Ok(candidate)) = (requested.as_ref(), Url::parse(candidate)) else {
            continue;
        };
        if loopback_ip(&candidate)
            && candidate.host() == requested.host()
            && candidate.path() == requested.path()
            && candidate.query() == requested.query()
            && candidate.username().is_empty()
            && requested.username().is_empty()
            && requested.password().is_none()
        {
            return true;
        }
    }
    false
}

/// `uri` with `params` added to its query (a registered URI may have a query of its
/// own, which is kept: RFC 6749 §3.1.2). `None` if `uri` does not parse, which a
/// registered URI always does.
pub(crate) fn with_params(uri: &str, params: &[(&str, &str)]) -> Option<String> {
    let mut url = Url::parse(uri).ok()?;
    // Nothing to add: the URI as registered (not with an empty `?` appended).
    if params.is_empty() {
        return Some(uri.to_owned());
    }
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in params {
            query.append_pair(name, value);
        }
    }
    Some(url.into())
}

/// The source a Content-Security-Policy `form-action` needs so that a form of ours may
/// end in a redirect to `uri` (browsers check the redirects of a form submission too):
/// its origin, or its scheme for a native app's private-use scheme.
pub(crate) fn csp_source(uri: &str) -> Option<String> {
    let url = Url::parse(uri).ok()?;
    match (url.scheme(), url.host()) {
        // CSP host sources have no IPv6 literals: a native app on [::1] gets its scheme.
        ("http" | "https", Some(url::Host::Ipv6(_))) => Some(format!("{}:", url.scheme())),
        ("http" | "https", _) => Some(url.origin().ascii_serialization()),
        (scheme, _) => Some(format!("{scheme}:")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_loopback_http_and_reverse_domain_schemes_can_be_registered() {
        for good in [
            "https://app.example/cb",
            "https://app.example:8443/cb?tenant=1",
            "http://127.0.0.1/cb",
            "http://[::1]:8080/cb",
            "http://localhost:3000/cb",
            "com.example.app:/oauth",
        ] {
            assert!(check_registrable(good).is_ok(), "{good}");
        }
        for bad in [
            "/cb",
            "app.example/cb",
            "http://app.example/cb",
            "https://app.example/cb#frag",
            "https://user:pw@app.example/cb",
            "javascript:alert(1)",
            "data:text/html,hi",
            "myapp:/cb",
            "https://app.example/c b",
            "https://app.example/\ncb",
            "https://a*b.example/cb",
            "https://a;b.example/cb",
        ] {
            assert!(check_registrable(bad).is_err(), "{bad}");
        }
        assert!(
            check_registrable(&format!("https://a.example/{}", "x".repeat(MAX_URI_LEN))).is_err()
        );
    }

    #[test]
    fn a_redirect_uri_matches_exactly_or_not_at_all() {
        let registered = ["https://app.example/cb", "https://app.example/other?x=1"];
        assert!(matches(registered, "https://app.example/cb", false));
        assert!(matches(registered, "https://app.example/other?x=1", false));
        for other in [
            "https://app.example/cb/",
            "https://app.example/cb?x=1",
            "https://app.example/cb#x",
            "https://APP.example/cb",
            "https://app.example:443/cb",
            "https://app.example/cb/../cb",
            "https://app.example/cbx",
            "https://app.example.evil/cb",
            "https://app.example/other?x=1&y=2",
            "",
        ] {
            assert!(!matches(registered, other, false), "{other}");
            assert!(!matches(registered, other, true), "{other} (public)");
        }
    }

    #[test]
    fn a_native_app_may_use_any_port_of_a_registered_loopback_ip_uri() {
        let registered = ["http://127.0.0.1/cb", "http://[::1]:9/cb"];
        assert!(matches(registered, "http://127.0.0.1:51234/cb", true));
        assert!(matches(registered, "http://[::1]:40000/cb", true));
        // Not for a confidential client, not another path or host, not localhost.
        assert!(!matches(registered, "http://127.0.0.1:51234/cb", false));
        assert!(!matches(registered, "http://127.0.0.1:51234/cb2", true));
        assert!(!matches(registered, "http://127.0.0.2:51234/cb", true));
        assert!(!matches(registered, "http://[::1]:1/cb", false));
        assert!(!matches(
            ["http://localhost/cb"],
            "http://localhost:5000/cb",
            true
        ));
        assert!(!matches(registered, "http://evil@127.0.0.1:5/cb", true));
        assert!(!matches(registered, "https://127.0.0.1:5/cb", true));
    }

    #[test]
    fn parameters_are_added_to_the_registered_query() {
        assert_eq!(
            with_params(
                "https://app.example/cb?tenant=1",
                &[("code", "a b"), ("state", "s&t")]
            )
            .unwrap(),
            "https://app.example/cb?tenant=1&code=a+b&state=s%26t"
        );
        assert_eq!(
            with_params("https://app.example/bye", &[]).unwrap(),
            "https://app.example/bye"
        );
        assert_eq!(
            csp_source("https://app.example:8443/cb").unwrap(),
            "https://app.example:8443"
        );
        assert_eq!(
            csp_source("com.example.app:/cb").unwrap(),
            "com.example.app:"
        );
        assert_eq!(csp_source("http://[::1]:8080/cb").unwrap(), "http:");
    }
}
