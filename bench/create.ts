/**
 * Create benchmark: POST /ServiceRequest with a ~3 KB social prescribing referral.
 *
 * In one run, with the same autocannon settings: a bare Fastify 5 server that parses the JSON body and
 * echoes it back (the ceiling for any Fastify JSON service on this machine), then sp-bridge over embedded
 * PGlite in a temp data dir (and optionally over a throwaway PostgreSQL cluster). Prints req/s, latency
 * and the ratio sp-bridge / bare. Each server runs in its own child process, the load generator in this one.
 *
 *   npm run bench:create -- [--duration 10] [--warmup 3] [--connections 10] [--postgres] [--memory]
 *                           [--log-level info] [--cpu-prof DIR] [--breakdown]
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import Fastify, { type FastifyInstance } from 'fastify';
import { buildApp } from '../src/http/app';
import { extractIndex } from '../src/fhir/search/extract';
import { openDatabase, Repository, type Database } from '../src/storage';
import { openPglite } from '../src/storage/db';
import { getValidator } from '../src/validation/validator';
import { migrate } from '../src/storage/migrations';
// Test support code, used read-only: initdb into a temp dir, started on a free loopback port.
import { postgresAvailable, startPostgresCluster } from '../test/support/postgres-cluster';
import { benchLogger, log, machine, ms, parseArgs, summarize, type Args } from './common';
import { referralBody } from './referral';

type Target = 'bare' | 'pglite' | 'pglite-memory' | 'postgres';

const LABELS: Record<Target, string> = {
  bare: 'bare Fastify echo',
  pglite: 'sp-bridge, PGlite (data dir)',
  'pglite-memory': 'sp-bridge, PGlite (in memory)',
  postgres: 'sp-bridge, PostgreSQL',
};

/** Messages between this process and a server child. */
type ToChild = { kind: 'mark' } | { kind: 'report' };
type FromChild =
  | { kind: 'listening'; port: number }
  | { kind: 'report'; cpuMs: number; wallMs: number; stored: number | null };

const BODY_LIMIT = 5 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------------------
// Server side (a child process started with --serve TARGET)
// ---------------------------------------------------------------------------------------------------------

async function bareServer(): Promise<FastifyInstance> {
  const app = Fastify({ logger: false, bodyLimit: BODY_LIMIT });
  app.addContentTypeParser(['application/fhir+json', 'application/json'], { parseAs: 'string' }, (_req, body, done) => {
    try {
      done(null, JSON.parse(typeof body === 'string' ? body : body.toString('utf8')) as unknown);
    } catch (err) {
      done(err as Error, undefined);
    }
  });
  app.post('/ServiceRequest', async (req, reply) => {
    reply.code(201).type('application/fhir+json; charset=utf-8');
    return req.body;
  });
  return app;
}

async function openStore(target: Exclude<Target, 'bare'>, args: Args): Promise<{ db: Database; cleanup: () => Promise<void> }> {
  if (target === 'postgres') {
    const url = args.value('database-url');
    if (!url) throw new Error('--database-url is required for the postgres target');
    const db = await openDatabase({ databaseUrl: url, dataDir: '', databasePoolSize: args.number('pool', 10) });
    return { db, cleanup: async () => undefined };
  }
  if (target === 'pglite-memory') {
    const db = await openPglite();
    await migrate(db);
    return { db, cleanup: async () => undefined };
  }
  const dataDir = await mkdtemp(path.join(tmpdir(), 'sp-bridge-bench-'));
  const db = await openDatabase({ dataDir, databasePoolSize: 1 });
  return { db, cleanup: () => rm(dataDir, { recursive: true, force: true }) };
}

