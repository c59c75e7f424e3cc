//! The options of `docker run` beyond the workshop's own: parsed here, into
//! the record's [`Extras`], so that `main` only wires them in. Each is
//! checked at once, so a mistake is reported before anything is made.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use stage01_chroot::Error;

use crate::control::parse_signal;
use crate::record::{Extras, SeccompChoice};

#[derive(clap::Args, Debug, Default)]
pub struct ExtraRunArgs {
    /// Read environment variables from FILE: one KEY=VALUE per line (KEY
    /// alone passes ours on; lines starting with # are comments). -e wins.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Add a line to /etc/hosts, e.g. --add-host db.local:10.0.0.5.
    #[arg(long = "add-host", value_name = "NAME:IP", value_parser = parse_add_host)]
    pub add_host: Vec<(String, String)>,
    /// Use this nameserver in /etc/resolv.conf instead of the host's (repeat
    /// for more).
    #[arg(long, value_name = "IP")]
    pub dns: Vec<IpAddr>,
    /// Mount the container's root file system read-only: it can write only
    /// to volumes, --tmpfs mounts and /dev/shm.
    #[arg(long)]
    pub read_only: bool,
    /// seccomp=PROFILE.json (an OCI linux.seccomp profile), seccomp=unconfined
    /// (no filter), no-new-privileges[=true|false] (berth's default: true).
    #[arg(long = "security-opt", value_name = "OPTION")]
    pub security_opt: Vec<String>,
    /// Accepted as Docker has it: berth always runs its own init as PID 1
    /// (it reaps orphans and passes signals on).
    #[arg(long)]
    pub init: bool,
    /// A resource limit: NAME=SOFT[:HARD], e.g. nofile=1024:2048 or nproc=64
    /// (names as in setrlimit(2), without RLIMIT_; -1 is unlimited).
    #[arg(long, value_name = "NAME=SOFT[:HARD]", value_parser = parse_ulimit)]
    pub ulimit: Vec<(String, u64, u64)>,
    /// Give the container a host device: HOST[:CONTAINER][:rwm], e.g.
    /// --device /dev/fuse. (berth has no device cgroup: the permissions are
    /// the node's file mode, not rwm.)
    #[arg(long, value_name = "DEVICE", value_parser = parse_device)]
    pub device: Vec<(PathBuf, PathBuf, String)>,
    /// The signal `berth stop` sends first (default TERM).
    #[arg(long = "stop-signal", value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Seconds `berth stop` waits after it before SIGKILL (default 10).
    #[arg(long = "stop-timeout", value_name = "SECONDS")]
    pub stop_timeout: Option<u64>,
    /// Set metadata on the container: KEY=VALUE (see berth inspect).
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub label: Vec<(String, String)>,
}

impl ExtraRunArgs {
    /// The record's extras, and the environment the --env-files give
    /// (to go before -e's).
    pub fn into_extras(self) -> Result<(Extras, Vec<String>), Error> {
        let mut env = Vec::new();
        for file in &self.env_file {
            env.extend(read_env_file(file)?);
        }
        let mut extras = Extras {
            read_only: self.read_only,
            ulimits: self.ulimit,
            devices: self.device,
            add_hosts: self.add_host,
            dns: self.dns.iter().map(IpAddr::to_string).collect(),
            stop_signal: self.stop_signal,
            stop_timeout: self.stop_timeout,
            labels: self.label.into_iter().collect::<BTreeMap<_, _>>(),
            init: self.init,
            ..Extras::default()
        };
        if let Some(signal) = &extras.stop_signal {
            parse_signal(signal).map_err(|e| Error::Other(format!("--stop-signal: {e}")))?;
        }
        for option in &self.security_opt {
            security_opt(option, &mut extras)?;
        }
        Ok((extras, env))
    }
}

/// One `--security-opt`, as Docker spells them (`=` or `:`).
fn security_opt(option: &str, extras: &mut Extras) -> Result<(), Error> {
    let (key, value) = option
        .split_once(['=', ':'])
        .map_or((option, None), |(k, v)| (k, Some(v)));
    match (key, value) {
        ("seccomp", Some("unconfined")) => extras.seccomp = SeccompChoice::Unconfined,
        ("seccomp", Some(file)) => extras.seccomp = SeccompChoice::Profile(read_profile(file)?),
        ("no-new-privileges", None | Some("true")) => extras.allow_new_privileges = false,
        ("no-new-privileges", Some("false")) => extras.allow_new_privileges = true,
        _ => {
            return Err(Error::Other(format!(
                "--security-opt {option}: berth knows seccomp=PROFILE.json, seccomp=unconfined \
                 and no-new-privileges[=true|false] (no AppArmor or SELinux labels)"
            )));
        }
    }
    Ok(())
}

/// A seccomp profile in the OCI runtime spec's shape (`defaultAction`,
/// `syscalls`...), checked by compiling it as the runtime will.
fn read_profile(file: &str) -> Result<serde_json::Value, Error> {
    let text =
        std::fs::read(file).map_err(|e| Error::io("--security-opt seccomp: read", file, e))?;
    let profile: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| Error::Other(format!("--security-opt seccomp={file}: not JSON: {e}")))?;
    crate::runtime::seccomp::filters_of(Some(&profile))
        .map_err(|e| Error::Other(format!("--security-opt seccomp={file}: {e}")))?;
    Ok(profile)
}

