//! Build `escape/chroot-escape.rs` as a static executable.
//!
//! The escape demo has to run *inside* a busybox root filesystem, which has no
//! C library to load, so it must carry its own: we compile it with glibc linked
//! statically (`+crt-static`) and embed the result in the stage 01 library,
//! from where `berth-mkrootfs` installs it as `/bin/chroot-escape`.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "escape/chroot-escape.rs";
    println!("cargo::rerun-if-changed={source}");

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
        .args(["-C", "opt-level=2", "-C", "target-feature=+crt-static"])
        .args(["-C", "panic=abort", "-C", "strip=symbols", "-D", "warnings"])
        .arg("-o")
        .arg(out.join("chroot-escape"))
        .arg(source)
        .status()
        .expect("run rustc for escape/chroot-escape.rs");
    assert!(
        status.success(),
        "building the static chroot-escape failed; a static glibc (libc6-dev) is needed"
    );
}
