//! Fuzz entry point: state (to be written).
