//! Who may read and write which rooms: access levels, room patterns and the
//! one function that decides, [`decide`].
//!
//! A rule says that a user (or everyone) has an access level on the rooms a
//! pattern matches. Precedence, as ntfy users know it: admins may do
//! everything; a user's own rule beats an `everyone` rule; among rules for
//! the same user (or among `everyone` rules), the more specific pattern
//! wins (more literal characters, then fewer `*`); no rule at all gives
//! `--default-access`.

use std::fmt;

use crate::message::{RoomName, UserName};

/// What someone may do in a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Read (streams, history) and write (post).
    ReadWrite,
    /// Read only.
    ReadOnly,
    /// Post only.
    WriteOnly,
    /// Nothing; the room is not even listed.
    Deny,
}

impl Access {
    /// Parses `rw`, `ro`, `wo`, `deny`, or the long names
    /// (`read-write`, `read-only`, `write-only`).
    pub fn parse(s: &str) -> Option<Access> {
        Some(match s.to_ascii_lowercase().as_str() {
            "rw" | "read-write" => Access::ReadWrite,
            "ro" | "read-only" => Access::ReadOnly,
            "wo" | "write-only" => Access::WriteOnly,
            "deny" | "none" => Access::Deny,
            _ => return None,
        })
    }

    /// The short name, as rules are written.
    pub fn short(self) -> &'static str {
        match self {
            Access::ReadWrite => "rw",
            Access::ReadOnly => "ro",
            Access::WriteOnly => "wo",
            Access::Deny => "deny",
        }
    }

    /// Whether it allows reading.
    pub fn read(self) -> bool {
        matches!(self, Access::ReadWrite | Access::ReadOnly)
    }

    /// Whether it allows posting.
    pub fn write(self) -> bool {
        matches!(self, Access::ReadWrite | Access::WriteOnly)
    }

    /// The same without writing (a read-only token).
    pub fn without_write(self) -> Access {
        match self {
            Access::ReadWrite | Access::ReadOnly => Access::ReadOnly,
            Access::WriteOnly | Access::Deny => Access::Deny,
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::ReadWrite => "read-write",
            Access::ReadOnly => "read-only",
            Access::WriteOnly => "write-only",
            Access::Deny => "deny",
        })
    }
}

/// Whom a rule is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Who {
    /// Everyone, signed in or not.
    Everyone,
    /// One user.
    User(UserName),
}

impl Who {
    /// `everyone` (or `*`) or a user name.
    pub fn parse(s: &str) -> Result<Who, String> {
        if s == "everyone" || s == "*" {
            return Ok(Who::Everyone);
        }
        UserName::parse(s).map(Who::User).map_err(|e| e.to_string())
    }

    /// How the rule table stores it: `*` for everyone.
    pub fn stored(&self) -> &str {
        match self {
            Who::Everyone => "*",
            Who::User(u) => u.as_str(),
        }
    }
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Who::Everyone => f.write_str("everyone"),
            Who::User(u) => f.write_str(u.as_str()),
        }
    }
}

/// A room pattern: room-name characters and `*` (any run of them).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pattern(String);

impl Pattern {
    /// Checks a pattern: 1 to 64 characters of `[A-Za-z0-9_.-*]`.
    pub fn parse(s: &str) -> Result<Pattern, String> {
        if s.is_empty() || s.len() > 64 {
            return Err("a room pattern is 1 to 64 characters".into());
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'*'))
        {
            return Err(
                "a room pattern may only contain A-Z, a-z, 0-9, '_', '.', '-' and '*'".into(),
            );
        }
        Ok(Pattern(s.to_string()))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether it matches `room` (case-sensitive, as room names are).
    ///
    /// # Examples
    ///
    /// ```
    /// use smolchat::accounts::rules::Pattern;
    /// use smolchat::message::RoomName;
    ///
    /// let p = Pattern::parse("team-*").unwrap();
    /// assert!(p.matches(&RoomName::parse("team-a").unwrap()));
    /// assert!(p.matches(&RoomName::parse("team-").unwrap()));
    /// assert!(!p.matches(&RoomName::parse("teams").unwrap()));
    /// assert!(Pattern::parse("*").unwrap().matches(&RoomName::lobby()));
    /// ```
    pub fn matches(&self, room: &RoomName) -> bool {
        glob(self.0.as_bytes(), room.as_str().as_bytes())
    }

    /// How specific it is: more literal characters, then fewer stars.
    fn specificity(&self) -> (usize, std::cmp::Reverse<usize>) {
        let stars = self.0.bytes().filter(|&b| b == b'*').count();
        (self.0.len() - stars, std::cmp::Reverse(stars))
    }
}

/// `*`-only glob, iterative with one backtrack point: linear in practice,
/// never exponential.
fn glob(pat: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pat.len() && pat[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pat.len() && pat[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|&b| b == b'*')
}

/// One access rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Whom it is for.
    pub who: Who,
    /// Which rooms.
    pub pattern: Pattern,
    /// What they may do there.
    pub access: Access,
}

