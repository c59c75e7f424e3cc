//! What a container asks to have mounted, read the way Docker reads it:
//! `-v`/`--volume` (short and forgiving: a missing host directory is
//! made), `--mount` (long and strict: `key=value` fields, a missing bind
//! source is an error) and `--tmpfs`. Each becomes one [`Mount`], kept in
//! the container's record.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The three kinds of mount a container can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    /// A directory (or file) of the host's, as it is.
    Bind,
    /// A directory berth keeps for it under its root, by name.
    Volume,
    /// A file system in memory, gone with the container.
    Tmpfs,
}

impl MountType {
    /// As Docker names it (`docker inspect`'s `Type`).
    pub fn name(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Volume => "volume",
            MountType::Tmpfs => "tmpfs",
        }
    }
}

/// One mount of a container, as it was asked for (an anonymous volume's
/// name is filled in when the container is made).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    #[serde(rename = "type")]
    pub kind: MountType,
    /// Bind: the host path. Volume: its name (empty for an anonymous one
    /// until it is made). Tmpfs: empty.
    #[serde(default)]
    pub source: String,
    /// Where it appears inside: absolute, clean, never `/`.
    pub target: PathBuf,
    #[serde(default)]
    pub read_only: bool,
    /// Volume: don't copy what the image has at the target into a new,
    /// empty volume (`nocopy`, `volume-nocopy`).
    #[serde(default)]
    pub no_copy: bool,
    /// Bind: not what is mounted below the source too (`bind-nonrecursive`).
    #[serde(default)]
    pub non_recursive: bool,
    /// Bind from `-v`: make the host directory if it is missing, as Docker
    /// does (`--mount` refuses a missing source instead).
    #[serde(default)]
    pub create_source: bool,
    /// Volume: the labels of one that this mount makes (`volume-label`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Tmpfs: its options (`size=64m`, `mode=1777`, `exec`...), which come
    /// after the defaults and so win over them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tmpfs_options: Vec<String>,
}

impl Mount {
    fn new(kind: MountType, source: &str, target: PathBuf) -> Mount {
        Mount {
            kind,
            source: source.to_string(),
            target,
            read_only: false,
            no_copy: false,
            non_recursive: false,
            create_source: false,
            labels: BTreeMap::new(),
            tmpfs_options: Vec::new(),
        }
    }

    /// An anonymous volume at `target` (one the image's config asks for).
    pub fn anonymous(target: PathBuf) -> Mount {
        Mount::new(MountType::Volume, "", target)
    }
}

// ANCHOR: volume_flag
/// `-v`: `/host/path:/ctr/path[:OPTS]` (a bind mount), `NAME:/ctr/path[:OPTS]`
/// (a named volume), or `/ctr/path` (an anonymous volume). OPTS, comma
/// separated: `ro` or `rw`; `z` or `Z` (SELinux relabelling, accepted and
/// ignored); `nocopy` (volumes). As in Docker, `/ctr/path:ro` is refused:
/// two parts are always SOURCE:TARGET.
pub fn parse_volume_flag(text: &str) -> Result<Mount, String> {
    let invalid = |why: String| format!("invalid volume specification: '{text}': {why}");
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, options) = match parts.as_slice() {
        [target] => ("", *target, ""),
        [source, target] if is_mode(target) => {
            return Err(invalid(format!(
                "{target} is taken as the target, not options: two parts are SOURCE:TARGET \
                 (an anonymous volume with options: --mount target={source},readonly)"
            )));
        }
        [source, target] => (*source, *target, ""),
        [source, target, options] => (*source, *target, *options),
        _ => {
            return Err(invalid(
                "expected [SOURCE:]TARGET[:OPTIONS], with at most two ':'".into(),
            ));
        }
    };
    if parts.len() > 1 && source.is_empty() {
        return Err(invalid(
            "the source before ':' is empty (give a host path, a volume name, or only the target)"
                .into(),
        ));
    }
    let target = clean_target(target).map_err(invalid)?;
    let mut mount = match source {
        "" => Mount::anonymous(target),
        _ if source.starts_with('/') => {
            let mut bind = Mount::new(MountType::Bind, source, target);
            bind.create_source = true;
            bind
        }
        _ => {
            check_volume_name(source).map_err(|why| {
                invalid(format!(
                    "{why}. If you meant a host directory, give its absolute path"
                ))
            })?;
            Mount::new(MountType::Volume, source, target)
        }
    };
    let mut access = None;
    let mut relabel = None;
    for option in options.split(',').filter(|o| !o.is_empty()) {
        let repeated = |was: Option<&str>| match was {
            Some(first) => Err(invalid(format!(
                "options {first} and {option} can't go together"
            ))),
            None => Ok(()),
        };
        match option {
            "ro" | "rw" => {
                repeated(access)?;
                access = Some(option);
                mount.read_only = option == "ro";
            }
            // SELinux labels: berth sets none, so there is nothing to relabel.
            "z" | "Z" => {
                repeated(relabel)?;
                relabel = Some(option);
            }
            "nocopy" if mount.kind == MountType::Volume => mount.no_copy = true,
            "nocopy" => {
                return Err(invalid(
                    "nocopy is for volumes: a bind mount copies nothing".into(),
                ));
            }
            // Berth's own way (and Docker's default): nothing propagates.
            "private" | "rprivate" if mount.kind == MountType::Bind => {}
            "shared" | "rshared" | "slave" | "rslave" => {
                return Err(invalid(format!(
                    "mount propagation {option} is not supported: berth keeps every mount private"
                )));
            }
            _ => {
                return Err(invalid(format!(
                    "invalid mode: {option} (use ro, rw, z, Z or nocopy)"
                )));
            }
        }
    }
    Ok(mount)
}
// ANCHOR_END: volume_flag

