//! Parses arbitrary text as an allow-list (`--allowed-peers`, a config
//! file's `allowed_peers`) and matches an arbitrary address against it.
//!
//! Parsing never panics; a list that parses prints as a list that parses
//! to the same networks; `contains` agrees with a bit-by-bit matcher
//! written here, on the address and on its IPv4-mapped IPv6 form.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use tinymq_core::auth::{AllowList, IpNetwork};

fn octet_bits(octets: &[u8]) -> Vec<bool> {
    octets.iter().flat_map(|byte| (0..8).rev().map(move |i| byte >> i & 1 == 1)).collect()
}

/// Whether the network's first `prefix` bits are the peer's, compared one
/// by one: IPv4 peers (mapped ones too) against IPv4 networks as IPv4,
/// against IPv6 networks in their mapped form.
fn naive_contains(network: &IpNetwork, ip: IpAddr) -> bool {
    let (net, peer) = match (network.address(), ip.to_canonical()) {
        (IpAddr::V4(_), IpAddr::V6(_)) => return false,
        (IpAddr::V4(net), IpAddr::V4(peer)) => (octet_bits(&net.octets()), octet_bits(&peer.octets())),
        (IpAddr::V6(net), IpAddr::V4(peer)) => (octet_bits(&net.octets()), octet_bits(&peer.to_ipv6_mapped().octets())),
        (IpAddr::V6(net), IpAddr::V6(peer)) => (octet_bits(&net.octets()), octet_bits(&peer.octets())),
    };
    net.iter().zip(&peer).take(usize::from(network.prefix())).all(|(a, b)| a == b)
}

fuzz_target!(|data: &[u8]| {
    // One byte: the address family; 4 or 16 address bytes; the list.
    let Some((&kind, rest)) = data.split_first() else { return };
    let width = if kind & 1 == 0 { 4 } else { 16 };
    if rest.len() < width {
        return;
    }
    let (address, text) = rest.split_at(width);
    let ip = match <[u8; 4]>::try_from(address) {
        Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
        Err(_) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(address).expect("16 bytes"))),
    };
    let text = String::from_utf8_lossy(text);
    let Ok(list) = text.parse::<AllowList>() else { return };
    let again: AllowList = list.to_string().parse().expect("a printed list parses");
    assert_eq!(again, list, "{text:?}");
    let mapped = match ip {
        IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
        v6 => v6,
    };
    for peer in [ip, mapped] {
        let expected = list.networks().iter().any(|n| naive_contains(n, peer));
        assert_eq!(list.contains(peer), expected, "{list} and {peer}");
    }
});
