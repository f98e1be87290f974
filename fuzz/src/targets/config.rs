//! Target `config`: flags, `SMOLCHAT_*` variables and durations.
//!
//! Input: NUL-separated items. Those before the first empty item (two NULs
//! in a row) are the arguments, as raw bytes (so not always UTF-8, as
//! `args_os` can give); those after are environment entries `NAME=VALUE`,
//! where a name without the `SMOLCHAT_` prefix is a flag name
//! (`buffer=8` sets `SMOLCHAT_BUFFER`). Checked:
//!
//! - [`parse`] never panics and answers the same twice;
//! - a config it accepts is within every documented bound;
//! - `--help` lists the flags and `--version` names smolchat;
//! - an error is a lowercase message with no trailing period;
//! - [`parse_duration`], on every argument and value, agrees with a
//!   reference reading of its rule (digits, then `ms`, `s`, `m`, `h`, `d`
//!   or nothing, surrounding white space ignored, no overflow), and what
//!   it accepts, written back in milliseconds, parses to the same duration.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::time::Duration;

use smolchat::config::{env_name, parse, parse_duration, Command, Config};
use smolchat::transform::NAMES;

/// Checks one input.
pub fn check(data: &[u8]) {
    let items: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    let split = items
        .iter()
        .position(|i| i.is_empty())
        .unwrap_or(items.len());
    let args: Vec<&[u8]> = items[..split].to_vec();
    let mut env = HashMap::new();
    for entry in items.iter().skip(split + 1) {
        let entry = String::from_utf8_lossy(entry);
        let (name, value) = entry.split_once('=').unwrap_or((&entry, ""));
        let name = if name.starts_with("SMOLCHAT_") {
            name.to_string()
        } else {
            env_name(name)
        };
        env.insert(name, value.to_string());
    }

    for text in args
        .iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .chain(env.values().cloned())
    {
        check_duration(&text);
    }

    let run = || {
        parse(args.iter().map(|a| OsString::from_vec(a.to_vec())), |k| {
            env.get(k).cloned()
        })
    };
    let got = run();
    assert_eq!(format!("{got:?}"), format!("{:?}", run()));
    match got {
        Ok(Command::Run(c)) => check_config(&c),
        Ok(Command::Help(h)) => {
            assert!(h.contains("--addr") && h.contains("--allow-origin"))
        }
        Ok(Command::Version(v)) => assert!(v.starts_with("smolchat ")),
        Err(e) => {
            let m = e.to_string();
            assert!(!m.is_empty() && !m.ends_with('.'), "{m:?}");
            assert!(!m.starts_with(char::is_uppercase), "{m:?}");
        }
    }
}

fn check_config(c: &Config) {
    let day = Duration::from_secs(86_400);
    for d in [
        c.keepalive,
        c.publish_timeout,
        c.slow_timeout,
        c.header_timeout,
    ] {
        assert!(!d.is_zero() && d <= day, "{d:?}");
    }
    assert!(c.max_age.is_none_or(|d| !d.is_zero()));
    assert!(!c.db.is_empty());
    assert!((1..=1024).contains(&c.threads));
    assert!((1..=1_000_000).contains(&c.max_connections));
    assert!((1..=1_000_000).contains(&c.max_rooms));
    assert!((16..=1 << 20).contains(&c.max_message_bytes));
    assert!((1..=65_536).contains(&c.buffer));
    assert!((1..=1_000_000).contains(&c.history));
    assert!(c.replay <= c.history);
    assert!(c.rate <= 1_000_000 && (1..=1_000_000).contains(&c.rate_burst));
    assert!(c
        .allow_origins
        .iter()
        .all(|o| o == "*" || o.contains("://")));
    let names = &c.transforms.names;
    for (i, n) in names.iter().enumerate() {
        assert!(
            NAMES.contains(&n.as_str()) && !names[..i].contains(n),
            "{names:?}"
        );
    }
}

fn check_duration(s: &str) {
    let got = parse_duration(s);
    assert_eq!(got, reference_duration(s), "{s:?}");
    if let Some(d) = got {
        assert_eq!(parse_duration(&format!("{}ms", d.as_millis())), Some(d));
    }
}

/// The rule of [`parse_duration`], read again: whole milliseconds that
/// fit a `u64`.
fn reference_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let n: u128 = s[..digits].parse().unwrap_or(u128::MAX);
    let unit: u128 = match &s[digits..] {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    let ms = u64::try_from(n.checked_mul(unit)?).ok()?;
    // `n` itself must fit a u64 before it is scaled.
    u64::try_from(n).ok()?;
    Some(Duration::from_millis(ms))
}
