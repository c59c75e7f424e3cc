//! Stage 03 on the real kernel: memory, CPU and process limits.
//!
//! CI runs on a v1/hybrid host, so the stage binary is tested on the v1
//! backend; the v2 backend runs for real on a cgroup2 mount of our own, with
//! whatever controllers this kernel leaves free there.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use assert_cmd::prelude::*;
use berth_tests::{Fixture, Running, bin, root_or_skip};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use predicates::prelude::*;
use stage03_cgroups::layout::{parse_proc_cgroup, parse_v1_mounts, v1_own_dir};
use stage03_cgroups::v2::V2Cgroup;
use stage03_cgroups::{Cgroup, Limits};

/// Tests that measure CPU time or load the machine run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn stage03(fixture: &Fixture, options: &[&str]) -> Command {
    let mut command = Command::new(bin("stage03-cgroups"));
    command.args(options).arg(fixture.rootfs());
    command
}

/// "cpu time 1.503 s" etc. from the `--stats` line.
fn stat(output: &Output, name: &str) -> f64 {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains(" measured: "))
        .expect("a --stats line");
    let after = line.split(&format!("{name} ")).nth(1).expect(name);
    after.split([' ', ',']).next().unwrap().parse().unwrap()
}

fn cgroup_name(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let at = stderr
        .find("cgroup berth-")
        .expect("the cgroup's name in --stats")
        + 7;
    stderr[at..].split(' ').next().unwrap().to_string()
}

fn berth_cgroups_named(name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::from("/sys/fs/cgroup")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                if entry.file_name() == name {
                    found.push(entry.path());
                }
                stack.push(entry.path());
            }
        }
    }
    found
}

#[test]
fn over_its_memory_limit_the_container_is_oom_killed() {
    if !root_or_skip("over_its_memory_limit_the_container_is_oom_killed") {
        return;
    }
    let _serial = SERIAL.lock().unwrap();
    let fx = Fixture::new();
    // dd allocates a 100 MiB buffer and fills it from /dev/zero.
    let dd = ["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"];
    let killed = stage03(&fx, &["--memory", "32m", "--stats"])
        .args(dd)
        .assert()
        .code(137)
        .stderr(predicate::str::contains(
            "stage03-cgroups: killed: out of memory (limit 32 MiB)",
        ))
        .stderr(predicate::str::contains("oom kills 1"));
    assert!(berth_cgroups_named(&cgroup_name(killed.get_output())).is_empty());
    // The victim is not the command: say so, and keep the command's status.
    stage03(&fx, &["--memory", "32m"])
        .args([
            "/bin/sh",
            "-c",
            "dd if=/dev/zero of=/dev/null bs=100M count=1; echo carrying on",
        ])
        .assert()
        .success()
        .stdout("carrying on\n")
        .stderr(predicate::str::contains(
            "a process in the container was killed: out of memory (limit 32 MiB)",
        ));
    stage03(&fx, &["--memory", "256m"])
        .args(dd)
        .assert()
        .success()
        .stderr(predicate::str::contains("out of memory").not());
}

#[test]
fn a_fork_bomb_is_contained_by_the_pids_limit() {
    if !root_or_skip("a_fork_bomb_is_contained_by_the_pids_limit") {
        return;
    }
    let _serial = SERIAL.lock().unwrap();
    let fx = Fixture::new();
    let bomb = "f() { f | f & }; f; sleep 2; echo survived";
    let child = stage03(&fx, &["--pids-limit", "20", "--stats"])
        .args(["/bin/sh", "-c", bomb])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map(Running::new)
        .unwrap();

    // The host stays responsive while the bomb goes off.
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    Command::new("/bin/true").assert().success();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the host is not responsive"
    );

    let output = child.wait_at_most(Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("can't fork"),
        "no fork failed inside:\n{stderr}"
    );
    assert!(
        stat(&output, "forks refused") > 0.0,
        "the pids counters saw no refusal:\n{stderr}"
    );
    // Everything exited: nothing is left in (or of) its cgroup.
    assert!(berth_cgroups_named(&cgroup_name(&output)).is_empty());
}

#[test]
fn half_a_cpu_gets_half_the_cpu_time() {
    if !root_or_skip("half_a_cpu_gets_half_the_cpu_time") {
        return;
    }
    let _serial = SERIAL.lock().unwrap();
    let fx = Fixture::new();
    let busy = ["/bin/sh", "-c", "timeout 3 yes > /dev/null"];
    let limited = stage03(&fx, &["--cpus", "0.5", "--stats"])
        .args(busy)
        .output()
        .unwrap();
    let free = stage03(&fx, &["--stats"]).args(busy).output().unwrap();
    let (limited, free) = (stat(&limited, "cpu time"), stat(&free, "cpu time"));
    assert!(
        (1.0..=2.0).contains(&limited),
        "--cpus 0.5 used {limited} s of CPU in 3 s"
    );
    assert!(
        free >= 2.5,
        "without a limit the busy loop used only {free} s in 3 s"
    );
}

/// The container's init: the one child of the stage binary.
fn init_of(stage_binary: &Child) -> Pid {
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", stage_binary.id())).unwrap();
    Pid::from_raw(
        children
            .split_whitespace()
            .next()
            .expect("init")
            .parse()
            .unwrap(),
    )
}

