//! OAuth 2.1 and OpenID Connect over real HTTP, on SQLite and PostgreSQL: the
//! authorization-code flow with PKCE through the sign-in and consent pages (driven as a
//! browser would, one redirect at a time), the token endpoint's grants, ID tokens,
//! userinfo, introspection, revocation, RP-initiated logout, and the errors of each.
//! The same flow in headless Chromium is in `browser.rs`.

use base64::Engine as _;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::clients::clients;
use crate::support::{TestServer, claims_of, config, on_each_store};

const PASSWORD: &str = "correct horse battery";
const ORIGIN: &str = "http://portcullis.test";
const CB: &str = "https://app.example/cb";

/// A browser without JavaScript: one session cookie, redirects not followed.
pub(crate) struct Browser {
    http: reqwest::Client,
    cookie: Option<String>,
}

impl Browser {
    pub(crate) fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie: None,
        }
    }

    fn keep_cookie(&mut self, r: &reqwest::Response) {
        for value in r.headers().get_all(SET_COOKIE) {
            let text = value.to_str().unwrap();
            if let Some(rest) = text.strip_prefix("portcullis_session=") {
                let value = rest.split(';').next().unwrap();
                self.cookie = (!value.is_empty()).then(|| format!("portcullis_session={value}"));
            }
        }
    }

    pub(crate) async fn get(&mut self, url: &str) -> reqwest::Response {
        let mut req = self.http.get(url);
        if let Some(c) = &self.cookie {
            req = req.header(COOKIE, c);
        }
        let r = req.send().await.unwrap();
        self.keep_cookie(&r);
        r
    }

    /// A form posted from one of the server's own pages.
    pub(crate) async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self
            .http
            .post(url)
            .header("origin", ORIGIN)
            .header("sec-fetch-site", "same-origin")
            .form(form);
        if let Some(c) = &self.cookie {
            req = req.header(COOKIE, c);
        }
        let r = req.send().await.unwrap();
        self.keep_cookie(&r);
        r
    }
}

fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get(LOCATION)
        .unwrap_or_else(|| panic!("no Location in a {}", r.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// The query parameters of a URL.
fn query(url: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// The value of a hidden input in a page (maud escapes it as HTML).
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    let end = start + html[start..].find('"').unwrap();
    html[start..end]
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// A PKCE verifier and its S256 challenge.
fn pkce() -> (String, String) {
    let verifier = format!(
        "{}{}",
        portcullis::jwt::random_id().unwrap(),
        portcullis::jwt::random_id().unwrap()
    );
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(portcullis::opaque::sha256(verifier.as_bytes()));
    (verifier, challenge)
}

fn authorize_url(server: &TestServer, params: &[(&str, &str)]) -> String {
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    server.url(&format!("/oauth/authorize?{q}"))
}

/// A registered client: (id, secret).
async fn register(url: &str, args: &[&str]) -> (String, Option<String>) {
    let mut all = vec!["add"];
    all.extend_from_slice(args);
    let added: Value = serde_json::from_str(&clients(url, &all).await).unwrap();
    (
        added["client_id"].as_str().unwrap().to_owned(),
        added["client_secret"].as_str().map(str::to_owned),
    )
}

async fn token(
    server: &TestServer,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut req = server.client.post(server.url("/oauth/token")).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn introspect(server: &TestServer, id: &str, secret: &str, token: &str) -> Value {
    let r = server
        .client
        .post(server.url("/oauth/introspect"))
        .basic_auth(id, Some(secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn userinfo(server: &TestServer, access: &str) -> (StatusCode, Value) {
    let r = server
        .client
        .get(server.url("/oauth/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Signs in through the login page an authorization request sent the browser to, and
/// follows the way back: the authorization request again.
async fn sign_in(
    browser: &mut Browser,
    server: &TestServer,
    login: &str,
    username: &str,
) -> reqwest::Response {
    let page = browser.get(&server.url(login)).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let return_to = hidden(&html, "return_to");
    let r = browser
        .post(
            &server.url("/session/login"),
            &[
                ("username", username),
                ("password", PASSWORD),
                ("return_to", &return_to),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), return_to, "back to the authorization request");
    browser.get(&server.url(&return_to)).await
}

/// A code for a client the person already allowed (no page in between), and its
/// verifier.
async fn remembered_code(
    browser: &mut Browser,
    server: &TestServer,
    client_id: &str,
) -> (String, String) {
    let (verifier, challenge) = pkce();
    let request = authorize_url(
        server,
        &[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", CB),
            ("scope", "openid"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let r = browser.get(&request).await;
    assert_eq!(r.status(), 303);
    (query(&location(&r))["code"].clone(), verifier)
}

on_each_store! {
    async fn a_person_signs_in_to_an_app_through_consent_and_the_app_uses_every_endpoint(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        assert_eq!(server.signup("alice", PASSWORD).await.status(), 201);
        let (id, secret) = register(&url, &[
            "webapp", "--scope", "openid profile",
            "--redirect-uri", CB, "--post-logout-redirect-uri", "https://app.example/bye",
        ]).await;
        let secret = secret.unwrap();
        let basic = Some((id.as_str(), secret.as_str()));
        let mut browser = Browser::new();
        let (verifier, challenge) = pkce();
        let request = authorize_url(&server, &[
            ("response_type", "code"), ("client_id", &id), ("redirect_uri", CB),
            ("scope", "openid profile"), ("state", "st-1"), ("nonce", "n-1"),
            ("code_challenge", &challenge), ("code_challenge_method", "S256"),
        ]);

        // Not signed in: to the sign-in page, whose form may end at the app.
        let r = browser.get(&request).await;
        assert_eq!(r.status(), 303);
        let login = location(&r);
        assert!(login.starts_with("/login?return_to=%2Foauth%2Fauthorize%3F"), "{login}");
        let page = browser.get(&server.url(&login)).await;
        let csp = page.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
        assert!(csp.contains("form-action 'self' https://app.example;"), "{csp}");
        // A wrong password keeps the way back.
        let return_to = hidden(&page.text().await.unwrap(), "return_to");
        let r = browser
            .post(&server.url("/session/login"), &[("username", "alice"), ("password", "wrong password!"), ("return_to", &return_to)])
            .await;
        assert_eq!(r.status(), 401);
        assert_eq!(hidden(&r.text().await.unwrap(), "return_to"), return_to);

        // Signed in: the consent page, which names the app and what it asks for.
        let consent = sign_in(&mut browser, &server, &login, "alice").await;
        assert_eq!(consent.status(), 200);
        let html = consent.text().await.unwrap();
        assert!(html.contains("Allow webapp?"), "{html}");
        assert!(html.contains("data-scope=\"openid\"") && html.contains("data-scope=\"profile\""));
        let authorization = hidden(&html, "authorization");
        let csrf = hidden(&html, "csrf_token");
        // The consent form without its token is refused, and changes nothing.
        let r = browser
            .post(&server.url("/oauth/authorize"), &[("authorization", &authorization), ("csrf_token", "wrong"), ("decision", "allow")])
            .await;
        assert_eq!(r.status(), 403);
        let r = browser
            .post(&server.url("/oauth/authorize"), &[("authorization", &authorization), ("csrf_token", &csrf), ("decision", "allow")])
            .await;
        assert_eq!(r.status(), 303);
        let back = location(&r);
        assert!(back.starts_with("https://app.example/cb?code="), "{back}");
        assert_eq!(r.headers()["referrer-policy"], "no-referrer");
        let params = query(&back);
        assert_eq!((params["state"].as_str(), params["iss"].as_str()), ("st-1", ORIGIN));
        let code = params["code"].clone();

        // At rest, a code is its SHA-256 only.
        if url.starts_with("sqlite") {
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            let (plain,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM authorization_codes WHERE hash = $1")
                .bind(code.as_bytes()).fetch_one(&pool).await.unwrap();
            let (hashed,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM authorization_codes WHERE hash = $1")
                .bind(&portcullis::opaque::sha256(code.as_bytes())[..]).fetch_one(&pool).await.unwrap();
            assert_eq!((plain, hashed), (0, 1));
            pool.close().await;
        }

        // The exchange: tokens, and an ID token for this app.
        let (status, body) = token(&server, basic, &[
            ("grant_type", "authorization_code"), ("code", &code),
            ("redirect_uri", CB), ("code_verifier", &verifier),
        ]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["scope"], "openid profile");
        let access = body["access_token"].as_str().unwrap().to_owned();
        let refresh = body["refresh_token"].as_str().unwrap().to_owned();
        let id_token = body["id_token"].as_str().unwrap().to_owned();
        let login: Value = server.login("alice", PASSWORD).await.json().await.unwrap();
        let alice_id = claims_of(login["access_token"].as_str().unwrap())["sub"].as_str().unwrap().to_owned();
        let (header, _) = portcullis::jwt::jws::insecure_decode(&id_token, 8192).unwrap();
        assert_eq!(header["typ"], "JWT");
        let claims = claims_of(&id_token);
        assert_eq!(claims["aud"], id.as_str());
        assert_eq!(claims["iss"], ORIGIN);
        assert_eq!(claims["sub"], alice_id.as_str());
        assert_eq!(claims["nonce"], "n-1");
        assert_eq!(claims["preferred_username"], "alice");
        assert!(claims["auth_time"].as_i64().unwrap() <= claims["iat"].as_i64().unwrap());
        let digest = portcullis::opaque::sha256(access.as_bytes());
        assert_eq!(claims["at_hash"], base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16]));
        let access_claims = claims_of(&access);
        assert_eq!(access_claims["client_id"], id.as_str());
        assert_eq!(access_claims["sub"], alice_id.as_str());
        // The ID token is no access token: refused where one is needed.
        assert_eq!(userinfo(&server, &id_token).await.0, 401);

        let (status, info) = userinfo(&server, &access).await;
        assert_eq!(status, 200);
        assert_eq!((info["sub"].as_str(), info["preferred_username"].as_str()), (Some(alice_id.as_str()), Some("alice")));
        // A delegated token is no key to the person's account routes.
        assert_eq!(server.me(&access).await.status(), 403);

        // Refresh: a new pair; the old refresh token is spent.
        let (status, body) = token(&server, basic, &[("grant_type", "refresh_token"), ("refresh_token", &refresh)]).await;
        assert_eq!(status, 200, "{body}");
        let refresh2 = body["refresh_token"].as_str().unwrap().to_owned();
        let access2 = body["access_token"].as_str().unwrap().to_owned();
        assert!(body.get("id_token").is_none());
        // Another client cannot refresh it (and does not burn it).
        let (other, other_secret) = register(&url, &["other", "--scope", "openid", "--redirect-uri", "https://other.example/cb"]).await;
        let other_secret = other_secret.unwrap();
        let (status, body) = token(&server, Some((&other, &other_secret)), &[("grant_type", "refresh_token"), ("refresh_token", &refresh2)]).await;
        assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("invalid_grant")));

        // Introspection: the owner sees its tokens; another client sees nothing.
        let seen = introspect(&server, &id, &secret, &access2).await;
        assert_eq!((seen["active"].as_bool(), seen["client_id"].as_str(), seen["username"].as_str()), (Some(true), Some(id.as_str()), Some("alice")));
        let seen = introspect(&server, &id, &secret, &refresh2).await;
        assert_eq!((seen["active"].as_bool(), seen["token_type"].as_str()), (Some(true), Some("refresh_token")));
        assert_eq!(introspect(&server, &id, &secret, &refresh).await, serde_json::json!({"active": false}), "spent");
        assert_eq!(introspect(&server, &other, &other_secret, &access2).await, serde_json::json!({"active": false}));
        assert_eq!(introspect(&server, &other, &other_secret, &refresh2).await, serde_json::json!({"active": false}));
        assert_eq!(introspect(&server, &id, &secret, "not a token").await, serde_json::json!({"active": false}));

        // Revocation by another client does nothing; by the owner, it ends the grant.
        for (who, secret) in [(&other, &other_secret), (&id, &secret)] {
            let r = server.client.post(server.url("/oauth/revoke")).basic_auth(who, Some(secret))
                .form(&[("token", refresh2.as_str())]).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
        assert_eq!(introspect(&server, &id, &secret, &refresh2).await["active"], false);
        assert_eq!(userinfo(&server, &access2).await.0, 401, "the grant's access token died with it");

        // Consent is remembered: the next request goes straight back with a code.
        let (code, verifier) = remembered_code(&mut browser, &server, &id).await;
        // A wrong verifier uses the code up.
        let (wrong, _) = pkce();
        let (status, body) = token(&server, basic, &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", CB), ("code_verifier", &wrong)]).await;
        assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("invalid_grant")));
        let (status, _) = token(&server, basic, &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", CB), ("code_verifier", &verifier)]).await;
        assert_eq!(status, 400);

        // A code used twice: the second use revokes what the first got.
        let (code, verifier) = remembered_code(&mut browser, &server, &id).await;
        let exchange = [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", CB), ("code_verifier", verifier.as_str())];
        let (status, first) = token(&server, basic, &exchange).await;
        assert_eq!(status, 200);
        let first_access = first["access_token"].as_str().unwrap();
        assert_eq!(userinfo(&server, first_access).await.0, 200);
        let (status, body) = token(&server, basic, &exchange).await;
        assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("invalid_grant")));
        assert_eq!(userinfo(&server, first_access).await.0, 401);
        let (status, _) = token(&server, basic, &[("grant_type", "refresh_token"), ("refresh_token", first["refresh_token"].as_str().unwrap())]).await;
        assert_eq!(status, 400);

        // The account page lists the app; removing it ends its grants and its consent.
        let (code, verifier) = remembered_code(&mut browser, &server, &id).await;
        let (status, fresh) = token(&server, basic, &[
            ("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", CB), ("code_verifier", &verifier),
        ]).await;
        assert_eq!(status, 200);
        let account = browser.get(&server.url("/account")).await.text().await.unwrap();
        assert!(account.contains(&format!("data-app=\"{id}\"")), "{account}");
        let csrf = hidden(&account, "csrf_token");
        let r = browser.post(&server.url(&format!("/account/apps/{id}/revoke")), &[("csrf_token", &csrf)]).await;
        assert_eq!(r.status(), 303);
        assert_eq!(userinfo(&server, fresh["access_token"].as_str().unwrap()).await.0, 401);
        let account = browser.get(&server.url("/account")).await.text().await.unwrap();
        assert!(account.contains("id=\"no-apps\""));
        let (_, challenge) = pkce();
        let again = browser.get(&authorize_url(&server, &[
            ("response_type", "code"), ("client_id", &id), ("redirect_uri", CB),
            ("scope", "openid"), ("code_challenge", &challenge), ("code_challenge_method", "S256"),
        ])).await;
        assert_eq!(again.status(), 200, "the consent page again");

        // RP-initiated logout with the ID token: signed out, back to the app.
        let logout = server.url(&format!(
            "/oauth/logout?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("id_token_hint", &id_token)
                .append_pair("post_logout_redirect_uri", "https://app.example/bye")
                .append_pair("state", "bye-1")
                .finish()
        ));
        let r = browser.get(&logout).await;
        assert_eq!(r.status(), 303);
        assert_eq!(location(&r), "https://app.example/bye?state=bye-1");
        assert!(browser.cookie.is_none(), "the cookie is cleared");
        server.stop().await;
    }
}

on_each_store! {
    async fn errors_before_the_redirect_uri_is_trusted_are_shown_and_the_rest_go_back_to_the_client(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        assert_eq!(server.signup("bob", PASSWORD).await.status(), 201);
        let (id, _) = register(&url, &["spa", "--public", "--scope", "openid", "--redirect-uri", CB, "--redirect-uri", "http://127.0.0.1/native"]).await;
        let (_, challenge) = pkce();
        let good: Vec<(&str, &str)> = vec![
            ("response_type", "code"), ("client_id", &id), ("redirect_uri", CB), ("state", "s1"),
            ("code_challenge", &challenge), ("code_challenge_method", "S256"),
        ];
        let with = |changes: &[(&'static str, Option<&'static str>)]| {
            let mut params = good.clone();
            for (name, value) in changes {
                params.retain(|(n, _)| n != name);
                if let Some(v) = value {
                    params.push((name, v));
                }
            }
            authorize_url(&server, &params)
        };
        let mut browser = Browser::new();

        // Shown to the person, never redirected: an unknown client, a redirect URI that
        // is not registered exactly, none at all, a repeated client_id.
        for bad in [
            with(&[("client_id", Some("nobody"))]),
            with(&[("client_id", None)]),
            with(&[("redirect_uri", Some("https://app.example/cb/extra"))]),
            with(&[("redirect_uri", Some("https://app.example/cb?x=1"))]),
            with(&[("redirect_uri", Some("https://evil.example/cb"))]),
            with(&[("redirect_uri", None)]),
            format!("{}&client_id={id}", with(&[])),
        ] {
            let r = browser.get(&bad).await;
            assert_eq!(r.status(), 400, "{bad}");
            assert!(r.headers().get(LOCATION).is_none(), "{bad}");
            assert!(r.text().await.unwrap().contains("This sign-in cannot go on"));
        }

        // Back to the client, with state and iss.
        let cases: Vec<(String, &str)> = vec![
            (with(&[("response_type", Some("token"))]), "unsupported_response_type"),
            (with(&[("response_type", None)]), "invalid_request"),
            (with(&[("code_challenge", None)]), "invalid_request"),
            (with(&[("code_challenge_method", Some("plain"))]), "invalid_request"),
            (with(&[("code_challenge_method", None)]), "invalid_request"),
            (with(&[("code_challenge", Some("short"))]), "invalid_request"),
            (with(&[("request", Some("eyJhbGciOiJub25lIn0.e30."))]), "request_not_supported"),
            (with(&[("request_uri", Some("https://evil.example/req"))]), "request_uri_not_supported"),
            (with(&[("scope", Some("openid admin"))]), "invalid_scope"),
            (with(&[("prompt", Some("none login"))]), "invalid_request"),
            (with(&[("prompt", Some("none"))]), "login_required"),
            (with(&[("max_age", Some("-1"))]), "invalid_request"),
            (with(&[("response_mode", Some("fragment"))]), "invalid_request"),
            (format!("{}&nonce=a&nonce=b", with(&[])), "invalid_request"),
        ];
        for (url_, error) in &cases {
            let r = browser.get(url_).await;
            assert_eq!(r.status(), 303, "{url_}");
            let back = location(&r);
            assert!(back.starts_with(CB), "{back}");
            let params = query(&back);
            assert_eq!(params["error"], *error, "{url_}");
            assert_eq!((params["state"].as_str(), params["iss"].as_str()), ("s1", ORIGIN), "{url_}");
            assert!(!params.contains_key("code"));
        }
        // An oversized parameter: refused, and the state is not echoed beyond the limit.
        let huge = "x".repeat(3000);
        let r = browser.get(&format!("{}&nonce={huge}", with(&[]))).await;
        assert_eq!(query(&location(&r))["error"], "invalid_request");
        let r = browser.get(&with(&[("state", None)]).replace("response_type", &format!("state={huge}&response_type"))).await;
        let params = query(&location(&r));
        assert!(!params.contains_key("state") || params["state"].len() <= 2048);
        let r = browser.get(&format!("{}&pad={}", with(&[]), "y".repeat(9000))).await;
        assert_eq!(r.status(), 400, "a query over 8 KiB is shown, not redirected");

        // The sign-in page goes back to authorization requests only: any other
        // `return_to` is dropped from the page and ignored by the form.
        for evil in ["https://evil.example/", "//evil.example/oauth/authorize?x", "/account"] {
            let q: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("return_to", evil)
                .finish();
            let html = browser.get(&server.url(&format!("/login?{q}"))).await.text().await.unwrap();
            assert!(!html.contains("name=\"return_to\""), "{evil}");
            let mut stranger = Browser::new();
            let r = stranger
                .post(&server.url("/session/login"), &[("username", "bob"), ("password", PASSWORD), ("return_to", evil)])
                .await;
            assert_eq!((r.status().as_u16(), location(&r).as_str()), (303, "/account"), "{evil}");
        }

        // Signed in, prompt=none without consent: consent_required, no code.
        let r = browser.get(&with(&[])).await;
        let consent = sign_in(&mut browser, &server, &location(&r), "bob").await;
        assert_eq!(consent.status(), 200);
        let r = browser.get(&with(&[("prompt", Some("none"))])).await;
        assert_eq!(query(&location(&r))["error"], "consent_required");
        // Deny: access_denied, and nothing remembered.
        let html = browser.get(&with(&[])).await.text().await.unwrap();
        let r = browser.post(&server.url("/oauth/authorize"), &[
            ("authorization", &hidden(&html, "authorization")), ("csrf_token", &hidden(&html, "csrf_token")), ("decision", "deny"),
        ]).await;
        assert_eq!(query(&location(&r))["error"], "access_denied");
        assert_eq!(browser.get(&with(&[])).await.status(), 200, "asked again");
        // A consent form posted from another site is refused.
        let r = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
            .post(server.url("/oauth/authorize"))
            .header(COOKIE, browser.cookie.clone().unwrap())
            .header("origin", "https://evil.example")
            .header("sec-fetch-site", "cross-site")
            .form(&[("authorization", hidden(&html, "authorization")), ("csrf_token", hidden(&html, "csrf_token")), ("decision", "allow".into())])
            .send().await.unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.headers().get(LOCATION).is_none());

        // A native app comes back on any port of its loopback URI, and needs no secret.
        let native = |port: u16, challenge: &str| authorize_url(&server, &[
            ("response_type", "code"), ("client_id", &id),
            ("redirect_uri", &format!("http://127.0.0.1:{port}/native")),
            ("code_challenge", challenge), ("code_challenge_method", "S256"),
        ]);
        let (verifier, challenge) = pkce();
        let html = browser.get(&native(49152, &challenge)).await.text().await.unwrap();
        let r = browser.post(&server.url("/oauth/authorize"), &[
            ("authorization", &hidden(&html, "authorization")), ("csrf_token", &hidden(&html, "csrf_token")), ("decision", "allow"),
        ]).await;
        let back = location(&r);
        assert!(back.starts_with("http://127.0.0.1:49152/native?code="), "{back}");
        let code = query(&back)["code"].clone();
        let (status, body) = token(&server, None, &[
            ("grant_type", "authorization_code"), ("code", &code), ("client_id", &id),
            ("redirect_uri", "http://127.0.0.1:49152/native"), ("code_verifier", &verifier),
        ]).await;
        assert_eq!(status, 200, "{body}");
        // The token request must name the same redirect URI, port included.
        let (verifier, challenge) = pkce();
        let r = browser.get(&native(50000, &challenge)).await;
        let code = query(&location(&r))["code"].clone();
        let (status, body) = token(&server, None, &[
            ("grant_type", "authorization_code"), ("code", &code), ("client_id", &id),
            ("redirect_uri", "http://127.0.0.1:50001/native"), ("code_verifier", &verifier),
        ]).await;
        assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("invalid_grant")));

        // Token endpoint errors: a public client with a secret, a public client asking
        // for client_credentials, a machine client using the code grant.
        let (status, body) = token(&server, Some((&id, "a".repeat(43).as_str())), &[("grant_type", "authorization_code")]).await;
        assert_eq!((status.as_u16(), body["error"].as_str()), (401, Some("invalid_client")));
        let (status, body) = token(&server, None, &[("grant_type", "client_credentials"), ("client_id", &id)]).await;
        assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("unauthorized_client")));
        let (machine, machine_secret) = register(&url, &["robot", "--scope", "revocations:read"]).await;
        let (status, body) = token(&server, Some((&machine, machine_secret.as_deref().unwrap())), &[
            ("grant_type", "authorization_code"), ("code", "x"), ("redirect_uri", CB), ("code_verifier", &"a".repeat(43)),
        ]).await;
        assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("unauthorized_client")));
        let (status, body) = token(&server, None, &[("grant_type", "authorization_code"), ("client_id", &id), ("code", "x"), ("redirect_uri", CB)]).await;
        assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("invalid_request")), "no code_verifier");
        // A public client cannot introspect.
        let r = server.client.post(server.url("/oauth/introspect")).form(&[("token", "x"), ("client_id", id.as_str())]).send().await.unwrap();
        assert_eq!(r.status(), 401);

        // Logout: an unregistered post_logout_redirect_uri is shown, never followed; no
        // hint means the person is asked.
        let r = browser.get(&server.url(&format!("/oauth/logout?client_id={id}&post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F"))).await;
        assert_eq!(r.status(), 400);
        assert!(r.headers().get(LOCATION).is_none());
        let r = browser.get(&server.url("/oauth/logout?post_logout_redirect_uri=https%3A%2F%2Fapp.example%2Fcb")).await;
        assert_eq!(r.status(), 400, "whose URI it is must be said");
        let r = browser.get(&server.url("/oauth/logout")).await;
        assert_eq!(r.status(), 200);
        let html = r.text().await.unwrap();
        assert!(html.contains("Sign out of Portcullis?"));
        assert!(browser.cookie.is_some(), "not signed out by a link");
        let r = browser.post(&server.url("/oauth/logout"), &[("csrf_token", &hidden(&html, "csrf_token"))]).await;
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("You are signed out"));
        assert!(browser.cookie.is_none());
        server.stop().await;
    }
}

on_each_store! {
    async fn concurrent_exchanges_of_one_code_give_tokens_once(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        assert_eq!(server.signup("cara", PASSWORD).await.status(), 201);
        let (id, secret) = register(&url, &["fast", "--first-party", "--scope", "openid", "--redirect-uri", CB]).await;
        let secret = secret.unwrap();
        let (verifier, challenge) = pkce();
        let mut browser = Browser::new();
        let request = authorize_url(&server, &[
            ("response_type", "code"), ("client_id", &id), ("redirect_uri", CB),
            ("code_challenge", &challenge), ("code_challenge_method", "S256"),
        ]);
        let r = browser.get(&request).await;
        // First-party: no consent page.
        let r = sign_in(&mut browser, &server, &location(&r), "cara").await;
        assert_eq!(r.status(), 303);
        let code = query(&location(&r))["code"].clone();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (client, url, code, verifier, id, secret) = (server.client.clone(), server.url("/oauth/token"), code.clone(), verifier.clone(), id.clone(), secret.clone());
                tokio::spawn(async move {
                    client.post(url).basic_auth(id, Some(secret))
                        .form(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", CB), ("code_verifier", &verifier)])
                        .send().await.unwrap().status().as_u16()
                })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                200 => ok += 1,
                400 => {}
                other => panic!("{other}"),
            }
        }
        assert_eq!(ok, 1);
        server.stop().await;
    }
}

