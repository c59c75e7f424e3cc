//! Stage 02 on the real kernel: namespaces, pivot_root, and init as PID 1.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::prelude::*;
use berth_tests::probes::host_hostname;
use berth_tests::{Fixture, Running, bin, root_or_skip};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use predicates::prelude::*;

/// `stage02-namespaces [OPTIONS] ROOTFS` (the command is added by the caller).
fn stage02(fixture: &Fixture, options: &[&str]) -> Command {
    let mut command = Command::new(bin("stage02-namespaces"));
    command.args(options).arg(fixture.rootfs());
    command
}

fn stdout_of(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{:?} failed: {}\n{}",
        command,
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Start a container that prints "ready" once its command runs.
fn start_ready(fixture: &Fixture, options: &[&str], script: &str) -> Running {
    let mut child = Running::new(
        stage02(fixture, options)
            .args(["/bin/sh", "-c", &format!("echo ready; {script}")])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    child
}

/// Waits (up to 5 s) until exactly one host process runs `cmdline`: the
/// "ready" line comes from the shell just before it execs the command.
fn wait_for_one_process(cmdline: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while processes_running(cmdline).len() != 1 {
        assert!(Instant::now() < deadline, "`{cmdline}` never started");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Host PIDs whose command line is exactly `cmdline` (words joined by spaces).
fn processes_running(cmdline: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let raw = std::fs::read(entry.path().join("cmdline")).ok()?;
            let words: Vec<_> = raw.split(|b| *b == 0).filter(|w| !w.is_empty()).collect();
            let joined = words
                .iter()
                .map(|w| String::from_utf8_lossy(w))
                .collect::<Vec<_>>();
            (joined.join(" ") == cmdline).then(|| entry.file_name().to_string_lossy().into_owned())
        })
        .collect()
}

fn host_mounts() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap()
}

/// The host's mounts at or below `dir` (a fixture's: no other test's).
fn host_mounts_below(dir: &Path) -> String {
    let dir = dir.to_string_lossy();
    host_mounts()
        .lines()
        .filter(|line| line.contains(&*dir))
        .map(|line| format!("{line}\n"))
        .collect()
}

#[test]
fn the_hostname_is_the_containers_own() {
    if !root_or_skip("the_hostname_is_the_containers_own") {
        return;
    }
    let fx = Fixture::new();
    let host = host_hostname();
    let named = stdout_of(stage02(&fx, &["--hostname", "box"]).arg("hostname"));
    assert_eq!(named, "box\n");
    let generated = stdout_of(stage02(&fx, &[]).arg("hostname"));
    let generated = generated.trim();
    assert_eq!(generated.len(), 12, "{generated:?}");
    assert!(generated.chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(generated, host);
    assert_eq!(host_hostname(), host, "the host's hostname changed");
}

#[test]
fn the_command_sees_only_the_containers_processes() {
    if !root_or_skip("the_command_sees_only_the_containers_processes") {
        return;
    }
    let fx = Fixture::new();
    let script = format!(
        "echo $$; ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '; echo; \
         tr '\\0' ' ' < /proc/1/cmdline; echo; kill -0 {} 2>/dev/null && echo host-pid-visible; true",
        std::process::id()
    );
    let out = stdout_of(stage02(&fx, &[]).args(["/bin/sh", "-c", &script]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "2", "the command is PID 2, under our init");
    let pids: Vec<u32> = lines[1]
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(
        pids.contains(&1) && pids.iter().all(|&p| p < 10),
        "{pids:?}"
    );
    assert!(
        lines[2].contains("stage02-namespaces"),
        "PID 1 is init: {}",
        lines[2]
    );
    assert_eq!(lines.len(), 3, "a host PID was visible: {out}");
}

#[test]
fn the_container_is_at_the_root_of_its_cgroup_namespace() {
    if !root_or_skip("the_container_is_at_the_root_of_its_cgroup_namespace") {
        return;
    }
    let fx = Fixture::new();
    let inside = stdout_of(stage02(&fx, &[]).args(["cat", "/proc/self/cgroup"]));
    assert!(!inside.is_empty());
    for line in inside.lines() {
        assert!(line.ends_with(":/"), "not at its cgroup root: {line}");
    }
}

#[test]
fn the_stage_01_escape_fails() {
    if !root_or_skip("the_stage_01_escape_fails") {
        return;
    }
    let fx = Fixture::new();
    stage02(&fx, &[])
        .args(["/bin/chroot-escape", "/bin/cat"])
        .arg(fx.host_marker())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("climbed 0 directories"))
        .stderr(predicate::str::contains("No such file or directory"));
}

#[test]
fn mounts_stay_inside_the_container() {
    if !root_or_skip("mounts_stay_inside_the_container") {
        return;
    }
    let fx = Fixture::new();
    let before = host_mounts();

    let inside = stdout_of(stage02(&fx, &[]).args(["cat", "/proc/self/mountinfo"]));
    let allowed = [
        "/",
        "/proc",
        "/sys",
        "/dev",
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
        "/dev/tty",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
    ];
    for line in inside.lines() {
        let mount_point = line.split(' ').nth(4).unwrap();
        assert!(
            allowed.contains(&mount_point),
            "host mount visible inside: {line}"
        );
    }

    let mut running = start_ready(&fx, &[], "sleep 30");
    let during = host_mounts();
    kill(Pid::from_raw(running.id() as i32), Signal::SIGTERM).unwrap();
    running.wait().unwrap();
    assert_eq!(before, during, "the container's mounts showed on the host");
    assert_eq!(before, host_mounts(), "the host's mount table changed");
}

/// A System V shared memory segment on the host, removed on drop.
struct HostShm(i32);

impl HostShm {
    fn new() -> HostShm {
        // SAFETY: plain System V calls with constant arguments.
        let id = unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600) };
        assert!(id >= 0, "shmget: {}", std::io::Error::last_os_error());
        HostShm(id)
    }
}

