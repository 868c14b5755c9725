import { randomUUID } from 'node:crypto';
import { describeEachStore, type Harness, type Reply } from './support/harness';
import {
  carePlan,
  CAREPLAN_BASED_ON_R5,
  ident,
  patient,
  pident,
  referral,
  scope,
  wellbeing,
  withNhsNumber,
} from './fixtures';

/**
 * Transaction and batch Bundles (http://hl7.org/fhir/R4/http.html#transaction) through `POST /`. Every test
 * works in its own identifier system, so the tests share one store without seeing each other's resources.
 */




function urn(): string {
  return `urn:uuid:${randomUUID()}`;
}

function bundleOf(type: string, entry: fhir4.BundleEntry[]): fhir4.Bundle {
  return { resourceType: 'Bundle', type: type as fhir4.Bundle['type'], entry };
}

function post<T extends fhir4.Resource>(resource: T, fullUrl?: string, request: Partial<fhir4.BundleEntryRequest> = {}): fhir4.BundleEntry {
  return { fullUrl, resource, request: { method: 'POST', url: resource.resourceType, ...request } };
}

function put<T extends fhir4.Resource>(url: string, resource: T, request: Partial<fhir4.BundleEntryRequest> = {}): fhir4.BundleEntry {
  return { resource, request: { method: 'PUT', url, ...request } };
}

function get(url: string): fhir4.BundleEntry {
  return { request: { method: 'GET', url } };
}

function del(url: string): fhir4.BundleEntry {
  return { request: { method: 'DELETE', url } };
}

function transaction(h: Harness, entries: fhir4.BundleEntry[]): Promise<Reply> {
  return h.request('POST', '/', bundleOf('transaction', entries));
}

async function create<T extends fhir4.Resource>(h: Harness, resource: T): Promise<T & { id: string }> {
  const res = await h.request('POST', `/${resource.resourceType}`, resource);
  if (res.status !== 201) throw new Error(`create ${resource.resourceType} -> ${res.status} ${res.body}`);
  return res.json;
}

async function read(h: Harness, ref: string): Promise<Reply> {
  return h.request('GET', `/${ref}`);
}

async function found(h: Harness, type: string, query: string): Promise<string[]> {
  const res = await h.request('GET', `/${type}?${query}`);
  if (res.status !== 200) throw new Error(`GET /${type}?${query} -> ${res.status} ${res.body}`);
  return ((res.json as fhir4.Bundle).entry ?? []).map((e) => e.resource?.id as string).sort();
}

/** Resources of `type` in the identifier system `sys`. */
function inScope(h: Harness, type: string, sys: string): Promise<string[]> {
  return found(h, type, `identifier=${encodeURIComponent(`${sys}|`)}`);
}

/** `Type/id` of a response entry's location (`Type/id/_history/n`). */
function target(entry: fhir4.BundleEntry): string {
  const location = entry.response?.location as string;
  expect(location).toMatch(/^[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]+\/_history\/\d+$/);
  return location.split('/').slice(0, 2).join('/');
}

function idOf(entry: fhir4.BundleEntry): string {
  return target(entry).split('/')[1];
}

function expectOutcome(res: Reply, status: number, entryIndex?: number): void {
  expect(res.status).toBe(status);
  expect(res.json.resourceType).toBe('OperationOutcome');
  expect(res.json.issue[0].severity).toBe('error');
  if (entryIndex !== undefined) {
    const issue = res.json.issue[0];
    expect(`${issue.diagnostics} ${(issue.expression ?? []).join(' ')}`).toContain(`Bundle.entry[${entryIndex}]`);
  }
}

