//! config.json, parsed whole with the `oci-spec` crate, as the view berth
//! works from ([`Config`]), and how that becomes a stage 02 [`Container`].
//! What can't be honoured is refused here, by name, before anything is
//! made.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use caps::{Capability, CapsHashSet};
use nix::sched::CloneFlags;
use stage01_chroot::Error;
use stage02_namespaces::mounts::{DeviceNode, ListedMount};
use stage02_namespaces::{Container, Gate, IdMap, IdMaps, Process, ProcessStdio, SharedNamespaces};

use crate::harden::{self, CapabilitySets, Hardening};

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) process: ProcessSpec,
    pub(crate) root: RootSpec,
    pub(crate) hostname: Option<String>,
    pub(crate) mounts: Vec<MountSpec>,
    pub(crate) annotations: BTreeMap<String, String>,
    pub(crate) hooks: super::hooks::Hooks,
    pub(crate) linux: LinuxSpec,
}

#[derive(Debug, Clone)]
pub(crate) struct ProcessSpec {
    pub(crate) terminal: bool,
    pub(crate) user: UserSpec,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<String>,
    pub(crate) cwd: String,
    pub(crate) capabilities: Option<CapabilitiesSpec>,
    pub(crate) rlimits: Vec<RlimitSpec>,
    pub(crate) no_new_privileges: bool,
    pub(crate) oom_score_adj: Option<i32>,
    pub(crate) console_size: Option<ConsoleSize>,
}

/// `process.consoleSize`: the terminal's rows and columns.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConsoleSize {
    pub(crate) height: u16,
    pub(crate) width: u16,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct UserSpec {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) additional_gids: Vec<u32>,
}

