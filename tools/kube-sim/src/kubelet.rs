//! The simulated Job controller and kubelet: one pod at a time per Job, each run as a local process with the
//! container's env, with activeDeadlineSeconds, backoffLimit, podFailurePolicy and ttlSecondsAfterFinished.

use super::server::now;
use super::store::Resource;
use super::{PodFault, PodStop, Shared};
use rand::Rng as _;
use serde_json::{Value, json};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Five characters from the alphabet Kubernetes uses for generated name suffixes.
pub(super) fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect()
}

/// Starts the controller of a newly created Job.
pub(super) fn start_job(shared: &Arc<Shared>, namespace: &str, name: &str) {
    let cancel = shared.shutdown.child_token();
    shared
        .job_controllers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert((namespace.to_owned(), name.to_owned()), cancel.clone());
    let shared2 = shared.clone();
    let (namespace, name) = (namespace.to_owned(), name.to_owned());
    shared.tasks.spawn(async move {
        run_job(&shared2, &namespace, &name, &cancel).await;
    });
}

/// A Job was deleted: stop its controller and, unless orphaned, delete its pods.
pub(super) fn job_deleted(shared: &Arc<Shared>, namespace: &str, name: &str, uid: &str, cascade: bool) {
    if let Some(cancel) = shared
        .job_controllers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&(namespace.to_owned(), name.to_owned()))
    {
        cancel.cancel();
    }
    let owned: Vec<Value> = shared
        .store()
        .list(Resource::Pods, Some(namespace))
        .into_iter()
        .filter(|p| {
            p["metadata"]["ownerReferences"].as_array().is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
        })
        .collect();
    for mut pod in owned {
        let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        if cascade {
            shared.store().remove(Resource::Pods, namespace, &pod_name);
            stop_pod(shared, namespace, &pod_name, PodStop::Deleted);
        } else if let Some(meta) = pod["metadata"].as_object_mut() {
            meta.remove("ownerReferences");
            shared.store().put(Resource::Pods, namespace, pod);
        }
    }
}

/// Signals a running pod's process.
pub(super) fn stop_pod(shared: &Shared, namespace: &str, name: &str, why: PodStop) {
    let pods = shared.running_pods.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(stop) = pods.get(&(namespace.to_owned(), name.to_owned())) {
        let _ = stop.send(why);
    }
}

/// Applies `change` to a stored object; false when the object is gone.
fn update(shared: &Shared, resource: Resource, namespace: &str, name: &str, change: impl FnOnce(&mut Value)) -> bool {
    let mut store = shared.store();
    let Some(mut object) = store.get(resource, namespace, name).cloned() else {
        return false;
    };
    change(&mut object);
    store.put(resource, namespace, object);
    true
}

fn condition(kind: &str, reason: &str, message: &str) -> Value {
    json!({
        "type": kind, "status": "True", "reason": reason, "message": message,
        "lastProbeTime": now(), "lastTransitionTime": now(),
    })
}

/// How one pod ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PodOutcome {
    Succeeded,
    Failed {
        exit_code: i32,
        disrupted: bool,
    },
    DeadlineExceeded,
    /// The Job or pod was deleted, or the simulator stopped.
    Gone,
}

