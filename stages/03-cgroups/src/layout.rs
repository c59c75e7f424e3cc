//! Which cgroup file system this host has, and where our own cgroup is in it.
//!
//! - **v2 (unified)**: one tree, a `cgroup2` file system at /sys/fs/cgroup,
//!   every controller in it. Most current distributions.
//! - **v1 (legacy)**: a tmpfs at /sys/fs/cgroup holding one `cgroup` file
//!   system per controller (or group of controllers, like `cpu,cpuacct`),
//!   each a separate tree.
//! - **hybrid**: v1 as above, plus a `cgroup2` at /sys/fs/cgroup/unified that
//!   usually holds no controllers at all. (This workshop's CI machine.)
//!
//! We ask the kernel (`statfs`) instead of guessing from paths.

use std::path::{Path, PathBuf};

use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, TMPFS_MAGIC, statfs};
use stage01_chroot::Error;

pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Unified,
    Legacy { hybrid: bool },
}

// ANCHOR: detect
/// Tell the layouts apart by the file system type of /sys/fs/cgroup.
pub fn detect() -> Result<Layout, Error> {
    let is_cgroup2 =
        |path: &str| statfs(path).map(|fs| fs.filesystem_type() == CGROUP2_SUPER_MAGIC);
    let root = statfs(CGROUP_ROOT).map_err(|e| Error::io("statfs", CGROUP_ROOT, e.into()))?;
    match root.filesystem_type() {
        CGROUP2_SUPER_MAGIC => Ok(Layout::Unified),
        TMPFS_MAGIC => Ok(Layout::Legacy {
            hybrid: is_cgroup2("/sys/fs/cgroup/unified").unwrap_or(false),
        }),
        other => Err(Error::Other(format!(
            "{CGROUP_ROOT} is neither cgroup2 nor a tmpfs of v1 hierarchies (type {other:?}); \
             is the cgroup file system mounted?"
        ))),
    }
}
// ANCHOR_END: detect

/// One line of /proc/self/cgroup: `ID:CONTROLLERS:PATH`. In v2 the ID is 0
/// and the controller list is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub controllers: Vec<String>,
    pub path: PathBuf,
}

pub fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_id, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            Some(Membership {
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(String::from)
                    .collect(),
                path: PathBuf::from(path),
            })
        })
        .collect()
}

/// A mounted v1 hierarchy, from /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Mount {
    pub mount_point: PathBuf,
    /// Which cgroup of the hierarchy is mounted there (usually `/`).
    pub root: PathBuf,
    pub controllers: Vec<String>,
}

pub fn parse_v1_mounts(mountinfo: &str) -> Vec<V1Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fields: Vec<&str> = before.split(' ').collect();
            let mut after = after.split(' ');
            let (fstype, _source, options) = (after.next()?, after.next()?, after.next()?);
            if fstype != "cgroup" {
                return None;
            }
            Some(V1Mount {
                root: PathBuf::from(fields.get(3)?),
                mount_point: PathBuf::from(fields.get(4)?),
                controllers: options.split(',').map(String::from).collect(),
            })
        })
        .collect()
}

/// The mount points of cgroup2 file systems, from /proc/self/mountinfo.
pub fn parse_v2_mounts(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            if after.split(' ').next()? != "cgroup2" {
                return None;
            }
            Some(PathBuf::from(before.split(' ').nth(4)?))
        })
        .collect()
}

/// The directory of our own cgroup in the v1 hierarchy of `controller`.
pub fn v1_own_dir(
    controller: &str,
    memberships: &[Membership],
    mounts: &[V1Mount],
) -> Option<PathBuf> {
    let has = |list: &[String]| list.iter().any(|c| c == controller);
    let member = memberships.iter().find(|m| has(&m.controllers))?;
    let mount = mounts.iter().find(|m| has(&m.controllers))?;
    Some(below(&mount.mount_point, &mount.root, &member.path))
}

/// The directory of our own cgroup in the v2 tree mounted at `mount_point`.
pub fn v2_own_dir(mount_point: &Path, memberships: &[Membership]) -> Option<PathBuf> {
    let member = memberships.iter().find(|m| m.controllers.is_empty())?;
    Some(below(mount_point, Path::new("/"), &member.path))
}

