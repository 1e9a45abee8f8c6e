//! The real binary, several processes, real TCP sockets on loopback, both runtimes.
//!
//! Each test checks what a user at the keyboard would: what every client prints.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::process::Command;

use common::{Client, Rt, SecurePeer, Spawn, assert_exactly, fake_server, leave_all, raw_connect};

use Bad::{AfterHello, Altered, Clear, Raw, Sealed};
use Rt::{AsyncStd, Smol};

/// What a bad connection sends.
enum Bad {
    /// Bytes in the clear, where the prologue and the handshake belong.
    Clear(Vec<u8>),
    /// After a handshake, in records: the greeting and the peer's own Hello, then these.
    AfterHello(Vec<u8>),
    /// After a handshake, these frame-stream bytes in records.
    Sealed(Vec<u8>),
    /// After a handshake, these bytes outside any record.
    Raw(Vec<u8>),
    /// After a handshake, a record of these bytes with one bit of its body flipped.
    Altered(Vec<u8>),
}

#[derive(Clone, Copy)]
enum Shape {
    Chain,
    Star,
}

/// Starts one client per runtime in `rts`, each joining the previous (chain) or the first (star).
fn room(shape: Shape, rts: &[Rt]) -> Vec<Client> {
    let mut clients: Vec<Client> = Vec::new();
    for (i, &rt) in rts.iter().enumerate() {
        let mut spawn = Spawn::new(&format!("c{i}"), rt);
        if i > 0 {
            let parent = match shape {
                Shape::Chain => i - 1,
                Shape::Star => 0,
            };
            spawn = spawn.peer(&clients[parent]);
        }
        clients.push(spawn.start());
    }
    clients
}

/// Several clients type, including the same text at two clients; all print exactly the union.
fn everyone_prints_the_union(shape: Shape, rts: &[Rt]) {
    let mut clients = room(shape, rts);
    let n = clients.len();
    let mut typed = Vec::new();
    for (i, c) in clients.iter_mut().enumerate().step_by(2) {
        for k in 0..3 {
            let line = format!("line {k} from c{i}");
            c.say(&line);
            typed.push(line);
        }
    }
    clients[0].say("said twice, printed once");
    clients[n - 1].say("said twice, printed once");
    typed.push("said twice, printed once".into());
    let want: Vec<&str> = typed.iter().map(String::as_str).collect();
    for c in &clients {
        c.wait_printed(&want);
    }
    leave_all(&mut clients, &want);
}

#[test]
fn chain_of_five_on_smol() {
    everyone_prints_the_union(Shape::Chain, &[Smol; 5]);
}

#[test]
fn star_of_five_on_smol() {
    everyone_prints_the_union(Shape::Star, &[Smol; 5]);
}

#[test]
fn chain_of_five_on_async_std() {
    everyone_prints_the_union(Shape::Chain, &[AsyncStd; 5]);
}

#[test]
fn star_of_five_on_async_std() {
    everyone_prints_the_union(Shape::Star, &[AsyncStd; 5]);
}

#[test]
fn mixed_runtimes_in_a_chain() {
    everyone_prints_the_union(Shape::Chain, &[Smol, AsyncStd, Smol, AsyncStd, Smol]);
}

#[test]
fn mixed_runtimes_in_a_star() {
    everyone_prints_the_union(Shape::Star, &[AsyncStd, Smol, AsyncStd, Smol, AsyncStd]);
}

#[test]
fn late_joiner_prints_what_was_said_before_it_joined() {
    let mut a = Spawn::new("a", Smol).start();
    let mut b = Spawn::new("b", AsyncStd).peer(&a).start();
    a.say("before one");
    b.say("before two");
    a.wait_printed(&["before one", "before two"]);
    b.wait_printed(&["before one", "before two"]);
    // The newcomer answers the prompt instead of passing --peer.
    let mut c = Spawn::new("c", Smol).answer(&b.addr()).start();
    c.wait_printed(&["before one", "before two"]);
    c.say("after");
    let want = ["before one", "before two", "after"];
    a.wait_printed(&want);
    b.wait_printed(&want);
    leave_all(&mut [a, b, c], &want);
}

