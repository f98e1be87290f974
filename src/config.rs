//! Command-line flags and `SMOLCHAT_*` environment variables, turned once
//! into a validated [`Config`].
//!
//! Every flag is listed in one table ([`FLAGS`]) that drives parsing, the
//! environment lookup and `--help`, so the three can never disagree. A flag
//! on the command line beats its `SMOLCHAT_<FLAG>` variable, which beats the
//! default. Parsing is a pure function of the arguments and an environment
//! lookup, so it is tested without touching the process environment; nothing
//! below `main` reads the environment.
//!
//! We use `lexopt` to split arguments (it handles `--flag=value`, `--` and
//! non-UTF-8 input) rather than clap: the help text is ours anyway and clap
//! costs a quarter of a megabyte on a board where the whole binary should fit
//! in a few.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::accounts::rules::Access;
use crate::history::sqlite::SyncMode;
use crate::memory::{format_size, parse_size};
use crate::tls::TlsFiles;
use crate::transform::{parse_names, CensorMode, TransformConfig};

/// One flag: its name, the placeholder for its value (`None` for a switch),
/// the default shown in `--help`, and what it does.
struct Flag {
    name: &'static str,
    value: Option<&'static str>,
    default: &'static str,
    help: &'static str,
}

const fn flag(
    name: &'static str,
    value: Option<&'static str>,
    default: &'static str,
    help: &'static str,
) -> Flag {
    Flag {
        name,
        value,
        default,
        help,
    }
}

/// Every flag smolchat takes, in `--help` order.
#[rustfmt::skip]
const FLAGS: &[Flag] = &[
    flag("addr", Some("ADDR"), "0.0.0.0:8080", "address to listen on (port 0 picks a free one)"),
    flag("db", Some("PATH"), "smolchat.db", "history database file; :memory: keeps history in memory only"),
    flag("redis", Some("URL"), "none", "keep history, ids, accounts and presence in Redis, shared with other instances (redis://host:6379/0, rediss://, redis+unix:///path)"),
    flag("sync", Some("MODE"), "full", "full: a 201 survives power loss; normal: survives a crash of smolchat"),
    flag("max-age", Some("DURATION"), "none", "also delete messages older than this, e.g. 30d"),
    flag("threads", Some("N"), "number of cores", "executor threads"),
    flag("memory-limit", Some("SIZE"), "64MiB", "memory for messages (history, queues, unsent stream output), e.g. 32MiB or 1GiB"),
    flag("max-connections", Some("N"), "4096", "open connections; more get 503 and are closed"),
    flag("max-connections-per-ip", Some("N"), "64", "open connections from one address (IPv6: one /64); more get 429"),
    flag("max-rooms", Some("N"), "1024", "rooms in memory; idle ones leave first, then a new room gets 503"),
    flag("max-message-bytes", Some("N"), "4096", "largest accepted request body, in bytes (413 above)"),
    flag("buffer", Some("N"), "64", "per-room queue: a post waits while the slowest subscriber is N messages behind"),
    flag("history", Some("N"), "1000", "messages kept per room"),
    flag("replay", Some("N"), "50", "messages replayed to a new stream without Last-Event-ID"),
    flag("keepalive", Some("DURATION"), "15s", "comment line on idle streams this often"),
    flag("publish-timeout", Some("DURATION"), "5s", "longest a post waits for a congested room before 503"),
    flag("slow-timeout", Some("DURATION"), "10s", "a stream whose socket accepts nothing this long is cut"),
    flag("stall-budget", Some("DURATION"), "2s", "a stream that keeps its room's queue full while a post waits this long is cut (it resumes from history); 0 leaves it to --slow-timeout"),
    flag("header-timeout", Some("DURATION"), "10s", "time allowed to send a request head (and an idle keep-alive)"),
    flag("transforms", Some("LIST"), "censor,emoji,code", "message transforms, in order (also: autocorrect; empty for none)"),
    flag("censor-words", Some("FILE"), "built-in list", "censor's word list: one word per line, # comments"),
    flag("censor-mode", Some("MODE"), "mask", "censor: mask listed words (****) or refuse the message (422)"),
    flag("rate", Some("N"), "5", "posts per second per client (0 turns the limit off)"),
    flag("rate-burst", Some("N"), "10", "posts a client may send at once before --rate applies"),
    flag("default-access", Some("LEVEL"), "read-write", "what anyone may do where no rule says otherwise: read-write, read-only, write-only, deny"),
    flag("edit-window", Some("DURATION"), "5m", "how long authors may delete their own messages"),
    flag("trust-proxy", None, "off", "take the client address from the first X-Forwarded-For hop"),
    flag("allow-origin", Some("ORIGIN"), "none", "CORS origin allowed to use the API (repeatable, or *)"),
    flag("tls-cert", Some("FILE"), "none", "serve HTTPS with this PEM certificate chain (with --tls-key)"),
    flag("tls-key", Some("FILE"), "none", "the PEM private key of --tls-cert"),
    flag("redirect-http", Some("ADDR"), "none", "also listen on ADDR (e.g. 0.0.0.0:80) and redirect every request to HTTPS (308)"),
    flag("hsts", None, "off", "with HTTPS, tell browsers to use it only (Strict-Transport-Security, 1 year)"),
    flag("qr", None, "off", "at start, print a QR code of the first address on this network (for phones)"),
];

