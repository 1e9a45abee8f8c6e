//! Fuzz entry point `secure`: the record layer of protocol 3 ([`crate::secure::Link`]) alone,
//! with deterministic keys.
//!
//! Input layout (read with [`arbitrary`]): a mode byte, then what the mode reads.
//!
//! - Mode `% 4` of 0 or 1: two [`Link`]s, an initiator and a responder, each in a room picked
//!   by a byte (0: open; otherwise one of three private rooms), with keys and handshake seeds
//!   picked by bytes, then up to [`MAX_OPS`] [`Op`]s: what each side seals, how the bytes on
//!   the wire are split into reads, and what goes wrong on the way (bytes flipped, cut off,
//!   sent twice or forged). At the end every byte on the wire arrives and each established
//!   side seals a last record, which arrives too.
//! - Mode `% 4` of 2 or 3: garbage read by a fresh responder (2) or initiator (3), in chunks,
//!   after a valid prologue when bit 2 of the mode is set.
//!
//! Checked after every read:
//! - nothing panics; a link buffers at most one message (2 + 65,535 bytes), and a read's
//!   handshake answer is one message at most;
//! - after an error a link reads nothing and writes nothing;
//! - a link is established only with the other side's key (garbage never establishes one),
//!   and the client id it proves is that key's;
//! - the plaintext a side opens is only ever a prefix of what the other side sealed, in
//!   order, whatever went wrong on the way.
//!
//! Checked at the end:
//! - with nothing gone wrong and one room: both sides are established, and each opened all
//!   the other sealed;
//! - in different rooms: neither side is established, and both failed;
//! - whatever went wrong towards a side, it opened all that was sealed for it, or it failed,
//!   or it still waits for the rest of a message: nothing is dropped silently (the last
//!   record makes a dropped record before it fail).

use arbitrary::{Arbitrary, Result, Unstructured};

use crate::secure::{Identity, Link, MAX_HANDSHAKE, MAX_RECORD, PROLOGUE_LEN, Read, Role, RoomKey};
use crate::wire::GREETING;

/// Most operations a fuzz input is read as.
pub const MAX_OPS: usize = 256;

/// The most bytes a link may hold between reads: one message and its length.
const MAX_BUFFERED: usize = 2 + MAX_RECORD;

/// One step of a pair of links. `side` picks the writer: even is the initiator.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// The side seals a message of `len * 293 + extra` bytes, if established and not failed.
    Seal {
        /// The writer.
        side: u8,
        /// Picks the length (up to 74,715 + 255 bytes: two records' worth).
        len: u8,
        /// Adds to the length.
        extra: u8,
    },
    /// The next `n + 1` bytes the side wrote arrive at the other side, in one read.
    Deliver {
        /// The writer.
        side: u8,
        /// How many bytes, less one.
        n: u16,
    },
    /// All the side wrote arrives, in one read.
    Flush(u8),
    /// A byte on the wire from the side, not yet read, is xored with `mask`.
    Flip {
        /// The writer.
        side: u8,
        /// Picks the byte.
        at: u16,
        /// What it is xored with.
        mask: u8,
    },
    /// The next `n + 1` bytes the side wrote are lost.
    Drop {
        /// The writer.
        side: u8,
        /// How many bytes, less one.
        n: u16,
    },
    /// One of the messages the side wrote (handshake or record) is sent again.
    Replay {
        /// The writer.
        side: u8,
        /// Picks the message.
        which: u8,
    },
    /// These bytes arrive as if from the side, before what it wrote and has not arrived.
    Inject {
        /// The side they seem to come from.
        side: u8,
        /// The bytes.
        bytes: Vec<u8>,
    },
}

/// Runs one fuzz input; panics if the record layer breaks a rule listed in the module docs.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(mode) = u8::arbitrary(&mut u) else {
        return;
    };
    match mode % 4 {
        0 | 1 => {
            let _ = pair(&mut u);
        }
        2 => garbage(Role::Responder, mode & 4 != 0, u),
        _ => garbage(Role::Initiator, mode & 4 != 0, u),
    }
}

/// The room a byte picks.
fn room(b: u8) -> RoomKey {
    match b % 4 {
        0 => RoomKey::Open,
        k => RoomKey::private(&[k]),
    }
}

