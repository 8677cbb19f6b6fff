//! Rate limits and client addresses for the front door: a token bucket per key (a client
//! address, an account) in front of the sign-in and token endpoints, kept in memory by
//! each process (the lockout count, which must be exact, is in the database); and the
//! address a request comes from — the peer's, or behind proxies named in
//! `--trusted-proxies` the nearest untrusted one in `X-Forwarded-For`; and the gate before
//! password hashing, where requests wait as tasks rather than as blocking threads.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many keys a limiter remembers before it forgets the ones at rest.
const MAX_KEYS: usize = 100_000;
/// A key refused again within this time raises no new alert.
const ALERT_EVERY: Duration = Duration::from_secs(600);

/// A bucket: tokens left, when it was last filled, when it last raised an alert.
struct Bucket {
    tokens: f64,
    at: Instant,
    alerted: Option<Instant>,
}

/// Refused by a limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Seconds until the next attempt is let through.
    pub retry_after: u64,
    /// The first refusal of this key in a while: worth an alert.
    pub alert: bool,
}

/// At most `per_minute` requests a minute per key, `per_minute` of them at once (0: off).
pub struct Limiter {
    per_minute: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    pub fn new(per_minute: u32) -> Limiter {
        Limiter { per_minute, buckets: Mutex::default() }
    }

    /// Let one request of `key` through, or say how long to wait.
    pub fn take(&self, key: &str) -> Result<(), Limited> {
        self.take_at(key, Instant::now())
    }

    fn take_at(&self, key: &str, now: Instant) -> Result<(), Limited> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let rate = capacity / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_KEYS && !buckets.contains_key(key) {
            // forget the buckets that have filled up again: they hold nothing
            buckets.retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < capacity);
            if buckets.len() >= MAX_KEYS {
                buckets.clear();
            }
        }
        let b = buckets.entry(key.to_string()).or_insert(Bucket { tokens: capacity, at: now, alerted: None });
        b.tokens = (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate).min(capacity);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let alert = b.alerted.is_none_or(|t| now.saturating_duration_since(t) >= ALERT_EVERY);
        if alert {
            b.alerted = Some(now);
        }
        // whole seconds until one token is back (at least one)
        let wait = ((1.0 - b.tokens) / rate).ceil();
        Err(Limited { retry_after: if wait.is_finite() && wait >= 1.0 { wait as u64 } else { 1 }, alert })
    }
}

/// At most `places` at once, at most `queue` waiting (as async tasks) behind them; the
/// rest are turned away at once. A place is owned: it goes with the work into its blocking
/// thread and is given back when that work ends, even if the client has gone away.
pub struct Gate {
    places: std::sync::Arc<tokio::sync::Semaphore>,
    waiting: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    queue: usize,
}

/// A place in a [`Gate`].
pub type Place = tokio::sync::OwnedSemaphorePermit;

/// Counts one waiter while it lives (a waiter dropped with its request still leaves).
struct Waiting(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Gate {
    pub fn new(places: usize, queue: usize) -> Gate {
        Gate {
            places: std::sync::Arc::new(tokio::sync::Semaphore::new(places.max(1))),
            waiting: Default::default(),
            queue,
        }
    }

    /// A place, once one is free; `None` when the queue is full.
    pub async fn enter(&self) -> Option<Place> {
        use std::sync::atomic::Ordering;
        if let Ok(p) = self.places.clone().try_acquire_owned() {
            return Some(p);
        }
        let waiting = Waiting(self.waiting.clone());
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.queue {
            return None;
        }
        let place = self.places.clone().acquire_owned().await.ok();
        drop(waiting);
        place
    }
}

/// An address block, `10.0.0.0/8` or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `ADDR` or `ADDR/PREFIX`, IPv4 or IPv6.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = s.trim().split_once('/').map_or((s.trim(), None), |(a, p)| (a, Some(p)));
        let addr: IpAddr = a.parse().map_err(|_| format!("'{s}' is not an address or address block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("'{s}': bad prefix length"))?,
        };
        Ok(Cidr { addr, prefix })
    }

    /// A comma-separated list.
    pub fn parse_list(s: &str) -> Result<Vec<Cidr>, String> {
        s.split(',').filter(|p| !p.trim().is_empty()).map(Cidr::parse).collect()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> u128 {
            match ip {
                IpAddr::V4(v) => u128::from(u32::from(v)) << 96,
                IpAddr::V6(v) => u128::from(v),
            }
        };
        let ip = match ip {
            IpAddr::V6(v) => v.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let own = match self.addr {
            IpAddr::V6(v) if self.prefix >= 96 => {
                v.to_ipv4_mapped().map_or((self.addr, self.prefix), |a| (IpAddr::V4(a), self.prefix - 96))
            }
            a => (a, self.prefix),
        };
        let (addr, prefix) = own;
        if ip.is_ipv4() != addr.is_ipv4() {
            return false;
        }
        let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix)) };
        bits(ip) & mask == bits(addr) & mask
    }
}

