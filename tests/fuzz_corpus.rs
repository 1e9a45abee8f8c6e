//! Replays every committed fuzz input in `fuzz/corpus/<target>/` through the same entry points
//! the cargo-fuzz targets call, so the seeds and every past crash run on stable in `cargo test`.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Runs `run` on each file of `fuzz/corpus/<target>/`; fails if there is none or any panics.
fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("readable corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no corpus files", dir.display());
    let mut failed = Vec::new();
    let mut replayed = 0;
    for path in &files {
        let data = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if panic::catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
            failed.push(path.display().to_string());
        }
        replayed += 1;
    }
    eprintln!("{target}: replayed {replayed} corpus files");
    assert!(replayed > 0, "{target}: replayed nothing");
    assert!(
        failed.is_empty(),
        "{target}: these inputs fail: {failed:#?}"
    );
}

#[test]
fn decode_corpus() {
    replay("decode", floodchat::fuzzing::decode::run);
}

#[test]
fn state_corpus() {
    replay("state", floodchat::fuzzing::state::run);
}

#[test]
fn network_corpus() {
    replay("network", floodchat::fuzzing::network::run);
}

#[test]
fn reconcile_corpus() {
    replay("reconcile", floodchat::fuzzing::reconcile::run);
}

#[test]
fn mesh_corpus() {
    replay("mesh", floodchat::fuzzing::mesh::run);
}

#[test]
fn secure_corpus() {
    replay("secure", floodchat::fuzzing::secure::run);
}
