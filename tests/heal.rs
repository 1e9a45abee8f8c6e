//! The room heals itself: real clients on loopback, both runtimes and mixed. Clients crash
//! (SIGKILL), and what a user checks is that the survivors still chat, that nothing is
//! printed twice, and that stderr says what happened in a few lines.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use common::{Client, DEADLINE, Rt, SecurePeer, Spawn, leave_all};

use Rt::{AsyncStd, Smol};

/// The most stderr lines a survivor may print for one neighbour lost and replaced.
const NOTICES_PER_CHANGE: usize = 4;

/// The most stderr lines of a survivor of the chain over the whole test, `Listening on`
/// included: about two per link made or lost.
const CHAIN_NOTICES: usize = 16;

/// Starts one client per runtime in `rts`, each joining the room through the previous one.
fn chain(rts: &[Rt], extra: &[&str]) -> Vec<Client> {
    let mut clients: Vec<Client> = Vec::new();
    for (i, &rt) in rts.iter().enumerate() {
        let mut spawn = Spawn::new(&format!("c{i}"), rt);
        for arg in extra {
            spawn = spawn.arg(arg);
        }
        if let Some(previous) = clients.last() {
            spawn = spawn.peer(previous);
        }
        clients.push(spawn.start());
    }
    clients
}

/// What `client` printed on stderr after its first `skip` lines.
fn stderr_since(client: &Client, skip: usize) -> Vec<String> {
    client.errors().into_iter().skip(skip).collect()
}

/// A chain of five; the middle one is killed; both sides type at once, without waiting for
/// the room to heal; every survivor prints every line exactly once.
fn middle_of_a_chain_dies(rts: [Rt; 5]) {
    let mut clients = chain(&rts, &[]);
    clients[0].say("before the crash, from the first");
    clients[4].say("before the crash, from the last");
    let before = [
        "before the crash, from the first",
        "before the crash, from the last",
    ];
    for c in &clients {
        c.wait_printed(&before);
    }
    clients[2].kill();
    let mut survivors: Vec<Client> = clients
        .into_iter()
        .enumerate()
        .filter_map(|(i, c)| (i != 2).then_some(c))
        .collect();
    let mut want: Vec<String> = before.iter().map(|s| s.to_string()).collect();
    for c in &mut survivors {
        let line = format!("after the crash, from {}", c.name);
        c.say(&line);
        want.push(line);
    }
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    for c in &survivors {
        c.wait_printed(&want);
    }
    // Each survivor made at most four links, lost one or two, and replaced them: its whole
    // stderr is a few lines, not a line per dial or per second.
    for c in &survivors {
        let said = c.errors();
        eprintln!("{}: {} stderr lines: {said:#?}", c.name, said.len());
        assert!(
            said.len() <= CHAIN_NOTICES,
            "{} is noisy: {said:#?}",
            c.name
        );
    }
    leave_all(&mut survivors, &want);
}

#[test]
fn chain_heals_when_the_middle_dies_on_smol() {
    middle_of_a_chain_dies([Smol; 5]);
}

#[test]
fn chain_heals_when_the_middle_dies_on_async_std() {
    middle_of_a_chain_dies([AsyncStd; 5]);
}

#[test]
fn chain_heals_when_the_middle_dies_on_mixed_runtimes() {
    middle_of_a_chain_dies([Smol, AsyncStd, Smol, AsyncStd, Smol]);
}

/// With one link each, `a <- b <- c` is a true chain: `c`'s only neighbour is `b`, and `c`
/// was never told `a`'s address by its user. Once `b` dies, `c` and `a` find each other
/// through the addresses they learned, and chat.
#[test]
fn a_client_whose_only_neighbour_dies_reconnects_through_a_learned_address() {
    for rts in [[Smol, AsyncStd, Smol], [AsyncStd, Smol, AsyncStd]] {
        let mut room = chain(&rts, &["--links", "1"]);
        room[0].say("from a, before");
        for c in &room {
            c.wait_printed(&["from a, before"]);
        }
        let a_port = room[0].port;
        let a_seen = room[0].errors().len();
        let c_seen = room[2].errors().len();
        room[1].kill();
        let mut a = room.remove(0);
        let mut c = room.pop().unwrap();
        // The link comes back, whichever of the two dials the other.
        let a_addr = format!("127.0.0.1:{a_port}");
        let back = |l: &str| l.contains(&format!("connected to {a_addr}")) || l.contains(" joined");
        c.wait_stderr("a link to a", back);
        a.say("from a, after");
        c.say("from c, after");
        let want = ["from a, before", "from a, after", "from c, after"];
        a.wait_printed(&want);
        c.wait_printed(&want);
        for (client, skip) in [(&a, a_seen), (&c, c_seen)] {
            let said = stderr_since(client, skip);
            eprintln!("{} after the kill: {said:#?}", client.name);
            assert!(
                said.len() <= NOTICES_PER_CHANGE,
                "{} is noisy after losing its only neighbour: {said:#?}",
                client.name
            );
            client.assert_notices_hold_together();
        }
        leave_all(&mut [a, c], &want);
    }
}

