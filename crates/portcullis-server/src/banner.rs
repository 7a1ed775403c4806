//! What the server says when it starts: where it listens, where its data is, what it
//! generated, its connection caps and whether the process may open files enough for
//! them (raising the limit where it may).

use std::net::SocketAddr;

/// The start-up banner of a server listening on `addr`.
pub(crate) fn banner(addr: SocketAddr, s: &Started) -> String {
    let mut out = format!(
        "Portcullis {} listening on http://{}\n  issuer    {}\n  database  {}{}\n",
        env!("CARGO_PKG_VERSION"),
        addr,
        s.issuer,
        s.database,
        if s.database_created {
            " (created now)"
        } else {
            ""
        },
    );
    if let Some(alg) = s.key_generated {
        out += &format!("  keys      generated a first {alg} signing key\n");
    }
    // Every start, not only the first: where the key that opens the signing keys is
    // is what an operator needs for a backup or a move (docs/operations.md).
    out += &format!("  keys      sealed under the key-encryption key {}", s.kek);
    out += if s.kek_generated {
        ", generated now: back it up with the database, apart from it\n"
    } else {
        "\n"
    };
    out += &format!("  mail      {}\n", s.mail);
    let c = &s.connections;
    out += &format!(
        "  limits    {} connections, {} per address",
        c.max, c.per_address
    );
    match (c.descriptors, c.raised_from) {
        (Some(d), _) if c.short() => {
            out += &format!(
                "; only {d} open files allowed, {} needed: raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower max_connections, or new clients will stall\n",
                c.needed()
            );
        }
        (Some(d), Some(from)) => out += &format!("; open files raised from {from} to {d}\n"),
        (Some(d), None) => out += &format!("; {d} open files allowed\n"),
        (None, _) => out += "; the open-file limit could not be read\n",
    }
    let base = s.issuer.trim_end_matches('/');
    out += &format!(
        "  pages     {base}/signup  {base}/login  {base}/account\n  API       {base}/auth/signup  /auth/login  /auth/refresh  /auth/me; stop with Ctrl-C\n"
    );
    if s.signing_alg == "EdDSA" {
        // The one common gap (docs/defaults.md, "The signing algorithm"): said where
        // the person who chose it will look first.
        out += "  tokens    EdDSA: Node's jsonwebtoken (under passport-jwt and express-jwt) cannot verify these tokens; RS256 and ES256 work everywhere (docs/consumers.md)\n";
    }
    out
}

/// What happened at start, for the banner.
#[derive(Clone, Debug)]
pub struct Started {
    /// The issuer, and the origin of the pages.
    pub issuer: String,
    /// Where the data is: an absolute path for SQLite, a URL without its password.
    pub database: String,
    /// The database file did not exist before this start.
    pub database_created: bool,
    /// A first signing key was generated now (its algorithm).
    pub key_generated: Option<&'static str>,
    /// The key-encryption key: its id and where it comes from (an absolute path for a
    /// file), and the previous one's id during a change of key.
    pub kek: String,
    /// It was generated at this start.
    pub kek_generated: bool,
    /// Where mail goes, in words.
    pub mail: String,
    /// The algorithm new tokens are signed with.
    pub signing_alg: &'static str,
    /// The connection caps and the file descriptors for them.
    pub connections: Connections,
}

/// The connection caps, and whether the process may open enough files for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connections {
    /// `max_connections`.
    pub max: usize,
    /// `max_connections_per_address`.
    pub per_address: usize,
    /// The soft limit on open files now (`None`: it could not be read).
    pub descriptors: Option<u64>,
    /// It was raised at start, from this.
    pub raised_from: Option<u64>,
}

/// Files a server needs beyond its connections: the listener, the database pool and
/// its WAL files, the metrics listener, logs, the key-encryption key.
const SPARE_DESCRIPTORS: u64 = 256;

impl Connections {
    /// What `max_connections` needs in file descriptors.
    pub fn needed(&self) -> u64 {
        self.max as u64 + SPARE_DESCRIPTORS
    }

    /// The limit cannot hold the cap: beyond about this many connections, `accept`
    /// fails and new clients stall instead of being answered 503.
    pub fn short(&self) -> bool {
        self.descriptors.is_some_and(|d| d < self.needed())
    }
}

/// The soft limit on open files, where there is one to read.
#[cfg(unix)]
fn soft_descriptors() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

