import { buildApp } from '../src/http/app';
import { createLogger } from '../src/http/logging';
import { openPostgres } from '../src/storage/db';
import { Repository } from '../src/storage/repository';
import { extractIndex } from '../src/fhir/search/extract';
import { describeEachStore } from './support/harness';
import { patient, referral } from './fixtures';

describeEachStore('concurrency', (h) => {
  it('50 concurrent identical conditional creates leave exactly one resource', async () => {
    const ifNoneExist = 'identifier=https://fhir.nhs.uk/Id/nhs-number|9449310351';
    const results = await Promise.all(
      Array.from({ length: 50 }, () => h.request('POST', '/Patient', patient('9449310351'), { 'if-none-exist': ifNoneExist })),
    );
    const statuses = results.map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 201)).toHaveLength(1);
    expect(statuses.filter((s) => s === 200)).toHaveLength(49);
    expect(new Set(results.map((r) => r.json.id)).size).toBe(1);
    const search = await h.request('GET', `/Patient?${ifNoneExist}`);
    expect(search.json.total).toBe(1);
  });

  // PGlite is one in-process database: only PostgreSQL can be shared by two instances.
  if (h.store === 'postgres') it('conditional creates racing from two app instances on one database leave one resource', async () => {
    const db2 = await openPostgres(h.db.url ?? '', 20);
    const app2 = await buildApp({ auth: { mode: 'none' }, config: { bodyLimitBytes: 1 << 20 }, db: db2, logger: createLogger('silent') });
    try {
      const ident = 'https://sp-bridge.example/referral|race-two-instances';
      const body = referral('Patient/p-race', { identifier: [{ system: 'https://sp-bridge.example/referral', value: 'race-two-instances' }] });
      const send = (app: typeof app2) =>
        app.inject({
          method: 'POST',
          url: '/ServiceRequest',
          payload: JSON.stringify(body),
          headers: { 'content-type': 'application/fhir+json', 'if-none-exist': `identifier=${ident}` },
        });
      const results = await Promise.all(Array.from({ length: 40 }, (_, i) => send(i % 2 ? app2 : h.app)));
      expect(results.filter((r) => r.statusCode === 201)).toHaveLength(1);
      expect(results.filter((r) => r.statusCode === 200)).toHaveLength(39);
      const search = await h.request('GET', `/ServiceRequest?identifier=${encodeURIComponent(ident)}`);
      expect(search.json.total).toBe(1);
    } finally {
      await app2.close();
      await db2.close();
    }
  });

  it('of two racing updates with the same If-Match exactly one wins', async () => {
    for (let round = 0; round < 5; round++) {
      const created = await h.request('POST', '/ServiceRequest', referral('Patient/p-ifmatch'));
      const id = created.json.id;
      const [a, b] = await Promise.all([
        h.request('PUT', `/ServiceRequest/${id}`, { ...created.json, status: 'on-hold' }, { 'if-match': 'W/"1"' }),
        h.request('PUT', `/ServiceRequest/${id}`, { ...created.json, status: 'revoked' }, { 'if-match': 'W/"1"' }),
      ]);
      expect([a.status, b.status].sort()).toEqual([200, 412]);
      const winner = a.status === 200 ? 'on-hold' : 'revoked';
      const current = await h.request('GET', `/ServiceRequest/${id}`);
      expect(current.json.status).toBe(winner);
      expect(current.json.meta.versionId).toBe('2');
    }
  });

  it('concurrent unconditional updates of one resource each get their own version', async () => {
    const created = await h.request('POST', '/ServiceRequest', referral('Patient/p-many'));
    const id = created.json.id;
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => h.request('PUT', `/ServiceRequest/${id}`, { ...created.json, note: [{ text: `n${i}` }] })),
    );
    expect(results.every((r) => r.status === 200)).toBe(true);
    expect(new Set(results.map((r) => r.json.meta.versionId)).size).toBe(20);
    const history = await h.request('GET', `/ServiceRequest/${id}/_history?_count=100`);
    expect(history.json.total).toBe(21);
  });

  // A write that started before the first page but commits after it must not appear on later pages.
  // PGlite runs one transaction at a time, so only PostgreSQL can interleave them like this.
  if (h.store === 'postgres') it('paging stays consistent across a write that commits between pages', async () => {
    const system = 'https://sp-bridge.example/referral-paging-race';
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await h.request('POST', '/ServiceRequest', referral('Patient/p-page', { identifier: [{ system, value: `r${i}` }] }));
      ids.push(r.json.id);
    }
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let started!: () => void;
    const inFlight = new Promise<void>((resolve) => (started = resolve));
    const slowWrite = Repository.open(h.db).transaction(async (tx) => {
      const late = referral('Patient/p-page', { identifier: [{ system, value: 'late' }] });
      await tx.save({ type: 'ServiceRequest', id: 'late-writer', resource: late, index: extractIndex(late) });
      started();
      await gate;
    });
    await inFlight;
    const quick = await h.request('POST', '/ServiceRequest', referral('Patient/p-page', { identifier: [{ system, value: 'quick' }] }));
    const url = `/ServiceRequest?identifier=${encodeURIComponent(`${system}|`)}&_count=2&_sort=-_lastUpdated`;
    const first = await h.request('GET', url);
    release();
    await slowWrite;
    const seen = first.json.entry.map((e: { resource: { id: string } }) => e.resource.id);
    let next = first.json.link.find((l: { relation: string }) => l.relation === 'next')?.url;
    while (next) {
      const page = await h.request('GET', next.replace('http://localhost:80', ''));
      expect(page.json.total).toBe(5);
      seen.push(...page.json.entry.map((e: { resource: { id: string } }) => e.resource.id));
      next = page.json.link.find((l: { relation: string }) => l.relation === 'next')?.url;
    }
    expect(first.json.total).toBe(5);
    expect(seen.sort()).toEqual([...ids, quick.json.id].sort());
    const fresh = await h.request('GET', url);
    expect(fresh.json.total).toBe(6);
  });
});
