//! The scheduler: starts every node as soon as its inputs are done, propagates skips, stops at the first
//! failure, and bounds the whole run by the deadline and the caller's cancellation.

use super::http::HttpRunner;
use super::node::{NodeContext, NodeOutcome, Target, run_node};
use super::report::{NodeReport, NodeStatus, Outcome, RunReport};
use super::reporter::{EngineEvent, Reporter};
use super::store::ObjectStore;
use chrono::Utc;
use flow_like_shared::workflow::{Limits, ValidatedWorkflow};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Engine-wide settings (per-node settings come from the workflow).
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Most elements a `map` may fan out to (`Limits::max_map_items`).
    pub max_map_items: usize,
    /// Largest `http.request` response body; a node may only lower it.
    pub http_max_response_bytes: u64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self { max_map_items: Limits::default().max_map_items, http_max_response_bytes: 10 * 1024 * 1024 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("could not build the http client: {0}")]
    BuildHttpClient(#[source] reqwest::Error),
}

/// Runs validated workflows. Cheap to share: one per executor process.
pub struct Engine {
    store: Arc<dyn ObjectStore>,
    reporter: Arc<dyn Reporter>,
    http: HttpRunner,
    max_map_items: usize,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("max_map_items", &self.max_map_items).finish_non_exhaustive()
    }
}

/// Bookkeeping of one run, owned by [`Engine::run`] so it survives the scheduler being dropped.
struct RunState {
    reports: BTreeMap<String, NodeReport>,
    outputs: HashMap<String, Value>,
    started: HashMap<String, Instant>,
}

impl Engine {
    pub fn new(
        settings: EngineSettings,
        store: Arc<dyn ObjectStore>,
        reporter: Arc<dyn Reporter>,
    ) -> Result<Self, EngineError> {
        let http = HttpRunner::new(settings.http_max_response_bytes).map_err(EngineError::BuildHttpClient)?;
        Ok(Self { store, reporter, http, max_map_items: settings.max_map_items })
    }

