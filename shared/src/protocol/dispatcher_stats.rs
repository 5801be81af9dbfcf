//! What each dispatcher admitted in the last minute, per tenant and workflow, with how long the work had
//! waited; and how many attempts it runs. The queue view (`GET /api/v1/queue`) merges them across the live
//! dispatchers: "admitted in the last minute" and the queue-wait p50/p99.
//!
//! Nothing of this is on the admission path's Redis calls: a dispatcher counts its admissions in memory
//! ([`AdmissionWindow`]) and writes the window as one JSON document, `{prefix}:dispatcher-stats:{id}`, every
//! [`PUBLISH_EVERY`] (a `SET` with an expiry of [`WINDOW`], so a dead dispatcher's last minute fades with the
//! minute it describes). Waits go in histogram buckets a quarter of a power of two wide (each bucket's upper
//! bound is 2^(1/4) ≈ 1.19 times its lower one), so a percentile read from the merged buckets is the upper
//! bound of the bucket it falls in: at most 19% above the true value. The window moves in [`SLOT`] steps: it
//! covers between 55 and 60 seconds.

use super::keys::Keys;
use super::message::QueueError;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

/// The span the admissions are counted over.
pub const WINDOW: Duration = Duration::from_secs(60);
/// The step the window moves in.
pub const SLOT: Duration = Duration::from_secs(5);
/// How often a dispatcher writes its window.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(2);

/// Buckets per power of two.
const STEPS_PER_OCTAVE: f64 = 4.0;

/// The bucket of a wait: 0 for less than 1 ms, else 1 + floor(4 log2(ms)).
pub fn bucket(wait_ms: u64) -> u16 {
    if wait_ms == 0 { 0 } else { 1 + ((wait_ms as f64).log2() * STEPS_PER_OCTAVE).floor() as u16 }
}

/// The largest wait (ms) bucket `b` holds.
pub fn upper_ms(b: u16) -> f64 {
    if b == 0 { 1.0 } else { 2f64.powf(f64::from(b) / STEPS_PER_OCTAVE) }
}

/// Waits counted per bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitHistogram(pub BTreeMap<u16, u64>);

impl WaitHistogram {
    pub fn record(&mut self, wait_ms: u64) {
        *self.0.entry(bucket(wait_ms)).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Self) {
        for (b, n) in &other.0 {
            *self.0.entry(*b).or_default() += n;
        }
    }

    pub fn count(&self) -> u64 {
        self.0.values().sum()
    }

    /// The wait (ms) at quantile `q` (0..=1): the upper bound of its bucket; None when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        // The rank of the q-th wait, counting from 1 (the nearest-rank definition).
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        self.0.iter().find_map(|(b, n)| {
            seen += n;
            (seen >= rank).then(|| upper_ms(*b))
        })
    }
}

/// Admissions of one workflow of one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admissions {
    pub admitted: u64,
    pub waits: WaitHistogram,
}

impl Admissions {
    pub fn merge(&mut self, other: &Self) {
        self.admitted += other.admitted;
        self.waits.merge(&other.waits);
    }
}

/// One dispatcher's document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatcherStats {
    /// When it was written (ms since the epoch).
    pub at_ms: i64,
    /// Attempts the dispatcher runs now.
    pub in_flight: u64,
    /// What it admitted in the window.
    pub admitted: AdmittedByWorkflow,
}

/// Tenant -> workflow -> admissions, as a document holds them.
pub type AdmittedByWorkflow = BTreeMap<String, BTreeMap<String, Admissions>>;

/// One slot of the window: its start (ms) and tenant -> workflow -> admissions.
type Slot = (i64, HashMap<String, HashMap<String, Admissions>>);

/// A dispatcher's admissions over the last [`WINDOW`], in [`SLOT`]s.
#[derive(Debug, Default)]
pub struct AdmissionWindow {
    /// Oldest first.
    slots: VecDeque<Slot>,
}

impl AdmissionWindow {
    fn slot_start(now_ms: i64) -> i64 {
        let slot = SLOT.as_millis() as i64;
        now_ms - now_ms.rem_euclid(slot)
    }

    fn expire(&mut self, now_ms: i64) {
        let oldest = Self::slot_start(now_ms) - WINDOW.as_millis() as i64 + SLOT.as_millis() as i64;
        while self.slots.front().is_some_and(|(start, _)| *start < oldest) {
            self.slots.pop_front();
        }
    }

