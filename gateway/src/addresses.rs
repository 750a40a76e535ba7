//! Addresses for imported services (pure): each imported service gets its own address
//! from a configured IPv4 range (a 127.x range in development), kept for as long as the
//! service stays imported. A released address is handed out again only after every
//! other free address has been, so that a client's cached DNS answer for a service
//! that left does not reach a different service at once.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// A range such as `127.77.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Range {
    base: u32,
    prefix: u8,
}

/// Why a range was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Not `a.b.c.d/len`.
    #[error("{0:?} is not an IPv4 range like 127.77.0.0/16")]
    Syntax(String),
    /// The prefix leaves fewer than 4 addresses.
    #[error("/{0} is too small: use a prefix of /30 or shorter")]
    TooSmall(u8),
    /// Host bits are set.
    #[error("{0} has host bits set; did you mean {1}?")]
    HostBits(String, String),
}

impl std::str::FromStr for Ipv4Range {
    type Err = RangeError;

    fn from_str(text: &str) -> Result<Self, RangeError> {
        let syntax = || RangeError::Syntax(text.to_owned());
        let (addr, prefix) = text.split_once('/').ok_or_else(syntax)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| syntax())?;
        let prefix: u8 = prefix.parse().map_err(|_| syntax())?;
        if prefix > 32 {
            return Err(syntax());
        }
        if prefix > 30 {
            return Err(RangeError::TooSmall(prefix));
        }
        let mask = u32::MAX << (32 - prefix);
        let base = u32::from(addr);
        if base & !mask != 0 {
            let fixed = format!("{}/{prefix}", Ipv4Addr::from(base & mask));
            return Err(RangeError::HostBits(text.to_owned(), fixed));
        }
        Ok(Self { base, prefix })
    }
}

impl std::fmt::Display for Ipv4Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

impl Ipv4Range {
    /// `127.77.0.0/16`, the default range for imported services.
    pub fn loopback_default() -> Self {
        Self {
            base: u32::from(Ipv4Addr::new(127, 77, 0, 0)),
            prefix: 16,
        }
    }

    /// Usable addresses: all but the range's first (network) and last (broadcast).
    fn usable(&self) -> (u32, u32) {
        let size = 1u64 << (32 - self.prefix);
        let last = u32::try_from(u64::from(self.base) + size - 1).unwrap_or(u32::MAX);
        (self.base + 1, last - 1)
    }

    /// Whether the two ranges share an address.
    pub fn overlaps(&self, other: &Self) -> bool {
        self.contains(Ipv4Addr::from(other.base)) || other.contains(Ipv4Addr::from(self.base))
    }

    /// Whether `addr` is in the range.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0);
        u32::from(addr) & mask == self.base
    }
}

/// No address is left in the range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("every address of {0} is in use; configure a larger range")]
pub struct PoolExhausted(pub Ipv4Range);

/// Assigns addresses of a range to keys (imported services).
#[derive(Debug, Clone)]
pub struct AddressPool<K: Ord + Clone> {
    range: Ipv4Range,
    assigned: BTreeMap<K, u32>,
    in_use: BTreeSet<u32>,
    /// Where the next search starts: addresses are handed out in rotation.
    cursor: u32,
}

impl<K: Ord + Clone> AddressPool<K> {
    /// An empty pool over `range`.
    pub fn new(range: Ipv4Range) -> Self {
        let (first, _) = range.usable();
        Self {
            range,
            assigned: BTreeMap::new(),
            in_use: BTreeSet::new(),
            cursor: first,
        }
    }

    /// The address of `key`, assigning one if it has none.
    pub fn assign(&mut self, key: &K) -> Result<Ipv4Addr, PoolExhausted> {
        if let Some(addr) = self.assigned.get(key) {
            return Ok(Ipv4Addr::from(*addr));
        }
        let (first, last) = self.range.usable();
        let count = last - first + 1;
        for step in 0..count {
            let candidate = first + (self.cursor - first + step) % count;
            if !self.in_use.contains(&candidate) {
                self.in_use.insert(candidate);
                self.assigned.insert(key.clone(), candidate);
                self.cursor = if candidate == last {
                    first
                } else {
                    candidate + 1
                };
                return Ok(Ipv4Addr::from(candidate));
            }
        }
        Err(PoolExhausted(self.range))
    }

    /// Frees the address of `key`, if it has one.
    pub fn release(&mut self, key: &K) -> Option<Ipv4Addr> {
        let addr = self.assigned.remove(key)?;
        self.in_use.remove(&addr);
        Some(Ipv4Addr::from(addr))
    }

    /// The address of `key`, if assigned.
    pub fn get(&self, key: &K) -> Option<Ipv4Addr> {
        self.assigned.get(key).copied().map(Ipv4Addr::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str) -> Ipv4Range {
        text.parse().unwrap()
    }

    #[test]
    fn ranges_parse_and_bad_ones_say_what_to_write() {
        assert_eq!(range("127.77.0.0/16").to_string(), "127.77.0.0/16");
        assert!(range("10.0.0.0/8").contains("10.255.1.2".parse().unwrap()));
        assert!(!range("10.0.0.0/8").contains("11.0.0.1".parse().unwrap()));
        assert_eq!(
            "127.77.0.1/16".parse::<Ipv4Range>(),
            Err(RangeError::HostBits(
                "127.77.0.1/16".into(),
                "127.77.0.0/16".into()
            ))
        );
        assert_eq!(
            "127.0.0.0/31".parse::<Ipv4Range>(),
            Err(RangeError::TooSmall(31))
        );
        for bad in ["127.0.0.0", "127.0.0/8", "127.0.0.0/33", "x/8", "::1/64"] {
            assert!(
                matches!(bad.parse::<Ipv4Range>(), Err(RangeError::Syntax(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_key_keeps_its_address_and_freed_addresses_come_back_last() {
        let mut pool = AddressPool::new(range("127.77.0.0/29")); // .1 to .6 usable
        let a = pool.assign(&"a").unwrap();
        assert_eq!(a, Ipv4Addr::new(127, 77, 0, 1));
        assert_eq!(pool.assign(&"a").unwrap(), a, "same key, same address");
        let b = pool.assign(&"b").unwrap();
        assert_eq!(b, Ipv4Addr::new(127, 77, 0, 2));
        assert_eq!(pool.release(&"a"), Some(a));
        // .1 is free again but is not reused before .3 to .6.
        let next: Vec<_> = ["c", "d", "e", "f"]
            .iter()
            .map(|k| pool.assign(k).unwrap().octets()[3])
            .collect();
        assert_eq!(next, [3, 4, 5, 6]);
        assert_eq!(
            pool.assign(&"g").unwrap(),
            a,
            "wraps around to the freed address"
        );
        assert_eq!(
            pool.assign(&"h"),
            Err(PoolExhausted(range("127.77.0.0/29")))
        );
        assert_eq!(pool.get(&"b"), Some(b));
        assert_eq!(pool.release(&"nobody"), None);
    }
}
