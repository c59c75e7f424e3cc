//! What berth reads from strangers, one function per kind, for the fuzz
//! targets in `fuzz/` (`scripts/fuzz`) and for the tests that replay the
//! inputs they once crashed on (`tests/tests/fuzz_regressions.rs`).
//!
//! Each takes bytes as berth meets them: a Dockerfile, an image reference,
//! a registry's JSON, a layer's tar, a bundle's config.json. Any input may
//! be refused with an error; none may make berth panic, hang, or write
//! outside where it was told. Where a property holds for every input (a
//! reference prints as something that parses back to itself; a layer
//! writes only inside its directory), the function checks it and panics
//! when it does not, so that the fuzzer reports it as a crash.

use std::path::{Path, PathBuf};

use stage04_images::bounds::LayerBudget;
use stage04_images::image::{self, Overrides};
use stage04_images::reference::Reference;
use stage04_images::spec::{self, ImageConfig, Index, Manifest};

/// A Dockerfile, as `berth build` parses it; and the same bytes as a
/// `.dockerignore` (a context may come from anywhere), asked about a few
/// paths, and about each of its own lines as a path.
pub fn dockerfile(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let _ = crate::dockerfile::parse("Dockerfile", text);
    if let Ok(ignore) = crate::dockerignore::Ignore::parse(text) {
        for path in ["Dockerfile", "a/b/c.txt", ".git/HEAD", "secret/key"] {
            let _ = ignore.excluded(path);
        }
        for line in text.lines().take(16) {
            let _ = ignore.excluded(&crate::dockerignore::clean(line));
        }
    }
}

/// An image reference (`pull`, `run`, `FROM`): one that parses prints as a
/// reference that parses to the same.
pub fn reference(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Ok(reference) = text.parse::<Reference>() {
        let printed = reference.to_string();
        let again: Reference = (printed.parse())
            .unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}, which fails: {e}"));
        assert_eq!(again.to_string(), printed, "from {text:?}");
    }
}

/// A registry's JSON: a manifest, an index (and the platform picked from
/// it), an image config (and the process it says to run).
pub fn image_json(bytes: &[u8]) {
    let _ = serde_json::from_slice::<Manifest>(bytes);
    if let Ok(index) = serde_json::from_slice::<Index>(bytes) {
        let _ = index.pick(&spec::host_platform());
    }
    if let Ok(config) = serde_json::from_slice::<ImageConfig>(bytes) {
        let _ = image::process(&config, &Overrides::default());
    }
}

/// A layer's tar, unpacked into an empty directory under `scratch` (which
/// must exist and be empty): everything it writes stays in there.
pub fn layer_tar(bytes: &[u8], scratch: &Path) {
    let dest = scratch.join("layer");
    let beside = scratch.join("beside");
    for dir in [&dest, &beside] {
        std::fs::create_dir(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    }
    let budget = LayerBudget::new(64 << 20);
    let _ = stage04_images::unpack::unpack_layer(bytes, &dest, &budget);
    let names = |dir: &Path| -> Vec<PathBuf> {
        let entries = std::fs::read_dir(dir).expect("read the scratch directory");
        entries.flatten().map(|e| e.path()).collect()
    };
    let mut outside = names(scratch);
    outside.sort();
    assert_eq!(
        outside,
        [beside.clone(), dest.clone()],
        "a file outside the layer"
    );
    assert!(names(&beside).is_empty(), "a file written beside the layer");
    for dir in [&dest, &beside] {
        std::fs::remove_dir_all(dir).unwrap_or_else(|e| panic!("remove {}: {e}", dir.display()));
    }
}

/// A bundle's config.json, as `berth-runtime create` takes it, in a
/// bundle `bundle` that holds an empty `rootfs`.
pub fn runtime_config(bytes: &[u8], bundle: &Path) {
    let _ = crate::runtime::check_config(bytes, bundle);
}
