//! Shared pieces of Berth's tests: the root check, stage binaries, fixtures.
//!
//! Tests that need root call [`root_or_skip`] first. It fails the test when
//! not root, unless `BERTH_SKIP_ROOT_TESTS=1` is set explicitly: a test that
//! silently skips would look green while checking nothing. CI never sets it.

pub mod engines;
pub mod fixture;
pub mod images;
pub mod lab;
pub mod probe;
pub mod probes;
pub mod process;
pub mod tmux;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

pub use fixture::Fixture;
pub use process::Running;

/// The opt-out variable for root-only tests (never set in CI).
pub const SKIP_ROOT_VAR: &str = "BERTH_SKIP_ROOT_TESTS";

/// Returns true when a root-only test should run; false (with a note) when
/// the user opted out; panics when it cannot run and nobody opted out.
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var(SKIP_ROOT_VAR).is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED {test}: not root and {SKIP_ROOT_VAR}=1");
        return false;
    }
    panic!(
        "{test} needs root (namespaces, chroot, mounts). Run the tests as root, \
         or set {SKIP_ROOT_VAR}=1 to skip the root-only tests explicitly."
    );
}

/// The directory cargo put the workspace's binaries in (`target/debug`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the running test binary");
    // target/debug/deps/<test>-<hash> -> target/debug
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    dir.to_path_buf()
}

/// Path of one of the workspace's binaries, e.g. `stage01-chroot`.
///
/// `BERTH_BIN_<NAME>` (the name in capitals, `-` as `_`, e.g.
/// `BERTH_BIN_STAGE01_CHROOT`) points the tests at another build of that
/// binary instead: `scripts/check` runs a stage's tests against a learner's
/// copy of the stage that way.
pub fn bin(name: &str) -> PathBuf {
    let var = format!("BERTH_BIN_{}", name.replace('-', "_").to_uppercase());
    if let Some(path) = std::env::var_os(&var) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{var}={} is not a file: point it at a built {name}, or unset it to test the \
             workspace's own",
            path.display()
        );
        return path;
    }
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --workspace), or run scripts/test",
        path.display()
    );
    path
}

/// `GET /` from `127.0.0.1:port`: the whole reply, or `None` if nothing
/// answered (within 2 s).
pub fn http_get(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    Some(reply)
}

/// Run the test `test` of the calling test binary again, in a cgroup v2
/// VM (`scripts/v2-vm`, booted with `cgroup_no_v1=all`), with `env` set
/// there. Whether it passed there, and what the VM printed.
pub fn run_test_in_v2_vm(test: &str, env: &[(&str, String)]) -> (bool, String) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/v2-vm");
    // The VM's own time limit: a kernel that hangs must not hang the tests.
    let output = std::process::Command::new("timeout")
        .args(["--kill-after=10", "600"])
        .arg(&script)
        .arg("env")
        .args(env.iter().map(|(key, value)| format!("{key}={value}")))
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture"])
        // Fail, rather than install, when qemu or a kernel is missing: what
        // the tests need, scripts/test installs.
        .env("BERTH_V2VM_NO_INSTALL", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let passed = output.status.success() && printed.contains("test result: ok. 1 passed");
    (passed, printed)
}