/// Docker's env file: KEY=VALUE lines, KEY alone for our value, # comments.
fn read_env_file(file: &Path) -> Result<Vec<String>, Error> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::io("--env-file: read", file, e))?;
    let mut env = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = line.split('=').next().unwrap_or_default();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(Error::Other(format!(
                "--env-file {} line {}: {line:?} is not KEY=VALUE",
                file.display(),
                number + 1
            )));
        }
        env.push(line.to_string());
    }
    Ok(env)
}

fn parse_add_host(text: &str) -> Result<(String, String), String> {
    // NAME:IP, where an IPv6 address has colons of its own (Docker also
    // takes NAME=IP for those).
    let (name, address) = text
        .split_once('=')
        .or_else(|| text.split_once(':'))
        .ok_or_else(|| format!("{text:?} is not NAME:IP"))?;
    let address: IpAddr = address
        .trim_matches(['[', ']'])
        .parse()
        .map_err(|_| format!("{text:?}: {address:?} is not an IP address"))?;
    stage02_namespaces::hostname::parse(name)?;
    Ok((name.to_string(), address.to_string()))
}

fn parse_ulimit(text: &str) -> Result<(String, u64, u64), String> {
    const NAMES: &[&str] = &[
        "as",
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    ];
    let (name, values) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=SOFT[:HARD], e.g. nofile=1024:2048"))?;
    if !NAMES.contains(&name) {
        return Err(format!(
            "{name:?} is not a resource limit: one of {}",
            NAMES.join(", ")
        ));
    }
    let value = |v: &str| match v {
        "-1" | "unlimited" => Ok(u64::MAX), // RLIM_INFINITY
        v => v
            .parse::<u64>()
            .map_err(|_| format!("{text:?}: {v:?} is not a number")),
    };
    let (soft, hard) = match values.split_once(':') {
        Some((soft, hard)) => (value(soft)?, value(hard)?),
        None => (value(values)?, value(values)?),
    };
    if soft > hard {
        return Err(format!("{text:?}: the soft limit is above the hard one"));
    }
    Ok((format!("RLIMIT_{}", name.to_ascii_uppercase()), soft, hard))
}

fn parse_device(text: &str) -> Result<(PathBuf, PathBuf, String), String> {
    let mut parts = text.split(':');
    let host = PathBuf::from(parts.next().unwrap_or_default());
    let (mut inside, mut permissions) = (host.clone(), "rwm".to_string());
    for part in parts {
        if part.starts_with('/') {
            inside = part.into();
        } else if !part.is_empty() && part.chars().all(|c| "rwm".contains(c)) {
            permissions = part.into();
        } else {
            return Err(format!("{text:?} is not HOST[:CONTAINER][:rwm]"));
        }
    }
    if !host.is_absolute() || !inside.is_absolute() {
        return Err(format!(
            "{text:?}: device paths are absolute, e.g. /dev/fuse"
        ));
    }
    Ok((host, inside, permissions))
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.into(), value.into())),
        None if !text.is_empty() => Ok((text.into(), String::new())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits_as_docker_writes_them() {
        assert_eq!(
            parse_ulimit("nofile=1024:2048").unwrap(),
            ("RLIMIT_NOFILE".into(), 1024, 2048)
        );
        assert_eq!(
            parse_ulimit("nproc=64").unwrap(),
            ("RLIMIT_NPROC".into(), 64, 64)
        );
        assert_eq!(parse_ulimit("core=-1").unwrap().2, u64::MAX);
        for bad in ["nofile", "files=1", "nofile=2:1", "nofile=x"] {
            assert!(parse_ulimit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn add_host_takes_ipv4_and_ipv6() {
        assert_eq!(
            parse_add_host("db:10.0.0.5").unwrap(),
            ("db".into(), "10.0.0.5".into())
        );
        assert_eq!(
            parse_add_host("v6=::1").unwrap(),
            ("v6".into(), "::1".into())
        );
        for bad in ["db", "db:nowhere", "bad name:10.0.0.1"] {
            assert!(parse_add_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn devices_and_labels() {
        assert_eq!(
            parse_device("/dev/fuse").unwrap(),
            ("/dev/fuse".into(), "/dev/fuse".into(), "rwm".into())
        );
        assert_eq!(
            parse_device("/dev/null:/dev/mine:r").unwrap(),
            ("/dev/null".into(), "/dev/mine".into(), "r".into())
        );
        assert!(parse_device("dev/null").is_err());
        assert!(parse_device("/dev/null:x").is_err());
        assert_eq!(parse_label("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_label("=x").is_err());
    }

    #[test]
    fn security_options() {
        let mut extras = Extras::default();
        security_opt("seccomp=unconfined", &mut extras).unwrap();
        assert_eq!(extras.seccomp, SeccompChoice::Unconfined);
        security_opt("no-new-privileges=false", &mut extras).unwrap();
        assert!(extras.allow_new_privileges);
        security_opt("no-new-privileges", &mut extras).unwrap();
        assert!(!extras.allow_new_privileges);
        assert!(security_opt("apparmor=unconfined", &mut extras).is_err());
    }
}
