//! IPv4 subnets such as `10.77.0.0/24`: the address range of one network.
//!
//! An IPv4 address is just a 32-bit number, so a subnet is a number whose
//! low `32 - prefix_len` bits are zero plus the length of the prefix. The
//! first address names the network, the last is for broadcast, the one
//! after the network is the gateway (the bridge on the host), and the rest
//! go to containers.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use stage01_chroot::Error;

/// The smallest prefix we accept: a /8 already holds 16 million addresses.
const MIN_PREFIX: u8 = 8;
/// The largest: a /30 has 4 addresses, just enough for network, gateway, one
/// container and broadcast. A /31 or /32 has no room for a container.
const MAX_PREFIX: u8 = 30;

/// An IPv4 network: its first address and the prefix length, `10.77.0.0/24`.
/// Serialized as that string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix_len: u8,
}

impl Subnet {
    /// The netmask as a number: `prefix_len` one bits, then zeros.
    fn mask(&self) -> u32 {
        // A shift by 32 would overflow: prefix 0 means "no bits fixed".
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len.min(32)))
            .unwrap_or(0)
    }

    fn base(&self) -> u32 {
        u32::from(self.network) & self.mask()
    }

    /// Whether `address` lies in this subnet (network and broadcast included).
    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & self.mask() == self.base()
    }

    /// The first host address (`.1` in a /24): the bridge's address, which
    /// containers use as their default route.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base().wrapping_add(1))
    }

    /// The last address, all host bits set: reserved for broadcast.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base() | !self.mask())
    }

    /// The addresses containers may get, lowest first: after the gateway and
    /// before broadcast (`.2` to `.254` in a /24).
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> + use<> {
        let first = self.base().wrapping_add(2);
        let broadcast = u32::from(self.broadcast());
        (first..broadcast).map(Ipv4Addr::from)
    }

    /// Whether the two subnets share any address. Prefixes nest, so two
    /// subnets overlap exactly when one contains the other's first address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }
}

impl FromStr for Subnet {
    type Err = Error;

    fn from_str(text: &str) -> Result<Subnet, Error> {
        let usage = || {
            Error::Other(format!(
                "{text:?} is not an IPv4 subnet: write the network address and \
                 the prefix length, such as 10.77.0.0/24"
            ))
        };
        let (address, prefix) = text.split_once('/').ok_or_else(usage)?;
        let network: Ipv4Addr = address.parse().map_err(|_| usage())?;
        // u8::from_str accepts "+24"; insist on plain digits.
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(usage());
        }
        let prefix_len: u8 = prefix.parse().map_err(|_| usage())?;
        if !(MIN_PREFIX..=MAX_PREFIX).contains(&prefix_len) {
            return Err(Error::Other(format!(
                "subnet {text}: prefix length /{prefix_len} is outside \
                 /{MIN_PREFIX}../{MAX_PREFIX} (a /31 or /32 leaves no address \
                 for a container); use a prefix such as /24"
            )));
        }
        let subnet = Subnet {
            network,
            prefix_len,
        };
        // 10.0.0.5/24 is a host address, not a network: say which one is meant
        // instead of silently rounding, so typos in the other octets show up.
        if subnet.base() != u32::from(network) {
            let suggested = Subnet {
                network: Ipv4Addr::from(subnet.base()),
                prefix_len,
            };
            return Err(Error::Other(format!(
                "subnet {text} has host bits set (the address is not the \
                 first of its /{prefix_len}); did you mean {suggested}?"
            )));
        }
        Ok(subnet)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl serde::Serialize for Subnet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Subnet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Subnet, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(text: &str) -> Subnet {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    #[test]
    fn parses_and_displays() {
        let s = subnet("10.77.0.0/24");
        assert_eq!(s.network, ip("10.77.0.0"));
        assert_eq!(s.prefix_len, 24);
        assert_eq!(s.to_string(), "10.77.0.0/24");
        assert_eq!(subnet("172.16.0.0/12").to_string(), "172.16.0.0/12");
        assert_eq!(subnet("10.0.0.0/8").prefix_len, 8);
        assert_eq!(subnet("10.0.0.4/30").prefix_len, 30);
    }

    #[test]
    fn rejects_host_bits_with_a_suggestion() {
        let err = "10.0.0.5/24".parse::<Subnet>().unwrap_err().to_string();
        assert!(err.contains("host bits"), "{err}");
        assert!(err.contains("did you mean 10.0.0.0/24?"), "{err}");
        let err = "10.1.2.3/16".parse::<Subnet>().unwrap_err().to_string();
        assert!(err.contains("did you mean 10.1.0.0/16?"), "{err}");
    }

    #[test]
    fn rejects_prefix_out_of_range() {
        for text in ["10.0.0.0/7", "10.0.0.0/31", "10.0.0.0/32", "0.0.0.0/0"] {
            let err = text.parse::<Subnet>().unwrap_err().to_string();
            assert!(err.contains("outside /8../30"), "{text}: {err}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for text in [
            "",
            "10.0.0.0",
            "10.0.0.0/",
            "/24",
            "10.0.0/24",
            "10.0.0.0/+24",
            "10.0.0.0/24 ",
            "10.0.0.256/24",
            "10.0.0.0/24/1",
            "10.0.0.0/300",
            "fd00::/64",
            "net",
        ] {
            let err = text.parse::<Subnet>().unwrap_err().to_string();
            assert!(
                err.contains("is not an IPv4 subnet") || err.contains("outside"),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn contains_gateway_broadcast() {
        let s = subnet("10.77.0.0/24");
        assert!(s.contains(ip("10.77.0.0")));
        assert!(s.contains(ip("10.77.0.200")));
        assert!(s.contains(ip("10.77.0.255")));
        assert!(!s.contains(ip("10.77.1.0")));
        assert!(!s.contains(ip("10.76.255.255")));
        assert_eq!(s.gateway(), ip("10.77.0.1"));
        assert_eq!(s.broadcast(), ip("10.77.0.255"));
        assert_eq!(subnet("10.0.0.0/8").broadcast(), ip("10.255.255.255"));
    }

    #[test]
    fn hosts_skip_network_gateway_and_broadcast() {
        let hosts: Vec<Ipv4Addr> = subnet("10.77.0.0/24").hosts().collect();
        assert_eq!(hosts.len(), 253);
        assert_eq!(hosts[0], ip("10.77.0.2"));
        assert_eq!(hosts[252], ip("10.77.0.254"));

        let tiny: Vec<Ipv4Addr> = subnet("10.0.0.4/30").hosts().collect();
        assert_eq!(tiny, vec![ip("10.0.0.6")]);
        assert_eq!(subnet("10.0.0.0/29").hosts().count(), 5);
    }

    #[test]
    fn overlaps_when_nested_or_equal() {
        let a = subnet("10.77.0.0/24");
        assert!(a.overlaps(&a));
        assert!(a.overlaps(&subnet("10.77.0.0/16")));
        assert!(subnet("10.0.0.0/8").overlaps(&a));
        assert!(a.overlaps(&subnet("10.77.0.128/25")));
        assert!(!a.overlaps(&subnet("10.77.1.0/24")));
        assert!(!a.overlaps(&subnet("192.168.0.0/16")));
    }

    #[test]
    fn serde_uses_the_string_form() {
        let s = subnet("10.77.0.0/24");
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"10.77.0.0/24\"");
        assert_eq!(serde_json::from_str::<Subnet>(&json).unwrap(), s);
        let err = serde_json::from_str::<Subnet>("\"10.77.0.9/24\"").unwrap_err();
        assert!(err.to_string().contains("did you mean"), "{err}");
    }
}