on_each_store! {
    /// Issue 25: an admin's change to an app reaches the grants people gave it: a scope
    /// taken from the app is gone from the next refresh; a deleted app's grants end at
    /// once (its access token for the person too, through the family's `sid`), with the
    /// consent people gave it.
    async fn an_apps_grants_follow_what_an_admin_does_to_it(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        let store = portcullis_store::open(&url).await.unwrap();
        assert_eq!(server.signup("root", PASSWORD).await.status(), 201);
        assert_eq!(server.signup("erin", PASSWORD).await.status(), 201);
        store.set_scope("root", "admin", 0).await.unwrap();
        store.set_scope("erin", "notes:read notes:write", 0).await.unwrap();
        let root = server.login("root", PASSWORD).await.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
        let (id, secret) = register(&url, &["notes", "--first-party", "--scope", "openid notes:read notes:write", "--redirect-uri", CB]).await;
        let secret = secret.unwrap();
        let basic = Some((id.as_str(), secret.as_str()));
        let (verifier, challenge) = pkce();
        let mut browser = Browser::new();
        let request = authorize_url(&server, &[
            ("response_type", "code"), ("client_id", &id), ("redirect_uri", CB),
            ("scope", "openid notes:read notes:write"),
            ("code_challenge", &challenge), ("code_challenge_method", "S256"),
        ]);
        let r = browser.get(&request).await;
        let r = sign_in(&mut browser, &server, &location(&r), "erin").await;
        let code = query(&location(&r))["code"].clone();
        let (status, body) = token(&server, basic, &[
            ("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", CB), ("code_verifier", &verifier),
        ]).await;
        assert_eq!((status, body["scope"].as_str()), (StatusCode::OK, Some("openid notes:read notes:write")), "{body}");
        let refresh = body["refresh_token"].as_str().unwrap().to_owned();

        let admin = |method: reqwest::Method, body: Option<Value>| {
            let mut req = server.client.request(method, server.url(&format!("/admin/clients/{id}"))).bearer_auth(&root);
            if let Some(b) = body {
                req = req.json(&b);
            }
            req.send()
        };
        let r = admin(reqwest::Method::PATCH, Some(json!({ "scope": "openid notes:read" }))).await.unwrap();
        assert_eq!(r.status(), 200);
        let (status, body) = token(&server, basic, &[("grant_type", "refresh_token"), ("refresh_token", &refresh)]).await;
        assert_eq!((status, body["scope"].as_str()), (StatusCode::OK, Some("openid notes:read")), "{body}");
        let access = body["access_token"].as_str().unwrap().to_owned();
        let refresh = body["refresh_token"].as_str().unwrap().to_owned();
        assert_eq!(userinfo(&server, &access).await.0, 200);

        // (A first-party app asks no consent; one given to it as if it did.)
        let erin = store.user_by_username("erin").await.unwrap().unwrap();
        store.grant_consent(&erin.id, &id, "openid", 1).await.unwrap();
        let r = admin(reqwest::Method::DELETE, None).await.unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(userinfo(&server, &access).await.0, 401, "the grant's access token ends with it");
        let (status, _) = token(&server, basic, &[("grant_type", "refresh_token"), ("refresh_token", &refresh)]).await;
        assert_eq!(status, 401, "the client is no more");
        assert!(store.consents_of(&erin.id).await.unwrap().is_empty());
        server.stop().await;
    }
}

