//! Device rules on cgroup v2. v1 had a `devices` controller with files to
//! write rules to; v2 has none. Instead the kernel asks a small eBPF
//! program attached to the cgroup, at every open or mknod of a device node,
//! "may this process do that?", and the program answers 1 or 0.
//!
//! So berth does what runc and crun do: it works out what the rules allow,
//! exactly as v1's controller would ([`Emulator`]), writes that down as
//! eBPF instructions ([`program`]), and loads and attaches them with the
//! `bpf` system call ([`set_device_rules`]).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::libc;
use stage01_chroot::Error;

use crate::resources::{DeviceRule, MKNOD, READ, V1Rule, WRITE};

// ANCHOR: emulator
/// What a list of device rules allows, worked out the way v1's devices
/// controller does it: a default (allow or deny everything) and exceptions
/// to it. An `a` rule sets the default and forgets the exceptions; any
/// other rule adds an exception against the default, or takes one back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emulator {
    pub default_allow: bool,
    /// Rules with the verdict opposite to the default.
    pub exceptions: Vec<V1Rule>,
}

impl Default for Emulator {
    /// A new cgroup: every device allowed.
    fn default() -> Self {
        Emulator {
            default_allow: true,
            exceptions: Vec::new(),
        }
    }
}

impl Emulator {
    pub fn apply(&mut self, rule: &V1Rule) {
        if rule.kind == 'a' {
            *self = Emulator {
                default_allow: rule.allow,
                exceptions: Vec::new(),
            };
            return;
        }
        let same =
            |e: &&mut V1Rule| e.kind == rule.kind && e.major == rule.major && e.minor == rule.minor;
        if rule.allow != self.default_allow {
            // An exception: merge it with one for the same devices.
            match self.exceptions.iter_mut().find(same) {
                Some(existing) => existing.access |= rule.access,
                None => self.exceptions.push(*rule),
            }
        } else {
            // The default's own verdict: take that access out of the
            // exception for exactly these devices, as v1 does.
            if let Some(existing) = self.exceptions.iter_mut().find(same) {
                existing.access &= !rule.access;
            }
            self.exceptions.retain(|e| e.access != 0);
        }
    }

    /// What the rules in `rules` allow, from a new cgroup's "everything".
    pub fn from_rules(rules: &[DeviceRule]) -> Result<Emulator, Error> {
        let mut emulator = Emulator::default();
        for rule in rules {
            for v1 in rule.v1_rules()? {
                emulator.apply(&v1);
            }
        }
        Ok(emulator)
    }
}
// ANCHOR_END: emulator

/// One eBPF instruction, as `struct bpf_insn` lays it out: an opcode, two
/// 4-bit register numbers, a jump offset and an immediate value.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst in the low 4 bits, src in the high 4.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// The opcodes the device program needs (linux/bpf.h, linux/bpf_common.h).
const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const ALU32_AND_K: u8 = 0x54; // dst &= imm
const ALU32_RSH_K: u8 = 0x74; // dst >>= imm
const ALU32_MOV_K: u8 = 0xb4; // dst = imm
const ALU32_MOV_X: u8 = 0xbc; // dst = src
const JMP_JNE_K: u8 = 0x55; // if dst != imm: jump off
const JMP_JNE_X: u8 = 0x5d; // if dst != src: jump off
const JMP_JEQ_K: u8 = 0x15; // if dst == imm: jump off
const JMP_EXIT: u8 = 0x95; // return r0

/// The kernel's device types in `bpf_cgroup_dev_ctx.access_type`.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

