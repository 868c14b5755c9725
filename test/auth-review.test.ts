/**
 * Security review of authentication and authorisation: each test here is a way a caller got more than its
 * token allows (or in without one) before it was fixed, or pins a refusal an attacker would try first.
 */
import { request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createLocalJWKSet, exportJWK, exportSPKI, generateKeyPair, SignJWT, UnsecuredJWT } from 'jose';
import { Grant } from '../src/auth/scopes';
import { TokenService } from '../src/auth/tokens';
import { FhirRouter } from '../src/fhir/router';
import type { Repository } from '../src/storage/repository';
import type { ResourceValidator } from '../src/validation/types';
import { NHS_NUMBER_SYSTEM, patient, randomNhsNumber, referral } from './fixtures';
import { assertion, AuthHarness, jwksServer, makeClient, TOKEN_URL, tokenForm, type TestClient } from './support/auth';
import { openTestDatabase, storeNames } from './support/harness';

const ISSUER = 'https://idp.test';
const AUDIENCE = 'https://sp.test/fhir';


/** A request sent as is over a socket: inject() resolves `..` segments before the app sees them, a client need not. */
function rawRequest(port: number, method: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const form = { 'content-type': 'application/x-www-form-urlencoded' };

for (const store of storeNames()) {
  describe(`auth review [${store}]`, () => {
    let vendor: TestClient;
    let issuer: { server: Server; url: string };
    let issuerKey: CryptoKey;
    let issuerPublicPem: string;
    let h: AuthHarness;
    let full: string;
    let nhs: string;
    let patientId: string;

    beforeAll(async () => {
      vendor = await makeClient('review-vendor');
      const keys = await generateKeyPair('RS256', { extractable: true });
      issuerKey = keys.privateKey;
      issuerPublicPem = await exportSPKI(keys.publicKey);
      issuer = await jwksServer([{ ...(await exportJWK(keys.publicKey)), kid: 'idp-rsa', alg: 'RS256', use: 'sig' }]);
      h = new AuthHarness(store, [{ client: vendor, scopes: ['system/*.cruds', 'sp-bridge/admin'] }], {
        external: { issuer: ISSUER, jwksUrl: issuer.url, audience: AUDIENCE },
      });
      await h.start();
      full = await h.token(vendor, 'system/*.cruds');
      nhs = randomNhsNumber();
      const made = await h.request('POST', '/Patient', full, patient(nhs, { name: [{ family: 'Secretname', given: ['Ada'] }] }));
      expect(made.status).toBe(201);
      patientId = made.json.id;
      expect((await h.request('POST', '/ServiceRequest', full, referral(`Patient/${patientId}`))).status).toBe(201);
    });
    afterAll(async () => {
      await h.stop();
      issuer.server.close();
    });

    const count = async (type: string) => (await h.request('GET', `/${type}?_summary=count`, full)).json.total as number;
    const externalToken = (claims: Record<string, unknown>) =>
      new SignJWT({ client_id: 'idp-client', ...claims })
        .setProtectedHeader({ alg: 'RS256', kid: 'idp-rsa' })
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setExpirationTime('5m')
        .sign(issuerKey);

    describe('_include and _revinclude', () => {
      it('counts those in the form body of POST _search', async () => {
        const token = await h.token(vendor, 'system/ServiceRequest.rs');
        const res = await h.request('POST', '/ServiceRequest/_search', token, '_include=ServiceRequest:subject', form);
        expect(res.status).toBe(403);
        expect(res.body).not.toContain('Secretname');
        const revinclude = await h.request('POST', '/Patient/_search', await h.token(vendor, 'system/Patient.rs'), '_revinclude=ServiceRequest:subject', form);
        expect(revinclude.status).toBe(403);
        const allowed = await h.token(vendor, 'system/ServiceRequest.rs system/Patient.r');
        const included = await h.request('POST', '/ServiceRequest/_search', allowed, '_include=ServiceRequest:patient', form);
        expect(included.status).toBe(200);
        expect(included.body).toContain('Secretname');
      });

      it('counts those whose name has surrounding spaces, which the search parser trims', async () => {
        const token = await h.token(vendor, 'system/ServiceRequest.rs');
        for (const query of ['+_include=ServiceRequest:subject', '%20_include=ServiceRequest:subject', '_include%20=ServiceRequest:subject', '%09_include:iterate=ServiceRequest:subject']) {
          const res = await h.request('GET', `/ServiceRequest?${query}`, token);
          expect(res.status).toBe(403);
          expect(res.body).not.toContain('Secretname');
        }
      });
    });

    describe('conditional create and conditional references search, so they need s', () => {
      const criteria = () => `identifier=${NHS_NUMBER_SYSTEM}|${nhs}`;

      it('refuses a conditional create without s: a match would answer with the stored record', async () => {
        const res = await h.request('POST', '/Patient', await h.token(vendor, 'system/Patient.c'), patient(nhs), { 'if-none-exist': criteria() });
        expect(res.status).toBe(403);
        expect(res.body).not.toContain('Secretname');
        expect(res.headers.location).toBeUndefined();
        const allowed = await h.request('POST', '/Patient', await h.token(vendor, 'system/Patient.cs'), patient(nhs), { 'if-none-exist': criteria() });
        expect(allowed.status).toBe(200);
        expect(allowed.json.id).toBe(patientId);
        // A plain create still needs c alone.
        expect((await h.request('POST', '/Patient', await h.token(vendor, 'system/Patient.c'), patient(randomNhsNumber()))).status).toBe(201);
      });

      it('refuses a conditional create entry in a transaction without s', async () => {
        const before = await count('Patient');
        const res = await h.request('POST', '/', await h.token(vendor, 'system/Patient.c'), {
          resourceType: 'Bundle',
          type: 'transaction',
          entry: [{ resource: patient(nhs), request: { method: 'POST', url: 'Patient', ifNoneExist: criteria() } }],
        });
        expect(res.status).toBe(403);
        expect(res.body).not.toContain('Secretname');
        expect(await count('Patient')).toBe(before);
      });

      it('refuses a transaction whose conditional reference searches a type the token may not search, writing nothing', async () => {
        const before = await count('ServiceRequest');
        const bundle = {
          resourceType: 'Bundle',
          type: 'transaction',
          entry: [{ resource: referral(`Patient?${criteria()}`), request: { method: 'POST', url: 'ServiceRequest' } }],
        };
        const res = await h.request('POST', '/', await h.token(vendor, 'system/ServiceRequest.c'), bundle);
        expect(res.status).toBe(403);
        expect(res.json.issue[0].diagnostics).toMatch(/Bundle\.entry\[0\].*system\/Patient\.s/);
        expect(res.body).not.toContain(patientId);
        expect(await count('ServiceRequest')).toBe(before);
        const allowed = await h.request('POST', '/', await h.token(vendor, 'system/ServiceRequest.c system/Patient.s'), bundle);
        expect(allowed.status).toBe(200);
      });
    });

    describe('transactions and batches', () => {
      it('refuses an entry addressed to the base (a Bundle inside the Bundle)', async () => {
        for (const url of ['/', '//', '?_format=json']) {
          const res = await h.request('POST', '/', full, {
            resourceType: 'Bundle',
            type: 'transaction',
            entry: [
              {
                resource: { resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: `Patient?identifier=${NHS_NUMBER_SYSTEM}|${nhs}` } }] },
                request: { method: 'POST', url },
              },
            ],
          });
          expect(res.status).toBe(400);
          expect(res.body).not.toContain('Secretname');
        }
      });
    });

    describe('paths that look public', () => {
      let port: number;
      beforeAll(async () => {
        await h.app.listen({ host: '127.0.0.1', port: 0 });
        port = (h.app.server.address() as AddressInfo).port;
      });

      it('do not reach the FHIR API without a token when sent unnormalised', async () => {
        for (const path of ['/docs/../Patient', '/.well-known/../Patient', '/.well-known/x/../../_history', '/docs//Patient', '/metrics/../Patient']) {
          for (const method of ['GET', 'POST']) {
            const res = await rawRequest(port, method, path);
            expect([path, method, res.status]).toEqual([path, method, 401]);
          }
        }
        // Public paths on the FHIR catch-all route: only /metadata is served there without a token.
        expect((await rawRequest(port, 'GET', '/auth/token')).status).toBe(401);
        expect((await rawRequest(port, 'POST', '/metrics')).status).toBe(401);
      });

      it('still serve the public endpoints without one', async () => {
        for (const path of ['/metadata', '/metadata/', '/metadata?_format=json', '/.well-known/smart-configuration', '/healthz', '/docs/json']) {
          const res = await rawRequest(port, 'GET', path);
          expect([path, res.status]).toEqual([path, 200]);
        }
      });
    });

    describe('token endpoint', () => {
      const postToken = async (payload: string) => {
        const res = await h.app.inject({ method: 'POST', url: '/auth/token', headers: form, payload });
        return { status: res.statusCode, body: res.body };
      };

      it('answers a scope named after an Object property as an unknown scope, not a crash', async () => {
        expect(Grant.parse('system/Patient.constructor system/Patient.rs').scopes).toEqual(['system/Patient.rs']);
        const res = await postToken(tokenForm(await assertion(vendor), 'system/Patient.constructor'));
        expect(res.status).toBe(400);
        expect(JSON.parse(res.body).error).toBe('invalid_scope');
        const mixed = await postToken(tokenForm(await assertion(vendor), 'system/Patient.constructor system/Patient.rs'));
        expect(JSON.parse(mixed.body).scope).toBe('system/Patient.rs');
      });

      it('tells the client nothing of an internal failure', async () => {
        await h.db.query('ALTER TABLE auth_assertions RENAME TO auth_assertions_away');
        let res: { status: number; body: string };
        try {
          res = await postToken(tokenForm(await assertion(vendor), 'system/Patient.rs'));
        } finally {
          await h.db.query('ALTER TABLE auth_assertions_away RENAME TO auth_assertions');
        }
        expect(res.status).toBe(500);
        expect(res.body).not.toMatch(/auth_assertions|relation|SELECT|INSERT|at /);
        expect(JSON.parse(res.body)).toMatchObject({ error: 'server_error', error_description: expect.stringMatching(/request id/) });
      });
    });

    describe('external issuer', () => {
      it('cannot grant the admin scope', async () => {
        const token = await externalToken({ scope: 'sp-bridge/admin system/Patient.rs' });
        expect((await h.request('GET', '/Patient', token)).status).toBe(200);
        expect((await h.request('GET', '/AuditEvent', token)).status).toBe(403);
        expect((await h.request('GET', '/admin/deliveries/stats', token)).status).toBe(403);
        const scp = await externalToken({ scp: ['sp-bridge/admin'] });
        expect((await h.request('GET', '/AuditEvent', scp)).status).toBe(403);
      });

      it("refuses alg none and HS256 keyed with the issuer's public key", async () => {
        const claims = { scope: 'system/*.cruds', client_id: 'idp-client' };
        const unsigned = new UnsecuredJWT(claims).setIssuer(ISSUER).setAudience(AUDIENCE).setExpirationTime('5m').encode();
        const hmac = await new SignJWT(claims)
          .setProtectedHeader({ alg: 'HS256', kid: 'idp-rsa' })
          .setIssuer(ISSUER)
          .setAudience(AUDIENCE)
          .setExpirationTime('5m')
          .sign(new TextEncoder().encode(issuerPublicPem));
        const noKid = await new SignJWT(claims)
          .setProtectedHeader({ alg: 'HS256' })
          .setIssuer(ISSUER)
          .setAudience(AUDIENCE)
          .setExpirationTime('5m')
          .sign(new TextEncoder().encode(issuerPublicPem));
        for (const token of [unsigned, hmac, noKid]) {
          const res = await h.request('GET', '/Patient', token);
          expect(res.status).toBe(401);
          expect(res.body).not.toContain('Secretname');
        }
      });

      it('refuses a token without exp or with nbf in the future', async () => {
        const noExp = await new SignJWT({ scope: 'system/Patient.rs', client_id: 'idp-client' })
          .setProtectedHeader({ alg: 'RS256', kid: 'idp-rsa' })
          .setIssuer(ISSUER)
          .setAudience(AUDIENCE)
          .sign(issuerKey);
        expect((await h.request('GET', '/Patient', noExp)).status).toBe(401);
        const notYet = await externalToken({ scope: 'system/Patient.rs', nbf: Math.floor(Date.now() / 1000) + 600 });
        expect((await h.request('GET', '/Patient', notYet)).status).toBe(401);
      });
    });
  });
}

