//! `smolchat export` and `smolchat import`: moving one SQLite box to Redis.
//!
//! `smolchat export --db FILE` writes every room, message, delete event,
//! user, token and rule as JSON lines on stdout; `smolchat import --redis
//! URL` reads them on stdin and writes them into Redis, keeping every id
//! (clients resume across the move with the `Last-Event-ID` they have),
//! every password hash and every token. Browser sessions are not moved:
//! people sign in again.
//!
//! ```text
//! smolchat export --db smolchat.db | smolchat import --redis redis://10.0.0.5:6379/0
//! ```

use std::io::{BufRead, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{failed, usage, Args, Failure};
#[cfg(feature = "redis")]
use crate::accounts::rules::{Access, Pattern, Who};
use crate::accounts::store::AccountsDb;
#[cfg(feature = "redis")]
use crate::history::redis::{del_key, log_key, room_key, ROOMS_KEY};
use crate::history::sqlite::ReadOnly;
use crate::history::Query;
use crate::message::{RoomName, Span};
#[cfg(feature = "redis")]
use crate::message::{Timestamp, UserName};
use crate::room::Committed;

/// One line of an export.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(super) enum Line {
    /// A room and its last id.
    Room { room: String, last_id: u64 },
    /// A message.
    Message {
        room: String,
        id: u64,
        user: String,
        text: String,
        time: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        spans: Option<Vec<Span>>,
        #[serde(default)]
        guest: bool,
        #[serde(default)]
        deleted: bool,
    },
    /// A delete event.
    Delete {
        room: String,
        id: u64,
        target: u64,
        by: String,
        time: i64,
    },
    /// An account, with its password hash.
    User {
        name: String,
        hash: String,
        admin: bool,
    },
    /// A token, by its hash (the token itself is never stored).
    Token {
        user: String,
        hash: String,
        id: String,
        #[serde(default)]
        label: Option<String>,
        #[serde(default)]
        read_only: bool,
        #[serde(default)]
        expires: Option<i64>,
    },
    /// An access rule.
    Rule {
        who: String,
        pattern: String,
        access: String,
    },
}

fn write_line(out: &mut dyn Write, line: &Line) -> Result<(), Failure> {
    let json = serde_json::to_string(line).map_err(failed)?;
    writeln!(out, "{json}").map_err(failed)
}

/// `smolchat export [--db FILE]`.
pub(super) fn export(args: &Args, db: &str, out: &mut dyn Write) -> Result<(), Failure> {
    args.only(&["db"])?;
    if !args.positional.is_empty() {
        return usage("usage: smolchat export [--db FILE] > export.jsonl");
    }
    let path = PathBuf::from(db);
    if !path.exists() {
        return Err(Failure::Failed(format!("no database {db}")));
    }
    let r = ReadOnly::open(&path).map_err(failed)?;
    for (room, last_id) in r.rooms().map_err(failed)? {
        write_line(
            out,
            &Line::Room {
                room: room.to_string(),
                last_id,
            },
        )?;
        let mut query = Some(Query::After {
            after: 0,
            upto: last_id,
            limit: usize::MAX,
        });
        while let Some(q) = query {
            let batch = r.read(&room, &q, 512).map_err(failed)?;
            for c in &batch.messages {
                write_line(out, &line_of(&room, c))?;
            }
            query = batch.next;
        }
    }
    let mut accounts = AccountsDb::open(&path).map_err(failed)?;
    let snap = accounts.snapshot().map_err(failed)?;
    let mut users: Vec<_> = snap.users.iter().collect();
    users.sort_by(|a, b| a.0.cmp(b.0));
    for (name, u) in users {
        write_line(
            out,
            &Line::User {
                name: name.to_string(),
                hash: u.hash.clone(),
                admin: u.admin,
            },
        )?;
    }
    let infos = accounts.tokens(None).map_err(failed)?;
    let mut tokens: Vec<_> = snap.tokens.iter().collect();
    tokens.sort_by(|a, b| a.1.id.cmp(&b.1.id));
    for (hash, t) in tokens {
        let label = infos
            .iter()
            .find(|i| i.id == t.id)
            .and_then(|i| i.label.clone());
        write_line(
            out,
            &Line::Token {
                user: t.user.to_string(),
                hash: hash.iter().map(|b| format!("{b:02x}")).collect(),
                id: t.id.clone(),
                label,
                read_only: t.read_only,
                expires: t.expires.map(|e| e.0),
            },
        )?;
    }
    for rule in accounts.rules().map_err(failed)? {
        write_line(
            out,
            &Line::Rule {
                who: rule.who.stored().to_string(),
                pattern: rule.pattern.as_str().to_string(),
                access: rule.access.short().to_string(),
            },
        )?;
    }
    Ok(())
}

