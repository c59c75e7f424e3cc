//! The cgroup v1 backend (legacy and hybrid hosts): one tree per controller,
//! so one directory per controller for each container.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::Pid;
use stage01_chroot::Error;

use crate::cgroup::{
    Cgroup, Usage, make_cgroup_dir, read_key, read_number, remove_dirs, write_control,
};
use crate::limits::Limits;

/// The hierarchies a container gets a directory in.
pub const CONTROLLERS: &[&str] = &["memory", "cpu", "cpuacct", "pids"];

pub struct V1Cgroup {
    /// (controller, its directory); co-mounted controllers share one.
    dirs: Vec<(&'static str, PathBuf)>,
}

// ANCHOR: create
impl V1Cgroup {
    /// Make `name` below each `(controller, our own cgroup's directory)`.
    pub fn create(
        parents: &[(&'static str, PathBuf)],
        name: &str,
        limits: &Limits,
    ) -> Result<Self, Error> {
        let mut cgroup = V1Cgroup { dirs: Vec::new() }; // drop removes what we made
        for (controller, parent) in parents {
            let dir = parent.join(name);
            if !cgroup.dirs.iter().any(|(_, d)| *d == dir) {
                make_cgroup_dir(&dir)?;
            }
            cgroup.dirs.push((controller, dir));
        }
        cgroup.apply(limits)?;
        Ok(cgroup)
    }

    fn apply(&self, limits: &Limits) -> Result<(), Error> {
        if let Some(bytes) = limits.memory {
            let dir = self.dir_of("memory")?;
            write_control(dir, "memory.limit_in_bytes", &bytes.to_string())?;
            // memory+swap at the same limit: no swap beyond it. The file is
            // there only when the kernel accounts swap.
            if dir.join("memory.memsw.limit_in_bytes").exists() {
                write_control(dir, "memory.memsw.limit_in_bytes", &bytes.to_string())?;
            }
        }
        if let Some(cpu) = limits.cpu {
            let dir = self.dir_of("cpu")?;
            write_control(dir, "cpu.cfs_period_us", &cpu.period_us.to_string())?;
            write_control(dir, "cpu.cfs_quota_us", &cpu.quota_us.to_string())?;
        }
        if let Some(pids) = limits.pids {
            write_control(self.dir_of("pids")?, "pids.max", &pids.to_string())?;
        }
        Ok(())
    }
}
// ANCHOR_END: create

impl V1Cgroup {
    fn dir_of(&self, controller: &str) -> Result<&Path, Error> {
        self.dirs
            .iter()
            .find(|(c, _)| *c == controller)
            .map(|(_, dir)| dir.as_path())
            .ok_or_else(|| {
                Error::Other(format!(
                    "no cgroup v1 hierarchy with the {controller} controller is mounted \
                     (see /proc/self/mountinfo); the limit can't be applied"
                ))
            })
    }

    fn unique_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (_, dir) in &self.dirs {
            if !dirs.contains(dir) {
                dirs.push(dir.clone());
            }
        }
        dirs
    }
}

impl Cgroup for V1Cgroup {
    fn dirs(&self) -> Vec<PathBuf> {
        self.unique_dirs()
    }

