//! Stage 05 on the real kernel: bridges, veths, NAT, published ports, names.
//! Traffic only ever goes to loopback and to network namespaces we make.
//!
//! Bridges and nftables tables are host-wide, so every test uses networks of
//! its own names and subnets.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::prelude::*;
use berth_tests::images::PulledImage;
use berth_tests::{Fixture, Running, bin, http_get, root_or_skip};
use predicates::prelude::*;

/// A berth root holding `busybox`, pulled from a registry of our own; the
/// image has `/srv/www/index.html` for `httpd`. (Not `/www`: umoci 0.4.7
/// writes a truncated layer when the tar's last entry is a regular file.)
struct Net {
    _fx: Fixture,
    pulled: PulledImage,
}

impl Net {
    fn new() -> Net {
        let fx = Fixture::new();
        // busybox needs glibc's name service to resolve names from /etc/hosts.
        stage01_chroot::rootfs::add_name_service(&fx.rootfs()).unwrap();
        std::fs::create_dir_all(fx.rootfs().join("srv/www")).unwrap();
        std::fs::write(
            fx.rootfs().join("srv/www/index.html"),
            "hello from the web container\n",
        )
        .unwrap();
        let pulled = PulledImage::new(fx.dir(), &fx.rootfs());
        Net { _fx: fx, pulled }
    }

    fn berth(&self) -> Command {
        let mut command = Command::new(bin("stage05-networks"));
        command.arg("--root").arg(self.pulled.root.path());
        command
    }

    fn network(&self, name: &str, subnet: &str) -> NetworkGuard<'_> {
        self.berth()
            .args(["network", "create", name, "--subnet", subnet])
            .assert()
            .success();
        NetworkGuard {
            net: self,
            name: name.into(),
        }
    }

    /// `run [options] IMAGE CMD...` in the background.
    fn start(&self, options: &[&str], command: &[&str]) -> Running {
        let child = self
            .berth()
            .arg("run")
            .args(options)
            .arg(&self.pulled.image)
            .args(command)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Running::new(child)
    }

    fn run(&self, options: &[&str], command: &[&str]) -> Output {
        self.berth()
            .arg("run")
            .args(options)
            .arg(&self.pulled.image)
            .args(command)
            .output()
            .unwrap()
    }

    fn leases(&self, network: &str) -> Vec<Ipv4Addr> {
        let dir = self
            .pulled
            .root
            .path()
            .join("networks")
            .join(network)
            .join("leases");
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
            .collect()
    }
}

/// Removes the network on drop (after the containers on it are gone).
struct NetworkGuard<'a> {
    net: &'a Net,
    name: String,
}

impl Drop for NetworkGuard<'_> {
    fn drop(&mut self) {
        let _ = self
            .net
            .berth()
            .args(["network", "rm", &self.name])
            .output();
    }
}

/// A container running in the background; stopped (SIGTERM) on drop.
fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Shell that fetches `http://HOST/` (with `nc`: this busybox's `wget`
/// crashes), retrying until the server is up (5 s at most); prints the page.
fn fetch(host: &str) -> String {
    format!(
        "for i in $(seq 50); do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} 80 | grep hello && exit 0; \
         sleep 0.1; done; exit 1"
    )
}

/// One attempt at fetching `http://HOST/`: does the page come back?
fn fetch_once(host: &str) -> String {
    format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} 80 | grep hello")
}

fn host_links() -> String {
    String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-o", "link", "show"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned()
}

#[test]
fn containers_on_one_network_reach_each_other_by_name_and_address() {
    if !root_or_skip("containers_on_one_network_reach_each_other_by_name_and_address") {
        return;
    }
    let net = Net::new();
    let _network = net.network("t-names", "10.252.1.0/24");
    let web = net.start(
        &["--name", "web", "--network", "t-names"],
        &["httpd", "-f", "-p", "80", "-h", "/srv/www"],
    );
    let by_name = net.run(&["--network", "t-names"], &["sh", "-c", &fetch("web")]);
    assert_eq!(stdout(&by_name), "hello from the web container\n");
    let address = net.leases("t-names")[0];
    let by_address = net.run(
        &["--network", "t-names"],
        &["sh", "-c", &fetch(&address.to_string())],
    );
    assert_eq!(stdout(&by_address), "hello from the web container\n");
    // Each container knows its own name and address.
    let hosts = net.run(
        &["--name", "client", "--network", "t-names"],
        &["sh", "-c", "cat /etc/hostname; grep -c web /etc/hosts"],
    );
    assert_eq!(stdout(&hosts), "client\n1\n");
    web.stop();
    assert!(net.leases("t-names").is_empty(), "a lease is left");
}