/// The bytes a link holds between reads, from its `Debug` (which shows the length only).
fn buffered(link: &Link) -> usize {
    let debug = format!("{link:?}");
    let at = debug
        .find("partial: ")
        .expect("Link's Debug shows its partial message")
        + 9;
    let digits: String = debug[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().expect("a length")
}

/// One side of a pair.
struct Side {
    link: Link,
    id: crate::wire::ClientId,
    /// Bytes written, not yet arrived at the other side.
    wire: Vec<u8>,
    /// Every whole message written (after the prologue), to replay.
    messages: Vec<Vec<u8>>,
    /// Bytes written so far that the message split has not yet cut into messages.
    framing: Vec<u8>,
    prologue_left: usize,
    /// Plaintext sealed, and plaintext opened of what the other side sealed.
    sealed: Vec<u8>,
    opened: Vec<u8>,
    failed: bool,
    /// Whether what the other side wrote went wrong on the way to this side.
    tampered: bool,
}

impl Side {
    fn new(role: Role, identity: &Identity, room: &RoomKey, seed: u8) -> Self {
        let (link, first) = Link::new(role, identity, room, [seed; 32]);
        let mut side = Self {
            link,
            id: identity.client_id(),
            wire: Vec::new(),
            messages: Vec::new(),
            framing: Vec::new(),
            prologue_left: PROLOGUE_LEN,
            sealed: Vec::new(),
            opened: Vec::new(),
            failed: false,
            tampered: false,
        };
        assert!(first.len() >= PROLOGUE_LEN, "no prologue");
        assert_eq!(first[..GREETING.len()], GREETING, "the prologue's greeting");
        side.wrote(&first);
        side
    }

    /// Notes bytes the link wrote: on the wire, and cut into messages to replay.
    fn wrote(&mut self, bytes: &[u8]) {
        self.wire.extend_from_slice(bytes);
        let skip = self.prologue_left.min(bytes.len());
        self.prologue_left -= skip;
        self.framing.extend_from_slice(&bytes[skip..]);
        while self.framing.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([self.framing[0], self.framing[1]]));
            if self.framing.len() < 2 + len {
                break;
            }
            let rest = self.framing.split_off(2 + len);
            self.messages
                .push(std::mem::replace(&mut self.framing, rest));
        }
    }
}

/// Reads `bytes` into `to`, as from `from`, and checks the read.
fn read(
    to: &mut Side,
    from_id: crate::wire::ClientId,
    from_sealed: &[u8],
    bytes: &[u8],
) -> Vec<u8> {
    let was_established = to.link.is_established();
    let mut out = Vec::new();
    let mut plain = Vec::new();
    let result = to.link.read(bytes, &mut out, &mut plain);
    if to.failed {
        assert_eq!(result, Ok(Read::Bytes), "a failed link read on");
        assert!(out.is_empty() && plain.is_empty(), "a failed link read on");
        return out;
    }
    match result {
        Err(_) => {
            to.failed = true;
            assert!(!to.link.is_mid_record(), "a failed link holds a message");
        }
        Ok(Read::Established(id)) => {
            assert!(!was_established, "established twice");
            assert_eq!(id, from_id, "established with a key not the other side's");
        }
        Ok(Read::Bytes) => {}
    }
    assert!(
        out.len() <= 2 + MAX_HANDSHAKE,
        "a read answered {} bytes",
        out.len()
    );
    if to.link.is_established() {
        assert_eq!(
            to.link.remote(),
            Some(from_id),
            "the remote of an established link"
        );
    } else if !to.failed {
        // (A read that fails may have opened records before the one that failed it.)
        assert!(plain.is_empty(), "plaintext before the handshake ended");
    }
    assert!(
        buffered(&to.link) <= MAX_BUFFERED,
        "a link buffers {} bytes",
        buffered(&to.link)
    );
    to.opened.extend_from_slice(&plain);
    assert!(
        from_sealed.starts_with(&to.opened),
        "opened {} bytes that are not a prefix of the {} sealed",
        to.opened.len(),
        from_sealed.len()
    );
    out
}

/// Moves the first `n` bytes `sides[from]` wrote to the other side, and what it answers back.
fn deliver(sides: &mut [Side; 2], from: usize, n: usize) {
    let n = n.min(sides[from].wire.len());
    let bytes: Vec<u8> = sides[from].wire.drain(..n).collect();
    let [a, b] = sides;
    let (writer, reader) = if from == 0 { (a, b) } else { (b, a) };
    let out = read(reader, writer.id, &writer.sealed, &bytes);
    reader.wrote(&out);
}

