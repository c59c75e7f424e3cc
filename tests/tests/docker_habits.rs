//! What Docker users type without thinking, on the real kernel: `run -h`,
//! exit code 125 for berth's own mistakes, names with `_`, images by ID, a
//! `ps` that shows the image's command, long network names, and `run`'s
//! options beyond the workshop's (--env-file, --add-host, --dns,
//! --read-only, --ulimit, --device, --security-opt, --label, --stop-signal,
//! --stop-timeout). Networks here use 10.251.x.

use std::path::Path;
use std::process::Command;

use assert_cmd::prelude::*;
use berth_tests::lab::Lab;
use berth_tests::root_or_skip;
use predicates::prelude::*;

#[test]
fn the_command_line_behaves_as_docker_users_expect() {
    if !root_or_skip("the_command_line_behaves_as_docker_users_expect") {
        return;
    }
    let lab = Lab::new();
    // -h is --hostname in run; help is --help, which exits 0.
    let out = lab.run(
        &["--rm", "--network", "none", "-h", "myhost"],
        &["hostname"],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "myhost\n");
    lab.berth()
        .args(["run", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("-h, --hostname"));
    // A usage error is berth's, 125, not the command's.
    lab.berth()
        .args(["run", "--no-such-flag"])
        .assert()
        .code(125);
    lab.berth().arg("no-such-command").assert().code(125);

    // Names with '_' (not a hostname: the ID is the hostname then).
    lab.detach(
        &["--name", "my_box", "--network", "none"],
        &["sleep", "600"],
    );
    assert!(lab.ok(&["ps"]).contains("my_box"));
    let hostname = lab.ok(&["exec", "my_box", "hostname"]);
    assert!(
        hostname.trim().len() == 12 && hostname.trim().chars().all(|c| c.is_ascii_hexdigit()),
        "{hostname}"
    );
    lab.berth()
        .args(["run", "--name", "_lead", &lab.pulled.image, "true"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("not a valid container name"));
    lab.ok(&["rm", "-f", "my_box"]);

    // An image by the ID `berth images` shows, or a prefix of it.
    let images = lab.ok(&["images"]);
    let id = images
        .split_whitespace()
        .find_map(|word| word.strip_prefix("sha256:"))
        .expect("a digest in berth images")
        .to_string();
    let out = lab.run(&["--rm", "--network", "none"], &["echo", "by ID"]);
    assert!(out.status.success());
    let by_id = lab
        .berth()
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            &id[..8],
            "echo",
            "by ID",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&by_id.stdout),
        "by ID\n",
        "{}",
        String::from_utf8_lossy(&by_id.stderr)
    );

    // ps shows the command the image's Cmd runs, not "".
    let context = tempfile::tempdir().unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        format!("FROM {}\nCMD [\"sleep\", \"600\"]\n", lab.pulled.image),
    )
    .unwrap();
    lab.ok(&["build", "-t", "sleeper:1", context.path().to_str().unwrap()]);
    lab.berth()
        .args([
            "run",
            "-d",
            "--name",
            "sleeper",
            "--network",
            "none",
            "sleeper:1",
        ])
        .assert()
        .success();
    let ps = lab.ok(&["ps"]);
    assert!(ps.contains("\"sleep 600\""), "{ps}");
    lab.ok(&["rm", "-f", "sleeper"]);
}

