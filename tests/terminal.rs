//! The real binary in a pseudo-terminal, read through a terminal emulator: what a person sees.
//!
//! Each client runs under `sh`, which afterwards prints the exit status and `stty -a`, so a
//! test also sees whether the terminal was given back in its usual mode. Every wait polls the
//! emulated screen until a condition holds, with a deadline that only turns a hang into a
//! failure.

mod common;

use std::io::{Read, Write};
use std::num::NonZero;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{DEADLINE, Rt, Spawn};
use portable_pty::{Child, CommandBuilder, MasterPty, PtySize, native_pty_system};

const ROWS: u16 = 24;
const COLS: u16 = 100;
const UP: &str = "\x1b[A";
const CTRL_C: &str = "\x03";
const CTRL_D: &str = "\x04";
const CTRL_U: &str = "\x15";

/// A floodchat in a pseudo-terminal, and the screen a person would see.
struct Screen {
    parser: Arc<Mutex<vt100::Parser>>,
    keys: Box<dyn Write + Send>,
    child: Box<dyn Child + Send + Sync>,
    _master: Box<dyn MasterPty + Send>,
}

impl Screen {
    /// Starts `floodchat ARGS` on `rt` in a terminal, listening on loopback.
    fn start(rt: Rt, args: &[&str]) -> Self {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: ROWS,
                cols: COLS,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("open a pseudo-terminal");
        let rt = match rt {
            Rt::Smol => "smol",
            Rt::AsyncStd => "async-std",
        };
        let mut cmd = CommandBuilder::new("/bin/sh");
        cmd.args([
            "-c",
            r#""$@"; echo "EXIT=$?"; stty -a"#,
            "sh",
            env!("CARGO_BIN_EXE_floodchat"),
            "--runtime",
            rt,
            "--listen",
            "127.0.0.1:0",
        ]);
        cmd.args(args);
        cmd.env("TERM", "xterm");
        cmd.env_remove("NO_COLOR");
        let child = pair.slave.spawn_command(cmd).expect("start floodchat");
        drop(pair.slave);
        let parser = Arc::new(Mutex::new(vt100::Parser::new(
            NonZero::new(ROWS).unwrap(),
            NonZero::new(COLS).unwrap(),
            0,
        )));
        let mut output = pair.master.try_clone_reader().unwrap();
        let screen = parser.clone();
        thread::spawn(move || {
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = output.read(&mut buf) {
                screen.lock().unwrap().process(&buf[..n]);
            }
        });
        let keys = pair.master.take_writer().unwrap();
        Self {
            parser,
            keys,
            child,
            _master: pair.master,
        }
    }

    /// Types `keys`.
    fn keys(&mut self, keys: &str) {
        self.keys.write_all(keys.as_bytes()).unwrap();
        self.keys.flush().unwrap();
    }

    /// The screen's rows, trailing blanks removed.
    fn rows(&self) -> Vec<String> {
        let parser = self.parser.lock().unwrap();
        parser
            .screen()
            .rows(0, COLS)
            .map(|r| r.trim_end().to_string())
            .collect()
    }

