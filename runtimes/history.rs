//! The room's history on disk: an append-only log of the strings this client printed, each
//! record with its own checksum, read back at start in one streaming pass.
//!
//! The file is a 16-byte head (`FLOODLOG`, the format as a little-endian `u32`, four zero
//! bytes) and then one record per string: its length (`u32`, little-endian), the CRC-32 of
//! those four bytes and the text (`u32`), and the text. So the file takes the text and 8 bytes
//! a string. Strings are never empty and never hold a control character but tab, so a
//! record's head (which holds zero bytes for any length a string can have) cannot hide inside
//! a string's text: after damage, the next record is found again by its head and checksum.
//!
//! Reading stops at nothing: a record whose checksum fails is never handed out, a torn
//! record at the end is cut off, damage in the middle is skipped up to the next good record.
//! What was found is told in a [`Loaded`], for the driver to say.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The first eight bytes of a history file.
pub const MAGIC: &[u8; 8] = b"FLOODLOG";
/// The format this floodchat writes and reads.
pub const FORMAT: u32 = 1;
/// Bytes of the file's head.
pub const HEAD_LEN: usize = 16;
/// Bytes of a record beside its text.
pub const RECORD_HEAD: usize = 8;
/// The longest text a record may hold.
const MAX_TEXT: usize = floodchat::MAX_MESSAGE_LEN;
/// Bytes read from the file at once while loading.
const READ_CHUNK: usize = 1 << 20;

/// The file's head for [`FORMAT`].
pub fn head() -> [u8; HEAD_LEN] {
    let mut head = [0; HEAD_LEN];
    head[..8].copy_from_slice(MAGIC);
    head[8..12].copy_from_slice(&FORMAT.to_le_bytes());
    head
}

/// Appends the record of `text` to `out`.
pub fn encode(text: &[u8], out: &mut Vec<u8>) {
    let len = (text.len() as u32).to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len);
    crc.update(text);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(text);
}

/// Why a history file cannot be used at all.
#[derive(Debug)]
pub enum OpenError {
    /// Written by a newer floodchat, in this format.
    Newer(u32),
    /// Not a floodchat history.
    NotHistory,
    /// Reading or repairing it failed.
    Io(io::Error),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Newer(format) => write!(
                f,
                "it was written by a newer floodchat (format {format}; this one reads format \
                 {FORMAT}): upgrade floodchat, or use another --data-dir"
            ),
            Self::NotHistory => f.write_str("it is not a floodchat history"),
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// What loading found, beside the strings it handed out.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// Good records read.
    pub records: usize,
    /// Bytes of a torn record cut off the end.
    pub torn: u64,
    /// Damaged byte ranges in the middle, skipped: `(start, end)`.
    pub damaged: Vec<(u64, u64)>,
    /// The file's length once repaired: where appending goes on.
    pub end: u64,
    /// Whether the file was new (missing or empty, or only part of a head).
    pub fresh: bool,
}

/// The file, read in chunks, and where in it the next record starts.
struct Scan<R> {
    file: R,
    buf: Vec<u8>,
    /// Position in `buf` of the next byte to look at.
    at: usize,
    /// File offset of `buf[0]`.
    base: u64,
    eof: bool,
}

/// What is at the current position.
enum At {
    /// A good record of this text length.
    Record(usize),
    /// Nothing: the file ends here.
    End,
    /// The file ends before the record that starts here does.
    Short,
    /// Bytes that are not a good record.
    Bad,
}

impl<R: Read> Scan<R> {
    /// The file offset of the current position.
    fn offset(&self) -> u64 {
        self.base + self.at as u64
    }

