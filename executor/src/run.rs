//! One attempt from start to exit code: connect to Redis and report `started`, load the spec, run the engine,
//! write the result, the logs and (last) the manifest, report `finished`. Infrastructure failures end the
//! attempt with exit code 1 and no `finished` event, so the runner retries it; workflow verdicts are final.

use crate::config::ExecutorConfig;
use crate::engine::{ChannelReporter, Engine, EngineError, EngineSettings, NodeStatus, Outcome, RunReport};
use crate::progress::{LogBook, LogLine, spawn_forwarder, to_json_lines};
use crate::spec::{self, SpecError};
use crate::status::{self, PublishError, StatusPublisher};
use crate::store::TenantObjectStore;
use bytes::Bytes;
use flow_like_shared::protocol::keys::Keys;
use flow_like_shared::status::{AttemptManifest, FinishedOutcome, NodePhase, NodeRun, StatusEvent, exit_code};
use flow_like_shared::storage::{Storage, StorageError, layout};
use flow_like_shared::trace::{Span, SpanContext, SpanKind, Tracer};
use flow_like_shared::workflow::{Limits, LogLevel, Workflow};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

/// How long the finish waits for queued progress events before writing the logs without them being sent.
const PROGRESS_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the exit waits for the spans to reach the OTLP endpoint.
const TRACE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error("EXECUTION_ID `{0}` is not a UUID")]
    ExecutionId(String),
    #[error("publishing status events failed")]
    Publish(#[from] PublishError),
    #[error("the S3 settings are invalid")]
    S3Settings(#[source] StorageError),
    #[error("loading the spec failed")]
    Spec(#[source] SpecError),
    #[error("starting the engine failed")]
    Engine(#[from] EngineError),
    #[error("writing {key} to the content bucket failed")]
    Write {
        key: String,
        #[source]
        source: StorageError,
    },
    #[error("encoding the {what} failed")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// Runs the attempt `config` names and returns the process exit code (see `flow_like_shared::status::exit_code`).
/// `process_start` is when the process started, for the start-up time the `started` event reports. After
/// `cancel` fires, the engine stops and the attempt is reported as cancelled.
pub async fn run(config: ExecutorConfig, process_start: Instant, cancel: CancellationToken) -> i32 {
    // Every line of the attempt, the outcome line included, carries its identity.
    let span = tracing::info_span!("attempt", execution_id = %config.execution_id, attempt = config.attempt);
    async {
        let trace = RunTrace::new(&config, process_start);
        let result = run_attempt(&config, process_start, &cancel, trace.as_ref()).await;
        let (code, failure) = match result {
            Ok(outcome) => {
                tracing::info!(outcome = %outcome, "attempt finished");
                (outcome.exit_code(), (outcome != FinishedOutcome::Succeeded).then(|| outcome.to_string()))
            }
            Err(err) if cancel.is_cancelled() => {
                tracing::warn!(cause = %error_chain(&err), "attempt cancelled with incomplete reporting");
                (exit_code::CANCELLED, Some("cancelled".to_owned()))
            }
            Err(err) => {
                tracing::error!(cause = %error_chain(&err), "attempt failed on infrastructure");
                (exit_code::INFRA_FAILURE, Some(error_chain(&err)))
            }
        };
        if let Some(trace) = trace {
            trace.finish(code, failure).await;
        }
        code
    }
    .instrument(span)
    .await
}

/// The attempt's `run` span and its node spans, when traces are on (docs/tracing.md): under the dispatcher's
/// `attempt` span its runner passed as `TRACEPARENT`, else in the trace named by the execution id.
struct RunTrace {
    tracer: Tracer,
    span: Span,
}

impl RunTrace {
    fn new(config: &ExecutorConfig, process_start: Instant) -> Option<Self> {
        let tracer = match Tracer::from_config(&config.trace, "flow-like-executor") {
            Ok(tracer) if tracer.is_enabled() => tracer,
            Ok(_) => return None,
            Err(err) => {
                // Traces are an aid: a bad setting costs them, not the attempt.
                tracing::warn!(cause = %error_chain(&err), "traces are off");
                return None;
            }
        };
        let parent = config.traceparent.as_deref().and_then(SpanContext::parse);
        let context = match parent {
            Some(parent) => parent.child(),
            None => SpanContext::root(config.execution_id.parse().ok()?),
        };
        let started = SystemTime::now().checked_sub(process_start.elapsed()).unwrap_or_else(SystemTime::now);
        let mut span = Span::starting_at("run", SpanKind::Internal, context, parent, started);
        span.attr("flowlike.execution_id", config.execution_id.as_str())
            .int("flowlike.attempt", i64::from(config.attempt))
            .attr("flowlike.tenant", config.tenant.as_str());
        Some(Self { tracer, span })
    }

    /// One span per node that ran, under the `run` span, from the engine's report.
    fn nodes(&self, report: &RunReport, workflow: &Workflow) {
        for (name, node) in &report.nodes {
            let (Some(started), Some(finished)) = (node.started_at, node.finished_at) else { continue };
            let mut span = Span::starting_at(
                format!("node {name}"),
                SpanKind::Internal,
                self.span.context.child(),
                Some(self.span.context),
                started.into(),
            );
            span.end = Some(finished.into());
            span.attr("flowlike.node", name.as_str())
                .attr("flowlike.node_type", workflow.nodes.get(name).map_or("unknown", |n| n.kind.type_name()))
                .attr("flowlike.node_status", format!("{:?}", node.status).to_lowercase())
                .int("flowlike.node_attempts", i64::from(node.attempts));
            if let Some(error) = &node.error {
                span.fail(error.as_str());
            }
            self.tracer.record(span);
        }
    }

    /// Ends the `run` span and sends every span before the process exits.
    async fn finish(mut self, exit_code: i32, failure: Option<String>) {
        self.span.int("process.exit.code", i64::from(exit_code));
        if let Some(failure) = failure {
            self.span.fail(failure);
        }
        self.tracer.end(self.span);
        self.tracer.flush(TRACE_FLUSH_TIMEOUT).await;
    }
}

async fn run_attempt(
    config: &ExecutorConfig,
    process_start: Instant,
    cancel: &CancellationToken,
    trace: Option<&RunTrace>,
) -> Result<FinishedOutcome, AttemptError> {
    let execution: Uuid =
        config.execution_id.parse().map_err(|_| AttemptError::ExecutionId(config.execution_id.clone()))?;
    config.redis.check().await.map_err(status::PublishError::Setup)?;
    let connection = tokio::select! {
        biased;
        () = cancel.cancelled() => return Ok(FinishedOutcome::Cancelled),
        connection = status::connect(&config.redis) => connection?,
    };
    let publisher =
        Arc::new(StatusPublisher::new(connection, &Keys::new(config.redis.prefix.clone()), execution, config.attempt));
    let startup_ms = process_start.elapsed().as_millis() as u64;
    publisher.publish(StatusEvent::Started { startup_ms }).await?;
    tracing::info!(startup_ms, "reported started");

    let attempt = AttemptRun {
        storage: Storage::connect(&config.s3).await.map_err(AttemptError::S3Settings)?,
        publisher,
        execution,
        attempt: config.attempt,
        logs: LogBook::default(),
        run_start: Instant::now(),
    };
    let loaded = tokio::select! {
        biased;
        () = cancel.cancelled() => None,
        loaded = spec::load(&attempt.storage, execution, &config.tenant) => Some(loaded),
    };
    let loaded = match loaded {
        None => return attempt.finish(FinishedOutcome::Cancelled, None, None, None).await,
        Some(Ok(loaded)) => loaded,
        Some(Err(err)) if err.is_permanent() => {
            let message = error_chain(&err);
            attempt.log(LogLevel::Error, message.clone()).await;
            return attempt.finish(FinishedOutcome::Failed, Some(message), None, None).await;
        }
        Some(Err(err)) => {
            attempt.log(LogLevel::Error, error_chain(&err)).await;
            return Err(AttemptError::Spec(err));
        }
    };
    tracing::info!(workflow = %loaded.workflow_name, "running workflow");

    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let forwarder = spawn_forwarder(attempt.publisher.clone(), receiver, attempt.logs.clone());
    let engine = Engine::new(
        EngineSettings {
            max_map_items: Limits::default().max_map_items,
            http_max_response_bytes: config.http_max_response_bytes as u64,
        },
        Arc::new(TenantObjectStore::new(attempt.storage.clone(), config.tenant.clone())),
        Arc::new(ChannelReporter(sender)),
    )?;
    let report = engine.run(&loaded.workflow, loaded.input, cancel, None).await;
    // The engine holds the only sender: dropping it lets the forwarder drain and stop.
    drop(engine);
    if tokio::time::timeout(PROGRESS_DRAIN_TIMEOUT, forwarder).await.is_err() {
        tracing::warn!("progress events still queued; finishing without them");
    }
    if let Some(trace) = trace {
        trace.nodes(&report, loaded.workflow.workflow());
    }
    let (outcome, error) = verdict(&report.outcome);
    attempt.finish(outcome, error, Some(&report), Some(loaded.workflow.workflow())).await
}

/// How each node ended, with its type from the document, for the `finished` event (the dispatcher's node
/// metrics). Only the workflow's own nodes: a `map`'s inner node is counted in its `map`.
fn node_runs(report: &RunReport, workflow: &Workflow) -> Vec<NodeRun> {
    report
        .nodes
        .iter()
        .filter_map(|(name, node)| {
            let node_type = workflow.nodes.get(name)?.kind.type_name().to_owned();
            let phase = match node.status {
                NodeStatus::Succeeded => NodePhase::Succeeded,
                NodeStatus::Failed => NodePhase::Failed,
                NodeStatus::Skipped | NodeStatus::NotStarted => NodePhase::Skipped,
                NodeStatus::Cancelled | NodeStatus::Running => NodePhase::Cancelled,
            };
            let duration_ms = match (node.started_at, node.finished_at) {
                (Some(start), Some(end)) => Some((end - start).num_milliseconds().max(0) as u64),
                _ => None,
            };
            Some(NodeRun { node_type, phase, attempts: node.attempts, duration_ms })
        })
        .collect()
}

/// The finished outcome and its error message for an engine outcome.
fn verdict(outcome: &Outcome) -> (FinishedOutcome, Option<String>) {
    match outcome {
        Outcome::Succeeded => (FinishedOutcome::Succeeded, None),
        Outcome::Failed { node, error } => (FinishedOutcome::Failed, Some(format!("node `{node}`: {error}"))),
        Outcome::TimedOut => (FinishedOutcome::TimedOut, Some("workflow deadline passed".to_owned())),
        Outcome::Cancelled => (FinishedOutcome::Cancelled, None),
    }
}

/// What the attempt needs once it is reporting.
struct AttemptRun {
    storage: Storage,
    publisher: Arc<StatusPublisher>,
    execution: Uuid,
    attempt: u32,
    logs: LogBook,
    run_start: Instant,
}

impl AttemptRun {
    /// Records an executor message in the logs and on the progress stream (best effort).
    async fn log(&self, level: LogLevel, message: String) {
        let line = LogLine { at: chrono::Utc::now(), node: None, item: None, level, message };
        if let Err(err) = self.publisher.publish(line.to_event()).await {
            tracing::warn!(cause = %err, "could not publish a log event");
        }
        self.logs.push(line);
    }

    /// Writes the result (if any), the logs and the manifest, then reports `finished`.
    async fn finish(
        &self,
        outcome: FinishedOutcome,
        error: Option<String>,
        report: Option<&RunReport>,
        workflow: Option<&Workflow>,
    ) -> Result<FinishedOutcome, AttemptError> {
        let bucket = &self.storage.content_bucket;
        let result_key = match report {
            Some(report) => {
                let key = layout::result(self.execution, self.attempt);
                let body =
                    serde_json::to_vec(report).map_err(|source| AttemptError::Encode { what: "result", source })?;
                self.put(bucket, &key, body).await?;
                Some(key)
            }
            None => None,
        };
        let logs_key = layout::logs(self.execution, self.attempt);
        let logs = to_json_lines(&self.logs.lines()).map_err(|source| AttemptError::Encode { what: "logs", source })?;
        self.storage
            .put(bucket, &logs_key, Bytes::from(logs), "application/x-ndjson")
            .await
            .map_err(|source| AttemptError::Write { key: logs_key.clone(), source })?;
        let manifest = AttemptManifest {
            execution_id: self.execution,
            attempt: self.attempt,
            outcome,
            result_key: result_key.clone(),
            logs_key,
            finished_at: chrono::Utc::now(),
        };
        let body = serde_json::to_vec(&manifest).map_err(|source| AttemptError::Encode { what: "manifest", source })?;
        self.put(bucket, &layout::manifest(self.execution, self.attempt), body).await?;
        self.publisher
            .publish(StatusEvent::Finished {
                outcome,
                error,
                result_key,
                duration_ms: self.run_start.elapsed().as_millis() as u64,
                nodes: report.zip(workflow).map(|(r, w)| node_runs(r, w)).unwrap_or_default(),
            })
            .await?;
        Ok(outcome)
    }

    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), AttemptError> {
        self.storage
            .put(bucket, key, Bytes::from(body), "application/json")
            .await
            .map_err(|source| AttemptError::Write { key: key.to_owned(), source })
    }
}

/// An error and its causes on one line, for messages that leave the process.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_engine_outcome() {
        assert_eq!(verdict(&Outcome::Succeeded), (FinishedOutcome::Succeeded, None));
        let (outcome, error) = verdict(&Outcome::Failed { node: "a".into(), error: "boom".into() });
        assert_eq!(outcome, FinishedOutcome::Failed);
        assert_eq!(error.as_deref(), Some("node `a`: boom"));
        assert_eq!(verdict(&Outcome::TimedOut).0, FinishedOutcome::TimedOut);
        assert_eq!(verdict(&Outcome::Cancelled), (FinishedOutcome::Cancelled, None));
    }

    #[test]
    fn error_chains_include_every_cause() {
        let err = AttemptError::Spec(SpecError::Malformed {
            key: "k".into(),
            source: serde_json::from_str::<serde_json::Value>("{").unwrap_err(),
        });
        let text = error_chain(&err);
        assert!(text.starts_with("loading the spec failed: k is not valid JSON"), "{text}");
        assert!(text.contains("EOF"), "{text}");
    }
}
