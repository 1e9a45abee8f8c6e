//! [`Room`]: the flood sub-machine. It keeps the room (the grow-only set of strings, in the
//! order learned) and decides what each link must be sent: the strings learned after the link
//! came up, flooded live from a cursor, and what reconciliation found the peer lacks or the
//! peer asked for, walked from owed ranges. It is also each connection's writer: the parent's
//! control frames and the strings due go out together in [`RoomOutput::Send`]s of about
//! `send_batch` bytes, at most `max_in_flight` of them unacknowledged per connection.
//!
//! The parent (`FloodState`) owns the connections: it decodes their bytes, keeps their
//! deadlines, and feeds the room typed values ([`RoomInput`]). The room has no clock and never
//! closes a connection itself: a peer that breaks the room's rules gets a
//! [`RoomOutput::Close`] with the reason, and the parent closes it and says
//! [`RoomInput::Gone`]. Drain [`Room::poll`] to `None` after every [`Room::handle`], before
//! anything else happens, so that a close takes effect at once.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use hashbrown::HashMap;

use crate::peer::{DisconnectReason, PeerId};
use crate::reconcile::Reconciler;
use crate::store::{Id, IdRange, Store};
use crate::wire::{self, Frame};

/// Strings owed to one peer (asked for, or found lacking) above which its reconciliation
/// messages wait: reconciliation goes no faster than the link carries what it finds.
pub(crate) const OWED_PAUSE: usize = 4096;
/// Strings a peer may have asked for and not yet been sent; asking for more is an error.
pub(crate) const OWED_MAX: usize = 16_384;
/// Strings taken from an owed range at a time.
const WALK_STEP: usize = 64;

/// The share of a peer's intake ([`RoomConfig::flood_burst`] and rates) we send it live: the
/// rest is a margin for relays bunched up on the way (4% of the burst is 10 s of the rate).
const PACE_SHARE: f64 = 0.96;

/// The room's limits and batching, from the parent's configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RoomConfig {
    /// Target size of one [`RoomOutput::Send`].
    pub(crate) send_batch: usize,
    /// Sends that may await [`RoomInput::Sent`] per connection.
    pub(crate) max_in_flight: usize,
    /// The most strings the room holds.
    pub(crate) max_strings: usize,
    /// The most bytes of text the room holds.
    pub(crate) max_bytes: usize,
    /// New strings a link may introduce unasked in one burst.
    pub(crate) flood_burst: u64,
    /// New strings a second a link may introduce unasked, sustained.
    pub(crate) flood_rate: f64,
    /// Bytes of new strings a link may introduce unasked in one burst.
    pub(crate) flood_burst_bytes: u64,
    /// Bytes of new strings a second a link may introduce unasked, sustained.
    pub(crate) flood_rate_bytes: f64,
}

/// An event for the [`Room`].
#[derive(Debug)]
pub(crate) enum RoomInput<'a> {
    /// The pace timer of `peer` ([`RoomOutput::Paced`]) fired: send what it allows now.
    Paced(PeerId),
    /// A connection opened; `hello` (the greeting and Hello) goes out first.
    Opened {
        /// The connection.
        peer: PeerId,
        /// Its first bytes.
        hello: Vec<u8>,
    },
    /// The connection is a link now: flood on it, and start reconciliation if we dialed it.
    LinkUp {
        /// The connection.
        peer: PeerId,
        /// Whether we dialed it (the dialer opens reconciliation).
        dialed: bool,
    },
    /// The connection closes on purpose: flood no more, send `bye` after what is queued.
    Closing {
        /// The connection.
        peer: PeerId,
        /// The Bye frame.
        bye: &'a Frame,
    },
    /// The connection is gone: forget it.
    Gone(PeerId),
    /// Control frames (Addrs, Ping) to send on the connection, in one go.
    Control {
        /// The connection.
        peer: PeerId,
        /// The frames.
        frames: &'a [Frame],
    },
    /// The user typed this string; refused if known, or if the room is full.
    Typed(&'a str),
    /// One Text frame of a read from `peer`. New strings are offered to the links at
    /// [`RoomInput::ReadDone`], once per read.
    Text {
        /// The connection it came on.
        peer: PeerId,
        /// The string.
        text: &'a str,
    },
    /// The read is over: offer its new strings to the links.
    ReadDone,
    /// A reconciliation message from `peer`.
    Recon {
        /// The connection.
        peer: PeerId,
        /// The message.
        message: Vec<u8>,
    },
    /// `peer` asks for the strings with these ids.
    Want {
        /// The connection.
        peer: PeerId,
        /// The ids.
        ids: Vec<[u8; wire::ID_LEN]>,
    },
    /// One [`RoomOutput::Send`] to `peer` was written.
    Sent(PeerId),
}

