//! Names: every container gets its own `/etc/hosts`, `/etc/hostname` and
//! `/etc/resolv.conf`, bind-mounted from files berth keeps next to the
//! container's overlay directories.
//!
//! Containers find each other by name through `/etc/hosts`: each one lists
//! every container on the same network, and berth rewrites all of them
//! whenever one joins or leaves. We chose that over a DNS server on the
//! bridge: no daemon to run (berth has none), nothing to listen on, and
//! every program's resolver reads `/etc/hosts` first. The cost: a name only
//! resolves to containers on a shared network, and a program that caches
//! lookups sees a departure late.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use stage01_chroot::Error;

use crate::ipam::Lease;

/// The three files of one container, on the host.
#[derive(Debug, Clone)]
pub struct NameFiles {
    pub hosts: PathBuf,
    pub hostname: PathBuf,
    pub resolv_conf: PathBuf,
}

impl NameFiles {
    /// The files kept in a container's directory `dir`.
    pub fn in_dir(dir: &Path) -> NameFiles {
        NameFiles {
            hosts: dir.join("hosts"),
            hostname: dir.join("hostname"),
            resolv_conf: dir.join("resolv.conf"),
        }
    }

    /// Write them for a container called `hostname`, with no peers yet.
    pub fn write(&self, hostname: &str) -> Result<(), Error> {
        rewrite(&self.hosts, &render_hosts(&[], hostname, &[]))?;
        rewrite(&self.hostname, &format!("{hostname}\n"))?;
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        rewrite(&self.resolv_conf, &resolv_conf(&host_resolv))
    }

    /// What `run --add-host NAME:ADDRESS` and `--dns ADDRESS` add: lines
    /// for /etc/hosts, kept in `hosts.extra` so that every rewrite keeps
    /// them, and nameservers that replace the host's.
    pub fn add(&self, hosts: &[(String, String)], dns: &[String]) -> Result<(), Error> {
        if !hosts.is_empty() {
            let lines: String = hosts
                .iter()
                .map(|(name, address)| format!("{address}\t{name}\n"))
                .collect();
            rewrite(&self.extra_hosts(), &lines)?;
            let current = std::fs::read_to_string(&self.hosts).unwrap_or_default();
            rewrite(&self.hosts, &(current + &lines))?;
        }
        if !dns.is_empty() {
            let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            rewrite(&self.resolv_conf, &resolv_conf_with(&host_resolv, dns))?;
        }
        Ok(())
    }

    fn extra_hosts(&self) -> PathBuf {
        self.hosts.with_extension("extra")
    }

    /// `(host file, path inside)` pairs for the container's bind mounts.
    pub fn binds(&self) -> Vec<(PathBuf, PathBuf)> {
        vec![
            (self.hosts.clone(), "/etc/hosts".into()),
            (self.hostname.clone(), "/etc/hostname".into()),
            (self.resolv_conf.clone(), "/etc/resolv.conf".into()),
        ]
    }
}

// ANCHOR: render_hosts
/// `/etc/hosts` for a container with addresses `own` (none without a
/// network, one per network it is on) and hostname `hostname`, listing its
/// `peers` on its networks by name.
pub fn render_hosts(own: &[Ipv4Addr], hostname: &str, peers: &[(Ipv4Addr, Lease)]) -> String {
    let mut hosts = String::from("# Written by berth; rewritten when containers join or leave.\n");
    hosts += "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";
    for address in own {
        hosts += &format!("{address}\t{hostname}\n");
    }
    for (address, lease) in peers {
        if own.contains(address) {
            continue;
        }
        let short_id = &lease.container[..lease.container.len().min(12)];
        match &lease.name {
            Some(name) => hosts += &format!("{address}\t{name} {short_id}\n"),
            None => hosts += &format!("{address}\t{short_id}\n"),
        }
    }
    hosts
}
// ANCHOR_END: render_hosts

/// Rewrite the `/etc/hosts` of containers `ids`, whose files are in
/// `containers/<id>/`, from the live leases of every network (`networks`,
/// one list each). Each container lists its peers on every network it is
/// on; one that is on none (any more) lists only itself.
pub fn update(
    containers: &Path,
    ids: &[&str],
    networks: &[Vec<(Ipv4Addr, Lease)>],
) -> Result<(), Error> {
    for id in ids {
        let files = NameFiles::in_dir(&containers.join(id));
        if !files.hosts.exists() {
            continue; // still starting, or already gone
        }
        let mut own = Vec::new();
        let mut peers = Vec::new();
        for leases in networks {
            let mine: Vec<Ipv4Addr> = leases
                .iter()
                .filter(|(_, lease)| lease.container == *id)
                .map(|(address, _)| *address)
                .collect();
            if !mine.is_empty() {
                own.extend(mine);
                peers.extend(leases.iter().cloned());
            }
        }
        let hostname = std::fs::read_to_string(&files.hostname).unwrap_or_default();
        let extra = std::fs::read_to_string(files.extra_hosts()).unwrap_or_default();
        rewrite(
            &files.hosts,
            &(render_hosts(&own, hostname.trim(), &peers) + &extra),
        )?;
    }
    Ok(())
}

