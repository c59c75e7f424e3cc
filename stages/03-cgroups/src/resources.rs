//! Every limit an OCI runtime spec can put on a container's cgroup
//! (`linux.resources`), beyond the three of [`Limits`](crate::Limits).
//!
//! The fields follow the runtime spec (and the `oci-spec` crate), so that a
//! runtime maps each one in a line, and errors name them the spec's way, for
//! example `linux.resources.memory.swap`. `None` leaves a setting as it is.
//! As in runc, a 0 where 0 can't be a sensible limit (memory, CPU shares,
//! quota and period, pids, block I/O weights, class ID) also means "not
//! set"; -1 means "no limit" where the spec says so.
//!
//! This module holds the settings and the arithmetic between the two
//! cgroup versions; [`v1`](crate::v1) and [`v2`](crate::v2) write the files.

use std::collections::BTreeMap;

use stage01_chroot::Error;

/// The resources of one container (`linux.resources`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub memory: Memory,
    pub cpu: Cpu,
    /// Most tasks at once; negative means no limit.
    pub pids: Option<i64>,
    pub block_io: BlockIo,
    pub hugepages: Vec<Hugepage>,
    pub network: Network,
    /// Device access rules, applied in order: a later rule overrides an
    /// earlier one for the devices both match.
    pub devices: Vec<DeviceRule>,
    pub rdma: Vec<Rdma>,
    /// cgroup v2 files written as given (`"memory.high": "1G"`).
    pub unified: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    /// Bytes of memory; -1 for no limit.
    pub limit: Option<i64>,
    /// The soft limit the kernel reclaims down to under pressure (v1
    /// `soft_limit_in_bytes`, v2 `memory.low`).
    pub reservation: Option<i64>,
    /// Memory *plus* swap, in bytes, as in v1's memsw; -1 for no limit.
    pub swap: Option<i64>,
    /// Kernel memory. Linux 6.x accepts and ignores it on v1, and v2
    /// counts it in the memory limit: it is written where the file exists.
    pub kernel: Option<i64>,
    /// Kernel memory for TCP buffers (v1 only; v2 counts it in the limit).
    pub kernel_tcp: Option<i64>,
    /// 0..=100: how readily the kernel swaps this group's memory (v1 only).
    pub swappiness: Option<u64>,
    /// Pause processes at the limit instead of OOM-killing one (v1 only).
    pub disable_oom_killer: Option<bool>,
    /// On update, refuse a limit below what is in use now (v2).
    pub check_before_update: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cpu {
    /// Relative weight, 1024 by default (v2: converted to `cpu.weight`).
    pub shares: Option<u64>,
    /// Microseconds of CPU time per period; -1 for no limit.
    pub quota: Option<i64>,
    pub period: Option<u64>,
    /// Extra microseconds a group may save up and use in a burst.
    pub burst: Option<u64>,
    /// Realtime scheduling budget per period (v1 only, needs the kernel's
    /// CONFIG_RT_GROUP_SCHED).
    pub realtime_runtime: Option<i64>,
    pub realtime_period: Option<u64>,
    /// CPUs and memory nodes, like `0-3,6`.
    pub cpus: Option<String>,
    pub mems: Option<String>,
    /// 1 runs the group at SCHED_IDLE priority.
    pub idle: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockIo {
    /// 10..=1000, relative to other groups on the same disk.
    pub weight: Option<u16>,
    /// Weight of the group's own tasks against its children (v1, CFQ only).
    pub leaf_weight: Option<u16>,
    pub weight_devices: Vec<WeightDevice>,
    pub throttle_read_bps: Vec<Throttle>,
    pub throttle_write_bps: Vec<Throttle>,
    pub throttle_read_iops: Vec<Throttle>,
    pub throttle_write_iops: Vec<Throttle>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightDevice {
    pub major: i64,
    pub minor: i64,
    pub weight: Option<u16>,
    pub leaf_weight: Option<u16>,
}

/// A rate limit on one block device: bytes or operations per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    pub major: i64,
    pub minor: i64,
    pub rate: u64,
}

/// Most bytes of huge pages of one size, like `"2MB"` or `"1GB"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hugepage {
    pub page_size: String,
    pub limit: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    /// Tag for the group's packets (`net_cls`), for tc and iptables.
    pub class_id: Option<u32>,
    /// Priority of the group's packets per interface (`net_prio`).
    pub priorities: Vec<InterfacePriority>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfacePriority {
    pub interface: String,
    pub priority: u32,
}

/// One device rule: allow or deny `access` to devices of `kind`, `major`
/// and `minor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    /// `'a'` (every device), `'c'` (character) or `'b'` (block). The spec's
    /// `'u'` is a character device too.
    pub kind: char,
    /// `None` (or negative) matches every number.
    pub major: Option<i64>,
    pub minor: Option<i64>,
    /// Some of `r`ead, `w`rite, `m`knod; empty means all three.
    pub access: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rdma {
    pub device: String,
    pub hca_handles: Option<u32>,
    pub hca_objects: Option<u32>,
}

impl Resources {
    /// A copy in which the zeros that mean "not set" are `None`, so the
    /// backends only ever see settings to write.
    pub(crate) fn effective(&self) -> Resources {
        let mut r = self.clone();
        let set_i = |v: &mut Option<i64>| *v = v.filter(|v| *v != 0);
        let set_u = |v: &mut Option<u64>| *v = v.filter(|v| *v != 0);
        set_i(&mut r.memory.limit);
        set_i(&mut r.memory.reservation);
        set_i(&mut r.memory.swap);
        set_i(&mut r.memory.kernel);
        set_i(&mut r.memory.kernel_tcp);
        set_u(&mut r.cpu.shares);
        set_i(&mut r.cpu.quota);
        set_u(&mut r.cpu.period);
        set_i(&mut r.cpu.realtime_runtime);
        set_u(&mut r.cpu.realtime_period);
        set_i(&mut r.pids);
        r.block_io.weight = r.block_io.weight.filter(|w| *w != 0);
        r.block_io.leaf_weight = r.block_io.leaf_weight.filter(|w| *w != 0);
        r.network.class_id = r.network.class_id.filter(|c| *c != 0);
        r
    }

    /// True when no setting is given at all.
    pub fn is_empty(&self) -> bool {
        self.effective() == Resources::default()
    }

    pub(crate) fn has_memory(&self) -> bool {
        self.memory != Memory::default()
    }

    pub(crate) fn has_cpu(&self) -> bool {
        let c = &self.cpu;
        c.shares.is_some()
            || c.quota.is_some()
            || c.period.is_some()
            || c.burst.is_some()
            || c.idle.is_some()
            || c.realtime_runtime.is_some()
            || c.realtime_period.is_some()
    }

    pub(crate) fn has_cpuset(&self) -> bool {
        self.cpu.cpus.is_some() || self.cpu.mems.is_some()
    }

    pub(crate) fn has_block_io(&self) -> bool {
        self.block_io != BlockIo::default()
    }
}

/// The error for a setting this host can't honour: which one, and why.
pub(crate) fn unsupported(setting: &str, why: impl std::fmt::Display) -> Error {
    Error::Other(format!("linux.resources.{setting} is set but {why}"))
}

/// Several of them at once, so the user fixes them all in one go.
pub(crate) fn all_of(problems: Vec<Error>) -> Result<(), Error> {
    match problems.len() {
        0 => Ok(()),
        1 => Err(problems.into_iter().next().expect("one problem")),
        _ => Err(Error::Other(
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )),
    }
}

// ANCHOR: conversions
/// v1's `cpu.shares` (2..=262144, default 1024) as v2's `cpu.weight`
/// (1..=10000, default 100), the way runc and crun map it, so that a
/// container gets the same share of the CPU on either version.
pub fn cpu_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// A block I/O weight (10..=1000) as v2's `io.weight` (1..=10000).
pub fn io_weight(weight: u16) -> u64 {
    let weight = u64::from(weight.clamp(10, 1000));
    1 + ((weight - 10) * 9999) / 990
}

/// v2's `memory.swap.max` limits swap alone, while the spec's `swap` (like
/// v1's memsw) is memory *plus* swap: subtract. `None` means "max".
pub fn v2_swap_max(swap: i64, memory: Option<i64>) -> Result<Option<i64>, Error> {
    if swap < 0 {
        return Ok(None);
    }
    match memory {
        Some(memory) if memory > 0 && swap >= memory => Ok(Some(swap - memory)),
        Some(memory) if memory > 0 => Err(Error::Other(format!(
            "linux.resources.memory.swap ({swap}) is memory plus swap, so it can't be below \
             linux.resources.memory.limit ({memory})"
        ))),
        _ => Err(Error::Other(
            "linux.resources.memory.swap is set without a memory limit; on cgroup v2 swap is \
             limited apart from memory, so give linux.resources.memory.limit as well"
                .into(),
        )),
    }
}
// ANCHOR_END: conversions

/// A limit as the kernel's files take it: a number, or `max`/-1 for none.
pub(crate) fn v2_limit(value: i64) -> String {
    if value < 0 {
        "max".into()
    } else {
        value.to_string()
    }
}

/// A device rule as the v1 devices controller reads it: `a`, or one kind
/// with a major and minor number (`None` is `*`) and access bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V1Rule {
    pub allow: bool,
    /// `'a'`, `'b'` or `'c'`.
    pub kind: char,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// [`READ`] | [`WRITE`] | [`MKNOD`].
    pub access: u8,
}

