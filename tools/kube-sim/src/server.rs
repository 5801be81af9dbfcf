//! The simulator's HTTP side: routing of Kubernetes REST paths, create/get/list/watch/delete, `Status` error
//! bodies, and the request faults (latency, 429, 500). What a Job create is checked against is in `validation`.

use super::selector::{FieldSelector, LabelSelector};
use super::store::{Resource, watch_line};
use super::validation::{self, Cause};
use super::{Access, SIM_USER, Shared, kubelet};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use flow_like_shared::kube_validation::{Path, validate_dns1123_subdomain};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

pub(super) fn app(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// RFC 3339 seconds, as Kubernetes timestamps are written.
pub(super) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A `Status` failure body, as the API server sends with every error.
pub(super) fn status(code: StatusCode, reason: &str, message: String, details: Value) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code.as_u16(),
    });
    (code, axum::Json(body)).into_response()
}

fn not_found(resource: Resource, name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{} \"{name}\" not found", resource.qualified()),
        json!({"name": name, "group": resource.group(), "kind": resource.plural()}),
    )
}

fn bad_request(message: String) -> Response {
    status(StatusCode::BAD_REQUEST, "BadRequest", message, json!({}))
}

/// What a request path names.
struct Target {
    resource: Resource,
    namespace: Option<String>,
    name: Option<String>,
    log: bool,
}

fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segments.as_slice() {
        ["apis", "batch", "v1", rest @ ..] => (true, rest),
        ["api", "v1", rest @ ..] => (false, rest),
        _ => return None,
    };
    let (batch, rest) = rest;
    let resource = |plural: &str| match (batch, plural) {
        (true, "jobs") => Some(Resource::Jobs),
        (false, "pods") => Some(Resource::Pods),
        (false, "secrets") => Some(Resource::Secrets),
        _ => None,
    };
    let target = |r, ns: Option<&str>, name: Option<&str>, log| Target {
        resource: r,
        namespace: ns.map(str::to_owned),
        name: name.map(str::to_owned),
        log,
    };
    match rest {
        [plural] => Some(target(resource(plural)?, None, None, false)),
        ["namespaces", ns, plural] => Some(target(resource(plural)?, Some(ns), None, false)),
        ["namespaces", ns, plural, name] => Some(target(resource(plural)?, Some(ns), Some(name), false)),
        ["namespaces", ns, "pods", name, "log"] if !batch => Some(target(Resource::Pods, Some(ns), Some(name), true)),
        _ => None,
    }
}

/// Counts a Job create request while it is being answered (see `KubeSim::peak_concurrent_job_creates`).
struct JobCreateInFlight(Arc<Shared>, std::time::Instant);

impl JobCreateInFlight {
    fn enter(shared: &Arc<Shared>) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let now = shared.job_creates_in_flight.fetch_add(1, Relaxed) + 1;
        shared.job_creates_peak.fetch_max(now, Relaxed);
        Self(shared.clone(), std::time::Instant::now())
    }
}

impl Drop for JobCreateInFlight {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.0.job_creates_in_flight.fetch_sub(1, Relaxed);
        self.0.job_creates_busy_us.fetch_add(self.1.elapsed().as_micros() as u64, Relaxed);
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    shared.request_times.lock().unwrap_or_else(|e| e.into_inner()).push(std::time::Instant::now());
    let _in_flight =
        (method == Method::POST && uri.path().ends_with("/jobs")).then(|| JobCreateInFlight::enter(&shared));
    let response = match injected_fault(&shared).await {
        Some(fault) => fault,
        None => match authorize(&shared, &method, &uri, &query) {
            Some(forbidden) => forbidden,
            None => route(&shared, &method, &uri, &query, &body),
        },
    };
    let mut responses = shared.responses.lock().unwrap_or_else(|e| e.into_inner());
    *responses.entry(response.status().as_u16()).or_default() += 1;
    response
}

async fn injected_fault(shared: &Shared) -> Option<Response> {
    let latency = shared.faults().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut faults = shared.faults();
    if faults.too_many > 0 {
        faults.too_many -= 1;
        let mut response = status(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later".into(),
            json!({"retryAfterSeconds": faults.retry_after_secs}),
        );
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(faults.retry_after_secs));
        return Some(response);
    }
    if faults.server_errors > 0 {
        faults.server_errors -= 1;
        return Some(status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "Internal error occurred: injected fault".into(),
            json!({}),
        ));
    }
    None
}

