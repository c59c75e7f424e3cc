//! Real engines driving an OCI runtime binary: Podman (with conmon) and
//! containerd (with its runc shim), each started by the test on private
//! roots, sockets and cgroups under a temp dir, and swept away on drop.
//!
//! The runtime under test is `$BERTH_ENGINE_RUNTIME` (an absolute path, e.g.
//! `/usr/sbin/runc` to check the harness itself), or berth's own
//! `berth-runtime` by default. Every engine command runs with a time limit,
//! so a hung engine or runtime fails its test instead of hanging CI.

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::bin;
use crate::process::wait_until;

/// The variable naming the OCI runtime the engines are to drive.
pub const RUNTIME_VAR: &str = "BERTH_ENGINE_RUNTIME";

/// How long one engine command may take before its test fails.
pub const STEP: Duration = Duration::from_secs(20);

/// How long one clean-up command may take (clean-up never panics).
const CLEANUP_STEP: Duration = Duration::from_secs(10);

/// The name both engines know the busybox image by.
pub const IMAGE: &str = "localhost/bth-busybox:latest";

/// A container command that writes a growing count to `/tick` ten times a
/// second (so a frozen container is seen to stop counting) and exits 0 on
/// SIGTERM (so `stop` need not wait for its timeout).
pub const TICKER: &str =
    "trap 'exit 0' TERM; i=0; while :; do i=$((i+1)); echo $i > /tick; sleep 0.1; done";

/// The OCI runtime under test: `$BERTH_ENGINE_RUNTIME`, or `berth-runtime`.
pub fn runtime_under_test() -> PathBuf {
    match std::env::var_os(RUNTIME_VAR) {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(
                path.is_absolute() && path.is_file(),
                "{RUNTIME_VAR}={} must be the absolute path of an OCI runtime binary",
                path.display()
            );
            path
        }
        None => bin("berth-runtime"),
    }
}

/// Runs `command` (stdin from /dev/null, stdout and stderr to files, so a
/// daemon it leaves behind can't hold our pipes) for at most `limit`.
/// On timeout it is killed and the error says what it printed so far.
pub fn output_within(command: &mut Command, limit: Duration) -> Result<Output, String> {
    let dir = tempfile::Builder::new()
        .prefix("berth-engine-out-")
        .tempdir()
        .map_err(|e| format!("temp dir for output: {e}"))?;
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let file = |p: &Path| File::create(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut child = command
        .stdin(Stdio::null())
        .stdout(file(&out)?)
        .stderr(file(&err)?)
        .spawn()
        .map_err(|e| format!("{}: cannot run it: {e}", shell_line(command)))?;
    let status = wait_until(&mut child, Instant::now() + limit);
    let read = |p: &Path| std::fs::read(p).unwrap_or_default();
    match status {
        Some(status) => Ok(Output {
            status,
            stdout: read(&out),
            stderr: read(&err),
        }),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "{} still running after {limit:?}; it printed:\n{}\n{}",
                shell_line(command),
                String::from_utf8_lossy(&read(&out)),
                String::from_utf8_lossy(&read(&err))
            ))
        }
    }
}

/// [`output_within`] [`STEP`], panicking on timeout.
pub fn output(command: &mut Command) -> Output {
    output_within(command, STEP).unwrap_or_else(|e| panic!("{e}"))
}

/// [`output`] of a command that must succeed; its stdout.
pub fn ok(command: &mut Command) -> String {
    let out = output(command);
    assert!(
        out.status.success(),
        "{}: {}\n{}\n{}",
        shell_line(command),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `command` as one line for `sh -c` (its environment, program and
/// arguments, each quoted): for tmux, and for error messages.
pub fn shell_line(command: &Command) -> String {
    let quote = |s: &OsStr| format!("'{}'", s.to_string_lossy().replace('\'', r"'\''"));
    let mut words = vec!["env".to_string()];
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            let mut pair = key.to_os_string();
            pair.push("=");
            pair.push(value);
            words.push(quote(&pair));
        }
    }
    words.push(quote(command.get_program()));
    words.extend(command.get_args().map(quote));
    words.join(" ")
}

/// A distinct suffix for this process's host objects (cgroups, names).
fn unique() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn temp_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("a temp dir for the engine")
}

