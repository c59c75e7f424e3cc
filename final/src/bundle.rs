//! The bundle berth writes for a container it runs itself: a `config.json`
//! in the OCI runtime spec's terms that says everything the runtime is to
//! make, so that the engine's containers go through the same lifecycle as
//! anyone's (`runtime::create`, `start`, `delete`). What the spec has no
//! words for, berth says in an annotation its runtime reads: the overlay
//! that is the container's root, mounted inside its mount namespace
//! ([`ROOT_MOUNT`]).
//!
//! The engine's conventions become the spec's explicit terms here: a user
//! name from the image becomes numbers (looked up in the image's own
//! /etc/passwd), and a user other than root keeps no capabilities, as with
//! Docker.

use std::path::{Path, PathBuf};

use caps::CapsHashSet;
use serde_json::{Value, json};
use stage01_chroot::Error;
use stage02_namespaces::{IdMap, IdMaps, Process, RootMount};
use stage03_cgroups::Limits;
use stage04_images::store::replace_atomic;
use stage05_networks::hosts::Bind;

use crate::harden;
use crate::record::{Extras, SeccompChoice};

/// The annotation that gives the container's root file system as a mount
/// (`{"type", "source", "options"}`), for a runtime that makes it inside the
/// container's mount namespace, where the host never sees it.
pub const ROOT_MOUNT: &str = "org.berth.root-mount";

/// A container as the engine sees it, before it is written down.
pub struct EngineContainer<'a> {
    pub id: &'a str,
    pub process: &'a Process,
    pub hostname: &'a str,
    /// The image's layers, bottom first: where a user name is looked up.
    pub layers: &'a [PathBuf],
    /// The directory the root is mounted on, and the mount.
    pub rootfs: &'a Path,
    pub root_mount: &'a RootMount,
    /// Host files bound over files inside (`/etc/hosts`...).
    pub binds: &'a [Bind],
    /// The user's mounts, by destination, as the spec lists them
    /// (`volume::oci_mounts`): volumes, bind mounts, tmpfs.
    pub mounts: &'a [(PathBuf, Value)],
    /// The capabilities it keeps (see `harden::capabilities`).
    pub keep: CapsHashSet,
    /// `--memory`, `--cpus`, `--pids-limit`.
    pub limits: Limits,
    /// `--privileged`: every capability, nothing masked, no seccomp filter.
    pub privileged: bool,
    /// `--userns`: a user namespace with these ID maps (stage 02's).
    pub user_map: Option<IdMaps>,
    /// `--read-only`, `--security-opt`, `--ulimit`, `--device`.
    pub extras: &'a Extras,
}

