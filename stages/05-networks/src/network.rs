//! Networks as berth keeps them: `<root>/networks/<name>.json` holds the
//! name, subnet and bridge; `<root>/networks/<name>/leases/` the addresses in
//! use. A network's bridge is (re)made on demand, so a reboot, which wipes
//! all links, costs nothing.

use std::net::Ipv4Addr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::fcntl::Flock;
use stage01_chroot::Error;

use stage04_images::store::{replace_atomic, write_atomic};

use crate::firewall::{self, NetworkRule, PortRule, Ruleset};
use crate::hosts::{NameFiles, NetworkHosts, member_line};
use crate::ipam::{Ipam, process_start_time};
use crate::netlink::Netlink;
use crate::subnet::Subnet;

/// The network containers join when they name none.
pub const DEFAULT_NETWORK: &str = "berth";
/// Its subnet unless `BERTH_DEFAULT_SUBNET` says otherwise, or the network is
/// created by hand first (`network create berth --subnet ...`). A /24 deep in
/// 10/8, away from the 10.0.x and 10.1.x that home routers and clouds like.
pub const DEFAULT_SUBNET: &str = "10.77.0.0/24";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Network {
    pub name: String,
    pub subnet: Subnet,
    pub bridge: String,
}

impl Network {
    pub fn gateway(&self) -> std::net::Ipv4Addr {
        self.subnet.gateway()
    }
}

/// A published port, with the process that owns it, kept while it runs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PortOwner {
    pub pid: i32,
    pub start_time: u64,
    pub rules: Vec<PortRule>,
}

/// All networks under one state root.
pub struct Networks {
    dir: PathBuf,
    /// berth's nftables table for this state root.
    table: String,
    /// The default network's bridge: `berth0` for the default root, else
    /// one of its own (`bth0-` and a hash of the root), so that two roots
    /// never share one.
    default_bridge: String,
}

