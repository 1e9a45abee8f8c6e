//! What a simulation measured ([`Report`]) and what it found broken ([`Violations`]).

use std::fmt;
use std::time::Duration;

/// The figures of one simulated run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Clients, crashed ones included.
    pub clients: usize,
    /// Clients running at the end.
    pub alive: usize,
    /// Connected components of running clients over working links at the end.
    pub components: usize,
    /// Strings typed.
    pub typed: usize,
    /// The client that typed each string, by string id.
    pub typed_by: Vec<usize>,
    /// Strings printed by each running client (delivered, its own included), in client order.
    pub delivered: Vec<usize>,
    /// Clients (any incarnation) that printed each string, by string id.
    pub prints: Vec<u32>,
    /// Links ever opened; each is one session, even between a pair that met before.
    pub link_sessions: usize,
    /// Links still working (carried, and open at both ends) at the end.
    pub links_up: usize,
    /// [`crate::Output::Send`]s carried out (each a write of one or more frames).
    pub sends: u64,
    /// Text frames sent, over all clients and links.
    pub frames: u64,
    /// Bytes sent, greetings and every kind of frame included.
    pub bytes: u64,
    /// Most frames any single string took.
    pub max_frames_one_string: u64,
    /// Virtual time from typing each string to the last client printing it, sorted.
    pub latencies: Vec<Duration>,
    /// Links broken by the network (partitions included).
    pub breaks: u64,
    /// Client crashes.
    pub crashes: u64,
    /// Partitions made.
    pub partitions: u64,
    /// [`crate::Output::Dial`]s carried out.
    pub dials: u64,
    /// Dials that failed.
    pub dials_failed: u64,
    /// Bye frames sent.
    pub byes: u64,
    /// Connections a client closed on purpose ([`crate::DisconnectReason::Local`]).
    pub closed_on_purpose: u64,
    /// Addrs frames sent.
    pub addrs_frames: u64,
    /// Keepalive (Ping) frames sent.
    pub pings: u64,
    /// [`crate::Output::Notice`]s.
    pub notices: u64,
    /// Events the simulator handled.
    pub events: u64,
    /// Inputs fed to clients.
    pub inputs: u64,
    /// Virtual time at the end.
    pub virtual_time: Duration,
    /// Violations recorded.
    pub violations: usize,
}

impl Report {
    /// Text frames per typed string: messages per operation.
    pub fn frames_per_typed(&self) -> f64 {
        self.frames as f64 / self.typed.max(1) as f64
    }

    /// Writes per typed string, each carrying one or more frames.
    pub fn sends_per_typed(&self) -> f64 {
        self.sends as f64 / self.typed.max(1) as f64
    }

    /// Bytes sent per typed string, greetings included.
    pub fn bytes_per_typed(&self) -> f64 {
        self.bytes as f64 / self.typed.max(1) as f64
    }

    /// The `p`-th percentile (0 to 100) of [`latencies`](Self::latencies).
    pub fn latency_percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = (p / 100.0 * (self.latencies.len() - 1) as f64).round() as usize;
        self.latencies[rank.min(self.latencies.len() - 1)]
    }

    /// Median typing-to-last-print latency.
    pub fn latency_median(&self) -> Duration {
        self.latency_percentile(50.0)
    }

    /// Largest typing-to-last-print latency.
    pub fn latency_max(&self) -> Duration {
        self.latencies.last().copied().unwrap_or_default()
    }

    /// Fewest strings any running client printed.
    pub fn delivered_min(&self) -> usize {
        self.delivered.iter().copied().min().unwrap_or(0)
    }

    /// Most strings any running client printed.
    pub fn delivered_max(&self) -> usize {
        self.delivered.iter().copied().max().unwrap_or(0)
    }

    /// Strings that reached at least one client other than the one that typed them.
    pub fn spread(&self) -> usize {
        self.prints.iter().filter(|&&p| p > 1).count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "clients {} (running {}), components {}, link sessions {} (up {}), breaks {}, crashes {}, partitions {}",
            self.clients,
            self.alive,
            self.components,
            self.link_sessions,
            self.links_up,
            self.breaks,
            self.crashes,
            self.partitions
        )?;
        writeln!(
            f,
            "dials {} (failed {}), closed on purpose {}, frames besides Text: Bye {}, Addrs {}, Ping {}; notices {}",
            self.dials,
            self.dials_failed,
            self.closed_on_purpose,
            self.byes,
            self.addrs_frames,
            self.pings,
            self.notices
        )?;
        writeln!(
            f,
            "typed {}, delivered per running client min {} max {}",
            self.typed,
            self.delivered_min(),
            self.delivered_max()
        )?;
        writeln!(
            f,
            "per typed string: {:.2} frames (max for one string {}), {:.2} writes, {:.1} bytes",
            self.frames_per_typed(),
            self.max_frames_one_string,
            self.sends_per_typed(),
            self.bytes_per_typed()
        )?;
        writeln!(
            f,
            "virtual latency typing -> last print: median {:?}, p99 {:?}, max {:?}",
            self.latency_median(),
            self.latency_percentile(99.0),
            self.latency_max()
        )?;
        write!(
            f,
            "events {}, inputs {}, virtual time {:?}, violations {}",
            self.events, self.inputs, self.virtual_time, self.violations
        )
    }
}

/// Broken promises found by a run, each with the virtual time it was seen.
///
/// Only the first [`Violations::KEPT`] are kept; all are counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Violations {
    kept: Vec<String>,
    count: usize,
}

impl Violations {
    /// How many are kept to be shown.
    pub const KEPT: usize = 50;

    /// Records one.
    pub fn push(&mut self, what: String) {
        self.count += 1;
        if self.kept.len() < Self::KEPT {
            self.kept.push(what);
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// How many were found.
    pub fn len(&self) -> usize {
        self.count
    }

    /// The first ones found, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.kept.iter().map(String::as_str)
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for v in &self.kept {
            writeln!(f, "  {v}")?;
        }
        if self.count > self.kept.len() {
            writeln!(f, "  ... and {} more", self.count - self.kept.len())?;
        }
        Ok(())
    }
}