on_each_store! {
    async fn a_code_flow_client_gets_nothing_as_itself_and_a_refused_refresh_spends_nothing(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        assert_eq!(server.signup("dora", PASSWORD).await.status(), 201);
        let (id, secret) = register(&url, &["forum", "--first-party", "--scope", "openid profile admin", "--redirect-uri", CB]).await;
        let secret = secret.unwrap();
        let basic = Some((id.as_str(), secret.as_str()));
        // Its scopes are a ceiling on what people delegate, not its own: no
        // client_credentials, so no "admin" token without an admin.
        let (status, body) = token(&server, basic, &[("grant_type", "client_credentials"), ("scope", "admin")]).await;
        assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("unauthorized_client")));

        let mut browser = Browser::new();
        let (verifier, challenge) = pkce();
        let r = browser.get(&authorize_url(&server, &[
            ("response_type", "code"), ("client_id", &id), ("redirect_uri", CB),
            ("scope", "openid profile admin"), ("code_challenge", &challenge), ("code_challenge_method", "S256"),
        ])).await;
        let r = sign_in(&mut browser, &server, &location(&r), "dora").await;
        let code = query(&location(&r))["code"].clone();
        let (status, body) = token(&server, basic, &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", CB), ("code_verifier", &verifier)]).await;
        assert_eq!(status, 200);
        // dora is no admin: the grant has the identity scopes only.
        assert_eq!(body["scope"], "openid profile");
        let refresh = body["refresh_token"].as_str().unwrap().to_owned();
        // Asking a refresh for more than the grant: refused, and the token still works.
        let (status, body) = token(&server, basic, &[("grant_type", "refresh_token"), ("refresh_token", &refresh), ("scope", "openid admin")]).await;
        assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("invalid_scope")));
        let (status, body) = token(&server, basic, &[("grant_type", "refresh_token"), ("refresh_token", &refresh), ("scope", "openid")]).await;
        assert_eq!((status.as_u16(), body["scope"].as_str()), (200, Some("openid")), "{body}");

        // A code whose session ended before the exchange starts nothing.
        let (verifier, challenge) = pkce();
        let r = browser.get(&authorize_url(&server, &[
            ("response_type", "code"), ("client_id", &id), ("redirect_uri", CB),
            ("code_challenge", &challenge), ("code_challenge_method", "S256"),
        ])).await;
        let code = query(&location(&r))["code"].clone();
        let html = browser.get(&server.url("/oauth/logout")).await.text().await.unwrap();
        let r = browser.post(&server.url("/oauth/logout"), &[("csrf_token", &hidden(&html, "csrf_token"))]).await;
        assert_eq!(r.status(), 200);
        let (status, body) = token(&server, basic, &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", CB), ("code_verifier", &verifier)]).await;
        assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("invalid_grant")));

        // A single-page app on another origin may call the token endpoint; no
        // credentials the browser holds go with it.
        let r = server.client.request(reqwest::Method::OPTIONS, server.url("/oauth/token"))
            .header("origin", "https://spa.example")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send().await.unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        assert_eq!(r.headers()["access-control-allow-origin"], "*");
        assert!(r.headers().get("access-control-allow-credentials").is_none());
        // The cookie routes stay same-origin.
        let r = server.client.request(reqwest::Method::OPTIONS, server.url("/session/login"))
            .header("origin", "https://spa.example")
            .header("access-control-request-method", "POST")
            .send().await.unwrap();
        assert!(r.headers().get("access-control-allow-origin").is_none());
        server.stop().await;
    }
}

