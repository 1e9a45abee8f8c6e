//! The frame stream of protocol 3: a greeting, then typed, length-prefixed frames. On the
//! wire it travels inside the encrypted records of [`crate::secure`], after a clear prologue
//! (the same greeting and a room byte) and the handshake.
//!
//! ```text
//! greeting = "FLOODCHAT" version:u8            (10 bytes, sent once by each side)
//! frame    = length:u32 (big-endian) kind:u8 body     (length = 1 + body length)
//! ```
//!
//! The first frame after the greeting is a [`Hello`]. Each kind has its own maximum body
//! size, checked as soon as the five bytes of the head are in, before anything is buffered;
//! the buffer then grows only with bytes actually received. Frames of an unknown kind are
//! skipped without being buffered, so later versions can add kinds. `PROTOCOL.md` is the
//! specification; this module is its one implementation.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The magic word that opens every floodchat connection.
pub const MAGIC: &[u8; 9] = b"FLOODCHAT";
/// The protocol version this crate speaks.
pub const VERSION: u8 = 3;
/// The full greeting each side sends first: [`MAGIC`] then [`VERSION`].
pub const GREETING: [u8; 10] = *b"FLOODCHAT\x03";
/// The largest chat string, in bytes of UTF-8, that is typed, sent or accepted.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;
/// Bytes of a frame's head: the length prefix and the kind.
pub const HEAD_LEN: usize = 5;
/// The largest body of any frame, known kind or not.
pub const MAX_BODY: usize = MAX_MESSAGE_LEN;
/// The most addresses one [`Frame::Addrs`] or [`Frame::Bye`] carries.
pub const MAX_ADDRS: usize = 16;
/// The largest body of a [`Frame::Recon`].
pub const MAX_RECON: usize = 60 * 1024;
/// The most ids one [`Frame::Want`] carries.
pub const MAX_WANT: usize = 2048;
/// Bytes of a string's id.
pub const ID_LEN: usize = 16;

/// The kind byte of each frame.
mod kind {
    pub(super) const HELLO: u8 = 1;
    pub(super) const TEXT: u8 = 2;
    pub(super) const ADDRS: u8 = 3;
    pub(super) const PING: u8 = 4;
    pub(super) const BYE: u8 = 5;
    pub(super) const RECON: u8 = 6;
    pub(super) const WANT: u8 = 7;
}

/// Bytes of one encoded address: family, up to 16 bytes of IP, port.
const ADDR_MAX_LEN: usize = 1 + 16 + 2;
/// Bytes of a [`Hello`] body as this version writes it.
const HELLO_LEN: usize = 8 + 2 + 1;
/// Extra bytes a known frame may carry beyond what this version reads, for later versions.
const SLACK: usize = 64;

/// The largest body a frame of `kind` may have; unknown kinds may have up to [`MAX_BODY`].
fn max_body(kind: u8) -> usize {
    match kind {
        kind::HELLO => HELLO_LEN + SLACK,
        kind::TEXT => MAX_MESSAGE_LEN,
        kind::ADDRS => 1 + MAX_ADDRS * ADDR_MAX_LEN + SLACK,
        kind::PING => SLACK,
        kind::BYE => 2 + MAX_ADDRS * ADDR_MAX_LEN + SLACK,
        kind::RECON => MAX_RECON,
        kind::WANT => 2 + MAX_WANT * ID_LEN,
        _ => MAX_BODY,
    }
}

/// A client's identity: random, chosen once per run, announced in the [`Hello`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The first frame on every connection: who the sender is and where it listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// The sender's identity.
    pub client: ClientId,
    /// The port the sender accepts connections on, at the IP its connection comes from;
    /// 0 if it does not listen.
    pub listen_port: u16,
    /// The sender has no link at all, so its request to link should not be refused.
    pub alone: bool,
}

/// Why a side closes a connection on purpose, sent in [`Frame::Bye`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ByeReason {
    /// The sender has as many links as it takes.
    Full,
    /// The two clients already have another connection, which stays.
    Duplicate,
    /// The connection goes from a client to itself.
    SelfConnection,
    /// The sender is leaving the room.
    Leaving,
    /// The sender drops this link to make room for another.
    Shed,
    /// A reason this version does not know.
    Other(u8),
}

