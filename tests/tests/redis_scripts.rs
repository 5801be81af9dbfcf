//! The contract tier of the Redis protocol (`flow_like_shared::protocol`): each case drives the scripts
//! directly against a real Redis under a fresh key prefix, with no API, dispatcher or PostgreSQL, and checks what
//! they leave behind. Each takes milliseconds; the table at the bottom lists them.
//!
//! Two checks tie the scripts to the key space: the Lua key builders (`prelude.lua`) must build exactly the keys
//! of `Keys::catalogue()`, and after every case each key under the prefix must match a catalogue key.

use flow_like_shared::protocol::keys::STATUS_GROUP;
use flow_like_shared::protocol::keys::{
    SAMPLE_DISPATCHER, SAMPLE_EXECUTION, SAMPLE_PRIORITY, SAMPLE_TENANT, SAMPLE_WORKFLOW,
};
use flow_like_shared::protocol::limits::{self, DefaultLimits, TenantOverrides};
use flow_like_shared::protocol::scripts::{self, PRELUDE};
use flow_like_shared::protocol::streams::{self, Settle};
use flow_like_shared::protocol::submit_rate::{self, Charge, RateDefaults};
use flow_like_shared::protocol::{
    self, AdmitStop, DISPATCH_GROUP, Keys, QueueBody, QueueMessage, Renewal, connect_lazy,
};
use flow_like_test_services::TestServices;
use futures::future::BoxFuture;
use redis::aio::ConnectionManager;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

const TTL: Duration = Duration::from_secs(30);

/// One case's Redis: a connection and the keys of its own prefix.
struct Ctx {
    conn: ConnectionManager,
    keys: Keys,
}

impl Ctx {
    async fn new() -> Self {
        let services = TestServices::get().await.unwrap();
        let config = flow_like_test_services::redis_config(&services.redis_url(), &services.fresh_prefix());
        let keys = Keys::new(config.prefix.clone());
        Self { conn: connect_lazy(&config).unwrap(), keys }
    }

    async fn limits(&mut self, global: u32, tenant: u32, workflow: u32) {
        let limits = DefaultLimits { global, tenant, workflow, priority_aging_ms: 0 };
        limits::publish_defaults(&mut self.conn, &self.keys, limits).await.unwrap();
    }

    /// Enqueues a first attempt of a new execution and returns its id.
    async fn enqueue(&mut self, tenant: &str, workflow: &str, priority: u8) -> Uuid {
        let message = message(tenant, workflow, priority);
        protocol::enqueue(&mut self.conn, &self.keys, &message).await.unwrap();
        message.execution_id
    }

    /// Admits for `dispatcher`; returns the stop reason and the admitted execution ids in order.
    async fn admit(&mut self, dispatcher: &str, max: usize) -> (AdmitStop, Vec<Uuid>) {
        self.admit_with_ttl(dispatcher, max, TTL).await
    }

    async fn admit_with_ttl(&mut self, dispatcher: &str, max: usize, ttl: Duration) -> (AdmitStop, Vec<Uuid>) {
        let (stop, admitted) = protocol::admit(&mut self.conn, &self.keys, dispatcher, ttl, max).await.unwrap();
        (stop, admitted.iter().map(|a| a.message().unwrap().execution_id).collect())
    }

    /// Appends `n` entries to the stream `key`; returns their ids.
    async fn xadd(&mut self, key: &str, n: u32) -> Vec<String> {
        let mut ids = Vec::new();
        for i in 0..n {
            ids.push(redis::cmd("XADD").arg(key).arg("*").arg("n").arg(i).query_async(&mut self.conn).await.unwrap());
        }
        ids
    }

    async fn stream_ids(&mut self, key: &str) -> Vec<String> {
        let entries: Vec<(String, BTreeMap<String, String>)> =
            redis::cmd("XRANGE").arg(key).arg("-").arg("+").query_async(&mut self.conn).await.unwrap();
        entries.into_iter().map(|(id, _)| id).collect()
    }

    async fn ttl(&mut self, key: &str) -> i64 {
        redis::cmd("TTL").arg(key).query_async(&mut self.conn).await.unwrap()
    }

    async fn zcard(&mut self, key: &str) -> u64 {
        redis::cmd("ZCARD").arg(key).query_async(&mut self.conn).await.unwrap()
    }

    async fn score(&mut self, key: &str, member: Uuid) -> Option<f64> {
        redis::cmd("ZSCORE").arg(key).arg(member.to_string()).query_async(&mut self.conn).await.unwrap()
    }

