//! The engine's monitor features on the real kernel: `--restart` (the
//! monitor runs a detached container again, with Docker's back-off, until
//! the user stops or removes it) and the container's log.

use std::time::Duration;

use assert_cmd::prelude::*;
use berth_tests::lab::{Lab, cgroups_of, eventually};
use berth_tests::root_or_skip;
use berth_tests::tmux::Tmux;
use predicates::prelude::*;

fn inspect(lab: &Lab, container: &str) -> serde_json::Value {
    serde_json::from_str(&lab.ok(&["inspect", container])).unwrap()
}

/// The host PID of the container's command: the child of its init.
fn command_pid(lab: &Lab, container: &str) -> i32 {
    let init = inspect(lab, container)["state"]["init"]["pid"]
        .as_i64()
        .expect("a running container's init") as i32;
    let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).unwrap();
    children
        .split_whitespace()
        .next()
        .expect("init has its command as a child")
        .parse()
        .unwrap()
}

#[test]
fn on_failure_runs_a_failing_container_again_at_most_n_times() {
    if !root_or_skip("on_failure_runs_a_failing_container_again_at_most_n_times") {
        return;
    }
    let lab = Lab::new();
    lab.detach(
        &[
            "--name",
            "flaky",
            "--network",
            "none",
            "--restart",
            "on-failure:2",
        ],
        &["sh", "-c", "echo try; exit 3"],
    );
    // Back-offs of 100 and 200 ms: three runs in all, then it stays down.
    eventually("two restarts, then Exited (3)", || {
        let record = inspect(&lab, "flaky");
        record["RestartCount"] == 2 && lab.ok(&["ps", "-a"]).contains("Exited (3)")
    });
    std::thread::sleep(Duration::from_millis(800));
    let record = inspect(&lab, "flaky");
    assert_eq!(record["state"]["runs"], 3, "{record}");
    assert_eq!(record["RestartCount"], 2);
    assert_eq!(lab.ok(&["logs", "flaky"]), "try\ntry\ntry\n");

    // Success is not a failure: no restart.
    lab.detach(
        &[
            "--name",
            "fine",
            "--network",
            "none",
            "--restart",
            "on-failure",
        ],
        &["true"],
    );
    eventually("fine ended", || {
        lab.ok(&["ps", "-a"]).contains("Exited (0)")
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(inspect(&lab, "fine")["state"]["runs"], 1);
}

#[test]
fn always_brings_a_killed_container_back_until_the_user_stops_it() {
    if !root_or_skip("always_brings_a_killed_container_back_until_the_user_stops_it") {
        return;
    }
    let lab = Lab::new();
    let id = lab.detach(
        &[
            "--name",
            "phoenix",
            "--network",
            "none",
            "--restart",
            "always",
        ],
        &["sh", "-c", "echo up; exec sleep 600"],
    );
    eventually("it runs", || lab.ok(&["logs", "phoenix"]) == "up\n");
    let first = inspect(&lab, "phoenix");
    let first_init = first["state"]["init"]["pid"].clone();

    // SIGKILL its command from the host: its init ends with 137, and its
    // monitor runs it again.
    let command = command_pid(&lab, "phoenix");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(command),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    eventually("it came back", || {
        let record = inspect(&lab, "phoenix");
        record["state"]["runs"] == 2
            && record["state"]["status"] == "running"
            && lab.ok(&["logs", "phoenix"]) == "up\nup\n"
    });
    let again = inspect(&lab, "phoenix");
    assert_eq!(again["RestartCount"], 1);
    assert_ne!(again["state"]["init"]["pid"], first_init, "a new init");
    assert_eq!(
        again["state"]["monitor"], first["state"]["monitor"],
        "the same monitor ran it again"
    );
    assert!(lab.ok(&["ps"]).contains("Up "));
    assert!(!cgroups_of(&id).is_empty());

    // The user's kill ends it for good (until berth start).
    lab.ok(&["kill", "phoenix"]);
    eventually("killed", || lab.ok(&["ps", "-a"]).contains("Exited (137)"));
    std::thread::sleep(Duration::from_millis(700));
    let record = inspect(&lab, "phoenix");
    assert_eq!(record["state"]["runs"], 2, "the user's kill was undone");
    assert!(cgroups_of(&id).is_empty(), "its cgroup outlived it");
    assert_eq!(lab.ok(&["start", "phoenix"]), "phoenix\n");
    eventually("started again by hand", || {
        inspect(&lab, "phoenix")["state"]["runs"] == 3
    });
    assert_eq!(
        inspect(&lab, "phoenix")["RestartCount"],
        0,
        "start counts afresh"
    );
    lab.ok(&["stop", "-t", "1", "phoenix"]);
}

#[test]
fn unless_stopped_stays_stopped_after_stop() {
    if !root_or_skip("unless_stopped_stays_stopped_after_stop") {
        return;
    }
    let lab = Lab::new();
    lab.detach(
        &[
            "--name",
            "steady",
            "--network",
            "none",
            "--restart",
            "unless-stopped",
        ],
        &["sleep", "600"],
    );
    assert_eq!(lab.ok(&["stop", "-t", "1", "steady"]), "steady\n");
    assert!(lab.ok(&["ps", "-a"]).contains("Exited (143)"));
    std::thread::sleep(Duration::from_millis(700));
    let record = inspect(&lab, "steady");
    assert_eq!(record["state"]["runs"], 1, "{record}");
    assert!(lab.ok(&["ps", "-a"]).contains("Exited (143)"));
    assert!(!lab.ok(&["ps"]).contains("steady"));
}

#[test]
fn rm_f_during_the_back_off_leaves_nothing() {
    if !root_or_skip("rm_f_during_the_back_off_leaves_nothing") {
        return;
    }
    let mut lab = Lab::new();
    let network = format!("berth-rst{}", std::process::id() % 100_000);
    lab.network(&network, "10.250.71.0/24");
    let id = lab.detach(
        &[
            "--name",
            "looper",
            "--network",
            &network,
            "--restart",
            "always",
        ],
        &["sh", "-c", "exit 1"],
    );
    // Its back-off doubles: soon one is long enough to catch in ps.
    eventually("ps shows it restarting", || {
        lab.ok(&["ps", "-a"]).contains("Restarting (1)")
    });
    assert!(
        lab.ok(&["ps", "--filter", "status=restarting", "-q"])
            .contains(&id)
    );
    // (It may be between two runs or in one: try until rm meets a back-off.)
    eventually("rm without -f refuses a restarting container", || {
        let out = lab.berth().args(["rm", "looper"]).output().unwrap();
        assert_eq!(out.status.code(), Some(125), "rm of a restarting container");
        String::from_utf8_lossy(&out.stderr).contains("is restarting")
    });
    let monitor = inspect(&lab, "looper")["state"]["monitor"]["pid"]
        .as_i64()
        .unwrap();
    assert_eq!(lab.ok(&["rm", "-f", "looper"]), "looper\n");
    // Nothing comes back, nothing is left.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        lab.container_dirs().is_empty(),
        "{:?}",
        lab.container_dirs()
    );
    assert!(!std::path::Path::new(&format!("/proc/{monitor}")).exists());
    assert!(cgroups_of(&id).is_empty(), "a cgroup leaked");
    let links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    let veth = format!("bth{}", &id[..8]);
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains(&veth),
        "a veth leaked"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&id), "a mount leaked");
}