impl ByeReason {
    /// The reason's byte on the wire.
    pub fn code(self) -> u8 {
        match self {
            Self::Full => 1,
            Self::Duplicate => 2,
            Self::SelfConnection => 3,
            Self::Leaving => 4,
            Self::Shed => 5,
            Self::Other(code) => code,
        }
    }

    /// The reason a byte on the wire stands for.
    pub fn from_code(code: u8) -> Self {
        match code {
            1 => Self::Full,
            2 => Self::Duplicate,
            3 => Self::SelfConnection,
            4 => Self::Leaving,
            5 => Self::Shed,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for ByeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => f.write_str("it is full"),
            Self::Duplicate => f.write_str("another connection to the same client stays"),
            Self::SelfConnection => f.write_str("it is this client itself"),
            Self::Leaving => f.write_str("it is leaving"),
            Self::Shed => f.write_str("it made room for another client"),
            Self::Other(code) => write!(f, "reason {code}"),
        }
    }
}

/// One frame, decoded or to encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Who the sender is; always the first frame.
    Hello(Hello),
    /// One chat string (see [`check_text`]).
    Text(String),
    /// Addresses of clients the sender knows.
    Addrs(Vec<SocketAddr>),
    /// Keepalive: says nothing but "still here".
    Ping,
    /// The sender closes the connection on purpose, and names clients to try instead.
    Bye {
        /// Why.
        reason: ByeReason,
        /// Addresses to try instead.
        addrs: Vec<SocketAddr>,
    },
    /// One message of set reconciliation.
    Recon(Vec<u8>),
    /// Ids of strings the sender lacks and asks for.
    Want(Vec<[u8; ID_LEN]>),
}

impl Frame {
    /// Appends this frame to `out`.
    ///
    /// # Panics
    /// If the frame is over its kind's limits; [`crate::FloodState`] never asks for that.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; HEAD_LEN]);
        let kind = match self {
            Self::Hello(h) => {
                out.extend_from_slice(&h.client.0.to_be_bytes());
                out.extend_from_slice(&h.listen_port.to_be_bytes());
                out.push(u8::from(h.alone));
                kind::HELLO
            }
            Self::Text(text) => {
                out.extend_from_slice(text.as_bytes());
                kind::TEXT
            }
            Self::Addrs(addrs) => {
                encode_addrs(addrs, out);
                kind::ADDRS
            }
            Self::Ping => kind::PING,
            Self::Bye { reason, addrs } => {
                out.push(reason.code());
                encode_addrs(addrs, out);
                kind::BYE
            }
            Self::Recon(body) => {
                out.extend_from_slice(body);
                kind::RECON
            }
            Self::Want(ids) => {
                assert!(ids.len() <= MAX_WANT, "too many ids in one Want");
                out.extend_from_slice(&(ids.len() as u16).to_be_bytes());
                for id in ids {
                    out.extend_from_slice(id);
                }
                kind::WANT
            }
        };
        let body = out.len() - start - HEAD_LEN;
        assert!(body <= max_body(kind), "frame body over its kind's maximum");
        out[start..start + 4].copy_from_slice(&(body as u32 + 1).to_be_bytes());
        out[start + 4] = kind;
    }
}

/// Appends the Text frame carrying `text` to `out`, without building a [`Frame`].
///
/// # Panics
/// If `text` is longer than [`MAX_MESSAGE_LEN`].
pub fn encode_text(text: &str, out: &mut Vec<u8>) {
    assert!(text.len() <= MAX_MESSAGE_LEN, "text over MAX_MESSAGE_LEN");
    out.reserve(HEAD_LEN + text.len());
    out.extend_from_slice(&(text.len() as u32 + 1).to_be_bytes());
    out.push(kind::TEXT);
    out.extend_from_slice(text.as_bytes());
}

/// Bytes of the Text frame carrying a string of `len` bytes.
pub fn text_frame_len(len: usize) -> usize {
    HEAD_LEN + len
}

