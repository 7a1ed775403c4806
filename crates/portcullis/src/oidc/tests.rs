use super::*;

#[test]
fn only_local_paths_are_returned_to() {
    assert!(local_path("/notes?x=1"));
    for bad in [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "notes",
        "/a\nb",
    ] {
        assert!(!local_path(bad), "{bad}");
    }
}

fn flow() -> Flow {
    Flow {
        s: "state".into(),
        n: "nonce".into(),
        v: "verifier".into(),
        r: "/x".into(),
        e: 100,
    }
}

fn cookie_header(set: &HeaderValue) -> HeaderMap {
    let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
    let mut h = HeaderMap::new();
    h.insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("other=1; {pair}")).unwrap(),
    );
    h
}

#[test]
fn the_flow_cookie_opens_only_with_its_key_and_unchanged() {
    let cookie = FlowCookie::new(&[1; 32], true, "b".into()).unwrap();
    let set = cookie.set(&flow()).unwrap();
    let text = set.to_str().unwrap();
    assert!(
        text.starts_with("__Host-portcullis_oidc=")
            && text.contains("; Secure")
            && text.contains("HttpOnly")
    );
    assert!(!text.contains("verifier"), "sealed, not readable");
    let opened = cookie.read(&cookie_header(&set)).unwrap();
    assert_eq!(
        (opened.s.as_str(), opened.v.as_str(), opened.e),
        ("state", "verifier", 100)
    );
    // Another key, a flipped byte, a truncated value, another cookie's name: nothing.
    let other = FlowCookie::new(&[2; 32], true, "b".into()).unwrap();
    assert!(other.read(&cookie_header(&set)).is_none());
    let value = text.split(';').next().unwrap().split_once('=').unwrap().1;
    let mut bytes = crate::b64::decode(value.as_bytes()).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    assert!(cookie.open(&crate::b64::encode(&bytes)).is_none());
    assert!(cookie.open(&value[..10]).is_none());
    let plain_http = FlowCookie::new(&[1; 32], false, "b".into()).unwrap();
    assert!(
        plain_http.open(value).is_none(),
        "sealed for the __Host- name only"
    );
    let other_client = FlowCookie::new(&[1; 32], true, "c".into()).unwrap();
    assert!(
        other_client.open(value).is_none(),
        "sealed for one client only"
    );
    // Two cookies of the name (one planted from a sibling site): neither counts.
    let mut two = cookie_header(&set);
    let again = cookie.set(&flow()).unwrap();
    two.append(
        header::COOKIE,
        HeaderValue::from_str(again.to_str().unwrap().split(';').next().unwrap()).unwrap(),
    );
    assert!(cookie.read(&two).is_none());
    assert!(cookie.clear().to_str().unwrap().contains("Max-Age=0"));
}

/// OpenID Connect Core §3.1.3.6's worked example.
#[test]
fn at_hash_matches_the_specifications_example() {
    assert_eq!(
        at_hash("RS256", "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y").as_deref(),
        Some("77QmUPtjPfzWtF2AnpK9RQ")
    );
    assert_eq!(at_hash("none", "x"), None);
}

#[tokio::test]
async fn an_oauth2_provider_gets_state_and_pkce_but_no_nonce_or_openid() {
    let client = OidcClient::builder("https://github.com", "app", "https://app.example/cb")
        .oauth2_endpoints(
            "https://github.com/login/oauth/authorize",
            "https://github.com/login/oauth/access_token",
        )
        .scope("read:user user:email")
        .flow_key([1; 32])
        .build()
        .await
        .unwrap();
    let begun = client.begin("/after").unwrap();
    let q: std::collections::HashMap<String, String> = url::Url::parse(&begun.location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert!(
        begun
            .location
            .starts_with("https://github.com/login/oauth/authorize?")
    );
    assert_eq!(q["scope"], "read:user user:email", "no openid added");
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q.contains_key("state") && q.contains_key("code_challenge"));
    assert!(!q.contains_key("nonce"));
    // Plain http endpoints are refused (loopback excepted).
    let refused = OidcClient::builder("https://github.com", "app", "https://app.example/cb")
        .oauth2_endpoints("http://github.com/authorize", "https://github.com/token")
        .flow_key([1; 32])
        .build()
        .await;
    assert!(matches!(refused, Err(OidcError::Config(_))));
}