/// The validated configuration the server runs with.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to bind.
    pub addr: SocketAddr,
    /// History store path; `:memory:` for none.
    pub db: String,
    /// Redis URL (`--redis`): the shared store instead of `db`.
    pub redis: Option<String>,
    /// SQLite `synchronous` level.
    pub sync: SyncMode,
    /// Messages older than this are deleted, if set.
    pub max_age: Option<Duration>,
    /// Executor threads.
    pub threads: usize,
    /// Bytes messages may take in memory, all rooms together.
    pub memory_limit: usize,
    /// Open connections allowed at once.
    pub max_connections: usize,
    /// Open connections allowed at once from one address (or /64).
    pub max_connections_per_ip: usize,
    /// Rooms allowed at once.
    pub max_rooms: usize,
    /// Largest request body, in bytes.
    pub max_message_bytes: usize,
    /// Per-room broadcast capacity.
    pub buffer: usize,
    /// Messages kept per room.
    pub history: usize,
    /// Messages replayed on a fresh connect.
    pub replay: usize,
    /// Idle stream comment period.
    pub keepalive: Duration,
    /// Longest a post waits for room in a full channel.
    pub publish_timeout: Duration,
    /// A stream that accepts no bytes this long is cut.
    pub slow_timeout: Duration,
    /// A stream that keeps the room's queue full while a post waits this
    /// long is cut; zero is off.
    pub stall_budget: Duration,
    /// Time allowed for a request head, and for an idle keep-alive.
    pub header_timeout: Duration,
    /// Posts per second per client; 0 is off.
    pub rate: u32,
    /// Token bucket size for the rate limit.
    pub rate_burst: u32,
    /// What anyone may do where no access rule says otherwise.
    pub default_access: Access,
    /// How long an author may delete their own message.
    pub edit_window: Duration,
    /// Whether `X-Forwarded-For` names the client.
    pub trust_proxy: bool,
    /// CORS origins; `*` allows any.
    pub allow_origins: Vec<String>,
    /// HTTPS certificate and key, if serving HTTPS.
    pub tls: Option<TlsFiles>,
    /// A second address that redirects to HTTPS.
    pub redirect_http: Option<SocketAddr>,
    /// Send Strict-Transport-Security.
    pub hsts: bool,
    /// Print a QR code of the first network URL at start.
    pub qr: bool,
    /// The URLs of this server on the machine's networks, best first, when
    /// it listens on every address. Not a flag: `main` fills it in from the
    /// machine's interfaces once it is listening ([`crate::lan`]); the
    /// page's invite uses it when opened as `localhost`.
    pub lan_urls: Vec<String>,
    /// The message pipeline's settings; `main` fills in the word list.
    pub transforms: TransformConfig,
    /// `--censor-words`: the file `main` reads the word list from.
    pub censor_words_file: Option<String>,
}

