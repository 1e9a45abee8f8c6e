//! [`NoticeCheck`]: whether the notices one client said about its links tell a story a user
//! can trust, whatever the connections did underneath.
//!
//! The rules, checked on each notice as it is said:
//! - "no links to the room" is never said while a client is linked, nor twice in a row;
//! - it never follows a "connected to X" / "X joined" about the same moment: every client
//!   announced since the last time alone has since been said lost, or was announced at least
//!   [`STALE_FOR`] before (the room's upkeep may end a link without a word, only after that
//!   long);
//! - after it, the first link says "linked to the room again", and only then;
//! - a link announced is never said lost for being a duplicate: its client stays linked
//!   through the other connection, so that line would contradict the next one.
//!
//! The same rules serve the simulator (notices as values) and the process tests (notices as
//! the lines a user reads on stderr, see [`Said::from_line`]).

use std::collections::VecDeque;
use std::time::Duration;

use crate::LinkNotice;
use crate::herald::Notice;
use crate::mesh::{CloseWhy, MeshNotice};
use crate::wire::ByeReason;

pub use crate::herald::STALE_FOR;

/// How many notices an error message recalls.
const RECENT: usize = 8;

/// A notice, as far as the story of the links goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    /// A client is linked now, through a connection with this remote address; `again` after
    /// being alone.
    Up {
        /// The connection's remote address, as shown.
        addr: String,
        /// Whether it says "linked to the room again".
        again: bool,
    },
    /// The connection with this remote address ended: a link said lost if it was announced,
    /// else a connection that never was a link.
    Ended {
        /// The address, as shown.
        addr: String,
        /// Whether the reason given is that another connection to the client stays.
        duplicate: bool,
    },
    /// No links to the room.
    Alone,
    /// "linked to the room again" on its own line.
    Rejoined,
    /// Anything else (refusals, the room full, held-back counts).
    Other,
}

impl Said {
    /// What `notice` says.
    pub fn from_notice(notice: &Notice) -> Self {
        match notice {
            Notice::Link(LinkNotice::Up { addr, again, .. }) => Self::Up {
                addr: addr.to_string(),
                again: *again,
            },
            Notice::Link(
                LinkNotice::Lost { addr, reason } | LinkNotice::Failed { addr, reason },
            ) => Self::Ended {
                addr: addr.to_string(),
                duplicate: reason.is_duplicate(),
            },
            Notice::Mesh(MeshNotice::Alone) => Self::Alone,
            Notice::Mesh(MeshNotice::Rejoined) => Self::Rejoined,
            _ => Self::Other,
        }
    }

    /// What a line of stderr says; `None` for a line that is not a notice.
    pub fn from_line(line: &str) -> Option<Self> {
        let text = line.strip_prefix("floodchat: ")?;
        let (again, text) = match text.strip_prefix("linked to the room again: ") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let up = |addr: &str| Self::Up {
            addr: addr.to_string(),
            again,
        };
        Some(if let Some(addr) = text.strip_prefix("connected to ") {
            up(addr)
        } else if let Some(addr) = text.strip_suffix(" joined") {
            up(addr)
        } else if text.starts_with("no links to the room") {
            Self::Alone
        } else if text == "linked to the room again" {
            Self::Rejoined
        } else if let Some((addr, why)) = text.split_once(": ") {
            let duplicate = [
                ByeReason::Duplicate.to_string(),
                CloseWhy::Duplicate.to_string(),
            ]
            .iter()
            .any(|d| why.ends_with(d.as_str()));
            Self::Ended {
                addr: addr.to_string(),
                duplicate,
            }
        } else {
            Self::Other
        })
    }
}

/// The story so far of one client's notices; see the module docs.
#[derive(Debug, Default, Clone)]
pub struct NoticeCheck {
    /// Links announced since the last time alone and not said lost, with when.
    announced: Vec<(String, Duration)>,
    alone: bool,
    /// The last notices, for the message of a broken rule.
    recent: VecDeque<String>,
}

impl NoticeCheck {
    /// Takes one notice said at `at` by a client with `links` links at that moment (`None`
    /// when unknown, as for a real process); `Err` says which rule it breaks.
    pub fn said(&mut self, at: Duration, said: Said, links: Option<usize>) -> Result<(), String> {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(format!("{at:?}: {said:?}"));
        self.check(at, said, links).map_err(|e| {
            let recent: Vec<&str> = self.recent.iter().map(String::as_str).collect();
            format!("{e}; the last notices: {recent:?}")
        })
    }

