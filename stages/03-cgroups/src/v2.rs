//! The cgroup v2 backend: one tree, one directory per container.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::Pid;
use stage01_chroot::Error;

use crate::cgroup::{Cgroup, Usage, make_cgroup_dir, read, read_key, remove_dirs, write_control};
use crate::limits::Limits;

pub struct V2Cgroup {
    dirs: Vec<PathBuf>,
}

// ANCHOR: create
impl V2Cgroup {
    /// Make `parent/name` with `limits`. A v2 controller works in a cgroup
    /// only if its parent lists it in `cgroup.subtree_control`, so enable
    /// the ones we need there first.
    pub fn create(parent: &Path, name: &str, limits: &Limits) -> Result<Self, Error> {
        enable_controllers(parent, &controllers_for(limits))?;
        let dir = parent.join(name);
        make_cgroup_dir(&dir)?;
        let cgroup = V2Cgroup { dirs: vec![dir] }; // from here on, drop removes it
        cgroup.apply(limits)?;
        Ok(cgroup)
    }

    fn apply(&self, limits: &Limits) -> Result<(), Error> {
        let dir = &self.dirs[0];
        if let Some(bytes) = limits.memory {
            write_control(dir, "memory.max", &bytes.to_string())?;
            // No swapping past the limit (the file exists when swap is accounted).
            if dir.join("memory.swap.max").exists() {
                write_control(dir, "memory.swap.max", "0")?;
            }
        }
        if let Some(cpu) = limits.cpu {
            write_control(
                dir,
                "cpu.max",
                &format!("{} {}", cpu.quota_us, cpu.period_us),
            )?;
        }
        if let Some(pids) = limits.pids {
            write_control(dir, "pids.max", &pids.to_string())?;
        }
        Ok(())
    }
}
// ANCHOR_END: create

impl Cgroup for V2Cgroup {
    fn dirs(&self) -> Vec<PathBuf> {
        self.dirs.clone()
    }

    fn add_process(&self, pid: Pid) -> Result<(), Error> {
        write_control(&self.dirs[0], "cgroup.procs", &pid.to_string())
    }

    fn usage(&self) -> Result<Usage, Error> {
        let dir = &self.dirs[0];
        let optional = |file: &str, key: &str| -> Result<u64, Error> {
            let path = dir.join(file);
            Ok(if path.exists() {
                read_key(path, key)?.unwrap_or(0)
            } else {
                0
            })
        };
        Ok(Usage {
            cpu_time: Duration::from_micros(
                read_key(dir.join("cpu.stat"), "usage_usec")?.unwrap_or(0),
            ),
            memory_peak: read(dir.join("memory.peak"))
                .ok()
                .and_then(|s| s.trim().parse().ok()),
            oom_kills: optional("memory.events", "oom_kill")?,
            pids_refused: optional("pids.events", "max")?,
        })
    }

    fn remove(&mut self) -> Result<(), Error> {
        remove_dirs(&mut self.dirs)
    }
}

impl Drop for V2Cgroup {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

/// The controllers `limits` need.
fn controllers_for(limits: &Limits) -> Vec<&'static str> {
    [
        (limits.memory.is_some(), "memory"),
        (limits.cpu.is_some(), "cpu"),
        (limits.pids.is_some(), "pids"),
    ]
    .into_iter()
    .filter_map(|(needed, controller)| needed.then_some(controller))
    .collect()
}

