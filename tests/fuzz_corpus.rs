//! Replays every seed and crash reproducer under `fuzz/corpus/<target>/`
//! through the same library function the fuzz target calls
//! ([`rollbot::fuzzing`]), so inputs that once crashed stay fixed without
//! `cargo fuzz`. A target without a corpus, or a corpus directory without
//! a target, fails: both mean the fuzzing set-up drifted.

use std::collections::BTreeSet;
use std::path::Path;

use rollbot::fuzzing::TARGETS;

const FUZZ: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz");

fn names_in(dir: &Path, strip: Option<&str>) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| match strip {
            Some(ext) => n.strip_suffix(ext).map(str::to_owned),
            None => Some(n),
        })
        .collect()
}

#[test]
fn every_target_has_a_fuzz_binary_and_a_corpus() {
    let targets: BTreeSet<String> = TARGETS.iter().map(|(n, _)| (*n).to_string()).collect();
    let fuzz = Path::new(FUZZ);
    assert_eq!(
        names_in(&fuzz.join("fuzz_targets"), Some(".rs")),
        targets,
        "fuzz/fuzz_targets/*.rs and rollbot::fuzzing::TARGETS differ"
    );
    assert_eq!(
        names_in(&fuzz.join("corpus"), None),
        targets,
        "fuzz/corpus/* and rollbot::fuzzing::TARGETS differ"
    );
    let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).unwrap();
    for t in &targets {
        assert!(
            manifest.contains(&format!("path = \"fuzz_targets/{t}.rs\"")),
            "fuzz/Cargo.toml has no [[bin]] for {t}"
        );
    }
}

#[test]
fn every_corpus_file_runs_through_its_target() {
    let mut replayed = 0;
    for (name, target) in TARGETS {
        let dir = Path::new(FUZZ).join("corpus").join(name);
        let files = names_in(&dir, None);
        assert!(
            !files.is_empty(),
            "{} is empty: seed it with real payloads",
            dir.display()
        );
        for file in files {
            let path = dir.join(&file);
            let data = std::fs::read(&path).unwrap();
            // A panic here names the target and file in the message.
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name}: {} panicked", path.display());
            replayed += 1;
        }
    }
    assert!(replayed >= TARGETS.len());
}
