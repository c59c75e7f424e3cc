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
    /// The process whose life its leases follow: the one that waits for
    /// the container (see `ipam::Lease`).
    pub lease_owner: i32,
    /// The binary, for its warnings.
    pub program: &'a str,
}

/// A container on a network. [`Attachment::detach`], or dropping it, undoes
/// everything `attach` did.
pub struct Attachment<'a> {
    plug: &'a Plug<'a>,
    network: &'a Network,
    slot: usize,
    address: Ipv4Addr,
    /// Set once `detach` has run, so that drop does not do it again.
    detached: bool,
}

/// The host end of container `id`'s veth pair for its network interface
/// `slot`. Known before it exists, so an engine can write it down first.
/// (The other end is born inside the container as [`interface_name`].)
pub fn veth_name(id: &str, slot: usize) -> String {
    let short = &id[..id.len().min(8)];
    // Slot 0 is the usual one, unnumbered: device names have 15 bytes.
    match slot {
        0 => format!("bth{short}"),
        n => format!("bth{short}{n}"),
    }
}

/// What the container calls its interface `slot`: `eth0` on its first
/// network, `eth1` on the next (an engine can plug a container into more
/// than one network).
pub fn interface_name(slot: usize) -> String {
    format!("eth{slot}")
}

/// How many networks a container may be on: veth names have room for two
/// digits of slot.
pub const MAX_SLOTS: usize = 100;

// ANCHOR: attach
/// Plug the (waiting) container into `network` as its interface `slot`
/// (0, `eth0`, for its first network): an address, a veth pair from the
/// bridge to its namespace, its published ports and its name.
pub fn attach<'a>(
    plug: &'a Plug<'a>,
    network: &'a Network,
    slot: usize,
    init: Pid,
) -> Result<Attachment<'a>, Error> {
    {
        let _lock = plug.networks.lock()?;
        plug.networks.ensure_bridge(network)?;
    }
    let lease = ipam::owner(plug.lease_owner, plug.id, plug.name)?;
    let address = plug.networks.ipam(network).allocate(&lease)?;
    let attachment = Attachment {
        plug,
        network,
        slot,
        address,
        detached: false,
    };
    // Names must be unique on a network, or /etc/hosts would be ambiguous.
    if let Some(name) = plug.name {
        check_name_free(plug, network, name)?;
    }

    // ANCHOR: exercise_veth
    // The cable: one end on the bridge, the other born inside the
    // container, already called eth0 there.
    let host_end = veth_name(plug.id, slot);
    let inside = interface_name(slot);
    let mut netlink = Netlink::open()?;
    let host_index = netlink.create_veth_into(&host_end, &inside, init.as_raw())?;
    let bridge = netlink
        .link_index(&network.bridge)?
        .ok_or_else(|| Error::Other(format!("bridge {} vanished", network.bridge)))?;
    netlink.set_master(host_index, bridge)?;
    netlink.set_up(host_index)?;

    // Inside: give it the address, bring it up, route everything via the
    // gateway (on its first network; the subnet of another is reached
    // through that network's interface, which the address implies).
    let (prefix, gateway) = (network.subnet.prefix_len, network.gateway());
    in_netns_of(init.as_raw(), move || {
        let mut netlink = Netlink::open()?;
        let index = netlink
            .link_index(&inside)?
            .ok_or_else(|| Error::Other(format!("{inside} is not in the container")))?;
        netlink.add_address(index, address, prefix)?;
        netlink.set_up(index)?;
        match slot {
            0 => netlink.add_default_route(gateway),
            _ => Ok(()),
        }
    })?;
    // ANCHOR_END: exercise_veth

    let rules: Vec<PortRule> = attachment
        .publish()
        .iter()
        .map(|(protocol, host_port, container_port)| PortRule {
            protocol: *protocol,
            host_port: *host_port,
            container: address,
            container_port: *container_port,
            bridge: network.bridge.clone(),
        })
        .collect();
    // (Both rewrite the firewall, which then masquerades a new bridge too.)
    match slot {
        0 => plug.networks.publish(plug.id, &rules)?,
        _ => plug.networks.sync_firewall()?,
    }
    (plug.networks).join_hosts(network, plug.containers, plug.id, plug.name, address)?;
    Ok(attachment)
}
// ANCHOR_END: attach

/// Refuse `name` if another live container has it on `network`. Its hosts
/// file says who has which name; a line can outlive a container killed
/// with `kill -9`, so the lease of its address says whether it still counts.
fn check_name_free(plug: &Plug, network: &Network, name: &str) -> Result<(), Error> {
    let short_id = &plug.id[..plug.id.len().min(12)];
    let ipam = plug.networks.ipam(network);
    for (address, holder) in plug.networks.hosts(network).holders(name)? {
        if holder != short_id
            && ipam
                .holder(address)?
                .is_some_and(|l| l.container != plug.id)
        {
            return Err(Error::Other(format!(
                "a container named {name} is already on network {}; choose another --name",
                network.name
            )));
        }
    }
    Ok(())
}

impl Attachment<'_> {
    /// The container's address on the network.
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// Which of the container's interfaces it is (see [`interface_name`]).
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// The ports it publishes: a container's ports are on its first
    /// network's interface.
    fn publish(&self) -> &[(firewall::Protocol, u16, u16)] {
        match self.slot {
            0 => self.plug.publish,
            _ => &[],
        }
    }

    /// Unplug: undo everything `attach` did; the first failure, if any.
    pub fn detach(mut self) -> Result<(), Error> {
        self.detached = true;
        self.undo()
    }

    /// Leave it plugged in after this process is done with it: an engine
    /// that wrote it down undoes it later with [`unplug`].
    pub fn keep(mut self) {
        self.detached = true;
    }

    fn undo(&self) -> Result<(), Error> {
        let plug = self.plug;
        let host_end = veth_name(plug.id, self.slot);
        unplug(&Unplug {
            networks: plug.networks,
            network: Some(self.network),
            id: plug.id,
            veth: &host_end,
            address: Some(self.address),
            ports: !self.publish().is_empty(),
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
    /// Its address there, if known (else every lease is read to find it).
    pub address: Option<Ipv4Addr>,
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
        let ipam = what.networks.ipam(network);
        keep(match what.address {
            Some(address) => ipam.release_owned(address, what.id),
            None => ipam.release_container(what.id),
        });
        // Its peers there forget it, and it forgets them.
        keep(what.networks.leave_hosts(network, what.containers, what.id));
    }
    first_error.map_or(Ok(()), Err)
}
// ANCHOR_END: unplug