async fn run_job(shared: &Arc<Shared>, namespace: &str, name: &str, cancel: &CancellationToken) {
    let Some(job) = shared.store().get(Resource::Jobs, namespace, name).cloned() else {
        return;
    };
    let spec = &job["spec"];
    let deadline = spec["activeDeadlineSeconds"].as_u64().map(|s| Instant::now() + Duration::from_secs(s));
    let backoff_limit = spec["backoffLimit"].as_u64().unwrap_or(6);
    let rules = spec["podFailurePolicy"]["rules"].as_array().cloned().unwrap_or_default();
    let container_name = spec["template"]["spec"]["containers"][0]["name"].as_str().unwrap_or_default();
    let retry_delay = shared.kubelet.as_ref().map_or(Duration::ZERO, |k| k.retry_delay);
    update(shared, Resource::Jobs, namespace, name, |j| j["status"]["startTime"] = json!(now()));

    let mut failed = 0u64;
    let finish: (&str, &str, String) = loop {
        let pod = create_pod(shared, &job);
        update(shared, Resource::Jobs, namespace, name, |j| j["status"]["active"] = json!(1));
        let outcome = run_pod(shared, namespace, &pod, &job, deadline, cancel).await;
        let still_there = update(shared, Resource::Jobs, namespace, name, |j| {
            j["status"]["active"] = json!(0);
            j["status"]["ready"] = json!(0);
        });
        if !still_there || cancel.is_cancelled() {
            return;
        }
        match outcome {
            PodOutcome::Gone => return,
            PodOutcome::Succeeded => {
                break ("Complete", "CompletionsReached", "Reached expected number of succeeded pods".into());
            }
            PodOutcome::DeadlineExceeded => {
                failed += 1;
                break ("Failed", "DeadlineExceeded", "Job was active longer than specified deadline".into());
            }
            PodOutcome::Failed { exit_code, disrupted } => {
                match matching_rule(&rules, container_name, exit_code, disrupted) {
                    Some((index, "FailJob")) => {
                        failed += 1;
                        break (
                            "Failed",
                            "PodFailurePolicy",
                            format!(
                                "Container {container_name} for pod {namespace}/{pod} failed with exit code {exit_code} matching FailJob rule at index {index}"
                            ),
                        );
                    }
                    Some((_, "Ignore")) => {}
                    _ => {
                        failed += 1;
                        update(shared, Resource::Jobs, namespace, name, |j| j["status"]["failed"] = json!(failed));
                        if failed > backoff_limit {
                            break (
                                "Failed",
                                "BackoffLimitExceeded",
                                "Job has reached the specified backoff limit".into(),
                            );
                        }
                    }
                }
            }
        }
        let pause = tokio::time::sleep(retry_delay);
        tokio::select! {
            () = pause => {}
            () = cancel.cancelled() => return,
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break ("Failed", "DeadlineExceeded", "Job was active longer than specified deadline".into());
        }
    };

    let (kind, reason, message) = finish;
    update(shared, Resource::Jobs, namespace, name, |j| {
        let status = &mut j["status"];
        let first = if kind == "Complete" { "SuccessCriteriaMet" } else { "FailureTarget" };
        status["conditions"] = json!([condition(first, reason, &message), condition(kind, reason, &message)]);
        if kind == "Complete" {
            status["succeeded"] = json!(1);
            status["completionTime"] = json!(now());
        } else if failed > 0 {
            status["failed"] = json!(failed);
        }
    });

    if let Some(ttl) = spec["ttlSecondsAfterFinished"].as_u64() {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(ttl)) => {}
            () = cancel.cancelled() => return,
        }
        let removed = shared.store().remove(Resource::Jobs, namespace, name);
        if let Some(job) = removed {
            let uid = job["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
            job_deleted(shared, namespace, name, &uid, true);
        }
    }
}

/// The first podFailurePolicy rule matching a failed pod: `(index, action)`.
fn matching_rule<'r>(rules: &'r [Value], container: &str, exit_code: i32, disrupted: bool) -> Option<(usize, &'r str)> {
    rules.iter().enumerate().find_map(|(index, rule)| {
        let action = rule["action"].as_str()?;
        let by_code = &rule["onExitCodes"];
        if by_code.is_object() {
            let container_ok = by_code["containerName"].as_str().is_none_or(|c| c == container);
            let listed = by_code["values"]
                .as_array()
                .is_some_and(|vs| vs.iter().any(|v| v.as_i64() == Some(i64::from(exit_code))));
            let hit = match by_code["operator"].as_str() {
                Some("In") => listed,
                Some("NotIn") => !listed && exit_code != 0,
                _ => false,
            };
            return (container_ok && hit && !disrupted).then_some((index, action));
        }
        let by_condition = rule["onPodConditions"].as_array()?;
        let hit = disrupted
            && by_condition
                .iter()
                .any(|c| c["type"] == "DisruptionTarget" && c["status"].as_str().is_none_or(|s| s == "True"));
        hit.then_some((index, action))
    })
}

