//! Fuzz entry point: decode (to be written).
