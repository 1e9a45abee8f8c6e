//! Fuzz entry point `decode`: [`FrameDecoder`] fed all at once, in fuzzer-chosen chunks and
//! one byte at a time must give the items and error of a plain reading of the format
//! ([`super::reference`]), hold no more memory than the bytes it was given call for, and every
//! frame built from arbitrary values must encode as the specification says and decode back.
//!
//! Input layout: byte 0 is a flag byte. Bit 0 puts a valid greeting in front of the stream and
//! bit 1 a greeting and a valid Hello, so the fuzzer reaches later frames at once. Bit 2 picks
//! the round trip: the rest is read with [`arbitrary`] as frames to encode, instead of taken as
//! the stream. Bits 3..=6 give `n`, and the next `n` bytes are chunk sizes, used in turn
//! (0 feeds an empty slice; see [`chunk_size`]).
//!
//! Checked for every way of feeding:
//! - after each chunk, the items decoded from it and the error are those the reference reads
//!   from the same bytes (so all ways agree with each other), errors compared without the
//!   wording of [`DecodeError::Malformed`];
//! - every item consumes bytes, `Ok(None)` only when the input is used up;
//! - what is buffered is exactly the unfinished item's bytes (greeting, head or body of a known
//!   kind), never any of an unknown kind's body;
//! - `capacity()` grows only with bytes received: at most twice the bytes of the current item,
//!   or a small kept buffer, never sized from an announced length;
//! - `greeted()`, `hello_seen()` and `is_mid_item()` agree with the reference.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use arbitrary::{Arbitrary, Result, Unstructured};

use super::reference::{self, ADDRS_MAX, RECON_MAX, Reader, TEXT_MAX, WANT_MAX};
use crate::wire::{
    ByeReason, ClientId, DecodeError, Decoded, DecodedRef, Frame, FrameDecoder, Hello,
};

/// Streams longer than this are not also fed one byte at a time, to keep runs fast.
const BYTEWISE_MAX: usize = 8192;

/// A buffer this small may be kept between items whatever was received.
const SMALL_BUFFER: usize = 4096;

/// The Hello that flag bit 1 puts first.
const HELLO: Hello = Hello {
    client: ClientId(0x0102_0304_0506_0708),
    listen_port: 4000,
    alone: false,
};

/// Bytes of the slice cut for chunk size byte `b`: `b` up to 127, then steps of 512 bytes, so
/// frames of every size get split.
pub fn chunk_size(b: u8) -> usize {
    match b {
        0..=127 => usize::from(b),
        _ => usize::from(b - 127) * 512,
    }
}

/// Runs one fuzz input; panics if the decoder disagrees with the format or itself.
pub fn run(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let chunk_count = usize::from((flags >> 3) & 0x0f).min(rest.len());
    let (chunks, body) = rest.split_at(chunk_count);
    let mut stream = Vec::new();
    if flags & 7 != 0 {
        stream.extend_from_slice(reference::GREETING);
    }
    let mut expected_frames = None;
    if flags & 4 != 0 {
        let frames = arbitrary_frames(body);
        for frame in &frames {
            let mut ours = Vec::new();
            reference::encode(frame, &mut ours);
            let mut theirs = Vec::new();
            frame.encode(&mut theirs);
            assert_eq!(theirs, ours, "{frame:?} encodes other than specified");
            stream.extend_from_slice(&ours);
        }
        expected_frames = Some(frames);
    } else {
        if flags & 2 != 0 {
            reference::encode(&Frame::Hello(HELLO), &mut stream);
        }
        stream.extend_from_slice(body);
    }

    let at_once = feed(&stream, &[usize::MAX]);
    if let Some(frames) = expected_frames {
        let want: Vec<Decoded> = std::iter::once(Decoded::Greeting)
            .chain(frames.into_iter().map(Decoded::Frame))
            .collect();
        assert_eq!(
            at_once,
            (want, None),
            "frames do not decode back to themselves"
        );
    }
    if !chunks.is_empty() {
        let mut sizes: Vec<usize> = chunks.iter().map(|&c| chunk_size(c)).collect();
        if sizes.iter().all(|&size| size == 0) {
            sizes.push(1);
        }
        assert_eq!(
            feed(&stream, &sizes),
            at_once,
            "chunks {sizes:?} vs at once"
        );
    }
    if stream.len() <= BYTEWISE_MAX {
        assert_eq!(feed(&stream, &[1]), at_once, "byte by byte vs at once");
    }
}

