//! The benchmark's peer: smolchat's post and stream API written the way a
//! Rust user would write it on axum + tokio, so `scripts/bench.sh
//! --compare` can put smolchat's figures next to a well-known stack's on
//! the same load, in the same minutes (issue 16, "A peer in the
//! benchmark").
//!
//! It serves only what the loadgen's `post`, `fanout`, `idle` and `slow`
//! scenarios use, in smolchat's wire format, so the loadgen reads both
//! unchanged:
//!
//! - `POST /rooms/{room}/messages`, text/plain (user from `X-Chat-User`,
//!   else `anonymous`) or JSON `{"user","text"}`: `201` with the message
//!   JSON `{"id","room","user","text","time"}`, ids per room from 1;
//! - `GET /rooms/{room}/events`: SSE with a `retry:` line, `event: hello`
//!   (`{"room","online","users"}`), then `event: message` / `id:` / `data:`
//!   frames and `: ping` comments on idle streams;
//! - `GET /healthz`, and `GET /metrics` with the one gauge the loadgen
//!   reads, `smolchat_subscribers`.
//!
//! What it leaves out, on purpose: transforms, history and replay, rate
//! limits, connection caps, accounts, presence events. A room is a
//! `tokio::sync::broadcast` channel of smolchat's default capacity (64,
//! `--buffer`); a post never waits, and a subscriber that falls more than
//! 64 messages behind skips what it lost (`RecvError::Lagged`), which the
//! loadgen counts as missing. That is what tokio's broadcast does, and the
//! honest comparison: smolchat makes posts wait instead.
//!
//! Each message is encoded to JSON once, under the room's lock (ids and
//! channel order must agree), and the same text is the `201` body and
//! every subscriber's `data:` line, as in smolchat: the comparison is of
//! the stacks, not of a per-subscriber `serde_json` call.
//!
//! It takes smolchat's flags as the loadgen passes them: `--addr` and
//! `--keepalive` are used, every other `--name value` is ignored. It runs
//! on a tokio runtime with one worker thread, which also runs the accept
//! loop, like smolchat with `--threads 1` on one pinned core.

#![forbid(unsafe_code)]
#![warn(rust_2018_idioms)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use futures_util::stream::{self, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::{self, error::RecvError};

/// Messages a room's channel holds: smolchat's default `--buffer`.
const BUFFER: usize = 64;
/// Longest text accepted, in bytes: smolchat's default `--max-message-bytes`.
const MAX_TEXT: usize = 4096;
/// The `retry:` a stream opens with, as smolchat's.
const RETRY: Duration = Duration::from_millis(2000);

/// The flags the peer uses.
struct Flags {
    addr: SocketAddr,
    keepalive: Duration,
}

/// Reads `--addr` and `--keepalive` (`--name value` or `--name=value`);
/// any other flag is smolchat's and is skipped with its value.
fn parse_flags(mut args: impl Iterator<Item = String>) -> Result<Flags, String> {
    let mut flags = Flags {
        addr: ([0, 0, 0, 0], 8080).into(),
        keepalive: Duration::from_secs(15),
    };
    while let Some(arg) = args.next() {
        let Some(name) = arg.strip_prefix("--") else {
            return Err(format!("unexpected argument {arg:?}"));
        };
        let (name, value) = match name.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => {
                let v = args.next().ok_or(format!("--{name} needs a value"))?;
                (name.to_string(), v)
            }
        };
        match name.as_str() {
            "addr" => flags.addr = value.parse().map_err(|e| format!("--addr {value}: {e}"))?,
            "keepalive" => flags.keepalive = duration(&value)?,
            _ => {}
        }
    }
    Ok(flags)
}

/// `15s`, `500ms`, `2m` or plain seconds.
fn duration(v: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration {v:?}");
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let n: u64 = v[..split].parse().map_err(|_| bad())?;
    match &v[split..] {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(bad()),
    }
}

/// A message as the `201` and the stream carry it.
#[derive(Serialize)]
struct Message<'a> {
    id: u64,
    room: &'a str,
    user: &'a str,
    text: &'a str,
    time: String,
}

/// A JSON post.
#[derive(Deserialize)]
struct Incoming {
    user: Option<String>,
    text: String,
}

/// What a room's channel carries: the id and the message JSON, encoded
/// once and shared.
#[derive(Clone)]
struct Posted {
    id: u64,
    json: Arc<str>,
}

struct Room {
    tx: broadcast::Sender<Posted>,
    last_id: u64,
}

/// Shared state: a `Clone` handle.
#[derive(Clone)]
struct App {
    /// Held only to find a room, number and send a message: never across
    /// an `.await`.
    rooms: Arc<Mutex<HashMap<String, Room>>>,
    keepalive: Duration,
}

impl App {
    fn with_room<T>(&self, name: &str, f: impl FnOnce(&mut Room) -> T) -> T {
        let mut rooms = self.rooms.lock().unwrap();
        if !rooms.contains_key(name) {
            let (tx, _) = broadcast::channel(BUFFER);
            rooms.insert(name.to_string(), Room { tx, last_id: 0 });
        }
        f(rooms.get_mut(name).unwrap())
    }

    /// Numbers, encodes and sends one message: its JSON.
    fn publish(&self, room: &str, user: &str, text: &str) -> Arc<str> {
        self.with_room(room, |r| {
            r.last_id += 1;
            let message = Message {
                id: r.last_id,
                room,
                user,
                text,
                time: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            };
            let json: Arc<str> = serde_json::to_string(&message).unwrap().into();
            // No receiver is not an error: nobody listens yet.
            let _ = r.tx.send(Posted {
                id: r.last_id,
                json: json.clone(),
            });
            json
        })
    }

