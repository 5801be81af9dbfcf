//! The printed report: a human summary, then exactly one JSON object as the last line of stdout so scripts
//! can take the figures with `tail -n 1`.

use super::submit::SubmitOutcome;
use serde_json::{Value, json};

/// The summary for people.
pub fn human(outcome: &SubmitOutcome, ceiling: Option<f64>) -> String {
    let mut out = String::new();
    let rate = outcome.submissions_per_sec();
    out.push_str(&format!(
        "submit: {} requests from {} clients in {:.2} s\n",
        outcome.requests,
        outcome.concurrency,
        outcome.elapsed.as_secs_f64()
    ));
    out.push_str(&format!("  accepted (202)     {}\n", outcome.accepted));
    out.push_str(&format!("  submissions/s      {rate:.0}\n"));
    if let Some(l) = &outcome.latency {
        out.push_str(&format!(
            "  latency ms         mean {:.2}  p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}\n",
            l.mean_ms, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
        ));
    }
    if outcome.errors.is_empty() {
        out.push_str("  errors             none\n");
    } else {
        for (kind, n) in &outcome.errors {
            out.push_str(&format!("  errors             {n} x {kind}\n"));
        }
        if let Some(first) = &outcome.first_error {
            out.push_str(&format!("  first error        {first}\n"));
        }
    }
    if let Some(tps) = ceiling {
        out.push_str(&format!(
            "ceiling: pgbench single-row INSERT transactions/s with {} clients: {tps:.0}\n",
            outcome.concurrency
        ));
        out.push_str(&format!("  API rate / ceiling {:.2}\n", ratio(rate, tps)));
    }
    out
}

fn ratio(rate: f64, ceiling: f64) -> f64 {
    if ceiling > 0.0 { rate / ceiling } else { 0.0 }
}

fn rounded(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

/// The machine-readable figures (`null` where a figure was not measured).
pub fn json(outcome: &SubmitOutcome, ceiling: Option<f64>) -> Value {
    let rate = outcome.submissions_per_sec();
    let latency = |f: fn(&super::stats::LatencySummary) -> f64| outcome.latency.as_ref().map(|l| rounded(f(l), 3));
    json!({
        "mode": "submit",
        "requests": outcome.requests,
        "concurrency": outcome.concurrency,
        "submissions_per_sec": rounded(rate, 1),
        "p50_ms": latency(|l| l.p50_ms),
        "p99_ms": latency(|l| l.p99_ms),
        "max_ms": latency(|l| l.max_ms),
        "errors": outcome.error_count(),
        "pgbench_insert_tps": ceiling.map(|tps| rounded(tps, 1)),
        "ratio_to_pgbench": ceiling.map(|tps| rounded(ratio(rate, tps), 3)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::LatencySummary;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn outcome() -> SubmitOutcome {
        let mut samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        SubmitOutcome {
            requests: 100,
            concurrency: 8,
            elapsed: Duration::from_secs(4),
            accepted: 98,
            errors: BTreeMap::from([("HTTP 503".to_string(), 2)]),
            first_error: Some("HTTP 503 Service Unavailable: {}".into()),
            latency: LatencySummary::from_samples(&mut samples),
        }
    }

    #[test]
    fn json_has_every_figure_and_the_ratio() {
        let v = json(&outcome(), Some(49.0));
        assert_eq!(v["mode"], "submit");
        assert_eq!(v["requests"], 100);
        assert_eq!(v["concurrency"], 8);
        assert_eq!(v["submissions_per_sec"], 24.5);
        assert_eq!(v["p50_ms"], 50.0);
        assert_eq!(v["p99_ms"], 99.0);
        assert_eq!(v["max_ms"], 100.0);
        assert_eq!(v["errors"], 2);
        assert_eq!(v["pgbench_insert_tps"], 49.0);
        assert_eq!(v["ratio_to_pgbench"], 0.5);
        // One line, so `tail -n 1` gets all of it.
        assert!(!v.to_string().contains('\n'));
    }

    #[test]
    fn without_pgbench_the_ceiling_is_null() {
        let v = json(&outcome(), None);
        assert!(v["pgbench_insert_tps"].is_null());
        assert!(v["ratio_to_pgbench"].is_null());
    }

    #[test]
    fn human_report_lists_errors_by_kind() {
        let text = human(&outcome(), Some(49.0));
        assert!(text.contains("2 x HTTP 503"), "{text}");
        assert!(text.contains("submissions/s      24"), "{text}");
        assert!(text.contains("API rate / ceiling 0.50"), "{text}");
    }
}
