/**
 * The mock GP receiver (`sp-bridge mock-gp`) over real loopback sockets, spoken to with plain fetch.
 */
import { main } from '../src/cli';
import { parseMockGpArgs } from '../src/mock/gp-command';
import { startMockGp, type MockGp } from '../src/mock/gp';
import { NHS_NUMBER_SYSTEM, NHS_NUMBERS, patient } from './fixtures';

const FHIR = { 'content-type': 'application/fhir+json' };

describe('mock-gp', () => {
  let gp: MockGp;
  beforeAll(async () => {
    gp = await startMockGp({ port: 0 });
  });
  afterEach(() => gp.reset());
  afterAll(() => gp.close());

  const call = (path: string, init: RequestInit = {}): Promise<Response> => fetch(`${gp.url}${path}`, init);
  const json = async (res: Response): Promise<any> => JSON.parse(await res.text());

  it('listens on loopback and answers /metadata', async () => {
    expect(gp.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const res = await call('/metadata');
    expect(res.status).toBe(200);
    expect(await json(res)).toMatchObject({ resourceType: 'CapabilityStatement', fhirVersion: '4.0.1' });
  });

  it('refuses a non-loopback host unless allowed', async () => {
    await expect(startMockGp({ port: 0, host: '0.0.0.0' })).rejects.toThrow(/loopback only/);
  });

  it('PUT creates then versions; read, vread, search by identifier, DELETE then 410', async () => {
    const body = JSON.stringify(patient(NHS_NUMBERS[2], { id: 'pat-1' }));
    const created = await call('/Patient/pat-1', { method: 'PUT', headers: FHIR, body });
    expect(created.status).toBe(201);
    expect(created.headers.get('etag')).toBe('W/"1"');
    expect((await call('/Patient/pat-1', { method: 'PUT', headers: FHIR, body })).status).toBe(200);
    expect(await json(await call('/Patient/pat-1'))).toMatchObject({ id: 'pat-1', meta: { versionId: '2' } });
    expect((await call('/Patient/pat-1/_history/1')).status).toBe(200);
    const bundle = await json(await call(`/Patient?identifier=${encodeURIComponent(`${NHS_NUMBER_SYSTEM}|${NHS_NUMBERS[2]}`)}`));
    expect(bundle).toMatchObject({ resourceType: 'Bundle', type: 'searchset', total: 1 });
    expect((await json(await call(`/Patient?identifier=${NHS_NUMBERS[3]}`))).total).toBe(0);
    expect((await call('/Patient/pat-1', { method: 'DELETE' })).status).toBe(204);
    expect((await call('/Patient/pat-1')).status).toBe(410);
    expect((await call('/Patient/nobody')).status).toBe(404);
    expect((await call('/Patient/pat-2', { method: 'PUT', headers: FHIR, body })).status).toBe(400); // id mismatch
  });

  it('POST with If-None-Exist creates once, then answers 200 with the existing record', async () => {
    const body = JSON.stringify(patient(NHS_NUMBERS[4]));
    const headers = { ...FHIR, 'if-none-exist': `identifier=${NHS_NUMBER_SYSTEM}|${NHS_NUMBERS[4]}` };
    const first = await call('/Patient', { method: 'POST', headers, body });
    expect(first.status).toBe(201);
    expect(first.headers.get('location')).toMatch(new RegExp(`^${gp.url}/Patient/[0-9a-f-]+/_history/1$`));
    const second = await call('/Patient', { method: 'POST', headers, body });
    expect(second.status).toBe(200);
    expect(gp.received()).toMatchObject({ deliveries: 1, stored: { Patient: 1 } });
  });

  it('de-duplicates writes on Idempotency-Key and counts deliveries and duplicates', async () => {
    const body = JSON.stringify(patient(NHS_NUMBERS[0], { id: 'pat-d' }));
    const headers = { ...FHIR, 'idempotency-key': 'key-1' };
    const first = await call('/Patient/pat-d', { method: 'PUT', headers, body });
    const again = await call('/Patient/pat-d', { method: 'PUT', headers, body });
    expect([first.status, again.status]).toEqual([201, 201]);
    expect(again.headers.get('x-idempotent-replay')).toBe('true');
    const received = await json(await call('/_control/received'));
    expect(received).toMatchObject({ deliveries: 1, duplicates: 1, stored: { Patient: 1 } });
    expect(received.requests.map((r: { duplicate: boolean }) => r.duplicate)).toEqual([false, true]);
    expect(gp.store.history('Patient', 'pat-d')).toHaveLength(1);
  });

  it('fails on command: status with Retry-After and an outcome, for `count` requests, then recovers', async () => {
    const ctl = await call('/_control/fail', { method: 'POST', body: JSON.stringify({ status: 503, count: 2, retryAfter: 5 }) });
    expect(ctl.status).toBe(200);
    for (let i = 0; i < 2; i++) {
      const res = await call('/Patient/x');
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('5');
      expect(await json(res)).toMatchObject({ resourceType: 'OperationOutcome', issue: [{ code: 'transient' }] });
    }
    expect((await call('/Patient/x')).status).toBe(404);
    expect(gp.received().requests.map((r) => r.injected)).toEqual([true, true, false]);
  });

  it('fails on command: dropped connection and delay', async () => {
    gp.fail({ drop: true });
    await expect(call('/Patient/x')).rejects.toThrow();
    gp.fail({ delayMs: 300 });
    const started = Date.now();
    expect((await call('/Patient/x')).status).toBe(404);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
  });

  it('reset forgets everything', async () => {
    await call('/Patient/r', { method: 'PUT', headers: FHIR, body: JSON.stringify(patient(NHS_NUMBERS[0], { id: 'r' })) });
    expect((await call('/_control/reset', { method: 'POST' })).status).toBe(200);
    expect(gp.received()).toEqual({ requests: [], deliveries: 0, duplicates: 0, tokensIssued: 0, stored: {} });
  });

  it('issues client-credentials tokens and then requires them', async () => {
    const secured = await startMockGp({ port: 0, auth: { clientId: 'c1', clientSecret: 's1', tokenTtlSeconds: 60 } });
    try {
      expect((await fetch(`${secured.url}/Patient/x`)).status).toBe(401);
      const bad = await fetch(`${secured.url}/oauth/token`, { method: 'POST', body: new URLSearchParams({ grant_type: 'client_credentials', client_id: 'c1', client_secret: 'nope' }) });
      expect(bad.status).toBe(401);
      const res = await fetch(`${secured.url}/oauth/token`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from('c1:s1').toString('base64')}` },
        body: new URLSearchParams({ grant_type: 'client_credentials' }),
      });
      const token = await json(res);
      expect(token).toMatchObject({ token_type: 'Bearer', expires_in: 60 });
      expect((await fetch(`${secured.url}/Patient/x`, { headers: { authorization: `Bearer ${token.access_token}` } })).status).toBe(404);
      secured.revokeTokens();
      expect((await fetch(`${secured.url}/Patient/x`, { headers: { authorization: `Bearer ${token.access_token}` } })).status).toBe(401);
    } finally {
      await secured.close();
    }
  });
});

describe('sp-bridge mock-gp', () => {
  it('parses its options; --host is the only way off loopback', () => {
    expect(parseMockGpArgs([], {})).toEqual({ port: 8090, host: '127.0.0.1' });
    expect(parseMockGpArgs(['--port', '0', '--host', '0.0.0.0'], {})).toEqual({ port: 0, host: '0.0.0.0', allowNonLoopback: true });
    expect(parseMockGpArgs(['--port', 'x'], {})).toMatch(/--port needs a port number/);
    expect(parseMockGpArgs(['--client-id', 'c'], {})).toMatch(/MOCK_GP_CLIENT_SECRET/);
    expect(parseMockGpArgs(['--client-id', 'c'], { MOCK_GP_CLIENT_SECRET: 's' })).toMatchObject({ auth: { clientId: 'c', clientSecret: 's' } });
  });

  it('is listed in the usage and rejects bad options with exit code 2', () => {
    const lines: string[] = [];
    expect(main(['--help'], (l) => lines.push(l))).toBe(0);
    expect(lines.join('\n')).toMatch(/mock-gp/);
    expect(main(['mock-gp', '--bogus'], (l) => lines.push(l))).toBe(2);
  });

  it('starts, answers, logs requests without bodies, and stops on /_control/shutdown', async () => {
    const lines: string[] = [];
    let listening: (line: string) => void = () => undefined;
    const started = new Promise<string>((resolve) => (listening = resolve));
    const code = main(['mock-gp', '--port', '0'], (line) => {
      lines.push(line);
      if (line.startsWith('mock-gp listening on ')) listening(line.slice('mock-gp listening on '.length));
    });
    expect(code).toBe(0);
    const url = await started;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const res = await fetch(`${url}/Patient/p9`, { method: 'PUT', headers: FHIR, body: JSON.stringify(patient(NHS_NUMBERS[1], { id: 'p9' })) });
    expect(res.status).toBe(201);
    expect(lines).toContain('PUT /Patient/p9 201');
    expect(lines.join('\n')).not.toContain(NHS_NUMBERS[1]);
    expect((await fetch(`${url}/_control/shutdown`, { method: 'POST' })).status).toBe(200);
    // closed: a new connection is refused
    for (let i = 0; i < 50; i++) {
      const up = await fetch(`${url}/metadata`).then(() => true, () => false);
      if (!up) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error('mock-gp did not stop');
  });
});
