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
use crate::resources::Resources;
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

// ANCHOR: manage
/// What a runtime does with a container's cgroup besides making and
/// removing it. An OCI runtime's `create` exits while the container lives
/// on, and `ps`, `pause`, `resume`, `update` and `delete` run in new
/// processes, which find the cgroup again with [`open`].
pub trait Manage: Cgroup {
    /// Every process in it, and in the cgroups below it, once each.
    fn pids(&self) -> Result<Vec<Pid>, Error>;
    /// Stop every process in it, and return once all are stopped. They
    /// don't notice: nothing is delivered to them, they just don't run.
    fn freeze(&self) -> Result<(), Error>;
    /// Let them run again.
    fn thaw(&self) -> Result<(), Error>;
    fn is_frozen(&self) -> Result<bool, Error>;
    /// Rewrite the limits that `resources` sets, and leave the others.
    fn update(&self, resources: &Resources) -> Result<(), Error>;
    /// Leave the cgroup in place when this value is dropped: it belongs to
    /// a container that outlives this process.
    fn keep(&mut self);
}
// ANCHOR_END: manage

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
/// Make the cgroup `name` where this host's layout lets us (see [`place`]),
/// with `limits` set.
pub fn create(name: &str, limits: &Limits) -> Result<Box<dyn Cgroup>, Error> {
    place()?.create(name, limits)
}

