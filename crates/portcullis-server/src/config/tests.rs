use super::*;

#[test]
fn defaults_need_nothing() {
    let c = Config::defaults().unwrap();
    assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
    assert_eq!(c.database_url, "sqlite://portcullis.db");
    assert_eq!(c.issuer, "http://127.0.0.1:8080");
    assert_eq!(c.audience, c.issuer);
    assert_eq!(c.signing_alg, Algorithm::RS256);
    assert_eq!(c.access_token_ttl, Duration::from_secs(900));
    assert_eq!(c.event_poll_interval, Duration::from_millis(500));
}

#[test]
fn redacted_urls_hide_passwords_wherever_they_are() {
    assert_eq!(
        redact_url("postgres://app:s3cret@db/x"),
        "postgres://app:***@db/x"
    );
    assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
    let q = redact_url("postgres://app@db/x?password=s3cret&sslmode=require");
    assert!(
        !q.contains("s3cret") && q.contains("sslmode=require"),
        "{q}"
    );
    assert!(!redact_url("mysql:app:s3cret@@x").contains("s3cret"));
}

#[test]
fn debug_hides_the_database_password() {
    let mut c = Config::defaults().unwrap();
    c.database_url = "postgres://app:s3cret@db/portcullis".into();
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("s3cret") && shown.contains("app:***@db"),
        "{shown}"
    );
}

#[test]
fn file_then_env_then_flags() {
    let mut raw: RawConfig = toml::from_str(
        "bind = \"127.0.0.1:9000\"\naccess_token_ttl = \"5m\"\nissuer = \"https://file\"",
    )
    .unwrap();
    raw.apply_env([("PORTCULLIS_ISSUER".to_owned(), "https://env".to_owned())])
        .unwrap();
    raw.apply_overrides(Overrides {
        bind: Some("127.0.0.1:9001".into()),
        ..Overrides::default()
    });
    let c = Config::try_from(raw).unwrap();
    assert_eq!(c.bind.port(), 9001);
    assert_eq!(c.issuer, "https://env");
    assert_eq!(c.access_token_ttl, Duration::from_secs(300));
}

#[test]
fn mail_settings_have_a_sender_from_the_issuer_and_refuse_a_bad_one() {
    let raw: RawConfig = toml::from_str("issuer = \"https://auth.example.com\"").unwrap();
    let c = Config::try_from(raw).unwrap();
    assert_eq!(c.mail.from, "Portcullis <noreply@auth.example.com>");
    assert_eq!(c.mail.smtp_url, None);
    assert_eq!(
        c.mail_folder(),
        std::path::PathBuf::from("portcullis.db.mail")
    );
    let raw: RawConfig = toml::from_str("mail_from = \"not an address\"").unwrap();
    let err = Config::try_from(raw).unwrap_err().to_string();
    assert!(err.contains("mail_from"), "{err}");
    // The SMTP URL may hold a password: never in a Debug print of the settings.
    let raw: RawConfig =
        toml::from_str("smtp_url = \"smtps://me:s3cret@mail.example.com\"").unwrap();
    let c = Config::try_from(raw).unwrap();
    assert!(!format!("{c:?} {:?}", c.mail).contains("s3cret"));
}

#[test]
fn recovery_settings_have_defaults_bounds_and_a_password_file() {
    let c = Config::defaults().unwrap();
    assert_eq!(c.mail.verify_token_ttl, Duration::from_secs(86_400));
    assert_eq!(c.mail.reset_token_ttl, Duration::from_secs(1800));
    assert_eq!(c.mail.lease, Duration::from_secs(60));
    let err = |toml: &str| {
        format!(
            "{:#}",
            Config::try_from(toml::from_str::<RawConfig>(toml).unwrap()).unwrap_err()
        )
    };
    assert!(err("reset_token_ttl = \"2d\"").contains("reset_token_ttl"));
    assert!(err("reset_token_ttl = \"1m\"").contains("reset_token_ttl"));
    assert!(err("verify_token_ttl = \"8d\"").contains("verify_token_ttl"));
    assert!(err("mail_lease = \"5s\"").contains("mail_lease"));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("smtp-password");
    std::fs::write(&file, "p@ss w/rd\n").unwrap();
    let with = |url: &str| {
        format!(
            "smtp_url = \"{url}\"\nsmtp_password_file = \"{}\"",
            file.display()
        )
    };
    let c = Config::try_from(
        toml::from_str::<RawConfig>(&with("smtps://mailer@mail.example.com")).unwrap(),
    )
    .unwrap();
    let url = url::Url::parse(c.mail.smtp_url.as_deref().unwrap()).unwrap();
    assert_eq!(
        (url.username(), url.password()),
        ("mailer", Some("p%40ss%20w%2Frd"))
    );
    assert!(!format!("{c:?}").contains("p%40ss"));
    assert!(err(&with("smtps://mail.example.com")).contains("needs a user"));
    assert!(err(&with("smtps://mailer:other@mail.example.com")).contains("not both"));
    std::fs::write(&file, "\n").unwrap();
    assert!(err(&with("smtps://mailer@mail.example.com")).contains("is empty"));
    let e = err(&format!("smtp_password_file = \"{}\"", file.display()));
    assert!(e.contains("without smtp_url"), "{e}");

    // Templates are read and checked at start.
    std::fs::write(dir.path().join("reset.txt"), "{{link}} {{secret}}").unwrap();
    let e = err(&format!("mail_templates = \"{}\"", dir.path().display()));
    assert!(e.contains("smtp-password"), "a stray file is named: {e}");
    std::fs::remove_file(&file).unwrap();
    let e = err(&format!("mail_templates = \"{}\"", dir.path().display()));
    assert!(e.contains("reset.txt") && e.contains("{{secret}}"), "{e}");
}