/// Whether `text` reads as `-v` options rather than a path (`ro`, `rw,z`).
fn is_mode(text: &str) -> bool {
    !text.is_empty()
        && text.split(',').all(|o| {
            matches!(
                o,
                "ro" | "rw"
                    | "z"
                    | "Z"
                    | "nocopy"
                    | "private"
                    | "rprivate"
                    | "shared"
                    | "rshared"
                    | "slave"
                    | "rslave"
            )
        })
}

// ANCHOR: mount_flag
/// `--mount type=bind|volume|tmpfs,source=...,target=...,...`: Docker's
/// fields and its checks. The type is `volume` unless given; a bind needs
/// a source, which must exist (checked when the container is made); a
/// tmpfs takes none.
pub fn parse_mount_flag(text: &str) -> Result<Mount, String> {
    let invalid = |why: String| format!("invalid argument '{text}' for --mount: {why}");
    let mut kind = MountType::Volume;
    let (mut source, mut target) = (None::<String>, None::<String>);
    let mut read_only = false;
    let (mut no_copy, mut non_recursive) = (false, false);
    let mut labels = BTreeMap::new();
    let mut tmpfs_options = Vec::new();
    // Which fields were given, to refuse those that don't fit the type.
    let (mut volume_fields, mut bind_fields, mut tmpfs_fields) = (vec![], vec![], vec![]);
    for field in text.split(',') {
        let (key, value) = match field.split_once('=') {
            Some((key, value)) => (key.to_ascii_lowercase(), Some(value)),
            None => (field.to_ascii_lowercase(), None),
        };
        let boolean = |value: Option<&str>| match value {
            None | Some("1" | "true" | "True" | "TRUE") => Ok(true),
            Some("0" | "false" | "False" | "FALSE") => Ok(false),
            Some(other) => Err(invalid(format!(
                "invalid value for {key}: {other} (true or false)"
            ))),
        };
        let given = |value: Option<&str>| {
            value.map(str::to_string).ok_or_else(|| {
                invalid(format!(
                    "invalid field '{field}': it must be a key=value pair"
                ))
            })
        };
        match key.as_str() {
            "type" => {
                kind = match given(value)?.to_ascii_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "volume" => MountType::Volume,
                    "tmpfs" => MountType::Tmpfs,
                    other => {
                        return Err(invalid(format!(
                            "type '{other}' is not valid (bind, volume or tmpfs)"
                        )));
                    }
                }
            }
            "source" | "src" => source = Some(given(value)?),
            "target" | "dst" | "destination" => target = Some(given(value)?),
            "readonly" | "ro" => read_only = boolean(value)?,
            "volume-nocopy" => {
                no_copy = boolean(value)?;
                volume_fields.push(key.clone());
            }
            "volume-label" => {
                let label = given(value)?;
                let (k, v) = label.split_once('=').unwrap_or((&label, ""));
                labels.insert(k.to_string(), v.to_string());
                volume_fields.push(key.clone());
            }
            "volume-driver" => {
                let driver = given(value)?;
                if driver != super::DRIVER {
                    return Err(invalid(format!(
                        "volume driver {driver} is not supported: berth has only \"local\""
                    )));
                }
                volume_fields.push(key.clone());
            }
            "bind-propagation" => {
                match given(value)?.as_str() {
                    "private" | "rprivate" => {}
                    other => {
                        return Err(invalid(format!(
                            "bind-propagation {other} is not supported: berth keeps every \
                             mount private"
                        )));
                    }
                }
                bind_fields.push(key.clone());
            }
            "bind-nonrecursive" => {
                non_recursive = boolean(value)?;
                bind_fields.push(key.clone());
            }
            "tmpfs-size" => {
                let size = given(value)?;
                let bytes = parse_size(&size)
                    .ok_or_else(|| invalid(format!("invalid value for tmpfs-size: {size}")))?;
                tmpfs_options.push(format!("size={bytes}"));
                tmpfs_fields.push(key.clone());
            }
            "tmpfs-mode" => {
                let mode = given(value)?;
                u32::from_str_radix(&mode, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| {
                        invalid(format!(
                            "invalid value for tmpfs-mode: {mode} (octal, as 1777)"
                        ))
                    })?;
                tmpfs_options.push(format!("mode={mode}"));
                tmpfs_fields.push(key.clone());
            }
            "volume-opt" => {
                return Err(invalid(
                    "volume-opt is not supported: berth's volumes are plain directories".into(),
                ));
            }
            _ => return Err(invalid(format!("unexpected key '{key}' in '{field}'"))),
        }
    }
    for (fields, wanted) in [
        (&volume_fields, MountType::Volume),
        (&bind_fields, MountType::Bind),
        (&tmpfs_fields, MountType::Tmpfs),
    ] {
        if let Some(field) = fields.first().filter(|_| kind != wanted) {
            return Err(invalid(format!(
                "cannot mix '{field}' with mount type '{}'",
                kind.name()
            )));
        }
    }
    let target = target.ok_or_else(|| invalid("target is required".into()))?;
    let target = clean_target(&target).map_err(|why| {
        invalid(format!(
            "invalid mount config for type \"{}\": {why}",
            kind.name()
        ))
    })?;
    let config_error = |why: &str| {
        invalid(format!(
            "invalid mount config for type \"{}\": {why}",
            kind.name()
        ))
    };
    let source = source.unwrap_or_default();
    let source = match kind {
        MountType::Bind if source.is_empty() => {
            return Err(config_error("field Source must not be empty"));
        }
        // As the Docker CLI does: `.` and `./dir` are the current directory's.
        MountType::Bind if source == "." || source.starts_with("./") => std::env::current_dir()
            .map_err(|e| config_error(&format!("the current directory: {e}")))?
            .join(&source)
            .to_string_lossy()
            .into_owned(),
        MountType::Bind if !source.starts_with('/') => {
            return Err(config_error(&format!(
                "invalid mount path: '{source}' mount path must be absolute"
            )));
        }
        MountType::Volume if !source.is_empty() => {
            check_volume_name(&source).map_err(|why| config_error(&why))?;
            source
        }
        MountType::Tmpfs if !source.is_empty() => {
            return Err(config_error("field Source must not be specified"));
        }
        _ => source,
    };
    let mut mount = Mount::new(kind, &source, target);
    mount.read_only = read_only;
    mount.no_copy = no_copy;
    mount.non_recursive = non_recursive;
    mount.labels = labels;
    mount.tmpfs_options = tmpfs_options;
    Ok(mount)
}
// ANCHOR_END: mount_flag

