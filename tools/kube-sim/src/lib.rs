//! A Kubernetes API simulator for tests: an HTTP server speaking the real REST + watch protocol for batch/v1
//! Jobs, core/v1 Pods and Secrets, with a kubelet that runs each Job's pod as a local process, and injectable
//! faults. See docs/kubernetes-simulator.md for what it does and does not simulate.
//!
//! Used as a library by the integration tests (`flow-like-tests`) and the load generator (`flow-like-loadgen`);
//! it depends on no flow-like crate: the kubelet runs whatever entrypoint [`KubeletOptions`] names (normally the
//! `flow-like-executor` binary).

mod kubelet;
mod schema;
mod selector;
mod server;
mod store;
mod validation;

pub use schema::{JobSchema, SchemaError, schema_root};
pub use selector::LabelSelector;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use store::{Resource, Store};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How the simulated kubelet runs pods.
#[derive(Debug, Clone)]
pub struct KubeletOptions {
    /// The image's entrypoint: program and arguments run for a container that sets no `command` (normally the
    /// `flow-like-executor` binary). A container's own `command` and `args` replace it, as on a real node.
    pub entrypoint: Vec<String>,
    /// Environment added to every container process (e.g. `PATH`), before the Job's own env.
    pub extra_env: Vec<(String, String)>,
    /// Time a pod spends Pending before its container starts.
    pub start_delay: Duration,
    /// Pause before a replacement pod after a failure (the real controller backs off 10 s, doubling).
    pub retry_delay: Duration,
}

impl KubeletOptions {
    /// Runs `entrypoint` for containers without a `command`.
    pub fn new(entrypoint: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            entrypoint: entrypoint.into_iter().map(Into::into).collect(),
            extra_env: std::env::var("PATH").map(|p| vec![("PATH".to_owned(), p)]).unwrap_or_default(),
            start_delay: Duration::from_millis(20),
            retry_delay: Duration::from_millis(50),
        }
    }

    /// Runs the real executor binary at `path`.
    pub fn executor(path: impl Into<PathBuf>) -> Self {
        Self::new([path.into().to_string_lossy().into_owned()])
    }
}

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct KubeSimOptions {
    /// `None` stores Jobs without running them.
    pub kubelet: Option<KubeletOptions>,
    /// Watch events kept for resuming watches; older resourceVersions get `410 Gone`.
    pub history_limit: usize,
    /// Kubernetes version whose official schema every Job body is validated against; `None` skips validation.
    pub schema_version: Option<String>,
    /// Interval of BOOKMARK events on watches that allow them.
    pub bookmark_interval: Duration,
}

impl Default for KubeSimOptions {
    fn default() -> Self {
        Self {
            kubelet: None,
            history_limit: 1000,
            schema_version: Some("1.33.0".to_owned()),
            bookmark_interval: Duration::from_secs(1),
        }
    }
}

/// A fault to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Delay every later request by this much (`Duration::ZERO` ends it).
    Latency(Duration),
    /// Answer the next `count` requests `429 TooManyRequests` with `Retry-After`.
    TooManyRequests { count: u32, retry_after_secs: u32 },
    /// Answer the next `count` requests `500 InternalError`.
    ServerError { count: u32 },
    /// Evict a running pod: kill it, mark it Failed/Evicted with condition DisruptionTarget.
    EvictPod { namespace: String, name: String },
    /// The next pod's image cannot be pulled: it waits in ErrImagePull / ImagePullBackOff and never starts.
    ImagePullFailure,
    /// The next pod's container is killed for memory: exit 137, reason OOMKilled.
    OomKill,
    /// Drop the watch history, as an etcd compaction does: watches resuming from before now get `410 Gone`.
    CompactHistory,
    /// Drop the watch history and end every open watch with an `ERROR` event carrying `410 Expired`, as the
    /// API server does when a watcher falls too far behind: clients must relist.
    ExpireWatches,
}

/// The user the simulator's RBAC names in `403 Forbidden` messages (the dispatcher's service account).
pub const SIM_USER: &str = "system:serviceaccount:default:flow-like-dispatcher";

