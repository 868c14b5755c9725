import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as jose from 'jose';
import { parse as parseYaml } from 'yaml';
import { loadClients } from '../src/auth/clients';
import { main } from '../src/cli';
import {
  CLIENT_ASSERTION_TYPE,
  DEFAULT_CLIENT_SCOPES,
  algForKey,
  describeTokenError,
  jwkThumbprint,
  registerClientCommand,
  runGetToken,
  type ClientEntry,
} from '../src/cli/clients';

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

function register(args: string[]): { code: number; stdout: string; stderr: string } {
  const out: string[] = [];
  const err: string[] = [];
  const code = registerClientCommand(args, (l) => out.push(l), (l) => err.push(l));
  return { code, stdout: out.join('\n'), stderr: err.join('\n') };
}

async function getToken(args: string[], stdin = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runGetToken(args, (l) => out.push(l), (l) => err.push(l), () => stdin);
  return { code, stdout: out.join('\n'), stderr: err.join('\n') };
}

/**
 * A stand-in token endpoint: verifies the client assertion as the SMART Backend Services spec says, against the
 * JWKS the clients file holds (what register-client printed), and answers like an OAuth token endpoint.
 */
async function startTokenServer(clients: ClientEntry[]): Promise<{ url: string; server: Server; seen: jose.JWTPayload[] }> {
  const seen: jose.JWTPayload[] = [];
  const usedJti = new Set<string>();
  let url = '';
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const reply = (status: number, body: unknown) => {
          res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
          res.end(JSON.stringify(body));
        };
        if (req.method !== 'POST' || !String(req.headers['content-type']).startsWith('application/x-www-form-urlencoded')) {
          return reply(400, { error: 'invalid_request', error_description: 'POST a form' });
        }
        const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
        if (form.get('grant_type') !== 'client_credentials') return reply(400, { error: 'unsupported_grant_type' });
        if (form.get('client_assertion_type') !== CLIENT_ASSERTION_TYPE) return reply(400, { error: 'invalid_request' });
        const assertion = form.get('client_assertion') ?? '';
        const claimed = jose.decodeJwt(assertion);
        const client = clients.find((c) => c.clientId === claimed.iss);
        if (!client) return reply(401, { error: 'invalid_client', error_description: `unknown client ${String(claimed.iss)}` });
        try {
          const { payload, protectedHeader } = await jose.jwtVerify(assertion, jose.createLocalJWKSet(client.jwks as jose.JSONWebKeySet), {
            issuer: client.clientId,
            subject: client.clientId,
            audience: url,
            algorithms: ['ES384', 'RS384'],
            typ: 'JWT',
            requiredClaims: ['jti', 'exp', 'iat'],
          });
          if (!protectedHeader.kid) throw new Error('no kid');
          if ((payload.exp as number) - Math.floor(Date.now() / 1000) > 300) throw new Error('exp more than 5 minutes ahead');
          if (usedJti.has(payload.jti as string)) throw new Error('jti replayed');
          usedJti.add(payload.jti as string);
          seen.push(payload);
        } catch (e) {
          return reply(401, { error: 'invalid_client', error_description: (e as Error).message });
        }
        const requested = (form.get('scope') ?? '').split(' ').filter(Boolean);
        const granted = requested.filter((s) => client.scopes.includes(s));
        if (granted.length === 0) return reply(400, { error: 'invalid_scope', error_description: 'none of the requested scopes is allowed' });
        reply(200, { access_token: `token-for-${client.clientId}`, token_type: 'bearer', expires_in: 300, scope: granted.join(' ') });
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/auth/token`;
  return { url, server, seen };
}

describe('sp-bridge register-client', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sp-clients-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes a 0600 PKCS#8 ES384 key and prints a clients-file entry holding only the public key', async () => {
    const { code, stdout, stderr } = register(['integrator-a', '--out', dir]);
    expect(code).toBe(0);
    expect(stderr).toMatch(/Private key written to .*integrator-a\.key\.pem/);
    const keyFile = path.join(dir, 'integrator-a.key.pem');
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    const pem = readFileSync(keyFile, 'utf8');
    expect(pem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    const key = createPrivateKey(pem);
    expect(algForKey(key)).toBe('ES384');

    const doc = parseYaml(stdout) as { clients: ClientEntry[] };
    expect(doc.clients).toHaveLength(1);
    const entry = doc.clients[0];
    expect(entry.clientId).toBe('integrator-a');
    expect(entry.scopes).toEqual([...DEFAULT_CLIENT_SCOPES]);
    expect(entry.jwks.keys).toHaveLength(1);
    const jwk = entry.jwks.keys[0];
    expect(jwk).toMatchObject({ kty: 'EC', crv: 'P-384', alg: 'ES384', use: 'sig' });
    for (const m of PRIVATE_MEMBERS) expect(jwk).not.toHaveProperty(m);
    expect(stdout).not.toMatch(/PRIVATE KEY/);
    // kid is the RFC 7638 thumbprint, as jose computes it
    expect(jwk.kid).toBe(await jose.calculateJwkThumbprint(jwk as jose.JWK));
    // and the public key is the private key's
    expect(createPublicKey(key).export({ format: 'jwk' })).toMatchObject({ x: jwk.x, y: jwk.y });
  });

  it('makes RS384 keys and takes the scopes given', async () => {
    const { code, stdout } = register(['integrator-rsa', '--alg', 'RS384', '--out', dir, '--scopes', 'system/Patient.rs  system/ServiceRequest.cruds sp-bridge/admin']);
    expect(code).toBe(0);
    const entry = (parseYaml(stdout) as { clients: ClientEntry[] }).clients[0];
    expect(entry.scopes).toEqual(['system/Patient.rs', 'system/ServiceRequest.cruds', 'sp-bridge/admin']);
    const jwk = entry.jwks.keys[0];
    expect(jwk).toMatchObject({ kty: 'RSA', alg: 'RS384', use: 'sig', e: 'AQAB' });
    for (const m of PRIVATE_MEMBERS) expect(jwk).not.toHaveProperty(m);
    expect(jwk.kid).toBe(await jose.calculateJwkThumbprint(jwk as jose.JWK));
    const key = createPrivateKey(readFileSync(path.join(dir, 'integrator-rsa.key.pem'), 'utf8'));
    expect(key.asymmetricKeyDetails?.modulusLength).toBeGreaterThanOrEqual(2048);
    expect(jwkThumbprint(jwk)).toBe(jwk.kid);
  });

  it("prints entries the server's clients-file loader accepts, alone or several in one file", () => {
    const one = register(['loader-check', '--out', dir]);
    const file = path.join(dir, 'clients.yaml');
    writeFileSync(file, `${one.stdout}\n`);
    expect([...loadClients(file).keys()]).toEqual(['loader-check']);
    // a second client: its lines from `- clientId` on go under the same `clients:`
    const two = register(['loader-check-2', '--out', dir, '--alg', 'RS384']);
    const item = two.stdout.slice(two.stdout.indexOf('  - clientId:'));
    writeFileSync(file, `${one.stdout}\n${item}\n`);
    expect([...loadClients(file).keys()]).toEqual(['loader-check', 'loader-check-2']);
  });

  it('refuses to overwrite an existing key and leaves it as it was', () => {
    const keyFile = path.join(dir, 'integrator-a.key.pem');
    const before = readFileSync(keyFile, 'utf8');
    const { code, stdout, stderr } = register(['integrator-a', '--out', dir]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/already exists: not overwriting/);
    expect(stdout).toBe('');
    expect(readFileSync(keyFile, 'utf8')).toBe(before);
  });

  it('explains bad usage', () => {
    expect(register([]).code).toBe(2);
    expect(register(['a', 'b']).code).toBe(2);
    expect(register(['../escape', '--out', dir]).code).toBe(1);
    expect(register(['x', '--alg', 'HS256', '--out', dir]).stderr).toMatch(/ES384 or RS384/);
    expect(register(['x', '--scopes', 'patient/*.read', '--out', dir]).stderr).toMatch(/not a scope sp-bridge grants: patient\/\*\.read/);
    expect(register(['x', '--scopes', 'system/Patient.sr', '--out', dir]).code).toBe(2); // v2 letters go in cruds order
    expect(register(['x', '--scopes', 'system/patient.rs', '--out', dir]).code).toBe(2);
    expect(register(['--help']).stdout).toMatch(/Usage: sp-bridge register-client/);
  });

  it('is reachable from the sp-bridge command line', () => {
    const lines: string[] = [];
    expect(main(['help'], (l) => lines.push(l))).toBe(0);
    expect(lines.join('\n')).toMatch(/register-client <id>/);
    expect(lines.join('\n')).toMatch(/get-token --client-id/);
  });
});

describe('sp-bridge get-token', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sp-token-'));
  let clients: ClientEntry[];
  let endpoint: Awaited<ReturnType<typeof startTokenServer>>;

  beforeAll(async () => {
    const es = register(['tester', '--out', dir, '--scopes', 'system/Patient.cruds system/ServiceRequest.rs']);
    const rsa = register(['tester-rsa', '--out', dir, '--alg', 'RS384']);
    expect([es.code, rsa.code]).toEqual([0, 0]);
    clients = [es.stdout, rsa.stdout].map((y) => (parseYaml(y) as { clients: ClientEntry[] }).clients[0]);
    endpoint = await startTokenServer(clients);
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => endpoint.server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('gets a token with the key register-client wrote, verified against the JWKS it printed (ES384)', async () => {
    const { code, stdout, stderr } = await getToken([
      '--client-id', 'tester',
      '--key', path.join(dir, 'tester.key.pem'),
      '--token-url', endpoint.url,
      '--scope', 'system/Patient.cruds system/CarePlan.cruds',
    ]);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const body = JSON.parse(stdout) as { access_token: string; scope: string };
    expect(body).toMatchObject({ access_token: 'token-for-tester', token_type: 'bearer', scope: 'system/Patient.cruds' });
    const claims = endpoint.seen[endpoint.seen.length - 1];
    expect(claims).toMatchObject({ iss: 'tester', sub: 'tester', aud: endpoint.url });
    expect((claims.exp as number) - (claims.iat as number)).toBe(300);
    expect(typeof claims.jti).toBe('string');
  });

  it('works with RS384 keys, reads the key from stdin and can print just the token', async () => {
    const pem = readFileSync(path.join(dir, 'tester-rsa.key.pem'), 'utf8');
    const { code, stdout } = await getToken(
      ['--client-id', 'tester-rsa', '--key', '-', '--token-url', endpoint.url, '--token-only'],
      pem,
    );
    expect(code).toBe(0);
    expect(stdout).toBe('token-for-tester-rsa');
  });

  it('uses a fresh jti every time', async () => {
    const args = ['--client-id', 'tester', '--key', path.join(dir, 'tester.key.pem'), '--token-url', endpoint.url, '--scope', 'system/Patient.cruds'];
    expect((await getToken(args)).code).toBe(0);
    expect((await getToken(args)).code).toBe(0);
  });

  it('exits 1 with the OAuth error when the endpoint refuses', async () => {
    // another key than the one registered for 'tester'
    const stranger = path.join(dir, 'stranger.key.pem');
    writeFileSync(stranger, generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
    const refused = await getToken(['--client-id', 'tester', '--key', stranger, '--token-url', endpoint.url]);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toMatch(/refused: HTTP 401 invalid_client: /);

    const scope = await getToken(['--client-id', 'tester', '--key', path.join(dir, 'tester.key.pem'), '--token-url', endpoint.url, '--scope', 'system/Task.rs']);
    expect(scope.code).toBe(1);
    expect(scope.stderr).toMatch(/HTTP 400 invalid_scope/);
  });

  it('exits 1 when the token endpoint cannot be reached, and 2 on bad usage', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const down = await getToken(['--client-id', 'tester', '--key', path.join(dir, 'tester.key.pem'), '--token-url', `http://127.0.0.1:${port}/auth/token`]);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/get-token: http:\/\/127\.0\.0\.1:\d+\/auth\/token: /);

    expect((await getToken(['--client-id', 'tester'])).stderr).toMatch(/needs --key, --token-url/);
    expect((await getToken(['--client-id', 'x', '--key', 'k', '--token-url', 'ftp://x'])).code).toBe(2);
    const p256 = path.join(dir, 'p256.key.pem');
    writeFileSync(p256, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
    const wrongCurve = await getToken(['--client-id', 'tester', '--key', p256, '--token-url', endpoint.url]);
    expect(wrongCurve.code).toBe(1);
    expect(wrongCurve.stderr).toMatch(/P-384/);
  });

  it('describes OperationOutcome refusals', () => {
    expect(
      describeTokenError(400, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'security', diagnostics: 'bad assertion' }] }),
    ).toBe('HTTP 400 OperationOutcome: error security: bad assertion');
    expect(describeTokenError(502, '<html>Bad gateway</html>')).toBe('HTTP 502 <html>Bad gateway</html>');
  });
});
