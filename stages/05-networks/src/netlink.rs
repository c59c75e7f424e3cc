//! A small blocking rtnetlink client: bridges, veth pairs, addresses, routes.
//!
//! `ip link` and `ip addr` talk to the kernel over a netlink socket
//! (`NETLINK_ROUTE`): they send a request message and read back replies,
//! ending with an acknowledgement or an error number. We do the same with
//! `netlink-sys` for the socket and `netlink-packet-route` for the message
//! layout, one request at a time, no async runtime.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkBuffer,
    NetlinkMessage, NetlinkPayload, NlasIterator,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};
use stage01_chroot::Error;

/// Extended ack attribute holding the kernel's error text (NLMSGERR_ATTR_MSG).
const NLMSGERR_ATTR_MSG: u16 = 1;

/// A netlink socket talking to the kernel's routing subsystem.
#[derive(Debug)]
pub struct Netlink {
    socket: Socket,
    sequence: u32,
}

impl Netlink {
    /// A netlink socket in the calling thread's network namespace.
    ///
    /// The socket stays bound to that namespace for its whole life, even if
    /// the thread later moves to another one.
    pub fn open() -> Result<Netlink, Error> {
        let socket_error =
            |step: &str, e: std::io::Error| Error::Other(format!("{step} netlink socket: {e}"));
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| socket_error("open", e))?;
        socket.bind_auto().map_err(|e| socket_error("bind", e))?;
        // Address 0 is the kernel: after connect, plain send/recv talk to it.
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| socket_error("connect", e))?;
        // Ask for the kernel's error text ("extended ack") and for errors
        // without a copy of our request in them.
        socket
            .set_ext_ack(true)
            .and_then(|()| socket.set_cap_ack(true))
            .map_err(|e| socket_error("configure", e))?;
        Ok(Netlink {
            socket,
            sequence: 0,
        })
    }

    /// The index of the link called `name`, or `None` if there is none.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>, Error> {
        check_name(name)?;
        // Index 0 and a name: the kernel looks the link up by name.
        let mut message = LinkMessage::default();
        message.attributes.push(LinkAttribute::IfName(name.into()));
        let link = self.get_link(message, &format!("look up link {name}"))?;
        Ok(link.map(|link| link.header.index))
    }

    /// Create a bridge (a virtual switch) called `name`; returns its index.
    pub fn create_bridge(&mut self, name: &str) -> Result<u32, Error> {
        check_name(name)?;
        let mut message = LinkMessage::default();
        message.attributes.push(LinkAttribute::IfName(name.into()));
        message
            .attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        let what = format!("create bridge {name}");
        self.call(
            &what,
            NLM_F_CREATE | NLM_F_EXCL,
            RouteNetlinkMessage::NewLink(message),
        )?;
        self.created_index(name)
    }

    // ANCHOR: create_veth
    /// Create a veth pair, two links joined like the ends of a cable:
    /// `name` and `peer`. Returns the index of `name`.
    pub fn create_veth(&mut self, name: &str, peer: &str) -> Result<u32, Error> {
        self.new_veth(name, peer, None)
    }

    /// The pair, with `born_in` (a namespace) among the peer's attributes.
    fn new_veth(
        &mut self,
        name: &str,
        peer: &str,
        born_in: Option<LinkAttribute>,
    ) -> Result<u32, Error> {
        check_name(name)?;
        check_name(peer)?;
        let what = format!("create veth pair {name} <-> {peer}");
        // The peer is described by a whole link message nested inside ours.
        let mut peer_message = LinkMessage::default();
        peer_message
            .attributes
            .push(LinkAttribute::IfName(peer.into()));
        peer_message.attributes.extend(born_in);
        let mut message = LinkMessage::default();
        message.attributes.push(LinkAttribute::IfName(name.into()));
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_message))),
        ]));
        self.call(
            &what,
            NLM_F_CREATE | NLM_F_EXCL,
            RouteNetlinkMessage::NewLink(message),
        )?;
        self.created_index(name)
    }
    // ANCHOR_END: create_veth

    // ANCHOR: create_veth_into
    /// The same, with `peer` born in the network namespace of process
    /// `pid` (so its name may be one the host uses too, such as `eth0`):
    /// `IFLA_NET_NS_PID` in the peer's message. It is cheaper than moving
    /// it there afterwards: a link that changes namespace makes the kernel
    /// wait until every CPU has passed a quiet point, tens of milliseconds.
    pub fn create_veth_into(&mut self, name: &str, peer: &str, pid: i32) -> Result<u32, Error> {
        let pid = u32::try_from(pid).map_err(|_| {
            Error::Other(format!("create veth pair {name} <-> {peer}: bad pid {pid}"))
        })?;
        self.new_veth(name, peer, Some(LinkAttribute::NetNsPid(pid)))
    }
    // ANCHOR_END: create_veth_into

    /// Plug link `index` into the bridge `master`, as `ip link set X master B`.
    pub fn set_master(&mut self, index: u32, master: u32) -> Result<(), Error> {
        let what = format!(
            "attach {} to bridge {}",
            self.describe(index),
            self.describe(master)
        );
        let mut message = link_message(index);
        // IFLA_MASTER; netlink-packet-route calls it `Controller`.
        message.attributes.push(LinkAttribute::Controller(master));
        self.call(&what, 0, RouteNetlinkMessage::SetLink(message))
            .map(drop)
    }

    /// Bring link `index` up, as `ip link set X up`.
    pub fn set_up(&mut self, index: u32) -> Result<(), Error> {
        let what = format!("set {} up", self.describe(index));
        let mut message = link_message(index);
        // Only the flags in change_mask are changed; the others stay as is.
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        self.call(&what, 0, RouteNetlinkMessage::SetLink(message))
            .map(drop)
    }

    // ANCHOR: set_netns_pid
    /// Move link `index` into the network namespace of process `pid`.
    ///
    /// From then on the link is invisible here: its index belongs to the
    /// other namespace, so configure it from there (see [`in_netns_of`]).
    pub fn set_netns_pid(&mut self, index: u32, pid: i32) -> Result<(), Error> {
        let what = format!(
            "move {} into the network namespace of process {pid}",
            self.describe(index)
        );
        let pid = u32::try_from(pid).map_err(|_| Error::Other(format!("{what}: bad pid")))?;
        let mut message = link_message(index);
        message.attributes.push(LinkAttribute::NetNsPid(pid));
        self.call(&what, 0, RouteNetlinkMessage::SetLink(message))
            .map(drop)
    }
    // ANCHOR_END: set_netns_pid

    /// Rename link `index` to `new_name`. Do it while the link is down:
    /// kernels before 6.2 refuse to rename a running interface (EBUSY), and
    /// programs watching the link don't expect its name to change under them.
    pub fn rename(&mut self, index: u32, new_name: &str) -> Result<(), Error> {
        check_name(new_name)?;
        let what = format!("rename {} to {new_name}", self.describe(index));
        let mut message = link_message(index);
        message
            .attributes
            .push(LinkAttribute::IfName(new_name.into()));
        self.call(&what, 0, RouteNetlinkMessage::SetLink(message))
            .map(drop)
    }

    /// Give link `index` the address `address/prefix_len`, as `ip addr add`.
    /// The kernel then adds the route to the subnet by itself.
    pub fn add_address(
        &mut self,
        index: u32,
        address: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), Error> {
        let what = format!(
            "add address {address}/{prefix_len} to {}",
            self.describe(index)
        );
        if prefix_len > 32 {
            return Err(Error::Other(format!("{what}: prefix length is at most 32")));
        }
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.prefix_len = prefix_len;
        message.header.index = index;
        // IFA_LOCAL is our address; IFA_ADDRESS is the same on a broadcast
        // link (it would be the far end on a point-to-point one).
        let ip = IpAddr::V4(address);
        message.attributes.push(AddressAttribute::Local(ip));
        message.attributes.push(AddressAttribute::Address(ip));
        // /31 and /32 have no broadcast address; the others use the last one.
        if prefix_len < 31 {
            let broadcast = u32::from(address) | (u32::MAX >> prefix_len);
            message
                .attributes
                .push(AddressAttribute::Broadcast(broadcast.into()));
        }
        self.call(
            &what,
            NLM_F_CREATE | NLM_F_EXCL,
            RouteNetlinkMessage::NewAddress(message),
        )
        .map(drop)
    }

    /// Send everything without a more specific route to `gateway`, as
    /// `ip route add default via GATEWAY`. The gateway must be reachable on a
    /// link that is up and has an address in its subnet.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> Result<(), Error> {
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet;
        message.header.destination_prefix_length = 0; // 0.0.0.0/0: everything
        message.header.table = RouteHeader::RT_TABLE_MAIN;
        message.header.protocol = RouteProtocol::Static; // set up by us, not learned
        message.header.scope = RouteScope::Universe; // leads beyond this link
        message.header.kind = RouteType::Unicast;
        message
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        let what = format!("add default route via {gateway}");
        self.call(
            &what,
            NLM_F_CREATE | NLM_F_EXCL,
            RouteNetlinkMessage::NewRoute(message),
        )
        .map(drop)
    }

    /// Delete link `index`. Deleting one end of a veth pair deletes both;
    /// a link that is already gone is fine.
    pub fn delete_link(&mut self, index: u32) -> Result<(), Error> {
        let what = format!("delete {}", self.describe(index));
        match self.request(0, RouteNetlinkMessage::DelLink(link_message(index))) {
            Ok(_) => Ok(()),
            Err(Failure::Refused(refusal)) if refusal.errno == Errno::ENODEV => Ok(()),
            Err(failure) => Err(failure.into_error(&what)),
        }
    }

    /// The IPv4 addresses of link `index`, with their prefix lengths.
    pub fn ipv4_addresses(&mut self, index: u32) -> Result<Vec<(Ipv4Addr, u8)>, Error> {
        let what = format!("list the addresses of {}", self.describe(index));
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        // A dump returns the addresses of every link; we keep this one's.
        let replies = self.call(&what, NLM_F_DUMP, RouteNetlinkMessage::GetAddress(message))?;
        let mut addresses = Vec::new();
        for reply in replies {
            let RouteNetlinkMessage::NewAddress(address) = reply else {
                continue;
            };
            if address.header.index != index {
                continue;
            }
            let local = address.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            let any = address.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            if let Some(ip) = local.or(any) {
                addresses.push((ip, address.header.prefix_len));
            }
        }
        Ok(addresses)
    }

    /// Send one request and collect the kernel's replies. `flags` come on
    /// top of REQUEST|ACK: CREATE|EXCL for new objects, DUMP for lists.
    fn request(
        &mut self,
        flags: u16,
        message: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, Failure> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut packet = NetlinkMessage::from(message);
        packet.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        packet.header.sequence_number = self.sequence;
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.socket
            .send(&bytes, 0)
            .map_err(|e| Failure::Socket(format!("send: {e}")))?;

        let mut replies = Vec::new();
        loop {
            // One datagram can hold several messages (a dump sends many).
            let (datagram, _) = self
                .socket
                .recv_from_full()
                .map_err(|e| Failure::Socket(format!("receive: {e}")))?;
            let mut rest = &datagram[..];
            while !rest.is_empty() {
                let decode_error = |e| Failure::Socket(format!("decode a reply: {e}"));
                let header = NetlinkBuffer::new_checked(rest).map_err(decode_error)?;
                let (length, sequence, reply_flags) = (
                    header.length() as usize,
                    header.sequence_number(),
                    header.flags(),
                );
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest)
                    .map_err(decode_error)?;
                // Messages are padded to 4 bytes.
                rest = rest.get(length.next_multiple_of(4)..).unwrap_or_default();
                if sequence != self.sequence {
                    continue; // left over from an earlier request
                }
                match reply.payload {
                    NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                    // An "error" with code 0 is the ACK: the request is done.
                    NetlinkPayload::Error(error) => match error.code {
                        None => return Ok(replies),
                        Some(code) => {
                            // NLM_F_ACK_TLVS: the kernel explained itself.
                            let detail = (reply_flags & NLM_F_ACK_TLVS != 0)
                                .then(|| kernel_message(&error.header))
                                .flatten();
                            let errno = Errno::from_raw(-code.get());
                            return Err(Failure::Refused(Refusal { errno, detail }));
                        }
                    },
                    // The end of a dump (dumps get no ACK).
                    NetlinkPayload::Done(done) if done.code < 0 => {
                        let errno = Errno::from_raw(-done.code);
                        return Err(Failure::Refused(Refusal {
                            errno,
                            detail: None,
                        }));
                    }
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::Overrun(_) => {
                        return Err(Failure::Socket("receive: overrun".into()));
                    }
                    _ => {} // NOOP
                }
            }
        }
    }

    /// [`request`](Self::request) for the usual case: any failure is an
    /// error naming `what` we tried to do.
    fn call(
        &mut self,
        what: &str,
        flags: u16,
        message: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, Error> {
        self.request(flags, message)
            .map_err(|failure| failure.into_error(what))
    }

    /// The link `message` asks for (by index or by name), if there is one.
    fn get_link(&mut self, message: LinkMessage, what: &str) -> Result<Option<LinkMessage>, Error> {
        let replies = match self.request(0, RouteNetlinkMessage::GetLink(message)) {
            Ok(replies) => replies,
            // ENODEV: no such link, which is an answer, not a failure.
            Err(Failure::Refused(refusal)) if refusal.errno == Errno::ENODEV => return Ok(None),
            Err(failure) => return Err(failure.into_error(what)),
        };
        Ok(replies.into_iter().find_map(|reply| match reply {
            RouteNetlinkMessage::NewLink(link) => Some(link),
            _ => None,
        }))
    }

    /// "bth0 (link 7)" for error messages: a name says more than an index.
    fn describe(&mut self, index: u32) -> String {
        let link = self.get_link(link_message(index), "look up link");
        let name = link.ok().flatten().and_then(|link| {
            link.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::IfName(name) => Some(name),
                _ => None,
            })
        });
        match name {
            Some(name) => format!("{name} (link {index})"),
            None => format!("link {index}"),
        }
    }

    /// The index of a link we have just created.
    fn created_index(&mut self, name: &str) -> Result<u32, Error> {
        self.link_index(name)?.ok_or_else(|| {
            Error::Other(format!(
                "created link {name} but cannot find it: did something delete it?"
            ))
        })
    }
}

