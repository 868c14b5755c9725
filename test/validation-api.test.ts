import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describeEachStore } from './support/harness';

const examples = path.resolve(__dirname, '../profiles/examples');
const example = <T>(file: string): T => JSON.parse(readFileSync(path.join(examples, file), 'utf8')) as T;
const referral = () => {
  const r = example<fhir4.ServiceRequest>('ServiceRequest-sp-referral-example.json');
  delete r.id;
  return r;
};

describeEachStore('validation on the HTTP API', (h) => {
  it('a write breaking the profile is 422 with every issue, and nothing is stored', async () => {
    const before = (await h.request('GET', '/ServiceRequest?_summary=count')).json.total;
    const bad = { ...referral(), status: 'bogus', authoredOn: undefined };
    const res = await h.request('POST', '/ServiceRequest', bad);
    expect(res.status).toBe(422);
    expect(res.json.resourceType).toBe('OperationOutcome');
    const expressions = res.json.issue.map((i: { expression: string[] }) => i.expression[0]);
    expect(expressions).toEqual(expect.arrayContaining(['ServiceRequest.status', 'ServiceRequest.authoredOn']));
    expect((await h.request('GET', '/ServiceRequest?_summary=count')).json.total).toBe(before);
  });

  it('a structurally malformed resource is 400', async () => {
    const res = await h.request('POST', '/ServiceRequest', { ...referral(), colour: 'blue' });
    expect(res.status).toBe(400);
    expect(res.json.issue[0].expression).toEqual(['ServiceRequest.colour']);
  });

  it('an update is validated too, and the stored version is untouched', async () => {
    const created = await h.request('POST', '/ServiceRequest', referral());
    expect(created.status).toBe(201);
    const res = await h.request('PUT', `/ServiceRequest/${created.json.id}`, { ...created.json, subject: { reference: 'Practitioner/x' } });
    expect(res.status).toBe(422);
    const current = await h.request('GET', `/ServiceRequest/${created.json.id}`);
    expect(current.json.meta.versionId).toBe('1');
  });

  it('POST [type]/$validate returns 200 with the OperationOutcome and stores nothing', async () => {
    const before = (await h.request('GET', '/ServiceRequest?_summary=count')).json.total;
    const res = await h.request('POST', '/ServiceRequest/$validate', { ...referral(), status: 'bogus' });
    expect(res.status).toBe(200);
    expect(res.json.issue.some((i: { severity: string; expression: string[] }) => i.severity === 'error' && i.expression[0] === 'ServiceRequest.status')).toBe(true);
    const good = await h.request('POST', '/ServiceRequest/$validate', referral());
    expect(good.status).toBe(200);
    expect(good.json.issue.filter((i: { severity: string }) => i.severity === 'error')).toEqual([]);
    expect((await h.request('GET', '/ServiceRequest?_summary=count')).json.total).toBe(before);
  });

  it('$validate takes a Parameters with resource, mode and profile', async () => {
    const r = { ...referral(), authoredOn: undefined };
    const params = (profile?: string) => ({
      resourceType: 'Parameters',
      parameter: [{ name: 'resource', resource: r }, { name: 'mode', valueCode: 'create' }, ...(profile ? [{ name: 'profile', valueUri: profile }] : [])],
    });
    const strict = await h.request('POST', '/ServiceRequest/$validate', params());
    expect(strict.json.issue.some((i: { expression: string[] }) => i.expression[0] === 'ServiceRequest.authoredOn')).toBe(true);
    const base = await h.request('POST', '/ServiceRequest/$validate', params('http://hl7.org/fhir/StructureDefinition/ServiceRequest'));
    expect(base.json.issue.filter((i: { severity: string }) => i.severity === 'error')).toEqual([]);
    const unknown = await h.request('POST', '/ServiceRequest/$validate', params('https://example.org/nope'));
    expect(unknown.json.issue[0].diagnostics).toMatch(/Unknown profile/);
  });

  it('$validate checks any base R4 type, and whole Bundles', async () => {
    // No profile ships for Medication: the R4 structure is still checked.
    const medication = await h.request('POST', '/Medication/$validate', { resourceType: 'Medication', status: 3, strength: 'high' });
    expect(medication.status).toBe(200);
    const found = medication.json.issue.map((i: { expression: string[] }) => i.expression[0]);
    expect(found).toEqual(expect.arrayContaining(['Medication.status', 'Medication.strength']));
    const bundle = example<fhir4.Bundle>('Bundle-sp-referral-transaction.json');
    const ok = await h.request('POST', '/Bundle/$validate', bundle);
    expect(ok.json.issue.filter((i: { severity: string }) => i.severity === 'error')).toEqual([]);
    (bundle.entry![1].resource as fhir4.ServiceRequest).status = 'bogus' as fhir4.ServiceRequest['status'];
    const bad = await h.request('POST', '/Bundle/$validate', bundle);
    expect(bad.json.issue.some((i: { expression: string[] }) => i.expression[0] === 'Bundle.entry[1].resource.status')).toBe(true);
  });

  it('instance $validate checks the stored resource, and mode=delete needs no body', async () => {
    const created = await h.request('POST', '/ServiceRequest', referral());
    const res = await h.request('POST', `/ServiceRequest/${created.json.id}/$validate`, { resourceType: 'Parameters', parameter: [{ name: 'mode', valueCode: 'update' }] });
    expect(res.status).toBe(200);
    expect(res.json.issue.filter((i: { severity: string }) => i.severity === 'error')).toEqual([]);
    const missing = await h.request('POST', '/ServiceRequest/nope/$validate', { resourceType: 'Parameters', parameter: [] });
    expect(missing.status).toBe(404);
  });

  it('$validate of a body of the wrong type says so', async () => {
    const res = await h.request('POST', '/Patient/$validate', referral());
    expect(res.status).toBe(200);
    expect(res.json.issue[0].diagnostics).toMatch(/ServiceRequest/);
  });

  it('serves the shipped profiles as StructureDefinitions', async () => {
    const res = await h.request('GET', '/StructureDefinition?url=https://fhir.sp-bridge.example/StructureDefinition/SPReferral');
    expect(res.json.total).toBe(1);
    const sd = res.json.entry[0].resource;
    expect(sd.snapshot.element.length).toBeGreaterThan(10);
    expect((await h.request('GET', `/StructureDefinition/${sd.id}`)).json.url).toBe(sd.url);
    expect((await h.request('PUT', `/StructureDefinition/${sd.id}`, sd)).status).toBe(405);
  });
});
