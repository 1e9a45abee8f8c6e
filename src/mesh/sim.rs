//! A mesh-only simulator.