    async fn lease(&mut self, id: Uuid) -> BTreeMap<String, String> {
        redis::cmd("HGETALL").arg(self.keys.lease(&id.to_string())).query_async(&mut self.conn).await.unwrap()
    }

    async fn dead_letters(&mut self) -> Vec<protocol::DeadLetter> {
        protocol::dead_letter::dead_letters(&mut self.conn, &self.keys, None, 100).await.unwrap()
    }

    /// Every key under this case's prefix must be one the catalogue names (sample names as wildcards).
    async fn assert_only_catalogued_keys(&mut self) {
        let pattern = format!("{}:*", self.keys.prefix());
        let present: Vec<String> = redis::cmd("KEYS").arg(&pattern).query_async(&mut self.conn).await.unwrap();
        let shapes = shapes(&self.keys);
        for key in present {
            assert!(shapes.iter().any(|shape| shape_matches(shape, &key)), "{key} is not a key of Keys::catalogue()");
        }
    }
}

fn message(tenant: &str, workflow: &str, priority: u8) -> QueueMessage {
    QueueMessage {
        execution_id: Uuid::now_v7(),
        tenant: tenant.into(),
        workflow: workflow.into(),
        priority,
        attempt: 1,
        queued_at_ms: protocol::now_ms(),
        body: QueueBody { workflow_version: None, labels: BTreeMap::new(), traceparent: None },
    }
}

/// The catalogue's keys with the sample names turned into wildcards (`*` stands for one key segment part).
fn shapes(keys: &Keys) -> Vec<String> {
    keys.catalogue()
        .into_iter()
        .map(|key| {
            key.replace(SAMPLE_EXECUTION, "*")
                .replace(&format!(":{SAMPLE_TENANT}"), ":*")
                .replace(&format!(":{SAMPLE_WORKFLOW}"), ":*")
                .replace(&format!(":p{SAMPLE_PRIORITY}"), ":p*")
                .replace(&format!(":{SAMPLE_DISPATCHER}"), ":*")
        })
        .collect()
}

/// Whether `key` fits `shape` segment by segment (`:`-separated): `*` is any non-empty segment, `p*` a segment
/// starting with `p` and longer, anything else itself. (Tenant and workflow names hold no `:`.)
fn shape_matches(shape: &str, key: &str) -> bool {
    let (shape, key): (Vec<&str>, Vec<&str>) = (shape.split(':').collect(), key.split(':').collect());
    shape.len() == key.len()
        && shape.iter().zip(&key).all(|(s, k)| match s.strip_suffix('*') {
            Some(stem) => k.len() > stem.len() && k.starts_with(stem),
            None => s == k,
        })
}

// ---- the cases ----

/// A tenant at its limit is skipped and the next tenant is served; its work stays queued for later.
fn tenant_at_limit_is_skipped(mut c: Ctx) -> BoxFuture<'static, Ctx> {
    Box::pin(async move {
        c.limits(10, 1, 0).await;
        let a1 = c.enqueue("acme", "report", 5).await;
        assert_eq!(c.admit("d1", 10).await, (AdmitStop::Idle, vec![a1]));
        let a2 = c.enqueue("acme", "report", 5).await;
        let b1 = c.enqueue("globex", "report", 5).await;
        assert_eq!(c.admit("d1", 10).await, (AdmitStop::Idle, vec![b1]), "acme is at its limit of 1");
        let tenant_active = c.keys.active_tenant("acme");
        assert_eq!(c.zcard(&tenant_active).await, 1);
        // A per-tenant override counts instead of the default.
        limits::publish_tenant(
            &mut c.conn,
            &c.keys,
            "acme",
            TenantOverrides { concurrency_limit: Some(2), ..TenantOverrides::default() },
        )
        .await
        .unwrap();
        assert_eq!(c.admit("d1", 10).await, (AdmitStop::Idle, vec![a2]));
        c
    })
}

