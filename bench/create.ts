/**
 * Create benchmark: POST /ServiceRequest with a ~3 KB social prescribing referral.
 *
 * In one run, with the same autocannon settings: a bare Fastify 5 server that parses the JSON body and
 * echoes it back (the ceiling for any Fastify JSON service on this machine), then sp-bridge over embedded
 * PGlite in a temp data dir (and optionally over a throwaway PostgreSQL cluster). Prints req/s, latency
 * and the ratio sp-bridge / bare. Each server runs in its own child process, the load generator in this one.
 *
 * With --secure, each sp-bridge target runs a second time the way production does: SMART Backend Services
 * auth (a TokenService over the same database, a clients file generated into a temp dir, one access token
 * obtained through POST /auth/token before the load and sent as `Authorization: Bearer` with every request)
 * and an AuditLog (one AuditEvent per request, group commit, written before the answer).
 *
 * --token-key rsa gives the TokenService an RSA signing key (tokens signed RS384) instead of the ES384 key it
 * makes at start by default.
 *
 * With --read, each server is also measured on GET /ServiceRequest/{id} (the resource its preflight created;
 * for the bare server, a route that sends a fixed ~3 KB JSON body).
 *
 *   npm run bench:create -- [--duration 10] [--warmup 3] [--connections 10] [--postgres] [--memory]
 *                           [--secure [--token-key rsa]] [--read] [--log-level info] [--cpu-prof DIR] [--breakdown]
 */
