//! Reading a Server-Sent Events body as it arrives: bytes in, complete events out (`id`, `event`, `data`),
//! keep-alive comments skipped. The parser keeps the last `id` seen, which is what a reconnect sends back as
//! `Last-Event-ID`.

use futures::StreamExt;

/// One event of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

/// An incremental parser of `text/event-stream`.
#[derive(Debug, Default)]
pub struct Parser {
    buffer: Vec<u8>,
    id: Option<String>,
    event: String,
    data: Vec<String>,
}

impl Parser {
    /// Feeds bytes; returns the events they completed.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if let Some(event) = self.line(line) {
                events.push(event);
            }
        }
        events
    }

    fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            if self.data.is_empty() && self.event.is_empty() {
                return None;
            }
            let event = Event {
                id: self.id.clone(),
                event: if self.event.is_empty() { "message".to_owned() } else { std::mem::take(&mut self.event) },
                data: std::mem::take(&mut self.data).join("\n"),
            };
            return Some(event);
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => self.id = Some(value.to_owned()),
            "event" => value.clone_into(&mut self.event),
            "data" => self.data.push(value.to_owned()),
            _ => {}
        }
        None
    }
}

/// How one read of a stream ended.
#[derive(Debug)]
pub enum Ended {
    /// The server closed it.
    Closed,
    /// The connection broke (the next read resumes after the last id).
    Broken(String),
}

/// Reads `response` to its end, handing each event to `on_event`; `on_event` returns false to stop early.
pub async fn read(response: reqwest::Response, mut on_event: impl FnMut(Event) -> bool) -> Ended {
    let mut parser = Parser::default();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(bytes) => {
                for event in parser.feed(&bytes) {
                    if !on_event(event) {
                        return Ended::Closed;
                    }
                }
            }
            Err(err) => return Ended::Broken(err.to_string()),
        }
    }
    Ended::Closed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_parsed_across_chunks_and_comments_are_skipped() {
        let mut parser = Parser::default();
        assert!(parser.feed(b": keep-alive\n\nid: 1-0\nevent: dispatched\nda").is_empty());
        let events = parser.feed(b"ta: {\"a\":1}\n\nevent:node\r\ndata:x\ndata: y\r\n\r\n");
        assert_eq!(
            events,
            [
                Event { id: Some("1-0".into()), event: "dispatched".into(), data: "{\"a\":1}".into() },
                // An event without its own id keeps the last one (the reconnect point).
                Event { id: Some("1-0".into()), event: "node".into(), data: "x\ny".into() },
            ]
        );
        assert_eq!(parser.feed(b"data: z\n\n")[0].event, "message");
    }
}
