//! The edges: executor threads, the accept loop with its connection limit,
//! signals, and the drain at shutdown.
//!
//! One executor ([`crate::exec`], smol's tasks on two queues) runs on
//! `--threads` OS threads (the main thread is one of them), so a 4-core Pi
//! uses every core. Each accepted connection
//! is a task; a panic inside one (a bug: the guard is meant to make them
//! impossible) is caught and logged, so it costs one connection and never an
//! executor thread. SIGINT/SIGTERM fire the shutdown signal: the listener
//! closes, streams get `event: shutdown`, idle keep-alives close, and we
//! wait at most [`DRAIN`] for the rest.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{FutureExt, StreamExt};
use smol::{Async, Timer};

use crate::app::App;
use crate::exec::Executor;
use crate::http::conn::{self, Stream};
use crate::http::reply::ApiError;
use crate::http::transport::{Tls, Transport};
use crate::tls::Certs;

/// Longest wait for open connections to finish after a shutdown signal.
pub const DRAIN: Duration = Duration::from_millis(1500);
/// Connections being turned away at once; past this they are just closed.
const MAX_REFUSING: usize = 64;

/// Binds `addr` with a deep backlog and `SO_REUSEADDR` (a restarted
/// server can rebind at once).
pub fn bind(addr: SocketAddr) -> io::Result<StdListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // `[::]` serves IPv4 too, as users expect of "listen everywhere".
        let _ = socket.set_only_v6(false);
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Runs the server on `listener` until SIGINT/SIGTERM (or until
/// `app.shutdown` is triggered), then drains and returns. `ready` runs
/// once the signals are handled and connections are about to be accepted:
/// a SIGTERM sent as soon as the ready line appears is a clean stop, never
/// the default action (death by signal).
pub fn run(listener: StdListener, app: App, https: Https, ready: impl FnOnce()) -> io::Result<()> {
    let listener = Async::new(listener)?;
    let acceptor = match &https.certs {
        Some(certs) => Some(futures_rustls::TlsAcceptor::from(
            certs.server_config().map_err(io::Error::other)?,
        )),
        None => None,
    };
    let https_port = listener.get_ref().local_addr()?.port();
    let ex = Arc::new(Executor::new());
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    let mut workers = Vec::new();
    for i in 1..app.config.threads {
        let (ex, stop_rx) = (ex.clone(), stop_rx.clone());
        workers.push(
            std::thread::Builder::new()
                .name(format!("smolchat-{i}"))
                .spawn(move || smol::block_on(ex.run(stop_rx.recv())))?,
        );
    }
    let result = smol::block_on(ex.run(async {
        use async_signal::{Signal, Signals};
        let mut signals = Signals::new([Signal::Term, Signal::Int, Signal::Xfsz, Signal::Hup])?;
        ready();
        app.start_cluster();
        let shutdown = app.shutdown.clone();
        let certs = https.certs.clone();
        ex.spawn(async move {
            while let Some(sig) = signals.next().await {
                match sig {
                    // Over a file-size limit (ulimit -f, LimitFSIZE=): by
                    // default the process would die; handled, the write fails
                    // with EFBIG and the posts concerned get 503 instead.
                    Ok(Signal::Xfsz) => log::warn!("file size limit reached; database writes fail"),
                    // certbot's deploy hook, `systemctl reload`: new handshakes
                    // get the new certificate, open connections keep theirs.
                    Ok(Signal::Hup) => match &certs {
                        Some(c) => match c.reload() {
                            Ok(()) => log::info!("SIGHUP: certificate and key reloaded"),
                            Err(e) => log::error!("SIGHUP: kept the old certificate: {e}"),
                        },
                        None => log::info!("SIGHUP: nothing to reload (no --tls-cert)"),
                    },
                    _ => {
                        log::info!("signal received, shutting down");
                        shutdown.trigger();
                        break;
                    }
                }
            }
        })
        .detach();
        if let Some(redirect) = https.redirect {
            let redirect = Async::new(redirect)?;
            let (app, ex2) = (app.clone(), ex.clone());
            ex.spawn(async move {
                redirect_loop(&ex2, &redirect, &app, https_port)
                    .or(app.shutdown.wait())
                    .await;
            })
            .detach();
        }
        // A task of its own: as the main future of `ex.run` it was polled
        // on every wake-up of the executor, each time an `accept` that
        // found nothing and a re-arm of the listener (two system calls per
        // keep-alive request).
        let accepting = {
            let (ex, app) = (ex.clone(), app.clone());
            ex.clone().spawn(async move {
                accept_loop(&ex, &listener, &app, acceptor.as_ref())
                    .or(app.shutdown.wait())
                    .await;
                // The listener closes here: nothing new is accepted while
                // the open connections drain.
                drop(listener);
            })
        };
        accepting.await;
        app.shutdown.trigger();
        let drained = async {
            app.tracker.wait_idle().await;
            true
        }
        .or(async {
            Timer::after(DRAIN).await;
            false
        })
        .await;
        if !drained {
            log::warn!(
                "{} connections still open after {DRAIN:?}; exiting anyway",
                app.tracker.open()
            );
        }
        app.leave_cluster().await;
        Ok::<(), io::Error>(())
    }));
    drop(stop_tx);
    for w in workers {
        let _ = w.join();
    }
    result
}

/// What HTTPS needs from `main`: the certificates (none: plain HTTP) and
/// the listener of `--redirect-http`.
#[derive(Default)]
pub struct Https {
    /// `--tls-cert` and `--tls-key`, loaded and checked.
    pub certs: Option<Arc<Certs>>,
    /// Bound to `--redirect-http`.
    pub redirect: Option<StdListener>,
}

async fn accept_loop(
    ex: &Arc<Executor>,
    listener: &Async<StdListener>,
    app: &App,
    acceptor: Option<&futures_rustls::TlsAcceptor>,
) {
    let refusing = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors, usually: back off instead of spinning.
                log::warn!("accept failed: {e}");
                Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        app.metrics
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
        // Per client, unless a trusted proxy's address is every client's:
        // then streams are counted by forwarded address (http::stream).
        let per_ip = if app.config.trust_proxy {
            None
        } else {
            match app
                .peers
                .try_enter(peer.ip(), app.config.max_connections_per_ip)
            {
                Some(g) => Some(g),
                None => {
                    app.metrics
                        .connections_refused_per_ip
                        .fetch_add(1, Ordering::Relaxed);
                    refuse(ex, &refusing, stream, ApiError::TooManyFromAddress);
                    continue;
                }
            }
        };
        match app.tracker.try_enter(app.config.max_connections) {
            Some(guard) => {
                let app = app.clone();
                let acceptor = acceptor.cloned();
                ex.spawn(async move {
                    let _guards = (guard, per_ip);
                    let metrics = app.metrics.clone();
                    // Awaited where it is made: a future first bound to a
                    // name and then awaited takes its size twice in the
                    // task (a connection's task was 4,888 bytes with two
                    // such copies, 2,728 without).
                    let served = AssertUnwindSafe(connection(app, stream, peer, acceptor))
                        .catch_unwind()
                        .await;
                    if served.is_err() {
                        metrics.panics.fetch_add(1, Ordering::Relaxed);
                        log::error!("a connection task panicked; the connection was dropped");
                    }
                })
                .detach();
            }
            None => {
                app.metrics
                    .connections_refused
                    .fetch_add(1, Ordering::Relaxed);
                if acceptor.is_some() {
                    // A plain answer on a TLS port would be garbage to the
                    // client, and a handshake is what is being refused.
                    drop(stream);
                } else {
                    refuse(ex, &refusing, stream, ApiError::TooManyConnections);
                }
            }
        }
    }
}