/// The per-workflow limit holds back the head of its lane only: a later entry of another workflow in the same
/// lane waits behind it (strict order within a lane), while the tenant's other lanes and other tenants go on.
fn workflow_limit_blocks_its_lane_only(mut c: Ctx) -> BoxFuture<'static, Ctx> {
    Box::pin(async move {
        c.limits(100, 100, 1).await;
        let x1 = c.enqueue("acme", "x", 5).await;
        let x2 = c.enqueue("acme", "x", 5).await;
        let y3 = c.enqueue("acme", "y", 5).await;
        let z4 = c.enqueue("acme", "z", 3).await;
        let x5 = c.enqueue("globex", "x", 5).await;
        let (stop, mut admitted) = c.admit("d1", 10).await;
        assert_eq!(stop, AdmitStop::Idle);
        admitted.sort();
        let mut expected = vec![x1, z4, x5];
        expected.sort();
        assert_eq!(admitted, expected, "x2 blocks its lane (and y3 behind it); p3 and globex are unaffected");
        assert_eq!(c.zcard(&c.keys.active_workflow("acme", "x")).await, 1);
        // The blocked lane is not dropped from the tenant's lanes: it is served once x has room.
        protocol::release(&mut c.conn, &c.keys, "d1", &[x1]).await.unwrap();
        // x2 goes, and y3 behind it (workflow y is below its limit) in the next pass.
        assert_eq!(c.admit("d1", 10).await, (AdmitStop::Idle, vec![x2, y3]));
        c
    })
}

/// An entry cancelled while it waits is dropped at admission without taking a slot.
fn cancelled_entry_takes_no_slot(mut c: Ctx) -> BoxFuture<'static, Ctx> {
    Box::pin(async move {
        c.limits(1, 1, 0).await;
        let cancelled = c.enqueue("acme", "report", 5).await;
        let next = c.enqueue("acme", "report", 5).await;
        protocol::request_cancel(&mut c.conn, &c.keys, cancelled).await.unwrap();
        assert_eq!(c.admit("d1", 10).await, (AdmitStop::Global, vec![next]), "the global limit of 1 went to `next`");
        let queued: bool = redis::cmd("HEXISTS")
            .arg(c.keys.queued())
            .arg(cancelled.to_string())
            .query_async(&mut c.conn)
            .await
            .unwrap();
        assert!(!queued, "the cancelled entry left the queued index");
        assert!(c.lease(cancelled).await.is_empty());
        let lane_length: u64 = redis::cmd("XLEN").arg(c.keys.lane("acme", 5)).query_async(&mut c.conn).await.unwrap();
        assert_eq!(lane_length, 1, "only the admitted entry is left (pending until released)");
        c
    })
}

/// An entry that is not a queue message is dead-lettered and does not block the lane.
fn malformed_entry_is_dead_lettered(mut c: Ctx) -> BoxFuture<'static, Ctx> {
    Box::pin(async move {
        c.limits(10, 10, 0).await;
        let lane = c.keys.lane("acme", 5);
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&lane)
            .arg(DISPATCH_GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut c.conn)
            .await
            .unwrap();
        let _: String =
            redis::cmd("XADD").arg(&lane).arg("*").arg("junk").arg("1").query_async(&mut c.conn).await.unwrap();
        let good = c.enqueue("acme", "report", 5).await;
        assert_eq!(c.admit("d1", 10).await, (AdmitStop::Idle, vec![good]));
        let dead = c.dead_letters().await;
        assert_eq!(dead.len(), 1);
        assert!(dead[0].reason.contains("malformed"), "{}", dead[0].reason);
        assert_eq!(c.zcard(&c.keys.active()).await, 1, "the junk took no slot");
        c
    })
}

/// A takeover keeps the slot (no other execution can take it meanwhile), moves the lease and the pending entry
/// to the new holder and counts the delivery.
fn takeover_keeps_the_slot(mut c: Ctx) -> BoxFuture<'static, Ctx> {
    Box::pin(async move {
        c.limits(1, 1, 0).await;
        let id = c.enqueue("acme", "report", 5).await;
        assert_eq!(c.admit_with_ttl("d1", 1, Duration::ZERO).await.1, vec![id]);
        let waiting = c.enqueue("acme", "report", 5).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let taken = protocol::take_over(&mut c.conn, &c.keys, "d2", TTL, 10).await.unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].execution_id, id.to_string());
        assert_eq!((taken[0].deliveries, taken[0].previous_holder.as_str()), (2, "d1"));
        assert!(!taken[0].fields.is_empty(), "the lane entry came along");
        assert_eq!(c.lease(id).await.get("dispatcher").map(String::as_str), Some("d2"));
        assert!(c.score(&c.keys.active(), id).await.unwrap() > protocol::now_ms() as f64, "renewed to d2's TTL");
        let pending: redis::Value = redis::cmd("XPENDING")
            .arg(c.keys.lane("acme", 5))
            .arg(DISPATCH_GROUP)
            .arg("-")
            .arg("+")
            .arg(10)
            .arg("d2")
            .query_async(&mut c.conn)
            .await
            .unwrap();
        assert!(matches!(&pending, redis::Value::Array(entries) if entries.len() == 1), "{pending:?}");
        assert_eq!(c.admit("d3", 10).await, (AdmitStop::Global, vec![]), "the slot is still taken");
        assert_eq!(protocol::release(&mut c.conn, &c.keys, "d2", &[id]).await.unwrap(), 1);
        assert_eq!(c.admit("d3", 10).await.1, vec![waiting]);
        c
    })
}

