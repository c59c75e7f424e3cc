//! The ways out of a default (not `--privileged`) container, tried for
//! real: files berth was handed, the caller's terminal, berth's own binary,
//! raw sockets and io_uring. Each test runs the attack through `run`,
//! `run -d`, `exec` and build `RUN` where it applies, and asserts it fails.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use berth_tests::lab::{Lab, eventually};
use berth_tests::probe::{add_host_program, build_probe};
use berth_tests::root_or_skip;

/// A lab whose image has /bin/probe (probe.c) and /bin/evil, a script
/// whose interpreter is `/proc/self/exe`: whoever execs it runs *itself*
/// again, inside the container.
fn hostile_lab() -> Lab {
    Lab::with_rootfs(|rootfs| {
        build_probe(&rootfs.join("bin/probe"));
        add_host_program(rootfs, "/usr/bin/ping");
        let evil = rootfs.join("bin/evil");
        std::fs::write(&evil, "#!/proc/self/exe --help\n").unwrap();
        std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o755)).unwrap();
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn succeeded(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// `command` with `dir` open as its fd 7, without close-on-exec, as a
/// careless caller (or a hostile one) would leave it.
fn with_fd_7(command: &mut Command, dir: &File) {
    let fd = dir.as_raw_fd();
    // SAFETY: dup2 between fork and exec.
    unsafe {
        command.pre_exec(move || match libc::dup2(fd, 7) {
            -1 => Err(std::io::Error::last_os_error()),
            _ => Ok(()),
        });
    }
}

/// The lines `ls /proc/self/fd` printed that name fd 7.
fn fd_7_in(listing: &str) -> bool {
    listing.lines().any(|line| line.trim() == "7")
}

/// A Dockerfile context in `dir` with `dockerfile` in it.
fn context(dir: &Path, dockerfile: &str) -> PathBuf {
    let context = dir.join("context");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(context.join("Dockerfile"), dockerfile).unwrap();
    context
}

#[test]
fn files_the_caller_left_open_never_reach_a_container() {
    if !root_or_skip("files_the_caller_left_open_never_reach_a_container") {
        return;
    }
    let lab = Lab::new();
    let host = tempfile::Builder::new()
        .prefix("berth-host-dir-")
        .tempdir()
        .unwrap();
    std::fs::write(host.path().join("secret"), "the host's secret\n").unwrap();
    let dir = File::open(host.path()).unwrap();
    let image = lab.pulled.image.clone();
    let look = "ls /proc/self/fd; cat /proc/self/fd/7/secret 2>&1; true";

    // `berth ARGS` with fd 7, which must see neither fd 7 nor the secret.
    let look_with_fd_7 = |what: &str, args: &[&str]| {
        let mut berth = lab.berth();
        berth.args(args).args(["sh", "-c", look]);
        with_fd_7(&mut berth, &dir);
        let seen = succeeded(what, &berth.output().unwrap());
        assert!(
            !fd_7_in(&seen),
            "{what}: fd 7 reached the container: {seen}"
        );
        assert!(
            !seen.contains("the host's secret"),
            "{what}: the host's file was read: {seen}"
        );
    };

    // berth run, in the foreground.
    look_with_fd_7("run", &["run", "--rm", "--network", "none", &image]);

    // berth run -d: the monitor, and the container under it.
    let mut detach = lab.berth();
    let keep = "ls /proc/self/fd > /tmp/fds; exec sleep 1000";
    detach.args(["run", "-d", "--network", "none", &image, "sh", "-c", keep]);
    with_fd_7(&mut detach, &dir);
    let id = succeeded("run -d", &detach.output().unwrap())
        .trim()
        .to_string();
    let inspect: serde_json::Value =
        serde_json::from_str(&lab.ok(&["inspect", &id])).expect("inspect is JSON");
    let monitor = inspect["state"]["monitor"]["pid"].as_i64().unwrap();
    for entry in std::fs::read_dir(format!("/proc/{monitor}/fd")).unwrap() {
        let target = std::fs::read_link(entry.unwrap().path()).unwrap_or_default();
        assert_ne!(target, host.path(), "the monitor holds the caller's fd 7");
    }
    eventually("the detached command listed its files", || {
        lab.berth()
            .args(["exec", &id, "test", "-s", "/tmp/fds"])
            .status()
            .unwrap()
            .success()
    });
    let seen = lab.ok(&["exec", &id, "cat", "/tmp/fds"]);
    assert!(
        !fd_7_in(&seen),
        "fd 7 reached the detached container: {seen}"
    );

    // berth exec.
    look_with_fd_7("exec", &["exec", &id]);

    // A build's RUN step: the build fails if fd 7 is there.
    let work = tempfile::tempdir().unwrap();
    let context = context(
        work.path(),
        &format!("FROM {image}\nRUN ls /proc/self/fd && test ! -e /proc/self/fd/7\n"),
    );
    let mut build = lab.berth();
    build.args(["build", "-t", "berth-fd-test:1"]).arg(&context);
    with_fd_7(&mut build, &dir);
    succeeded("build (RUN must not see fd 7)", &build.output().unwrap());
}

/// A pseudo-terminal standing in for the caller's: `berth` runs with it as
/// its stdin, stdout, stderr and controlling terminal, as from a shell.
struct CallersTerminal {
    master: OwnedFd,
    slave: OwnedFd,
}

impl CallersTerminal {
    fn open() -> CallersTerminal {
        let pty = nix::pty::openpty(None, None).unwrap();
        CallersTerminal {
            master: pty.master,
            slave: pty.slave,
        }
    }

    /// Run `command` on this terminal; what it printed there.
    fn run(&self, command: &mut Command) -> (std::process::ExitStatus, String) {
        let stream = || Stdio::from(self.slave.try_clone().unwrap());
        command.stdin(stream()).stdout(stream()).stderr(stream());
        // SAFETY: two system calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                nix::unistd::setsid()?;
                if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().unwrap();
        let status = child.wait().unwrap();
        (status, read_available(&self.master))
    }

    /// What is waiting to be read as *input* on the terminal: keystrokes
    /// pushed into it, which the caller's shell would run next.
    fn pending_input(&self) -> String {
        read_available(&self.slave)
    }
}

/// Everything readable from `fd` right now, without waiting.
fn read_available(fd: &OwnedFd) -> String {
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL).unwrap();
    let nonblocking = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(nonblocking)).unwrap();
    let mut file = File::from(fd.try_clone().unwrap());
    let mut all = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n @ 1..) = file.read(&mut buffer) {
        all.extend_from_slice(&buffer[..n]);
    }
    text(&all)
}

