//! Integration tests of the `portcullis` binary and server: one test binary.

// Helpers outside #[test] functions unwrap too: a panic there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod attacks;
mod audit;
mod browser;
mod cli;
mod clients;
mod email;
mod events;
mod factors;
mod forward;
mod import;
mod key_lifecycle;
mod keys_at_rest;
mod mail;
mod oauth;
mod operations;
mod own_data;
mod recovery;
mod server;
mod sessions;
mod support;
mod upstream;
mod wire;
