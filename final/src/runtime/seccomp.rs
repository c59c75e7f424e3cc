//! config.json's `linux.seccomp`: a profile of system calls and what the
//! kernel does when the container makes them, compiled to BPF programs
//! with `seccompiler` and installed by [`crate::harden::Hardening`] just
//! before the command's exec (and in every `exec`'d process).
//!
//! A profile has a default action and rules; each rule names system calls,
//! an action, and maybe conditions on the arguments. seccompiler builds
//! filters with one action on a match and one otherwise, so a profile
//! becomes several filters, and the kernel, which runs every filter a
//! process has, keeps the most restrictive answer (kill the process, kill
//! the thread, trap, errno, trace, log, allow: in that order):
//!
//! - a *base* filter: every call a rule names (with its conditions) is
//!   allowed, anything else gets the default action;
//! - one filter per other action: the calls its rules name get it, the rest
//!   are allowed (by this filter: the base one still judges them).
//!
//! A call no rule names gets the default from the base filter and "allow"
//! from the others: the default. A call a rule names gets "allow" from the
//! base filter and its action from that action's filter. Where the profile
//! is less clear, berth does what runc (through libseccomp) does:
//!
//! - a rule with the default action is skipped;
//! - a system call this machine does not know is skipped;
//! - the conditions of a rule must all hold, except when one argument is
//!   compared twice: then any of them is enough (libseccomp can't compare
//!   one argument twice, so runc makes each its own rule);
//! - the first rule naming a call with no conditions decides that call
//!   alone (libseccomp drops later ones, and conditional ones);
//! - where conditional rules with different actions match the same call,
//!   libseccomp's answer depends on how it lays out its decision tree;
//!   berth takes the most restrictive one, and between two errnos the
//!   earlier rule's;
//! - with a default that refuses (not allow, log or trace), calls newer
//!   than the newest one the profile names answer ENOSYS, as runc's patch
//!   does: C libraries then fall back to older calls, where EPERM would be
//!   an error.
//!
//! Only the machine's own architecture is filtered (x86_64); others listed
//! in `architectures` (x86, x32) are ignored, so their calls are refused
//! (seccompiler's filters kill a process that calls in another
//! architecture).

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};
use serde::Deserialize;
use stage01_chroot::Error;

/// The filters `linux.seccomp` asks for, to install in this order; none
/// without it.
pub fn filters_of(seccomp: Option<&serde_json::Value>) -> Result<Vec<BpfProgram>, Error> {
    let Some(value) = seccomp else {
        return Ok(Vec::new());
    };
    let profile = Profile::deserialize(value)
        .map_err(|e| Error::Other(format!("config.json: linux.seccomp: {e}")))?;
    compile(&profile)
}

/// What `berth-runtime features` says about seccomp, in runc's words.
pub fn features() -> serde_json::Value {
    serde_json::json!({
        "enabled": cfg!(target_arch = "x86_64"),
        "actions": ACTIONS,
        "operators": OPERATORS,
        "archs": ["SCMP_ARCH_X86_64"],
        "knownFlags": FLAGS,
        "supportedFlags": ["SECCOMP_FILTER_FLAG_TSYNC"],
    })
}

const ACTIONS: &[&str] = &[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];

const OPERATORS: &[&str] = &[
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];

const FLAGS: &[&str] = &[
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
];

/// The architectures libseccomp names.
const ARCHITECTURES: &[&str] = &[
    "SCMP_ARCH_NATIVE",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K",
    "SCMP_ARCH_SH",
    "SCMP_ARCH_SHEB",
];

// ---- the profile, as config.json spells it ----

// Our own structs rather than oci-spec's: with strings for the names, a
// wrong one is refused with the field it sits in. (Go writes empty lists
// as null, hence the options.)
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<String>>,
    #[serde(default)]
    flags: Option<Vec<String>>,
    #[serde(default)]
    listener_path: Option<String>,
    #[serde(default)]
    syscalls: Option<Vec<Rule>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    names: Option<Vec<String>>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<Arg>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: u64,
    value: u64,
    #[serde(default)]
    value_two: Option<u64>,
    op: String,
}

fn invalid<T>(field: &str, what: String) -> Result<T, Error> {
    Err(Error::Other(format!(
        "config.json: linux.seccomp.{field}: {what}"
    )))
}

/// A profile's action as seccompiler's, `errno` its errnoRet.
fn action_of(field: &str, name: &str, errno: Option<u32>) -> Result<SeccompAction, Error> {
    let data = |most: u32, what: &str| match errno {
        None => Ok(libc::EPERM as u32),
        Some(n) if n <= most => Ok(n),
        Some(n) => invalid(
            field,
            format!("{name} with {n}: {what} goes from 0 to {most}"),
        ),
    };
    Ok(match name {
        "SCMP_ACT_ALLOW" => SeccompAction::Allow,
        "SCMP_ACT_ERRNO" => SeccompAction::Errno(data(4095, "an errno")?),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => SeccompAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => SeccompAction::KillProcess,
        "SCMP_ACT_TRAP" => SeccompAction::Trap,
        "SCMP_ACT_TRACE" => SeccompAction::Trace(data(0xffff, "a tracer's message")?),
        "SCMP_ACT_LOG" => SeccompAction::Log,
        "SCMP_ACT_NOTIFY" => {
            return invalid(
                field,
                "SCMP_ACT_NOTIFY is not supported by berth-runtime (it hands no seccomp agent \
                 the calls): use another action"
                    .into(),
            );
        }
        other => {
            return invalid(
                field,
                format!(
                    "{other} is not a seccomp action (use one of {})",
                    ACTIONS.join(", ")
                ),
            );
        }
    })
}