/// One kind of request, as RBAC sees it: API group (`""` for core), resource (`pods/log` for a
/// subresource) and verb (`create`, `get`, `list`, `watch`, `delete`, ...).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Access {
    pub group: String,
    pub resource: String,
    pub verb: String,
}

impl Access {
    pub fn new(group: &str, resource: &str, verb: &str) -> Self {
        Self { group: group.to_owned(), resource: resource.to_owned(), verb: verb.to_owned() }
    }

    /// Whether a Role rule grants this access (`*` matches anything, as in RBAC).
    pub fn allowed_by(&self, rule: &PolicyRule) -> bool {
        let has = |list: &Option<Vec<String>>, want: &str| {
            list.as_ref().is_some_and(|items| items.iter().any(|item| item == "*" || item == want))
        };
        has(&rule.api_groups, &self.group)
            && has(&rule.resources, &self.resource)
            && rule.verbs.iter().any(|verb| verb == "*" || *verb == self.verb)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PodFault {
    ImagePull,
    Oom,
}

#[derive(Debug, Default)]
pub(crate) struct FaultState {
    latency: Duration,
    too_many: u32,
    retry_after_secs: u32,
    server_errors: u32,
    next_pods: VecDeque<PodFault>,
}

/// Why a running pod is being stopped from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PodStop {
    Evict,
    Deleted,
}

type ObjectKey = (String, String);

/// State shared by the HTTP handlers, the kubelet and the handle.
pub(crate) struct Shared {
    store: Mutex<Store>,
    schema: Option<JobSchema>,
    faults: Mutex<FaultState>,
    kubelet: Option<KubeletOptions>,
    bookmark_interval: Duration,
    running_pods: Mutex<HashMap<ObjectKey, mpsc::UnboundedSender<PodStop>>>,
    job_controllers: Mutex<HashMap<ObjectKey, CancellationToken>>,
    job_creates: AtomicU64,
    /// Every Job stored by a create, with the wall-clock time it was stored (for benchmarks).
    jobs_created: Mutex<Vec<(std::time::SystemTime, String)>>,
    /// Job create requests being answered right now (injected latency included), and the most seen at once.
    job_creates_in_flight: AtomicU64,
    job_creates_peak: AtomicU64,
    /// Time all Job create requests spent being answered, in microseconds (for the mean concurrency).
    job_creates_busy_us: AtomicU64,
    uids: AtomicU64,
    responses: Mutex<BTreeMap<u16, u64>>,
    /// Arrival time of every request, faulted ones included.
    request_times: Mutex<Vec<std::time::Instant>>,
    /// Rules requests must match when RBAC is enforced; `None` allows everything.
    rbac: Mutex<Option<Vec<PolicyRule>>>,
    /// Every kind of request that got past the injected request faults.
    accesses: Mutex<BTreeSet<Access>>,
    /// Cancelled (and replaced) by `Fault::ExpireWatches`: open watches end with 410.
    watch_reset: Mutex<CancellationToken>,
    watches_expired: AtomicU64,
    log_dir: PathBuf,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn faults(&self) -> MutexGuard<'_, FaultState> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn watch_reset(&self) -> CancellationToken {
        self.watch_reset.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn new_uid(&self) -> String {
        let n = self.uids.fetch_add(1, Ordering::Relaxed);
        uuid::Uuid::from_u128((0x5157_u128 << 112) | u128::from(n)).to_string()
    }