/// The RBAC view of a request: API group, resource (with subresource) and verb, plus the object's name and
/// namespace when the path has them.
fn access_of(
    method: &Method,
    uri: &Uri,
    query: &HashMap<String, String>,
) -> Option<(Access, Option<String>, Option<String>)> {
    let target = parse_path(uri.path())?;
    let resource = if target.log { "pods/log".to_owned() } else { target.resource.plural().to_owned() };
    let verb = match (method.clone(), target.name.is_some()) {
        (Method::GET, true) => "get",
        (Method::GET, false) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => "watch",
        (Method::GET, false) => "list",
        (Method::POST, _) => "create",
        (Method::DELETE, true) => "delete",
        (Method::DELETE, false) => "deletecollection",
        (Method::PUT, _) => "update",
        (Method::PATCH, _) => "patch",
        _ => return None,
    };
    Some((Access::new(target.resource.group(), &resource, verb), target.name, target.namespace))
}

/// Records what the request does and, when RBAC is enforced, refuses it unless a rule allows it, with the
/// API server's message.
fn authorize(shared: &Shared, method: &Method, uri: &Uri, query: &HashMap<String, String>) -> Option<Response> {
    let (access, name, namespace) = access_of(method, uri, query)?;
    shared.accesses.lock().unwrap_or_else(|e| e.into_inner()).insert(access.clone());
    let rbac = shared.rbac.lock().unwrap_or_else(|e| e.into_inner());
    let rules = rbac.as_ref()?;
    if rules.iter().any(|rule| access.allowed_by(rule)) {
        return None;
    }
    let plural = access.resource.split('/').next().unwrap_or_default();
    let qualified = if access.group.is_empty() { plural.to_owned() } else { format!("{plural}.{}", access.group) };
    let object = match &name {
        Some(name) => format!("{qualified} \"{name}\""),
        None => qualified,
    };
    let scope = match &namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_owned(),
    };
    let message = format!(
        "{object} is forbidden: User \"{SIM_USER}\" cannot {} resource \"{}\" in API group \"{}\" {scope}",
        access.verb, access.resource, access.group
    );
    Some(status(
        StatusCode::FORBIDDEN,
        "Forbidden",
        message,
        json!({"name": name.unwrap_or_default(), "group": access.group, "kind": plural}),
    ))
}

fn route(shared: &Arc<Shared>, method: &Method, uri: &Uri, query: &HashMap<String, String>, body: &Bytes) -> Response {
    let Some(target) = parse_path(uri.path()) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource".into(),
            json!({}),
        );
    };
    let namespace = target.namespace.as_deref();
    match (method.clone(), namespace, target.name.as_deref()) {
        (Method::GET, Some(ns), Some(name)) if target.log => pod_log(shared, ns, name),
        (Method::GET, Some(ns), Some(name)) => get(shared, target.resource, ns, name),
        (Method::GET, _, None) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch(shared, target.resource, namespace, query)
        }
        (Method::GET, _, None) => list(shared, target.resource, namespace, query),
        (Method::POST, Some(ns), None) => create(shared, target.resource, ns, query, body),
        (Method::DELETE, Some(ns), Some(name)) => delete(shared, target.resource, ns, name, query, body),
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource: {method}"),
            json!({}),
        ),
    }
}

fn get(shared: &Shared, resource: Resource, namespace: &str, name: &str) -> Response {
    match shared.store().get(resource, namespace, name) {
        Some(object) => axum::Json(object.clone()).into_response(),
        None => not_found(resource, name),
    }
}

fn pod_log(shared: &Shared, namespace: &str, name: &str) -> Response {
    if shared.store().get(Resource::Pods, namespace, name).is_none() {
        return not_found(Resource::Pods, name);
    }
    let text = std::fs::read_to_string(shared.pod_log_path(namespace, name)).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain")], text).into_response()
}

struct Selectors {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Selectors {
    /// Parses both selectors; the error is the 400 message.
    fn parse(query: &HashMap<String, String>) -> Result<Self, String> {
        let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))?;
        let fields = FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))?;
        Ok(Self { labels, fields })
    }

    fn matches(&self, object: &Value) -> bool {
        self.labels.matches_object(object) && self.fields.matches_object(object)
    }
}

