//! The chat page: `static/` files embedded at compile time and served with
//! a content type, an `ETag` (answered with `304` on `If-None-Match`),
//! `Cache-Control` and a strict `Content-Security-Policy`.
//!
//! ETags are an FNV-1a hash of the file computed at compile time, so a new
//! build invalidates browser caches while an unchanged page costs one
//! round trip and no body.

use http_types::{Request, Response};

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    etag: &'static str,
}

macro_rules! asset {
    ($name:literal, $ct:literal) => {{
        const BODY: &[u8] = include_bytes!(concat!("../../static/", $name));
        const HASH: [u8; 18] = etag(BODY);
        Asset {
            name: $name,
            content_type: $ct,
            body: BODY,
            // Quoted hex is ASCII by construction.
            etag: match std::str::from_utf8(&HASH) {
                Ok(s) => s,
                Err(_) => panic!("etag is ascii"),
            },
        }
    }};
}

const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("list.js", "text/javascript; charset=utf-8"),
    asset!("render.js", "text/javascript; charset=utf-8"),
    asset!("send.js", "text/javascript; charset=utf-8"),
    asset!("stream.js", "text/javascript; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// `"` + 16 hex digits of FNV-1a 64 + `"`.
const fn etag(bytes: &[u8]) -> [u8; 18] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    let hex = b"0123456789abcdef";
    let mut out = [b'"'; 18];
    let mut j = 0;
    while j < 16 {
        out[1 + j] = hex[((h >> (60 - 4 * j)) & 0xf) as usize];
        j += 1;
    }
    out
}

/// No inline script or style, nothing from elsewhere: the page works
/// offline on a LAN and an injected tag cannot run.
const CSP: &str = "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Serves the embedded file `name`.
pub(crate) fn serve(name: &str, req: &Request) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return super::reply::ApiError::NotFound.response();
    };
    let fresh = super::fields(req, "if-none-match").is_some_and(|v| {
        v.iter().any(|v| {
            v.as_str()
                .split(',')
                .any(|t| t.trim() == asset.etag || t.trim() == "*")
        })
    });
    let mut res = super::reply::response(if fresh { 304 } else { 200 });
    if !fresh {
        res.set_body(asset.body);
    }
    res.insert_header("content-type", asset.content_type);
    res.insert_header("etag", asset.etag);
    // Revalidate every time: one cheap 304 keeps an upgraded Pi's page current.
    res.insert_header("cache-control", "no-cache");
    res.insert_header("content-security-policy", CSP);
    res.insert_header("x-content-type-options", "nosniff");
    res.insert_header("referrer-policy", "no-referrer");
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_types::{Method, Url};

    fn get(name: &str, inm: Option<&str>) -> Response {
        let mut req = Request::new(Method::Get, Url::parse("http://x/").unwrap());
        if let Some(v) = inm {
            req.insert_header("if-none-match", v);
        }
        serve(name, &req)
    }

    #[test]
    fn assets_have_type_etag_and_csp() {
        let res = get("index.html", None);
        assert_eq!(u16::from(res.status()), 200);
        assert_eq!(
            res.header("content-type").unwrap().as_str(),
            "text/html; charset=utf-8"
        );
        assert!(res
            .header("content-security-policy")
            .unwrap()
            .as_str()
            .starts_with("default-src 'self'"));
        let etag = res.header("etag").unwrap().as_str().to_string();
        assert_eq!(etag.len(), 18);
        assert_eq!(u16::from(get("index.html", Some(&etag)).status()), 304);
        assert_eq!(
            u16::from(get("index.html", Some("\"nope\", ".to_string().as_str())).status()),
            200
        );
        assert_ne!(get("app.js", None).header("etag").unwrap().as_str(), etag);
    }

    #[test]
    fn etag_hashes_differ_for_different_bytes() {
        assert_ne!(etag(b"a"), etag(b"b"));
        assert_eq!(&etag(b"")[..], b"\"cbf29ce484222325\"");
    }
}
