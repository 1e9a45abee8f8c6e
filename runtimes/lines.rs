//! [`Lines`]: typed lines on their way to the state, cut once where they are read.

use floodchat::MAX_MESSAGE_LEN;

/// The longest line kept from stdin: one more than a message and its `\r`, so that the core
/// still sees that an over-long line is too long.
const LINE_KEPT: usize = MAX_MESSAGE_LEN + 2;

/// A batch of typed lines, without their line ends, in one buffer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Lines {
    bytes: Vec<u8>,
    /// Where each line ends in `bytes`.
    ends: Vec<usize>,
}

impl Lines {
    /// One line, as the line editor gives it.
    pub fn one(line: Vec<u8>) -> Self {
        Self {
            ends: vec![line.len()],
            bytes: line,
        }
    }

    /// The lines, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(s, &e)| &self.bytes[s..e])
    }

    /// The first line, and the batch of the others.
    pub fn split_first(mut self) -> Option<(Vec<u8>, Lines)> {
        let &first = self.ends.first()?;
        let rest = self.bytes.split_off(first);
        let ends = self.ends[1..].iter().map(|e| e - first).collect();
        Some((self.bytes, Lines { bytes: rest, ends }))
    }
}

/// Cuts bytes read from stdin into [`Lines`], keeping at most [`LINE_KEPT`] bytes of each,
/// so that the core still sees that an over-long line is too long without holding all of it.
#[derive(Default)]
pub struct LineSplitter {
    /// Whole lines, then the start of the next one.
    lines: Lines,
}

impl LineSplitter {
    /// Takes more input; returns the lines completed so far, if any.
    pub fn push(&mut self, mut bytes: &[u8]) -> Option<Lines> {
        while !bytes.is_empty() {
            let (part, rest, ends) = match bytes.iter().position(|&b| b == b'\n') {
                Some(p) => (&bytes[..p], &bytes[p + 1..], true),
                None => (bytes, &[][..], false),
            };
            let room = LINE_KEPT - (self.lines.bytes.len() - self.whole());
            self.lines
                .bytes
                .extend_from_slice(&part[..part.len().min(room)]);
            if ends {
                self.lines.ends.push(self.lines.bytes.len());
            }
            bytes = rest;
        }
        self.take()
    }

    /// Ends the input; returns what is left, a last line without its `\n` included.
    pub fn finish(mut self) -> Option<Lines> {
        if self.lines.bytes.len() > self.whole() {
            self.lines.ends.push(self.lines.bytes.len());
        }
        self.take()
    }

    /// Where the whole lines end.
    fn whole(&self) -> usize {
        self.lines.ends.last().copied().unwrap_or(0)
    }

    fn take(&mut self) -> Option<Lines> {
        if self.lines.ends.is_empty() {
            return None;
        }
        let rest = self.lines.bytes.split_off(self.whole());
        let lines = std::mem::replace(
            &mut self.lines,
            Lines {
                bytes: rest,
                ends: Vec::new(),
            },
        );
        Some(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lines: &Lines) -> Vec<&[u8]> {
        lines.iter().collect()
    }

    #[test]
    fn lines_are_cut_once_however_the_bytes_arrive() {
        let input = b"one\ntwo\n\nthree";
        for split in 0..=input.len() {
            let mut splitter = LineSplitter::default();
            let mut got: Vec<Vec<u8>> = Vec::new();
            for part in [&input[..split], &input[split..]] {
                if let Some(lines) = splitter.push(part) {
                    got.extend(lines.iter().map(<[u8]>::to_vec));
                }
            }
            if let Some(lines) = splitter.finish() {
                got.extend(lines.iter().map(<[u8]>::to_vec));
            }
            let want: Vec<&[u8]> = vec![b"one", b"two", b"", b"three"];
            assert_eq!(got, want, "split at {split}");
        }
    }

    #[test]
    fn an_over_long_line_is_cut_to_one_more_than_the_limit() {
        let mut splitter = LineSplitter::default();
        let long = vec![b'x'; LINE_KEPT * 3];
        assert_eq!(splitter.push(&long), None);
        let lines = splitter.push(b"\nnext\n").unwrap();
        let got = texts(&lines);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len(), LINE_KEPT);
        assert_eq!(got[1], b"next");
    }

    #[test]
    fn the_first_line_splits_off() {
        let mut splitter = LineSplitter::default();
        let lines = splitter.push(b"127.0.0.1:4000\nhello\nagain\n").unwrap();
        let (first, rest) = lines.split_first().unwrap();
        assert_eq!(first, b"127.0.0.1:4000");
        assert_eq!(texts(&rest), [&b"hello"[..], b"again"]);
        assert_eq!(Lines::default().split_first(), None);
    }
}
