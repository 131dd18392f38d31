//! Next hops learned from received frames, for sending rewritten frames straight to the
//! device (`AF_PACKET`) instead of through the kernel's IP output path.
//!
//! A frame from address A arrived on interface I from MAC M to our MAC O, so a frame to A
//! goes out on I from O to M: the path back is the path in (true for hosts on the same
//! link and for a single router in front of them). Because a source address can be
//! forged, a hop is used only once the kernel's routing table agrees that A is reached
//! through I ([`Hops::confirm`], fed by a route lookup); until then, and whenever the
//! interface changes or the entry is old, the caller sends through the kernel, which
//! routes and resolves the address itself. The MAC is refreshed by every frame, so a
//! neighbour that changed its MAC is followed as soon as it sends.
//!
//! Pure logic: the clock is passed in and the route lookups are the caller's.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

/// Entries not refreshed for this long are forgotten (the kernel's path is used again).
pub const STALE_AFTER: Duration = Duration::from_secs(120);
/// Most addresses remembered; when full, stale entries go first, then everything.
pub const MAX_ENTRIES: usize = 65_536;

/// Where frames to one address go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    /// Interface index.
    pub ifindex: i32,
    /// The neighbour's MAC (destination of our frames).
    pub mac: [u8; 6],
    /// Our MAC on that interface (source of our frames).
    pub own_mac: [u8; 6],
}

/// What the routing table said about an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Asked, no answer yet.
    Pending,
    /// The route's interface is the hop's.
    Agrees,
    /// The route goes elsewhere (or there is none): never use this hop.
    Disagrees,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    hop: Hop,
    check: Check,
    seen: Duration,
}

/// The learned hops.
#[derive(Debug, Default)]
pub struct Hops {
    entries: HashMap<Ipv4Addr, Entry>,
}

impl Hops {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a frame from `addr` seen through `hop` at `now`. Returns true when the
    /// routing table must be asked which interface reaches `addr` (a new address, or
    /// one that now arrives on another interface); the answer goes to [`Hops::confirm`].
    pub fn observe(&mut self, addr: Ipv4Addr, hop: Hop, now: Duration) -> bool {
        if let Some(e) = self.entries.get_mut(&addr) {
            e.seen = now;
            if e.hop.ifindex == hop.ifindex {
                e.hop = hop;
                return false;
            }
            *e = Entry {
                hop,
                check: Check::Pending,
                seen: now,
            };
            return true;
        }
        if self.entries.len() >= MAX_ENTRIES {
            self.expire(now);
            if self.entries.len() >= MAX_ENTRIES {
                self.entries.clear();
            }
        }
        self.entries.insert(
            addr,
            Entry {
                hop,
                check: Check::Pending,
                seen: now,
            },
        );
        true
    }

    /// The routing table's answer for `addr`: the interface index of its route (None if
    /// it has none). The hop is used only if the interfaces agree.
    pub fn confirm(&mut self, addr: Ipv4Addr, route_ifindex: Option<i32>) {
        if let Some(e) = self.entries.get_mut(&addr) {
            e.check = if route_ifindex == Some(e.hop.ifindex) {
                Check::Agrees
            } else {
                Check::Disagrees
            };
        }
    }

    /// The hop to send a frame to `addr` through at `now`, if it is known, confirmed
    /// and fresh.
    pub fn get(&self, addr: Ipv4Addr, now: Duration) -> Option<Hop> {
        let e = self.entries.get(&addr)?;
        (e.check == Check::Agrees && now.saturating_sub(e.seen) < STALE_AFTER).then_some(e.hop)
    }

    /// Forgets entries not refreshed for [`STALE_AFTER`].
    pub fn expire(&mut self, now: Duration) {
        self.entries
            .retain(|_, e| now.saturating_sub(e.seen) < STALE_AFTER);
    }

    /// Addresses remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn hop(ifindex: i32, last: u8) -> Hop {
        Hop {
            ifindex,
            mac: [2, 0, 0, 0, 0, last],
            own_mac: [2, 0, 0, 0, 1, 1],
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_hop_is_used_only_after_the_route_agrees() {
        let mut hops = Hops::new();
        assert!(
            hops.observe(A, hop(3, 7), secs(1)),
            "a new address is checked"
        );
        assert_eq!(hops.get(A, secs(1)), None, "not before the answer");
        hops.confirm(A, Some(3));
        assert_eq!(hops.get(A, secs(1)), Some(hop(3, 7)));
        assert!(!hops.observe(A, hop(3, 7), secs(2)), "known: no new check");
    }

    #[test]
    fn a_forged_source_on_another_interface_is_never_used() {
        let mut hops = Hops::new();
        hops.observe(A, hop(5, 9), secs(1));
        hops.confirm(A, Some(3)); // the route to A is through interface 3
        assert_eq!(hops.get(A, secs(1)), None);
        hops.confirm(A, None); // no route at all
        assert_eq!(hops.get(A, secs(1)), None);
    }

    #[test]
    fn moving_to_another_interface_is_checked_again() {
        let mut hops = Hops::new();
        hops.observe(A, hop(3, 7), secs(1));
        hops.confirm(A, Some(3));
        assert!(
            hops.observe(A, hop(4, 7), secs(2)),
            "new interface: ask again"
        );
        assert_eq!(hops.get(A, secs(2)), None, "unconfirmed until answered");
        hops.confirm(A, Some(4));
        assert_eq!(hops.get(A, secs(2)), Some(hop(4, 7)));
    }

    #[test]
    fn a_new_mac_on_the_same_interface_is_followed_at_once() {
        let mut hops = Hops::new();
        hops.observe(A, hop(3, 7), secs(1));
        hops.confirm(A, Some(3));
        assert!(!hops.observe(A, hop(3, 8), secs(2)));
        assert_eq!(hops.get(A, secs(2)).map(|h| h.mac[5]), Some(8));
    }

    #[test]
    fn stale_entries_are_not_used_and_are_forgotten() {
        let mut hops = Hops::new();
        hops.observe(A, hop(3, 7), secs(1));
        hops.confirm(A, Some(3));
        let later = secs(1) + STALE_AFTER;
        assert_eq!(hops.get(A, later), None);
        hops.expire(later);
        assert!(hops.is_empty());
        assert_eq!(hops.len(), 0);
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut hops = Hops::new();
        for i in 0..(MAX_ENTRIES as u32 + 10) {
            hops.observe(Ipv4Addr::from(i), hop(3, 1), secs(1));
        }
        assert!(hops.len() <= MAX_ENTRIES);
        assert!(hops.len() >= 10, "the newest are kept after a clear");
    }
}
