import { describeEachStore } from './support/harness';
import { patient, referral, task, NHS_NUMBERS } from './fixtures';

describeEachStore('RESTful interactions', (h) => {
  it('creates with a server-assigned id, version 1, and Location/ETag/Last-Modified headers', async () => {
    const res = await h.request('POST', '/Patient', { ...patient(), id: 'client-chosen' });
    expect(res.status).toBe(201);
    expect(res.json.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.json.meta.versionId).toBe('1');
    expect(res.headers.etag).toBe('W/"1"');
    expect(res.headers.location).toBe(`http://localhost:80/Patient/${res.json.id}/_history/1`);
    expect(new Date(String(res.headers['last-modified'])).getTime()).toBeGreaterThan(Date.now() - 60_000);
    expect(res.headers['content-type']).toBe('application/fhir+json; charset=utf-8');
  });

  it('reads the current version and vreads each version', async () => {
    const created = await h.request('POST', '/Patient', patient(NHS_NUMBERS[1]));
    const id = created.json.id;
    const v2 = await h.request('PUT', `/Patient/${id}`, { ...created.json, gender: 'male' });
    expect(v2.status).toBe(200);
    expect(v2.json.meta.versionId).toBe('2');
    const read = await h.request('GET', `/Patient/${id}`);
    expect(read.json.gender).toBe('male');
    expect(read.headers.etag).toBe('W/"2"');
    const v1 = await h.request('GET', `/Patient/${id}/_history/1`);
    expect(v1.status).toBe(200);
    expect(v1.json.gender).toBe('female');
    expect((await h.request('GET', `/Patient/${id}/_history/3`)).status).toBe(404);
  });

  it('accepts application/json as well as application/fhir+json, and answers in the type asked for', async () => {
    const res = await h.request('POST', '/Patient', patient(), { 'content-type': 'application/json', accept: 'application/json' });
    expect(res.status).toBe(201);
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    const viaFormat = await h.request('GET', `/Patient/${res.json.id}?_format=json`);
    expect(viaFormat.headers['content-type']).toBe('application/fhir+json; charset=utf-8');
    const xml = await h.request('GET', `/Patient/${res.json.id}?_format=xml`);
    expect(xml.status).toBe(406);
    expect(xml.json.resourceType).toBe('OperationOutcome');
    const acceptXml = await h.request('GET', `/Patient/${res.json.id}`, undefined, { accept: 'application/fhir+xml' });
    expect(acceptXml.status).toBe(406);
  });

  it('pretty-prints with _pretty=true', async () => {
    const res = await h.request('GET', '/metadata?_pretty=true');
    expect(res.body).toContain('\n  "resourceType": "CapabilityStatement"');
  });

  it('update-as-create with a client-assigned id returns 201, then 200', async () => {
    const body = { ...referral('Patient/p-uac'), id: 'referral-uac-1' };
    const first = await h.request('PUT', '/ServiceRequest/referral-uac-1', body);
    expect(first.status).toBe(201);
    expect(first.json.meta.versionId).toBe('1');
    const second = await h.request('PUT', '/ServiceRequest/referral-uac-1', { ...body, status: 'completed' });
    expect(second.status).toBe(200);
    expect(second.json.meta.versionId).toBe('2');
  });

  it('delete makes read 410 Gone, keeps the history, and a later update revives it', async () => {
    const created = await h.request('POST', '/ServiceRequest', referral('Patient/p-del'));
    const id = created.json.id;
    const del = await h.request('DELETE', `/ServiceRequest/${id}`);
    expect(del.status).toBe(200);
    expect(del.json.resourceType).toBe('OperationOutcome');
    const gone = await h.request('GET', `/ServiceRequest/${id}`);
    expect(gone.status).toBe(410);
    expect(gone.json.issue[0].code).toBe('deleted');
    expect((await h.request('GET', `/ServiceRequest/${id}/_history/2`)).status).toBe(410);
    expect((await h.request('GET', `/ServiceRequest/${id}/_history/1`)).status).toBe(200);
    const again = await h.request('DELETE', `/ServiceRequest/${id}`);
    expect(again.status).toBe(200);
    const revived = await h.request('PUT', `/ServiceRequest/${id}`, { ...created.json, status: 'revoked' });
    expect(revived.status).toBe(201);
    expect(revived.json.meta.versionId).toBe('3');
    const history = await h.request('GET', `/ServiceRequest/${id}/_history`);
    expect(history.json.type).toBe('history');
    expect(history.json.total).toBe(3);
    expect(history.json.entry.map((e: { request: { method: string } }) => e.request.method)).toEqual(['PUT', 'DELETE', 'POST']);
    expect(history.json.entry[1].resource).toBeUndefined();
  });

  it('deleting something that never existed succeeds without creating anything', async () => {
    const res = await h.request('DELETE', '/Patient/never-was');
    expect(res.status).toBe(200);
    expect((await h.request('GET', '/Patient/never-was')).status).toBe(404);
    expect((await h.request('GET', '/Patient/never-was/_history')).status).toBe(404);
  });

  it('type history lists versions of that type newest first, with paging links', async () => {
    for (const status of ['requested', 'accepted', 'completed'] as const) {
      expect((await h.request('POST', '/Task', task('Patient/p-task', 'ServiceRequest/r-task', status))).status).toBe(201);
    }
    const page1 = await h.request('GET', '/Task/_history?_count=2');
    expect(page1.json.total).toBe(3);
    expect(page1.json.entry.map((e: { resource: fhir4.Task }) => e.resource.status)).toEqual(['completed', 'accepted']);
    const next = page1.json.link.find((l: { relation: string }) => l.relation === 'next').url;
    const page2 = await h.request('GET', next.replace('http://localhost:80', ''));
    expect(page2.json.entry.map((e: { resource: fhir4.Task }) => e.resource.status)).toEqual(['requested']);
    const system = await h.request('GET', '/_history?_count=1');
    expect(system.json.total).toBeGreaterThanOrEqual(3);
    const since = await h.request('GET', `/Task/_history?_since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`);
    expect(since.json.total).toBe(0);
  });

  it('conditional create returns the existing resource instead of a duplicate', async () => {
    const ifNoneExist = `identifier=${encodeURIComponent(`https://fhir.nhs.uk/Id/nhs-number|${NHS_NUMBERS[2]}`)}`;
    const first = await h.request('POST', '/Patient', patient(NHS_NUMBERS[2]), { 'if-none-exist': ifNoneExist });
    expect(first.status).toBe(201);
    const second = await h.request('POST', '/Patient', patient(NHS_NUMBERS[2]), { 'if-none-exist': ifNoneExist });
    expect(second.status).toBe(200);
    expect(second.json.id).toBe(first.json.id);
    const search = await h.request('GET', `/Patient?${ifNoneExist}`);
    expect(search.json.total).toBe(1);
  });

  it('conditional create with several matches is 412', async () => {
    await h.request('POST', '/Patient', patient('9449310475', { gender: 'other' }));
    await h.request('POST', '/Patient', patient('9449310475', { gender: 'other' }));
    const res = await h.request('POST', '/Patient', patient('9449310475'), {
      'if-none-exist': 'identifier=https://fhir.nhs.uk/Id/nhs-number|9449310475',
    });
    expect(res.status).toBe(412);
    expect(res.json.issue[0].code).toBe('multiple-matches');
  });

  it('If-Match updates only the version the client saw (412 when stale)', async () => {
    const created = await h.request('POST', '/ServiceRequest', referral('Patient/p-im'));
    const id = created.json.id;
    const ok = await h.request('PUT', `/ServiceRequest/${id}`, { ...created.json, status: 'on-hold' }, { 'if-match': 'W/"1"' });
    expect(ok.status).toBe(200);
    const stale = await h.request('PUT', `/ServiceRequest/${id}`, { ...created.json, status: 'revoked' }, { 'if-match': 'W/"1"' });
    expect(stale.status).toBe(412);
    expect(stale.json.resourceType).toBe('OperationOutcome');
    expect((await h.request('GET', `/ServiceRequest/${id}`)).json.status).toBe('on-hold');
    const staleDelete = await h.request('DELETE', `/ServiceRequest/${id}`, undefined, { 'if-match': 'W/"1"' });
    expect(staleDelete.status).toBe(412);
    expect((await h.request('GET', `/ServiceRequest/${id}`)).status).toBe(200);
  });

  it('Prefer: return=minimal, representation and OperationOutcome', async () => {
    const minimal = await h.request('POST', '/Patient', patient(), { prefer: 'return=minimal' });
    expect(minimal.status).toBe(201);
    expect(minimal.body).toBe('');
    expect(minimal.headers.location).toMatch(/\/Patient\/[^/]+\/_history\/1$/);
    const outcome = await h.request('POST', '/Patient', patient(), { prefer: 'return=OperationOutcome' });
    expect(outcome.status).toBe(201);
    expect(outcome.json.resourceType).toBe('OperationOutcome');
    expect(outcome.json.issue[0].severity).toBe('information');
    const representation = await h.request('POST', '/Patient', patient(), { prefer: 'return=representation' });
    expect(representation.json.resourceType).toBe('Patient');
  });

  it('conditional read: If-None-Match and If-Modified-Since give 304', async () => {
    const created = await h.request('POST', '/Patient', patient());
    const id = created.json.id;
    const etag = await h.request('GET', `/Patient/${id}`, undefined, { 'if-none-match': 'W/"1"' });
    expect(etag.status).toBe(304);
    expect(etag.body).toBe('');
    const changed = await h.request('GET', `/Patient/${id}`, undefined, { 'if-none-match': 'W/"0"' });
    expect(changed.status).toBe(200);
    const later = new Date(Date.now() + 5000).toUTCString();
    expect((await h.request('GET', `/Patient/${id}`, undefined, { 'if-modified-since': later })).status).toBe(304);
    const earlier = new Date(Date.now() - 3_600_000).toUTCString();
    expect((await h.request('GET', `/Patient/${id}`, undefined, { 'if-modified-since': earlier })).status).toBe(200);
  });

  it('conditional update and conditional delete by identifier', async () => {
    const ident = 'https://sp-bridge.example/referral|cond-1';
    const body = referral('Patient/p-cu', { identifier: [{ system: 'https://sp-bridge.example/referral', value: 'cond-1' }] });
    const created = await h.request('PUT', `/ServiceRequest?identifier=${encodeURIComponent(ident)}`, body);
    expect(created.status).toBe(201);
    const updated = await h.request('PUT', `/ServiceRequest?identifier=${encodeURIComponent(ident)}`, { ...body, status: 'completed' });
    expect(updated.status).toBe(200);
    expect(updated.json.id).toBe(created.json.id);
    expect(updated.json.meta.versionId).toBe('2');
    const deleted = await h.request('DELETE', `/ServiceRequest?identifier=${encodeURIComponent(ident)}`);
    expect(deleted.status).toBe(200);
    expect((await h.request('GET', `/ServiceRequest/${created.json.id}`)).status).toBe(410);
  });

  it('HEAD answers like GET without a body', async () => {
    const created = await h.request('POST', '/Patient', patient());
    const head = await h.request('HEAD', `/Patient/${created.json.id}`);
    expect(head.status).toBe(200);
    expect(head.headers.etag).toBe('W/"1"');
    expect(head.body).toBe('');
  });

  it('serves a CapabilityStatement generated from the registry', async () => {
    const res = await h.request('GET', '/metadata');
    expect(res.status).toBe(200);
    expect(res.json.fhirVersion).toBe('4.0.1');
    expect(res.json.format).toEqual(['application/fhir+json', 'application/json']);
    const types = res.json.rest[0].resource.map((r: { type: string }) => r.type);
    expect(types).toEqual(expect.arrayContaining(['Patient', 'ServiceRequest', 'CarePlan', 'Observation', 'Task']));
    const sr = res.json.rest[0].resource.find((r: { type: string }) => r.type === 'ServiceRequest');
    expect(sr.searchParam.map((p: { name: string }) => p.name)).toEqual(
      expect.arrayContaining(['_id', '_lastUpdated', 'identifier', 'patient', 'status', 'code', 'authored', 'based-on']),
    );
    expect(sr.interaction.map((i: { code: string }) => i.code)).toEqual(
      expect.arrayContaining(['read', 'vread', 'update', 'delete', 'create', 'search-type', 'history-instance']),
    );
    expect(sr.conditionalCreate).toBe(true);
    expect(sr.operation.map((o: { name: string }) => o.name)).toContain('validate');
    const codeSystem = res.json.rest[0].resource.find((r: { type: string }) => r.type === 'CodeSystem');
    expect(codeSystem.interaction.map((i: { code: string }) => i.code)).toEqual(['read', 'search-type']);
    expect(codeSystem.operation.map((o: { name: string }) => o.name)).toEqual(expect.arrayContaining(['lookup', 'subsumes']));
    expect(types).toEqual(expect.arrayContaining(['ValueSet', 'StructureDefinition']));
    expect(res.json.rest[0].interaction.map((i: { code: string }) => i.code)).toEqual(
      expect.arrayContaining(['transaction', 'batch']),
    );
  });

  it('returns the request id it was given, or a new one', async () => {
    const given = await h.request('GET', '/metadata', undefined, { 'x-request-id': 'vendor-trace-42' });
    expect(given.headers['x-request-id']).toBe('vendor-trace-42');
    const fresh = await h.request('GET', '/metadata');
    expect(fresh.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });
});