/// Feeds `stream` to a fresh decoder in slices whose sizes cycle through `sizes`, checking it
/// against the reference after every slice; returns the items and the error.
fn feed(stream: &[u8], sizes: &[usize]) -> (Vec<Decoded>, Option<DecodeError>) {
    let mut decoder = FrameDecoder::new();
    let mut reader = Reader::new();
    let mut all = Vec::new();
    let mut offset = 0;
    let mut borrowed = false;
    for &size in sizes.iter().cycle() {
        let end = offset + size.min(stream.len() - offset);
        let chunk = &stream[offset..end];
        offset = end;
        // Bytes of the current item received by the end of this chunk, at most.
        let item_bytes = reader.pending() + chunk.len();
        let (want_items, want_error) = reader.push(chunk);
        let want_error = want_error.map(reference::normalise);

        let mut input = chunk;
        let mut items = Vec::new();
        let error = loop {
            let before = input.len();
            // Both doors in turn: the borrowing one must decode exactly what the other does.
            borrowed = !borrowed;
            let result = if borrowed {
                let result = decoder.decode_borrowed(&mut input);
                result.map(|item| item.map(DecodedRef::into_owned))
            } else {
                decoder.decode(&mut input)
            };
            let capacity = decoder.capacity();
            assert!(
                capacity <= SMALL_BUFFER.max(2 * item_bytes),
                "decoder holds {capacity} bytes with at most {item_bytes} of this item received"
            );
            match result {
                Ok(Some(item)) => {
                    assert!(input.len() < before, "{item:?} without consuming a byte");
                    items.push(item);
                }
                Ok(None) => {
                    assert!(input.is_empty(), "Ok(None) with {} bytes left", input.len());
                    break None;
                }
                Err(error) => break Some(reference::normalise(error)),
            }
        };
        assert_eq!(items, want_items, "items of chunk ending at {offset}");
        assert_eq!(error, want_error, "error of chunk ending at {offset}");
        all.extend(items);
        if error.is_some() {
            return (all, error);
        }
        let want_buffered = match reader.partial() {
            reference::Partial::Body { kind, .. } if !reference::is_known(kind) => 0,
            reference::Partial::Body { got, .. } => got,
            _ => reader.pending(),
        };
        assert_eq!(
            decoder.buffered(),
            want_buffered,
            "bytes buffered at {offset}"
        );
        assert_eq!(decoder.greeted(), reader.greeted(), "greeted() at {offset}");
        assert_eq!(decoder.hello_seen(), reader.hello_seen(), "hello_seen()");
        assert_eq!(
            decoder.is_mid_item(),
            reader.partial() != reference::Partial::None,
            "is_mid_item() at {offset}"
        );
        if !decoder.is_mid_item() {
            assert!(
                decoder.capacity() <= SMALL_BUFFER,
                "a {} byte buffer kept between items",
                decoder.capacity()
            );
        }
        if offset == stream.len() {
            break;
        }
    }
    (all, None)
}

/// Frames built from `data`: a Hello, then frames of any kind but Hello, all within limits.
pub fn arbitrary_frames(data: &[u8]) -> Vec<Frame> {
    let mut u = Unstructured::new(data);
    let mut frames = vec![Frame::Hello(Hello {
        client: ClientId(u64::arbitrary(&mut u).unwrap_or(0)),
        listen_port: u16::arbitrary(&mut u).unwrap_or(0),
        alone: bool::arbitrary(&mut u).unwrap_or(false),
    })];
    while !u.is_empty() {
        match arbitrary_frame(&mut u) {
            Ok(Frame::Hello(_)) => {}
            Ok(frame) => frames.push(frame),
            Err(_) => break,
        }
    }
    frames
}