fn condition_of(field: &str, arg: &Arg) -> Result<SeccompCondition, Error> {
    let index = match u8::try_from(arg.index) {
        Ok(index) if index <= 5 => index,
        _ => {
            return invalid(
                &format!("{field}.index"),
                format!("{} is not an argument (they go from 0 to 5)", arg.index),
            );
        }
    };
    // libseccomp compares all 64 bits; MASKED_EQ is (argument & value) == valueTwo.
    let (op, value) = match arg.op.as_str() {
        "SCMP_CMP_EQ" => (SeccompCmpOp::Eq, arg.value),
        "SCMP_CMP_NE" => (SeccompCmpOp::Ne, arg.value),
        "SCMP_CMP_LT" => (SeccompCmpOp::Lt, arg.value),
        "SCMP_CMP_LE" => (SeccompCmpOp::Le, arg.value),
        "SCMP_CMP_GT" => (SeccompCmpOp::Gt, arg.value),
        "SCMP_CMP_GE" => (SeccompCmpOp::Ge, arg.value),
        "SCMP_CMP_MASKED_EQ" => (
            SeccompCmpOp::MaskedEq(arg.value),
            arg.value_two.unwrap_or(0),
        ),
        other => {
            return invalid(
                &format!("{field}.op"),
                format!(
                    "{other} is not a comparison (use one of {})",
                    OPERATORS.join(", ")
                ),
            );
        }
    };
    SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| Error::Other(format!("config.json: linux.seccomp.{field}: {e}")))
}

/// What the rules say about one system call.
#[derive(Default)]
struct Decision {
    /// The first rule that names it without conditions: it alone decides.
    unconditional: Option<SeccompAction>,
    /// Otherwise: each rule's action, if all its conditions hold.
    conditional: Vec<(SeccompAction, Vec<SeccompCondition>)>,
}

fn check_header(profile: &Profile) -> Result<(), Error> {
    for (i, arch) in profile.architectures.iter().flatten().enumerate() {
        if !ARCHITECTURES.contains(&arch.as_str()) {
            return invalid(
                &format!("architectures[{i}]"),
                format!("{arch} is not an architecture libseccomp knows"),
            );
        }
    }
    for (i, flag) in profile.flags.iter().flatten().enumerate() {
        match flag.as_str() {
            // Between fork and exec we are the only thread: nothing to sync.
            "SECCOMP_FILTER_FLAG_TSYNC" => {}
            known if FLAGS.contains(&known) => {
                return invalid(
                    &format!("flags[{i}]"),
                    format!("{known} is not supported by berth-runtime: remove it"),
                );
            }
            other => {
                return invalid(
                    &format!("flags[{i}]"),
                    format!("{other} is not a seccomp flag"),
                );
            }
        }
    }
    if profile
        .listener_path
        .as_ref()
        .is_some_and(|p| !p.is_empty())
    {
        return invalid(
            "listenerPath",
            "seccomp agents (SCMP_ACT_NOTIFY) are not supported by berth-runtime: remove it".into(),
        );
    }
    Ok(())
}

