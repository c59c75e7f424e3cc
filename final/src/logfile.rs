//! The container's log, in Docker's json-file shape: one JSON object a line,
//! `{"log":"text\n","stream":"stdout","time":"2024-05-01T12:00:00.123456789Z"}`.
//!
//! Who writes it: for a detached container, the tiny program its monitor
//! becomes (`tiny/berth-tiny.rs`, `log` mode) relays the container's
//! stdout and stderr pipes into it; in the foreground, `berth run` does
//! (a [`Relay`] here, which also copies to the terminal). Both write the
//! same shape, and the same limits hold:
//!
//! - every byte the container writes is JSON-escaped, so it can't make a
//!   line of its own (a fake entry) or break the file's shape;
//! - a line is at most [`MOST_PER_ENTRY`] bytes: a longer one is split
//!   into entries without the final `\n` (as Docker's partial messages), so
//!   the relay's buffers stay small whatever the container writes;
//! - there is no rotation (Docker's `max-size`/`max-file`): a container
//!   that writes forever fills its log until the disk is full. Not done yet.
//!
//! `berth logs` reads it back ([`read`]); a line that is not such an
//! object (a log written before berth wrote JSON) is printed as it is.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::unistd::pipe2;
use serde::Deserialize;
use stage01_chroot::Error;

use crate::calendar::{civil_from_days, days_from_civil};

/// The most bytes of a line in one entry (Docker's 16 KiB too).
pub const MOST_PER_ENTRY: usize = 16 * 1024;

/// Which of the container's streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Nanoseconds since the epoch.
pub fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// One entry, as a line of the log (with its `\n`).
pub fn entry(stream: Stream, text: &[u8], nanos: i128) -> Vec<u8> {
    // serde_json escapes quotes, backslashes and control characters; bytes
    // that are not UTF-8 become U+FFFD, as in Docker (Go's encoder).
    let log = serde_json::to_string(&String::from_utf8_lossy(text)).unwrap_or_default();
    format!(
        "{{\"log\":{log},\"stream\":\"{}\",\"time\":\"{}\"}}\n",
        stream.name(),
        rfc3339_nano(nanos)
    )
    .into_bytes()
}

/// `2024-05-01T12:00:00.123456789Z`: RFC 3339 in UTC, always nine digits
/// of fraction (Docker's json-file writes it so).
pub fn rfc3339_nano(nanos: i128) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let fraction = nanos.rem_euclid(1_000_000_000);
    let (days, in_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{fraction:09}Z",
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60
    )
}

/// `--since` and `--until`: an RFC 3339 time (`2024-05-01T12:00:00Z`,
/// with a fraction or an offset), a date (`2024-05-01`, UTC), Unix seconds
/// (`1714564800`, `1714564800.5`), or a duration before now (`10m`,
/// `1h30m`, `90s`, as Go writes them). In nanoseconds since the epoch.
pub fn parse_time(text: &str, now: i128) -> Result<i128, String> {
    let bad = || {
        format!(
            "{text:?} is not a time: use RFC 3339 (2024-05-01T12:00:00Z), a date, \
             Unix seconds or a duration before now (10m, 1h30m)"
        )
    };
    if let Some(seconds) = unix_seconds(text) {
        return Ok(seconds);
    }
    if let Some(duration) = go_duration(text) {
        return Ok(now - duration);
    }
    rfc3339(text).ok_or_else(bad)
}

fn unix_seconds(text: &str) -> Option<i128> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) || fraction.len() > 9 {
        return None;
    }
    let nanos = format!("{fraction:0<9}").parse::<i128>().ok()?;
    Some(whole.parse::<i128>().ok()? * 1_000_000_000 + nanos)
}

/// Go's durations: numbers with units h, m, s, ms, us, ns, one after another.
fn go_duration(text: &str) -> Option<i128> {
    let mut rest = text;
    let mut total: f64 = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3_600e9,
            "m" => 60e9,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    Some(total as i128)
}

