//! IP allow-lists (CIDR) and the client address behind trusted proxies.

use std::net::IpAddr;
use std::str::FromStr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// YooKassa's published notification addresses (providers.md §3.7: the official SDKs'
/// IPv4 list, and the union of both published IPv6 forms).
pub const DEFAULT_YOOKASSA_IPS: &str = "185.71.76.0/27,185.71.77.0/27,77.75.153.0/25,77.75.154.128/25,77.75.156.11/32,77.75.156.35/32,2a02:5180::/32";

/// Who may read `/metrics` by default: the host itself and private networks.
pub const DEFAULT_METRICS_IPS: &str =
    "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7";

/// A list of networks; a bare address is a one-address network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpList(Vec<IpNet>);

/// An entry of an IP list that is neither an address nor a CIDR network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{entry}` is not an IP address or CIDR network")]
pub struct IpListError {
    /// The entry.
    pub entry: String,
}

impl FromStr for IpList {
    type Err = IpListError;

    fn from_str(s: &str) -> Result<Self, IpListError> {
        s.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| {
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| IpListError {
                        entry: e.chars().take(64).collect(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

impl IpList {
    /// Whether `ip` is in one of the networks (an IPv4-mapped IPv6 address counts as
    /// its IPv4 address).
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// Whether the list is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The address a request comes from: the TCP peer, or — only when the peer is a trusted
/// proxy — the right-most `X-Forwarded-For` address that is not itself a trusted proxy.
/// `None` when the client is unknown: a trusted proxy forwarded something that is not an
/// address, or relayed the request without naming a client outside the trusted proxies
/// (no header, or trusted hops only). Never the proxy's own address: a proxy on this host
/// would otherwise make every relayed stranger look like `127.0.0.1`.
#[must_use]
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &IpList) -> Option<IpAddr> {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return Some(peer);
    }
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    for hop in forwarded.iter().rev() {
        let ip = hop.parse::<IpAddr>().ok()?.to_canonical();
        if !trusted.contains(ip) {
            return Some(ip);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_default_list_holds_yookassa_and_nobody_else() {
        let list: IpList = DEFAULT_YOOKASSA_IPS.parse().unwrap();
        for yes in [
            "185.71.76.1",
            "185.71.77.31",
            "77.75.153.100",
            "77.75.154.200",
            "77.75.156.11",
            "77.75.156.35",
            "2a02:5180:0:1509::1",
            "::ffff:185.71.76.5",
        ] {
            assert!(list.contains(ip(yes)), "{yes}");
        }
        for no in [
            "185.71.76.32",
            "77.75.156.12",
            "127.0.0.1",
            "10.0.0.1",
            "2a02:5181::1",
        ] {
            assert!(!list.contains(ip(no)), "{no}");
        }
    }

    #[test]
    fn bad_entries_are_named() {
        assert_eq!(
            "10.0.0.0/8, nonsense".parse::<IpList>(),
            Err(IpListError {
                entry: "nonsense".into()
            })
        );
        assert_eq!(
            "10.0.0.0/33".parse::<IpList>().unwrap_err().entry,
            "10.0.0.0/33"
        );
        assert!("".parse::<IpList>().unwrap().is_empty());
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let none = IpList::default();
        let proxy: IpList = "10.0.0.0/8".parse().unwrap();
        let spoofed = xff(&["185.71.76.5"]);
        assert_eq!(
            client_ip(ip("203.0.113.9"), &spoofed, &none),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), &spoofed, &proxy),
            Some(ip("185.71.76.5"))
        );
        // The client put a fake first hop in; the proxy appended the real one.
        let chain = xff(&["185.71.76.5, 203.0.113.9"]);
        assert_eq!(
            client_ip(ip("10.0.0.2"), &chain, &proxy),
            Some(ip("203.0.113.9"))
        );
        let two_proxies = xff(&["203.0.113.9", "10.1.1.1"]);
        assert_eq!(
            client_ip(ip("10.0.0.2"), &two_proxies, &proxy),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(client_ip(ip("10.0.0.2"), &xff(&["garbage"]), &proxy), None);
    }

    /// [edge] A request a trusted proxy relays without naming its client is from nobody
    /// known — not from the proxy's address, which allow-lists (`/metrics`: loopback and
    /// private networks) would admit.
    #[test]
    fn a_relayed_request_without_a_client_address_is_from_nobody_known() {
        let local: IpList = "127.0.0.1/32,::1/128".parse().unwrap();
        for (peer, headers) in [
            ("127.0.0.1", HeaderMap::new()),
            ("127.0.0.1", xff(&["127.0.0.1"])),
            ("127.0.0.1", xff(&["::1, 127.0.0.1"])),
            ("::ffff:127.0.0.1", HeaderMap::new()),
            ("127.0.0.1", xff(&[""])),
        ] {
            assert_eq!(
                client_ip(ip(peer), &headers, &local),
                None,
                "{peer} {headers:?}"
            );
        }
        // The same proxy naming a client: that client.
        assert_eq!(
            client_ip(ip("127.0.0.1"), &xff(&["198.51.100.7"]), &local),
            Some(ip("198.51.100.7"))
        );
        // A peer that is not a proxy is itself, whatever it claims.
        assert_eq!(
            client_ip(ip("198.51.100.7"), &xff(&["127.0.0.1"]), &local),
            Some(ip("198.51.100.7"))
        );
    }
}
