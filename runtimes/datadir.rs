//! A client's data directory (`--data-dir`): what it keeps across runs, one process at a time.
//!
//! | file | what |
//! | --- | --- |
//! | `lock` | held locked while a client runs, so that a second one stops at once |
//! | `room.log` | the room's strings this client printed, in order (`history.rs`) |
//! | `room.log.damaged` | a damaged history as it was found, kept beside the repaired one |
//! | `addrs` | the clients it had links with, one `IP:PORT` a line, to rejoin through |
//! | `port` | the port it listened on, taken again when `--listen` leaves it to the system |
//! | `recall` | the lines typed in the line editor, for Up/Down |
//! | secrets | each in its own file of mode 0600 ([`DataDir::write_secret`]): the client's identity key and a private room's key, once the protocol has them |
//!
//! Small files are replaced whole (written beside, then renamed), so a kill leaves the old
//! one or the new one. The history is the one large file; it is only appended to, and its
//! writes go out with stdout's (see [`Keeper`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use fd_lock::RwLock;
use floodchat::FloodState;

use crate::driver::say;
use crate::history::{self, Loaded, OpenError};
use crate::terminal::visible;

/// How late a printed line may become durable against a crash of the machine (a killed
/// process loses nothing that it printed: the history is written before stdout is).
pub const SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// Lines kept for the line editor's Up/Down; the file is cut back to this many at start.
const RECALL_KEPT: usize = 1000;

/// An open, locked data directory.
pub struct DataDir {
    path: PathBuf,
    /// Whether files can be written here; when not, the client said so once.
    writable: bool,
}

