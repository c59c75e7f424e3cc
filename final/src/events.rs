//! `berth events`: what happened to containers, for scripts that watch.
//!
//! Docker's daemon streams events as they happen. berth has no daemon, so
//! every command that changes a container appends one line of JSON to
//! `ROOT/events.jsonl` (as Podman's file event logger does), and `berth
//! events` reads that file, and follows it for new lines. A line is one
//! `write` to a file opened with `O_APPEND`, so lines from concurrent
//! commands never interleave. The file is started afresh (the old one kept
//! as `events.jsonl.1`) when it passes 4 MiB.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use stage01_chroot::Error;

use crate::Engine;
use crate::format::{Filters, Format};
use crate::logfile;
use crate::record::Record;

const FILE: &str = "events.jsonl";
const ROTATE_AT: u64 = 4 << 20;

/// The filters `events` knows, as Docker's.
pub const FILTERS: &[&str] = &["container", "event", "image", "type"];

fn path(engine: &Engine) -> PathBuf {
    engine.root.dir().join(FILE)
}

/// Note that `action` happened to the container (`create`, `start`, `die`,
/// `destroy`, `pause`, `unpause`, `rename`...), with `extra` attributes
/// (e.g. the exit code). Never fails the command: a lost event is only
/// warned about.
pub fn emit(engine: &Engine, record: &Record, action: &str, extra: &[(&str, String)]) {
    if let Err(err) = append(engine, record, action, extra) {
        eprintln!("berth: warning: could not note the event {action}: {err}");
    }
}

fn append(
    engine: &Engine,
    record: &Record,
    action: &str,
    extra: &[(&str, String)],
) -> std::io::Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut attributes = Map::new();
    attributes.insert("image".into(), record.spec.image.clone().into());
    attributes.insert("name".into(), record.display_name().into());
    for (key, value) in &record.spec.extras.labels {
        attributes.insert(key.clone(), value.clone().into());
    }
    for (key, value) in extra {
        attributes.insert((*key).into(), value.clone().into());
    }
    let event = json!({
        "status": action, "id": record.id, "from": record.spec.image,
        "Type": "container", "Action": action,
        "Actor": {"ID": record.id, "Attributes": attributes},
        "scope": "local", "time": now.as_secs(), "timeNano": now.as_nanos() as u64,
    });
    let path = path(engine);
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > ROTATE_AT) {
        let _ = std::fs::rename(&path, path.with_extension("jsonl.1"));
    }
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&path)?;
    file.write_all(format!("{event}\n").as_bytes())
}

/// `berth events`: the events from `since` on, then new ones as they come
/// until `until` (or forever without it); times in nanoseconds.
pub fn show(
    engine: &Engine,
    since: Option<i128>,
    until: Option<i128>,
    filters: &Filters,
    format: &Format,
) -> Result<(), Error> {
    let path = path(engine);
    // Nothing yet: wait for the first line (if following).
    let file = loop {
        match File::open(&path) {
            Ok(file) => break file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if until.is_some_and(|u| u <= logfile::now_nanos()) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(Error::io("read", &path, e)),
        }
    };
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .map_err(|e| Error::io("read", &path, e))?;
        if read == 0 || !line.ends_with('\n') {
            // At the end (or a line being written): done, or wait for more.
            if until.is_some_and(|u| u <= logfile::now_nanos()) {
                return Ok(());
            }
            if read > 0 {
                let back = -(read as i64);
                reader
                    .seek(SeekFrom::Current(back))
                    .map_err(|e| Error::io("read", &path, e))?;
            }
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        let Ok(Value::Object(event)) = serde_json::from_str::<Value>(&line) else {
            continue; // not ours
        };
        let time = i128::from(event["timeNano"].as_u64().unwrap_or(0));
        if since.is_some_and(|s| time < s) {
            continue;
        }
        if until.is_some_and(|u| time > u) {
            return Ok(());
        }
        if filters.pass(|key, value| matches(&event, key, value)) {
            print(&event, format)?;
        }
    }
}

fn matches(event: &Map<String, Value>, key: &str, value: &str) -> bool {
    let attribute = |name: &str| event["Actor"]["Attributes"][name].as_str().unwrap_or("");
    match key {
        "container" => {
            attribute("name") == value
                || event["id"].as_str().is_some_and(|id| id.starts_with(value))
        }
        "event" => event["Action"] == value,
        "image" => attribute("image") == value,
        "type" => event["Type"] == value,
        _ => false,
    }
}

fn print(event: &Map<String, Value>, format: &Format) -> Result<(), Error> {
    match format {
        Format::Default | Format::Quiet => {
            let mut attributes: Vec<String> = event["Actor"]["Attributes"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            attributes.sort();
            let nanos = event["timeNano"].as_u64().unwrap_or(0);
            println!(
                "{} container {} {} ({})",
                logfile::rfc3339_nano(i128::from(nanos)),
                event["Action"].as_str().unwrap_or(""),
                event["id"].as_str().unwrap_or(""),
                attributes.join(", ")
            );
            Ok(())
        }
        other => other.print(std::slice::from_ref(event), "id", || {}),
    }
}

/// `--since`/`--until`, as `berth logs` takes them: RFC 3339, a date,
/// Unix seconds or a duration before now; in nanoseconds.
pub fn parse_time(text: &str) -> Result<i128, String> {
    logfile::parse_time(text, logfile::now_nanos())
}
