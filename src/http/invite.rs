//! The page's "Invite a phone": `GET /rooms/{room}/invite` says which URL
//! opens the room (`{"url": "http://192.168.1.23:8080/#kitchen"}`), and
//! `GET /rooms/{room}/invite.svg` is its QR code.
//!
//! The URL is the one the asker used (`Host`, and `https` when the server
//! or a trusted proxy says so), except when that is this machine's own
//! name (`localhost`, `127.0.0.1`, `0.0.0.0`): a phone cannot open those,
//! so the server's first address on its network stands in
//! ([`crate::config::Config::lan_urls`]).

use std::net::IpAddr;

use http_types::{Request, Response};

use crate::app::App;
use crate::message::RoomName;

/// The URL that opens `room` for someone else, as seen from `req`.
pub(crate) fn url(app: &App, req: &Request, room: &RoomName) -> String {
    let host = super::header(req, "host").unwrap_or(super::head::DEFAULT_HOST);
    let https = app.config.tls.is_some()
        || (app.config.trust_proxy
            && super::header(req, "x-forwarded-proto")
                .is_some_and(|p| p.eq_ignore_ascii_case("https")));
    let scheme = if https { "https" } else { "http" };
    let base = match app.config.lan_urls.first() {
        Some(lan) if this_machine(host) => lan.clone(),
        _ => format!("{scheme}://{host}"),
    };
    format!("{base}/#{room}")
}

/// Whether `host` (a `Host` value the guard accepted) names this machine
/// only: `localhost`, a loopback or the unspecified address.
fn this_machine(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

/// `{"url": ...}`.
pub(crate) fn json(app: &App, req: &Request, room: &RoomName) -> Response {
    let mut res = super::reply::json(200, &serde_json::json!({ "url": url(app, req, room) }));
    res.insert_header("cache-control", "no-store");
    res
}

/// The QR code of the URL, as SVG. Its own CSP forbids everything, so
/// opened on its own it can run nothing.
pub(crate) fn svg(app: &App, req: &Request, room: &RoomName) -> Response {
    // A room name is at most 64 characters and a Host at most 255: always
    // fits a QR code.
    let Some(svg) = crate::invite::svg(&url(app, req, room)) else {
        return super::reply::ApiError::BadRequest("address too long for a qr code".into())
            .response();
    };
    let mut res = super::reply::response(200);
    res.set_body(svg);
    res.insert_header("content-type", "image/svg+xml");
    res.insert_header("cache-control", "no-store");
    res.insert_header(
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_are_this_machine() {
        for h in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1",
            "127.0.1.1:80",
            "[::1]:8080",
            "0.0.0.0:8080",
            "[::]",
        ] {
            assert!(this_machine(h), "{h}");
        }
        for h in [
            "pi.local:8080",
            "192.168.1.23",
            "[fd00::5]:8080",
            "chat.example",
        ] {
            assert!(!this_machine(h), "{h}");
        }
    }
}