impl Config {
    /// The configuration with every default except `--db :memory:`.
    pub fn defaults() -> Self {
        match parse(["--db", ":memory:"], |_| None) {
            Ok(Command::Run(c)) => *c,
            _ => unreachable!("the defaults are valid"),
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Run the server.
    Run(Box<Config>),
    /// Print this help text and exit 0.
    Help(String),
    /// Print this version line and exit 0.
    Version(String),
}

/// A flag or value that cannot be used; the process exits with code 2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// The environment variable that sets `flag`: `max-rooms` -> `SMOLCHAT_MAX_ROOMS`.
///
/// # Examples
///
/// ```
/// assert_eq!(smolchat::config::env_name("max-rooms"), "SMOLCHAT_MAX_ROOMS");
/// ```
pub fn env_name(flag: &str) -> String {
    format!("SMOLCHAT_{}", flag.to_ascii_uppercase().replace('-', "_"))
}

/// Parses `args` (without the program name) over the variables `env` finds.
///
/// # Examples
///
/// ```
/// use smolchat::config::{parse, Command};
///
/// let env = |name: &str| (name == "SMOLCHAT_BUFFER").then(|| "8".to_string());
/// let Ok(Command::Run(c)) = parse(["--replay", "5"], env) else { panic!() };
/// assert_eq!((c.buffer, c.replay), (8, 5));
/// ```
pub fn parse<I, S>(args: I, env: impl Fn(&str) -> Option<String>) -> Result<Command, ConfigError>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    // Raw values by flag name: environment first, then the command line.
    let mut raw: HashMap<&'static str, Vec<String>> = HashMap::new();
    for f in FLAGS {
        if let Some(v) = env(&env_name(f.name)) {
            let values = if f.name == "allow-origin" {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            } else {
                vec![v]
            };
            raw.insert(f.name, values);
        }
    }
    let mut from_args: HashMap<&'static str, Vec<String>> = HashMap::new();
    let mut parser = lexopt::Parser::from_args(args.into_iter().map(Into::into));
    loop {
        // Owned, so the parser can be asked for the flag's value below.
        let arg = match parser.next() {
            Ok(Some(lexopt::Arg::Long(name))) => Arg::Long(name.to_string()),
            Ok(Some(lexopt::Arg::Short(c))) => Arg::Short(c),
            Ok(Some(lexopt::Arg::Value(v))) => Arg::Value(v.to_string_lossy().into_owned()),
            Ok(None) => break,
            Err(e) => return err(e.to_string()),
        };
        match arg {
            Arg::Long(name) if name == "help" => return Ok(Command::Help(help())),
            Arg::Short('h') => return Ok(Command::Help(help())),
            Arg::Long(name) if name == "version" => return Ok(Command::Version(version())),
            Arg::Short('V') => return Ok(Command::Version(version())),
            Arg::Long(name) => {
                let Some(f) = FLAGS.iter().find(|f| f.name == name) else {
                    return err(format!("unknown flag --{name} (see --help)"));
                };
                let value = if f.value.is_some() {
                    match parser.value() {
                        Ok(v) => v
                            .into_string()
                            .or_else(|_| err(format!("--{name}: value is not valid UTF-8")))?,
                        Err(_) => return err(format!("--{name} needs a value")),
                    }
                } else {
                    match parser.optional_value() {
                        Some(v) => v.into_string().unwrap_or_default(),
                        None => "true".to_string(),
                    }
                };
                from_args.entry(f.name).or_default().push(value);
            }
            Arg::Short(c) => return err(format!("unknown flag -{c} (see --help)")),
            Arg::Value(v) => return err(format!("unexpected argument {v:?} (see --help)")),
        }
    }
    raw.extend(from_args);
    build(&raw).map(|c| Command::Run(Box::new(c)))
}

enum Arg {
    Long(String),
    Short(char),
    Value(String),
}

fn version() -> String {
    format!("smolchat {}", env!("CARGO_PKG_VERSION"))
}

/// Turns raw strings into a [`Config`], checking every value.
fn build(raw: &HashMap<&'static str, Vec<String>>) -> Result<Config, ConfigError> {
    // The last occurrence wins for single-valued flags, as in most tools.
    let one = |name: &str| raw.get(name).and_then(|v| v.last()).map(String::as_str);
    let num = |name: &str, default: usize, min: usize, max: usize| -> Result<usize, ConfigError> {
        match one(name) {
            None => Ok(default),
            Some(s) => match s.trim().parse::<usize>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => err(format!(
                    "invalid value for --{name}: expected a whole number from {min} to {max}, got {s:?}"
                )),
            },
        }
    };
    let dur = |name: &str, default: Duration| -> Result<Duration, ConfigError> {
        match one(name) {
            None => Ok(default),
            Some(s) => match parse_duration(s) {
                Some(d) if !d.is_zero() && d <= Duration::from_secs(86_400) => Ok(d),
                _ => err(format!(
                    "invalid value for --{name}: expected a duration like 500ms, 5s or 2m (above 0, at most 24h), got {s:?}"
                )),
            },
        }
    };

