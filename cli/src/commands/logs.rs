//! `logs`: one attempt's log lines (`GET /executions/{id}/logs[?attempt=N]`), or with `--follow` the same
//! lines as Server-Sent Events while the attempt runs, until its `end` event. The follow stream always starts
//! at the attempt's first line, so after a dropped connection the lines already printed are skipped by id.

use crate::args::Logs;
use crate::commands::executions;
use crate::error::CliError;
use crate::render::{self, Palette};
use crate::sse;
use crate::{Context, Finish};
use chrono::Local;
use serde_json::Value;
use std::time::Duration;

/// Reconnects in a row after which `--follow` gives up.
const MAX_RECONNECTS: u32 = 10;

/// A log line for people: time, then [`body`].
pub fn line(palette: Palette, line: &Value) -> String {
    let at = render::time(&line["at"])
        .map_or_else(|| "-".to_owned(), |t| t.with_timezone(&Local).format("%H:%M:%S%.3f").to_string());
    format!("{} {}", palette.dim(&at), body(palette, line))
}

/// A log line without its time: level, node (and map item, or `executor`), message.
pub fn body(palette: Palette, line: &Value) -> String {
    let level = line["level"].as_str().unwrap_or("info");
    let padded = format!("{:<5}", level.to_uppercase());
    let level = match level {
        "error" => palette.red(&padded),
        "warn" => palette.yellow(&padded),
        "debug" => palette.dim(&padded),
        _ => padded,
    };
    let node = match (line["node"].as_str(), line["item"].as_u64()) {
        (Some(node), Some(item)) => format!("{node}[{item}]"),
        (Some(node), None) => node.to_owned(),
        (None, _) => "executor".to_owned(),
    };
    format!("{level} {} {}", palette.bold(&node), render::text(&line["message"]))
}

pub async fn run(context: &Context, logs: Logs) -> Result<Finish, CliError> {
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(attempt) = logs.attempt {
        query.push(("attempt", attempt.to_string()));
    }
    let path = format!("{}/logs", executions::path(&logs.id));
    if logs.follow {
        query.push(("follow", "true".to_owned()));
        return follow(context, &path, &query).await;
    }
    let answer = context.client.get(&path, &query).await?;
    let lines = answer["lines"].as_array().map(Vec::as_slice).unwrap_or_default();
    if context.json() {
        for entry in lines {
            context.document(entry)?;
        }
    } else {
        context.lines(lines.iter().map(|entry| line(context.palette, entry)))?;
        if lines.is_empty() {
            eprintln!("attempt {} has no log lines", render::text(&answer["attempt"]));
        }
    }
    Ok(Finish::Success)
}

/// An entry id `ms-seq` as a pair that orders like the stream.
fn entry_order(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

async fn follow(context: &Context, path: &str, query: &[(&str, String)]) -> Result<Finish, CliError> {
    let mut last: Option<(u64, u64)> = None;
    let mut failures = 0;
    loop {
        let response = match context.client.stream(path, query, None).await {
            Ok(response) => response,
            Err(CliError::Unreachable { .. }) if failures < MAX_RECONNECTS => {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(err) => return Err(err),
        };
        let mut ended: Option<String> = None;
        let mut output: Result<(), CliError> = Ok(());
        let read = sse::read(response, |event| {
            match event.event.as_str() {
                "log" => {
                    let order = event.id.as_deref().and_then(entry_order);
                    if order.is_some() && order <= last {
                        return true;
                    }
                    last = order.or(last);
                    let data: Value = serde_json::from_str(&event.data).unwrap_or_default();
                    output = if context.json() {
                        context.document(&data)
                    } else {
                        context.line(line(context.palette, &data))
                    };
                }
                "end" => {
                    let data: Value = serde_json::from_str(&event.data).unwrap_or_default();
                    ended = Some(render::text(&data["status"]));
                    return false;
                }
                _ => {}
            }
            output.is_ok()
        })
        .await;
        output?;
        if let Some(status) = ended {
            if !context.json() {
                eprintln!("attempt ended: {status}");
            }
            return Ok(Finish::Success);
        }
        // Closed or broken without `end`: reconnect (the lines printed are skipped).
        failures += 1;
        if failures > MAX_RECONNECTS {
            let why = match read {
                sse::Ended::Broken(why) => why,
                sse::Ended::Closed => "the stream ended without an end event".to_owned(),
            };
            return Err(CliError::Unreachable { url: context.client.base().to_owned(), cause: why });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
