//! Connection caps: the whole server holds at most `--max-connections` live
//! connections, and one client address at most `--max-connections-per-ip`. A transport
//! asks for a permit before it starts a connection actor; the actor holds the permit,
//! and dropping it (the connection ended, however) gives the slot back. The address is
//! the socket's peer address: headers such as X-Forwarded-For are never trusted.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use crate::config::Limits;
use crate::error::OpenCoreError;

#[derive(Debug)]
struct Counts {
    max_total: usize,
    max_per_ip: usize,
    exempt_loopback: bool,
    total: AtomicUsize,
    per_ip: DashMap<IpAddr, usize>,
    refused: AtomicU64,
}

/// The live-connection counts of the server (held by `Services`).
#[derive(Debug, Clone)]
pub struct Admission {
    counts: Arc<Counts>,
}

/// One admitted connection. Dropping it releases the slot.
#[derive(Debug)]
pub struct ConnectionPermit {
    counts: Arc<Counts>,
    ip: Option<IpAddr>,
}

impl Admission {
    pub fn new(limits: &Limits) -> Self {
        Admission {
            counts: Arc::new(Counts {
                max_total: limits.max_connections,
                max_per_ip: limits.max_connections_per_ip,
                exempt_loopback: limits.exempt_loopback,
                total: AtomicUsize::new(0),
                per_ip: DashMap::new(),
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// A permit for a connection from `ip` (`None`: the unix socket, which only the
    /// global cap covers, and which counts as loopback).
    pub fn admit(&self, ip: Option<IpAddr>) -> Result<ConnectionPermit, OpenCoreError> {
        let counts = &self.counts;
        let before = counts.total.fetch_add(1, Ordering::AcqRel);
        if before >= counts.max_total {
            counts.total.fetch_sub(1, Ordering::AcqRel);
            counts.refused.fetch_add(1, Ordering::Relaxed);
            return Err(OpenCoreError::TooManyConnections(counts.max_total));
        }
        let per_ip = ip
            .map(canonical)
            .filter(|ip| !(counts.exempt_loopback && ip.is_loopback()));
        if let Some(ip) = per_ip {
            let mut entry = counts.per_ip.entry(ip).or_insert(0);
            if *entry >= counts.max_per_ip {
                drop(entry);
                counts.total.fetch_sub(1, Ordering::AcqRel);
                counts.refused.fetch_add(1, Ordering::Relaxed);
                return Err(OpenCoreError::TooManyConnectionsFromIp {
                    ip: ip.to_string(),
                    limit: counts.max_per_ip,
                });
            }
            *entry += 1;
        }
        Ok(ConnectionPermit {
            counts: self.counts.clone(),
            ip: per_ip,
        })
    }

    pub fn live(&self) -> usize {
        self.counts.total.load(Ordering::Acquire)
    }

    /// Connections refused by either cap since start.
    pub fn refused(&self) -> u64 {
        self.counts.refused.load(Ordering::Relaxed)
    }

    pub fn live_from(&self, ip: IpAddr) -> usize {
        self.counts
            .per_ip
            .get(&canonical(ip))
            .map(|n| *n)
            .unwrap_or(0)
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let emptied = match self.counts.per_ip.get_mut(&ip) {
                Some(mut count) => {
                    *count = count.saturating_sub(1);
                    *count == 0
                }
                None => false,
            };
            if emptied {
                self.counts.per_ip.remove_if(&ip, |_, count| *count == 0);
            }
        }
        self.counts.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// IPv4-mapped IPv6 addresses count as their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(total: usize, per_ip: usize, exempt: bool) -> Admission {
        Admission::new(&Limits {
            max_connections: total,
            max_connections_per_ip: per_ip,
            exempt_loopback: exempt,
            ..Limits::default()
        })
    }

    #[test]
    fn per_ip_and_global_caps() {
        let admission = admission(3, 2, false);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = admission.admit(Some(a)).unwrap();
        let _p2 = admission.admit(Some(a)).unwrap();
        assert!(matches!(
            admission.admit(Some(a)),
            Err(OpenCoreError::TooManyConnectionsFromIp { limit: 2, .. })
        ));
        let _p3 = admission.admit(Some(b)).unwrap();
        assert_eq!(
            admission.admit(Some(b)).unwrap_err(),
            OpenCoreError::TooManyConnections(3)
        );
        drop(p1);
        assert_eq!(admission.live(), 2);
        assert_eq!(admission.live_from(a), 1);
        admission.admit(Some(a)).unwrap();
    }

    #[test]
    fn loopback_is_capped_unless_exempt() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let capped = admission(10, 1, false);
        let _p = capped.admit(Some(lo)).unwrap();
        assert!(capped.admit(Some(lo)).is_err());
        let exempt = admission(10, 1, true);
        let _p1 = exempt.admit(Some(lo)).unwrap();
        let _p2 = exempt.admit(Some(lo)).unwrap();
        assert_eq!(exempt.live(), 2);
    }

    #[test]
    fn mapped_ipv6_counts_as_ipv4() {
        let admission = admission(10, 1, false);
        let _p = admission.admit(Some("10.0.0.1".parse().unwrap())).unwrap();
        assert!(admission
            .admit(Some("::ffff:10.0.0.1".parse().unwrap()))
            .is_err());
    }
}
