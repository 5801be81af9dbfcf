//! The runner's one view of its Jobs: two long-lived watchers per runner (executor Jobs, and their pods, by the
//! dispatcher's label selector) feeding the attempts that wait on them, instead of one watch or poll per
//! attempt.
//!
//! kube-runtime's watcher relists after `410 Gone` (an expired resourceVersion) and reconnects with backoff
//! after errors. A relist can hide deletions that happened while the watch was down, so after each one the
//! Jobs an attempt had seen that are missing from the list count as deleted.
//!
//! Only Jobs an attempt has subscribed to are kept in full, so memory follows the attempts in flight, not the
//! namespace. An attempt subscribes before it creates its Job, so no event about the Job can slip past. Of every
//! other unfinished executor Job of the installation the tracker keeps a few fields ([`SweptJob`]): the
//! dispatcher's sweep reads them there instead of listing every Job each pass, as controllers read their
//! informer cache.

use super::classify::{self, JobState, PodState};
use super::manifest::{LABEL_ATTEMPT, LABEL_EXECUTION, LABEL_INSTANCE, label_selector};
use super::slim::{SlimJob, SlimPod};
use futures::StreamExt as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt as _;
use kube::api::Api;
use kube::runtime::{WatchStreamExt as _, watcher};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// One unfinished executor Job of this installation, as the sweep checks it against the leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweptJob {
    pub execution_id: Uuid,
    pub attempt: u32,
    pub job_name: String,
    /// `creationTimestamp` in Unix milliseconds (a Job created a moment ago may belong to a lease that is
    /// not visible yet).
    pub created_at_ms: Option<i64>,
}

impl SweptJob {
    /// `None` for a finished Job (its `Complete` or `Failed` condition is set), and for one whose execution or
    /// attempt label is missing or malformed (not one the runner made).
    fn unfinished(job: &Job) -> Option<Self> {
        if classify::job_state(job) != JobState::Running {
            return None;
        }
        let labels = job.labels();
        Some(Self {
            execution_id: labels.get(LABEL_EXECUTION)?.parse().ok()?,
            attempt: labels.get(LABEL_ATTEMPT)?.parse().ok()?,
            job_name: job.name_any(),
            created_at_ms: job.metadata.creation_timestamp.as_ref().map(|t| t.0.as_millisecond()),
        })
    }
}

/// What is known about one attempt's Job.
#[derive(Debug, Clone, Default)]
pub struct JobView {
    /// The latest version of the Job (after deletion: the last one seen).
    pub job: Option<Arc<Job>>,
    /// The watcher has reported the Job at least once (a Job only offered from the create answer has not).
    pub watched: bool,
    /// The Job is gone from the API.
    pub deleted: bool,
    /// The Job's pods by name, including deleted ones.
    pub pods: BTreeMap<String, PodState>,
}

/// Watch health counters.
#[derive(Debug, Default)]
pub struct WatchStats {
    lists: AtomicU64,
    errors: AtomicU64,
}

impl WatchStats {
    /// Full lists the watchers made: two at start (Jobs, pods), one more per relist.
    pub fn lists(&self) -> u64 {
        self.lists.load(Ordering::Relaxed)
    }

    /// Watch errors seen (410 Gone included); each is followed by a reconnect or a relist.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

/// Names listed so far by a relist in progress.
#[derive(Debug, Default)]
struct Relists {
    jobs: Option<HashSet<String>>,
    pods: Option<HashSet<String>>,
}

#[derive(Debug)]
pub struct Tracker {
    entries: Mutex<HashMap<String, watch::Sender<JobView>>>,
    /// Every unfinished executor Job of the installation the Job watcher knows of, by name: the sweep's view,
    /// kept from the watch instead of listing the Jobs again every pass. Bounded by the Jobs running at once.
    unfinished: Mutex<HashMap<String, SweptJob>>,
    relists: Mutex<Relists>,
    pod_order: AtomicU64,
    /// (Jobs listed, pods listed) at least once.
    synced: watch::Sender<(bool, bool)>,
    stats: WatchStats,
    metrics: super::metrics::KubeMetrics,
}

impl Default for Tracker {
    fn default() -> Self {
        Self {
            entries: Mutex::default(),
            unfinished: Mutex::default(),
            relists: Mutex::default(),
            pod_order: AtomicU64::new(0),
            synced: watch::Sender::new((false, false)),
            stats: WatchStats::default(),
            metrics: super::metrics::KubeMetrics::default(),
        }
    }
}

impl Tracker {
    /// A tracker counting watch restarts in `metrics`.
    pub fn with_metrics(metrics: super::metrics::KubeMetrics) -> Self {
        Self { metrics, ..Self::default() }
    }
}

/// An attempt's interest in its Job; dropping it forgets the Job.
#[derive(Debug)]
pub struct Subscription {
    tracker: Arc<Tracker>,
    name: String,
    rx: watch::Receiver<JobView>,
}

impl Subscription {
    /// The current view, marking it seen.
    pub fn view(&mut self) -> JobView {
        self.rx.borrow_and_update().clone()
    }

