//! `portcullis::oidc` against a stand-in provider over real HTTP on a random port: the
//! good sign-in, and every check of `complete` failing on its own (the state, the flow
//! cookie and its age, `iss`, the provider's error, the ID token's nonce, audience,
//! `azp`, `at_hash` and `typ`, the token endpoint's refusal), and a key the provider
//! rotated in after the client started. examples/oidc-notes runs the same client
//! against the real server.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::routing::{get, post};
use portcullis::clock::{Clock, ManualClock};
use portcullis::jwt::TokenBuilder;
use portcullis::keys::{Algorithm, KeySet, SigningKey};
use portcullis::oidc::{OidcClient, OidcError};
use serde_json::{Value, json};

const CLIENT: &str = "notes";
const SECRET: &str = "notes-secret";
const NOW: i64 = 1_800_000_000;

/// What the token endpoint's ID token gets wrong, if anything.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Twist {
    None,
    Nonce,
    Audience,
    TwoAudiencesNoAzp,
    AtHash,
    AccessTokenTyp,
    Refuse,
    NewKey,
    ForeignKey,
    Issuer,
    Expired,
    NoNonce,
    AzpOther,
    /// Two audiences with `azp` naming this client: refused unless it trusts the other.
    StrangerWithAzp,
}

struct Provider {
    url: String,
    keys: Mutex<Vec<SigningKey>>,
    twist: Mutex<Twist>,
    /// The nonce and PKCE challenge of the request the test began.
    nonce: Mutex<String>,
    challenge: Mutex<String>,
}

async fn provider(iss_parameter: bool) -> Arc<Provider> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let p = Arc::new(Provider {
        url: url.clone(),
        keys: Mutex::new(vec![
            SigningKey::generate(Algorithm::ES256, Some("k1".into())).unwrap(),
        ]),
        twist: Mutex::new(Twist::None),
        nonce: Mutex::new(String::new()),
        challenge: Mutex::new(String::new()),
    });
    let metadata = json!({
        "issuer": url,
        "jwks_uri": format!("{url}/jwks"),
        "authorization_endpoint": format!("{url}/authorize"),
        "token_endpoint": format!("{url}/token"),
        "end_session_endpoint": format!("{url}/logout"),
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": iss_parameter,
    });
    let router = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { axum::Json(metadata) }),
        )
        .route(
            "/jwks",
            get(|State(p): State<Arc<Provider>>| async move {
                let keys = p.keys.lock().unwrap();
                let set =
                    KeySet::new(keys.iter().map(|k| k.verifying_key().unwrap()).collect()).unwrap();
                set.to_public_jwks().unwrap().to_json()
            }),
        )
        .route("/token", post(token))
        .with_state(p.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    p
}

async fn token(
    State(p): State<Arc<Provider>>,
    headers: HeaderMap,
    Form(form): Form<std::collections::HashMap<String, String>>,
) -> (StatusCode, axum::Json<Value>) {
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT}:{SECRET}"));
    let twist = *p.twist.lock().unwrap();
    // The client authenticates, and proves the verifier behind the challenge.
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(portcullis::opaque::sha256(form["code_verifier"].as_bytes()));
    if headers["authorization"] != format!("Basic {basic}").as_str()
        || challenge != *p.challenge.lock().unwrap()
        || form["grant_type"] != "authorization_code"
        || form["code"] != "the-code"
        || form["redirect_uri"] != "http://127.0.0.1:9/callback"
        || twist == Twist::Refuse
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant"})),
        );
    }
    if twist == Twist::NewKey {
        let mut keys = p.keys.lock().unwrap();
        keys.insert(
            0,
            SigningKey::generate(Algorithm::ES256, Some("k2".into())).unwrap(),
        );
    }
    let access = "an-opaque-access-token";
    let at_hash = {
        let d = portcullis::opaque::sha256(if twist == Twist::AtHash {
            b"another token"
        } else {
            access.as_bytes()
        });
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&d[..16])
    };
    let nonce = if twist == Twist::Nonce {
        "another nonce".to_owned()
    } else {
        p.nonce.lock().unwrap().clone()
    };
    let mut id = TokenBuilder::new()
        .typ(Some(
            if twist == Twist::AccessTokenTyp {
                "at+jwt"
            } else {
                "JWT"
            }
            .into(),
        ))
        .issuer(if twist == Twist::Issuer {
            "https://issuer.invalid".to_owned()
        } else {
            p.url.clone()
        })
        .subject("person-1")
        .issued_at(if twist == Twist::Expired {
            NOW - 1000
        } else {
            NOW
        })
        .expires_at(if twist == Twist::Expired {
            NOW - 700
        } else {
            NOW + 300
        })
        .claim("at_hash", at_hash)
        .claim("preferred_username", "nora");
    if twist != Twist::NoNonce {
        id = id.claim("nonce", nonce);
    }
    if twist == Twist::AzpOther {
        id = id.claim("azp", "another-client");
    }
    id = match twist {
        Twist::Audience => id.audience("another-client"),
        Twist::TwoAudiencesNoAzp => id.claim("aud", json!([CLIENT, "another-client"])),
        Twist::StrangerWithAzp => id
            .claim("aud", json!([CLIENT, "another-client"]))
            .claim("azp", CLIENT),
        _ => id.audience(CLIENT),
    };
    let id_token = if twist == Twist::ForeignKey {
        // The same kid, another key: what a forger would send.
        id.sign(&SigningKey::generate(Algorithm::ES256, Some("k1".into())).unwrap())
            .unwrap()
    } else {
        id.sign(&p.keys.lock().unwrap()[0]).unwrap()
    };
    (
        StatusCode::OK,
        axum::Json(
            json!({"access_token": access, "token_type": "Bearer", "id_token": id_token, "expires_in": 300}),
        ),
    )
}

