//! One TCP connection: our own keep-alive loop around async-h1's decoder
//! and encoder.
//!
//! We do not call `async_h1::accept`: its header timer starts a second
//! (async-io 1.x) reactor thread, its `BufReader` drops pipelined requests,
//! it closes on a parse error without a response, and it trusts the client's
//! framing. Instead, per request:
//!
//! 1. read into our buffer until [`head::find_end`] finds the head, within
//!    `--header-timeout` and [`head::MAX_HEAD`] bytes (the guard);
//! 2. [`head::parse`] refuses hostile heads with a status and works out the
//!    framing; the sanitized head goes to `async_h1::server::decode` from a
//!    buffer holding nothing else, so it cannot read ahead or panic;
//! 3. read the body ourselves, bounded by `--max-message-bytes` (a declared
//!    length over the limit is refused before a byte of body is read);
//! 4. route, then encode the response into one buffer (`encode_head`
//!    writes what async-h1's `Encoder` wrote, a unit test compares them;
//!    a post's `201` is written from its JSON without a `Response`, see
//!    `reply::Json`) and write it in one go (with `TCP_NODELAY`, so no
//!    Nagle stall), under a stall deadline;
//! 5. bytes after the request stay in our buffer for the next one, so
//!    pipelined requests are answered in order.
//!
//! An HTTP/1.0 request goes the same way (the guard rebuilt its head as
//! 1.1); only its answer differs: a body of unknown length (an event
//! stream, a history page read in batches) is not chunked but ends with
//! the connection, and a response says `connection: keep-alive` when the
//! client asked to keep it, since 1.0 closes by default. The status line
//! stays `HTTP/1.1`, as RFC 9110 asks of a 1.1 server.
//!
//! An event stream takes the socket over from there ([`super::stream`] is
//! not a module; see [`run_stream`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_lite::{future, FutureExt};
use http_types::{Body, Method, Request, Response};
use smol::Async;
use smol::Timer;

/// A connected socket registered with the reactor. `&Stream` reads and
/// writes, so one task can wait for EOF while it writes.
pub type Stream = Async<std::net::TcpStream>;

use super::head::{self, Framing, Head, Version};
use super::reply::{ApiError, Json, SECURITY_HEADERS};
use super::sse::{self, Delimit};
use super::transport::Transport;
pub(crate) use super::transport::WriteFail;
use super::{chunked, route, Reply, StreamStart};
use crate::accounts::{Accounts, Identity};
use crate::app::App;
use crate::event::{self, decimal, decimal_bytes, Frame};
use crate::history::Query;
use crate::message::RoomName;
use crate::room::{Room, Subscription};
use crate::shutdown::Watch;

/// Send buffer for event streams: small, so a client that stops reading
/// fills it soon and the stall is seen, instead of the kernel's auto-tuned
/// megabytes absorbing thousands of messages.
const SSE_SNDBUF: usize = 32 * 1024;
/// Most bytes of ready events written in one chunk.
const MAX_BATCH: usize = 32 * 1024;
/// Shortest time between two presence updates on one stream. Presence
/// converges within this (plus a write) after the last change.
const PRESENCE_EVERY: Duration = Duration::from_millis(250);
/// How long to keep reading (and discarding) after refusing a request, so
/// the client sees our answer rather than a reset.
const LINGER: Duration = Duration::from_secs(1);

/// Serves one accepted connection until it closes.
///
/// Three states with very different lifetimes and sizes:
///
/// - **waiting** for bytes (a new connection, an idle keep-alive, a head
///   that arrives slowly): only the connection's small state and the bytes
///   read so far, a few hundred bytes. All waiting for input happens here.
/// - **answering** the requests those bytes hold: reading, routing and
///   encoding take futures of several KiB (async-h1's decoder, http-types,
///   a post waiting for queue space), so this phase is boxed, allocated
///   when bytes arrive and freed when they are answered.
/// - **streaming** (an event stream, idle for hours): [`run_stream`]'s
///   state, ~1.5 KiB.
///
/// A connection task is allocated once at the size of its largest state;
/// boxing the answering phase keeps that small, so thousands of idle
/// keep-alives, slow heads or streams cost little. Sizes are logged once
/// at debug level.
pub async fn serve(app: App, stream: Transport, peer: SocketAddr) {
    // Head and body are written together, but keep-alive responses to
    // small requests would still wait for the peer's delayed ACK.
    let _ = stream.tcp().get_ref().set_nodelay(true);
    let mut conn = Conn {
        app: &app,
        stream: &stream,
        buf: Vec::new(),
        answered: 0,
        deadline: Instant::now() + app.config.header_timeout,
        timer: Timer::never(),
        armed: None,
        continued: false,
        stop: app.shutdown.watch(),
    };
    // A new connection's first request is usually there already: answer it
    // before waiting, so no timer is armed for nothing (a dropped reactor
    // timer still wakes the reactor at its old deadline).
    loop {
        let step = {
            let answering = Box::pin(conn.answer(peer));
            log_size("request phase", &*answering);
            answering.await
        };
        match step {
            Step::NeedInput => {}
            Step::Close => return,
            Step::Stream(start, delimit) => {
                drop(conn);
                // Awaited where it is made: bound to a name first, it would
                // take its size twice in the task.
                logged("stream", run_stream(&app, &stream, start, delimit)).await;
                return;
            }
        }
        conn.compact();
        match conn.wait_input().await {
            Ok(()) => {}
            Err(Fail::Closed) => return,
            Err(Fail::Refuse(e)) => {
                Box::pin(conn.refuse(e)).await;
                return;
            }
        }
    }
}

/// Logs the size of a connection future once per kind, at debug level, and
/// hands it back to be awaited.
fn logged<F>(what: &str, future: F) -> F {
    log_size(what, &future);
    future
}

/// Logs the size of a connection future once per kind, at debug level.
pub(crate) fn log_size<T>(what: &str, future: &T) {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    static STREAM: AtomicBool = AtomicBool::new(false);
    static REQUESTS: AtomicBool = AtomicBool::new(false);
    let flag = if what == "request phase" {
        &REQUESTS
    } else {
        &STREAM
    };
    if !flag.swap(true, Relaxed) {
        log::debug!("{what}: {} bytes", std::mem::size_of_val(future));
    }
}

/// What answering the bytes at hand came to.
enum Step {
    /// Everything complete is answered; more bytes are needed.
    NeedInput,
    /// The connection is done.
    Close,
    /// A request opened an event stream, to be framed so.
    Stream(Box<StreamStart>, Delimit),
}

/// Why waiting for bytes ended without any.
enum Fail {
    /// The peer left, went idle past the timeout, or we are shutting down:
    /// close without a word.
    Closed,
    /// Answer with this error, then close.
    Refuse(ApiError),
}

struct Conn<'a> {
    app: &'a App,
    stream: &'a Transport,
    /// Bytes read but not yet used: the rest of a head, a body, or the next
    /// pipelined request.
    buf: Vec<u8>,
    /// Responses written so far.
    answered: u64,
    /// When the current wait ends: the request (head, then body) must
    /// arrive by then, and an idle keep-alive closes then.
    deadline: Instant,
    /// The reactor timer behind `deadline`, armed for `armed`. It is not
    /// moved when the deadline moves (each arming and disarming is a
    /// message to the reactor thread: ~5 system calls per keep-alive
    /// request); when it fires before the deadline, it is armed again.
    timer: Timer,
    armed: Option<Instant>,
    /// `100 Continue` was sent for the request being read.
    continued: bool,
    /// The server's stop signal, watched beside every wait for input.
    stop: Watch<'a>,
}

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 4096;

