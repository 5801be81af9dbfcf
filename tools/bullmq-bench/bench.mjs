// BullMQ's side of `scripts/bench.sh bullmq`: the same two measurements as flow-like's `dispatch` and
// `dispatch-latency`, on the same Redis, so the two can be put side by side.
//
//   node bench.mjs drain   --redis URL --jobs N [--concurrency C] [--remove-on-complete]
//   node bench.mjs latency --redis URL --rate R --seconds S [--concurrency C]
//
// drain:   N no-op jobs are added first (not timed), then one Worker drains them; the figure is jobs completed
//          per second from the worker's start to the last completion, with Redis's commands and CPU per job
//          over that window (`INFO commandstats` and `INFO cpu` deltas).
// latency: a Worker runs; jobs are added at R per second for S seconds; the figure is add -> processor start
//          (p50, p90, p99, max), measured from just before each `add` call.
//
// Prints one JSON line. BullMQ comes from the scratch directory bench.sh installs it into (NODE_PATH).

import { Queue, Worker } from "bullmq";
import IORedis from "ioredis";

const [mode, ...rest] = process.argv.slice(2);
const args = {};
for (let i = 0; i < rest.length; i++) {
  const name = rest[i].replace(/^--/, "");
  if (rest[i + 1] === undefined || rest[i + 1].startsWith("--")) {
    args[name] = true;
  } else {
    args[name] = rest[++i];
  }
}
if (!["drain", "latency"].includes(mode) || !args.redis) {
  console.error("usage: bench.mjs drain|latency --redis URL [--jobs N] [--rate R] [--seconds S] [--concurrency C]");
  process.exit(2);
}
const concurrency = Number(args.concurrency ?? 64);
const connection = () => new IORedis(args.redis, { maxRetriesPerRequest: null });
const name = `bench-${process.pid}-${Date.now()}`;

/** Redis's command calls (all commands) and CPU seconds (user + sys, every thread) so far. */
async function redisCounters(redis) {
  const stats = await redis.info("commandstats");
  let calls = 0;
  for (const line of stats.split("\n")) {
    const match = /^cmdstat_[^:]+:calls=(\d+)/.exec(line);
    if (match) calls += Number(match[1]);
  }
  const cpu = await redis.info("cpu");
  const field = (key) => Number(new RegExp(`^${key}:([0-9.]+)`, "m").exec(cpu)?.[1] ?? 0);
  return { calls, cpu: field("used_cpu_user") + field("used_cpu_sys") };
}

/** Nearest rank, as flow-like's load generator computes it. */
function quantile(sorted, q) {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1];
}

async function drain() {
  const jobs = Number(args.jobs ?? 50000);
  const removeOnComplete = Boolean(args["remove-on-complete"]);
  const queue = new Queue(name, { connection: connection() });
  const opts = removeOnComplete ? { removeOnComplete: true } : {};
  for (let added = 0; added < jobs; added += 1000) {
    const batch = [];
    for (let i = added; i < Math.min(jobs, added + 1000); i++) batch.push({ name: "noop", data: { i }, opts });
    await queue.addBulk(batch);
  }
  const stats = connection();
  const before = await redisCounters(stats);
  const started = process.hrtime.bigint();
  let done = 0;
  let finished;
  const all = new Promise((resolve) => (finished = resolve));
  const worker = new Worker(name, async () => {}, { connection: connection(), concurrency, autorun: false });
  worker.on("completed", () => {
    done += 1;
    if (done === jobs) finished(process.hrtime.bigint());
  });
  worker.run();
  const ended = await all;
  const after = await redisCounters(stats);
  const seconds = Number(ended - started) / 1e9;
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  stats.disconnect();
  return {
    side: "bullmq",
    mode: removeOnComplete ? "drain-remove-on-complete" : "drain-default",
    jobs,
    concurrency,
    seconds: Number(seconds.toFixed(3)),
    per_second: Math.round(jobs / seconds),
    redis_commands_per_job: Number(((after.calls - before.calls) / jobs).toFixed(2)),
    redis_cpu_us_per_job: Number((((after.cpu - before.cpu) * 1e6) / jobs).toFixed(1)),
  };
}

async function latency() {
  const rate = Number(args.rate ?? 1000);
  const seconds = Number(args.seconds ?? 10);
  const queue = new Queue(name, { connection: connection() });
  const latencies = [];
  const total = rate * seconds;
  let finished;
  const all = new Promise((resolve) => (finished = resolve));
  const worker = new Worker(
    name,
    async (job) => {
      latencies.push(performance.timeOrigin + performance.now() - job.data.at);
      if (latencies.length === total) finished();
    },
    { connection: connection(), concurrency },
  );
  await worker.waitUntilReady();
  const startedAt = performance.now();
  const opts = { removeOnComplete: true };
  for (let i = 0; i < total; i++) {
    // Paced against the schedule, not the previous add, so a slow add does not lower the offered rate.
    const due = startedAt + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
    queue.add("noop", { at: performance.timeOrigin + performance.now() }, opts);
  }
  await all;
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  latencies.sort((a, b) => a - b);
  const ms = (value) => Number(value.toFixed(2));
  return {
    side: "bullmq",
    mode: "latency",
    rate,
    seconds,
    jobs: total,
    p50_ms: ms(quantile(latencies, 0.5)),
    p90_ms: ms(quantile(latencies, 0.9)),
    p99_ms: ms(quantile(latencies, 0.99)),
    max_ms: ms(latencies[latencies.length - 1]),
  };
}

const report = mode === "drain" ? await drain() : await latency();
console.log(JSON.stringify(report));
process.exit(0);
