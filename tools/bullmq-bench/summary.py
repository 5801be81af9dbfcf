#!/usr/bin/env python3
"""Summarizes `scripts/bench.sh bullmq`'s results (one JSON document per line): per measurement the minimum,
median and maximum over the rounds, and flow-like's ratio to each BullMQ mode (medians). Drain throughput for
flow-like is executions terminal in PostgreSQL per second (every outcome durable), and also shown as admitted
per second; BullMQ's is jobs completed per second. Ends with one JSON line of the medians."""

import json
import statistics
import sys


def spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def fmt(s, unit=""):
    if s is None:
        return "n/a"
    return f"{s['median']:,.1f}{unit} (min {s['min']:,.1f}, max {s['max']:,.1f})"


def main(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    ours = [r["report"] for r in rows if r.get("side") == "flow-like" and r["report"].get("mode") == "dispatch"]
    ours_latency = [r["report"] for r in rows if r.get("side") == "flow-like" and r["report"].get("mode") == "dispatch-latency"]
    bull = {mode: [r for r in rows if r.get("side") == "bullmq" and r.get("mode") == mode]
            for mode in ("drain-default", "drain-remove-on-complete", "latency")}
    table = {
        "flow-like terminal/s": spread([r["terminal_per_sec"] for r in ours]),
        "flow-like admitted/s": spread([r["admitted_per_sec"] for r in ours]),
        "flow-like Redis commands/job": spread([r.get("redis_commands_per_job") for r in ours]),
        "flow-like Redis CPU µs/job": spread([r.get("redis_cpu_us_per_job") for r in ours]),
    }
    for mode in ("drain-default", "drain-remove-on-complete"):
        table[f"BullMQ {mode} jobs/s"] = spread([r["per_second"] for r in bull[mode]])
        table[f"BullMQ {mode} Redis commands/job"] = spread([r["redis_commands_per_job"] for r in bull[mode]])
        table[f"BullMQ {mode} Redis CPU µs/job"] = spread([r["redis_cpu_us_per_job"] for r in bull[mode]])
    for q in ("p50_ms", "p99_ms"):
        table[f"flow-like queue->dispatch {q}"] = spread([r["queue_to_dispatch"].get(q) for r in ours_latency])
        table[f"BullMQ add->start {q}"] = spread([r.get(q) for r in bull["latency"]])
    width = max(len(k) for k in table)
    print(f"\n{len(ours)} round(s), medians (min, max):")
    for name, value in table.items():
        print(f"  {name:<{width}}  {fmt(value)}")
    medians = {k: (v["median"] if v else None) for k, v in table.items()}

    def ratio(a, b):
        return round(a / b, 2) if a and b else None

    ratios = {}
    for mode in ("drain-default", "drain-remove-on-complete"):
        ratios[f"drain vs BullMQ {mode}"] = ratio(medians["flow-like terminal/s"], medians[f"BullMQ {mode} jobs/s"])
        ratios[f"Redis CPU per job vs BullMQ {mode}"] = ratio(
            medians["flow-like Redis CPU µs/job"], medians[f"BullMQ {mode} Redis CPU µs/job"])
    ratios["queue->dispatch p99 vs BullMQ add->start p99"] = ratio(
        medians["flow-like queue->dispatch p99_ms"], medians["BullMQ add->start p99_ms"])
    print("ratios (flow-like / BullMQ, medians; above 1 is more throughput, or more cost and latency):")
    for name, value in ratios.items():
        print(f"  {name:<{width}}  {value}")
    print(json.dumps({"medians": medians, "ratios": ratios}, ensure_ascii=False))


if __name__ == "__main__":
    main(sys.argv[1])
