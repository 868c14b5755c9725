import { once } from 'node:events';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureDist } from './support/dist';
import { VARIABLES } from '../src/config';
import { openPglite } from '../src/storage/db';
import { patient } from './fixtures';

/**
 * Graceful shutdown of the real server (dist/src/server.js, as `npm start` runs it) on SIGTERM: requests in
 * flight finish and are stored, new connections are refused, the wait is bounded by SHUTDOWN_GRACE_MS,
 * deliveries in flight are given back to the queue, the process exits 0; a second signal exits at once.
 */

const ROOT = path.join(__dirname, '..');
const SERVER = path.join(ROOT, 'dist', 'src', 'server.js');


const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

interface RunningServer {
  child: ChildProcess;
  port: number;
  exited: Promise<Exit>;
  output: string[];
}

/** Configuration the test process may carry; the server gets only what each test gives it. */
const CONFIG_VARIABLES = new Set(VARIABLES.flatMap((v) => [v.name, `${v.name}_FILE`]));

const running: RunningServer[] = [];
const tempDirs: string[] = [];

function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

async function startServer(dataDir: string, extra: Record<string, string> = {}): Promise<RunningServer> {
  const port = await freePort();
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!CONFIG_VARIABLES.has(name)) env[name] = value;
  Object.assign(env, { AUTH_MODE: 'none', HOST: '127.0.0.1', PORT: String(port), DATA_DIR: dataDir, LOG_LEVEL: 'info', ...extra });
  const child = spawn(process.execPath, [SERVER], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  child.stdout!.on('data', (d: Buffer) => output.push(d.toString('utf8')));
  child.stderr!.on('data', (d: Buffer) => output.push(d.toString('utf8')));
  const exited = new Promise<Exit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const server = { child, port, exited, output };
  running.push(server);
  let gone = false;
  void exited.then(() => (gone = true));
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (gone) throw new Error(`the server exited before it was ready:\n${output.join('')}`);
    if (Date.now() > deadline) throw new Error(`the server was not ready within 60 s:\n${output.join('')}`);
    const ready = await get(port, '/metadata').then(
      (res) => res.status === 200,
      () => false,
    );
    if (ready) return server;
    await sleep(100);
  }
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

function get(port: number, url: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: url, agent: false, headers: { accept: 'application/fhir+json' } }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function post(port: number, url: string, resource: unknown): Promise<Answer> {
  const upload = startUpload(port, url, resource);
  upload.finish();
  return upload.answer;
}

