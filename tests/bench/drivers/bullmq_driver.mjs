// Bench driver for BullMQ on Redis (node, packages from .bench/node; our code, none of BullMQ's).
//
// Same protocol as the Python drivers: `node bullmq_driver.mjs WORKLOAD --n N [--dsn URL]
// [--set concurrency=C] ...` with Redis at $BENCH_REDIS_URL; one `BENCH-RESULT {json}` line on stdout.
// BullMQ as documented: Queue.addBulk for bulk enqueue, one Worker with `concurrency`, ioredis.
// Completed jobs are kept (BullMQ's default) so we can read the completed set back for the
// exactly-once check; each run uses its own key prefix and obliterates it afterwards, so the
// machine's Redis is left as it was. Audited jobs insert the audit row through node-postgres from
// the handler (BullMQ has no transaction with PostgreSQL to join); fan-out roots add 5 children.
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import path from 'node:path';

const require = createRequire(path.join(process.env.BENCH_NODE_DIR, 'package.json'));
const { Queue, Worker } = require('bullmq');
const IORedis = require('ioredis');
const pg = require('pg');

const LOG_COLUMNS = [
  'entity_type', 'entity_id', 'operation', 'sources', 'status', 'reason', 'fields_enriched',
  'data_quality_before', 'data_quality_after', 'duration_ms', 'api_call_count', 'metadata',
  'job_id', 'parent_job_id', 'is_root_job', 'attempt', 'triggered_by',
];
const LOG_INSERT = `INSERT INTO bench_enrichment_log (${LOG_COLUMNS.join(', ')}) VALUES (${LOG_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})`;
const FANOUT_CHILDREN = 5;

