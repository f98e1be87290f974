//! Target `body`: POST body decoding for every content type, with the user
//! name from the body, `?user=` or `X-Chat-User`, as the POST handler calls
//! it.
//!
//! Input: a flag byte (bit 0: a `Content-Type` is sent, bit 1: `?user=`,
//! bit 2: `X-Chat-User`), then `content-type NUL query-user NUL
//! header-user NUL body`. The header user goes through [`percent_decode`]
//! first, as in `http::post`. Checked:
//!
//! - [`percent_decode`] leaves a value without `%` as it is, and undoes a
//!   reference percent-encoding of any text;
//! - an accepted post has a valid user name (parsing it again gives it
//!   back) taken from the first place that names one, and a text with no
//!   CR, no other control character but LF and tab, not blank, equal to
//!   what the content type says the text is (the body; JSON `text`; the
//!   form's first `text`, else the whole body), CRLF turned into LF;
//! - only a content type that is sent can be refused with 415;
//! - room names: [`RoomName::parse`] accepts exactly 1 to 64 bytes of
//!   `[A-Za-z0-9_.-]` (the query user is tried as a room name too).

use smolchat::http::body::{decode, Post};
use smolchat::http::percent_decode;
use smolchat::http::reply::ApiError;
use smolchat::message::{RoomName, UserName};

use crate::input::{fields, header};

/// Checks one input.
pub fn check(data: &[u8]) {
    let ([flags], rest) = header::<1>(data);
    let parts = fields(rest, 4);
    let field = |i: usize, bit: u8| {
        (flags & bit != 0)
            .then(|| String::from_utf8_lossy(parts.get(i).copied().unwrap_or_default()))
    };
    let content_type = field(0, 1);
    let query_user = field(1, 2);
    let header_raw = field(2, 4);
    let body = parts.get(3).copied().unwrap_or_default();

    let header_user = header_raw.as_deref().map(|h| {
        let decoded = percent_decode(h);
        if !h.contains('%') {
            assert_eq!(decoded, h, "a value without % changed");
        }
        assert_eq!(percent_decode(&percent_encode(h)), h);
        decoded
    });
    check_room_name(query_user.as_deref().unwrap_or_default());

    let got = decode(
        content_type.as_deref(),
        body,
        query_user.as_deref(),
        header_user.as_deref(),
    );
    match got {
        Ok(post) => check_post(
            &post,
            content_type.as_deref(),
            body,
            query_user.as_deref(),
            header_user.as_deref(),
        ),
        Err(ApiError::UnsupportedMediaType) => assert!(content_type.is_some()),
        Err(ApiError::BadRequest(m)) => assert!(!m.is_empty()),
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

fn check_post(
    post: &Post,
    content_type: Option<&str>,
    body: &[u8],
    query_user: Option<&str>,
    header_user: Option<&str>,
) {
    let text = &post.text;
    assert!(!text.trim().is_empty());
    assert!(!text.contains('\r'), "{text:?}");
    assert!(!text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t'));
    assert_eq!(
        UserName::parse(post.user.as_str()).as_ref(),
        Ok(&post.user),
        "a user name that does not parse again"
    );

    let body = std::str::from_utf8(body).expect("an accepted body is utf-8");
    let essence = content_type
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let (want_text, body_user) = match essence.as_str() {
        "application/json" => {
            // Only `text` and `user` are read: other members are skipped
            // unchecked, as any JSON reader may (RFC 8259 section 6 lets it
            // limit numbers; 1e550 in an unknown member is no error).
            #[derive(serde::Deserialize)]
            struct Fields {
                text: Option<serde_json::Value>,
                user: Option<serde_json::Value>,
            }
            let v: Fields = serde_json::from_str(body).expect("accepted json");
            let user = v.user.as_ref().and_then(|u| u.as_str()).map(str::to_string);
            let text = v.text.as_ref().and_then(|t| t.as_str()).expect("a text");
            (text.to_string(), user)
        }
        "application/x-www-form-urlencoded" => {
            let pairs: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let first = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
            match first("text") {
                Some(t) => (t, first("user")),
                None => (body.to_string(), None),
            }
        }
        "text/plain" | "" => (body.to_string(), None),
        other => panic!("accepted a body of type {other:?}"),
    };
    // CRLF and a lone CR become LF (message::clean_text).
    assert_eq!(*text, want_text.replace("\r\n", "\n").replace('\r', "\n"));

    let named = |u: Option<&str>| u.filter(|u| !u.trim().is_empty()).map(str::to_string);
    let want_user = named(body_user.as_deref())
        .or(named(query_user))
        .or(named(header_user))
        .unwrap_or_else(|| "anonymous".to_string());
    assert_eq!(post.user.as_str(), want_user.trim());
}

fn check_room_name(s: &str) {
    let valid = (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    match RoomName::parse(s) {
        Ok(r) => assert!(valid && r.as_str() == s, "{s:?}"),
        Err(_) => assert!(!valid, "{s:?}"),
    }
}

/// Every byte as `%XX`: a reference encoder for [`percent_decode`].
fn percent_encode(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}