/// `--tmpfs /path[:OPTS]`: OPTS as mount(8) takes them for tmpfs, checked
/// against the few that make sense (a size, a mode, owners, the usual
/// flags), so nothing else reaches the kernel as file system data.
pub fn parse_tmpfs_flag(text: &str) -> Result<Mount, String> {
    let (target, options) = text.split_once(':').unwrap_or((text, ""));
    let invalid = |why: String| format!("invalid --tmpfs '{text}': {why}");
    let target = clean_target(target).map_err(invalid)?;
    let mut mount = Mount::new(MountType::Tmpfs, "", target);
    for option in options.split(',').filter(|o| !o.is_empty()) {
        check_tmpfs_option(option).map_err(invalid)?;
        mount.tmpfs_options.push(option.to_string());
    }
    Ok(mount)
}

/// The mount flags a tmpfs may be given (as the runtime reads them).
const TMPFS_FLAGS: &[&str] = &[
    "ro",
    "rw",
    "exec",
    "noexec",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "atime",
    "noatime",
    "diratime",
    "nodiratime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "sync",
    "async",
    "dirsync",
];

fn check_tmpfs_option(option: &str) -> Result<(), String> {
    if TMPFS_FLAGS.contains(&option) {
        return Ok(());
    }
    let ok = match option.split_once('=') {
        Some(("size", size)) => {
            size.strip_suffix('%')
                .is_some_and(|p| p.parse::<u8>().is_ok_and(|p| (1..=100).contains(&p)))
                || parse_size(size).is_some()
        }
        Some(("nr_inodes", count)) => parse_size(count).is_some(),
        Some(("mode", mode)) => u32::from_str_radix(mode, 8).is_ok_and(|m| m <= 0o7777),
        Some(("uid" | "gid", id)) => id.parse::<u32>().is_ok(),
        _ => {
            return Err(format!(
                "unknown tmpfs option {option} (use size=, mode=, uid=, gid=, nr_inodes=, or \
                 flags such as ro, exec, suid, dev)"
            ));
        }
    };
    match ok {
        true => Ok(()),
        false => Err(format!("invalid value in {option}")),
    }
}

