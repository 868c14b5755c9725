import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { Client } from 'pg';
import { buildApp } from '../../src/http/app';
import { createLogger } from '../../src/http/logging';
import { openPglite, openPostgres, type Database } from '../../src/storage/db';
import { migrate } from '../../src/storage/migrations';

export type StoreName = 'pglite' | 'postgres';

export function storeNames(): StoreName[] {
  return process.env.SP_BRIDGE_TEST_POSTGRES_URL ? ['pglite', 'postgres'] : ['pglite'];
}

/** A fresh, migrated database of the given kind: in-memory PGlite, or a new database in the test cluster. */
export async function openTestDatabase(store: StoreName, poolSize = 20): Promise<Database & { url?: string }> {
  let db: Database & { url?: string };
  if (store === 'pglite') {
    db = await openPglite();
  } else {
    const clusterUrl = process.env.SP_BRIDGE_TEST_POSTGRES_URL;
    if (!clusterUrl) throw new Error('No test PostgreSQL cluster');
    const name = `t_${randomBytes(6).toString('hex')}`;
    const admin = new Client({ connectionString: clusterUrl });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    const url = clusterUrl.replace(/\/[^/]*$/, `/${name}`);
    db = Object.assign(await openPostgres(url, poolSize), { url });
  }
  await migrate(db);
  return db;
}

/** A stream that keeps every log line written to it in `lines`. */
export function lineSink(lines: string[]): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | number | undefined>;
  body: string;
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- test convenience: responses are asserted field by field
}

/** An app over a fresh store, with a captured log, driven through inject(). */
export class Harness {
  app!: FastifyInstance;
  db!: Database & { url?: string };
  readonly logLines: string[] = [];

  constructor(readonly store: StoreName) {}

  async start(): Promise<void> {
    this.db = await openTestDatabase(this.store);
    const sink = lineSink(this.logLines);
    this.app = await buildApp({
      auth: { mode: 'none' },
      config: { bodyLimitBytes: 1024 * 1024 },
      db: this.db,
      logger: createLogger('info', sink),
    });
  }

  async stop(): Promise<void> {
    await this.app?.close();
    await this.db?.close();
  }

  async request(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'HEAD',
    url: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<Reply> {
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const res = await this.app.inject({
      method,
      url,
      payload,
      headers: payload === undefined ? headers : { 'content-type': 'application/fhir+json', ...headers },
    });
    let json: unknown;
    try {
      json = res.body ? JSON.parse(res.body) : undefined;
    } catch {
      json = undefined;
    }
    return { status: res.statusCode, headers: res.headers, body: res.body, json };
  }
}

/** Runs the same suite once per store: PGlite always, PostgreSQL when the test cluster is up. */
export function describeEachStore(title: string, body: (h: Harness) => void): void {
  for (const store of storeNames()) {
    describe(`${title} [${store}]`, () => {
      const h = new Harness(store);
      beforeAll(() => h.start());
      afterAll(() => h.stop());
      body(h);
    });
  }
}