/// One connection, from the TLS handshake (with a TLS acceptor) to its
/// close.
async fn connection(
    app: App,
    stream: Stream,
    peer: SocketAddr,
    acceptor: Option<futures_rustls::TlsAcceptor>,
) {
    let transport = match acceptor {
        None => Transport::Plain(stream),
        // The handshake counts against the connection caps (the guards are
        // held) and the header timeout. Boxed: rustls's state is large and
        // needed only until the handshake ends.
        Some(acceptor) => match Box::pin(handshake(&app, stream, acceptor)).await {
            Some(t) => t,
            None => return,
        },
    };
    conn::serve(app, transport, peer).await;
}

/// The TLS handshake of a new connection, within `--header-timeout`. A
/// client that speaks plain HTTP to the HTTPS port gets a short `400`
/// saying to use `https://` (as nginx does), not a hang.
async fn handshake(
    app: &App,
    stream: Stream,
    acceptor: futures_rustls::TlsAcceptor,
) -> Option<Transport> {
    let deadline = std::time::Instant::now() + app.config.header_timeout;
    let first = async {
        stream.readable().await.ok()?;
        let mut byte = [0u8; 1];
        match stream.get_ref().peek(&mut byte) {
            Ok(1) => Some(byte[0]),
            _ => None,
        }
    }
    .or(async {
        Timer::at(deadline).await;
        None
    })
    .await?;
    // Every TLS connection opens with a handshake record (type 22).
    if first != 0x16 {
        refuse_with(stream, ApiError::PlainHttpOnTls).await;
        return None;
    }
    let tls = async { acceptor.accept(stream).await.ok() }
        .or(async {
            Timer::at(deadline).await;
            None
        })
        .await?;
    let (tcp, conn) = tls.into_inner();
    Some(Transport::Tls(Box::new(Tls::new(tcp, conn))))
}

