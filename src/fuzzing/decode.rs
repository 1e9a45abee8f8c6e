//! Fuzz entry point `decode`: [`FrameDecoder`] fed all at once, in fuzzer-chosen chunks and
//! one byte at a time must give the same items and error as a plain reading of the format.
//!
//! Input layout: byte 0 is a flag byte. Bit 0 puts a valid greeting in front of the stream, so
//! the fuzzer reaches frames at once; bits 1..=4 give `n`, and the next `n` bytes are chunk
//! sizes, used in turn (0 feeds an empty slice). The rest is the byte stream.

use crate::MAX_MESSAGE_LEN;
use crate::wire::{DecodeError, Decoded, FrameDecoder, GREETING, HEADER_LEN, MAGIC, VERSION};

/// Streams longer than this are not also fed one byte at a time, to keep runs fast.
const BYTEWISE_MAX: usize = 4096;

/// The most bytes a decoder may hold at any time.
const BUFFER_BOUND: usize = if HEADER_LEN > MAX_MESSAGE_LEN {
    HEADER_LEN
} else {
    MAX_MESSAGE_LEN
};

/// What decoding a whole stream gives: the items, then the error that stopped it, if any.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    items: Vec<Decoded>,
    error: Option<DecodeError>,
    /// Whether the greeting was decoded; only compared when there was no error.
    greeted: bool,
    /// Whether bytes of an unfinished item remain; only compared when there was no error.
    mid_item: bool,
}

/// Runs one fuzz input; panics if any way of feeding the decoder disagrees with another.
pub fn run(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let chunk_count = usize::from((flags >> 1) & 0x0f).min(rest.len());
    let (chunks, body) = rest.split_at(chunk_count);
    let stream: Vec<u8> = if flags & 1 == 1 {
        GREETING.iter().chain(body).copied().collect()
    } else {
        body.to_vec()
    };

    let expected = reference(&stream);
    let at_once = feed(&stream, &[usize::MAX]);
    assert_eq!(at_once, expected, "all at once vs the format");
    if !chunks.is_empty() {
        let mut sizes: Vec<usize> = chunks.iter().map(|&c| usize::from(c)).collect();
        if sizes.iter().all(|&size| size == 0) {
            sizes.push(1);
        }
        assert_eq!(
            feed(&stream, &sizes),
            at_once,
            "chunks {sizes:?} vs all at once"
        );
    }
    if stream.len() <= BYTEWISE_MAX {
        assert_eq!(
            feed(&stream, &[1]),
            at_once,
            "one byte at a time vs all at once"
        );
    }
}

/// Feeds `stream` to a fresh decoder in slices whose sizes cycle through `sizes`.
fn feed(stream: &[u8], sizes: &[usize]) -> Outcome {
    let mut decoder = FrameDecoder::new();
    let mut items = Vec::new();
    let mut offset = 0;
    for &size in sizes.iter().cycle() {
        let end = offset + size.min(stream.len() - offset);
        let mut input = &stream[offset..end];
        loop {
            let before = input.len();
            let result = decoder.decode(&mut input);
            assert!(
                decoder.buffered() <= BUFFER_BOUND,
                "decoder buffers {} bytes",
                decoder.buffered()
            );
            match result {
                Ok(Some(item)) => {
                    assert!(
                        input.len() < before,
                        "item {item:?} without consuming a byte"
                    );
                    items.push(item);
                }
                Ok(None) => {
                    assert!(input.is_empty(), "Ok(None) with {} bytes left", input.len());
                    break;
                }
                Err(error) => {
                    return Outcome {
                        items,
                        error: Some(error),
                        greeted: false,
                        mid_item: false,
                    };
                }
            }
        }
        offset = end;
        if offset == stream.len() {
            break;
        }
    }
    Outcome {
        items,
        error: None,
        greeted: decoder.greeted(),
        mid_item: decoder.is_mid_item(),
    }
}

/// The format as documented in [`crate::wire`], read from a complete stream.
fn reference(stream: &[u8]) -> Outcome {
    let fail = |items, error| Outcome {
        items,
        error: Some(error),
        greeted: false,
        mid_item: false,
    };
    let mut items = Vec::new();
    for (at, &byte) in stream.iter().take(GREETING.len()).enumerate() {
        if at < MAGIC.len() && byte != MAGIC[at] {
            let got = stream[..=at].to_vec();
            return fail(items, DecodeError::BadMagic { got });
        }
        if at == MAGIC.len() && byte != VERSION {
            return fail(items, DecodeError::UnsupportedVersion(byte));
        }
    }
    if stream.len() < GREETING.len() {
        return Outcome {
            items,
            error: None,
            greeted: false,
            mid_item: !stream.is_empty(),
        };
    }
    items.push(Decoded::Greeting);
    let mut rest = &stream[GREETING.len()..];
    while let Some((header, after)) = rest.split_first_chunk::<HEADER_LEN>() {
        let len = u32::from_be_bytes(*header);
        if len == 0 {
            return fail(items, DecodeError::EmptyFrame);
        }
        if len as usize > MAX_MESSAGE_LEN {
            return fail(items, DecodeError::FrameTooLarge(len));
        }
        let Some((text, after)) = after.split_at_checked(len as usize) else {
            break;
        };
        let Ok(text) = std::str::from_utf8(text) else {
            return fail(items, DecodeError::InvalidUtf8);
        };
        if text.contains('\n') {
            return fail(items, DecodeError::LineFeed);
        }
        items.push(Decoded::Message(text.to_owned()));
        rest = after;
    }
    Outcome {
        items,
        error: None,
        greeted: true,
        mid_item: !rest.is_empty(),
    }
}
