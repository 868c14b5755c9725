import { wellbeing } from '../fixtures';
import { storeNames } from '../support/harness';
import { waitFor, withHarness } from './support';

/**
 * Several sp-bridge instances on one PostgreSQL: two engines, each with its own connection pool, share one
 * outbox. Every item is delivered exactly once and each patient's items in order.
 */

const maybe = storeNames().includes('postgres') ? describe : describe.skip;

maybe('delivery engine concurrency [postgres]', () => {
  it('two engines on one database deliver 1,000 items with no duplicate and no loss', () =>
    withHarness(
      'postgres',
      [{ id: 'gp', receives: [{ resourceType: 'Observation', events: ['created'] }] }],
      async (h) => {
        const TOTAL = 1000;
        const PATIENTS = 50;
        const PER_BUNDLE = 100;
        for (let b = 0; b < TOTAL / PER_BUNDLE; b++) {
          const entry = Array.from({ length: PER_BUNDLE }, (_, i) => ({
            resource: wellbeing(`Patient/c-${(b * PER_BUNDLE + i) % PATIENTS}`, 30 + (i % 30)),
            request: { method: 'POST', url: 'Observation' },
          }));
          const res = await h.request('POST', '/', { resourceType: 'Bundle', type: 'transaction', entry });
          expect(res.status).toBe(200);
        }
        expect(await h.deliveries()).toHaveLength(TOTAL);

        const ch = h.ch('gp');
        ch.behave = async () => {
          await new Promise((resolve) => setImmediate(resolve));
          return { kind: 'delivered', summary: 'ok', httpStatus: 201 };
        };
        const second = await h.secondEngine('engine-2');
        try {
          await Promise.all([h.engine.start(), second.engine.start()]);
          await waitFor(
            'every item to be delivered',
            async () => (await h.db.query<{ n: string }>(`SELECT count(*)::text AS n FROM deliveries WHERE state = 'delivered'`)).rows[0].n === String(TOTAL),
            120_000,
          );
        } finally {
          await Promise.all([h.engine.stop(), second.engine.stop()]);
          await second.db.close();
        }

        const keys = ch.calls.map((c) => c.idempotencyKey);
        expect(keys).toHaveLength(TOTAL);
        expect(new Set(keys).size).toBe(TOTAL);
        const rows = await h.deliveries();
        expect(rows.every((r) => r.state === 'delivered')).toBe(true);
        const attempts = await h.db.query<{ n: string }>(`SELECT count(*)::text AS n FROM delivery_attempts`);
        expect(attempts.rows[0].n).toBe(String(TOTAL));

        // Per patient, calls came in the order the items were enqueued.
        const idOf = new Map(rows.map((r) => [r.idempotency_key, Number(r.id)]));
        const lastByPatient = new Map<string, number>();
        for (const call of ch.calls) {
          const id = idOf.get(call.idempotencyKey) ?? -1;
          const patient = call.patientRef ?? '';
          expect(id).toBeGreaterThan(lastByPatient.get(patient) ?? 0);
          lastByPatient.set(patient, id);
        }
        expect(lastByPatient.size).toBe(PATIENTS);
      },
      { concurrency: 8, pollIntervalMs: 20 },
    ));
});
