//! Running one node: its `when`, its attempts with timeout and backoff, and what each node type does.

use super::error::NodeError;
use super::http::HttpRunner;
use super::reporter::{EngineEvent, Reporter};
use super::store::ObjectStore;
use flow_like_shared::workflow::{MapParams, NodeControl, NodeKind, ValidatedWorkflow, check_object_key};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// What a run shares with every node.
pub(crate) struct NodeContext<'a> {
    pub workflow: &'a ValidatedWorkflow,
    pub store: &'a dyn ObjectStore,
    pub reporter: &'a dyn Reporter,
    pub http: &'a HttpRunner,
    pub max_map_items: usize,
}

/// A node to run: a graph node, or a `map`'s inner node for one element.
pub(crate) struct Target<'a> {
    pub kind: &'a NodeKind,
    pub control: &'a NodeControl,
    /// JSON Pointer of the node in the document; its compiled expressions are found under it.
    pub pointer: String,
    /// The graph node this belongs to (the `map` node for inner nodes).
    pub node: &'a str,
    /// The element index for a `map`'s inner node.
    pub item: Option<usize>,
}

pub(crate) enum NodeOutcome {
    Output(Value),
    Skipped,
}

/// Evaluates `when`, then runs attempts until one succeeds or the retry policy is spent. `attempts` counts the
/// attempts started, so it is right even if this future is dropped midway (cancellation, deadline).
pub(crate) async fn run_node(
    ctx: &NodeContext<'_>,
    target: &Target<'_>,
    view: Value,
    attempts: &AtomicU32,
) -> Result<NodeOutcome, NodeError> {
    if target.control.when.is_some() {
        let pointer = format!("{}/when", target.pointer);
        let keep = eval(ctx, &pointer, "when", view.clone()).await?;
        if matches!(keep, Value::Null | Value::Bool(false)) {
            return Ok(NodeOutcome::Skipped);
        }
    }
    let max_attempts = target.control.retry.map_or(1, |r| r.max_attempts.max(1));
    let mut attempt = 0;
    loop {
        attempt += 1;
        attempts.store(attempt, Ordering::Relaxed);
        if target.item.is_none() {
            ctx.reporter.report(EngineEvent::NodeStarted { node: target.node.to_owned(), attempt });
        }
        let work = execute(ctx, target, view.clone());
        let result = match target.control.timeout_ms {
            Some(ms) => {
                tokio::time::timeout(Duration::from_millis(ms), work).await.unwrap_or(Err(NodeError::Timeout(ms)))
            }
            None => work.await,
        };
        let error = match result {
            Ok(output) => return Ok(NodeOutcome::Output(output)),
            Err(error) => error,
        };
        let retry_in =
            target.control.retry.filter(|_| attempt < max_attempts).map(|policy| policy.backoff_before(attempt + 1));
        if target.item.is_none() {
            ctx.reporter.report(EngineEvent::NodeAttemptFailed {
                node: target.node.to_owned(),
                attempt,
                error: error.to_string(),
                retry_in_ms: retry_in.map(|d| d.as_millis() as u64),
            });
        }
        match retry_in {
            Some(wait) => tokio::time::sleep(wait).await,
            None => return Err(error),
        }
    }
}

