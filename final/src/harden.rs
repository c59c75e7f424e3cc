//! Secure defaults: what a container's processes may no longer do, even as
//! root inside. Namespaces decide what a process *sees*; these decide what
//! it may *do* with what it sees. They are Docker's defaults, applied in the
//! command's process between fork and exec (and in every `berth exec`):
//!
//! 1. **A session of its own**: the caller's terminal, if the command
//!    shares it (no `-t`), is not its controlling terminal, so it can't
//!    push keystrokes into the caller's shell with `TIOCSTI`.
//! 2. **Masked and read-only /proc paths**: `/proc/kcore` (the host's
//!    memory), `/proc/sysrq-trigger`, `/proc/sys` and friends talk to the
//!    whole kernel, not to the container's namespaces.
//! 3. **Capabilities**: root's power split into ~40 pieces. The bounding set
//!    is cut to the list below, so not even a setuid binary gets more back.
//! 4. **no_new_privs**: exec can never raise privileges again.
//! 5. **seccomp**: system calls that reach past every namespace (loading
//!    kernel modules, `open_by_handle_at`, new user namespaces, io_uring...)
//!    fail with EPERM.
//!
//! What berth hands the container is guarded elsewhere: only the three
//! standard streams cross (stage 02's `to_command`), and berth runs from a
//! read-only view of its own binary (`guard`), so a process inside that
//! gets hold of it through `/proc/PID/exe` can't overwrite it
//! (CVE-2019-5736).

use std::ffi::CStr;
use std::sync::Arc;

use caps::{CapSet, Capability, CapsHashSet};
use nix::mount::{MsFlags, mount};
use seccompiler::BpfProgram;
#[cfg(test)]
use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch,
};
use stage01_chroot::Error;
use stage02_namespaces::{BeforeExec, UserIds};
#[cfg(test)]
use std::collections::BTreeMap;

