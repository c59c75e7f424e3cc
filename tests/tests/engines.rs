//! The OCI runtime under real engines: Podman (through conmon) and
//! containerd (through its runc shim) drive it as they drive runc, and what
//! a user sees must be what they see with runc: output, exit codes, exec,
//! terminals, stop, pause and resume, removal.
//!
//! The runtime is `$BERTH_ENGINE_RUNTIME` (an absolute path), by default
//! `target/debug/berth-runtime`. With `BERTH_ENGINE_RUNTIME=/usr/sbin/runc`
//! these tests check the harness itself. Each test starts its engine on
//! private roots, sockets and cgroups, and removes all of it, also when it
//! fails; every engine command has a time limit.

use std::time::{Duration, Instant};

use berth_tests::engines::{
    Containerd, IMAGE, Podman, TICKER, Tmux, frozen, oci_archive, output, pids_cgroup, shell_line,
    tick, ticking,
};
use berth_tests::lab::eventually;
use berth_tests::{Fixture, root_or_skip};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts the exit code, showing everything the command printed if wrong.
fn assert_code(out: &std::process::Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: {}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn podman_run_prints_output_and_keeps_exit_codes() {
    if !root_or_skip("podman_run_prints_output_and_keeps_exit_codes") {
        return;
    }
    let fx = Fixture::new();
    let podman = Podman::new(&fx.rootfs());

    let out = podman.run(&["--rm"], &["sh", "-c", "echo hi; echo oops >&2; exit 3"]);
    assert_code(&out, 3, "run --rm sh -c 'exit 3'");
    assert_eq!(text(&out.stdout), "hi\n");
    assert!(text(&out.stderr).contains("oops"), "{}", text(&out.stderr));

    assert_code(&podman.run(&["--rm"], &["true"]), 0, "run --rm true");
    // Podman tells "not found" (127) from the runtime's error.
    let out = podman.run(&["--rm"], &["/no/such/program"]);
    assert_code(&out, 127, "run --rm /no/such/program");

    // The container's root is the image's, in its own namespaces.
    let out = podman.run(
        &["--rm", "--hostname", "bth-box"],
        &["sh", "-c", "cat /berth-rootfs-marker; hostname; echo $$"],
    );
    assert_code(&out, 0, "run --rm: marker, hostname, pid");
    assert_eq!(text(&out.stdout), "inside\nbth-box\n1\n");

    assert_eq!(podman.ok(&["ps", "--all", "--quiet"]), "", "--rm left it");
}

#[test]
fn podman_exec_and_stop_a_detached_container() {
    if !root_or_skip("podman_exec_and_stop_a_detached_container") {
        return;
    }
    let fx = Fixture::new();
    let podman = Podman::new(&fx.rootfs());
    let out = podman.run(&["-d", "--name", "bth-box"], &["sh", "-c", TICKER]);
    assert_code(&out, 0, "run -d");
    assert_eq!(podman.inspect("bth-box", "{{.State.Status}}"), "running");

    let out = podman.output(&[
        "exec",
        "bth-box",
        "sh",
        "-c",
        "cat /tick >/dev/null && echo in-exec; echo oops >&2; exit 4",
    ]);
    assert_code(&out, 4, "exec sh -c 'exit 4'");
    assert_eq!(text(&out.stdout), "in-exec\n");
    assert!(text(&out.stderr).contains("oops"), "{}", text(&out.stderr));
    // exec joins the container: its PID namespace (init is 1) and root.
    let out = podman.output(&[
        "exec",
        "bth-box",
        "sh",
        "-c",
        "tr '\\0' ' ' < /proc/1/cmdline; echo; cat /berth-rootfs-marker",
    ]);
    assert_code(&out, 0, "exec: init and marker");
    assert!(
        text(&out.stdout).starts_with("sh -c "),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stdout).ends_with("inside\n"),
        "{}",
        text(&out.stdout)
    );
    assert_code(
        &podman.output(&["exec", "bth-box", "/no/such/program"]),
        127,
        "exec /no/such/program",
    );

    // The command ends on SIGTERM, so stop must not wait out its timeout.
    let started = Instant::now();
    podman.ok(&["stop", "--time", "10", "bth-box"]);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    assert_eq!(podman.inspect("bth-box", "{{.State.Status}}"), "exited");
    assert_eq!(podman.inspect("bth-box", "{{.State.ExitCode}}"), "0");

    assert_eq!(podman.ok(&["rm", "bth-box"]), "bth-box\n");

    // Killed by a signal: 128 + 9, as the shell would say.
    let out = podman.run(&["-d", "--name", "bth-sleeper"], &["sleep", "600"]);
    assert_code(&out, 0, "run -d sleep");
    podman.ok(&["kill", "--signal", "KILL", "bth-sleeper"]);
    // "exited" once conmon's `podman container cleanup` has deleted it from
    // the runtime ("stopped" until then).
    eventually("the killed container exited", || {
        podman.inspect("bth-sleeper", "{{.State.Status}}") == "exited"
    });
    assert_eq!(podman.inspect("bth-sleeper", "{{.State.ExitCode}}"), "137");
    podman.ok(&["rm", "bth-sleeper"]);
    assert_eq!(podman.ok(&["ps", "--all", "--quiet"]), "");
}

