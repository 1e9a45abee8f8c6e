//! The deterministic network simulator of many [`FloodState`](crate::FloodState)s (or of
//! meshes alone, [`MeshNode`]s), shared by the tests, the benchmarks, the examples and the
//! fuzz targets (cargo feature `sim`). It is the only one: the mesh's properties run on it
//! too.
//!
//! - [`Sim`] is the network: per-direction FIFO byte streams with latency, writes and reads
//!   split at random points, a bounded window, dials that connect or fail, links that break,
//!   clients that crash and restart, partitions that heal, all in virtual time from one
//!   seed. It checks the core's promises at every output and convergence at the end
//!   ([`Sim::check`]), and measures ([`Report`], and the graph's [`Shape`]).
//! - [`join_then_crash`] is the mesh at scale: joins through contacts, then a crash of many;
//!   [`broadcast`] is the broadcast benchmark's setting, with or without partitions.
//! - [`Script`] is a run as data ([`Step`]s), for property tests, fuzzing and regressions.
//! - [`model`] explores every interleaving of a small network, breadth first.
//!
//! Each client has its own [`ClientId`](crate::ClientId) and listens at [`client_addr`]
//! (`127.x.y.z:4000`): names inside the simulator only, never used on a network.
//!
//! Pure code: no threads, no sleeps, no wall clock (one [`std::time::Instant`] is taken as
//! the origin of virtual time, and only differences from it matter).
//!
//! Where it is used (add `--no-default-features` to build it without a driver):
//! - `tests/sim_props.rs`: property tests over random scripts, shrunk on failure
//!   (`PROPTEST_CASES=20000 PROPTEST_RNG_SEED=7 cargo test --release --features sim --test
//!   sim_props`);
//! - `tests/sim_regressions.rs`: named scenarios, exact costs, kept failures;
//! - `tests/sim_mesh.rs` and `tests/mesh_props.rs`: joins, crashes and partitions, with whole
//!   clients and with the mesh alone;
//! - `tests/model_check.rs` and `cargo run --release --features sim --example model_check`;
//! - `cargo run --release --features sim --example sim_scale -- --clients 10000 --extra 100`;
//! - `cargo run --release --features sim --example sim_broadcast` (25 clients, 100 ms,
//!   partitions);
//! - `cargo run --release --features sim --example sim_join_crash` (add `--mesh-only`);
//! - `cargo bench --features sim --bench sim`; the `network` fuzz target
//!   (`crate::fuzzing::network`).

pub mod model;
mod network;
mod node;
pub mod notices;
mod report;
mod scenario;
mod script;
mod shape;

pub use crate::rng::SplitMix64;
pub use network::{Fault, LISTEN_PORT, Sim, SimConfig, client_addr, client_at};
pub use node::{MeshNode, Node};
pub use notices::{NoticeCheck, Said};
pub use report::{Report, Violations};

pub use scenario::{Broadcast, BroadcastRun, JoinCrash, JoinThenCrash, broadcast, join_then_crash};
pub use script::{Outcome, Script, Step, apply, random_topology};
pub use shape::Shape;

/// Clients grouped into the components that links join: a union-find forest.
pub struct Components(Vec<usize>);

impl Components {
    /// `n` clients joined by `links`.
    pub fn new(n: usize, links: impl IntoIterator<Item = [usize; 2]>) -> Self {
        let mut forest = Self((0..n).collect());
        for [a, b] in links {
            let (a, b) = (forest.of(a), forest.of(b));
            forest.0[a] = b;
        }
        forest
    }

    /// The representative of `x`'s component.
    pub fn of(&mut self, mut x: usize) -> usize {
        let parent = &mut self.0;
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
}
