//! Pod IPs from a node's `spec.podCIDR`, as CNI's host-local plugin hands them out: the
//! network address and the first address (the bridge's gateway) are never given, nor the
//! broadcast address; freed addresses are reused only after the range wraps around, so a new
//! pod rarely gets the IP of one that just went away. IPv4 only for now.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IpamError {
    #[error("{0:?} is not an IPv4 CIDR")]
    BadCidr(String),
    #[error("pod CIDR {0} is full")]
    Full(String),
}

/// The addresses handed out from one CIDR.
#[derive(Debug)]
pub struct Range {
    cidr: String,
    network: u32,
    /// Usable offsets are `2..size-1`.
    size: u64,
    used: BTreeSet<u32>,
    /// Where the next search starts (host-local's "last reserved IP" + 1).
    cursor: u32,
}

impl Range {
    pub fn parse(cidr: &str) -> Result<Range, IpamError> {
        let bad = || IpamError::BadCidr(cidr.to_string());
        let (address, prefix) = cidr.split_once('/').ok_or_else(bad)?;
        let address: Ipv4Addr = address.parse().map_err(|_| bad())?;
        let prefix: u32 = prefix.parse().map_err(|_| bad())?;
        if !(1..=30).contains(&prefix) {
            return Err(bad());
        }
        let size = 1u64 << (32 - prefix);
        let mask = if prefix == 32 { u32::MAX } else { !(u32::MAX >> prefix) };
        Ok(Range { cidr: cidr.to_string(), network: u32::from(address) & mask, size, used: BTreeSet::new(), cursor: 2 })
    }

    pub fn cidr(&self) -> &str {
        &self.cidr
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let value = u32::from(ip);
        value >= self.network && u64::from(value - self.network) < self.size
    }

    /// The next free address.
    pub fn allocate(&mut self) -> Result<Ipv4Addr, IpamError> {
        let usable = (self.size - 3) as u32;
        for step in 0..usable {
            let offset = 2 + (self.cursor - 2 + step) % usable;
            if self.used.insert(offset) {
                self.cursor = 2 + (offset - 2 + 1) % usable;
                return Ok(Ipv4Addr::from(self.network + offset));
            }
        }
        Err(IpamError::Full(self.cidr.clone()))
    }

    /// Marks an address as taken (re-adoption of a running pod).
    pub fn reserve(&mut self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && self.used.insert(u32::from(ip) - self.network)
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        if self.contains(ip) {
            self.used.remove(&(u32::from(ip) - self.network));
        }
    }

    pub fn in_use(&self) -> usize {
        self.used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_skip_network_gateway_and_broadcast_and_wrap() {
        let mut range = Range::parse("10.244.1.0/29").expect("valid");
        let got: Vec<String> = (0..5).map(|_| range.allocate().expect("free").to_string()).collect();
        assert_eq!(got, ["10.244.1.2", "10.244.1.3", "10.244.1.4", "10.244.1.5", "10.244.1.6"]);
        assert_eq!(range.allocate(), Err(IpamError::Full("10.244.1.0/29".into())));
        range.release("10.244.1.3".parse().expect("ip"));
        assert_eq!(range.allocate().expect("free").to_string(), "10.244.1.3");
    }

    #[test]
    fn freed_addresses_are_reused_only_after_the_cursor_wraps() {
        let mut range = Range::parse("10.0.0.0/24").expect("valid");
        let first = range.allocate().expect("free");
        range.release(first);
        assert_eq!(range.allocate().expect("free").to_string(), "10.0.0.3");
        assert!(range.contains(first) && !range.contains("10.0.1.0".parse().expect("ip")));
    }

    #[test]
    fn bad_cidrs_are_refused() {
        for cidr in ["10.0.0.0", "10.0.0.0/33", "fd00::/64", "x/24", "10.0.0.0/31"] {
            assert!(Range::parse(cidr).is_err(), "{cidr}");
        }
    }
}
