//! One container's cgroup, whatever the host's layout: the [`Cgroup`] trait,
//! [`create`] that picks the backend, and the file helpers both backends use.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno::EBUSY;
use nix::unistd::Pid;
use stage01_chroot::Error;

use crate::layout::{self, CGROUP_ROOT, Layout};
use crate::limits::Limits;
use crate::{v1, v2};

// ANCHOR: trait
/// A container's cgroup. Created with its limits set; removed on drop.
pub trait Cgroup {
    /// The directories it is made of: one in v2, one per hierarchy in v1.
    fn dirs(&self) -> Vec<PathBuf>;
    /// Put a process in it. Its children are born in it too.
    fn add_process(&self, pid: Pid) -> Result<(), Error>;
    /// What the kernel counted for it.
    fn usage(&self) -> Result<Usage, Error>;
    /// Remove it. Every process in it must have exited.
    fn remove(&mut self) -> Result<(), Error>;
}
// ANCHOR_END: trait

/// What the kernel measured for a cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time of all its processes, user and system.
    pub cpu_time: Duration,
    /// Most memory in use at once, if the kernel tracks it.
    pub memory_peak: Option<u64>,
    /// Processes the OOM killer killed in it.
    pub oom_kills: u64,
    /// Forks refused because of the pids limit.
    pub pids_refused: u64,
}

// ANCHOR: create
/// Make the cgroup `name` below our own cgroup, with `limits` set, in the
/// layout this host has.
pub fn create(name: &str, limits: &Limits) -> Result<Box<dyn Cgroup>, Error> {
    let memberships = layout::own_memberships()?;
    match layout::detect()? {
        Layout::Unified => {
            let parent = layout::v2_own_dir(Path::new(CGROUP_ROOT), &memberships)
                .ok_or_else(|| Error::Other("no cgroup v2 line in /proc/self/cgroup".into()))?;
            Ok(Box::new(v2::V2Cgroup::create(&parent, name, limits)?))
        }
        Layout::Legacy { .. } => {
            let mountinfo = read("/proc/self/mountinfo")?;
            let mounts = layout::parse_v1_mounts(&mountinfo);
            let parents = v1::CONTROLLERS
                .iter()
                .filter_map(|c| Some((*c, layout::v1_own_dir(c, &memberships, &mounts)?)))
                .collect::<Vec<_>>();
            Ok(Box::new(v1::V1Cgroup::create(&parents, name, limits)?))
        }
    }
}
// ANCHOR_END: create

/// Write `value` to the control file `dir/file`.
pub(crate) fn write_control(dir: &Path, file: &str, value: &str) -> Result<(), Error> {
    let path = dir.join(file);
    std::fs::write(&path, value)
        .map_err(|e| Error::Other(format!("write {value:?} to {}: {e}", path.display())))
}

pub(crate) fn read(path: impl AsRef<Path>) -> Result<String, Error> {
    let path = path.as_ref();
    std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))
}

/// A number from a control file holding just that number.
pub(crate) fn read_number(path: impl AsRef<Path>) -> Result<u64, Error> {
    let path = path.as_ref();
    read(path)?
        .trim()
        .parse()
        .map_err(|e| Error::Other(format!("{}: not a number: {e}", path.display())))
}

/// The value of `key` in a flat-keyed file like memory.events (`key N`).
pub(crate) fn read_key(path: impl AsRef<Path>, key: &str) -> Result<Option<u64>, Error> {
    Ok(read(path)?.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    }))
}

/// Make a new, empty cgroup directory; an existing one is an error.
pub(crate) fn make_cgroup_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir(dir).map_err(|e| match e.kind() {
        ErrorKind::AlreadyExists => Error::Other(format!(
            "cgroup {} already exists; another container of that name is running, or one \
             was killed before it could clean up (rmdir it when it is empty)",
            dir.display()
        )),
        _ => Error::io("create cgroup", dir, e),
    })
}

/// Remove cgroup directories, forgetting each one that is gone. The kernel
/// may need a moment after the last process exits before it lets go.
pub(crate) fn remove_dirs(dirs: &mut Vec<PathBuf>) -> Result<(), Error> {
    while let Some(dir) = dirs.last() {
        let mut attempt = 0;
        loop {
            match std::fs::remove_dir(dir) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(EBUSY as i32) && attempt < 100 => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(Error::io("remove cgroup", dir, e)),
            }
        }
        dirs.pop();
    }
    Ok(())
}

/// After the container exited: say what the kernel did to it (an OOM kill),
/// and with `stats` what it used. `code` is the container's exit code.
pub fn report(program: &str, name: &str, limits: &Limits, usage: &Usage, code: u8, stats: bool) {
    if usage.oom_kills > 0 {
        let limit = limits
            .memory
            .map(|m| format!(" (limit {})", crate::limits::format_size(m)));
        // 137 = 128 + SIGKILL: the OOM killer's victim was the command itself.
        let victim = if code == 137 {
            "killed"
        } else {
            "a process in the container was killed"
        };
        eprintln!(
            "{program}: {victim}: out of memory{}",
            limit.unwrap_or_default()
        );
    }
    if stats {
        let peak = usage
            .memory_peak
            .map_or("unknown".into(), crate::limits::format_size);
        eprintln!(
            "{program}: cgroup {name} measured: cpu time {:.3} s, memory peak {peak}, \
             oom kills {}, forks refused {}",
            usage.cpu_time.as_secs_f64(),
            usage.oom_kills,
            usage.pids_refused
        );
    }
}
