//! A plain reading and writing of the version 3 frame stream (the plaintext the records of
//! [`crate::secure`] carry; unchanged since version 2 but for the greeting's version byte),
//! written from the specification
//! and not from [`crate::wire`]'s code, so the fuzz targets have something independent to
//! compare the implementation with. Only types are borrowed from [`crate::wire`].
//!
//! ```text
//! greeting = "FLOODCHAT" 3
//! frame    = length:u32 BE | kind:u8 | body        length = 1 + body length
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::wire::{ByeReason, ClientId, DecodeError, Decoded, Frame, Hello, TextError};

/// The ten bytes each side sends first.
pub const GREETING: &[u8; 10] = b"FLOODCHAT\x03";
/// The longest chat string, in bytes.
pub const TEXT_MAX: usize = 65_536;
/// Bytes a frame of a known kind may carry beyond what version 3 reads.
pub const SLACK: usize = 64;
/// Bytes of one address entry at most: family, 16 bytes of IPv6, port.
pub const ADDR_MAX: usize = 19;
/// The most addresses in one Addrs or Bye.
pub const ADDRS_MAX: usize = 16;
/// The most ids in one Want.
pub const WANT_MAX: usize = 2048;
/// The largest Recon body.
pub const RECON_MAX: usize = 60 * 1024;

/// Kind bytes of version 3.
pub mod kind {
    /// Hello.
    pub const HELLO: u8 = 0x01;
    /// Text.
    pub const TEXT: u8 = 0x02;
    /// Addrs.
    pub const ADDRS: u8 = 0x03;
    /// Ping.
    pub const PING: u8 = 0x04;
    /// Bye.
    pub const BYE: u8 = 0x05;
    /// Recon.
    pub const RECON: u8 = 0x06;
    /// Want.
    pub const WANT: u8 = 0x07;
}

/// The largest body a frame of `kind` may announce.
pub fn max_body(kind: u8) -> usize {
    match kind {
        kind::HELLO => 11 + SLACK,
        kind::TEXT => TEXT_MAX,
        kind::ADDRS => 1 + ADDRS_MAX * ADDR_MAX + SLACK,
        kind::PING => SLACK,
        kind::BYE => 1 + 1 + ADDRS_MAX * ADDR_MAX + SLACK,
        kind::RECON => RECON_MAX,
        kind::WANT => 2 + WANT_MAX * 16,
        // Unknown kinds: up to 64 KiB, skipped.
        _ => 65_536,
    }
}

/// Whether `kind` is one version 3 reads (the others are skipped).
pub fn is_known(kind: u8) -> bool {
    (kind::HELLO..=kind::WANT).contains(&kind)
}

/// Whether `c` is forbidden in a chat string: C0 but tab, DEL, C1.
pub fn forbidden(c: char) -> bool {
    let c = u32::from(c);
    (c < 0x20 && c != 0x09) || c == 0x7f || (0x80..=0x9f).contains(&c)
}

/// Every reason `bytes` is not a chat string (empty if it is one).
pub fn text_errors(bytes: &[u8]) -> Vec<TextError> {
    let mut errors = Vec::new();
    if bytes.is_empty() {
        errors.push(TextError::Empty);
    }
    if bytes.len() > TEXT_MAX {
        errors.push(TextError::TooLong(bytes.len()));
    }
    match std::str::from_utf8(bytes) {
        Err(_) => errors.push(TextError::NotUtf8),
        Ok(text) => errors.extend(
            text.chars()
                .filter(|&c| forbidden(c))
                .map(TextError::Control),
        ),
    }
    errors
}

/// The first control character in `text`, if any: the one a decoder names.
fn first_control(text: &str) -> Option<char> {
    text.chars().find(|&c| forbidden(c))
}

/// Appends a frame of `kind` with `body`, whatever its size.
pub fn raw(kind: u8, body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(body.len() as u32 + 1).to_be_bytes());
    out.push(kind);
    out.extend_from_slice(body);
}

fn addrs_body(addrs: &[SocketAddr], out: &mut Vec<u8>) {
    out.push(addrs.len() as u8);
    for addr in addrs {
        match addr.ip() {
            IpAddr::V4(ip) => {
                out.push(4);
                out.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                out.push(6);
                out.extend_from_slice(&ip.octets());
            }
        }
        out.extend_from_slice(&addr.port().to_be_bytes());
    }
}

