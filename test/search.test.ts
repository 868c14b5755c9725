import { randomUUID } from 'node:crypto';
import { describeEachStore, type Harness, type Reply } from './support/harness';
import {
  carePlan,
  ident,
  NHS_NUMBER_SYSTEM,
  patient,
  pident,
  randomNhsNumber,
  referral,
  REFERRAL_CODE,
  scope,
  SNOMED,
  task,
  wellbeing,
  withNhsNumber,
} from './fixtures';

/**
 * FHIR search (http://hl7.org/fhir/R4/search.html) through the HTTP API. Every test works in its own
 * identifier system, so the tests share one store without seeing each other's resources.
 */

type Params = [string, string][];

const OTHER_SYSTEM = 'http://example.org/other-codes';
/** Signposting to social prescribing service: another code of the sp-referral value set. */
const SIGNPOSTING_CODE = '1084281000000109';
const UKCORE_SERVICE_REQUEST = 'https://fhir.hl7.org.uk/StructureDefinition/UKCore-ServiceRequest';




const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function create<T extends fhir4.Resource>(h: Harness, resource: T): Promise<T & { id: string }> {
  const res = await h.request('POST', `/${resource.resourceType}`, resource);
  if (res.status !== 201) throw new Error(`create ${resource.resourceType} -> ${res.status} ${res.body}`);
  return res.json;
}

async function update<T extends fhir4.Resource>(h: Harness, resource: T): Promise<T & { id: string }> {
  const res = await h.request('PUT', `/${resource.resourceType}/${resource.id}`, resource);
  if (res.status !== 200) throw new Error(`update ${resource.resourceType}/${resource.id} -> ${res.status} ${res.body}`);
  return res.json;
}

async function remove(h: Harness, type: string, id: string): Promise<void> {
  const res = await h.request('DELETE', `/${type}/${id}`);
  if (res.status !== 200 && res.status !== 204) throw new Error(`delete ${type}/${id} -> ${res.status} ${res.body}`);
}

function query(params: Params): string {
  return new URLSearchParams(params).toString();
}

function search(h: Harness, type: string, params: Params, headers?: Record<string, string>): Promise<Reply> {
  return h.request('GET', `/${type}?${query(params)}`, undefined, headers);
}

async function bundle(h: Harness, type: string, params: Params, headers?: Record<string, string>): Promise<fhir4.Bundle> {
  const res = await search(h, type, params, headers);
  if (res.status !== 200) throw new Error(`GET /${type}?${query(params)} -> ${res.status} ${res.body}`);
  expect(res.json.resourceType).toBe('Bundle');
  expect(res.json.type).toBe('searchset');
  return res.json;
}

/** Ids of the match entries, in Bundle order. */
function matchIds(b: fhir4.Bundle): string[] {
  return (b.entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => e.resource?.id as string);
}

async function ids(h: Harness, type: string, params: Params): Promise<string[]> {
  return matchIds(await bundle(h, type, params));
}

async function idSet(h: Harness, type: string, params: Params): Promise<string[]> {
  return (await ids(h, type, params)).sort();
}

function sorted(values: (string | undefined)[]): string[] {
  return (values as string[]).slice().sort();
}

function link(b: fhir4.Bundle, relation: string): string | undefined {
  return b.link?.find((l) => l.relation === relation)?.url;
}

/** Follows a Bundle link as a client would: the same server, the link's path and query. */
async function follow(h: Harness, url: string): Promise<fhir4.Bundle> {
  const u = new URL(url);
  const res = await h.request('GET', `${u.pathname}${u.search}`);
  if (res.status !== 200) throw new Error(`GET ${url} -> ${res.status} ${res.body}`);
  return res.json;
}

function expectOutcome(res: Reply, status: number, text?: string): void {
  expect(res.status).toBe(status);
  expect(res.json.resourceType).toBe('OperationOutcome');
  expect(res.json.issue[0].severity).toBe('error');
  if (text) expect(res.json.issue[0].diagnostics).toContain(text);
}

