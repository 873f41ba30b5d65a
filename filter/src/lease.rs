//! Which VM fetches: a lease in shared data, `alp.fetcher` = owner id (u64 LE) + expiry
//! (u64 LE, ms since the Unix epoch). Every VM's root context tries on each tick; the holder
//! renews it by CAS, anyone may take it by CAS once it has expired (about three ticks without
//! renewal), so a dead or stuck fetcher VM is replaced.
//!
//! Envoy cannot create a shared-data key conditionally, so when the key does not exist yet two
//! VMs can both write it; the writer re-reads to confirm, and a loser finds out at its next
//! renewal at the latest (the CAS fails). The worst case is two polls in flight for a moment,
//! which is harmless: both publish what control sent.

use crate::host::{Host, Level};

pub const LEASE_KEY: &str = "alp.fetcher";

#[derive(Debug, Clone)]
pub struct Lease {
    owner: u64,
    duration_ms: u64,
    /// Until when this VM holds the lease (0: not held).
    held_until: u64,
}

impl Lease {
    pub fn new(owner: u64, duration_ms: u64) -> Self {
        Lease {
            owner,
            duration_ms,
            held_until: 0,
        }
    }

    pub fn owner(&self) -> u64 {
        self.owner
    }

    /// Whether this VM holds the lease at `now` (as of its last renewal).
    pub fn holds(&self, now: u64) -> bool {
        self.held_until > now
    }

    /// Takes or renews the lease if it is ours or free; returns whether this VM holds it.
    pub fn renew(&mut self, host: &dyn Host, now: u64) -> bool {
        let was_holding = self.holds(now);
        let (value, cas) = host.shared_data(LEASE_KEY);
        let current = value.as_deref().and_then(decode);
        let available = match current {
            None => true,
            Some((owner, expiry)) => owner == self.owner || expiry <= now,
        };
        let held = available
            && host
                .set_shared_data(LEASE_KEY, &encode(self.owner, now + self.duration_ms), cas)
                .is_ok()
            && (cas.is_some() || self.confirm(host));
        if held {
            self.held_until = now + self.duration_ms;
            if !was_holding {
                host.log(
                    Level::Info,
                    &format!("VM {:016x} now fetches policy from control", self.owner),
                );
            }
        } else {
            self.held_until = 0;
            if was_holding {
                host.log(
                    Level::Info,
                    &format!("VM {:016x} no longer fetches policy", self.owner),
                );
            }
        }
        held
    }

    /// After an unconditional write: is the lease still ours?
    fn confirm(&self, host: &dyn Host) -> bool {
        let (value, _) = host.shared_data(LEASE_KEY);
        value
            .as_deref()
            .and_then(decode)
            .is_some_and(|(owner, _)| owner == self.owner)
    }
}

fn encode(owner: u64, expiry: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&owner.to_le_bytes());
    out[8..].copy_from_slice(&expiry.to_le_bytes());
    out
}

fn decode(bytes: &[u8]) -> Option<(u64, u64)> {
    let bytes: &[u8; 16] = bytes.try_into().ok()?;
    let (owner, expiry) = bytes.split_at(8);
    Some((
        u64::from_le_bytes(owner.try_into().ok()?),
        u64::from_le_bytes(expiry.try_into().ok()?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeHost;
    use crate::host::Clock;

    #[test]
    fn first_vm_takes_it_second_waits() {
        let a = FakeHost::new();
        let b = a.sibling();
        let (mut la, mut lb) = (Lease::new(1, 300), Lease::new(2, 300));
        assert!(la.renew(&a, a.now_ms()));
        assert!(!lb.renew(&b, b.now_ms()));
        for _ in 0..10 {
            a.advance(100);
            b.advance(100);
            assert!(la.renew(&a, a.now_ms()), "holder renews");
            assert!(
                !lb.renew(&b, b.now_ms()),
                "other VM stays out while renewed"
            );
        }
        assert!(la.holds(a.now_ms()));
        assert!(!lb.holds(b.now_ms()));
    }

    #[test]
    fn expiry_hands_over() {
        let a = FakeHost::new();
        let b = a.sibling();
        let (mut la, mut lb) = (Lease::new(1, 300), Lease::new(2, 300));
        assert!(la.renew(&a, a.now_ms()));
        // A stops ticking; B keeps trying.
        b.advance(200);
        assert!(!lb.renew(&b, b.now_ms()));
        b.advance(100);
        assert!(lb.renew(&b, b.now_ms()), "expired lease is taken");
        // A comes back: it lost the lease.
        a.advance(400);
        assert!(!la.holds(a.now_ms()));
        assert!(!la.renew(&a, a.now_ms()));
    }

    #[test]
    fn stale_cas_loses() {
        let a = FakeHost::new();
        let mut la = Lease::new(1, 300);
        assert!(la.renew(&a, a.now_ms()));
        // Someone else took it (e.g. after an expiry the holder did not notice).
        a.put_shared(LEASE_KEY, &encode(2, a.now_ms() + 300));
        a.advance(100);
        assert!(!la.renew(&a, a.now_ms()));
        assert!(!la.holds(a.now_ms()));
    }

    #[test]
    fn garbage_lease_is_free() {
        let a = FakeHost::new();
        a.put_shared(LEASE_KEY, b"junk");
        let mut la = Lease::new(1, 300);
        assert!(la.renew(&a, a.now_ms()));
        assert_eq!(
            decode(&a.shared_value(LEASE_KEY).unwrap()),
            Some((1, a.now_ms() + 300))
        );
    }
}
