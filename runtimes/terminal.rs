//! The terminal front end: a line editor on the bottom line, the room's lines scrolling above.
//!
//! Used when stdin and stdout are both terminals. One thread runs the line editor (rustyline)
//! for the whole session: Enter hands the line to the room and empties the editor, so the
//! line is shown once, when the room prints it. Another thread prints the room's lines
//! through the editor's external printer, which draws them above the input line and redraws
//! the half-typed line and its cursor. Notices go the same way, so nothing garbles the input.

use std::borrow::Cow;
use std::fmt::{Display, Write as _};
use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::{self, JoinHandle};

use async_channel::{Receiver, Sender};
use rustyline::completion::Completer;

use crate::handoff::Handoff;
use crate::lines::Lines;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{
    Cmd, ConditionalEventHandler, Config, Editor, Event, EventContext, EventHandler, Helper,
    KeyCode, KeyEvent, Modifiers, Movement, RepeatCount,
};

/// Lines kept for Up/Down recall.
const RECALL_MAX: usize = 1000;
/// The widest peer count the prompt shows; more is shown as `99+`.
const PROMPT_PEERS_MAX: usize = 99;
/// Dim, for notices.
const DIM: &str = "\x1b[2m";
/// Bold, for the prompt.
const BOLD: &str = "\x1b[1m";
/// Back to normal.
const RESET: &str = "\x1b[0m";
/// Turns bracketed paste off, for when the editor is left without its own clean-up.
const BRACKETED_PASTE_OFF: &str = "\x1b[?2004l";

/// The running front end, for the hooks the driver calls; unset when stdin or stdout is not a
/// terminal.
static SCREEN: OnceLock<Screen> = OnceLock::new();
/// Peers whose greeting was valid and who are still connected; shown in the prompt.
static PEERS: AtomicUsize = AtomicUsize::new(0);

/// A line editor on a terminal, ready to be started with [`Terminal::spawn`].
pub struct Terminal {
    editor: Editor<Chat, DefaultHistory>,
    shared: Arc<Shared>,
}

impl Terminal {
    /// Opens the line editor if stdin and stdout are both terminals that it can drive.
    pub fn open() -> Option<Self> {
        if !io::stdin().is_terminal() || !io::stdout().is_terminal() {
            return None;
        }
        let config = Config::builder().auto_add_history(false).build();
        let mut editor = Editor::<Chat, DefaultHistory>::with_config(config).ok()?;
        // Fails on a terminal the editor cannot drive (TERM=dumb): then stdin is read as a pipe.
        let printer = editor.create_external_printer().ok()?;
        let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let shared = Arc::new(Shared::default());
        editor.set_helper(Some(Chat {
            shared: shared.clone(),
            color,
        }));
        let enter = KeyEvent(KeyCode::Enter, Modifiers::NONE);
        editor.bind_sequence(
            enter,
            EventHandler::Conditional(Box::new(SendLine(shared.clone()))),
        );
        for (key, older) in [
            (KeyEvent(KeyCode::Up, Modifiers::NONE), true),
            (KeyEvent::ctrl('P'), true),
            (KeyEvent(KeyCode::Down, Modifiers::NONE), false),
            (KeyEvent::ctrl('N'), false),
        ] {
            let handler = Recall {
                shared: shared.clone(),
                older,
            };
            editor.bind_sequence(key, EventHandler::Conditional(Box::new(handler)));
        }
        let screen = Screen {
            inner: Mutex::new(Inner {
                phase: Phase::Waiting,
                printer: Box::new(printer),
                #[cfg(unix)]
                saved: nix::sys::termios::tcgetattr(io::stdin()).ok(),
            }),
            opened: Condvar::new(),
            notice_style: color && io::stderr().is_terminal(),
        };
        SCREEN.set(screen).ok()?;
        Some(Self { editor, shared })
    }