/// What the [`Room`] asks of its parent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RoomOutput {
    /// The string at this index is new: print it.
    Print(usize),
    /// Write these bytes to `peer`, then say [`RoomInput::Sent`].
    Send {
        /// The connection.
        peer: PeerId,
        /// Whole frames (or the greeting and Hello).
        bytes: Vec<u8>,
        /// Nothing was in flight before it: the stall clock starts.
        first: bool,
    },
    /// These many bytes of history (strings owed, not live) went into a send to `peer`.
    Served {
        /// The connection.
        peer: PeerId,
        /// Bytes of text.
        bytes: u64,
    },
    /// Live strings for `peer` wait for its pace: say [`RoomInput::Paced`] at `until`.
    Paced {
        /// The connection.
        peer: PeerId,
        /// When enough of its pace has come back for the next string.
        until: Instant,
    },
    /// Close `peer`: it broke the room's rules.
    Close {
        /// The connection.
        peer: PeerId,
        /// Why.
        why: DisconnectReason,
    },
    /// The room reached its limit here (said once): strings and bytes held.
    Full {
        /// Strings held.
        strings: usize,
        /// Bytes of text held.
        bytes: usize,
    },
}

/// Why [`RoomInput::Typed`] added nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Already in the room.
    Known,
    /// The room is at its limit here.
    Full,
}

/// Counters since creation, for tests and measurements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Reconciliation and Want frames queued for sending, over all peers.
    pub recon_frames_sent: u64,
    /// Bytes of those frames.
    pub recon_bytes_sent: u64,
    /// Text frames queued for sending, over all peers.
    pub frames_sent: u64,
    /// Bytes queued for sending (greetings and frames), over all peers.
    pub bytes_sent: u64,
    /// Text frames received, duplicates included.
    pub frames_received: u64,
    /// Strings refused because the room was full.
    pub refused_full: u64,
}

/// What a link is owed beyond the live strings: found by reconciliation, or asked for.
#[derive(Debug, Clone, Copy)]
enum Owed {
    /// Every string of ours with an id in this range.
    Range(IdRange),
    /// The string at this index.
    Index(usize),
}

/// The compact name of a string's origin: a peer's low 32 bits plus one, 0 if typed here. A
/// clash after 2^32 connections only means one echo is not skipped, which the peer ignores.
fn origin_tag(peer: Option<PeerId>) -> u32 {
    peer.map_or(0, |p| (p.0 as u32).wrapping_add(1).max(1))
}

/// Where a connection is, as far as flooding goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Not a link yet: only control frames go out.
    Opening,
    /// A link: strings go out.
    Linked,
    /// Closing on purpose: only what is queued, then the Bye.
    Closing,
}

/// One connection's flood state and writer.
#[derive(Debug)]
struct Link {
    stage: Stage,
    /// Index into the room of the next string flooded live to this peer.
    cursor: usize,
    /// Where live flooding started: strings from here on reach the peer live, so what it is
    /// owed is only what came before.
    live_from: usize,
    /// Set reconciliation with this peer.
    recon: Reconciler,
    /// A reconciliation message waiting for [`Link::owed`] to drain.
    recon_waiting: Option<Vec<u8>>,
    /// Strings found lacking or asked for, not yet sent.
    owed: VecDeque<Owed>,
    /// How many of `owed` are single strings asked for.
    owed_indices: usize,
    /// Strings this link has been owed in all, found lacking or asked for; an honest peer
    /// can lack no more than the room holds.
    owed_total: usize,
    /// [`RoomOutput::Send`]s not yet acknowledged by [`RoomInput::Sent`].
    in_flight: usize,
    /// Control frames waiting for a send slot.
    control: Vec<u8>,
    /// Strings first heard from this peer before it became a link, in learning order:
    /// reconciliation must not send them back (a Hello the mesh did not link yet).
    early: Vec<usize>,
    /// What this peer may still introduce: strings we asked for or reconciliation expects
    /// free, and beyond them a bucket of unasked ones.
    intake: Intake,
    /// What we may still send this peer live: the mirror of its intake, a little smaller.
    pace: Bucket,
    /// When the pace timer was last asked for, while live strings wait for it.
    paced_until: Option<Instant>,
}

