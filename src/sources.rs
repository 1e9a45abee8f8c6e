//! [`Sources`]: what each remote IP address has cost this client lately, in a table of
//! bounded size. Two prices are kept: the room's history sent to the address in the current
//! hour (a peer that says it holds nothing is sent the whole room; one that says so again
//! and again would be sent it again and again), and whether the address flooded the room
//! lately (then its connections are refused and it is not dialed until the back-off ends).
//!
//! Keyed by the canonical form of the IP, so that `::ffff:a.b.c.d` and `a.b.c.d` are one
//! source. Clients behind one NAT share a source: they share its budget too.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use hashbrown::HashMap;

/// The length of the window history is counted over.
pub(crate) const HISTORY_WINDOW: Duration = Duration::from_secs(3600);

/// Most sources remembered; the one seen least recently is forgotten to make room.
pub(crate) const MAX_SOURCES: usize = 4096;

/// What one address cost lately.
#[derive(Debug, Clone, Copy)]
struct Source {
    /// When the current history window began.
    window_from: Instant,
    /// Bytes of history sent to it in the current window.
    served: u64,
    /// Until when it is refused, if it flooded.
    banned_until: Option<Instant>,
    /// When it was last charged or banned.
    seen: Instant,
}

/// The table of sources; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Sources {
    table: HashMap<IpAddr, Source>,
}

impl Sources {
    /// The entry of `ip`, made (and room made for it) if absent.
    fn entry(&mut self, ip: IpAddr, now: Instant) -> &mut Source {
        let ip = ip.to_canonical();
        if !self.table.contains_key(&ip) && self.table.len() >= MAX_SOURCES {
            // Forget a source that is not banned, least recently seen; if all are, the oldest.
            let victim = self
                .table
                .iter()
                .min_by_key(|(_, s)| (s.banned_until.is_some_and(|u| u > now), s.seen))
                .map(|(&ip, _)| ip);
            if let Some(victim) = victim {
                self.table.remove(&victim);
            }
        }
        let source = self.table.entry(ip).or_insert(Source {
            window_from: now,
            served: 0,
            banned_until: None,
            seen: now,
        });
        source.seen = now;
        source
    }

    /// Adds `bytes` of history sent to `ip` at `now`; the bytes sent in the current hour.
    pub(crate) fn charge(&mut self, ip: IpAddr, bytes: u64, now: Instant) -> u64 {
        let source = self.entry(ip, now);
        if now.saturating_duration_since(source.window_from) >= HISTORY_WINDOW {
            source.window_from = now;
            source.served = 0;
        }
        source.served = source.served.saturating_add(bytes);
        source.served
    }

    /// Refuses `ip` until `now + for_`.
    pub(crate) fn ban(&mut self, ip: IpAddr, now: Instant, for_: Duration) {
        let until = now.checked_add(for_);
        self.entry(ip, now).banned_until = until;
    }

    /// Whether `ip` is refused at `now`.
    pub(crate) fn is_banned(&self, ip: IpAddr, now: Instant) -> bool {
        self.table
            .get(&ip.to_canonical())
            .and_then(|s| s.banned_until)
            .is_some_and(|until| until > now)
    }

    /// Sources remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn history_is_counted_per_hour_and_per_canonical_address() {
        let mut s = Sources::default();
        let t = Instant::now();
        let v4 = IpAddr::from(Ipv4Addr::new(10, 0, 0, 1));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(s.charge(v4, 100, t), 100);
        assert_eq!(s.charge(mapped, 50, t + Duration::from_secs(10)), 150);
        assert_eq!(s.charge(v4, 1, t + HISTORY_WINDOW), 1);
    }

    #[test]
    fn bans_end_and_the_table_stays_bounded() {
        let mut s = Sources::default();
        let t = Instant::now();
        let bad = IpAddr::from(Ipv4Addr::new(10, 9, 9, 9));
        s.ban(bad, t, Duration::from_secs(60));
        assert!(s.is_banned("::ffff:10.9.9.9".parse().unwrap(), t));
        for i in 0..2 * MAX_SOURCES as u32 {
            s.charge(IpAddr::from(Ipv4Addr::from(i)), 1, t);
        }
        assert_eq!(s.len(), MAX_SOURCES);
        assert!(
            s.is_banned(bad, t + Duration::from_secs(59)),
            "a ban is kept"
        );
        assert!(!s.is_banned(bad, t + Duration::from_secs(60)));
    }
}