/// What a per-address limit counts: an IPv4 address, or the /64 of an IPv6 one (one
/// subscriber's network: its host part is theirs to vary).
pub fn address_key(address: &str) -> String {
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V6(v)) if v.to_ipv4_mapped().is_none() => {
            let net = u128::from(v) & (u128::MAX << 64);
            format!("{}/64", std::net::Ipv6Addr::from(net))
        }
        Ok(IpAddr::V6(v)) => v.to_ipv4_mapped().map_or_else(|| address.to_string(), |a| a.to_string()),
        _ => address.to_string(),
    }
}

/// The client's address: the peer, unless the peer is a trusted proxy; then, walking
/// `X-Forwarded-For` from the right (the entry the nearest proxy added), the first address
/// that is not a trusted proxy. An address a client wrote itself is never believed.
pub fn client_address(peer: IpAddr, forwarded_for: &[&str], trusted: &[Cidr]) -> IpAddr {
    if !trusted.iter().any(|c| c.contains(peer)) {
        return peer;
    }
    let mut client = peer;
    for entry in forwarded_for.iter().rev().flat_map(|h| h.split(',').rev()) {
        match entry.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !trusted.iter().any(|c| c.contains(ip)) {
                    break;
                }
            }
            Err(_) => break, // garbage: trust nothing further left
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_lets_a_burst_through_then_one_at_the_rate() {
        let l = Limiter::new(6); // one every ten seconds, six at once
        let t = Instant::now();
        for _ in 0..6 {
            assert_eq!(l.take_at("a", t), Ok(()));
        }
        assert_eq!(l.take_at("a", t), Err(Limited { retry_after: 10, alert: true }));
        assert_eq!(l.take_at("a", t), Err(Limited { retry_after: 10, alert: false }), "one alert a while");
        assert_eq!(l.take_at("b", t), Ok(()), "keys are apart");
        assert_eq!(l.take_at("a", t + Duration::from_secs(10)), Ok(()));
        assert!(l.take_at("a", t + Duration::from_secs(11)).is_err());
        assert_eq!(Limiter::new(0).take_at("a", t), Ok(()), "0: off");
    }

    #[tokio::test]
    async fn the_gate_queues_a_few_and_turns_the_rest_away() {
        let gate = std::sync::Arc::new(Gate::new(1, 1));
        let first = gate.enter().await.unwrap();
        let g = gate.clone();
        let waiting = tokio::spawn(async move { g.enter().await.is_some() });
        tokio::task::yield_now().await;
        while gate.waiting.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        assert!(gate.enter().await.is_none(), "the queue is full");
        drop(first);
        assert!(waiting.await.unwrap(), "the one waiting gets the place");
        // a waiter whose request is dropped (the client went away) leaves the queue
        let held = gate.enter().await.unwrap();
        let g = gate.clone();
        let abandoned = tokio::spawn(async move { g.enter().await.is_some() });
        while gate.waiting.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        abandoned.abort();
        let _ = abandoned.await;
        assert_eq!(gate.waiting.load(std::sync::atomic::Ordering::SeqCst), 0);
        drop(held);
        assert!(gate.enter().await.is_some());
    }

    #[test]
    fn an_ipv6_network_counts_as_one_address() {
        assert_eq!(address_key("2001:db8:1:2:aaaa::1"), address_key("2001:db8:1:2:bbbb::9"));
        assert_eq!(address_key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_ne!(address_key("2001:db8:1:3::1"), address_key("2001:db8:1:2::1"));
        assert_eq!(address_key("203.0.113.7"), "203.0.113.7");
        assert_eq!(address_key("::ffff:203.0.113.7"), "203.0.113.7");
    }

    #[test]
    fn forwarded_addresses_only_from_trusted_proxies() {
        let trusted = Cidr::parse_list("10.0.0.0/8, ::1").unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // a client that is not a proxy cannot name another address
        assert_eq!(client_address(ip("203.0.113.7"), &["1.2.3.4"], &trusted), ip("203.0.113.7"));
        // behind a proxy: the nearest untrusted address; what the client wrote is left of it
        assert_eq!(client_address(ip("10.1.1.1"), &["1.2.3.4, 198.51.100.9"], &trusted), ip("198.51.100.9"));
        assert_eq!(
            client_address(ip("10.1.1.1"), &["1.2.3.4", "198.51.100.9, 10.2.2.2"], &trusted),
            ip("198.51.100.9")
        );
        assert_eq!(client_address(ip("::1"), &["198.51.100.9"], &trusted), ip("198.51.100.9"));
        assert_eq!(client_address(ip("10.1.1.1"), &[], &trusted), ip("10.1.1.1"));
        assert_eq!(client_address(ip("10.1.1.1"), &["junk, 198.51.100.9"], &trusted), ip("198.51.100.9"));
        assert_eq!(client_address(ip("10.1.1.1"), &["198.51.100.9, junk"], &trusted), ip("10.1.1.1"));
        assert!(Cidr::parse("10.0.0.0/33").is_err() && Cidr::parse("proxy").is_err());
        assert!(Cidr::parse("::ffff:0:0/96").is_ok());
        assert!(Cidr::parse("10.0.0.0/8").unwrap().contains(ip("::ffff:10.9.9.9")));
        assert!(Cidr::parse("::ffff:10.0.0.0/104").unwrap().contains(ip("10.9.9.9")));
        assert!(!Cidr::parse("::ffff:10.0.0.0/104").unwrap().contains(ip("11.0.0.1")));
    }
}
