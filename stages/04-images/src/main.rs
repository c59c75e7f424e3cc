//! `stage04-images [--root DIR] pull|images|load|rmi|run ...`
//!
//! The container recipe of stage 04: stage 03's container, whose root is now
//! an OCI image from a registry, verified, unpacked once per layer, and
//! stacked with overlayfs under a writable directory of its own.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stage01_chroot::{Error, checks, exit};
use stage02_namespaces::{Container, IdMaps, hostname, namespaces, supervise};
use stage03_cgroups::{Limits, cgroup, report};
use stage04_images::cli::{ImageCommand, RunArgs, UserNsArgs, image_command};
use stage04_images::image::{self, Image};
use stage04_images::overlay::{ContainerDirs, overlay_mount};
use stage04_images::root::{DEFAULT_ROOT, Root};

/// Pull OCI images from registries and run containers from them. Needs root.
#[derive(Parser)]
#[command(
    version,
    after_help = "Examples:\n  stage04-images pull 127.0.0.1:5000/busybox\n  \
                  stage04-images images\n  stage04-images run --memory 64m 127.0.0.1:5000/busybox cat /etc/passwd\n\n\
                  Environment:\n  BERTH_MAX_LAYER_SIZE  the most one layer may unpack to, e.g. 100g \
                  (default 32g); a bigger layer is refused as a possible decompression bomb"
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
    #[command(flatten)]
    Image(ImageCommand),
    /// Run a command in a new container from an image.
    Run {
        #[command(flatten)]
        userns: UserNsArgs,
        #[command(flatten)]
        args: RunArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    exit::finish("stage04-images", dispatch(cli))
}

fn dispatch(cli: Cli) -> Result<u8, Error> {
    checks::require_root("the image store and containers need root")?;
    let root = Root::open(&cli.root)?;
    match cli.command {
        Command::Image(command) => image_command(&root, command, "stage04-images"),
        Command::Run { userns, args } => run(&root, args, userns.user_map()),
    }
}

// ANCHOR: recipe
fn run(root: &Root, args: RunArgs, user_map: Option<IdMaps>) -> Result<u8, Error> {
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
        if let Some(maps) = user_map {
            dirs.open_to(root.dir(), maps.gid.to_host(0))?; // its root must reach `merged`
        }
        let container = Container {
            rootfs: dirs.merged.clone(),
            root_mount: Some(root_mount),
            binds: Vec::new(),
            process,
            hostname: args.hostname.unwrap_or_else(|| id.clone()),
            user_map,
            mounts: None,
            readonly_root: false,
            devices: Vec::new(),
            root_propagation: None,
            namespaces: Default::default(),
            gate: None,
            before_exec: None,
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