#[test]
fn invalid_and_unreachable_peers_lead_to_a_new_network() {
    let silent = fake_server(std::mem::forget);
    let http = fake_server(|mut s| {
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    });
    let cases = [
        (String::new(), None),
        (
            "not an address".to_string(),
            Some("\"not an address\": not an IP:PORT address or an invite"),
        ),
        (
            "127.0.0.1:1".to_string(),
            Some("no floodchat peer at 127.0.0.1:1"),
        ),
        (silent.to_string(), Some("no greeting within 1s")),
        (http.to_string(), Some("not a floodchat peer")),
    ];
    for (i, (answer, note)) in cases.iter().enumerate() {
        let mut c = Spawn::new(
            &format!("alone{i}"),
            if i % 2 == 0 { Smol } else { AsyncStd },
        )
        .answer(answer)
        .arg("--greeting-timeout")
        .arg("1")
        .start();
        let errors = c.errors();
        if let Some(note) = note {
            let line = errors.iter().find(|l| l.contains(note));
            let line = line.unwrap_or_else(|| panic!("no {note:?} in {errors:#?}"));
            assert!(line.contains("starting a new network"), "{line}");
        } else {
            assert!(
                !errors.iter().any(|l| l.contains("floodchat:")),
                "an empty answer needs no note: {errors:#?}"
            );
        }
        let own = format!("alone in network {i}");
        c.say(&own);
        c.wait_printed(&[&own]);
        leave_all(&mut [c], &[&own]);
    }
}

#[test]
fn killing_one_leaf_disturbs_no_one_else() {
    let mut clients = room(Shape::Star, &[Smol, AsyncStd, Smol, AsyncStd, Smol]);
    clients[4].say("from the leaf before it dies");
    for c in &clients {
        c.wait_printed(&["from the leaf before it dies"]);
    }
    clients[4].kill();
    clients[0].wait_stderr("the leaf's departure", |l| l.contains("connection closed"));
    let mut rest: Vec<Client> = clients.into_iter().take(4).collect();
    rest[1].say("after the crash");
    rest[3].say("still here");
    let want = [
        "from the leaf before it dies",
        "after the crash",
        "still here",
    ];
    for c in &rest {
        c.wait_printed(&want);
    }
    leave_all(&mut rest, &want);
}