async function serve(target: Target, args: Args): Promise<void> {
  let app: FastifyInstance;
  let db: Database | undefined;
  let cleanup: () => Promise<void> = async () => undefined;
  if (target === 'bare') {
    app = await bareServer();
  } else {
    const store = await openStore(target, args);
    db = store.db;
    cleanup = store.cleanup;
    app = await buildApp({ auth: { mode: 'none' }, config: { bodyLimitBytes: BODY_LIMIT }, db, logger: benchLogger(args.value('log-level') ?? 'info') });
  }
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (typeof address !== 'object' || address === null) throw new Error('server has no address');

  let markCpu = process.cpuUsage();
  let markWall = performance.now();
  const send = (m: FromChild) => process.send?.(m);
  process.on('message', (m: ToChild) => {
    if (m.kind === 'mark') {
      markCpu = process.cpuUsage();
      markWall = performance.now();
    } else if (m.kind === 'report') {
      const cpu = process.cpuUsage(markCpu);
      const wallMs = performance.now() - markWall;
      const count = db
        ? db.query<{ n: string }>("SELECT count(*)::text AS n FROM resource_versions WHERE type = 'ServiceRequest'")
        : Promise.resolve({ rows: [] as { n: string }[] });
      void count.then(({ rows }) =>
        send({ kind: 'report', cpuMs: (cpu.user + cpu.system) / 1000, wallMs, stored: rows[0] ? Number(rows[0].n) : null }),
      );
    }
  });
  let closing = false;
  const close = async () => {
    if (closing) return;
    closing = true;
    await app.close();
    await db?.close();
    await cleanup();
    process.exit(0); // a normal exit, so that --cpu-prof writes its profile
  };
  process.on('SIGTERM', () => void close());
  process.on('disconnect', () => void close());
  send({ kind: 'listening', port: address.port });
}

// ---------------------------------------------------------------------------------------------------------
// Load side (this process)
// ---------------------------------------------------------------------------------------------------------

interface Server {
  port: number;
  request(m: ToChild): Promise<FromChild | undefined>;
  stop(): Promise<void>;
}