/// Release, renew and hand back by a dispatcher that does not hold the lease change nothing.
fn non_owner_changes_nothing(mut c: Ctx) -> BoxFuture<'static, Ctx> {
    Box::pin(async move {
        c.limits(10, 10, 0).await;
        let id = c.enqueue("acme", "report", 5).await;
        c.admit("d1", 10).await;
        let lease = c.lease(id).await;
        let score = c.score(&c.keys.active(), id).await;
        assert_eq!(protocol::release(&mut c.conn, &c.keys, "d2", &[id]).await.unwrap(), 0);
        assert_eq!(protocol::renew(&mut c.conn, &c.keys, "d2", &[id], TTL * 10).await.unwrap(), vec![Renewal::Lost]);
        assert!(!protocol::hand_back(&mut c.conn, &c.keys, "d2", id).await.unwrap());
        let mut next = message("acme", "report", 5);
        next.execution_id = id;
        assert!(!protocol::schedule_retry(&mut c.conn, &c.keys, "d2", &next, 0).await.unwrap());
        assert_eq!(c.lease(id).await, lease);
        assert_eq!(c.score(&c.keys.active(), id).await, score);
        assert_eq!(c.score(&c.keys.active_tenant("acme"), id).await, score);
        assert_eq!(c.zcard(&c.keys.retrying()).await, 0);
        // The owner's renewal works and sees a cancellation request.
        assert_eq!(protocol::renew(&mut c.conn, &c.keys, "d1", &[id], TTL).await.unwrap(), vec![Renewal::Renewed]);
        protocol::request_cancel(&mut c.conn, &c.keys, id).await.unwrap();
        assert_eq!(
            protocol::renew(&mut c.conn, &c.keys, "d1", &[id], TTL).await.unwrap(),
            vec![Renewal::CancelRequested]
        );
        c
    })
}

/// Handing a lease back expires it now, so the next takeover pass moves it, slot and all.
fn hand_back_expires_the_lease(mut c: Ctx) -> BoxFuture<'static, Ctx> {
    Box::pin(async move {
        c.limits(10, 10, 0).await;
        let id = c.enqueue("acme", "report", 5).await;
        c.admit("d1", 10).await;
        assert!(protocol::take_over(&mut c.conn, &c.keys, "d2", TTL, 10).await.unwrap().is_empty(), "not expired");
        assert!(protocol::hand_back(&mut c.conn, &c.keys, "d1", id).await.unwrap());
        assert_eq!(c.score(&c.keys.active_workflow("acme", "report"), id).await, Some(0.0));
        let taken = protocol::take_over(&mut c.conn, &c.keys, "d2", TTL, 10).await.unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(c.zcard(&c.keys.active()).await, 1);
        c
    })
}

/// A delayed attempt frees its slot during the backoff and comes back, as the next attempt, once due.
fn delay_then_promote(mut c: Ctx) -> BoxFuture<'static, Ctx> {
    Box::pin(async move {
        c.limits(10, 10, 0).await;
        let id = c.enqueue("acme", "report", 5).await;
        c.admit("d1", 10).await;
        let mut next = message("acme", "report", 5);
        next.execution_id = id;
        next.attempt = 2;
        let later = protocol::now_ms() + 60_000;
        assert!(protocol::schedule_retry(&mut c.conn, &c.keys, "d1", &next, later).await.unwrap());
        assert_eq!(c.zcard(&c.keys.active()).await, 0, "no slot during the backoff");
        assert!(c.lease(id).await.is_empty());
        assert_eq!(protocol::promote_due(&mut c.conn, &c.keys, 10).await.unwrap(), 0, "not due yet");
        // Due now (scheduled again with a past time, as the clock would make it).
        let _: () = redis::cmd("ZADD")
            .arg(c.keys.retrying())
            .arg(0)
            .arg(id.to_string())
            .query_async(&mut c.conn)
            .await
            .unwrap();
        assert_eq!(protocol::promote_due(&mut c.conn, &c.keys, 10).await.unwrap(), 1);
        assert_eq!(protocol::promote_due(&mut c.conn, &c.keys, 10).await.unwrap(), 0, "promoted once");
        let (_, admitted) = protocol::admit(&mut c.conn, &c.keys, "d1", TTL, 10).await.unwrap();
        assert_eq!(admitted.len(), 1);
        let message = admitted[0].message().unwrap();
        assert_eq!((message.execution_id, message.attempt), (id, 2));
        assert_eq!(c.zcard(&c.keys.retrying()).await, 0);
        c
    })
}