    /// Counts one admission that had waited `wait_ms`.
    pub fn record(&mut self, now_ms: i64, tenant: &str, workflow: &str, wait_ms: u64) {
        let start = Self::slot_start(now_ms);
        if self.slots.back().is_none_or(|(s, _)| *s < start) {
            self.slots.push_back((start, HashMap::new()));
            self.expire(now_ms);
        }
        let Some((_, slot)) = self.slots.back_mut() else { return };
        // Names are allocated once per slot, not per admission.
        if !slot.contains_key(tenant) {
            slot.insert(tenant.to_owned(), HashMap::new());
        }
        let Some(workflows) = slot.get_mut(tenant) else { return };
        if !workflows.contains_key(workflow) {
            workflows.insert(workflow.to_owned(), Admissions::default());
        }
        let Some(admissions) = workflows.get_mut(workflow) else { return };
        admissions.admitted += 1;
        admissions.waits.record(wait_ms);
    }

    /// Everything admitted in the window, merged.
    pub fn snapshot(&mut self, now_ms: i64) -> AdmittedByWorkflow {
        self.expire(now_ms);
        let mut all = AdmittedByWorkflow::new();
        for (_, slot) in &self.slots {
            for (tenant, workflows) in slot {
                let into = all.entry(tenant.clone()).or_default();
                for (workflow, admissions) in workflows {
                    into.entry(workflow.clone()).or_default().merge(admissions);
                }
            }
        }
        all
    }
}

/// Writes one dispatcher's document (expires after [`WINDOW`]).
pub async fn publish(
    conn: &mut ConnectionManager,
    keys: &Keys,
    dispatcher: &str,
    stats: &DispatcherStats,
) -> Result<(), QueueError> {
    let document = serde_json::to_string(stats).unwrap_or_default();
    let _: () = redis::cmd("SET")
        .arg(keys.dispatcher_stats(dispatcher))
        .arg(document)
        .arg("PX")
        .arg(WINDOW.as_millis() as u64)
        .query_async(conn)
        .await?;
    Ok(())
}

/// A live dispatcher: its last heartbeat and its document (None when it wrote none yet, or it did not parse).
#[derive(Debug, Clone)]
pub struct LiveDispatcher {
    pub id: String,
    pub heartbeat_ms: i64,
    pub stats: Option<DispatcherStats>,
}

/// The dispatchers whose heartbeat is at most `alive_within` old, with their documents, in two round trips.
pub async fn live(
    conn: &mut ConnectionManager,
    keys: &Keys,
    alive_within: Duration,
) -> Result<Vec<LiveDispatcher>, QueueError> {
    let since = super::now_ms() - alive_within.as_millis() as i64;
    let alive: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(keys.dispatchers())
        .arg(since)
        .arg("+inf")
        .arg("BYSCORE")
        .arg("WITHSCORES")
        .query_async(conn)
        .await?;
    if alive.is_empty() {
        return Ok(Vec::new());
    }
    let mut mget = redis::cmd("MGET");
    for (id, _) in &alive {
        mget.arg(keys.dispatcher_stats(id));
    }
    let documents: Vec<Option<String>> = mget.query_async(conn).await?;
    Ok(alive
        .into_iter()
        .zip(documents)
        .map(|((id, score), document)| LiveDispatcher {
            id,
            heartbeat_ms: score as i64,
            stats: document.and_then(|d| serde_json::from_str(&d).ok()),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_lands_in_a_bucket_whose_bound_is_within_19_percent() {
        for wait in [1u64, 2, 3, 7, 10, 99, 1_000, 12_345, 3_600_000] {
            let upper = upper_ms(bucket(wait));
            assert!(upper >= wait as f64, "{wait} ms above its bucket's bound {upper}");
            assert!(upper <= wait as f64 * 1.19 + 1e-9, "{wait} ms: bound {upper} more than 19% above");
        }
        assert_eq!(bucket(0), 0);
    }

    #[test]
    fn quantiles_are_nearest_rank_bucket_bounds() {
        let mut h = WaitHistogram::default();
        for wait in 1..=100 {
            h.record(wait);
        }
        let p50 = h.quantile(0.5).unwrap();
        assert!((50.0..=50.0 * 1.19).contains(&p50), "p50 {p50}");
        let p99 = h.quantile(0.99).unwrap();
        assert!((99.0..=99.0 * 1.19).contains(&p99), "p99 {p99}");
        assert_eq!(WaitHistogram::default().quantile(0.5), None);
    }

    #[test]
    fn the_window_forgets_slots_older_than_a_minute() {
        let mut w = AdmissionWindow::default();
        let t0 = 1_700_000_000_000;
        w.record(t0, "acme", "report", 10);
        w.record(t0 + 30_000, "acme", "report", 20);
        w.record(t0 + 30_000, "acme", "etl", 20);
        assert_eq!(w.snapshot(t0 + 30_000)["acme"]["report"].admitted, 2);
        let later = w.snapshot(t0 + 61_000);
        assert_eq!(later["acme"]["report"].admitted, 1, "the first admission is older than the window");
        assert_eq!(later["acme"]["etl"].admitted, 1);
        assert!(w.snapshot(t0 + 200_000).is_empty());
    }
}
