//! A container on several networks, on the real kernel: `network connect`
//! and `disconnect` of running and stopped containers, `run --network A
//! --network B`, names across networks, and nothing left behind, also when
//! the monitor of a connected container is killed. Networks here use
//! 10.251.5.x to 10.251.7.x.

use std::process::Command;

use assert_cmd::prelude::*;
use berth_tests::lab::{Lab, eventually};
use berth_tests::root_or_skip;
use predicates::prelude::*;

/// `berth exec CONTAINER sh -c SCRIPT`: its output, and whether it succeeded.
fn exec(lab: &Lab, container: &str, script: &str) -> (bool, String) {
    let out = lab
        .berth()
        .args(["exec", container, "sh", "-c", script])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Fetch the page of `server` (busybox httpd on port 80) from `client`.
fn fetch(lab: &Lab, client: &str, server: &str) -> (bool, String) {
    let request = "printf 'GET / HTTP/1.0\\r\\n\\r\\n'";
    let (_, said) = exec(lab, client, &format!("{request} | nc -w 2 {server} 80"));
    (said.contains("hello from web"), said)
}

/// The host's network links, one line each.
fn links() -> String {
    let out = Command::new("ip").args(["-o", "link"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn hosts_of(lab: &Lab, container: &str) -> String {
    exec(lab, container, "cat /etc/hosts").1
}

#[test]
fn a_container_joins_and_leaves_networks_while_it_runs() {
    if !root_or_skip("a_container_joins_and_leaves_networks_while_it_runs") {
        return;
    }
    let mut lab = Lab::new();
    lab.network("t-front", "10.251.5.0/24");
    lab.network("t-back", "10.251.6.0/24");
    let serve = ["httpd", "-f", "-p", "80", "-h", "/srv/www"];
    lab.detach(&["--name", "db", "--network", "t-back"], &serve);
    let web = lab.detach(&["--name", "web", "--network", "t-front"], &serve);
    lab.detach(&["--name", "client", "--network", "t-front"], &serve);

    // Apart: web can't even name db.
    let (reached, said) = fetch(&lab, "web", "db");
    assert!(!reached, "reached db across networks: {said}");
    let (reached, said) = fetch(&lab, "client", "web");
    assert!(reached, "web on its own network: {said}");

    // Containers on one network share its hosts file, read-only: one can't
    // give its neighbours a false address for a name.
    let (wrote, said) = exec(&lab, "client", "echo '10.251.5.99 web' >> /etc/hosts");
    assert!(!wrote, "client wrote the shared /etc/hosts: {said}");
    let (_, said) = exec(
        &lab,
        "client",
        "mount -o remount,rw /etc/hosts && echo remounted",
    );
    assert!(!said.contains("remounted"), "{said}");
    assert!(!hosts_of(&lab, "web").contains("10.251.5.99"));
    assert!(hosts_of(&lab, "web").contains("\tclient "));

    // Connected: eth1 on t-back, and db by name.
    lab.ok(&["network", "connect", "t-back", "web"]);
    let (_, eth1) = exec(&lab, "web", "ip -o -4 addr show eth1");
    assert!(eth1.contains("inet 10.251.6."), "{eth1}");
    let (_, routes) = exec(&lab, "web", "ip route");
    assert!(
        routes.contains("default via 10.251.5.1 dev eth0"),
        "the default route stays on eth0:\n{routes}"
    );
    let (reached, page) = fetch(&lab, "web", "db");
    assert!(reached, "{page}");
    let (reached, page) = fetch(&lab, "db", "web");
    assert!(reached, "db finds web by name: {page}");
    assert!(
        hosts_of(&lab, "web").contains("\tclient "),
        "both networks' peers"
    );
    assert!(
        !hosts_of(&lab, "client").contains("\tdb "),
        "networks stay apart"
    );
    let on_back = lab.ok(&["ps", "--filter", "network=t-back", "--format", "{{.Names}}"]);
    let mut on_back: Vec<&str> = on_back.lines().collect();
    on_back.sort();
    assert_eq!(on_back, ["db", "web"]);
    assert_eq!(
        lab.ok(&["ps", "--filter", "name=web", "--format", "{{.Networks}}"]),
        "t-front,t-back\n"
    );
    let inspect = lab.ok(&["network", "inspect", "t-back"]);
    assert!(inspect.contains("\"web\""), "{inspect}");

    // Mistakes are named, and change nothing.
    lab.berth()
        .args(["network", "connect", "t-back", "web"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("already on network t-back"));
    lab.berth()
        .args(["network", "connect", "t-nowhere", "web"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("network create t-nowhere"));
    lab.berth()
        .args(["network", "disconnect", "t-back", "client"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("not on network t-back"));

    // Disconnected: eth1, its lease and its names are gone, on both sides.
    lab.ok(&["network", "disconnect", "t-back", "web"]);
    let (has_eth1, _) = exec(&lab, "web", "ip link show eth1");
    assert!(!has_eth1, "eth1 is still there");
    assert!(!fetch(&lab, "web", "db").0, "still reaches db");
    assert!(!hosts_of(&lab, "web").contains("\tdb "));
    assert!(!hosts_of(&lab, "db").contains("\tweb "));
    assert!(
        !lab.ok(&["network", "inspect", "t-back"])
            .contains("\"web\"")
    );
    assert!(!links().contains(&format!("bth{}1", &web[..8])));
    assert!(fetch(&lab, "client", "web").0, "still on t-front");

    // Stopped, it joins when it starts; taken off its first network, its
    // next one becomes eth0.
    lab.ok(&["stop", "-t", "1", "web"]);
    lab.ok(&["network", "connect", "t-back", "web"]);
    lab.ok(&["network", "disconnect", "t-front", "web"]);
    lab.ok(&["start", "web"]);
    let (_, eth0) = exec(&lab, "web", "ip -o -4 addr show eth0; ip link show eth1");
    assert!(eth0.contains("inet 10.251.6."), "{eth0}");
    assert!(
        eth0.contains("does not exist") || !eth0.contains("eth1:"),
        "{eth0}"
    );
    assert!(fetch(&lab, "web", "db").0);
    assert!(!fetch(&lab, "client", "web").0, "client still reaches web");

    // Everything goes with the containers: the networks can be removed.
    lab.ok(&["rm", "-f", "web", "db", "client"]);
    for network in ["t-front", "t-back"] {
        lab.ok(&["network", "rm", network]);
    }
    lab.networks.clear();
    assert!(!links().contains(&format!("bth{}", &web[..8])));
}

#[test]
fn run_joins_every_network_it_is_given() {
    if !root_or_skip("run_joins_every_network_it_is_given") {
        return;
    }
    let mut lab = Lab::new();
    lab.network("t-one", "10.251.7.0/25");
    lab.network("t-two", "10.251.7.128/25");
    let out = lab.run(
        &["--rm", "--network", "t-one", "--network", "t-two"],
        &[
            "sh",
            "-c",
            "ip -o -4 addr | grep -o 'eth[0-9] *inet [0-9.]*'",
        ],
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("eth0    inet 10.251.7.2"), "{said}");
    assert!(said.contains("eth1    inet 10.251.7.130"), "{said}");
    for (options, why) in [
        (
            &["--network", "none", "--network", "t-one"][..],
            "--network none",
        ),
        (
            &["--network", "t-one", "--network", "t-one"][..],
            "named twice",
        ),
    ] {
        let out = lab.run(&[&["--rm"], options].concat(), &["true"]);
        assert_eq!(out.status.code(), Some(125));
        assert!(String::from_utf8_lossy(&out.stderr).contains(why));
    }

    // In the foreground, `berth run` is the monitor: a network connected
    // meanwhile stays in the record, and goes from the host with the run.
    let foreground = lab
        .berth()
        .args([
            "run",
            "--name",
            "fg",
            "--network",
            "t-one",
            &lab.pulled.image,
        ])
        .args([
            "sh",
            "-c",
            "until ip link show eth1; do sleep 0.1; done; sleep 0.5",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let foreground = berth_tests::Running::new(foreground);
    eventually("fg runs", || {
        lab.ok(&["ps", "-q", "--filter", "name=fg"]).trim().len() == 12
    });
    let fg_id = lab.ok(&["ps", "-q", "--filter", "name=fg"]);
    lab.ok(&["network", "connect", "t-two", "fg"]);
    let out = foreground.wait_at_most(std::time::Duration::from_secs(20));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("eth1"));
    let networks = lab.ok(&[
        "ps",
        "-a",
        "--filter",
        "name=fg",
        "--format",
        "{{.Networks}}",
    ]);
    assert_eq!(networks, "t-one,t-two\n");
    assert!(!lab.ok(&["network", "inspect", "t-two"]).contains("\"fg\""));
    assert!(!links().contains(&format!("bth{}", &fg_id[..8])));
    lab.ok(&["rm", "fg"]);

    // A connected container whose monitor is killed leaves nothing behind
    // once removed: its second pair, its lease there, its name.
    let id = lab.detach(&["--name", "late", "--network", "t-one"], &["sleep", "300"]);
    lab.ok(&["network", "connect", "t-two", "late"]);
    let record = lab.containers_dir().join(&id).join("record.json");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    let monitor = record["state"]["monitor"]["pid"].as_i64().unwrap();
    let plugged = record["state"]["plugged"].as_array().unwrap();
    assert_eq!(plugged.len(), 2, "{record}");
    Command::new("kill")
        .args(["-9", &monitor.to_string()])
        .assert()
        .success();
    eventually("the monitor is gone", || {
        !std::path::Path::new(&format!("/proc/{monitor}")).exists()
    });
    lab.ok(&["rm", "late"]);
    assert!(
        !links().contains(&format!("bth{}", &id[..8])),
        "{}",
        links()
    );
    for network in ["t-one", "t-two"] {
        lab.ok(&["network", "rm", network]);
    }
    lab.networks.clear();
}

#[test]
fn a_connect_killed_at_any_moment_is_undone_by_the_next() {
    if !root_or_skip("a_connect_killed_at_any_moment_is_undone_by_the_next") {
        return;
    }
    let mut lab = Lab::new();
    lab.network("t-k1", "10.251.8.0/24");
    lab.network("t-k2", "10.251.9.0/24");
    let id = lab.detach(
        &["--name", "victim", "--network", "t-k1"],
        &["sleep", "300"],
    );
    let leases = lab.pulled.root.path().join("networks/t-k2/leases");
    let leased = || {
        std::fs::read_dir(&leases)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("10."))
                    .count()
            })
            .unwrap_or(0)
    };
    // How long a connect takes here, to spread the kills over it.
    let started = std::time::Instant::now();
    lab.ok(&["network", "connect", "t-k2", "victim"]);
    let took = started.elapsed();
    lab.ok(&["network", "disconnect", "t-k2", "victim"]);
    const KILLS: u32 = 12;
    for n in 0..KILLS {
        let mut connect = lab
            .berth()
            .args(["network", "connect", "t-k2", "victim"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(took * 3 / 2 * n / KILLS);
        let _ = connect.kill(); // SIGKILL
        let _ = connect.wait();
        // Whatever it left, the next connect (or the one that finished)
        // gives exactly one interface and one lease on t-k2.
        let again = lab
            .berth()
            .args(["network", "connect", "t-k2", "victim"])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&again.stderr);
        assert!(
            again.status.success() || said.contains("already on network t-k2"),
            "after a kill at {n}/{KILLS}: {said}"
        );
        assert_eq!(leased(), 1, "after a kill at {n}/{KILLS}");
        let (_, addresses) = exec(&lab, "victim", "ip -o -4 addr | grep -c 'inet 10.251.9'");
        assert_eq!(addresses.trim(), "1", "after a kill at {n}/{KILLS}");
        let host_ends = links().matches(&format!("bth{}1", &id[..8])).count();
        assert_eq!(host_ends, 1, "after a kill at {n}/{KILLS}:\n{}", links());
        assert!(
            !links().contains(&format!("bthc{}", &id[..8])),
            "{}",
            links()
        );
        lab.ok(&["network", "disconnect", "t-k2", "victim"]);
        assert_eq!(leased(), 0);
    }
    lab.ok(&["rm", "-f", "victim"]);
    assert!(!links().contains(&format!("bth{}", &id[..8])));
    for network in ["t-k1", "t-k2"] {
        lab.ok(&["network", "rm", network]);
    }
    lab.networks.clear();
}