/// Withdrawing takes a waiting execution out of its lane and a pending retry out of the schedule.
fn withdraw_removes_waiting_work(mut c: Ctx) -> BoxFuture<'static, Ctx> {
    Box::pin(async move {
        c.limits(10, 10, 0).await;
        let id = c.enqueue("acme", "report", 5).await;
        let withdrawn = protocol::withdraw(&mut c.conn, &c.keys, id).await.unwrap();
        assert!(withdrawn.from_lane && !withdrawn.from_retrying);
        assert_eq!(c.admit("d1", 10).await, (AdmitStop::Idle, vec![]));
        assert_eq!(
            protocol::withdraw(&mut c.conn, &c.keys, id).await.unwrap(),
            protocol::Withdrawn { from_lane: false, from_retrying: false }
        );
        c
    })
}

/// Within one call, every admission counts against the limits at once, tenants of equal weight alternate, and
/// the fair-share tags the call leaves behind put the tenant served last at the back.
fn one_call_counts_and_alternates(mut c: Ctx) -> BoxFuture<'static, Ctx> {
    Box::pin(async move {
        c.limits(100, 2, 0).await;
        let mut acme = Vec::new();
        for _ in 0..4 {
            acme.push(c.enqueue("acme", "report", 5).await);
        }
        let globex = c.enqueue("globex", "report", 5).await;
        let (stop, admitted) = c.admit("d1", 10).await;
        assert_eq!(stop, AdmitStop::Idle);
        assert_eq!(admitted.len(), 3, "acme's limit of 2 holds inside one call: {admitted:?}");
        assert_eq!(admitted.iter().filter(|id| acme.contains(id)).count(), 2);
        assert_eq!(admitted[1], globex, "the two tenants alternate");
        assert_eq!(c.zcard(&c.keys.active_tenant("acme")).await, 2);
        // acme (tag 0 -> 1), globex (0 -> 1), acme again (starts at 1, tag 2): the virtual time is 1.
        let vtime: f64 = redis::cmd("GET").arg(c.keys.turn()).query_async(&mut c.conn).await.unwrap();
        assert_eq!(vtime, 1.0);
        let scores: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(c.keys.tenants())
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut c.conn)
            .await
            .unwrap();
        // globex has no work left and left the fair share; acme was served last.
        assert_eq!(scores, vec![("acme".to_owned(), 2.0)]);
        c
    })
}

