#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

/// Where scripts/fuzz said to load (it removes the directory after).
static SCRATCH: LazyLock<PathBuf> = LazyLock::new(|| {
    PathBuf::from(std::env::var_os("BERTH_FUZZ_SCRATCH").expect("set BERTH_FUZZ_SCRATCH"))
});

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| berth::fuzzing::archive_load(bytes, &SCRATCH));