/// `65536`, `64k`, `64m`, `1g` (also `kb`, `MiB`... as Docker reads them)
/// in bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = text[digits.len()..].to_ascii_lowercase();
    let number: u64 = digits.parse().ok()?;
    let scale: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    number.checked_mul(scale)
}

// ANCHOR: clean_target
/// Where a mount goes inside the container: an absolute path, without
/// `..` (the runtime walks the target one name at a time and would refuse
/// it later; better to say so now), not `/` itself (that is the image),
/// and not in /proc (the kernel's view of the container's processes,
/// which berth masks in part: covering it would undo that).
pub fn clean_target(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err("the target inside the container is empty".into());
    }
    let path = Path::new(text);
    if !path.is_absolute() {
        return Err(format!(
            "invalid mount path: '{text}' mount path must be absolute"
        ));
    }
    let mut clean = PathBuf::from("/");
    for part in path.components() {
        match part {
            Component::Normal(name) => clean.push(name),
            Component::ParentDir => {
                return Err(format!(
                    "'{text}' has '..' in it: name the directory inside without it"
                ));
            }
            _ => {}
        }
    }
    if clean == Path::new("/") {
        return Err("invalid specification: destination can't be '/'".into());
    }
    if clean.starts_with("/proc") {
        return Err(format!(
            "{} is the container's /proc, which berth mounts and partly masks: mount elsewhere",
            clean.display()
        ));
    }
    Ok(clean)
}
// ANCHOR_END: clean_target

