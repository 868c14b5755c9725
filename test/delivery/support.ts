import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadDestinationsFile, setUpDelivery, type DeliveryConfig, type DeliveryEngine } from '../../src/delivery';
import { buildApp } from '../../src/http/app';
import { createLogger } from '../../src/http/logging';
import { openPostgres, type Database } from '../../src/storage/db';
import { Harness, storeNames, type StoreName } from '../support/harness';
import { openTestDatabase } from '../support/harness';
import { channel, type Channel } from './recording-adapter';

export const ADAPTER_PATH = path.join(__dirname, 'recording-adapter');

/** The engine's clock: real time plus an offset tests move forward (never behind the database's now()). */
export class TestClock {
  offset = 0;
  now = (): Date => new Date(Date.now() + this.offset);
  advance(ms: number): void {
    this.offset += ms;
  }
}

/** Writes a destinations file in a fresh temporary folder; `module:` paths in it are relative to that folder. */
export function writeDestinations(doc: unknown): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'spb-dest-'));
  const file = path.join(dir, 'destinations.json');
  writeFileSync(file, typeof doc === 'string' ? doc : JSON.stringify(doc, null, 2));
  return file;
}

/** `module:` path of the recording adapter, relative to the folder of a destinations file. */
export function adapterRef(file: string): string {
  return `module:${path.relative(path.dirname(file), ADAPTER_PATH).split(path.sep).join('/').replace(/^(?!\.)/, './')}`;
}

export interface DestinationSpec {
  id: string;
  receives: unknown[];
  async?: boolean;
  retry?: Record<string, number>;
}

/** A destinations document whose destinations all use the recording adapter, each with its own channel. */
export function destinationsDoc(file: string, specs: DestinationSpec[], worker: Record<string, number> = {}): unknown {
  return {
    worker: { pollIntervalMs: 20, leaseMs: 60_000, attemptTimeoutMs: 30_000, shutdownTimeoutMs: 5_000, ...worker },
    destinations: specs.map((s) => ({
      id: s.id,
      adapter: adapterRef(file),
      settings: { channel: `${s.id}-${randomUUID()}`, ...(s.async ? { async: true } : {}) },
      receives: s.receives,
      retry: { maxAttempts: 3, baseDelayMs: 1000, maxDelayMs: 10_000, ...s.retry },
    })),
  };
}

/** The app and a delivery engine over a fresh store, with destinations loaded from a real file. */
export class DeliveryHarness extends Harness {
  engine!: DeliveryEngine;
  config!: DeliveryConfig;
  readonly clock = new TestClock();
  channels = new Map<string, Channel>();

  constructor(
    store: StoreName,
    private readonly specs: DestinationSpec[],
    private readonly worker: Record<string, number> = {},
  ) {
    super(store);
  }

  override async start(): Promise<void> {
    const file = writeDestinations('{}');
    writeFileSync(file, JSON.stringify(destinationsDoc(file, this.specs, this.worker)));
    this.config = loadDestinationsFile(file);
    const doc = JSON.parse(readFileSync(file, 'utf8')) as { destinations: { id: string; settings: { channel: string } }[] };
    for (const d of doc.destinations) this.channels.set(d.id, channel(d.settings.channel));
    this.db = await openTestDatabase(this.store);
    const delivery = setUpDelivery(this.config, this.db, undefined, { clock: this.clock.now, random: () => 0.5, workerId: 'engine-1' });
    this.engine = delivery.engine;
    this.app = await buildApp({
      auth: { mode: 'none' },
      config: { bodyLimitBytes: 4 * 1024 * 1024 },
      db: this.db,
      logger: createLogger('silent'),
      delivery: { outbox: delivery.outbox, destinations: delivery.destinationIds, clock: this.clock.now },
    });
    await this.engine.startAdapters();
  }

  override async stop(): Promise<void> {
    await this.engine?.stop();
    await super.stop();
  }

  ch(id: string): Channel {
    const c = this.channels.get(id);
    if (!c) throw new Error(`no destination ${id}`);
    return c;
  }

  /** A second engine over its own connection pool to the same PostgreSQL database. */
  async secondEngine(workerId: string): Promise<{ engine: DeliveryEngine; db: Database }> {
    const db = await openPostgres(this.db.url ?? '', 10);
    const { engine } = setUpDelivery(this.config, db, undefined, { clock: this.clock.now, workerId });
    return { engine, db };
  }

  async deliveries(destination?: string): Promise<{ id: string; state: string; event: string; resource_type: string; resource_id: string; version: number; idempotency_key: string; patient_ref: string | null }[]> {
    const { rows } = await this.db.query<{ id: string; state: string; event: string; resource_type: string; resource_id: string; version: number; idempotency_key: string; patient_ref: string | null }>(
      `SELECT id::text AS id, state, event, resource_type, resource_id, version, idempotency_key, patient_ref
       FROM deliveries WHERE $1::text IS NULL OR destination = $1::text ORDER BY id`,
      [destination ?? null],
    );
    return rows.map((r) => ({ ...r, version: Number(r.version) }));
  }
}

/** Runs `body` once per store (PGlite, and PostgreSQL when the test cluster is up) with a fresh harness per test. */
export function eachStore(title: string, body: (store: StoreName) => void): void {
  for (const store of storeNames()) describe(`${title} [${store}]`, () => body(store));
}

export async function withHarness(
  store: StoreName,
  specs: DestinationSpec[],
  fn: (h: DeliveryHarness) => Promise<void>,
  worker: Record<string, number> = {},
): Promise<void> {
  const h = new DeliveryHarness(store, specs, worker);
  await h.start();
  try {
    await fn(h);
  } finally {
    await h.stop();
  }
}

/** Polls `check` until it holds or `ms` pass (then fails with `what`). */
export async function waitFor(what: string, check: () => Promise<boolean> | boolean, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
