//! Each mesh rule, with a clock the test moves.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;
use addr::group;

fn addr(a: u8, b: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, a, b)), port)
}

/// One mesh, a clock, and everything it said.
struct T {
    mesh: Mesh,
    now: Instant,
    next_peer: u64,
}

impl T {
    fn new(config: MeshConfig) -> Self {
        let now = Instant::now();
        Self {
            mesh: Mesh::new(config, ClientId(100), 7, now),
            now,
            next_peer: 0,
        }
    }

    fn input(&mut self, input: MeshInput<'_>) -> Vec<MeshOutput> {
        self.mesh.handle(self.now, input);
        self.mesh.check_invariants();
        std::iter::from_fn(|| self.mesh.poll()).collect()
    }

    fn advance(&mut self, d: Duration) -> Vec<MeshOutput> {
        let end = self.now + d;
        let mut out = Vec::new();
        while let Some(t) = self.mesh.poll_timeout().filter(|&t| t <= end) {
            self.now = self.now.max(t);
            out.extend(self.input(MeshInput::Timeout));
        }
        self.now = end;
        out
    }

    fn peer(&mut self) -> PeerId {
        self.next_peer += 1;
        PeerId(self.next_peer)
    }

    /// An inbound connection from `remote` that says Hello as client `id`.
    fn inbound_link(&mut self, remote: SocketAddr, id: u64) -> (PeerId, Vec<MeshOutput>) {
        let peer = self.peer();
        let mut out = self.input(MeshInput::Accepted { peer, remote });
        out.extend(self.input(MeshInput::Hello {
            peer,
            id: ClientId(id),
            listen_port: 7000,
            alone: false,
        }));
        (peer, out)
    }

    /// An inbound connection from `remote` that says Hello as client `id` and that it does
    /// not listen.
    fn inbound_client(&mut self, remote: SocketAddr, id: u64) -> PeerId {
        let peer = self.peer();
        self.input(MeshInput::Accepted { peer, remote });
        self.input(MeshInput::Hello {
            peer,
            id: ClientId(id),
            listen_port: 0,
            alone: false,
        });
        peer
    }

    /// A connection we dialed to `at` (asked for or not) that says Hello as client `id`: the
    /// only way an address becomes verified.
    fn outbound_link(&mut self, at: SocketAddr, id: u64) -> (PeerId, Vec<MeshOutput>) {
        let peer = self.peer();
        let mut out = self.input(MeshInput::Dialed { peer, addr: at });
        out.extend(self.input(MeshInput::Hello {
            peer,
            id: ClientId(id),
            listen_port: at.port(),
            alone: false,
        }));
        (peer, out)
    }
}

fn dials(out: &[MeshOutput]) -> Vec<SocketAddr> {
    out.iter()
        .filter_map(|o| match o {
            MeshOutput::Dial(a) => Some(*a),
            _ => None,
        })
        .collect()
}

fn closes(out: &[MeshOutput]) -> Vec<(PeerId, Option<ByeReason>, CloseWhy)> {
    out.iter()
        .filter_map(|o| match o {
            MeshOutput::Close { peer, bye, why } => Some((*peer, bye.as_ref().map(|b| b.0), *why)),
            _ => None,
        })
        .collect()
}

#[test]
fn the_contact_is_dialed_at_once_and_a_link_gets_addresses() {
    let mut t = T::new(MeshConfig::default());
    let contact = addr(0, 1, 7000);
    let out = t.input(MeshInput::Start {
        contact: Some(contact),
    });
    assert_eq!(dials(&out), [contact]);
    let peer = t.peer();
    t.input(MeshInput::Dialed {
        peer,
        addr: contact,
    });
    let out = t.input(MeshInput::Hello {
        peer,
        id: ClientId(5),
        listen_port: 7000,
        alone: false,
    });
    assert!(out.contains(&MeshOutput::LinkUp {
        peer,
        id: ClientId(5)
    }));
    assert_eq!(t.mesh.links(), 1);
    assert!(t.mesh.is_verified(contact));
    // It tells us about others: untested hints, but from a peer we reached at its own
    // address, so they are tested several at once, up to the target of 4 links.
    let learned: Vec<_> = (2..12).map(|i| addr(0, i, 7000)).collect();
    let out = t.input(MeshInput::Addrs {
        peer,
        addrs: &learned,
    });
    assert_eq!(dials(&out).len(), 3, "{out:?}");
    assert_eq!(t.mesh.pending_dials(), 3);
}

#[test]
fn an_inbound_newcomer_is_sent_addresses_and_announced_to_other_links() {
    let mut t = T::new(MeshConfig::default());
    t.input(MeshInput::Start { contact: None });
    let (a, _) = t.outbound_link(addr(0, 1, 7000), 1);
    let (b, out) = t.inbound_link(addr(0, 2, 50_001), 2);
    // The newcomer hears of the first link's address; the first link of the newcomer's, as
    // a hint: the claim is not stored here.
    assert!(out.contains(&MeshOutput::SendAddrs {
        peer: b,
        addrs: vec![addr(0, 1, 7000)]
    }));
    assert!(out.contains(&MeshOutput::SendAddrs {
        peer: a,
        addrs: vec![addr(0, 2, 7000)]
    }));
    assert!(!t.mesh.is_verified(addr(0, 2, 7000)));
}

