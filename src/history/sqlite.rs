//! The SQLite file behind durable history: schema, migrations, loading at
//! start, and writing a batch of messages in one transaction.
//!
//! Plain synchronous code over a `rusqlite::Connection`; only the writer
//! thread ([`super::writer`]) and start-up call it, never the async
//! executor. Settings, and why:
//!
//! - WAL journal: a commit is one append (plus an fsync with
//!   `synchronous=FULL`), readers never block the writer, and a crash
//!   leaves the file consistent.
//! - An advisory `flock` on the file: a second smolchat on the same file
//!   fails at start instead of handing out the same ids. SQLite's own
//!   locking stays normal, so the `sqlite3` shell can read the file while
//!   smolchat runs (SQLite uses `fcntl` locks, which `flock` does not touch).
//! - A `rooms` table keeps each room's last id, so ids keep increasing even
//!   when retention has deleted every message of a room.
//! - `PRAGMA user_version` numbers the schema; [`MIGRATIONS`] upgrades
//!   older files in order and a newer file is refused.

use std::fmt;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::Query;
use crate::message::{Message, RoomName, Span, Timestamp, UserName};
use crate::room::Committed;

/// Schema migrations; entry `i` takes `user_version` from `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE rooms (
        name    TEXT PRIMARY KEY,
        last_id INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE messages (
        room  TEXT    NOT NULL,
        id    INTEGER NOT NULL,
        user  TEXT    NOT NULL,
        text  TEXT    NOT NULL,
        spans TEXT,
        time  INTEGER NOT NULL,
        PRIMARY KEY (room, id)
    ) WITHOUT ROWID;
",
    "
    -- Accounts, tokens and access rules (written by `smolchat user`,
    -- `token` and `access`, also while a server runs on the file), and
    -- browser sessions (written by the server).
    CREATE TABLE users (
        name    TEXT PRIMARY KEY,
        hash    TEXT NOT NULL,
        admin   INTEGER NOT NULL DEFAULT 0,
        created INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE tokens (
        id        TEXT PRIMARY KEY,
        user      TEXT NOT NULL,
        hash      BLOB NOT NULL UNIQUE,
        label     TEXT,
        read_only INTEGER NOT NULL DEFAULT 0,
        created   INTEGER NOT NULL,
        expires   INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE rules (
        who     TEXT NOT NULL,
        pattern TEXT NOT NULL,
        access  TEXT NOT NULL,
        PRIMARY KEY (who, pattern)
    ) WITHOUT ROWID;
    CREATE TABLE sessions (
        hash    BLOB PRIMARY KEY,
        user    TEXT NOT NULL,
        expires INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- Bumped by every change to users, tokens and rules: a running server
    -- polls it to see changes made by the subcommands.
    CREATE TABLE auth_version (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        v  INTEGER NOT NULL
    );
    INSERT INTO auth_version VALUES (0, 0);
    CREATE TRIGGER users_ins AFTER INSERT ON users BEGIN UPDATE auth_version SET v = v + 1; END;
    CREATE TRIGGER users_upd AFTER UPDATE ON users BEGIN UPDATE auth_version SET v = v + 1; END;
    CREATE TRIGGER users_del AFTER DELETE ON users BEGIN UPDATE auth_version SET v = v + 1; END;
    CREATE TRIGGER tokens_ins AFTER INSERT ON tokens BEGIN UPDATE auth_version SET v = v + 1; END;
    CREATE TRIGGER tokens_upd AFTER UPDATE ON tokens BEGIN UPDATE auth_version SET v = v + 1; END;
    CREATE TRIGGER tokens_del AFTER DELETE ON tokens BEGIN UPDATE auth_version SET v = v + 1; END;
    CREATE TRIGGER rules_ins AFTER INSERT ON rules BEGIN UPDATE auth_version SET v = v + 1; END;
    CREATE TRIGGER rules_upd AFTER UPDATE ON rules BEGIN UPDATE auth_version SET v = v + 1; END;
    CREATE TRIGGER rules_del AFTER DELETE ON rules BEGIN UPDATE auth_version SET v = v + 1; END;
    -- Messages posted without an account where accounts exist, deleted
    -- messages (their text gone), and delete events (which take the next
    -- id of the room, so a client that resumes gets them).
    ALTER TABLE messages ADD COLUMN guest INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN target INTEGER;
",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// What `--sync` maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// `synchronous=FULL`: every commit is fsynced before the 201.
    #[default]
    Full,
    /// `synchronous=NORMAL`: commits survive a crash of smolchat, but the
    /// last ones may be lost if the board loses power.
    Normal,
}

impl SyncMode {
    /// Parses `full` or `normal`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Some(SyncMode::Full),
            "normal" => Some(SyncMode::Normal),
            _ => None,
        }
    }
}

