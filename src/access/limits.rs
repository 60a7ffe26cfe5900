//! Rate limits per client address (ingress-nginx `limit-rps`, `limit-rpm`,
//! `limit-connections`, `limit-burst-multiplier`, `limit-whitelist`), per replica as in
//! ingress-nginx. The limits are configuration; their tables ([`Limiters`]) are attached
//! after compiling and kept across reloads for the same object and limits, so a reload (an
//! EndpointSlice change, say) does not hand every client a fresh burst.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::access::rate::{
    Concurrency, ConcurrencyGuard, RequestRate, DEFAULT_CONCURRENCY_COUNTERS, DEFAULT_RATE_SLOTS,
};
use crate::model::ObjectRef;

/// The limits of one object, as its annotations give them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LimitConfig {
    pub per_second: Option<u32>,
    pub per_minute: Option<u32>,
    /// Requests allowed at once above the rate: rate × this (ingress-nginx's default is 5).
    pub burst_multiplier: u32,
    /// Requests in flight at once.
    pub connections: Option<u32>,
}

#[derive(Debug)]
pub struct RateLimits {
    pub config: LimitConfig,
    /// Clients never limited (`limit-whitelist`).
    pub exempt: Vec<IpNet>,
    /// The tables, attached after compiling; a route whose tables are missing fails closed.
    pub limiters: OnceLock<Arc<Limiters>>,
}

impl RateLimits {
    pub fn new(config: LimitConfig, exempt: Vec<IpNet>) -> Self {
        RateLimits { config, exempt, limiters: OnceLock::new() }
    }

    pub fn exempts(&self, ip: std::net::IpAddr) -> bool {
        self.exempt.iter().any(|net| net.contains(&ip))
    }

    pub fn describe(&self) -> String {
        let c = &self.config;
        let mut parts = Vec::new();
        let burst = |rate: u32| rate.saturating_mul(c.burst_multiplier);
        if let Some(r) = c.per_second {
            parts.push(format!("{r} requests/s (bursts of {})", burst(r)));
        }
        if let Some(r) = c.per_minute {
            parts.push(format!("{r} requests/min (bursts of {})", burst(r)));
        }
        if let Some(n) = c.connections {
            parts.push(format!("{n} requests in flight"));
        }
        let exempt = if self.exempt.is_empty() {
            String::new()
        } else {
            format!("; {} exempt", self.exempt.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
        };
        format!("each client address may make at most {}; more are refused{exempt}", parts.join(" and "))
    }
}

/// A request over one of the limits.
#[derive(Debug, PartialEq, Eq)]
pub struct OverLimit;

/// The live tables of one object's limits.
pub struct Limiters {
    /// Keys the address hash, so nobody can choose addresses that land on a victim's words.
    seed: u64,
    per_second: Option<RequestRate>,
    per_minute: Option<RequestRate>,
    connections: Option<Arc<Concurrency>>,
}

impl std::fmt::Debug for Limiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Limiters")
    }
}

impl Limiters {
    pub fn new(config: &LimitConfig) -> Self {
        let epoch = Instant::now();
        let rate = |requests: u32, period: Duration| {
            RequestRate::new(
                requests,
                period,
                requests.saturating_mul(config.burst_multiplier),
                DEFAULT_RATE_SLOTS,
                epoch,
            )
        };
        Limiters {
            seed: rand::random(),
            per_second: config.per_second.map(|r| rate(r, Duration::from_secs(1))),
            per_minute: config.per_minute.map(|r| rate(r, Duration::from_secs(60))),
            connections: config.connections.map(|n| Arc::new(Concurrency::new(n, DEFAULT_CONCURRENCY_COUNTERS))),
        }
    }

    /// Admits one request of the client at `ip`; the guard (for a concurrency limit) must live
    /// until the response ends.
    pub fn admit(&self, ip: std::net::IpAddr, now: Instant) -> Result<Option<ConcurrencyGuard>, OverLimit> {
        let key = match ip {
            std::net::IpAddr::V4(v4) => xxhash_rust::xxh3::xxh3_64_with_seed(&v4.octets(), self.seed),
            std::net::IpAddr::V6(v6) => xxhash_rust::xxh3::xxh3_64_with_seed(&v6.octets(), self.seed),
        };
        let guard = match &self.connections {
            Some(c) => Some(c.try_enter(key).ok_or(OverLimit)?),
            None => None,
        };
        // Both zones apply, as in nginx; one that refuses ends the check (and the guard drops).
        for rate in [&self.per_second, &self.per_minute].into_iter().flatten() {
            if !rate.allow(key, now) {
                return Err(OverLimit);
            }
        }
        Ok(guard)
    }
}

/// Limiter tables by object and limits, so a reload keeps them. Only the reloader uses it.
#[derive(Default)]
pub struct LimiterRegistry {
    tables: Mutex<HashMap<LimiterKey, Weak<Limiters>>>,
}

/// The object and its limits.
type LimiterKey = (ObjectRef, LimitConfig);

impl LimiterRegistry {
    /// The tables for `source`'s limits: the ones a live route already has, or new ones.
    pub fn get(&self, source: &ObjectRef, config: &LimitConfig) -> Arc<Limiters> {
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        tables.retain(|_, weak| weak.strong_count() > 0);
        let key = (source.clone(), config.clone());
        if let Some(live) = tables.get(&key).and_then(Weak::upgrade) {
            return live;
        }
        let fresh = Arc::new(Limiters::new(config));
        tables.insert(key, Arc::downgrade(&fresh));
        fresh
    }
}
