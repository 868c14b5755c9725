/**
 * The fhir-rest adapter against the mock GP receiver over real loopback sockets.
 */
import { randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Ajv from 'ajv';
import { fhirRestAdapter, parseRetryAfter } from '../../src/delivery/adapters/fhir-rest';
import type { DeliveryAdapter, DeliveryItem } from '../../src/delivery/adapter';
import { startMockGp, type MockGp } from '../../src/mock/gp';
import { NHS_NUMBERS, patient, referral } from '../fixtures';

const REFERRAL_SYSTEM = 'https://sp-bridge.example/referral';

function item(resource: fhir4.Resource | undefined, extra: Partial<DeliveryItem> = {}): DeliveryItem {
  return {
    idempotencyKey: randomUUID(),
    destinationId: 'gp-test',
    event: 'created',
    resourceType: resource?.resourceType ?? 'ServiceRequest',
    resourceId: resource?.id ?? randomUUID(),
    versionId: '1',
    resource,
    patientRef: 'Patient/pat-1',
    attempt: 1,
    ...extra,
  };
}

function aReferral(): fhir4.ServiceRequest {
  return { ...referral('Patient/pat-1'), id: randomUUID(), meta: { versionId: '7', lastUpdated: '2026-03-14T10:30:00Z' } };
}

const signal = (): AbortSignal => new AbortController().signal;

describe('fhir-rest adapter', () => {
  let gp: MockGp;
  const adapters: DeliveryAdapter[] = [];
  function adapter(settings: Record<string, unknown> = {}, env: NodeJS.ProcessEnv = {}): DeliveryAdapter {
    const a = fhirRestAdapter.create({ baseUrl: gp.url, ...settings }, env);
    adapters.push(a);
    return a;
  }

  beforeAll(async () => {
    gp = await startMockGp({ port: 0 });
  });
  afterEach(async () => {
    await Promise.all(adapters.splice(0).map((a) => a.stop?.()));
    gp.reset();
  });
  afterAll(async () => {
    await gp.close();
  });

  it('declares its name and a JSON schema of its settings that ajv compiles', () => {
    expect(fhirRestAdapter.name).toBe('fhir-rest');
    expect(fhirRestAdapter.settingsSchema).toMatchObject({ type: 'object', required: ['baseUrl'] });
    const check = new Ajv({ allErrors: true, strict: false }).compile(fhirRestAdapter.settingsSchema);
    const full = {
      baseUrl: 'https://gp.example.nhs.uk/fhir/R4',
      writeMode: 'conditional-create',
      identifierSystems: { ServiceRequest: REFERRAL_SYSTEM },
      resourceTypes: ['ServiceRequest'],
      timeouts: { connectMs: 5000, headersMs: 20000, bodyMs: 20000 },
      tls: { caFile: '/etc/sp-bridge/hscn-ca.pem', certFile: '/etc/sp-bridge/client.pem', keyFile: '/etc/sp-bridge/client.key', rejectUnauthorized: true },
      auth: { type: 'oauth2-client-credentials', tokenUrl: 'https://auth.example.nhs.uk/token', clientId: 'sp-bridge', clientSecretEnv: 'GP_SECRET', scope: 'system/*.write' },
      headers: { 'x-practice-ods': 'B82005' },
    };
    expect(check(full)).toBe(true);
    expect(check({ baseUrl: 'https://x', writeMode: 'post' })).toBe(false);
    expect(check({ baseUrl: 'https://x', auth: { type: 'oauth2-client-credentials', tokenUrl: 'https://t', clientId: 'a', clientSecret: 'inline!' } })).toBe(false);
    expect(() => fhirRestAdapter.create({}, {})).toThrow(/'baseUrl' is required/);
    expect(() => fhirRestAdapter.create({ baseUrl: 'ftp://x' }, {})).toThrow(/'baseUrl' must be an http\(s\) URL/);
    expect(() =>
      fhirRestAdapter.create({ baseUrl: 'http://127.0.0.1:1', auth: { type: 'oauth2-client-credentials', tokenUrl: 'http://127.0.0.1:1/t', clientId: 'a', clientSecretEnv: 'NOPE_SECRET' } }, {}),
    ).toThrow(/auth.clientSecretEnv.*NOPE_SECRET, which is not set/);
    expect(() => fhirRestAdapter.create({ baseUrl: 'http://127.0.0.1:1', tls: { caFile: '/nonexistent/ca.pem' } }, {})).toThrow(/tls.caFile/);
  });

  it('PUTs by id and reports delivered on 201, with the idempotency key as Idempotency-Key and X-Request-Id', async () => {
    const resource = aReferral();
    const it1 = item(resource);
    const outcome = await adapter().deliver(it1, signal());
    expect(outcome).toEqual({ kind: 'delivered', summary: `PUT ServiceRequest/${resource.id} -> 201`, httpStatus: 201 });
    const { requests, deliveries } = gp.received();
    expect(deliveries).toBe(1);
    expect(requests[0]).toMatchObject({ method: 'PUT', resourceType: 'ServiceRequest', id: resource.id, idempotencyKey: it1.idempotencyKey, requestId: it1.idempotencyKey, status: 201 });
    const stored = gp.store.current('ServiceRequest', resource.id as string)?.resource as fhir4.ServiceRequest;
    expect(stored.identifier).toEqual(resource.identifier);
    // our version metadata is not sent: the receiver numbers its own versions
    expect(stored.meta?.versionId).toBe('1');
  });

  it('a second version of the same record updates it (200)', async () => {
    const a = adapter();
    const resource = aReferral();
    await a.deliver(item(resource), signal());
    const outcome = await a.deliver(item({ ...resource, status: 'completed' } as fhir4.ServiceRequest, { event: 'status-changed', versionId: '2' }), signal());
    expect(outcome).toMatchObject({ kind: 'delivered', summary: expect.stringMatching(/-> 200$/) });
    expect(gp.store.history('ServiceRequest', resource.id as string)).toHaveLength(2);
  });

  it('retries on 503, passing Retry-After in seconds, then delivers', async () => {
    const a = adapter();
    gp.fail({ status: 503, retryAfter: 7 });
    const it1 = item(aReferral());
    const first = await a.deliver(it1, signal());
    expect(first).toMatchObject({ kind: 'retry', summary: expect.stringMatching(/-> 503$/), retryAfterMs: 7000, httpStatus: 503 });
    expect(first.kind === 'retry' && first.outcome?.resourceType).toBe('OperationOutcome');
    const second = await a.deliver({ ...it1, attempt: 2 }, signal());
    expect(second.kind).toBe('delivered');
    expect(gp.received().deliveries).toBe(1);
  });

  it('retries on 429 with an HTTP-date Retry-After', async () => {
    const when = new Date(Date.now() + 120_000).toUTCString();
    gp.fail({ status: 429, retryAfter: when });
    const outcome = await adapter().deliver(item(aReferral()), signal());
    expect(outcome.kind).toBe('retry');
    const ms = outcome.kind === 'retry' ? (outcome.retryAfterMs ?? 0) : 0;
    expect(ms).toBeGreaterThan(110_000);
    expect(ms).toBeLessThanOrEqual(120_000);
  });

  it('retries on 408 and 500 without Retry-After', async () => {
    const a = adapter();
    gp.fail({ status: 408 });
    gp.fail({ status: 500 });
    const first = await a.deliver(item(aReferral()), signal());
    const second = await a.deliver(item(aReferral()), signal());
    expect(first).toMatchObject({ kind: 'retry', summary: expect.stringMatching(/-> 408$/) });
    expect(second).toMatchObject({ kind: 'retry', summary: expect.stringMatching(/-> 500$/) });
    expect(first.kind === 'retry' && first.retryAfterMs).toBeUndefined();
  });

  it('fails on 400 with the receiver’s OperationOutcome', async () => {
    // the receiver refuses a body whose resourceType is not the URL's
    const outcome = await adapter().deliver(item(patient(NHS_NUMBERS[1], { id: 'p1' }), { resourceType: 'ServiceRequest', resourceId: 'p1' }), signal());
    expect(outcome.kind).toBe('failed');
    if (outcome.kind !== 'failed') return;
    expect(outcome.summary).toBe('PUT ServiceRequest/p1 -> 400');
    expect(outcome.outcome.issue[0]).toMatchObject({ severity: 'error', code: 'invalid', diagnostics: expect.stringMatching(/resourceType 'Patient'/) });
  });

  it('fails on 422 with the receiver’s OperationOutcome', async () => {
    const rejection: fhir4.OperationOutcome = {
      resourceType: 'OperationOutcome',
      issue: [{ severity: 'error', code: 'business-rule', diagnostics: 'Practice does not accept social prescribing referrals', expression: ['ServiceRequest.performer'] }],
    };
    gp.fail({ status: 422, outcome: rejection });
    const outcome = await adapter().deliver(item(aReferral()), signal());
    expect(outcome).toEqual({ kind: 'failed', summary: expect.stringMatching(/-> 422$/), outcome: rejection, httpStatus: 422 });
  });

  it('fails on a 4xx without an OperationOutcome with one describing the status', async () => {
    gp.fail({ status: 403, outcome: { not: 'an outcome' } as unknown as fhir4.OperationOutcome });
    const outcome = await adapter().deliver(item(aReferral()), signal());
    expect(outcome).toMatchObject({ kind: 'failed', outcome: { issue: [{ code: 'forbidden', diagnostics: 'The destination answered 403' }] } });
  });

  it('retries when the response headers do not come within the timeout', async () => {
    // undici checks headers timeouts on a coarse (about half-second) clock: give it room
    gp.fail({ delayMs: 4000 });
    const a = adapter({ timeouts: { headersMs: 200 } });
    const started = Date.now();
    const outcome = await a.deliver(item(aReferral()), signal());
    expect(Date.now() - started).toBeLessThan(2500);
    expect(outcome).toMatchObject({ kind: 'retry', summary: expect.stringMatching(/no response headers within 200 ms/), outcome: { issue: [{ code: 'timeout' }] } });
  });

  it('retries when the connection is dropped, and the retry is delivered', async () => {
    const a = adapter();
    gp.fail({ drop: true });
    const it1 = item(aReferral());
    const first = await a.deliver(it1, signal());
    expect(first).toMatchObject({ kind: 'retry', outcome: { issue: [{ code: 'transient' }] } });
    expect(await a.deliver({ ...it1, attempt: 2 }, signal())).toMatchObject({ kind: 'delivered' });
    expect(gp.received().requests.map((r) => r.dropped)).toEqual([true, false]);
  });

  it('retries when nothing listens', async () => {
    const closed = await startMockGp({ port: 0 });
    const url = closed.url;
    await closed.close();
    const a = fhirRestAdapter.create({ baseUrl: url }, {});
    adapters.push(a);
    expect(await a.deliver(item(aReferral()), signal())).toMatchObject({ kind: 'retry', summary: expect.stringMatching(/refused/) });
  });

  it('retries (does not throw) when the engine aborts the delivery', async () => {
    gp.fail({ delayMs: 1000 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    expect(await adapter().deliver(item(aReferral()), controller.signal)).toMatchObject({ kind: 'retry', summary: expect.stringMatching(/aborted/) });
  });

  it('a replayed delivery is de-duplicated by the receiver on its idempotency key', async () => {
    const a = adapter();
    const it1 = item(aReferral());
    // the first attempt is processed but its answer never arrives in time: the engine retries
    gp.fail({ delayMs: 2500 });
    const slow = fhirRestAdapter.create({ baseUrl: gp.url, timeouts: { headersMs: 100 } }, {});
    adapters.push(slow);
    expect((await slow.deliver(it1, signal())).kind).toBe('retry');
    expect(gp.received().deliveries).toBe(0);
    while (gp.received().deliveries === 0) await new Promise((r) => setTimeout(r, 50));
    expect(await a.deliver({ ...it1, attempt: 2 }, signal())).toMatchObject({ kind: 'delivered' });
    expect(await a.deliver({ ...it1, attempt: 3 }, signal())).toMatchObject({ kind: 'delivered' });
    const received = gp.received();
    expect(received.deliveries).toBe(1);
    expect(received.duplicates).toBe(2);
    expect(received.requests.map((r) => r.duplicate)).toEqual([false, true, true]);
    expect(gp.store.history('ServiceRequest', it1.resourceId)).toHaveLength(1);
  });

  it('deletes with DELETE [type]/[id]; a record already gone counts as delivered', async () => {
    const a = adapter();
    const resource = aReferral();
    await a.deliver(item(resource), signal());
    const deletion = item(undefined, { event: 'deleted', resourceType: 'ServiceRequest', resourceId: resource.id as string, versionId: '2' });
    expect(await a.deliver(deletion, signal())).toEqual({ kind: 'delivered', summary: `DELETE ServiceRequest/${resource.id} -> 204`, httpStatus: 204 });
    expect(gp.store.current('ServiceRequest', resource.id as string)?.resource).toBeUndefined();
    const never = item(undefined, { event: 'deleted', resourceType: 'ServiceRequest', resourceId: 'never-sent' });
    expect(await a.deliver(never, signal())).toMatchObject({ kind: 'delivered', summary: expect.stringMatching(/404 \(already gone\)/) });
  });

  describe('conditional-create mode', () => {
    const settings = { writeMode: 'conditional-create', identifierSystems: { ServiceRequest: REFERRAL_SYSTEM } };

    it('creates with POST and If-None-Exist on the business identifier, without our id', async () => {
      const a = adapter(settings);
      const resource = aReferral();
      const value = resource.identifier?.[0].value as string;
      const outcome = await a.deliver(item(resource), signal());
      expect(outcome).toEqual({ kind: 'delivered', summary: `POST ServiceRequest (If-None-Exist on ${REFERRAL_SYSTEM}) -> 201`, httpStatus: 201 });
      expect(outcome.summary).not.toContain(value);
      const [request] = gp.received().requests;
      expect(request).toMatchObject({ method: 'POST', path: '/ServiceRequest', ifNoneExist: `identifier=${encodeURIComponent(REFERRAL_SYSTEM)}|${value}` });
      const [stored] = gp.store.search('ServiceRequest', { system: REFERRAL_SYSTEM, value });
      expect(stored.id).not.toBe(resource.id);
    });

    it('a second create of the same identifier (new idempotency key) finds it: 200, nothing new stored', async () => {
      const a = adapter(settings);
      const resource = aReferral();
      await a.deliver(item(resource), signal());
      expect(await a.deliver(item(resource), signal())).toMatchObject({ kind: 'delivered', summary: expect.stringMatching(/-> 200 \(already present\)$/) });
      expect(gp.received().stored).toEqual({ ServiceRequest: 1 });
    });

    it('later versions are conditional updates and deletions conditional deletes', async () => {
      const a = adapter(settings);
      const resource = aReferral();
      const value = resource.identifier?.[0].value as string;
      await a.deliver(item(resource), signal());
      const updated = await a.deliver(item({ ...resource, status: 'on-hold' } as fhir4.ServiceRequest, { event: 'updated' }), signal());
      expect(updated).toMatchObject({ kind: 'delivered', summary: `PUT ServiceRequest?identifier=${REFERRAL_SYSTEM}|… -> 200` });
      const [stored] = gp.store.search('ServiceRequest', { system: REFERRAL_SYSTEM, value });
      expect((stored as fhir4.ServiceRequest).status).toBe('on-hold');
      const deleted = await a.deliver(item(resource, { event: 'deleted' }), signal());
      expect(deleted).toMatchObject({ kind: 'delivered', summary: expect.stringMatching(/^DELETE ServiceRequest\?identifier=.* -> 204$/) });
      expect(gp.store.search('ServiceRequest', { system: REFERRAL_SYSTEM, value })).toHaveLength(0);
      // without the resource there is no identifier to delete by
      expect(await a.deliver(item(undefined, { event: 'deleted' }), signal())).toMatchObject({ kind: 'failed', outcome: { issue: [{ code: 'not-supported' }] } });
    });

    it('escapes identifier values that contain search syntax', async () => {
      const a = adapter(settings);
      const value = 'REF|2026,03$14\\a b&c=d';
      const resource = { ...aReferral(), identifier: [{ system: REFERRAL_SYSTEM, value }] };
      expect(await a.deliver(item(resource), signal())).toMatchObject({ kind: 'delivered', httpStatus: 201 });
      expect(await a.deliver(item(resource), signal())).toMatchObject({ kind: 'delivered', httpStatus: 200 });
      expect(gp.store.search('ServiceRequest', { system: REFERRAL_SYSTEM, value })).toHaveLength(1);
    });

    it('fails a resource without the identifier to match on', async () => {
      const resource = { ...aReferral(), identifier: [{ system: 'https://other.example/id', value: 'x' }] };
      expect(await adapter(settings).deliver(item(resource), signal())).toMatchObject({ kind: 'failed', outcome: { issue: [{ code: 'required' }] } });
      expect(gp.received().requests).toHaveLength(0);
    });
  });

  describe('OAuth2 client credentials', () => {
    let secured: MockGp;
    const env = { GP_CLIENT_SECRET: 's3cret/with:odd chars' };
    beforeAll(async () => {
      secured = await startMockGp({ port: 0, auth: { clientId: 'sp-bridge', clientSecret: env.GP_CLIENT_SECRET } });
    });
    afterEach(() => secured.reset());
    afterAll(() => secured.close());
    const auth = (clientAuthentication = 'basic') => ({
      type: 'oauth2-client-credentials',
      tokenUrl: `${secured.url}/oauth/token`,
      clientId: 'sp-bridge',
      clientSecretEnv: 'GP_CLIENT_SECRET',
      clientAuthentication,
    });

    it('fetches a token once and reuses it', async () => {
      const a = fhirRestAdapter.create({ baseUrl: secured.url, auth: auth() }, env);
      adapters.push(a);
      const outcomes = await Promise.all([1, 2, 3].map(() => a.deliver(item(aReferral()), signal())));
      outcomes.push(await a.deliver(item(aReferral()), signal()));
      expect(outcomes.map((o) => o.kind)).toEqual(['delivered', 'delivered', 'delivered', 'delivered']);
      expect(secured.received().tokensIssued).toBe(1);
    });

    it('on a 401 fetches a new token once and sends again', async () => {
      const a = fhirRestAdapter.create({ baseUrl: secured.url, auth: auth('body') }, env);
      adapters.push(a);
      expect((await a.deliver(item(aReferral()), signal())).kind).toBe('delivered');
      secured.revokeTokens();
      expect((await a.deliver(item(aReferral()), signal())).kind).toBe('delivered');
      const received = secured.received();
      expect(received.tokensIssued).toBe(2);
      expect(received.requests.map((r) => r.status)).toEqual([201, 401, 201]);
    });

    it('a 401 that survives a fresh token fails with the receiver’s outcome', async () => {
      const a = fhirRestAdapter.create({ baseUrl: secured.url, auth: auth() }, env);
      adapters.push(a);
      secured.fail({ status: 401, count: 2, outcome: { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'security', diagnostics: 'revoked' }] } });
      expect(await a.deliver(item(aReferral()), signal())).toMatchObject({ kind: 'failed', outcome: { issue: [{ diagnostics: 'revoked' }] } });
      expect(secured.received().tokensIssued).toBe(2);
    });

    it('wrong client credentials fail; a token endpoint that is down retries', async () => {
      const wrong = fhirRestAdapter.create({ baseUrl: secured.url, auth: auth() }, { GP_CLIENT_SECRET: 'wrong' });
      adapters.push(wrong);
      expect(await wrong.deliver(item(aReferral()), signal())).toMatchObject({ kind: 'failed', summary: 'token request -> 401 (invalid_client)' });
      const a = fhirRestAdapter.create({ baseUrl: secured.url, auth: auth() }, env);
      adapters.push(a);
      secured.fail({ status: 503, retryAfter: 3, target: 'token' });
      expect(await a.deliver(item(aReferral()), signal())).toMatchObject({ kind: 'retry', summary: 'token request -> 503', retryAfterMs: 3000 });
      expect(secured.received().requests).toHaveLength(0);
    });

    it('an abort while the token is being fetched answers retry at once', async () => {
      const a = fhirRestAdapter.create({ baseUrl: secured.url, auth: auth() }, env);
      adapters.push(a);
      secured.fail({ delayMs: 2000, target: 'token' });
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 100);
      const started = Date.now();
      expect(await a.deliver(item(aReferral()), controller.signal)).toMatchObject({ kind: 'retry', summary: expect.stringMatching(/aborted/) });
      expect(Date.now() - started).toBeLessThan(1500);
    });

    it('without a token the receiver answers 401', async () => {
      const a = fhirRestAdapter.create({ baseUrl: secured.url }, {});
      adapters.push(a);
      expect(await a.deliver(item(aReferral()), signal())).toMatchObject({ kind: 'failed', outcome: { issue: [{ code: 'login' }] } });
    });
  });
});