#[test]
fn self_connection_is_closed_and_never_dialed_again() {
    let mut t = T::new(MeshConfig::default());
    let me = addr(0, 9, 7000);
    t.input(MeshInput::Start { contact: Some(me) });
    let peer = t.peer();
    t.input(MeshInput::Dialed { peer, addr: me });
    let out = t.input(MeshInput::Hello {
        peer,
        id: ClientId(100),
        listen_port: 7000,
        alone: true,
    });
    assert_eq!(
        closes(&out),
        [(
            peer,
            Some(ByeReason::SelfConnection),
            CloseWhy::SelfConnection
        )]
    );
    assert!(!t.mesh.knows(me));
    // A peer telling us our own address does not make us dial it.
    let (p, _) = t.inbound_link(addr(0, 1, 50_000), 1);
    let out = t.input(MeshInput::Addrs {
        peer: p,
        addrs: &[me],
    });
    assert!(dials(&out).is_empty());
    assert!(!t.mesh.knows(me));
}

#[test]
fn both_sides_keep_the_connection_dialed_by_the_smaller_id() {
    // Two meshes, ids 100 and 200, dial each other at the same time.
    let now = Instant::now();
    let (a_addr, b_addr) = (addr(0, 1, 7000), addr(0, 2, 7000));
    let mut a = Mesh::new(MeshConfig::default(), ClientId(100), 1, now);
    let mut b = Mesh::new(MeshConfig::default(), ClientId(200), 2, now);
    let drain = |m: &mut Mesh| std::iter::from_fn(|| m.poll()).collect::<Vec<_>>();
    // Connection X: a dialed b (a's peer 1, b's peer 11). Y: b dialed a (b's 12, a's 2).
    a.handle(
        now,
        MeshInput::Dialed {
            peer: PeerId(1),
            addr: b_addr,
        },
    );
    b.handle(
        now,
        MeshInput::Accepted {
            peer: PeerId(11),
            remote: addr(0, 1, 50_000),
        },
    );
    b.handle(
        now,
        MeshInput::Dialed {
            peer: PeerId(12),
            addr: a_addr,
        },
    );
    a.handle(
        now,
        MeshInput::Accepted {
            peer: PeerId(2),
            remote: addr(0, 2, 50_000),
        },
    );
    let hello = |peer, id| MeshInput::Hello {
        peer,
        id: ClientId(id),
        listen_port: 7000,
        alone: false,
    };
    // Opposite orders of arrival on the two sides.
    a.handle(now, hello(PeerId(2), 200));
    a.handle(now, hello(PeerId(1), 200));
    b.handle(now, hello(PeerId(11), 100));
    b.handle(now, hello(PeerId(12), 100));
    let (oa, ob) = (drain(&mut a), drain(&mut b));
    assert_eq!(
        closes(&oa),
        [(PeerId(2), Some(ByeReason::Duplicate), CloseWhy::Duplicate)]
    );
    assert_eq!(
        closes(&ob),
        [(PeerId(12), Some(ByeReason::Duplicate), CloseWhy::Duplicate)]
    );
    assert_eq!(a.linked().collect::<Vec<_>>(), [(PeerId(1), ClientId(200))]);
    assert_eq!(
        b.linked().collect::<Vec<_>>(),
        [(PeerId(11), ClientId(100))]
    );
}

#[test]
fn a_client_that_takes_no_inbound_link_refuses_politely_with_addresses() {
    let config = MeshConfig {
        max_inbound: 0,
        ..MeshConfig::default()
    };
    let mut t = T::new(config);
    t.input(MeshInput::Start { contact: None });
    t.outbound_link(addr(0, 1, 7000), 1);
    t.outbound_link(addr(0, 2, 7000), 2);
    let (p, out) = t.inbound_link(addr(0, 3, 50_000), 3);
    let close = out
        .iter()
        .find_map(|o| match o {
            MeshOutput::Close {
                peer,
                bye: Some((ByeReason::Full, addrs)),
                why: CloseWhy::Full,
            } if *peer == p => Some(addrs.clone()),
            _ => None,
        })
        .expect("Bye Full");
    assert_eq!(close.len(), 2, "addresses of the two links: {close:?}");
    assert!(!close.contains(&addr(0, 3, 7000)));
    assert_eq!(t.mesh.inbound_links(), 0);
}

