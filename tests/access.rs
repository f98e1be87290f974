//! Accounts and room access against the real binary: the subcommands while
//! a server runs on the same file, a matrix of rules × credentials ×
//! requests, names bound to accounts, cross-site cookie posts, and streams
//! that end when their reader loses the right to read.

mod support;

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use support::{Scratch, Server, WAIT};

/// Runs `smolchat ARGS --db DB`, with `stdin` on its standard input.
fn cli(db: &str, args: &[&str], stdin: &str) -> Output {
    let mut cmd = support::smolchat_command();
    cmd.args(args)
        .args(["--db", db])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn smolchat");
    // A command that fails early never reads its input: a broken pipe here
    // is part of that, not a failure of the test.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

/// Runs a subcommand that must succeed; its stdout.
fn ok(db: &str, args: &[&str], stdin: &str) -> String {
    let out = cli(db, args, stdin);
    assert!(
        out.status.success(),
        "smolchat {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn add_user(db: &str, name: &str, admin: bool) {
    let mut args = vec!["user", "add", name, "--password-stdin"];
    if admin {
        args.push("--admin");
    }
    ok(db, &args, &format!("pw-of-{name}\n"));
}

/// A new token for `user`: (token, id).
fn token(db: &str, user: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec!["token", "add", user];
    args.extend_from_slice(extra);
    let out = ok(db, &args, "");
    let mut lines = out.lines();
    let token = lines.next().unwrap().to_string();
    let id = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    (token, id)
}

/// Waits until `check` holds (the server reloads accounts within a second).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::yield_now();
    }
}

