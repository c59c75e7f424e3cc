//! The engine, `berth`, on the real kernel: containers that outlive the
//! command that started them, exec into them, their logs, stop and rm, and
//! the errors a user meets. Every test has its own state root; those that
//! use a network make one of their own (10.254.x).

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use assert_cmd::prelude::*;
use berth_tests::lab::{Lab, cgroups_of, eventually};
use berth_tests::tmux::Tmux;
use berth_tests::{bin, http_get, root_or_skip, run_test_in_v2_vm};
use predicates::prelude::*;

#[test]
fn a_detached_container_runs_on_and_is_stopped_and_removed() {
    if !root_or_skip("a_detached_container_runs_on_and_is_stopped_and_removed") {
        return;
    }
    let lab = Lab::new();
    let id = lab.detach(
        &["--name", "box", "--network", "none"],
        &["sh", "-c", "echo started; echo oops >&2; exec sleep 600"],
    );

    // `berth run -d` has returned; the container lives on.
    let ps = lab.ok(&["ps"]);
    let line = ps.lines().find(|l| l.starts_with(&id)).expect("in ps");
    assert!(line.contains("Up ") && line.ends_with("box"), "{ps}");
    assert!(!cgroups_of(&id).is_empty(), "no cgroup while it runs");
    // Its stdout to our stdout, its stderr to our stderr, as `docker logs`.
    eventually("its output is in its log", || {
        let out = lab.berth().args(["logs", "box"]).output().unwrap();
        out.stdout == b"started\n" && out.stderr == b"oops\n"
    });
    assert_eq!(lab.ok(&["logs", &id[..6]]), "started\n", "by ID prefix");

    // Stop: SIGTERM reaches the command, 128 + 15 is recorded.
    assert_eq!(lab.ok(&["stop", "box"]), "box\n");
    let all = lab.ok(&["ps", "-a"]);
    assert!(all.contains("Exited (143)"), "{all}");
    assert!(
        !lab.ok(&["ps"]).contains(&id),
        "stopped but listed as running"
    );
    let record: serde_json::Value = serde_json::from_str(&lab.ok(&["inspect", "box"])).unwrap();
    assert_eq!(record["state"]["exit_code"], 143);
    assert!(cgroups_of(&id).is_empty(), "its cgroup outlived it");

    // rm: the record, log and writable layer go.
    assert!(lab.containers_dir().join(&id).exists());
    assert_eq!(lab.ok(&["rm", "box"]), "box\n");
    assert!(!lab.containers_dir().join(&id).exists());
    assert!(!lab.ok(&["ps", "-a"]).contains(&id));
}