#[test]
fn bad_input_costs_only_its_own_connection() {
    let mut room: Vec<Client> = Vec::new();
    for (i, rt) in [Smol, AsyncStd, Smol].into_iter().enumerate() {
        // A chain, one link wanted each.
        let mut spawn = Spawn::new(&format!("c{i}"), rt)
            .arg("--greeting-timeout")
            .arg("1")
            .arg("--links")
            .arg("1");
        if i > 0 {
            spawn = spawn.peer(&room[i - 1]);
        }
        room.push(spawn.start());
    }
    use floodchat::wire::{ClientId, Frame, GREETING, Hello};
    let prologue = |room: u8| [&GREETING[..], &[room]].concat();
    let mut other_hello = GREETING.to_vec();
    Frame::Hello(Hello {
        client: ClientId(0x5eed),
        listen_port: 0,
        alone: true,
    })
    .encode(&mut other_hello);
    let cases: [(&str, Bad, bool, &str); 15] = [
        (
            "random bytes",
            Clear(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x9e".to_vec()),
            false,
            "not a floodchat peer: greeting began with \"\\x16\"",
        ),
        (
            "an HTTP request",
            Clear(b"GET / HTTP/1.1\r\nHost: chat\r\n\r\n".to_vec()),
            false,
            "not a floodchat peer: greeting began with \"G\"",
        ),
        (
            "a 4 GiB length prefix",
            AfterHello(vec![0xff, 0xff, 0xff, 0xff, 2]),
            false,
            "frame of kind 2 with 4294967294 bytes exceeds its maximum of 65536",
        ),
        (
            "a truncated frame",
            AfterHello(b"\x00\x00\x00\x10\x02only part".to_vec()),
            true,
            "connection closed in the middle of a frame",
        ),
        (
            "invalid UTF-8",
            AfterHello(b"\x00\x00\x00\x03\x02\xff\xfe".to_vec()),
            false,
            "text is not valid UTF-8",
        ),
        (
            "an escape sequence",
            AfterHello(b"\x00\x00\x00\x05\x02\x1b[2J".to_vec()),
            false,
            "text contains the control character '\\u{1b}'",
        ),
        (
            "no Hello",
            Sealed([&GREETING[..], b"\x00\x00\x00\x01\x04"].concat()),
            false,
            "first frame was of kind 4, not a Hello",
        ),
        (
            "a Hello naming a client its key does not prove",
            Sealed(other_hello),
            false,
            "its Hello named a client other than its key proves",
        ),
        ("silence", Clear(Vec::new()), false, "no greeting within 1s"),
        (
            "half a greeting",
            Clear(b"FLOOD".to_vec()),
            true,
            "connection closed before the greeting",
        ),
        (
            "another protocol version",
            Clear(b"FLOODCHAT\x02".to_vec()),
            false,
            "the peer speaks floodchat protocol version 2, this client speaks 3: the peer must upgrade",
        ),
        (
            "a room key for an open room",
            Clear(prologue(1)),
            false,
            "a client with a room key was turned away: this room is open",
        ),
        (
            "an over-long handshake message",
            Clear([prologue(0), vec![0xff, 0xff]].concat()),
            false,
            "a handshake message of 65535 bytes exceeds the maximum of 256",
        ),
        (
            "a record shorter than its tag",
            Raw(b"\x00\x05short".to_vec()),
            false,
            "a record of 5 bytes is shorter than its tag",
        ),
        (
            "an altered record",
            Altered(GREETING.to_vec()),
            false,
            "a record failed authentication: altered or replayed in transit",
        ),
    ];
    for target in &room[..2] {
        for (what, bad, close, reason) in &cases {
            let mut stream = match bad {
                Clear(bytes) => {
                    let mut stream = raw_connect(target);
                    stream.write_all(bytes).unwrap();
                    stream
                }
                sealed => {
                    let mut peer = SecurePeer::connect(&target.addr());
                    match sealed {
                        Clear(_) => unreachable!(),
                        AfterHello(rest) => {
                            let bytes = [peer.hello(), rest.clone()].concat();
                            peer.send(&bytes).unwrap();
                        }
                        Sealed(bytes) => peer.send(bytes).unwrap(),
                        Raw(bytes) => peer.send_raw(bytes).unwrap(),
                        Altered(bytes) => {
                            let mut records = peer.seal(bytes);
                            // A byte of the body, past the 2-byte length.
                            records[4] ^= 0x20;
                            peer.send_raw(&records).unwrap();
                        }
                    }
                    peer.into_stream()
                }
            };
            let local = stream.local_addr().unwrap().to_string();
            if *close {
                stream.shutdown(Shutdown::Write).unwrap();
            }
            // The reason, on a line that names the connection (several share a reason).
            target.wait_stderr(what, |l| l.contains(reason) && l.contains(&local));
            // The client closed the connection: reading ends (greeting, then EOF or reset).
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest);
            // Gone from the client too: no socket or task left behind. (Counting its
            // descriptors was not a test of that: the mesh may make a link meanwhile.)
            target.wait_no_socket_to(stream.local_addr().unwrap());
        }
    }
    // A well-behaved stranger speaking the protocol by hand is heard by everyone.
    let mut raw = SecurePeer::connect(&room[1].addr());
    let bytes = raw.greeting_and_frames(&["from a raw peer"]);
    raw.send(&bytes).unwrap();
    room[2].say("still relaying");
    let want = ["from a raw peer", "still relaying"];
    for c in &room {
        c.wait_printed(&want);
    }
    drop(raw);
    leave_all(&mut room, &want);
}

#[test]
fn peer_that_stops_reading_is_dropped_and_the_room_carries_on() {
    let mut a = Spawn::new("a", Smol)
        .arg("--stall-timeout")
        .arg("2")
        .start();
    let mut b = Spawn::new("b", AsyncStd).peer(&a).start();
    // Handshake done and Hello sent, it never reads again.
    let mut sleeper = SecurePeer::connect(&a.addr());
    let hello = sleeper.hello();
    sleeper.send(&hello).unwrap();
    let local = sleeper.stream.local_addr().unwrap().to_string();
    // Far more than the kernel buffers on both ends can hold, so the writer to `sleeper` blocks.
    let lines: Vec<String> = (0..300)
        .map(|i| format!("{i:03} {}", "z".repeat(60_000)))
        .collect();
    for line in &lines {
        a.say(line);
    }
    let want: Vec<&str> = lines.iter().map(String::as_str).collect();
    b.wait_printed(&want);
    a.wait_stderr("the sleeper being dropped", |l| {
        l.contains(&local) && l.contains("stopped reading for 2s")
    });
    b.say("the room carries on");
    a.wait_printed(&["the room carries on"]);
    drop(sleeper);
    let mut all = want.clone();
    all.push("the room carries on");
    leave_all(&mut [a, b], &all);
}

#[test]
fn end_of_input_leaves_after_queued_messages_are_sent() {
    let a = Spawn::new("a", AsyncStd).start();
    let mut b = Spawn::new("b", Smol).peer(&a).start();
    b.say("last words");
    b.end_input();
    let (status, out) = b.wait_exit();
    assert!(status.success());
    assert_exactly("b", &out, &["last words"]);
    a.wait_printed(&["last words"]);
    leave_all(&mut [a], &["last words"]);
}