describeEachStore('transaction and batch Bundles', (h) => {
  describe('transaction', () => {
    it('creates Patient, ServiceRequest, CarePlan and Observation linked by urn:uuid fullUrls', async () => {
      const sys = scope();
      const [p, sr, cp, obs, review] = [urn(), urn(), urn(), urn(), urn()];
      // The plan names its referral in the R5 basedOn extension (R4 CarePlan.basedOn names only CarePlans); a
      // review plan is based on the first plan.
      const plan: fhir4.CarePlan = {
        ...carePlan(p, sr),
        identifier: ident(sys, 'plan'),
        activity: [{ reference: { reference: sr } }],
      };
      const reviewPlan: fhir4.CarePlan = { ...carePlan(p, sr), identifier: ident(sys, 'review'), basedOn: [{ reference: cp }] };
      // The Observation comes first: references may point forwards in the Bundle.
      const res = await transaction(h, [
        post({ ...wellbeing(p, 48), identifier: ident(sys, 'obs'), basedOn: [{ reference: cp }] }, obs),
        post({ ...patient(), identifier: pident(sys, 'patient'), id: 'client-chosen' }, p),
        post(referral(p, { identifier: ident(sys, 'referral') }), sr),
        post(plan, cp),
        post(reviewPlan, review),
      ]);
      expect(res.status).toBe(200);
      const out = res.json as fhir4.Bundle;
      expect(out.resourceType).toBe('Bundle');
      expect(out.type).toBe('transaction-response');
      expect(out.entry).toHaveLength(5);
      for (const e of out.entry ?? []) {
        expect(e.response?.status).toMatch(/^201\b/);
        expect(e.response?.etag).toBe('W/"1"');
        expect(e.response?.location).toMatch(/\/_history\/1$/);
      }
      // Response entries are in request order.
      expect((out.entry ?? []).map((e) => target(e).split('/')[0])).toEqual([
        'Observation',
        'Patient',
        'ServiceRequest',
        'CarePlan',
        'CarePlan',
      ]);
      const [obsRef, pRef, srRef, cpRef, reviewRef] = (out.entry ?? []).map(target);
      // A create ignores a client id.
      expect(pRef).not.toBe('Patient/client-chosen');
      expect((out.entry?.[2].resource as fhir4.ServiceRequest).subject.reference).toBe(pRef);

      const storedSr = await read(h, srRef);
      expect(storedSr.status).toBe(200);
      expect(storedSr.json.subject.reference).toBe(pRef);
      const storedCp = await read(h, cpRef);
      expect(storedCp.json.subject.reference).toBe(pRef);
      expect(storedCp.json.extension).toEqual([{ url: CAREPLAN_BASED_ON_R5, valueReference: { reference: srRef } }]);
      expect(storedCp.json.activity[0].reference.reference).toBe(srRef);
      const storedReview = await read(h, reviewRef);
      expect(storedReview.json.subject.reference).toBe(pRef);
      expect(storedReview.json.extension[0].valueReference.reference).toBe(srRef);
      expect(storedReview.json.basedOn[0].reference).toBe(cpRef);
      const storedObs = await read(h, obsRef);
      expect(storedObs.json.subject.reference).toBe(pRef);
      expect(storedObs.json.basedOn[0].reference).toBe(cpRef);
      expect((await read(h, pRef)).json.identifier).toEqual(pident(sys, 'patient'));
      for (const r of [storedSr, storedCp, storedReview, storedObs]) expect(r.body).not.toContain('urn:uuid');

      // And the references are searchable.
      const pid = pRef.split('/')[1];
      expect(await found(h, 'ServiceRequest', `patient=${pid}`)).toEqual([srRef.split('/')[1]]);
      expect(await found(h, 'CarePlan', `based-on=${cpRef}`)).toEqual([reviewRef.split('/')[1]]);
      expect(await found(h, 'Observation', `based-on=${cpRef}`)).toEqual([obsRef.split('/')[1]]);
      expect(await found(h, 'Observation', `subject=${pRef}`)).toEqual([obsRef.split('/')[1]]);
    });

    it('resolves conditional references (Type?criteria) in resources', async () => {
      const sys = scope();
      const existing = await create(h, patient(undefined, { identifier: pident(sys, 'p') }));
      const res = await transaction(h, [post(referral(`Patient?identifier=${sys}|p`, { identifier: ident(sys, 'r') }))]);
      expect(res.status).toBe(200);
      const stored = await read(h, target(res.json.entry[0]));
      expect(stored.json.subject.reference).toBe(`Patient/${existing.id}`);

      const missing = await transaction(h, [
        post(referral(`Patient?identifier=${sys}|nobody`, { identifier: ident(sys, 'missing') })),
      ]);
      expect(missing.status).toBeGreaterThanOrEqual(400);
      expect(missing.status).toBeLessThan(500);
      expectOutcome(missing, missing.status, 0);
      expect(await found(h, 'ServiceRequest', `identifier=${encodeURIComponent(`${sys}|missing`)}`)).toEqual([]);
    });

    describe('atomicity: an invalid entry anywhere fails the whole transaction and stores nothing', () => {
      const cases: [string, number, number, (sys: string) => fhir4.BundleEntry][] = [
        ['a POST whose resource is of the wrong type', 2, 400, () => post(patient(), undefined, { url: 'ServiceRequest' })],
        ['a PUT whose body id differs from the URL', 3, 400, () => put('Patient/one-id', { ...patient(), id: 'another-id' })],
        ['a GET of a resource that does not exist', 0, 404, () => get(`Patient/${randomUUID()}`)],
        ['an entry of an unsupported type', 1, 404, () => post({ resourceType: 'Medication' } as fhir4.Resource)],
        ['a PUT to an invalid id', 2, 400, () => put('Patient/bad id', patient())],
        ['an entry with a bad method', 1, 400, () => ({ resource: patient(), request: { method: 'PATCH', url: 'Patient' } }) as unknown as fhir4.BundleEntry],
        ['an entry without a request', 2, 400, () => ({ resource: patient() })],
        ['a POST without a resource', 3, 400, () => ({ request: { method: 'POST', url: 'Patient' } })],
      ];
      it.each(cases)('%s', async (_name, index, status, makeBad) => {
        const sys = scope();
        const doomed = await create(h, patient(undefined, { identifier: pident(sys, 'doomed') }));
        const p = urn();
        const good: fhir4.BundleEntry[] = [
          post({ ...patient(), identifier: pident(sys, 'new') }, p),
          post(referral(p, { identifier: ident(sys, 'referral') })),
          del(`Patient/${doomed.id}`),
          post(wellbeing(p, 51, { identifier: ident(sys, 'obs') })),
        ];
        const entries = [...good.slice(0, index), makeBad(sys), ...good.slice(index)];
        const res = await transaction(h, entries);
        expectOutcome(res, status, index);
        expect(await inScope(h, 'Patient', sys)).toEqual([doomed.id]);
        expect(await inScope(h, 'ServiceRequest', sys)).toEqual([]);
        expect(await inScope(h, 'Observation', sys)).toEqual([]);
        const stillThere = await read(h, `Patient/${doomed.id}`);
        expect(stillThere.status).toBe(200);
        expect(stillThere.json.meta.versionId).toBe('1');
      });
    });

    it('resources that fail validation fail the transaction with every problem, each naming its entry, and store nothing', async () => {
      const sys = scope();
      const doomed = await create(h, patient(undefined, { identifier: pident(sys, 'doomed') }));
      const p = urn();
      // Observation.subject is optional in R4 but required by SPOutcomeMeasure.
      const noSubject: fhir4.Observation = wellbeing(p, 50, { identifier: ident(sys, 'no-subject') });
      delete (noSubject as Partial<fhir4.Observation>).subject;
      const res = await transaction(h, [
        post({ ...patient(), identifier: pident(sys, 'new') }, p),
        post(referral(p, { identifier: ident(sys, 'bogus'), status: 'bogus' as fhir4.ServiceRequest['status'] })),
        del(`Patient/${doomed.id}`),
        post(referral(p, { identifier: ident(sys, 'fine') })),
        post(noSubject),
      ]);
      expectOutcome(res, 422, 1);
      const errors = (res.json as fhir4.OperationOutcome).issue.filter((i) => i.severity === 'error' || i.severity === 'fatal');
      const where = errors.map((i) => (i.expression ?? [])[0]);
      for (const expression of where) expect(expression).toMatch(/^Bundle\.entry\[(1|4)\]\.resource(\.|$)/);
      const status = errors.find((i) => (i.expression ?? [])[0] === 'Bundle.entry[1].resource.status');
      expect(status?.diagnostics).toContain('bogus');
      expect(where).toContain('Bundle.entry[4].resource.subject');
      expect(await inScope(h, 'Patient', sys)).toEqual([doomed.id]);
      expect(await inScope(h, 'ServiceRequest', sys)).toEqual([]);
      expect(await inScope(h, 'Observation', sys)).toEqual([]);
      expect((await read(h, `Patient/${doomed.id}`)).json.meta.versionId).toBe('1');
    });

    it('an unresolvable urn:uuid reference is 400 naming the entry, and stores nothing', async () => {
      const sys = scope();
      const p = urn();
      const res = await transaction(h, [
        post({ ...patient(), identifier: pident(sys, 'p') }, p),
        post(referral(p, { identifier: ident(sys, 'r'), basedOn: [{ reference: urn() }] })),
      ]);
      expectOutcome(res, 400, 1);
      expect(res.json.issue[0].diagnostics).toContain('urn:uuid');
      expect(await inScope(h, 'Patient', sys)).toEqual([]);
      expect(await inScope(h, 'ServiceRequest', sys)).toEqual([]);
    });

    it('a fullUrl used by two entries is 400', async () => {
      const sys = scope();
      const p = urn();
      const res = await transaction(h, [
        post({ ...patient(), identifier: pident(sys, 'a') }, p),
        post({ ...patient(), identifier: pident(sys, 'b') }, p),
      ]);
      expectOutcome(res, 400, 1);
      expect(await inScope(h, 'Patient', sys)).toEqual([]);
    });

    it('two entries that write the same resource fail the transaction', async () => {
      const sys = scope();
      const id = randomUUID();
      const res = await transaction(h, [
        put(`Patient/${id}`, { ...patient(), id, identifier: pident(sys, 'a') }),
        put(`Patient/${id}`, { ...patient(), id, identifier: pident(sys, 'b') }),
      ]);
      expectOutcome(res, 400, 1);
      expect((await read(h, `Patient/${id}`)).status).toBe(404);
      expect(await inScope(h, 'Patient', sys)).toEqual([]);
    });

    it('conditional create (ifNoneExist) answers 200 with the existing resource and references resolve to it', async () => {
      const sys = scope();
      const existing = await create(h, patient(undefined, { identifier: pident(sys, 'known') }));
      const send = () => {
        const [known, fresh] = [urn(), urn()];
        return transaction(h, [
          post({ ...patient(), identifier: pident(sys, 'known'), gender: 'male' }, known, { ifNoneExist: `identifier=${sys}|known` }),
          post(referral(known, { identifier: ident(sys, `for-known-${randomUUID()}`) })),
          post({ ...patient(), identifier: pident(sys, 'fresh') }, fresh, { ifNoneExist: `identifier=${sys}|fresh` }),
          post(referral(fresh, { identifier: ident(sys, `for-fresh-${randomUUID()}`) })),
        ]);
      };
      const first = await send();
      expect(first.status).toBe(200);
      const e = first.json.entry as fhir4.BundleEntry[];
      expect(e[0].response?.status).toMatch(/^200\b/);
      expect(target(e[0])).toBe(`Patient/${existing.id}`);
      expect(e[1].response?.status).toMatch(/^201\b/);
      expect(e[2].response?.status).toMatch(/^201\b/);
      const freshId = idOf(e[2]);
      expect(freshId).not.toBe(existing.id);
      expect((await read(h, target(e[1]))).json.subject.reference).toBe(`Patient/${existing.id}`);
      expect((await read(h, target(e[3]))).json.subject.reference).toBe(`Patient/${freshId}`);
      // The existing patient is untouched.
      const kept = await read(h, `Patient/${existing.id}`);
      expect(kept.json.gender).toBe('female');
      expect(kept.json.meta.versionId).toBe('1');

      // The same Bundle again creates no patient: both now exist.
      const second = await send();
      expect(second.status).toBe(200);
      const e2 = second.json.entry as fhir4.BundleEntry[];
      expect(e2[0].response?.status).toMatch(/^200\b/);
      expect(e2[2].response?.status).toMatch(/^200\b/);
      expect(target(e2[2])).toBe(`Patient/${freshId}`);
      expect((await read(h, target(e2[3]))).json.subject.reference).toBe(`Patient/${freshId}`);
      expect(await inScope(h, 'Patient', sys)).toEqual([existing.id, freshId].sort());
      expect(await inScope(h, 'ServiceRequest', sys)).toHaveLength(4);
    });

    it('conditional create matching several resources fails the transaction', async () => {
      const sys = scope();
      await create(h, patient(undefined, { identifier: pident(sys, 'twin') }));
      await create(h, patient(undefined, { identifier: pident(sys, 'twin') }));
      const res = await transaction(h, [
        post(referral('Patient/x', { identifier: ident(sys, 'r') })),
        post({ ...patient(), identifier: pident(sys, 'twin') }, urn(), { ifNoneExist: `identifier=${sys}|twin` }),
      ]);
      expectOutcome(res, 412, 1);
      expect(await inScope(h, 'ServiceRequest', sys)).toEqual([]);
    });

    it('conditional update PUT Type?identifier= updates the match, or creates when there is none', async () => {
      const sys = scope();
      const existing = await create(h, patient(undefined, { identifier: pident(sys, 'known') }));
      const known = urn();
      const res = await transaction(h, [
        { fullUrl: known, ...put(`Patient?identifier=${sys}|known`, { ...patient(), identifier: pident(sys, 'known'), gender: 'other' }) },
        put(`Patient?identifier=${sys}|fresh`, { ...patient(), identifier: pident(sys, 'fresh') }),
        post(referral(known, { identifier: ident(sys, 'r') })),
      ]);
      expect(res.status).toBe(200);
      const e = res.json.entry as fhir4.BundleEntry[];
      expect(e[0].response?.status).toMatch(/^200\b/);
      expect(target(e[0])).toBe(`Patient/${existing.id}`);
      expect(e[0].response?.etag).toBe('W/"2"');
      expect(e[1].response?.status).toMatch(/^201\b/);
      const updated = await read(h, `Patient/${existing.id}`);
      expect(updated.json.gender).toBe('other');
      expect(updated.json.meta.versionId).toBe('2');
      expect((await read(h, target(e[2]))).json.subject.reference).toBe(`Patient/${existing.id}`);
      expect(await inScope(h, 'Patient', sys)).toEqual([existing.id, idOf(e[1])].sort());
    });

    it('conditional update whose body id is not the matching resource is 400', async () => {
      const sys = scope();
      const existing = await create(h, patient(undefined, { identifier: pident(sys, 'known') }));
      const res = await transaction(h, [
        put(`Patient?identifier=${sys}|known`, { ...patient(), id: 'someone-else', identifier: pident(sys, 'known'), gender: 'male' }),
      ]);
      expectOutcome(res, 400, 0);
      expect((await read(h, `Patient/${existing.id}`)).json.meta.versionId).toBe('1');
      expect((await read(h, 'Patient/someone-else')).status).toBe(404);
    });

    it('DELETE entries delete by id and by criteria', async () => {
      const sys = scope();
      const a = await create(h, patient(undefined, { identifier: pident(sys, 'a') }));
      const b = await create(h, patient(undefined, { identifier: pident(sys, 'b') }));
      const c = await create(h, patient(undefined, { identifier: pident(sys, 'c') }));
      const res = await transaction(h, [del(`Patient/${a.id}`), del(`Patient?identifier=${sys}|b`)]);
      expect(res.status).toBe(200);
      for (const e of res.json.entry as fhir4.BundleEntry[]) expect(e.response?.status).toMatch(/^(200|204)\b/);
      expect((await read(h, `Patient/${a.id}`)).status).toBe(410);
      expect((await read(h, `Patient/${b.id}`)).status).toBe(410);
      expect(await inScope(h, 'Patient', sys)).toEqual([c.id]);
    });

    it('GET entries read and search, and see the writes of the same transaction', async () => {
      const sys = scope();
      const other = await create(h, patient(undefined, { identifier: pident(sys, 'other') }));
      const chosen = `chosen-${randomUUID()}`;
      const res = await transaction(h, [
        get(`Patient/${chosen}`),
        get(`Patient?identifier=${sys}|`),
        get(`Patient/${other.id}`),
        put(`Patient/${chosen}`, { ...patient(), id: chosen, identifier: pident(sys, 'chosen') }),
      ]);
      expect(res.status).toBe(200);
      const e = res.json.entry as fhir4.BundleEntry[];
      expect(e[0].response?.status).toMatch(/^200\b/);
      expect(e[0].resource?.id).toBe(chosen);
      const searchset = e[1].resource as fhir4.Bundle;
      expect(searchset.type).toBe('searchset');
      expect((searchset.entry ?? []).map((x) => x.resource?.id).sort()).toEqual([chosen, other.id].sort());
      expect(e[2].resource?.id).toBe(other.id);
      expect(e[3].response?.status).toMatch(/^201\b/);
    });

    it('processes DELETE, then POST, then PUT, then GET, whatever the order in the Bundle', async () => {
      const sys = scope();
      const old = await create(h, patient(undefined, { identifier: pident(sys, 'x') }));
      const chosen = `chosen-${randomUUID()}`;
      const res = await transaction(h, [
        get(`Patient?identifier=${sys}|x`),
        put(`Patient/${chosen}`, { ...patient(), id: chosen, identifier: pident(sys, 'chosen') }),
        // If this ran before the DELETE, the DELETE would match two patients and fail.
        post({ ...patient(), identifier: pident(sys, 'x') }),
        del(`Patient?identifier=${sys}|x`),
        get(`Patient/${chosen}`),
      ]);
      expect(res.status).toBe(200);
      const e = res.json.entry as fhir4.BundleEntry[];
      expect(e).toHaveLength(5);
      expect(e[3].response?.status).toMatch(/^(200|204)\b/);
      expect((await read(h, `Patient/${old.id}`)).status).toBe(410);
      const created = idOf(e[2]);
      const searchset = e[0].resource as fhir4.Bundle;
      expect((searchset.entry ?? []).map((x) => x.resource?.id)).toEqual([created]);
      expect(e[4].resource?.id).toBe(chosen);
      expect(await inScope(h, 'Patient', sys)).toEqual([created, chosen].sort());
    });

    it('If-Match on an entry: the current version succeeds, a stale one fails the whole transaction with 412', async () => {
      const sys = scope();
      const p = await create(h, patient(undefined, { identifier: pident(sys, 'p') }));
      const v2 = await h.request('PUT', `/Patient/${p.id}`, { ...p, gender: 'male' });
      expect(v2.json.meta.versionId).toBe('2');
      const stale = await transaction(h, [
        post(referral(`Patient/${p.id}`, { identifier: ident(sys, 'r') })),
        put(`Patient/${p.id}`, { ...p, gender: 'other' }, { ifMatch: 'W/"1"' }),
      ]);
      expectOutcome(stale, 412, 1);
      expect(await inScope(h, 'ServiceRequest', sys)).toEqual([]);
      const unchanged = await read(h, `Patient/${p.id}`);
      expect(unchanged.json.meta.versionId).toBe('2');
      expect(unchanged.json.gender).toBe('male');

      const current = await transaction(h, [
        post(referral(`Patient/${p.id}`, { identifier: ident(sys, 'r') })),
        put(`Patient/${p.id}`, { ...p, gender: 'other' }, { ifMatch: 'W/"2"' }),
      ]);
      expect(current.status).toBe(200);
      expect(current.json.entry[1].response.etag).toBe('W/"3"');
      expect((await read(h, `Patient/${p.id}`)).json.gender).toBe('other');
      expect(await inScope(h, 'ServiceRequest', sys)).toHaveLength(1);

      const staleDelete = await transaction(h, [{ request: { method: 'DELETE', url: `Patient/${p.id}`, ifMatch: 'W/"2"' } }]);
      expectOutcome(staleDelete, 412, 0);
      expect((await read(h, `Patient/${p.id}`)).status).toBe(200);
    });

    it('an empty transaction is an empty transaction-response', async () => {
      const res = await transaction(h, []);
      expect(res.status).toBe(200);
      expect(res.json.type).toBe('transaction-response');
      expect(res.json.entry ?? []).toEqual([]);
    });
  });

  describe('batch', () => {
    it('processes each entry on its own: per-entry statuses, and the good ones are stored', async () => {
      const sys = scope();
      const existing = await create(h, patient(undefined, { identifier: pident(sys, 'existing') }));
      const res = await h.request(
        'POST',
        '/',
        bundleOf('batch', [
          post({ ...patient(), identifier: pident(sys, 'good') }),
          get(`Patient/${randomUUID()}`),
          post(patient(undefined, { identifier: pident(sys, 'wrong-type') }), undefined, { url: 'ServiceRequest' }),
          post(referral(`Patient/${existing.id}`, { identifier: ident(sys, 'good-referral') })),
          put(`Patient/${existing.id}`, { ...existing, id: 'mismatch' }),
          get(`Medication/${randomUUID()}`),
          get(`Patient/${existing.id}`),
          put(`Patient/${existing.id}`, { ...existing, gender: 'male' }, { ifMatch: 'W/"7"' }),
          del(`Patient/${existing.id}`),
          { request: { method: 'PATCH', url: `Patient/${existing.id}` } } as unknown as fhir4.BundleEntry,
          { request: { method: 'POST', url: 'Patient' } },
          post({ ...patient(), identifier: pident(sys, 'last') }),
        ]),
      );
      expect(res.status).toBe(200);
      const out = res.json as fhir4.Bundle;
      expect(out.type).toBe('batch-response');
      const statuses = (out.entry ?? []).map((e) => Number(e.response?.status.slice(0, 3)));
      expect(statuses).toEqual([201, 404, 400, 201, 400, 404, 200, 412, 200, 400, 400, 201]);
      for (const i of [1, 2, 4, 5, 7, 9, 10]) {
        const outcome = out.entry?.[i].response?.outcome as fhir4.OperationOutcome;
        expect(outcome.resourceType).toBe('OperationOutcome');
        expect(outcome.issue[0].severity).toBe('error');
      }
      expect(out.entry?.[6].resource?.id).toBe(existing.id);
      const goodPatient = idOf(out.entry?.[0] as fhir4.BundleEntry);
      expect((await read(h, `Patient/${goodPatient}`)).status).toBe(200);
      expect((out.entry?.[10].response?.outcome as fhir4.OperationOutcome).issue[0].diagnostics).toContain('Bundle.entry[10]');
      expect(await inScope(h, 'Patient', sys)).toEqual([goodPatient, idOf(out.entry?.[11] as fhir4.BundleEntry)].sort());
      expect(await inScope(h, 'ServiceRequest', sys)).toEqual([idOf(out.entry?.[3] as fhir4.BundleEntry)]);
      expect((await read(h, `Patient/${existing.id}`)).status).toBe(410);
    });

    it('an entry that fails validation gets its own 422 with the problem, and the others are stored', async () => {
      const sys = scope();
      const existing = await create(h, patient(undefined, { identifier: pident(sys, 'existing') }));
      const subject = `Patient/${existing.id}`;
      const res = await h.request(
        'POST',
        '/',
        bundleOf('batch', [
          post({ ...patient(), identifier: pident(sys, 'good') }),
          post(referral(subject, { identifier: ident(sys, 'bogus'), status: 'bogus' as fhir4.ServiceRequest['status'] })),
          post(referral(subject, { identifier: ident(sys, 'good-referral') })),
          // An update that drops the NHS number SPPatient requires.
          put(subject, { ...existing, identifier: ident(sys, 'existing'), gender: 'male' }),
          post(wellbeing(subject, 51, { identifier: ident(sys, 'good-obs') })),
          // WEMWBS runs from 14 to 70 (invariant sp-om-wemwbs).
          post(wellbeing(subject, 99, { identifier: ident(sys, 'out-of-range') })),
        ]),
      );
      expect(res.status).toBe(200);
      const out = res.json as fhir4.Bundle;
      expect(out.type).toBe('batch-response');
      const statuses = (out.entry ?? []).map((e) => Number(e.response?.status.slice(0, 3)));
      expect(statuses).toEqual([201, 422, 201, 422, 201, 422]);
      const errorsOf = (i: number) => {
        const outcome = out.entry?.[i].response?.outcome as fhir4.OperationOutcome;
        expect(outcome.resourceType).toBe('OperationOutcome');
        const errors = outcome.issue.filter((issue) => issue.severity === 'error');
        expect(errors.length).toBeGreaterThan(0);
        return errors;
      };
      // Each outcome is about its own entry's resource (named from the resource or from the entry).
      const at = (i: number, type: string, rest: string) => new RegExp(`^(${type}|Bundle\\.entry\\[${i}\\]\\.resource)${rest}$`);
      const bogus = errorsOf(1);
      expect(bogus.map((i) => i.expression?.[0])).toEqual([expect.stringMatching(at(1, 'ServiceRequest', '\\.status'))]);
      expect(bogus[0].diagnostics).toContain('bogus');
      expect(errorsOf(3).map((i) => i.expression?.[0])).toContainEqual(expect.stringMatching(at(3, 'Patient', '\\.identifier')));
      expect(errorsOf(5).map((i) => i.diagnostics).join(' ')).toContain('sp-om-wemwbs');
      expect(errorsOf(5).map((i) => i.expression?.[0])).toEqual([expect.stringMatching(at(5, 'Observation', ''))]);
      // The good entries are stored; the refused ones are not, and the refused update left the patient as it was.
      expect(await inScope(h, 'Patient', sys)).toEqual([existing.id, idOf(out.entry?.[0] as fhir4.BundleEntry)].sort());
      expect(await inScope(h, 'ServiceRequest', sys)).toEqual([idOf(out.entry?.[2] as fhir4.BundleEntry)]);
      expect(await inScope(h, 'Observation', sys)).toEqual([idOf(out.entry?.[4] as fhir4.BundleEntry)]);
      const kept = await read(h, subject);
      expect(kept.json.meta.versionId).toBe('1');
      expect(kept.json.gender).toBe('female');
    });
  });

  describe('what POST / refuses', () => {
    it.each(['collection', 'searchset', 'document', 'transaction-response', undefined])(
      'a Bundle of type %s is 400',
      async (type) => {
        const sys = scope();
        const res = await h.request('POST', '/', {
          resourceType: 'Bundle',
          type,
          entry: [post({ ...patient(), identifier: pident(sys, 'p') })],
        });
        expectOutcome(res, 400);
        expect(res.json.issue[0].expression).toEqual(['Bundle.type']);
        expect(await inScope(h, 'Patient', sys)).toEqual([]);
      },
    );

    it('a body that is not a Bundle is 400', async () => {
      const sys = scope();
      expectOutcome(await h.request('POST', '/', { ...patient(), identifier: pident(sys, 'p') }), 400);
      expectOutcome(await h.request('POST', '/', [bundleOf('transaction', [])]), 400);
      expectOutcome(await h.request('POST', '/', '"transaction"'), 400);
      expectOutcome(await h.request('POST', '/', { resourceType: 'Bundle', type: 'transaction', entry: {} }), 400);
      expect(await inScope(h, 'Patient', sys)).toEqual([]);
    });
  });
});