describeEachStore('search', (h) => {
  describe('_id and _lastUpdated', () => {
    it('_id matches exactly one id, any of a comma list, and nothing for an unknown id', async () => {
      const sys = scope();
      const a = await create(h, patient(undefined, { identifier: pident(sys, 'a') }));
      const b = await create(h, patient(undefined, { identifier: pident(sys, 'b') }));
      expect(await ids(h, 'Patient', [['_id', a.id]])).toEqual([a.id]);
      expect(await idSet(h, 'Patient', [['_id', `${a.id},${b.id}`]])).toEqual(sorted([a.id, b.id]));
      expect(await ids(h, 'Patient', [['_id', 'no-such-patient']])).toEqual([]);
      expect(await ids(h, 'Patient', [['_id', a.id.slice(0, 8)]])).toEqual([]);
      // An id of another type does not match.
      expect(await ids(h, 'ServiceRequest', [['_id', a.id]])).toEqual([]);
    });

    it('_lastUpdated compares with every prefix, at the precision given', async () => {
      const sys = scope();
      const a = await create(h, patient(undefined, { identifier: pident(sys, 'a') }));
      await sleep(5);
      const b = await create(h, patient(undefined, { identifier: pident(sys, 'b') }));
      const ta = a.meta?.lastUpdated as string;
      const tb = b.meta?.lastUpdated as string;
      expect(Date.parse(tb)).toBeGreaterThan(Date.parse(ta));
      const find = (value: string) => idSet(h, 'Patient', [['identifier', `${sys}|`], ['_lastUpdated', value]]);
      expect(await find(ta)).toEqual([a.id]);
      expect(await find(`eq${tb}`)).toEqual([b.id]);
      expect(await find(`ne${ta}`)).toEqual([b.id]);
      expect(await find(`gt${ta}`)).toEqual([b.id]);
      expect(await find(`ge${ta}`)).toEqual(sorted([a.id, b.id]));
      expect(await find(`ge${tb}`)).toEqual([b.id]);
      expect(await find(`lt${tb}`)).toEqual([a.id]);
      expect(await find(`le${tb}`)).toEqual(sorted([a.id, b.id]));
      expect(await find(`le${ta}`)).toEqual([a.id]);
      expect(await find(`sa${ta}`)).toEqual([b.id]);
      expect(await find(`eb${tb}`)).toEqual([a.id]);
      expect(await find('ge2000-01-01')).toEqual(sorted([a.id, b.id]));
      expect(await find('lt2000')).toEqual([]);
      expect(await find(`gt${tb}`)).toEqual([]);
      // The day both were written contains both.
      expect(await find(ta.slice(0, 10))).toEqual(ta.slice(0, 10) === tb.slice(0, 10) ? sorted([a.id, b.id]) : [a.id]);
    });

    it('_lastUpdated changes on update, so the old timestamp no longer matches', async () => {
      const sys = scope();
      const a = await create(h, patient(undefined, { identifier: pident(sys, 'a') }));
      await sleep(5);
      const a2 = await update(h, { ...a, gender: 'male' });
      const find = (value: string) => ids(h, 'Patient', [['identifier', `${sys}|`], ['_lastUpdated', value]]);
      expect(await find(a.meta?.lastUpdated as string)).toEqual([]);
      expect(await find(a2.meta?.lastUpdated as string)).toEqual([a.id]);
    });
  });

  describe('token parameters', () => {
    it('identifier: system|value, |value (no system), system| (any value) and value (any system)', async () => {
      const sys = scope();
      const value = randomUUID();
      const withSystem = await create(h, patient(undefined, { identifier: withNhsNumber([{ system: sys, value }]) }));
      const noSystem = await create(h, patient(undefined, { identifier: withNhsNumber([{ value }]) }));
      const otherSystem = await create(h, patient(undefined, { identifier: withNhsNumber([{ system: OTHER_SYSTEM, value }]) }));
      const sameSystem = await create(h, patient(undefined, { identifier: withNhsNumber([{ system: sys, value: 'other' }]) }));
      expect(await ids(h, 'Patient', [['identifier', `${sys}|${value}`]])).toEqual([withSystem.id]);
      expect(await ids(h, 'Patient', [['identifier', `|${value}`]])).toEqual([noSystem.id]);
      expect(await idSet(h, 'Patient', [['identifier', `${sys}|`]])).toEqual(sorted([withSystem.id, sameSystem.id]));
      expect(await idSet(h, 'Patient', [['identifier', value]])).toEqual(sorted([withSystem.id, noSystem.id, otherSystem.id]));
      expect(await ids(h, 'Patient', [['identifier', `${OTHER_SYSTEM}|other`]])).toEqual([]);
      // Token codes are matched exactly: no prefix matching.
      expect(await ids(h, 'Patient', [['identifier', `${sys}|${value.slice(0, 10)}`]])).toEqual([]);
    });

    it('a backslash escapes | and , inside a token value', async () => {
      const sys = scope();
      const barred = await create(h, patient(undefined, { identifier: withNhsNumber([{ system: sys, value: 'a|b' }]) }));
      const commas = await create(h, patient(undefined, { identifier: withNhsNumber([{ system: sys, value: 'c,d' }]) }));
      expect(await ids(h, 'Patient', [['identifier', `${sys}|a\\|b`]])).toEqual([barred.id]);
      expect(await ids(h, 'Patient', [['identifier', 'a\\|b']])).toEqual([barred.id]);
      expect(await ids(h, 'Patient', [['identifier', `${sys}|c\\,d`]])).toEqual([commas.id]);
      expect(await idSet(h, 'Patient', [['identifier', `${sys}|a\\|b,${sys}|c\\,d`]])).toEqual(sorted([barred.id, commas.id]));
      expect(await ids(h, 'Patient', [['identifier', `${sys}|a`]])).toEqual([]);
    });

    it('an NHS number finds its patient', async () => {
      // A random number, so that no other patient in the store has it; it must pass Modulus 11 to be stored.
      const nhs = randomNhsNumber();
      const p = await create(h, patient(nhs));
      expect(await ids(h, 'Patient', [['identifier', `${NHS_NUMBER_SYSTEM}|${nhs}`]])).toEqual([p.id]);
    });

    it('status, and code and category with and without a system', async () => {
      const sys = scope();
      const pat = await create(h, patient());
      const active = await create(h, referral(`Patient/${pat.id}`, { identifier: ident(sys, 'a') }));
      const completed = await create(h, referral(`Patient/${pat.id}`, { identifier: ident(sys, 'c'), status: 'completed' }));
      // SPReferral.code has a required binding (SNOMED CT codes only), so the referral coded in another system
      // carries a second coding from the value set: Signposting to social prescribing service.
      const otherCode = await create(
        h,
        referral(`Patient/${pat.id}`, {
          identifier: ident(sys, 'o'),
          code: {
            coding: [
              { system: OTHER_SYSTEM, code: REFERRAL_CODE },
              { system: SNOMED, code: SIGNPOSTING_CODE, display: 'Signposting to social prescribing service' },
            ],
          },
          category: [{ coding: [{ system: SNOMED, code: '3457005', display: 'Patient referral' }] }],
        }),
      );
      const find = (...params: Params) => idSet(h, 'ServiceRequest', [['identifier', `${sys}|`], ...params]);
      expect(await find(['status', 'active'])).toEqual(sorted([active.id, otherCode.id]));
      expect(await find(['status', 'completed'])).toEqual([completed.id]);
      expect(await find(['status', 'revoked'])).toEqual([]);
      expect(await find(['code', `${SNOMED}|${REFERRAL_CODE}`])).toEqual(sorted([active.id, completed.id]));
      expect(await find(['code', `${OTHER_SYSTEM}|${REFERRAL_CODE}`])).toEqual([otherCode.id]);
      expect(await find(['code', REFERRAL_CODE])).toEqual(sorted([active.id, completed.id, otherCode.id]));
      // system| matches any code in that system, and only in it.
      expect(await find(['code', `${SNOMED}|`])).toEqual(sorted([active.id, completed.id, otherCode.id]));
      expect(await find(['code', `${OTHER_SYSTEM}|`])).toEqual([otherCode.id]);
      // The system and the code must be those of one coding, not of two.
      expect(await find(['code', `${SNOMED}|${SIGNPOSTING_CODE}`])).toEqual([otherCode.id]);
      expect(await find(['code', `${OTHER_SYSTEM}|${SIGNPOSTING_CODE}`])).toEqual([]);
      expect(await find(['code', `|${REFERRAL_CODE}`])).toEqual([]);
      expect(await find(['category', `${SNOMED}|306206005`])).toEqual(sorted([active.id, completed.id]));
      expect(await find(['category', '3457005'])).toEqual([otherCode.id]);
      expect(await find(['category', `${OTHER_SYSTEM}|306206005`])).toEqual([]);
    });

    it(':not excludes resources with the value and keeps those without the element', async () => {
      const sys = scope();
      const pat = await create(h, patient());
      const active = await create(h, referral(`Patient/${pat.id}`, { identifier: ident(sys, 'a') }));
      const completed = await create(h, referral(`Patient/${pat.id}`, { identifier: ident(sys, 'c'), status: 'completed' }));
      const uncategorised = await create(h, referral(`Patient/${pat.id}`, { identifier: ident(sys, 'u'), category: undefined }));
      const find = (...params: Params) => idSet(h, 'ServiceRequest', [['identifier', `${sys}|`], ...params]);
      expect(await find(['status:not', 'active'])).toEqual([completed.id]);
      expect(await find(['status:not', 'active,completed'])).toEqual([]);
      expect(await find(['status:not', 'revoked'])).toEqual(sorted([active.id, completed.id, uncategorised.id]));
      expect(await find(['category:not', `${SNOMED}|306206005`])).toEqual([uncategorised.id]);
    });

    it('a repeated parameter must match every value (AND); a comma list any (OR)', async () => {
      const sys = scope();
      const pat = await create(h, patient());
      const twoCategories = await create(
        h,
        referral(`Patient/${pat.id}`, {
          identifier: ident(sys, 'both'),
          category: [
            { coding: [{ system: SNOMED, code: '306206005' }] },
            { coding: [{ system: SNOMED, code: '3457005' }] },
          ],
        }),
      );
      const oneCategory = await create(h, referral(`Patient/${pat.id}`, { identifier: ident(sys, 'one') }));
      const draft = await create(h, referral(`Patient/${pat.id}`, { identifier: ident(sys, 'draft'), status: 'draft' }));
      const find = (...params: Params) => idSet(h, 'ServiceRequest', [['identifier', `${sys}|`], ...params]);
      expect(await find(['category', '306206005'], ['category', '3457005'])).toEqual([twoCategories.id]);
      expect(await find(['category', '306206005,3457005'])).toEqual(sorted([twoCategories.id, oneCategory.id, draft.id]));
      expect(await find(['status', 'active,draft'])).toEqual(sorted([twoCategories.id, oneCategory.id, draft.id]));
      expect(await find(['status', 'active'], ['status', 'draft'])).toEqual([]);
      expect(await find(['status', 'draft'], ['category', '306206005'])).toEqual([draft.id]);
      expect(await idSet(h, 'ServiceRequest', [['identifier', `${sys}|one,${sys}|draft`]])).toEqual(sorted([oneCategory.id, draft.id]));
    });
  });

  describe('reference parameters', () => {
    it('patient and subject take Patient/id or a bare id', async () => {
      const sys = scope();
      const p = await create(h, patient());
      const q = await create(h, patient());
      const forP = await create(h, referral(`Patient/${p.id}`, { identifier: ident(sys, 'p') }));
      const forQ = await create(h, referral(`Patient/${q.id}`, { identifier: ident(sys, 'q') }));
      // SPReferral (the default profile) lets a referral be about a Patient only; UK Core's ServiceRequest, which it
      // derives from, also allows a Group, so the referral about a group claims UK Core.
      const groupReferral = referral(`Group/${p.id}`, { identifier: ident(sys, 'g') });
      expect((await h.request('POST', '/ServiceRequest', groupReferral)).status).toBe(422);
      const forGroup = await create(h, { ...groupReferral, meta: { profile: [UKCORE_SERVICE_REQUEST] } });
      const find = (...params: Params) => idSet(h, 'ServiceRequest', [['identifier', `${sys}|`], ...params]);
      expect(await find(['patient', `Patient/${p.id}`])).toEqual([forP.id]);
      expect(await find(['patient', p.id])).toEqual([forP.id]);
      expect(await find(['subject', `Patient/${p.id}`])).toEqual([forP.id]);
      expect(await find(['subject:Patient', p.id])).toEqual([forP.id]);
      expect(await find(['subject', `Group/${p.id}`])).toEqual([forGroup.id]);
      // A bare id on subject, which may point at several types, matches any of them.
      expect(await find(['subject', p.id])).toEqual(sorted([forP.id, forGroup.id]));
      expect(await find(['patient', `${p.id},${q.id}`])).toEqual(sorted([forP.id, forQ.id]));
      expect(await find(['patient', 'no-such-patient'])).toEqual([]);
      expectOutcome(await search(h, 'ServiceRequest', [['patient', `Practitioner/${p.id}`]]), 400);
      expectOutcome(await search(h, 'ServiceRequest', [['patient', 'not a reference']]), 400);
    });

    it('Observation and CarePlan are found by patient and subject too', async () => {
      const p = await create(h, patient());
      const sr = await create(h, referral(`Patient/${p.id}`));
      // R4 CarePlan.basedOn names only CarePlans (the referral goes in the R5 basedOn extension): a review plan
      // based on the first one.
      const plan = await create(h, carePlan(`Patient/${p.id}`, `ServiceRequest/${sr.id}`));
      const review = await create(
        h,
        carePlan(`Patient/${p.id}`, `ServiceRequest/${sr.id}`, { basedOn: [{ reference: `CarePlan/${plan.id}` }] }),
      );
      const obs = await create(h, wellbeing(`Patient/${p.id}`, 52, { basedOn: [{ reference: `CarePlan/${plan.id}` }] }));
      expect(await ids(h, 'Observation', [['patient', p.id]])).toEqual([obs.id]);
      expect(await ids(h, 'Observation', [['subject', `Patient/${p.id}`]])).toEqual([obs.id]);
      expect(await idSet(h, 'CarePlan', [['patient', `Patient/${p.id}`]])).toEqual(sorted([plan.id, review.id]));
      expect(await idSet(h, 'CarePlan', [['subject', p.id]])).toEqual(sorted([plan.id, review.id]));
      expect(await ids(h, 'CarePlan', [['based-on', `CarePlan/${plan.id}`]])).toEqual([review.id]);
      expect(await ids(h, 'CarePlan', [['based-on', plan.id]])).toEqual([review.id]);
      expect(await ids(h, 'CarePlan', [['based-on', `CarePlan/${review.id}`]])).toEqual([]);
      expect(await ids(h, 'Observation', [['based-on', `CarePlan/${plan.id}`]])).toEqual([obs.id]);
      expect(await ids(h, 'Observation', [['based-on', plan.id]])).toEqual([obs.id]);
    });

    it('requester, performer and based-on', async () => {
      const sys = scope();
      const gp = `gp-${randomUUID()}`;
      const org = `org-${randomUUID()}`;
      const pat = await create(h, patient());
      const first = await create(
        h,
        referral(`Patient/${pat.id}`, {
          identifier: ident(sys, '1'),
          requester: { reference: `Practitioner/${gp}` },
          performer: [{ reference: 'Practitioner/splw-1' }, { reference: `Organization/${org}` }],
        }),
      );
      const second = await create(
        h,
        referral(`Patient/${pat.id}`, {
          identifier: ident(sys, '2'),
          requester: { reference: `PractitionerRole/${gp}` },
          basedOn: [{ reference: `ServiceRequest/${first.id}` }],
        }),
      );
      const find = (...params: Params) => idSet(h, 'ServiceRequest', [['identifier', `${sys}|`], ...params]);
      expect(await find(['requester', `Practitioner/${gp}`])).toEqual([first.id]);
      expect(await find(['requester', `PractitionerRole/${gp}`])).toEqual([second.id]);
      expect(await find(['requester', gp])).toEqual(sorted([first.id, second.id]));
      expect(await find(['performer', `Organization/${org}`])).toEqual([first.id]);
      expect(await find(['performer', `Practitioner/${org}`])).toEqual([]);
      expect(await find(['performer', 'Practitioner/splw-1'])).toEqual(sorted([first.id, second.id]));
      expect(await find(['based-on', `ServiceRequest/${first.id}`])).toEqual([second.id]);
      expect(await find(['based-on', `ServiceRequest/${second.id}`])).toEqual([]);
    });

    it(':identifier matches a logical reference by business identifier', async () => {
      const sys = scope();
      const nhs = randomNhsNumber();
      const logical = await create(h, {
        ...referral('Patient/unused'),
        identifier: ident(sys, 'logical'),
        subject: { type: 'Patient', identifier: { system: NHS_NUMBER_SYSTEM, value: nhs } },
      });
      await create(h, referral('Patient/other', { identifier: ident(sys, 'literal') }));
      const find = (...params: Params) => idSet(h, 'ServiceRequest', [['identifier', `${sys}|`], ...params]);
      expect(await find(['subject:identifier', `${NHS_NUMBER_SYSTEM}|${nhs}`])).toEqual([logical.id]);
      expect(await find(['patient:identifier', `${NHS_NUMBER_SYSTEM}|${nhs}`])).toEqual([logical.id]);
      expect(await find(['subject:identifier', nhs])).toEqual([logical.id]);
      expect(await find(['subject:identifier', `${OTHER_SYSTEM}|${nhs}`])).toEqual([]);
      // The identifier is not a literal reference, but the subject is there all the same.
      expect(await find(['subject', nhs])).toEqual([]);
      expect(await find(['subject:missing', 'true'])).toEqual([]);
      expect(await find(['subject:missing', 'false'])).toHaveLength(2);
      expect(await find(['subject:missing', 'false'])).toContain(logical.id);
    });
  });

  describe('date parameters', () => {
    async function referrals(sys: string) {
      const pat = await create(h, patient());
      const make = (value: string, authoredOn: string) =>
        create(h, referral(`Patient/${pat.id}`, { identifier: ident(sys, value), authoredOn }));
      return {
        feb: await make('feb', '2026-02-10'),
        mid: await make('mid', '2026-03-14T10:30:00Z'),
        end: await make('end', '2026-03-31T23:59:59Z'),
        apr: await make('apr', '2026-04-15'),
      };
    }

    it('authored with every prefix and partial dates', async () => {
      const sys = scope();
      const { feb, mid, end, apr } = await referrals(sys);
      const find = (...values: string[]) =>
        idSet(h, 'ServiceRequest', [['identifier', `${sys}|`], ...values.map((v): [string, string] => ['authored', v])]);
      expect(await find('2026-03')).toEqual(sorted([mid.id, end.id]));
      expect(await find('eq2026-03')).toEqual(sorted([mid.id, end.id]));
      expect(await find('ne2026-03')).toEqual(sorted([feb.id, apr.id]));
      expect(await find('gt2026-03')).toEqual([apr.id]);
      expect(await find('lt2026-03')).toEqual([feb.id]);
      expect(await find('ge2026-03')).toEqual(sorted([mid.id, end.id, apr.id]));
      expect(await find('le2026-03')).toEqual(sorted([feb.id, mid.id, end.id]));
      expect(await find('sa2026-03-14')).toEqual(sorted([end.id, apr.id]));
      expect(await find('eb2026-03-14')).toEqual([feb.id]);
      expect(await find('2026')).toEqual(sorted([feb.id, mid.id, end.id, apr.id]));
      expect(await find('2025')).toEqual([]);
      expect(await find('2026-02-10')).toEqual([feb.id]);
      expect(await find('2026-03-14')).toEqual([mid.id]);
      expect(await find('2026-03-14T10:30:00Z')).toEqual([mid.id]);
      expect(await find('2026-03-14T10:30:01Z')).toEqual([]);
      // The same instant in another time zone.
      expect(await find('2026-03-14T11:30:00+01:00')).toEqual([mid.id]);
      expect(await find('2026-04-01T01:59:59+02:00')).toEqual([end.id]);
      // A range by AND of two bounds, and OR of two partial dates.
      expect(await find('ge2026-03-01', 'lt2026-04-01')).toEqual(sorted([mid.id, end.id]));
      expect(await find('gt2026-02-10', 'lt2026-04-15')).toEqual(sorted([mid.id, end.id]));
      expect(await find('2026-02,2026-04')).toEqual(sorted([feb.id, apr.id]));
    });

    it("an unencoded '+' in a time zone offset (read as a space) still means +", async () => {
      const sys = scope();
      const { mid } = await referrals(sys);
      const res = await h.request('GET', `/ServiceRequest?identifier=${encodeURIComponent(`${sys}|`)}&authored=2026-03-14T11:30:00+01:00`);
      expect(res.status).toBe(200);
      expect(matchIds(res.json)).toEqual([mid.id]);
    });

    it('CarePlan date matches Period values, with an open end', async () => {
      const sys = scope();
      const pat = await create(h, patient());
      const plan = (value: string, period: fhir4.Period | undefined) =>
        carePlan(`Patient/${pat.id}`, 'ServiceRequest/x', { identifier: ident(sys, value), period });
      const make = async (value: string, period: fhir4.Period | undefined) => create(h, plan(value, period));
      // SPCarePlan requires period.start, so a plan cannot have an open start or no period (the Task test below
      // has both): those are refused and stored nothing.
      expect((await h.request('POST', '/CarePlan', plan('open-start', { end: '2026-02-28' }))).status).toBe(422);
      expect((await h.request('POST', '/CarePlan', plan('none', undefined))).status).toBe(422);
      const openEnd = await make('open-end', { start: '2026-03-20' });
      const january = await make('january', { start: '2026-01-01', end: '2026-01-31' });
      const find = (value: string) => idSet(h, 'CarePlan', [['identifier', `${sys}|`], ['date', value]]);
      expect(await find('ge2030-01-01')).toEqual([openEnd.id]);
      expect(await find('gt2026-03-01')).toEqual([openEnd.id]);
      expect(await find('le2026-01-15')).toEqual([january.id]);
      expect(await find('lt2026-03-01')).toEqual([january.id]);
      expect(await find('lt1990-01-01')).toEqual([]);
      expect(await find('2026-01')).toEqual([january.id]);
      expect(await find('2026-01-15')).toEqual([]);
      expect(await find('2026')).toEqual([january.id]);
      expect(await find('ne2026-01')).toEqual([openEnd.id]);
      expect(await find('sa2026-02-28')).toEqual([openEnd.id]);
      expect(await find('sa2025-12-31')).toEqual(sorted([openEnd.id, january.id]));
      expect(await find('eb2026-03-01')).toEqual([january.id]);
      expect(await find('eb2026-01-31')).toEqual([]);
      expect(await idSet(h, 'CarePlan', [['identifier', `${sys}|`], ['date:missing', 'true']])).toEqual([]);
      expect(await idSet(h, 'CarePlan', [['identifier', `${sys}|`], ['date:missing', 'false']])).toEqual(sorted([openEnd.id, january.id]));
    });

    it('Task period matches Period values, with open ends', async () => {
      const sys = scope();
      const pat = await create(h, patient());
      const make = async (value: string, executionPeriod: fhir4.Period | undefined) =>
        create(h, task(`Patient/${pat.id}`, 'ServiceRequest/x', 'in-progress', { identifier: ident(sys, value), executionPeriod }));
      const openEnd = await make('open-end', { start: '2026-03-20' });
      const openStart = await make('open-start', { end: '2026-02-28' });
      const january = await make('january', { start: '2026-01-01', end: '2026-01-31' });
      const none = await make('none', undefined);
      const find = (value: string) => idSet(h, 'Task', [['identifier', `${sys}|`], ['period', value]]);
      expect(await find('ge2030-01-01')).toEqual([openEnd.id]);
      expect(await find('gt2026-03-01')).toEqual([openEnd.id]);
      expect(await find('le2026-01-15')).toEqual(sorted([openStart.id, january.id]));
      expect(await find('lt2026-03-01')).toEqual(sorted([openStart.id, january.id]));
      expect(await find('lt1990-01-01')).toEqual([openStart.id]);
      expect(await find('2026-01')).toEqual([january.id]);
      expect(await find('2026-01-15')).toEqual([]);
      expect(await find('2026')).toEqual([january.id]);
      expect(await find('ne2026-01')).toEqual(sorted([openEnd.id, openStart.id]));
      expect(await find('sa2026-02-28')).toEqual([openEnd.id]);
      expect(await find('sa2025-12-31')).toEqual(sorted([openEnd.id, january.id]));
      expect(await find('eb2026-03-01')).toEqual(sorted([openStart.id, january.id]));
      expect(await find('eb2026-01-31')).toEqual([]);
      expect(await idSet(h, 'Task', [['identifier', `${sys}|`], ['period:missing', 'true']])).toEqual([none.id]);
      expect(await idSet(h, 'Task', [['identifier', `${sys}|`], ['period:missing', 'false']])).toEqual(
        sorted([openEnd.id, openStart.id, january.id]),
      );
    });

    it('Observation date matches effectiveDateTime and effectivePeriod', async () => {
      const sys = scope();
      const pat = await create(h, patient());
      const instant = await create(h, wellbeing(`Patient/${pat.id}`, 40, { identifier: ident(sys, 'i') }));
      const period = await create(
        h,
        wellbeing(`Patient/${pat.id}`, 41, {
          identifier: ident(sys, 'p'),
          effectiveDateTime: undefined,
          effectivePeriod: { start: '2026-05-01', end: '2026-05-07' },
        }),
      );
      const find = (value: string) => idSet(h, 'Observation', [['identifier', `${sys}|`], ['date', value]]);
      expect(await find('2026-04-01')).toEqual([instant.id]);
      expect(await find('2026-05')).toEqual([period.id]);
      expect(await find('ge2026-05-05')).toEqual([period.id]);
      expect(await find('lt2026-05-05')).toEqual(sorted([instant.id, period.id]));
    });

    it('a date that is not a FHIR date is 400', async () => {
      for (const value of ['2026-13-01', '2026-02-30', 'yesterday', 'xx2026', '14/03/2026', 'ge', '2026-03-14T25:00:00Z']) {
        expectOutcome(await search(h, 'ServiceRequest', [['authored', value]]), 400, 'authored');
      }
      expectOutcome(await search(h, 'Patient', [['_lastUpdated', 'gtnow']]), 400, '_lastUpdated');
      expectOutcome(await search(h, 'CarePlan', [['date', '2026-1-1']]), 400);
    });
  });

  describe(':missing', () => {
    it('finds resources with and without the element', async () => {
      const sys = scope();
      const pat = await create(h, patient());
      // SPReferral requires authoredOn, so the date element left out is occurrence[x].
      const withPerformer = await create(
        h,
        referral(`Patient/${pat.id}`, { identifier: ident(sys, 'w'), occurrenceDateTime: '2026-04-20' }),
      );
      const noPerformer = await create(
        h,
        referral(`Patient/${pat.id}`, { identifier: ident(sys, 'n'), performer: undefined, category: undefined }),
      );
      const find = (...params: Params) => idSet(h, 'ServiceRequest', [['identifier', `${sys}|`], ...params]);
      expect(await find(['performer:missing', 'true'])).toEqual([noPerformer.id]);
      expect(await find(['performer:missing', 'false'])).toEqual([withPerformer.id]);
      expect(await find(['occurrence:missing', 'true'])).toEqual([noPerformer.id]);
      expect(await find(['occurrence:missing', 'false'])).toEqual([withPerformer.id]);
      expect(await find(['authored:missing', 'true'])).toEqual([]);
      expect(await find(['authored:missing', 'false'])).toEqual(sorted([withPerformer.id, noPerformer.id]));
      expect(await find(['category:missing', 'false'])).toEqual([withPerformer.id]);
      expect(await find(['based-on:missing', 'true'])).toEqual(sorted([withPerformer.id, noPerformer.id]));
      expectOutcome(await search(h, 'ServiceRequest', [['performer:missing', 'maybe']]), 400);
    });
  });

  describe('string parameters', () => {
    async function people(sys: string) {
      const make = (family: string, given: string) =>
        create(h, patient(undefined, { identifier: pident(sys, family), name: [{ family, given: [given] }] }));
      return {
        smith: await make('Smith', 'Jane'),
        smithson: await make('Smithson', 'Amir'),
        angstrom: await make('Ångström', 'Anders'),
        muller: await make('Müller', 'Zoë'),
        oxbow: await make('Oxbow', 'Tom'),
      };
    }

    it('matches a case- and accent-insensitive prefix by default', async () => {
      const sys = scope();
      const { smith, smithson, angstrom, muller } = await people(sys);
      const find = (...params: Params) => idSet(h, 'Patient', [['identifier', `${sys}|`], ...params]);
      expect(await find(['family', 'smi'])).toEqual(sorted([smith.id, smithson.id]));
      expect(await find(['family', 'SMITH'])).toEqual(sorted([smith.id, smithson.id]));
      expect(await find(['family', 'smithson'])).toEqual([smithson.id]);
      expect(await find(['family', 'mith'])).toEqual([]);
      expect(await find(['family', 'angstrom'])).toEqual([angstrom.id]);
      expect(await find(['family', 'ÅNGST'])).toEqual([angstrom.id]);
      expect(await find(['family', 'muller'])).toEqual([muller.id]);
      expect(await find(['given', 'zoe'])).toEqual([muller.id]);
      expect(await find(['name', 'jan'])).toEqual([smith.id]);
      expect(await find(['name', 'smith'])).toEqual(sorted([smith.id, smithson.id]));
      expect(await find(['family', 'smith,muller'])).toEqual(sorted([smith.id, smithson.id, muller.id]));
      expect(await find(['family', 'smith'], ['given', 'amir'])).toEqual([smithson.id]);
    });

    it(':exact matches the whole string, case and accents included', async () => {
      const sys = scope();
      const { smith, angstrom } = await people(sys);
      const find = (...params: Params) => idSet(h, 'Patient', [['identifier', `${sys}|`], ...params]);
      expect(await find(['family:exact', 'Smith'])).toEqual([smith.id]);
      expect(await find(['family:exact', 'smith'])).toEqual([]);
      expect(await find(['family:exact', 'Smit'])).toEqual([]);
      expect(await find(['family:exact', 'Ångström'])).toEqual([angstrom.id]);
      expect(await find(['family:exact', 'Angstrom'])).toEqual([]);
      expect(await find(['name:exact', 'Jane'])).toEqual([smith.id]);
    });

    it(':contains matches anywhere in the string', async () => {
      const sys = scope();
      const { smith, smithson, angstrom } = await people(sys);
      const find = (...params: Params) => idSet(h, 'Patient', [['identifier', `${sys}|`], ...params]);
      expect(await find(['family:contains', 'ths'])).toEqual([smithson.id]);
      expect(await find(['family:contains', 'MITH'])).toEqual(sorted([smith.id, smithson.id]));
      expect(await find(['family:contains', 'strom'])).toEqual([angstrom.id]);
      expect(await find(['family:contains', 'xyz'])).toEqual([]);
    });

    it('LIKE wildcards in the value are literal characters', async () => {
      const sys = scope();
      await people(sys);
      const find = (...params: Params) => idSet(h, 'Patient', [['identifier', `${sys}|`], ...params]);
      expect(await find(['family', 'o_b'])).toEqual([]);
      expect(await find(['family', '%'])).toEqual([]);
      expect(await find(['family:contains', '_'])).toEqual([]);
    });

    it('an unsupported modifier is 400', async () => {
      expectOutcome(await search(h, 'Patient', [['family:text', 'smith']]), 400);
      expectOutcome(await search(h, 'ServiceRequest', [['status:exact', 'active']]), 400);
      expectOutcome(await search(h, 'ServiceRequest', [['authored:exact', '2026']]), 400);
    });
  });

  describe('paging', () => {
    it.each([
      ['the default order', [] as Params],
      ['_sort=-_lastUpdated', [['_sort', '-_lastUpdated']] as Params],
      ['_sort=authored', [['_sort', 'authored']] as Params],
      ['_sort=_id', [['_sort', '_id']] as Params],
    ])(
      '_count pages with %s through next and previous links, with no duplicates or gaps while data changes',
      async (_name, sort) => {
        const sys = scope();
        const pat = await create(h, patient());
        const made: fhir4.ServiceRequest[] = [];
        const removed = new Set<string>();
        for (let i = 0; i < 10; i++) {
          const authoredOn = `2026-03-${String(10 + ((i * 7) % 10)).padStart(2, '0')}`;
          made.push(await create(h, referral(`Patient/${pat.id}`, { identifier: ident(sys, `r${i}`), authoredOn })));
        }
        const first = await bundle(h, 'ServiceRequest', [['identifier', `${sys}|`], ['_count', '3'], ...sort]);
        expect(first.total).toBe(10);
        expect(matchIds(first)).toHaveLength(3);
        expect(link(first, 'previous')).toBeUndefined();
        expect(link(first, 'self')).toBeDefined();
        const pages = [first];
        let created = 0;
        for (let next = link(first, 'next'); next; next = link(pages[pages.length - 1], 'next')) {
          expect(pages.length).toBeLessThan(10);
          // Between page fetches: a new match, an update of a seen and of an unseen match (that would move
          // them in a live -_lastUpdated or authored order), and a deletion of an unseen match.
          const seen = new Set(pages.flatMap(matchIds));
          const unseen = made.filter((m) => !seen.has(m.id as string) && !removed.has(m.id as string));
          await create(h, referral(`Patient/${pat.id}`, { identifier: ident(sys, `new${created++}`), authoredOn: '2026-01-01' }));
          const seenOne = made.find((m) => seen.has(m.id as string) && !removed.has(m.id as string)) as fhir4.ServiceRequest;
          await update(h, { ...seenOne, authoredOn: '2026-12-31', meta: undefined });
          if (unseen.length >= 2) {
            await update(h, { ...unseen[0], authoredOn: '2025-01-01', meta: undefined });
            await remove(h, 'ServiceRequest', unseen[1].id as string);
            removed.add(unseen[1].id as string);
          }
          const page = await follow(h, next);
          expect(page.total).toBe(10);
          pages.push(page);
        }
        const all = pages.flatMap(matchIds);
        expect(pages.map((p) => matchIds(p).length)).toEqual([3, 3, 3, 1]);
        expect(new Set(all).size).toBe(all.length);
        expect(sorted(all)).toEqual(sorted(made.map((m) => m.id)));

        // Back again through the previous links: the same pages.
        let back = link(pages[3], 'previous');
        for (let i = 2; i >= 0; i--) {
          expect(back).toBeDefined();
          const page = await follow(h, back as string);
          expect(matchIds(page)).toEqual(matchIds(pages[i]));
          back = link(page, 'previous');
        }
        expect(back).toBeUndefined();

        // A new search sees the data as it is now.
        const now = await bundle(h, 'ServiceRequest', [['identifier', `${sys}|`], ['_count', '100']]);
        expect(now.total).toBe(10 + created - removed.size);
        expect(removed.size).toBeGreaterThan(0);
      },
    );

    it('the links keep the criteria and the page size', async () => {
      const sys = scope();
      const pat = await create(h, patient());
      for (let i = 0; i < 5; i++) {
        await create(h, referral(`Patient/${pat.id}`, { identifier: ident(sys, `r${i}`), status: i < 4 ? 'active' : 'draft' }));
      }
      const first = await bundle(h, 'ServiceRequest', [['identifier', `${sys}|`], ['status', 'active'], ['_count', '2']]);
      const next = new URL(link(first, 'next') as string);
      expect(next.searchParams.get('identifier')).toBe(`${sys}|`);
      expect(next.searchParams.get('status')).toBe('active');
      expect(next.searchParams.get('_count')).toBe('2');
      const second = await follow(h, next.toString());
      expect(matchIds(second)).toHaveLength(2);
      expect(link(second, 'next')).toBeUndefined();
      expect(first.total).toBe(4);
    });

    it('_count of more than 20 and the default page size', async () => {
      const sys = scope();
      const pat = await create(h, patient());
      for (let i = 0; i < 22; i++) await create(h, referral(`Patient/${pat.id}`, { identifier: ident(sys, `r${i}`) }));
      const byDefault = await bundle(h, 'ServiceRequest', [['identifier', `${sys}|`]]);
      expect(matchIds(byDefault)).toHaveLength(20);
      expect(link(byDefault, 'next')).toBeDefined();
      const all = await bundle(h, 'ServiceRequest', [['identifier', `${sys}|`], ['_count', '50']]);
      expect(matchIds(all)).toHaveLength(22);
      expect(link(all, 'next')).toBeUndefined();
      expectOutcome(await search(h, 'ServiceRequest', [['_count', 'ten']]), 400, '_count');
      expectOutcome(await search(h, 'ServiceRequest', [['_count', '-1']]), 400, '_count');
    });
  });

  describe('_sort', () => {
    it('sorts by authored, -authored, occurrence (missing in one), _id, _lastUpdated, -_lastUpdated and several keys', async () => {
      const sys = scope();
      const pat = await create(h, patient());
      // SPReferral requires authoredOn, so the referral without a value of its sort key has no occurrence[x].
      const make = async (value: string, status: fhir4.ServiceRequest['status'], authoredOn: string, occurrenceDateTime?: string) => {
        await sleep(3);
        return create(h, referral(`Patient/${pat.id}`, { identifier: ident(sys, value), status, authoredOn, occurrenceDateTime }));
      };
      const jan = await make('jan', 'active', '2026-01-05', '2026-01-05');
      const mar = await make('mar', 'completed', '2026-03-14T10:30:00Z', '2026-03-14T10:30:00Z');
      const feb = await make('feb', 'active', '2026-02-01', '2026-02-01');
      const undated = await make('undated', 'draft', '2026-02-20');
      const order = async (sort: string) => ids(h, 'ServiceRequest', [['identifier', `${sys}|`], ['_sort', sort]]);
      const dated = async (sort: string) => (await order(sort)).filter((id) => id !== undated.id);
      expect(await order('authored')).toEqual([jan.id, feb.id, undated.id, mar.id]);
      expect(await order('-authored')).toEqual([mar.id, undated.id, feb.id, jan.id]);
      expect(await dated('occurrence')).toEqual([jan.id, feb.id, mar.id]);
      expect(await dated('-occurrence')).toEqual([mar.id, feb.id, jan.id]);
      expect(await order('occurrence')).toHaveLength(4);
      expect(await order('-occurrence')).toHaveLength(4);
      expect(await order('_id')).toEqual(sorted([jan.id, mar.id, feb.id, undated.id]));
      expect(await order('-_id')).toEqual(sorted([jan.id, mar.id, feb.id, undated.id]).reverse());
      expect(await order('_lastUpdated')).toEqual([jan.id, mar.id, feb.id, undated.id]);
      expect(await order('-_lastUpdated')).toEqual([undated.id, feb.id, mar.id, jan.id]);
      expect(await order('status,-authored')).toEqual([feb.id, jan.id, mar.id, undated.id]);
      expect(await order('-status,authored')).toEqual([undated.id, mar.id, jan.id, feb.id]);
      // An update makes a resource the most recently updated.
      await sleep(3);
      await update(h, { ...jan, priority: 'urgent', meta: undefined });
      expect((await order('-_lastUpdated'))[0]).toBe(jan.id);
      expectOutcome(await search(h, 'ServiceRequest', [['_sort', 'colour']]), 400);
    });
  });

  describe('_summary, _total and _elements', () => {
    it('_summary=count gives the total and no entries; _total=none leaves the total out', async () => {
      const sys = scope();
      const pat = await create(h, patient());
      for (let i = 0; i < 3; i++) await create(h, referral(`Patient/${pat.id}`, { identifier: ident(sys, `r${i}`) }));
      const counted = await bundle(h, 'ServiceRequest', [['identifier', `${sys}|`], ['_summary', 'count']]);
      expect(counted.total).toBe(3);
      expect(counted.entry ?? []).toHaveLength(0);
      const none = await bundle(h, 'ServiceRequest', [['identifier', `${sys}|`], ['_total', 'none']]);
      expect(none.total).toBeUndefined();
      expect(matchIds(none)).toHaveLength(3);
      const accurate = await bundle(h, 'ServiceRequest', [['identifier', `${sys}|`], ['_total', 'accurate'], ['_count', '1']]);
      expect(accurate.total).toBe(3);
      expect(matchIds(accurate)).toHaveLength(1);
      const paged = await bundle(h, 'ServiceRequest', [['identifier', `${sys}|`], ['_total', 'none'], ['_count', '2']]);
      expect(paged.total).toBeUndefined();
      const rest = await follow(h, link(paged, 'next') as string);
      expect([...matchIds(paged), ...matchIds(rest)].sort()).toEqual(
        await idSet(h, 'ServiceRequest', [['identifier', `${sys}|`]]),
      );
      expectOutcome(await search(h, 'ServiceRequest', [['_total', 'lots']]), 400);
      expectOutcome(await search(h, 'ServiceRequest', [['_summary', 'maybe']]), 400);
    });

    it('_elements returns only the listed elements, marked SUBSETTED', async () => {
      const pat = await create(h, patient());
      const sr = await create(h, referral(`Patient/${pat.id}`));
      const b = await bundle(h, 'ServiceRequest', [['_id', sr.id], ['_elements', 'status,subject']]);
      const resource = b.entry?.[0].resource as fhir4.ServiceRequest;
      expect(Object.keys(resource).sort()).toEqual(['id', 'meta', 'resourceType', 'status', 'subject']);
      expect(resource.status).toBe('active');
      expect(resource.subject).toEqual({ reference: `Patient/${pat.id}` });
      expect(resource.meta?.tag).toEqual(expect.arrayContaining([expect.objectContaining({ code: 'SUBSETTED' })]));
      // The stored resource is untouched.
      const read = await h.request('GET', `/ServiceRequest/${sr.id}`);
      expect(read.json.code).toEqual(sr.code);
      expect(read.json.meta.tag).toBeUndefined();
    });
  });

  describe('_include and _revinclude', () => {
    it('_include=ServiceRequest:patient adds each referenced patient once, as mode include', async () => {
      const sys = scope();
      const p = await create(h, patient());
      const q = await create(h, patient());
      const a = await create(h, referral(`Patient/${p.id}`, { identifier: ident(sys, 'a') }));
      const b = await create(h, referral(`Patient/${p.id}`, { identifier: ident(sys, 'b') }));
      const c = await create(h, referral(`Patient/${q.id}`, { identifier: ident(sys, 'c') }));
      const res = await bundle(h, 'ServiceRequest', [['identifier', `${sys}|`], ['_include', 'ServiceRequest:patient']]);
      expect(sorted(matchIds(res))).toEqual(sorted([a.id, b.id, c.id]));
      expect(res.total).toBe(3);
      const included = (res.entry ?? []).filter((e) => e.search?.mode === 'include');
      expect(sorted(included.map((e) => `${e.resource?.resourceType}/${e.resource?.id}`))).toEqual(
        sorted([`Patient/${p.id}`, `Patient/${q.id}`]),
      );
      for (const e of included) expect(e.fullUrl).toMatch(new RegExp(`/Patient/${e.resource?.id}$`));
      // Without _include, no patients.
      const plain = await bundle(h, 'ServiceRequest', [['identifier', `${sys}|`]]);
      expect((plain.entry ?? []).every((e) => e.search?.mode === 'match')).toBe(true);
    });

    it('_include only follows the matches of the page, and never a deleted target', async () => {
      const sys = scope();
      const p = await create(h, patient());
      const q = await create(h, patient());
      await create(h, referral(`Patient/${p.id}`, { identifier: ident(sys, 'a') }));
      await create(h, referral(`Patient/${q.id}`, { identifier: ident(sys, 'b') }));
      const first = await bundle(h, 'ServiceRequest', [['identifier', `${sys}|`], ['_include', 'ServiceRequest:patient'], ['_count', '1']]);
      expect((first.entry ?? []).filter((e) => e.search?.mode === 'include').map((e) => e.resource?.id)).toEqual([p.id]);
      await remove(h, 'Patient', q.id);
      const after = await bundle(h, 'ServiceRequest', [['identifier', `${sys}|`], ['_include', 'ServiceRequest:patient']]);
      expect((after.entry ?? []).filter((e) => e.search?.mode === 'include').map((e) => e.resource?.id)).toEqual([p.id]);
    });

    it('_revinclude=Observation:subject adds the observations about each matched patient', async () => {
      const sys = scope();
      const p = await create(h, patient(undefined, { identifier: pident(sys, 'p') }));
      const other = await create(h, patient());
      const o1 = await create(h, wellbeing(`Patient/${p.id}`, 50));
      const o2 = await create(h, wellbeing(`Patient/${p.id}`, 55));
      await create(h, wellbeing(`Patient/${other.id}`, 60));
      const gone = await create(h, wellbeing(`Patient/${p.id}`, 30));
      await remove(h, 'Observation', gone.id);
      const res = await bundle(h, 'Patient', [['identifier', `${sys}|`], ['_revinclude', 'Observation:subject']]);
      expect(matchIds(res)).toEqual([p.id]);
      expect(res.total).toBe(1);
      const included = (res.entry ?? []).filter((e) => e.search?.mode === 'include');
      expect(included.every((e) => e.resource?.resourceType === 'Observation')).toBe(true);
      expect(sorted(included.map((e) => e.resource?.id))).toEqual(sorted([o1.id, o2.id]));
    });

    it('a bad _include or _revinclude is 400', async () => {
      expectOutcome(await search(h, 'ServiceRequest', [['_include', 'ServiceRequest:status']]), 400);
      expectOutcome(await search(h, 'ServiceRequest', [['_include', 'Observation:subject']]), 400);
      expectOutcome(await search(h, 'ServiceRequest', [['_include', 'nonsense']]), 400);
      expectOutcome(await search(h, 'Patient', [['_revinclude', 'Observation:colour']]), 400);
    });
  });

  describe('POST _search', () => {
    it('takes the parameters from a form body, combined with any in the URL', async () => {
      const sys = scope();
      const pat = await create(h, patient());
      const active = await create(h, referral(`Patient/${pat.id}`, { identifier: ident(sys, 'a') }));
      const completed = await create(h, referral(`Patient/${pat.id}`, { identifier: ident(sys, 'c'), status: 'completed' }));
      const form = { 'content-type': 'application/x-www-form-urlencoded' };
      const res = await h.request('POST', '/ServiceRequest/_search', query([['identifier', `${sys}|`], ['status', 'active']]), form);
      expect(res.status).toBe(200);
      expect(res.json.type).toBe('searchset');
      expect(matchIds(res.json)).toEqual([active.id]);
      const mixed = await h.request('POST', '/ServiceRequest/_search?status=completed', query([['identifier', `${sys}|`]]), form);
      expect(mixed.status).toBe(200);
      expect(matchIds(mixed.json)).toEqual([completed.id]);
      // The paging links are GETs that carry the form's parameters.
      const paged = await h.request('POST', '/ServiceRequest/_search', query([['identifier', `${sys}|`], ['_count', '1']]), form);
      const next = await follow(h, link(paged.json, 'next') as string);
      expect(sorted([...matchIds(paged.json), ...matchIds(next)])).toEqual(sorted([active.id, completed.id]));
      const bad = await h.request('POST', '/ServiceRequest/_search', query([['colour', 'red']]), form);
      expectOutcome(bad, 400, 'colour');
    });
  });

  describe('unknown parameters', () => {
    it('an unknown parameter is 400 with an OperationOutcome', async () => {
      for (const params of [[['colour', 'red']], [['_colour', 'red']], [['colour:exact', 'red']]] as Params[]) {
        const res = await search(h, 'ServiceRequest', params);
        expectOutcome(res, 400, 'colour');
        expect(res.json.issue[0].code).toBe('not-supported');
      }
      expectOutcome(await search(h, 'ServiceRequest', [['colour', 'red']], { prefer: 'handling=strict' }), 400, 'colour');
    });

    it('Prefer: handling=lenient ignores it and says so in an outcome entry', async () => {
      const sys = scope();
      const pat = await create(h, patient());
      const sr = await create(h, referral(`Patient/${pat.id}`, { identifier: ident(sys, 'a') }));
      const res = await bundle(h, 'ServiceRequest', [['identifier', `${sys}|`], ['colour', 'red']], { prefer: 'handling=lenient' });
      expect(matchIds(res)).toEqual([sr.id]);
      expect(res.total).toBe(1);
      const outcomes = (res.entry ?? []).filter((e) => e.search?.mode === 'outcome');
      expect(outcomes).toHaveLength(1);
      const outcome = outcomes[0].resource as fhir4.OperationOutcome;
      expect(outcome.resourceType).toBe('OperationOutcome');
      expect(outcome.issue[0].severity).toBe('warning');
      expect(outcome.issue[0].diagnostics).toContain('colour');
      expect(link(res, 'self')).not.toContain('colour');
      // Lenient is about unknown parameters: a bad value of a known one is still an error.
      expectOutcome(await search(h, 'ServiceRequest', [['authored', 'soon']], { prefer: 'handling=lenient' }), 400);
    });
  });

  describe('versions', () => {
    it('deleted resources never match', async () => {
      const sys = scope();
      const pat = await create(h, patient());
      const before = new Date(Date.now() - 1000).toISOString();
      const kept = await create(h, referral(`Patient/${pat.id}`, { identifier: ident(sys, 'kept'), status: 'completed' }));
      const gone = await create(h, referral(`Patient/${pat.id}`, { identifier: ident(sys, 'gone'), performer: undefined }));
      await remove(h, 'ServiceRequest', gone.id);
      const find = (...params: Params) => idSet(h, 'ServiceRequest', [['identifier', `${sys}|`], ...params]);
      expect(await find()).toEqual([kept.id]);
      expect(await ids(h, 'ServiceRequest', [['_id', gone.id]])).toEqual([]);
      expect(await ids(h, 'ServiceRequest', [['identifier', `${sys}|gone`]])).toEqual([]);
      expect(await find(['status:not', 'completed'])).toEqual([]);
      expect(await find(['performer:missing', 'true'])).toEqual([]);
      expect(await find(['_lastUpdated', `ge${before}`])).toEqual([kept.id]);
      expect(await find(['authored', '2026-03'])).toEqual([kept.id]);
      expect((await bundle(h, 'ServiceRequest', [['identifier', `${sys}|`], ['_summary', 'count']])).total).toBe(1);
      // Brought back by an update, it matches again on its new content.
      const back = await h.request('PUT', `/ServiceRequest/${gone.id}`, { ...gone, meta: undefined, status: 'on-hold' });
      expect(back.status).toBe(201);
      expect(await find(['status', 'on-hold'])).toEqual([gone.id]);
    });

    it('updated resources match only on their current values', async () => {
      const sys = scope();
      const p = await create(h, patient());
      const q = await create(h, patient());
      const v1 = await create(h, referral(`Patient/${p.id}`, { identifier: ident(sys, 'old'), authoredOn: '2026-01-10' }));
      await update(h, {
        ...v1,
        meta: undefined,
        identifier: ident(sys, 'new'),
        status: 'completed',
        authoredOn: '2026-05-20',
        subject: { reference: `Patient/${q.id}` },
        performer: undefined,
      });
      const find = (...params: Params) => idSet(h, 'ServiceRequest', [['identifier', `${sys}|`], ...params]);
      expect(await find()).toEqual([v1.id]);
      expect((await bundle(h, 'ServiceRequest', [['identifier', `${sys}|`]])).total).toBe(1);
      expect(await find(['status', 'active'])).toEqual([]);
      expect(await find(['status', 'completed'])).toEqual([v1.id]);
      expect(await find(['status:not', 'completed'])).toEqual([]);
      expect(await ids(h, 'ServiceRequest', [['identifier', `${sys}|old`]])).toEqual([]);
      expect(await ids(h, 'ServiceRequest', [['identifier', `${sys}|new`]])).toEqual([v1.id]);
      expect(await find(['authored', '2026-01-10'])).toEqual([]);
      expect(await find(['authored', '2026-05-20'])).toEqual([v1.id]);
      expect(await find(['patient', p.id])).toEqual([]);
      expect(await find(['patient', q.id])).toEqual([v1.id]);
      expect(await find(['performer:missing', 'true'])).toEqual([v1.id]);
      expect(await find(['performer', 'Practitioner/splw-1'])).toEqual([]);
      const found = await bundle(h, 'ServiceRequest', [['_id', v1.id]]);
      expect(found.entry?.[0].resource?.meta?.versionId).toBe('2');
    });
  });
});

describeEachStore('search: CarePlan based-on the referral (R5 basedOn extension)', (h) => {
  it('finds a plan by the referral it is based on', async () => {
    const pat = await h.request('POST', '/Patient', patient(randomNhsNumber()));
    const ref = await h.request('POST', '/ServiceRequest', referral(`Patient/${pat.json.id}`));
    const plan = await h.request('POST', '/CarePlan', carePlan(`Patient/${pat.json.id}`, `ServiceRequest/${ref.json.id}`));
    expect(plan.status).toBe(201);
    const found = await h.request('GET', `/CarePlan?based-on=ServiceRequest/${ref.json.id}`);
    expect(found.json.total).toBe(1);
    expect(found.json.entry[0].resource.id).toBe(plan.json.id);
    const rev = await h.request('GET', `/ServiceRequest?_id=${ref.json.id}&_revinclude=CarePlan:based-on`);
    expect(rev.json.entry.map((e: { resource: { resourceType: string } }) => e.resource.resourceType)).toEqual(['ServiceRequest', 'CarePlan']);
  });
});