describe('FhirRouter with tokens required', () => {
  it('serves nothing but the CapabilityStatement to a request without a grant', async () => {
    const router = new FhirRouter({
      repo: {} as Repository,
      validator: {} as ResourceValidator,
      operations: [],
      conformance: [],
      smart: true,
    });
    for (const [method, path] of [
      ['GET', 'Patient'],
      ['GET', '_history'],
      ['POST', ''],
    ]) {
      const res = await router.handle({ method, path, query: [], prefer: {}, body: { resourceType: 'Bundle', type: 'batch' } }, { baseUrl: 'http://sp.test' });
      expect([path, res.status]).toEqual([path, 401]);
    }
    const metadata = await router.handle({ method: 'GET', path: 'metadata', query: [], prefer: {} }, { baseUrl: 'http://sp.test' });
    expect(metadata.status).toBe(200);
  });
});

describe('the verified-token cache', () => {
  it('checks a long-lived token again after five minutes, not only at its expiry', async () => {
    const db = await openTestDatabase('pglite');
    try {
      const client = await makeClient('cached');
      let now = Date.now();
      const clients = new Map([[client.clientId, { clientId: client.clientId, allowed: Grant.parse('system/Patient.rs'), keys: createLocalJWKSet({ keys: [client.publicJwk] }) }]]);
      const tokens = await TokenService.create({ db, config: { mode: 'smart', tokenLifetimeSeconds: 3600 }, clients, clock: () => new Date(now) });
      const { token } = await tokens.issue(new URLSearchParams(tokenForm(await assertion(client), 'system/Patient.rs')), TOKEN_URL);
      expect((await tokens.authenticate(`Bearer ${token.access_token}`)).clientId).toBe('cached');
      // What the token stood for changes under it (for an external issuer: a key withdrawn from its JWKS).
      clients.delete(client.clientId);
      now += 60_000;
      expect((await tokens.authenticate(`Bearer ${token.access_token}`)).clientId).toBe('cached');
      now += 5 * 60_000;
      await expect(tokens.authenticate(`Bearer ${token.access_token}`)).rejects.toThrow(/no longer registered/);
    } finally {
      await db.close();
    }
  });
});
