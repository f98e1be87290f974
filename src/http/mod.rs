//! The protocol layer: HTTP requests to domain calls, domain values to
//! responses and SSE bytes.
//!
//! [`route`] holds the only `(method, path)` match in the crate. It takes a
//! fully read `http_types::Request` (the connection has already bounded and
//! read the body) and returns a [`Reply`]: an ordinary response, or the start
//! of an event stream that the connection then drives. Because it needs no
//! socket, router tests call it directly with built requests.

pub mod auth;
pub mod body;
pub mod chunked;
pub mod conn;
pub mod head;
pub mod idempotency;
mod invite;
pub mod page;
pub mod reply;
pub mod sse;
pub mod transport;

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use futures_lite::AsyncReadExt;
use http_types::{Method, Request, Response};

use crate::accounts::rules::Access;
use crate::accounts::Identity;
use crate::app::App;
use crate::event::{self, Frame};
use crate::history::reader::Found;
use crate::history::{store_gap, Query};
use crate::message::{RoomName, Timestamp, UserName};
use crate::rate::{self, retry_after_secs};
use crate::room::{Change, NewMessage, PublishError, Replay, Subscription};
use crate::shutdown::AddressGuard;
use crate::transform::Draft;
use auth::Want;
use reply::{json, ApiError};

/// What the router answers.
#[derive(Debug)]
pub enum Reply {
    /// A complete response.
    Response(Response),
    /// A JSON body with the fields every JSON answer has and no others
    /// (a post's `201`): written without a [`Response`] (see
    /// [`reply::Json`]).
    Json(reply::Json),
    /// A JSON array of messages, written from their frames in place (a
    /// history page may be thousands of messages: no copy of it is made).
    Messages(MessagesReply),
    /// An event stream to run.
    Stream(StreamStart),
}

/// A history page: status and headers, and the frames whose JSON makes up
/// the body.
#[derive(Debug)]
pub struct MessagesReply {
    /// Status and headers (no body).
    pub response: Response,
    /// Message frames, oldest first (other events are left out).
    pub frames: Vec<Frame>,
    /// The rest of the page, still in the database: read and written a
    /// batch at a time, so a long page is never held whole.
    pub more: Option<(RoomName, Query)>,
}

impl MessagesReply {
    /// The body's pieces, in order: `[`, each message's JSON with commas
    /// between, `]`.
    pub fn parts(&self) -> Vec<&[u8]> {
        let mut parts = Vec::with_capacity(self.frames.len() * 2 + 1);
        parts.push(&b"["[..]);
        for (i, f) in self.frames.iter().enumerate() {
            if i > 0 {
                parts.push(&b","[..]);
            }
            parts.push(event::message_json(f));
        }
        parts.push(&b"]"[..]);
        parts
    }

    /// The body's length.
    pub fn len(&self) -> usize {
        self.parts().iter().map(|p| p.len()).sum()
    }

    /// Whether the page holds no message.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// Everything needed to run an event stream.
#[derive(Debug)]
pub struct StreamStart {
    /// Status and headers (no body).
    pub response: Response,
    /// The room subscription.
    pub sub: Subscription,
    /// `hello`, maybe `gap`, and the replay, to send before live events.
    pub frames: Vec<Frame>,
    /// The rest of the replay, still in the database: read and sent a
    /// batch at a time before live events.
    pub more: Option<(RoomName, Query)>,
    /// Counts the stream against its client's cap behind a trusted proxy.
    pub per_client: Option<AddressGuard>,
    /// Who opened it: the stream closes when they lose the right to read.
    pub who: Identity,
}

/// The resources the API knows, from a path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Resource {
    Page(&'static str),
    Events(RoomName),
    Messages(RoomName),
    Rooms,
    Health,
    Metrics,
    Login,
    Logout,
    Me,
    Message(RoomName, u64),
    /// The URL that opens a room (`invite`), or its QR code (`invite.svg`).
    Invite(RoomName, bool),
}

impl Resource {
    /// Methods each resource answers, for `Allow` and 405.
    fn allow(&self) -> &'static str {
        match self {
            Resource::Messages(_) => "GET, HEAD, POST, OPTIONS",
            Resource::Events(_) => "GET, OPTIONS",
            Resource::Login | Resource::Logout => "POST, OPTIONS",
            Resource::Message(..) => "DELETE, OPTIONS",
            _ => "GET, HEAD, OPTIONS",
        }
    }
}

fn message_id(s: &str) -> Result<u64, ApiError> {
    s.parse()
        .ok()
        .filter(|&id| id > 0)
        .ok_or_else(|| ApiError::BadRequest("a message id is a whole number from 1".into()))
}

/// The `/`-separated segments of `path` after its leading `/`, if there
/// are at most four (more name no resource): what `split('/')` gives, into
/// an array (a Vec and `str::split` were ~400 instructions of every
/// request).
fn segments(path: &str) -> Option<([&str; 4], usize)> {
    let mut segments = [""; 4];
    let mut count = 0;
    let mut rest = path.strip_prefix('/').unwrap_or(path);
    loop {
        if count == segments.len() {
            return None;
        }
        match rest.bytes().position(|b| b == b'/') {
            Some(i) => {
                segments[count] = &rest[..i];
                rest = &rest[i + 1..];
                count += 1;
            }
            None => {
                segments[count] = rest;
                return Some((segments, count + 1));
            }
        }
    }
}