    /// Starts Up/Down with `lines` typed in earlier runs, oldest first, and appends each
    /// line sent from now on to `file`.
    pub fn keep_recall(&mut self, lines: Vec<String>, file: Option<File>) {
        let mut recall = lock(&self.shared.recall);
        for line in &lines {
            recall.push(line);
        }
        *lock(&self.shared.recall_file) = file;
    }

    /// Starts the editor and the printer: returns the typed lines (first the answer to
    /// `question`, if any), and a handle that ends once `handoff` is closed and the terminal
    /// is back as it was. The room's lines come from `handoff`, each ending in `\n`; Ctrl-C
    /// asks `stop`.
    pub fn spawn(
        self,
        question: Option<&'static str>,
        handoff: Arc<Handoff>,
        stop: Sender<()>,
    ) -> (Receiver<Lines>, JoinHandle<()>) {
        // Unbounded, so that the editor never waits for the room: a busy room must not freeze
        // the keyboard. It holds only what a person typed or pasted.
        let (typed, lines) = async_channel::unbounded();
        *lock(&self.shared.typed) = Some(typed.clone());
        thread::spawn(move || edit(self, question, typed, stop));
        let printer = thread::spawn(move || {
            let screen = screen().expect("opened");
            handoff.serve(|chunk| {
                String::from_utf8_lossy(chunk)
                    .lines()
                    .try_for_each(|text| screen.show(&visible(text), Stream::Out))
            });
            screen.close();
        });
        (lines, printer)
    }
}

/// The editor thread: asks `question`, then edits chat lines until Ctrl-D or Ctrl-C.
fn edit(mut terminal: Terminal, question: Option<&str>, typed: Sender<Lines>, stop: Sender<()>) {
    let mut ended = None;
    if let Some(question) = question {
        match terminal.editor.readline(question) {
            Ok(answer) => drop(typed.try_send(Lines::one(answer.into_bytes()))),
            Err(e) => ended = Some(e),
        }
    }
    if ended.is_none() {
        terminal.shared.chatting.store(true, Ordering::SeqCst);
        let prompt = prompt_text(PEERS.load(Ordering::SeqCst));
        // Enter never ends this call (see `SendLine`): it returns at Ctrl-D, Ctrl-C or an error.
        ended = terminal.editor.readline(&prompt).err();
    }
    if let Some(ReadlineError::Interrupted) = ended {
        let _ = stop.try_send(());
    }
    // Dropping the editor unblocks a print it will never show; then the printer writes
    // directly. Dropping the senders ends stdin for the room once what was typed is sent.
    *lock(&terminal.shared.typed) = None;
    drop(typed);
    drop(terminal);
    if let Some(screen) = screen() {
        screen.set_phase(Phase::Done);
    }
}

/// What the editor thread shares with its key handlers and helper.
#[derive(Default)]
struct Shared {
    /// Set once the question is answered: Enter sends, the prompt shows the peer count.
    chatting: AtomicBool,
    /// Set once the chat line is on screen.
    drawn: AtomicBool,
    /// Where Enter sends lines; `None` once the editor has ended.
    typed: Mutex<Option<Sender<Lines>>>,
    /// Lines sent, for Up/Down.
    recall: Mutex<History>,
    /// Where lines sent are kept for later runs (`--data-dir`).
    recall_file: Mutex<Option<File>>,
}

/// Lines typed before, and where Up/Down is among them.
#[derive(Debug, Default)]
struct History {
    lines: Vec<String>,
    /// `lines.len()` when at the line being typed.
    at: usize,
    /// The line being typed, kept while older lines are shown.
    draft: String,
}

impl History {
    /// Records a sent line and goes back to a new draft.
    fn push(&mut self, line: &str) {
        if !line.is_empty() && self.lines.last().is_none_or(|last| last != line) {
            if self.lines.len() == RECALL_MAX {
                self.lines.remove(0);
            }
            self.lines.push(line.to_owned());
        }
        self.at = self.lines.len();
        self.draft.clear();
    }