    let addr = match one("addr") {
        None => SocketAddr::from(([0, 0, 0, 0], 8080)),
        Some(s) => s.parse().or_else(|_| {
            err(format!("invalid value for --addr: expected IP:PORT like 0.0.0.0:8080 or [::]:8080, got {s:?}"))
        })?,
    };
    let db = one("db").unwrap_or("smolchat.db").to_string();
    if db.is_empty() {
        return err("invalid value for --db: expected a file path or :memory:");
    }
    let sync = match one("sync") {
        None => SyncMode::Full,
        Some(s) => SyncMode::parse(s).ok_or_else(|| {
            ConfigError(format!(
                "invalid value for --sync: expected full or normal, got {s:?}"
            ))
        })?,
    };
    let max_age = match one("max-age") {
        None => None,
        Some(s) => match parse_duration(s) {
            Some(d) if !d.is_zero() => Some(d),
            _ => {
                return err(format!(
                    "invalid value for --max-age: expected a duration like 30d or 12h, got {s:?}"
                ))
            }
        },
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let switch = |name: &str| -> Result<bool, ConfigError> {
        match one(name) {
            None => Ok(false),
            Some(s) => match s.to_ascii_lowercase().as_str() {
                "" | "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => err(format!(
                    "invalid value for --{name}: expected true or false, got {s:?}"
                )),
            },
        }
    };
    let trust_proxy = switch("trust-proxy")?;
    let hsts = switch("hsts")?;
    let qr = switch("qr")?;
    let tls = match (one("tls-cert"), one("tls-key")) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.into(),
            key: key.into(),
        }),
        (None, None) => None,
        (Some(_), None) => {
            return err("--tls-cert needs --tls-key (the certificate's private key)")
        }
        (None, Some(_)) => return err("--tls-key needs --tls-cert (the certificate)"),
    };
    let redirect_http = match one("redirect-http") {
        None => None,
        Some(s) => Some(s.parse().or_else(|_| {
            err(format!(
                "invalid value for --redirect-http: expected IP:PORT like 0.0.0.0:80, got {s:?}"
            ))
        })?),
    };
    if tls.is_none() && (redirect_http.is_some() || hsts) {
        return err("--redirect-http and --hsts need HTTPS (--tls-cert and --tls-key)");
    }
    let redis = match one("redis") {
        None => None,
        #[cfg(not(feature = "redis"))]
        Some(_) => return err(crate::history::NO_REDIS),
        #[cfg(feature = "redis")]
        Some(url) => {
            let ok = ["redis://", "rediss://", "redis+unix://", "unix://"]
                .iter()
                .any(|p| url.starts_with(p));
            if !ok || redis::Client::open(url).is_err() {
                return err(format!(
                    "invalid value for --redis: expected a URL like redis://127.0.0.1:6379/0, rediss://host:6380 or redis+unix:///run/redis.sock, got {url:?}"
                ));
            }
            if max_age.is_some() {
                return err("--max-age is not supported with --redis: Redis keeps --history messages per room");
            }
            Some(url.to_string())
        }
    };
    let allow_origins = raw.get("allow-origin").cloned().unwrap_or_default();
    for o in &allow_origins {
        if o != "*" && !valid_origin(o) {
            return err(format!(
                "invalid value for --allow-origin: expected * or an origin like https://chat.example.org, got {o:?}"
            ));
        }
    }

    let mut transforms = TransformConfig::default();
    if let Some(list) = one("transforms") {
        transforms.names = parse_names(list)
            .map_err(|e| ConfigError(format!("invalid value for --transforms: {e}")))?;
    }
    if let Some(mode) = one("censor-mode") {
        transforms.censor_mode = CensorMode::parse(mode)
            .map_err(|e| ConfigError(format!("invalid value for --censor-mode: {e}")))?;
    }
    let history = num("history", 1000, 1, 1_000_000)?;
    let max_message_bytes = num("max-message-bytes", 4096, 16, 1 << 20)?;
    let memory_limit = match one("memory-limit") {
        None => 64 << 20,
        Some(s) => {
            let least = min_memory_limit(max_message_bytes);
            match parse_size(s) {
                Some(n) if n >= least => n,
                Some(n) if n > 0 => {
                    return err(format!(
                        "invalid value for --memory-limit: {s} cannot hold one message of \
                         --max-message-bytes {max_message_bytes}; give at least {}",
                        format_size(least.next_multiple_of(1 << 10))
                    ))
                }
                _ => {
                    return err(format!(
                        "invalid value for --memory-limit: expected a size like 64MiB, 512KiB or 1GiB, got {s:?}"
                    ))
                }
            }
        }
    };
    let default_access = match one("default-access") {
        None => Access::ReadWrite,
        Some(s) => Access::parse(s).ok_or_else(|| {
            ConfigError(format!(
                "invalid value for --default-access: expected read-write, read-only, write-only or deny, got {s:?}"
            ))
        })?,
    };
    Ok(Config {
        addr,
        default_access,
        edit_window: dur("edit-window", Duration::from_secs(300))?,
        db,
        redis,
        sync,
        max_age,
        threads: num("threads", cores, 1, 1024)?,
        memory_limit,
        max_connections: num("max-connections", 4096, 1, 1_000_000)?,
        max_connections_per_ip: num("max-connections-per-ip", 64, 1, 1_000_000)?,
        max_rooms: num("max-rooms", 1024, 1, 1_000_000)?,
        max_message_bytes,
        buffer: num("buffer", 64, 1, 65_536)?,
        history,
        // The default never asks for more than history keeps.
        replay: num("replay", 50.min(history), 0, history)?,
        keepalive: dur("keepalive", Duration::from_secs(15))?,
        publish_timeout: dur("publish-timeout", Duration::from_secs(5))?,
        slow_timeout: dur("slow-timeout", Duration::from_secs(10))?,
        // 0 turns it off (every other duration must be above 0).
        stall_budget: match one("stall-budget") {
            None => Duration::from_secs(2),
            Some(s) => match parse_duration(s) {
                Some(d) if d <= Duration::from_secs(86_400) => d,
                _ => {
                    return err(format!(
                        "invalid value for --stall-budget: expected a duration like 2s or 500ms (at most 24h; 0 turns it off), got {s:?}"
                    ))
                }
            },
        },
        header_timeout: dur("header-timeout", Duration::from_secs(10))?,
        rate: num("rate", 5, 0, 1_000_000)? as u32,
        rate_burst: num("rate-burst", 10, 1, 1_000_000)? as u32,
        trust_proxy,
        allow_origins,
        tls,
        redirect_http,
        hsts,
        qr,
        lan_urls: Vec::new(),
        transforms,
        censor_words_file: one("censor-words").map(str::to_string),
    })
}