/// Access bits, as the kernel's eBPF device hook numbers them.
pub const MKNOD: u8 = 1;
pub const READ: u8 = 2;
pub const WRITE: u8 = 4;

impl std::fmt::Display for V1Rule {
    /// `c 1:3 rwm`, the notation of `devices.allow` and `devices.deny`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.kind == 'a' {
            return write!(f, "a");
        }
        let number = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        let access: String = [('r', READ), ('w', WRITE), ('m', MKNOD)]
            .iter()
            .filter(|(_, bit)| self.access & bit != 0)
            .map(|(c, _)| *c)
            .collect();
        write!(
            f,
            "{} {}:{} {access}",
            self.kind,
            number(self.major),
            number(self.minor)
        )
    }
}

impl DeviceRule {
    /// The rules v1 gets for this one. v1 reads *any* rule of kind `a` as
    /// "every device, every access", so a narrower `a` rule is spelled as
    /// one `c` and one `b` rule.
    pub fn v1_rules(&self) -> Result<Vec<V1Rule>, Error> {
        let access = self.access()?;
        let number = |n: Option<i64>, what: &str| match n {
            Some(n) if n >= 0 => u32::try_from(n).map(Some).map_err(|_| {
                Error::Other(format!(
                    "linux.resources.devices: {what} number {n} is out of range"
                ))
            }),
            _ => Ok(None),
        };
        let rule = |kind: char| -> Result<V1Rule, Error> {
            Ok(V1Rule {
                allow: self.allow,
                kind,
                major: number(self.major, "major")?,
                minor: number(self.minor, "minor")?,
                access,
            })
        };
        Ok(match self.kind()? {
            'a' if access == READ | WRITE | MKNOD && self.matches_any_number() => {
                vec![rule('a')?]
            }
            'a' => vec![rule('c')?, rule('b')?],
            kind => vec![rule(kind)?],
        })
    }

