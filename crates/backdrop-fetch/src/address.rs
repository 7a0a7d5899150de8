//! Which destination addresses are refused, and why.
//!
//! The table is written out by hand rather than taken from `IpAddr::is_global` (unstable)
//! so that every refused range is visible in one place with the reason an error message
//! gives. IPv6 forms that embed an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64,
//! 6to4) are judged by the IPv4 address inside them, because that is where a packet to
//! them can end up; Teredo is refused outright since it hides its IPv4 address.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why `ip` is not a destination an image may be fetched from, or `None` if it is a
/// public address. The reason reads after "it is", e.g. "a loopback address".
///
/// This ignores allow-lists; see [`refusal_with_allow`].
pub fn refusal_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

/// [`refusal_reason`], except that addresses inside one of `allow` are accepted. An
/// IPv4-mapped IPv6 address is also accepted when its IPv4 form is allowed, so an allow
/// entry means the same whichever way the resolver spelled the address.
pub fn refusal_with_allow(ip: IpAddr, allow: &[IpNet]) -> Option<&'static str> {
    let mapped = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
        IpAddr::V4(_) => None,
    };
    let allowed =
        allow.iter().any(|net| net.contains(&ip) || mapped.is_some_and(|v4| net.contains(&v4)));
    if allowed {
        None
    } else {
        refusal_reason(ip)
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], len: u32) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], len: u32) -> bool {
    let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

const METADATA: &str = "the cloud metadata service";

// Order matters: the first match gives the reason, so specific entries come first.
const V4_REFUSED: &[([u8; 4], u32, &str)] = &[
    ([169, 254, 169, 254], 32, METADATA),
    ([0, 0, 0, 0], 8, "an unspecified (\"this network\") address"),
    ([10, 0, 0, 0], 8, "a private address"),
    ([172, 16, 0, 0], 12, "a private address"),
    ([192, 168, 0, 0], 16, "a private address"),
    ([100, 64, 0, 0], 10, "a carrier-grade NAT (shared) address"),
    ([127, 0, 0, 0], 8, "a loopback address"),
    ([169, 254, 0, 0], 16, "a link-local address"),
    ([192, 0, 0, 0], 24, "an IETF protocol assignment address"),
    ([192, 0, 2, 0], 24, "a documentation address"),
    ([198, 51, 100, 0], 24, "a documentation address"),
    ([203, 0, 113, 0], 24, "a documentation address"),
    ([198, 18, 0, 0], 15, "a benchmarking address"),
    ([192, 88, 99, 0], 24, "a 6to4 relay anycast address"),
    ([224, 0, 0, 0], 4, "a multicast address"),
    ([255, 255, 255, 255], 32, "the broadcast address"),
    ([240, 0, 0, 0], 4, "a reserved address"),
];

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    V4_REFUSED.iter().find(|(net, len, _)| in_v4(ip, *net, *len)).map(|(_, _, why)| *why)
}