#[test]
fn exec_joins_the_running_containers_namespaces_root_and_cgroup() {
    if !root_or_skip("exec_joins_the_running_containers_namespaces_root_and_cgroup") {
        return;
    }
    let lab = Lab::new();
    lab.detach(
        &["--name", "box", "--network", "none", "-e", "GREETING=hi"],
        &["sh", "-c", "echo from-main > /tmp/mark; exec sleep 600"],
    );
    eventually("the main process wrote its mark", || {
        lab.berth()
            .args(["exec", "box", "cat", "/tmp/mark"])
            .output()
            .is_ok_and(|o| o.stdout == b"from-main\n")
    });
    // Its hostname, its processes (the main one is there, the host's aren't).
    assert_eq!(lab.ok(&["exec", "box", "hostname"]), "box\n");
    let ps = lab.ok(&["exec", "box", "ps", "-o", "pid,args"]);
    assert!(ps.contains("sleep 600"), "{ps}");
    assert!(ps.lines().count() < 6, "host processes visible:\n{ps}");
    // Its environment, with ours on top; its cgroup (at the root of its
    // cgroup namespace, so really in it); the exit code comes back.
    assert_eq!(
        lab.ok(&["exec", "box", "sh", "-c", "echo $GREETING"]),
        "hi\n"
    );
    assert_eq!(
        lab.ok(&[
            "exec",
            "-e",
            "GREETING=bye",
            "box",
            "sh",
            "-c",
            "echo $GREETING"
        ]),
        "bye\n"
    );
    let cgroup = lab.ok(&["exec", "box", "cat", "/proc/self/cgroup"]);
    for line in cgroup.lines().filter(|l| {
        ["memory", "pids", "cpuacct"].iter().any(|c| {
            l.split(':')
                .nth(1)
                .is_some_and(|cs| cs.split(',').any(|x| x == *c))
        })
    }) {
        assert!(
            line.ends_with(":/"),
            "exec'd process not in the container's cgroup: {line}"
        );
    }
    lab.berth()
        .args(["exec", "box", "sh", "-c", "exit 5"])
        .assert()
        .code(5);
    lab.berth()
        .args(["exec", "box", "/bin/no-such-program"])
        .assert()
        .code(127)
        .stderr(predicate::str::contains("command not found"));
    lab.ok(&["stop", "-t", "1", "box"]);
    lab.berth()
        .args(["exec", "box", "true"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("container box is not running"));
}

#[test]
fn foreground_runs_pass_the_exit_code_and_rm_cleans_up() {
    if !root_or_skip("foreground_runs_pass_the_exit_code_and_rm_cleans_up") {
        return;
    }
    let lab = Lab::new();
    let out = lab.run(
        &["--rm", "--network", "none"],
        &["sh", "-c", "echo out; exit 7"],
    );
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(out.stdout, b"out\n");
    assert!(
        lab.container_dirs().is_empty(),
        "--rm left {:?}",
        lab.container_dirs()
    );

    let kept = lab.run(
        &["--network", "none", "--name", "kept"],
        &["sh", "-c", "exit 3"],
    );
    assert_eq!(kept.status.code(), Some(3));
    assert!(lab.ok(&["ps", "-a"]).contains("Exited (3)"));
    assert_eq!(lab.ok(&["logs", "kept"]), "", "kept wrote nothing");
    lab.ok(&["rm", "kept"]);

    // Limits are stage 03's: over its memory, the kernel kills it, and the
    // record says why.
    let oom = lab.run(
        &["--network", "none", "--name", "hungry", "--memory", "32m"],
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"],
    );
    assert_eq!(oom.status.code(), Some(137));
    assert!(String::from_utf8_lossy(&oom.stderr).contains("killed: out of memory (limit 32 MiB)"));
    assert!(lab.ok(&["ps", "-a"]).contains("Exited (137) OOMKilled"));
    lab.ok(&["rm", "hungry"]);

    // A detached --rm container removes itself when it ends.
    lab.detach(&["--rm", "--network", "none"], &["sleep", "0.2"]);
    eventually("the --rm container is gone", || {
        lab.container_dirs().is_empty()
    });
}

#[test]
fn stop_kills_a_container_that_ignores_sigterm() {
    if !root_or_skip("stop_kills_a_container_that_ignores_sigterm") {
        return;
    }
    let lab = Lab::new();
    lab.detach(
        &["--name", "stubborn", "--network", "none"],
        &[
            "sh",
            "-c",
            "trap '' TERM; echo ready; while true; do sleep 1; done",
        ],
    );
    eventually("ready", || lab.ok(&["logs", "stubborn"]) == "ready\n");
    lab.ok(&["stop", "--time", "1", "stubborn"]);
    assert!(lab.ok(&["ps", "-a"]).contains("Exited (137)"));

    lab.detach(
        &["--name", "killed", "--network", "none"],
        &["sleep", "600"],
    );
    lab.ok(&["kill", "-s", "TERM", "killed"]);
    eventually("killed exits", || {
        lab.ok(&["ps", "-a"]).matches("Exited").count() == 2
    });
    let record: serde_json::Value = serde_json::from_str(&lab.ok(&["inspect", "killed"])).unwrap();
    assert_eq!(record["state"]["exit_code"], 143);
}

#[test]
fn logs_follow_until_the_container_ends() {
    if !root_or_skip("logs_follow_until_the_container_ends") {
        return;
    }
    let lab = Lab::new();
    lab.detach(
        &["--name", "talker", "--network", "none"],
        &["sh", "-c", "echo one; sleep 1; echo two"],
    );
    // -f returns by itself once the container has ended, with everything.
    let followed = lab.ok(&["logs", "-f", "talker"]);
    assert_eq!(followed, "one\ntwo\n");
    assert!(lab.ok(&["ps", "-a"]).contains("Exited (0)"));
}

#[test]
fn bad_input_gets_a_clear_error_and_leaves_nothing() {
    if !root_or_skip("bad_input_gets_a_clear_error_and_leaves_nothing") {
        return;
    }
    let lab = Lab::new();
    lab.berth()
        .args(["run", "no-such-image", "true"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains(
            "is not in the store; pull it first: berth pull",
        ));
    lab.berth()
        .args(["run", "--network", "nowhere", &lab.pulled.image, "true"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("no network nowhere"));
    lab.berth()
        .args(["run", "-p", "80:http", &lab.pulled.image, "true"])
        .assert()
        .code(125);
    lab.berth()
        .args([
            "run",
            "-d",
            "--network",
            "none",
            "--memory",
            "1k",
            &lab.pulled.image,
            "true",
        ])
        .assert()
        .code(125) // a usage error is berth's own, as in Docker
        .stderr(predicate::str::contains("--memory"));
    assert!(
        lab.container_dirs().is_empty(),
        "left: {:?}",
        lab.container_dirs()
    );

    // -d: a command that can't start is an error now, not a container
    // that "runs" and exits 127 behind our back.
    lab.berth()
        .args([
            "run",
            "-d",
            "--network",
            "none",
            &lab.pulled.image,
            "/bin/no-such-program",
        ])
        .assert()
        .code(125)
        .stderr(predicate::str::contains(
            "berth: /bin/no-such-program: command not found",
        ))
        .stderr(predicate::str::contains("(exit status 127)"));
    assert!(
        lab.container_dirs().is_empty(),
        "left: {:?}",
        lab.container_dirs()
    );

    lab.detach(&["--name", "one", "--network", "none"], &["sleep", "600"]);
    lab.berth()
        .args([
            "run",
            "--name",
            "one",
            "--network",
            "none",
            &lab.pulled.image,
            "true",
        ])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("the name one is taken"));
    lab.berth()
        .args(["rm", "one"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("is running: stop it first"));
    lab.berth()
        .args(["rmi", &lab.pulled.image])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("is used by container(s) one"));
    lab.berth()
        .args(["logs", "nobody"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("no such container: nobody"));
    lab.berth().args(["exec", "one"]).assert().code(125);
    assert_eq!(lab.container_dirs().len(), 1);
    lab.ok(&["rm", "-f", "one"]);
    assert!(lab.container_dirs().is_empty());
    // Without containers, the image can go.
    lab.ok(&["rmi", &lab.pulled.image]);
}

#[test]
fn detached_containers_serve_each_other_by_name_and_the_host_by_port() {
    if !root_or_skip("detached_containers_serve_each_other_by_name_and_the_host_by_port") {
        return;
    }
    let mut lab = Lab::new();
    lab.network("t-engine", "10.254.1.0/24");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    lab.detach(
        &[
            "--name",
            "web",
            "--network",
            "t-engine",
            "-p",
            &format!("{port}:80"),
        ],
        &["httpd", "-f", "-p", "80", "-h", "/srv/www"],
    );
    eventually("the host reaches web through the published port", || {
        http_get(port).is_some_and(|r| r.contains("hello from web"))
    });
    let fetched = lab.run(
        &["--rm", "--network", "t-engine"],
        &[
            "sh",
            "-c",
            "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 web 80",
        ],
    );
    assert!(
        String::from_utf8_lossy(&fetched.stdout).contains("hello from web"),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    let record: serde_json::Value = serde_json::from_str(&lab.ok(&["inspect", "web"])).unwrap();
    assert!(
        record["state"]["address"]
            .as_str()
            .unwrap()
            .starts_with("10.254.1.")
    );

    // The network can't go while web is on it; after rm it can.
    lab.berth()
        .args(["network", "rm", "t-engine"])
        .assert()
        .failure();
    lab.ok(&["rm", "-f", "web"]);
    let leases = lab.pulled.root.path().join("networks/t-engine/leases");
    assert!(
        addresses_leased(&leases).is_empty(),
        "a lease outlived the container"
    );
    lab.ok(&["network", "rm", "t-engine"]);
    lab.networks.clear();
}

/// The addresses with a lease file in `dir` (its lock file is not one).
fn addresses_leased(dir: &Path) -> Vec<std::net::Ipv4Addr> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The bounding set berth leaves: Docker's defaults less CAP_MKNOD.
const KEPT_CAPABILITIES: &str = "00000000a00405fb";

#[test]
fn secure_defaults_hold_in_containers_and_in_exec() {
    if !root_or_skip("secure_defaults_hold_in_containers_and_in_exec") {
        return;
    }
    let lab = Lab::new();
    // Each line prints whether one thing a hardened root must not do failed.
    let probe = "grep -E '^(CapBnd|CapEff|CapInh|NoNewPrivs|Seccomp):' /proc/self/status; \
                 hostname other 2>/dev/null || echo 'no sethostname'; \
                 mknod /tmp/disk b 8 0 2>/dev/null || echo 'no mknod'; \
                 unshare -U true 2>/dev/null || echo 'no user namespace'; \
                 [ -s /proc/timer_list ] || echo 'timer_list masked'; \
                 (echo 1 > /proc/sys/vm/drop_caches) 2>/dev/null || echo '/proc/sys read-only'; \
                 readlink /proc/1/exe >/dev/null 2>&1 || echo 'init binary hidden'; \
                 touch /tmp/f && chown 1000 /tmp/f && echo 'chown works'";
    let expected = format!(
        "CapInh:\t0000000000000000\nCapEff:\t{KEPT_CAPABILITIES}\nCapBnd:\t{KEPT_CAPABILITIES}\n\
         NoNewPrivs:\t1\nSeccomp:\t2\nno sethostname\nno mknod\nno user namespace\n\
         timer_list masked\n/proc/sys read-only\ninit binary hidden\nchown works\n"
    );
    let out = lab.run(&["--rm", "--network", "none"], &["sh", "-c", probe]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        expected,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // exec'd processes get the same.
    lab.detach(&["--name", "box", "--network", "none"], &["sleep", "600"]);
    assert_eq!(lab.ok(&["exec", "box", "sh", "-c", probe]), expected);

    // Another user: switched to after the steps that need root, with no
    // capability left (as in Docker), the filter still on.
    let user = lab.run(
        &["--rm", "--network", "none", "-u", "1000:1000"],
        &[
            "sh",
            "-c",
            "id -u; grep -E '^(CapEff|Seccomp):' /proc/self/status",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&user.stdout),
        "1000\nCapEff:\t0000000000000000\nSeccomp:\t2\n",
        "{}",
        String::from_utf8_lossy(&user.stderr)
    );
    assert_eq!(lab.ok(&["exec", "-u", "1000", "box", "id", "-u"]), "1000\n");

    // --privileged: the stages' way, every capability and no filter.
    let privileged = lab.run(
        &["--rm", "--network", "none", "--privileged"],
        &[
            "sh",
            "-c",
            "grep -E '^Seccomp:' /proc/self/status; hostname other && echo renamed",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&privileged.stdout),
        "Seccomp:\t0\nrenamed\n",
        "{}",
        String::from_utf8_lossy(&privileged.stderr)
    );
}

/// A build context: a Dockerfile and the files it copies.
fn context(dir: &Path, dockerfile: &str) -> std::path::PathBuf {
    let context = dir.join("context");
    std::fs::create_dir_all(context.join("site/css")).unwrap();
    std::fs::write(context.join("site/index.html"), "built page\n").unwrap();
    std::fs::write(context.join("site/css/a.css"), "body {}\n").unwrap();
    std::fs::write(context.join("greeting.txt"), "hello\n").unwrap();
    std::fs::write(context.join("Dockerfile"), dockerfile).unwrap();
    context
}

const DOCKERFILE: &str = r#"FROM IMAGE
ARG WHO=world
ENV GREETING="hello ${WHO}" APP=/app
WORKDIR $APP
# a file made, one deleted, a directory replaced whole
RUN echo "made by RUN" > made.txt && rm /bin/vi && rm -r /srv && mkdir /srv && echo new > /srv/only && echo $$ > /run-pid
COPY site /site
COPY greeting.txt ./
CMD ["sh", "-c", "echo $GREETING; pwd; cat made.txt greeting.txt /site/index.html; ls /srv; [ -e /bin/vi ] || echo 'no vi'"]
"#;

#[test]
fn build_makes_an_image_that_runs_caches_its_steps_and_other_tools_read() {
    if !root_or_skip("build_makes_an_image_that_runs_caches_its_steps_and_other_tools_read") {
        return;
    }
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), &DOCKERFILE.replace("IMAGE", &lab.pulled.image));
    let ctx = ctx.to_string_lossy();

    let first = lab.ok(&["build", "-t", "demo:1", &ctx]);
    assert!(first.contains("STEP 4/7: RUN"), "{first}");
    assert!(!first.contains("Using cache"), "{first}");
    // /srv had www/ below: the opaque directory hides it.
    let expected = "hello world\n/app\nmade by RUN\nhello\nbuilt page\nonly\nno vi\n";
    let ran = lab
        .berth()
        .args(["run", "--rm", "--network", "none", "demo:1"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ran.stdout), expected);

    // The same build again: RUN comes from the cache, the image is the same.
    let digest = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("Digest:"))
            .unwrap()
            .to_string()
    };
    let second = lab.ok(&["build", "-t", "demo:1", &ctx]);
    assert!(second.contains("--> Using cache"), "{second}");
    assert_eq!(digest(&first), digest(&second));
    // A build argument changes what RUN sees, so RUN runs again.
    let third = lab.ok(&["build", "-t", "demo:2", "--build-arg", "WHO=you", &ctx]);
    assert!(!third.contains("Using cache"), "{third}");
    let ran = lab
        .berth()
        .args(["run", "--rm", "--network", "none", "demo:2"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&ran.stdout).starts_with("hello you\n"));

    // skopeo copies it (checking every digest), umoci unpacks it: the
    // layers say what RUN did, whiteouts included.
    let store = lab.pulled.root.path().join("images");
    let copy = dir.path().join("copy");
    let tool = |program: &str, args: &[&str]| {
        let out = Command::new(program).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    tool(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}:docker.io/library/demo:1", store.display()),
            &format!("oci:{}:demo", copy.display()),
        ],
    );
    let bundle = dir.path().join("bundle");
    tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:demo", copy.display()),
            &bundle.to_string_lossy(),
        ],
    );
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("app/made.txt")).unwrap(),
        "made by RUN\n"
    );
    assert!(!rootfs.join("bin/vi").exists(), "the whiteout was lost");
    assert!(rootfs.join("srv/only").exists() && rootfs.join("site/css/a.css").exists());
    assert!(
        !rootfs.join("srv/www").exists(),
        "the opaque directory was lost"
    );
    assert!(rootfs.join("bin/busybox").exists());
    // RUN went through the runtime's lifecycle (a bundle, create, start):
    // its command was the container's PID 1, as under runc.
    assert_eq!(
        std::fs::read_to_string(rootfs.join("run-pid")).unwrap(),
        "1\n"
    );
}

