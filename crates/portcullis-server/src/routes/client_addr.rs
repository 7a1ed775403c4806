//! The client address a route counts by (the throttles), as an extractor: the TCP
//! peer, or what a trusted proxy says (`crate::client`).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::state::AppState;

/// The client address of a request, as an extractor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("no peer address")))?;
        Ok(ClientAddr(
            state.0.config.trusted_proxies.client(peer, &parts.headers),
        ))
    }
}
