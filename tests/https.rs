//! HTTPS against the real binary: a test CA and certificates made here with
//! rcgen; a rustls client that trusts only that CA posts, streams and
//! pipelines over TLS; plain HTTP to the HTTPS port gets a 400; SIGHUP
//! swaps the certificate while a stream stays open; bad files stop the
//! server with one line; a client that never finishes its handshake is
//! cut; --redirect-http, --hsts and the Secure cookie.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustls::pki_types::{CertificateDer, ServerName};
use support::{read_response, Scratch, Server, WAIT};

/// A CA, and a server certificate for localhost and 127.0.0.1 it signed,
/// written as PEM files in `dir`. Returns (cert path, key path, CA DER).
fn make_certs(dir: &Path, tag: &str, days: i64) -> (PathBuf, PathBuf, CertificateDer<'static>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, format!("smolchat test CA {tag}"));
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
    leaf.subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    // Valid now (from 2020 to 2099), or expired (2021 to 2022).
    leaf.not_before = rcgen::date_time_ymd(2020, 1, 1);
    leaf.not_after = if days > 0 {
        rcgen::date_time_ymd(2099, 1, 1)
    } else {
        rcgen::date_time_ymd(2022, 1, 1)
    };
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let cert_path = dir.join(format!("{tag}-cert.pem"));
    let key_path = dir.join(format!("{tag}-key.pem"));
    // The chain: leaf, then the CA, as certbot's fullchain.pem.
    std::fs::write(&cert_path, format!("{}{}", cert.pem(), ca_cert.pem())).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    // The root alone, for curl --cacert.
    std::fs::write(dir.join(format!("{tag}-ca.pem")), ca_cert.pem()).unwrap();
    (cert_path, key_path, ca_cert.der().clone())
}

/// The leaf certificate the server presented last, per client config.
type Seen = Arc<Mutex<Option<Vec<u8>>>>;

/// A client that trusts only `ca`, and remembers the certificate it got.
fn client(ca: &CertificateDer<'static>) -> (Arc<rustls::ClientConfig>, Seen) {
    #[derive(Debug)]
    struct Remember(Arc<rustls::client::WebPkiServerVerifier>, Seen);
    impl rustls::client::danger::ServerCertVerifier for Remember {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp: &[u8],
            now: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            *self.1.lock().unwrap() = Some(end_entity.to_vec());
            self.0
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls12_signature(message, cert, dss)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls13_signature(message, cert, dss)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.supported_verify_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let seen: Seen = Arc::default();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Remember(verifier, seen.clone())))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (Arc::new(config), seen)
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn connect(s: &Server, config: &Arc<rustls::ClientConfig>) -> TlsStream {
    let tcp = s.connect();
    let conn =
        rustls::ClientConnection::new(config.clone(), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // Finish the handshake now, so errors show here.
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
    }
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls
}

fn start(dir: &Path, cert: &Path, key: &Path, extra: &[&str]) -> Server {
    let mut args = vec![
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--rate",
        "0",
    ];
    args.extend_from_slice(extra);
    let _ = dir;
    Server::start(&args)
}

/// Reads SSE bytes from a chunked response until `want` shows up.
fn read_until(r: &mut impl BufRead, want: &str) -> String {
    let mut seen = String::new();
    let deadline = Instant::now() + WAIT;
    while !seen.contains(want) {
        assert!(Instant::now() < deadline, "no {want:?} in {seen:?}");
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("stream ended before {want:?}: {seen:?}");
        }
        seen.push_str(&line);
    }
    seen
}

