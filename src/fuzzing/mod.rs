//! Entry points for the cargo-fuzz targets in `fuzz/`, also replayed over the committed
//! corpus by `tests/fuzz_corpus.rs`, so every past crash stays a regression test.

pub mod decode;
pub mod mesh;
pub mod network;
pub mod reconcile;
pub mod reference;
pub mod secure;
pub mod state;

/// Checks that the committed seed `fuzz/corpus/<target>/<name>` holds exactly `bytes`, or
/// writes it when `FLOODCHAT_WRITE_SEEDS` is set.
#[cfg(test)]
fn check_seed(target: &str, name: &str, bytes: &[u8]) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let path = dir.join(name);
    if std::env::var_os("FLOODCHAT_WRITE_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&path, bytes).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(committed == bytes, "{} is stale", path.display());
}