#[test]
fn its_cgroups_exist_while_it_runs_and_are_gone_after() {
    if !root_or_skip("its_cgroups_exist_while_it_runs_and_are_gone_after") {
        return;
    }
    let fx = Fixture::new();
    let mut child = stage03(
        &fx,
        &["--memory", "64m", "--cpus", "1", "--pids-limit", "50"],
    )
    .args([
        "/bin/sh",
        "-c",
        "cat /proc/self/cgroup; echo ready; exec sleep 30",
    ])
    .stdout(Stdio::piped())
    .spawn()
    .map(Running::new)
    .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut inside = String::new();
    while !inside.ends_with("ready\n") {
        assert!(
            reader.read_line(&mut inside).unwrap() > 0,
            "no ready line: {inside}"
        );
    }
    // Inside, its cgroup namespace shows the container at the root...
    for line in inside.lines().filter(|l| l.contains(':')) {
        assert!(
            line.ends_with(":/"),
            "inside, not at its cgroup root: {line}"
        );
    }
    // ...while the host sees it in a berth- cgroup in every hierarchy.
    let host_view = std::fs::read_to_string(format!("/proc/{}/cgroup", init_of(&child))).unwrap();
    let memberships = parse_proc_cgroup(&host_view);
    let mounts = parse_v1_mounts(&std::fs::read_to_string("/proc/self/mountinfo").unwrap());
    let dirs: Vec<PathBuf> = ["memory", "cpu", "cpuacct", "pids"]
        .iter()
        .map(|c| v1_own_dir(c, &memberships, &mounts).expect(c))
        .collect();
    for dir in &dirs {
        assert!(
            dir.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("berth-"),
            "{dir:?}"
        );
        assert!(dir.is_dir(), "{dir:?} missing while the container runs");
    }
    let memory_limit = std::fs::read_to_string(dirs[0].join("memory.limit_in_bytes")).unwrap();
    assert_eq!(memory_limit.trim(), (64u64 << 20).to_string());

    // Ctrl-C: SIGINT is passed on, the command dies of it, cleanup runs.
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    for dir in &dirs {
        assert!(!dir.exists(), "{dir:?} left behind");
    }
}

#[test]
fn a_failed_start_leaves_no_cgroup() {
    if !root_or_skip("a_failed_start_leaves_no_cgroup") {
        return;
    }
    let fx = Fixture::new();
    let failed = stage03(&fx, &["--memory", "64m", "--stats"])
        .arg("/bin/no-such-program")
        .assert()
        .code(127);
    assert!(berth_cgroups_named(&cgroup_name(failed.get_output())).is_empty());
}

#[test]
fn invalid_limits_are_refused_before_anything_is_made() {
    if !root_or_skip("invalid_limits_are_refused_before_anything_is_made") {
        return;
    }
    let fx = Fixture::new();
    for (option, value, message) in [
        ("--memory", "12x", "unknown unit"),
        ("--memory", "1k", "minimum memory limit"),
        ("--cpus", "0", "range of CPUs"),
        ("--cpus", "half", "not a number of CPUs"),
        ("--pids-limit", "0", "not a process count"),
    ] {
        stage03(&fx, &[option, value])
            .arg("true")
            .assert()
            .code(2)
            .stderr(predicate::str::contains(message));
    }
}

/// A cgroup2 file system mounted in a temp dir, unmounted on drop.
struct Cgroup2Mount(tempfile::TempDir);

impl Cgroup2Mount {
    fn new() -> Cgroup2Mount {
        let dir = tempfile::Builder::new()
            .prefix("berth-cgroup2-")
            .tempdir()
            .unwrap();
        nix::mount::mount(
            Some("berth-test-cgroup2"),
            dir.path(),
            Some("cgroup2"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .expect("mount a cgroup2 file system");
        Cgroup2Mount(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Cgroup2Mount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.0.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn the_v2_backend_runs_on_a_real_cgroup2() {
    if !root_or_skip("the_v2_backend_runs_on_a_real_cgroup2") {
        return;
    }
    let mount = Cgroup2Mount::new();
    let available = std::fs::read_to_string(mount.path().join("cgroup.controllers")).unwrap();
    let missing: Vec<&str> = ["memory", "cpu", "pids"]
        .into_iter()
        .filter(|c| !available.split_whitespace().any(|a| a == *c))
        .collect();
    let name = format!("berth-v2-test-{}", std::process::id());
    let limits = if missing.is_empty() {
        Limits {
            memory: Some(32 << 20),
            pids: Some(20),
            ..Limits::default()
        }
    } else {
        eprintln!(
            "cgroup2 here offers only [{}]; unavailable: {} (bound to v1 hierarchies). \
             Limits are checked by the unit tests; testing creation, membership and removal.",
            available.trim(),
            missing.join(" ")
        );
        let err = V2Cgroup::create(
            mount.path(),
            &name,
            &Limits {
                pids: Some(20),
                ..Limits::default()
            },
        )
        .err()
        .expect("a pids limit without the pids controller must fail");
        assert!(
            err.to_string().contains("\"pids\" is not available"),
            "{err}"
        );
        Limits::default()
    };

    let mut cgroup = V2Cgroup::create(mount.path(), &name, &limits).unwrap();
    let dir = mount.path().join(&name);
    assert!(
        dir.join("cgroup.procs").exists(),
        "the kernel made no cgroup at {dir:?}"
    );
    if limits.memory.is_some() {
        assert_eq!(
            std::fs::read_to_string(dir.join("memory.max"))
                .unwrap()
                .trim(),
            "33554432"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("pids.max"))
                .unwrap()
                .trim(),
            "20"
        );
    }
    let mut sleeper = Running::new(Command::new("sleep").arg("30").spawn().unwrap());
    cgroup
        .add_process(Pid::from_raw(sleeper.id() as i32))
        .unwrap();
    let membership = std::fs::read_to_string(format!("/proc/{}/cgroup", sleeper.id())).unwrap();
    assert!(
        membership.contains(&format!("0::/{name}\n")),
        "{membership}"
    );
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    cgroup.remove().unwrap();
    assert!(!dir.exists());
}