// ANCHOR: program
/// The program that answers as `emulator` does. The kernel passes it
/// `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`
/// in r1, the device type in the low 16 bits of `access_type` and the
/// access asked for in the high 16. Each exception becomes a block that
/// jumps to the next block as soon as one field doesn't match, and returns
/// the exception's verdict if all do; after the last, the default.
pub fn program(emulator: &Emulator) -> Vec<Insn> {
    let mut insns = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0), // r2 = type
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0), // r3 = access asked for
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0), // r4 = major
        insn(LDX_MEM_W, 5, 1, 8, 0), // r5 = minor
    ];
    const NEXT: i16 = i16::MAX; // "the next block", patched below
    let verdict = |allow: bool| i32::from(allow);
    for rule in &emulator.exceptions {
        let kind = if rule.kind == 'b' {
            DEV_BLOCK
        } else {
            DEV_CHAR
        };
        let mut block = vec![insn(JMP_JNE_K, 2, 0, NEXT, kind)];
        let all = READ | WRITE | MKNOD;
        if rule.access != all {
            // r1 = asked & allowed. An allow exception must cover all that
            // is asked; a deny exception catches any of it (as in v1).
            block.push(insn(ALU32_MOV_X, 1, 3, 0, 0));
            block.push(insn(ALU32_AND_K, 1, 0, 0, i32::from(rule.access)));
            if rule.allow {
                block.push(insn(JMP_JNE_X, 1, 3, NEXT, 0));
            } else {
                block.push(insn(JMP_JEQ_K, 1, 0, NEXT, 0));
            }
        }
        if let Some(major) = rule.major {
            block.push(insn(JMP_JNE_K, 4, 0, NEXT, major as i32));
        }
        if let Some(minor) = rule.minor {
            block.push(insn(JMP_JNE_K, 5, 0, NEXT, minor as i32));
        }
        block.push(insn(ALU32_MOV_K, 0, 0, 0, verdict(rule.allow)));
        block.push(insn(JMP_EXIT, 0, 0, 0, 0));
        // A jump's offset counts the instructions it skips.
        let len = block.len();
        for (i, insn) in block.iter_mut().enumerate() {
            if insn.off == NEXT {
                insn.off = (len - i - 1) as i16;
            }
        }
        insns.extend(block);
    }
    insns.push(insn(ALU32_MOV_K, 0, 0, 0, verdict(emulator.default_allow)));
    insns.push(insn(JMP_EXIT, 0, 0, 0, 0));
    insns
}
// ANCHOR_END: program

