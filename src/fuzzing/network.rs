//! Fuzz entry point: network (to be written).
