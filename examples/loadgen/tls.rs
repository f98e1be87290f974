//! `tls`: what HTTPS costs, against plain HTTP in the same run. Two
//! servers from the same binary, one with `--tls-cert`/`--tls-key` (a
//! certificate from a CA made here with rcgen), one without; the same load
//! against each in turn:
//!
//! - connections: `--clients` threads each open a connection, send one
//!   `GET /healthz` with `Connection: close`, read the answer and start
//!   over, for `--seconds`: connections/s and server CPU per connection.
//!   Over TLS with every handshake a full one (the client keeps no
//!   session), then with session resumption (the client keeps its tickets),
//!   as a browser reconnecting would.
//! - posts: `--clients` keep-alive connections post `--size` bytes (64 by
//!   default) as fast as answers come: posts/s and server CPU per post.
//!
//! The server key is ECDSA P-256 (what certbot and Caddy issue by default);
//! with `openssl` on the PATH also RSA 2048 (what mkcert issues), whose
//! signatures cost the server more per full handshake.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};

use crate::client::{message_text, BlockingConn};
use crate::fanout::round;
use crate::server::Server;
use crate::Args;

/// How a client connects.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Plain,
    /// A full handshake every time.
    TlsFull,
    /// Resumed handshakes after the first.
    TlsResumed,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::TlsFull => "tls_full",
            Mode::TlsResumed => "tls_resumed",
        }
    }
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// One connected client, plain or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<Tls>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Connects, and over TLS finishes the handshake before returning.
fn connect(addr: SocketAddr, tls: Option<&Arc<rustls::ClientConfig>>) -> std::io::Result<Stream> {
    let s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let Some(config) = tls else {
        return Ok(Stream::Plain(s));
    };
    let name = ServerName::try_from("localhost").expect("a valid name");
    let conn =
        rustls::ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, s);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(Stream::Tls(Box::new(tls)))
}

/// A client config trusting only `ca`; with or without session resumption.
fn client_config(ca: &CertificateDer<'static>, resume: bool) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("the test CA");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Arc::new(config)
}

/// A CA and a certificate for localhost it signed, as PEM files in `dir`;
/// the leaf key from `key` (PEM) or a new ECDSA P-256 one.
fn make_certs(
    dir: &Path,
    tag: &str,
    key: Option<String>,
) -> (PathBuf, PathBuf, CertificateDer<'static>) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "smolchat loadgen CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
    let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
    let key = match key {
        Some(pem) => rcgen::KeyPair::from_pem(&pem).expect("the key openssl made"),
        None => rcgen::KeyPair::generate().expect("leaf key"),
    };
    let leaf = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("leaf params");
    let cert = leaf.signed_by(&key, &issuer).expect("leaf cert");
    let cert_path = dir.join(format!("{tag}-cert.pem"));
    let key_path = dir.join(format!("{tag}-key.pem"));
    std::fs::write(&cert_path, format!("{}{}", cert.pem(), ca_cert.pem())).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    (cert_path, key_path, ca_cert.der().clone())
}

/// An RSA 2048 key in PKCS#8 PEM from `openssl`, if it is installed.
fn rsa_key() -> Option<String> {
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).ok())
        .flatten()
}

