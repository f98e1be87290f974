//! Who is asking, from a request: `Authorization: Bearer` (tokens),
//! `Authorization: Basic` (curl -u), `?auth=TOKEN` (event streams only:
//! EventSource cannot send headers), or the page's session cookie; and the
//! checks that go with each. The accounts manager
//! ([`crate::accounts::Accounts`]) decides; this module only reads headers.

use http_types::Request;

use super::reply::ApiError;
use crate::accounts::rules::Access;
use crate::accounts::Identity;
use crate::app::App;
use crate::message::RoomName;

/// The session cookie's name.
pub const COOKIE: &str = "smolchat_session";

/// Who is asking, and whether they proved it with the session cookie
/// (then writes must come from the page's own origin).
#[derive(Clone, Debug)]
pub struct Asker {
    /// The identity.
    pub who: Identity,
    /// Authenticated by the session cookie.
    pub by_cookie: bool,
}

/// The identity a request proves. A credential that is given but wrong is
/// `401` (a client should know its token or password is bad); a stale
/// cookie is just anonymous (the page then offers to sign in again).
pub async fn identify(app: &App, req: &Request, token_in_query: bool) -> Result<Asker, ApiError> {
    let accounts = &app.accounts;
    if let Some(value) = super::header(req, "authorization") {
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let who = if scheme.eq_ignore_ascii_case("bearer") {
            accounts
                .by_token(rest.trim())
                .ok_or_else(|| ApiError::Unauthorized("invalid or expired token".into()))?
        } else if scheme.eq_ignore_ascii_case("basic") {
            let Some((user, password)) = crate::accounts::secret::basic_credentials(rest) else {
                return Err(ApiError::Unauthorized("malformed basic credentials".into()));
            };
            accounts
                .by_password(&user, &password)
                .await
                .ok_or_else(|| ApiError::Unauthorized("wrong user name or password".into()))?
        } else {
            return Err(ApiError::Unauthorized(
                "use Authorization: Bearer TOKEN or Basic".into(),
            ));
        };
        return Ok(Asker {
            who,
            by_cookie: false,
        });
    }
    if token_in_query {
        if let Some((_, token)) = req.url().query_pairs().find(|(k, _)| k == "auth") {
            let who = accounts
                .by_token(&token)
                .ok_or_else(|| ApiError::Unauthorized("invalid or expired token".into()))?;
            return Ok(Asker {
                who,
                by_cookie: false,
            });
        }
    }
    if let Some(session) = cookie(req, COOKIE) {
        if let Some(who) = accounts.by_session_anywhere(session).await {
            return Ok(Asker {
                who,
                by_cookie: true,
            });
        }
    }
    Ok(Asker {
        who: Identity::Anonymous,
        by_cookie: false,
    })
}

/// A cookie's value.
pub fn cookie<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    super::fields(req, "cookie")?.iter().find_map(|v| {
        v.as_str().split(';').find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
    })
}

/// What a request wants to do in a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Streams and history.
    Read,
    /// Posting.
    Write,
}

/// Refuses `asker` if it may not `want` in `room`: `401` when nobody is
/// signed in (a sign-in could help), `403` when someone is.
pub fn require(app: &App, asker: &Asker, room: &RoomName, want: Want) -> Result<(), ApiError> {
    let access = app.accounts.access(&asker.who, room);
    let ok = match want {
        Want::Read => access.read(),
        Want::Write => access.write(),
    };
    if ok {
        return Ok(());
    }
    let verb = match want {
        Want::Read => "read",
        Want::Write => "post in",
    };
    match asker.who.user() {
        None => Err(ApiError::Unauthorized(format!(
            "sign in to {verb} room {room}"
        ))),
        Some(u) => Err(ApiError::Forbidden(format!(
            "{u} may not {verb} room {room}"
        ))),
    }
}

/// Whether a cookie-authenticated write comes from the page's own origin:
/// `Origin` names this host, or `Sec-Fetch-Site` says same-origin. A
/// cross-site form carries the cookie too (with a lax policy, or an old
/// browser), so this is what stops it. Requests without either header are
/// not from a browser, and a browser always sends `Origin` with a `POST`.
pub fn same_origin(req: &Request) -> bool {
    let host = super::header(req, "host");
    if let Some(origin) = super::header(req, "origin") {
        let bare = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        return bare.is_some() && bare == host;
    }
    match super::header(req, "sec-fetch-site") {
        Some(site) => site == "same-origin" || site == "none",
        None => true,
    }
}

/// What `/me` answers.
#[derive(serde::Serialize)]
pub struct Me {
    /// The signed-in account, if any.
    pub user: Option<String>,
    /// Whether it is an admin.
    pub admin: bool,
    /// Whether the server has accounts at all (the page shows "sign in").
    pub accounts: bool,
    /// What anyone may do where no rule says otherwise.
    pub default_access: String,
    /// Seconds an author may delete their own message.
    pub edit_window: u64,
}

impl Me {
    /// The answer for `asker`.
    pub fn of(app: &App, asker: &Asker) -> Me {
        let default: Access = app.accounts.default_access();
        Me {
            user: asker.who.user().map(|u| u.as_str().to_string()),
            admin: asker.who.is_admin(),
            accounts: app.accounts.has_users(),
            default_access: default.to_string(),
            edit_window: app.config.edit_window.as_secs(),
        }
    }
}
