//! Test fixtures as builders: workflow documents ([`WorkflowDoc`]) and submission bodies ([`Submission`]), and
//! the steps tests repeat around them: submitting, waiting for executions to finish or for a condition, and
//! checking a problem+json answer.

use flow_like_test_harness::TestApi;
use serde_json::{Map, Value, json};
use sqlx::PgPool;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A workflow document under construction: nodes by id, an optional name and an optional output node.
#[derive(Debug, Clone, Default)]
pub struct WorkflowDoc {
    name: Option<String>,
    nodes: Map<String, Value>,
    output: Option<String>,
}

impl WorkflowDoc {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// Adds node `id` exactly as given (`{"type": ..., "params": ...}`).
    pub fn node(mut self, id: &str, node: Value) -> Self {
        self.nodes.insert(id.to_owned(), node);
        self
    }

    /// Adds a `transform` node computing the jq expression `expr`.
    pub fn transform(self, id: &str, expr: &str) -> Self {
        self.node(id, json!({"type": "transform", "params": {"expr": expr}}))
    }

    /// Adds a `transform` node that runs after `inputs`.
    pub fn transform_after(self, id: &str, inputs: &[&str], expr: &str) -> Self {
        self.node(id, json!({"type": "transform", "inputs": inputs, "params": {"expr": expr}}))
    }

    /// Adds a `sleep` node of `ms` milliseconds.
    pub fn sleep(self, id: &str, ms: u64) -> Self {
        self.node(id, json!({"type": "sleep", "params": {"ms": ms}}))
    }

    /// Makes node `id` the workflow's result.
    pub fn output(mut self, id: &str) -> Self {
        self.output = Some(id.to_owned());
        self
    }

    pub fn build(self) -> Value {
        let mut doc = Map::new();
        if let Some(name) = self.name {
            doc.insert("name".into(), name.into());
        }
        doc.insert("nodes".into(), Value::Object(self.nodes));
        if let Some(output) = self.output {
            doc.insert("output".into(), output.into());
        }
        Value::Object(doc)
    }
}

/// The small valid workflow most tests submit: `double` doubles `.input.n`, and `big` follows it only when the
/// double is over 10.
pub fn sample_workflow() -> Value {
    WorkflowDoc::new()
        .name("double")
        .transform("double", ".input.n * 2")
        .node(
            "big",
            json!({"type": "transform", "inputs": ["double"], "when": ".double > 10", "params": {"expr": "\"big\""}}),
        )
        .output("double")
        .build()
}

/// A workflow that sleeps `ms` and then doubles `.input.n`.
pub fn sleepy(ms: u64) -> Value {
    WorkflowDoc::new()
        .name("sleepy")
        .sleep("wait", ms)
        .transform_after("double", &["wait"], ".input.n * 2")
        .output("double")
        .build()
}

/// A `POST /api/v1/executions` body under construction.
#[derive(Debug, Clone)]
pub struct Submission {
    body: Map<String, Value>,
}

impl Submission {
    /// Submits `workflow` inline, with no input, default priority and no labels.
    pub fn of(workflow: Value) -> Self {
        let mut body = Map::new();
        body.insert("workflow".into(), workflow);
        Self { body }
    }

    /// Submits [`sample_workflow`].
    pub fn sample() -> Self {
        Self::of(sample_workflow())
    }

    pub fn input(mut self, input: Value) -> Self {
        self.body.insert("input".into(), input);
        self
    }

    pub fn priority(mut self, priority: u8) -> Self {
        self.body.insert("priority".into(), priority.into());
        self
    }

    pub fn label(mut self, name: &str, value: &str) -> Self {
        let labels = self.body.entry("labels").or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(labels) = labels {
            labels.insert(name.to_owned(), value.into());
        }
        self
    }

    /// The request body.
    pub fn body(&self) -> Value {
        Value::Object(self.body.clone())
    }

    /// Submits it with `key`; the execution id of the 202.
    pub async fn submit(&self, api: &TestApi, key: &str) -> anyhow::Result<Uuid> {
        submit(api, key, &self.body()).await
    }
}

/// Submits `body` with `key` and returns the execution id; anything but a 202 is an error.
pub async fn submit(api: &TestApi, key: &str, body: &Value) -> anyhow::Result<Uuid> {
    let response = api.post_json("/api/v1/executions", key, body).await?;
    let status = response.status();
    let body: Value = response.json().await?;
    anyhow::ensure!(status == 202, "submit failed with {status}: {body}");
    Ok(body["id"].as_str().unwrap_or_default().parse()?)
}

/// Waits until every execution is terminal in PostgreSQL; returns their statuses in order.
pub async fn wait_terminal(db: &PgPool, ids: &[Uuid], timeout: Duration) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + timeout;
    loop {
        let rows: Vec<(Uuid, String)> =
            sqlx::query_as("SELECT id, status FROM executions WHERE id = ANY($1)").bind(ids).fetch_all(db).await?;
        let terminal =
            rows.iter().filter(|(_, s)| ["succeeded", "failed", "timed_out", "cancelled"].contains(&s.as_str()));
        if terminal.count() == ids.len() {
            let by_id: std::collections::HashMap<Uuid, String> = rows.into_iter().collect();
            return Ok(ids.iter().map(|id| by_id[id].clone()).collect());
        }
        if Instant::now() > deadline {
            let mut counts = std::collections::BTreeMap::<String, usize>::new();
            for (_, status) in &rows {
                *counts.entry(status.clone()).or_default() += 1;
            }
            anyhow::bail!("not all {} executions finished within {timeout:?}: {counts:?}", ids.len());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `check` holds, polling every 50 ms.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    while !check().await? {
        anyhow::ensure!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Asserts a problem+json answer with `status` and a title; returns the problem document.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
    body
}

/// One attempt's Job input as the dispatcher passes it to the manifest builder: attempt 1 of a fresh execution of
/// tenant `acme`'s workflow `wf`, no deadline, resources or trace.
pub fn job_spec_input() -> flow_like_dispatcher::runner::kubernetes::JobSpecInput {
    flow_like_dispatcher::runner::kubernetes::JobSpecInput {
        execution_id: Uuid::new_v4(),
        attempt: 1,
        tenant: "acme".into(),
        workflow: "wf".into(),
        deadline_ms: None,
        resources: None,
        traceparent: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The builders must produce exactly the documents the tests wrote out before.
    #[test]
    fn the_builders_make_the_documents_tests_spelled_out() {
        assert_eq!(
            sample_workflow(),
            json!({
                "name": "double",
                "nodes": {
                    "double": {"type": "transform", "params": {"expr": ".input.n * 2"}},
                    "big": {"type": "transform", "inputs": ["double"], "when": ".double > 10", "params": {"expr": "\"big\""}}
                },
                "output": "double"
            })
        );
        assert_eq!(
            sleepy(400),
            json!({
                "name": "sleepy",
                "nodes": {
                    "wait": {"type": "sleep", "params": {"ms": 400}},
                    "double": {"type": "transform", "inputs": ["wait"], "params": {"expr": ".input.n * 2"}}
                },
                "output": "double"
            })
        );
        assert_eq!(
            Submission::sample().input(json!({"n": 21})).priority(7).label("team", "ops").body(),
            json!({"workflow": sample_workflow(), "input": {"n": 21}, "priority": 7, "labels": {"team": "ops"}})
        );
        assert_eq!(
            Submission::of(WorkflowDoc::new().transform("t", ".input").output("t").build()).input(json!(1)).body(),
            json!({"workflow": {"nodes": {"t": {"type": "transform", "params": {"expr": ".input"}}}, "output": "t"}, "input": 1})
        );
    }
}