#[test]
fn a_failed_build_says_which_step_and_leaves_nothing() {
    if !root_or_skip("a_failed_build_says_which_step_and_leaves_nothing") {
        return;
    }
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(
        dir.path(),
        &format!(
            "FROM {}\nRUN echo partial > /x\nRUN exit 3\n",
            lab.pulled.image
        ),
    );
    lab.berth()
        .args(["build", "-t", "broken", &ctx.to_string_lossy()])
        .assert()
        .code(125)
        .stderr(predicate::str::contains(
            "Dockerfile line 3: `RUN exit 3`: failed with exit code 3",
        ));
    assert!(!lab.ok(&["images"]).contains("broken"));
    let builds = lab.pulled.root.path().join("build");
    assert!(
        std::fs::read_dir(&builds).map_or(true, |mut d| d.next().is_none()),
        "the build's scratch directory was left"
    );

    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {}\nCOPY passwd /x\n", lab.pulled.image),
    )
    .unwrap();
    std::os::unix::fs::symlink("/etc/passwd", ctx.join("passwd")).unwrap();
    lab.berth()
        .args(["build", "-t", "escape", &ctx.to_string_lossy()])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("outside the build context"));
    std::fs::write(ctx.join("Dockerfile"), "FROM a\n  FROBNICATE true\n").unwrap();
    lab.berth()
        .args(["build", "-t", "odd", &ctx.to_string_lossy()])
        .assert()
        .code(125)
        .stderr(predicate::str::contains(
            "Dockerfile:2:3: unknown instruction FROBNICATE",
        ));
}