#[test]
fn stay_keeps_relaying_after_end_of_input() {
    let mut a = Spawn::new("a", Smol).start();
    let mut relay = Spawn::new("relay", AsyncStd).peer(&a).arg("--stay").start();
    let b = Spawn::new("b", Smol).peer(&relay).start();
    relay.end_input();
    a.say("through the relay");
    b.wait_printed(&["through the relay"]);
    relay.wait_printed(&["through the relay"]);
    leave_all(&mut [a, b], &["through the relay"]);
}

#[test]
fn over_long_and_repeated_lines_get_an_error_and_are_not_sent() {
    let mut a = Spawn::new("a", Smol).start();
    let b = Spawn::new("b", AsyncStd).peer(&a).start();
    a.say(&"x".repeat(70_000));
    a.wait_stderr("the length error", |l| {
        l.contains("line not sent: longer than the maximum of 65536 bytes")
    });
    a.say("short");
    a.say("short");
    a.wait_stderr("the repeat note", |l| l.contains("already said"));
    b.wait_printed(&["short"]);
    leave_all(&mut [a, b], &["short"]);
}

#[test]
fn default_listen_advertises_a_usable_address() {
    let mut a = Spawn::new("a", Smol)
        .default_listen()
        .start_without_waiting();
    let advertised = a.wait_listening();
    assert!(!advertised.ip().is_unspecified(), "advertised {advertised}");
    let mut b = Spawn::new("b", AsyncStd).peer(&a).start();
    b.say("hello");
    a.wait_printed(&["hello"]);
    leave_all(&mut [a, b], &["hello"]);
}

#[test]
fn closed_stdout_ends_the_client_without_a_panic() {
    let mut a = Spawn::new("a", Smol).close_stdout().start();
    a.say("nobody reads this");
    let (status, _) = a.wait_exit();
    assert!(status.success(), "exit status {status}");
    assert!(!a.errors().iter().any(|l| l.contains("panicked")));
}

#[test]
fn interrupt_exits_cleanly() {
    for rt in [Smol, AsyncStd] {
        let mut a = Spawn::new("a", rt).start();
        a.say("typed before ctrl-c");
        a.wait_printed(&["typed before ctrl-c"]);
        a.interrupt();
        let (status, out) = a.wait_exit();
        assert!(status.success(), "exit status {status}");
        assert_exactly("a", &out, &["typed before ctrl-c"]);
        assert!(!a.errors().iter().any(|l| l.contains("panicked")));
    }
}

