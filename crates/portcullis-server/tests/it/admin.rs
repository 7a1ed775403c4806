//! Issue 25, its first part: the admin API's accounts. Tokens with scope `admin` (a
//! person's, or a machine client's) list, read, change and sign out accounts; every
//! change takes effect as the CLI's does. On SQLite and PostgreSQL, with the bad inputs
//! an attacker or a careless admin sends.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestServer, config, eventually, on_each_store, s, still_clock};

const PASSWORD: &str = "correct horse battery";

async fn call(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = server.client.request(method, server.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// An account's id, by name.
async fn id_of(url: &str, name: &str) -> String {
    let store = portcullis_store::open(url).await.unwrap();
    store.user_by_username(name).await.unwrap().unwrap().id
}

on_each_store! {
    /// Who may call it, pages with a cursor, reading and changing accounts (disable,
    /// scope, address), signing one out, its sessions, its second factors; an admin
    /// cannot disable itself or drop its own admin; a removed admin scope is refused
    /// at once; a machine client with `admin` may call it too.
    async fn the_admin_api_manages_accounts(url, dir) {
        let clock = still_clock();
        let now = || portcullis::clock::Clock::now(clock.as_ref());
        let server = TestServer::start_with(config(&url), clock.clone()).await.keep_dir(dir);
        let store = portcullis_store::open(&url).await.unwrap();
        for name in ["root", "uma", "ulf", "vic"] {
            assert_eq!(server.signup(name, PASSWORD).await.status(), 201);
        }
        store.set_scope("root", "admin", now()).await.unwrap();
        clock.advance(2);
        let root = s(&server.login("root", PASSWORD).await.json::<Value>().await.unwrap(), "access_token");
        let uma_tokens: Value = server.login("uma", PASSWORD).await.json().await.unwrap();
        let uma = s(&uma_tokens, "access_token");
        use reqwest::Method as M;

        // Nobody, a person without admin.
        let (st, body) = call(&server, M::GET, "/admin/users", None, None).await;
        assert_eq!(st, 401, "{body}");
        let (st, body) = call(&server, M::GET, "/admin/users", Some(&uma), None).await;
        assert_eq!((st, body["error"].as_str()), (StatusCode::FORBIDDEN, Some("insufficient_scope")));

        // Pages in username order, with a cursor.
        let (st, page) = call(&server, M::GET, "/admin/users?limit=3", Some(&root), None).await;
        assert_eq!(st, 200, "{page}");
        let names = |p: &Value| p["users"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
        assert_eq!(names(&page), ["root", "ulf", "uma"]);
        let next = s(&page, "next");
        let (_, page) = call(&server, M::GET, &format!("/admin/users?limit=3&after={next}"), Some(&root), None).await;
        assert_eq!(names(&page), ["vic"]);
        assert!(page.get("next").is_none());
        let (_, page) = call(&server, M::GET, "/admin/users?query=U", Some(&root), None).await;
        assert_eq!(names(&page), ["ulf", "uma"]);
        let (_, page) = call(&server, M::GET, "/admin/users?query=%25", Some(&root), None).await;
        assert_eq!(names(&page), Vec::<String>::new(), "% is a character, not a wildcard");
        for bad in ["limit=0", "limit=201", "limit=x", "after=!!!", "after=", "sort=name"] {
            let (st, body) = call(&server, M::GET, &format!("/admin/users?{bad}"), Some(&root), None).await;
            assert_eq!((st, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{bad}");
        }
        // A made-up cursor is only a place to start.
        let (st, page) = call(&server, M::GET, "/admin/users?after=enp6", Some(&root), None).await;
        assert_eq!((st, names(&page).len()), (StatusCode::OK, 0));

        // One account; changes.
        let uma_id = id_of(&url, "uma").await;
        let (st, one) = call(&server, M::GET, &format!("/admin/users/{uma_id}"), Some(&root), None).await;
        assert_eq!((st, one["username"].as_str(), one["disabled"].as_bool()), (StatusCode::OK, Some("uma"), Some(false)));
        let (st, _) = call(&server, M::GET, "/admin/users/nobody", Some(&root), None).await;
        assert_eq!(st, 404);
        let uma_path = format!("/admin/users/{uma_id}");
        let patch = |body: Value| call(&server, M::PATCH, &uma_path, Some(&root), Some(body));
        let (st, changed) = patch(json!({ "scope": "read write", "email": "Uma@Example.com", "email_verified": true })).await;
        assert_eq!(st, 200, "{changed}");
        assert_eq!((changed["scope"].as_str(), changed["email"].as_str(), changed["email_verified"].as_bool()),
            (Some("read write"), Some("Uma@example.com"), Some(true)));
        for bad in [json!({ "disabled": "yes" }), json!({ "role": "admin" }), json!({ "email": "not an address" }), json!({ "scope": "a\"b" })] {
            let (st, _) = patch(bad.clone()).await;
            assert_eq!(st, 400, "{bad}");
        }
        // Another account's verified address.
        let vic_id = id_of(&url, "vic").await;
        let (st, body) = call(&server, M::PATCH, &format!("/admin/users/{vic_id}"), Some(&root), Some(json!({ "email": "uma@example.com", "email_verified": true }))).await;
        assert_eq!((st, body["error"].as_str()), (StatusCode::CONFLICT, Some("email_taken")));
        // Disabled: Uma's token and refresh stop at once, her login too.
        let (st, one) = patch(json!({ "disabled": true })).await;
        assert_eq!((st, one["disabled"].as_bool()), (StatusCode::OK, Some(true)));
        assert_eq!(server.me(&uma).await.status(), 401);
        assert_eq!(server.refresh(&s(&uma_tokens, "refresh_token")).await.status(), 400);
        assert_eq!(server.login("uma", PASSWORD).await.status(), 401);
        let (_, one) = patch(json!({ "disabled": false })).await;
        assert_eq!(one["disabled"], false);
        clock.advance(2);
        assert_eq!(server.login("uma", PASSWORD).await.status(), 200);

        // Not itself.
        let root_id = id_of(&url, "root").await;
        let (st, body) = call(&server, M::PATCH, &format!("/admin/users/{root_id}"), Some(&root), Some(json!({ "disabled": true }))).await;
        assert_eq!((st, body["error"].as_str()), (StatusCode::CONFLICT, Some("conflict")));
        let (st, _) = call(&server, M::PATCH, &format!("/admin/users/{root_id}"), Some(&root), Some(json!({ "scope": "read" }))).await;
        assert_eq!(st, 409);

        // Signed out everywhere; its sessions listed.
        let ulf_tokens: Value = server.login("ulf", PASSWORD).await.json().await.unwrap();
        let ulf_id = id_of(&url, "ulf").await;
        let (st, sessions) = call(&server, M::GET, &format!("/admin/users/{ulf_id}/sessions"), Some(&root), None).await;
        assert_eq!((st, sessions["api_logins"].as_array().unwrap().len()), (StatusCode::OK, 1));
        let (st, _) = call(&server, M::POST, &format!("/admin/users/{ulf_id}/logout"), Some(&root), None).await;
        assert_eq!(st, 204);
        assert_eq!(server.me(&s(&ulf_tokens, "access_token")).await.status(), 401);
        let (_, sessions) = call(&server, M::GET, &format!("/admin/users/{ulf_id}/sessions"), Some(&root), None).await;
        assert_eq!(sessions["api_logins"], json!([]));

        // Second factors reset.
        clock.advance(2);
        let vic = s(&server.login("vic", PASSWORD).await.json::<Value>().await.unwrap(), "access_token");
        let r = server.client.post(server.url("/auth/mfa/totp")).bearer_auth(&vic).json(&json!({ "password": PASSWORD })).send().await.unwrap();
        let secret = s(&r.json::<Value>().await.unwrap(), "secret");
        let code = crate::factors::totp(&secret, now());
        let r = server.client.post(server.url("/auth/mfa/totp/confirm")).bearer_auth(&vic).json(&json!({ "code": code })).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(server.login("vic", PASSWORD).await.json::<Value>().await.unwrap()["mfa_required"], true);
        let (st, _) = call(&server, M::DELETE, &format!("/admin/users/{vic_id}/mfa"), Some(&root), None).await;
        assert_eq!(st, 204);
        clock.advance(2);
        assert!(server.login("vic", PASSWORD).await.json::<Value>().await.unwrap()["access_token"].is_string());

        // A machine client with admin.
        let added: Value = serde_json::from_str(&crate::clients::clients(&url, &["add", "ops", "--scope", "admin"]).await).unwrap();
        let r = server.client.post(server.url("/oauth/token"))
            .basic_auth(added["client_id"].as_str().unwrap(), added["client_secret"].as_str())
            .form(&[("grant_type", "client_credentials")]).send().await.unwrap();
        let ops = s(&r.json::<Value>().await.unwrap(), "access_token");
        let (st, _) = call(&server, M::GET, &format!("/admin/users/{uma_id}"), Some(&ops), None).await;
        assert_eq!(st, 200);

        // The admin scope taken away a moment ago: the token that had it is refused.
        store.set_scope("root", "", now()).await.unwrap();
        eventually("the scope's removal reaches the server", || async {
            call(&server, M::GET, "/admin/users", Some(&root), None).await.0 == 401
        })
        .await;
    }
}

on_each_store! {
    /// Accounts created and erased by an admin: checked as a signup is; erasure ends
    /// every sign-in and leaves nothing to read; an admin does not erase itself, and
    /// the last enabled admin is never erased, even when two admins erase each other
    /// at once.
    async fn admins_create_and_erase_accounts(url, dir) {
        let clock = still_clock();
        let now = || portcullis::clock::Clock::now(clock.as_ref());
        let server = TestServer::start_with(config(&url), clock.clone()).await.keep_dir(dir);
        let store = portcullis_store::open(&url).await.unwrap();
        for name in ["ada", "bea"] {
            assert_eq!(server.signup(name, PASSWORD).await.status(), 201);
            store.set_scope(name, "admin", now()).await.unwrap();
        }
        clock.advance(2);
        let ada = s(&server.login("ada", PASSWORD).await.json::<Value>().await.unwrap(), "access_token");
        let bea = s(&server.login("bea", PASSWORD).await.json::<Value>().await.unwrap(), "access_token");
        use reqwest::Method as M;
        let (st, neo) = call(&server, M::POST, "/admin/users", Some(&ada), Some(json!({ "username": "Neo", "password": PASSWORD, "email": "neo@example.com", "scope": "read" }))).await;
        assert_eq!(st, 201, "{neo}");
        assert_eq!((neo["username"].as_str(), neo["scope"].as_str(), neo["email_verified"].as_bool()), (Some("neo"), Some("read"), Some(false)));
        for (bad, status) in [
            (json!({ "username": "neo", "password": PASSWORD }), 409),
            (json!({ "username": "ne\u{200b}o", "password": PASSWORD }), 400),
            (json!({ "username": "zed", "password": "short" }), 400),
            (json!({ "username": "zed", "password": PASSWORD, "scope": "a\\b" }), 400),
            (json!({ "username": "zed", "password": PASSWORD, "admin": true }), 400),
        ] {
            let (st, body) = call(&server, M::POST, "/admin/users", Some(&ada), Some(bad.clone())).await;
            assert_eq!(st.as_u16(), status, "{bad}: {body}");
        }
        assert!(store.user_by_username("zed").await.unwrap().is_none(), "nothing half-made");
        clock.advance(2);
        let neo_tokens: Value = server.login("neo", PASSWORD).await.json().await.unwrap();
        let neo_id = s(&neo, "id");
        let (st, _) = call(&server, M::DELETE, &format!("/admin/users/{neo_id}"), Some(&ada), None).await;
        assert_eq!(st, 204);
        assert_eq!(server.me(&s(&neo_tokens, "access_token")).await.status(), 401);
        assert_eq!(server.refresh(&s(&neo_tokens, "refresh_token")).await.status(), 400);
        assert_eq!(server.login("neo", PASSWORD).await.status(), 401);
        let (st, _) = call(&server, M::GET, &format!("/admin/users/{neo_id}"), Some(&ada), None).await;
        assert_eq!(st, 404);
        let (st, _) = call(&server, M::DELETE, &format!("/admin/users/{neo_id}"), Some(&ada), None).await;
        assert_eq!(st, 404);
        // Not itself.
        let ada_id = id_of(&url, "ada").await;
        let bea_id = id_of(&url, "bea").await;
        let (st, _) = call(&server, M::DELETE, &format!("/admin/users/{ada_id}"), Some(&ada), None).await;
        assert_eq!(st, 409);
        // Two admins erasing each other at once: one is erased, the other is the last.
        let (to_bea, to_ada) = (format!("/admin/users/{bea_id}"), format!("/admin/users/{ada_id}"));
        let (a, b) = tokio::join!(
            call(&server, M::DELETE, &to_bea, Some(&ada), None),
            call(&server, M::DELETE, &to_ada, Some(&bea), None),
        );
        let mut outcomes = [a.0.as_u16(), b.0.as_u16()];
        outcomes.sort_unstable();
        // The loser's own token may already be refused (401) when the winner erased it
        // first; never may both be erased.
        assert!(outcomes == [204, 409] || outcomes == [204, 401], "{outcomes:?}");
        let users = store.list_users().await.unwrap();
        let admins: Vec<_> = users.iter().filter(|u| u.scope.split_whitespace().any(|s| s == "admin")).collect();
        assert_eq!(admins.len(), 1, "one admin is left");
        // A machine client with admin cannot erase the last one either.
        let added: Value = serde_json::from_str(&crate::clients::clients(&url, &["add", "ops", "--scope", "admin"]).await).unwrap();
        let r = server.client.post(server.url("/oauth/token"))
            .basic_auth(added["client_id"].as_str().unwrap(), added["client_secret"].as_str())
            .form(&[("grant_type", "client_credentials")]).send().await.unwrap();
        let ops = s(&r.json::<Value>().await.unwrap(), "access_token");
        let (st, body) = call(&server, M::DELETE, &format!("/admin/users/{}", admins[0].id), Some(&ops), None).await;
        assert_eq!((st, body["error"].as_str()), (StatusCode::CONFLICT, Some("conflict")));
    }
}

/// A client-credentials token, or the refusal's status.
async fn machine_token(
    server: &TestServer,
    id: &str,
    secret: &str,
    scope: Option<&str>,
) -> Result<String, (StatusCode, Value)> {
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    let r = server
        .client
        .post(server.url("/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    if status == 200 {
        Ok(s(&body, "access_token"))
    } else {
        Err((status, body))
    }
}

/// A route a machine token with `revocations:read` may call, as a probe of whether
/// the token is still good.
async fn feed_status(server: &TestServer, token: &str) -> StatusCode {
    server
        .client
        .get(server.url("/auth/revocations"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

on_each_store! {
    /// Clients over the admin API: registered with the CLI's rules (secret shown once,
    /// never listed), changed (a scope taken away refuses its tokens at once), given a
    /// new secret, disabled, deleted; a client with `admin` cannot disable, delete or
    /// demote itself; every refusal writes nothing; each change is in the audit trail
    /// with its actor, and the CLI's with `operator`.
    async fn the_admin_api_manages_clients(url, dir) {
        let clock = still_clock();
        let now = || portcullis::clock::Clock::now(clock.as_ref());
        let server = TestServer::start_with(config(&url), clock.clone()).await.keep_dir(dir);
        let store = portcullis_store::open(&url).await.unwrap();
        assert_eq!(server.signup("root", PASSWORD).await.status(), 201);
        store.set_scope("root", "admin", now()).await.unwrap();
        clock.advance(2);
        let root = s(&server.login("root", PASSWORD).await.json::<Value>().await.unwrap(), "access_token");
        use reqwest::Method as M;
        let (st, _) = call(&server, M::GET, "/admin/clients", None, None).await;
        assert_eq!(st, 401);

        // Registered: the secret once, then never again.
        let (st, svc) = call(&server, M::POST, "/admin/clients", Some(&root),
            Some(json!({ "name": "svc", "scope": "revocations:read extra extra" }))).await;
        assert_eq!(st, 201, "{svc}");
        assert_eq!((svc["type"].as_str(), svc["scope"].as_str()), (Some("machine"), Some("revocations:read extra")));
        let (id, secret) = (s(&svc, "client_id"), s(&svc, "client_secret"));
        assert!(secret.len() >= 40, "{secret}");
        let (st, list) = call(&server, M::GET, "/admin/clients", Some(&root), None).await;
        assert_eq!(st, 200);
        assert_eq!(list["clients"].as_array().unwrap().len(), 1);
        assert!(!list.to_string().contains(&secret), "a secret is shown once: {list}");
        let (st, one) = call(&server, M::GET, &format!("/admin/clients/{id}"), Some(&root), None).await;
        assert_eq!((st, one["name"].as_str(), one.get("client_secret")), (StatusCode::OK, Some("svc"), None));
        let (st, _) = call(&server, M::GET, "/admin/clients/nobody", Some(&root), None).await;
        assert_eq!(st, 404);
        let token = machine_token(&server, &id, &secret, None).await.unwrap();
        assert_eq!(feed_status(&server, &token).await, 200);

        // Bad registrations: each refused, nothing written.
        for (bad, status) in [
            (json!({ "name": "two words" }), 400),
            (json!({ "name": "" }), 400),
            (json!({ "name": "x".repeat(65) }), 400),
            (json!({ "name": "q", "scope": "a\"b" }), 400),
            (json!({ "name": "q", "redirect_uris": ["http://app.example/cb"] }), 400),
            (json!({ "name": "q", "redirect_uris": ["https://app.example/cb#frag"] }), 400),
            (json!({ "name": "q", "public": true }), 400),
            (json!({ "name": "q", "first_party": true }), 400),
            (json!({ "name": "q", "post_logout_redirect_uris": ["https://app.example/bye"] }), 400),
            (json!({ "name": "q", "public": "yes" }), 400),
            (json!({ "name": "q", "client_secret": "mine" }), 400),
            (json!({ "name": "svc" }), 409),
        ] {
            let (st, body) = call(&server, M::POST, "/admin/clients", Some(&root), Some(bad.clone())).await;
            assert_eq!(st.as_u16(), status, "{bad}: {body}");
            assert!(body["error_description"].is_string(), "{body}");
        }
        assert_eq!(store.clients().await.unwrap().len(), 1, "nothing written");

        // A scope taken away: the token issued before is refused at once; a new one
        // cannot have it.
        let path = format!("/admin/clients/{id}");
        let (st, changed) = call(&server, M::PATCH, &path, Some(&root), Some(json!({ "scope": "revocations:read", "name": "svc2" }))).await;
        assert_eq!((st, changed["scope"].as_str(), changed["name"].as_str()), (StatusCode::OK, Some("revocations:read"), Some("svc2")));
        assert_eq!(feed_status(&server, &token).await, 401);
        clock.advance(2);
        let (st, body) = machine_token(&server, &id, &secret, Some("extra")).await.unwrap_err();
        assert_eq!((st, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_scope")));
        let token = machine_token(&server, &id, &secret, None).await.unwrap();
        assert_eq!(feed_status(&server, &token).await, 200);
        // Widening refuses nothing.
        let (st, _) = call(&server, M::PATCH, &path, Some(&root), Some(json!({ "scope": "revocations:read more" }))).await;
        assert_eq!(st, 200);
        assert_eq!(feed_status(&server, &token).await, 200);
        for bad in [json!({ "disabled": "no" }), json!({ "public": true }), json!({ "name": "a b" }),
                    json!({ "first_party": true }), json!({ "redirect_uris": ["ftp://x/cb"] })] {
            let (st, body) = call(&server, M::PATCH, &path, Some(&root), Some(bad.clone())).await;
            assert_eq!(st, 400, "{bad}: {body}");
        }
        let (st, _) = call(&server, M::PATCH, "/admin/clients/nobody", Some(&root), Some(json!({ "disabled": true }))).await;
        assert_eq!(st, 404);

        // A new secret: the old one stops at once.
        let (st, rotated) = call(&server, M::POST, &format!("{path}/secret"), Some(&root), None).await;
        assert_eq!(st, 200, "{rotated}");
        let new_secret = s(&rotated, "client_secret");
        assert_ne!(new_secret, secret);
        assert_eq!(machine_token(&server, &id, &secret, None).await.unwrap_err().0, 401);
        let token = machine_token(&server, &id, &new_secret, None).await.unwrap();

        // Disabled: its token refused, no new one; enabled again.
        let (st, off) = call(&server, M::PATCH, &path, Some(&root), Some(json!({ "disabled": true }))).await;
        assert_eq!((st, off["disabled"].as_bool()), (StatusCode::OK, Some(true)));
        assert_eq!(feed_status(&server, &token).await, 401);
        assert!(machine_token(&server, &id, &new_secret, None).await.is_err());
        let (_, on) = call(&server, M::PATCH, &path, Some(&root), Some(json!({ "disabled": false }))).await;
        assert_eq!(on["disabled"], false);
        clock.advance(2);
        let token = machine_token(&server, &id, &new_secret, None).await.unwrap();

        // A public client has no secret to rotate.
        let (st, app) = call(&server, M::POST, "/admin/clients", Some(&root), Some(json!({
            "name": "spa", "scope": "openid", "redirect_uris": ["https://spa.example/cb", "https://spa.example/cb"], "public": true,
        }))).await;
        assert_eq!((st, app["type"].as_str(), app.get("client_secret")), (StatusCode::CREATED, Some("public"), None));
        assert_eq!(app["redirect_uris"], json!(["https://spa.example/cb"]));
        let spa = s(&app, "client_id");
        let (st, _) = call(&server, M::POST, &format!("/admin/clients/{spa}/secret"), Some(&root), None).await;
        assert_eq!(st, 409);
        let (st, body) = call(&server, M::PATCH, &format!("/admin/clients/{spa}"), Some(&root), Some(json!({ "redirect_uris": [] }))).await;
        assert_eq!(st, 400, "a public client keeps a redirect URI: {body}");

        // A machine client with admin manages others, not itself.
        let (_, ops) = call(&server, M::POST, "/admin/clients", Some(&root), Some(json!({ "name": "ops", "scope": "admin" }))).await;
        let ops_id = s(&ops, "client_id");
        let ops_token = machine_token(&server, &ops_id, &s(&ops, "client_secret"), None).await.unwrap();
        let ops_path = format!("/admin/clients/{ops_id}");
        for (method, body) in [(M::PATCH, Some(json!({ "disabled": true }))), (M::PATCH, Some(json!({ "scope": "read" }))), (M::DELETE, None)] {
            let (st, answer) = call(&server, method, &ops_path, Some(&ops_token), body).await;
            assert_eq!((st, answer["error"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "{answer}");
        }
        let (st, _) = call(&server, M::PATCH, &format!("/admin/clients/{spa}"), Some(&ops_token), Some(json!({ "first_party": true }))).await;
        assert_eq!(st, 200);

        // Deleted: its token refused, its name free, gone for good.
        let (st, _) = call(&server, M::DELETE, &path, Some(&root), None).await;
        assert_eq!(st, 204);
        assert_eq!(feed_status(&server, &token).await, 401);
        assert_eq!(machine_token(&server, &id, &new_secret, None).await.unwrap_err().0, 401);
        for method in [M::GET, M::DELETE] {
            assert_eq!(call(&server, method, &path, Some(&root), None).await.0, 404);
        }
        assert_eq!(call(&server, M::POST, &format!("{path}/secret"), Some(&root), None).await.0, 404);

        // The CLI's changes are the operator's.
        crate::clients::clients(&url, &["disable", "spa"]).await;
        crate::clients::clients(&url, &["remove", "spa"]).await;
        assert!(store.client_by_id(&spa).await.unwrap().is_none());

        // The trail: who did what to which client, no secret in it.
        let root_id = id_of(&url, "root").await;
        let records = store.audit(&portcullis_store::AuditFilter { subject: None, kind: None, after: None, since: None, limit: 100 }).await.unwrap();
        let clients: Vec<(String, String, String)> = records
            .iter()
            .filter(|r| r.kind.starts_with("client."))
            .map(|r| (r.kind.clone(), r.actor.clone().unwrap_or_default(), r.subject.clone().unwrap_or_default()))
            .collect();
        let root_actor = format!("user:{root_id}");
        let by = |kind: &str, actor: &str, on: &str| (kind.to_owned(), actor.to_owned(), on.to_owned());
        assert_eq!(clients, [
            by("client.created", &root_actor, &id),
            by("client.updated", &root_actor, &id),
            by("client.updated", &root_actor, &id),
            by("client.secret_rotated", &root_actor, &id),
            by("client.updated", &root_actor, &id),
            by("client.updated", &root_actor, &id),
            by("client.created", &root_actor, &spa),
            by("client.created", &root_actor, &ops_id),
            by("client.updated", &format!("client:{ops_id}"), &spa),
            by("client.deleted", &root_actor, &id),
            by("client.updated", "operator", &spa),
            by("client.deleted", "operator", &spa),
        ]);
        let first_change = records.iter().find(|r| r.kind == "client.updated").unwrap();
        assert_eq!(first_change.detail, r#"{"fields":["name","scope"],"via":"admin"}"#);
        let trail = format!("{records:?}");
        for secret in [&secret, &new_secret] {
            assert!(!trail.contains(secret.as_str()));
        }
    }
}

/// Polls until `server` refuses `token` at the revocation feed; fails after 1 s.
async fn refused_within_a_second(server: &TestServer, token: &str) {
    let start = std::time::Instant::now();
    while feed_status(server, token).await != StatusCode::UNAUTHORIZED {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(1),
            "not refused within 1 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

on_each_store! {
    /// A client's change made on one instance reaches another within a second: a scope
    /// taken away, then the client deleted; its tokens, and the client itself, are
    /// refused there.
    async fn a_client_changed_on_one_instance_is_refused_by_another(url, dir) {
        let a = TestServer::start(config(&url)).await.keep_dir(dir);
        let b = TestServer::start(config(&url)).await;
        let store = portcullis_store::open(&url).await.unwrap();
        assert_eq!(a.signup("root", PASSWORD).await.status(), 201);
        store.set_scope("root", "admin", 0).await.unwrap();
        let root = s(&a.login("root", PASSWORD).await.json::<Value>().await.unwrap(), "access_token");
        use reqwest::Method as M;
        let (st, svc) = call(&a, M::POST, "/admin/clients", Some(&root), Some(json!({ "name": "svc", "scope": "revocations:read extra" }))).await;
        assert_eq!(st, 201, "{svc}");
        let (id, secret) = (s(&svc, "client_id"), s(&svc, "client_secret"));
        let token = machine_token(&b, &id, &secret, None).await.unwrap();
        assert_eq!(feed_status(&b, &token).await, 200);

        let path = format!("/admin/clients/{id}");
        let (st, _) = call(&a, M::PATCH, &path, Some(&root), Some(json!({ "scope": "revocations:read" }))).await;
        assert_eq!(st, 200);
        refused_within_a_second(&b, &token).await;

        // A new token (the next second: the old ones' second is refused as a whole).
        let mut fresh = None;
        for _ in 0..40 {
            if let Ok(t) = machine_token(&b, &id, &secret, None).await
                && feed_status(&b, &t).await == 200
            {
                fresh = Some(t);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let fresh = fresh.expect("a token after the change");
        let (st, _) = call(&a, M::DELETE, &path, Some(&root), None).await;
        assert_eq!(st, 204);
        refused_within_a_second(&b, &fresh).await;
        assert_eq!(machine_token(&b, &id, &secret, None).await.unwrap_err().0, 401);
        a.stop().await;
        b.stop().await;
    }
}