/// Appends `frame` as the specification lays it out (no limit is checked).
pub fn encode(frame: &Frame, out: &mut Vec<u8>) {
    let mut body = Vec::new();
    let kind = match frame {
        Frame::Hello(h) => {
            body.extend_from_slice(&h.client.0.to_be_bytes());
            body.extend_from_slice(&h.listen_port.to_be_bytes());
            body.push(u8::from(h.alone));
            kind::HELLO
        }
        Frame::Text(text) => {
            body.extend_from_slice(text.as_bytes());
            kind::TEXT
        }
        Frame::Addrs(addrs) => {
            addrs_body(addrs, &mut body);
            kind::ADDRS
        }
        Frame::Ping => kind::PING,
        Frame::Bye { reason, addrs } => {
            body.push(reason.code());
            addrs_body(addrs, &mut body);
            kind::BYE
        }
        Frame::Recon(bytes) => {
            body.extend_from_slice(bytes);
            kind::RECON
        }
        Frame::Want(ids) => {
            body.extend_from_slice(&(ids.len() as u16).to_be_bytes());
            ids.iter().for_each(|id| body.extend_from_slice(id));
            kind::WANT
        }
    };
    raw(kind, &body, out);
}

/// Reads an address list: count then entries; bytes after them are ignored (room to grow).
fn read_addrs(kind: u8, body: &[u8]) -> Result<Vec<SocketAddr>, DecodeError> {
    let bad = DecodeError::Malformed { kind, what: "" };
    let Some((&count, mut rest)) = body.split_first() else {
        return Err(bad);
    };
    if usize::from(count) > ADDRS_MAX {
        return Err(bad);
    }
    let mut addrs = Vec::new();
    for _ in 0..count {
        let (ip, len): (IpAddr, usize) = match rest {
            [4, a, b, c, d, ..] if rest.len() >= 7 => (Ipv4Addr::new(*a, *b, *c, *d).into(), 5),
            [6, ..] if rest.len() >= 19 => {
                let octets: [u8; 16] = rest[1..17].try_into().unwrap();
                (Ipv6Addr::from(octets).into(), 17)
            }
            _ => return Err(bad),
        };
        let port = u16::from_be_bytes([rest[len], rest[len + 1]]);
        addrs.push(SocketAddr::new(ip, port));
        rest = &rest[len + 2..];
    }
    Ok(addrs)
}

/// Reads the body of a frame of a known kind; `hello_seen` says whether a Hello came before.
fn read_body(kind: u8, body: &[u8], hello_seen: bool) -> Result<Frame, DecodeError> {
    let bad = DecodeError::Malformed { kind, what: "" };
    Ok(match kind {
        kind::HELLO if hello_seen => return Err(DecodeError::RepeatedHello),
        kind::HELLO if body.len() < 11 => return Err(bad),
        kind::HELLO => Frame::Hello(Hello {
            client: ClientId(u64::from_be_bytes(body[..8].try_into().unwrap())),
            listen_port: u16::from_be_bytes([body[8], body[9]]),
            alone: body[10] & 1 == 1,
        }),
        kind::TEXT => {
            if body.is_empty() {
                return Err(DecodeError::BadText(TextError::Empty));
            }
            let text =
                std::str::from_utf8(body).map_err(|_| DecodeError::BadText(TextError::NotUtf8))?;
            if let Some(c) = first_control(text) {
                return Err(DecodeError::BadText(TextError::Control(c)));
            }
            Frame::Text(text.to_owned())
        }
        kind::ADDRS => Frame::Addrs(read_addrs(kind, body)?),
        kind::PING => Frame::Ping,
        kind::BYE => {
            let (&code, rest) = body.split_first().ok_or(bad)?;
            let reason = match code {
                1 => ByeReason::Full,
                2 => ByeReason::Duplicate,
                3 => ByeReason::SelfConnection,
                4 => ByeReason::Leaving,
                5 => ByeReason::Shed,
                other => ByeReason::Other(other),
            };
            Frame::Bye {
                reason,
                addrs: read_addrs(kind, rest)?,
            }
        }
        kind::RECON => Frame::Recon(body.to_vec()),
        kind::WANT => {
            let count = match body {
                [a, b, ..] => usize::from(u16::from_be_bytes([*a, *b])),
                _ => return Err(bad),
            };
            if count > WANT_MAX || body.len() != 2 + 16 * count {
                return Err(bad);
            }
            Frame::Want(
                body[2..]
                    .chunks(16)
                    .map(|c| c.try_into().unwrap())
                    .collect(),
            )
        }
        _ => unreachable!("only known kinds have bodies read"),
    })
}

