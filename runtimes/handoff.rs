//! Lines handed from the owner to the thread that prints them, with as few wake-ups as the
//! room allows.
//!
//! The owner appends lines to one buffer under a lock; the printing thread takes the whole
//! buffer at once and prints it, so a busy room costs the printer one wake-up per chunk, not
//! per line. The owner hears back from the printer only when it asked to (it has more to
//! print than the buffer holds, or waits for the printer to finish) or when printing failed,
//! so a quiet room's line costs one wake-up in all, not a round trip.

use std::io;
use std::mem;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use async_channel::{Receiver, Sender};

/// The buffer between the owner and the printer; see the module's documentation.
pub struct Handoff {
    state: Mutex<State>,
    /// Signalled when the buffer gains lines or the handoff closes.
    filled: Condvar,
    /// Wakes the owner when it asked to hear of progress, or printing failed.
    progress: Sender<()>,
    /// What the printer does with each chunk before printing it (keeps the history).
    keep: Mutex<Option<Keep>>,
}

/// See [`Handoff::keep_with`].
type Keep = Box<dyn FnMut(&[u8]) + Send>;

#[derive(Default)]
struct State {
    /// Lines not yet taken by the printer.
    buf: Vec<u8>,
    /// Whether the printer holds lines it has not finished printing.
    printing: bool,
    /// Whether the printer waits for lines.
    sleeping: bool,
    /// Whether the owner wants to hear when the printer takes lines or finishes.
    owner_waits: bool,
    /// Why printing stopped, once it did (taken by the owner).
    failed: Option<io::Error>,
    /// Whether printing stopped for good.
    stopped: bool,
    /// Whether the owner will hand over nothing more.
    closed: bool,
}