    /// Waits until `done` holds for the rows on screen; returns them.
    fn wait(&self, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let rows = self.rows();
            if done(&rows) {
                return rows;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{}",
                rows.join("\n")
            );
            thread::park_timeout(Duration::from_millis(20));
        }
    }

    /// Waits until some row shows `text`.
    fn wait_for(&self, text: &str) -> Vec<String> {
        self.wait(&format!("{text:?} on screen"), |rows| {
            rows.iter().any(|r| r.contains(text))
        })
    }

    /// The row of the input line (the last one with the prompt), and its index.
    fn input_line(rows: &[String]) -> (usize, &str) {
        Self::prompt_row(rows).expect("a prompt on screen")
    }

    /// The input line, if the screen shows one: while a line is printed above it, the
    /// editor clears it and draws it again, so a screen read in between has none.
    fn prompt_row(rows: &[String]) -> Option<(usize, &str)> {
        let i = rows.iter().rposition(|r| r.starts_with("peers:"))?;
        Some((i, &rows[i]))
    }

    /// Where the cursor is, as (row, column).
    fn cursor(&self) -> (u16, u16) {
        self.parser.lock().unwrap().screen().cursor_position()
    }

    /// Waits for floodchat to exit, then checks it exited 0 and `stty -a` shows echo and
    /// canonical (cooked) mode back on.
    fn assert_left_cleanly(&mut self) {
        const FLAGS: [&str; 4] = ["echo", "icanon", "isig", "icrnl"];
        // All of `stty -a`, not its first lines: each flag shows, set or cleared ("-echo").
        let rows = self.wait("the exit status and stty -a", |rows| {
            let words: Vec<&str> = rows.iter().flat_map(|r| r.split_whitespace()).collect();
            rows.iter().any(|r| r.contains("EXIT="))
                && FLAGS
                    .iter()
                    .all(|f| words.iter().any(|w| w.strip_prefix('-').unwrap_or(w) == *f))
        });
        let text = rows.join("\n");
        assert!(text.contains("EXIT=0"), "floodchat failed:\n{text}");
        let words: Vec<&str> = text.split_whitespace().collect();
        for flag in FLAGS {
            assert!(
                words.contains(&flag),
                "{flag} is not back on after floodchat:\n{text}"
            );
        }
        let deadline = Instant::now() + DEADLINE;
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the shell did not exit");
            thread::park_timeout(Duration::from_millis(20));
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// A line from another client appears above the input line, the half-typed line and its cursor
/// stay; the line sent appears once; Up recalls it; Ctrl-D leaves after sending.
fn chat_in_a_terminal(rt: Rt) {
    let mut other = Spawn::new("other", Rt::Smol).start();
    let addr = other.addr();
    let mut me = Screen::start(rt, &["--peer", &addr]);
    me.wait_for("peers:1>");
    other.wait_stderr("joined", |l| l.ends_with("joined"));

    me.keys("half-typed");
    me.wait_for("peers:1>   half-typed");
    other.say("hello from elsewhere");
    let rows = me.wait("the line from elsewhere and the input line", |rows| {
        rows.iter().any(|r| r.contains("hello from elsewhere"))
            && Screen::prompt_row(rows).is_some()
    });
    let (input, line) = Screen::input_line(&rows);
    assert_eq!(
        line,
        "peers:1>   half-typed",
        "screen:\n{}",
        rows.join("\n")
    );
    let above = rows
        .iter()
        .position(|r| r == "hello from elsewhere")
        .unwrap();
    assert!(above < input, "screen:\n{}", rows.join("\n"));
    assert_eq!(me.cursor(), (input as u16, line.len() as u16));

    me.keys(" line\r");
    other.wait_printed(&["half-typed line"]);
    let rows = me.wait(
        "the sent line in the room and an empty input line",
        |rows| {
            rows.iter().any(|r| r == "half-typed line")
                && Screen::prompt_row(rows).is_some_and(|(_, l)| l == "peers:1>")
        },
    );
    let shown = rows.iter().filter(|r| r.contains("half-typed")).count();
    assert_eq!(shown, 1, "screen:\n{}", rows.join("\n"));

    me.keys(UP);
    me.wait_for("peers:1>   half-typed line");
    me.keys("!\r");
    other.wait_printed(&["half-typed line!"]);
    me.wait("the recalled line sent", |rows| {
        rows.iter().any(|r| r == "half-typed line!")
            && Screen::prompt_row(rows).is_some_and(|(_, l)| l == "peers:1>")
    });

    me.keys("last words\r");
    me.keys(CTRL_D);
    other.wait_printed(&["last words"]);
    me.assert_left_cleanly();
}

/// The prompt counts the peers as they come and go, redrawn with the notice that says so, not
/// one line later.
fn the_prompt_counts_peers_as_they_come_and_go(rt: Rt) {
    let mut me = Screen::start(rt, &[]);
    me.wait_for("Address of a peer (IP:PORT) or an invite, or empty to start a new network:");
    me.keys("\r");
    let rows = me.wait_for("Listening on 127.0.0.1:");
    let addr = rows
        .iter()
        .find_map(|r| r.split("Listening on ").nth(1))
        .expect("the address")
        .trim()
        .to_string();
    me.wait_for("peers:0>");
    for round in 0..2 {
        let mut other = Spawn::new(&format!("other{round}"), Rt::Smol)
            .arg("--peer")
            .arg(&addr)
            .start();
        me.wait("a join and peers:1 in the prompt", |rows| {
            rows.iter().filter(|r| r.ends_with(" joined")).count() > round
                && Screen::prompt_row(rows).is_some_and(|(_, l)| l == "peers:1>")
        });
        other.kill();
        me.wait("the link lost and peers:0 in the prompt", |rows| {
            rows.iter()
                .filter(|r| r.contains(": connection closed"))
                .count()
                > round
                && Screen::prompt_row(rows).is_some_and(|(_, l)| l == "peers:0>")
        });
    }
    me.keys(CTRL_C);
    me.assert_left_cleanly();
}

#[test]
fn the_prompt_counts_peers_as_they_come_and_go_smol() {
    the_prompt_counts_peers_as_they_come_and_go(Rt::Smol);
}

#[test]
fn the_prompt_counts_peers_as_they_come_and_go_async_std() {
    the_prompt_counts_peers_as_they_come_and_go(Rt::AsyncStd);
}

/// The start-up question is answered in the editor; Ctrl-C leaves with the terminal restored.
fn interrupt_in_a_terminal(rt: Rt) {
    let mut me = Screen::start(rt, &[]);
    me.wait_for("Address of a peer (IP:PORT) or an invite, or empty to start a new network:");
    me.keys("\r");
    me.wait_for("Listening on 127.0.0.1:");
    me.wait_for("peers:0>");
    me.keys("never sent");
    me.wait_for("peers:0>   never sent");
    me.keys(CTRL_C);
    me.assert_left_cleanly();
}

#[test]
fn chat_in_a_terminal_smol() {
    chat_in_a_terminal(Rt::Smol);
}

#[test]
fn chat_in_a_terminal_async_std() {
    chat_in_a_terminal(Rt::AsyncStd);
}

#[test]
fn interrupt_in_a_terminal_smol() {
    interrupt_in_a_terminal(Rt::Smol);
}

#[test]
fn interrupt_in_a_terminal_async_std() {
    interrupt_in_a_terminal(Rt::AsyncStd);
}

/// Restarted on its data directory in a terminal, a client shows the room's last lines as
/// marked scrollback, once, rejoins by itself, and Up recalls a line typed in the last run.
fn history_in_a_terminal(rt: Rt) {
    let dir =
        std::env::temp_dir().join(format!("floodchat-terminal-{}-{rt:?}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.to_str().unwrap();
    let mut other = Spawn::new("other", Rt::Smol).start();
    let addr = other.addr();
    let mut me = Screen::start(rt, &["--peer", &addr, "--data-dir", data]);
    me.wait_for("peers:1>");
    me.keys("typed in the first run\r");
    other.wait_printed(&["typed in the first run"]);
    other.say("said by the other");
    me.wait_for("said by the other");
    me.keys(CTRL_D);
    me.assert_left_cleanly();
    drop(me);

    let mut me = Screen::start(rt, &["--data-dir", data]);
    let rows = me.wait("the scrollback and a link", |rows| {
        rows.iter().any(|r| r == "-- end of history --")
            && Screen::prompt_row(rows).is_some_and(|(_, l)| l.starts_with("peers:1>"))
    });
    let text = rows.join("\n");
    assert!(
        text.contains("-- history: the last 2 of 2 lines kept in"),
        "{text}"
    );
    for line in ["typed in the first run", "said by the other"] {
        assert_eq!(rows.iter().filter(|r| *r == line).count(), 1, "{text}");
    }
    assert!(!text.contains("Address of a peer"), "nothing asked: {text}");
    me.keys(UP);
    me.wait_for("peers:1>   typed in the first run");
    me.keys(CTRL_U);
    me.keys(CTRL_D);
    me.assert_left_cleanly();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn history_in_a_terminal_smol() {
    history_in_a_terminal(Rt::Smol);
}

#[test]
fn history_in_a_terminal_async_std() {
    history_in_a_terminal(Rt::AsyncStd);
}