#[test]
fn different_networks_are_isolated_and_none_has_only_loopback() {
    if !root_or_skip("different_networks_are_isolated_and_none_has_only_loopback") {
        return;
    }
    let net = Net::new();
    let _a = net.network("t-isoa", "10.252.2.0/24");
    let _b = net.network("t-isob", "10.252.3.0/24");
    let _web = net.start(
        &["--name", "web", "--network", "t-isoa"],
        &["httpd", "-f", "-p", "80", "-h", "/srv/www"],
    );
    // Wait until the server answers on its own network...
    stdout(&net.run(&["--network", "t-isoa"], &["sh", "-c", &fetch("web")]));
    // ...then try from the other network, by address (the name is unknown there).
    let address = net.leases("t-isoa")[0];
    let across = net.run(
        &["--network", "t-isob"],
        &["sh", "-c", &fetch_once(&address.to_string())],
    );
    assert!(
        !across.status.success(),
        "reached another network: {}",
        String::from_utf8_lossy(&across.stdout)
    );
    let unknown = net.run(&["--network", "t-isob"], &["sh", "-c", &fetch_once("web")]);
    assert!(!unknown.status.success());

    let none = net.run(&["--network", "none"], &["ip", "-o", "link", "show"]);
    let links = stdout(&none);
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains(": lo:"));
}

#[test]
fn a_published_port_reaches_the_container_from_the_host() {
    if !root_or_skip("a_published_port_reaches_the_container_from_the_host") {
        return;
    }
    let net = Net::new();
    let _network = net.network("t-ports", "10.252.4.0/24");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let publish = format!("{port}:80");
    let _web = net.start(
        &["--network", "t-ports", "-p", &publish],
        &["httpd", "-f", "-p", "80", "-h", "/srv/www"],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let reply = loop {
        match http_get(port) {
            Some(reply) if reply.contains("hello from the web container") => break reply,
            _ if Instant::now() > deadline => {
                panic!("127.0.0.1:{port} never answered with the container's page")
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert!(reply.starts_with("HTTP/1."), "{reply}");

    // The same host port again, and a port a host program holds: refused.
    net.berth()
        .arg("run")
        .args([
            "--network",
            "t-ports",
            "-p",
            &publish,
            &net.pulled.image,
            "true",
        ])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("already published"));
    let busy = TcpListener::bind("0.0.0.0:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    net.berth()
        .arg("run")
        .args([
            "--network",
            "t-ports",
            "-p",
            &format!("{busy_port}:80"),
            &net.pulled.image,
            "true",
        ])
        .assert()
        .code(125)
        .stderr(predicate::str::contains(format!(
            "port {busy_port}/tcp is in use on the host"
        )));
}

/// A network namespace standing in for "the internet": a veth from the host
/// (198.51.100.1, a documentation address) to it (198.51.100.2). Removed on drop.
struct Internet {
    netns: String,
    link: String,
}

impl Internet {
    fn new(tag: &str) -> Internet {
        let internet = Internet {
            netns: format!("bth-inet-{tag}"),
            link: format!("bth-i{tag}"),
        };
        let peer = format!("bth-o{tag}");
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap();
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ip(&["netns", "add", &internet.netns]);
        ip(&[
            "link",
            "add",
            &internet.link,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ]);
        ip(&["link", "set", &peer, "netns", &internet.netns]);
        ip(&["addr", "add", "198.51.100.1/24", "dev", &internet.link]);
        ip(&["link", "set", &internet.link, "up"]);
        ip(&[
            "-n",
            &internet.netns,
            "addr",
            "add",
            "198.51.100.2/24",
            "dev",
            &peer,
        ]);
        ip(&["-n", &internet.netns, "link", "set", &peer, "up"]);
        ip(&["-n", &internet.netns, "link", "set", "lo", "up"]);
        internet
    }

    /// Accept one TCP connection on 198.51.100.2:9000 inside the namespace;
    /// the peer address it came from.
    fn accept_one(&self) -> std::thread::JoinHandle<Option<std::net::SocketAddr>> {
        let path = format!("/run/netns/{}", self.netns);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            let netns = std::fs::File::open(path).unwrap();
            nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let listener = TcpListener::bind("198.51.100.2:9000").unwrap();
            listener.set_nonblocking(true).unwrap();
            ready_tx.send(()).unwrap();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok((_, from)) = listener.accept() {
                    return Some(from);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            None
        });
        ready_rx.recv().unwrap();
        handle
    }
}

impl Drop for Internet {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.link])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
    }
}

