//! `stage04-images [--root DIR] pull|images|load|rmi|run ...`
//!
//! The container recipe of stage 04: stage 03's container, whose root is now
//! an OCI image from a registry, verified, unpacked once per layer, and
//! stacked with overlayfs under a writable directory of its own.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stage01_chroot::{Error, checks, exit};
use stage02_namespaces::{Container, hostname, namespaces, supervise};
use stage03_cgroups::{Limits, cgroup, report};
use stage04_images::auth::Credentials;
use stage04_images::cli::RunArgs;
use stage04_images::image::{self, Image};
use stage04_images::overlay::{ContainerDirs, overlay_mount};
use stage04_images::reference::Reference;
use stage04_images::registry::RegistryOptions;
use stage04_images::root::{DEFAULT_ROOT, Root};
use stage04_images::{load, pull};

/// Pull OCI images from registries and run containers from them. Needs root.
#[derive(Parser)]
#[command(
    version,
    after_help = "Examples:\n  stage04-images pull 127.0.0.1:5000/busybox\n  \
                  stage04-images images\n  stage04-images run --memory 64m 127.0.0.1:5000/busybox cat /etc/passwd"
)]
struct Cli {
    /// Directory for all state: the image store, the layer cache, containers.
    #[arg(long, global = true, env = "BERTH_ROOT", default_value = DEFAULT_ROOT, value_name = "DIR")]
    root: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download an image from a registry into the store.
    Pull(PullArgs),
    /// List the images in the store.
    Images,
    /// Load an image from a docker-archive or oci-archive file, or an OCI layout directory.
    Load {
        /// The archive or directory (e.g. made by `skopeo copy ... docker-archive:FILE`).
        #[arg(value_name = "FILE")]
        path: PathBuf,
        /// Name to tag the image with, when the archive carries none.
        #[arg(long, value_name = "NAME")]
        tag: Option<String>,
    },
    /// Remove an image's tag, then every blob and layer nothing else uses.
    Rmi {
        #[arg(value_name = "IMAGE")]
        image: String,
    },
    /// Run a command in a new container from an image.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct PullArgs {
    /// Image reference: NAME[:TAG] or NAME@sha256:DIGEST (busybox means
    /// docker.io/library/busybox:latest).
    #[arg(value_name = "REF")]
    reference: String,
    /// Log in with USER:PASSWORD (otherwise the auth file is consulted).
    #[arg(long, value_name = "USER:PASSWORD", value_parser = parse_creds)]
    creds: Option<Credentials>,
    /// A Docker-style config.json with logins (default ~/.docker/config.json).
    #[arg(long, value_name = "FILE")]
    auth_file: Option<PathBuf>,
    /// Allow plain HTTP to this registry (HOST[:PORT]); localhost and
    /// 127.0.0.1 always may.
    #[arg(long, value_name = "HOST")]
    insecure_registry: Vec<String>,
}

fn parse_creds(text: &str) -> Result<Credentials, String> {
    Credentials::parse(text).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    exit::finish("stage04-images", dispatch(cli))
}

fn dispatch(cli: Cli) -> Result<u8, Error> {
    checks::require_root("the image store and containers need root")?;
    let root = Root::open(&cli.root)?;
    match cli.command {
        Command::Pull(args) => pull_image(&root, args),
        Command::Images => list_images(&root),
        Command::Load { path, tag } => {
            for name in load::load(&root.store()?, &path, tag.as_deref())? {
                println!("Loaded image: {name}");
            }
            Ok(0)
        }
        Command::Rmi { image } => remove_image(&root, &image),
        Command::Run(args) => run(&root, args),
    }
}

fn pull_image(root: &Root, args: PullArgs) -> Result<u8, Error> {
    let reference: Reference = args.reference.parse()?;
    let options = RegistryOptions {
        insecure_registries: args.insecure_registry,
        credentials: args.creds,
        auth_file: args.auth_file,
    };
    let descriptor = pull::pull(&root.store()?, &reference, &options)?;
    println!("{reference}");
    println!("Digest: {}", descriptor.digest);
    Ok(0)
}

fn list_images(root: &Root) -> Result<u8, Error> {
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

fn remove_image(root: &Root, name: &str) -> Result<u8, Error> {
    let store = root.store()?;
    let reference: Reference = name.parse()?;
    if !store.untag(&reference.to_string())? {
        return Err(Error::Other(format!(
            "no image {reference} in the store (see: stage04-images images)"
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

// ANCHOR: recipe
fn run(root: &Root, args: RunArgs) -> Result<u8, Error> {
    // The image: found in the store, its layers unpacked (once), its config
    // turned into the process to run.
    let store = root.store()?;
    let image = Image::open(&store, &args.image)?;
    let layers = image.unpacked_layers(&store, &root.layers())?;
    let process = image::process(&image.config, &args.overrides())?;

    // The container's own writable layer, and the overlay of them all, which
    // init mounts as its root inside its own mount namespace.
    let id = hostname::generate().map_err(|e| Error::io("read", "/dev/urandom", e))?;
    let dirs = ContainerDirs::create(&root.containers(), &id)?;
    let limits = Limits::from(&args.limits);
    let result = overlay_mount(&layers, &dirs).and_then(|root_mount| {
        let container = Container {
            rootfs: dirs.merged.clone(),
            root_mount: Some(root_mount),
            binds: Vec::new(),
            process,
            hostname: args.hostname.unwrap_or_else(|| id.clone()),
            user_map: None,
        };
        run_limited(&container, &limits, &format!("berth-{id}"), args.stats)
    });
    dirs.remove()?; // the container's writes go with it, on success or not
    result
}

/// Stage 03's recipe: the container in a cgroup with its limits.
fn run_limited(
    container: &Container,
    limits: &Limits,
    name: &str,
    stats: bool,
) -> Result<u8, Error> {
    supervise::block_signals().map_err(|e| Error::Other(format!("block signals: {e}")))?;
    let mut cgroup = cgroup::create(name, limits)?;
    let started = namespaces::start(container)?;
    cgroup.add_process(started.pid())?;
    let code = started.resume()?.wait()?;
    let usage = cgroup.usage();
    if let Err(err) = cgroup.remove() {
        eprintln!("stage04-images: warning: {err}");
    }
    match usage {
        Ok(usage) => report("stage04-images", name, limits, &usage, code, stats),
        Err(err) => eprintln!("stage04-images: warning: {err}"),
    }
    Ok(code)
}
// ANCHOR_END: recipe
