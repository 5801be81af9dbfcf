//! Every Redis key flow-like uses, one function per key. All keys start with `REDIS_PREFIX:`; docs/redis.md
//! lists each one with a `redis-cli` command that shows its state, and a test fails when a key written by the
//! code is missing from that page.
//!
//! The key space is designed for a single Redis (or one primary with replicas). The admission script touches
//! keys derived from tenant names, so Redis Cluster is not supported.

/// The consumer group on every queue lane; all dispatchers share it.
pub const DISPATCH_GROUP: &str = "dispatchers";
/// The consumer group on the status stream; all dispatchers share it.
pub const STATUS_GROUP: &str = "status";

/// Builds keys for one installation (one prefix).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Stream: one queue lane per (tenant, priority). Entries are queued executions; group `dispatchers`.
    pub fn lane(&self, tenant: &str, priority: u8) -> String {
        format!("{}:queue:{tenant}:p{priority}", self.prefix)
    }

    /// Sorted set: tenants that may have queued work, scored by their fair-share tag (the virtual time at which
    /// their last admission ended; the lowest is served next).
    pub fn tenants(&self) -> String {
        format!("{}:tenants", self.prefix)
    }

    /// Sorted set: the priorities (0-9) that have a lane for a tenant, as members scored by the priority.
    pub fn lanes(&self, tenant: &str) -> String {
        format!("{}:lanes:{tenant}", self.prefix)
    }

    /// Hash: execution id -> queue entry (`lane-key entry-id`) for every execution waiting in a lane.
    /// The reconciler compares it with PostgreSQL to find committed executions that Redis lost.
    pub fn queued(&self) -> String {
        format!("{}:queued", self.prefix)
    }

    /// String (number): the fair-share virtual time, the start of the last admission.
    pub fn turn(&self) -> String {
        format!("{}:turn", self.prefix)
    }

    /// Sorted set: every running execution (concurrency lease), scored by lease expiry in ms since the epoch.
    pub fn active(&self) -> String {
        format!("{}:active", self.prefix)
    }

    /// Sorted set: one tenant's running executions, scored like `active`.
    pub fn active_tenant(&self, tenant: &str) -> String {
        format!("{}:active:tenant:{tenant}", self.prefix)
    }

    /// Sorted set: one workflow's running executions, scored like `active`.
    pub fn active_workflow(&self, tenant: &str, workflow: &str) -> String {
        format!("{}:active:workflow:{tenant}:{workflow}", self.prefix)
    }

    /// Hash: the lease of one running execution (dispatcher, tenant, workflow, attempt, queue entry).
    pub fn lease(&self, execution: &str) -> String {
        format!("{}:lease:{execution}", self.prefix)
    }

    /// Hash: limits: `global`, `tenant:<tenant>` and `workflow:<tenant>` (concurrency; `workflow` is per workflow of
    /// that tenant), `weight:<tenant>` (fair share), and `rate:<tenant>` / `burst:<tenant>` (the tenant's submit rate limit).
    pub fn limits(&self) -> String {
        format!("{}:limits", self.prefix)
    }

    /// Sorted set: live dispatchers, scored by their last heartbeat in ms since the epoch.
    pub fn dispatchers(&self) -> String {
        format!("{}:dispatchers", self.prefix)
    }

    /// String, expiring: one dispatcher's admissions of the last minute and its in-flight count, as JSON
    /// (`dispatcher_stats`), for the queue view.
    pub fn dispatcher_stats(&self, dispatcher: &str) -> String {
        format!("{}:dispatcher-stats:{dispatcher}", self.prefix)
    }

    /// Stream: status events from executors and runners (started, progress, finished); group `status`.
    pub fn status(&self) -> String {
        format!("{}:status", self.prefix)
    }

    /// Stream: one execution's progress and log events, read by the API's Server-Sent Events endpoint.
    pub fn progress(&self, execution: &str) -> String {
        format!("{}:status:{execution}", self.prefix)
    }

    /// Stream: queue messages that failed too often, with the reason.
    pub fn dead_letters(&self) -> String {
        format!("{}:dead", self.prefix)
    }

    /// String with expiry: set while a cancellation of the execution is pending.
    pub fn cancel(&self, execution: &str) -> String {
        format!("{}:cancel:{execution}", self.prefix)
    }

    /// Sorted set: executions backing off before their next attempt, scored by when it is due (ms since the
    /// epoch). They hold no concurrency slot meanwhile.
    pub fn retrying(&self) -> String {
        format!("{}:retrying", self.prefix)
    }

    /// Hash: the queue message (same fields as a lane entry) of one execution waiting in `retrying`.
    pub fn retry(&self, execution: &str) -> String {
        format!("{}:retry:{execution}", self.prefix)
    }

    /// Hash with expiry: one tenant's submit rate bucket, `tokens` (fractional) as of `at` (µs since the epoch);
    /// it expires when the bucket is full again.
    pub fn submit_rate(&self, tenant: &str) -> String {
        format!("{}:submit-rate:{tenant}", self.prefix)
    }

    /// Set: what of one tenant is paused: `*` (the whole tenant) and names of its workflows. Admission takes
    /// nothing paused; PostgreSQL keeps the durable copy (`paused`) and the reconciler restores it.
    pub fn paused(&self, tenant: &str) -> String {
        format!("{}:paused:{tenant}", self.prefix)
    }

    /// Pub/sub channel (not a key): published when work is enqueued or a slot is released, so idle
    /// dispatchers try admission at once instead of at their next poll.
    pub fn wake(&self) -> String {
        format!("{}:wake", self.prefix)
    }
}

/// The sample names [`Keys::catalogue`] builds its keys with.
pub const SAMPLE_TENANT: &str = "acme";
pub const SAMPLE_WORKFLOW: &str = "report";
pub const SAMPLE_EXECUTION: &str = "0190a1b2-0000-7000-8000-000000000001";
pub const SAMPLE_PRIORITY: u8 = 5;
pub const SAMPLE_DISPATCHER: &str = "dispatcher-1";

impl Keys {
    /// One example of every key, built with the sample tenant, workflow, execution and priority above. The
    /// documentation test checks each against docs/redis.md, and the script contract tests check the Lua key
    /// builders (`prelude.lua`) against it and every key a script leaves behind, so a new key function must be
    /// added here.
    pub fn catalogue(&self) -> Vec<String> {
        let (tenant, workflow, execution) = (SAMPLE_TENANT, SAMPLE_WORKFLOW, SAMPLE_EXECUTION);
        vec![
            self.lane(tenant, SAMPLE_PRIORITY),
            self.tenants(),
            self.lanes(tenant),
            self.queued(),
            self.turn(),
            self.active(),
            self.active_tenant(tenant),
            self.active_workflow(tenant, workflow),
            self.lease(execution),
            self.limits(),
            self.dispatchers(),
            self.dispatcher_stats(SAMPLE_DISPATCHER),
            self.status(),
            self.progress(execution),
            self.dead_letters(),
            self.cancel(execution),
            self.retrying(),
            self.retry(execution),
            self.wake(),
            self.submit_rate(tenant),
            self.paused(tenant),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_carries_the_prefix() {
        let catalogue = Keys::new("fl").catalogue();
        assert_eq!(catalogue.len(), 21, "a key was added or removed: update this count and docs/redis.md");
        let distinct: std::collections::BTreeSet<&String> = catalogue.iter().collect();
        assert_eq!(distinct.len(), catalogue.len(), "two key functions build the same key");
        for key in &catalogue {
            assert!(key.starts_with("fl:"), "{key}");
        }
    }
}
