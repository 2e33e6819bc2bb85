//! The peer allow-list: which addresses may connect at all.
//!
//! A list of IP networks (`10.0.0.0/8`, `2001:db8::/32`, or single
//! addresses, which are `/32` and `/128` networks). An IPv4-mapped IPv6
//! address (`::ffff:10.1.2.3`, as a dual-stack socket reports an IPv4
//! peer) is the IPv4 address it maps, on both sides: as a peer it matches
//! `10.0.0.0/8`, and an entry `::ffff:10.0.0.0/104` is `10.0.0.0/8`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Longest entry an error message repeats, in characters.
const SHOWN_ENTRY_LEN: usize = 64;

/// Why an allow-list entry is not one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AllowListError {
    /// Nothing between two commas, or an empty list.
    #[error("an empty entry; the list is comma-separated IP addresses and CIDR ranges")]
    Empty,
    /// Not an address, or not ADDRESS/PREFIX.
    #[error("{0:?} is not an IP address or a CIDR range")]
    NotAnAddress(String),
    /// A prefix longer than the address.
    #[error("{entry:?}: the prefix length is over {max}")]
    PrefixTooLong {
        /// The entry, as written.
        entry: String,
        /// 32 for IPv4, 128 for IPv6.
        max: u8,
    },
}

/// An IP network: an address with its host bits cleared, and a prefix
/// length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpNetwork {
    address: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// The network of `address`'s first `prefix` bits (host bits are
    /// cleared: `10.1.2.3/8` is `10.0.0.0/8`). `None` when `prefix` is over
    /// the address's length.
    pub fn new(address: IpAddr, prefix: u8) -> Option<Self> {
        let network = match address {
            IpAddr::V4(v4) if prefix <= 32 => {
                IpNetwork { address: IpAddr::V4((u32::from(v4) & mask32(prefix)).into()), prefix }
            }
            IpAddr::V6(v6) if prefix <= 128 => match v6.to_ipv4_mapped() {
                // The mapped IPv4 range, as IPv4.
                Some(v4) if prefix >= 96 => return IpNetwork::new(IpAddr::V4(v4), prefix - 96),
                _ => IpNetwork { address: IpAddr::V6((u128::from(v6) & mask128(prefix)).into()), prefix },
            },
            _ => return None,
        };
        Some(network)
    }

    /// The network's first address.
    pub fn address(&self) -> IpAddr {
        self.address
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => u32::from(ip) & mask32(self.prefix) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => u128::from(ip) & mask128(self.prefix) == u128::from(net),
            // `::/0` and the like hold the IPv4-mapped range too.
            (IpAddr::V6(net), IpAddr::V4(ip)) => {
                u128::from(ip.to_ipv6_mapped()) & mask128(self.prefix) == u128::from(net)
            }
            // Canonical: an IPv6 peer here maps no IPv4 address.
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// The entry, cut for an error message.
fn shown(entry: &str) -> String {
    entry.chars().take(SHOWN_ENTRY_LEN).collect()
}

impl FromStr for IpNetwork {
    type Err = AllowListError;

    /// `ADDRESS` or `ADDRESS/PREFIX`, IPv4 or IPv6, surrounding spaces
    /// ignored.
    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        let entry = entry.trim();
        if entry.is_empty() {
            return Err(AllowListError::Empty);
        }
        let not_an_address = || AllowListError::NotAnAddress(shown(entry));
        let (address, prefix) = match entry.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (entry, None),
        };
        let address: IpAddr = address.parse().map_err(|_| not_an_address())?;
        let max: u8 = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            // Digits only: no sign, no spaces inside.
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| not_an_address())?
            }
            Some(_) => return Err(not_an_address()),
        };
        IpNetwork::new(address, prefix).ok_or_else(|| AllowListError::PrefixTooLong { entry: shown(entry), max })
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// The addresses allowed to connect. See the module docs.
///
/// ```
/// use tinymq_core::auth::AllowList;
///
/// let list: AllowList = "10.0.0.0/8, ::1".parse().unwrap();
/// assert!(list.contains("10.20.30.40".parse().unwrap()));
/// assert!(list.contains("::ffff:10.0.0.1".parse().unwrap()));
/// assert!(!list.contains("127.0.0.1".parse().unwrap()));
/// assert!(list.contains("::1".parse().unwrap()));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowList {
    networks: Vec<IpNetwork>,
}

impl AllowList {
    /// A list of entries, each an address or a CIDR range; the error names
    /// the first bad one. An empty list is an error: it would refuse
    /// everyone (leave the list out to allow everyone).
    pub fn from_entries<S: AsRef<str>>(entries: impl IntoIterator<Item = S>) -> Result<Self, AllowListError> {
        let networks = entries.into_iter().map(|entry| entry.as_ref().parse()).collect::<Result<Vec<_>, _>>()?;
        if networks.is_empty() {
            return Err(AllowListError::Empty);
        }
        Ok(AllowList { networks })
    }

    /// Whether `ip` is in one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|network| network.contains(ip))
    }

    /// The networks, in the order given.
    pub fn networks(&self) -> &[IpNetwork] {
        &self.networks
    }
}

impl FromStr for AllowList {
    type Err = AllowListError;

    /// Comma-separated entries, as `--allowed-peers` takes them.
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        AllowList::from_entries(list.split(','))
    }
}

