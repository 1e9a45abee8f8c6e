//! [`Book`]: the bounded address book, and the memory of addresses that failed.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hashbrown::{HashMap, HashSet};

use super::addr::can_listen;
use crate::rng::SplitMix64;

/// One known address.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Where the client listens.
    pub(crate) addr: SocketAddr,
    /// We had a floodchat link with it (or the user gave it): gossip cannot evict it.
    pub(crate) verified: bool,
    /// For a learned, unverified entry: the IP of the connection that told us.
    pub(crate) source: Option<IpAddr>,
    /// Failed dials in a row.
    pub(crate) failures: u32,
    /// Not to be dialed before this.
    pub(crate) next_try: Instant,
    /// Being dialed, or linked: not a candidate for a dial.
    pub(crate) busy: bool,
    /// The client our last dial of it reached (proven by its key), if any.
    pub(crate) client: Option<crate::wire::ClientId>,
    /// A dial to it answered with floodchat's prologue: worth telling others.
    pub(crate) answered: bool,
    /// When it was learned: an untested hint is dropped [`Book::hint_ttl`] later.
    pub(crate) learned: Instant,
}

impl Entry {
    /// Heard from a peer and never shown to answer as floodchat.
    pub(crate) fn untested(&self) -> bool {
        !self.verified && !self.answered
    }
}

/// How the addresses one source told us are tested: one dial at a time, and a source whose
/// hints answered as something other than floodchat waits longer after each such hint.
#[derive(Debug, Clone, Copy)]
struct Pace {
    /// Hints of this source that answered as something else, in a row.
    strikes: u32,
    /// No untested hint of this source is dialed before this.
    next: Instant,
    /// One of its hints answered as floodchat.
    proven: bool,
}

/// Why a learned address was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skip {
    /// Not an address anyone listens on (port 0, unspecified, multicast, broadcast).
    Invalid,
    /// Already in the book.
    Known,
    /// Failed recently (the address, or too many addresses at its IP).
    Failed,
    /// Its source already has its share of the book.
    SourceFull,
    /// The book is full of verified or busy entries.
    BookFull,
}

/// The address book: at most `cap` entries, at most `per_source` learned ones per source IP.
#[derive(Debug)]
pub(crate) struct Book {
    entries: Vec<Entry>,
    index: HashMap<SocketAddr, usize>,
    per_source: HashMap<IpAddr, usize>,
    /// Addresses that failed, until when they are not learned again.
    failed: HashMap<SocketAddr, Instant>,
    /// Per IP: failures counted, and until when the count holds.
    failed_ips: HashMap<IpAddr, (u32, Instant)>,
    /// Per source IP: when its next untested hint may be dialed.
    paces: HashMap<IpAddr, Pace>,
    /// How long an untested hint is kept.
    pub(crate) hint_ttl: Duration,
    /// How long a source waits after its first hint that was not floodchat (doubling).
    pub(crate) probe_backoff: Duration,
    /// How long an address that answered as something else is not learned again.
    pub(crate) shun_for: Duration,
    cap: usize,
    per_source_cap: usize,
    forget_for: Duration,
    max_failures_per_ip: u32,
}