impl DataDir {
    /// Makes the directory if needed (mode 0700) and locks it for this process; an error if
    /// another client holds it. A directory that cannot be written to is used read-only, and
    /// the user is told once that nothing is kept.
    pub fn open(path: &Path) -> Result<DataDir, String> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|e| format!("cannot make the data directory {}: {e}", path.display()))?;
        let lock_path = path.join("lock");
        let (file, writable) = match OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
        {
            Ok(file) => (Some(file), true),
            Err(e) => {
                say(format!(
                    "cannot write in the data directory {}: {e}; its history is read, but \
                     nothing more is kept",
                    path.display()
                ));
                (File::open(&lock_path).ok(), false)
            }
        };
        if let Some(file) = file {
            // Held until the process ends: the lock and its guard live as long.
            let lock: &'static mut RwLock<File> = Box::leak(Box::new(RwLock::new(file)));
            match lock.try_write() {
                Ok(guard) => std::mem::forget(guard),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(format!(
                        "another floodchat is using the data directory {}; one client per \
                         directory",
                        path.display()
                    ));
                }
                Err(e) => return Err(format!("cannot lock {}: {e}", lock_path.display())),
            }
        }
        Ok(DataDir {
            path: path.to_path_buf(),
            writable,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether files can be written here.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// The history's file.
    pub fn history_path(&self) -> PathBuf {
        self.path.join("room.log")
    }

    /// Replaces the file `name` with `bytes` whole: written beside it, then renamed.
    fn replace(&self, name: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
        let tmp = self.path.join(format!(".{name}.new"));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_data()?;
        fs::rename(&tmp, self.path.join(name))
    }

    /// The addresses kept by the last run.
    pub fn load_addrs(&self) -> Vec<SocketAddr> {
        let text = fs::read_to_string(self.path.join("addrs")).unwrap_or_default();
        text.lines().filter_map(|l| l.trim().parse().ok()).collect()
    }

    /// Keeps `addrs` for the next run.
    pub fn save_addrs(&self, addrs: &[SocketAddr]) -> io::Result<()> {
        let text: String = addrs.iter().map(|a| format!("{a}\n")).collect();
        self.replace("addrs", text.as_bytes(), 0o600)
    }

    /// The port the last run listened on.
    pub fn load_port(&self) -> Option<u16> {
        let text = fs::read_to_string(self.path.join("port")).ok()?;
        text.trim().parse().ok().filter(|&p| p != 0)
    }

    /// Keeps the port listened on for the next run.
    pub fn save_port(&self, port: u16) -> io::Result<()> {
        self.replace("port", format!("{port}\n").as_bytes(), 0o600)
    }

    /// The line editor's recalled lines, oldest first, and the file to append new ones to
    /// (cut back to the last [`RECALL_KEPT`] lines).
    pub fn open_recall(&self) -> (Vec<String>, Option<File>) {
        let path = self.path.join("recall");
        let text = fs::read_to_string(&path).unwrap_or_default();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() > RECALL_KEPT {
            lines.drain(..lines.len() - RECALL_KEPT);
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let _ = self.replace("recall", text.as_bytes(), 0o600);
        }
        let file = self.writable.then(|| {
            OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(&path)
                .ok()
        });
        (lines, file.flatten())
    }

    /// Keeps a secret (a key) in its own file, readable by its owner only (mode 0600).
    pub fn write_secret(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.replace(name, bytes, 0o600)
    }

    /// A secret kept by [`DataDir::write_secret`], if there is one.
    pub fn read_secret(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.path.join(name)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Lines of the history shown again as scrollback when stdout is a terminal.
const SCROLLBACK: usize = 20;

/// What a client keeps in its data directory, as the driver uses it: opened before anything
/// else (so a second client stops at once), read into the state, and kept up to date.
pub struct Kept {
    dir: DataDir,
    /// The addresses kept by the last run.
    known: Vec<SocketAddr>,
    /// The addresses last written.
    saved: Vec<SocketAddr>,
}

impl Kept {
    /// Opens and locks the data directory at `path`.
    pub fn open(path: &Path) -> Result<Kept, String> {
        let dir = DataDir::open(path)?;
        let known = dir.load_addrs();
        Ok(Kept {
            dir,
            saved: known.clone(),
            known,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &DataDir {
        &self.dir
    }

    /// The addresses to rejoin through, kept by the last run.
    pub fn known(&self) -> &[SocketAddr] {
        &self.known
    }

    /// Reads the history into `state` (before it starts); returns the keeper of new lines
    /// and what the user must hear of the history (damage found, or that it is not kept).
    /// `Err` when the file is not one this floodchat may touch.
    pub fn restore(&self, state: &mut FloodState) -> Result<(Keeper, Vec<String>), String> {
        let path = self.dir.history_path();
        let mut each = |text: &[u8]| {
            state.restore(text);
        };
        let mut said = Vec::new();
        let shown = path.display();
        let result = if self.dir.is_writable() {
            history::open(&path, &mut each).map(|(file, loaded)| (Some(file), loaded))
        } else {
            history::read_only(&path, &mut each).map(|loaded| (None, loaded))
        };
        let (file, loaded) = match result {
            Ok(opened) => opened,
            Err(OpenError::Io(e)) => {
                said.push(format!(
                    "cannot use the history {shown}: {e}; chatting on from memory, but this                      client's history is not kept"
                ));
                (None, Loaded::default())
            }
            Err(e) => return Err(format!("cannot use the history {shown}: {e}")),
        };
        if loaded.torn > 0 {
            said.push(format!(
                "the history {shown} ended in a torn record ({} bytes, from a crash); it was                  cut off",
                loaded.torn
            ));
        }
        if let Some(&(first, _)) = loaded.damaged.first() {
            let bytes: u64 = loaded.damaged.iter().map(|(a, b)| b - a).sum();
            said.push(format!(
                "the history {shown} is damaged: {bytes} bytes in {} places (the first at                  byte {first}) failed their checksums and were skipped; the {} good lines                  are kept, and the damaged file as {}",
                loaded.damaged.len(),
                loaded.records,
                history::damaged_path(&path).display()
            ));
        }
        let keeper = Keeper::new(file, loaded.end, self.dir.path());
        Ok((keeper, said))
    }

    /// The last lines of the history, to show as scrollback when stdout is a terminal: a
    /// heading, then the lines.
    pub fn scrollback(&self, state: &FloodState) -> Vec<String> {
        let held = state.messages().len();
        if held == 0 || !io::stdout().is_terminal() {
            return Vec::new();
        }
        let from = held.saturating_sub(SCROLLBACK);
        let mut lines = vec![format!(
            "-- history: the last {} of {held} lines kept in {} --",
            held - from,
            self.dir.path().display()
        )];
        lines.extend(state.messages_from(from).map(|l| visible(l).into_owned()));
        lines.push("-- end of history --".to_owned());
        lines
    }

    /// The port to listen on when `--listen` leaves it to the system: the last run's.
    pub fn port(&self) -> Option<u16> {
        self.dir.load_port()
    }

    /// Keeps the port listened on.
    pub fn save_port(&self, port: u16) {
        if self.dir.is_writable() {
            let _ = self.dir.save_port(port);
        }
    }

    /// Keeps the state's addresses for the next run, if they changed.
    pub fn save_addrs(&mut self, state: &FloodState) {
        let addrs = state.addrs_to_keep();
        if addrs != self.saved && self.dir.is_writable() {
            // Failing to keep them costs only a rejoin by hand; the history says the rest.
            let _ = self.dir.save_addrs(&addrs);
            self.saved = addrs;
        }
    }
}

/// The printer's side of the history: appends each chunk of printed lines to the log before
/// the chunk is printed, and a thread makes the writes durable every [`SYNC_INTERVAL`].
///
/// What is on disk is what was printed (or was about to be, when the process died between
/// the two writes), so a restarted client prints from where the last one stopped, and what
/// it never printed it learns again from the room.
pub struct Keeper {
    file: Option<Arc<File>>,
    buf: Vec<u8>,
    /// The log's length after the last whole write, where a failed one is cut back to.
    end: u64,
    shared: Arc<Shared>,
    dir: PathBuf,
}

/// What the keeper shares with its sync thread.
struct Shared {
    /// Bytes written; the sync thread syncs when it moved.
    written: AtomicU64,
    /// Set once keeping failed; said once.
    failed: AtomicBool,
    said: Mutex<bool>,
}

impl Shared {
    /// Says once that the history is no longer kept, and why.
    fn fail(&self, dir: &Path, e: &io::Error) {
        self.failed.store(true, Ordering::SeqCst);
        let mut said = self.said.lock().unwrap_or_else(|e| e.into_inner());
        if !*said {
            *said = true;
            say(format!(
                "cannot write the history in {}: {e}; chatting on from memory, but this \
                 client's history is no longer kept",
                dir.display()
            ));
        }
    }
}

impl Keeper {
    /// A keeper appending to `file` (the history, open at `end`), or one that keeps nothing.
    pub fn new(file: Option<File>, end: u64, dir: &Path) -> Keeper {
        let shared = Arc::new(Shared {
            written: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            said: Mutex::new(false),
        });
        let file = file.map(Arc::new);
        if let Some(file) = &file {
            let (file, shared, dir) = (file.clone(), shared.clone(), dir.to_path_buf());
            thread::spawn(move || {
                let mut synced = 0;
                while !shared.failed.load(Ordering::SeqCst) {
                    // A period, not a wait for a condition: the sync interval itself.
                    thread::sleep(SYNC_INTERVAL);
                    let written = shared.written.load(Ordering::SeqCst);
                    if written != synced {
                        if let Err(e) = file.sync_data() {
                            shared.fail(&dir, &e);
                        }
                        synced = written;
                    }
                }
            });
        }
        Keeper {
            file,
            buf: Vec::new(),
            end,
            shared,
            dir: dir.to_path_buf(),
        }
    }

    /// Appends the lines of `chunk` (each ending in `\n`) to the history.
    pub fn keep(&mut self, chunk: &[u8]) {
        if self.shared.failed.load(Ordering::SeqCst) {
            self.file = None;
        }
        let Some(file) = &self.file else {
            return;
        };
        self.buf.clear();
        for line in chunk.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            history::encode(line, &mut self.buf);
        }
        match (&**file).write_all(&self.buf) {
            Ok(()) => {
                self.end += self.buf.len() as u64;
                self.shared
                    .written
                    .fetch_add(self.buf.len() as u64, Ordering::SeqCst);
            }
            Err(e) => {
                // No torn record left behind when the disk has room again.
                let _ = file.set_len(self.end);
                self.shared.fail(&self.dir, &e);
                self.file = None;
            }
        }
        if self.buf.capacity() > 1 << 20 {
            self.buf = Vec::new();
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        if let Some(file) = &self.file
            && let Err(e) = file.sync_data()
        {
            self.shared.fail(&self.dir, &e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("floodchat-dir-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn small_files_round_trip_and_secrets_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let path = temp_dir("files");
        let dir = DataDir::open(&path).unwrap();
        let addrs: Vec<SocketAddr> = vec!["127.0.0.1:4000".parse().unwrap()];
        dir.save_addrs(&addrs).unwrap();
        assert_eq!(dir.load_addrs(), addrs);
        dir.save_port(4321).unwrap();
        assert_eq!(dir.load_port(), Some(4321));
        dir.write_secret("identity.key", b"k").unwrap();
        assert_eq!(dir.read_secret("identity.key").unwrap().unwrap(), b"k");
        assert_eq!(dir.read_secret("room.key").unwrap(), None);
        let mode = fs::metadata(path.join("identity.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        fs::remove_dir_all(path).unwrap();
    }

    #[test]
    fn the_keeper_writes_records_that_load_back() {
        let path = temp_dir("keeper");
        fs::create_dir_all(&path).unwrap();
        let log = path.join("room.log");
        let (file, loaded) = history::open(&log, &mut |_| {}).unwrap();
        let mut keeper = Keeper::new(Some(file), loaded.end, &path);
        keeper.keep(b"one\ntwo\n");
        keeper.keep(b"three\n");
        drop(keeper);
        let mut got = Vec::new();
        history::open(&log, &mut |t| got.push(t.to_vec())).unwrap();
        assert_eq!(got, [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
        fs::remove_dir_all(path).unwrap();
    }
}
