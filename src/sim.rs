//! A deterministic in-memory network of many `FloodState`s (to be written).