#[test]
fn egress_leaves_with_the_hosts_address() {
    if !root_or_skip("egress_leaves_with_the_hosts_address") {
        return;
    }
    let net = Net::new();
    let _network = net.network("t-egress", "10.252.5.0/24");
    let internet = Internet::new(&format!("{}", std::process::id() % 100_000));
    let accepted = internet.accept_one();
    let out = net.run(
        &["--network", "t-egress"],
        &["sh", "-c", "echo hi | nc -w 2 198.51.100.2 9000"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let from = accepted
        .join()
        .unwrap()
        .expect("the connection never arrived");
    assert_eq!(
        from.ip().to_string(),
        "198.51.100.1",
        "not masqueraded to the host's address"
    );
}

#[test]
fn twenty_concurrent_containers_get_distinct_addresses_and_leave_nothing() {
    if !root_or_skip("twenty_concurrent_containers_get_distinct_addresses_and_leave_nothing") {
        return;
    }
    let net = Net::new();
    let network = net.network("t-many", "10.252.6.0/24");
    // Each container prints its address and stays up, so all 20 hold their
    // leases at once (an address freed by an exited one may be reused).
    let mut children: Vec<Running> = (0..20)
        .map(|_| {
            net.berth()
                .arg("run")
                .args([
                    "--network",
                    "t-many",
                    &net.pulled.image,
                    "sh",
                    "-c",
                    "ip -o -4 addr show eth0; exec sleep 120",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map(Running::new)
                .unwrap()
        })
        .collect();
    let mut addresses: Vec<String> = children
        .iter_mut()
        .map(|child| {
            let mut line = String::new();
            BufReader::new(child.stdout.as_mut().unwrap())
                .read_line(&mut line)
                .unwrap();
            line.split_whitespace()
                .nth(3)
                .unwrap_or_else(|| panic!("no address in {line:?}"))
                .to_string()
        })
        .collect();
    for child in children {
        child.stop();
    }
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 20, "addresses given twice: {addresses:?}");
    assert!(net.leases("t-many").is_empty(), "leases left");
    // Only this network's veths: other tests' containers may be running.
    let plugged = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-o", "link", "show", "master", "bth-t-many"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(plugged.trim().is_empty(), "a veth was left:\n{plugged}");
    let ports = net.pulled.root.path().join("networks/ports");
    assert_eq!(std::fs::read_dir(&ports).map(|d| d.count()).unwrap_or(0), 0);

    drop(network); // network rm
    assert!(!host_links().contains("bth-t-many"), "the bridge is left");
    let table = stage05_networks::firewall::table_for(net.pulled.root.path());
    let tables = String::from_utf8_lossy(
        &Command::new("nft")
            .args(["list", "tables"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(
        !tables.contains(&table),
        "berth's nft table {table} is left:\n{tables}"
    );
    net.berth()
        .args(["network", "ls"])
        .assert()
        .success()
        .stdout(predicate::str::contains("t-many").not());
}

#[test]
fn a_network_in_use_cannot_be_removed() {
    if !root_or_skip("a_network_in_use_cannot_be_removed") {
        return;
    }
    let net = Net::new();
    let _network = net.network("t-busy", "10.252.7.0/24");
    let sleeper = net.start(
        &["--name", "sleepy", "--network", "t-busy"],
        &["sh", "-c", "echo up; sleep 30"],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while net.leases("t-busy").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the container never got an address"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    net.berth()
        .args(["network", "rm", "t-busy"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("in use by 1 container(s): sleepy"));
    // Its name is taken on that network, too.
    net.berth()
        .args([
            "run",
            "--name",
            "sleepy",
            "--network",
            "t-busy",
            &net.pulled.image,
            "true",
        ])
        .assert()
        .code(125)
        .stderr(predicate::str::contains(
            "a container named sleepy is already on network t-busy",
        ));
    sleeper.stop();
    net.berth()
        .args(["network", "create", "t-busy", "--subnet", "10.252.7.0/24"])
        .assert()
        .code(125)
        .stderr(predicate::str::contains("already exists"));
}

#[test]
fn a_container_cannot_reach_the_hosts_loopback_services() {
    if !root_or_skip("a_container_cannot_reach_the_hosts_loopback_services") {
        return;
    }
    let net = Net::new();
    let _network = net.network("t-lonet", "10.252.8.0/24");
    // A service the host offers on loopback only.
    let service = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = service.local_addr().unwrap().port();
    service.set_nonblocking(true).unwrap();
    // Root in its own namespace can route 127.0.0.1 out of eth0 (the
    // CVE-2020-8558 trick); berth's firewall must drop it on the bridge.
    let attack = format!(
        "gw=$(ip route | awk '/default/ {{print $3}}'); \
         echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet; \
         echo 1 > /proc/sys/net/ipv4/conf/eth0/route_localnet; \
         ip addr del 127.0.0.1/8 dev lo && ip route add 127.0.0.1/32 via $gw && \
         timeout 5 sh -c 'echo hi | nc -w 2 127.0.0.1 {port}' && echo reached"
    );
    let out = net.run(&["--network", "t-lonet"], &["sh", "-c", &attack]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("reached"),
        "the container reached the host's loopback"
    );
    assert!(
        service.accept().is_err(),
        "the host's loopback service got a connection from a container"
    );
}
