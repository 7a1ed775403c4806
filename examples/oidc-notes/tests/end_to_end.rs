//! The example application and a real Portcullis server, each on a random port: a
//! person signs in to the application through Portcullis's sign-in and consent pages,
//! is greeted by name, and signs out of both. The browser is played by hand (one
//! cookie jar per site, redirects followed one at a time), so that every hop is
//! checked; the same flow runs in Chromium against the server in
//! crates/portcullis-server/tests/it/browser.rs.

// Helpers unwrap: a panic there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

const PASSWORD: &str = "correct horse battery";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A browser: cookies kept per host:port, nothing followed automatically.
struct Browser {
    http: reqwest::Client,
    jars: HashMap<String, HashMap<String, String>>,
}

impl Browser {
    fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jars: HashMap::new(),
        }
    }

    fn site(url: &str) -> String {
        let u = url::Url::parse(url).unwrap();
        format!(
            "{}:{}",
            u.host_str().unwrap(),
            u.port_or_known_default().unwrap()
        )
    }

    fn cookie_header(&self, url: &str) -> Option<String> {
        let jar = self.jars.get(&Self::site(url))?;
        (!jar.is_empty()).then(|| {
            jar.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn keep(&mut self, url: &str, r: &reqwest::Response) {
        let jar = self.jars.entry(Self::site(url)).or_default();
        for value in r.headers().get_all(SET_COOKIE) {
            let text = value.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || text.contains("Max-Age=0") {
                jar.remove(name);
            } else {
                jar.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    async fn get(&mut self, url: &str) -> reqwest::Response {
        let mut req = self.http.get(url);
        if let Some(c) = self.cookie_header(url) {
            req = req.header(COOKIE, c);
        }
        let r = req.send().await.unwrap();
        self.keep(url, &r);
        r
    }

    async fn post(&mut self, url: &str, origin: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.http.post(url).header("origin", origin).form(form);
        if let Some(c) = self.cookie_header(url) {
            req = req.header(COOKIE, c);
        }
        let r = req.send().await.unwrap();
        self.keep(url, &r);
        r
    }
}

fn location(r: &reqwest::Response, base: &str) -> String {
    let to = r.headers()[LOCATION].to_str().unwrap();
    url::Url::parse(base).unwrap().join(to).unwrap().to_string()
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {name}")) + marker.len();
    let end = start + html[start..].find('"').unwrap();
    html[start..end]
        .replace("&amp;", "&")
        .replace("&quot;", "\"")
}

#[tokio::test]
async fn a_person_signs_in_to_the_notes_app_with_portcullis_and_signs_out_of_both() {
    // Portcullis, on 127.0.0.1; the application on localhost (another site, as in
    // production: the two session cookies do not meet).
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let mut config = portcullis_server::config::Config::defaults().unwrap();
    config.bind = format!("127.0.0.1:{port}").parse().unwrap();
    config.database_url = format!("sqlite://{}", dir.path().join("auth.db").display());
    config.issuer = issuer.clone();
    config.audience = issuer.clone();
    config.sessions = portcullis::session::SessionConfig::for_origin(&issuer).unwrap();
    let db = config.database_url.clone();
    let auth = portcullis_server::startup::start(config).await.unwrap();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{issuer}/auth/signup"))
        .json(&serde_json::json!({"username": "nora", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let app_port = free_port();
    let app = format!("http://localhost:{app_port}");
    let registered = register(&db, &app).await;
    let running = oidc_notes::start(oidc_notes::Args {
        bind: format!("127.0.0.1:{app_port}").parse().unwrap(),
        url: app.clone(),
        issuer: issuer.clone(),
        client_id: registered.0.clone(),
        client_secret: registered.1.clone(),
        client_secret_file: None,
        key: None,
    })
    .await
    .unwrap();
    assert_eq!(running.addr.port(), app_port);

    let mut b = Browser::new();
    // Not signed in: the page offers to sign in. No other site may frame it (issue
    // 28, finding 8).
    let home = b.get(&format!("{app}/")).await;
    assert_eq!(home.headers()["x-frame-options"], "DENY");
    assert!(
        home.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let home = home.text().await.unwrap();
    assert!(home.contains("id=\"sign-in\""));

    // To the provider, with the flow cookie.
    let r = b.get(&format!("{app}/auth/login?return_to=/")).await;
    assert_eq!(r.status(), 303);
    let authorize = location(&r, &app);
    assert!(
        authorize.starts_with(&format!("{issuer}/oauth/authorize?")),
        "{authorize}"
    );
    assert!(b.cookie_header(&app).unwrap().contains("portcullis_oidc="));

    // Portcullis: sign in, then allow.
    let r = b.get(&authorize).await;
    let login = location(&r, &issuer);
    let html = b.get(&login).await.text().await.unwrap();
    let return_to = hidden(&html, "return_to");
    let r = b
        .post(
            &format!("{issuer}/session/login"),
            &issuer,
            &[
                ("username", "nora"),
                ("password", PASSWORD),
                ("return_to", &return_to),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    let consent = b.get(&location(&r, &issuer)).await.text().await.unwrap();
    assert!(consent.contains("Allow notes?"), "{consent}");
    let r = b
        .post(
            &format!("{issuer}/oauth/authorize"),
            &issuer,
            &[
                ("authorization", &hidden(&consent, "authorization")),
                ("csrf_token", &hidden(&consent, "csrf_token")),
                ("decision", "allow"),
            ],
        )
        .await;
    let callback = location(&r, &issuer);
    assert!(
        callback.starts_with(&format!("{app}/auth/callback?code=")),
        "{callback}"
    );

    // A callback without this browser's flow cookie is refused (login CSRF).
    let mut stranger = Browser::new();
    let r = stranger.get(&callback).await;
    assert_eq!(r.status(), 400);

    // Back at the application: signed in, greeted by name, the flow cookie gone.
    let r = b.get(&callback).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let r_to = location(&r, &app);
    assert_eq!(r_to, format!("{app}/"));
    assert!(!b.cookie_header(&app).unwrap().contains("portcullis_oidc="));
    let home = b.get(&r_to).await.text().await.unwrap();
    assert!(home.contains("Hello, nora"), "{home}");
    // The same callback again (a replayed code, and no flow cookie now): refused.
    let r = b.get(&callback).await;
    assert_eq!(r.status(), 400);

    // Sign out: the application's session ends, then Portcullis's, and the browser
    // comes home.
    let csrf = hidden(&home, "csrf_token");
    let r = b
        .post(
            &format!("{app}/auth/logout"),
            &app,
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(r.status(), 303);
    let end_session = location(&r, &app);
    assert!(
        end_session.starts_with(&format!("{issuer}/oauth/logout?")),
        "{end_session}"
    );
    let r = b.get(&end_session).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r, &issuer), format!("{app}/"));
    let home = b.get(&format!("{app}/")).await.text().await.unwrap();
    assert!(home.contains("id=\"sign-in\""));
    let r = b.get(&format!("{issuer}/account")).await;
    assert_eq!(r.status(), 303, "signed out of Portcullis too");

    auth.stop().await.unwrap();
}

/// Registers the application as `portcullis clients add notes --redirect-uri
/// APP/auth/callback --post-logout-redirect-uri APP/` does.
async fn register(db: &str, app: &str) -> (String, String) {
    let store = portcullis_store::open(db).await.unwrap();
    let secret = portcullis::opaque::Opaque::generate().unwrap();
    let id = portcullis::jwt::random_id().unwrap();
    store
        .add_client(&portcullis_store::Client {
            id: id.clone(),
            name: "notes".into(),
            secret_hash: secret.sha256().to_vec(),
            scope: "openid profile email".into(),
            disabled: false,
            not_before: 0,
            created_at: 0,
            redirect_uris: format!("{app}/auth/callback"),
            post_logout_redirect_uris: format!("{app}/"),
            public: false,
            first_party: false,
        })
        .await
        .unwrap();
    (id, secret.expose().to_owned())
}

/// The same application against another provider, independently written: panva's
/// `oidc-provider` (npm, pinned by `.ci/run`; `PORTCULLIS_TEST_OIDC_PROVIDER_MODULES`
/// names its `node_modules`, and with `PORTCULLIS_REQUIRE_OIDC_PROVIDER` set a missing
/// one fails the test), with its development sign-in and consent pages.
#[tokio::test]
async fn a_person_signs_in_to_the_notes_app_with_oidc_provider() {
    let modules = match std::env::var_os("PORTCULLIS_TEST_OIDC_PROVIDER_MODULES") {
        Some(m) => std::path::PathBuf::from(m),
        None if std::env::var_os("PORTCULLIS_REQUIRE_OIDC_PROVIDER").is_some() => {
            panic!("PORTCULLIS_TEST_OIDC_PROVIDER_MODULES is not set")
        }
        None => {
            eprintln!("skipped: needs npm's oidc-provider (PORTCULLIS_TEST_OIDC_PROVIDER_MODULES)");
            return;
        }
    };
    let app_port = free_port();
    let app = format!("http://localhost:{app_port}");
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&modules, dir.path().join("node_modules")).unwrap();
    let script = dir.path().join("oidc_provider.mjs");
    std::fs::write(
        &script,
        include_str!("../../../crates/portcullis-server/tests/oidc_provider.mjs"),
    )
    .unwrap();
    let op_port = free_port();
    let op = format!("http://127.0.0.1:{op_port}");
    let secret = "a-test-client-secret-long-enough-for-hs256-0123";
    let mut child = tokio::process::Command::new("node")
        .arg(&script)
        .args([
            &op_port.to_string(),
            "notes",
            secret,
            &format!("{app}/auth/callback"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt as _;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line == "listening" {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready.ok(), Some(true), "oidc-provider did not start");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    oidc_notes::start(oidc_notes::Args {
        bind: format!("127.0.0.1:{app_port}").parse().unwrap(),
        url: app.clone(),
        issuer: op.clone(),
        client_id: "notes".into(),
        client_secret: secret.into(),
        client_secret_file: None,
        key: Some([9; 32]),
    })
    .await
    .unwrap();

    let mut b = Browser::new();
    // A person's page, not signed in: a browser is sent to sign in, a program 401.
    let r = b.http.get(format!("{app}/notes")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = b
        .http
        .get(format!("{app}/notes"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let login = location(&r, &app);
    assert_eq!(login, format!("{app}/auth/login?return_to=%2Fnotes"));

    // Off to oidc-provider: its sign-in page, then its consent page, then back.
    let r = b.get(&login).await;
    let mut at = location(&r, &app);
    assert!(at.starts_with(&format!("{op}/auth?")), "{at}");
    let mut r = b.get(&at).await;
    for _ in 0..10 {
        if !(300..400).contains(&r.status().as_u16()) {
            let html = r.text().await.unwrap();
            let action = html
                .split("action=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap()
                .to_owned();
            let target = url::Url::parse(&at)
                .unwrap()
                .join(&action)
                .unwrap()
                .to_string();
            let form: &[(&str, &str)] = if html.contains("name=\"login\"") {
                &[("prompt", "login"), ("login", "olive"), ("password", "x")]
            } else {
                &[("prompt", "consent")]
            };
            r = b.post(&target, &op, form).await;
            at = target;
            continue;
        }
        at = location(&r, &at);
        if at.starts_with(&app) {
            break;
        }
        r = b.get(&at).await;
    }
    assert!(at.starts_with(&format!("{app}/auth/callback?")), "{at}");
    let r = b.get(&at).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r, &app), format!("{app}/notes"));

    // Her notes: one added with the form's token; without it, nothing is added.
    let page = b.get(&format!("{app}/notes")).await.text().await.unwrap();
    assert!(page.contains("Your notes, olive"), "{page}");
    let csrf = hidden(&page, "csrf_token");
    let r = b
        .post(
            &format!("{app}/notes"),
            &app,
            &[("csrf_token", &csrf), ("text", "buy milk")],
        )
        .await;
    assert_eq!(r.status(), 303);
    let r = b
        .post(
            &format!("{app}/notes"),
            &app,
            &[("csrf_token", "forged"), ("text", "forged note")],
        )
        .await;
    assert_eq!(r.status(), 403);
    let page = b.get(&format!("{app}/notes")).await.text().await.unwrap();
    assert!(
        page.contains("<li>buy milk</li>") && !page.contains("forged note"),
        "{page}"
    );

    // Signing out ends the session here and goes to oidc-provider's end_session.
    let cookies = b.cookie_header(&app).unwrap();
    let r = b
        .post(
            &format!("{app}/auth/logout"),
            &app,
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert!(location(&r, &app).starts_with(&format!("{op}/session/end?")));
    // The old cookies, replayed, are worth nothing: the session is over.
    let r = b
        .http
        .get(format!("{app}/notes"))
        .header(reqwest::header::COOKIE, cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let home = b.get(&format!("{app}/")).await.text().await.unwrap();
    assert!(home.contains("id=\"sign-in\""));
}
