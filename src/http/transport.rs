//! The bytes of one connection, plain or TLS, as the connection loop uses
//! them: wait until readable, read what is there without waiting, write a
//! list of buffers with a stall deadline.
//!
//! The loop works on readiness, not on `AsyncRead`: it waits outside its
//! (large) request phase and reads without blocking, and a stream watches
//! for the peer leaving while it writes. For TLS that means driving rustls
//! by hand over the socket: records are read when the socket is readable
//! and decrypted into rustls's buffer; plaintext is encrypted into records
//! (at most [`TLS_BUFFER`] at a time, so a stalled reader holds a bounded
//! amount) and flushed as the socket accepts them. The handshake itself is
//! done by `futures-rustls` before the connection gets here.

use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use futures_lite::io::AsyncWriteExt;
use futures_lite::{future, FutureExt};
use rustls::ServerConnection;
use smol::{Async, Timer};

/// Plaintext rustls holds for one TLS connection before a write waits for
/// the socket (its default is unbounded).
pub const TLS_BUFFER: usize = 64 * 1024;

/// Most buffers handed to one writev(2) (Linux allows 1024).
const MAX_IOV: usize = 256;

/// Why a write did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFail {
    /// The socket accepted no byte for the whole stall period.
    Stalled,
    /// The peer is gone.
    Io,
}

/// One connection's transport.
#[derive(Debug)]
pub enum Transport {
    /// Plain TCP.
    Plain(Async<TcpStream>),
    /// TLS over TCP, after the handshake. Boxed: a TLS session is a few
    /// KiB, and a plain connection's task should not carry its size.
    Tls(Box<Tls>),
}

/// A TLS session and its socket.
#[derive(Debug)]
pub struct Tls {
    tcp: Async<TcpStream>,
    // Locked only for non-blocking work, never across an await: a stream
    // watches for its peer leaving while it writes, from the same task.
    conn: Mutex<ServerConnection>,
}

impl Tls {
    /// A session whose handshake is done.
    pub fn new(tcp: Async<TcpStream>, mut conn: ServerConnection) -> Tls {
        conn.set_buffer_limit(Some(TLS_BUFFER));
        Tls {
            tcp,
            conn: Mutex::new(conn),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ServerConnection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes whatever records rustls has ready, without waiting; `Ok(true)`
    /// when none are left.
    fn flush_now(&self, conn: &mut ServerConnection) -> io::Result<bool> {
        let mut sock = self.tcp.get_ref();
        while conn.wants_write() {
            match conn.write_tls(&mut sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

impl Transport {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &Async<TcpStream> {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(t) => &t.tcp,
        }
    }

    /// Whether it is TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// Resolves when there may be something to read.
    pub async fn readable(&self) -> io::Result<()> {
        if let Transport::Tls(t) = self {
            // Records already decrypted need no wait for the socket.
            let ready = t
                .lock()
                .process_new_packets()
                .map(|state| state.plaintext_bytes_to_read() > 0 || state.peer_has_closed())
                .unwrap_or(true);
            if ready {
                return Ok(());
            }
        }
        self.tcp().readable().await
    }

    /// Reads what is there now into `buf`: `Ok(0)` once the peer has
    /// closed, `WouldBlock` when there is nothing yet.
    pub fn read_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.get_ref().read(buf),
            Transport::Tls(t) => {
                let mut conn = t.lock();
                loop {
                    match conn.reader().read(buf) {
                        Ok(n) => return Ok(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                    let mut sock = t.tcp.get_ref();
                    match conn.read_tls(&mut sock) {
                        Ok(0) => return Ok(0),
                        Ok(_) => {
                            if let Err(e) = conn.process_new_packets() {
                                // Tell the peer why, as far as it will listen.
                                let _ = t.flush_now(&mut conn);
                                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                            }
                            // Alerts, key updates: out now if the socket takes them.
                            t.flush_now(&mut conn)?;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }

    /// Writes `parts` one after the other, failing if the socket accepts
    /// nothing for `stall`. The deadline restarts whenever bytes go out;
    /// the common case (the socket has room) arms no timer at all.
    ///
    /// Once waiting, the deadline is polled before the write, so when it
    /// has passed it wins: a client that reads nothing can still take a
    /// few bytes now and then (its kernel compacts its receive queue), and
    /// polled the other way round each such write restarted the deadline
    /// and the stream was never cut.
    pub async fn write_parts(&self, parts: &[&[u8]], stall: Duration) -> Result<(), WriteFail> {
        match self {
            Transport::Plain(s) => write_plain(s, parts, stall).await,
            Transport::Tls(t) => {
                // Encrypted as they go into rustls's buffer; flushed when it
                // is full and at the end, so small parts share write(2)s.
                for part in parts {
                    let mut rest: &[u8] = part;
                    while !rest.is_empty() {
                        let n = t.lock().writer().write(rest).map_err(|_| WriteFail::Io)?;
                        rest = &rest[n..];
                        if !rest.is_empty() {
                            flush_tls(t, stall).await?;
                        }
                    }
                }
                flush_tls(t, stall).await
            }
        }
    }

    /// Ends our side: a TLS `close_notify`, then a TCP half-close.
    pub fn shutdown_write(&self) {
        if let Transport::Tls(t) = self {
            let mut conn = t.lock();
            conn.send_close_notify();
            let _ = t.flush_now(&mut conn);
        }
        let _ = self.tcp().get_ref().shutdown(std::net::Shutdown::Write);
    }
}

/// Flushes rustls's records to the socket, waiting for room up to `stall`
/// each time it is full.
async fn flush_tls(t: &Tls, stall: Duration) -> Result<(), WriteFail> {
    loop {
        let done = {
            let mut conn = t.lock();
            t.flush_now(&mut conn).map_err(|_| WriteFail::Io)?
        };
        if done {
            return Ok(());
        }
        async {
            Timer::after(stall).await;
            Err(WriteFail::Stalled)
        }
        .or(async { t.tcp.writable().await.map_err(|_| WriteFail::Io) })
        .await?;
    }
}

async fn write_plain(
    stream: &Async<TcpStream>,
    parts: &[&[u8]],
    stall: Duration,
) -> Result<(), WriteFail> {
    // On the stack for the few parts a write nearly always has.
    let mut small = [IoSlice::new(&[]); 4];
    let mut big: Vec<IoSlice<'_>>;
    let parts = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| IoSlice::new(p));
    let mut rest = if parts.clone().count() <= small.len() {
        let mut n = 0;
        for (slot, part) in small.iter_mut().zip(parts) {
            *slot = part;
            n += 1;
        }
        &mut small[..n]
    } else {
        big = parts.collect();
        &mut big[..]
    };
    let mut w: &Async<TcpStream> = stream;
    while !rest.is_empty() {
        let batch = &rest[..rest.len().min(MAX_IOV)];
        let wrote = match future::poll_once(AsyncWriteExt::write_vectored(&mut w, batch)).await {
            Some(r) => r.map_err(|_| WriteFail::Io)?,
            None => {
                async {
                    Timer::after(stall).await;
                    Err(WriteFail::Stalled)
                }
                .or(async {
                    AsyncWriteExt::write_vectored(&mut w, batch)
                        .await
                        .map_err(|_| WriteFail::Io)
                })
                .await?
            }
        };
        if wrote == 0 {
            return Err(WriteFail::Io);
        }
        IoSlice::advance_slices(&mut rest, wrote);
    }
    Ok(())
}