/// A bucket of strings and bytes that refills at a steady rate up to its size.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Strings it holds.
    strings: f64,
    /// Bytes it holds.
    bytes: f64,
    /// When it was last refilled.
    at: Option<Instant>,
}

/// A bucket's size and rate: strings and bytes.
#[derive(Debug, Clone, Copy)]
struct Rate {
    burst: (f64, f64),
    per_second: (f64, f64),
}

impl Rate {
    /// What a peer may introduce unasked on one link before it is flooding.
    fn intake(config: &RoomConfig) -> Self {
        Self {
            burst: (config.flood_burst as f64, config.flood_burst_bytes as f64),
            per_second: (config.flood_rate, config.flood_rate_bytes),
        }
    }

    /// What we send one link live: [`PACE_SHARE`] of what the peer takes, so that a relay
    /// delayed on the way by up to the margin's worth of time still arrives within it.
    fn pace(config: &RoomConfig) -> Self {
        let intake = Self::intake(config);
        Self {
            burst: (intake.burst.0 * PACE_SHARE, intake.burst.1 * PACE_SHARE),
            per_second: (
                intake.per_second.0 * PACE_SHARE,
                intake.per_second.1 * PACE_SHARE,
            ),
        }
    }
}

impl Bucket {
    fn full(rate: Rate) -> Self {
        Self {
            strings: rate.burst.0,
            bytes: rate.burst.1,
            at: None,
        }
    }

    /// Refills the bucket up to `now`.
    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = self
            .at
            .map_or(0.0, |at| now.saturating_duration_since(at).as_secs_f64());
        self.at = Some(now);
        self.strings = (self.strings + elapsed * rate.per_second.0).min(rate.burst.0);
        self.bytes = (self.bytes + elapsed * rate.per_second.1).min(rate.burst.1);
    }

    /// Takes one string of `len` bytes at `now`, even into debt; `false` if in debt after.
    fn take(&mut self, rate: Rate, len: usize, now: Instant) -> bool {
        self.refill(rate, now);
        self.strings -= 1.0;
        self.bytes -= len as f64;
        self.strings >= 0.0 && self.bytes >= 0.0
    }

    /// Takes one string of `len` bytes if the bucket, refilled last at `now`, holds it; else
    /// `Err(when)` it will (never, if the rate is zero).
    fn try_take(&mut self, rate: Rate, len: usize, now: Instant) -> Result<(), Option<Instant>> {
        let len = (len as f64).min(rate.burst.1);
        if self.strings >= 1.0 && self.bytes >= len {
            self.strings -= 1.0;
            self.bytes -= len;
            return Ok(());
        }
        let wait = |lack: f64, per_second: f64| {
            if lack <= 0.0 {
                Some(0.0)
            } else if per_second > 0.0 {
                Some(lack / per_second)
            } else {
                None
            }
        };
        let strings = wait(1.0 - self.strings, rate.per_second.0);
        let bytes = wait(len - self.bytes, rate.per_second.1);
        // At least a millisecond, so that rounding never asks to be woken when it is woken.
        let secs = strings.zip(bytes).map(|(a, b)| a.max(b).clamp(1e-3, 1e9));
        Err(secs.and_then(|s| now.checked_add(Duration::from_secs_f64(s))))
    }
}

/// What a link may introduce into the room. Strings we asked for (Want), or that
/// reconciliation told us to expect (the peer's counts of ranges we listed, or the whole room
/// when we joined holding next to nothing), are `expected` and free. Any other new string is
/// unasked: live Text, which people type. Those draw on a bucket of strings and bytes that
/// refills at a person's pace; a peer that empties it is flooding. An honest peer never does:
/// it sends live strings at its [`Rate::pace`], a little below this.
#[derive(Debug, Clone, Copy)]
struct Intake {
    /// New strings still expected from reconciliation or asked for.
    expected: u64,
    /// Unasked strings and bytes the peer may still introduce.
    bucket: Bucket,
    /// Unasked strings and bytes introduced so far.
    unasked: (u64, u64),
}

