//! What berth remembers about each container, in
//! `<root>/containers/<id>/record.json` beside its upper directory and log.
//!
//! There is no daemon to ask, so every command reads these records. A
//! container "runs" while the process that watches it (its monitor: the
//! `berth run` in the foreground, or the monitor a detached run leaves
//! behind) is alive; a PID plus its start time names one process for good,
//! so a reused PID is never mistaken for it.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::Flock;
use serde::{Deserialize, Serialize};
use stage01_chroot::Error;
use stage03_cgroups::Limits;
use stage03_cgroups::limits::CpuQuota;
use stage04_images::image::Overrides;
use stage04_images::overlay::ContainerDirs;
use stage04_images::root::Root;
use stage04_images::store::{
    lock_file, remove_file_if_present, replace_atomic, sync_dir, write_atomic,
};
use stage05_networks::ipam::{process_alive, process_start_time};

const RECORD: &str = "record.json";
pub const LOG: &str = "container.log";
const MONITOR_LOG: &str = "monitor.log";
const STOPPED_BY_USER: &str = "stopped-by-user";
/// A new container's directory is made in `.new-<pid>-<start time>/` (its
/// creator's), then renamed into place.
const STAGING: &str = ".new-";

/// One container: what was asked for, and what happened to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub name: Option<String>,
    /// Seconds since the epoch.
    pub created: u64,
    pub spec: Spec,
    pub state: State,
}

/// The `berth run` command line, kept so a monitor can start it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Spec {
    pub image: String,
    pub entrypoint: Option<String>,
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<PathBuf>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub memory: Option<u64>,
    /// `(quota, period)` in microseconds.
    pub cpu: Option<(u64, u64)>,
    pub pids_limit: Option<u64>,
    /// `--network`: its first network (`none` for none).
    pub network: String,
    /// Networks it joined after its first (`berth network connect`).
    #[serde(default)]
    pub connected: Vec<String>,
    pub publish: Vec<String>,
    /// `--rm`: remove the container when it exits.
    pub auto_remove: bool,
    /// `-d`: its output goes to its log, not to a terminal.
    pub detached: bool,
    /// `--stats`: when it ends, print what its cgroup measured.
    pub stats: bool,
    /// `--privileged`: none of the secure defaults (see `harden`).
    #[serde(default)]
    pub privileged: bool,
    /// `-i`: the container reads our stdin (otherwise /dev/null).
    #[serde(default)]
    pub interactive: bool,
    /// `-t`: the container gets a terminal of its own.
    #[serde(default)]
    pub tty: bool,
    /// `--cap-add`: capabilities beyond the defaults (`NET_RAW`, or `ALL`).
    #[serde(default)]
    pub cap_add: Vec<String>,
    /// `--cap-drop`: defaults to give up (`CHOWN`, or `ALL`).
    #[serde(default)]
    pub cap_drop: Vec<String>,
    /// `--userns`: root inside is an unprivileged user of the host's.
    #[serde(default)]
    pub userns: bool,
    /// `-v`, `--mount`, `--tmpfs` and the image's VOLUMEs, each anonymous
    /// volume by the name it was given (see `volume`).
    #[serde(default)]
    pub mounts: Vec<crate::volume::Mount>,
    /// `--detach-keys`: what `berth attach` takes as "leave" (default
    /// Ctrl-P Ctrl-Q).
    #[serde(default)]
    pub detach_keys: Option<String>,
    /// `--restart`: whether its monitor runs it again when it ends.
    #[serde(default)]
    pub restart: crate::restart::RestartPolicy,
    /// The rest of Docker's `run` options (all optional).
    #[serde(default, flatten)]
    pub extras: Extras,
}

