//! Runs every committed corpus file (`corpus/<target>/`) and every crash regression
//! (`regressions/<target>/`) through its target, without any fuzzer: part of `cargo test`.

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.starts_with('.') && !name.ends_with(".md") && !name.ends_with(".log")
        })
        .collect();
    out.sort();
    out
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn corpus_and_regressions_replay() {
    let mut failures = Vec::new();
    let mut count = 0;
    for (name, target) in alp_fuzz::TARGETS {
        let corpus = files(&root().join("corpus").join(name));
        assert!(!corpus.is_empty(), "corpus/{name}/ has no seed");
        let regressions = files(&root().join("regressions").join(name));
        for file in corpus.iter().chain(&regressions) {
            let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            count += 1;
            if let Err(panic) = std::panic::catch_unwind(|| target(&data)) {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let message = match message.char_indices().nth(600) {
                    Some((cut, _)) => format!("{}...", &message[..cut]),
                    None => message,
                };
                failures.push(format!("{}: {message}", file.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} inputs fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("replayed {count} inputs");
}

#[test]
fn run_sh_knows_every_target() {
    let script = std::fs::read_to_string(root().join("run.sh")).expect("run.sh");
    let all = script
        .lines()
        .find_map(|l| l.strip_prefix("all=("))
        .and_then(|l| l.strip_suffix(')'))
        .expect("run.sh has all=(...)");
    let names: Vec<&str> = alp_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(all.split(' ').collect::<Vec<_>>(), names);
}

#[test]
fn every_target_has_a_libfuzzer_binary() {
    for (name, _) in alp_fuzz::TARGETS {
        let bin = root().join("libfuzzer/src/bin").join(format!("{name}.rs"));
        assert!(bin.is_file(), "{} is missing", bin.display());
        assert!(alp_fuzz::target(name).is_some());
    }
}