/// A database error, with the file it concerns; one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

/// How much history to keep.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// Messages kept per room.
    pub keep: usize,
    /// Messages older than this are deleted, if set.
    pub cutoff: Option<Timestamp>,
}

/// One room as read from the file when it is first used.
#[derive(Debug)]
pub struct LoadedRoom {
    /// The room.
    pub name: RoomName,
    /// Its last id ever used.
    pub last_id: u64,
    /// Its newest messages, oldest first, with consecutive ids ending at
    /// `last_id` (or empty).
    pub messages: Vec<Committed>,
    /// Whether `messages` is every message the file holds for the room.
    pub complete: bool,
}

/// An open history file.
#[derive(Debug)]
pub struct Db {
    conn: Connection,
    path: PathBuf,
    /// Holds the `flock` (one server per file) for as long as the server's
    /// database is open; `None` for the subcommands' connections.
    _lock: Option<std::fs::File>,
}

/// Opens (creating if needed) and upgrades the file for reading and
/// writing, without the one-server lock: for the subcommands (`smolchat
/// user`, `token`, `access`), which may run while a server uses the file.
/// SQLite's own locking (with a busy timeout) keeps their writes safe.
pub fn open_shared(path: &Path) -> Result<Connection, StoreError> {
    let mut db = Db::open_unlocked(path, SyncMode::Full)?;
    // A person waits for a busy server's commit; a second is not much.
    db.conn
        .busy_timeout(BUSY_SUBCOMMAND)
        .map_err(|e| db.err(e))?;
    db.migrate()?;
    Ok(db.conn)
}

/// How long the server's connections wait for a lock another connection
/// holds (a subcommand's write, the reader's snapshot) before failing:
/// they run on their own threads, so waiting blocks no connection.
const BUSY_SERVER: std::time::Duration = std::time::Duration::from_secs(5);
/// The same for a subcommand.
const BUSY_SUBCOMMAND: std::time::Duration = std::time::Duration::from_secs(15);