/// The count a [`TICKER`] container last wrote, read from the host through
/// its init's `/proc/PID/root` (again if caught between truncate and write).
pub fn tick(pid: i32) -> Option<u64> {
    (0..10).find_map(|_| {
        let count = std::fs::read_to_string(format!("/proc/{pid}/root/tick"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        if count.is_none() {
            std::thread::sleep(Duration::from_millis(10));
        }
        count
    })
}

/// A [`TICKER`] container's count now and 600 ms later.
fn ticks(pid: i32) -> (Option<u64>, Option<u64>) {
    let before = tick(pid);
    std::thread::sleep(Duration::from_millis(600));
    (before, tick(pid))
}

/// Whether a [`TICKER`] container's count moves within 600 ms.
pub fn ticking(pid: i32) -> bool {
    matches!(ticks(pid), (Some(a), Some(b)) if a != b)
}

/// Whether a [`TICKER`] container's count is there and stands still for
/// 600 ms.
pub fn frozen(pid: i32) -> bool {
    matches!(ticks(pid), (Some(a), Some(b)) if a == b)
}

/// The cgroup of process `pid` in the `pids` hierarchy (as
/// /proc/PID/cgroup says), e.g. `/bth-podman-1-0/libpod-ID`.
pub fn pids_cgroup(pid: i32) -> String {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    cgroups
        .lines()
        .find_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            controllers
                .split(',')
                .any(|c| c == "pids")
                .then(|| path.to_string())
        })
        .unwrap_or_default()
}

/// An OCI image layout holding the busybox `rootfs` as `latest` (with a
/// PATH and `sh` as its command), tarred: an OCI archive any engine loads.
pub fn oci_archive(work: &Path, rootfs: &Path) -> PathBuf {
    let layout = work.join("bth-layout");
    crate::images::build_image(
        &layout,
        "latest",
        rootfs,
        &[
            "--config.env=PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            "--config.cmd=sh",
        ],
    );
    let archive = work.join("bth-busybox.tar");
    ok(Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .arg("."));
    archive
}

/// Podman on a root of its own: storage, run root, tmp dir, lock files,
/// network config, events log and cgroup parent all private to this value,
/// the image imported from a busybox rootfs (no registry is reached).
pub struct Podman {
    dir: TempDir,
    runtime: PathBuf,
    /// The cgroup parent of its containers (and conmon), `/bth-podman-*`.
    pub cgroup_parent: String,
}

