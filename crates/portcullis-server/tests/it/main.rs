//! Integration tests of the `portcullis` binary: one test binary, modules per area.

// Helpers outside #[test] functions unwrap too: a panic there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;