/// A frame of any kind within its limits, Text a valid chat string.
pub fn arbitrary_frame(u: &mut Unstructured<'_>) -> Result<Frame> {
    Ok(match u.int_in_range(0..=8u8)? {
        0 => Frame::Hello(Hello {
            client: ClientId(u64::arbitrary(u)?),
            listen_port: u16::arbitrary(u)?,
            alone: bool::arbitrary(u)?,
        }),
        1 => Frame::Text(valid_text(&String::arbitrary(u)?)),
        2 => {
            // A long string of one character, up to the maximum.
            let c = valid_text(&char::arbitrary(u)?.to_string());
            let bytes = u.int_in_range(1..=TEXT_MAX)?;
            Frame::Text(c.repeat((bytes / c.len()).max(1)))
        }
        3 => Frame::Addrs(arbitrary_addrs(u)?),
        4 => Frame::Ping,
        5 => Frame::Bye {
            reason: ByeReason::from_code(u8::arbitrary(u)?),
            addrs: arbitrary_addrs(u)?,
        },
        6 => {
            let mut body = Vec::<u8>::arbitrary(u)?;
            body.truncate(RECON_MAX);
            Frame::Recon(body)
        }
        7 => Frame::Recon(vec![u8::arbitrary(u)?; u.int_in_range(0..=RECON_MAX)?]),
        _ => {
            let count = u.arbitrary_len::<[u8; 16]>()?.min(WANT_MAX);
            let ids = (0..count)
                .map(|_| <[u8; 16]>::arbitrary(u))
                .collect::<Result<_>>()?;
            Frame::Want(ids)
        }
    })
}

/// `s` without control characters, cut to the maximum, or "x" if nothing is left.
pub fn valid_text(s: &str) -> String {
    let mut text: String = s.chars().filter(|&c| !reference::forbidden(c)).collect();
    while text.len() > TEXT_MAX {
        text.pop();
    }
    if text.is_empty() {
        text.push('x');
    }
    text
}

