//! `smolchat access WHO PATTERN LEVEL`, `access list`, `access reset`.

use std::io::Write;

use super::{failed, usage, Args, Failure};
use crate::accounts::rules::{Access, Pattern, Who};
use crate::accounts::store::AccountsDb;

pub(super) fn run(
    args: &Args,
    open: impl Fn() -> Result<AccountsDb, Failure>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    args.only(&["db", "redis"])?;
    let pos: Vec<&str> = args.positional.iter().map(String::as_str).collect();
    match pos.as_slice() {
        ["list"] => {
            let rules = open()?.rules().map_err(failed)?;
            if rules.is_empty() {
                let _ = writeln!(out, "no rules: everyone has --default-access");
            }
            for r in rules {
                let _ = writeln!(out, "{}\t{}\t{}", r.who, r.pattern.as_str(), r.access.short());
            }
            Ok(())
        }
        ["reset"] => {
            let n = open()?.reset_rules().map_err(failed)?;
            let _ = writeln!(out, "deleted {n} rules");
            Ok(())
        }
        [who, pattern, level] => {
            let who = Who::parse(who).map_err(Failure::Usage)?;
            let pattern = Pattern::parse(pattern).map_err(Failure::Usage)?;
            let Some(access) = Access::parse(level) else {
                return usage(format!("access level must be rw, ro, wo or deny, got {level:?}"));
            };
            open()?.set_rule(&who, &pattern, access).map_err(failed)?;
            let _ = writeln!(out, "{who} may {access} in {}", pattern.as_str());
            Ok(())
        }
        _ => usage("usage: smolchat access USER|everyone ROOM-PATTERN rw|ro|wo|deny, access list, access reset"),
    }
}
