//! Plugging a container into a network, and unplugging it: everything
//! between "its namespaces exist" and "its command may start".

use std::net::Ipv4Addr;
use std::path::Path;

use nix::unistd::Pid;
use stage01_chroot::Error;

use crate::firewall::{self, PortRule};
use crate::ipam;
use crate::netlink::{Netlink, in_netns_of};
use crate::network::{Network, Networks};

/// What a container needs to join its network.
pub struct Plug<'a> {
    pub networks: &'a Networks,
    pub network: Option<&'a Network>,
    pub id: &'a str,
    pub name: Option<&'a str>,
    pub publish: &'a [(firewall::Protocol, u16, u16)],
    pub containers: &'a Path,
    /// The binary, for its warnings.
    pub program: &'a str,
}

/// A container on a network. [`Attachment::detach`], or dropping it, undoes
/// everything `attach` did.
pub struct Attachment<'a> {
    plug: &'a Plug<'a>,
    network: &'a Network,
    address: Ipv4Addr,
    /// Set once `detach` has run, so that drop does not do it again.
    detached: bool,
}

/// The names of container `id`'s veth pair: the end on the host (on the
/// bridge) and its peer, which becomes `eth0` inside. Known before they
/// exist, so an engine can write them down first.
pub fn veth_names(id: &str) -> (String, String) {
    let short = &id[..id.len().min(8)];
    (format!("bth{short}"), format!("bthc{short}"))
}

// ANCHOR: attach
/// Plug the (waiting) container into `network`: an address, a veth pair
/// from the bridge to its namespace, its published ports and its name.
pub fn attach<'a>(
    plug: &'a Plug<'a>,
    network: &'a Network,
    init: Pid,
) -> Result<Attachment<'a>, Error> {
    {
        let _lock = plug.networks.lock()?;
        plug.networks.ensure_bridge(network)?;
    }
    let lease = ipam::owner_self(plug.id, plug.name)?;
    let address = plug.networks.ipam(network).allocate(&lease)?;
    let attachment = Attachment {
        plug,
        network,
        address,
        detached: false,
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

    // ANCHOR: exercise_veth
    // The cable: one end on the bridge, the other moved into the container.
    let (host_end, peer) = veth_names(plug.id);
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
    netlink.set_netns_pid(peer_index, init.as_raw())?;

    // Inside: call it eth0, give it the address, route everything via the gateway.
    let (prefix, gateway) = (network.subnet.prefix_len, network.gateway());
    in_netns_of(init.as_raw(), move || {
        let mut netlink = Netlink::open()?;
        let index = netlink
            .link_index(&peer)?
            .ok_or_else(|| Error::Other(format!("{peer} is not in the container")))?;
        netlink.rename(index, "eth0")?;
        netlink.add_address(index, address, prefix)?;
        netlink.set_up(index)?;
        netlink.add_default_route(gateway)
    })?;
    // ANCHOR_END: exercise_veth

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

impl Attachment<'_> {
    /// The container's address on the network.
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// Unplug: undo everything `attach` did; the first failure, if any.
    pub fn detach(mut self) -> Result<(), Error> {
        self.detached = true;
        self.undo()
    }

    fn undo(&self) -> Result<(), Error> {
        let plug = self.plug;
        let (host_end, _) = veth_names(plug.id);
        unplug(&Unplug {
            networks: plug.networks,
            network: Some(self.network),
            id: plug.id,
            veth: &host_end,
            ports: !plug.publish.is_empty(),
            containers: plug.containers,
        })
    }
}

impl Drop for Attachment<'_> {
    fn drop(&mut self) {
        if !self.detached
            && let Err(err) = self.undo()
        {
            let (program, network) = (self.plug.program, &self.network.name);
            eprintln!("{program}: warning: unplug from network {network}: {err}");
        }
    }
}

/// What a container has (or may have) on the host for its network, by name.
pub struct Unplug<'a> {
    pub networks: &'a Networks,
    /// `None` if the network itself was removed meanwhile (its leases went
    /// with it).
    pub network: Option<&'a Network>,
    pub id: &'a str,
    /// The host end of its veth pair.
    pub veth: &'a str,
    /// Whether it publishes ports.
    pub ports: bool,
    pub containers: &'a Path,
}

// ANCHOR: unplug
/// Undo `attach` for a container, whatever part of it was done: its veth
/// pair, its published ports, its lease, and its name in the `/etc/hosts`
/// of its peers. Each step is harmless when there is nothing to undo, so
/// this also cleans up after a process that was killed halfway through
/// `attach`, or while its container ran. All steps are tried; the first
/// failure is returned.
pub fn unplug(what: &Unplug) -> Result<(), Error> {
    let mut first_error = None;
    let mut keep = |result: Result<(), Error>| {
        if let Err(err) = result {
            first_error.get_or_insert(err);
        }
    };
    // The pair usually died with the container's network namespace; if
    // we were killed before its peer moved in, both ends are still here.
    keep(
        Netlink::open().and_then(|mut netlink| match netlink.link_index(what.veth)? {
            Some(index) => netlink.delete_link(index),
            None => Ok(()),
        }),
    );
    if what.ports {
        keep(what.networks.unpublish(what.id));
    }
    if let Some(network) = what.network {
        keep(what.networks.ipam(network).release_container(what.id));
        keep(what.networks.update_hosts(network, what.containers));
    }
    first_error.map_or(Ok(()), Err)
}
// ANCHOR_END: unplug
