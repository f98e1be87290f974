//! Every error the API answers with, in one type, and the one `match` that
//! turns it into a status, `Retry-After` and a JSON body. Also CORS.
//!
//! Error messages are lowercase with no trailing period, and every error
//! body is `{"error": "..."}` as the SPEC promises.

use http_types::{Response, StatusCode};

use super::head::HeadError;

/// An API error: what went wrong, answered as JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiError {
    /// 400 with a reason.
    BadRequest(String),
    /// A request head the guard refused (400, 417, 431, 501 or 505).
    Head(HeadError),
    /// 404.
    NotFound,
    /// 405, with the methods the path does allow.
    MethodNotAllowed(&'static str),
    /// 413: the body is over `--max-message-bytes`.
    TooLarge(usize),
    /// 415.
    UnsupportedMediaType,
    /// 422: a transform refused the message.
    Refused(String),
    /// 429: the client posts faster than `--rate`.
    RateLimited {
        /// Seconds until a post will be accepted.
        retry_after: u64,
    },
    /// 503: the room's slowest subscriber stayed `--buffer` messages behind
    /// for `--publish-timeout`.
    Congested {
        /// Seconds to wait before retrying.
        retry_after: u64,
    },
    /// 503: `--max-rooms` rooms exist.
    TooManyRooms,
    /// 503: `--max-connections` connections are open.
    TooManyConnections,
    /// 503: the server is stopping.
    ShuttingDown,
    /// 408: the request did not arrive within `--header-timeout`.
    Timeout,
    /// 503: the database could not store the message.
    Storage(String),
    /// 503: the database could not be read (history, a room's state).
    StoreRead(String),
    /// 503: the memory budget is full of messages that cannot be evicted
    /// yet (queued for slow subscribers).
    MemoryFull,
    /// 429: this address already has `--max-connections-per-ip` open.
    TooManyFromAddress,
    /// 401: nobody is signed in and the room needs someone, or a credential
    /// is wrong. Carries `WWW-Authenticate`.
    Unauthorized(String),
    /// 403: signed in, but not allowed; or a cross-site write.
    Forbidden(String),
    /// 410: the message is deleted already.
    Gone,
    /// 400: plain HTTP sent to the HTTPS port.
    PlainHttpOnTls,
    /// 503: Redis (`--redis`) cannot be reached; the message was not
    /// acknowledged.
    StoreUnavailable,
    /// 409: a post with the same `Idempotency-Key` is still in flight.
    InProgress,
}

impl ApiError {
    /// The status code.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) | ApiError::PlainHttpOnTls => 400,
            ApiError::Head(h) => h.status(),
            ApiError::Unauthorized(_) => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound => 404,
            ApiError::Gone => 410,
            ApiError::InProgress => 409,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::Timeout => 408,
            ApiError::TooLarge(_) => 413,
            ApiError::UnsupportedMediaType => 415,
            ApiError::Refused(_) => 422,
            ApiError::RateLimited { .. } | ApiError::TooManyFromAddress => 429,
            ApiError::Congested { .. }
            | ApiError::TooManyRooms
            | ApiError::TooManyConnections
            | ApiError::ShuttingDown
            | ApiError::Storage(_)
            | ApiError::StoreRead(_)
            | ApiError::StoreUnavailable
            | ApiError::MemoryFull => 503,
        }
    }

    /// The message in the JSON body.
    pub fn message(&self) -> String {
        match self {
            ApiError::BadRequest(m)
            | ApiError::Refused(m)
            | ApiError::Unauthorized(m)
            | ApiError::Forbidden(m) => m.clone(),
            ApiError::Head(h) => h.message().to_string(),
            ApiError::NotFound => "not found".into(),
            ApiError::Gone => "the message is deleted already".into(),
            ApiError::PlainHttpOnTls => {
                "this port speaks HTTPS: use https:// in the address".into()
            }
            ApiError::MethodNotAllowed(allow) => format!("method not allowed; use {allow}"),
            ApiError::Timeout => "request not received in time".into(),
            ApiError::TooLarge(limit) => format!("body too large (limit {limit} bytes)"),
            ApiError::UnsupportedMediaType => {
                "unsupported content type; use application/json, application/x-www-form-urlencoded or text/plain (utf-8)"
                    .into()
            }
            ApiError::RateLimited { retry_after } => format!("too many posts; retry in {retry_after} s"),
            ApiError::Congested { retry_after } => {
                format!("room is congested: a subscriber is too far behind; message not sent, retry in {retry_after} s")
            }
            ApiError::TooManyRooms => "too many rooms".into(),
            ApiError::TooManyConnections => "too many connections".into(),
            ApiError::ShuttingDown => "server is shutting down".into(),
            ApiError::Storage(e) => format!("could not store the message, it was not sent: {e}"),
            ApiError::StoreRead(e) => format!("could not read history: {e}"),
            ApiError::MemoryFull => "server memory budget reached; try again".into(),
            ApiError::StoreUnavailable => crate::history::UNAVAILABLE.into(),
            ApiError::TooManyFromAddress => "too many connections from your address".into(),
            ApiError::InProgress => {
                "a post with this Idempotency-Key is still in progress; retry".into()
            }
        }
    }

    /// The `Retry-After` value in seconds, for the errors that have one.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after } | ApiError::Congested { retry_after } => {
                Some(*retry_after)
            }
            ApiError::TooManyConnections
            | ApiError::ShuttingDown
            | ApiError::TooManyRooms
            | ApiError::TooManyFromAddress
            | ApiError::InProgress => Some(1),
            ApiError::MemoryFull | ApiError::StoreUnavailable => Some(2),
            ApiError::Storage(_) | ApiError::StoreRead(_) => Some(5),
            _ => None,
        }
    }

    /// The full response.
    pub fn response(&self) -> Response {
        let mut res = json(
            self.status(),
            &serde_json::json!({ "error": self.message() }),
        );
        if let Some(secs) = self.retry_after() {
            res.insert_header("retry-after", secs.to_string());
        }
        if let ApiError::MethodNotAllowed(allow) = self {
            res.insert_header("allow", *allow);
        }
        if let ApiError::Unauthorized(_) = self {
            res.insert_header("www-authenticate", "Bearer realm=\"smolchat\"");
        }
        res
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status(), self.message())
    }
}