#[test]
fn forward_auth_domains_are_host_names_or_dotted_domains() {
    let raw: RawConfig =
        toml::from_str("forward_auth_domains = [\"App.Example.com\", \".apps.example.com\"]")
            .unwrap();
    let c = Config::try_from(raw).unwrap();
    assert_eq!(
        c.forward_auth_domains,
        ["app.example.com", ".apps.example.com"]
    );
    assert!(Config::defaults().unwrap().forward_auth_domains.is_empty());
    for bad in [
        "https://app.example.com",
        "*.example.com",
        "app.example.com/x",
        "",
        ".",
        "a..b",
    ] {
        let raw: RawConfig = toml::from_str(&format!("forward_auth_domains = [{bad:?}]")).unwrap();
        let e = format!("{:#}", Config::try_from(raw).unwrap_err());
        assert!(e.contains("forward_auth_domains"), "{bad}: {e}");
    }
}

#[test]
fn a_session_cookie_domain_holds_the_issuers_host() {
    let c = |text: &str| Config::try_from(toml::from_str::<RawConfig>(text).unwrap());
    let shared =
        c("issuer = \"https://auth.example.com\"\nsession_cookie_domain = \"example.com\"")
            .unwrap();
    assert_eq!(shared.sessions.cookie_domain(), Some("example.com"));
    assert_eq!(shared.sessions.cookie_name(), "__Secure-portcullis_session");
    assert_eq!(Config::defaults().unwrap().sessions.cookie_domain(), None);
    for bad in ["other.com", "com", "1.2.3.4"] {
        let e = format!(
            "{:#}",
            c(&format!(
                "issuer = \"https://auth.example.com\"\nsession_cookie_domain = {bad:?}"
            ))
            .unwrap_err()
        );
        assert!(
            e.contains("session_cookie_domain") && e.contains("auth.example.com"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn mfa_required_for_scopes_are_scope_tokens() {
    let raw: RawConfig =
        toml::from_str("mfa_required_for_scopes = [\"admin\", \" billing:write \"]").unwrap();
    let c = Config::try_from(raw).unwrap();
    assert_eq!(c.mfa_required_for_scopes, ["admin", "billing:write"]);
    assert!(
        Config::defaults()
            .unwrap()
            .mfa_required_for_scopes
            .is_empty()
    );
    for bad in ["", "two words", "quo\"te", "back\\slash", "caf\u{e9}"] {
        let raw: RawConfig =
            toml::from_str(&format!("mfa_required_for_scopes = [{bad:?}]")).unwrap();
        let e = format!("{:#}", Config::try_from(raw).unwrap_err());
        assert!(e.contains("mfa_required_for_scopes"), "{bad}: {e}");
    }
}

#[test]
fn an_unset_signing_alg_keeps_the_databases_algorithm() {
    let unset = Config::try_from(RawConfig::default()).unwrap();
    assert_eq!(unset.alg_after(None), Algorithm::RS256);
    assert_eq!(unset.alg_after(Some(Algorithm::EdDSA)), Algorithm::EdDSA);
    let raw: RawConfig = toml::from_str("signing_alg = \"ES256\"").unwrap();
    let set = Config::try_from(raw).unwrap();
    assert_eq!(set.alg_after(Some(Algorithm::EdDSA)), Algorithm::ES256);
}

#[test]
fn a_short_access_token_lifetime_shortens_the_session_tokens_default() {
    let raw: RawConfig = toml::from_str("access_token_ttl = \"30s\"").unwrap();
    let c = Config::try_from(raw).unwrap();
    assert_eq!(c.session_token_ttl, Duration::from_secs(30));
}

#[test]
fn bad_settings_are_named_in_the_error() {
    let err = |toml: &str| {
        format!(
            "{:#}",
            Config::try_from(toml::from_str::<RawConfig>(toml).unwrap()).unwrap_err()
        )
    };
    assert!(err("bind = \"nope\"").contains("bind"));
    assert!(err("signing_alg = \"none\"").contains("signing_alg"));
    for hmac in ["HS256", "HS384", "HS512"] {
        let e = err(&format!("signing_alg = \"{hmac}\""));
        assert!(e.contains("cannot be published in the JWKS"), "{e}");
    }
    assert!(err("access_token_ttl = \"soon\"").contains("access_token_ttl"));
    assert!(err("database_url = \"mysql://x\"").contains("database_url"));
    assert!(toml::from_str::<RawConfig>("unknown = 1").is_err());
    assert!(err("issuer = \"http://auth.example\"").contains("sessions_allow_insecure_http"));
    assert!(err("issuer = \"ftp://auth.example\"").contains("issuer"));
    assert!(err("session_idle = \"13h\"").contains("session_idle"));
    assert!(err("session_token_ttl = \"1h\"").contains("session_token_ttl"));
    assert!(err("max_connections = 2").contains("max_connections"));
    assert!(err("header_read_timeout = 0").contains("header_read_timeout"));
    assert!(err("idle_timeout = \"20s\"").contains("idle_timeout"));
    assert!(err("key_rotation_interval = \"1m\"").contains("key_rotation_interval"));
    assert!(err("key_publication_delay = \"2d\"").contains("key_publication_delay"));
}

#[test]
fn trusted_proxies_come_from_the_file_or_the_environment_and_are_checked() {
    let raw: RawConfig = toml::from_str("trusted_proxies = [\"10.0.0.0/8\", \"::1\"]").unwrap();
    assert!(!Config::try_from(raw).unwrap().trusted_proxies.is_empty());
    assert!(Config::defaults().unwrap().trusted_proxies.is_empty());
    let mut raw = RawConfig::default();
    raw.apply_env([(
        "PORTCULLIS_TRUSTED_PROXIES".to_owned(),
        "10.0.0.0/8, 192.0.2.7".to_owned(),
    )])
    .unwrap();
    assert!(
        !Config::try_from(raw.clone())
            .unwrap()
            .trusted_proxies
            .is_empty()
    );
    raw.trusted_proxies = Some(vec!["10.0.0.0/99".into()]);
    let err = format!("{:#}", Config::try_from(raw).unwrap_err());
    assert!(
        err.contains("trusted_proxies") && err.contains("10.0.0.0/99"),
        "{err}"
    );
}

#[test]
fn every_setting_reads_its_environment_variable() {
    let mut raw = RawConfig::default();
    raw.apply_env(
        [
            ("PORTCULLIS_MAX_CONNECTIONS", "100"),
            ("PORTCULLIS_KEY_ROTATION_INTERVAL", "0"),
            ("PORTCULLIS_SIGNUPS_BEFORE_DELAY", "9"),
            ("PORTCULLIS_REQUEST_TIMEOUT", "20s"),
            ("PORTCULLIS_KEY_ENCRYPTION_KEY_FILE", "/run/secrets/kek"),
            ("PORTCULLIS_TEST_POSTGRES", "not ours: ignored"),
            ("OTHER_TOOL", "ignored"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    )
    .unwrap();
    let c = Config::try_from(raw).unwrap();
    assert_eq!(c.max_connections, 100);
    assert!(c.key_rotation_interval.is_zero());
    assert_eq!(c.signups_before_delay, 9);
    assert_eq!(c.request_timeout, Duration::from_secs(20));
    assert_eq!(c.kek.file.as_deref(), Some(Path::new("/run/secrets/kek")));
    let err = RawConfig::default()
        .apply_env([("PORTCULLIS_HASH_QUEUE".to_owned(), "lots".to_owned())])
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("PORTCULLIS_HASH_QUEUE"),
        "{err:#}"
    );
    // The key is never shown.
    let mut raw = RawConfig::default();
    raw.apply_env([(
        "PORTCULLIS_KEY_ENCRYPTION_KEY".to_owned(),
        "s3cret-kek".to_owned(),
    )])
    .unwrap();
    assert!(!format!("{raw:?}").contains("s3cret-kek"));
}

#[test]
fn a_bind_name_resolves_and_a_public_bind_asks_for_an_https_issuer() {
    let raw: RawConfig = toml::from_str("bind = \"localhost:9099\"").unwrap();
    let c = Config::try_from(raw).unwrap();
    assert_eq!(c.bind.port(), 9099);
    assert!(c.bind.ip().is_loopback());
    let raw: RawConfig = toml::from_str("bind = \"0.0.0.0:8080\"").unwrap();
    let err = format!("{:#}", Config::try_from(raw).unwrap_err());
    assert!(err.contains("--issuer https://"), "{err}");
    assert_eq!(
        err.matches("sessions_allow_insecure_http").count(),
        1,
        "said once: {err}"
    );
    let raw: RawConfig =
        toml::from_str("bind = \"0.0.0.0:8080\"\nissuer = \"https://auth.example\"").unwrap();
    assert!(Config::try_from(raw).is_ok());
}

#[test]
fn session_switches_from_the_environment_are_strict() {
    let mut raw = RawConfig::default();
    let set = |raw: &mut RawConfig, v: &str| {
        raw.apply_env([(
            "PORTCULLIS_SESSIONS_ALLOW_INSECURE_HTTP".to_owned(),
            v.to_owned(),
        )])
    };
    assert!(set(&mut raw, "yes").is_err());
    assert!(set(&mut raw, "true").is_ok());
    raw.issuer = Some("http://auth.test".into());
    assert!(!Config::try_from(raw.clone()).unwrap().sessions.is_secure());
    assert!(set(&mut raw, "0").is_ok());
    assert!(
        Config::try_from(raw).is_err(),
        "http off loopback needs the switch"
    );
}

#[test]
fn sessions_follow_the_issuer() {
    let c = Config::defaults().unwrap();
    assert_eq!(c.sessions.origin(), "http://127.0.0.1:8080");
    assert!(!c.sessions.is_secure(), "loopback development");
    let raw: RawConfig = toml::from_str("issuer = \"https://Auth.Example/tenant/\"").unwrap();
    let c = Config::try_from(raw).unwrap();
    assert_eq!(c.sessions.origin(), "https://auth.example");
    // The default port is no part of the origin a browser sends.
    let raw: RawConfig = toml::from_str("issuer = \"https://auth.example:443/x\"").unwrap();
    assert_eq!(
        Config::try_from(raw).unwrap().sessions.origin(),
        "https://auth.example"
    );
    assert!(c.sessions.is_secure());
    assert_eq!(c.sessions.cookie_name(), "__Host-portcullis_session");
    let raw: RawConfig = toml::from_str(
        "issuer = \"http://auth.test\"\nsessions_allow_insecure_http = true\nsession_idle = \"5m\"",
    )
    .unwrap();
    let c = Config::try_from(raw).unwrap();
    assert_eq!(c.sessions.idle_timeout(), Duration::from_secs(300));
    assert_eq!(c.session_token_ttl, Duration::from_secs(300));
}

/// Issue 28, finding 11: a mistyped variable is refused, naming the setting it was
/// meant to be, as the same typo in the TOML file is; other tools' variables are not.
#[test]
fn a_mistyped_environment_variable_is_refused_like_a_mistyped_toml_key() {
    let typo = |name: &str| {
        RawConfig::default()
            .apply_env([(name.to_owned(), "x".to_owned())])
            .map_err(|e| format!("{e:#}"))
    };
    let err = typo("PORTCULLIS_DATABSE_URL").unwrap_err();
    assert!(
        err.contains("did you mean PORTCULLIS_DATABASE_URL"),
        "{err}"
    );
    let err = typo("PORTCULLIS_ISUER").unwrap_err();
    assert!(err.contains("PORTCULLIS_ISSUER"), "{err}");
    // The same typo in TOML is refused too.
    assert!(toml::from_str::<RawConfig>("databse_url = \"x\"").is_err());
    // Not a setting, nor near one: another tool's, left alone.
    for other in [
        "PORTCULLIS_TEST_POSTGRES",
        "PORTCULLIS_REQUIRE_BROWSER",
        "PORTCULLIS_CHROMEDRIVER",
        "PORTCULLIS_VENV",
    ] {
        assert!(typo(other).is_ok(), "{other}");
    }
}