fn encode_addrs(addrs: &[SocketAddr], out: &mut Vec<u8>) {
    assert!(addrs.len() <= MAX_ADDRS, "too many addresses in one frame");
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

/// Why a string may not be in the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextError {
    /// Empty.
    Empty,
    /// Longer than [`MAX_MESSAGE_LEN`] bytes; holds the length.
    TooLong(usize),
    /// Not UTF-8.
    NotUtf8,
    /// Holds a control character (C0 other than tab, DEL, or C1).
    Control(char),
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty text"),
            Self::TooLong(_) => write!(f, "longer than the maximum of {MAX_MESSAGE_LEN} bytes"),
            Self::NotUtf8 => f.write_str("text is not valid UTF-8"),
            Self::Control('\n') => f.write_str("text contains a line feed"),
            Self::Control(c) => write!(f, "text contains the control character {c:?}"),
        }
    }
}

impl std::error::Error for TextError {}

/// Whether `c` may not appear in a chat string: C0 controls other than tab, DEL, and C1.
pub fn is_forbidden(c: char) -> bool {
    (c.is_control() && c != '\t') || c == '\u{7f}'
}

/// Checks that `bytes` are a chat string: UTF-8, 1 to [`MAX_MESSAGE_LEN`] bytes, and no
/// control character but tab.
pub fn check_text(bytes: &[u8]) -> Result<&str, TextError> {
    if bytes.is_empty() {
        return Err(TextError::Empty);
    }
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(TextError::TooLong(bytes.len()));
    }
    // Control characters are all below 0xA0; a quick byte scan keeps the common case fast.
    let text = std::str::from_utf8(bytes).map_err(|_| TextError::NotUtf8)?;
    let suspicious = bytes
        .iter()
        .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f || b == 0xc2);
    if suspicious && let Some(c) = text.chars().find(|&c| is_forbidden(c)) {
        return Err(TextError::Control(c));
    }
    Ok(text)
}

/// One complete item decoded from a peer's byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// The peer's greeting was valid.
    Greeting,
    /// A frame of a known kind.
    Frame(Frame),
    /// A frame of a kind this version does not know, skipped.
    Skipped {
        /// Its kind byte.
        kind: u8,
    },
}

/// One complete item from [`FrameDecoder::decode_borrowed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodedRef<'a> {
    /// A Text frame's text, borrowed from the input.
    Text(&'a str),
    /// Any other item, or a Text frame that arrived in pieces.
    Owned(Decoded),
}

impl DecodedRef<'_> {
    /// The item as [`FrameDecoder::decode`] returns it.
    pub fn into_owned(self) -> Decoded {
        match self {
            DecodedRef::Text(text) => Decoded::Frame(Frame::Text(text.to_owned())),
            DecodedRef::Owned(item) => item,
        }
    }
}

/// Why a peer's frame stream is not floodchat's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The greeting did not start with [`MAGIC`]; `got` holds the bytes seen, up to the first wrong one.
    BadMagic {
        /// The greeting bytes received, ending with the first that differs.
        got: Vec<u8>,
    },
    /// The greeting named a protocol version other than [`VERSION`].
    UnsupportedVersion(u8),
    /// A length prefix of zero, which has no room for the kind.
    EmptyFrame,
    /// A frame longer than its kind allows.
    FrameTooLarge {
        /// The frame's kind byte.
        kind: u8,
        /// The announced body length.
        len: usize,
    },
    /// The first frame after the greeting was not a Hello.
    NoHello(u8),
    /// A second Hello.
    RepeatedHello,
    /// A frame's body does not parse as its kind.
    Malformed {
        /// The frame's kind byte.
        kind: u8,
        /// What is wrong.
        what: &'static str,
    },
    /// A Text frame whose text is not a chat string.
    BadText(TextError),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic { got } => write!(
                f,
                "not a floodchat peer: greeting began with \"{}\"",
                got.escape_ascii()
            ),
            Self::UnsupportedVersion(v) if *v < VERSION => write!(
                f,
                "the peer speaks floodchat protocol version {v}, this client speaks {VERSION}: \
                 the peer must upgrade"
            ),
            Self::UnsupportedVersion(v) => write!(
                f,
                "the peer speaks floodchat protocol version {v}, this client speaks {VERSION}: \
                 this client must upgrade"
            ),
            Self::EmptyFrame => f.write_str("frame of length zero"),
            Self::FrameTooLarge { kind, len } => write!(
                f,
                "frame of kind {kind} with {len} bytes exceeds its maximum of {}",
                max_body(*kind)
            ),
            Self::NoHello(kind) => write!(f, "first frame was of kind {kind}, not a Hello"),
            Self::RepeatedHello => f.write_str("a second Hello"),
            Self::Malformed { kind, what } => write!(f, "malformed frame of kind {kind}: {what}"),
            Self::BadText(e) => write!(f, "bad chat string: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Greeting,
    Head,
    Body {
        kind: u8,
        len: usize,
    },
    Skip {
        kind: u8,
        left: usize,
    },
    /// After an error: the stream is not floodchat, and nothing more is decoded.
    Failed,
}