/// Creates the next pod of a Job from its template.
fn create_pod(shared: &Shared, job: &Value) -> String {
    let job_name = job["metadata"]["name"].as_str().unwrap_or_default();
    let namespace = job["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = format!("{job_name}-{}", random_suffix());
    let template = &job["spec"]["template"];
    let mut metadata = template["metadata"].clone();
    if !metadata.is_object() {
        metadata = json!({});
    }
    metadata["name"] = json!(name);
    metadata["namespace"] = json!(namespace);
    metadata["uid"] = json!(shared.new_uid());
    metadata["creationTimestamp"] = json!(now());
    metadata["ownerReferences"] = json!([{
        "apiVersion": "batch/v1", "kind": "Job", "name": job_name,
        "uid": job["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true,
    }]);
    let container = template["spec"]["containers"][0]["name"].clone();
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template["spec"],
        "status": {
            "phase": "Pending",
            "containerStatuses": [{
                "name": container, "ready": false, "restartCount": 0, "started": false,
                "image": template["spec"]["containers"][0]["image"], "imageID": "",
                "state": {"waiting": {"reason": "ContainerCreating"}},
            }],
        },
    });
    shared.store().put(Resource::Pods, namespace, pod);
    name
}

fn set_container_state(
    shared: &Shared,
    namespace: &str,
    pod: &str,
    phase: &str,
    state: Value,
    extra: impl FnOnce(&mut Value),
) {
    update(shared, Resource::Pods, namespace, pod, |p| {
        let status = &mut p["status"];
        status["phase"] = json!(phase);
        if phase == "Running" && status["startTime"].is_null() {
            status["startTime"] = json!(now());
        }
        let running = state.get("running").is_some();
        let cs = &mut status["containerStatuses"][0];
        cs["state"] = state;
        cs["ready"] = json!(running);
        cs["started"] = json!(running);
        extra(status);
    });
}

fn terminated(exit_code: i32, reason: &str, started: &str) -> Value {
    json!({"terminated": {"exitCode": exit_code, "reason": reason, "startedAt": started, "finishedAt": now()}})
}

/// Runs one pod to its end.
async fn run_pod(
    shared: &Arc<Shared>,
    namespace: &str,
    pod: &str,
    job: &Value,
    deadline: Option<Instant>,
    cancel: &CancellationToken,
) -> PodOutcome {
    let (stop_tx, mut stop_rx) = mpsc::unbounded_channel();
    let key = (namespace.to_owned(), pod.to_owned());
    shared.running_pods.lock().unwrap_or_else(|e| e.into_inner()).insert(key.clone(), stop_tx);
    let outcome = run_pod_inner(shared, namespace, pod, job, deadline, cancel, &mut stop_rx).await;
    shared.running_pods.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
    outcome
}