#[test]
fn restart_refuses_rm_and_the_foreground() {
    if !root_or_skip("restart_refuses_rm_and_the_foreground") {
        return;
    }
    let lab = Lab::new();
    let out = lab.run(&["-d", "--rm", "--restart", "always"], &["true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("both --restart and --rm"));
    let out = lab.run(&["--restart", "on-failure"], &["true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--restart needs -d"));
    let out = lab.run(&["-d", "--restart", "sometimes"], &["true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(lab.container_dirs().is_empty());
}

/// The log's complete entries, parsed (the relay may be writing the next).
fn entries(lab: &Lab, id: &str) -> Vec<serde_json::Value> {
    let text =
        std::fs::read_to_string(lab.containers_dir().join(id).join("container.log")).unwrap();
    text.split_inclusive('\n')
        .filter(|line| line.ends_with('\n'))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect()
}

#[test]
fn logs_are_json_lines_with_stream_and_time_for_detached_and_foreground_runs() {
    if !root_or_skip("logs_are_json_lines_with_stream_and_time_for_detached_and_foreground_runs") {
        return;
    }
    let lab = Lab::new();
    // A detached container: what it writes passes through its monitor's
    // relay, quotes, escapes, a fake entry and bytes that are not UTF-8 too.
    let id = lab.detach(
        &["--name", "talker", "--network", "none"],
        &[
            "sh",
            "-c",
            r#"echo 'say "hi"'; echo oops >&2; printf '{"log":"fake\\n","stream":"stdout"}\n'; printf 'bad \377 \033[1m\n'; printf 'é'; printf 'no newline'"#,
        ],
    );
    eventually("it ended", || lab.ok(&["ps", "-a"]).contains("Exited (0)"));
    let entries = entries(&lab, &id);
    let logs: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e["stream"].as_str().unwrap(), e["log"].as_str().unwrap()))
        .collect();
    assert_eq!(logs[0], ("stdout", "say \"hi\"\n"));
    assert!(logs.contains(&("stderr", "oops\n")), "{logs:?}");
    assert!(
        logs.contains(&("stdout", "{\"log\":\"fake\\n\",\"stream\":\"stdout\"}\n")),
        "{logs:?}"
    );
    assert!(
        logs.contains(&("stdout", "bad \u{fffd} \u{1b}[1m\n")),
        "{logs:?}"
    );
    // The unfinished last line of stdout: an entry without "\n" at the end.
    // (The order of stdout's and stderr's lines is the relay's reading order.)
    let unfinished: Vec<&str> = logs
        .iter()
        .filter(|(stream, log)| *stream == "stdout" && !log.ends_with('\n'))
        .map(|(_, log)| *log)
        .collect();
    assert_eq!(unfinished.concat(), "éno newline", "{logs:?}");
    for entry in &entries {
        let time = entry["time"].as_str().unwrap();
        assert!(
            time.len() == 30 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
            "not RFC 3339 with nanoseconds: {time}"
        );
    }
    // `berth logs` prints the text back, stderr to stderr.
    let out = lab.berth().args(["logs", "talker"]).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with("say \"hi\"\n{\"log\":\"fake"),
        "{stdout}"
    );
    assert!(!stdout.contains("oops"), "{stdout}");
    assert!(stdout.ends_with("éno newline"), "{stdout}");
    assert_eq!(out.stderr, b"oops\n");

    // In the foreground: on the terminal as before, and in the log.
    let out = lab.run(
        &["--name", "fg", "--network", "none"],
        &["sh", "-c", "echo to-out; echo to-err >&2"],
    );
    assert_eq!(out.stdout, b"to-out\n");
    assert_eq!(out.stderr, b"to-err\n");
    let fg = lab.berth().args(["logs", "fg"]).output().unwrap();
    // Our stdout and stderr one file (2>&1): one pipe, the order kept.
    let file = tempfile::tempfile().unwrap();
    let status = lab
        .berth()
        .args([
            "run",
            "--name",
            "merged",
            "--network",
            "none",
            &lab.pulled.image,
        ])
        .args(["sh", "-c", "echo a; echo b >&2; echo c; echo d >&2"])
        .stdout(file.try_clone().unwrap())
        .stderr(file.try_clone().unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    let mut seen = String::new();
    let mut file = file;
    std::io::Seek::rewind(&mut file).unwrap();
    std::io::Read::read_to_string(&mut file, &mut seen).unwrap();
    assert_eq!(seen, "a\nb\nc\nd\n");
    assert_eq!(lab.ok(&["logs", "merged"]), "a\nb\nc\nd\n");
    // With -t: what the terminal showed, as stdout (a terminal has one output).
    let tty = lab.run(
        &["-t", "--name", "tty", "--network", "none"],
        &["echo", "on-tty"],
    );
    assert!(tty.status.success());
    assert_eq!(lab.ok(&["logs", "tty"]), "on-tty\r\n");
    assert_eq!(
        (fg.stdout, fg.stderr),
        (b"to-out\n".to_vec(), b"to-err\n".to_vec())
    );
}

#[test]
fn a_long_line_is_cut_into_entries_of_16_kib_and_the_monitor_stays_small() {
    if !root_or_skip("a_long_line_is_cut_into_entries_of_16_kib_and_the_monitor_stays_small") {
        return;
    }
    let lab = Lab::new();
    let id = lab.detach(
        &["--name", "long", "--network", "none"],
        &[
            "sh",
            "-c",
            "head -c 40000 /dev/zero | tr '\\0' x; echo; exec sleep 600",
        ],
    );
    eventually("the line is in", || entries(&lab, &id).len() == 3);
    let sizes: Vec<usize> = entries(&lab, &id)
        .iter()
        .map(|e| e["log"].as_str().unwrap().len())
        .collect();
    assert_eq!(sizes, [16384, 16384, 40000 - 2 * 16384 + 1]);
    // The relay is the tiny program: a few pages, whatever the line.
    let monitor = inspect(&lab, "long")["state"]["monitor"]["pid"]
        .as_i64()
        .unwrap();
    let status = std::fs::read_to_string(format!("/proc/{monitor}/status")).unwrap();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(status.contains("Name:\tberth-monitor"), "{status}");
    assert!(rss_kib <= 64, "the monitor's RSS is {rss_kib} KiB");
    // Nor does it keep a zombie: the copy of itself that started the
    // kernel's wait for a cgroup move (launch::warm_up_cgroup_moves) was
    // collected once the container started.
    let zombies: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            let after_name = &stat[stat.rfind(')').unwrap() + 2..];
            let fields: Vec<&str> = after_name.split(' ').collect();
            fields[0] == "Z" && fields[1] == monitor.to_string()
        })
        .collect();
    assert!(zombies.is_empty(), "the monitor's zombies: {zombies:?}");
    lab.ok(&["rm", "-f", "long"]);
}

