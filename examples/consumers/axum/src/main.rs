//! The smallest axum API that trusts a Portcullis server: keys from its JWKS (found by
//! discovery), issuer and audience pinned, `typ` `at+jwt`, expiry, and a scope.
//!
//! Environment: `PORTCULLIS_ISSUER`, `AUDIENCE`, `PORT` (default 3000),
//! `REQUIRED_SCOPE` (default `notes:read`). `ALGORITHMS` is read by the other
//! consumers; here each key of the JWKS verifies exactly the one algorithm it was
//! published for, so a token cannot choose its algorithm.

use axum::{Json, Router, routing::get};
use portcullis::middleware::{AuthLayer, Authenticated, RequireScope};
use portcullis::strategy::{Bearer, Chain};

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
}

fn env(name: &str, default: Option<&str>) -> Result<String, String> {
    match (std::env::var(name), default) {
        (Ok(value), _) => Ok(value),
        (Err(_), Some(default)) => Ok(default.to_owned()),
        (Err(_), None) => Err(format!("set {name}")),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let issuer = env("PORTCULLIS_ISSUER", None)?;
    let audience = env("AUDIENCE", None)?;
    let scope = env("REQUIRED_SCOPE", Some("notes:read"))?;
    let port: u16 = env("PORT", Some("3000"))?.parse()?;

    // Discovery, the JWKS (refetched for an unknown kid), and the strict policy.
    let bearer = Bearer::from_issuer(&issuer)
        .audience(&audience)
        .build()
        .await?;
    let app = Router::new()
        .route(
            "/notes",
            get(|auth: Authenticated<Claims>| async move {
                Json(serde_json::json!({ "sub": auth.claims.sub, "notes": ["first note"] }))
            }),
        )
        .route_layer(RequireScope::all([scope]))
        .layer(AuthLayer::required(Chain::new().with(bearer)))
        .route("/healthz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
