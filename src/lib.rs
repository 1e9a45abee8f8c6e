//! floodchat: a peer-to-peer chat room whose state is a grow-only set of strings,
//! replicated by flooding over TCP.
//!
//! This crate is the sans-IO core: [`FloodState`] takes [`Input`]s (a typed line, bytes from
//! a peer, a peer connected or gone, a dial's outcome, a timer) and yields [`Output`]s (print
//! this, send these bytes, dial that address, drop that peer). It has no sockets, no async,
//! no clock and no randomness; the drivers in `runtimes/` move bytes between it and the world.
//!
//! Two sub-machines sit behind the one door, each with its own small inputs and outputs: the
//! mesh decides which clients to be linked to (admission limits, an address book, dialing,
//! healing; [`MeshConfig`] sets its limits), and the room, over a string store and a set
//! reconciler, keeps the set and decides what each link must be sent. [`FloodState`] routes
//! between them and owns the connections: their record layer ([`secure`]: every link is
//! encrypted and each peer's identity is its key), their bytes, their deadlines, their ends.
//! The wire format is in [`wire`], [`secure`] and `PROTOCOL.md`.
//!
//! # What is public
//!
//! - [`FloodState`], its [`Config`] (with [`MeshConfig`]), its [`Input`]s and [`Output`]s, and
//!   [`InputError`], the caller's mistakes;
//! - what the outputs carry: [`PeerId`], [`ClientId`], [`DisconnectReason`] (with [`CloseWhy`]
//!   and [`ByeReason`]), [`Notice`] (with [`LinkNotice`] and [`MeshNotice`]), [`Stats`], and
//!   [`MAX_MESSAGE_LEN`], the longest string;
//! - [`wire`], the frames, and [`secure`], the record layer around them (the prologue, the
//!   Noise handshake, the encrypted records, identities, room keys and invites), for programs
//!   that speak the protocol without a [`FloodState`] (the tests build fake peers with them).
//!
//! The mesh, the string store and the reconciler are private. The feature `sim` adds `sim`, the
//! deterministic network simulator, and a hidden `internals` module through which the benches
//! reach the store and the reconciler; `fuzzing` adds the fuzz targets' entry points. Neither
//! is part of the API.
//!
//! Iteration over hash maps never decides the order of outputs, so the same inputs always
//! give the same outputs.
//!
//! # The loop a driver writes
//!
//! Feed every event in, then drain every output, then sleep until the next event or
//! [`FloodState::poll_timeout`]. This is the whole contract; `runtimes/driver.rs` is the same
//! loop with sockets, tasks and channels.
//!
//! ```no_run
//! use std::time::Instant;
//! use floodchat::secure::{Identity, RoomKey};
//! use floodchat::{Config, FloodState, Input, Output, PeerId};
//!
//! # fn wait_for_event(_: Option<Instant>) -> Option<(PeerId, Vec<u8>)> { None }
//! # fn dial(_: std::net::SocketAddr) {}
//! # fn write(_: PeerId, _: &[u8]) {}
//! # fn close(_: PeerId) {}
//! # let [secret, entropy] = [[7u8; 32], [9u8; 32]];
//! let config = Config {
//!     identity: Identity::from_secret(secret), // 32 random bytes, from the OS
//!     entropy,                                 // likewise, for the handshakes
//!     seed: 42,                                // likewise
//!     room: RoomKey::Open,                     // or RoomKey::private(key)
//!     listen_port: 4000,
//!     ..Config::default()
//! };
//! let mut state = FloodState::new(config, Instant::now());
//! state
//!     .handle_input(Instant::now(), Input::Start { contact: Some("127.0.0.1:4000".parse().unwrap()) })
//!     .unwrap();
//! loop {
//!     while let Some(output) = state.poll_output() {
//!         match output {
//!             Output::Print(index) => println!("{}", state.message(index)),
//!             Output::Send { peer, bytes } => write(peer, &bytes), // then Input::Sent(peer)
//!             Output::Dial(addr) => dial(addr), // then Input::Dialed or Input::DialFailed
//!             Output::Disconnect { peer, reason } => {
//!                 close(peer);
//!                 eprintln!("{peer}: {reason}");
//!             }
//!             Output::PeerReady(_) | Output::Notice(_) => {}
//!         }
//!     }
//!     let input = match wait_for_event(state.poll_timeout()) {
//!         Some((peer, bytes)) => (peer, bytes),
//!         None => {
//!             state.handle_input(Instant::now(), Input::Timeout).unwrap();
//!             continue;
//!         }
//!     };
//!     // A misbehaving peer is never an Err; an Err is the caller's mistake.
//!     let _ = state.handle_input(Instant::now(), Input::Received(input.0, &input.1));
//! }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![warn(unreachable_pub)]

#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod herald;
mod peer;
mod room;
pub mod secure;
#[cfg(feature = "sim")]
pub mod sim;
mod sources;
mod state;
mod timers;
pub mod wire;

// The `pub` items of these four are for the benches, the simulator and the fuzz targets, which
// reach them through `internals` and `sim` (feature `sim`). Without `sim` nothing outside the
// crate can reach them, and some (what the benches measure, accessors the simulator reads) are
// not used at all.
#[cfg_attr(not(feature = "sim"), allow(unreachable_pub, dead_code))]
mod mesh;
#[cfg_attr(not(feature = "sim"), allow(unreachable_pub, dead_code))]
mod reconcile;
#[cfg_attr(not(feature = "sim"), allow(unreachable_pub))]
mod rng;
#[cfg_attr(not(feature = "sim"), allow(unreachable_pub, dead_code))]
mod store;

pub use herald::LinkNotice;
pub use herald::Notice;
pub use mesh::{MeshConfig, MeshNotice};
pub use peer::{CloseWhy, DisconnectReason, PeerId};
pub use room::Stats;
pub use state::{Config, FloodState, Input, InputError, Output};
// Listed at the root with the rest of the API, though they belong to the protocol.
#[doc(inline)]
pub use wire::{ByeReason, ClientId, MAX_MESSAGE_LEN};

/// The internal machines, for the benches and the simulator's users: not part of the API.
///
/// Compiled only with the `sim` feature; nothing here is promised to stay.
#[cfg(feature = "sim")]
#[doc(hidden)]
pub mod internals {
    pub use crate::mesh::{Mesh, MeshInput, MeshOutput};
    pub use crate::reconcile::{Progress, ReconcileError, Reconciler};
    pub use crate::store::{Fingerprint, Id, IdRange, Store};
}