fn resource(path: &str) -> Result<Option<Resource>, ApiError> {
    let room = |s: &str| RoomName::parse(s).map_err(|e| ApiError::BadRequest(e.to_string()));
    let Some((segments, count)) = segments(path) else {
        return Ok(None);
    };
    Ok(Some(match &segments[..count] {
        [""] | ["index.html"] => Resource::Page("index.html"),
        ["app.js"] => Resource::Page("app.js"),
        ["list.js"] => Resource::Page("list.js"),
        ["render.js"] => Resource::Page("render.js"),
        ["send.js"] => Resource::Page("send.js"),
        ["stream.js"] => Resource::Page("stream.js"),
        ["style.css"] => Resource::Page("style.css"),
        ["favicon.svg"] => Resource::Page("favicon.svg"),
        ["events"] => Resource::Events(RoomName::lobby()),
        ["messages"] => Resource::Messages(RoomName::lobby()),
        ["rooms"] | ["rooms", ""] => Resource::Rooms,
        ["rooms", name, "events"] => Resource::Events(room(name)?),
        ["rooms", name, "messages"] => Resource::Messages(room(name)?),
        ["messages", id] => Resource::Message(RoomName::lobby(), message_id(id)?),
        ["rooms", name, "messages", id] => Resource::Message(room(name)?, message_id(id)?),
        ["rooms", name, "invite"] => Resource::Invite(room(name)?, false),
        ["rooms", name, "invite.svg"] => Resource::Invite(room(name)?, true),
        ["healthz"] => Resource::Health,
        ["metrics"] => Resource::Metrics,
        ["login"] => Resource::Login,
        ["logout"] => Resource::Logout,
        ["me"] => Resource::Me,
        _ => return Ok(None),
    }))
}

/// Answers one request. `peer` is the socket's remote address.
pub async fn route(app: &App, req: &mut Request, peer: SocketAddr) -> Reply {
    app.metrics
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let origin = header(req, "origin").map(str::to_string);
    let method = req.method();
    let result = match resource(req.url().path()) {
        // A preflight is answered the same on every path.
        _ if method == Method::Options => Ok(preflight(app, origin.as_deref())),
        Err(e) => Err(e),
        Ok(None) => Err(ApiError::NotFound),
        // The page and the health check are for everyone, always.
        Ok(Some(Resource::Page(name))) if matches!(method, Method::Get | Method::Head) => {
            Ok(Reply::Response(page::serve(name, req)))
        }
        Ok(Some(Resource::Health)) if matches!(method, Method::Get | Method::Head) => {
            Ok(Reply::Response(health(app)))
        }
        // An invite holds nothing but the room's name and this server's
        // address, which the asker has already.
        Ok(Some(Resource::Invite(room, svg))) if matches!(method, Method::Get | Method::Head) => {
            Ok(Reply::Response(if svg {
                invite::svg(app, req, &room)
            } else {
                invite::json(app, req, &room)
            }))
        }
        Ok(Some(res)) => {
            let stream_get = method == Method::Get && matches!(res, Resource::Events(_));
            match auth::identify(app, req, stream_get).await {
                Err(e) => Err(e),
                // The session cookie rides along with any request to this
                // host, a cross-site form's too: writes it authenticates must
                // come from the page itself.
                Ok(asker)
                    if asker.by_cookie
                        && matches!(method, Method::Post | Method::Delete)
                        && !auth::same_origin(req) =>
                {
                    let _ = asker;
                    Err(ApiError::Forbidden("cross-site request refused".into()))
                }
                Ok(asker) => dispatch(app, req, res, peer, asker).await,
            }
        }
    };
    if let Err(e) = &result {
        if method == Method::Post {
            app.metrics.post_refused(e.status());
        }
    }
    let mut reply = match result {
        Ok(Reply::Json(json)) => {
            // Only the fields every JSON answer has: one that gets more
            // goes the general way.
            let cors = method != Method::Options && app.cors.allow(origin.as_deref()).is_some();
            if !cors && !app.config.hsts {
                return Reply::Json(json);
            }
            Reply::Response(json.into_response())
        }
        Ok(reply) => reply,
        Err(e) => Reply::Response(e.response()),
    };
    let res = match &mut reply {
        Reply::Json(_) => unreachable!("made a response above"),
        Reply::Response(res) => res,
        Reply::Messages(m) => &mut m.response,
        Reply::Stream(s) => &mut s.response,
    };
    if method != Method::Options {
        app.cors.apply(origin.as_deref(), res);
    }
    // The security fields are written with the head (conn::encode_head).
    if app.config.hsts {
        // Browsers then use https:// for this host for a year, also when
        // someone types http://.
        res.insert_header("strict-transport-security", "max-age=31536000");
    }
    reply
}