/// One attempt of the node's type-specific work. Boxed because a `map` runs nodes itself.
fn execute<'a>(
    ctx: &'a NodeContext<'a>,
    target: &'a Target<'a>,
    view: Value,
) -> BoxFuture<'a, Result<Value, NodeError>> {
    Box::pin(async move {
        let params = format!("{}/params", target.pointer);
        match target.kind {
            NodeKind::Transform(_) => eval(ctx, &format!("{params}/expr"), "expr", view).await,
            NodeKind::HttpRequest(http) => {
                let body = match (&http.body, &http.body_expr) {
                    (Some(body), _) => Some(body.clone()),
                    (None, Some(_)) => Some(eval(ctx, &format!("{params}/body_expr"), "body_expr", view).await?),
                    (None, None) => None,
                };
                ctx.http.send(http, body).await
            }
            NodeKind::ObjectGet(get) => {
                check_object_key(&get.key).map_err(NodeError::InvalidKey)?;
                Ok(ctx.store.get(&get.key).await?.unwrap_or(Value::Null))
            }
            NodeKind::ObjectPut(put) => {
                check_object_key(&put.key).map_err(NodeError::InvalidKey)?;
                let value = eval(ctx, &format!("{params}/value"), "value", view).await?;
                ctx.store.put(&put.key, &value).await?;
                Ok(value)
            }
            NodeKind::Map(map) => run_map(ctx, target, map, view).await,
            NodeKind::Sleep(sleep) => {
                tokio::time::sleep(Duration::from_millis(sleep.ms)).await;
                Ok(Value::Null)
            }
            NodeKind::Log(log) => {
                let message = match eval(ctx, &format!("{params}/message"), "message", view).await? {
                    Value::String(text) => text,
                    other => other.to_string(),
                };
                ctx.reporter.report(EngineEvent::Log {
                    node: target.node.to_owned(),
                    item: target.item,
                    level: log.level,
                    message: message.clone(),
                });
                Ok(Value::String(message))
            }
            NodeKind::Fail(fail) => Err(NodeError::Failed(fail.message.clone())),
        }
    })
}

/// Runs the inner node once per element of `over`, at most `parallelism` at once; the output keeps the input
/// order, and a skipped element yields `null`. The first failing element fails the map.
async fn run_map(ctx: &NodeContext<'_>, target: &Target<'_>, map: &MapParams, view: Value) -> Result<Value, NodeError> {
    let over = eval(ctx, &format!("{}/params/over", target.pointer), "over", view.clone()).await?;
    let items = match over {
        Value::Array(items) => items,
        other => return Err(NodeError::MapNotArray(json_type(&other))),
    };
    if items.len() > ctx.max_map_items {
        return Err(NodeError::MapTooManyItems { count: items.len(), limit: ctx.max_map_items });
    }
    let base = match view {
        Value::Object(fields) => fields,
        _ => Map::new(),
    };
    let inner_pointer = format!("{}/params/node", target.pointer);
    let base = &base;
    let inner_pointer = &inner_pointer;
    let results: Vec<Value> = futures::stream::iter(items.into_iter().enumerate())
        .map(|(index, item)| async move {
            let mut item_view = base.clone();
            item_view.insert("item".to_owned(), item);
            item_view.insert("index".to_owned(), Value::from(index));
            let inner = Target {
                kind: &map.node.kind,
                control: &map.node.control,
                pointer: inner_pointer.clone(),
                node: target.node,
                item: Some(index),
            };
            let attempts = AtomicU32::new(0);
            match run_node(ctx, &inner, Value::Object(item_view), &attempts).await {
                Ok(NodeOutcome::Output(value)) => Ok(value),
                Ok(NodeOutcome::Skipped) => Ok(Value::Null),
                Err(error) => Err(NodeError::MapItem { index, source: Box::new(error) }),
            }
        })
        .buffered(map.parallelism())
        .try_collect()
        .await?;
    Ok(Value::Array(results))
}

/// Runs the compiled expression at `pointer` on a blocking thread, so a slow expression neither stalls other
/// nodes nor keeps the deadline from firing.
async fn eval(ctx: &NodeContext<'_>, pointer: &str, field: &'static str, view: Value) -> Result<Value, NodeError> {
    let program =
        ctx.workflow.program(pointer).cloned().ok_or_else(|| NodeError::MissingProgram(pointer.to_owned()))?;
    tokio::task::spawn_blocking(move || program.run(view))
        .await
        .map_err(|_| NodeError::JqAborted)?
        .map_err(|source| NodeError::Jq { field, source })
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
