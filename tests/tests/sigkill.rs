//! Killing berth with SIGKILL at any moment leaves nothing behind that
//! `berth rm -f` does not remove, `berth start` works after a killed
//! monitor, and a container whose command never started leaves no record.
//!
//! Other tests run on this host at the same time, with containers,
//! cgroups, veths and nft tables of their own. So every count here is of
//! this test's objects only: its state root, its network (and bridge), its
//! published port, and the IDs of the containers it saw.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::lab::{Lab, cgroups_named, cgroups_of, eventually};
use berth_tests::root_or_skip;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use stage05_networks::firewall::table_for;
use stage05_networks::ipam::{process_alive, process_start_time};

/// Kills per victim, spread evenly over the whole start of a container on
/// a network with a published port (about 80 ms on an idle machine, more
/// under load: it is measured first), and a little beyond it.
const KILLS: u32 = 20;

/// A host port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `n`th of the [`KILLS`] delays: from 0 to a third more than `start`.
fn delay(n: u32, start: Duration) -> Duration {
    start * 4 / 3 * n / (KILLS - 1)
}

/// What this test may find on the host: its root, its network, its port.
struct Scope<'a> {
    lab: &'a Lab,
    network: &'a str,
    port: u16,
    /// Containers that are meant to stay (a peer on the network).
    kept: Vec<String>,
    /// Containers seen so far, and their monitors' and inits' processes.
    seen: BTreeSet<String>,
    processes: BTreeSet<(i32, u64)>,
}