    fn add_process(&self, pid: Pid) -> Result<(), Error> {
        for dir in self.unique_dirs() {
            write_control(&dir, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    fn usage(&self) -> Result<Usage, Error> {
        let mut usage = Usage::default();
        if let Ok(dir) = self.dir_of("cpuacct") {
            usage.cpu_time = Duration::from_nanos(read_number(dir.join("cpuacct.usage"))?);
        }
        if let Ok(dir) = self.dir_of("memory") {
            usage.memory_peak = Some(read_number(dir.join("memory.max_usage_in_bytes"))?);
            // Kernels since 4.13 count OOM kills; older ones only count how
            // often the limit was hit (failcnt), which is not a kill.
            usage.oom_kills = read_key(dir.join("memory.oom_control"), "oom_kill")?.unwrap_or(0);
        }
        if let Ok(dir) = self.dir_of("pids") {
            usage.pids_refused = read_key(dir.join("pids.events"), "max")?.unwrap_or(0);
        }
        Ok(usage)
    }

    fn remove(&mut self) -> Result<(), Error> {
        let mut dirs = self.unique_dirs();
        let result = remove_dirs(&mut dirs);
        self.dirs.retain(|(_, dir)| dirs.contains(dir));
        result
    }
}

impl Drop for V1Cgroup {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::CpuQuota;

    fn file(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name)).unwrap()
    }

    #[test]
    fn writes_each_limit_in_its_own_hierarchy() {
        let root = tempfile::tempdir().unwrap();
        let parent = |c: &str| {
            let dir = root.path().join(c).join("own");
            std::fs::create_dir_all(&dir).unwrap();
            dir
        };
        // cpu and cpuacct co-mounted, as on most v1 hosts.
        let parents = vec![
            ("memory", parent("memory")),
            ("cpu", parent("cpu,cpuacct")),
            ("cpuacct", parent("cpu,cpuacct")),
            ("pids", parent("pids")),
        ];
        let limits = Limits {
            memory: Some(32 << 20),
            cpu: Some(CpuQuota {
                quota_us: 50_000,
                period_us: 100_000,
            }),
            pids: Some(20),
        };
        let cgroup = V1Cgroup::create(&parents, "berth-t", &limits).unwrap();
        cgroup.add_process(Pid::from_raw(77)).unwrap();

        let memory = root.path().join("memory/own/berth-t");
        let cpu = root.path().join("cpu,cpuacct/own/berth-t");
        let pids = root.path().join("pids/own/berth-t");
        assert_eq!(cgroup.dirs(), [memory.clone(), cpu.clone(), pids.clone()]);
        assert_eq!(file(&memory, "memory.limit_in_bytes"), "33554432");
        assert!(
            !memory.join("memory.memsw.limit_in_bytes").exists(),
            "no swap accounting here"
        );
        assert_eq!(file(&cpu, "cpu.cfs_period_us"), "100000");
        assert_eq!(file(&cpu, "cpu.cfs_quota_us"), "50000");
        assert_eq!(file(&pids, "pids.max"), "20");
        for dir in [&memory, &cpu, &pids] {
            assert_eq!(file(dir, "cgroup.procs"), "77");
        }
        std::mem::forget(cgroup); // the tempdir cleans up the fake files
    }

    #[test]
    fn a_limit_without_its_hierarchy_is_refused_and_cleaned_up() {
        let root = tempfile::tempdir().unwrap();
        let parents = vec![("memory", root.path().to_path_buf())];
        let limits = Limits {
            pids: Some(20),
            ..Limits::default()
        };
        let err = V1Cgroup::create(&parents, "berth-t", &limits)
            .err()
            .unwrap();
        assert!(err.to_string().contains("pids controller"), "{err}");
        assert!(
            !root.path().join("berth-t").exists(),
            "left a cgroup behind"
        );
    }

    #[test]
    fn usage_comes_from_cpuacct_and_oom_control() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().to_path_buf();
        std::fs::write(dir.join("cpuacct.usage"), "1500000000\n").unwrap();
        std::fs::write(dir.join("memory.max_usage_in_bytes"), "1024\n").unwrap();
        std::fs::write(
            dir.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        std::fs::write(dir.join("pids.events"), "max 7\n").unwrap();
        let cgroup = V1Cgroup {
            dirs: vec![
                ("memory", dir.clone()),
                ("cpuacct", dir.clone()),
                ("pids", dir),
            ],
        };
        let usage = cgroup.usage().unwrap();
        std::mem::forget(cgroup);
        assert_eq!(usage.cpu_time, Duration::from_millis(1500));
        assert_eq!(
            (usage.memory_peak, usage.oom_kills, usage.pids_refused),
            (Some(1024), 2, 7)
        );
    }
}