#[test]
fn a_container_cannot_type_into_the_callers_terminal() {
    if !root_or_skip("a_container_cannot_type_into_the_callers_terminal") {
        return;
    }
    let lab = hostile_lab();
    let image = lab.pulled.image.clone();
    let id = lab.detach(&["--network", "none"], &["sleep", "1000"]);
    let work = tempfile::tempdir().unwrap();
    let context = context(
        work.path(),
        &format!("FROM {image}\nRUN [\"/bin/probe\", \"tiocsti\"]\n"),
    );
    let tries: Vec<(&str, Vec<&str>)> = vec![
        (
            "run",
            vec![
                "run",
                "--rm",
                "--network",
                "none",
                &image,
                "/bin/probe",
                "tiocsti",
            ],
        ),
        (
            "run -i",
            vec![
                "run",
                "-i",
                "--rm",
                "--network",
                "none",
                &image,
                "/bin/probe",
                "tiocsti",
            ],
        ),
        ("exec", vec!["exec", &id, "/bin/probe", "tiocsti"]),
        ("exec -i", vec!["exec", "-i", &id, "/bin/probe", "tiocsti"]),
        (
            "build",
            vec!["build", "-t", "berth-tty-test:1", context.to_str().unwrap()],
        ),
    ];
    for (what, args) in tries {
        let terminal = CallersTerminal::open();
        let (status, printed) = terminal.run(lab.berth().args(&args));
        assert!(status.success(), "{what}: {status}: {printed}");
        assert!(
            printed.contains("tiocsti fd 1: "),
            "{what}: the probe did not run: {printed}"
        );
        assert!(
            !printed.contains("INJECTED"),
            "{what}: the container typed into the caller's terminal: {printed}"
        );
        let pending = terminal.pending_input();
        assert!(
            pending.is_empty(),
            "{what}: the caller's shell would now run {pending:?}"
        );
    }
}

