//! Accounts: who is asking, and what they may do. One manager,
//! [`Accounts`], answers the router's two questions — who is this
//! ([`Accounts::by_token`], [`Accounts::by_password`],
//! [`Accounts::by_session`]) and may they read or write this room
//! ([`Accounts::access`]) — so handlers never parse credentials or rules
//! themselves.
//!
//! Users, tokens and rules live in the database file (see [`store`]) and
//! are changed by the `smolchat user`, `token` and `access` subcommands,
//! also while the server runs: a thread polls the file's change counter
//! every [`POLL`] and reloads a snapshot when it moved, then rings
//! [`Accounts::changed_after`] so open streams check they are still
//! allowed. With `--db :memory:` there are no accounts (and browser
//! sessions live in memory for the run).
//!
//! Password checks (Argon2id, tens of milliseconds and 19 MiB each) run on
//! the blocking thread pool, at most [`MAX_VERIFYING`] at once, never on an
//! executor thread; an unknown user costs a check against a decoy hash, so
//! timing does not tell which names exist. A verified `Basic` credential is
//! remembered for [`BASIC_CACHE`] (by a hash of the pair), so `curl -u` in a
//! loop does not pay Argon2 for every request.

#[cfg(feature = "redis")]
pub mod redis_store;
pub mod rules;
pub mod secret;
pub mod store;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use event_listener::Event as Notify;

use crate::message::{RoomName, Timestamp, UserName};
use rules::{decide, Access};
use secret::{hash_secret, SecretHash};
use store::{AccountsDb, Snapshot};

/// How often the server looks for changes made by the subcommands.
pub const POLL: Duration = Duration::from_millis(400);
/// Password checks at once (each takes 19 MiB for a few tens of ms).
pub const MAX_VERIFYING: usize = 2;
/// How long a verified `Basic` credential is remembered.
pub const BASIC_CACHE: Duration = Duration::from_secs(60);
/// How long a browser session lasts.
pub const SESSION_DAYS: i64 = 30;
/// Prefix of a browser session id.
pub const SESSION_PREFIX: &str = "ss_";

/// How a request proved who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// A token (by hash).
    Token(SecretHash),
    /// A browser session cookie (by hash).
    Session(SecretHash),
    /// A password (`Basic`), checked against this stored hash.
    Password(Arc<str>),
}

/// Who is asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// Nobody signed in.
    Anonymous,
    /// An account.
    User {
        /// The account name.
        name: UserName,
        /// Whether it is an admin.
        admin: bool,
        /// A read-only token.
        read_only: bool,
        /// How it proved it.
        credential: Credential,
    },
}

impl Identity {
    /// The account name, if signed in.
    pub fn user(&self) -> Option<&UserName> {
        match self {
            Identity::Anonymous => None,
            Identity::User { name, .. } => Some(name),
        }
    }

    /// Whether it is an admin.
    pub fn is_admin(&self) -> bool {
        matches!(self, Identity::User { admin: true, .. })
    }
}

/// A browser session: whose, until when, and the password hash it was
/// opened under (a new password ends it).
#[derive(Clone, Debug)]
struct Session {
    user: UserName,
    expires: Timestamp,
    phc: Arc<str>,
}

/// A `Basic` credential checked recently: whose, against which stored
/// hash, until when it is trusted without another check.
type Verified = (UserName, Arc<str>, Instant);