#[test]
fn help_and_version_describe_the_command_line() {
    let bin = env!("CARGO_BIN_EXE_floodchat");
    let help = Command::new(bin).arg("--help").output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8(help.stdout).unwrap();
    for flag in ["--peer", "--listen", "--runtime", "--stay"] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
    let version = Command::new(bin).arg("--version").output().unwrap();
    let text = String::from_utf8(version.stdout).unwrap();
    assert_eq!(
        text.trim(),
        format!("floodchat {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let a = Spawn::new("a", Smol).start();
    let mut b = Spawn::new("b", AsyncStd)
        .default_listen()
        .arg("--listen")
        .arg(&a.addr())
        .start_without_waiting();
    let (status, out) = b.wait_exit();
    assert_eq!(status.code(), Some(1), "{:#?}", b.errors());
    assert!(out.is_empty());
    let want = format!("floodchat: cannot listen on {}: ", a.addr());
    b.wait_stderr("the listen error", |l| l.contains(&want));
}

#[test]
fn a_relay_whose_stdout_nobody_reads_keeps_relaying_and_obeys_ctrl_c() {
    for rt in [Smol, AsyncStd] {
        let mut a = Spawn::new("a", Smol).start();
        let mut relay = Spawn::new("relay", rt).peer(&a).unread_stdout().start();
        let mut b = Spawn::new("b", AsyncStd).peer(&relay).start();
        // Far more than a pipe holds, so the relay's stdout is full long before the end.
        let lines: Vec<String> = (0..3000)
            .map(|i| format!("{i:04} {}", "p".repeat(120)))
            .collect();
        for line in &lines {
            a.say(line);
        }
        let want: Vec<&str> = lines.iter().map(String::as_str).collect();
        b.wait_printed(&want);
        b.say("and back again");
        a.wait_printed(&["and back again"]);
        relay.interrupt();
        let (status, _) = relay.wait_exit();
        assert!(status.success(), "exit status {status}");
        let mut all = want.clone();
        all.push("and back again");
        leave_all(&mut [a, b], &all);
    }
}

#[test]
fn a_full_stdout_is_an_error() {
    for rt in [Smol, AsyncStd] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let mut a = Spawn::new("a", rt).stdout_to(full).start();
        a.say("nowhere to go");
        let (status, _) = a.wait_exit();
        assert_eq!(status.code(), Some(1), "{:#?}", a.errors());
        a.wait_stderr("the stdout error", |l| {
            l.contains("floodchat: cannot write to stdout: No space left on device")
        });
    }
}

#[test]
fn a_timeout_that_rounds_to_nothing_is_refused() {
    let bin = env!("CARGO_BIN_EXE_floodchat");
    for flag in ["--greeting-timeout", "--stall-timeout"] {
        let out = Command::new(bin).args([flag, "1e-12"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let text = String::from_utf8(out.stderr).unwrap();
        assert!(text.contains("must be at least 0.001"), "{text}");
    }
}

#[test]
fn a_connection_storm_is_summed_up_on_stderr() {
    const STORM: usize = 200;
    let mut targets = [
        Spawn::new("a", Smol).start(),
        Spawn::new("b", AsyncStd).start(),
    ];
    let mut newcomers: Vec<Client> = targets
        .iter()
        .map(|t| Spawn::new("newcomer", Smol).peer(t).start())
        .collect();
    for target in &targets {
        for _ in 0..STORM {
            let mut s = raw_connect(target);
            // The clear prologue of an open room, and gone.
            s.write_all(&floodchat::wire::GREETING).unwrap();
            s.write_all(&[0]).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        }
    }
    for target in &targets {
        let errors = target.wait_stderr("the summary", |l| {
            l.contains("more connection notices in the last 10 s")
        });
        let notices = errors
            .iter()
            .filter(|l| l.contains(" joined") || l.contains(": connection closed"))
            .count();
        // One notice per event would be two per connection of the storm.
        assert!(notices < STORM / 4, "{notices} notices: {errors:#?}");
    }
    for (t, n) in targets.iter_mut().zip(&mut newcomers) {
        n.say("still chatting");
        t.wait_printed(&["still chatting"]);
    }
    let [a, b] = targets;
    let [na, nb]: [Client; 2] = newcomers.try_into().ok().unwrap();
    leave_all(&mut [a, b, na, nb], &["still chatting"]);
}

#[test]
fn a_peer_that_never_compares_cannot_keep_a_client_from_leaving() {
    for rt in [Smol, AsyncStd] {
        let mut a = Spawn::new("a", rt).arg("--stall-timeout").arg("1").start();
        // A stranger that says Hello and then nothing: it never starts or answers the
        // comparison of what the two hold, but its link is alive.
        let mut raw = SecurePeer::connect(&a.addr());
        let hello = raw.hello();
        raw.send(&hello).unwrap();
        a.wait_stderr("the stranger's link", |l| l.contains("joined"));
        a.say("typed before leaving");
        a.end_input();
        let (status, out) = a.wait_exit();
        assert!(status.success(), "exit status {status}");
        assert_exactly("a", &out, &["typed before leaving"]);
        assert!(
            a.errors()
                .iter()
                .any(|l| l.contains("never finished comparing")),
            "{:#?}",
            a.errors()
        );
        drop(raw);
    }
}

#[test]
fn a_client_told_so_takes_more_than_eight_clients_from_one_address() {
    // By default a client takes at most 8 connections from one IP; ten clients on one
    // machine join a hub raised to ten, each linked to the hub itself.
    let mut hub = Spawn::new("hub", Smol)
        .arg("--links")
        .arg("10")
        .arg("--max-per-ip")
        .arg("10")
        .start();
    let hub_addr = hub.addr();
    let mut leaves: Vec<Client> = (0..10)
        .map(|i| {
            let rt = if i % 2 == 0 { Smol } else { AsyncStd };
            let leaf = Spawn::new(&format!("leaf{i}"), rt)
                .arg("--links")
                .arg("1")
                .peer(&hub)
                .start();
            leaf.wait_stderr("a link to the hub", |l| {
                l.contains(&format!("connected to {hub_addr}"))
            });
            leaf
        })
        .collect();
    hub.wait_stderr_count("a join", 10, |l| l.ends_with(" joined"));
    hub.say("to every leaf");
    leaves[9].say("from the last leaf");
    let want = ["to every leaf", "from the last leaf"];
    for leaf in &leaves {
        leaf.wait_printed(&want);
    }
    leaves.push(hub);
    leave_all(&mut leaves, &want);
}