#[test]
fn admission_limits_per_ip_unproven_and_total_evict_the_oldest_unproven() {
    let config = MeshConfig {
        max_per_ip: 2,
        max_unproven: 3,
        max_connections: 5,
        ..MeshConfig::default()
    };
    let mut t = T::new(config);
    t.input(MeshInput::Start { contact: None });
    let attacker = |port| addr(9, 9, port);
    let p1 = t.peer();
    t.input(MeshInput::Accepted {
        peer: p1,
        remote: attacker(1),
    });
    let p2 = t.peer();
    t.input(MeshInput::Accepted {
        peer: p2,
        remote: attacker(2),
    });
    let p3 = t.peer();
    let out = t.input(MeshInput::Accepted {
        peer: p3,
        remote: attacker(3),
    });
    assert_eq!(
        closes(&out),
        [(p3, None, CloseWhy::TooManyFromIp(attacker(3).ip()))]
    );
    assert!(out.contains(&MeshOutput::Notice(MeshNotice::Refused {
        count: 1,
        over: Duration::ZERO
    })));
    // A third unproven from elsewhere fits; a fourth evicts the oldest (p1).
    let q = t.peer();
    t.now += Duration::from_millis(1);
    t.input(MeshInput::Accepted {
        peer: q,
        remote: addr(0, 1, 1),
    });
    let newcomer = t.peer();
    let out = t.input(MeshInput::Accepted {
        peer: newcomer,
        remote: addr(0, 2, 1),
    });
    assert_eq!(closes(&out), [(p1, None, CloseWhy::Evicted)]);
    assert_eq!(t.mesh.unproven(), 3);
    // The newcomer says Hello and is a link.
    let out = t.input(MeshInput::Hello {
        peer: newcomer,
        id: ClientId(1),
        listen_port: 7000,
        alone: true,
    });
    assert!(out.contains(&MeshOutput::LinkUp {
        peer: newcomer,
        id: ClientId(1)
    }));
    // Unproven connections that stay silent are the parent's to time out: the mesh keeps
    // them, and frees their slots when told they closed.
    let out = t.advance(Duration::from_secs(6));
    assert_eq!(closes(&out), []);
    assert_eq!(t.mesh.unproven(), 2);
    t.input(MeshInput::Closed { peer: p2 });
    t.input(MeshInput::Closed { peer: q });
    assert_eq!(t.mesh.connections(), 1);
}

#[test]
fn refusals_under_a_storm_are_summarised() {
    let config = MeshConfig {
        max_unproven: 0,
        ..MeshConfig::default()
    };
    let mut t = T::new(config);
    t.input(MeshInput::Start { contact: None });
    let mut notices = Vec::new();
    for i in 0..1000u32 {
        let peer = t.peer();
        t.now += Duration::from_millis(10);
        let mut out = t.advance(Duration::ZERO);
        out.extend(t.input(MeshInput::Accepted {
            peer,
            remote: addr((i >> 8) as u8, i as u8, 1),
        }));
        notices.extend(
            out.into_iter()
                .filter(|o| matches!(o, MeshOutput::Notice(_))),
        );
    }
    // 10 s of refusals: one at once, then one summary per 10 s.
    assert_eq!(notices.len(), 1, "{notices:?}");
    let out = t.advance(Duration::from_secs(10));
    assert_eq!(
        out,
        [MeshOutput::Notice(MeshNotice::Refused {
            count: 999,
            over: Duration::from_secs(10)
        })]
    );
    assert_eq!(t.mesh.refused_total(), 1000);
}

#[test]
fn learned_addresses_are_capped_per_message_and_per_source_and_never_evict_verified() {
    let config = MeshConfig {
        book_size: 40,
        per_source: 20,
        links: 0,
        ..MeshConfig::default()
    };
    let mut t = T::new(config);
    t.input(MeshInput::Start { contact: None });
    let mut verified = Vec::new();
    for i in 1..=10u8 {
        t.outbound_link(addr(1, i, 7000), u64::from(i));
        verified.push(addr(1, i, 7000));
    }
    let (spammer, _) = t.inbound_link(addr(2, 1, 50_000), 99);
    let junk: Vec<_> = (0..40u16).map(|p| addr(3, 3, 1000 + p)).collect();
    t.input(MeshInput::Addrs {
        peer: spammer,
        addrs: &junk,
    });
    assert_eq!(
        t.mesh.learned_from(addr(2, 1, 0).ip()),
        MAX_ADDRS + 1,
        "per message, and its own claim"
    );
    t.input(MeshInput::Addrs {
        peer: spammer,
        addrs: &junk[16..],
    });
    assert_eq!(t.mesh.learned_from(addr(2, 1, 0).ip()), 20, "per source");
    // A second source fills the book; a third evicts learned entries, never verified ones.
    for src in 2..=4u8 {
        let (p, _) = t.inbound_link(addr(4, src, 50_000), 200 + u64::from(src));
        for round in 0..2u16 {
            let more: Vec<_> = (0..16u16)
                .map(|k| addr(5, src, 2000 + round * 16 + k))
                .collect();
            t.input(MeshInput::Addrs {
                peer: p,
                addrs: &more,
            });
        }
    }
    assert_eq!(t.mesh.book_len(), 40);
    assert!(verified.iter().all(|&a| t.mesh.is_verified(a)));
    // Junk that is not an address is ignored.
    let bad = [
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 1),
        SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0),
    ];
    let before = t.mesh.book_len();
    t.input(MeshInput::Addrs {
        peer: spammer,
        addrs: &bad,
    });
    assert_eq!(t.mesh.book_len(), before);
}