async fn client(p: &Provider, clock: Arc<ManualClock>) -> OidcClient {
    OidcClient::builder(&p.url, CLIENT, "http://127.0.0.1:9/callback")
        .client_secret(SECRET)
        .scope("profile")
        .flow_key([9; 32])
        .clock(clock)
        .build()
        .await
        .unwrap()
}

/// Begins a sign-in; the provider learns the request's nonce and challenge, as its
/// authorization endpoint would. The callback's cookie header and `state`.
fn begin(p: &Provider, oidc: &OidcClient) -> (HeaderMap, String) {
    let begun = oidc.begin("/notes/1").unwrap();
    let location = url::Url::parse(&begun.location).unwrap();
    assert!(begun.location.starts_with(&format!("{}/authorize?", p.url)));
    let q: std::collections::HashMap<String, String> =
        location.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["scope"], "openid profile");
    assert_eq!(q["redirect_uri"], "http://127.0.0.1:9/callback");
    *p.nonce.lock().unwrap() = q["nonce"].clone();
    *p.challenge.lock().unwrap() = q["code_challenge"].clone();
    let cookie = begun
        .set_cookie
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        cookie.starts_with("portcullis_oidc="),
        "plain http on loopback: no __Host- prefix"
    );
    let mut headers = HeaderMap::new();
    headers.insert(header::COOKIE, HeaderValue::from_str(&cookie).unwrap());
    (headers, q["state"].clone())
}

fn callback(p: &Provider, state: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("code", "the-code")
        .append_pair("state", state)
        .append_pair("iss", &p.url)
        .finish()
}