import { fork, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import Fastify, { type FastifyInstance } from 'fastify';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { AuditLog } from '../src/audit';
import { loadClients } from '../src/auth/clients';
import type { AuthSetup } from '../src/auth/plugin';
import { TokenService } from '../src/auth/tokens';
import type { AuthConfig } from '../src/config';
import { buildApp } from '../src/http/app';
import { extractIndex } from '../src/fhir/search/extract';
import { openDatabase, Repository, type Database } from '../src/storage';
import { openPglite } from '../src/storage/db';
import { getValidator } from '../src/validation/validator';
import { migrate } from '../src/storage/migrations';
// Test support code, used read-only: initdb into a temp dir, started on a free loopback port.
import { postgresAvailable, startPostgresCluster } from '../test/support/postgres-cluster';
import { benchLogger, log, machine, ms, parseArgs, summarize, type Args } from './common';
import { referralBody } from './referral';

type Target = 'bare' | 'pglite' | 'pglite-memory' | 'postgres';
type Op = 'create' | 'read';

/** One server configuration: a target, and for sp-bridge whether it runs with auth + audit as in production. */
interface Variant {
  target: Target;
  secure: boolean;
}

/** --token-key, read once: the labels of the secure rows name a non-default token algorithm. */
const TOKEN_KEY = parseArgs().value('token-key');

const LABELS: Record<Target, string> = {
  bare: 'bare Fastify echo',
  pglite: 'sp-bridge, PGlite (data dir)',
  'pglite-memory': 'sp-bridge, PGlite (in memory)',
  postgres: 'sp-bridge, PostgreSQL',
};

function label(v: Variant, op: Op = 'create'): string {
  if (v.target === 'bare' && op === 'read') return 'bare Fastify, fixed body';
  return v.secure ? `${LABELS[v.target]}, auth + audit${TOKEN_KEY === 'rsa' ? ' (RS384)' : ''}` : LABELS[v.target];
}

/** Messages between this process and a server child. */
type ToChild = { kind: 'mark' } | { kind: 'report' };
type FromChild =
  | { kind: 'listening'; port: number }
  | { kind: 'marked' }
  | { kind: 'report'; cpuMs: number; wallMs: number; stored: number | null; audited: number | null };

const BODY_LIMIT = 5 * 1024 * 1024;

/** The benchmark's registered client: allowed everything on ServiceRequest, as a GP system would be. */
const CLIENT_ID = 'bench-client';
const CLIENT_KID = 'bench-client-key';
const SCOPE = 'system/ServiceRequest.cruds';
/** Longer than the production default (300 s) so that a long --duration does not outlive the token. */
const TOKEN_LIFETIME_S = 3600;

// ---------------------------------------------------------------------------------------------------------
// Server side (a child process started with --serve TARGET)
// ---------------------------------------------------------------------------------------------------------

/** What the bare server answers to GET /ServiceRequest/:id: a stored-looking referral, as a JSON string. */
const BARE_READ_BODY = JSON.stringify({
  ...(JSON.parse(referralBody('REF-bare')) as object),
  id: 'bare',
  meta: { versionId: '1', lastUpdated: '2026-01-01T00:00:00.000Z' },
});

async function bareServer(): Promise<FastifyInstance> {
  const app = Fastify({ logger: false, bodyLimit: BODY_LIMIT });
  app.addContentTypeParser(['application/fhir+json', 'application/json'], { parseAs: 'string' }, (_req, body, done) => {
    try {
      done(null, JSON.parse(typeof body === 'string' ? body : body.toString('utf8')) as unknown);
    } catch (err) {
      done(err as Error, undefined);
    }
  });
  app.post('/ServiceRequest', async (req, reply) => {
    reply.code(201).type('application/fhir+json; charset=utf-8');
    return req.body;
  });
  app.get('/ServiceRequest/:id', async (_req, reply) => reply.type('application/fhir+json; charset=utf-8').send(BARE_READ_BODY));
  return app;
}

async function openStore(target: Exclude<Target, 'bare'>, args: Args): Promise<{ db: Database; cleanup: () => Promise<void> }> {
  if (target === 'postgres') {
    const url = args.value('database-url');
    if (!url) throw new Error('--database-url is required for the postgres target');
    const db = await openDatabase({ databaseUrl: url, dataDir: '', databasePoolSize: args.number('pool', 10) });
    return { db, cleanup: async () => undefined };
  }
  if (target === 'pglite-memory') {
    const db = await openPglite();
    await migrate(db);
    return { db, cleanup: async () => undefined };
  }
  const dataDir = await mkdtemp(path.join(tmpdir(), 'sp-bridge-bench-'));
  const db = await openDatabase({ dataDir, databasePoolSize: 1 });
  return { db, cleanup: () => rm(dataDir, { recursive: true, force: true }) };
}

/** As src/server.ts builds it: a TokenService over the store with the clients file, and an AuditLog. */
async function secureSetup(
  db: Database,
  clientsFile: string,
  logger: ReturnType<typeof benchLogger>,
  tokenKey?: string,
): Promise<{ auth: AuthSetup; audit: AuditLog; tokens: TokenService }> {
  // Without a key the TokenService makes an ES384 key at start (production without AUTH_TOKEN_SIGNING_KEY, and
  // the key type the README's openssl command makes); --token-key rsa gives it an RSA key (tokens signed RS384).
  if (tokenKey !== undefined && tokenKey !== 'rsa') throw new Error(`--token-key must be rsa (or absent for ES384), not '${tokenKey}'`);
  const tokenSigningKey =
    tokenKey === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() : undefined;
  const config: AuthConfig = { mode: 'smart', clientsFile, tokenLifetimeSeconds: TOKEN_LIFETIME_S, tokenSigningKey };
  const tokens = await TokenService.create({ db, config, clients: loadClients(clientsFile) });
  const audit = new AuditLog(db, { logger: logger.child({ component: 'audit' }) });
  return { auth: { mode: 'smart', tokens }, audit, tokens };
}

async function serve(target: Target, args: Args): Promise<void> {
  let app: FastifyInstance;
  let db: Database | undefined;
  let audit: AuditLog | undefined;
  let cleanup: () => Promise<void> = async () => undefined;
  if (target === 'bare') {
    app = await bareServer();
  } else {
    const store = await openStore(target, args);
    db = store.db;
    cleanup = store.cleanup;
    const logger = benchLogger(args.value('log-level') ?? 'info');
    const clientsFile = args.value('clients-file');
    let auth: AuthSetup = { mode: 'none' };
    if (clientsFile) ({ auth, audit } = await secureSetup(db, clientsFile, logger, args.value('token-key')));
    app = await buildApp({ auth, audit, config: { bodyLimitBytes: BODY_LIMIT }, db, logger });
  }
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (typeof address !== 'object' || address === null) throw new Error('server has no address');

  const counts = async (): Promise<{ stored: number | null; audited: number | null }> => {
    if (!db) return { stored: null, audited: null };
    const { rows } = await db.query<{ stored: string; audited: string }>(
      "SELECT (SELECT count(*) FROM resource_versions WHERE type = 'ServiceRequest')::text AS stored, (SELECT count(*) FROM audit_events)::text AS audited",
    );
    return { stored: Number(rows[0].stored), audited: Number(rows[0].audited) };
  };
  let markCpu = process.cpuUsage();
  let markWall = performance.now();
  let markAudited = 0;
  const send = (m: FromChild) => process.send?.(m);
  process.on('message', (m: ToChild) => {
    if (m.kind === 'mark') {
      void counts().then(({ audited }) => {
        markAudited = audited ?? 0;
        markCpu = process.cpuUsage();
        markWall = performance.now();
        send({ kind: 'marked' });
      });
    } else if (m.kind === 'report') {
      const cpu = process.cpuUsage(markCpu);
      const wallMs = performance.now() - markWall;
      void counts().then(({ stored, audited }) =>
        send({
          kind: 'report',
          cpuMs: (cpu.user + cpu.system) / 1000,
          wallMs,
          stored,
          // Every request waits for its AuditEvent, so every answered request is counted here.
          audited: audit && audited !== null ? audited - markAudited : null,
        }),
      );
    }
  });
  let closing = false;
  const close = async () => {
    if (closing) return;
    closing = true;
    await app.close();
    await audit?.close();
    await db?.close();
    await cleanup();
    process.exit(0); // a normal exit, so that --cpu-prof writes its profile
  };
  process.on('SIGTERM', () => void close());
  process.on('disconnect', () => void close());
  send({ kind: 'listening', port: address.port });
}

// ---------------------------------------------------------------------------------------------------------
// Load side (this process)
// ---------------------------------------------------------------------------------------------------------

interface Server {
  port: number;
  request(m: ToChild): Promise<FromChild>;
  stop(): Promise<void>;
}

function startServer(v: Variant, extra: string[], execArgv: string[]): Promise<Server> {
  const child: ChildProcess = fork(__filename, ['--serve', v.target, ...extra], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`${label(v)} exited with code ${code} before listening`));
    child.once('exit', onExit);
    child.once('message', (m: FromChild) => {
      if (m.kind !== 'listening') return reject(new Error(`unexpected message ${m.kind}`));
      child.off('exit', onExit);
      resolve({
        port: m.port,
        request: (msg) =>
          new Promise((res) => {
            child.once('message', (reply: FromChild) => res(reply));
            child.send(msg);
          }),
        stop: () =>
          new Promise((res) => {
            if (child.exitCode !== null) return res();
            const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
            child.once('exit', () => {
              clearTimeout(timer);
              res();
            });
            child.kill('SIGTERM');
          }),
      });
    });
  });
}

