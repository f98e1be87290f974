//! The HTTP API over real sockets: posting in every accepted form, every
//! error status, history, rooms, health, metrics, CORS and the page.

mod support;

use support::Server;

#[test]
fn post_json_form_and_plain_text() {
    let s = Server::start(&[]);
    let r = s.post(
        "/messages",
        "application/json",
        r#"{"user":"ana","text":"hi"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let m = r.json();
    assert_eq!(
        (
            m["id"].as_u64(),
            m["room"].as_str(),
            m["user"].as_str(),
            m["text"].as_str()
        ),
        (Some(1), Some("lobby"), Some("ana"), Some("hi"))
    );
    assert!(m["time"].as_str().unwrap().ends_with('Z'));

    let r = s.post(
        "/messages",
        "application/x-www-form-urlencoded",
        "user=bob&text=hello+there",
    );
    assert_eq!(
        (r.json()["user"].as_str(), r.json()["text"].as_str()),
        (Some("bob"), Some("hello there"))
    );

    // Exactly what `curl -d 'hello world' URL` sends.
    let r = s.post(
        "/messages",
        "application/x-www-form-urlencoded",
        "hello world",
    );
    assert_eq!(
        (r.json()["user"].as_str(), r.json()["text"].as_str()),
        (Some("anonymous"), Some("hello world"))
    );

    let r = s.post("/messages?user=cy", "text/plain", "plain text");
    assert_eq!(r.json()["user"], "cy");
    let r = s.post_with(
        "/messages",
        &["Content-Type: text/plain", "X-Chat-User: Zo%C3%AB"],
        b"from a header",
    );
    assert_eq!(r.json()["user"], "Zoë");
    assert_eq!(r.json()["id"], 5);
}

#[test]
fn rooms_are_separate_and_listed() {
    let s = Server::start(&[]);
    assert_eq!(s.say("kitchen", "ana", "one").json()["id"], 1);
    assert_eq!(s.say("kitchen", "ana", "two").json()["id"], 2);
    assert_eq!(
        s.say("garden", "bob", "first").json()["id"],
        1,
        "ids are per room"
    );
    let rooms = s.get("/rooms").json();
    assert_eq!(
        rooms,
        serde_json::json!([
            {"room": "garden", "online": 0, "users": [], "last_id": 1},
            {"room": "kitchen", "online": 0, "users": [], "last_id": 2},
        ])
    );
}

#[test]
fn history_pages_oldest_first() {
    let s = Server::start(&[]);
    for i in 1..=5 {
        s.say("k", "ana", &format!("m{i}"));
    }
    let ids = |path: &str| -> Vec<u64> {
        s.get(path)
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(ids("/rooms/k/messages"), [1, 2, 3, 4, 5]);
    assert_eq!(ids("/rooms/k/messages?since=2"), [3, 4, 5]);
    assert_eq!(ids("/rooms/k/messages?since=1&limit=2"), [2, 3]);
    assert_eq!(ids("/rooms/k/messages?limit=2"), [4, 5]);
    assert_eq!(ids("/rooms/empty/messages"), Vec::<u64>::new());
    assert_eq!(s.get("/rooms/k/messages?since=x").status, 400);
    assert_eq!(s.get("/rooms/k/messages?limit=0").status, 400);
}

#[test]
fn every_error_status_has_a_json_body() {
    let s = Server::start(&["--max-message-bytes", "64", "--max-rooms", "2"]);
    let cases: Vec<(support::Response, u16, &str)> = vec![
        (s.post("/messages", "text/plain", "   "), 400, "empty text"),
        (
            s.post("/messages", "application/json", "{nope"),
            400,
            "invalid json",
        ),
        (
            s.post_with("/messages", &["Content-Type: text/plain"], b"\xff\xfe"),
            400,
            "utf-8",
        ),
        (
            s.post(
                &format!("/messages?user={}", "u".repeat(33)),
                "text/plain",
                "x",
            ),
            400,
            "user name",
        ),
        (
            s.post("/rooms/bad!name/messages", "text/plain", "x"),
            400,
            "room name",
        ),
        (s.get("/nowhere"), 404, "not found"),
        (
            s.raw(b"DELETE /messages HTTP/1.1\r\nHost: t\r\n\r\n"),
            405,
            "method not allowed",
        ),
        (
            s.post("/messages", "text/plain", &"x".repeat(65)),
            413,
            "too large",
        ),
        (
            s.post("/messages", "application/xml", "<x/>"),
            415,
            "content type",
        ),
    ];
    for (r, status, needle) in cases {
        assert_eq!(r.status, status, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(
            r.error().contains(needle),
            "{status}: {:?} should mention {needle:?}",
            r.error()
        );
    }
    // --max-rooms 2: a third room cannot be created.
    assert_eq!(s.say("a", "u", "x").status, 201);
    assert_eq!(s.say("b", "u", "x").status, 201);
    let r = s.say("c", "u", "x");
    assert_eq!((r.status, r.error().as_str()), (503, "too many rooms"));
    assert_eq!(s.metric("smolchat_posts_refused_total{status=\"413\"}"), 1);
    assert_eq!(s.metric("smolchat_posts_refused_total{status=\"400\"}"), 5);
}

#[test]
fn the_smallest_message_limit_works() {
    // --max-message-bytes takes 16 at the least: bodies at and over it.
    let s = Server::start(&["--max-message-bytes", "16", "--rate", "0"]);
    for (body, status) in [
        ("hi", 201),
        ("0123456789abcdef", 201),
        ("0123456789abcdefg", 413),
    ] {
        let r = s.raw(
            format!(
                "POST /messages HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        assert_eq!(r.status, status, "{body}: {}", r.text());
    }
    assert_eq!(s.metric("smolchat_panics_total"), 0);
}

#[test]
fn chunked_bodies_are_bounded_too() {
    let s = Server::start(&["--max-message-bytes", "64"]);
    let ok = b"POST /messages HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let r = s.raw(ok);
    assert_eq!(
        (r.status, r.json()["text"].as_str()),
        (201, Some("hello world"))
    );
    let mut big = b"POST /messages HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..10 {
        big.extend_from_slice(b"10\r\n0123456789abcdef\r\n");
    }
    big.extend_from_slice(b"0\r\n\r\n");
    let r = s.raw(&big);
    assert_eq!(r.status, 413, "{}", r.text());
}

#[test]
fn rate_limit_answers_429_with_retry_after() {
    let s = Server::start(&["--rate", "1", "--rate-burst", "2"]);
    assert_eq!(s.say("r", "a", "1").status, 201);
    assert_eq!(s.say("r", "a", "2").status, 201);
    let r = s.say("r", "a", "3");
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.error().contains("too many posts"));
    // Nothing was stored for the refused post.
    assert_eq!(
        s.get("/rooms/r/messages").json().as_array().unwrap().len(),
        2
    );

    let off = Server::start(&["--rate", "0"]);
    for i in 0..30 {
        assert_eq!(off.say("r", "a", &i.to_string()).status, 201);
    }
}

#[test]
fn health_metrics_and_page() {
    let s = Server::start(&[]);
    let r = s.get("/healthz");
    assert_eq!(r.status, 200);
    let h = r.json();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["memory_limit_bytes"], 64 << 20);
    assert!(h["memory_bytes"].as_u64().unwrap() < 1 << 20, "{h}");
    s.say("lobby", "a", "x");
    let m = s.get("/metrics");
    assert!(m
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    for name in [
        "smolchat_connections_open",
        "smolchat_subscribers",
        "smolchat_rooms",
        "smolchat_messages_published_total",
        "smolchat_subscribers_evicted_total",
        "smolchat_posts_refused_total{status=\"429\"}",
        "smolchat_memory_bytes",
        "smolchat_memory_limit_bytes",
        "smolchat_panics_total",
    ] {
        assert!(m.text().contains(&format!("\n{name} ")), "{name} missing");
    }
    assert_eq!(s.metric("smolchat_messages_published_total"), 1);
    assert_eq!(s.metric("smolchat_rooms"), 1);

    let page = s.get("/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .contains("default-src 'self'"));
    assert!(page.text().contains("<script src=\"/app.js\""));
    let etag = page.header("etag").unwrap().to_string();
    let again = s.get_with("/", &[&format!("If-None-Match: {etag}")]);
    assert_eq!((again.status, again.body.len()), (304, 0));
    assert_eq!(
        s.get("/app.js").header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
}

#[test]
fn cors_and_preflight_follow_allow_origin() {
    let s = Server::start(&["--allow-origin", "https://chat.example"]);
    let pre = s.raw(b"OPTIONS /messages HTTP/1.1\r\nHost: t\r\nOrigin: https://chat.example\r\nAccess-Control-Request-Method: POST\r\n\r\n");
    assert_eq!(pre.status, 204);
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("https://chat.example")
    );
    assert!(pre
        .header("access-control-allow-headers")
        .unwrap()
        .contains("content-type"));
    let star = s.raw(b"OPTIONS * HTTP/1.1\r\nHost: t\r\nOrigin: https://chat.example\r\n\r\n");
    assert_eq!(star.status, 204);
    assert_eq!(
        star.header("access-control-allow-origin"),
        Some("https://chat.example")
    );
    let r = s.get_with("/rooms", &["Origin: https://chat.example"]);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://chat.example")
    );
    let r = s.get_with("/rooms", &["Origin: https://elsewhere.example"]);
    assert_eq!(r.header("access-control-allow-origin"), None);
    // A post's `201`, written without a full response when it needs no
    // more fields, gets them when the origin is allowed.
    let post = |origin: &str| {
        s.post_with(
            "/rooms/cors/messages",
            &["Content-Type: text/plain", origin],
            b"hi",
        )
    };
    let r = post("Origin: https://chat.example");
    assert_eq!(r.status, 201);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://chat.example")
    );
    assert_eq!(r.header("vary"), Some("origin"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let r = post("Origin: https://elsewhere.example");
    assert_eq!(r.status, 201);
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let sse = s.sse_with("/events", &["Origin: https://chat.example"]);
    assert_eq!(
        sse.response.header("access-control-allow-origin"),
        Some("https://chat.example")
    );

    let any = Server::start(&["--allow-origin", "*"]);
    assert_eq!(
        any.get_with("/rooms", &["Origin: https://x.example"])
            .header("access-control-allow-origin"),
        Some("*")
    );
    let none = Server::start(&[]);
    assert_eq!(
        none.get_with("/rooms", &["Origin: https://x.example"])
            .header("access-control-allow-origin"),
        None
    );
}

#[test]
fn over_max_connections_gets_503_and_close() {
    let s = Server::start(&["--max-connections", "2"]);
    let _a = s.sse("/events");
    let _b = s.sse("/events");
    let r = s.get("/healthz");
    assert_eq!(r.status, 503);
    assert_eq!(r.error(), "too many connections");
    drop(_a);
    // The slot frees once the server sees the close.
    let deadline = std::time::Instant::now() + support::WAIT;
    loop {
        let r = s.get("/healthz");
        if r.status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "slot never freed");
    }
    assert!(s.metric("smolchat_connections_refused_total") >= 1);
}

#[test]
fn every_response_carries_the_security_headers() {
    let s = Server::start(&["--max-connections", "3", "--rate", "1", "--rate-burst", "1"]);
    let check = |what: &str, r: &support::Response| {
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{what}: {}",
            r.status
        );
        assert_eq!(
            r.header("referrer-policy"),
            Some("no-referrer"),
            "{what}: {}",
            r.status
        );
    };
    let page = s.get("/");
    check("page", &page);
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .contains("frame-ancestors 'none'"));
    for path in [
        "/app.js",
        "/style.css",
        "/healthz",
        "/metrics",
        "/rooms",
        "/messages",
        "/nope",
    ] {
        check(path, &s.get(path));
    }
    check("201", &s.post("/messages", "text/plain", "hi"));
    check("429", &s.post("/messages", "text/plain", "again"));
    check("415", &s.post("/messages", "image/png", "x"));
    check(
        "405",
        &s.raw(b"DELETE /messages HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
    );
    check(
        "204",
        &s.raw(b"OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
    );
    check(
        "431",
        &s.raw(
            format!(
                "GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
                "a".repeat(9000)
            )
            .as_bytes(),
        ),
    );
    check("505", &s.raw(b"GET / HTTP/2.0\r\nHost: t\r\n\r\n"));
    check(
        "400",
        &s.raw(b"GET / HTTP/1.1\r\nHost: t\r\nX: caf\xc3\xa9\r\n\r\n"),
    );
    let stream = s.sse("/events");
    check("stream", &stream.response);
    // Over --max-connections: refused before any request is read.
    let _held: Vec<_> = (0..2).map(|_| s.connect()).collect();
    let deadline = std::time::Instant::now() + support::WAIT;
    let refused = loop {
        let r = s.get("/healthz");
        if r.status == 503 {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "never refused");
    };
    check("503 busy", &refused);
}

#[test]
fn a_post_retried_with_its_idempotency_key_is_answered_once() {
    let s = Server::start(&["--rate", "0"]);
    let mut stream = s.sse("/rooms/idem/events");
    stream.until("hello");
    let post = |key: &str, text: &str| {
        s.post_with(
            "/rooms/idem/messages",
            &[
                "Content-Type: text/plain",
                &format!("Idempotency-Key: {key}"),
            ],
            text.as_bytes(),
        )
    };
    let first = post("k-1", "hello once");
    assert_eq!(first.status, 201, "{}", first.text());
    assert_eq!(first.header("idempotent-replayed"), None);
    // The retry gets the same answer, marked, and makes no message.
    let again = post("k-1", "hello once");
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json(), first.json());
    // The same key with another message is refused; a new key posts.
    let other = post("k-1", "something else");
    assert_eq!(other.status, 422, "{}", other.text());
    assert!(
        other.error().contains("Idempotency-Key"),
        "{}",
        other.error()
    );
    let second = post("k-2", "hello twice");
    assert_eq!(second.json()["id"].as_u64(), Some(2));
    // The same key in another room is another post.
    let elsewhere = s.post_with(
        "/rooms/idem2/messages",
        &["Content-Type: text/plain", "Idempotency-Key: k-1"],
        b"hello once",
    );
    assert_eq!(
        (elsewhere.status, elsewhere.json()["id"].as_u64()),
        (201, Some(1))
    );
    // Streams and history saw each message once.
    let got: Vec<_> = stream
        .messages(2)
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, ["hello once", "hello twice"]);
    let history = s.get("/rooms/idem/messages").json();
    assert_eq!(history.as_array().map(Vec::len), Some(2));
    // Keys are 1 to 128 visible ASCII characters.
    for bad in ["two words", &"x".repeat(129)] {
        let r = post(bad, "hi");
        assert_eq!(r.status, 400, "{bad:?}: {}", r.text());
        assert!(r.error().contains("Idempotency-Key"));
    }
}

#[test]
fn a_refused_post_leaves_its_idempotency_key_free() {
    let s = Server::start(&["--rate", "0", "--censor-mode", "refuse"]);
    let post = |text: &str| {
        s.post_with(
            "/rooms/idem/messages",
            &["Content-Type: text/plain", "Idempotency-Key: again"],
            text.as_bytes(),
        )
    };
    // Refused (422) made nothing: the same key and message post again,
    // and are refused again; nothing was remembered for them.
    assert_eq!(post("you shit").status, 422);
    assert_eq!(post("you shit").status, 422);
    assert_eq!(
        s.get("/rooms/idem/messages")
            .json()
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    // The key is free: a corrected message posts under it.
    let r = post("you ship");
    assert_eq!((r.status, r.json()["id"].as_u64()), (201, Some(1)));
    assert_eq!(r.header("idempotent-replayed"), None);
}