// ANCHOR: v2_containers_dir
/// Where containers' cgroups go in the v2 tree mounted at `mount_point`:
/// beside our own cgroup, in its parent, unless ours is the root.
///
/// Not below our own, as on v1: we are a process in our own cgroup, and a
/// v2 cgroup that holds processes can't hand `memory` (or any controller)
/// to children. Only the root is exempt from this "no internal processes"
/// rule. runc places a relative cgroup path the same way.
pub fn v2_containers_dir(mount_point: &Path, memberships: &[Membership]) -> Option<PathBuf> {
    let member = memberships.iter().find(|m| m.controllers.is_empty())?;
    let parent = member.path.parent().unwrap_or(&member.path); // "/" stays "/"
    Some(below(mount_point, Path::new("/"), parent))
}
// ANCHOR_END: v2_containers_dir

/// `path` is relative to the hierarchy's root; the mount shows `root` of it.
fn below(mount_point: &Path, root: &Path, path: &Path) -> PathBuf {
    let relative = path.strip_prefix(root).unwrap_or(path);
    let relative = relative.strip_prefix("/").unwrap_or(relative);
    mount_point.join(relative)
}

/// Our own memberships, read from the kernel.
pub fn own_memberships() -> Result<Vec<Membership>, Error> {
    let text = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| Error::io("read", "/proc/self/cgroup", e))?;
    Ok(parse_proc_cgroup(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_CGROUP: &str =
        "4:memory:/process_api/abc\n2:cpu,cpuacct:/\n1:name=systemd:/\n0::/\n";
    const MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
31 25 0:27 / /sys/fs/cgroup/memory rw,relatime shared:10 - cgroup cgroup rw,memory
32 25 0:28 / /sys/fs/cgroup/unified rw,relatime shared:11 - cgroup2 cgroup2 rw
33 25 0:29 /sub /mnt/pids rw,relatime shared:12 - cgroup cgroup rw,pids
";

    #[test]
    fn proc_self_cgroup_lines() {
        let members = parse_proc_cgroup(HYBRID_CGROUP);
        assert_eq!(members[1].controllers, ["cpu", "cpuacct"]);
        assert_eq!(members[0].path, Path::new("/process_api/abc"));
        assert!(members[3].controllers.is_empty());
    }

    #[test]
    fn v1_dirs_follow_our_own_cgroup_in_each_hierarchy() {
        let members = parse_proc_cgroup(HYBRID_CGROUP);
        let mounts = parse_v1_mounts(MOUNTINFO);
        assert_eq!(mounts.len(), 3, "the cgroup2 mount is not a v1 hierarchy");
        assert_eq!(
            v1_own_dir("memory", &members, &mounts).unwrap(),
            Path::new("/sys/fs/cgroup/memory/process_api/abc")
        );
        assert_eq!(
            v1_own_dir("cpuacct", &members, &mounts).unwrap(),
            Path::new("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(v1_own_dir("blkio", &members, &mounts), None);
    }

    #[test]
    fn a_mount_of_a_sub_cgroup_is_accounted_for() {
        let members = parse_proc_cgroup("5:pids:/sub/ours\n");
        let mounts = parse_v1_mounts(MOUNTINFO);
        assert_eq!(
            v1_own_dir("pids", &members, &mounts).unwrap(),
            Path::new("/mnt/pids/ours")
        );
    }

    #[test]
    fn cgroup2_mounts_are_found_apart() {
        assert_eq!(
            parse_v2_mounts(MOUNTINFO),
            [Path::new("/sys/fs/cgroup/unified")]
        );
    }

    #[test]
    fn v2_dir_is_the_zero_line() {
        let members = parse_proc_cgroup("0::/user.slice/session-1.scope\n");
        assert_eq!(
            v2_own_dir(Path::new("/sys/fs/cgroup"), &members).unwrap(),
            Path::new("/sys/fs/cgroup/user.slice/session-1.scope")
        );
    }

    #[test]
    fn v2_containers_go_beside_our_own_cgroup_not_below_it() {
        let root = Path::new("/sys/fs/cgroup");
        let in_a_session = parse_proc_cgroup("0::/user.slice/session-1.scope\n");
        assert_eq!(
            v2_containers_dir(root, &in_a_session).unwrap(),
            Path::new("/sys/fs/cgroup/user.slice"),
            "our own cgroup holds us: it can't hand memory to a child"
        );
        // The root cgroup may hold processes and hand out controllers.
        let in_the_root = parse_proc_cgroup("0::/\n");
        assert_eq!(v2_containers_dir(root, &in_the_root).unwrap(), root);
        // A hybrid host's v1 lines have no say.
        let hybrid = parse_proc_cgroup(HYBRID_CGROUP);
        assert_eq!(v2_containers_dir(root, &hybrid).unwrap(), root);
        assert_eq!(
            v2_containers_dir(root, &parse_proc_cgroup("4:memory:/a\n")),
            None
        );
    }
}