/// The BPF programs for `profile`, for this machine's architecture.
fn compile(profile: &Profile) -> Result<Vec<BpfProgram>, Error> {
    check_header(profile)?;
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| Error::Other(format!("config.json: linux.seccomp: {e}")))?;
    let default = action_of(
        "defaultAction",
        &profile.default_action,
        profile.default_errno_ret,
    )?;
    let mut decisions: BTreeMap<i64, Decision> = BTreeMap::new();
    // The actions in the order the profile first uses them.
    let mut actions: Vec<SeccompAction> = Vec::new();
    let mut newest = 0;
    for (i, rule) in profile.syscalls.iter().flatten().enumerate() {
        let field = format!("syscalls[{i}]");
        let action = action_of(&format!("{field}.action"), &rule.action, rule.errno_ret)?;
        let args = rule.args.as_deref().unwrap_or_default();
        let conditions = args
            .iter()
            .enumerate()
            .map(|(j, arg)| condition_of(&format!("{field}.args[{j}]"), arg))
            .collect::<Result<Vec<_>, _>>()?;
        let numbers: Vec<i64> = rule
            .names
            .iter()
            .flatten()
            .filter_map(|name| syscall_number(name))
            .collect();
        newest = numbers.iter().copied().fold(newest, i64::max);
        if action == default {
            continue;
        }
        if !actions.contains(&action) {
            actions.push(action.clone());
        }
        // One argument compared twice: each comparison its own rule.
        let compared_twice =
            (0..args.len()).any(|j| args[..j].iter().any(|a| a.index == args[j].index));
        let alternatives: Vec<Vec<SeccompCondition>> = match compared_twice {
            true => conditions.into_iter().map(|c| vec![c]).collect(),
            false => vec![conditions],
        };
        for number in numbers {
            let decision = decisions.entry(number).or_default();
            match alternatives.as_slice() {
                [only] if only.is_empty() => {
                    decision.unconditional.get_or_insert(action.clone());
                }
                _ => decision.conditional.extend(
                    alternatives
                        .iter()
                        .map(|conditions| (action.clone(), conditions.clone())),
                ),
            }
        }
    }

    // Per action, the calls that get it; and for the base filter, all.
    let mut by_action: Vec<BTreeMap<i64, Vec<SeccompRule>>> = vec![BTreeMap::new(); actions.len()];
    let mut named: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let rule_of = |conditions: &Vec<SeccompCondition>| {
        SeccompRule::new(conditions.clone())
            .map_err(|e| Error::Other(format!("config.json: linux.seccomp: {e}")))
    };
    for (number, decision) in &decisions {
        let slot = |action: &SeccompAction| actions.iter().position(|a| a == action).unwrap_or(0);
        if let Some(action) = &decision.unconditional {
            by_action[slot(action)].insert(*number, Vec::new());
            named.insert(*number, Vec::new());
            continue;
        }
        for (action, conditions) in &decision.conditional {
            let rule = rule_of(conditions)?;
            by_action[slot(action)]
                .entry(*number)
                .or_default()
                .push(rule.clone());
            named.entry(*number).or_default().push(rule);
        }
    }

    let build = |what: &str, rules, mismatch, matched| -> Result<BpfProgram, Error> {
        SeccompFilter::new(rules, mismatch, matched, arch)
            .and_then(BpfProgram::try_from)
            .map_err(|e| Error::Other(format!("config.json: linux.seccomp: {what}: {e}")))
    };
    let mut programs = Vec::new();
    if default != SeccompAction::Allow {
        programs.push(build(
            "the default action's filter",
            named,
            default.clone(),
            SeccompAction::Allow,
        )?);
    }
    // Installed last, run first: between two answers of one kind (two
    // errnos), the kernel keeps the first it got, so the profile's earlier
    // action goes last.
    for (action, rules) in actions.iter().zip(by_action).rev() {
        // (An action whose every rule lost to an unconditional one has none.)
        if *action != SeccompAction::Allow && !rules.is_empty() {
            let what = format!("the filter for {action:?}");
            programs.push(build(&what, rules, SeccompAction::Allow, action.clone())?);
        }
    }
    let permissive = matches!(
        default,
        SeccompAction::Allow | SeccompAction::Log | SeccompAction::Trace(_)
    );
    let above = match permissive {
        true => X32_SYSCALL_BIT - 1,
        false => u32::try_from(newest).unwrap_or(0),
    };
    programs
        .into_iter()
        .map(|program| {
            let program = with_enosys_prologue(program, above);
            match program.len() <= BPF_MAX_INSNS {
                true => Ok(program),
                false => invalid(
                    "syscalls",
                    format!(
                        "the profile needs a filter of {} BPF instructions, more than the \
                         kernel's {BPF_MAX_INSNS}: name fewer calls or conditions",
                        program.len()
                    ),
                ),
            }
        })
        .collect()
}

/// The kernel's limit on one filter's length.
const BPF_MAX_INSNS: usize = 4096;

/// x32 programs run on x86_64's kernel with this bit set in their call
/// numbers; their calls are refused, like any other architecture's.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// AUDIT_ARCH_X86_64, which the kernel passes in `seccomp_data.arch`.
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

/// `program` with a few instructions in front: on x86_64, a call numbered
/// above `above` answers ENOSYS (the jumps in `program` are relative, so
/// it runs unchanged after them). Other architectures go straight on to
/// `program`'s own check, which kills them.
fn with_enosys_prologue(program: BpfProgram, above: u32) -> BpfProgram {
    let op = |code: u32| code as u16;
    let load = |offset| sock_filter {
        code: op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS),
        jt: 0,
        jf: 0,
        k: offset,
    };
    let mut prologue = vec![
        load(4), // seccomp_data.arch
        sock_filter {
            code: op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K),
            jt: 0,
            jf: 3,
            k: AUDIT_ARCH_X86_64,
        },
        load(0), // seccomp_data.nr
        sock_filter {
            code: op(libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K),
            jt: 0,
            jf: 1,
            k: above,
        },
        sock_filter {
            code: op(libc::BPF_RET | libc::BPF_K),
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        },
    ];
    prologue.extend(program);
    prologue
}

// ---- system call names ----

/// The number of system call `name` on this machine, if it has one.
pub fn syscall_number(name: &str) -> Option<i64> {
    // A profile names some 400 calls: looked up in an index made once, not
    // by walking the table for each (which took most of a compile).
    static NUMBERS: OnceLock<HashMap<&'static str, i64>> = OnceLock::new();
    let numbers = NUMBERS.get_or_init(|| {
        let mut numbers = HashMap::new();
        for (first, names) in SYSCALLS {
            for (i, name) in names.split_whitespace().enumerate() {
                numbers.entry(name).or_insert(first + i as i64);
            }
        }
        numbers
    });
    numbers.get(name).copied()
}

/// The name of system call `number` on this machine, if it has one.
pub fn syscall_name(number: i64) -> Option<&'static str> {
    SYSCALLS.iter().find_map(|(first, names)| {
        let index = usize::try_from(number.checked_sub(*first)?).ok()?;
        names.split_whitespace().nth(index)
    })
}

