//! What the user is told about links (`src/herald.rs`), through [`FloodState`].

use super::*;
use crate::herald::{SHOWN_MAX, STALE_FOR, WINDOW};
use crate::mesh::MeshConfig;

/// The seed of client X's key: peers A and B are X unless a test says otherwise.
const X_SEED: u64 = 7;
const ALONE: &str = "no links to the room; still trying the addresses known";

fn at(ip: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, ip], port))
}

fn bye(reason: ByeReason, addrs: Vec<SocketAddr>) -> Vec<u8> {
    let mut bytes = Vec::new();
    Frame::Bye { reason, addrs }.encode(&mut bytes);
    bytes
}

/// A client keeping `links` links that takes many connections from one address.
fn client(links: usize) -> Harness {
    let mut h = Harness::with(Config {
        mesh: MeshConfig {
            max_per_ip: 64,
            ..MeshConfig::with_links(links)
        },
        ..Config::default()
    });
    h.peer_seed(A, X_SEED);
    h.peer_seed(B, X_SEED);
    h
}

/// The addresses dialed among `outputs`.
fn dials(outputs: &[Output]) -> Vec<SocketAddr> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Dial(a) => Some(*a),
            _ => None,
        })
        .collect()
}

/// Joined through `x`: dialed, and its Hello read.
fn joined_through(h: &mut Harness, x: SocketAddr) {
    h.input_written(Input::Start { contact: Some(x) });
    h.input_written(Input::Dialed { peer: A, addr: x });
    h.input_written(Input::Received(A, &hello_bytes(client_of(X_SEED), false)));
    assert_eq!(h.said(), [format!("connected to {x}")]);
    assert!(!h.state.is_joining());
}

/// Joined through `x` (connection A) while `x` dialed us (B, not yet greeted); `x` closes A
/// as a duplicate of B, which says nothing.
fn duplicate_closed_before_its_twin_greets(h: &mut Harness, x: SocketAddr) {
    joined_through(h, x);
    h.input_written(Input::Accepted {
        peer: B,
        remote: at(1, 50_000),
    });
    h.input_written(Input::Received(A, &bye(ByeReason::Duplicate, vec![])));
    assert_eq!(h.said(), Vec::<String>::new());
}

/// The race behind contradictory notices: we dialed X (A) while X dialed us (B). X keeps
/// B and closes A as a duplicate, and its Bye on A is read before its Hello on B. The user
/// was told "connected to X" once; nothing changed for them, so nothing more is said: no
/// "no links", no lost link, no second announcement.
#[test]
fn a_duplicate_closed_by_the_peer_before_its_twin_greets_is_not_news() {
    let x = at(1, 4000);
    let mut h = client(1);
    duplicate_closed_before_its_twin_greets(&mut h, x);
    h.input_written(Input::Received(B, &hello_bytes(client_of(X_SEED), false)));
    assert_eq!(h.said(), Vec::<String>::new());
    assert_eq!(h.state.link_count(), 1);
    // Nothing is held back for later either.
    h.advance(STALE_FOR * 2);
    assert_eq!(h.said(), Vec::<String>::new());
}

/// A duplicate whose twin never greets: once nothing is under way, the user hears that the
/// link is gone and then that there are no links, in that order.
#[test]
fn a_duplicate_whose_twin_never_greets_is_said_lost_before_being_alone() {
    let x = at(1, 4000);
    let mut h = client(1);
    duplicate_closed_before_its_twin_greets(&mut h, x);
    h.input_written(Input::Closed(B));
    assert_eq!(
        h.said(),
        [
            "127.0.0.1:50000: connection closed before the greeting".to_string(),
            format!("{x}: connection closed"),
            ALONE.to_string(),
        ]
    );
}

/// The whole story of losing the last link and coming back: one line for the loss, one
/// for being alone (the address may not be dialed again at once), nothing while dials
/// fail, and one line when a link is back, which says so.
#[test]
fn losing_the_last_link_and_coming_back_tells_one_story() {
    let x = at(1, 4000);
    let mut h = client(1);
    joined_through(&mut h, x);
    h.input_written(Input::Closed(A));
    assert_eq!(
        h.said(),
        [format!("{x}: connection closed"), ALONE.to_string()]
    );
    // The mesh dials the address again once its backoff allows; the dial fails.
    let redial = |h: &mut Harness| {
        for _ in 0..1200 {
            let out = h.advance(Duration::from_millis(100));
            assert_eq!(h.said(), Vec::<String>::new());
            if !dials(&out).is_empty() {
                return dials(&out);
            }
        }
        panic!("no dial in 120 s");
    };
    assert_eq!(redial(&mut h), [x]);
    h.input_written(Input::DialFailed(x));
    assert_eq!(h.said(), Vec::<String>::new());
    assert_eq!(redial(&mut h), [x]);
    h.input_written(Input::Dialed { peer: B, addr: x });
    h.input_written(Input::Received(B, &hello_bytes(client_of(X_SEED), false)));
    assert_eq!(
        h.said(),
        [format!("linked to the room again: connected to {x}")]
    );
}

