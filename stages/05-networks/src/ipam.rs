//! IP address management: which container holds which address of a network.
//!
//! Each lease is a small JSON file named after its address, `<dir>/10.77.0.2`,
//! so the file system does the bookkeeping: taking an address is creating
//! its file, releasing it is removing the file. Two rules keep it sound:
//!
//! - Every change happens under an exclusive `flock` on `<dir>/.lock`, so two
//!   `berth run` processes can't pick the same free address at once.
//! - A lease names its owner process by PID *and* start time. When a process
//!   dies without releasing (crash, `kill -9`), its address is reclaimed
//!   once the network has no other free one, or when the leases are next
//!   read. The start time matters because PIDs are reused: a new process
//!   with the old PID started later.
//!
//! Leases are written atomically (a temp file renamed into place) but not
//! synced to disk: a lease only matters while its owner lives, and no owner
//! survives a reboot, so a power loss can lose nothing that still counts.

use std::collections::HashSet;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use stage01_chroot::Error;

use stage04_images::store::replace_atomic;

use crate::subnet::Subnet;

type Result<T> = std::result::Result<T, Error>;

const LOCK_FILE: &str = ".lock";
/// Lease files are written here first, then renamed into place. A leftover
/// one is from a writer that crashed: the lock holder may delete it.
const TEMP_PREFIX: &str = ".tmp-";