on_each_store! {
    async fn a_code_replayed_on_another_instance_ends_the_grant_on_the_first(url, dir) {
        // Two instances on one database, as behind a load balancer.
        let a = TestServer::start(config(&url)).await.keep_dir(dir);
        let b = TestServer::start(config(&url)).await;
        assert_eq!(a.signup("finn", PASSWORD).await.status(), 201);
        let (id, secret) = register(&url, &["twin", "--first-party", "--scope", "openid", "--redirect-uri", CB]).await;
        let secret = secret.unwrap();
        let (other, other_secret) = register(&url, &["other-app", "--scope", "openid", "--redirect-uri", "https://other.example/cb"]).await;
        let mut browser = Browser::new();
        let (verifier, challenge) = pkce();
        let r = browser.get(&authorize_url(&a, &[
            ("response_type", "code"), ("client_id", &id), ("redirect_uri", CB),
            ("code_challenge", &challenge), ("code_challenge_method", "S256"),
        ])).await;
        let r = sign_in(&mut browser, &a, &location(&r), "finn").await;
        let code = query(&location(&r))["code"].clone();
        let exchange = [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", CB), ("code_verifier", verifier.as_str())];
        // Another client cannot redeem it (and that uses it up: the code is tried once).
        let mut stolen = exchange.to_vec();
        stolen[2] = ("redirect_uri", "https://other.example/cb");
        let (status, body) = token(&b, Some((&other, other_secret.as_deref().unwrap())), &stolen).await;
        assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("invalid_grant")));
        let (status, _) = token(&a, Some((&id, &secret)), &exchange).await;
        assert_eq!(status, 400, "used up by the attempt");

        // A fresh code: redeemed on A, replayed on B.
        let (verifier, challenge) = pkce();
        let r = browser.get(&authorize_url(&a, &[
            ("response_type", "code"), ("client_id", &id), ("redirect_uri", CB),
            ("code_challenge", &challenge), ("code_challenge_method", "S256"),
        ])).await;
        let code = query(&location(&r))["code"].clone();
        let exchange = [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", CB), ("code_verifier", verifier.as_str())];
        let (status, first) = token(&a, Some((&id, &secret)), &exchange).await;
        assert_eq!(status, 200);
        let access = first["access_token"].as_str().unwrap().to_owned();
        assert_eq!(userinfo(&a, &access).await.0, 200);
        let (status, _) = token(&b, Some((&id, &secret)), &exchange).await;
        assert_eq!(status, 400);
        // B revoked the grant; A hears of it through the event log within the bound.
        crate::support::eventually("the first instance refuses the replayed code's tokens", || async {
            userinfo(&a, &access).await.0 == 401
        })
        .await;
        b.stop().await;
        a.stop().await;
    }
}