// ANCHOR: spec_of
/// The container's `config.json`.
pub fn spec_of(container: &EngineContainer) -> Result<Value, Error> {
    let (uid, gid) = match &container.process.user {
        Some(user) => user_in_layers(container.layers, user)?,
        None => (0, 0),
    };
    let keep = match container.privileged {
        // Every capability we hold ourselves (root may lack some, as in
        // another container, and can't give what it hasn't).
        true => caps::read(None, caps::CapSet::Bounding)
            .map_err(|e| Error::Other(format!("read our capabilities: {e}")))?,
        false => container.keep.clone(),
    };
    let mut names: Vec<String> = keep.iter().map(|c| c.to_string()).collect();
    names.sort();
    // A user other than root keeps none (Docker's rule); the bounding set
    // still limits what a setuid program could gain.
    let held = if uid == 0 { names.clone() } else { Vec::new() };
    let env: Vec<String> = container
        .process
        .env
        .iter()
        .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
        .collect();
    let mut mounts = kernel_mounts();
    // Berth's files and the user's mounts, a parent before what goes in it
    // (a volume at /etc before /etc/hosts, bound into it), as Docker sorts
    // them; where the user mounts something, berth's own file stays out.
    let mut above_the_image: Vec<(&Path, Value)> = container
        .binds
        .iter()
        .filter(|bind| !container.mounts.iter().any(|(d, _)| *d == bind.target))
        .map(|bind| {
            // A network's shared /etc/hosts is read-only (see stage 05).
            let mut options = vec!["rbind", "nosuid", "nodev"];
            options.extend(bind.read_only.then_some("ro"));
            let mount = json!({
                "destination": bind.target, "type": "bind", "source": bind.source,
                "options": options,
            });
            (bind.target.as_path(), mount)
        })
        .chain(
            container
                .mounts
                .iter()
                .map(|(d, m)| (d.as_path(), m.clone())),
        )
        .collect();
    above_the_image.sort_by_key(|(destination, _)| destination.components().count());
    mounts.extend(above_the_image.into_iter().map(|(_, mount)| mount));
    let mut namespaces: Vec<Value> = ["pid", "network", "ipc", "uts", "mount", "cgroup"]
        .iter()
        .map(|kind| json!({"type": kind}))
        .collect();
    if container.user_map.is_some() {
        namespaces.push(json!({"type": "user"}));
    }
    let args: Vec<String> = container
        .process
        .args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let root_mount = json!({
        "type": container.root_mount.fstype,
        "source": container.root_mount.source,
        "options": container.root_mount.options,
    });
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "root": {"path": container.rootfs},
        "hostname": container.hostname,
        "process": {
            "terminal": false,
            "user": {"uid": uid, "gid": gid},
            "args": args,
            "env": env,
            "cwd": container.process.cwd,
            "capabilities": {
                "bounding": names, "effective": held, "permitted": held,
                "inheritable": [], "ambient": [],
            },
            "noNewPrivileges": true,
        },
        "mounts": mounts,
        "annotations": {ROOT_MOUNT: root_mount.to_string()},
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": format!("berth-{}", container.id),
            "maskedPaths": harden::MASKED,
            "readonlyPaths": harden::READ_ONLY,
            "sysctl": {"net.ipv4.ping_group_range": ping_groups(container.user_map)},
            "seccomp": harden::berth_default_profile(),
            "resources": resources_of(&container.limits),
        },
    });
    if let Some(maps) = container.user_map {
        // Container root is an ordinary user of the host's (see stage 02).
        let mapping = |map: IdMap| json!([{"containerID": map.container, "hostID": map.host, "size": map.count}]);
        spec["linux"]["uidMappings"] = mapping(maps.uid);
        spec["linux"]["gidMappings"] = mapping(maps.gid);
    }
    apply_extras(&mut spec, container.extras)?;
    if container.privileged {
        // As the stages run: no masks, no filter, setuid programs work.
        let linux = &mut spec["linux"];
        for key in ["maskedPaths", "readonlyPaths", "seccomp"] {
            linux.as_object_mut().map(|l| l.remove(key));
        }
        spec["process"]["noNewPrivileges"] = false.into();
    }
    Ok(spec)
}

/// Docker's `run` options that change the bundle.
fn apply_extras(spec: &mut Value, extras: &Extras) -> Result<(), Error> {
    if extras.read_only {
        spec["root"]["readonly"] = true.into();
    }
    match &extras.seccomp {
        SeccompChoice::Default => {}
        SeccompChoice::Unconfined => {
            spec["linux"].as_object_mut().map(|l| l.remove("seccomp"));
        }
        SeccompChoice::Profile(profile) => spec["linux"]["seccomp"] = profile.clone(),
    }
    if extras.allow_new_privileges {
        spec["process"]["noNewPrivileges"] = false.into();
    }
    if !extras.ulimits.is_empty() {
        spec["process"]["rlimits"] = extras
            .ulimits
            .iter()
            .map(|(kind, soft, hard)| json!({"type": kind, "soft": soft, "hard": hard}))
            .collect();
    }
    let devices: Vec<Value> = extras
        .devices
        .iter()
        .map(|(host, inside, _)| device_of(host, inside))
        .collect::<Result<_, _>>()?;
    if !devices.is_empty() {
        spec["linux"]["devices"] = devices.into();
    }
    Ok(())
}