/// The host's resolver settings, minus nameservers on loopback, which would
/// mean the container's own loopback inside it.
pub fn resolv_conf(host: &str) -> String {
    let kept: Vec<&str> = host
        .lines()
        .filter(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(server)) => {
                    !(server.starts_with("127.") || server == "::1")
                }
                _ => true,
            }
        })
        .collect();
    format!(
        "# Written by berth from the host's /etc/resolv.conf.\n{}\n",
        kept.join("\n")
    )
}

/// The host's resolver settings with `servers` as the only nameservers.
fn resolv_conf_with(host: &str, servers: &[String]) -> String {
    let mut text = String::from("# Written by berth: --dns, and the host's search and options.\n");
    for line in host.lines() {
        if matches!(
            line.split_whitespace().next(),
            Some("search" | "domain" | "options")
        ) {
            text += line;
            text += "\n";
        }
    }
    for server in servers {
        text += &format!("nameserver {server}\n");
    }
    text
}

/// Replace a file's contents *in place*: it is bind-mounted into a running
/// container, and a bind mount holds on to the inode, so writing a new file
/// and renaming it over the old one would not be seen inside.
fn rewrite(path: &Path, contents: &str) -> Result<(), Error> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| Error::io("write", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(container: &str, name: Option<&str>) -> Lease {
        Lease {
            container: container.into(),
            name: name.map(String::from),
            pid: 1,
            start_time: 0,
        }
    }

    #[test]
    fn hosts_lists_self_and_peers_by_name() {
        let peers = vec![
            (
                Ipv4Addr::new(10, 77, 0, 2),
                lease("aaaaaaaaaaaaaaaa", Some("web")),
            ),
            (Ipv4Addr::new(10, 77, 0, 3), lease("bbbbbbbbbbbbbbbb", None)),
        ];
        let hosts = render_hosts(&[Ipv4Addr::new(10, 77, 0, 3)], "bbbbbbbbbbbb", &peers);
        assert!(hosts.contains("10.77.0.3\tbbbbbbbbbbbb\n"));
        assert!(hosts.contains("10.77.0.2\tweb aaaaaaaaaaaa\n"));
        assert_eq!(
            hosts.matches("10.77.0.3").count(),
            1,
            "listed twice:\n{hosts}"
        );
        assert!(hosts.contains("127.0.0.1\tlocalhost"));
    }

    #[test]
    fn a_container_on_two_networks_lists_the_peers_of_both() {
        let dir = tempfile::tempdir().unwrap();
        for id in ["both", "front", "back", "alone"] {
            std::fs::create_dir(dir.path().join(id)).unwrap();
            NameFiles::in_dir(&dir.path().join(id)).write(id).unwrap();
        }
        let at = |c: u8, d: u8| Ipv4Addr::new(10, c, 0, d);
        let front = vec![
            (at(1, 2), lease("both", Some("both"))),
            (at(1, 3), lease("front", Some("front"))),
        ];
        let back = vec![
            (at(2, 2), lease("both", Some("both"))),
            (at(2, 3), lease("back", Some("back"))),
        ];
        let ids = ["both", "front", "back", "alone"];
        update(dir.path(), &ids, &[front, back]).unwrap();
        let hosts = |id: &str| std::fs::read_to_string(dir.path().join(id).join("hosts")).unwrap();
        let both = hosts("both");
        for line in [
            "10.1.0.2\tboth\n",
            "10.2.0.2\tboth\n",
            "10.1.0.3\tfront",
            "10.2.0.3\tback",
        ] {
            assert!(both.contains(line), "{line:?} missing:\n{both}");
        }
        assert!(hosts("front").contains("10.1.0.2\tboth"));
        assert!(
            !hosts("front").contains("\tback"),
            "networks apart:\n{}",
            hosts("front")
        );
        assert!(!hosts("back").contains("\tfront"));
        assert!(
            !hosts("alone").contains("10."),
            "on no network:\n{}",
            hosts("alone")
        );
    }

    #[test]
    fn loopback_nameservers_are_dropped() {
        let host =
            "nameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch example.org\noptions edns0\n";
        let resolv = resolv_conf(host);
        assert!(!resolv.contains("127.0.0.53"));
        assert!(resolv.contains("nameserver 192.0.2.53\nsearch example.org"));
    }

    #[test]
    fn rewrites_keep_the_inode() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let files = NameFiles::in_dir(dir.path());
        files.write("box").unwrap();
        let inode = std::fs::metadata(&files.hosts).unwrap().ino();
        update(dir.path().parent().unwrap(), &[], &[]).unwrap();
        rewrite(&files.hosts, "new\n").unwrap();
        assert_eq!(std::fs::metadata(&files.hosts).unwrap().ino(), inode);
        assert_eq!(std::fs::read_to_string(&files.hostname).unwrap(), "box\n");
    }
}