/// A link message addressed to link `index`, ready for attributes.
fn link_message(index: u32) -> LinkMessage {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message
}

/// Why a request failed: the socket itself, or the kernel said no.
enum Failure {
    Socket(String),
    Refused(Refusal),
}

/// The kernel's error number and, if it gave one, its explanation.
struct Refusal {
    errno: Errno,
    detail: Option<String>,
}

impl Failure {
    /// "create bridge bth0: File exists (EEXIST)".
    fn into_error(self, what: &str) -> Error {
        match self {
            Failure::Socket(problem) => Error::Other(format!("{what}: netlink {problem}")),
            Failure::Refused(Refusal { errno, detail }) => {
                let mut text = format!("{what}: {} ({errno:?})", errno.desc());
                if let Some(detail) = detail {
                    text.push_str(&format!("; the kernel says: {detail}"));
                }
                Error::Other(text)
            }
        }
    }
}

/// The text the kernel attached to an error (extended ack), if any. The
/// error payload is our request's 16-byte header (capped, see `open`)
/// followed by attributes.
fn kernel_message(payload: &[u8]) -> Option<String> {
    let attributes = payload.get(16..)?;
    NlasIterator::new(attributes).find_map(|nla| {
        let nla = nla.ok()?;
        (nla.kind() == NLMSGERR_ATTR_MSG).then(|| {
            String::from_utf8_lossy(nla.value())
                .trim_end_matches('\0')
                .to_string()
        })
    })
}

