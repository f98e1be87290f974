//! The subcommands, one file each. `main` hands them the arguments after
//! the subcommand's name.
//!
//! - `smolchat user`, `smolchat token` and `smolchat access` manage
//!   accounts in the database file named by `--db` (or `SMOLCHAT_DB`,
//!   default `smolchat.db`), or in Redis with `--redis URL` (or
//!   `SMOLCHAT_REDIS`), also while servers run on it: they see the change
//!   within a second.
//! - `smolchat export` and `smolchat import` move a SQLite box's data to
//!   Redis ([`transfer`]).
//! - `smolchat say` and `smolchat tail` are a terminal client of a running
//!   server (`--server`, or `SMOLCHAT_SERVER`, default
//!   `http://localhost:8080`), over async-h1's client side ([`client`]).
//!
//! Errors are one line on stderr: exit code 2 for a usage error, 1 for one
//! the database, the terminal or the network gave, 3 for a request the
//! server refused, 4 for a server too busy or failing.

mod access;
#[cfg(feature = "client")]
mod client;
#[cfg(feature = "client")]
mod events;
#[cfg(feature = "client")]
mod localtime;
#[cfg(feature = "client")]
mod say;
#[cfg(feature = "client")]
mod tail;
mod token;
mod transfer;
mod user;

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::path::PathBuf;

use crate::accounts::store::AccountsDb;

/// The subcommand names `main` dispatches here.
pub const SUBCOMMANDS: &[&str] = &["user", "token", "access", "export", "import", "say", "tail"];

/// Why a subcommand failed.
#[derive(Debug)]
pub enum Failure {
    /// Bad arguments (exit code 2).
    Usage(String),
    /// The database, the terminal, the network or the system failed
    /// (exit code 1).
    Failed(String),
    /// The server refused the request: a 4xx (exit code 3).
    Refused(String),
    /// The server is too busy (429, 503) or failing (exit code 4).
    Busy(String),
}

impl Failure {
    /// The process exit code.
    pub fn code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Failed(_) => 1,
            Failure::Refused(_) => 3,
            Failure::Busy(_) => 4,
        }
    }

    /// The message, one line.
    pub fn message(&self) -> &str {
        match self {
            Failure::Usage(m) | Failure::Failed(m) | Failure::Refused(m) | Failure::Busy(m) => m,
        }
    }
}

