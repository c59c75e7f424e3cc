#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

/// A bundle with an empty rootfs, in the directory scripts/fuzz made.
static BUNDLE: LazyLock<PathBuf> = LazyLock::new(|| {
    let scratch = std::env::var_os("BERTH_FUZZ_SCRATCH").expect("set BERTH_FUZZ_SCRATCH");
    let bundle = PathBuf::from(scratch).join("bundle");
    std::fs::create_dir_all(bundle.join("rootfs")).expect("make the bundle");
    bundle
});

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| berth::fuzzing::runtime_config(bytes, &BUNDLE));