impl Conn<'_> {
    /// Reads what the socket holds now, without waiting. `Ok(false)` when
    /// there was nothing; `Err` when the peer closed.
    fn read_now(&mut self) -> Result<bool, ()> {
        // One zeroed chunk per thread, not one per read: zeroing 4 KiB on
        // the stack was ~4,000 instructions per request.
        thread_local! {
            static CHUNK: std::cell::RefCell<Box<[u8]>> =
                std::cell::RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
        }
        CHUNK.with(|chunk| self.read_now_into(&mut chunk.borrow_mut()))
    }

    fn read_now_into(&mut self, chunk: &mut [u8]) -> Result<bool, ()> {
        let mut got = false;
        loop {
            match self.stream.read_now(chunk) {
                Ok(0) => return Err(()),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    got = true;
                    if n < chunk.len() {
                        return Ok(true);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(got),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(()),
            }
        }
    }

    /// Waits until the socket is readable, the deadline passes or the
    /// server stops.
    async fn wait_input(&mut self) -> Result<(), Fail> {
        enum Got {
            Ready(io::Result<()>),
            Timeout,
            Stop,
        }
        let got = loop {
            if self.armed.is_none_or(|at| at > self.deadline) {
                self.timer.set_at(self.deadline);
                self.armed = Some(self.deadline);
            }
            let (stream, stop, timer) = (self.stream, &mut self.stop, &mut self.timer);
            let got = async { Got::Ready(stream.readable().await) }
                .or(async {
                    timer.await;
                    Got::Timeout
                })
                .or(async {
                    stop.fired().await;
                    Got::Stop
                })
                .await;
            match got {
                // Early: the deadline moved on since it was armed.
                Got::Timeout if Instant::now() < self.deadline => self.armed = None,
                got => break got,
            }
        };
        match got {
            Got::Ready(Ok(())) => Ok(()),
            Got::Ready(Err(_)) | Got::Stop => Err(Fail::Closed),
            // An idle keep-alive connection just closes; a half-sent
            // request is told why.
            Got::Timeout if self.buf.is_empty() => Err(Fail::Closed),
            Got::Timeout => Err(Fail::Refuse(ApiError::Timeout)),
        }
    }

    /// Keeps what a waiting connection holds small: nothing when nothing is
    /// pending, else about what is pending.
    fn compact(&mut self) {
        if self.buf.is_empty() {
            self.buf = Vec::new();
        } else if self.buf.capacity() > 2 * self.buf.len() + 256 {
            self.buf.shrink_to(self.buf.len());
        }
    }

    /// Reads what is there and answers every complete request in it.
    async fn answer(&mut self, peer: SocketAddr) -> Step {
        if self.read_now().is_err() && self.buf.is_empty() {
            return Step::Close;
        }
        loop {
            let blank = head::leading_blank_lines(&self.buf);
            self.buf.drain(..blank);
            let end = match head::find_end(&self.buf) {
                Ok(Some(end)) => end,
                Ok(None) if head::has_bad_byte(&self.buf) => {
                    return self
                        .refuse_step(ApiError::Head(head::HeadError::BadByte), false)
                        .await
                }
                Ok(None) => return Step::NeedInput,
                Err(e) => return self.refuse_step(ApiError::Head(e), false).await,
            };
            let head = match head::parse(&self.buf[..end]) {
                Ok(h) => h,
                Err(e) => return self.refuse_step(ApiError::Head(e), false).await,
            };
            let is_post = head.method == "POST";
            let limit = self.app.config.max_message_bytes;
            let body = match self.body_len(&head, end, limit) {
                Err(e) => return self.refuse_step(e, is_post).await,
                Ok(None) => {
                    // The head is here, the body is not (all of it).
                    if !self.continued {
                        self.continued = true;
                        self.deadline = Instant::now() + self.app.config.header_timeout;
                        if head.expect_continue && head.framing != Framing::None {
                            let stall = self.app.config.slow_timeout;
                            let sent =
                                write_all(self.stream, b"HTTP/1.1 100 Continue\r\n\r\n", stall);
                            if sent.await.is_err() {
                                return Step::Close;
                            }
                        }
                    }
                    return Step::NeedInput;
                }
                Ok(Some(used)) => used,
            };
            // The whole request is in `buf`: take it.
            let body_bytes = match head.framing {
                Framing::None => Vec::new(),
                Framing::Length(n) => self.buf[end..end + n as usize].to_vec(),
                Framing::Chunked => match chunked::decode(&self.buf[end..], limit) {
                    Ok(Some((body, _))) => body,
                    _ => unreachable!("body_len checked it"),
                },
            };
            self.buf.drain(..end + body);
            self.continued = false;
            let close = head.close;
            let version = head.version;
            let delimit = match version {
                Version::Http10 => Delimit::Close,
                Version::Http11 => Delimit::Chunked,
            };
            let mut req = match build_parsed(&head) {
                Ok(r) => r,
                Err(e) => return self.refuse_step(e, is_post).await,
            };
            let mut body_obj = Body::from_bytes(body_bytes);
            // Without a Content-Type of its own, the request would take the
            // body's (octet-stream); the SPEC reads a bare body as plain text.
            body_obj.set_mime(http_types::mime::PLAIN);
            req.set_body(body_obj);
            let method = req.method();
            let close = close || self.app.shutdown.is_triggered();
            let (written, close) = match route(self.app, &mut req, peer).await {
                Reply::Response(res) => {
                    let written = self.write_response(res, method, close, version).await;
                    (written, close)
                }
                Reply::Json(json) => {
                    let mut out = Vec::with_capacity(256 + json.body.len());
                    encode_json(&json, method, connection_field(close, version), &mut out);
                    let written = write_all(self.stream, &out, self.app.config.slow_timeout).await;
                    (written, close)
                }
                Reply::Messages(page) => {
                    // A long page to a 1.0 client ends with the connection.
                    let close = close || (page.more.is_some() && delimit == Delimit::Close);
                    (
                        self.write_messages(page, method, close, delimit).await,
                        close,
                    )
                }
                Reply::Stream(start) => return Step::Stream(Box::new(start), delimit),
            };
            if written.is_err() || close {
                return Step::Close;
            }
            self.answered += 1;
            self.deadline = Instant::now() + self.app.config.header_timeout;
            if self.buf.is_empty() {
                // Idle keep-alive: wait outside this (large, boxed) phase.
                return Step::NeedInput;
            }
        }
    }

    /// How many bytes after the head (ending at `end`) the body takes, if
    /// it is all in `buf`; an error for a body that can never fit.
    fn body_len(&self, head: &Head, end: usize, limit: usize) -> Result<Option<usize>, ApiError> {
        let rest = &self.buf[end..];
        match head.framing {
            Framing::None => Ok(Some(0)),
            Framing::Length(n) if n > limit as u64 => Err(ApiError::TooLarge(limit)),
            Framing::Length(n) => Ok((rest.len() as u64 >= n).then_some(n as usize)),
            Framing::Chunked => match chunked::decode(rest, limit) {
                Ok(Some((_, used))) => Ok(Some(used)),
                // Framing overhead is bounded too: tiny chunks with long
                // extensions must not buffer without limit.
                Ok(None) if rest.len() > limit * 8 + 8192 => Err(ApiError::TooLarge(limit)),
                Ok(None) => Ok(None),
                Err(chunked::ChunkError::TooLarge) => Err(ApiError::TooLarge(limit)),
                Err(chunked::ChunkError::Malformed) => {
                    Err(ApiError::BadRequest("malformed chunked body".into()))
                }
            },
        }
    }

    /// Refuses the request at hand (counted when it is a post) and closes.
    async fn refuse_step(&mut self, err: ApiError, is_post: bool) -> Step {
        if is_post {
            self.app.metrics.post_refused(err.status());
        }
        self.refuse(err).await;
        Step::Close
    }

    /// Reads more bytes into `buf`, waiting until `deadline` (only when
    /// lingering after a refusal).
    async fn read_more(&mut self, deadline: Instant) -> Result<(), Fail> {
        loop {
            let ready = async { self.stream.readable().await.is_ok() }
                .or(async {
                    Timer::at(deadline).await;
                    false
                })
                .await;
            if !ready {
                return Err(Fail::Closed);
            }
            match self.read_now() {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(()) => return Err(Fail::Closed),
            }
        }
    }

    async fn write_response(
        &mut self,
        mut res: Response,
        method: Method,
        close: bool,
        version: Version,
    ) -> Result<(), WriteFail> {
        if let Some(connection) = connection_field(close, version) {
            res.insert_header(http_types::headers::CONNECTION, connection);
        }
        let out = answer_bytes(res, method).await.map_err(|_| WriteFail::Io)?;
        write_all(self.stream, &out, self.app.config.slow_timeout).await
    }

    /// Writes a history page: the head through the encoder (it adds the
    /// date and the length), then the messages' JSON straight from their
    /// frames. A page longer than one store read goes out a batch at a
    /// time, chunked or (to HTTP/1.0) up to the close
    /// ([`Self::write_messages_batched`]).
    async fn write_messages(
        &mut self,
        page: super::MessagesReply,
        method: Method,
        close: bool,
        delimit: Delimit,
    ) -> Result<(), WriteFail> {
        let super::MessagesReply {
            mut response,
            frames,
            more,
        } = page;
        if close {
            response.insert_header("connection", "close");
        } else if delimit == Delimit::Close {
            response.insert_header("connection", "keep-alive");
        }
        if let Some(more) = more {
            return self
                .write_messages_batched(response, frames, more, method, delimit)
                .await;
        }
        let page = super::MessagesReply {
            response: super::reply::response(200),
            frames,
            more: None,
        };
        let mut head = Vec::with_capacity(256);
        encode_head(&response, Some(page.len()), &mut head);
        let mut parts = vec![&head[..]];
        if method != Method::Head {
            parts.extend(page.parts());
        }
        self.stream
            .write_parts(&parts, self.app.config.slow_timeout)
            .await
    }

    /// A page whose rest is still in the database: `[` and the first
    /// batch, then one piece per further batch, then `]`. Only one batch is
    /// in memory at a time. A read that fails halfway ends the connection
    /// without the last chunk, so the client sees a cut body, never a
    /// short page that looks whole. (To HTTP/1.0, where the close ends the
    /// body, a cut page is one that is not valid JSON.)
    async fn write_messages_batched(
        &mut self,
        response: Response,
        mut frames: Vec<Frame>,
        more: (RoomName, Query),
        method: Method,
        delimit: Delimit,
    ) -> Result<(), WriteFail> {
        let stall = self.app.config.slow_timeout;
        let head = stream_head(&response, delimit);
        drop(response);
        if method == Method::Head {
            return self.stream.write_parts(&[&head], stall).await;
        }
        let mut head = Some(head);
        let mut more = Some(more);
        let mut first = true;
        loop {
            let mut body: Vec<&[u8]> = Vec::with_capacity(frames.len() * 2 + 2);
            if head.is_some() {
                body.push(b"[");
            }
            for f in &frames {
                if !first {
                    body.push(b",");
                }
                first = false;
                body.push(event::message_json(f));
            }
            if more.is_none() {
                body.push(b"]");
            }
            let mut size = Vec::with_capacity(16);
            delimit.size(body.iter().map(|p| p.len()).sum(), &mut size);
            let mut parts: Vec<&[u8]> = Vec::with_capacity(body.len() + 4);
            if let Some(h) = &head {
                parts.push(h);
            }
            if !frames.is_empty() || head.is_some() || more.is_none() {
                parts.push(&size);
                parts.extend(body);
                parts.push(delimit.after());
            }
            if more.is_none() {
                parts.push(delimit.end());
            }
            self.stream.write_parts(&parts, stall).await?;
            drop(parts);
            head = None;
            let Some((room, query)) = more.take() else {
                if delimit == Delimit::Close {
                    self.stream.shutdown_write();
                }
                return Ok(());
            };
            let found = super::read_store(self.app, &room, query)
                .await
                .map_err(|_| WriteFail::Io)?;
            frames = found.frames;
            frames.retain(|f| super::is_message(f));
            more = found.next.map(|q| (room, q));
        }
    }

    /// Answers with `err` and closes, reading for a moment first so the
    /// client gets the answer instead of a connection reset.
    async fn refuse(&mut self, err: ApiError) {
        log::debug!("refusing request: {err}");
        let res = err.response();
        if self
            .write_response(res, Method::Get, true, Version::Http11)
            .await
            .is_err()
        {
            return;
        }
        self.stream.shutdown_write();
        let deadline = Instant::now() + LINGER;
        let mut drained = 0;
        while drained < 1 << 20 {
            self.buf.clear();
            if self.read_more(deadline).await.is_err() {
                return;
            }
            drained += self.buf.len();
        }
    }
}