impl Db {
    /// Opens (creating if needed) and upgrades the file, and checks that it
    /// can be written. Takes the one-server lock.
    pub fn open(path: &Path, sync: SyncMode) -> Result<Db, StoreError> {
        let mut db = Db::open_unlocked(path, sync)?;
        let lock = std::fs::File::open(path)
            .map_err(|e| StoreError(format!("database {}: {e}", path.display())))?;
        if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            return Err(StoreError(format!(
                "database {}: in use by another smolchat",
                path.display()
            )));
        }
        db._lock = Some(lock);
        db.migrate()?;
        Ok(db)
    }

    fn open_unlocked(path: &Path, sync: SyncMode) -> Result<Db, StoreError> {
        let ctx = |e: rusqlite::Error| {
            StoreError(format!("database {}: {}", path.display(), explain(&e)))
        };
        if path.is_dir() {
            return Err(StoreError(format!(
                "database {}: is a directory; give a file path",
                path.display()
            )));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(ctx)?;
        conn.busy_timeout(BUSY_SERVER).map_err(ctx)?;
        // The first real read: a file that is not SQLite fails here.
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(ctx)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError(format!(
                "database {}: cannot use WAL journal mode ({mode})",
                path.display()
            )));
        }
        let level = match sync {
            SyncMode::Full => "FULL",
            SyncMode::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", level)
            .map_err(ctx)?;
        Ok(Db {
            conn,
            path: path.to_path_buf(),
            _lock: None,
        })
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        StoreError(format!("database {}: {}", self.path.display(), explain(&e)))
    }

    /// Brings the schema to [`SCHEMA_VERSION`]. Always writes the header,
    /// so a read-only file or folder is found at start, not at the first post.
    fn migrate(&mut self) -> Result<(), StoreError> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let version = usize::try_from(version).unwrap_or(usize::MAX);
        if version > SCHEMA_VERSION {
            return Err(StoreError(format!(
                "database {}: schema version {version} is newer than this smolchat understands ({SCHEMA_VERSION}); use a newer smolchat",
                self.path.display()
            )));
        }
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(|e| StoreError(format!("database {}: {}", path.display(), explain(&e))))?;
        let ctx = |e: rusqlite::Error| {
            StoreError(format!("database {}: {}", path.display(), explain(&e)))
        };
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            tx.execute_batch(sql).map_err(ctx)?;
            log::info!(
                "database {}: schema upgraded to version {}",
                path.display(),
                i + 1
            );
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION as i64)
            .map_err(ctx)?;
        tx.commit().map_err(ctx)
    }

    /// Writes `changes` (consecutive ids per room, in id order): messages,
    /// and deletions (the message loses its text, and a delete event takes
    /// its id), with the rooms' last ids and retention for the rooms
    /// touched, in one transaction. Nothing is written if any step fails.
    pub fn write(
        &mut self,
        changes: &[(&RoomName, &Committed)],
        retention: Retention,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let ctx = |e: rusqlite::Error| {
            StoreError(format!("database {}: {}", path.display(), explain(&e)))
        };
        let tx = self.conn.transaction().map_err(ctx)?;
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO messages (room, id, user, text, spans, time, guest, target) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
                .map_err(ctx)?;
            let mut erase = tx
                .prepare_cached("UPDATE messages SET text = '', spans = NULL, deleted = 1 WHERE room = ?1 AND id = ?2 AND target IS NULL")
                .map_err(ctx)?;
            for (room, change) in changes {
                match change {
                    Committed::Message(m) => {
                        let spans = m
                            .spans
                            .as_ref()
                            .map(|s| serde_json::to_string(s).unwrap_or_default());
                        insert
                            .execute(params![
                                room.as_str(),
                                m.id as i64,
                                m.user.as_str(),
                                m.text,
                                spans,
                                m.time.0,
                                m.guest,
                                None::<i64>
                            ])
                            .map_err(ctx)?;
                    }
                    Committed::Delete {
                        id,
                        time,
                        target,
                        by,
                    } => {
                        erase
                            .execute(params![room.as_str(), *target as i64])
                            .map_err(ctx)?;
                        insert
                            .execute(params![
                                room.as_str(),
                                *id as i64,
                                by.as_str(),
                                "",
                                None::<String>,
                                time.0,
                                false,
                                Some(*target as i64)
                            ])
                            .map_err(ctx)?;
                    }
                }
            }
            let mut last = tx
                .prepare_cached(
                    "INSERT INTO rooms (name, last_id) VALUES (?1, ?2)
                     ON CONFLICT (name) DO UPDATE SET last_id = max(last_id, excluded.last_id)",
                )
                .map_err(ctx)?;
            let mut trim = tx
                .prepare_cached("DELETE FROM messages WHERE room = ?1 AND id <= ?2")
                .map_err(ctx)?;
            let mut age = tx
                .prepare_cached("DELETE FROM messages WHERE room = ?1 AND time < ?2")
                .map_err(ctx)?;
            // The last id of each room in the batch.
            let mut seen: Vec<(&RoomName, u64)> = Vec::new();
            for (room, change) in changes {
                let id = change.id();
                match seen.iter_mut().find(|(r, _)| r == room) {
                    Some(entry) => entry.1 = entry.1.max(id),
                    None => seen.push((room, id)),
                }
            }
            for (room, last_id) in seen {
                last.execute(params![room.as_str(), last_id as i64])
                    .map_err(ctx)?;
                let floor = last_id.saturating_sub(retention.keep as u64);
                if floor > 0 {
                    trim.execute(params![room.as_str(), floor as i64])
                        .map_err(ctx)?;
                }
                if let Some(cutoff) = retention.cutoff {
                    age.execute(params![room.as_str(), cutoff.0]).map_err(ctx)?;
                }
            }
        }
        tx.commit().map_err(ctx)
    }

    /// Deletes messages older than `cutoff` in every room; returns how many.
    pub fn prune_older_than(&mut self, cutoff: Timestamp) -> Result<usize, StoreError> {
        self.conn
            .execute("DELETE FROM messages WHERE time < ?1", params![cutoff.0])
            .map_err(|e| self.err(e))
    }

    /// Moves the WAL into the main file and truncates it (at shutdown).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .map_err(|e| self.err(e))
    }
}

