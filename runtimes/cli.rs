//! The command line.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use floodchat::secure::Invite;

/// The longest timeout accepted, so that no deadline overflows the clock.
const MAX_SECS: f64 = 86_400.0;
/// The shortest timeout accepted: shorter ones would round to nothing and refuse every peer.
const MIN_SECS: f64 = 0.001;

/// A peer-to-peer chat room in the terminal, flooding text over TCP.
///
/// Give floodchat the IP:PORT of any client already in the room, or a private room's invite,
/// or nothing to start a new room. Each line typed on stdin is sent to every client, and every
/// line typed anywhere is printed on stdout, once, late joiners included; notices go to
/// stderr. Every link is encrypted; a private room also keeps out whoever lacks its key.
#[derive(Debug, Clone, Parser)]
#[command(version)]
pub struct Cli {
    /// A client of the room to join (IP:PORT), or a private room's invite
    /// (floodchat:KEY@IP:PORT); without it, one is asked for on stdin.
    #[arg(long, value_name = "IP:PORT|INVITE", value_parser = parse_contact)]
    pub peer: Option<Contact>,

    /// Start a new private room with a random key (without asking for a peer), and print its
    /// invite.
    #[arg(long, conflicts_with = "passphrase_file")]
    pub private: bool,

    /// A private room keyed by the passphrase in this file (or in FLOODCHAT_PASSPHRASE).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,

    /// Where to accept other clients.
    #[arg(long, value_name = "IP:PORT", default_value = "0.0.0.0:0")]
    pub listen: SocketAddr,

    /// The async runtime that drives the client.
    #[arg(long, value_enum, default_value_t = RuntimeKind::default())]
    pub runtime: RuntimeKind,

    /// Keep relaying after the end of stdin, until interrupted.
    #[arg(long)]
    pub stay: bool,

    /// How long a new connection may take to connect and greet.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs, allow_negative_numbers = true)]
    pub greeting_timeout: Duration,

    /// How many links to other clients to keep; the room heals itself by dialing clients
    /// it has heard of whenever it has fewer.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub links: u16,

    /// The most links, and the most connections not yet greeted, from one IP address (raise
    /// it when many clients share one, behind a NAT or on one machine).
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_per_ip: u16,

    /// The most megabytes of text this client keeps; newer lines are then not shown or relayed
    /// (a line typed here may still use a sixteenth more). Default: an eighth of the
    /// machine's memory, at most 512.
    #[arg(long, value_name = "MB", value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub max_room_mb: Option<u32>,

    /// The most lines this client keeps; newer lines are then not shown or relayed (a line
    /// typed here may still use a sixteenth more). Default: one per 64 bytes of an eighth of
    /// the machine's memory, at most 4,000,000.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_room_lines: Option<u32>,

    /// Keep this client's room history, addresses and typed lines in DIR across runs; started
    /// again on it without --peer, the client rejoins by itself. One client per directory.
    #[arg(long, value_name = "DIR", env = "FLOODCHAT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// New lines one connection may bring at once that nobody asked for, before it is
    /// dropped as flooding (then 200 a second). Every client of a room must agree on it: it
    /// is for measuring (the load tool pipes 100,000 lines at once), not for chatting.
    #[arg(long, value_name = "LINES", hide = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub flood_burst: Option<u64>,

    /// How long a peer may leave sent bytes unread before it is dropped.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_secs, allow_negative_numbers = true)]
    pub stall_timeout: Duration,
}

/// An async runtime floodchat can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuntimeKind {
    /// smol.
    Smol,
    /// async-std (deprecated upstream, still supported).
    AsyncStd,
}

impl Default for RuntimeKind {
    fn default() -> Self {
        if cfg!(feature = "smol") {
            Self::Smol
        } else {
            Self::AsyncStd
        }
    }
}

impl fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Smol => "smol",
            Self::AsyncStd => "async-std",
        })
    }
}

/// Where to join: a client's address, or a private room's invite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact {
    /// A client of an open room, or of a room whose key this client has.
    Addr(SocketAddr),
    /// A client of a private room, and the room's key.
    Invite(Invite),
}

impl Contact {
    /// The address to dial.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Self::Addr(addr) => *addr,
            Self::Invite(invite) => invite.addr,
        }
    }
}

/// Parses an `IP:PORT` or an invite.
pub fn parse_contact(text: &str) -> Result<Contact, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse() {
        return Ok(Contact::Addr(addr));
    }
    match text.parse::<Invite>() {
        Ok(invite) => Ok(Contact::Invite(invite)),
        Err(e) if text.starts_with("floodchat:") => Err(e.to_string()),
        Err(_) => Err("not an IP:PORT address or an invite (floodchat:KEY@IP:PORT)".into()),
    }
}

/// Parses a number of seconds from [`MIN_SECS`] to [`MAX_SECS`], fractions allowed.
fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("\"{text}\" is not a number of seconds"))?;
    if secs.is_nan() || !(MIN_SECS..=MAX_SECS).contains(&secs) {
        return Err(format!(
            "must be at least {MIN_SECS} and at most {MAX_SECS} seconds"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}