impl Networks {
    pub fn open(root: &Path) -> Result<Networks, Error> {
        let dir = root.join("networks");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io("create", &dir, e))?;
        Ok(Networks {
            dir,
            table: firewall::table_for(root),
            default_bridge: match firewall::root_hash(root) {
                None => "berth0".into(),
                Some(hash) => format!("bth0-{:06x}", hash & 0xff_ffff),
            },
        })
    }

    /// Serialise changes to networks, ports and the firewall between processes.
    pub fn lock(&self) -> Result<Flock<std::fs::File>, Error> {
        stage04_images::store::lock_file(&self.dir.join(".lock"))
    }

    pub fn ipam(&self, network: &Network) -> Ipam {
        Ipam::new(&self.dir.join(&network.name).join("leases"), network.subnet)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Define a network, with a bridge named after it (see [`bridge_for`]);
    /// its subnet must not overlap another network's.
    pub fn create(&self, name: &str, subnet: Option<Subnet>) -> Result<Network, Error> {
        check_name(name)?;
        let _lock = self.lock()?;
        self.create_locked(name, subnet)
    }

    fn create_locked(&self, name: &str, subnet: Option<Subnet>) -> Result<Network, Error> {
        if self.file(name).exists() {
            return Err(Error::Other(format!("network {name} already exists")));
        }
        let subnet = match subnet {
            Some(subnet) => subnet,
            None if name == DEFAULT_NETWORK => default_subnet()?,
            None => self.free_subnet()?,
        };
        if let Some(other) = self
            .list()?
            .into_iter()
            .find(|n| n.subnet.overlaps(&subnet))
        {
            return Err(Error::Other(format!(
                "subnet {subnet} overlaps network {} ({}); choose another with --subnet",
                other.name, other.subnet
            )));
        }
        let bridge = if name == DEFAULT_NETWORK {
            self.default_bridge.clone()
        } else {
            bridge_for(name)
        };
        if let Some(other) = self.list()?.into_iter().find(|n| n.bridge == bridge) {
            return Err(Error::Other(format!(
                "network {} already has the bridge {bridge} that {name} would get; choose \
                 another name",
                other.name
            )));
        }
        let network = Network {
            name: name.into(),
            subnet,
            bridge,
        };
        let json = serde_json::to_vec_pretty(&network).map_err(|e| Error::Other(e.to_string()))?;
        write_atomic(&self.file(name), &json)?;
        Ok(network)
    }

    /// A network by name; the default one is created on first use.
    pub fn get(&self, name: &str) -> Result<Network, Error> {
        match std::fs::read(self.file(name)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::Other(format!("{}: {e}", self.file(name).display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && name == DEFAULT_NETWORK => {
                let _lock = self.lock()?;
                match self.create_locked(name, None) {
                    Err(_) if self.file(name).exists() => self.get(name), // created meanwhile
                    other => other,
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Other(format!(
                "no network {name}; create it with: {} network create {name}",
                stage01_chroot::exit::program()
            ))),
            Err(e) => Err(Error::io("read", self.file(name), e)),
        }
    }

    pub fn list(&self) -> Result<Vec<Network>, Error> {
        let mut networks = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::io("read", &self.dir, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(name) = name.strip_suffix(".json") {
                networks.push(self.get(name)?);
            }
        }
        networks.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(networks)
    }

    /// Remove a network that no container uses: its bridge, leases, rules.
    pub fn remove(&self, name: &str) -> Result<(), Error> {
        let network = self.get_existing(name)?;
        let _lock = self.lock()?;
        let users = self.ipam(&network).leases()?;
        if !users.is_empty() {
            let names: Vec<String> = users
                .iter()
                .map(|(_, lease)| {
                    lease
                        .name
                        .clone()
                        .unwrap_or_else(|| lease.container.clone())
                })
                .collect();
            return Err(Error::Other(format!(
                "network {name} is in use by {} container(s): {}; stop them first",
                names.len(),
                names.join(", ")
            )));
        }
        let mut netlink = Netlink::open()?;
        if let Some(index) = netlink.link_index(&network.bridge)?
            && self.is_ours(&mut netlink, index, &network)?
        {
            netlink.delete_link(index)?;
        }
        std::fs::remove_file(self.file(name))
            .map_err(|e| Error::io("remove", self.file(name), e))?;
        let _ = std::fs::remove_dir_all(self.dir.join(name));
        self.sync_firewall_locked()
    }

    /// A network by name, or `None` if there is none of that name. Unlike
    /// [`Networks::get`], never makes the default network.
    pub fn existing(&self, name: &str) -> Result<Option<Network>, Error> {
        match self.file(name).exists() {
            true => self.get(name).map(Some),
            false => Ok(None),
        }
    }

    /// A network by name, which must exist (unlike [`Networks::get`], the
    /// default one is not made by asking).
    pub fn get_existing(&self, name: &str) -> Result<Network, Error> {
        if !self.file(name).exists() {
            return Err(Error::Other(format!(
                "no network {name} (see: {} network ls)",
                stage01_chroot::exit::program()
            )));
        }
        self.get(name)
    }

    // ANCHOR: ensure_bridge
    /// Make the network's bridge if it isn't there: a virtual switch holding
    /// the gateway address, so the host routes the subnet to it.
    pub fn ensure_bridge(&self, network: &Network) -> Result<(), Error> {
        // ANCHOR: exercise_bridge
        let mut netlink = Netlink::open()?;
        match netlink.link_index(&network.bridge)? {
            None => {
                let index = netlink.create_bridge(&network.bridge)?;
                netlink.add_address(index, network.gateway(), network.subnet.prefix_len)?;
                netlink.set_up(index)?;
            }
            // Bridge names are host-wide, networks belong to one state root:
            // a bridge of that name without our gateway is someone else's.
            Some(index) if !self.is_ours(&mut netlink, index, network)? => {
                return Err(Error::Other(format!(
                    "a bridge {} already exists without {}/{}: another berth state root (or \
                     another tool) uses that name; choose another network name",
                    network.bridge,
                    network.gateway(),
                    network.subnet.prefix_len
                )));
            }
            Some(_) => {}
        }
        firewall::enable_forwarding(&network.bridge)
        // ANCHOR_END: exercise_bridge
    }
    // ANCHOR_END: ensure_bridge

    /// Does the bridge at `index` carry this network's gateway address?
    fn is_ours(&self, netlink: &mut Netlink, index: u32, network: &Network) -> Result<bool, Error> {
        let gateway = (network.gateway(), network.subnet.prefix_len);
        Ok(netlink.ipv4_addresses(index)?.contains(&gateway))
    }

    /// Record (or with `None`, forget) a container's published ports.
    pub fn set_ports(&self, container: &str, rules: Option<&[PortRule]>) -> Result<(), Error> {
        let path = self.dir.join("ports").join(format!("{container}.json"));
        match rules {
            Some(rules) if !rules.is_empty() => {
                let pid = std::process::id() as i32;
                let owner = PortOwner {
                    pid,
                    start_time: process_start_time(pid).unwrap_or(0),
                    rules: rules.to_vec(),
                };
                let json = serde_json::to_vec(&owner).map_err(|e| Error::Other(e.to_string()))?;
                let dir = self.dir.join("ports");
                std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
                replace_atomic(&path, &json) // its owner dies with the machine
            }
            _ => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(Error::io("remove", &path, e))
                }
                _ => Ok(()),
            },
        }
    }

    // ANCHOR: publish
    /// Publish a container's ports: refuse a port another container or a host
    /// program already has, record them, and rewrite the firewall.
    pub fn publish(&self, container: &str, rules: &[PortRule]) -> Result<(), Error> {
        let _lock = self.lock()?;
        let published = self.live_ports()?;
        for rule in rules {
            let taken = published
                .iter()
                .any(|p| p.host_port == rule.host_port && p.protocol == rule.protocol);
            if taken {
                return Err(Error::Other(format!(
                    "port {}/{} is already published by another container",
                    rule.host_port,
                    rule.protocol.as_str()
                )));
            }
            check_port_free(rule)?;
        }
        self.set_ports(container, Some(rules))?;
        self.sync_firewall_locked()
    }
    // ANCHOR_END: publish

    /// Forget a container's ports and rewrite the firewall without them.
    pub fn unpublish(&self, container: &str) -> Result<(), Error> {
        let _lock = self.lock()?;
        self.set_ports(container, None)?;
        self.sync_firewall_locked()
    }

    /// The names of `network`: its hosts file, and who has a file of their own.
    pub fn hosts(&self, network: &Network) -> NetworkHosts {
        NetworkHosts::new(&self.dir.join(&network.name), &network.name)
    }

    // ANCHOR: join_hosts
    /// Container `id` (files in `containers/<id>/`) is on `network` at
    /// `address`: its line in the network's hosts file, which its peers
    /// with a file of their own copy.
    pub fn join_hosts(
        &self,
        network: &Network,
        containers: &Path,
        id: &str,
        name: Option<&str>,
        address: Ipv4Addr,
    ) -> Result<(), Error> {
        let _lock = self.lock()?;
        let files = NameFiles::in_dir(&containers.join(id));
        let hostname = std::fs::read_to_string(&files.hostname).unwrap_or_default();
        let hosts = self.hosts(network);
        hosts.set(address, member_line(address, name, hostname.trim(), id))?;
        if !files.is_shared() {
            hosts.set_private(id, true)?;
        }
        self.rewrite_private_files(network, containers)
    }
    // ANCHOR_END: join_hosts

    /// Container `id` left `network`: its peers forget it, and it forgets them.
    pub fn leave_hosts(&self, network: &Network, containers: &Path, id: &str) -> Result<(), Error> {
        let _lock = self.lock()?;
        let hosts = self.hosts(network);
        hosts.remove(id)?;
        hosts.set_private(id, false)?;
        self.rewrite_private_files(network, containers)?;
        self.rewrite_private_file(containers, id)
    }

    /// List container `id`, on `networks`, among those with a file of its
    /// own on each: it had its network's and is getting its own.
    pub fn list_private(&self, networks: &[Network], id: &str) -> Result<(), Error> {
        let _lock = self.lock()?;
        networks
            .iter()
            .try_for_each(|network| self.hosts(network).set_private(id, true))
    }

    /// Rewrite the own files of the containers on `network` that have one.
    /// The caller holds [`Networks::lock`].
    fn rewrite_private_files(&self, network: &Network, containers: &Path) -> Result<(), Error> {
        for id in self.hosts(network).private() {
            self.rewrite_private_file(containers, &id)?;
        }
        Ok(())
    }

    /// Rewrite container `id`'s own file from the networks that list it.
    fn rewrite_private_file(&self, containers: &Path, id: &str) -> Result<(), Error> {
        crate::hosts::rewrite_private(containers, id, || {
            let mut lines = Vec::new();
            for network in self.list()? {
                let hosts = self.hosts(&network);
                if hosts.private().iter().any(|i| i == id) {
                    lines.push(hosts.members()?);
                }
            }
            Ok(lines)
        })
    }

    /// Published ports of live containers; files of dead ones are removed.
    /// The caller holds [`Networks::lock`].
    pub fn live_ports(&self) -> Result<Vec<PortRule>, Error> {
        let dir = self.dir.join("ports");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut rules = Vec::new();
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                // Half-written by a process killed in `replace_atomic`: ports
                // files are written under the lock, which we hold.
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            let Ok(owner) = serde_json::from_slice::<PortOwner>(
                &std::fs::read(entry.path()).unwrap_or_default(),
            ) else {
                continue;
            };
            if process_start_time(owner.pid) == Some(owner.start_time) {
                rules.extend(owner.rules);
            } else {
                let _ = std::fs::remove_file(entry.path()); // its owner crashed
            }
        }
        Ok(rules)
    }

    // ANCHOR: sync_firewall
    /// Rewrite berth's nftables table from what exists now: masquerade for
    /// every network whose bridge is up, DNAT for every live published port.
    pub fn sync_firewall(&self) -> Result<(), Error> {
        let _lock = self.lock()?;
        self.sync_firewall_locked()
    }

    fn sync_firewall_locked(&self) -> Result<(), Error> {
        let mut netlink = Netlink::open()?;
        let mut networks = Vec::new();
        for network in self.list()? {
            if netlink.link_index(&network.bridge)?.is_some() {
                networks.push(NetworkRule {
                    bridge: network.bridge,
                    subnet: network.subnet,
                });
            }
        }
        let ports = self.live_ports()?;
        let rules = Ruleset { networks, ports };
        // What was applied last is kept beside the networks. Most starts
        // change nothing (no ports, a bridge that was already up): then
        // running nft, tens of milliseconds, is skipped. A start or an end
        // that changes only ports changes only them, at a cost that does
        // not grow with the ports that stay. The table must still be
        // there in both cases (`nft flush ruleset` removes it).
        let applied = self.dir.join(".firewall");
        let last: Option<Ruleset> = std::fs::read(&applied)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let wanted = !rules.networks.is_empty() || !rules.ports.is_empty();
        let there = firewall::table_exists(&self.table)?;
        if last.as_ref() == Some(&rules) && there == wanted {
            return Ok(());
        }
        let _ = std::fs::remove_file(&applied); // unknown until nft is done
        match last {
            // (If the table is not what we left, say someone deleted an
            // element, the whole table is written again.)
            Some(last) if last.networks == rules.networks && there && wanted => {
                firewall::update_ports(&self.table, &last.ports, &rules.ports)
                    .or_else(|_| firewall::apply(&self.table, &rules))?;
            }
            _ => firewall::apply(&self.table, &rules)?,
        }
        let json = serde_json::to_vec(&rules).map_err(|e| Error::Other(e.to_string()))?;
        replace_atomic(&applied, &json)
    }
    // ANCHOR_END: sync_firewall

    /// A /24 in 10.78.0.0 - 10.127.255.0 that no network uses yet.
    fn free_subnet(&self) -> Result<Subnet, Error> {
        let taken = self.list()?;
        (78u8..=127)
            .flat_map(|b| (0u8..=255).map(move |c| format!("10.{b}.{c}.0/24")))
            .filter_map(|s| s.parse::<Subnet>().ok())
            .find(|s| !taken.iter().any(|n| n.subnet.overlaps(s)))
            .ok_or_else(|| Error::Other("no free subnet left; give one with --subnet".into()))
    }
}