impl Drop for HostShm {
    fn drop(&mut self) {
        // SAFETY: removes the segment we made.
        unsafe { libc::shmctl(self.0, libc::IPC_RMID, std::ptr::null_mut()) };
    }
}

#[test]
fn host_ipc_objects_are_invisible() {
    if !root_or_skip("host_ipc_objects_are_invisible") {
        return;
    }
    let fx = Fixture::new();
    let shm = HostShm::new();
    let listed = |table: &str| {
        table
            .lines()
            .skip(1)
            .any(|l| l.split_whitespace().nth(1) == Some(&shm.0.to_string()))
    };
    assert!(listed(
        &std::fs::read_to_string("/proc/sysvipc/shm").unwrap()
    ));
    let inside = stdout_of(stage02(&fx, &[]).args(["cat", "/proc/sysvipc/shm"]));
    assert!(
        !listed(&inside),
        "host segment {} visible inside:\n{inside}",
        shm.0
    );
    assert_eq!(inside.lines().count(), 1, "only the header: {inside}");
}

#[test]
fn the_network_is_only_loopback_and_it_is_up() {
    if !root_or_skip("the_network_is_only_loopback_and_it_is_up") {
        return;
    }
    let fx = Fixture::new();
    let links = stdout_of(stage02(&fx, &[]).args(["ip", "-o", "link", "show"]));
    let lines: Vec<&str> = links.lines().collect();
    assert_eq!(lines.len(), 1, "{links}");
    assert!(
        lines[0].starts_with("1: lo: <LOOPBACK,UP,LOWER_UP>"),
        "{links}"
    );
    stage02(&fx, &[])
        .args(["ping", "-c", "1", "-W", "2", "127.0.0.1"])
        .assert()
        .success();
}

#[test]
fn devices_work_inside() {
    if !root_or_skip("devices_work_inside") {
        return;
    }
    let fx = Fixture::new();
    let out = stdout_of(stage02(&fx, &[]).args([
        "/bin/sh",
        "-c",
        "echo gone > /dev/null && head -c 5 /dev/zero | wc -c && head -c 5 /dev/urandom | wc -c \
         && test -c /dev/pts/ptmx && touch /dev/shm/x && echo ok",
    ]));
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["5", "5", "ok"]);
}