#[cfg(not(unix))]
fn soft_descriptors() -> Option<u64> {
    None
}

/// Raises the soft limit on open files to what `max_connections` needs, as far as the
/// hard limit allows (every connection is one file): a soft limit of 1,024, common
/// by default, would stall new clients long before a cap of 4,096.
pub(crate) fn raise_descriptors(max: usize, per_address: usize) -> Connections {
    let mut c = Connections {
        max,
        per_address,
        descriptors: None,
        raised_from: None,
    };
    let Some(before) = soft_descriptors() else {
        return c;
    };
    c.descriptors = Some(before);
    if before < c.needed()
        && let Ok(now) = rlimit::increase_nofile_limit(c.needed())
        && now > before
    {
        c.descriptors = Some(now);
        c.raised_from = Some(before);
    }
    if c.short() {
        tracing::warn!(
            descriptors = c.descriptors,
            max_connections = max,
            "the open-file limit cannot hold max_connections: beyond it new clients stall; raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower max_connections"
        );
    }
    c
}

#[cfg(test)]
mod banner_tests {
    use super::*;
    use crate::startup::cache_too_small;

    #[test]
    fn a_full_cache_that_mostly_misses_is_too_small_and_nothing_else_is() {
        // 100,000 live tokens through a 10,000-entry cache: ~10% hits.
        assert!(cache_too_small(3_000, 27_000, 10_000, 10_000));
        // Mostly misses but not full: new tokens arriving (a burst of logins).
        assert!(!cache_too_small(3_000, 27_000, 4_000, 10_000));
        // Full but mostly hits: the right size.
        assert!(!cache_too_small(27_000, 3_000, 10_000, 10_000));
        // Too few requests to say anything; the cache off.
        assert!(!cache_too_small(10, 900, 10_000, 10_000));
        assert!(!cache_too_small(0, 50_000, 0, 0));
    }

    fn started(alg: &'static str) -> Started {
        Started {
            issuer: "http://127.0.0.1:8080".into(),
            database: "/srv/portcullis.db".into(),
            database_created: true,
            key_generated: Some(alg),
            kek: "abcdEFGH123 in /srv/portcullis.db.kek".into(),
            kek_generated: false,
            mail: "written to /srv/portcullis.db.mail (no smtp_url)".into(),
            signing_alg: alg,
            connections: Connections {
                max: 4096,
                per_address: 512,
                descriptors: Some(1024),
                raised_from: None,
            },
        }
    }

    #[test]
    fn the_banner_says_the_caps_and_warns_when_the_open_file_limit_cannot_hold_them() {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let short = banner(addr, &started("RS256"));
        assert!(
            short.contains(
                "4096 connections, 512 per address; only 1024 open files allowed, 4352 needed"
            ),
            "{short}"
        );
        let mut s = started("RS256");
        s.connections.descriptors = Some(65_536);
        s.connections.raised_from = Some(1024);
        let raised = banner(addr, &s);
        assert!(
            raised.contains("open files raised from 1024 to 65536"),
            "{raised}"
        );
        assert!(!raised.contains("stall"), "{raised}");
    }

    #[test]
    fn the_banner_warns_of_eddsa_where_node_cannot_follow() {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let eddsa = banner(addr, &started("EdDSA"));
        assert!(
            eddsa.contains("generated a first EdDSA signing key"),
            "{eddsa}"
        );
        assert!(
            eddsa.contains("jsonwebtoken") && eddsa.contains("cannot verify"),
            "{eddsa}"
        );
        let rs256 = banner(addr, &started("RS256"));
        assert!(
            rs256.contains("generated a first RS256 signing key"),
            "{rs256}"
        );
        assert!(!rs256.contains("cannot verify"), "{rs256}");
    }

    /// Issue 28, finding 11: the banner named the key-encryption key's file on the first
    /// start only, where docs/operations.md says it prints it.
    #[test]
    fn the_banner_says_where_the_key_encryption_key_is_on_every_start() {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let mut s = started("RS256");
        let later = banner(addr, &s);
        assert!(
            later.contains(
                "sealed under the key-encryption key abcdEFGH123 in /srv/portcullis.db.kek\n"
            ),
            "{later}"
        );
        s.kek_generated = true;
        let first = banner(addr, &s);
        assert!(first.contains("generated now: back it up"), "{first}");
    }
}