/// The bytes of an answer: its head, then (unless it answers a `HEAD`) its
/// body, read straight after the head into the one buffer (`take_body`
/// would look the type up again, SipHash, and `into_bytes` copy the body
/// into a Vec of its own). Every body here is in memory: reading it never
/// waits, and the answer has a length (never chunked, which 1.0 would not
/// know).
async fn answer_bytes(mut res: Response, method: Method) -> io::Result<Vec<u8>> {
    use futures_lite::AsyncReadExt;
    if super::fields(&res, "content-type").is_none() {
        // What `take_body` named such an answer: the type of the empty body
        // it leaves behind.
        res.set_content_type(http_types::mime::BYTE_STREAM);
    }
    // A body of unknown length (smolchat makes none) is read first, for
    // its length.
    let mut unsized_body = Vec::new();
    let len = match res.len() {
        Some(len) => len,
        None => res.read_to_end(&mut unsized_body).await?,
    };
    let mut out = Vec::with_capacity(256 + len);
    encode_head(&res, Some(len), &mut out);
    if method != Method::Head {
        out.extend_from_slice(&unsized_body);
        res.read_to_end(&mut out).await?;
    }
    Ok(out)
}

/// The `connection` field an answer needs: `close` when the connection
/// closes after it, `keep-alive` to a 1.0 client when it does not (1.0
/// closes unless both sides say keep-alive), none otherwise.
fn connection_field(close: bool, version: Version) -> Option<&'static str> {
    match (close, version) {
        (true, _) => Some("close"),
        (false, Version::Http10) => Some("keep-alive"),
        (false, Version::Http11) => None,
    }
}

