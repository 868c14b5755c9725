import { randomUUID } from 'node:crypto';
import { DeliveryStore } from '../../src/storage/deliveries';
import { referral, wellbeing } from '../fixtures';
import { failTimes } from './recording-adapter';
import { eachStore, waitFor, withHarness, type DeliveryHarness, type DestinationSpec } from './support';

/** The engine driven round by round (runOnce / drain) with a clock the tests move: no timing assumptions. */

const GP: DestinationSpec = {
  id: 'gp',
  receives: [
    { resourceType: 'ServiceRequest', events: ['created', 'updated'] },
    { resourceType: 'Observation', events: ['created', 'updated'] },
  ],
  retry: { maxAttempts: 3, baseDelayMs: 1000, maxDelayMs: 10_000 },
};
const OTHER: DestinationSpec = { id: 'other', receives: [{ resourceType: 'ServiceRequest', events: ['created'] }] };

const HOUR = 3_600_000;

async function createReferral(h: DeliveryHarness, patientRef: string): Promise<string> {
  const res = await h.request('POST', '/ServiceRequest', referral(patientRef));
  expect(res.status).toBe(201);
  return res.json.id;
}

async function admin(h: DeliveryHarness, id: string) {
  const res = await h.request('GET', `/admin/deliveries/${id}`);
  expect(res.status).toBe(200);
  return res.json as { delivery: { state: string; attempts: number }; attempts: { outcome: string; httpStatus: number | null; summary: string }[] };
}