interface RunResult {
  variant: Variant;
  op: Op;
  reqPerSec: number;
  p50: number;
  p99: number;
  mean: number;
  total: number;
  non2xx: number;
  errors: number;
  serverCpu?: number;
  stored?: number | null;
  /** AuditEvents written during the measured phase (secure variants only). */
  audited?: number | null;
}

const POST_HEADERS = { 'content-type': 'application/fhir+json', accept: 'application/fhir+json' };
const GET_HEADERS = { accept: 'application/fhir+json' };

/** The benchmark's client: a key pair, and a clients file registering its public key (as an operator would). */
interface BenchClient {
  privateKey: CryptoKey;
  dir: string;
  file: string;
}

async function makeBenchClient(): Promise<BenchClient> {
  const { privateKey, publicKey } = await generateKeyPair('ES384');
  const publicJwk: JWK = { ...(await exportJWK(publicKey)), alg: 'ES384', kid: CLIENT_KID, use: 'sig' };
  const dir = await mkdtemp(path.join(tmpdir(), 'sp-bridge-bench-auth-'));
  const file = path.join(dir, 'clients.json');
  await writeFile(file, JSON.stringify({ clients: [{ clientId: CLIENT_ID, scopes: [SCOPE], jwks: { keys: [publicJwk] } }] }, null, 2));
  return { privateKey, dir, file };
}

