//! The HTTP client under `smolchat say` and `smolchat tail`: async-h1's
//! own client side (its request encoder and response decoder) over a TCP
//! connection, or rustls's client side for `https://`.
//!
//! The server is as hostile as any peer: the response head is read here
//! first, bounded at [`head::MAX_HEAD`] bytes and checked for bytes outside
//! printable ASCII (http-types panics on those), and only then handed to
//! async-h1's decoder along with the bytes after it. Connecting, the head
//! and each read of a body have deadlines.
//!
//! Certificates for `https://` are checked against `--cacert FILE`, else
//! the system's bundle (`SSL_CERT_FILE`, else
//! `/etc/ssl/certs/ca-certificates.crt`).

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures_lite::FutureExt;
use http_types::{Request, Response, Url};
use smol::{Async, Timer};

use crate::http::head;

/// Longest wait for a connection, and for a response head.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body read whole (an answer to a post, an error).
const MAX_BODY: u64 = 1 << 20;
/// Where Debian (and Raspberry Pi OS) keep the system's CA bundle.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Why a request got no HTTP answer.
#[derive(Debug)]
pub(crate) enum Error {
    /// The server could not be reached, or the connection failed.
    Network(String),
    /// The server answered with something that is not HTTP we accept.
    BadResponse(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Network(m) => f.write_str(m),
            Error::BadResponse(m) => write!(f, "bad response from the server: {m}"),
        }
    }
}

/// The server to talk to: where, and how.
pub(crate) struct Server {
    url: Url,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Server {
    /// Parses `--server` (`http://pi:8080`, `https://chat.example`, with an
    /// optional path prefix; a bare `host:port` means `http://`). For
    /// `https://`, loads the roots: `cacert`, else `bundle` (the value of
    /// `SSL_CERT_FILE`), else the system's.
    pub(crate) fn new(
        server: &str,
        cacert: Option<&str>,
        bundle: Option<&str>,
    ) -> Result<Server, String> {
        let with_scheme = if server.contains("://") {
            server.to_string()
        } else {
            format!("http://{server}")
        };
        let mut url = Url::parse(&with_scheme)
            .map_err(|e| format!("--server {server:?}: not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "--server {server:?}: expected http://HOST[:PORT] or https://HOST[:PORT]"
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "--server {server:?}: give credentials with --token, not in the URL"
            ));
        }
        url.set_query(None);
        url.set_fragment(None);
        let tls = if url.scheme() == "https" {
            Some(client_config(cacert, bundle)?)
        } else {
            None
        };
        Ok(Server { url, tls })
    }

    /// The URL of `path` (starting with `/`, with its query) on this server,
    /// under its path prefix.
    pub(crate) fn url(&self, path: &str) -> Url {
        let mut base = self.url.clone();
        let prefix = base.path().trim_end_matches('/').to_string();
        let (p, q) = path.split_once('?').unwrap_or((path, ""));
        base.set_path(&format!("{prefix}{p}"));
        base.set_query((!q.is_empty()).then_some(q));
        base
    }

    /// The server as given, for messages.
    pub(crate) fn shown(&self) -> String {
        self.url.as_str().trim_end_matches('/').to_string()
    }

    /// Sends `req` on a new connection; the response's body is read from
    /// that connection as the caller reads it.
    pub(crate) async fn send(&self, req: Request) -> Result<Response, Error> {
        let mut conn = self.connect().await?;
        let mut encoder = async_h1::client::Encoder::new(req);
        let mut bytes = Vec::new();
        // The body is in memory: the encoder never waits.
        encoder
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| Error::Network(e.to_string()))?;
        deadline(CONNECT_TIMEOUT, async {
            conn.write_all(&bytes).await?;
            conn.flush().await
        })
        .await
        .map_err(|e| Error::Network(format!("{}: {e}", self.shown())))?;
        let head = read_head(&mut conn).await?;
        async_h1::client::decode(Prefixed {
            bytes: head,
            pos: 0,
            rest: conn,
        })
        .await
        .map_err(|e| Error::BadResponse(e.to_string().to_lowercase()))
    }

    async fn connect(&self) -> Result<Conn, Error> {
        let host = self.url.host_str().unwrap_or_default();
        let port = self.url.port_or_known_default().unwrap_or(80);
        let name = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let fail = |e: &dyn std::fmt::Display| Error::Network(format!("{}: {e}", self.shown()));
        let addrs: Vec<SocketAddr> =
            deadline(CONNECT_TIMEOUT, smol::net::resolve((name.as_str(), port)))
                .await
                .map_err(|e| fail(&e))?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        let mut tcp = None;
        for addr in addrs {
            match deadline(CONNECT_TIMEOUT, Async::<TcpStream>::connect(addr)).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let tcp = tcp.ok_or_else(|| fail(&last))?;
        let _ = tcp.get_ref().set_nodelay(true);
        let Some(config) = &self.tls else {
            return Ok(Conn::Plain(tcp));
        };
        let server_name = rustls_pki_types::ServerName::try_from(name).map_err(|e| fail(&e))?;
        let tls = deadline(
            CONNECT_TIMEOUT,
            futures_rustls::TlsConnector::from(config.clone()).connect(server_name, tcp),
        )
        .await
        .map_err(|e| fail(&e))?;
        Ok(Conn::Tls(Box::new(tls)))
    }
}

