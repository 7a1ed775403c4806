//! What a person sees of the program that signed in: the `User-Agent` a login sent,
//! kept (cut, without control characters) as the session's or refresh family's label,
//! and shown as a short "Firefox on Linux" description, with the full string beside it.

use axum::http::{HeaderMap, header};

/// The longest label kept, in characters.
const MAX_LABEL: usize = 200;

/// The label of a login: its `User-Agent`, cut to 200 characters, without control
/// characters; "unknown client" when it sent none.
pub fn label(headers: &HeaderMap) -> String {
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|ua| !ua.is_empty())
        .unwrap_or("unknown client");
    ua.chars()
        .filter(|c| !c.is_control())
        .take(MAX_LABEL)
        .collect()
}

/// A short description of a label: "Firefox on Linux", "Chrome on Android" for the
/// browsers the parser knows; for any other program (curl, an HTTP library, an app),
/// the product name its `User-Agent` starts with (`curl/8.5.0` → "curl"), cut to 40
/// characters. The parser files every such program under one "HTTP Library" or
/// "crawler" name, which says less than the product name.
pub fn describe(label: &str) -> String {
    const UNKNOWN: &str = woothee::woothee::VALUE_UNKNOWN;
    if let Some(ua) = woothee::parser::Parser::new().parse(label)
        && ua.name != UNKNOWN
        && matches!(
            ua.category,
            "pc" | "smartphone" | "mobilephone" | "appliance"
        )
    {
        return if ua.os == UNKNOWN {
            ua.name.to_owned()
        } else {
            format!("{} on {}", ua.name, ua.os)
        };
    }
    let product = match label.split_once('/') {
        Some((product, _)) if !product.trim().is_empty() => product.trim(),
        _ => label,
    };
    product.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_and_programs_get_short_names() {
        for (ua, short) in [
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
                "Firefox on Linux",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
                "Chrome on Android",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
                "Safari on Mac OSX",
            ),
            ("curl/8.5.0", "curl"),
            ("python-requests/2.32.3", "python-requests"),
            ("reqwest", "reqwest"),
            ("unknown client", "unknown client"),
            (
                "Googlebot/2.1 (+http://www.google.com/bot.html)",
                "Googlebot",
            ),
        ] {
            assert_eq!(describe(ua), short, "{ua}");
        }
        assert_eq!(describe(&"x".repeat(300)).len(), 40);
    }

    #[test]
    fn labels_are_cut_and_cleaned() {
        let mut headers = HeaderMap::new();
        assert_eq!(label(&headers), "unknown client");
        headers.insert(header::USER_AGENT, "a\tb".repeat(150).parse().unwrap());
        let l = label(&headers);
        assert_eq!(l.chars().count(), 200);
        assert!(!l.contains('\t'));
    }
}
