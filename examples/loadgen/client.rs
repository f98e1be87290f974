//! The client side: a lean keep-alive HTTP/1.1 connection for posts, and an
//! SSE subscriber that undoes the chunked framing and picks out the fields
//! the checks need (id, the poster's sequence number, the send time).
//!
//! Message texts carry `lg K T` where K numbers the post (the poster keeps
//! the id its `201` gave K) and T is the send time in microseconds since
//! [`epoch`]: latency is measured on one clock, the loadgen's.

use std::net::{SocketAddr, TcpStream as StdStream};
use std::sync::OnceLock;
use std::time::Instant;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use smol::Async;

/// The loadgen's clock origin.
pub(crate) fn epoch() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Microseconds since [`epoch`].
pub(crate) fn now_us() -> u64 {
    epoch().elapsed().as_micros() as u64
}

/// Finds `needle` in `hay`.
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_u64(b: &[u8]) -> (u64, usize) {
    let mut n = 0u64;
    let mut i = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        n = n * 10 + u64::from(b[i] - b'0');
        i += 1;
    }
    (n, i)
}

/// A keep-alive HTTP/1.1 client connection.
pub(crate) struct Conn {
    s: Async<StdStream>,
    buf: Vec<u8>,
}

impl Conn {
    pub(crate) async fn open(addr: SocketAddr) -> Conn {
        let s = Async::<StdStream>::connect(addr).await.expect("connect");
        s.get_ref().set_nodelay(true).unwrap();
        Conn {
            s,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Sends one request and reads the response: (status, body). Status 0
    /// means the connection failed.
    pub(crate) async fn request(&mut self, req: &[u8]) -> (u16, Vec<u8>) {
        if (&self.s).write_all(req).await.is_err() {
            return (0, Vec::new());
        }
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        // The answer cannot be there yet: wait for readiness rather than
        // spend a read(2) on EAGAIN (the loadgen must cost less per request
        // than the server it measures).
        if self.s.readable().await.is_err() {
            return (0, Vec::new());
        }
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            match (&self.s).read(&mut chunk).await {
                Ok(0) | Err(_) => return (0, Vec::new()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = &self.buf[..head_end];
        let status = head
            .get(9..12)
            .and_then(|s| std::str::from_utf8(s).ok()?.parse().ok())
            .unwrap_or(0);
        let mut len = 0usize;
        for line in head.split(|&b| b == b'\n') {
            if line.len() > 15 && line[..15].eq_ignore_ascii_case(b"content-length:") {
                let v = std::str::from_utf8(&line[15..]).unwrap_or("").trim();
                len = v.parse().unwrap_or(0);
            }
        }
        while self.buf.len() < head_end + len {
            match (&self.s).read(&mut chunk).await {
                Ok(0) | Err(_) => return (0, Vec::new()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
        (status, self.buf[head_end..head_end + len].to_vec())
    }

    /// Posts `text` to `room` as text/plain: (status, id from a `201`).
    pub(crate) async fn post(&mut self, room: &str, text: &str) -> (u16, Option<u64>) {
        let req = format!(
            "POST /rooms/{room}/messages HTTP/1.1\r\nHost: bench\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        let (status, body) = self.request(req.as_bytes()).await;
        let id = (status == 201)
            .then(|| find(&body, b"\"id\":").map(|i| parse_u64(&body[i + 5..]).0))
            .flatten();
        (status, id)
    }
}

/// A blocking keep-alive connection, for `post` and `fill`: one thread per
/// client costs the loadgen two syscalls per request (write, read), where
/// an async client adds readiness registration and an epoll wait, and the
/// loadgen must stay cheaper per request than the server it measures.
pub(crate) struct BlockingConn<S = StdStream> {
    s: S,
    buf: Vec<u8>,
    /// Read buffer, allocated once (not zeroed per request).
    chunk: Box<[u8]>,
}

/// Longest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

impl BlockingConn {
    pub(crate) fn open(addr: SocketAddr) -> std::io::Result<BlockingConn> {
        let s = StdStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
        Ok(BlockingConn::over(s))
    }
}

impl<S: std::io::Read + std::io::Write> BlockingConn<S> {
    /// A connection over an open stream (a TLS one, for `tls`).
    pub(crate) fn over(s: S) -> BlockingConn<S> {
        BlockingConn {
            s,
            buf: Vec::with_capacity(4096),
            chunk: vec![0u8; 16 * 1024].into_boxed_slice(),
        }
    }

    /// Posts `text` to `room` as text/plain: the status (0 when the
    /// connection failed).
    pub(crate) fn post(&mut self, room: &str, text: &str) -> u16 {
        self.post_id(room, text).0
    }

    /// Posts `text` to `room` as text/plain: the status (0 when the
    /// connection failed) and the id a `201` gave it.
    pub(crate) fn post_id(&mut self, room: &str, text: &str) -> (u16, Option<u64>) {
        let req = format!(
            "POST /rooms/{room}/messages HTTP/1.1\r\nHost: bench\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        if self.s.write_all(req.as_bytes()).is_err() {
            return (0, None);
        }
        match self.response() {
            Some((status, body)) => {
                let body = &self.buf[body];
                let id = (status == 201)
                    .then(|| find(body, b"\"id\":").map(|i| parse_u64(&body[i + 5..]).0))
                    .flatten();
                (status, id)
            }
            None => (0, None),
        }
    }

    /// Sends `GET path`: the status and the body (`None` when the
    /// connection failed).
    pub(crate) fn get(&mut self, path: &str) -> Option<(u16, &[u8])> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n");
        self.s.write_all(req.as_bytes()).ok()?;
        let (status, body) = self.response()?;
        Some((status, &self.buf[body]))
    }

    /// Reads one response into `buf`: its status and where its body is. A
    /// `Content-Length` body is read in place; a chunked one (a long
    /// history page) is undone in place. Each pass reads more or returns,
    /// and the socket's read timeout bounds the wait.
    fn response(&mut self) -> Option<(u16, std::ops::Range<usize>)> {
        self.buf.clear();
        let mut scanned = 0usize;
        let head_end = loop {
            // Only the bytes not yet searched (and three before them, for
            // a terminator split across reads): a large body must not make
            // the search quadratic.
            let from = scanned.saturating_sub(3);
            if let Some(i) = find(&self.buf[from..], b"\r\n\r\n") {
                break from + i + 4;
            }
            if self.buf.len() > MAX_HEAD {
                return None;
            }
            scanned = self.buf.len();
            self.fill()?;
        };
        let head = &self.buf[..head_end];
        let status = head
            .get(9..12)
            .and_then(|s| std::str::from_utf8(s).ok()?.parse().ok())
            .unwrap_or(0);
        let field = |name: &[u8]| {
            head.split(|&b| b == b'\n')
                .find(|l| l.len() > name.len() && l[..name.len()].eq_ignore_ascii_case(name))
                .and_then(|l| std::str::from_utf8(&l[name.len()..]).ok())
                .map(|v| v.trim().to_ascii_lowercase())
        };
        if field(b"transfer-encoding:").is_some_and(|v| v == "chunked") {
            return self.chunked(head_end).map(|end| (status, head_end..end));
        }
        let len = field(b"content-length:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0usize);
        let end = head_end + len;
        self.buf.reserve(end.saturating_sub(self.buf.len()));
        while self.buf.len() < end {
            self.fill()?;
        }
        Some((status, head_end..end))
    }

    /// Reads more into `buf`; `None` at EOF or on an error.
    fn fill(&mut self) -> Option<()> {
        match self.s.read(&mut self.chunk) {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                self.buf.extend_from_slice(&self.chunk[..n]);
                Some(())
            }
        }
    }

    /// Undoes a chunked body that starts at `start`, moving each chunk's
    /// data down over the framing: where the body ends.
    fn chunked(&mut self, start: usize) -> Option<usize> {
        let (mut read, mut write) = (start, start);
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf[read..], b"\r\n") {
                    break read + i;
                }
                self.fill()?;
            };
            let size_text = std::str::from_utf8(&self.buf[read..line_end]).ok()?;
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            let data = line_end + 2;
            while self.buf.len() < data + size + 2 {
                self.fill()?;
            }
            if size == 0 {
                self.buf.truncate(write);
                return Some(write);
            }
            self.buf.copy_within(data..data + size, write);
            write += size;
            read = data + size + 2;
        }
    }
}

/// The text of post `k`, sent now, padded to `size` bytes.
pub(crate) fn message_text(k: u64, size: usize) -> String {
    let mut t = format!("lg {k} {} ", now_us());
    const FILL: &str = "the quick brown fox jumps over the lazy dog ";
    while t.len() < size {
        t.push_str(&FILL[..FILL.len().min(size - t.len())]);
    }
    t
}

/// The text of message `seq` of room `room` (`fill`, `missread`): the
/// room and the sequence number, padded to `size` bytes, so a reader can
/// tell which post it got back. Plain words: the default transforms leave
/// it as it is.
pub(crate) fn room_text(room: usize, seq: u64, size: usize) -> String {
    let mut t = format!("fill r{room} m{seq} ");
    const FILL: &str = "the quick brown fox jumps over the lazy dog ";
    while t.len() < size {
        t.push_str(&FILL[..FILL.len().min(size - t.len())]);
    }
    t
}

/// What the subscriber saw in one event.
#[derive(Debug)]
pub(crate) enum Event {
    Hello,
    /// A chat message: its id, and from its text the post number and send
    /// time (`None` for a text that is not ours).
    Message {
        id: u64,
        k: Option<u64>,
        sent_us: u64,
    },
    Other,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    Size,
    Data(usize),
    Trailer(usize),
    End,
}

/// An open event stream.
pub(crate) struct Sse {
    pub(crate) s: Async<StdStream>,
    framing: Framing,
    size_line: Vec<u8>,
    /// Un-chunked bytes not yet split into events.
    events: Vec<u8>,
    read_buf: Box<[u8]>,
    /// Acknowledge every read at once (see [`Sse::ack_at_once`]).
    quickack: bool,
}

impl Sse {
    /// Connects and sends the request; returns once the response head is in.
    /// `rcvbuf` shrinks the socket's receive buffer (for a subscriber that
    /// will stop reading and should fill up soon).
    pub(crate) async fn open(
        addr: SocketAddr,
        path: &str,
        rcvbuf: Option<usize>,
        read_buf: usize,
    ) -> Result<Sse, String> {
        Sse::open_with(addr, path, "", rcvbuf, read_buf).await
    }

    /// [`Sse::open`] with more request `headers` (each line ending in
    /// `\r\n`), such as `Last-Event-ID`.
    pub(crate) async fn open_with(
        addr: SocketAddr,
        path: &str,
        headers: &str,
        rcvbuf: Option<usize>,
        read_buf: usize,
    ) -> Result<Sse, String> {
        let s = match rcvbuf {
            None => Async::<StdStream>::connect(addr)
                .await
                .map_err(|e| format!("connect: {e}"))?,
            Some(size) => {
                use socket2::{Domain, Socket, Type};
                let sock =
                    Socket::new(Domain::IPV4, Type::STREAM, None).map_err(|e| e.to_string())?;
                sock.set_recv_buffer_size(size).map_err(|e| e.to_string())?;
                sock.connect(&addr.into()).map_err(|e| e.to_string())?;
                Async::new(StdStream::from(sock)).map_err(|e| e.to_string())?
            }
        };
        let req = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n{headers}\r\n");
        (&s).write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut sse = Sse {
            s,
            framing: Framing::Size,
            size_line: Vec::new(),
            events: Vec::new(),
            read_buf: vec![0u8; read_buf].into_boxed_slice(),
            quickack: false,
        };
        let mut head = Vec::new();
        let end = loop {
            if let Some(i) = find(&head, b"\r\n\r\n") {
                break i + 4;
            }
            if head.len() > 8192 {
                return Err("response head too long".into());
            }
            let n = (&sse.s)
                .read(&mut sse.read_buf)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err(format!(
                    "closed before the head: {:?}",
                    String::from_utf8_lossy(&head)
                ));
            }
            head.extend_from_slice(&sse.read_buf[..n]);
        };
        if !head.starts_with(b"HTTP/1.1 200") {
            let line = head.split(|&b| b == b'\r').next().unwrap_or(&[]);
            return Err(format!("status {}", String::from_utf8_lossy(line)));
        }
        let rest = head[end..].to_vec();
        sse.feed(&rest);
        Ok(sse)
    }

    /// Reads once from the socket and undoes the chunking. `Ok(false)` at
    /// the end of the stream.
    pub(crate) async fn read(&mut self) -> std::io::Result<bool> {
        // Readiness first: right after a read the socket is nearly always
        // empty, and a read(2) returning EAGAIN per message would make the
        // loadgen, not the server, the bottleneck.
        let n = loop {
            self.s.readable().await?;
            match std::io::Read::read(&mut self.s.get_ref(), &mut self.read_buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            return Ok(false);
        }
        if self.quickack {
            // Linux turns quick ACKs off again by itself: set it per read.
            let _ = socket2::SockRef::from(self.s.get_ref()).set_tcp_quickack(true);
        }
        // Split borrows: the buffer is read-only while the parser appends.
        let buf = std::mem::take(&mut self.read_buf);
        self.feed(&buf[..n]);
        self.read_buf = buf;
        Ok(self.framing != Framing::End)
    }

    /// From now on, acknowledge what arrives at once instead of after the
    /// delayed-ACK timer (`TCP_QUICKACK`). On loopback one segment (~64
    /// KiB) fills the server's stream send buffer, so a bulk read by a
    /// client that delays its ACKs moves one segment per ~40 ms timer:
    /// this measures the server instead of that timer.
    pub(crate) fn ack_at_once(&mut self) {
        self.quickack = true;
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.framing {
                Framing::Size => match data.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.size_line.extend_from_slice(&data[..i]);
                        data = &data[i + 1..];
                        let hex: Vec<u8> = self
                            .size_line
                            .iter()
                            .copied()
                            .take_while(u8::is_ascii_hexdigit)
                            .collect();
                        let n = usize::from_str_radix(std::str::from_utf8(&hex).unwrap_or("0"), 16)
                            .unwrap_or(0);
                        self.size_line.clear();
                        self.framing = if n == 0 {
                            Framing::End
                        } else {
                            Framing::Data(n)
                        };
                    }
                    None => {
                        self.size_line.extend_from_slice(data);
                        data = &[];
                    }
                },
                Framing::Data(n) => {
                    let m = n.min(data.len());
                    self.events.extend_from_slice(&data[..m]);
                    data = &data[m..];
                    self.framing = if m == n {
                        Framing::Trailer(2)
                    } else {
                        Framing::Data(n - m)
                    };
                }
                Framing::Trailer(k) => {
                    let m = k.min(data.len());
                    data = &data[m..];
                    self.framing = if m == k {
                        Framing::Size
                    } else {
                        Framing::Trailer(k - m)
                    };
                }
                Framing::End => return,
            }
        }
    }

    /// Hands every complete event received so far to `f`.
    pub(crate) fn events(&mut self, mut f: impl FnMut(Event)) {
        let mut start = 0;
        while let Some(len) = find(&self.events[start..], b"\n\n") {
            let ev = &self.events[start..start + len];
            start += len + 2;
            f(parse_event(ev));
        }
        self.events.drain(..start);
    }
}

fn parse_event(ev: &[u8]) -> Event {
    if ev.starts_with(b"event: hello") {
        return Event::Hello;
    }
    if !ev.starts_with(b"event: message\nid: ") {
        return Event::Other;
    }
    let (id, _) = parse_u64(&ev[19..]);
    let (mut k, mut sent_us) = (None, 0);
    if let Some(i) = find(ev, b"\"text\":\"lg ") {
        let rest = &ev[i + 11..];
        let (kk, used) = parse_u64(rest);
        let (t, _) = parse_u64(&rest[used + 1..]);
        k = Some(kk);
        sent_us = t;
    }
    Event::Message { id, k, sent_us }
}
