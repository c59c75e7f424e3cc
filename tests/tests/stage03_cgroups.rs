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

/// Tests that measure CPU time or load the machine run one at a time. A
/// test that fails while holding the lock poisons it; the others still run.
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
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
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
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
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
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
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

/// On v2 the stage binary's own cgroup holds a process (itself, and on a
/// real host its login shell too), so it can't hand `memory` to a child
/// cgroup: the container's cgroup goes beside it, in its parent. The stage
/// binary runs where /sys/fs/cgroup is a cgroup2 tree: mounted there in a
/// private mount namespace, so this runs on a v1/hybrid host as well.
#[test]
fn on_v2_the_container_cgroup_goes_beside_the_callers() {
    if !root_or_skip("on_v2_the_container_cgroup_goes_beside_the_callers") {
        return;
    }
    let fx = Fixture::new();
    let mount = Cgroup2Mount::new(); // the same tree, seen from here
    let caller = format!("berth-caller-{}", std::process::id());
    let mut host = HostCgroups::default();
    host.watch(
        &[mount.path().join(&caller).join("session")],
        &[mount.path().to_path_buf()],
    );
    // Where the tree's root hands `memory` down (a v2 host), a memory limit
    // shows the fix: below the caller's own cgroup it would fail with EBUSY.
    // A hybrid host's tree has no memory controller: then placement only.
    let root_hands_down = read_trimmed(mount.path().join("cgroup.subtree_control"));
    let memory = root_hands_down.split_whitespace().any(|c| c == "memory");
    let script = format!(
        r#"mount -t cgroup2 berth-test-cgroup2 /sys/fs/cgroup || exit 1
caller=/sys/fs/cgroup/{caller}
mkdir -p $caller/session && echo $$ > $caller/session/cgroup.procs || exit 1
{stage03} {limit} {rootfs} sleep 3 &
for i in 1 2 3 4 5 6 7 8 9 10; do init=$(pgrep -P $!) && break; sleep 0.2; done
grep ^0:: /proc/$init/cgroup
{show_limit}
wait $!"#,
        stage03 = bin("stage03-cgroups").display(),
        limit = if memory { "--memory 64m" } else { "" },
        rootfs = fx.rootfs().display(),
        show_limit = if memory {
            "cat $caller/berth-*/memory.max"
        } else {
            ""
        },
    );
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .args(["/bin/sh", "-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let line = stdout.lines().next().unwrap_or_default();
    assert!(
        line.starts_with(&format!("0::/{caller}/berth-")),
        "the container's cgroup is not beside the caller's {caller}/session: {line}\n{stderr}"
    );
    if memory {
        assert_eq!(stdout.lines().nth(1), Some("67108864"), "{stdout}");
    }
    drop(host); // removes session and the caller's cgroup
    assert!(!mount.path().join(&caller).exists());
}

// --- The OCI runtime's cgroups: linux.cgroupsPath and linux.resources ---

/// What an OCI cgroup test makes on the host, undone on drop, also when the
/// test fails: thaw, SIGKILL every member, reap our children, remove the
/// directories (deepest first), and put back `cgroup.subtree_control`s.
#[derive(Default)]
struct HostCgroups {
    dirs: Vec<PathBuf>,
    procs: Vec<Running>,
    /// (directory, controller) enabled in its subtree_control by the test.
    enabled: Vec<(PathBuf, String)>,
}

impl HostCgroups {
    /// Watch `dirs` and each of their parents up to (not including) `base`.
    fn watch(&mut self, dirs: &[PathBuf], bases: &[PathBuf]) {
        for dir in dirs {
            let mut d = dir.clone();
            while !bases.contains(&d) && d.file_name().is_some() {
                if !self.dirs.contains(&d) {
                    self.dirs.push(d.clone());
                }
                if !d.pop() {
                    break;
                }
            }
        }
    }

    /// Note that the test may enable `controller` below `dir`.
    fn restore_subtree(&mut self, dir: &Path, controller: &str) {
        let enabled = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap();
        if !enabled.split_whitespace().any(|c| c == controller) {
            self.enabled
                .push((dir.to_path_buf(), controller.to_string()));
        }
    }

    fn spawn(&mut self, command: &mut Command) -> Pid {
        let child = command.spawn().unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        self.procs.push(Running::new(child));
        pid
    }
}

impl Drop for HostCgroups {
    fn drop(&mut self) {
        for dir in &self.dirs {
            let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
            let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
        }
        for dir in &self.dirs {
            if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|l| l.parse().ok()) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
        self.procs.clear();
        let mut dirs = self.dirs.clone();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for dir in dirs {
            for _ in 0..100 {
                match std::fs::remove_dir(&dir) {
                    Err(e) if e.raw_os_error() == Some(libc_ebusy()) => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    _ => break,
                }
            }
        }
        for (dir, controller) in &self.enabled {
            let _ = std::fs::write(dir.join("cgroup.subtree_control"), format!("-{controller}"));
        }
    }
}

fn libc_ebusy() -> i32 {
    nix::errno::Errno::EBUSY as i32
}

fn read_trimmed(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// CPU time (user + system, in clock ticks) of `pid` so far.
fn cpu_ticks(pid: Pid) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Freezing stops a busy loop dead; thawing lets it run on.
fn assert_freezes(cgroup: &dyn stage03_cgroups::Manage, busy: Pid) {
    std::thread::sleep(Duration::from_millis(200));
    assert!(!cgroup.is_frozen().unwrap());
    cgroup.freeze().unwrap();
    assert!(cgroup.is_frozen().unwrap());
    let before = cpu_ticks(busy);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(cpu_ticks(busy), before, "a frozen busy loop ran on");
    cgroup.thaw().unwrap();
    assert!(!cgroup.is_frozen().unwrap());
    let thawed = cpu_ticks(busy);
    std::thread::sleep(Duration::from_millis(500));
    assert!(cpu_ticks(busy) > thawed, "a thawed busy loop did not run");
}

/// A shell that, at each line on its stdin, tries /dev/null and /dev/zero
/// and says which it could open.
fn device_prober() -> Command {
    let mut command = Command::new("sh");
    command
        .args([
            "-c",
            "while read x; do \
               (: > /dev/null) 2>/dev/null && echo null-ok || echo null-denied; \
               (head -c1 /dev/zero > /dev/null) 2>/dev/null && echo zero-ok || echo zero-denied; \
             done",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    command
}

/// Ask the prober once; its two answers.
fn probe_devices(prober: &mut Running) -> String {
    use std::io::Write;
    let stdin = prober.stdin.as_mut().unwrap();
    stdin.write_all(b"go\n").unwrap();
    stdin.flush().unwrap();
    let stdout = prober.stdout.as_mut().unwrap();
    let mut answer = Vec::new();
    let mut byte = [0u8];
    while answer.iter().filter(|b| **b == b'\n').count() < 2 {
        assert_eq!(
            std::io::Read::read(stdout, &mut byte).unwrap(),
            1,
            "prober ended"
        );
        answer.push(byte[0]);
    }
    String::from_utf8(answer)
        .unwrap()
        .replace('\n', " ")
        .trim()
        .to_string()
}

fn deny_all_but_null() -> Vec<stage03_cgroups::resources::DeviceRule> {
    use stage03_cgroups::resources::DeviceRule;
    vec![
        DeviceRule {
            allow: false,
            kind: 'a',
            major: None,
            minor: None,
            access: "rwm".into(),
        },
        DeviceRule {
            allow: true,
            kind: 'c',
            major: Some(1),
            minor: Some(3),
            access: "rwm".into(),
        },
    ]
}

/// The first whole disk in /proc/partitions, as (major, minor).
fn a_block_device() -> Option<(i64, i64)> {
    let partitions = std::fs::read_to_string("/proc/partitions").ok()?;
    partitions.lines().skip(2).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (major, minor) = (fields.first()?.parse().ok()?, fields.get(1)?.parse().ok()?);
        (minor == 0).then_some((major, minor))
    })
}

#[test]
fn an_absolute_cgroups_path_carries_every_resource_on_v1() {
    if !root_or_skip("an_absolute_cgroups_path_carries_every_resource_on_v1") {
        return;
    }
    use stage03_cgroups::resources::{Cpu, Hugepage, Memory, Throttle};
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let name = format!("berth-oci-abs-{}", std::process::id());
    let target = stage03_cgroups::target(Path::new(&format!("/{name}"))).unwrap();
    let dirs = target.dirs();
    let mut host = HostCgroups::default();
    host.dirs = dirs.clone();

    // Absolute: from each hierarchy's mount point, not from our own cgroup.
    let memory = PathBuf::from(format!("/sys/fs/cgroup/memory/{name}"));
    let cpu = PathBuf::from(format!("/sys/fs/cgroup/cpu/{name}"));
    let cpuset = PathBuf::from(format!("/sys/fs/cgroup/cpuset/{name}"));
    let unified = PathBuf::from(format!("/sys/fs/cgroup/unified/{name}"));
    for dir in [&memory, &cpu, &cpuset, &unified] {
        assert!(dirs.contains(dir), "{dir:?} not among {dirs:?}");
    }
    let hugetlb_in_unified =
        read_trimmed("/sys/fs/cgroup/unified/cgroup.controllers").contains("hugetlb");
    if hugetlb_in_unified {
        host.restore_subtree(Path::new("/sys/fs/cgroup/unified"), "hugetlb");
    }

    let limit = 50_593_792;
    let disk = a_block_device();
    let mut resources = stage03_cgroups::Resources {
        memory: Memory {
            limit: Some(limit),
            reservation: Some(limit / 2),
            swap: Some(limit * 2),
            kernel_tcp: Some(limit),
            swappiness: Some(10),
            disable_oom_killer: Some(true),
            ..Memory::default()
        },
        cpu: Cpu {
            shares: Some(2048),
            quota: Some(200_000),
            period: Some(100_000),
            realtime_period: Some(1_000_000),
            realtime_runtime: Some(10_000),
            cpus: Some("0".into()),
            mems: Some("0".into()),
            ..Cpu::default()
        },
        pids: Some(100),
        devices: deny_all_but_null(),
        ..Default::default()
    };
    if let Some((major, minor)) = disk {
        resources.block_io.throttle_read_bps = vec![Throttle {
            major,
            minor,
            rate: 1 << 20,
        }];
    }
    if hugetlb_in_unified {
        resources.hugepages = vec![Hugepage {
            page_size: "2MB".into(),
            limit: 2 << 30,
        }];
    }
    let mut cgroup = target.create(&resources).unwrap();
    assert_eq!(cgroup.dirs(), dirs);

    let busy = host.spawn(Command::new("sh").args(["-c", "while :; do :; done"]));
    cgroup.add_process(busy).unwrap();
    let prober = host.spawn(&mut device_prober());
    cgroup.add_process(prober).unwrap();
    let membership = std::fs::read_to_string(format!("/proc/{busy}/cgroup")).unwrap();
    assert!(
        membership.contains(&format!(":memory:/{name}\n")),
        "{membership}"
    );
    assert!(
        membership.contains(&format!("0::/{name}\n")),
        "{membership}"
    );

    // Each setting, read back from its file.
    assert_eq!(
        read_trimmed(memory.join("memory.limit_in_bytes")),
        limit.to_string()
    );
    assert_eq!(
        read_trimmed(memory.join("memory.soft_limit_in_bytes")),
        (limit / 2).to_string()
    );
    if memory.join("memory.memsw.limit_in_bytes").exists() {
        assert_eq!(
            read_trimmed(memory.join("memory.memsw.limit_in_bytes")),
            (limit * 2).to_string()
        );
    }
    assert_eq!(
        read_trimmed(memory.join("memory.kmem.tcp.limit_in_bytes")),
        limit.to_string()
    );
    assert_eq!(read_trimmed(memory.join("memory.swappiness")), "10");
    assert!(read_trimmed(memory.join("memory.oom_control")).starts_with("oom_kill_disable 1"));
    assert_eq!(read_trimmed(cpu.join("cpu.shares")), "2048");
    assert_eq!(read_trimmed(cpu.join("cpu.cfs_quota_us")), "200000");
    assert_eq!(read_trimmed(cpu.join("cpu.cfs_period_us")), "100000");
    assert_eq!(read_trimmed(cpu.join("cpu.rt_runtime_us")), "10000");
    assert_eq!(read_trimmed(cpuset.join("cpuset.cpus")), "0");
    assert_eq!(read_trimmed(cpuset.join("cpuset.mems")), "0");
    assert_eq!(
        read_trimmed(format!("/sys/fs/cgroup/pids/{name}/pids.max")),
        "100"
    );
    let devices = format!("/sys/fs/cgroup/devices/{name}/devices.list");
    assert_eq!(read_trimmed(devices), "c 1:3 rwm");
    if let Some((major, minor)) = disk {
        let throttle = format!("/sys/fs/cgroup/blkio/{name}/blkio.throttle.read_bps_device");
        assert_eq!(read_trimmed(throttle), format!("{major}:{minor} 1048576"));
    }
    if hugetlb_in_unified {
        assert_eq!(
            read_trimmed(unified.join("hugetlb.2MB.max")),
            (2u64 << 30).to_string()
        );
    }

    // The rules hold: /dev/null may be opened, /dev/zero may not.
    let mut prober_running = host.procs.pop().unwrap();
    assert_eq!(probe_devices(&mut prober_running), "null-ok zero-denied");
    host.procs.push(prober_running);

    assert_freezes(cgroup.as_ref(), busy);

    // Another process (a later `berth-runtime ps`/`update`) finds it again.
    cgroup.keep();
    drop(cgroup);
    let again = stage03_cgroups::open(&dirs).unwrap();
    let mut expected = vec![busy, prober];
    expected.sort();
    assert_eq!(again.pids().unwrap(), expected);
    let update = stage03_cgroups::Resources {
        memory: Memory {
            limit: Some(limit * 3), // above the old memory+swap: order matters
            swap: Some(limit * 4),
            ..Memory::default()
        },
        pids: Some(-1),
        ..Default::default()
    };
    again.update(&update).unwrap();
    assert_eq!(
        read_trimmed(memory.join("memory.limit_in_bytes")),
        (limit * 3).to_string()
    );
    assert_eq!(
        read_trimmed(format!("/sys/fs/cgroup/pids/{name}/pids.max")),
        "max"
    );
    assert_eq!(
        read_trimmed(cpu.join("cpu.shares")),
        "2048",
        "not in the update: unchanged"
    );
    drop(again); // opened, so it stays
    assert!(memory.exists());

    // Once its processes are gone, it can be removed, from yet another handle.
    for pid in [busy, prober] {
        kill(pid, Signal::SIGKILL).unwrap();
    }
    host.procs.clear();
    // A cgroup the container made below its own goes with it.
    let nested = memory.join("berth-nested");
    host.dirs.push(nested.clone());
    std::fs::create_dir(&nested).unwrap();
    let mut last = stage03_cgroups::open(&dirs).unwrap();
    last.remove().unwrap();
    assert!(!nested.exists());
    for dir in &dirs {
        assert!(!dir.exists(), "{dir:?} left behind");
    }
}

#[test]
fn a_relative_cgroups_path_goes_below_our_own_cgroup() {
    if !root_or_skip("a_relative_cgroups_path_goes_below_our_own_cgroup") {
        return;
    }
    let outer = format!("berth-oci-rel-{}", std::process::id());
    let path = format!("{outer}/inner");
    let target = stage03_cgroups::target(Path::new(&path)).unwrap();
    let dirs = target.dirs();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let memberships = parse_proc_cgroup(&own);
    let mounts = parse_v1_mounts(&std::fs::read_to_string("/proc/self/mountinfo").unwrap());
    let own_memory = v1_own_dir("memory", &memberships, &mounts).unwrap();
    let own_cpuset = v1_own_dir("cpuset", &memberships, &mounts).unwrap();
    let mut host = HostCgroups::default();
    let bases: Vec<PathBuf> = dirs
        .iter()
        .map(|d| d.parent().unwrap().parent().unwrap().to_path_buf())
        .collect();
    host.watch(&dirs, &bases);
    assert!(dirs.contains(&own_memory.join(&path)), "{dirs:?}");

    // cpuset needs its CPUs copied into every new level before anyone joins.
    let resources = stage03_cgroups::Resources {
        cpu: stage03_cgroups::resources::Cpu {
            cpus: Some("0".into()),
            ..Default::default()
        },
        pids: Some(10),
        ..Default::default()
    };
    let cgroup = target.create(&resources).unwrap();
    let sleeper = host.spawn(Command::new("sleep").arg("30"));
    cgroup.add_process(sleeper).unwrap();
    let membership = std::fs::read_to_string(format!("/proc/{sleeper}/cgroup")).unwrap();
    assert!(membership.contains(&format!("/{path}\n")), "{membership}");
    assert_eq!(
        read_trimmed(own_cpuset.join(&outer).join("cpuset.cpus")),
        read_trimmed(own_cpuset.join("cpuset.cpus"))
    );
    assert_eq!(
        read_trimmed(own_cpuset.join(&path).join("cpuset.cpus")),
        "0"
    );
    assert_eq!(cgroup.pids().unwrap(), [sleeper]);
    drop(host); // kills the sleeper, removes inner and outer
    for dir in &dirs {
        assert!(!dir.exists());
    }
}

#[test]
fn what_the_host_lacks_is_refused_by_name() {
    if !root_or_skip("what_the_host_lacks_is_refused_by_name") {
        return;
    }
    use stage03_cgroups::resources::{BlockIo, Hugepage, Network};
    let name = format!("berth-oci-refused-{}", std::process::id());
    let target = stage03_cgroups::target(Path::new(&format!("/{name}"))).unwrap();
    let mut host = HostCgroups::default();
    host.dirs = target.dirs();
    let refused = |resources: stage03_cgroups::Resources| {
        let err = target
            .create(&resources)
            .err()
            .expect("refused")
            .to_string();
        for dir in target.dirs() {
            assert!(!dir.exists(), "{dir:?} left after a refusal");
        }
        err
    };

    if !Path::new("/sys/fs/cgroup/net_cls").exists() {
        let err = refused(stage03_cgroups::Resources {
            network: Network {
                class_id: Some(255),
                ..Network::default()
            },
            ..Default::default()
        });
        assert!(
            err.contains(
                "linux.resources.network.classID is set but this host has no net_cls controller"
            ),
            "{err}"
        );
    }
    let err = refused(stage03_cgroups::Resources {
        hugepages: vec![Hugepage {
            page_size: "3MB".into(),
            limit: 1 << 30,
        }],
        ..Default::default()
    });
    assert!(
        err.contains("page size \"3MB\" is not one this host has"),
        "{err}"
    );

    // Leaf weights went with the CFQ I/O scheduler in Linux 5.0: refused
    // after the directories were made, and they are removed again.
    let release = nix::sys::utsname::uname()
        .unwrap()
        .release()
        .to_string_lossy()
        .into_owned();
    let major: u32 = release.split('.').next().unwrap().parse().unwrap();
    if major >= 5 {
        let err = refused(stage03_cgroups::Resources {
            block_io: BlockIo {
                leaf_weight: Some(300),
                ..BlockIo::default()
            },
            ..Default::default()
        });
        assert!(
            err.contains("linux.resources.blockIO.leafWeight is set but") && err.contains("CFQ"),
            "{err}"
        );
    }

    let err = stage03_cgroups::target(Path::new("../escape"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("leaves the cgroup tree"), "{err}");
}

#[test]
fn the_v2_backend_freezes_updates_and_filters_devices() {
    if !root_or_skip("the_v2_backend_freezes_updates_and_filters_devices") {
        return;
    }
    use stage03_cgroups::resources::Hugepage;
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mount = Cgroup2Mount::new();
    let outer = format!("berth-v2-oci-{}", std::process::id());
    let path = format!("{outer}/c");
    let target =
        stage03_cgroups::Target::new(Path::new(&path), Vec::new(), Some(mount.path().into()))
            .unwrap();
    let dir = mount.path().join(&path);
    assert_eq!(target.dirs(), std::slice::from_ref(&dir));
    let mut host = HostCgroups::default();
    host.watch(std::slice::from_ref(&dir), &[mount.path().to_path_buf()]);
    let hugetlb = read_trimmed(mount.path().join("cgroup.controllers")).contains("hugetlb");
    if hugetlb {
        host.restore_subtree(mount.path(), "hugetlb");
    }

    let mut resources = stage03_cgroups::Resources {
        devices: deny_all_but_null(),
        ..Default::default()
    };
    if hugetlb {
        resources.hugepages = vec![Hugepage {
            page_size: "2MB".into(),
            limit: 1 << 30,
        }];
    }
    let cgroup = target.create(&resources).unwrap();
    if hugetlb {
        assert_eq!(
            read_trimmed(dir.join("hugetlb.2MB.max")),
            (1u64 << 30).to_string()
        );
    }

    // Device rules as an eBPF program: enforced at every open.
    let prober = host.spawn(&mut device_prober());
    cgroup.add_process(prober).unwrap();
    let mut prober_running = host.procs.pop().unwrap();
    assert_eq!(probe_devices(&mut prober_running), "null-ok zero-denied");
    // An update replaces the program.
    let mut allow_zero = deny_all_but_null();
    allow_zero.push(stage03_cgroups::resources::DeviceRule {
        allow: true,
        kind: 'c',
        major: Some(1),
        minor: Some(5),
        access: "r".into(),
    });
    cgroup
        .update(&stage03_cgroups::Resources {
            devices: allow_zero,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(probe_devices(&mut prober_running), "null-ok zero-ok");
    host.procs.push(prober_running);

    let busy = host.spawn(Command::new("sh").args(["-c", "while :; do :; done"]));
    cgroup.add_process(busy).unwrap();
    assert_freezes(cgroup.as_ref(), busy);

    // Found again from the mount table, as a v2 cgroup.
    let again = stage03_cgroups::open(std::slice::from_ref(&dir)).unwrap();
    let mut expected = vec![prober, busy];
    expected.sort();
    assert_eq!(again.pids().unwrap(), expected);
    if hugetlb {
        again
            .update(&stage03_cgroups::Resources {
                hugepages: vec![Hugepage {
                    page_size: "2MB".into(),
                    limit: -1,
                }],
                ..Default::default()
            })
            .unwrap();
        assert_eq!(read_trimmed(dir.join("hugetlb.2MB.max")), "max");
    }
    // What v2 has no file for is refused by name.
    let err = again
        .update(&stage03_cgroups::Resources {
            memory: stage03_cgroups::resources::Memory {
                swappiness: Some(10),
                ..Default::default()
            },
            ..Default::default()
        })
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("linux.resources.memory.swappiness is set but cgroup v2 has no swappiness"),
        "{err}"
    );
    drop(host); // kills what runs in it
    drop(cgroup); // made here and not kept: removed (already gone is fine)
    assert!(!dir.exists());
}