    /// A receiver on `room` and the room's stream count with it.
    fn subscribe(&self, room: &str) -> (broadcast::Receiver<Posted>, usize) {
        self.with_room(room, |r| {
            let rx = r.tx.subscribe();
            (rx, r.tx.receiver_count())
        })
    }

    fn subscribers(&self) -> usize {
        let rooms = self.rooms.lock().unwrap();
        rooms.values().map(|r| r.tx.receiver_count()).sum()
    }
}

/// Why a post is refused: the status and the error message.
type Refused = (StatusCode, &'static str);

/// The poster and the text of a post, or why it is refused.
fn decode(headers: &HeaderMap, body: &[u8]) -> Result<(String, String), Refused> {
    let refuse = |status: StatusCode, why: &'static str| Err((status, why));
    if body.len() > MAX_TEXT {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "message too large");
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let (user, text) = if json {
        match serde_json::from_slice::<Incoming>(body) {
            Ok(m) => (m.user, m.text),
            Err(_) => return refuse(StatusCode::BAD_REQUEST, "bad json body"),
        }
    } else {
        let Ok(text) = std::str::from_utf8(body) else {
            return refuse(StatusCode::BAD_REQUEST, "body is not utf-8");
        };
        let user = headers
            .get("x-chat-user")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (user, text.to_string())
    };
    if text.trim().is_empty() {
        return refuse(StatusCode::BAD_REQUEST, "empty message");
    }
    let user = user
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "anonymous".into());
    Ok((user, text))
}

async fn post_message(
    State(app): State<App>,
    Path(room): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (user, text) = match decode(&headers, &body) {
        Ok(v) => v,
        Err((status, why)) => {
            let body = format!("{{\"error\":\"{why}\"}}");
            return (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        }
    };
    let json = app.publish(&room, &user, &text);
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        json.to_string(),
    )
        .into_response()
}

#[derive(Serialize)]
struct Hello<'a> {
    room: &'a str,
    online: usize,
    users: [&'a str; 0],
}

async fn events(
    State(app): State<App>,
    Path(room): Path<String>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (rx, online) = app.subscribe(&room);
    let hello = Event::default()
        .event("hello")
        .json_data(Hello {
            room: &room,
            online,
            users: [],
        })
        .unwrap();
    let opening = stream::iter([Ok(Event::default().retry(RETRY)), Ok(hello)]);
    // A lagging receiver skips what it lost and goes on with the oldest
    // message the channel still holds.
    let live = stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(p) => {
                    let ev = Event::default()
                        .event("message")
                        .id(p.id.to_string())
                        .data(&*p.json);
                    return Some((Ok(ev), rx));
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(opening.chain(live)).keep_alive(KeepAlive::new().interval(app.keepalive).text("ping"))
}

async fn metrics(State(app): State<App>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        format!(
            "# TYPE smolchat_subscribers gauge\nsmolchat_subscribers {}\n",
            app.subscribers()
        ),
    )
}

fn router(app: App) -> Router {
    Router::new()
        .route("/rooms/{room}/messages", post(post_message))
        .route("/rooms/{room}/events", get(events))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(app)
}

async fn serve(flags: Flags) -> std::io::Result<()> {
    // A backlog of 1024 as smolchat's: `TcpListener::bind` listens with
    // 128, and the loadgen's waves of 256 connects then overflow it and
    // wait a second for the SYN to be sent again.
    let socket = match flags.addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(flags.addr)?;
    let listener = socket.listen(1024)?;
    let addr = listener.local_addr()?;
    // The loadgen reads this line for the port.
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "peer listening on http://{addr}")?;
        out.flush()?;
    }
    let app = App {
        rooms: Arc::default(),
        keepalive: flags.keepalive,
    };
    // TCP_NODELAY, as smolchat sets it on every connection.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(app)).await
}

fn main() -> ExitCode {
    let flags = match parse_flags(std::env::args().skip(1)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("peer: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    // Spawned, so the accept loop runs on the one worker too and the main
    // thread only waits.
    match runtime.block_on(async { tokio::spawn(serve(flags)).await }) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("peer: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("peer: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Result<Flags, String> {
        parse_flags(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn smolchat_flags_are_skipped_with_their_values() {
        let f = flags(&[
            "--addr",
            "127.0.0.1:0",
            "--rate",
            "0",
            "--transforms",
            "",
            "--keepalive=15s",
            "--threads",
            "1",
        ])
        .unwrap();
        assert_eq!(f.addr, "127.0.0.1:0".parse().unwrap());
        assert_eq!(f.keepalive, Duration::from_secs(15));
    }

    #[test]
    fn durations_take_smolchat_units() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("3"), Ok(Duration::from_secs(3)));
        assert!(duration("3h").is_err());
    }

    #[test]
    fn plain_and_json_posts_decode_alike() {
        let mut h = HeaderMap::new();
        assert_eq!(
            decode(&h, b"hi").ok(),
            Some(("anonymous".into(), "hi".into()))
        );
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert_eq!(
            decode(&h, br#"{"user":"ann","text":"hi"}"#).ok(),
            Some(("ann".into(), "hi".into()))
        );
        assert!(decode(&h, b"{").is_err());
    }
}