/// The status pipeline's acknowledgement removes the applied status entries and settles progress streams: one
/// archived through its newest entry is deleted; one that got entries after its archived run keeps only those,
/// with the TTL; one with nothing archived keeps its entries with the TTL; a missing one stays missing.
fn ack_status_settles_progress_streams(mut c: Ctx) -> BoxFuture<'static, Ctx> {
    Box::pin(async move {
        let (done, redriven, unread, missing) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let progress = |id: Uuid| c.keys.progress(&id.to_string());
        let (done_key, redriven_key, unread_key, missing_key) =
            (progress(done), progress(redriven), progress(unread), progress(missing));
        let done_ids = c.xadd(&done_key, 3).await;
        let redriven_ids = c.xadd(&redriven_key, 3).await;
        c.xadd(&unread_key, 2).await;
        let status = c.keys.status();
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&status)
            .arg(STATUS_GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut c.conn)
            .await
            .unwrap();
        let status_ids = c.xadd(&status, 2).await;
        let from = streams::ReadFrom::New { block: Duration::from_millis(10) };
        let read = streams::read_status(&mut c.conn, &c.keys, "d1", from, 10).await.unwrap();
        assert_eq!(read.len(), 2);
        let settle = |execution, through: Option<&String>| Settle { execution, archived_through: through.cloned() };
        let ids: Vec<&str> = status_ids.iter().map(String::as_str).collect();
        let settles = [
            settle(done, done_ids.last()),
            settle(redriven, redriven_ids.get(1)),
            settle(unread, None),
            settle(missing, None),
        ];
        streams::ack_status(&mut c.conn, &c.keys, &ids, &settles, TTL).await.unwrap();
        assert_eq!(c.stream_ids(&status).await.len(), 0, "applied status entries are deleted");
        let pending: Vec<redis::Value> =
            redis::cmd("XPENDING").arg(&status).arg(STATUS_GROUP).query_async(&mut c.conn).await.unwrap();
        assert_eq!(pending.first(), Some(&redis::Value::Int(0)), "and acknowledged: {pending:?}");
        assert_eq!(c.ttl(&done_key).await, -2, "an archived stream is deleted");
        assert_eq!(c.stream_ids(&redriven_key).await, redriven_ids[2..], "only the unarchived entry stays");
        assert_eq!(c.stream_ids(&unread_key).await.len(), 2, "nothing archived, nothing removed");
        for key in [&redriven_key, &unread_key] {
            assert!((1..=30).contains(&c.ttl(key).await), "{key} gets the TTL");
        }
        assert_eq!(c.ttl(&missing_key).await, -2, "no stream is created");
        c
    })
}

/// Weighted fair share: tenants weighted 1:2:4 that all have work split admissions 1:2:4, across calls of any
/// size; a tenant that joins late is served at once but banks no credit for the time it had no work.
fn weights_split_admissions(mut c: Ctx) -> BoxFuture<'static, Ctx> {
    Box::pin(async move {
        c.limits(1000, 1000, 0).await;
        let tenants = [("t-1", 1.0), ("t-2", 2.0), ("t-4", 4.0)];
        let mut owner = std::collections::HashMap::new();
        for (tenant, weight) in tenants {
            let overrides = TenantOverrides { weight: Some(weight), ..TenantOverrides::default() };
            limits::publish_tenant(&mut c.conn, &c.keys, tenant, overrides).await.unwrap();
            for _ in 0..60 {
                owner.insert(c.enqueue(tenant, "report", 5).await, tenant);
            }
        }
        let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
        for batch in [7, 3, 1, 7, 5, 7, 7, 11, 7, 15] {
            let (_, admitted) = c.admit("d1", batch).await;
            assert_eq!(admitted.len(), batch);
            for id in admitted {
                *counts.entry(owner[&id]).or_default() += 1;
            }
        }
        // 70 admissions: 10, 20 and 40 (stride scheduling is exact up to one admission per tenant).
        let expected = [("t-1", 10), ("t-2", 20), ("t-4", 40)];
        for (tenant, want) in expected {
            assert!(counts[tenant].abs_diff(want) <= 1, "{tenant}: {counts:?}");
        }
        let late = c.enqueue("late", "report", 5).await;
        for _ in 0..20 {
            c.enqueue("late", "report", 5).await;
        }
        let (_, admitted) = c.admit("d1", 16).await;
        assert_eq!(admitted[0], late, "a newcomer is served next");
        let late_count = admitted.iter().filter(|id| !owner.contains_key(*id)).count();
        // Weights 1:2:4 and the newcomer's 1: 2 of 16, plus at most one of catch-up.
        assert!((2..=3).contains(&late_count), "the newcomer banked no credit: {late_count} of 16");
        c
    })
}