/// Encodes a [`Json`] answer: what [`answer_bytes`] makes of
/// [`Json::into_response`] with `connection` inserted, byte for byte (a
/// unit test compares them), without making that response. The fields are
/// in the order [`status_and_fields`] sorts them into.
fn encode_json(json: &Json, method: Method, connection: Option<&str>, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let len = decimal(json.body.len() as u64, &mut digits);
    let [nosniff, referrer] = SECURITY_HEADERS;
    with_http_date(|date| {
        let fields = [
            Some(("cache-control", "no-store")),
            connection.map(|c| ("connection", c)),
            Some(("content-length", len)),
            Some(("content-type", "application/json")),
            Some(("date", date)),
            Some(referrer),
            Some(nosniff),
        ];
        status_line(json.status, out);
        for (name, value) in fields.into_iter().flatten() {
            field_line(name, value, out);
        }
    });
    out.extend_from_slice(b"\r\n");
    if method != Method::Head {
        out.extend_from_slice(&json.body);
    }
}

/// Builds the request from a head that [`head::parse`] accepted, from its
/// sanitized copy; the connection then sets the body it read itself.
/// Public so the fuzz targets (`fuzz/`) can check every head the guard
/// lets through.
///
/// The request is what async-h1's decoder would build from the same head
/// (the URL from the target and `Host`, the fields in order, HTTP/1.1;
/// [`build_request_with_async_h1`] is that decoder, kept for the tests
/// that compare the two), without its per-request costs: an 8 KiB read
/// buffer filled a byte at a time, a second buffer and a channel for the
/// body, and a parse of a head the guard parsed already. Only the fields
/// are read again (httparse, in place: no copy).
///
/// # Examples
///
/// ```
/// use smolchat::http::{conn::build_request, head};
///
/// let h = head::parse(b"GET /events?since=3 HTTP/1.1\r\nHost: pi:8080\r\n\r\n").unwrap();
/// let req = build_request(h.sanitized).unwrap();
/// assert_eq!(req.url().as_str(), "http://pi:8080/events?since=3");
/// ```
pub fn build_request(head: Vec<u8>) -> Result<Request, ApiError> {
    let malformed = || ApiError::Head(head::HeadError::Malformed);
    let mut fields = [httparse::EMPTY_HEADER; head::MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut fields);
    match parsed.parse(&head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        _ => return Err(malformed()),
    }
    let (Some(method), Some(target)) = (parsed.method, parsed.path) else {
        return Err(malformed());
    };
    if parsed
        .headers
        .iter()
        .any(|f| std::str::from_utf8(f.value).is_err())
    {
        return Err(malformed());
    }
    if parsed
        .headers
        .iter()
        .any(|f| std::str::from_utf8(f.value).is_err())
    {
        return Err(malformed());
    }
    let fields = parsed
        .headers
        .iter()
        .map(|f| (f.name, std::str::from_utf8(f.value).unwrap_or_default()));
    assemble(method, target, fields)
}

/// [`build_request`] for the connection: the same request, from the head
/// the guard parsed, without parsing its sanitized copy again (the guard
/// kept where each field is: [`Head::fields`](head::Head::fields)).
pub fn build_parsed(head: &head::Head) -> Result<Request, ApiError> {
    assemble(&head.method, head.url_target(), head.fields())
}

/// The request of `method` to `target` with `fields` (name, value), in
/// order.
fn assemble<'h>(
    method: &str,
    target: &str,
    fields: impl Iterator<Item = (&'h str, &'h str)> + Clone,
) -> Result<Request, ApiError> {
    let malformed = || ApiError::Head(head::HeadError::Malformed);
    // Methods are case-sensitive (RFC 9110), but http-types reads `get`
    // as GET: refuse any spelling but its own, as it refuses a method it
    // does not know.
    let method: Method = match method.parse::<Method>() {
        Ok(m) if m.as_ref() == method => m,
        Ok(_) => {
            return Err(ApiError::BadRequest(
                "malformed request: invalid http method".into(),
            ))
        }
        Err(e) => return Err(malformed_request(e)),
    };
    let url = if target.starts_with("http://") || target.starts_with("https://") {
        http_types::Url::parse(target)
    } else {
        let host = fields
            .clone()
            .find(|(name, _)| name.eq_ignore_ascii_case("host"))
            .map(|(_, value)| value)
            .ok_or_else(malformed)?;
        // `http://{host}{target}`. A path-absolute target resolves against
        // the host's URL (remembered, see `head::base_url`) to the same
        // URL without parsing the host again; a target starting `//` or
        // `/\` would be read as another host that way, so it, and any
        // host the guard did not check, takes the long way.
        let second = target.as_bytes().get(1).copied();
        let relative = (!matches!(second, Some(b'/' | b'\\')))
            .then(|| path_url(host, target))
            .flatten();
        match relative {
            Some(url) => url,
            None => {
                let mut full = String::with_capacity(7 + host.len() + target.len());
                full.push_str("http://");
                full.push_str(host);
                full.push_str(target);
                http_types::Url::parse(&full)
            }
        }
    }
    .map_err(malformed_request)?;
    // A copy of a request made once per thread: `Request::new` makes a
    // channel for trailers (never used here), ~1,000 instructions.
    thread_local! {
        static BLANK: Request = {
            let mut req = Request::new(Method::Get, http_types::Url::parse("http://x/").unwrap());
            req.set_version(Some(http_types::Version::Http1_1));
            req
        };
    }
    let mut req = BLANK.with(Request::clone);
    req.set_method(method);
    *req.url_mut() = url;
    for (i, (raw, value)) in fields.clone().enumerate() {
        let name = field_name(raw);
        // A name's first field is inserted: an append looks it up first
        // (a hash and a copy of the name) to find it is not there.
        let seen = fields
            .clone()
            .take(i)
            .any(|(g, _)| g.eq_ignore_ascii_case(raw));
        if seen {
            req.append_header(name, value);
        } else {
            req.insert_header(name, value);
        }
    }
    Ok(req)
}

/// The URL of a path-absolute `target` on `host`, resolved against the
/// host's URL; `None` if no URL builds from the host. The last one is
/// remembered per thread, and a copy of it given while host and target are
/// the same: a client posting to its room sends the same target every
/// time, and resolving it is most of what a URL costs.
fn path_url(
    host: &str,
    target: &str,
) -> Option<Result<http_types::Url, http_types::url::ParseError>> {
    use std::cell::RefCell;
    thread_local! {
        static LAST: RefCell<(String, String, Option<http_types::Url>)> =
            const { RefCell::new((String::new(), String::new(), None)) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        let (h, t, url) = &mut *last;
        if let Some(url) = url.as_ref().filter(|_| h == host && t == target) {
            return Some(Ok(url.clone()));
        }
        let resolved = head::with_base_url(host, |base| {
            http_types::Url::options()
                .base_url(Some(base))
                .parse(target)
        })?;
        *url = None;
        // Long targets are not kept: a copy is bounded by this.
        if let (Ok(new), true) = (&resolved, target.len() <= 256) {
            h.clear();
            h.push_str(host);
            t.clear();
            t.push_str(target);
            *url = Some(new.clone());
        }
        Some(resolved)
    })
}

/// A field name as http-types keys it (lowercase). The names most requests
/// carry are http-types' constants, which borrow a static string; any
/// other is a lowercased copy.
fn field_name(name: &str) -> http_types::headers::HeaderName {
    use http_types::headers::*;
    static KNOWN: [HeaderName; 14] = [
        HOST,
        CONTENT_TYPE,
        CONTENT_LENGTH,
        USER_AGENT,
        ACCEPT,
        ACCEPT_ENCODING,
        ACCEPT_LANGUAGE,
        CONNECTION,
        COOKIE,
        ORIGIN,
        AUTHORIZATION,
        REFERER,
        CACHE_CONTROL,
        IF_NONE_MATCH,
    ];
    KNOWN
        .iter()
        .find(|known| known.as_str().eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| HeaderName::from(name))
}