/** A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, made with the openssl CLI. */
function makeCertificates(dir: string): boolean {
  const openssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  try {
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=sp-bridge test CA');
    for (const name of ['server', 'client']) {
      openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name === 'server' ? '127.0.0.1' : 'sp-bridge'}`);
      openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2',
        ...(name === 'server' ? ['-extfile', writeExt(dir)] : []));
    }
    return true;
  } catch {
    return false;
  }
}

function writeExt(dir: string): string {
  const file = path.join(dir, 'server.ext');
  writeFileSync(file, 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  return file;
}

describe('fhir-rest adapter over TLS', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sp-fhir-rest-tls-'));
  const haveCerts = makeCertificates(dir);
  const file = (name: string): string => path.join(dir, name);
  let gp: MockGp;
  const adapters: DeliveryAdapter[] = [];
  const adapter = (tls: Record<string, unknown>): DeliveryAdapter => {
    const a = fhirRestAdapter.create({ baseUrl: gp.url, tls }, {});
    adapters.push(a);
    return a;
  };

  beforeAll(async () => {
    if (!haveCerts) {
      process.stderr.write('openssl is not available: the TLS tests of the fhir-rest adapter are skipped\n');
      return;
    }
    gp = await startMockGp({
      port: 0,
      tls: { key: readFileSync(file('server.key')), cert: readFileSync(file('server.pem')), ca: readFileSync(file('ca.pem')), requireClientCert: true },
    });
  });
  afterEach(async () => {
    await Promise.all(adapters.splice(0).map((a) => a.stop?.()));
    gp?.reset();
  });
  afterAll(async () => {
    await gp?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const maybe = haveCerts ? it : it.skip;

  maybe('delivers with a trusted CA file and a client certificate (mutual TLS)', async () => {
    expect(gp.url).toMatch(/^https:/);
    const outcome = await adapter({ caFile: file('ca.pem'), certFile: file('client.pem'), keyFile: file('client.key') }).deliver(item(aReferral()), signal());
    expect(outcome).toMatchObject({ kind: 'delivered', httpStatus: 201 });
  });

  maybe('retries when the server certificate is not trusted, naming the TLS error', async () => {
    const outcome = await adapter({ certFile: file('client.pem'), keyFile: file('client.key') }).deliver(item(aReferral()), signal());
    expect(outcome).toMatchObject({ kind: 'retry', summary: expect.stringMatching(/CERT|certificate/i) });
    expect(gp.received().requests).toHaveLength(0);
  });

  maybe('rejectUnauthorized: false accepts an untrusted server certificate', async () => {
    const outcome = await adapter({ rejectUnauthorized: false, certFile: file('client.pem'), keyFile: file('client.key') }).deliver(item(aReferral()), signal());
    expect(outcome.kind).toBe('delivered');
  });

  maybe('retries when the server wants a client certificate and none is given', async () => {
    const outcome = await adapter({ caFile: file('ca.pem') }).deliver(item(aReferral()), signal());
    expect(outcome.kind).toBe('retry');
  });
});

describe('parseRetryAfter', () => {
  it('reads delta-seconds and HTTP dates, and ignores nonsense', () => {
    const now = Date.parse('2026-03-14T10:00:00Z');
    expect(parseRetryAfter('120', now)).toBe(120_000);
    expect(parseRetryAfter('Sat, 14 Mar 2026 10:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Sat, 14 Mar 2026 09:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });
});
