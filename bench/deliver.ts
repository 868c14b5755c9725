/**
 * Delivery benchmark: deliveries per second from the outbox to mock-gp over loopback, with one worker and with
 * four, in the same run.
 *
 * For each phase: a fresh store (PGlite in a temp data dir by default), N ServiceRequests (the ~3 KB referral of
 * bench/referral.ts, each for its own patient by default, plus the Patients) written through Repository.save with
 * the outbox of one `fhir-rest` destination, so each write enqueues one delivery in its own transaction's
 * statement; then the delivery engine runs until every row is `delivered`, and that is timed. mock-gp starts on
 * 127.0.0.1 port 0 in a child process (its own event loop and, on 2 cores, the other core); `--in-process-gp`
 * runs it in this process instead.
 *
 * A "worker" is one attempt in flight at once: `--workers-as concurrency` (the default) runs ONE engine with
 * `worker.concurrency` = W, which is what the destinations file calls it; `--workers-as engines` runs W engine
 * instances with concurrency 1 each (each with its own connection pool on PostgreSQL; sharing the one PGlite
 * connection otherwise), as W sp-bridge instances on one database would.
 *
 * After each phase it checks that every item arrived at mock-gp exactly once (received(): writes counted,
 * no duplicates, every expected id stored with one version, every idempotency key seen once) and that the
 * outbox holds N delivered rows with one attempt each. Each phase stops after `--max-seconds`.
 *
 *   npm run bench:deliver -- [--deliveries 5000] [--workers 1,4,8] [--workers-as concurrency|engines]
 *                            [--patients N] [--batch 500] [--max-seconds 120] [--memory] [--postgres] [--pool 10]
 *                            [--in-process-gp] [--cpu-prof DIR]
 *
 * --cpu-prof writes a V8 CPU profile of this (engine) process for each delivery phase only (not the enqueue),
 * for `node dist/bench/profile-summary.js`.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Pool } from 'pg';
import { createOutbox, DeliveryEngine, parseDestinations, type DeliveryConfig } from '../src/delivery';
import type { DeliveryAdapter } from '../src/delivery/adapter';
import type { DeliveryLogger } from '../src/delivery/engine';
import { extractIndex } from '../src/fhir/search/extract';
import { startMockGp, type MockGp } from '../src/mock/gp';
import { openDatabase, Repository, type Database } from '../src/storage';
import { openPglite, openPostgres } from '../src/storage/db';
import { migrate } from '../src/storage/migrations';
import { postgresAvailable, startPostgresCluster, type PostgresCluster } from '../test/support/postgres-cluster';
import { log, machine, parseArgs, summarize, type Args } from './common';
import { referral } from './referral';

const DESTINATION = 'mock-gp';

// ---------------------------------------------------------------------------------------------------------
// mock-gp, in a child process (--serve-gp) or in this one
// ---------------------------------------------------------------------------------------------------------

interface GpSummary {
  /** Writes that changed mock-gp's store. */
  deliveries: number;
  duplicates: number;
  /** FHIR requests recorded (mock-gp keeps the latest 10,000). */
  recorded: number;
  /** Idempotency keys of the recorded requests. */
  keys: string[];
  statuses: Record<string, number>;
  /** Ids of the live ServiceRequests in mock-gp's store. */
  storedIds: string[];
  /** Stored ServiceRequests with more than one version. */
  multiVersion: number;
  /** mock-gp's process CPU (ms) since the last mark; null in process (it shares this process's CPU). */
  cpuMs: number | null;
}

type ToGp = { kind: 'summary' } | { kind: 'reset' } | { kind: 'mark' };
type FromGp = { kind: 'listening'; url: string } | { kind: 'summary'; summary: GpSummary } | { kind: 'done' };

interface GpHandle {
  url: string;
  where: string;
  summary(): Promise<GpSummary>;
  reset(): Promise<void>;
  mark(): Promise<void>;
  stop(): Promise<void>;
}

