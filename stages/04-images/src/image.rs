//! From a stored image to what a container needs: its layers, unpacked, and
//! the process its config describes.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use stage01_chroot::Error;
use stage01_chroot::cli::CONTAINER_PATH;
use stage02_namespaces::Process;

use crate::layers;
use crate::reference::Reference;
use crate::spec::{ContainerConfig, Descriptor, ImageConfig, Manifest};
use crate::store::Store;

/// An image in the store: its manifest and config.
pub struct Image {
    pub reference: Reference,
    pub descriptor: Descriptor,
    pub manifest: Manifest,
    pub config: ImageConfig,
}

impl Image {
    /// Look `name` up in the store (`busybox` means docker.io/library/busybox:latest).
    pub fn open(store: &Store, name: &str) -> Result<Image, Error> {
        let reference: Reference = name.parse()?;
        let descriptor = store.resolve(&reference.to_string())?.ok_or_else(|| {
            Error::Other(format!(
                "image {reference} is not in the store; pull it first: {} pull {name}",
                stage01_chroot::exit::program()
            ))
        })?;
        let manifest: Manifest = parse(
            &store.read_blob(&descriptor.digest)?,
            "manifest",
            &reference,
        )?;
        let config: ImageConfig = parse(
            &store.read_blob(&manifest.config.digest)?,
            "config",
            &reference,
        )?;
        Ok(Image {
            reference,
            descriptor,
            manifest,
            config,
        })
    }

    // ANCHOR: layers
    /// Each layer's directory in the cache, bottom first, unpacked on first use.
    pub fn unpacked_layers(&self, store: &Store, cache: &Path) -> Result<Vec<PathBuf>, Error> {
        if self.manifest.layers.len() != self.config.rootfs.diff_ids.len() {
            return Err(Error::Other(format!(
                "{}: the manifest has {} layers but the config {} diff IDs",
                self.reference,
                self.manifest.layers.len(),
                self.config.rootfs.diff_ids.len()
            )));
        }
        self.manifest
            .layers
            .iter()
            .zip(&self.config.rootfs.diff_ids)
            .map(|(layer, diff_id)| {
                let blob = store.blob_path(&layer.digest);
                let file =
                    std::fs::File::open(&blob).map_err(|e| Error::io("open layer", &blob, e))?;
                layers::ensure_unpacked_blob(cache, layer, diff_id, file)
            })
            .collect()
    }
    // ANCHOR_END: layers
}

/// Remove unpacked layers that no image in the store uses any more; how
/// many. Skipped while any container exists: it may be running on them.
pub fn remove_unused_layers(
    store: &Store,
    cache: &Path,
    containers: &Path,
) -> Result<usize, Error> {
    let busy = std::fs::read_dir(containers)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    let Ok(entries) = std::fs::read_dir(cache) else {
        return Ok(0);
    };
    if busy {
        return Ok(0);
    }
    let mut used = std::collections::BTreeSet::new();
    for (name, _) in store.list()? {
        used.extend(
            Image::open(store, &name)?
                .config
                .rootfs
                .diff_ids
                .iter()
                .map(|d| d.hex().to_string()),
        );
    }
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !used.contains(&name) {
            std::fs::remove_dir_all(entry.path())
                .map_err(|e| Error::io("remove layer", entry.path(), e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn parse<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
    reference: &Reference,
) -> Result<T, Error> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::Other(format!("{reference}: the stored {what} is not valid: {e}")))
}

/// What `run` may change about the image's defaults, like `docker run`.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replaces the image's Entrypoint (and then its Cmd is dropped too).
    pub entrypoint: Option<String>,
    /// Replaces the image's Cmd.
    pub command: Vec<OsString>,
    /// `KEY=VALUE`, or `KEY` to pass our own value on.
    pub env: Vec<String>,
    pub workdir: Option<PathBuf>,
    pub user: Option<String>,
}

