import { randomUUID } from 'node:crypto';
import { carePlan, patient, referral, wellbeing } from '../fixtures';
import { eachStore, withHarness, type DestinationSpec } from './support';

/** What each accepted write enqueues, in the write's own transaction. */

const GP: DestinationSpec = {
  id: 'gp',
  receives: [
    { resourceType: 'ServiceRequest', events: ['created', 'status-changed'] },
    { resourceType: 'CarePlan', events: ['created'] },
    { resourceType: 'Observation', events: ['created', 'updated'], status: ['final'] },
  ],
};
const AUDIT: DestinationSpec = {
  id: 'audit',
  receives: [{ resourceType: 'ServiceRequest', events: ['created', 'updated', 'deleted'] }],
};

eachStore('delivery outbox', (store) => {
  it('enqueues created, status-changed, updated and deleted for the destinations that receive them', () =>
    withHarness(store, [GP, AUDIT], async (h) => {
      const created = await h.request('POST', '/ServiceRequest', referral('Patient/p-1'));
      expect(created.status).toBe(201);
      const id = created.json.id;
      // An update that keeps the status: audit receives updates, gp only status changes.
      const same = await h.request('PUT', `/ServiceRequest/${id}`, { ...created.json, priority: 'urgent' });
      expect(same.status).toBe(200);
      const changed = await h.request('PUT', `/ServiceRequest/${id}`, { ...same.json, status: 'completed' });
      expect(changed.status).toBe(200);
      expect((await h.request('DELETE', `/ServiceRequest/${id}`)).status).toBeLessThan(300);

      const rows = await h.deliveries();
      const view = rows.map((r) => `${r.idempotency_key} ${r.event} ${r.state}`);
      expect(view).toEqual([
        `gp:ServiceRequest/${id}/_history/1 created queued`,
        `audit:ServiceRequest/${id}/_history/1 created queued`,
        `audit:ServiceRequest/${id}/_history/2 updated queued`,
        `gp:ServiceRequest/${id}/_history/3 status-changed queued`,
        `audit:ServiceRequest/${id}/_history/3 updated queued`,
        `audit:ServiceRequest/${id}/_history/4 deleted queued`,
      ]);
      expect(new Set(rows.map((r) => r.patient_ref))).toEqual(new Set(['Patient/p-1']));
    }));

  it('filters by status and type, and enqueues server-assigned and client-assigned creates alike', () =>
    withHarness(store, [GP], async (h) => {
      const pid = `pt-${randomUUID()}`;
      const pat = await h.request('PUT', `/Patient/${pid}`, { ...patient(), id: pid });
      expect(pat.status).toBe(201);
      const prelim = await h.request('POST', '/Observation', wellbeing('Patient/p-2', 40, { status: 'preliminary' }));
      expect(prelim.status).toBe(201);
      const final = await h.request('POST', '/Observation', wellbeing('Patient/p-2', 41));
      expect(final.status).toBe(201);
      const cp = `cp-${randomUUID()}`;
      const plan = await h.request('PUT', `/CarePlan/${cp}`, { ...carePlan('Patient/p-2', 'ServiceRequest/x'), id: cp });
      expect(plan.status).toBe(201);
      const rows = await h.deliveries();
      expect(rows.map((r) => `${r.resource_type}/${r.resource_id} ${r.event}`)).toEqual([
        `Observation/${final.json.id} created`,
        `CarePlan/${plan.json.id} created`,
      ]);
    }));

  it('enqueues nothing for a rolled-back transaction Bundle or a rejected write', () =>
    withHarness(store, [GP, AUDIT], async (h) => {
      const bundle = {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          { resource: referral('Patient/p-3'), request: { method: 'POST', url: 'ServiceRequest' } },
          // A version conflict fails the whole transaction after the first entry was written.
          { resource: { ...referral('Patient/p-3'), id: 'nope' }, request: { method: 'PUT', url: 'ServiceRequest/nope', ifMatch: 'W/"7"' } },
        ],
      };
      const tx = await h.request('POST', '/', bundle);
      expect(tx.status).toBeGreaterThanOrEqual(400);
      const invalid = await h.request('POST', '/ServiceRequest', { ...referral('Patient/p-3'), status: 'not-a-status' });
      expect(invalid.status).toBeGreaterThanOrEqual(400);
      expect(invalid.json.resourceType).toBe('OperationOutcome');
      expect(await h.deliveries()).toEqual([]);
      expect((await h.request('GET', '/ServiceRequest?subject=Patient/p-3')).json.total).toBe(0);

      // The same bundle without the failing entry commits, with its deliveries.
      const ok = await h.request('POST', '/', { ...bundle, entry: [bundle.entry[0]] });
      expect(ok.status).toBe(200);
      expect(await h.deliveries()).toHaveLength(2);
    }));
});