/// What `user` (signed in, or `None`) may do in `room`.
///
/// # Examples
///
/// ```
/// use smolchat::accounts::rules::{decide, Access, Pattern, Rule, Who};
/// use smolchat::message::{RoomName, UserName};
///
/// let ana = UserName::parse("ana").unwrap();
/// let rule = |who: Who, p: &str, access| Rule { who, pattern: Pattern::parse(p).unwrap(), access };
/// let rules = [
///     rule(Who::Everyone, "*", Access::ReadOnly),
///     rule(Who::User(ana.clone()), "team-*", Access::ReadWrite),
/// ];
/// let room = |r: &str| RoomName::parse(r).unwrap();
/// assert_eq!(decide(&rules, Some(&ana), false, &room("team-a"), Access::Deny), Access::ReadWrite);
/// assert_eq!(decide(&rules, None, false, &room("team-a"), Access::Deny), Access::ReadOnly);
/// assert_eq!(decide(&[], None, false, &room("x"), Access::Deny), Access::Deny);
/// assert_eq!(decide(&rules, Some(&ana), true, &room("x"), Access::Deny), Access::ReadWrite);
/// ```
pub fn decide(
    rules: &[Rule],
    user: Option<&UserName>,
    admin: bool,
    room: &RoomName,
    default: Access,
) -> Access {
    if admin {
        return Access::ReadWrite;
    }
    let best = |who: &Who| {
        rules
            .iter()
            .filter(|r| &r.who == who && r.pattern.matches(room))
            .max_by_key(|r| r.pattern.specificity())
            .map(|r| r.access)
    };
    user.and_then(|u| best(&Who::User(u.clone())))
        .or_else(|| best(&Who::Everyone))
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(who: &str, pattern: &str, access: &str) -> Rule {
        Rule {
            who: Who::parse(who).unwrap(),
            pattern: Pattern::parse(pattern).unwrap(),
            access: Access::parse(access).unwrap(),
        }
    }

    #[test]
    fn globs_match_any_run_and_never_blow_up() {
        let cases = [
            ("team-*", "team-a", true),
            ("*-a", "team-a", true),
            ("t*m-*", "team-b", true),
            ("team", "team-a", false),
            ("*", "x", true),
            (
                "a*a*a*a*a*b",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac",
                false,
            ),
        ];
        for (p, r, want) in cases {
            assert_eq!(
                Pattern::parse(p)
                    .unwrap()
                    .matches(&RoomName::parse(r).unwrap()),
                want,
                "{p} {r}"
            );
        }
        assert!(Pattern::parse("a b").is_err());
        assert!(Pattern::parse("").is_err());
    }

    #[test]
    fn own_rules_beat_everyone_and_specific_beats_general() {
        let rules = [
            rule("everyone", "*", "ro"),
            rule("everyone", "class-*", "deny"),
            rule("everyone", "class-7b", "wo"),
            rule("ana", "*", "deny"),
            rule("ana", "class-*", "rw"),
            rule("bob", "class-7*", "ro"),
            rule("bob", "class-*", "rw"),
        ];
        let ana = UserName::parse("ana").unwrap();
        let bob = UserName::parse("bob").unwrap();
        let cy = UserName::parse("cy").unwrap();
        let room = |r| RoomName::parse(r).unwrap();
        let d = |u: Option<&UserName>, r| decide(&rules, u, false, &room(r), Access::ReadWrite);
        assert_eq!(d(None, "lobby"), Access::ReadOnly);
        assert_eq!(d(None, "class-6a"), Access::Deny);
        assert_eq!(d(None, "class-7b"), Access::WriteOnly, "the exact room");
        assert_eq!(
            d(Some(&cy), "class-7b"),
            Access::WriteOnly,
            "no rule of cy's"
        );
        assert_eq!(
            d(Some(&ana), "lobby"),
            Access::Deny,
            "ana's own * beats everyone's *"
        );
        assert_eq!(d(Some(&ana), "class-7b"), Access::ReadWrite);
        assert_eq!(
            d(Some(&bob), "class-7b"),
            Access::ReadOnly,
            "longer pattern"
        );
        assert_eq!(d(Some(&bob), "class-6a"), Access::ReadWrite);
        assert_eq!(
            d(Some(&bob), "lobby"),
            Access::ReadOnly,
            "falls back to everyone"
        );
    }

    #[test]
    fn read_only_tokens_lose_write() {
        assert_eq!(Access::ReadWrite.without_write(), Access::ReadOnly);
        assert_eq!(Access::WriteOnly.without_write(), Access::Deny);
        assert!(Access::ReadWrite.read() && Access::ReadWrite.write());
        assert!(!Access::ReadOnly.write() && !Access::WriteOnly.read());
    }
}