// The bpf(2) commands and constants used (linux/bpf.h).
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Let cgroups below attach programs of their own (a container engine
/// inside the container), as runc does.
const BPF_F_ALLOW_MULTI: u32 = 2;

/// `union bpf_attr` for BPF_PROG_LOAD, up to the fields we set; the kernel
/// takes a shorter union as if the rest were zeros.
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for BPF_PROG_ATTACH and BPF_PROG_DETACH.
#[repr(C)]
#[derive(Default)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// `union bpf_attr` for BPF_PROG_QUERY.
#[repr(C)]
#[derive(Default)]
struct ProgQuery {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
}

/// `union bpf_attr` for BPF_PROG_GET_FD_BY_ID.
#[repr(C)]
#[derive(Default)]
struct GetFdById {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// The `bpf` system call, which libc has no wrapper for.
fn bpf<T>(command: libc::c_int, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialised #[repr(C)] prefix of `union
    // bpf_attr` for `command`, and its size is passed with it; any pointers
    // in it point to buffers that outlive the call.
    let result = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            command,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if result < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// A returned file descriptor, owned.
fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel just returned this descriptor to us alone.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// Load the program; the verifier's log explains a refusal.
fn load(insns: &[Insn]) -> Result<OwnedFd, Error> {
    let license = c"Apache-2.0";
    let mut log = vec![0u8; 64 * 1024];
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"berth_device");
    let mut attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name: name,
        ..ProgLoad::default()
    };
    bpf(BPF_PROG_LOAD, &mut attr).map(owned).map_err(|e| {
        let log = String::from_utf8_lossy(&log);
        let log = log.trim_end_matches('\0').trim();
        Error::Other(format!(
            "linux.resources.devices: bpf(BPF_PROG_LOAD) of the device program: {e}{}{}",
            if log.is_empty() {
                ""
            } else {
                "; the verifier said: "
            },
            log
        ))
    })
}

/// The IDs of the device programs attached to the cgroup `cgroup` now.
fn attached(cgroup: &OwnedFd) -> Result<Vec<u32>, std::io::Error> {
    let mut ids = [0u32; 64];
    let mut attr = ProgQuery {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..ProgQuery::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr)?;
    Ok(ids[..attr.prog_cnt.min(64) as usize].to_vec())
}

// ANCHOR: attach
/// Make `rules` the device rules of the cgroup v2 directory `dir`: attach
/// the new program first, then detach the ones it replaces, so there is no
/// moment with no rules at all.
pub fn set_device_rules(dir: &Path, rules: &[DeviceRule]) -> Result<(), Error> {
    let program = program(&Emulator::from_rules(rules)?);
    let cgroup = std::fs::File::open(dir).map_err(|e| Error::io("open cgroup", dir, e))?;
    let cgroup = OwnedFd::from(cgroup);
    let named = |what: &str, e: std::io::Error| {
        Error::Other(format!(
            "linux.resources.devices: {what} for {}: {e}",
            dir.display()
        ))
    };
    let old = attached(&cgroup).map_err(|e| named("bpf(BPF_PROG_QUERY)", e))?;
    let new = load(&program)?;
    let mut attr = ProgAttach {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: new.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..ProgAttach::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|e| named("bpf(BPF_PROG_ATTACH)", e))?;
    for id in old {
        let mut by_id = GetFdById {
            prog_id: id,
            ..GetFdById::default()
        };
        let Ok(fd) = bpf(BPF_PROG_GET_FD_BY_ID, &mut by_id).map(owned) else {
            continue; // gone already
        };
        let mut attr = ProgAttach {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_bpf_fd: fd.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            ..ProgAttach::default()
        };
        bpf(BPF_PROG_DETACH, &mut attr).map_err(|e| named("bpf(BPF_PROG_DETACH)", e))?;
    }
    // The attachment holds the program; our descriptors may go.
    Ok(())
}
// ANCHOR_END: attach

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Run a device program the way the kernel would, for the instructions
    /// [`program`] emits: (device type, access, major, minor) -> verdict.
    fn run(insns: &[Insn], kind: i32, access: u8, major: u32, minor: u32) -> u64 {
        let ctx = [(u32::from(access) << 16) | kind as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0;
        loop {
            let i = insns[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            let imm = i64::from(i.imm) as u64;
            pc += 1;
            let mut jump = |taken: bool| {
                if taken {
                    pc = (pc as i64 + i64::from(i.off)) as usize;
                }
            };
            match i.code {
                LDX_MEM_W => r[dst] = u64::from(ctx[i.off as usize / 4]),
                ALU32_AND_K => r[dst] = (r[dst] & imm) & 0xffff_ffff,
                ALU32_RSH_K => r[dst] = (r[dst] as u32 >> i.imm) as u64,
                ALU32_MOV_K => r[dst] = imm & 0xffff_ffff,
                ALU32_MOV_X => r[dst] = r[src] & 0xffff_ffff,
                JMP_JNE_K => jump(r[dst] != imm),
                JMP_JNE_X => jump(r[dst] != r[src]),
                JMP_JEQ_K => jump(r[dst] == imm),
                JMP_EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn rules_apply_in_order_as_in_v1() {
        let e = Emulator::from_rules(&[
            rule(false, 'a', None, None, "rwm"),
            rule(true, 'c', Some(1), Some(3), "rwm"),
            rule(true, 'c', Some(1), Some(3), "r"), // merged into the one before
            rule(true, 'b', Some(8), None, "r"),
            rule(false, 'c', Some(1), Some(3), "m"), // takes mknod back
        ])
        .unwrap();
        assert!(!e.default_allow);
        assert_eq!(
            e.exceptions
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["c 1:3 rw", "b 8:* r"]
        );
        // A later "a" starts over.
        let e = Emulator::from_rules(&[
            rule(true, 'c', Some(1), Some(3), "rwm"),
            rule(true, 'a', None, None, ""),
        ])
        .unwrap();
        assert_eq!(e, Emulator::default());
    }

    #[test]
    fn the_program_answers_as_the_rules_say() {
        let e = Emulator::from_rules(&[
            rule(false, 'a', None, None, "rwm"),
            rule(true, 'c', Some(1), Some(3), "rwm"), // /dev/null
            rule(true, 'c', Some(136), None, "rw"),   // every pty
            rule(true, 'b', Some(8), Some(0), "r"),
        ])
        .unwrap();
        let p = program(&e);
        assert_eq!(run(&p, DEV_CHAR, READ | WRITE, 1, 3), 1);
        assert_eq!(run(&p, DEV_CHAR, MKNOD, 1, 3), 1);
        assert_eq!(run(&p, DEV_CHAR, READ, 1, 5), 0, "/dev/zero is not listed");
        assert_eq!(
            run(&p, DEV_BLOCK, READ, 1, 3),
            0,
            "a block 1:3 is not a char 1:3"
        );
        assert_eq!(run(&p, DEV_CHAR, WRITE, 136, 7), 1);
        assert_eq!(run(&p, DEV_CHAR, MKNOD, 136, 7), 0, "no mknod of ptys");
        assert_eq!(run(&p, DEV_BLOCK, READ, 8, 0), 1);
        assert_eq!(
            run(&p, DEV_BLOCK, READ | WRITE, 8, 0),
            0,
            "write not allowed"
        );
    }

    #[test]
    fn a_deny_exception_catches_any_of_its_access() {
        let e = Emulator::from_rules(&[
            rule(true, 'a', None, None, "rwm"),
            rule(false, 'c', Some(1), Some(5), "w"),
        ])
        .unwrap();
        let p = program(&e);
        assert_eq!(run(&p, DEV_CHAR, READ, 1, 5), 1);
        assert_eq!(
            run(&p, DEV_CHAR, READ | WRITE, 1, 5),
            0,
            "as v1: partly denied is denied"
        );
        assert_eq!(run(&p, DEV_BLOCK, WRITE, 8, 0), 1);
    }

    #[test]
    fn no_rules_allow_everything() {
        let p = program(&Emulator::default());
        assert_eq!(p.len(), 8);
        assert_eq!(run(&p, DEV_BLOCK, WRITE, 8, 0), 1);
    }
}
