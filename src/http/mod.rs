//! The protocol layer: HTTP requests to domain calls, domain values to
//! responses and SSE bytes.
//!
//! [`route`] holds the only `(method, path)` match in the crate. It takes a
//! fully read `http_types::Request` (the connection has already bounded and
//! read the body) and returns a [`Reply`]: an ordinary response, or the start
//! of an event stream that the connection then drives. Because it needs no
//! socket, router tests call it directly with built requests.

pub mod body;
pub mod chunked;
pub mod conn;
pub mod head;
pub mod page;
pub mod reply;
pub mod sse;

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use futures_lite::AsyncReadExt;
use http_types::{Method, Request, Response};

use crate::app::App;
use crate::event::{self, Frame};
use crate::message::{RoomName, Timestamp, UserName};
use crate::rate::retry_after_secs;
use crate::room::{NewMessage, PublishError, Subscription};
use crate::transform::Draft;
use reply::{json, ApiError};

/// What the router answers.
#[derive(Debug)]
pub enum Reply {
    /// A complete response.
    Response(Response),
    /// An event stream to run.
    Stream(StreamStart),
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
}

impl Resource {
    /// Methods each resource answers, for `Allow` and 405.
    fn allow(&self) -> &'static str {
        match self {
            Resource::Messages(_) => "GET, HEAD, POST, OPTIONS",
            Resource::Events(_) => "GET, OPTIONS",
            _ => "GET, HEAD, OPTIONS",
        }
    }
}

fn resource(path: &str) -> Result<Option<Resource>, ApiError> {
    let room = |s: &str| RoomName::parse(s).map_err(|e| ApiError::BadRequest(e.to_string()));
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    Ok(Some(match segments.as_slice() {
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
        ["healthz"] => Resource::Health,
        ["metrics"] => Resource::Metrics,
        _ => return Ok(None),
    }))
}

/// Answers one request. `peer` is the socket's remote address.
pub async fn route(app: &App, mut req: Request, peer: SocketAddr) -> Reply {
    app.metrics
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let origin = header(&req, "origin").map(str::to_string);
    let method = req.method();
    let result = match resource(req.url().path()) {
        // A preflight is answered the same on every path.
        _ if method == Method::Options => Ok(preflight(app, origin.as_deref())),
        Err(e) => Err(e),
        Ok(None) => Err(ApiError::NotFound),
        Ok(Some(res)) => match (method, res) {
            (Method::Get | Method::Head, Resource::Page(name)) => {
                Ok(Reply::Response(page::serve(name, &req)))
            }
            (Method::Get, Resource::Events(room)) => stream(app, &req, &room),
            (Method::Post, Resource::Messages(room)) => post(app, &mut req, &room, peer).await,
            (Method::Get | Method::Head, Resource::Messages(room)) => history(app, &req, &room),
            (Method::Get | Method::Head, Resource::Rooms) => {
                Ok(Reply::Response(json(200, &app.rooms())))
            }
            (Method::Get | Method::Head, Resource::Health) => Ok(Reply::Response(health(app))),
            (Method::Get | Method::Head, Resource::Metrics) => Ok(Reply::Response(metrics(app))),
            (_, res) => Err(ApiError::MethodNotAllowed(res.allow())),
        },
    };
    if let Err(e) = &result {
        if method == Method::Post {
            app.metrics.post_refused(e.status());
        }
    }
    let mut reply = result.unwrap_or_else(|e| Reply::Response(e.response()));
    let res = match &mut reply {
        Reply::Response(res) => res,
        Reply::Stream(s) => &mut s.response,
    };
    if method != Method::Options {
        app.cors.apply(origin.as_deref(), res);
    }
    reply
}

/// A header as text. http-types has already checked it is ASCII.
fn header<'a>(req: &'a Request, name: &'static str) -> Option<&'a str> {
    req.header(name).map(|v| v.last().as_str())
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
    let mut res = Response::new(204);
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

fn stream(app: &App, req: &Request, room: &RoomName) -> Result<Reply, ApiError> {
    if app.shutdown.is_triggered() {
        return Err(ApiError::ShuttingDown);
    }
    let since = resume_after(req)?;
    let user = match query(req, "user") {
        Some(u) if !u.is_empty() => {
            Some(UserName::parse(&u).map_err(|e| ApiError::BadRequest(e.to_string()))?)
        }
        _ => None,
    };
    let room = app.room_or_create(room)?;
    let (sub, frames) = room.subscribe(since, app.config.replay, user);
    let mut response = Response::new(200);
    response.insert_header("content-type", "text/event-stream");
    response.insert_header("cache-control", "no-cache");
    response.insert_header("x-accel-buffering", "no");
    Ok(Reply::Stream(StreamStart {
        response,
        sub,
        frames,
    }))
}

async fn post(
    app: &App,
    req: &mut Request,
    room: &RoomName,
    peer: SocketAddr,
) -> Result<Reply, ApiError> {
    if app.shutdown.is_triggered() {
        return Err(ApiError::ShuttingDown);
    }
    if let Err(wait) = app.rate.check(client_ip(app, req, peer), Instant::now()) {
        return Err(ApiError::RateLimited {
            retry_after: retry_after_secs(wait),
        });
    }
    let limit = app.config.max_message_bytes;
    // The connection has read and bounded the body already; this bound is
    // for requests built in tests.
    let mut bytes = Vec::new();
    AsyncReadExt::take(req.take_body(), limit as u64 + 1)
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
    let draft = app
        .pipeline
        .apply(Draft::new(post.text))
        .map_err(|r| ApiError::Refused(r.to_string()))?;
    let room = app.room_or_create(room)?;
    let new = NewMessage {
        user: post.user,
        text: draft.text,
        spans: draft.spans,
    };
    let deadline = Instant::now() + app.config.publish_timeout;
    match room
        .publish(
            new,
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
            Ok(Reply::Response(reply::json_bytes(
                201,
                event::message_json(&entry.frame).to_vec(),
            )))
        }
        Err(PublishError::Congested) => Err(ApiError::Congested { retry_after: 1 }),
        Err(PublishError::Stopping) => Err(ApiError::ShuttingDown),
        Err(PublishError::Storage(e)) => Err(ApiError::Storage(e)),
    }
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

fn history(app: &App, req: &Request, room: &RoomName) -> Result<Reply, ApiError> {
    let since = query_u64(req, "since")?;
    let limit = match query_u64(req, "limit")? {
        None => app.config.replay.max(1),
        Some(0) => return Err(ApiError::BadRequest("limit must be at least 1".into())),
        Some(n) => usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(app.config.history),
    };
    let page = app
        .room(room)
        .map(|r| r.page(since, limit))
        .unwrap_or_default();
    Ok(Reply::Response(json(200, &page)))
}

fn health(app: &App) -> Response {
    if app.shutdown.is_triggered() {
        return ApiError::ShuttingDown.response();
    }
    let mut res = Response::new(200);
    res.set_body("ok\n");
    res.insert_header("content-type", "text/plain; charset=utf-8");
    res.insert_header("cache-control", "no-store");
    res
}

fn metrics(app: &App) -> Response {
    let mut res = Response::new(200);
    res.set_body(crate::metrics::render(
        &app.metrics.snapshot(app.room_count(), app.tracker.open()),
    ));
    res.insert_header("content-type", "text/plain; version=0.0.4; charset=utf-8");
    res.insert_header("cache-control", "no-store");
    res
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

    fn respond(app: &App, r: Request) -> Response {
        match smol::block_on(route(app, r, peer())) {
            Reply::Response(res) => res,
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
        let Reply::Stream(s) = smol::block_on(route(&app, r, peer())) else {
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
