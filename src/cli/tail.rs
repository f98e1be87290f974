//! `smolchat tail`: follow a room in the terminal.
//!
//! Messages go to stdout as `HH:MM user: text` (local time), or as their
//! JSON with `--json`, one per line; a `gap` (history no longer reaches
//! back as far as asked) is marked there too. Joins, leaves, deletions and
//! the connection's ups and downs go to stderr.
//!
//! When the stream ends (the server restarts, a proxy or the network cuts
//! it, nothing arrives for [`IDLE`]) it reconnects by itself with
//! `Last-Event-ID`, after the server's `retry:` and then longer for each
//! failed attempt (up to [`MAX_BACKOFF`]). The server replays what was
//! missed; an id at or below the last one printed is never printed again.
//! Only the first connection's failure, or a refusal that retrying cannot
//! change (a 4xx other than 429), ends it: exit codes as `smolchat say`'s.

use std::io::Write;
use std::time::Duration;

use futures_lite::io::AsyncReadExt;
use http_types::{Method, Request};
use smol::Timer;

use super::client::{body_text, deadline, error_text, Server};
use super::events::{Event, Parser};
use super::localtime::Zone;
use super::{Args, Failure};
use crate::message::{RoomName, Timestamp, UserName};

/// A stream that carries no byte for this long is taken for dead and
/// reopened (the server pings idle streams every 15 s by default).
pub(crate) const IDLE: Duration = Duration::from_secs(90);
/// Longest wait between two attempts to reconnect.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub(super) fn run(
    args: &Args,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    args.only(&[
        "server", "room", "since", "json", "user", "token", "cacert", "help",
    ])?;
    let (server, token) = super::connection(args, env)?;
    let room = RoomName::parse(args.value("room").unwrap_or("lobby"))
        .map_err(|e| Failure::Usage(format!("--room: {e}")))?;
    let since = args
        .value("since")
        .map(|s| {
            s.parse::<u64>()
                .map_err(|_| Failure::Usage(format!("--since: expected a message id, got {s:?}")))
        })
        .transpose()?;
    let user = args
        .value("user")
        .map(|u| UserName::parse(u).map_err(|e| Failure::Usage(format!("--user: {e}"))))
        .transpose()?;
    let mut path = format!("/rooms/{room}/events");
    if let Some(u) = &user {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("user", u.as_str())
            .finish();
        path = format!("{path}?{q}");
    }
    let mut tail = Tail {
        server,
        token,
        path,
        room,
        last: since,
        json: args.flag("json"),
        zone: Zone::local(env("TZ").as_deref()),
        retry: Duration::from_secs(2),
        connected: false,
        ever_connected: false,
        out,
    };
    smol::block_on(tail.follow())
}

/// Why one connection ended.
enum Ended {
    /// The body ended, or the connection broke after it was open.
    Closed(String),
    /// The server said it is stopping: reconnect after this long.
    Stopping(Duration),
    /// Stdout is gone (`smolchat tail | head`): stop quietly.
    Quit,
}

struct Tail<'a> {
    server: Server,
    token: Option<String>,
    path: String,
    room: RoomName,
    /// The last id seen: sent as `Last-Event-ID`, and nothing at or below
    /// it is printed.
    last: Option<u64>,
    json: bool,
    zone: Zone,
    /// The server's `retry:`.
    retry: Duration,
    /// This attempt got a stream.
    connected: bool,
    ever_connected: bool,
    out: &'a mut dyn Write,
}

