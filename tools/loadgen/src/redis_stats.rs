//! What Redis itself spent on a measured window: commands executed (all of `INFO commandstats`) and CPU seconds
//! (`used_cpu_user` + `used_cpu_sys` of `INFO cpu`, every Redis thread). The benchmarks read it before and after
//! the window and report the difference per job, the same way for flow-like and for BullMQ (`scripts/bench.sh
//! bullmq`). The two `INFO` calls themselves are counted too (two commands per window, not per job).

use redis::aio::ConnectionManager;

/// Redis's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RedisCounters {
    pub calls: u64,
    pub cpu_secs: f64,
}

impl RedisCounters {
    pub async fn read(redis: &mut ConnectionManager) -> anyhow::Result<Self> {
        let (commands, cpu): (String, String) =
            redis::pipe().cmd("INFO").arg("commandstats").cmd("INFO").arg("cpu").query_async(redis).await?;
        Ok(Self::parse(&commands, &cpu))
    }

    fn parse(commands: &str, cpu: &str) -> Self {
        let calls = commands
            .lines()
            .filter(|line| line.starts_with("cmdstat_"))
            .filter_map(|line| line.split_once(":calls=")?.1.split(',').next()?.parse::<u64>().ok())
            .sum();
        let field = |name: &str| {
            cpu.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(':')?.trim().parse::<f64>().ok())
        };
        Self { calls, cpu_secs: field("used_cpu_user").unwrap_or(0.0) + field("used_cpu_sys").unwrap_or(0.0) }
    }

    /// `(commands per job, Redis CPU microseconds per job)` from `self` (before) to `after`.
    pub fn per_job(&self, after: &Self, jobs: u64) -> (f64, f64) {
        let jobs = jobs.max(1) as f64;
        (after.calls.saturating_sub(self.calls) as f64 / jobs, (after.cpu_secs - self.cpu_secs) * 1e6 / jobs)
    }
}

/// Redis's `used_memory` (bytes) now.
pub async fn used_memory(redis: &mut ConnectionManager) -> anyhow::Result<u64> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(redis).await?;
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:")?.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("INFO memory has no used_memory"))
}

/// `MEMORY USAGE` of each key (0 for a key that does not exist), in one round trip.
pub async fn memory_usage(redis: &mut ConnectionManager, keys: &[String]) -> anyhow::Result<Vec<u64>> {
    let mut pipe = redis::pipe();
    for key in keys {
        pipe.cmd("MEMORY").arg("USAGE").arg(key).arg("SAMPLES").arg(0);
    }
    let sizes: Vec<Option<u64>> = pipe.query_async(redis).await?;
    Ok(sizes.into_iter().map(Option::unwrap_or_default).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_info_sections() {
        let commands = "# Commandstats\r\ncmdstat_xadd:calls=10,usec=30,usec_per_call=3.00,rejected_calls=0\r\n\
                        cmdstat_evalsha:calls=5,usec=100,usec_per_call=20.00\r\n";
        let cpu = "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\nused_cpu_sys_children:9.0\r\n";
        let counters = RedisCounters::parse(commands, cpu);
        assert_eq!(counters.calls, 15);
        assert!((counters.cpu_secs - 3.75).abs() < 1e-9);
        let later = RedisCounters { calls: 35, cpu_secs: 3.75 + 0.002 };
        let (commands, cpu_us) = counters.per_job(&later, 10);
        assert!((commands - 2.0).abs() < 1e-9);
        assert!((cpu_us - 200.0).abs() < 1e-6);
    }
}
