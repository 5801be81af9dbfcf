//! The read run: `GET /api/v1/executions/{id}` of queued executions while many are queued (no dispatcher runs,
//! so they stay queued and every read computes the waiting reason and the queue position from Redis). The ids
//! come from listing the tenant's queued executions; reads pick among them pseudo-randomly, so positions near
//! the head and deep in the queue are both read.

use super::LoadgenError;
use super::stats::LatencySummary;
use super::submit::{SubmitOptions, create_key, http_client};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Figures of a read run.
#[derive(Debug, Clone)]
pub struct ReadOutcome {
    /// Queued executions of the tenant found by listing.
    pub queued: usize,
    pub reads: u64,
    pub concurrency: usize,
    pub elapsed: Duration,
    /// Answers that were 200 with a `queue_position`.
    pub with_position: u64,
    /// Answers that were 200 with a null position (more than 1,000 of one lane ahead, or claimed).
    pub without_position: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub latency: Option<LatencySummary>,
}

/// The ids of the tenant's queued executions (every page of the list).
async fn queued_ids(client: &reqwest::Client, base: &str, key: &str) -> Result<Vec<String>, LoadgenError> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/v1/executions?status=queued&limit=500");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let failed = |source| LoadgenError::List { source };
        let page: serde_json::Value =
            client.get(url).bearer_auth(key).send().await.map_err(failed)?.json().await.map_err(failed)?;
        ids.extend(page["items"].as_array().into_iter().flatten().filter_map(|e| e["id"].as_str().map(str::to_owned)));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(ids),
        }
    }
}

/// Reads `reads` executions from `concurrency` tasks; `options` names the API, the tenant and the timeout.
pub async fn run(options: &SubmitOptions, reads: u64) -> Result<ReadOutcome, LoadgenError> {
    let client = http_client(options)?;
    let key = create_key(&client, options).await?;
    let base = options.api_url.trim_end_matches('/').to_owned();
    let ids = Arc::new(queued_ids(&client, &base, &key).await?);
    if ids.is_empty() {
        return Err(LoadgenError::NothingQueued { tenant: options.tenant.clone() });
    }
    let next = Arc::new(AtomicU64::new(0));
    let (key, base) = (Arc::<str>::from(key), Arc::<str>::from(base));
    let started = Instant::now();
    let tasks: Vec<_> = (0..options.concurrency)
        .map(|_| {
            let (client, ids, next, key, base) = (client.clone(), ids.clone(), next.clone(), key.clone(), base.clone());
            tokio::spawn(async move {
                let mut record = (Vec::new(), 0u64, 0u64, 0u64, None::<String>);
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= reads {
                        return record;
                    }
                    // A multiplicative hash of n spreads the reads over the queue.
                    let id = &ids[(n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16) as usize % ids.len()];
                    let request = client.get(format!("{base}/api/v1/executions/{id}")).bearer_auth(&*key);
                    let begun = Instant::now();
                    let answer = match request.send().await {
                        Ok(response) if response.status() == 200 => response.json::<serde_json::Value>().await.ok(),
                        Ok(response) => {
                            record.4.get_or_insert(format!("HTTP {}", response.status()));
                            None
                        }
                        Err(err) => {
                            record.4.get_or_insert(err.to_string());
                            None
                        }
                    };
                    record.0.push(begun.elapsed());
                    match answer {
                        Some(view) if view["queue_position"].is_u64() => record.1 += 1,
                        Some(_) => record.2 += 1,
                        None => record.3 += 1,
                    }
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut outcome = ReadOutcome {
        queued: ids.len(),
        reads,
        concurrency: options.concurrency,
        elapsed: Duration::ZERO,
        with_position: 0,
        without_position: 0,
        errors: 0,
        first_error: None,
        latency: None,
    };
    for task in tasks {
        let (samples, with, without, errors, first) = task.await.unwrap_or_default();
        latencies.extend(samples);
        outcome.with_position += with;
        outcome.without_position += without;
        outcome.errors += errors;
        if outcome.first_error.is_none() {
            outcome.first_error = first;
        }
    }
    outcome.elapsed = started.elapsed();
    outcome.latency = LatencySummary::from_samples(&mut latencies);
    Ok(outcome)
}

/// The report for people.
pub fn human(outcome: &ReadOutcome) -> String {
    let mut out = format!(
        "read: {} reads of GET /api/v1/executions/{{id}} from {} clients, {} executions queued\n",
        outcome.reads, outcome.concurrency, outcome.queued
    );
    out.push_str(&format!(
        "  {:.0} reads/s; {} with a queue_position, {} without, {} errors{}\n",
        outcome.reads as f64 / outcome.elapsed.as_secs_f64().max(f64::EPSILON),
        outcome.with_position,
        outcome.without_position,
        outcome.errors,
        outcome.first_error.as_deref().map(|e| format!(" (first: {e})")).unwrap_or_default()
    ));
    if let Some(l) = &outcome.latency {
        out.push_str(&format!(
            "  latency ms: mean {:.2}, p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2}\n",
            l.mean_ms, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
        ));
    }
    out
}

/// The report as one JSON line.
pub fn json(outcome: &ReadOutcome) -> String {
    serde_json::json!({
        "mode": "read",
        "queued": outcome.queued,
        "reads": outcome.reads,
        "concurrency": outcome.concurrency,
        "reads_per_sec": outcome.reads as f64 / outcome.elapsed.as_secs_f64().max(f64::EPSILON),
        "with_position": outcome.with_position,
        "without_position": outcome.without_position,
        "errors": outcome.errors,
        "latency_ms": outcome.latency.as_ref().map(|l| serde_json::json!({
            "mean": l.mean_ms, "p50": l.p50_ms, "p90": l.p90_ms, "p99": l.p99_ms, "max": l.max_ms
        })),
    })
    .to_string()
}