function parseArgs(argv) {
  const args = { workload: argv[0], settings: {}, warmup: 200, samples: 200, spacing: [10, 20],
    redis: process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379' };
  for (let i = 1; i < argv.length; i += 2) {
    const [key, value] = [argv[i], argv[i + 1]];
    if (key === '--set') { const [k, v] = value.split('='); args.settings[k] = Number(v); }
    else if (key === '--n') args.n = Number(value);
    else if (key === '--dsn') args.dsn = value;
    else if (key === '--warmup') args.warmup = Number(value);
    else if (key === '--samples') args.samples = Number(value);
    else if (key === '--spacing-ms') args.spacing = value.split(',').map(Number);
  }
  return args;
}

// The same row as protocol.log_values (entity id = the uuid whose integer value is seq).
function logValues(jobId, rootId, seq, durationMs) {
  const hex = seq.toString(16).padStart(32, '0');
  const entity = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  return ['ALBUM', entity, 'BENCH_NOOP', ['BENCH'], 'SUCCESS', 'benchmark no-op', ['title'],
    'LOW', 'HIGH', durationMs, 0, JSON.stringify({ seq, bench: true, cache: { source: 'bench', size: 1024, format: 'jpeg' } }),
    Number(jobId), rootId === null ? null : Number(rootId), rootId === null, 1, 'bench'];
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class Bench {
  constructor(args) {
    this.args = args;
    this.prefix = `pgjobs-bench-${process.pid}`;  // our own keys only; obliterated at the end
    this.connection = new IORedis(args.redis, { maxRetriesPerRequest: null });
    // 10 connections for the audit inserts: the best of 4/10/20 tried on this machine.
    this.pool = args.dsn ? new pg.Pool({ connectionString: args.dsn, max: 10 }) : null;
    this.queues = [];
    this.connections = [this.connection];  // BullMQ never closes a connection it was handed: we do
    this.executed = [];
    this.startedAt = new Map();
  }

  // A connection of its own for each Worker (it blocks on Redis while it waits for jobs).
  blocking() {
    const connection = this.connection.duplicate();
    this.connections.push(connection);
    return connection;
  }

  queue(name) {
    const queue = new Queue(name, { connection: this.connection, prefix: this.prefix });
    this.queues.push(queue);
    return queue;
  }

  async log(job, rootId) {
    const started = performance.now();
    await this.pool.query(LOG_INSERT, logValues(job.id, rootId, job.data.seq, Math.round(performance.now() - started)));
  }

  // The handler for every job kind; `queue` is where fan-out roots add their children.
  handler(queue) {
    return async (job) => {
      if (job.name === 'audited') await this.log(job, null);
      else if (job.name === 'fan.root') {
        await this.log(job, null);
        await queue.addBulk(Array.from({ length: FANOUT_CHILDREN }, (_, c) => (
          { name: 'fan.child', data: { seq: job.data.seq * 10 + c + 1, root: job.id } })));
      } else if (job.name === 'fan.child') await this.log(job, job.data.root);
      else if (job.name === 'wake') this.startedAt.set(job.data.seq, performance.now());
      this.executed.push(Number(job.id));
    };
  }

  // Run one worker until `total` jobs completed; the interval ends at the last 'completed' event.
  // A drain that makes no progress for 30 s fails instead of hanging (say, the keys vanished).
  async drain(queue, total, concurrency) {
    let completed = 0;
    let lastProgress = performance.now();
    let resolve;
    const done = new Promise((r) => { resolve = r; });
    const started = performance.now();
    const cpu = process.cpuUsage();
    const worker = new Worker(queue.name, this.handler(queue), {
      connection: this.blocking(), prefix: this.prefix, concurrency,
    });
    worker.on('completed', () => { lastProgress = performance.now(); if (++completed === total) resolve(); });
    worker.on('failed', (job, err) => { process.stderr.write(`failed ${job?.id}: ${err}\n`); });
    const watchdog = setInterval(() => {
      if (performance.now() - lastProgress > 30000) {
        process.stderr.write(`no progress for 30 s: ${completed} of ${total} completed\n`);
        process.exit(1);
      }
    }, 1000);
    await done;
    clearInterval(watchdog);
    const seconds = (performance.now() - started) / 1000;
    const used = process.cpuUsage(cpu);
    await worker.close();
    return { seconds, cpu_seconds: (used.user + used.system) / 1e6 };
  }

  async bulk(queue, name, n) {
    const jobs = Array.from({ length: n }, (_, seq) => ({ name, data: { seq } }));
    const started = performance.now();
    await queue.addBulk(jobs);
    return (performance.now() - started) / 1000;
  }

  // Every job id in the queue, with how many times each completed job was started.
  async records(queue) {
    const completed = await queue.getRanges(['completed'], 0, -1);
    const pipeline = this.connection.pipeline();
    for (const id of completed) pipeline.hget(`${this.prefix}:${queue.name}:${id}`, 'ats');
    const starts = await pipeline.exec();
    const records = [];
    completed.forEach((id, i) => { for (let s = 0; s < Number(starts[i][1] ?? 1); s++) records.push(Number(id)); });
    const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'failed', 'prioritized');
    return { completed: records, leftover: Object.values(counts).reduce((a, b) => a + b, 0) };
  }

  async close() {
    for (const queue of this.queues) { await queue.obliterate({ force: true }); await queue.close(); }
    if (this.pool) await this.pool.end();
    for (const connection of this.connections) await connection.quit();
  }
}

async function drainLike(bench, args, kind) {
  const concurrency = args.settings.concurrency ?? 50;
  const roots = kind === 'fan.root' ? Math.max(1, Math.floor(args.n / 6)) : args.n;
  const total = kind === 'fan.root' ? roots * (1 + FANOUT_CHILDREN) : roots;
  if (bench.pool) await bench.pool.query('TRUNCATE bench_enrichment_log');
  const warm = bench.queue('warmup');  // a queue of its own, so its jobs never mix with the measured ones
  const warmRoots = Math.min(args.warmup, roots);
  await bench.bulk(warm, kind, warmRoots);
  await bench.drain(warm, kind === 'fan.root' ? warmRoots * (1 + FANOUT_CHILDREN) : warmRoots, concurrency);
  if (bench.pool) await bench.pool.query('TRUNCATE bench_enrichment_log');
  bench.executed = [];
  const queue = bench.queue('bench');
  const enqueueSeconds = await bench.bulk(queue, kind, roots);
  const { seconds, cpu_seconds } = await bench.drain(queue, total, concurrency);
  return {
    n: total, seconds, rate: total / seconds, cpu_seconds, enqueue_seconds: enqueueSeconds,
    enqueue_rate: roots / enqueueSeconds, roots, executed: bench.executed, ...(await bench.records(queue)),
    setting: { concurrency },
  };
}

async function wake(bench, args) {
  const concurrency = args.settings.concurrency ?? 50;
  const queue = bench.queue('wake');
  const worker = new Worker(queue.name, bench.handler(queue), {
    connection: bench.blocking(), prefix: bench.prefix, concurrency,
  });
  await worker.waitUntilReady();
  await sleep(1000);  // idle worker, blocked waiting for work
  const total = args.warmup + args.samples;
  const sent = new Map();
  for (let seq = 0; seq < total; seq++) {
    sent.set(seq, performance.now());
    await queue.add('wake', { seq });
    await sleep(args.spacing[0] + Math.random() * (args.spacing[1] - args.spacing[0]));
  }
  const deadline = performance.now() + 10000;
  while (bench.startedAt.size < total && performance.now() < deadline) await sleep(10);
  await worker.close();
  const latencies = [];
  for (let seq = args.warmup; seq < total; seq++) {
    if (bench.startedAt.has(seq)) latencies.push(bench.startedAt.get(seq) - sent.get(seq));
  }
  return { n: total, latencies_ms: latencies, executed: bench.executed, ...(await bench.records(queue)),
    setting: { concurrency } };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const bench = new Bench(args);
  try {
    const kind = { drain: 'noop', audited: 'audited', fanout: 'fan.root' }[args.workload];
    const result = args.workload === 'wake' ? await wake(bench, args) : await drainLike(bench, args, kind);
    process.stdout.write(`BENCH-RESULT ${JSON.stringify(result)}\n`);
  } finally {
    await bench.close();
  }
}

main().then(() => process.exit(0), (err) => { process.stderr.write(`${err.stack || err}\n`); process.exit(1); });
