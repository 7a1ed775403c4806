//! Signing in through an upstream OpenID Connect provider, against a real,
//! independently written one: panva's `oidc-provider` from npm (pinned and installed
//! by `.ci/run`, which sets `PORTCULLIS_TEST_OIDC_PROVIDER_MODULES` and
//! `PORTCULLIS_REQUIRE_OIDC_PROVIDER=1`, so in CI a missing provider fails the test),
//! on loopback, with its development sign-in and consent pages, walked in headless
//! Chromium: an account made by a first sign-in and found again by the next, an OAuth
//! application's sign-in through it (its tokens say `amr: ["fed"]`, `idp: "corp"`), a
//! password account linking it from the account page, a first sign-in refused for an
//! address another account has proven, unlinking the last way in refused, and the pages
//! for a forged callback and a provider that is down.

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::Value;
use tokio::io::AsyncBufReadExt as _;

use crate::browser::{
    appear, application, arrive, arrive_at, click, fill, free_port, loopback_config, screenshot,
    start_browser, text,
};
use crate::support::{TEST_KEK, TestServer, claims_of, sqlite_db};

const CLIENT_ID: &str = "portcullis-test";
const CLIENT_SECRET: &str = "a-test-client-secret-long-enough-for-hs256-0123";
const PASSWORD: &str = "correct horse battery";

/// oidc-provider, running: killed on drop.
pub(crate) struct OidcProvider {
    pub issuer: String,
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl OidcProvider {
    /// Starts it on a free port for one client (`CLIENT_ID`) redirecting to
    /// `redirect_uri`; `None` (saying so) when the package is not installed and
    /// `PORTCULLIS_REQUIRE_OIDC_PROVIDER` is not set.
    pub(crate) async fn start(redirect_uri: &str) -> Option<OidcProvider> {
        let modules = match std::env::var_os("PORTCULLIS_TEST_OIDC_PROVIDER_MODULES") {
            Some(m) => PathBuf::from(m),
            None if std::env::var_os("PORTCULLIS_REQUIRE_OIDC_PROVIDER").is_some() => {
                panic!("PORTCULLIS_TEST_OIDC_PROVIDER_MODULES is not set")
            }
            None => {
                eprintln!(
                    "skipped: needs npm's oidc-provider (PORTCULLIS_TEST_OIDC_PROVIDER_MODULES)"
                );
                return None;
            }
        };
        // An ES module finds its packages beside itself, not through NODE_PATH: the
        // script goes in a folder with a link to the installed node_modules.
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(&modules, dir.path().join("node_modules")).unwrap();
        let script = dir.path().join("oidc_provider.mjs");
        std::fs::write(&script, include_str!("../oidc_provider.mjs")).unwrap();
        let port = free_port();
        let mut child = tokio::process::Command::new("node")
            .arg(&script)
            .args([&port.to_string(), CLIENT_ID, CLIENT_SECRET, redirect_uri])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line == "listening" {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(ready.ok(), Some(true), "oidc-provider did not start");
        // Its output is read to the end: a closed pipe would end it at its next line.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Some(OidcProvider {
            issuer: format!("http://127.0.0.1:{port}"),
            child,
            _dir: dir,
        })
    }

