//! Requests refused before authentication, as hostile traffic makes them: no token, or a
//! token that never existed. Each used to be an access event of its own (about 190 bytes):
//! one client flooding bogus tokens added gigabytes an hour. They are now counted per
//! client address and recorded once per [`INTERVAL`] as one `RefusalsCounted` event (the
//! paths asked for and the keyed hashes of the tokens presented, each list capped), and an
//! address over its quota (`unauthenticated_rate_limit`) is answered 429 (DESIGN.md,
//! "Saying no": hostile traffic must cost bounded ledger space).
//!
//! A request with a token that once existed (revoked, expired, used up) is not one of these:
//! the pipeline records it as an access event of its own, with that token's accessor.
//!
//! The price: a refusal is answered before anything about it is durable (there is nothing
//! to protect: it changed nothing), and a crash loses the counts of the interval under way.
//! Audit devices see the interval's event, not one entry per refused request.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use commands::Command;
use migrations::{RefusalSource, RefusalsCounted};

use crate::auth::ratelimit::{AddressLimiter, RateLimit};
use crate::core::{Core, now_nanos};
use crate::http::reply::Reply;

/// How long one count runs before it is recorded.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Client addresses one event names (the busiest); the rest are summed up.
const MAX_SOURCES: usize = 256;
/// Addresses followed within one interval (memory bound); later ones count as "others".
const MAX_TRACKED: usize = 4096;
/// Paths one source names (the most asked of those followed), and paths followed.
const MAX_PATHS: usize = 8;
const MAX_TRACKED_PATHS: usize = 16;
/// Distinct token hashes one source names.
const MAX_TOKENS: usize = 8;
/// A path is recorded up to this many bytes (the ledger's limit for actor fields).
const MAX_PATH_LEN: usize = 255;

/// The refusals of the interval under way, and the per-address quota.
pub struct Refusals {
    limiter: AddressLimiter,
    window: Mutex<Window>,
}

#[derive(Default)]
struct Window {
    from: u64,
    to: u64,
    sources: HashMap<String, Source>,
    other_sources: BTreeSet<String>,
    other_requests: u64,
}

#[derive(Default)]
struct Source {
    refused: u64,
    rate_limited: u64,
    paths: BTreeMap<String, u64>,
    other_paths: u64,
    tokens: BTreeSet<[u8; 32]>,
    other_tokens: u64,
}

impl Refusals {
    pub fn new(limit: RateLimit) -> Refusals {
        Refusals { limiter: AddressLimiter::new(limit), window: Mutex::new(Window::default()) }
    }

    /// Counts one request refused before authentication and gives its answer: Vault's 403,
    /// or 429 once `remote_addr` is over its quota. `token_hash` is the keyed hash of the
    /// token it presented, if any.
    pub fn refuse(&self, remote_addr: &str, path: &str, token_hash: Option<[u8; 32]>) -> Reply {
        let limited = !self.limiter.allow(remote_addr);
        if let Ok(mut w) = self.window.lock() {
            w.count(remote_addr, path, token_hash, limited, now_nanos());
        }
        if limited { Reply::error(429, "rate limit quota exceeded") } else { Reply::error(403, "permission denied") }
    }

    /// The interval's counts as one event, and a new interval; `None` if nothing was
    /// refused.
    pub fn take(&self) -> Option<RefusalsCounted> {
        let window = std::mem::take(&mut *self.window.lock().ok()?);
        window.into_event()
    }
}

impl Window {
    fn count(&mut self, addr: &str, path: &str, token_hash: Option<[u8; 32]>, limited: bool, now: u64) {
        if self.from == 0 {
            self.from = now;
        }
        self.to = now;
        if !self.sources.contains_key(addr) && self.sources.len() >= MAX_TRACKED {
            if self.other_sources.len() < MAX_TRACKED {
                self.other_sources.insert(addr.to_string());
            }
            self.other_requests += 1;
            return;
        }
        let s = self.sources.entry(addr.to_string()).or_default();
        if limited {
            s.rate_limited += 1;
        } else {
            s.refused += 1;
        }
        let path = clip(path);
        let followed = s.paths.len();
        match s.paths.get_mut(path) {
            Some(n) => *n += 1,
            None if followed < MAX_TRACKED_PATHS => {
                s.paths.insert(path.to_string(), 1);
            }
            None => s.other_paths += 1,
        }
        if let Some(h) = token_hash
            && !s.tokens.contains(&h)
        {
            if s.tokens.len() < MAX_TOKENS {
                s.tokens.insert(h);
            } else {
                s.other_tokens += 1;
            }
        }
    }

