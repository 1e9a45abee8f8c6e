//! The wire format: a greeting, then length-prefixed UTF-8 frames.
//!
//! ```text
//! greeting = "FLOODCHAT" version:u8          (10 bytes, sent once by each side)
//! frame    = length:u32 (big-endian) text    (1 <= length <= MAX_MESSAGE_LEN)
//! ```
//!
//! A frame's text is one chat message: non-empty UTF-8 without a line feed.

use std::fmt;

/// The magic word that opens every floodchat connection.
pub const MAGIC: &[u8; 9] = b"FLOODCHAT";
/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// The full greeting each side sends first: [`MAGIC`] then [`VERSION`].
pub const GREETING: [u8; 10] = *b"FLOODCHAT\x01";
/// The largest message, in bytes of UTF-8, that is typed, sent or accepted.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;
/// Bytes of the length prefix in front of every frame.
pub const HEADER_LEN: usize = 4;

/// Appends the frame carrying `text` to `out`.
///
/// # Panics
/// If `text` is longer than [`MAX_MESSAGE_LEN`]; [`crate::FloodState`] never asks for that.
pub fn encode_frame(text: &str, out: &mut Vec<u8>) {
    assert!(
        text.len() <= MAX_MESSAGE_LEN,
        "message longer than MAX_MESSAGE_LEN"
    );
    out.reserve(HEADER_LEN + text.len());
    out.extend_from_slice(&(text.len() as u32).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// One complete item decoded from a peer's byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// The peer's greeting was valid.
    Greeting,
    /// A chat message.
    Message(String),
}

/// Why a peer's bytes are not floodchat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The greeting did not start with [`MAGIC`]; `got` holds the bytes seen, up to the first wrong one.
    BadMagic {
        /// The greeting bytes received, ending with the first that differs.
        got: Vec<u8>,
    },
    /// The greeting named a protocol version other than [`VERSION`].
    UnsupportedVersion(u8),
    /// A length prefix above [`MAX_MESSAGE_LEN`].
    FrameTooLarge(u32),
    /// A length prefix of zero.
    EmptyFrame,
    /// A frame whose text is not UTF-8.
    InvalidUtf8,
    /// A frame whose text holds a line feed, which would print as two lines.
    LineFeed,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic { got } => write!(
                f,
                "not a floodchat peer: greeting began with \"{}\"",
                got.escape_ascii()
            ),
            Self::UnsupportedVersion(v) => write!(
                f,
                "unsupported protocol version {v} (this client speaks {VERSION})"
            ),
            Self::FrameTooLarge(len) => write!(
                f,
                "frame of {len} bytes exceeds the maximum of {MAX_MESSAGE_LEN}"
            ),
            Self::EmptyFrame => f.write_str("empty frame"),
            Self::InvalidUtf8 => f.write_str("frame is not valid UTF-8"),
            Self::LineFeed => f.write_str("frame contains a line feed"),
        }
    }
}

impl std::error::Error for DecodeError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Greeting,
    Header,
    Body(usize),
}

