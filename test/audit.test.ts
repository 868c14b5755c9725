import { AuditLog, describeExchange, type AuditRecord } from '../src/audit';
import { FhirError } from '../src/errors';
import type { FhirRequest, FhirResponse } from '../src/fhir/types';
import type { Database } from '../src/storage/db';
import { getValidator } from '../src/validation/validator';
import { openTestDatabase, storeNames } from './support/harness';

const ctx = { baseUrl: 'http://sp.test' };

function record(over: Partial<AuditRecord> = {}): AuditRecord {
  return {
    recorded: new Date(),
    clientId: 'gp-system',
    via: 'token',
    address: '127.0.0.1',
    requestId: 'req-1',
    interaction: 'read',
    action: 'R',
    entities: [{ reference: 'Patient/p1' }],
    status: 200,
    ...over,
  };
}

/** The database, with every audit INSERT counted and optionally delayed or failed. */
function instrumented(db: Database) {
  const state = { inserts: 0, delayMs: 0, fail: undefined as Error | undefined };
  const wrapped: Database = {
    kind: db.kind,
    query: async <T extends object>(sql: string, params?: unknown[]) => {
      if (sql.startsWith('INSERT INTO audit_events')) {
        state.inserts++;
        if (state.delayMs) await new Promise((r) => setTimeout(r, state.delayMs));
        if (state.fail) throw state.fail;
      }
      return db.query<T>(sql, params);
    },
    transaction: (fn) => db.transaction(fn),
    close: () => db.close(),
  };
  return { db: wrapped, state };
}

async function searchError(log: AuditLog, params: [string, string][]): Promise<FhirError> {
  try {
    await log.search(params, ctx);
  } catch (err) {
    if (err instanceof FhirError) return err;
    throw err;
  }
  throw new Error(`search ${JSON.stringify(params)} did not fail`);
}

const ids = (b: fhir4.Bundle) => (b.entry ?? []).map((e) => e.resource!.id!);
const requestIds = (b: fhir4.Bundle) =>
  (b.entry ?? []).map((e) => (e.resource as fhir4.AuditEvent).entity!.find((x) => x.type?.code === 'XrequestId')!.what!.identifier!.value);

function nextParams(bundle: fhir4.Bundle): [string, string][] | undefined {
  const next = bundle.link?.find((l) => l.relation === 'next')?.url;
  return next ? [...new URL(next).searchParams] : undefined;
}

