//! Integration tests of the token core: one binary, so the suite links once.

mod regressions;
mod support;
mod verifier;
mod wycheproof;
