//! The command line of the image stage: the image commands, and the
//! options of `run` that every stage after it flattens into its own `run`.

use std::ffi::OsString;
use std::path::PathBuf;

use stage01_chroot::Error;
use stage02_namespaces::{IdMap, IdMaps, hostname};
use stage03_cgroups::limits::LimitArgs;

use crate::auth::Credentials;
use crate::image::{self, Image, Overrides};
use crate::reference::Reference;
use crate::registry::RegistryOptions;
use crate::root::Root;
use crate::spec::Platform;
use crate::{load, pull};

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub limits: LimitArgs,
    /// When the container ends, print what its cgroup measured on stderr.
    #[arg(long)]
    pub stats: bool,
    /// Hostname inside (default: the container's name or random ID).
    #[arg(long, value_name = "NAME", value_parser = hostname::parse)]
    pub hostname: Option<String>,
    /// Replace the image's Entrypoint (its Cmd is dropped too).
    #[arg(long, value_name = "PROGRAM")]
    pub entrypoint: Option<String>,
    /// Set an environment variable: KEY=VALUE, or KEY to pass ours on.
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside (default: the image's WorkingDir, or /).
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// Run as USER[:GROUP], names from the image's /etc/passwd (default: the image's User, or root).
    #[arg(short, long, value_name = "USER")]
    pub user: Option<String>,
    /// The image, as pulled.
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Command and arguments, replacing the image's Cmd.
    #[arg(
        value_name = "CMD",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<OsString>,
}

/// `--userns` of `run`, in stage 04, stage 05 and the engine. It stays out
/// of [`RunArgs`] so that each `run` takes it on knowingly: the engine also
/// has to let the container's root reach its directory.
#[derive(Debug, Clone, clap::Args)]
pub struct UserNsArgs {
    /// Also make a user namespace: root inside is the unprivileged host user
    /// 100000, and container IDs 0-65535 are host IDs 100000-165535. The
    /// image's layers are seen through idmapped mounts, so that their files,
    /// owned by host root, are root's inside (or, where the file system
    /// can't do that, the container gets a copy of the image with shifted
    /// owners).
    #[arg(long)]
    pub userns: bool,
}

impl UserNsArgs {
    /// The ID maps of the container's user namespace, if it gets one.
    pub fn user_map(&self) -> Option<IdMaps> {
        self.userns.then_some(IdMaps::same(IdMap::DEFAULT))
    }
}

impl RunArgs {
    /// What the command line changes about the image's defaults.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            entrypoint: self.entrypoint.clone(),
            command: self.command.clone(),
            env: self.env.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
        }
    }
}

/// The image commands of stage 04, which every later binary (the engine's
/// `berth` too) offers as they are.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ImageCommand {
    /// Download an image from a registry into the store.
    Pull(PullArgs),
    /// List the images in the store.
    Images,
    /// Load images from a docker-archive or oci-archive file (or stdin), or an OCI layout directory.
    Load {
        /// The archive or directory (e.g. made by `skopeo copy ... docker-archive:FILE`);
        /// without it, the archive is read from stdin.
        #[arg(value_name = "FILE", conflicts_with = "input")]
        path: Option<PathBuf>,
        /// The archive to read (as FILE; Docker's spelling).
        #[arg(short, long, value_name = "FILE")]
        input: Option<PathBuf>,
        /// Name to tag the image with, when the archive carries none.
        #[arg(long, value_name = "NAME")]
        tag: Option<String>,
    },
    /// Remove images' tags, then every blob and layer nothing else uses.
    Rmi {
        #[arg(value_name = "IMAGE", required = true)]
        images: Vec<String>,
    },
}

/// Carry out an image command; `program` names the binary in messages.
pub fn image_command(root: &Root, command: ImageCommand, program: &str) -> Result<u8, Error> {
    match command {
        ImageCommand::Pull(args) => pull_image(root, args),
        ImageCommand::Images => list_images(root),
        ImageCommand::Load { path, input, tag } => {
            let store = root.store()?;
            let names = match path.or(input) {
                Some(path) => load::load(&store, &path, tag.as_deref())?,
                None => load::load_stdin(&store, tag.as_deref())?,
            };
            for name in names {
                println!("Loaded image: {name}");
            }
            Ok(0)
        }
        ImageCommand::Rmi { images } => {
            // Each in turn; one that fails doesn't stop the others.
            let mut code = 0;
            for image in images {
                if let Err(err) = remove_image(root, &image, program) {
                    eprintln!("{program}: {err}");
                    code = err.exit_code();
                }
            }
            Ok(code)
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct PullArgs {
    /// Image reference: NAME[:TAG] or NAME@sha256:DIGEST (busybox means
    /// docker.io/library/busybox:latest).
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Log in with USER:PASSWORD (otherwise the auth file is consulted).
    #[arg(long, value_name = "USER:PASSWORD", value_parser = parse_creds)]
    pub creds: Option<Credentials>,
    /// A Docker-style config.json with logins (default ~/.docker/config.json).
    #[arg(long, value_name = "FILE")]
    pub auth_file: Option<PathBuf>,
    /// Allow plain HTTP to this registry (HOST[:PORT]); localhost and
    /// 127.0.0.1 always may.
    #[arg(long, value_name = "HOST")]
    pub insecure_registry: Vec<String>,
    /// From a multi-platform image, take this one: OS/ARCH[/VARIANT], e.g.
    /// linux/arm64 (default: this host's).
    #[arg(long, value_name = "OS/ARCH", value_parser = Platform::parse)]
    pub platform: Option<Platform>,
}

fn parse_creds(text: &str) -> Result<Credentials, String> {
    Credentials::parse(text).map_err(|e| e.to_string())
}

pub fn pull_image(root: &Root, args: PullArgs) -> Result<u8, Error> {
    let reference: Reference = args.reference.parse()?;
    let options = RegistryOptions {
        insecure_registries: args.insecure_registry,
        credentials: args.creds,
        auth_file: args.auth_file,
    };
    let descriptor =
        pull::pull_platform(&root.store()?, &reference, &options, args.platform.as_ref())?;
    println!("{reference}");
    println!("Digest: {}", descriptor.digest);
    Ok(0)
}

pub fn list_images(root: &Root) -> Result<u8, Error> {
    let store = root.store()?;
    println!("{:<50} {:<19} {:>10}", "IMAGE", "DIGEST", "SIZE");
    for (name, descriptor) in store.list()? {
        let size = Image::open(&store, &name).map_or(0, |image| {
            image
                .manifest
                .layers
                .iter()
                .map(|layer| layer.size)
                .sum::<u64>()
        });
        println!(
            "{:<50} sha256:{:<12} {:>10}",
            name,
            &descriptor.digest.hex()[..12],
            stage03_cgroups::limits::format_size(size)
        );
    }
    Ok(0)
}

pub fn remove_image(root: &Root, name: &str, program: &str) -> Result<u8, Error> {
    let store = root.store()?;
    let reference: Reference = name.parse()?;
    if !store.untag(&reference.to_string())? {
        return Err(Error::Other(format!(
            "no image {reference} in the store (see: {program} images)"
        )));
    }
    let removed = store.gc()?;
    let layers = image::remove_unused_layers(&store, &root.layers(), &root.containers())?;
    println!("Untagged: {reference}");
    println!(
        "Deleted {} blobs and {} unpacked layers",
        removed.len(),
        layers
    );
    Ok(0)
}
