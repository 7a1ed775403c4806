//! The Portcullis server and its command line.
//!
//! `main.rs` only parses arguments; everything else lives here so tests can reach it.

pub mod cli;