#[test]
fn logs_tail_since_until_and_timestamps() {
    if !root_or_skip("logs_tail_since_until_and_timestamps") {
        return;
    }
    let lab = Lab::new();
    let id = lab.detach(
        &["--name", "clock", "--network", "none"],
        &[
            "sh",
            "-c",
            "echo one; echo two; sleep 1.5; echo three; echo four",
        ],
    );
    eventually("it ended", || lab.ok(&["ps", "-a"]).contains("Exited (0)"));
    assert_eq!(lab.ok(&["logs", "--tail", "2", "clock"]), "three\nfour\n");
    assert_eq!(lab.ok(&["logs", "-n", "1", "clock"]), "four\n");
    assert_eq!(
        lab.ok(&["logs", "--tail", "all", "clock"]),
        "one\ntwo\nthree\nfour\n"
    );
    assert_eq!(lab.ok(&["logs", "--tail", "0", "clock"]), "");

    // The time between "two" and "three", in each of the forms.
    let times: Vec<String> = entries(&lab, &id)
        .iter()
        .map(|e| e["time"].as_str().unwrap().to_string())
        .collect();
    let stamped = lab.ok(&["logs", "-t", "clock"]);
    assert_eq!(stamped.lines().next().unwrap(), format!("{} one", times[0]));
    // --since takes what is at or after the time, --until what is before.
    let three = &times[2];
    assert_eq!(
        lab.ok(&["logs", "--since", three, "clock"]),
        "three\nfour\n"
    );
    assert_eq!(lab.ok(&["logs", "--until", three, "clock"]), "one\ntwo\n");
    // Unix seconds and durations.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(
        lab.ok(&["logs", "--since", &(now + 60).to_string(), "clock"]),
        ""
    );
    assert_eq!(
        lab.ok(&["logs", "--since", "10m", "clock"]),
        "one\ntwo\nthree\nfour\n"
    );
    assert_eq!(lab.ok(&["logs", "--until", "10m", "clock"]), "");
    lab.berth()
        .args(["logs", "--since", "yesterday", "clock"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("--since"));

    // -f with --tail: the last line, then what comes.
    lab.detach(
        &["--name", "slow", "--network", "none"],
        &["sh", "-c", "echo a; echo b; sleep 1; echo c"],
    );
    eventually("b is out", || lab.ok(&["logs", "slow"]) == "a\nb\n");
    assert_eq!(lab.ok(&["logs", "-f", "--tail", "1", "slow"]), "b\nc\n");
}

