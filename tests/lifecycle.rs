//! The process from the outside: flags, environment, exit codes, the ready
//! line, and graceful shutdown on SIGTERM and SIGINT.

mod support;

use std::io::{BufReader, Write};
use std::time::Instant;

use support::{read_response, Server, WAIT};

fn smolchat(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = support::smolchat_command();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn help_and_version_exit_zero() {
    let out = smolchat(&["--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--addr",
        "--db",
        "--threads",
        "--max-connections",
        "--max-rooms",
        "--max-message-bytes",
        "--buffer",
        "--history",
        "--replay",
        "--keepalive",
        "--publish-timeout",
        "--slow-timeout",
        "--header-timeout",
        "--rate",
        "--trust-proxy",
        "--allow-origin",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    assert!(help.contains("SMOLCHAT_"));
    let out = smolchat(&["--version"], &[]);
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .starts_with("smolchat "));
}

#[test]
fn invalid_values_exit_2_with_a_clear_message() {
    for (args, env, needle) in [
        (&["--buffer", "0"][..], &[][..], "--buffer"),
        (&["--addr", "nowhere"], &[], "--addr"),
        (&["--frobnicate"], &[], "unknown flag --frobnicate"),
        (&["--publish-timeout", "soon"], &[], "--publish-timeout"),
        (&["--sync", "always"], &[], "--sync"),
        (&[], &[("SMOLCHAT_MAX_ROOMS", "lots")], "--max-rooms"),
        (&["--memory-limit", "0"], &[], "--memory-limit"),
        (
            &["--memory-limit", "12XB"],
            &[],
            "expected a size like 64MiB",
        ),
        (
            &["--memory-limit", "1KiB"],
            &[],
            "cannot hold one message of --max-message-bytes 4096; give at least",
        ),
        (&[], &[("SMOLCHAT_MEMORY_LIMIT", "lots")], "--memory-limit"),
        (
            &["--max-connections-per-ip", "0"],
            &[],
            "--max-connections-per-ip",
        ),
    ] {
        let out = smolchat(args, env);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.starts_with("smolchat: ") && err.contains(needle),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
}

#[test]
fn flags_can_come_from_the_environment() {
    let s = Server::start_env(&[], &[("SMOLCHAT_REPLAY", "1"), ("SMOLCHAT_RATE", "0")]);
    for i in 0..3 {
        s.say("e", "a", &i.to_string());
    }
    let mut sse = s.sse("/rooms/e/events");
    sse.until("hello");
    assert_eq!(
        sse.next_event().id.as_deref(),
        Some("3"),
        "SMOLCHAT_REPLAY=1 replays one message"
    );
}

#[test]
fn a_busy_port_exits_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = smolchat(&["--addr", &addr], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("cannot listen"));
}

fn graceful(signal: &str) {
    let mut s = Server::start(&[]);
    let mut streams: Vec<_> = (0..3)
        .map(|i| s.sse(&format!("/rooms/r{i}/events")))
        .collect();
    for sse in &mut streams {
        sse.until("hello");
    }
    let idle = s.connect();
    // A keep-alive connection between requests: it has waited for input
    // before (the server's watch of the stop signal is registered) and
    // waits again.
    let mut kept = s.connect();
    for _ in 0..2 {
        kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let res = read_response(&mut BufReader::new(&kept)).expect("answer");
        assert_eq!(res.status, 200);
    }
    let sent = Instant::now();
    s.signal(signal);
    for sse in &mut streams {
        let ev = sse.until("shutdown");
        let retry = ev.retry.expect("shutdown carries retry");
        assert!((1000..5000).contains(&retry), "retry {retry}");
        assert!(sse.next().is_none(), "stream ends after shutdown");
        assert!(sse.ended, "body ended with the last chunk");
    }
    // Natively this takes milliseconds; the bound is for a loaded machine
    // under qemu, far below a hang or a wait for the streams' clients.
    let status = s.wait_exit(WAIT).expect("exited");
    assert!(status.success(), "{status:?}");
    assert!(sent.elapsed() < WAIT);
    // Both idle connections were closed by the server when the signal
    // came, not left for the drain's deadline (1.5 s; under qemu on a
    // loaded machine the streams alone may take that long to end).
    let left: Vec<_> = s
        .stderr_to_end()
        .into_iter()
        .filter(|l| l.contains("still open"))
        .collect();
    assert!(left.is_empty() || support::emulated(), "{left:?}");
    drop(idle);
}

#[test]
fn sigterm_ends_streams_and_exits_0_within_2s() {
    graceful("TERM");
}

#[test]
fn sigint_ends_streams_and_exits_0_within_2s() {
    graceful("INT");
}

#[test]
fn the_ready_line_names_the_real_port() {
    let s = Server::start(&[]);
    assert_ne!(s.addr.port(), 0);
    assert_eq!(s.get("/healthz").status, 200);
}

#[test]
fn regression_sigterm_right_after_the_ready_line_is_a_clean_stop() {
    // The ready line used to come before the signal handlers: a SIGTERM
    // sent on seeing it could kill the process by the default action.
    for _ in 0..10 {
        let mut s = Server::start(&[]);
        s.signal("TERM");
        let status = s.wait_exit(WAIT).expect("exited");
        assert!(status.success(), "{status:?}");
    }
}
