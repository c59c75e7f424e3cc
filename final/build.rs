//! Build `tiny/berth-tiny.rs`, the program each detached container's
//! monitor and init become once the container runs (see that file), and
//! embed it in berth (`src/tiny.rs`). It uses neither the standard library
//! nor a C library, so it is built by `rustc` alone: statically, without
//! start files, aborting on panic.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "tiny/berth-tiny.rs";
    println!("cargo::rerun-if-changed={source}");
    println!("cargo::rerun-if-changed=src/calendar.rs"); // included by it

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = env::var("TARGET").expect("cargo sets TARGET");

    let status = Command::new(&rustc)
        .args([
            "--edition",
            "2024",
            "--crate-type",
            "bin",
            "--target",
            &target,
        ])
        .args([
            "-C",
            "opt-level=s",
            "-C",
            "panic=abort",
            "-C",
            "strip=symbols",
        ])
        .args(["-C", "relocation-model=static", "-D", "warnings"])
        .args(["-C", "link-arg=-nostartfiles", "-C", "link-arg=-nostdlib"])
        .args(["-C", "link-arg=-static"])
        .arg("-o")
        .arg(out.join("berth-tiny"))
        .arg(source)
        .status()
        .expect("run rustc for tiny/berth-tiny.rs");
    assert!(status.success(), "building tiny/berth-tiny.rs failed");
}
