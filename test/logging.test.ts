import { describeEachStore } from './support/harness';
import { patient, referral } from './fixtures';

const PHI = ['9449306060', 'Featherstonehaugh', 'Philippa', '1948-02-29', 'LS6 2QT', '17 Cardigan Road', '07700 900123'];

describeEachStore('logs', (h) => {
  it('write one JSON line per request with a request id and no patient data', async () => {
    h.logLines.length = 0;
    const p = patient('9449306060', {
      name: [{ family: 'Featherstonehaugh', given: ['Philippa'] }],
      birthDate: '1948-02-29',
      address: [{ line: ['17 Cardigan Road'], postalCode: 'LS6 2QT' }],
      telecom: [{ system: 'phone', value: '07700 900123' }],
    });
    const created = await h.request('POST', '/Patient', p, { 'x-request-id': 'log-test-1' });
    expect(created.status).toBe(201);
    const requests = [
      `/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9449306060`,
      `/Patient?family=Featherstonehaugh&given=Philippa&birthdate=1948-02-29`,
      `/Patient?address-postalcode=LS6%202QT`,
      `/Patient/${created.json.id}`,
      `/Patient?unknown=9449306060`,
    ];
    for (const url of requests) await h.request('GET', url, undefined, { authorization: 'Bearer secret-token-value' });
    await h.request('POST', '/Patient', '{"resourceType":"Patient","name":[{"family":"Featherstonehaugh"', {});
    await h.request('POST', '/', {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [{ fullUrl: 'urn:uuid:1', resource: referral('Patient/9449306060'), request: { method: 'POST', url: 'ServiceRequest' } }],
    });

    const requestLines = h.logLines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'request');
    expect(requestLines).toHaveLength(requests.length + 3);
    expect(requestLines[0]).toMatchObject({ reqId: 'log-test-1', method: 'POST', path: '/Patient', status: 201 });
    expect(requestLines[2].params).toEqual(['family', 'given', 'birthdate']);
    const all = h.logLines.join('\n');
    for (const value of [...PHI, 'secret-token-value']) expect(all).not.toContain(value);
  });

  it('log internal failures without statement parameters', async () => {
    h.logLines.length = 0;
    await h.db.query('ALTER TABLE search_string RENAME TO search_string_moved');
    try {
      const res = await h.request('POST', '/Patient', patient('9449306060', { name: [{ family: 'Featherstonehaugh' }] }));
      expect(res.status).toBe(500);
    } finally {
      await h.db.query('ALTER TABLE search_string_moved RENAME TO search_string');
    }
    const errorLine = h.logLines.map((l) => JSON.parse(l)).find((l) => l.level === 50);
    expect(errorLine).toBeDefined();
    expect(errorLine.err.type).toBeDefined();
    const all = h.logLines.join('\n');
    for (const value of PHI) expect(all).not.toContain(value);
  });
});