#[test]
fn learned_addresses_are_tested_one_at_a_time_and_forgotten_when_not_floodchat() {
    let config = MeshConfig {
        links: 50,
        ..MeshConfig::default()
    };
    let mut t = T::new(config.clone());
    t.input(MeshInput::Start { contact: None });
    let p = t.inbound_client(addr(0, 1, 50_000), 1);
    let victim: Vec<_> = (0..16u16).map(|k| addr(6, 6, 80 + k)).collect();
    let mut all = t.input(MeshInput::Addrs {
        peer: p,
        addrs: &victim,
    });
    assert_eq!(dials(&all).len(), 1, "one hint of a source at a time");
    // Every dial fails or answers something that is not floodchat.
    let mut dialed = 0;
    let mut tried = Vec::new();
    for _ in 0..400 {
        for a in dials(&all) {
            dialed += 1;
            tried.push(a);
            if dialed % 2 == 0 {
                t.input(MeshInput::DialFailed { addr: a });
            } else {
                let peer = t.peer();
                t.input(MeshInput::Dialed { peer, addr: a });
                t.input(MeshInput::Closed { peer });
            }
            assert!(!t.mesh.knows(a), "forgotten");
        }
        all = t.advance(Duration::from_millis(100));
    }
    // The first answered as something else: the source waits a minute before its next hint
    // is tested, and that address is not learned again.
    assert_eq!(dialed, 1);
    let out = t.input(MeshInput::Addrs {
        peer: p,
        addrs: &victim,
    });
    assert!(dials(&out).is_empty());
    assert!(!t.mesh.knows(tried[0]));
    assert!(victim.iter().any(|&a| t.mesh.knows(a)));
}

/// Issue 16's third party: a peer names a new address of something that is not floodchat
/// every second, each at its own IP, for ten minutes. Each is tested only when the source's
/// pace allows: after the first that answered as something else, 60 s, then 120, 240, ...
#[test]
fn a_source_of_hints_that_are_not_floodchat_is_paced_and_its_hints_are_never_passed_on() {
    let mut t = T::new(MeshConfig::with_links(50));
    t.input(MeshInput::Start { contact: None });
    // The attacker gives no address of its own (a claim would take its one test at a time);
    // the honest peer is one we dialed, so its IP is verified and its hints vouched for.
    let attacker = t.inbound_client(addr(0, 1, 50_000), 1);
    let (honest, _) = t.outbound_link(addr(0, 2, 7000), 2);
    let mut at = Vec::new();
    let start = t.now;
    let mut out = Vec::new();
    for s in 0..600u32 {
        let third = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x7f10_0000 + s)), 80);
        out.extend(t.input(MeshInput::Addrs {
            peer: attacker,
            addrs: &[third],
        }));
        for o in &out {
            match o {
                MeshOutput::Dial(a) => {
                    at.push(t.now - start);
                    let peer = t.peer();
                    t.input(MeshInput::Dialed { peer, addr: *a });
                    t.input(MeshInput::Closed { peer });
                }
                MeshOutput::SendAddrs { addrs, .. } => {
                    assert!(addrs.iter().all(|a| a.port() != 80), "passed on: {addrs:?}");
                }
                _ => {}
            }
        }
        out = t.advance(Duration::from_secs(1));
    }
    let secs: Vec<u64> = at.iter().map(|d| d.as_secs()).collect();
    assert_eq!(secs, [0, 60, 180, 420], "dials of third parties");
    // The honest peer's hints are not held back by another source's pace.
    let out = t.input(MeshInput::Addrs {
        peer: honest,
        addrs: &[addr(0, 3, 7000)],
    });
    assert_eq!(dials(&out), [addr(0, 3, 7000)]);
    // A hint told again after it failed is not learned again within `shun_for`.
    let first = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x7f10_0000)), 80);
    t.input(MeshInput::Addrs {
        peer: honest,
        addrs: &[first],
    });
    assert!(!t.mesh.knows(first));
}