    /// Makes sure `n` bytes from the current position are in the buffer, if the file has
    /// them; returns whether it has.
    fn have(&mut self, n: usize) -> io::Result<bool> {
        while self.buf.len() - self.at < n && !self.eof {
            if self.at > 0 {
                self.buf.drain(..self.at);
                self.base += self.at as u64;
                self.at = 0;
            }
            let len = self.buf.len();
            self.buf.resize(len + READ_CHUNK.max(n), 0);
            let read = loop {
                match self.file.read(&mut self.buf[len..]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            };
            let read = read.inspect_err(|_| self.buf.truncate(len))?;
            self.buf.truncate(len + read);
            self.eof = read == 0;
        }
        Ok(self.buf.len() - self.at >= n)
    }

    fn look(&mut self) -> io::Result<At> {
        if !self.have(RECORD_HEAD)? {
            return Ok(if self.buf.len() == self.at {
                At::End
            } else {
                At::Short
            });
        }
        let head = &self.buf[self.at..self.at + RECORD_HEAD];
        let len = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(head[4..].try_into().unwrap());
        if len == 0 || len > MAX_TEXT {
            return Ok(At::Bad);
        }
        if !self.have(RECORD_HEAD + len)? {
            return Ok(At::Short);
        }
        let record = &self.buf[self.at..self.at + RECORD_HEAD + len];
        let mut sum = crc32fast::Hasher::new();
        sum.update(&record[..4]);
        sum.update(&record[RECORD_HEAD..]);
        Ok(if sum.finalize() == crc {
            At::Record(len)
        } else {
            At::Bad
        })
    }
}

/// Reads the records of `file` from after its head, handing each good text to `each`; finds
/// damage and a torn end, but changes nothing.
fn scan(file: impl Read, each: &mut dyn FnMut(&[u8])) -> io::Result<Loaded> {
    let mut scan = Scan {
        file,
        buf: Vec::new(),
        at: 0,
        base: HEAD_LEN as u64,
        eof: false,
    };
    let mut loaded = Loaded::default();
    loop {
        match scan.look()? {
            At::End => break,
            At::Record(len) => {
                each(&scan.buf[scan.at + RECORD_HEAD..scan.at + RECORD_HEAD + len]);
                scan.at += RECORD_HEAD + len;
                loaded.records += 1;
            }
            At::Short | At::Bad => {
                // Look for the next good record, one byte on at a time.
                let from = scan.offset();
                let found = loop {
                    scan.at += 1;
                    match scan.look()? {
                        At::Record(_) => break true,
                        At::End => break false,
                        // A bogus head may claim more than is left; a good record may follow.
                        At::Short | At::Bad => {}
                    }
                };
                if !found {
                    // Nothing good after it: a torn end, cut off.
                    scan.at = scan.buf.len();
                    loaded.torn = scan.offset() - from;
                    loaded.end = from;
                    return Ok(loaded);
                }
                loaded.damaged.push((from, scan.offset()));
            }
        }
    }
    loaded.end = scan.offset();
    Ok(loaded)
}

/// Opens (or makes) the history at `path`, hands every good string to `each` in order, and
/// repairs the file: a torn end is cut off; damaged ranges in the middle are left out of a
/// rewritten file, the damaged one kept beside it as `<path>.damaged`. Returns what was found
/// and the file, open for appending.
pub fn open(path: &Path, each: &mut dyn FnMut(&[u8])) -> Result<(File, Loaded), OpenError> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    if !read_head(&mut file)? {
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&head())?;
        file.sync_all()?;
        let loaded = Loaded {
            end: HEAD_LEN as u64,
            fresh: true,
            ..Loaded::default()
        };
        return Ok((file, loaded));
    }
    let loaded = scan(&mut file, each)?;
    if !loaded.damaged.is_empty() {
        file = rewrite(path, &loaded)?;
    } else if loaded.torn > 0 {
        file.set_len(loaded.end)?;
        file.sync_all()?;
    }
    file.seek(SeekFrom::Start(loaded.end))?;
    Ok((file, loaded))
}

/// Reads the history at `path` as [`open`] does, but changes nothing (a directory that
/// cannot be written to); a missing file holds nothing.
pub fn read_only(path: &Path, each: &mut dyn FnMut(&[u8])) -> Result<Loaded, OpenError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Loaded::default()),
        Err(e) => return Err(e.into()),
    };
    if read_head(&mut file)? {
        Ok(scan(&mut file, each)?)
    } else {
        Ok(Loaded::default())
    }
}