#[test]
fn podman_pause_freezes_and_unpause_thaws_the_container() {
    if !root_or_skip("podman_pause_freezes_and_unpause_thaws_the_container") {
        return;
    }
    let fx = Fixture::new();
    let podman = Podman::new(&fx.rootfs());
    let out = podman.run(&["-d", "--name", "bth-box"], &["sh", "-c", TICKER]);
    assert_code(&out, 0, "run -d");
    let pid: i32 = podman.inspect("bth-box", "{{.State.Pid}}").parse().unwrap();
    eventually("the container counts", || tick(pid).is_some());
    assert!(ticking(pid), "not counting before pause");

    podman.ok(&["pause", "bth-box"]);
    assert_eq!(podman.inspect("bth-box", "{{.State.Status}}"), "paused");
    assert!(frozen(pid), "still counting while paused");

    podman.ok(&["unpause", "bth-box"]);
    assert_eq!(podman.inspect("bth-box", "{{.State.Status}}"), "running");
    assert!(ticking(pid), "not counting after unpause");

    // In the cgroup Podman asked for (its stats and limits are read there).
    let id = podman.inspect("bth-box", "{{.Id}}");
    assert_eq!(
        pids_cgroup(pid),
        format!("{}/libpod-{id}", podman.cgroup_parent)
    );

    podman.ok(&["rm", "--force", "--time", "0", "bth-box"]);
    assert_eq!(podman.ok(&["ps", "--all", "--quiet"]), "");
}

#[test]
fn podman_run_it_and_exec_it_get_a_terminal() {
    if !root_or_skip("podman_run_it_and_exec_it_get_a_terminal") {
        return;
    }
    let fx = Fixture::new();
    let podman = Podman::new(&fx.rootfs());
    let status = fx.dir().join("run-status");
    let run = Tmux::start(
        fx.dir().join("tmux-run"),
        &format!(
            "{} sh; echo exited=$? > '{}'; sleep 60",
            shell_line(&podman.run_command(&["-it", "--name", "bth-tty"], &[])),
            status.display()
        ),
    );
    // (capture-pane drops the blank after the prompt's `#`.)
    run.wait_for("run -it's prompt", "/ #");
    run.type_line("tty; stty size; echo typed-$((6*7))");
    run.wait_for("run -it's shell answered", "/dev/pts/0\n30 100\ntyped-42");

    let mut exec = podman.command();
    exec.args(["exec", "-it", "bth-tty", "sh"]);
    let exec = Tmux::start(fx.dir().join("tmux-exec"), &shell_line(&exec));
    exec.wait_for("exec -it's prompt", "/ #");
    exec.type_line("stty size; echo exec-$((6*7)); tr '\\0' ' ' < /proc/1/cmdline; echo");
    exec.wait_for("exec -it's shell answered", "30 100\nexec-42\nsh\n");
    exec.type_line("exit");

    run.type_line("exit 7");
    eventually("run -it ended with the shell's status", || {
        std::fs::read_to_string(&status).is_ok_and(|s| s == "exited=7\n")
    });
}

