//! Per-client-address rate limiting: a token bucket per address, so one client guessing
//! passwords or secret ids (logins), or tokens (requests refused before authentication,
//! `crate::refusals`), slows down to `per_second` after a burst, and other clients are
//! unaffected. Refused requests answer 429 before any work is done (no password hash, no
//! ledger write: a flood must not turn into a flood of events).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// A rate per client address. `per_second == 0` turns limiting off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

impl RateLimit {
    /// Logins (`login_rate_limit`, `login_rate_burst`).
    pub const LOGINS: RateLimit = RateLimit { per_second: 100, burst: 200 };
    /// Requests refused before authentication (`unauthenticated_rate_limit`,
    /// `unauthenticated_rate_burst`): a client whose token was just revoked makes a few,
    /// a client guessing tokens makes thousands.
    pub const UNAUTHENTICATED: RateLimit = RateLimit { per_second: 20, burst: 100 };
}

/// Buckets are forgotten once full again; past this many addresses, full ones are swept.
const SWEEP_AT: usize = 100_000;

pub struct AddressLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl AddressLimiter {
    pub fn new(limit: RateLimit) -> AddressLimiter {
        AddressLimiter { limit, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one login from `addr`'s bucket; false when it is empty.
    pub fn allow(&self, addr: &str) -> bool {
        self.allow_at(addr, Instant::now())
    }

    fn allow_at(&self, addr: &str, now: Instant) -> bool {
        let (per_second, burst) = (f64::from(self.limit.per_second), f64::from(self.limit.burst.max(1)));
        if per_second <= 0.0 {
            return true;
        }
        let Ok(mut buckets) = self.buckets.lock() else { return true };
        if buckets.len() >= SWEEP_AT {
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * per_second < burst);
        }
        let b = buckets.entry(addr.to_string()).or_insert(Bucket { tokens: burst, at: now });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * per_second).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_rate_per_address() {
        let l = AddressLimiter::new(RateLimit { per_second: 2, burst: 3 });
        let t0 = Instant::now();
        assert!((0..3).all(|_| l.allow_at("10.0.0.1", t0)));
        assert!(!l.allow_at("10.0.0.1", t0));
        assert!(l.allow_at("10.0.0.2", t0), "another address has its own bucket");
        assert!(l.allow_at("10.0.0.1", t0 + Duration::from_millis(500)), "one token back after 1/rate");
        assert!(!l.allow_at("10.0.0.1", t0 + Duration::from_millis(600)));
    }

    #[test]
    fn zero_rate_is_off() {
        let l = AddressLimiter::new(RateLimit { per_second: 0, burst: 0 });
        assert!((0..1000).all(|_| l.allow("a")));
    }
}
