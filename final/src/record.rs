//! What berth remembers about each container, in
//! `<root>/containers/<id>/record.json` beside its upper directory and log.
//!
//! There is no daemon to ask, so every command reads these records. A
//! container "runs" while the process that watches it (its monitor: the
//! `berth run` in the foreground, or the monitor a detached run leaves
//! behind) is alive; a PID plus its start time names one process for good,
//! so a reused PID is never mistaken for it.

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
use stage04_images::store::{lock_file, write_atomic};
use stage05_networks::ipam::{process_alive, process_start_time};

const RECORD: &str = "record.json";
pub const LOG: &str = "container.log";

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
    pub network: String,
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
}

impl Spec {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Exited,
}

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
    pub monitor: Option<Proc>,
    /// The container's init (PID 1 inside), as the host sees it.
    pub init: Option<Proc>,
    pub address: Option<Ipv4Addr>,
    pub started: Option<u64>,
    pub finished: Option<u64>,
    pub exit_code: Option<u8>,
    pub oom_killed: bool,
    /// Its cgroup's directories (one per hierarchy on cgroup v1), for
    /// `exec` to join and for `rm` to remove if its monitor could not.
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
    /// How many times it has run (`berth start` runs it again).
    #[serde(default)]
    pub runs: u32,
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
                init: None,
                address: None,
                started: None,
                finished: None,
                exit_code: None,
                oom_killed: false,
                cgroups: Vec::new(),
                runs: 0,
            },
        }
    }

    /// Running means: marked running, and its monitor is still alive. A
    /// monitor killed with SIGKILL takes the container with it (the kernel
    /// kills a PID namespace with its init), so it is not running either.
    pub fn is_running(&self) -> bool {
        self.state.status == Status::Running && self.state.monitor.is_some_and(|m| m.alive())
    }

    /// The name if it has one, else the ID: what messages call it.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }

    /// `Up 5 seconds`, `Exited (0) 2 minutes ago`, `Created`, as `docker ps`.
    pub fn status_text(&self) -> String {
        match self.state.status {
            Status::Created => "Created".into(),
            Status::Running if self.is_running() => {
                format!(
                    "Up {}",
                    human_age(self.state.started.unwrap_or(self.created))
                )
            }
            Status::Running => "Exited (unknown): its monitor was killed".into(),
            Status::Exited => format!(
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
}

impl Containers {
    pub fn open(root: &Root) -> Containers {
        Containers {
            dir: root.containers(),
            lock_path: root.dir().join("containers.lock"),
        }
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

    pub fn save(&self, record: &Record) -> Result<(), Error> {
        let bytes = serde_json::to_vec_pretty(record)
            .map_err(|e| Error::Other(format!("encode the record of {}: {e}", record.id)))?;
        write_atomic(&self.dir.join(&record.id).join(RECORD), &bytes)
    }

    pub fn load(&self, id: &str) -> Result<Record, Error> {
        let path = self.dir.join(id).join(RECORD);
        let bytes = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Other(format!("{}: not a container record: {e}", path.display())))
    }

    /// Every container with a record, oldest first. (Directories without
    /// one belong to the stage binaries' containers.)
    pub fn list(&self) -> Result<Vec<Record>, Error> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(Vec::new());
        };
        let mut records: Vec<Record> = entries
            .flatten()
            .filter(|e| e.path().join(RECORD).exists())
            .filter_map(|e| self.load(&e.file_name().to_string_lossy()).ok())
            .collect();
        records.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(records)
    }

    /// A container by name, full ID or unique ID prefix, as Docker finds them.
    pub fn find(&self, key: &str) -> Result<Record, Error> {
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

    /// The container's directory goes: its record, log and writes.
    pub fn remove(&self, id: &str) -> Result<(), Error> {
        self.dirs(id).remove()
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
        ContainerDirs::create(containers.dir(), id).unwrap();
        let record = Record::new(id.into(), name.map(Into::into), Spec::default());
        containers.save(&record).unwrap();
        record
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
    fn directories_without_a_record_are_not_listed() {
        let (_dir, containers) = containers();
        ContainerDirs::create(containers.dir(), "stage04run00").unwrap();
        made(&containers, "engine000000", None);
        let ids: Vec<String> = containers
            .list()
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["engine000000"]);
        containers.remove("engine000000").unwrap();
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
