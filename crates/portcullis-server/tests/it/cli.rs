//! The CLI as a user runs it: the real binary, real files, real pipes.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn portcullis(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(input) = stdin {
        pipe.write_all(input.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// The `error: <code>: <message>` line of a refusal (warnings about skipped checks may
/// come before it).
fn error_line(out: &Output) -> String {
    stderr(out)
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default()
        .to_owned()
}

fn ok(args: &[&str], stdin: Option<&str>) -> String {
    let out = portcullis(args, stdin);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

struct Keys {
    _dir: tempfile::TempDir,
    private: PathBuf,
    jwks: PathBuf,
}

fn keys(alg: &str) -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let private = ok(&["keys", "generate", "--alg", alg, "--kid", "k1"], None);
    // HMAC keys are secrets with no public form; trust the private JWK itself.
    let public = if alg.starts_with("HS") {
        private.clone()
    } else {
        ok(&["keys", "public"], Some(&private))
    };
    Keys {
        private: write(dir.path(), "private.jwk", &private),
        jwks: write(dir.path(), "public.jwks", &public),
        _dir: dir,
    }
}

#[test]
fn generate_public_sign_verify_round_trip_for_every_algorithm() {
    for alg in [
        "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
        "ES384", "ES512", "EdDSA",
    ] {
        let k = keys(alg);
        let private: Value =
            serde_json::from_str(&std::fs::read_to_string(&k.private).unwrap()).unwrap();
        assert_eq!(private["alg"], alg);
        assert_eq!(private["kid"], "k1");
        let claims = r#"{"iss":"https://i.example","aud":"api","sub":"alice","scope":"read"}"#;
        let token = ok(
            &[
                "token",
                "sign",
                "--key",
                k.private.to_str().unwrap(),
                "--claims",
                claims,
            ],
            None,
        );
        let out = ok(
            &[
                "token",
                "verify",
                "--key",
                k.jwks.to_str().unwrap(),
                "--iss",
                "https://i.example",
                "--aud",
                "api",
                token.trim(),
            ],
            None,
        );
        let verified: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(verified["sub"], "alice", "{alg}");
        assert_eq!(
            verified["exp"].as_u64().unwrap() - verified["iat"].as_u64().unwrap(),
            900
        );
    }
}

#[test]
fn public_output_never_contains_private_members() {
    let private = ok(&["keys", "generate", "--alg", "RS256"], None);
    let public: Value = serde_json::from_str(&ok(&["keys", "public"], Some(&private))).unwrap();
    let key = &public["keys"][0];
    for member in ["d", "p", "q", "dp", "dq", "qi", "k"] {
        assert!(key.get(member).is_none(), "{member} leaked");
    }
    assert!(
        key["kid"].as_str().is_some_and(|k| !k.is_empty()),
        "a kid is generated"
    );
    let hmac = ok(&["keys", "generate", "--alg", "HS256"], None);
    let out = portcullis(&["keys", "public"], Some(&hmac));
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).is_empty());
}

