import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { stringify } from 'yaml';
import { AuditLog } from '../../src/audit';
import { loadClients } from '../../src/auth/clients';
import { TokenService } from '../../src/auth/tokens';
import type { AuthConfig } from '../../src/config';
import { buildApp } from '../../src/http/app';
import { createLogger } from '../../src/http/logging';
import type { Database } from '../../src/storage/db';
import { lineSink, openTestDatabase, type StoreName } from './harness';

export const BASE = 'http://sp.test';
export const TOKEN_URL = `${BASE}/auth/token`;

export interface TestClient {
  clientId: string;
  alg: 'ES384' | 'RS384';
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export async function makeClient(clientId: string, alg: 'ES384' | 'RS384' = 'ES384'): Promise<TestClient> {
  const { privateKey, publicKey } = await generateKeyPair(alg);
  const publicJwk = { ...(await exportJWK(publicKey)), alg, kid: `${clientId}-key`, use: 'sig' };
  return { clientId, alg, privateKey, publicJwk };
}

/** A SMART Backend Services client assertion; `claims` overrides the defaults. */
export async function assertion(
  client: TestClient,
  claims: Record<string, unknown> = {},
  options: { key?: CryptoKey; alg?: string; kid?: string } = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const payload = { iss: client.clientId, sub: client.clientId, aud: TOKEN_URL, jti: randomUUID(), exp: now + 240, iat: now, ...claims };
  return new SignJWT(payload)
    .setProtectedHeader({ alg: options.alg ?? client.alg, kid: options.kid ?? String(client.publicJwk.kid), typ: 'JWT' })
    .sign(options.key ?? client.privateKey);
}

export function tokenForm(clientAssertion: string, scope: string, extra: Record<string, string> = {}): string {
  return new URLSearchParams({
    grant_type: 'client_credentials',
    scope,
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: clientAssertion,
    ...extra,
  }).toString();
}

/** An app with SMART auth on, over a fresh store, with registered clients written to a real clients file. */
export class AuthHarness {
  app!: FastifyInstance;
  db!: Database;
  audit!: AuditLog;
  readonly logLines: string[] = [];

  constructor(
    readonly store: StoreName,
    readonly clients: { client: TestClient; scopes: string[] }[],
    readonly extra: { trustProxy?: string; external?: AuthConfig['external']; jwksUrlClients?: { clientId: string; jwksUrl: string; scopes: string[] }[] } = {},
  ) {}

  async start(): Promise<void> {
    this.db = await openTestDatabase(this.store);
    const dir = mkdtempSync(path.join(tmpdir(), 'spb-auth-'));
    const file = path.join(dir, 'clients.yaml');
    writeFileSync(
      file,
      stringify({
        clients: [
          ...this.clients.map(({ client, scopes }) => ({ clientId: client.clientId, scopes, jwks: { keys: [client.publicJwk] } })),
          ...(this.extra.jwksUrlClients ?? []),
        ],
      }),
    );
    const config: AuthConfig = { mode: 'smart', clientsFile: file, tokenLifetimeSeconds: 300, external: this.extra.external };
    const tokens = await TokenService.create({ db: this.db, config, clients: loadClients(file) });
    this.audit = new AuditLog(this.db);
    const sink = lineSink(this.logLines);
    this.app = await buildApp({
      auth: { mode: 'smart', tokens },
      audit: this.audit,
      config: { bodyLimitBytes: 1024 * 1024, baseUrl: BASE, trustProxy: this.extra.trustProxy },
      db: this.db,
      logger: createLogger('info', sink),
    });
  }

  async stop(): Promise<void> {
    await this.app?.close();
    await this.audit?.close();
    await this.db?.close();
  }

  async token(client: TestClient, scope: string): Promise<string> {
    const res = await this.app.inject({
      method: 'POST',
      url: '/auth/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: tokenForm(await assertion(client), scope),
    });
    if (res.statusCode !== 200) throw new Error(`token request failed: ${res.statusCode} ${res.body}`);
    return (JSON.parse(res.body) as { access_token: string }).access_token;
  }

  async request(method: string, url: string, token: string | undefined, body?: unknown, headers: Record<string, string> = {}) {
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const res = await this.app.inject({
      method: method as 'GET',
      url,
      payload,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(payload === undefined ? {} : { 'content-type': 'application/fhir+json' }),
        ...headers,
      },
    });
    let json: unknown;
    try {
      json = res.body ? JSON.parse(res.body) : undefined;
    } catch {
      json = undefined;
    }
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- test convenience: asserted field by field
    return { status: res.statusCode, headers: res.headers, body: res.body, json: json as any };
  }
}

/** A JWKS endpoint of our own on loopback, for jwksUrl clients and an external issuer. */
export async function jwksServer(keys: object[]): Promise<{ server: Server; url: string }> {
  const server = createServer((_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys }));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json` };
}