impl Intake {
    fn new(config: &RoomConfig) -> Self {
        Self {
            expected: 0,
            bucket: Bucket::full(Rate::intake(config)),
            unasked: (0, 0),
        }
    }

    /// Expects `n` more strings, up to what a room can hold.
    fn expect(&mut self, n: u64, cap: usize) {
        self.expected = self.expected.saturating_add(n).min(cap as u64);
    }

    /// Takes one new string of `len` bytes at `now`; `false` if the peer is flooding.
    fn take(&mut self, config: &RoomConfig, len: usize, now: Instant) -> bool {
        if self.expected > 0 {
            self.expected -= 1;
            return true;
        }
        self.unasked.0 += 1;
        self.unasked.1 += len as u64;
        self.bucket.take(Rate::intake(config), len, now)
    }
}

/// The flood sub-machine; see the module docs.
#[derive(Debug)]
pub(crate) struct Room {
    config: RoomConfig,
    store: Store,
    /// [`origin_tag`] of each string from [`Self::origins_from`] on: as far back as the
    /// slowest link's live cursor, so the room's history costs no memory here.
    origins: VecDeque<u32>,
    /// The index of the string whose tag is `origins[0]`.
    origins_from: usize,
    full_said: bool,
    links: HashMap<PeerId, Link>,
    /// The connections in increasing order, so outputs never depend on hashing.
    order: Vec<PeerId>,
    /// Whether a string was learned during the current read.
    learned_in_read: bool,
    /// How many strings [`Room::poll`] has said to print. Every string learned is printed,
    /// before anything else the input that learned it causes, so the [`RoomOutput::Print`]s
    /// are counted rather than queued: the relay path stays one push per line.
    printed: usize,
    out: VecDeque<RoomOutput>,
    stats: Stats,
    /// The time of the input being handled.
    now: Instant,
}

