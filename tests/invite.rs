//! Phones join by QR: a server listening on every address lists its URLs
//! on this machine's networks after the ready line (which stays the first
//! line), `--qr` draws the first as a terminal QR code, and the page's
//! "Invite a phone" gets the room's URL and its QR code as SVG. Every code
//! is read back with a QR decoder, as a phone's camera would.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;

use support::{Server, WAIT};

/// Decodes the one QR code in a picture given as rows of dark (`true`)
/// and light pixels.
fn decode(rows: &[Vec<bool>]) -> String {
    let (h, w) = (rows.len(), rows[0].len());
    let mut img =
        rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| if rows[y][x] { 0 } else { 255 });
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the picture");
    grids[0].decode().expect("a readable QR code").1
}

/// Scales a picture up (the decoder wants a few pixels per module).
fn scale(rows: Vec<Vec<bool>>, by: usize) -> Vec<Vec<bool>> {
    rows.iter()
        .flat_map(|r| {
            let wide: Vec<bool> = r.iter().flat_map(|d| std::iter::repeat_n(*d, by)).collect();
            std::iter::repeat_n(wide, by)
        })
        .collect()
}

/// The picture a terminal shows for `--qr`'s lines: each character is two
/// pixels, top and bottom; the ANSI colours around them are dropped.
fn terminal_picture(lines: &[String]) -> Vec<Vec<bool>> {
    let mut rows = Vec::new();
    for line in lines {
        let text = line
            .trim_start_matches("\x1b[30;107m")
            .trim_end_matches("\x1b[0m");
        let (top, bottom): (Vec<bool>, Vec<bool>) = text
            .chars()
            .map(|c| match c {
                '█' => (true, true),
                '▀' => (true, false),
                '▄' => (false, true),
                ' ' => (false, false),
                other => panic!("unexpected {other:?} in a QR line"),
            })
            .unzip();
        rows.push(top);
        rows.push(bottom);
    }
    // A white frame, as the terminal's background around the code.
    let w = rows[0].len() + 8;
    let mut framed = vec![vec![false; w]; 4];
    framed.extend(rows.into_iter().map(|r| {
        let mut f = vec![false; 4];
        f.extend(r);
        f.extend([false; 4]);
        f
    }));
    framed.extend(vec![vec![false; w]; 4]);
    framed
}

/// The picture an SVG of unit rectangles (`M x y h w v1 h-w z`) draws.
fn svg_picture(svg: &str) -> Vec<Vec<bool>> {
    let size: usize = svg
        .split("viewBox=\"0 0 ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut rows = vec![vec![false; size]; size];
    let d = svg
        .split(" d=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    for rect in d.split('z').filter(|r| !r.is_empty()) {
        let rest = rect.strip_prefix('M').unwrap();
        let (xy, rest) = rest.split_once('h').unwrap();
        let (x, y) = xy.split_once(' ').unwrap();
        let (x, y): (usize, usize) = (x.parse().unwrap(), y.parse().unwrap());
        let w: usize = rest.split('v').next().unwrap().parse().unwrap();
        for px in &mut rows[y][x..x + w] {
            *px = true;
        }
    }
    rows
}

#[test]
fn listening_everywhere_lists_network_urls_after_the_ready_line_and_qr_draws_the_first() {
    let mut cmd = support::smolchat_command();
    cmd.args(["--addr", "0.0.0.0:0", "--db", ":memory:", "--qr"])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let stderr = child.stderr.take().unwrap();
    let (etx, erx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = etx.send(line);
        }
    });
    let next = || rx.recv_timeout(WAIT).expect("a line on stdout");
    let ready = next();
    let port: u16 = ready
        .strip_prefix("smolchat listening on http://0.0.0.0:")
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("the first line is the ready line: {ready:?}"))
        .parse()
        .unwrap();
    let listen = format!("0.0.0.0:{port}").parse().unwrap();
    let want = smolchat::lan::urls("http", listen, &smolchat::lan::addresses());
    for url in &want {
        assert_eq!(next(), format!("  on this network: {url}"));
    }
    match want.first() {
        Some(first) => {
            let mut qr = Vec::new();
            loop {
                let line = next();
                if let Some(url) = line.strip_prefix("  scan to open ") {
                    assert_eq!(url, first);
                    break;
                }
                qr.push(line);
            }
            assert_eq!(decode(&scale(terminal_picture(&qr), 3)), *first);
        }
        None => {
            let err = erx.recv_timeout(WAIT).unwrap();
            assert!(err.contains("--qr: no address on a network"), "{err}");
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_loopback_listener_prints_only_the_ready_line() {
    let mut cmd = support::smolchat_command();
    cmd.args(["--addr", "127.0.0.1:0", "--db", ":memory:", "--qr"])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(
        line.starts_with(
            "smolchat: --qr: no address on a network to show (listening on 127.0.0.1:"
        ),
        "{line}"
    );
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with("smolchat listening on http://127.0.0.1:"));
}

/// `GET path` with `Host: host`.
fn get(s: &Server, path: &str, host: &str) -> support::Response {
    s.raw(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
}

#[test]
fn the_page_invite_is_the_room_url_and_its_qr_code() {
    let s = Server::start(&[]);
    let r = get(&s, "/rooms/kitchen/invite", "pi.local:8080");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["url"], "http://pi.local:8080/#kitchen");
    let r = get(&s, "/rooms/kitchen/invite.svg", "pi.local:8080");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/svg+xml"));
    assert_eq!(
        r.header("content-security-policy"),
        Some("default-src 'none'; frame-ancestors 'none'")
    );
    assert_eq!(
        decode(&scale(svg_picture(&r.text()), 4)),
        "http://pi.local:8080/#kitchen"
    );
    // Not listening everywhere: no network URL stands in for localhost.
    let r = get(&s, "/rooms/a.b_c-d/invite", "localhost:9");
    assert_eq!(r.json()["url"], "http://localhost:9/#a.b_c-d");
    assert_eq!(s.get("/rooms/no%20room/invite.svg").status, 400);
    assert_eq!(
        s.post("/rooms/kitchen/invite", "text/plain", "x").status,
        405
    );
}

#[test]
fn an_invite_opened_on_the_machine_itself_names_its_network_address() {
    let s = Server::start(&["--addr", "0.0.0.0:0"]);
    let listen = format!("0.0.0.0:{}", s.addr.port()).parse().unwrap();
    let lan = smolchat::lan::urls("http", listen, &smolchat::lan::addresses());
    let base = lan
        .first()
        .cloned()
        .unwrap_or_else(|| format!("http://localhost:{}", s.addr.port()));
    for host in [
        format!("localhost:{}", s.addr.port()),
        format!("127.0.0.1:{}", s.addr.port()),
    ] {
        let r = get(&s, "/rooms/kitchen/invite", &host);
        let want = if lan.is_empty() {
            format!("http://{host}/#kitchen")
        } else {
            format!("{base}/#kitchen")
        };
        assert_eq!(r.json()["url"], want.as_str());
        let svg = get(&s, "/rooms/kitchen/invite.svg", &host);
        assert_eq!(decode(&scale(svg_picture(&svg.text()), 4)), want);
    }
}