    /// The line before the one shown, keeping `current` if it is the draft; `None` at the
    /// oldest.
    fn older(&mut self, current: &str) -> Option<&str> {
        if self.at == 0 {
            return None;
        }
        if self.at == self.lines.len() {
            self.draft = current.to_owned();
        }
        self.at -= 1;
        Some(&self.lines[self.at])
    }

    /// The line after the one shown, the draft last; `None` at the draft.
    fn newer(&mut self) -> Option<&str> {
        if self.at >= self.lines.len() {
            return None;
        }
        self.at += 1;
        Some(self.lines.get(self.at).unwrap_or(&self.draft))
    }
}

/// Enter while chatting: sends the line (each line of a paste) and empties the editor.
struct SendLine(Arc<Shared>);

impl ConditionalEventHandler for SendLine {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, ctx: &EventContext) -> Option<Cmd> {
        if !self.0.chatting.load(Ordering::SeqCst) {
            return None; // The answer to the question: the usual Enter.
        }
        let typed = lock(&self.0.typed);
        let mut recall = lock(&self.0.recall);
        let mut kept = lock(&self.0.recall_file);
        for line in ctx.line().split(['\n', '\r']).filter(|l| !l.is_empty()) {
            recall.push(line);
            if let Some(file) = &mut *kept {
                let _ = writeln!(file, "{line}");
            }
            if let Some(typed) = &*typed {
                let _ = typed.try_send(Lines::one(line.as_bytes().to_vec()));
            }
        }
        recall.push("");
        Some(Cmd::Replace(Movement::WholeBuffer, Some(String::new())))
    }
}

/// Up/Down (or Ctrl-P/Ctrl-N): shows an older or newer sent line.
struct Recall {
    shared: Arc<Shared>,
    older: bool,
}

impl ConditionalEventHandler for Recall {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, ctx: &EventContext) -> Option<Cmd> {
        let mut recall = lock(&self.shared.recall);
        let line = if self.older {
            recall.older(ctx.line())
        } else {
            recall.newer()
        };
        // Insert leaves the cursor after the text, Replace before it; rustyline has no
        // single command that does both, so an empty line (the usual case) gets Insert.
        Some(match line {
            Some(line) if ctx.line().is_empty() => Cmd::Insert(1, line.to_owned()),
            Some(line) => Cmd::Replace(Movement::WholeBuffer, Some(line.to_owned())),
            None => Cmd::Noop,
        })
    }
}

/// The editor's helper: draws the prompt with the current peer count, and tells the printer
/// when the chat line is on screen.
struct Chat {
    shared: Arc<Shared>,
    color: bool,
}

impl Highlighter for Chat {
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(
        &'s self,
        prompt: &'p str,
        _default: bool,
    ) -> Cow<'b, str> {
        if !self.shared.chatting.load(Ordering::SeqCst) {
            return Cow::Borrowed(prompt);
        }
        // Same width as the prompt the line started with, so the cursor stays right.
        let text = prompt_text(PEERS.load(Ordering::SeqCst));
        if self.color {
            Cow::Owned(format!("{BOLD}{text}{RESET}"))
        } else {
            Cow::Owned(text)
        }
    }
}

impl Hinter for Chat {
    type Hint = String;

    /// Never hints; being called means the editor has the terminal in raw mode and is about
    /// to draw the line, so from now on prints go through it.
    fn hint(&self, _line: &str, _pos: usize, _ctx: &rustyline::Context<'_>) -> Option<String> {
        if self.shared.chatting.load(Ordering::SeqCst)
            && !self.shared.drawn.swap(true, Ordering::SeqCst)
            && let Some(screen) = screen()
        {
            screen.set_phase(Phase::Editing);
        }
        None
    }
}

impl Completer for Chat {
    type Candidate = String;
}

impl Validator for Chat {}

impl Helper for Chat {}

/// The prompt for `peers` connected peers, always as wide as for [`PROMPT_PEERS_MAX`].
fn prompt_text(peers: usize) -> String {
    let count = if peers > PROMPT_PEERS_MAX {
        format!("{PROMPT_PEERS_MAX}+")
    } else {
        peers.to_string()
    };
    let width = format!("peers:{PROMPT_PEERS_MAX}+>").len();
    format!("{:<width$} ", format!("peers:{count}>"))
}

