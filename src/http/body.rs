//! Decoding a POST body into a user and a text, for the three content types
//! the SPEC accepts.
//!
//! A pure function over the content type, the body bytes and the two other
//! places a user name may come from (`?user=` and `X-Chat-User`), so every
//! rule is tested without a socket. The size limit is enforced before this
//! runs, while the body is read.

use serde::Deserialize;

use super::reply::ApiError;
use crate::message::UserName;

/// A decoded post, before transforms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Post {
    /// Who posts.
    pub user: UserName,
    /// What they wrote, with CRLF turned into LF.
    pub text: String,
}

#[derive(Deserialize)]
struct JsonPost {
    text: Option<serde_json::Value>,
    user: Option<serde_json::Value>,
}

/// The body kinds we accept, from the `Content-Type` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Json,
    Form,
    Plain,
}

fn kind(content_type: Option<&str>) -> Result<Kind, ApiError> {
    let Some(ct) = content_type else {
        return Ok(Kind::Plain);
    };
    let mut parts = ct.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    for param in parts {
        let (k, v) = param.split_once('=').unwrap_or((param, ""));
        if k.trim().eq_ignore_ascii_case("charset") {
            let v = v.trim().trim_matches('"');
            if !v.eq_ignore_ascii_case("utf-8") && !v.eq_ignore_ascii_case("utf8") {
                return Err(ApiError::UnsupportedMediaType);
            }
        }
    }
    let is = |name: &str| essence.eq_ignore_ascii_case(name);
    if is("application/json") {
        Ok(Kind::Json)
    } else if is("application/x-www-form-urlencoded") {
        Ok(Kind::Form)
    } else if is("text/plain") || essence.is_empty() {
        Ok(Kind::Plain)
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

/// Decodes a post body.
///
/// The user comes from the body (JSON `user`, form `user`), else `?user=`,
/// else `X-Chat-User`, else `anonymous`.
///
/// # Examples
///
/// ```
/// use smolchat::http::body::decode;
///
/// let p = decode(Some("application/json"), br#"{"user":"ana","text":"hi"}"#, None, None).unwrap();
/// assert_eq!((p.user.as_str(), p.text.as_str()), ("ana", "hi"));
///
/// // What `curl -d 'hello world' URL` sends: a form body with no text field.
/// let p = decode(Some("application/x-www-form-urlencoded"), b"hello world", None, None).unwrap();
/// assert_eq!((p.user.as_str(), p.text.as_str()), ("anonymous", "hello world"));
///
/// let p = decode(Some("text/plain"), b"hi", Some("bob"), None).unwrap();
/// assert_eq!(p.user.as_str(), "bob");
/// ```
pub fn decode(
    content_type: Option<&str>,
    body: &[u8],
    query_user: Option<&str>,
    header_user: Option<&str>,
) -> Result<Post, ApiError> {
    let kind = kind(content_type)?;
    let body = std::str::from_utf8(body)
        .map_err(|_| ApiError::BadRequest("body is not valid utf-8".into()))?;
    let (text, body_user) = match kind {
        Kind::Plain => (body.to_string(), None),
        Kind::Json => {
            let post: JsonPost = serde_json::from_str(body)
                .map_err(|e| ApiError::BadRequest(format!("invalid json: {e}")))?;
            let text = match post.text {
                Some(serde_json::Value::String(s)) => s,
                Some(_) => return Err(ApiError::BadRequest("\"text\" must be a string".into())),
                None => return Err(ApiError::BadRequest("missing \"text\"".into())),
            };
            let user = match post.user {
                Some(serde_json::Value::String(s)) => Some(s),
                None | Some(serde_json::Value::Null) => None,
                Some(_) => return Err(ApiError::BadRequest("\"user\" must be a string".into())),
            };
            (text, user)
        }
        Kind::Form => {
            let mut text = None;
            let mut user = None;
            for (k, v) in form_urlencoded::parse(body.as_bytes()) {
                match &*k {
                    "text" if text.is_none() => text = Some(v.into_owned()),
                    "user" if user.is_none() => user = Some(v.into_owned()),
                    _ => {}
                }
            }
            match text {
                Some(t) => (t, user),
                // `curl -d 'hello world'`: the whole body is the text.
                None => (body.to_string(), None),
            }
        }
    };
    // An empty name (a form whose name box was left blank) means anonymous.
    let user = match given(body_user.as_deref())
        .or(given(query_user))
        .or(given(header_user))
    {
        Some(u) => UserName::parse(u).map_err(|e| ApiError::BadRequest(e.to_string()))?,
        None => UserName::anonymous(),
    };
    Ok(Post {
        user,
        text: clean_text(&text)?,
    })
}

/// The `user` and `password` of a sign-in: a form or JSON body.
pub fn credentials(content_type: Option<&str>, body: &[u8]) -> Result<(String, String), ApiError> {
    let body = std::str::from_utf8(body)
        .map_err(|_| ApiError::BadRequest("body is not valid utf-8".into()))?;
    let missing = || ApiError::BadRequest("give user and password".into());
    match kind(content_type)? {
        Kind::Json => {
            #[derive(Deserialize)]
            struct Login {
                user: String,
                password: String,
            }
            let l: Login = serde_json::from_str(body)
                .map_err(|e| ApiError::BadRequest(format!("invalid json: {e}")))?;
            Ok((l.user, l.password))
        }
        _ => {
            let mut user = None;
            let mut password = None;
            for (k, v) in form_urlencoded::parse(body.as_bytes()) {
                match &*k {
                    "user" => user = Some(v.into_owned()),
                    "password" => password = Some(v.into_owned()),
                    _ => {}
                }
            }
            Ok((user.ok_or_else(missing)?, password.ok_or_else(missing)?))
        }
    }
}

fn given(user: Option<&str>) -> Option<&str> {
    user.filter(|u| !u.trim().is_empty())
}

/// The domain's text rules ([`crate::message::clean_text`]), as a `400`.
fn clean_text(text: &str) -> Result<String, ApiError> {
    crate::message::clean_text(text).map_err(|e| ApiError::BadRequest(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
    const JSON: Option<&str> = Some("application/json; charset=utf-8");

    fn ok(ct: Option<&str>, body: &str) -> (String, String) {
        let p = decode(ct, body.as_bytes(), None, None).unwrap();
        (p.user.to_string(), p.text)
    }

    fn bad(ct: Option<&str>, body: &[u8]) -> ApiError {
        decode(ct, body, None, None).unwrap_err()
    }

    #[test]
    fn forms_with_and_without_a_text_field() {
        assert_eq!(
            ok(FORM, "user=ana&text=hi+there%21"),
            ("ana".into(), "hi there!".into())
        );
        assert_eq!(
            ok(FORM, "text=%F0%9F%99%82"),
            ("anonymous".into(), "🙂".into())
        );
        assert_eq!(
            ok(FORM, "hello world"),
            ("anonymous".into(), "hello world".into())
        );
        assert_eq!(
            ok(FORM, "c++ is 100% fun"),
            ("anonymous".into(), "c++ is 100% fun".into())
        );
    }

    #[test]
    fn json_bodies() {
        assert_eq!(
            ok(JSON, r#"{"text":"hi","user":"ana","extra":1}"#),
            ("ana".into(), "hi".into())
        );
        assert_eq!(
            ok(JSON, r#"{"text":"hi","user":null}"#),
            ("anonymous".into(), "hi".into())
        );
        assert!(
            matches!(bad(JSON, b"{"), ApiError::BadRequest(m) if m.starts_with("invalid json"))
        );
        assert!(
            matches!(bad(JSON, br#"{"text":3}"#), ApiError::BadRequest(m) if m.contains("string"))
        );
        assert!(
            matches!(bad(JSON, br#"{"user":"a"}"#), ApiError::BadRequest(m) if m.contains("missing"))
        );
        assert!(matches!(bad(JSON, br#"[1]"#), ApiError::BadRequest(_)));
    }

    #[test]
    fn plain_text_takes_the_user_from_the_query_then_the_header() {
        let p = decode(Some("text/plain"), b"hi", Some("q"), Some("h")).unwrap();
        assert_eq!(p.user.as_str(), "q");
        let p = decode(None, b"hi", None, Some("h")).unwrap();
        assert_eq!(p.user.as_str(), "h");
        let p = decode(FORM, b"user=body&text=x", Some("q"), None).unwrap();
        assert_eq!(p.user.as_str(), "body");
    }

    #[test]
    fn bad_bodies_get_400_and_other_types_415() {
        assert_eq!(
            bad(Some("text/plain"), b""),
            ApiError::BadRequest("empty text".into())
        );
        assert_eq!(
            bad(Some("text/plain"), b" \n\t "),
            ApiError::BadRequest("empty text".into())
        );
        assert_eq!(
            bad(Some("text/plain"), b"\xff\xfe"),
            ApiError::BadRequest("body is not valid utf-8".into())
        );
        assert!(matches!(
            bad(Some("text/plain"), b"bell\x07"),
            ApiError::BadRequest(_)
        ));
        assert!(matches!(
            bad(FORM, b"text=&user=ana"),
            ApiError::BadRequest(_)
        ));
        assert!(matches!(
            decode(None, b"hi", Some(&"x".repeat(40)), None),
            Err(ApiError::BadRequest(m)) if m.contains("user name")
        ));
        for ct in [
            "application/xml",
            "multipart/form-data; boundary=x",
            "text/plain; charset=latin1",
            "image/png",
        ] {
            assert_eq!(bad(Some(ct), b"hi"), ApiError::UnsupportedMediaType, "{ct}");
        }
    }

    #[test]
    fn crlf_becomes_lf_and_tabs_stay() {
        assert_eq!(
            ok(None, "a\r\nb\tc"),
            ("anonymous".into(), "a\nb\tc".into())
        );
    }
}