/// Who holds an address: the container, its name (for `/etc/hosts`), and the
/// process whose life the lease follows.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub container: String,
    pub name: Option<String>,
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat`: clock ticks after boot at which the
    /// process started. PID plus start time names one process for good.
    pub start_time: u64,
}

/// A lease owned by the calling process: it lasts while this process lives.
pub fn owner_self(container: &str, name: Option<&str>) -> Result<Lease> {
    owner(std::process::id() as i32, container, name)
}

/// A lease owned by process `pid` (say, a container's monitor process).
pub fn owner(pid: i32, container: &str, name: Option<&str>) -> Result<Lease> {
    let start_time = process_start_time(pid).ok_or_else(|| {
        Error::Other(format!(
            "cannot read the start time of process {pid} from /proc/{pid}/stat; \
             is /proc mounted and is the process alive?"
        ))
    })?;
    Ok(Lease {
        container: container.to_string(),
        name: name.map(str::to_string),
        pid,
        start_time,
    })
}

/// The start time of process `pid` (field 22 of `/proc/<pid>/stat`), or
/// `None` if there is no such process.
pub fn process_start_time(pid: i32) -> Option<u64> {
    proc_stat(pid).map(|(_, start_time)| start_time)
}

/// The state letter and start time of `pid`, from `/proc/<pid>/stat`.
fn proc_stat(pid: i32) -> Option<(char, u64)> {
    if pid <= 0 {
        return None;
    }
    // One read into a buffer on the stack: the line is a few hundred bytes
    // (a program's name is at most 15), and `ps` asks this of every
    // container, where reading to the end costs several calls more.
    let mut line = [0u8; 1024];
    let read = File::open(format!("/proc/{pid}/stat"))
        .and_then(|mut file| io::Read::read(&mut file, &mut line))
        .ok()?;
    // A name need not be UTF-8; the fields we read after it are.
    parse_stat(&String::from_utf8_lossy(&line[..read]))
}

fn parse_stat(stat: &str) -> Option<(char, u64)> {
    // "1234 (comm) S 1 ...": comm is the program name, and it may hold
    // spaces and ')' itself, e.g. "(a) b)". Only the LAST ')' ends it.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    // After comm come field 3 (state) ... field 22 (starttime).
    let state = fields.next()?.chars().next()?;
    let start_time = fields.nth(22 - 4)?.parse().ok()?;
    Some((state, start_time))
}

/// Whether the process that took `lease` is still running.
fn owner_alive(lease: &Lease) -> bool {
    process_alive(lease.pid, lease.start_time)
}

/// Whether process `pid`, started at `start_time`, still runs. A zombie has
/// exited and only waits for its parent to read its status: it will never
/// release anything, so it counts as gone.
pub fn process_alive(pid: i32, start_time: u64) -> bool {
    match proc_stat(pid) {
        Some((state, started)) => started == start_time && !matches!(state, 'Z' | 'X'),
        None => false,
    }
}

/// The leases of one network, kept in one directory.
#[derive(Debug, Clone)]
pub struct Ipam {
    dir: PathBuf,
    subnet: Subnet,
}

impl Ipam {
    /// The leases of `subnet` in `dir` (e.g. `<root>/networks/<name>/leases`).
    /// Nothing is touched until the first allocation creates the directory.
    pub fn new(dir: &Path, subnet: Subnet) -> Ipam {
        Ipam {
            dir: dir.to_path_buf(),
            subnet,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn subnet(&self) -> Subnet {
        self.subnet
    }

    // ANCHOR: allocate
    /// Take the lowest free address of the subnet for `lease`.
    pub fn allocate(&self, lease: &Lease) -> Result<Ipv4Addr> {
        // Hold the lock from looking until the lease file exists: otherwise
        // two processes could both see .2 free and both take it.
        let _lock = self.lock(true)?.ok_or_else(|| self.vanished())?;
        // Taken addresses from the file names alone: reading every lease,
        // and asking /proc about its owner, would make each start slower
        // as the network fills. Only when none is free are the leases of
        // dead owners looked for and reclaimed.
        let address = match self.lowest_free(&self.taken()?) {
            Some(address) => address,
            None => {
                let live = self.reclaim_stale()?;
                let taken = live.into_iter().map(|(address, _)| address).collect();
                self.lowest_free(&taken).ok_or_else(|| {
                    Error::Other(format!(
                        "network {} is full: all {} container addresses are leased; \
                         remove containers you no longer need, or create a network \
                         with a larger subnet",
                        self.subnet,
                        self.subnet.hosts().count()
                    ))
                })?
            }
        };
        let json = serde_json::to_vec_pretty(lease)
            .map_err(|e| Error::Other(format!("cannot encode the lease of {address}: {e}")))?;
        // Write + rename: a crash leaves either no lease or a whole one.
        replace_atomic(&self.dir.join(address.to_string()), &json)?;
        Ok(address)
    }

    fn lowest_free(&self, taken: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        self.subnet.hosts().find(|address| !taken.contains(address))
    }

    /// The addresses that have a lease file, live or not.
    fn taken(&self) -> Result<HashSet<Ipv4Addr>> {
        Ok(self.lease_files()?.into_iter().map(|(a, _)| a).collect())
    }

    /// The lease files, by address. The caller holds the lock, so a temp
    /// file left here is from a writer that died: it goes.
    fn lease_files(&self) -> Result<Vec<(Ipv4Addr, PathBuf)>> {
        let mut files = Vec::new();
        let entries =
            fs::read_dir(&self.dir).map_err(|e| Error::io("list leases", &self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list leases", &self.dir, e))?;
            let file_name = entry.file_name();
            let file_name = file_name.to_string_lossy();
            if file_name.starts_with(TEMP_PREFIX) {
                remove_if_present(&entry.path())?;
            } else if let Ok(address) = file_name.parse::<Ipv4Addr>() {
                files.push((address, entry.path()));
            } // else .lock, or something that is not ours
        }
        Ok(files)
    }
    // ANCHOR_END: allocate

    /// Give `address` back. Releasing an address that has no lease is fine:
    /// cleanup may run twice, or after the owner was reclaimed.
    pub fn release(&self, address: Ipv4Addr) -> Result<()> {
        let Some(_lock) = self.lock(false)? else {
            return Ok(()); // no lease directory: nothing was ever leased.
        };
        let path = self.dir.join(address.to_string());
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove lease file", &path, e)),
        }
    }

    /// Give `address` back if container `id` holds it: its own cleanup,
    /// which knows where it was. (The address may be someone else's by now.)
    pub fn release_owned(&self, address: Ipv4Addr, id: &str) -> Result<()> {
        let Some(_lock) = self.lock(false)? else {
            return Ok(());
        };
        let path = self.dir.join(address.to_string());
        match read_lease(&path) {
            Ok(lease) if lease.container == id => remove_if_present(&path),
            Ok(_) => Ok(()),
            Err(_) if !path.exists() => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Who holds `address`, if its holder is alive.
    pub fn holder(&self, address: Ipv4Addr) -> Result<Option<Lease>> {
        let path = self.dir.join(address.to_string());
        match read_lease(&path) {
            Ok(lease) => Ok(owner_alive(&lease).then_some(lease)),
            Err(_) if !path.exists() => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Give back every address leased to container `id`, whoever took it:
    /// the cleanup after a process that died before it could release.
    pub fn release_container(&self, id: &str) -> Result<()> {
        let Some(_lock) = self.lock(false)? else {
            return Ok(()); // no lease directory: nothing was ever leased.
        };
        // Listing the leases also removes a temp file a writer that died left
        // (maybe the very process we clean up after).
        for (_, path) in self.lease_files()? {
            // A broken lease is someone else's problem here (allocate
            // reports it): it can't be told to be ours.
            if read_lease(&path).is_ok_and(|lease| lease.container == id) {
                remove_if_present(&path)?;
            }
        }
        Ok(())
    }

    /// Give container `id`'s leases a new `name` (`berth rename`); the live
    /// leases after it, for rewriting the network's /etc/hosts files.
    pub fn rename_container(&self, id: &str, name: &str) -> Result<Vec<(Ipv4Addr, Lease)>> {
        let Some(_lock) = self.lock(false)? else {
            return Ok(Vec::new());
        };
        let leases = self.reclaim_stale()?;
        for (address, lease) in &leases {
            if lease.container == id {
                let renamed = Lease {
                    name: Some(name.to_string()),
                    ..lease.clone()
                };
                let json = serde_json::to_vec_pretty(&renamed).map_err(|e| {
                    Error::Other(format!("cannot encode the lease of {address}: {e}"))
                })?;
                replace_atomic(&self.dir.join(address.to_string()), &json)?;
            }
        }
        self.reclaim_stale()
    }

    /// The live leases, lowest address first. Stale ones are reclaimed first,
    /// so what this returns is what is really in use.
    pub fn leases(&self) -> Result<Vec<(Ipv4Addr, Lease)>> {
        match self.lock(false)? {
            Some(_lock) => self.reclaim_stale(),
            None => Ok(Vec::new()),
        }
    }

    /// Whether no live lease is left (so the network may be removed).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.leases()?.is_empty())
    }

    /// Take the exclusive lock. With `create` false and no lease directory,
    /// returns `None` instead of creating it: reading must not leave
    /// directories behind for a network that was removed.
    fn lock(&self, create: bool) -> Result<Option<Flock<File>>> {
        if create {
            // 0700: leases name containers and processes; they are root's business.
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)
                .map_err(|e| Error::io("create lease directory", &self.dir, e))?;
        }
        let path = self.dir.join(LOCK_FILE);
        let mut file = match OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        {
            Ok(file) => file,
            Err(e) if !create && e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open lease lock file", &path, e)),
        };
        // flock locks the open file description, so separate opens exclude
        // each other even between threads of one process.
        loop {
            match Flock::lock(file, FlockArg::LockExclusive) {
                Ok(locked) => return Ok(Some(locked)),
                Err((unlocked, Errno::EINTR)) => file = unlocked,
                Err((_, errno)) => {
                    return Err(Error::io("flock", &path, io::Error::from(errno)));
                }
            }
        }
    }

    fn vanished(&self) -> Error {
        Error::Other(format!(
            "lease directory {} disappeared while allocating; was the network removed?",
            self.dir.display()
        ))
    }

    /// Read every lease, delete those whose owner is gone, return the rest
    /// sorted by address. The caller must hold the lock.
    fn reclaim_stale(&self) -> Result<Vec<(Ipv4Addr, Lease)>> {
        let mut live = Vec::new();
        for (address, path) in self.lease_files()? {
            let lease = read_lease(&path)?;
            if owner_alive(&lease) {
                live.push((address, lease));
            } else {
                remove_if_present(&path)?;
            }
        }
        live.sort_by_key(|(address, _)| *address);
        Ok(live)
    }
}

fn read_lease(path: &Path) -> Result<Lease> {
    let bytes = fs::read(path).map_err(|e| Error::io("read lease file", path, e))?;
    // Leases are written atomically, so a bad one was edited by hand or hit
    // by a disk error. Guessing could hand its address out twice: stop.
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::Other(format!(
            "lease file {} is not a valid lease ({e}); if no container uses that \
             address any more, delete the file",
            path.display()
        ))
    })
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove stale lease file", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    fn subnet(text: &str) -> Subnet {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    fn me(container: &str) -> Lease {
        owner_self(container, Some(container)).unwrap()
    }

    /// A lease whose owner has exited and been reaped.
    fn dead_lease(container: &str) -> Lease {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Until we wait, the child is alive or a zombie: /proc still has it.
        let start_time = process_start_time(pid).unwrap();
        child.wait().unwrap();
        Lease {
            container: container.to_string(),
            name: None,
            pid,
            start_time,
        }
    }

    #[test]
    fn start_time_of_self_and_of_nobody() {
        let mine = process_start_time(std::process::id() as i32).unwrap();
        assert!(mine > 0);
        assert_eq!(process_start_time(1 << 30), None);
        assert_eq!(process_start_time(0), None);
        assert_eq!(process_start_time(-5), None);
    }

    #[test]
    fn stat_parsing_survives_odd_program_names() {
        // A program may name itself "a) b (c" (prctl PR_SET_NAME).
        let line = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1 2\n";
        assert_eq!(parse_stat(line), Some(('S', 987654)));
        assert_eq!(parse_stat("42 (x) Z 1 2 3"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn allocates_distinct_addresses_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("networks/n/leases");
        let ipam = Ipam::new(&dir, subnet("10.77.0.0/24"));
        assert!(ipam.is_empty().unwrap());
        assert!(!dir.exists(), "reading must not create the directory");

        assert_eq!(ipam.allocate(&me("a")).unwrap(), ip("10.77.0.2"));
        assert_eq!(ipam.allocate(&me("b")).unwrap(), ip("10.77.0.3"));
        assert_eq!(ipam.allocate(&me("c")).unwrap(), ip("10.77.0.4"));
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);

        let leases = ipam.leases().unwrap();
        let names: Vec<_> = leases
            .iter()
            .map(|(a, l)| (a.to_string(), l.container.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("10.77.0.2".to_string(), "a"),
                ("10.77.0.3".to_string(), "b"),
                ("10.77.0.4".to_string(), "c")
            ]
        );
        assert_eq!(leases[0].1, me("a"));
        assert!(!ipam.is_empty().unwrap());
    }

    #[test]
    fn release_then_reuse_lowest() {
        let tmp = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(tmp.path(), subnet("10.77.0.0/24"));
        let a = ipam.allocate(&me("a")).unwrap();
        let b = ipam.allocate(&me("b")).unwrap();
        ipam.release(a).unwrap();
        ipam.release(a).unwrap(); // twice is fine
        assert_eq!(ipam.leases().unwrap().len(), 1);
        assert_eq!(ipam.allocate(&me("c")).unwrap(), a);
        ipam.release(a).unwrap();
        ipam.release(b).unwrap();
        assert!(ipam.is_empty().unwrap());
        // Releasing in a network that never leased anything is fine too.
        let never = Ipam::new(&tmp.path().join("nothing"), subnet("10.78.0.0/24"));
        never.release(ip("10.78.0.2")).unwrap();
        assert!(!tmp.path().join("nothing").exists());
    }

    #[test]
    fn a_containers_leases_are_released_by_its_id() {
        let tmp = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(tmp.path(), subnet("10.77.0.0/24"));
        ipam.release_container("a").unwrap(); // nothing leased yet: fine
        ipam.allocate(&me("a")).unwrap();
        ipam.allocate(&dead_lease("a")).unwrap();
        let b = ipam.allocate(&me("b")).unwrap();
        ipam.release_container("a").unwrap();
        let left: Vec<Ipv4Addr> = ipam.leases().unwrap().into_iter().map(|(a, _)| a).collect();
        assert_eq!(left, [b]);
    }

    #[test]
    fn lease_of_dead_process_is_reclaimed() {
        let tmp = tempfile::tempdir().unwrap();
        // One address in a /30: the second allocation must reclaim it.
        let ipam = Ipam::new(tmp.path(), subnet("10.77.0.4/30"));
        let dead = dead_lease("ghost");
        assert_eq!(ipam.allocate(&dead).unwrap(), ip("10.77.0.6"));
        assert!(tmp.path().join("10.77.0.6").exists());
        assert_eq!(ipam.holder(ip("10.77.0.6")).unwrap(), None);
        assert_eq!(ipam.allocate(&me("live")).unwrap(), ip("10.77.0.6"));
        assert_eq!(ipam.holder(ip("10.77.0.6")).unwrap(), Some(me("live")));
        // Reading the leases reclaims dead ones too.
        ipam.release(ip("10.77.0.6")).unwrap();
        ipam.allocate(&dead).unwrap();
        assert!(ipam.is_empty().unwrap());
        assert!(!tmp.path().join("10.77.0.6").exists());
    }

    #[test]
    fn a_lease_is_released_only_by_its_container() {
        let tmp = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(tmp.path(), subnet("10.77.0.0/24"));
        let a = ipam.allocate(&me("a")).unwrap();
        ipam.release_owned(a, "b").unwrap();
        assert_eq!(ipam.holder(a).unwrap(), Some(me("a")));
        ipam.release_owned(a, "a").unwrap();
        ipam.release_owned(a, "a").unwrap(); // twice: fine
        assert_eq!(ipam.holder(a).unwrap(), None);
    }

    #[test]
    fn reused_pid_with_other_start_time_is_stale() {
        let tmp = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(tmp.path(), subnet("10.77.0.0/24"));
        let mut impostor = me("old");
        impostor.start_time += 1; // our PID, but "another" process
        ipam.allocate(&impostor).unwrap();
        assert!(ipam.is_empty().unwrap());
    }

    #[test]
    fn leftover_temp_file_is_cleaned() {
        let tmp = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(tmp.path(), subnet("10.77.0.0/24"));
        fs::write(tmp.path().join(".tmp-99999-0"), b"{half").unwrap();
        assert_eq!(ipam.allocate(&me("a")).unwrap(), ip("10.77.0.2"));
        assert!(!tmp.path().join(".tmp-99999-0").exists());
    }

    #[test]
    fn corrupt_lease_is_an_error_not_a_free_address() {
        let tmp = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(tmp.path(), subnet("10.77.0.4/30"));
        fs::write(tmp.path().join("10.77.0.6"), b"garbage").unwrap();
        let err = ipam.allocate(&me("a")).unwrap_err().to_string();
        assert!(
            err.contains("10.77.0.6") && err.contains("delete the file"),
            "{err}"
        );
    }

    #[test]
    fn concurrent_allocations_get_distinct_addresses() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("leases");
        let threads: Vec<_> = (0..20)
            .map(|i| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    // Each thread its own Ipam and its own open of the lock,
                    // as separate processes would have.
                    let ipam = Ipam::new(&dir, subnet("10.77.0.0/24"));
                    ipam.allocate(&me(&format!("c{i}"))).unwrap()
                })
            })
            .collect();
        let addresses: HashSet<Ipv4Addr> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(addresses.len(), 20);
        let expected: HashSet<Ipv4Addr> = subnet("10.77.0.0/24").hosts().take(20).collect();
        assert_eq!(addresses, expected);
        let ipam = Ipam::new(&dir, subnet("10.77.0.0/24"));
        assert_eq!(ipam.leases().unwrap().len(), 20);
    }

    #[test]
    fn full_network_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(tmp.path(), subnet("10.77.0.4/30"));
        assert_eq!(ipam.allocate(&me("a")).unwrap(), ip("10.77.0.6"));
        let err = ipam.allocate(&me("b")).unwrap_err().to_string();
        assert!(err.contains("network 10.77.0.4/30 is full"), "{err}");
        ipam.release(ip("10.77.0.6")).unwrap();
        assert_eq!(ipam.allocate(&me("b")).unwrap(), ip("10.77.0.6"));
    }

    #[test]
    fn lease_json_round_trips() {
        let lease = Lease {
            container: "abc".into(),
            name: Some("web".into()),
            pid: 7,
            start_time: 99,
        };
        let json = serde_json::to_string(&lease).unwrap();
        assert_eq!(
            json,
            r#"{"container":"abc","name":"web","pid":7,"start_time":99}"#
        );
        assert_eq!(serde_json::from_str::<Lease>(&json).unwrap(), lease);
    }
}
