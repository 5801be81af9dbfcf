//! The Kubernetes runner's metrics, `flowlike_dispatcher_kube_*`: every API request by verb, resource and
//! answer, how long the answers took, the Jobs created, adopted and deleted, how attempts ended (by classified
//! cause), watch restarts, and the time requests waited for the client-side rate limit. Every label value comes
//! from a fixed set, so the families stay small however many attempts run.

use http::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: &'static str,
    pub resource: &'static str,
    /// The HTTP status code, or `error` when no answer came (connection refused or reset, timeout).
    pub code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabels {
    pub verb: &'static str,
    pub resource: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabels {
    pub cause: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabels {
    pub resource: &'static str,
    /// `expired` (410 Gone: the watcher relists) or `error` (it reconnects with backoff).
    pub reason: &'static str,
}

/// Handles to the families; clones share them.
#[derive(Clone)]
pub struct KubeMetrics {
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<VerbLabels, Histogram>,
    jobs: Family<ActionLabels, Counter>,
    outcomes: Family<CauseLabels, Counter>,
    watch_restarts: Family<WatchLabels, Counter>,
    ratelimit_waits: Counter,
    ratelimit_wait_seconds: Counter<f64, AtomicU64>,
}

impl std::fmt::Debug for KubeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeMetrics").finish_non_exhaustive()
    }
}

impl Default for KubeMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(|| {
                Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
            }),
            jobs: Family::default(),
            outcomes: Family::default(),
            watch_restarts: Family::default(),
            ratelimit_waits: Counter::default(),
            ratelimit_wait_seconds: Counter::default(),
        }
    }
}

impl KubeMetrics {
    /// Registers the families under `kube_` in the dispatcher's registry.
    pub fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("kube");
        registry.register(
            "requests",
            "Kubernetes API requests by verb, resource and HTTP status (retries counted one by one)",
            self.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to the Kubernetes API's answer (response head; a watch's stream is not included)",
            self.request_seconds.clone(),
        );
        registry.register(
            "jobs",
            "Executor Jobs created, adopted (found existing on create: 409) and deleted by this dispatcher",
            self.jobs.clone(),
        );
        registry.register("job_outcomes", "How attempts run as Jobs ended, by classified cause", self.outcomes.clone());
        registry.register(
            "watch_restarts",
            "Job and pod watch interruptions: expired (410 Gone, relisted) or error (reconnected)",
            self.watch_restarts.clone(),
        );
        registry.register(
            "ratelimit_waits",
            "Requests that waited for the client-side rate limit (KUBE_QPS / KUBE_BURST)",
            self.ratelimit_waits.clone(),
        );
        registry.register(
            "ratelimit_wait_seconds",
            "Time requests spent waiting for the client-side rate limit",
            self.ratelimit_wait_seconds.clone(),
        );
    }

    /// One try of a request: what it was, how it was answered and how long the answer took.
    pub fn request(&self, method: &Method, path: &str, query: Option<&str>, code: Option<u16>, took: Duration) {
        let (verb, resource) = verb_and_resource(method, path, query);
        let code = code.map_or_else(|| "error".to_owned(), |c| c.to_string());
        self.requests.get_or_create(&RequestLabels { verb, resource, code }).inc();
        self.request_seconds.get_or_create(&VerbLabels { verb, resource }).observe(took.as_secs_f64());
    }

    pub fn rate_limited(&self, waited: Duration) {
        if !waited.is_zero() {
            self.ratelimit_waits.inc();
            self.ratelimit_wait_seconds.inc_by(waited.as_secs_f64());
        }
    }

    pub fn job(&self, action: &'static str) {
        self.jobs.get_or_create(&ActionLabels { action }).inc();
    }

    pub fn outcome(&self, cause: &'static str) {
        self.outcomes.get_or_create(&CauseLabels { cause }).inc();
    }

    pub fn watch_restart(&self, resource: &'static str, reason: &'static str) {
        self.watch_restarts.get_or_create(&WatchLabels { resource, reason }).inc();
    }
}

/// The Kubernetes verb of a request (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
/// `deletecollection`) and its resource (`jobs`, `pods`, `events`, else `other`), from the method and path
/// (`/apis/batch/v1/namespaces/{ns}/jobs/{name}`, `/api/v1/pods`).
pub fn verb_and_resource(method: &Method, path: &str, query: Option<&str>) -> (&'static str, &'static str) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    // Skip `api/v1` or `apis/{group}/{version}`, then `namespaces/{ns}` when present.
    let mut rest = match segments.first() {
        Some(&"api") => segments.get(2..).unwrap_or_default(),
        Some(&"apis") => segments.get(3..).unwrap_or_default(),
        _ => &[][..],
    };
    if rest.first() == Some(&"namespaces") && rest.len() > 2 {
        rest = &rest[2..];
    }
    let resource = match rest.first() {
        Some(&"jobs") => "jobs",
        Some(&"pods") => "pods",
        Some(&"events") => "events",
        _ => "other",
    };
    let item = rest.len() > 1;
    let watch = query.is_some_and(|q| q.split('&').any(|pair| pair == "watch=true" || pair == "watch=1"));
    let verb = match *method {
        Method::GET if watch => "watch",
        Method::GET if item => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if item => "delete",
        Method::DELETE => "deletecollection",
        _ => "other",
    };
    (verb, resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_named_as_the_api_server_names_them() {
        let cases = [
            (Method::POST, "/apis/batch/v1/namespaces/d/jobs", None, ("create", "jobs")),
            (Method::GET, "/apis/batch/v1/namespaces/d/jobs/fl-1", None, ("get", "jobs")),
            (Method::GET, "/apis/batch/v1/namespaces/d/jobs", Some("labelSelector=a"), ("list", "jobs")),
            (Method::GET, "/api/v1/namespaces/d/pods", Some("watch=true&resourceVersion=4"), ("watch", "pods")),
            (Method::DELETE, "/apis/batch/v1/namespaces/d/jobs/fl-1", None, ("delete", "jobs")),
            (Method::DELETE, "/api/v1/namespaces/d/pods", None, ("deletecollection", "pods")),
            (Method::GET, "/api/v1/pods", None, ("list", "pods")),
            (Method::GET, "/api/v1/namespaces/d/configmaps/x", None, ("get", "other")),
            (Method::GET, "/version", None, ("list", "other")),
        ];
        for (method, path, query, expected) in cases {
            assert_eq!(verb_and_resource(&method, path, query), expected, "{method} {path}");
        }
    }
}