    fn pod_log_path(&self, namespace: &str, pod: &str) -> PathBuf {
        self.log_dir.join(format!("{namespace}_{pod}.log"))
    }
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum KubeSimError {
    #[error("loading the Kubernetes Job schema")]
    Schema(#[from] SchemaError),
    #[error("binding the simulator's listener")]
    Bind(#[source] std::io::Error),
    #[error("writing simulator files")]
    Files(#[source] std::io::Error),
}

/// A running simulator; stops (and kills its pods) when dropped.
pub struct KubeSim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    dir: PathBuf,
}

impl std::fmt::Debug for KubeSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSim").field("addr", &self.addr).finish()
    }
}

impl KubeSim {
    /// Starts the simulator on `127.0.0.1:0`.
    pub async fn start(options: KubeSimOptions) -> Result<Self, KubeSimError> {
        let schema = options.schema_version.as_deref().map(JobSchema::load).transpose()?;
        let dir = std::env::temp_dir().join(format!("kube-sim-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).map_err(KubeSimError::Files)?;
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(options.history_limit)),
            schema,
            faults: Mutex::new(FaultState::default()),
            kubelet: options.kubelet,
            bookmark_interval: options.bookmark_interval,
            running_pods: Mutex::new(HashMap::new()),
            job_controllers: Mutex::new(HashMap::new()),
            job_creates: AtomicU64::new(0),
            jobs_created: Mutex::new(Vec::new()),
            job_creates_in_flight: AtomicU64::new(0),
            job_creates_peak: AtomicU64::new(0),
            job_creates_busy_us: AtomicU64::new(0),
            uids: AtomicU64::new(1),
            responses: Mutex::new(BTreeMap::new()),
            request_times: Mutex::new(Vec::new()),
            rbac: Mutex::new(None),
            accesses: Mutex::new(BTreeSet::new()),
            watch_reset: Mutex::new(CancellationToken::new()),
            watches_expired: AtomicU64::new(0),
            log_dir: dir.clone(),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(KubeSimError::Bind)?;
        let addr = listener.local_addr().map_err(KubeSimError::Bind)?;
        let app = server::app(shared.clone());
        let stop = shared.shutdown.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await;
            if let Err(err) = served {
                tracing::warn!(cause = %err, "kube simulator server stopped");
            }
        });
        Ok(Self { shared, addr, dir })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client for the simulator, default namespace `default`, with kube's default retry of 429/503/504.
    pub fn client(&self) -> kube::Client {
        self.client_with(|_| {})
    }

    /// A kube client after adjusting its config (e.g. `config.default_retry = false`).
    pub fn client_with(&self, adjust: impl FnOnce(&mut kube::Config)) -> kube::Client {
        let url = self.url().parse().unwrap_or_else(|_| unreachable!("a socket address is a valid URL"));
        let mut config = kube::Config::new(url);
        adjust(&mut config);
        kube::Client::try_from(config).unwrap_or_else(|e| panic!("kube client for the simulator: {e}"))
    }

    /// Writes a kubeconfig pointing at the simulator (namespace `default`) and returns its path, for a
    /// dispatcher process (`KUBECONFIG=...`).
    pub fn kubeconfig_path(&self) -> Result<PathBuf, KubeSimError> {
        let path = self.dir.join("kubeconfig.yaml");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-sim\n  cluster:\n    server: {}\nusers:\n- name: kube-sim\n  user: {{}}\ncontexts:\n- name: kube-sim\n  context:\n    cluster: kube-sim\n    user: kube-sim\n    namespace: default\ncurrent-context: kube-sim\n",
            self.url()
        );
        std::fs::write(&path, text).map_err(KubeSimError::Files)?;
        Ok(path)
    }

    /// Every stored Job, all namespaces.
    pub fn jobs(&self) -> Vec<Job> {
        self.typed(Resource::Jobs)
    }

    /// Every stored Pod, all namespaces.
    pub fn pods(&self) -> Vec<Pod> {
        self.typed(Resource::Pods)
    }

    /// Job create requests answered (accepted, 409 or 422 alike); faulted requests do not count.
    pub fn job_creates_seen(&self) -> u64 {
        self.shared.job_creates.load(Ordering::Relaxed)
    }

    /// Jobs stored by a create request so far, in order, with the wall-clock time each was stored.
    pub fn jobs_created(&self) -> Vec<(std::time::SystemTime, String)> {
        self.shared.jobs_created.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The most Job create requests the simulator has answered at once (injected latency included): the
    /// concurrency a client actually reached.
    pub fn peak_concurrent_job_creates(&self) -> u64 {
        self.shared.job_creates_peak.load(Ordering::Relaxed)
    }

    /// The summed time Job create requests spent being answered (injected latency included). Divided by a
    /// span of time: how many creates were in flight on average, i.e. how full a client kept its request slots.
    pub fn job_create_busy_time(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.shared.job_creates_busy_us.load(Ordering::Relaxed))
    }

