//! berth-tiny: the two processes that stay behind for each detached
//! container, as small as a process can be.
//!
//! Once a container runs, two processes wait for it: its init inside
//! (PID 1: passes signals on to the command and reaps orphans) and its
//! monitor outside (waits for init to end, then has berth record the exit
//! code and clean up; conmon's job under Podman). Neither needs the rest of
//! berth for that, and a copy of all of berth costs megabytes of memory per
//! container. So each of them, once its set-up is done, `exec`s this
//! program instead: no standard library, no C library, no heap, just system
//! calls. It keeps the process's PID, children, open files and blocked
//! signals, which is all it needs, and its memory is a few pages.
//!
//! It is built by final/build.rs with `rustc` (no Cargo: it depends on
//! nothing) and embedded in berth, which runs it from a sealed in-memory
//! file (see `final/src/tiny.rs`).
//!
//!   berth-init                       (BERTH_INIT_COMMAND=PID in the
//!                                    environment) be PID 1 for the command PID
//!   berth-tiny wait PID FD ARGS...   wait for PID, then run the program
//!                                    open as FD with ARGS and the exit code
//!   berth-tiny log PID LOG OUT ERR FD ARGS...
//!                                    as wait, but first relay the pipes OUT
//!                                    and ERR into the file LOG as Docker's
//!                                    json-file entries, until both close
//!
//! Init takes the command's PID from its environment, not its arguments,
//! so that `ps` in the container shows just `berth-init`.

#![no_std]
#![no_main]

use core::arch::{asm, global_asm};

/// The calendar berth's logs use, the same file (`src/calendar.rs`).
#[allow(dead_code)] // days_from_civil: only berth parses dates
mod calendar {
    include!("../src/calendar.rs");
}

// ---- system calls, by number ----

#[cfg(target_arch = "x86_64")]
mod nr {
    pub const READ: usize = 0;
    pub const CLOSE: usize = 3;
    pub const PPOLL: usize = 271;
    pub const CLOCK_GETTIME: usize = 228;
    pub const WRITE: usize = 1;
    pub const RT_SIGPROCMASK: usize = 14;
    pub const KILL: usize = 62;
    pub const WAIT4: usize = 61;
    pub const RT_SIGTIMEDWAIT: usize = 128;
    pub const PRCTL: usize = 157;
    pub const EXIT_GROUP: usize = 231;
    pub const EXECVEAT: usize = 322;
}

#[cfg(target_arch = "aarch64")]
mod nr {
    pub const READ: usize = 63;
    pub const CLOSE: usize = 57;
    pub const PPOLL: usize = 73;
    pub const CLOCK_GETTIME: usize = 113;
    pub const WRITE: usize = 64;
    pub const RT_SIGPROCMASK: usize = 135;
    pub const KILL: usize = 129;
    pub const WAIT4: usize = 260;
    pub const RT_SIGTIMEDWAIT: usize = 137;
    pub const PRCTL: usize = 167;
    pub const EXIT_GROUP: usize = 94;
    pub const EXECVEAT: usize = 281;
}

#[cfg(target_arch = "x86_64")]
unsafe fn syscall(n: usize, a: usize, b: usize, c: usize, d: usize, e: usize) -> isize {
    let result: isize;
    // SAFETY: the caller passes arguments valid for system call `n`.
    unsafe {
        asm!("syscall", inlateout("rax") n as isize => result, in("rdi") a, in("rsi") b,
             in("rdx") c, in("r10") d, in("r8") e, lateout("rcx") _, lateout("r11") _,
             options(nostack));
    }
    result
}

#[cfg(target_arch = "aarch64")]
unsafe fn syscall(n: usize, a: usize, b: usize, c: usize, d: usize, e: usize) -> isize {
    let result: isize;
    // SAFETY: the caller passes arguments valid for system call `n`.
    unsafe {
        asm!("svc 0", in("x8") n, inlateout("x0") a as isize => result, in("x1") b,
             in("x2") c, in("x3") d, in("x4") e, options(nostack));
    }
    result
}