function summaryOf(gp: MockGp, cpuMs: number | null): GpSummary {
  const r = gp.received();
  const statuses: Record<string, number> = {};
  const keys: string[] = [];
  for (const q of r.requests) {
    statuses[q.status] = (statuses[q.status] ?? 0) + 1;
    if (q.idempotencyKey !== undefined) keys.push(q.idempotencyKey);
  }
  const live = gp.store.search('ServiceRequest');
  const storedIds = live.map((x) => x.id as string);
  const multiVersion = storedIds.filter((id) => gp.store.history('ServiceRequest', id).length !== 1).length;
  return { deliveries: r.deliveries, duplicates: r.duplicates, recorded: r.requests.length, keys, statuses, storedIds, multiVersion, cpuMs };
}

async function serveGp(): Promise<void> {
  const gp = await startMockGp({ host: '127.0.0.1', port: 0 });
  let mark = process.cpuUsage();
  const send = (m: FromGp) => process.send?.(m);
  process.on('message', (m: ToGp) => {
    if (m.kind === 'mark') {
      mark = process.cpuUsage();
      send({ kind: 'done' });
    } else if (m.kind === 'reset') {
      gp.reset();
      send({ kind: 'done' });
    } else if (m.kind === 'summary') {
      const cpu = process.cpuUsage(mark);
      send({ kind: 'summary', summary: summaryOf(gp, (cpu.user + cpu.system) / 1000) });
    }
  });
  const close = async () => {
    await gp.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void close());
  process.on('disconnect', () => void close());
  send({ kind: 'listening', url: gp.url });
}

async function gpInProcess(): Promise<GpHandle> {
  const gp = await startMockGp({ host: '127.0.0.1', port: 0 });
  return {
    url: gp.url,
    where: 'in this process',
    summary: async () => summaryOf(gp, null),
    reset: async () => gp.reset(),
    mark: async () => undefined,
    stop: () => gp.close(),
  };
}

function gpChild(): Promise<GpHandle> {
  const child: ChildProcess = fork(__filename, ['--serve-gp'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  // One request at a time: each answer is the next message.
  let chain: Promise<unknown> = Promise.resolve();
  const ask = <T extends FromGp>(m: ToGp): Promise<T> => {
    const next = chain.then(
      () =>
        new Promise<T>((resolve) => {
          child.once('message', (reply: T) => resolve(reply));
          child.send(m);
        }),
    );
    chain = next.catch(() => undefined);
    return next;
  };
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`mock-gp child exited with code ${code} before listening`));
    child.once('exit', onExit);
    child.once('message', (m: FromGp) => {
      if (m.kind !== 'listening') return reject(new Error(`unexpected message ${m.kind}`));
      child.off('exit', onExit);
      resolve({
        url: m.url,
        where: `in a child process (pid ${child.pid})`,
        summary: async () => (await ask<Extract<FromGp, { kind: 'summary' }>>({ kind: 'summary' })).summary,
        reset: async () => void (await ask({ kind: 'reset' })),
        mark: async () => void (await ask({ kind: 'mark' })),
        stop: () =>
          new Promise((res) => {
            if (child.exitCode !== null) return res();
            const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
            child.once('exit', () => {
              clearTimeout(timer);
              res();
            });
            child.kill('SIGTERM');
          }),
      });
    });
  });
}

// ---------------------------------------------------------------------------------------------------------
// Stores
// ---------------------------------------------------------------------------------------------------------

interface Store {
  db: Database;
  /** A further connection to the same database, for another engine instance (PostgreSQL), or the same one. */
  another(): Promise<Database>;
  close(): Promise<void>;
  label: string;
}

