//! A hostile network against a live room: real clients on loopback, both runtimes, each
//! attack bounded in count and time. Each test asserts what a user would check: a newcomer
//! still joins and chats, memory stays bounded, no control character reaches stdout, a full
//! room keeps running and says so.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use common::{Client, Rt, SecurePeer, Spawn};
use floodchat::secure::{Role, RoomKey};
use socket2::{Domain, Socket, Type};

use Rt::{AsyncStd, Smol};

/// Source addresses of the attack: many loopback IPs, so per-IP limits alone cannot answer it.
fn attacker_ips(n: u8) -> impl Iterator<Item = Ipv4Addr> {
    (1..=n).map(|i| Ipv4Addr::new(127, 0, 9, i))
}

/// A TCP connection to `to` from `ip`; `None` if it was refused.
fn connect_from(ip: Ipv4Addr, to: SocketAddr) -> Option<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
    socket.bind(&SocketAddr::from((ip, 0)).into()).ok()?;
    socket
        .connect_timeout(&to.into(), Duration::from_secs(2))
        .ok()?;
    let stream: TcpStream = socket.into();
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    Some(stream)
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

/// How many established TCP connections of process `pid` have their other end at
/// `127.0.0.1` (where every honest client of these tests is), from `/proc`.
fn connections_to_127_0_0_1(pid: u32) -> usize {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().into_owned();
                    Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
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
