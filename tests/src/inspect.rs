//! Reading what the product did: samples of a Prometheus scrape, leases left in Redis, progress events.

use flow_like_shared::protocol::streams;
use flow_like_shared::record::progress::{self, EntryId};
use flow_like_shared::status::{FinishedOutcome, StatusEntry, StatusEvent};
use flow_like_test_harness::TestApi;
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
/// what the progress archive in PostgreSQL holds (`progress::merged`, read in the order that misses nothing).
pub async fn progress_events(api: &TestApi, execution: Uuid) -> anyhow::Result<Vec<(String, StatusEntry)>> {
    let mut redis = api.redis.clone();
    let live = streams::read_progress_streams(&mut redis, &api.keys, &[execution]).await?;
    let archived = progress::entries_after(&api.db, execution, EntryId::default()).await?;
    Ok(progress::merged(execution, live.into_iter().flatten().collect(), archived)
        .into_iter()
        .map(|(id, entry)| (id.to_string(), entry))
        .collect())
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
