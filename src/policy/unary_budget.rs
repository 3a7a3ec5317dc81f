//! Limits for gRPC unary RPCs. A unary call has no connection actor, so without this a
//! client could bypass the stream limits by opening unary calls instead. All unary calls
//! from one client address share one budget with the numbers of one stream
//! connection: the rate bucket (`--rate-limit`), and requests and bytes in flight —
//! the before-sign-in tier for calls without a token, the signed-in tier for calls
//! that carry one (the token is checked afterwards, by the identity policy, as always).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::config::Limits;
use crate::error::OpenCoreError;
use crate::policy::rate_limit::RateLimiter;
use crate::policy::tier::Tier;

/// Past this many addresses, idle entries are pruned on the next new address.
const PRUNE_ABOVE: usize = 4096;

#[derive(Debug)]
struct Entry {
    rate: RateLimiter,
    /// In flight: [without token, with token] as (requests, bytes).
    in_flight: [(usize, usize); 2],
    last_used: Instant,
}

#[derive(Debug)]
struct Shared {
    limits: Limits,
    entries: DashMap<IpAddr, Entry>,
}

#[derive(Debug, Clone)]
pub struct UnaryBudget {
    shared: Arc<Shared>,
}

/// One admitted unary call; dropping it releases its share.
#[derive(Debug)]
pub struct UnaryPermit {
    shared: Arc<Shared>,
    ip: IpAddr,
    slot: usize,
    bytes: usize,
}

impl UnaryBudget {
    pub fn new(limits: &Limits) -> Self {
        UnaryBudget {
            shared: Arc::new(Shared {
                limits: limits.clone(),
                entries: DashMap::new(),
            }),
        }
    }

    /// Admits one call of `bytes` from `ip`, or says which limit it hit.
    pub fn admit(
        &self,
        ip: IpAddr,
        with_token: bool,
        bytes: usize,
    ) -> Result<UnaryPermit, OpenCoreError> {
        let limits = &self.shared.limits;
        let tier = if with_token {
            Tier::signed_in(limits)
        } else {
            Tier::before_signin(limits)
        };
        if bytes > tier.max_message_size {
            return Err(tier.too_large(limits, bytes));
        }
        if !self.shared.entries.contains_key(&ip) && self.shared.entries.len() > PRUNE_ABOVE {
            self.prune();
        }
        let slot = usize::from(with_token);
        let mut entry = self.shared.entries.entry(ip).or_insert_with(|| Entry {
            rate: RateLimiter::new(limits.rate_limit),
            in_flight: [(0, 0); 2],
            last_used: Instant::now(),
        });
        entry.last_used = Instant::now();
        let (count, in_bytes) = entry.in_flight[slot];
        tier.admit_request(limits, count, in_bytes, bytes)?;
        if !entry.rate.try_acquire() {
            return Err(OpenCoreError::RateLimited(limits.rate_limit));
        }
        entry.in_flight[slot] = (count + 1, in_bytes + bytes);
        Ok(UnaryPermit {
            shared: self.shared.clone(),
            ip,
            slot,
            bytes,
        })
    }

    /// Drops addresses with nothing in flight whose rate bucket has refilled.
    fn prune(&self) {
        let idle = Duration::from_secs(2);
        self.shared.entries.retain(|_, entry| {
            entry.in_flight.iter().any(|(n, _)| *n > 0) || entry.last_used.elapsed() < idle
        });
    }
}

impl Drop for UnaryPermit {
    fn drop(&mut self) {
        if let Some(mut entry) = self.shared.entries.get_mut(&self.ip) {
            let (count, bytes) = entry.in_flight[self.slot];
            entry.in_flight[self.slot] =
                (count.saturating_sub(1), bytes.saturating_sub(self.bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_from_one_address_share_the_in_flight_limit() {
        let limits = Limits {
            unauth_max_in_flight: 2,
            ..Limits::default()
        };
        let budget = UnaryBudget::new(&limits);
        let ip: IpAddr = "10.1.1.1".parse().unwrap();
        let a = budget.admit(ip, false, 10).unwrap();
        let _b = budget.admit(ip, false, 10).unwrap();
        assert!(matches!(
            budget.admit(ip, false, 10),
            Err(OpenCoreError::TooManyInFlightBeforeSignin(2))
        ));
        // Another address has its own budget.
        budget
            .admit("10.1.1.2".parse().unwrap(), false, 10)
            .unwrap();
        drop(a);
        budget.admit(ip, false, 10).unwrap();
    }

    #[test]
    fn rate_is_per_address() {
        let limits = Limits {
            rate_limit: 3,
            ..Limits::default()
        };
        let budget = UnaryBudget::new(&limits);
        let ip: IpAddr = "10.1.1.1".parse().unwrap();
        let admitted = (0..10)
            .filter(|_| budget.admit(ip, true, 10).is_ok())
            .count();
        assert_eq!(admitted, 3);
    }

    #[test]
    fn anonymous_calls_get_the_small_size_limit() {
        let budget = UnaryBudget::new(&Limits::default());
        let ip: IpAddr = "10.1.1.1".parse().unwrap();
        assert!(matches!(
            budget.admit(ip, false, 2 * 1024 * 1024),
            Err(OpenCoreError::MessageTooLargeBeforeSignin { .. })
        ));
        assert!(budget.admit(ip, true, 2 * 1024 * 1024).is_ok());
    }
}
