//! Who is asking: the client address the throttles count by.
//!
//! The TCP peer, unless the peer is one of the configured `trusted_proxies`: then the
//! one forwarding header the proxies write (`forwarded_header`: `X-Forwarded-For` by
//! default, or `Forwarded`, RFC 7239) is read from the right (the hop nearest to us),
//! and the first address that is not a trusted proxy is the client. Only that header is
//! read, never the other one: a proxy appends to the header it writes and passes any
//! other through untouched, so falling back would let a client choose its address.
//! Headers from any other peer are ignored. An entry that is not an address (`unknown`,
//! an obfuscated name, a line that is not text) stops the walk at the last trusted hop,
//! so a garbled chain is counted against the proxy rather than against nobody.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The `trusted_proxies` setting: CIDR ranges (or single addresses) whose forwarding
/// header is believed, and which header that is. Defaults to none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    header: ForwardedHeader,
}

/// The one forwarding header the trusted proxies write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, …` (most proxies and load balancers).
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
}

impl std::str::FromStr for ForwardedHeader {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(ForwardedHeader::XForwardedFor),
            "forwarded" => Ok(ForwardedHeader::Forwarded),
            other => Err(format!("{other:?} is not x-forwarded-for or forwarded")),
        }
    }
}

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
            .map(|nets| TrustedProxies {
                nets,
                header: ForwardedHeader::default(),
            })
    }

    /// The same proxies, writing `header`.
    #[must_use]
    pub fn with_header(mut self, header: ForwardedHeader) -> TrustedProxies {
        self.header = header;
        self
    }

    /// True when no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// True when `addr` is one of the trusted proxies.
    pub fn trusts(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        self.nets.iter().any(|net| net.contains(&addr))
    }

    /// The client address of a request that came from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer);
        if !self.trusts(client) {
            return client;
        }
        for hop in forwarded_chain(headers, self.header).into_iter().rev() {
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

/// The hops the forwarding header lists, leftmost (farthest) first; `None` for an
/// entry that is not an address, or a header line that is not text.
fn forwarded_chain(headers: &HeaderMap, header: ForwardedHeader) -> Vec<Option<IpAddr>> {
    let name = match header {
        ForwardedHeader::XForwardedFor => "x-forwarded-for",
        ForwardedHeader::Forwarded => "forwarded",
    };
    let mut hops = Vec::new();
    for line in headers.get_all(name) {
        let Ok(line) = line.to_str() else {
            hops.push(None);
            continue;
        };
        for element in line.split(',') {
            hops.push(match header {
                ForwardedHeader::XForwardedFor => node_address(element.trim()),
                ForwardedHeader::Forwarded => element
                    .split(';')
                    .find_map(|pair| {
                        let (name, value) = pair.trim().split_once('=')?;
                        name.trim()
                            .eq_ignore_ascii_case("for")
                            .then(|| node_address(value.trim()))
                    })
                    .flatten(),
            });
        }
    }
    hops
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

/// True for `localhost` and loopback addresses (`127.0.0.1`, `[::1]`): this machine.
pub(crate) fn loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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

    /// Security review: with `Forwarded` preferred whenever present, a client behind a
    /// proxy that writes X-Forwarded-For chose its own address with a `Forwarded` header.
    #[test]
    fn only_the_configured_header_is_read_never_the_other() {
        let xff = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap();
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.1"),
            ("forwarded", "for=6.6.6.6"),
        ]);
        assert_eq!(xff.client(ip("10.0.0.1"), &h), ip("198.51.100.1"));
        let fwd = xff.clone().with_header(ForwardedHeader::Forwarded);
        assert_eq!(fwd.client(ip("10.0.0.1"), &h), ip("6.6.6.6"));
        // No fallback: without its header, the proxy itself is the client.
        let only_xff = headers(&[("x-forwarded-for", "198.51.100.1")]);
        assert_eq!(fwd.client(ip("10.0.0.1"), &only_xff), ip("10.0.0.1"));
        // A line that is not text is a garbled hop, not a skipped one.
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.append("x-forwarded-for", HeaderValue::from_bytes(b"\xff").unwrap());
        assert_eq!(xff.client(ip("10.0.0.1"), &h), ip("10.0.0.1"));
        assert_eq!(
            "Forwarded".parse::<ForwardedHeader>(),
            Ok(ForwardedHeader::Forwarded)
        );
        assert!("x-real-ip".parse::<ForwardedHeader>().is_err());
    }

    #[test]
    fn forwarded_node_forms_parse() {
        let t = TrustedProxies::parse(&["10.0.0.0/8"])
            .unwrap()
            .with_header(ForwardedHeader::Forwarded);
        let h = headers(&[(
            "forwarded",
            "for=192.0.2.60;proto=http, for=\"[2001:db8:cafe::17]:4711\"",
        )]);
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
        let t = t.with_header(ForwardedHeader::Forwarded);
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
