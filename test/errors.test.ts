import { describeEachStore, type Harness } from './support/harness';
import { patient, referral } from './fixtures';

async function countOf(h: Harness, type: string): Promise<number> {
  return (await h.request('GET', `/${type}?_summary=count`)).json.total;
}

function expectOutcome(res: { json: { resourceType: string; issue: { severity: string; code: string; diagnostics: string }[] }; body: string }) {
  expect(res.json.resourceType).toBe('OperationOutcome');
  expect(res.json.issue[0].severity).toBe('error');
  expect(res.json.issue[0].diagnostics.length).toBeGreaterThan(0);
  // Nothing of the implementation leaks to a client.
  expect(res.body).not.toMatch(/\bat .*\.(ts|js):\d+|node_modules|SELECT |pglite|stack/i);
}

describeEachStore('errors as OperationOutcomes', (h) => {
  it('malformed JSON is 400 and stores nothing', async () => {
    const before = await countOf(h, 'Patient');
    const res = await h.request('POST', '/Patient', '{"resourceType": "Patient", "name": [', {});
    expect(res.status).toBe(400);
    expectOutcome(res);
    expect(res.json.issue[0].code).toBe('structure');
    expect(await countOf(h, 'Patient')).toBe(before);
  });

  it('an empty body is 400', async () => {
    const res = await h.request('POST', '/Patient', '', { 'content-type': 'application/fhir+json' });
    expect(res.status).toBe(400);
    expectOutcome(res);
  });

  it('prototype-poisoning JSON is refused', async () => {
    const res = await h.request('POST', '/Patient', '{"resourceType":"Patient","__proto__":{"admin":true}}');
    expect(res.status).toBe(400);
    expectOutcome(res);
  });

  it('a body of the wrong resourceType is 400', async () => {
    const before = await countOf(h, 'Patient');
    const res = await h.request('POST', '/Patient', referral('Patient/x'));
    expect(res.status).toBe(400);
    expectOutcome(res);
    expect(res.json.issue[0].diagnostics).toContain('ServiceRequest');
    expect((await h.request('POST', '/Patient', [patient()])).status).toBe(400);
    expect((await h.request('POST', '/Patient', '"a string"')).status).toBe(400);
    expect((await h.request('POST', '/Patient', { name: [] })).status).toBe(400);
    expect(await countOf(h, 'Patient')).toBe(before);
  });

  it('an update whose body id differs from the URL is 400', async () => {
    const res = await h.request('PUT', '/Patient/abc', { ...patient(), id: 'xyz' });
    expect(res.status).toBe(400);
    expectOutcome(res);
    expect((await h.request('PUT', '/Patient/abc', patient())).status).toBe(400);
    expect((await h.request('GET', '/Patient/abc')).status).toBe(404);
  });

  it('an invalid id is 400', async () => {
    const res = await h.request('PUT', `/Patient/${'x'.repeat(65)}`, { ...patient(), id: 'x'.repeat(65) });
    expect(res.status).toBe(400);
    expectOutcome(res);
    expect((await h.request('GET', '/Patient/bad_id!')).status).toBe(400);
  });

  it('an unknown resource type is 404', async () => {
    const res = await h.request('GET', '/Medication/1');
    expect(res.status).toBe(404);
    expectOutcome(res);
    expect(res.json.issue[0].code).toBe('not-supported');
    expect((await h.request('POST', '/Medication', { resourceType: 'Medication' })).status).toBe(404);
  });

  it('an unknown id is 404 and an unknown path is 404', async () => {
    const res = await h.request('GET', '/Patient/does-not-exist');
    expect(res.status).toBe(404);
    expectOutcome(res);
    expect(res.json.issue[0].code).toBe('not-found');
    expectOutcome(await h.request('GET', '/Patient/a/b/c/d/e'));
    expect((await h.request('GET', '/lowercase')).status).toBe(404);
  });

  it('a method the path does not support is 405', async () => {
    const res = await h.request('DELETE', '/metadata');
    expect(res.status).toBe(405);
    expectOutcome(res);
    expect((await h.request('PUT', '/Patient', patient())).status).toBe(405);
  });

  it('an unsupported media type is 415 and stores nothing', async () => {
    const before = await countOf(h, 'Patient');
    const res = await h.request('POST', '/Patient', '<Patient xmlns="http://hl7.org/fhir"/>', { 'content-type': 'application/fhir+xml' });
    expect(res.status).toBe(415);
    expectOutcome(res);
    expect((await h.request('POST', '/Patient', 'hello', { 'content-type': 'text/plain' })).status).toBe(415);
    expect(await countOf(h, 'Patient')).toBe(before);
  });

  it('a body over the limit is 413 and stores nothing', async () => {
    const before = await countOf(h, 'Patient');
    const huge = patient('9000000009', { text: { status: 'generated', div: `<div xmlns="http://www.w3.org/1999/xhtml">${'x'.repeat(1_100_000)}</div>` } });
    const res = await h.request('POST', '/Patient', huge);
    expect(res.status).toBe(413);
    expectOutcome(res);
    expect(await countOf(h, 'Patient')).toBe(before);
  });

  it('a malformed If-Match is 400 and a stale one 412', async () => {
    const created = await h.request('POST', '/Patient', patient());
    const bad = await h.request('PUT', `/Patient/${created.json.id}`, created.json, { 'if-match': 'banana' });
    expect(bad.status).toBe(400);
    expectOutcome(bad);
    const stale = await h.request('PUT', `/Patient/${created.json.id}`, created.json, { 'if-match': 'W/"7"' });
    expect(stale.status).toBe(412);
    expectOutcome(stale);
    expect(stale.json.issue[0].code).toBe('conflict');
  });

  it('an If-None-Exist without criteria is 400', async () => {
    const res = await h.request('POST', '/Patient', patient(), { 'if-none-exist': '' });
    expect(res.status).toBe(400);
    expectOutcome(res);
  });

  it('a failure inside the server is a 500 OperationOutcome naming only the request id', async () => {
    const broken = await h.db.query('ALTER TABLE search_token RENAME TO search_token_moved');
    expect(broken).toBeDefined();
    try {
      const res = await h.request('POST', '/Patient', patient(), { 'x-request-id': 'trace-500' });
      expect(res.status).toBe(500);
      expectOutcome(res);
      expect(res.json.issue[0].diagnostics).toContain('trace-500');
      expect(res.body).not.toContain('search_token');
    } finally {
      await h.db.query('ALTER TABLE search_token_moved RENAME TO search_token');
    }
    expect((await h.request('POST', '/Patient', patient())).status).toBe(201);
  });
});
