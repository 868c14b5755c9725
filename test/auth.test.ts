import type { Server } from 'node:http';
import { createLocalJWKSet, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { Grant } from '../src/auth/scopes';
import { TokenService } from '../src/auth/tokens';
import { ConfigError, loadConfig } from '../src/config';
import { patient, referral, wellbeing } from './fixtures';
import { assertion, AuthHarness, jwksServer, makeClient, TOKEN_URL, tokenForm, type TestClient } from './support/auth';
import { openTestDatabase, storeNames } from './support/harness';

const ALL = 'system/*.cruds sp-bridge/admin';


for (const store of storeNames()) {
  describe(`SMART Backend Services auth [${store}]`, () => {
    let vendor: TestClient;
    let rsaVendor: TestClient;
    let reader: TestClient;
    let remote: TestClient;
    let outsider: TestClient;
    let jwks: { server: Server; url: string };
    let issuerJwks: { server: Server; url: string };
    let issuerKey: CryptoKey;
    let h: AuthHarness;

    beforeAll(async () => {
      vendor = await makeClient('emis-test');
      rsaVendor = await makeClient('tpp-test', 'RS384');
      reader = await makeClient('dashboard');
      remote = await makeClient('remote-keys');
      outsider = await makeClient('not-registered');
      jwks = await jwksServer([remote.publicJwk]);
      const issuer = await generateKeyPair('ES256');
      issuerKey = issuer.privateKey;
      issuerJwks = await jwksServer([{ ...(await exportJWK(issuer.publicKey)), kid: 'idp-1', alg: 'ES256' }]);
      h = new AuthHarness(
        store,
        [
          { client: vendor, scopes: [ALL] },
          { client: rsaVendor, scopes: ['system/ServiceRequest.cruds', 'system/Patient.cruds'] },
          { client: reader, scopes: ['system/Observation.rs', 'system/Patient.read'] },
        ],
        {
          jwksUrlClients: [{ clientId: remote.clientId, jwksUrl: jwks.url, scopes: ['system/Patient.rs'] }],
          trustProxy: '127.0.0.1',
          external: { issuer: 'https://idp.test', jwksUrl: issuerJwks.url, audience: 'https://sp.test/fhir' },
        },
      );
      await h.start();
    });
    afterAll(async () => {
      await h.stop();
      jwks.server.close();
      issuerJwks.server.close();
    });

    const postToken = (payload: string, contentType = 'application/x-www-form-urlencoded') =>
      h.app.inject({ method: 'POST', url: '/auth/token', headers: { 'content-type': contentType }, payload });

    describe('token endpoint', () => {
      it('issues a short-lived bearer token for a good ES384 assertion, with the scopes asked for', async () => {
        const res = await postToken(tokenForm(await assertion(vendor), 'system/ServiceRequest.cruds system/Patient.rs'));
        expect(res.statusCode).toBe(200);
        expect(res.headers['cache-control']).toBe('no-store');
        const body = JSON.parse(res.body);
        expect(body).toMatchObject({ token_type: 'bearer', expires_in: 300, scope: 'system/ServiceRequest.cruds system/Patient.rs' });
        const read = await h.request('GET', '/ServiceRequest', body.access_token);
        expect(read.status).toBe(200);
      });

      it('accepts RS384 and keys fetched from a registered JWKS URL', async () => {
        expect((await postToken(tokenForm(await assertion(rsaVendor), 'system/Patient.read'))).statusCode).toBe(200);
        expect((await postToken(tokenForm(await assertion(remote), 'system/Patient.rs'))).statusCode).toBe(200);
      });

      it('grants only the requested scopes the client is registered for', async () => {
        const res = await postToken(tokenForm(await assertion(reader), 'system/Observation.rs system/Observation.cud system/Patient.rs'));
        expect(res.statusCode).toBe(200);
        expect(JSON.parse(res.body).scope).toBe('system/Observation.rs system/Patient.rs');
        const none = await postToken(tokenForm(await assertion(reader), 'system/ServiceRequest.c sp-bridge/admin'));
        expect(none.statusCode).toBe(400);
        expect(JSON.parse(none.body).error).toBe('invalid_scope');
      });

      it('refuses an expired assertion', async () => {
        const now = Math.floor(Date.now() / 1000);
        const res = await postToken(tokenForm(await assertion(vendor, { exp: now - 600, iat: now - 900 }), 'system/Patient.rs'));
        expect(res.statusCode).toBe(401);
        expect(JSON.parse(res.body)).toMatchObject({ error: 'invalid_client', error_description: expect.stringMatching(/expired/) });
      });

      it('refuses an assertion that lives longer than five minutes', async () => {
        const res = await postToken(tokenForm(await assertion(vendor, { exp: Math.floor(Date.now() / 1000) + 3600 }), 'system/Patient.rs'));
        expect(res.statusCode).toBe(401);
        expect(JSON.parse(res.body).error_description).toMatch(/five minutes/);
      });

      it('refuses a replayed assertion (same jti)', async () => {
        const once = await assertion(vendor);
        expect((await postToken(tokenForm(once, 'system/Patient.rs'))).statusCode).toBe(200);
        const again = await postToken(tokenForm(once, 'system/Patient.rs'));
        expect(again.statusCode).toBe(400);
        expect(JSON.parse(again.body)).toMatchObject({ error: 'invalid_grant', error_description: expect.stringMatching(/already used/) });
      });

      it('refuses an assertion signed with a key the client did not register', async () => {
        const stranger = await generateKeyPair('ES384');
        const res = await postToken(tokenForm(await assertion(vendor, {}, { key: stranger.privateKey }), 'system/Patient.rs'));
        expect(res.statusCode).toBe(401);
        expect(JSON.parse(res.body).error).toBe('invalid_client');
      });

      it('refuses an unknown client', async () => {
        const res = await postToken(tokenForm(await assertion(outsider), 'system/Patient.rs'));
        expect(res.statusCode).toBe(401);
        expect(JSON.parse(res.body)).toMatchObject({ error: 'invalid_client', error_description: expect.stringMatching(/no registered client/) });
      });

      it('refuses the wrong audience, a sub that differs from iss, and an algorithm other than RS384/ES384', async () => {
        const wrongAud = await postToken(tokenForm(await assertion(vendor, { aud: 'https://elsewhere/token' }), 'system/Patient.rs'));
        expect(JSON.parse(wrongAud.body).error_description).toMatch(/aud/);
        const wrongSub = await postToken(tokenForm(await assertion(vendor, { sub: 'someone-else' }), 'system/Patient.rs'));
        expect(JSON.parse(wrongSub.body).error_description).toMatch(/sub/);
        const es256 = await generateKeyPair('ES256');
        const wrongAlg = await postToken(tokenForm(await assertion(vendor, {}, { key: es256.privateKey, alg: 'ES256' }), 'system/Patient.rs'));
        expect(wrongAlg.statusCode).toBe(401);
        for (const r of [wrongAud, wrongSub]) expect(r.statusCode).toBe(401);
      });

      it('names the problem with a malformed request in OAuth terms', async () => {
        const grant = await postToken(tokenForm(await assertion(vendor), 'system/Patient.rs', { grant_type: 'authorization_code' }));
        expect(JSON.parse(grant.body).error).toBe('unsupported_grant_type');
        const type = await postToken(tokenForm(await assertion(vendor), 'system/Patient.rs', { client_assertion_type: 'basic' }));
        expect(JSON.parse(type.body).error).toBe('invalid_request');
        const json = await postToken(JSON.stringify({ grant_type: 'client_credentials' }), 'application/json');
        expect(json.statusCode).toBe(400);
        expect(JSON.parse(json.body).error).toBe('invalid_request');
        const notJwt = await postToken(tokenForm('not-a-jwt', 'system/Patient.rs'));
        expect(JSON.parse(notJwt.body).error).toBe('invalid_client');
      });

      it('describes itself at /.well-known/smart-configuration without a token', async () => {
        const res = await h.request('GET', '/.well-known/smart-configuration', undefined);
        expect(res.status).toBe(200);
        expect(res.json).toMatchObject({
          token_endpoint: 'http://sp.test/auth/token',
          grant_types_supported: ['client_credentials'],
          token_endpoint_auth_methods_supported: ['private_key_jwt'],
          token_endpoint_auth_signing_alg_values_supported: expect.arrayContaining(['RS384', 'ES384']),
        });
      });
    });

    describe('bearer tokens', () => {
      it('serves /metadata without a token', async () => {
        expect((await h.request('GET', '/metadata', undefined)).status).toBe(200);
      });

      it('answers a request without a token with 401, an OperationOutcome and WWW-Authenticate, writing nothing', async () => {
        const res = await h.request('POST', '/Patient', undefined, patient());
        expect(res.status).toBe(401);
        expect(res.headers['www-authenticate']).toBe('Bearer');
        expect(res.json).toMatchObject({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'login' }] });
        const token = await h.token(vendor, 'system/Patient.rs');
        expect((await h.request('GET', '/Patient', token)).json.total).toBe(0);
      });

      it('answers a forged, tampered or garbage token with 401', async () => {
        const token = await h.token(vendor, 'system/Patient.rs');
        const [header, payload, signature] = token.split('.');
        const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
        const widened = Buffer.from(JSON.stringify({ ...claims, scope: 'system/*.cruds' })).toString('base64url');
        for (const bad of [`${header}.${widened}.${signature}`, 'garbage', token.slice(0, -4) + 'AAAA']) {
          const res = await h.request('GET', '/Patient', bad);
          expect(res.status).toBe(401);
          expect(res.headers['www-authenticate']).toMatch(/error="invalid_token"/);
        }
        expect((await h.request('GET', '/Patient', token, undefined, { authorization: `Basic ${token}` })).status).toBe(401);
      });

      it('accepts a token from the configured external issuer and refuses one for another audience', async () => {
        const sign = (aud: string) =>
          new SignJWT({ scope: 'system/Patient.rs', client_id: 'idp-client' })
            .setProtectedHeader({ alg: 'ES256', kid: 'idp-1' })
            .setIssuer('https://idp.test')
            .setAudience(aud)
            .setExpirationTime('5m')
            .sign(issuerKey);
        expect((await h.request('GET', '/Patient', await sign('https://sp.test/fhir'))).status).toBe(200);
        expect((await h.request('POST', '/Patient', await sign('https://sp.test/fhir'), patient())).status).toBe(403);
        expect((await h.request('GET', '/Patient', await sign('https://other.test'))).status).toBe(401);
      });
    });

    describe('scopes', () => {
      let full: string;
      let patientId: string;
      let referralId: string;

      beforeAll(async () => {
        full = await h.token(vendor, ALL);
        const p = await h.request('POST', '/Patient', full, patient());
        patientId = p.json.id;
        const r = await h.request('POST', '/ServiceRequest', full, referral(`Patient/${patientId}`));
        referralId = r.json.id;
      });

      // Each interaction, the v2 scope it needs, and a v1 scope that also covers it.
      const matrix: { name: string; scope: string; v1: string; run: (token: string) => Promise<{ status: number }> }[] = [
        { name: 'create', scope: 'system/ServiceRequest.c', v1: 'system/ServiceRequest.write', run: (t) => h.request('POST', '/ServiceRequest', t, referral(`Patient/${patientId}`)) },
        { name: 'read', scope: 'system/ServiceRequest.r', v1: 'system/ServiceRequest.read', run: (t) => h.request('GET', `/ServiceRequest/${referralId}`, t) },
        { name: 'vread', scope: 'system/ServiceRequest.r', v1: 'system/ServiceRequest.read', run: (t) => h.request('GET', `/ServiceRequest/${referralId}/_history/1`, t) },
        { name: 'instance history', scope: 'system/ServiceRequest.r', v1: 'system/ServiceRequest.read', run: (t) => h.request('GET', `/ServiceRequest/${referralId}/_history`, t) },
        { name: 'search', scope: 'system/ServiceRequest.s', v1: 'system/ServiceRequest.read', run: (t) => h.request('GET', '/ServiceRequest?status=active', t) },
        { name: 'POST _search', scope: 'system/ServiceRequest.s', v1: 'system/ServiceRequest.read', run: (t) => h.request('POST', '/ServiceRequest/_search', t, 'status=active', { 'content-type': 'application/x-www-form-urlencoded' }) },
        { name: 'type history', scope: 'system/ServiceRequest.s', v1: 'system/ServiceRequest.read', run: (t) => h.request('GET', '/ServiceRequest/_history', t) },
        { name: 'update', scope: 'system/ServiceRequest.u', v1: 'system/ServiceRequest.write', run: (t) => h.request('PUT', `/ServiceRequest/${referralId}`, t, referral(`Patient/${patientId}`, { id: referralId })) },
        { name: 'search with _include of Patient', scope: 'system/ServiceRequest.s system/Patient.r', v1: 'system/ServiceRequest.read system/Patient.read', run: (t) => h.request('GET', '/ServiceRequest?_include=ServiceRequest:patient', t) },
        { name: '$validate', scope: 'system/Observation.r', v1: 'system/Observation.read', run: (t) => h.request('POST', '/Observation/$validate', t, { resourceType: 'Parameters', parameter: [{ name: 'resource', resource: wellbeing(`Patient/${patientId}`, 30) }] }) },
        { name: 'system history', scope: 'system/*.s', v1: 'system/*.read', run: (t) => h.request('GET', '/_history', t) },
      ];

      it.each(matrix)('$name is allowed with exactly $scope, and with $v1', async ({ scope, v1, run }) => {
        expect((await run(await h.token(vendor, scope))).status).toBeLessThan(300);
        expect((await run(await h.token(vendor, v1))).status).toBeLessThan(300);
      });

      it.each(matrix)('$name is refused with 403 and an OperationOutcome without it', async ({ scope, run }) => {
        // Every other permission on every type mentioned, but not the needed one.
        const letters = scope.split(' ').map((s) => s.split('.')[1]);
        const others = scope
          .split(' ')
          .map((s, i) => `${s.split('.')[0]}.${'cruds'.replace(new RegExp(`[${letters[i]}]`, 'g'), '')}`)
          .join(' ');
        const res = (await run(await h.token(vendor, `${others} system/Task.cruds`))) as { status: number; json?: { issue?: { code: string }[] } };
        expect(res.status).toBe(403);
        expect(res.json?.issue?.[0].code).toBe('forbidden');
      });

      it('refuses an _include of a type the token may not read', async () => {
        const token = await h.token(vendor, 'system/ServiceRequest.rs');
        expect((await h.request('GET', '/ServiceRequest', token)).status).toBe(200);
        expect((await h.request('GET', '/ServiceRequest?_include=ServiceRequest:subject', token)).status).toBe(403);
        expect((await h.request('GET', '/Patient?_revinclude=ServiceRequest:subject', await h.token(vendor, 'system/Patient.rs'))).status).toBe(403);
      });

      it('refuses delete without d, and deletes with it', async () => {
        const made = await h.request('POST', '/ServiceRequest', full, referral(`Patient/${patientId}`));
        const denied = await h.request('DELETE', `/ServiceRequest/${made.json.id}`, await h.token(vendor, 'system/ServiceRequest.crus'));
        expect(denied.status).toBe(403);
        expect((await h.request('GET', `/ServiceRequest/${made.json.id}`, full)).status).toBe(200);
        expect((await h.request('DELETE', `/ServiceRequest/${made.json.id}`, await h.token(vendor, 'system/ServiceRequest.d'))).status).toBe(200);
        expect((await h.request('GET', `/ServiceRequest/${made.json.id}`, full)).status).toBe(410);
      });

      it('needs s for a conditional update or delete, which search and tell whether something matched', async () => {
        const nhs = '9449310351';
        const body = patient(nhs);
        const url = `/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|${nhs}`;
        expect((await h.request('PUT', url, await h.token(vendor, 'system/Patient.cu'), body)).status).toBe(403);
        expect((await h.request('PUT', url, await h.token(vendor, 'system/Patient.cus'), body)).status).toBeLessThan(300);
        expect((await h.request('DELETE', url, await h.token(vendor, 'system/Patient.d'))).status).toBe(403);
        expect((await h.request('GET', url, full)).json.total).toBe(1);
        expect((await h.request('DELETE', url, await h.token(vendor, 'system/Patient.ds'))).status).toBe(200);
        expect((await h.request('GET', url, full)).json.total).toBe(0);
      });

      it('refuses a create without c and writes nothing', async () => {
        const before = (await h.request('GET', '/Observation?_summary=count', full)).json.total;
        const res = await h.request('POST', '/Observation', await h.token(vendor, 'system/Observation.rus'), wellbeing(`Patient/${patientId}`, 40));
        expect(res.status).toBe(403);
        expect((await h.request('GET', '/Observation?_summary=count', full)).json.total).toBe(before);
      });

      it('refuses a whole transaction when one entry is not allowed, writing none of it', async () => {
        const token = await h.token(vendor, 'system/Patient.cruds system/ServiceRequest.rs');
        const before = (await h.request('GET', '/Patient?_summary=count', full)).json.total;
        const bundle = {
          resourceType: 'Bundle',
          type: 'transaction',
          entry: [
            { fullUrl: 'urn:uuid:5a1c1c1e-0000-4000-8000-000000000001', resource: patient('9434765919'), request: { method: 'POST', url: 'Patient' } },
            { resource: referral('urn:uuid:5a1c1c1e-0000-4000-8000-000000000001'), request: { method: 'POST', url: 'ServiceRequest' } },
          ],
        };
        const res = await h.request('POST', '/', token, bundle);
        expect(res.status).toBe(403);
        expect(res.json.issue[0].diagnostics).toMatch(/Bundle.entry\[1\]/);
        expect((await h.request('GET', '/Patient?_summary=count', full)).json.total).toBe(before);
      });

      it('refuses only the entries of a batch that are not allowed', async () => {
        const token = await h.token(vendor, 'system/Patient.rs');
        const res = await h.request('POST', '/', token, {
          resourceType: 'Bundle',
          type: 'batch',
          entry: [
            { request: { method: 'GET', url: `Patient/${patientId}` } },
            { resource: referral(`Patient/${patientId}`), request: { method: 'POST', url: 'ServiceRequest' } },
          ],
        });
        expect(res.status).toBe(200);
        expect(res.json.entry.map((e: { response: { status: string } }) => e.response.status)).toEqual(['200 OK', '403 Forbidden']);
      });

      it('keeps the admin API and the audit trail to the admin scope, which wildcards do not imply', async () => {
        const wildcard = await h.token(vendor, 'system/*.cruds');
        expect((await h.request('GET', '/admin/deliveries/stats', wildcard)).status).toBe(403);
        expect((await h.request('GET', '/AuditEvent', wildcard)).status).toBe(403);
        const admin = await h.token(vendor, 'sp-bridge/admin');
        expect((await h.request('GET', '/admin/deliveries/stats', admin)).status).toBe(200);
        expect((await h.request('GET', '/AuditEvent', admin)).status).toBe(200);
        expect((await h.request('GET', '/Patient', admin)).status).toBe(403);
      });
    });

    describe('audit trail', () => {
      const events = async (admin: string, query: string) => {
        await h.audit.flush();
        const res = await h.request('GET', `/AuditEvent?${query}&_count=500`, admin);
        expect(res.status).toBe(200);
        return (res.json.entry ?? []).map((e: { resource: fhir4.AuditEvent }) => e.resource) as fhir4.AuditEvent[];
      };

      it('records reads, writes, denials and token issues, with who, what, when and outcome', async () => {
        const admin = await h.token(vendor, 'sp-bridge/admin');
        const readerToken = await h.token(reader, 'system/Patient.read system/Observation.rs');
        const created = await h.request('POST', '/Patient', await h.token(vendor, 'system/Patient.c'), patient('9449306060'));
        await h.request('GET', `/Patient/${created.json.id}`, readerToken);
        await h.request('DELETE', `/Patient/${created.json.id}`, readerToken);
        await h.request('GET', `/Patient/${created.json.id}`, undefined);
        await postToken(tokenForm(await assertion(outsider), 'system/Patient.rs'));

        const about = await events(admin, `entity=Patient/${created.json.id}`);
        const summary = about.map((e) => [e.subtype?.[0].code, e.action, e.outcome, e.agent[0].who?.identifier?.value ?? null]);
        expect(summary).toEqual(
          expect.arrayContaining([
            ['create', 'C', '0', 'emis-test'],
            ['read', 'R', '0', 'dashboard'],
            ['delete', 'D', '4', 'dashboard'],
            ['read', 'R', '4', null],
          ]),
        );
        for (const e of about) expect(Date.now() - Date.parse(e.recorded)).toBeLessThan(60_000);

        const logins = await events(admin, 'subtype=110122');
        expect(logins.some((e) => e.agent[0].who?.identifier?.value === 'dashboard' && e.outcome === '0')).toBe(true);
        expect(logins.some((e) => e.outcome === '4' && /no registered client/.test(e.outcomeDesc ?? ''))).toBe(true);
      });

      it('finds every read and search that disclosed a patient\'s records by that patient', async () => {
        const admin = await h.token(vendor, 'sp-bridge/admin');
        const writer = await h.token(vendor, 'system/Patient.c system/ServiceRequest.c');
        const p = await h.request('POST', '/Patient', writer, patient('9000000009'));
        const sr = await h.request('POST', '/ServiceRequest', writer, referral(`Patient/${p.json.id}`));
        const readerToken = await h.token(vendor, 'system/ServiceRequest.rs');
        await h.request('GET', `/ServiceRequest/${sr.json.id}`, readerToken);
        await h.request('GET', '/ServiceRequest?status=active&_count=500', readerToken);
        await h.request('POST', '/', readerToken, { resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: `ServiceRequest/${sr.json.id}` } }] });
        const about = await events(admin, `entity=Patient/${p.json.id}`);
        const seen = about.map((e) => [e.subtype?.[0].code, e.entity?.some((x) => x.what?.reference === `ServiceRequest/${sr.json.id}`)]);
        expect(seen).toEqual(expect.arrayContaining([['read', true], ['search-type', true], ['batch', true]]));
      });

      it('records every admin API call, refusals included', async () => {
        const admin = await h.token(vendor, 'sp-bridge/admin');
        await h.request('GET', '/admin/deliveries/stats', admin);
        await h.request('GET', '/admin/deliveries/stats', await h.token(vendor, 'system/Patient.rs'));
        await h.request('POST', '/admin/deliveries/1/replay', undefined);
        const seen = (await events(admin, 'date=ge2000-01-01'))
          .filter((e) => e.entity?.some((x) => x.name?.startsWith('/admin/')))
          .map((e) => [e.entity?.find((x) => x.name)?.name, e.outcome]);
        expect(seen).toEqual(
          expect.arrayContaining([
            ['/admin/deliveries/stats', '0'],
            ['/admin/deliveries/stats', '4'],
            ['/admin/deliveries/1/replay', '4'],
          ]),
        );
      });

      it("records the client's address from X-Forwarded-For when the proxy is trusted", async () => {
        const admin = await h.token(vendor, 'sp-bridge/admin');
        const made = await h.request('POST', '/Patient', await h.token(vendor, 'system/Patient.c'), patient('9449310475'), {
          'x-forwarded-for': '203.0.113.9',
        });
        const [event] = await events(admin, `entity=Patient/${made.json.id}`);
        expect(event.agent[0].network).toMatchObject({ address: '203.0.113.9' });
      });

      it('answers anyway when an AuditEvent cannot be written, and tells the operator (log and metric)', async () => {
        const token = await h.token(vendor, 'system/Patient.rs');
        await h.db.query('ALTER TABLE audit_events RENAME TO audit_events_away');
        try {
          expect((await h.request('GET', '/Patient', token)).status).toBe(200);
        } finally {
          await h.db.query('ALTER TABLE audit_events_away RENAME TO audit_events');
        }
        expect(h.logLines.some((l) => JSON.parse(l).msg === 'audit record not written')).toBe(true);
        const metrics = await h.request('GET', '/metrics', undefined);
        expect(metrics.body).toMatch(/^sp_bridge_audit_write_failures_total [1-9]/m);
      });

      it('cannot be created, changed or deleted through the API, even by an admin', async () => {
        const admin = await h.token(vendor, ALL);
        const [first] = await events(admin, 'action=R');
        const event: fhir4.AuditEvent = { ...first, outcome: '0' };
        expect((await h.request('POST', '/AuditEvent', admin, event)).status).toBe(405);
        expect((await h.request('PUT', `/AuditEvent/${first.id}`, admin, event)).status).toBe(405);
        expect((await h.request('DELETE', `/AuditEvent/${first.id}`, admin)).status).toBe(405);
        const inTransaction = await h.request('POST', '/', admin, {
          resourceType: 'Bundle',
          type: 'transaction',
          entry: [{ resource: event, request: { method: 'PUT', url: `AuditEvent/${first.id}` } }],
        });
        expect(inTransaction.status).toBeGreaterThanOrEqual(400);
        expect((await h.request('GET', `/AuditEvent/${first.id}`, admin)).json).toEqual(first);
      });
    });
  });
}