/// Signs in through `/login`: the session cookie.
fn login(s: &Server, user: &str, password: &str) -> String {
    let r = s.post(
        "/login",
        "application/x-www-form-urlencoded",
        &format!("user={user}&password={password}"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let set = r.header("set-cookie").unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"),
        "{set}"
    );
    set.split(';').next().unwrap().to_string()
}

fn basic(user: &str) -> String {
    use std::fmt::Write as _;
    let raw = format!("{user}:pw-of-{user}");
    // Base64 by hand: the tests need no crate for it.
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in raw.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    let mut h = String::new();
    let _ = write!(h, "Authorization: Basic {out}");
    h
}

/// The server and file for the matrix: ana (admin), bob, cy; bob has a
/// token, cy a read-only one.
struct Setup {
    _dir: Scratch,
    db: String,
    s: Server,
    bob_token: String,
    cy_token: String,
}

fn setup(test: &str, default_access: &str) -> Setup {
    let dir = Scratch::new(&format!("access-{test}-{default_access}"));
    let db = dir.db();
    // A server first: the subcommands work while it runs.
    let s = Server::start(&[
        "--db",
        &db,
        "--rate",
        "0",
        "--default-access",
        default_access,
        "--trust-proxy",
    ]);
    add_user(&db, "ana", true);
    add_user(&db, "bob", false);
    add_user(&db, "cy", false);
    let (bob_token, _) = token(&db, "bob", &["--label", "scripts"]);
    let (cy_token, _) = token(&db, "cy", &["--read-only"]);
    ok(&db, &["access", "everyone", "lobby", "ro"], "");
    ok(&db, &["access", "everyone", "team-*", "deny"], "");
    ok(&db, &["access", "bob", "team-*", "rw"], "");
    ok(&db, &["access", "cy", "team-*", "rw"], "");
    ok(&db, &["access", "everyone", "drop", "wo"], "");
    // The server sees all of it within a second.
    eventually("the server loads the rules", || {
        s.get_with("/me", &[&format!("Authorization: Bearer {bob_token}")])
            .status
            == 200
    });
    Setup {
        _dir: dir,
        db,
        s,
        bob_token,
        cy_token,
    }
}

/// The statuses of reading a stream, reading history and posting in `room`
/// with `headers`.
fn statuses(s: &Server, room: &str, headers: &[&str]) -> (u16, u16, u16) {
    let stream = s
        .sse_with(&format!("/rooms/{room}/events"), headers)
        .response
        .status;
    let history = s
        .get_with(&format!("/rooms/{room}/messages"), headers)
        .status;
    let mut post_headers = vec!["Content-Type: text/plain"];
    post_headers.extend_from_slice(headers);
    let post = s
        .post_with(&format!("/rooms/{room}/messages"), &post_headers, b"hello")
        .status;
    (stream, history, post)
}

#[test]
fn rules_times_credentials_times_requests() {
    for default_access in ["read-write", "deny"] {
        let Setup {
            _dir,
            s,
            bob_token,
            cy_token,
            ..
        } = setup("matrix", default_access);
        let bearer = |t: &str| format!("Authorization: Bearer {t}");
        let bob_cookie = format!("Cookie: {}", login(&s, "bob", "pw-of-bob"));
        let ana_basic = basic("ana");
        let (bob_b, cy_b) = (bearer(&bob_token), bearer(&cy_token));
        let open = default_access == "read-write";
        let anon_free = if open {
            (200, 200, 201)
        } else {
            (401, 401, 401)
        };
        // (who, headers, room, expected (stream, history, post))
        type Case<'a> = (&'a str, Vec<&'a str>, &'a str, (u16, u16, u16));
        let cases: Vec<Case<'_>> = vec![
            ("anonymous", vec![], "lobby", (200, 200, 401)),
            ("anonymous", vec![], "team-a", (401, 401, 401)),
            ("anonymous", vec![], "drop", (401, 401, 201)),
            ("anonymous", vec![], "free", anon_free),
            ("bob by token", vec![&bob_b], "team-a", (200, 200, 201)),
            ("bob by token", vec![&bob_b], "lobby", (200, 200, 403)),
            (
                "bob by cookie",
                vec![&bob_cookie, "Origin: http://test"],
                "team-a",
                (200, 200, 201),
            ),
            ("cy read-only token", vec![&cy_b], "team-a", (200, 200, 403)),
            ("cy read-only token", vec![&cy_b], "drop", (403, 403, 403)),
            (
                "ana admin by Basic",
                vec![&ana_basic],
                "team-a",
                (200, 200, 201),
            ),
            (
                "ana admin by Basic",
                vec![&ana_basic],
                "lobby",
                (200, 200, 201),
            ),
            (
                "a wrong token",
                vec!["Authorization: Bearer sc_nope"],
                "lobby",
                (401, 401, 401),
            ),
        ];
        for (who, headers, room, want) in cases {
            assert_eq!(
                statuses(&s, room, &headers),
                want,
                "{who} in {room} with --default-access {default_access}"
            );
        }
        // 401 says how to authenticate.
        let r = s.get("/rooms/team-a/messages");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"smolchat\"")
        );
        assert!(r.json()["error"].as_str().unwrap().contains("sign in"));
        // ?auth=TOKEN works for streams (EventSource sends no headers), nowhere else.
        let q = format!("/rooms/team-a/events?auth={bob_token}");
        assert_eq!(s.sse(&q).response.status, 200);
        let q = format!("/rooms/team-a/messages?auth={bob_token}");
        assert_eq!(s.get(&q).status, 401);
        // GET /rooms lists what the asker may read.
        let listed = |h: &[&str]| -> Vec<String> {
            s.get_with("/rooms", h)
                .json()
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["room"].as_str().unwrap().to_string())
                .collect()
        };
        assert!(!listed(&[]).contains(&"team-a".to_string()));
        assert!(listed(&[&bob_b]).contains(&"team-a".to_string()));
        // /metrics: anyone when the default is read-write; else admins (or
        // the machine itself: a client address that is not loopback here).
        let far = "X-Forwarded-For: 203.0.113.5";
        assert_eq!(
            s.get_with("/metrics", &[far]).status,
            if open { 200 } else { 401 }
        );
        assert_eq!(
            s.get_with("/metrics", &[far, &bob_b]).status,
            if open { 200 } else { 403 }
        );
        assert_eq!(s.get_with("/metrics", &[far, &ana_basic]).status, 200);
    }
}