#[test]
fn untested_hints_are_forgotten_quickly_and_passed_on_only_once_they_answered() {
    let mut t = T::new(MeshConfig::with_links(50));
    t.input(MeshInput::Start { contact: None });
    let p = t.inbound_client(addr(0, 1, 50_000), 1);
    // A peer we dialed: its address is verified, and stays.
    let (q, _) = t.outbound_link(addr(0, 2, 7000), 2);
    let hints: Vec<_> = (0..8).map(|i| addr(1, i, 7000)).collect();
    let out = t.input(MeshInput::Addrs {
        peer: p,
        addrs: &hints,
    });
    let first = dials(&out);
    assert_eq!(first.len(), 1);
    assert_eq!(t.mesh.book_len(), 1 + 8);
    // The dial hangs (no answer within the hold): the other hints expire meanwhile.
    let d = t.peer();
    t.input(MeshInput::Dialed {
        peer: d,
        addr: first[0],
    });
    t.advance(t.mesh.config().hint_ttl);
    assert_eq!(t.mesh.book_len(), 1 + 1, "only the one being tested stays");
    // It answers as floodchat: it may be passed on now, to a newcomer.
    t.input(MeshInput::Answered { peer: d });
    let (_, out) = t.inbound_link(addr(0, 3, 50_000), 3);
    let sent: Vec<SocketAddr> = out
        .iter()
        .filter_map(|o| match o {
            MeshOutput::SendAddrs { addrs, .. } if addrs.len() > 1 => Some(addrs.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(sent.contains(&first[0]), "{sent:?}");
    let _ = q;
}

/// Issue 16: a full client turned away a newcomer with no link, which then stayed alone.
#[test]
fn a_full_client_makes_room_for_a_client_with_no_link_at_a_bounded_rate() {
    let config = MeshConfig::with_links(1);
    let mut t = T::new(config.clone());
    t.input(MeshInput::Start { contact: None });
    let mut held = Vec::new();
    for i in 0..config.max_inbound as u8 {
        held.push(t.inbound_link(addr(9, i, 50_000), 10 + u64::from(i)).0);
    }
    assert_eq!(t.mesh.inbound_links(), config.max_inbound);
    let hello = |t: &mut T, id: u64, alone: bool| {
        let peer = t.peer();
        t.input(MeshInput::Accepted {
            peer,
            remote: addr(1, id as u8, 50_000),
        });
        let out = t.input(MeshInput::Hello {
            peer,
            id: ClientId(id),
            listen_port: 7000,
            alone,
        });
        (peer, out)
    };
    // A newcomer with links is told the client is full, as before.
    let (_, out) = hello(&mut t, 50, false);
    assert_eq!(closes(&out)[0].1, Some(ByeReason::Full));
    // One with none gets a link: the youngest link of a client that had others is shed.
    let (newcomer, out) = hello(&mut t, 51, true);
    assert!(out.contains(&MeshOutput::LinkUp {
        peer: newcomer,
        id: ClientId(51)
    }));
    let shed = closes(&out);
    assert_eq!(
        shed,
        [(
            *held.last().unwrap(),
            Some(ByeReason::Shed),
            CloseWhy::MadeRoom
        )]
    );
    assert_eq!(t.mesh.inbound_links(), config.max_inbound);
    // Others claiming the same are turned away until `make_room_every` has passed: a swarm
    // claiming to be alone sheds at most one link per interval.
    let mut made = 1;
    for k in 0..120u64 {
        let (_, out) = hello(&mut t, 100 + k, true);
        made += closes(&out)
            .iter()
            .filter(|c| c.2 == CloseWhy::MadeRoom)
            .count();
        t.advance(Duration::from_secs(1));
    }
    // At 0, 30, 60 and 90 s.
    assert_eq!(made, 4);
}

/// Clients behind one NAT, or on one machine, share an IP. A client already holding
/// `max_per_ip` inbound links from it refused a newcomer from it unread, so the newcomer, told
/// nothing, started a room of its own (a 10-client room on loopback lost its tenth client
/// this way, one run in about 40). The limit now answers the Hello: a newcomer with no link
/// gets a slot made from that IP, any other is turned away with addresses to try.
#[test]
fn clients_sharing_an_ip_past_its_limit_are_told_where_else_to_go_or_given_a_slot() {
    let config = MeshConfig {
        max_per_ip: 2,
        ..MeshConfig::default()
    };
    let mut t = T::new(config);
    t.input(MeshInput::Start { contact: None });
    t.outbound_link(addr(1, 1, 7000), 1);
    let nat = |port| addr(7, 7, port);
    let (first, _) = t.inbound_link(nat(1), 11);
    t.now += Duration::from_millis(1);
    let (second, _) = t.inbound_link(nat(2), 12);
    let hello = |t: &mut T, port: u16, id: u64, alone: bool| {
        let peer = t.peer();
        let mut out = t.input(MeshInput::Accepted {
            peer,
            remote: nat(port),
        });
        assert_eq!(closes(&out), [], "admitted, to be answered");
        out.extend(t.input(MeshInput::Hello {
            peer,
            id: ClientId(id),
            listen_port: 7000,
            alone,
        }));
        (peer, out)
    };
    // One with links elsewhere is turned away with addresses to try.
    let (turned, out) = hello(&mut t, 3, 13, false);
    assert_eq!(
        closes(&out),
        [(turned, Some(ByeReason::Full), CloseWhy::Full)]
    );
    let named = out
        .iter()
        .any(|o| matches!(o, MeshOutput::Close { bye: Some((_, addrs)), .. } if !addrs.is_empty()));
    assert!(named, "{out:?}");
    // One with none gets the slot of the youngest link from that IP.
    let (newcomer, out) = hello(&mut t, 4, 14, true);
    assert!(out.contains(&MeshOutput::LinkUp {
        peer: newcomer,
        id: ClientId(14)
    }));
    assert_eq!(
        closes(&out),
        [(second, Some(ByeReason::Shed), CloseWhy::MadeRoom)]
    );
    assert!(t.mesh.linked().any(|(p, _)| p == first));
    // Others from elsewhere are not held to that IP's limit.
    let (_, out) = t.inbound_link(addr(8, 8, 1), 15);
    assert_eq!(closes(&out), []);
}

#[test]
fn a_lost_neighbour_is_replaced_and_a_lonely_client_says_so_once_and_retries_with_backoff() {
    let mut t = T::new(MeshConfig::default());
    let contact = addr(0, 1, 7000);
    t.input(MeshInput::Start {
        contact: Some(contact),
    });
    let peer = t.peer();
    t.input(MeshInput::Dialed {
        peer,
        addr: contact,
    });
    t.input(MeshInput::Hello {
        peer,
        id: ClientId(5),
        listen_port: 7000,
        alone: false,
    });
    let out = t.input(MeshInput::Closed { peer });
    // Nothing else known and the contact is backing off: alone, said once.
    assert!(
        out.contains(&MeshOutput::Notice(MeshNotice::Alone)),
        "{out:?}"
    );
    let mut redials = Vec::new();
    let mut notices = 0;
    for _ in 0..600 {
        let out = t.advance(Duration::from_secs(1));
        notices += out
            .iter()
            .filter(|o| matches!(o, MeshOutput::Notice(_)))
            .count();
        for a in dials(&out) {
            redials.push(t.now);
            t.input(MeshInput::DialFailed { addr: a });
        }
    }
    assert_eq!(notices, 0, "alone is said once");
    let gaps: Vec<_> = redials
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs())
        .collect();
    assert!(
        gaps[0] <= 3 && gaps[gaps.len() - 1] >= 44,
        "backoff grows: {gaps:?}"
    );
    assert!(
        gaps.iter().all(|&g| g <= 76),
        "capped at 60 s + jitter: {gaps:?}"
    );
    assert!(!redials.is_empty());
    // A link comes back: rejoined.
    let (_, out) = t.inbound_link(addr(0, 2, 50_000), 6);
    assert!(out.contains(&MeshOutput::Notice(MeshNotice::Rejoined)));
}

#[test]
fn shuffle_sends_addresses_to_a_link_periodically() {
    let mut t = T::new(MeshConfig::default());
    t.input(MeshInput::Start { contact: None });
    let (a, _) = t.outbound_link(addr(0, 1, 7000), 1);
    let (b, _) = t.outbound_link(addr(0, 2, 7000), 2);
    let out = t.advance(Duration::from_secs(40));
    let sent: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            MeshOutput::SendAddrs { peer, addrs } => Some((*peer, addrs.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 1, "{out:?}");
    let (to, addrs) = &sent[0];
    let other = if *to == a {
        addr(0, 2, 7000)
    } else {
        addr(0, 1, 7000)
    };
    assert!(*to == a || *to == b);
    assert_eq!(addrs, &vec![other]);
}

#[test]
fn leaving_says_bye_to_every_link_with_addresses() {
    let mut t = T::new(MeshConfig::default());
    t.input(MeshInput::Start { contact: None });
    let (a, _) = t.inbound_link(addr(0, 1, 50_000), 1);
    let (b, _) = t.inbound_link(addr(0, 2, 50_000), 2);
    let out = t.input(MeshInput::Leave);
    assert_eq!(
        closes(&out),
        [
            (a, Some(ByeReason::Leaving), CloseWhy::Leaving),
            (b, Some(ByeReason::Leaving), CloseWhy::Leaving)
        ]
    );
    assert_eq!(t.mesh.poll_timeout(), None);
}

#[test]
fn bye_reason_codes_round_trip() {
    for code in 0..=255u8 {
        let r = ByeReason::from_code(code);
        assert_eq!(r.code(), code);
        assert_eq!(matches!(r, ByeReason::Other(_)), code == 0 || code > 5);
    }
}

#[test]
fn addresses_nobody_listens_at_and_foreign_loopback_are_never_learned() {
    use std::net::IpAddr;
    let stranger: IpAddr = "203.0.113.9".parse().unwrap();
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    for bad in [
        "0.0.0.0:4000",
        "0.127.0.0:271",
        "224.0.0.1:4000",
        "255.255.255.255:4000",
        "[::]:4000",
        "[ff02::1]:4000",
        "198.51.100.7:0",
    ] {
        let addr = bad.parse().unwrap();
        assert!(!super::dialable(addr, stranger), "{bad} from a stranger");
        assert!(!super::dialable(addr, local), "{bad} from loopback");
    }
    for own_machine in ["127.0.0.1:22", "[::1]:4000"] {
        let addr = own_machine.parse().unwrap();
        assert!(
            !super::dialable(addr, stranger),
            "{own_machine} from a stranger"
        );
        assert!(super::dialable(addr, local), "{own_machine} from loopback");
    }
    assert!(super::dialable(
        "198.51.100.7:4000".parse().unwrap(),
        stranger
    ));
}

/// A stranger (on a dual-stack socket, so its own address is IPv4-mapped) advertises the
/// IPv6 spellings of addresses its IPv4 spellings would not pass: none is learned or dialed,
/// while a real address in a mapped spelling is learned in its IPv4 spelling, once.
#[test]
fn ipv6_spellings_of_ipv4_addresses_meet_the_same_rules() {
    let mut t = T::new(MeshConfig::with_links(8));
    t.input(MeshInput::Start { contact: None });
    let stranger: SocketAddr = "[::ffff:203.0.113.9]:50000".parse().unwrap();
    // A stranger that gives no port of its own, so that its one test at a time is free.
    let peer = t.inbound_client(stranger, 1);
    let spelled: Vec<SocketAddr> = [
        "[::ffff:0.0.0.0]:4000",
        "[::ffff:127.0.0.1]:4000",
        "[::127.0.0.1]:4000",
        "[::ffff:224.0.0.1]:4000",
        "[::ffff:255.255.255.255]:4000",
        "[::ffff:198.51.100.7]:4000",
        "198.51.100.7:4000",
    ]
    .iter()
    .map(|a| a.parse().unwrap())
    .collect();
    let out = t.input(MeshInput::Addrs {
        peer,
        addrs: &spelled,
    });
    let real: SocketAddr = "198.51.100.7:4000".parse().unwrap();
    assert_eq!(dials(&out), [real], "{out:?}");
    assert_eq!(t.mesh.book_len(), 1);
    assert!(t.mesh.knows(real));
}

fn public(a: u8, b: u8, c: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, 1)), port)
}