/// The discovery document lists exactly what the server does.
#[tokio::test]
async fn discovery_lists_the_endpoints_and_only_s256() {
    let (url, dir) = crate::support::sqlite_db();
    let server = TestServer::start(config(&url)).await.keep_dir(dir);
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let doc: Value = server
            .client
            .get(server.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["issuer"], ORIGIN);
        assert_eq!(
            doc["authorization_endpoint"],
            format!("{ORIGIN}/oauth/authorize")
        );
        assert_eq!(
            doc["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
        assert_eq!(
            doc["id_token_signing_alg_values_supported"],
            serde_json::json!(["RS256"])
        );
        assert_eq!(doc["request_uri_parameter_supported"], false);
        // Every endpoint it names answers (not 404).
        for key in [
            "authorization_endpoint",
            "token_endpoint",
            "userinfo_endpoint",
            "introspection_endpoint",
            "revocation_endpoint",
            "end_session_endpoint",
            "jwks_uri",
        ] {
            let path = doc[key]
                .as_str()
                .unwrap()
                .strip_prefix(ORIGIN)
                .unwrap()
                .to_owned();
            let r = server.client.get(server.url(&path)).send().await.unwrap();
            assert_ne!(r.status(), 404, "{key}");
        }
    }
    server.stop().await;
}

on_each_store! {
    /// Issue 28, findings 6 and 7. An ID token ends a session at once only when it was
    /// issued in that very session by a client still enabled: one from an earlier
    /// session (or another browser) or from a disabled client makes the person confirm,
    /// so a site holding an old ID token cannot sign anyone out with a link. And
    /// introspection tells a client only of tokens issued to it or meant for it: a
    /// sign-in client given `token:introspect` learns nothing of another's tokens, a
    /// resource server (a machine client with that scope) sees access tokens for the
    /// API but no refresh token.
    async fn an_old_id_token_asks_first_and_introspection_shows_only_what_is_meant_for_the_caller(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        assert_eq!(server.signup("erin", PASSWORD).await.status(), 201);
        let (app, app_secret) = register(&url, &[
            "app", "--scope", "openid", "--redirect-uri", CB,
            "--post-logout-redirect-uri", "https://app.example/bye",
        ]).await;
        let app_secret = app_secret.unwrap();
        let (nosy, nosy_secret) = register(&url, &["nosy", "--scope", "openid token:introspect", "--redirect-uri", CB]).await;
        let nosy_secret = nosy_secret.unwrap();
        let (api, api_secret) = register(&url, &["api", "--scope", "token:introspect"]).await;
        let api_secret = api_secret.unwrap();
        let basic = Some((app.as_str(), app_secret.as_str()));

        // Erin signs in to the app: tokens and an ID token of this session.
        let mut browser = Browser::new();
        let (verifier, challenge) = pkce();
        let r = browser.get(&authorize_url(&server, &[
            ("response_type", "code"), ("client_id", &app), ("redirect_uri", CB),
            ("scope", "openid"), ("code_challenge", &challenge), ("code_challenge_method", "S256"),
        ])).await;
        let consent = sign_in(&mut browser, &server, &location(&r), "erin").await;
        let html = consent.text().await.unwrap();
        let r = browser.post(&server.url("/oauth/authorize"), &[
            ("authorization", &hidden(&html, "authorization")),
            ("csrf_token", &hidden(&html, "csrf_token")), ("decision", "allow"),
        ]).await;
        let code = query(&location(&r))["code"].clone();
        let (status, tokens) = token(&server, basic, &[
            ("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", CB), ("code_verifier", &verifier),
        ]).await;
        assert_eq!(status, 200, "{tokens}");
        let access = tokens["access_token"].as_str().unwrap().to_owned();
        let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
        let old_id_token = tokens["id_token"].as_str().unwrap().to_owned();

        // Introspection: the owner sees both; the resource server the access token
        // only; the other sign-in client, scope or not, neither.
        assert_eq!(introspect(&server, &app, &app_secret, &access).await["active"], true);
        assert_eq!(introspect(&server, &app, &app_secret, &refresh).await["active"], true);
        let seen = introspect(&server, &api, &api_secret, &access).await;
        assert_eq!((seen["active"].as_bool(), seen["sub"].is_string()), (Some(true), true), "{seen}");
        assert_eq!(introspect(&server, &api, &api_secret, &refresh).await, serde_json::json!({"active": false}));
        assert_eq!(introspect(&server, &nosy, &nosy_secret, &access).await, serde_json::json!({"active": false}));
        assert_eq!(introspect(&server, &nosy, &nosy_secret, &refresh).await, serde_json::json!({"active": false}));

        // Erin signs out, and later signs in again: a new session.
        let html = browser.get(&server.url("/oauth/logout")).await.text().await.unwrap();
        let r = browser.post(&server.url("/oauth/logout"), &[("csrf_token", &hidden(&html, "csrf_token"))]).await;
        assert_eq!(r.status(), 200);
        let r = browser.post(&server.url("/session/login"), &[("username", "erin"), ("password", PASSWORD)]).await;
        assert_eq!(r.status(), 303);
        assert_eq!(browser.get(&server.url("/account")).await.status(), 200, "signed in again");

        // A link with the old session's ID token: the person is asked; nothing ends.
        let logout = |hint: &str| server.url(&format!(
            "/oauth/logout?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("id_token_hint", hint)
                .append_pair("post_logout_redirect_uri", "https://app.example/bye")
                .finish()
        ));
        let r = browser.get(&logout(&old_id_token)).await;
        assert_eq!(r.status(), 200, "a confirmation page, not a redirect");
        assert!(r.text().await.unwrap().contains("Sign out of Portcullis?"));
        assert_eq!(browser.get(&server.url("/account")).await.status(), 200, "still signed in");

        // An ID token of this session, from a client that was disabled since: asked too.
        let (code, verifier) = remembered_code(&mut browser, &server, &app).await;
        let (status, tokens) = token(&server, basic, &[
            ("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", CB), ("code_verifier", &verifier),
        ]).await;
        assert_eq!(status, 200);
        let fresh_id_token = tokens["id_token"].as_str().unwrap().to_owned();
        clients(&url, &["disable", "app"]).await;
        // (Without post_logout_redirect_uri: a disabled client has none to send to.)
        let hint_only = server.url(&format!(
            "/oauth/logout?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("id_token_hint", &fresh_id_token)
                .finish()
        ));
        let r = browser.get(&hint_only).await;
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("Sign out of Portcullis?"));
        assert_eq!(browser.get(&server.url("/account")).await.status(), 200, "still signed in");
        // Enabled again, the same ID token ends this session at once.
        clients(&url, &["enable", "app"]).await;
        let r = browser.get(&logout(&fresh_id_token)).await;
        assert_eq!(r.status(), 303);
        assert_eq!(location(&r), "https://app.example/bye");
        assert_ne!(browser.get(&server.url("/account")).await.status(), 200, "signed out");
        server.stop().await;
    }
}