/// The submit rate script is a token bucket: a full bucket takes `burst` at once, then refuses until a token is
/// due (writing nothing), and refills at the rate; a tenant override replaces the defaults; no limit writes nothing.
fn submit_rate_is_a_token_bucket(mut c: Ctx) -> BoxFuture<'static, Ctx> {
    Box::pin(async move {
        let defaults = RateDefaults { rate: 20.0, burst: 3 };
        let bucket_key = c.keys.submit_rate(SAMPLE_TENANT);
        for remaining in [2, 1, 0] {
            let charge = submit_rate::charge(&mut c.conn, &c.keys, SAMPLE_TENANT, defaults).await.unwrap();
            let Charge::Allowed(bucket) = charge else { panic!("allowed, not {charge:?}") };
            assert_eq!((bucket.burst, bucket.remaining), (3, remaining));
        }
        let before: BTreeMap<String, String> =
            redis::cmd("HGETALL").arg(&bucket_key).query_async(&mut c.conn).await.unwrap();
        let charge = submit_rate::charge(&mut c.conn, &c.keys, SAMPLE_TENANT, defaults).await.unwrap();
        let Charge::Refused { bucket, retry_in } = charge else { panic!("refused, not {charge:?}") };
        assert_eq!(bucket.remaining, 0);
        assert!(retry_in > Duration::ZERO && retry_in <= Duration::from_millis(50), "{retry_in:?}");
        assert!(bucket.full_in > Duration::from_millis(100) && bucket.full_in <= Duration::from_millis(150));
        let after: BTreeMap<String, String> =
            redis::cmd("HGETALL").arg(&bucket_key).query_async(&mut c.conn).await.unwrap();
        assert_eq!(before, after, "a refusal writes nothing");
        tokio::time::sleep(retry_in + Duration::from_millis(2)).await;
        let charge = submit_rate::charge(&mut c.conn, &c.keys, SAMPLE_TENANT, defaults).await.unwrap();
        assert!(matches!(charge, Charge::Allowed(_)), "a token came back: {charge:?}");
        let pttl: i64 = redis::cmd("PTTL").arg(&bucket_key).query_async(&mut c.conn).await.unwrap();
        assert!((100..=150).contains(&pttl), "kept until full again: {pttl} ms");

        // A tenant's own limit replaces the defaults from the next charge on: the faster rate refills the tokens
        // that are there (a few ms at 1,000/s), the burst caps them. Without any limit nothing is written.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let overrides =
            TenantOverrides { submit_rate: Some(1000.0), submit_burst: Some(7), ..TenantOverrides::default() };
        limits::publish_tenant(&mut c.conn, &c.keys, SAMPLE_TENANT, overrides).await.unwrap();
        let charge = submit_rate::charge(&mut c.conn, &c.keys, SAMPLE_TENANT, defaults).await.unwrap();
        assert!(matches!(charge, Charge::Allowed(b) if b.burst == 7), "{charge:?}");
        let off = RateDefaults { rate: 0.0, burst: 0 };
        assert_eq!(submit_rate::charge(&mut c.conn, &c.keys, "other", off).await.unwrap(), Charge::Unlimited);
        assert_eq!(c.ttl(&c.keys.submit_rate("other")).await, -2, "no bucket for an unlimited tenant");
        c
    })
}

/// Priority aging: with one level per second of waiting, a priority-0 entry that has waited 10 s goes before a
/// fresh priority-9 one, one that has waited 5 s does not; with aging off, priority is strict.
fn aging_lifts_waiting_entries(mut c: Ctx) -> BoxFuture<'static, Ctx> {
    Box::pin(async move {
        let enqueue_aged = async |c: &mut Ctx, priority: u8, waited_ms: i64| {
            let mut m = message(SAMPLE_TENANT, "report", priority);
            m.queued_at_ms -= waited_ms;
            protocol::enqueue(&mut c.conn, &c.keys, &m).await.unwrap();
            m.execution_id
        };
        let aging = |ms| DefaultLimits { global: 100, tenant: 100, workflow: 0, priority_aging_ms: ms };
        limits::publish_defaults(&mut c.conn, &c.keys, aging(1000)).await.unwrap();
        let old_low = enqueue_aged(&mut c, 0, 10_000).await;
        let fresh_high = enqueue_aged(&mut c, 9, 0).await;
        assert_eq!(c.admit("d1", 1).await.1, [old_low], "0 + 10 s of waiting ranks above 9");
        assert_eq!(c.admit("d1", 1).await.1, [fresh_high]);

        let younger_low = enqueue_aged(&mut c, 0, 5_000).await;
        let fresh_high = enqueue_aged(&mut c, 9, 0).await;
        let (_, both) = c.admit("d1", 2).await;
        assert_eq!(both, [fresh_high, younger_low], "0 + 5 s ranks below 9");

        limits::publish_defaults(&mut c.conn, &c.keys, aging(0)).await.unwrap();
        let very_old_low = enqueue_aged(&mut c, 0, 3_600_000).await;
        let fresh_high = enqueue_aged(&mut c, 9, 0).await;
        assert_eq!(c.admit("d1", 2).await.1, [fresh_high, very_old_low], "without aging, priority is strict");
        c
    })
}

type Case = fn(Ctx) -> BoxFuture<'static, Ctx>;

