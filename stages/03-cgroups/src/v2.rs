//! The cgroup v2 backend: one tree, one directory per container.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::Pid;
use stage01_chroot::Error;

use crate::cgroup::{
    Cgroup, Made, Manage, Usage, make_cgroup_dir, procs_below, read, read_key, remove_dirs,
    wait_until, write_control, write_optional, write_setting,
};
use crate::limits::Limits;
use crate::resources::{
    self, BlockIo, Cpu, Hugepage, Memory, Rdma, Resources, unsupported, v2_limit,
};

/// The v2 controllers berth knows of.
pub const V2_CONTROLLERS: &[&str] = &[
    "cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc",
];

pub struct V2Cgroup {
    dirs: Vec<PathBuf>,
    /// Leave the directory when dropped.
    keep: bool,
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
        // From here on, dropping it removes it.
        let cgroup = V2Cgroup {
            dirs: vec![dir],
            keep: false,
        };
        cgroup.apply(limits)?;
        Ok(cgroup)
    }

    fn apply(&self, limits: &Limits) -> Result<(), Error> {
        // ANCHOR: exercise_v2_limits
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
        // ANCHOR_END: exercise_v2_limits
    }
}
// ANCHOR_END: create

// ANCHOR: cgroup
impl Cgroup for V2Cgroup {
    fn dirs(&self) -> Vec<PathBuf> {
        self.dirs.clone()
    }

