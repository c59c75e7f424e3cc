//! The fuzz targets' seeds and every input that once made one crash,
//! replayed on stable through the same entry points (final/src/fuzzing.rs),
//! so a fixed crash stays fixed. scripts/fuzz runs the fuzzers themselves
//! (nightly, cargo-fuzz); here no fuzzer is needed.

use std::path::{Path, PathBuf};

const TARGETS: &[&str] = &[
    "dockerfile",
    "reference",
    "image_json",
    "layer_tar",
    "runtime_config",
    "archive_load",
    "auth_file",
];

/// fuzz/seeds/TARGET: inputs that are valid, to start the fuzzer from.
fn seeds_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target)
}

/// The files of fuzz/seeds/TARGET and fuzz/regressions/TARGET.
fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut files = Vec::new();
    for kind in ["seeds", "regressions"] {
        let dir = fuzz.join(kind).join(target);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        files.extend(
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.')),
        );
    }
    files.sort();
    files
}

#[test]
fn every_kept_input_is_handled_without_a_crash() {
    let scratch = tempfile::tempdir().unwrap();
    let bundle = scratch.path().join("bundle");
    std::fs::create_dir_all(bundle.join("rootfs")).unwrap();
    let layers = scratch.path().join("layers");
    std::fs::create_dir(&layers).unwrap();
    let archives = scratch.path().join("archives");
    std::fs::create_dir(&archives).unwrap();
    let mut replayed = 0;
    for target in TARGETS {
        let inputs = inputs(target);
        assert!(!inputs.is_empty(), "fuzz/seeds/{target} has no seeds");
        for input in inputs {
            let bytes = std::fs::read(&input).unwrap();
            println!("{target}: {}", input.display());
            match *target {
                "dockerfile" => berth::fuzzing::dockerfile(&bytes),
                "reference" => berth::fuzzing::reference(&bytes),
                "image_json" => berth::fuzzing::image_json(&bytes),
                "layer_tar" => berth::fuzzing::layer_tar(&bytes, &layers),
                "runtime_config" => berth::fuzzing::runtime_config(&bytes, &bundle),
                "archive_load" => berth::fuzzing::archive_load(&bytes, &archives),
                "auth_file" => berth::fuzzing::auth_file(&bytes),
                other => unreachable!("{other}"),
            }
            replayed += 1;
        }
    }
    println!("{replayed} inputs replayed");
}

#[test]
fn the_layer_check_catches_a_file_written_outside() {
    // The property layer_tar checks must be able to fail: a layer that
    // escapes. berth refuses these, so fake the escape by hand.
    let scratch = tempfile::tempdir().unwrap();
    std::fs::create_dir(scratch.path().join("stray")).unwrap();
    let caught = std::panic::catch_unwind(|| {
        berth::fuzzing::layer_tar(&[], scratch.path());
    });
    assert!(
        caught.is_err(),
        "a stray file beside the layer went unnoticed"
    );
}

#[test]
fn every_archive_seed_loads() {
    // The seeds are archives as berth, skopeo and docker save write them
    // (fuzz/seeds/archive_load): each must load, not merely not crash.
    let seeds = std::fs::read_dir(seeds_dir("archive_load")).unwrap();
    let seeds: Vec<PathBuf> = seeds.map(|e| e.unwrap().path()).collect();
    assert!(seeds.len() > 1, "no archives in fuzz/seeds/archive_load");
    for seed in seeds {
        let root = tempfile::tempdir().unwrap();
        let store = stage04_images::store::Store::open(&root.path().join("images")).unwrap();
        let loaded = stage04_images::load::load(&store, &seed, None);
        assert!(
            matches!(&loaded, Ok(names) if !names.is_empty()),
            "{}: {loaded:?}",
            seed.display()
        );
    }
}