impl<'a> Scope<'a> {
    fn new(lab: &'a Lab, network: &'a str, port: u16) -> Scope<'a> {
        Scope {
            lab,
            network,
            port,
            kept: Vec::new(),
            seen: BTreeSet::new(),
            processes: BTreeSet::new(),
        }
    }

    fn root(&self) -> &Path {
        self.lab.pulled.root.path()
    }

    fn bridge(&self) -> String {
        format!("bth-{}", self.network)
    }

    /// Note every container of the root, the ones being made too, and the
    /// processes their records name.
    fn look(&mut self) {
        let containers = self.lab.containers_dir();
        let staging = entries(&containers)
            .into_iter()
            .filter(|name| name.starts_with(".new-"))
            .map(|name| containers.join(name));
        for dir in std::iter::once(containers.clone()).chain(staging) {
            for id in entries(&dir) {
                if id.len() != 12 {
                    continue;
                }
                // Its monitor in its record, its init in the runtime's state.
                let record = json_in(&dir.join(&id).join("record.json"));
                let state = json_in(&self.root().join("runtime").join(&id).join("state.json"));
                for process in [&record["state"]["monitor"], &state["init"]] {
                    if let (Some(pid), Some(start)) =
                        (process["pid"].as_i64(), process["start_time"].as_u64())
                    {
                        self.processes.insert((pid as i32, start));
                    }
                }
                self.seen.insert(id);
            }
        }
    }

    /// Everything of this test's that is still on the host, but for the
    /// kept containers; empty when nothing leaked.
    fn census(&self) -> Vec<String> {
        let mut leaks = Vec::new();
        let root = self.root().to_string_lossy().into_owned();
        let gone: Vec<&String> = self
            .seen
            .iter()
            .filter(|id| !self.kept.contains(id))
            .collect();

        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        for line in mountinfo.lines().filter(|l| l.contains(&root)) {
            leaks.push(format!("mount: {line}"));
        }
        for dir in berth_cgroups() {
            if gone.iter().any(|id| dir.ends_with(&format!("/berth-{id}"))) {
                leaks.push(format!("cgroup: {dir}"));
            }
        }
        let kept_veths: Vec<String> = self.kept.iter().map(|id| veth(id)).collect();
        for (link, master) in links() {
            let ours = gone.iter().any(|id| link == veth(id) || link == peer(id));
            let on_bridge = master.as_deref() == Some(&self.bridge());
            if ours || (on_bridge && !kept_veths.contains(&link)) {
                leaks.push(format!("link: {link} (master {master:?})"));
            }
        }
        let table = nft_table(self.root());
        let port_rules = format!("dport {} ", self.port);
        for line in table.lines().filter(|l| l.contains(&port_rules)) {
            leaks.push(format!("nft rule: {}", line.trim()));
        }
        for (file, container) in leases(self.root(), self.network) {
            if !self.kept.contains(&container) {
                leaks.push(format!("lease: {file} of {container}"));
            }
        }
        for file in entries(&self.root().join("networks/ports")) {
            if !self.kept.iter().any(|id| file == format!("{id}.json")) {
                leaks.push(format!("published ports file: {file}"));
            }
        }
        for dir in entries(&self.lab.containers_dir()) {
            if !self.kept.contains(&dir) {
                leaks.push(format!("container directory: {dir}"));
            }
        }
        for (pid, start) in &self.processes {
            if process_alive(*pid, *start) && !self.is_kept_process(*pid) {
                leaks.push(format!("process {pid} (a record's): {}", describe(*pid)));
            }
        }
        for pid in berth_processes(&root) {
            if !self.is_kept_process(pid) {
                leaks.push(format!("process {pid} (of the root): {}", describe(pid)));
            }
        }
        leaks
    }

    /// Processes of this root that are not a kept container's: a trial's
    /// monitor (which shows the root in its command line).
    fn trial_processes(&self) -> Vec<i32> {
        berth_processes(&self.root().to_string_lossy())
            .into_iter()
            .filter(|pid| !self.is_kept_process(*pid))
            .collect()
    }

    /// A kept container's monitor or init.
    fn is_kept_process(&self, pid: i32) -> bool {
        self.kept.iter().any(|id| {
            let record = json_in(&self.lab.containers_dir().join(id).join("record.json"));
            let state = json_in(&self.root().join("runtime").join(id).join("state.json"));
            [&record["state"]["monitor"], &state["init"]]
                .iter()
                .any(|process| process["pid"].as_i64() == Some(pid as i64))
        })
    }

    /// The census must be empty now: what `rm` removes is gone when it
    /// returns. Only a killed berth's warm-up copy (launch.rs) may take a
    /// moment more: it waits in the kernel for a grace period that no
    /// signal cuts short, holding nothing; it must be gone within a second.
    fn assert_clean_now(&self, after: &str) {
        let deadline = Instant::now() + Duration::from_secs(1);
        while berth_processes(&self.root().to_string_lossy())
            .iter()
            .any(|pid| describe(*pid).starts_with("berth-warm-up "))
        {
            assert!(
                Instant::now() < deadline,
                "after {after}, a warm-up copy is still there after a second"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let leaks = self.census();
        assert!(
            leaks.is_empty(),
            "after {after}, still on the host:\n  {}",
            leaks.join("\n  ")
        );
    }

    /// Wait (up to 10 s) until the census is empty; fail naming what leaked.
    fn assert_clean(&self, after: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let leaks = self.census();
            if leaks.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "after {after}, still on the host:\n  {}",
                    leaks.join("\n  ")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn veth(id: &str) -> String {
    format!("bth{}", &id[..8])
}

fn peer(id: &str) -> String {
    format!("bthc{}", &id[..8])
}

/// Every `berth-*` cgroup directory on the host (filtered by the caller).
fn berth_cgroups() -> Vec<String> {
    cgroups_named("berth-*")
}

/// The host's links, each with the name of its master (bridge), if any.
fn links() -> Vec<(String, Option<String>)> {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            // "7: bth1234abcd@if6: <...> mtu 1500 master bth-x state ..."
            let name = line.split(": ").nth(1)?.split('@').next()?.to_string();
            let mut words = line.split_whitespace();
            let master = words
                .by_ref()
                .find(|w| *w == "master")
                .and_then(|_| words.next())
                .map(String::from);
            Some((name, master))
        })
        .collect()
}

/// berth's nft table for this root, as `nft list` shows it (empty if none).
fn nft_table(root: &Path) -> String {
    let out = Command::new("nft")
        .args(["list", "table", "ip", &table_for(root)])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (file, container) of each lease file of `network`, stale ones too.
fn leases(root: &Path, network: &str) -> Vec<(String, String)> {
    let dir = root.join("networks").join(network).join("leases");
    entries(&dir)
        .into_iter()
        .filter(|file| file != ".lock")
        .map(|file| {
            let lease: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join(&file)).unwrap_or_default())
                    .unwrap_or_default();
            let container = lease["container"].as_str().unwrap_or("?").to_string();
            (file, container)
        })
        .collect()
}