/** SMART Backend Services: a signed assertion posted to the token endpoint, as a client system does it. */
async function clientAssertion(client: BenchClient, tokenUrl: string): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ iss: CLIENT_ID, sub: CLIENT_ID, aud: tokenUrl, jti: randomUUID(), iat: now, exp: now + 240 })
    .setProtectedHeader({ alg: 'ES384', kid: CLIENT_KID, typ: 'JWT' })
    .sign(client.privateKey);
}

function tokenForm(assertion: string): string {
  return new URLSearchParams({
    grant_type: 'client_credentials',
    scope: SCOPE,
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: assertion,
  }).toString();
}

function parseToken(status: number, text: string, where: string): string {
  if (status !== 200) throw new Error(`${where}: token request answered ${status}: ${text.slice(0, 500)}`);
  const token = JSON.parse(text) as { access_token?: string; scope?: string };
  if (!token.access_token || token.scope !== SCOPE) throw new Error(`${where}: unexpected token answer ${text.slice(0, 200)}`);
  return token.access_token;
}

async function getToken(port: number, client: BenchClient, v: Variant): Promise<string> {
  const tokenUrl = `http://127.0.0.1:${port}/auth/token`;
  const res = await fetch(tokenUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: tokenForm(await clientAssertion(client, tokenUrl)),
  });
  return parseToken(res.status, await res.text(), label(v));
}

/** One create checked to answer 201 with a ServiceRequest; returns its id (for the read phase). */
async function preflight(port: number, headers: Record<string, string>, v: Variant): Promise<string> {
  const url = `http://127.0.0.1:${port}/ServiceRequest`;
  if (v.secure) {
    // Auth must really be on: the same request without the token is refused.
    const res = await fetch(url, { method: 'POST', headers: POST_HEADERS, body: referralBody('REF-no-token') });
    await res.text();
    if (res.status !== 401) throw new Error(`${label(v)}: a create without a token answered ${res.status}, not 401`);
  }
  const res = await fetch(url, { method: 'POST', headers: { ...POST_HEADERS, ...headers }, body: referralBody('REF-preflight') });
  const text = await res.text();
  if (res.status !== 201) throw new Error(`${label(v)}: preflight POST answered ${res.status}: ${text.slice(0, 500)}`);
  const parsed = JSON.parse(text) as { resourceType?: string; id?: string };
  if (parsed.resourceType !== 'ServiceRequest') throw new Error(`${label(v)}: preflight answered ${text.slice(0, 200)}`);
  return parsed.id ?? 'bare';
}

async function preflightRead(port: number, id: string, headers: Record<string, string>, v: Variant): Promise<void> {
  const res = await fetch(`http://127.0.0.1:${port}/ServiceRequest/${id}`, { headers: { ...GET_HEADERS, ...headers } });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${label(v)}: preflight GET answered ${res.status}: ${text.slice(0, 500)}`);
}

interface CannonRun {
  result: autocannon.Result;
  /** Every 2xx response time in ms, at full precision (autocannon's own histogram keeps whole milliseconds). */
  latencies: number[];
}

interface Load {
  method: 'GET' | 'POST';
  path: string;
  headers: Record<string, string>;
  body?: string;
}

function cannon(port: number, load: Load, connections: number, seconds: number): Promise<CannonRun> {
  return new Promise((resolve, reject) => {
    const latencies: number[] = [];
    const instance = autocannon(
      {
        url: `http://127.0.0.1:${port}${load.path}`,
        method: load.method,
        headers: load.headers,
        body: load.body,
        idReplacement: load.body !== undefined,
        connections,
        pipelining: 1,
        duration: seconds,
        timeout: 30,
      },
      (err: unknown, result: autocannon.Result) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve({ result, latencies })),
    );
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime);
    });
  });
}