function startServer(target: Target, extra: string[], execArgv: string[]): Promise<Server> {
  const child: ChildProcess = fork(__filename, ['--serve', target, ...extra], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`${LABELS[target]} exited with code ${code} before listening`));
    child.once('exit', onExit);
    child.once('message', (m: FromChild) => {
      if (m.kind !== 'listening') return reject(new Error(`unexpected message ${m.kind}`));
      child.off('exit', onExit);
      resolve({
        port: m.port,
        request: (msg) =>
          new Promise((res) => {
            if (msg.kind === 'mark') {
              child.send(msg);
              res(undefined);
            } else {
              child.once('message', (reply: FromChild) => res(reply));
              child.send(msg);
            }
          }),
        stop: () =>
          new Promise((res) => {
            if (child.exitCode !== null) return res();
            const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
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

interface RunResult {
  target: Target;
  reqPerSec: number;
  p50: number;
  p99: number;
  mean: number;
  total: number;
  non2xx: number;
  errors: number;
  serverCpu?: number;
  stored?: number | null;
}

const HEADERS = { 'content-type': 'application/fhir+json', accept: 'application/fhir+json' };

async function preflight(port: number, body: string, target: Target): Promise<void> {
  const res = await fetch(`http://127.0.0.1:${port}/ServiceRequest`, { method: 'POST', headers: HEADERS, body });
  const text = await res.text();
  if (res.status !== 201) throw new Error(`${LABELS[target]}: preflight POST answered ${res.status}: ${text.slice(0, 500)}`);
  const parsed = JSON.parse(text) as { resourceType?: string };
  if (parsed.resourceType !== 'ServiceRequest') throw new Error(`${LABELS[target]}: preflight answered ${text.slice(0, 200)}`);
}

interface CannonRun {
  result: autocannon.Result;
  /** Every 2xx response time in ms, at full precision (autocannon's own histogram keeps whole milliseconds). */
  latencies: number[];
}

function cannon(port: number, body: string, connections: number, seconds: number): Promise<CannonRun> {
  return new Promise((resolve, reject) => {
    const latencies: number[] = [];
    const instance = autocannon(
      {
        url: `http://127.0.0.1:${port}/ServiceRequest`,
        method: 'POST',
        headers: HEADERS,
        body,
        idReplacement: true,
        connections,
        pipelining: 1,
        duration: seconds,
        timeout: 30,
      },
      (err: unknown, result: autocannon.Result) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve({ result, latencies })),
    );
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime);
    });
  });
}

async function runTarget(target: Target, args: Args, extra: string[] = []): Promise<RunResult> {
  const connections = args.number('connections', 10);
  const duration = args.number('duration', 10);
  const warmup = args.number('warmup', 3);
  const profDir = args.value('cpu-prof');
  const execArgv = profDir && target !== 'bare' ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(profDir)}`] : [];
  const logLevel = args.value('log-level');
  const server = await startServer(target, [...extra, ...(logLevel ? ['--log-level', logLevel] : [])], execArgv);
  try {
    // [<id>] is replaced by autocannon with a fresh id in every request: each referral has its own number.
    const body = referralBody('REF-[<id>]');
    await preflight(server.port, referralBody('REF-preflight'), target);
    if (warmup > 0) await cannon(server.port, body, connections, warmup);
    await server.request({ kind: 'mark' });
    const { result: r, latencies } = await cannon(server.port, body, connections, duration);
    const report = await server.request({ kind: 'report' });
    const lat = summarize(latencies);
    const result: RunResult = {
      target,
      reqPerSec: r.requests.average,
      p50: lat.p50,
      p99: lat.p99,
      mean: lat.mean,
      total: r.requests.total,
      non2xx: r.non2xx,
      errors: r.errors,
    };
    if (report?.kind === 'report') {
      result.serverCpu = report.cpuMs / report.wallMs;
      result.stored = report.stored;
    }
    return result;
  } finally {
    await server.stop();
  }
}

function printResult(r: RunResult): void {
  const cpu =
    r.serverCpu === undefined
      ? ''
      : `, server process CPU ${(r.serverCpu * 100).toFixed(0)}% of one core = ${((r.serverCpu * 1000) / r.reqPerSec).toFixed(3)} ms CPU per request`;
  log(
    `  ${LABELS[r.target].padEnd(30)} ${r.reqPerSec.toFixed(0).padStart(7)} req/s  ` +
      `p50 ${r.p50.toFixed(2).padStart(6)} ms  p99 ${r.p99.toFixed(2).padStart(6)} ms  ` +
      `(${r.total} requests, ${r.non2xx} non-2xx, ${r.errors} errors${cpu})`,
  );
  if (r.non2xx > 0 || r.errors > 0) log(`  WARNING: ${LABELS[r.target]} had failures; its figures are not comparable`);
}

/**
 * Where one request's time goes, measured serially in this process over in-memory PGlite:
 * Repository.save alone, extractIndex alone, the whole app through inject(), and the bare echo through inject().
 */
async function breakdown(n: number): Promise<void> {
  log(`\nBreakdown: ${n} sequential creates in-process (in-memory PGlite, no sockets)`);
  const db = await openPglite();
  await migrate(db);
  const repo = Repository.open(db);
  const body = referralBody();
  // The wall-clock median per operation (robust to the odd preempted sample when other work shares the machine)
  // and this process's CPU time per operation (all threads, so GC helpers are included).
  const time = async (label: string, run: (i: number) => Promise<unknown> | unknown) => {
    for (let i = 0; i < Math.min(200, n); i++) await run(-1 - i); // warm-up
    const samples: number[] = [];
    const cpu0 = process.cpuUsage();
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await run(i);
      samples.push(performance.now() - t0);
    }
    const cpu = process.cpuUsage(cpu0);
    const cpuPerOp = (cpu.user + cpu.system) / 1000 / n;
    const s = summarize(samples);
    log(`  ${label.padEnd(46)} p50 ${ms(s.p50, 3)}  p99 ${ms(s.p99, 3)}  CPU ${ms(cpuPerOp, 3)}/op`);
    return s.p50;
  };
  const parse = await time('JSON.parse of the body', () => JSON.parse(body));
  const extract = await time('JSON.parse + extractIndex', () => extractIndex(JSON.parse(body) as fhir4.Resource) && undefined);
  const validator = getValidator();
  const validate = await time('JSON.parse + validator.validate (all layers)', () => validator.validate(JSON.parse(body) as fhir4.Resource, {}));
  const save = await time('JSON.parse + extractIndex + Repository.save', (i) => {
    const resource = JSON.parse(body) as fhir4.Resource;
    return repo.save({ type: 'ServiceRequest', id: `bd-${i}`, resource, index: extractIndex(resource), fresh: true });
  });
  const insertOnly = await time('a bare single-row INSERT of the body', (i) =>
    db.query('INSERT INTO resource_versions (type, id, version, last_updated, content) VALUES ($1, $2, 1, now(), $3)', [
      'Bench',
      `raw-${i}`,
      body,
    ]),
  );
  const app = await buildApp({ auth: { mode: 'none' }, config: { bodyLimitBytes: BODY_LIMIT }, db, logger: benchLogger('info') });
  const inject = await time('sp-bridge POST via inject()', () =>
    app.inject({ method: 'POST', url: '/ServiceRequest', headers: HEADERS, payload: body }),
  );
  const bare = await bareServer();
  const bareInject = await time('bare echo POST via inject()', () =>
    bare.inject({ method: 'POST', url: '/ServiceRequest', headers: HEADERS, payload: body }),
  );
  await app.close();
  await bare.close();
  await db.close();
  const storage = save - extract;
  const validation = validate - parse;
  const pct = (x: number) => `${((x / inject) * 100).toFixed(0)}%`;
  log(`  => median create through sp-bridge (inject()) ${ms(inject, 3)}:`);
  log(`     Repository.save          ≈ ${ms(storage, 3)} (${pct(storage)})`);
  log(`     validation               ≈ ${ms(validation, 3)} (${pct(validation)})`);
  log(`     JSON.parse + extractIndex ≈ ${ms(extract, 3)} (${pct(extract)})`);
  log(`     everything else (Fastify, parser, routing, response JSON, log line) ≈ ${ms(inject - storage - validation - extract, 3)} (${pct(inject - storage - validation - extract)})`);
  log(`     for scale: bare Fastify echo via inject() ${ms(bareInject, 3)}; one single-row INSERT in PGlite ${ms(insertOnly, 3)}`);
}

async function main(): Promise<void> {
  const args = parseArgs();
  const serveTarget = args.value('serve');
  if (serveTarget) return serve(serveTarget as Target, args);

  const duration = args.number('duration', 10);
  const warmup = args.number('warmup', 3);
  const connections = args.number('connections', 10);
  log(`sp-bridge create benchmark — ${new Date().toISOString()}`);
  log(`machine: ${machine()}`);
  log(
    `POST /ServiceRequest, ${Buffer.byteLength(referralBody())} byte referral (application/fhir+json), ` +
      `autocannon ${connections} connections, pipelining 1, ${warmup} s warm-up + ${duration} s measured, 127.0.0.1`,
  );
  log('');

  const results: RunResult[] = [];
  const bare = await runTarget('bare', args);
  printResult(bare);
  results.push(bare);
  const pglite = await runTarget(args.flag('memory') ? 'pglite-memory' : 'pglite', args);
  printResult(pglite);
  results.push(pglite);
  if (args.flag('memory') && args.flag('both')) {
    const disk = await runTarget('pglite', args);
    printResult(disk);
    results.push(disk);
  }

  if (args.flag('postgres')) {
    if (!postgresAvailable()) {
      log('  PostgreSQL binaries (initdb, pg_ctl, postgres) are not on PATH: skipping --postgres');
    } else {
      const cluster = await startPostgresCluster();
      try {
        const pg = await runTarget('postgres', args, ['--database-url', cluster.url, '--pool', String(args.number('pool', 10))]);
        printResult(pg);
        results.push(pg);
      } finally {
        cluster.stop();
      }
    }
  }

  log('');
  for (const r of results.slice(1)) {
    const ratio = r.reqPerSec / bare.reqPerSec;
    const verdict = r.target.startsWith('pglite') ? (ratio >= 0.3 ? '  (target >= 0.30: met)' : '  (target >= 0.30: NOT met)') : '';
    log(`  ${LABELS[r.target]} / bare = ${ratio.toFixed(2)}x req/s, p99 ${(r.p99 / Math.max(bare.p99, 0.001)).toFixed(1)}x${verdict}`);
  }
  if (bare.serverCpu !== undefined && bare.serverCpu < 0.85) {
    log(
      `  note: the bare server used only ${(bare.serverCpu * 100).toFixed(0)}% of a core: the load generator or other work on the ` +
        `machine held it back, so its req/s (and the ratio) are understated; compare CPU per request instead`,
    );
  }
  if (args.flag('breakdown')) await breakdown(args.number('breakdown-n', 2000));
}

main().catch((err: unknown) => {
  process.stderr.write(`create benchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