/// A host program listening on the port would never see its connections
/// again once we DNAT them: refuse, as `docker run -p` does.
fn check_port_free(rule: &PortRule) -> Result<(), Error> {
    let address = (std::net::Ipv4Addr::UNSPECIFIED, rule.host_port);
    let free = match rule.protocol {
        firewall::Protocol::Tcp => std::net::TcpListener::bind(address).map(drop),
        firewall::Protocol::Udp => std::net::UdpSocket::bind(address).map(drop),
    };
    free.map_err(|e| {
        Error::Other(format!(
            "port {}/{} is in use on the host ({e}); choose another host port",
            rule.host_port,
            rule.protocol.as_str()
        ))
    })
}

fn default_subnet() -> Result<Subnet, Error> {
    std::env::var("BERTH_DEFAULT_SUBNET")
        .unwrap_or_else(|_| DEFAULT_SUBNET.to_string())
        .parse()
}

/// Docker's rule for network names: a letter or digit, then letters,
/// digits, '_', '.' and '-' (up to 64 of them, ours: a name is also a
/// directory and goes into messages).
fn check_name(name: &str) -> Result<(), Error> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok || name == DEFAULT_NETWORK {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "{name:?} is not a valid network name: use up to 64 letters, digits, '_', '.' and \
             '-', starting with a letter or digit"
        )))
    }
}