fn rfc3339(text: &str) -> Option<i128> {
    let number = |s: &str| -> Option<i64> {
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (date, time) = text.split_once(['T', 't', ' ']).unwrap_or((text, ""));
    let mut parts = date.splitn(3, '-');
    let (year, month, day) = (
        number(parts.next()?)?,
        number(parts.next()?)?,
        number(parts.next()?)?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(year, month as u32, day as u32);
    if time.is_empty() {
        return Some(i128::from(days) * 86_400 * 1_000_000_000);
    }
    // hh:mm:ss[.fraction](Z|+hh:mm|-hh:mm)
    let (clock, offset) = match time.find(['Z', 'z', '+', '-']) {
        Some(at) => time.split_at(at),
        None => (time, "Z"), // Docker reads a time without a zone as UTC too
    };
    let (clock, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut hms = clock.splitn(3, ':');
    let (h, m, s) = (
        number(hms.next()?)?,
        number(hms.next()?)?,
        number(hms.next().unwrap_or("0"))?,
    );
    if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: i128 = format!("{fraction:0<9}").parse().ok()?;
    let offset_secs = match offset {
        "Z" | "z" => 0,
        signed => {
            let sign = if signed.starts_with('-') { -1 } else { 1 };
            let (oh, om) = signed[1..].split_once(':')?;
            sign * (number(oh)? * 3600 + number(om)? * 60)
        }
    };
    let secs = i128::from(days) * 86_400 + i128::from(h * 3600 + m * 60 + s - offset_secs);
    Some(secs * 1_000_000_000 + nanos)
}

/// Cuts what a stream writes into entries: at each `\n`, or every
/// [`MOST_PER_ENTRY`] bytes of a longer line.
struct Lines {
    stream: Stream,
    pending: Vec<u8>,
}

impl Lines {
    fn new(stream: Stream) -> Lines {
        Lines {
            stream,
            pending: Vec::new(),
        }
    }

    /// The entries `bytes` completes.
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        for &byte in bytes {
            self.pending.push(byte);
            if byte == b'\n' || self.pending.len() == MOST_PER_ENTRY {
                out.extend(entry(self.stream, &self.pending, now_nanos()));
                self.pending.clear();
            }
        }
    }

    /// The stream ended: what is left, as an entry without `\n`.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.pending.is_empty() {
            out.extend(entry(self.stream, &self.pending, now_nanos()));
            self.pending.clear();
        }
    }
}

/// A log file that several relays append whole entries to.
#[derive(Clone)]
pub struct Log(Arc<Mutex<File>>);

impl Log {
    pub fn new(file: File) -> Log {
        Log(Arc::new(Mutex::new(file)))
    }

    /// Append entries in one write, so that a reader never sees half of one.
    fn append(&self, entries: &[u8]) {
        if entries.is_empty() {
            return;
        }
        if let Ok(mut file) = self.0.lock() {
            let _ = file.write_all(entries);
        }
    }

    /// A writer for one stream's bytes, e.g. what a pseudo-terminal relays.
    pub fn writer(&self, stream: Stream) -> StreamWriter {
        StreamWriter {
            log: self.clone(),
            lines: Lines::new(stream),
        }
    }
}

/// One stream's bytes into the log, entry by entry; the rest at drop.
pub struct StreamWriter {
    log: Log,
    lines: Lines,
}

impl StreamWriter {
    pub fn write(&mut self, bytes: &[u8]) {
        let mut out = Vec::new();
        self.lines.feed(bytes, &mut out);
        self.log.append(&out);
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        let mut out = Vec::new();
        self.lines.finish(&mut out);
        self.log.append(&out);
    }
}

