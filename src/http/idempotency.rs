//! `Idempotency-Key` on posts: a post retried with the same key (after a
//! `503`, a timeout, a dropped connection) within [`KEEP`] gets the first
//! post's `201` again instead of making a second message.
//!
//! A key is scoped by room and by who posts (the account, or the client
//! address as the rate limit counts it), and remembers a fingerprint of
//! the request: the same key with another message is `422`. While the
//! first post is in flight a retry waits for it (up to
//! `--publish-timeout`, then `409`). Only a `201` is remembered: a post
//! that failed made nothing, so its retry posts.
//!
//! On one instance the answers live in memory, at most [`MAX_BYTES`] of
//! them (the oldest go first). With `--redis` they live in Redis, so a
//! retry that lands on another instance is answered the same.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_listener::Event as Notify;
use futures_lite::FutureExt;

use super::reply::ApiError;

/// How long a key is remembered.
pub const KEEP: Duration = Duration::from_secs(600);
/// The most bytes of remembered answers one instance keeps in memory.
pub const MAX_BYTES: usize = 1 << 20;
/// The longest key accepted.
pub const MAX_KEY: usize = 128;

/// Checks a key: 1 to [`MAX_KEY`] visible ASCII characters.
///
/// # Examples
///
/// ```
/// use smolchat::http::idempotency::valid_key;
///
/// assert!(valid_key("3f2b8c1e-7a4d-4e0b-9c55-0d1e2f3a4b5c"));
/// assert!(!valid_key(""));
/// assert!(!valid_key("two words"));
/// ```
pub fn valid_key(key: &str) -> bool {
    (1..=MAX_KEY).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

/// FNV-1a over the parts of a request that make its message: the same
/// on every instance, so a retry elsewhere is recognised.
pub fn fingerprint(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part.iter().chain(&[0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// What a post holding a key learns.
#[derive(Debug)]
pub enum Claim {
    /// It is the first with this key: post, then [`Ticket::done`] with the
    /// answer (or drop the ticket if the post failed).
    First(Ticket),
    /// A post with this key was answered `201` already: this body.
    Answered(Vec<u8>),
}

/// The right to post under a key, released if dropped unanswered.
#[derive(Debug)]
pub struct Ticket {
    scope: String,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    print: u64,
    released: bool,
    owner: Owner,
}

#[derive(Debug)]
enum Owner {
    Local(Arc<Keys>),
    #[cfg(feature = "redis")]
    Redis(Arc<crate::history::redis::RedisHistory>),
}

impl Ticket {
    /// Remembers `body` as the answer of this key's post.
    pub async fn done(mut self, body: &[u8]) {
        self.released = true;
        match &self.owner {
            Owner::Local(keys) => keys.done(&self.scope, body),
            #[cfg(feature = "redis")]
            Owner::Redis(r) => {
                let mut value = format!("d:{:016x}:", self.print).into_bytes();
                value.extend_from_slice(body);
                // Not remembered if Redis is away now: a retry then posts
                // again, as it would without a key.
                let _ = r
                    .query::<()>(
                        redis::cmd("SET")
                            .arg(redis_key(&self.scope))
                            .arg(value)
                            .arg("EX")
                            .arg(KEEP.as_secs()),
                    )
                    .await;
            }
        }
    }
}

#[derive(Debug)]
enum Slot {
    /// Being posted; rung when it ends either way.
    Pending {
        print: u64,
        ended: std::sync::Arc<Notify>,
    },
    Done {
        print: u64,
        body: Vec<u8>,
        at: Instant,
    },
}

/// The keys one instance remembers.
#[derive(Debug, Default)]
pub struct Keys {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    slots: HashMap<String, Slot>,
    /// Answered keys, oldest first, with their answers' sizes.
    order: VecDeque<(Instant, String, usize)>,
    bytes: usize,
}

impl Keys {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claims `scope` for a request with fingerprint `print`, waiting
    /// until `deadline` for a post in flight with the same key.
    pub async fn claim(
        self: &Arc<Self>,
        scope: String,
        print: u64,
        deadline: Instant,
    ) -> Result<Claim, ApiError> {
        loop {
            let ended = {
                let mut st = self.lock();
                st.expire(Instant::now());
                match st.slots.get(&scope) {
                    None => {
                        st.slots.insert(
                            scope.clone(),
                            Slot::Pending {
                                print,
                                ended: Default::default(),
                            },
                        );
                        return Ok(Claim::First(Ticket {
                            scope,
                            print,
                            released: false,
                            owner: Owner::Local(self.clone()),
                        }));
                    }
                    Some(Slot::Done { print: p, body, .. }) => {
                        return if *p == print {
                            Ok(Claim::Answered(body.clone()))
                        } else {
                            Err(reused())
                        };
                    }
                    Some(Slot::Pending { print: p, ended }) => {
                        if *p != print {
                            return Err(reused());
                        }
                        ended.clone()
                    }
                }
            };
            let listener = ended.listen();
            // Ended between the lock and the listener: look again.
            if !matches!(self.lock().slots.get(&scope), Some(Slot::Pending { .. })) {
                continue;
            }
            let in_time = async {
                listener.await;
                true
            }
            .or(async {
                smol::Timer::at(deadline).await;
                false
            })
            .await;
            if !in_time {
                return Err(ApiError::InProgress);
            }
        }
    }

    fn done(&self, scope: &str, body: &[u8]) {
        let now = Instant::now();
        let mut st = self.lock();
        let ended = match st.slots.remove(scope) {
            Some(Slot::Pending { ended, print }) => {
                st.slots.insert(
                    scope.to_string(),
                    Slot::Done {
                        print,
                        body: body.to_vec(),
                        at: now,
                    },
                );
                st.order.push_back((now, scope.to_string(), body.len()));
                st.bytes += body.len();
                Some(ended)
            }
            other => {
                if let Some(slot) = other {
                    st.slots.insert(scope.to_string(), slot);
                }
                None
            }
        };
        while st.bytes > MAX_BYTES {
            st.forget_oldest();
        }
        drop(st);
        if let Some(e) = ended {
            e.notify(usize::MAX);
        }
    }

    fn release(&self, scope: &str) {
        let mut st = self.lock();
        if let Some(Slot::Pending { ended, .. }) = st.slots.get(scope) {
            let ended = ended.clone();
            st.slots.remove(scope);
            drop(st);
            ended.notify(usize::MAX);
        }
    }

    /// Keys remembered (answered or in flight).
    pub fn len(&self) -> usize {
        self.lock().slots.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl State {
    fn expire(&mut self, now: Instant) {
        while self
            .order
            .front()
            .is_some_and(|(at, _, _)| now.duration_since(*at) >= KEEP)
        {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        let Some((at, scope, size)) = self.order.pop_front() else {
            return;
        };
        self.bytes -= size;
        // A key answered again since has a newer entry: keep it.
        if matches!(self.slots.get(&scope), Some(Slot::Done { at: a, .. }) if *a == at) {
            self.slots.remove(&scope);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        match &self.owner {
            Owner::Local(keys) => keys.release(&self.scope),
            #[cfg(feature = "redis")]
            Owner::Redis(r) => {
                let (r, key) = (r.clone(), redis_key(&self.scope));
                smol::spawn(async move {
                    let _ = r.query::<()>(redis::cmd("DEL").arg(key)).await;
                })
                .detach();
            }
        }
    }
}

/// The Redis key of a scope.
#[cfg(feature = "redis")]
fn redis_key(scope: &str) -> String {
    format!("smolchat:idem:{scope}")
}

/// [`Keys::claim`] with the keys in Redis, shared by every instance: `SET
/// NX` takes a key (`p:PRINT` while its post is in flight, `d:PRINT:BODY`
/// once answered), expiring after [`KEEP`].
#[cfg(feature = "redis")]
pub async fn claim_redis(
    r: &Arc<crate::history::redis::RedisHistory>,
    scope: String,
    print: u64,
    deadline: Instant,
) -> Result<Claim, ApiError> {
    let key = redis_key(&scope);
    let hex = format!("{print:016x}");
    loop {
        let took: Option<String> = r
            .query(
                redis::cmd("SET")
                    .arg(&key)
                    .arg(format!("p:{hex}"))
                    .arg("NX")
                    .arg("EX")
                    .arg(KEEP.as_secs()),
            )
            .await
            .map_err(|_| ApiError::StoreUnavailable)?;
        if took.is_some() {
            return Ok(Claim::First(Ticket {
                scope,
                print,
                released: false,
                owner: Owner::Redis(r.clone()),
            }));
        }
        let value: Option<Vec<u8>> = r
            .query(redis::cmd("GET").arg(&key))
            .await
            .map_err(|_| ApiError::StoreUnavailable)?;
        let Some(value) = value else {
            // Released or expired since: take it.
            continue;
        };
        let (kind, rest) = value.split_at(2.min(value.len()));
        let same = rest.starts_with(hex.as_bytes());
        match (kind, same) {
            (_, false) => return Err(reused()),
            (b"d:", true) => return Ok(Claim::Answered(rest[hex.len() + 1..].to_vec())),
            _ => {
                if Instant::now() >= deadline {
                    return Err(ApiError::InProgress);
                }
                smol::Timer::after(Duration::from_millis(50)).await;
            }
        }
    }
}

fn reused() -> ApiError {
    ApiError::Refused(
        "this Idempotency-Key was used for another message: use a new key for a new message".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Arc<Keys> {
        Arc::default()
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn the_first_post_answers_every_retry_with_the_same_message() {
        let k = keys();
        smol::block_on(async {
            let Ok(Claim::First(t)) = k.claim("r/a/1".into(), 7, later()).await else {
                panic!("first claim");
            };
            t.done(b"{\"id\":1}").await;
            match k.claim("r/a/1".into(), 7, later()).await {
                Ok(Claim::Answered(b)) => assert_eq!(b, b"{\"id\":1}"),
                other => panic!("{other:?}"),
            }
            assert!(matches!(
                k.claim("r/a/1".into(), 8, later()).await,
                Err(ApiError::Refused(_))
            ));
            assert!(matches!(
                k.claim("r/b/1".into(), 7, later()).await,
                Ok(Claim::First(_))
            ));
        });
    }

    #[test]
    fn a_failed_post_leaves_the_key_free() {
        let k = keys();
        smol::block_on(async {
            let first = k.claim("s".into(), 1, later()).await.unwrap();
            drop(first);
            assert!(matches!(
                k.claim("s".into(), 1, later()).await,
                Ok(Claim::First(_))
            ));
        });
    }

    #[test]
    fn a_retry_waits_for_the_post_in_flight_or_gets_409() {
        let k = keys();
        smol::block_on(async {
            let Ok(Claim::First(t)) = k.claim("w".into(), 1, later()).await else {
                panic!();
            };
            let soon = Instant::now() + Duration::from_millis(20);
            assert!(matches!(
                k.claim("w".into(), 1, soon).await,
                Err(ApiError::InProgress)
            ));
            let k2 = k.clone();
            let retry = smol::spawn(async move { k2.claim("w".into(), 1, later()).await });
            t.done(b"x").await;
            assert!(matches!(retry.await, Ok(Claim::Answered(b)) if b == b"x"));
        });
    }

    #[test]
    fn answers_beyond_the_byte_bound_are_forgotten_oldest_first() {
        let k = keys();
        smol::block_on(async {
            let big = vec![b'x'; MAX_BYTES / 4 + 1];
            for i in 0..5 {
                let Ok(Claim::First(t)) = k.claim(format!("k{i}"), 1, later()).await else {
                    panic!();
                };
                t.done(&big).await;
            }
            assert_eq!(k.len(), 3);
            assert!(matches!(
                k.claim("k0".into(), 1, later()).await,
                Ok(Claim::First(_))
            ));
            assert!(matches!(
                k.claim("k4".into(), 1, later()).await,
                Ok(Claim::Answered(_))
            ));
        });
    }
}