/// `berth-runtime` on a bundle that umoci made from the test image, its
/// command replaced by `command`.
fn bundle(lab: &Lab, dir: &Path, command: &[&str]) -> std::path::PathBuf {
    let store = lab.pulled.root.path().join("images");
    let layout = dir.join("layout");
    let run = |program: &str, args: &[&str]| {
        let out = Command::new(program).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let reference = lab.pulled.image.clone();
    run(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}:{reference}", store.display()),
            &format!("oci:{}:img", layout.display()),
        ],
    );
    let bundle = dir.join("bundle");
    run(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:img", layout.display()),
            &bundle.to_string_lossy(),
        ],
    );
    let path = bundle.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["process"]["terminal"] = false.into();
    config["process"]["args"] = command
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .into();
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    bundle
}

#[test]
fn the_oci_runtime_creates_starts_kills_and_deletes_a_umoci_bundle() {
    if !root_or_skip("the_oci_runtime_creates_starts_kills_and_deletes_a_umoci_bundle") {
        return;
    }
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle(
        &lab,
        dir.path(),
        &[
            "sh",
            "-c",
            "hostname > /ran; grep CapBnd /proc/self/status >> /ran; echo $$ > /pid; exec sleep 600",
        ],
    );
    let state_root = dir.path().join("state");
    let runtime = || runtime_in(&state_root);
    // Whatever happens, no container outlives the test.
    let _cleanup = RuntimeCleanup(state_root.clone(), vec!["web", "second"]);
    // A created container's process keeps the caller's stdout and stderr,
    // as runc's does: give it none to hold.
    let create = |id: &str, extra: &[&str]| {
        let status = runtime()
            .args(["create", "--bundle"])
            .arg(&bundle)
            .args(extra)
            .arg(id)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "create {id}");
    };
    let state = |id: &str| -> serde_json::Value {
        let out = runtime().args(["state", id]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let pid_file = dir.path().join("pid");

    // create: the container exists, its process waits, the command has not run.
    create("web", &["--pid-file", &pid_file.to_string_lossy()]);
    let created = state("web");
    assert_eq!(created["status"], "created");
    let pid = created["pid"].as_i64().unwrap();
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), pid.to_string());
    let host_uts = std::fs::read_link("/proc/self/ns/uts").unwrap();
    assert_ne!(
        std::fs::read_link(format!("/proc/{pid}/ns/uts")).unwrap(),
        host_uts
    );
    assert!(!bundle.join("rootfs/ran").exists(), "ran before start");
    runtime()
        .args(["create", "--bundle"])
        .arg(&bundle)
        .arg("web")
        .assert()
        .code(125)
        .stderr(predicate::str::contains("container web already exists"));

    // runc's process model: `create` has exited, and no berth process
    // stands between the container and whoever adopted it.
    let parent = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let parent: i32 = parent[parent.rfind(')').unwrap() + 2..]
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let parent_name = std::fs::read_to_string(format!("/proc/{parent}/comm")).unwrap();
    assert!(
        !parent_name.starts_with("berth"),
        "init's parent is {parent_name}"
    );

    // start: the command runs with the config's hostname and capabilities,
    // as the container's PID 1 (init became it).
    runtime().args(["start", "web"]).assert().success();
    assert_eq!(state("web")["status"], "running");
    eventually("the command ran", || bundle.join("rootfs/ran").exists());
    eventually("the command wrote", || {
        std::fs::read_to_string(bundle.join("rootfs/ran")).is_ok_and(|t| t.lines().count() == 2)
    });
    // umoci's config keeps CAP_AUDIT_WRITE, CAP_KILL and CAP_NET_BIND_SERVICE.
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/ran")).unwrap(),
        "umoci-default\nCapBnd:\t0000000020000420\n"
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/pid")).unwrap(),
        "1\n"
    );
    runtime()
        .args(["delete", "web"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("is running"));

    // exec: one more process, inside, its output and exit code ours.
    runtime()
        .args(["exec", "web", "sh", "-c", "echo in $(hostname); exit 7"])
        .assert()
        .code(7)
        .stdout("in umoci-default\n");
    let listed = runtime()
        .args(["ps", "--format", "json", "web"])
        .output()
        .unwrap();
    let listed: Vec<i64> = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed, vec![pid], "ps lists the container's processes");

    // kill, then delete: nothing is left.
    // The command is PID 1 now: like any init, it ignores TERM unless it
    // handles it. KILL always works.
    runtime().args(["kill", "web", "KILL"]).assert().success();
    eventually("it stopped", || state("web")["status"] == "stopped");
    runtime().args(["delete", "web"]).assert().success();
    runtime()
        .args(["state", "web"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("container web does not exist"));
    assert!(cgroups_of("web").is_empty(), "its cgroup was left");

    // A created container can be deleted with --force; a config berth
    // can't honour is refused by name, leaving no state behind.
    create("second", &[]);
    runtime()
        .args(["delete", "--force", "second"])
        .assert()
        .success();
    let path = bundle.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["process"]["terminal"] = true.into();
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    runtime()
        .args(["create", "--bundle"])
        .arg(&bundle)
        .arg("third")
        .assert()
        .code(125)
        .stderr(predicate::str::contains("give --console-socket"));

    // Set-up errors come back from `create` itself, and leave nothing.
    config["process"]["terminal"] = false.into();
    config["process"]["args"] = serde_json::json!(["/no/such/program"]);
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    refused_leaving_nothing(
        runtime(),
        "create",
        &bundle,
        "third",
        "\"/no/such/program\": executable file not found in $PATH: no such file or directory",
        &state_root,
    );
    let left = std::fs::read_dir(state_root.join("runtime"))
        .unwrap()
        .count();
    assert_eq!(left, 0, "state left behind");
}

/// `berth-runtime --root STATE_ROOT`, to add a command to.
fn runtime_in(state_root: &Path) -> Command {
    let mut command = Command::new(bin("berth-runtime"));
    command.arg("--root").arg(state_root);
    command
}