/// The client TLS configuration: ring, TLS 1.2 and 1.3, ALPN `http/1.1`,
/// roots from `cacert` or the system bundle.
fn client_config(
    cacert: Option<&str>,
    bundle: Option<&str>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let (file, flag) = match (cacert, bundle) {
        (Some(f), _) => (f, "--cacert"),
        (None, Some(f)) if !f.is_empty() => (f, "SSL_CERT_FILE"),
        _ => (SYSTEM_BUNDLE, "the system's CA bundle"),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
        .and_then(|it| it.collect())
        .map_err(|e| format!("{flag} {file}: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("{flag} {file}: no CA certificate in it"));
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Reads up to the end of the response head, within [`CONNECT_TIMEOUT`]:
/// the head and whatever came after it.
async fn read_head(conn: &mut Conn) -> Result<Vec<u8>, Error> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let until = std::time::Instant::now() + CONNECT_TIMEOUT;
    loop {
        match head::find_end(&buf) {
            Ok(Some(end)) if head::has_bad_byte(&buf[..end]) => {
                return Err(Error::BadResponse(
                    "a byte outside printable ascii in its head".into(),
                ))
            }
            Ok(Some(_)) => return Ok(buf),
            Ok(None) if head::has_bad_byte(&buf) => {
                return Err(Error::BadResponse("not HTTP".into()))
            }
            Ok(None) => {}
            Err(_) => return Err(Error::BadResponse("head too large".into())),
        }
        let left = until.saturating_duration_since(std::time::Instant::now());
        let n = deadline(left, conn.read(&mut chunk))
            .await
            .map_err(|e| Error::Network(format!("reading the response: {e}")))?;
        if n == 0 {
            return Err(Error::Network(if buf.is_empty() {
                "the server closed the connection without answering".into()
            } else {
                "the server closed the connection mid-answer".into()
            }));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads a whole (small) body: an answer to a post, an error.
pub(crate) async fn body_text(res: &mut Response) -> Result<String, Error> {
    let mut bytes = Vec::new();
    deadline(
        CONNECT_TIMEOUT,
        res.take_body().take(MAX_BODY).read_to_end(&mut bytes),
    )
    .await
    .map_err(|e| Error::Network(format!("reading the response: {e}")))?;
    String::from_utf8(bytes).map_err(|_| Error::BadResponse("body is not utf-8".into()))
}

/// The `error` of a JSON error body, else the body itself, shortened.
pub(crate) fn error_text(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct E {
        error: String,
    }
    let text =
        serde_json::from_str::<E>(body).map_or_else(|_| body.trim().to_string(), |e| e.error);
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    if one_line.is_empty() {
        "(no reason given)".into()
    } else {
        one_line
    }
}

/// `f`, or a timeout error after `d`.
pub(crate) async fn deadline<T>(
    d: Duration,
    f: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    f.or(async {
        Timer::after(d).await;
        Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
    })
    .await
}

/// A connection, plain or TLS.
enum Conn {
    Plain(Async<TcpStream>),
    Tls(Box<futures_rustls::client::TlsStream<Async<TcpStream>>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_close(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

/// The bytes read with the head (head first), then the connection.
struct Prefixed {
    bytes: Vec<u8>,
    pos: usize,
    rest: Conn,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pos < this.bytes.len() {
            let n = (this.bytes.len() - this.pos).min(buf.len());
            buf[..n].copy_from_slice(&this.bytes[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.bytes.len() {
                this.bytes = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut this.rest).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        let s = Server::new("pi:8080", None, None).unwrap();
        assert_eq!(
            s.url("/rooms/a/messages").as_str(),
            "http://pi:8080/rooms/a/messages"
        );
        let s = Server::new("http://pi/chat/", None, None).unwrap();
        assert_eq!(
            s.url("/rooms/a/events?since=3").as_str(),
            "http://pi/chat/rooms/a/events?since=3"
        );
        assert_eq!(s.shown(), "http://pi/chat");
        for bad in ["ftp://pi", "http://", "http://u:p@pi", "not a url at all"] {
            assert!(Server::new(bad, None, None).is_err(), "{bad}");
        }
        let e = Server::new("https://pi", Some("/nonexistent/ca.pem"), None)
            .err()
            .unwrap();
        assert!(e.starts_with("--cacert /nonexistent/ca.pem: "), "{e}");
    }

    #[test]
    fn error_bodies_become_one_line() {
        assert_eq!(
            error_text(r#"{"error":"too many posts; retry in 1 s"}"#),
            "too many posts; retry in 1 s"
        );
        assert_eq!(
            error_text("<html>\nbad gateway\n</html>"),
            "<html> bad gateway </html>"
        );
        assert_eq!(error_text(""), "(no reason given)");
    }
}