/// The race behind the notices that contradicted each other, run again and again: in a chain
/// a–b–c of clients keeping one link each, b is killed, and a and c, who both heard of each
/// other through b, often dial each other at once. Each time they end up in one room, and
/// neither tells its user "no links" about the moment it announced the other.
#[test]
fn a_middle_client_killed_again_and_again_leaves_notices_that_hold_together() {
    for round in 0..6 {
        let rts = [[Smol, AsyncStd, Smol], [AsyncStd, Smol, AsyncStd]][round % 2];
        let mut room = chain(&rts, &["--links", "1"]);
        let first = format!("round {round}, before");
        room[0].say(&first);
        for c in &room {
            c.wait_printed(&[&first]);
        }
        room[1].kill();
        let mut a = room.remove(0);
        let mut c = room.pop().unwrap();
        let (from_a, from_c) = (
            format!("round {round}, from a"),
            format!("round {round}, from c"),
        );
        a.say(&from_a);
        c.say(&from_c);
        let want = [first.as_str(), &from_a, &from_c];
        a.wait_printed(&want);
        c.wait_printed(&want);
        for client in [&a, &c] {
            client.assert_notices_hold_together();
        }
        leave_all(&mut [a, c], &want);
    }
}

/// A hub with `--links 1` takes at most 3 inbound links. Once three clients fill it, a
/// newcomer that joins through it is told Bye(Full) with addresses to try, and ends up in
/// the room anyway.
#[test]
fn a_full_client_still_lets_a_newcomer_join_the_room() {
    for (rt, other) in [(Smol, AsyncStd), (AsyncStd, Smol)] {
        let mut hub = Spawn::new("hub", rt).arg("--links").arg("1").start();
        let mut room = vec![];
        for i in 0..3 {
            let filler = Spawn::new(&format!("f{i}"), if i % 2 == 0 { other } else { rt })
                .arg("--links")
                .arg("1")
                .peer(&hub)
                .start();
            room.push(filler);
        }
        hub.wait_stderr_count("three joins", 3, |l| l.ends_with(" joined"));
        hub.say("from the hub");
        for c in &room {
            c.wait_printed(&["from the hub"]);
        }
        let mut newcomer = Spawn::new("newcomer", other).peer(&hub).start();
        newcomer.say("from the newcomer");
        let want = ["from the hub", "from the newcomer"];
        newcomer.wait_printed(&want);
        hub.wait_printed(&want);
        for c in &room {
            c.wait_printed(&want);
        }
        // The hub never holds more inbound links than its limit (3 for one link): the
        // newcomer was sent elsewhere, or the hub had room, because it shed a filler to keep
        // the room mixed, or because it dialed a filler for its outbound quota (issue 16) and
        // that filler's inbound connection, a duplicate, went.
        let inbound = inbound_connections(hub.pid(), hub.addr().parse().unwrap());
        assert!(
            inbound <= 3,
            "the hub holds {inbound} inbound connections: hub {:#?}, newcomer {:#?}",
            hub.errors(),
            newcomer.errors()
        );
        room.push(hub);
        room.push(newcomer);
        leave_all(&mut room, &want);
    }
}

/// How many established TCP connections process `pid` accepted at `listen`, from `/proc`.
fn inbound_connections(pid: u32, listen: SocketAddr) -> usize {
    let inodes = common::socket_inodes(pid);
    let port = format!(":{:04X}", listen.port());
    std::fs::read_to_string(format!("/proc/{pid}/net/tcp"))
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            f.len() > 9 && f[3] == "01" && f[1].ends_with(&port) && inodes.iter().any(|i| i == f[9])
        })
        .count()
}

/// Counts the connections made to `addr`: accepts each and closes it at once, as a dead
/// client's port reused by some other program would.
fn count_connections(addr: SocketAddr) -> mpsc::Receiver<()> {
    let listener = TcpListener::bind(addr).expect("bind the dead client's port");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    rx
}

