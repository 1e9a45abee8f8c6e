//! A deterministic network simulator of many [`FloodState`](crate::FloodState)s, shared by
//! the tests, the benchmarks, the examples and the fuzz targets.
//!
//! - [`Sim`] is the network: per-direction FIFO byte streams with latency, writes and reads
//!   split at random points, a bounded window, links that break, clients that crash and
//!   restart, partitions that heal, all in virtual time from one seed. It checks the core's
//!   promises at every output and convergence at the end ([`Sim::check`]), and measures
//!   ([`Report`]).
//! - [`Script`] is a run as data ([`Step`]s), for property tests, fuzzing and regressions.
//! - [`model`] explores every interleaving of a small network, breadth first.
//!
//! Pure code: no threads, no sleeps, no wall clock (one [`std::time::Instant`] is taken as
//! the origin of virtual time, and only differences from it matter).

pub mod model;
mod network;
mod report;
mod rng;
mod script;

pub use network::{Fault, Sim, SimConfig};
pub use report::{Report, Violations};
pub use rng::SplitMix64;
pub use script::{Outcome, Script, Step, apply, random_topology};
