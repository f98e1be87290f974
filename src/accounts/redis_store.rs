//! Accounts in Redis (`--redis`): the same users, tokens, rules and
//! sessions as in the SQLite file, shared by every instance, written by the
//! same subcommands (`smolchat user add --redis URL ...`).
//!
//! Four hashes, values in JSON, and a change counter every write bumps
//! (instances poll it, as they poll the file's):
//!
//! - `smolchat:users`: name → `{"hash","admin","created"}`
//! - `smolchat:tokens`: token hash (hex) → `{"id","user","label","read_only","created","expires"}`
//! - `smolchat:rules`: `who` NUL `pattern` → access (`rw`, `ro`, `wo`, `deny`)
//! - `smolchat:sessions`: session hash (hex) → `{"user","expires"}`
//! - `smolchat:auth_version`: the counter.
//!
//! Synchronous: the subcommands and the server's reload thread use it, and
//! the server's session writes run on the blocking pool.

use std::collections::HashMap;

use redis::{Client, Connection};
use serde::{Deserialize, Serialize};

use super::rules::{Access, Pattern, Rule, Who};
use super::secret::SecretHash;
use super::store::{parse_rules, Snapshot, Token, TokenInfo, User};
use crate::history::sqlite::StoreError;
use crate::message::{Timestamp, UserName};

const USERS: &str = "smolchat:users";
const TOKENS: &str = "smolchat:tokens";
const RULES: &str = "smolchat:rules";
const SESSIONS: &str = "smolchat:sessions";
const VERSION: &str = "smolchat:auth_version";

#[derive(Serialize, Deserialize)]
struct StoredUser {
    hash: String,
    admin: bool,
    created: i64,
}

#[derive(Serialize, Deserialize)]
struct StoredToken {
    id: String,
    user: String,
    label: Option<String>,
    read_only: bool,
    created: i64,
    expires: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct StoredSession {
    user: String,
    expires: i64,
}

fn hex(hash: &SecretHash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<SecretHash> {
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    SecretHash::try_from(bytes?).ok()
}

fn rule_field(who: &Who, pattern: &Pattern) -> String {
    format!("{}\0{}", who.stored(), pattern.as_str())
}

/// The accounts in one Redis.
pub struct RedisAccounts {
    client: Client,
    conn: Option<Connection>,
}

impl std::fmt::Debug for RedisAccounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAccounts").finish_non_exhaustive()
    }
}

fn err(e: redis::RedisError) -> StoreError {
    StoreError(format!("redis: {e}"))
}

impl RedisAccounts {
    /// A handle for `url`; connects on first use.
    pub fn open(url: &str) -> Result<RedisAccounts, StoreError> {
        Ok(RedisAccounts {
            client: Client::open(url).map_err(err)?,
            conn: None,
        })
    }

