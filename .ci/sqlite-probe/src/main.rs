//! Opens a file database in WAL mode, writes and reads chat-like rows with
//! prepared statements in a transaction, and prints one line that CI checks.

use rusqlite::{params, Connection};

fn main() -> rusqlite::Result<()> {
    let dir = std::env::temp_dir().join(format!("sqlite-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("probe.db");
    let mut db = Connection::open(&path)?;
    let mode: String = db.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    db.execute_batch(
        "CREATE TABLE messages (id INTEGER PRIMARY KEY, room TEXT NOT NULL,
                                user TEXT NOT NULL, text TEXT NOT NULL, time TEXT NOT NULL);
         CREATE INDEX messages_room ON messages (room, id);",
    )?;
    let tx = db.transaction()?;
    {
        let mut insert =
            tx.prepare("INSERT INTO messages (room, user, text, time) VALUES (?1, ?2, ?3, ?4)")?;
        for i in 0..1000 {
            insert.execute(params![
                format!("room{}", i % 7),
                "ana",
                format!("message {i} ünïcødé"),
                "2026-11-22T10:00:00Z"
            ])?;
        }
    }
    tx.commit()?;
    let (count, last): (i64, String) = db.query_row(
        "SELECT count(*), max(text) FROM messages WHERE room = ?1 AND id > ?2",
        params!["room3", 10],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    drop(db);
    // Reopen: the rows are on disk.
    let db = Connection::open(&path)?;
    let total: i64 = db.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?;
    drop(db);
    std::fs::remove_dir_all(&dir).expect("clean up");
    assert_eq!(total, 1000);
    assert_eq!(mode, "wal");
    println!(
        "sqlite-probe ok: SQLite {} on {}, {total} rows, {count} in room3 after id 10, last {last:?}",
        rusqlite::version(),
        std::env::consts::ARCH
    );
    Ok(())
}