#[test]
fn an_old_raw_log_is_printed_as_it_is() {
    if !root_or_skip("an_old_raw_log_is_printed_as_it_is") {
        return;
    }
    let lab = Lab::new();
    let id = lab.detach(&["--name", "old", "--network", "none"], &["true"]);
    eventually("it ended", || lab.ok(&["ps", "-a"]).contains("Exited (0)"));
    // As berth wrote logs before: the output itself.
    std::fs::write(
        lab.containers_dir().join(&id).join("container.log"),
        "raw one\nraw two\n",
    )
    .unwrap();
    assert_eq!(lab.ok(&["logs", "old"]), "raw one\nraw two\n");
    assert_eq!(lab.ok(&["logs", "--tail", "1", "old"]), "raw two\n");
}

#[test]
fn dit_then_attach_type_resize_detach_and_attach_again() {
    if !root_or_skip("dit_then_attach_type_resize_detach_and_attach_again") {
        return;
    }
    let lab = Lab::new();
    let id = lab.detach(&["-it", "--name", "shell", "--network", "none"], &["sh"]);
    let dir = tempfile::tempdir().unwrap();
    let status = dir.path().join("status");
    let berth = format!(
        "{} --root {}",
        berth_tests::bin("berth").display(),
        lab.pulled.root.path().display()
    );
    let attach = |socket: &str, options: &str| {
        Tmux::start(
            dir.path().join(socket),
            &format!(
                "{berth} attach {options} shell; echo attached-exit=$? > {}; sleep 60",
                status.display()
            ),
        )
    };

    // Attach: what we type reaches its shell, at our window's size.
    let tmux = attach("tmux-1", "");
    std::thread::sleep(Duration::from_millis(300));
    tmux.type_line("echo typed-$((6*7)); stty size");
    eventually("the shell answered", || {
        tmux.screen().contains("typed-42\n30 100")
    });
    // A resized window resizes its terminal.
    tmux.command()
        .args(["resize-window", "-x", "90", "-y", "25"])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    tmux.type_line("stty size");
    eventually("the new size", || tmux.screen().contains("25 90"));

    // Ctrl-P Ctrl-Q: we leave, it runs on.
    tmux.keys(&["C-p", "C-q"]);
    eventually("attach ended with 0", || {
        std::fs::read_to_string(&status).is_ok_and(|s| s == "attached-exit=0\n")
    });
    assert!(
        tmux.screen().contains("read escape sequence"),
        "{}",
        tmux.screen()
    );
    assert!(lab.ok(&["ps"]).contains(&id), "detaching stopped it");
    // Its terminal's output is in its log.
    assert!(lab.ok(&["logs", "shell"]).contains("typed-42"));
    drop(tmux);
    std::fs::remove_file(&status).unwrap();

    // Again, with other detach keys; the shell's exit ends attach with
    // its code.
    let tmux = attach("tmux-2", "--detach-keys ctrl-a,d");
    std::thread::sleep(Duration::from_millis(300));
    tmux.type_line("echo again-$((1+1))");
    eventually("attached again", || tmux.screen().contains("again-2"));
    tmux.type_line("exit 3");
    eventually("attach ended with the shell's code", || {
        std::fs::read_to_string(&status).is_ok_and(|s| s == "attached-exit=3\n")
    });
    assert!(lab.ok(&["ps", "-a"]).contains("Exited (3)"));
    assert!(!lab.containers_dir().join(&id).join("attach.sock").exists());

    // Typing goes only to a container with a terminal: -di is refused.
    // (Attaching to one without: attach_without_a_terminal_....)
    lab.berth()
        .args(["run", "-di", &lab.pulled.image, "sh"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("use -dit"));
}

#[test]
fn a_resized_window_resizes_the_terminal_of_run_it_and_exec_it() {
    if !root_or_skip("a_resized_window_resizes_the_terminal_of_run_it_and_exec_it") {
        return;
    }
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let berth = format!(
        "{} --root {}",
        berth_tests::bin("berth").display(),
        lab.pulled.root.path().display()
    );
    let run = Tmux::start(
        dir.path().join("tmux-run"),
        &format!(
            "{berth} run -it --name sized --network none {} sh; sleep 60",
            lab.pulled.image
        ),
    );
    eventually("the prompt", || run.screen().contains("/ #"));
    run.type_line("stty size");
    eventually("its size", || run.screen().contains("30 100"));
    run.command()
        .args(["resize-window", "-x", "70", "-y", "20"])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    run.type_line("stty size");
    eventually("run -it: the new size", || run.screen().contains("20 70"));

    let exec = Tmux::start(
        dir.path().join("tmux-exec"),
        &format!("{berth} exec -it sized sh"),
    );
    eventually("exec's prompt", || exec.screen().contains("/ #"));
    exec.command()
        .args(["resize-window", "-x", "60", "-y", "15"])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    exec.type_line("stty size");
    eventually("exec -it: the new size", || exec.screen().contains("15 60"));
    exec.type_line("exit");
    run.type_line("exit");
}

/// `berth attach CONTAINER` as a child whose stdout we read: the lines it
/// has printed once one contains `until`.
fn attach_until(lab: &Lab, args: &[&str], until: &str) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = lab
        .berth()
        .arg("attach")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains(until) {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "attach ended: {seen}"
        );
        seen += &line;
    }
    // The rest goes on being read, so that attach never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    (child, seen)
}

