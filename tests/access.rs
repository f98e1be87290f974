//! Accounts and room access against the real binary: the subcommands while
//! a server runs on the same file, a matrix of rules × credentials ×
//! requests, names bound to accounts, cross-site cookie posts, and streams
//! that end when their reader loses the right to read.

mod support;

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use smolchat::message::Timestamp;
use support::{Scratch, Server, WAIT};

/// Runs `smolchat ARGS --db DB`, with `stdin` on its standard input.
fn cli(db: &str, args: &[&str], stdin: &str) -> Output {
    let mut cmd = support::smolchat_command();
    cmd.args(args).args(["--db", db]);
    run(cmd, stdin)
}

/// Runs `cmd` with `stdin` on its standard input.
fn run(mut cmd: std::process::Command, stdin: &str) -> Output {
    cmd.stdin(Stdio::piped())
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
    ok(&db, &["access", "everyone", "lobby", "ro"], "");
    ok(&db, &["access", "everyone", "team-*", "deny"], "");
    ok(&db, &["access", "bob", "team-*", "rw"], "");
    ok(&db, &["access", "cy", "team-*", "rw"], "");
    ok(&db, &["access", "everyone", "drop", "wo"], "");
    let (cy_token, _) = token(&db, "cy", &["--read-only"]);
    // The server sees all of it within a second. Each command is its own
    // change, a reload can fall between two of them, and it reads every
    // change up to one: wait for the last one, cy's token, which shows
    // the same whatever the default access. (Waiting for a rule instead
    // once let the test go on before cy's token: with --default-access
    // write-only, the write-only room's rule changes nothing it can see.)
    eventually("the server loads the rules and tokens", || {
        s.get_with("/me", &[&format!("Authorization: Bearer {cy_token}")])
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
        // Token ids are Base64url: one in 64 starts with '-'.
        (
            vec!["token", "remove", "-ZZ_eock"],
            "",
            1,
            "no token -ZZ_eock",
        ),
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
    // cy's token is the last change: when the server knows it, it knows
    // the rest (a reload can fall between bob's token and cy's).
    eventually("the server loads the accounts", || {
        s.get_with("/me", &[&cy]).json()["user"] == "cy"
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

/// The moment after `expires` or `expired` in a `token add` or `token list`
/// line.
fn expiry_in(line: &str) -> Option<Timestamp> {
    line.split([' ', '\t', ')'])
        .skip_while(|w| *w != "expires" && *w != "expired")
        .nth(1)
        .and_then(Timestamp::parse)
}

/// The line of `token list` output about token `id`.
fn listed<'a>(list: &'a str, id: &str) -> &'a str {
    list.lines()
        .find(|l| l.split('\t').next() == Some(id))
        .unwrap_or_else(|| panic!("token {id} not in {list:?}"))
}

#[test]
fn a_token_past_its_expiry_is_refused_and_token_list_says_when() {
    let dir = Scratch::new("access-expiry");
    let db = dir.db();
    let s = Server::start(&["--db", &db, "--rate", "0"]);
    add_user(&db, "bob", false);
    let bearer = |t: &str| format!("Authorization: Bearer {t}");
    // A second is the smallest duration --expires takes (it is stored in
    // whole seconds): this one expires within about a second.
    let out = ok(&db, &["token", "add", "bob", "--expires", "1s"], "");
    let short = out.lines().next().unwrap().to_string();
    let short_until = expiry_in(out.lines().nth(1).unwrap()).expect("an expiry");
    let (long, long_id) = token(&db, "bob", &["--expires", "30d", "--label", "backup"]);
    let list = ok(&db, &["token", "list", "bob"], "");
    let line = listed(&list, &long_id);
    let until = expiry_in(line).unwrap_or_else(|| panic!("no expiry in {line:?}"));
    let month = Timestamp::now().0 + 30 * 86_400;
    assert!((until.0 - month).abs() < 3600, "{line}");
    assert!(
        line.contains(&format!("\tread-write\texpires {until}\tbackup\tmade ")),
        "{line}"
    );
    assert!(!list.contains(&short[3..]) && !list.contains(&long[3..]));
    // The server reads every token at once: when it knows the later one, it
    // knows the short one.
    eventually("the server loads the tokens", || {
        s.get_with("/me", &[&bearer(&long)]).json()["user"] == "bob"
    });
    // Waiting for a moment on the clock the server reads, not for a thread.
    let at = std::time::UNIX_EPOCH + Duration::from_secs(short_until.0 as u64);
    while std::time::SystemTime::now() < at {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        statuses(&s, "free", &[&bearer(&short)]),
        (401, 401, 401),
        "an expired token, where anyone may read and post"
    );
    let r = s.get_with("/rooms/free/messages", &[&bearer(&short)]);
    assert_eq!(r.error(), "invalid or expired token");
    let q = format!("/rooms/free/events?auth={short}");
    assert_eq!(s.sse(&q).response.status, 401);
    assert_eq!(
        statuses(&s, "free", &[&bearer(&long)]),
        (200, 200, 201),
        "the 30-day token"
    );
    let list = ok(&db, &["token", "list"], "");
    let expired = list
        .lines()
        .find(|l| l.contains("\texpired "))
        .unwrap_or_else(|| panic!("no expired token in {list:?}"));
    assert_eq!(expiry_in(expired), Some(short_until), "{expired}");
}

#[test]
fn token_list_access_list_and_access_reset_while_the_server_runs() {
    let Setup {
        _dir,
        s,
        db,
        bob_token,
        cy_token,
    } = setup("lists", "read-write");
    // token list: one line per token, never the token itself.
    let all = ok(&db, &["token", "list"], "");
    let rows: Vec<Vec<&str>> = all.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 2, "{all}");
    assert_eq!(
        rows[0][1..5],
        ["bob", "read-write", "never expires", "scripts"]
    );
    assert_eq!(rows[1][1..5], ["cy", "read-only", "never expires", "-"]);
    for r in &rows {
        assert!(r[0].len() >= 6 && r[5].starts_with("made 20"), "{r:?}");
    }
    assert!(!all.contains(&bob_token[3..]) && !all.contains(&cy_token[3..]));
    let bob_id = rows[0][0];
    assert_eq!(
        ok(&db, &["token", "list", "bob"], "").lines().count(),
        1,
        "only bob's"
    );
    assert!(ok(&db, &["token", "list", "bob"], "").starts_with(&format!("{bob_id}\tbob\t")));
    assert_eq!(ok(&db, &["token", "list", "ana"], ""), "no tokens\n");
    ok(&db, &["token", "remove", bob_id], "");
    assert_eq!(ok(&db, &["token", "list", "bob"], ""), "no tokens\n");

    // access list: everyone's rules first, then by user and pattern.
    assert_eq!(
        ok(&db, &["access", "list"], ""),
        "everyone\tdrop\two\n\
         everyone\tlobby\tro\n\
         everyone\tteam-*\tdeny\n\
         bob\tteam-*\trw\n\
         cy\tteam-*\trw\n"
    );
    assert_eq!(statuses(&s, "team-a", &[]), (401, 401, 401));
    assert_eq!(statuses(&s, "lobby", &[]).2, 401);
    // access reset: the running server drops the rules at its next reload.
    let started = Instant::now();
    assert_eq!(ok(&db, &["access", "reset"], ""), "deleted 5 rules\n");
    eventually("the reset reaches the server", || {
        s.get("/rooms/team-a/messages").status == 200
    });
    println!(
        "access reset: applied {:?} after the command",
        started.elapsed()
    );
    assert_eq!(
        ok(&db, &["access", "list"], ""),
        "no rules: everyone has --default-access\n"
    );
    assert_eq!(statuses(&s, "team-a", &[]), (200, 200, 201));
    assert_eq!(statuses(&s, "lobby", &[]), (200, 200, 201));
    assert_eq!(ok(&db, &["access", "reset"], ""), "deleted 0 rules\n");
}

#[test]
fn subcommands_take_smolchat_db_and_db_wins_over_it() {
    let dir = Scratch::new("access-env");
    let env_db = dir.0.join("from-env.db").to_str().unwrap().to_string();
    // Run in the scratch folder, so a subcommand that ignored the variable
    // would make ./smolchat.db there (the default), not in the repository.
    let with_env = |args: &[&str], stdin: &str| {
        let mut cmd = support::smolchat_command();
        cmd.args(args)
            .current_dir(&dir.0)
            .env("SMOLCHAT_DB", &env_db)
            .env_remove("SMOLCHAT_REDIS");
        let out = run(cmd, stdin);
        assert!(
            out.status.success(),
            "SMOLCHAT_DB=… smolchat {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    with_env(&["user", "add", "ana", "--password-stdin"], "pw-of-ana\n");
    let token = with_env(&["token", "add", "ana"], "");
    let token = token.lines().next().unwrap().to_string();
    with_env(&["access", "everyone", "team-*", "deny"], "");
    assert!(with_env(&["user", "list"], "").starts_with("ana\tuser\t1 token\t"));
    assert!(with_env(&["token", "list", "ana"], "").contains("\tana\t"));
    assert_eq!(
        with_env(&["access", "list"], ""),
        "everyone\tteam-*\tdeny\n"
    );
    assert!(
        !dir.0.join("smolchat.db").exists(),
        "nothing went to the default file"
    );
    // The file is the one --db names.
    assert!(ok(&env_db, &["user", "list"], "").starts_with("ana\t"));
    let s = Server::start(&["--db", &env_db]);
    let bearer = format!("Authorization: Bearer {token}");
    eventually("the server knows ana's token", || {
        s.get_with("/me", &[&bearer]).json()["user"] == "ana"
    });
    assert_eq!(s.get("/rooms/team-a/messages").status, 401);
    // --db beats the variable.
    let other = dir.0.join("other.db").to_str().unwrap().to_string();
    with_env(
        &["user", "add", "bob", "--password-stdin", "--db", &other],
        "pw-of-bob\n",
    );
    assert!(ok(&other, &["user", "list"], "").starts_with("bob\t"));
    assert!(!ok(&env_db, &["user", "list"], "").contains("bob"));
}

/// Posts with each of `headers` in turn on one connection; the statuses,
/// and how long it all took.
fn post_round(s: &Server, headers: &[Vec<String>]) -> (Vec<u16>, Duration) {
    let mut conn = std::io::BufReader::new(s.connect());
    let started = Instant::now();
    let mut got = Vec::new();
    for h in headers {
        let mut all = vec!["Content-Type: text/plain"];
        all.extend(h.iter().map(String::as_str));
        let req = support::post_bytes("/rooms/rate/messages", &all, b"hi");
        conn.get_mut().write_all(&req).unwrap();
        let r = support::read_response(&mut conn).unwrap();
        if r.status == 429 {
            assert!(r.header("retry-after").is_some());
        }
        got.push(r.status);
    }
    (got, started.elapsed())
}

#[test]
fn the_rate_limit_counts_per_account_not_per_address() {
    let dir = Scratch::new("access-rate");
    let db = dir.db();
    let s = Server::start(&[
        "--db",
        &db,
        "--rate",
        "1",
        "--rate-burst",
        "1",
        "--trust-proxy",
    ]);
    add_user(&db, "bob", false);
    add_user(&db, "cy", false);
    let (bob, _) = token(&db, "bob", &[]);
    let (cy, _) = token(&db, "cy", &[]);
    let bob = format!("Authorization: Bearer {bob}");
    let cy = format!("Authorization: Bearer {cy}");
    eventually("the server loads the tokens", || {
        s.get_with("/me", &[&cy]).json()["user"] == "cy"
    });
    let from = |ip: &str| format!("X-Forwarded-For: {ip}");
    let round: Vec<Vec<String>> = vec![
        // Two accounts from one address: a post each.
        vec![bob.clone(), from("198.51.100.1")],
        vec![cy.clone(), from("198.51.100.1")],
        // One account from another address: its budget is spent.
        vec![bob.clone(), from("198.51.100.2")],
        vec![cy.clone(), from("198.51.100.1")],
        // Without an account, each address has its own.
        vec![from("198.51.100.3")],
        vec![from("198.51.100.4")],
        vec![from("198.51.100.3")],
    ];
    let want = vec![201, 201, 429, 429, 201, 201, 429];
    // One token a second: a round that took a second or more may have been
    // refilled on the way, and says nothing. Then the buckets are full again
    // a second after it: try again from there.
    for attempt in 0.. {
        let (got, took) = post_round(&s, &round);
        if took < Duration::from_millis(900) {
            assert_eq!(got, want);
            break;
        }
        assert!(attempt < 5, "every round took a second or more: {took:?}");
        let refilled = Instant::now() + Duration::from_millis(1100);
        while Instant::now() < refilled {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn the_ready_line_and_the_log_say_when_anyone_may_use_a_public_address() {
    for (addr, access, open) in [
        ("0.0.0.0:0", "read-write", true),
        ("0.0.0.0:0", "read-only", true),
        ("0.0.0.0:0", "write-only", true),
        ("0.0.0.0:0", "deny", false),
        ("127.0.0.1:0", "read-write", false),
    ] {
        // A later --addr wins over the harness's 127.0.0.1:0.
        let mut s = Server::start(&["--addr", addr, "--default-access", access]);
        assert_eq!(s.get("/healthz").status, 200);
        let note = format!("(open to everyone who can reach it: --default-access {access})");
        assert_eq!(
            s.ready.ends_with(&note),
            open,
            "{addr} {access}: {:?}",
            s.ready
        );
        s.signal("TERM");
        assert!(s.wait_exit(WAIT).expect("exits").success());
        let log = s.stderr_to_end();
        let warned = log
            .iter()
            .any(|l| l.contains("WARN") && l.contains(&note) && l.contains("docs/access.md"));
        assert_eq!(warned, open, "{addr} {access}: {log:?}");
    }
}

#[test]
fn a_token_in_the_query_is_never_logged() {
    let dir = Scratch::new("access-nolog");
    let db = dir.db();
    add_user(&db, "bob", false);
    let (tok, _) = token(&db, "bob", &[]);
    ok(&db, &["access", "bob", "team-*", "rw"], "");
    let wrong = "sc_NotARealTokenButStillASecret0123456789abcd";
    // trace: every level, of every crate, of what the server writes.
    let mut s = Server::start_env(
        &["--db", &db, "--default-access", "deny", "--rate", "0"],
        &[("RUST_LOG", "trace")],
    );
    let q = |path: &str, t: &str| format!("{path}?auth={t}");
    let mut st = s.sse(&q("/rooms/team-a/events", &tok));
    assert_eq!(st.response.status, 200);
    st.until("hello");
    assert_eq!(
        s.sse(&q("/rooms/team-a/events", wrong)).response.status,
        401
    );
    assert_eq!(s.get(&q("/rooms/team-a/messages", &tok)).status, 401);
    let post = s.post(&q("/rooms/team-a/messages", &tok), "text/plain", "hi");
    assert_eq!(post.status, 401);
    assert_eq!(s.get(&q("/rooms/no%20such/events", &tok)).status, 400);
    assert_eq!(s.get(&q("/nowhere", &tok)).status, 404);
    let target = q("/rooms/team-a/events", &tok);
    for bad in [
        format!("GET {target} HTTP/1.1\r\nHost: t\r\nnot a header\r\n\r\n"),
        format!("GET {target} HTTP/1.1\r\nHost: t\r\nContent-Length: zz\r\n\r\n"),
        format!("GET {target} HTTP/1.0 x\r\nHost: t\r\n\r\n"),
        format!("get {target} HTTP/1.1\r\nHost: t\r\n\r\n"),
        format!("GET {target}&\u{e9} HTTP/1.1\r\nHost: t\r\n\r\n"),
    ] {
        let r = s.raw(bad.as_bytes());
        assert_eq!(r.status, 400, "{bad:?}: {}", r.text());
    }
    // A stream ended by a rule change is logged, by room.
    ok(&db, &["access", "bob", "team-*", "deny"], "");
    assert!(ends(&mut st), "the stream ends");
    s.signal("TERM");
    assert!(s.wait_exit(WAIT).expect("exits").success());
    let log = s.stderr_to_end();
    assert!(
        log.iter().any(|l| l.contains("DEBUG")) && log.iter().any(|l| l.contains("team-a")),
        "the server logged at debug level, and about the room: {log:?}"
    );
    for secret in [&tok[3..], &wrong[3..]] {
        let leaks: Vec<&String> = log.iter().filter(|l| l.contains(secret)).collect();
        assert!(leaks.is_empty(), "a token in the log: {leaks:?}");
    }
}

#[test]
fn rules_with_read_only_and_write_only_defaults() {
    for default_access in ["read-only", "write-only"] {
        let Setup {
            _dir,
            s,
            bob_token,
            cy_token,
            ..
        } = setup("matrix-ro-wo", default_access);
        let bob = format!("Authorization: Bearer {bob_token}");
        let cy = format!("Authorization: Bearer {cy_token}");
        let ana = basic("ana");
        let ro = default_access == "read-only";
        // A room no rule names gets the default.
        type Case<'a> = (&'a str, Vec<&'a str>, &'a str, (u16, u16, u16));
        let cases: Vec<Case<'_>> = vec![
            (
                "anonymous",
                vec![],
                "free",
                if ro { (200, 200, 401) } else { (401, 401, 201) },
            ),
            (
                "bob by token",
                vec![&bob],
                "free",
                if ro { (200, 200, 403) } else { (403, 403, 201) },
            ),
            (
                "cy read-only token",
                vec![&cy],
                "free",
                if ro { (200, 200, 403) } else { (403, 403, 403) },
            ),
            ("ana admin by Basic", vec![&ana], "free", (200, 200, 201)),
            // Rules beat the default, either way.
            ("anonymous", vec![], "lobby", (200, 200, 401)),
            ("anonymous", vec![], "drop", (401, 401, 201)),
            ("anonymous", vec![], "team-a", (401, 401, 401)),
            ("bob by token", vec![&bob], "team-a", (200, 200, 201)),
            ("bob by token", vec![&bob], "drop", (403, 403, 201)),
        ];
        for (who, headers, room, want) in cases {
            assert_eq!(
                statuses(&s, room, &headers),
                want,
                "{who} in {room} with --default-access {default_access}"
            );
        }
        // GET /rooms lists what the asker may read.
        let listed = |h: &[&str]| -> Vec<String> {
            let mut rooms: Vec<String> = s
                .get_with("/rooms", h)
                .json()
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["room"].as_str().unwrap().to_string())
                .collect();
            rooms.sort();
            rooms
        };
        let everything = ["drop", "free", "lobby", "team-a"];
        assert_eq!(listed(&[&ana]), everything);
        if ro {
            assert_eq!(listed(&[]), ["free", "lobby"]);
            assert_eq!(listed(&[&bob]), ["free", "lobby", "team-a"]);
        } else {
            assert_eq!(listed(&[]), ["lobby"]);
            assert_eq!(listed(&[&bob]), ["lobby", "team-a"]);
        }
        // Not read-write: /metrics is for admins (and the machine itself).
        let far = "X-Forwarded-For: 203.0.113.5";
        assert_eq!(s.get_with("/metrics", &[far]).status, 401);
        assert_eq!(s.get_with("/metrics", &[far, &bob]).status, 403);
        assert_eq!(s.get_with("/metrics", &[far, &ana]).status, 200);
    }
}