    fn check(&mut self, at: Duration, said: Said, links: Option<usize>) -> Result<(), String> {
        match said {
            Said::Up { addr, again } => {
                if again != self.alone {
                    return Err(if again {
                        format!("\"linked to the room again\" ({addr}) without being alone")
                    } else {
                        format!("a link to {addr} after \"no links\" that does not say it is back")
                    });
                }
                self.alone = false;
                self.announced.retain(|(a, _)| *a != addr);
                self.announced.push((addr, at));
            }
            Said::Ended { addr, duplicate } => {
                let announced = self.announced.iter().any(|(a, _)| *a == addr);
                if announced && duplicate {
                    return Err(format!(
                        "{addr} said lost as a duplicate, yet a duplicate's client stays linked"
                    ));
                }
                self.announced.retain(|(a, _)| *a != addr);
            }
            Said::Alone => {
                if let Some(n) = links.filter(|&n| n > 0) {
                    return Err(format!("\"no links\" with {n} links"));
                }
                if self.alone {
                    return Err("\"no links\" twice in a row".into());
                }
                if let Some((addr, when)) = self.announced.iter().find(|(_, t)| at < *t + STALE_FOR)
                {
                    return Err(format!(
                        "\"no links\" {:?} after announcing {addr}, never said lost",
                        at - *when
                    ));
                }
                self.announced.clear();
                self.alone = true;
            }
            Said::Rejoined => {
                if !self.alone {
                    return Err("\"linked to the room again\" without being alone".into());
                }
                self.alone = false;
            }
            Said::Other => {}
        }
        Ok(())
    }

    /// Checks the lines a client printed on stderr, each with when it was read; `Err` names
    /// the first line that breaks a rule.
    pub fn check_lines(lines: &[(Duration, String)]) -> Result<(), String> {
        let mut check = Self::default();
        for (at, line) in lines {
            if let Some(said) = Said::from_line(line) {
                check
                    .said(*at, said, None)
                    .map_err(|e| format!("at {line:?}: {e}"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(lines: &[(u64, &str)]) -> Vec<(Duration, String)> {
        lines
            .iter()
            .map(|&(ms, l)| (Duration::from_millis(ms), format!("floodchat: {l}")))
            .collect()
    }

    /// The lines a user read in the flaky heal test: "connected to" a client, then "no links"
    /// at the same moment, then that client again.
    #[test]
    fn the_contradiction_users_saw_is_caught() {
        let seen = lines(&[
            (0, "127.0.0.1:33383: connection closed"),
            (3, "connected to 127.0.0.1:35221"),
            (4, "no links to the room; still trying the addresses known"),
            (5, "127.0.0.1:45542 joined"),
            (6, "linked to the room again"),
        ]);
        let err = NoticeCheck::check_lines(&seen).unwrap_err();
        assert!(err.contains("after announcing 127.0.0.1:35221"), "{err}");
    }

    /// A duplicate said as the reason a link was lost, right before being alone, is the same
    /// contradiction in other words.
    #[test]
    fn a_link_said_lost_as_a_duplicate_is_caught() {
        let seen = lines(&[
            (0, "connected to 127.0.0.1:35221"),
            (
                1,
                "127.0.0.1:35221: it closed the link: another connection to the same client stays",
            ),
        ]);
        assert!(NoticeCheck::check_lines(&seen).is_err());
    }

    /// What the herald says instead, in the same situations, and the loss of a last link.
    #[test]
    fn stories_that_hold_together_pass() {
        let seen = lines(&[
            (0, "127.0.0.1:33383: connection closed"),
            (3, "connected to 127.0.0.1:35221"),
            (9_000, "127.0.0.1:35221: connection closed"),
            (
                9_001,
                "no links to the room; still trying the addresses known",
            ),
            (9_500, "127.0.0.9:4000: connection refused"),
            (12_000, "linked to the room again: 127.0.0.1:45542 joined"),
            (13_000, "127.0.0.7:4000 joined"),
        ]);
        NoticeCheck::check_lines(&seen).unwrap();
        let twice = lines(&[
            (0, "connected to 127.0.0.1:35221"),
            (1, "127.0.0.1:35221: connection closed"),
            (2, "no links to the room; still trying the addresses known"),
            (3, "127.0.0.1:45542 joined"),
        ]);
        assert!(NoticeCheck::check_lines(&twice).is_err());
    }
}