/// Processes whose command line names this root: berth commands and
/// monitors.
fn berth_processes(root: &str) -> Vec<i32> {
    entries(Path::new("/proc"))
        .iter()
        .filter_map(|pid| pid.parse::<i32>().ok())
        .filter(|pid| *pid != std::process::id() as i32 && cmdline(*pid).contains(root))
        .collect()
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
        .unwrap_or_default()
}

/// A process's name, state and command line, for a message.
fn describe(pid: i32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rfind(')').and_then(|end| stat.get(end + 2..end + 3));
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    format!(
        "{} ({}) {}",
        comm.trim(),
        state.unwrap_or("gone"),
        cmdline(pid)
    )
}

fn sigkill(pid: i32) {
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// Wait for `child` to exit, noting what `scope` can see meanwhile.
fn reap(child: &mut Child, scope: &mut Scope) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        assert!(Instant::now() < deadline, "berth did not exit");
        scope.look();
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The first child of `parent` (the monitor of a `berth run -d`), if it
/// has one yet.
fn child_of(parent: u32) -> Option<(i32, u64)> {
    let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"));
    let pid: i32 = children.ok()?.split_whitespace().next()?.parse().ok()?;
    Some((pid, process_start_time(pid)?))
}

/// The record of the container called `name`, if there is one.
fn record_named(lab: &Lab, name: &str) -> Option<serde_json::Value> {
    entries(&lab.containers_dir()).into_iter().find_map(|id| {
        let text =
            std::fs::read_to_string(lab.containers_dir().join(id).join("record.json")).ok()?;
        let record: serde_json::Value = serde_json::from_str(&text).ok()?;
        (record["name"] == name).then_some(record)
    })
}

/// How a trial kills berth.
#[derive(Clone, Copy, Debug)]
enum Victim {
    /// `berth run` in the foreground: it is the container's monitor.
    Foreground,
    /// `berth run -d`, before or after its monitor said "running".
    Detacher,
    /// The monitor that `berth run -d` started.
    Monitor,
}

/// Start a container named `name` in the way `victim` says and SIGKILL the
/// victim after `delay`; check what is left then; `berth rm -f` it; check
/// that nothing of it is left at all. Says where the kill landed.
fn trial(
    scope: &mut Scope,
    victim: Victim,
    name: &str,
    delay: Duration,
    until_running: bool,
) -> Landed {
    let lab = scope.lab;
    let what = format!("killing {victim:?} {name} at {delay:?}");
    let mut run = lab.berth();
    run.arg("run");
    if !matches!(victim, Victim::Foreground) {
        run.arg("-d");
    }
    run.args(["--name", name, "--network", scope.network])
        .args(["-p", &format!("{}:80", scope.port)])
        .arg(&lab.pulled.image)
        .args(["sleep", "1000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let since = Instant::now();
    let mut child = run.spawn().unwrap();
    let mut monitor = None;
    let running = || record_named(lab, name).is_some_and(|r| r["state"]["status"] == "running");
    while since.elapsed() < delay
        || (matches!(victim, Victim::Monitor) && monitor.is_none())
        || (until_running && !running() && since.elapsed() < Duration::from_secs(10))
    {
        scope.look();
        if monitor.is_none() && matches!(victim, Victim::Monitor) {
            monitor = child_of(child.id());
        }
        if child.try_wait().unwrap().is_some() {
            break; // run -d is done: it has nothing more to start
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // The monitor says "running" only after the record says so: if the
    // record did not say so before the kill, nobody heard it.
    let was_running = record_named(lab, name).is_some_and(|r| r["state"]["status"] == "running");
    match (victim, monitor) {
        (Victim::Monitor, Some((pid, _))) => sigkill(pid),
        _ => sigkill(child.id() as i32),
    }
    let heard_running = reap(&mut child, scope);

    match victim {
        Victim::Foreground => {}
        // A `run -d` killed before its container ran leaves the monitor
        // alone with it. The monitor can't tell anyone "running" (EPIPE),
        // so it takes the container down and removes it, leaving nothing.
        Victim::Detacher if !heard_running && !was_running => {
            eventually(&format!("{what}: its monitor ends"), || {
                scope.look();
                scope.trial_processes().is_empty()
            });
            match record_named(lab, name) {
                // `run -d` died before it started a monitor.
                Some(record) => assert!(
                    record["state"]["monitor"].is_null(),
                    "{what}: the monitor left the container: {record}"
                ),
                None => {
                    lab.ok(&["ps", "-a"]); // and the next berth command
                    scope.assert_clean(&format!("{what}: its monitor's own cleanup"));
                }
            }
        }
        Victim::Detacher => {}
        // `run -d` saw its monitor die: if it had not heard "running", it
        // removed the container, and what the monitor left with it.
        Victim::Monitor => {
            if !heard_running {
                assert!(
                    record_named(lab, name).is_none(),
                    "{what}: run -d left a record"
                );
                lab.ok(&["ps", "-a"]);
                scope.assert_clean(&format!("{what}: run -d's own cleanup"));
            }
        }
    }
    let landed = Landed {
        status: record_named(lab, name)
            .and_then(|r| r["state"]["status"].as_str().map(String::from)),
        leftovers: scope.census().len(),
    };
    let rm = lab.berth().args(["rm", "-f", name]).output().unwrap();
    let said = String::from_utf8_lossy(&rm.stderr);
    assert!(
        rm.status.success() || said.contains("no such container"),
        "{what}, then rm -f: {said}"
    );
    scope.assert_clean_now(&format!("{what}, then rm -f"));
    landed
}

/// Where a kill landed: the record's status then (if there was one), and
/// how many things were left on the host for `rm -f`.
#[derive(Debug)]
struct Landed {
    status: Option<String>,
    leftovers: usize,
}

#[test]
fn sigkill_at_any_moment_of_a_start_leaves_nothing_that_rm_does_not_remove() {
    if !root_or_skip("sigkill_at_any_moment_of_a_start_leaves_nothing_that_rm_does_not_remove") {
        return;
    }
    let mut lab = Lab::new();
    lab.network("t-sigkill", "10.249.17.0/24");
    let port = free_port();
    // A peer on the network, whose /etc/hosts every start and cleanup
    // rewrites.
    let peer = lab.detach(
        &["--name", "peer", "--network", "t-sigkill"],
        &["sleep", "1000"],
    );
    let mut scope = Scope::new(&lab, "t-sigkill", port);
    scope.kept.push(peer.clone());
    scope.look();
    scope.assert_clean("starting the peer");

    // How long a whole start takes here, now.
    let since = Instant::now();
    lab.detach(
        &[
            "--name",
            "measure",
            "--network",
            "t-sigkill",
            "-p",
            &format!("{port}:80"),
        ],
        &["true"],
    );
    let start = since.elapsed();
    lab.ok(&["rm", "-f", "measure"]);
    scope.look();
    scope.assert_clean("measuring a start");

    for victim in [Victim::Foreground, Victim::Detacher, Victim::Monitor] {
        let mut landed = Vec::new();
        for n in 0..KILLS {
            let name = format!("{victim:?}{n}").to_lowercase();
            // The last kill waits for "running", whatever the load does
            // to how long a start takes: one kill surely lands there.
            let last = n == KILLS - 1;
            landed.push(trial(&mut scope, victim, &name, delay(n, start), last));
        }
        // Some kills hit a start halfway, before the container ran (with
        // things made, in the foreground, for rm -f to remove), and some
        // a container that ran; otherwise this checked less than it says.
        let running = |l: &Landed| l.status.as_deref() == Some("running");
        let halfway =
            |l: &Landed| !running(l) && (l.leftovers > 0 || !matches!(victim, Victim::Foreground));
        assert!(
            landed.iter().any(running) && landed.iter().any(halfway),
            "{victim:?}: a start takes {start:?}; the kills landed at {landed:?}"
        );
    }

    // The peer's /etc/hosts names itself and none of the victims.
    let hosts = std::fs::read_to_string(lab.containers_dir().join(&peer).join("hosts")).unwrap();
    assert!(hosts.contains("\tpeer "), "{hosts}");
    for victim in ["foreground", "detacher", "monitor"] {
        assert!(
            !hosts.contains(victim),
            "a victim is still in the peer's hosts:\n{hosts}"
        );
    }
    // The census knew the victims (those killed late enough to have an ID).
    assert!(
        scope.seen.len() > 2 * KILLS as usize,
        "saw only {:?}",
        scope.seen
    );

    // And without the peer and the network, nothing at all.
    lab.ok(&["rm", "-f", "peer"]);
    lab.ok(&["network", "rm", "t-sigkill"]);
    scope.kept.clear();
    scope.assert_clean("removing the peer and the network");
    assert!(
        !nft_table(scope.root()).contains("10.249.17.0/24"),
        "the network's nft rules are left"
    );
    assert!(
        !links().iter().any(|(link, _)| *link == scope.bridge()),
        "the bridge is left"
    );
}

/// The record of `name`, as `berth inspect` prints it.
fn inspect(lab: &Lab, name: &str) -> serde_json::Value {
    serde_json::from_str(&lab.ok(&["inspect", name])).unwrap()
}

/// A JSON file's content; null if it is missing or half-written.
fn json_in(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or_default()
}

fn cgroups_in(record: &serde_json::Value) -> Vec<PathBuf> {
    record["state"]["cgroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|dir| PathBuf::from(dir.as_str().unwrap()))
        .collect()
}

/// SIGKILL the container's monitor, and wait until its init died with it.
fn kill_monitor(lab: &Lab, name: &str) {
    let record = inspect(lab, name);
    let pid = |who: &str| record["state"][who]["pid"].as_i64().unwrap() as i32;
    let (monitor, init) = (pid("monitor"), pid("init"));
    let init_start = process_start_time(init).unwrap();
    sigkill(monitor);
    eventually("the container died with its monitor", || {
        !process_alive(init, init_start)
    });
}

#[test]
fn start_after_a_killed_monitor_runs_again_and_rm_leaves_nothing() {
    if !root_or_skip("start_after_a_killed_monitor_runs_again_and_rm_leaves_nothing") {
        return;
    }
    let mut lab = Lab::new();
    lab.network("t-restart", "10.249.18.0/24");
    let port = free_port();
    let publish = format!("{port}:80");
    let id = lab.detach(
        &[
            "--name",
            "phoenix",
            "--network",
            "t-restart",
            "-p",
            &publish,
        ],
        &["sleep", "1000"],
    );
    let mut scope = Scope::new(&lab, "t-restart", port);
    scope.look();
    let first = inspect(&lab, "phoenix");
    let dirs = cgroups_in(&first);
    assert!(!dirs.is_empty(), "no cgroups in the record: {first}");

    kill_monitor(&lab, "phoenix");
    assert!(
        dirs.iter().all(|dir| dir.exists()),
        "nobody could have removed the cgroups yet"
    );
    assert_eq!(lab.ok(&["start", "phoenix"]), "phoenix\n");
    let again = inspect(&lab, "phoenix");
    assert_eq!(again["state"]["status"], "running", "{again}");
    assert_eq!(again["state"]["runs"], 2);
    assert_ne!(again["state"]["monitor"], first["state"]["monitor"]);
    let dirs = cgroups_in(&again);
    assert!(
        !dirs.is_empty() && dirs.iter().all(|dir| dir.exists()),
        "{again}"
    );
    // One set of rules for the port, the new run's.
    let table = nft_table(scope.root());
    assert_eq!(table.matches(&format!("{port} : ")).count(), 1, "{table}");
    assert!(lab.ok(&["ps"]).contains("phoenix"));
    scope.look();

    lab.ok(&["rm", "-f", "phoenix"]);
    assert!(
        cgroups_of(&id).is_empty(),
        "rm -f left {:?}",
        cgroups_of(&id)
    );
    scope.assert_clean("start after a killed monitor, then rm -f");

    // Killed again, and removed without -f: rm cleans what the dead run left.
    let id = lab.detach(
        &["--name", "orphan", "--network", "t-restart", "-p", &publish],
        &["sleep", "1000"],
    );
    scope.look();
    kill_monitor(&lab, "orphan");
    assert!(!cgroups_of(&id).is_empty());
    assert!(!leases(scope.root(), "t-restart").is_empty());
    lab.ok(&["rm", "orphan"]);
    scope.assert_clean("a killed monitor, then rm");
}

#[test]
fn a_command_that_never_starts_leaves_no_record_and_gets_dockers_exit_code() {
    if !root_or_skip("a_command_that_never_starts_leaves_no_record_and_gets_dockers_exit_code") {
        return;
    }
    let mut lab = Lab::new();
    lab.network("t-nostart", "10.249.19.0/24");
    let port = free_port();
    let publish = format!("{port}:80");
    let mut scope = Scope::new(&lab, "t-nostart", port);
    let net = ["--network", "t-nostart", "-p", &publish];
    for (options, command, code) in [
        (&["-u", "nosuchuser"][..], &["true"][..], 125),
        (&[], &["/bin/no-such-program"], 127),
        (&[], &["/etc/passwd"], 126),
    ] {
        let out = lab.run(&[options, &net[..]].concat(), command);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{options:?} {command:?}: {said}"
        );
        assert!(!said.is_empty(), "{command:?} failed without a word");
        assert!(
            lab.container_dirs().is_empty(),
            "{options:?} {command:?} left {:?}",
            lab.container_dirs()
        );
        scope.assert_clean(&format!("{options:?} {command:?}"));
    }

    // Too low a pids limit is refused before anything is made.
    let out = lab.run(&["--network", "none", "--pids-limit", "1"], &["true"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{said}");
    assert!(
        said.contains("--pids-limit") && said.contains("at least 2"),
        "{said}"
    );
    assert!(lab.container_dirs().is_empty());
    let two = lab.run(
        &["--rm", "--network", "none", "--pids-limit", "2"],
        &["true"],
    );
    assert_eq!(
        two.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&two.stderr)
    );

    // A command that started and then exits 127 itself is a container that
    // ran: its record stays.
    let out = lab.run(
        &["--name", "ran", "--network", "none"],
        &["sh", "-c", "exit 127"],
    );
    assert_eq!(out.status.code(), Some(127));
    assert!(lab.ok(&["ps", "-a"]).contains("Exited (127)"));
    lab.ok(&["rm", "ran"]);
    scope.look();
    scope.assert_clean("the failed starts");
}

/// berth-runtime's `create`, killed with SIGKILL at moments spread over its
/// work: whatever it left (a directory, a state that says "creating", a
/// cgroup, an init waiting at its gate) is the container's, which `delete
/// --force` then removes entirely. No process of it outlives that.
#[test]
fn the_runtime_killed_during_create_leaves_what_delete_removes() {
    if !root_or_skip("the_runtime_killed_during_create_leaves_what_delete_removes") {
        return;
    }
    let fixture = berth_tests::Fixture::new();
    let bundle = fixture.dir().join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    let state = fixture.dir().join("state");
    let runtime = || {
        let mut command = std::process::Command::new(berth_tests::bin("berth-runtime"));
        command.arg("--root").arg(&state);
        command
    };
    assert!(
        runtime()
            .args(["spec", "--bundle"])
            .arg(&bundle)
            .status()
            .unwrap()
            .success()
    );
    let path = bundle.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["root"]["path"] = fixture.rootfs().to_string_lossy().into_owned().into();
    config["process"]["terminal"] = false.into();
    config["process"]["args"] = serde_json::json!(["sleep", "613"]);
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();

    for delay_ms in [0u64, 1, 2, 3, 5, 8, 12, 20, 40] {
        let id = format!("bth-kill-{delay_ms}");
        let mut create = runtime()
            .args(["create", "--bundle"])
            .arg(&bundle)
            .arg(&id)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = create.kill();
        let _ = create.wait();
        // Gone already (killed before it made anything), or removed now.
        let deleted = runtime().args(["delete", "--force", &id]).output().unwrap();
        let said = String::from_utf8_lossy(&deleted.stderr);
        assert!(
            deleted.status.success() || said.contains("does not exist"),
            "delete after a kill at {delay_ms} ms: {said}"
        );
        assert!(
            !state.join("runtime").join(&id).exists(),
            "its state was left (killed at {delay_ms} ms)"
        );
        assert!(
            cgroups_of(&id).is_empty(),
            "its cgroup was left (killed at {delay_ms} ms)"
        );
    }
    // And nothing of them runs (their command, `sleep 613`, is theirs alone).
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|entry| {
            std::fs::read(entry.path().join("cmdline"))
                .is_ok_and(|line| line == b"sleep\x00613\x00")
        })
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.is_empty(),
        "processes of killed creates still run: {left:?}"
    );
}