/// [`build_request`] the way it used to be done: async-h1's own decoder run
/// over the sanitized head. Kept so that tests and the `head` fuzz target
/// can check that the two build the same request.
#[doc(hidden)]
pub fn build_request_with_async_h1(head: Vec<u8>) -> Result<Request, ApiError> {
    let bytes: std::sync::Arc<[u8]> = head.into();
    // `HeadOnly` never returns `Pending`: one poll, `block_on` never parks.
    let decoded = future::block_on(async_h1::server::decode(HeadOnly {
        bytes: bytes.clone(),
        pos: 0,
    }));
    match decoded {
        Ok(Some((req, _)))
            if bytes.split(|&b| b == b' ').next() != Some(req.method().as_ref().as_bytes()) =>
        {
            Err(ApiError::BadRequest(
                "malformed request: invalid http method".into(),
            ))
        }
        Ok(Some((req, _))) => Ok(req),
        Ok(None) => Err(ApiError::Head(head::HeadError::Malformed)),
        Err(e) => Err(malformed_request(e)),
    }
}

/// A `400` in the words of the parser that refused the request.
fn malformed_request(e: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!(
        "malformed request: {}",
        e.to_string().to_lowercase()
    ))
}

/// An in-memory stream holding exactly one request head, for
/// `async_h1::server::decode`. Writes (only ever a `100 Continue`, which we
/// strip `Expect` to avoid) go nowhere.
#[derive(Clone)]
struct HeadOnly {
    bytes: std::sync::Arc<[u8]>,
    pos: usize,
}

impl AsyncRead for HeadOnly {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<io::Result<usize>> {
        let rest = &self.bytes[self.pos.min(self.bytes.len())..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        std::task::Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for HeadOnly {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Writes all of `buf` ([`Transport::write_parts`] with one part).
pub(crate) async fn write_all(
    stream: &Transport,
    buf: &[u8],
    stall: Duration,
) -> Result<(), WriteFail> {
    stream.write_parts(&[buf], stall).await
}

/// Drives an event stream until the client leaves, stalls, the room closes
/// or the server stops.
///
/// Each wake-up takes every event that is ready (up to [`MAX_BATCH`] bytes)
/// and writes them as one chunk. While the socket is full this task is
/// stuck in [`write_all`] and takes nothing from the room, which is what
/// makes publishers wait; after `--slow-timeout` without progress it gives
/// up, and dropping the subscription frees the room.
///
/// To an HTTP/1.0 client ([`Delimit::Close`]) the same bytes go out
/// without chunk framing, and the stream ends by shutting the connection.
pub(crate) async fn run_stream(
    app: &App,
    stream: &Transport,
    start: Box<StreamStart>,
    delimit: Delimit,
) {
    use std::sync::atomic::Ordering::Relaxed;
    // Taken apart in a block, out of its box: what a stream holds for its
    // whole life is only what it still uses (an argument or a local kept
    // to the end would take its bytes in every idle stream's task).
    let (mut out, mut sub, frames, more, _per_client, who) = {
        let StreamStart {
            response,
            sub,
            frames,
            more,
            per_client,
            who,
        } = unbox(start);
        let head = stream_head(&response, delimit);
        (head, sub, frames, more, per_client, who)
    };
    app.metrics.subscribers.fetch_add(1, Relaxed);
    struct Gauge<'a>(&'a App);
    impl Drop for Gauge<'_> {
        fn drop(&mut self) {
            self.0.metrics.subscribers.fetch_sub(1, Relaxed);
        }
    }
    let _gauge = Gauge(app);
    let stall = app.config.slow_timeout;

    // The head, then one chunk: `retry:`, hello, gap, the replay. The
    // frames go out from where they are (write_parts).
    let retry = sse::retry(2000);
    delimit.size(
        retry.len() + frames.iter().map(|f| f.len()).sum::<usize>(),
        &mut out,
    );
    out.extend_from_slice(&retry);
    let mut parts: Vec<&[u8]> = Vec::with_capacity(frames.len() + 2);
    parts.push(&out);
    parts.extend(frames.iter().map(|f| &f[..]));
    parts.push(delimit.after());
    let sent = stream.write_parts(&parts, stall).await;
    drop(parts);
    drop(frames);
    if sent.is_err() {
        return;
    }
    // The rest of a long replay, a batch at a time; live events wait in the
    // subscription meanwhile. A failed read ends the stream: the client
    // resumes from the last id it got.
    let mut more = more;
    while let Some((name, query)) = more.take() {
        // Boxed: a store read's future (Redis's above all) is several KB,
        // and inline it would make every stream's task that much larger
        // for as long as the stream lives.
        let Ok(found) = Box::pin(super::read_store(app, &name, query)).await else {
            end_body(stream, delimit, stall).await;
            return;
        };
        let mut size = Vec::with_capacity(16);
        delimit.size(found.frames.iter().map(|f| f.len()).sum(), &mut size);
        if !found.frames.is_empty() {
            let mut parts: Vec<&[u8]> = Vec::with_capacity(found.frames.len() + 2);
            parts.push(&size);
            parts.extend(found.frames.iter().map(|f| &f[..]));
            parts.push(delimit.after());
            if stream.write_parts(&parts, stall).await.is_err() {
                return;
            }
        }
        more = found.next.map(|q| (name, q));
    }
    // The replay went out with the kernel's own buffer (a resume of a
    // thousand messages needs it); live events get a small one, so a
    // client that stops reading fills it soon and the stall is seen.
    let sock = socket2::SockRef::from(stream.tcp().get_ref());
    let _ = sock.set_send_buffer_size(SSE_SNDBUF);
    // A peer that vanished (a phone out of Wi-Fi, a pulled cable) is found
    // by the kernel: data unacknowledged for --slow-timeout + 10 s ends the
    // connection (TCP_USER_TIMEOUT; the keep-alive comments are such data;
    // a peer that acknowledges but takes nothing is cut by us first), and
    // keep-alive probes cover a stream with nothing to send.
    let _ = sock.set_tcp_user_timeout(Some(stall + Duration::from_secs(10)));
    let _ = sock.set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(30))
            .with_interval(Duration::from_secs(10))
            .with_retries(3),
    );
    // Sized for the head; most streams then idle.
    out = Vec::new();

