/**
 * Search benchmark: 100,000 ServiceRequests over 10,000 patients in an embedded PGlite store, then
 * GET /ServiceRequest?patient=Patient/<id>&status=active&_count=20 for 1,000 random patients, one at a time,
 * through the whole app (app.inject(): routing, parsing, SQL, Bundle, log line; no socket). Prints p50/p95/p99.
 *
 * The data is loaded straight through Repository.save and extractIndex (the code the HTTP create uses),
 * thousands of saves per transaction. PGlite runs no autovacuum, so a store is measured as loaded and then
 * again after an explicit ANALYZE: the first is what a PGlite deployment sees today.
 *
 *   npm run bench:search -- [--resources 100000] [--patients 10000] [--queries 1000] [--batch 5000]
 *                           [--max-seconds 120] [--data-dir DIR] [--memory] [--postgres] [--no-analyze] [--explain]
 *
 * --data-dir keeps the loaded store for the next run (a store already holding the same data is reused).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../src/http/app';
import { extractIndex } from '../src/fhir/search/extract';
import { openDatabase, Repository, type Database, type Queryable } from '../src/storage';
import { openPglite } from '../src/storage/db';
import { migrate } from '../src/storage/migrations';
import { postgresAvailable, startPostgresCluster } from '../test/support/postgres-cluster';
import { benchLogger, log, machine, ms, parseArgs, summarize, type Args, type Summary } from './common';
import { referral } from './referral';

const STATUSES: [fhir4.ServiceRequest['status'], number][] = [
  ['active', 0.4],
  ['completed', 0.3],
  ['draft', 0.1],
  ['on-hold', 0.05],
  ['revoked', 0.1],
  ['entered-in-error', 0.05],
];

/** mulberry32: a small seeded PRNG, so that the data (and the expected answers) are the same every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const patientId = (i: number) => `pat-${String(i).padStart(6, '0')}`;
const nhsNumber = (i: number) => String(9_000_000_000 + i * 7);

interface Dataset {
  resources: number;
  patients: number;
  /** ServiceRequest i → [patient index, status]. */
  at(i: number): { patient: number; status: fhir4.ServiceRequest['status']; authoredOn: string };
  /** Expected number of active ServiceRequests per patient. */
  activeCount: Int32Array;
}

function dataset(resources: number, patients: number): Dataset {
  const rand = prng(20260314);
  const patientOf = new Int32Array(resources);
  const statusOf = new Uint8Array(resources);
  const dayOf = new Uint16Array(resources);
  const activeCount = new Int32Array(patients);
  for (let i = 0; i < resources; i++) {
    patientOf[i] = Math.floor(rand() * patients);
    let r = rand();
    let s = 0;
    while (s < STATUSES.length - 1 && r >= STATUSES[s][1]) r -= STATUSES[s++][1];
    statusOf[i] = s;
    dayOf[i] = Math.floor(rand() * 800);
    if (STATUSES[s][0] === 'active') activeCount[patientOf[i]]++;
  }
  const epoch = Date.UTC(2024, 0, 1, 9, 0, 0);
  return {
    resources,
    patients,
    activeCount,
    at: (i) => ({
      patient: patientOf[i],
      status: STATUSES[statusOf[i]][0],
      authoredOn: new Date(epoch + dayOf[i] * 86_400_000 + (i % 480) * 60_000).toISOString().replace('.000Z', 'Z'),
    }),
  };
}

function patientResource(i: number): fhir4.Patient {
  return {
    resourceType: 'Patient',
    identifier: [{ system: 'https://fhir.nhs.uk/Id/nhs-number', value: nhsNumber(i) }],
    name: [{ use: 'official', family: `Family${i % 997}`, given: [`Given${i % 613}`] }],
    gender: i % 2 ? 'female' : 'male',
    birthDate: `19${String(30 + (i % 70)).padStart(2, '0')}-0${1 + (i % 9)}-1${i % 10}`,
    address: [{ line: [`${1 + (i % 200)} High Street`], city: 'Leeds', postalCode: `LS${1 + (i % 28)} 4AP` }],
  };
}

async function count(db: Queryable, type: string): Promise<number> {
  const { rows } = await db.query<{ n: string }>('SELECT count(*)::text AS n FROM resource_versions WHERE type = $1', [type]);
  return Number(rows[0].n);
}