/// Deletes (with --force) the runtime containers named, on drop.
struct RuntimeCleanup(std::path::PathBuf, Vec<&'static str>);

impl Drop for RuntimeCleanup {
    fn drop(&mut self) {
        for id in &self.1 {
            let _ = Command::new(bin("berth-runtime"))
                .arg("--root")
                .arg(&self.0)
                .args(["delete", "--force", id])
                .output();
        }
    }
}

#[test]
fn the_oci_runtime_mounts_exactly_what_the_bundle_lists() {
    if !root_or_skip("the_oci_runtime_mounts_exactly_what_the_bundle_lists") {
        return;
    }
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let script = "touch /data-ro/from-ro 2>/dev/null && echo ro-writable || echo ro-refused; \
        touch /data-rw/from-rw && echo rw-ok; \
        touch /on-the-root 2>/dev/null && echo root-writable || echo root-refused; \
        grep ' /scratch ' /proc/mounts | cut -d' ' -f3,4; stat -c %a /scratch; \
        cat /linked; echo done; exec sleep 600";
    let command = format!("({script}) > /data-rw/ran");
    let bundle = bundle(&lab, dir.path(), &["sh", "-c", &command]);
    let path = bundle.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let mounts = config["mounts"].as_array_mut().unwrap();
    let source = shared.to_string_lossy().into_owned();
    mounts.push(
        serde_json::json!({"destination": "/data-ro", "type": "bind",
        "source": source, "options": ["rbind", "ro", "nosuid"]}),
    );
    mounts.push(
        serde_json::json!({"destination": "/data-rw", "type": "bind",
        "source": source, "options": ["bind"]}),
    );
    mounts.push(
        serde_json::json!({"destination": "/scratch", "type": "tmpfs",
        "source": "tmpfs", "options": ["nosuid", "nodev", "mode=700", "size=1m"]}),
    );
    // A file bound where the image has a symlink (as images often have
    // /etc/resolv.conf): the link is replaced, not followed out of the root.
    std::os::unix::fs::symlink("/etc/passwd", bundle.join("rootfs/linked")).unwrap();
    let bound = dir.path().join("bound");
    std::fs::write(&bound, "bound from the host\n").unwrap();
    let host_passwd = std::fs::read("/etc/passwd").unwrap();
    let mounts = config["mounts"].as_array_mut().unwrap();
    mounts.push(serde_json::json!({"destination": "/linked", "type": "bind",
        "source": bound, "options": ["bind", "ro"]}));
    config["root"]["readonly"] = true.into();
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    let state_root = dir.path().join("state");
    let runtime = || runtime_in(&state_root);
    let _cleanup = RuntimeCleanup(state_root.clone(), vec!["mounts", "escape"]);
    let status = runtime()
        .args(["create", "--bundle"])
        .arg(&bundle)
        .arg("mounts")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "create");
    assert!(
        runtime()
            .args(["start", "mounts"])
            .status()
            .unwrap()
            .success()
    );
    let ran = shared.join("ran");
    eventually("the command reported its mounts", || {
        std::fs::read_to_string(&ran).is_ok_and(|r| r.contains("done"))
    });
    let report = std::fs::read_to_string(&ran).unwrap();
    assert!(
        report.contains("ro-refused"),
        "an ro bind mount was writable: {report}"
    );
    assert!(
        report.contains("root-refused"),
        "root.readonly was not: {report}"
    );
    assert!(report.contains("rw-ok"), "{report}");
    assert!(report.contains("tmpfs rw,nosuid,nodev"), "{report}");
    assert!(report.contains("size=1024k"), "{report}");
    assert!(report.contains("\n700\n"), "{report}");
    assert!(shared.join("from-rw").exists());
    assert!(!shared.join("from-ro").exists());
    assert!(report.contains("bound from the host"), "{report}");
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), host_passwd);
    let out = runtime()
        .args(["list", "--format", "json"])
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("list is JSON");
    assert_eq!(listed[0]["id"], "mounts", "{listed}");
    assert_eq!(listed[0]["status"], "running", "{listed}");
    let table =
        String::from_utf8_lossy(&runtime().arg("list").output().unwrap().stdout).into_owned();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("mounts ") && l.contains("running")),
        "{table}"
    );

    // A destination that goes through a symlink of the image is refused:
    // before pivot_root, it would resolve against the host's root.
    std::os::unix::fs::symlink("/etc", bundle.join("rootfs/evil")).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
        "destination": "/evil/berth-mounted", "type": "tmpfs", "source": "tmpfs"}));
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    // Set-up errors show once the container's init does its set-up: today
    // at `start` (in what `create`'s caller gave it as stderr).
    let errors = dir.path().join("escape.stderr");
    let created = runtime()
        .args(["create", "--bundle"])
        .arg(&bundle)
        .arg("escape")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&errors).unwrap())
        .status()
        .unwrap();
    if created.success() {
        let _ = runtime().args(["start", "escape"]).output();
        eventually("the refused container stopped", || {
            runtime()
                .args(["state", "escape"])
                .output()
                .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("stopped"))
        });
    }
    let said = std::fs::read_to_string(&errors).unwrap();
    assert!(said.contains("goes through a symlink"), "{said}");
    assert!(!Path::new("/etc/berth-mounted").exists());
}