impl Tail<'_> {
    async fn follow(&mut self) -> Result<(), Failure> {
        let mut failures: u32 = 0;
        loop {
            self.connected = false;
            let wait = match self.once().await {
                Ok(Ended::Quit) => return Ok(()),
                Ok(Ended::Stopping(wait)) => {
                    failures = 0;
                    eprintln!(
                        "-- the server is stopping; reconnecting in {:.1} s",
                        wait.as_secs_f64()
                    );
                    wait
                }
                Ok(Ended::Closed(why)) | Err(Retry::Later(why)) if self.ever_connected => {
                    if self.connected {
                        failures = 0;
                    }
                    failures += 1;
                    let wait = (self.retry * 2u32.pow(failures.min(5) - 1)).min(MAX_BACKOFF);
                    eprintln!("-- {why}; reconnecting in {:.1} s", wait.as_secs_f64());
                    wait
                }
                Ok(Ended::Closed(why)) | Err(Retry::Later(why)) => {
                    return Err(Failure::Failed(why))
                }
                Err(Retry::Never(f)) => return Err(f),
            };
            Timer::after(wait).await;
        }
    }

    /// One connection: open the stream, print what it carries.
    async fn once(&mut self) -> Result<Ended, Retry> {
        let mut req = Request::new(Method::Get, self.server.url(&self.path));
        req.insert_header("accept", "text/event-stream");
        req.insert_header(
            "user-agent",
            concat!("smolchat/", env!("CARGO_PKG_VERSION")),
        );
        if let Some(t) = &self.token {
            req.insert_header("authorization", format!("Bearer {t}"));
        }
        if let Some(id) = self.last {
            req.insert_header("last-event-id", id.to_string());
        }
        let mut res = self
            .server
            .send(req)
            .await
            .map_err(|e| Retry::Later(e.to_string()))?;
        let status = u16::from(res.status());
        if status != 200 {
            let why = body_text(&mut res)
                .await
                .map(|b| format!("{status} {}", error_text(&b)))
                .unwrap_or_else(|e| format!("{status} ({e})"));
            return Err(match status {
                429 | 503 => Retry::Later(why),
                400..=499 => Retry::Never(Failure::Refused(why)),
                _ if self.ever_connected => Retry::Later(why),
                _ => Retry::Never(Failure::Busy(why)),
            });
        }
        if res
            .content_type()
            .is_none_or(|m| m.essence() != "text/event-stream")
        {
            return Err(Retry::Later(format!(
                "{} did not answer with an event stream",
                self.server.shown()
            )));
        }
        self.connected = true;
        let first = !self.ever_connected;
        self.ever_connected = true;
        let mut body = res.take_body();
        let mut parser = Parser::default();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let n = match deadline(IDLE, body.read(&mut chunk)).await {
                Ok(0) => return Ok(Ended::Closed("the stream ended".into())),
                Ok(n) => n,
                Err(e) => return Ok(Ended::Closed(format!("connection lost ({e})"))),
            };
            let events = match parser.feed(&chunk[..n]) {
                Ok(evs) => evs,
                Err(e) => return Ok(Ended::Closed(e.to_string())),
            };
            if let Some(ms) = parser.retry {
                self.retry = Duration::from_millis(ms.clamp(100, 60_000));
            }
            for ev in events {
                match self.show(ev, first) {
                    Shown::Ok => {}
                    Shown::Stop(retry) => return Ok(Ended::Stopping(retry)),
                    Shown::Quit => return Ok(Ended::Quit),
                }
            }
        }
    }

    /// Prints one event where it belongs.
    fn show(&mut self, ev: Event, first: bool) -> Shown {
        let now = self.zone.hh_mm(Timestamp::now().0);
        let json: serde_json::Value = match serde_json::from_str(&ev.data) {
            Ok(v) => v,
            Err(_) => return Shown::Ok,
        };
        let n = |k: &str| json.get(k).and_then(serde_json::Value::as_u64);
        let s = |k: &str| {
            clean(
                json.get(k)
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or(""),
            )
        };
        let line = match ev.name.as_str() {
            "message" => {
                let Some(id) = n("id") else { return Shown::Ok };
                if self.last.is_some_and(|last| id <= last) {
                    return Shown::Ok;
                }
                self.last = Some(id);
                if self.json {
                    ev.data
                } else {
                    let time = Timestamp::parse(&s("time")).unwrap_or_else(Timestamp::now);
                    let text =
                        if json.get("deleted").and_then(serde_json::Value::as_bool) == Some(true) {
                            "(deleted)".to_string()
                        } else {
                            s("text")
                        };
                    format!("{} {}: {text}", self.zone.hh_mm(time.0), s("user"))
                }
            }
            "gap" => {
                let first_held = n("first").map_or("none".to_string(), |f| f.to_string());
                if self.json {
                    format!("{{\"gap\":{}}}", ev.data)
                } else {
                    format!(
                        "-- gap: messages after {} are no longer all held; history resumes at {first_held}",
                        n("since").unwrap_or(0)
                    )
                }
            }
            "delete" => {
                if let Some(id) = ev.id.as_deref().and_then(|i| i.parse::<u64>().ok()) {
                    self.last = Some(self.last.map_or(id, |l| l.max(id)));
                }
                eprintln!("-- message {} was deleted", n("id").unwrap_or(0));
                return Shown::Ok;
            }
            "join" | "leave" => {
                let (arrow, verb) = if ev.name == "join" {
                    ("->", "joined")
                } else {
                    ("<-", "left")
                };
                eprintln!(
                    "{now} {arrow} {} {verb} ({} online)",
                    s("user"),
                    n("online").unwrap_or(0)
                );
                return Shown::Ok;
            }
            "hello" => {
                let online = n("online").unwrap_or(0);
                if first {
                    eprintln!(
                        "-- #{} on {}: {online} online",
                        self.room,
                        self.server.shown()
                    );
                } else {
                    eprintln!("-- reconnected: {online} online");
                }
                return Shown::Ok;
            }
            "shutdown" => {
                let ms = n("retry").unwrap_or(2000).clamp(100, 60_000);
                return Shown::Stop(Duration::from_millis(ms));
            }
            _ => return Shown::Ok,
        };
        if writeln!(self.out, "{line}")
            .and_then(|()| self.out.flush())
            .is_err()
        {
            return Shown::Quit;
        }
        Shown::Ok
    }
}

/// Why a connection attempt failed.
enum Retry {
    /// Try again later (unless it never worked).
    Later(String),
    /// Give up: retrying cannot help.
    Never(Failure),
}

enum Shown {
    Ok,
    Stop(Duration),
    Quit,
}

/// Text from the server made safe for a terminal: control characters
/// (escape sequences could rewrite the screen) become U+FFFD, except
/// newlines and tabs.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_never_reach_the_terminal() {
        assert_eq!(
            clean("hi\x1b[2Jthere\r\n\tx\u{9b}"),
            "hi\u{fffd}[2Jthere\u{fffd}\n\tx\u{fffd}"
        );
    }
}