async function load(db: Database, data: Dataset, batch: number): Promise<void> {
  const repo = Repository.open(db);
  const haveSr = await count(db, 'ServiceRequest');
  const havePat = await count(db, 'Patient');
  if (haveSr === data.resources && havePat === data.patients) {
    log(`store already holds ${haveSr} ServiceRequests and ${havePat} Patients: reusing it`);
    return;
  }
  if (haveSr !== 0 || havePat !== 0) throw new Error(`store holds ${haveSr} ServiceRequests and ${havePat} Patients: use an empty --data-dir`);

  const t0 = performance.now();
  const save = (tx: Repository, type: string, id: string, resource: fhir4.Resource) =>
    tx.save({ type, id, resource, index: extractIndex(resource), fresh: true });
  await repo.transaction(async (tx) => {
    for (let i = 0; i < data.patients; i++) await save(tx, 'Patient', patientId(i), patientResource(i));
  });
  const tp = performance.now() - t0;
  log(`  ${data.patients} Patients in ${(tp / 1000).toFixed(1)} s (${((data.patients / tp) * 1000).toFixed(0)}/s)`);

  const t1 = performance.now();
  let lastReport = t1;
  for (let start = 0; start < data.resources; start += batch) {
    const end = Math.min(data.resources, start + batch);
    await repo.transaction(async (tx) => {
      for (let i = start; i < end; i++) {
        const d = data.at(i);
        const sr = referral({
          referralNumber: `REF-${String(i).padStart(8, '0')}`,
          patientId: patientId(d.patient),
          nhsNumber: nhsNumber(d.patient),
          status: d.status,
          authoredOn: d.authoredOn,
        });
        await save(tx, 'ServiceRequest', `sr-${String(i).padStart(8, '0')}`, sr);
      }
    });
    const now = performance.now();
    if (now - lastReport > 10_000 || end === data.resources) {
      lastReport = now;
      log(`  ${end} ServiceRequests, ${((now - t1) / 1000).toFixed(1)} s (${((end / (now - t1)) * 1000).toFixed(0)}/s)`);
    }
  }
  const ts = performance.now() - t1;
  log(`  loaded ${data.resources} ServiceRequests in ${(ts / 1000).toFixed(1)} s: ${((data.resources / ts) * 1000).toFixed(0)} saves/s, ${ms(ts / data.resources, 3)} per save`);
}

/** Wraps a Database to add up the time spent in queries, and to keep the last search statement for EXPLAIN. */
interface Timed {
  db: Database;
  dbMs: number;
  queries: number;
  lastSearch?: { sql: string; params: unknown[] };
}

function timed(inner: Database): Timed {
  const t: Timed = {
    dbMs: 0,
    queries: 0,
    db: {
      kind: inner.kind,
      close: () => inner.close(),
      transaction: (fn) => inner.transaction(fn),
      async query<T extends object = Record<string, unknown>>(sql: string, params?: unknown[]) {
        const t0 = performance.now();
        try {
          return await inner.query<T>(sql, params);
        } finally {
          t.dbMs += performance.now() - t0;
          t.queries++;
          if (/ORDER BY/.test(sql) && /search_reference/.test(sql)) t.lastSearch = { sql, params: params ?? [] };
        }
      },
    },
  };
  return t;
}

interface Measured {
  /** Searches timed: fewer than asked when the time budget ran out. */
  n: number;
  total: Summary;
  db: Summary;
  queriesPerRequest: number;
}

async function measure(app: FastifyInstance, t: Timed, data: Dataset, queries: number, seed: number, budgetMs: number): Promise<Measured> {
  const rand = prng(seed);
  const pick = () => Math.floor(rand() * data.patients);
  const run = async (p: number) => {
    const res = await app.inject({
      method: 'GET',
      url: `/ServiceRequest?patient=Patient/${patientId(p)}&status=active&_count=20`,
      headers: { accept: 'application/fhir+json' },
    });
    if (res.statusCode !== 200) throw new Error(`search answered ${res.statusCode}: ${res.body.slice(0, 300)}`);
    const bundle = JSON.parse(res.body) as fhir4.Bundle;
    const expected = data.activeCount[p];
    if (bundle.total !== expected || (bundle.entry?.length ?? 0) !== Math.min(20, expected)) {
      throw new Error(`patient ${patientId(p)}: expected ${expected} active, got total ${bundle.total} and ${bundle.entry?.length ?? 0} entries`);
    }
  };
  const started = performance.now();
  for (let i = 0; i < Math.min(100, queries) && performance.now() - started < budgetMs / 10; i++) await run(pick()); // warm-up
  const total: number[] = [];
  const db: number[] = [];
  const q0 = t.queries;
  const t1 = performance.now();
  for (let i = 0; i < queries && performance.now() - t1 < budgetMs; i++) {
    const p = pick();
    const d0 = t.dbMs;
    const t0 = performance.now();
    await run(p);
    total.push(performance.now() - t0);
    db.push(t.dbMs - d0);
  }
  return { n: total.length, total: summarize(total), db: summarize(db), queriesPerRequest: (t.queries - q0) / total.length };
}

