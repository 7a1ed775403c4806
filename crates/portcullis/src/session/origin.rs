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
    url::Url::parse(origin).is_ok_and(|u| crate::remote::is_loopback(&u))
}
