//! Accounts in the SQLite file: users, tokens, access rules and browser
//! sessions, as the subcommands write them and the server reads them.
//!
//! Plain synchronous code over a `rusqlite::Connection` opened without the
//! one-server lock ([`crate::history::sqlite::open_shared`]), so a
//! subcommand can change accounts while the server runs on the same file.
//! Every change to users, tokens or rules bumps `auth_version` (triggers in
//! the schema); the server polls it and reloads a [`Snapshot`].

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

#[cfg(feature = "redis")]
use super::redis_store::RedisAccounts;
use super::rules::{Access, Pattern, Rule, Who};
use super::secret::SecretHash;
use crate::history::sqlite::{open_shared, StoreError};
use crate::message::{Timestamp, UserName};

/// A user account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Argon2id PHC string.
    pub hash: String,
    /// May do everything, also delete any message.
    pub admin: bool,
}

/// A token, as the server checks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// Its public id.
    pub id: String,
    /// Whose it is.
    pub user: UserName,
    /// Reads only, even where its user may write.
    pub read_only: bool,
    /// When it stops working, if ever.
    pub expires: Option<Timestamp>,
}

/// A token as `smolchat token list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    /// Its public id.
    pub id: String,
    /// Whose it is.
    pub user: String,
    /// What it is for, if said.
    pub label: Option<String>,
    /// Reads only.
    pub read_only: bool,
    /// When it was made.
    pub created: Timestamp,
    /// When it stops working, if ever.
    pub expires: Option<Timestamp>,
}

/// Everything the server needs to authenticate and authorize, read at once.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Users by name.
    pub users: HashMap<UserName, User>,
    /// Tokens by hash.
    pub tokens: HashMap<SecretHash, Token>,
    /// Access rules.
    pub rules: Vec<Rule>,
}

/// The accounts of one file, or of one Redis (`--redis`).
#[derive(Debug)]
pub struct AccountsDb {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Sqlite(Connection),
    #[cfg(feature = "redis")]
    Redis(Box<RedisAccounts>),
}

fn err(e: rusqlite::Error) -> StoreError {
    StoreError(e.to_string())
}

impl AccountsDb {
    /// Opens the file (creating and upgrading it if needed).
    pub fn open(path: &Path) -> Result<AccountsDb, StoreError> {
        Ok(AccountsDb {
            inner: Inner::Sqlite(open_shared(path)?),
        })
    }

    /// Opens the accounts kept in Redis at `url`.
    #[cfg(feature = "redis")]
    pub fn open_redis(url: &str) -> Result<AccountsDb, StoreError> {
        Ok(AccountsDb {
            inner: Inner::Redis(Box::new(RedisAccounts::open(url)?)),
        })
    }

    /// A build without the `redis` feature has no Redis to open.
    #[cfg(not(feature = "redis"))]
    pub fn open_redis(_url: &str) -> Result<AccountsDb, StoreError> {
        Err(StoreError(crate::history::NO_REDIS.into()))
    }

    fn conn(&self) -> &Connection {
        match &self.inner {
            Inner::Sqlite(c) => c,
            #[cfg(feature = "redis")]
            Inner::Redis(_) => unreachable!("Redis calls return before"),
        }
    }

    fn conn_mut(&mut self) -> &mut Connection {
        match &mut self.inner {
            Inner::Sqlite(c) => c,
            #[cfg(feature = "redis")]
            Inner::Redis(_) => unreachable!("Redis calls return before"),
        }
    }

    /// The change counter of users, tokens and rules.
    pub fn version(&mut self) -> Result<i64, StoreError> {
        #[cfg(feature = "redis")]
        if let Inner::Redis(r) = &mut self.inner {
            return r.version();
        }
        self.conn()
            .query_row("SELECT v FROM auth_version", [], |r| r.get(0))
            .map_err(err)
    }

    /// Adds a user; fails if the name is taken.
    pub fn add_user(&mut self, name: &UserName, hash: &str, admin: bool) -> Result<(), StoreError> {
        #[cfg(feature = "redis")]
        if let Inner::Redis(r) = &mut self.inner {
            return r.add_user(name, hash, admin);
        }
        let n = self
            .conn()
            .execute(
                "INSERT INTO users (name, hash, admin, created) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO NOTHING",
                params![name.as_str(), hash, admin, Timestamp::now().0],
            )
            .map_err(err)?;
        if n == 0 {
            return Err(StoreError(format!("user {name} already exists")));
        }
        Ok(())
    }