impl Podman {
    /// Writes the configuration and imports `rootfs` as [`IMAGE`].
    pub fn new(rootfs: &Path) -> Podman {
        let dir = temp_dir("berth-podman-");
        // The runtime keeps its state (its --root) in our dir too. Podman has
        // no setting for that which the `container cleanup` command conmon
        // runs at the exit would keep (`--runtime-flag` is lost there), so
        // Podman runs a same-named script that execs the runtime with --root.
        let real = runtime_under_test();
        let runtime = dir
            .path()
            .join("runtime-bin")
            .join(real.file_name().expect("the runtime's file name"));
        std::fs::create_dir_all(runtime.parent().unwrap()).unwrap();
        std::fs::write(
            &runtime,
            format!(
                "#!/bin/sh\nexec '{}' --root '{}' \"$@\"\n",
                real.display(),
                dir.path().join("runtime").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o755)).unwrap();
        let podman = Podman {
            runtime,
            cgroup_parent: format!("/bth-podman-{}", unique()),
            dir,
        };
        let path = |name: &str| podman.path(name).display().to_string();
        for sub in ["tmp", "net.d"] {
            std::fs::create_dir_all(podman.path(sub)).unwrap();
        }
        // This host's quirks (see DESIGN.md): nofile can't be raised past
        // 20000 and there is no systemd. Locks in files and network config in
        // our dir keep it off /dev/shm/libpod_lock and /etc/cni. Podman reads
        // the runtime's errors as JSON only from runtimes listed by name.
        std::fs::write(
            podman.path("containers.conf"),
            format!(
                "[containers]\n\
                 default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
                 netns = \"none\"\n\
                 [network]\n\
                 network_backend = \"cni\"\n\
                 network_config_dir = \"{net}\"\n\
                 [engine]\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\n\
                 lock_type = \"file\"\n\
                 image_copy_tmp_dir = \"{tmp}\"\n\
                 runtime_supports_json = [\"crun\", \"runc\", \"kata\", \"runsc\", \"youki\", \"krun\", \"berth-runtime\"]\n",
                net = path("net.d"),
                tmp = path("tmp"),
            ),
        )
        .unwrap();
        std::fs::write(
            podman.path("storage.conf"),
            format!(
                "[storage]\ndriver = \"overlay\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
                path("runroot"),
                path("root")
            ),
        )
        .unwrap();
        std::fs::write(
            podman.path("registries.conf"),
            "unqualified-search-registries = []\nshort-name-mode = \"disabled\"\n",
        )
        .unwrap();

        let tarball = podman.path("rootfs.tar");
        ok(Command::new("tar")
            .arg("-C")
            .arg(rootfs)
            .arg("-cf")
            .arg(&tarball)
            .arg("."));
        podman.ok(&["import", &tarball.to_string_lossy(), IMAGE]);
        podman
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `podman` with our configuration, roots and the runtime under test.
    pub fn command(&self) -> Command {
        let mut command = Command::new("podman");
        command
            .env("CONTAINERS_CONF", self.path("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.path("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", self.path("registries.conf"))
            .env("TMPDIR", self.path("tmp"))
            .arg("--root")
            .arg(self.path("root"))
            .arg("--runroot")
            .arg(self.path("runroot"))
            .arg("--tmpdir")
            .arg(self.path("tmp"))
            .arg("--runtime")
            .arg(&self.runtime)
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"]);
        command
    }

    /// `podman ARGS...`, within [`STEP`].
    pub fn output(&self, args: &[&str]) -> Output {
        output(self.command().args(args))
    }

    /// `podman ARGS...`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        ok(self.command().args(args))
    }

    /// `podman run --network none --cgroup-parent ... OPTIONS IMAGE CMD...`.
    pub fn run_command(&self, options: &[&str], cmd: &[&str]) -> Command {
        let mut command = self.command();
        command
            .args(["run", "--network", "none", "--cgroup-parent"])
            .arg(&self.cgroup_parent)
            .args(options)
            .arg(IMAGE)
            .args(cmd);
        command
    }

    pub fn run(&self, options: &[&str], cmd: &[&str]) -> Output {
        output(&mut self.run_command(options, cmd))
    }

    /// `podman inspect -f FORMAT NAME`, trimmed.
    pub fn inspect(&self, name: &str, format: &str) -> String {
        self.ok(&["inspect", "-f", format, name]).trim().to_string()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = output_within(
            self.command()
                .args(["rm", "--all", "--force", "--time", "0"]),
            CLEANUP_STEP,
        );
        sweep(self.dir.path(), &self.cgroup_parent);
    }
}

/// containerd on a root, state, socket and namespace of its own, in a
/// private mount namespace with its own /run (its shims' sockets go to
/// /run/containerd/s whatever the config says), with the CRI plugin off.
pub struct Containerd {
    dir: TempDir,
    daemon: Option<Child>,
    runtime: PathBuf,
    /// The containerd namespace; ctr puts a container's cgroup at
    /// `/NAMESPACE/ID`, so this is its cgroups' parent too.
    pub namespace: String,
}

impl Containerd {
    pub fn start() -> Containerd {
        let dir = temp_dir("berth-containerd-");
        let path = |name: &str| dir.path().join(name).display().to_string();
        for sub in ["tmp", "fifo"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\n\
                 root = \"{root}\"\n\
                 state = \"{state}\"\n\
                 temp = \"{tmp}\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.snapshotter.v1.aufs\", \
                 \"io.containerd.snapshotter.v1.btrfs\", \"io.containerd.snapshotter.v1.zfs\", \
                 \"io.containerd.snapshotter.v1.devmapper\"]\n\
                 [grpc]\n  address = \"{sock}\"\n\
                 [ttrpc]\n  address = \"{sock}.ttrpc\"\n\
                 [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{opt}\"\n",
                root = path("root"),
                state = path("state"),
                tmp = path("tmp"),
                sock = path("containerd.sock"),
                opt = path("opt"),
            ),
        )
        .unwrap();
        let log = File::create(dir.path().join("containerd.log")).unwrap();
        // `exec` keeps the daemon's PID that of the child we spawn.
        let daemon = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg("mount -t tmpfs -o mode=755 bth-run /run && exec containerd --config \"$0\"")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("unshare and containerd run (apt-get install containerd util-linux)");
        let mut containerd = Containerd {
            dir,
            daemon: Some(daemon),
            runtime: runtime_under_test(),
            namespace: format!("bth-ctr-{}", unique()),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let up = output_within(containerd.ctr().arg("version"), CLEANUP_STEP)
                .is_ok_and(|o| o.status.success());
            if up {
                break;
            }
            let exited = containerd
                .daemon
                .as_mut()
                .and_then(|d| d.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "containerd did not come up ({exited:?}); its log:\n{}",
                    containerd.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        containerd
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("containerd.log")).unwrap_or_default()
    }

    /// `ctr` on our socket and namespace.
    pub fn ctr(&self) -> Command {
        let mut command = Command::new("ctr");
        command
            .arg("--address")
            .arg(self.path("containerd.sock"))
            .arg("--namespace")
            .arg(&self.namespace);
        command
    }

    /// The flag `ctr run` and `ctr task exec` need here: their stdio FIFOs
    /// in our dir, not in /run/containerd/fifo on the host.
    pub fn io_flags(&self) -> Vec<String> {
        vec!["--fifo-dir".into(), self.path("fifo").display().to_string()]
    }

    /// `ctr run --fifo-dir ... --runc-binary RUNTIME ARGS...`.
    pub fn run_command(&self, args: &[&str]) -> Command {
        let mut command = self.ctr();
        command
            .arg("run")
            .args(self.io_flags())
            .arg("--runc-binary")
            .arg(&self.runtime)
            .args(args);
        command
    }

    /// `ctr ARGS...`, within [`STEP`].
    pub fn output(&self, args: &[&str]) -> Output {
        output(self.ctr().args(args))
    }

    pub fn ok(&self, args: &[&str]) -> String {
        ok(self.ctr().args(args))
    }

    /// Loads an OCI archive (see [`oci_archive`]) as [`IMAGE`].
    pub fn import(&self, archive: &Path) {
        self.ok(&[
            "image",
            "import",
            "--base-name",
            IMAGE.trim_end_matches(":latest"),
            &archive.to_string_lossy(),
        ]);
    }

    /// A task's PID and status (`RUNNING`, `PAUSED`, `STOPPED`...) from
    /// `ctr task ls`.
    pub fn task(&self, id: &str) -> Option<(i32, String)> {
        let list = self.ok(&["task", "ls"]);
        list.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == id).then_some(())?;
            Some((words.next()?.parse().ok()?, words.next()?.to_string()))
        })
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let worst: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("level=warning") || l.contains("level=error"))
                .collect();
            eprintln!("containerd's warnings and errors (the last 10):");
            for line in &worst[worst.len().saturating_sub(10)..] {
                eprintln!("  {line}");
            }
        }
        let quietly = |args: &[&str]| {
            let _ = output_within(self.ctr().args(args), CLEANUP_STEP);
        };
        let containers = output_within(self.ctr().args(["container", "ls", "-q"]), CLEANUP_STEP)
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for id in containers.split_whitespace() {
            quietly(&["task", "kill", "--all", "--signal", "KILL", id]);
            quietly(&["task", "rm", "--force", id]);
            quietly(&["container", "rm", id]);
        }
        if let Some(mut daemon) = self.daemon.take() {
            let _ = kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM);
            if wait_until(&mut daemon, Instant::now() + Duration::from_secs(5)).is_none() {
                let _ = daemon.kill();
                let _ = daemon.wait();
            }
        }
        sweep(self.dir.path(), &format!("/{}", self.namespace));
    }
}

