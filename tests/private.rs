//! Private rooms, with real clients on loopback on both runtimes: only holders of the room's
//! key (an invite's, or a passphrase's) get in; strangers learn and post nothing; the wire
//! between two members shows none of what they say, who they are or where they listen; an
//! altered record costs its link and nothing else; a recorded session cannot be replayed.
//!
//! Each test checks what a user would: what every client prints. Every wait is on a
//! condition; nothing sleeps to synchronise.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Instant;

use common::{Client, DEADLINE, Rt, SecurePeer, Spawn, connect_from, leave_all};
use floodchat::ClientId;
use floodchat::secure::{Framing, Invite, Link, LinkError, PROLOGUE_LEN, Role, RoomKey};
use floodchat::wire::GREETING;

use Rt::{AsyncStd, Smol};

/// What a member prints when a client without the key knocks.
const KEYLESS_TURNED_AWAY: &str = "a client without the room key was turned away";
/// What a member prints when a client with another key knocks.
const WRONG_KEY_TURNED_AWAY: &str = "a client with a wrong room key was turned away";
/// What a client without the key is told.
const NEEDS_KEY: &str = "this room needs a key: ask a member for an invite";
/// What a client with another key is told.
const WRONG_KEY: &str = "wrong room key";

/// Starts a new private room on `rt` and returns its first member and its invite.
fn private_room(name: &str, rt: Rt) -> (Client, Invite) {
    let member = Spawn::new(name, rt).arg("--private").start();
    let invite: Invite = member.invite().parse().expect("a valid invite");
    assert_eq!(
        invite.addr.to_string(),
        member.addr(),
        "the invite names the member"
    );
    (member, invite)
}

/// The same invite, pointing at `addr`.
fn invite_at(invite: &Invite, addr: SocketAddr) -> String {
    Invite { addr, ..*invite }.to_string()
}

/// Waits until `client` has said `count` times that a link came up.
fn wait_links(client: &Client, count: usize) {
    client.wait_stderr_count("a link up", count, |l| {
        l.contains("connected to ") || l.ends_with(" joined")
    });
}

/// Three clients of a private room: the first starts it, the second joins with its invite
/// (`--peer`), the third with the invite the second printed (at the start-up prompt).
fn three_chat_in_a_private_room(rts: [Rt; 3]) {
    let (a, invite) = private_room("a", rts[0]);
    let b = Spawn::new("b", rts[1])
        .arg("--peer")
        .arg(&invite.to_string())
        .start();
    // A member's own invite: the same key, and its own address.
    let b_invite: Invite = b.invite().parse().unwrap();
    assert_eq!(b_invite.key, invite.key, "one room, one key");
    assert_eq!(b_invite.addr.to_string(), b.addr());
    let c = Spawn::new("c", rts[2])
        .answer(&b_invite.to_string())
        .start();
    let mut clients = [a, b, c];
    for c in &clients {
        let said = c.errors();
        assert!(
            !said.iter().any(|l| l.contains("starting a new network")),
            "{} joined the room, yet says otherwise: {said:#?}",
            c.name
        );
    }
    let mut want = Vec::new();
    for (i, c) in clients.iter_mut().enumerate() {
        let line = format!("a private word from client {i}");
        c.say(&line);
        want.push(line);
    }
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    for c in &clients {
        c.wait_printed(&want);
    }
    leave_all(&mut clients, &want);
}

#[test]
fn a_private_room_of_three_chats_on_smol() {
    three_chat_in_a_private_room([Smol; 3]);
}

#[test]
fn a_private_room_of_three_chats_on_async_std() {
    three_chat_in_a_private_room([AsyncStd; 3]);
}

#[test]
fn a_private_room_of_three_chats_on_mixed_runtimes() {
    three_chat_in_a_private_room([AsyncStd, Smol, AsyncStd]);
}

/// Knocks on `addr` by hand in `room`: the handshake must fail; returns why, and every byte
/// the member sent until it closed the connection.
fn knock(addr: &str, room: &RoomKey) -> (LinkError, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let identity = floodchat::secure::Identity::from_seed(0x5742_4e47);
    let (mut link, first) = Link::new(Role::Initiator, &identity, room, [7; 32]);
    stream.write_all(&first).unwrap();
    let mut received = Vec::new();
    let mut buf = [0; 4096];
    let mut error = None;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("knocking on {addr}: {e}"),
        };
        received.extend_from_slice(&buf[..n]);
        let mut reply = Vec::new();
        let mut plain = Vec::new();
        match link.read(&buf[..n], &mut reply, &mut plain) {
            Err(e) => error = error.or(Some(e)),
            Ok(_) => {
                assert!(plain.is_empty(), "a stranger opened a record");
                let _ = stream.write_all(&reply);
            }
        }
        assert!(!link.is_established(), "a stranger got in");
    }
    (error.expect("the handshake failed"), received)
}