#[test]
fn berths_own_binary_is_read_only_to_its_containers() {
    if !root_or_skip("berths_own_binary_is_read_only_to_its_containers") {
        return;
    }
    let lab = hostile_lab();
    // A copy of berth in a directory of its own, so that no other test
    // runs it and nothing else can be hurt if the protection fails.
    let copy_dir = tempfile::Builder::new()
        .prefix("berth-binary-")
        .tempdir()
        .unwrap();
    let copy = copy_dir.path().join("berth");
    std::fs::copy(berth_tests::bin("berth"), &copy).unwrap();
    let original = std::fs::read(&copy).unwrap();
    let berth = || {
        let mut command = Command::new(&copy);
        command.arg("--root").arg(lab.pulled.root.path());
        command
    };
    let image = lab.pulled.image.clone();
    let started = berth()
        .args(["run", "-d", "--name", "victim", "--network", "none", &image])
        .args(["sleep", "1000"])
        .output()
        .unwrap();
    let id = succeeded("run -d", &started).trim().to_string();

    // Whatever route leads a process to berth's /proc/PID/exe (the monitor,
    // init, a process berth execs inside), writing through it fails with
    // EROFS: berth runs from a read-only view of itself. (Without it, the
    // write would fail only while berth runs, with ETXTBSY, and truncating
    // is checked first against the mount: O_TRUNC tells the two apart.)
    // Once a detached container runs, its monitor and init run the tiny
    // program instead, from an in-memory file sealed against writes for
    // good (F_SEAL_WRITE and F_SEAL_SHRINK: no write or truncation, ever).
    let inspect: serde_json::Value =
        serde_json::from_str(&lab.ok(&["inspect", &id])).expect("inspect is JSON");
    for process in ["monitor", "init"] {
        let pid = inspect["state"][process]["pid"].as_i64().unwrap();
        let exe = format!("/proc/{pid}/exe");
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&exe);
        let read_only_view = opened.err().and_then(|e| e.raw_os_error()) == Some(libc::EROFS);
        let sealed = std::fs::File::open(&exe).is_ok_and(|file| {
            // SAFETY: F_GET_SEALS on a descriptor we own.
            let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
            seals > 0
                && seals & (libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK) != 0
                && seals & libc::F_SEAL_WRITE != 0
                && seals & libc::F_SEAL_SHRINK != 0
        });
        assert!(
            read_only_view || sealed,
            "{process}'s binary ({exe}) must be read-only to whoever reaches it"
        );
    }

    // The attack of CVE-2019-5736: berth execs /bin/evil inside, which makes
    // the kernel run berth itself there as the script's interpreter (its
    // `--help` keeps it busy on a full pipe). A process of the container
    // looks for it, holds its /proc/PID/exe, and once berth has exited
    // writes through it.
    let attacker = std::thread::scope(|scope| {
        let attacker = scope.spawn(|| {
            let script = "p=--he; p=${p}lp; \
                for i in $(seq 60); do \
                  for c in /proc/[0-9]*/cmdline; do \
                    grep -q -- \"$p\" $c 2>/dev/null || continue; \
                    pid=${c#/proc/}; pid=${pid%/cmdline}; \
                    exec 3</proc/$pid/exe || continue; \
                    echo held; while [ ! -e /tmp/go ]; do sleep 0.1; done; \
                    if echo pwned >/proc/self/fd/3; then echo WROTE; else echo refused; fi; \
                    exit 0; \
                  done; sleep 0.1; \
                done; echo 'never found berth inside'";
            lab.berth()
                .args(["exec", &id, "sh", "-c", script])
                .output()
                .unwrap()
        });
        for _ in 0..3 {
            let _ = berth()
                .args(["exec", &id, "/bin/evil"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        std::thread::sleep(Duration::from_millis(500));
        lab.ok(&["exec", &id, "touch", "/tmp/go"]);
        attacker.join().unwrap()
    });
    let said = text(&attacker.stdout) + &text(&attacker.stderr);
    assert!(
        !said.contains("WROTE"),
        "the container wrote to berth: {said}"
    );
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        original,
        "berth's binary on disk changed"
    );
    lab.ok(&["rm", "-f", &id]);
}

#[test]
fn raw_sockets_and_io_uring_are_refused_and_ping_still_works() {
    if !root_or_skip("raw_sockets_and_io_uring_are_refused_and_ping_still_works") {
        return;
    }
    let lab = hostile_lab();
    let host_ping_range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap();
    let probes = "probe raw; probe ping; probe io_uring; /usr/bin/ping -c 1 -W 2 127.0.0.1";
    let out = lab.run(&["--rm", "--network", "none"], &["sh", "-c", probes]);
    let said = succeeded("run", &out);
    assert!(
        said.contains("1 packets transmitted, 1 received"),
        "iputils' ping must work without CAP_NET_RAW: {said}"
    );
    assert!(
        said.contains("raw packet socket: Operation not permitted"),
        "CAP_NET_RAW must be gone: {said}"
    );
    assert!(said.contains("ping: reply from 127.0.0.1"), "{said}");
    assert!(
        said.contains("io_uring_setup: Operation not permitted"),
        "io_uring must be blocked: {said}"
    );
    // --cap-add brings NET_RAW back, and only it.
    let out = lab.run(
        &["--rm", "--network", "none", "--cap-add", "NET_RAW"],
        &["sh", "-c", "probe raw; probe io_uring"],
    );
    let said = succeeded("run --cap-add NET_RAW", &out);
    assert!(said.contains("raw packet socket: ALLOWED"), "{said}");
    assert!(
        said.contains("io_uring_setup: Operation not permitted"),
        "{said}"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap(),
        host_ping_range,
        "the host's ping_group_range changed"
    );
}

#[test]
fn init_shows_a_name_and_errors_name_the_problem() {
    if !root_or_skip("init_shows_a_name_and_errors_name_the_problem") {
        return;
    }
    let lab = Lab::new();
    let root = lab.pulled.root.path().to_string_lossy().into_owned();
    let out = lab.run(&["--rm", "--network", "none"], &["ps", "-o", "pid,args"]);
    let ps = succeeded("run ps", &out);
    assert!(ps.contains("1 berth-init"), "{ps}");
    assert!(!ps.contains(&root), "ps inside shows a host path: {ps}");

    let out = lab.run(
        &["--rm", "--network", "none", "-u", "nosuchuser"],
        &["true"],
    );
    assert_eq!(out.status.code(), Some(125));
    let said = text(&out.stderr);
    assert!(
        said.contains("user \"nosuchuser\" is not in the container's /etc/passwd"),
        "{said}"
    );
    let id = lab.detach(&["--network", "none"], &["sleep", "1000"]);
    let out = lab
        .berth()
        .args(["exec", "-u", "nosuchuser", &id, "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let said = text(&out.stderr);
    assert!(
        said.contains("user \"nosuchuser\" is not in the container's /etc/passwd"),
        "{said}"
    );
}