for (const store of storeNames()) {
  describe(`audit log [${store}]`, () => {
    let db: Database;
    beforeAll(async () => {
      db = await openTestDatabase(store);
    });
    afterAll(() => db?.close());

    it('migration 3 creates the audit table and the token replay guard', async () => {
      const { rows } = await db.query<{ id: number; name: string }>('SELECT id, name FROM schema_migrations WHERE id = 3');
      expect(rows).toEqual([{ id: 3, name: 'audit log and token replay guard' }]);
      const expires = new Date(Date.now() + 60_000).toISOString();
      await db.query('INSERT INTO auth_assertions (client_id, jti, expires_at) VALUES ($1, $2, $3)', ['c', 'j1', expires]);
      await expect(
        db.query('INSERT INTO auth_assertions (client_id, jti, expires_at) VALUES ($1, $2, $3)', ['c', 'j1', expires]),
      ).rejects.toMatchObject({ code: '23505' });
      const idx = await db.query<{ indexname: string }>(
        `SELECT indexname FROM pg_indexes WHERE tablename IN ('audit_events', 'auth_assertions') ORDER BY indexname`,
      );
      expect(idx.rows.map((r) => r.indexname)).toEqual(
        expect.arrayContaining(['audit_events_client', 'audit_events_entity', 'audit_events_recorded', 'auth_assertions_expiry']),
      );
    });

    it('records an AuditEvent and reads it back, valid R4', async () => {
      const log = new AuditLog(db);
      const recorded = new Date('2026-03-14T09:30:00.123Z');
      await log.record(
        record({
          recorded,
          requestId: 'req-round-trip',
          interaction: 'search-type',
          entities: [{ type: 'ServiceRequest', query: 'subject=Patient/p1&status=active' }],
          status: 403,
          description: 'scope',
        }),
      );
      const [row] = (await db.query<{ id: string }>(`SELECT id::text AS id FROM audit_events WHERE content LIKE '%req-round-trip%'`)).rows;
      const event = await log.read(row.id);
      expect(event).toEqual({
        resourceType: 'AuditEvent',
        id: row.id,
        type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest', display: 'RESTful Operation' },
        subtype: [{ system: 'http://hl7.org/fhir/restful-interaction', code: 'search-type', display: 'search-type' }],
        action: 'R',
        recorded: '2026-03-14T09:30:00.123Z',
        outcome: '4',
        outcomeDesc: 'HTTP 403; scope',
        agent: [
          {
            type: { coding: [{ system: 'http://dicom.nema.org/resources/ontology/DCM', code: '110153', display: 'Source Role ID' }] },
            who: { identifier: { system: 'urn:sp-bridge:client-id', value: 'gp-system' } },
            requestor: true,
            network: { address: '127.0.0.1', type: '2' },
          },
          {
            type: { coding: [{ system: 'http://dicom.nema.org/resources/ontology/DCM', code: '110152', display: 'Destination Role ID' }] },
            who: { display: 'sp-bridge' },
            requestor: false,
          },
        ],
        source: {
          observer: { display: 'sp-bridge' },
          type: [{ system: 'http://terminology.hl7.org/CodeSystem/security-source-type', code: '4', display: 'Application Server' }],
        },
        entity: [
          {
            type: { system: 'http://hl7.org/fhir/resource-types', code: 'ServiceRequest', display: 'ServiceRequest' },
            role: { system: 'http://terminology.hl7.org/CodeSystem/object-role', code: '24', display: 'Query' },
            query: Buffer.from('subject=Patient/p1&status=active').toString('base64'),
          },
          {
            what: { identifier: { value: 'req-round-trip' } },
            type: expect.objectContaining({ system: 'https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType', code: 'XrequestId' }),
          },
        ],
      });
      const errors = getValidator()
        .validate(event)
        .filter((i) => i.severity === 'error' || i.severity === 'fatal');
      expect(errors).toEqual([]);
      expect(await log.read('00000000-0000-4000-8000-000000000000')).toBeUndefined();
      expect(await log.read('not-a-uuid')).toBeUndefined();
    });

    it('records a token issue and an unauthenticated request', async () => {
      const log = new AuditLog(db);
      await log.record(record({ interaction: 'login', action: 'E', entities: [], requestId: 'req-login', status: 200 }));
      await log.record(record({ clientId: undefined, via: undefined, requestId: 'req-401', status: 401, description: 'no bearer token' }));
      const login = (await log.search([['subtype', 'login']], ctx)).entry!.map((e) => e.resource as fhir4.AuditEvent);
      expect(login).toHaveLength(1);
      expect(login[0].type).toEqual({ system: 'http://dicom.nema.org/resources/ontology/DCM', code: '110114', display: 'User Authentication' });
      expect(login[0].subtype).toEqual([{ system: 'http://dicom.nema.org/resources/ontology/DCM', code: '110122', display: 'Login' }]);
      const anonymous = (await log.search([['agent:missing', 'true']], ctx)).entry!.map((e) => e.resource as fhir4.AuditEvent);
      expect(anonymous).toHaveLength(1);
      expect(anonymous[0].agent[0].who).toEqual({ display: 'unauthenticated' });
      expect(anonymous[0].outcome).toBe('4');
      expect(anonymous[0].outcomeDesc).toBe('HTTP 401; no bearer token');
      for (const e of [...login, ...anonymous]) {
        expect(getValidator().validate(e).filter((i) => i.severity === 'error')).toEqual([]);
      }
    });

    it('writes concurrent records in batches, each caller told when its batch committed', async () => {
      const { db: counted, state } = instrumented(db);
      const log = new AuditLog(counted);
      await Promise.all(Array.from({ length: 200 }, (_, i) => log.record(record({ requestId: `burst-${i}` }))));
      expect(state.inserts).toBe(1);

      // While one INSERT runs, new records queue and go in the next one.
      state.inserts = 0;
      state.delayMs = 50;
      const first = log.record(record({ requestId: 'burst-late-0' }));
      await new Promise((r) => setTimeout(r, 10));
      const rest = Array.from({ length: 99 }, (_, i) => log.record(record({ requestId: `burst-late-${i + 1}` })));
      await Promise.all([first, ...rest]);
      expect(state.inserts).toBe(2);

      const { rows } = await db.query<{ n: string }>(`SELECT count(*)::text AS n FROM audit_events WHERE content LIKE '%"burst-%'`);
      expect(Number(rows[0].n)).toBe(300);
    });

    it('never strands a record made just as the previous batch committed', async () => {
      const log = new AuditLog(db);
      for (let i = 0; i < 100; i++) {
        let timer: NodeJS.Timeout | undefined;
        const stuck = new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`record ${i} was never written`)), 5_000);
        });
        await Promise.race([log.record(record({ requestId: `sequential-${i}` })), stuck]);
        clearTimeout(timer);
      }
    });

    it('rejects every waiter of a failed batch, logs once, and recovers', async () => {
      const { db: failing, state } = instrumented(db);
      const logged: Record<string, unknown>[] = [];
      const log = new AuditLog(failing, { logger: { error: (obj) => logged.push(obj) } });
      state.fail = new Error('disk full');
      const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => log.record(record({ requestId: `fail-${i}` }))));
      expect(results.map((r) => r.status)).toEqual(Array(10).fill('rejected'));
      expect(results.map((r) => (r as PromiseRejectedResult).reason)).toEqual(Array(10).fill(state.fail));
      expect(logged).toEqual([{ err: state.fail, records: 10 }]);
      state.fail = undefined;
      await log.record(record({ requestId: 'after-failure' }));
      const { rows } = await db.query<{ n: string }>(`SELECT count(*)::text AS n FROM audit_events WHERE content LIKE '%"fail-%'`);
      expect(rows[0].n).toBe('0');
    });

    it('rejects a record it cannot build without touching the others', async () => {
      const log = new AuditLog(db);
      const good = log.record(record({ requestId: 'good-neighbour' }));
      await expect(log.record(record({ recorded: new Date(Number.NaN) }))).rejects.toThrow(RangeError);
      await expect(good).resolves.toBeUndefined();
    });

    it('close() writes what is queued, then refuses new records', async () => {
      const { db: slow, state } = instrumented(db);
      state.delayMs = 30;
      const log = new AuditLog(slow);
      const pending = Array.from({ length: 25 }, (_, i) => log.record(record({ requestId: `closing-${i}` })));
      let settled = 0;
      for (const p of pending) void p.then(() => settled++);
      await log.close();
      expect(settled).toBe(25);
      await expect(log.record(record())).rejects.toThrow('closed');
      const { rows } = await db.query<{ n: string }>(`SELECT count(*)::text AS n FROM audit_events WHERE content LIKE '%"closing-%'`);
      expect(rows[0].n).toBe('25');
    });
  });

  describe(`audit search [${store}]`, () => {
    let db: Database;
    let log: AuditLog;
    const at = (iso: string) => new Date(iso);
    const search = (params: [string, string][]) => log.search(params, ctx);

    beforeAll(async () => {
      db = await openTestDatabase(store);
      log = new AuditLog(db);
      const seed: Partial<AuditRecord>[] = [
        { requestId: 's-read', recorded: at('2026-01-10T10:00:00Z'), clientId: 'a', entities: [{ reference: 'Patient/1' }] },
        {
          requestId: 's-create',
          recorded: at('2026-01-15T08:00:00Z'),
          clientId: 'b',
          interaction: 'create',
          action: 'C',
          entities: [{ reference: 'ServiceRequest/9' }],
          status: 201,
        },
        {
          requestId: 's-401',
          recorded: at('2026-02-01T00:00:00Z'),
          clientId: undefined,
          interaction: 'search-type',
          entities: [{ type: 'Patient', query: 'name=smith' }],
          status: 401,
        },
        ...[0, 1, 2].map((i) => ({
          requestId: `s-vread-${i}`,
          recorded: at('2026-02-02T12:00:00.000Z'),
          clientId: 'a',
          interaction: 'vread' as const,
          entities: [{ reference: 'Patient/1/_history/2' }],
        })),
        {
          requestId: 's-delete',
          recorded: at('2026-03-01T00:00:00Z'),
          clientId: 'a',
          interaction: 'delete',
          action: 'D',
          entities: [{ reference: 'Task/3' }],
          status: 500,
        },
        {
          requestId: 's-login',
          recorded: at('2026-03-02T00:00:00Z'),
          clientId: 'b',
          interaction: 'login',
          action: 'E',
          entities: [],
          status: 400,
        },
      ];
      for (const s of seed) await log.record(record(s));
    });
    afterAll(async () => {
      await log.close();
      await db.close();
    });

    it('returns everything newest first, ties in recording order reversed', async () => {
      const all = await search([]);
      expect(all.type).toBe('searchset');
      expect(requestIds(all)).toEqual(['s-login', 's-delete', 's-vread-2', 's-vread-1', 's-vread-0', 's-401', 's-create', 's-read']);
      expect(all.total).toBeUndefined();
      expect(all.entry![0].fullUrl).toBe(`http://sp.test/AuditEvent/${all.entry![0].resource!.id}`);
      expect(all.entry![0].search).toEqual({ mode: 'match' });
      expect((await search([['_total', 'accurate']])).total).toBe(8);
      const count = await search([['_summary', 'count'], ['action', 'R']]);
      expect(count.total).toBe(5);
      expect(count.entry).toBeUndefined();
    });

    it('searches by date with prefixes and partial dates', async () => {
      expect(requestIds(await search([['date', 'ge2026-02-01']]))).toEqual(['s-login', 's-delete', 's-vread-2', 's-vread-1', 's-vread-0', 's-401']);
      expect(requestIds(await search([['date', '2026-01']]))).toEqual(['s-create', 's-read']);
      expect(requestIds(await search([['date', 'ge2026-01-12'], ['date', 'lt2026-02-02']]))).toEqual(['s-401', 's-create']);
      expect(requestIds(await search([['date', 'gt2026-02-02T12:00:00.000Z']]))).toEqual(['s-login', 's-delete']);
      expect(requestIds(await search([['date', 'le2026-01-10']]))).toEqual(['s-read']);
      expect(requestIds(await search([['date', '2026-01-10,2026-03-02']]))).toEqual(['s-login', 's-read']);
      expect(await search([['date', 'ne2026-02-02']])).toMatchObject({ entry: expect.any(Array) });
      expect(requestIds(await search([['date', 'ne2026-02-02']]))).not.toContain('s-vread-0');
      expect(requestIds(await search([['date', 'sa2026-03-01']]))).toEqual(['s-login']);
      expect(requestIds(await search([['date', 'eb2026-01-11']]))).toEqual(['s-read']);
      expect(requestIds(await search([['date', 'ge2026-02-02T13:00:00+01:00'], ['date', 'lt2026-02-03']]))).toEqual([
        's-vread-2',
        's-vread-1',
        's-vread-0',
      ]);
    });

    it('searches by agent, entity, entity-type, action, subtype and outcome', async () => {
      expect(requestIds(await search([['agent', 'b']]))).toEqual(['s-login', 's-create']);
      expect(requestIds(await search([['agent', 'urn:sp-bridge:client-id|b']]))).toEqual(['s-login', 's-create']);
      expect(requestIds(await search([['agent:identifier', 'urn:sp-bridge:client-id|b']]))).toEqual(['s-login', 's-create']);
      expect(requestIds(await search([['agent', 'http://other|b']]))).toEqual([]);
      expect(requestIds(await search([['agent:missing', 'true']]))).toEqual(['s-401']);
      expect(requestIds(await search([['entity', 'Patient/1']]))).toEqual(['s-vread-2', 's-vread-1', 's-vread-0', 's-read']);
      expect(requestIds(await search([['entity', 'Patient/1/_history/2']]))).toEqual(['s-vread-2', 's-vread-1', 's-vread-0']);
      expect(requestIds(await search([['entity', 'http://sp.test/Task/3,ServiceRequest/9']]))).toEqual(['s-delete', 's-create']);
      expect(requestIds(await search([['entity-type', 'Patient'], ['agent', 'a']]))).toEqual(['s-vread-2', 's-vread-1', 's-vread-0', 's-read']);
      expect(requestIds(await search([['entity-type', 'http://hl7.org/fhir/resource-types|ServiceRequest']]))).toEqual(['s-create']);
      expect(requestIds(await search([['action', 'C,D']]))).toEqual(['s-delete', 's-create']);
      expect(requestIds(await search([['action', 'http://hl7.org/fhir/audit-event-action|E']]))).toEqual(['s-login']);
      expect(requestIds(await search([['subtype', 'http://hl7.org/fhir/restful-interaction|vread']]))).toHaveLength(3);
      expect(requestIds(await search([['subtype', 'http://dicom.nema.org/resources/ontology/DCM|110122']]))).toEqual(['s-login']);
      expect(requestIds(await search([['outcome', '8']]))).toEqual(['s-delete']);
      expect(requestIds(await search([['outcome', '4']]))).toEqual(['s-login', 's-401']);
      expect(requestIds(await search([['outcome', '0'], ['agent', 'a']]))).toEqual(['s-vread-2', 's-vread-1', 's-vread-0', 's-read']);
      expect(requestIds(await search([['_id', (await search([['subtype', 'login']])).entry![0].resource!.id!]]))).toEqual(['s-login']);
    });

    it('refuses unknown and malformed parameters', async () => {
      expect((await searchError(log, [['patient', 'Patient/1']])).code).toBe('SPB_UNKNOWN_SEARCH_PARAM');
      expect((await searchError(log, [['_elements', 'id']])).code).toBe('SPB_UNKNOWN_SEARCH_PARAM');
      expect((await searchError(log, [['date', 'yesterday']])).code).toBe('SPB_INVALID_SEARCH');
      expect((await searchError(log, [['date:missing', 'true']])).code).toBe('SPB_INVALID_SEARCH');
      expect((await searchError(log, [['entity', 'not a reference']])).code).toBe('SPB_INVALID_SEARCH');
      expect((await searchError(log, [['_count', '-1']])).code).toBe('SPB_INVALID_SEARCH');
      expect((await searchError(log, [['_cursor', 'abc']])).code).toBe('SPB_INVALID_SEARCH');
      expect((await searchError(log, [['_sort', 'date']])).code).toBe('SPB_INVALID_SEARCH');
      expect((await searchError(log, [['action', '']])).code).toBe('SPB_INVALID_SEARCH');
      const capped = await search([['_count', '100000'], ['_format', 'json']]);
      expect(capped.link![0].url).toBe('http://sp.test/AuditEvent?_count=500');
    });

    it('pages through every result once with next links while new events are recorded', async () => {
      const base = Date.parse('2025-06-01T00:00:00Z');
      await Promise.all(
        Array.from({ length: 137 }, (_, i) =>
          log.record(record({ requestId: `page-${i}`, clientId: 'pager', recorded: new Date(base + Math.floor(i / 3) * 1000) })),
        ),
      );
      let params: [string, string][] | undefined = [['agent', 'pager'], ['_count', '10']];
      const seen: string[] = [];
      let pages = 0;
      while (params) {
        const bundle = await search(params);
        expect(bundle.entry?.length ?? 0).toBeLessThanOrEqual(10);
        seen.push(...ids(bundle));
        pages++;
        if (pages === 3) {
          await log.record(record({ requestId: 'page-new', clientId: 'pager' }));
        }
        params = nextParams(bundle);
        if (params) expect(Object.fromEntries(params)).toMatchObject({ agent: 'pager', _count: '10', _cursor: expect.any(String) });
      }
      expect(pages).toBe(14);
      expect(seen).toHaveLength(137);
      expect(new Set(seen).size).toBe(137);
      const expected = (await search([['agent', 'pager'], ['_count', '500']])).entry!.map((e) => e.resource!.id!);
      expect(expected[0]).not.toBe(seen[0]); // the new event is ahead of the pages already read
      expect(seen).toEqual(expected.slice(1));
    });
  });
}

