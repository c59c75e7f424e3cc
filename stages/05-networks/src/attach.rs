//! Plugging a container into a network, and unplugging it: everything
//! between "its namespaces exist" and "its command may start".

use std::net::Ipv4Addr;
use std::path::Path;

use stage01_chroot::Error;
use stage02_namespaces::Started;

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

/// A container on a network. Dropping it undoes everything `attach` did.
pub struct Attachment<'a> {
    plug: &'a Plug<'a>,
    network: &'a Network,
    address: Ipv4Addr,
    host_end: String,
}

// ANCHOR: attach
/// Plug the (waiting) container into `network`: an address, a veth pair
/// from the bridge to its namespace, its published ports and its name.
pub fn attach<'a>(
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

impl Attachment<'_> {
    /// The container's address on the network.
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }
}

impl Drop for Attachment<'_> {
    fn drop(&mut self) {
        let networks = self.plug.networks;
        let warn = |what: &str, result: Result<(), Error>| {
            if let Err(err) = result {
                eprintln!("{}: warning: {what}: {err}", self.plug.program);
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