#[test]
fn containerd_runs_a_rootfs_directory_with_its_default_spec() {
    if !root_or_skip("containerd_runs_a_rootfs_directory_with_its_default_spec") {
        return;
    }
    let fx = Fixture::new();
    let containerd = Containerd::start();
    // `--rootfs`: the first argument is a root directory, not an image.
    let rootfs = fx.rootfs().display().to_string();
    let run = |id: &str, script: &str| {
        output(&mut containerd.run_command(&[
            "--rm",
            "--env",
            "PATH=/bin:/sbin",
            "--rootfs",
            &rootfs,
            id,
            "sh",
            "-c",
            script,
        ]))
    };

    let out = run("bth-x", "echo hi; echo oops >&2; exit 3");
    assert_code(&out, 3, "ctr run --rm --rootfs DIR sh -c 'exit 3'");
    assert_eq!(text(&out.stdout), "hi\n");
    assert!(text(&out.stderr).contains("oops"), "{}", text(&out.stderr));

    // containerd's default spec: its own /run (tmpfs), /dev, /proc, PID 1.
    let out = run(
        "bth-y",
        "cat /berth-rootfs-marker; echo $$; grep -E '^[^ ]+ /(run|dev|proc|sys|dev/pts|dev/shm) ' /proc/mounts | cut -d' ' -f2,3",
    );
    assert_code(&out, 0, "ctr run --rm: marker, pid, mounts");
    assert_eq!(
        text(&out.stdout),
        "inside\n1\n/proc proc\n/dev tmpfs\n/dev/pts devpts\n/dev/shm tmpfs\n/sys sysfs\n/run tmpfs\n"
    );

    assert_eq!(
        containerd.ok(&["container", "ls", "-q"]),
        "",
        "--rm left it"
    );
}

#[test]
fn containerd_runs_an_imported_image_on_overlayfs() {
    if !root_or_skip("containerd_runs_an_imported_image_on_overlayfs") {
        return;
    }
    let fx = Fixture::new();
    let containerd = Containerd::start();
    containerd.import(&oci_archive(fx.dir(), &fx.rootfs()));

    let out = output(&mut containerd.run_command(&[
        "--rm",
        IMAGE,
        "bth-img",
        "sh",
        "-c",
        "echo $PATH; grep ' / ' /proc/mounts | cut -d' ' -f3; cat /berth-rootfs-marker; exit 5",
    ]));
    assert_code(&out, 5, "ctr run --rm IMAGE sh -c 'exit 5'");
    assert_eq!(
        text(&out.stdout),
        "/usr/sbin:/usr/bin:/sbin:/bin\noverlay\ninside\n"
    );
}