/// Strangers, real clients and hand-made peers, without the key or with another one: each is
/// told why, the members say they turned it away, and neither side hears the other.
#[test]
fn strangers_without_the_key_learn_nothing_and_post_nothing() {
    for (rt, other) in [(Smol, AsyncStd), (AsyncStd, Smol)] {
        let (mut a, invite) = private_room("a", rt);
        let mut b = Spawn::new("b", other)
            .arg("--peer")
            .arg(&invite.to_string())
            .start();
        a.say("said before the strangers came");
        b.wait_printed(&["said before the strangers came"]);

        // A client of an open room, given a member's address.
        let mut keyless = Spawn::new("keyless", other).peer(&a).start();
        keyless.wait_stderr("the need for a key", |l| l.contains(NEEDS_KEY));
        a.wait_stderr("the keyless client turned away", |l| {
            l.contains(KEYLESS_TURNED_AWAY)
        });
        // A client with an invite of another room, to a member's address.
        let wrong = Invite {
            key: invite.key.map(|b| b ^ 0x5a),
            ..invite
        };
        let mut wrong_key = Spawn::new("wrong-key", rt)
            .arg("--peer")
            .arg(&wrong.to_string())
            .start();
        wrong_key.wait_stderr("the wrong key", |l| l.contains(WRONG_KEY));
        a.wait_stderr("the wrong key turned away", |l| {
            l.contains(WRONG_KEY_TURNED_AWAY)
        });

        // By hand: each gets the member's clear prologue and, with a wrong key, its two-byte
        // refusal; then the member closes. No handshake message, no record: no Hello, no
        // address, no text.
        let (why, received) = knock(&b.addr(), &RoomKey::Open);
        assert_eq!(why, LinkError::NeedsKey);
        assert_eq!(
            received,
            [&GREETING[..], &[1]].concat(),
            "sent to the keyless"
        );
        b.wait_stderr("the hand-made keyless peer turned away", |l| {
            l.contains(KEYLESS_TURNED_AWAY)
        });
        let (why, received) = knock(&b.addr(), &wrong.room());
        assert_eq!(why, LinkError::WrongKey);
        assert_eq!(
            received,
            [&GREETING[..], &[1], &[0, 0]].concat(),
            "sent to a wrong key"
        );
        b.wait_stderr("the hand-made wrong key turned away", |l| {
            l.contains(WRONG_KEY_TURNED_AWAY)
        });

        // The strangers type, and leave having printed only their own lines: nothing of the
        // room, and no link made.
        for (stranger, line) in [
            (&mut keyless, "the keyless stranger posts this"),
            (&mut wrong_key, "the stranger with a wrong key posts this"),
        ] {
            stranger.say(line);
            stranger.wait_printed(&[line]);
            let said = stranger.errors();
            assert!(
                !said
                    .iter()
                    .any(|l| l.contains("connected to") || l.contains(" joined")),
                "{} made a link: {said:#?}",
                stranger.name
            );
            leave_all(std::slice::from_mut(stranger), &[line]);
        }
        b.say("said after the strangers left");
        a.wait_printed(&["said after the strangers left"]);
        // The members printed their own lines only.
        leave_all(
            &mut [a, b],
            &[
                "said before the strangers came",
                "said after the strangers left",
            ],
        );
    }
}

/// A passphrase keys the room: members give it in `FLOODCHAT_PASSPHRASE` or in a file and
/// join with a bare address; another passphrase is a wrong key.
#[test]
fn a_passphrase_keys_a_private_room() {
    let file = std::env::temp_dir().join(format!("floodchat-passphrase-{}", std::process::id()));
    std::fs::write(&file, "correct horse battery staple\n").unwrap();
    let mut a = Spawn::new("a", Smol)
        .env("FLOODCHAT_PASSPHRASE", "correct horse battery staple")
        .start();
    let mut b = Spawn::new("b", AsyncStd)
        .arg("--passphrase-file")
        .arg(file.to_str().unwrap())
        .peer(&a)
        .start();
    let mut other = Spawn::new("other", AsyncStd)
        .env("FLOODCHAT_PASSPHRASE", "incorrect horse battery staple")
        .peer(&a)
        .start();
    other.wait_stderr("the wrong key", |l| l.contains(WRONG_KEY));
    a.wait_stderr("the wrong key turned away", |l| {
        l.contains(WRONG_KEY_TURNED_AWAY)
    });
    other.say("from another passphrase");
    other.wait_printed(&["from another passphrase"]);
    leave_all(
        std::slice::from_mut(&mut other),
        &["from another passphrase"],
    );
    a.say("from a");
    b.say("from b");
    let want = ["from a", "from b"];
    a.wait_printed(&want);
    b.wait_printed(&want);
    leave_all(&mut [a, b], &want);
    let _ = std::fs::remove_file(&file);
}

