//! `watch` (and `submit --watch`): follows `GET /executions/{id}/events` until the execution ends, resuming
//! with `Last-Event-ID` after a dropped connection, while a view (`display`) shows the progress: live spinners
//! per node on a terminal, timestamped lines otherwise, the events' JSON with `-o json`. Then the outcome, the
//! timeline and the output; exit 1 when the outcome is not `succeeded`.
//!
//! When the stream closes, PostgreSQL decides: a terminal status ends the watch, anything else reconnects (the
//! status pipeline may record a `finished` event a moment after the stream carried it, and an execution
//! redriven after its `finished` goes on with its next attempt).

mod display;

use crate::commands::executions;
use crate::error::CliError;
use crate::render;
use crate::sse;
use crate::{Context, Finish};
use display::View;
use serde_json::Value;
use std::cell::RefCell;
use std::time::Duration;

/// Failed connection attempts in a row after which the watch gives up (about 30 s of an unreachable API).
const MAX_FAILURES: u32 = 30;
/// Pause before reconnecting.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// How often the waiting reason of a queued execution is read again while nothing happens.
const WAITING_REFRESH: Duration = Duration::from_secs(2);
/// How long to wait for PostgreSQL to record a `finished` event the stream already carried.
const FINISH_GRACE: Duration = Duration::from_secs(10);

pub fn is_terminal(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "timed_out" | "cancelled")
}

pub async fn run(context: &Context, id: &str) -> Result<Finish, CliError> {
    let execution = executions::fetch(context, id).await?;
    let view = RefCell::new(display::view(context, &execution));
    let outcome = follow(context, id, &view, execution).await;
    let mut view = view.into_inner();
    let execution = match outcome {
        Ok(execution) => execution,
        Err(err) => {
            view.abandon();
            return Err(err);
        }
    };
    view.finish(&execution);
    let status = render::text(&execution["status"]);
    if context.json() {
        context.document(&execution)?;
    } else {
        context.lines(summary(context, &execution).await)?;
    }
    Ok(if status == "succeeded" { Finish::Success } else { Finish::NotSucceeded })
}

/// Reads the event stream until PostgreSQL says the execution is terminal; returns its last document.
async fn follow(
    context: &Context,
    id: &str,
    view: &RefCell<Box<dyn View>>,
    mut execution: Value,
) -> Result<Value, CliError> {
    let path = format!("{}/events", executions::path(id));
    let mut last_id: Option<String> = None;
    let mut failures = 0;
    loop {
        let status = render::text(&execution["status"]);
        if is_terminal(&status) && last_id.is_some() {
            return Ok(execution);
        }
        let response = match context.client.stream(&path, &[], last_id.as_deref()).await {
            Ok(response) => response,
            Err(err) if retryable(&err) && failures < MAX_FAILURES => {
                failures += 1;
                tokio::time::sleep(RECONNECT_DELAY).await;
                continue;
            }
            Err(err) => return Err(err),
        };
        let mut finished_attempt: Option<u64> = None;
        let read = sse::read(response, |event| {
            if event.id.is_some() {
                last_id.clone_from(&event.id);
            }
            let data: Value = serde_json::from_str(&event.data).unwrap_or_default();
            if event.event == "finished" {
                finished_attempt = data["attempt"].as_u64();
            }
            view.borrow_mut().event(&event.event, &data);
            true
        });
        let ended = tokio::select! {
            ended = read => ended,
            never = refresh_waiting(context, id, view) => match never {},
        };
        if matches!(ended, sse::Ended::Closed) {
            failures = 0;
        } else {
            failures += 1;
        }
        // The stream is over (or broke): PostgreSQL says whether the execution is.
        execution = match read_back(context, id, finished_attempt).await {
            Ok(execution) => execution,
            Err(err) if retryable(&err) && failures < MAX_FAILURES => {
                failures += 1;
                tokio::time::sleep(RECONNECT_DELAY).await;
                continue;
            }
            Err(err) => return Err(err),
        };
        if is_terminal(&render::text(&execution["status"])) {
            // A stream that ended before sending anything of a terminal execution is complete too.
            return Ok(execution);
        }
        let pause = if matches!(ended, sse::Ended::Broken(_)) { RECONNECT_DELAY } else { Duration::from_millis(200) };
        tokio::time::sleep(pause).await;
    }
}

/// A failure worth another try: no answer, or the API asking to come back (503).
fn retryable(err: &CliError) -> bool {
    match err {
        CliError::Unreachable { .. } => true,
        CliError::Api(problem) => problem.status == 503,
        _ => false,
    }
}

/// The execution's record; after a `finished` event of `attempt`, waits a little for the record to catch up.
async fn read_back(context: &Context, id: &str, finished_attempt: Option<u64>) -> Result<Value, CliError> {
    let deadline = tokio::time::Instant::now() + FINISH_GRACE;
    loop {
        let execution = executions::fetch(context, id).await?;
        let status = render::text(&execution["status"]);
        let lagging = matches!(status.as_str(), "dispatched" | "running")
            && finished_attempt.is_some_and(|a| execution["attempts"].as_u64().is_none_or(|n| n <= a));
        if !lagging || tokio::time::Instant::now() > deadline {
            return Ok(execution);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// While the view shows a queued execution, reads its waiting reason again now and then. Never returns.
async fn refresh_waiting(context: &Context, id: &str, view: &RefCell<Box<dyn View>>) -> std::convert::Infallible {
    loop {
        tokio::time::sleep(WAITING_REFRESH).await;
        if !view.borrow().is_waiting() {
            continue;
        }
        if let Ok(execution) = executions::fetch(context, id).await {
            view.borrow_mut().waiting(&execution);
        }
    }
}

/// The end of a watch for people: the outcome, the timeline, the output.
async fn summary(context: &Context, execution: &Value) -> Vec<String> {
    let p = context.palette;
    let status = render::text(&execution["status"]);
    let mut outcome = p.status(&status);
    if let Some(error) = execution["error"].as_str() {
        outcome.push_str(&format!(": {error}"));
    }
    let mut lines = vec![String::new()];
    lines.extend(executions::pairs(
        p,
        &[
            ("execution", render::text(&execution["id"])),
            ("outcome", outcome),
            ("attempts", render::text(&execution["attempts"])),
        ],
    ));
    lines.push(String::new());
    lines.extend(executions::timeline(p, execution));
    lines.push(String::new());
    let id = render::text(&execution["id"]);
    match context.client.get(&format!("{}/result", executions::path(&id)), &[]).await {
        Ok(result) => {
            lines.push(p.bold("output"));
            lines
                .extend(serde_json::to_string_pretty(&result["output"]).unwrap_or_default().lines().map(str::to_owned));
        }
        Err(CliError::Api(problem)) => lines.push(format!("{} none ({})", p.bold("output"), problem.title)),
        Err(err) => lines.push(format!("{} unknown ({err})", p.bold("output"))),
    }
    lines
}