fn pair(u: &mut Unstructured<'_>) -> Result<()> {
    let [room_i, room_r, key_i, key_r, seed_i, seed_r] = <[u8; 6]>::arbitrary(u)?;
    let (room_i, room_r) = (room(room_i), room(room_r));
    let same_room = room_i == room_r;
    let identity = |k: u8| Identity::from_seed(u64::from(k % 8));
    let mut sides = [
        Side::new(Role::Initiator, &identity(key_i), &room_i, seed_i),
        Side::new(Role::Responder, &identity(key_r), &room_r, seed_r),
    ];
    let mut ops = Vec::new();
    while ops.len() < MAX_OPS && !u.is_empty() {
        ops.push(Op::arbitrary(u)?);
    }
    let mut counter = 0u8;
    for op in ops {
        match op {
            Op::Seal { side, len, extra } => {
                let s = &mut sides[usize::from(side % 2)];
                if s.link.is_established() && !s.failed {
                    let len = usize::from(len) * 293 + usize::from(extra);
                    let plain: Vec<u8> = (0..len)
                        .map(|_| {
                            counter = counter.wrapping_add(1);
                            counter
                        })
                        .collect();
                    let mut out = Vec::new();
                    s.link.seal(&plain, &mut out);
                    s.sealed.extend_from_slice(&plain);
                    s.wrote(&out);
                }
            }
            Op::Deliver { side, n } => {
                deliver(&mut sides, usize::from(side % 2), usize::from(n) + 1)
            }
            Op::Flush(side) => deliver(&mut sides, usize::from(side % 2), usize::MAX),
            Op::Flip { side, at, mask } => {
                let from = usize::from(side % 2);
                let s = &mut sides[from];
                if mask != 0 && !s.wire.is_empty() {
                    let at = usize::from(at) % s.wire.len();
                    s.wire[at] ^= mask;
                    sides[1 - from].tampered = true;
                }
            }
            Op::Drop { side, n } => {
                let from = usize::from(side % 2);
                let s = &mut sides[from];
                if !s.wire.is_empty() {
                    let n = (usize::from(n) + 1).min(s.wire.len());
                    s.wire.drain(..n);
                    sides[1 - from].tampered = true;
                }
            }
            Op::Replay { side, which } => {
                let from = usize::from(side % 2);
                let s = &mut sides[from];
                if !s.messages.is_empty() {
                    let message = s.messages[usize::from(which) % s.messages.len()].clone();
                    s.wire.extend_from_slice(&message);
                    sides[1 - from].tampered = true;
                }
            }
            Op::Inject { side, bytes } => {
                let from = usize::from(side % 2);
                if !bytes.is_empty() {
                    let s = &mut sides[from];
                    s.wire.splice(0..0, bytes);
                    sides[1 - from].tampered = true;
                }
            }
        }
    }
    // Everything arrives; then each established side seals a last record, which arrives too.
    let settle = |sides: &mut [Side; 2]| {
        while sides.iter().any(|s| !s.wire.is_empty()) {
            for from in 0..2 {
                deliver(sides, from, usize::MAX);
            }
        }
    };
    settle(&mut sides);
    for s in &mut sides {
        if s.link.is_established() && !s.failed {
            let mut out = Vec::new();
            s.link.seal(b"the end", &mut out);
            s.sealed.extend_from_slice(b"the end");
            s.wrote(&out);
        }
    }
    settle(&mut sides);
    let tampered = sides.iter().any(|s| s.tampered);
    if !same_room {
        for s in &sides {
            assert!(!s.link.is_established(), "established across rooms");
            if !tampered {
                assert!(s.failed, "a link in another room did not fail");
            }
        }
    } else if !tampered {
        for s in &sides {
            assert!(!s.failed, "a link failed with nothing gone wrong");
            assert!(
                s.link.is_established(),
                "not established with nothing gone wrong"
            );
        }
    }
    for to in 0..2 {
        let (reader, writer) = (&sides[to], &sides[1 - to]);
        let all = reader.opened == writer.sealed;
        // Towards a side whose peer failed before the last record, or that never finished the
        // handshake, what went wrong may have cut off the end.
        let cut = reader.tampered && (writer.failed || !reader.link.is_established());
        assert!(
            all || reader.failed || reader.link.is_mid_record() || cut,
            "side {to} silently lacks {} of the {} bytes sealed for it",
            writer.sealed.len() - reader.opened.len(),
            writer.sealed.len()
        );
        if !reader.tampered && !writer.failed && same_room && !tampered {
            assert!(all, "side {to} did not open all sealed for it");
        }
    }
    Ok(())
}