/// Headers every response carries, whatever it is: browsers must not
/// guess a type other than the one sent (`nosniff`: a message or a JSON
/// error never runs as a script or a page), and no address leaks to other
/// sites through `Referer`. The page adds a CSP with
/// `frame-ancestors 'none'` (no framing, no clickjacking).
pub const SECURITY_HEADERS: [(&str, &str); 2] = [
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
];

/// Adds [`SECURITY_HEADERS`] to `res`.
pub fn secure(res: &mut Response) {
    for (name, value) in SECURITY_HEADERS {
        res.insert_header(name, value);
    }
}

/// A response with a compact JSON body.
pub fn json(status: u16, value: &impl serde::Serialize) -> Response {
    // Serializing our own plain types cannot fail.
    json_bytes(status, serde_json::to_vec(value).unwrap_or_default())
}

/// A new response with `status` (500 if it is not one), no fields and no
/// body. It is a copy of one made once per thread: `Response::new` makes
/// two channels (for trailers and upgrades, which smolchat never uses),
/// ~2,000 instructions per response; a copy shares the first one's.
pub fn response(status: u16) -> Response {
    thread_local! {
        static BLANK: Response = Response::new(StatusCode::Ok);
    }
    copy_with_status(&BLANK, status)
}

/// A copy of this thread's `blank` with `status` (500 if it is not one).
fn copy_with_status(blank: &'static std::thread::LocalKey<Response>, status: u16) -> Response {
    let mut res = blank.with(Response::clone);
    res.set_status(StatusCode::try_from(status).unwrap_or(StatusCode::InternalServerError));
    res
}

/// A JSON response from bytes that are JSON already.
///
/// A copy of a blank JSON response made once per thread, with its
/// `content-type` and `cache-control` already in: copying a field map
/// copies its table, where inserting the two fields hashed their names
/// (SipHash) and formatted the type, for every `201` a post gets.
pub fn json_bytes(status: u16, body: Vec<u8>) -> Response {
    thread_local! {
        static BLANK_JSON: Response = {
            let mut res = Response::new(StatusCode::Ok);
            res.set_content_type(http_types::mime::JSON);
            res.insert_header(http_types::headers::CACHE_CONTROL, "no-store");
            res
        };
    }
    let mut res = copy_with_status(&BLANK_JSON, status);
    // The type is in the fields already, so `set_body` keeps it.
    let mut body = http_types::Body::from_bytes(body);
    body.set_mime(http_types::mime::JSON);
    res.set_body(body);
    res
}

/// A JSON answer that has only the fields every JSON answer has: its type,
/// `cache-control: no-store`, and those written with every head.
///
/// [`super::conn`] writes it straight to bytes, the head from a table
/// (status line, then the fields in the order the encoder sorts them);
/// through a [`Response`] the same `201` cost a copy of a hashed field
/// map, a walk and a sort of it, and freeing it all, ~3,500 instructions
/// of a post's ~31,000. [`Json::into_response`] is that `Response`, for an
/// answer that gets more fields (CORS, HSTS) and for the tests, which
/// check the two give the same bytes.
#[derive(Debug)]
pub struct Json {
    /// The status.
    pub status: StatusCode,
    /// The JSON.
    pub body: Vec<u8>,
}