/// Docker's `run` options beyond the workshop's: how the bundle differs
/// from the defaults, the name files' additions, `stop`'s defaults, labels.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Extras {
    /// `--read-only`: the root file system is mounted read-only.
    pub read_only: bool,
    /// `--security-opt seccomp=...`.
    pub seccomp: SeccompChoice,
    /// `--security-opt no-new-privileges=false`: setuid programs work again.
    pub allow_new_privileges: bool,
    /// `--ulimit`: `(RLIMIT_NAME, soft, hard)`.
    pub ulimits: Vec<(String, u64, u64)>,
    /// `--device`: host device, path inside, `rwm` permissions.
    pub devices: Vec<(PathBuf, PathBuf, String)>,
    /// `--add-host`: `(name, address)` lines for /etc/hosts.
    pub add_hosts: Vec<(String, String)>,
    /// `--dns`: the nameservers of /etc/resolv.conf (default: the host's).
    pub dns: Vec<String>,
    /// `--stop-signal`: what `stop` sends first (default SIGTERM).
    pub stop_signal: Option<String>,
    /// `--stop-timeout`: seconds `stop` waits before SIGKILL (default 10).
    pub stop_timeout: Option<u64>,
    /// `--label KEY=VALUE`.
    pub labels: std::collections::BTreeMap<String, String>,
    /// `--init`: asked for; berth always runs its init as PID 1.
    pub init: bool,
}

/// The seccomp filter a container gets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeccompChoice {
    /// berth's default profile (see `harden`).
    #[default]
    Default,
    /// `seccomp=unconfined`: no filter.
    Unconfined,
    /// `seccomp=FILE`: an OCI `linux.seccomp` profile, read at `run`.
    Profile(serde_json::Value),
}

impl Spec {
    /// Every network it is on, its first first (none for `--network none`).
    pub fn networks(&self) -> Vec<&str> {
        let first = Some(self.network.as_str()).filter(|n| *n != "none");
        first
            .into_iter()
            .chain(self.connected.iter().map(String::as_str))
            .collect()
    }

    pub fn overrides(&self) -> Overrides {
        Overrides {
            entrypoint: self.entrypoint.clone(),
            command: self.command.iter().map(Into::into).collect(),
            env: self.env.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            memory: self.memory,
            cpu: self.cpu.map(|(quota_us, period_us)| CpuQuota {
                quota_us,
                period_us,
            }),
            pids: self.pids_limit,
        }
    }
}

pub use crate::status::Status;

/// A process, named for good: its PID and its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    pub pid: i32,
    pub start_time: u64,
}

impl Proc {
    pub fn of(pid: i32) -> Option<Proc> {
        Some(Proc {
            pid,
            start_time: process_start_time(pid)?,
        })
    }

    pub fn alive(&self) -> bool {
        process_alive(self.pid, self.start_time)
    }

    /// Wait until it has exited; false if it still runs after `timeout`.
    pub fn wait_gone(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while self.alive() {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        true
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    /// The process that waits for the container and cleans up after it.
    /// (Its init and cgroups are the runtime's to know: see
    /// `runtime::processes_of`; the record keeps no copy.)
    pub monitor: Option<Proc>,
    pub address: Option<Ipv4Addr>,
    pub started: Option<u64>,
    pub finished: Option<u64>,
    pub exit_code: Option<u8>,
    pub oom_killed: bool,
    // What a run makes on the host is written down *before* it is made,
    // and forgotten only once it is gone again (write-ahead): whoever finds
    // the run's monitor dead (`rm`, `start`) removes what is listed. The
    // runtime does the same for the cgroup in its state; the record lists
    // what the engine adds.
    /// Its place on each of its networks: lease, veth pair, ports, names.
    #[serde(default, deserialize_with = "one_or_many")]
    pub plugged: Vec<Plugged>,
    /// How many times it has run (`berth start` runs it again).
    #[serde(default)]
    pub runs: u32,
    /// How many times its monitor ran it again by its `--restart` policy
    /// since it was last started by hand (Docker's RestartCount).
    #[serde(default)]
    pub restart_count: u32,
    /// Its monitor is waiting to run it again (`--restart`'s back-off).
    #[serde(default)]
    pub restarting: bool,
    /// The back-off before the last restart, in milliseconds: the next one
    /// doubles it (see `restart::next_delay`).
    #[serde(default)]
    pub restart_delay_ms: u64,
}

/// What a container has on its network's side of the host, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plugged {
    /// The network: an address leased there, its name in its peers'
    /// `/etc/hosts`.
    pub network: String,
    /// The host end of its veth pair.
    pub veth: String,
    /// Whether berth's firewall table forwards published ports to it.
    pub ports: bool,
    /// Its interface inside: 0 is `eth0` (see `attach::interface_name`).
    #[serde(default)]
    pub slot: usize,
    /// Its address there, once it has one.
    #[serde(default)]
    pub address: Option<Ipv4Addr>,
}

/// Records written before a container could be on several networks hold
/// one `Plugged` (or null): read either.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Plugged>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(Plugged),
        Many(Vec<Plugged>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(one)) => vec![one],
        Some(OneOrMany::Many(many)) => many,
    })
}

