//! `smolchat user add|passwd|del|list`.

use std::io::Write;

use super::{failed, new_password, usage, Args, Failure};
use crate::accounts::secret::hash_password;
use crate::accounts::store::AccountsDb;
use crate::message::UserName;

pub(super) fn run(
    args: &Args,
    open: impl Fn() -> Result<AccountsDb, Failure>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let pos: Vec<&str> = args.positional.iter().map(String::as_str).collect();
    let name = |s: &str| UserName::parse(s).map_err(|e| Failure::Usage(e.to_string()));
    match pos.as_slice() {
        ["add", n] => {
            args.only(&["db", "redis", "admin", "password-stdin"])?;
            let n = name(n)?;
            if n == UserName::anonymous() {
                return usage("anonymous is the name of posts without an account; choose another");
            }
            let mut db = open()?;
            if db.has_user(&n).map_err(failed)? {
                return Err(Failure::Failed(format!("user {n} already exists")));
            }
            let hash = hash_password(&new_password(args.flag("password-stdin"))?).map_err(failed)?;
            db.add_user(&n, &hash, args.flag("admin")).map_err(failed)?;
            let role = if args.flag("admin") { "admin" } else { "user" };
            let _ = writeln!(out, "added {role} {n}");
            Ok(())
        }
        ["passwd", n] => {
            args.only(&["db", "redis", "password-stdin"])?;
            let n = name(n)?;
            let mut db = open()?;
            if !db.has_user(&n).map_err(failed)? {
                return Err(Failure::Failed(format!("no user {n}")));
            }
            let hash = hash_password(&new_password(args.flag("password-stdin"))?).map_err(failed)?;
            db.set_password(&n, &hash).map_err(failed)?;
            let _ = writeln!(out, "changed the password of {n}; their browser sessions ended");
            Ok(())
        }
        ["del", n] => {
            args.only(&["db", "redis"])?;
            let n = name(n)?;
            open()?.delete_user(&n).map_err(failed)?;
            let _ = writeln!(out, "deleted {n}, with their tokens, sessions and rules");
            Ok(())
        }
        ["list"] => {
            args.only(&["db", "redis"])?;
            let users = open()?.users().map_err(failed)?;
            if users.is_empty() {
                let _ = writeln!(out, "no users: everyone has --default-access");
            }
            for (name, admin, created, tokens) in users {
                let role = if admin { "admin" } else { "user" };
                let tokens = super::count(tokens, "token");
                let _ = writeln!(out, "{name}\t{role}\t{tokens}\tsince {created}");
            }
            Ok(())
        }
        _ => usage("usage: smolchat user add|passwd|del NAME, or smolchat user list (see smolchat user --help)"),
    }
}