const CASES: &[(&str, Case)] = &[
    ("a tenant at its limit is skipped and the next served", tenant_at_limit_is_skipped),
    ("one call counts every admission and alternates tenants", one_call_counts_and_alternates),
    ("the per-workflow limit blocks its lane only", workflow_limit_blocks_its_lane_only),
    ("a cancelled entry takes no slot", cancelled_entry_takes_no_slot),
    ("a malformed entry is dead-lettered", malformed_entry_is_dead_lettered),
    ("takeover keeps the slot and counts the delivery", takeover_keeps_the_slot),
    ("release, renew, hand back and delay by a non-owner change nothing", non_owner_changes_nothing),
    ("hand back expires the lease for the next takeover", hand_back_expires_the_lease),
    ("delay, then promote once due", delay_then_promote),
    ("withdraw removes waiting work", withdraw_removes_waiting_work),
    ("the status acknowledgement settles progress streams", ack_status_settles_progress_streams),
    ("the submit rate script is a token bucket", submit_rate_is_a_token_bucket),
    ("weights split admissions and newcomers bank no credit", weights_split_admissions),
    ("aging lifts waiting entries above fresher higher priorities", aging_lifts_waiting_entries),
];

#[tokio::test]
async fn every_script_case_holds() {
    for (name, case) in CASES {
        let started = Instant::now();
        let ctx = Ctx::new().await;
        let mut ctx = tokio::time::timeout(Duration::from_secs(10), case(ctx))
            .await
            .unwrap_or_else(|_| panic!("case {name:?} timed out"));
        ctx.assert_only_catalogued_keys().await;
        eprintln!("{name}: {} ms", started.elapsed().as_millis());
    }
}

#[tokio::test]
async fn every_script_compiles_and_the_lua_keys_are_the_catalogue() {
    let mut c = Ctx::new().await;
    scripts::load_all(&mut c.conn).await.unwrap();
    let (tenant, workflow, execution, priority) = (SAMPLE_TENANT, SAMPLE_WORKFLOW, SAMPLE_EXECUTION, SAMPLE_PRIORITY);
    // The same keys, in the same order, as Keys::catalogue().
    let probe = format!(
        "{PRELUDE}\nPREFIX = ARGV[1]\nlocal t, w, e, p, d = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]\nreturn \
         {{K.lane(t, p), K.tenants(), K.lanes(t), K.queued(), K.turn(), K.active(), K.active_tenant(t), \
         K.active_workflow(t, w), K.lease(e), K.limits(), K.dispatchers(), K.dispatcher_stats(d), K.status(), \
         K.progress(e), K.dead_letters(), K.cancel(e), K.retrying(), K.retry(e), K.wake(), K.submit_rate(t), \
         K.paused(t)}}"
    );
    let lua: Vec<String> = redis::Script::new(&probe)
        .arg(c.keys.prefix())
        .arg(tenant)
        .arg(workflow)
        .arg(execution)
        .arg(priority)
        .arg(SAMPLE_DISPATCHER)
        .invoke_async(&mut c.conn)
        .await
        .unwrap();
    assert_eq!(lua, c.keys.catalogue());
    let builders = PRELUDE.lines().filter(|line| line.starts_with("function K.")).count();
    assert_eq!(builders, c.keys.catalogue().len(), "one Lua builder per catalogue key");
}

/// Scripts build keys only through the prelude's builders (or take them as KEYS), never by concatenating
/// names: a renamed key then changes in two places a test compares, not in nine scripts.
#[test]
fn scripts_build_no_keys_of_their_own() {
    for script in scripts::ALL {
        for (number, line) in script.body.lines().enumerate() {
            let code = line.split("--").next().unwrap_or_default();
            let builds_key = code.contains("PREFIX ..") || code.contains("prefix ..") || code.contains("ARGV[1] ..");
            assert!(!builds_key, "{}.lua line {}: builds a key by hand: {line}", script.name, number + 1);
        }
    }
}

#[test]
fn shapes_match_as_intended() {
    assert!(shape_matches("fl:queue:*:p*", "fl:queue:acme:p5"));
    assert!(shape_matches("fl:active:workflow:*:*", "fl:active:workflow:acme:report"));
    assert!(!shape_matches("fl:active:workflow:*:*", "fl:active:workflow:acme"));
    assert!(shape_matches("fl:status:*", "fl:status:0190a1b2-0000-7000-8000-000000000001"));
    assert!(!shape_matches("fl:status", "fl:status:x"));
    assert!(!shape_matches("fl:lease:*", "fl:lease:"));
}