// The kernel starts us with the stack pointer at argc, argv..., 0, envp...
#[cfg(target_arch = "x86_64")]
global_asm!(".globl _start", "_start:", "mov rdi, rsp", "and rsp, -16", "call tiny_main", "ud2");
#[cfg(target_arch = "aarch64")]
global_asm!(".globl _start", "_start:", "mov x0, sp", "bl tiny_main", "brk #0");

const EINTR: isize = -4;
const SIGCHLD: usize = 17;
const WNOHANG: usize = 1;
const AT_EMPTY_PATH: usize = 0x1000;
const PR_SET_NAME: usize = 15;

fn exit(code: u8) -> ! {
    // SAFETY: ends the process; no memory is involved.
    unsafe { syscall(nr::EXIT_GROUP, code as usize, 0, 0, 0, 0) };
    loop {}
}

fn say(text: &[u8]) {
    // SAFETY: writes our own bytes to stderr.
    unsafe { syscall(nr::WRITE, 2, text.as_ptr() as usize, text.len(), 0, 0) };
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    say(b"berth-tiny: panic\n");
    exit(125)
}

// What the compiler expects a C library to provide. The loops use volatile
// accesses so that the compiler can't turn them back into calls to
// themselves. The precompiled `core` names an unwinding routine that a
// program which aborts on panic never calls.
#[unsafe(no_mangle)]
unsafe extern "C" fn memset(dst: *mut u8, byte: i32, n: usize) -> *mut u8 {
    for i in 0..n {
        // SAFETY: the caller gives n writable bytes.
        unsafe { core::ptr::write_volatile(dst.add(i), byte as u8) };
    }
    dst
}

#[unsafe(no_mangle)]
unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    for i in 0..n {
        // SAFETY: the caller gives n bytes each side, not overlapping.
        unsafe { core::ptr::write_volatile(dst.add(i), core::ptr::read_volatile(src.add(i))) };
    }
    dst
}

#[unsafe(no_mangle)]
unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut n = 0;
    // SAFETY: the caller gives a NUL-terminated string.
    while unsafe { core::ptr::read_volatile(s.add(n)) } != 0 {
        n += 1;
    }
    n
}

#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}

/// A C string from the kernel's argument area, as bytes.
unsafe fn c_str<'a>(pointer: *const u8) -> &'a [u8] {
    // SAFETY: the kernel NUL-terminates every argument.
    unsafe { core::slice::from_raw_parts(pointer, strlen(pointer)) }
}

fn number(text: &[u8]) -> Option<usize> {
    let mut value: usize = 0;
    for digit in text {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add((digit - b'0') as usize)?;
    }
    (!text.is_empty()).then_some(value)
}

/// The value of the environment variable `prefix` names (`NAME=`).
unsafe fn variable<'a>(envp: *const *const u8, prefix: &[u8]) -> Option<&'a [u8]> {
    let mut i = 0;
    loop {
        // SAFETY: the list ends with a NULL pointer.
        let entry = unsafe { *envp.add(i) };
        if entry.is_null() {
            return None;
        }
        // SAFETY: each entry is NUL-terminated.
        let text = unsafe { c_str(entry) };
        if text.starts_with(prefix) {
            return Some(&text[prefix.len()..]);
        }
        i += 1;
    }
}

/// A wait status as a shell shows it: the exit code, or 128 + the signal.
fn exit_code(status: i32) -> u8 {
    match status & 0x7f {
        0 => ((status >> 8) & 0xff) as u8,
        signal => 128u8.wrapping_add(signal as u8),
    }
}