/// The manager; see the module docs.
#[derive(Debug)]
pub struct Accounts {
    snapshot: RwLock<Arc<Snapshot>>,
    default_access: Access,
    sessions: Mutex<HashMap<SecretHash, Session>>,
    basic: Mutex<HashMap<SecretHash, Verified>>,
    /// Bumped (and `changed` rung) after every reload that changed something.
    version: AtomicU64,
    changed: Notify,
    /// The file, for sessions and reloads; `None` with `--db :memory:`.
    db: Option<Arc<Mutex<AccountsDb>>>,
    /// The file's change counter at the last reload.
    file_version: AtomicU64,
    verifying: smol::lock::Semaphore,
    /// In Redis: other instances start sessions this one has not seen.
    shared: bool,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Accounts {
    /// Accounts from the file at `path` (or none, for `--db :memory:`),
    /// with `default_access` where no rule says otherwise.
    pub fn open(path: Option<PathBuf>, default_access: Access) -> Result<Accounts, String> {
        let db = match path {
            Some(path) => Some(AccountsDb::open(&path).map_err(|e| e.0)?),
            None => None,
        };
        Self::with_store(db, default_access)
    }

    /// Accounts from Redis at `url` (`--redis`), shared by every instance.
    pub fn open_redis(url: &str, default_access: Access) -> Result<Accounts, String> {
        let db = AccountsDb::open_redis(url).map_err(|e| e.0)?;
        Self::with_store(Some(db), default_access)
    }

    fn with_store(db: Option<AccountsDb>, default_access: Access) -> Result<Accounts, String> {
        let mut accounts = Accounts {
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            default_access,
            sessions: Mutex::new(HashMap::new()),
            basic: Mutex::new(HashMap::new()),
            version: AtomicU64::new(0),
            changed: Notify::new(),
            db: None,
            file_version: AtomicU64::new(u64::MAX),
            verifying: smol::lock::Semaphore::new(MAX_VERIFYING),
            shared: false,
        };
        if let Some(mut db) = db {
            accounts.shared = db.is_shared();
            let now = Timestamp::now();
            let stored = match db.sessions(now) {
                Ok(s) => s,
                // Redis may not be up yet: the reload thread reads
                // everything once it is (nothing can be posted or read
                // before that anyway).
                Err(e) if accounts.shared => {
                    log::warn!("accounts: {e}; read once Redis answers");
                    accounts.db = Some(Arc::new(Mutex::new(db)));
                    return Ok(accounts);
                }
                Err(e) => return Err(e.0),
            };
            accounts.db = Some(Arc::new(Mutex::new(db)));
            accounts.reload().map_err(|e| e.to_string())?;
            let snap = accounts.snap();
            *lock(&accounts.sessions) = stored
                .into_iter()
                .filter_map(|(hash, user, expires)| {
                    let phc = Arc::from(snap.users.get(&user)?.hash.as_str());
                    Some((hash, Session { user, expires, phc }))
                })
                .collect();
        }
        Ok(accounts)
    }

    /// Reads users, tokens and rules again if the file says they changed;
    /// whether they did.
    pub fn reload(&self) -> Result<bool, String> {
        let Some(db) = &self.db else {
            return Ok(false);
        };
        let mut db = lock(db);
        let mut v = db.version().map_err(|e| e.0)? as u64;
        if v == self.file_version.load(Ordering::Acquire) {
            return Ok(false);
        }
        // Redis reads users, tokens and rules with separate commands, so a
        // change made meanwhile can be half in the snapshot (a rule in, the
        // token made before it not): read again until the counter stood
        // still. After a few tries the snapshot is kept under the counter
        // read before it, so the next poll reads it again.
        let mut snap = db.snapshot().map_err(|e| e.0)?;
        for _ in 0..3 {
            let after = db.version().map_err(|e| e.0)? as u64;
            if after == v {
                break;
            }
            v = after;
            snap = db.snapshot().map_err(|e| e.0)?;
        }
        // In Redis, a sign-out on another instance removed its session.
        let live: Option<std::collections::HashSet<SecretHash>> = if self.shared {
            let now = Timestamp::now();
            Some(
                db.sessions(now)
                    .map_err(|e| e.0)?
                    .into_iter()
                    .map(|s| s.0)
                    .collect(),
            )
        } else {
            None
        };
        drop(db);
        // Sessions of users that are gone, or whose password changed, end.
        lock(&self.sessions).retain(|h, s| {
            snap.users.get(&s.user).is_some_and(|u| *u.hash == *s.phc)
                && live.as_ref().is_none_or(|l| l.contains(h))
        });
        lock(&self.basic).clear();
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snap);
        self.file_version.store(v, Ordering::Release);
        self.version.fetch_add(1, Ordering::AcqRel);
        self.changed.notify(usize::MAX);
        Ok(true)
    }

