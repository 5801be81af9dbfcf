//! Reading what the product did: samples of a Prometheus scrape and leases left in Redis.

use flow_like_test_harness::TestApi;

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