impl Handoff {
    /// A handoff, and the receiver on which the owner hears of progress.
    pub fn new() -> (Handoff, Receiver<()>) {
        let (progress, heard) = async_channel::bounded(1);
        let handoff = Handoff {
            state: Mutex::default(),
            filled: Condvar::new(),
            progress,
            keep: Mutex::new(None),
        };
        (handoff, heard)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The owner's side: lets `fill` append lines to the buffer (it may see it non-empty);
    /// `fill` returns whether lines remain that did not fit, and then the owner hears when
    /// the printer takes the buffer; with `drain`, it also hears when all is printed.
    /// Returns why printing stopped, if it did; then nothing is appended.
    pub fn offer(&self, fill: impl FnOnce(&mut Vec<u8>) -> bool, drain: bool) -> io::Result<()> {
        let mut state = self.lock();
        if let Some(e) = state.failed.take() {
            return Err(e);
        }
        if state.stopped {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let before = state.buf.len();
        let more = fill(&mut state.buf);
        state.owner_waits = more || (drain && !state.is_idle());
        let wake = state.buf.len() > before && state.sleeping;
        // Woken after the lock is let go, the printer does not wait for it again.
        drop(state);
        if wake {
            self.filled.notify_one();
        }
        Ok(())
    }

    /// Whether every line handed over was printed.
    pub fn is_idle(&self) -> bool {
        self.lock().is_idle()
    }

    /// The owner's side: nothing more will be handed over; the printer ends once it printed
    /// what it holds.
    pub fn close(&self) {
        self.lock().closed = true;
        self.filled.notify_one();
    }

    /// The printer's side: waits for lines and swaps them into `mine` (which must be empty);
    /// `false` once the handoff is closed and empty.
    pub fn take(&self, mine: &mut Vec<u8>) -> bool {
        let mut state = self.lock();
        while state.buf.is_empty() && !state.closed {
            state.sleeping = true;
            state = self
                .filled
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.sleeping = false;
        if state.buf.is_empty() {
            return false;
        }
        mem::swap(&mut state.buf, mine);
        state.printing = true;
        self.tell_owner(&mut state);
        true
    }

    /// The printer's side: the lines it took were printed, or failed with this error (after
    /// which it must stop).
    pub fn printed(&self, result: io::Result<()>) {
        let mut state = self.lock();
        state.printing = false;
        if let Err(e) = result {
            state.failed = Some(e);
            state.stopped = true;
            state.owner_waits = true;
        }
        self.tell_owner(&mut state);
    }

    /// Has the printer hand each chunk to `keep` before it prints it; set before
    /// [`Handoff::serve`] starts.
    pub fn keep_with(&self, keep: impl FnMut(&[u8]) + Send + 'static) {
        *self.keep.lock().unwrap_or_else(PoisonError::into_inner) = Some(Box::new(keep));
    }

    /// The printer's loop: prints each take with `print` until the handoff is closed and
    /// empty, or a print fails.
    pub fn serve(&self, mut print: impl FnMut(&[u8]) -> io::Result<()>) {
        let mut keep = self
            .keep
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let mut chunk = Vec::new();
        while self.take(&mut chunk) {
            if let Some(keep) = &mut keep {
                keep(&chunk);
            }
            let result = print(&chunk);
            chunk.clear();
            let failed = result.is_err();
            self.printed(result);
            if failed {
                return;
            }
        }
    }

    fn tell_owner(&self, state: &mut State) {
        if mem::take(&mut state.owner_waits) {
            // Full: a wake-up is already pending, which is all the owner needs.
            let _ = self.progress.try_send(());
        }
    }
}

impl State {
    fn is_idle(&self) -> bool {
        self.buf.is_empty() && !self.printing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `fill` that appends `lines` and says whether `more` remain.
    fn lines(text: &str, more: bool) -> impl FnOnce(&mut Vec<u8>) -> bool + '_ {
        move |buf: &mut Vec<u8>| {
            buf.extend_from_slice(text.as_bytes());
            more
        }
    }

    #[test]
    fn the_printer_takes_everything_offered_at_once_and_in_order() {
        let (handoff, _heard) = Handoff::new();
        handoff.offer(lines("a\n", false), false).unwrap();
        handoff.offer(lines("b\nc\n", false), false).unwrap();
        assert!(!handoff.is_idle());
        let mut mine = Vec::new();
        assert!(handoff.take(&mut mine));
        assert_eq!(mine, b"a\nb\nc\n");
        assert!(!handoff.is_idle(), "still printing");
        handoff.printed(Ok(()));
        assert!(handoff.is_idle());
    }

    #[test]
    fn the_owner_hears_back_only_when_it_asked() {
        let (handoff, heard) = Handoff::new();
        let mut mine = Vec::new();
        // Everything fitted and nothing is awaited: a quiet room's line costs no wake-up.
        handoff.offer(lines("a\n", false), false).unwrap();
        assert!(handoff.take(&mut mine));
        handoff.printed(Ok(()));
        assert!(heard.try_recv().is_err());
        // More lines wait: the owner hears when the buffer is taken.
        mine.clear();
        handoff.offer(lines("b\n", true), false).unwrap();
        assert!(handoff.take(&mut mine));
        assert!(heard.try_recv().is_ok());
        // Draining: the owner hears when all is printed.
        handoff.offer(|_| false, true).unwrap();
        assert!(heard.try_recv().is_err());
        handoff.printed(Ok(()));
        assert!(heard.try_recv().is_ok());
        assert!(handoff.is_idle());
    }

    #[test]
    fn a_failed_write_wakes_the_owner_and_refuses_more() {
        let (handoff, heard) = Handoff::new();
        let mut mine = Vec::new();
        handoff.offer(lines("a\n", false), false).unwrap();
        assert!(handoff.take(&mut mine));
        handoff.printed(Err(io::ErrorKind::StorageFull.into()));
        assert!(
            heard.try_recv().is_ok(),
            "told at once, though it asked for nothing"
        );
        let first = handoff.offer(lines("b\n", false), false).unwrap_err();
        assert_eq!(first.kind(), io::ErrorKind::StorageFull);
        let later = handoff.offer(lines("c\n", false), false).unwrap_err();
        assert_eq!(later.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn a_closed_handoff_ends_the_printer_after_what_is_left() {
        let (handoff, _heard) = Handoff::new();
        let handoff = std::sync::Arc::new(handoff);
        handoff.offer(lines("last\n", false), false).unwrap();
        handoff.close();
        let mut mine = Vec::new();
        assert!(handoff.take(&mut mine));
        assert_eq!(mine, b"last\n");
        handoff.printed(Ok(()));
        mine.clear();
        assert!(!handoff.take(&mut mine));
        // A printer waiting for lines is woken by the close.
        let (handoff, _heard) = Handoff::new();
        let handoff = std::sync::Arc::new(handoff);
        let printer = {
            let handoff = handoff.clone();
            std::thread::spawn(move || handoff.take(&mut Vec::new()))
        };
        handoff.close();
        assert!(!printer.join().unwrap());
    }
}
