//! Issue 27: forward authentication (`GET /auth/forward`) for apps behind a reverse
//! proxy — its answers over HTTP, then a real nginx from Debian's package in front of a
//! static upstream, driven by curl-like requests and by headless Chromium.

use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, LOCATION};
use serde_json::json;

use crate::support::{TestServer, config, s, sqlite_db};

const PASSWORD: &str = "correct horse battery";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A cookie session of `name`: its cookie (`name=value`) and CSRF token.
async fn session_login(server: &TestServer, name: &str) -> (String, String) {
    let r = client()
        .post(server.url("/session/login"))
        .json(&json!({ "username": name, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    (
        cookie,
        s(&r.json::<serde_json::Value>().await.unwrap(), "csrf_token"),
    )
}

/// The server, trusting this machine as its proxy, for apps on `app.test`.
async fn start(trusted: bool) -> TestServer {
    let (url, dir) = sqlite_db();
    let mut c = config(&url);
    if trusted {
        c.trusted_proxies =
            portcullis_server::client::TrustedProxies::parse(&["127.0.0.1"]).unwrap();
    }
    c.forward_auth_domains = vec!["app.test".into(), ".apps.test".into()];
    TestServer::start(c).await.keep_dir(dir)
}

#[tokio::test]
async fn forward_auth_answers_programs_browsers_and_each_proxy_convention() {
    let server = start(true).await;
    let http = client();
    let ask = |headers: &[(&str, &str)]| {
        let mut req = http.get(server.url("/auth/forward"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send()
    };
    let traefik = [
        ("accept", "text/html,application/xhtml+xml"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "app.test"),
        ("x-forwarded-uri", "/dash?tab=1"),
    ];
    // A program: 401 with the challenge.
    let r = ask(&[("accept", "application/json")]).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    // A browser behind Traefik or Caddy: 302 to sign in, and back to the page after.
    let r = ask(&traefik).await.unwrap();
    assert_eq!(r.status(), 302);
    let login = r.headers()[LOCATION].to_str().unwrap().to_owned();
    assert_eq!(
        login,
        "http://portcullis.test/login?return_to=https%3A%2F%2Fapp.test%2Fdash%3Ftab%3D1"
    );
    // Behind nginx (X-Original-URI): 401, the way to sign in in a header.
    let r = ask(&[
        ("accept", "text/html"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "a.apps.test"),
        ("x-original-uri", "/x"),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["x-portcullis-login"],
        "http://portcullis.test/login?return_to=https%3A%2F%2Fa.apps.test%2Fx"
    );
    // A host that is not ours, or plain http off this machine: no way back there.
    for (host, proto) in [
        ("evil.test", "https"),
        ("app.test.evil.test", "https"),
        ("app.test", "http"),
    ] {
        let r = ask(&[
            ("accept", "text/html"),
            ("x-forwarded-proto", proto),
            ("x-forwarded-host", host),
            ("x-forwarded-uri", "/"),
        ])
        .await
        .unwrap();
        assert_eq!(
            r.headers()[LOCATION],
            "http://portcullis.test/login",
            "{proto}://{host}"
        );
    }

    // Signed in with a bearer token: 200, who it is for the upstream.
    assert!(server.signup("dana", PASSWORD).await.status().is_success());
    let store = portcullis_store::open(&server.database_url).await.unwrap();
    store
        .set_email(
            "dana",
            Some(&portcullis_store::Email {
                address: "dana@example.com".into(),
                key: "dana@example.com".into(),
            }),
            true,
        )
        .await
        .unwrap();
    store.set_scope("dana", "read", 1).await.unwrap();
    let tokens: serde_json::Value = server.login("dana", PASSWORD).await.json().await.unwrap();
    let bearer = format!("Bearer {}", s(&tokens, "access_token"));
    let r = ask(&[(AUTHORIZATION.as_str(), &bearer)]).await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["x-auth-request-user"], "dana");
    assert_eq!(h["x-auth-request-preferred-username"], "dana");
    assert_eq!(h["x-auth-request-email"], "dana@example.com");
    assert_eq!(h["x-portcullis-scope"], "read");
    assert!(!h["x-portcullis-sub"].is_empty());
    // A location that needs a scope the person lacks: 403; one they have: 200.
    let r = http
        .get(server.url("/auth/forward?scope=admin"))
        .header(AUTHORIZATION, &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .get(server.url("/auth/forward?scope=read"))
        .header(AUTHORIZATION, &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A bad token is refused, never taken for a stranger's browser.
    let r = ask(&[
        (AUTHORIZATION.as_str(), "Bearer not.a.token"),
        (ACCEPT.as_str(), "application/json"),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    // A session cookie: 200 too, the name from memory.
    let (cookie, _) = session_login(&server, "dana").await;
    let r = ask(&[("cookie", &cookie)]).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-auth-request-user"], "dana");
    server.stop().await;
}

/// `?amr=mfa`: a sign-in without a second factor is refused at that location (a
/// program gets RFC 9470's step-up challenge, a browser a page saying how to turn one
/// on, with the whole way to the account); one with it passes; every method asked for
/// is needed.
#[tokio::test]
async fn a_location_that_asks_for_a_second_factor() {
    let (url, dir) = sqlite_db();
    let clock = crate::support::still_clock();
    let server = TestServer::start_with(config(&url), clock.clone())
        .await
        .keep_dir(dir);
    let http = client();
    let ask = |path: &str, token: &str, accept: &str| {
        http.get(server.url(path))
            .bearer_auth(token)
            .header(ACCEPT, accept)
            .send()
    };
    let one = server.account("una").await;
    let weak = s(&one, "access_token");
    let r = ask("/auth/forward?amr=mfa", &weak, "application/json")
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        challenge.contains("error=\"insufficient_user_authentication\"")
            && challenge.contains("acr_values=\"aal2\""),
        "{challenge}"
    );
    let r = ask("/auth/forward?amr=mfa", &weak, "text/html")
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("id=\"step-up\"")
            && page.contains(&format!("href=\"{}/account\"", "http://portcullis.test")),
        "{page}"
    );
    assert_eq!(
        ask("/auth/forward?amr=pwd", &weak, "text/html")
            .await
            .unwrap()
            .status(),
        200
    );

    let (secret, _) = crate::factors::enrolled(&server, &clock, "vera").await;
    let r = server.login("vera", PASSWORD).await;
    let token = s(&r.json::<serde_json::Value>().await.unwrap(), "mfa_token");
    let now = portcullis::clock::Clock::now(clock.as_ref());
    let r = server.post("/auth/login/mfa", json!({ "mfa_token": token, "method": "totp", "code": crate::factors::totp(&secret, now) })).await;
    assert_eq!(r.status(), 200);
    let strong = s(
        &r.json::<serde_json::Value>().await.unwrap(),
        "access_token",
    );
    for (path, status) in [
        ("/auth/forward?amr=mfa", 200),
        ("/auth/forward?amr=mfa+otp", 200),
        ("/auth/forward?amr=mfa+hwk", 401),
        ("/auth/forward?amr=mfa&scope=admin", 403),
    ] {
        assert_eq!(
            ask(path, &strong, "application/json")
                .await
                .unwrap()
                .status(),
            status,
            "{path}"
        );
    }
    server.stop().await;
}

/// `session_cookie_domain`: one sign-in covers sibling subdomains (the cookie names
/// the domain, and a sibling's forward check passes with it), while a sibling's own
/// state-changing request is refused as any other site's, a cookie planted beside ours
/// counts for nothing, and signing out clears the cookie for the whole domain.
#[tokio::test]
async fn a_cookie_for_sibling_subdomains_keeps_the_origin_rules() {
    let (url, dir) = sqlite_db();
    let mut c = config(&url);
    c.issuer = "http://auth.portcullis.test".into();
    c.audience = c.issuer.clone();
    c.sessions = portcullis::session::SessionConfig::insecure_allow_http(&c.issuer)
        .unwrap()
        .with_cookie_domain("portcullis.test")
        .unwrap();
    c.trusted_proxies = portcullis_server::client::TrustedProxies::parse(&["127.0.0.1"]).unwrap();
    c.forward_auth_domains = vec![".portcullis.test".into()];
    let server = TestServer::start(c).await.keep_dir(dir);
    let http = client();
    assert_eq!(server.signup("sia", PASSWORD).await.status(), 201);
    let r = http
        .post(server.url("/session/login"))
        .json(&json!({ "username": "sia", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set.contains("Domain=portcullis.test") && set.contains("HttpOnly"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    let forward = |cookie: String| {
        http.get(server.url("/auth/forward"))
            .header("cookie", cookie)
            .header("x-forwarded-proto", "http")
            .header("x-forwarded-host", "wiki.portcullis.test")
            .header("x-forwarded-uri", "/")
            .header(ACCEPT, "application/json")
            .send()
    };
    let r = forward(cookie.clone()).await.unwrap();
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["x-auth-request-user"].to_str().unwrap()
        ),
        (200, "sia")
    );

    // A sibling's page posting with the cookie: refused, nothing ends.
    for path in ["/session/logout", "/auth/logout-all", "/session/token"] {
        let r = http
            .post(server.url(path))
            .header("cookie", &cookie)
            .header("origin", "http://wiki.portcullis.test")
            .header("sec-fetch-site", "same-site")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    assert_eq!(
        forward(cookie.clone()).await.unwrap().status(),
        200,
        "still signed in"
    );
    // A cookie of the same name planted by a sibling beside ours: neither counts.
    let (name, _) = cookie.split_once('=').unwrap();
    let planted = format!("{cookie}; {name}=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(forward(planted).await.unwrap().status(), 401);

    // Signed out from the server's own origin: the cookie is cleared for the domain.
    let csrf = session_login(&server, "sia").await;
    let r = http
        .post(server.url("/session/logout"))
        .header("cookie", &csrf.0)
        .header("origin", "http://auth.portcullis.test")
        .header("x-csrf-token", &csrf.1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let cleared = r.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cleared.contains("Domain=portcullis.test") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    assert_eq!(forward(csrf.0).await.unwrap().status(), 401);
    server.stop().await;
}

/// The sign-in page takes a protected app's URL as `return_to` only for the hosts of
/// `forward_auth_domains`, lets its form end there (CSP `form-action`), and goes there
/// after signing in; and forwarding headers count only from a trusted proxy.
#[tokio::test]
async fn the_sign_in_page_goes_back_only_to_the_apps_it_protects() {
    let server = start(true).await;
    let http = client();
    assert!(server.signup("eli", PASSWORD).await.status().is_success());
    let page = http
        .get(server.url("/login?return_to=https%3A%2F%2Fapp.test%2Fdash"))
        .send()
        .await
        .unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("form-action 'self' https://app.test"), "{csp}");
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("value=\"https://app.test/dash\"")
    );
    let page = http
        .get(server.url("/login?return_to=https%3A%2F%2Fevil.test%2F"))
        .send()
        .await
        .unwrap();
    assert!(!page.text().await.unwrap().contains("evil.test"));
    let r = http
        .post(server.url("/session/login"))
        .form(&[
            ("username", "eli"),
            ("password", PASSWORD),
            ("return_to", "https://app.test/dash"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "https://app.test/dash");
    let r = http
        .post(server.url("/session/login"))
        .form(&[
            ("username", "eli"),
            ("password", PASSWORD),
            ("return_to", "https://evil.test/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()[LOCATION], "/account");
    server.stop().await;

    // Not a trusted proxy: its X-Forwarded-* say nothing, and nobody is sent anywhere.
    let server = start(false).await;
    let r = http
        .get(server.url("/auth/forward"))
        .header("accept", "text/html")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "app.test")
        .header("x-forwarded-uri", "/dash")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["x-portcullis-login"],
        "http://portcullis.test/login"
    );
    server.stop().await;
}

/// nginx from Debian's package, when it is installed (`.ci/run` installs it and sets
/// `PORTCULLIS_REQUIRE_NGINX`).
fn nginx() -> Option<String> {
    let path = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    if path.is_none() {
        assert!(
            std::env::var_os("PORTCULLIS_REQUIRE_NGINX").is_none(),
            "PORTCULLIS_REQUIRE_NGINX is set but nginx is not installed"
        );
        eprintln!("skipped: needs Debian's nginx");
    }
    path.map(str::to_owned)
}

/// A real nginx in front of a static upstream (nginx itself, echoing the identity
/// headers it receives), asking `portcullis` with `auth_request`, exactly as
/// docs/deployment.md configures it; killed when dropped.
struct Nginx {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(binary: &str, portcullis: &str) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let (port, upstream) = (free_port(), free_port());
        let d = dir.path().display();
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
error_log {d}/error.log warn;
pid {d}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    # The app nginx protects: a static upstream that shows what it was told.
    server {{
        listen 127.0.0.1:{upstream};
        default_type text/html;
        location / {{ return 200 "<!doctype html><title>app</title><p id=seen>user=$http_x_auth_request_user scope=$http_x_portcullis_scope</p>"; }}
    }}
    server {{
        listen 127.0.0.1:{port};
        location = /_portcullis {{
            internal;
            proxy_pass {portcullis}/auth/forward;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
        }}
        location = /_portcullis_admin {{
            internal;
            proxy_pass {portcullis}/auth/forward?scope=admin;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
        }}
        location / {{
            auth_request /_portcullis;
            auth_request_set $user $upstream_http_x_auth_request_user;
            auth_request_set $scope $upstream_http_x_portcullis_scope;
            auth_request_set $login $upstream_http_x_portcullis_login;
            error_page 401 =302 $login;
            proxy_set_header X-Auth-Request-User $user;
            proxy_set_header X-Portcullis-Scope $scope;
            proxy_pass http://127.0.0.1:{upstream};
        }}
        location /admin/ {{
            auth_request /_portcullis_admin;
            auth_request_set $user $upstream_http_x_auth_request_user;
            auth_request_set $login $upstream_http_x_portcullis_login;
            error_page 401 =302 $login;
            proxy_set_header X-Auth-Request-User $user;
            proxy_pass http://127.0.0.1:{upstream};
        }}
    }}
}}
"#
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let child = std::process::Command::new(binary)
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir.path())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nginx did not start: {}",
                std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Nginx {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server on its own port of 127.0.0.1 (its issuer's origin, as `portcullis serve`
/// runs), trusting this machine as its proxy and protecting apps on 127.0.0.1.
async fn behind_nginx() -> (TestServer, u16) {
    let (url, dir) = sqlite_db();
    let port = free_port();
    let mut c = config(&url);
    c.bind = format!("127.0.0.1:{port}").parse().unwrap();
    c.issuer = format!("http://127.0.0.1:{port}");
    c.audience = c.issuer.clone();
    c.sessions = portcullis::session::SessionConfig::for_origin(&c.issuer).unwrap();
    c.trusted_proxies = portcullis_server::client::TrustedProxies::parse(&["127.0.0.1"]).unwrap();
    c.forward_auth_domains = vec!["127.0.0.1".into()];
    (TestServer::start(c).await.keep_dir(dir), port)
}

/// Through a real nginx: a bearer request passes with the identity headers, a missing
/// scope is 403, a stranger's browser is sent to sign in with the way back.
#[tokio::test]
async fn nginx_auth_request_in_front_of_a_static_upstream() {
    let Some(binary) = nginx() else { return };
    let (server, _) = behind_nginx().await;
    let nginx = Nginx::start(&binary, &server.base);
    let app = format!("http://127.0.0.1:{}", nginx.port);
    let http = client();

    let r = http
        .get(format!("{app}/reports?month=11"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()[LOCATION].to_str().unwrap(),
        format!(
            "{}/login?return_to={}",
            server.base,
            url::form_urlencoded::byte_serialize(format!("{app}/reports?month=11").as_bytes())
                .collect::<String>()
        )
    );
    let tokens = server.account("fay").await;
    let r = http
        .get(format!("{app}/reports"))
        .bearer_auth(s(&tokens, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.text().await.unwrap().contains("user=fay scope="),
        "the upstream saw who it was"
    );
    let r = http
        .get(format!("{app}/admin/"))
        .bearer_auth(s(&tokens, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a location that needs the admin scope");
    drop(nginx);
    server.stop().await;
}

/// Issue 27's browser walk, through nginx: a stranger asking for a page is sent to
/// sign in, comes back to the page it asked for, the upstream knows who they are, and
/// after signing out the page is refused again.
#[tokio::test]
async fn a_person_signs_in_through_nginx_and_comes_back_to_the_page_in_chromium() {
    let Some(binary) = nginx() else { return };
    let Some(b) = crate::browser::start_browser().await else {
        return;
    };
    let (server, port) = behind_nginx().await;
    assert!(server.signup("gil", PASSWORD).await.status().is_success());
    let nginx = Nginx::start(&binary, &server.base);
    let app = format!("http://127.0.0.1:{}", nginx.port);

    b.client
        .goto(&format!("{app}/reports?month=11"))
        .await
        .unwrap();
    crate::browser::arrive(&b.client, "/login").await;
    crate::browser::fill(&b.client, "#username", "gil").await;
    crate::browser::fill(&b.client, "#password", PASSWORD).await;
    crate::browser::click(&b.client, "button[type=submit]").await;
    let mut back = false;
    for _ in 0..200 {
        let now = b.client.current_url().await.unwrap();
        if now.port() == Some(nginx.port) && now.path() == "/reports" {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        back,
        "not back at the page: {}",
        b.client.current_url().await.unwrap()
    );
    assert_eq!(
        b.client.current_url().await.unwrap().query(),
        Some("month=11")
    );
    let seen = crate::browser::text(&b.client, "#seen").await;
    assert!(seen.starts_with("user=gil"), "{seen}");

    // Signed out at Portcullis: the page is refused again (sent to sign in).
    b.client
        .goto(&format!("{}/account", server.base))
        .await
        .unwrap();
    crate::browser::arrive(&b.client, "/account").await;
    crate::browser::click(&b.client, "#sign-out").await;
    crate::browser::arrive(&b.client, "/login").await;
    b.client.goto(&format!("{app}/reports")).await.unwrap();
    crate::browser::arrive(&b.client, "/login").await;
    assert_eq!(b.client.current_url().await.unwrap().port(), Some(port));
    b.client.close().await.unwrap();
    drop(nginx);
    server.stop().await;
}
