//! The Portcullis server and its command line.
//!
//! `main.rs` only parses arguments; everything else lives here so tests can reach it:
//! [`config`] reads and checks the settings, [`startup`] builds and serves the
//! application, the routes implement the HTTP contract of docs/http-api.md.

mod accounts;
pub mod audit;
mod banner;
pub mod cli;
pub mod client;
pub mod config;
mod device;
mod email;
mod error;
mod events;
mod factors;
pub mod kek;
pub mod keyring;
mod links;
pub mod mail;
mod passkeys;
pub mod prometheus;
mod providers;
mod recovery;
mod revocation;
mod routes;
mod session_cache;
pub mod startup;
mod state;
pub mod telemetry;
pub mod templates;
pub mod throttle;
pub mod timeout;
mod upstream;
mod user_agent;
pub mod webhooks;
pub mod wire;
