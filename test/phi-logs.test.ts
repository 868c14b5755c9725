import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { exportJWK, exportPKCS8, generateKeyPair } from 'jose';
import pino from 'pino';
import { stringify } from 'yaml';
import { AuditLog } from '../src/audit';
import { loadClients } from '../src/auth/clients';
import { TokenService } from '../src/auth/tokens';
import { loadDestinationsFile, setUpDelivery, type DeliveryEngine } from '../src/delivery';
import { buildApp } from '../src/http/app';
import { createLogger } from '../src/http/logging';
import { startMockGp, type MockGp } from '../src/mock/gp';
import type { Database } from '../src/storage/db';
import { NHS_NUMBER_SYSTEM, randomNhsNumber, referral, wellbeing } from './fixtures';
import { assertion, BASE, tokenForm, type TestClient } from './support/auth';
import { openTestDatabase, storeNames, type StoreName } from './support/harness';
import { waitFor, writeDestinations } from './delivery/support';

/**
 * Logs never hold patient data or credentials. Realistic traffic (token requests, every FHIR interaction,
 * rejected and malformed writes, bad tokens, internal failures carrying PHI in the database error, the admin
 * API, the audit trail, deliveries to a loopback GP system that fails and echoes the patient back) goes
 * through an app wired as server.ts wires it, with the logger at `trace`; then every captured line is
 * scanned for every identifying value and secret used.
 */

const ALL = 'system/*.cruds sp-bridge/admin';
const WORKER = { concurrency: 4, pollIntervalMs: 20, leaseMs: 60_000, attemptTimeoutMs: 20_000, shutdownTimeoutMs: 2_000 };
const RETRY = { maxAttempts: 3, baseDelayMs: 20, maxDelayMs: 200 };
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

// ---------------------------------------------------------------------------------------------------------------
// The scanner

interface Secret {
  label: string;
  value: string;
}

interface Finding {
  label: string;
  value: string;
  line: string;
}

/** Every line that holds any secret, compared case-insensitively. */
function scanLines(lines: readonly string[], secrets: readonly Secret[]): Finding[] {
  const wanted = secrets.filter((s) => s.value.length >= 4).map((s) => ({ ...s, lower: s.value.toLowerCase() }));
  const findings: Finding[] = [];
  for (const line of lines) {
    const lower = line.toLowerCase();
    for (const s of wanted) if (lower.includes(s.lower)) findings.push({ label: s.label, value: s.value, line });
  }
  return findings;
}

function unique(secrets: Secret[]): Secret[] {
  const seen = new Set<string>();
  return secrets.filter((s) => !seen.has(s.value.toLowerCase()) && seen.add(s.value.toLowerCase()));
}

/** A value and the forms it is written or sent in: URL-encoded, and JSON-escaped. */
function forms(label: string, value: string): Secret[] {
  return [value, encodeURIComponent(value), JSON.stringify(value).slice(1, -1)].map((v) => ({ label, value: v }));
}

function nhsForms(label: string, nhs: string): Secret[] {
  const [a, b, c] = [nhs.slice(0, 3), nhs.slice(3, 6), nhs.slice(6)];
  return [nhs, `${a} ${b} ${c}`, `${a}-${b}-${c}`, `${a}%20${b}%20${c}`].map((value) => ({ label, value }));
}

function dateForms(label: string, iso: string): Secret[] {
  const [y, m, d] = iso.split('-');
  const mon = MONTHS[Number(m) - 1];
  return [iso, `${y}${m}${d}`, `${d}/${m}/${y}`, `${d}-${m}-${y}`, `${d}.${m}.${y}`, `${Number(d)} ${mon} ${y}`, `${d}-${mon}-${y}`].map(
    (value) => ({ label, value }),
  );
}

/** A JWT is found by its whole text, each of its parts, and its first and last 20 characters. */
function jwtForms(label: string, jwt: string): Secret[] {
  const parts = jwt.split('.').filter((p) => p.length >= 16);
  return [jwt, jwt.slice(0, 20), jwt.slice(-20), ...parts].map((value) => ({ label, value }));
}

/** As support/auth.ts makeClient, with a private key that can be exported, so its material can be looked for. */
async function makeClient(clientId: string, alg: 'ES384' | 'RS384' = 'ES384'): Promise<TestClient> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), alg, kid: `${clientId}-key`, use: 'sig' };
  return { clientId, alg, privateKey, publicJwk };
}

// ---------------------------------------------------------------------------------------------------------------
// The people

interface Person {
  nhs: string;
  family: string;
  given: string[];
  birthDate: string;
  line: string;
  city: string;
  postcode: string;
  phone: string;
  email: string;
}

const LETTERS = 'bcdfghjklmnpqrstvwxz';
function syllables(n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += LETTERS[Math.floor(Math.random() * LETTERS.length)] + 'aeiou'[Math.floor(Math.random() * 5)];
  return s;
}
const cap = (s: string) => s[0].toUpperCase() + s.slice(1);