impl State {
    /// Whether anything a run made may still be on the host.
    pub fn has_leftovers(&self) -> bool {
        !self.plugged.is_empty()
    }
}

impl Record {
    pub fn new(id: String, name: Option<String>, spec: Spec) -> Record {
        Record {
            id,
            name,
            created: now(),
            spec,
            state: State {
                status: Status::Created,
                monitor: None,
                address: None,
                started: None,
                finished: None,
                exit_code: None,
                oom_killed: false,
                plugged: Vec::new(),
                runs: 0,
                restart_count: 0,
                restarting: false,
                restart_delay_ms: 0,
            },
        }
    }

    /// Running means: marked running, and its monitor is still alive. A
    /// monitor killed with SIGKILL takes the container with it (the kernel
    /// kills a PID namespace with its init), so it is not running either.
    pub fn is_running(&self) -> bool {
        self.state.status == Status::Running && self.monitor_alive()
    }

    /// A monitor has taken the container on and still lives: it is running,
    /// or being made ready to run.
    pub fn monitor_alive(&self) -> bool {
        self.state.monitor.is_some_and(|m| m.alive())
    }

    /// Its monitor waits to run it again (`--restart`'s back-off).
    pub fn is_restarting(&self) -> bool {
        self.state.restarting && self.monitor_alive()
    }

    /// The name if it has one, else the ID: what messages call it.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }

    /// `Up 5 seconds`: how long a running container has run.
    pub fn up_text(&self) -> String {
        format!(
            "Up {}",
            human_age(self.state.started.unwrap_or(self.created))
        )
    }

    /// `Up 5 seconds`, `Exited (0) 2 minutes ago`, `Created`, as `docker ps`.
    pub fn status_text(&self) -> String {
        if self.is_restarting() {
            return format!(
                "Restarting ({}) {} ago",
                self.state.exit_code.unwrap_or(0),
                human_age(self.state.finished.unwrap_or(self.created))
            );
        }
        match self.state.status {
            Status::Creating | Status::Created => "Created".into(),
            Status::Paused => "Paused".into(),
            Status::Running if self.is_running() => self.up_text(),
            Status::Running => "Exited (unknown): its monitor was killed".into(),
            Status::Stopped => format!(
                "Exited ({}){} {} ago",
                self.state.exit_code.unwrap_or(0),
                if self.state.oom_killed {
                    " OOMKilled"
                } else {
                    ""
                },
                human_age(self.state.finished.unwrap_or(self.created))
            ),
        }
    }
}

/// All containers' records, under `<root>/containers`.
pub struct Containers {
    dir: PathBuf,
    lock_path: PathBuf,
    /// `names/NAME`, a symbolic link to the ID of the container called
    /// NAME: see [`Containers::named`].
    names: PathBuf,
}

