import { loadDestinationsFile, setUpDelivery, type DeliveryEngine } from '../../src/delivery';
import { AuditLog, describeDelivery } from '../../src/audit';
import { buildApp } from '../../src/http/app';
import { createLogger } from '../../src/http/logging';
import { startMockGp, type MockGp } from '../../src/mock/gp';
import { patient, referral, wellbeing } from '../fixtures';
import { Harness, openTestDatabase, type StoreName } from '../support/harness';
import { eachStore, waitFor, writeDestinations } from './support';

/**
 * End to end, over real loopback sockets: resources written through the FHIR API, the outbox, the delivery
 * engine's own loop (real time, short poll interval), the fhir-rest adapter and mock-gp as the receiver.
 */

const WORKER = { concurrency: 8, pollIntervalMs: 20, leaseMs: 60_000, attemptTimeoutMs: 20_000, shutdownTimeoutMs: 2_000 };
const RETRY = { maxAttempts: 5, baseDelayMs: 50, maxDelayMs: 2_000 };
const ALL_EVENTS = ['created', 'updated'];

interface AdminView {
  delivery: { id: string; state: string; attempts: number; idempotencyKey: string };
  attempts: { attempt: number; outcome: string; httpStatus: number | null; summary: string; operationOutcome: fhir4.OperationOutcome | null }[];
}

class E2E extends Harness {
  engine!: DeliveryEngine;
  gp!: MockGp;
  audit!: AuditLog;

  constructor(
    store: StoreName,
    private readonly destination: (gpUrl: string) => Record<string, unknown>,
  ) {
    super(store);
  }

  override async start(): Promise<void> {
    this.gp = await startMockGp({ port: 0 });
    const file = writeDestinations({ worker: WORKER, destinations: [{ retry: RETRY, ...this.destination(this.gp.url) }] });
    const config = loadDestinationsFile(file);
    this.db = await openTestDatabase(this.store);
    this.audit = new AuditLog(this.db);
    const delivery = setUpDelivery(config, this.db, undefined, { onAttempt: (a) => this.audit.record(describeDelivery(a)) });
    this.engine = delivery.engine;
    this.app = await buildApp({
      auth: { mode: 'none' },
      config: { bodyLimitBytes: 4 * 1024 * 1024 },
      db: this.db,
      logger: createLogger('silent'),
      delivery: { outbox: delivery.outbox, destinations: delivery.destinationIds },
    });
    await this.engine.start();
  }

  override async stop(): Promise<void> {
    await this.engine?.stop();
    await this.audit?.close();
    await super.stop();
    await this.gp?.close();
  }

  async create(resource: fhir4.Resource): Promise<string> {
    const res = await this.request('POST', `/${resource.resourceType}`, resource);
    expect(res.status).toBe(201);
    return res.json.id as string;
  }

  async update(resource: fhir4.Resource & { id: string }): Promise<number> {
    const res = await this.request('PUT', `/${resource.resourceType}/${resource.id}`, resource);
    expect(res.status).toBe(200);
    return Number(res.json.meta.versionId);
  }

  /** The delivery row for an idempotency key, through the admin API (list, then the row with its attempts). */
  async delivery(key: string): Promise<AdminView | undefined> {
    const { rows } = await this.db.query<{ id: string }>('SELECT id::text AS id FROM deliveries WHERE idempotency_key = $1', [key]);
    if (!rows[0]) return undefined;
    const res = await this.request('GET', `/admin/deliveries/${rows[0].id}`);
    expect(res.status).toBe(200);
    return res.json as AdminView;
  }

  async settled(key: string, state: string, ms = 30_000): Promise<AdminView> {
    let last: AdminView | undefined;
    try {
      await waitFor(`${key} to be ${state}`, async () => (last = await this.delivery(key))?.delivery.state === state, ms);
    } catch (err) {
      throw new Error(`${(err as Error).message}; last seen: ${JSON.stringify(last)}`);
    }
    return last as AdminView;
  }

  async states(): Promise<Record<string, number>> {
    const { rows } = await this.db.query<{ state: string; n: string }>('SELECT state, count(*)::text AS n FROM deliveries GROUP BY state');
    return Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
  }
}

