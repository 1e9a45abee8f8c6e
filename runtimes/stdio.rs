//! Standard input and output, and signals: threads beside the owner's task.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};

use async_channel::Sender;

use crate::driver::say;
use crate::handoff::Handoff;
use crate::lines::{LineSplitter, Lines};

/// Bytes read from stdin at once.
const STDIN_READ: usize = 64 * 1024;

/// The stdin thread: sends batches of whole lines as they are read, until the end of input
/// (where a last line without its `\n` counts too).
pub(crate) fn read_stdin(lines: Sender<Lines>) {
    let mut input = io::stdin().lock();
    let mut splitter = LineSplitter::default();
    let mut buf = vec![0; STDIN_READ];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if let Some(batch) = splitter.push(&buf[..n]) {
            if lines.send_blocking(batch).is_err() {
                return;
            }
        }
    }
    if let Some(batch) = splitter.finish() {
        let _ = lines.send_blocking(batch);
    }
}

/// The stdout thread: prints all the lines handed over at once in one write, until the
/// handoff closes or a write fails. Writes go straight to the file descriptor, unbuffered, so
/// every chunk is out as soon as it is written.
pub(crate) fn spawn_stdout(handoff: Arc<Handoff>) -> Result<JoinHandle<()>, String> {
    let fd = io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("cannot use stdout: {e}"))?;
    let mut out = File::from(fd);
    Ok(thread::spawn(move || {
        handoff.serve(|chunk| out.write_all(chunk));
    }))
}

/// On Ctrl-C or SIGTERM, asks the owner to stop; on a second one, exits at once.
pub(crate) fn handle_signals(stop: Sender<()>) {
    let signalled = AtomicBool::new(false);
    let handler = move || {
        if signalled.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        let _ = stop.try_send(());
    };
    if let Err(e) = ctrlc::set_handler(handler) {
        say(format!("cannot handle Ctrl-C: {e}"));
    }
}