describe('access tokens over time', () => {
  it('are refused once expired, even after they were accepted before', async () => {
    const db = await openTestDatabase('pglite');
    try {
      const client = await makeClient('clocked');
      let now = Date.now();
      const tokens = await TokenService.create({
        db,
        config: { mode: 'smart', tokenLifetimeSeconds: 60 },
        clients: new Map([[client.clientId, { clientId: client.clientId, allowed: Grant.parse('system/Patient.rs'), keys: createLocalJWKSet({ keys: [client.publicJwk] }) }]]),
        clock: () => new Date(now),
      });
      const { token } = await tokens.issue(new URLSearchParams(tokenForm(await assertion(client), 'system/Patient.rs')), TOKEN_URL);
      expect((await tokens.authenticate(`Bearer ${token.access_token}`)).clientId).toBe('clocked');
      now += 30_000;
      expect((await tokens.authenticate(`Bearer ${token.access_token}`)).grant.allows('Patient', 's')).toBe(true);
      now += 31_000;
      await expect(tokens.authenticate(`Bearer ${token.access_token}`)).rejects.toThrow(/expired/);
    } finally {
      await db.close();
    }
  });
});

describe('AUTH_MODE', () => {
  it('refuses to start with AUTH_MODE=none on a non-loopback address', () => {
    expect(() => loadConfig({ AUTH_MODE: 'none', HOST: '0.0.0.0' })).toThrow(ConfigError);
    expect(() => loadConfig({ AUTH_MODE: 'none', HOST: '127.0.0.1' })).not.toThrow();
    expect(() => loadConfig({ AUTH_MODE: 'none', HOST: '::1' })).not.toThrow();
  });

  it('is on by default, and then needs registered clients or an external issuer', () => {
    let err: unknown;
    try {
      loadConfig({});
    } catch (e) {
      err = e;
    }
    expect((err as ConfigError).problems.join('\n')).toMatch(/AUTH_MODE=smart needs AUTH_CLIENTS_FILE/);
  });
});