#[unsafe(no_mangle)]
unsafe extern "C" fn tiny_main(stack: *const usize) -> ! {
    // SAFETY: the layout the kernel gives every new program.
    let argc = unsafe { *stack };
    let argv = unsafe { stack.add(1) } as *const *const u8;
    let envp = unsafe { argv.add(argc + 1) };
    let arg = |i: usize| -> &[u8] {
        match i < argc {
            // SAFETY: argv holds argc valid pointers.
            true => unsafe { c_str(*argv.add(i)) },
            false => b"",
        }
    };
    if arg(0) == b"berth-init" {
        // SAFETY: envp is the kernel's NULL-terminated list.
        match unsafe { variable(envp, b"BERTH_INIT_COMMAND=") }.and_then(number) {
            Some(command) => init(command),
            None => {
                say(b"berth-init: BERTH_INIT_COMMAND=PID is missing\n");
                exit(125)
            }
        }
    }
    let Some(pid) = number(arg(2)) else {
        say(b"usage: berth-tiny wait PID FD PROGRAM ARGS...\n");
        exit(125)
    };
    match arg(1) {
        b"wait" => match number(arg(3)) {
            // SAFETY: argv and envp are the kernel's, with argc arguments.
            Some(fd) if argc > 4 => unsafe { wait_then_exec(pid, fd, argv.add(4), argc - 4, envp) },
            _ => {
                say(b"berth-tiny wait: give PID FD PROGRAM ARGS...\n");
                exit(125)
            }
        },
        b"log" => match (number(arg(3)), number(arg(4)), number(arg(5)), number(arg(6))) {
            (Some(log), Some(out), Some(err), Some(fd)) if argc > 7 => {
                // SAFETY: a NUL-terminated name of at most 16 bytes.
                unsafe { syscall(nr::PRCTL, PR_SET_NAME, b"berth-monitor\0".as_ptr() as usize, 0, 0, 0) };
                relay(log, out, err);
                // SAFETY: as for wait.
                unsafe { wait_then_exec(pid, fd, argv.add(7), argc - 7, envp) }
            }
            _ => {
                say(b"berth-tiny log: give PID LOG OUT ERR FD PROGRAM ARGS...\n");
                exit(125)
            }
        },
        _ => {
            say(b"berth-tiny: wait, log, or run as berth-init\n");
            exit(125)
        }
    }
}

// ANCHOR: init
/// PID 1 of a container whose command is `command`: the signals berth's
/// init blocked (the ones to pass on, and SIGCHLD) stay blocked across
/// exec, so we take them one at a time: SIGCHLD means "reap", any other is
/// sent on to the command. When the command ends we end with its code,
/// and the kernel ends whatever is left in the namespace.
fn init(command: usize) -> ! {
    // SAFETY: a NUL-terminated name of at most 16 bytes.
    unsafe { syscall(nr::PRCTL, PR_SET_NAME, b"berth-init\0".as_ptr() as usize, 0, 0, 0) };
    let mut blocked: u64 = 0;
    // SAFETY: reads our signal mask into `blocked` (8 bytes, the kernel's size).
    unsafe { syscall(nr::RT_SIGPROCMASK, 0, 0, &mut blocked as *mut u64 as usize, 8, 0) };
    loop {
        // SAFETY: waits for one of the signals in `blocked`.
        let signal = unsafe {
            syscall(nr::RT_SIGTIMEDWAIT, &blocked as *const u64 as usize, 0, 0, 8, 0)
        };
        match signal {
            EINTR => continue,
            s if s == SIGCHLD as isize => {
                if let Some(code) = reap(command) {
                    exit(code);
                }
            }
            s if s > 0 => {
                // SAFETY: a signal to our own child.
                unsafe { syscall(nr::KILL, command, s as usize, 0, 0, 0) };
            }
            _ => exit(125),
        }
    }
}