/// Check a link name as the kernel does (dev_valid_name), to say exactly
/// what is wrong instead of a bare "Invalid argument".
fn check_name(name: &str) -> Result<(), Error> {
    // IFNAMSIZ is 16 bytes, including the terminating NUL.
    let problem = if name.is_empty() {
        "is empty"
    } else if name.len() > 15 {
        "is longer than 15 bytes"
    } else if name == "." || name == ".." || name.contains(['/', ':']) {
        "may not be . or .. nor contain / or :"
    } else if name.contains(char::is_whitespace) {
        "may not contain spaces"
    } else {
        return Ok(());
    };
    Err(Error::Other(format!("link name {name:?} {problem}")))
}

// ANCHOR: in_netns_of
/// Run `f` on a new thread that first joins the network namespace of process
/// `pid` (setns on /proc/PID/ns/net), so the caller's own namespace is
/// untouched; returns f's result.
///
/// This works because a network namespace belongs to a thread, not to the
/// whole process: the helper thread moves, does its work (open a
/// [`Netlink`] there), and ends.
pub fn in_netns_of<T: Send + 'static>(
    pid: i32,
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let path = format!("/proc/{pid}/ns/net");
    let namespace =
        File::open(&path).map_err(|e| Error::io("open the network namespace", &path, e))?;
    let thread = std::thread::Builder::new()
        .name(format!("berth-netns-{pid}"))
        .spawn(move || {
            setns(&namespace, CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::io("setns", &path, e.into()))?;
            f()
        })
        .map_err(|e| {
            Error::Other(format!(
                "start a thread for the network namespace of process {pid}: {e}"
            ))
        })?;
    // A panic in `f` stays a panic for the caller.
    thread
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}
// ANCHOR_END: in_netns_of

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    use nix::sched::unshare;

    use super::*;

    /// Run `f` on a thread in a fresh network namespace of its own, so the
    /// host's links are never touched; the namespace and everything in it
    /// vanish when the thread ends.
    fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the netlink tests create links and must run as root"
        );
        std::thread::spawn(move || {
            unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    fn own_netns() -> PathBuf {
        std::fs::read_link("/proc/thread-self/ns/net").expect("readlink /proc/thread-self/ns/net")
    }

    fn master_of(netlink: &mut Netlink, index: u32) -> Option<u32> {
        let link = netlink
            .get_link(link_message(index), "get link")
            .expect("get link")
            .expect("link exists");
        link.attributes.iter().find_map(|a| match a {
            LinkAttribute::Controller(master) => Some(*master),
            _ => None,
        })
    }

    /// Kills the child when the test ends, even when it fails.
    struct KillOnDrop(Child);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn netlink_bridge_address_and_errors() {
        in_new_netns(|| {
            let mut netlink = Netlink::open().expect("open");
            let bridge = netlink.create_bridge("bth-test").expect("create bridge");
            assert_eq!(netlink.link_index("bth-test").expect("index"), Some(bridge));
            assert_eq!(netlink.link_index("bth-missing").expect("index"), None);

            let err = netlink
                .create_bridge("bth-test")
                .expect_err("a second bridge of the same name");
            assert_eq!(
                err.to_string(),
                "create bridge bth-test: File exists (EEXIST)"
            );

            let err = netlink
                .create_bridge("bth-much-too-long-name")
                .expect_err("a name over 15 bytes");
            assert!(err.to_string().contains("bth-much-too-long-name"), "{err}");

            let gateway = Ipv4Addr::new(10, 99, 0, 1);
            netlink
                .add_address(bridge, gateway, 24)
                .expect("add address");
            netlink.set_up(bridge).expect("set up");
            assert_eq!(
                netlink.ipv4_addresses(bridge).expect("addresses"),
                vec![(gateway, 24)]
            );
            let err = netlink
                .add_address(bridge, gateway, 24)
                .expect_err("the same address twice");
            assert!(err.to_string().contains("10.99.0.1/24"), "{err}");
            assert!(err.to_string().contains("bth-test"), "{err}");

            netlink.delete_link(bridge).expect("delete");
            assert_eq!(netlink.link_index("bth-test").expect("index"), None);
            netlink
                .delete_link(bridge)
                .expect("deleting a deleted link is fine");
        });
    }

    #[test]
    fn netlink_veth_master_rename_delete() {
        in_new_netns(|| {
            let mut netlink = Netlink::open().expect("open");
            let bridge = netlink.create_bridge("bth-br").expect("create bridge");
            let host = netlink
                .create_veth("bth-host", "bth-peer")
                .expect("create veth");
            assert_eq!(netlink.link_index("bth-host").expect("index"), Some(host));
            let peer = netlink
                .link_index("bth-peer")
                .expect("index")
                .expect("the peer exists");

            assert_eq!(master_of(&mut netlink, host), None);
            netlink.set_master(host, bridge).expect("set master");
            assert_eq!(master_of(&mut netlink, host), Some(bridge));

            netlink.rename(peer, "bth-renamed").expect("rename");
            assert_eq!(netlink.link_index("bth-peer").expect("index"), None);
            assert_eq!(
                netlink.link_index("bth-renamed").expect("index"),
                Some(peer)
            );

            // Deleting one end of the cable deletes the other.
            netlink.delete_link(host).expect("delete veth");
            assert_eq!(netlink.link_index("bth-host").expect("index"), None);
            assert_eq!(netlink.link_index("bth-renamed").expect("index"), None);
            netlink.delete_link(bridge).expect("delete bridge");
        });
    }

    #[test]
    fn netlink_move_into_another_netns() {
        in_new_netns(|| {
            let mut netlink = Netlink::open().expect("open");
            let bridge = netlink.create_bridge("bth-br").expect("create bridge");
            let gateway = Ipv4Addr::new(10, 99, 0, 1);
            netlink
                .add_address(bridge, gateway, 24)
                .expect("add address");
            netlink.set_up(bridge).expect("bridge up");
            let host = netlink
                .create_veth("bth-host", "bth-peer")
                .expect("create veth");
            let peer = netlink
                .link_index("bth-peer")
                .expect("index")
                .expect("peer");
            netlink.set_master(host, bridge).expect("set master");
            netlink.set_up(host).expect("host end up");

            // A process with a network namespace of its own, like a container.
            let child = Command::new("unshare")
                .args(["-n", "sleep", "30"])
                .spawn()
                .expect("spawn unshare -n sleep 30");
            let child = KillOnDrop(child);
            let pid = i32::try_from(child.0.id()).expect("pid");
            // Until unshare(1) has run, the child still shares our namespace.
            let ours = own_netns();
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::fs::read_link(format!("/proc/{pid}/ns/net"))
                .ok()
                .as_ref()
                == Some(&ours)
            {
                assert!(Instant::now() < deadline, "the child never left our netns");
                std::thread::sleep(Duration::from_millis(10));
            }

            netlink.set_netns_pid(peer, pid).expect("move the peer");
            assert_eq!(netlink.link_index("bth-peer").expect("index"), None);

            let before = own_netns();
            let (addresses, default_via) = in_netns_of(pid, || {
                let mut netlink = Netlink::open()?;
                let eth0 = netlink
                    .link_index("bth-peer")?
                    .ok_or_else(|| Error::Other("bth-peer did not arrive".into()))?;
                netlink.rename(eth0, "eth0")?;
                netlink.add_address(eth0, Ipv4Addr::new(10, 99, 0, 2), 24)?;
                netlink.set_up(eth0)?;
                netlink.add_default_route(Ipv4Addr::new(10, 99, 0, 1))?;
                let addresses = netlink.ipv4_addresses(eth0)?;
                Ok((addresses, default_gateway(&mut netlink)))
            })
            .expect("configure eth0 in the child's namespace");
            assert_eq!(own_netns(), before, "in_netns_of moved the calling thread");
            assert_eq!(addresses, vec![(Ipv4Addr::new(10, 99, 0, 2), 24)]);
            assert_eq!(default_via, Some(gateway));

            let err = netlink
                .add_default_route(Ipv4Addr::new(10, 98, 0, 1))
                .expect_err("a gateway on no link");
            assert!(err.to_string().contains("10.98.0.1"), "{err}");

            // A pair whose peer is born in the child's namespace (beside
            // its eth0), named as one of the host's links could be.
            let born = netlink
                .create_veth_into("bth-born", "eth1", pid)
                .expect("create a veth with its peer inside");
            let eth1_inside =
                || in_netns_of(pid, || Netlink::open()?.link_index("eth1")).expect("look inside");
            assert!(eth1_inside().is_some(), "the peer was not born inside");
            netlink.delete_link(born).expect("delete the born pair");
            assert_eq!(eth1_inside(), None, "deleting one end deletes the other");

            drop(child);
            netlink.delete_link(bridge).expect("delete bridge");
        });
    }

    /// The gateway of the default route in the main table, read by a dump.
    fn default_gateway(netlink: &mut Netlink) -> Option<Ipv4Addr> {
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet;
        let replies = netlink
            .call(
                "list routes",
                NLM_F_DUMP,
                RouteNetlinkMessage::GetRoute(message),
            )
            .expect("route dump");
        replies.into_iter().find_map(|reply| match reply {
            RouteNetlinkMessage::NewRoute(route)
                if route.header.destination_prefix_length == 0
                    && route.header.table == RouteHeader::RT_TABLE_MAIN =>
            {
                route.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Gateway(RouteAddress::Inet(ip)) => Some(*ip),
                    _ => None,
                })
            }
            _ => None,
        })
    }

    #[test]
    fn netlink_in_netns_of_a_missing_process_names_it() {
        let err = in_netns_of(i32::MAX, || Ok(())).expect_err("no such process");
        assert!(err.to_string().contains("/proc/2147483647/ns/net"), "{err}");
    }
}
