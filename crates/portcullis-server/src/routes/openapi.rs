//! The OpenAPI 3.1 description of the HTTP API, served at `GET /openapi.json`: the
//! paths come from the `#[utoipa::path]` attributes on the handlers themselves, the
//! request bodies from their types; the response bodies the handlers build with
//! `json!` are described by the types below. A test checks that every route of
//! `routes/mod.rs` is described.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::schemas::Metadata;

/// The same metadata at the RFC 8414 path (one handler serves both).
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "resource servers",
    responses((status = 200, description = "Issuer metadata", body = Metadata)))]
#[allow(dead_code)]
fn metadata_rfc8414() {}

/// The same userinfo at `POST` (OpenID Connect Core §5.3.1: both methods).
#[utoipa::path(post, path = "/oauth/userinfo", tag = "oauth",
    security(("bearer" = ["openid"])),
    responses(
        (status = 200, description = "As GET", body = super::schemas::UserInfo),
        (status = 401, description = "unauthorized or invalid_token", body = super::schemas::ErrorBody),
        (status = 403, description = "insufficient_scope", body = super::schemas::ErrorBody),
    ))]
#[allow(dead_code)]
fn userinfo_post() {}

/// This description.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 description", content_type = "application/json")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// How requests authenticate: bearer tokens, the session cookie, client credentials.
struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                "__Host-portcullis_session",
            ))),
        );
        components.add_security_scheme(
            "client",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
    }
}

/// The whole description.
#[derive(OpenApi)]
#[openapi(
    info(title = "Portcullis", description = "Token and session authentication server (docs/http-api.md)."),
    paths(
        super::auth::signup, super::auth::login, super::auth::refresh, super::auth::logout,
        super::auth::logout_all, super::auth::me, super::feed::revocations,
        super::oauth::token::token, super::oauth::authorize::authorize,
        super::oauth::authorize::authorize_decision, super::oauth::userinfo::userinfo,
        userinfo_post, super::oauth::introspect::introspect, super::oauth::introspect::revoke,
        super::oauth::logout::end_session, super::oauth::logout::end_session_confirmed,
        super::pages::revoke_app,
        super::meta::jwks, super::meta::healthz, super::meta::readyz, super::metadata::metadata,
        metadata_rfc8414, openapi_json,
        super::session::login, super::session::logout, super::session::list,
        super::session::delete, super::session::token,
        super::pages::home, super::pages::login_form, super::pages::signup_form,
        super::pages::signup_submit, super::pages::account, super::pages::revoke,
        super::pages::logout_all, super::pages::stylesheet, super::pages::passkeys_script,
        super::recovery::verify, super::recovery::resend, super::recovery::forgot,
        super::recovery::reset, super::recovery::change_password, super::recovery::change_email,
        super::recovery::forgot_form, super::recovery::forgot_submit,
        super::recovery::reset_form, super::recovery::reset_submit,
        super::recovery::verify_form, super::recovery::verify_submit,
        super::recovery::account_password, super::recovery::account_email,
        super::recovery::account_resend, super::forward::forward,
        super::auth::login_second_step, super::session::login_second_step,
        super::factors::status, super::factors::totp_begin, super::factors::totp_confirm,
        super::factors::totp_remove, super::factors::recovery_codes,
        super::factors::account_totp, super::factors::account_totp_confirm,
        super::factors::account_totp_remove, super::factors::account_recovery_codes,
        super::passkeys::register_start, super::passkeys::register_finish,
        super::passkeys::list, super::passkeys::remove, super::passkeys::login_start,
        super::passkeys::login_finish, super::passkeys::session_login_finish,
        super::passkeys::account_remove,
        super::admin::list_users, super::admin::get_user, super::admin::patch_user,
        super::admin::logout_user, super::admin::user_sessions, super::admin::reset_mfa,
        super::admin::create_user, super::admin::delete_user, super::admin::audit_trail,
        super::admin::rotate_key,
        super::me::export_me, super::me::delete_me, super::me::account_delete,
        super::upstream::start, super::upstream::callback, super::upstream::link,
        super::upstream::unlink,
        super::admin_clients::list_clients, super::admin_clients::get_client,
        super::admin_clients::create_client, super::admin_clients::patch_client,
        super::admin_clients::delete_client, super::admin_clients::rotate_secret,
    ),
    modifiers(&Security),
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `.route("…", …)` of routes/mod.rs, with its methods, is in the description.
    #[test]
    fn every_route_is_described() {
        let source = include_str!("mod.rs");
        let api = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = api["paths"].as_object().unwrap();
        let mut routes = 0;
        for chunk in source.split(".route(").skip(1) {
            let path = chunk.split('"').nth(1).unwrap();
            let handlers = chunk.split(".route(").next().unwrap();
            let described = paths
                .get(path)
                .unwrap_or_else(|| panic!("{path} is not described"));
            for method in ["get", "post", "delete"] {
                if handlers.contains(&format!("{method}(")) {
                    assert!(
                        described.get(method).is_some(),
                        "{method} {path} is not described"
                    );
                }
            }
            routes += 1;
        }
        assert!(routes >= 32, "found {routes} routes");
        // A path parameter names a segment of its path (validators refuse one that
        // does not: a query parameter declared in the wrong place).
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                for p in op["parameters"].as_array().into_iter().flatten() {
                    if p["in"] == "path" {
                        let name = p["name"].as_str().unwrap();
                        assert!(
                            path.contains(&format!("{{{name}}}")),
                            "{method} {path}: path parameter {name} is not in the path"
                        );
                    }
                }
            }
        }
        assert_eq!(api["openapi"].as_str().map(|v| &v[..3]), Some("3.1"));
    }

    /// Every operation has an `operationId` of its own (OpenAPI 3.1 §4.8.10: unique
    /// among all operations): validators refuse a repeat, and client generators name
    /// their methods by it. Handlers of the same name in two modules (`login` of the
    /// JSON API and of the session routes) used to share one.
    #[test]
    fn operation_ids_are_unique() {
        let api = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let mut seen = std::collections::HashMap::new();
        for (path, item) in api["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let Some(id) = operation["operationId"].as_str() else {
                    continue;
                };
                let here = format!("{} {path}", method.to_uppercase());
                if let Some(before) = seen.insert(id.to_owned(), here.clone()) {
                    panic!("operationId {id:?} names both {before} and {here}");
                }
            }
        }
        assert!(seen.len() >= 32, "{} operations", seen.len());
    }
}