/// Issue 16, eclipse: fifteen inbound links never push out the outbound anchors, and never
/// stop the client from dialing its outbound quota.
#[test]
fn inbound_pressure_never_displaces_the_outbound_quota() {
    let mut t = T::new(MeshConfig::default());
    t.input(MeshInput::Start { contact: None });
    let quota = t.mesh.outbound_quota();
    assert_eq!(quota, 3, "half the target of 5, rounded up");
    let honest: Vec<PeerId> = (1..=quota as u8)
        .map(|i| t.outbound_link(addr(0, i, 7000), u64::from(i)).0)
        .collect();
    // The swarm takes every inbound slot, and refills each one it loses at once.
    let mut swarm = 100;
    let mut fill = |t: &mut T| {
        while t.mesh.inbound_links() < t.mesh.config().max_inbound {
            swarm += 1;
            t.inbound_link(addr(9, (swarm % 4) as u8, swarm as u16), swarm);
        }
    };
    fill(&mut t);
    for _ in 0..40 {
        let out = t.advance(Duration::from_secs(10));
        for (peer, _, _) in closes(&out) {
            assert!(!honest.contains(&peer), "an anchor was shed: {out:?}");
        }
        fill(&mut t);
    }
    assert_eq!(t.mesh.outbound_links(), quota);
    // An anchor lost: the client dials again although its inbound links are far above the
    // target, and a verified address first, though the book is full of learned ones.
    let (spammer, _) = t.inbound_link(addr(9, 0, 60_000), 9999);
    let junk: Vec<_> = (0..16u16).map(|p| addr(9, 1, 7000 + p)).collect();
    t.input(MeshInput::Addrs {
        peer: spammer,
        addrs: &junk,
    });
    t.mesh.remember(t.now, &[addr(0, 9, 7000)]);
    t.input(MeshInput::Closed { peer: spammer });
    let mut out = t.input(MeshInput::Closed { peer: honest[0] });
    out.extend(t.advance(Duration::from_secs(5)));
    let dialed = dials(&out);
    assert!(!dialed.is_empty(), "{out:?}");
    assert!(
        dialed.contains(&addr(0, 1, 7000)) || dialed.contains(&addr(0, 9, 7000)),
        "a verified address first: {dialed:?}"
    );
}