impl Containers {
    pub fn open(root: &Root) -> Containers {
        Containers {
            dir: root.containers(),
            lock_path: root.dir().join("containers.lock"),
            names: root.dir().join("names"),
        }
    }

    // ANCHOR: named
    /// The container called `name`, if any. Its name leads to its ID by a
    /// symbolic link, `names/NAME`, so that finding one container by name
    /// among a thousand reads one record, not a thousand. The link is made
    /// before the record and removed after it; a link whose container is
    /// gone or was renamed is a leftover, and counts for nothing.
    pub fn named(&self, name: &str) -> Result<Option<Record>, Error> {
        let Ok(id) = std::fs::read_link(self.names.join(name)) else {
            return Ok(None);
        };
        let id = id.to_string_lossy();
        if !is_id(&id) {
            return Ok(None);
        }
        let record = self.get(&id)?;
        Ok(record.filter(|r| r.name.as_deref() == Some(name)))
    }
    // ANCHOR_END: named

    /// Give `name` to container `id` in `names/`. The caller holds
    /// [`Containers::lock`] and has checked that the name is free.
    pub fn link_name(&self, name: &str, id: &str) -> Result<(), Error> {
        let link = self.names.join(name);
        remove_file_if_present(&link)?;
        std::os::unix::fs::symlink(id, &link).map_err(|e| Error::io("link", &link, e))
    }

    /// Take `name` back from container `id`, if it still has it.
    pub fn unlink_name(&self, name: &str, id: &str) -> Result<(), Error> {
        let link = self.names.join(name);
        match std::fs::read_link(&link) {
            Ok(target) if target.as_os_str() == id => remove_file_if_present(&link),
            _ => Ok(()),
        }
    }