const V6_REFUSED: &[([u16; 8], u32, &str)] = &[
    ([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254], 128, METADATA),
    ([0, 0, 0, 0, 0, 0, 0, 0], 128, "an unspecified address"),
    ([0, 0, 0, 0, 0, 0, 0, 1], 128, "a loopback address"),
    ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, "a local-use NAT64 address"),
    ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "a discard-only address"),
    ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "a Teredo address"),
    ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "a documentation address"),
    ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, "an IETF protocol assignment address"),
    ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "a documentation address"),
    ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "a private (unique local) address"),
    ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "a link-local address"),
    ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "a site-local address"),
    ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "a multicast address"),
];

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(why) =
        V6_REFUSED.iter().find(|(net, len, _)| in_v6(ip, *net, *len)).map(|(_, _, why)| *why)
    {
        return Some(why);
    }
    let bits = u128::from(ip);
    // IPv4-mapped ::ffff:a.b.c.d: the socket layer connects to a.b.c.d itself.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_reason(v4);
    }
    // IPv4-compatible ::a.b.c.d (deprecated, never routed): refused whatever it embeds.
    if in_v6(ip, [0; 8], 96) {
        return Some(
            v4_reason(Ipv4Addr::from(bits as u32)).unwrap_or("an IPv4-compatible address"),
        );
    }
    // NAT64 64:ff9b::a.b.c.d reaches a.b.c.d through the translator.
    if in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        return v4_reason(Ipv4Addr::from(bits as u32));
    }
    // 6to4 2002:AABB:CCDD::/48 reaches AA.BB.CC.DD through a relay.
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        return v4_reason(Ipv4Addr::from((bits >> 80) as u32));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn why(s: &str) -> Option<&'static str> {
        refusal_reason(s.parse().expect("an address"))
    }

    /// Asserts that each address is refused, for its reason.
    fn assert_refused(cases: &[(&str, &str)]) {
        for &(ip, reason) in cases {
            assert_eq!(why(ip), Some(reason), "{ip}");
        }
    }

    /// Asserts that each address is let through.
    fn assert_accepted(ips: &[&str]) {
        for ip in ips {
            assert_eq!(why(ip), None, "{ip}");
        }
    }

    #[test]
    fn refuses_internal_ipv4() {
        assert_refused(&[
            ("127.0.0.1", "a loopback address"),
            ("127.255.1.2", "a loopback address"),
            ("10.0.0.1", "a private address"),
            ("172.16.0.1", "a private address"),
            ("172.31.255.255", "a private address"),
            ("192.168.1.1", "a private address"),
            ("169.254.169.254", METADATA),
            ("169.254.1.1", "a link-local address"),
            ("100.64.0.1", "a carrier-grade NAT (shared) address"),
            ("100.127.255.255", "a carrier-grade NAT (shared) address"),
            ("0.0.0.0", "an unspecified (\"this network\") address"),
            ("224.0.0.1", "a multicast address"),
            ("239.255.255.250", "a multicast address"),
            ("255.255.255.255", "the broadcast address"),
            ("240.0.0.1", "a reserved address"),
            ("192.0.2.1", "a documentation address"),
            ("198.51.100.7", "a documentation address"),
            ("203.0.113.9", "a documentation address"),
            ("198.18.0.1", "a benchmarking address"),
            ("192.0.0.170", "an IETF protocol assignment address"),
        ]);
    }

    #[test]
    fn accepts_public_ipv4_next_to_refused_ranges() {
        assert_accepted(&[
            "8.8.8.8",
            "1.1.1.1",
            "172.15.255.255",
            "172.32.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "169.253.255.255",
            "11.0.0.0",
            "9.255.255.255",
            "223.255.255.255",
            "192.169.0.1",
        ]);
    }

    #[test]
    fn refuses_internal_ipv6_and_embedded_ipv4() {
        assert_refused(&[
            ("::1", "a loopback address"),
            ("::", "an unspecified address"),
            ("fd00:ec2::254", METADATA),
            ("fc00::1", "a private (unique local) address"),
            ("fdff::1", "a private (unique local) address"),
            ("fe80::1", "a link-local address"),
            ("febf::1", "a link-local address"),
            ("fec0::1", "a site-local address"),
            ("ff02::1", "a multicast address"),
            ("2001:db8::1", "a documentation address"),
            ("2001:0::1", "a Teredo address"),
            ("100::1", "a discard-only address"),
            ("::ffff:127.0.0.1", "a loopback address"),
            ("::ffff:10.1.2.3", "a private address"),
            ("::ffff:169.254.169.254", METADATA),
            ("::ffff:0.0.0.0", "an unspecified (\"this network\") address"),
            ("::127.0.0.1", "a loopback address"),
            ("::8.8.8.8", "an IPv4-compatible address"),
            ("64:ff9b::10.0.0.1", "a private address"),
            ("64:ff9b::7f00:1", "a loopback address"),
            ("64:ff9b:1::1", "a local-use NAT64 address"),
            ("2002:7f00:1::", "a loopback address"),
            ("2002:a9fe:a9fe::1", METADATA),
        ]);
    }

    #[test]
    fn accepts_public_ipv6() {
        assert_accepted(&[
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ]);
    }

    #[test]
    fn allow_list_overrides_refusals_only_inside_its_networks() {
        let allow: Vec<IpNet> =
            vec!["127.0.0.1/32".parse().expect("net"), "fd12::/16".parse().expect("net")];
        let check = |s: &str| refusal_with_allow(s.parse().expect("an address"), &allow);
        assert_eq!(check("127.0.0.1"), None);
        assert_eq!(check("::ffff:127.0.0.1"), None, "mapped form of an allowed address");
        assert_eq!(check("fd12::5"), None);
        assert_eq!(check("127.0.0.2"), Some("a loopback address"));
        assert_eq!(check("::1"), Some("a loopback address"));
        assert_eq!(check("169.254.169.254"), Some(METADATA));
        assert_eq!(check("8.8.8.8"), None);
    }
}
