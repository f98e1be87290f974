//! The fuzz crate (`fuzz/`) has its own lock file, and CI builds it with
//! `--locked`: a dependency added to smolchat but not to `fuzz/Cargo.lock`
//! fails CI's fuzz step long after the tests passed. This checks it at
//! once. (Refresh it with `cp Cargo.lock fuzz/ && cd fuzz && cargo
//! metadata --format-version 1 > /dev/null`.)

use std::collections::BTreeSet;

/// The package names a lock file lists.
fn locked(lock: &str) -> BTreeSet<String> {
    lock.lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .map(str::to_string)
        .collect()
}

/// The names in the `[dependencies]` table of a manifest.
fn dependencies(manifest: &str) -> Vec<String> {
    manifest
        .lines()
        .skip_while(|l| l.trim() != "[dependencies]")
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(name, _)| name.trim())
        .filter(|name| !name.is_empty() && !name.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_fuzz_lock_file_has_every_dependency_of_smolchat() {
    let root = env!("CARGO_MANIFEST_DIR");
    let manifest = std::fs::read_to_string(format!("{root}/Cargo.toml")).unwrap();
    let fuzz_lock = std::fs::read_to_string(format!("{root}/fuzz/Cargo.lock")).unwrap();
    let have = locked(&fuzz_lock);
    let deps = dependencies(&manifest);
    assert!(deps.len() > 10, "read the dependencies: {deps:?}");
    let missing: Vec<_> = deps.iter().filter(|d| !have.contains(*d)).collect();
    assert!(
        missing.is_empty(),
        "fuzz/Cargo.lock lacks {missing:?}: refresh it (cp Cargo.lock fuzz/ && cd fuzz && cargo metadata --format-version 1 > /dev/null)"
    );
}