// ANCHOR: capabilities
/// Docker's default capabilities, less two, as Podman does:
/// - CAP_MKNOD: Docker keeps it because its device cgroup stops containers
///   from using the nodes they make; berth has no device cgroup, so a
///   container must not make device nodes.
/// - CAP_NET_RAW: raw sockets let a container forge any packet on its
///   network, such as ARP replies that steal a neighbour's address. `ping`
///   works without it, through ICMP sockets (see `OPEN_PING`).
pub const KEPT_CAPABILITIES: &[Capability] = &[
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
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

/// The capabilities a container keeps: the defaults, less `drop`, plus
/// `add`, each a name as [`parse_capability`] gives it; `ALL` in `drop`
/// starts from none, in `add` gives every one (as Docker reads them).
pub fn capabilities(add: &[String], drop: &[String]) -> Result<CapsHashSet, Error> {
    let mut keep: CapsHashSet = KEPT_CAPABILITIES.iter().copied().collect();
    let named = |name: &String| -> Result<Capability, Error> {
        format!("CAP_{name}")
            .parse::<Capability>()
            .map_err(|_| Error::Other(format!("unknown capability {name}")))
    };
    if drop.iter().any(|name| name == "ALL") {
        keep.clear();
    }
    for name in drop.iter().filter(|name| *name != "ALL") {
        keep.remove(&named(name)?);
    }
    if add.iter().any(|name| name == "ALL") {
        keep.extend(caps::runtime::thread_all_supported());
    }
    for name in add.iter().filter(|name| *name != "ALL") {
        keep.insert(named(name)?);
    }
    Ok(keep)
}

/// `--cap-add`/`--cap-drop`'s argument: `NET_RAW`, `net_raw`,
/// `CAP_NET_RAW` or `ALL`, as `NET_RAW` or `ALL`.
pub fn parse_capability(text: &str) -> Result<String, String> {
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("CAP_").unwrap_or(&upper);
    if name == "ALL" || format!("CAP_{name}").parse::<Capability>().is_ok() {
        return Ok(name.to_string());
    }
    Err(format!(
        "{text:?} is not a capability: use a name from capabilities(7) such as NET_RAW or \
         SYS_PTRACE (with or without CAP_), or ALL"
    ))
}

/// Lets every group ping through ICMP sockets, as Docker does: the way
/// `ping` works without CAP_NET_RAW. The setting belongs to the container's
/// network namespace, so the host's stays as it was.
const OPEN_PING: (&CStr, &[u8]) = (c"/proc/sys/net/ipv4/ping_group_range", b"0 2147483647");

/// Hidden behind /dev/null (files) or an empty read-only tmpfs (directories).
pub const MASKED: &[&str] = &[
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
pub const READ_ONLY: &[&str] = &[
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

// ANCHOR: syscalls
/// System calls that fail with EPERM. Docker's default profile lists what
/// is allowed and refuses the rest; berth lists what is refused. Each
/// reaches past the namespaces (the kernel's modules, clock, keyring, swap,
/// NUMA memory policy, other processes' memory and files), is a known way
/// out of containers (`open_by_handle_at` opened host files in the 2014
/// "shocker" escape), or does its work where no filter can see it
/// (io_uring runs the calls queued in its rings, past seccomp).
fn blocked_syscalls() -> Vec<i64> {
    let mut calls = vec![
        libc::SYS_acct,
        libc::SYS_add_key,
        libc::SYS_bpf,
        libc::SYS_clock_settime,
        libc::SYS_delete_module,
        libc::SYS_fanotify_init,
        libc::SYS_finit_module,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fsopen,
        libc::SYS_fspick,
        libc::SYS_get_mempolicy,
        libc::SYS_init_module,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_io_uring_setup,
        libc::SYS_kcmp,
        libc::SYS_kexec_file_load,
        libc::SYS_kexec_load,
        libc::SYS_keyctl,
        libc::SYS_lookup_dcookie,
        libc::SYS_mbind,
        libc::SYS_migrate_pages,
        libc::SYS_mount,
        libc::SYS_mount_setattr,
        libc::SYS_move_mount,
        libc::SYS_move_pages,
        libc::SYS_name_to_handle_at,
        libc::SYS_open_by_handle_at,
        libc::SYS_open_tree,
        libc::SYS_perf_event_open,
        libc::SYS_pidfd_getfd,
        libc::SYS_pivot_root,
        libc::SYS_process_madvise,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_ptrace,
        libc::SYS_quotactl,
        libc::SYS_quotactl_fd,
        libc::SYS_reboot,
        libc::SYS_request_key,
        libc::SYS_set_mempolicy,
        libc::SYS_set_mempolicy_home_node,
        libc::SYS_setdomainname,
        libc::SYS_sethostname,
        libc::SYS_setns,
        libc::SYS_settimeofday,
        libc::SYS_swapoff,
        libc::SYS_swapon,
        libc::SYS_syslog,
        libc::SYS_umount2,
        libc::SYS_unshare,
        libc::SYS_userfaultfd,
        libc::SYS_vhangup,
        SYS_OPEN_TREE_ATTR,
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([
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

/// open_tree_attr(2), Linux 6.15: open_tree that can also set a mount's
/// attributes. Numbers from 424 on are the same on every architecture;
/// the libc crate doesn't name this one yet.
const SYS_OPEN_TREE_ATTR: i64 = 467;

// ANCHOR_END: syscalls

/// Calls refused only with some arguments (each rule: all its conditions
/// hold). 32-bit comparisons where the kernel reads 32 bits, so that high
/// bits set in a 64-bit register can't slip a value past the filter. (The
/// same rules as [`berth_default_profile`]'s, in seccompiler's terms, for
/// the test that compares the two.)
#[cfg(test)]
fn blocked_with_arguments() -> Result<Vec<(i64, Vec<SeccompRule>)>, Error> {
    let arg = |index, len, op, value| SeccompCondition::new(index, len, op, value);
    let rule = |conditions: Vec<Result<SeccompCondition, seccompiler::BackendError>>| {
        conditions
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .and_then(SeccompRule::new)
            .map_err(|e| Error::Other(format!("build the seccomp filter: {e}")))
    };
    use SeccompCmpArgLen::{Dword, Qword};
    use SeccompCmpOp::{Eq, MaskedEq, Ne};
    // A new user namespace would hand back every capability inside it.
    let user_namespace = libc::CLONE_NEWUSER as u64;
    let clone = rule(vec![arg(
        0,
        Qword,
        MaskedEq(user_namespace),
        user_namespace,
    )])?;
    // Typing into a terminal that isn't ours (TIOCSTI), or pasting into a
    // console (TIOCLINUX). (The request's type differs between C libraries.)
    #[allow(clippy::unnecessary_cast)]
    let ioctl = vec![
        rule(vec![arg(1, Dword, Eq, libc::TIOCSTI as u64)])?,
        rule(vec![arg(1, Dword, Eq, libc::TIOCLINUX as u64)])?,
    ];
    // Execution domains other than Linux's own (and the query, 0xffffffff)
    // change how the kernel reads a process's memory layout.
    let personality = rule(
        [0u64, 0x0008, 0x20000, 0x20008, 0xffff_ffff]
            .into_iter()
            .map(|allowed| arg(0, Dword, Ne, allowed))
            .collect(),
    )?;
    // Sockets to the hypervisor (AF_VSOCK) leave the host's networks behind.
    let socket = rule(vec![arg(0, Dword, Eq, libc::AF_VSOCK as u64)])?;
    Ok(vec![
        (libc::SYS_clone, vec![clone]),
        (libc::SYS_ioctl, ioctl),
        (libc::SYS_personality, vec![personality]),
        (libc::SYS_socket, vec![socket]),
    ])
}

/// The hardening of one container, prepared before any fork: the filters
/// are compiled and the capability sets computed here, so that the step
/// between fork and exec only makes system calls.
pub struct Hardening {
    /// /proc paths to hide and to make read-only (the first process of a
    /// container does it; `exec` finds them done).
    masked: Vec<String>,
    read_only: Vec<String>,
    /// Open ICMP sockets to all groups (the first process, too).
    open_ping: bool,
    capabilities: CapabilitySets,
    drop_from_bounding: Vec<Capability>,
    /// True: the sets hold whoever the process becomes (the OCI runtime,
    /// as runc). False: a user other than root gets none, as in Docker.
    users_keep_capabilities: bool,
    /// Supplementary groups beside the user's own (the OCI runtime's
    /// `additionalGids`).
    additional_gids: Vec<u32>,
    no_new_privs: bool,
    filters: Vec<BpfProgram>,
}

/// The five capability sets of a process (capabilities(7)): the most it
/// can ever have (bounding), what it may use (permitted), what it uses
/// (effective), and what passes over an exec (inheritable, ambient).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapabilitySets {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub permitted: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub ambient: CapsHashSet,
}

impl CapabilitySets {
    /// Berth's: `keep` to hold and to use; nothing inheritable, as in runc
    /// since CVE-2022-24769 (with it, a file's inheritable capabilities
    /// could bring dropped ones back).
    pub fn keeping(keep: CapsHashSet) -> CapabilitySets {
        CapabilitySets {
            bounding: keep.clone(),
            effective: keep.clone(),
            permitted: keep,
            ..CapabilitySets::default()
        }
    }
}

/// What init calls itself inside a hardened container (see stage 02's
/// `BeforeExec`): a name, not the host path of berth and its arguments.
pub const INIT_TITLE: &str = "berth-init";

impl Hardening {
    /// Berth's defaults with the default capabilities; `first_process` for
    /// a container's first process, which also masks /proc and opens ping
    /// to all groups.
    pub fn new(first_process: bool) -> Result<Hardening, Error> {
        Hardening::keeping(first_process, KEPT_CAPABILITIES.iter().copied().collect())
    }

    /// Berth's defaults, keeping the capabilities `keep` (see [`capabilities`]).
    pub fn keeping(first_process: bool, keep: CapsHashSet) -> Result<Hardening, Error> {
        let list = |paths: &[&str]| match first_process {
            true => paths.iter().map(|p| p.to_string()).collect(),
            false => Vec::new(),
        };
        let capabilities = CapabilitySets::keeping(keep);
        let mut hardening = Hardening::custom(list(MASKED), list(READ_ONLY), capabilities, true)?;
        hardening.users_keep_capabilities = false;
        hardening.open_ping = first_process;
        // The one default filter, compiled from its OCI form as the
        // runtime compiles any bundle's (which also answers calls of the
        // x32 ABI, which seccompiler alone lets through, with ENOSYS).
        hardening.filters = crate::runtime::seccomp::filters_of(Some(&berth_default_profile()))?;
        Ok(hardening)
    }

    /// What an OCI bundle's config asks for (no seccomp filter): its sets
    /// hold whoever the process becomes.
    pub fn custom(
        masked: Vec<String>,
        read_only: Vec<String>,
        capabilities: CapabilitySets,
        no_new_privs: bool,
    ) -> Result<Hardening, Error> {
        let supported = caps::runtime::thread_all_supported();
        Ok(Hardening {
            masked,
            read_only,
            open_ping: false,
            drop_from_bounding: supported
                .difference(&capabilities.bounding)
                .copied()
                .collect(),
            capabilities,
            users_keep_capabilities: true,
            additional_gids: Vec::new(),
            no_new_privs,
            filters: Vec::new(),
        })
    }

    /// Supplementary groups for the process, beside its user's group.
    pub fn with_additional_gids(mut self, gids: Vec<u32>) -> Hardening {
        self.additional_gids = gids;
        self
    }

    /// More seccomp filters, after those it has (an OCI bundle's
    /// `linux.seccomp`, compiled by [`crate::runtime::seccomp`]).
    pub fn with_filters(mut self, mut filters: Vec<BpfProgram>) -> Hardening {
        self.filters.append(&mut filters);
        self
    }

    /// As the step `namespaces::start` runs before the command's exec.
    pub fn into_before_exec(self) -> BeforeExec {
        BeforeExec {
            step: Arc::new(move |user| self.apply(user)),
            init_title: Some(INIT_TITLE),
            init_program: None,
        }
    }

    // ANCHOR: apply
    /// In the container's process, in this order: its own session; paths
    /// and sysctls (they need CAP_SYS_ADMIN, so first); capabilities, with
    /// the switch to `user` in their midst; no_new_privs; then seccomp.
    /// Without no_new_privs (an OCI bundle may ask for that, so that setuid
    /// programs keep working), installing a filter takes CAP_SYS_ADMIN:
    /// then seccomp comes before the capabilities go, as in runc, and
    /// judges the steps after it too.
    pub fn apply(&self, user: Option<UserIds>) -> std::io::Result<()> {
        own_session()?;
        if self.open_ping {
            write_proc_file(OPEN_PING.0, OPEN_PING.1)?;
        }
        mask_paths(&self.masked, &self.read_only)?;
        if !self.no_new_privs {
            install_filters(&self.filters)?;
        }
        for cap in &self.drop_from_bounding {
            caps::drop(None, CapSet::Bounding, *cap).map_err(std::io::Error::other)?;
        }
        let mut keeps_capabilities = true;
        if let Some(user) = user {
            keeps_capabilities = user.uid == 0 || self.users_keep_capabilities;
            become_user(user, &self.additional_gids, keeps_capabilities)?;
        }
        match keeps_capabilities {
            true => set_capabilities(&self.capabilities)?,
            false => set_capabilities(&CapabilitySets::default())?,
        }
        if self.no_new_privs {
            nix::sys::prctl::set_no_new_privs()?;
            install_filters(&self.filters)?;
        }
        Ok(())
    }
    // ANCHOR_END: apply
}

/// Install `filters` on this thread, in order, with seccomp(2) itself:
/// `seccompiler::apply_filter` would also set no_new_privs, which is not
/// ours to set when an OCI bundle says no.
fn install_filters(filters: &[BpfProgram]) -> std::io::Result<()> {
    for filter in filters {
        let program = libc::sock_fprog {
            len: u16::try_from(filter.len())
                .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?,
            // seccompiler's `sock_filter` is the kernel's, field for field.
            filter: filter.as_ptr().cast::<libc::sock_filter>().cast_mut(),
        };
        // SAFETY: `program` points into `filter`, which outlives the call;
        // the kernel copies it and writes nothing back.
        let done = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &program as *const libc::sock_fprog,
            )
        };
        if done != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Leave the caller's session, unless we lead one already (with `-t`, the
/// container's own terminal made us): a terminal we share but that is not
/// our controlling terminal takes no `TIOCSTI` from us.
fn own_session() -> std::io::Result<()> {
    // SAFETY: getsid and getpid only read.
    let leader = unsafe { libc::getsid(0) == libc::getpid() };
    if !leader {
        nix::unistd::setsid()?;
    }
    Ok(())
}

/// Write `value` to a file under /proc, with plain system calls: we are
/// between fork and exec.
pub fn write_proc_file(path: &CStr, value: &[u8]) -> std::io::Result<()> {
    // SAFETY: a NUL-terminated path; the descriptor is ours and closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `value` is valid for its length.
    let written = unsafe { libc::write(fd, value.as_ptr().cast(), value.len()) };
    let result = match written < 0 {
        true => Err(std::io::Error::last_os_error()),
        false => Ok(()),
    };
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(fd) };
    result
}

/// Berth's default filter ([`seccomp_filters`]) in the words of an OCI
/// bundle's `linux.seccomp`, for the engine to write into the bundles it
/// makes: `berth-runtime` compiles it to filters that refuse the same calls
/// with the same arguments (a test runs both on the same calls).
///
/// Two things take care. OCI compares all 64 bits of an argument, where the
/// kernel reads only 32 of `ioctl`'s request, `socket`'s domain and
/// `personality`'s persona: those compare under a 32-bit mask. And one OCI
/// rule can't compare an argument twice (runc makes each comparison a rule
/// of its own, any of which matches), so "the persona is none of five
/// values" takes the rules of [`personality_rules`].
pub fn berth_default_profile() -> serde_json::Value {
    use crate::runtime::seccomp::syscall_name;
    let refuse = |names: Vec<&str>, errno: i32, args: serde_json::Value| {
        serde_json::json!({
            "names": names,
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": errno,
            "args": args,
        })
    };
    // (argument & mask) == value
    let masked = |index: u32, mask: u64, value: u64| {
        let op = "SCMP_CMP_MASKED_EQ";
        serde_json::json!([{"index": index, "value": mask, "valueTwo": value, "op": op}])
    };
    let low_32_bits = 0xffff_ffff;
    let new_user = libc::CLONE_NEWUSER as u64;
    let names = blocked_syscalls()
        .into_iter()
        .filter_map(syscall_name)
        .collect();
    let mut rules = vec![
        refuse(names, libc::EPERM, serde_json::json!([])),
        refuse(vec!["clone"], libc::EPERM, masked(0, new_user, new_user)),
        #[allow(clippy::unnecessary_cast)]
        refuse(
            vec!["ioctl"],
            libc::EPERM,
            masked(1, low_32_bits, libc::TIOCSTI as u64),
        ),
        #[allow(clippy::unnecessary_cast)]
        refuse(
            vec!["ioctl"],
            libc::EPERM,
            masked(1, low_32_bits, libc::TIOCLINUX as u64),
        ),
        refuse(
            vec!["socket"],
            libc::EPERM,
            masked(0, low_32_bits, libc::AF_VSOCK as u64),
        ),
        refuse(vec!["clone3"], libc::ENOSYS, serde_json::json!([])),
    ];
    for (mask, value) in personality_rules() {
        rules.push(refuse(
            vec!["personality"],
            libc::EPERM,
            masked(0, mask, value),
        ));
    }
    let arch = match std::env::consts::ARCH {
        "aarch64" => "SCMP_ARCH_AARCH64",
        "riscv64" => "SCMP_ARCH_RISCV64",
        _ => "SCMP_ARCH_X86_64",
    };
    serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": [arch],
        "syscalls": rules,
    })
}

/// `personality` is refused unless its persona (32 bits) is one of 0, 8,
/// 0x20000, 0x20008 (Linux, with or without PER_LINUX32 and UNAME26) or
/// 0xffffffff (the query): as (mask, value) pairs, any of which matches a
/// refused persona. Any other persona has a bit set outside bits 3 and 17
/// and, not being 0xffffffff, a bit clear. Going up from that set bit
/// (round from bit 31 to bit 0) to the first clear one, the last set bit
/// before it is either outside 3 and 17 (a rule "bit i set, bit i+1
/// clear") or is 3 or 17, reached from 2 or 16 (a rule "bits 2 and 3 set,
/// 4 clear", or 16 to 18 alike). None of the five allowed values matches.
fn personality_rules() -> Vec<(u64, u64)> {
    let mut rules: Vec<(u64, u64)> = (0..32u32)
        .filter(|bit| *bit != 3 && *bit != 17)
        .map(|bit| {
            let (this, next) = (1u64 << bit, 1u64 << ((bit + 1) % 32));
            (this | next, this)
        })
        .collect();
    rules.push((0b111 << 2, 0b011 << 2));
    rules.push((0b111 << 16, 0b011 << 16));
    rules
}

/// The filters: the blocked calls fail with EPERM, some only with the
/// arguments `blocked_with_arguments` names; and `clone3` answers ENOSYS,
/// since its flags sit in memory a filter can't read, so that C libraries
/// fall back to `clone`, which we can check. Built directly with
/// seccompiler, for the test that proves [`berth_default_profile`] says the
/// same; containers get the profile, compiled.
#[cfg(test)]
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
    blocked.extend(blocked_with_arguments()?);
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

/// Switch to `user`, with `additional` groups beside its own. Leaving
/// root empties the permitted set, unless `keep_capabilities` asks the
/// kernel to keep it (PR_SET_KEEPCAPS) for `set_capabilities` to set.
fn become_user(user: UserIds, additional: &[u32], keep_capabilities: bool) -> std::io::Result<()> {
    let gid = nix::unistd::Gid::from_raw(user.gid);
    let mut groups = [gid; 33];
    let count = 1 + additional.len().min(groups.len() - 1);
    for (slot, extra) in groups[1..count].iter_mut().zip(additional) {
        *slot = nix::unistd::Gid::from_raw(*extra);
    }
    nix::unistd::setgroups(&groups[..count])?;
    nix::unistd::setresgid(gid, gid, gid)?;
    if keep_capabilities {
        nix::sys::prctl::set_keepcaps(true)?;
    }
    let uid = nix::unistd::Uid::from_raw(user.uid);
    nix::unistd::setresuid(uid, uid, uid)?;
    Ok(())
}

/// Set the sets other than bounding, in an order the kernel accepts: the
/// inheritable set while the permitted one is still whole, the permitted
/// set only once the effective one fits in it, the ambient set last (it
/// needs both).
fn set_capabilities(sets: &CapabilitySets) -> std::io::Result<()> {
    let set =
        |which, caps: &CapsHashSet| caps::set(None, which, caps).map_err(std::io::Error::other);
    caps::clear(None, CapSet::Ambient).map_err(std::io::Error::other)?;
    set(CapSet::Inheritable, &sets.inheritable)?;
    set(CapSet::Effective, &sets.effective)?;
    set(CapSet::Permitted, &sets.permitted)?;
    set(CapSet::Ambient, &sets.ambient)
}

/// Make the calling process non-dumpable: then only a process with
/// CAP_SYS_PTRACE may open its /proc/PID/exe, /proc/PID/fd and the like.
/// Init and `exec`'s child are copies of us, made after this.
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
        let kept = &hardening.capabilities.permitted;
        assert!(!kept.contains(&Capability::CAP_SYS_ADMIN));
        assert!(!kept.contains(&Capability::CAP_MKNOD));
        assert!(!kept.contains(&Capability::CAP_NET_RAW));
        assert!(hardening.capabilities.inheritable.is_empty());
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
    fn the_default_profile_refuses_what_the_default_filters_refuse() {
        use crate::runtime::seccomp::tests::{Call, outcome};
        let ours = seccomp_filters().unwrap();
        let profile = berth_default_profile();
        let compiled = crate::runtime::seccomp::filters_of(Some(&profile)).unwrap();
        assert_eq!(
            profile["syscalls"][0]["names"].as_array().unwrap().len(),
            blocked_syscalls().len(),
            "every blocked call has a name"
        );
        let same = |nr: u32, args: [u64; 6]| {
            let call = Call {
                arch: 0xc000_003e,
                nr,
                args,
            };
            assert_eq!(
                outcome(&ours, &call),
                outcome(&compiled, &call),
                "call {nr} with {args:x?}"
            );
        };
        #[allow(clippy::unnecessary_cast)]
        let (tiocsti, tioclinux) = (libc::TIOCSTI as u64, libc::TIOCLINUX as u64);
        let new_user = libc::CLONE_NEWUSER as u64;
        let firsts = [
            0,
            1,
            8,
            0x20000,
            0x20008,
            0xffff_ffff,
            0xffff_fffe,
            0x0004_0000,
            0x0040_0000,
            0x1_0000_0000,
            0x1_0000_0008,
            new_user,
            new_user | libc::SIGCHLD as u64,
            new_user << 32,
            libc::AF_VSOCK as u64,
            libc::AF_VSOCK as u64 | 1 << 32,
            libc::AF_INET as u64,
        ];
        let seconds = [0, 9, tiocsti, tioclinux, tiocsti | 1 << 32, tiocsti + 1];
        for nr in 0..=470 {
            for first in firsts {
                for second in seconds {
                    same(nr, [first, second, 0, 0, 0, 0]);
                }
            }
        }
        // personality's persona, more thoroughly: every value with one or
        // two bits set or clear, and some others.
        let personality = libc::SYS_personality as u32;
        let mut persona = 0x2545_f491_u64;
        for a in 0..32 {
            for b in 0..32 {
                let bits = 1u64 << a | 1u64 << b;
                same(personality, [bits, 0, 0, 0, 0, 0]);
                same(personality, [!bits & 0xffff_ffff, 0, 0, 0, 0, 0]);
                persona = persona
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                same(personality, [persona >> 32, 0, 0, 0, 0, 0]);
                same(personality, [persona, 0, 0, 0, 0, 0]);
            }
        }
    }

    #[test]
    fn blocked_calls_are_unique() {
        let calls = blocked_syscalls();
        let unique: std::collections::BTreeSet<_> = calls.iter().collect();
        assert_eq!(unique.len(), calls.len());
    }
}
