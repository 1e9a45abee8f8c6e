//! A hostile network against a live room: real clients on loopback, both runtimes, each
//! attack bounded in count and time. Each test asserts what a user would check: a newcomer
//! still joins and chats, memory stays bounded, no control character reaches stdout, a full
//! room keeps running and says so.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use common::{Client, DEADLINE, Rt, SecurePeer, Spawn, connect_from};
use floodchat::secure::{Role, RoomKey};
use floodchat::wire::{Decoded, Frame, encode_text};

use Rt::{AsyncStd, Smol};

/// Source addresses of the attack: many loopback IPs, so per-IP limits alone cannot answer it.
fn attacker_ips(n: u8) -> impl Iterator<Item = Ipv4Addr> {
    (1..=n).map(|i| Ipv4Addr::new(127, 0, 9, i))
}

/// What each attack connection does once open.
#[derive(Clone, Copy)]
enum Say {
    /// Nothing at all, not even the prologue.
    Nothing,
    /// The handshake, then the greeting and a Hello in records, then nothing.
    Hello,
    /// The handshake, the greeting and a Hello, then the largest Text but its last byte, all
    /// in records: the frame is begun and never finished.
    HalfFrame,
}

/// Opens `per_ip` connections from each attacker IP, one IP after another in each of one
/// thread per IP (a handshake takes a round trip); `say` is what each one does first. A
/// connection whose handshake the client refuses or leaves unanswered for 2 s is held all
/// the same, as an attacker would.
fn hold_connections(client: &Client, ips: u8, per_ip: usize, say: Say) -> Vec<TcpStream> {
    let to: SocketAddr = client.addr().parse().unwrap();
    let threads: Vec<_> = attacker_ips(ips)
        .map(|ip| {
            thread::spawn(move || {
                let mut held = Vec::new();
                for _ in 0..per_ip {
                    let Some(stream) = connect_from(ip, to) else {
                        continue;
                    };
                    if let Say::Nothing = say {
                        held.push(stream);
                        continue;
                    }
                    let kept = stream.try_clone().unwrap();
                    let open = RoomKey::Open;
                    let timeout = Duration::from_secs(2);
                    // A connection whose handshake fails is held all the same.
                    if let Ok(mut peer) =
                        SecurePeer::handshake_within(stream, Role::Initiator, &open, timeout)
                    {
                        let mut bytes = peer.hello();
                        if let Say::HalfFrame = say {
                            bytes.extend_from_slice(&(1 + 65_536u32).to_be_bytes());
                            bytes.push(2);
                            bytes.extend(std::iter::repeat_n(b'x', 65_535));
                        }
                        let _ = peer.send(&bytes);
                    }
                    held.push(kept);
                }
                held
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect()
}

/// The other runtime, so every attack also crosses runtimes.
fn other(rt: Rt) -> Rt {
    match rt {
        Smol => AsyncStd,
        AsyncStd => Smol,
    }
}

/// Ends every client's input and waits for each to leave cleanly.
fn leave(clients: &mut [Client]) {
    for c in clients.iter_mut() {
        c.end_input();
    }
    for c in clients.iter_mut() {
        let (status, _) = c.wait_exit();
        assert!(status.success(), "{} exited with {status}", c.name);
    }
}

#[test]
fn idle_connections_cannot_lock_a_newcomer_out() {
    for rt in [Smol, AsyncStd] {
        let mut target = Spawn::new("target", rt).fd_limit(256).start();
        let mut friend = Spawn::new("friend", other(rt)).peer(&target).start();
        // 600 connections from 50 addresses against a limit of 256 descriptors: half say
        // nothing at all, half shake hands, greet and then say nothing.
        let mut held = hold_connections(&target, 50, 6, Say::Nothing);
        held.extend(hold_connections(&target, 50, 6, Say::Hello));
        let attempted = 600;
        let started = std::time::Instant::now();
        let mut newcomer = Spawn::new("newcomer", other(rt)).peer(&target).start();
        newcomer.say("the newcomer got in");
        friend.wait_printed(&["the newcomer got in"]);
        eprintln!(
            "{rt:?}: {attempted} attack connections, {} accepted by the kernel and held by the \
             attacker, target has {} descriptors open; newcomer heard after {:?}",
            held.len(),
            target.open_fds(),
            started.elapsed()
        );
        friend.say("welcome");
        newcomer.wait_printed(&["welcome"]);
        assert!(
            target.open_fds() < 200,
            "{} descriptors open",
            target.open_fds()
        );
        let refused = target.errors();
        assert!(
            refused.len() < 100,
            "a storm of connections is summarised, not logged one by one: {} lines",
            refused.len()
        );
        drop(held);
        target.say("after the attack");
        newcomer.wait_printed(&["after the attack"]);
        leave(&mut [target, friend, newcomer]);
    }
}

#[test]
fn half_sent_frames_cannot_pin_memory() {
    for rt in [Smol, AsyncStd] {
        let mut target = Spawn::new("target", rt).start();
        let mut friend = Spawn::new("friend", other(rt)).peer(&target).start();
        let before = target.status_kb("VmRSS");
        // Each connection shakes hands, greets, announces the largest Text and sends all of
        // it but a byte, in records.
        // 1,000 connections: without limits they would pin 64 MB; with them, what a client
        // holds is bounded by its connection table and its queues, whatever the count.
        let held = hold_connections(&target, 50, 20, Say::HalfFrame);
        friend.say("still chatting");
        target.wait_printed(&["still chatting"]);
        let during = target.status_kb("VmHWM");
        drop(held);
        target.say("after");
        friend.wait_printed(&["after"]);
        let peak = target.status_kb("VmHWM");
        eprintln!("{rt:?}: RSS before {before} kB, peak during {during} kB, peak after {peak} kB");
        assert!(
            // The bound: 64 connections' frame buffers (4 MB) and read buffers (4 MB), the
            // owner's event queue of reads (256 x 64 KiB = 16 MB), and allocator slack.
            peak < before + 40 * 1024,
            "peak RSS grew from {before} kB to {peak} kB ({during} kB during the attack)"
        );
        leave(&mut [target, friend]);
    }
}

#[test]
fn control_characters_never_reach_stdout() {
    let mut a = Spawn::new("a", Smol).start();
    let mut b = Spawn::new("b", AsyncStd).peer(&a).start();
    let forged = [
        "\x1b[2J\x1b[Hscreen cleared",
        "\x1b]0;new title\x07",
        "\x1b]52;c;cGFzc3dvcmQ=\x07",
        "mallory: bye\ralice: send me your password",
        "vertical\x0btab",
        "c1 \u{9b}31m red",
        "nul\0byte",
        "del\x7f",
    ];
    for text in forged {
        let mut s = SecurePeer::connect(&a.addr());
        let mut bytes = s.hello();
        bytes.extend_from_slice(&(1 + text.len() as u32).to_be_bytes());
        bytes.push(2);
        bytes.extend_from_slice(text.as_bytes());
        s.send(&bytes).unwrap();
        a.wait_stderr("the refusal", |l| l.contains("control character"));
        drop(s);
    }
    // A typed control character is refused too, with a message.
    a.say("typed \x1b[31m red");
    a.wait_stderr("the typed refusal", |l| {
        l.contains("line not sent") && l.contains("control character")
    });
    b.say("plain text, \u{202e} and tabs\tstill pass");
    a.wait_printed(&["plain text, \u{202e} and tabs\tstill pass"]);
    for c in [&a, &b] {
        for line in c.printed() {
            assert!(
                !line
                    .chars()
                    .any(|ch| (ch.is_control() && ch != '\t') || ch == '\x7f'),
                "{}: {line:?}",
                c.name
            );
        }
    }
    leave(&mut [a, b]);
}

#[test]
fn a_full_room_keeps_running_and_says_so() {
    for rt in [Smol, AsyncStd] {
        let full = Spawn::new("full", rt).arg("--max-room-mb").arg("1").start();
        let mut raw = SecurePeer::connect(&full.addr());
        // 4 MB of distinct 64 KiB strings, as fast as the socket takes them.
        let big: Vec<String> = (0..64)
            .map(|i| format!("{i:04}{}", "y".repeat(65_000)))
            .collect();
        let refs: Vec<&str> = big.iter().map(String::as_str).collect();
        let bytes = raw.greeting_and_frames(&refs);
        raw.send(&bytes).unwrap();
        full.wait_stderr("the limit note", |l| {
            l.contains("reached this client's limit")
        });
        let notes = full
            .errors()
            .iter()
            .filter(|l| l.contains("reached this client's limit"))
            .count();
        assert_eq!(notes, 1, "said once");
        let peak = full.status_kb("VmHWM");
        eprintln!("{rt:?}: a full room of 1 MB: peak RSS {peak} kB");
        assert!(peak < 64 * 1024);
        // Alive, and still relaying what it holds to a newcomer.
        let newcomer = Spawn::new("newcomer", other(rt)).peer(&full).start();
        newcomer.wait_printed(&[refs[0]]);
        drop(raw);
        leave(&mut [full]);
    }
}

/// A secure peer on a connection from `ip` to `to`, greeted with a Hello.
fn greeted_from(ip: Ipv4Addr, to: &Client) -> Option<SecurePeer> {
    let stream = connect_from(ip, to.addr().parse().unwrap())?;
    let mut peer =
        SecurePeer::handshake_within(stream, Role::Initiator, &RoomKey::Open, DEADLINE).ok()?;
    let hello = peer.hello();
    peer.send(&hello).ok()?;
    Some(peer)
}

#[test]
fn one_connection_flooding_cannot_end_the_room() {
    for rt in [Smol, AsyncStd] {
        let a = Spawn::new("a", rt).start();
        let mut b = Spawn::new("b", other(rt)).peer(&a).start();
        let mut c = Spawn::new("c", rt).peer(&b).start();
        b.say("before the flood");
        a.wait_printed(&["before the flood"]);
        c.wait_printed(&["before the flood"]);
        // Distinct 8-byte lines, 10,000 a write, as fast as the socket takes them, until the
        // client drops the connection (or 4,000,000 lines, the old default limit).
        let ip = Ipv4Addr::new(127, 0, 9, 1);
        let mut flood = greeted_from(ip, &a).expect("the attacker connects");
        let started = std::time::Instant::now();
        let mut sent = 0u32;
        'flood: for chunk in 0..400u32 {
            let mut bytes = Vec::new();
            for i in 0..10_000 {
                encode_text(&format!("{:08x}", chunk * 10_000 + i), &mut bytes);
            }
            if flood.send(&bytes).is_err() {
                break 'flood;
            }
            sent += 10_000;
        }
        a.wait_stderr("the flooder dropped with the reason", |l| {
            l.contains("flooding")
        });
        eprintln!(
            "{rt:?}: the attacker wrote {sent} lines in {:?} before its connection failed; a \
             printed {} lines",
            started.elapsed(),
            a.printed_count()
        );
        drop(flood);
        assert!(a.printed_count() < 100_000, "{}", a.printed_count());
        // Its address is refused for a while.
        assert!(greeted_from(ip, &a).is_none_or(|mut p| p.read_frames(|_| false).0.is_empty()));
        // The room goes on: an honest line reaches every honest client, a newcomer chats.
        c.say("after the flood");
        a.wait_printed(&["after the flood"]);
        b.wait_printed(&["after the flood"]);
        let mut newcomer = Spawn::new("newcomer", other(rt)).peer(&a).start();
        newcomer.wait_printed(&["after the flood"]);
        newcomer.say("the newcomer speaks");
        for x in [&a, &b, &c] {
            x.wait_printed(&["the newcomer speaks"]);
        }
        // Only the flooder was judged one: the honest clients that relayed what `a` took
        // from it stayed within each other's budgets.
        let judged = |x: &Client| x.errors().iter().filter(|l| l.contains("flooding")).count();
        assert_eq!(judged(&a), 1, "{:#?}", a.errors());
        for x in [&b, &c, &newcomer] {
            assert_eq!(judged(x), 0, "{}: {:#?}", x.name, x.errors());
        }
        leave(&mut [a, b, c, newcomer]);
    }
}

#[test]
fn history_served_to_a_reconnecting_address_is_bounded() {
    for rt in [Smol, AsyncStd] {
        let mut target = Spawn::new("target", rt)
            .arg("--max-per-ip")
            .arg("64")
            .start();
        // 40,000 lines of 100 bytes: a room of 4 MB; an address may be sent 16 MB an hour.
        let room: Vec<String> = (0..40_000)
            .map(|i| format!("{i:06} {}", "h".repeat(93)))
            .collect();
        target.say_many(&room);
        target.wait_printed_count(room.len());
        let room_bytes: usize = room.iter().map(String::len).sum();
        // A peer that says it holds nothing (an empty list of ids for the whole id space),
        // again and again from one address, reading all it is sent.
        let ip = Ipv4Addr::new(127, 0, 9, 2);
        let mut served = Vec::new();
        for _ in 0..12 {
            let Some(mut peer) = greeted_from(ip, &target) else {
                served.push(0);
                continue;
            };
            let mut recon = Vec::new();
            Frame::Recon(vec![0x51, 0]).encode(&mut recon);
            let _ = peer.send(&recon);
            let (items, _) = peer.read_frames(|items| {
                items
                    .iter()
                    .filter(|i| matches!(i, Decoded::Frame(Frame::Text(_))))
                    .count()
                    >= room.len()
            });
            let bytes: usize = items
                .iter()
                .map(|i| match i {
                    Decoded::Frame(Frame::Text(t)) => t.len(),
                    _ => 0,
                })
                .sum();
            served.push(bytes);
        }
        let total: usize = served.iter().sum();
        eprintln!(
            "{rt:?}: a room of {room_bytes} bytes; served per reconnection {served:?}, {total} in all"
        );
        assert_eq!(served[0], room_bytes, "the first history passes whole");
        assert!(
            total <= 16 * 1024 * 1024 + 1024 * 1024,
            "{total} bytes served"
        );
        target.wait_stderr("the reason", |l| l.contains("history too often"));
        // An honest late joiner from another address gets the whole history.
        let late = Spawn::new("late", other(rt)).peer(&target).start();
        late.wait_printed_count(room.len());
        leave(&mut [target, late]);
    }
}

/// Issue 16, item 6: a client whose inbound slots are held by idle greeted connections makes
/// room for a newcomer with no link; a second newcomer within the interval joins too (told
/// whom to try, or let in once the target's outbound quota changed its links).
#[test]
fn a_full_client_makes_room_for_a_newcomer_with_no_link() {
    for rt in [Smol, AsyncStd] {
        // With one link as its target, the target takes 3 inbound links: the attacker holds
        // them, idle, with Hellos that say they have other links, each from its own address
        // (its own group), so that the eclipse rule has no crowded group to evict from.
        let mut target = Spawn::new("target", rt).arg("--links").arg("1").start();
        let to: SocketAddr = target.addr().parse().unwrap();
        let held: Vec<SecurePeer> = (0..3u8)
            .map(|i| {
                let stream = connect_from(Ipv4Addr::new(127, 0, 9, 2 + i), to).unwrap();
                let mut peer =
                    SecurePeer::handshake(stream, Role::Initiator, &RoomKey::Open).unwrap();
                let hello = peer.hello_with(0, false);
                peer.send(&hello).unwrap();
                peer
            })
            .collect();
        target.wait_stderr("the third idle join", |l| {
            l.contains("127.0.9.4") && l.contains("joined")
        });
        let mut first = Spawn::new("first", other(rt)).peer(&target).start();
        first.say("the first newcomer is in");
        target.wait_printed(&["the first newcomer is in"]);
        target.say("welcome, first");
        first.wait_printed(&["welcome, first"]);
        // Within the interval the next newcomer is turned away and told whom to try, or, once
        // the target's outbound quota made it dial the first newcomer (whose inbound link then
        // goes as a duplicate), let in: either way it chats.
        let mut second = Spawn::new("second", rt).peer(&target).start();
        second.wait_stderr("a link", |l| {
            l.contains("is full; trying the 1 client(s) it named instead")
                || l.contains("connected to")
        });
        second.say("the second newcomer is in");
        first.wait_printed(&["the second newcomer is in"]);
        target.wait_printed(&["the second newcomer is in"]);
        drop(held);
        leave(&mut [target, first, second]);
    }
}

/// Issue 16, item 4: a peer tells a 10-client room 64 addresses of something that is not
/// floodchat, again and again. Each client tests a heard address before trusting it, one at
/// a time per source of the hint, and after one that answered as something else waits a
/// minute (then two, four, ...) before testing that source's next; it never passes an untested
/// hint on, and forgets one after 20 s. So the third party sees at most one connection per
/// client in the attack's first minute, and none more than 30 s after it stops. The room mixes
/// both runtimes.
#[test]
fn a_peer_cannot_turn_the_room_into_a_port_scanner() {
    use std::io::Read;
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::time::Instant;

    // The third party: one port on each of 64 loopback addresses, counting connections, each
    // held open and read until it ends, as a service waiting for its client would.
    let (seen, connections) = mpsc::channel::<Instant>();
    let third: Vec<SocketAddr> = (1..=64u8)
        .map(|i| {
            let listener = TcpListener::bind((Ipv4Addr::new(127, 0, 7, i), 0)).unwrap();
            let addr = listener.local_addr().unwrap();
            let seen = seen.clone();
            thread::spawn(move || {
                for mut stream in listener.incoming().flatten() {
                    if seen.send(Instant::now()).is_err() {
                        return;
                    }
                    thread::spawn(move || {
                        let mut buf = [0; 512];
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
                        while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
                    });
                }
            });
            addr
        })
        .collect();
    let mut room = common::tree("c", 10);
    room[9].say("all here");
    room[0].wait_printed(&["all here"]);
    // The attacker links to every client from its own address and names 16 of the 64
    // addresses to each, every second, for 15 s; every 3 s it drops its links and links again
    // under new identities, so that clients below their target dial.
    let attacker = Ipv4Addr::new(127, 0, 9, 1);
    let link = |c: &Client| {
        let stream = connect_from(attacker, c.addr().parse().unwrap())?;
        let mut peer = SecurePeer::handshake(stream, Role::Initiator, &RoomKey::Open).ok()?;
        let hello = peer.hello_with(0, false);
        peer.send(&hello).ok()?;
        Some(peer)
    };
    let mut links: Vec<Option<SecurePeer>> = Vec::new();
    let start = Instant::now();
    let mut round = 0;
    while start.elapsed() < Duration::from_secs(15) {
        if round % 3 == 0 {
            // Gone for half a second: a client at its target is below it, and dials.
            links.clear();
            thread::sleep(Duration::from_millis(500));
            links = room.iter().map(link).collect();
        }
        for (k, peer) in links.iter_mut().enumerate() {
            let addrs: Vec<SocketAddr> =
                (0..16).map(|j| third[(round * 16 + j + k) % 64]).collect();
            let mut bytes = Vec::new();
            floodchat::wire::Frame::Addrs(addrs).encode(&mut bytes);
            if let Some(p) = peer {
                let _ = p.send(&bytes);
            }
        }
        round += 1;
        thread::sleep(Duration::from_secs(1)); // the attacker's pace, not a synchronisation
    }
    drop(links);
    let stopped = Instant::now();
    // Watch the third party for 31 s after the attack stops.
    let mut during = 0;
    let mut after = Vec::new();
    while let Ok(at) = connections
        .recv_timeout((stopped + Duration::from_secs(31)).saturating_duration_since(Instant::now()))
    {
        if at <= stopped {
            during += 1;
        } else {
            after.push(at - stopped);
        }
        if Instant::now() >= stopped + Duration::from_secs(31) {
            break;
        }
    }
    while let Ok(at) = connections.try_recv() {
        after.push(at - stopped);
    }
    eprintln!(
        "third party: {during} connections in the attack's {:?} from a 10-client room, {} after it \
         stopped ({after:?})",
        stopped - start,
        after.len()
    );
    assert!(during <= 10, "{during} connections during the attack");
    assert!(
        after.iter().all(|&d| d <= Duration::from_secs(30)),
        "connections more than 30 s after the attack: {after:?}"
    );
    assert!(
        during + after.len() <= 10,
        "at most one per client: {during} + {after:?}"
    );
    room[3].say("still a room");
    room[8].wait_printed(&["still a room"]);
    leave(&mut room);
}

/// How many established TCP connections of process `pid` have their other end at
/// `127.0.0.1` (where every honest client of these tests is), from `/proc`.
fn connections_to_127_0_0_1(pid: u32) -> usize {
    let inodes = common::socket_inodes(pid);
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            f.len() > 9 && f[3] == "01" && f[2].starts_with("0100007F:") && inodes.contains(f[9])
        })
        .count()
}

/// One fake peer of the eclipse swarm on an open connection: the handshake, a Hello that
/// names `listen_port` (not alone), the swarm's addresses, then it reads and drops all it is
/// sent (answering nothing, relaying nothing) until the connection ends or `stop`.
fn swarm_peer(
    stream: TcpStream,
    role: Role,
    listen_port: u16,
    addrs: &[SocketAddr],
    stop: &std::sync::atomic::AtomicBool,
) {
    use std::io::Read;
    use std::sync::atomic::Ordering;
    let timeout = Duration::from_secs(2);
    let Ok(mut peer) = SecurePeer::handshake_within(stream, role, &RoomKey::Open, timeout) else {
        return;
    };
    let mut bytes = peer.hello_with(listen_port, false);
    for chunk in addrs.chunks(floodchat::wire::MAX_ADDRS) {
        floodchat::wire::Frame::Addrs(chunk.to_vec()).encode(&mut bytes);
    }
    if peer.send(&bytes).is_err() {
        return;
    }
    let mut stream = peer.into_stream();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = vec![0; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// The swarm of issue 16 against `victims`: 4 loopback IPs (`127.0.<net>.1..4`) x 16
/// listening ports, every fake peer telling all 64 addresses; from each IP, 8 connections
/// (the per-IP limit) to each victim, each retaken 0.5 s after it ends. Returns the threads.
fn eclipse_swarm(
    net: u8,
    victims: Vec<SocketAddr>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<thread::JoinHandle<()>> {
    use std::net::TcpListener;
    use std::sync::atomic::Ordering;
    let mut listeners = Vec::new();
    for i in 1..=4 {
        for _ in 0..16 {
            let l = TcpListener::bind((Ipv4Addr::new(127, 0, net, i), 0)).unwrap();
            l.set_nonblocking(true).unwrap();
            listeners.push(l);
        }
    }
    let addrs: std::sync::Arc<Vec<SocketAddr>> =
        std::sync::Arc::new(listeners.iter().map(|l| l.local_addr().unwrap()).collect());
    let mut threads = Vec::new();
    // Whoever dials a swarm address is answered, and held.
    for l in listeners {
        let (addrs, stop) = (addrs.clone(), stop.clone());
        threads.push(thread::spawn(move || {
            let port = l.local_addr().unwrap().port();
            while !stop.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        let (addrs, stop) = (addrs.clone(), stop.clone());
                        thread::spawn(move || swarm_peer(s, Role::Responder, port, &addrs, &stop));
                    }
                    // Attack pacing of an idle listener, not synchronisation.
                    Err(_) => thread::sleep(Duration::from_millis(50)),
                }
            }
        }));
    }
    // Inbound pressure: every slot of every victim, retaken at once.
    for victim in victims {
        for (_, &own) in addrs.iter().enumerate().filter(|(k, _)| k % 16 < 8) {
            let (addrs, stop) = (addrs.clone(), stop.clone());
            let ip = match own.ip() {
                std::net::IpAddr::V4(v4) => v4,
                std::net::IpAddr::V6(_) => unreachable!(),
            };
            threads.push(thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(s) = connect_from(ip, victim) {
                        swarm_peer(s, Role::Initiator, own.port(), &addrs, &stop);
                    }
                    // The swarm retakes a freed slot within 0.5 s (attack pacing).
                    thread::sleep(Duration::from_millis(500));
                }
            }));
        }
    }
    threads
}

