import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { ensureDist } from '../support/dist';
import { loadDestinationsFile, setUpDelivery, type DeliveryConfig } from '../../src/delivery';
import { buildApp } from '../../src/http/app';
import { createLogger } from '../../src/http/logging';
import { startMockGp, type MockGp } from '../../src/mock/gp';
import { referral } from '../fixtures';
import { Harness } from '../support/harness';
import { openTestDatabase } from '../support/harness';
import { waitFor, writeDestinations } from './support';

/**
 * Crash safety across processes, on PostgreSQL (PGlite cannot be shared between processes): a delivery worker
 * in its own process (test/delivery/worker-process.js, the compiled engine from dist/) is killed with SIGKILL
 * part-way through 200 deliveries to mock-gp; a second worker process finishes once the dead worker's leases
 * expire. Everything arrives, each idempotency key is stored once by the receiver (re-sends of what was in
 * flight at the kill are answered as duplicates, and counted), nothing is left in flight.
 */

const ROOT = path.join(__dirname, '..', '..');
const WORKER_SCRIPT = path.join(__dirname, 'worker-process.js');
const ITEMS = 200;
const PATIENTS = 40;


interface Worker {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr: string[];
}

async function startWorker(env: Record<string, string>): Promise<Worker> {
  const child = spawn(process.execPath, [WORKER_SCRIPT], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  const stderr: string[] = [];
  child.stderr!.on('data', (d: Buffer) => stderr.push(d.toString('utf8')));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker did not start within 30 s: ${stderr.join('')}`)), 30_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString('utf8');
      if (out.includes('ready\n')) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`worker exited (${code ?? signal}) before it was ready: ${stderr.join('')}`));
    });
  });
  return { child, exited, stderr };
}

const describeOnPostgres = process.env.SP_BRIDGE_TEST_POSTGRES_URL ? describe : describe.skip;

describeOnPostgres('crash safety: a worker process killed mid-run, another finishes [postgres]', () => {
  const h = new Harness('postgres');
  let gp: MockGp;
  let config: DeliveryConfig;
  let destinationsFile: string;
  const workers: Worker[] = [];

  beforeAll(async () => {
    ensureDist(path.join('src', 'delivery', 'index.js'));
    gp = await startMockGp({ port: 0 });
    destinationsFile = writeDestinations({
      // Short leases, so the killed worker's claims expire quickly; attempts time out well within them.
      worker: { concurrency: 8, pollIntervalMs: 20, leaseMs: 4_000, attemptTimeoutMs: 3_000, shutdownTimeoutMs: 2_000 },
      destinations: [
        {
          id: 'gp',
          adapter: 'fhir-rest',
          settings: { baseUrl: gp.url },
          receives: [{ resourceType: 'ServiceRequest', events: ['created'] }],
          retry: { maxAttempts: 10, baseDelayMs: 50, maxDelayMs: 500 },
        },
      ],
    });
    config = loadDestinationsFile(destinationsFile);
    h.db = await openTestDatabase('postgres');
    const delivery = setUpDelivery(config, h.db); // the outbox only: no engine runs in this process
    h.app = await buildApp({
      auth: { mode: 'none' },
      config: { bodyLimitBytes: 4 * 1024 * 1024 },
      db: h.db,
      logger: createLogger('silent'),
      delivery: { outbox: delivery.outbox, destinations: delivery.destinationIds },
    });
  }, 300_000);

  afterAll(async () => {
    for (const w of workers) {
      if (w.child.exitCode === null && w.child.signalCode === null) {
        w.child.kill('SIGKILL');
        await w.exited;
      }
    }
    for (const d of config?.destinations ?? []) await d.adapter.stop?.();
    await h.stop();
    await gp?.close();
  });

  const states = async (): Promise<Record<string, number>> => {
    const { rows } = await h.db.query<{ state: string; n: string }>('SELECT state, count(*)::text AS n FROM deliveries GROUP BY state');
    return Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
  };

  it(`delivers all ${ITEMS} items exactly once as far as the receiver is concerned; nothing lost, nothing left in flight`, async () => {
    const ids: string[] = [];
    for (let i = 0; i < ITEMS; i++) {
      const res = await h.request('POST', '/ServiceRequest', referral(`Patient/crash-${i % PATIENTS}`));
      expect(res.status).toBe(201);
      ids.push(res.json.id as string);
    }
    const expectedKeys = new Set(ids.map((id) => `gp:ServiceRequest/${id}/_history/1`));
    expect((await states()).queued).toBe(ITEMS);

    // Every answer comes late, so that the kill lands with attempts in flight.
    gp.fail({ delayMs: 25, count: 1_000_000 });
    const env = { DATABASE_URL: h.db.url as string, DESTINATIONS_FILE: destinationsFile };
    const first = await startWorker({ ...env, WORKER_ID: 'crash-worker-1' });
    workers.push(first);
    await waitFor('the first worker to deliver a quarter of the items', () => gp.received().deliveries >= ITEMS / 4, 60_000);
    first.child.kill('SIGKILL');
    expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' });

    const atKill = await states();
    const inFlightAtKill = atKill['in-flight'] ?? 0;
    const deliveredAtKill = atKill.delivered ?? 0;
    // The kill landed part-way: work was left for the second worker.
    expect(deliveredAtKill).toBeLessThan(ITEMS);

    const second = await startWorker({ ...env, WORKER_ID: 'crash-worker-2' });
    workers.push(second);
    await waitFor(`all ${ITEMS} deliveries to be delivered`, async () => (await states()).delivered === ITEMS, 120_000);
    second.child.kill('SIGTERM');
    expect(await second.exited).toEqual({ code: 0, signal: null });

    // Nothing lost, nothing left in flight (or queued, failed, dead).
    expect(await states()).toEqual({ delivered: ITEMS });

    // The receiver has every item, and stored each idempotency key once.
    const received = gp.received();
    expect(received.stored.ServiceRequest).toBe(ITEMS);
    for (const id of ids) expect(gp.store.current('ServiceRequest', id)?.resource).toMatchObject({ id, resourceType: 'ServiceRequest' });
    const stored = new Map<string, number>();
    for (const r of received.requests) {
      if (r.status >= 200 && r.status < 300 && !r.duplicate && r.idempotencyKey) stored.set(r.idempotencyKey, (stored.get(r.idempotencyKey) ?? 0) + 1);
    }
    expect(new Set(stored.keys())).toEqual(expectedKeys);
    expect([...stored.values()].every((n) => n === 1)).toBe(true);
    expect(received.deliveries).toBe(ITEMS);
    // Duplicates are allowed (a request the receiver took before the kill is sent again); they are answered from
    // the idempotency record and change nothing. Only keys that were in flight at the kill can repeat.
    const duplicateKeys = received.requests.filter((r) => r.duplicate).map((r) => r.idempotencyKey as string);
    expect(duplicateKeys.every((k) => expectedKeys.has(k))).toBe(true);
    expect(received.duplicates).toBeLessThanOrEqual(inFlightAtKill);

    // Each row the dead worker held was taken over when its lease expired, and recorded so.
    const { rows: expired } = await h.db.query<{ n: string }>(
      `SELECT count(DISTINCT delivery_id)::text AS n FROM delivery_attempts WHERE outcome = 'lease-expired'`,
    );
    expect(Number(expired[0].n)).toBe(inFlightAtKill);
    const { rows: byWorker } = await h.db.query<{ worker: string; n: string }>(
      `SELECT worker, count(*)::text AS n FROM delivery_attempts WHERE outcome = 'delivered' GROUP BY worker ORDER BY worker`,
    );
    expect(byWorker.map((r) => r.worker)).toEqual(['crash-worker-1', 'crash-worker-2']);
    expect(byWorker.reduce((sum, r) => sum + Number(r.n), 0)).toBe(ITEMS);

    console.info(
      `crash safety: killed worker 1 with ${deliveredAtKill} delivered and ${inFlightAtKill} in flight; ` +
        `worker 2 finished; receiver stored ${received.deliveries} keys once each, answered ${received.duplicates} duplicate(s); ` +
        `${expired[0].n} lease(s) expired and taken over`,
    );
  }, 240_000);
});