/// Answers a request to `res` from `asker` (identified, and past the
/// cross-site check).
async fn dispatch(
    app: &App,
    req: &mut Request,
    res: Resource,
    peer: SocketAddr,
    asker: auth::Asker,
) -> Result<Reply, ApiError> {
    match (req.method(), res) {
        (Method::Get, Resource::Events(room)) => stream(app, req, &room, peer, asker).await,
        (Method::Post, Resource::Messages(room)) => post(app, req, &room, peer, &asker).await,
        (Method::Get | Method::Head, Resource::Messages(room)) => {
            auth::require(app, &asker, &room, Want::Read)?;
            history(app, req, &room).await
        }
        (Method::Get | Method::Head, Resource::Rooms) => rooms(app, &asker).await,
        (Method::Get | Method::Head, Resource::Metrics) => metrics(app, req, peer, &asker),
        (Method::Get | Method::Head, Resource::Me) => {
            Ok(Reply::Response(json(200, &auth::Me::of(app, &asker))))
        }
        (Method::Delete, Resource::Message(room, id)) => delete(app, &room, id, &asker).await,
        (Method::Post, Resource::Login) => login(app, req, peer).await,
        (Method::Post, Resource::Logout) => logout(app, req).await,
        (_, res) => Err(ApiError::MethodNotAllowed(res.allow())),
    }
}

/// Serves one connection of `--redirect-http`: reads the request head
/// (within `timeout`, through the same guard as every request) and answers
/// `308` to the same path and query on HTTPS at `https_port`, then closes.
/// Anything that is not a request gets `400`.
pub async fn redirect(stream: conn::Stream, https_port: u16, timeout: std::time::Duration) {
    use futures_lite::{AsyncReadExt as _, AsyncWriteExt as _, FutureExt as _};
    let mut buf = Vec::new();
    let mut r = &stream;
    let head = async {
        let mut chunk = [0u8; 2048];
        loop {
            match head::find_end(&buf) {
                Ok(Some(end)) => return head::parse(&buf[..end]).ok(),
                Ok(None) => {}
                Err(_) => return None,
            }
            match r.read(&mut chunk).await {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return None,
            }
        }
    }
    .or(async {
        smol::Timer::after(timeout).await;
        None
    })
    .await;
    // An HTTP/1.0 client may send no Host: then this machine's address.
    let local = stream.get_ref().local_addr().ok();
    let location = head
        .and_then(|h| Some((h.has_host, conn::build_request(h.sanitized).ok()?)))
        .and_then(|(has_host, req)| {
            let url = req.url();
            let host = match (has_host, local) {
                (false, Some(addr)) if addr.is_ipv6() => format!("[{}]", addr.ip()),
                (false, Some(addr)) => addr.ip().to_string(),
                _ => url.host_str()?.to_string(),
            };
            let port = if https_port == 443 {
                String::new()
            } else {
                format!(":{https_port}")
            };
            let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
            Some(format!("https://{host}{port}{}{query}", url.path()))
        });
    let answer = match location {
        Some(to) => format!(
            "HTTP/1.1 308 Permanent Redirect\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        ),
        None => "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into(),
    };
    let mut w = &stream;
    let _ = async { w.write_all(answer.as_bytes()).await }
        .or(async {
            smol::Timer::after(timeout).await;
            Ok(())
        })
        .await;
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Write);
}

/// A header as text (its last value). http-types has already checked it
/// is ASCII.
fn header<'a>(req: &'a Request, name: &'static str) -> Option<&'a str> {
    fields(req, name).map(|v| v.last().as_str())
}

/// The values of the field `name`, given in lowercase, of a request or a
/// response. A walk over the few fields one has: `header(&str)` makes a
/// lowercased copy of the name and hashes it with SipHash, and was most of
/// a lookup's cost.
pub(crate) fn fields<'a>(
    message: &'a impl AsRef<http_types::headers::Headers>,
    name: &'static str,
) -> Option<&'a http_types::headers::HeaderValues> {
    debug_assert!(!name.bytes().any(|b| b.is_ascii_uppercase()));
    message
        .as_ref()
        .iter()
        .find(|(n, _)| n.as_str() == name)
        .map(|(_, v)| v)
}

fn query<'a>(req: &'a Request, key: &str) -> Option<std::borrow::Cow<'a, str>> {
    req.url()
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

fn query_u64(req: &Request, key: &str) -> Result<Option<u64>, ApiError> {
    match query(req, key) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            ApiError::BadRequest(format!("{key} must be a non-negative whole number"))
        }),
    }
}

fn preflight(app: &App, origin: Option<&str>) -> Reply {
    let mut res = reply::response(204);
    res.insert_header("allow", "GET, HEAD, POST, OPTIONS");
    app.cors.apply_preflight(origin, &mut res);
    Reply::Response(res)
}

/// The id an event stream resumes after: `Last-Event-ID` when it is one of
/// ours, else `?since=`, else none. EventSource sends `Last-Event-ID` on
/// reconnect; an id that is not a number is ignored rather than refused,
/// while a bad `since` is the client's own mistake (400).
///
/// # Examples
///
/// ```
/// use http_types::{Method, Request};
/// use smolchat::http::resume_after;
///
/// let mut req = Request::new(Method::Get, "http://pi/events?since=4");
/// assert_eq!(resume_after(&req).unwrap(), Some(4));
/// req.insert_header("last-event-id", " 9 ");
/// assert_eq!(resume_after(&req).unwrap(), Some(9));
/// req.insert_header("last-event-id", "not-ours");
/// assert_eq!(resume_after(&req).unwrap(), Some(4));
/// assert!(resume_after(&Request::new(Method::Get, "http://pi/events?since=-1")).is_err());
/// ```
pub fn resume_after(req: &Request) -> Result<Option<u64>, ApiError> {
    match header(req, "last-event-id").and_then(|v| v.trim().parse().ok()) {
        Some(id) => Ok(Some(id)),
        None => query_u64(req, "since"),
    }
}

