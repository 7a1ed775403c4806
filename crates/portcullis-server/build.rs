//! Tests that need a service this machine may not have are marked ignored (reported as
//! such by `cargo test`, not as passed) when it is missing at build time:
//! - PostgreSQL: when `PORTCULLIS_TEST_POSTGRES` is not set (`.ci/run` sets it);
//! - the browser test: when `chromium` or `chromedriver` is neither named by
//!   `PORTCULLIS_CHROMIUM` / `PORTCULLIS_CHROMEDRIVER` nor found on `PATH`, unless
//!   `PORTCULLIS_REQUIRE_BROWSER` is set (`.ci/run` sets it), which makes it run and fail.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(portcullis_postgres)");
    println!("cargo::rustc-check-cfg=cfg(portcullis_browser)");
    println!("cargo::rerun-if-env-changed=PORTCULLIS_TEST_POSTGRES");
    if std::env::var_os("PORTCULLIS_TEST_POSTGRES").is_some() {
        println!("cargo::rustc-cfg=portcullis_postgres");
    }
    for var in [
        "PORTCULLIS_REQUIRE_BROWSER",
        "PORTCULLIS_CHROMIUM",
        "PORTCULLIS_CHROMEDRIVER",
        "PATH",
    ] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    // Installing the packages later changes these files: build again then.
    println!("cargo::rerun-if-changed=/usr/bin/chromium");
    println!("cargo::rerun-if-changed=/usr/bin/chromedriver");
    let found = |program: &str, var: &str| {
        std::env::var_os(var).is_some()
            || std::env::var_os("PATH").is_some_and(|paths| {
                std::env::split_paths(&paths).any(|dir| dir.join(program).is_file())
            })
    };
    if std::env::var_os("PORTCULLIS_REQUIRE_BROWSER").is_some()
        || (found("chromium", "PORTCULLIS_CHROMIUM")
            && found("chromedriver", "PORTCULLIS_CHROMEDRIVER"))
    {
        println!("cargo::rustc-cfg=portcullis_browser");
    }
}