/// Issue 16, eclipse: quota dials spread over address groups (/16 for IPv4), verified
/// addresses first.
#[test]
fn outbound_dials_prefer_verified_addresses_in_groups_not_yet_used() {
    let mut t = T::new(MeshConfig::default());
    t.input(MeshInput::Start { contact: None });
    // Verified addresses: three in one /16, one in each of two others. Learned: many in a
    // fourth, told by a stranger.
    let verified = [
        public(198, 51, 1, 7000),
        public(198, 51, 2, 7000),
        public(198, 51, 3, 7000),
        public(203, 0, 1, 7000),
        public(192, 0, 1, 7000),
    ];
    // Five inbound links meet the target: only the quota dials.
    let stranger = t.inbound_client(public(100, 64, 0, 50_000), 50);
    for i in 0..4u8 {
        t.inbound_client(public(100, 65 + i, 0, 50_000), 60 + u64::from(i));
    }
    t.mesh.remember(t.now, &verified);
    let learned: Vec<_> = (0..16u16).map(|p| public(100, 64, 9, 7000 + p)).collect();
    let out = t.input(MeshInput::Addrs {
        peer: stranger,
        addrs: &learned,
    });
    let dialed = dials(&out);
    assert_eq!(dialed.len(), 3, "the quota: {out:?}");
    assert!(dialed.iter().all(|a| verified.contains(a)), "{dialed:?}");
    let groups: BTreeSet<_> = dialed.iter().map(|&a| group(a)).collect();
    assert_eq!(groups.len(), 3, "three distinct /16s: {dialed:?}");
}

