//! The machine's addresses on its networks, for the URLs a phone can open:
//! a server listening on `0.0.0.0` (every address) says
//! `http://0.0.0.0:8080`, which nobody can type.
//!
//! Linux lists them in `/proc` (read by `main`, an edge): IPv4 addresses
//! as the `/32 host LOCAL` leaves of `/proc/net/fib_trie`, IPv6 ones in
//! `/proc/net/if_inet6`. No `getifaddrs` (it needs `unsafe` or a crate),
//! no netlink. Parsing is pure, here; reading is [`addresses`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The addresses of this machine a device on its networks could reach,
/// best first (see [`rank`]): no loopback, no IPv6 link-local (a phone
/// cannot use one without naming an interface).
pub fn addresses() -> Vec<IpAddr> {
    let v4 = std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
    let v6 = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
    let mut all: Vec<IpAddr> = ipv4_from_fib_trie(&v4)
        .into_iter()
        .map(IpAddr::V4)
        .chain(ipv6_from_if_inet6(&v6).into_iter().map(IpAddr::V6))
        .collect();
    all.sort_by_key(|ip| (rank(ip), *ip));
    all.dedup();
    all
}

/// The URLs to show for a server listening on `listen` (with `scheme`):
/// for an unspecified address, one per address in `ips` that it serves
/// (`0.0.0.0` serves IPv4 only, `[::]` both); none otherwise (the ready
/// line names the address already).
///
/// # Examples
///
/// ```
/// use smolchat::lan::urls;
///
/// let ips = ["192.168.1.23".parse().unwrap(), "fd00::5".parse().unwrap()];
/// assert_eq!(urls("http", "0.0.0.0:8080".parse().unwrap(), &ips), ["http://192.168.1.23:8080"]);
/// assert_eq!(urls("https", "[::]:443".parse().unwrap(), &ips).len(), 2);
/// assert!(urls("http", "127.0.0.1:8080".parse().unwrap(), &ips).is_empty());
/// ```
pub fn urls(scheme: &str, listen: SocketAddr, ips: &[IpAddr]) -> Vec<String> {
    if !listen.ip().is_unspecified() {
        return Vec::new();
    }
    ips.iter()
        .filter(|ip| listen.is_ipv6() || ip.is_ipv4())
        .map(|ip| format!("{scheme}://{}", SocketAddr::new(*ip, listen.port())))
        .collect()
}

/// Order of preference: home and office networks first (192.168/16,
/// 10/8, 172.16/12; a container bridge is often 172.17), then other IPv4,
/// then IPv6 unique-local, then global IPv6.
pub fn rank(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(v4) => match v4.octets() {
            [192, 168, ..] => 0,
            [10, ..] => 1,
            [172, b, ..] if (16..32).contains(&b) => 2,
            _ => 3,
        },
        IpAddr::V6(v6) if (v6.segments()[0] & 0xfe00) == 0xfc00 => 4,
        IpAddr::V6(_) => 5,
    }
}

/// The local IPv4 addresses in the text of `/proc/net/fib_trie`: each leaf
/// line `|-- A.B.C.D` followed by a `/32 host LOCAL` line. Loopback is
/// left out; each address once.
///
/// # Examples
///
/// ```
/// let trie = "Local:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 192.168.1.23\n        /32 host LOCAL\n     |-- 192.168.1.255\n        /32 link BROADCAST\n     |-- 127.0.0.1\n        /32 host LOCAL\n";
/// assert_eq!(smolchat::lan::ipv4_from_fib_trie(trie), ["192.168.1.23".parse::<std::net::Ipv4Addr>().unwrap()]);
/// ```
pub fn ipv4_from_fib_trie(text: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut leaf: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(addr) = line.strip_prefix("|-- ") {
            leaf = addr.trim().parse().ok();
        } else if line.starts_with("/32 host LOCAL") {
            if let Some(ip) = leaf.take() {
                if !ip.is_loopback() && !ip.is_unspecified() && !out.contains(&ip) {
                    out.push(ip);
                }
            }
        } else if !line.starts_with('/') {
            leaf = None;
        }
    }
    out
}