// ANCHOR: process
/// The process to run: the image's Entrypoint + Cmd, Env, WorkingDir and
/// User, with the command line's overrides applied, as Docker does.
pub fn process(config: &ImageConfig, overrides: &Overrides) -> Result<Process, Error> {
    let defaults = config.config.clone().unwrap_or_default();
    let args = command_line(&defaults, overrides);
    if args.is_empty() {
        return Err(Error::Other(
            "the image has no command (no Entrypoint or Cmd): give one after the image name".into(),
        ));
    }
    Ok(Process {
        args,
        env: environment(&defaults, &overrides.env)?,
        cwd: overrides
            .workdir
            .clone()
            .or_else(|| {
                defaults
                    .working_dir
                    .filter(|w| !w.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| "/".into()),
        user: overrides
            .user
            .clone()
            .or(defaults.user)
            .filter(|u| !u.is_empty()),
        stdio: Default::default(),
    })
}
// ANCHOR_END: process

fn command_line(defaults: &ContainerConfig, overrides: &Overrides) -> Vec<OsString> {
    let entrypoint: Vec<OsString> = match &overrides.entrypoint {
        Some(entrypoint) => vec![entrypoint.into()],
        None => defaults
            .entrypoint
            .iter()
            .flatten()
            .map(OsString::from)
            .collect(),
    };
    let cmd: Vec<OsString> = if !overrides.command.is_empty() {
        overrides.command.clone()
    } else if overrides.entrypoint.is_some() {
        Vec::new()
    } else {
        defaults.cmd.iter().flatten().map(OsString::from).collect()
    };
    entrypoint.into_iter().chain(cmd).collect()
}

/// The image's Env, then ours from `-e`; PATH and HOME if nobody set them.
fn environment(
    defaults: &ContainerConfig,
    extra: &[String],
) -> Result<Vec<(OsString, OsString)>, Error> {
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    let mut set = |key: &str, value: OsString| {
        env.retain(|(k, _)| k != key);
        env.push((key.into(), value));
    };
    for entry in defaults.env.iter().flatten() {
        let (key, value) = entry.split_once('=').unwrap_or((entry, ""));
        set(key, value.into());
    }
    for entry in extra {
        match entry.split_once('=') {
            Some((key, value)) if !key.is_empty() => set(key, value.into()),
            Some(_) => {
                return Err(Error::Other(format!(
                    "-e {entry:?}: the variable needs a name"
                )));
            }
            None => {
                if let Some(value) = std::env::var_os(entry) {
                    set(entry, value);
                }
            }
        }
    }
    for (key, value) in [("PATH", CONTAINER_PATH), ("HOME", "/root")] {
        if !env.iter().any(|(k, _)| k == key) {
            env.push((key.into(), value.into()));
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::RootFs;

    fn config(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> ImageConfig {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        ImageConfig {
            architecture: "amd64".into(),
            os: "linux".into(),
            config: Some(ContainerConfig {
                entrypoint: entrypoint.map(strings),
                cmd: cmd.map(strings),
                env: Some(vec!["FOO=bar".into(), "PATH=/opt/bin:/bin".into()]),
                working_dir: Some("/srv".into()),
                user: Some("nobody".into()),
                ..ContainerConfig::default()
            }),
            rootfs: RootFs {
                r#type: "layers".into(),
                diff_ids: vec![],
            },
            created: None,
            history: Vec::new(),
        }
    }

    fn args(process: &Process) -> Vec<&str> {
        process.args.iter().map(|a| a.to_str().unwrap()).collect()
    }

    #[test]
    fn entrypoint_and_cmd_combine_like_docker() {
        let image = config(Some(&["/bin/echo", "hi"]), Some(&["there"]));
        let none = Overrides::default();
        assert_eq!(
            args(&process(&image, &none).unwrap()),
            ["/bin/echo", "hi", "there"]
        );
        let new_cmd = Overrides {
            command: vec!["you".into()],
            ..Overrides::default()
        };
        assert_eq!(
            args(&process(&image, &new_cmd).unwrap()),
            ["/bin/echo", "hi", "you"]
        );
        let new_entrypoint = Overrides {
            entrypoint: Some("/bin/true".into()),
            ..Overrides::default()
        };
        assert_eq!(
            args(&process(&image, &new_entrypoint).unwrap()),
            ["/bin/true"]
        );
    }

    #[test]
    fn env_workdir_and_user_come_from_the_image_unless_overridden() {
        let image = config(None, Some(&["sh"]));
        let p = process(&image, &Overrides::default()).unwrap();
        assert!(p.env.contains(&("FOO".into(), "bar".into())));
        assert!(p.env.contains(&("PATH".into(), "/opt/bin:/bin".into())));
        assert!(p.env.contains(&("HOME".into(), "/root".into())));
        assert_eq!(
            (p.cwd.to_str().unwrap(), p.user.as_deref()),
            ("/srv", Some("nobody"))
        );

        let o = Overrides {
            env: vec!["FOO=baz".into(), "NEW=1".into()],
            workdir: Some("/tmp".into()),
            user: Some("0".into()),
            ..Overrides::default()
        };
        let p = process(&image, &o).unwrap();
        assert!(p.env.contains(&("FOO".into(), "baz".into())));
        assert!(!p.env.contains(&("FOO".into(), "bar".into())));
        assert!(p.env.contains(&("NEW".into(), "1".into())));
        assert_eq!(
            (p.cwd.to_str().unwrap(), p.user.as_deref()),
            ("/tmp", Some("0"))
        );
    }

    #[test]
    fn an_image_without_a_command_needs_one() {
        let err = process(&config(None, None), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("no command"));
    }
}