eachStore('delivery engine', (store) => {
  it('delivers each queued item once, with its idempotency key, event and patient', () =>
    withHarness(store, [GP, OTHER], async (h) => {
      const id = await createReferral(h, 'Patient/e-1');
      expect(await h.engine.drain()).toBe(2);
      const calls = h.ch('gp').calls;
      expect(calls).toHaveLength(1);
      expect(calls[0]).toMatchObject({
        idempotencyKey: `gp:ServiceRequest/${id}/_history/1`,
        destinationId: 'gp',
        event: 'created',
        resourceType: 'ServiceRequest',
        resourceId: id,
        versionId: '1',
        patientRef: 'Patient/e-1',
        attempt: 1,
      });
      expect(calls[0].resource).toMatchObject({ resourceType: 'ServiceRequest', id, meta: { versionId: '1' } });
      expect(h.ch('other').calls).toHaveLength(1);
      expect(await h.engine.drain()).toBe(0);
      const rows = await h.deliveries();
      expect(rows.map((r) => r.state)).toEqual(['delivered', 'delivered']);
      const detail = await admin(h, rows[0].id);
      expect(detail.attempts).toEqual([expect.objectContaining({ outcome: 'delivered', httpStatus: 201, summary: 'stored' })]);
    }));

  it('retries with backoff, then delivers; every attempt is recorded', () =>
    withHarness(store, [GP], async (h) => {
      h.ch('gp').behave = failTimes(2, { kind: 'retry', summary: 'HTTP 503 from the GP system', httpStatus: 503 });
      await createReferral(h, 'Patient/e-2');
      expect(await h.engine.runOnce()).toBe(1);
      const [row] = await h.deliveries();
      expect(row.state).toBe('failed');
      // Not due again until its backoff has passed.
      expect(await h.engine.runOnce()).toBe(0);
      h.clock.advance(HOUR);
      expect(await h.engine.runOnce()).toBe(1);
      h.clock.advance(HOUR);
      expect(await h.engine.runOnce()).toBe(1);
      const detail = await admin(h, row.id);
      expect(detail.delivery.state).toBe('delivered');
      expect(detail.attempts.map((a) => [a.outcome, a.httpStatus])).toEqual([
        ['retry', 503],
        ['retry', 503],
        ['delivered', 201],
      ]);
      expect(h.ch('gp').calls.map((c) => c.attempt)).toEqual([1, 2, 3]);
      expect(new Set(h.ch('gp').calls.map((c) => c.idempotencyKey)).size).toBe(1);
    }));

  it('an adapter that throws is retried; after maxAttempts the item is dead', () =>
    withHarness(store, [GP], async (h) => {
      h.ch('gp').behave = () => {
        throw new Error('socket hang up');
      };
      await createReferral(h, 'Patient/e-3');
      for (let i = 0; i < 3; i++) {
        expect(await h.engine.runOnce()).toBe(1);
        h.clock.advance(HOUR);
      }
      expect(await h.engine.runOnce()).toBe(0);
      const [row] = await h.deliveries();
      const detail = await admin(h, row.id);
      expect(detail.delivery.state).toBe('dead');
      expect(detail.attempts.map((a) => a.outcome)).toEqual(['error', 'error', 'error']);
      expect(detail.attempts[2].summary).toContain('gave up after 3 attempts');
    }));

  it('permanent failure -> dead -> replay -> delivered', () =>
    withHarness(store, [GP], async (h) => {
      const rejected = {
        resourceType: 'OperationOutcome' as const,
        issue: [{ severity: 'error' as const, code: 'invalid' as const, diagnostics: 'unknown practice' }],
      };
      h.ch('gp').behave = failTimes(1, { kind: 'failed', summary: 'HTTP 422', httpStatus: 422, outcome: rejected });
      await createReferral(h, 'Patient/e-4');
      await h.engine.drain();
      const [row] = await h.deliveries();
      expect(row.state).toBe('dead');
      expect((await admin(h, row.id)).attempts[0]).toMatchObject({ outcome: 'failed', httpStatus: 422, operationOutcome: rejected });

      const replay = await h.request('POST', `/admin/deliveries/${row.id}/replay`);
      expect(replay.status).toBe(200);
      expect(replay.json.delivery).toMatchObject({ state: 'queued', attempts: 0 });
      const again = await h.request('POST', `/admin/deliveries/${row.id}/replay`);
      expect(again.status).toBe(409);
      expect(again.json.resourceType).toBe('OperationOutcome');

      await h.engine.drain();
      const detail = await admin(h, row.id);
      expect(detail.delivery).toMatchObject({ state: 'delivered', attempts: 1 });
      expect(detail.attempts.map((a) => a.outcome)).toEqual(['failed', 'replay', 'delivered']);
      expect(h.ch('gp').calls.map((c) => c.attempt)).toEqual([1, 1]);
    }));

  it('delivers in order per patient and destination; a failing patient does not block others', () =>
    withHarness(store, [GP], async (h) => {
      const a1 = await createReferral(h, 'Patient/e-a');
      const b1 = await createReferral(h, 'Patient/e-b');
      const a2 = await createReferral(h, 'Patient/e-a');
      const b2 = await createReferral(h, 'Patient/e-b');
      h.ch('gp').behave = (item) =>
        item.resourceId === a1 && item.attempt === 1
          ? { kind: 'retry', summary: 'busy', httpStatus: 429 }
          : { kind: 'delivered', summary: 'stored', httpStatus: 201 };
      await h.engine.drain();
      // a1 is waiting for its retry, so a2 waits too; patient b is delivered in order.
      expect(h.ch('gp').calls.map((c) => c.resourceId)).toEqual([a1, b1, b2]);
      h.clock.advance(HOUR);
      await h.engine.drain();
      expect(h.ch('gp').calls.map((c) => c.resourceId)).toEqual([a1, b1, b2, a1, a2]);
    }));

  it('a dead item does not block the next one of its patient', () =>
    withHarness(store, [GP], async (h) => {
      const first = await createReferral(h, 'Patient/e-d');
      const second = await createReferral(h, 'Patient/e-d');
      h.ch('gp').behave = (item) =>
        item.resourceId === first
          ? { kind: 'failed', summary: 'rejected', outcome: { resourceType: 'OperationOutcome', issue: [] } }
          : { kind: 'delivered', summary: 'ok' };
      await h.engine.drain();
      expect(h.ch('gp').calls.map((c) => c.resourceId)).toEqual([first, second]);
      expect((await h.deliveries()).map((r) => r.state)).toEqual(['dead', 'delivered']);
    }));

  it('skips superseded versions in favour of the newest', () =>
    withHarness(store, [GP], async (h) => {
      const created = await h.request('POST', '/Observation', wellbeing('Patient/e-s', 40));
      const id = created.json.id;
      const v2 = await h.request('PUT', `/Observation/${id}`, { ...created.json, valueQuantity: { ...created.json.valueQuantity, value: 41 } });
      await h.request('PUT', `/Observation/${id}`, { ...v2.json, valueQuantity: { ...v2.json.valueQuantity, value: 42 } });
      await h.engine.drain();
      expect(h.ch('gp').calls.map((c) => c.versionId)).toEqual(['3']);
      const rows = await h.deliveries();
      expect(rows.map((r) => r.state)).toEqual(['superseded', 'superseded', 'delivered']);
      expect((await admin(h, rows[0].id)).attempts.map((a) => a.outcome)).toEqual(['superseded']);
    }));

  it('redelivers an item whose claim was lost (lease expired) and records it', () =>
    withHarness(store, [GP], async (h) => {
      await createReferral(h, 'Patient/e-l');
      // A process claims the item and dies without finishing.
      const ghost = new DeliveryStore(h.db);
      const claimed = await ghost.claim({ destinations: ['gp'], limit: 10, now: h.clock.now(), leaseMs: 60_000, worker: 'killed' });
      expect(claimed).toHaveLength(1);
      expect(await h.engine.runOnce()).toBe(0);
      h.clock.advance(61_000);
      expect(await h.engine.runOnce()).toBe(1);
      const detail = await admin(h, claimed[0].id);
      expect(detail.delivery.state).toBe('delivered');
      expect(detail.attempts.map((a) => a.outcome)).toEqual(['lease-expired', 'delivered']);
      expect(h.ch('gp').calls.map((c) => c.attempt)).toEqual([2]);
      // The dead worker's late answer changes nothing.
      const late = await ghost.finish(claimed[0].id, 'killed', claimed[0].attemptNumber, h.clock.now(), { state: 'dead' }, {
        startedAt: h.clock.now(),
        outcome: 'failed',
        summary: 'late',
      });
      expect(late).toBe(false);
      expect((await admin(h, claimed[0].id)).delivery.state).toBe('delivered');
    }));

  it('asynchronous adapters: accepted -> awaiting-ack -> acknowledged or rejected', () =>
    withHarness(store, [{ ...GP, async: true }], async (h) => {
      const ch = h.ch('gp');
      ch.behave = (item) => ({ kind: 'accepted', summary: 'sent to MESH', correlationId: `corr-${item.resourceId}` });
      const ok = await createReferral(h, 'Patient/e-x');
      const bad = await createReferral(h, 'Patient/e-y');
      await h.engine.drain();
      expect((await h.deliveries()).map((r) => r.state)).toEqual(['awaiting-ack', 'awaiting-ack']);
      expect(ch.onAck).toBeDefined();
      await ch.onAck!({ correlationId: `corr-${ok}`, result: 'delivered', summary: 'business ack' });
      await ch.onAck!({ correlationId: `corr-${bad}`, result: 'failed', summary: 'negative ack: patient not registered' });
      await ch.onAck!({ correlationId: 'corr-unknown', result: 'delivered', summary: 'stray' });
      const rows = await h.deliveries();
      expect(rows.map((r) => r.state)).toEqual(['delivered', 'dead']);
      expect((await admin(h, rows[0].id)).attempts.map((a) => a.outcome)).toEqual(['accepted', 'acknowledged']);
      expect((await admin(h, rows[1].id)).attempts.map((a) => a.outcome)).toEqual(['accepted', 'rejected']);
    }));

  it('an acknowledgement that arrives before the attempt is recorded is applied once it is', () =>
    withHarness(store, [{ ...GP, async: true }], async (h) => {
      const ch = h.ch('gp');
      ch.behave = async (item) => {
        await ch.onAck!({ correlationId: `fast-${item.resourceId}`, result: 'delivered', summary: 'instant ack' });
        return { kind: 'accepted', summary: 'sent', correlationId: `fast-${item.resourceId}` };
      };
      await createReferral(h, 'Patient/e-f');
      await h.engine.drain();
      const [row] = await h.deliveries();
      expect(row.state).toBe('delivered');
      expect((await admin(h, row.id)).attempts.map((a) => a.outcome)).toEqual(['accepted', 'acknowledged']);
    }));

  it('an item whose leases keep expiring (it kills its worker) goes dead after maxAttempts', () =>
    withHarness(store, [GP], async (h) => {
      await createReferral(h, 'Patient/e-p');
      const ghost = new DeliveryStore(h.db);
      for (let i = 0; i < 3; i++) {
        const claimed = await ghost.claim({ destinations: ['gp'], limit: 1, now: h.clock.now(), leaseMs: 1000, worker: `crashed-${i}` });
        expect(claimed).toHaveLength(1);
        h.clock.advance(2000);
      }
      expect(await h.engine.runOnce()).toBe(1);
      expect(h.ch('gp').calls).toHaveLength(0);
      const [row] = await h.deliveries();
      const detail = await admin(h, row.id);
      expect(detail.delivery.state).toBe('dead');
      expect(detail.attempts.map((a) => a.outcome)).toEqual(['lease-expired', 'lease-expired', 'lease-expired', 'failed']);
    }));

  it('runs in the background and shuts down gracefully: in-flight attempts finish, then adapters stop', () =>
    withHarness(store, [GP], async (h) => {
      let release!: () => void;
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      h.ch('gp').behave = async () => {
        await gate;
        return { kind: 'delivered', summary: 'slow but fine' };
      };
      await createReferral(h, 'Patient/e-g');
      await h.engine.start();
      await waitFor('the attempt to start', () => h.ch('gp').calls.length === 1);
      const stopping = h.engine.stop();
      release();
      await stopping;
      expect((await h.deliveries()).map((r) => r.state)).toEqual(['delivered']);
      expect(h.ch('gp').stopped).toBe(1);
    }));

  it('at shutdown an attempt that does not finish in time is given back to the queue', () =>
    withHarness(
      store,
      [GP],
      async (h) => {
        h.ch('gp').behave = (_item, signal) =>
          new Promise((resolve) => signal.addEventListener('abort', () => resolve({ kind: 'retry', summary: 'aborted' })));
        await createReferral(h, 'Patient/e-h');
        await h.engine.start();
        await waitFor('the attempt to start', () => h.ch('gp').calls.length === 1);
        await h.engine.stop();
        const [row] = await h.deliveries();
        expect(row.state).toBe('queued');
        const detail = await admin(h, row.id);
        expect(detail.delivery.attempts).toBe(0);
        expect(detail.attempts.map((a) => a.outcome)).toEqual(['released']);
      },
      { shutdownTimeoutMs: 0 },
    ));

  it('admin API: counts per destination and state, paged lists, OperationOutcome errors', () =>
    withHarness(store, [GP, OTHER], async (h) => {
      for (let i = 0; i < 3; i++) await createReferral(h, `Patient/e-${randomUUID()}`);
      h.ch('gp').behave = () => ({ kind: 'failed', summary: 'no', outcome: { resourceType: 'OperationOutcome', issue: [] } });
      await h.engine.drain();
      await createReferral(h, 'Patient/e-q');
      const stats = await h.request('GET', '/admin/deliveries/stats');
      expect(stats.status).toBe(200);
      const byId = Object.fromEntries(stats.json.destinations.map((d: { destination: string }) => [d.destination, d]));
      expect(byId.gp.counts).toMatchObject({ queued: 1, 'in-flight': 0, 'awaiting-ack': 0, delivered: 0, failed: 0, dead: 3 });
      expect(byId.other.counts).toMatchObject({ queued: 1, delivered: 3, dead: 0 });
      expect(byId.gp.oldestQueuedAgeSeconds).toEqual(expect.any(Number));

      const page1 = await h.request('GET', '/admin/deliveries?destination=gp&_count=2');
      expect(page1.status).toBe(200);
      expect(page1.json.items).toHaveLength(2);
      expect(page1.json.next).toContain('before=');
      const page2 = await h.request('GET', page1.json.next);
      expect(page2.json.items).toHaveLength(2);
      expect(page2.json.next).toBeUndefined();
      const ids = [...page1.json.items, ...page2.json.items].map((d: { id: string }) => d.id);
      expect(new Set(ids).size).toBe(4);
      const dead = await h.request('GET', '/admin/deliveries?state=dead');
      expect(dead.json.items.map((d: { state: string }) => d.state)).toEqual(['dead', 'dead', 'dead']);

      const badState = await h.request('GET', '/admin/deliveries?state=lost');
      expect(badState.status).toBe(400);
      expect(badState.json.resourceType).toBe('OperationOutcome');
      expect(badState.json.issue[0].diagnostics).toContain('state must be one of');
      const missing = await h.request('GET', '/admin/deliveries/999999');
      expect(missing.status).toBe(404);
      expect(missing.json.resourceType).toBe('OperationOutcome');
      const notDead = await h.request('POST', `/admin/deliveries/${ids[0]}/replay`);
      expect(notDead.status).toBe(409);
    }));

  it('replay is refused when a newer version was delivered since', () =>
    withHarness(store, [GP], async (h) => {
      const created = await h.request('POST', '/ServiceRequest', referral('Patient/e-r'));
      h.ch('gp').behave = failTimes(1, { kind: 'failed', summary: 'no', outcome: { resourceType: 'OperationOutcome', issue: [] } });
      await h.engine.drain();
      await h.request('PUT', `/ServiceRequest/${created.json.id}`, { ...created.json, priority: 'urgent' });
      await h.engine.drain();
      const rows = await h.deliveries();
      expect(rows.map((r) => r.state)).toEqual(['dead', 'delivered']);
      const replay = await h.request('POST', `/admin/deliveries/${rows[0].id}/replay`);
      expect(replay.status).toBe(409);
      expect(replay.json.issue[0].diagnostics).toContain('newer version');
    }));
});