#[test]
fn posts_streams_and_pipelined_requests_over_tls() {
    let dir = Scratch::new("https-basic");
    let (cert, key, ca) = make_certs(&dir.0, "a", 30);
    let s = start(&dir.0, &cert, &key, &[]);
    let (config, _) = client(&ca);
    // A stream.
    let mut stream = BufReader::new(connect(&s, &config));
    stream
        .get_mut()
        .write_all(b"GET /rooms/tls/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    read_until(&mut stream, "event: hello");
    // Keep-alive posts, two of them pipelined in one write.
    let mut posts = BufReader::new(connect(&s, &config));
    let mut batch = support::post_bytes(
        "/rooms/tls/messages",
        &["Content-Type: text/plain"],
        b"over tls 1",
    );
    batch.extend(support::post_bytes(
        "/rooms/tls/messages",
        &["Content-Type: text/plain"],
        b"over tls 2",
    ));
    posts.get_mut().write_all(&batch).unwrap();
    for i in 1..=2 {
        let r = read_response(&mut posts).unwrap();
        assert_eq!((r.status, r.json()["id"].as_u64()), (201, Some(i)));
    }
    // A 4 KB message and a replay of both over the stream.
    let big = "x".repeat(4000);
    posts
        .get_mut()
        .write_all(&support::post_bytes(
            "/rooms/tls/messages",
            &["Content-Type: text/plain"],
            big.as_bytes(),
        ))
        .unwrap();
    assert_eq!(read_response(&mut posts).unwrap().status, 201);
    let got = read_until(&mut stream, "id: 3");
    assert!(
        got.contains("over tls 1") && got.contains("over tls 2"),
        "{got}"
    );
    read_until(&mut stream, &big[..100]);
    // History over TLS too.
    posts
        .get_mut()
        .write_all(b"GET /rooms/tls/messages?since=0 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let page = read_response(&mut posts).unwrap().json();
    assert_eq!(page.as_array().unwrap().len(), 3);
}

/// curl trusting the test CA, as a user would run it.
fn curl(dir: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sS", "--max-time", "30", "--cacert"])
        .arg(dir.join("a-ca.pem"))
        .args(args);
    cmd
}

#[test]
fn curl_posts_and_streams_over_tls_1_2_and_1_3_with_the_pair_from_the_environment() {
    let dir = Scratch::new("https-curl");
    let (cert, key, _) = make_certs(&dir.0, "a", 30);
    let s = Server::start_env(
        &["--rate", "0"],
        &[
            ("SMOLCHAT_TLS_CERT", cert.to_str().unwrap()),
            ("SMOLCHAT_TLS_KEY", key.to_str().unwrap()),
        ],
    );
    let base = format!("https://localhost:{}", s.addr.port());
    let resolve = format!("localhost:{}:127.0.0.1", s.addr.port());
    // A stream, read as curl prints it.
    let mut stream = curl(
        &dir.0,
        &[
            "-N",
            "--resolve",
            &resolve,
            &format!("{base}/rooms/c/events"),
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("curl runs");
    let mut events = BufReader::new(stream.stdout.take().unwrap());
    read_until(&mut events, "event: hello");
    for (n, version) in [(1, "--tls-max"), (2, "--tlsv1.3")] {
        let mut args = vec!["--resolve", &resolve, "-v", "-d", "hi over curl"];
        if version == "--tls-max" {
            args.extend(["--tlsv1.2", "--tls-max", "1.2"]);
        } else {
            args.push("--tlsv1.3");
        }
        let url = format!("{base}/rooms/c/messages");
        args.push(&url);
        let out = curl(&dir.0, &args).output().expect("curl runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(body["id"].as_u64(), Some(n), "{body}");
        let want = if n == 1 { "TLSv1.2" } else { "TLSv1.3" };
        assert!(err.contains(want), "{want} in {err}");
        assert!(err.contains("ALPN: server accepted http/1.1"), "{err}");
        let got = read_until(&mut events, "hi over curl");
        assert!(got.contains(&format!("id: {n}\n")), "{got}");
    }
    let _ = stream.kill();
    let _ = stream.wait();
}

#[test]
fn plain_http_to_the_https_port_is_told_to_use_https() {
    let dir = Scratch::new("https-plain");
    let (cert, key, _) = make_certs(&dir.0, "a", 30);
    let s = start(&dir.0, &cert, &key, &[]);
    let r = s.get("/healthz");
    assert_eq!(r.status, 400);
    assert!(r.error().contains("use https://"), "{}", r.error());
}

#[test]
fn sighup_swaps_the_certificate_while_a_stream_keeps_going() {
    let dir = Scratch::new("https-reload");
    let (cert, key, ca_a) = make_certs(&dir.0, "a", 30);
    let s = start(&dir.0, &cert, &key, &[]);
    let (config_a, seen_a) = client(&ca_a);
    let mut stream = BufReader::new(connect(&s, &config_a));
    let first = seen_a.lock().unwrap().clone().unwrap();
    stream
        .get_mut()
        .write_all(b"GET /rooms/r/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    read_until(&mut stream, "event: hello");
    // A bad pair first: refused, the old one kept.
    std::fs::write(&cert, "not a certificate").unwrap();
    s.signal("HUP");
    let deadline = Instant::now() + WAIT;
    while !s
        .stderr()
        .iter()
        .any(|l| l.contains("kept the old certificate"))
    {
        assert!(Instant::now() < deadline, "no log line for the bad pair");
        std::thread::yield_now();
    }
    connect(&s, &config_a);
    assert_eq!(
        seen_a.lock().unwrap().clone().unwrap(),
        first,
        "still the old certificate"
    );
    // Then a good one, from another CA.
    let (new_cert, new_key, ca_b) = make_certs(&dir.0, "b", 30);
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    s.signal("HUP");
    let (config_b, seen_b) = client(&ca_b);
    let deadline = Instant::now() + WAIT;
    loop {
        let tcp = s.connect();
        let conn = rustls::ClientConnection::new(
            config_b.clone(),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut ok = true;
        while tls.conn.is_handshaking() {
            if tls.conn.complete_io(&mut tls.sock).is_err() {
                ok = false;
                break;
            }
        }
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate never served"
        );
    }
    assert_ne!(seen_b.lock().unwrap().clone().unwrap(), first);
    // The old stream saw nothing of it and keeps receiving.
    assert_eq!(
        s.say("r", "ana", "after the reload").status,
        400,
        "plain HTTP is refused..."
    );
    let mut posts = BufReader::new(connect(&s, &config_b));
    posts
        .get_mut()
        .write_all(&support::post_bytes(
            "/rooms/r/messages",
            &["Content-Type: text/plain"],
            b"after the reload",
        ))
        .unwrap();
    assert_eq!(read_response(&mut posts).unwrap().status, 201);
    read_until(&mut stream, "after the reload");
}

#[test]
fn unusable_certificates_stop_the_server_with_one_line() {
    let dir = Scratch::new("https-bad");
    let (cert, key, _) = make_certs(&dir.0, "a", 30);
    let (_, other_key, _) = make_certs(&dir.0, "b", 30);
    let (expired, expired_key, _) = make_certs(&dir.0, "old", -1);
    let junk = dir.0.join("junk.pem");
    std::fs::write(&junk, "hello\n").unwrap();
    let missing = dir.0.join("missing.pem");
    let run = |cert: &Path, key: &Path| {
        let out = support::smolchat_command()
            .args(["--addr", "127.0.0.1:0", "--db", ":memory:", "--tls-cert"])
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    for (c, k, needle) in [
        (&missing, &key, "No such file"),
        (&junk, &key, "no PEM certificate"),
        (&cert, &junk, "no PEM item"),
        (&cert, &other_key, "the key does not match the certificate"),
        (&expired, &expired_key, "the certificate expired on"),
    ] {
        let (code, err) = run(c, k);
        assert_eq!(code, Some(1), "{c:?} {k:?}: {err}");
        assert!(
            err.contains(needle) && err.lines().count() == 1,
            "{c:?} {k:?}: {err}"
        );
    }
}

#[test]
fn a_handshake_that_never_finishes_is_cut_and_counts_as_a_connection() {
    let dir = Scratch::new("https-slow");
    let (cert, key, ca) = make_certs(&dir.0, "a", 30);
    let s = start(
        &dir.0,
        &cert,
        &key,
        &["--header-timeout", "1s", "--max-connections", "2"],
    );
    let (config, _) = client(&ca);
    let mut silent: Vec<TcpStream> = (0..2).map(|_| s.connect()).collect();
    // Both slots are taken by clients that say nothing: a third is closed
    // before its handshake (once the server has counted the two).
    let deadline = Instant::now() + WAIT;
    loop {
        let tcp = s.connect();
        let conn = rustls::ClientConnection::new(
            config.clone(),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut done = true;
        while tls.conn.is_handshaking() {
            if tls.conn.complete_io(&mut tls.sock).is_err() {
                done = false;
                break;
            }
        }
        if !done {
            break;
        }
        assert!(Instant::now() < deadline, "a third connection was served");
    }
    // The silent ones are cut at the header timeout.
    for c in &mut silent {
        c.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 16];
        let started = Instant::now();
        let n = c.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "closed without a word");
        assert!(started.elapsed() < WAIT);
    }
    drop(silent);
    // Then a real client gets in.
    let deadline = Instant::now() + WAIT;
    loop {
        let tcp = s.connect();
        let conn = rustls::ClientConnection::new(
            config.clone(),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut ok = true;
        while tls.conn.is_handshaking() {
            if tls.conn.complete_io(&mut tls.sock).is_err() {
                ok = false;
                break;
            }
        }
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "no slot freed");
    }
}

#[test]
fn redirect_hsts_and_the_secure_cookie() {
    let dir = Scratch::new("https-extras");
    let (cert, key, ca) = make_certs(&dir.0, "a", 30);
    // A free port for the redirect listener: bind, note, release.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let db = dir.db();
    let user = support::smolchat_command()
        .args(["user", "add", "ana", "--password-stdin", "--db", &db])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b"ana-password\n")?;
            c.wait()
        })
        .unwrap();
    assert!(user.success());
    let s = start(
        &dir.0,
        &cert,
        &key,
        &[
            "--redirect-http",
            &format!("127.0.0.1:{port}"),
            "--hsts",
            "--db",
            &db,
        ],
    );
    let https_port = s.addr.port();
    let mut plain = TcpStream::connect(("127.0.0.1", port)).unwrap();
    plain.set_read_timeout(Some(WAIT)).unwrap();
    plain
        .write_all(b"GET /rooms/k/messages?limit=2 HTTP/1.1\r\nHost: pi.local\r\n\r\n")
        .unwrap();
    let r = read_response(&mut BufReader::new(plain)).unwrap();
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some(&*format!(
            "https://pi.local:{https_port}/rooms/k/messages?limit=2"
        ))
    );
    let (config, _) = client(&ca);
    let mut c = BufReader::new(connect(&s, &config));
    c.get_mut()
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let r = read_response(&mut c).unwrap();
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    c.get_mut()
        .write_all(&support::post_bytes(
            "/login",
            &["Content-Type: application/json", "Origin: https://test"],
            br#"{"user":"ana","password":"ana-password"}"#,
        ))
        .unwrap();
    let r = read_response(&mut c).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = r.header("set-cookie").unwrap();
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    // A post's `201` (written without a full response when it needs no
    // more fields) carries HSTS too.
    c.get_mut()
        .write_all(&support::post_bytes(
            "/rooms/k/messages",
            &["Content-Type: text/plain"],
            b"over https",
        ))
        .unwrap();
    let r = read_response(&mut c).unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000")
    );
}