#[test]
fn names_are_bound_to_accounts_and_guests_are_marked() {
    let Setup {
        _dir, s, bob_token, ..
    } = setup("names", "read-write");
    let bob = format!("Authorization: Bearer {bob_token}");
    let post = |headers: &[&str], body: &str| {
        let mut h = vec!["Content-Type: application/json"];
        h.extend_from_slice(headers);
        s.post_with("/rooms/free/messages", &h, body.as_bytes())
    };
    let mine = post(&[&bob], r#"{"text":"hi"}"#);
    assert_eq!(
        (mine.status, mine.json()["user"].as_str()),
        (201, Some("bob"))
    );
    assert!(mine.json().get("guest").is_none());
    let also = post(&[&bob], r#"{"user":"bob","text":"hi"}"#);
    assert_eq!(also.status, 201);
    let spoof = post(&[&bob], r#"{"user":"ana","text":"hi"}"#);
    assert_eq!(spoof.status, 403);
    assert!(
        spoof.error().contains("signed in as bob"),
        "{}",
        spoof.error()
    );
    let taken = post(&[], r#"{"user":"ana","text":"hi"}"#);
    assert_eq!(taken.status, 403);
    assert!(
        taken.error().contains("belongs to an account"),
        "{}",
        taken.error()
    );
    let guest = post(&[], r#"{"user":"zed","text":"hi"}"#);
    assert_eq!(guest.status, 201);
    assert_eq!(
        (
            guest.json()["user"].as_str(),
            guest.json()["guest"].as_bool()
        ),
        (Some("zed"), Some(true))
    );
    // In presence too.
    assert_eq!(s.sse("/rooms/free/events?user=ana").response.status, 403);
    let mut st = s.sse_with("/rooms/free/events?user=ana", &[&bob]);
    assert_eq!(st.response.status, 403);
    st = s.sse_with("/rooms/free/events", &[&bob]);
    let hello = st.until("hello").json();
    assert_eq!(hello["users"], serde_json::json!(["bob"]));
}

#[test]
fn a_cookie_from_another_site_cannot_post() {
    let Setup { _dir, s, .. } = setup("csrf", "read-write");
    let cookie = format!("Cookie: {}", login(&s, "bob", "pw-of-bob"));
    let post = |extra: &[&str]| {
        let mut h = vec!["Content-Type: text/plain", cookie.as_str()];
        h.extend_from_slice(extra);
        s.post_with("/rooms/free/messages", &h, b"hi")
    };
    assert_eq!(post(&["Origin: https://evil.example"]).status, 403);
    assert_eq!(post(&["Sec-Fetch-Site: cross-site"]).status, 403);
    assert_eq!(post(&["Origin: http://test"]).status, 201);
    assert_eq!(post(&["Sec-Fetch-Site: same-origin"]).status, 201);
    // Sign-in itself is refused from elsewhere, and a wrong password is 401.
    let r = s.post_with(
        "/login",
        &[
            "Content-Type: application/json",
            "Origin: https://evil.example",
        ],
        br#"{"user":"bob","password":"pw-of-bob"}"#,
    );
    assert_eq!(r.status, 403);
    let r = s.post(
        "/login",
        "application/json",
        r#"{"user":"bob","password":"nope"}"#,
    );
    assert_eq!(r.status, 401);
    let r = s.post(
        "/login",
        "application/json",
        r#"{"user":"nobody","password":"nope"}"#,
    );
    assert_eq!(r.status, 401);
    // /me, and signing out ends the session.
    assert_eq!(s.get_with("/me", &[&cookie]).json()["user"], "bob");
    let out = s.post_with("/logout", &[&cookie, "Origin: http://test"], b"");
    assert_eq!(out.status, 204);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert!(s.get_with("/me", &[&cookie]).json()["user"].is_null());
}

/// Reads `sse` until the server ends it; false if it is still open at the
/// deadline.
fn ends(sse: &mut support::Sse) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if sse.next_within(Duration::from_millis(200)).is_none() && sse.ended {
            return true;
        }
    }
    false
}

#[test]
fn losing_the_right_to_read_ends_open_streams_within_a_second() {
    // `_dir` stays bound: the folder goes when it drops.
    let Setup { _dir, s, db, .. } = setup("revoke", "deny");
    let (t1, id1) = token(&db, "bob", &[]);
    let (t2, _) = token(&db, "bob", &[]);
    // Opens a stream as soon as the server knows the credential.
    let open = |h: &str| {
        let mut st = None;
        eventually("the server accepts the credential", || {
            let s2 = s.sse_with("/rooms/team-a/events", &[h]);
            let ok = s2.response.status == 200;
            st = Some(s2);
            ok
        });
        let mut st = st.unwrap();
        st.until("hello");
        st
    };
    let bearer = |t: &str| format!("Authorization: Bearer {t}");
    // A revoked token.
    let mut by_t1 = open(&bearer(&t1));
    let mut by_t2 = open(&bearer(&t2));
    let started = Instant::now();
    ok(&db, &["token", "remove", &id1], "");
    assert!(ends(&mut by_t1), "the revoked token's stream ended");
    println!(
        "revoked token: stream ended {:?} after the command",
        started.elapsed()
    );
    assert!(by_t2
        .next_within(Duration::from_millis(500))
        .is_none_or(|e| !e.event.is_empty() || e.comment.is_some()));
    assert!(!by_t2.ended, "another token's stream stays");
    // A rule change.
    ok(&db, &["access", "bob", "team-*", "deny"], "");
    assert!(ends(&mut by_t2), "a denying rule ends the stream");
    // A deleted user's cookie stream.
    ok(&db, &["access", "bob", "team-*", "rw"], "");
    let cookie = format!("Cookie: {}", login(&s, "bob", "pw-of-bob"));
    let mut by_cookie = open(&cookie);
    // A new password ends the browser sessions opened with the old one.
    ok(
        &db,
        &["user", "passwd", "bob", "--password-stdin"],
        "a-new-password\n",
    );
    assert!(
        ends(&mut by_cookie),
        "a changed password ends the cookie's stream"
    );
    assert_eq!(
        s.get_with("/me", &[&cookie]).json()["user"],
        serde_json::Value::Null
    );
    let cookie = format!("Cookie: {}", login(&s, "bob", "a-new-password"));
    let mut by_cookie = open(&cookie);
    ok(&db, &["user", "del", "bob"], "");
    assert!(ends(&mut by_cookie), "a deleted user's stream ended");
    assert_eq!(
        s.sse_with("/rooms/team-a/events", &[&cookie])
            .response
            .status,
        401,
        "the session went with the user"
    );
}

#[test]
fn subcommands_explain_mistakes_in_one_line() {
    let dir = Scratch::new("access-cli");
    let db = dir.db();
    let bad: Vec<(Vec<&str>, &str, i32, &str)> = vec![
        (
            vec!["user", "add", "ana", "--password-stdin"],
            "short\n",
            2,
            "at least 8",
        ),
        (
            vec!["user", "add", "anonymous", "--password-stdin"],
            "longenough\n",
            2,
            "anonymous",
        ),
        (vec!["user", "del", "nobody"], "", 1, "no user nobody"),
        (vec!["token", "add", "nobody"], "", 1, "no user nobody"),
        (vec!["token", "remove", "zzz"], "", 1, "no token zzz"),
        (vec!["access", "ana", "lobby", "rw"], "", 1, "no user ana"),
        (
            vec!["access", "everyone", "a b", "rw"],
            "",
            2,
            "room pattern",
        ),
        (
            vec!["access", "everyone", "x", "maybe"],
            "",
            2,
            "rw, ro, wo or deny",
        ),
        (vec!["user", "frob"], "", 2, "usage"),
    ];
    for (args, stdin, code, needle) in bad {
        let out = cli(&db, &args, stdin);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(
            err.contains(needle) && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    add_user(&db, "ana", false);
    let out = cli(
        &db,
        &["user", "add", "ana", "--password-stdin"],
        "longenough\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let list = ok(&db, &["user", "list"], "");
    assert!(list.starts_with("ana\tuser\t0 tokens"), "{list}");
    let out = cli(":memory:", &["user", "list"], "");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn deletes_reach_every_stream_also_after_a_resume_and_leave_the_file() {
    let dir = Scratch::new("access-delete");
    let db = dir.db();
    let s = Server::start(&["--db", &db, "--rate", "0", "--edit-window", "2s"]);
    add_user(&db, "ana", true);
    add_user(&db, "bob", false);
    add_user(&db, "cy", false);
    let (bob, _) = token(&db, "bob", &[]);
    let (cy, _) = token(&db, "cy", &[]);
    let bob = format!("Authorization: Bearer {bob}");
    let cy = format!("Authorization: Bearer {cy}");
    eventually("the server loads the accounts", || {
        s.get_with("/me", &[&bob]).json()["user"] == "bob"
    });
    let post = |h: &str, text: &str| {
        let r = s.post_with(
            "/rooms/mod/messages",
            &["Content-Type: text/plain", h],
            text.as_bytes(),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["id"].as_u64().unwrap()
    };
    let mut live = s.sse("/rooms/mod/events");
    live.until("hello");
    let oops = post(&bob, "oops, my password is hunter2");
    let keep = post(&bob, "this one stays");
    let delete = |h: &[&str], id: u64| {
        let raw = format!(
            "DELETE /rooms/mod/messages/{id} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{}\r\n",
            h.iter().map(|h| format!("{h}\r\n")).collect::<String>()
        );
        s.raw(raw.as_bytes())
    };
    assert_eq!(delete(&[], oops).status, 401);
    assert_eq!(delete(&[&cy], oops).status, 403, "not cy's message");
    let r = delete(&[&bob], oops);
    assert_eq!(r.status, 200, "{}", r.text());
    let event_id = r.json()["event"].as_u64().unwrap();
    assert_eq!(event_id, keep + 1, "the delete takes the next id");
    assert_eq!(delete(&[&bob], oops).status, 410);
    assert_eq!(delete(&[&bob], 999).status, 404);
    assert_eq!(
        delete(&[&bob], event_id).status,
        404,
        "an event is not a message"
    );
    // Live.
    let ev = live.until("delete");
    assert_eq!(
        (ev.id.as_deref(), ev.json()["id"].as_u64()),
        (Some(&*event_id.to_string()), Some(oops))
    );
    // After a resume from before it.
    let mut resumed = s.sse_with("/rooms/mod/events", &[&format!("Last-Event-ID: {keep}")]);
    let ev = resumed.until("delete");
    assert_eq!(ev.json()["id"].as_u64(), Some(oops));
    // A new stream's replay and the history show the message deleted.
    let mut fresh = s.sse("/rooms/mod/events");
    let first = fresh.until("message").json();
    assert_eq!(
        (
            first["id"].as_u64(),
            first["text"].as_str(),
            first["deleted"].as_bool()
        ),
        (Some(oops), Some(""), Some(true))
    );
    let page = s.get("/rooms/mod/messages").json();
    let page = page.as_array().unwrap();
    assert_eq!(page.len(), 2, "the delete event is not listed: {page:?}");
    assert_eq!(
        (page[0]["deleted"].as_bool(), page[0]["text"].as_str()),
        (Some(true), Some(""))
    );
    assert_eq!(page[1]["text"], "this one stays");
    // The text is gone from the file, not only hidden.
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let (text, deleted): (String, bool) = conn
        .query_row(
            "SELECT text, deleted FROM messages WHERE room = 'mod' AND id = ?1",
            [oops as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((text.as_str(), deleted), ("", true));
    // The author's window closes (2 s after the post, by the server's clock,
    // which is this machine's: waiting for a moment in time, not for another
    // thread); an admin's never does.
    let posted = s
        .get(&format!("/rooms/mod/messages?since={}&limit=1", keep - 1))
        .json()[0]["time"]
        .as_str()
        .unwrap()
        .to_string();
    let closes = std::time::UNIX_EPOCH
        + Duration::from_secs(smolchat::message::Timestamp::parse(&posted).unwrap().0 as u64 + 3);
    while std::time::SystemTime::now() < closes {
        std::thread::sleep(Duration::from_millis(100));
    }
    let late = delete(&[&bob], keep);
    assert_eq!(late.status, 403);
    assert!(late.error().contains("too late"), "{}", late.error());
    let (ana, _) = token(&db, "ana", &[]);
    let ana = format!("Authorization: Bearer {ana}");
    eventually("ana's token works", || {
        s.get_with("/me", &[&ana]).status == 200
    });
    assert_eq!(delete(&[&ana], keep).status, 200);
    assert_eq!(live.until("delete").json()["id"].as_u64(), Some(keep));
}