async fn stream(
    app: &App,
    req: &Request,
    room: &RoomName,
    peer: SocketAddr,
    asker: auth::Asker,
) -> Result<Reply, ApiError> {
    if app.shutdown.is_triggered() {
        return Err(ApiError::ShuttingDown);
    }
    auth::require(app, &asker, room, Want::Read)?;
    // Behind a trusted proxy every connection comes from the proxy, so the
    // per-client cap counts streams by forwarded address instead.
    let per_client = if app.config.trust_proxy {
        let guard = app
            .peers
            .try_enter(client_ip(app, req, peer), app.config.max_connections_per_ip);
        if guard.is_none() {
            app.metrics
                .connections_refused_per_ip
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(ApiError::TooManyFromAddress);
        }
        guard
    } else {
        None
    };
    let since = resume_after(req)?;
    let named = match query(req, "user") {
        Some(u) if !u.is_empty() => {
            Some(UserName::parse(&u).map_err(|e| ApiError::BadRequest(e.to_string()))?)
        }
        _ => None,
    };
    // Presence shows the account's name; nobody else may show it.
    let user = match asker.who.user() {
        Some(account) => {
            if named.as_ref().is_some_and(|n| n != account) {
                return Err(signed_in_as(account));
            }
            Some(account.clone())
        }
        None => {
            if let Some(n) = named.as_ref().filter(|n| app.accounts.is_registered(n)) {
                return Err(reserved(n));
            }
            named
        }
    };
    let room = app
        .room_for(room, true)
        .await?
        .expect("room_for creates when asked");
    let (sub, opening) = room.subscribe(since, app.config.replay, user);
    let mut frames = vec![opening.hello];
    let mut more = None;
    match opening.replay {
        Replay::Here(replay) => frames.extend(replay),
        Replay::Store {
            since,
            next_id,
            query,
        } => {
            let found = read_store(app, room.name(), query).await?;
            if let Some(first) = store_gap(since, next_id, found.first_read, found.first_held) {
                frames.push(event::encode(&event::Event::Gap {
                    since: since.unwrap_or(0),
                    first,
                }));
            }
            frames.extend(found.frames);
            more = found.next.map(|q| (room.name().clone(), q));
        }
    }
    let mut response = reply::response(200);
    response.insert_header("content-type", "text/event-stream");
    response.insert_header("cache-control", "no-cache");
    response.insert_header("x-accel-buffering", "no");
    Ok(Reply::Stream(StreamStart {
        response,
        sub,
        frames,
        more,
        per_client,
        who: asker.who,
    }))
}

/// Reads what memory does not hold from the database, a batch at a time
/// ([`Found::next`] says what is left).
pub(crate) async fn read_store(
    app: &App,
    room: &RoomName,
    query: Query,
) -> Result<Found, ApiError> {
    let reader = app
        .reader
        .as_ref()
        .ok_or_else(|| ApiError::StoreRead("no database".into()))?;
    let found = reader.read(room, query).await.map_err(|e| {
        log::error!("{e}");
        ApiError::StoreRead(e.0)
    })?;
    // What was read counts against the budget until it is written: make
    // room for it in memory's cache of recent messages.
    app.reclaim();
    Ok(found)
}

/// The `403` for a post or stream under another name than the account's.
fn signed_in_as(account: &UserName) -> ApiError {
    ApiError::Forbidden(format!(
        "you are signed in as {account}: post under that name, or sign out"
    ))
}

/// The `403` for a name that belongs to an account.
fn reserved(name: &UserName) -> ApiError {
    ApiError::Forbidden(format!(
        "the name {name} belongs to an account: sign in to use it"
    ))
}