    fn add_process(&self, pid: Pid) -> Result<(), Error> {
        // ANCHOR: exercise_v2_join
        write_control(&self.dirs[0], "cgroup.procs", &pid.to_string())
        // ANCHOR_END: exercise_v2_join
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
// ANCHOR_END: cgroup

impl Drop for V2Cgroup {
    fn drop(&mut self) {
        if !self.keep {
            let _ = self.remove();
        }
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

// ANCHOR: enable
/// Let the children of `parent` use the `needed` controllers, by listing
/// them in its `cgroup.subtree_control` (those not there yet).
pub(crate) fn enable_controllers(parent: &Path, needed: &[&str]) -> Result<(), Error> {
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
    let enabled = read(parent.join("cgroup.subtree_control"))?;
    let enable: Vec<String> = needed
        .iter()
        .filter(|c| !enabled.split_whitespace().any(|e| e == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if enable.is_empty() {
        return Ok(());
    }
    write_control(parent, "cgroup.subtree_control", &enable.join(" ")).map_err(|err| {
        Error::Other(format!(
            "{err}. A v2 cgroup that holds processes can't hand controllers to children \
             (the \"no internal processes\" rule): move the processes listed in {} into \
             a cgroup below it (a leaf), or start berth from a cgroup whose parent holds \
             none",
            parent.join("cgroup.procs").display()
        ))
    })
}
// ANCHOR_END: enable

/// The controllers a cgroup v2 directory offers its children.
pub fn controllers_in(dir: &Path) -> Result<Vec<String>, Error> {
    Ok(read(dir.join("cgroup.controllers"))?
        .split_whitespace()
        .map(String::from)
        .collect())
}

// ANCHOR: create_at
impl V2Cgroup {
    /// Make (or join) `base/path`, enabling the controllers `resources`
    /// need at every level on the way down, then set them.
    pub(crate) fn create_at(
        base: &Path,
        path: &Path,
        resources: &Resources,
        made: &mut Made,
    ) -> Result<Self, Error> {
        let needed = needed_by(resources);
        let dir = made.path(base, path, |parent, _| enable_controllers(parent, &needed))?;
        // Kept while being made: on failure `made` removes what this call made.
        let mut cgroup = V2Cgroup {
            dirs: vec![dir],
            keep: true,
        };
        cgroup.set(resources, false)?;
        cgroup.keep = false;
        Ok(cgroup)
    }

    /// A cgroup found again by [`open`](crate::cgroup::open).
    pub(crate) fn open(dir: PathBuf) -> Self {
        V2Cgroup {
            dirs: vec![dir],
            keep: true,
        }
    }
}
// ANCHOR_END: create_at

/// The controllers `resources` need, in the kernel's order.
fn needed_by(r: &Resources) -> Vec<&'static str> {
    let c = &r.cpu;
    let cpu = c.shares.is_some()
        || c.quota.is_some()
        || c.period.is_some()
        || c.burst.is_some()
        || c.idle.is_some();
    let unified: Vec<&str> = r
        .unified
        .keys()
        .filter_map(|k| resources::check_unified_key(k).ok())
        .collect();
    V2_CONTROLLERS
        .iter()
        .copied()
        .filter(|controller| {
            unified.contains(controller)
                || match *controller {
                    "cpuset" => r.has_cpuset(),
                    "cpu" => cpu,
                    "io" => r.has_block_io(),
                    "memory" => r.has_memory(),
                    "hugetlb" => !r.hugepages.is_empty(),
                    "pids" => r.pids.is_some(),
                    "rdma" => !r.rdma.is_empty(),
                    _ => false,
                }
        })
        .collect()
}

// ANCHOR: check
/// Refuse, by name, each setting of `r` that cgroup v2 has no file for, or
/// whose controller `available` (the parent's `cgroup.controllers`) lacks.
pub fn check(r: &Resources, available: &[String]) -> Result<(), Error> {
    let mut problems = Vec::new();
    let v1_only = |setting: &str, what: &str| {
        unsupported(
            setting,
            format!("cgroup v2 has no {what} (only cgroup v1 had it)"),
        )
    };
    if r.cpu.realtime_runtime.is_some() {
        problems.push(v1_only(
            "cpu.realtimeRuntime",
            "realtime CPU budget per group",
        ));
    }
    if r.cpu.realtime_period.is_some() {
        problems.push(v1_only(
            "cpu.realtimePeriod",
            "realtime CPU budget per group",
        ));
    }
    if r.memory.swappiness.is_some() {
        problems.push(v1_only("memory.swappiness", "swappiness per group"));
    }
    if r.memory.disable_oom_killer == Some(true) {
        problems.push(v1_only(
            "memory.disableOOMKiller",
            "way to turn the OOM killer off",
        ));
    }
    let leaf = r
        .block_io
        .weight_devices
        .iter()
        .any(|d| d.leaf_weight.is_some());
    if r.block_io.leaf_weight.is_some() || leaf {
        problems.push(v1_only("blockIO.leafWeight", "leaf weights"));
    }
    if r.network.class_id.is_some() {
        problems.push(v1_only(
            "network.classID",
            "net_cls controller (match the cgroup path in nftables instead)",
        ));
    }
    if !r.network.priorities.is_empty() {
        problems.push(v1_only("network.priorities", "net_prio controller"));
    }
    problems.extend(r.devices.iter().filter_map(|rule| rule.v1_rules().err()));
    for controller in needed_by(r) {
        if !available.iter().any(|a| a == controller) {
            let setting = match controller {
                "cpuset" => "cpu.cpus",
                "io" => "blockIO",
                "hugetlb" => "hugepageLimits",
                other => other,
            };
            problems.push(unsupported(
                setting,
                format!(
                    "this host has no {controller} controller here (the parent cgroup offers: \
                     {}; on a hybrid host it is bound to a v1 hierarchy)",
                    available.join(" ")
                ),
            ));
        }
    }
    problems.extend(resources::check_page_sizes(
        &r.hugepages,
        &resources::host_page_sizes(),
    ));
    problems.extend(
        r.unified
            .keys()
            .filter_map(|k| resources::check_unified_key(k).err()),
    );
    resources::all_of(problems)
}
// ANCHOR_END: check

impl V2Cgroup {
    // ANCHOR: set
    /// Write every setting of `resources` to the file that holds it.
    fn set(&self, r: &Resources, updating: bool) -> Result<(), Error> {
        let dir = self.dir()?;
        set_cpu(dir, &r.cpu)?;
        set_memory(dir, &r.memory, updating)?;
        if let Some(limit) = r.pids {
            write_setting(dir, "pids.max", &v2_limit(limit), "pids.limit")?;
        }
        set_io(dir, &r.block_io)?;
        set_hugepages(dir, &r.hugepages)?;
        set_rdma(dir, &r.rdma)?;
        if !r.devices.is_empty() {
            crate::bpf::set_device_rules(dir, &r.devices)?;
        }
        set_unified(dir, &r.unified)
    }
    // ANCHOR_END: set
}

fn set_cpu(dir: &Path, cpu: &Cpu) -> Result<(), Error> {
    if let Some(shares) = cpu.shares {
        let weight = resources::cpu_weight(shares).to_string();
        write_setting(dir, "cpu.weight", &weight, "cpu.shares")?;
    }
    // cpu.max is "QUOTA PERIOD"; a write of QUOTA alone keeps the period,
    // but a new period needs the quota written with it.
    let quota = |q: i64| {
        if q < 0 {
            "max".to_string()
        } else {
            q.to_string()
        }
    };
    let max = match (cpu.quota, cpu.period) {
        (Some(q), Some(period)) => Some(format!("{} {period}", quota(q))),
        (Some(q), None) => Some(quota(q)),
        (None, Some(period)) => {
            let current = read(dir.join("cpu.max"))?;
            let current = current
                .split_whitespace()
                .next()
                .unwrap_or("max")
                .to_string();
            Some(format!("{current} {period}"))
        }
        (None, None) => None,
    };
    if let Some(max) = max {
        write_setting(dir, "cpu.max", &max, "cpu.quota")?;
    }
    if let Some(burst) = cpu.burst {
        let value = burst.to_string();
        let hint = "CPU burst needs Linux 5.14";
        write_optional(dir, "cpu.max.burst", &value, "cpu.burst", hint)?;
    }
    if let Some(idle) = cpu.idle {
        let hint = "idle groups need Linux 5.15";
        write_optional(dir, "cpu.idle", &idle.to_string(), "cpu.idle", hint)?;
    }
    if let Some(cpus) = &cpu.cpus {
        write_setting(dir, "cpuset.cpus", cpus, "cpu.cpus")?;
    }
    if let Some(mems) = &cpu.mems {
        write_setting(dir, "cpuset.mems", mems, "cpu.mems")?;
    }
    Ok(())
}

fn set_memory(dir: &Path, m: &Memory, updating: bool) -> Result<(), Error> {
    if let (true, true, Some(limit)) = (updating, m.check_before_update, m.limit) {
        let current = crate::cgroup::read_number(dir.join("memory.current"))?;
        if limit >= 0 && (limit as u64) < current {
            return Err(Error::Other(format!(
                "linux.resources.memory.limit {limit} is below the {current} bytes the \
                 container uses now (checkBeforeUpdate is set)"
            )));
        }
    }
    let no_swap = "this kernel does not account swap (boot it with swapaccount=1)";
    let swap = match (m.swap, m.limit) {
        (Some(swap), limit) => {
            // Updating swap alone: it is counted from the memory limit in place.
            let limit = match limit {
                Some(limit) => Some(limit),
                None => read(dir.join("memory.max"))?.trim().parse().ok(),
            };
            Some(resources::v2_swap_max(swap, limit)?)
        }
        // No memory limit means no swap limit either (as runc reads it).
        (None, Some(-1)) if dir.join("memory.swap.max").exists() => Some(None),
        (None, _) => None,
    };
    if let Some(swap) = swap {
        let value = swap.map_or("max".into(), |s| s.to_string());
        write_optional(dir, "memory.swap.max", &value, "memory.swap", no_swap)?;
    }
    if let Some(limit) = m.limit {
        write_setting(dir, "memory.max", &v2_limit(limit), "memory.limit")?;
    }
    if let Some(reservation) = m.reservation {
        let value = v2_limit(reservation);
        write_setting(dir, "memory.low", &value, "memory.reservation")?;
    }
    // kernel and kernelTCP: v2 counts kernel memory in memory.max, and has
    // no separate limits for it; like runc and crun, we accept and skip them.
    Ok(())
}

fn set_io(dir: &Path, b: &BlockIo) -> Result<(), Error> {
    if *b == BlockIo::default() {
        return Ok(());
    }
    // BFQ's io.bfq.weight takes the spec's range as it is; io.weight (the
    // io.cost controller's) has its own range, converted.
    let weight_file = |setting: &str| {
        ["io.bfq.weight", "io.weight"]
            .into_iter()
            .find(|f| dir.join(f).exists())
            .ok_or_else(|| {
                unsupported(
                    setting,
                    format!(
                        "{} has neither io.bfq.weight nor io.weight: weights need the BFQ \
                         I/O scheduler or io.cost",
                        dir.display()
                    ),
                )
            })
    };
    let value = |file: &str, weight: u16| {
        if file == "io.bfq.weight" {
            weight.to_string()
        } else {
            resources::io_weight(weight).to_string()
        }
    };
    if let Some(weight) = b.weight {
        let file = weight_file("blockIO.weight")?;
        let line = format!("default {}", value(file, weight));
        write_setting(dir, file, &line, "blockIO.weight")?;
    }
    for device in &b.weight_devices {
        if let Some(weight) = device.weight {
            let setting = "blockIO.weightDevice";
            let file = weight_file(setting)?;
            let line = format!("{}:{} {}", device.major, device.minor, value(file, weight));
            write_setting(dir, file, &line, setting)
                .map_err(|e| on_device(e, device.major, device.minor))?;
        }
    }
    for (throttles, key, setting) in [
        (
            &b.throttle_read_bps,
            "rbps",
            "blockIO.throttleReadBpsDevice",
        ),
        (
            &b.throttle_write_bps,
            "wbps",
            "blockIO.throttleWriteBpsDevice",
        ),
        (
            &b.throttle_read_iops,
            "riops",
            "blockIO.throttleReadIOPSDevice",
        ),
        (
            &b.throttle_write_iops,
            "wiops",
            "blockIO.throttleWriteIOPSDevice",
        ),
    ] {
        for t in throttles {
            let line = format!("{}:{} {key}={}", t.major, t.minor, t.rate);
            write_setting(dir, "io.max", &line, setting)
                .map_err(|e| on_device(e, t.major, t.minor))?;
        }
    }
    Ok(())
}

/// A per-device write failed: the device may not exist here.
fn on_device(error: Error, major: i64, minor: i64) -> Error {
    Error::Other(format!(
        "{error} (is {major}:{minor} a block device on this host? see /proc/partitions)"
    ))
}

/// `hugetlb.<size>.max` for each page size (and the reservation limit).
pub(crate) fn set_hugepages(dir: &Path, pages: &[Hugepage]) -> Result<(), Error> {
    for page in pages {
        let limit = v2_limit(page.limit);
        let file = format!("hugetlb.{}.max", page.page_size);
        let hint = "the page size is not one this host has, or hugetlb is not enabled here";
        write_optional(dir, &file, &limit, "hugepageLimits", hint)?;
        let reserved = format!("hugetlb.{}.rsvd.max", page.page_size);
        if dir.join(&reserved).exists() {
            write_setting(dir, &reserved, &limit, "hugepageLimits")?;
        }
    }
    Ok(())
}

/// `rdma.max`: one line per device, naming only the limits given.
pub(crate) fn set_rdma(dir: &Path, rdma: &[Rdma]) -> Result<(), Error> {
    for device in rdma {
        let mut line = device.device.clone();
        if let Some(handles) = device.hca_handles {
            line.push_str(&format!(" hca_handle={handles}"));
        }
        if let Some(objects) = device.hca_objects {
            line.push_str(&format!(" hca_object={objects}"));
        }
        if line != device.device {
            let hint = "this kernel has no rdma controller here";
            write_optional(dir, "rdma.max", &line, "rdma", hint)?;
        }
    }
    Ok(())
}

/// `unified`: each key is a file of the cgroup's own directory.
pub(crate) fn set_unified(
    dir: &Path,
    unified: &std::collections::BTreeMap<String, String>,
) -> Result<(), Error> {
    for (key, value) in unified {
        resources::check_unified_key(key)?;
        let setting = format!("unified.{key:?}");
        let hint = "no such file in this cgroup (is its controller enabled?)";
        write_optional(dir, key, value, &setting, hint)?;
    }
    Ok(())
}

// ANCHOR: freeze
/// v2's freezer: `cgroup.freeze` asks, `cgroup.events` says when done.
pub(crate) fn freeze(dir: &Path) -> Result<(), Error> {
    set_frozen(dir, true)
}

pub(crate) fn thaw(dir: &Path) -> Result<(), Error> {
    set_frozen(dir, false)
}

pub(crate) fn is_frozen(dir: &Path) -> Result<bool, Error> {
    Ok(read_key(dir.join("cgroup.events"), "frozen")? == Some(1))
}

fn set_frozen(dir: &Path, frozen: bool) -> Result<(), Error> {
    if !dir.join("cgroup.freeze").exists() {
        return Err(Error::Other(format!(
            "{} does not exist: the cgroup v2 freezer needs Linux 5.2",
            dir.join("cgroup.freeze").display()
        )));
    }
    write_control(dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
    if wait_until(Duration::from_secs(5), || Ok(is_frozen(dir)? == frozen))? {
        return Ok(());
    }
    if frozen {
        let _ = write_control(dir, "cgroup.freeze", "0");
    }
    Err(Error::Other(format!(
        "{} did not read \"frozen {}\" within 5 s{}",
        dir.join("cgroup.events").display(),
        u8::from(frozen),
        if frozen {
            "; the container was thawed again"
        } else {
            ""
        }
    )))
}
// ANCHOR_END: freeze

impl V2Cgroup {
    /// Its directory, unless it was removed.
    fn dir(&self) -> Result<&Path, Error> {
        self.dirs
            .first()
            .map(PathBuf::as_path)
            .ok_or_else(|| Error::Other("the cgroup was removed already".into()))
    }
}

impl Manage for V2Cgroup {
    fn pids(&self) -> Result<Vec<Pid>, Error> {
        let mut pids = Vec::new();
        procs_below(self.dir()?, &mut pids)?;
        pids.sort();
        pids.dedup();
        Ok(pids)
    }

    fn freeze(&self) -> Result<(), Error> {
        freeze(self.dir()?)
    }

    fn thaw(&self) -> Result<(), Error> {
        thaw(self.dir()?)
    }

    fn is_frozen(&self) -> Result<bool, Error> {
        is_frozen(self.dir()?)
    }

    fn update(&self, resources: &Resources) -> Result<(), Error> {
        let resources = resources.effective();
        let dir = self.dir()?;
        let parent = dir.parent().unwrap_or(dir);
        check(&resources, &controllers_in(parent)?)?;
        enable_controllers(parent, &needed_by(&resources))?;
        self.set(&resources, true)
    }

    fn keep(&mut self) {
        self.keep = true;
    }
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
        let mut cgroup = V2Cgroup::open(child.clone());
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
        let cgroup = V2Cgroup::open(dir.path().to_path_buf());
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

    #[test]
    fn oci_resources_land_in_their_v2_files() {
        use crate::resources::{Throttle, WeightDevice};
        let parent = fake_parent("cpuset cpu io memory hugetlb pids rdma misc");
        let dir = parent.path().join("outer/c");
        // Files the kernel makes and our writes look for first.
        std::fs::create_dir_all(&dir).unwrap();
        for (file, value) in [
            ("memory.swap.max", "max"),
            ("io.weight", "default 100"),
            ("cpu.max", "max 100000"),
            ("cgroup.controllers", "cpu io memory pids"),
            ("cgroup.subtree_control", ""),
        ] {
            std::fs::write(dir.join(file), value).unwrap();
        }
        std::fs::write(
            parent.path().join("outer/cgroup.controllers"),
            "cpu io memory pids",
        )
        .unwrap();
        std::fs::write(parent.path().join("outer/cgroup.subtree_control"), "").unwrap();
        let resources = Resources {
            memory: Memory {
                limit: Some(100 << 20),
                swap: Some(150 << 20),
                reservation: Some(50 << 20),
                kernel: Some(1 << 20), // accepted and skipped
                ..Memory::default()
            },
            cpu: Cpu {
                shares: Some(1024),
                quota: Some(-1),
                period: Some(250_000),
                ..Cpu::default()
            },
            pids: Some(64),
            block_io: BlockIo {
                weight: Some(500),
                weight_devices: vec![WeightDevice {
                    major: 8,
                    minor: 0,
                    weight: Some(1000),
                    leaf_weight: None,
                }],
                throttle_write_iops: vec![Throttle {
                    major: 8,
                    minor: 0,
                    rate: 77,
                }],
                ..BlockIo::default()
            },
            ..Resources::default()
        };
        let target =
            crate::cgroup::Target::new(Path::new("outer/c"), vec![], Some(parent.path().into()))
                .unwrap();
        let mut cgroup = target.create(&resources).unwrap();
        assert_eq!(
            file(parent.path(), "cgroup.subtree_control"),
            "+cpu +io +memory +pids"
        );
        assert_eq!(file(&dir, "memory.max"), "104857600");
        assert_eq!(
            file(&dir, "memory.swap.max"),
            "52428800",
            "swap alone: 150M - 100M"
        );
        assert_eq!(file(&dir, "memory.low"), "52428800");
        assert_eq!(file(&dir, "cpu.weight"), "39");
        assert_eq!(file(&dir, "cpu.max"), "max 250000");
        assert_eq!(file(&dir, "pids.max"), "64");
        // The fake keeps only the last write of each file.
        assert_eq!(file(&dir, "io.weight"), "8:0 10000");
        assert_eq!(file(&dir, "io.max"), "8:0 wiops=77");
        cgroup.keep();

        // A new period alone keeps the quota in place.
        std::fs::write(dir.join("cpu.max"), "50000 100000").unwrap();
        let period = Resources {
            cpu: Cpu {
                period: Some(200_000),
                ..Cpu::default()
            },
            ..Resources::default()
        };
        cgroup.update(&period).unwrap();
        assert_eq!(file(&dir, "cpu.max"), "50000 200000");
    }

    #[test]
    fn what_v2_has_no_file_for_is_refused_by_name() {
        let r = Resources {
            memory: Memory {
                swappiness: Some(10),
                disable_oom_killer: Some(true),
                ..Memory::default()
            },
            cpu: Cpu {
                realtime_runtime: Some(1000),
                ..Cpu::default()
            },
            block_io: BlockIo {
                leaf_weight: Some(300),
                ..BlockIo::default()
            },
            network: crate::resources::Network {
                class_id: Some(1),
                ..Default::default()
            },
            pids: Some(10),
            ..Resources::default()
        };
        let err = check(&r, &["memory".to_string()]).unwrap_err().to_string();
        for expected in [
            "linux.resources.cpu.realtimeRuntime is set but cgroup v2 has no realtime",
            "linux.resources.memory.swappiness is set but cgroup v2 has no swappiness",
            "linux.resources.memory.disableOOMKiller is set but cgroup v2 has no way",
            "linux.resources.blockIO.leafWeight is set but cgroup v2 has no leaf weights",
            "linux.resources.network.classID is set but cgroup v2 has no net_cls",
            "linux.resources.pids is set but this host has no pids controller here",
        ] {
            assert!(err.contains(expected), "{expected:?} missing from {err:?}");
        }
        // Turning the OOM killer *on* is what v2 does anyway.
        let on = Resources {
            memory: Memory {
                disable_oom_killer: Some(false),
                ..Memory::default()
            },
            ..Resources::default()
        };
        check(&on, &["memory".to_string()]).unwrap();
    }

    #[test]
    fn huge_pages_and_rdma_lines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hugetlb.2MB.max"), "max").unwrap();
        std::fs::write(dir.path().join("hugetlb.2MB.rsvd.max"), "max").unwrap();
        std::fs::write(dir.path().join("rdma.max"), "").unwrap();
        let pages = [Hugepage {
            page_size: "2MB".into(),
            limit: 4 << 20,
        }];
        set_hugepages(dir.path(), &pages).unwrap();
        assert_eq!(file(dir.path(), "hugetlb.2MB.max"), "4194304");
        assert_eq!(file(dir.path(), "hugetlb.2MB.rsvd.max"), "4194304");
        let wrong = [Hugepage {
            page_size: "3MB".into(),
            limit: 1,
        }];
        let err = set_hugepages(dir.path(), &wrong).unwrap_err().to_string();
        assert!(err.contains("hugetlb.3MB.max does not exist"), "{err}");
        let rdma = [Rdma {
            device: "mlx4_0".into(),
            hca_handles: Some(2),
            hca_objects: None,
        }];
        set_rdma(dir.path(), &rdma).unwrap();
        assert_eq!(file(dir.path(), "rdma.max"), "mlx4_0 hca_handle=2");
    }
}
