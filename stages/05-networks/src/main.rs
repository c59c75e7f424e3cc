//! `stage05-networks [--root DIR] network create|ls|rm ...` and
//! `stage05-networks run [--name NAME] [--network NAME|none] [-p HOST:CONTAINER] IMAGE [CMD...]`
//!
//! The container recipe of stage 05: stage 04's container from an image,
//! now plugged into a network: a veth pair to the network's bridge, an
//! address, a default route, NAT to the world, published ports, and names.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stage01_chroot::{Error, checks, exit};
use stage02_namespaces::{Container, Started, hostname, namespaces, supervise};
use stage03_cgroups::{Limits, cgroup, report};
use stage04_images::cli::RunArgs;
use stage04_images::image::{self, Image};
use stage04_images::overlay::{ContainerDirs, overlay_mount};
use stage04_images::root::{DEFAULT_ROOT, Root};
use stage05_networks::firewall::{self, PortRule};
use stage05_networks::hosts::NameFiles;
use stage05_networks::ipam;
use stage05_networks::netlink::{Netlink, in_netns_of};
use stage05_networks::network::{DEFAULT_NETWORK, Network, Networks};
use stage05_networks::subnet::Subnet;

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

#[derive(Subcommand)]
enum NetworkCommand {
    /// Define a network (a bridge, a subnet, NAT to the world).
    Create {
        #[arg(value_name = "NAME")]
        name: String,
        /// Its IPv4 subnet, e.g. 10.88.0.0/24 (default: a free /24 in 10.78-127.x).
        #[arg(long, value_name = "CIDR")]
        subnet: Option<Subnet>,
    },
    /// List networks.
    Ls,
    /// Remove a network no container uses, with its bridge and rules.
    Rm {
        #[arg(value_name = "NAME")]
        name: String,
    },
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
        Command::Network(NetworkCommand::Create { name, subnet }) => {
            let network = networks.create(&name, subnet)?;
            println!("{}\t{}\t{}", network.name, network.subnet, network.bridge);
            Ok(0)
        }
        Command::Network(NetworkCommand::Ls) => {
            println!(
                "{:<12} {:<18} {:<15} CONTAINERS",
                "NAME", "SUBNET", "BRIDGE"
            );
            for network in networks.list()? {
                let users = networks.ipam(&network).leases()?.len();
                println!(
                    "{:<12} {:<18} {:<15} {users}",
                    network.name,
                    network.subnet.to_string(),
                    network.bridge
                );
            }
            Ok(0)
        }
        Command::Network(NetworkCommand::Rm { name }) => {
            networks.remove(&name)?;
            println!("{name}");
            Ok(0)
        }
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
    let container = files.write(&hostname).and_then(|()| {
        Ok(Container {
            rootfs: dirs.merged.clone(),
            root_mount: Some(overlay_mount(&layers, &dirs)?),
            binds: files.binds(),
            process,
            hostname,
            user_map: None,
        })
    });
    let plug = Plug {
        networks,
        network: network.as_ref(),
        id: &id,
        name: args.name.as_deref(),
        publish: &publish,
        containers: &root.containers(),
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
        Some(network) => Some(attach(plug, network, &started)?),
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

/// What a container needs to join its network.
struct Plug<'a> {
    networks: &'a Networks,
    network: Option<&'a Network>,
    id: &'a str,
    name: Option<&'a str>,
    publish: &'a [(firewall::Protocol, u16, u16)],
    containers: &'a Path,
}

/// A container on a network. Dropping it undoes everything `attach` did.
struct Attachment<'a> {
    plug: &'a Plug<'a>,
    network: &'a Network,
    address: Ipv4Addr,
    host_end: String,
}

// ANCHOR: attach
/// Plug the (waiting) container into `network`: an address, a veth pair
/// from the bridge to its namespace, its published ports and its name.
fn attach<'a>(
    plug: &'a Plug<'a>,
    network: &'a Network,
    started: &Started,
) -> Result<Attachment<'a>, Error> {
    {
        let _lock = plug.networks.lock()?;
        plug.networks.ensure_bridge(network)?;
    }
    let lease = ipam::owner_self(plug.id, plug.name)?;
    let address = plug.networks.ipam(network).allocate(&lease)?;
    let host_end = format!("bth{}", &plug.id[..8]);
    let attachment = Attachment {
        plug,
        network,
        address,
        host_end: host_end.clone(),
    };
    // Names must be unique on a network, or /etc/hosts would be ambiguous.
    if let Some(name) = plug.name {
        let leases = plug.networks.ipam(network).leases()?;
        if leases
            .iter()
            .any(|(_, l)| l.name.as_deref() == Some(name) && l.container != plug.id)
        {
            return Err(Error::Other(format!(
                "a container named {name} is already on network {}; choose another --name",
                network.name
            )));
        }
    }

    // The cable: one end on the bridge, the other moved into the container.
    let peer = format!("bthc{}", &plug.id[..8]);
    let mut netlink = Netlink::open()?;
    let host_index = netlink.create_veth(&host_end, &peer)?;
    let bridge = netlink
        .link_index(&network.bridge)?
        .ok_or_else(|| Error::Other(format!("bridge {} vanished", network.bridge)))?;
    netlink.set_master(host_index, bridge)?;
    netlink.set_up(host_index)?;
    let peer_index = netlink
        .link_index(&peer)?
        .ok_or_else(|| Error::Other(format!("veth end {peer} vanished")))?;
    netlink.set_netns_pid(peer_index, started.pid().as_raw())?;

    // Inside: call it eth0, give it the address, route everything via the gateway.
    let (prefix, gateway) = (network.subnet.prefix_len, network.gateway());
    in_netns_of(started.pid().as_raw(), move || {
        let mut netlink = Netlink::open()?;
        let index = netlink
            .link_index(&peer)?
            .ok_or_else(|| Error::Other(format!("{peer} is not in the container")))?;
        netlink.rename(index, "eth0")?;
        netlink.add_address(index, address, prefix)?;
        netlink.set_up(index)?;
        netlink.add_default_route(gateway)
    })?;

    let rules: Vec<PortRule> = plug
        .publish
        .iter()
        .map(|(protocol, host_port, container_port)| PortRule {
            protocol: *protocol,
            host_port: *host_port,
            container: address,
            container_port: *container_port,
            bridge: network.bridge.clone(),
        })
        .collect();
    plug.networks.publish(plug.id, &rules)?;
    plug.networks.update_hosts(network, plug.containers)?;
    Ok(attachment)
}
// ANCHOR_END: attach

impl Drop for Attachment<'_> {
    fn drop(&mut self) {
        let networks = self.plug.networks;
        let warn = |what: &str, result: Result<(), Error>| {
            if let Err(err) = result {
                eprintln!("stage05-networks: warning: {what}: {err}");
            }
        };
        // The veth pair usually died with the container's namespace already.
        warn(
            "remove veth",
            Netlink::open().and_then(|mut netlink| match netlink.link_index(&self.host_end)? {
                Some(index) => netlink.delete_link(index),
                None => Ok(()),
            }),
        );
        warn("unpublish ports", networks.unpublish(self.plug.id));
        warn(
            "release address",
            networks.ipam(self.network).release(self.address),
        );
        warn(
            "update names",
            networks.update_hosts(self.network, self.plug.containers),
        );
    }
}