fn line_of(room: &RoomName, c: &Committed) -> Line {
    match c {
        Committed::Message(m) => Line::Message {
            room: room.to_string(),
            id: m.id,
            user: m.user.to_string(),
            text: m.text.clone(),
            time: m.time.0,
            spans: m.spans.clone(),
            guest: m.guest,
            deleted: m.deleted,
        },
        Committed::Delete {
            id,
            time,
            target,
            by,
        } => Line::Delete {
            room: room.to_string(),
            id: *id,
            target: *target,
            by: by.to_string(),
            time: time.0,
        },
    }
}

/// `smolchat import` in a build without the `redis` feature.
#[cfg(not(feature = "redis"))]
pub(super) fn import(
    _args: &Args,
    _url: &str,
    _input: &mut dyn BufRead,
    _out: &mut dyn Write,
) -> Result<(), Failure> {
    Err(Failure::Failed(crate::history::NO_REDIS.into()))
}

/// `smolchat import --redis URL < export.jsonl`.
#[cfg(feature = "redis")]
pub(super) fn import(
    args: &Args,
    url: &str,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    args.only(&["redis"])?;
    if !args.positional.is_empty() {
        return usage("usage: smolchat import --redis URL < export.jsonl");
    }
    let client = redis::Client::open(url).map_err(failed)?;
    let mut conn = client
        .get_connection_with_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| Failure::Failed(format!("redis {url}: {e}")))?;
    let mut accounts = AccountsDb::open_redis(url).map_err(failed)?;
    let (mut rooms, mut messages, mut users, mut tokens, mut rules) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut pipe = redis::pipe();
    let mut pending = 0;
    let flush = |pipe: &mut redis::Pipeline,
                 pending: &mut usize,
                 conn: &mut redis::Connection|
     -> Result<(), Failure> {
        if *pending > 0 {
            pipe.query::<()>(conn).map_err(failed)?;
            *pipe = redis::pipe();
            *pending = 0;
        }
        Ok(())
    };
    for (n, line) in input.lines().enumerate() {
        let line = line.map_err(failed)?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(&line)
            .map_err(|e| Failure::Failed(format!("line {}: {e}", n + 1)))?;
        let room_of = |name: &str| {
            RoomName::parse(name).map_err(|e| Failure::Failed(format!("line {}: {e}", n + 1)))
        };
        match parsed {
            Line::Room { room, last_id } => {
                flush(&mut pipe, &mut pending, &mut conn)?;
                let room = room_of(&room)?;
                let exists: bool = redis::cmd("EXISTS")
                    .arg(room_key(&room))
                    .query(&mut conn)
                    .map_err(failed)?;
                if exists {
                    return Err(Failure::Failed(format!(
                        "room {room} is in Redis already: import into a Redis without it"
                    )));
                }
                pipe.cmd("HSET")
                    .arg(room_key(&room))
                    .arg("id")
                    .arg(last_id)
                    .arg("epoch")
                    .arg(format!("{:016x}", fastrand::u64(..)))
                    .ignore()
                    .cmd("ZADD")
                    .arg(ROOMS_KEY)
                    .arg(last_id)
                    .arg(room.as_str())
                    .ignore();
                pending += 1;
                rooms += 1;
            }
            Line::Message {
                room,
                id,
                user,
                text,
                time,
                spans,
                guest,
                deleted,
            } => {
                let room = room_of(&room)?;
                let spans = spans
                    .map(|s| serde_json::to_string(&s).unwrap_or_default())
                    .unwrap_or_default();
                pipe.cmd("XADD")
                    .arg(log_key(&room))
                    .arg(format!("{id}-0"))
                    .arg("k")
                    .arg("m")
                    .arg("ts")
                    .arg(time)
                    .arg("u")
                    .arg(&user)
                    .arg("x")
                    .arg(&text)
                    .arg("s")
                    .arg(spans)
                    .arg("g")
                    .arg(if guest { "1" } else { "0" })
                    .ignore();
                if deleted {
                    pipe.cmd("HSET")
                        .arg(del_key(&room))
                        .arg(id)
                        .arg("1")
                        .ignore();
                }
                pending += 1;
                messages += 1;
            }
            Line::Delete {
                room,
                id,
                target,
                by,
                time,
            } => {
                let room = room_of(&room)?;
                pipe.cmd("XADD")
                    .arg(log_key(&room))
                    .arg(format!("{id}-0"))
                    .arg("k")
                    .arg("d")
                    .arg("ts")
                    .arg(time)
                    .arg("tg")
                    .arg(target)
                    .arg("b")
                    .arg(&by)
                    .ignore()
                    .cmd("HSET")
                    .arg(del_key(&room))
                    .arg(target)
                    .arg("1")
                    .ignore();
                pending += 1;
                messages += 1;
            }
            Line::User { name, hash, admin } => {
                let name = UserName::parse(&name).map_err(|e| Failure::Failed(e.to_string()))?;
                accounts.add_user(&name, &hash, admin).map_err(failed)?;
                users += 1;
            }
            Line::Token {
                user,
                hash,
                id,
                label,
                read_only,
                expires,
            } => {
                let user = UserName::parse(&user).map_err(|e| Failure::Failed(e.to_string()))?;
                let bytes: Option<Vec<u8>> = (0..hash.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(hash.get(i..i + 2)?, 16).ok())
                    .collect();
                let hash = bytes
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| Failure::Failed(format!("line {}: bad token hash", n + 1)))?;
                accounts
                    .add_token(
                        &user,
                        &hash,
                        &id,
                        label.as_deref(),
                        read_only,
                        expires.map(Timestamp),
                    )
                    .map_err(failed)?;
                tokens += 1;
            }
            Line::Rule {
                who,
                pattern,
                access,
            } => {
                let who = Who::parse(&who).map_err(Failure::Failed)?;
                let pattern = Pattern::parse(&pattern).map_err(Failure::Failed)?;
                let access = Access::parse(&access)
                    .ok_or_else(|| Failure::Failed(format!("line {}: bad access", n + 1)))?;
                accounts.set_rule(&who, &pattern, access).map_err(failed)?;
                rules += 1;
            }
        }
        if pending >= 256 {
            flush(&mut pipe, &mut pending, &mut conn)?;
        }
    }
    flush(&mut pipe, &mut pending, &mut conn)?;
    let _ = writeln!(
        out,
        "imported {}, {messages} messages and delete events, {}, {}, {}",
        super::count(rooms, "room"),
        super::count(users, "user"),
        super::count(tokens, "token"),
        super::count(rules, "rule"),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_through_json() {
        let lines = [
            Line::Room {
                room: "k".into(),
                last_id: 3,
            },
            Line::Message {
                room: "k".into(),
                id: 1,
                user: "ana".into(),
                text: "hi".into(),
                time: 1_700_000_000,
                spans: None,
                guest: true,
                deleted: false,
            },
            Line::Delete {
                room: "k".into(),
                id: 3,
                target: 1,
                by: "ana".into(),
                time: 1_700_000_001,
            },
            Line::Rule {
                who: "*".into(),
                pattern: "team-*".into(),
                access: "ro".into(),
            },
        ];
        for l in lines {
            let json = serde_json::to_string(&l).unwrap();
            assert_eq!(serde_json::from_str::<Line>(&json).unwrap(), l, "{json}");
        }
        assert!(serde_json::to_string(&Line::Room {
            room: "k".into(),
            last_id: 3
        })
        .unwrap()
        .starts_with(r#"{"kind":"room""#));
    }
}