/// Reads and checks the file's head: `false` if it is missing or cut short (a new file).
fn read_head(file: &mut File) -> Result<bool, OpenError> {
    let mut found = [0; HEAD_LEN];
    let mut got = 0;
    while got < HEAD_LEN {
        match file.read(&mut found[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let ours = head();
    if got < HEAD_LEN {
        // Missing, empty, or cut inside its head (a crash while it was made).
        if found[..got] != ours[..got] {
            return Err(OpenError::NotHistory);
        }
        return Ok(false);
    }
    if found[..8] != MAGIC[..] {
        return Err(OpenError::NotHistory);
    }
    let format = u32::from_le_bytes(found[8..12].try_into().unwrap());
    if format > FORMAT {
        return Err(OpenError::Newer(format));
    }
    if format != FORMAT || found[12..] != [0; 4] {
        return Err(OpenError::NotHistory);
    }
    Ok(true)
}

/// The path of the damaged file kept beside `path`.
pub fn damaged_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".damaged");
    PathBuf::from(name)
}

/// Writes the good parts of the history at `path` to a new file that takes its place; the
/// old one is kept as [`damaged_path`]. Returns the new file.
fn rewrite(path: &Path, loaded: &Loaded) -> io::Result<File> {
    let mut old = File::open(path)?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".new");
    let tmp = PathBuf::from(tmp_name);
    let mut new = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    let mut from = 0;
    for &(start, end) in loaded
        .damaged
        .iter()
        .chain([(loaded.end, loaded.end)].iter())
    {
        old.seek(SeekFrom::Start(from))?;
        io::copy(&mut (&mut old).take(start - from), &mut new)?;
        from = end;
    }
    new.sync_all()?;
    fs::rename(path, damaged_path(path))?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        // The renames are durable once the directory is.
        File::open(dir)?.sync_all()?;
    }
    OpenOptions::new().read(true).write(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A history file's bytes holding `texts`.
    fn file_of(texts: &[&str]) -> Vec<u8> {
        let mut bytes = head().to_vec();
        for t in texts {
            encode(t.as_bytes(), &mut bytes);
        }
        bytes
    }

    fn scan_bytes(bytes: &[u8]) -> (Vec<String>, Loaded) {
        let mut got = Vec::new();
        let loaded = scan(&bytes[HEAD_LEN..], &mut |t| {
            got.push(String::from_utf8(t.to_vec()).unwrap())
        })
        .unwrap();
        (got, loaded)
    }

    #[test]
    fn records_take_the_text_and_eight_bytes() {
        let bytes = file_of(&["hello", "a line of thirty-two bytes, yes."]);
        assert_eq!(bytes.len(), HEAD_LEN + 5 + 32 + 2 * RECORD_HEAD);
        let (got, loaded) = scan_bytes(&bytes);
        assert_eq!(got, ["hello", "a line of thirty-two bytes, yes."]);
        assert_eq!(loaded.records, 2);
        assert_eq!(loaded.end, bytes.len() as u64);
        assert!(loaded.damaged.is_empty() && loaded.torn == 0);
    }

    #[test]
    fn a_record_cut_anywhere_is_cut_off_and_the_rest_kept() {
        let whole = file_of(&["one", "two", "three"]);
        let two = file_of(&["one", "two"]).len();
        for cut in two + 1..whole.len() {
            let (got, loaded) = scan_bytes(&whole[..cut]);
            assert_eq!(got, ["one", "two"], "cut at {cut}");
            assert_eq!(loaded.end, two as u64);
            assert_eq!(loaded.torn, (cut - two) as u64);
        }
    }

    #[test]
    fn a_flipped_byte_anywhere_costs_only_its_record() {
        let texts = ["first line", "second line", "third line", "fourth line"];
        let whole = file_of(&texts);
        let first = file_of(&texts[..1]).len();
        let second = file_of(&texts[..2]).len();
        for at in first..second {
            for bit in [0x01, 0x80] {
                let mut bytes = whole.clone();
                bytes[at] ^= bit;
                let (got, loaded) = scan_bytes(&bytes);
                assert_eq!(
                    got,
                    ["first line", "third line", "fourth line"],
                    "byte {at}"
                );
                assert_eq!(loaded.damaged, [(first as u64, second as u64)], "byte {at}");
                assert_eq!(loaded.torn, 0);
            }
        }
        // In the last record, the damage is a torn end.
        let mut bytes = whole.clone();
        let last = bytes.len() - 2;
        bytes[last] ^= 1;
        let (got, loaded) = scan_bytes(&bytes);
        assert_eq!(got, &texts[..3]);
        assert!(loaded.damaged.is_empty());
        assert_eq!(loaded.end, file_of(&texts[..3]).len() as u64);
    }

    #[test]
    fn zeros_and_noise_are_skipped() {
        let mut bytes = file_of(&["before"]);
        bytes.extend(std::iter::repeat_n(0u8, 5000));
        bytes.extend((0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        let mut after = Vec::new();
        encode(b"after", &mut after);
        bytes.extend(&after);
        let (got, loaded) = scan_bytes(&bytes);
        assert_eq!(got, ["before", "after"]);
        assert_eq!(loaded.damaged.len(), 1);
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("floodchat-history-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn open_texts(path: &Path) -> Result<(Vec<String>, Loaded), OpenError> {
        let mut got = Vec::new();
        let (_, loaded) = open(path, &mut |t| {
            got.push(String::from_utf8(t.to_vec()).unwrap())
        })?;
        Ok((got, loaded))
    }

    #[test]
    fn open_repairs_the_file_once_and_keeps_the_damaged_copy() {
        let dir = temp_dir("repair");
        let path = dir.join("room.log");
        let texts = ["a", "bb", "ccc", "dddd"];
        let mut bytes = file_of(&texts);
        let second = file_of(&texts[..1]).len();
        bytes[second + RECORD_HEAD] ^= 0x10;
        bytes.extend_from_slice(&[3, 0, 0]);
        fs::write(&path, &bytes).unwrap();
        let (got, loaded) = open_texts(&path).unwrap();
        assert_eq!(got, ["a", "ccc", "dddd"]);
        assert_eq!(loaded.damaged.len(), 1);
        assert_eq!(loaded.torn, 3);
        assert_eq!(fs::read(damaged_path(&path)).unwrap(), bytes);
        // Repaired: the next open finds nothing wrong.
        let (got, loaded) = open_texts(&path).unwrap();
        assert_eq!(got, ["a", "ccc", "dddd"]);
        assert!(loaded.damaged.is_empty() && loaded.torn == 0);
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            file_of(&["a", "ccc", "dddd"]).len() as u64
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn empty_newer_and_foreign_files() {
        let dir = temp_dir("heads");
        let path = dir.join("room.log");
        fs::write(&path, b"").unwrap();
        let (got, loaded) = open_texts(&path).unwrap();
        assert!(got.is_empty() && loaded.fresh);
        assert_eq!(fs::read(&path).unwrap(), head());
        // Cut inside its head: made again.
        fs::write(&path, &head()[..5]).unwrap();
        assert!(open_texts(&path).unwrap().1.fresh);
        let mut newer = head();
        newer[8] = 2;
        fs::write(&path, newer).unwrap();
        let e = open_texts(&path).unwrap_err();
        assert!(matches!(e, OpenError::Newer(2)), "{e}");
        assert_eq!(
            fs::read(&path).unwrap(),
            newer,
            "a newer file is not touched"
        );
        fs::write(&path, b"something else entirely").unwrap();
        assert!(matches!(open_texts(&path), Err(OpenError::NotHistory)));
        fs::remove_dir_all(dir).unwrap();
    }
}