/// Up to [`ADDRS_MAX`] addresses, IPv4 and IPv6.
pub fn arbitrary_addrs(u: &mut Unstructured<'_>) -> Result<Vec<SocketAddr>> {
    let count = u.int_in_range(0..=ADDRS_MAX)?;
    (0..count)
        .map(|_| {
            let ip: IpAddr = if bool::arbitrary(u)? {
                std::net::Ipv4Addr::from(u32::arbitrary(u)?).into()
            } else {
                Ipv6Addr::from(u128::arbitrary(u)?).into()
            };
            Ok(SocketAddr::new(ip, u16::arbitrary(u)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    //! The hand-made seeds of `fuzz/corpus/decode/`.
    //!
    //! `FLOODCHAT_WRITE_SEEDS=1 cargo test --features fuzzing --lib seeds` rewrites the files.

    use super::*;
    use crate::fuzzing::reference::{encode, kind, raw};

    /// Flag bytes: greeting first, greeting and Hello first, round trip; chunk count `n`.
    const GREET: u8 = 1;
    const HELLO_FIRST: u8 = 2;
    const ROUND_TRIP: u8 = 4;
    fn chunks(n: u8) -> u8 {
        n << 3
    }

    fn frames(list: &[Frame]) -> Vec<u8> {
        let mut out = Vec::new();
        list.iter().for_each(|f| encode(f, &mut out));
        out
    }

    fn every_kind() -> Vec<u8> {
        frames(&[
            Frame::Text("héllo\twörld 🦀".into()),
            Frame::Addrs(vec![
                "127.0.0.1:4000".parse().unwrap(),
                "[::1]:5000".parse().unwrap(),
            ]),
            Frame::Ping,
            Frame::Recon(vec![1, 2, 3]),
            Frame::Want(vec![[7; 16], [9; 16]]),
            Frame::Bye {
                reason: ByeReason::Leaving,
                addrs: vec!["127.0.0.2:1".parse().unwrap()],
            },
        ])
    }

    fn seed(flags: u8, sizes: &[u8], stream: &[u8]) -> Vec<u8> {
        [&[flags][..], sizes, stream].concat()
    }

    fn seeds() -> Vec<(&'static str, Vec<u8>)> {
        let hello = frames(&[Frame::Hello(HELLO)]);
        let text = |s: &[u8]| {
            let mut out = Vec::new();
            raw(kind::TEXT, s, &mut out);
            out
        };
        let mut unknown = Vec::new();
        raw(200, &[0xaa; 300], &mut unknown);
        unknown.extend(frames(&[Frame::Text("after".into())]));
        // A Hello of zeros, then a Text of 'A' repeated to nearly the maximum.
        let long_text = [&[0; 11][..], &[2, 0x41, 0, 0, 0, 0xff, 0xff, 0xf0]].concat();
        vec![
            ("every-kind", seed(HELLO_FIRST, &[], &every_kind())),
            (
                "every-kind-in-chunks",
                seed(HELLO_FIRST | chunks(3), &[3, 0, 7], &every_kind()),
            ),
            (
                "greeting-and-hello-split",
                seed(
                    chunks(2),
                    &[4, 9],
                    &[&reference::GREETING[..], &hello].concat(),
                ),
            ),
            (
                "http-request",
                seed(0, &[], b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            ),
            ("old-version", seed(0, &[], b"FLOODCHAT\x01\0\0\0\x05hello")),
            ("newer-version", seed(0, &[], b"FLOODCHAT\x04")),
            ("version-2", seed(0, &[], b"FLOODCHAT\x02")),
            (
                "4gib-length",
                seed(HELLO_FIRST, &[], &[0xff, 0xff, 0xff, 0xff, 2]),
            ),
            (
                "text-max-plus-one",
                seed(HELLO_FIRST, &[], &[0, 1, 0, 2, kind::TEXT]),
            ),
            (
                "hello-too-large",
                seed(GREET, &[], &[0, 0, 0, 77, kind::HELLO]),
            ),
            (
                "ping-too-large",
                seed(HELLO_FIRST, &[], &[0, 0, 0, 66, kind::PING]),
            ),
            (
                "unknown-kind-too-large",
                seed(HELLO_FIRST, &[], &[0, 1, 0, 2, 99]),
            ),
            (
                "unknown-kind-skipped",
                seed(HELLO_FIRST | chunks(1), &[130], &unknown),
            ),
            ("no-hello", seed(GREET, &[], &frames(&[Frame::Ping]))),
            ("repeated-hello", seed(HELLO_FIRST, &[], &hello)),
            ("empty-frame", seed(HELLO_FIRST, &[], &[0, 0, 0, 0])),
            ("text-empty", seed(HELLO_FIRST, &[], &text(b""))),
            (
                "text-invalid-utf8",
                seed(HELLO_FIRST, &[], &text(b"ab\xff")),
            ),
            ("text-escape", seed(HELLO_FIRST, &[], &text(b"\x1b[2J"))),
            (
                "text-carriage-return",
                seed(HELLO_FIRST, &[], &text(b"bob: hi\ralice")),
            ),
            (
                "text-c1",
                seed(HELLO_FIRST, &[], &text("x\u{9b}31m".as_bytes())),
            ),
            ("text-del", seed(HELLO_FIRST, &[], &text(b"del\x7f"))),
            (
                "addrs-bad-family",
                seed(HELLO_FIRST, &[], &[0, 0, 0, 3, kind::ADDRS, 1, 9]),
            ),
            (
                "want-count-mismatch",
                seed(HELLO_FIRST, &[], &[0, 0, 0, 4, kind::WANT, 0, 2, 0]),
            ),
            (
                "bye-empty",
                seed(HELLO_FIRST, &[], &[0, 0, 0, 1, kind::BYE]),
            ),
            (
                "hello-short",
                seed(GREET, &[], &[0, 0, 0, 3, kind::HELLO, 0, 1]),
            ),
            (
                "big-text-announced-little-sent",
                seed(
                    HELLO_FIRST,
                    &[],
                    &[&[0, 1, 0, 1, kind::TEXT][..], b"0123456789"].concat(),
                ),
            ),
            (
                "round-trip-long-text-in-chunks",
                seed(ROUND_TRIP | chunks(2), &[200, 77], &long_text),
            ),
            (
                "round-trip",
                seed(
                    ROUND_TRIP,
                    &[],
                    b"\x01\x02\x03\x04\x05\x06\x07\x08\x0f\xa0\x01abc\x02\x05\x03\x00\x00",
                ),
            ),
            (
                "round-trip-long-in-chunks",
                seed(ROUND_TRIP | chunks(2), &[255, 3], &[7u8; 48]),
            ),
        ]
    }

    #[test]
    fn seeds_run_and_match_the_corpus() {
        for (name, bytes) in seeds() {
            run(&bytes);
            crate::fuzzing::check_seed("decode", name, &bytes);
        }
    }

    #[test]
    fn the_reference_catches_a_wrong_decoding() {
        // The oracle is not vacuous: a stream and its reading disagree when one byte changes.
        let mut stream = reference::GREETING.to_vec();
        stream.extend(frames(&[Frame::Hello(HELLO), Frame::Text("abc".into())]));
        let (items, error) = Reader::new().push(&stream);
        assert_eq!(error, None);
        assert_eq!(
            items.last(),
            Some(&Decoded::Frame(Frame::Text("abc".into())))
        );
        let last = stream.len() - 1;
        stream[last] = 0x07;
        let (_, error) = Reader::new().push(&stream);
        assert_eq!(
            error,
            Some(DecodeError::BadText(crate::wire::TextError::Control(
                '\x07'
            )))
        );
    }
}