#[test]
fn containerd_exec_pause_kill_and_rm_a_detached_task() {
    if !root_or_skip("containerd_exec_pause_kill_and_rm_a_detached_task") {
        return;
    }
    let fx = Fixture::new();
    let containerd = Containerd::start();
    containerd.import(&oci_archive(fx.dir(), &fx.rootfs()));

    let out = output(&mut containerd.run_command(&["-d", IMAGE, "bth-task", "sh", "-c", TICKER]));
    assert_code(&out, 0, "ctr run -d");
    let (pid, status) = containerd.task("bth-task").expect("ctr task ls lists it");
    assert_eq!(status, "RUNNING");
    eventually("the task counts", || tick(pid).is_some());
    let exec = |id: &str, script: &str| {
        let mut command = containerd.ctr();
        command
            .args(["task", "exec"])
            .args(containerd.io_flags())
            .args(["--exec-id", id, "bth-task", "sh", "-c", script]);
        output(&mut command)
    };
    let out = exec(
        "bth-e1",
        "cat /tick >/dev/null && echo in-exec; echo oops >&2; exit 4",
    );
    assert_code(&out, 4, "ctr task exec sh -c 'exit 4'");
    assert_eq!(text(&out.stdout), "in-exec\n");
    assert!(text(&out.stderr).contains("oops"), "{}", text(&out.stderr));
    let out = exec("bth-e2", "tr '\\0' ' ' < /proc/1/cmdline");
    assert_code(&out, 0, "ctr task exec: init's command");
    assert!(
        text(&out.stdout).starts_with("sh -c "),
        "{}",
        text(&out.stdout)
    );

    // ps: the runtime lists the task's processes (host PIDs).
    let ps = containerd.ok(&["task", "ps", "bth-task"]);
    assert!(
        ps.lines()
            .any(|l| l.split_whitespace().next() == Some(&pid.to_string())),
        "init {pid} not in ctr task ps:\n{ps}"
    );

    containerd.ok(&["task", "pause", "bth-task"]);
    assert_eq!(containerd.task("bth-task").unwrap().1, "PAUSED");
    assert!(frozen(pid), "still counting while paused");
    containerd.ok(&["task", "resume", "bth-task"]);
    assert_eq!(containerd.task("bth-task").unwrap().1, "RUNNING");
    assert!(ticking(pid), "not counting after resume");

    // In the cgroup the spec names (ctr's default: /NAMESPACE/ID).
    assert_eq!(
        pids_cgroup(pid),
        format!("/{}/bth-task", containerd.namespace)
    );

    // SIGTERM (ctr's default): the command's trap exits 0.
    containerd.ok(&["task", "kill", "bth-task"]);
    eventually("the task stopped", || {
        containerd
            .task("bth-task")
            .is_some_and(|t| t.1 == "STOPPED")
    });
    let out = containerd.output(&["task", "rm", "bth-task"]);
    assert_code(&out, 0, "ctr task rm");
    assert!(
        !text(&out.stderr).contains("exit code"),
        "{}",
        text(&out.stderr)
    );
    containerd.ok(&["container", "rm", "bth-task"]);

    // kill --all with SIGKILL: the exit code containerd records is 137.
    let out = output(&mut containerd.run_command(&[
        "-d",
        IMAGE,
        "bth-all",
        "sh",
        "-c",
        "sleep 600 & sleep 600",
    ]));
    assert_code(&out, 0, "ctr run -d");
    containerd.ok(&["task", "kill", "--all", "--signal", "KILL", "bth-all"]);
    eventually("the task stopped", || {
        containerd.task("bth-all").is_some_and(|t| t.1 == "STOPPED")
    });
    let out = containerd.output(&["task", "rm", "bth-all"]);
    assert!(
        text(&out.stderr).contains("exit code 137"),
        "ctr task rm: {}",
        text(&out.stderr)
    );
    containerd.ok(&["container", "rm", "bth-all"]);
    assert_eq!(containerd.ok(&["container", "ls", "-q"]), "");
}

#[test]
fn containerd_run_t_gets_a_terminal() {
    if !root_or_skip("containerd_run_t_gets_a_terminal") {
        return;
    }
    let fx = Fixture::new();
    let containerd = Containerd::start();
    let status = fx.dir().join("run-status");
    let rootfs = fx.rootfs().display().to_string();
    let run = containerd.run_command(&[
        "--tty",
        "--rm",
        "--env",
        "PATH=/bin:/sbin",
        "--rootfs",
        &rootfs,
        "bth-tty",
        "sh",
    ]);
    let tmux = Tmux::start(
        fx.dir().join("tmux"),
        &format!(
            "{}; echo exited=$? > '{}'; sleep 60",
            shell_line(&run),
            status.display()
        ),
    );
    tmux.wait_for("run -t's prompt", "/ #");
    tmux.type_line("tty; stty size; echo typed-$((6*7))");
    tmux.wait_for("run -t's shell answered", "/dev/pts/0\n30 100\ntyped-42");
    tmux.type_line("exit 6");
    eventually("ctr run -t ended with the shell's status", || {
        std::fs::read_to_string(&status).is_ok_and(|s| s == "exited=6\n")
    });
    // --rm: nothing of bth-tty is left.
    assert_eq!(containerd.ok(&["container", "ls", "-q"]), "");
}