#[test]
fn the_oci_runtime_writes_a_spec_and_describes_itself() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = || Command::new(bin("berth-runtime"));
    let out = runtime()
        .args(["spec", "--bundle"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spec = oci_spec::runtime::Spec::load(dir.path().join("config.json")).expect("a valid spec");
    assert_eq!(spec.root().as_ref().unwrap().path(), Path::new("rootfs"));
    let again = runtime()
        .args(["spec", "--bundle"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));

    let out = runtime().arg("features").output().unwrap();
    assert!(out.status.success());
    let features: oci_spec::runtime::Features =
        serde_json::from_slice(&out.stdout).expect("the runtime spec's features document");
    let namespaces = features
        .linux()
        .as_ref()
        .unwrap()
        .namespaces()
        .clone()
        .unwrap();
    assert!(
        namespaces.iter().any(|n| format!("{n:?}").contains("Pid")),
        "{namespaces:?}"
    );
}

#[test]
fn the_oci_runtime_logs_errors_as_json_for_its_callers() {
    if !root_or_skip("the_oci_runtime_logs_errors_as_json_for_its_callers") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.json");
    let out = Command::new(bin("berth-runtime"))
        .arg("--root")
        .arg(dir.path().join("state"))
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "state", "berth-nosuch"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON object");
    assert_eq!(line["level"], "error");
    assert!(
        line["msg"].as_str().unwrap().contains("berth-nosuch"),
        "{line}"
    );
    let time = line["time"].as_str().unwrap();
    assert!(
        time.len() == 20 && time.ends_with('Z'),
        "not RFC 3339: {time}"
    );
}

#[test]
fn a_killed_monitor_takes_its_container_and_rm_clears_what_it_left() {
    if !root_or_skip("a_killed_monitor_takes_its_container_and_rm_clears_what_it_left") {
        return;
    }
    let lab = Lab::new();
    let id = lab.detach(
        &["--name", "orphan", "--network", "none"],
        &["sleep", "600"],
    );
    let record: serde_json::Value = serde_json::from_str(&lab.ok(&["inspect", "orphan"])).unwrap();
    let monitor = record["state"]["monitor"]["pid"].as_i64().unwrap() as i32;
    let init = record["state"]["init"]["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // The kernel ends the container with its monitor (parent-death signal).
    eventually("the container died with its monitor", || {
        std::fs::read_to_string(format!("/proc/{init}/stat"))
            .map_or(true, |stat| stat.contains(") Z "))
    });
    let ps = lab.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (unknown)"), "{ps}");
    assert!(!lab.ok(&["ps"]).contains(&id));
    assert!(
        !cgroups_of(&id).is_empty(),
        "nobody could have removed it yet"
    );
    lab.ok(&["rm", "orphan"]);
    assert!(cgroups_of(&id).is_empty(), "rm left the cgroup");
}

#[test]
fn run_and_exec_with_it_give_a_terminal_you_can_type_into() {
    if !root_or_skip("run_and_exec_with_it_give_a_terminal_you_can_type_into") {
        return;
    }
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let status = dir.path().join("status");
    let berth = format!(
        "{} --root {}",
        bin("berth").display(),
        lab.pulled.root.path().display()
    );
    let tmux = Tmux::start(
        dir.path().join("tmux-run"),
        &format!(
            "{berth} run -it --name tty --network none {} sh; echo exited=$? > {}; sleep 60",
            lab.pulled.image,
            status.display()
        ),
    );
    // A prompt, a terminal of the window's size, and Ctrl-C reaching the
    // command through the container's own terminal.
    // (capture-pane drops the blank after the prompt's `#`.)
    eventually("the shell's prompt", || tmux.screen().contains("/ #"));
    tmux.type_line("echo typed-$((6*7)); stty size");
    eventually("the shell answered", || {
        tmux.screen().contains("typed-42\n30 100")
    });
    let sleeper = format!("sleep 42{}", std::process::id());
    tmux.type_line(&sleeper);
    eventually("sleep started", || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| c == format!("{}\0", sleeper.replace(' ', "\0")).as_bytes())
        })
    });
    tmux.command().args(["send-keys", "C-c"]).status().unwrap();
    tmux.type_line("echo interrupted=$?");
    eventually("Ctrl-C ended sleep", || {
        tmux.screen().contains("interrupted=130")
    });

    // exec -it into the same container, from another terminal.
    let exec = Tmux::start(
        dir.path().join("tmux-exec"),
        &format!("{berth} exec -it tty sh"),
    );
    eventually("exec's prompt", || exec.screen().contains("/ #"));
    exec.type_line("hostname; stty size");
    eventually("exec's shell answered", || {
        exec.screen().contains("tty\n30 100")
    });
    exec.type_line("exit");

    tmux.type_line("exit 7");
    eventually("run -it ended with the shell's status", || {
        std::fs::read_to_string(&status).is_ok_and(|s| s == "exited=7\n")
    });
}

#[test]
fn start_runs_a_stopped_container_again_on_its_own_files() {
    if !root_or_skip("start_runs_a_stopped_container_again_on_its_own_files") {
        return;
    }
    let lab = Lab::new();
    // Each run adds a line to a file in the container's writable layer.
    lab.detach(
        &["--name", "again", "--network", "none"],
        &["sh", "-c", "echo run >> /runs; wc -l < /runs"],
    );
    eventually("the first run ended", || {
        lab.ok(&["ps", "-a"]).contains("Exited (0)")
    });
    assert_eq!(lab.ok(&["start", "again"]), "again\n");
    eventually("the second run ended", || {
        lab.ok(&["logs", "again"]) == "1\n2\n"
    });
    let record: serde_json::Value = serde_json::from_str(&lab.ok(&["inspect", "again"])).unwrap();
    assert_eq!(record["state"]["runs"], 2);
    lab.berth()
        .args(["start", "nobody"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("no such container: nobody"));
}

#[test]
fn the_oci_runtime_filters_system_calls_as_the_bundles_seccomp_profile_says() {
    if !root_or_skip("the_oci_runtime_filters_system_calls_as_the_bundles_seccomp_profile_says") {
        return;
    }
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle(&lab, dir.path(), &["true"]);
    let state_root = dir.path().join("state");
    let _cleanup = RuntimeCleanup(state_root.clone(), vec!["deny", "allow", "live"]);
    let runtime = || runtime_in(&state_root);
    let path = bundle.join("config.json");
    let original: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    // Podman and Docker leave noNewPrivileges false: the filters must then
    // go in while init still has CAP_SYS_ADMIN, and not set it themselves.
    let configure = |seccomp: &serde_json::Value, command: &[&str]| {
        let mut config = original.clone();
        config["linux"]["seccomp"] = seccomp.clone();
        config["process"]["args"] = serde_json::json!(command);
        config["process"]["noNewPrivileges"] = false.into();
        std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    };
    let run = |id: &str, seccomp: &serde_json::Value, script: &str| {
        configure(seccomp, &["sh", "-c", script]);
        let out = runtime()
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(id)
            .output()
            .unwrap();
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        assert!(out.status.success(), "{id}: {}", text(&out.stderr));
        (text(&out.stdout), text(&out.stderr))
    };

    // A denylist: mkdir fails with the errno asked for, sethostname kills
    // the process that calls it; the rest works.
    let denylist = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["sethostname"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["no_such_call"], "action": "SCMP_ACT_KILL"}
        ]
    });
    let (out, err) = run(
        "deny",
        &denylist,
        "mkdir /made; echo mkdir=$?; touch /touched && echo touched; \
         hostname other; echo hostname=$?; grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status",
    );
    assert!(
        err.contains("can't create directory '/made': Operation not permitted"),
        "{err}"
    );
    assert_eq!(
        out, "mkdir=1\ntouched\nhostname=159\nNoNewPrivs:\t0\nSeccomp:\t2\n",
        "hostname died of SIGSYS (128 + 31); no_new_privs stayed off"
    );
    assert!(bundle.join("rootfs/touched").exists());
    assert!(!bundle.join("rootfs/made").exists());

    // An allowlist, Podman's own default profile as Podman hands it over
    // (its rules for x86_64 and Podman's capabilities), less mkdir: the
    // shell and berth's last steps before exec run under it, and a call it
    // doesn't name gets its default, ENOSYS.
    let source = "/usr/share/containers/seccomp.json";
    let podman: serde_json::Value =
        serde_json::from_slice(&std::fs::read(source).unwrap_or_else(|e| {
            panic!("{source}: {e}: install containers-common (it comes with podman)")
        }))
        .unwrap();
    let caps = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
        "CAP_SETFCAP",
        "CAP_SETGID",
        "CAP_SETPCAP",
        "CAP_SETUID",
        "CAP_SYS_CHROOT",
    ];
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    let rules: Vec<serde_json::Value> = podman["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|rule| {
            let (includes, excludes) = (&rule["includes"], &rule["excludes"]);
            let arches = strings(&includes["arches"]);
            (arches.is_empty() || arches.iter().any(|a| a == "amd64"))
                && strings(&includes["caps"])
                    .iter()
                    .all(|c| caps.contains(&c.as_str()))
                && !strings(&excludes["caps"])
                    .iter()
                    .any(|c| caps.contains(&c.as_str()))
                && !strings(&excludes["arches"]).iter().any(|a| a == "amd64")
        })
        .map(|rule| {
            let names: Vec<String> = strings(&rule["names"])
                .into_iter()
                .filter(|name| name != "mkdir" && name != "mkdirat")
                .collect();
            serde_json::json!({
                "names": names,
                "action": rule["action"],
                "errnoRet": rule["errnoRet"],
                "args": rule["args"],
            })
        })
        .collect();
    let allowlist = serde_json::json!({
        "defaultAction": podman["defaultAction"],
        "defaultErrnoRet": podman["defaultErrnoRet"],
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": rules,
    });
    assert_eq!(allowlist["defaultAction"], "SCMP_ACT_ERRNO");
    let (out, err) = run(
        "allow",
        &allowlist,
        "mkdir /made; echo mkdir=$?; touch /touched2 && echo touched; ls / >/dev/null && echo listed",
    );
    assert!(
        err.contains("can't create directory '/made': Function not implemented"),
        "{err}"
    );
    assert_eq!(out, "mkdir=1\ntouched\nlisted\n");

    // `exec` runs its process under the same profile.
    configure(&denylist, &["sleep", "600"]);
    let status = runtime()
        .args(["create", "--bundle"])
        .arg(&bundle)
        .arg("live")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "create live");
    runtime().args(["start", "live"]).assert().success();
    runtime()
        .args(["exec", "live", "sh", "-c", "mkdir /made; echo mkdir=$?"])
        .assert()
        .success()
        .stdout("mkdir=1\n")
        .stderr(predicate::str::contains("Operation not permitted"));
    runtime().args(["kill", "live", "KILL"]).assert().success();
    eventually("live stopped", || {
        runtime()
            .args(["state", "live"])
            .output()
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("\"stopped\""))
    });
    runtime().args(["delete", "live"]).assert().success();

    // What berth can't honour is refused at create, by field.
    let notify = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
    });
    configure(&notify, &["true"]);
    refused_leaving_nothing(
        runtime(),
        "run",
        &bundle,
        "refused",
        "linux.seccomp.syscalls[0].action: SCMP_ACT_NOTIFY is not supported",
        &state_root,
    );
}