function person(i: number, used: Set<string>): Person {
  let nhs = randomNhsNumber();
  while (used.has(nhs)) nhs = randomNhsNumber();
  used.add(nhs);
  const family = `Quill${syllables(3)}feather`;
  const first = cap(`${syllables(2)}ntine`);
  const year = 1931 + i * 7;
  const month = String(1 + ((i * 5 + 1) % 12)).padStart(2, '0');
  const day = String(1 + ((i * 7 + 12) % 28)).padStart(2, '0');
  const phoneTail = String(100 + Math.floor(Math.random() * 899));
  return {
    nhs,
    family,
    given: [first, cap(`${syllables(2)}ssa`)],
    birthDate: `${year}-${month}-${day}`,
    line: `${40 + i} ${cap(syllables(3))} Wood Lane`,
    city: cap(`${syllables(2)}bridge`),
    postcode: `PL${20 + i} ${(i + 6) % 10}${'SGQ'[i % 3]}${'XYW'[i % 3]}`,
    phone: `07700 900${phoneTail}`,
    email: `${first.toLowerCase()}.${family.toLowerCase()}@example.org`,
  };
}

function patientOf(p: Person, extra: Partial<fhir4.Patient> = {}): fhir4.Patient {
  return {
    resourceType: 'Patient',
    identifier: [{ system: NHS_NUMBER_SYSTEM, value: p.nhs }],
    name: [{ use: 'official', family: p.family, given: p.given }],
    gender: 'female',
    birthDate: p.birthDate,
    address: [{ use: 'home', line: [p.line], city: p.city, postalCode: p.postcode }],
    telecom: [
      { system: 'phone', value: p.phone, use: 'mobile' },
      { system: 'email', value: p.email },
    ],
    ...extra,
  };
}

function personSecrets(p: Person, who: string): Secret[] {
  const [phoneA, phoneB] = [p.phone.slice(0, 5), p.phone.slice(6)];
  return [
    ...nhsForms(`${who} NHS number`, p.nhs),
    ...forms(`${who} family name`, p.family),
    ...p.given.flatMap((g) => forms(`${who} given name`, g)),
    ...dateForms(`${who} date of birth`, p.birthDate),
    ...forms(`${who} address line`, p.line),
    ...forms(`${who} city`, p.city),
    ...forms(`${who} postcode`, p.postcode),
    { label: `${who} postcode`, value: p.postcode.replace(' ', '') },
    ...forms(`${who} phone`, p.phone),
    { label: `${who} phone`, value: `${phoneA}${phoneB}` },
    { label: `${who} phone`, value: `+44 ${phoneA.slice(1)} ${phoneB}` },
    { label: `${who} phone`, value: `+44${phoneA.slice(1)}${phoneB}` },
    ...forms(`${who} email`, p.email),
  ];
}

// ---------------------------------------------------------------------------------------------------------------
// The service, wired as server.ts wires it, with one captured log

interface Sent {
  reqId: string;
  method: string;
  url: string;
  status: number;
}

class PhiHarness {
  readonly lines: string[] = [];
  readonly sent: Sent[] = [];
  app!: FastifyInstance;
  db!: Database;
  audit!: AuditLog;
  engine!: DeliveryEngine;
  gp!: MockGp;
  private seq = 0;

  constructor(
    readonly store: StoreName,
    readonly clients: { client: TestClient; scopes: string[] }[],
  ) {}

