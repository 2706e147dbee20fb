//! Entry point for the fuzz target in `fuzz/` (cargo-fuzz) and for the replay of its saved
//! corpus in the workspace's tests (`tests/fuzz_corpus.rs`): arbitrary text as a topology
//! file, through loading and placement (what `reaktor plan` and `reaktor run` do before
//! anything runs); a panic is a finding.

use std::path::Path;

use crate::error::TopologyError;
use crate::plan::Placement;

/// A topology's text: loading and placing it either succeed, and the placement describes
/// itself, or fail with an error that names the file and a line and column inside the text.
pub fn topology(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("fuzz.toml");
    let placed = crate::kinds::parse(path, &text).and_then(|mut loaded| {
        let plan = crate::place::place(&mut loaded)?;
        Ok((loaded, plan))
    });
    match placed {
        Ok((loaded, plan)) => {
            if let Some(plan) = plan {
                assert!(!plan.describe().is_empty());
            }
            let placement = Placement::from_topology(&loaded);
            assert!(!placement.describe(&loaded.topology).is_empty());
        }
        Err(TopologyError::Invalid {
            path: at,
            line,
            column,
            message,
        }) => {
            assert_eq!(at, path);
            assert!(!message.is_empty());
            let lines = text.split('\n').count();
            assert!(
                (1..=lines).contains(&line) && column >= 1,
                "{line}:{column} outside a text of {lines} lines: {message}"
            );
        }
        Err(e @ TopologyError::Read { .. }) => panic!("parsing text read a file: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_topologies_and_broken_ones_pass_every_check() {
        for example in [
            "default.toml",
            "tls.toml",
            "bench.toml",
            "bench-switch.toml",
        ] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../examples")
                .join(example);
            topology(&std::fs::read(path).unwrap());
        }
        topology(b"[[core]]\nnuklei = [\"tcp\"\n");
        topology(b"[reaktor]\nstream_capacity = 65536\n");
        topology(b"");
        topology(b"\xff\xfe");
    }
}