/// The bridge of network `name`: `bth-NAME` when that fits in a device
/// name (15 bytes, so names of up to 11), else `bth-`, the name's first six
/// characters and five hex digits of a hash of the whole name. The network's
/// file keeps the bridge's name, so the hash need not be stable across Rust
/// versions.
fn bridge_for(name: &str) -> String {
    if name.len() <= 11 {
        return format!("bth-{name}");
    }
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut hasher);
    format!("bth-{}{:05x}", &name[..6], hasher.finish() & 0xf_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        for good in ["web", "a-b-1", "My_Net.2", "a-name-longer-than-eleven"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "has space",
            "-lead",
            "_lead",
            "a/b",
            "../x",
            &"x".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_name_gets_a_bridge_that_fits() {
        assert_eq!(bridge_for("web"), "bth-web");
        assert_eq!(bridge_for("eleven-char"), "bth-eleven-char");
        let long = bridge_for("a-name-longer-than-eleven");
        assert_eq!(long.len(), 15, "{long}");
        assert!(long.starts_with("bth-a-name"), "{long}");
        assert_ne!(long, bridge_for("a-name-longer-than-twelve"));
    }

    #[test]
    fn networks_are_defined_listed_and_kept_apart() {
        let root = tempfile::tempdir().unwrap();
        let networks = Networks::open(root.path()).unwrap();
        let web = networks
            .create("web", Some("10.250.1.0/24".parse().unwrap()))
            .unwrap();
        assert_eq!(web.bridge, "bth-web");
        let err = networks
            .create("db", Some("10.250.1.0/25".parse().unwrap()))
            .unwrap_err();
        assert!(err.to_string().contains("overlaps network web"), "{err}");
        assert_eq!(networks.existing("web").unwrap(), Some(web.clone()));
        assert_eq!(
            networks.existing(DEFAULT_NETWORK).unwrap(),
            None,
            "never made by asking"
        );
        let auto = networks.create("db", None).unwrap();
        assert!(!auto.subnet.overlaps(&web.subnet));
        assert!(
            networks
                .create("db", None)
                .unwrap_err()
                .to_string()
                .contains("already exists")
        );
        let default = networks.get(DEFAULT_NETWORK).unwrap();
        assert_eq!(default.subnet.to_string(), DEFAULT_SUBNET);
        // berth0 is the default root's; this root's default bridge is its own.
        assert!(default.bridge.starts_with("bth0-"), "{}", default.bridge);
        assert_eq!(default.bridge.len(), 11);
        let names: Vec<String> = networks
            .list()
            .unwrap()
            .into_iter()
            .map(|n| n.name)
            .collect();
        assert_eq!(names, ["berth", "db", "web"]);
        assert!(
            networks
                .get("nope")
                .unwrap_err()
                .to_string()
                .contains("network create nope")
        );
    }
}