async fn post(
    app: &App,
    req: &mut Request,
    room: &RoomName,
    peer: SocketAddr,
    asker: &auth::Asker,
) -> Result<Reply, ApiError> {
    if app.shutdown.is_triggered() {
        return Err(ApiError::ShuttingDown);
    }
    auth::require(app, asker, room, Want::Write)?;
    let client: rate::Client = match asker.who.user() {
        Some(account) => rate::Client::Account(account.clone()),
        None => client_ip(app, req, peer).into(),
    };
    if let Err(wait) = app.rate.check(client, Instant::now()) {
        return Err(ApiError::RateLimited {
            retry_after: retry_after_secs(wait),
        });
    }
    let limit = app.config.max_message_bytes;
    // The connection has read and bounded the body already; this bound is
    // for requests built in tests.
    // Read through the request, not `take_body`: that would look up the
    // Content-Type field again (SipHash) to copy the body's type into it,
    // ~260 instructions a post for nothing (the connection set both).
    // Room for the whole body and the read that finds its end, so it is
    // read into one allocation. (Not `clamp`: with `--max-message-bytes`
    // under 31 its bounds would cross, and it panics then.)
    let room_for = req
        .len()
        .unwrap_or(0)
        .saturating_add(1)
        .max(32)
        .min(limit + 1);
    let mut bytes = Vec::with_capacity(room_for);
    AsyncReadExt::take(&mut *req, limit as u64 + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|_| ApiError::BadRequest("could not read body".into()))?;
    if bytes.len() > limit {
        return Err(ApiError::TooLarge(limit));
    }
    let post = body::decode(
        header(req, "content-type"),
        &bytes,
        query(req, "user").as_deref(),
        header(req, "x-chat-user").map(percent_decode).as_deref(),
    )?;
    // An account posts under its name; a guest may not take one.
    let anonymous = post.user == UserName::anonymous();
    let (user, guest) = match asker.who.user() {
        Some(account) => {
            if !anonymous && &post.user != account {
                return Err(signed_in_as(account));
            }
            (account.clone(), false)
        }
        None => {
            if app.accounts.is_registered(&post.user) {
                return Err(reserved(&post.user));
            }
            (post.user, app.accounts.has_users())
        }
    };
    let deadline = Instant::now() + app.config.publish_timeout;
    // A retry of a post that was answered already gets that answer.
    let ticket = match header(req, "idempotency-key") {
        None => None,
        Some(key) => {
            if !idempotency::valid_key(key) {
                return Err(ApiError::BadRequest(format!(
                    "invalid Idempotency-Key: 1 to {} visible ASCII characters",
                    idempotency::MAX_KEY
                )));
            }
            let who = match asker.who.user() {
                Some(account) => format!("a:{account}"),
                None => format!("ip:{}", rate::client_key(client_ip(app, req, peer))),
            };
            let print = idempotency::fingerprint(&[
                header(req, "content-type").unwrap_or_default().as_bytes(),
                &bytes,
                user.as_str().as_bytes(),
            ]);
            match claim_key(app, format!("{room}\n{who}\n{key}"), print, deadline).await? {
                idempotency::Claim::Answered(body) => {
                    let mut res = reply::json_bytes(201, body);
                    res.insert_header("idempotent-replayed", "true");
                    return Ok(Reply::Response(res));
                }
                idempotency::Claim::First(ticket) => Some(ticket),
            }
        }
    };
    let draft = app
        .pipeline
        .apply(Draft::new(post.text))
        .map_err(|r| ApiError::Refused(r.to_string()))?;
    app.admit()?;
    let room = app
        .room_for(room, true)
        .await?
        .expect("room_for creates when asked");
    let new = NewMessage {
        user,
        text: draft.text,
        spans: draft.spans,
        guest,
    };
    match room
        .publish(
            Change::Post(new),
            Timestamp::now(),
            deadline,
            &app.store,
            app.shutdown.wait(),
        )
        .await
    {
        Ok(entry) => {
            app.metrics
                .messages_published
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // The new message may have taken memory over the budget.
            app.reclaim();
            let body = event::message_json(&entry.frame).to_vec();
            if let Some(ticket) = ticket {
                ticket.done(&body).await;
            }
            Ok(Reply::Json(reply::Json::new(
                http_types::StatusCode::Created,
                body,
            )))
        }
        Err(e) => Err(publish_error(e)),
    }
}

/// Claims an `Idempotency-Key` scope where the keys live: in Redis with
/// `--redis` (shared by the instances), else in this instance's memory.
async fn claim_key(
    app: &App,
    scope: String,
    print: u64,
    deadline: Instant,
) -> Result<idempotency::Claim, ApiError> {
    #[cfg(feature = "redis")]
    if let crate::history::Store::Redis(r) = &app.store {
        return idempotency::claim_redis(r, scope, print, deadline).await;
    }
    app.idempotency.claim(scope, print, deadline).await
}

/// Decodes the `X-Chat-User` header: it may carry a percent-encoded UTF-8
/// name, since header values must be ASCII. `+` stays a plus; bytes that
/// are not UTF-8 become U+FFFD.
///
/// # Examples
///
/// ```
/// use smolchat::http::percent_decode;
///
/// assert_eq!(percent_decode("Zo%C3%AB"), "Zoë");
/// assert_eq!(percent_decode("a+b"), "a+b");
/// ```
pub fn percent_decode(v: &str) -> String {
    // Read as the value of a one-field form: `+` and `&` would mean a space
    // and the next field there, so they are escaped first.
    let form = format!("u={}", v.replace('+', "%2B").replace('&', "%26"));
    let bytes: Vec<u8> = form_urlencoded::parse(form.as_bytes())
        .next()
        .map(|(_, v)| v.into_owned().into_bytes())
        .unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_else(|_| v.to_string())
}

/// The rate-limit key: the peer, or the first `X-Forwarded-For` hop when
/// the operator says a proxy sets it.
fn client_ip(app: &App, req: &Request, peer: SocketAddr) -> IpAddr {
    if app.config.trust_proxy {
        if let Some(ip) = header(req, "x-forwarded-for")
            .and_then(|v| v.split(',').next())
            .and_then(|hop| hop.trim().parse().ok())
        {
            return ip;
        }
    }
    peer.ip()
}

async fn history(app: &App, req: &Request, room: &RoomName) -> Result<Reply, ApiError> {
    let since = query_u64(req, "since")?;
    let limit = match query_u64(req, "limit")? {
        None => app.config.replay.max(1),
        Some(0) => return Err(ApiError::BadRequest("limit must be at least 1".into())),
        Some(n) => usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(app.config.history),
    };
    let (frames, more) = match app.room_for(room, false).await? {
        None => (Vec::new(), None),
        Some(r) => match r.page(since, limit) {
            Ok(frames) => (frames, None),
            Err(query) => {
                let found = read_store(app, room, query).await?;
                (found.frames, found.next.map(|q| (room.clone(), q)))
            }
        },
    };
    // The messages' JSON is in their frames already: the body is written
    // from them. Delete events are not messages (the messages they delete
    // show `deleted`).
    let mut response = reply::response(200);
    response.insert_header("content-type", "application/json");
    response.insert_header("cache-control", "no-store");
    Ok(Reply::Messages(MessagesReply {
        response,
        frames: frames.into_iter().filter(|f| is_message(f)).collect(),
        more,
    }))
}