    async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// `portcullis ARGS --database-url URL`: (success, stdout, stderr).
pub(crate) async fn portcullis(url: &str, args: &[&str]) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.args(args).args(["--database-url", url]);
    if url.starts_with("postgres") {
        cmd.env("PORTCULLIS_KEY_ENCRYPTION_KEY", TEST_KEK);
    }
    let out = cmd.output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Registers `op` as the provider `corp` ("Corp") with the CLI, as an operator does.
async fn add_corp(url: &str, op: &OidcProvider, secret_dir: &std::path::Path) -> String {
    let secret = secret_dir.join("corp-secret");
    std::fs::write(&secret, format!("{CLIENT_SECRET}\n")).unwrap();
    let (ok, out, err) = portcullis(
        url,
        &[
            "providers",
            "add",
            "corp",
            "--issuer",
            &op.issuer,
            "--client-id",
            CLIENT_ID,
            "--client-secret-file",
            secret.to_str().unwrap(),
            "--display-name",
            "Corp",
        ],
    )
    .await;
    assert!(ok, "{err}");
    out
}

/// From the moment the browser leaves for the provider until it is back at `back`:
/// signs in as `login` on the provider's page, and allows on its consent page, when it
/// shows them (a provider that remembers the person shows neither).
async fn through_provider(b: &Client, op: &OidcProvider, login: &str, back: &str) {
    for _ in 0..400 {
        let url = b.current_url().await.unwrap().to_string();
        if url.starts_with(back) {
            return;
        }
        if url.starts_with(&format!("{}/interaction/", op.issuer))
            && b.execute("return document.readyState", vec![]).await.ok()
                == Some(serde_json::json!("complete"))
        {
            if b.find(Locator::Css("input[name=login]")).await.is_ok() {
                fill(b, "input[name=login]", login).await;
                fill(b, "input[name=password]", "anything").await;
                screenshot(b, "upstream-provider-sign-in").await;
                click(b, "button[type=submit]").await;
            } else if b.find(Locator::Css("button[type=submit]")).await.is_ok() {
                click(b, "button[type=submit]").await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "never came back to {back}: on {}\n{}",
        b.current_url().await.unwrap(),
        b.source().await.unwrap_or_default()
    );
}

#[tokio::test]
async fn people_sign_in_through_an_upstream_provider_in_chromium() {
    let (url, dir) = sqlite_db();
    let config = loopback_config(&url);
    let base = config.issuer.clone();
    // The server first: its port was picked free, and the provider and the browser
    // pick theirs next.
    let server = TestServer::start(config).await;
    let Some(mut op) = OidcProvider::start(&format!("{base}/login/corp/callback")).await else {
        return;
    };
    let Some(ada) = start_browser().await else {
        return;
    };
    let secrets = tempfile::tempdir().unwrap();
    let printed = add_corp(&url, &op, secrets.path()).await;
    // What to register at the provider: the callback on the configured issuer (the
    // CLI reads the same settings; here the default issuer, as the test's CLI runs
    // without the server's).
    assert!(
        printed.trim_end().ends_with("/login/corp/callback"),
        "{printed}"
    );
    let store = portcullis_store::open(&url).await.unwrap();
    // The secret is sealed at rest, never the plain text.
    let stored = store.providers().await.unwrap();
    let sealed = stored[0].sealed_secret.as_deref().unwrap();
    assert!(sealed.starts_with("enc:v2:") && !sealed.contains(CLIENT_SECRET));

    // Ada's first sign-in makes her account.
    let b = &ada.client;
    b.goto(&format!("{base}/login")).await.unwrap();
    arrive(b, "/login").await;
    assert_eq!(text(b, "a[data-provider=corp]").await, "Continue with Corp");
    screenshot(b, "upstream-sign-in-page").await;
    click(b, "a[data-provider=corp]").await;
    through_provider(b, &op, "ada", &format!("{base}/account")).await;
    arrive(b, "/account").await;
    assert_eq!(text(b, "#who").await, "ada");
    let email = text(b, "#email").await;
    assert!(
        email.contains("ada@example.test") && email.contains("(verified)"),
        "{email}"
    );
    let link = text(b, "#linked-providers li[data-provider=corp]").await;
    assert!(link.starts_with("Corp — ada"), "{link}");
    screenshot(b, "upstream-account").await;
    let user = store.user_by_username("ada").await.unwrap().unwrap();
    assert!(!user.has_password());
    let links = store.identities_of(&user.id).await.unwrap();
    assert_eq!(
        (links.len(), links[0].subject.as_str()),
        (1, "ada"),
        "linked by the provider's subject"
    );
    // No password signs her in (she has none), and the answer is the usual one.
    let r = server.login("ada", "any password at all").await;
    assert_eq!(r.status(), 401);

    // Her only way in: unlinking it is refused, and the link stays.
    click(b, "#linked-providers li[data-provider=corp] button").await;
    arrive(b, "/account/providers/corp/unlink").await;
    assert!(
        text(b, "#upstream-error")
            .await
            .contains("only way you can sign in")
    );
    assert_eq!(store.identities_of(&user.id).await.unwrap().len(), 1);

    // Signed out, she signs in again through Corp (which remembers her): the same
    // account, no second one.
    b.goto(&format!("{base}/account")).await.unwrap();
    arrive(b, "/account").await;
    click(b, "#sign-out").await;
    arrive(b, "/login").await;
    click(b, "a[data-provider=corp]").await;
    through_provider(b, &op, "ada", &format!("{base}/account")).await;
    arrive(b, "/account").await;
    assert_eq!(text(b, "#who").await, "ada");
    assert_eq!(store.list_users().await.unwrap().len(), 1);

    // An application's sign-in goes through Corp and back to its consent page; its
    // tokens say how she signed in.
    let (app, app_task) = application().await;
    let added = crate::clients::clients(
        &url,
        &[
            "add",
            "notes-app",
            "--scope",
            "openid profile",
            "--redirect-uri",
            &format!("{app}/cb"),
        ],
    )
    .await;
    let added: Value = serde_json::from_str(&added).unwrap();
    let (id, secret) = (
        added["client_id"].as_str().unwrap(),
        added["client_secret"].as_str().unwrap(),
    );
    click(b, "#sign-out").await;
    arrive(b, "/login").await;
    let (request, verifier) = crate::browser::authorization_request(&base, id, &app);
    b.goto(&request).await.unwrap();
    arrive(b, "/login").await;
    assert_eq!(text(b, "#app-name").await, "notes-app");
    click(b, "a[data-provider=corp]").await;
    through_provider(b, &op, "ada", &format!("{base}/oauth/authorize")).await;
    arrive(b, "/oauth/authorize").await;
    assert_eq!(text(b, "h1").await, "Allow notes-app?");
    click(b, "#allow").await;
    let back = arrive_at(b, &format!("{app}/cb?")).await;
    let params: std::collections::HashMap<String, String> = url::Url::parse(&back)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(params["state"], "s-1");
    let tokens =
        crate::browser::exchange_code(&server, (id, secret), &app, &params["code"], &verifier)
            .await;
    for token in ["id_token", "access_token"] {
        let claims = claims_of(tokens[token].as_str().unwrap());
        assert_eq!(
            claims["amr"],
            serde_json::json!(["fed"]),
            "{token}: {claims}"
        );
        assert_eq!(claims["idp"], "corp", "{token}: {claims}");
        assert_eq!(claims["acr"], "aal1", "{token}: {claims}");
        assert_eq!(claims["sub"], user.id.as_str());
    }
    app_task.abort();

    // Bob has a password account and links Corp (as "bobby" there) from his account
    // page, in a browser of his own.
    assert_eq!(server.signup("bob", PASSWORD).await.status(), 201);
    let bob = start_browser().await.unwrap();
    let b = &bob.client;
    b.goto(&format!("{base}/login")).await.unwrap();
    fill(b, "#username", "bob").await;
    fill(b, "#password", PASSWORD).await;
    click(b, "form[action='/session/login'] button[type=submit]").await;
    arrive(b, "/account").await;
    click(b, "button[data-link=corp]").await;
    through_provider(b, &op, "bobby", &format!("{base}/account?done=linked")).await;
    arrive(b, "/account").await;
    assert!(text(b, "#done").await.starts_with("Linked"));
    let link = text(b, "#linked-providers li[data-provider=corp]").await;
    assert!(link.starts_with("Corp — bobby"), "{link}");
    screenshot(b, "upstream-linked").await;
    // Now Corp signs him in to his own account.
    click(b, "#sign-out").await;
    arrive(b, "/login").await;
    click(b, "a[data-provider=corp]").await;
    through_provider(b, &op, "bobby", &format!("{base}/account")).await;
    arrive(b, "/account").await;
    assert_eq!(text(b, "#who").await, "bob");
    assert!(store.user_by_username("bobby").await.unwrap().is_none());
    // He has a password too, so unlinking is his to do.
    click(b, "#linked-providers li[data-provider=corp] button").await;
    // Already on /account before the click: wait for the answer's notice, not the path.
    appear(b, "#done").await;
    arrive(b, "/account").await;
    assert!(text(b, "#done").await.starts_with("Unlinked"));
    drop(bob);

    // Carol proved carol@example.test here; a Corp account with that address (even one
    // Corp says is proven) is not linked to hers by the address, and makes nothing.
    assert_eq!(server.signup("carol", PASSWORD).await.status(), 201);
    let (ok, _, err) = portcullis(
        &url,
        &[
            "users",
            "set-email",
            "carol",
            "carol@example.test",
            "--verified",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let before = store.list_users().await.unwrap().len();
    let mallory = start_browser().await.unwrap();
    let b = &mallory.client;
    b.goto(&format!("{base}/login")).await.unwrap();
    click(b, "a[data-provider=corp]").await;
    through_provider(b, &op, "carol", &format!("{base}/login/corp/callback")).await;
    arrive(b, "/login/corp/callback").await;
    assert!(
        text(b, "#upstream-error")
            .await
            .contains("already uses the address"),
        "{}",
        b.source().await.unwrap()
    );
    screenshot(b, "upstream-address-taken").await;
    assert_eq!(store.list_users().await.unwrap().len(), before);
    let carol = store.user_by_username("carol").await.unwrap().unwrap();
    assert!(store.identities_of(&carol.id).await.unwrap().is_empty());
    // Nor is anyone signed in.
    b.goto(&format!("{base}/account")).await.unwrap();
    arrive(b, "/login").await;

    // A callback this browser did not start (a forged state): refused with a page.
    b.goto(&format!(
        "{base}/login/corp/callback?code=stolen&state=forged&iss={}",
        op.issuer
    ))
    .await
    .unwrap();
    arrive(b, "/login/corp/callback").await;
    assert!(
        text(b, "#upstream-error")
            .await
            .contains("not started in this browser")
    );

    // Corp goes down: a server that has not reached it yet (a second instance)
    // answers a page that says so, and the sign-in page still works.
    op.stop().await;
    let second = TestServer::start(loopback_config(&url)).await;
    let second_base = second.base.clone();
    b.goto(&format!("{second_base}/login")).await.unwrap();
    arrive(b, "/login").await;
    click(b, "a[data-provider=corp]").await;
    arrive(b, "/login/corp").await;
    assert!(
        text(b, "#upstream-error")
            .await
            .contains("is not answering")
    );
    screenshot(b, "upstream-down").await;
    let r = reqwest::get(format!("{second_base}/login/corp"))
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let r = reqwest::get(format!("{second_base}/login/nobody"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    second.stop().await;
    server.stop().await;
    drop(dir);
}

/// An answer, as a program without a browser sees it.
struct Answer {
    status: u16,
    location: Option<String>,
    refresh: Option<String>,
    body: String,
}

/// A person's user agent without a browser: follows redirects itself and keeps cookies
/// by name for the one host, 127.0.0.1, whatever the port (as browsers do), so the
/// provider's cookies and ours travel as they would in Chromium.
struct Agent {
    http: reqwest::Client,
    jar: std::collections::BTreeMap<String, String>,
    /// A redirect to a URL beginning with this is not followed (the answer is the
    /// redirect's, and the URL where it points).
    stop_before: Option<String>,
}

impl Agent {
    fn new() -> Agent {
        Agent {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jar: Default::default(),
            stop_before: None,
        }
    }

    fn cookie(&self, name: &str) -> Option<&String> {
        self.jar.get(name)
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Answer {
        let cookies: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let request = if cookies.is_empty() {
            request
        } else {
            request.header("cookie", cookies.join("; "))
        };
        let r = request.send().await.unwrap();
        for set in r.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let (pair, attributes) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || attributes.to_ascii_lowercase().contains("max-age=0") {
                self.jar.remove(name.trim());
            } else {
                self.jar.insert(name.trim().to_owned(), value.to_owned());
            }
        }
        let header = |name: &str| {
            r.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        Answer {
            status: r.status().as_u16(),
            location: header("location"),
            refresh: header("refresh"),
            body: r.text().await.unwrap(),
        }
    }

    async fn get(&mut self, url: &str) -> Answer {
        let request = self.http.get(url);
        self.send(request).await
    }

    async fn post_form(&mut self, url: &str, form: &[(&str, &str)]) -> Answer {
        let origin = {
            let u = url::Url::parse(url).unwrap();
            u.origin().ascii_serialization()
        };
        let request = self.http.post(url).header("origin", origin).form(form);
        self.send(request).await
    }

    /// `answer` (to a request for `url`) and the redirects after it: the last URL and
    /// its answer.
    async fn follow(&mut self, mut url: String, mut answer: Answer) -> (String, Answer) {
        for _ in 0..20 {
            let Some(to) = answer
                .location
                .clone()
                .filter(|_| (300..400).contains(&answer.status))
            else {
                return (url, answer);
            };
            url = url::Url::parse(&url)
                .unwrap()
                .join(&to)
                .unwrap()
                .to_string();
            if self
                .stop_before
                .as_ref()
                .is_some_and(|stop| url.starts_with(stop))
            {
                return (url, answer);
            }
            answer = self.get(&url).await;
        }
        panic!("too many redirects, at {url}");
    }

    async fn open(&mut self, url: &str) -> (String, Answer) {
        let answer = self.get(url).await;
        self.follow(url.to_owned(), answer).await
    }

    /// From `url` (an answer that goes to the provider) through its sign-in and
    /// consent pages as `login`, until the browser leaves it: where it lands.
    async fn through(
        &mut self,
        op: &OidcProvider,
        url: String,
        answer: Answer,
        login: &str,
    ) -> (String, Answer) {
        let (mut url, mut answer) = self.follow(url, answer).await;
        for _ in 0..10 {
            if !url.starts_with(&op.issuer) {
                return (url, answer);
            }
            let action = answer
                .body
                .split("action=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("no form at {url}: {}", answer.body))
                .to_owned();
            let target = url::Url::parse(&url)
                .unwrap()
                .join(&action)
                .unwrap()
                .to_string();
            let next = if answer.body.contains("name=\"login\"") {
                self.post_form(
                    &target,
                    &[("prompt", "login"), ("login", login), ("password", "x")],
                )
                .await
            } else {
                self.post_form(&target, &[("prompt", "consent")]).await
            };
            (url, answer) = self.follow(target, next).await;
        }
        panic!("stuck at the provider: {url}");
    }
}

/// The text of the page's `#upstream-error`, or the whole page.
fn trouble_of(body: &str) -> String {
    body.split("id=\"upstream-error\"")
        .nth(1)
        .and_then(|rest| rest.split('>').nth(1))
        .and_then(|rest| rest.split('<').next())
        .map_or_else(|| body.to_owned(), str::to_owned)
}

crate::support::on_each_store! {
    /// What a person or an attacker does with the sign-in through a provider, over HTTP
    /// against oidc-provider, on both stores: declining there; a plain sign-in started
    /// with a link's way back while someone else is signed in (no link made to them);
    /// a callback replayed, with and without its flow cookie; and a provider linked to
    /// an account with an authenticator app, which then asks for the app after the
    /// provider, and whose tokens say both.
    async fn upstream_sign_ins_an_attacker_tries(url, dir) {
        let clock = crate::support::still_clock();
        let config = loopback_config(&url);
        let base = config.issuer.clone();
        let server = TestServer::start_with(config, clock.clone()).await.keep_dir(dir);
        let Some(op) = OidcProvider::start(&format!("{base}/login/corp/callback")).await else {
            return;
        };
        let secrets = tempfile::tempdir().unwrap();
        add_corp(&url, &op, secrets.path()).await;
        let store = portcullis_store::open(&url).await.unwrap();

        // Declining at the provider: a page that says so, and no account.
        let mut dana = Agent::new();
        let (at, page) = dana.open(&format!("{base}/login/corp")).await;
        assert!(at.starts_with(&format!("{}/interaction/", op.issuer)), "{at}");
        assert!(page.body.contains("name=\"login\""));
        let abort = format!("{at}/abort");
        let answer = dana.get(&abort).await;
        let (at, page) = dana.follow(abort, answer).await;
        assert!(at.starts_with(&format!("{base}/login/corp/callback?")), "{at}");
        assert_eq!(page.status, 403);
        assert!(trouble_of(&page.body).contains("did not allow"), "{}", page.body);
        assert!(store.list_users().await.unwrap().is_empty());

        // Bob is signed in with his password; a link to a plain sign-in whose way back
        // is a link's (as an attacker would send) signs the browser in as the
        // provider's person and links nothing to Bob.
        assert_eq!(server.signup("bob", PASSWORD).await.status(), 201);
        let mut bob = Agent::new();
        let r = bob
            .send(bob.http.post(format!("{base}/session/login")).json(&serde_json::json!({"username": "bob", "password": PASSWORD})))
            .await;
        assert_eq!(r.status, 200);
        let sid = serde_json::from_str::<Value>(&r.body).unwrap()["session"]["id"].as_str().unwrap().to_owned();
        let tag = {
            let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, sid.as_bytes());
            d.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        let crafted = format!(
            "{base}/login/corp?return_to={}",
            url::form_urlencoded::byte_serialize(format!("/account/providers/linked?for={tag}").as_bytes()).collect::<String>()
        );
        let (start, first) = (crafted.clone(), bob.get(&crafted).await);
        let (at, page) = bob.through(&op, start, first, "eve").await;
        assert_eq!(at, format!("{base}/account"), "{}", page.body);
        let bob_id = store.user_by_username("bob").await.unwrap().unwrap().id;
        assert!(store.identities_of(&bob_id).await.unwrap().is_empty());
        let eve = store.user_by_username("eve").await.unwrap().expect("eve's own account");
        assert_eq!(store.identities_of(&eve.id).await.unwrap()[0].subject, "eve");

        // A callback replayed: without its flow cookie (cleared), and with it put back
        // (the code is spent at the provider): both a 400 page, nobody signed in.
        let mut carl = Agent::new();
        carl.stop_before = Some(format!("{base}/login/corp/callback"));
        let (start, first) = (format!("{base}/login/corp"), carl.get(&format!("{base}/login/corp")).await);
        let flow = carl.cookie("portcullis_oidc").cloned().expect("a flow cookie");
        let (callback, _) = carl.through(&op, start, first, "carl").await;
        assert!(callback.starts_with(&format!("{base}/login/corp/callback?")), "{callback}");
        // Carl's own browser ends it: signed in, his account made.
        let r = carl.get(&callback).await;
        assert_eq!(r.status, 303);
        assert!(carl.cookie("portcullis_session").is_some());
        assert_eq!(store.list_users().await.unwrap().len(), 3);
        let mut replayer = Agent::new();
        let r = replayer.get(&callback).await;
        assert_eq!(r.status, 400);
        assert!(trouble_of(&r.body).contains("not started in this browser"));
        replayer.jar.insert("portcullis_oidc".into(), flow);
        let r = replayer.get(&callback).await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(replayer.cookie("portcullis_session").is_none());
        assert_eq!(store.list_users().await.unwrap().len(), 3);

        // Tess has an authenticator app, and links Corp (as "tessa" there).
        let (secret, _codes) = crate::factors::enrolled(&server, &clock, "tess").await;
        let mut tess = Agent::new();
        let r = tess
            .send(tess.http.post(format!("{base}/session/login")).json(&serde_json::json!({"username": "tess", "password": PASSWORD})))
            .await;
        let pending: Value = serde_json::from_str(&r.body).unwrap();
        let r = tess
            .send(tess.http.post(format!("{base}/session/login/mfa")).json(&serde_json::json!({
                "mfa_token": pending["mfa_token"], "method": "totp",
                "code": crate::factors::totp(&secret, portcullis::clock::Clock::now(clock.as_ref())),
            })))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        clock.advance(30);
        let csrf = serde_json::from_str::<Value>(&r.body).unwrap()["csrf_token"].as_str().unwrap().to_owned();
        let link = format!("{base}/account/providers/corp/link");
        let r = tess.post_form(&link, &[("csrf_token", csrf.as_str())]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        // The page goes on by itself (Refresh) and says where, for a person to click.
        let refresh = r.refresh.clone().expect("a Refresh header");
        let to = refresh.strip_prefix("0;url=").unwrap().to_owned();
        assert!(to.starts_with(&op.issuer));
        let first = tess.get(&to).await;
        let (at, _) = tess.through(&op, to, first, "tessa").await;
        assert_eq!(at, format!("{base}/account?done=linked"));
        // Without its synchronizer token, the link form does nothing.
        let r = tess.post_form(&link, &[("csrf_token", "forged")]).await;
        assert_eq!(r.status, 403);

        // A new browser: Corp signs her in as tessa, and the app is asked for.
        let mut again = Agent::new();
        let (start, first) = (format!("{base}/login/corp"), again.get(&format!("{base}/login/corp")).await);
        let (at, page) = again.through(&op, start, first, "tessa").await;
        assert!(at.starts_with(&format!("{base}/login/corp/callback")), "{at}");
        assert_eq!(page.status, 200);
        assert!(again.cookie("portcullis_session").is_none(), "no session before the app's code");
        let mfa_token = page
            .body
            .split("name=\"mfa_token\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the second-step page")
            .to_owned();
        let r = again
            .send(again.http.post(format!("{base}/session/login/mfa")).json(&serde_json::json!({
                "mfa_token": mfa_token, "method": "totp",
                "code": crate::factors::totp(&secret, portcullis::clock::Clock::now(clock.as_ref())),
            })))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let listed = again.get(&format!("{base}/auth/me/export")).await;
        let listed: Value = serde_json::from_str(&listed.body).unwrap();
        let this = listed["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["amr"] != "pwd otp mfa")
            .expect("the session through Corp");
        assert_eq!((this["amr"].as_str(), this["idp"].as_str()), (Some("fed otp mfa"), Some("corp")), "{listed}");
        assert_eq!(listed["providers"][0]["provider"], "corp");
        assert_eq!(listed["providers"][0]["subject"], "tessa");
    }
}

/// A stand-in for GitHub on loopback (GitHub itself is not reachable from CI): its
/// OAuth app endpoints and the two REST calls a sign-in makes, answering as GitHub's
/// documentation says (a refused code is a 200 with `error`, as GitHub answers it),
/// and checking what a real one checks: the client's secret, the code, PKCE (S256).
async fn fake_github() -> (String, tokio::task::JoinHandle<()>) {
    use axum::extract::{Form, Query};
    use axum::http::HeaderMap;
    use axum::routing::{get, post};
    type Codes = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>;
    let codes = Codes::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let site = format!("http://{}", listener.local_addr().unwrap());
    let authorize = {
        let codes = codes.clone();
        move |Query(q): Query<std::collections::HashMap<String, String>>| async move {
            assert_eq!(q["client_id"], "gh-client");
            assert_eq!(q["code_challenge_method"], "S256");
            assert!(q["scope"].contains("user:email"));
            let code = portcullis::jwt::random_id().unwrap();
            codes
                .lock()
                .unwrap()
                .insert(code.clone(), q["code_challenge"].clone());
            axum::response::Redirect::to(&format!(
                "{}?code={code}&state={}",
                q["redirect_uri"],
                url::form_urlencoded::byte_serialize(q["state"].as_bytes()).collect::<String>()
            ))
        }
    };
    let token = {
        let codes = codes.clone();
        move |headers: HeaderMap, Form(f): Form<std::collections::HashMap<String, String>>| async move {
            use base64::Engine as _;
            let basic = headers["authorization"].to_str().unwrap().to_owned();
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("gh-client:gh-secret")
            );
            let challenge = codes.lock().unwrap().remove(&f["code"]);
            let verified = challenge.is_some_and(|c| {
                c == base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(portcullis::opaque::sha256(f["code_verifier"].as_bytes()))
            });
            if basic != expected || !verified {
                return axum::Json(serde_json::json!({"error": "bad_verification_code"}));
            }
            axum::Json(serde_json::json!({
                "access_token": "gho_test", "token_type": "bearer", "scope": "read:user,user:email"
            }))
        }
    };
    let authorized = |headers: &HeaderMap| {
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer gho_test")
    };
    let app = axum::Router::new()
        .route("/login/oauth/authorize", get(authorize))
        .route("/login/oauth/access_token", post(token))
        .route(
            "/api/v3/user",
            get(move |headers: HeaderMap| async move {
                if !authorized(&headers) {
                    return Err(axum::http::StatusCode::UNAUTHORIZED);
                }
                Ok(axum::Json(serde_json::json!({
                    "id": 4242, "login": "octocat", "name": "The Octocat", "email": null,
                })))
            }),
        )
        .route(
            "/api/v3/user/emails",
            get(move |headers: HeaderMap| async move {
                if !authorized(&headers) {
                    return Err(axum::http::StatusCode::UNAUTHORIZED);
                }
                Ok(axum::Json(serde_json::json!([
                    {"email": "old@example.test", "primary": false, "verified": true},
                    {"email": "octo@example.test", "primary": true, "verified": true},
                ])))
            }),
        );
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (site, task)
}

/// GitHub (the `github` preset): OAuth 2.0 with PKCE and the REST API, not OpenID
/// Connect. The account is made from the user's numeric id (never the login, which can
/// be renamed and taken by someone else) and its primary verified address; a code that
/// GitHub refuses gets the person the provider page.
#[tokio::test]
async fn github_signs_people_in_by_their_numeric_id() {
    let (url, dir) = sqlite_db();
    let config = loopback_config(&url);
    let base = config.issuer.clone();
    let server = TestServer::start(config).await.keep_dir(dir);
    let (site, task) = fake_github().await;
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("gh-secret");
    std::fs::write(&secret, "gh-secret\n").unwrap();
    let (ok, out, err) = portcullis(
        &url,
        &[
            "providers",
            "add",
            "github",
            "--preset",
            "github",
            "--issuer",
            &site,
            "--client-id",
            "gh-client",
            "--client-secret-file",
            secret.to_str().unwrap(),
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.trim_end().ends_with("/login/github/callback"));
    let (ok, listed, _) = portcullis(&url, &["providers", "list"]).await;
    assert!(ok && listed.contains("github\tgithub\t"), "{listed}");

    let mut octo = Agent::new();
    let page = octo.get(&format!("{base}/login")).await;
    assert!(page.body.contains("Continue with GitHub"), "{}", page.body);
    let (at, page) = octo.open(&format!("{base}/login/github")).await;
    assert_eq!(at, format!("{base}/account"), "{}", page.body);
    assert!(page.body.contains("octocat"), "{}", page.body);
    let store = portcullis_store::open(&url).await.unwrap();
    let user = store.user_by_username("octocat").await.unwrap().unwrap();
    assert_eq!(
        (user.email.as_deref(), user.email_verified),
        (Some("octo@example.test"), true)
    );
    let links = store.identities_of(&user.id).await.unwrap();
    assert_eq!(
        (links[0].provider.as_str(), links[0].subject.as_str()),
        ("github", "4242")
    );

    // A code GitHub refuses (here: one it never issued): the provider page, no session.
    let mut other = Agent::new();
    other.stop_before = Some(format!("{base}/login/github/callback"));
    let (callback, _) = other.open(&format!("{base}/login/github")).await;
    let forged = callback.replace("code=", "code=x");
    let r = other.get(&forged).await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(trouble_of(&r.body).contains("not answering"));
    assert!(other.cookie("portcullis_session").is_none());
    assert_eq!(store.list_users().await.unwrap().len(), 1);
    task.abort();
    server.stop().await;
}