/// Connections per second and server CPU per connection.
fn connections(
    server: &Server,
    mode: Mode,
    ca: Option<&CertificateDer<'static>>,
    args: &Args,
) -> serde_json::Value {
    let clients = if args.clients == 0 { 2 } else { args.clients };
    let seconds = if args.seconds > 0.0 {
        args.seconds
    } else {
        3.0
    };
    let config = ca.map(|ca| client_config(ca, mode == Mode::TlsResumed));
    let addr = server.addr;
    // One connection first, outside the window: a resuming client's first
    // handshake is a full one.
    let warm = connect(addr, config.as_ref()).map(one_request);
    assert!(
        matches!(warm, Ok(true)),
        "{} connection failed",
        mode.name()
    );
    let cpu0 = server.cpu_precise();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let (done, failed) = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..clients)
            .map(|_| {
                let config = config.clone();
                scope.spawn(move || {
                    let (mut done, mut failed) = (0u64, 0u64);
                    while Instant::now() < deadline {
                        match connect(addr, config.as_ref()).map(one_request) {
                            Ok(true) => done += 1,
                            _ => failed += 1,
                        }
                    }
                    (done, failed)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or((0, 1)))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = server.cpu_precise().saturating_sub(cpu0).as_secs_f64();
    serde_json::json!({
        "mode": mode.name(),
        "connections": done,
        "failed": failed,
        "per_s": round(done as f64 / elapsed, 0),
        "server_cpu_us_per_connection": round(cpu * 1e6 / (done.max(1) as f64), 1),
    })
}

/// `GET /healthz` with `Connection: close`: whether a `200` came back.
fn one_request(mut s: Stream) -> bool {
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut got = Vec::with_capacity(512);
    // Until the server closes; a TLS close without close_notify is an
    // error here, but the answer is in by then.
    let _ = s.read_to_end(&mut got);
    got.starts_with(b"HTTP/1.1 200")
}

/// Posts per second and server CPU per post over keep-alive connections.
fn posts(server: &Server, ca: Option<&CertificateDer<'static>>, args: &Args) -> serde_json::Value {
    let clients = if args.clients == 0 { 2 } else { args.clients };
    let seconds = if args.seconds > 0.0 {
        args.seconds
    } else {
        3.0
    };
    let size = args.size_or(64);
    let config = ca.map(|ca| client_config(ca, true));
    let addr = server.addr;
    let conns: Vec<_> = (0..clients)
        .map(|_| BlockingConn::over(connect(addr, config.as_ref()).expect("connect")))
        .collect();
    let cpu0 = server.cpu_precise();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let (done, refused) = std::thread::scope(|scope| {
        let threads: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(c, mut conn)| {
                scope.spawn(move || {
                    let (mut done, mut refused) = (0u64, 0u64);
                    let mut k = c as u64;
                    while Instant::now() < deadline {
                        match conn.post("tls", &message_text(k, size)) {
                            201 => done += 1,
                            0 => return (done, refused + 1),
                            _ => refused += 1,
                        }
                        k += clients as u64;
                    }
                    (done, refused)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or((0, 1)))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = server.cpu_precise().saturating_sub(cpu0).as_secs_f64();
    serde_json::json!({
        "posts": done,
        "refused": refused,
        "per_s": round(done as f64 / elapsed, 0),
        "server_cpu_us_per_post": round(cpu * 1e6 / (done.max(1) as f64), 1),
    })
}

pub(crate) fn run(args: &Args) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!("smolchat-loadgen-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let plain = Server::start(args, &[]);
    let plain_conn = connections(&plain, Mode::Plain, None, args);
    let plain_posts = posts(&plain, None, args);
    drop(plain);
    let mut keys = vec![("ecdsa_p256", None)];
    match rsa_key() {
        Some(pem) => keys.push(("rsa_2048", Some(pem))),
        None => eprintln!("tls: no openssl on the PATH; RSA 2048 left out"),
    }
    let mut tls = Vec::new();
    for (kind, key) in keys {
        let (cert, key, ca) = make_certs(&dir, kind, key);
        let flags = [
            "--tls-cert".to_string(),
            cert.display().to_string(),
            "--tls-key".to_string(),
            key.display().to_string(),
        ];
        let server = Server::start(args, &flags);
        let full = connections(&server, Mode::TlsFull, Some(&ca), args);
        let resumed = connections(&server, Mode::TlsResumed, Some(&ca), args);
        let posts = posts(&server, Some(&ca), args);
        drop(server);
        eprintln!(
            "tls {kind}: {} full handshakes/s ({} µs server CPU each), {} resumed/s ({} µs), \
             {} posts/s ({} µs each); plain: {} connections/s ({} µs), {} posts/s ({} µs)",
            full["per_s"],
            full["server_cpu_us_per_connection"],
            resumed["per_s"],
            resumed["server_cpu_us_per_connection"],
            posts["per_s"],
            posts["server_cpu_us_per_post"],
            plain_conn["per_s"],
            plain_conn["server_cpu_us_per_connection"],
            plain_posts["per_s"],
            plain_posts["server_cpu_us_per_post"],
        );
        tls.push(serde_json::json!({
            "key": kind,
            "full": full,
            "resumed": resumed,
            "posts": posts,
        }));
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{}",
        serde_json::json!({
            "scenario": "tls",
            "plain": { "connections": plain_conn, "posts": plain_posts },
            "tls": tls,
        })
    );
}