/// `{"status":"ok", ...}` while the server takes posts; `503` while it
/// stops. Also says how much of the memory budget is in use, and when new
/// posts are refused because it is full, why.
fn health(app: &App) -> Response {
    if app.shutdown.is_triggered() {
        return ApiError::ShuttingDown.response();
    }
    #[derive(serde::Serialize)]
    struct Health {
        status: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        memory_bytes: usize,
        memory_limit_bytes: usize,
    }
    let full = app.memory.over();
    // With --redis, nothing can be posted or resumed while it is away.
    let store_down = app.cluster.as_ref().is_some_and(|c| !c.is_up());
    let body = Health {
        status: if store_down {
            "unavailable"
        } else if full {
            "degraded"
        } else {
            "ok"
        },
        reason: if store_down {
            Some(ApiError::StoreUnavailable.message())
        } else {
            full.then(|| ApiError::MemoryFull.message())
        },
        memory_bytes: app.memory.used(),
        memory_limit_bytes: app.memory.limit(),
    };
    let mut res = json(if store_down { 503 } else { 200 }, &body);
    res.insert_header("cache-control", "no-store");
    res
}

/// Prometheus text. With `--default-access` other than read-write (a
/// server that keeps things private), only admins and the machine itself
/// may read it: room counts and traffic say something too.
fn metrics(
    app: &App,
    req: &Request,
    peer: SocketAddr,
    asker: &auth::Asker,
) -> Result<Reply, ApiError> {
    let open = app.accounts.default_access() == Access::ReadWrite;
    if !open && !asker.who.is_admin() && !client_ip(app, req, peer).is_loopback() {
        return Err(match asker.who.user() {
            None => ApiError::Unauthorized("sign in as an admin to read metrics".into()),
            Some(u) => ApiError::Forbidden(format!("{u} is not an admin")),
        });
    }
    let mut res = reply::response(200);
    res.set_body(crate::metrics::render(&app.metrics.snapshot(
        app.room_count(),
        app.tracker.open(),
        (app.memory.used(), app.memory.frames(), app.memory.limit()),
    )));
    res.insert_header("content-type", "text/plain; version=0.0.4; charset=utf-8");
    res.insert_header("cache-control", "no-store");
    Ok(Reply::Response(res))
}

/// Rooms the asker may read.
async fn rooms(app: &App, asker: &auth::Asker) -> Result<Reply, ApiError> {
    let mut rooms = app.rooms().await?;
    rooms.retain(|r| app.accounts.access(&asker.who, &r.room).read());
    Ok(Reply::Response(json(200, &rooms)))
}

pub(crate) fn is_message(frame: &[u8]) -> bool {
    frame.starts_with(b"event: message\n")
}

/// `DELETE /rooms/{room}/messages/{id}`: an admin, or the author within
/// `--edit-window` (if they may still post there). The text leaves the
/// database, and an `event: delete` takes the room's next id, so every
/// stream hears of it, also one that resumes later.
async fn delete(
    app: &App,
    name: &RoomName,
    id: u64,
    asker: &auth::Asker,
) -> Result<Reply, ApiError> {
    let Some(by) = asker.who.user() else {
        return Err(ApiError::Unauthorized("sign in to delete messages".into()));
    };
    let room = app.room_for(name, false).await?.ok_or(ApiError::NotFound)?;
    let frame = match room.find(id) {
        Ok(frame) => frame,
        Err(query) => read_store(app, name, query)
            .await?
            .frames
            .into_iter()
            .next(),
    };
    let frame = frame.filter(|f| is_message(f)).ok_or(ApiError::NotFound)?;
    #[derive(serde::Deserialize)]
    struct Target {
        user: String,
        time: String,
        #[serde(default)]
        guest: bool,
        #[serde(default)]
        deleted: bool,
    }
    let target: Target =
        serde_json::from_slice(event::message_json(&frame)).map_err(|_| ApiError::NotFound)?;
    if target.deleted {
        return Err(ApiError::Gone);
    }
    if !asker.who.is_admin() {
        let mine = !target.guest && target.user == by.as_str();
        let posted = Timestamp::parse(&target.time).unwrap_or_default();
        let window = i64::try_from(app.config.edit_window.as_secs()).unwrap_or(i64::MAX);
        if !mine {
            return Err(ApiError::Forbidden(
                "only an admin may delete someone else's message".into(),
            ));
        }
        if Timestamp::now().0 - posted.0 > window {
            return Err(ApiError::Forbidden(format!(
                "too late: authors may delete their messages for {}",
                humantime(app.config.edit_window)
            )));
        }
        auth::require(app, asker, name, Want::Write)?;
    }
    let deadline = Instant::now() + app.config.publish_timeout;
    let change = Change::Delete {
        target: id,
        by: by.clone(),
    };
    match room
        .publish(
            change,
            Timestamp::now(),
            deadline,
            &app.store,
            app.shutdown.wait(),
        )
        .await
    {
        Ok(entry) => Ok(Reply::Response(json(
            200,
            &serde_json::json!({ "id": id, "deleted": true, "event": entry.id }),
        ))),
        Err(e) => Err(publish_error(e)),
    }
}