/// Where the printer is in the editor's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Until the chat line is drawn: prints wait, so none lands inside the prompt.
    Waiting,
    /// The editor draws prints above the input line.
    Editing,
    /// The editor has ended: prints go straight to the terminal.
    Done,
}

/// Which output a line belongs to once the editor has ended.
#[derive(Debug, Clone, Copy)]
enum Stream {
    Out,
    Err,
}

struct Inner {
    phase: Phase,
    printer: Box<dyn rustyline::ExternalPrinter + Send>,
    /// The terminal's settings before the editor, to put back if the room ends mid-edit.
    #[cfg(unix)]
    saved: Option<nix::sys::termios::Termios>,
}

/// The printer's side of the terminal, shared by the room's printer thread and notices.
struct Screen {
    inner: Mutex<Inner>,
    opened: Condvar,
    /// Whether notices are dimmed.
    notice_style: bool,
}

impl Screen {
    /// Shows one line above the input line, or on `stream` once the editor has ended.
    fn show(&self, line: &str, stream: Stream) -> io::Result<()> {
        let mut inner = lock(&self.inner);
        while inner.phase == Phase::Waiting {
            inner = self.opened.wait(inner).unwrap_or_else(|e| e.into_inner());
        }
        if inner.phase == Phase::Editing && inner.printer.print(format!("{line}\n")).is_ok() {
            return Ok(());
        }
        match stream {
            Stream::Out => {
                writeln!(io::stdout().lock(), "{line}").and_then(|()| io::stdout().flush())
            }
            Stream::Err => writeln!(io::stderr().lock(), "{line}"),
        }
    }

    fn set_phase(&self, phase: Phase) {
        let mut inner = lock(&self.inner);
        if inner.phase != Phase::Done {
            inner.phase = phase;
        }
        self.opened.notify_all();
    }

    /// The room has ended: if the editor still has the terminal, put the terminal back.
    fn close(&self) {
        let mut inner = lock(&self.inner);
        if inner.phase != Phase::Done {
            #[cfg(unix)]
            if let Some(saved) = &inner.saved {
                use nix::sys::termios::{SetArg, tcsetattr};
                let _ = tcsetattr(io::stdin(), SetArg::TCSADRAIN, saved);
            }
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "{BRACKETED_PASTE_OFF}");
            let _ = out.flush();
            inner.phase = Phase::Done;
        }
        self.opened.notify_all();
    }
}

fn screen() -> Option<&'static Screen> {
    SCREEN.get()
}

/// Locks `mutex`, going on if a thread panicked while holding it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether the terminal front end runs (and so asks the start-up question itself).
pub fn is_open() -> bool {
    SCREEN.get().is_some()
}

/// Shows a notice line when the front end runs and stderr is its terminal, dimmed unless
/// `NO_COLOR` is set; `false` if the caller should write it to stderr itself.
pub fn notice(line: impl Display) -> bool {
    let Some(screen) = screen() else {
        return false;
    };
    if !io::stderr().is_terminal() {
        return false;
    }
    let line = if screen.notice_style {
        format!("{DIM}{}{RESET}", visible(&line.to_string()))
    } else {
        visible(&line.to_string()).into_owned()
    };
    let _ = screen.show(&line, Stream::Err);
    true
}

/// How many peers the prompt counts: the room's links.
pub fn set_peers(links: usize) {
    PEERS.store(links, Ordering::Relaxed);
}

/// `text` made safe for a terminal: control characters as `^X` (`^[` for escape, `^?` for
/// delete), other characters that are invisible or reorder text as `\u{...}`.
pub fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\0'..='\x1f' => {
                shown.push('^');
                shown.push(char::from(c as u8 + 0x40));
            }
            '\x7f' => shown.push_str("^?"),
            c if hidden(c) => {
                let _ = write!(shown, "\\u{{{:x}}}", u32::from(c));
            }
            c => shown.push(c),
        }
    }
    Cow::Owned(shown)
}