    fn into_event(self) -> Option<RefusalsCounted> {
        if self.sources.is_empty() && self.other_requests == 0 {
            return None;
        }
        let mut sources: Vec<(String, Source)> = self.sources.into_iter().collect();
        // The busiest first; ties by address, so the same counts give the same event.
        sources
            .sort_by(|(a, x), (b, y)| (y.refused + y.rate_limited).cmp(&(x.refused + x.rate_limited)).then(a.cmp(b)));
        let rest = sources.split_off(sources.len().min(MAX_SOURCES));
        let other_requests = self.other_requests + rest.iter().map(|(_, s)| s.refused + s.rate_limited).sum::<u64>();
        let other_sources = self.other_sources.len() as u64 + rest.len() as u64;
        let sources = sources
            .into_iter()
            .map(|(remote_addr, s)| {
                let mut paths: Vec<(String, u64)> = s.paths.into_iter().collect();
                paths.sort_by(|(a, x), (b, y)| y.cmp(x).then(a.cmp(b)));
                let dropped = paths.split_off(paths.len().min(MAX_PATHS));
                RefusalSource {
                    remote_addr,
                    refused: s.refused,
                    rate_limited: s.rate_limited,
                    paths,
                    other_paths: s.other_paths + dropped.iter().map(|(_, n)| n).sum::<u64>(),
                    token_hashes: s.tokens.into_iter().collect(),
                    other_tokens: s.other_tokens,
                }
            })
            .collect();
        Some(RefusalsCounted { from: self.from, to: self.to, sources, other_sources, other_requests })
    }
}

/// At most [`MAX_PATH_LEN`] bytes, cut at a character boundary.
fn clip(s: &str) -> &str {
    let mut end = s.len().min(MAX_PATH_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Records the counts every [`INTERVAL`], where the sequencer runs (a single node, a
/// cluster's leader; standbys send refusals to the leader whole).
pub async fn record_every(core: Arc<Core>, refusals: Arc<Refusals>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.tick().await;
    loop {
        tick.tick().await;
        record(&core, &refusals).await;
    }
}

/// Records the counts of the interval under way now (each interval, and at a clean stop).
pub async fn record(core: &Core, refusals: &Refusals) {
    let Some(counted) = refusals.take() else { return };
    let Some(unsealed) = core.unsealed().await.filter(|u| u.sequencer.is_running()) else {
        tracing::warn!(
            requests = total(&counted),
            "refused requests not recorded: this node does not write the ledger now"
        );
        return;
    };
    let requests = total(&counted);
    match unsealed.submit_as_system(Command::CountRefusals(counted)).await {
        Ok(_) => tracing::debug!(requests, "refused requests recorded"),
        Err(e) => tracing::warn!(error = %e, requests, "refused requests not recorded"),
    }
}

fn total(c: &RefusalsCounted) -> u64 {
    c.other_requests + c.sources.iter().map(|s| s.refused + s.rate_limited).sum::<u64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusals() -> Refusals {
        Refusals::new(RateLimit { per_second: 0, burst: 0 })
    }

    #[test]
    fn a_flood_is_one_bounded_event() {
        let r = refusals();
        for i in 0..100_000u32 {
            let token = [(i % 251) as u8; 32];
            let reply = r.refuse("10.0.0.1", &format!("secret/data/{}", i % 40), Some(token));
            assert_eq!(reply.status(), 403);
        }
        let e = r.take().expect("counted");
        assert_eq!(e.sources.len(), 1);
        let s = &e.sources[0];
        assert_eq!((s.remote_addr.as_str(), s.refused, s.rate_limited), ("10.0.0.1", 100_000, 0));
        assert_eq!(s.paths.len(), MAX_PATHS);
        assert_eq!(s.paths.iter().map(|(_, n)| n).sum::<u64>() + s.other_paths, 100_000);
        assert_eq!(s.token_hashes.len(), MAX_TOKENS);
        assert!(s.other_tokens > 0);
        let bytes = ledger::body::encode(&e).expect("encode").len();
        assert!(bytes < 1_000, "one flooding address costs {bytes} bytes an interval");
        assert!(r.take().is_none(), "a new interval starts empty");
    }

    #[test]
    fn many_addresses_are_capped_and_summed() {
        let r = refusals();
        for i in 0..(MAX_TRACKED as u32 + 500) {
            r.refuse(&format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255), &"x".repeat(1000), None);
        }
        let e = r.take().expect("counted");
        assert_eq!(e.sources.len(), MAX_SOURCES);
        assert_eq!(e.other_sources as usize, MAX_TRACKED + 500 - MAX_SOURCES);
        assert_eq!(e.other_requests as usize, MAX_TRACKED + 500 - MAX_SOURCES);
        assert!(e.sources.iter().all(|s| s.paths.iter().all(|(p, _)| p.len() <= MAX_PATH_LEN)));
        let bytes = ledger::body::encode(&e).expect("encode").len();
        assert!(bytes < 400_000, "the largest event is {bytes} bytes");
    }

    #[test]
    fn over_the_quota_the_answer_is_429_and_still_counted() {
        let r = Refusals::new(RateLimit { per_second: 1, burst: 3 });
        let statuses: Vec<u16> = (0..5).map(|_| r.refuse("10.0.0.9", "sys/mounts", None).status()).collect();
        assert_eq!(statuses, vec![403, 403, 403, 429, 429]);
        assert_eq!(r.refuse("10.0.0.8", "sys/mounts", None).status(), 403, "another address has its own quota");
        let e = r.take().expect("counted");
        let s = e.sources.iter().find(|s| s.remote_addr == "10.0.0.9").expect("source");
        assert_eq!((s.refused, s.rate_limited), (3, 2));
    }
}