/// `--redirect-http`: every request gets `308` to the same path on HTTPS.
async fn redirect_loop(
    ex: &Arc<Executor>,
    listener: &Async<StdListener>,
    app: &App,
    https_port: u16,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            Timer::after(Duration::from_millis(100)).await;
            continue;
        };
        let Some(guard) = app.tracker.try_enter(app.config.max_connections) else {
            continue;
        };
        let timeout = app.config.header_timeout;
        ex.spawn(async move {
            let _guard = guard;
            crate::http::redirect(stream, https_port, timeout).await;
        })
        .detach();
    }
}

/// Turns a connection away with `err`, unless [`MAX_REFUSING`] are being
/// turned away already (then it is just closed).
fn refuse(ex: &Arc<Executor>, refusing: &Arc<AtomicUsize>, stream: Stream, err: ApiError) {
    if refusing.load(Ordering::Relaxed) < MAX_REFUSING {
        refusing.fetch_add(1, Ordering::Relaxed);
        let refusing = refusing.clone();
        ex.spawn(async move {
            refuse_with(stream, err).await;
            refusing.fetch_sub(1, Ordering::Relaxed);
        })
        .detach();
    }
}

/// Answers `err` to a connection the server will not serve (over
/// `--max-connections` or `--max-connections-per-ip`) and closes it.
/// Reads the request head first (briefly), so the client is not reset
/// before it sees the answer.
async fn refuse_with(stream: Stream, err: ApiError) {
    use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.get_ref().set_nodelay(true);
    let mut buf = vec![0u8; 2048];
    let mut r = &stream;
    async {
        let _ = r.read(&mut buf).await;
    }
    .or(async {
        Timer::after(Duration::from_millis(500)).await;
    })
    .await;
    let body = serde_json::json!({ "error": err.message() }).to_string();
    let status = http_types::StatusCode::try_from(err.status())
        .unwrap_or(http_types::StatusCode::ServiceUnavailable);
    let res = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\n{}connection: close\r\n{}content-length: {}\r\n\r\n{body}",
        err.status(),
        status.canonical_reason(),
        err.retry_after()
            .map(|s| format!("retry-after: {s}\r\n"))
            .unwrap_or_default(),
        crate::http::reply::SECURITY_HEADERS
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect::<String>(),
        body.len()
    );
    let mut w = &stream;
    let _ = w
        .write_all(res.as_bytes())
        .or(async {
            Timer::after(Duration::from_secs(1)).await;
            Ok(())
        })
        .await;
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Write);
}

/// Raises the soft open-file limit to the hard limit and returns it.
pub fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    let target = lim.maximum;
    if target != lim.current {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: target,
                maximum: lim.maximum,
            },
        );
    }
    getrlimit(Resource::Nofile).current
}
