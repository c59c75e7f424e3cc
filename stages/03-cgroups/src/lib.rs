//! Stage 03 of Berth: limits, with control groups.
//!
//! Namespaces decide what a container can *see*; cgroups decide how much it
//! can *use*. A cgroup is a directory in a special file system: processes are
//! put in it by writing their PID to `cgroup.procs`, and limits are set by
//! writing to its other files (`memory.max`, `cpu.max`, `pids.max`, ...).
//!
//! Linux has two versions of that file system, and many hosts still run the
//! old one, or both at once (hybrid). [`layout`] finds out which one this
//! host has; [`v2`] and [`v1`] are the two backends behind one [`Cgroup`]
//! trait; [`limits`] parses `--memory`, `--cpus` and `--pids-limit`.
//!
//! An OCI runtime needs more: every setting of the spec's
//! `linux.resources` ([`resources`]), a cgroup at the path the spec names
//! ([`cgroup::target`]), found again from another process
//! ([`cgroup::open`]), frozen, thawed and updated ([`Manage`]). On cgroup
//! v2, device rules are an eBPF program ([`bpf`]).

pub mod bpf;
pub mod cgroup;
pub mod layout;
pub mod limits;
pub mod resources;
pub mod v1;
pub mod v2;

pub use cgroup::{Cgroup, Manage, Target, Usage, create, open, report, target};
pub use limits::Limits;
pub use resources::Resources;
