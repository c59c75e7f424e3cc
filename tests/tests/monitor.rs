//! The engine's monitor features on the real kernel: `--restart` (the
//! monitor runs a detached container again, with Docker's back-off, until
//! the user stops or removes it) and the container's log.

use std::time::Duration;

use assert_cmd::prelude::*;
use berth_tests::lab::{Lab, cgroups_of, eventually};
use berth_tests::root_or_skip;
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
    lab.berth()
        .args(["rm", "looper"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("is restarting"));
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