/// A client whose every neighbour is gone says once that it is alone, and keeps trying the
/// address it knows without a line per attempt.
#[test]
fn a_client_left_alone_says_so_once_and_keeps_trying() {
    for (rt, other) in [(Smol, AsyncStd), (AsyncStd, Smol)] {
        let mut a = Spawn::new("a", rt).start();
        let mut b = Spawn::new("b", other).peer(&a).start();
        a.say("hello");
        b.wait_printed(&["hello"]);
        let seen = b.errors().len();
        let a_addr: SocketAddr = a.addr().parse().unwrap();
        a.kill();
        let dials = count_connections(a_addr);
        // Three attempts, each backed off further than the last.
        let deadline = Instant::now() + DEADLINE;
        for attempt in 1..=3 {
            let left = deadline.saturating_duration_since(Instant::now());
            dials
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("b made only {} dials", attempt - 1));
        }
        let said = stderr_since(&b, seen);
        // Every attempt seen so far, including any after the snapshot above.
        let attempts = 3 + dials.try_iter().count();
        let alone = said
            .iter()
            .filter(|l| l.contains("no links to the room"))
            .count();
        assert_eq!(alone, 1, "b must say once that it is alone: {said:#?}");
        // Beyond the lost link and being alone, at most a line per failed attempt; and a's
        // own dial of b (its outbound quota), if one was under way when it died, ends with
        // one line of its own, naming a's source port rather than its address.
        let about_a = said
            .iter()
            .filter(|l| l.contains(&a_addr.to_string()) || l.contains("no links"))
            .count();
        assert!(
            about_a <= 2 + attempts && said.len() <= 3 + attempts,
            "b is noisy while alone ({attempts} attempts): {said:#?}"
        );
        b.say("alone but still typing");
        leave_all(&mut [b], &["hello", "alone but still typing"]);
    }
}

/// A contact that answers with its Hello and, in the same breath, Bye(Full) naming a client
/// of the room: the newcomer joins the room through that client, and must not tell its user
/// that there was no floodchat peer and that it starts a new network.
#[test]
fn a_newcomer_sent_elsewhere_is_not_told_it_starts_a_new_network() {
    use floodchat::secure::{Role, RoomKey};
    use floodchat::wire::{ByeReason, Frame};
    for (rt, other) in [(Smol, AsyncStd), (AsyncStd, Smol)] {
        let member = Spawn::new("member", rt).start();
        let to: SocketAddr = member.addr().parse().unwrap();
        let full = common::fake_server(move |stream| {
            let Ok(mut peer) = SecurePeer::handshake(stream, Role::Responder, &RoomKey::Open)
            else {
                return;
            };
            let mut bytes = peer.hello_with(0, false);
            let bye = Frame::Bye {
                reason: ByeReason::Full,
                addrs: vec![to],
            };
            bye.encode(&mut bytes);
            let _ = peer.send(&bytes);
            // Held open until the newcomer closes it, as a full client would.
            let _ = std::io::copy(&mut peer.stream, &mut std::io::sink());
        });
        let mut newcomer = Spawn::new("newcomer", other)
            .arg("--peer")
            .arg(&full.to_string())
            .start();
        newcomer.say("from the newcomer");
        member.wait_printed(&["from the newcomer"]);
        let said = newcomer.errors();
        assert!(
            !said.iter().any(|l| l.contains("starting a new network")),
            "the newcomer joined the room, yet says otherwise: {said:#?}"
        );
        leave_all(&mut [member, newcomer], &["from the newcomer"]);
    }
}

/// Clients on one machine share an IP, as clients behind one NAT do. A client holding its
/// limit of links from one IP refused the next connection from it unread, and a newcomer
/// joining through it heard nothing and started a room of its own: in a 10-client room built
/// as a tree, the tenth client's line reached nobody about one round in 40. Now the limit
/// answers the newcomer's Hello (a slot made, or addresses to try), so every round the whole
/// room hears the newest client, and no client starts a room of its own.
#[test]
fn a_room_on_one_address_always_takes_its_newest_client() {
    for round in 0..40 {
        let mut room = common::tree(&format!("round {round} c"), 10);
        room[9].say("the newest is here");
        for c in &room {
            c.wait_printed(&["the newest is here"]);
        }
        for c in &room {
            let alone = c.errors();
            let alone = alone.iter().find(|l| l.contains("starting a new network"));
            assert!(alone.is_none(), "{}: {alone:?}", c.name);
        }
    }
}