    /// Resolves when the view has changed since the last `view()`.
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            // The entry lives as long as this subscription: unreachable, but never spin.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut entries = self.tracker.entries();
        // This subscription's receiver is still alive here, so 1 means it is the last one.
        if entries.get(&self.name).is_some_and(|tx| tx.receiver_count() <= 1) {
            entries.remove(&self.name);
        }
    }
}

impl Tracker {
    fn entries(&self) -> MutexGuard<'_, HashMap<String, watch::Sender<JobView>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn unfinished(&self) -> MutexGuard<'_, HashMap<String, SweptJob>> {
        self.unfinished.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn relists(&self) -> MutexGuard<'_, Relists> {
        self.relists.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> &WatchStats {
        &self.stats
    }

    /// Starts following the Job `name`.
    pub fn subscribe(self: &Arc<Self>, name: &str) -> Subscription {
        let mut entries = self.entries();
        let rx = entries.entry(name.to_owned()).or_insert_with(|| watch::Sender::new(JobView::default())).subscribe();
        Subscription { tracker: self.clone(), name: name.to_owned(), rx }
    }

    /// The unfinished executor Jobs of the installation, as the watcher last reported them; `None` until the Job
    /// watcher has listed once.
    pub fn unfinished_jobs(&self) -> Option<Vec<SweptJob>> {
        self.synced.borrow().0.then(|| self.unfinished().values().cloned().collect())
    }

    /// Resolves once both watchers have listed at least once.
    pub async fn synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|(jobs, pods)| *jobs && *pods).await;
    }

    fn update(&self, name: &str, change: impl FnOnce(&mut JobView)) {
        if let Some(tx) = self.entries().get(name) {
            tx.send_modify(change);
        }
    }

    /// A Job read from the API outside the watch (the create answer, a get): used until the watcher reports.
    pub fn offer_job(&self, name: &str, job: SlimJob) {
        self.update(name, |view| {
            if !view.watched && !view.deleted {
                view.job = Some(Arc::new(job.0));
            }
        });
    }

    /// Pods of a Job listed outside the watch: newer than or as new as what the watcher said.
    pub fn offer_pods(&self, name: &str, pods: Vec<SlimPod>) {
        self.update(name, |view| {
            for pod in pods {
                self.put_pod(view, &pod.0, false);
            }
        });
    }

    fn put_pod(&self, view: &mut JobView, pod: &Pod, deleted: bool) {
        let name = pod.name_any();
        let order = view
            .pods
            .get(&name)
            .map(|p| p.seen_order)
            .unwrap_or_else(|| self.pod_order.fetch_add(1, Ordering::Relaxed));
        let mut state = PodState::from_pod(pod, order);
        state.deleted = deleted;
        view.pods.insert(name, state);
    }

    pub fn apply_job(&self, event: watcher::Event<SlimJob>) {
        match event {
            watcher::Event::Init => {
                self.stats.lists.fetch_add(1, Ordering::Relaxed);
                self.relists().jobs = Some(HashSet::new());
            }
            watcher::Event::InitApply(job) => {
                let name = job.name_any();
                if let Some(listed) = self.relists().jobs.as_mut() {
                    listed.insert(name.clone());
                }
                self.job_seen(&name, job, false);
            }
            watcher::Event::InitDone => {
                let listed = self.relists().jobs.take().unwrap_or_default();
                self.unfinished().retain(|name, _| listed.contains(name));
                for (name, tx) in self.entries().iter() {
                    if !listed.contains(name) {
                        tx.send_if_modified(|view| {
                            let vanished = view.watched && !view.deleted;
                            view.deleted |= vanished;
                            vanished
                        });
                    }
                }
                self.synced.send_modify(|(jobs, _)| *jobs = true);
            }
            watcher::Event::Apply(job) => {
                let name = job.name_any();
                self.job_seen(&name, job, false);
            }
            watcher::Event::Delete(job) => {
                let name = job.name_any();
                self.job_seen(&name, job, true);
            }
        }
    }

    fn job_seen(&self, name: &str, job: SlimJob, deleted: bool) {
        match (!deleted).then(|| SweptJob::unfinished(&job.0)).flatten() {
            Some(swept) => self.unfinished().insert(name.to_owned(), swept),
            None => self.unfinished().remove(name),
        };
        self.update(name, |view| {
            view.job = Some(Arc::new(job.0));
            view.watched = true;
            view.deleted = deleted;
        });
    }

    pub fn apply_pod(&self, event: watcher::Event<SlimPod>) {
        match event {
            watcher::Event::Init => {
                self.stats.lists.fetch_add(1, Ordering::Relaxed);
                self.relists().pods = Some(HashSet::new());
            }
            watcher::Event::InitApply(pod) => {
                if let Some(listed) = self.relists().pods.as_mut() {
                    listed.insert(pod.name_any());
                }
                self.pod_seen(&pod.0, false);
            }
            watcher::Event::InitDone => {
                let listed = self.relists().pods.take().unwrap_or_default();
                for tx in self.entries().values() {
                    tx.send_if_modified(|view| {
                        let mut changed = false;
                        for pod in view.pods.values_mut().filter(|p| !p.deleted && !listed.contains(&p.name)) {
                            pod.deleted = true;
                            changed = true;
                        }
                        changed
                    });
                }
                self.synced.send_modify(|(_, pods)| *pods = true);
            }
            watcher::Event::Apply(pod) => self.pod_seen(&pod.0, false),
            watcher::Event::Delete(pod) => self.pod_seen(&pod.0, true),
        }
    }

    fn pod_seen(&self, pod: &Pod, deleted: bool) {
        // Executor pods carry their Job's name in the instance label (set by the manifest, copied from the
        // Job's pod template), so no ownerReference lookup is needed.
        let Some(job) = pod.labels().get(LABEL_INSTANCE) else {
            return;
        };
        self.update(job, |view| self.put_pod(view, pod, deleted));
    }
}