    /// The lines to write to v1's `devices.allow` or `devices.deny`.
    pub fn v1_lines(&self) -> Result<Vec<String>, Error> {
        Ok(self.v1_rules()?.iter().map(ToString::to_string).collect())
    }

    /// `a`, `b` or `c` (the spec's `u` is a character device).
    pub fn kind(&self) -> Result<char, Error> {
        match self.kind {
            'a' | 'b' | 'c' => Ok(self.kind),
            'u' => Ok('c'),
            other => Err(Error::Other(format!(
                "linux.resources.devices: type {other:?} is not a device type a cgroup can \
                 control; use a (all), c (character) or b (block)"
            ))),
        }
    }

    /// The access bits, checked; empty means all three.
    pub fn access(&self) -> Result<u8, Error> {
        let mut bits = 0;
        for c in self.access.chars() {
            bits |= match c {
                'r' => READ,
                'w' => WRITE,
                'm' => MKNOD,
                bad => {
                    return Err(Error::Other(format!(
                        "linux.resources.devices: access {:?} has {bad:?}; use letters of r \
                         (read), w (write) and m (mknod)",
                        self.access
                    )));
                }
            };
        }
        Ok(if bits == 0 {
            READ | WRITE | MKNOD
        } else {
            bits
        })
    }

    pub(crate) fn matches_any_number(&self) -> bool {
        self.major.is_none_or(|n| n < 0) && self.minor.is_none_or(|n| n < 0)
    }
}

/// The huge page sizes this host has, named as the cgroup files name them
/// (`2MB`, `1GB`), from /sys/kernel/mm/hugepages.
pub fn host_page_sizes() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let mut sizes: Vec<(u64, String)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some((kb, page_size_name(kb)))
        })
        .collect();
    sizes.sort();
    sizes.into_iter().map(|(_, name)| name).collect()
}

/// `2048` (kB) -> `2MB`: the kernel's names for huge page sizes.
pub fn page_size_name(kb: u64) -> String {
    let units = ["KB", "MB", "GB", "TB"];
    let mut size = kb;
    let mut unit = 0;
    while size >= 1024 && size.is_multiple_of(1024) && unit < units.len() - 1 {
        size /= 1024;
        unit += 1;
    }
    format!("{size}{}", units[unit])
}