/// The smallest `--memory-limit` that holds one message of
/// `max_message_bytes`, however it is encoded: transforms may double it
/// (plus a little), and JSON may write a control character as six bytes.
pub fn min_memory_limit(max_message_bytes: usize) -> usize {
    6 * crate::transform::max_output_len(max_message_bytes) + 4096
}

/// `scheme://host[:port]` with nothing after it, as browsers send in `Origin`.
fn valid_origin(o: &str) -> bool {
    let Some((scheme, rest)) = o.split_once("://") else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']'))
}

/// Parses `500ms`, `5s`, `2m`, `1h`, `30d`, or a bare number of seconds.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use smolchat::config::parse_duration;
///
/// assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
/// assert_eq!(parse_duration("15"), Some(Duration::from_secs(15)));
/// assert_eq!(parse_duration("30d"), Some(Duration::from_secs(30 * 86_400)));
/// assert_eq!(parse_duration("soon"), None);
/// ```
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let ms = match unit {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => None,
    }?;
    Some(Duration::from_millis(ms))
}

/// `--redis` in the `--help` of a build without the `redis` feature.
pub const NO_REDIS_HELP: &str =
    "not in this build (the ARM builds leave Redis out to stay small: cargo build --features redis)";

/// The `--help` text, generated from [`FLAGS`].
fn help() -> String {
    let mut out = format!(
        "smolchat {}: a chat server for small boards (rooms, Server-Sent Events, backpressure)\n\n\
         Usage: smolchat [FLAGS]\n       \
         smolchat say|tail|user|token|access ... (--help for each)\n\n\
         Open http://ADDR/ in a browser, or use curl:\n  \
         curl -N localhost:8080/events\n  \
         curl -d 'hello' localhost:8080/messages\n\
         or the terminal client:\n  \
         smolchat tail --room kitchen\n  \
         smolchat say --room kitchen 'hello'\n\n\
         Flags (each also read from SMOLCHAT_<FLAG>, e.g. SMOLCHAT_MAX_ROOMS=10):\n",
        env!("CARGO_PKG_VERSION")
    );
    for f in FLAGS {
        let left = match f.value {
            Some(v) => format!("--{} {v}", f.name),
            None => format!("--{}", f.name),
        };
        let help = if f.name == "redis" && !cfg!(feature = "redis") {
            NO_REDIS_HELP
        } else {
            f.help
        };
        out.push_str(&format!("  {left:<28} {help} [default: {}]\n", f.default));
    }
    out.push_str("  -h, --help                   print this help\n");
    out.push_str("  -V, --version                print the version\n\n");
    out.push_str("Durations: 500ms, 5s, 2m, 1h. Logging: RUST_LOG=debug for every request.\n\n");
    out.push_str(
        "Subcommands (each with --help): smolchat user, token, access (accounts);\n\
         smolchat export, import (move a SQLite box to --redis).\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, ConfigError> {
        run_env(args, &[])
    }

    fn run_env(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match parse(args.iter().copied(), |k| env.get(k).cloned())? {
            Command::Run(c) => Ok(*c),
            other => panic!("expected a config, got {other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = run(&[]).unwrap();
        assert_eq!(c.addr.to_string(), "0.0.0.0:8080");
        assert_eq!((c.buffer, c.history, c.replay), (64, 1000, 50));
        assert_eq!(
            (c.max_connections, c.max_rooms, c.max_message_bytes),
            (4096, 1024, 4096)
        );
        assert_eq!(c.keepalive, Duration::from_secs(15));
        assert_eq!(c.publish_timeout, Duration::from_secs(5));
        assert_eq!(c.slow_timeout, Duration::from_secs(10));
        assert_eq!((c.rate, c.rate_burst), (5, 10));
        assert!(!c.trust_proxy && c.allow_origins.is_empty());
    }

    #[test]
    fn flags_beat_environment_which_beats_defaults() {
        let env = [("SMOLCHAT_BUFFER", "8"), ("SMOLCHAT_REPLAY", "3")];
        let c = run_env(&["--buffer=16"], &env).unwrap();
        assert_eq!((c.buffer, c.replay), (16, 3));
    }

    #[test]
    fn allow_origin_repeats_and_splits_from_env() {
        let c = run(&["--allow-origin", "https://a.example", "--allow-origin", "*"]).unwrap();
        assert_eq!(c.allow_origins, ["https://a.example", "*"]);
        let c = run_env(&[], &[("SMOLCHAT_ALLOW_ORIGIN", "http://x:1, http://y")]).unwrap();
        assert_eq!(c.allow_origins, ["http://x:1", "http://y"]);
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        for (args, needle) in [
            (&["--buffer", "0"][..], "--buffer"),
            (&["--buffer", "lots"], "--buffer"),
            (&["--addr", "localhost"], "--addr"),
            (&["--keepalive", "0s"], "--keepalive"),
            (&["--publish-timeout", "5 parsecs"], "--publish-timeout"),
            (&["--allow-origin", "example.org/x"], "--allow-origin"),
            (&["--replay", "2000"], "--replay"),
            (&["--db", ""], "--db"),
            (&["--sync", "sometimes"], "--sync"),
            (&["--max-age", "forever"], "--max-age"),
            (&["--transforms", "censor,sparkle"], "--transforms"),
            (&["--censor-mode", "shout"], "--censor-mode"),
            (&["--nope"], "--nope"),
            (&["stray"], "stray"),
            (&["--buffer"], "--buffer"),
            (&["--trust-proxy=maybe"], "--trust-proxy"),
        ] {
            let e = run(args).unwrap_err();
            assert!(e.0.contains(needle), "{args:?}: {e}");
        }
    }

    /// Found by the `config` fuzz target (docs/fuzzing.md): `--history 21`
    /// kept the default `--replay` of 50, more than history holds, though
    /// `--replay 50 --history 21` is refused.
    #[test]
    fn regression_a_history_under_50_lowers_the_default_replay() {
        assert_eq!(run(&["--history", "21"]).unwrap().replay, 21);
        let c = run_env(&[], &[("SMOLCHAT_HISTORY", "5")]).unwrap();
        assert_eq!((c.history, c.replay), (5, 5));
        assert_eq!(run(&["--history", "500"]).unwrap().replay, 50);
        assert!(run(&["--history", "21", "--replay", "50"]).is_err());
    }

    #[test]
    fn switches_take_no_value_but_env_can_turn_them_off() {
        assert!(run(&["--trust-proxy"]).unwrap().trust_proxy);
        assert!(
            !run_env(&[], &[("SMOLCHAT_TRUST_PROXY", "false")])
                .unwrap()
                .trust_proxy
        );
        assert!(
            run_env(&[], &[("SMOLCHAT_TRUST_PROXY", "1")])
                .unwrap()
                .trust_proxy
        );
    }

    #[test]
    fn help_lists_every_flag() {
        let Ok(Command::Help(h)) = parse(["--help"], |_| None) else {
            panic!()
        };
        for f in FLAGS {
            assert!(h.contains(&format!("--{}", f.name)), "{}", f.name);
        }
    }
}
