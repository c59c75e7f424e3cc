//! The cgroup v1 backend (legacy and hybrid hosts): one tree per controller,
//! so one directory per controller for each container.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::Pid;
use stage01_chroot::Error;

use crate::cgroup::{
    Cgroup, Made, Manage, Usage, make_cgroup_dir, procs_below, read, read_key, read_number,
    remove_dirs, wait_until, write_control, write_optional, write_setting,
};
use crate::limits::Limits;
use crate::resources::{
    self, BlockIo, Cpu, Hugepage, Memory, Network, Rdma, Resources, unsupported,
};
use crate::v2;

/// The hierarchies a container gets a directory in.
pub const CONTROLLERS: &[&str] = &["memory", "cpu", "cpuacct", "pids"];

/// Every v1 controller an OCI container gets a directory for, where it is
/// mounted, as runc does. `cpuset` comes first: its directories need
/// filling in before anything joins them (see [`init_cpuset`]).
pub const ALL_CONTROLLERS: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
    "rdma",
    "misc",
];

/// Each v1 hierarchy's (controller, directory), and on a hybrid host the
/// directory in the cgroup2 tree.
pub type Hierarchies = (Vec<(&'static str, PathBuf)>, Option<PathBuf>);

#[derive(Default)]
pub struct V1Cgroup {
    /// (controller, its directory); co-mounted controllers share one.
    dirs: Vec<(&'static str, PathBuf)>,
    /// On a hybrid host, its directory in the cgroup2 tree too.
    unified: Option<PathBuf>,
    /// Leave the directories when dropped.
    keep: bool,
}

// ANCHOR: create
impl V1Cgroup {
    /// Make `name` below each `(controller, our own cgroup's directory)`.
    pub fn create(
        parents: &[(&'static str, PathBuf)],
        name: &str,
        limits: &Limits,
    ) -> Result<Self, Error> {
        let mut cgroup = V1Cgroup::default(); // drop removes what we made
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
        // ANCHOR: exercise_v1_limits
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
        // ANCHOR_END: exercise_v1_limits
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

    /// The directory for `controller`, or an error naming `setting`.
    fn dir_for(&self, controller: &str, setting: &str) -> Result<&Path, Error> {
        self.dir_of(controller)
            .map_err(|_| unsupported(setting, no_controller(controller)))
    }

    fn unique_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for dir in self.dirs.iter().map(|(_, dir)| dir).chain(&self.unified) {
            if !dirs.contains(dir) {
                dirs.push(dir.clone());
            }
        }
        dirs
    }
}

// ANCHOR: create_at
impl V1Cgroup {
    /// Make (or join) `path` below each hierarchy's base, and on a hybrid
    /// host below the cgroup2 base too, then set `resources`.
    pub(crate) fn create_at(
        legacy: &[(&'static str, PathBuf)],
        unified: Option<&Path>,
        path: &Path,
        resources: &Resources,
        made: &mut Made,
    ) -> Result<Self, Error> {
        // Kept while being made: on failure `made` removes only what this
        // call made, not a cgroup it joined.
        let mut cgroup = V1Cgroup::open(Vec::new(), None);
        for (controller, base) in legacy {
            let dir = base.join(path);
            if !cgroup.dirs.iter().any(|(_, d)| *d == dir) {
                // A directory shared with cpuset (co-mounted) needs its setup.
                let cpuset = legacy.iter().any(|(c, b)| *c == "cpuset" && b == base);
                made.path(base, path, |parent, child| {
                    if cpuset {
                        init_cpuset(parent, child)?;
                    }
                    Ok(())
                })?;
            }
            cgroup.dirs.push((controller, dir));
        }
        if let Some(base) = unified {
            let needed = cgroup.needed_in_unified(resources);
            let dir = made.path(base, path, |parent, _| {
                v2::enable_controllers(parent, &needed)
            })?;
            cgroup.unified = Some(dir);
        }
        cgroup.set(resources)?;
        cgroup.keep = false;
        Ok(cgroup)
    }

    /// A cgroup found again by [`open`](crate::cgroup::open).
    pub(crate) fn open(dirs: Vec<(&'static str, PathBuf)>, unified: Option<PathBuf>) -> Self {
        V1Cgroup {
            dirs,
            unified,
            keep: true,
        }
    }
}

/// A new v1 cpuset cgroup starts with no CPUs and no memory nodes, and the
/// kernel refuses to put a process in it until it has some: copy them from
/// the parent (the cpuset request itself is written later).
pub fn init_cpuset(parent: &Path, child: &Path) -> Result<(), Error> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        // (A file that isn't there is empty too: in the unit tests' fake tree.)
        let own = std::fs::read_to_string(child.join(file)).unwrap_or_default();
        if own.trim().is_empty() {
            let inherited = read(parent.join(file))?;
            write_control(child, file, inherited.trim())?;
        }
    }
    Ok(())
}
// ANCHOR_END: create_at

impl V1Cgroup {
    /// The controllers this cgroup uses in the cgroup2 tree of a hybrid
    /// host: those `resources` need that no v1 hierarchy has.
    fn needed_in_unified(&self, r: &Resources) -> Vec<&'static str> {
        let mut needed = Vec::new();
        if !r.hugepages.is_empty() && self.dir_of("hugetlb").is_err() {
            needed.push("hugetlb");
        }
        if !r.rdma.is_empty() && self.dir_of("rdma").is_err() {
            needed.push("rdma");
        }
        for key in r.unified.keys() {
            if let Ok(c) = resources::check_unified_key(key)
                && let Some(c) = v2::V2_CONTROLLERS.iter().find(|v| **v == c)
                && !needed.contains(c)
            {
                needed.push(c);
            }
        }
        needed
    }

    // ANCHOR: set
    /// Write every setting of `resources` to the file that holds it.
    fn set(&self, r: &Resources) -> Result<(), Error> {
        self.set_cpu(&r.cpu)?;
        self.set_memory(&r.memory)?;
        if let Some(limit) = r.pids {
            let dir = self.dir_for("pids", "pids")?;
            write_setting(dir, "pids.max", &resources::v2_limit(limit), "pids.limit")?;
        }
        self.set_block_io(&r.block_io)?;
        self.set_hugepages(&r.hugepages)?;
        self.set_network(&r.network)?;
        if !r.devices.is_empty() {
            // In order: each rule adds to or takes from what the ones
            // before it allowed, as the spec says.
            let dir = self.dir_for("devices", "devices")?;
            for rule in &r.devices {
                let file = if rule.allow {
                    "devices.allow"
                } else {
                    "devices.deny"
                };
                for line in rule.v1_lines()? {
                    write_setting(dir, file, &line, "devices")?;
                }
            }
        }
        self.set_rdma(&r.rdma)?;
        if !r.unified.is_empty() {
            let dir = self.unified.as_deref().ok_or_else(|| {
                unsupported(
                    "unified",
                    "this host has cgroup v1 only, with no cgroup2 tree",
                )
            })?;
            v2::set_unified(dir, &r.unified)?;
        }
        Ok(())
    }
    // ANCHOR_END: set

    fn set_cpu(&self, cpu: &Cpu) -> Result<(), Error> {
        if let Some(shares) = cpu.shares {
            let dir = self.dir_for("cpu", "cpu.shares")?;
            write_setting(dir, "cpu.shares", &shares.to_string(), "cpu.shares")?;
        }
        if cpu.quota.is_some() || cpu.period.is_some() {
            let dir = self.dir_for("cpu", "cpu.quota")?;
            // The kernel checks quota/period against the parent's at every
            // write, so a new period can be refused until the new quota is
            // in: then write the period again after it (runc does the same).
            let mut period_again = None;
            if let Some(period) = cpu.period {
                let value = period.to_string();
                match write_setting(dir, "cpu.cfs_period_us", &value, "cpu.period") {
                    Ok(()) => {}
                    Err(_) if cpu.quota.is_some() => period_again = Some(value),
                    Err(e) => return Err(e),
                }
            }
            if let Some(quota) = cpu.quota {
                let value = if quota < 0 { -1 } else { quota };
                write_setting(dir, "cpu.cfs_quota_us", &value.to_string(), "cpu.quota")?;
            }
            if let Some(value) = period_again {
                write_setting(dir, "cpu.cfs_period_us", &value, "cpu.period")?;
            }
        }
        if let Some(burst) = cpu.burst {
            let dir = self.dir_for("cpu", "cpu.burst")?;
            write_optional(
                dir,
                "cpu.cfs_burst_us",
                &burst.to_string(),
                "cpu.burst",
                "CPU burst needs Linux 5.14",
            )?;
        }
        if let Some(idle) = cpu.idle {
            let dir = self.dir_for("cpu", "cpu.idle")?;
            let hint = "idle groups need Linux 5.15";
            write_optional(dir, "cpu.idle", &idle.to_string(), "cpu.idle", hint)?;
        }
        // The period first: the kernel checks runtime <= period.
        let realtime = "realtime groups need a kernel built with CONFIG_RT_GROUP_SCHED";
        if let Some(period) = cpu.realtime_period {
            let dir = self.dir_for("cpu", "cpu.realtimePeriod")?;
            let value = period.to_string();
            write_optional(
                dir,
                "cpu.rt_period_us",
                &value,
                "cpu.realtimePeriod",
                realtime,
            )?;
        }
        if let Some(runtime) = cpu.realtime_runtime {
            let dir = self.dir_for("cpu", "cpu.realtimeRuntime")?;
            let value = runtime.to_string();
            write_optional(
                dir,
                "cpu.rt_runtime_us",
                &value,
                "cpu.realtimeRuntime",
                realtime,
            )
            .map_err(|e| {
                Error::Other(format!(
                    "{e} (a group's realtime runtime comes out of its parent's: every \
                         cgroup above it needs cpu.rt_runtime_us at least as large)"
                ))
            })?;
        }
        for (value, file, setting) in [
            (&cpu.cpus, "cpuset.cpus", "cpu.cpus"),
            (&cpu.mems, "cpuset.mems", "cpu.mems"),
        ] {
            if let Some(value) = value {
                write_setting(self.dir_for("cpuset", setting)?, file, value, setting)?;
            }
        }
        Ok(())
    }

    fn set_memory(&self, m: &Memory) -> Result<(), Error> {
        if *m == Memory::default() {
            return Ok(());
        }
        let dir = self.dir_for("memory", "memory")?;
        let limit_file = "memory.limit_in_bytes";
        let swap_file = "memory.memsw.limit_in_bytes";
        let no_swap_accounting = "this kernel does not account swap (boot it with swapaccount=1)";
        let mut swap = m.swap;
        // No memory limit means no memory+swap limit either (as runc reads it).
        if m.limit == Some(-1) && swap.is_none() && dir.join(swap_file).exists() {
            swap = Some(-1);
        }
        let write_limit =
            |limit: i64| write_setting(dir, limit_file, &limit.to_string(), "memory.limit");
        let write_swap = |swap: i64| {
            let value = swap.to_string();
            write_optional(dir, swap_file, &value, "memory.swap", no_swap_accounting)
        };
        match (m.limit, swap) {
            (Some(limit), Some(swap)) => {
                let current = read_number(dir.join(limit_file))?;
                if swap_first(current, swap) {
                    write_swap(swap)?;
                    write_limit(limit)?;
                } else {
                    write_limit(limit)?;
                    write_swap(swap)?;
                }
            }
            (Some(limit), None) => write_limit(limit)?,
            (None, Some(swap)) => write_swap(swap)?,
            (None, None) => {}
        }
        if let Some(reservation) = m.reservation {
            let value = reservation.to_string();
            write_setting(
                dir,
                "memory.soft_limit_in_bytes",
                &value,
                "memory.reservation",
            )?;
        }
        // Linux 6.x still has this file but ignores what is written to it.
        if let Some(kernel) = m.kernel
            && dir.join("memory.kmem.limit_in_bytes").exists()
        {
            let value = kernel.to_string();
            write_setting(dir, "memory.kmem.limit_in_bytes", &value, "memory.kernel")?;
        }
        if let Some(tcp) = m.kernel_tcp {
            write_optional(
                dir,
                "memory.kmem.tcp.limit_in_bytes",
                &tcp.to_string(),
                "memory.kernelTCP",
                "this kernel has no TCP buffer accounting",
            )?;
        }
        if let Some(swappiness) = m.swappiness {
            let value = swappiness.to_string();
            write_setting(dir, "memory.swappiness", &value, "memory.swappiness")?;
        }
        if let Some(disable) = m.disable_oom_killer {
            let value = if disable { "1" } else { "0" };
            write_setting(dir, "memory.oom_control", value, "memory.disableOOMKiller")?;
        }
        Ok(())
    }

    fn set_block_io(&self, b: &BlockIo) -> Result<(), Error> {
        if *b == BlockIo::default() {
            return Ok(());
        }
        let dir = self.dir_for("blkio", "blockIO")?;
        // CFQ gave blkio.weight; since Linux 5.0 only BFQ has weights, in
        // blkio.bfq.weight (the same range), and only while a disk uses it.
        let weights = |plain: &'static str, bfq: &'static str, setting: &str| {
            [plain, bfq]
                .into_iter()
                .find(|f| dir.join(f).exists())
                .ok_or_else(|| {
                    unsupported(
                        setting,
                        format!(
                            "{} has neither {plain} nor {bfq}: block I/O weights need the BFQ \
                             I/O scheduler (see /sys/block/*/queue/scheduler)",
                            dir.display()
                        ),
                    )
                })
        };
        let no_leaf = "leaf weights came with the CFQ I/O scheduler, which Linux 5.0 removed";
        if let Some(weight) = b.weight {
            let file = weights("blkio.weight", "blkio.bfq.weight", "blockIO.weight")?;
            write_setting(dir, file, &weight.to_string(), "blockIO.weight")?;
        }
        if let Some(weight) = b.leaf_weight {
            let value = weight.to_string();
            write_optional(
                dir,
                "blkio.leaf_weight",
                &value,
                "blockIO.leafWeight",
                no_leaf,
            )?;
        }
        for device in &b.weight_devices {
            let setting = "blockIO.weightDevice";
            if let Some(weight) = device.weight {
                let file = weights("blkio.weight_device", "blkio.bfq.weight_device", setting)?;
                let line = format!("{}:{} {weight}", device.major, device.minor);
                write_setting(dir, file, &line, setting)
                    .map_err(|e| on_device(e, device.major, device.minor))?;
            }
            if let Some(weight) = device.leaf_weight {
                let line = format!("{}:{} {weight}", device.major, device.minor);
                write_optional(dir, "blkio.leaf_weight_device", &line, setting, no_leaf)
                    .map_err(|e| on_device(e, device.major, device.minor))?;
            }
        }
        for (throttles, file, setting) in [
            (
                &b.throttle_read_bps,
                "blkio.throttle.read_bps_device",
                "blockIO.throttleReadBpsDevice",
            ),
            (
                &b.throttle_write_bps,
                "blkio.throttle.write_bps_device",
                "blockIO.throttleWriteBpsDevice",
            ),
            (
                &b.throttle_read_iops,
                "blkio.throttle.read_iops_device",
                "blockIO.throttleReadIOPSDevice",
            ),
            (
                &b.throttle_write_iops,
                "blkio.throttle.write_iops_device",
                "blockIO.throttleWriteIOPSDevice",
            ),
        ] {
            for t in throttles {
                let line = format!("{}:{} {}", t.major, t.minor, t.rate);
                let hint = "this kernel has no block I/O throttling";
                write_optional(dir, file, &line, setting, hint)
                    .map_err(|e| on_device(e, t.major, t.minor))?;
            }
        }
        Ok(())
    }

    fn set_hugepages(&self, pages: &[Hugepage]) -> Result<(), Error> {
        if pages.is_empty() {
            return Ok(());
        }
        let Ok(dir) = self.dir_of("hugetlb") else {
            // Hybrid hosts may have hugetlb in the cgroup2 tree instead.
            return match &self.unified {
                Some(dir) => v2::set_hugepages(dir, pages),
                None => Err(unsupported("hugepageLimits", no_controller("hugetlb"))),
            };
        };
        for page in pages {
            let limit = page.limit.to_string();
            let file = format!("hugetlb.{}.limit_in_bytes", page.page_size);
            let hint = "the page size is not one this host has";
            write_optional(dir, &file, &limit, "hugepageLimits", hint)?;
            // Reserved pages count too, where the kernel tracks them (5.7+).
            let reserved = format!("hugetlb.{}.rsvd.limit_in_bytes", page.page_size);
            if dir.join(&reserved).exists() {
                write_setting(dir, &reserved, &limit, "hugepageLimits")?;
            }
        }
        Ok(())
    }

    fn set_network(&self, network: &Network) -> Result<(), Error> {
        if let Some(class_id) = network.class_id {
            let dir = self.dir_for("net_cls", "network.classID")?;
            write_setting(
                dir,
                "net_cls.classid",
                &class_id.to_string(),
                "network.classID",
            )?;
        }
        for p in &network.priorities {
            let dir = self.dir_for("net_prio", "network.priorities")?;
            let line = format!("{} {}", p.interface, p.priority);
            write_setting(dir, "net_prio.ifpriomap", &line, "network.priorities")?;
        }
        Ok(())
    }

    fn set_rdma(&self, rdma: &[Rdma]) -> Result<(), Error> {
        if rdma.is_empty() {
            return Ok(());
        }
        let dir = match (self.dir_of("rdma"), &self.unified) {
            (Ok(dir), _) => dir,
            (Err(_), Some(dir)) => dir.as_path(),
            (Err(_), None) => return Err(unsupported("rdma", no_controller("rdma"))),
        };
        v2::set_rdma(dir, rdma)
    }
}

/// The kernel keeps memory <= memory+swap after every write: when the new
/// memory+swap is above the memory limit in place, write it first (room
/// for the new memory limit); otherwise write the memory limit first.
fn swap_first(current_limit: u64, swap: i64) -> bool {
    swap < 0 || current_limit < swap as u64
}

/// Why a setting can't be honoured on a v1 host without `controller`.
fn no_controller(controller: &str) -> String {
    format!(
        "this host has no {controller} controller (no cgroup v1 hierarchy of it is mounted; \
         see /proc/self/mountinfo)"
    )
}

/// A per-device write failed: the device may not exist here.
fn on_device(error: Error, major: i64, minor: i64) -> Error {
    Error::Other(format!(
        "{error} (is {major}:{minor} a block device on this host? see /proc/partitions)"
    ))
}

// ANCHOR: check
/// Refuse, by name, each setting of `r` that no mounted hierarchy can
/// hold: `controllers` are those with a v1 hierarchy here, `unified` those
/// the cgroup2 tree of a hybrid host offers.
pub fn check(r: &Resources, controllers: &[&str], unified: Option<&[String]>) -> Result<(), Error> {
    let has = |c: &str| controllers.contains(&c);
    let in_unified = |c: &str| unified.is_some_and(|u| u.iter().any(|x| x == c));
    let mut problems = Vec::new();
    for (needed, controller, setting) in [
        (r.has_memory(), "memory", "memory"),
        (r.has_cpu(), "cpu", "cpu"),
        (r.cpu.cpus.is_some(), "cpuset", "cpu.cpus"),
        (r.cpu.mems.is_some(), "cpuset", "cpu.mems"),
        (r.pids.is_some(), "pids", "pids"),
        (r.has_block_io(), "blkio", "blockIO"),
        (r.network.class_id.is_some(), "net_cls", "network.classID"),
        (
            !r.network.priorities.is_empty(),
            "net_prio",
            "network.priorities",
        ),
        (!r.devices.is_empty(), "devices", "devices"),
        (!r.hugepages.is_empty(), "hugetlb", "hugepageLimits"),
        (!r.rdma.is_empty(), "rdma", "rdma"),
    ] {
        if needed
            && !has(controller)
            && !(matches!(controller, "hugetlb" | "rdma") && in_unified(controller))
        {
            let mut why = no_controller(controller);
            if unified.is_some() && matches!(controller, "hugetlb" | "rdma") {
                why.push_str(", nor does the cgroup2 tree offer it");
            }
            problems.push(unsupported(setting, why));
        }
    }
    problems.extend(resources::check_page_sizes(
        &r.hugepages,
        &resources::host_page_sizes(),
    ));
    problems.extend(r.devices.iter().filter_map(|rule| rule.v1_lines().err()));
    for key in r.unified.keys() {
        match (resources::check_unified_key(key), unified) {
            (Err(e), _) => problems.push(e),
            (Ok(_), None) => problems.push(unsupported(
                &format!("unified.{key:?}"),
                "this host has cgroup v1 only, with no cgroup2 tree",
            )),
            (Ok(c), Some(_)) if c != "cgroup" && !in_unified(c) => problems.push(unsupported(
                &format!("unified.{key:?}"),
                format!(
                    "this hybrid host's cgroup2 tree has no {c} controller (v1 hierarchies \
                     hold it)"
                ),
            )),
            _ => {}
        }
    }
    resources::all_of(problems)
}
// ANCHOR_END: check

impl Cgroup for V1Cgroup {
    fn dirs(&self) -> Vec<PathBuf> {
        self.unique_dirs()
    }

    fn add_process(&self, pid: Pid) -> Result<(), Error> {
        // ANCHOR: exercise_v1_join
        for dir in self.unique_dirs() {
            write_control(&dir, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
        // ANCHOR_END: exercise_v1_join
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
        self.unified = self.unified.take().filter(|dir| dirs.contains(dir));
        result
    }
}

// ANCHOR: freeze
impl Manage for V1Cgroup {
    fn pids(&self) -> Result<Vec<Pid>, Error> {
        let mut pids = Vec::new();
        for dir in self.unique_dirs() {
            procs_below(&dir, &mut pids)?;
        }
        pids.sort();
        pids.dedup();
        Ok(pids)
    }

    fn freeze(&self) -> Result<(), Error> {
        match (self.dir_of("freezer"), &self.unified) {
            (Ok(dir), _) => freeze(dir),
            // The cgroup2 tree has a freezer of its own, in every cgroup.
            (Err(_), Some(dir)) => v2::freeze(dir),
            (Err(_), None) => Err(no_freezer()),
        }
    }

    fn thaw(&self) -> Result<(), Error> {
        match (self.dir_of("freezer"), &self.unified) {
            (Ok(dir), _) => thaw(dir),
            (Err(_), Some(dir)) => v2::thaw(dir),
            (Err(_), None) => Err(no_freezer()),
        }
    }

    fn is_frozen(&self) -> Result<bool, Error> {
        match (self.dir_of("freezer"), &self.unified) {
            (Ok(dir), _) => Ok(read(dir.join("freezer.state"))?.trim() == "FROZEN"),
            (Err(_), Some(dir)) => v2::is_frozen(dir),
            (Err(_), None) => Err(no_freezer()),
        }
    }

    fn update(&self, resources: &Resources) -> Result<(), Error> {
        let resources = resources.effective();
        let controllers: Vec<&str> = self.dirs.iter().map(|(c, _)| *c).collect();
        // In the cgroup2 tree, what the parent can hand down.
        let unified = match &self.unified {
            Some(dir) => Some(v2::controllers_in(dir.parent().unwrap_or(dir))?),
            None => None,
        };
        check(&resources, &controllers, unified.as_deref())?;
        if let Some(dir) = &self.unified {
            let needed = self.needed_in_unified(&resources);
            v2::enable_controllers(dir.parent().unwrap_or(dir), &needed)?;
        }
        self.set(&resources)
    }

    fn keep(&mut self) {
        self.keep = true;
    }
}

/// v1's freezer: write FROZEN, then wait for the state to read FROZEN
/// (it reads FREEZING while tasks are still being stopped).
fn freeze(dir: &Path) -> Result<(), Error> {
    let frozen = || Ok(read(dir.join("freezer.state"))?.trim() == "FROZEN");
    for _ in 0..5 {
        write_control(dir, "freezer.state", "FROZEN")?;
        if wait_until(Duration::from_secs(1), frozen)? {
            return Ok(());
        }
        // A task stuck in the kernel (in vfork, or on a slow file system)
        // can hold the group in FREEZING: thaw briefly and try again, as
        // runc does.
        write_control(dir, "freezer.state", "THAWED")?;
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(Error::Other(format!(
        "freeze: {} still read FREEZING after 5 s, so the container was thawed again; a \
         process in it is stuck in the kernel (see /proc/PID/stack of its processes)",
        dir.join("freezer.state").display()
    )))
}

fn thaw(dir: &Path) -> Result<(), Error> {
    write_control(dir, "freezer.state", "THAWED")?;
    let thawed = || Ok(read(dir.join("freezer.state"))?.trim() == "THAWED");
    if wait_until(Duration::from_secs(5), thawed)? {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "thaw: {} did not read THAWED within 5 s",
            dir.join("freezer.state").display()
        )))
    }
}
// ANCHOR_END: freeze

fn no_freezer() -> Error {
    Error::Other(
        "pausing needs the freezer controller, and this cgroup has no directory in a \
         freezer hierarchy (none is mounted, see /proc/self/mountinfo, or the cgroup was \
         made without one)"
            .into(),
    )
}

impl Drop for V1Cgroup {
    fn drop(&mut self) {
        if !self.keep {
            let _ = self.remove();
        }
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
        let cgroup = V1Cgroup::open(
            vec![
                ("memory", dir.clone()),
                ("cpuacct", dir.clone()),
                ("pids", dir),
            ],
            None,
        );
        let usage = cgroup.usage().unwrap();
        std::mem::forget(cgroup);
        assert_eq!(usage.cpu_time, Duration::from_millis(1500));
        assert_eq!(
            (usage.memory_peak, usage.oom_kills, usage.pids_refused),
            (Some(1024), 2, 7)
        );
    }

    /// A fake v1 host: one directory per hierarchy, `cpu,cpuacct` shared,
    /// cpuset's root with CPUs and memory nodes to inherit.
    fn fake_v1_host(root: &Path) -> Vec<(&'static str, PathBuf)> {
        let base = |name: &str| {
            let dir = root.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            dir
        };
        let cpuset = base("cpuset");
        std::fs::write(cpuset.join("cpuset.cpus"), "0-3\n").unwrap();
        std::fs::write(cpuset.join("cpuset.mems"), "0\n").unwrap();
        vec![
            ("cpuset", cpuset),
            ("cpu", base("cpu,cpuacct")),
            ("cpuacct", base("cpu,cpuacct")),
            ("memory", base("memory")),
            ("devices", base("devices")),
            ("freezer", base("freezer")),
            ("blkio", base("blkio")),
            ("pids", base("pids")),
        ]
    }

    /// Files the kernel would have put in a new cgroup, that the writes
    /// below look for before writing.
    fn kernel_files(dir: &Path, files: &[(&str, &str)]) {
        std::fs::create_dir_all(dir).unwrap();
        for (name, value) in files {
            std::fs::write(dir.join(name), value).unwrap();
        }
    }

    #[test]
    fn oci_resources_land_in_their_v1_files() {
        use crate::resources::{DeviceRule, Throttle};
        let root = tempfile::tempdir().unwrap();
        let legacy = fake_v1_host(root.path());
        let memory = root.path().join("memory/outer/c");
        kernel_files(
            &memory,
            &[
                ("memory.limit_in_bytes", "9223372036854771712"),
                ("memory.memsw.limit_in_bytes", "9223372036854771712"),
                ("memory.kmem.tcp.limit_in_bytes", "9223372036854771712"),
            ],
        );
        let blkio = root.path().join("blkio/outer/c");
        kernel_files(&blkio, &[("blkio.throttle.read_bps_device", "")]);
        let resources = Resources {
            memory: Memory {
                limit: Some(50 << 20),
                reservation: Some(40 << 20),
                swap: Some(100 << 20),
                kernel_tcp: Some(8 << 20),
                swappiness: Some(10),
                disable_oom_killer: Some(true),
                ..Memory::default()
            },
            cpu: Cpu {
                shares: Some(2048),
                quota: Some(50_000),
                period: Some(100_000),
                cpus: Some("1".into()),
                ..Cpu::default()
            },
            pids: Some(-1),
            block_io: BlockIo {
                throttle_read_bps: vec![Throttle {
                    major: 8,
                    minor: 0,
                    rate: 1024,
                }],
                ..BlockIo::default()
            },
            devices: vec![DeviceRule {
                allow: false,
                kind: 'a',
                major: None,
                minor: None,
                access: String::new(),
            }],
            ..Resources::default()
        };
        let target = crate::cgroup::Target::new(Path::new("/outer/c"), legacy, None).unwrap();
        let mut cgroup = target.create(&resources).unwrap();

        assert_eq!(file(&memory, "memory.limit_in_bytes"), "52428800");
        assert_eq!(file(&memory, "memory.memsw.limit_in_bytes"), "104857600");
        assert_eq!(file(&memory, "memory.soft_limit_in_bytes"), "41943040");
        assert_eq!(file(&memory, "memory.kmem.tcp.limit_in_bytes"), "8388608");
        assert_eq!(file(&memory, "memory.swappiness"), "10");
        assert_eq!(file(&memory, "memory.oom_control"), "1");
        let cpu = root.path().join("cpu,cpuacct/outer/c");
        assert_eq!(file(&cpu, "cpu.shares"), "2048");
        assert_eq!(file(&cpu, "cpu.cfs_period_us"), "100000");
        assert_eq!(file(&cpu, "cpu.cfs_quota_us"), "50000");
        // Each new cpuset level got its parent's CPUs before its own.
        let cpuset = root.path().join("cpuset/outer");
        assert_eq!(file(&cpuset, "cpuset.cpus"), "0-3");
        assert_eq!(file(&cpuset.join("c"), "cpuset.cpus"), "1");
        assert_eq!(file(&cpuset.join("c"), "cpuset.mems"), "0");
        assert_eq!(file(&root.path().join("pids/outer/c"), "pids.max"), "max");
        assert_eq!(file(&blkio, "blkio.throttle.read_bps_device"), "8:0 1024");
        assert_eq!(
            file(&root.path().join("devices/outer/c"), "devices.deny"),
            "a"
        );
        assert_eq!(
            cgroup.dirs().len(),
            7,
            "one per hierarchy, cpu,cpuacct once"
        );
        cgroup.keep(); // the fake directories hold files; the tempdir cleans up
    }

    #[test]
    fn memory_and_memory_plus_swap_are_written_in_an_order_the_kernel_takes() {
        // In place: memory 100, memsw 100. Raising both to 300/400: memsw
        // first, or memory 300 > memsw 100 would be refused.
        assert!(swap_first(100, 400));
        // In place: memory 300, memsw 400. Lowering both to 50/60: memory
        // first, or memsw 60 < memory 300 would be refused.
        assert!(!swap_first(300, 60));
        assert!(swap_first(300, -1), "unlimited memsw can always go first");
    }

    #[test]
    fn a_setting_that_fails_undoes_what_create_made() {
        let root = tempfile::tempdir().unwrap();
        let legacy = fake_v1_host(root.path());
        let joined = root.path().join("blkio/shared");
        std::fs::create_dir(&joined).unwrap();
        let target = crate::cgroup::Target::new(Path::new("shared"), legacy, None).unwrap();
        let err = target
            .create(&Resources {
                block_io: BlockIo {
                    leaf_weight: Some(300),
                    ..BlockIo::default()
                },
                ..Resources::default()
            })
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.starts_with("linux.resources.blockIO.leafWeight is set but"),
            "{err}"
        );
        assert!(!root.path().join("memory/shared").exists());
        assert!(joined.exists(), "it removed a cgroup it had joined");
    }

    #[test]
    fn what_no_hierarchy_holds_is_refused_by_name_before_anything_is_made() {
        let r = Resources {
            network: Network {
                class_id: Some(255),
                ..Network::default()
            },
            pids: Some(10),
            unified: [("memory.high".to_string(), "1G".to_string())].into(),
            ..Resources::default()
        };
        let err = check(&r, &["memory", "cpu"], Some(&["hugetlb".to_string()]))
            .unwrap_err()
            .to_string();
        for expected in [
            "linux.resources.pids is set but this host has no pids controller",
            "linux.resources.network.classID is set but this host has no net_cls controller",
            "linux.resources.unified.\"memory.high\" is set but this hybrid host's cgroup2 \
             tree has no memory controller",
        ] {
            assert!(err.contains(expected), "{expected:?} missing from {err:?}");
        }
        // Huge pages may go to the cgroup2 tree of a hybrid host.
        let pages = Resources {
            hugepages: vec![Hugepage {
                page_size: "2MB".into(),
                limit: 1,
            }],
            ..Resources::default()
        };
        let sizes = resources::host_page_sizes();
        if sizes.contains(&"2MB".to_string()) {
            check(&pages, &["memory"], Some(&["hugetlb".to_string()])).unwrap();
            let err = check(&pages, &["memory"], None).unwrap_err().to_string();
            assert!(err.contains("no hugetlb controller"), "{err}");
        }
    }
}
