//! Stage 01 on the real kernel: what chroot does, and what it does not.

use std::io::Write;
use std::process::{Command, Stdio};

use assert_cmd::prelude::*;
use berth_tests::{Fixture, bin, root_or_skip};
use predicates::prelude::*;

fn stage01(fixture: &Fixture) -> Command {
    let mut command = Command::new(bin("stage01-chroot"));
    command.arg(fixture.rootfs());
    command
}

#[test]
fn ls_slash_lists_the_rootfs_not_the_host() {
    if !root_or_skip("ls_slash_lists_the_rootfs_not_the_host") {
        return;
    }
    let fx = Fixture::new();
    let output = stage01(&fx).args(["/bin/ls", "-a", "/"]).output().unwrap();
    assert!(output.status.success());
    let mut entries: Vec<_> = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    entries.sort();
    let mut expected: Vec<_> = std::fs::read_dir(fx.rootfs())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .chain([".".into(), "..".into()])
        .collect();
    expected.sort();
    assert_eq!(entries, expected);
    assert!(entries.contains(&"berth-rootfs-marker".to_string()));
}

#[test]
fn the_exit_status_is_the_commands() {
    if !root_or_skip("the_exit_status_is_the_commands") {
        return;
    }
    let fx = Fixture::new();
    stage01(&fx)
        .args(["/bin/sh", "-c", "exit 3"])
        .assert()
        .code(3);
    stage01(&fx).arg("true").assert().code(0);
}

#[test]
fn death_by_signal_n_exits_128_plus_n() {
    if !root_or_skip("death_by_signal_n_exits_128_plus_n") {
        return;
    }
    let fx = Fixture::new();
    stage01(&fx)
        .args(["/bin/sh", "-c", "kill -KILL $$"])
        .assert()
        .code(137);
    stage01(&fx)
        .args(["/bin/sh", "-c", "kill -TERM $$"])
        .assert()
        .code(143);
}

#[test]
fn stdin_stdout_and_stderr_pass_through() {
    if !root_or_skip("stdin_stdout_and_stderr_pass_through") {
        return;
    }
    let fx = Fixture::new();
    let mut child = stage01(&fx)
        .args(["/bin/sh", "-c", "tr a-z A-Z; echo to-stderr >&2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout), "HELLO\n");
    assert_eq!(String::from_utf8_lossy(&output.stderr), "to-stderr\n");
}

#[test]
fn the_command_is_found_in_the_containers_path_with_a_clean_environment() {
    if !root_or_skip("the_command_is_found_in_the_containers_path") {
        return;
    }
    let fx = Fixture::new();
    stage01(&fx)
        .arg("env")
        .env("BERTH_SECRET", "host-only")
        .assert()
        .success()
        .stdout(predicate::str::contains("PATH=/usr/local/sbin:"))
        .stdout(predicate::str::contains("BERTH_SECRET").not());
}

#[test]
fn a_missing_command_exits_127_and_names_it() {
    if !root_or_skip("a_missing_command_exits_127_and_names_it") {
        return;
    }
    let fx = Fixture::new();
    stage01(&fx)
        .arg("/bin/no-such-program")
        .assert()
        .code(127)
        .stderr(predicate::str::contains(
            "/bin/no-such-program: command not found in rootfs",
        ));
    // A host program is not found either: the lookup happens inside.
    stage01(&fx).arg("/usr/bin/cargo").assert().code(127);
}

#[test]
fn a_non_executable_command_exits_126() {
    if !root_or_skip("a_non_executable_command_exits_126") {
        return;
    }
    let fx = Fixture::new();
    stage01(&fx)
        .arg("/etc/passwd")
        .assert()
        .code(126)
        .stderr(predicate::str::contains("/etc/passwd: permission denied"));
}

#[test]
fn a_missing_rootfs_is_a_clear_error() {
    if !root_or_skip("a_missing_rootfs_is_a_clear_error") {
        return;
    }
    let fx = Fixture::new();
    let missing = fx.dir().join("no-rootfs-here");
    Command::new(bin("stage01-chroot"))
        .arg(&missing)
        .arg("/bin/ls")
        .assert()
        .code(125)
        .stderr(predicate::str::contains(
            "does not exist; make one with: berth-mkrootfs",
        ));
    Command::new(bin("stage01-chroot"))
        .arg(fx.host_marker())
        .arg("/bin/ls")
        .assert()
        .code(125)
        .stderr(predicate::str::contains("is not a directory"));
}

#[test]
fn not_root_says_so_and_how_to_run_it() {
    if !root_or_skip("not_root_says_so_and_how_to_run_it") {
        return;
    }
    let fx = Fixture::new();
    let mut command = stage01(&fx);
    std::os::unix::process::CommandExt::uid(&mut command, 65534);
    command
        .arg("/bin/ls")
        .assert()
        .code(125)
        .stderr(predicate::str::contains("must run as root").and(predicate::str::contains("sudo")));
}

#[test]
fn no_command_is_a_usage_error() {
    // Argument checks come before any privileged step: no root needed.
    Command::new(bin("stage01-chroot"))
        .arg("/tmp")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "Usage: stage01-chroot <ROOTFS> <CMD>...",
        ));
}

#[test]
fn root_escapes_the_chroot_at_stage_01() {
    if !root_or_skip("root_escapes_the_chroot_at_stage_01") {
        return;
    }
    let fx = Fixture::new();
    let marker = fx.host_marker();
    // Inside the chroot the host-only file is out of sight...
    stage01(&fx)
        .args(["/bin/cat"])
        .arg(&marker)
        .assert()
        .code(1);
    // ...until chroot-escape walks out to the host's root.
    stage01(&fx)
        .args(["/bin/chroot-escape", "/bin/cat"])
        .arg(&marker)
        .assert()
        .success()
        .stdout("outside\n")
        .stderr(predicate::str::contains("climbed"));
}