async function openStore(args: Args, phase: number, cluster: PostgresCluster | undefined): Promise<Store> {
  const pool = args.number('pool', 10);
  if (cluster) {
    const name = `bench_deliver_${phase}_${process.pid}`;
    const admin = new Pool({ connectionString: cluster.url, max: 1 });
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    const url = cluster.url.replace(/\/postgres$/, `/${name}`);
    const db = await openDatabase({ databaseUrl: url, dataDir: '', databasePoolSize: pool });
    const extra: Database[] = [];
    return {
      db,
      label: `PostgreSQL (pool of ${pool})`,
      another: async () => {
        const d = await openPostgres(url, pool);
        extra.push(d);
        return d;
      },
      close: async () => {
        for (const d of extra) await d.close();
        await db.close();
      },
    };
  }
  if (args.flag('memory')) {
    const db = await openPglite();
    await migrate(db);
    return { db, label: 'PGlite (in memory)', another: async () => db, close: () => db.close() };
  }
  const dataDir = await mkdtemp(path.join(tmpdir(), 'sp-bridge-bench-deliver-'));
  const db = await openDatabase({ dataDir, databasePoolSize: 1 });
  return {
    db,
    label: 'PGlite (data dir)',
    another: async () => db,
    close: async () => {
      await db.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

function destinations(gpUrl: string, concurrency: number): DeliveryConfig {
  return parseDestinations({
    worker: { concurrency, pollIntervalMs: 1000, leaseMs: 300_000, attemptTimeoutMs: 60_000, shutdownTimeoutMs: 10_000 },
    destinations: [
      {
        id: DESTINATION,
        adapter: 'fhir-rest',
        settings: { baseUrl: gpUrl },
        receives: [{ resourceType: 'ServiceRequest', events: ['created'] }],
      },
    ],
  });
}

const patientId = (i: number) => `bpat-${String(i).padStart(6, '0')}`;
const requestId = (phase: number, i: number) => `bsr-${phase}-${String(i).padStart(6, '0')}`;

/** Writes the Patients and N ServiceRequests (each enqueuing one delivery), `batch` saves per transaction. */
async function enqueue(db: Database, config: DeliveryConfig, phase: number, n: number, patients: number, batch: number): Promise<number> {
  const repo = Repository.open(db, { outbox: createOutbox(config.destinations) });
  const t0 = performance.now();
  for (let start = 0; start < patients; start += batch) {
    await repo.transaction(async (tx) => {
      for (let p = start; p < Math.min(patients, start + batch); p++) {
        const patient: fhir4.Patient = {
          resourceType: 'Patient',
          identifier: [{ system: 'https://fhir.nhs.uk/Id/nhs-number', value: String(9_000_000_000 + p * 7) }],
          name: [{ family: `Bench${p}`, given: ['Pat'] }],
          birthDate: '1970-01-01',
        };
        await tx.save({ type: 'Patient', id: patientId(p), resource: patient, index: extractIndex(patient), fresh: true });
      }
    });
  }
  for (let start = 0; start < n; start += batch) {
    await repo.transaction(async (tx) => {
      for (let i = start; i < Math.min(n, start + batch); i++) {
        const resource = referral({
          referralNumber: `REF-${phase}-${i}`,
          patientId: patientId(i % patients),
          nhsNumber: String(9_000_000_000 + (i % patients) * 7),
          status: 'active',
          authoredOn: '2026-03-14T10:30:00Z',
        });
        await tx.save({ type: 'ServiceRequest', id: requestId(phase, i), resource, index: extractIndex(resource), fresh: true });
      }
    });
  }
  const seconds = (performance.now() - t0) / 1000;
  const { rows } = await db.query<{ n: string }>(`SELECT count(*)::text AS n FROM deliveries WHERE state = 'queued'`);
  if (Number(rows[0].n) !== n) throw new Error(`expected ${n} queued deliveries after the enqueue, found ${rows[0].n}`);
  return seconds;
}

// ---------------------------------------------------------------------------------------------------------
// Timing what the engine does
// ---------------------------------------------------------------------------------------------------------

/** Wall time of each call of an async method, replacing it on the object. */
function timeMethod<T extends object>(target: T, name: keyof T & string, samples: number[], sizes?: number[]): void {
  const original = (target[name] as unknown as (...a: unknown[]) => Promise<unknown>).bind(target);
  (target as Record<string, unknown>)[name] = async (...a: unknown[]) => {
    const t0 = performance.now();
    const result = await original(...a);
    samples.push(performance.now() - t0);
    if (sizes && Array.isArray(result)) sizes.push(result.length);
    return result;
  };
}

function timedAdapter(inner: DeliveryAdapter, samples: number[]): DeliveryAdapter {
  return {
    capabilities: inner.capabilities,
    deliver: async (item, signal) => {
      const t0 = performance.now();
      const outcome = await inner.deliver(item, signal);
      samples.push(performance.now() - t0);
      return outcome;
    },
    stop: () => inner.stop?.() ?? Promise.resolve(),
  };
}

function post<T>(session: Session, method: string, params?: object): Promise<T> {
  return new Promise((resolve, reject) =>
    session.post(method, params ?? {}, (err, result) => (err ? reject(err) : resolve(result as T))),
  );
}

// ---------------------------------------------------------------------------------------------------------
// One phase
// ---------------------------------------------------------------------------------------------------------

interface PhaseResult {
  workers: number;
  delivered: number;
  seconds: number;
  perSecond: number;
  complete: boolean;
  checksOk: boolean;
  problems: string[];
  enqueueSeconds: number;
  cpuMsPerDelivery: number;
  gpCpuMsPerDelivery: number | null;
  claims: { calls: number; p50: number; mean: number; itemsPerClaim: number };
  finish: { p50: number; mean: number };
  deliver: { p50: number; mean: number };
}

async function phase(args: Args, gp: GpHandle, cluster: PostgresCluster | undefined, index: number, workers: number): Promise<PhaseResult> {
  const n = args.number('deliveries', 5000);
  const patients = Math.max(1, args.number('patients', n));
  const batch = Math.max(1, args.number('batch', 500));
  const maxSeconds = args.number('max-seconds', 120);
  const asEngines = (args.value('workers-as') ?? 'concurrency') === 'engines';
  const store = await openStore(args, index, cluster);
  await gp.reset();
  const engines: DeliveryEngine[] = [];
  const claimMs: number[] = [];
  const claimSizes: number[] = [];
  const finishMs: number[] = [];
  const deliverMs: number[] = [];
  let delivered = 0;
  let otherOutcomes = 0;
  const complaints: string[] = [];
  let markDone: () => void = () => undefined;
  const allDone = new Promise<void>((resolve) => (markDone = resolve));
  const logger: DeliveryLogger = {
    info(obj, msg) {
      if (msg !== 'delivery attempt') return;
      const o = obj as { state?: string; outcome?: string };
      if (o.state === 'delivered') delivered++;
      else {
        otherOutcomes++;
        if (complaints.length < 5) complaints.push(`attempt ${JSON.stringify(obj)}`);
      }
      if (delivered >= n) markDone();
    },
    warn(obj, msg) {
      if (complaints.length < 5) complaints.push(`warn: ${msg} ${JSON.stringify(obj)}`);
    },
    error(obj, msg) {
      const err = (obj as { err?: unknown }).err;
      if (complaints.length < 5) complaints.push(`error: ${msg}${err instanceof Error ? `: ${err.message}` : ''}`);
    },
  };
  try {
    const enqueueConfig = destinations(gp.url, 1);
    const enqueueSeconds = await enqueue(store.db, enqueueConfig, index, n, patients, batch);
    await enqueueConfig.destinations[0].adapter.stop?.();

    const instances = asEngines ? workers : 1;
    for (let e = 0; e < instances; e++) {
      const config = destinations(gp.url, asEngines ? 1 : workers);
      for (const d of config.destinations) d.adapter = timedAdapter(d.adapter, deliverMs);
      const db = e === 0 ? store.db : await store.another();
      const engine = new DeliveryEngine({ db, destinations: config.destinations, worker: config.worker, logger, workerId: `bench-${index}-${e}` });
      timeMethod(engine.store, 'claim', claimMs, claimSizes);
      timeMethod(engine.store, 'finishMany', finishMs);
      await engine.startAdapters();
      engines.push(engine);
    }

    const profDir = args.value('cpu-prof');
    let session: Session | undefined;
    if (profDir) {
      session = new Session();
      session.connect();
      await post(session, 'Profiler.enable');
      await post(session, 'Profiler.setSamplingInterval', { interval: 200 });
      await post(session, 'Profiler.start');
    }
    await gp.mark();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), maxSeconds * 1000);
    });
    for (const engine of engines) await engine.start();
    const finishedInTime = await Promise.race([allDone.then(() => false), timedOut]).then((t) => !t);
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    clearTimeout(timer);
    const deliveredAtEnd = delivered;
    const gpSummary = await gp.summary();
    if (session && profDir) {
      const { profile } = await post<{ profile: unknown }>(session, 'Profiler.stop');
      session.disconnect();
      await mkdir(profDir, { recursive: true });
      const file = path.join(path.resolve(profDir), `deliver-${asEngines ? 'engines' : 'concurrency'}-${workers}-${process.pid}.cpuprofile`);
      await writeFile(file, JSON.stringify(profile));
      log(`    CPU profile of the delivery phase: ${file}`);
    }
    await Promise.all(engines.map((engine) => engine.stop()));

    // Exactly once, everywhere.
    const problems: string[] = [];
    if (!finishedInTime) problems.push(`stopped after ${maxSeconds} s with ${deliveredAtEnd} of ${n} delivered`);
    if (otherOutcomes > 0) problems.push(`${otherOutcomes} attempts did not end delivered (e.g. ${complaints[0] ?? '?'})`);
    if (gpSummary.deliveries !== n) problems.push(`mock-gp counted ${gpSummary.deliveries} writes, expected ${n}`);
    if (gpSummary.duplicates !== 0) problems.push(`mock-gp answered ${gpSummary.duplicates} duplicates`);
    const expected = new Set(Array.from({ length: n }, (_, i) => requestId(index, i)));
    const stored = new Set(gpSummary.storedIds);
    const missing = [...expected].filter((id) => !stored.has(id));
    const unexpected = gpSummary.storedIds.filter((id) => !expected.has(id));
    if (missing.length || unexpected.length || stored.size !== gpSummary.storedIds.length) {
      problems.push(`mock-gp stores ${gpSummary.storedIds.length} ServiceRequests: ${missing.length} expected ones missing, ${unexpected.length} unexpected`);
    }
    if (gpSummary.multiVersion > 0) problems.push(`${gpSummary.multiVersion} ServiceRequests reached mock-gp more than once (several versions)`);
    if (n <= 10_000) {
      const keys = new Set(gpSummary.keys);
      if (gpSummary.keys.length !== n || keys.size !== n) {
        problems.push(`mock-gp recorded ${gpSummary.keys.length} requests with ${keys.size} distinct idempotency keys, expected ${n} and ${n}`);
      }
    }
    const nonOk = Object.entries(gpSummary.statuses).filter(([s]) => !s.startsWith('2'));
    if (nonOk.length) problems.push(`mock-gp answered ${nonOk.map(([s, c]) => `${c} x ${s}`).join(', ')}`);
    const { rows } = await store.db.query<{ state: string; n: string; attempts: string }>(
      `SELECT d.state, count(*)::text AS n, sum((SELECT count(*) FROM delivery_attempts a WHERE a.delivery_id = d.id))::text AS attempts
       FROM deliveries d GROUP BY d.state`,
    );
    const states = Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
    const attempts = rows.reduce((s, r) => s + Number(r.attempts), 0);
    if (states.delivered !== n || rows.length !== 1) problems.push(`outbox states ${JSON.stringify(states)}, expected { delivered: ${n} }`);
    if (attempts !== n) problems.push(`${attempts} attempt records, expected ${n} (one each)`);

    const claims = summarize(claimMs);
    const fin = summarize(finishMs);
    const del = summarize(deliverMs);
    const totalClaimed = claimSizes.reduce((s, x) => s + x, 0);
    const nonEmpty = claimSizes.filter((x) => x > 0).length;
    return {
      workers,
      delivered: deliveredAtEnd,
      seconds,
      perSecond: deliveredAtEnd / seconds,
      complete: finishedInTime,
      checksOk: problems.length === 0,
      problems,
      enqueueSeconds,
      cpuMsPerDelivery: (cpu.user + cpu.system) / 1000 / Math.max(1, deliveredAtEnd),
      gpCpuMsPerDelivery: gpSummary.cpuMs === null ? null : gpSummary.cpuMs / Math.max(1, deliveredAtEnd),
      claims: { calls: claims.n, p50: claims.p50, mean: claims.mean, itemsPerClaim: totalClaimed / Math.max(1, nonEmpty) },
      finish: { p50: fin.p50, mean: fin.mean },
      deliver: { p50: del.p50, mean: del.mean },
    };
  } finally {
    await Promise.all(engines.map((engine) => engine.stop().catch(() => undefined)));
    await store.close();
  }
}