#[test]
fn run_options_reach_the_container() {
    if !root_or_skip("run_options_reach_the_container") {
        return;
    }
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("env");
    std::fs::write(&env_file, "# settings\nCOLOR=blue\nSIZE=small\n\n").unwrap();
    let out = lab.run(
        &[
            "--rm",
            "--network",
            "none",
            "--env-file",
            env_file.to_str().unwrap(),
            "-e",
            "SIZE=large",
            "--add-host",
            "db.example:10.9.8.7",
            "--dns",
            "192.0.2.53",
            "--ulimit",
            "nofile=123:456",
            "--device",
            "/dev/fuse:/dev/my-fuse",
            "--label",
            "team=web",
        ],
        &[
            "sh",
            "-c",
            "echo $COLOR $SIZE; grep db.example /etc/hosts; grep nameserver /etc/resolv.conf; \
             ulimit -n; ulimit -Hn; stat -c '%F %t:%T' /dev/my-fuse",
        ],
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        printed,
        "blue large\n10.9.8.7\tdb.example\nnameserver 192.0.2.53\n123\n456\n\
         character special file a:e5\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // --read-only: the root can't be written, a bound file still can't be
    // used to write the image.
    let out = lab.run(
        &["--rm", "--network", "none", "--read-only"],
        &["sh", "-c", "touch /etc/x 2>&1; echo status $?"],
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("Read-only file system") && printed.contains("status 1"),
        "{printed}"
    );

    // --security-opt: no filter, setuid allowed, or a profile of our own
    // that refuses mkdir.
    let out = lab.run(
        &["--rm", "--network", "none"],
        &["grep", "-E", "^(Seccomp|NoNewPrivs):", "/proc/self/status"],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "NoNewPrivs:\t1\nSeccomp:\t2\n"
    );
    let out = lab.run(
        &[
            "--rm",
            "--network",
            "none",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "no-new-privileges=false",
        ],
        &["grep", "-E", "^(Seccomp|NoNewPrivs):", "/proc/self/status"],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "NoNewPrivs:\t0\nSeccomp:\t0\n"
    );
    let profile = dir.path().join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
    )
    .unwrap();
    let out = lab.run(
        &[
            "--rm",
            "--network",
            "none",
            "--security-opt",
            &format!("seccomp={}", profile.display()),
        ],
        &["sh", "-c", "mkdir /tmp/d 2>&1; echo status $?"],
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("Operation not permitted") && printed.contains("status 1"),
        "{printed}"
    );

    // Bad values: 125, named, and no container left behind.
    for (option, value, says) in [
        ("--ulimit", "files=1", "not a resource limit"),
        ("--add-host", "db", "not NAME:IP"),
        ("--security-opt", "apparmor=unconfined", "berth knows"),
        ("--device", "/etc/passwd", "not a device node"),
        ("--stop-signal", "SIGNOPE", "unknown signal"),
        ("--env-file", "/no/such/file", "--env-file"),
    ] {
        lab.berth()
            .args([
                "run",
                "--network",
                "none",
                option,
                value,
                &lab.pulled.image,
                "true",
            ])
            .assert()
            .code(125)
            .stderr(predicate::str::contains(says));
    }
    assert!(
        lab.container_dirs().is_empty(),
        "{:?}",
        lab.container_dirs()
    );

    // Labels are kept in the record.
    lab.detach(
        &["--name", "labelled", "--network", "none", "-l", "team=web"],
        &["sleep", "600"],
    );
    let record: serde_json::Value =
        serde_json::from_str(&lab.ok(&["inspect", "labelled"])).unwrap();
    assert_eq!(record["spec"]["labels"]["team"], "web");
    lab.ok(&["rm", "-f", "labelled"]);
}

#[test]
fn stop_uses_the_containers_own_signal_and_timeout() {
    if !root_or_skip("stop_uses_the_containers_own_signal_and_timeout") {
        return;
    }
    let lab = Lab::new();
    // INT first: the shell's trap sees it and exits 130.
    lab.detach(
        &[
            "--name",
            "polite",
            "--network",
            "none",
            "--stop-signal",
            "INT",
        ],
        &[
            "sh",
            "-c",
            "trap 'exit 130' INT; while :; do sleep 0.1; done",
        ],
    );
    // TERM is ignored, so only the kill after --stop-timeout ends it: 137.
    lab.detach(
        &[
            "--name",
            "stubborn",
            "--network",
            "none",
            "--stop-timeout",
            "1",
        ],
        &["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"],
    );
    lab.ok(&["stop", "polite", "stubborn"]);
    let exit_code = |name: &str| {
        let record: serde_json::Value = serde_json::from_str(&lab.ok(&["inspect", name])).unwrap();
        record["state"]["exit_code"].clone()
    };
    assert_eq!(exit_code("polite"), 130);
    assert_eq!(exit_code("stubborn"), 137);
}