    /// Starts the thread that reloads on changes (with a database).
    pub fn watch(self: &Arc<Self>) -> std::io::Result<()> {
        if self.db.is_none() {
            return Ok(());
        }
        let me = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("smolchat-auth".into())
            .spawn(move || loop {
                // Polling a counter is the change signal: the subcommands
                // are other processes.
                std::thread::sleep(POLL);
                let Some(me) = me.upgrade() else { return };
                if let Err(e) = me.reload() {
                    log::warn!("accounts: {e}");
                }
            })?;
        Ok(())
    }

    fn snap(&self) -> Arc<Snapshot> {
        read(&self.snapshot).clone()
    }

    /// Whether any account exists (then anonymous posts are marked as
    /// guests, and registered names are reserved).
    pub fn has_users(&self) -> bool {
        !self.snap().users.is_empty()
    }

    /// Whether `name` belongs to an account.
    pub fn is_registered(&self, name: &UserName) -> bool {
        self.snap().users.contains_key(name)
    }

    /// The account a token belongs to, if it is valid now.
    pub fn by_token(&self, token: &str) -> Option<Identity> {
        let hash = hash_secret(token);
        let snap = self.snap();
        let t = snap.tokens.get(&hash)?;
        if t.expires.is_some_and(|e| e <= Timestamp::now()) {
            return None;
        }
        let user = snap.users.get(&t.user)?;
        Some(Identity::User {
            name: t.user.clone(),
            admin: user.admin,
            read_only: t.read_only,
            credential: Credential::Token(hash),
        })
    }

    /// The account `name` if `password` is its password. Costs the same
    /// for an unknown name; runs off the executor, a few at a time.
    pub async fn by_password(&self, name: &str, password: &str) -> Option<Identity> {
        // Length first: "a:b" + "c" and "a" + "b:c" are different keys.
        let key = hash_secret(&format!("{}:{name}:{password}", name.len()));
        if let Some((user, phc, until)) = lock(&self.basic).get(&key).cloned() {
            if until > Instant::now() {
                return self.identity_for(&user, Credential::Password(phc));
            }
        }
        let user = UserName::parse(name).ok();
        let phc: Option<Arc<str>> = user
            .as_ref()
            .and_then(|u| self.snap().users.get(u).map(|x| Arc::from(x.hash.as_str())));
        let checked: Arc<str> = phc
            .clone()
            .unwrap_or_else(|| Arc::from(secret::decoy_hash()));
        let password = password.to_string();
        let ok = {
            let _slot = self.verifying.acquire().await;
            let hash = checked.clone();
            smol::unblock(move || secret::verify_password(&hash, &password)).await
        };
        let (Some(user), Some(phc), true) = (user, phc, ok) else {
            return None;
        };
        let mut cache = lock(&self.basic);
        if cache.len() > 4096 {
            cache.retain(|_, (_, _, until)| *until > Instant::now());
        }
        cache.insert(
            key,
            (user.clone(), phc.clone(), Instant::now() + BASIC_CACHE),
        );
        drop(cache);
        self.identity_for(&user, Credential::Password(phc))
    }

    fn identity_for(&self, name: &UserName, credential: Credential) -> Option<Identity> {
        let snap = self.snap();
        let user = snap.users.get(name)?;
        if let Credential::Password(phc) = &credential {
            if *user.hash != **phc {
                return None;
            }
        }
        Some(Identity::User {
            name: name.clone(),
            admin: user.admin,
            read_only: false,
            credential,
        })
    }

    /// The account of a browser session cookie, if it is valid now.
    pub fn by_session(&self, cookie: &str) -> Option<Identity> {
        let hash = hash_secret(cookie);
        let session = lock(&self.sessions).get(&hash).cloned()?;
        if session.expires <= Timestamp::now() {
            lock(&self.sessions).remove(&hash);
            return None;
        }
        self.identity_for(&session.user, Credential::Session(hash))
    }