describe('describeExchange', () => {
  const req = (method: string, path: string, query: [string, string][] = [], body?: unknown): FhirRequest => ({
    method,
    path,
    query,
    body,
    prefer: {},
  });
  const ok = (over: Partial<FhirResponse> = {}): FhirResponse => ({ status: 200, ...over });

  it.each<[string, FhirRequest, FhirResponse, ReturnType<typeof describeExchange>]>([
    ['read', req('GET', 'Patient/p1'), ok(), { interaction: 'read', action: 'R', entities: [{ reference: 'Patient/p1' }] }],
    ['HEAD read', req('HEAD', 'Patient/p1'), ok(), { interaction: 'read', action: 'R', entities: [{ reference: 'Patient/p1' }] }],
    [
      'vread',
      req('GET', 'ServiceRequest/123/_history/2'),
      ok(),
      { interaction: 'vread', action: 'R', entities: [{ reference: 'ServiceRequest/123/_history/2' }] },
    ],
    [
      'search',
      req('GET', 'ServiceRequest', [['subject', 'Patient/p1'], ['status', 'active']]),
      ok(),
      { interaction: 'search-type', action: 'R', entities: [{ type: 'ServiceRequest', query: 'subject=Patient%2Fp1&status=active' }] },
    ],
    ['search without criteria', req('GET', 'Task'), ok(), { interaction: 'search-type', action: 'R', entities: [{ type: 'Task' }] }],
    [
      'POST _search',
      req('POST', 'Patient/_search', [['_count', '5']], new URLSearchParams('family=smith')),
      ok(),
      { interaction: 'search-type', action: 'R', entities: [{ type: 'Patient', query: '_count=5&family=smith' }] },
    ],
    [
      'create',
      req('POST', 'ServiceRequest', [], { resourceType: 'ServiceRequest' }),
      ok({ status: 201, location: 'ServiceRequest/new-1/_history/1' }),
      { interaction: 'create', action: 'C', entities: [{ reference: 'ServiceRequest/new-1' }] },
    ],
    [
      'refused create',
      req('POST', 'ServiceRequest', [], { resourceType: 'ServiceRequest' }),
      ok({ status: 422 }),
      { interaction: 'create', action: 'C', entities: [{ type: 'ServiceRequest' }] },
    ],
    ['update', req('PUT', 'CarePlan/cp1'), ok(), { interaction: 'update', action: 'U', entities: [{ reference: 'CarePlan/cp1' }] }],
    [
      'conditional update',
      req('PUT', 'Patient', [['identifier', 'https://fhir.nhs.uk/Id/nhs-number|9000000009']]),
      ok({ status: 201, location: 'Patient/p9/_history/1' }),
      {
        interaction: 'update',
        action: 'U',
        entities: [{ reference: 'Patient/p9', query: 'identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C9000000009' }],
      },
    ],
    ['patch', req('PATCH', 'Task/t1'), ok(), { interaction: 'patch', action: 'U', entities: [{ reference: 'Task/t1' }] }],
    ['delete', req('DELETE', 'Task/t1'), ok({ status: 204 }), { interaction: 'delete', action: 'D', entities: [{ reference: 'Task/t1' }] }],
    [
      'conditional delete',
      req('DELETE', 'Task', [['status', 'cancelled']]),
      ok({ status: 204 }),
      { interaction: 'delete', action: 'D', entities: [{ type: 'Task', query: 'status=cancelled' }] },
    ],
    [
      'history-instance',
      req('GET', 'Patient/p1/_history'),
      ok(),
      { interaction: 'history-instance', action: 'R', entities: [{ reference: 'Patient/p1' }] },
    ],
    ['history-type', req('GET', 'Patient/_history'), ok(), { interaction: 'history-type', action: 'R', entities: [{ type: 'Patient' }] }],
    [
      'history-system',
      req('GET', '_history', [['_since', '2026-01-01']]),
      ok(),
      { interaction: 'history-system', action: 'R', entities: [{ query: '_since=2026-01-01' }] },
    ],
    [
      'type operation',
      req('POST', 'ServiceRequest/$validate', [], { resourceType: 'ServiceRequest' }),
      ok(),
      { interaction: 'operation', action: 'E', entities: [{ name: '$validate', type: 'ServiceRequest' }] },
    ],
    [
      'instance operation',
      req('POST', 'ServiceRequest/s1/$validate'),
      ok(),
      { interaction: 'operation', action: 'E', entities: [{ name: '$validate', reference: 'ServiceRequest/s1' }] },
    ],
    [
      'system operation by GET',
      req('GET', '$lookup', [['code', '1']]),
      ok(),
      { interaction: 'operation', action: 'E', entities: [{ name: '$lookup', query: 'code=1' }] },
    ],
    ['capabilities', req('GET', 'metadata'), ok(), { interaction: 'capabilities', action: 'R', entities: [] }],
    [
      'an unauthenticated read is still a read',
      req('GET', 'Patient/p1'),
      { status: 401 },
      { interaction: 'read', action: 'R', entities: [{ reference: 'Patient/p1' }] },
    ],
    [
      'an AuditEvent search',
      req('GET', 'AuditEvent', [['agent', 'x']]),
      ok(),
      { interaction: 'search-type', action: 'R', entities: [{ type: 'AuditEvent', query: 'agent=x' }] },
    ],
  ])('%s', (_name, request, response, expected) => {
    expect(describeExchange(request, response)).toEqual(expected);
  });

  const transaction = {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      { fullUrl: 'urn:uuid:1', resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } },
      { resource: { resourceType: 'ServiceRequest' }, request: { method: 'PUT', url: 'ServiceRequest/abc' } },
      { request: { method: 'GET', url: 'Task?status=requested' } },
      { request: { method: 'DELETE', url: 'Task/t1' } },
      { request: { method: 'GET', url: 'Patient/p1/_history/4' } },
    ],
  };
  const responseBundle: fhir4.Bundle = {
    resourceType: 'Bundle',
    type: 'transaction-response',
    entry: [
      { response: { status: '201 Created', location: 'Patient/p-new/_history/1' } },
      { response: { status: '200 OK', location: 'ServiceRequest/abc/_history/3' } },
      { response: { status: '200 OK' }, resource: { resourceType: 'Bundle', type: 'searchset' } as fhir4.Bundle },
      { response: { status: '204 No Content' } },
      { response: { status: '200 OK' } },
    ],
  };

  it('maps a transaction to one entity per entry, ids from the response', () => {
    const expected = {
      interaction: 'transaction',
      action: 'E',
      entities: [
        { reference: 'Patient/p-new' },
        { reference: 'ServiceRequest/abc' },
        { type: 'Task', query: 'status=requested' },
        { reference: 'Task/t1' },
        { reference: 'Patient/p1/_history/4' },
      ],
    };
    expect(describeExchange(req('POST', '', [], transaction), ok({ body: responseBundle }))).toEqual(expected);
    expect(describeExchange(req('POST', '', [], transaction), ok({ raw: JSON.stringify(responseBundle) }))).toEqual(expected);
    const absolute = structuredClone(responseBundle);
    absolute.entry![0].response!.location = 'http://sp.test/Patient/p-new/_history/1';
    expect(describeExchange(req('POST', '', [], transaction), ok({ body: absolute })).entities[0]).toEqual({ reference: 'Patient/p-new' });
  });

  it('maps a refused transaction from its request entries, and a batch as a batch', () => {
    const outcome: fhir4.OperationOutcome = { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid' }] };
    expect(describeExchange(req('POST', '', [], transaction), { status: 422, body: outcome })).toEqual({
      interaction: 'transaction',
      action: 'E',
      entities: [
        { type: 'Patient' },
        { reference: 'ServiceRequest/abc' },
        { type: 'Task', query: 'status=requested' },
        { reference: 'Task/t1' },
        { reference: 'Patient/p1/_history/4' },
      ],
    });
    expect(describeExchange(req('POST', '', [], { ...transaction, type: 'batch' }), ok({ body: responseBundle })).interaction).toBe('batch');
    expect(describeExchange(req('POST', '', [], 'not json'), { status: 400 })).toEqual({ interaction: 'transaction', action: 'E', entities: [] });
    expect(describeExchange(req('POST', ''), { status: 500, raw: '{broken' })).toEqual({ interaction: 'transaction', action: 'E', entities: [] });
  });
});
