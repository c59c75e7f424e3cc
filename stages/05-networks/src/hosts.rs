//! Names: every container gets `/etc/hosts`, `/etc/hostname` and
//! `/etc/resolv.conf`, bind-mounted from files berth keeps next to the
//! container's overlay directories.
//!
//! Containers find each other by name through `/etc/hosts`. Each network
//! keeps one hosts file, `<networks>/<name>/hosts`, with a line for every
//! container on it. A container on one network gets *that file* as its
//! `/etc/hosts`: its own `hosts` is a hard link to it, bound read-only (a
//! container must not write its neighbours' names). So a join or a leave
//! changes one line of one file, however many containers the network holds.
//!
//! A container on several networks, or with `--add-host` lines of its own,
//! has a file of its own instead: the lines of all its networks, rewritten
//! when any of them changes. Each network lists those containers in
//! `<networks>/<name>/private`.
//!
//! We chose files over a DNS server on the bridge: no daemon to run (berth
//! has none), nothing to listen on, and every program's resolver reads
//! `/etc/hosts` first. The cost: a name only resolves to containers on a
//! shared network, and a program that caches lookups sees a departure late.

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use stage01_chroot::Error;
use stage04_images::store::remove_file_if_present;

/// The three files of one container, on the host.
#[derive(Debug, Clone)]
pub struct NameFiles {
    pub hosts: PathBuf,
    pub hostname: PathBuf,
    pub resolv_conf: PathBuf,
}

/// A file bound over one of the image's: `source` on the host, `target`
/// inside, read-only or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
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

    /// Write them for a container called `hostname`, on no network yet:
    /// its `/etc/hosts` is its own, and lists only `localhost`.
    pub fn write(&self, hostname: &str) -> Result<(), Error> {
        // A new file, never one written through: from an earlier start,
        // `hosts` may be a link to a network's file.
        remove_file_if_present(&self.hosts)?;
        remove_file_if_present(&self.hosts.with_extension("shared"))?;
        rewrite(&self.hosts, &render_private(&[], ""))?;
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

    /// Make the container's `/etc/hosts` its network's file (see
    /// [`NetworkHosts::file`]): for a container on that one network, with
    /// no lines of its own. Call it after [`NameFiles::write`], before the
    /// container starts.
    pub fn share(&self, network_file: &Path) -> Result<(), Error> {
        remove_file_if_present(&self.hosts)?;
        std::fs::hard_link(network_file, &self.hosts).map_err(|e| Error::io("link", &self.hosts, e))
    }

    /// Give it a file of its own again, listing only `localhost` until it
    /// is rewritten (a running container joining a second network).
    /// `show` puts the new file in front of the container: a bind mount
    /// over its /etc/hosts, on top of the one it has.
    pub fn unshare(&self, show: impl FnOnce(&Path) -> Result<(), Error>) -> Result<(), Error> {
        // The link to the network's file is moved aside, not removed: the
        // new mount will stand on it, and the kernel takes away mounts that
        // stand on a file whose name is removed. (`write` removes it at the
        // next start.)
        let aside = self.hosts.with_extension("shared");
        std::fs::rename(&self.hosts, &aside).map_err(|e| Error::io("rename", &self.hosts, e))?;
        rewrite(&self.hosts, &render_private(&[], ""))?;
        show(&self.hosts).inspect_err(|_| {
            let _ = std::fs::rename(&aside, &self.hosts); // as it was
        })
    }

    /// Whether its `/etc/hosts` is a network's file rather than its own.
    pub fn is_shared(&self) -> bool {
        std::fs::metadata(&self.hosts).is_ok_and(|m| m.nlink() > 1)
    }

    /// The container's bind mounts. A network's shared file is read-only.
    pub fn binds(&self) -> Vec<Bind> {
        let bind = |source: &Path, target: &str, read_only| Bind {
            source: source.to_path_buf(),
            target: target.into(),
            read_only,
        };
        vec![
            bind(&self.hosts, TARGETS[0], self.is_shared()),
            bind(&self.hostname, TARGETS[1], false),
            bind(&self.resolv_conf, TARGETS[2], false),
        ]
    }
}

/// Where the three files go inside, in the order [`NameFiles::binds`] lists them.
pub const TARGETS: [&str; 3] = ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"];