impl Json {
    /// An answer of `status` with `body`, which is JSON already.
    pub fn new(status: StatusCode, body: Vec<u8>) -> Self {
        Json { status, body }
    }

    /// The same answer as a [`Response`].
    pub fn into_response(self) -> Response {
        json_bytes(self.status.into(), self.body)
    }
}

/// CORS policy from `--allow-origin`.
#[derive(Clone, Debug, Default)]
pub struct Cors {
    any: bool,
    origins: Vec<String>,
}

impl Cors {
    /// A policy allowing `origins` (`*` allows any).
    pub fn new(origins: &[String]) -> Self {
        Cors {
            any: origins.iter().any(|o| o == "*"),
            origins: origins.to_vec(),
        }
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`.
    ///
    /// # Examples
    ///
    /// ```
    /// use smolchat::http::reply::Cors;
    ///
    /// let cors = Cors::new(&["https://a.example".to_string()]);
    /// assert_eq!(cors.allow(Some("https://a.example")), Some("https://a.example"));
    /// assert_eq!(cors.allow(Some("https://evil.example")), None);
    /// assert_eq!(Cors::new(&["*".to_string()]).allow(None), Some("*"));
    /// ```
    pub fn allow<'a>(&'a self, origin: Option<&'a str>) -> Option<&'a str> {
        if self.any {
            return Some("*");
        }
        let origin = origin?;
        self.origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
            .then_some(origin)
    }

    /// Adds the CORS headers for `origin` to a response.
    pub fn apply(&self, origin: Option<&str>, res: &mut Response) {
        if let Some(allow) = self.allow(origin) {
            // `allow` is `*` or equal to a configured, validated origin.
            res.insert_header("access-control-allow-origin", allow);
            res.insert_header("access-control-expose-headers", "retry-after");
            if !self.any {
                res.append_header("vary", "origin");
            }
        }
    }

    /// Adds the preflight headers for `origin` to a response.
    pub fn apply_preflight(&self, origin: Option<&str>, res: &mut Response) {
        if self.allow(origin).is_some() {
            self.apply(origin, res);
            res.insert_header("access-control-allow-methods", "GET, POST, OPTIONS");
            res.insert_header(
                "access-control-allow-headers",
                "content-type, x-chat-user, last-event-id, idempotency-key",
            );
            res.insert_header("access-control-max-age", "600");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_response_has_its_type_and_no_store_once_each() {
        for status in [201, 400, 999] {
            let mut res = json_bytes(status, b"{}".to_vec());
            let want = if status == 999 { 500 } else { status };
            assert_eq!(u16::from(res.status()), want);
            let field = |res: &Response, name: &str| -> Vec<String> {
                res.header(name)
                    .map(|v| v.iter().map(|v| v.as_str().to_owned()).collect())
                    .unwrap_or_default()
            };
            assert_eq!(field(&res, "content-type"), ["application/json"]);
            assert_eq!(field(&res, "cache-control"), ["no-store"]);
            assert_eq!(res.len(), Some(2));
            // A field added to one copy is not in the next.
            res.insert_header("x-test", "1");
            assert!(json_bytes(status, Vec::new()).header("x-test").is_none());
        }
    }

    #[test]
    fn every_error_is_json_with_its_status() {
        let cases = [
            (ApiError::BadRequest("empty text".into()), 400),
            (ApiError::NotFound, 404),
            (ApiError::MethodNotAllowed("GET, POST"), 405),
            (ApiError::TooLarge(4096), 413),
            (ApiError::UnsupportedMediaType, 415),
            (ApiError::Refused("censor: no".into()), 422),
            (ApiError::RateLimited { retry_after: 2 }, 429),
            (ApiError::Congested { retry_after: 1 }, 503),
            (ApiError::Head(HeadError::TooLarge), 431),
        ];
        for (e, status) in cases {
            let res = e.response();
            assert_eq!(u16::from(res.status()), status);
            assert_eq!(
                res.header("content-type").unwrap().as_str(),
                "application/json"
            );
        }
    }

    #[test]
    fn rate_and_congestion_carry_retry_after() {
        let res = ApiError::RateLimited { retry_after: 3 }.response();
        assert_eq!(res.header("retry-after").unwrap().as_str(), "3");
        let res = ApiError::Congested { retry_after: 1 }.response();
        assert_eq!(res.header("retry-after").unwrap().as_str(), "1");
        assert!(ApiError::NotFound
            .response()
            .header("retry-after")
            .is_none());
        assert_eq!(
            ApiError::MethodNotAllowed("GET")
                .response()
                .header("allow")
                .unwrap()
                .as_str(),
            "GET"
        );
    }

    #[test]
    fn no_cors_headers_without_allow_origin() {
        let mut res = response(200);
        Cors::new(&[]).apply(Some("https://a.example"), &mut res);
        assert!(res.header("access-control-allow-origin").is_none());
    }
}