/** A POST whose headers and first half of the body are sent now, the rest when `finish` is called. */
function startUpload(port: number, url: string, resource: unknown): { finish: () => void; answer: Promise<Answer> } {
  const body = Buffer.from(JSON.stringify(resource));
  const half = Math.floor(body.length / 2);
  const req = httpRequest({
    host: '127.0.0.1',
    port,
    path: url,
    method: 'POST',
    agent: false,
    headers: { 'content-type': 'application/fhir+json', 'content-length': String(body.length) },
  });
  const answer = new Promise<Answer>((resolve, reject) => {
    req.on('response', (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
  req.write(body.subarray(0, half));
  return { finish: () => req.end(body.subarray(half)), answer };
}

/** Whether a new TCP connection to `port` is refused. */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

async function waitFor(what: string, check: () => Promise<boolean> | boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

async function stop(server: RunningServer): Promise<Exit> {
  server.child.kill('SIGTERM');
  return server.exited;
}

beforeAll(() => ensureDist(path.join('src', 'server.js')), 300_000);

afterEach(async () => {
  for (const server of running.splice(0)) {
    if (server.child.exitCode === null && server.child.signalCode === null) {
      server.child.kill('SIGKILL');
      await server.exited;
    }
  }
});

afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

describe('graceful shutdown of the server process', () => {
  it('on SIGTERM finishes the request in flight and stores it, refuses new connections and exits 0 without waiting out the grace period', async () => {
    const dataDir = tempDir('spb-shutdown-');
    const server = await startServer(dataDir, { SHUTDOWN_GRACE_MS: '10000' });
    const upload = startUpload(server.port, '/Patient', patient());
    // The server has the request's headers: the request is in flight.
    await sleep(300);

    const signalled = Date.now();
    server.child.kill('SIGTERM');
    await waitFor('new connections to be refused', () => refused(server.port), 5000);
    expect(server.child.exitCode).toBeNull();

    upload.finish();
    const created = await upload.answer;
    expect(created.status).toBe(201);
    expect(created.headers.connection).toBe('close');
    const id = JSON.parse(created.body).id as string;
    expect(id).toBeTruthy();

    expect(await server.exited).toEqual({ code: 0, signal: null });
    expect(Date.now() - signalled).toBeLessThan(5000);
    expect(server.output.join('')).toContain('shutting down');

    // Stored for real: the next start on the same data directory reads it back.
    const again = await startServer(dataDir);
    const read = await get(again.port, `/Patient/${id}`);
    expect(read.status).toBe(200);
    expect(JSON.parse(read.body)).toMatchObject({ resourceType: 'Patient', id });
    expect(await stop(again)).toEqual({ code: 0, signal: null });
  }, 180_000);

  it('closes connections still busy when the grace period ends, and exits 0', async () => {
    const server = await startServer(tempDir('spb-shutdown-'), { SHUTDOWN_GRACE_MS: '1000' });
    const upload = startUpload(server.port, '/Patient', patient());
    const outcome = upload.answer.then(
      () => 'answered',
      () => 'cut off',
    );
    await sleep(300);

    const signalled = Date.now();
    server.child.kill('SIGTERM');
    // The rest of the body never comes.
    expect(await outcome).toBe('cut off');
    expect(await server.exited).toEqual({ code: 0, signal: null });
    const took = Date.now() - signalled;
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(6000);
    expect(server.output.join('')).toContain('grace period ended');
  }, 120_000);

  it('exits at once, non-zero, on a second signal during shutdown', async () => {
    const server = await startServer(tempDir('spb-shutdown-'), { SHUTDOWN_GRACE_MS: '60000' });
    const upload = startUpload(server.port, '/Patient', patient());
    void upload.answer.catch(() => undefined);
    await sleep(300);

    server.child.kill('SIGTERM');
    await sleep(300);
    expect(server.child.exitCode).toBeNull();
    const second = Date.now();
    server.child.kill('SIGINT');
    const exit = await server.exited;
    expect(exit.code).not.toBe(0);
    expect(exit.code).not.toBeNull();
    expect(Date.now() - second).toBeLessThan(2000);
  }, 120_000);

  describe('with a destination that holds every delivery open', () => {
    let receiver: Server;
    const held: ServerResponse[] = [];

    beforeAll(async () => {
      receiver = createServer((req, res) => {
        req.resume();
        held.push(res);
      });
      await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    });
    afterAll(async () => {
      receiver.closeAllConnections();
      await new Promise((resolve) => receiver.close(resolve));
    });

    it('gives the deliveries in flight back to the queue', async () => {
      const dataDir = tempDir('spb-shutdown-');
      const destinations = path.join(tempDir('spb-shutdown-dest-'), 'destinations.json');
      writeFileSync(
        destinations,
        JSON.stringify({
          worker: { concurrency: 4, pollIntervalMs: 50, leaseMs: 120_000, attemptTimeoutMs: 60_000, shutdownTimeoutMs: 500 },
          destinations: [
            {
              id: 'gp',
              adapter: 'fhir-rest',
              settings: { baseUrl: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/fhir` },
              receives: [{ resourceType: 'Patient', events: ['created'] }],
            },
          ],
        }),
      );
      const server = await startServer(dataDir, { SHUTDOWN_GRACE_MS: '10000', DESTINATIONS_FILE: destinations });
      for (const nhsNumber of ['9000000009', '9434765919']) {
        expect((await post(server.port, '/Patient', patient(nhsNumber))).status).toBe(201);
      }
      await waitFor('both deliveries to reach the receiver', () => held.length === 2, 30_000);

      const signalled = Date.now();
      server.child.kill('SIGTERM');
      expect(await server.exited).toEqual({ code: 0, signal: null });
      expect(Date.now() - signalled).toBeLessThan(10_000);

      const db = await openPglite(dataDir);
      try {
        const { rows } = await db.query<{ state: string; claimed_by: string | null }>('SELECT state, claimed_by FROM deliveries ORDER BY id');
        expect(rows).toEqual([
          { state: 'queued', claimed_by: null },
          { state: 'queued', claimed_by: null },
        ]);
        const { rows: attempts } = await db.query<{ outcome: string }>('SELECT outcome FROM delivery_attempts ORDER BY delivery_id');
        expect(attempts).toEqual([{ outcome: 'released' }, { outcome: 'released' }]);
      } finally {
        await db.close();
      }
    }, 180_000);
  });
});

describe('starting the server process', () => {
  it('warns loudly when authentication is off', async () => {
    const server = await startServer(tempDir('spb-authnone-'));
    const lines = server.output.join('').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: number; msg: string });
    expect(lines).toEqual(expect.arrayContaining([expect.objectContaining({ level: 40, msg: expect.stringMatching(/AUTH_MODE=none/) })]));
    server.child.kill('SIGTERM');
    expect((await server.exited).code).toBe(0);
  });

  it('refuses AUTH_MODE=none on an address other than loopback, naming the variable, before listening', async () => {
    const env: NodeJS.ProcessEnv = {};
    for (const [name, value] of Object.entries(process.env)) if (!CONFIG_VARIABLES.has(name)) env[name] = value;
    Object.assign(env, { AUTH_MODE: 'none', HOST: '0.0.0.0', PORT: '0', DATA_DIR: tempDir('spb-refuse-') });
    const child = spawn(process.execPath, [SERVER], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(78);
    expect(stderr).toMatch(/AUTH_MODE=none is for local development only: HOST must be a loopback address/);
  });
});