/// Incremental decoder of one peer's byte stream: the greeting, then frames.
///
/// Memory is bounded by [`MAX_MESSAGE_LEN`]: a length prefix is checked before anything is
/// reserved, and bytes are taken from the input only as far as the current item needs.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    stage: Stage,
    buf: Vec<u8>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A decoder that expects the greeting first.
    pub fn new() -> Self {
        Self {
            stage: Stage::Greeting,
            buf: Vec::new(),
        }
    }

    /// Whether the greeting has been decoded.
    pub fn greeted(&self) -> bool {
        self.stage != Stage::Greeting
    }

    /// Whether some bytes of an unfinished greeting or frame are buffered.
    pub fn is_mid_item(&self) -> bool {
        !self.buf.is_empty() || matches!(self.stage, Stage::Body(_))
    }

    /// Bytes currently buffered.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Consumes bytes from the front of `input` until one item is complete and returns it.
    ///
    /// `Ok(None)` means `input` is used up and more bytes are needed. After an `Err` the
    /// stream is not floodchat and the decoder must not be used again.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Decoded>, DecodeError> {
        loop {
            match self.stage {
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
                    self.stage = Stage::Header;
                    return Ok(Some(Decoded::Greeting));
                }
                Stage::Header => {
                    if !self.fill(input, HEADER_LEN) {
                        return Ok(None);
                    }
                    let len = u32::from_be_bytes(self.buf[..HEADER_LEN].try_into().unwrap());
                    if len == 0 {
                        return Err(DecodeError::EmptyFrame);
                    }
                    if len as usize > MAX_MESSAGE_LEN {
                        return Err(DecodeError::FrameTooLarge(len));
                    }
                    self.buf = Vec::with_capacity(len as usize);
                    self.stage = Stage::Body(len as usize);
                }
                Stage::Body(len) => {
                    if !self.fill(input, len) {
                        return Ok(None);
                    }
                    self.stage = Stage::Header;
                    let text = String::from_utf8(std::mem::take(&mut self.buf))
                        .map_err(|_| DecodeError::InvalidUtf8)?;
                    if text.contains('\n') {
                        return Err(DecodeError::LineFeed);
                    }
                    return Ok(Some(Decoded::Message(text)));
                }
            }
        }
    }

    /// Moves bytes from `input` into the buffer until it holds `want`; returns whether it does.
    fn fill(&mut self, input: &mut &[u8], want: usize) -> bool {
        let take = (want - self.buf.len()).min(input.len());
        self.buf.extend_from_slice(&input[..take]);
        *input = &input[take..];
        self.buf.len() == want
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(messages: &[&str]) -> Vec<u8> {
        let mut bytes = GREETING.to_vec();
        for m in messages {
            encode_frame(m, &mut bytes);
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

    fn expected(messages: &[&str]) -> Vec<Decoded> {
        std::iter::once(Decoded::Greeting)
            .chain(messages.iter().map(|m| Decoded::Message(m.to_string())))
            .collect()
    }

    #[test]
    fn decodes_greeting_and_frames_at_once() {
        let msgs = ["hello", "héllo wörld", "x"];
        let got = decode_all(&mut FrameDecoder::new(), &stream(&msgs)).unwrap();
        assert_eq!(got, expected(&msgs));
    }

    #[test]
    fn every_split_point_gives_the_same_items() {
        let msgs = ["one", "two two", "ünïcödé"];
        let bytes = stream(&msgs);
        for split in 0..=bytes.len() {
            let mut d = FrameDecoder::new();
            let mut got = decode_all(&mut d, &bytes[..split]).unwrap();
            got.extend(decode_all(&mut d, &bytes[split..]).unwrap());
            assert_eq!(got, expected(&msgs), "split at {split}");
            assert!(!d.is_mid_item());
        }
    }

    #[test]
    fn one_byte_at_a_time_gives_the_same_items() {
        let msgs = ["a", "bc", "def"];
        let mut d = FrameDecoder::new();
        let mut got = Vec::new();
        for b in stream(&msgs) {
            got.extend(decode_all(&mut d, &[b]).unwrap());
        }
        assert_eq!(got, expected(&msgs));
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
    fn wrong_version_is_named() {
        let mut d = FrameDecoder::new();
        let mut input: &[u8] = b"FLOODCHAT\x07";
        assert_eq!(
            d.decode(&mut input),
            Err(DecodeError::UnsupportedVersion(7))
        );
    }

    #[test]
    fn oversized_length_is_rejected_before_allocating() {
        let mut d = FrameDecoder::new();
        let mut bytes = GREETING.to_vec();
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        let mut input = &bytes[..];
        assert_eq!(d.decode(&mut input), Ok(Some(Decoded::Greeting)));
        assert_eq!(
            d.decode(&mut input),
            Err(DecodeError::FrameTooLarge(u32::MAX))
        );
        assert!(d.buf.capacity() <= MAX_MESSAGE_LEN);
    }

    #[test]
    fn largest_frame_is_accepted() {
        let text = "y".repeat(MAX_MESSAGE_LEN);
        let got = decode_all(&mut FrameDecoder::new(), &stream(&[&text])).unwrap();
        assert_eq!(got, expected(&[&text]));
    }

    #[test]
    fn invalid_text_is_rejected() {
        for (payload, err) in [
            (&b"\xff\xfe"[..], DecodeError::InvalidUtf8),
            (b"two\nlines", DecodeError::LineFeed),
        ] {
            let mut bytes = GREETING.to_vec();
            bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            bytes.extend_from_slice(payload);
            assert_eq!(
                decode_all(&mut FrameDecoder::new(), &bytes),
                Err(err.clone())
            );
        }
        let mut bytes = GREETING.to_vec();
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            decode_all(&mut FrameDecoder::new(), &bytes),
            Err(DecodeError::EmptyFrame)
        );
    }

    #[test]
    fn truncated_frame_is_mid_item() {
        let bytes = stream(&["hello"]);
        let mut d = FrameDecoder::new();
        let got = decode_all(&mut d, &bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(got, vec![Decoded::Greeting]);
        assert!(d.is_mid_item());
    }
}