/// Removes what an engine may have left of a test's run: processes whose
/// command line names `dir` (conmon, shims, runtimes), processes in the
/// cgroups under `cgroup_parent` (thawed first: a frozen task can't die),
/// mounts under `dir`, and those cgroups. Never panics.
fn sweep(dir: &Path, cgroup_parent: &str) {
    let dir_name = dir.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    for pid in pids().into_iter().filter(|&p| p != me) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&dir_name) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    let cgroups = cgroups_under(cgroup_parent);
    for cgroup in &cgroups {
        let _ = std::fs::write(cgroup.join("freezer.state"), "THAWED");
        let _ = std::fs::write(cgroup.join("cgroup.freeze"), "0");
    }
    for cgroup in &cgroups {
        let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.parse().ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    unmount_under(dir);
    // Deepest first; a cgroup stays busy for a moment after its last task.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut left = cgroups;
    left.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    while !left.is_empty() && Instant::now() < deadline {
        left.retain(|c| std::fs::remove_dir(c).is_err() && c.exists());
        if !left.is_empty() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Every cgroup directory at or below `parent`, in every hierarchy.
fn cgroups_under(parent: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return found;
    };
    for hierarchy in hierarchies.flatten() {
        let top = hierarchy.path().join(parent.trim_start_matches('/'));
        let mut stack = vec![top];
        while let Some(dir) = stack.pop() {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                stack.extend(
                    entries
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
                found.push(dir);
            }
        }
    }
    found
}

/// Detaches every mount at or below `dir`, deepest first.
fn unmount_under(dir: &Path) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount_point)
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = nix::mount::umount2(point.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mount_point(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A tmux server of our own, on a socket in a temp dir, killed on drop: the
/// real terminal (100 x 30) that `-it` and `-t` need.
pub struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// Runs `command` (a `sh -c` line) in a new detached session.
    pub fn start(socket: PathBuf, command: &str) -> Tmux {
        let tmux = Tmux { socket };
        ok(tmux
            .command()
            .args(["new-session", "-d", "-x", "100", "-y", "30", command]));
        tmux
    }

    fn command(&self) -> Command {
        let mut command = Command::new("tmux");
        command.arg("-S").arg(&self.socket);
        command
    }

    /// Types `line` and Enter.
    pub fn type_line(&self, line: &str) {
        ok(self.command().args(["send-keys", "-l", line]));
        ok(self.command().args(["send-keys", "Enter"]));
    }

    /// Waits up to 10 s until the window shows `text`; else fails saying
    /// `what` and showing the window.
    pub fn wait_for(&self, what: &str, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.screen().contains(text) {
            assert!(
                Instant::now() < deadline,
                "never happened: {what}; the terminal shows:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the window shows now.
    pub fn screen(&self) -> String {
        output_within(self.command().args(["capture-pane", "-p"]), CLEANUP_STEP)
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = output_within(self.command().arg("kill-server"), CLEANUP_STEP);
    }
}