/// Whether `c` would act on the terminal, reorder text or take no room on screen.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{ad}'                      // soft hyphen
            | '\u{34f}'                   // combining grapheme joiner
            | '\u{61c}'                   // Arabic letter mark
            | '\u{115f}' | '\u{1160}'     // Hangul fillers
            | '\u{17b4}' | '\u{17b5}'     // Khmer inherent vowels
            | '\u{180b}'..='\u{180f}'     // Mongolian selectors and vowel separator
            | '\u{200b}'..='\u{200f}'     // zero-width space, (non-)joiner, direction marks
            | '\u{2028}'..='\u{202e}'     // line and paragraph separators, bidi embeddings
            | '\u{2060}'..='\u{206f}'     // word joiner, invisible operators, bidi isolates
            | '\u{3164}' | '\u{ffa0}'     // Hangul fillers
            | '\u{feff}'                  // zero-width no-break space
            | '\u{fff9}'..='\u{fffb}'     // interlinear annotation
            | '\u{1bca0}'..='\u{1bca3}'   // shorthand format controls
            | '\u{1d173}'..='\u{1d17a}'   // musical format controls
            | '\u{e0000}'..='\u{e007f}' // tags
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_shown_as_it_is() {
        for text in ["hello", "ça va? 日本語 🎉", "a\\u{202e}b", ""] {
            assert!(matches!(visible(text), Cow::Borrowed(t) if t == text));
        }
    }

    #[test]
    fn control_characters_are_shown_in_caret_notation() {
        assert_eq!(visible("\x1b[2Jgone"), "^[[2Jgone");
        assert_eq!(visible("a\rb\nc\td\x07\x00"), "a^Mb^Jc^Id^G^@");
        assert_eq!(visible("del\x7f"), "del^?");
    }

    #[test]
    fn c1_controls_bidi_and_zero_width_characters_are_written_out() {
        assert_eq!(visible("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(visible("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(visible("\u{2066}x\u{2069}"), "\\u{2066}x\\u{2069}");
        assert_eq!(visible("pay\u{200b}pal"), "pay\\u{200b}pal");
        assert_eq!(
            visible("\u{feff}\u{200d}\u{e0041}"),
            "\\u{feff}\\u{200d}\\u{e0041}"
        );
    }

    #[test]
    fn nothing_shown_can_act_on_the_terminal() {
        let all: String = (0..=0x10ffff).filter_map(char::from_u32).collect();
        let shown = visible(&all);
        assert!(!shown.chars().any(hidden));
    }

    #[test]
    fn the_prompt_keeps_its_width_as_the_count_changes() {
        let widths: Vec<usize> = [0, 1, 9, 10, 99, 100, 12345]
            .into_iter()
            .map(|n| prompt_text(n).len())
            .collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "{widths:?}");
        assert_eq!(prompt_text(2).trim_end(), "peers:2>");
        assert_eq!(prompt_text(500).trim_end(), "peers:99+>");
    }

    #[test]
    fn history_goes_back_and_forth_and_keeps_the_draft() {
        let mut h = History::default();
        assert_eq!(h.older("draft"), None);
        h.push("one");
        h.push("two");
        h.push("two");
        assert_eq!(h.older("half"), Some("two"));
        assert_eq!(h.older("two"), Some("one"));
        assert_eq!(h.older("one"), None);
        assert_eq!(h.newer(), Some("two"));
        assert_eq!(h.newer(), Some("half"));
        assert_eq!(h.newer(), None);
        h.push("three");
        assert_eq!(h.older(""), Some("three"));
    }

    #[test]
    fn history_is_bounded() {
        let mut h = History::default();
        for i in 0..RECALL_MAX + 5 {
            h.push(&i.to_string());
        }
        assert_eq!(h.lines.len(), RECALL_MAX);
        assert_eq!(h.lines[0], "5");
    }
}