    /// Runs `workflow` on `input` until it finishes, a node fails, the deadline passes (the earlier of the
    /// workflow's `deadline_ms` and `deadline`), or `cancel` fires. Never panics on workflow errors: every
    /// way a run can end is an [`Outcome`].
    pub async fn run(
        &self,
        workflow: &ValidatedWorkflow,
        input: Value,
        cancel: &CancellationToken,
        deadline: Option<Instant>,
    ) -> RunReport {
        let started_at = Utc::now();
        let start = Instant::now();
        let own_deadline = workflow.workflow().deadline_ms.map(|ms| start + Duration::from_millis(ms));
        let deadline = match (own_deadline, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut state = RunState {
            reports: workflow.order().iter().map(|id| (id.clone(), NodeReport::not_started())).collect(),
            outputs: HashMap::new(),
            started: HashMap::new(),
        };
        let attempts: HashMap<String, AtomicU32> =
            workflow.order().iter().map(|id| (id.clone(), AtomicU32::new(0))).collect();

        let outcome = {
            let scheduler = self.schedule(workflow, input, &mut state, &attempts);
            tokio::select! {
                biased;
                () = cancel.cancelled() => Outcome::Cancelled,
                () = sleep_until(deadline) => Outcome::TimedOut,
                outcome = scheduler => outcome,
            }
        };
        self.finish(workflow, outcome, state, &attempts, started_at)
    }

    async fn schedule(
        &self,
        workflow: &ValidatedWorkflow,
        input: Value,
        state: &mut RunState,
        attempts: &HashMap<String, AtomicU32>,
    ) -> Outcome {
        let nodes = &workflow.workflow().nodes;
        let ctx = NodeContext {
            workflow,
            store: self.store.as_ref(),
            reporter: self.reporter.as_ref(),
            http: &self.http,
            max_map_items: self.max_map_items,
        };
        let mut waiting: HashMap<&str, usize> = HashMap::new();
        let mut dependents: HashMap<&str, Vec<&str>> = HashMap::new();
        for (id, node) in nodes {
            waiting.insert(id, node.inputs.len());
            for dep in &node.inputs {
                dependents.entry(dep.as_str()).or_default().push(id);
            }
        }
        // Validation's topological order keeps the start order deterministic.
        let mut ready: VecDeque<&str> =
            workflow.order().iter().map(String::as_str).filter(|id| waiting.get(id) == Some(&0)).collect();
        let mut running = FuturesUnordered::new();

        loop {
            while let Some(id) = ready.pop_front() {
                let node = &nodes[id];
                let skip = node
                    .inputs
                    .iter()
                    .any(|dep| state.reports.get(dep).is_some_and(|r| r.status == NodeStatus::Skipped));
                if skip {
                    self.mark_skipped(state, id);
                    release(id, &dependents, &mut waiting, &mut ready);
                    continue;
                }
                let mut view = Map::new();
                view.insert("input".to_owned(), input.clone());
                for dep in &node.inputs {
                    let output = state.outputs.get(dep).cloned().unwrap_or(Value::Null);
                    view.insert(dep.clone(), output);
                }
                if let Some(report) = state.reports.get_mut(id) {
                    report.status = NodeStatus::Running;
                    report.started_at = Some(Utc::now());
                }
                state.started.insert(id.to_owned(), Instant::now());
                let Some(counter) = attempts.get(id) else {
                    continue;
                };
                let target = Target {
                    kind: &node.kind,
                    control: &node.control,
                    pointer: format!("/nodes/{id}"),
                    node: id,
                    item: None,
                };
                let ctx = &ctx;
                running.push(async move {
                    let result = run_node(ctx, &target, Value::Object(view), counter).await;
                    (id, result)
                });
            }
            let Some((id, result)) = running.next().await else {
                return Outcome::Succeeded;
            };
            match result {
                Ok(NodeOutcome::Output(output)) => {
                    self.mark_done(state, attempts, id, NodeStatus::Succeeded, None);
                    state.outputs.insert(id.to_owned(), output);
                }
                Ok(NodeOutcome::Skipped) => self.mark_skipped(state, id),
                Err(error) => {
                    let error = error.to_string();
                    self.mark_done(state, attempts, id, NodeStatus::Failed, Some(error.clone()));
                    // Returning drops the nodes still running; `finish` reports them as cancelled.
                    return Outcome::Failed { node: id.to_owned(), error };
                }
            }
            release(id, &dependents, &mut waiting, &mut ready);
        }
    }

    fn mark_skipped(&self, state: &mut RunState, id: &str) {
        if let Some(report) = state.reports.get_mut(id) {
            report.status = NodeStatus::Skipped;
            report.finished_at = Some(Utc::now());
        }
        self.reporter.report(EngineEvent::NodeSkipped { node: id.to_owned() });
    }

    fn mark_done(
        &self,
        state: &mut RunState,
        attempts: &HashMap<String, AtomicU32>,
        id: &str,
        status: NodeStatus,
        error: Option<String>,
    ) {
        let attempts = attempts.get(id).map_or(0, |counter| counter.load(Ordering::Relaxed));
        let duration_ms = state.started.get(id).map_or(0, |start| start.elapsed().as_millis() as u64);
        if let Some(report) = state.reports.get_mut(id) {
            report.status = status;
            report.finished_at = Some(Utc::now());
            report.attempts = attempts;
            report.error.clone_from(&error);
        }
        self.reporter.report(EngineEvent::NodeFinished { node: id.to_owned(), status, attempts, duration_ms, error });
    }

    /// Settles nodes left running (cancelled), fills in attempt counts and picks the output.
    fn finish(
        &self,
        workflow: &ValidatedWorkflow,
        outcome: Outcome,
        mut state: RunState,
        attempts: &HashMap<String, AtomicU32>,
        started_at: chrono::DateTime<Utc>,
    ) -> RunReport {
        let running: Vec<String> =
            state.reports.iter().filter(|(_, r)| r.status == NodeStatus::Running).map(|(id, _)| id.clone()).collect();
        for id in running {
            let error = match &outcome {
                Outcome::TimedOut => Some("workflow deadline passed".to_owned()),
                Outcome::Cancelled => Some("execution cancelled".to_owned()),
                Outcome::Failed { node, .. } => Some(format!("stopped after node `{node}` failed")),
                Outcome::Succeeded => None,
            };
            self.mark_done(&mut state, attempts, &id, NodeStatus::Cancelled, error);
        }
        let output = match outcome {
            Outcome::Succeeded => Some(select_output(workflow, &state.outputs)),
            _ => None,
        }
        .flatten();
        RunReport { outcome, output, nodes: state.reports, started_at, finished_at: Utc::now() }
    }
}

/// The `output` node's value, or (without `output`) an object of every sink node's value.
fn select_output(workflow: &ValidatedWorkflow, outputs: &HashMap<String, Value>) -> Option<Value> {
    let wf = workflow.workflow();
    if let Some(id) = &wf.output {
        return outputs.get(id).cloned();
    }
    let used: HashSet<&String> = wf.nodes.values().flat_map(|n| &n.inputs).collect();
    let mut sinks = Map::new();
    for id in wf.nodes.keys().filter(|id| !used.contains(id)) {
        if let Some(value) = outputs.get(id) {
            sinks.insert(id.clone(), value.clone());
        }
    }
    Some(Value::Object(sinks))
}

/// Marks `id` done for its dependents and queues those whose inputs are now all done.
fn release<'a>(
    id: &str,
    dependents: &HashMap<&str, Vec<&'a str>>,
    waiting: &mut HashMap<&'a str, usize>,
    ready: &mut VecDeque<&'a str>,
) {
    for dependent in dependents.get(id).into_iter().flatten() {
        if let Some(count) = waiting.get_mut(dependent) {
            *count -= 1;
            if *count == 0 {
                ready.push_back(dependent);
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