/// Every huge page size in `hugepages` must be one this host has.
pub(crate) fn check_page_sizes(hugepages: &[Hugepage], host: &[String]) -> Vec<Error> {
    hugepages
        .iter()
        .filter(|h| !host.contains(&h.page_size))
        .map(|h| {
            Error::Other(format!(
                "linux.resources.hugepageLimits: page size {:?} is not one this host has \
                 (it has: {}; see /sys/kernel/mm/hugepages)",
                h.page_size,
                if host.is_empty() {
                    "none".to_string()
                } else {
                    host.join(", ")
                }
            ))
        })
        .collect()
}

/// A `unified` key names a file in the cgroup's own directory, nothing else.
pub(crate) fn check_unified_key(key: &str) -> Result<&str, Error> {
    let controller = key.split('.').next().unwrap_or_default();
    if key.contains('/') || !key.contains('.') || controller.is_empty() {
        return Err(Error::Other(format!(
            "linux.resources.unified: {key:?} is not a cgroup v2 file name like memory.high"
        )));
    }
    Ok(controller)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_become_weights_as_runc_converts_them() {
        assert_eq!(cpu_weight(2), 1);
        assert_eq!(cpu_weight(1024), 39);
        assert_eq!(cpu_weight(2048), 79);
        assert_eq!(cpu_weight(262_144), 10_000);
        assert_eq!(cpu_weight(1), 1, "below the range is clamped, not wrapped");
        assert_eq!(io_weight(10), 1);
        assert_eq!(io_weight(500), 4950);
        assert_eq!(io_weight(1000), 10_000);
    }

    #[test]
    fn swap_is_memory_plus_swap_in_the_spec() {
        assert_eq!(v2_swap_max(300, Some(100)).unwrap(), Some(200));
        assert_eq!(v2_swap_max(100, Some(100)).unwrap(), Some(0));
        assert_eq!(v2_swap_max(-1, Some(100)).unwrap(), None);
        let below = v2_swap_max(50, Some(100)).unwrap_err().to_string();
        assert!(below.contains("can't be below"), "{below}");
        let alone = v2_swap_max(50, None).unwrap_err().to_string();
        assert!(alone.contains("without a memory limit"), "{alone}");
    }

    #[test]
    fn zeros_mean_not_set() {
        let r = Resources {
            memory: Memory {
                limit: Some(0),
                swappiness: Some(0),
                ..Memory::default()
            },
            pids: Some(0),
            ..Resources::default()
        };
        let e = r.effective();
        assert_eq!(e.memory.limit, None);
        assert_eq!(e.memory.swappiness, Some(0), "swappiness 0 is a real value");
        assert_eq!(e.pids, None);
    }

    fn rule(
        allow: bool,
        kind: char,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> DeviceRule {
        DeviceRule {
            allow,
            kind,
            major,
            minor,
            access: access.into(),
        }
    }

    #[test]
    fn device_rules_in_v1_notation() {
        assert_eq!(
            rule(true, 'c', Some(10), Some(229), "rwm")
                .v1_lines()
                .unwrap(),
            ["c 10:229 rwm"]
        );
        assert_eq!(
            rule(true, 'b', Some(8), None, "wr").v1_lines().unwrap(),
            ["b 8:* rw"]
        );
        assert_eq!(
            rule(false, 'a', None, None, "rwm").v1_lines().unwrap(),
            ["a"]
        );
        assert_eq!(rule(false, 'a', None, None, "").v1_lines().unwrap(), ["a"]);
        // v1 would read "a *:* m" as everything: spell it out instead.
        assert_eq!(
            rule(true, 'a', None, None, "m").v1_lines().unwrap(),
            ["c *:* m", "b *:* m"]
        );
        assert_eq!(
            rule(true, 'u', Some(1), Some(3), "r").v1_lines().unwrap(),
            ["c 1:3 r"]
        );
        assert!(rule(true, 'p', None, None, "r").v1_lines().is_err());
        assert!(rule(true, 'c', None, None, "rx").v1_lines().is_err());
    }

    #[test]
    fn page_sizes_are_named_like_the_kernel_files() {
        assert_eq!(page_size_name(2048), "2MB");
        assert_eq!(page_size_name(1_048_576), "1GB");
        assert_eq!(page_size_name(64), "64KB");
        let host = vec!["2MB".to_string(), "1GB".to_string()];
        let wrong = check_page_sizes(
            &[Hugepage {
                page_size: "3MB".into(),
                limit: 1,
            }],
            &host,
        );
        assert_eq!(wrong.len(), 1);
        let message = wrong[0].to_string();
        assert!(
            message.contains("\"3MB\" is not one this host has (it has: 2MB, 1GB"),
            "{message}"
        );
    }

    #[test]
    fn unified_keys_are_file_names() {
        assert_eq!(check_unified_key("memory.high").unwrap(), "memory");
        assert!(check_unified_key("../memory.high").is_err());
        assert!(check_unified_key("memory").is_err());
    }
}
