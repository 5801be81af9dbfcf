//! Reading what the product did: samples of a Prometheus scrape, leases left in Redis, progress events.

use flow_like_shared::record::progress::{self, EntryId};
use flow_like_shared::status::{FinishedOutcome, StatusEntry, StatusEvent};
use flow_like_test_harness::TestApi;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// The sum of the samples of `family` in a Prometheus text scrape whose labels contain each of `labels`
/// (`key="value"`); 0 when there are none.
pub fn metric_total(text: &str, family: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, rest) = series.split_once('{').unwrap_or((series, ""));
            (name == family && labels.iter().all(|l| rest.contains(l))).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Lease hashes and active-set members left under the API's prefix.
pub async fn leftover_leases(api: &TestApi) -> anyhow::Result<Vec<String>> {
    Ok(api.redis_keys().await?.into_iter().filter(|k| k.contains(":lease:") || k.contains(":active")).collect())
}

/// Every progress event of `execution` recorded so far, in stream order: what is on its stream in Redis and
/// what the progress archive in PostgreSQL holds. Redis is read first: entries leave it only after the archive
/// holds them, so the two reads in this order miss nothing, whatever the status pipeline does in between.
pub async fn progress_events(api: &TestApi, execution: Uuid) -> anyhow::Result<Vec<(String, StatusEntry)>> {
    let mut redis = api.redis.clone();
    let live: Vec<(String, HashMap<String, redis::Value>)> = redis::cmd("XRANGE")
        .arg(api.keys.progress(&execution.to_string()))
        .arg("-")
        .arg("+")
        .query_async(&mut redis)
        .await?;
    let mut events = BTreeMap::new();
    for (id, fields) in live {
        let parsed = EntryId::parse(&id).ok_or_else(|| anyhow::anyhow!("stream entry id {id}"))?;
        events.insert(parsed, (id, StatusEntry::from_fields(&fields)?));
    }
    for (id, archived) in progress::entries_after(&api.db, execution, EntryId::default()).await? {
        events.entry(id).or_insert_with(|| (id.to_string(), archived.entry(execution)));
    }
    Ok(events.into_values().collect())
}

/// The outcomes of the `finished` events among `execution`'s progress events.
pub async fn finished_outcomes(api: &TestApi, execution: Uuid) -> anyhow::Result<Vec<FinishedOutcome>> {
    Ok(progress_events(api, execution)
        .await?
        .into_iter()
        .filter_map(|(_, entry)| match entry.event {
            StatusEvent::Finished { outcome, .. } => Some(outcome),
            _ => None,
        })
        .collect())
}
