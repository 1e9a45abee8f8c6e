//! Entry points for the cargo-fuzz targets in `fuzz/`, also replayed over the committed
//! corpus by `tests/fuzz_corpus.rs`, so every past crash stays a regression test.

pub mod decode;
pub mod mesh;
pub mod network;
pub mod reconcile;
pub mod reference;
pub mod state;