/// `n` and `word`, with an `s` unless `n` is 1: `1 token`, `3 tokens`.
fn count(n: impl Into<u64>, word: &str) -> String {
    let n = n.into();
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

fn usage<T>(msg: impl Into<String>) -> Result<T, Failure> {
    Err(Failure::Usage(msg.into()))
}

fn failed(e: impl std::fmt::Display) -> Failure {
    Failure::Failed(e.to_string())
}

/// Arguments split into positionals and `--flag [value]` pairs.
pub(crate) struct Args {
    pub(crate) positional: Vec<String>,
    flags: Vec<(String, Option<String>)>,
}

impl Args {
    /// Splits `args`; `with_value` names the flags that take a value.
    /// No subcommand has short flags: `-h` is `--help`, and any other word
    /// that starts with one `-` is a value when `dash_values` (a token id
    /// is Base64url and may start with `-`, or with `--`: such a word of a
    /// token id's shape is a value too, as no flag has it), else an unknown
    /// flag. After `--` every word is a value.
    fn parse(args: Vec<OsString>, with_value: &[&str], dash_values: bool) -> Result<Args, Failure> {
        let mut positional = Vec::new();
        let mut flags = Vec::new();
        let mut parser = lexopt::Parser::from_args(args);
        loop {
            if dash_values {
                if let Some(word) = dash_word(&mut parser) {
                    positional.push(word);
                    continue;
                }
            }
            match parser.next() {
                Ok(Some(lexopt::Arg::Long(name))) => {
                    let name = name.to_string();
                    let value = if with_value.contains(&name.as_str()) {
                        let v = parser
                            .value()
                            .map_err(|_| Failure::Usage(format!("--{name} needs a value")))?;
                        Some(
                            v.into_string()
                                .map_err(|_| Failure::Usage(format!("--{name}: not UTF-8")))?,
                        )
                    } else {
                        None
                    };
                    flags.push((name, value));
                }
                Ok(Some(lexopt::Arg::Short('h'))) => flags.push(("help".into(), None)),
                Ok(Some(lexopt::Arg::Short(c))) => {
                    return usage(format!(
                        "unknown flag -{c} (a value that starts with - goes after --)"
                    ))
                }
                Ok(Some(lexopt::Arg::Value(v))) => positional.push(
                    v.into_string()
                        .map_err(|_| Failure::Usage("an argument is not UTF-8".into()))?,
                ),
                Ok(None) => break,
                Err(e) => return usage(e.to_string()),
            }
        }
        Ok(Args { positional, flags })
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|(n, _)| n == name)
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// Fails on a flag not in `known`.
    fn only(&self, known: &[&str]) -> Result<(), Failure> {
        match self
            .flags
            .iter()
            .find(|(n, _)| !known.contains(&n.as_str()))
        {
            Some((n, _)) => usage(format!("unknown flag --{n}")),
            None => Ok(()),
        }
    }
}

/// The next word when it starts with one `-` and is not `-h`: a value such
/// as the token id `-ZZ_eock`, which `lexopt` would read as flags; or when
/// it is a token id that starts with `--` (`--5QTLoj`: eight Base64url
/// characters, a shape no flag has), which `lexopt` would read as a flag.
fn dash_word(parser: &mut lexopt::Parser) -> Option<String> {
    let word = parser.try_raw_args()?.next_if(|w| {
        w.to_str().is_some_and(|w| {
            let one_dash = w.len() > 1 && w.starts_with('-') && !w.starts_with("--") && w != "-h";
            one_dash || (w.starts_with("--") && is_token_id(w))
        })
    })?;
    word.into_string().ok()
}

/// A token id's shape: [`crate::accounts::secret::TOKEN_ID_LEN`] Base64url
/// characters.
fn is_token_id(w: &str) -> bool {
    w.len() == crate::accounts::secret::TOKEN_ID_LEN
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Runs subcommand `name` with `args` (after the name); `env` looks up
/// `SMOLCHAT_DB` (and for the client `SMOLCHAT_SERVER`, `SMOLCHAT_TOKEN`,
/// `SSL_CERT_FILE`, `TZ`). Output goes to `out`.
pub fn run(
    name: &str,
    args: Vec<OsString>,
    env: impl Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    #[cfg(not(feature = "client"))]
    if matches!(name, "say" | "tail") {
        return Err(Failure::Failed(NO_CLIENT.into()));
    }
    #[cfg(feature = "client")]
    if matches!(name, "say" | "tail") {
        let args = Args::parse(
            args,
            &["server", "room", "user", "token", "cacert", "since"],
            false,
        )?;
        if args.flag("help") {
            let _ = write!(out, "{}", help(name));
            return Ok(());
        }
        return match name {
            "say" => say::run(&args, &env, out),
            _ => tail::run(&args, &env, out),
        };
    }
    let args = Args::parse(args, &["db", "expires", "label", "redis"], true)?;
    if args.flag("help") {
        let _ = write!(out, "{}", help(name));
        return Ok(());
    }
    if name == "export" {
        let db = args
            .value("db")
            .map(str::to_string)
            .or_else(|| env("SMOLCHAT_DB"))
            .unwrap_or_else(|| "smolchat.db".into());
        return transfer::export(&args, &db, out);
    }
    if name == "import" {
        let Some(url) = args
            .value("redis")
            .map(str::to_string)
            .or_else(|| env("SMOLCHAT_REDIS"))
        else {
            return usage("smolchat import needs --redis URL (or SMOLCHAT_REDIS)");
        };
        return transfer::import(&args, &url, &mut std::io::stdin().lock(), out);
    }
    // As the server: Redis when named (flag, or SMOLCHAT_REDIS unless
    // --db is given), else the file.
    let redis = args.value("redis").map(str::to_string).or_else(|| {
        args.value("db")
            .is_none()
            .then(|| env("SMOLCHAT_REDIS"))
            .flatten()
    });
    let db = args
        .value("db")
        .map(str::to_string)
        .or_else(|| env("SMOLCHAT_DB"))
        .unwrap_or_else(|| "smolchat.db".into());
    if redis.is_none() && db == ":memory:" {
        return usage(
            "accounts live in the database file; --db :memory: keeps none (give the server's --db)",
        );
    }
    let open = || match &redis {
        Some(url) => AccountsDb::open_redis(url).map_err(failed),
        None => AccountsDb::open(&PathBuf::from(&db)).map_err(failed),
    };
    match name {
        "user" => user::run(&args, open, out),
        "token" => token::run(&args, open, out),
        "access" => access::run(&args, open, out),
        _ => usage(format!("unknown subcommand {name}")),
    }
}

/// Why `say` and `tail` are refused by a build without the `client`
/// feature.
#[cfg(not(feature = "client"))]
pub const NO_CLIENT: &str = "this smolchat was built without the terminal client (the ARM builds leave it out to stay small): use smolchat say/tail from another machine, or build it with cargo build --release --features client";

/// The server and token of `smolchat say` / `tail`: `--server` or
/// `SMOLCHAT_SERVER` (default `http://localhost:8080`), `--token` or
/// `SMOLCHAT_TOKEN`, `--cacert` or the system's roots for `https://`.
#[cfg(feature = "client")]
fn connection(
    args: &Args,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(client::Server, Option<String>), Failure> {
    let url = args
        .value("server")
        .map(str::to_string)
        .or_else(|| env("SMOLCHAT_SERVER").filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "http://localhost:8080".into());
    let token = args
        .value("token")
        .map(str::to_string)
        .or_else(|| env("SMOLCHAT_TOKEN").filter(|s| !s.is_empty()));
    if let Some(t) = &token {
        // It goes into a header: printable ASCII only.
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return usage("--token: a token is printable ascii without spaces");
        }
    }
    let server = client::Server::new(&url, args.value("cacert"), env("SSL_CERT_FILE").as_deref())
        .map_err(Failure::Usage)?;
    Ok((server, token))
}

/// The help text of a subcommand.
pub fn help(name: &str) -> String {
    if name == "say" || name == "tail" {
        return "smolchat say [--room ROOM] [--user NAME] [--retry] TEXT...   post a message, print its id\n\
                smolchat say [--lines] -                                     post stdin (one message per line with --lines)\n\
                smolchat tail [--room ROOM] [--since ID] [--json] [--user NAME]   follow a room: HH:MM user: text\n\
                \n\
                Both take --server URL (or SMOLCHAT_SERVER; default http://localhost:8080), --token TOKEN\n\
                (or SMOLCHAT_TOKEN) and, for https:// with a local CA, --cacert FILE.\n\
                --retry waits out 429, 503 and 409 (Retry-After) and tries again, under one Idempotency-Key.\n\
                tail reconnects by itself with Last-Event-ID and never prints a message twice.\n\
                Exit codes: 0 ok, 1 network, 2 usage, 3 refused (4xx), 4 busy or failing (429, 5xx).\n"
            .to_string();
    }
    let body = match name {
        "export" | "import" => {
            return "smolchat export [--db FILE]   every room, message, user, token and rule as JSON lines on stdout\n\
                    smolchat import --redis URL   read them on stdin into Redis, keeping ids, password hashes and tokens\n\n\
                    Moving one box to Redis: smolchat export --db smolchat.db | smolchat import --redis redis://HOST:6379/0\n"
                .into()
        }
        "user" => {
            "smolchat user add NAME [--admin] [--password-stdin]   add an account (password asked twice, or one line on stdin)\n\
             smolchat user passwd NAME [--password-stdin]          change its password (ends its browser sessions)\n\
             smolchat user del NAME                                delete it, with its tokens, sessions and rules\n\
             smolchat user list                                    list accounts\n"
        }
        "token" => {
            "smolchat token add NAME [--expires 30d] [--read-only] [--label TEXT]   make a token (printed once)\n\
             smolchat token list [NAME]                                           list tokens (ids, never the tokens)\n\
             smolchat token remove TOKEN-ID                                       revoke one\n"
        }
        _ => {
            "smolchat access USER|everyone ROOM-PATTERN rw|ro|wo|deny   set a rule (patterns like team-*)\n\
             smolchat access list                                      list rules\n\
             smolchat access reset                                     delete every rule\n"
        }
    };
    format!(
        "{body}\nEvery subcommand takes --db PATH (or SMOLCHAT_DB; default smolchat.db), \
         or --redis URL (or SMOLCHAT_REDIS) for servers on Redis, \
         also while servers run on it: they see the change within a second.\n"
    )
}

/// A new password: one line from stdin, or asked twice on the terminal
/// without echo. At least 8 characters.
fn new_password(from_stdin: bool) -> Result<String, Failure> {
    let pw = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(failed)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        let a = ask_hidden("password: ")?;
        let b = ask_hidden("again: ")?;
        if a != b {
            return Err(Failure::Failed("the passwords differ".into()));
        }
        a
    };
    if pw.chars().count() < 8 {
        return usage("a password needs at least 8 characters");
    }
    Ok(pw)
}

/// Reads a line from the terminal with echo off.
fn ask_hidden(prompt: &str) -> Result<String, Failure> {
    use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|e| {
            Failure::Failed(format!(
                "no terminal to ask for a password ({e}); use --password-stdin"
            ))
        })?;
    let saved = tcgetattr(&tty).map_err(failed)?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&tty, OptionalActions::Now, &quiet).map_err(failed)?;
    let mut w = &tty;
    let _ = w.write_all(prompt.as_bytes());
    let _ = w.flush();
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    let _ = tcsetattr(&tty, OptionalActions::Now, &saved);
    let _ = w.write_all(b"\n");
    read.map_err(failed)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str], dash_values: bool) -> Result<Args, Failure> {
        let args = words.iter().map(OsString::from).collect();
        Args::parse(args, &["db"], dash_values)
    }

    #[test]
    fn counts_say_one_token_and_two_tokens() {
        assert_eq!(count(1u32, "token"), "1 token");
        assert_eq!(count(0u32, "token"), "0 tokens");
        assert_eq!(count(2u64, "rule"), "2 rules");
    }

    #[test]
    fn a_token_id_that_starts_with_a_dash_is_a_value() {
        let a = parse(&["remove", "-ZZ_eock", "--db", "-x.db"], true).unwrap();
        assert_eq!(a.positional, ["remove", "-ZZ_eock"]);
        assert_eq!(a.value("db"), Some("-x.db"));
        let a = parse(&["remove", "--", "-ZZ_eock", "--db"], true).unwrap();
        assert_eq!(a.positional, ["remove", "-ZZ_eock", "--db"]);
        // One in 4,096 ids starts with two: found by tests/redis.rs.
        let a = parse(&["remove", "--5QTLoj", "--db", "x.db"], true).unwrap();
        assert_eq!(a.positional, ["remove", "--5QTLoj"]);
        assert_eq!(a.value("db"), Some("x.db"));
        assert!(parse(&["remove", "--5QTLoj"], false).is_ok_and(|a| a.flag("5QTLoj")));
        // A flag is still a flag, and a longer word is not an id.
        assert!(parse(&["--help"], true).unwrap().flag("help"));
        let a = parse(&["remove", "--5QTLoj9"], true).unwrap();
        assert_eq!((a.positional.len(), a.flag("5QTLoj9")), (1, true));
        assert!(parse(&["-h"], true).unwrap().flag("help"));
        assert_eq!(parse(&["--", "-h"], true).unwrap().positional, ["-h"]);
    }

    #[test]
    fn without_dash_values_a_dash_word_is_an_unknown_flag() {
        let e = parse(&["-x"], false).err().unwrap();
        assert!(
            e.message().starts_with("unknown flag -x"),
            "{}",
            e.message()
        );
        assert_eq!(parse(&["--", "-x"], false).unwrap().positional, ["-x"]);
        assert!(parse(&["-h"], false).unwrap().flag("help"));
    }
}
