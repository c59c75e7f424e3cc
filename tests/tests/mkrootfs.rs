//! berth-mkrootfs: the busybox root filesystem every stage runs in.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use assert_cmd::prelude::*;
use predicates::prelude::*;

use berth_tests::bin;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::symlink_metadata(path)
        .expect("stat")
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn makes_a_busybox_rootfs() {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    Command::new(bin("berth-mkrootfs"))
        .arg(&rootfs)
        .assert()
        .success()
        .stdout(predicate::str::contains("rootfs ready in"));

    assert_eq!(mode(&rootfs.join("bin/busybox")), 0o755);
    assert_eq!(
        std::fs::read_link(rootfs.join("bin/sh")).unwrap(),
        std::path::Path::new("/bin/busybox")
    );
    assert!(std::fs::symlink_metadata(rootfs.join("usr/bin/env")).is_ok());
    assert_eq!(mode(&rootfs.join("tmp")), 0o1777);
    for dir in ["proc", "sys", "dev", "root"] {
        assert!(rootfs.join(dir).is_dir(), "/{dir} missing");
        assert_eq!(std::fs::read_dir(rootfs.join(dir)).unwrap().count(), 0);
    }
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.starts_with("root:x:0:0:"));
    let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap();
    assert!(group.starts_with("root:x:0:"));
    assert_eq!(mode(&rootfs.join("bin/chroot-escape")), 0o755);
    // Nothing but the rootfs is left next to it (no staging directory).
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn fills_an_existing_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    Command::new(bin("berth-mkrootfs"))
        .arg(dir.path())
        .assert()
        .success();
    assert!(dir.path().join("bin/busybox").exists());
}

#[test]
fn refuses_a_non_empty_directory_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious"), "data").unwrap();
    Command::new(bin("berth-mkrootfs"))
        .arg(dir.path())
        .assert()
        .failure()
        .stderr(predicate::str::contains("is not empty"));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_missing_busybox_says_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    Command::new(bin("berth-mkrootfs"))
        .arg(dir.path().join("rootfs"))
        .args(["--busybox", "/nonexistent/busybox"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("apt-get install busybox-static"));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
