//! Origins as browsers write them.

/// An origin as a browser serializes it in `Origin`: lower-case scheme and host (IDNA
/// applied), and no port when it is the scheme's default — so `https://App.example:443`
/// and `https://app.example` are one origin. Parsed with the `url` crate (the WHATWG
/// URL rules browsers follow), never compared as raw text. Only `http` and `https`
/// origins, with nothing after the authority but an optional `/`.
pub(crate) fn origin_of(text: &str) -> Option<String> {
    let url = url::Url::parse(text.trim()).ok()?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none();
    let origin = url.origin();
    (plain && origin.is_tuple()).then(|| origin.ascii_serialization())
}

pub(super) fn is_loopback_origin(origin: &str) -> bool {
    // An address, or the one name that always means this machine; never a name that
    // merely starts like a loopback address (127.0.0.1.example.net).
    match url::Url::parse(origin)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}