    /// Remove the links of names no container has: a `run --name` killed
    /// between its link and its record leaves one (harmless: see
    /// [`Containers::named`]), until the name is given again or this runs.
    pub fn sweep_names(&self) -> Result<(), Error> {
        let _lock = self.lock()?;
        let Ok(entries) = std::fs::read_dir(&self.names) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if self.named(&name)?.is_none() {
                remove_file_if_present(&entry.path())?;
            }
        }
        Ok(())
    }

    /// Make `names/` from the records if there is none: a state root from
    /// before it. The caller holds the lock, and calls this before it asks
    /// [`Containers::named`] whether a name is free.
    pub fn index_names(&self) -> Result<(), Error> {
        if self.names.exists() {
            return Ok(());
        }
        let building = self
            .names
            .with_extension(format!("new-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&building);
        std::fs::create_dir_all(&building).map_err(|e| Error::io("create", &building, e))?;
        for record in self.list()? {
            if let Some(name) = &record.name {
                let link = building.join(name);
                std::os::unix::fs::symlink(&record.id, &link)
                    .map_err(|e| Error::io("link", &link, e))?;
            }
        }
        std::fs::rename(&building, &self.names).map_err(|e| Error::io("rename", &building, e))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Held while names are checked and records made or removed, so two
    /// `berth run --name web` at once can't both get the name.
    pub fn lock(&self) -> Result<Flock<std::fs::File>, Error> {
        lock_file(&self.lock_path)
    }

    pub fn dirs(&self, id: &str) -> ContainerDirs {
        ContainerDirs::open(&self.dir, id)
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.dir.join(id).join(LOG)
    }

    /// Where a detached container's monitor writes its own warnings (not
    /// the container's log, which holds only what the container wrote).
    pub fn monitor_log_path(&self, id: &str) -> PathBuf {
        self.dir.join(id).join(MONITOR_LOG)
    }

    /// Note that the user stopped the container (`stop`, `kill`): its
    /// monitor must not run it again, whatever its `--restart` says, until
    /// `berth start`. A file of its own rather than a field of the record,
    /// because the monitor saves its copy of the record as it goes and
    /// would write a field back over the user's word.
    pub fn mark_stopped_by_user(&self, id: &str) -> Result<(), Error> {
        let path = self.dir.join(id).join(STOPPED_BY_USER);
        std::fs::write(&path, b"").map_err(|e| Error::io("write", &path, e))
    }

    pub fn stopped_by_user(&self, id: &str) -> bool {
        self.dir.join(id).join(STOPPED_BY_USER).exists()
    }

    /// `berth start`: the user wants it running again.
    pub fn clear_stopped_by_user(&self, id: &str) -> Result<(), Error> {
        let path = self.dir.join(id).join(STOPPED_BY_USER);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("remove", &path, e))
            }
            _ => Ok(()),
        }
    }

    /// Make a new container's directories with its record in them. They
    /// are made aside and renamed into place, so they appear at once: a
    /// berth killed halfway never leaves a directory without a record,
    /// which no command could name. (What it made aside, [`Containers::list`]
    /// removes once it is dead.)
    pub fn add(&self, record: &Record) -> Result<(), Error> {
        let me = std::process::id() as i32;
        let started = process_start_time(me)
            .ok_or_else(|| Error::Other(format!("read the start time of our own process {me}")))?;
        let staging = self.dir.join(format!("{STAGING}{me}-{started}"));
        let dirs = ContainerDirs::create(&staging, &record.id)?;
        let target = self.dir.join(&record.id);
        let placed = self.save_in(&dirs.dir, record, false).and_then(|()| {
            // Kept across a reboot (synced), unless `--rm` will remove it.
            if !record.spec.auto_remove {
                let path = dirs.dir.join(RECORD);
                (File::open(&path).and_then(|f| f.sync_all()))
                    .map_err(|e| Error::io("fsync", &path, e))?;
            }
            std::fs::rename(&dirs.dir, &target)
                .map_err(|e| Error::io("rename into", &target, e))?;
            match record.spec.auto_remove {
                true => Ok(()),
                false => sync_dir(&self.dir),
            }
        });
        remove_if_present(&staging)?;
        placed
    }

    /// Save a change to what the container is (its name, its networks):
    /// synced to disk, so it survives a power loss.
    pub fn save(&self, record: &Record) -> Result<(), Error> {
        self.save_in(&self.dir.join(&record.id), record, true)
    }

    /// Save a change to what a run of it does on the host (its monitor,
    /// its addresses, how it ended): atomic, but not synced. It dies with
    /// the machine anyway, so a crash of berth is all it must survive,
    /// and each fsync costs milliseconds on every start.
    pub fn save_state(&self, record: &Record) -> Result<(), Error> {
        self.save_in(&self.dir.join(&record.id), record, false)
    }

    fn save_in(&self, dir: &Path, record: &Record, durable: bool) -> Result<(), Error> {
        let bytes = serde_json::to_vec_pretty(record)
            .map_err(|e| Error::Other(format!("encode the record of {}: {e}", record.id)))?;
        match durable {
            true => write_atomic(&dir.join(RECORD), &bytes),
            false => replace_atomic(&dir.join(RECORD), &bytes),
        }
    }

    pub fn load(&self, id: &str) -> Result<Record, Error> {
        let path = self.dir.join(id).join(RECORD);
        let bytes = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Other(format!("{}: not a container record: {e}", path.display())))
    }

    /// The record of container `id`, or `None` if it has been removed.
    pub fn get(&self, id: &str) -> Result<Option<Record>, Error> {
        match self.dir.join(id).join(RECORD).exists() {
            true => self.load(id).map(Some),
            false => Ok(None),
        }
    }

    /// Every container with a record, oldest first. (Directories without
    /// one belong to the stage binaries' containers.)
    pub fn list(&self) -> Result<Vec<Record>, Error> {
        self.sweep_staging();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(Vec::new());
        };
        // Read, not first asked whether it exists: one call less for each
        // of maybe a thousand containers. (No record: a directory being
        // made or removed.)
        let mut records: Vec<Record> = entries
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join(RECORD)).ok())
            .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
            .collect();
        records.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(records)
    }

    /// Remove what creators that were killed in [`Containers::add`] made
    /// aside: they are named after their creator, so it is safe to remove
    /// those whose creator is gone.
    pub fn sweep_staging(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((pid, started)) = name.strip_prefix(STAGING).and_then(|s| s.split_once('-'))
            else {
                continue;
            };
            let (Ok(pid), Ok(started)) = (pid.parse(), started.parse()) else {
                continue;
            };
            if !process_alive(pid, started) {
                let _ = remove_if_present(&entry.path());
            }
        }
    }

    /// A container by name, full ID or unique ID prefix, as Docker finds them.
    pub fn find(&self, key: &str) -> Result<Record, Error> {
        // A whole ID names its directory: no need to read every record
        // (berth's own commands pass IDs, among a thousand containers too).
        if is_id(key)
            && let Some(record) = self.get(key)?
        {
            return Ok(record);
        }
        if let Some(record) = self.named(key)? {
            return Ok(record);
        }
        let records = self.list()?;
        if let Some(record) = records
            .iter()
            .find(|r| r.name.as_deref() == Some(key) || r.id == key)
        {
            return Ok(record.clone());
        }
        let matches: Vec<&Record> = records.iter().filter(|r| r.id.starts_with(key)).collect();
        match matches.as_slice() {
            [one] if !key.is_empty() => Ok((*one).clone()),
            [] | [_] => Err(Error::Other(format!(
                "no such container: {key} (see: berth ps -a)"
            ))),
            _ => Err(Error::Other(format!(
                "{key} matches {} containers; give more of the ID",
                matches.len()
            ))),
        }
    }

    /// The container's directory goes: its record, log and writes; then
    /// its name. `record` is its record as it is now (read under the lock).
    pub fn remove(&self, record: &Record) -> Result<(), Error> {
        self.dirs(&record.id).remove()?;
        match &record.name {
            Some(name) => self.unlink_name(name, &record.id),
            None => Ok(()),
        }
    }
}