/// `berth-runtime SUBCOMMAND --bundle BUNDLE ID` fails with 125, saying
/// `why`, and leaves neither a cgroup nor state for `id`.
fn refused_leaving_nothing(
    mut runtime: Command,
    subcommand: &str,
    bundle: &Path,
    id: &str,
    why: &str,
    state_root: &Path,
) {
    runtime
        .args([subcommand, "--bundle"])
        .arg(bundle)
        .arg(id)
        .assert()
        .code(125)
        .stderr(predicate::str::contains(why));
    assert!(cgroups_of(id).is_empty(), "{id}: its cgroup was left");
    assert!(
        !state_root.join("runtime").join(id).exists(),
        "{id}: its state was left"
    );
}

#[test]
fn the_oci_runtime_runs_hooks_inside_the_container_at_create_and_start() {
    if !root_or_skip("the_oci_runtime_runs_hooks_inside_the_container_at_create_and_start") {
        return;
    }
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle(
        &lab,
        dir.path(),
        &["sh", "-c", "cat /started-by-hook > /ran"],
    );
    let seen = dir.path().join("create-hook.json");
    let path = bundle.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    // createContainer: in the container's namespaces, before pivot_root, so
    // a host path (the host's /bin/sh, a file in our temp dir) still works;
    // startContainer: after `start`, in the container's root. The create
    // hook also looks for itself in the container's cgroup (through the
    // host's /sys, still mounted then): init builds its root while it is
    // moved there, and must wait for the move before it runs anything.
    let cgroup_name = format!("berth-test-hooked-{}", std::process::id());
    config["linux"]["cgroupsPath"] = format!("/{cgroup_name}").into();
    let in_cgroup = dir.path().join("create-hook.cgroup");
    config["hooks"] = serde_json::json!({
        "createContainer": [{"path": "/bin/sh", "args": ["sh", "-c",
            format!("cat > {seen}; readlink /proc/self/ns/mnt >> {seen}; \
                     for f in /sys/fs/cgroup/pids/{cgroup_name}/cgroup.procs \
                              /sys/fs/cgroup/{cgroup_name}/cgroup.procs; do \
                         grep -qx $$ $f 2>/dev/null && echo yes >> {in_cgroup}; \
                     done; true",
                    seen = seen.display(), in_cgroup = in_cgroup.display())]}],
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "echo hello > /started-by-hook"]}],
    });
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    let state_root = dir.path().join("state");
    let runtime = || runtime_in(&state_root);
    let _cleanup = RuntimeCleanup(state_root.clone(), vec!["hooked"]);
    // Not a pipe: the container's init keeps `create`'s stdio, as with runc.
    let errors = dir.path().join("create.stderr");
    let created = runtime()
        .args(["create", "--bundle"])
        .arg(&bundle)
        .arg("hooked")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&errors).unwrap())
        .status()
        .unwrap();
    assert!(
        created.success(),
        "{}",
        std::fs::read_to_string(&errors).unwrap()
    );
    let said = std::fs::read_to_string(&seen).expect("the createContainer hook ran");
    assert_eq!(
        std::fs::read_to_string(&in_cgroup).ok().as_deref(),
        Some("yes\n"),
        "the createContainer hook ran outside the container's cgroup {cgroup_name}"
    );
    let end = said.rfind('}').unwrap() + 1;
    let (document, namespace) = said.split_at(end);
    let state: serde_json::Value = serde_json::from_str(document).unwrap();
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], "hooked");
    let pid = state["pid"].as_i64().unwrap();
    let init_mnt = std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
        .unwrap_or_else(|e| panic!("the hooks' state names init {pid}: {e}"));
    assert_eq!(
        namespace.trim(),
        init_mnt.to_string_lossy(),
        "not in the container's mounts"
    );
    assert!(
        !bundle.join("rootfs/started-by-hook").exists(),
        "startContainer ran before start"
    );
    runtime().args(["start", "hooked"]).assert().success();
    eventually("the command saw what startContainer wrote", || {
        std::fs::read_to_string(bundle.join("rootfs/ran")).is_ok_and(|r| r == "hello\n")
    });
}

/// Every file and directory under `dir` (not following links), with its
/// owner.
fn owners_under(dir: &Path) -> Vec<(std::path::PathBuf, u32)> {
    use std::os::unix::fs::MetadataExt;
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let meta = entry.path().symlink_metadata().unwrap();
            if meta.is_dir() {
                todo.push(entry.path());
            }
            found.push((entry.path(), meta.uid()));
        }
    }
    found
}