/// Incremental decoder of one peer's byte stream: the greeting, then frames.
///
/// A frame's announced length is checked against its kind's maximum before anything is
/// buffered, and the buffer grows only with bytes received, so a peer that announces a large
/// frame and sends little costs little. A buffer left large by a big frame is released.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    stage: Stage,
    buf: Vec<u8>,
    hello_seen: bool,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

/// A buffer of at most this capacity is kept between frames; a larger one is released.
const KEEP_CAPACITY: usize = 4096;

impl FrameDecoder {
    /// A decoder that expects the greeting first.
    pub fn new() -> Self {
        Self {
            stage: Stage::Greeting,
            buf: Vec::new(),
            hello_seen: false,
        }
    }

    /// Whether the greeting has been decoded.
    pub fn greeted(&self) -> bool {
        self.stage != Stage::Greeting
    }

    /// Whether the Hello has been decoded.
    pub fn hello_seen(&self) -> bool {
        self.hello_seen
    }

    /// Whether some bytes of an unfinished greeting or frame have arrived.
    pub fn is_mid_item(&self) -> bool {
        !self.buf.is_empty() || matches!(self.stage, Stage::Body { .. } | Stage::Skip { .. })
    }

    /// Bytes currently buffered.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Bytes of memory the buffer holds.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Consumes bytes from the front of `input` until one item is complete and returns it.
    ///
    /// `Ok(None)` means `input` is used up and more bytes are needed. After an `Err` the
    /// stream is not floodchat: later calls consume their input and decode nothing.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Decoded>, DecodeError> {
        let result = self.decode_item(input);
        if result.is_err() {
            self.stage = Stage::Failed;
            self.buf = Vec::new();
        }
        result
    }

    /// Like [`decode`](Self::decode), but a Text frame that lies whole in `input` comes back
    /// borrowed from it: no copy and no allocation for the common case of a relayed string.
    pub fn decode_borrowed<'a>(
        &mut self,
        input: &mut &'a [u8],
    ) -> Result<Option<DecodedRef<'a>>, DecodeError> {
        if self.stage == Stage::Head
            && self.buf.is_empty()
            && self.hello_seen
            && let Some((head, rest)) = input.split_first_chunk::<HEAD_LEN>()
            && head[4] == kind::TEXT
            && let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize
            && (1..=max_body(kind::TEXT) + 1).contains(&len)
            && let Some((body, after)) = rest.split_at_checked(len - 1)
        {
            // What `decode` would do with these bytes, without buffering them first.
            return match check_text(body) {
                Ok(text) => {
                    *input = after;
                    Ok(Some(DecodedRef::Text(text)))
                }
                Err(e) => {
                    self.stage = Stage::Failed;
                    self.buf = Vec::new();
                    Err(DecodeError::BadText(e))
                }
            };
        }
        Ok(self.decode(input)?.map(DecodedRef::Owned))
    }

    fn decode_item(&mut self, input: &mut &[u8]) -> Result<Option<Decoded>, DecodeError> {
        loop {
            match self.stage {
                Stage::Failed => {
                    *input = &[];
                    return Ok(None);
                }
                Stage::Greeting => {
                    let take = (GREETING.len() - self.buf.len()).min(input.len());
                    for &byte in &input[..take] {
                        let at = self.buf.len();
                        self.buf.push(byte);
                        if at < MAGIC.len() && byte != MAGIC[at] {
                            return Err(DecodeError::BadMagic {
                                got: std::mem::take(&mut self.buf),
                            });
                        }
                        if at == MAGIC.len() && byte != VERSION {
                            return Err(DecodeError::UnsupportedVersion(byte));
                        }
                    }
                    *input = &input[take..];
                    if self.buf.len() < GREETING.len() {
                        return Ok(None);
                    }
                    self.buf.clear();
                    self.stage = Stage::Head;
                    return Ok(Some(Decoded::Greeting));
                }
                Stage::Head => {
                    if !self.fill(input, HEAD_LEN) {
                        return Ok(None);
                    }
                    let len = u32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
                    let kind = self.buf[4];
                    self.buf.clear();
                    if len == 0 {
                        return Err(DecodeError::EmptyFrame);
                    }
                    let len = len - 1;
                    if len > max_body(kind) {
                        return Err(DecodeError::FrameTooLarge { kind, len });
                    }
                    if !self.hello_seen && kind != kind::HELLO {
                        return Err(DecodeError::NoHello(kind));
                    }
                    self.stage = if (kind::HELLO..=kind::WANT).contains(&kind) {
                        Stage::Body { kind, len }
                    } else {
                        Stage::Skip { kind, left: len }
                    };
                }
                Stage::Body { kind, len } => {
                    if !self.fill(input, len) {
                        return Ok(None);
                    }
                    self.stage = Stage::Head;
                    let frame = self.parse(kind)?;
                    if self.buf.capacity() > KEEP_CAPACITY {
                        self.buf = Vec::new();
                    }
                    self.buf.clear();
                    return Ok(Some(Decoded::Frame(frame)));
                }
                Stage::Skip { kind, left } => {
                    let take = left.min(input.len());
                    *input = &input[take..];
                    if take < left {
                        self.stage = Stage::Skip {
                            kind,
                            left: left - take,
                        };
                        return Ok(None);
                    }
                    self.stage = Stage::Head;
                    return Ok(Some(Decoded::Skipped { kind }));
                }
            }
        }
    }

    /// Parses the buffered body of a frame of a known `kind`.
    fn parse(&mut self, kind: u8) -> Result<Frame, DecodeError> {
        let malformed = |what| DecodeError::Malformed { kind, what };
        let body = &self.buf[..];
        let frame = match kind {
            kind::HELLO => {
                if self.hello_seen {
                    return Err(DecodeError::RepeatedHello);
                }
                if body.len() < HELLO_LEN {
                    return Err(malformed("Hello too short"));
                }
                self.hello_seen = true;
                Frame::Hello(Hello {
                    client: ClientId(u64::from_be_bytes(body[..8].try_into().unwrap())),
                    listen_port: u16::from_be_bytes([body[8], body[9]]),
                    alone: body[10] & 1 == 1,
                })
            }
            kind::TEXT => {
                // One copy of the checked text; no second UTF-8 check.
                let text = check_text(body).map_err(DecodeError::BadText)?.to_owned();
                if self.buf.capacity() > KEEP_CAPACITY {
                    self.buf = Vec::new();
                }
                Frame::Text(text)
            }
            kind::ADDRS => Frame::Addrs(decode_addrs(body).map_err(malformed)?.0),
            kind::PING => Frame::Ping,
            kind::BYE => {
                let (&code, rest) = body.split_first().ok_or(malformed("Bye without reason"))?;
                Frame::Bye {
                    reason: ByeReason::from_code(code),
                    addrs: decode_addrs(rest).map_err(malformed)?.0,
                }
            }
            kind::RECON => Frame::Recon(body.to_vec()),
            kind::WANT => {
                let count = body
                    .get(..2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]) as usize)
                    .ok_or(malformed("Want without count"))?;
                if count > MAX_WANT || body.len() != 2 + count * ID_LEN {
                    return Err(malformed("Want count does not match its length"));
                }
                Frame::Want(
                    body[2..]
                        .chunks_exact(ID_LEN)
                        .map(|c| c.try_into().unwrap())
                        .collect(),
                )
            }
            _ => unreachable!("unknown kinds are skipped"),
        };
        Ok(frame)
    }

    /// Moves bytes from `input` into the buffer until it holds `want`; returns whether it does.
    fn fill(&mut self, input: &mut &[u8], want: usize) -> bool {
        let take = (want - self.buf.len()).min(input.len());
        self.buf.extend_from_slice(&input[..take]);
        *input = &input[take..];
        self.buf.len() == want
    }
}