/// One batch of a read: what it found, the oldest id the file holds for
/// the room (for the `gap` rule), and the query for the rest, if more is
/// left. Reads come in batches so what one request holds at once is
/// bounded, however many messages it asked for.
#[derive(Debug, PartialEq, Eq)]
pub struct Batch {
    /// Messages and delete events, oldest first.
    pub messages: Vec<Committed>,
    /// The oldest id held.
    pub first_held: Option<u64>,
    /// What is left to read.
    pub next: Option<Query>,
}

/// A read-only connection to the file: the reader thread's. WAL lets it
/// read while the writer thread commits; each query sees the file as of
/// its start, so every message it returns was committed.
#[derive(Debug)]
pub struct ReadOnly {
    conn: Connection,
    path: PathBuf,
}

/// Columns of a message row, in the order the queries below select them:
/// id, user, text, spans, time, guest, deleted, target (a delete event's).
type Row = (
    i64,
    String,
    String,
    Option<String>,
    i64,
    bool,
    bool,
    Option<i64>,
);

/// The columns [`Row`] reads.
const COLUMNS: &str = "id, user, text, spans, time, guest, deleted, target";

impl ReadOnly {
    /// Opens `path` for reading; it must exist (the writer creates it).
    pub fn open(path: &Path) -> Result<ReadOnly, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| StoreError(format!("database {}: {}", path.display(), explain(&e))))?;
        conn.busy_timeout(BUSY_SERVER)
            .map_err(|e| StoreError(format!("database {}: {}", path.display(), explain(&e))))?;
        Ok(ReadOnly {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        StoreError(format!("database {}: {}", self.path.display(), explain(&e)))
    }

    /// Every room in the file with its last id, by name.
    pub fn rooms(&self) -> Result<Vec<(RoomName, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, last_id FROM rooms ORDER BY name")
            .map_err(|e| self.err(e))?;
        let rows: Vec<(String, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .filter_map(|(name, last)| {
                let room = RoomName::parse(&name).ok()?;
                Some((room, u64::try_from(last).unwrap_or(0)))
            })
            .collect())
    }

    /// A room's last id and newest `n` messages, or `None` if the file has
    /// never seen it.
    pub fn room(&self, name: &RoomName, n: usize) -> Result<Option<LoadedRoom>, StoreError> {
        let last_id: Option<i64> = self
            .conn
            .prepare_cached("SELECT last_id FROM rooms WHERE name = ?1")
            .and_then(|mut s| {
                s.query_row(params![name.as_str()], |r| r.get(0))
                    .map(Some)
                    .or_else(|e| match e {
                        rusqlite::Error::QueryReturnedNoRows => Ok(None),
                        e => Err(e),
                    })
            })
            .map_err(|e| self.err(e))?;
        let Some(last_id) = last_id else {
            return Ok(None);
        };
        let last_id = u64::try_from(last_id).unwrap_or(0);
        // One more than asked: whether there is more tells `complete`.
        let rows = self.rows(
            &format!("SELECT {COLUMNS} FROM messages WHERE room = ?1 ORDER BY id DESC LIMIT ?2"),
            params![name.as_str(), clamp(n.saturating_add(1))],
        )?;
        let total = rows.len();
        // Newest first; keep the run of consecutive ids ending at last_id,
        // so the in-memory window can index by id.
        let mut messages = Vec::new();
        let mut expect = last_id;
        for row in rows.into_iter().take(n) {
            if u64::try_from(row.0).ok() != Some(expect) || expect == 0 {
                break;
            }
            messages.push(stored(name, row));
            expect -= 1;
        }
        messages.reverse();
        let complete = total <= n && messages.len() == total;
        Ok(Some(LoadedRoom {
            name: name.clone(),
            last_id,
            messages,
            complete,
        }))
    }

    /// The messages `query` asks for, oldest first, and the oldest id the
    /// file holds for the room (for the `gap` rule).
    pub fn read(&self, name: &RoomName, query: &Query, batch: usize) -> Result<Batch, StoreError> {
        // The newest n: find where they start, then read forward like the rest.
        let (after, upto, limit) = match *query {
            Query::After { after, upto, limit } => (after, upto, limit),
            Query::Newest { upto, n } => {
                let start: Option<i64> = self
                    .conn
                    .prepare_cached(
                        "SELECT id FROM messages WHERE room = ?1 AND id <= ?2 ORDER BY id DESC LIMIT 1 OFFSET ?3",
                    )
                    .and_then(|mut s| {
                        s.query_row(
                            params![name.as_str(), clamp_u64(upto), clamp(n.saturating_sub(1))],
                            |r| r.get(0),
                        )
                        .optional()
                    })
                    .map_err(|e| self.err(e))?;
                let after = start.map_or(0, |s| u64::try_from(s).unwrap_or(1).saturating_sub(1));
                (after, upto, n)
            }
        };
        let take = limit.min(batch.max(1));
        let rows = self.rows(
            &format!("SELECT {COLUMNS} FROM messages WHERE room = ?1 AND id > ?2 AND id <= ?3 ORDER BY id LIMIT ?4"),
            params![name.as_str(), clamp_u64(after), clamp_u64(upto), clamp(take)],
        )?;
        let first: Option<i64> = self
            .conn
            .prepare_cached("SELECT min(id) FROM messages WHERE room = ?1")
            .and_then(|mut s| s.query_row(params![name.as_str()], |r| r.get(0)))
            .map_err(|e| self.err(e))?;
        let next = match rows.last() {
            Some(last) if rows.len() == take && limit > take => Some(Query::After {
                after: u64::try_from(last.0).unwrap_or(u64::MAX),
                upto,
                limit: limit - take,
            }),
            _ => None,
        };
        Ok(Batch {
            messages: rows.into_iter().map(|row| stored(name, row)).collect(),
            first_held: first.and_then(|f| u64::try_from(f).ok()),
            next,
        })
    }

    fn rows(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Row>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        stmt.query_map(params, |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }
}

/// A stored row as a message of `room`. Names and spans were valid when
/// written; a file edited by hand gets `anonymous` and no spans rather than
/// an error.
/// A stored row: a message, or (with a target) a delete event.
fn stored(room: &RoomName, row: Row) -> Committed {
    match row.7 {
        Some(target) => Committed::Delete {
            id: u64::try_from(row.0).unwrap_or(0),
            time: Timestamp(row.4),
            target: u64::try_from(target).unwrap_or(0),
            by: UserName::parse(&row.1).unwrap_or_else(|_| UserName::anonymous()),
        },
        None => Committed::Message(message(room, row)),
    }
}

fn message(room: &RoomName, (id, user, text, spans, time, guest, deleted, _): Row) -> Message {
    Message {
        id: u64::try_from(id).unwrap_or(0),
        room: room.clone(),
        user: UserName::parse(&user).unwrap_or_else(|_| UserName::anonymous()),
        text,
        time: Timestamp(time),
        spans: spans.and_then(|s| serde_json::from_str::<Vec<Span>>(&s).ok()),
        guest,
        deleted,
    }
}

/// A count as an SQLite integer (`LIMIT`): huge means no limit.
fn clamp(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn clamp_u64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// SQLite's message, with a hint where the usual cause is known.
fn explain(e: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode::*;
    let hint = match e.sqlite_error_code() {
        Some(CannotOpen) => " (is the folder missing or not writable?)",
        Some(NotADatabase) => " (not a smolchat database: move it away or choose another --db)",
        Some(DatabaseBusy) | Some(DatabaseLocked) => " (is another smolchat using it?)",
        Some(ReadOnly) => " (the file or its folder is read-only)",
        Some(DiskFull) => " (disk full)",
        _ => "",
    };
    format!(
        "{}{hint}",
        e.to_string().lines().next().unwrap_or("unknown error")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let dir =
                std::env::temp_dir().join(format!("smolchat-db-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn msg(room: &str, id: u64, time: i64) -> Message {
        Message {
            id,
            room: RoomName::parse(room).unwrap(),
            user: UserName::parse("ana").unwrap(),
            text: format!("m{id}"),
            time: Timestamp(time),
            spans: (id % 2 == 0).then(|| vec![Span::Code { code: "x".into() }]),
            guest: false,
            deleted: false,
        }
    }

    /// Every room in the file with up to `n` of its newest messages.
    fn load(path: &Path, n: usize) -> Vec<LoadedRoom> {
        let r = ReadOnly::open(path).unwrap();
        r.rooms()
            .unwrap()
            .into_iter()
            .map(|(name, _)| r.room(&name, n).unwrap().unwrap())
            .collect()
    }

    fn put(db: &mut Db, msgs: &[Message], retention: Retention) -> Result<(), StoreError> {
        let changes: Vec<(RoomName, Committed)> = msgs
            .iter()
            .map(|m| (m.room.clone(), Committed::Message(m.clone())))
            .collect();
        let refs: Vec<(&RoomName, &Committed)> = changes.iter().map(|(r, c)| (r, c)).collect();
        db.write(&refs, retention)
    }

    const KEEP_ALL: Retention = Retention {
        keep: 1000,
        cutoff: None,
    };

    #[test]
    fn messages_and_ids_survive_reopening() {
        let dir = TempDir::new("reopen");
        let path = dir.0.join("chat.db");
        {
            let mut db = Db::open(&path, SyncMode::Full).unwrap();
            let batch: Vec<Message> = (1..=3)
                .map(|i| msg("a", i, 10))
                .chain([msg("b", 1, 10)])
                .collect();
            put(&mut db, &batch, KEEP_ALL).unwrap();
        }
        let _db = Db::open(&path, SyncMode::Normal).unwrap();
        let rooms = load(&path, 2);
        assert_eq!(rooms.len(), 2);
        assert_eq!((rooms[0].name.as_str(), rooms[0].last_id), ("a", 3));
        assert_eq!(
            rooms[0]
                .messages
                .iter()
                .map(Committed::id)
                .collect::<Vec<_>>(),
            [2, 3]
        );
        assert_eq!(
            rooms[0].messages[0],
            Committed::Message(msg("a", 2, 10)),
            "spans and all fields round-trip"
        );
        assert!(!rooms[0].complete, "a has a third message");
        assert_eq!(rooms[1].messages, [Committed::Message(msg("b", 1, 10))]);
        assert!(rooms[1].complete);
    }

    #[test]
    fn reads_go_forward_from_an_id_or_back_from_the_newest() {
        let dir = TempDir::new("read");
        let path = dir.0.join("chat.db");
        let mut db = Db::open(&path, SyncMode::Full).unwrap();
        let batch: Vec<Message> = (1..=9).map(|i| msg("a", i, 10)).collect();
        put(
            &mut db,
            &batch,
            Retention {
                keep: 6,
                cutoff: None,
            },
        )
        .unwrap();
        let r = ReadOnly::open(&path).unwrap();
        let a = RoomName::parse("a").unwrap();
        let ids = |q: Query| {
            let b = r.read(&a, &q, 1000).unwrap();
            assert_eq!(b.next, None);
            (
                b.messages.iter().map(Committed::id).collect::<Vec<_>>(),
                b.first_held,
            )
        };
        let after = |after, upto, limit| Query::After { after, upto, limit };
        assert_eq!(ids(after(5, 9, 10)), (vec![6, 7, 8, 9], Some(4)));
        assert_eq!(ids(after(0, 9, 2)), (vec![4, 5], Some(4)));
        assert_eq!(ids(after(5, 7, usize::MAX)), (vec![6, 7], Some(4)));
        assert_eq!(
            ids(Query::Newest { upto: 8, n: 3 }),
            (vec![6, 7, 8], Some(4))
        );
        assert_eq!(
            ids(Query::Newest { upto: 9, n: 100 }),
            ((4..=9).collect(), Some(4))
        );
        let none = RoomName::parse("none").unwrap();
        let b = r.read(&none, &after(0, 9, 10), 1000).unwrap();
        assert_eq!((b.messages.len(), b.first_held, b.next), (0, None, None));
        // In batches: each says what is left.
        let b = r.read(&a, &Query::Newest { upto: 9, n: 5 }, 2).unwrap();
        assert_eq!(
            b.messages.iter().map(Committed::id).collect::<Vec<_>>(),
            [5, 6]
        );
        assert_eq!(b.next, Some(after(6, 9, 3)));
        let b = r.read(&a, &after(6, 9, 3), 2).unwrap();
        assert_eq!(
            b.messages.iter().map(Committed::id).collect::<Vec<_>>(),
            [7, 8]
        );
        assert_eq!(b.next, Some(after(8, 9, 1)));
        let b = r.read(&a, &after(8, 9, 1), 2).unwrap();
        assert_eq!((b.messages.len(), b.next), (1, None));
        assert!(r.room(&none, 5).unwrap().is_none());
    }

    #[test]
    fn retention_keeps_the_newest_and_the_last_id() {
        let dir = TempDir::new("retention");
        let mut db = Db::open(&dir.0.join("chat.db"), SyncMode::Full).unwrap();
        for i in 1..=10 {
            put(
                &mut db,
                &[msg("a", i, i as i64)],
                Retention {
                    keep: 3,
                    cutoff: None,
                },
            )
            .unwrap();
        }
        let rooms = load(&db.path, 100);
        assert_eq!(
            rooms[0]
                .messages
                .iter()
                .map(Committed::id)
                .collect::<Vec<_>>(),
            [8, 9, 10]
        );
        // Age retention can empty a room; its last id stays.
        put(
            &mut db,
            &[msg("a", 11, 100)],
            Retention {
                keep: 3,
                cutoff: Some(Timestamp(200)),
            },
        )
        .unwrap();
        let rooms = load(&db.path, 100);
        assert_eq!((rooms[0].last_id, rooms[0].messages.len()), (11, 0));
    }

    #[test]
    fn a_failed_batch_writes_nothing() {
        let dir = TempDir::new("atomic");
        let mut db = Db::open(&dir.0.join("chat.db"), SyncMode::Full).unwrap();
        put(&mut db, &[msg("a", 1, 0)], KEEP_ALL).unwrap();
        // Id 1 again violates the primary key: the whole batch rolls back.
        let err = put(&mut db, &[msg("a", 2, 0), msg("a", 1, 0)], KEEP_ALL).unwrap_err();
        assert!(err.0.contains("UNIQUE"), "{err}");
        let rooms = load(&db.path, 10);
        assert_eq!((rooms[0].last_id, rooms[0].messages.len()), (1, 1));
    }

    #[test]
    fn bad_files_are_refused_with_one_line() {
        let dir = TempDir::new("bad");
        let e = Db::open(&dir.0, SyncMode::Full).unwrap_err();
        assert!(e.0.contains("is a directory"), "{e}");
        let junk = dir.0.join("junk.db");
        std::fs::write(&junk, vec![b'x'; 8192]).unwrap();
        let e = Db::open(&junk, SyncMode::Full).unwrap_err();
        assert!(e.0.contains("not a database"), "{e}");
        let e = Db::open(&dir.0.join("missing/dir/chat.db"), SyncMode::Full).unwrap_err();
        assert!(e.0.contains("unable to open"), "{e}");
        assert_eq!(e.0.lines().count(), 1);
    }

    #[test]
    fn a_second_opener_is_locked_out() {
        let dir = TempDir::new("lock");
        let path = dir.0.join("chat.db");
        let _first = Db::open(&path, SyncMode::Full).unwrap();
        let e = Db::open(&path, SyncMode::Full).unwrap_err();
        assert!(e.0.contains("in use by another smolchat"), "{e}");
    }

    #[test]
    fn the_file_can_be_read_while_open() {
        let dir = TempDir::new("reader");
        let path = dir.0.join("chat.db");
        let mut db = Db::open(&path, SyncMode::Full).unwrap();
        put(&mut db, &[msg("a", 1, 0)], KEEP_ALL).unwrap();
        // As the sqlite3 shell would.
        let reader = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let n: i64 = reader
            .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        put(&mut db, &[msg("a", 2, 0)], KEEP_ALL).unwrap();
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = TempDir::new("newer");
        let path = dir.0.join("chat.db");
        {
            let db = Db::open(&path, SyncMode::Full).unwrap();
            db.conn.pragma_update(None, "user_version", 99).unwrap();
        }
        let e = Db::open(&path, SyncMode::Full).unwrap_err();
        assert!(e.0.contains("newer"), "{e}");
    }
}