async function withE2E(store: StoreName, destination: (gpUrl: string) => Record<string, unknown>, fn: (h: E2E) => Promise<void>): Promise<void> {
  const h = new E2E(store, destination);
  await h.start();
  try {
    await fn(h);
  } finally {
    await h.stop();
  }
}

const gpDestination = (url: string) => ({
  id: 'gp',
  adapter: 'fhir-rest',
  settings: { baseUrl: url },
  receives: [
    { resourceType: 'Patient', events: ALL_EVENTS },
    { resourceType: 'ServiceRequest', events: ALL_EVENTS },
    { resourceType: 'Observation', events: ALL_EVENTS },
  ],
});

const key = (type: string, id: string, version: number, destination = 'gp') => `${destination}:${type}/${id}/_history/${version}`;

eachStore('end to end: fhir-rest to mock-gp', (store) => {
  it('a referral written through the API arrives at the GP system, with its idempotency key', () =>
    withE2E(store, gpDestination, async (h) => {
      const patientId = await h.create(patient());
      const sent = referral(`Patient/${patientId}`);
      const id = await h.create(sent);
      const view = await h.settled(key('ServiceRequest', id, 1), 'delivered');
      expect(view.attempts).toEqual([expect.objectContaining({ outcome: 'delivered', httpStatus: 201, summary: `PUT ServiceRequest/${id} -> 201` })]);

      // The audit trail says which version went where, for which patient.
      await h.audit.flush();
      const exported = await h.audit.search([['entity', `ServiceRequest/${id}`], ['subtype', '110106']], { baseUrl: 'http://sp.test' });
      const events = (exported.entry ?? []).map((e) => e.resource as fhir4.AuditEvent);
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({
        type: { code: '110106', display: 'Export' },
        outcome: '0',
        agent: [{ requestor: true }, { who: { identifier: { system: 'urn:sp-bridge:destination', value: 'gp' } } }],
      });
      expect(events[0].entity?.map((e) => e.what?.reference)).toEqual(
        expect.arrayContaining([`ServiceRequest/${id}/_history/1`, `Patient/${patientId}`]),
      );

      const stored = h.gp.store.current('ServiceRequest', id);
      expect(stored?.resource).toMatchObject({
        resourceType: 'ServiceRequest',
        id,
        status: 'active',
        intent: 'order',
        identifier: sent.identifier,
        code: sent.code,
        subject: { reference: `Patient/${patientId}` },
        authoredOn: sent.authoredOn,
      });
      // Our version metadata is not sent: the receiver keeps its own.
      expect((stored?.resource?.meta as { versionId?: string } | undefined)?.versionId).toBe(stored?.versionId);
      const requests = h.gp.received().requests.filter((r) => r.path === `/ServiceRequest/${id}`);
      expect(requests).toEqual([
        expect.objectContaining({ method: 'PUT', status: 201, idempotencyKey: key('ServiceRequest', id, 1), requestId: key('ServiceRequest', id, 1), duplicate: false }),
      ]);
      // The Patient went too, as its own delivery.
      await h.settled(key('Patient', patientId, 1), 'delivered');
      expect(h.gp.store.current('Patient', patientId)?.resource).toMatchObject({ resourceType: 'Patient', birthDate: '1956-04-12' });
    }));

  it('503 twice with Retry-After: retried after the wait it asked for, then delivered; the admin API shows every attempt', () =>
    withE2E(store, gpDestination, async (h) => {
      h.gp.fail({ status: 503, retryAfter: 1, count: 2 });
      const id = await h.create(referral('Patient/e2e-retry'));
      const view = await h.settled(key('ServiceRequest', id, 1), 'delivered');
      expect(view.delivery.attempts).toBe(3);
      expect(view.attempts.map((a) => [a.attempt, a.outcome, a.httpStatus])).toEqual([
        [1, 'retry', 503],
        [2, 'retry', 503],
        [3, 'delivered', 201],
      ]);
      expect(view.attempts[0].operationOutcome).toMatchObject({ resourceType: 'OperationOutcome', issue: [{ code: 'transient' }] });
      const arrivals = h.gp.received().requests.filter((r) => r.path === `/ServiceRequest/${id}`);
      expect(arrivals.map((r) => [r.status, r.injected, r.idempotencyKey])).toEqual([
        [503, true, key('ServiceRequest', id, 1)],
        [503, true, key('ServiceRequest', id, 1)],
        [201, false, key('ServiceRequest', id, 1)],
      ]);
      // Retry-After (1 s) was honoured: each retry came at least that long after the answer that asked for it.
      const at = arrivals.map((r) => Date.parse(r.at));
      expect(at[1] - at[0]).toBeGreaterThanOrEqual(900);
      expect(at[2] - at[1]).toBeGreaterThanOrEqual(900);
    }));

  it('400: dead with the receiver OperationOutcome; replayed once the receiver is fixed: delivered', () =>
    withE2E(store, gpDestination, async (h) => {
      const rejected: fhir4.OperationOutcome = {
        resourceType: 'OperationOutcome',
        issue: [{ severity: 'error', code: 'invalid', diagnostics: 'Unknown requester practice' }],
      };
      h.gp.fail({ status: 400, outcome: rejected });
      const id = await h.create(referral('Patient/e2e-dead'));
      const k = key('ServiceRequest', id, 1);
      const dead = await h.settled(k, 'dead');
      expect(dead.attempts).toEqual([expect.objectContaining({ outcome: 'failed', httpStatus: 400, operationOutcome: rejected })]);
      expect(h.gp.store.current('ServiceRequest', id)).toBeUndefined();
      expect((await h.request('GET', '/admin/deliveries?state=dead')).json.items.map((i: { idempotencyKey: string }) => i.idempotencyKey)).toEqual([k]);

      // The receiver is fixed (the injected failure was a one-off); the operator replays.
      const replay = await h.request('POST', `/admin/deliveries/${dead.delivery.id}/replay`);
      expect(replay.status).toBe(200);
      const view = await h.settled(k, 'delivered');
      expect(view.attempts.map((a) => [a.outcome, a.httpStatus])).toEqual([
        ['failed', 400],
        ['replay', null],
        ['delivered', 201],
      ]);
      expect(h.gp.store.current('ServiceRequest', id)?.resource).toMatchObject({ id, status: 'active' });
      expect(h.gp.received().requests.filter((r) => r.idempotencyKey === k).map((r) => r.status)).toEqual([400, 201]);
    }));

  it("a patient's records arrive in the order they were written (another patient's interleaved)", () =>
    withE2E(store, gpDestination, async (h) => {
      // Slow the receiver a little so that deliveries queue up behind one another while writes go on.
      h.gp.fail({ delayMs: 15, count: 1_000 });
      const written: { patient: string; type: string; id: string; version: number }[] = [];
      const live = new Map<string, fhir4.Resource & { id: string }>();
      const write = async (pat: string, resource: fhir4.Resource) => {
        const isNew = resource.id === undefined;
        const id = isNew ? await h.create(resource) : resource.id!;
        const version = isNew ? 1 : await h.update(resource as fhir4.Resource & { id: string });
        live.set(`${resource.resourceType}/${id}`, { ...resource, id });
        written.push({ patient: pat, type: resource.resourceType, id, version });
        return id;
      };
      const pats: string[] = [];
      for (const nhs of ['9434765919', '9449306060']) {
        const p = await h.create(patient(nhs));
        pats.push(p);
        written.push({ patient: p, type: 'Patient', id: p, version: 1 });
      }
      const srs = [] as { p: string; id: string }[];
      for (const p of pats) srs.push({ p, id: await write(p, referral(`Patient/${p}`)) });
      const obs = [] as { p: string; id: string }[];
      for (const p of pats) obs.push({ p, id: await write(p, wellbeing(`Patient/${p}`, 40)) });
      for (let round = 1; round <= 4; round++) {
        for (const { p, id } of srs) {
          const current = live.get(`ServiceRequest/${id}`) as fhir4.ServiceRequest & { id: string };
          await write(p, { ...current, note: [{ text: `update ${round}` }] } as fhir4.ServiceRequest);
          const o = obs.find((x) => x.p === p)!;
          const currentObs = live.get(`Observation/${o.id}`) as fhir4.Observation & { id: string };
          await write(p, { ...currentObs, valueQuantity: { ...currentObs.valueQuantity, value: 40 + round } } as fhir4.Observation);
        }
      }
      await waitFor('every delivery to finish', async () => {
        const s = await h.states();
        return (s.queued ?? 0) + (s['in-flight'] ?? 0) + (s.failed ?? 0) === 0;
      });
      const states = await h.states();
      expect(states.delivered).toBeGreaterThan(0);
      expect(states.dead ?? 0).toBe(0);

      // What arrived, in arrival order, from the idempotency keys.
      const arrived = h.gp
        .received()
        .requests.filter((r) => r.status >= 200 && r.status < 300 && !r.duplicate)
        .map((r) => /^gp:(\w+)\/([^/]+)\/_history\/(\d+)$/.exec(r.idempotencyKey ?? ''))
        .map((m) => ({ type: m![1], id: m![2], version: Number(m![3]) }));
      const position = (x: { type: string; id: string; version: number }) =>
        written.findIndex((w) => w.type === x.type && w.id === x.id && w.version === x.version);
      for (const p of pats) {
        const order = arrived.map(position).filter((i) => i >= 0 && written[i].patient === p);
        // In write order (older versions superseded by a newer queued one may be skipped, never reordered).
        expect(order).toEqual([...order].sort((a, b) => a - b));
        // The newest version of each of the patient's resources arrived.
        for (const [ref, resource] of live) {
          if (!written.some((w) => w.patient === p && `${w.type}/${w.id}` === ref)) continue;
          const newest = Math.max(...written.filter((w) => `${w.type}/${w.id}` === ref).map((w) => w.version));
          expect(order.map((i) => written[i]).some((w) => `${w.type}/${w.id}` === ref && w.version === newest)).toBe(true);
          expect(h.gp.store.current(resource.resourceType, resource.id)?.resource).toMatchObject(
            resource.resourceType === 'ServiceRequest' ? { note: [{ text: 'update 4' }] } : { resourceType: resource.resourceType },
          );
        }
      }
      expect(arrived.length).toBe(states.delivered);
      expect(arrived.length + (states.superseded ?? 0)).toBe(written.length);
    }));

  it('conditional-create mode: a deletion deletes the record at the receiver by its business identifier', () =>
    withE2E(
      store,
      (url) => ({
        id: 'gp-cc',
        adapter: 'fhir-rest',
        settings: { baseUrl: url, writeMode: 'conditional-create', identifierSystems: { ServiceRequest: 'https://sp-bridge.example/referral' } },
        receives: [{ resourceType: 'ServiceRequest', events: ['created', 'updated', 'deleted'] }],
      }),
      async (h) => {
        const sent = referral('Patient/e2e-cc');
        const identifier = { system: sent.identifier![0].system!, value: sent.identifier![0].value! };
        const id = await h.create(sent);
        await h.settled(key('ServiceRequest', id, 1, 'gp-cc'), 'delivered');
        // The receiver gave it its own id; it is found by identifier.
        const there = h.gp.store.search('ServiceRequest', identifier);
        expect(there).toHaveLength(1);
        expect(there[0].id).not.toBe(id);

        const del = await h.request('DELETE', `/ServiceRequest/${id}`);
        expect([200, 204]).toContain(del.status);
        const view = await h.settled(key('ServiceRequest', id, 2, 'gp-cc'), 'delivered');
        expect(view.attempts).toEqual([
          expect.objectContaining({ outcome: 'delivered', httpStatus: 204, summary: 'DELETE ServiceRequest?identifier=https://sp-bridge.example/referral|… -> 204' }),
        ]);
        expect(h.gp.store.search('ServiceRequest', identifier)).toHaveLength(0);
        expect(h.gp.store.current('ServiceRequest', there[0].id as string)?.resource).toBeFalsy();
        const deletes = h.gp.received().requests.filter((r) => r.method === 'DELETE');
        expect(deletes).toEqual([
          expect.objectContaining({
            path: '/ServiceRequest',
            status: 204,
            idempotencyKey: key('ServiceRequest', id, 2, 'gp-cc'),
            criteria: expect.stringContaining(encodeURIComponent(identifier.value)),
          }),
        ]);
      },
    ));
});