/// Issue 16, eclipse: a swarm on 4 addresses x 16 ports holds every inbound slot of an
/// established client and of a newcomer, fills their books with its addresses and relays
/// nothing; every honest line still reaches both, promptly, for the whole run, and both keep
/// links to honest clients throughout.
#[test]
fn an_eclipse_swarm_never_cuts_a_client_off() {
    thread::scope(|scope| {
        for (rt, net) in [(Smol, 8u8), (AsyncStd, 10u8)] {
            scope.spawn(move || eclipse_on(rt, net));
        }
    });
}

fn eclipse_on(rt: Rt, net: u8) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let a = Spawn::new("a", rt).start();
    let mut honest = vec![a];
    for name in ["b", "c", "d"] {
        let c = Spawn::new(name, other(rt)).peer(&honest[0]).start();
        honest.push(c);
    }
    let victim = Spawn::new("victim", rt).peer(&honest[1]).start();
    honest[3].say("before the attack");
    victim.wait_printed(&["before the attack"]);
    let stop = Arc::new(AtomicBool::new(false));
    let mut swarm = eclipse_swarm(net, vec![victim.addr().parse().unwrap()], stop.clone());
    // The newcomer joins once the swarm holds the victim's slots, and is attacked too.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while victim.open_fds() < 25 {
        assert!(
            std::time::Instant::now() < deadline,
            "the swarm never got in"
        );
        thread::park_timeout(Duration::from_millis(50));
    }
    let newcomer = Spawn::new("newcomer", other(rt)).peer(&honest[2]).start();
    swarm.extend(eclipse_swarm(
        net + 1,
        vec![newcomer.addr().parse().unwrap()],
        stop.clone(),
    ));
    let mut said = Vec::new();
    let mut fewest = [usize::MAX; 2];
    for round in 0..12 {
        let line = format!("honest line {round}");
        said.push((std::time::Instant::now(), line.clone()));
        honest[round % 4].say(&line);
        victim.wait_printed(&[line.as_str()]);
        newcomer.wait_printed(&[line.as_str()]);
        for (i, c) in [&victim, &newcomer].into_iter().enumerate() {
            fewest[i] = fewest[i].min(connections_to_127_0_0_1(c.pid()));
        }
        // Keep the attack going between lines, as a room's pace does (not synchronisation).
        thread::sleep(Duration::from_secs(2));
    }
    let held = [&victim, &newcomer].map(|c| c.open_fds());
    eprintln!(
        "{rt:?}: fewest connections to honest clients over the run: victim {}, newcomer {}; \
         descriptors open at the end: {held:?}",
        fewest[0], fewest[1]
    );
    assert!(fewest.iter().all(|&n| n >= 1), "{fewest:?}");
    // Each line arrived within a few seconds of being said.
    for c in [&victim, &newcomer] {
        let printed = c.printed_timed();
        let slowest = said
            .iter()
            .map(|(at, line)| {
                let (got, _) = printed.iter().find(|(_, l)| l == line).expect("printed");
                got.saturating_duration_since(*at)
            })
            .max()
            .unwrap();
        eprintln!(
            "{rt:?}: {} heard every honest line, the slowest after {slowest:?}",
            c.name
        );
        assert!(slowest < Duration::from_secs(5), "{}: {slowest:?}", c.name);
    }
    stop.store(true, Ordering::Relaxed);
    for t in swarm {
        t.join().unwrap();
    }
    let mut all = honest;
    all.push(victim);
    all.push(newcomer);
    leave(&mut all);
}