const LOCALHOST: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

// ANCHOR: member_line
/// A container's line in its network's hosts file: its address, then the
/// names it answers to: its name, its hostname if another, and its short
/// ID, always last (berth finds a container's lines by it).
pub fn member_line(address: Ipv4Addr, name: Option<&str>, hostname: &str, id: &str) -> String {
    let short_id = &id[..id.len().min(12)];
    let mut names: Vec<&str> = Vec::new();
    for candidate in [name.unwrap_or(""), hostname] {
        if !candidate.is_empty() && candidate != short_id && !names.contains(&candidate) {
            names.push(candidate);
        }
    }
    names.push(short_id);
    format!("{address}\t{}\n", names.join(" "))
}
// ANCHOR_END: member_line

/// The short ID a member line ends with.
fn short_id_of(line: &str) -> Option<&str> {
    line.split_whitespace().last()
}

/// One network's names: its hosts file, and which of its containers have
/// a file of their own.
pub struct NetworkHosts {
    dir: PathBuf,
    network: String,
}

impl NetworkHosts {
    /// The names of network `network`, kept in `dir`
    /// (`<networks>/<network>`).
    pub fn new(dir: &Path, network: &str) -> NetworkHosts {
        NetworkHosts {
            dir: dir.to_path_buf(),
            network: network.to_string(),
        }
    }

    /// The network's hosts file, made (with no container) if missing.
    pub fn file(&self) -> Result<PathBuf, Error> {
        let path = self.dir.join("hosts");
        if !path.exists() {
            self.make_dir()?;
            rewrite(&path, &self.render(&self.members()?))?;
        }
        Ok(path)
    }

    fn make_dir(&self) -> Result<(), Error> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io("create", &self.dir, e))
    }

    fn render(&self, members: &[(Ipv4Addr, String)]) -> String {
        let mut text = format!(
            "# Written by berth: the containers on network {}.\n{LOCALHOST}",
            self.network
        );
        members.iter().for_each(|(_, line)| text += line);
        text
    }

    /// Its members' lines, by address: from `hosts.lines`, which is
    /// replaced whole at each change. The hosts file itself is rewritten in
    /// place (containers hold its inode), so a process killed while it
    /// writes leaves it cut short; the next change writes it whole again.
    pub fn members(&self) -> Result<Vec<(Ipv4Addr, String)>, Error> {
        let path = self.dir.join("hosts.lines");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        Ok(text
            .lines()
            .filter_map(|line| {
                let address = line.split('\t').next()?.parse::<Ipv4Addr>().ok()?;
                (!address.is_loopback()).then(|| (address, format!("{line}\n")))
            })
            .collect())
    }

    /// Who has the name `name` here: the address and short ID of each
    /// line that lists it.
    pub fn holders(&self, name: &str) -> Result<Vec<(Ipv4Addr, String)>, Error> {
        let members = self.members()?.into_iter();
        Ok(members
            .filter(|(_, line)| line.split_whitespace().skip(1).any(|n| n == name))
            .filter_map(|(address, line)| Some((address, short_id_of(&line)?.to_string())))
            .collect())
    }

    // ANCHOR: set_line
    /// Give `address` the line `line`, in place of whatever it had: a
    /// container joined (or was renamed). One list of lines changes.
    pub fn set(&self, address: Ipv4Addr, line: String) -> Result<(), Error> {
        let mut members = self.members()?;
        members.retain(|(a, _)| *a != address);
        members.push((address, line));
        members.sort_by_key(|(a, _)| *a);
        self.write(&members)
    }
    // ANCHOR_END: set_line

    /// Keep `members` (whole, or not at all), then show them.
    fn write(&self, members: &[(Ipv4Addr, String)]) -> Result<(), Error> {
        let lines: String = members.iter().map(|(_, line)| line.as_str()).collect();
        self.make_dir()?;
        stage04_images::store::replace_atomic(&self.dir.join("hosts.lines"), lines.as_bytes())?;
        rewrite(&self.dir.join("hosts"), &self.render(members))
    }

    /// Drop the lines of container `id`: it left.
    pub fn remove(&self, id: &str) -> Result<(), Error> {
        let short_id = &id[..id.len().min(12)];
        let mut members = self.members()?;
        let before = members.len();
        members.retain(|(_, line)| short_id_of(line) != Some(short_id));
        if members.len() != before {
            self.write(&members)?;
        }
        Ok(())
    }

    /// The containers on it whose `/etc/hosts` is their own (full IDs).
    pub fn private(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir.join("private")).unwrap_or_default();
        text.lines().map(str::to_string).collect()
    }

    /// List container `id` among those, or take it off (`listed` false).
    pub fn set_private(&self, id: &str, listed: bool) -> Result<(), Error> {
        let mut ids = self.private();
        let present = ids.iter().any(|i| i == id);
        match (listed, present) {
            (true, false) => ids.push(id.to_string()),
            (false, true) => ids.retain(|i| i != id),
            _ => return Ok(()),
        }
        let text: String = ids.iter().map(|i| format!("{i}\n")).collect();
        self.make_dir()?;
        stage04_images::store::replace_atomic(&self.dir.join("private"), text.as_bytes())
    }
}