#[tokio::test]
async fn a_sign_in_completes_and_each_check_refuses_on_its_own() {
    let p = provider(true).await;
    let clock = Arc::new(ManualClock::new(NOW));
    let oidc = client(&p, clock.clone()).await;

    let (headers, state) = begin(&p, &oidc);
    let signed_in = oidc
        .complete(&headers, &callback(&p, &state))
        .await
        .unwrap();
    assert_eq!(signed_in.claims.sub.as_deref(), Some("person-1"));
    assert_eq!(signed_in.return_to, "/notes/1");
    assert_eq!(signed_in.access_token.as_str(), "an-opaque-access-token");
    assert!(
        signed_in
            .clear_cookie
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let logout = oidc
        .logout_url(&signed_in.id_token, Some("http://127.0.0.1:9/"))
        .unwrap();
    assert!(logout.starts_with(&format!("{}/logout?id_token_hint=", p.url)));

    // The callback's own parts.
    let (headers, state) = begin(&p, &oidc);
    let wrong_state = callback(&p, "another-state");
    assert!(matches!(
        oidc.complete(&headers, &wrong_state).await,
        Err(OidcError::Flow(_))
    ));
    assert!(
        matches!(
            oidc.complete(&HeaderMap::new(), &callback(&p, &state))
                .await,
            Err(OidcError::Flow(_))
        ),
        "no cookie"
    );
    let other_iss = format!("code=c&state={state}&iss=https%3A%2F%2Fevil.example");
    assert!(matches!(
        oidc.complete(&headers, &other_iss).await,
        Err(OidcError::IssuerMismatch)
    ));
    let no_iss = format!("code=c&state={state}");
    assert!(
        matches!(
            oidc.complete(&headers, &no_iss).await,
            Err(OidcError::IssuerMismatch)
        ),
        "promised and missing"
    );
    let denied = format!(
        "error=access_denied&state={state}&iss={}",
        url::form_urlencoded::byte_serialize(p.url.as_bytes()).collect::<String>()
    );
    let e = oidc.complete(&headers, &denied).await.unwrap_err();
    assert!(
        matches!(e, OidcError::Provider { ref error, .. } if error == "access_denied")
            && e.is_user_error()
    );
    // A flow cookie from another application's key opens nothing.
    let other = OidcClient::builder(&p.url, CLIENT, "http://127.0.0.1:9/callback")
        .client_secret(SECRET)
        .flow_key([8; 32])
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    assert!(matches!(
        other.complete(&headers, &callback(&p, &state)).await,
        Err(OidcError::Flow(_))
    ));

    // The ID token's parts, each twisted alone.
    for twist in [
        Twist::Nonce,
        Twist::NoNonce,
        Twist::Audience,
        Twist::TwoAudiencesNoAzp,
        Twist::AzpOther,
        Twist::StrangerWithAzp,
        Twist::AtHash,
        Twist::AccessTokenTyp,
        Twist::ForeignKey,
        Twist::Issuer,
        Twist::Expired,
    ] {
        *p.twist.lock().unwrap() = twist;
        let (headers, state) = begin(&p, &oidc);
        let e = oidc
            .complete(&headers, &callback(&p, &state))
            .await
            .unwrap_err();
        assert!(matches!(e, OidcError::IdToken(_)), "{twist:?}: {e}");
        assert!(!e.is_user_error());
    }
    // The same two audiences, at a client that trusts the other one: taken.
    *p.twist.lock().unwrap() = Twist::StrangerWithAzp;
    let trusting = OidcClient::builder(&p.url, CLIENT, "http://127.0.0.1:9/callback")
        .client_secret(SECRET)
        .scope("profile")
        .flow_key([9; 32])
        .clock(clock.clone())
        .trusted_audience("another-client")
        .build()
        .await
        .unwrap();
    let (headers, state) = begin(&p, &trusting);
    assert!(
        trusting
            .complete(&headers, &callback(&p, &state))
            .await
            .is_ok()
    );
    *p.twist.lock().unwrap() = Twist::Refuse;
    let (headers, state) = begin(&p, &oidc);
    let e = oidc
        .complete(&headers, &callback(&p, &state))
        .await
        .unwrap_err();
    assert!(
        matches!(e, OidcError::Token(ref t) if t == "invalid_grant"),
        "{e}"
    );
    assert!(e.is_user_error(), "a spent code: sign in again");
    // Two flow cookies (one planted beside ours): neither is trusted.
    *p.twist.lock().unwrap() = Twist::None;
    let (mut headers, state) = begin(&p, &oidc);
    let (planted, _) = begin(&p, &oidc);
    headers.append(header::COOKIE, planted[header::COOKIE].clone());
    assert!(matches!(
        oidc.complete(&headers, &callback(&p, &state)).await,
        Err(OidcError::Flow(_))
    ));

    // A key the provider rotated in after this client started: fetched, accepted.
    *p.twist.lock().unwrap() = Twist::NewKey;
    let (headers, state) = begin(&p, &oidc);
    assert!(oidc.complete(&headers, &callback(&p, &state)).await.is_ok());

    // A flow cookie older than ten minutes.
    *p.twist.lock().unwrap() = Twist::None;
    let (headers, state) = begin(&p, &oidc);
    clock.advance(601);
    assert!(matches!(
        oidc.complete(&headers, &callback(&p, &state)).await,
        Err(OidcError::Flow(_))
    ));
    assert!(clock.now() > NOW);
}

#[tokio::test]
async fn a_client_needs_an_https_redirect_uri_and_a_flow_key_and_takes_no_iss_from_a_provider_that_never_promised_it()
 {
    let p = provider(false).await;
    let clock = Arc::new(ManualClock::new(NOW));
    let e = OidcClient::builder(&p.url, CLIENT, "http://notes.example/callback")
        .flow_key([1; 32])
        .clock(clock.clone())
        .build()
        .await
        .unwrap_err();
    assert!(matches!(e, OidcError::Config(_)), "{e}");
    let e = OidcClient::builder(&p.url, CLIENT, "https://notes.example/callback")
        .clock(clock)
        .build()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("flow_key"), "{e}");
    // Without the RFC 9207 promise, a callback without iss is accepted.
    let oidc = client(&p, Arc::new(ManualClock::new(NOW))).await;
    let (headers, state) = begin(&p, &oidc);
    assert!(
        oidc.complete(&headers, &format!("code=the-code&state={state}"))
            .await
            .is_ok()
    );
}