    /// Responses sent with this HTTP status code (e.g. 429 to see injected throttling reached a client).
    pub fn responses_with_status(&self, code: u16) -> u64 {
        let responses = self.shared.responses.lock().unwrap_or_else(|e| e.into_inner());
        responses.get(&code).copied().unwrap_or(0)
    }

    /// Arrival times of every request so far (for checking a client's rate limit).
    pub fn request_times(&self) -> Vec<std::time::Instant> {
        self.shared.request_times.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Watches ended with a `410 Expired` error event (a resume from a compacted resourceVersion, a slow
    /// watcher cut off, or `Fault::ExpireWatches`).
    pub fn watches_expired(&self) -> u64 {
        self.shared.watches_expired.load(Ordering::Relaxed)
    }

    /// Enforces RBAC from now on: a request no rule allows gets `403 Forbidden` naming [`SIM_USER`], as the
    /// API server answers a service account missing a permission.
    pub fn enforce_rbac(&self, rules: Vec<PolicyRule>) {
        *self.shared.rbac.lock().unwrap_or_else(|e| e.into_inner()) = Some(rules);
    }

    /// Stops enforcing RBAC (the default: everything is allowed).
    pub fn allow_everything(&self) {
        *self.shared.rbac.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Every kind of request clients have made (after injected request faults), allowed or not.
    pub fn accesses(&self) -> BTreeSet<Access> {
        self.shared.accesses.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stdout and stderr of a pod's process so far.
    pub fn pod_log(&self, namespace: &str, pod: &str) -> Option<String> {
        std::fs::read_to_string(self.shared.pod_log_path(namespace, pod)).ok()
    }

    /// Stores a Secret with these string values (as `stringData` would), replacing one of the same name.
    pub fn create_secret(&self, namespace: &str, name: &str, values: &[(&str, &str)]) {
        use base64::Engine as _;
        let data: serde_json::Map<String, Value> = values
            .iter()
            .map(|(k, v)| {
                let encoded = base64::engine::general_purpose::STANDARD.encode(v.as_bytes());
                ((*k).to_owned(), Value::String(encoded))
            })
            .collect();
        let secret = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": self.shared.new_uid(),
                "creationTimestamp": server::now(),
            },
            "data": data,
        });
        self.shared.store().put(Resource::Secrets, namespace, secret);
    }

    /// Injects a fault.
    pub fn inject(&self, fault: Fault) {
        match fault {
            Fault::Latency(latency) => self.shared.faults().latency = latency,
            Fault::TooManyRequests { count, retry_after_secs } => {
                let mut faults = self.shared.faults();
                faults.too_many += count;
                faults.retry_after_secs = retry_after_secs;
            }
            Fault::ServerError { count } => self.shared.faults().server_errors += count,
            Fault::ImagePullFailure => self.shared.faults().next_pods.push_back(PodFault::ImagePull),
            Fault::OomKill => self.shared.faults().next_pods.push_back(PodFault::Oom),
            Fault::EvictPod { namespace, name } => {
                let pods = self.shared.running_pods.lock().unwrap_or_else(|e| e.into_inner());
                match pods.get(&(namespace, name.clone())) {
                    Some(stop) => {
                        let _ = stop.send(PodStop::Evict);
                    }
                    None => tracing::warn!(pod = %name, "eviction of a pod that is not running"),
                }
            }
            Fault::CompactHistory => self.shared.store().compact(),
            Fault::ExpireWatches => {
                self.shared.store().compact();
                let mut reset = self.shared.watch_reset.lock().unwrap_or_else(|e| e.into_inner());
                reset.cancel();
                *reset = CancellationToken::new();
            }
        }
    }

    fn typed<T: serde::de::DeserializeOwned>(&self, resource: Resource) -> Vec<T> {
        let objects = self.shared.store().list(resource, None);
        objects.into_iter().filter_map(|o| serde_json::from_value(o).ok()).collect()
    }
}

impl Drop for KubeSim {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
        // Child processes are spawned with kill_on_drop; cancelling stops their tasks.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