  async start(): Promise<void> {
    const lines = this.lines;
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        done();
      },
    });
    const logger = createLogger('trace', sink);
    this.db = await openTestDatabase(this.store);
    this.gp = await startMockGp({ port: 0 });
    const dir = mkdtempSync(path.join(tmpdir(), 'spb-phi-'));
    const clientsFile = path.join(dir, 'clients.yaml');
    writeFileSync(
      clientsFile,
      stringify({ clients: this.clients.map(({ client, scopes }) => ({ clientId: client.clientId, scopes, jwks: { keys: [client.publicJwk] } })) }),
    );
    const tokens = await TokenService.create({
      db: this.db,
      config: { mode: 'smart', clientsFile, tokenLifetimeSeconds: 300 },
      clients: loadClients(clientsFile),
    });
    const destinations = writeDestinations({
      worker: WORKER,
      destinations: [
        {
          id: 'gp',
          adapter: 'fhir-rest',
          settings: { baseUrl: this.gp.url },
          retry: RETRY,
          receives: [
            { resourceType: 'Patient', events: ['created', 'updated', 'deleted'] },
            { resourceType: 'ServiceRequest', events: ['created', 'updated', 'deleted'] },
            { resourceType: 'Observation', events: ['created', 'updated'] },
          ],
        },
        {
          id: 'gp-cc',
          adapter: 'fhir-rest',
          settings: { baseUrl: this.gp.url, writeMode: 'conditional-create' },
          retry: RETRY,
          receives: [{ resourceType: 'ServiceRequest', events: ['created', 'updated', 'deleted'] }],
        },
      ],
    });
    const delivery = setUpDelivery(loadDestinationsFile(destinations), this.db, logger.child({ component: 'delivery' }));
    this.engine = delivery.engine;
    this.audit = new AuditLog(this.db, { logger: logger.child({ component: 'audit' }) });
    this.app = await buildApp({
      auth: { mode: 'smart', tokens },
      audit: this.audit,
      config: { bodyLimitBytes: 1024 * 1024, baseUrl: BASE },
      db: this.db,
      logger,
      delivery: { outbox: delivery.outbox, destinations: delivery.destinationIds },
    });
    await this.engine.start();
  }

  async stop(): Promise<void> {
    await this.engine?.stop();
    await this.app?.close();
    await this.audit?.close();
    await this.db?.close();
    await this.gp?.close();
  }

  /** One request, with a request id of our own so its log line can be found. */
  async request(
    method: string,
    url: string,
    token: string | undefined,
    body?: unknown,
    headers: Record<string, string> = {},
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- test convenience: responses are asserted field by field
  ): Promise<{ status: number; body: string; json: any }> {
    const reqId = `phi-${++this.seq}`;
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const res = await this.app.inject({
      method: method as 'GET',
      url,
      payload,
      headers: {
        'x-request-id': reqId,
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(payload === undefined ? {} : { 'content-type': 'application/fhir+json' }),
        ...headers,
      },
    });
    this.sent.push({ reqId, method, url, status: res.statusCode });
    let json: unknown;
    try {
      json = res.body ? JSON.parse(res.body) : undefined;
    } catch {
      json = undefined;
    }
    return { status: res.statusCode, body: res.body, json };
  }

  async tokenRequest(form: string, contentType = 'application/x-www-form-urlencoded') {
    return this.request('POST', '/auth/token', undefined, form, { 'content-type': contentType });
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- log lines are asserted field by field
  parsed(): Record<string, any>[] {
    return this.lines.map((l) => JSON.parse(l) as Record<string, any>);
  }
}

// ---------------------------------------------------------------------------------------------------------------