/** Warm-up, then the measured phase, with the server's CPU use (and row counts) over the measured phase. */
async function measure(server: Server, v: Variant, op: Op, load: Load, args: Args): Promise<RunResult> {
  const connections = args.number('connections', 10);
  const duration = args.number('duration', 10);
  const warmup = args.number('warmup', 3);
  if (warmup > 0) await cannon(server.port, load, connections, warmup);
  await server.request({ kind: 'mark' });
  const { result: r, latencies } = await cannon(server.port, load, connections, duration);
  const report = await server.request({ kind: 'report' });
  const lat = summarize(latencies);
  const result: RunResult = {
    variant: v,
    op,
    reqPerSec: r.requests.average,
    p50: lat.p50,
    p99: lat.p99,
    mean: lat.mean,
    total: r.requests.total,
    non2xx: r.non2xx,
    errors: r.errors,
  };
  if (report.kind === 'report') {
    result.serverCpu = report.cpuMs / report.wallMs;
    result.stored = report.stored;
    result.audited = report.audited;
  }
  printResult(result);
  return result;
}

/** Starts the server of one variant and measures create (and, with --read, read) against it. */
async function runVariant(v: Variant, args: Args, extra: string[] = []): Promise<RunResult[]> {
  const profDir = args.value('cpu-prof');
  const execArgv = profDir && v.target !== 'bare' ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(profDir)}`] : [];
  const logLevel = args.value('log-level');
  const tokenKey = args.value('token-key');
  const client = v.secure ? await makeBenchClient() : undefined;
  const server = await startServer(
    v,
    [
      ...extra,
      ...(client ? ['--clients-file', client.file, ...(tokenKey ? ['--token-key', tokenKey] : [])] : []),
      ...(logLevel ? ['--log-level', logLevel] : []),
    ],
    execArgv,
  );
  try {
    // One token for the whole run, as a client system caches its token until it expires.
    const auth: Record<string, string> = client ? { authorization: `Bearer ${await getToken(server.port, client, v)}` } : {};
    const id = await preflight(server.port, auth, v);
    const results: RunResult[] = [];
    // [<id>] is replaced by autocannon with a fresh id in every request: each referral has its own number.
    const create: Load = { method: 'POST', path: '/ServiceRequest', headers: { ...POST_HEADERS, ...auth }, body: referralBody('REF-[<id>]') };
    results.push(await measure(server, v, 'create', create, args));
    if (args.flag('read')) {
      await preflightRead(server.port, id, auth, v);
      results.push(await measure(server, v, 'read', { method: 'GET', path: `/ServiceRequest/${id}`, headers: { ...GET_HEADERS, ...auth } }, args));
    }
    return results;
  } finally {
    await server.stop();
    if (client) await rm(client.dir, { recursive: true, force: true });
  }
}

const LABEL_WIDTH = TOKEN_KEY === 'rsa' ? 52 : 44;

function cpuPerRequest(r: RunResult): number | undefined {
  return r.serverCpu === undefined ? undefined : (r.serverCpu * 1000) / r.reqPerSec;
}

function printResult(r: RunResult): void {
  const perReq = cpuPerRequest(r);
  const cpu =
    r.serverCpu === undefined || perReq === undefined
      ? ''
      : `, server process CPU ${(r.serverCpu * 100).toFixed(0)}% of one core = ${perReq.toFixed(3)} ms CPU per request`;
  const audited = r.audited === undefined || r.audited === null ? '' : `, ${r.audited} AuditEvents written`;
  log(
    `  ${r.op.padEnd(6)} ${label(r.variant, r.op).padEnd(LABEL_WIDTH)} ${r.reqPerSec.toFixed(0).padStart(7)} req/s  ` +
      `p50 ${r.p50.toFixed(2).padStart(6)} ms  p99 ${r.p99.toFixed(2).padStart(6)} ms  ` +
      `(${r.total} requests, ${r.non2xx} non-2xx, ${r.errors} errors${cpu}${audited})`,
  );
  if (r.non2xx > 0 || r.errors > 0) log(`  WARNING: ${label(r.variant)} (${r.op}) had failures; its figures are not comparable`);
  // Every answered request waits for its AuditEvent, so there is at least one per response (a few more when
  // autocannon stopped with requests in flight, which the server still answered and audited).
  if (r.audited !== undefined && r.audited !== null && r.audited < r.total) {
    log(`  WARNING: ${label(r.variant)} (${r.op}) wrote ${r.audited} AuditEvents for ${r.total} requests`);
  }
}

/**
 * Where one request's time goes, measured serially in this process over in-memory PGlite:
 * Repository.save alone, extractIndex alone, the whole app through inject(), and the bare echo through inject().
 * With --secure also the token check alone, one AuditEvent write alone and the app with auth + audit.
 */
async function breakdown(n: number, secure: boolean, args: Args): Promise<void> {
  log(`\nBreakdown: ${n} sequential creates in-process (in-memory PGlite, no sockets)`);
  const db = await openPglite();
  await migrate(db);
  const repo = Repository.open(db);
  const body = referralBody();
  // The wall-clock median per operation (robust to the odd preempted sample when other work shares the machine)
  // and this process's CPU time per operation (all threads, so GC helpers are included).
  const time = async (label: string, run: (i: number) => Promise<unknown> | unknown) => {
    for (let i = 0; i < Math.min(200, n); i++) await run(-1 - i); // warm-up
    const samples: number[] = [];
    const cpu0 = process.cpuUsage();
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await run(i);
      samples.push(performance.now() - t0);
    }
    const cpu = process.cpuUsage(cpu0);
    const cpuPerOp = (cpu.user + cpu.system) / 1000 / n;
    const s = summarize(samples);
    log(`  ${label.padEnd(46)} p50 ${ms(s.p50, 3)}  p99 ${ms(s.p99, 3)}  CPU ${ms(cpuPerOp, 3)}/op`);
    return s.p50;
  };
  const parse = await time('JSON.parse of the body', () => JSON.parse(body));
  const extract = await time('JSON.parse + extractIndex', () => extractIndex(JSON.parse(body) as fhir4.Resource) && undefined);
  const validator = getValidator();
  const validate = await time('JSON.parse + validator.validate (all layers)', () => validator.validate(JSON.parse(body) as fhir4.Resource, {}));
  const save = await time('JSON.parse + extractIndex + Repository.save', (i) => {
    const resource = JSON.parse(body) as fhir4.Resource;
    return repo.save({ type: 'ServiceRequest', id: `bd-${i}`, resource, index: extractIndex(resource), fresh: true });
  });
  const insertOnly = await time('a bare single-row INSERT of the body', (i) =>
    db.query('INSERT INTO resource_versions (type, id, version, last_updated, content) VALUES ($1, $2, 1, now(), $3)', [
      'Bench',
      `raw-${i}`,
      body,
    ]),
  );
  const app = await buildApp({ auth: { mode: 'none' }, config: { bodyLimitBytes: BODY_LIMIT }, db, logger: benchLogger('info') });
  const inject = await time('sp-bridge POST via inject()', () =>
    app.inject({ method: 'POST', url: '/ServiceRequest', headers: POST_HEADERS, payload: body }),
  );
  const bare = await bareServer();
  const bareInject = await time('bare echo POST via inject()', () =>
    bare.inject({ method: 'POST', url: '/ServiceRequest', headers: POST_HEADERS, payload: body }),
  );
  let secureFigures: { injectSecure: number; authenticate: number; record: number } | undefined;
  let client: BenchClient | undefined;
  if (secure) {
    client = await makeBenchClient();
    const logger = benchLogger('info');
    const { auth, audit, tokens } = await secureSetup(db, client.file, logger, args.value('token-key'));
    const baseUrl = 'http://sp-bridge.bench';
    const secureApp = await buildApp({ auth, audit, config: { bodyLimitBytes: BODY_LIMIT, baseUrl }, db, logger });
    const res = await secureApp.inject({
      method: 'POST',
      url: '/auth/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: tokenForm(await clientAssertion(client, `${baseUrl}/auth/token`)),
    });
    const authorization = `Bearer ${parseToken(res.statusCode, res.body, 'breakdown')}`;
    const authenticate = await time(`TokenService.authenticate (${TOKEN_KEY === 'rsa' ? 'RS384' : 'ES384'} verify)`, () => tokens.authenticate(authorization));
    const record = await time('AuditLog.record alone (1 INSERT, no grouping)', (i) =>
      audit.record({
        recorded: new Date(),
        clientId: CLIENT_ID,
        via: 'token',
        address: '127.0.0.1',
        requestId: `bd-audit-${i}`,
        interaction: 'create',
        action: 'C',
        entities: [{ reference: `ServiceRequest/bd-audit-${i}` }],
        status: 201,
      }),
    );
    const injectSecure = await time('sp-bridge POST via inject(), auth + audit', () =>
      secureApp.inject({ method: 'POST', url: '/ServiceRequest', headers: { ...POST_HEADERS, authorization }, payload: body }),
    );
    await secureApp.close();
    await audit.close();
    secureFigures = { injectSecure, authenticate, record };
  }
  await app.close();
  await bare.close();
  await db.close();
  if (client) await rm(client.dir, { recursive: true, force: true });
  const storage = save - extract;
  const validation = validate - parse;
  const pct = (x: number) => `${((x / inject) * 100).toFixed(0)}%`;
  log(`  => median create through sp-bridge (inject()) ${ms(inject, 3)}:`);
  log(`     Repository.save          ≈ ${ms(storage, 3)} (${pct(storage)})`);
  log(`     validation               ≈ ${ms(validation, 3)} (${pct(validation)})`);
  log(`     JSON.parse + extractIndex ≈ ${ms(extract, 3)} (${pct(extract)})`);
  log(`     everything else (Fastify, parser, routing, response JSON, log line) ≈ ${ms(inject - storage - validation - extract, 3)} (${pct(inject - storage - validation - extract)})`);
  log(`     for scale: bare Fastify echo via inject() ${ms(bareInject, 3)}; one single-row INSERT in PGlite ${ms(insertOnly, 3)}`);
  if (secureFigures) {
    const { injectSecure, authenticate, record } = secureFigures;
    const added = injectSecure - inject;
    log(`  => with auth + audit ${ms(injectSecure, 3)}, ${ms(added, 3)} (${((added / inject) * 100).toFixed(0)}%) more than without:`);
    log(`     bearer token check       ≈ ${ms(authenticate, 3)}`);
    log(`     one AuditEvent INSERT    ≈ ${ms(record, 3)} (one request at a time, so no group commit: each record is its own INSERT)`);
    log(`     the rest (building the AuditEvent, scope check, hooks) ≈ ${ms(added - authenticate - record, 3)}`);
  }
}

function ratioLine(r: RunResult, base: RunResult, plain: RunResult | undefined): void {
  const ratio = r.reqPerSec / base.reqPerSec;
  const verdict =
    r.op === 'create' && r.variant.target.startsWith('pglite') ? (ratio >= 0.3 ? '  (target >= 0.30: met)' : '  (target >= 0.30: NOT met)') : '';
  log(
    `  ${r.op.padEnd(6)} ${label(r.variant).padEnd(LABEL_WIDTH)} / bare = ${ratio.toFixed(3)}x req/s, ` +
      `p99 ${(r.p99 / Math.max(base.p99, 0.001)).toFixed(1)}x${verdict}`,
  );
  if (!plain) return;
  const cpu = cpuPerRequest(r);
  const plainCpu = cpuPerRequest(plain);
  const cpuText = cpu !== undefined && plainCpu !== undefined ? `, server CPU per request ${(cpu - plainCpu >= 0 ? '+' : '')}${(cpu - plainCpu).toFixed(3)} ms` : '';
  log(
    `  ${''.padEnd(6)} ${'  vs the same without auth + audit'.padEnd(LABEL_WIDTH)}   = ${(r.reqPerSec / plain.reqPerSec).toFixed(2)}x req/s, ` +
      `p50 ${(r.p50 - plain.p50 >= 0 ? '+' : '')}${(r.p50 - plain.p50).toFixed(2)} ms${cpuText}`,
  );
}

async function main(): Promise<void> {
  const args = parseArgs();
  const serveTarget = args.value('serve');
  if (serveTarget) return serve(serveTarget as Target, args);

  const duration = args.number('duration', 10);
  const warmup = args.number('warmup', 3);
  const connections = args.number('connections', 10);
  const secure = args.flag('secure');
  if (TOKEN_KEY !== undefined && TOKEN_KEY !== 'rsa') throw new Error(`--token-key must be rsa (or absent for ES384), not '${TOKEN_KEY}'`);
  log(`sp-bridge create benchmark — ${new Date().toISOString()}`);
  log(`machine: ${machine()}`);
  log(
    `POST /ServiceRequest, ${Buffer.byteLength(referralBody())} byte referral (application/fhir+json)` +
      `${args.flag('read') ? ', and GET /ServiceRequest/{id}' : ''}, ` +
      `autocannon ${connections} connections, pipelining 1, ${warmup} s warm-up + ${duration} s measured, 127.0.0.1`,
  );
  if (secure) {
    log(
      `auth + audit rows: SMART bearer token (${TOKEN_KEY === 'rsa' ? 'RS384' : 'ES384'}, scope ${SCOPE}) checked on every request, ` +
        'one AuditEvent written (group commit) before each answer, as in production',
    );
  }
  log('');

  const results: RunResult[] = [];
  const run = async (target: Exclude<Target, 'bare'>, extra: string[] = []) => {
    results.push(...(await runVariant({ target, secure: false }, args, extra)));
    if (secure) results.push(...(await runVariant({ target, secure: true }, args, extra)));
  };
  results.push(...(await runVariant({ target: 'bare', secure: false }, args)));
  await run(args.flag('memory') ? 'pglite-memory' : 'pglite');
  if (args.flag('memory') && args.flag('both')) await run('pglite');

  if (args.flag('postgres')) {
    if (!postgresAvailable()) {
      log('  PostgreSQL binaries (initdb, pg_ctl, postgres) are not on PATH: skipping --postgres');
    } else {
      const cluster = await startPostgresCluster();
      try {
        await run('postgres', ['--database-url', cluster.url, '--pool', String(args.number('pool', 10))]);
      } finally {
        cluster.stop();
      }
    }
  }

  log('');
  for (const op of ['create', 'read'] as const) {
    const base = results.find((r) => r.op === op && r.variant.target === 'bare');
    if (!base) continue;
    for (const r of results) {
      if (r.op !== op || r === base) continue;
      const plain = r.variant.secure ? results.find((p) => p.op === op && p.variant.target === r.variant.target && !p.variant.secure) : undefined;
      ratioLine(r, base, plain);
    }
    if (base.serverCpu !== undefined && base.serverCpu < 0.85) {
      log(
        `  note: the bare server used only ${(base.serverCpu * 100).toFixed(0)}% of a core (${op}): the load generator or other work on the ` +
          `machine held it back, so its req/s (and the ratio) are understated; compare CPU per request instead`,
      );
    }
  }
  if (args.flag('breakdown')) await breakdown(args.number('breakdown-n', 2000), secure, args);
}

main().catch((err: unknown) => {
  process.stderr.write(`create benchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
