//! Where a benchmark phase's CPU time went, read from `/proc`: the whole machine (`/proc/stat`), chosen child
//! processes (`/proc/<pid>/stat`) and this process's threads grouped by name (`/proc/self/task/*/comm`), so a
//! report can say how many CPU milliseconds each part spent per unit of work, beside the rate.
//!
//! Linux only; elsewhere every figure reads as zero.

use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Kernel clock ticks per second (`getconf CLK_TCK`; 100 on every Linux architecture Rust targets here).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU ticks (user + system) used so far, by part.
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot {
    /// Busy ticks of the whole machine, every core together (everything but idle and iowait).
    machine: u64,
    /// Busy ticks of this process's threads whose name starts with each tracked prefix.
    threads: BTreeMap<String, u64>,
    /// Busy ticks of this process as a whole.
    this_process: u64,
    /// Busy ticks of each tracked child process, by label (summed when several share a label).
    processes: BTreeMap<String, u64>,
}

/// What a snapshot reads: this process's thread-name prefixes and child processes by label.
#[derive(Debug, Clone, Default)]
pub struct CpuProbe {
    pub thread_prefixes: Vec<String>,
    pub processes: Vec<(String, u32)>,
    /// Every process whose command name (`/proc/<pid>/comm`) is one of these, summed by name (the services a
    /// phase runs on: `postgres` backends, `redis-server`, `s3s-fs`). A process that exits between two
    /// snapshots takes its time with it; that time shows under `everything_else`.
    pub commands: Vec<String>,
}

impl CpuProbe {
    pub fn snapshot(&self) -> CpuSnapshot {
        let mut threads: BTreeMap<String, u64> = self.thread_prefixes.iter().map(|p| (p.clone(), 0)).collect();
        add_by_name(&mut threads, "/proc/self/task", |comm| {
            self.thread_prefixes.iter().find(|p| comm.starts_with(p.as_str()))
        });
        let mut processes = BTreeMap::new();
        for (label, pid) in &self.processes {
            *processes.entry(label.clone()).or_default() += ticks_at(&format!("/proc/{pid}")).unwrap_or(0);
        }
        if !self.commands.is_empty() {
            add_by_name(&mut processes, "/proc", |comm| self.commands.iter().find(|c| comm == c.as_str()));
        }
        CpuSnapshot {
            machine: std::fs::read_to_string("/proc/stat").ok().and_then(|s| machine_busy(&s)).unwrap_or(0),
            threads,
            this_process: ticks_at("/proc/self").unwrap_or(0),
            processes,
        }
    }
}

/// Adds the ticks of every entry of `dir` (processes or threads) whose command name `label_of` maps to a label.
fn add_by_name<'a>(totals: &mut BTreeMap<String, u64>, dir: &str, label_of: impl Fn(&str) -> Option<&'a String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else { continue };
        if let Some(label) = label_of(comm.trim_end()) {
            *totals.entry(label.clone()).or_default() += ticks_at(&path.display().to_string()).unwrap_or(0);
        }
    }
}

/// Busy ticks of the process or thread whose `/proc` directory is `dir`.
fn ticks_at(dir: &str) -> Option<u64> {
    stat_ticks(&std::fs::read_to_string(format!("{dir}/stat")).ok()?)
}

/// utime + stime of a `/proc/<pid>/stat` or `/proc/<pid>/task/<tid>/stat` line.
fn stat_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may contain spaces and parentheses: fields are counted after its last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12 here.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Busy ticks of all cores from the first line of `/proc/stat`.
fn machine_busy(stat: &str) -> Option<u64> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let values: Vec<u64> = line.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    let busy = values.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    Some(busy)
}

