//! Who is asking: the client address the throttles count by.
//!
//! The TCP peer, unless the peer is one of the configured `trusted_proxies`: then the
//! forwarding headers are read from the right (the hop nearest to us) and the first
//! address that is not a trusted proxy is the client. `Forwarded` (RFC 7239) is used
//! when present, `X-Forwarded-For` otherwise. Headers from any other peer are ignored,
//! so a client cannot choose its own address by sending them. An entry that is not an
//! address (`unknown`, an obfuscated name) stops the walk at the last trusted hop, so a
//! garbled chain is counted against the proxy rather than against nobody.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The `trusted_proxies` setting: CIDR ranges (or single addresses) whose forwarding
/// headers are believed. Defaults to none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses `10.0.0.0/8`, `192.0.2.7`, `::1/128`…; the error names the bad entry.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<TrustedProxies, String> {
        entries
            .iter()
            .map(|e| {
                let e = e.as_ref().trim();
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{e:?} is not an address or a CIDR range like 10.0.0.0/8"))
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    /// True when no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        self.0.iter().any(|net| net.contains(&addr))
    }

    /// The client address of a request that came from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer);
        if !self.trusts(client) {
            return client;
        }
        for hop in forwarded_chain(headers).into_iter().rev() {
            match hop {
                Some(addr) if self.trusts(addr) => client = addr,
                Some(addr) => return addr,
                None => return client,
            }
        }
        client
    }
}

/// An IPv4 address written as IPv6 (`::ffff:192.0.2.1`) is the IPv4 address.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// The hops the forwarding headers list, leftmost (farthest) first; `None` for an
/// entry that is not an address.
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<&str> = headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .map(|element| {
                element.split(';').find_map(|pair| {
                    let (name, value) = pair.trim().split_once('=')?;
                    name.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| node_address(value.trim()))
                })?
            })
            .collect();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.to_str().ok())
        .flat_map(|v| v.unwrap_or("\u{0}").split(','))
        .map(|hop| node_address(hop.trim()))
        .collect()
}

/// An RFC 7239 node (`192.0.2.1`, `"192.0.2.1:80"`, `"[2001:db8::1]:443"`), or a
/// bare address as X-Forwarded-For writes it.
fn node_address(text: &str) -> Option<IpAddr> {
    let text = text.trim_matches('"');
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Some(canonical(addr));
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(canonical(socket.ip()));
    }
    let inner = text.strip_prefix('[')?.split(']').next()?;
    inner.parse::<IpAddr>().ok().map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_static(value));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_ignored() {
        let none = TrustedProxies::default();
        let spoof = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("forwarded", "for=198.51.100.1"),
        ]);
        assert_eq!(none.client(ip("192.0.2.1"), &spoof), ip("192.0.2.1"));
        let some = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap();
        assert_eq!(some.client(ip("192.0.2.1"), &spoof), ip("192.0.2.1"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let t = TrustedProxies::parse(&["10.0.0.0/8", "192.0.2.7"]).unwrap();
        // The client wrote a fake first entry; our proxies appended the real ones.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.1.1.1")]);
        assert_eq!(t.client(ip("192.0.2.7"), &h), ip("203.0.113.9"));
        // Split over two header lines, the same.
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "203.0.113.9, 10.1.1.1"),
        ]);
        assert_eq!(t.client(ip("10.0.0.1"), &h), ip("203.0.113.9"));
        // Every hop trusted: the farthest one.
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 10.1.1.1")]);
        assert_eq!(t.client(ip("10.0.0.1"), &h), ip("10.9.9.9"));
        // No header: the proxy itself.
        assert_eq!(t.client(ip("10.0.0.1"), &HeaderMap::new()), ip("10.0.0.1"));
    }

    #[test]
    fn forwarded_wins_and_its_node_forms_parse() {
        let t = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap();
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.1"),
            (
                "forwarded",
                "for=192.0.2.60;proto=http, for=\"[2001:db8:cafe::17]:4711\"",
            ),
        ]);
        assert_eq!(t.client(ip("10.0.0.1"), &h), ip("2001:db8:cafe::17"));
        let h = headers(&[(
            "forwarded",
            "proto=https;for=\"192.0.2.60:8080\";by=10.0.0.1",
        )]);
        assert_eq!(t.client(ip("10.0.0.1"), &h), ip("192.0.2.60"));
    }

    #[test]
    fn a_garbled_hop_stops_at_the_last_trusted_address() {
        let t = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap();
        let h = headers(&[("x-forwarded-for", "203.0.113.9, unknown, 10.1.1.1")]);
        assert_eq!(t.client(ip("10.0.0.1"), &h), ip("10.1.1.1"));
        let h = headers(&[("forwarded", "for=_hidden, for=10.2.2.2")]);
        assert_eq!(t.client(ip("10.0.0.1"), &h), ip("10.2.2.2"));
    }

    #[test]
    fn mapped_ipv4_counts_as_ipv4_and_bad_ranges_are_named() {
        let t = TrustedProxies::parse(&["127.0.0.1"]).unwrap();
        let h = headers(&[("x-forwarded-for", "::ffff:203.0.113.9")]);
        assert_eq!(t.client(ip("::ffff:127.0.0.1"), &h), ip("203.0.113.9"));
        let err = TrustedProxies::parse(&["10.0.0.0/33"]).unwrap_err();
        assert!(err.contains("10.0.0.0/33"), "{err}");
    }
}
