//! The simulator's etcd: objects by (resource, namespace, name), one global resourceVersion counter, a bounded
//! history of watch events (older resourceVersions answer `410 Gone`) and a broadcast of new events.

use bytes::Bytes;
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, OnceLock};
use tokio::sync::broadcast;

/// The resources the simulator serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    Jobs,
    Pods,
    Secrets,
}

impl Resource {
    pub fn api_version(self) -> &'static str {
        match self {
            Resource::Jobs => "batch/v1",
            Resource::Pods | Resource::Secrets => "v1",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Resource::Jobs => "Job",
            Resource::Pods => "Pod",
            Resource::Secrets => "Secret",
        }
    }

    /// `jobs.batch`, `pods`: how the API server names a resource in error messages.
    pub fn qualified(self) -> &'static str {
        match self {
            Resource::Jobs => "jobs.batch",
            Resource::Pods => "pods",
            Resource::Secrets => "secrets",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Resource::Jobs => "jobs",
            Resource::Pods => "pods",
            Resource::Secrets => "secrets",
        }
    }

    pub fn group(self) -> &'static str {
        match self {
            Resource::Jobs => "batch",
            Resource::Pods | Resource::Secrets => "",
        }
    }
}

/// A watch event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in the history and sent to watchers. Clones share the object and its encoding: like the
/// API server's watch cache, an event is serialized once however many watchers receive it.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub resource_version: u64,
    pub resource: Resource,
    pub namespace: String,
    pub kind: EventType,
    pub object: Arc<Value>,
    line: Arc<OnceLock<Bytes>>,
}

impl StoredEvent {
    /// The event as one line of a watch response (encoded on first use, then shared).
    pub fn watch_line(&self) -> Bytes {
        self.line.get_or_init(|| watch_line(self.kind.as_str(), &self.object)).clone()
    }
}

/// `{"type": kind, "object": object}` and a newline: one event of a watch response.
pub fn watch_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_else(|_| b"{}".to_vec());
    line.push(b'\n');
    Bytes::from(line)
}

type Key = (Resource, String, String);

/// Objects plus their change history. Callers hold the simulator's lock around every call.
#[derive(Debug)]
pub struct Store {
    resource_version: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<StoredEvent>,
    history_limit: usize,
    /// Events at or below this resourceVersion have left the history.
    compacted_through: u64,
    events: broadcast::Sender<StoredEvent>,
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        Self {
            resource_version: 0,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted_through: 0,
            events: broadcast::channel(4096).0,
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.resource_version
    }

    pub fn compacted_through(&self) -> u64 {
        self.compacted_through
    }

    pub fn subscribe(&self) -> broadcast::Receiver<StoredEvent> {
        self.events.subscribe()
    }

    pub fn get(&self, resource: Resource, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(resource, namespace.to_owned(), name.to_owned()))
    }

    /// Objects of a resource, in one namespace or (None) all of them.
    pub fn list(&self, resource: Resource, namespace: Option<&str>) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((r, ns, _), _)| *r == resource && namespace.is_none_or(|n| n == ns))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// History events after `after` (exclusive), for resuming a watch.
    pub fn events_after(&self, after: u64) -> Vec<StoredEvent> {
        self.history.iter().filter(|e| e.resource_version > after).cloned().collect()
    }

    /// Stores a new or changed object, stamping a fresh resourceVersion; returns the stored object.
    pub fn put(&mut self, resource: Resource, namespace: &str, mut object: Value) -> Value {
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = Value::String(self.resource_version.to_string());
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        let key = (resource, namespace.to_owned(), name);
        let kind = if self.objects.contains_key(&key) { EventType::Modified } else { EventType::Added };
        self.objects.insert(key, object.clone());
        self.record(resource, namespace, kind, object.clone());
        object
    }

    /// Removes an object; the DELETED event carries it with a fresh resourceVersion.
    pub fn remove(&mut self, resource: Resource, namespace: &str, name: &str) -> Option<Value> {
        let mut object = self.objects.remove(&(resource, namespace.to_owned(), name.to_owned()))?;
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = Value::String(self.resource_version.to_string());
        self.record(resource, namespace, EventType::Deleted, object.clone());
        Some(object)
    }

    /// Drops all history, as an etcd compaction would. The counter moves on (clusters always have other
    /// writes), so a watch resuming from any resourceVersion handed out so far gets 410.
    pub fn compact(&mut self) {
        self.resource_version += 1;
        self.compacted_through = self.resource_version;
        self.history.clear();
    }

    fn record(&mut self, resource: Resource, namespace: &str, kind: EventType, object: Value) {
        let event = StoredEvent {
            resource_version: self.resource_version,
            resource,
            namespace: namespace.to_owned(),
            kind,
            object: Arc::new(object),
            line: Arc::default(),
        };
        self.history.push_back(event.clone());
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted_through = old.resource_version;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(event);
    }
}
