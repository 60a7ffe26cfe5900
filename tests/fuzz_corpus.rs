//! Replays every fuzz corpus and regression input on stable, through the same function the
//! fuzz target calls (`tether::fuzz_harness`), so a crash once found and fixed stays fixed in
//! CI without nightly or cargo-fuzz. Inputs: `fuzz/corpus/<target>/*` and
//! `fuzz/regressions/<target>/*` (crashes found, kept under the target that found them).

use std::path::{Path, PathBuf};

use tether::fuzz_harness::TARGETS;

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for dir in [root.join("corpus").join(target), root.join("regressions").join(target)] {
        for file in inputs(&dir) {
            let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            // A panic names the file, so the failing input is one `cargo fuzz run <t> FILE` away.
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target}: {} panicked", file.display());
            count += 1;
        }
    }
    count
}

#[test]
fn every_target_has_a_corpus_and_replays_it_without_panicking() {
    for (target, run) in TARGETS {
        let n = replay(target, *run);
        assert!(n > 0, "fuzz/corpus/{target} is empty");
        println!("{target}: {n} inputs");
    }
}

#[test]
fn every_fuzz_target_file_is_listed() {
    // A target added under fuzz/fuzz_targets without a TARGETS entry would never be replayed.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
    for file in inputs(&dir) {
        let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        assert!(TARGETS.iter().any(|(t, _)| *t == name), "{name} is not in fuzz_harness::TARGETS");
    }
}