/// Reap every child that has ended (orphans of the container included);
/// the command's exit code, if it was among them.
fn reap(command: usize) -> Option<u8> {
    let mut code = None;
    loop {
        let mut status: i32 = 0;
        // SAFETY: -1 (any child), a place for the status, WNOHANG.
        let pid = unsafe {
            syscall(nr::WAIT4, usize::MAX, &mut status as *mut i32 as usize, WNOHANG, 0, 0)
        };
        if pid <= 0 {
            return code;
        }
        if pid as usize == command {
            code = Some(exit_code(status));
        }
    }
}
// ANCHOR_END: init

// ANCHOR: relay
// The container's log, as Docker's json-file: one JSON object a line,
// {"log":"text\n","stream":"stdout","time":"2024-05-01T12:00:00.123456789Z"}.
//
// Why here, in the tiny program, and not in a thread of berth: a detached
// container's monitor must stay small (it is this program for the whole
// life of the container), and a relay needs only a read buffer, an output
// buffer and a few system calls. No line is kept whole in memory: an
// entry is opened when its stream writes, its bytes are escaped and
// written as they come, and it is closed at the line's end. So the
// buffers are a few KiB, whatever the container writes; the price is that
// an entry is cut (closed without "\n", as Docker's partial entries) when
// the other stream writes in the middle of a line, or after
// MOST_PER_ENTRY bytes of one line.
//
// What the container writes can't escape its entry: every byte is
// JSON-escaped (quotes, backslashes, control bytes), bytes that are not
// UTF-8 become U+FFFD, and this process only writes to the one file it was
// given. (Nothing rotates the log: it grows while the container writes.)

const POLLIN: i16 = 1;
const MOST_PER_ENTRY: usize = 16 * 1024;
const CLOCK_REALTIME: usize = 0;

/// What we write to the log, a page at a time.
struct Out {
    fd: usize,
    buffer: [u8; 4096],
    len: usize,
}

impl Out {
    fn push(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if self.len == self.buffer.len() {
                self.flush();
            }
            self.buffer[self.len] = byte;
            self.len += 1;
        }
    }

    /// Write all of it. A log that can't be written (a full disk) loses
    /// the text, but the pipes are still drained, so the container goes on.
    fn flush(&mut self) {
        let mut done = 0;
        while done < self.len {
            // SAFETY: writes bytes of our own buffer.
            let n = unsafe {
                syscall(nr::WRITE, self.fd, self.buffer[done..].as_ptr() as usize, self.len - done, 0, 0)
            };
            match n {
                EINTR => continue,
                n if n > 0 => done += n as usize,
                _ => break,
            }
        }
        self.len = 0;
    }

    /// One byte of text (not UTF-8's multi-byte sequences), JSON-escaped.
    fn escaped(&mut self, byte: u8) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        match byte {
            b'"' => self.push(b"\\\""),
            b'\\' => self.push(b"\\\\"),
            b'\n' => self.push(b"\\n"),
            b'\r' => self.push(b"\\r"),
            b'\t' => self.push(b"\\t"),
            0..0x20 | 0x7f => self.push(&[b'\\', b'u', b'0', b'0', HEX[(byte >> 4) as usize], HEX[(byte & 15) as usize]]),
            _ => self.push(&[byte]),
        }
    }

    /// The current time, as RFC 3339 in UTC with nine digits of fraction.
    fn time(&mut self) {
        let mut now = [0i64; 2]; // struct timespec: seconds, nanoseconds
        // SAFETY: clock_gettime fills one timespec.
        unsafe { syscall(nr::CLOCK_GETTIME, CLOCK_REALTIME, now.as_mut_ptr() as usize, 0, 0, 0) };
        let (secs, nanos) = (now[0], now[1]);
        let (days, in_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (year, month, day) = calendar::civil_from_days(days);
        let (month, day) = (i64::from(month), i64::from(day));
        self.digits(year, 4);
        self.push(b"-");
        self.digits(month, 2);
        self.push(b"-");
        self.digits(day, 2);
        self.push(b"T");
        self.digits(in_day / 3600, 2);
        self.push(b":");
        self.digits(in_day / 60 % 60, 2);
        self.push(b":");
        self.digits(in_day % 60, 2);
        self.push(b".");
        self.digits(nanos, 9);
        self.push(b"Z");
    }

    fn digits(&mut self, value: i64, width: u32) {
        for i in (0..width).rev() {
            self.push(&[b'0' + (value / 10i64.pow(i) % 10) as u8]);
        }
    }
}

