//! `berth-probe`, a small static program of attacks and checks (probe.c)
//! that tests put into images: it asks the kernel directly what busybox
//! can't (TIOCSTI, io_uring, raw sockets, ICMP sockets).

use std::path::Path;
use std::process::Command;

/// Compile probe.c, statically, to `dest`.
pub fn build_probe(dest: &Path) {
    let source = dest.with_extension("c");
    std::fs::write(&source, include_str!("probe.c")).unwrap();
    let out = Command::new("gcc")
        .args(["-static", "-Os", "-o"])
        .arg(dest)
        .arg(&source)
        .output()
        .expect("gcc (Debian's gcc and libc6-dev) builds the probe");
    assert!(
        out.status.success(),
        "gcc probe.c: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(source).unwrap();
}