/// Reads a count and that many addresses; returns them and the bytes after them.
fn decode_addrs(body: &[u8]) -> Result<(Vec<SocketAddr>, &[u8]), &'static str> {
    let (&count, mut rest) = body.split_first().ok_or("no address count")?;
    let count = usize::from(count);
    if count > MAX_ADDRS {
        return Err("too many addresses");
    }
    let mut addrs = Vec::with_capacity(count);
    for _ in 0..count {
        let (&family, after) = rest.split_first().ok_or("address cut short")?;
        let ip_len = match family {
            4 => 4,
            6 => 16,
            _ => return Err("unknown address family"),
        };
        if after.len() < ip_len + 2 {
            return Err("address cut short");
        }
        let ip: IpAddr = if ip_len == 4 {
            Ipv4Addr::from(<[u8; 4]>::try_from(&after[..4]).unwrap()).into()
        } else {
            Ipv6Addr::from(<[u8; 16]>::try_from(&after[..16]).unwrap()).into()
        };
        let port = u16::from_be_bytes([after[ip_len], after[ip_len + 1]]);
        addrs.push(SocketAddr::new(ip, port));
        rest = &after[ip_len + 2..];
    }
    Ok((addrs, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: Hello = Hello {
        client: ClientId(0x0123_4567_89ab_cdef),
        listen_port: 4000,
        alone: true,
    };

    fn stream(frames: &[Frame]) -> Vec<u8> {
        let mut bytes = GREETING.to_vec();
        for f in frames {
            f.encode(&mut bytes);
        }
        bytes
    }

    fn decode_all(
        decoder: &mut FrameDecoder,
        mut input: &[u8],
    ) -> Result<Vec<Decoded>, DecodeError> {
        let mut out = Vec::new();
        while let Some(item) = decoder.decode(&mut input)? {
            out.push(item);
        }
        assert!(input.is_empty(), "decoder returned None with input left");
        Ok(out)
    }

    fn every_kind() -> Vec<Frame> {
        vec![
            Frame::Hello(HELLO),
            Frame::Text("héllo wörld\tok".into()),
            Frame::Addrs(vec![
                "127.0.0.1:4000".parse().unwrap(),
                "[::1]:5000".parse().unwrap(),
            ]),
            Frame::Ping,
            Frame::Bye {
                reason: ByeReason::Full,
                addrs: vec!["127.0.0.2:1".parse().unwrap()],
            },
            Frame::Recon(vec![1, 2, 3]),
            Frame::Want(vec![[7; ID_LEN], [9; ID_LEN]]),
        ]
    }

    fn expected(frames: &[Frame]) -> Vec<Decoded> {
        std::iter::once(Decoded::Greeting)
            .chain(frames.iter().cloned().map(Decoded::Frame))
            .collect()
    }

    #[test]
    fn every_kind_round_trips_at_every_split_point() {
        let frames = every_kind();
        let bytes = stream(&frames);
        for split in 0..=bytes.len() {
            let mut d = FrameDecoder::new();
            let mut got = decode_all(&mut d, &bytes[..split]).unwrap();
            got.extend(decode_all(&mut d, &bytes[split..]).unwrap());
            assert_eq!(got, expected(&frames), "split at {split}");
            assert!(!d.is_mid_item());
        }
    }

    #[test]
    fn a_whole_text_frame_is_borrowed_and_a_split_one_is_not() {
        let frames = [Frame::Hello(HELLO), Frame::Text("borrowed".into())];
        let bytes = stream(&frames);
        let text_at = bytes.len() - HEAD_LEN - "borrowed".len();
        for split in 0..=bytes.len() {
            let mut d = FrameDecoder::new();
            let mut items = Vec::new();
            for mut input in [&bytes[..split], &bytes[split..]] {
                while let Some(item) = d.decode_borrowed(&mut input).unwrap() {
                    items.push(item);
                }
            }
            let last = items.pop().expect("the Text frame");
            if split <= text_at || split == bytes.len() {
                assert_eq!(last, DecodedRef::Text("borrowed"), "split at {split}");
            } else {
                assert!(matches!(last, DecodedRef::Owned(_)), "split at {split}");
            }
            let owned: Vec<Decoded> = items
                .into_iter()
                .chain([last])
                .map(DecodedRef::into_owned)
                .collect();
            assert_eq!(owned, expected(&frames), "split at {split}");
        }
        // A bad text fails the stream as `decode` would.
        let mut bytes = stream(&[Frame::Hello(HELLO)]);
        encode_text("bell\u{7}", &mut bytes);
        Frame::Ping.encode(&mut bytes);
        let mut d = FrameDecoder::new();
        let mut input = &bytes[..];
        let error = loop {
            match d.decode_borrowed(&mut input) {
                Ok(Some(_)) => {}
                Ok(None) => panic!("a bell in a text was accepted"),
                Err(e) => break e,
            }
        };
        assert_eq!(error, DecodeError::BadText(TextError::Control('\u{7}')));
        assert_eq!(d.decode(&mut input), Ok(None), "nothing after the error");
    }

    #[test]
    fn one_byte_at_a_time_gives_the_same_items() {
        let frames = every_kind();
        let mut d = FrameDecoder::new();
        let mut got = Vec::new();
        for b in stream(&frames) {
            got.extend(decode_all(&mut d, &[b]).unwrap());
        }
        assert_eq!(got, expected(&frames));
    }

    #[test]
    fn encode_text_matches_the_frame() {
        let mut a = Vec::new();
        encode_text("abc", &mut a);
        let mut b = Vec::new();
        Frame::Text("abc".into()).encode(&mut b);
        assert_eq!(a, b);
        assert_eq!(a.len(), text_frame_len(3));
    }

    #[test]
    fn unknown_kinds_are_skipped_without_buffering() {
        let mut bytes = stream(&[Frame::Hello(HELLO)]);
        bytes.extend_from_slice(&(1 + 60_000u32).to_be_bytes());
        bytes.push(200);
        bytes.extend(std::iter::repeat_n(0xAA, 60_000));
        Frame::Text("after".into()).encode(&mut bytes);
        let mut d = FrameDecoder::new();
        let mut got = Vec::new();
        for chunk in bytes.chunks(1000) {
            got.extend(decode_all(&mut d, chunk).unwrap());
            assert!(d.capacity() <= KEEP_CAPACITY);
        }
        assert_eq!(got[2], Decoded::Skipped { kind: 200 });
        assert_eq!(got[3], Decoded::Frame(Frame::Text("after".into())));
    }

    #[test]
    fn memory_grows_with_bytes_received_not_with_the_announced_length() {
        let mut bytes = stream(&[Frame::Hello(HELLO)]);
        bytes.extend_from_slice(&(1 + MAX_MESSAGE_LEN as u32).to_be_bytes());
        bytes.push(kind::TEXT);
        bytes.extend_from_slice(b"0123456789");
        let mut d = FrameDecoder::new();
        decode_all(&mut d, &bytes).unwrap();
        assert!(d.is_mid_item());
        assert!(d.capacity() < 1024, "holds {} bytes", d.capacity());
    }

    #[test]
    fn a_big_frame_does_not_leave_a_big_buffer() {
        let big = "y".repeat(MAX_MESSAGE_LEN);
        let frames = [Frame::Hello(HELLO), Frame::Text(big), Frame::Ping];
        let mut d = FrameDecoder::new();
        assert_eq!(decode_all(&mut d, &stream(&frames)).unwrap().len(), 4);
        assert!(d.capacity() <= KEEP_CAPACITY);
    }

    #[test]
    fn lengths_are_checked_per_kind_before_any_body_arrives() {
        for (kind, len) in [
            (kind::HELLO, 200),
            (kind::TEXT, MAX_MESSAGE_LEN + 1),
            (kind::ADDRS, 4000),
            (kind::PING, 100),
            (kind::RECON, MAX_RECON + 1),
            (99, MAX_BODY + 1),
        ] {
            let mut bytes = stream(&[Frame::Hello(HELLO)]);
            bytes.extend_from_slice(&(len as u32 + 1).to_be_bytes());
            bytes.push(kind);
            let got = decode_all(&mut FrameDecoder::new(), &bytes);
            assert_eq!(got, Err(DecodeError::FrameTooLarge { kind, len }));
        }
        let mut bytes = stream(&[Frame::Hello(HELLO)]);
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        bytes.push(kind::TEXT);
        assert!(decode_all(&mut FrameDecoder::new(), &bytes).is_err());
    }

    #[test]
    fn hello_comes_first_and_once() {
        let mut bytes = GREETING.to_vec();
        Frame::Ping.encode(&mut bytes);
        assert_eq!(
            decode_all(&mut FrameDecoder::new(), &bytes),
            Err(DecodeError::NoHello(kind::PING))
        );
        let bytes = stream(&[Frame::Hello(HELLO), Frame::Hello(HELLO)]);
        assert_eq!(
            decode_all(&mut FrameDecoder::new(), &bytes),
            Err(DecodeError::RepeatedHello)
        );
    }

    #[test]
    fn after_an_error_nothing_more_is_decoded() {
        let mut d = FrameDecoder::new();
        let mut bytes = stream(&[Frame::Hello(HELLO)]);
        bytes.extend_from_slice(&[0, 0, 0, 3, kind::TEXT, b'a', 0x1b]);
        Frame::Text("after".into()).encode(&mut bytes);
        let mut input = &bytes[..];
        while let Ok(Some(_)) = d.decode(&mut input) {}
        for more in [&bytes[..], &[0xff; 9][..]] {
            let mut input = more;
            assert_eq!(d.decode(&mut input), Ok(None));
            assert!(input.is_empty());
        }
        assert_eq!(d.capacity(), 0);
    }

    #[test]
    fn http_request_is_rejected_at_its_first_byte() {
        let mut d = FrameDecoder::new();
        let mut input: &[u8] = b"GET / HTTP/1.1\r\n\r\n";
        let err = d.decode(&mut input).unwrap_err();
        assert_eq!(err, DecodeError::BadMagic { got: b"G".to_vec() });
        assert_eq!(
            err.to_string(),
            "not a floodchat peer: greeting began with \"G\""
        );
    }

    #[test]
    fn an_old_version_is_told_to_upgrade() {
        let mut input: &[u8] = b"FLOODCHAT\x01";
        let err = FrameDecoder::new().decode(&mut input).unwrap_err();
        assert_eq!(err, DecodeError::UnsupportedVersion(1));
        assert!(err.to_string().contains("the peer must upgrade"), "{err}");
        let mut input: &[u8] = b"FLOODCHAT\x04";
        let err = FrameDecoder::new().decode(&mut input).unwrap_err();
        assert!(
            err.to_string().contains("this client must upgrade"),
            "{err}"
        );
    }

    #[test]
    fn text_rules() {
        assert_eq!(check_text(b"tab\tok"), Ok("tab\tok"));
        assert_eq!(check_text("ünï ✓ \u{202e}".as_bytes()).map(|_| ()), Ok(()));
        assert_eq!(check_text(b""), Err(TextError::Empty));
        assert_eq!(check_text(b"\xff"), Err(TextError::NotUtf8));
        for (bytes, c) in [
            (&b"a\nb"[..], '\n'),
            (b"mallory: bye\ralice: hi", '\r'),
            (b"\x1b]52;c;aGk=\x07", '\x1b'),
            (b"\x0bvt", '\x0b'),
            (b"del\x7f", '\x7f'),
            ("c1 \u{9b}31m".as_bytes(), '\u{9b}'),
            (b"nul\0", '\0'),
        ] {
            assert_eq!(check_text(bytes), Err(TextError::Control(c)), "{bytes:?}");
        }
        let long = vec![b'x'; MAX_MESSAGE_LEN + 1];
        assert_eq!(
            check_text(&long),
            Err(TextError::TooLong(MAX_MESSAGE_LEN + 1))
        );
        assert!(check_text(&long[1..]).is_ok());
    }

    #[test]
    fn malformed_bodies_are_named() {
        let mut bytes = stream(&[Frame::Hello(HELLO)]);
        bytes.extend_from_slice(&[0, 0, 0, 3, kind::ADDRS, 1, 9, 0]);
        assert!(matches!(
            decode_all(&mut FrameDecoder::new(), &bytes),
            Err(DecodeError::Malformed {
                kind: kind::ADDRS,
                ..
            })
        ));
        let mut bytes = stream(&[Frame::Hello(HELLO)]);
        bytes.extend_from_slice(&[0, 0, 0, 3, kind::TEXT, b'a', 0x1b]);
        assert_eq!(
            decode_all(&mut FrameDecoder::new(), &bytes),
            Err(DecodeError::BadText(TextError::Control('\x1b')))
        );
        let mut bytes = GREETING.to_vec();
        bytes.extend_from_slice(&[0, 0, 0, 0, kind::HELLO]);
        assert_eq!(
            decode_all(&mut FrameDecoder::new(), &bytes),
            Err(DecodeError::EmptyFrame)
        );
    }
}