#[test]
fn with_userns_container_root_is_an_ordinary_user_of_the_host() {
    if !root_or_skip("with_userns_container_root_is_an_ordinary_user_of_the_host") {
        return;
    }
    let mut lab = Lab::new();
    let layers = lab.pulled.root.path().join("layers");
    let id = lab.detach(
        &["--userns", "--network", "none"],
        &["sh", "-c", "echo made > /etc/made-inside; exec sleep 600"],
    );
    // On the host, the container's processes are uid 100000, not root.
    let record: serde_json::Value = serde_json::from_str(&lab.ok(&["inspect", &id])).unwrap();
    let init = record["state"]["init"]["pid"].as_i64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uids.split_whitespace().collect::<Vec<_>>(),
        ["Uid:", "100000", "100000", "100000", "100000"],
        "{status}"
    );
    // Inside, it is root, the image's files are root's, and it can change
    // them (through idmapped layers); `exec` joins its user namespace too.
    let inside = lab.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; stat -c %u /etc/passwd /; cat /etc/made-inside; \
         echo extra >> /etc/passwd && echo appended",
    ]);
    let words: Vec<&str> = inside.split_whitespace().collect();
    assert_eq!(
        words,
        ["0", "0", "100000", "65536", "0", "0", "made", "appended"],
        "{inside}"
    );
    // What it wrote is in its own upper layer, owned by its range of the
    // host's IDs; the image's layers are as they were, all root's.
    let upper = lab.containers_dir().join(&id).join("upper");
    for name in ["etc/made-inside", "etc/passwd"] {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(upper.join(name)).unwrap();
        assert_eq!(meta.uid(), 100_000, "{name} in the upper layer");
    }
    let in_layers = owners_under(&layers);
    assert!(!in_layers.is_empty());
    for (path, uid) in &in_layers {
        assert_eq!(*uid, 0, "{} in the image's layers", path.display());
        assert!(!path.ends_with("etc/made-inside"), "{}", path.display());
    }
    // Host files handed in (/etc/hostname, a bind of the engine's) belong
    // to host root, whom the container's root is not: it can't write them.
    let hostname_file = lab.containers_dir().join(&id).join("hostname");
    let before = std::fs::read(&hostname_file).unwrap();
    let out = lab
        .berth()
        .args(["exec", &id, "sh", "-c", "echo evil > /etc/hostname"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "container root wrote a host root's file"
    );
    assert_eq!(std::fs::read(&hostname_file).unwrap(), before);
    // Without --userns, container root *is* host root (with fewer
    // capabilities): the same write works. (What makes the check above mean
    // something.)
    let out = lab.run(
        &["--rm", "--network", "none"],
        &["sh", "-c", "echo fine > /etc/hostname && echo wrote"],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "wrote\n");
    lab.ok(&["rm", "-f", &id]);
    assert!(cgroups_of(&id).is_empty(), "{:?}", cgroups_of(&id));
    // On a network, with ping for every group it maps.
    lab.network("t-userns", "10.254.2.0/24");
    let out = lab.run(
        &["--rm", "--userns", "--network", "t-userns"],
        &[
            "sh",
            "-c",
            "cat /proc/sys/net/ipv4/ping_group_range; ip -o -4 addr show eth0",
        ],
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.starts_with("0\t65535\n"), "{said}");
    assert!(said.contains("inet "), "{said}");
}

/// Set in the VM that [`on_cgroup_v2_the_runtime_clones_init_into_its_cgroup`]
/// starts on a v1 or hybrid host: there the host must be cgroup v2.
const IN_V2_VM_VAR: &str = "BERTH_TEST_IN_V2_VM";

/// On a cgroup v2 host, init is cloned straight into its cgroup (`clone3`
/// with `CLONE_INTO_CGROUP`): no write to any `cgroup.procs`, so no wait
/// for a grace period. Its cgroup namespace and limits are as with a move.
/// On a v1 or hybrid host this test runs itself again in a cgroup v2 VM
/// (`scripts/v2-vm`, as the book's v2 transcripts do).
#[test]
fn on_cgroup_v2_the_runtime_clones_init_into_its_cgroup() {
    let test = "on_cgroup_v2_the_runtime_clones_init_into_its_cgroup";
    if !root_or_skip(test) {
        return;
    }
    let v2 = stage03_cgroups::layout::detect().unwrap() == stage03_cgroups::layout::Layout::Unified;
    if !v2 {
        assert!(
            std::env::var_os(IN_V2_VM_VAR).is_none(),
            "{IN_V2_VM_VAR} is set, but this host is not cgroup v2"
        );
        if std::env::var("BERTH_SKIP_V2_VM").is_ok_and(|v| v == "1") {
            eprintln!("SKIPPED {test} on this cgroup v1/hybrid host: BERTH_SKIP_V2_VM=1");
            return;
        }
        let (passed, printed) = run_test_in_v2_vm(test, &[(IN_V2_VM_VAR, "1".into())]);
        assert!(
            passed,
            "in a cgroup v2 VM (set BERTH_SKIP_V2_VM=1 to skip on purpose):\n{printed}"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    stage01_chroot::rootfs::make_busybox_rootfs(
        &dir.path().join("rootfs"),
        Path::new(stage01_chroot::rootfs::DEFAULT_BUSYBOX),
    )
    .unwrap();
    Command::new(bin("berth-runtime"))
        .arg("spec")
        .current_dir(dir.path())
        .assert()
        .success();
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let cgroup = format!("/berth-test-born-{}", std::process::id());
    config["process"]["args"] =
        serde_json::json!(["sh", "-c", "cat /proc/self/cgroup /sys/fs/cgroup/pids.max"]);
    config["linux"]["cgroupsPath"] = cgroup.clone().into();
    config["linux"]["resources"] = serde_json::json!({"pids": {"limit": 42}});
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    let trace = dir.path().join("trace");
    let output = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=clone,clone3,openat", "-o"])
        .arg(&trace)
        .arg(bin("berth-runtime"))
        .arg("--root")
        .arg(dir.path().join("state"))
        .args(["run", "--bundle"])
        .arg(dir.path())
        .arg("born")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "0::/\n42\n",
        "its cgroup as its root, and its limit"
    );
    let trace = std::fs::read_to_string(&trace).unwrap();
    assert!(
        trace
            .lines()
            .any(|l| l.contains("clone3(") && l.contains("CLONE_INTO_CGROUP")),
        "no clone3 into the cgroup:\n{trace}"
    );
    let moves: Vec<&str> = trace
        .lines()
        .filter(|l| l.contains("cgroup.procs") && l.contains("O_WRONLY"))
        .collect();
    assert!(moves.is_empty(), "moved after all: {moves:?}");
    assert!(
        !Path::new("/sys/fs/cgroup").join(&cgroup[1..]).exists(),
        "its cgroup is left"
    );
}