#[test]
fn user_namespace_maps_root_to_an_unprivileged_host_user() {
    if !root_or_skip("user_namespace_maps_root_to_an_unprivileged_host_user") {
        return;
    }
    let fx = Fixture::new();
    let out = stdout_of(stage02(&fx, &["--userns"]).args([
        "/bin/sh",
        "-c",
        "id -u; cat /proc/self/uid_map; touch /tmp/made-by-container-root",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
    // Through the idmapped mount, container root's files are host root's.
    let made = std::fs::metadata(fx.rootfs().join("tmp/made-by-container-root")).unwrap();
    assert_eq!((made.uid(), made.gid()), (0, 0));
}

/// Owner, group and mode of everything below `root` (links not followed).
fn owners(root: &Path) -> BTreeMap<PathBuf, (u32, u32, u32)> {
    let mut found = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(path) = todo.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                todo.push(entry.unwrap().path());
            }
        }
        let relative = path.strip_prefix(root).unwrap().to_path_buf();
        found.insert(relative, (meta.uid(), meta.gid(), meta.mode()));
    }
    found
}

/// The host's view of a process's user and group IDs: the first two
/// numbers (real, effective) of `Uid:` and `Gid:` in /proc/PID/status.
fn host_ids_of(pid: &str) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .filter(|line| line.starts_with("Uid:") || line.starts_with("Gid:"))
        .flat_map(|line| line.split_whitespace().skip(1).take(2).map(String::from))
        .collect()
}