/// The IPv6 addresses in the text of `/proc/net/if_inet6` (one per line:
/// 32 hex digits, interface index, prefix length, scope, flags, name),
/// without loopback, link-local, and tentative or deprecated ones.
///
/// # Examples
///
/// ```
/// let text = "fd000000000000000000000000000005 02 40 00 80 eth0\nfe800000000000000000000000000001 02 40 20 80 eth0\n00000000000000000000000000000001 01 80 10 80 lo\n";
/// assert_eq!(smolchat::lan::ipv6_from_if_inet6(text), ["fd00::5".parse::<std::net::Ipv6Addr>().unwrap()]);
/// ```
pub fn ipv6_from_if_inet6(text: &str) -> Vec<Ipv6Addr> {
    // IFA_F_DADFAILED | IFA_F_DEPRECATED | IFA_F_TENTATIVE
    const UNUSABLE: u32 = 0x08 | 0x20 | 0x40;
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [hex, _, _, _, flags, ..] = fields.as_slice() else {
            continue;
        };
        let (Ok(bits), Ok(flags)) = (
            u128::from_str_radix(hex, 16),
            u32::from_str_radix(flags, 16),
        ) else {
            continue;
        };
        if hex.len() != 32 || flags & UNUSABLE != 0 {
            continue;
        }
        let ip = Ipv6Addr::from(bits);
        let link_local = (ip.segments()[0] & 0xffc0) == 0xfe80;
        if !ip.is_loopback() && !ip.is_unspecified() && !link_local && !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of a real `/proc/net/fib_trie`: both tables list every
    /// address; network, broadcast and route leaves are not addresses.
    const TRIE: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
     +-- 192.168.1.0/24 2 0 2
        |-- 192.168.1.0
           /24 link UNICAST
        |-- 192.168.1.23
           /32 host LOCAL
        |-- 192.168.1.255
           /32 link BROADCAST
     |-- 172.17.0.1
        /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
     +-- 192.168.1.0/24 2 0 2
        |-- 192.168.1.23
           /32 host LOCAL
";

    #[test]
    fn local_ipv4_addresses_from_the_fib_trie() {
        assert_eq!(
            ipv4_from_fib_trie(TRIE),
            [Ipv4Addr::new(192, 168, 1, 23), Ipv4Addr::new(172, 17, 0, 1)]
        );
        assert!(ipv4_from_fib_trie("").is_empty());
        assert!(ipv4_from_fib_trie("|-- not an address\n/32 host LOCAL\n").is_empty());
    }

    #[test]
    fn usable_ipv6_addresses_from_if_inet6() {
        let text = "20010db8000000000000000000000023 03 40 00 00 wlan0
20010db8000000000000000000000024 03 40 00 40 wlan0
fe80000000000000abcdef0000000001 03 40 20 80 wlan0
00000000000000000000000000000001 01 80 10 80 lo
short 01 80 10 80 x
";
        assert_eq!(
            ipv6_from_if_inet6(text),
            ["2001:db8::23".parse::<Ipv6Addr>().unwrap()]
        );
    }

    #[test]
    fn home_networks_come_first() {
        let mut ips: Vec<IpAddr> = [
            "2001:db8::1",
            "fd00::1",
            "172.17.0.1",
            "10.0.0.2",
            "192.168.1.23",
            "100.64.0.1",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        ips.sort_by_key(|ip| (rank(ip), *ip));
        let shown: Vec<String> = ips.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "192.168.1.23",
                "10.0.0.2",
                "172.17.0.1",
                "100.64.0.1",
                "fd00::1",
                "2001:db8::1"
            ]
        );
    }

    #[test]
    fn urls_bracket_ipv6() {
        let ips: Vec<IpAddr> = vec!["2001:db8::23".parse().unwrap()];
        assert_eq!(
            urls("http", "[::]:8080".parse().unwrap(), &ips),
            ["http://[2001:db8::23]:8080"]
        );
    }
}
