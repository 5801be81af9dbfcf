//! Reading `GET /api/v1/executions/{id}/events` as a client does: the whole stream, parsed into events.

use flow_like_test_harness::TestApi;
use futures::StreamExt;
use serde_json::Value;
use std::time::Duration;
use uuid::Uuid;

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: String,
    pub event: String,
    pub data: Value,
}

/// Reads a whole event stream (until the server ends it), failing after `within`.
pub async fn read_events(response: reqwest::Response, within: Duration) -> Vec<SseEvent> {
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let collect = async move {
        let mut text = String::new();
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
        text
    };
    let text = tokio::time::timeout(within, collect).await.expect("the event stream did not end in time");
    parse_events(&text)
}

pub fn parse_events(text: &str) -> Vec<SseEvent> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let (mut id, mut event, mut data) = (String::new(), String::new(), String::new());
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().into();
            } else if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().into();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim());
            }
        }
        if !event.is_empty() {
            out.push(SseEvent { id, event, data: serde_json::from_str(&data).unwrap() });
        }
    }
    out
}

pub async fn open_events(api: &TestApi, key: &str, id: Uuid, last_event_id: Option<&str>) -> reqwest::Response {
    let mut request = api.http.get(api.url(&format!("/api/v1/executions/{id}/events"))).bearer_auth(key);
    if let Some(last) = last_event_id {
        request = request.header("last-event-id", last);
    }
    request.send().await.unwrap()
}
