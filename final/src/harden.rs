//! Secure defaults: what a container's processes may no longer do, even as
//! root inside. Namespaces decide what a process *sees*; these decide what
//! it may *do* with what it sees. They are Docker's defaults, applied in the
//! command's process between fork and exec (and in every `berth exec`):
//!
//! 1. **Masked and read-only /proc paths**: `/proc/kcore` (the host's
//!    memory), `/proc/sysrq-trigger`, `/proc/sys` and friends talk to the
//!    whole kernel, not to the container's namespaces.
//! 2. **Capabilities**: root's power split into ~40 pieces. The bounding set
//!    is cut to the list below, so not even a setuid binary gets more back.
//! 3. **no_new_privs**: exec can never raise privileges again.
//! 4. **seccomp**: system calls that reach past every namespace (loading
//!    kernel modules, `open_by_handle_at`, new user namespaces...) fail
//!    with EPERM.
//!
//! And one for the monitor: it is made non-dumpable, so a process in the
//! container can't open `/proc/1/exe` (our init is a copy of the monitor,
//! so that is the host's `berth` binary) to overwrite it (CVE-2019-5736).

use std::collections::BTreeMap;
use std::sync::Arc;

use caps::{CapSet, Capability, CapsHashSet};
use nix::mount::{MsFlags, mount};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use stage01_chroot::Error;
use stage02_namespaces::{BeforeExec, Process};

// ANCHOR: capabilities
/// Docker's default capabilities, less CAP_MKNOD: Docker keeps it because
/// its device cgroup stops containers from using the nodes they make;
/// berth has no device cgroup, so a container must not make device nodes.
pub const KEPT_CAPABILITIES: &[Capability] = &[
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];
// ANCHOR_END: capabilities

/// Hidden behind /dev/null (files) or an empty read-only tmpfs (directories).
const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