/// Docker's rule for a volume name: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, so two
/// characters at least, and never a path (`/`, `..`).
pub fn check_volume_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    match first_ok && rest_ok && name.len() >= 2 && name.len() <= 255 {
        true => Ok(()),
        false => Err(format!(
            "\"{name}\" is not a volume name: use [a-zA-Z0-9][a-zA-Z0-9_.-]+ (two characters or \
             more, a letter or digit first)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_flags_read_like_dockers() {
        let bind = parse_volume_flag("/srv/site:/usr/share/www:ro,Z").unwrap();
        assert_eq!(bind.kind, MountType::Bind);
        assert_eq!(bind.source, "/srv/site");
        assert_eq!(bind.target, Path::new("/usr/share/www"));
        assert!(bind.read_only && bind.create_source);

        let named = parse_volume_flag("data:/var/lib/db/:nocopy").unwrap();
        assert_eq!(named.kind, MountType::Volume);
        assert_eq!(
            (named.source.as_str(), named.target.as_path()),
            ("data", Path::new("/var/lib/db"))
        );
        assert!(named.no_copy && !named.read_only);

        let anonymous = parse_volume_flag("/cache").unwrap();
        assert_eq!(anonymous, Mount::anonymous("/cache".into()));

        let refused = |text: &str, says: &str| {
            let err = parse_volume_flag(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        };
        refused("/data:ro", "two parts are SOURCE:TARGET");
        refused("data:rel/path", "must be absolute");
        refused("../x:/data", "is not a volume name");
        refused("./site:/data", "absolute path");
        refused("x:/data", "two characters or more");
        refused("data:/a/../etc", "'..'");
        refused("data:/", "can't be '/'");
        refused("data:/proc/sys", "/proc");
        refused("/a:/b:ro,rw", "can't go together");
        refused("/a:/b:nocopy", "nocopy is for volumes");
        refused("/a:/b:rshared", "not supported");
        refused("/a:/b:c:d", "at most two ':'");
        refused(":/b", "empty");
    }

    #[test]
    fn mount_flags_read_like_dockers() {
        let bind = parse_mount_flag("type=bind,src=/srv,dst=/www,readonly").unwrap();
        assert_eq!(
            (bind.kind, bind.source.as_str(), bind.read_only),
            (MountType::Bind, "/srv", true)
        );
        assert!(!bind.create_source, "--mount never makes the source");
        let volume = parse_mount_flag(
            "source=logs,target=/logs,volume-nocopy,volume-label=app=web,ro=false",
        )
        .unwrap();
        assert_eq!(volume.kind, MountType::Volume, "volume is the default");
        assert!(volume.no_copy && !volume.read_only);
        assert_eq!(volume.labels["app"], "web");
        let tmpfs =
            parse_mount_flag("type=tmpfs,destination=/run,tmpfs-size=64m,tmpfs-mode=1770").unwrap();
        assert_eq!(tmpfs.tmpfs_options, ["size=67108864", "mode=1770"]);
        assert_eq!(
            parse_mount_flag("target=/scratch").unwrap(),
            Mount::anonymous("/scratch".into())
        );

        let refused = |text: &str, says: &str| {
            let err = parse_mount_flag(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        };
        refused("type=bind,target=/x", "field Source must not be empty");
        refused("type=bind,src=rel,target=/x", "must be absolute");
        refused("type=tmpfs,src=x,target=/x", "must not be specified");
        refused("type=nfs,target=/x", "type 'nfs' is not valid");
        refused("type=bind,src=/a,target=/x,volume-nocopy", "cannot mix");
        refused("type=volume,target=/x,tmpfs-size=1m", "cannot mix");
        refused("src=a/b,target=/x", "is not a volume name");
        refused("type=bind,src=/a", "target is required");
        refused("target=/x,colour=blue", "unexpected key 'colour'");
        refused("target=/x,readonly=maybe", "invalid value for readonly");
        refused("target", "key=value");
        refused("type=tmpfs,target=/x,tmpfs-size=lots", "tmpfs-size");
    }

    #[test]
    fn tmpfs_flags_take_only_tmpfs_options() {
        let tmpfs = parse_tmpfs_flag("/run:size=64m,exec,mode=1777").unwrap();
        assert_eq!(tmpfs.target, Path::new("/run"));
        assert_eq!(tmpfs.tmpfs_options, ["size=64m", "exec", "mode=1777"]);
        assert!(parse_tmpfs_flag("/run:size=50%").is_ok());
        assert!(parse_tmpfs_flag("/run:huge=always").is_err());
        assert!(parse_tmpfs_flag("/run:mode=999").is_err());
        assert!(parse_tmpfs_flag("run").is_err());
    }

    #[test]
    fn names_follow_dockers_rule() {
        for good in ["db", "my-data_1.0", "0a"] {
            assert!(check_volume_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a", "-db", ".db", "../x", "a/b", "with space", "ünï"] {
            assert!(check_volume_name(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_size("64k"), Some(65536));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("12x"), None);
    }
}
