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

/// Copy the host's `program` (a dynamically linked one, such as iputils'
/// `ping`) into `rootfs` at the same path, with the libraries `ldd` names.
/// File capabilities are not copied: the container's own decide.
pub fn add_host_program(rootfs: &Path, program: &str) {
    let ldd = Command::new("ldd").arg(program).output().unwrap();
    assert!(ldd.status.success(), "ldd {program}: is it installed?");
    let libraries = String::from_utf8_lossy(&ldd.stdout)
        .split_whitespace()
        .filter(|word| word.starts_with('/'))
        .map(String::from)
        .collect::<Vec<_>>();
    for file in libraries.iter().map(String::as_str).chain([program]) {
        let inside = rootfs.join(file.trim_start_matches('/'));
        std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
        std::fs::copy(file, &inside).unwrap();
    }
}