#[test]
fn a_network_name_longer_than_a_device_name_gets_a_bridge() {
    if !root_or_skip("a_network_name_longer_than_a_device_name_gets_a_bridge") {
        return;
    }
    let mut lab = Lab::new();
    let name = "berth_test.long-network-name";
    lab.network(name, "10.251.1.0/24");
    let out = lab.run(
        &["--rm", "--network", name],
        &[
            "sh",
            "-c",
            "ip -o -4 addr show eth0 | grep -o 'inet [0-9.]*'",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "inet 10.251.1.2\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    let bridge = links
        .split(": ")
        .find(|word| word.starts_with("bth-berth_"))
        .expect("the network's bridge")
        .to_string();
    assert_eq!(bridge.len(), 15, "{bridge}");
    lab.ok(&["network", "rm", name]);
    lab.networks.clear();
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&links.stdout).contains(&bridge));
}

#[test]
fn listings_take_quiet_format_and_filters() {
    if !root_or_skip("listings_take_quiet_format_and_filters") {
        return;
    }
    let mut lab = Lab::new();
    let web = lab.detach(
        &["--name", "web", "--network", "none", "-l", "tier=front"],
        &["sleep", "600"],
    );
    let db = lab.detach(
        &["--name", "db", "--network", "none", "-l", "tier=back"],
        &["sleep", "600"],
    );
    let done = lab.run(&["--name", "done", "--network", "none"], &["true"]);
    assert!(done.status.success());

    // -q: IDs, running ones; -a adds the exited one.
    let quiet = lab.ok(&["ps", "-q"]);
    let mut ids: Vec<&str> = quiet.lines().collect();
    ids.sort_unstable();
    let mut expected = vec![web.as_str(), db.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    assert_eq!(lab.ok(&["ps", "-a", "-q"]).lines().count(), 3);

    // Filters: by label, by name, by status (which looks beyond running).
    assert_eq!(
        lab.ok(&["ps", "-q", "--filter", "label=tier=back"]),
        format!("{db}\n")
    );
    assert_eq!(lab.ok(&["ps", "-q", "-f", "name=we"]), format!("{web}\n"));
    assert_eq!(
        lab.ok(&[
            "ps",
            "--filter",
            "status=exited",
            "--format",
            "{{.Names}} {{.State}}"
        ]),
        "done exited\n"
    );
    let both = lab.ok(&["ps", "-q", "-f", "name=web", "-f", "name=db"]);
    assert_eq!(both.lines().count(), 2, "{both}");
    lab.berth()
        .args(["ps", "--filter", "colour=red"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("no filter colour"));

    // Templates: fields, labels, table headers, json.
    assert_eq!(
        lab.ok(&[
            "ps",
            "-f",
            "name=web",
            "--format",
            "{{.Names}}: {{.Label \"tier\"}}"
        ]),
        "web: front\n"
    );
    let table = lab.ok(&[
        "ps",
        "-f",
        "name=web",
        "--format",
        "table {{.Names}}\\t{{.Image}}",
    ]);
    assert_eq!(table, format!("NAMES\tIMAGE\nweb\t{}\n", lab.pulled.image));
    let json = lab.ok(&["ps", "-f", "name=db", "--format", "json"]);
    let row: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(row["ID"], db.as_str());
    assert_eq!(row["Labels"]["tier"], "back");
    assert_eq!(row["Command"], "\"sleep 600\"");
    lab.berth()
        .args(["ps", "--format", "{{.Nope}}"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("no field Nope"));

    // images and network ls take the same options.
    let images = lab.ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    let (name, id) = images.trim().split_once(' ').unwrap();
    assert_eq!(name, lab.pulled.image);
    assert_eq!(lab.ok(&["images", "-q"]), format!("{id}\n"));
    assert_eq!(
        lab.ok(&["images", "-q", "--filter", "reference=nothing-like-it"]),
        ""
    );
    lab.network("listed", "10.251.2.0/24");
    assert_eq!(
        lab.ok(&["network", "ls", "-q", "-f", "name=listed"]),
        "listed\n"
    );
    assert_eq!(
        lab.ok(&[
            "network",
            "ls",
            "-f",
            "name=listed",
            "--format",
            "{{.Name}} {{.Subnet}}"
        ]),
        "listed 10.251.2.0/24\n"
    );
}

#[test]
fn the_smaller_commands_do_what_dockers_do() {
    if !root_or_skip("the_smaller_commands_do_what_dockers_do") {
        return;
    }
    let mut lab = Lab::new();
    lab.network("t-cmds", "10.251.3.0/24");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let publish = format!("{port}:80");
    lab.detach(
        &["--name", "counter", "--network", "t-cmds", "-p", &publish],
        &[
            "sh",
            "-c",
            "rm /etc/group; echo new > /etc/added; echo x >> /etc/passwd; \
             while :; do echo tick >> /tmp/ticks; sleep 0.1; done",
        ],
    );

    // port, top, diff.
    assert_eq!(
        lab.ok(&["port", "counter"]),
        format!("80/tcp -> 0.0.0.0:{port}\n")
    );
    assert_eq!(
        lab.ok(&["port", "counter", "80"]),
        format!("0.0.0.0:{port}\n")
    );
    lab.berth()
        .args(["port", "counter", "81"])
        .assert()
        .code(125);
    let top = lab.ok(&["top", "counter", "-o", "args"]);
    assert!(top.contains("while :") || top.contains("sh -c"), "{top}");
    assert!(
        top.contains("berth-init"),
        "its init is one of its processes: {top}"
    );
    let diff = lab.ok(&["diff", "counter"]);
    for line in [
        "D /etc/group",
        "A /etc/added",
        "C /etc/passwd",
        "C /etc",
        "A /tmp/ticks",
    ] {
        assert!(diff.lines().any(|l| l == line), "{line} in:\n{diff}");
    }

    // pause: the state says so and the process stops ticking; unpause.
    let ticks = |lab: &Lab| lab.ok(&["exec", "counter", "sh", "-c", "wc -l < /tmp/ticks"]);
    lab.ok(&["pause", "counter"]);
    assert_eq!(lab.ok(&["ps", "--format", "{{.State}}"]), "paused\n");
    assert!(lab.ok(&["ps"]).contains("(Paused)"));
    let frozen = std::fs::read_to_string(
        lab.containers_dir()
            .join(lab.ok(&["ps", "-q"]).trim())
            .join("upper/tmp/ticks"),
    )
    .unwrap()
    .lines()
    .count();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let still = std::fs::read_to_string(
        lab.containers_dir()
            .join(lab.ok(&["ps", "-q"]).trim())
            .join("upper/tmp/ticks"),
    )
    .unwrap()
    .lines()
    .count();
    assert_eq!(frozen, still, "it ticked while paused");
    lab.ok(&["unpause", "counter"]);
    assert_eq!(lab.ok(&["ps", "--format", "{{.State}}"]), "running\n");
    assert!(ticks(&lab).trim().parse::<usize>().unwrap() >= still);

    // stats, info, system df, network inspect.
    let stats = lab.ok(&["stats", "--no-stream"]);
    assert!(stats.lines().any(|l| l.contains("counter")), "{stats}");
    let info = lab.ok(&["info"]);
    assert!(
        info.contains("Running: 1") && info.contains("Cgroup version:"),
        "{info}"
    );
    let df = lab.ok(&["system", "df"]);
    assert!(
        df.lines()
            .any(|l| l.starts_with("Containers") && l.contains(" 1 ")),
        "{df}"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&lab.ok(&["network", "inspect", "t-cmds"])).unwrap();
    assert_eq!(inspect[0]["Containers"][0]["Name"], "counter");
    assert_eq!(inspect[0]["Subnet"], "10.251.3.0/24");

    // rename: the new name is the container's, on its network too.
    lab.ok(&["rename", "counter", "ticker"]);
    let out = lab.run(
        &["--rm", "--network", "t-cmds"],
        &["sh", "-c", "grep -cw ticker /etc/hosts"],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");
    lab.berth()
        .args(["rename", "ticker", "bad name"])
        .assert()
        .code(125);

    // restart gives it a new run; wait prints how it ended.
    lab.ok(&["restart", "-t", "1", "ticker"]);
    let record: serde_json::Value = serde_json::from_str(&lab.ok(&["inspect", "ticker"])).unwrap();
    assert_eq!(record["state"]["runs"], 2);
    lab.ok(&["kill", "-s", "TERM", "ticker"]);
    assert_eq!(lab.ok(&["wait", "ticker"]), "143\n");

    // prune: the stopped container and the network no container names go.
    lab.berth().args(["system", "prune"]).assert().code(125); // no terminal to ask on
    let pruned = lab.ok(&["system", "prune", "-f"]);
    assert!(pruned.contains("Deleted container"), "{pruned}");
    assert!(pruned.contains("Deleted network: t-cmds"), "{pruned}");
    assert!(lab.container_dirs().is_empty());
    lab.networks.clear();
    lab.network("t-unused", "10.251.4.0/24");
    assert_eq!(
        lab.ok(&["network", "prune", "-f"]),
        "Deleted network: t-unused\n"
    );
    lab.networks.clear();
}

#[test]
fn version_and_completion_need_no_root_and_no_state() {
    let version = Command::new(berth_tests::bin("berth"))
        .arg("version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("berth "));
    let bash = Command::new(berth_tests::bin("berth"))
        .args(["completion", "bash"])
        .output()
        .unwrap();
    let script = String::from_utf8_lossy(&bash.stdout);
    assert!(
        script.contains("_berth()") && script.contains("network"),
        "{script}"
    );
}

#[test]
fn cp_copies_both_ways_and_never_follows_the_containers_symlinks() {
    if !root_or_skip("cp_copies_both_ways_and_never_follows_the_containers_symlinks") {
        return;
    }
    let lab = Lab::new();
    lab.detach(
        &["--name", "box", "--network", "none"],
        &[
            "sh",
            "-c",
            "mkdir -p /data/sub && echo inside > /data/sub/file && chmod 640 /data/sub/file && \
             ln -s / /data/escape && ln -s /etc/shadow /data/shadow && exec sleep 600",
        ],
    );
    until_inside(
        &lab,
        "the container made its files",
        &["test", "-L", "/data/shadow"],
    );
    let host = tempfile::tempdir().unwrap();

    // Out: the directory, its file with its mode, symlinks as symlinks.
    lab.ok(&["cp", "box:/data", host.path().to_str().unwrap()]);
    let out = host.path().join("data");
    assert_eq!(
        std::fs::read_to_string(out.join("sub/file")).unwrap(),
        "inside\n"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out.join("sub/file"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
    assert_eq!(
        std::fs::read_link(out.join("escape")).unwrap(),
        Path::new("/")
    );
    assert_eq!(
        std::fs::read_link(out.join("shadow")).unwrap(),
        Path::new("/etc/shadow")
    );
    // A file by name, into a directory or as a new name.
    lab.ok(&[
        "cp",
        "box:/data/sub/file",
        host.path().join("copy").to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(host.path().join("copy")).unwrap(),
        "inside\n"
    );

    // In: through the container's symlink to its root, the files land in
    // the container's /tmp and /etc, never the host's.
    let marker = format!("berth-cp-{}", std::process::id());
    let source = host.path().join(&marker);
    std::fs::write(&source, "from the host\n").unwrap();
    lab.ok(&["cp", source.to_str().unwrap(), "box:/data/escape/tmp/"]);
    lab.ok(&[
        "cp",
        source.to_str().unwrap(),
        "box:/data/escape/etc/planted",
    ]);
    assert_eq!(
        lab.ok(&[
            "exec",
            "box",
            "cat",
            &format!("/tmp/{marker}"),
            "/etc/planted"
        ]),
        "from the host\nfrom the host\n"
    );
    assert!(
        !Path::new("/tmp").join(&marker).exists(),
        "written to the host's /tmp"
    );
    assert!(
        !Path::new("/etc/planted").exists(),
        "written to the host's /etc"
    );
    // Onto a symlink in the container: refused, not followed.
    lab.berth()
        .args(["cp", source.to_str().unwrap(), "box:/data/shadow"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("symlink"));
    // A directory in.
    lab.ok(&["cp", out.join("sub").to_str().unwrap(), "box:/srv"]);
    assert_eq!(lab.ok(&["exec", "box", "cat", "/srv/sub/file"]), "inside\n");

    // Only running containers; a clear error otherwise.
    lab.ok(&["stop", "-t", "1", "box"]);
    lab.berth()
        .args(["cp", "box:/data", host.path().to_str().unwrap()])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("needs a running container"));
}

#[test]
fn commit_makes_an_image_of_what_the_container_changed_and_runs() {
    if !root_or_skip("commit_makes_an_image_of_what_the_container_changed_and_runs") {
        return;
    }
    let lab = Lab::new();
    lab.detach(
        &["--name", "box", "--network", "none", "-e", "GREETING=hi"],
        &[
            "sh",
            "-c",
            "echo made > /etc/made && rm /etc/group && exec sleep 600",
        ],
    );
    until_inside(
        &lab,
        "the container changed its files",
        &["test", "-f", "/etc/made"],
    );
    // While it runs (frozen for the moment of reading), with a change.
    let digest = lab.ok(&["commit", "-c", "ENV MOOD=calm", "box", "snap:1"]);
    assert!(digest.starts_with("sha256:"), "{digest}");
    let run = |command: &[&str]| {
        let out = lab
            .berth()
            .args(["run", "--rm", "--network", "none", "snap:1"])
            .args(command)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(run(&["cat", "/etc/made"]), "made\n");
    assert_eq!(
        run(&["sh", "-c", "test -e /etc/group || echo gone"]),
        "gone\n"
    );
    assert_eq!(run(&["sh", "-c", "echo $GREETING $MOOD"]), "hi calm\n");
    // The mount points of berth's own files are not in it.
    assert_eq!(
        run(&["sh", "-c", "cat /etc/hostname"]).len(),
        13,
        "its own hostname"
    );
    // With no command, it runs what the container ran.
    let ps = lab.ok(&[
        "run",
        "-d",
        "--name",
        "again",
        "--network",
        "none",
        "snap:1",
    ]);
    assert_eq!(ps.trim().len(), 12);
    // (-a: in snap:1, /etc/group is gone already, so its `rm` fails and it
    // may have ended by now.)
    let command = lab.ok(&[
        "ps",
        "-a",
        "--filter",
        "name=again",
        "--format",
        "{{.Command}}",
    ]);
    assert!(command.contains("sleep 600"), "{command:?}");
    lab.berth()
        .args(["commit", "-c", "RUN true", "box", "snap:2"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("only ENV"));
}

#[test]
fn export_writes_the_containers_own_files_as_a_tar() {
    if !root_or_skip("export_writes_the_containers_own_files_as_a_tar") {
        return;
    }
    let lab = Lab::new();
    lab.detach(
        &["--name", "box", "--network", "none"],
        &[
            "sh",
            "-c",
            "echo mine > /root/note && ln -s / /root/up && exec sleep 600",
        ],
    );
    until_inside(
        &lab,
        "the container wrote its note",
        &["test", "-L", "/root/up"],
    );
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("box.tar");
    lab.ok(&["export", "-o", tar.to_str().unwrap(), "box"]);
    let listing = Command::new("tar").arg("-tvf").arg(&tar).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("root/note"), "{listing}");
    assert!(
        listing.contains("root/up -> /"),
        "symlinks stay symlinks: {listing}"
    );
    assert!(listing.contains("bin/busybox"), "{listing}");
    // Not what is mounted on it: no /proc or /sys contents, no host files.
    for mounted in ["proc/self", "sys/kernel", "proc/1"] {
        assert!(!listing.contains(mounted), "{mounted} in:\n{listing}");
    }
    let note = Command::new("tar")
        .arg("-xOf")
        .arg(&tar)
        .arg("root/note")
        .output()
        .unwrap();
    assert_eq!(note.stdout, b"mine\n");
    // To stdout too; a stopped container is refused, leaving no file.
    let out = lab.berth().args(["export", "box"]).output().unwrap();
    assert!(out.stdout.len() > 10_000);
    lab.ok(&["stop", "-t", "1", "box"]);
    let refused = dir.path().join("refused.tar");
    lab.berth()
        .args(["export", "-o", refused.to_str().unwrap(), "box"])
        .assert()
        .code(125);
    assert!(
        std::fs::read_dir(dir.path()).unwrap().count() == 1,
        "only box.tar"
    );
}

/// Wait until the command succeeds inside the container `box`.
fn until_inside(lab: &Lab, what: &str, command: &[&str]) {
    berth_tests::lab::eventually(what, || {
        lab.berth()
            .args(["exec", "box"])
            .args(command)
            .status()
            .is_ok_and(|s| s.success())
    });
}

#[test]
fn events_say_what_happened_to_containers() {
    if !root_or_skip("events_say_what_happened_to_containers") {
        return;
    }
    let lab = Lab::new();
    // Someone watching from the start, for `start` events only.
    let mut watcher = berth_tests::Running::new(
        lab.berth()
            .args([
                "events",
                "--filter",
                "event=start",
                "--format",
                "{{.Actor.Attributes.name}}",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    lab.detach(&["--name", "ev", "--network", "none"], &["sleep", "600"]);
    lab.ok(&["pause", "ev"]);
    lab.ok(&["unpause", "ev"]);
    lab.ok(&["rename", "ev", "ev2"]);
    lab.ok(&["stop", "-t", "1", "ev2"]);
    lab.ok(&["rm", "ev2"]);
    let history = lab.ok(&[
        "events",
        "--since",
        "1h",
        "--until",
        "0s",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}",
    ]);
    let lines: Vec<&str> = history.lines().map(str::trim_end).collect();
    assert_eq!(
        lines,
        [
            "create ev",
            "start ev",
            "pause ev",
            "unpause ev",
            "rename ev2",
            "die ev2 143",
            "destroy ev2"
        ],
        "{history}"
    );
    let default = lab.ok(&[
        "events",
        "--since",
        "1h",
        "--until",
        "0s",
        "--filter",
        "event=die",
    ]);
    assert!(
        default.contains(" container die ") && default.contains("exitCode=143"),
        "{default}"
    );
    // The watcher saw the start as it happened.
    use std::io::BufRead;
    let mut seen = String::new();
    std::io::BufReader::new(watcher.stdout.take().unwrap())
        .read_line(&mut seen)
        .unwrap();
    assert_eq!(seen, "ev\n");
}

#[test]
fn volume_ls_takes_format_and_filters() {
    if !root_or_skip("volume_ls_takes_format_and_filters") {
        return;
    }
    let lab = Lab::new();
    lab.ok(&["volume", "create", "--label", "team=db", "dbdata"]);
    lab.ok(&["volume", "create", "spare"]);
    lab.detach(
        &["--name", "box", "--network", "none", "-v", "dbdata:/data"],
        &["sleep", "600"],
    );
    assert_eq!(
        lab.ok(&["volume", "ls", "-q", "--filter", "label=team=db"]),
        "dbdata\n"
    );
    assert_eq!(
        lab.ok(&["volume", "ls", "-q", "--filter", "dangling=true"]),
        "spare\n"
    );
    let mountpoint = lab.ok(&[
        "volume",
        "ls",
        "-f",
        "name=db",
        "--format",
        "{{.Mountpoint}}",
    ]);
    assert!(Path::new(mountpoint.trim()).is_dir(), "{mountpoint}");
    lab.ok(&["rm", "-f", "box"]);
}

#[test]
fn cp_writes_nothing_through_a_symlink_an_earlier_copy_brought_out() {
    if !root_or_skip("cp_writes_nothing_through_a_symlink_an_earlier_copy_brought_out") {
        return;
    }
    let lab = Lab::new();
    // A host directory the container wants to write into.
    let target = tempfile::Builder::new()
        .prefix("berth-cp-target-")
        .tempdir()
        .unwrap();
    lab.detach(
        &["--name", "box", "--network", "none"],
        &[
            "sh",
            "-c",
            &format!(
                "mkdir /data && ln -s {} /data/x && exec sleep 600",
                target.path().display()
            ),
        ],
    );
    until_inside(
        &lab,
        "the container made its symlink",
        &["test", "-L", "/data/x"],
    );
    let host = tempfile::tempdir().unwrap();
    let out = host.path().to_str().unwrap();
    lab.ok(&["cp", "box:/data", out]); // brings out data/x -> the target, as a symlink
    // Now the container makes x a directory with a file in it, and the
    // user copies again into the same place.
    lab.ok(&[
        "exec",
        "box",
        "sh",
        "-c",
        "rm /data/x && mkdir /data/x && echo owned > /data/x/planted",
    ]);
    lab.berth()
        .args(["cp", "box:/data", out])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("is a symlink on the host"));
    assert!(
        !target.path().join("planted").exists(),
        "the copy wrote through the symlink into the host's directory"
    );
}
