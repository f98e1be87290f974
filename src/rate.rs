//! Per-client post rate limit: a token bucket per client: its account when
//! it is signed in, else its address.
//!
//! `--rate` tokens per second refill a bucket of `--rate-burst`; a post
//! takes one. Time comes in as an argument, so the rules are tested without
//! sleeping. IPv6 clients are keyed by their /64, since one host usually owns
//! the whole prefix. The table is bounded: idle (full) buckets are pruned
//! when it grows, and past [`MAX_CLIENTS`] the stalest entry makes room.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::message::UserName;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most clients tracked at once.
pub const MAX_CLIENTS: usize = 65_536;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Whom a bucket is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Client {
    /// An address (IPv6 by /64).
    Address(IpAddr),
    /// A signed-in account, wherever it posts from.
    Account(UserName),
}

impl From<IpAddr> for Client {
    fn from(ip: IpAddr) -> Client {
        Client::Address(client_key(ip))
    }
}

/// The rate limiter.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<Client, Bucket>>,
}

impl RateLimiter {
    /// `rate` posts per second with bursts of `burst`; a rate of 0 allows all.
    pub fn new(rate: u32, burst: u32) -> Self {
        RateLimiter {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `client` at `now`, or says how long until one is
    /// available.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use smolchat::rate::RateLimiter;
    ///
    /// let limiter = RateLimiter::new(1, 2);
    /// let (ip, now): (std::net::IpAddr, _) = ("10.0.0.1".parse().unwrap(), Instant::now());
    /// assert!(limiter.check(ip, now).is_ok());
    /// assert!(limiter.check(ip, now).is_ok());
    /// assert_eq!(limiter.check(ip, now), Err(Duration::from_secs(1)));
    /// assert!(limiter.check(ip, now + Duration::from_secs(1)).is_ok());
    /// ```
    pub fn check(&self, client: impl Into<Client>, now: Instant) -> Result<(), Duration> {
        if self.rate == 0.0 {
            return Ok(());
        }
        let key = client.into();
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(&key) && map.len() >= MAX_CLIENTS {
            self.prune(&mut map, now);
        }
        let b = map.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.rate))
        }
    }

    /// Drops buckets that have refilled; if none has, the stalest one.
    fn prune(&self, map: &mut HashMap<Client, Bucket>, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        map.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
        });
        if map.len() >= MAX_CLIENTS {
            if let Some(oldest) = map.iter().min_by_key(|(_, b)| b.at).map(|(k, _)| k.clone()) {
                map.remove(&oldest);
            }
        }
    }

    /// Clients currently tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Who a client is, for limits: IPv4 addresses as they are; IPv6 by /64
/// (one host usually owns a whole /64), IPv4-mapped ones as IPv4.
///
/// # Examples
///
/// ```
/// use std::net::IpAddr;
/// use smolchat::rate::client_key;
///
/// let ip = |s: &str| s.parse::<IpAddr>().unwrap();
/// assert_eq!(client_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
/// assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
/// ```
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
            }
        },
    }
}

/// Seconds for a `Retry-After` header: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_burst_then_the_rate() {
        let l = RateLimiter::new(5, 10);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(l.check(ip("1.2.3.4"), t0).is_ok());
        }
        let wait = l.check(ip("1.2.3.4"), t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(200));
        assert!(l
            .check(ip("1.2.3.4"), t0 + Duration::from_millis(200))
            .is_ok());
        assert!(l
            .check(ip("1.2.3.4"), t0 + Duration::from_millis(250))
            .is_err());
        assert!(l.check(ip("5.6.7.8"), t0).is_ok(), "clients are separate");
    }

    #[test]
    fn rate_zero_is_off() {
        let l = RateLimiter::new(0, 1);
        for _ in 0..1000 {
            assert!(l.check(ip("1.2.3.4"), Instant::now()).is_ok());
        }
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn ipv6_hosts_share_their_64() {
        let l = RateLimiter::new(1, 1);
        let t0 = Instant::now();
        assert!(l.check(ip("2001:db8:1:2::1"), t0).is_ok());
        assert!(l.check(ip("2001:db8:1:2::ffff"), t0).is_err());
        assert!(l.check(ip("2001:db8:1:3::1"), t0).is_ok());
        assert!(l.check(ip("::ffff:1.2.3.4"), t0).is_ok());
        assert!(l.check(ip("1.2.3.4"), t0).is_err());
    }

    #[test]
    fn the_table_stays_bounded() {
        let l = RateLimiter::new(1, 5);
        let t0 = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 100) {
            let _ = l.check(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(l.tracked() <= MAX_CLIENTS);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(200)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