/// Relay threads: each reads one of the container's output pipes into the
/// log, and with `echo` also to our own stdout or stderr (`berth run` in
/// the foreground).
pub struct Relay {
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    pub fn start(pipes: Vec<(Stream, File)>, log: &Log, echo: bool) -> Relay {
        let threads = pipes
            .into_iter()
            .map(|(stream, mut pipe)| {
                let mut writer = log.writer(stream);
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 8192];
                    while let Ok(n @ 1..) = pipe.read(&mut buffer) {
                        if echo {
                            let _ = match stream {
                                Stream::Stdout => {
                                    let mut out = std::io::stdout().lock();
                                    out.write_all(&buffer[..n]).and_then(|()| out.flush())
                                }
                                Stream::Stderr => std::io::stderr().write_all(&buffer[..n]),
                            };
                        }
                        writer.write(&buffer[..n]);
                    }
                })
            })
            .collect();
        Relay { threads }
    }

    /// Wait until the pipes are drained (every writer inside closed them).
    pub fn finish(self) {
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// Open the container's log to append to. A relay killed in the middle
/// of an entry (its monitor SIGKILLed) left it unfinished: end that line,
/// so that the next entry starts one of its own (the broken one then reads
/// as raw text).
pub fn open(path: &Path) -> Result<File, Error> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
        .map_err(|e| Error::io("open log", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat log", path, e))?
        .len();
    let mut last = [0u8];
    if len > 0 && file.read_at(&mut last, len - 1).is_ok() && last[0] != b'\n' {
        file.write_all(b"\n")
            .map_err(|e| Error::io("write log", path, e))?;
    }
    Ok(file)
}

/// Pipes for the container's stdout and stderr, so that what it writes
/// passes through a relay (which timestamps it) on its way to the log.
///
/// Two pipes keep the streams apart, but not their order: what the
/// container wrote to stdout and then to stderr may come out of the relay
/// the other way round (as in Docker). So where that order is what you
/// see (`berth run` in the foreground, its stdout and stderr one file: a
/// terminal, or `2>&1`), the container gets one pipe for both instead,
/// and the log calls it all stdout.
pub struct Pipes {
    out: (OwnedFd, OwnedFd),
    err: Option<(OwnedFd, OwnedFd)>,
}

impl Pipes {
    /// `one`: a single pipe for both streams.
    pub fn new(one: bool) -> Result<Pipes, Error> {
        let pipe = || pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::Other(format!("pipe: {e}")));
        Ok(Pipes {
            out: pipe()?,
            err: match one {
                true => None,
                false => Some(pipe()?),
            },
        })
    }

    /// Make the write ends our own stdout and stderr until the returned
    /// guard is dropped: the container's init is made meanwhile, and
    /// inherits them (the runtime passes our stdout and stderr on). Ours
    /// come back afterwards, for berth's own messages. (Nothing else of
    /// ours writes to them meanwhile: no thread runs yet.)
    pub fn lend(&self) -> Result<Lent, Error> {
        let keep = |fd: i32| {
            // SAFETY: our stdout or stderr, open for the whole process.
            let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
            fcntl(borrowed, FcntlArg::F_DUPFD_CLOEXEC(10))
                // SAFETY: a new descriptor, ours alone.
                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
                .map_err(|e| Error::Other(format!("duplicate fd {fd}: {e}")))
        };
        let lent = Lent {
            saved: [keep(1)?, keep(2)?],
        };
        let err = self.err.as_ref().unwrap_or(&self.out);
        for (from, to) in [(&self.out.1, 1), (&err.1, 2)] {
            // SAFETY: dup2 onto our own stdout/stderr, restored by `Lent`.
            if unsafe { libc::dup2(from.as_raw_fd(), to) } < 0 {
                return Err(Error::Other(format!(
                    "dup2: {}",
                    std::io::Error::last_os_error()
                )));
            }
        }
        Ok(lent)
    }

    /// The read ends (stdout's, and stderr's unless it shares stdout's),
    /// once the container has the write ends: ours close, so that the
    /// pipes end when the container's copies do.
    pub fn readers(self) -> (OwnedFd, Option<OwnedFd>) {
        (self.out.0, self.err.map(|err| err.0))
    }
}

/// Whether our stdout and stderr are one file (a terminal, or `2>&1`).
pub fn stdout_is_stderr() -> bool {
    let id = |fd: i32| {
        // SAFETY: fstat of our own descriptor.
        nix::sys::stat::fstat(unsafe { BorrowedFd::borrow_raw(fd) })
            .ok()
            .map(|s| (s.st_dev, s.st_ino))
    };
    id(1).is_some() && id(1) == id(2)
}

/// Our stdout and stderr, given back on drop.
pub struct Lent {
    saved: [OwnedFd; 2],
}

impl Drop for Lent {
    fn drop(&mut self) {
        for (fd, saved) in [1, 2].into_iter().zip(&self.saved) {
            // SAFETY: puts our own saved descriptor back in place.
            unsafe { libc::dup2(saved.as_raw_fd(), fd) };
        }
    }
}

/// What `berth logs` shows of a log.
#[derive(Debug, Default, Clone)]
pub struct Show {
    /// Only the last N entries (`--tail`).
    pub tail: Option<usize>,
    /// Only entries at or after (`--since`), before (`--until`), in ns.
    pub since: Option<i128>,
    pub until: Option<i128>,
    /// Each entry's time in front (`-t`).
    pub timestamps: bool,
}

#[derive(Deserialize)]
struct Entry {
    log: String,
    stream: String,
    time: String,
}

/// One line of a log, as `berth logs` prints it: to stdout or stderr,
/// with its time, or `None` if `show` leaves it out. A line that is not
/// an entry (an old raw log) goes to stdout as it is.
pub fn render(line: &[u8], show: &Show) -> Option<(Stream, Vec<u8>)> {
    let Ok(entry) = serde_json::from_slice::<Entry>(line) else {
        return Some((Stream::Stdout, line.to_vec()));
    };
    let time = rfc3339(&entry.time);
    if let Some(time) = time {
        if show.since.is_some_and(|since| time < since) {
            return None;
        }
        if show.until.is_some_and(|until| time >= until) {
            return None;
        }
    }
    let stream = match entry.stream.as_str() {
        "stderr" => Stream::Stderr,
        _ => Stream::Stdout,
    };
    let mut out = Vec::new();
    if show.timestamps {
        out.extend(entry.time.as_bytes());
        out.push(b' ');
    }
    out.extend(entry.log.as_bytes());
    Some((stream, out))
}

/// Split `buffer` into whole lines (with their `\n`), keeping an unfinished
/// last one in it for later.
pub fn whole_lines(buffer: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let Some(last) = buffer.iter().rposition(|b| *b == b'\n') else {
        return Vec::new();
    };
    let rest = buffer.split_off(last + 1);
    let lines = std::mem::replace(buffer, rest);
    lines
        .split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

/// Print `lines` as `show` says (`--tail` applies to what is given).
pub fn print(lines: &[Vec<u8>], show: &Show) -> Result<(), Error> {
    let shown: Vec<(Stream, Vec<u8>)> = lines.iter().filter_map(|l| render(l, show)).collect();
    let skip = match show.tail {
        Some(n) => shown.len().saturating_sub(n),
        None => 0,
    };
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    for (stream, text) in &shown[skip..] {
        let written = match stream {
            Stream::Stdout => stdout.write_all(text).and_then(|()| stdout.flush()),
            Stream::Stderr => stderr.write_all(text),
        };
        // A closed pipe (`berth logs | head`) ends us quietly.
        if written.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// How often `logs -f` looks for more.
pub const FOLLOW_EVERY: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_escaped_json_in_dockers_shape() {
        let line = entry(
            Stream::Stderr,
            b"a \"quote\"\n{\"log\":\"fake\"}\x1b\xff\n",
            0,
        );
        let text = String::from_utf8(line).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "one line: {text}");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value["log"],
            "a \"quote\"\n{\"log\":\"fake\"}\u{1b}\u{fffd}\n"
        );
        assert_eq!(value["stream"], "stderr");
        assert_eq!(value["time"], "1970-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn times_in_and_out() {
        let t = 1_714_564_800_123_456_789i128; // 2024-05-01T12:00:00.123456789Z
        assert_eq!(rfc3339_nano(t), "2024-05-01T12:00:00.123456789Z");
        assert_eq!(rfc3339("2024-05-01T12:00:00.123456789Z"), Some(t));
        assert_eq!(rfc3339("2024-05-01T14:00:00.123456789+02:00"), Some(t));
        assert_eq!(parse_time("2024-05-01", 0).unwrap(), t - 43_200_123_456_789);
        assert_eq!(parse_time("1714564800", 0).unwrap(), t - 123_456_789);
        assert_eq!(
            parse_time("1714564800.5", 0).unwrap(),
            t - 123_456_789 + 500_000_000
        );
        assert_eq!(parse_time("10m", t).unwrap(), t - 600_000_000_000);
        assert_eq!(parse_time("1h30m", t).unwrap(), t - 5_400_000_000_000);
        assert!(parse_time("yesterday", t).is_err());
        for days in [-1000, 0, 19_000, 20_000, 100_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn long_lines_are_cut_and_the_rest_kept_for_later() {
        let mut lines = Lines::new(Stream::Stdout);
        let mut out = Vec::new();
        lines.feed(&vec![b'x'; MOST_PER_ENTRY + 10], &mut out);
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
        lines.feed(b"y\nz", &mut out);
        lines.finish(&mut out);
        let logs: Vec<String> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                serde_json::from_slice::<serde_json::Value>(l).unwrap()["log"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(logs.len(), 3);
        assert_eq!(logs[0].len(), MOST_PER_ENTRY);
        assert_eq!(logs[1], format!("{}y\n", "x".repeat(10)));
        assert_eq!(logs[2], "z");

        let mut buffer = b"one\ntwo\nthr".to_vec();
        assert_eq!(
            whole_lines(&mut buffer),
            [b"one\n".to_vec(), b"two\n".to_vec()]
        );
        assert_eq!(buffer, b"thr");
    }

    #[test]
    fn old_raw_logs_print_as_they_are_and_filters_apply_to_entries() {
        let show = Show {
            since: Some(10),
            timestamps: true,
            ..Show::default()
        };
        assert_eq!(
            render(b"raw line\n", &show),
            Some((Stream::Stdout, b"raw line\n".to_vec()))
        );
        let old = entry(Stream::Stdout, b"old\n", 5);
        assert_eq!(render(&old, &show), None);
        let new = entry(Stream::Stderr, b"new\n", 10);
        assert_eq!(
            render(&new, &show),
            Some((
                Stream::Stderr,
                b"1970-01-01T00:00:00.000000010Z new\n".to_vec()
            ))
        );
    }
}