    /// Runs `f` on the connection, connecting first if needed; a failure
    /// drops the connection (the next call connects again).
    /// One `HSET` or `HDEL` of `field` in hash `key`, and the change
    /// counter bumped with it, atomically (the instances poll the counter).
    fn change(
        &mut self,
        cmd: &str,
        key: &str,
        field: String,
        value: Option<&str>,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            let mut p = redis::pipe();
            p.atomic().cmd(cmd).arg(key).arg(field);
            if let Some(v) = value {
                p.arg(v);
            }
            p.ignore().cmd("INCR").arg(VERSION).ignore().query::<()>(c)
        })
    }

    fn with<T>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        if self.conn.is_none() {
            let c = self
                .client
                .get_connection_with_timeout(std::time::Duration::from_secs(2))
                .map_err(err)?;
            c.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .map_err(err)?;
            self.conn = Some(c);
        }
        let conn = self.conn.as_mut().expect("connected above");
        f(conn).map_err(|e| {
            self.conn = None;
            err(e)
        })
    }

    /// The change counter.
    pub fn version(&mut self) -> Result<i64, StoreError> {
        self.with(|c| {
            redis::cmd("GET")
                .arg(VERSION)
                .query::<Option<i64>>(c)
                .map(|v| v.unwrap_or(0))
        })
    }

    fn user(&mut self, name: &UserName) -> Result<Option<StoredUser>, StoreError> {
        let json: Option<String> =
            self.with(|c| redis::cmd("HGET").arg(USERS).arg(name.as_str()).query(c))?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    /// Adds a user; fails if the name is taken.
    pub fn add_user(&mut self, name: &UserName, hash: &str, admin: bool) -> Result<(), StoreError> {
        let json = serde_json::to_string(&StoredUser {
            hash: hash.to_string(),
            admin,
            created: Timestamp::now().0,
        })
        .map_err(|e| StoreError(e.to_string()))?;
        let added: bool = self.with(|c| {
            let (added,): (bool,) = redis::pipe()
                .atomic()
                .cmd("HSETNX")
                .arg(USERS)
                .arg(name.as_str())
                .arg(&json)
                .cmd("INCR")
                .arg(VERSION)
                .ignore()
                .query(c)?;
            Ok(added)
        })?;
        if !added {
            return Err(StoreError(format!("user {name} already exists")));
        }
        Ok(())
    }

    /// Whether `name` is an account.
    pub fn has_user(&mut self, name: &UserName) -> Result<bool, StoreError> {
        self.with(|c| redis::cmd("HEXISTS").arg(USERS).arg(name.as_str()).query(c))
    }

    /// Fields of `hash` whose JSON value names `user`.
    fn fields_of(&mut self, hash: &str, user: &UserName) -> Result<Vec<String>, StoreError> {
        #[derive(Deserialize)]
        struct Owner {
            user: String,
        }
        let all: HashMap<String, String> =
            self.with(|c| redis::cmd("HGETALL").arg(hash).query(c))?;
        Ok(all
            .into_iter()
            .filter(|(_, v)| {
                serde_json::from_str::<Owner>(v).is_ok_and(|o| o.user == user.as_str())
            })
            .map(|(k, _)| k)
            .collect())
    }

    /// Deletes a user with their tokens, sessions and rules.
    pub fn delete_user(&mut self, name: &UserName) -> Result<(), StoreError> {
        if !self.has_user(name)? {
            return Err(StoreError(format!("no user {name}")));
        }
        let tokens = self.fields_of(TOKENS, name)?;
        let sessions = self.fields_of(SESSIONS, name)?;
        let rules: Vec<String> = self
            .with(|c| redis::cmd("HKEYS").arg(RULES).query::<Vec<String>>(c))?
            .into_iter()
            .filter(|k| k.split('\0').next() == Some(name.as_str()))
            .collect();
        self.with(|c| {
            let mut p = redis::pipe();
            p.atomic()
                .cmd("HDEL")
                .arg(USERS)
                .arg(name.as_str())
                .ignore();
            for (hash, fields) in [(TOKENS, &tokens), (SESSIONS, &sessions), (RULES, &rules)] {
                if !fields.is_empty() {
                    p.cmd("HDEL").arg(hash).arg(fields).ignore();
                }
            }
            p.cmd("INCR").arg(VERSION).ignore();
            p.query::<()>(c)
        })
    }

    /// Sets a user's password hash; their browser sessions end.
    pub fn set_password(&mut self, name: &UserName, hash: &str) -> Result<(), StoreError> {
        let Some(mut user) = self.user(name)? else {
            return Err(StoreError(format!("no user {name}")));
        };
        user.hash = hash.to_string();
        let json = serde_json::to_string(&user).map_err(|e| StoreError(e.to_string()))?;
        let sessions = self.fields_of(SESSIONS, name)?;
        self.with(|c| {
            let mut p = redis::pipe();
            p.atomic()
                .cmd("HSET")
                .arg(USERS)
                .arg(name.as_str())
                .arg(&json)
                .ignore();
            if !sessions.is_empty() {
                p.cmd("HDEL").arg(SESSIONS).arg(&sessions).ignore();
            }
            p.cmd("INCR").arg(VERSION).ignore();
            p.query::<()>(c)
        })
    }

    /// Every user: name, admin, created, number of tokens.
    pub fn users(&mut self) -> Result<Vec<(String, bool, Timestamp, u64)>, StoreError> {
        let users: HashMap<String, String> =
            self.with(|c| redis::cmd("HGETALL").arg(USERS).query(c))?;
        let tokens = self.tokens(None)?;
        let mut out: Vec<(String, bool, Timestamp, u64)> = users
            .into_iter()
            .filter_map(|(name, json)| {
                let u: StoredUser = serde_json::from_str(&json).ok()?;
                let n = tokens.iter().filter(|t| t.user == name).count() as u64;
                Some((name, u.admin, Timestamp(u.created), n))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Stores a token (its hash) for `user`.
    pub fn add_token(
        &mut self,
        user: &UserName,
        hash: &SecretHash,
        id: &str,
        label: Option<&str>,
        read_only: bool,
        expires: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        if !self.has_user(user)? {
            return Err(StoreError(format!("no user {user}")));
        }
        let json = serde_json::to_string(&StoredToken {
            id: id.to_string(),
            user: user.as_str().to_string(),
            label: label.map(str::to_string),
            read_only,
            created: Timestamp::now().0,
            expires: expires.map(|t| t.0),
        })
        .map_err(|e| StoreError(e.to_string()))?;
        self.change("HSET", TOKENS, hex(hash), Some(&json))
    }

    fn all_tokens(&mut self) -> Result<Vec<(SecretHash, StoredToken)>, StoreError> {
        let all: HashMap<String, String> =
            self.with(|c| redis::cmd("HGETALL").arg(TOKENS).query(c))?;
        Ok(all
            .into_iter()
            .filter_map(|(h, json)| Some((unhex(&h)?, serde_json::from_str(&json).ok()?)))
            .collect())
    }

    /// Every token (of `user`, if given).
    pub fn tokens(&mut self, user: Option<&UserName>) -> Result<Vec<TokenInfo>, StoreError> {
        let mut out: Vec<TokenInfo> = self
            .all_tokens()?
            .into_iter()
            .filter(|(_, t)| user.is_none_or(|u| u.as_str() == t.user))
            .map(|(_, t)| TokenInfo {
                id: t.id,
                user: t.user,
                label: t.label,
                read_only: t.read_only,
                created: Timestamp(t.created),
                expires: t.expires.map(Timestamp),
            })
            .collect();
        out.sort_by(|a, b| (&a.user, a.created, &a.id).cmp(&(&b.user, b.created, &b.id)));
        Ok(out)
    }

    /// Removes a token by its id.
    pub fn remove_token(&mut self, id: &str) -> Result<(), StoreError> {
        let Some((hash, _)) = self.all_tokens()?.into_iter().find(|(_, t)| t.id == id) else {
            return Err(StoreError(format!("no token {id}")));
        };
        self.change("HDEL", TOKENS, hex(&hash), None)
    }

    /// Sets (or replaces) the rule for `who` on `pattern`.
    pub fn set_rule(
        &mut self,
        who: &Who,
        pattern: &Pattern,
        access: Access,
    ) -> Result<(), StoreError> {
        if let Who::User(u) = who {
            if !self.has_user(u)? {
                return Err(StoreError(format!("no user {u}")));
            }
        }
        self.change(
            "HSET",
            RULES,
            rule_field(who, pattern),
            Some(access.short()),
        )
    }

    /// Every rule, everyone's first, then by whom and pattern (as SQLite
    /// orders them).
    pub fn rules(&mut self) -> Result<Vec<Rule>, StoreError> {
        let all: HashMap<String, String> =
            self.with(|c| redis::cmd("HGETALL").arg(RULES).query(c))?;
        let mut rows: Vec<(String, String, String)> = all
            .into_iter()
            .filter_map(|(k, access)| {
                let (who, pattern) = k.split_once('\0')?;
                Some((who.to_string(), pattern.to_string(), access))
            })
            .collect();
        rows.sort_by(|a, b| ((a.0 != "*"), &a.0, &a.1).cmp(&((b.0 != "*"), &b.0, &b.1)));
        Ok(parse_rules(rows))
    }

    /// Deletes every rule; returns how many there were.
    pub fn reset_rules(&mut self) -> Result<usize, StoreError> {
        self.with(|c| {
            let (n, _): (usize, i64) = redis::pipe()
                .atomic()
                .cmd("HLEN")
                .arg(RULES)
                .cmd("DEL")
                .arg(RULES)
                .ignore()
                .cmd("INCR")
                .arg(VERSION)
                .query(c)?;
            Ok(n)
        })
    }

    /// Everything the server needs.
    pub fn snapshot(&mut self) -> Result<Snapshot, StoreError> {
        let mut snap = Snapshot::default();
        let users: HashMap<String, String> =
            self.with(|c| redis::cmd("HGETALL").arg(USERS).query(c))?;
        for (name, json) in users {
            let (Ok(name), Ok(u)) = (
                UserName::parse(&name),
                serde_json::from_str::<StoredUser>(&json),
            ) else {
                continue;
            };
            snap.users.insert(
                name,
                User {
                    hash: u.hash,
                    admin: u.admin,
                },
            );
        }
        for (hash, t) in self.all_tokens()? {
            let Ok(user) = UserName::parse(&t.user) else {
                continue;
            };
            snap.tokens.insert(
                hash,
                Token {
                    id: t.id,
                    user,
                    read_only: t.read_only,
                    expires: t.expires.map(Timestamp),
                },
            );
        }
        snap.rules = self.rules()?;
        Ok(snap)
    }

    /// Stores a browser session (its hash).
    pub fn add_session(
        &mut self,
        hash: &SecretHash,
        user: &UserName,
        expires: Timestamp,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(&StoredSession {
            user: user.as_str().to_string(),
            expires: expires.0,
        })
        .map_err(|e| StoreError(e.to_string()))?;
        self.change("HSET", SESSIONS, hex(hash), Some(&json))
    }

    /// Ends a browser session.
    pub fn remove_session(&mut self, hash: &SecretHash) -> Result<(), StoreError> {
        self.change("HDEL", SESSIONS, hex(hash), None)
    }

    /// One session by its hash: whose, until when.
    pub fn session(
        &mut self,
        hash: &SecretHash,
    ) -> Result<Option<(UserName, Timestamp)>, StoreError> {
        let json: Option<String> =
            self.with(|c| redis::cmd("HGET").arg(SESSIONS).arg(hex(hash)).query(c))?;
        Ok(json
            .and_then(|j| serde_json::from_str::<StoredSession>(&j).ok())
            .and_then(|s| Some((UserName::parse(&s.user).ok()?, Timestamp(s.expires)))))
    }

    /// Every session that has not expired by `now` (older ones are deleted).
    pub fn sessions(
        &mut self,
        now: Timestamp,
    ) -> Result<Vec<(SecretHash, UserName, Timestamp)>, StoreError> {
        let all: HashMap<String, String> =
            self.with(|c| redis::cmd("HGETALL").arg(SESSIONS).query(c))?;
        let mut live = Vec::new();
        let mut expired = Vec::new();
        for (h, json) in all {
            let parsed = unhex(&h).zip(serde_json::from_str::<StoredSession>(&json).ok());
            match parsed {
                Some((hash, s)) if s.expires > now.0 => {
                    if let Ok(user) = UserName::parse(&s.user) {
                        live.push((hash, user, Timestamp(s.expires)));
                    }
                }
                _ => expired.push(h),
            }
        }
        if !expired.is_empty() {
            self.with(|c| {
                redis::cmd("HDEL")
                    .arg(SESSIONS)
                    .arg(&expired)
                    .query::<()>(c)
            })?;
        }
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_round_trip_through_hex() {
        let h: SecretHash = std::array::from_fn(|i| (i * 7) as u8);
        assert_eq!(unhex(&hex(&h)), Some(h));
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("00"), None);
    }
}