/// Starts the Job and pod watchers of a runner; they stop when `shutdown` is cancelled.
pub fn spawn_watchers(
    client: &kube::Client,
    namespace: &str,
    tracker: &Arc<Tracker>,
    timeout_secs: u32,
    shutdown: &CancellationToken,
) {
    let config = watcher::Config::default().labels(&label_selector()).timeout(timeout_secs);
    let jobs: Api<SlimJob> = Api::namespaced(client.clone(), namespace);
    let pods: Api<SlimPod> = Api::namespaced(client.clone(), namespace);
    let (t1, t2) = (tracker.clone(), tracker.clone());
    spawn_watcher("jobs", watcher(jobs, config.clone()), move |e| t1.apply_job(e), tracker.clone(), shutdown.clone());
    spawn_watcher("pods", watcher(pods, config), move |e| t2.apply_pod(e), tracker.clone(), shutdown.clone());
}

fn spawn_watcher<K: Send + 'static>(
    resource: &'static str,
    stream: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    apply: impl Fn(watcher::Event<K>) + Send + 'static,
    tracker: Arc<Tracker>,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream.default_backoff());
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return,
                next = stream.next() => next,
            };
            match next {
                Some(Ok(event)) => apply(event),
                Some(Err(watcher::Error::WatchError(status))) if status.code == 410 => {
                    tracker.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracker.metrics.watch_restart(resource, "expired");
                    tracing::info!(resource, "watch expired (410 Gone); relisting");
                }
                Some(Err(err)) => {
                    tracker.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracker.metrics.watch_restart(resource, "error");
                    tracing::warn!(resource, cause = %err, "watch failed; retrying with backoff");
                }
                None => return,
            }
        }
    });
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