/// A code for `client_id` and `scope`, through sign-in (as `username`) and an
/// allowed consent page whose HTML must contain `consent_says`; and its verifier.
async fn code_through_consent(
    server: &TestServer,
    client_id: &str,
    scope: &str,
    username: &str,
    consent_says: &str,
) -> (String, String) {
    let mut browser = Browser::new();
    let (verifier, challenge) = pkce();
    let request = authorize_url(
        server,
        &[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", CB),
            ("scope", scope),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let login = location(&browser.get(&request).await);
    let consent = sign_in(&mut browser, server, &login, username).await;
    let html = consent.text().await.unwrap();
    assert!(html.contains(consent_says), "{html}");
    let r = browser
        .post(
            &server.url("/oauth/authorize"),
            &[
                ("authorization", &hidden(&html, "authorization")),
                ("csrf_token", &hidden(&html, "csrf_token")),
                ("decision", "allow"),
            ],
        )
        .await;
    (query(&location(&r))["code"].clone(), verifier)
}

on_each_store! {
    /// Issue 23 (email on accounts): the `email` scope gives an application the
    /// person's address and whether it is proven, in the ID token and at userinfo;
    /// without the scope it sees neither.
    async fn the_email_scope_gives_the_address_and_whether_it_is_verified(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        let signup = server
            .post("/auth/signup", json!({"username": "erin", "password": PASSWORD, "email": "Erin@Example.COM"}))
            .await;
        assert_eq!(signup.status(), 201);
        for (name, scope, says, sees) in [
            ("mailer", "openid email", "See your email address", true),
            ("plain", "openid", "Allow plain?", false),
        ] {
            let (id, secret) = register(&url, &[name, "--scope", scope, "--redirect-uri", CB]).await;
            let secret = secret.unwrap();
            let (code, verifier) = code_through_consent(&server, &id, scope, "erin", says).await;
            let (status, body) = token(&server, Some((&id, &secret)), &[
                ("grant_type", "authorization_code"), ("code", &code),
                ("redirect_uri", CB), ("code_verifier", &verifier),
            ]).await;
            assert_eq!(status, 200, "{body}");
            let claims = claims_of(body["id_token"].as_str().unwrap());
            let (status, info) = userinfo(&server, body["access_token"].as_str().unwrap()).await;
            assert_eq!(status, 200);
            if sees {
                assert_eq!((&claims["email"], &claims["email_verified"]), (&json!("Erin@example.com"), &json!(false)));
                assert!(claims.get("preferred_username").is_none(), "no profile scope");
                assert_eq!((&info["email"], &info["email_verified"]), (&json!("Erin@example.com"), &json!(false)));
            } else {
                assert!(claims.get("email").is_none(), "{claims}");
                assert!(info.get("email").is_none(), "{info}");
            }
        }
    }
}

on_each_store! {
    /// Issue 28, finding 9: the sign-in page names the application only for a request
    /// that names an enabled client and one of its registered redirect URIs, so a
    /// made-up link cannot put a registered name on the page.
    async fn the_sign_in_page_names_only_an_enabled_client_at_its_own_redirect_uri(url, dir) {
        let server = TestServer::start(config(&url)).await.keep_dir(dir);
        let (id, _) = register(&url, &["notes", "--scope", "openid", "--redirect-uri", CB]).await;
        let page = |redirect_uri: &'static str| {
            let request: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs([("response_type", "code"), ("client_id", id.as_str()), ("redirect_uri", redirect_uri)])
                .finish();
            let login = format!(
                "/login?{}",
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("return_to", &format!("/oauth/authorize?{request}"))
                    .finish()
            );
            let server = &server;
            async move { server.client.get(server.url(&login)).send().await.unwrap().text().await.unwrap() }
        };
        let named = page(CB).await;
        assert!(named.contains("id=\"app-name\">notes</strong>"), "{named}");
        let elsewhere = page("https://evil.example/cb").await;
        assert!(!elsewhere.contains("app-name") && elsewhere.contains("An application asks"), "{elsewhere}");
        // Through the store: `portcullis clients disable` run within a moment of the
        // server's start sometimes waits out SQLite's busy timeout (noted for the next
        // session); disabling is the same call.
        let store = portcullis_store::open(&url).await.unwrap();
        let now = portcullis::clock::Clock::now(&portcullis::clock::SystemClock);
        let notes = store.clients().await.unwrap().into_iter().find(|c| c.name == "notes").unwrap();
        let off = portcullis_store::ClientChange { disabled: Some(true), ..Default::default() };
        assert!(store.update_client(&notes.id, &off, now).await.unwrap().is_some());
        let disabled = page(CB).await;
        assert!(!disabled.contains("app-name"), "{disabled}");
    }
}

on_each_store! {
    /// Issue 24: the authorization flow's sign-in asks for the second factor (a page
    /// between the password and the way back); the code's tokens say how (`amr`,
    /// `acr`); `acr_values=aal2` sends a password-only session to sign in again, and
    /// an account without a factor goes on with `acr` `aal1`.
    async fn the_authorization_flow_asks_for_the_second_factor(url, dir) {
        use crate::factors::{enrolled, totp};
        let clock = crate::support::still_clock();
        let now = || portcullis::clock::Clock::now(clock.as_ref());
        let server = TestServer::start_with(config(&url), clock.clone()).await.keep_dir(dir);
        let (secret, _) = enrolled(&server, &clock, "mona").await;
        let (id, secret_c) = register(&url, &["fast", "--first-party", "--scope", "openid", "--redirect-uri", CB]).await;
        let secret_c = secret_c.unwrap();
        let mut browser = Browser::new();
        let (verifier, challenge) = pkce();
        let request = authorize_url(&server, &[
            ("response_type", "code"), ("client_id", &id), ("redirect_uri", CB),
            ("scope", "openid"), ("code_challenge", &challenge), ("code_challenge_method", "S256"),
        ]);
        let r = browser.get(&request).await;
        let login = location(&r);
        let page = browser.get(&server.url(&login)).await.text().await.unwrap();
        let return_to = hidden(&page, "return_to");
        let r = browser.post(&server.url("/session/login"), &[("username", "mona"), ("password", PASSWORD), ("return_to", &return_to)]).await;
        assert_eq!(r.status(), 200, "the second-step page, not a redirect");
        assert!(browser.cookie.is_none(), "no session before the second factor");
        let html = r.text().await.unwrap();
        assert_eq!(hidden(&html, "return_to"), return_to);
        let mfa_token = hidden(&html, "mfa_token");
        let r = browser.post(&server.url("/session/login/mfa"), &[("mfa_token", &mfa_token), ("method", "totp"), ("code", &totp(&secret, now())), ("return_to", &return_to)]).await;
        assert_eq!(r.status(), 303);
        assert_eq!(location(&r), return_to);
        let r = browser.get(&server.url(&return_to)).await;
        let code = query(&location(&r))["code"].clone();
        let (status, tokens) = token(&server, Some((&id, &secret_c)), &[
            ("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", CB), ("code_verifier", &verifier),
        ]).await;
        assert_eq!(status, 200, "{tokens}");
        let access = claims_of(tokens["access_token"].as_str().unwrap());
        let id_token = claims_of(tokens["id_token"].as_str().unwrap());
        assert_eq!(access["amr"], json!(["pwd", "otp", "mfa"]));
        assert_eq!((id_token["amr"].clone(), id_token["acr"].clone()), (json!(["pwd", "otp", "mfa"]), json!("aal2")));
        // Refreshed by the client: the family keeps it.
        let (_, refreshed) = token(&server, Some((&id, &secret_c)), &[
            ("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ]).await;
        assert_eq!(claims_of(refreshed["access_token"].as_str().unwrap())["acr"], "aal2");

        // A password-only session of an account with a factor: aal2 asks again.
        let _ = server.signup("nils", PASSWORD).await;
        let mut other = Browser::new();
        let r = other.post(&server.url("/session/login"), &[("username", "nils"), ("password", PASSWORD)]).await;
        assert_eq!(r.status(), 303);
        let aal2 = |challenge: &str| authorize_url(&server, &[
            ("response_type", "code"), ("client_id", &id), ("redirect_uri", CB), ("scope", "openid"),
            ("code_challenge", challenge), ("code_challenge_method", "S256"), ("acr_values", "aal2"),
        ]);
        // No factor: nothing more to ask; the code comes, and says aal1.
        let (verifier2, challenge2) = pkce();
        let r = other.get(&aal2(&challenge2)).await;
        let code = query(&location(&r))["code"].clone();
        let (_, t) = token(&server, Some((&id, &secret_c)), &[
            ("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", CB), ("code_verifier", &verifier2),
        ]).await;
        assert_eq!(claims_of(t["id_token"].as_str().unwrap())["acr"], "aal1");
        // Mona's two-factor session meets aal2 as it is.
        let (_, challenge3) = pkce();
        let r = browser.get(&aal2(&challenge3)).await;
        assert!(query(&location(&r)).contains_key("code"), "a two-factor session meets aal2");
        // Nils turns on a factor: his password-only session no longer meets aal2.
        let r = other.get(&server.url("/auth/me")).await;
        assert_eq!(r.status(), 200);
        let tokens = server.login("nils", PASSWORD).await.json::<Value>().await.unwrap();
        let access = tokens["access_token"].as_str().unwrap().to_owned();
        let r = server.client.post(server.url("/auth/mfa/totp")).bearer_auth(&access).json(&json!({ "password": PASSWORD })).send().await.unwrap();
        let nils_secret = r.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned();
        let r = server.client.post(server.url("/auth/mfa/totp/confirm")).bearer_auth(&access).json(&json!({ "code": totp(&nils_secret, now()) })).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let (_, challenge4) = pkce();
        let r = other.get(&aal2(&challenge4)).await;
        assert!(location(&r).starts_with("/login?"), "{}", location(&r));
    }
}
