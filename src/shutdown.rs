//! The shutdown signal and the "every connection has finished" waiter,
//! and the count of connections per client address.
//!
//! [`Shutdown`] is a flag plus an event: long-lived futures race their work
//! against [`Shutdown::wait`]. [`Tracker`] counts open connections; each
//! connection holds a [`ConnGuard`] whose drop decrements the count, and the
//! server waits for zero (or its deadline) before exiting. [`PerAddress`]
//! counts the same way per client (`--max-connections-per-ip`), so one host
//! cannot take every connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::rate::client_key;

use event_listener::{Event, EventListener};

/// A one-way "stop now" signal, cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Shutdown(Arc<ShutdownInner>);

#[derive(Debug, Default)]
struct ShutdownInner {
    stopped: AtomicBool,
    event: Event,
}

impl Shutdown {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fires the signal; every current and future waiter returns.
    pub fn trigger(&self) {
        self.0.stopped.store(true, Ordering::SeqCst);
        self.0.event.notify(usize::MAX);
    }

    /// Whether the signal has fired.
    pub fn is_triggered(&self) -> bool {
        self.0.stopped.load(Ordering::SeqCst)
    }

    /// A [`Watch`] of this signal, for a task that waits for it many times.
    pub fn watch(&self) -> Watch<'_> {
        Watch {
            shutdown: self,
            listener: None,
        }
    }

    /// Resolves once the signal has fired.
    pub async fn wait(&self) {
        loop {
            if self.is_triggered() {
                return;
            }
            let listener = self.0.event.listen();
            if self.is_triggered() {
                return;
            }
            listener.await;
        }
    }
}

/// A wait for a [`Shutdown`] that keeps its place between waits. A
/// connection waits for the signal beside every read; [`Shutdown::wait`]
/// would register with the signal (an allocation, a lock) each time, a
/// watch does it once, at its first wait.
#[derive(Debug)]
pub struct Watch<'a> {
    shutdown: &'a Shutdown,
    listener: Option<EventListener>,
}

impl Watch<'_> {
    /// Resolves once the signal has fired. Dropping the future before that
    /// keeps the watch's registration for the next call.
    pub async fn fired(&mut self) {
        loop {
            if self.shutdown.is_triggered() {
                return;
            }
            match &mut self.listener {
                Some(listener) => {
                    listener.await;
                    self.listener = None;
                }
                // Registered before the flag is read again above: a
                // trigger in between is not missed.
                None => self.listener = Some(self.shutdown.0.event.listen()),
            }
        }
    }
}

/// Counts live connections.
#[derive(Clone, Debug, Default)]
pub struct Tracker(Arc<TrackerInner>);

#[derive(Debug, Default)]
struct TrackerInner {
    open: AtomicUsize,
    idle: Event,
}

impl Tracker {
    /// Registers a connection if fewer than `max` are open.
    pub fn try_enter(&self, max: usize) -> Option<ConnGuard> {
        let mut n = self.0.open.load(Ordering::Relaxed);
        loop {
            if n >= max {
                return None;
            }
            match self
                .0
                .open
                .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Some(ConnGuard(self.clone())),
                Err(now) => n = now,
            }
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.0.open.load(Ordering::Acquire)
    }

    /// Resolves when no connection is open.
    pub async fn wait_idle(&self) {
        loop {
            if self.open() == 0 {
                return;
            }
            let listener = self.0.idle.listen();
            if self.open() == 0 {
                return;
            }
            listener.await;
        }
    }
}

/// Held by a connection for its whole life.
#[derive(Debug)]
pub struct ConnGuard(Tracker);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.0 .0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0 .0.idle.notify(usize::MAX);
        }
    }
}

/// Open connections (or streams) per client: an address, or an IPv6 /64.
#[derive(Clone, Debug, Default)]
pub struct PerAddress(Arc<Mutex<HashMap<IpAddr, usize>>>);

impl PerAddress {
    /// Counts one more for `ip` if it has fewer than `max`.
    pub fn try_enter(&self, ip: IpAddr, max: usize) -> Option<AddressGuard> {
        let key = client_key(ip);
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressGuard {
            map: self.clone(),
            key,
        })
    }

    /// How many `ip` has open.
    pub fn open(&self, ip: IpAddr) -> usize {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&client_key(ip)).copied().unwrap_or(0)
    }
}

/// Held for as long as one connection (or stream) of a client is open.
#[derive(Debug)]
pub struct AddressGuard {
    map: PerAddress,
    key: IpAddr,
}

impl Drop for AddressGuard {
    fn drop(&mut self) {
        let mut map = self.map.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                // The table holds only clients with something open.
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tracker_caps_and_waits_for_zero() {
        let t = Tracker::default();
        let a = t.try_enter(2).unwrap();
        let b = t.try_enter(2).unwrap();
        assert!(t.try_enter(2).is_none());
        let t2 = t.clone();
        let waiter = std::thread::spawn(move || smol::block_on(t2.wait_idle()));
        drop(a);
        drop(b);
        waiter.join().unwrap();
        assert_eq!(t.open(), 0);
    }

    #[test]
    fn per_address_counts_each_client_and_ipv6_by_64() {
        let p = PerAddress::default();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a1 = p.try_enter(ip("10.0.0.1"), 2).unwrap();
        let _a2 = p.try_enter(ip("10.0.0.1"), 2).unwrap();
        assert!(p.try_enter(ip("10.0.0.1"), 2).is_none());
        assert!(p.try_enter(ip("10.0.0.2"), 2).is_some(), "another host");
        let _v6 = p.try_enter(ip("2001:db8::1"), 1).unwrap();
        assert!(p.try_enter(ip("2001:db8::ffff"), 1).is_none(), "same /64");
        drop(a1);
        assert_eq!(p.open(ip("10.0.0.1")), 1);
        assert!(p.try_enter(ip("10.0.0.1"), 2).is_some());
    }

    #[test]
    fn a_watch_registers_once_and_sees_the_signal() {
        use futures_lite::FutureExt as _;
        let s = Shutdown::new();
        let mut w = s.watch();
        // Waits that something else ends first, as a connection's reads do.
        for _ in 0..3 {
            let read = smol::block_on(
                async {
                    w.fired().await;
                    false
                }
                .or(async { true }),
            );
            assert!(read, "the signal has not fired");
        }
        assert!(w.listener.is_some(), "registered at the first wait, kept");
        let s2 = s.clone();
        let trigger = std::thread::spawn(move || s2.trigger());
        smol::block_on(w.fired());
        trigger.join().unwrap();
        smol::block_on(w.fired());
        smol::block_on(s.watch().fired());
    }

    #[test]
    fn shutdown_wakes_waiters_before_and_after() {
        let s = Shutdown::new();
        let s2 = s.clone();
        let waiter = std::thread::spawn(move || smol::block_on(s2.wait()));
        s.trigger();
        waiter.join().unwrap();
        smol::block_on(s.wait());
    }
}
