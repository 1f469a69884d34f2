//! Who is on the other end of a request: the TCP peer, or — only when that peer is one of
//! our own proxies (`FAULTLINE_TRUSTED_PROXIES`) — the address the proxies recorded in
//! `X-Forwarded-For`. The login throttle keys on it and ingest writes it into events
//! (`{{auto}}`), so a sender must not be able to choose it by sending a header.

use std::fmt;
use std::net::IpAddr;

/// An IPv4 or IPv6 network in CIDR form (`10.0.0.0/8`, `fd00::/8`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `ADDRESS/PREFIX` or a single address (a /32 or /128). Bits past the prefix
    /// must be zero, so a typo like `10.0.0.1/8` is refused instead of silently widened.
    pub fn parse(text: &str) -> Result<IpNet, String> {
        let text = text.trim();
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| format!("{addr_text:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{text:?}: the prefix length must be 0 to {max}")),
            },
        };
        let net = IpNet { addr, prefix };
        if net.network_bits() != bits(addr) {
            return Err(format!(
                "{text:?} has bits set past its /{prefix} prefix (did you mean {}?)",
                IpNet {
                    addr: from_bits(net.network_bits(), addr.is_ipv4()),
                    prefix
                }
            ));
        }
        Ok(net)
    }

    fn mask(&self) -> u128 {
        let width = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == 0 {
            0
        } else {
            (u128::MAX << (width - u32::from(self.prefix)))
                & if width == 32 {
                    u128::from(u32::MAX)
                } else {
                    u128::MAX
                }
        }
    }

    fn network_bits(&self) -> u128 {
        bits(self.addr) & self.mask()
    }

    /// Whether `ip` lies in this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && bits(ip) & self.mask() == self.network_bits()
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_bits(b: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4((b as u32).into())
    } else {
        IpAddr::V6(b.into())
    }
}

/// The proxies whose `X-Forwarded-For` is believed (`FAULTLINE_TRUSTED_PROXIES`); empty by
/// default, so the header is ignored unless an operator says where it comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Parses a comma- or space-separated list of networks (`127.0.0.1, 10.0.0.0/8, fd00::/8`).
    pub fn parse(text: &str) -> Result<TrustedProxies, String> {
        let nets = text
            .split([',', ' ', '\t', '\n'])
            .filter(|s| !s.trim().is_empty())
            .map(IpNet::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxies { nets })
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is one of our proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }

    /// The client's address. Without a trusted peer it is the peer itself: anyone can write
    /// `X-Forwarded-For`. Behind trusted proxies each one appends the address it received
    /// the request from, so the header is read from the right, skipping our own proxies;
    /// the first address that is not one of them is the client (anything left of it was
    /// written by the client and proves nothing). An entry that is not an address stops the
    /// walk at the last proxy that wrote one. `forwarded_for` is every `X-Forwarded-For`
    /// header value in the order received.
    pub fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl IntoIterator<Item = &'a str>,
    ) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let hops: Vec<&str> = forwarded_for
            .into_iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                break;
            };
            client = ip;
            if !self.contains(ip) {
                break;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`,
/// `[::1]:5678`) as some proxies write it.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sock) = hop.parse::<std::net::SocketAddr>() {
        return Some(sock.ip().to_canonical());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn networks_parse_and_match_v4_and_v6() {
        let p = TrustedProxies::parse("127.0.0.1, 10.0.0.0/8 fd00::/8,::1").expect("valid");
        assert!(p.contains(ip("127.0.0.1")));
        assert!(!p.contains(ip("127.0.0.2")));
        assert!(p.contains(ip("10.200.3.4")));
        assert!(!p.contains(ip("11.0.0.1")));
        assert!(p.contains(ip("fd12:3456::1")));
        assert!(!p.contains(ip("fe80::1")));
        assert!(p.contains(ip("::1")));
        // An IPv4 peer seen on a dual-stack socket.
        assert!(p.contains(ip("::ffff:10.1.2.3")));
        assert!(
            TrustedProxies::parse("0.0.0.0/0")
                .expect("all v4")
                .contains(ip("8.8.8.8"))
        );
        assert!(TrustedProxies::parse("").expect("empty").is_empty());
    }

    #[test]
    fn bad_networks_are_refused_with_a_reason() {
        for (text, says) in [
            ("10.0.0.0/33", "prefix length must be 0 to 32"),
            ("fd00::/129", "0 to 128"),
            ("10.0.0.1/8", "did you mean 10.0.0.0/8"),
            ("localhost", "not an IP address"),
            ("10.0.0.0/x", "prefix length"),
            ("10.0.0.0/8,,nope", "\"nope\" is not an IP address"),
        ] {
            let err = TrustedProxies::parse(text).expect_err(text);
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_peer() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_ip(ip("203.0.113.9"), ["1.1.1.1"]),
            ip("203.0.113.9")
        );
        let p = TrustedProxies::parse("10.0.0.0/8").expect("valid");
        // From an untrusted peer the header is ignored.
        assert_eq!(
            p.client_ip(ip("203.0.113.9"), ["1.1.1.1"]),
            ip("203.0.113.9")
        );
        // From a trusted one, the right-most address that is not a proxy.
        assert_eq!(
            p.client_ip(ip("10.0.0.2"), ["6.6.6.6, 198.51.100.7, 10.0.0.5"]),
            ip("198.51.100.7")
        );
        // Several headers are one list, in order.
        assert_eq!(
            p.client_ip(ip("10.0.0.2"), ["6.6.6.6", "198.51.100.7"]),
            ip("198.51.100.7")
        );
        // Nothing forwarded: the proxy itself.
        assert_eq!(p.client_ip(ip("10.0.0.2"), []), ip("10.0.0.2"));
        // Only proxies: the left-most of them.
        assert_eq!(
            p.client_ip(ip("10.0.0.2"), ["10.9.9.9, 10.0.0.3"]),
            ip("10.9.9.9")
        );
        // Garbage stops the walk at the last good hop.
        assert_eq!(
            p.client_ip(ip("10.0.0.2"), ["1.1.1.1, <script>, 10.0.0.3"]),
            ip("10.0.0.3")
        );
        // Ports and brackets as some proxies write them; IPv6 clients.
        assert_eq!(
            p.client_ip(ip("10.0.0.2"), ["[2001:db8::1]:443"]),
            ip("2001:db8::1")
        );
        assert_eq!(
            p.client_ip(ip("::ffff:10.0.0.2"), ["192.0.2.1:5555"]),
            ip("192.0.2.1")
        );
    }
}
