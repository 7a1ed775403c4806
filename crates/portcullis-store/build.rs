//! Tests that need PostgreSQL are marked ignored (reported as such, not as passed) when
//! `PORTCULLIS_TEST_POSTGRES` is not set at build time; `.ci/run` sets it.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(portcullis_postgres)");
    println!("cargo::rerun-if-env-changed=PORTCULLIS_TEST_POSTGRES");
    if std::env::var_os("PORTCULLIS_TEST_POSTGRES").is_some() {
        println!("cargo::rustc-cfg=portcullis_postgres");
    }
}