async fn wait_deadline(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_pod_inner(
    shared: &Arc<Shared>,
    namespace: &str,
    pod: &str,
    job: &Value,
    deadline: Option<Instant>,
    cancel: &CancellationToken,
    stop: &mut mpsc::UnboundedReceiver<PodStop>,
) -> PodOutcome {
    let Some(options) = shared.kubelet.clone() else {
        return PodOutcome::Gone;
    };
    let fault = shared.faults().next_pods.pop_front();
    tokio::time::sleep(options.start_delay).await;
    let container = &job["spec"]["template"]["spec"]["containers"][0];

    // A pod that never starts: it waits until the deadline, an eviction or deletion.
    let never_starts = |reason: &'static str, message: String| {
        set_container_state(
            shared,
            namespace,
            pod,
            "Pending",
            json!({"waiting": {"reason": reason, "message": message}}),
            |_| {},
        );
    };
    let env = match fault {
        Some(PodFault::ImagePull) => {
            never_starts("ErrImagePull", format!("failed to pull image {}", container["image"]));
            tokio::time::sleep(Duration::from_millis(50)).await;
            never_starts("ImagePullBackOff", format!("Back-off pulling image {}", container["image"]));
            Err(())
        }
        _ => resolve_env(shared, namespace, pod, container)
            .map_err(|message| never_starts("CreateContainerConfigError", message)),
    };
    let started = now();
    let env = match env {
        Ok(env) => env,
        Err(()) => {
            return tokio::select! {
                () = wait_deadline(deadline) => {
                    set_container_state(shared, namespace, pod, "Failed", json!({"waiting": {"reason": "DeadlineExceeded"}}), |_| {});
                    PodOutcome::DeadlineExceeded
                }
                () = cancel.cancelled() => PodOutcome::Gone,
                why = stop.recv() => stopped_without_process(shared, namespace, pod, why, &started),
            };
        }
    };
    if fault == Some(PodFault::Oom) {
        set_container_state(shared, namespace, pod, "Running", json!({"running": {"startedAt": started}}), |_| {});
        tokio::time::sleep(Duration::from_millis(20)).await;
        set_container_state(shared, namespace, pod, "Failed", terminated(137, "OOMKilled", &started), |_| {});
        return PodOutcome::Failed { exit_code: 137, disrupted: false };
    }

    let mut argv: Vec<String> = Vec::new();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()).unwrap_or_default()
    };
    let command = strings(&container["command"]);
    if command.is_empty() {
        argv.extend(options.entrypoint.iter().cloned());
    } else {
        argv.extend(command);
    }
    argv.extend(strings(&container["args"]));
    let Some((program, args)) = argv.split_first() else {
        set_container_state(shared, namespace, pod, "Failed", terminated(128, "StartError", &started), |_| {});
        return PodOutcome::Failed { exit_code: 128, disrupted: false };
    };
    let log = std::fs::File::create(shared.pod_log_path(namespace, pod));
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(options.extra_env.iter().cloned())
        .envs(env)
        .env("HOSTNAME", pod)
        .kill_on_drop(true)
        .stdin(Stdio::null());
    match log.and_then(|f| Ok((f.try_clone()?, f))) {
        Ok((out, err)) => {
            cmd.stdout(out).stderr(err);
        }
        Err(_) => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(err) => {
            tracing::warn!(pod, cause = %err, "simulated container failed to start");
            set_container_state(shared, namespace, pod, "Failed", terminated(128, "StartError", &started), |_| {});
            return PodOutcome::Failed { exit_code: 128, disrupted: false };
        }
    };
    set_container_state(shared, namespace, pod, "Running", json!({"running": {"startedAt": started}}), |_| {});
    if let Some(job_name) = job["metadata"]["name"].as_str() {
        update(shared, Resource::Jobs, namespace, job_name, |j| j["status"]["ready"] = json!(1));
    }

    tokio::select! {
        exit = child.wait() => {
            let code = match exit {
                Ok(status) => status.code().unwrap_or_else(|| 128 + signal_of(&status)),
                Err(_) => 128,
            };
            if code == 0 {
                set_container_state(shared, namespace, pod, "Succeeded", terminated(0, "Completed", &started), |_| {});
                PodOutcome::Succeeded
            } else {
                set_container_state(shared, namespace, pod, "Failed", terminated(code, "Error", &started), |_| {});
                PodOutcome::Failed { exit_code: code, disrupted: false }
            }
        }
        () = wait_deadline(deadline) => {
            let _ = child.kill().await;
            set_container_state(shared, namespace, pod, "Failed", terminated(137, "Error", &started), |s| {
                s["reason"] = json!("DeadlineExceeded");
            });
            PodOutcome::DeadlineExceeded
        }
        () = cancel.cancelled() => {
            let _ = child.kill().await;
            PodOutcome::Gone
        }
        why = stop.recv() => {
            let _ = child.kill().await;
            stopped_without_process(shared, namespace, pod, why, &started)
        }
    }
}

