//! `stage05-networks [--root DIR] network create|ls|rm ...` and
//! `stage05-networks run [--name NAME] [--network NAME|none] [-p HOST:CONTAINER] IMAGE [CMD...]`
//!
//! The container recipe of stage 05: stage 04's container from an image,
//! now plugged into a network: a veth pair to the network's bridge, an
//! address, a default route, NAT to the world, published ports, and names.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stage01_chroot::{Error, checks, exit};
use stage02_namespaces::{Container, hostname, namespaces, supervise};
use stage03_cgroups::{Limits, cgroup, report};
use stage04_images::cli::{RunArgs, UserNsArgs};
use stage04_images::image::{self, Image};
use stage04_images::overlay::{ContainerDirs, overlay_mount};
use stage04_images::root::{DEFAULT_ROOT, Root};
use stage05_networks::attach::{Plug, attach};
use stage05_networks::cli::{NetworkCommand, network_command};
use stage05_networks::firewall;
use stage05_networks::hosts::NameFiles;
use stage05_networks::network::{DEFAULT_NETWORK, Networks};

/// Run containers from images on networks: by name to each other, NATed to
/// the world, with published ports. Needs root. Images come from
/// `stage04-images pull` with the same --root.
#[derive(Parser)]
#[command(
    version,
    after_help = "Examples:\n  stage04-images pull 127.0.0.1:5000/busybox\n  \
                  stage05-networks network create web\n  \
                  stage05-networks run --name api --network web -p 8080:80 127.0.0.1:5000/busybox httpd -f -p 80"
)]
struct Cli {
    /// Directory for all state: images, layers, containers, networks.
    #[arg(long, global = true, env = "BERTH_ROOT", default_value = DEFAULT_ROOT, value_name = "DIR")]
    root: PathBuf,

    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Manage networks.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Run a command in a new container from an image, on a network.
    Run(NetRunArgs),
}

#[derive(clap::Args)]
struct NetRunArgs {
    /// Name the container: others on its network reach it by this name.
    #[arg(long, value_name = "NAME", value_parser = hostname::parse)]
    name: Option<String>,
    /// The network to join, or `none` for only `lo`.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_NETWORK)]
    network: String,
    /// Publish a port: HOSTPORT:CONTAINERPORT[/tcp|udp]; the host's
    /// addresses (127.0.0.1 too) forward HOSTPORT to the container.
    #[arg(short, long = "publish", value_name = "HOST:CONTAINER")]
    publish: Vec<String>,
    #[command(flatten)]
    userns: UserNsArgs,
    #[command(flatten)]
    run: RunArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    exit::finish("stage05-networks", dispatch(cli))
}

fn dispatch(cli: Cli) -> Result<u8, Error> {
    checks::require_root("networks and containers need root")?;
    let root = Root::open(&cli.root)?;
    let networks = Networks::open(root.dir())?;
    match cli.command {
        Command::Network(command) => network_command(&networks, command),
        Command::Run(args) => run(&root, &networks, args),
    }
}

// ANCHOR: recipe
fn run(root: &Root, networks: &Networks, args: NetRunArgs) -> Result<u8, Error> {
    // What to join, checked before anything is made.
    let network = match args.network.as_str() {
        "none" => None,
        name => Some(networks.get(name)?),
    };
    let publish = args
        .publish
        .iter()
        .map(|p| firewall::parse_publish(p))
        .collect::<Result<Vec<_>, _>>()?;
    if network.is_none() && !publish.is_empty() {
        return Err(Error::Other(
            "-p needs a network: drop --network none".into(),
        ));
    }

    // The image, as in stage 04.
    let store = root.store()?;
    let image = Image::open(&store, &args.run.image)?;
    let layers = image.unpacked_layers(&store, &root.layers())?;
    let process = image::process(&image.config, &args.run.overrides())?;
    let id = hostname::generate().map_err(|e| Error::io("read", "/dev/urandom", e))?;
    let dirs = ContainerDirs::create(&root.containers(), &id)?;

    // Its names: /etc/hosts, /etc/hostname, /etc/resolv.conf, bind-mounted.
    let hostname = args
        .run
        .hostname
        .clone()
        .or(args.name.clone())
        .unwrap_or_else(|| id.clone());
    let files = NameFiles::in_dir(&dirs.dir);
    let user_map = args.userns.user_map();
    let container = files.write(&hostname).and_then(|()| {
        // On a network, its /etc/hosts is the network's own file.
        if let Some(network) = &network {
            files.share(&networks.hosts(network).file()?)?;
        }
        if let Some(maps) = user_map {
            dirs.open_to(root.dir(), maps.gid.to_host(0))?; // its root must reach `merged`
        }
        Ok(Container {
            rootfs: dirs.merged.clone(),
            root_mount: Some(overlay_mount(&layers, &dirs)?),
            binds: files
                .binds()
                .into_iter()
                .map(|b| (b.source, b.target))
                .collect(),
            process,
            hostname,
            user_map,
            mounts: None,
            readonly_root: false,
            devices: Vec::new(),
            root_propagation: None,
            namespaces: Default::default(),
            gate: None,
            before_exec: None,
        })
    });
    let plug = Plug {
        program: "stage05-networks",
        networks,
        network: network.as_ref(),
        id: &id,
        name: args.name.as_deref(),
        publish: &publish,
        containers: &root.containers(),
        lease_owner: std::process::id() as i32, // we wait for it
    };
    let result = container.and_then(|container| run_plugged(&container, &plug, &args.run));
    dirs.remove()?;
    result
}

/// Stage 03's recipe, with the network plugged in before the command runs.
fn run_plugged(container: &Container, plug: &Plug, args: &RunArgs) -> Result<u8, Error> {
    supervise::block_signals().map_err(|e| Error::Other(format!("block signals: {e}")))?;
    let limits = Limits::from(&args.limits);
    let name = format!("berth-{}", plug.id);
    let mut cgroup = cgroup::create(&name, &limits)?;
    let started = namespaces::start(container)?;
    cgroup.add_process(started.pid())?;
    let attachment = match plug.network {
        Some(network) => Some(attach(plug, network, 0, started.pid())?),
        None => None,
    };
    let code = started.resume()?.wait()?;
    drop(attachment); // unplug: veth, lease, ports, names
    let usage = cgroup.usage();
    if let Err(err) = cgroup.remove() {
        eprintln!("stage05-networks: warning: {err}");
    }
    match usage {
        Ok(usage) => report("stage05-networks", &name, &limits, &usage, code, args.stats),
        Err(err) => eprintln!("stage05-networks: warning: {err}"),
    }
    Ok(code)
}
// ANCHOR_END: recipe