#[test]
fn user_namespace_root_writes_its_rootfs_through_an_idmapped_mount() {
    if !root_or_skip("user_namespace_root_writes_its_rootfs_through_an_idmapped_mount") {
        return;
    }
    let fx = Fixture::new();
    let before = owners(&fx.rootfs());
    let sleeper = format!("sleep 9{}", std::process::id());
    let script = format!(
        "id -u; stat -c '%u %g' / /etc/passwd; touch /made-inside && echo made; \
         echo ready; exec {sleeper}"
    );
    let mut child = Running::new(
        stage02(&fx, &["--userns"])
            .args(["/bin/sh", "-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines: Vec<String> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .take_while(|line| line != "ready")
        .collect();
    // Inside: root, and the rootfs's files (host root's) are root's.
    assert_eq!(lines, ["0", "0 0", "0 0", "made"], "inside");

    // Outside, the same process is the unprivileged host user 100000.
    wait_for_one_process(&sleeper);
    let pid = processes_running(&sleeper).remove(0);
    assert_eq!(host_ids_of(&pid), ["100000"; 4], "host IDs of {pid}");
    assert_eq!(
        host_mounts_below(fx.dir()),
        "",
        "the container's mounts showed on the host"
    );
    let output = child.stop();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The fixture is on the host's /tmp (ext4 here), which can be idmapped.
    assert!(
        !stderr.contains("no idmapped mount"),
        "fell back to a copy: {stderr}"
    );

    // On the host, the new file is host root's, as the idmapping maps back,
    // and nothing of the rootfs changed owner: no chown happened.
    let made = std::fs::metadata(fx.rootfs().join("made-inside")).unwrap();
    assert_eq!((made.uid(), made.gid()), (0, 0));
    let mut after = owners(&fx.rootfs());
    after.remove(Path::new("made-inside"));
    assert_eq!(after, before, "the rootfs's owners or modes changed");
    assert_eq!(host_mounts_below(fx.dir()), "", "a mount was left behind");
}

#[test]
fn user_namespace_takes_a_rootfs_shifted_already_as_it_is() {
    if !root_or_skip("user_namespace_takes_a_rootfs_shifted_already_as_it_is") {
        return;
    }
    let fx = Fixture::new();
    // As an engine leaves a rootfs it chowned for the container's range.
    let chowned = Command::new("chown")
        .args(["-R", "100000:100000"])
        .arg(fx.rootfs())
        .status()
        .unwrap();
    assert!(chowned.success());
    let output = stage02(&fx, &["--userns"])
        .args([
            "/bin/sh",
            "-c",
            "stat -c '%u %g' / /etc/passwd; touch /made-inside",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // Root's inside: the owners were shifted once, by the chown. An
    // idmapped mount on top would shift them again, out of the map.
    assert_eq!(String::from_utf8_lossy(&output.stdout), "0 0\n0 0\n");
    assert!(!stderr.contains("note:"), "{stderr}");
    let made = std::fs::metadata(fx.rootfs().join("made-inside")).unwrap();
    assert_eq!((made.uid(), made.gid()), (100_000, 100_000));
    assert_eq!(host_mounts_below(fx.dir()), "", "a mount was left behind");
}

/// Makes a rootfs on a ramfs, a file system without idmapped mounts, and
/// runs `stage02-namespaces --userns` on it. All of it happens in a mount
/// namespace of its own (`unshare -m`), so the ramfs never shows on the
/// host and goes away with the script. Prints sections: the owners before,
/// what ran inside printed, the owners after, whether the file it made is
/// on the ramfs.
const RAMFS_SCRIPT: &str = r#"
set -e
mount -t ramfs -o mode=755 berth-ramfs "$DIR"
"$MKROOTFS" "$DIR/rootfs" > /dev/null
owned="$DIR/rootfs/etc/owned-by-1000"
: > "$owned"; chown 1000:50 "$owned"; chmod 4750 "$owned"
owners() { find "$DIR/rootfs" -exec stat -c '%n %u %g %a' {} + | sort; }
echo "== before"; owners
echo "== inside"
"$STAGE02" --userns "$DIR/rootfs" /bin/sh -c     "stat -c '%u %g %a' / /root /etc/owned-by-1000; touch /made-inside && echo made" 2> "$ERR"
echo "== after"; owners
if [ -e "$DIR/rootfs/made-inside" ]; then echo "== made-inside is on the ramfs"; fi
"#;

#[test]
fn user_namespace_without_idmapped_mounts_gets_a_shifted_copy() {
    if !root_or_skip("user_namespace_without_idmapped_mounts_gets_a_shifted_copy") {
        return;
    }
    let fx = Fixture::new();
    let ramfs = fx.dir().join("berth-ramfs");
    std::fs::create_dir(&ramfs).unwrap();
    let stderr_file = fx.dir().join("stderr");
    let output = Command::new("unshare")
        .args([
            "-m",
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
            RAMFS_SCRIPT,
        ])
        .env("DIR", &ramfs)
        .env("MKROOTFS", bin("berth-mkrootfs"))
        .env("STAGE02", bin("stage02-namespaces"))
        .env("ERR", &stderr_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = std::fs::read_to_string(&stderr_file).unwrap_or_default();
    assert!(
        output.status.success(),
        "{stdout}\n{stderr}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let section = |name: &str| -> Vec<&str> {
        let start = stdout.find(&format!("== {name}\n")).expect(name) + name.len() + 4;
        let rest = &stdout[start..];
        rest[..rest.find("== ").unwrap_or(rest.len())]
            .lines()
            .collect()
    };
    // Inside, the copy's owners are shifted so that root's files are root's,
    // and user 1000's are 1000's, set-user-ID bit and all.
    assert_eq!(
        section("inside"),
        ["0 0 755", "0 0 700", "1000 50 4750", "made"],
        "{stderr}"
    );
    assert!(
        stderr.contains("no idmapped mount of") && stderr.contains("copy of it in memory"),
        "the fallback was not explained: {stderr}"
    );
    // The copy took the write; the rootfs itself is as it was.
    assert!(
        !stdout.contains("== made-inside is on the ramfs"),
        "{stdout}"
    );
    assert_eq!(section("after"), section("before"));
}

#[test]
fn exit_codes_and_signal_deaths_propagate() {
    if !root_or_skip("exit_codes_and_signal_deaths_propagate") {
        return;
    }
    let fx = Fixture::new();
    stage02(&fx, &[])
        .args(["/bin/sh", "-c", "exit 3"])
        .assert()
        .code(3);
    stage02(&fx, &[])
        .args(["/bin/sh", "-c", "kill -KILL $$"])
        .assert()
        .code(137);
    stage02(&fx, &[])
        .arg("/bin/bash")
        .assert()
        .code(127)
        .stderr(predicate::str::contains(
            "/bin/bash: command not found in rootfs",
        ));
    stage02(&fx, &[]).arg("/etc/passwd").assert().code(126);
}

#[test]
fn sigterm_ends_the_container_within_a_second() {
    if !root_or_skip("sigterm_ends_the_container_within_a_second") {
        return;
    }
    let fx = Fixture::new();
    let sleeper = format!("sleep 7{}", std::process::id());
    let mut child = start_ready(&fx, &[], &format!("exec {sleeper}"));
    wait_for_one_process(&sleeper);

    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let sent = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if sent.elapsed() > Duration::from_secs(1) {
            let _ = child.kill();
            panic!("the container was still running a second after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        status.code(),
        Some(143),
        "SIGTERM killed the command: 128 + 15"
    );
    assert!(
        processes_running(&sleeper).is_empty(),
        "the command survived"
    );
}

#[test]
fn killing_the_stage_binary_takes_the_container_down() {
    if !root_or_skip("killing_the_stage_binary_takes_the_container_down") {
        return;
    }
    let fx = Fixture::new();
    // With --userns too: changing user IDs must not lose the parent-death signal.
    for (i, options) in [&[][..], &["--userns"][..]].into_iter().enumerate() {
        let sleeper = format!("sleep 8{i}{}", std::process::id());
        // The command ignores SIGTERM; only the kernel's SIGKILL stops it.
        let mut child = start_ready(&fx, options, &format!("trap '' TERM; {sleeper}"));
        wait_for_one_process(&sleeper);
        child.kill().unwrap(); // SIGKILL: the stage binary gets no chance to clean up
        child.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !processes_running(&sleeper).is_empty() {
            assert!(
                Instant::now() < deadline,
                "{options:?}: the container outlived its stage binary"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn signals_ignored_by_our_caller_still_reach_the_command() {
    if !root_or_skip("signals_ignored_by_our_caller_still_reach_the_command") {
        return;
    }
    let fx = Fixture::new();
    // `sh -c 'cmd &'` starts cmd with SIGINT ignored; the container's command
    // must get the default action back, so SIGINT ends it.
    let script = format!(
        "{} {} /bin/sh -c 'echo ready; exec sleep 30' & sleep 1; kill -INT $!; wait $!; echo $?",
        bin("stage02-namespaces").display(),
        fx.rootfs().display()
    );
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ready\n130\n");
}

#[test]
fn init_reaps_orphaned_zombies() {
    if !root_or_skip("init_reaps_orphaned_zombies") {
        return;
    }
    let fx = Fixture::new();
    // The subshell exits at once, so its `sleep` is orphaned and re-parented
    // to PID 1. When that sleep ends, only PID 1 can reap it.
    let script = "(sleep 0.2 &); sleep 1; \
                  grep -l 'State:.*Z' /proc/[0-9]*/status; echo checked";
    let out = stdout_of(stage02(&fx, &[]).args(["/bin/sh", "-c", script]));
    assert_eq!(out, "checked\n", "a zombie was left unreaped");
}

#[test]
fn bad_input_fails_cleanly() {
    if !root_or_skip("bad_input_fails_cleanly") {
        return;
    }
    let fx = Fixture::new();
    let before = host_mounts();
    stage02(&fx, &["--hostname", "bad_name"])
        .arg("true")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not a valid hostname"));

    // A rootfs whose /proc is a file: the step that fails is named.
    std::fs::remove_dir(fx.rootfs().join("proc")).unwrap();
    std::fs::write(fx.rootfs().join("proc"), "not a directory").unwrap();
    stage02(&fx, &[])
        .arg("true")
        .assert()
        .code(125)
        .stderr(predicate::str::contains("/proc"));
    assert_eq!(before, host_mounts(), "a failed start left a mount behind");
}