impl Room {
    /// An empty room.
    pub(crate) fn new(config: RoomConfig, now: Instant) -> Self {
        Self {
            now,
            config,
            store: Store::new(),
            origins: VecDeque::new(),
            origins_from: 0,
            full_said: false,
            links: HashMap::new(),
            order: Vec::new(),
            learned_in_read: false,
            printed: 0,
            out: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// The strings, in the order learned.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Counters since creation.
    pub(crate) fn stats(&self) -> Stats {
        self.stats
    }

    /// Sends to `peer` not yet acknowledged.
    pub(crate) fn in_flight(&self, peer: PeerId) -> usize {
        self.links.get(&peer).map_or(0, |l| l.in_flight)
    }

    /// Whether every connection has been sent, and has acknowledged, all it needs.
    pub(crate) fn is_flushed(&self) -> bool {
        self.out.is_empty()
            && self.printed == self.store.len()
            && self.links.values().all(|l| {
                l.in_flight == 0
                    && l.control.is_empty()
                    && (l.stage != Stage::Linked
                        || (l.cursor == self.store.len() && l.owed.is_empty() && l.recon.is_done()))
            })
    }

    /// The origins kept: the index of the first, and how many.
    #[cfg(test)]
    pub(crate) fn origins_kept(&self) -> (usize, usize) {
        (self.origins_from, self.origins.len())
    }

    /// The next output, if any; drain to `None` after every [`Room::handle`].
    #[must_use]
    pub(crate) fn poll(&mut self) -> Option<RoomOutput> {
        if self.printed < self.store.len() {
            self.printed += 1;
            return Some(RoomOutput::Print(self.printed - 1));
        }
        self.out.pop_front()
    }

    /// Feeds one event in at `now` (never earlier than the last). Only [`RoomInput::Typed`]
    /// can be refused.
    pub(crate) fn handle(&mut self, input: RoomInput<'_>, now: Instant) -> Result<(), Refused> {
        self.now = self.now.max(now);
        match input {
            RoomInput::Paced(peer) => {
                if let Some(l) = self.links.get_mut(&peer) {
                    l.paced_until = None;
                    self.pump(peer);
                    self.trim_origins();
                }
            }
            RoomInput::Opened { peer, hello } => {
                let at = self.order.binary_search(&peer).unwrap_or_else(|at| at);
                self.order.insert(at, peer);
                self.links.insert(
                    peer,
                    Link {
                        stage: Stage::Opening,
                        cursor: 0,
                        live_from: 0,
                        recon: Reconciler::new(),
                        recon_waiting: None,
                        owed: VecDeque::new(),
                        owed_indices: 0,
                        owed_total: 0,
                        in_flight: 0,
                        control: hello,
                        early: Vec::new(),
                        intake: Intake::new(&self.config),
                        pace: Bucket::full(Rate::pace(&self.config)),
                        paced_until: None,
                    },
                );
                self.pump(peer);
            }
            RoomInput::LinkUp { peer, dialed } => self.link_up(peer, dialed),
            RoomInput::Closing { peer, bye } => {
                if let Some(l) = self.links.get_mut(&peer) {
                    l.stage = Stage::Closing;
                    bye.encode(&mut l.control);
                    self.pump(peer);
                }
            }
            RoomInput::Gone(peer) => self.forget(peer),
            RoomInput::Control { peer, frames } => {
                if let Some(l) = self.links.get_mut(&peer) {
                    for frame in frames {
                        frame.encode(&mut l.control);
                    }
                    self.pump(peer);
                }
            }
            RoomInput::Typed(text) => {
                self.learn(text, None, true)?;
                self.pump_all();
            }
            RoomInput::Text { peer, text } => {
                self.stats.frames_received += 1;
                if self.learn(text, Some(peer), false).is_ok() {
                    self.learned_in_read = true;
                    self.intake(peer, text.len());
                }
            }
            RoomInput::ReadDone => {
                if std::mem::take(&mut self.learned_in_read) {
                    self.pump_all();
                }
            }
            RoomInput::Recon { peer, message } => self.recon(peer, message),
            RoomInput::Want { peer, ids } => self.want(peer, ids),
            RoomInput::Sent(peer) => {
                let Some(l) = self.links.get_mut(&peer) else {
                    return Ok(());
                };
                l.in_flight = l.in_flight.saturating_sub(1);
                if l.stage == Stage::Closing {
                    // Nothing more is sent but what is queued.
                    return Ok(());
                }
                self.pump(peer);
                // The slowest link may be this one.
                self.trim_origins();
            }
        }
        Ok(())
    }

    /// Adds a string kept from an earlier run; `false` if known or beyond the room's limits.
    /// Before any link (as at start) it is not printed again: it was, in that run.
    pub(crate) fn restore(&mut self, text: &str) -> bool {
        let all_printed = self.printed == self.store.len();
        if self.learn(text, None, false).is_err() {
            return false;
        }
        if all_printed && self.links.is_empty() {
            self.printed = self.store.len();
        }
        self.trim_origins();
        true
    }

    /// Forgets `peer` and what it was owed.
    fn forget(&mut self, peer: PeerId) {
        if self.links.remove(&peer).is_some()
            && let Ok(at) = self.order.binary_search(&peer)
        {
            self.order.remove(at);
        }
    }

    /// `peer` introduced a new string of `len` bytes: closes it if it is flooding.
    fn intake(&mut self, peer: PeerId, len: usize) {
        let Some(l) = self.links.get_mut(&peer) else {
            return;
        };
        if !l.intake.take(&self.config, len, self.now) {
            let (strings, bytes) = l.intake.unasked;
            self.close(peer, DisconnectReason::Flooding { strings, bytes });
        }
    }

    /// Asks the parent to close `peer`, and forgets it at once: nothing more goes to it.
    fn close(&mut self, peer: PeerId, why: DisconnectReason) {
        self.forget(peer);
        self.out.push_back(RoomOutput::Close { peer, why });
    }

    /// `peer` is a link now: live flooding starts here, and what came before reconciliation
    /// finds.
    fn link_up(&mut self, peer: PeerId, dialed: bool) {
        let Some(l) = self.links.get_mut(&peer) else {
            return;
        };
        l.stage = Stage::Linked;
        l.cursor = self.store.len();
        l.live_from = l.cursor;
        if dialed {
            let first = l.recon.initiate(&self.store);
            if l.recon.is_done() {
                // We listed every id we hold (next to none): the peer sends us its room.
                l.intake.expect(u64::MAX, self.config.max_strings);
            }
            Self::queue_recon(&mut self.stats, l, first);
        }
        self.pump(peer);
    }

    /// Handles one reconciliation message from `peer`, or holds it while the link is busy.
    fn recon(&mut self, peer: PeerId, message: Vec<u8>) {
        let Some(l) = self.links.get_mut(&peer) else {
            return;
        };
        if l.recon_waiting.is_some() {
            // An honest peer waits for our answer before it sends again.
            self.close(peer, DisconnectReason::ReconcileOutOfTurn);
        } else if l.owed.len() >= OWED_PAUSE || !l.control.is_empty() {
            // Our last answer, or what it found, is still waiting for the link.
            l.recon_waiting = Some(message);
        } else {
            self.reconcile(peer, &message);
        }
    }

    /// `peer` asks for the strings with these ids.
    fn want(&mut self, peer: PeerId, ids: Vec<[u8; wire::ID_LEN]>) {
        let Some(l) = self.links.get_mut(&peer) else {
            return;
        };
        for id in ids {
            if let Some(index) = self.store.index_of(&Id(id)) {
                l.owed.push_back(Owed::Index(index));
                l.owed_indices += 1;
                l.owed_total += 1;
            }
        }
        if l.owed_indices > OWED_MAX || l.owed_total > self.store.len() + OWED_MAX {
            self.close(peer, DisconnectReason::AskedTooMuch);
        } else {
            self.pump(peer);
        }
    }

    /// Answers one reconciliation message from `peer`.
    fn reconcile(&mut self, peer: PeerId, message: &[u8]) {
        let l = self.links.get_mut(&peer).expect("a link");
        match l.recon.handle(&self.store, message) {
            Err(e) => self.close(peer, DisconnectReason::Reconcile(e)),
            Ok(progress) => {
                if let Some(reply) = progress.reply {
                    Self::queue_recon(&mut self.stats, l, reply);
                }
                let asked = progress.we_lack.len() as u64;
                l.intake.expect(
                    progress.peer_may_send.saturating_add(asked),
                    self.config.max_strings,
                );
                for range in progress.peer_lacks {
                    l.owed_total += self.store.count(range);
                    l.owed.push_back(Owed::Range(range));
                }
                if l.owed_total > self.store.len() + OWED_MAX {
                    // Claiming to lack the same strings round after round would make us send
                    // the room again each round.
                    self.close(peer, DisconnectReason::AskedTooMuch);
                    return;
                }
                for ids in progress.we_lack.chunks(wire::MAX_WANT) {
                    let start = l.control.len();
                    Frame::Want(ids.iter().map(|id| id.0).collect()).encode(&mut l.control);
                    self.stats.recon_frames_sent += 1;
                    self.stats.recon_bytes_sent += (l.control.len() - start) as u64;
                }
                self.pump(peer);
            }
        }
    }

    /// Queues one reconciliation message to `l`.
    fn queue_recon(stats: &mut Stats, l: &mut Link, message: Vec<u8>) {
        let start = l.control.len();
        Frame::Recon(message).encode(&mut l.control);
        stats.recon_frames_sent += 1;
        stats.recon_bytes_sent += (l.control.len() - start) as u64;
    }

    /// Adds `text` if it is new to this client (to be printed at the next [`Room::poll`]);
    /// the caller offers it to the links.
    ///
    /// The limits apply to what others introduce (and to history restored); a line typed
    /// here may use a reserve of a sixteenth more, so that a full room still lets its user
    /// speak.
    fn learn(&mut self, text: &str, origin: Option<PeerId>, typed: bool) -> Result<(), Refused> {
        let (max_strings, max_bytes) = if typed {
            let c = &self.config;
            (
                c.max_strings.saturating_add(c.max_strings / 16),
                c.max_bytes.saturating_add(c.max_bytes / 16),
            )
        } else {
            (self.config.max_strings, self.config.max_bytes)
        };
        let full =
            self.store.len() >= max_strings || self.store.text_bytes() + text.len() > max_bytes;
        if full {
            if self.store.contains(text) {
                return Err(Refused::Known);
            }
            self.stats.refused_full += 1;
            if !self.full_said {
                self.full_said = true;
                self.out.push_back(RoomOutput::Full {
                    strings: self.store.len(),
                    bytes: self.store.text_bytes(),
                });
            }
            return Err(Refused::Full);
        }
        let Some(index) = self.store.insert(text) else {
            return Err(Refused::Known);
        };
        self.origins.push_back(origin_tag(origin));
        if let Some(l) = origin.and_then(|peer| self.links.get_mut(&peer))
            && l.stage != Stage::Linked
        {
            l.early.push(index);
        }
        Ok(())
    }

    /// Offers what is waiting to every link.
    fn pump_all(&mut self) {
        for i in 0..self.order.len() {
            // A pump may close a link (a held Recon that breaks the rules): the order shrinks.
            if let Some(&peer) = self.order.get(i) {
                self.pump(peer);
            }
        }
        self.trim_origins();
    }

    /// Forgets the origins of strings every link's live cursor has passed.
    fn trim_origins(&mut self) {
        let links = self.links.values().filter(|l| l.stage == Stage::Linked);
        let keep_from = links.map(|l| l.cursor).min().unwrap_or(self.store.len());
        let passed = keep_from
            .saturating_sub(self.origins_from)
            .min(self.origins.len());
        self.origins.drain(..passed);
        self.origins_from += passed;
        if self.origins.capacity() > 4 * self.origins.len() + 4096 {
            self.origins.shrink_to(2 * self.origins.len());
        }
    }

    /// Sends `peer` its waiting control frames, the live strings it lacks, then what it is
    /// owed, as far as its in-flight budget allows.
    fn pump(&mut self, peer: PeerId) {
        let Some(l) = self.links.get_mut(&peer) else {
            return;
        };
        let linked = l.stage == Stage::Linked;
        let len = self.store.len();
        let tag = origin_tag(Some(peer));
        let pace = Rate::pace(&self.config);
        if linked && l.cursor < len {
            l.pace.refill(pace, self.now);
        }
        let mut paced = None;
        let mut walked = Vec::new();
        while l.in_flight < self.config.max_in_flight
            && (!l.control.is_empty()
                || (linked && ((l.cursor < len && paced.is_none()) || !l.owed.is_empty())))
        {
            let mut bytes = std::mem::take(&mut l.control);
            let mut history = 0u64;
            let batch = self.config.send_batch;
            while linked && l.cursor < len && bytes.len() < batch {
                let index = l.cursor;
                if self.origins[index - self.origins_from] != tag {
                    let text = self.store.get(index);
                    if let Err(until) = l.pace.try_take(pace, text.len(), self.now) {
                        paced = Some(until);
                        break;
                    }
                    wire::encode_text(text, &mut bytes);
                    self.stats.frames_sent += 1;
                }
                l.cursor += 1;
            }
            while linked && bytes.len() < batch {
                let Some(owed) = l.owed.pop_front() else {
                    break;
                };
                match owed {
                    Owed::Index(index) => {
                        l.owed_indices -= 1;
                        walked.push(index);
                    }
                    Owed::Range(range) => {
                        if let Some(rest) = self.store.walk(range, WALK_STEP, &mut walked) {
                            l.owed.push_front(Owed::Range(rest));
                        }
                    }
                }
                for index in walked.drain(..) {
                    // Sent live, or first heard from this very peer: it has it.
                    if index >= l.live_from || l.early.binary_search(&index).is_ok() {
                        continue;
                    }
                    let text = self.store.get(index);
                    history += text.len() as u64;
                    wire::encode_text(text, &mut bytes);
                    self.stats.frames_sent += 1;
                }
            }
            if bytes.is_empty() {
                continue;
            }
            let first = l.in_flight == 0;
            l.in_flight += 1;
            self.stats.bytes_sent += bytes.len() as u64;
            self.out.push_back(RoomOutput::Send { peer, bytes, first });
            if history > 0 {
                self.out.push_back(RoomOutput::Served {
                    peer,
                    bytes: history,
                });
            }
        }
        // Live strings wait for the pace: ask to be woken when the next one may go.
        if let Some(until) = paced.flatten()
            && l.paced_until.is_none_or(|t| until < t)
        {
            l.paced_until = Some(until);
            self.out.push_back(RoomOutput::Paced { peer, until });
        }
        if l.owed.len() < OWED_PAUSE
            && l.control.is_empty()
            && let Some(message) = l.recon_waiting.take()
        {
            self.reconcile(peer, &message);
        }
    }
}