/// Garbage into a fresh link, in chunks: it never establishes, never opens anything, and
/// holds at most one message.
fn garbage(role: Role, prologue: bool, mut u: Unstructured<'_>) {
    let Ok(room_byte) = u8::arbitrary(&mut u) else {
        return;
    };
    let room = room(room_byte);
    let (mut link, _) = Link::new(role, &Identity::from_seed(1), &room, [7; 32]);
    let mut stream = Vec::new();
    if prologue {
        stream.extend_from_slice(&GREETING);
        stream.push(u8::from(room.is_private()));
    }
    let Ok(chunks) = Vec::<u8>::arbitrary(&mut u) else {
        return;
    };
    stream.extend_from_slice(u.take_rest());
    let mut rest = &stream[..];
    let mut failed = false;
    for size in chunks
        .iter()
        .map(|&c| usize::from(c) + 1)
        .chain(std::iter::once(usize::MAX))
    {
        let (bytes, after) = rest.split_at(size.min(rest.len()));
        rest = after;
        let mut out = Vec::new();
        let mut plain = Vec::new();
        let result = link.read(bytes, &mut out, &mut plain);
        assert!(plain.is_empty(), "garbage opened");
        assert!(!link.is_established(), "garbage established a link");
        assert!(
            !matches!(result, Ok(Read::Established(_))),
            "garbage established a link"
        );
        if failed {
            assert!(out.is_empty() && result.is_ok(), "a failed link read on");
        }
        // At most the refusal of a wrong key: an empty message.
        assert!(out.is_empty() || out == [0, 0], "garbage answered {out:?}");
        failed |= result.is_err();
        assert!(
            buffered(&link) <= MAX_BUFFERED,
            "a link buffers {} bytes",
            buffered(&link)
        );
        if rest.is_empty() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    //! The hand-made seeds of `fuzz/corpus/secure/`, written out as operations.
    //!
    //! `FLOODCHAT_WRITE_SEEDS=1 cargo test --features fuzzing --lib seeds` rewrites the files.

    use super::*;

    /// Writes the discriminant `derive(Arbitrary)` reads as variant `index` of `count`.
    fn variant(index: u64, count: u64, out: &mut Vec<u8>) {
        let raw = (index << 32).div_ceil(count);
        out.extend_from_slice(&(raw as u32).to_le_bytes());
    }

    fn op(op: &Op, out: &mut Vec<u8>) {
        let n = 7;
        match op {
            Op::Seal { side, len, extra } => {
                variant(0, n, out);
                out.extend_from_slice(&[*side, *len, *extra]);
            }
            Op::Deliver { side, n: count } => {
                variant(1, n, out);
                out.push(*side);
                out.extend_from_slice(&count.to_le_bytes());
            }
            Op::Flush(side) => {
                variant(2, n, out);
                out.push(*side);
            }
            Op::Flip { side, at, mask } => {
                variant(3, n, out);
                out.push(*side);
                out.extend_from_slice(&at.to_le_bytes());
                out.push(*mask);
            }
            Op::Drop { side, n: count } => {
                variant(4, n, out);
                out.push(*side);
                out.extend_from_slice(&count.to_le_bytes());
            }
            Op::Replay { side, which } => {
                variant(5, n, out);
                out.extend_from_slice(&[*side, *which]);
            }
            Op::Inject { side, bytes } => {
                variant(6, n, out);
                out.push(*side);
                for b in bytes {
                    out.extend_from_slice(&[1, *b]);
                }
                out.push(0);
            }
        }
    }

    /// The bytes of a pair run: rooms, keys and seeds, then the operations.
    fn pair_input(setup: [u8; 6], ops: &[Op]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&setup);
        for o in ops {
            op(o, &mut out);
        }
        out
    }

    /// Reads the operations of a pair input back.
    fn pair_ops(data: &[u8]) -> Vec<Op> {
        let mut u = Unstructured::new(&data[7..]);
        let mut ops = Vec::new();
        while !u.is_empty() {
            ops.push(Op::arbitrary(&mut u).unwrap());
        }
        ops
    }

    /// A seed: its file name, its bytes, and the operations they must read as.
    type Seed = (&'static str, Vec<u8>, Option<Vec<Op>>);

    fn seeds() -> Vec<Seed> {
        use Op::*;
        let talk = |extra: Vec<Op>| {
            let mut ops = vec![Flush(0), Flush(1), Flush(0)];
            ops.extend(extra);
            ops.extend([
                Seal {
                    side: 0,
                    len: 1,
                    extra: 5,
                },
                Seal {
                    side: 1,
                    len: 0,
                    extra: 9,
                },
                Deliver { side: 0, n: 100 },
                Flush(1),
                Flush(0),
            ]);
            ops
        };
        let pair = |name, setup, ops: Vec<Op>| (name, pair_input(setup, &ops), Some(ops));
        let mut garbage_after_prologue = vec![6, 1, 1, 3, 1, 40, 0];
        garbage_after_prologue.extend_from_slice(&[0, 48]);
        garbage_after_prologue.extend_from_slice(&[0x42; 48]);
        vec![
            pair("open-room", [0, 0, 1, 2, 3, 4], talk(vec![])),
            pair("private-room", [1, 1, 1, 2, 3, 4], talk(vec![])),
            pair("wrong-room-key", [1, 2, 1, 2, 3, 4], talk(vec![])),
            pair("open-and-private", [0, 3, 1, 2, 3, 4], talk(vec![])),
            pair(
                "handshake-flipped",
                [0, 0, 1, 2, 3, 4],
                vec![
                    Flip {
                        side: 0,
                        at: 20,
                        mask: 1,
                    },
                    Flush(0),
                    Flush(1),
                ],
            ),
            pair(
                "record-flipped",
                [1, 1, 5, 5, 3, 4],
                talk(vec![
                    Seal {
                        side: 1,
                        len: 2,
                        extra: 0,
                    },
                    Flip {
                        side: 1,
                        at: 30,
                        mask: 0x80,
                    },
                ]),
            ),
            pair(
                "record-replayed",
                [0, 0, 1, 2, 3, 4],
                talk(vec![
                    Seal {
                        side: 0,
                        len: 0,
                        extra: 3,
                    },
                    Replay { side: 0, which: 1 },
                ]),
            ),
            pair(
                "record-dropped",
                [0, 0, 1, 2, 3, 4],
                talk(vec![
                    Seal {
                        side: 0,
                        len: 0,
                        extra: 3,
                    },
                    Drop { side: 0, n: 20 },
                ]),
            ),
            pair(
                "injected",
                [0, 0, 1, 2, 3, 4],
                talk(vec![Inject {
                    side: 1,
                    bytes: vec![0, 2, 9, 9],
                }]),
            ),
            pair(
                "two-records-byte-by-byte",
                [2, 2, 6, 7, 0, 0],
                vec![
                    Flush(0),
                    Flush(1),
                    Flush(0),
                    Seal {
                        side: 0,
                        len: 230,
                        extra: 1,
                    },
                    Deliver { side: 0, n: 0 },
                    Deliver { side: 0, n: 0 },
                    Deliver { side: 0, n: 65_000 },
                ],
            ),
            (
                "garbage-responder",
                vec![2, 0, 1, 4, 0, 0xde, 0xad, 0xbe, 0xef],
                None,
            ),
            (
                "garbage-initiator-after-prologue",
                garbage_after_prologue,
                None,
            ),
            (
                "http-request-to-a-responder",
                [&[2, 0, 0][..], b"GET / HTTP/1.1\r\n\r\n"].concat(),
                None,
            ),
        ]
    }

    #[test]
    fn seeds_read_back_and_match_the_corpus() {
        for (name, bytes, ops) in seeds() {
            if let Some(ops) = ops {
                assert_eq!(pair_ops(&bytes), ops, "{name} reads back differently");
            }
            let outcome = std::panic::catch_unwind(|| run(&bytes));
            assert!(outcome.is_ok(), "seed {name} fails");
            crate::fuzzing::check_seed("secure", name, &bytes);
        }
    }
}
