//! Latency summaries: percentiles over every recorded latency (a sorted Vec is exact and cheap at the request
//! counts a benchmark run makes).

use std::time::Duration;

/// Percentiles of one run, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySummary {
    pub count: usize,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of sorted samples: the smallest sample with at least `q` of the samples at or below it.
fn nearest_rank(sorted: &[Duration], q: f64) -> Duration {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl LatencySummary {
    /// Summarizes `samples` (sorted in place); `None` when there are none.
    pub fn from_samples(samples: &mut [Duration]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let total: Duration = samples.iter().sum();
        Some(Self {
            count: samples.len(),
            mean_ms: ms(total) / samples.len() as f64,
            p50_ms: ms(nearest_rank(samples, 0.50)),
            p90_ms: ms(nearest_rank(samples, 0.90)),
            p99_ms: ms(nearest_rank(samples, 0.99)),
            max_ms: ms(samples[samples.len() - 1]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(values: impl IntoIterator<Item = u64>) -> Vec<Duration> {
        values.into_iter().map(Duration::from_millis).collect()
    }

    #[test]
    fn empty_has_no_summary() {
        assert_eq!(LatencySummary::from_samples(&mut []), None);
    }

    #[test]
    fn percentiles_of_one_to_a_hundred_are_exact() {
        // Shuffled order: the summary must sort.
        let mut samples = millis((1..=100).rev());
        let s = LatencySummary::from_samples(&mut samples).unwrap();
        assert_eq!(s.count, 100);
        assert_eq!(s.p50_ms, 50.0);
        assert_eq!(s.p90_ms, 90.0);
        assert_eq!(s.p99_ms, 99.0);
        assert_eq!(s.max_ms, 100.0);
        assert!((s.mean_ms - 50.5).abs() < 1e-9);
    }

    #[test]
    fn one_slow_request_in_a_thousand_shows_only_in_max() {
        let mut samples = millis(std::iter::repeat_n(2, 999).chain([900]));
        let s = LatencySummary::from_samples(&mut samples).unwrap();
        assert_eq!(s.p99_ms, 2.0);
        assert_eq!(s.max_ms, 900.0);
    }

    #[test]
    fn a_single_sample_is_every_percentile() {
        let mut samples = millis([7]);
        let s = LatencySummary::from_samples(&mut samples).unwrap();
        assert_eq!((s.p50_ms, s.p99_ms, s.max_ms), (7.0, 7.0, 7.0));
    }
}