    /// [`Accounts::by_session`], and with accounts in Redis a session
    /// another instance started (looked up there, then known here too).
    pub async fn by_session_anywhere(&self, cookie: &str) -> Option<Identity> {
        if let Some(who) = self.by_session(cookie) {
            return Some(who);
        }
        if !self.shared {
            return None;
        }
        let db = self.db.clone()?;
        let hash = hash_secret(cookie);
        let found = smol::unblock(move || lock(&db).session(&hash)).await;
        let (user, expires) = match found {
            Ok(Some(s)) => s,
            Ok(None) => return None,
            Err(e) => {
                log::warn!("accounts: {e}");
                return None;
            }
        };
        if expires <= Timestamp::now() {
            return None;
        }
        let phc: Arc<str> = Arc::from(self.snap().users.get(&user)?.hash.as_str());
        lock(&self.sessions).insert(
            hash,
            Session {
                user: user.clone(),
                expires,
                phc,
            },
        );
        self.by_session(cookie)
    }

    /// Starts a browser session for `user`: returns the cookie value.
    pub async fn new_session(&self, user: &UserName) -> Result<String, String> {
        let id = secret::new_secret(SESSION_PREFIX)?;
        let hash = hash_secret(&id);
        let expires = Timestamp(Timestamp::now().0 + SESSION_DAYS * 86_400);
        let phc: Arc<str> = match self.snap().users.get(user) {
            Some(u) => Arc::from(u.hash.as_str()),
            None => return Err(format!("no user {user}")),
        };
        lock(&self.sessions).insert(
            hash,
            Session {
                user: user.clone(),
                expires,
                phc,
            },
        );
        let user = user.clone();
        self.persist(move |db| db.add_session(&hash, &user, expires))
            .await;
        Ok(id)
    }

    /// Ends a browser session.
    pub async fn end_session(&self, cookie: &str) {
        let hash = hash_secret(cookie);
        lock(&self.sessions).remove(&hash);
        self.persist(move |db| db.remove_session(&hash)).await;
    }

    /// Runs a small write on the file off the executor (sessions).
    async fn persist(
        &self,
        write: impl FnOnce(&mut AccountsDb) -> Result<(), crate::history::sqlite::StoreError>
            + Send
            + 'static,
    ) {
        let Some(db) = self.db.clone() else { return };
        // Sessions are few and small; a blocking write under the lock is
        // fine on the blocking pool, never on an executor thread.
        let result = smol::unblock(move || write(&mut lock(&db))).await;
        if let Err(e) = result {
            log::warn!("accounts: could not store a session: {e}");
        }
    }

    /// What `who` may do in `room`.
    pub fn access(&self, who: &Identity, room: &RoomName) -> Access {
        let snap = self.snap();
        let access = decide(
            &snap.rules,
            who.user(),
            who.is_admin(),
            room,
            self.default_access,
        );
        match who {
            Identity::User {
                read_only: true, ..
            } => access.without_write(),
            _ => access,
        }
    }

    /// `--default-access`.
    pub fn default_access(&self) -> Access {
        self.default_access
    }

    /// Whether `who` still holds after the last reload: its token,
    /// session or password is still valid.
    pub fn still_valid(&self, who: &Identity) -> bool {
        match who {
            Identity::Anonymous => true,
            Identity::User {
                name, credential, ..
            } => {
                let snap = self.snap();
                let Some(user) = snap.users.get(name) else {
                    return false;
                };
                match credential {
                    Credential::Token(h) => snap
                        .tokens
                        .get(h)
                        .is_some_and(|t| t.expires.is_none_or(|e| e > Timestamp::now())),
                    Credential::Session(h) => lock(&self.sessions).contains_key(h),
                    Credential::Password(phc) => *user.hash == **phc,
                }
            }
        }
    }

    /// The number of the last change.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Resolves once something changed after change number `seen`.
    pub async fn changed_after(&self, seen: u64) {
        loop {
            if self.version() != seen {
                return;
            }
            let listener = self.changed.listen();
            if self.version() != seen {
                return;
            }
            listener.await;
        }
    }
}
