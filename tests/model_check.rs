//! Exhaustive model check: for 3 clients in a chain and 2 typed strings, every interleaving
//! of typing and connecting with every delivery is explored, breadth first over the sans-IO
//! states (see `floodchat::sim::model`); a state is keyed by each client's inputs, so the
//! mesh and the reconcilers are covered exactly. In every reachable quiescent state, each connected component
//! agrees on exactly what was typed in it and every client is flushed; on every transition,
//! nothing is printed twice or untyped and nothing is sent where it must not go.
//!
//! Bigger configurations: `cargo run --release --features sim --example model_check`.

use floodchat::sim::model::{ModelConfig, explore};

fn three_clients(lossy: bool) -> ModelConfig {
    ModelConfig {
        lossy,
        ..ModelConfig::three_clients_chain_short()
    }
}

#[test]
fn every_interleaving_of_three_clients_converges() {
    let stats = explore(&three_clients(false)).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{stats:?}");
    // The exact figures (12,511 states at the time of writing) depend on the core; what
    // matters is that the space was really explored, down to complete runs.
    assert!(stats.states > 10_000, "{stats:?}");
    assert!(stats.quiescent > 100 && stats.terminal > 50, "{stats:?}");
    assert!(stats.merged > 0 && stats.max_depth >= 15, "{stats:?}");
}

#[test]
fn the_model_checker_catches_a_network_that_loses_writes() {
    let err = explore(&three_clients(true)).expect_err("a lossy network must break convergence");
    assert!(
        err.contains("lacks") || err.contains("hold") || err.contains("not flushed"),
        "unexpected failure: {err}"
    );
    assert!(err.contains("path from the start:\n"), "{err}");
}

#[test]
fn a_client_restarted_on_its_data_directory_converges_in_every_interleaving() {
    let stats = explore(&ModelConfig::two_clients_restart()).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{stats:?}");
    // Runs where the restart comes before, during and after each delivery, down to runs
    // where the restarted client types and the link is made again.
    assert!(stats.states > 1_000, "{stats:?}");
    assert!(stats.terminal > 10 && stats.max_depth >= 15, "{stats:?}");
}