/// Whether `key` has the shape of a container's ID (12 hex digits), and so
/// names its directory.
fn is_id(key: &str) -> bool {
    key.len() == 12 && key.bytes().all(|b| b.is_ascii_hexdigit())
}

fn remove_if_present(dir: &Path) -> Result<(), Error> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", dir, e)),
        _ => Ok(()),
    }
}

/// Docker's rule for container names: a letter or digit, then at least
/// one more letter, digit, '_', '.' or '-'. Names also go into the
/// network's /etc/hosts, which takes them as they are.
pub fn parse_name(text: &str) -> Result<String, String> {
    let ok = text.len() >= 2
        && text.len() <= 128
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not a valid container name: use 2 to 128 letters, digits, '_', '.' \
             and '-', starting with a letter or digit"
        ))
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `5 seconds`, `3 minutes`, `2 hours`, `4 days` since `then`.
pub fn human_age(then: u64) -> String {
    let secs = now().saturating_sub(then);
    let (n, unit) = match secs {
        0..60 => (secs, "second"),
        60..3600 => (secs / 60, "minute"),
        3600..86400 => (secs / 3600, "hour"),
        _ => (secs / 86400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn containers() -> (tempfile::TempDir, Containers) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let containers = Containers::open(&root);
        (dir, containers)
    }

    fn made(containers: &Containers, id: &str, name: Option<&str>) -> Record {
        let record = Record::new(id.into(), name.map(Into::into), Spec::default());
        containers.add(&record).unwrap();
        record
    }

    #[test]
    fn a_new_container_appears_whole_and_goes_whole() {
        let (_dir, containers) = containers();
        let whole = made(&containers, "whole0000000", None);
        let dirs = containers.dirs("whole0000000");
        assert!(dirs.upper.is_dir() && dirs.work.is_dir() && dirs.merged.is_dir());
        // What a creator killed halfway left aside goes at the next look.
        let dead = containers
            .dir()
            .join(format!("{STAGING}{}-1", std::process::id()));
        ContainerDirs::create(&dead, "killed000000").unwrap();
        assert_eq!(containers.list().unwrap().len(), 1);
        assert!(!dead.exists());
        assert_eq!(
            containers.get("whole0000000").unwrap().unwrap().id,
            "whole0000000"
        );
        containers.remove(&whole).unwrap();
        assert!(containers.get("whole0000000").unwrap().is_none());
        // A record is never written back into a removed container.
        let gone = Record::new("whole0000000".into(), None, Spec::default());
        assert!(containers.save(&gone).is_err());
        assert_eq!(std::fs::read_dir(containers.dir()).unwrap().count(), 0);
    }

    #[test]
    fn found_by_name_id_and_unique_prefix() {
        let (_dir, containers) = containers();
        made(&containers, "abc123000000", Some("web"));
        made(&containers, "abd456000000", None);
        assert_eq!(containers.find("web").unwrap().id, "abc123000000");
        assert_eq!(containers.find("abd456000000").unwrap().id, "abd456000000");
        assert_eq!(containers.find("abc").unwrap().id, "abc123000000");
        let ambiguous = containers.find("ab").unwrap_err().to_string();
        assert!(ambiguous.contains("matches 2 containers"), "{ambiguous}");
        let missing = containers.find("db").unwrap_err().to_string();
        assert!(missing.contains("no such container: db"), "{missing}");
        assert!(containers.find("").is_err());
    }

    #[test]
    fn a_name_leads_to_its_container_through_one_link() {
        let (_dir, containers) = containers();
        // Made before names/ existed: indexed the first time it is needed.
        made(&containers, "abc123000000", Some("web"));
        assert!(containers.named("web").unwrap().is_none());
        containers.index_names().unwrap();
        assert_eq!(containers.named("web").unwrap().unwrap().id, "abc123000000");
        // A link whose container is gone counts for nothing.
        containers.link_name("db", "def456000000").unwrap();
        assert!(containers.named("db").unwrap().is_none());
        // Renamed: the old name leads nowhere.
        let mut web = containers.load("abc123000000").unwrap();
        web.name = Some("site".into());
        containers.link_name("site", "abc123000000").unwrap();
        containers.save(&web).unwrap();
        assert!(containers.named("web").unwrap().is_none());
        assert_eq!(containers.find("site").unwrap().id, "abc123000000");
        // Removed: its name goes with it; a prune sweeps the rest.
        containers.remove(&web).unwrap();
        assert!(std::fs::symlink_metadata(containers.names.join("site")).is_err());
        containers.sweep_names().unwrap();
        assert_eq!(std::fs::read_dir(&containers.names).unwrap().count(), 0);
    }

    #[test]
    fn directories_without_a_record_are_not_listed() {
        let (_dir, containers) = containers();
        ContainerDirs::create(containers.dir(), "stage04run00").unwrap();
        let engine = made(&containers, "engine000000", None);
        let ids: Vec<String> = containers
            .list()
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["engine000000"]);
        containers.remove(&engine).unwrap();
        assert!(containers.list().unwrap().is_empty());
    }

    #[test]
    fn a_dead_monitor_means_not_running() {
        let mut record = Record::new("x".into(), None, Spec::default());
        record.state.status = Status::Running;
        record.state.monitor = Proc::of(std::process::id() as i32);
        assert!(record.is_running());
        record.state.monitor = Some(Proc {
            pid: std::process::id() as i32,
            start_time: 1,
        });
        assert!(!record.is_running());
        assert!(record.status_text().starts_with("Exited (unknown)"));
    }

    #[test]
    fn ages_read_like_docker_ps() {
        assert_eq!(human_age(now()), "0 seconds");
        assert_eq!(human_age(now() - 61), "1 minute");
        assert_eq!(human_age(now() - 7200), "2 hours");
    }
}
