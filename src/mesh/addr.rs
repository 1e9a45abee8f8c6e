//! Addresses as the mesh's rules see them: one spelling per address, and which may be dialed.
//!
//! An IPv4 address has IPv6 spellings too (`::ffff:127.0.0.1`, mapped; `::127.0.0.1`, the
//! deprecated compatible form), which a dual-stack socket connects to the same host. Every
//! rule (which addresses are dialed, loopback only from loopback, connections per IP, the
//! book's keys) is applied to the [`canonical`] form, so no spelling slips past one.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// `ip` in its one spelling: IPv4 for an IPv4-mapped or IPv4-compatible IPv6 address.
pub(crate) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v4_in(v6).map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// `addr` with its IP in its one spelling.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical_ip(addr.ip()), addr.port())
}

/// The IPv4 address an IPv6 one spells, if any: `::ffff:a.b.c.d`, or `::a.b.c.d` but for
/// `::` and `::1`, which are IPv6's own unspecified and loopback addresses.
fn v4_in(v6: Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    let compatible = s[..6].iter().all(|&x| x == 0) && !v6.is_unspecified() && !v6.is_loopback();
    compatible.then(|| {
        v6.to_ipv4()
            .expect("a compatible address holds an IPv4 one")
    })
}

/// Whether anyone could listen on `addr`: not port 0, not unspecified, multicast, broadcast,
/// nor the 0.0.0.0/8 "this network" range, which Linux connects to this host.
pub(crate) fn can_listen(addr: SocketAddr) -> bool {
    let addr = canonical(addr);
    let ip = addr.ip();
    let this_network = matches!(ip, IpAddr::V4(v4) if v4.octets()[0] == 0);
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    addr.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !this_network && !broadcast
}

/// Whether an address a peer at `source` told us of may be dialed: one where anyone could
/// listen, and a loopback address only from a peer on loopback, so that a stranger cannot
/// make a client dial services of its own machine.
pub(crate) fn dialable(addr: SocketAddr, source: IpAddr) -> bool {
    let ip = canonical_ip(addr.ip());
    can_listen(addr) && (!ip.is_loopback() || canonical_ip(source).is_loopback())
}

/// The address group of `addr`, which one operator is unlikely to hold many of: its /16 for
/// IPv4, its /32 for IPv6. On loopback each IP is a group of its own: on one machine the
/// addresses of 127.0.0.0/8 stand for hosts (the simulator's clients are `127.x.y.z`, a
/// test's swarm binds `127.0.9.x`), and a /16 would put them all in one.
pub(crate) fn group(addr: SocketAddr) -> Group {
    let addr = canonical(addr);
    match addr.ip() {
        ip if ip.is_loopback() => Group::Loopback(ip),
        IpAddr::V4(v4) => {
            let [a, b, _, _] = v4.octets();
            Group::V4([a, b])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            Group::V6([s[0], s[1]])
        }
    }
}

/// An address group ([`group`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Group {
    /// An IPv4 /16.
    V4([u8; 2]),
    /// An IPv6 /32.
    V6([u16; 2]),
    /// One loopback IP.
    Loopback(IpAddr),
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use proptest::prelude::*;

    use super::*;

    /// Every spelling of an IPv4 address: itself, IPv4-mapped, and IPv4-compatible (which
    /// `::` and `::1` are not).
    fn spellings(v4: Ipv4Addr) -> Vec<IpAddr> {
        let mut all = vec![IpAddr::V4(v4), IpAddr::V6(v4.to_ipv6_mapped())];
        if u32::from(v4) > 1 {
            all.push(IpAddr::V6(v4.to_ipv6_compatible()));
        }
        all
    }

    /// IPv4 addresses with the special ones often: loopback, unspecified, this network,
    /// multicast, broadcast.
    fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
        prop_oneof![
            any::<u32>().prop_map(Ipv4Addr::from),
            (0u32..1 << 24).prop_map(|x| Ipv4Addr::from(0x7f00_0000 | x)),
            (0u32..1 << 24).prop_map(Ipv4Addr::from),
            (0u32..1 << 28).prop_map(|x| Ipv4Addr::from(0xe000_0000 | x)),
            Just(Ipv4Addr::BROADCAST),
            Just(Ipv4Addr::UNSPECIFIED),
        ]
    }

    proptest! {
        /// Every rule gives the same answer for every spelling of an address and of its
        /// source.
        #[test]
        fn every_spelling_of_an_address_meets_the_same_rules(
            addr in ipv4(),
            source in ipv4(),
            port in prop_oneof![Just(0u16), any::<u16>()],
        ) {
            let want = dialable(SocketAddr::new(addr.into(), port), source.into());
            for a in spellings(addr) {
                prop_assert_eq!(canonical_ip(a), IpAddr::V4(addr));
                for s in spellings(source) {
                    let got = dialable(SocketAddr::new(a, port), s);
                    prop_assert_eq!(got, want, "{} from {}", a, s);
                }
            }
        }

        /// IPv6 addresses that spell no IPv4 one keep their own spelling.
        #[test]
        fn other_ipv6_addresses_are_their_own(bits in any::<u128>()) {
            let v6 = Ipv6Addr::from(bits | (1 << 100));
            prop_assert_eq!(canonical_ip(IpAddr::V6(v6)), IpAddr::V6(v6));
        }
    }

    #[test]
    fn groups_are_a_slash_16_a_slash_32_or_one_loopback_ip() {
        let g = |s: &str| group(s.parse().unwrap());
        assert_eq!(g("192.0.2.7:1"), g("192.0.200.9:2"));
        assert_ne!(g("192.0.2.7:1"), g("192.1.2.7:1"));
        assert_eq!(g("[::ffff:192.0.2.7]:1"), g("192.0.99.1:1"));
        assert_eq!(g("[2001:db8::1]:1"), g("[2001:db8:ffff::2]:9"));
        assert_ne!(g("[2001:db8::1]:1"), g("[2001:db9::1]:1"));
        assert_eq!(g("127.0.0.1:4000"), g("127.0.0.1:4001"));
        assert_ne!(g("127.0.0.1:4000"), g("127.0.0.2:4000"));
    }

    #[test]
    fn the_spellings_that_slipped_past_are_caught() {
        let stranger: IpAddr = "192.0.2.7".parse().unwrap();
        for bad in [
            "[::ffff:0.0.0.0]:4000",
            "[::ffff:127.0.0.1]:4000",
            "[::ffff:224.0.0.1]:4000",
            "[::ffff:255.255.255.255]:4000",
            "[::127.0.0.1]:4000",
            "[::ffff:0.1.2.3]:4000",
        ] {
            let addr: SocketAddr = bad.parse().unwrap();
            assert!(!dialable(addr, stranger), "{bad}");
        }
        let loopback: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(dialable("127.0.0.1:4000".parse().unwrap(), loopback));
        assert!(dialable(
            "[::1]:4000".parse().unwrap(),
            "::1".parse().unwrap()
        ));
        assert!(!dialable("[::1]:4000".parse().unwrap(), stranger));
        assert!(dialable("[2001:db8::1]:4000".parse().unwrap(), stranger));
    }
}