/// Where a reading stopped when the bytes ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partial {
    /// Nothing unfinished.
    None,
    /// Part of the greeting.
    Greeting,
    /// Part of a frame head.
    Head,
    /// A frame whose head is in, of this kind, with this many body bytes of the announced.
    Body {
        /// The kind byte.
        kind: u8,
        /// Body bytes received.
        got: usize,
    },
}

/// Reads one side of a connection: fed bytes as they come, it reads items from the start of
/// what it holds as a plain reading of the whole stream would, and holds the rest.
#[derive(Debug, Clone, Default)]
pub struct Reader {
    /// Bytes of the unfinished item.
    pending: Vec<u8>,
    greeted: bool,
    hello_seen: bool,
    failed: bool,
}

impl Reader {
    /// A reader that expects the greeting.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the greeting was read.
    pub fn greeted(&self) -> bool {
        self.greeted
    }

    /// Whether a Hello was read.
    pub fn hello_seen(&self) -> bool {
        self.hello_seen
    }

    /// Whether the stream was found not to be floodchat.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Bytes of the unfinished item held.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// What the unfinished item is.
    pub fn partial(&self) -> Partial {
        let p = &self.pending;
        if p.is_empty() {
            Partial::None
        } else if !self.greeted {
            Partial::Greeting
        } else if p.len() < 5 {
            Partial::Head
        } else {
            Partial::Body {
                kind: p[4],
                got: p.len() - 5,
            }
        }
    }

    /// Reads what `bytes` complete; returns the items and the error that ends the stream.
    /// After an error nothing more is read.
    pub fn push(&mut self, bytes: &[u8]) -> (Vec<Decoded>, Option<DecodeError>) {
        let mut items = Vec::new();
        if self.failed {
            return (items, None);
        }
        self.pending.extend_from_slice(bytes);
        let mut at = 0;
        let error = loop {
            let rest = &self.pending[at..];
            if !self.greeted {
                if let Some(i) = (0..rest.len().min(9)).find(|&i| rest[i] != GREETING[i]) {
                    break Some(DecodeError::BadMagic {
                        got: rest[..=i].to_vec(),
                    });
                }
                if rest.len() < 10 {
                    break None;
                }
                if rest[9] != GREETING[9] {
                    break Some(DecodeError::UnsupportedVersion(rest[9]));
                }
                self.greeted = true;
                items.push(Decoded::Greeting);
                at += 10;
                continue;
            }
            let Some((head, after)) = rest.split_first_chunk::<5>() else {
                break None;
            };
            let length = u32::from_be_bytes(head[..4].try_into().unwrap()) as usize;
            let kind = head[4];
            let Some(len) = length.checked_sub(1) else {
                break Some(DecodeError::EmptyFrame);
            };
            if len > max_body(kind) {
                break Some(DecodeError::FrameTooLarge { kind, len });
            }
            if !self.hello_seen && kind != kind::HELLO {
                break Some(DecodeError::NoHello(kind));
            }
            let Some(body) = after.get(..len) else {
                break None;
            };
            if !is_known(kind) {
                items.push(Decoded::Skipped { kind });
            } else {
                match read_body(kind, body, self.hello_seen) {
                    Ok(frame) => {
                        self.hello_seen |= kind == kind::HELLO;
                        items.push(Decoded::Frame(frame));
                    }
                    Err(e) => break Some(e),
                }
            }
            at += 5 + len;
        };
        self.pending.drain(..at);
        if error.is_some() {
            self.failed = true;
            self.pending.clear();
        }
        (items, error)
    }
}

/// `e` with the free-text part of [`DecodeError::Malformed`] blanked, for comparing what an
/// error is without how it is worded.
pub fn normalise(e: DecodeError) -> DecodeError {
    match e {
        DecodeError::Malformed { kind, .. } => DecodeError::Malformed { kind, what: "" },
        other => other,
    }
}
