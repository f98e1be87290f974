//! `smolchat token add|list|remove`.

use std::io::Write;

use super::{failed, usage, Args, Failure};
use crate::accounts::secret::{hash_secret, new_secret, token_id, TOKEN_PREFIX};
use crate::accounts::store::AccountsDb;
use crate::config::parse_duration;
use crate::message::{Timestamp, UserName};

pub(super) fn run(
    args: &Args,
    open: impl Fn() -> Result<AccountsDb, Failure>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let pos: Vec<&str> = args.positional.iter().map(String::as_str).collect();
    let name = |s: &str| UserName::parse(s).map_err(|e| Failure::Usage(e.to_string()));
    match pos.as_slice() {
        ["add", n] => {
            args.only(&["db", "redis", "expires", "read-only", "label"])?;
            let n = name(n)?;
            let expires = match args.value("expires") {
                None => None,
                Some(d) => match parse_duration(d) {
                    Some(d) if !d.is_zero() => Some(Timestamp(
                        Timestamp::now().0 + i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2),
                    )),
                    _ => return usage(format!("--expires: expected a duration like 30d or 12h, got {d:?}")),
                },
            };
            let label = args.value("label");
            let token = new_secret(TOKEN_PREFIX).map_err(failed)?;
            let hash = hash_secret(&token);
            let id = token_id(&hash);
            open()?
                .add_token(&n, &hash, &id, label, args.flag("read-only"), expires)
                .map_err(failed)?;
            let _ = writeln!(out, "{token}");
            let until = expires.map_or("never expires".to_string(), |t| format!("expires {t}"));
            let access = if args.flag("read-only") { "read-only" } else { "as the user" };
            let _ = writeln!(
                out,
                "token {id} for {n} ({access}, {until}): shown once, only its hash is stored"
            );
            Ok(())
        }
        ["list"] | ["list", _] => {
            args.only(&["db", "redis"])?;
            let user = match pos.get(1) {
                Some(n) => Some(name(n)?),
                None => None,
            };
            let tokens = open()?.tokens(user.as_ref()).map_err(failed)?;
            if tokens.is_empty() {
                let _ = writeln!(out, "no tokens");
            }
            let now = Timestamp::now();
            for t in tokens {
                let state = match t.expires {
                    Some(e) if e <= now => format!("expired {e}"),
                    Some(e) => format!("expires {e}"),
                    None => "never expires".into(),
                };
                let access = if t.read_only { "read-only" } else { "read-write" };
                let label = t.label.as_deref().unwrap_or("-");
                let _ = writeln!(
                    out,
                    "{}\t{}\t{access}\t{state}\t{label}\tmade {}",
                    t.id, t.user, t.created
                );
            }
            Ok(())
        }
        ["remove", id] => {
            args.only(&["db", "redis"])?;
            open()?.remove_token(id).map_err(failed)?;
            let _ = writeln!(out, "removed token {id}; streams that used it close within a second");
            Ok(())
        }
        _ => usage("usage: smolchat token add NAME, token list [NAME], token remove TOKEN-ID (see smolchat token --help)"),
    }
}
