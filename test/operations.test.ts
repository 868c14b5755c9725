import Fastify from 'fastify';
import { Client } from 'pg';
import { registerHealth } from '../src/http/health';
import { fhirRouteTemplate } from '../src/http/metrics';
import type { Database } from '../src/storage/db';
import { migrations } from '../src/storage/migrations';
import { getValidator } from '../src/validation/validator';
import { withHarness } from './delivery/support';
import { NHS_NUMBERS, patient, referral } from './fixtures';
import { describeEachStore, Harness, storeNames } from './support/harness';

/** The value of one sample of `name` whose labels are exactly `labels`; undefined when there is none. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const found: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) found[k] = v;
    const wanted = Object.entries(labels);
    if (Object.keys(found).length === wanted.length && wanted.every(([k, v]) => found[k] === v)) return Number(m[3]);
  }
  return undefined;
}

async function scrape(h: Harness): Promise<string> {
  const res = await h.request('GET', '/metrics');
  expect(res.status).toBe(200);
  return res.body;
}

const requests = (text: string, method: string, route: string, status: string) =>
  sample(text, 'sp_bridge_http_requests_total', { method, route, status }) ?? 0;

describe('route label', () => {
  const types = new Set(['ServiceRequest', 'Patient', 'CodeSystem', 'AuditEvent']);
  const ops = new Set(['validate', 'lookup']);
  it.each([
    ['/', '/'],
    ['/metadata', '/metadata'],
    ['/_history', '/_history'],
    ['/ServiceRequest', '/ServiceRequest'],
    ['/ServiceRequest/', '/ServiceRequest'],
    ['/ServiceRequest/0f3c-9434765919', '/ServiceRequest/{id}'],
    ['/ServiceRequest/abc/_history', '/ServiceRequest/{id}/_history'],
    ['/ServiceRequest/abc/_history/3', '/ServiceRequest/{id}/_history/{vid}'],
    ['/ServiceRequest/_search', '/ServiceRequest/_search'],
    ['/ServiceRequest/_history', '/ServiceRequest/_history'],
    ['/ServiceRequest/$validate', '/ServiceRequest/$validate'],
    ['/ServiceRequest/abc/$validate', '/ServiceRequest/{id}/$validate'],
    ['/$validate', '/$validate'],
    ['/CodeSystem/$lookup', '/CodeSystem/$lookup'],
    ['/CodeSystem/snomed', '/CodeSystem/{id}'],
    ['/AuditEvent/a1', '/AuditEvent/{id}'],
    ['/9434765919', '/{unknown}'],
    ['/Foo/123', '/{unknown}'],
    ['/ServiceRequest/$everything-9434765919', '/{unknown}'],
    ['/Foo/$validate', '/{unknown}'],
    ['/ServiceRequest/a/b', '/{unknown}'],
    ['/ServiceRequest/a/_history/1/x', '/{unknown}'],
  ])('%s is %s', (path, route) => {
    expect(fhirRouteTemplate(path, types, ops)).toBe(route);
  });
});

describeEachStore('operational endpoints', (h) => {
  it('GET /healthz is 200 {"status":"ok"}', async () => {
    const res = await h.request('GET', '/healthz');
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ status: 'ok' });
    expect(res.headers['cache-control']).toBe('no-store');
  });

  it('GET /readyz is 200 on a migrated store with profiles and terminology loaded', async () => {
    const res = await h.request('GET', '/readyz');
    expect(res.status).toBe(200);
    expect(res.json).toEqual({
      status: 'ready',
      checks: { database: { status: 'ok' }, migrations: { status: 'ok' }, profiles: { status: 'ok' }, terminology: { status: 'ok' } },
    });
  });

  it('GET /readyz is 503 naming the migrations check while a migration is not applied', async () => {
    const { rows } = await h.db.query<{ id: number; name: string; applied_at: Date }>(
      'DELETE FROM schema_migrations WHERE id = (SELECT max(id) FROM schema_migrations) RETURNING id, name, applied_at',
    );
    try {
      const res = await h.request('GET', '/readyz');
      expect(res.status).toBe(503);
      expect(res.json.status).toBe('unavailable');
      expect(res.json.checks.database).toEqual({ status: 'ok' });
      expect(res.json.checks.migrations).toEqual({ status: 'failed', reason: '1 migration not applied' });
    } finally {
      await h.db.query('INSERT INTO schema_migrations (id, name, applied_at) VALUES ($1, $2, $3)', [rows[0].id, rows[0].name, rows[0].applied_at]);
    }
    expect((await h.request('GET', '/readyz')).status).toBe(200);
  });

  it('counts requests by route template and status, and validation rejections by type, with no ids or query values', async () => {
    const before = await scrape(h);
    const nhsNumber = NHS_NUMBERS[2];
    const pat = await h.request('POST', '/Patient', patient(nhsNumber));
    expect(pat.status).toBe(201);
    const created = await h.request('POST', '/ServiceRequest', referral(`Patient/${pat.json.id}`));
    expect(created.status).toBe(201);
    const missing = await h.request('GET', '/ServiceRequest/missing-referral-4711');
    expect(missing.status).toBe(404);
    const invalid = await h.request('POST', '/ServiceRequest', { ...referral(`Patient/${pat.json.id}`), status: 'bogus', authoredOn: undefined });
    expect(invalid.status).toBe(422);
    const malformed = await h.request('POST', '/ServiceRequest', { ...referral(`Patient/${pat.json.id}`), colour: 'blue' });
    expect(malformed.status).toBe(400);
    const search = await h.request('GET', `/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|${nhsNumber}&family=Smithson`);
    expect(search.status).toBe(200);
    expect((await h.request('GET', `/ServiceRequest/${created.json.id}/_history/1`)).status).toBe(200);
    expect((await h.request('GET', '/Foo/secret-id-123')).status).toBe(404);
    expect((await h.request('GET', '/admin/deliveries/987654321')).status).toBe(404);
    expect((await h.app.inject({ method: 'PATCH', url: '/Patient/abc' })).statusCode).toBe(404);

    const after = await scrape(h);
    const delta = (method: string, route: string, status: string) => requests(after, method, route, status) - requests(before, method, route, status);
    expect(delta('POST', '/Patient', '201')).toBe(1);
    expect(delta('POST', '/ServiceRequest', '201')).toBe(1);
    expect(delta('GET', '/ServiceRequest/{id}', '404')).toBe(1);
    expect(delta('POST', '/ServiceRequest', '422')).toBe(1);
    expect(delta('POST', '/ServiceRequest', '400')).toBe(1);
    expect(delta('GET', '/Patient', '200')).toBe(1);
    expect(delta('GET', '/ServiceRequest/{id}/_history/{vid}', '200')).toBe(1);
    expect(delta('GET', '/{unknown}', '404')).toBe(1);
    expect(delta('GET', '/admin/deliveries/:id', '404')).toBe(1);
    expect(delta('PATCH', 'not_found', '404')).toBe(1);
    expect(requests(after, 'GET', '/metrics', '200')).toBeGreaterThanOrEqual(1);

    const durations = (text: string) =>
      sample(text, 'sp_bridge_http_request_duration_seconds_count', { method: 'POST', route: '/ServiceRequest', status: '201' }) ?? 0;
    expect(durations(after) - durations(before)).toBe(1);

    const rejected = (text: string, status: string) =>
      sample(text, 'sp_bridge_validation_rejections_total', { resource_type: 'ServiceRequest', status }) ?? 0;
    expect(rejected(after, '422') - rejected(before, '422')).toBe(1);
    expect(rejected(after, '400') - rejected(before, '400')).toBe(1);

    for (const secret of [pat.json.id, created.json.id, 'missing-referral-4711', 'secret-id-123', '987654321', nhsNumber, 'Smithson', 'Foo']) {
      expect(after).not.toContain(secret);
    }
    expect(sample(after, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
    expect(after).toContain('# TYPE nodejs_heap_size_used_bytes gauge');
  });

  it('serves /metrics as Prometheus text to a scraper that does not accept JSON', async () => {
    const res = await h.request('GET', '/metrics', undefined, { accept: 'application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5' });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(res.body).toContain('# TYPE sp_bridge_http_requests_total counter');
    expect(res.body).toContain('# TYPE sp_bridge_http_request_duration_seconds histogram');
  });
});

describe.each(storeNames())('operational endpoints with the database down [%s]', (store) => {
  const h = new Harness(store);
  beforeAll(() => h.start());
  // The database is closed or dropped by the test, so only the app is closed here (and the pool, which outlives its database).
  afterAll(async () => {
    await h.app.close();
    if (store === 'postgres') await h.db.close();
  });

  it('GET /readyz is 503 naming the database, /healthz stays 200, /metrics still answers and logs a warning', async () => {
    expect((await h.request('GET', '/readyz')).status).toBe(200);
    if (store === 'pglite') {
      await h.db.close();
    } else {
      const clusterUrl = process.env.SP_BRIDGE_TEST_POSTGRES_URL ?? '';
      const name = new URL(h.db.url ?? '').pathname.slice(1);
      const admin = new Client({ connectionString: clusterUrl });
      await admin.connect();
      try {
        await admin.query(`DROP DATABASE ${name} WITH (FORCE)`);
      } finally {
        await admin.end();
      }
    }

    const res = await h.request('GET', '/readyz');
    expect(res.status).toBe(503);
    expect(res.json.status).toBe('unavailable');
    expect(res.json.checks.database.status).toBe('failed');
    expect(res.json.checks.database.reason).toMatch(store === 'pglite' ? /^database unreachable: Error$/ : /^database unreachable: \w+( [0-9A-Z]{5})?$/);
    expect(res.json.checks.migrations).toEqual({ status: 'failed', reason: 'not checked: the database is unreachable' });
    expect(res.json.checks.profiles).toEqual({ status: 'ok' });
    expect(res.json.checks.terminology).toEqual({ status: 'ok' });
    if (h.db.url) {
      const url = new URL(h.db.url);
      for (const part of [h.db.url, url.host, url.pathname.slice(1), url.username]) expect(res.body).not.toContain(part);
    }
    expect(res.body).not.toMatch(/closed|does not exist|ECONN|postgres:/i);

    expect((await h.request('GET', '/healthz')).status).toBe(200);

    const metrics = await h.request('GET', '/metrics');
    expect(metrics.status).toBe(200);
    expect(sample(metrics.body, 'sp_bridge_http_requests_total', { method: 'GET', route: '/readyz', status: '503' })).toBe(1);
    expect(metrics.body).toContain('# TYPE sp_bridge_deliveries gauge');
    expect(metrics.body).not.toMatch(/^sp_bridge_deliveries\{/m);
    const warnings = h.logLines.map((l) => JSON.parse(l) as { level: number; msg: string; reason?: string }).filter((l) => l.level === 40);
    expect(warnings.map((w) => w.msg)).toEqual(expect.arrayContaining(['not ready', 'delivery metrics unavailable: the database did not answer']));
  });
});

describe('GET /readyz with a database that does not answer', () => {
  it('is 503 after the timeout', async () => {
    const hanging: Database = {
      kind: 'postgres',
      query: () => new Promise(() => undefined),
      transaction: () => new Promise(() => undefined),
      close: async () => undefined,
    };
    const app = Fastify();
    registerHealth(app, { db: hanging, validator: getValidator(), timeoutMs: 100 });
    try {
      const started = Date.now();
      const res = await app.inject({ method: 'GET', url: '/readyz' });
      expect(res.statusCode).toBe(503);
      expect(Date.now() - started).toBeLessThan(2000);
      expect(res.json().checks.database).toEqual({ status: 'failed', reason: 'database unreachable: no answer within 100 ms' });
    } finally {
      await app.close();
    }
  });

  it('is 503 naming the profiles when the validator exposes no StructureDefinitions', async () => {
    const db: Database = {
      kind: 'postgres',
      query: async <T extends object>(sql: string) => ({ rows: (sql === 'SELECT 1' ? [{}] : migrations.map((m) => ({ id: m.id }))) as T[] }),
      transaction: () => Promise.reject(new Error('unused')),
      close: async () => undefined,
    };
    const app = Fastify();
    registerHealth(app, { db, validator: { validate: () => [] } });
    try {
      const res = await app.inject({ method: 'GET', url: '/readyz' });
      expect(res.statusCode).toBe(503);
      expect(res.json().checks).toEqual({
        database: { status: 'ok' },
        migrations: { status: 'ok' },
        profiles: { status: 'failed', reason: 'the validator exposes no StructureDefinitions' },
        terminology: { status: 'ok' },
      });
    } finally {
      await app.close();
    }
  });
});

describe.each(storeNames())('delivery gauges [%s]', (store) => {
  it('show the outbox per destination and state, and the age of the oldest waiting row', () =>
    withHarness(
      store,
      [
        { id: 'gp', receives: [{ resourceType: 'ServiceRequest', events: ['created'] }] },
        { id: 'audit', receives: [{ resourceType: 'ServiceRequest', events: ['created'] }, { resourceType: 'Patient', events: ['created'] }] },
        { id: 'idle', receives: [{ resourceType: 'Task', events: ['created'] }] },
      ],
      async (h) => {
        const pat = await h.request('POST', '/Patient', patient(NHS_NUMBERS[3]));
        expect(pat.status).toBe(201);
        const ids: string[] = [pat.json.id];
        for (let i = 0; i < 3; i++) {
          const res = await h.request('POST', '/ServiceRequest', referral(`Patient/${pat.json.id}`));
          expect(res.status).toBe(201);
          ids.push(res.json.id);
        }
        // The engine is not running: every row stays queued until moved here.
        await h.db.query(
          `UPDATE deliveries SET state = 'dead', finished_at = now() WHERE id = (SELECT min(id) FROM deliveries WHERE destination = 'gp')`,
        );
        await h.db.query(`UPDATE deliveries SET created_at = now() - interval '600 seconds' WHERE destination = 'audit'`);

        const text = (await h.request('GET', '/metrics')).body;
        const count = (destination: string, state: string) => sample(text, 'sp_bridge_deliveries', { destination, state });
        expect(count('gp', 'queued')).toBe(2);
        expect(count('gp', 'dead')).toBe(1);
        expect(count('gp', 'delivered')).toBe(0);
        expect(count('audit', 'queued')).toBe(4);
        expect(count('audit', 'dead')).toBe(0);
        expect(count('idle', 'queued')).toBe(0);
        const age = (destination: string) => sample(text, 'sp_bridge_delivery_oldest_queued_age_seconds', { destination });
        expect(age('audit')).toBeGreaterThanOrEqual(600);
        expect(age('audit')).toBeLessThan(900);
        expect(age('gp')).toBeGreaterThanOrEqual(0);
        expect(age('gp')).toBeLessThan(300);
        expect(age('idle')).toBe(0);
        for (const id of ids) expect(text).not.toContain(id);
      },
    ));
});