impl CpuSnapshot {
    /// CPU milliseconds each part spent between `self` and `later`, divided by `units` (for example Jobs
    /// created): the parts this snapshot tracked, `"rest_of_this_process"` (its other threads), `"everything_else"`
    /// (the machine minus all of those: databases, other processes, the kernel's own work) and `"machine"`.
    pub fn per_unit_since(&self, later: &CpuSnapshot, units: u64) -> Value {
        let per_unit = |ticks: u64| {
            let ms = ticks as f64 / TICKS_PER_SEC * 1000.0 / units.max(1) as f64;
            (ms * 1000.0).round() / 1000.0
        };
        // Enters each label's share and returns the ticks of all of them.
        let charge = |parts: &mut serde_json::Map<String, Value>,
                      before: &BTreeMap<String, u64>,
                      after: &BTreeMap<String, u64>| {
            let mut total = 0u64;
            for (label, &ticks_after) in after {
                let ticks = ticks_after.saturating_sub(before.get(label).copied().unwrap_or(0));
                total += ticks;
                parts.insert(label.clone(), json!(per_unit(ticks)));
            }
            total
        };
        let mut parts = serde_json::Map::new();
        let in_threads = charge(&mut parts, &self.threads, &later.threads);
        let this = later.this_process.saturating_sub(self.this_process);
        parts.insert("rest_of_this_process".into(), json!(per_unit(this.saturating_sub(in_threads))));
        let tracked = this.max(in_threads) + charge(&mut parts, &self.processes, &later.processes);
        let machine = later.machine.saturating_sub(self.machine);
        parts.insert("everything_else".into(), json!(per_unit(machine.saturating_sub(tracked))));
        parts.insert("machine".into(), json!(per_unit(machine)));
        Value::Object(parts)
    }

    /// Busy cores of the whole machine on average over `seconds` since `self`.
    pub fn busy_cores_since(&self, later: &CpuSnapshot, seconds: f64) -> f64 {
        let cores = later.machine.saturating_sub(self.machine) as f64 / TICKS_PER_SEC / seconds.max(f64::EPSILON);
        (cores * 100.0).round() / 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ticks_after_a_name_with_spaces_and_parentheses() {
        let line = "1234 (kube sim) (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4 0 10 0 0";
        assert_eq!(stat_ticks(line), Some(325));
        assert_eq!(stat_ticks("garbage"), None);
    }

    #[test]
    fn machine_busy_leaves_out_idle_and_iowait() {
        let stat = "cpu  100 5 50 1000 40 3 2 7 0 0\ncpu0 50 2 25 500 20 1 1 3 0 0\n";
        assert_eq!(machine_busy(stat), Some(100 + 5 + 50 + 3 + 2 + 7));
    }

    #[test]
    fn work_on_a_named_thread_is_charged_to_it() {
        let probe = CpuProbe { thread_prefixes: vec!["cpu-probe-t".into()], ..CpuProbe::default() };
        let before = probe.snapshot();
        let (spun, release) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
        let worker = std::thread::Builder::new()
            .name("cpu-probe-test".into())
            .spawn(move || {
                // 300 ms of this thread's own CPU time, however busy the machine is (other tests run beside it).
                let own = || ticks_at("/proc/thread-self").unwrap_or(0);
                let (start, deadline) = (own(), std::time::Instant::now() + std::time::Duration::from_secs(20));
                let mut x = 0u64;
                while own() < start + 30 && std::time::Instant::now() < deadline {
                    for _ in 0..100_000 {
                        x = x.wrapping_mul(31).wrapping_add(1);
                    }
                }
                std::hint::black_box(x);
                spun.0.send(()).unwrap();
                let _ = release.1.recv();
            })
            .unwrap();
        spun.1.recv().unwrap();
        let after = probe.snapshot();
        release.0.send(()).unwrap();
        worker.join().unwrap();
        let report = before.per_unit_since(&after, 1);
        // 300 ms of the thread's CPU time, in 10 ms ticks.
        assert!(report["cpu-probe-t"].as_f64().unwrap() >= 200.0, "{report}");
        assert!(report["machine"].as_f64().unwrap() >= 200.0, "{report}");
    }
}