fn stopped_without_process(
    shared: &Shared,
    namespace: &str,
    pod: &str,
    why: Option<PodStop>,
    started: &str,
) -> PodOutcome {
    match why {
        Some(PodStop::Evict) => {
            set_container_state(shared, namespace, pod, "Failed", terminated(137, "Error", started), |s| {
                s["reason"] = json!("Evicted");
                s["message"] = json!("The pod was evicted.");
                s["conditions"] =
                    json!([condition("DisruptionTarget", "EvictionByEvictionAPI", "Eviction API: evicting")]);
            });
            PodOutcome::Failed { exit_code: 137, disrupted: true }
        }
        // A pod deleted by hand counts as a failed pod for its Job.
        Some(PodStop::Deleted) => PodOutcome::Failed { exit_code: 137, disrupted: false },
        None => PodOutcome::Gone,
    }
}

#[cfg(unix)]
fn signal_of(status: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status.signal().unwrap_or(0)
}

#[cfg(not(unix))]
fn signal_of(_status: &std::process::ExitStatus) -> i32 {
    0
}

/// The container's environment as the kubelet builds it: `envFrom` first, then `env` (which wins), with
/// secret references resolved from stored Secrets. A missing Secret keeps the pod from starting.
fn resolve_env(
    shared: &Shared,
    namespace: &str,
    pod: &str,
    container: &Value,
) -> Result<Vec<(String, String)>, String> {
    use base64::Engine as _;
    let secret_value = |name: &str, key: Option<&str>| -> Result<Vec<(String, String)>, String> {
        let store = shared.store();
        let secret =
            store.get(Resource::Secrets, namespace, name).ok_or_else(|| format!("secret \"{name}\" not found"))?;
        let data = secret["data"].as_object().cloned().unwrap_or_default();
        let mut out = Vec::new();
        for (k, v) in data {
            if key.is_some_and(|want| want != k) {
                continue;
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap_or_default())
                .map_err(|_| format!("secret \"{name}\" key {k} is not base64"))?;
            out.push((k, String::from_utf8_lossy(&bytes).into_owned()));
        }
        if let Some(want) = key
            && out.is_empty()
        {
            return Err(format!("couldn't find key {want} in Secret {namespace}/{name}"));
        }
        Ok(out)
    };
    let mut env = Vec::new();
    for source in container["envFrom"].as_array().into_iter().flatten() {
        let prefix = source["prefix"].as_str().unwrap_or_default();
        if let Some(name) = source["secretRef"]["name"].as_str() {
            match secret_value(name, None) {
                Ok(pairs) => env.extend(pairs.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v))),
                Err(_) if source["secretRef"]["optional"] == true => {}
                Err(e) => return Err(e),
            }
        }
    }
    for var in container["env"].as_array().into_iter().flatten() {
        let Some(name) = var["name"].as_str() else {
            continue;
        };
        if let Some(value) = var["value"].as_str() {
            env.push((name.to_owned(), value.to_owned()));
        } else if let Some(secret) = var["valueFrom"]["secretKeyRef"]["name"].as_str() {
            let key = var["valueFrom"]["secretKeyRef"]["key"].as_str().unwrap_or_default();
            match secret_value(secret, Some(key)) {
                Ok(pairs) => env.extend(pairs.into_iter().map(|(_, v)| (name.to_owned(), v))),
                Err(_) if var["valueFrom"]["secretKeyRef"]["optional"] == true => {}
                Err(e) => return Err(e),
            }
        } else if var["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name" {
            env.push((name.to_owned(), pod.to_owned()));
        } else if var["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace" {
            env.push((name.to_owned(), namespace.to_owned()));
        }
    }
    Ok(env)
}
