//! The axum contenders of `bench/peers/run`, one process, one route each:
//!
//! - `/public`: axum and nothing else, the baseline every ratio divides by;
//! - `/jsonwebtoken`: a bearer token verified by the jsonwebtoken crate on every
//!   request (issuer, audience, algorithm pinned), with the key from the issuer's JWKS;
//! - `/library`: this project's `AuthLayer` with `Bearer::from_issuer` (verified-token
//!   cache on, the default) and the claims read as a type (`Authenticated<Claims>`);
//! - `/library-local`: the library's cheapest configuration: keys given locally (no
//!   fetcher), cache on, no typed claims (`Authenticated`, the subject from the
//!   identity);
//! - `/library-uncached`: the same with the cache off, so every request pays the
//!   signature.
//!
//! Environment: `PORTCULLIS_ISSUER`, `AUDIENCE`, `PORT`.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;
use axum::{Json, Router};
use portcullis::jwt::{Validation, Verifier};
use portcullis::keys::KeySet;
use portcullis::middleware::{AuthLayer, Authenticated};
use portcullis::strategy::{Bearer, Chain};

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("set {name}"))
}

/// jsonwebtoken's side: the decoding key and validation, made once.
struct Peer {
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
}

async fn peer_route(
    axum::extract::State(peer): axum::extract::State<Arc<Peer>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, StatusCode> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(StatusCode::UNAUTHORIZED)?;
    let data = jsonwebtoken::decode::<Claims>(token, &peer.key, &peer.validation)
        .map_err(|_| StatusCode::UNAUTHORIZED)?;
    Ok(Json(serde_json::json!({ "sub": data.claims.sub })))
}

async fn whoami(auth: Authenticated<Claims>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "sub": auth.claims.sub }))
}

async fn whoami_untyped(auth: Authenticated) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "sub": auth.identity.subject() }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let issuer = env("PORTCULLIS_ISSUER")?;
    let audience = env("AUDIENCE")?;
    let port: u16 = env("PORT")?.parse()?;

    let jwks_text = reqwest::get(format!("{issuer}/.well-known/jwks.json"))
        .await?
        .error_for_status()?
        .text()
        .await?;
    // jsonwebtoken: the first key of the set, with the algorithm it names.
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&jwks_text)?;
    let jwk = jwks.keys.first().ok_or("the issuer's JWKS is empty")?;
    let alg = jwk
        .common
        .key_algorithm
        .ok_or("the JWK names no algorithm")?
        .to_string()
        .parse::<jsonwebtoken::Algorithm>()?;
    let mut validation = jsonwebtoken::Validation::new(alg);
    validation.set_issuer(&[&issuer]);
    validation.set_audience(&[&audience]);
    validation.set_required_spec_claims(&["exp", "iat", "sub"]);
    let peer = Arc::new(Peer {
        key: jsonwebtoken::DecodingKey::from_jwk(jwk)?,
        validation,
    });

    let cached = Bearer::from_issuer(&issuer)
        .audience(&audience)
        .build()
        .await?;
    let policy = Validation::builder()
        .issuer(&issuer)
        .audience(&audience)
        .build()?;
    let local = Bearer::new(Arc::new(Verifier::new(
        KeySet::from_jwks_json(&jwks_text)?,
        policy.clone(),
    )));
    let uncached = Bearer::new(Arc::new(
        Verifier::new(KeySet::from_jwks_json(&jwks_text)?, policy).with_cache(0, 0),
    ));

    let app = Router::new()
        .route("/public", get(|| async { "ok" }))
        .route("/jsonwebtoken", get(peer_route).with_state(peer))
        .route(
            "/library",
            get(whoami).layer(AuthLayer::required(Chain::new().with(cached))),
        )
        .route(
            "/library-local",
            get(whoami_untyped).layer(AuthLayer::required(Chain::new().with(local))),
        )
        .route(
            "/library-uncached",
            get(whoami).layer(AuthLayer::required(Chain::new().with(uncached))),
        );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