fn enable_controllers(parent: &Path, needed: &[&str]) -> Result<(), Error> {
    if needed.is_empty() {
        return Ok(());
    }
    let available = read(parent.join("cgroup.controllers"))?;
    let available: Vec<&str> = available.split_whitespace().collect();
    if let Some(missing) = needed.iter().find(|c| !available.contains(c)) {
        return Err(Error::Other(format!(
            "the cgroup v2 controller {missing:?} is not available in {} (it lists: {}); \
             on a hybrid host it is bound to a v1 hierarchy, elsewhere enable it in the \
             parent cgroups' cgroup.subtree_control",
            parent.join("cgroup.controllers").display(),
            available.join(" ")
        )));
    }
    let enable: Vec<String> = needed.iter().map(|c| format!("+{c}")).collect();
    write_control(parent, "cgroup.subtree_control", &enable.join(" ")).map_err(|err| {
        Error::Other(format!(
            "{err}. A v2 cgroup that holds processes can't hand controllers to children \
             (the \"no internal processes\" rule): start berth from a cgroup of its own, \
             e.g. with systemd-run --scope -p Delegate=yes"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::CpuQuota;

    /// A directory that looks like a v2 cgroup to our code: the files the
    /// kernel would have made, as plain files.
    fn fake_parent(controllers: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.controllers"), controllers).unwrap();
        std::fs::write(dir.path().join("cgroup.subtree_control"), "").unwrap();
        dir
    }

    fn file(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name)).unwrap()
    }

    #[test]
    fn writes_exactly_the_limit_files() {
        let parent = fake_parent("cpuset cpu io memory hugetlb pids rdma misc");
        let limits = Limits {
            memory: Some(64 << 20),
            cpu: Some(CpuQuota {
                quota_us: 50_000,
                period_us: 100_000,
            }),
            pids: Some(20),
        };
        let child = parent.path().join("berth-test");
        // The kernel fills a new cgroup directory with control files; of
        // those, apply() checks only for memory.swap.max, so fake that one.
        enable_controllers(parent.path(), &controllers_for(&limits)).unwrap();
        make_cgroup_dir(&child).unwrap();
        std::fs::write(child.join("memory.swap.max"), "max").unwrap();
        let mut cgroup = V2Cgroup {
            dirs: vec![child.clone()],
        };
        cgroup.apply(&limits).unwrap();
        cgroup.add_process(Pid::from_raw(4242)).unwrap();

        assert_eq!(
            file(parent.path(), "cgroup.subtree_control"),
            "+memory +cpu +pids"
        );
        assert_eq!(file(&child, "memory.max"), "67108864");
        assert_eq!(file(&child, "memory.swap.max"), "0");
        assert_eq!(file(&child, "cpu.max"), "50000 100000");
        assert_eq!(file(&child, "pids.max"), "20");
        assert_eq!(file(&child, "cgroup.procs"), "4242");
        cgroup.dirs.clear(); // the fake dir has files in it; the tempdir cleans up
    }

    #[test]
    fn no_limits_touch_no_controller() {
        let parent = fake_parent("memory");
        let cgroup = V2Cgroup::create(parent.path(), "berth-x", &Limits::default()).unwrap();
        assert_eq!(file(parent.path(), "cgroup.subtree_control"), "");
        assert_eq!(std::fs::read_dir(&cgroup.dirs[0]).unwrap().count(), 0);
    }

    #[test]
    fn a_missing_controller_is_named_and_nothing_is_made() {
        let parent = fake_parent("hugetlb");
        let limits = Limits {
            pids: Some(5),
            ..Limits::default()
        };
        let err = V2Cgroup::create(parent.path(), "berth-x", &limits)
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("\"pids\" is not available"),
            "{err}"
        );
        assert!(!parent.path().join("berth-x").exists());
    }

    #[test]
    fn usage_comes_from_cpu_stat_memory_events_and_pids_events() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cpu.stat"),
            "usage_usec 1500000\nuser_usec 1000000\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("pids.events"), "max 12\n").unwrap();
        std::fs::write(dir.path().join("memory.peak"), "33554432\n").unwrap();
        let cgroup = V2Cgroup {
            dirs: vec![dir.path().to_path_buf()],
        };
        let usage = cgroup.usage().unwrap();
        std::mem::forget(cgroup); // don't rmdir the tempdir
        assert_eq!(
            usage,
            Usage {
                cpu_time: Duration::from_millis(1500),
                memory_peak: Some(32 << 20),
                oom_kills: 1,
                pids_refused: 12
            }
        );
    }
}