/// `/etc/hosts` of its own for a container: the lines of all its networks
/// (its own among them), then its `--add-host` lines.
pub fn render_private(networks: &[Vec<(Ipv4Addr, String)>], extra: &str) -> String {
    let mut text =
        format!("# Written by berth; rewritten when containers join or leave.\n{LOCALHOST}");
    for (_, line) in networks.iter().flatten() {
        text += line;
    }
    text + extra
}

/// Rewrite the own `/etc/hosts` of container `id` (files in
/// `containers/<id>/`) from `networks`, the lines of each network it is on
/// (asked for only when there is a file to write). A container whose file
/// is a network's, or gone, is left alone.
pub fn rewrite_private(
    containers: &Path,
    id: &str,
    networks: impl FnOnce() -> Result<Vec<Vec<(Ipv4Addr, String)>>, Error>,
) -> Result<(), Error> {
    let files = NameFiles::in_dir(&containers.join(id));
    if !files.hosts.exists() || files.is_shared() {
        return Ok(()); // still starting, already gone, or not its own
    }
    let extra = std::fs::read_to_string(files.extra_hosts()).unwrap_or_default();
    rewrite(&files.hosts, &render_private(&networks()?, &extra))
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

/// Replace a file's contents *in place*: it is bind-mounted into running
/// containers, and a bind mount holds on to the inode, so writing a new file
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

    fn at(c: u8, d: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, c, 0, d)
    }

    #[test]
    fn a_line_names_name_hostname_and_short_id_once_each() {
        let id = "bbbbbbbbbbbbbbbbbbbb";
        assert_eq!(
            member_line(at(1, 3), Some("web"), "web", id),
            "10.1.0.3\tweb bbbbbbbbbbbb\n"
        );
        assert_eq!(
            member_line(at(1, 3), Some("web"), "box", id),
            "10.1.0.3\tweb box bbbbbbbbbbbb\n"
        );
        assert_eq!(
            member_line(at(1, 3), None, "bbbbbbbbbbbb", id),
            "10.1.0.3\tbbbbbbbbbbbb\n"
        );
    }

    #[test]
    fn a_network_file_changes_one_line_per_join_and_leave() {
        let dir = tempfile::tempdir().unwrap();
        let net = NetworkHosts::new(&dir.path().join("front"), "front");
        let file = net.file().unwrap();
        let inode = std::fs::metadata(&file).unwrap().ino();
        net.set(
            at(1, 3),
            member_line(at(1, 3), Some("b"), "b", "bbbbbbbbbbbbbb"),
        )
        .unwrap();
        net.set(
            at(1, 2),
            member_line(at(1, 2), Some("a"), "a", "aaaaaaaaaaaaaa"),
        )
        .unwrap();
        // Renamed: its line is replaced, not added.
        net.set(
            at(1, 3),
            member_line(at(1, 3), Some("c"), "b", "bbbbbbbbbbbbbb"),
        )
        .unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains("127.0.0.1\tlocalhost\n"), "{text}");
        assert!(
            text.ends_with("10.1.0.2\ta aaaaaaaaaaaa\n10.1.0.3\tc b bbbbbbbbbbbb\n"),
            "{text}"
        );
        net.remove("bbbbbbbbbbbbbb").unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains("bbbbbbbbbbbb"), "{text}");
        assert_eq!(net.members().unwrap().len(), 1);
        // In place: containers hold the inode in a bind mount.
        assert_eq!(std::fs::metadata(&file).unwrap().ino(), inode);
    }

    #[test]
    fn a_file_cut_short_by_a_kill_is_whole_again_at_the_next_change() {
        let dir = tempfile::tempdir().unwrap();
        let net = NetworkHosts::new(dir.path(), "n");
        net.set(
            at(1, 2),
            member_line(at(1, 2), Some("a"), "a", "aaaaaaaaaaaaaa"),
        )
        .unwrap();
        // A process killed between truncate and write (see `rewrite`).
        std::fs::write(net.file().unwrap(), "").unwrap();
        net.set(
            at(1, 3),
            member_line(at(1, 3), Some("b"), "b", "bbbbbbbbbbbbbb"),
        )
        .unwrap();
        let text = std::fs::read_to_string(net.file().unwrap()).unwrap();
        assert!(
            text.contains("\ta aaaaaaaaaaaa\n") && text.contains("\tb bbbbbbbbbbbb\n"),
            "{text}"
        );
    }

    #[test]
    fn a_shared_file_is_bound_read_only_and_a_new_start_gets_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let net = NetworkHosts::new(&dir.path().join("front"), "front");
        let files = NameFiles::in_dir(dir.path());
        files.write("box").unwrap();
        assert!(!files.is_shared());
        assert!(files.binds().iter().all(|b| !b.read_only));
        files.share(&net.file().unwrap()).unwrap();
        assert!(files.is_shared());
        assert!(files.binds()[0].read_only);
        net.set(
            at(1, 2),
            member_line(at(1, 2), None, "box", "cccccccccccccc"),
        )
        .unwrap();
        assert!(
            std::fs::read_to_string(&files.hosts)
                .unwrap()
                .contains("10.1.0.2\tbox")
        );
        // Written again (a restart on two networks): a file of its own,
        // and the network's is untouched.
        files.write("box").unwrap();
        assert!(!files.is_shared());
        assert!(
            std::fs::read_to_string(net.file().unwrap())
                .unwrap()
                .contains("10.1.0.2")
        );
    }

    #[test]
    fn a_container_on_two_networks_lists_the_peers_of_both() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("both")).unwrap();
        let files = NameFiles::in_dir(&dir.path().join("both"));
        files.write("both").unwrap();
        files
            .add(&[("db".into(), "192.0.2.9".into())], &[])
            .unwrap();
        let front = vec![
            (
                at(1, 2),
                member_line(at(1, 2), Some("both"), "both", "both"),
            ),
            (
                at(1, 3),
                member_line(at(1, 3), Some("front"), "front", "front"),
            ),
        ];
        let back = vec![(
            at(2, 3),
            member_line(at(2, 3), Some("back"), "back", "back"),
        )];
        rewrite_private(dir.path(), "both", || Ok(vec![front, back])).unwrap();
        let hosts = std::fs::read_to_string(&files.hosts).unwrap();
        for line in [
            "10.1.0.2\tboth\n",
            "10.1.0.3\tfront",
            "10.2.0.3\tback",
            "192.0.2.9\tdb\n",
        ] {
            assert!(hosts.contains(line), "{line:?} missing:\n{hosts}");
        }
        // One whose file is gone (it was removed meanwhile) is left alone.
        rewrite_private(dir.path(), "gone", || Ok(Vec::new())).unwrap();
        assert!(!dir.path().join("gone").exists());
    }

    #[test]
    fn containers_on_a_network_are_listed_private_once() {
        let dir = tempfile::tempdir().unwrap();
        let net = NetworkHosts::new(dir.path(), "n");
        net.set_private("a", true).unwrap();
        net.set_private("a", true).unwrap();
        net.set_private("b", true).unwrap();
        assert_eq!(net.private(), ["a", "b"]);
        net.set_private("a", false).unwrap();
        assert_eq!(net.private(), ["b"]);
    }

    #[test]
    fn loopback_nameservers_are_dropped() {
        let host =
            "nameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch example.org\noptions edns0\n";
        let resolv = resolv_conf(host);
        assert!(!resolv.contains("127.0.0.53"));
        assert!(resolv.contains("nameserver 192.0.2.53\nsearch example.org"));
    }
}