#[derive(Debug, Clone)]
pub(crate) struct CapabilitiesSpec {
    pub(crate) bounding: Vec<String>,
    pub(crate) effective: Vec<String>,
    pub(crate) permitted: Vec<String>,
    pub(crate) inheritable: Vec<String>,
    pub(crate) ambient: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct RlimitSpec {
    pub(crate) r#type: String,
    pub(crate) hard: u64,
    pub(crate) soft: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct RootSpec {
    pub(crate) path: PathBuf,
    pub(crate) readonly: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct MountSpec {
    pub(crate) destination: PathBuf,
    pub(crate) r#type: Option<String>,
    pub(crate) source: Option<PathBuf>,
    pub(crate) options: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct LinuxSpec {
    pub(crate) namespaces: Vec<NamespaceSpec>,
    pub(crate) resources: Option<oci_spec::runtime::LinuxResources>,
    pub(crate) masked_paths: Vec<String>,
    pub(crate) readonly_paths: Vec<String>,
    pub(crate) seccomp: Option<serde_json::Value>,
    pub(crate) uid_mappings: Vec<IdMapping>,
    pub(crate) gid_mappings: Vec<IdMapping>,
    pub(crate) cgroups_path: Option<PathBuf>,
    pub(crate) sysctl: std::collections::BTreeMap<String, String>,
    pub(crate) devices: Vec<oci_spec::runtime::LinuxDevice>,
    pub(crate) rootfs_propagation: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct NamespaceSpec {
    pub(crate) r#type: String,
    pub(crate) path: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdMapping {
    pub(crate) container_id: u32,
    pub(crate) host_id: u32,
    pub(crate) size: u32,
}

/// The namespace kinds of the spec, and their clone flags.
const NAMESPACES: &[(&str, CloneFlags)] = &[
    ("pid", CloneFlags::CLONE_NEWPID),
    ("network", CloneFlags::CLONE_NEWNET),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("mount", CloneFlags::CLONE_NEWNS),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("user", CloneFlags::CLONE_NEWUSER),
];

pub(crate) fn read_config(bundle: &Path) -> Result<Config, Error> {
    let path = bundle.join("config.json");
    let bytes = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
    parse_config(&bytes, &path)
}

/// A bundle's `config.json` (read from `path`), in berth's terms, with
/// what berth can't honour refused.
pub(crate) fn parse_config(bytes: &[u8], path: &Path) -> Result<Config, Error> {
    let spec: oci_spec::runtime::Spec = serde_json::from_slice(bytes)
        .map_err(|e| Error::Other(format!("{}: not a runtime config: {e}", path.display())))?;
    let config = Config::from_spec(spec)?;
    check_supported(&config)?;
    Ok(config)
}

// ANCHOR: from_spec
impl Config {
    /// The parts of the spec berth honours, in its own terms; every other
    /// part that is set is refused, by name (two that only name security
    /// modules this host doesn't run, AppArmor and SELinux, are let pass,
    /// as runc does).
    pub(crate) fn from_spec(spec: oci_spec::runtime::Spec) -> Result<Config, Error> {
        let Some(process) = spec.process() else {
            return Err(Error::Other(
                "config.json has no process: say what to run".into(),
            ));
        };
        let Some(root) = spec.root() else {
            return Err(Error::Other(
                "config.json has no root: give root.path".into(),
            ));
        };
        if spec.domainname().as_ref().is_some_and(|d| !d.is_empty()) {
            return refuse("domainname".into());
        }
        let linux = spec.linux().clone().unwrap_or_default();
        let unsupported = [
            ("linux.intelRdt", linux.intel_rdt().is_some()),
            ("linux.personality", linux.personality().is_some()),
            ("linux.memoryPolicy", linux.memory_policy().is_some()),
            ("linux.timeOffsets", linux.time_offsets().is_some()),
            (
                "linux.netDevices",
                linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()),
            ),
        ];
        if let Some((name, _)) = unsupported.iter().find(|(_, set)| *set) {
            return refuse((*name).into());
        }
        let hooks = spec.hooks().clone().unwrap_or_default();
        let hook_list = |list: &Option<Vec<oci_spec::runtime::Hook>>| -> Vec<super::hooks::Hook> {
            list.iter()
                .flatten()
                .map(super::hooks::Hook::from_spec)
                .collect()
        };
        Ok(Config {
            process: ProcessSpec::from_spec(process)?,
            root: RootSpec {
                path: root.path().clone(),
                readonly: root.readonly().unwrap_or(false),
            },
            hostname: spec.hostname().clone(),
            mounts: spec
                .mounts()
                .iter()
                .flatten()
                .map(|m| MountSpec {
                    destination: m.destination().clone(),
                    r#type: m.typ().clone(),
                    source: m.source().clone(),
                    options: m.options().clone().unwrap_or_default(),
                })
                .collect(),
            annotations: spec
                .annotations()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            hooks: super::hooks::Hooks {
                prestart: hook_list(hooks.prestart()),
                create_runtime: hook_list(hooks.create_runtime()),
                create_container: hook_list(hooks.create_container()),
                start_container: hook_list(hooks.start_container()),
                poststart: hook_list(hooks.poststart()),
                poststop: hook_list(hooks.poststop()),
            },
            linux: LinuxSpec {
                namespaces: linux
                    .namespaces()
                    .iter()
                    .flatten()
                    .map(|ns| NamespaceSpec {
                        // The spec's names ("mount", "network"), which
                        // serde writes and Display does not.
                        r#type: serde_json::to_value(ns.typ())
                            .ok()
                            .and_then(|name| name.as_str().map(String::from))
                            .unwrap_or_default(),
                        path: ns.path().clone(),
                    })
                    .collect(),
                resources: linux.resources().clone(),
                masked_paths: linux.masked_paths().clone().unwrap_or_default(),
                readonly_paths: linux.readonly_paths().clone().unwrap_or_default(),
                seccomp: linux
                    .seccomp()
                    .as_ref()
                    .map(serde_json::to_value)
                    .transpose()
                    .map_err(|e| Error::Other(format!("config.json: linux.seccomp: {e}")))?,
                uid_mappings: id_mappings(linux.uid_mappings()),
                gid_mappings: id_mappings(linux.gid_mappings()),
                cgroups_path: linux.cgroups_path().clone(),
                sysctl: linux
                    .sysctl()
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
                devices: linux.devices().clone().unwrap_or_default(),
                rootfs_propagation: linux.rootfs_propagation().clone(),
            },
        })
    }
}

impl ProcessSpec {
    /// A `process` of the spec (config.json's, or `exec --process`'s).
    pub(crate) fn from_spec(p: &oci_spec::runtime::Process) -> Result<ProcessSpec, Error> {
        let unsupported = [
            ("process.ioPriority", p.io_priority().is_some()),
            ("process.scheduler", p.scheduler().is_some()),
            ("process.execCPUAffinity", p.exec_cpu_affinity().is_some()),
            ("process.commandLine", p.command_line().is_some()),
        ];
        if let Some((name, _)) = unsupported.iter().find(|(_, set)| *set) {
            return refuse((*name).into());
        }
        let names = |set: &Option<oci_spec::runtime::Capabilities>| -> Vec<String> {
            set.iter()
                .flatten()
                .filter_map(|c| serde_json::to_value(c).ok())
                .filter_map(|name| name.as_str().map(String::from))
                .collect()
        };
        let user = p.user();
        Ok(ProcessSpec {
            terminal: p.terminal().unwrap_or(false),
            user: UserSpec {
                uid: user.uid(),
                gid: user.gid(),
                additional_gids: user.additional_gids().clone().unwrap_or_default(),
            },
            args: p.args().clone().unwrap_or_default(),
            env: p.env().clone().unwrap_or_default(),
            cwd: p.cwd().to_string_lossy().into_owned(),
            capabilities: p.capabilities().as_ref().map(|c| CapabilitiesSpec {
                bounding: names(c.bounding()),
                effective: names(c.effective()),
                permitted: names(c.permitted()),
                inheritable: names(c.inheritable()),
                ambient: names(c.ambient()),
            }),
            rlimits: p
                .rlimits()
                .iter()
                .flatten()
                .map(|r| RlimitSpec {
                    r#type: r.typ().to_string(),
                    hard: r.hard(),
                    soft: r.soft(),
                })
                .collect(),
            no_new_privileges: p.no_new_privileges().unwrap_or(false),
            oom_score_adj: p.oom_score_adj(),
            console_size: p.console_size().map(|size| ConsoleSize {
                height: u16::try_from(size.height()).unwrap_or(u16::MAX),
                width: u16::try_from(size.width()).unwrap_or(u16::MAX),
            }),
        })
    }
}

fn id_mappings(list: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>) -> Vec<IdMapping> {
    list.iter()
        .flatten()
        .map(|m| IdMapping {
            container_id: m.container_id(),
            host_id: m.host_id(),
            size: m.size(),
        })
        .collect()
}
// ANCHOR_END: from_spec

fn refuse<T>(what: String) -> Result<T, Error> {
    Err(Error::Other(format!(
        "config.json: {what} is not supported by berth"
    )))
}

/// Refuse, by name, what berth can't do as asked.
fn check_supported(config: &Config) -> Result<(), Error> {
    namespaces_of(config)?;
    user_map_of(config)?;
    if config.process.args.is_empty() {
        return Err(Error::Other(
            "config.json: process.args is empty: give the command to run".into(),
        ));
    }
    Ok(())
}

/// `linux.namespaces`: a kind listed without a path is made new, with a
/// path it is joined, and a kind not listed is the host's.
fn namespaces_of(config: &Config) -> Result<SharedNamespaces, Error> {
    let mut shared = SharedNamespaces::default();
    for (kind, flag) in NAMESPACES {
        let listed: Vec<&NamespaceSpec> = config
            .linux
            .namespaces
            .iter()
            .filter(|ns| ns.r#type == *kind)
            .collect();
        match listed.as_slice() {
            [] if *kind == "mount" => {
                return refuse("a container without a mount namespace".into());
            }
            [] if *kind == "user" => {} // none asked for: none made
            [] => shared.kept |= *flag,
            [one] => match &one.path {
                None => {}
                Some(_) if *kind == "user" => {
                    return refuse("joining an existing user namespace".into());
                }
                Some(path) => {
                    shared.kept |= *flag;
                    shared.join.push((*flag, path.clone()));
                }
            },
            _ => {
                return Err(Error::Other(format!(
                    "config.json: linux.namespaces lists {kind} more than once"
                )));
            }
        }
    }
    for ns in &config.linux.namespaces {
        if !NAMESPACES.iter().any(|(kind, _)| *kind == ns.r#type) {
            return refuse(format!("a {} namespace", ns.r#type));
        }
    }
    Ok(shared)
}

/// `linux.uidMappings` and `gidMappings`, with a user namespace: one range
/// each (stage 02's [`IdMap`]).
pub(crate) fn user_map_of(config: &Config) -> Result<Option<IdMaps>, Error> {
    let wants_user_ns = config.linux.namespaces.iter().any(|ns| ns.r#type == "user");
    let (uids, gids) = (&config.linux.uid_mappings, &config.linux.gid_mappings);
    if !wants_user_ns {
        return match uids.is_empty() && gids.is_empty() {
            true => Ok(None),
            false => Err(Error::Other(
                "config.json: linux.uidMappings without a user namespace: add {\"type\": \"user\"} \
                 to linux.namespaces"
                    .into(),
            )),
        };
    }
    match (uids.as_slice(), gids.as_slice()) {
        ([uid], [gid]) => {
            let map = |m: &IdMapping| IdMap {
                container: m.container_id,
                host: m.host_id,
                count: m.size,
            };
            Ok(Some(IdMaps {
                uid: map(uid),
                gid: map(gid),
            }))
        }
        _ => refuse("a user namespace with other than one range of uids and one of gids".into()),
    }
}

/// The container `config` describes, its process with `stdio`; with a
/// `gate`, in the OCI runtime's process model.
pub(crate) fn container_of(
    config: &Config,
    bundle: &Path,
    stdio: ProcessStdio,
    gate: Option<Gate>,
) -> Result<Container, Error> {
    let rootfs = bundle.join(&config.root.path);
    let rootfs = stage01_chroot::checks::check_rootfs(&rootfs)?;
    let mounts = mounts_of(&config.mounts, bundle)?;
    let mut settings = sysctls_of(&config.linux.sysctl)?;
    let mut process = process_of(&config.process, stdio)?;
    let hardening = Hardening::custom(
        config.linux.masked_paths.clone(),
        config.linux.readonly_paths.clone(),
        capability_sets(config.process.capabilities.as_ref())?,
        config.process.no_new_privileges,
    )?
    .with_additional_gids(additional_gids(&config.process.user)?)
    .with_filters(super::seccomp::filters_of(config.linux.seccomp.as_ref())?);
    settings.append(&mut process.settings);
    Ok(Container {
        rootfs,
        root_mount: root_mount_of(config)?,
        binds: Vec::new(),
        mounts: Some(mounts),
        readonly_root: config.root.readonly,
        devices: devices_of(config)?,
        root_propagation: root_propagation_of(config)?,
        process: process.process,
        hostname: config.hostname.clone().unwrap_or_default(),
        user_map: user_map_of(config)?,
        before_exec: Some(stage02_namespaces::BeforeExec {
            step: before_exec(settings, process.rlimits, hardening),
            init_title: Some(crate::harden::INIT_TITLE),
            init_program: None,
        }),
        namespaces: namespaces_of(config)?,
        gate,
    })
}

/// A `process` of the spec (config.json's, or `exec --process`'s) as
/// stage 02's [`Process`], with what must be set from inside before exec.
pub(crate) struct ProcessParts {
    pub(crate) process: Process,
    /// Kernel settings as (file under /proc, value).
    pub(crate) settings: Vec<(std::ffi::CString, Vec<u8>)>,
    pub(crate) rlimits: Vec<(libc::__rlimit_resource_t, u64, u64)>,
}

pub(crate) fn process_of(spec: &ProcessSpec, stdio: ProcessStdio) -> Result<ProcessParts, Error> {
    let mut settings = Vec::new();
    if let Some(adjustment) = spec.oom_score_adj {
        settings.push((
            c"/proc/self/oom_score_adj".into(),
            adjustment.to_string().into(),
        ));
    }
    Ok(ProcessParts {
        process: Process {
            args: spec.args.iter().map(Into::into).collect(),
            env: spec
                .env
                .iter()
                .map(|e| {
                    let (k, v) = e.split_once('=').unwrap_or((e, ""));
                    (k.into(), v.into())
                })
                .collect(),
            cwd: PathBuf::from(&spec.cwd),
            // Numbers, so init needs no /etc/passwd; the hardening switches.
            user: Some(format!("{}:{}", spec.user.uid, spec.user.gid)),
            stdio,
        },
        settings,
        rlimits: rlimits_of(&spec.rlimits)?,
    })
}

/// The step before exec: kernel settings, rlimits, then the hardening
/// (which switches to the user).
pub(crate) fn before_exec(
    settings: Vec<(std::ffi::CString, Vec<u8>)>,
    rlimits: Vec<(libc::__rlimit_resource_t, u64, u64)>,
    hardening: Hardening,
) -> std::sync::Arc<dyn Fn(Option<stage02_namespaces::UserIds>) -> std::io::Result<()> + Send + Sync>
{
    std::sync::Arc::new(move |user| {
        for (file, value) in &settings {
            harden::write_proc_file(file, value)?;
        }
        for (resource, soft, hard) in &rlimits {
            let limit = libc::rlimit {
                rlim_cur: *soft,
                rlim_max: *hard,
            };
            // SAFETY: a valid resource number and limit.
            if unsafe { libc::setrlimit(*resource, &limit) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        hardening.apply(user)
    })
}

/// The root as a mount, if berth's own annotation says so (see
/// `crate::bundle::ROOT_MOUNT`): an image's overlay, made inside the
/// container's mount namespace.
fn root_mount_of(config: &Config) -> Result<Option<stage02_namespaces::RootMount>, Error> {
    let Some(text) = config.annotations.get(crate::bundle::ROOT_MOUNT) else {
        return Ok(None);
    };
    let bad = || {
        Error::Other(format!(
            "config.json: annotation {}: not {{\"type\", \"source\", \"options\"}}",
            crate::bundle::ROOT_MOUNT
        ))
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| bad())?;
    let field = |name: &str| value[name].as_str().map(String::from).ok_or_else(bad);
    Ok(Some(stage02_namespaces::RootMount {
        fstype: field("type")?,
        source: field("source")?,
        options: field("options")?,
    }))
}

/// `linux.rootfsPropagation`, as mount flags.
fn root_propagation_of(config: &Config) -> Result<Option<nix::mount::MsFlags>, Error> {
    use nix::mount::MsFlags;
    Ok(match config.linux.rootfs_propagation.as_deref() {
        None | Some("") => None,
        Some("shared") | Some("rshared") => Some(MsFlags::MS_SHARED),
        Some("slave") | Some("rslave") => Some(MsFlags::MS_SLAVE),
        Some("private") | Some("rprivate") => Some(MsFlags::MS_PRIVATE),
        Some("unbindable") | Some("runbindable") => Some(MsFlags::MS_UNBINDABLE),
        Some(other) => {
            return Err(Error::Other(format!(
                "config.json: linux.rootfsPropagation {other:?} is not one of shared, slave, \
                 private, unbindable"
            )));
        }
    })
}

/// `linux.devices`: nodes init makes in the container's /dev. In a user
/// namespace the kernel forbids `mknod`, so there they are refused.
fn devices_of(config: &Config) -> Result<Vec<DeviceNode>, Error> {
    if !config.linux.devices.is_empty() && user_map_of(config)?.is_some() {
        return refuse("linux.devices in a user namespace".into());
    }
    config
        .linux
        .devices
        .iter()
        .map(|d| {
            Ok(DeviceNode {
                path: d.path().clone(),
                kind: d.typ().as_str().chars().next().unwrap_or('c'),
                major: u64::try_from(d.major()).map_err(|_| {
                    Error::Other(format!(
                        "config.json: linux.devices: {} has a negative major",
                        d.path().display()
                    ))
                })?,
                minor: u64::try_from(d.minor()).map_err(|_| {
                    Error::Other(format!(
                        "config.json: linux.devices: {} has a negative minor",
                        d.path().display()
                    ))
                })?,
                mode: d.file_mode().unwrap_or(0o666),
                uid: d.uid().unwrap_or(0),
                gid: d.gid().unwrap_or(0),
            })
        })
        .collect()
}

/// `process.capabilities`, all five sets, checked the way the kernel will
/// check them (none at all without the object).
pub(crate) fn capability_sets(spec: Option<&CapabilitiesSpec>) -> Result<CapabilitySets, Error> {
    let Some(spec) = spec else {
        return Ok(CapabilitySets::default());
    };
    let set = |field: &str, names: &[String]| -> Result<CapsHashSet, Error> {
        names
            .iter()
            .map(|name| {
                name.parse::<Capability>().map_err(|_| {
                    Error::Other(format!(
                        "config.json: process.capabilities.{field}: unknown capability {name}"
                    ))
                })
            })
            .collect()
    };
    let sets = CapabilitySets {
        bounding: set("bounding", &spec.bounding)?,
        effective: set("effective", &spec.effective)?,
        permitted: set("permitted", &spec.permitted)?,
        inheritable: set("inheritable", &spec.inheritable)?,
        ambient: set("ambient", &spec.ambient)?,
    };
    let outside = |inner: &CapsHashSet, outer: &CapsHashSet| {
        inner
            .difference(outer)
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
    };
    let permitted_and_inheritable = sets
        .permitted
        .intersection(&sets.inheritable)
        .copied()
        .collect();
    for (field, extra) in [
        ("effective", outside(&sets.effective, &sets.permitted)),
        (
            "ambient",
            outside(&sets.ambient, &permitted_and_inheritable),
        ),
    ] {
        if !extra.is_empty() {
            return Err(Error::Other(format!(
                "config.json: process.capabilities.{field} has {} beyond what the kernel allows \
                 (effective must be in permitted; ambient in both permitted and inheritable)",
                extra.join(", ")
            )));
        }
    }
    Ok(sets)
}

/// `mounts`, exactly as listed; a bind mount's relative source is the
/// bundle's.
fn mounts_of(mounts: &[MountSpec], bundle: &Path) -> Result<Vec<ListedMount>, Error> {
    mounts
        .iter()
        .map(|m| {
            let bind = m.r#type.as_deref() == Some("bind")
                || m.options.iter().any(|o| o == "bind" || o == "rbind");
            let source = match bind {
                true => m.source.as_ref().map(|source| bundle.join(source)),
                false => m.source.clone(),
            };
            ListedMount::parse(
                m.r#type.as_deref(),
                source.as_deref(),
                &m.destination,
                &m.options,
            )
            .map_err(|e| Error::Other(format!("config.json: mounts: {e}")))
        })
        .collect()
}

/// `linux.sysctl` as files under /proc/sys. Only settings that belong to
/// the container's own namespaces are taken (network, IPC, hostname):
/// the others would change the host's kernel for everyone.
fn sysctls_of(
    sysctl: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<(std::ffi::CString, Vec<u8>)>, Error> {
    const NAMESPACED: &[&str] = &[
        "net.",
        "kernel.msg",
        "kernel.sem",
        "kernel.shm",
        "fs.mqueue.",
        "kernel.hostname",
        "kernel.domainname",
    ];
    sysctl
        .iter()
        .map(|(key, value)| {
            let valid =
                key.split('.').all(|part| !part.is_empty() && part != "..") && !key.contains('/');
            if !valid || !NAMESPACED.iter().any(|prefix| key.starts_with(prefix)) {
                return Err(Error::Other(format!(
                    "config.json: linux.sysctl: {key} is not a setting of the container's own \
                     namespaces; berth-runtime refuses it, as it would change the host"
                )));
            }
            let path = format!("/proc/sys/{}", key.replace('.', "/"));
            let path = std::ffi::CString::new(path)
                .map_err(|_| Error::Other(format!("config.json: linux.sysctl: bad key {key}")))?;
            Ok((path, value.clone().into_bytes()))
        })
        .collect()
}

/// `process.user.additionalGids`, as many as the step before exec can set
/// without allocating.
pub(crate) fn additional_gids(user: &UserSpec) -> Result<Vec<u32>, Error> {
    const MOST: usize = 32;
    if user.additional_gids.len() > MOST {
        return Err(Error::Other(format!(
            "config.json: process.user.additionalGids has {} groups; berth-runtime supports {MOST}",
            user.additional_gids.len()
        )));
    }
    Ok(user.additional_gids.clone())
}

fn rlimits_of(specs: &[RlimitSpec]) -> Result<Vec<(libc::__rlimit_resource_t, u64, u64)>, Error> {
    specs
        .iter()
        .map(|spec| {
            let resource = match spec.r#type.as_str() {
                "RLIMIT_AS" => libc::RLIMIT_AS,
                "RLIMIT_CORE" => libc::RLIMIT_CORE,
                "RLIMIT_CPU" => libc::RLIMIT_CPU,
                "RLIMIT_DATA" => libc::RLIMIT_DATA,
                "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
                "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
                "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
                "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
                "RLIMIT_NICE" => libc::RLIMIT_NICE,
                "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
                "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
                "RLIMIT_RSS" => libc::RLIMIT_RSS,
                "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
                "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
                "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
                "RLIMIT_STACK" => libc::RLIMIT_STACK,
                other => {
                    return Err(Error::Other(format!(
                        "config.json: process.rlimits: {other} is not a Linux resource limit"
                    )));
                }
            };
            Ok((resource, spec.soft, spec.hard))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> Result<Config, Error> {
        let spec: oci_spec::runtime::Spec = serde_json::from_str(json).unwrap();
        let config = Config::from_spec(spec)?;
        check_supported(&config).map(|()| config)
    }

    const BASE: &str = r#"{"process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}}, "root": {"path": "rootfs"},
        "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"},
        {"type": "uts"}, {"type": "mount"}]}}"#;

    #[test]
    fn a_plain_config_is_accepted_and_odd_ones_refused_by_name() {
        assert!(config(BASE).is_ok());
        let changed = |from: &str, to: &str| config(&BASE.replace(from, to));
        let refused = |from: &str, to: &str| changed(from, to).unwrap_err().to_string();
        assert!(refused(r#"{"type": "mount"}"#, r#"{"type": "uts"}"#).contains("more than once"));
        assert!(refused(r#", {"type": "mount"}"#, "").contains("without a mount namespace"));
        assert!(
            refused(
                r#"{"type": "mount"}"#,
                r#"{"type": "mount"}, {"type": "user"}"#
            )
            .contains("other than one range")
        );
        assert!(
            refused(
                r#"{"type": "mount"}"#,
                r#"{"type": "mount"}, {"type": "time"}"#
            )
            .contains("a time namespace")
        );
        assert!(refused(r#"["sh"]"#, "[]").contains("process.args is empty"));
        assert!(
            refused(r#""root": {"#, r#""domainname": "example.org", "root": {"#)
                .contains("domainname is not supported")
        );
        assert!(
            refused(
                r#""cwd": "/""#,
                r#""cwd": "/", "ioPriority": {"class": "IOPRIO_CLASS_RT", "priority": 1}"#
            )
            .contains("process.ioPriority is not supported")
        );
    }

    #[test]
    fn namespaces_are_made_joined_or_kept() {
        let shared = |from: &str, to: &str| {
            namespaces_of(&config(&BASE.replace(from, to)).unwrap()).unwrap()
        };
        let all_new = shared("", "");
        assert_eq!(all_new.kept, CloneFlags::CLONE_NEWCGROUP);
        let host_network = shared(r#"{"type": "network"}, "#, "");
        assert!(host_network.kept.contains(CloneFlags::CLONE_NEWNET));
        let joined = shared(
            r#"{"type": "uts"}"#,
            r#"{"type": "uts", "path": "/proc/1/ns/uts"}"#,
        );
        assert!(joined.kept.contains(CloneFlags::CLONE_NEWUTS));
        assert_eq!(
            joined.join,
            vec![(CloneFlags::CLONE_NEWUTS, PathBuf::from("/proc/1/ns/uts"))]
        );
        let mapped = config(&BASE.replace(
            r#"{"type": "mount"}]"#,
            r#"{"type": "mount"}, {"type": "user"}], "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}], "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]"#,
        ))
        .unwrap();
        assert_eq!(
            user_map_of(&mapped).unwrap(),
            Some(IdMaps::same(IdMap::DEFAULT))
        );
    }

    #[test]
    fn resources_become_stage_three_resources() {
        let json = BASE.replace(
            r#""linux": {"#,
            r#""linux": {"resources": {"memory": {"limit": 67108864, "swap": 134217728}, "cpu": {"quota": 50000, "period": 100000, "shares": 512, "cpus": "0"}, "pids": {"limit": 20}, "devices": [{"allow": false, "access": "rwm"}]}, "#,
        );
        let config = config(&json).unwrap();
        let resources = super::super::resources::resources_of(config.linux.resources.as_ref());
        assert_eq!(resources.memory.limit, Some(64 << 20));
        assert_eq!(resources.memory.swap, Some(128 << 20));
        assert_eq!(resources.cpu.quota, Some(50_000));
        assert_eq!(resources.cpu.shares, Some(512));
        assert_eq!(resources.cpu.cpus.as_deref(), Some("0"));
        assert_eq!(resources.pids, Some(20));
        let with_defaults = super::super::resources::with_default_devices(resources, &[]);
        assert!(
            !with_defaults.devices[0].allow,
            "the spec's rules come first"
        );
        assert!(with_defaults.devices[1..].iter().all(|d| d.allow));
    }
}