for (const store of storeNames()) {
  describe(`logs hold no patient data or secrets [${store}]`, () => {
    let h: PhiHarness;
    let vendor: TestClient;
    let reader: TestClient;
    const secrets: Secret[] = [];
    const used = new Set<string>();
    const people = [0, 1, 2, 3, 4, 5].map((i) => person(i, used));
    /** Created only through a failing write: its values are in the database error the 500 logs. */
    const doomed = person(6, used);
    /** Delivered and refused by the GP system, which echoes it back. */
    const refused = person(7, used);
    /** Only ever sent in rejected writes. */
    const rejected = person(8, used);
    /** Given its NHS number as its resource id by the client (an update that creates). */
    const numbered = person(9, used);

    beforeAll(async () => {
      vendor = await makeClient('phi-vendor');
      reader = await makeClient('phi-reader', 'RS384');
      h = new PhiHarness(store, [
        { client: vendor, scopes: [ALL] },
        { client: reader, scopes: ['system/Patient.rs', 'system/Observation.rs'] },
      ]);
      await h.start();
      for (const [i, p] of [...people, doomed, refused, rejected, numbered].entries()) secrets.push(...personSecrets(p, `person ${i}`));
      for (const client of [vendor, reader]) {
        const jwk = await exportJWK(client.privateKey);
        const pem = await exportPKCS8(client.privateKey);
        const body = pem.split('\n').filter((l) => l && !l.startsWith('-----')).join('');
        secrets.push({ label: 'private key (PEM)', value: body.slice(0, 40) }, { label: 'private key (PEM)', value: body.slice(-40) });
        secrets.push({ label: 'private key (JWK d)', value: String(jwk.d) });
      }
      secrets.push(
        { label: 'PEM marker', value: '-----BEGIN' },
        { label: 'PEM marker', value: 'PRIVATE KEY' },
        { label: 'JWK private member', value: '"d":' },
        { label: 'JWK private member', value: '\\"d\\":' },
      );
    }, 60_000);
    afterAll(() => h?.stop());

    it('drives every kind of traffic and finds nothing identifying in any log line', async () => {
      const auditQueries: string[] = [];
      const token = async (client: TestClient, scope: string) => {
        const a = await assertion(client);
        secrets.push(...jwtForms('client assertion', a));
        const res = await h.tokenRequest(tokenForm(a, scope));
        expect(res.status).toBe(200);
        secrets.push(...jwtForms('access token', res.json.access_token));
        return res.json.access_token as string;
      };

      // --- token requests: good, bad assertion, replay, malformed, wrong scope, JSON
      const t = await token(vendor, ALL);
      const readerToken = await token(reader, 'system/Patient.rs system/Observation.rs');
      const stranger = await generateKeyPair('ES384', { extractable: true });
      const strangerJwk = await exportJWK(stranger.privateKey);
      secrets.push({ label: 'private key (JWK d)', value: String(strangerJwk.d) });
      const forged = await assertion(vendor, {}, { key: stranger.privateKey });
      secrets.push(...jwtForms('client assertion', forged));
      expect((await h.tokenRequest(tokenForm(forged, ALL))).status).toBe(401);
      const once = await assertion(vendor);
      secrets.push(...jwtForms('client assertion', once));
      const first = await h.tokenRequest(tokenForm(once, 'system/Patient.rs'));
      expect(first.status).toBe(200);
      secrets.push(...jwtForms('access token', first.json.access_token));
      const replay = await h.tokenRequest(tokenForm(once, 'system/Patient.rs'));
      expect(replay.status).toBe(400);
      expect(replay.json.error).toBe('invalid_grant');
      const expired = await assertion(vendor, { exp: Math.floor(Date.now() / 1000) - 600, iat: Math.floor(Date.now() / 1000) - 900 });
      secrets.push(...jwtForms('client assertion', expired));
      expect((await h.tokenRequest(tokenForm(expired, ALL))).status).toBe(401);
      const garbageAssertion = `not-a-jwt-${randomUUID()}`;
      secrets.push({ label: 'client assertion', value: garbageAssertion });
      expect((await h.tokenRequest(tokenForm(garbageAssertion, ALL))).status).toBe(401);
      const wrongScope = await assertion(reader);
      secrets.push(...jwtForms('client assertion', wrongScope));
      expect((await h.tokenRequest(tokenForm(wrongScope, 'sp-bridge/admin'))).status).toBe(400);
      const jsonAssertion = await assertion(vendor);
      secrets.push(...jwtForms('client assertion', jsonAssertion));
      expect((await h.tokenRequest(JSON.stringify({ grant_type: 'client_credentials', client_assertion: jsonAssertion }), 'application/json')).status).toBe(
        400,
      );

      // --- per person: create, refer, measure, search, read, update
      const ids: string[] = [];
      for (const p of people) {
        const created = await h.request('POST', '/Patient', t, patientOf(p), {
          'if-none-exist': `identifier=${NHS_NUMBER_SYSTEM}|${p.nhs}`,
        });
        expect(created.status).toBe(201);
        const id = created.json.id as string;
        ids.push(id);
        const sr = await h.request('POST', '/ServiceRequest', t, referral(`Patient/${id}`, { note: [{ text: `Lives alone at ${p.line}` }] }));
        expect(sr.status).toBe(201);
        expect((await h.request('POST', '/Observation', t, wellbeing(`Patient/${id}`, 41))).status).toBe(201);

        const searches = [
          `identifier=${NHS_NUMBER_SYSTEM}|${p.nhs}`,
          `identifier=${encodeURIComponent(`${NHS_NUMBER_SYSTEM}|${p.nhs}`)}`,
          `identifier=${p.nhs}`,
          `name=${p.family}`,
          `family=${p.family}&given=${p.given[0]}`,
          `birthdate=${p.birthDate}`,
          `birthdate=eq${p.birthDate}&name:exact=${p.family}`,
          `address-postalcode=${encodeURIComponent(p.postcode)}`,
          `name=${p.family}&_revinclude=ServiceRequest:patient`,
        ];
        for (const q of searches) {
          const res = await h.request('GET', `/Patient?${q}`, t);
          expect(res.status).toBe(200);
          auditQueries.push(q);
        }
        expect((await h.request('GET', `/Patient?identifier=${NHS_NUMBER_SYSTEM}|${p.nhs}`, t)).json.total).toBe(1);
        // Parameters that are not supported, or not allowed, with PHI as their values.
        expect((await h.request('GET', `/Patient?phone=${encodeURIComponent(p.phone)}`, t)).status).toBe(400);
        expect((await h.request('GET', `/Patient?email=${p.email}&birthdate=notadate-${p.birthDate}`, t)).status).toBe(400);
        const post = await h.request('POST', '/Patient/_search', t, `name=${p.family}&birthdate=${p.birthDate}`, {
          'content-type': 'application/x-www-form-urlencoded',
        });
        expect(post.status).toBe(200);
        const bySubject = await h.request('GET', `/ServiceRequest?patient:identifier=${NHS_NUMBER_SYSTEM}|${p.nhs}&_include=ServiceRequest:patient`, t);
        expect([200, 400]).toContain(bySubject.status);
        expect((await h.request('GET', `/Observation?patient=Patient/${id}`, readerToken)).status).toBe(200);

        expect((await h.request('GET', `/Patient/${id}`, t)).status).toBe(200);
        expect((await h.request('GET', `/Patient/${id}`, readerToken)).status).toBe(200);
        expect((await h.request('GET', `/Patient/${id}/_history/1`, t)).status).toBe(200);
        const moved = patientOf(p, { id, address: [{ use: 'home', line: [`Flat 2, ${p.line}`], city: p.city, postalCode: p.postcode }] });
        expect((await h.request('PUT', `/Patient/${id}`, t, moved, { 'if-match': 'W/"1"' })).status).toBe(200);
        const conditional = await h.request('PUT', `/Patient?identifier=${NHS_NUMBER_SYSTEM}|${p.nhs}`, t, patientOf(p, { id }));
        expect(conditional.status).toBe(200);
        expect((await h.request('GET', `/Patient/${id}/_history`, t)).status).toBe(200);
        // A reader may not write: 403 with the body unread.
        expect((await h.request('POST', '/Patient', readerToken, patientOf(p))).status).toBe(403);
      }

      // --- a transaction: a new patient (conditional) and a referral for them
      const txPerson = people[0];
      const tx = await h.request('POST', '/', t, {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          {
            fullUrl: 'urn:uuid:2d3c4f3e-8f0a-4b7c-9c61-6f1e1a4f0b11',
            resource: patientOf(txPerson),
            request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${NHS_NUMBER_SYSTEM}|${txPerson.nhs}` },
          },
          {
            fullUrl: 'urn:uuid:0b1e6a1c-2f44-4f0f-8a9e-3d2b1c0e9f22',
            resource: referral('urn:uuid:2d3c4f3e-8f0a-4b7c-9c61-6f1e1a4f0b11'),
            request: { method: 'POST', url: 'ServiceRequest' },
          },
        ],
      });
      expect(tx.status).toBe(200);
      const batch = await h.request('POST', '/', t, {
        resourceType: 'Bundle',
        type: 'batch',
        entry: [
          { request: { method: 'GET', url: `Patient?name=${people[1].family}` } },
          { request: { method: 'GET', url: `Patient?identifier=${NHS_NUMBER_SYSTEM}|${txPerson.nhs}&birthdate=${txPerson.birthDate}` } },
          { resource: patientOf(rejected, { birthDate: `${rejected.birthDate}T00:00` }), request: { method: 'POST', url: 'Patient' } },
        ],
      });
      expect(batch.status).toBe(200);

      // --- rejected writes whose bad values are PHI
      const badDob = await h.request('POST', '/Patient', t, patientOf(rejected, { birthDate: `born ${dateForms('', rejected.birthDate)[2].value}` }));
      expect([400, 422]).toContain(badDob.status);
      const badDob2 = await h.request('POST', '/Patient', t, patientOf(rejected, { birthDate: `${rejected.birthDate}x` }));
      expect([400, 422]).toContain(badDob2.status);
      const notMod11 = `${rejected.nhs.slice(0, 9)}${(Number(rejected.nhs[9]) + 1) % 10}`;
      secrets.push(...nhsForms('NHS number failing Modulus 11', notMod11));
      const badNhs = await h.request('POST', '/Patient', t, patientOf({ ...rejected, nhs: notMod11 }));
      expect(badNhs.status).toBe(422);
      expect(JSON.stringify(badNhs.json)).toMatch(/NHS number|Modulus|nhs/i);
      const spaced = await h.request('POST', '/Patient', t, patientOf({ ...rejected, nhs: nhsForms('', rejected.nhs)[1].value }));
      expect([400, 422]).toContain(spaced.status);
      const wrongType = await h.request('POST', '/Patient', t, { ...patientOf(rejected), resourceType: 'Person' });
      expect(wrongType.status).toBe(400);
      const unknownElement = await h.request('POST', '/Patient', t, { ...patientOf(rejected), nickname: rejected.given[0], nhsNumber: rejected.nhs });
      expect(unknownElement.status).toBe(400);
      const mismatch = await h.request('PUT', `/Patient/${ids[0]}`, t, patientOf(rejected, { id: 'someone-else' }));
      expect(mismatch.status).toBe(400);
      const badTx = await h.request('POST', '/', t, {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [{ resource: patientOf({ ...rejected, nhs: notMod11 }), request: { method: 'POST', url: 'Patient' } }],
      });
      expect([400, 422]).toContain(badTx.status);
      const validate = await h.request('POST', '/Patient/$validate', t, patientOf({ ...rejected, nhs: notMod11 }, { birthDate: `${rejected.birthDate}x` }));
      expect(validate.status).toBe(200);
      // Malformed JSON, truncated in the middle of the patient's details.
      const truncated = JSON.stringify(patientOf(rejected)).slice(0, -40);
      expect((await h.request('POST', '/Patient', t, truncated)).status).toBe(400);
      const unquoted = `{"resourceType":"Patient","name":[{"family":${rejected.family}}],"birthDate":${rejected.birthDate}}`;
      expect((await h.request('POST', '/Patient', t, unquoted)).status).toBe(400);
      expect((await h.request('POST', '/Patient', t, `${rejected.nhs} ${rejected.family}`)).status).toBe(400);
      // The wrong media type and a body too large, both full of PHI.
      expect((await h.request('POST', '/Patient', t, JSON.stringify(patientOf(rejected)), { 'content-type': 'text/plain' })).status).toBe(415);
      const huge = patientOf(rejected, { name: [{ family: rejected.family, given: [rejected.given[0].repeat(1 + (1024 * 1024) / rejected.given[0].length)] }] });
      expect((await h.request('POST', '/Patient', t, huge)).status).toBe(413);
      // Routes that do not exist, with PHI in path and query.
      expect((await h.request('GET', `/Patients?identifier=${rejected.nhs}`, t)).status).toBe(404);

      // --- bad bearer tokens, a token in the query string, a token in the wrong scheme
      const garbage = `garbage-token-${randomUUID()}`;
      secrets.push({ label: 'bad bearer token', value: garbage });
      expect((await h.request('GET', `/Patient?identifier=${rejected.nhs}`, garbage)).status).toBe(401);
      const tampered = `${t.slice(0, -6)}AAAAAA`;
      expect((await h.request('GET', `/Patient/${ids[0]}`, tampered)).status).toBe(401);
      expect((await h.request('GET', `/Patient?access_token=${t}&name=${people[0].family}`, undefined)).status).toBe(401);
      expect((await h.request('GET', `/Patient/${ids[0]}`, undefined, undefined, { authorization: `Basic ${t}` })).status).toBe(401);
      expect((await h.request('POST', '/Patient', undefined, patientOf(rejected))).status).toBe(401);

      // --- a client that uses the NHS number as the resource id: the path of every request line holds it
      const byNumber = await h.request('PUT', `/Patient/${numbered.nhs}`, t, patientOf(numbered, { id: numbered.nhs }));
      expect(byNumber.status).toBe(201);
      expect((await h.request('GET', `/Patient/${numbered.nhs}`, t)).status).toBe(200);
      expect((await h.request('GET', `/Patient/${numbered.nhs}/_history/1`, t)).status).toBe(200);

      // --- deletes
      const srForDelete = await h.request('POST', '/ServiceRequest', t, referral(`Patient/${ids[2]}`));
      expect((await h.request('DELETE', `/ServiceRequest/${srForDelete.json.id}`, t)).status).toBeLessThan(300);
      expect((await h.request('GET', `/ServiceRequest/${srForDelete.json.id}`, t)).status).toBe(410);

      // --- a 500 whose database error carries the patient's details (message, detail and hint)
      await h.db.query(`CREATE OR REPLACE FUNCTION phi_log_test_fail() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.raw = '${doomed.family}' THEN
            RAISE EXCEPTION 'cannot index % (% %, born %, NHS %)', NEW.raw, '${doomed.given[0]}', '${doomed.postcode}', '${doomed.birthDate}', '${doomed.nhs}'
              USING DETAIL = 'Failing row contains (' || NEW.raw || ', ${doomed.email})', HINT = '${doomed.phone}';
          END IF;
          RETURN NEW;
        END $$`);
      await h.db.query('CREATE TRIGGER phi_log_test_fail BEFORE INSERT ON search_string FOR EACH ROW EXECUTE FUNCTION phi_log_test_fail()');
      try {
        const failed = await h.request('POST', '/Patient', t, patientOf(doomed));
        expect(failed.status).toBe(500);
        expect(failed.json.issue[0].diagnostics).toMatch(/request id phi-\d+/);
        const failedTx = await h.request('POST', '/', t, {
          resourceType: 'Bundle',
          type: 'transaction',
          entry: [{ resource: patientOf(doomed), request: { method: 'POST', url: 'Patient' } }],
        });
        expect(failedTx.status).toBe(500);
      } finally {
        await h.db.query('DROP TRIGGER phi_log_test_fail ON search_string');
      }

      // --- the audit trail fails to write, with the AuditEvent (its entity.query) in the database error
      await h.db.query(`CREATE OR REPLACE FUNCTION phi_log_test_audit_fail() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION 'audit refused: %', NEW.content USING DETAIL = NEW.content;
        END $$`);
      await h.db.query('CREATE TRIGGER phi_log_test_audit_fail BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION phi_log_test_audit_fail()');
      try {
        const q = `identifier=${NHS_NUMBER_SYSTEM}|${people[1].nhs}&birthdate=${people[1].birthDate}`;
        auditQueries.push(q);
        const res = await h.request('GET', `/Patient?${q}`, t);
        expect(res.status).toBe(200);
      } finally {
        await h.db.query('DROP TRIGGER phi_log_test_audit_fail ON audit_events');
      }

      // --- delivery: everything so far arrives at the GP system
      await waitFor('deliveries to settle', async () => {
        const { rows } = await h.db.query<{ n: string }>(`SELECT count(*)::text AS n FROM deliveries WHERE state NOT IN ('delivered', 'dead', 'superseded')`);
        return rows[0].n === '0';
      });
      // Then one the GP system refuses: 500 (retried), then 400 with an OperationOutcome naming the patient.
      const echo: fhir4.OperationOutcome = {
        resourceType: 'OperationOutcome',
        issue: [
          {
            severity: 'error',
            code: 'invalid',
            diagnostics: `Patient ${refused.family.toUpperCase()}, ${refused.given.join(' ')} (born ${refused.birthDate}, NHS ${nhsForms('', refused.nhs)[1].value}, ${refused.line}, ${refused.postcode}) is not registered here`,
          },
        ],
      };
      h.gp.fail({ status: 500, count: 1, outcome: echo });
      h.gp.fail({ status: 400, count: 1, outcome: echo });
      const refusedRes = await h.request('POST', '/Patient', t, patientOf(refused));
      expect(refusedRes.status).toBe(201);
      const refusedKey = `gp:Patient/${refusedRes.json.id}/_history/1`;
      let deliveryId = '';
      await waitFor('the refused delivery to be dead', async () => {
        const { rows } = await h.db.query<{ id: string; state: string }>('SELECT id::text AS id, state FROM deliveries WHERE idempotency_key = $1', [refusedKey]);
        deliveryId = rows[0]?.id ?? '';
        return rows[0]?.state === 'dead';
      });
      expect(h.gp.received().requests.filter((r) => r.path === `/Patient/${refusedRes.json.id}`).map((r) => r.status)).toEqual([500, 400]);

      // --- the admin API, which shows the refusal with the receiver's OperationOutcome
      expect((await h.request('GET', '/admin/deliveries/stats', t)).status).toBe(200);
      expect((await h.request('GET', '/admin/deliveries?state=dead', t)).status).toBe(200);
      const view = await h.request('GET', `/admin/deliveries/${deliveryId}`, t);
      expect(view.status).toBe(200);
      expect(view.body).toContain(refused.family.toUpperCase());
      expect((await h.request('GET', `/admin/deliveries?state=${refused.family}`, t)).status).toBe(400);
      expect((await h.request('GET', '/admin/deliveries/stats', readerToken)).status).toBe(403);
      expect((await h.request('POST', `/admin/deliveries/${deliveryId}/replay`, t)).status).toBe(200);
      await waitFor('the replayed delivery to arrive', async () => {
        const { rows } = await h.db.query<{ state: string }>('SELECT state FROM deliveries WHERE idempotency_key = $1', [refusedKey]);
        return rows[0]?.state === 'delivered';
      });

      // --- the audit trail holds the PHI of every search (entity.query); reading it must not log it
      await h.audit.flush();
      const trail = await h.request('GET', '/AuditEvent?subtype=search-type&_count=200', t);
      expect(trail.status).toBe(200);
      const recordedQueries = (trail.json.entry as { resource: fhir4.AuditEvent }[]).flatMap((e) =>
        (e.resource.entity ?? []).map((x) => (x.query ? Buffer.from(x.query, 'base64').toString('utf8') : '')),
      );
      expect(recordedQueries.some((q) => q.includes(people[0].nhs))).toBe(true);
      expect((await h.request('GET', `/AuditEvent?entity=Patient/${ids[0]}`, t)).status).toBe(200);
      expect((await h.request('GET', `/AuditEvent?entity-type=Patient&agent=${people[0].nhs}`, t)).status).toBe(200);
      expect((await h.request('GET', '/AuditEvent', readerToken)).status).toBe(403);
      for (const q of new Set([...auditQueries, ...recordedQueries.filter(Boolean)])) {
        const b64 = Buffer.from(q, 'utf8').toString('base64');
        secrets.push({ label: 'audit entity.query (base64)', value: b64 }, { label: 'audit entity.query (base64)', value: b64.slice(0, 24) });
      }

      // --- health and metrics, for completeness
      expect((await h.request('GET', '/healthz', undefined)).status).toBe(200);
      expect((await h.request('GET', '/metrics', undefined)).status).toBe(200);
      await h.engine.stop();

      // ========================= the scan =========================
      const all = unique(secrets);
      const findings = scanLines(h.lines, all);
      const byLine = new Map<string, Set<string>>();
      for (const f of findings) byLine.set(f.line, (byLine.get(f.line) ?? new Set()).add(`${f.label} "${f.value}"`));
      const report = [...byLine].slice(0, 20).map(([line, found]) => `${[...found].join(', ')} in: ${line.slice(0, 800)}`);
      expect(report).toEqual([]);

      // ========================= the scan is meaningful =========================
      const parsed = h.parsed();
      expect(h.lines.length).toBeGreaterThanOrEqual(200);
      // One request line for every request sent, under its own request id.
      const requestLines = new Map(parsed.filter((l) => l.msg === 'request').map((l) => [l.reqId as string, l]));
      const missing = h.sent.filter((s) => !requestLines.has(s.reqId)).map((s) => `${s.reqId} ${s.method} ${s.url.slice(0, 80)}`);
      expect(missing).toEqual([]);
      for (const s of h.sent) expect(requestLines.get(s.reqId)).toMatchObject({ method: s.method, status: s.status });
      expect(h.sent.length).toBeGreaterThan(200);
      const statuses = new Set(h.sent.map((s) => s.status));
      for (const status of [200, 201, 400, 401, 403, 404, 410, 413, 415, 422, 500]) expect(statuses).toContain(status);
      // Errors were logged, with what an operator needs and nothing more.
      const errors = parsed.filter((l) => l.level >= 50);
      expect(errors.map((l) => l.msg)).toEqual(expect.arrayContaining(['request failed', 'audit records not written']));
      for (const e of errors.filter((l) => l.err)) {
        expect(e.err.type).toEqual(expect.any(String));
        expect(e.err.stack).toMatch(/\n\s+at /);
      }
      // The delivery engine's lines were captured: the refused delivery's retry, failure and replay.
      const attempts = parsed.filter((l) => l.msg === 'delivery attempt' && l.delivery === deliveryId);
      expect(attempts.map((l) => l.outcome)).toEqual(['retry', 'failed', 'delivered']);
      expect(parsed.filter((l) => l.component === 'delivery').length).toBeGreaterThan(10);
      // The NHS number used as an id is in the request path, and was scrubbed from it.
      const numberedLines = h.sent.filter((s) => s.url.includes(numbered.nhs)).map((s) => requestLines.get(s.reqId));
      expect(numberedLines.map((l) => l?.path)).toEqual(['/Patient/[nhs-number]', '/Patient/[nhs-number]', '/Patient/[nhs-number]/_history/1']);
      // Query parameter names are logged, their values are not.
      expect(parsed.some((l) => l.msg === 'request' && Array.isArray(l.params) && l.params.includes('identifier'))).toBe(true);
    }, 180_000);

    it('the scanner finds a planted value (it cannot pass vacuously)', async () => {
      const p = people[0];
      const issued = await h.tokenRequest(tokenForm(await assertion(vendor), 'system/Patient.rs'));
      expect(issued.status).toBe(200);
      const accessToken = issued.json.access_token as string;
      secrets.push(...jwtForms('access token', accessToken));
      const planted: string[] = [];
      const raw = pino(
        { level: 'trace' },
        new Writable({
          write(chunk: Buffer, _enc, done) {
            planted.push(...chunk.toString('utf8').split('\n').filter(Boolean));
            done();
          },
        }),
      );
      raw.info({ patient: { name: [{ family: p.family }] } }, 'oops');
      raw.info(`looked up ${p.nhs.slice(0, 3)} ${p.nhs.slice(3, 6)} ${p.nhs.slice(6)}`);
      raw.warn({ query: `birthdate=${p.birthDate}` }, 'search');
      raw.error({ auth: `Bearer ${accessToken}` }, 'denied');
      raw.info({ postcode: p.postcode.replace(' ', '').toLowerCase(), email: p.email.toUpperCase() }, 'contact');
      const findings = scanLines(planted, unique(secrets));
      const labels = new Set(findings.map((f) => f.label));
      for (const label of ['person 0 family name', 'person 0 NHS number', 'person 0 date of birth', 'access token', 'person 0 postcode', 'person 0 email']) {
        expect(labels).toContain(label);
      }
      // And the same values through the service's logger are not there.
      const ours: string[] = [];
      const logger = createLogger(
        'trace',
        new Writable({
          write(chunk: Buffer, _enc, done) {
            ours.push(...chunk.toString('utf8').split('\n').filter(Boolean));
            done();
          },
        }),
      );
      // The same values through the service's logger, as a careless caller might log them: none get out.
      const nhsSpaced = nhsForms('', p.nhs)[1].value;
      const dbError = Object.assign(new Error(`invalid input syntax for type date: "${p.birthDate}x" (${p.family})`), {
        code: '22007',
        routine: 'DateTimeParseError',
        detail: `Failing row contains (${p.nhs}, ${p.email})`,
        where: `PL/pgSQL function f() line 3 at ${p.line}`,
      });
      logger.info({ patient: { name: [{ family: p.family, given: p.given }], birthDate: p.birthDate, telecom: [{ value: p.phone }] } }, 'oops');
      logger.info({ resource: patientOf(p) }, 'resource');
      logger.info({ headers: { authorization: `Bearer ${accessToken}` } }, 'headers');
      logger.error(dbError);
      logger.error({ err: dbError });
      logger.warn({ error: dbError, cause: new Error(p.family) }, 'write failed');
      logger.info(`looked up ${nhsSpaced} (${p.email}, ${p.phone}, ${p.postcode}) with Bearer ${accessToken}`);
      logger.info('looked up %s at %o', p.nhs, { address: { line: [p.line] }, url: `/Patient?name=${p.family}` });
      logger.child({ patient: p.family, nhsNumber: p.nhs }).info({ path: `/Patient/${p.nhs}` }, 'child');
      logger.info({ jwk: { kty: 'EC', d: 'private-part' }, pem: '-----BEGIN PRIVATE KEY-----\nMIG...\n-----END PRIVATE KEY-----' }, 'keys');
      expect(ours).toHaveLength(10);
      const errorLine = JSON.parse(ours[3]) as { msg: string; err: { type: string; code: string; stack: string } };
      expect(errorLine.msg).toBe('Error thrown');
      expect(errorLine.err).toMatchObject({ type: 'Error', code: '22007', routine: 'DateTimeParseError' });
      expect(errorLine.err.stack).toMatch(/^Error \[22007\]\n\s+at /);
      expect(scanLines(ours, unique(secrets)).map((f) => `${f.label}: ${f.line}`)).toEqual([]);
    });
  });
}