function printMeasured(label: string, m: Measured): void {
  const line = (s: Summary) => `p50 ${ms(s.p50)}  p95 ${ms(s.p95)}  p99 ${ms(s.p99)}  max ${ms(s.max)}  mean ${ms(s.mean)}`;
  log(`  ${label}: ${m.n} searches`);
  log(`    whole request: ${line(m.total)}   [target p95 < 20 ms: ${m.total.p95 < 20 ? 'met' : 'NOT met'}]`);
  log(`    in SQL:        ${line(m.db)}   (${m.queriesPerRequest.toFixed(1)} statements per request)`);
}

async function explain(t: Timed): Promise<void> {
  if (!t.lastSearch) return;
  const { rows } = await t.db.query<{ 'QUERY PLAN': string }>(`EXPLAIN ANALYZE ${t.lastSearch.sql}`, t.lastSearch.params);
  log('    EXPLAIN ANALYZE of the last page query:');
  for (const r of rows) log(`      ${r['QUERY PLAN']}`);
}

async function benchStore(label: string, open: () => Promise<Database>, data: Dataset, args: Args): Promise<void> {
  log(`\n${label}`);
  const t = timed(await open());
  try {
    await load(t.db, data, args.number('batch', 5000));
    if (t.db.kind === 'pglite') {
      const { rows } = await t.db.query<{ size: string }>('SELECT pg_size_pretty(pg_database_size(current_database())) AS size');
      log(`  database size ${rows[0].size}`);
    }
    const app = await buildApp({ auth: { mode: 'none' }, config: { bodyLimitBytes: 5 * 1024 * 1024 }, db: t.db, logger: benchLogger('info') });
    try {
      const queries = args.number('queries', 1000);
      const budget = args.number('max-seconds', 120) * 1000;
      log(`  ${queries} searches for random patients (at most ${budget / 1000} s per phase), sequential, via app.inject():`);
      printMeasured('as loaded (no ANALYZE since the load)', await measure(app, t, data, queries, 1, budget));
      if (args.flag('explain')) await explain(t);
      if (!args.flag('no-analyze')) {
        const a0 = performance.now();
        await t.db.query('ANALYZE');
        log(`  ANALYZE took ${ms(performance.now() - a0, 0)}`);
        printMeasured('after ANALYZE', await measure(app, t, data, queries, 2, budget));
        if (args.flag('explain')) await explain(t);
      }
    } finally {
      await app.close();
    }
  } finally {
    await t.db.close();
  }
}

async function main(): Promise<void> {
  const args = parseArgs();
  const resources = args.number('resources', 100_000);
  const patients = args.number('patients', 10_000);
  log(`sp-bridge search benchmark — ${new Date().toISOString()}`);
  log(`machine: ${machine()}`);
  const data = dataset(resources, patients);
  const active = data.activeCount.reduce((a, b) => a + b, 0);
  log(
    `${resources} ServiceRequests (~3 KB each) over ${patients} patients (${(resources / patients).toFixed(0)} each on average, ` +
      `${active} active), plus the ${patients} Patients; query: GET /ServiceRequest?patient=Patient/<id>&status=active&_count=20`,
  );

  const keep = args.value('data-dir');
  if (args.flag('memory')) {
    await benchStore('PGlite, in memory', async () => {
      const db = await openPglite();
      await migrate(db);
      return db;
    }, data, args);
  } else {
    const dataDir = keep ? path.resolve(keep) : await mkdtemp(path.join(tmpdir(), 'sp-bridge-search-'));
    try {
      await benchStore(`PGlite, data dir ${keep ? dataDir : '(temporary)'}`, () => openDatabase({ dataDir, databasePoolSize: 1 }), data, args);
    } finally {
      if (!keep) await rm(dataDir, { recursive: true, force: true });
    }
  }

  if (args.flag('postgres')) {
    if (!postgresAvailable()) {
      log('\nPostgreSQL binaries (initdb, pg_ctl, postgres) are not on PATH: skipping --postgres');
      return;
    }
    const cluster = await startPostgresCluster();
    try {
      await benchStore('PostgreSQL (throwaway cluster, fsync off)', () => openDatabase({ databaseUrl: cluster.url, dataDir: '', databasePoolSize: 10 }), data, args);
    } finally {
      cluster.stop();
    }
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`search benchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