/// Visible, but read-only.
const READ_ONLY: &[&str] = &[
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

// ANCHOR: syscalls
/// System calls that fail with EPERM: each reaches past the namespaces (the
/// kernel's modules, clock, keyring, swap, other processes' memory) or is
/// a known way out of containers (`open_by_handle_at` opened host files in
/// the 2014 "shocker" escape).
fn blocked_syscalls() -> Vec<i64> {
    let mut calls = vec![
        libc::SYS_acct,
        libc::SYS_add_key,
        libc::SYS_bpf,
        libc::SYS_clock_adjtime,
        libc::SYS_clock_settime,
        libc::SYS_delete_module,
        libc::SYS_finit_module,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fsopen,
        libc::SYS_fspick,
        libc::SYS_init_module,
        libc::SYS_kcmp,
        libc::SYS_kexec_file_load,
        libc::SYS_kexec_load,
        libc::SYS_keyctl,
        libc::SYS_lookup_dcookie,
        libc::SYS_mount,
        libc::SYS_move_mount,
        libc::SYS_name_to_handle_at,
        libc::SYS_open_by_handle_at,
        libc::SYS_open_tree,
        libc::SYS_perf_event_open,
        libc::SYS_pivot_root,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_ptrace,
        libc::SYS_quotactl,
        libc::SYS_reboot,
        libc::SYS_request_key,
        libc::SYS_setns,
        libc::SYS_settimeofday,
        libc::SYS_swapoff,
        libc::SYS_swapon,
        libc::SYS_syslog,
        libc::SYS_umount2,
        libc::SYS_unshare,
        libc::SYS_userfaultfd,
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([
        libc::SYS_adjtimex,
        libc::SYS_iopl,
        libc::SYS_ioperm,
        libc::SYS_nfsservctl,
        libc::SYS__sysctl,
        libc::SYS_sysfs,
        libc::SYS_uselib,
        libc::SYS_ustat,
    ]);
    calls
}
// ANCHOR_END: syscalls

/// The hardening of one container, prepared before any fork: the filters
/// are compiled and the capability sets computed here, so that the step
/// between fork and exec only makes system calls.
pub struct Hardening {
    /// /proc paths to hide and to make read-only (the first process of a
    /// container does it; `exec` finds them done).
    masked: Vec<String>,
    read_only: Vec<String>,
    keep: CapsHashSet,
    drop_from_bounding: Vec<Capability>,
    no_new_privs: bool,
    filters: Vec<BpfProgram>,
    /// `USER[:GROUP]` to become, after the steps that need root's powers.
    user: Option<String>,
}

impl Hardening {
    /// Berth's defaults; `mask_paths` for a container's first process.
    pub fn new(mask_paths: bool) -> Result<Hardening, Error> {
        let list = |paths: &[&str]| match mask_paths {
            true => paths.iter().map(|p| p.to_string()).collect(),
            false => Vec::new(),
        };
        Ok(Hardening::custom(
            list(MASKED),
            list(READ_ONLY),
            KEPT_CAPABILITIES.iter().copied().collect(),
            true,
        )?
        .with_filters(seccomp_filters()?))
    }

    /// What an OCI bundle's config asks for (no seccomp filter).
    pub fn custom(
        masked: Vec<String>,
        read_only: Vec<String>,
        keep: CapsHashSet,
        no_new_privs: bool,
    ) -> Result<Hardening, Error> {
        let supported = caps::runtime::thread_all_supported();
        Ok(Hardening {
            masked,
            read_only,
            drop_from_bounding: supported.difference(&keep).copied().collect(),
            keep,
            no_new_privs,
            filters: Vec::new(),
            user: None,
        })
    }

    /// Berth's defaults for `process`, which hands its user over (see
    /// `with_user`).
    pub fn for_process(process: &mut Process, mask_paths: bool) -> Result<Hardening, Error> {
        Ok(Hardening::new(mask_paths)?.with_user(process.user.take()))
    }

    /// Become `user` (from the container's /etc/passwd) in the middle of
    /// `apply`: the process's `user` must then be left `None`, or the
    /// standard library would switch before `apply` runs, too early.
    pub fn with_user(mut self, user: Option<String>) -> Hardening {
        self.user = user;
        self
    }

    fn with_filters(mut self, filters: Vec<BpfProgram>) -> Hardening {
        self.filters = filters;
        self
    }

    /// As the step `namespaces::start` runs before the command's exec.
    pub fn into_before_exec(self) -> BeforeExec {
        BeforeExec(Arc::new(move || self.apply()))
    }

    // ANCHOR: apply
    /// In the container's process, in this order: paths (needs
    /// CAP_SYS_ADMIN, so first), capabilities, no_new_privs, then seccomp.
    pub fn apply(&self) -> std::io::Result<()> {
        mask_paths(&self.masked, &self.read_only)?;
        for cap in &self.drop_from_bounding {
            caps::drop(None, CapSet::Bounding, *cap).map_err(std::io::Error::other)?;
        }
        let keep = match &self.user {
            Some(user) => become_user(user, &self.keep)?,
            None => self.keep.clone(),
        };
        // Inheritable stays empty, as in runc since CVE-2022-24769: with it,
        // a file's inheritable capabilities could bring dropped ones back.
        for set in [CapSet::Ambient, CapSet::Inheritable] {
            caps::clear(None, set).map_err(std::io::Error::other)?;
        }
        for set in [CapSet::Effective, CapSet::Permitted] {
            caps::set(None, set, &keep).map_err(std::io::Error::other)?;
        }
        if self.no_new_privs {
            nix::sys::prctl::set_no_new_privs()?;
        }
        for filter in &self.filters {
            seccompiler::apply_filter(filter).map_err(std::io::Error::other)?;
        }
        Ok(())
    }
    // ANCHOR_END: apply
}

/// The filters: the blocked calls fail with EPERM; `clone` may not make a
/// user namespace (that would hand back every capability inside it); and
/// `clone3` answers ENOSYS, since its flags sit in memory a filter can't
/// read, so that C libraries fall back to `clone`, which we can check.
fn seccomp_filters() -> Result<Vec<BpfProgram>, Error> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| Error::Other(format!("seccomp: {e}")))?;
    let compile =
        |rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32| -> Result<BpfProgram, Error> {
            SeccompFilter::new(
                rules,
                SeccompAction::Allow,
                SeccompAction::Errno(errno as u32),
                arch,
            )
            .and_then(BpfProgram::try_from)
            .map_err(|e| Error::Other(format!("build the seccomp filter: {e}")))
        };
    let mut blocked: BTreeMap<i64, Vec<SeccompRule>> = blocked_syscalls()
        .into_iter()
        .map(|call| (call, Vec::new()))
        .collect();
    let new_user_namespace = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(libc::CLONE_NEWUSER as u64),
        libc::CLONE_NEWUSER as u64,
    )
    .and_then(|condition| SeccompRule::new(vec![condition]))
    .map_err(|e| Error::Other(format!("build the seccomp filter: {e}")))?;
    blocked.insert(libc::SYS_clone, vec![new_user_namespace]);
    let clone3 = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
    Ok(vec![
        compile(blocked, libc::EPERM)?,
        compile(clone3, libc::ENOSYS)?,
    ])
}