/// One of the container's output pipes, and its entry in progress.
struct Stream {
    fd: isize,
    name: &'static [u8],
    /// An entry is open: its `{"log":"` is written.
    open: bool,
    /// Bytes of the line in the open entry.
    bytes: usize,
    /// The start of a UTF-8 sequence that the next read completes.
    carry: [u8; 4],
    carry_len: usize,
}

impl Stream {
    fn close_entry(&mut self, out: &mut Out) {
        if self.open {
            out.push(b"\",\"stream\":\"");
            out.push(self.name);
            out.push(b"\",\"time\":\"");
            out.time();
            out.push(b"\"}\n");
            self.open = false;
        }
    }

    /// Relay `data` (what this stream wrote, after any carried bytes).
    fn take(&mut self, data: &[u8], out: &mut Out) {
        let mut i = 0;
        while i < data.len() {
            let byte = data[i];
            // How long the UTF-8 sequence that starts here says it is.
            let length = match byte {
                0xc2..=0xdf => 2,
                0xe0..=0xef => 3,
                0xf0..=0xf4 => 4,
                _ => 1,
            };
            if length > 1 && i + length > data.len() {
                // An unfinished character: keep it for the next read.
                self.carry_len = data.len() - i;
                self.carry[..self.carry_len].copy_from_slice(&data[i..]);
                return;
            }
            if !self.open {
                out.push(b"{\"log\":\"");
                self.open = true;
                self.bytes = 0;
            }
            let used = match byte {
                0..0x80 => {
                    out.escaped(byte);
                    1
                }
                _ if length > 1 && core::str::from_utf8(&data[i..i + length]).is_ok() => {
                    out.push(&data[i..i + length]);
                    length
                }
                _ => {
                    out.push(b"\\ufffd"); // not UTF-8: one U+FFFD a byte
                    1
                }
            };
            i += used;
            self.bytes += used;
            if byte == b'\n' || self.bytes >= MOST_PER_ENTRY {
                self.close_entry(out);
            }
        }
    }

    /// The pipe is closed: finish the entry (a carried half character is
    /// not text: U+FFFD), and close our end.
    fn end(&mut self, out: &mut Out) {
        if self.carry_len > 0 {
            if !self.open {
                out.push(b"{\"log\":\"");
                self.open = true;
            }
            out.push(b"\\ufffd");
            self.carry_len = 0;
        }
        self.close_entry(out);
        // SAFETY: our own descriptor, not used again.
        unsafe { syscall(nr::CLOSE, self.fd as usize, 0, 0, 0, 0) };
        self.fd = -1;
    }
}

