//! Restoring a client from what a driver kept on disk: strings and addresses.

use super::*;

#[test]
fn restored_strings_are_in_the_room_but_not_printed_again() {
    let mut h = Harness::new();
    assert!(h.state.restore(b"said before the restart"));
    assert!(h.state.restore(b"and this too"));
    assert!(!h.state.restore(b"and this too"), "a string is kept once");
    assert!(!h.state.restore(b"bad\x07line"), "not a chat string");
    let out = h.input(Input::Start { contact: None });
    assert!(
        !out.iter().any(|o| matches!(o, Output::Print(_))),
        "{out:?}"
    );
    assert_eq!(h.state.messages().count(), 2);
    // A new string is printed, at the next index.
    let out = h.input(Input::LineTyped(b"after the restart"));
    assert_eq!(out, vec![print(2)]);
    let again = h
        .state
        .handle_input(h.now, Input::LineTyped(b"said before the restart"));
    assert_eq!(again, Err(InputError::AlreadySaid));
}

#[test]
fn a_restored_client_sends_only_what_the_other_lacks() {
    // Side 0 restarts holding the shared history from disk; side 1 kept running and learned
    // a few more strings meanwhile.
    let shared = strings("shared", 5_000);
    let missed = strings("missed", 10);
    let mut pair = Harness::pair(
        Config::default(),
        [&[], &[&shared[..], &missed[..]].concat()],
    );
    for s in &shared {
        assert!(pair.state.restore(s.as_bytes()));
    }
    pair.link();
    let printed = pair.drive(usize::MAX);
    let mut got = printed[0].clone();
    got.sort();
    let mut want = missed.clone();
    want.sort();
    assert_eq!(got, want, "only what it missed is printed");
    assert!(printed[1].is_empty());
    assert_eq!(pair.side(1).stats().frames_sent, missed.len() as u64);
    assert!(
        pair.bytes.iter().all(|&b| b < 5_000),
        "{:?} bytes for 10 missed strings",
        pair.bytes
    );
}

#[test]
fn kept_addresses_are_dialed_at_start_and_kept_again() {
    let config = Config {
        known: vec![addr(7), addr(8)],
        ..Config::default()
    };
    let mut h = Harness::with(config);
    assert!(h.state.addrs_to_keep().is_empty(), "not known before Start");
    let out = h.input(Input::Start { contact: None });
    let mut dialed: Vec<SocketAddr> = out
        .iter()
        .filter_map(|o| match o {
            Output::Dial(a) => Some(*a),
            _ => None,
        })
        .collect();
    dialed.sort();
    assert_eq!(dialed, vec![addr(7), addr(8)]);
    let mut kept = h.state.addrs_to_keep();
    kept.sort();
    assert_eq!(kept, vec![addr(7), addr(8)]);
}

#[test]
fn a_client_whose_kept_addresses_all_fail_says_it_is_alone() {
    let config = Config {
        known: vec![addr(7)],
        ..Config::default()
    };
    let mut h = Harness::with(config);
    h.input(Input::Start { contact: None });
    h.said();
    h.input(Input::DialFailed(addr(7)));
    let said = h.said();
    assert!(
        said.iter().any(|s| s.contains("no links")),
        "the user hears it: {said:?}"
    );
}
