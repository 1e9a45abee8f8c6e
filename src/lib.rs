//! floodchat: a peer-to-peer chat room whose state is a grow-only set of strings,
//! replicated by flooding over TCP.
//!
//! This crate is the sans-IO core: [`FloodState`] takes [`Input`]s (a typed line, bytes from
//! a peer, a peer connected or gone, a dial's outcome, a timer) and yields [`Output`]s (print
//! this, send these bytes, dial that address, drop that peer). It has no sockets, no async, no clock and no randomness; the
//! drivers in `runtimes/` move bytes between it and the world.
//!
//! Two sub-machines sit behind the one door, each with its own small inputs and outputs: the
//! [`mesh`] decides which clients to be linked to (admission limits, an address book,
//! dialing, healing), and the room (over [`store`] and [`reconcile`]) keeps the set and
//! decides what each link must be sent. [`FloodState`] routes between them and owns the
//! connections: their bytes, their deadlines, their ends. The wire format is in [`wire`] and
//! `PROTOCOL.md`.
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
//! use floodchat::{ClientId, Config, FloodState, Input, Output, PeerId};
//!
//! # fn wait_for_event(_: Option<Instant>) -> Option<(PeerId, Vec<u8>)> { None }
//! # fn dial(_: std::net::SocketAddr) {}
//! # fn write(_: PeerId, _: &[u8]) {}
//! # fn close(_: PeerId) {}
//! let config = Config {
//!     client: ClientId(0x5eed), // random per run, from the OS
//!     seed: 42,                 // likewise
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

#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod herald;
pub mod mesh;
mod peer;
pub mod reconcile;
mod rng;
mod room;
#[cfg(feature = "sim")]
pub mod sim;
mod state;
pub mod store;
mod timers;
pub mod wire;

pub use herald::LinkNotice;
pub use peer::{DisconnectReason, PeerId};
pub use reconcile::{Progress, ReconcileError, Reconciler};
pub use room::Stats;
pub use state::{Config, FloodState, Input, InputError, Notice, Output};
pub use store::{Fingerprint, Id, IdRange, Store};
pub use wire::{ClientId, DecodeError, FrameDecoder, MAX_MESSAGE_LEN};