/// Relay the pipes `out` and `err` into the log `log` until both are
/// closed, i.e. until every process of the container is gone.
fn relay(log: usize, out: usize, err: usize) {
    let mut file = Out { fd: log, buffer: [0; 4096], len: 0 };
    let stream = |fd: usize, name| Stream { fd: fd as isize, name, open: false, bytes: 0, carry: [0; 4], carry_len: 0 };
    let mut streams = [stream(out, b"stdout"), stream(err, b"stderr")];
    let mut buffer = [0u8; 4096];
    // struct pollfd: int fd; short events; short revents.
    #[repr(C)]
    struct PollFd {
        fd: i32,
        events: i16,
        revents: i16,
    }
    while streams.iter().any(|s| s.fd >= 0) {
        let mut fds = [
            PollFd { fd: streams[0].fd as i32, events: POLLIN, revents: 0 },
            PollFd { fd: streams[1].fd as i32, events: POLLIN, revents: 0 },
        ];
        // SAFETY: two pollfds; no timeout, no signal mask.
        let ready = unsafe { syscall(nr::PPOLL, fds.as_mut_ptr() as usize, 2, 0, 0, 8) };
        if ready == EINTR {
            continue;
        }
        if ready < 0 {
            break;
        }
        for (index, fd) in fds.iter().enumerate() {
            if fd.fd < 0 || fd.revents == 0 {
                continue;
            }
            let this = &mut streams[index];
            let carried = this.carry_len;
            buffer[..carried].copy_from_slice(&this.carry[..carried]);
            this.carry_len = 0;
            // SAFETY: reads into our buffer, after the carried bytes.
            let n = unsafe {
                syscall(nr::READ, this.fd as usize, buffer[carried..].as_mut_ptr() as usize, buffer.len() - carried, 0, 0)
            };
            if n == EINTR || n == 0 || n < 0 {
                this.carry_len = carried;
                this.carry[..carried].copy_from_slice(&buffer[..carried]);
            }
            match n {
                EINTR => {}
                n if n > 0 => {
                    // A line of the other stream is cut where this one writes.
                    streams[1 - index].close_entry(&mut file);
                    streams[index].take(&buffer[..carried + n as usize], &mut file);
                }
                _ => this.end(&mut file), // closed (or broken): the end
            }
        }
        file.flush();
    }
    file.flush();
    // SAFETY: the log's descriptor, not used again.
    unsafe { syscall(nr::CLOSE, log, 0, 0, 0, 0) };
}
// ANCHOR_END: relay

// ANCHOR: wait
/// The monitor: wait for the container's init, then exec the program open
/// as `fd` (berth itself) with `args` and the exit code as the last one.
unsafe fn wait_then_exec(
    init: usize,
    fd: usize,
    args: *const *const u8,
    count: usize,
    envp: *const *const u8,
) -> ! {
    // SAFETY: a NUL-terminated name of at most 16 bytes.
    unsafe { syscall(nr::PRCTL, PR_SET_NAME, b"berth-monitor\0".as_ptr() as usize, 0, 0, 0) };
    let mut status: i32 = 0;
    loop {
        // SAFETY: waits for our child `init`.
        let pid = unsafe { syscall(nr::WAIT4, init, &mut status as *mut i32 as usize, 0, 0, 0) };
        match pid {
            EINTR => continue,
            p if p == init as isize => break,
            _ => exit(125), // not our child: nothing to wait for
        }
    }
    // The exit code as text, "0" to "255", then the new argument list.
    let code = exit_code(status);
    let mut text = [0u8; 4];
    let digits = [code / 100, code / 10 % 10, code % 10];
    let first = digits.iter().position(|d| *d != 0).unwrap_or(2);
    for (i, digit) in digits[first..].iter().enumerate() {
        text[i] = b'0' + digit;
    }
    const MOST: usize = 64;
    if count + 2 > MOST {
        exit(125);
    }
    let mut new_args: [*const u8; MOST] = [core::ptr::null(); MOST];
    for (i, slot) in new_args.iter_mut().enumerate().take(count) {
        // SAFETY: `args` holds `count` pointers.
        *slot = unsafe { *args.add(i) };
    }
    new_args[count] = text.as_ptr();
    // SAFETY: a descriptor of an executable, an empty path with
    // AT_EMPTY_PATH, NULL-terminated argument and environment lists.
    unsafe {
        syscall(
            nr::EXECVEAT,
            fd,
            b"\0".as_ptr() as usize,
            new_args.as_ptr() as usize,
            envp as usize,
            AT_EMPTY_PATH,
        )
    };
    say(b"berth-monitor: could not run berth to record the exit code\n");
    exit(code)
}
// ANCHOR_END: wait