fn mask_paths(masked: &[String], read_only: &[String]) -> std::io::Result<()> {
    for path in masked.iter().map(String::as_str) {
        let Ok(meta) = std::fs::metadata(path) else {
            continue; // not on this kernel
        };
        let (source, fstype, flags) = match meta.is_dir() {
            true => ("tmpfs", Some("tmpfs"), MsFlags::MS_RDONLY),
            false => ("/dev/null", None, MsFlags::MS_BIND),
        };
        mount(Some(source), path, fstype, flags, None::<&str>)?;
    }
    for path in read_only.iter().map(String::as_str) {
        if std::fs::metadata(path).is_err() {
            continue;
        }
        let bind = MsFlags::MS_BIND | MsFlags::MS_REC;
        mount(Some(path), path, None::<&str>, bind, None::<&str>)?;
        let read_only = bind | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(None::<&str>, path, None::<&str>, read_only, None::<&str>)?;
    }
    Ok(())
}

/// Switch to `user`; the capabilities it may keep: all of `keep` for root,
/// none for another user, as Docker does.
fn become_user(user: &str, keep: &CapsHashSet) -> std::io::Result<CapsHashSet> {
    let (uid, gid) = stage02_namespaces::process::user_ids(user).map_err(std::io::Error::other)?;
    let (uid, gid) = (
        nix::unistd::Uid::from_raw(uid),
        nix::unistd::Gid::from_raw(gid),
    );
    nix::unistd::setgroups(&[gid])?;
    nix::unistd::setresgid(gid, gid, gid)?;
    nix::unistd::setresuid(uid, uid, uid)?;
    Ok(match uid.is_root() {
        true => keep.clone(),
        false => CapsHashSet::new(),
    })
}

/// Make the calling process non-dumpable; see the module's last paragraph.
pub fn protect_our_binary() -> Result<(), Error> {
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| Error::Other(format!("prctl(PR_SET_DUMPABLE, 0): {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_compile_for_this_machine() {
        let hardening = Hardening::new(true).unwrap();
        assert_eq!(hardening.filters.len(), 2);
        assert!(!hardening.keep.contains(&Capability::CAP_SYS_ADMIN));
        assert!(!hardening.keep.contains(&Capability::CAP_MKNOD));
        assert!(
            hardening
                .drop_from_bounding
                .contains(&Capability::CAP_SYS_ADMIN)
        );
        assert!(
            !hardening
                .drop_from_bounding
                .contains(&Capability::CAP_CHOWN)
        );
    }

    #[test]
    fn blocked_calls_are_unique() {
        let calls = blocked_syscalls();
        let unique: std::collections::BTreeSet<_> = calls.iter().collect();
        assert_eq!(unique.len(), calls.len());
    }
}