/// The IP the [`Proxy`] connects from.
const PROXY_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 9);

/// Both directions of one connection through the [`Proxy`], as the wire carried them.
#[derive(Debug, Default, Clone)]
struct Capture {
    /// From the client that dialed the proxy to the member behind it.
    up: Vec<u8>,
    /// From the member back.
    down: Vec<u8>,
    up_ended: bool,
    down_ended: bool,
}

type Captures = Arc<(Mutex<Vec<Capture>>, Condvar)>;

/// A TCP proxy inside the test, in front of one member: records every byte both ways, and
/// on request flips one byte inside the next record going up. It reaches the member from
/// [`PROXY_SOURCE`], so where a client behind it claims to listen is, as the member sees it,
/// at that IP, where nobody listens: the member cannot link with that client around it.
struct Proxy {
    addr: SocketAddr,
    captures: Captures,
    tamper: Arc<AtomicBool>,
}

impl Proxy {
    fn start(member: &Client) -> Self {
        let to: SocketAddr = member.addr().parse().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let captures = Captures::default();
        let tamper = Arc::new(AtomicBool::new(false));
        let (shared, flip) = (captures.clone(), tamper.clone());
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Some(member) = connect_from(PROXY_SOURCE, to) else {
                    continue;
                };
                member.set_write_timeout(None).unwrap();
                let index = {
                    let mut all = shared.0.lock().unwrap();
                    all.push(Capture::default());
                    all.len() - 1
                };
                let (c2, m2) = (client.try_clone().unwrap(), member.try_clone().unwrap());
                let (up, down) = (shared.clone(), shared.clone());
                let flip = flip.clone();
                thread::spawn(move || pump(client, member, index, true, &up, Some(&flip)));
                thread::spawn(move || pump(m2, c2, index, false, &down, None));
            }
        });
        Self {
            addr,
            captures,
            tamper,
        }
    }

    /// Flips a byte in the body of the next record a client sends up through the proxy.
    fn arm(&self) {
        self.tamper.store(true, Ordering::SeqCst);
    }

    /// Flips nothing more; whether it was still armed (no record went up since).
    fn disarm(&self) -> bool {
        self.tamper.swap(false, Ordering::SeqCst)
    }

    /// Waits until `done` holds for the captures; returns them.
    fn wait(&self, what: &str, done: impl Fn(&[Capture]) -> bool) -> Vec<Capture> {
        let deadline = Instant::now() + DEADLINE;
        let (lock, cvar) = &*self.captures;
        let mut all = lock.lock().unwrap();
        while !done(&all) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for the proxy: {what}");
            all = cvar.wait_timeout(all, left).unwrap().0;
        }
        all.clone()
    }

    /// Waits until every proxied connection has ended both ways; returns the captures.
    fn ended(&self) -> Vec<Capture> {
        self.wait("every connection to end", |all| {
            all.iter().all(|c| c.up_ended && c.down_ended)
        })
    }
}