impl Book {
    pub(crate) fn new(
        cap: usize,
        per_source_cap: usize,
        forget_for: Duration,
        max_failures_per_ip: u32,
    ) -> Self {
        Self {
            entries: Vec::new(),
            index: HashMap::new(),
            per_source: HashMap::new(),
            failed: HashMap::new(),
            failed_ips: HashMap::new(),
            paces: HashMap::new(),
            hint_ttl: Duration::from_secs(20),
            probe_backoff: Duration::from_secs(60),
            shun_for: Duration::from_secs(3600),
            cap,
            per_source_cap,
            forget_for,
            max_failures_per_ip,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The addresses we had a link with, or were given, in the book's order.
    pub(crate) fn verified(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.entries.iter().filter(|e| e.verified).map(|e| e.addr)
    }

    pub(crate) fn get(&self, addr: SocketAddr) -> Option<&Entry> {
        self.index.get(&addr).map(|&i| &self.entries[i])
    }

    pub(crate) fn get_mut(&mut self, addr: SocketAddr) -> Option<&mut Entry> {
        self.index.get(&addr).map(|&i| &mut self.entries[i])
    }

    /// How many learned entries `source` has in the book.
    pub(crate) fn learned_from(&self, source: IpAddr) -> usize {
        self.per_source.get(&source).copied().unwrap_or(0)
    }

    fn recently_failed(&self, addr: SocketAddr, now: Instant) -> bool {
        self.failed.get(&addr).is_some_and(|&until| until > now)
            || self
                .failed_ips
                .get(&addr.ip())
                .is_some_and(|&(n, until)| until > now && n >= self.max_failures_per_ip)
    }

    /// Stores an address that `source` told us about, unverified.
    pub(crate) fn learn(
        &mut self,
        addr: SocketAddr,
        source: IpAddr,
        now: Instant,
        rng: &mut SplitMix64,
    ) -> Result<(), Skip> {
        if !can_listen(addr) {
            return Err(Skip::Invalid);
        }
        if self.index.contains_key(&addr) {
            return Err(Skip::Known);
        }
        if self.recently_failed(addr, now) {
            return Err(Skip::Failed);
        }
        if self.learned_from(source) >= self.per_source_cap {
            return Err(Skip::SourceFull);
        }
        if self.entries.len() >= self.cap && !self.evict(rng, false) {
            return Err(Skip::BookFull);
        }
        self.push(Entry {
            addr,
            verified: false,
            source: Some(source),
            failures: 0,
            next_try: now,
            busy: false,
            answered: false,
            learned: now,
            client: None,
        });
        Ok(())
    }

    /// Stores `addr` as verified (a link worked, or the user gave it); `false` if the book is
    /// full of busy verified entries.
    pub(crate) fn verify(&mut self, addr: SocketAddr, now: Instant, rng: &mut SplitMix64) -> bool {
        self.failed.remove(&addr);
        if let Some(&i) = self.index.get(&addr) {
            let e = &mut self.entries[i];
            e.verified = true;
            e.failures = 0;
            if let Some(src) = e.source.take() {
                self.dec_source(src);
            }
            return true;
        }
        if !can_listen(addr) {
            return false;
        }
        if self.entries.len() >= self.cap && !self.evict(rng, true) {
            return false;
        }
        self.push(Entry {
            addr,
            verified: true,
            source: None,
            failures: 0,
            next_try: now,
            busy: false,
            answered: false,
            learned: now,
            client: None,
        });
        true
    }

    /// Removes `addr`; remembers it as failed if `failed`.
    pub(crate) fn remove(&mut self, addr: SocketAddr, failed: bool, now: Instant) {
        if failed {
            self.remember_failure(addr, now, self.forget_for);
        }
        self.remove_entry(addr);
    }

    /// An untested hint is being dialed: its source's other hints wait for the outcome (or
    /// `until`, if none comes).
    pub(crate) fn probe_started(&mut self, addr: SocketAddr, now: Instant, until: Instant) {
        let Some(source) = self
            .get(addr)
            .filter(|e| e.untested())
            .and_then(|e| e.source)
        else {
            return;
        };
        if self.vouched(source, &self.verified_ips()) {
            return;
        }
        self.trim_paces(now);
        let pace = self.paces.entry(source).or_insert(Pace {
            strikes: 0,
            next: now,
            proven: false,
        });
        pace.next = pace.next.max(until);
    }

    /// A dial of `addr` answered with floodchat's prologue: the address may be told to
    /// others, and its source's next hint may be tested at once.
    pub(crate) fn answered(&mut self, addr: SocketAddr, now: Instant) {
        let Some(e) = self.get_mut(addr) else {
            return;
        };
        let source = e.source.filter(|_| !e.answered);
        e.answered = true;
        if let Some(source) = source {
            let pace = self.pace(source, now);
            pace.strikes = 0;
            pace.next = now;
            pace.proven = true;
        }
    }

    /// A dial of the untested hint `addr` failed: `connected` if something answered that was
    /// not floodchat (a third party: its source waits [`Book::probe_backoff`], doubling with
    /// each failed hint in a row up to 16 times, and the address is shunned for
    /// [`Book::shun_for`]), else nothing answered (its source's next hint may be tested at
    /// once). The address is removed either way.
    pub(crate) fn probe_failed(&mut self, addr: SocketAddr, connected: bool, now: Instant) {
        let source = self.get(addr).and_then(|e| e.source);
        if let Some(source) = source {
            let backoff = self.probe_backoff;
            let pace = self.pace(source, now);
            if connected {
                pace.strikes = pace.strikes.saturating_add(1);
                let factor = 1u32 << (pace.strikes - 1).min(4);
                pace.next = now + backoff.saturating_mul(factor);
            } else {
                // Nothing answered (a client gone, or nothing there): no one was connected to,
                // and honest books hold departed clients; the next hint is tested at once.
                pace.next = now;
            }
        }
        let shun = if connected {
            self.shun_for
        } else {
            self.forget_for
        };
        self.remember_failure(addr, now, shun);
        self.remove_entry(addr);
    }

    /// Keeps the paces bounded: those passed go first, then the soonest.
    /// The pace of `source`'s hints, a fresh one if it has none (the table trimmed first).
    fn pace(&mut self, source: IpAddr, now: Instant) -> &mut Pace {
        self.trim_paces(now);
        self.paces.entry(source).or_insert(Pace {
            strikes: 0,
            next: now,
            proven: false,
        })
    }

    fn trim_paces(&mut self, now: Instant) {
        let cap = self.cap.saturating_mul(4).max(16);
        if self.paces.len() < cap {
            return;
        }
        self.paces.retain(|_, p| {
            p.next > now || p.strikes > 0 && p.next + self.forget_for > now || p.proven
        });
        if self.paces.len() >= cap {
            let soonest = self
                .paces
                .iter()
                .min_by_key(|&(ip, p)| (p.next, *ip))
                .map(|(ip, _)| *ip);
            if let Some(ip) = soonest {
                self.paces.remove(&ip);
            }
        }
    }

    /// The IPs of verified entries: peers we had a link with at their own address.
    fn verified_ips(&self) -> HashSet<IpAddr> {
        self.entries
            .iter()
            .filter(|e| e.verified)
            .map(|e| e.addr.ip())
            .collect()
    }

    /// Whether what `source` tells us is worth what an honest peer's word is: it has no
    /// strike (no hint of it answered as something else lately), and either one of its hints
    /// answered as floodchat or it is a peer we had a link with at its own address
    /// (`verified`, from [`Book::verified_ips`]). Such a source's hints are tested several at
    /// once, kept like any learned address and passed on; the others', one at a time, paced,
    /// dropped after [`Book::hint_ttl`] and never passed on.
    fn vouched(&self, source: IpAddr, verified: &HashSet<IpAddr>) -> bool {
        match self.paces.get(&source) {
            Some(p) if p.strikes > 0 => false,
            Some(p) if p.proven => true,
            _ => verified.contains(&source),
        }
    }

    /// Whether an untested hint is held to the strict rules (its source is not vouched). A
    /// peer's claim of its own address (told from that IP) is not: dialing it reaches no third
    /// party, and it is how clients whose links were inbound find each other again.
    fn strict(&self, e: &Entry, verified: &HashSet<IpAddr>) -> bool {
        e.untested()
            && e.source != Some(e.addr.ip())
            && e.source.is_none_or(|s| !self.vouched(s, verified))
    }

    /// Whether the entry may be dialed as far as its source's pace and its age go.
    fn testable(&self, e: &Entry, now: Instant, verified: &HashSet<IpAddr>) -> bool {
        !self.strict(e, verified)
            || e.learned + self.hint_ttl > now
                && e.source
                    .and_then(|s| self.paces.get(&s))
                    .is_none_or(|p| p.next <= now)
    }

    /// When an idle entry may next be dialed as far as its source's pace goes.
    fn testable_at(&self, e: &Entry, verified: &HashSet<IpAddr>) -> Instant {
        let pace = e
            .source
            .filter(|_| self.strict(e, verified))
            .and_then(|s| self.paces.get(&s))
            .map(|p| p.next);
        pace.map_or(e.next_try, |p| p.max(e.next_try))
    }

    /// Drops the untested hints older than [`Book::hint_ttl`] that no dial uses.
    pub(crate) fn expire_hints(&mut self, now: Instant) {
        let ttl = self.hint_ttl;
        if !self
            .entries
            .iter()
            .any(|e| e.untested() && !e.busy && e.learned + ttl <= now)
        {
            return;
        }
        let verified = self.verified_ips();
        let old: Vec<SocketAddr> = self
            .entries
            .iter()
            .filter(|e| !e.busy && e.learned + ttl <= now && self.strict(e, &verified))
            .map(|e| e.addr)
            .collect();
        for a in old {
            self.remove_entry(a);
        }
    }

    fn remove_entry(&mut self, addr: SocketAddr) {
        let Some(i) = self.index.remove(&addr) else {
            return;
        };
        let e = self.entries.swap_remove(i);
        if let Some(moved) = self.entries.get(i) {
            self.index.insert(moved.addr, i);
        }
        if let Some(src) = e.source {
            self.dec_source(src);
        }
    }

    /// Records a failed learned address; once its IP has failed too often, every learned
    /// entry at that IP goes too.
    fn remember_failure(&mut self, addr: SocketAddr, now: Instant, shun: Duration) {
        self.record_failure(addr, now, shun);
        let ip = addr.ip();
        if self
            .failed_ips
            .get(&ip)
            .is_some_and(|&(n, _)| n >= self.max_failures_per_ip)
        {
            let doomed: Vec<SocketAddr> = self
                .entries
                .iter()
                .filter(|e| e.addr.ip() == ip && !e.verified && !e.busy)
                .map(|e| e.addr)
                .collect();
            for a in doomed {
                self.remove_entry(a);
            }
        }
    }

    fn record_failure(&mut self, addr: SocketAddr, now: Instant, shun: Duration) {
        let until = now + shun;
        let cap = self.cap.saturating_mul(4).max(16);
        if self.failed.len() >= cap && !self.failed.contains_key(&addr) {
            self.failed.retain(|_, u| *u > now);
            if self.failed.len() >= cap {
                let oldest = self
                    .failed
                    .iter()
                    .min_by_key(|&(a, u)| (*u, *a))
                    .map(|(a, _)| *a);
                if let Some(a) = oldest {
                    self.failed.remove(&a);
                }
            }
        }
        self.failed.insert(addr, until);
        let until = now + self.forget_for;
        let ip = addr.ip();
        if self.failed_ips.len() >= cap && !self.failed_ips.contains_key(&ip) {
            self.failed_ips.retain(|_, (_, u)| *u > now);
            if self.failed_ips.len() >= cap {
                let oldest = self
                    .failed_ips
                    .iter()
                    .min_by_key(|&(a, (_, u))| (*u, *a))
                    .map(|(a, _)| *a);
                if let Some(a) = oldest {
                    self.failed_ips.remove(&a);
                }
            }
        }
        let slot = self.failed_ips.entry(ip).or_insert((0, until));
        if slot.1 <= now {
            *slot = (0, until);
        }
        slot.0 += 1;
        slot.1 = until;
    }

    fn push(&mut self, e: Entry) {
        if let Some(src) = e.source {
            *self.per_source.entry(src).or_insert(0) += 1;
        }
        self.index.insert(e.addr, self.entries.len());
        self.entries.push(e);
    }

    fn dec_source(&mut self, src: IpAddr) {
        if let Some(n) = self.per_source.get_mut(&src) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&src);
            }
        }
    }

    /// Frees one slot: a random idle unverified entry, or (only for a verified newcomer) the
    /// idle verified entry that failed most. `false` if nothing may go.
    fn evict(&mut self, rng: &mut SplitMix64, for_verified: bool) -> bool {
        let idle_learned: Vec<usize> = (0..self.entries.len())
            .filter(|&i| !self.entries[i].verified && !self.entries[i].busy)
            .collect();
        let victim = if idle_learned.is_empty() {
            if !for_verified {
                return false;
            }
            match (0..self.entries.len())
                .filter(|&i| !self.entries[i].busy)
                .max_by_key(|&i| (self.entries[i].failures, std::cmp::Reverse(i)))
            {
                Some(i) => i,
                None => return false,
            }
        } else {
            idle_learned[rng.index(idle_learned.len())]
        };
        let addr = self.entries[victim].addr;
        self.remove_entry(addr);
        true
    }

    /// A random idle entry due for a dial for which `keep` holds.
    pub(crate) fn pick_due(
        &self,
        now: Instant,
        rng: &mut SplitMix64,
        keep: impl Fn(&Entry) -> bool,
    ) -> Option<SocketAddr> {
        let verified = self.verified_ips();
        let due: Vec<SocketAddr> = self
            .entries
            .iter()
            .filter(|e| !e.busy && e.next_try <= now && self.testable(e, now, &verified) && keep(e))
            .map(|e| e.addr)
            .collect();
        (!due.is_empty()).then(|| due[rng.index(due.len())])
    }

    /// When the next idle entry becomes due.
    pub(crate) fn next_due(&self, exclude: impl Fn(SocketAddr) -> bool) -> Option<Instant> {
        let verified = self.verified_ips();
        self.entries
            .iter()
            .filter(|e| !e.busy && !exclude(e.addr))
            .map(|e| self.testable_at(e, &verified))
            .min()
    }

    /// Up to `n` addresses worth telling others: none failing, no untested hint of a source
    /// we do not vouch for (see [`Book::vouched`]: an attacker's hints do not spread), verified
    /// ones first, in random order, without `exclude`.
    pub(crate) fn sample(
        &self,
        n: usize,
        exclude: Option<SocketAddr>,
        rng: &mut SplitMix64,
    ) -> Vec<SocketAddr> {
        let verified = self.verified_ips();
        let mut good: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| e.failures == 0 && !self.strict(e, &verified) && Some(e.addr) != exclude)
            .collect();
        rng.shuffle(&mut good);
        good.sort_by_key(|e| !(e.verified || e.busy));
        good.into_iter().take(n).map(|e| e.addr).collect()
    }

    /// Panics if the indexes disagree with the entries or a bound is broken.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn check(&self) {
        assert!(self.entries.len() <= self.cap, "book over capacity");
        assert_eq!(self.index.len(), self.entries.len());
        let mut counts: HashMap<IpAddr, usize> = HashMap::new();
        for (i, e) in self.entries.iter().enumerate() {
            assert_eq!(self.index.get(&e.addr), Some(&i));
            assert!(e.verified == e.source.is_none(), "verified xor source");
            if let Some(s) = e.source {
                *counts.entry(s).or_insert(0) += 1;
            }
        }
        assert_eq!(counts, self.per_source);
        assert!(counts.values().all(|&n| n <= self.per_source_cap));
    }
}