    let keepalive = app.config.keepalive;
    let mut last_write = Instant::now();
    let mut ping = Timer::at(last_write + keepalive);
    let mut gone = pin!(peer_gone(stream));
    let mut stop = pin!(app.shutdown.wait());
    // Boxed: it is replaced after every presence update, and most streams
    // see few of them; its state stays out of the stream's own size.
    let room = sub.room().clone();
    let mut presence = Box::pin(presence_due(room.clone(), sub.presence_seen(), None));
    // Accounts change only with a database (the subcommands write there);
    // then a revoked token, a deleted user or a new rule ends the stream.
    let accounts = app.reader.is_some().then(|| app.accounts.clone());
    let mut revoked = accounts
        .clone()
        .map(|a| Box::pin(access_lost(a, who.clone(), room.name().clone())));
    let mut batch: Vec<Frame> = Vec::new();
    enum Ev {
        Frame(Result<Frame, async_broadcast::RecvError>),
        Presence,
        Revoked,
        Ping,
        Gone,
        Stop,
    }
    loop {
        // Checked first so a busy room cannot starve the shutdown.
        let ev = if app.shutdown.is_triggered() {
            Ev::Stop
        } else {
            let rx = sub.receiver();
            async { Ev::Frame(rx.recv_direct().await) }
                .or(async {
                    presence.as_mut().await;
                    Ev::Presence
                })
                .or(async {
                    match revoked.as_mut() {
                        Some(r) => r.as_mut().await,
                        None => future::pending().await,
                    }
                    Ev::Revoked
                })
                .or(async {
                    (&mut ping).await;
                    Ev::Ping
                })
                .or(async {
                    gone.as_mut().await;
                    Ev::Gone
                })
                .or(async {
                    stop.as_mut().await;
                    Ev::Stop
                })
                .await
        };
        out.clear();
        match ev {
            Ev::Frame(Ok(frame)) => {
                let mut len = frame.len();
                batch.push(frame);
                while len < MAX_BATCH {
                    match sub.receiver().try_recv() {
                        Ok(f) => {
                            len += f.len();
                            batch.push(f);
                        }
                        Err(_) => break,
                    }
                }
                sub.taken(batch.len());
                delimit.size(len, &mut out);
            }
            Ev::Revoked => {
                log::info!(
                    "ended a stream on {}: its reader may no longer read it",
                    room.name()
                );
                end_body(stream, delimit, stall).await;
                return;
            }
            Ev::Presence => {
                if let Some(update) = sub.presence_update() {
                    delimit.piece(&update, &mut out);
                }
                let next = Instant::now() + PRESENCE_EVERY;
                presence
                    .as_mut()
                    .set(presence_due(room.clone(), sub.presence_seen(), Some(next)));
                if out.is_empty() {
                    continue;
                }
            }
            Ev::Ping => {
                if last_write.elapsed() < keepalive {
                    ping.set_at(last_write + keepalive);
                    continue;
                }
                // A fired timer stays fired: armed again for the next ping
                // (without this a stream had one ping, then silence).
                ping.set_at(Instant::now() + keepalive);
                delimit.piece(sse::PING, &mut out);
            }
            // The room closed; overflow cannot happen with overflow off, but
            // if it did, closing lets the client resume from history.
            Ev::Frame(Err(_)) => {
                end_body(stream, delimit, stall).await;
                return;
            }
            Ev::Gone => return,
            Ev::Stop => {
                // Spread reconnects over a few seconds so a restarted Pi is
                // not hit by every client at once.
                let retry_ms = 1000 + fastrand::u64(0..4000);
                delimit.piece(
                    &event::encode(&event::Event::Shutdown { retry_ms }),
                    &mut out,
                );
                out.extend_from_slice(delimit.end());
                let _ = write_all(stream, &out, stall.min(Duration::from_secs(1))).await;
                if delimit == Delimit::Close {
                    stream.shutdown_write();
                }
                return;
            }
        }
        // A write races the stall budget: a stream that holds the room's
        // queue full while a post waits past --stall-budget is cut.
        let written = if batch.is_empty() {
            until_held_back(&sub, pin!(write_all(stream, &out, stall))).await
        } else {
            // A batch of frames: a chunk's size line, the frames, its CRLF
            // (or, close-delimited, the frames alone).
            // On the stack for a batch of one or two frames (what a stream that
            // keeps up gets); every slot is in each stream's task, idle or not.
            let mut small: [&[u8]; 4] = [&[]; 4];
            let big: Vec<&[u8]>;
            let all = std::iter::once(&out[..])
                .chain(batch.iter().map(|f| &f[..]))
                .chain([delimit.after()]);
            let parts = if batch.len() + 2 <= small.len() {
                for (slot, part) in small.iter_mut().zip(all) {
                    *slot = part;
                }
                &small[..batch.len() + 2]
            } else {
                big = all.collect();
                &big[..]
            };
            let r = until_held_back(&sub, pin!(stream.write_parts(parts, stall))).await;
            batch.clear();
            r
        };
        match written {
            Ok(()) => {}
            Err(None) => {
                app.metrics.subscribers_evicted.fetch_add(1, Relaxed);
                log::info!(
                    "cut a stream on {} that held posts back for --stall-budget",
                    sub.room().name()
                );
                return;
            }
            Err(Some(WriteFail::Stalled)) => {
                app.metrics.subscribers_evicted.fetch_add(1, Relaxed);
                log::info!(
                    "cut a stream on {} that accepted nothing for {stall:?}",
                    sub.room().name()
                );
                return;
            }
            Err(Some(WriteFail::Io)) => return,
        }
        // The ping timer is not moved here: re-arming a reactor timer on
        // every write cost ~18% of the server's instructions in a 1000-stream
        // fan-out. It fires at most once per keepalive on a busy stream and
        // is re-armed from `last_write` then.
        last_write = Instant::now();
        if out.capacity() > MAX_BATCH * 2 {
            out = Vec::new();
        }
    }
}

/// Runs a stream's `write` unless the stream is told, meanwhile, that it
/// held the room's queue full past the stall budget (`Err(None)`).
///
/// The write is polled alone first: a socket with room takes it at once
/// and no listener is made (the common case, once per delivery). After
/// that the stall budget is polled first: a write that is woken by the
/// budget's news may find the socket takes its last bytes after all (the
/// kernel had room, too little to say writable), and polled first it
/// would win, the stream take its next batch, and the posts behind it
/// wait a whole budget again.
///
/// The write is pinned by the caller: moved in here, it took its size
/// twice in every stream's task (the argument's and the pinned local's),
/// ~530 B more per idle stream.
async fn until_held_back(
    sub: &Subscription,
    mut write: Pin<&mut impl Future<Output = Result<(), WriteFail>>>,
) -> Result<(), Option<WriteFail>> {
    if let Some(done) = future::poll_once(write.as_mut()).await {
        return done.map_err(Some);
    }
    async {
        sub.held_back_too_long().await;
        Err(None)
    }
    .or(async { write.await.map_err(Some) })
    .await
}

/// What a box holds, the box freed now.
// The box is the point: it is freed when this returns, not at the end of
// the caller's scope.
#[allow(clippy::boxed_local)]
fn unbox<T>(b: Box<T>) -> T {
    *b
}

/// Ends a body of unknown length: the last chunk, or (HTTP/1.0) shutting
/// our side of the connection, which is how such a body ends there.
async fn end_body(stream: &Transport, delimit: Delimit, stall: Duration) {
    let _ = write_all(stream, delimit.end(), stall).await;
    if delimit == Delimit::Close {
        stream.shutdown_write();
    }
}

/// Resolves once the room's presence is no longer snapshot `seen`, and not
/// before `not_before`: a stream sends at most one presence update per
/// [`PRESENCE_EVERY`], so a burst of joins and leaves costs each stream one
/// coalesced update rather than one write per change.
async fn presence_due(room: Arc<Room>, seen: u64, not_before: Option<Instant>) {
    if let Some(t) = not_before {
        Timer::at(t).await;
    }
    room.presence_after(seen).await;
}

/// Resolves once `who` may no longer read `room`: its token was revoked or
/// expired, its account deleted, its password changed, its session ended,
/// or a rule now denies it. Checked after every change to accounts.
async fn access_lost(accounts: Arc<Accounts>, who: Identity, room: RoomName) {
    loop {
        let seen = accounts.version();
        if !accounts.still_valid(&who) || !accounts.access(&who, &room).read() {
            return;
        }
        accounts.changed_after(seen).await;
    }
}