/// x86_64's system calls, numbered on from the first of each run: the
/// kernel's arch/x86/entry/syscalls/syscall_64.tbl (0 to 335, then from
/// 424 the numbers every architecture shares), up to Linux 6.18.
#[cfg(target_arch = "x86_64")]
const SYSCALLS: &[(i64, &str)] = &[
    (
        0,
        "read write open close stat fstat lstat poll lseek mmap mprotect munmap brk rt_sigaction
        rt_sigprocmask rt_sigreturn ioctl pread64 pwrite64 readv writev access pipe select
        sched_yield mremap msync mincore madvise shmget shmat shmctl dup dup2 pause nanosleep
        getitimer alarm setitimer getpid sendfile socket connect accept sendto recvfrom sendmsg
        recvmsg shutdown bind listen getsockname getpeername socketpair setsockopt getsockopt clone
        fork vfork execve exit wait4 kill uname semget semop semctl shmdt msgget msgsnd msgrcv
        msgctl fcntl flock fsync fdatasync truncate ftruncate getdents getcwd chdir fchdir rename
        mkdir rmdir creat link unlink symlink readlink chmod fchmod chown fchown lchown umask
        gettimeofday getrlimit getrusage sysinfo times ptrace getuid syslog getgid setuid setgid
        geteuid getegid setpgid getppid getpgrp setsid setreuid setregid getgroups setgroups
        setresuid getresuid setresgid getresgid getpgid setfsuid setfsgid getsid capget capset
        rt_sigpending rt_sigtimedwait rt_sigqueueinfo rt_sigsuspend sigaltstack utime mknod uselib
        personality ustat statfs fstatfs sysfs getpriority setpriority sched_setparam
        sched_getparam sched_setscheduler sched_getscheduler sched_get_priority_max
        sched_get_priority_min sched_rr_get_interval mlock munlock mlockall munlockall vhangup
        modify_ldt pivot_root _sysctl prctl arch_prctl adjtimex setrlimit chroot sync acct
        settimeofday mount umount2 swapon swapoff reboot sethostname setdomainname iopl ioperm
        create_module init_module delete_module get_kernel_syms query_module quotactl nfsservctl
        getpmsg putpmsg afs_syscall tuxcall security gettid readahead setxattr lsetxattr fsetxattr
        getxattr lgetxattr fgetxattr listxattr llistxattr flistxattr removexattr lremovexattr
        fremovexattr tkill time futex sched_setaffinity sched_getaffinity set_thread_area io_setup
        io_destroy io_getevents io_submit io_cancel get_thread_area lookup_dcookie epoll_create
        epoll_ctl_old epoll_wait_old remap_file_pages getdents64 set_tid_address restart_syscall
        semtimedop fadvise64 timer_create timer_settime timer_gettime timer_getoverrun timer_delete
        clock_settime clock_gettime clock_getres clock_nanosleep exit_group epoll_wait epoll_ctl
        tgkill utimes vserver mbind set_mempolicy get_mempolicy mq_open mq_unlink mq_timedsend
        mq_timedreceive mq_notify mq_getsetattr kexec_load waitid add_key request_key keyctl
        ioprio_set ioprio_get inotify_init inotify_add_watch inotify_rm_watch migrate_pages openat
        mkdirat mknodat fchownat futimesat newfstatat unlinkat renameat linkat symlinkat readlinkat
        fchmodat faccessat pselect6 ppoll unshare set_robust_list get_robust_list splice tee
        sync_file_range vmsplice move_pages utimensat epoll_pwait signalfd timerfd_create eventfd
        fallocate timerfd_settime timerfd_gettime accept4 signalfd4 eventfd2 epoll_create1 dup3
        pipe2 inotify_init1 preadv pwritev rt_tgsigqueueinfo perf_event_open recvmmsg fanotify_init
        fanotify_mark prlimit64 name_to_handle_at open_by_handle_at clock_adjtime syncfs sendmmsg
        setns getcpu process_vm_readv process_vm_writev kcmp finit_module sched_setattr
        sched_getattr renameat2 seccomp getrandom memfd_create kexec_file_load bpf execveat
        userfaultfd membarrier mlock2 copy_file_range preadv2 pwritev2 pkey_mprotect pkey_alloc
        pkey_free statx io_pgetevents rseq uretprobe",
    ),
    (
        424,
        "pidfd_send_signal io_uring_setup io_uring_enter io_uring_register open_tree move_mount
        fsopen fsconfig fsmount fspick pidfd_open clone3 close_range openat2 pidfd_getfd faccessat2
        process_madvise epoll_pwait2 mount_setattr quotactl_fd landlock_create_ruleset
        landlock_add_rule landlock_restrict_self memfd_secret process_mrelease futex_waitv
        set_mempolicy_home_node cachestat fchmodat2 map_shadow_stack futex_wake futex_wait
        futex_requeue statmount listmount lsm_get_self_attr lsm_set_self_attr lsm_list_modules
        mseal setxattrat getxattrat listxattrat removexattrat open_tree_attr file_getattr
        file_setattr listns",
    ),
];