#[test]
fn refused_tokens_exit_1_with_the_reason_code() {
    let k = keys("EdDSA");
    let jwks = k.jwks.to_str().unwrap();
    let token = ok(
        &[
            "token",
            "sign",
            "--key",
            k.private.to_str().unwrap(),
            "--claims",
            r#"{"sub":"a","aud":"api"}"#,
        ],
        None,
    );
    let token = token.trim();
    let cases: [(&[&str], &str); 4] = [
        (&["--aud", "other"], "invalid_audience"),
        (&["--iss", "https://i.example"], "missing_claim"),
        (&["--at", "4102444800"], "expired"),
        (&["--typ", "JWT"], "invalid_type"),
    ];
    for (extra, code) in cases {
        let mut args = vec!["token", "verify", "--jwks", jwks];
        args.extend_from_slice(extra);
        args.push(token);
        let out = portcullis(&args, None);
        assert_eq!(out.status.code(), Some(1), "{extra:?}");
        assert!(
            error_line(&out).starts_with(&format!("error: {code}: ")),
            "{}",
            stderr(&out)
        );
        assert!(stdout(&out).is_empty());
    }
    let tampered = format!("{}x", &token[..token.len() - 1]);
    let out = portcullis(&["token", "verify", "--jwks", jwks, &tampered], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(error_line(&out).starts_with("error: "), "{}", stderr(&out));
}

#[test]
fn verify_reads_the_token_from_stdin_and_honours_at() {
    let k = keys("ES256");
    let token = ok(
        &[
            "token",
            "sign",
            "--key",
            k.private.to_str().unwrap(),
            "--claims",
            r#"{"sub":"a","iat":1000,"exp":2000}"#,
        ],
        None,
    );
    let jwks = k.jwks.to_str().unwrap();
    ok(
        &["token", "verify", "--jwks", jwks, "--at", "1500", "-"],
        Some(&token),
    );
    let out = portcullis(
        &["token", "verify", "--jwks", jwks, "--at", "1970"],
        Some(&token),
    );
    assert!(
        out.status.success(),
        "inside the 30 s leeway: {}",
        stderr(&out)
    );
    // Without --iss and --aud it still verifies, and says which checks it skipped.
    assert!(
        stderr(&out).contains("warning: no --iss") && stderr(&out).contains("warning: no --aud"),
        "{}",
        stderr(&out)
    );
    let out = portcullis(
        &["token", "verify", "--jwks", jwks, "--at", "2030"],
        Some(&token),
    );
    assert_eq!(out.status.code(), Some(1));
    let out = portcullis(
        &[
            "token", "verify", "--jwks", jwks, "--at", "2030", "--leeway", "31",
        ],
        Some(&token),
    );
    assert!(out.status.success());
    let out = portcullis(
        &["token", "verify", "--jwks", jwks, "--at", "500"],
        Some(&token),
    );
    assert!(
        error_line(&out).starts_with("error: issued_in_future: "),
        "{}",
        stderr(&out)
    );
}

#[test]
fn pem_keys_sign_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    // A PKCS#8 PEM made by the library (the CLI reads what OpenSSL writes too).
    let key =
        portcullis::keys::SigningKey::generate(portcullis::keys::Algorithm::PS256, None).unwrap();
    let private = write(dir.path(), "key.pem", &key.to_pkcs8_pem().unwrap());
    let public = write(
        dir.path(),
        "pub.pem",
        &key.verifying_key().unwrap().to_public_pem().unwrap(),
    );
    let out = portcullis(
        &[
            "token",
            "sign",
            "--key",
            private.to_str().unwrap(),
            "--claims",
            r#"{"sub":"a"}"#,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "an RSA PEM needs --alg");
    assert!(stderr(&out).contains("RS256"), "{}", stderr(&out));
    let token = ok(
        &[
            "token",
            "sign",
            "--key",
            private.to_str().unwrap(),
            "--alg",
            "PS256",
            "--claims",
            r#"{"sub":"a"}"#,
        ],
        None,
    );
    ok(
        &[
            "token",
            "verify",
            "--key",
            public.to_str().unwrap(),
            "--alg",
            "PS256",
            token.trim(),
        ],
        None,
    );
    let out = portcullis(
        &[
            "token",
            "verify",
            "--key",
            public.to_str().unwrap(),
            "--alg",
            "RS256",
            token.trim(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    // No kid in the token, and no key of its algorithm in the set.
    assert!(
        error_line(&out).starts_with("error: unknown_key: "),
        "{}",
        stderr(&out)
    );
}

#[test]
fn decode_prints_without_verifying_and_says_so() {
    let k = keys("HS256");
    let token = ok(
        &[
            "token",
            "sign",
            "--key",
            k.private.to_str().unwrap(),
            "--claims",
            r#"{"sub":"bob"}"#,
        ],
        None,
    );
    let out = portcullis(&["token", "decode", token.trim()], None);
    assert!(out.status.success());
    let shown: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(shown["verified"], false);
    assert_eq!(shown["header"]["alg"], "HS256");
    assert_eq!(shown["claims"]["sub"], "bob");
    assert!(stderr(&out).contains("WITHOUT verification"));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["token", "verify", "abc"][..],
        &["keys", "generate", "--alg", "none"],
        &["keys", "generate", "--alg", "hs256"],
        &["token", "sign"],
        &["frobnicate"],
    ] {
        let out = portcullis(args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
    let k = keys("EdDSA");
    let key = k.private.to_str().unwrap();
    for claims in [r#"{"sub":"a","sub":"b"}"#, "[1]", "{", r#"{"a":1} x"#] {
        let out = portcullis(&["token", "sign", "--key", key, "--claims", claims], None);
        assert_eq!(out.status.code(), Some(2), "{claims}");
        assert!(stdout(&out).is_empty());
    }
    let out = portcullis(
        &[
            "token",
            "verify",
            "--jwks",
            "/nonexistent/jwks.json",
            "a.b.c",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/nonexistent/jwks.json"));
    let out = portcullis(
        &["token", "verify", "--jwks", key, "--leeway", "301", "a.b.c"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
}
