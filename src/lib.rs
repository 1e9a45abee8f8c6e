//! floodchat: a peer-to-peer chat room whose state is a grow-only set of strings,
//! replicated by flooding over TCP.
//!
//! This crate is the sans-IO core: [`FloodState`] takes [`Input`]s (a typed line, bytes from
//! a peer, a peer connected or gone, a timer) and yields [`Output`]s (print this, send these
//! bytes, drop that peer). It has no sockets, no async, no clock and no randomness; the
//! drivers in `runtimes/` move bytes between it and the world.
//!
//! Iteration over hash maps never decides the order of outputs, so the same inputs always
//! give the same outputs.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod mesh;
pub mod sim;
mod state;
mod timers;
pub mod wire;

pub use state::{Config, DisconnectReason, FloodState, Input, InputError, Output, PeerId, Stats};
pub use wire::{DecodeError, FrameDecoder, MAX_MESSAGE_LEN};