/// Elsewhere berth knows no names, so every name is skipped.
#[cfg(not(target_arch = "x86_64"))]
const SYSCALLS: &[(i64, &str)] = &[];

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `seccomp_data` as the kernel hands it to a filter.
    pub(crate) struct Call {
        pub(crate) arch: u32,
        pub(crate) nr: u32,
        pub(crate) args: [u64; 6],
    }

    impl Call {
        pub(crate) fn new(name: &str, args: &[u64]) -> Call {
            let mut all = [0; 6];
            all[..args.len()].copy_from_slice(args);
            Call {
                arch: AUDIT_ARCH_X86_64,
                nr: syscall_number(name).unwrap() as u32,
                args: all,
            }
        }

        fn word(&self, offset: u32) -> u32 {
            match offset {
                0 => self.nr,
                4 => self.arch,
                16..=63 => {
                    let arg = self.args[(offset as usize - 16) / 8];
                    match offset % 8 {
                        0 => arg as u32,
                        _ => (arg >> 32) as u32,
                    }
                }
                _ => panic!("a load from offset {offset}"),
            }
        }
    }

    /// One classic BPF program on `call`: the instructions seccompiler
    /// and our prologue use.
    fn run(program: &[sock_filter], call: &Call) -> u32 {
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let insn = &program[pc];
            pc += 1;
            let code = u32::from(insn.code);
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => a = call.word(insn.k),
                c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => a &= insn.k,
                c if c == libc::BPF_JMP | libc::BPF_JA => pc += insn.k as usize,
                c if c & 0x07 == libc::BPF_JMP => {
                    let holds = match code & 0xf0 {
                        0x10 => a == insn.k,
                        0x20 => a > insn.k,
                        0x30 => a >= insn.k,
                        other => panic!("jump {other:#x}"),
                    };
                    pc += usize::from(if holds { insn.jt } else { insn.jf });
                }
                c if c == libc::BPF_RET | libc::BPF_K => return insn.k,
                other => panic!("instruction {other:#x}"),
            }
        }
    }

    /// What the kernel answers with all of `filters` installed in order:
    /// it runs the newest first and keeps the most restrictive answer
    /// (the first one, between answers of the same kind).
    pub(crate) fn outcome(filters: &[BpfProgram], call: &Call) -> u32 {
        let only = |ret: u32| (ret & libc::SECCOMP_RET_ACTION_FULL) as i32;
        let mut answer = libc::SECCOMP_RET_ALLOW;
        for filter in filters.iter().rev() {
            let this = run(filter, call);
            if only(this) < only(answer) {
                answer = this;
            }
        }
        answer
    }

    pub(crate) const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    pub(crate) fn errno(n: i32) -> u32 {
        libc::SECCOMP_RET_ERRNO | n as u32
    }

    fn compiled(profile: serde_json::Value) -> Vec<BpfProgram> {
        filters_of(Some(&profile)).unwrap()
    }

    fn refused(profile: serde_json::Value) -> String {
        filters_of(Some(&profile)).unwrap_err().to_string()
    }

    #[test]
    fn the_names_are_this_machines_numbers() {
        for (name, number) in [
            ("read", libc::SYS_read),
            ("mkdir", libc::SYS_mkdir),
            ("personality", libc::SYS_personality),
            ("rseq", libc::SYS_rseq),
            ("pidfd_send_signal", libc::SYS_pidfd_send_signal),
            ("clone3", libc::SYS_clone3),
            ("set_mempolicy_home_node", libc::SYS_set_mempolicy_home_node),
            ("fchmodat2", libc::SYS_fchmodat2),
            ("mseal", libc::SYS_mseal),
            ("open_tree_attr", 467),
        ] {
            assert_eq!(syscall_number(name), Some(number), "{name}");
            assert_eq!(syscall_name(number), Some(name));
        }
        assert_eq!(syscall_number("no_such_call"), None);
        assert_eq!(syscall_number("sync_file_range2"), None); // ppc's
        assert_eq!(syscall_name(336), None);
        assert_eq!(syscall_name(-1), None);
    }

    #[test]
    fn a_denylist_refuses_what_it_names_and_allows_the_rest() {
        let filters = compiled(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["mkdir", "no_such_call"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                {"names": ["sethostname"], "action": "SCMP_ACT_KILL_PROCESS"},
                {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO"}
            ]
        }));
        // No base filter: the default allows. One filter per other action.
        assert_eq!(filters.len(), 2);
        let got = |name: &str| outcome(&filters, &Call::new(name, &[]));
        assert_eq!(got("mkdir"), errno(libc::EPERM));
        assert_eq!(got("rmdir"), errno(libc::EPERM));
        assert_eq!(got("sethostname"), libc::SECCOMP_RET_KILL_PROCESS);
        assert_eq!(got("getpid"), ALLOW);
        assert_eq!(got("read"), ALLOW);
        assert_eq!(got("listns"), ALLOW, "no ENOSYS with a default that allows");
        // x32 calls and other architectures' are refused.
        let x32 = Call {
            nr: X32_SYSCALL_BIT | 83,
            ..Call::new("read", &[])
        };
        assert_eq!(outcome(&filters, &x32), errno(libc::ENOSYS));
        let i386 = Call {
            arch: 0x4000_0003,
            ..Call::new("read", &[])
        };
        assert_eq!(outcome(&filters, &i386), libc::SECCOMP_RET_KILL_PROCESS);
    }

    #[test]
    fn an_allowlist_allows_what_it_names_and_refuses_the_rest() {
        let filters = compiled(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "flags": ["SECCOMP_FILTER_FLAG_TSYNC"],
            "syscalls": [
                {"names": ["read", "write", "getpid", "landlock_create_ruleset"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["kill"], "action": "SCMP_ACT_TRAP"},
                {"names": ["tkill"], "action": "SCMP_ACT_LOG"},
                {"names": ["tgkill"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
                {"names": ["ptrace"], "action": "SCMP_ACT_KILL"}
            ]
        }));
        let got = |name: &str| outcome(&filters, &Call::new(name, &[]));
        assert_eq!(got("read"), ALLOW);
        assert_eq!(got("getpid"), ALLOW);
        assert_eq!(got("mkdir"), errno(libc::EACCES));
        assert_eq!(
            got("rmdir"),
            errno(libc::EPERM),
            "same as the default: skipped"
        );
        assert_eq!(got("kill"), libc::SECCOMP_RET_TRAP);
        assert_eq!(got("tkill"), libc::SECCOMP_RET_LOG);
        assert_eq!(got("tgkill"), libc::SECCOMP_RET_TRACE | 7);
        assert_eq!(got("ptrace"), libc::SECCOMP_RET_KILL_THREAD);
        assert_eq!(got("swapon"), errno(libc::EPERM), "the default");
        // Newer than anything the profile names: ENOSYS, so that C
        // libraries fall back on older calls.
        assert_eq!(got("landlock_add_rule"), errno(libc::ENOSYS));
        assert_eq!(got("fchmodat2"), errno(libc::ENOSYS));
    }

    #[test]
    fn conditions_hold_together_unless_one_argument_is_compared_twice() {
        let filters = compiled(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "syscalls": [
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 4294967295u64, "op": "SCMP_CMP_EQ"}]},
                {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
                 "args": [{"index": 0, "value": 16, "op": "SCMP_CMP_EQ"},
                          {"index": 2, "value": 9, "op": "SCMP_CMP_EQ"}]},
                {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 2, "value": 9, "op": "SCMP_CMP_NE"}]},
                {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 16, "op": "SCMP_CMP_NE"}]},
                {"names": ["kill"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"},
                          {"index": 1, "value": 15, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0x10000000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["read"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 2, "value": 100, "op": "SCMP_CMP_LE"}]},
                {"names": ["write"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 2, "value": 100, "op": "SCMP_CMP_GT"}]}
            ]
        }));
        let got = |name: &str, args: &[u64]| outcome(&filters, &Call::new(name, args));
        let nosys = errno(libc::ENOSYS);
        assert_eq!(got("personality", &[8]), ALLOW);
        assert_eq!(got("personality", &[0xffff_ffff]), ALLOW);
        assert_eq!(got("personality", &[0x0040_0000]), nosys);
        assert_eq!(got("personality", &[0x1_0000_0008]), nosys, "all 64 bits");
        assert_eq!(got("socket", &[16, 3, 9]), errno(libc::EINVAL));
        assert_eq!(got("socket", &[16, 3, 0]), ALLOW);
        assert_eq!(got("socket", &[2, 1, 9]), ALLOW);
        assert_eq!(got("kill", &[1, 9]), ALLOW);
        assert_eq!(got("kill", &[1, 15]), ALLOW);
        assert_eq!(got("kill", &[1, 10]), nosys);
        assert_eq!(got("clone", &[libc::SIGCHLD as u64]), ALLOW);
        assert_eq!(got("clone", &[libc::CLONE_NEWUSER as u64]), nosys);
        assert_eq!(got("read", &[0, 0, 100]), ALLOW);
        assert_eq!(got("read", &[0, 0, 101]), nosys);
        assert_eq!(got("read", &[0, 0, 1 << 32]), nosys);
        assert_eq!(got("write", &[0, 0, 1 << 32]), ALLOW);
        assert_eq!(got("write", &[0, 0, 100]), nosys);
    }

    #[test]
    fn overlapping_rules_resolve_as_libseccomp_does_or_to_the_stricter() {
        let filters = compiled(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                // The first unconditional rule decides (runc: EPERM).
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                {"names": ["mkdir"], "action": "SCMP_ACT_KILL"},
                // Unconditional beats conditional, in either order.
                {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_NE"}]},
                {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                // Conditional against conditional: the stricter.
                {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                 "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]},
                {"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS",
                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
                {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 3,
                 "args": [{"index": 1, "value": 8, "op": "SCMP_CMP_GE"}]}
            ]
        }));
        let got = |name: &str, args: &[u64]| outcome(&filters, &Call::new(name, args));
        assert_eq!(got("mkdir", &[]), errno(libc::EPERM));
        assert_eq!(got("rmdir", &[5]), errno(libc::EPERM));
        assert_eq!(got("kill", &[1, 9]), libc::SECCOMP_RET_KILL_PROCESS);
        assert_eq!(got("kill", &[2, 9]), errno(1), "the earlier errno");
        assert_eq!(got("kill", &[2, 10]), errno(3));
        assert_eq!(got("kill", &[2, 1]), ALLOW);
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_by_field() {
        let with_rule = |rule: serde_json::Value| {
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["write"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["open"], "action": "SCMP_ACT_ALLOW"},
                rule
            ]})
        };
        let notify = refused(with_rule(
            serde_json::json!({"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}),
        ));
        assert!(
            notify.contains("linux.seccomp.syscalls[3].action: SCMP_ACT_NOTIFY is not supported"),
            "{notify}"
        );
        let cases = [
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}),
                "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY is not supported",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALOW"}),
                "linux.seccomp.defaultAction: SCMP_ACT_ALOW is not a seccomp action",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}),
                "linux.seccomp.listenerPath: seccomp agents",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                                   "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG"]}),
                "linux.seccomp.flags[1]: SECCOMP_FILTER_FLAG_LOG is not supported by berth-runtime",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]}),
                "linux.seccomp.architectures[0]: SCMP_ARCH_Z80 is not an architecture",
            ),
            (
                with_rule(
                    serde_json::json!({"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}),
                ),
                "linux.seccomp.syscalls[3].args[0].index: 6 is not an argument",
            ),
            (
                with_rule(
                    serde_json::json!({"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 1, "value": 1, "op": "SCMP_CMP_EQ"},
                             {"index": 2, "value": 1, "op": "SCMP_CMP_LIKE"}]}),
                ),
                "linux.seccomp.syscalls[3].args[1].op: SCMP_CMP_LIKE is not a comparison",
            ),
            (
                with_rule(
                    serde_json::json!({"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5000}),
                ),
                "linux.seccomp.syscalls[3].action: SCMP_ACT_ERRNO with 5000: an errno goes from 0 to 4095",
            ),
            (
                serde_json::json!({"syscalls": []}),
                "config.json: linux.seccomp: missing field `defaultAction`",
            ),
        ];
        for (profile, expected) in cases {
            let text = refused(profile);
            assert!(text.contains(expected), "{text}\nshould say: {expected}");
        }
    }

    #[test]
    fn no_profile_no_filter_and_architectures_elsewhere_filter_this_one_still() {
        assert!(filters_of(None).unwrap().is_empty());
        let allow_all = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": null});
        assert!(compiled(allow_all).is_empty());
        // As runc does: the machine's own architecture is always filtered.
        let filters = compiled(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_AARCH64"],
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]
        }));
        assert_eq!(
            outcome(&filters, &Call::new("mkdir", &[])),
            errno(libc::EPERM)
        );
    }

    /// Podman's default profile (containers-common's seccomp.json) as
    /// Podman puts it into config.json: the rules for x86_64 and Podman's
    /// default capabilities only.
    pub(crate) fn podmans_profile() -> Option<serde_json::Value> {
        let text = std::fs::read("/usr/share/containers/seccomp.json").ok()?;
        let mut profile: serde_json::Value = serde_json::from_slice(&text).unwrap();
        let caps = [
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FOWNER",
            "CAP_FSETID",
            "CAP_KILL",
            "CAP_NET_BIND_SERVICE",
            "CAP_SETFCAP",
            "CAP_SETGID",
            "CAP_SETPCAP",
            "CAP_SETUID",
            "CAP_SYS_CHROOT",
        ];
        let list = |v: &serde_json::Value, key: &str| -> Vec<String> {
            v[key]
                .as_array()
                .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
                .unwrap_or_default()
        };
        let rules: Vec<serde_json::Value> = profile["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|rule| {
                let (includes, excludes) = (&rule["includes"], &rule["excludes"]);
                let arches = list(includes, "arches");
                (arches.is_empty() || arches.iter().any(|a| a == "amd64"))
                    && list(includes, "caps")
                        .iter()
                        .all(|c| caps.contains(&c.as_str()))
                    && !list(excludes, "caps")
                        .iter()
                        .any(|c| caps.contains(&c.as_str()))
                    && !list(excludes, "arches").iter().any(|a| a == "amd64")
            })
            .map(|rule| {
                let mut rule = rule.clone();
                let object = rule.as_object_mut().unwrap();
                for key in ["includes", "excludes", "comment"] {
                    object.remove(key);
                }
                rule
            })
            .collect();
        profile["syscalls"] = rules.into();
        profile["architectures"] =
            serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
        let object = profile.as_object_mut().unwrap();
        object.remove("archMap");
        object.remove("defaultErrno");
        Some(profile)
    }

    #[test]
    fn podmans_default_profile_compiles_small_enough_and_means_what_it_says() {
        let Some(profile) = podmans_profile() else {
            eprintln!("SKIPPED: no /usr/share/containers/seccomp.json (containers-common)");
            return;
        };
        let filters = compiled(profile);
        for filter in &filters {
            assert!(
                filter.len() <= BPF_MAX_INSNS,
                "{} instructions",
                filter.len()
            );
        }
        eprintln!(
            "Podman's profile: {} filters of {:?} instructions",
            filters.len(),
            filters.iter().map(Vec::len).collect::<Vec<_>>()
        );
        let got = |name: &str, args: &[u64]| outcome(&filters, &Call::new(name, args));
        let nosys = errno(libc::ENOSYS);
        assert_eq!(got("read", &[]), ALLOW);
        assert_eq!(got("clone3", &[]), ALLOW);
        assert_eq!(got("personality", &[0]), ALLOW);
        assert_eq!(got("personality", &[0x0040_0000]), nosys);
        assert_eq!(got("chroot", &[]), ALLOW, "CAP_SYS_CHROOT is Podman's");
        assert_eq!(got("bpf", &[]), errno(libc::EPERM));
        assert_eq!(
            got("setns", &[]),
            ALLOW,
            "listed first as allowed, as runc reads it"
        );
        assert_eq!(got("socket", &[16, 3, 9]), errno(libc::EINVAL));
        assert_eq!(got("socket", &[2, 1, 0]), ALLOW);
        assert_eq!(got("swapon", &[]), errno(libc::EPERM), "listed as refused");
        assert_eq!(got("add_key", &[]), nosys, "not listed: the default");
        assert_eq!(got("listns", &[]), nosys);
    }

    /// Install `filters` in a child of ours, make the `calls` there, and
    /// return how it ended: each call's errno, in order, through a pipe
    /// (0 for a call that succeeded), or the signal that killed it.
    fn in_child(filters: &[BpfProgram], calls: &[(i64, [u64; 3])]) -> Result<Vec<i32>, i32> {
        let mut pipe = [0; 2];
        // SAFETY: a valid array for two descriptors.
        assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
        // SAFETY: the child makes only system calls, then _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            for filter in filters {
                if seccompiler::apply_filter(filter).is_err() {
                    // SAFETY: leaves the child at once.
                    unsafe { libc::_exit(10) };
                }
            }
            for (number, args) in calls {
                // SAFETY: plain system calls, on no memory of ours; the
                // pipe's write end is ours.
                unsafe {
                    let done = libc::syscall(*number, args[0], args[1], args[2]);
                    let errno: i32 = match done {
                        -1 => *libc::__errno_location(),
                        _ => 0,
                    };
                    libc::write(pipe[1], (&errno as *const i32).cast(), 4);
                }
            }
            // SAFETY: leaves the child at once.
            unsafe { libc::_exit(0) };
        }
        // SAFETY: our own descriptor, and our own child.
        unsafe { libc::close(pipe[1]) };
        let mut status = 0;
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        if libc::WIFSIGNALED(status) {
            unsafe { libc::close(pipe[0]) };
            return Err(libc::WTERMSIG(status));
        }
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "the child could not install the filters"
        );
        let mut errnos = Vec::new();
        let mut errno = 0i32;
        // SAFETY: reads into a valid i32; the descriptor is ours.
        while unsafe { libc::read(pipe[0], (&mut errno as *mut i32).cast(), 4) } == 4 {
            errnos.push(errno);
        }
        unsafe { libc::close(pipe[0]) };
        Ok(errnos)
    }

    #[test]
    fn the_kernel_loads_podmans_profile_and_answers_as_it_says() {
        let Some(profile) = podmans_profile() else {
            eprintln!("SKIPPED: no /usr/share/containers/seccomp.json (containers-common)");
            return;
        };
        let nowhere = c"/nowhere".as_ptr() as u64;
        let errnos = in_child(
            &compiled(profile),
            &[
                (libc::SYS_getppid, [0; 3]),
                (libc::SYS_swapoff, [nowhere, 0, 0]),
                (libc::SYS_add_key, [0; 3]),
                (libc::SYS_socket, [16, 3, 9]),
                (libc::SYS_personality, [0x0040_0000, 0, 0]),
                (470, [0; 3]), // listns
            ],
        );
        let (eperm, enosys) = (libc::EPERM, libc::ENOSYS);
        assert_eq!(
            errnos,
            Ok(vec![0, eperm, enosys, libc::EINVAL, enosys, enosys])
        );
    }

    #[test]
    fn the_kernel_keeps_the_stricter_answer_and_the_earlier_errno() {
        let profile = |with_kill: bool| {
            let mut rules = vec![
                serde_json::json!({"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                    "args": [{"index": 0, "value": 7, "op": "SCMP_CMP_EQ"}]}),
                serde_json::json!({"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 3,
                    "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]}),
            ];
            if with_kill {
                rules.push(
                    serde_json::json!({"names": ["getpriority"], "action": "SCMP_ACT_KILL_PROCESS",
                    "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]}),
                );
            }
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules})
        };
        let calls = [
            (libc::SYS_getpriority, [7, 9, 0]),
            (libc::SYS_getpriority, [8, 9, 0]),
            (libc::SYS_getpriority, [7, 8, 0]),
            (libc::SYS_getpriority, [0, 0, 0]),
        ];
        let filters = compiled(profile(false));
        assert_eq!(in_child(&filters, &calls), Ok(vec![1, 3, 1, 0]));
        for (call, expected) in calls.iter().zip([errno(1), errno(3), errno(1), ALLOW]) {
            let call = Call {
                arch: AUDIT_ARCH_X86_64,
                nr: call.0 as u32,
                args: [call.1[0], call.1[1], call.1[2], 0, 0, 0],
            };
            assert_eq!(outcome(&filters, &call), expected, "the model agrees");
        }
        assert_eq!(
            in_child(&compiled(profile(true)), &calls[..1]),
            Err(libc::SIGSYS)
        );
    }
}