/// Issue 16, eclipse: a full client makes room for a newcomer by evicting the youngest link
/// of the most crowded group, and never one of the diverse or long-lived it protects.
#[test]
fn a_full_client_evicts_the_crowded_and_young_and_keeps_the_diverse_and_long_lived() {
    let mut t = T::new(MeshConfig::default());
    t.input(MeshInput::Start { contact: None });
    let max = t.mesh.config().max_inbound;
    // Five honest clients, each from its own /16, came first.
    let honest: Vec<PeerId> = (0..5u8)
        .map(|i| {
            t.advance(Duration::from_secs(1));
            t.inbound_link(public(20 + i, 1, 0, 50_000), u64::from(i) + 1)
                .0
        })
        .collect();
    // A swarm from two /16s fills the rest, and keeps coming.
    let mut evicted = Vec::new();
    for k in 0..200u64 {
        let out = t.advance(Duration::from_millis(500));
        evicted.extend(closes(&out).iter().map(|c| c.0));
        let from = public(66, (k % 2) as u8, (k % 200) as u8, 50_000 + k as u16);
        let (newcomer, out) = t.inbound_link(from, 1000 + k);
        assert!(t.mesh.inbound_links() <= max);
        for (peer, bye, why) in closes(&out) {
            assert_ne!(peer, newcomer, "a full client takes the newcomer: {out:?}");
            assert_eq!((bye, why), (Some(ByeReason::Shed), CloseWhy::Rotated));
            evicted.push(peer);
        }
    }
    assert!(evicted.len() >= 185, "{}", evicted.len());
    assert!(
        evicted.iter().all(|p| !honest.contains(p)),
        "an honest link was evicted"
    );
    // A newcomer from a new /16 gets in too, and stays while the swarm churns.
    let (late, _) = t.inbound_link(public(30, 1, 0, 50_000), 77);
    for k in 0..50u64 {
        t.advance(Duration::from_millis(500));
        let from = public(66, (k % 2) as u8, 1, 40_000 + k as u16);
        let (_, out) = t.inbound_link(from, 5000 + k);
        assert!(closes(&out).iter().all(|c| c.0 != late), "{out:?}");
    }
}

/// Issue 16, impostors: a peer at an honest client's IP that claims its listening port does
/// not mark that address busy nor tie it to itself: the honest client is still dialed and
/// linked, and both links stand.
#[test]
fn an_impostor_claiming_an_honest_clients_port_blocks_no_dial_to_it() {
    let mut t = T::new(MeshConfig::default());
    let honest = addr(0, 1, 7000);
    // The impostor connects first, from the honest client's IP, claiming its port.
    t.input(MeshInput::Start { contact: None });
    let impostor = t.peer();
    t.input(MeshInput::Accepted {
        peer: impostor,
        remote: addr(0, 1, 50_000),
    });
    let out = t.input(MeshInput::Hello {
        peer: impostor,
        id: ClientId(66),
        listen_port: honest.port(),
        alone: false,
    });
    assert_eq!(t.mesh.links(), 1);
    assert!(!t.mesh.is_verified(honest), "a claim is never verified");
    // The claim is a hint, never busy: the address is dialed, and the honest client answers.
    assert_eq!(dials(&out), [honest]);
    let (peer, out) = t.outbound_link(honest, 5);
    assert!(out.contains(&MeshOutput::LinkUp {
        peer,
        id: ClientId(5)
    }));
    assert!(closes(&out).is_empty(), "{out:?}");
    assert!(t.mesh.is_verified(honest));
    assert_eq!(t.mesh.links(), 2);
    // The honest client known first (verified, and linked), the impostor comes: nothing
    // of the honest link changes, and when it ends the address is free to dial.
    let impostor2 = t.peer();
    t.input(MeshInput::Accepted {
        peer: impostor2,
        remote: addr(0, 1, 50_001),
    });
    let out = t.input(MeshInput::Hello {
        peer: impostor2,
        id: ClientId(67),
        listen_port: honest.port(),
        alone: false,
    });
    assert!(closes(&out).is_empty(), "{out:?}");
    t.input(MeshInput::Closed { peer });
    let out = t.advance(Duration::from_secs(5));
    assert!(dials(&out).contains(&honest), "{out:?}");
}