#[test]
fn attach_without_a_terminal_shows_new_output_and_passes_signals_on() {
    if !root_or_skip("attach_without_a_terminal_shows_new_output_and_passes_signals_on") {
        return;
    }
    let lab = Lab::new();
    let script = "trap 'echo got INT; exit 7' INT; i=0; \
                  while :; do i=$((i+1)); echo tick $i; sleep 0.1; done";
    lab.detach(
        &["--name", "ticker", "--network", "none"],
        &["sh", "-c", script],
    );
    eventually("it ticks", || {
        lab.ok(&["logs", "ticker"]).contains("tick 5")
    });

    // New output only, as it comes.
    let (mut attached, seen) = attach_until(&lab, &["ticker"], "tick");
    assert!(!seen.contains("tick 1\n"), "old output: {seen}");

    // Ctrl-C (SIGINT to attach) is SIGINT to the container, whose exit code
    // attach returns.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(attached.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = attached.wait().unwrap();
    assert_eq!(status.code(), Some(7), "{status:?}");
    assert!(lab.ok(&["logs", "ticker"]).contains("got INT"));

    // With --sig-proxy=false, Ctrl-C leaves and the container runs on.
    lab.ok(&["start", "ticker"]);
    let (mut attached, _) = attach_until(&lab, &["--sig-proxy=false", "ticker"], "tick");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(attached.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    assert!(!attached.wait().unwrap().success());
    assert_eq!(
        lab.ok(&["ps", "--filter", "name=ticker", "--format", "{{.State}}"]),
        "running\n"
    );
    lab.ok(&["rm", "-f", "ticker"]);
}