/// `linux.devices` entry for the host's device node `host`, made at
/// `inside` in the container with the host node's type, numbers and mode.
fn device_of(host: &Path, inside: &Path) -> Result<Value, Error> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::metadata(host).map_err(|e| Error::io("--device: stat", host, e))?;
    let kind = match meta.file_type() {
        t if t.is_char_device() => "c",
        t if t.is_block_device() => "b",
        _ => {
            return Err(Error::Other(format!(
                "--device {}: not a device node; give one under /dev, e.g. /dev/fuse",
                host.display()
            )));
        }
    };
    let rdev = meta.rdev();
    Ok(json!({
        "path": inside, "type": kind,
        "major": nix::sys::stat::major(rdev), "minor": nix::sys::stat::minor(rdev),
        "fileMode": meta.mode() & 0o777, "uid": meta.uid(), "gid": meta.gid(),
    }))
}

/// Who may open ICMP echo ("ping") sockets without `CAP_NET_RAW`: every
/// group, as Docker sets it. In a user namespace, the range can name only
/// groups that it maps (the kernel refuses others).
fn ping_groups(user_map: Option<IdMaps>) -> String {
    match user_map {
        None => "0 2147483647".into(),
        Some(maps) => format!(
            "{} {}",
            maps.gid.container,
            maps.gid.container + maps.gid.count - 1
        ),
    }
}

/// The engine's limits as `linux.resources`. No swap beyond the memory
/// limit: memory plus swap (the spec's `swap`) is the limit itself.
fn resources_of(limits: &Limits) -> Value {
    let mut resources = json!({});
    if let Some(memory) = limits.memory {
        resources["memory"] = match host_accounts_swap() {
            true => json!({"limit": memory, "swap": memory}),
            false => json!({"limit": memory}),
        };
    }
    if let Some(cpu) = limits.cpu {
        resources["cpu"] = json!({"quota": cpu.quota_us, "period": cpu.period_us});
    }
    if let Some(pids) = limits.pids {
        resources["pids"] = json!({"limit": pids});
    }
    resources
}
// ANCHOR_END: spec_of

/// Write `spec` as `dir/config.json`.
pub fn write(dir: &Path, spec: &Value) -> Result<(), Error> {
    let text = serde_json::to_vec_pretty(spec)
        .map_err(|e| Error::Other(format!("encode the container's config.json: {e}")))?;
    replace_atomic(&dir.join("config.json"), &text) // made again by every run
}

/// The file systems every container gets, as stage 02 mounts them itself.
fn kernel_mounts() -> Vec<Value> {
    let mount = |destination: &str, kind: &str, options: &[&str]| json!({"destination": destination, "type": kind, "source": kind, "options": options});
    vec![
        mount("/proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount("/sys", "sysfs", &["nosuid", "noexec", "nodev", "ro"]),
        mount(
            "/dev",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount("/dev/mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
    ]
}

// ANCHOR: user_in_layers
/// `USER[:GROUP]` as numbers, from the /etc/passwd and /etc/group of the
/// image: the topmost layer that has each file wins, and one that deleted
/// it (a whiteout, or no regular file) means the image has none.
pub fn user_in_layers(layers: &[PathBuf], user: &str) -> Result<(u32, u32), Error> {
    let file = |name: &str| -> String {
        for layer in layers.iter().rev() {
            let path = layer.join("etc").join(name);
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_file() => {
                    return std::fs::read_to_string(&path).unwrap_or_default();
                }
                Ok(_) => return String::new(),
                Err(_) => continue,
            }
        }
        String::new()
    };
    stage02_namespaces::process::resolve_user(user, &file("passwd"), &file("group"))
}
// ANCHOR_END: user_in_layers

/// Whether the kernel counts swap per cgroup here (v1 needs swapaccount=1),
/// so that a limit on memory plus swap can be set.
fn host_accounts_swap() -> bool {
    match stage03_cgroups::cgroup::place() {
        Ok(stage03_cgroups::cgroup::Place::Legacy { parents }) => {
            parents.iter().any(|(controller, dir)| {
                *controller == "memory" && dir.join("memory.memsw.limit_in_bytes").exists()
            })
        }
        Ok(stage03_cgroups::cgroup::Place::Unified { parent }) => {
            parent.join("memory.swap.max").exists()
        }
        Err(_) => false,
    }
}