/// Copies one direction of a proxied connection, recording it. With `tamper` armed, the
/// first record body that begins after the handshake (found with [`Framing`]) gets one byte
/// flipped.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    index: usize,
    up: bool,
    captures: &Captures,
    tamper: Option<&AtomicBool>,
) {
    let mut framing = Framing::default();
    // Messages begun so far: a dialer's first two are handshake messages, records follow.
    let mut messages = 0;
    let mut offset = 0u64;
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &mut buf[..n];
        let mut bodies = Vec::new();
        framing.feed(chunk, |at, len| bodies.push((at, len)));
        for (at, len) in bodies {
            messages += 1;
            let armed = tamper.is_some_and(|t| t.load(Ordering::SeqCst));
            if armed && messages > 2 && len > 0 && at < offset + n as u64 {
                chunk[(at - offset) as usize] ^= 0x01;
                tamper.unwrap().store(false, Ordering::SeqCst);
            }
        }
        offset += n as u64;
        {
            let mut all = captures.0.lock().unwrap();
            let capture = &mut all[index];
            if up {
                &mut capture.up
            } else {
                &mut capture.down
            }
            .extend_from_slice(chunk);
        }
        captures.1.notify_all();
        if to.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
    let mut all = captures.0.lock().unwrap();
    if up {
        all[index].up_ended = true;
    } else {
        all[index].down_ended = true;
    }
    drop(all);
    captures.1.notify_all();
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The ways an address may be written: as text, and as the wire encodes it.
fn address_forms(port: u16) -> Vec<(String, Vec<u8>)> {
    let [hi, lo] = port.to_be_bytes();
    vec![
        (
            format!("127.0.0.1:{port} as text"),
            format!("127.0.0.1:{port}").into_bytes(),
        ),
        (
            format!("port {port} as text"),
            format!(":{port}").into_bytes(),
        ),
        (
            format!("127.0.0.1:{port} as the wire encodes it"),
            vec![127, 0, 0, 1, hi, lo],
        ),
    ]
}

/// The ways a client id may be written: as a notice prints it, and as the wire encodes it.
fn id_forms(name: &str, id: ClientId) -> Vec<(String, Vec<u8>)> {
    vec![
        (
            format!("{name}'s id {id} as text"),
            id.to_string().into_bytes(),
        ),
        (
            format!("{name}'s id {id} as the wire encodes it"),
            id.0.to_be_bytes().to_vec(),
        ),
    ]
}

/// Two members talk through the proxy, a third linked to both; the capture of every proxied
/// connection holds none of the lines, ids, addresses or ports, nor a private room's key.
fn the_wire_hides_everything(private: bool, rts: [Rt; 3]) {
    let mut a = Spawn::new("a", rts[0]);
    if private {
        a = a.arg("--private");
    }
    let a = a.start();
    let invite: Option<Invite> = private.then(|| a.invite().parse().unwrap());
    let room = invite.map_or(RoomKey::Open, |i| i.room());
    let join = |name: &str, rt: Rt, addr: SocketAddr| {
        let contact = match &invite {
            Some(invite) => invite_at(invite, addr),
            None => addr.to_string(),
        };
        Spawn::new(name, rt).arg("--peer").arg(&contact).start()
    };
    let c = join("c", rts[2], a.addr().parse().unwrap());
    a.wait_stderr("c's link", |l| l.ends_with(" joined"));
    let proxy = Proxy::start(&a);
    let b = join("b", rts[1], proxy.addr);
    b.wait_stderr("the link through the proxy", |l| {
        l.contains(&format!("connected to {}", proxy.addr))
    });
    // b and c hear of each other through a (and so through the proxy) and link, whichever
    // dials.
    wait_links(&c, 2);
    let mut clients = [a, b, c];
    let mut lines = Vec::new();
    for (i, c) in clients.iter_mut().enumerate() {
        let line = format!("nobody on the wire may read this line from client {i}");
        c.say(&line);
        lines.push(line);
    }
    let want: Vec<&str> = lines.iter().map(String::as_str).collect();
    for c in &clients {
        c.wait_printed(&want);
    }
    // Each member's id, proven by a handshake with a peer of the test.
    let ids: Vec<ClientId> = clients
        .iter()
        .map(|c| {
            SecurePeer::connect_to(&c.addr(), &room)
                .unwrap_or_else(|e| panic!("a handshake with {}: {e:?}", c.name))
                .remote_id()
        })
        .collect();
    let ports: Vec<u16> = clients.iter().map(|c| c.port).collect();
    leave_all(&mut clients, &want);
    let captures = proxy.ended();

    let mut secrets: Vec<(String, Vec<u8>)> = Vec::new();
    for line in &lines {
        secrets.push((format!("the line {line:?}"), line.clone().into_bytes()));
    }
    for (name, id) in ["a", "b", "c"].into_iter().zip(&ids) {
        secrets.extend(id_forms(name, *id));
    }
    for port in ports.into_iter().chain([proxy.addr.port()]) {
        secrets.extend(address_forms(port));
    }
    if let Some(invite) = &invite {
        let text = invite.to_string();
        let (_, hex) = text.split_once(':').unwrap();
        let (hex, _) = hex.split_once('@').unwrap();
        secrets.push(("the room key as text".into(), hex.as_bytes().to_vec()));
        secrets.push(("the room key".into(), invite.key.to_vec()));
    }
    assert!(!captures.is_empty(), "nothing went through the proxy");
    let prologue = [&GREETING[..], &[u8::from(private)]].concat();
    let mut carried = 0;
    for (i, capture) in captures.iter().enumerate() {
        for (way, bytes) in [("up", &capture.up), ("down", &capture.down)] {
            if bytes.is_empty() {
                continue;
            }
            // Only the prologue is in the clear: protocol 3, and the kind of room.
            assert!(
                bytes.starts_with(&prologue),
                "connection {i} {way} begins with {:?}",
                &bytes[..bytes.len().min(PROLOGUE_LEN)]
            );
            for (what, secret) in &secrets {
                assert!(
                    !contains(bytes, secret),
                    "{what} is in the clear on connection {i} {way}"
                );
            }
            carried += bytes.len();
        }
    }
    // The lines did cross the proxy, sealed.
    assert!(
        carried > lines.iter().map(String::len).sum(),
        "only {carried} bytes crossed the proxy"
    );
}

#[test]
fn the_wire_of_a_private_room_shows_no_text_ids_or_addresses() {
    the_wire_hides_everything(true, [Smol, AsyncStd, Smol]);
}

#[test]
fn the_wire_of_an_open_room_shows_no_text_ids_or_addresses() {
    the_wire_hides_everything(false, [AsyncStd, Smol, AsyncStd]);
}

/// One byte flipped inside a record from b to a: a drops that link and says why, and the
/// room heals: b links again and its line reaches a. Only b can dial around the proxy, and
/// a link that one client dialed twice keeps the older, the proxied one: so the flip always
/// lands on the link. (With a third member, a's outbound quota could dial b by what the
/// third told it, and the duplicate rule could close the proxied link first: 10 runs in 30.)
#[test]
fn an_altered_record_costs_its_link_and_the_room_heals() {
    for (rt, other) in [(Smol, AsyncStd), (AsyncStd, Smol)] {
        let (a, invite) = private_room("a", rt);
        let proxy = Proxy::start(&a);
        let mut b = Spawn::new("b", other)
            .arg("--peer")
            .arg(&invite_at(&invite, proxy.addr))
            .start();
        b.wait_stderr("the link through the proxy", |l| {
            l.contains(&format!("connected to {}", proxy.addr))
        });
        b.say("before the flip");
        a.wait_printed(&["before the flip"]);
        proxy.arm();
        b.say("sent through an altered link");
        let reason = "a record failed authentication: altered or replayed in transit";
        a.wait_stderr("the altered record", |l| l.contains(reason));
        assert!(!proxy.disarm(), "flipped");
        let want = ["before the flip", "sent through an altered link"];
        for client in [&a, &b] {
            client.wait_printed(&want);
        }
        leave_all(&mut [a, b], &want);
    }
}

/// What b sent a through the proxy, replayed byte for byte to a member that never heard b's
/// line, and to a itself: both refuse it at the handshake, and print nothing.
#[test]
fn a_recorded_session_replayed_to_a_member_fails_and_prints_nothing() {
    for (rt, other) in [(Smol, AsyncStd), (AsyncStd, Smol)] {
        let (a, invite) = private_room("a", rt);
        let proxy = Proxy::start(&a);
        let mut b = Spawn::new("b", other)
            .arg("--peer")
            .arg(&invite_at(&invite, proxy.addr))
            .start();
        b.say("recorded on its way to a");
        a.wait_printed(&["recorded on its way to a"]);
        leave_all(&mut [b], &["recorded on its way to a"]);
        let captures = proxy.ended();
        let recorded = &captures[0].up;
        // A member of the same room that never heard b: it has the key, and no link (its
        // invite names a port where nobody listens).
        let fresh = Spawn::new("fresh", other)
            .arg("--peer")
            .arg(&invite_at(&invite, "127.0.0.1:1".parse().unwrap()))
            .start();
        for member in [&fresh, &a] {
            let mut replay = TcpStream::connect(member.addr()).unwrap();
            replay.set_read_timeout(Some(DEADLINE)).unwrap();
            let local = replay.local_addr().unwrap().to_string();
            let _ = replay.write_all(recorded);
            let mut answer = Vec::new();
            let _ = replay.read_to_end(&mut answer);
            member.wait_stderr("the replay refused", |l| {
                l.contains(&local) && l.contains("the encrypted handshake failed")
            });
            // The member answered the replayed first message and nothing more: its prologue
            // and one handshake message, no record.
            let mut messages = 0;
            Framing::default().feed(&answer, |_, _| messages += 1);
            assert!(
                messages <= 1,
                "{} sent {messages} messages to the replay",
                member.name
            );
        }
        leave_all(&mut [fresh], &[]);
        leave_all(&mut [a], &["recorded on its way to a"]);
    }
}

#[test]
fn help_describes_private_rooms() {
    let bin = env!("CARGO_BIN_EXE_floodchat");
    let help = std::process::Command::new(bin)
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8(help.stdout).unwrap();
    for flag in [
        "--private",
        "--passphrase-file",
        "FLOODCHAT_PASSPHRASE",
        "invite",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
}
