import { request as httpRequest } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { buildApp, type AppOptions } from '../src/http/app';
import { createLogger } from '../src/http/logging';
import { RETRY_AFTER_SECONDS } from '../src/http/protection';
import type { Database, Queryable } from '../src/storage/db';
import { patient } from './fixtures';
import { openTestDatabase } from './support/harness';

/**
 * Protection against callers (src/http/protection.ts): rate limits, body limit, security headers, load shedding,
 * the handler timeout and refusing requests while closing. Each suite builds its own app with only the limits
 * it tests, the way server.ts builds it (auth off: every request is the `local` principal unless a test hook
 * names another client).
 */

interface Built {
  app: FastifyInstance;
  db: Database;
}

async function build(config: AppOptions['config'], wrapDb: (db: Database) => Database = (db) => db): Promise<Built> {
  const db = await openTestDatabase('pglite');
  const app = await buildApp({ config, db: wrapDb(db), logger: createLogger('silent'), auth: { mode: 'none' } });
  return { app, db };
}

async function close(built: Built | undefined): Promise<void> {
  await built?.app.close();
  await built?.db.close();
}

async function storedCount(db: Database): Promise<number> {
  const { rows } = await db.query<{ n: string }>('SELECT count(*)::text AS n FROM resource_versions');
  return Number(rows[0].n);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The database with every statement started `delay.ms` late (a slow or busy database). */
function delayed(db: Database, delay: { ms: number }): Database {
  return {
    kind: db.kind,
    query: async <T extends object = Record<string, unknown>>(sql: string, params?: unknown[]) => {
      await sleep(delay.ms);
      return db.query<T>(sql, params);
    },
    transaction: async <T>(fn: (tx: Queryable) => Promise<T>) => {
      await sleep(delay.ms);
      return db.transaction(fn);
    },
    close: () => db.close(),
  };
}

function issueCode(body: string): string | undefined {
  const outcome = JSON.parse(body) as fhir4.OperationOutcome;
  expect(outcome.resourceType).toBe('OperationOutcome');
  return outcome.issue[0]?.code;
}

describe('rate limit per client', () => {
  let built: Built;
  beforeAll(async () => {
    built = await build({ bodyLimitBytes: 1024 * 1024, rateLimitPerMinute: 3 });
    // Stands in for tokens: names the client the way auth would, after auth's own hook.
    built.app.addHook('onRequest', async (req) => {
      const client = req.headers['x-test-client'];
      if (typeof client === 'string' && req.principal) req.principal = { ...req.principal, clientId: client };
    });
  });
  afterAll(() => close(built));

  const get = (url: string, client: string) => built.app.inject({ method: 'GET', url, headers: { 'x-test-client': client } });

  it('answers the request over the limit with 429, Retry-After and a throttled OperationOutcome', async () => {
    for (let i = 0; i < 3; i++) {
      const ok = await get('/metadata', 'client-a');
      expect(ok.statusCode).toBe(200);
      expect(ok.headers['x-ratelimit-remaining']).toBe(String(2 - i));
    }
    const refused = await get('/Patient', 'client-a');
    expect(refused.statusCode).toBe(429);
    const retryAfter = Number(refused.headers['retry-after']);
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(refused.headers['content-type']).toMatch(/^application\/fhir\+json/);
    expect(issueCode(refused.body)).toBe('throttled');
    expect(refused.headers['x-request-id']).toBeDefined();
  });

  it('counts each client on its own', async () => {
    expect((await get('/metadata', 'client-b')).statusCode).toBe(200);
    expect((await get('/metadata', 'client-a')).statusCode).toBe(429);
  });

  it('does not limit probes and metrics', async () => {
    for (let i = 0; i < 5; i++) {
      expect((await get('/healthz', 'client-a')).statusCode).toBe(200);
      expect((await get('/readyz', 'client-a')).statusCode).toBe(200);
      expect((await get('/metrics', 'client-a')).statusCode).toBe(200);
    }
  });
});

describe('body limit', () => {
  let built: Built;
  beforeAll(async () => {
    built = await build({ bodyLimitBytes: 4096 });
  });
  afterAll(() => close(built));

  const post = (url: string, body: unknown) =>
    built.app.inject({ method: 'POST', url, payload: JSON.stringify(body), headers: { 'content-type': 'application/fhir+json' } });

  it('refuses a resource larger than the limit with 413 and stores nothing', async () => {
    const big = patient(undefined, { name: [{ family: 'x'.repeat(5000) }] });
    const res = await post('/Patient', big);
    expect(res.statusCode).toBe(413);
    expect(issueCode(res.body)).toBe('too-costly');
    expect(await storedCount(built.db)).toBe(0);
  });

  it('refuses a transaction larger than the limit with 413 and stores none of its entries', async () => {
    const entries = Array.from({ length: 20 }, (_, i) => ({
      fullUrl: `urn:uuid:00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
      resource: patient(),
      request: { method: 'POST', url: 'Patient' },
    }));
    const bundle = { resourceType: 'Bundle', type: 'transaction', entry: entries };
    expect(JSON.stringify(bundle).length).toBeGreaterThan(4096);
    const res = await post('/', bundle);
    expect(res.statusCode).toBe(413);
    expect(issueCode(res.body)).toBe('too-costly');
    expect(await storedCount(built.db)).toBe(0);
  });

  it('still accepts a resource within the limit', async () => {
    expect((await post('/Patient', patient())).statusCode).toBe(201);
    expect(await storedCount(built.db)).toBe(1);
  });
});

describe('security headers', () => {
  let built: Built;
  beforeAll(async () => {
    built = await build({ bodyLimitBytes: 4096 });
  });
  afterAll(() => close(built));

  it.each([
    ['an answer', 'GET', '/metadata', 200],
    ['a 404', 'GET', '/nowhere/at/all', 404],
    ['an error', 'POST', '/Patient', 413],
  ] as const)('are on %s', async (_what, method, url, status) => {
    const res = await built.app.inject({
      method,
      url,
      ...(method === 'POST' ? { payload: JSON.stringify({ pad: 'x'.repeat(5000) }), headers: { 'content-type': 'application/fhir+json' } } : {}),
    });
    expect(res.statusCode).toBe(status);
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['strict-transport-security']).toMatch(/max-age=\d+/);
    expect(res.headers['x-frame-options']).toBe('SAMEORIGIN');
    expect(res.headers['referrer-policy']).toBe('no-referrer');
    expect(res.headers['x-powered-by']).toBeUndefined();
    const csp = String(res.headers['content-security-policy']);
    // What swagger-ui at /docs needs from its own origin, and nothing from anywhere else.
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("style-src 'self' 'unsafe-inline'");
    expect(csp).toContain("img-src 'self' data:");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('upgrade-insecure-requests');
  });

  it('let the API docs page load: its scripts and stylesheets come from this origin and none is inline', async () => {
    const res = await built.app.inject({ method: 'GET', url: '/docs/' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-security-policy']).toContain("script-src 'self'");
    const sources = [...res.body.matchAll(/<(?:script|link)\b[^>]*\b(?:src|href)="([^"]+)"/g)].map((m) => m[1]);
    expect(sources.length).toBeGreaterThan(2);
    for (const src of sources) expect(src).not.toMatch(/^([a-z]+:)?\/\//i);
    expect(res.body).not.toMatch(/<script\b(?![^>]*\bsrc=)[^>]*>/);
  });
});

describe('load shedding', () => {
  let built: Built;
  beforeAll(async () => {
    built = await build({ bodyLimitBytes: 4096, loadShedEventLoopDelayMs: 10 });
  });
  afterAll(() => close(built));

  async function until(what: string, check: () => boolean, ms: number): Promise<void> {
    const end = Date.now() + ms;
    while (!check()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await sleep(20);
    }
  }

  it('answers 503 with Retry-After while the event loop is blocked; liveness and metrics still answer', async () => {
    await until('the start-up load to pass', () => !built.app.isUnderPressure(), 10_000);
    expect((await built.app.inject({ method: 'GET', url: '/metadata' })).statusCode).toBe(200);

    const end = Date.now() + 1500;
    while (Date.now() < end) {
      // Busy: nothing else runs, as under a CPU-bound request.
    }
    await until('the load to be seen', () => built.app.isUnderPressure(), 3000);

    const shed = await built.app.inject({ method: 'GET', url: '/metadata' });
    expect(shed.statusCode).toBe(503);
    expect(shed.headers['retry-after']).toBe(String(RETRY_AFTER_SECONDS));
    expect(issueCode(shed.body)).toBe('transient');
    expect(shed.headers['x-content-type-options']).toBe('nosniff');
    expect((await built.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    expect((await built.app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(200);

    await until('the load to pass', () => !built.app.isUnderPressure(), 10_000);
    expect((await built.app.inject({ method: 'GET', url: '/metadata' })).statusCode).toBe(200);
  });
});

describe('handler timeout', () => {
  let built: Built;
  const slowWritesMs = { ms: 0 };
  beforeAll(async () => {
    built = await build({ bodyLimitBytes: 1024 * 1024, requestTimeoutMs: 300 }, (db) => delayed(db, slowWritesMs));
  });
  afterAll(async () => {
    await sleep(slowWritesMs.ms);
    await close(built);
  });

  it('leaves quick requests alone', async () => {
    const res = await built.app.inject({
      method: 'POST',
      url: '/Patient',
      payload: JSON.stringify(patient()),
      headers: { 'content-type': 'application/fhir+json' },
    });
    expect(res.statusCode).toBe(201);
  });

  it('answers 503 timeout when the answer takes too long; a write already under way still commits', async () => {
    const before = await storedCount(built.db);
    slowWritesMs.ms = 800;
    const started = Date.now();
    const res = await built.app.inject({
      method: 'POST',
      url: '/Patient',
      payload: JSON.stringify(patient()),
      headers: { 'content-type': 'application/fhir+json' },
    });
    expect(Date.now() - started).toBeLessThan(800);
    expect(res.statusCode).toBe(503);
    expect(issueCode(res.body)).toBe('timeout');
    expect(JSON.parse(res.body).issue[0].diagnostics).toMatch(/read before retrying/);
    expect(res.headers['x-request-id']).toBeDefined();

    // The handler was not stopped: its write commits after the 503, and its late answer goes nowhere.
    await sleep(1200);
    expect(await storedCount(built.db)).toBe(before + 1);
    slowWritesMs.ms = 0;
  });
});

describe('closing', () => {
  let built: Built;
  const slowWritesMs = { ms: 0 };
  beforeAll(async () => {
    built = await build({ bodyLimitBytes: 1024 * 1024 }, (db) => delayed(db, slowWritesMs));
    await built.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => {
    await built.app.close();
    await built.db.close();
  });

  it('finishes requests in flight, and answers one that arrives on an open connection with 503 OperationOutcome', async () => {
    const { port } = built.app.server.address() as AddressInfo;
    slowWritesMs.ms = 500;
    const body = JSON.stringify(patient());
    const inFlight = new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
      const req = httpRequest(
        { host: '127.0.0.1', port, method: 'POST', path: '/Patient', headers: { 'content-type': 'application/fhir+json' } },
        (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
    // A second connection whose request has begun but whose headers are not complete when close starts.
    const late = connect(port, '127.0.0.1');
    await new Promise<void>((resolve) => late.once('connect', () => resolve()));
    late.write('GET /metadata HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    await sleep(100);

    const closed = built.app.close();
    await sleep(50);
    const lateAnswer = new Promise<string>((resolve) => {
      let text = '';
      late.on('data', (d: Buffer) => (text += d.toString('utf8')));
      late.on('close', () => resolve(text));
    });
    late.write('Accept: application/fhir+json\r\n\r\n');

    const text = await lateAnswer;
    expect(text).toMatch(/^HTTP\/1\.1 503/);
    expect(text).toMatch(/\r\nretry-after: 5\r\n/i);
    expect(text).toMatch(/\r\nconnection: close\r\n/i);
    expect(issueCode(text.slice(text.indexOf('\r\n\r\n') + 4))).toBe('transient');

    expect(await inFlight).toEqual({ status: 201, connection: 'close' });
    await closed;
    slowWritesMs.ms = 0;
  });
});