/// Resolves when the peer closes its end (or the socket fails), so a
/// departed client is noticed at once rather than at the next write.
///
/// It waits for readiness rather than in `read`: a stream's task is polled
/// on every wake-up, and `Async::read` would try a `read(2)` each time
/// (one wasted syscall per delivered batch); `readable` only checks the
/// reactor's readiness state.
async fn peer_gone(stream: &Transport) {
    let mut scratch = [0u8; 64];
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        match stream.read_now(&mut scratch) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Encodes a response's head as async-h1's encoder did (the one smolchat
/// used before; [`encode_with_async_h1`] in the tests), with
/// [`SECURITY_HEADERS`]: the status line, the fields sorted by name,
/// `content-length` (or `transfer-encoding: chunked` without a length)
/// and a `date`, formatted once a second per thread. The fields smolchat
/// adds to every response are written here, not inserted into the
/// response's own (a hashed map, whose every insert allocates).
fn encode_head(res: &Response, len: Option<usize>, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let framing = match len {
        Some(len) => ("content-length", decimal(len as u64, &mut digits)),
        None => ("transfer-encoding", "chunked"),
    };
    let [nosniff, referrer] = SECURITY_HEADERS;
    if super::fields(res, "date").is_some() {
        status_and_fields(res, &[framing, nosniff, referrer], out);
    } else {
        with_http_date(|date| {
            status_and_fields(res, &[framing, ("date", date), nosniff, referrer], out)
        });
    }
    out.extend_from_slice(b"\r\n");
}

/// A response's status line and its fields with `extra`, sorted by name
/// as async-h1's encoder sorted them; a field of `extra` replaces the
/// response's of the same name. The head's closing blank line is the
/// caller's.
fn status_and_fields(res: &Response, extra: &[(&str, &str)], out: &mut Vec<u8>) {
    status_line(res.status(), out);
    // Sorted on the stack when they fit, as nearly every response's do.
    let mut stack = [("", ""); 24];
    let mut heap = Vec::new();
    let mut n = 0;
    let all = res
        .iter()
        .filter(|(name, _)| extra.iter().all(|(n, _)| *n != name.as_str()))
        .flat_map(|(name, values)| values.iter().map(move |v| (name.as_str(), v.as_str())))
        .chain(extra.iter().copied());
    for field in all {
        if n < stack.len() {
            stack[n] = field;
            n += 1;
        } else {
            if heap.is_empty() {
                heap.extend_from_slice(&stack);
            }
            heap.push(field);
        }
    }
    let fields = if heap.is_empty() {
        &mut stack[..n]
    } else {
        &mut heap[..]
    };
    // Stable: the values of one name keep their order.
    fields.sort_by(|a, b| a.0.cmp(b.0));
    for &mut (name, value) in fields {
        field_line(name, value, out);
    }
}

/// `HTTP/1.1 <code> <reason>` and its line end.
fn status_line(status: http_types::StatusCode, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(decimal_bytes(u16::from(status).into(), &mut digits));
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `<name>: <value>` and its line end.
fn field_line(name: &str, value: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Calls `f` with now as an HTTP date (`Tue, 01 Dec 2026 14:58:10 GMT`),
/// formatted when the second changes.
fn with_http_date<R>(f: impl FnOnce(&str) -> R) -> R {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs || c.1.is_empty() {
            let at = UNIX_EPOCH + Duration::from_secs(secs);
            c.1 = http_types::other::Date::new(at).value().as_str().to_owned();
            c.0 = secs;
        }
        f(&c.1)
    })
}

/// Status line and headers of a response whose body has no length: an
/// event stream, a history page read in batches.
fn stream_head(res: &Response, delimit: Delimit) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    status_and_fields(res, &SECURITY_HEADERS, &mut out);
    if delimit == Delimit::Chunked || super::fields(res, "connection").is_none() {
        out.extend_from_slice(delimit.header());
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a request is made of, to compare two of them.
    fn parts(req: &Request) -> (String, String, Option<http_types::Version>, Vec<String>) {
        let mut fields: Vec<String> = req
            .iter()
            .flat_map(|(name, values)| values.iter().map(move |v| format!("{name}: {v}")))
            .collect();
        fields.sort();
        (
            req.method().to_string(),
            req.url().to_string(),
            req.version(),
            fields,
        )
    }

    /// async-h1's encoder, which smolchat used before [`encode_head`].
    fn encode_with_async_h1(res: Response, method: Method) -> Vec<u8> {
        use futures_lite::io::AsyncReadExt;
        let mut out = Vec::new();
        future::block_on(async_h1::server::Encoder::new(res, method).read_to_end(&mut out))
            .unwrap();
        out
    }

    /// Responses are encoded byte for byte as async-h1 encoded them.
    #[test]
    fn responses_are_encoded_as_async_h1_encoded_them() {
        let make = |status: u16, body: &[u8], fields: &[(&str, &str)]| {
            let mut res = Response::new(status);
            res.insert_header("date", "Tue, 01 Dec 2026 14:58:10 GMT");
            for (n, v) in fields {
                res.append_header(*n, *v);
            }
            res.set_body(body.to_vec());
            res
        };
        let big = vec![b'x'; 70_000];
        type Case<'a> = (u16, &'a [u8], &'a [(&'a str, &'a str)]);
        let cases: [Case<'_>; 5] = [
            (201, br#"{"id":1}"#, &[("content-type", "application/json")]),
            (204, b"", &[("x-b", "1"), ("x-a", "2"), ("x-a", "3")]),
            (
                429,
                b"slow down",
                &[("retry-after", "2"), ("cache-control", "no-store")],
            ),
            (200, &big, &[("content-type", "text/html; charset=utf-8")]),
            (503, b"", &[]),
        ];
        for (status, body, fields) in cases {
            for method in [Method::Get, Method::Head] {
                let ours =
                    future::block_on(answer_bytes(make(status, body, fields), method)).unwrap();
                // async-h1 adds no security fields; route() did.
                let mut secured = make(status, body, fields);
                super::super::reply::secure(&mut secured);
                let theirs = encode_with_async_h1(secured, method);
                assert_eq!(
                    String::from_utf8_lossy(&ours),
                    String::from_utf8_lossy(&theirs),
                    "{status} {method}"
                );
            }
        }
    }

    /// A [`Json`] answer is written byte for byte as the response it
    /// stands for, with the `connection` field `write_response` inserts.
    #[test]
    fn a_json_answer_is_encoded_as_its_response() {
        // The date, formatted per second, could change between the two.
        let undated = |bytes: Vec<u8>| {
            let text = String::from_utf8(bytes).unwrap();
            let start = text.find("\r\ndate: ").unwrap() + 8;
            let end = start + text[start..].find("\r\n").unwrap();
            format!("{}<date>{}", &text[..start], &text[end..])
        };
        for status in [201, 200, 400, 503] {
            for body in [&br#"{"id":1,"text":"hi"}"#[..], b"{}", b""] {
                for (close, version) in [
                    (false, Version::Http11),
                    (true, Version::Http11),
                    (false, Version::Http10),
                    (true, Version::Http10),
                ] {
                    for method in [Method::Post, Method::Get, Method::Head] {
                        let json = || Json::new(status.try_into().unwrap(), body.to_vec());
                        let connection = connection_field(close, version);
                        let mut ours = Vec::new();
                        encode_json(&json(), method, connection, &mut ours);
                        let mut res = json().into_response();
                        if let Some(c) = connection {
                            res.insert_header("connection", c);
                        }
                        let theirs = future::block_on(answer_bytes(res, method)).unwrap();
                        assert_eq!(
                            undated(ours),
                            undated(theirs),
                            "{status} {close} {version:?} {method}"
                        );
                    }
                }
            }
        }
    }

    /// A response without a type is written as before the body was read
    /// in place: named `application/octet-stream`, as `take_body` named it
    /// (the type of the empty body it leaves behind).
    #[test]
    fn an_answer_without_a_type_is_named_octet_stream() {
        for method in [Method::Get, Method::Head] {
            let mut res = Response::new(200);
            res.set_body(http_types::Body::from_string("hi".into()));
            res.remove_header("content-type");
            let out = future::block_on(answer_bytes(res, method)).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(
                text.contains("\r\ncontent-type: application/octet-stream\r\n"),
                "{text}"
            );
            assert!(text.contains("\r\ncontent-length: 2\r\n"), "{text}");
            assert_eq!(
                text.ends_with("\r\n\r\nhi"),
                method == Method::Get,
                "{text}"
            );
        }
    }

    /// A body of unknown length is read first, for its length, and sent
    /// once.
    #[test]
    fn an_answer_of_unknown_length_gets_its_length() {
        for method in [Method::Get, Method::Head] {
            let mut res = Response::new(200);
            let reader =
                futures_lite::io::BufReader::new(futures_lite::io::Cursor::new(b"hello".to_vec()));
            res.set_body(http_types::Body::from_reader(reader, None));
            let out = future::block_on(answer_bytes(res, method)).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("\r\ncontent-length: 5\r\n"), "{text}");
            let body = text.split_once("\r\n\r\n").unwrap().1;
            assert_eq!(body, if method == Method::Get { "hello" } else { "" });
        }
    }

    #[test]
    fn a_remembered_url_is_reused_only_for_the_same_host_and_target() {
        let url = |head: &str| {
            let h = head::parse(head.as_bytes()).unwrap();
            build_request(h.sanitized).unwrap().url().to_string()
        };
        let a = "GET /a?x=1 HTTP/1.1\r\nHost: pi:8080\r\n\r\n";
        assert_eq!(url(a), "http://pi:8080/a?x=1");
        assert_eq!(url(a), "http://pi:8080/a?x=1");
        assert_eq!(
            url("GET /a?x=1 HTTP/1.1\r\nHost: other\r\n\r\n"),
            "http://other/a?x=1"
        );
        assert_eq!(
            url("GET /a?x=2 HTTP/1.1\r\nHost: other\r\n\r\n"),
            "http://other/a?x=2"
        );
        assert_eq!(url(a), "http://pi:8080/a?x=1");
        // A target too long to keep is resolved every time, the same way.
        let long = format!("/{}", "b".repeat(300));
        let b = format!("GET {long} HTTP/1.1\r\nHost: pi\r\n\r\n");
        assert_eq!(url(&b), format!("http://pi{long}"));
        assert_eq!(url(&b), format!("http://pi{long}"));
    }

    /// The cached date is now's, in the format of the `Date` field.
    #[test]
    fn the_date_is_now_as_an_http_date() {
        use std::time::SystemTime;
        let before = SystemTime::now() - Duration::from_secs(1);
        let mut res = Response::new(200);
        with_http_date(|d| res.insert_header("date", d));
        let after = SystemTime::now();
        let got: SystemTime = http_types::other::Date::from_headers(&res)
            .unwrap()
            .unwrap()
            .into();
        assert!(got >= before && got <= after, "{:?}", res.header("date"));
        assert_eq!(
            with_http_date(str::len),
            "Tue, 01 Dec 2026 14:58:10 GMT".len()
        );
    }

    /// The request is built as async-h1's decoder built it, for heads of
    /// every shape the guard lets through, both from the sanitized head and
    /// from the guard's spans.
    #[test]
    fn requests_are_built_as_async_h1_built_them() {
        let heads = [
            "GET / HTTP/1.1\r\nHost: t\r\n\r\n",
            "GET /rooms/kitchen/events?since=12&x=%20y HTTP/1.1\r\nHost: pi.local:8080\r\nLast-Event-ID: 7\r\nAccept: text/event-stream\r\n\r\n",
            "POST /messages HTTP/1.1\r\nHost: [::1]:80\r\nContent-Type: application/json\r\nContent-Length: 2\r\nX-A: 1\r\nX-A: 2\r\nExpect: 100-continue\r\n\r\n",
            "POST /messages HTTP/1.0\r\nContent-Length: 3\r\n\r\n",
            "GET /a/../b//c?q#frag HTTP/1.0\r\nConnection: keep-alive\r\nHost: h\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n",
            "GET http://other.example:81/x?y=1 HTTP/1.1\r\nHost: t\r\n\r\n",
            "GET https://other.example/ HTTP/1.1\r\nHost: t\r\n\r\n",
            "DELETE /rooms/r/messages/3 HTTP/1.1\r\nHost: 10.0.0.2\r\nAuthorization: Bearer abc\r\nCookie: a=b; c=d\r\nEmpty:\r\n\r\n",
            "PROPFIND /%7Euser/%zz HTTP/1.1\r\nHost: t:65535\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: t:99999\r\n\r\n",
            "get / HTTP/1.1\r\nHost: t\r\n\r\n",
            "BREW / HTTP/1.1\r\nHost: t\r\n\r\n",
            "GET //evil.example/x HTTP/1.1\r\nHost: t\r\n\r\n",
            "GET /\\evil.example/x HTTP/1.1\r\nHost: t\r\n\r\n",
            "GET /./a/%2e%2e/b/../c?x=1&y=%zz#f HTTP/1.1\r\nHost: T.Example:0080\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: 0x7f.1\r\n\r\n",
            "GET /b HTTP/1.1\r\nHost: 0x7f.1\r\n\r\n",
            "GET /? HTTP/1.1\r\nHost: [::ffff:1.2.3.4]:8080\r\n\r\n",
        ];
        let mut built = 0;
        for text in heads {
            let Ok(h) = head::parse(text.as_bytes()) else {
                continue;
            };
            let ours = build_request(h.sanitized.clone());
            // The connection's way, from the guard's spans, builds the same.
            match (&ours, build_parsed(&h)) {
                (Ok(a), Ok(b)) => assert_eq!(parts(a), parts(&b), "{text:?}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{text:?}"),
                (a, b) => panic!(
                    "{text:?}: built {:?}, from spans {:?}",
                    a.is_ok(),
                    b.is_ok()
                ),
            }
            let theirs = build_request_with_async_h1(h.sanitized);
            match (ours, theirs) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(parts(&a), parts(&b), "{text:?}");
                    built += 1;
                }
                (Err(a), Err(b)) => assert_eq!(
                    (a.status(), a.to_string()),
                    (b.status(), b.to_string()),
                    "{text:?}"
                ),
                (a, b) => panic!("{text:?}: built {:?}, async-h1 {:?}", a.is_ok(), b.is_ok()),
            }
        }
        assert!(built >= 9, "only {built} heads were built");
    }

    /// Found by the `head` fuzz target (docs/fuzzing.md): `POsT` passed
    /// the guard as an unknown method, and http-types built a POST from it,
    /// so the router and the connection (which counts refused POSTs by the
    /// method the guard saw) disagreed on what the request was.
    #[test]
    fn regression_a_method_in_the_wrong_case_is_not_built() {
        for method in ["POsT", "get", "Options"] {
            let h =
                head::parse(format!("{method} / HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes()).unwrap();
            let e = build_request(h.sanitized).unwrap_err();
            assert_eq!(e.status(), 400, "{method}");
        }
        for method in ["POST", "GET", "OPTIONS", "PROPFIND"] {
            let h =
                head::parse(format!("{method} / HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes()).unwrap();
            assert_eq!(
                build_request(h.sanitized).unwrap().method().as_ref(),
                method
            );
        }
    }
}
