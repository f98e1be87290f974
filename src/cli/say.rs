//! `smolchat say`: post a message (or one per line of stdin) and print
//! its id.
//!
//! Exit codes: 0 posted; 1 the server could not be reached or answered
//! nonsense; 2 usage; 3 the server refused the message (a 4xx: too long,
//! refused by a transform, not allowed...); 4 the server is busy or failing
//! (`429`, `503` and `409` unless `--retry` waited them out, other 5xx).
//!
//! Each message carries an `Idempotency-Key`, the same on every retry: a
//! `503` whose post was stored all the same (a proxy gave up waiting for
//! the answer) is answered `201` with that message on the retry, not
//! posted twice.

use std::io::{Read, Write};
use std::time::Duration;

use http_types::{Method, Request};

use super::client::{body_text, error_text, Error, Server};
use super::{Args, Failure};
use crate::message::{RoomName, UserName};

/// Attempts of one post with `--retry` (each `429`/`503` waits its
/// `Retry-After`, at most [`MAX_WAIT`]).
const MAX_TRIES: u32 = 10;
/// Longest `Retry-After` honoured.
const MAX_WAIT: Duration = Duration::from_secs(60);

pub(super) fn run(
    args: &Args,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    args.only(&[
        "server", "room", "user", "token", "cacert", "retry", "lines", "help",
    ])?;
    let (server, token) = super::connection(args, env)?;
    let room = RoomName::parse(args.value("room").unwrap_or("lobby"))
        .map_err(|e| Failure::Usage(format!("--room: {e}")))?;
    let user = args
        .value("user")
        .map(|u| UserName::parse(u).map_err(|e| Failure::Usage(format!("--user: {e}"))))
        .transpose()?;
    let texts: Vec<String> = match args.positional.as_slice() {
        [] => {
            return Err(Failure::Usage(
                "say what? give TEXT, or - to read stdin".into(),
            ))
        }
        [dash] if dash == "-" => {
            let mut input = String::new();
            std::io::stdin()
                .lock()
                .take(16 << 20)
                .read_to_string(&mut input)
                .map_err(|e| Failure::Failed(format!("reading stdin: {e}")))?;
            if args.flag("lines") {
                input
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_string)
                    .collect()
            } else {
                vec![input.strip_suffix('\n').unwrap_or(&input).to_string()]
            }
        }
        words => {
            if args.flag("lines") {
                return Err(Failure::Usage(
                    "--lines reads stdin: give - as the TEXT".into(),
                ));
            }
            vec![words.join(" ")]
        }
    };
    let path = format!("/rooms/{room}/messages");
    smol::block_on(async {
        for text in &texts {
            let id = post(
                &server,
                &path,
                token.as_deref(),
                user.as_ref(),
                text,
                args.flag("retry"),
            )
            .await?;
            let _ = writeln!(out, "{id}");
            let _ = out.flush();
        }
        Ok(())
    })
}

/// Posts one message; its id, or why not.
async fn post(
    server: &Server,
    path: &str,
    token: Option<&str>,
    user: Option<&UserName>,
    text: &str,
    retry: bool,
) -> Result<u64, Failure> {
    let mut body = serde_json::json!({ "text": text });
    if let Some(u) = user {
        body["user"] = u.as_str().into();
    }
    let body = body.to_string();
    let key = idempotency_key()?;
    let mut tries = 0;
    loop {
        tries += 1;
        let mut req = Request::new(Method::Post, server.url(path));
        req.insert_header("content-type", "application/json");
        req.insert_header("idempotency-key", key.as_str());
        req.insert_header(
            "user-agent",
            concat!("smolchat/", env!("CARGO_PKG_VERSION")),
        );
        if let Some(t) = token {
            req.insert_header("authorization", format!("Bearer {t}"));
        }
        req.set_body(body.clone());
        let mut res = server.send(req).await.map_err(network)?;
        let status = u16::from(res.status());
        let wait = res
            .header("retry-after")
            .and_then(|v| v.last().as_str().trim().parse::<u64>().ok());
        let text = body_text(&mut res).await.map_err(network)?;
        match status {
            201 => {
                #[derive(serde::Deserialize)]
                struct Posted {
                    id: u64,
                }
                return serde_json::from_str::<Posted>(&text)
                    .map(|p| p.id)
                    .map_err(|_| network(Error::BadResponse("a 201 without a message id".into())));
            }
            // 409: a try before this one is still in flight on the server.
            409 | 429 | 503 if retry && tries < MAX_TRIES => {
                let wait = Duration::from_secs(wait.unwrap_or(1)).min(MAX_WAIT);
                eprintln!(
                    "smolchat say: {status} {}; retrying in {} s",
                    error_text(&text),
                    wait.as_secs()
                );
                smol::Timer::after(wait).await;
            }
            409 | 429 | 503 => {
                let hint = if retry {
                    ""
                } else {
                    " (--retry waits and tries again)"
                };
                return Err(Failure::Busy(format!(
                    "{status} {}{hint}",
                    error_text(&text)
                )));
            }
            400..=499 => return Err(Failure::Refused(format!("{status} {}", error_text(&text)))),
            _ => return Err(Failure::Busy(format!("{status} {}", error_text(&text)))),
        }
    }
}

/// 128 random bits in hex: one message's key, for all its tries.
fn idempotency_key() -> Result<String, Failure> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|e| Failure::Failed(format!("no randomness: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn network(e: Error) -> Failure {
    Failure::Failed(e.to_string())
}