function describeWorkers(workers: number, asEngines: boolean): string {
  if (asEngines) return workers === 1 ? '1 worker (one engine, concurrency 1)' : `${workers} workers (${workers} engines, concurrency 1 each)`;
  return workers === 1 ? '1 worker (one engine, concurrency 1)' : `${workers} workers (one engine, concurrency ${workers})`;
}

async function main(): Promise<void> {
  const args = parseArgs();
  if (args.flag('serve-gp')) return serveGp();

  const n = args.number('deliveries', 5000);
  const workerList = (args.value('workers') ?? '1,4,8').split(',').map((w) => Number(w));
  if (workerList.some((w) => !Number.isInteger(w) || w < 1 || w > 1000)) throw new Error('--workers must be a list of integers from 1 to 1000, e.g. 1,4');
  const asEngines = (args.value('workers-as') ?? 'concurrency') === 'engines';
  const patients = Math.max(1, args.number('patients', n));
  let cluster: PostgresCluster | undefined;
  if (args.flag('postgres')) {
    if (!postgresAvailable()) throw new Error('--postgres needs initdb, pg_ctl and postgres on the PATH');
    cluster = await startPostgresCluster();
  }
  const gp = args.flag('in-process-gp') ? await gpInProcess() : await gpChild();
  log(`sp-bridge delivery benchmark — ${new Date().toISOString()}`);
  log(`machine: ${machine()}`);
  log(
    `${n} ServiceRequest deliveries per phase over ${patients} patients, fhir-rest adapter (PUT, return=minimal) to mock-gp ` +
      `${gp.where} at ${gp.url}; store: ${cluster ? `PostgreSQL (pool of ${args.number('pool', 10)})` : args.flag('memory') ? 'PGlite (in memory)' : 'PGlite (data dir)'}, a fresh one per phase; ` +
      `a worker = ${asEngines ? 'one engine instance with concurrency 1' : "one attempt in flight (the engine's worker.concurrency)"}`,
  );
  log('');
  const results: PhaseResult[] = [];
  try {
    for (let i = 0; i < workerList.length; i++) {
      const r = await phase(args, gp, cluster, i + 1, workerList[i]);
      results.push(r);
      log(
        `  ${describeWorkers(r.workers, asEngines).padEnd(40)} ${r.perSecond.toFixed(0).padStart(6)} deliveries/s  ` +
          `(${r.delivered} in ${r.seconds.toFixed(2)} s; enqueue took ${r.enqueueSeconds.toFixed(1)} s)`,
      );
      log(
        `    engine process CPU ${r.cpuMsPerDelivery.toFixed(3)} ms/delivery (${((r.cpuMsPerDelivery * r.perSecond) / 10).toFixed(0)}% of a core)` +
          (r.gpCpuMsPerDelivery === null ? '' : `, mock-gp CPU ${r.gpCpuMsPerDelivery.toFixed(3)} ms/delivery`),
      );
      log(
        `    per call (wall): claim p50 ${r.claims.p50.toFixed(2)} ms mean ${r.claims.mean.toFixed(2)} ms (${r.claims.calls} calls, ` +
          `${r.claims.itemsPerClaim.toFixed(2)} items per non-empty claim); adapter deliver p50 ${r.deliver.p50.toFixed(2)} ms mean ${r.deliver.mean.toFixed(2)} ms; ` +
          `finish (per batch) p50 ${r.finish.p50.toFixed(2)} ms mean ${r.finish.mean.toFixed(2)} ms`,
      );
      log(r.checksOk ? `    checks: every item arrived at mock-gp exactly once; outbox: ${n} delivered, one attempt each: OK` : `    CHECKS FAILED: ${r.problems.join('; ')}`);
    }
  } finally {
    await gp.stop();
    cluster?.stop();
  }
  log('');
  const base = results[0];
  for (const r of results.slice(1)) {
    log(`  ${describeWorkers(r.workers, asEngines)} / ${describeWorkers(base.workers, asEngines)} = ${(r.perSecond / base.perSecond).toFixed(2)}x`);
  }
  for (const r of results) {
    log(`  ${describeWorkers(r.workers, asEngines)}: ${r.perSecond.toFixed(0)}/s against the target of 1,000/s: ${r.perSecond >= 1000 ? 'met' : 'NOT met'}`);
  }
  if (results.some((r) => !r.checksOk)) process.exitCode = 1;
}

main().catch((err: unknown) => {
  process.stderr.write(`delivery benchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
