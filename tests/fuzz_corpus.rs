//! The fuzz targets' saved corpus (fuzz/corpus/<target>/), replayed on stable Rust: every
//! file goes through the same entry function as its cargo-fuzz target (fuzz/fuzz_targets/),
//! so what fuzzing found and fixed stays fixed without a nightly toolchain or libFuzzer in CI.
//! Fuzzing itself is opt-in: scripts/fuzz.sh.

use std::path::PathBuf;

/// A fuzz target's entry function.
type Entry = fn(&[u8]);

/// Every target and its entry function, as in fuzz/fuzz_targets/.
const TARGETS: &[(&str, Entry)] = &[
    ("http_request", nukleus_http::fuzzing::request),
    ("http_chunked", nukleus_http::fuzzing::chunked),
    ("ws_session", nukleus_ws::fuzzing::session),
    ("switch_request", nukleus_switch::fuzzing::request),
    ("topology", reaktor::fuzzing::topology),
];

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn replay(target: &str) {
    let (_, entry) = TARGETS.iter().find(|(name, _)| *name == target).unwrap();
    let dir = fuzz_dir().join("corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    for file in files {
        let data = match std::fs::read(&file) {
            Ok(data) => data,
            // A fuzzer running in this tree replaces inputs by smaller ones as it goes.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("{}: {e}", file.display()),
        };
        let run = std::panic::catch_unwind(|| entry(&data));
        assert!(run.is_ok(), "{target}: {} fails", file.display());
    }
}

#[test]
fn every_target_has_a_test_here_and_a_fuzz_target() {
    let mut names: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    let mut ours: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    ours.sort();
    assert_eq!(names, ours);
}

#[test]
fn http_request_corpus() {
    replay("http_request");
}

#[test]
fn http_chunked_corpus() {
    replay("http_chunked");
}

#[test]
fn ws_session_corpus() {
    replay("ws_session");
}

#[test]
fn switch_request_corpus() {
    replay("switch_request");
}

#[test]
fn topology_corpus() {
    replay("topology");
}