fn list(shared: &Shared, resource: Resource, namespace: Option<&str>, query: &HashMap<String, String>) -> Response {
    let selectors = match Selectors::parse(query) {
        Ok(s) => s,
        Err(message) => return bad_request(message),
    };
    let store = shared.store();
    let items: Vec<Value> = store.list(resource, namespace).into_iter().filter(|o| selectors.matches(o)).collect();
    axum::Json(json!({
        "apiVersion": resource.api_version(),
        "kind": format!("{}List", resource.kind()),
        "metadata": {"resourceVersion": store.resource_version().to_string()},
        "items": items,
    }))
    .into_response()
}

fn expired_line(requested: u64, oldest: u64) -> Bytes {
    watch_line(
        "ERROR",
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("too old resource version: {requested} ({oldest})"),
            "reason": "Expired", "code": 410,
        }),
    )
}

/// `?watch=true`: events after `resourceVersion` (or the current objects as ADDED when it is unset or "0"),
/// then live events until `timeoutSeconds`, as newline-delimited JSON.
fn watch(
    shared: &Arc<Shared>,
    resource: Resource,
    namespace: Option<&str>,
    query: &HashMap<String, String>,
) -> Response {
    let selectors = match Selectors::parse(query) {
        Ok(s) => s,
        Err(message) => return bad_request(message),
    };
    let requested = match query.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(rv) => match rv.parse::<u64>() {
            Ok(rv) => Some(rv),
            Err(_) => return bad_request(format!("invalid resource version: {rv}")),
        },
    };
    let timeout =
        query.get("timeoutSeconds").and_then(|t| t.parse().ok()).map_or(Duration::from_secs(1800), Duration::from_secs);
    let bookmarks = query.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let namespace = namespace.map(str::to_owned);

    // Snapshot and subscription under one lock, so no event falls between them.
    let (initial, mut live, start_rv, expired) = {
        let store = shared.store();
        let live = store.subscribe();
        let current = store.resource_version();
        match requested {
            Some(rv) if rv < store.compacted_through() => {
                (vec![expired_line(rv, store.compacted_through() + 1)], live, current, true)
            }
            Some(rv) => {
                let lines = store
                    .events_after(rv)
                    .into_iter()
                    .filter(|e| {
                        e.resource == resource
                            && namespace.as_deref().is_none_or(|n| n == e.namespace)
                            && selectors.matches(&e.object)
                    })
                    .map(|e| e.watch_line())
                    .collect();
                (lines, live, current, false)
            }
            None => {
                let lines = store
                    .list(resource, namespace.as_deref())
                    .into_iter()
                    .filter(|o| selectors.matches(o))
                    .map(|o| watch_line("ADDED", &o))
                    .collect();
                (lines, live, current, false)
            }
        }
    };

    let (tx, mut rx) = mpsc::channel::<Bytes>(256);
    let shutdown = shared.shutdown.clone();
    let reset = shared.watch_reset();
    let shared_for_task = shared.clone();
    let bookmark_interval = shared.bookmark_interval;
    shared.tasks.spawn(async move {
        for line in initial {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        if expired {
            shared_for_task.watches_expired.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        let mut last_rv = start_rv;
        let end = tokio::time::sleep(timeout);
        tokio::pin!(end);
        let mut bookmark = tokio::time::interval(bookmark_interval);
        bookmark.tick().await;
        loop {
            let line = tokio::select! {
                () = &mut end => return,
                () = shutdown.cancelled() => return,
                () = reset.cancelled() => {
                    shared_for_task.watches_expired.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let _ = tx.send(expired_line(last_rv, last_rv + 1)).await;
                    return;
                }
                () = tx.closed() => return,
                _ = bookmark.tick(), if bookmarks => watch_line(
                    "BOOKMARK",
                    &json!({
                        "apiVersion": resource.api_version(),
                        "kind": resource.kind(),
                        "metadata": {"resourceVersion": last_rv.to_string()},
                    }),
                ),
                event = live.recv() => match event {
                    Ok(event) => {
                        if event.resource_version <= last_rv {
                            continue;
                        }
                        last_rv = event.resource_version;
                        let wanted = event.resource == resource
                            && namespace.as_deref().is_none_or(|n| n == event.namespace)
                            && selectors.matches(&event.object);
                        if !wanted {
                            continue;
                        }
                        event.watch_line()
                    }
                    // A watcher too slow for the event rate is cut off as the API server does.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        shared_for_task.watches_expired.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let _ = tx.send(expired_line(last_rv, last_rv + 1)).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            if tx.send(line).await.is_err() {
                return;
            }
        }
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|o| o.map(Ok::<_, std::convert::Infallible>)));
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// `422 Invalid` with one cause per bad field, as the API server's validation answers: the message lists each
/// distinct `field: error` once, in brackets when there are several (`NewInvalid` + `ToAggregate`).
pub(super) fn invalid(resource: Resource, name: &str, causes: &[Cause]) -> Response {
    let mut summary: Vec<String> = Vec::new();
    for cause in causes {
        let line = cause.summary();
        if !summary.contains(&line) {
            summary.push(line);
        }
    }
    let kind = match resource.group() {
        "" => resource.kind().to_owned(),
        group => format!("{}.{group}", resource.kind()),
    };
    let listed = match summary.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    status(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        format!("{kind} \"{name}\" is invalid: {listed}"),
        json!({
            "name": name,
            "group": resource.group(),
            "kind": resource.kind(),
            "causes": causes.iter().map(|c| json!({
                "reason": c.reason, "message": c.message, "field": c.field,
            })).collect::<Vec<_>>(),
        }),
    )
}

/// Why a Job create was refused: a body the API server cannot decode (`400`) or an invalid Job (`422`).
enum Refusal {
    BadRequest(String),
    Invalid(Vec<Cause>),
}

/// Checks of a Job body after decoding, in the API server's order: quantities (decoded with the body, `400`),
/// unknown fields by `fieldValidation`, the schema, then `ValidateJob`. On success, the `Warning` headers to
/// send (unknown fields dropped under `Warn`).
fn check_job(
    shared: &Shared,
    object: &mut Value,
    name: &str,
    query: &HashMap<String, String>,
) -> Result<Vec<String>, Refusal> {
    let directive = validation::FieldValidation::parse(query.get("fieldValidation").map(String::as_str))
        .map_err(Refusal::BadRequest)?;
    if let Some(message) = validation::decode_error(object) {
        return Err(Refusal::BadRequest(message));
    }
    let (violations, unknown) = match &shared.schema {
        Some(schema) => schema.violations_and_unknown_fields(object),
        None => (Vec::new(), Vec::new()),
    };
    let unknown = validation::UnknownFields(unknown);
    let mut causes: Vec<Cause> = violations.into_iter().map(|(f, m)| Cause::schema(f, m)).collect();
    let mut warnings = Vec::new();
    match directive {
        validation::FieldValidation::Strict if !unknown.0.is_empty() => {
            return Err(Refusal::BadRequest(unknown.strict_message()));
        }
        validation::FieldValidation::Unset => causes.extend(unknown.0.iter().map(|(parent, field)| {
            Cause::schema(parent.clone(), format!("Additional properties are not allowed ('{field}' was unexpected)"))
        })),
        validation::FieldValidation::Warn => warnings = unknown.warnings(),
        _ => {}
    }
    unknown.drop_from(object);
    causes.extend(validation::validate_job(object, name).into_iter().map(Cause::from));
    if causes.is_empty() { Ok(warnings) } else { Err(Refusal::Invalid(causes)) }
}

fn create(
    shared: &Arc<Shared>,
    resource: Resource,
    namespace: &str,
    query: &HashMap<String, String>,
    body: &Bytes,
) -> Response {
    if resource == Resource::Jobs {
        shared.job_creates.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let mut object: Value = match serde_json::from_slice(body) {
        Ok(value @ Value::Object(_)) => value,
        _ => return bad_request("the body of the request was in an unknown format".into()),
    };
    for (field, expected) in [("kind", resource.kind()), ("apiVersion", resource.api_version())] {
        if let Some(given) = object[field].as_str()
            && given != expected
        {
            return bad_request(format!("{field} {given} does not match the request path ({expected})"));
        }
    }
    if let Some(given) = object["metadata"]["namespace"].as_str()
        && given != namespace
    {
        return bad_request(
            "the namespace of the provided object does not match the namespace sent on the request".into(),
        );
    }
    let name = match (object["metadata"]["name"].as_str(), object["metadata"]["generateName"].as_str()) {
        (Some(name), _) if !name.is_empty() => name.to_owned(),
        (_, Some(prefix)) => format!("{prefix}{}", kubelet::random_suffix()),
        _ => {
            return invalid(
                resource,
                "",
                &[Cause {
                    reason: "FieldValueRequired",
                    field: "metadata.name".into(),
                    message: "Required value: name or generateName is required".into(),
                }],
            );
        }
    };
    let warnings = if resource == Resource::Jobs {
        match check_job(shared, &mut object, &name, query) {
            Ok(warnings) => warnings,
            Err(Refusal::BadRequest(message)) => return bad_request(message),
            Err(Refusal::Invalid(causes)) => return invalid(resource, &name, &causes),
        }
    } else {
        let errs = validate_dns1123_subdomain(&name, &Path::new("metadata").child("name"));
        if !errs.is_empty() {
            return invalid(resource, &name, &errs.into_iter().map(Cause::from).collect::<Vec<_>>());
        }
        Vec::new()
    };

    let uid = shared.new_uid();
    let stored = {
        let mut store = shared.store();
        if store.get(resource, namespace, &name).is_some() {
            return status(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", resource.qualified()),
                json!({"name": name, "group": resource.group(), "kind": resource.plural()}),
            );
        }
        object["apiVersion"] = json!(resource.api_version());
        object["kind"] = json!(resource.kind());
        let meta = &mut object["metadata"];
        meta["name"] = json!(name);
        meta["namespace"] = json!(namespace);
        meta["uid"] = json!(uid);
        meta["creationTimestamp"] = json!(now());
        meta["generation"] = json!(1);
        match resource {
            Resource::Jobs => default_job(&mut object, &name, &uid),
            Resource::Secrets => fold_string_data(&mut object),
            Resource::Pods => {}
        }
        store.put(resource, namespace, object)
    };
    if resource == Resource::Jobs {
        let mut created = shared.jobs_created.lock().unwrap_or_else(|e| e.into_inner());
        created.push((std::time::SystemTime::now(), name.clone()));
    }
    if resource == Resource::Jobs && shared.kubelet.is_some() {
        kubelet::start_job(shared, namespace, &name);
    }
    let mut response = (StatusCode::CREATED, axum::Json(stored)).into_response();
    for warning in warnings {
        if let Ok(value) = HeaderValue::from_str(&warning) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}

/// Defaults and labels the API server adds to a Job.
fn default_job(job: &mut Value, name: &str, uid: &str) {
    let spec = &mut job["spec"];
    for (field, value) in [
        ("backoffLimit", json!(6)),
        ("completions", json!(1)),
        ("parallelism", json!(1)),
        ("completionMode", json!("NonIndexed")),
        ("suspend", json!(false)),
        ("manualSelector", json!(false)),
    ] {
        if spec[field].is_null() {
            spec[field] = value;
        }
    }
    let controller_labels = json!({
        "batch.kubernetes.io/controller-uid": uid,
        "controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "job-name": name,
    });
    spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    let labels = &mut spec["template"]["metadata"]["labels"];
    if !labels.is_object() {
        *labels = json!({});
    }
    if let (Some(labels), Some(extra)) = (labels.as_object_mut(), controller_labels.as_object()) {
        labels.extend(extra.clone());
    }
    job["status"] = json!({});
}

/// `stringData` is write-only: the API server merges it into base64 `data`.
fn fold_string_data(secret: &mut Value) {
    use base64::Engine as _;
    let Some(Value::Object(string_data)) = secret.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return;
    };
    if !secret["data"].is_object() {
        secret["data"] = json!({});
    }
    for (key, value) in string_data {
        let text = value.as_str().unwrap_or_default();
        secret["data"][key] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

fn delete(
    shared: &Arc<Shared>,
    resource: Resource,
    namespace: &str,
    name: &str,
    query: &HashMap<String, String>,
    body: &Bytes,
) -> Response {
    let from_body =
        serde_json::from_slice::<Value>(body).ok().and_then(|b| b["propagationPolicy"].as_str().map(str::to_owned));
    // batch/v1 Jobs deleted through the REST API orphan their pods unless told otherwise.
    let policy = from_body.or_else(|| query.get("propagationPolicy").cloned()).unwrap_or_else(|| "Orphan".to_owned());
    let Some(removed) = shared.store().remove(resource, namespace, name) else {
        return not_found(resource, name);
    };
    match resource {
        Resource::Jobs => {
            let uid = removed["metadata"]["uid"].as_str().unwrap_or_default();
            kubelet::job_deleted(shared, namespace, name, uid, policy != "Orphan");
        }
        Resource::Pods => kubelet::stop_pod(shared, namespace, name, super::PodStop::Deleted),
        Resource::Secrets => {}
    }
    axum::Json(removed).into_response()
}
