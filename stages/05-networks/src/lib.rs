//! Stage 05 of Berth: container networks.
//!
//! Since stage 02 every container has had a network namespace of its own
//! with nothing in it but `lo`. Now we connect them: a Linux bridge per
//! network on the host (a virtual switch, holding the gateway address), and
//! per container a veth pair (a virtual cable) with one end on the bridge and
//! the other, renamed `eth0`, in the container. The host routes and
//! masquerades their traffic to the world, forwards published ports to them,
//! and every container finds the others by name in its `/etc/hosts`.
//!
//! Modules in the order things happen: [`subnet`] and [`network`] (what a
//! network is, on disk), [`ipam`] (an address for each container),
//! [`netlink`] (bridge, veth, address, route: the kernel's network API),
//! [`firewall`] (NAT and published ports with nftables), [`hosts`] (names),
//! and [`attach`], which plugs a starting container in with all of them.

pub mod attach;
pub mod cli;
pub mod firewall;
pub mod hosts;
pub mod ipam;
pub mod netlink;
pub mod network;
pub mod subnet;