    /// Whether `name` is an account.
    pub fn has_user(&mut self, name: &UserName) -> Result<bool, StoreError> {
        #[cfg(feature = "redis")]
        if let Inner::Redis(r) = &mut self.inner {
            return r.has_user(name);
        }
        self.conn()
            .query_row(
                "SELECT 1 FROM users WHERE name = ?1",
                params![name.as_str()],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(err)
    }

    /// Deletes a user with their tokens, sessions and rules.
    pub fn delete_user(&mut self, name: &UserName) -> Result<(), StoreError> {
        #[cfg(feature = "redis")]
        if let Inner::Redis(r) = &mut self.inner {
            return r.delete_user(name);
        }
        let tx = self.conn_mut().transaction().map_err(err)?;
        let n = tx
            .execute("DELETE FROM users WHERE name = ?1", params![name.as_str()])
            .map_err(err)?;
        if n == 0 {
            return Err(StoreError(format!("no user {name}")));
        }
        for table in ["tokens", "sessions"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE user = ?1"),
                params![name.as_str()],
            )
            .map_err(err)?;
        }
        tx.execute("DELETE FROM rules WHERE who = ?1", params![name.as_str()])
            .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Sets a user's password hash; their browser sessions end.
    pub fn set_password(&mut self, name: &UserName, hash: &str) -> Result<(), StoreError> {
        #[cfg(feature = "redis")]
        if let Inner::Redis(r) = &mut self.inner {
            return r.set_password(name, hash);
        }
        let tx = self.conn_mut().transaction().map_err(err)?;
        let n = tx
            .execute(
                "UPDATE users SET hash = ?2 WHERE name = ?1",
                params![name.as_str(), hash],
            )
            .map_err(err)?;
        if n == 0 {
            return Err(StoreError(format!("no user {name}")));
        }
        tx.execute(
            "DELETE FROM sessions WHERE user = ?1",
            params![name.as_str()],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Every user: name, admin, created, number of tokens.
    pub fn users(&mut self) -> Result<Vec<(String, bool, Timestamp, u64)>, StoreError> {
        #[cfg(feature = "redis")]
        if let Inner::Redis(r) = &mut self.inner {
            return r.users();
        }
        let mut stmt = self
            .conn()
            .prepare(
                "SELECT name, admin, created, (SELECT count(*) FROM tokens t WHERE t.user = u.name)
                 FROM users u ORDER BY name",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    Timestamp(r.get(2)?),
                    r.get::<_, i64>(3)? as u64,
                ))
            })
            .and_then(|rows| rows.collect())
            .map_err(err)?;
        Ok(rows)
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
        #[cfg(feature = "redis")]
        if let Inner::Redis(r) = &mut self.inner {
            return r.add_token(user, hash, id, label, read_only, expires);
        }
        if !self.has_user(user)? {
            return Err(StoreError(format!("no user {user}")));
        }
        self.conn()
            .execute(
                "INSERT INTO tokens (id, user, hash, label, read_only, created, expires)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    id,
                    user.as_str(),
                    &hash[..],
                    label,
                    read_only,
                    Timestamp::now().0,
                    expires.map(|t| t.0)
                ],
            )
            .map_err(err)?;
        Ok(())
    }

    /// Every token (of `user`, if given).
    pub fn tokens(&mut self, user: Option<&UserName>) -> Result<Vec<TokenInfo>, StoreError> {
        #[cfg(feature = "redis")]
        if let Inner::Redis(r) = &mut self.inner {
            return r.tokens(user);
        }
        let mut stmt = self
            .conn()
            .prepare(
                "SELECT id, user, label, read_only, created, expires FROM tokens
                 WHERE ?1 IS NULL OR user = ?1 ORDER BY user, created",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map(params![user.map(UserName::as_str)], |r| {
                Ok(TokenInfo {
                    id: r.get(0)?,
                    user: r.get(1)?,
                    label: r.get(2)?,
                    read_only: r.get(3)?,
                    created: Timestamp(r.get(4)?),
                    expires: r.get::<_, Option<i64>>(5)?.map(Timestamp),
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(err)?;
        Ok(rows)
    }

    /// Removes a token by its id.
    pub fn remove_token(&mut self, id: &str) -> Result<(), StoreError> {
        #[cfg(feature = "redis")]
        if let Inner::Redis(r) = &mut self.inner {
            return r.remove_token(id);
        }
        let n = self
            .conn()
            .execute("DELETE FROM tokens WHERE id = ?1", params![id])
            .map_err(err)?;
        if n == 0 {
            return Err(StoreError(format!("no token {id}")));
        }
        Ok(())
    }

    /// Sets (or replaces) the rule for `who` on `pattern`.
    pub fn set_rule(
        &mut self,
        who: &Who,
        pattern: &Pattern,
        access: Access,
    ) -> Result<(), StoreError> {
        #[cfg(feature = "redis")]
        if let Inner::Redis(r) = &mut self.inner {
            return r.set_rule(who, pattern, access);
        }
        if let Who::User(u) = who {
            if !self.has_user(u)? {
                return Err(StoreError(format!("no user {u}")));
            }
        }
        self.conn()
            .execute(
                "INSERT INTO rules (who, pattern, access) VALUES (?1, ?2, ?3)
                 ON CONFLICT (who, pattern) DO UPDATE SET access = excluded.access",
                params![who.stored(), pattern.as_str(), access.short()],
            )
            .map_err(err)?;
        Ok(())
    }

    /// Every rule, by whom then pattern.
    pub fn rules(&mut self) -> Result<Vec<Rule>, StoreError> {
        #[cfg(feature = "redis")]
        if let Inner::Redis(r) = &mut self.inner {
            return r.rules();
        }
        rules_in(self.conn())
    }

    /// Deletes every rule; returns how many there were.
    pub fn reset_rules(&mut self) -> Result<usize, StoreError> {
        #[cfg(feature = "redis")]
        if let Inner::Redis(r) = &mut self.inner {
            return r.reset_rules();
        }
        self.conn().execute("DELETE FROM rules", []).map_err(err)
    }

    /// Everything the server needs, read in one transaction.
    pub fn snapshot(&mut self) -> Result<Snapshot, StoreError> {
        #[cfg(feature = "redis")]
        if let Inner::Redis(r) = &mut self.inner {
            return r.snapshot();
        }
        let tx = self.conn_mut().transaction().map_err(err)?;
        let mut snap = Snapshot::default();
        {
            let mut users = tx
                .prepare("SELECT name, hash, admin FROM users")
                .map_err(err)?;
            let rows: Vec<(String, String, bool)> = users
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .and_then(|rows| rows.collect())
                .map_err(err)?;
            for (name, hash, admin) in rows {
                if let Ok(name) = UserName::parse(&name) {
                    snap.users.insert(name, User { hash, admin });
                }
            }
            let mut tokens = tx
                .prepare("SELECT hash, id, user, read_only, expires FROM tokens")
                .map_err(err)?;
            type TokenRow = (Vec<u8>, String, String, bool, Option<i64>);
            let rows: Vec<TokenRow> = tokens
                .query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .and_then(|rows| rows.collect())
                .map_err(err)?;
            for (hash, id, user, read_only, expires) in rows {
                let (Ok(hash), Ok(user)) = (SecretHash::try_from(hash), UserName::parse(&user))
                else {
                    continue;
                };
                snap.tokens.insert(
                    hash,
                    Token {
                        id,
                        user,
                        read_only,
                        expires: expires.map(Timestamp),
                    },
                );
            }
        }
        // Rules in the same transaction: read after it, they could hold a
        // change made after a token the snapshot lacks.
        snap.rules = rules_in(&tx)?;
        tx.commit().map_err(err)?;
        Ok(snap)
    }

    /// Stores a browser session (its hash).
    pub fn add_session(
        &mut self,
        hash: &SecretHash,
        user: &UserName,
        expires: Timestamp,
    ) -> Result<(), StoreError> {
        #[cfg(feature = "redis")]
        if let Inner::Redis(r) = &mut self.inner {
            return r.add_session(hash, user, expires);
        }
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO sessions (hash, user, expires) VALUES (?1, ?2, ?3)",
                params![&hash[..], user.as_str(), expires.0],
            )
            .map_err(err)?;
        Ok(())
    }

    /// One session by its hash: whose, until when.
    pub fn session(
        &mut self,
        hash: &SecretHash,
    ) -> Result<Option<(UserName, Timestamp)>, StoreError> {
        #[cfg(feature = "redis")]
        if let Inner::Redis(r) = &mut self.inner {
            return r.session(hash);
        }
        let row: Option<(String, i64)> = self
            .conn()
            .query_row(
                "SELECT user, expires FROM sessions WHERE hash = ?1",
                params![&hash[..]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(err)?;
        Ok(row.and_then(|(u, e)| Some((UserName::parse(&u).ok()?, Timestamp(e)))))
    }

    /// Whether the accounts are in Redis, shared with other instances.
    pub fn is_shared(&self) -> bool {
        #[cfg(feature = "redis")]
        return matches!(self.inner, Inner::Redis(_));
        #[cfg(not(feature = "redis"))]
        false
    }

    /// Ends a browser session.
    pub fn remove_session(&mut self, hash: &SecretHash) -> Result<(), StoreError> {
        #[cfg(feature = "redis")]
        if let Inner::Redis(r) = &mut self.inner {
            return r.remove_session(hash);
        }
        self.conn()
            .execute("DELETE FROM sessions WHERE hash = ?1", params![&hash[..]])
            .map_err(err)?;
        Ok(())
    }

    /// Every session that has not expired by `now` (older ones are deleted).
    pub fn sessions(
        &mut self,
        now: Timestamp,
    ) -> Result<Vec<(SecretHash, UserName, Timestamp)>, StoreError> {
        #[cfg(feature = "redis")]
        if let Inner::Redis(r) = &mut self.inner {
            return r.sessions(now);
        }
        self.conn()
            .execute("DELETE FROM sessions WHERE expires <= ?1", params![now.0])
            .map_err(err)?;
        let mut stmt = self
            .conn()
            .prepare("SELECT hash, user, expires FROM sessions")
            .map_err(err)?;
        let rows: Vec<(Vec<u8>, String, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect())
            .map_err(err)?;
        Ok(rows
            .into_iter()
            .filter_map(|(hash, user, expires)| {
                Some((
                    SecretHash::try_from(hash).ok()?,
                    UserName::parse(&user).ok()?,
                    Timestamp(expires),
                ))
            })
            .collect())
    }
}

/// The access rules, most general first (`everyone` before named users).
fn rules_in(conn: &Connection) -> Result<Vec<Rule>, StoreError> {
    let mut stmt = conn
        .prepare("SELECT who, pattern, access FROM rules ORDER BY who = '*' DESC, who, pattern")
        .map_err(err)?;
    let rows: Vec<(String, String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .and_then(|rows| rows.collect())
        .map_err(err)?;
    Ok(parse_rules(rows))
}

/// Rules from stored `(who, pattern, access)` rows, in their order; a row
/// that no longer parses is skipped. Both stores keep rules this way.
pub(crate) fn parse_rules(rows: Vec<(String, String, String)>) -> Vec<Rule> {
    rows.into_iter()
        .filter_map(|(who, pattern, access)| {
            Some(Rule {
                who: Who::parse(&who).ok()?,
                pattern: Pattern::parse(&pattern).ok()?,
                access: Access::parse(&access)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("smolchat-acc-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("chat.db")
    }

    #[test]
    fn users_tokens_and_rules_round_trip_and_bump_the_version() {
        let path = temp("roundtrip");
        let mut db = AccountsDb::open(&path).unwrap();
        let ana = UserName::parse("ana").unwrap();
        let v0 = db.version().unwrap();
        db.add_user(&ana, "$argon2id$x", true).unwrap();
        assert!(db.add_user(&ana, "$argon2id$y", false).is_err(), "taken");
        let v1 = db.version().unwrap();
        assert!(v1 > v0);
        db.add_token(&ana, &[7; 32], "tok1", Some("ci"), true, None)
            .unwrap();
        db.set_rule(
            &Who::Everyone,
            &Pattern::parse("team-*").unwrap(),
            Access::ReadOnly,
        )
        .unwrap();
        db.set_rule(
            &Who::User(ana.clone()),
            &Pattern::parse("*").unwrap(),
            Access::Deny,
        )
        .unwrap();
        db.set_rule(
            &Who::User(ana.clone()),
            &Pattern::parse("*").unwrap(),
            Access::WriteOnly,
        )
        .unwrap();
        let snap = db.snapshot().unwrap();
        assert!(snap.users[&ana].admin);
        assert_eq!(snap.tokens[&[7; 32]].id, "tok1");
        assert_eq!(snap.rules.len(), 2, "the second rule replaced the first");
        assert!(db.version().unwrap() > v1);
        let bob = UserName::parse("bob").unwrap();
        assert!(db
            .add_token(&bob, &[8; 32], "t2", None, false, None)
            .is_err());
        db.delete_user(&ana).unwrap();
        let snap = db.snapshot().unwrap();
        assert!(snap.users.is_empty() && snap.tokens.is_empty());
        assert_eq!(snap.rules.len(), 1, "ana's rules went with her");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