/// Where a container's cgroup goes: beside our own cgroup in the one tree
/// of v2, below it in each hierarchy of v1.
pub enum Place {
    Unified {
        parent: PathBuf,
    },
    Legacy {
        parents: Vec<(&'static str, PathBuf)>,
    },
}

/// Find our own cgroup in the layout this host has, and the parent(s) of
/// containers' cgroups there.
pub fn place() -> Result<Place, Error> {
    let memberships = layout::own_memberships()?;
    match layout::detect()? {
        Layout::Unified => {
            let parent = layout::v2_containers_dir(Path::new(CGROUP_ROOT), &memberships)
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
    // Most often the container has ended and its cgroups are empty: then
    // one rmdir each does it. The kernel refuses (EBUSY) a cgroup with a
    // process or a cgroup in it: those are for the long way.
    dirs.retain(|dir| match std::fs::remove_dir(dir) {
        Ok(()) => false,
        Err(e) => e.kind() != ErrorKind::NotFound,
    });
    for dir in dirs.iter() {
        kill_members(dir);
    }
    remove_dirs(dirs)
}

/// SIGKILL every process in the cgroup `dir` and below, if it exists (and
/// is a cgroup: its `cgroup.procs` is the kernel's, not a file anyone wrote).
fn kill_members(dir: &Path) {
    if !on_cgroupfs(dir) {
        return; // not made, or gone already
    }
    let mut pids = Vec::new();
    let _ = procs_below(dir, &mut pids);
    for pid in pids {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
}

/// Whether `dir` is on a cgroup file system (v1 or v2).
fn on_cgroupfs(dir: &Path) -> bool {
    statfs(dir).is_ok_and(|fs| {
        matches!(
            fs.filesystem_type(),
            CGROUP_SUPER_MAGIC | CGROUP2_SUPER_MAGIC
        )
    })
}

// ANCHOR: target
/// Where an OCI runtime's `linux.cgroupsPath` puts a container's cgroup,
/// resolved on this host before anything is made, so that the directories
/// can be written down first (see [`Place::dirs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The path below each base, without a leading `/`.
    path: PathBuf,
    /// Each v1 hierarchy's (controller, base): empty on a v2 host.
    legacy: Vec<(&'static str, PathBuf)>,
    /// The base in the cgroup2 tree: the only tree on a v2 host, an extra
    /// one on a hybrid host (where `hugetlb` may live).
    unified: Option<PathBuf>,
}

/// Resolve `linux.cgroupsPath`. An absolute path is taken from each
/// hierarchy's mount point, as the runtime spec says; a relative one from
/// our own cgroup in each v1 hierarchy, and from its parent in the v2 tree
/// (see [`layout::v2_containers_dir`]), as runc does. On v1 the container gets
/// a directory in every hierarchy mounted (runc's choice too: `pause` needs
/// `freezer`, device rules need `devices`).
pub fn target(cgroups_path: &Path) -> Result<Target, Error> {
    let absolute = cgroups_path.is_absolute();
    let memberships = layout::own_memberships()?;
    let base_in_v2 = |mount_point: &Path| -> Result<PathBuf, Error> {
        if absolute {
            return Ok(mount_point.to_path_buf());
        }
        layout::v2_containers_dir(mount_point, &memberships)
            .ok_or_else(|| Error::Other("no cgroup v2 line in /proc/self/cgroup".into()))
    };
    match layout::detect()? {
        Layout::Unified => Target::new(
            cgroups_path,
            Vec::new(),
            Some(base_in_v2(Path::new(CGROUP_ROOT))?),
        ),
        Layout::Legacy { hybrid } => {
            let mounts = layout::parse_v1_mounts(&read("/proc/self/mountinfo")?);
            let has = |m: &layout::V1Mount, c: &str| m.controllers.iter().any(|mc| mc == c);
            let legacy = v1::ALL_CONTROLLERS
                .iter()
                .filter_map(|c| {
                    let base = if absolute {
                        mounts.iter().find(|m| has(m, c))?.mount_point.clone()
                    } else {
                        layout::v1_own_dir(c, &memberships, &mounts)?
                    };
                    Some((*c, base))
                })
                .collect();
            let unified = if hybrid {
                Some(base_in_v2(&Path::new(CGROUP_ROOT).join("unified"))?)
            } else {
                None
            };
            Target::new(cgroups_path, legacy, unified)
        }
    }
}

impl Target {
    /// A target below explicit bases (tests, and hosts laid out unusually).
    /// The path may not climb out of its bases with `..`.
    pub fn new(
        cgroups_path: &Path,
        legacy: Vec<(&'static str, PathBuf)>,
        unified: Option<PathBuf>,
    ) -> Result<Target, Error> {
        use std::path::Component;
        let mut path = PathBuf::new();
        for component in cgroups_path.components() {
            match component {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(part) => path.push(part),
                _ => {
                    return Err(Error::Other(format!(
                        "linux.cgroupsPath {:?} leaves the cgroup tree with \"..\"; give a path \
                         below the mount point (absolute) or below the runtime's own cgroup \
                         (relative)",
                        cgroups_path
                    )));
                }
            }
        }
        if path.as_os_str().is_empty() {
            return Err(Error::Other(format!(
                "linux.cgroupsPath {cgroups_path:?} names no cgroup below the root; give one \
                 like /berth/NAME, or leave it out for the default"
            )));
        }
        if legacy.is_empty() && unified.is_none() {
            return Err(Error::Other(
                "no cgroup hierarchy is mounted (see /proc/self/mountinfo); mount cgroup2 at \
                 /sys/fs/cgroup"
                    .into(),
            ));
        }
        Ok(Target {
            path,
            legacy,
            unified,
        })
    }

    /// The directories [`Target::create`] makes or joins, before they are
    /// made: one per hierarchy (co-mounted controllers share one).
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        let bases = self.legacy.iter().map(|(_, base)| base);
        for base in bases.chain(&self.unified) {
            let dir = base.join(&self.path);
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        dirs
    }

    /// On a cgroup v2 host, the container's one directory: its first
    /// process can be cloned straight into it (stage 02's `start_in`),
    /// with no move. `None` where v1 hierarchies need a move anyway.
    pub fn v2_only_dir(&self) -> Option<PathBuf> {
        match (&self.unified, self.legacy.is_empty()) {
            (Some(base), true) => Some(base.join(&self.path)),
            _ => None,
        }
    }

    /// Refuse, by name, every setting of `resources` this host can't
    /// honour, before anything is made.
    pub fn check(&self, resources: &Resources) -> Result<(), Error> {
        let resources = resources.effective();
        match (&self.legacy[..], &self.unified) {
            ([], Some(base)) => v2::check(&resources, &v2::controllers_in(base)?),
            (legacy, unified) => {
                let unified = match unified {
                    Some(base) => Some(v2::controllers_in(base)?),
                    None => None,
                };
                let controllers: Vec<&str> = legacy.iter().map(|(c, _)| *c).collect();
                v1::check(&resources, &controllers, unified.as_deref())
            }
        }
    }

    /// Make the cgroup, or join it if it exists (as runc does), with
    /// `resources` set. Missing parents are made too; if anything fails,
    /// whatever this call made is removed again. Dropping the result
    /// removes the cgroup unless [`Manage::keep`] was called.
    pub fn create(&self, resources: &Resources) -> Result<Box<dyn Manage>, Error> {
        self.check(resources)?;
        let resources = resources.effective();
        let mut made = Made::default();
        let cgroup: Box<dyn Manage> = match (&self.legacy[..], &self.unified) {
            ([], Some(base)) => Box::new(v2::V2Cgroup::create_at(
                base, &self.path, &resources, &mut made,
            )?),
            (legacy, unified) => Box::new(v1::V1Cgroup::create_at(
                legacy,
                unified.as_deref(),
                &self.path,
                &resources,
                &mut made,
            )?),
        };
        made.forget(); // it all belongs to the cgroup now
        Ok(cgroup)
    }
}
// ANCHOR_END: target

/// The directories made so far, removed again (deepest first) if the
/// creation fails before [`Made::forget`].
#[derive(Default)]
pub(crate) struct Made(Vec<PathBuf>);

impl Made {
    /// `mkdir` each missing level of `base/path`, parents first, calling
    /// `prepare(parent, child)` once each level is made or found.
    pub(crate) fn path(
        &mut self,
        base: &Path,
        path: &Path,
        mut prepare: impl FnMut(&Path, &Path) -> Result<(), Error>,
    ) -> Result<PathBuf, Error> {
        let mut dir = base.to_path_buf();
        for part in path.components() {
            let child = dir.join(part);
            match std::fs::create_dir(&child) {
                Ok(()) => self.0.push(child.clone()),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io("create cgroup", &child, e)),
            }
            prepare(&dir, &child)?;
            dir = child;
        }
        Ok(dir)
    }

    pub(crate) fn forget(&mut self) {
        self.0.clear();
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        let _ = remove_dirs(&mut self.0);
    }
}

// ANCHOR: open
/// Find a container's cgroup again from the directories it was made of
/// ([`Cgroup::dirs`], written down by whoever made it). The kernel's mount
/// table says which hierarchy each one is in. Dropping the result leaves
/// the cgroup alone; [`Cgroup::remove`] removes it.
pub fn open(dirs: &[PathBuf]) -> Result<Box<dyn Manage>, Error> {
    let mountinfo = read("/proc/self/mountinfo")?;
    let v1_mounts = layout::parse_v1_mounts(&mountinfo);
    let v2_mounts = layout::parse_v2_mounts(&mountinfo);
    for dir in dirs {
        if !dir.join("cgroup.procs").exists() {
            return Err(Error::Other(format!(
                "cgroup {} is gone (or is not a cgroup): its container ended and it was \
                 removed, or it never was made",
                dir.display()
            )));
        }
    }
    let (legacy, unified) = assign(dirs, &v1_mounts, &v2_mounts)?;
    if legacy.is_empty() {
        let dir = unified.ok_or_else(|| Error::Other("no cgroup directories to open".into()))?;
        Ok(Box::new(v2::V2Cgroup::open(dir)))
    } else {
        Ok(Box::new(v1::V1Cgroup::open(legacy, unified)))
    }
}
// ANCHOR_END: open

/// Which hierarchy each directory is in: the cgroup mount with the longest
/// mount point above it. A v1 hierarchy of several controllers gives one
/// entry per controller.
pub fn assign(
    dirs: &[PathBuf],
    v1_mounts: &[layout::V1Mount],
    v2_mounts: &[PathBuf],
) -> Result<v1::Hierarchies, Error> {
    let mut legacy = Vec::new();
    let mut unified = None;
    for dir in dirs {
        let v1 = v1_mounts
            .iter()
            .filter(|m| dir.starts_with(&m.mount_point))
            .max_by_key(|m| m.mount_point.components().count());
        let v2 = v2_mounts
            .iter()
            .filter(|m| dir.starts_with(m))
            .max_by_key(|m| m.components().count());
        let v1_depth = v1.map_or(0, |m| m.mount_point.components().count());
        let v2_depth = v2.map_or(0, |m| m.components().count());
        match (v1, v2) {
            (Some(mount), _) if v1_depth > v2_depth => {
                for controller in &mount.controllers {
                    if let Some(known) = v1::ALL_CONTROLLERS.iter().find(|c| *c == controller) {
                        legacy.push((*known, dir.clone()));
                    }
                }
            }
            (_, Some(_)) if unified.is_none() => unified = Some(dir.clone()),
            _ => {
                return Err(Error::Other(format!(
                    "{} is not in a cgroup hierarchy mounted here (see /proc/self/mountinfo), \
                     or is a second directory in the cgroup2 tree",
                    dir.display()
                )));
            }
        }
    }
    Ok((legacy, unified))
}

/// Every process in the cgroup `dir` and in the cgroups below it.
pub(crate) fn procs_below(dir: &Path, pids: &mut Vec<Pid>) -> Result<(), Error> {
    let procs = read(dir.join("cgroup.procs"))?;
    pids.extend(
        procs
            .lines()
            .filter_map(|l| l.trim().parse::<i32>().ok())
            .map(Pid::from_raw),
    );
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("read cgroup", dir, e))?;
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            match procs_below(&entry.path(), pids) {
                // A cgroup below may go while we look: nobody is in it then.
                Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {}
                other => other?,
            }
        }
    }
    Ok(())
}

/// Wait until `done` holds, checking every few milliseconds, for at most
/// `limit`. Freezing is asynchronous: the kernel stops each task when it
/// next leaves the kernel.
pub(crate) fn wait_until(
    limit: Duration,
    mut done: impl FnMut() -> Result<bool, Error>,
) -> Result<bool, Error> {
    let start = std::time::Instant::now();
    loop {
        if done()? {
            return Ok(true);
        }
        if start.elapsed() > limit {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Write a setting's value, naming the setting if the kernel refuses it.
pub(crate) fn write_setting(
    dir: &Path,
    file: &str,
    value: &str,
    setting: &str,
) -> Result<(), Error> {
    write_control(dir, file, value)
        .map_err(|e| Error::Other(format!("linux.resources.{setting}: {e}")))
}

/// Write a file that only some kernels (or configurations) have; if it is
/// missing, say which setting needs it and why it may be missing.
pub(crate) fn write_optional(
    dir: &Path,
    file: &str,
    value: &str,
    setting: &str,
    why_missing: &str,
) -> Result<(), Error> {
    let path = dir.join(file);
    if !path.exists() {
        return Err(crate::resources::unsupported(
            setting,
            format!("{} does not exist: {why_missing}", path.display()),
        ));
    }
    write_setting(dir, file, value, setting)
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
        // The container may have made cgroups of its own below (a nested
        // engine, systemd): they go first. Only on cgroupfs, where every
        // directory is an (empty, once its processes are gone) cgroup.
        if on_cgroupfs(dir) {
            remove_children(dir)?;
        }
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

/// Remove the cgroups below `dir`.
fn remove_children(dir: &Path) -> Result<(), Error> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(()); // gone already
    };
    let mut children: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    remove_dirs(&mut children) // which removes their children first
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
    fn a_target_has_one_dir_per_hierarchy_and_no_way_up() {
        let target = Target::new(
            Path::new("/cgrouptest"),
            vec![
                ("cpu", "/cg/cpu,cpuacct".into()),
                ("cpuacct", "/cg/cpu,cpuacct".into()),
                ("memory", "/cg/memory".into()),
            ],
            Some("/cg/unified".into()),
        )
        .unwrap();
        assert_eq!(
            target.dirs(),
            [
                Path::new("/cg/cpu,cpuacct/cgrouptest"),
                Path::new("/cg/memory/cgrouptest"),
                Path::new("/cg/unified/cgrouptest"),
            ]
        );
        let v2 = Target::new(Path::new("a/./b"), vec![], Some("/own".into())).unwrap();
        assert_eq!(v2.dirs(), [Path::new("/own/a/b")]);
        for bad in ["../up", "a/../../b", "/", ""] {
            assert!(
                Target::new(Path::new(bad), vec![], Some("/own".into())).is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn recorded_dirs_are_put_back_in_their_hierarchies() {
        let mounts = layout::parse_v1_mounts(
            "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
             32 25 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n",
        );
        let v2 = vec![PathBuf::from("/sys/fs/cgroup/unified")];
        let dirs = [
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/c"),
            PathBuf::from("/sys/fs/cgroup/memory/own/c"),
            PathBuf::from("/sys/fs/cgroup/unified/c"),
        ];
        let (legacy, unified) = assign(&dirs, &mounts, &v2).unwrap();
        assert_eq!(
            legacy,
            [
                ("cpu", dirs[0].clone()),
                ("cpuacct", dirs[0].clone()),
                ("memory", dirs[1].clone()),
            ]
        );
        assert_eq!(unified, Some(dirs[2].clone()));
        // A v2 host: /sys/fs/cgroup itself is the cgroup2 mount.
        let v2_host = vec![PathBuf::from("/sys/fs/cgroup")];
        let (legacy, unified) =
            assign(&[PathBuf::from("/sys/fs/cgroup/x")], &[], &v2_host).unwrap();
        assert!(legacy.is_empty());
        assert_eq!(unified, Some(PathBuf::from("/sys/fs/cgroup/x")));
        assert!(assign(&[PathBuf::from("/tmp/x")], &mounts, &v2).is_err());
    }

    #[test]
    fn a_failed_creation_removes_only_what_it_made() {
        let root = tempfile::tempdir().unwrap();
        let joined = root.path().join("a");
        std::fs::create_dir(&joined).unwrap();
        let mut made = Made::default();
        let leaf = made
            .path(root.path(), Path::new("a/b/c"), |_, _| Ok(()))
            .unwrap();
        assert_eq!(leaf, root.path().join("a/b/c"));
        assert!(leaf.is_dir());
        drop(made); // as if a later step failed
        assert!(!root.path().join("a/b").exists());
        assert!(joined.is_dir(), "a cgroup it joined was removed");
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