/// Many clients joining at once: the first [`SHOWN_MAX`] are shown, the rest summed up
/// when the window ends.
#[test]
fn joins_beyond_the_window_s_share_are_summed_up() {
    let mut h = client(10);
    h.input_written(Input::Start { contact: None });
    for i in 0..25u64 {
        let peer = PeerId(10 + i);
        let remote = at(2 + i as u8, 50_000);
        h.input_written(Input::Accepted { peer, remote });
        h.input_written(Input::Received(
            peer,
            &hello_bytes(client_of(default_seed(peer)), false),
        ));
    }
    let said = h.said();
    assert_eq!(said.len(), SHOWN_MAX as usize, "{said:#?}");
    assert!(said.iter().all(|l| l.ends_with(" joined")), "{said:#?}");
    h.advance(WINDOW);
    assert_eq!(h.said(), ["... 5 more connection notices in the last 10 s"]);
}

/// A contact that is not there: one line says so, with why, and joining is over.
#[test]
fn a_contact_that_does_not_answer_is_said_once() {
    let x = at(1, 4000);
    let mut h = client(5);
    h.input_written(Input::Start { contact: Some(x) });
    assert!(h.state.is_joining());
    h.input_written(Input::DialFailed(x));
    assert_eq!(
        h.said(),
        [format!(
            "no floodchat peer at {x} (could not connect); starting a new network"
        )]
    );
    assert!(!h.state.is_joining());
}

/// A contact that greets and says it is full, naming a client nobody answers at: the
/// user hears that the room was full, not that there was no floodchat peer.
#[test]
fn a_full_contact_whose_named_clients_fail_is_said_to_be_full() {
    let x = at(1, 4000);
    let named = at(2, 4000);
    let mut h = client(5);
    h.input_written(Input::Start { contact: Some(x) });
    h.input_written(Input::Dialed { peer: A, addr: x });
    let mut bytes = hello_bytes(client_of(X_SEED), false);
    bytes.extend(bye(ByeReason::Full, vec![named]));
    let out = h.input_written(Input::Received(A, &bytes));
    assert!(
        h.state.is_joining(),
        "the client it named is still to be tried"
    );
    assert_eq!(dials(&out), [named]);
    h.said();
    h.input_written(Input::DialFailed(named));
    assert_eq!(
        h.said(),
        [format!(
            "{x} is full, and no client it named could be reached; starting a new network"
        )]
    );
}

/// Leaving at the end of input waits while the links make progress, and gives up, saying
/// so, on a link that stops answering for the stall timeout.
#[test]
fn leaving_gives_up_on_a_link_that_makes_no_progress() {
    let mut h = client(5);
    h.input_written(Input::Start { contact: None });
    h.input_written(Input::Accepted {
        peer: A,
        remote: at(1, 50_000),
    });
    h.input_written(Input::Received(A, &hello_bytes(client_of(X_SEED), false)));
    h.said();
    // The peer reads what we send but never starts the comparison of what the two hold,
    // which the side that dialed starts: the link never has everything, and nothing moves.
    h.input_written(Input::EndOfInput);
    assert_eq!(h.said(), Vec::<String>::new());
    assert!(!h.state.has_left());
    let stall = h.state.config().stall_timeout;
    let due = h.state.poll_timeout().expect("a deadline to give up");
    assert!(due <= h.now + stall, "{due:?}");
    h.now += stall;
    h.input_written(Input::Timeout);
    let said = h.said();
    assert!(
        said.iter()
            .any(|l| l == "leaving although some links never finished comparing what they hold"),
        "{said:#?}"
    );
    // The link is told Bye; once it closes, the client has left, which needs no notice.
    h.input_written(Input::Closed(A));
    assert_eq!(h.said(), Vec::<String>::new());
    assert!(h.state.has_left());
}

/// With nothing owed, the end of input leaves at once, and nothing is said about it.
#[test]
fn leaving_with_nothing_owed_is_immediate() {
    let mut h = client(5);
    h.input_written(Input::Start { contact: None });
    h.input_written(Input::EndOfInput);
    assert_eq!(h.said(), Vec::<String>::new());
    assert!(h.state.has_left());
}

/// Two rooms that cannot meet: what failed is said once per place, since trying again
/// changes no key. A contact in another room is said once as the join's failure; strangers
/// from one address with a wrong key, once.
#[test]
fn a_room_mismatch_is_said_once_per_place() {
    let mut h = Harness::with(Config {
        room: RoomKey::private(b"ours"),
        ..Config::default()
    });
    h.far_room = Some(RoomKey::private(b"theirs"));
    let x = at(1, 4000);
    let out = h.input_written(Input::Start { contact: Some(x) });
    assert_eq!(dials(&out), [x]);
    h.input_written(Input::Dialed { peer: A, addr: x });
    assert_eq!(
        h.said(),
        [format!(
            "cannot join {x}: wrong room key; starting a new network"
        )]
    );
    // The mesh tries the address again later: the same failure is not news.
    for (i, peer) in [B, PeerId(3)].into_iter().enumerate() {
        h.advance(Duration::from_secs(60));
        h.input_written(Input::Dialed { peer, addr: x });
        assert!(!h.state.is_connected(peer), "attempt {i}");
        let said = h.said();
        assert!(!said.iter().any(|l| l.contains("room key")), "{said:?}");
    }
    // Strangers from one IP, each with a wrong key: one line.
    for i in 0..3 {
        let peer = PeerId(10 + i);
        h.input_written(Input::Accepted {
            peer,
            remote: at(9, 40_000 + i as u16),
        });
        if h.state.is_connected(peer) {
            h.input_written(Input::Closed(peer));
        }
    }
    let said = h.said();
    let turned_away: Vec<_> = said
        .iter()
        .filter(|l| l.contains("wrong room key"))
        .collect();
    assert_eq!(turned_away.len(), 1, "{said:?}");
}
