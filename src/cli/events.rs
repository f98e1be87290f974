//! The client side of Server-Sent Events for `smolchat tail`: body bytes
//! in, events out, as a browser's `EventSource` reads them (the HTML
//! standard's parsing rules, minus the parts smolchat never sends).
//!
//! A pure state machine over bytes, tested without a socket. Bytes come
//! from the network, so a line is bounded: one longer than [`MAX_LINE`]
//! is an error, not a growing buffer.

/// Longest line accepted: a message is at most a few KiB of JSON.
pub(crate) const MAX_LINE: usize = 256 * 1024;

/// One event as dispatched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Event {
    /// `event:`, or `message` when none was given.
    pub(crate) name: String,
    /// The `data:` lines joined with `\n`.
    pub(crate) data: String,
    /// The `id:` of this event, when it had one.
    pub(crate) id: Option<String>,
}

/// Why the bytes are not an event stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// A line longer than [`MAX_LINE`].
    LineTooLong,
    /// A line that is not UTF-8.
    NotUtf8,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ParseError::LineTooLong => "event stream line too long",
            ParseError::NotUtf8 => "event stream is not utf-8",
        })
    }
}

/// Splits a stream body into events.
#[derive(Debug, Default)]
pub(crate) struct Parser {
    line: Vec<u8>,
    /// A CR ended the last line; a LF right after it is part of that end.
    after_cr: bool,
    event: Option<String>,
    data: Option<String>,
    id: Option<String>,
    /// The last `retry:` value, in milliseconds.
    pub(crate) retry: Option<u64>,
}

impl Parser {
    /// Feeds body bytes; returns the events they complete.
    ///
    /// ```text
    /// "event: message\nid: 7\ndata: {..}\n\n"  ->  [Event { name: "message", id: Some("7"), data: "{..}" }]
    /// ```
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Event>, ParseError> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    let line = String::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
                    if let Some(ev) = self.line(&line) {
                        out.push(ev);
                    }
                }
                _ if self.line.len() >= MAX_LINE => return Err(ParseError::LineTooLong),
                _ => self.line.push(b),
            }
        }
        Ok(out)
    }

    /// Handles one complete line.
    fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            let data = self.data.take();
            let name = self.event.take();
            let id = self.id.take();
            // An event without data is not dispatched (but its id counts,
            // which smolchat never relies on).
            return data.map(|data| Event {
                name: name.unwrap_or_else(|| "message".into()),
                data,
                id,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            "retry" => {
                if let Ok(ms) = value.parse() {
                    self.retry = Some(ms);
                }
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(bytes: &[u8]) -> Vec<Event> {
        Parser::default().feed(bytes).unwrap()
    }

    #[test]
    fn events_are_split_on_blank_lines_whatever_the_reads() {
        let stream = b"retry: 2000\n\nevent: hello\ndata: {\"online\":1}\n\n: ping\n\nevent: message\nid: 7\ndata: {\"id\":7}\n\n";
        let whole = all(stream);
        assert_eq!(
            whole,
            vec![
                Event {
                    name: "hello".into(),
                    data: "{\"online\":1}".into(),
                    id: None
                },
                Event {
                    name: "message".into(),
                    data: "{\"id\":7}".into(),
                    id: Some("7".into())
                },
            ]
        );
        for cut in 0..stream.len() {
            let mut p = Parser::default();
            let mut got = p.feed(&stream[..cut]).unwrap();
            got.extend(p.feed(&stream[cut..]).unwrap());
            assert_eq!(got, whole, "cut at {cut}");
            assert_eq!(p.retry, Some(2000));
        }
    }

    #[test]
    fn cr_lf_and_multi_line_data() {
        let got = all(b"data: a\r\ndata:b\r\n\r\ndata\n\n");
        assert_eq!(got[0].data, "a\nb");
        assert_eq!(got[0].name, "message");
        assert_eq!(got[1].data, "");
    }

    #[test]
    fn hostile_bytes_are_errors_not_growth() {
        let mut p = Parser::default();
        assert_eq!(
            p.feed(&vec![b'x'; MAX_LINE + 1]),
            Err(ParseError::LineTooLong)
        );
        assert_eq!(
            Parser::default().feed(b"data: \xff\n\n"),
            Err(ParseError::NotUtf8)
        );
    }
}
