//! One container's cgroup, whatever the host's layout: the [`Cgroup`] trait,
//! [`create`] that picks the backend, and the file helpers both backends use.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno::EBUSY;
use nix::sys::statfs::{CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC, statfs};
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
    place()?.create(name, limits)
}

/// Where a container's cgroup goes: below our own cgroup, in the one tree
/// of v2 or in each hierarchy of v1.
pub enum Place {
    Unified {
        parent: PathBuf,
    },
    Legacy {
        parents: Vec<(&'static str, PathBuf)>,
    },
}

/// Find our own cgroup in the layout this host has.
pub fn place() -> Result<Place, Error> {
    let memberships = layout::own_memberships()?;
    match layout::detect()? {
        Layout::Unified => {
            let parent = layout::v2_own_dir(Path::new(CGROUP_ROOT), &memberships)
                .ok_or_else(|| Error::Other("no cgroup v2 line in /proc/self/cgroup".into()))?;
            Ok(Place::Unified { parent })
        }
        Layout::Legacy { .. } => {
            let mountinfo = read("/proc/self/mountinfo")?;
            let mounts = layout::parse_v1_mounts(&mountinfo);
            let parents = v1::CONTROLLERS
                .iter()
                .filter_map(|c| Some((*c, layout::v1_own_dir(c, &memberships, &mounts)?)))
                .collect::<Vec<_>>();
            Ok(Place::Legacy { parents })
        }
    }
}

impl Place {
    /// Make the cgroup `name` here, with `limits` set.
    pub fn create(&self, name: &str, limits: &Limits) -> Result<Box<dyn Cgroup>, Error> {
        match self {
            Place::Unified { parent } => Ok(Box::new(v2::V2Cgroup::create(parent, name, limits)?)),
            Place::Legacy { parents } => Ok(Box::new(v1::V1Cgroup::create(parents, name, limits)?)),
        }
    }
}
// ANCHOR_END: create

impl Place {
    /// The directories [`Place::create`] makes for `name`, before they are
    /// made. An engine writes them down first, so that whoever finds it
    /// killed halfway knows what to remove (see [`remove_leftovers`]).
    pub fn dirs(&self, name: &str) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        let parents: Vec<&PathBuf> = match self {
            Place::Unified { parent } => vec![parent],
            Place::Legacy { parents } => parents.iter().map(|(_, parent)| parent).collect(),
        };
        for parent in parents {
            let dir = parent.join(name);
            if !dirs.contains(&dir) {
                dirs.push(dir); // co-mounted controllers share one
            }
        }
        dirs
    }
}

/// Remove the cgroup directories a container left when the process that
/// made them was killed: first kill whatever still runs in them (a
/// container with nobody to watch it), then remove them, forgetting each
/// one that is gone. Directories that never were made are fine.
pub fn remove_leftovers(dirs: &mut Vec<PathBuf>) -> Result<(), Error> {
    for dir in dirs.iter() {
        kill_members(dir);
    }
    remove_dirs(dirs)
}

/// SIGKILL every process in the cgroup `dir`, if it exists (and is a
/// cgroup: its `cgroup.procs` is the kernel's, not a file anyone wrote).
fn kill_members(dir: &Path) {
    let on_cgroupfs = statfs(dir).is_ok_and(|fs| {
        matches!(
            fs.filesystem_type(),
            CGROUP_SUPER_MAGIC | CGROUP2_SUPER_MAGIC
        )
    });
    if !on_cgroupfs {
        return; // not made, or gone already
    }
    let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) else {
        return;
    };
    for pid in procs
        .lines()
        .filter_map(|line| line.trim().parse::<i32>().ok())
    {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dirs_are_known_before_they_are_made() {
        let v2 = Place::Unified {
            parent: "/sys/fs/cgroup/user.slice".into(),
        };
        assert_eq!(
            v2.dirs("berth-1"),
            [Path::new("/sys/fs/cgroup/user.slice/berth-1")]
        );
        // cpu and cpuacct co-mounted: one directory for both.
        let v1 = Place::Legacy {
            parents: vec![
                ("memory", "/cg/memory/own".into()),
                ("cpu", "/cg/cpu,cpuacct".into()),
                ("cpuacct", "/cg/cpu,cpuacct".into()),
                ("pids", "/cg/pids".into()),
            ],
        };
        assert_eq!(
            v1.dirs("berth-1"),
            [
                Path::new("/cg/memory/own/berth-1"),
                Path::new("/cg/cpu,cpuacct/berth-1"),
                Path::new("/cg/pids/berth-1"),
            ]
        );
    }

    #[test]
    fn leftovers_are_forgotten_once_gone() {
        let root = tempfile::tempdir().unwrap();
        let made = root.path().join("berth-made");
        std::fs::create_dir(&made).unwrap();
        let never_made = root.path().join("berth-never");
        let mut dirs = vec![made.clone(), never_made];
        remove_leftovers(&mut dirs).unwrap();
        assert!(dirs.is_empty());
        assert!(!made.exists());
        // One that can't go (here: not empty) stays on the list.
        let stuck = root.path().join("berth-stuck");
        std::fs::create_dir_all(stuck.join("inside")).unwrap();
        let mut dirs = vec![stuck.clone()];
        assert!(remove_leftovers(&mut dirs).is_err());
        assert_eq!(dirs, [stuck]);
    }
}
