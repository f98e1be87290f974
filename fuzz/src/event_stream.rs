//! A reading of an event stream exactly as the WHATWG HTML standard says a
//! browser reads one ("Interpreting an event stream",
//! <https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation>),
//! written from the spec rather than from smolchat's encoder, so the `sse`
//! target can check that what smolchat sends is what `EventSource` hands a
//! page.
//!
//! It reads a whole stream at once (the fuzz target has all the bytes), so
//! a CR at the very end is a line end rather than "wait for a possible LF".

/// One dispatched event, as a `MessageEvent` would carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The event's `type`: the `event` field, or `"message"`.
    pub kind: String,
    /// The event's `data`: the `data` lines joined with LF.
    pub data: String,
    /// The event's `lastEventId`: the source's last event ID string when
    /// the event was dispatched (it persists across events).
    pub last_event_id: String,
}

/// Everything a stream told the client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stream {
    /// Events in dispatch order.
    pub events: Vec<Event>,
    /// The reconnection time the last valid `retry` field set, in ms.
    pub retry: Option<u64>,
    /// The source's last event ID string at the end of the stream.
    pub last_event_id: String,
}

/// Interprets `bytes` as a complete event stream.
pub fn parse(bytes: &[u8]) -> Stream {
    // "UTF-8 decode": invalid sequences become U+FFFD, one leading BOM goes.
    let text = String::from_utf8_lossy(bytes);
    let mut rest = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut out = Stream::default();
    let mut data = String::new();
    let mut kind = String::new();
    let mut id = String::new();
    // A line ends at CRLF, a lone LF or a lone CR. Bytes after the last
    // line end are an incomplete line: discarded with any pending event.
    while let Some(end) = rest.find(['\r', '\n']) {
        let line = &rest[..end];
        rest = if rest[end..].starts_with("\r\n") {
            &rest[end + 2..]
        } else {
            &rest[end + 1..]
        };
        if line.is_empty() {
            dispatch(&mut out, &mut data, &mut kind, &id);
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        // Field names are compared literally, with no case folding.
        match field {
            "event" => value.clone_into(&mut kind),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "id" if !value.contains('\0') => value.clone_into(&mut id),
            // "Consists of only ASCII digits": an empty value is taken as
            // not a number, as browsers do. Past u64, the time saturates.
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                out.retry = Some(value.parse().unwrap_or(u64::MAX));
            }
            _ => {}
        }
    }
    out
}

/// "Dispatch the event", for a web browser.
fn dispatch(out: &mut Stream, data: &mut String, kind: &mut String, id: &str) {
    id.clone_into(&mut out.last_event_id);
    if data.is_empty() {
        kind.clear();
        return;
    }
    if data.ends_with('\n') {
        data.pop();
    }
    out.events.push(Event {
        kind: if kind.is_empty() {
            "message".to_string()
        } else {
            std::mem::take(kind)
        },
        data: std::mem::take(data),
        last_event_id: id.to_string(),
    });
    kind.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, data: &str, id: &str) -> Event {
        Event {
            kind: kind.into(),
            data: data.into(),
            last_event_id: id.into(),
        }
    }

    fn events(s: &str) -> Vec<Event> {
        parse(s.as_bytes()).events
    }

    // The examples of the spec's section 9.2.6, one test each.

    #[test]
    fn spec_data_lines_are_joined_with_lf() {
        assert_eq!(
            events("data: YHOO\ndata: +2\ndata: 10\n\n"),
            [ev("message", "YHOO\n+2\n10", "")]
        );
    }

    #[test]
    fn spec_four_blocks_comment_id_and_no_id() {
        let s = parse(
            b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
        );
        assert_eq!(
            s.events,
            [
                ev("message", "first event", "1"),
                ev("message", "second event", ""),
                ev("message", " third event", ""),
            ]
        );
    }

    #[test]
    fn spec_the_end_of_the_stream_does_not_dispatch() {
        assert_eq!(
            events(": test stream\n\ndata: first event\nid: 1\n\ndata:  third event"),
            [ev("message", "first event", "1")]
        );
    }

    #[test]
    fn spec_empty_data_and_a_lone_newline() {
        assert_eq!(
            events("data\n\ndata\ndata\n\ndata:"),
            [ev("message", "", ""), ev("message", "\n", "")]
        );
    }

    #[test]
    fn spec_one_space_after_the_colon_is_ignored() {
        assert_eq!(
            events("data:test\n\ndata: test\n\n"),
            [ev("message", "test", ""), ev("message", "test", "")]
        );
    }

    // The rest of the algorithm, rule by rule.

    #[test]
    fn event_names_the_type_and_is_reset_after_each_dispatch() {
        assert_eq!(
            events("event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\ndata: x\n\n"),
            [
                ev("add", "73857293", ""),
                ev("remove", "2153", ""),
                ev("message", "x", "")
            ]
        );
        // A block without data dispatches nothing and forgets its type.
        assert_eq!(
            events("event: add\n\ndata: x\n\n"),
            [ev("message", "x", "")]
        );
    }

    #[test]
    fn lines_end_at_crlf_lf_or_cr() {
        let want = [ev("message", "a\nb", "7"), ev("message", "c", "7")];
        for s in [
            "id: 7\ndata: a\ndata: b\n\ndata: c\n\n",
            "id: 7\r\ndata: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n",
            "id: 7\rdata: a\rdata: b\r\rdata: c\r\r",
            "id: 7\r\ndata: a\rdata: b\n\r\ndata: c\r\n\n",
        ] {
            assert_eq!(events(s), want, "{s:?}");
        }
    }

    #[test]
    fn the_last_event_id_persists_and_an_id_with_nul_is_ignored() {
        let s = parse(b"id: 1\ndata: a\n\ndata: b\n\nid: 2\0\ndata: c\n\nid: 3\n\n");
        assert_eq!(
            s.events,
            [
                ev("message", "a", "1"),
                ev("message", "b", "1"),
                ev("message", "c", "1")
            ]
        );
        // An id-only block still sets the source's last event ID.
        assert_eq!(s.last_event_id, "3");
    }

    #[test]
    fn retry_takes_digits_only() {
        assert_eq!(parse(b"retry: 2000\n\n").retry, Some(2000));
        assert_eq!(parse(b"retry: 2000\nretry: 5s\n\n").retry, Some(2000));
        assert_eq!(parse(b"retry: -1\n\nretry:\n\nretry: 1 \n\n").retry, None);
        assert_eq!(
            parse(b"retry: 99999999999999999999999\n").retry,
            Some(u64::MAX)
        );
        assert!(parse(b"retry: 2000\n\n").events.is_empty());
    }

    #[test]
    fn field_names_are_literal_and_unknown_fields_are_ignored() {
        assert_eq!(
            events("Data: x\nDATA: y\nfoo: z\ndata : w\ndata: v\n\n"),
            [ev("message", "v", "")]
        );
        // Only the first colon splits; a colon in the value is kept.
        assert_eq!(
            events("data: {\"a\":1}\n\n"),
            [ev("message", "{\"a\":1}", "")]
        );
    }

    #[test]
    fn one_leading_bom_is_stripped_and_bad_utf8_is_replaced() {
        assert_eq!(events("\u{feff}data: x\n\n"), [ev("message", "x", "")]);
        // A second BOM is part of the first line's field name.
        assert!(events("\u{feff}\u{feff}data: x\n\n").is_empty());
        assert_eq!(
            parse(b"data: \xff\n\n").events,
            [ev("message", "\u{fffd}", "")]
        );
    }
}