impl fmt::Display for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, network) in self.networks.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{network}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn list(text: &str) -> AllowList {
        text.parse().unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    #[test]
    fn single_addresses_and_ranges_of_both_families() {
        let allowed = list("10.0.0.0/8,192.168.1.7, 2001:db8::/32 ,::1");
        for yes in ["10.0.0.0", "10.255.255.255", "192.168.1.7", "2001:db8::1", "2001:db8:ffff::", "::1"] {
            assert!(allowed.contains(ip(yes)), "{yes}");
        }
        for no in ["11.0.0.0", "9.255.255.255", "192.168.1.8", "2001:db9::", "::2", "127.0.0.1", "::"] {
            assert!(!allowed.contains(ip(no)), "{no}");
        }
        assert_eq!(allowed.to_string(), "10.0.0.0/8,192.168.1.7/32,2001:db8::/32,::1/128");
    }

    #[test]
    fn ipv4_mapped_addresses_are_their_ipv4_form() {
        assert!(list("127.0.0.1/32").contains(ip("::ffff:127.0.0.1")));
        assert!(list("10.0.0.0/8").contains(ip("::ffff:10.9.8.7")));
        assert!(!list("10.0.0.0/8").contains(ip("::ffff:11.0.0.1")));
        let mapped = list("::ffff:10.0.0.0/104");
        assert_eq!(mapped.to_string(), "10.0.0.0/8", "an entry in the mapped range is IPv4");
        assert!(mapped.contains(ip("10.1.1.1")) && mapped.contains(ip("::ffff:10.1.1.1")));
        // Every IPv6 address, the mapped range included.
        assert!(list("::/0").contains(ip("192.0.2.1")));
        assert!(list("0.0.0.0/0").contains(ip("192.0.2.1")) && !list("0.0.0.0/0").contains(ip("2001:db8::1")));
    }

    #[test]
    fn host_bits_are_cleared_and_prefix_zero_is_everything() {
        assert_eq!(list("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(list("2001:db8::1/32").to_string(), "2001:db8::/32");
        assert!(list("0.0.0.0/0").contains(ip("255.255.255.255")));
        assert!(list("::/0").contains(ip("ffff::1")));
        assert!(list("1.2.3.4/32").contains(ip("1.2.3.4")) && !list("1.2.3.4/32").contains(ip("1.2.3.5")));
        assert!(list("::1/128").contains(ip("::1")) && !list("::1/128").contains(ip("::")));
    }

    #[test]
    fn bad_entries_are_named() {
        let error = |text: &str| text.parse::<AllowList>().unwrap_err();
        assert_eq!(error("10.0.0.0/8,10.0.0.300"), AllowListError::NotAnAddress("10.0.0.300".into()));
        assert_eq!(error("10.0.0.0/33"), AllowListError::PrefixTooLong { entry: "10.0.0.0/33".into(), max: 32 });
        assert_eq!(error("::/129"), AllowListError::PrefixTooLong { entry: "::/129".into(), max: 128 });
        for bad in ["10.0.0.0/", "10.0.0.0/+8", "10.0.0.0/8/8", "10.0.0.0/ 8", "10.0.0.0/1000", "host.example", "[::1]"]
        {
            assert!(matches!(error(bad), AllowListError::NotAnAddress(_)), "{bad}: {:?}", error(bad));
        }
        assert_eq!(error(""), AllowListError::Empty);
        assert_eq!(error("10.0.0.1,,10.0.0.2"), AllowListError::Empty);
        assert!(error("10.0.0.0/8,10.0.0.300").to_string().contains("\"10.0.0.300\""));
        let long = "x".repeat(10_000);
        assert!(error(&long).to_string().len() < 200, "a huge entry is cut in the message");
        assert_eq!(AllowList::from_entries(Vec::<String>::new()), Err(AllowListError::Empty));
    }

    /// The oracle: an address is in a network when its first `prefix`
    /// bits, compared one by one, are the network's.
    fn naive_contains(network: &IpNetwork, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> Vec<bool> {
            let bytes = match ip {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            };
            bytes.iter().flat_map(|byte| (0..8).rev().map(move |i| byte >> i & 1 == 1)).collect()
        };
        let as_v6 = |ip: IpAddr| match ip.to_canonical() {
            IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
            v6 => v6,
        };
        let (net, peer) = match (network.address(), ip.to_canonical()) {
            (IpAddr::V4(_), IpAddr::V6(_)) => return false,
            (IpAddr::V6(_), peer) => (bits(network.address()), bits(as_v6(peer))),
            (net, peer) => (bits(net), bits(peer)),
        };
        net.iter().zip(&peer).take(usize::from(network.prefix())).all(|(a, b)| a == b)
    }

    #[test]
    fn contains_agrees_with_a_bit_by_bit_oracle() {
        // A small deterministic generator: no randomness in the core.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let raw = u128::from(next()) << 64 | u128::from(next());
            let address = match next() % 3 {
                0 => IpAddr::V4((raw as u32).into()),
                1 => IpAddr::V6(Ipv6Addr::from(raw as u32 as u128 | 0xffff << 32)),
                _ => IpAddr::V6(raw.into()),
            };
            let max = if address.is_ipv4() { 32 } else { 128 };
            let network = IpNetwork::new(address, (next() % (max + 1)) as u8).unwrap();
            // Peers near the network and anywhere.
            let near = match network.address() {
                IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) ^ (1 << (next() % 32))).into()),
                IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) ^ (1 << (next() % 128))).into()),
            };
            for peer in [
                network.address(),
                near,
                address,
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                IpAddr::V4(((raw >> 7) as u32).into()),
            ] {
                assert_eq!(network.contains(peer), naive_contains(&network, peer), "{network} and {peer}");
            }
        }
    }
}