/// The answer to a post or delete that was not published.
fn publish_error(e: PublishError) -> ApiError {
    match e {
        PublishError::Congested => ApiError::Congested { retry_after: 1 },
        PublishError::Stopping => ApiError::ShuttingDown,
        PublishError::Storage(e) => ApiError::Storage(e),
        PublishError::Unavailable(e) => {
            log::warn!("post refused: {e}");
            ApiError::StoreUnavailable
        }
        PublishError::AlreadyDeleted => ApiError::Gone,
    }
}

/// A duration as people write it: 5m, 90s, 2h.
fn humantime(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 3600 == 0 && s > 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 && s > 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `POST /login` with `user` and `password` (a form or JSON): a session
/// cookie for the page. Rate-limited like posts, by address.
async fn login(app: &App, req: &mut Request, peer: SocketAddr) -> Result<Reply, ApiError> {
    if !auth::same_origin(req) {
        return Err(ApiError::Forbidden("cross-site request refused".into()));
    }
    if let Err(wait) = app.rate.check(client_ip(app, req, peer), Instant::now()) {
        return Err(ApiError::RateLimited {
            retry_after: retry_after_secs(wait),
        });
    }
    let mut bytes = Vec::new();
    AsyncReadExt::take(req.take_body(), 4096)
        .read_to_end(&mut bytes)
        .await
        .map_err(|_| ApiError::BadRequest("could not read body".into()))?;
    let (user, password) = body::credentials(header(req, "content-type"), &bytes)?;
    let Some(who) = app.accounts.by_password(&user, &password).await else {
        return Err(ApiError::Unauthorized("wrong user name or password".into()));
    };
    let name = who
        .user()
        .expect("a password check gives an account")
        .clone();
    let session = app
        .accounts
        .new_session(&name)
        .await
        .map_err(ApiError::StoreRead)?;
    let mut res = json(
        200,
        &serde_json::json!({ "user": name.as_str(), "admin": who.is_admin() }),
    );
    res.insert_header(
        "set-cookie",
        format!(
            "{}={session}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
            auth::COOKIE,
            crate::accounts::SESSION_DAYS * 86_400,
            // Under HTTPS the browser never sends it over plain HTTP.
            if app.config.tls.is_some() {
                "; Secure"
            } else {
                ""
            }
        ),
    );
    res.insert_header("cache-control", "no-store");
    Ok(Reply::Response(res))
}

/// `POST /logout`: ends the session and clears the cookie.
async fn logout(app: &App, req: &Request) -> Result<Reply, ApiError> {
    if let Some(session) = auth::cookie(req, auth::COOKIE) {
        app.accounts.end_session(session).await;
    }
    let mut res = reply::response(204);
    res.insert_header(
        "set-cookie",
        format!(
            "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
            auth::COOKIE
        ),
    );
    Ok(Reply::Response(res))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::transform::Pipeline;
    use http_types::Url;

    fn app() -> App {
        App::in_memory(Config::defaults(), Pipeline::none())
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:5000".parse().unwrap()
    }

    fn req(method: Method, path: &str) -> Request {
        Request::new(
            method,
            Url::parse(&format!("http://pi.local{path}")).unwrap(),
        )
    }

    #[test]
    fn segments_are_what_split_gives() {
        for path in [
            "",
            "/",
            "//",
            "/rooms",
            "/rooms/",
            "/rooms/a/messages",
            "/rooms/a/messages/5",
            "/rooms/a/messages/5/",
            "/a/b/c/d/e",
            "/rooms//messages",
            "rooms/a",
            "/é/ü",
        ] {
            let split: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
            let ours = segments(path).map(|(s, n)| s[..n].to_vec());
            let want = (split.len() <= 4).then_some(split);
            assert_eq!(ours, want, "{path:?}");
        }
    }

    fn respond(app: &App, mut r: Request) -> Response {
        match smol::block_on(route(app, &mut r, peer())) {
            Reply::Response(res) => res,
            Reply::Json(json) => json.into_response(),
            Reply::Messages(mut page) => {
                let body: Vec<u8> = page.parts().concat();
                page.response.set_body(body);
                page.response
            }
            Reply::Stream(s) => panic!("unexpected stream {:?}", s.response.status()),
        }
    }

    fn body(res: &mut Response) -> serde_json::Value {
        serde_json::from_slice(&smol::block_on(res.take_body().into_bytes()).unwrap()).unwrap()
    }

    fn post(app: &App, path: &str, ct: &str, text: &str) -> Response {
        let mut r = req(Method::Post, path);
        r.set_body(text.to_string());
        r.insert_header("content-type", ct);
        respond(app, r)
    }

    #[test]
    fn statuses_by_method_and_path() {
        let app = app();
        let cases = [
            (Method::Get, "/", 200),
            (Method::Head, "/", 200),
            (Method::Get, "/app.js", 200),
            (Method::Get, "/healthz", 200),
            (Method::Get, "/metrics", 200),
            (Method::Get, "/rooms", 200),
            (Method::Get, "/rooms/kitchen/messages", 200),
            (Method::Get, "/nope", 404),
            (Method::Get, "/rooms/kitchen", 404),
            (Method::Get, "/rooms/bad%20name/messages", 400),
            (Method::Delete, "/messages", 405),
            (Method::Post, "/events", 405),
            (Method::Put, "/", 405),
            (Method::Options, "/messages", 204),
        ];
        for (method, path, status) in cases {
            let res = respond(&app, req(method, path));
            assert_eq!(u16::from(res.status()), status, "{method} {path}");
        }
    }

    #[test]
    fn a_405_says_what_is_allowed() {
        let res = respond(&app(), req(Method::Delete, "/rooms/x/messages"));
        assert_eq!(
            res.header("allow").unwrap().as_str(),
            "GET, HEAD, POST, OPTIONS"
        );
    }

    #[test]
    fn post_then_read_history() {
        let app = app();
        let mut res = post(
            &app,
            "/rooms/k/messages",
            "application/json",
            r#"{"user":"ana","text":"hi"}"#,
        );
        assert_eq!(u16::from(res.status()), 201);
        let m = body(&mut res);
        assert_eq!(
            (m["id"].as_u64(), m["user"].as_str(), m["room"].as_str()),
            (Some(1), Some("ana"), Some("k"))
        );
        post(&app, "/rooms/k/messages", "text/plain", "second");
        let mut res = respond(&app, req(Method::Get, "/rooms/k/messages?since=1"));
        let page = body(&mut res);
        assert_eq!(page.as_array().unwrap().len(), 1);
        assert_eq!(page[0]["text"], "second");
        let mut res = respond(&app, req(Method::Get, "/rooms"));
        assert_eq!(
            body(&mut res),
            serde_json::json!([{"room":"k","online":0,"users":[],"last_id":2}])
        );
    }

    #[test]
    fn refused_posts_are_counted_by_status() {
        let app = app();
        assert_eq!(
            u16::from(post(&app, "/messages", "text/plain", "  ").status()),
            400
        );
        assert_eq!(
            u16::from(post(&app, "/messages", "image/png", "x").status()),
            415
        );
        let big = "x".repeat(app.config.max_message_bytes + 1);
        assert_eq!(
            u16::from(post(&app, "/messages", "text/plain", &big).status()),
            413
        );
        assert_eq!(app.metrics.posts_refused(400), 1);
        assert_eq!(app.metrics.posts_refused(415), 1);
        assert_eq!(app.metrics.posts_refused(413), 1);
    }

    #[test]
    fn the_rate_limit_answers_429_with_retry_after() {
        let app = app();
        let mut last = None;
        for _ in 0..=app.config.rate_burst {
            last = Some(post(&app, "/messages", "text/plain", "spam"));
        }
        let res = last.unwrap();
        assert_eq!(u16::from(res.status()), 429);
        assert_eq!(res.header("retry-after").unwrap().as_str(), "1");
    }

    #[test]
    fn a_stream_reply_has_sse_headers_and_starts_with_hello() {
        let app = app();
        post(&app, "/rooms/k/messages", "text/plain", "one");
        let mut r = req(Method::Get, "/rooms/k/events?user=ana");
        r.insert_header("last-event-id", "0");
        let Reply::Stream(s) = smol::block_on(route(&app, &mut r, peer())) else {
            panic!("no stream")
        };
        assert_eq!(
            s.response.header("content-type").unwrap().as_str(),
            "text/event-stream"
        );
        assert_eq!(
            s.response.header("x-accel-buffering").unwrap().as_str(),
            "no"
        );
        assert_eq!(
            s.response.header("cache-control").unwrap().as_str(),
            "no-cache"
        );
        assert!(s.frames[0].starts_with(b"event: hello\ndata: {\"room\":\"k\",\"online\":1"));
        assert!(s.frames[1].starts_with(b"event: message\nid: 1\n"));
    }

    #[test]
    fn cors_only_for_allowed_origins() {
        let mut config = Config::defaults();
        config.allow_origins = vec!["https://a.example".into()];
        let app = App::in_memory(config, Pipeline::none());
        let mut r = req(Method::Options, "/messages");
        r.insert_header("origin", "https://a.example");
        let res = respond(&app, r);
        assert_eq!(
            res.header("access-control-allow-origin").unwrap().as_str(),
            "https://a.example"
        );
        assert!(res
            .header("access-control-allow-methods")
            .unwrap()
            .as_str()
            .contains("POST"));
        let mut r = req(Method::Get, "/rooms");
        r.insert_header("origin", "https://evil.example");
        assert!(respond(&app, r)
            .header("access-control-allow-origin")
            .is_none());
    }

    /// Found by the `body` fuzz target (docs/fuzzing.md): `X-Chat-User:
    /// Tom & Jerry` posted as "Tom", since `&` ended the form field the
    /// header was decoded as.
    #[test]
    fn regression_an_ampersand_in_x_chat_user_is_kept() {
        assert_eq!(percent_decode("Tom & Jerry"), "Tom & Jerry");
        assert_eq!(percent_decode("a&b=c&"), "a&b=c&");
        assert_eq!(percent_decode("Tom %26 Jerry"), "Tom & Jerry");
    }

    #[test]
    fn percent_encoded_user_header() {
        assert_eq!(percent_decode("Zo%C3%AB"), "Zoë");
        assert_eq!(percent_decode("a+b"), "a+b");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }
}
