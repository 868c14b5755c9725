#!/usr/bin/env node
'use strict';
/**
 * CI's stand-in for `docker build` + `docker run` where no Docker engine runs.
 *
 * Reads the Dockerfile and replays it outside Docker, in a temporary folder per stage (a stage's absolute
 * paths, e.g. WORKDIR /app, live under that stage's folder):
 *   - build stage: COPY from the build context (honouring .dockerignore), then every RUN, as written;
 *   - runtime stage: COPY --from=<stage>, ENV, USER (must not be root), HEALTHCHECK and CMD, as written. Its RUN
 *     lines only prepare VOLUME folders in the image, so they are checked to be just that, and not run.
 * Then it starts the CMD with the image's ENV, overridden so nothing leaves this machine: HOST=127.0.0.1, a free
 * PORT and BASE_URL, a temporary DATA_DIR, AUTH_MODE=smart with a clients file made by `sp-bridge register-client`, and checks:
 *   GET /readyz 200, the HEALTHCHECK command exits 0, GET /metadata 200 without a token, GET /Patient 401 without
 *   a token, the token URL from /.well-known/smart-configuration, `sp-bridge get-token` then POST /Patient 201;
 *   SIGTERM ends the process with exit code 0.
 *
 * npm runs with npm_config_offline=true: the packages come from the npm cache that `npm ci` in .ci/run has just
 * filled, and the build never reaches the network.
 *
 * Usage: node scripts/docker-smoke.js [--keep]   (--keep leaves the temporary folder for inspection)
 */
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const REPO = path.resolve(__dirname, '..');
const KEEP = process.argv.includes('--keep');
const started = Date.now();

function log(message) {
  process.stdout.write(`[docker-smoke +${((Date.now() - started) / 1000).toFixed(1)}s] ${message}\n`);
}

function fail(message) {
  const err = new Error(message);
  err.smoke = true;
  throw err;
}

// ------------------------------------------------------------------------------------------------------------
// Dockerfile parsing

/** Logical instructions: comments and blank lines dropped, `\` continuations joined. */
function parseDockerfile(text) {
  const lines = text.split(/\r?\n/);
  const instructions = [];
  let buffer = '';
  let startLine = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (buffer === '' && /^\s*(#.*)?$/.test(line)) continue;
    if (buffer !== '' && /^\s*#/.test(line)) continue; // comment inside a continuation
    if (buffer === '') startLine = i + 1;
    if (/\\\s*$/.test(line)) {
      buffer += `${line.replace(/\\\s*$/, '')} `;
      continue;
    }
    buffer += line;
    const match = /^\s*([A-Za-z]+)\s+([\s\S]*)$/.exec(buffer);
    if (!match) fail(`Dockerfile line ${startLine}: cannot parse '${buffer}'`);
    instructions.push({ op: match[1].toUpperCase(), rest: match[2].trim(), line: startLine });
    buffer = '';
  }
  const stages = [];
  for (const ins of instructions) {
    if (ins.op === 'ARG' && stages.length === 0) continue;
    if (ins.op === 'FROM') {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.rest);
      if (!m) fail(`Dockerfile line ${ins.line}: cannot parse FROM ${ins.rest}`);
      stages.push({ image: m[1], name: m[2] || String(stages.length), instructions: [] });
      continue;
    }
    if (stages.length === 0) fail(`Dockerfile line ${ins.line}: ${ins.op} before FROM`);
    stages[stages.length - 1].instructions.push(ins);
  }
  return stages;
}

/** Splits `--flag=value` options off the front of an instruction's arguments. */
function takeFlags(rest) {
  const flags = {};
  let remaining = rest;
  for (;;) {
    const m = /^--([a-z-]+)(?:=(\S+))?\s+/.exec(remaining);
    if (!m) return { flags, remaining };
    flags[m[1]] = m[2] === undefined ? true : m[2];
    remaining = remaining.slice(m[0].length);
  }
}

/** An exec-form (JSON array) CMD/HEALTHCHECK; shell form is refused (the image has no shell wrapper to rely on). */
function execForm(text, what) {
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    fail(`${what} must be in exec (JSON array) form, not '${text}'`);
  }
  if (!Array.isArray(parsed) || parsed.length === 0 || !parsed.every((a) => typeof a === 'string')) {
    fail(`${what} must be a non-empty JSON array of strings`);
  }
  return parsed;
}

/** ENV KEY=VALUE [KEY=VALUE...] (values without spaces, optionally double-quoted) or the legacy ENV KEY VALUE. */
function parseEnv(rest) {
  const env = {};
  if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(rest)) {
    const m = /^(\S+)\s+(.*)$/.exec(rest);
    if (m) env[m[1]] = m[2];
    return env;
  }
  const re = /([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)/g;
  let m;
  while ((m = re.exec(rest))) env[m[1]] = m[2].startsWith('"') ? JSON.parse(m[2]) : m[2];
  return env;
}

// ------------------------------------------------------------------------------------------------------------
// .dockerignore

function globToRegExp(pattern) {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '*' && pattern[i + 1] === '*') {
      if (pattern[i + 2] === '/') {
        re += '(?:.*/)?';
        i += 2;
      } else {
        re += '.*';
        i += 1;
      }
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

function loadDockerignore(context) {
  const file = path.join(context, '.dockerignore');
  if (!fs.existsSync(file)) return () => false;
  const rules = fs
    .readFileSync(file, 'utf8')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pattern = path.posix.normalize((negate ? l.slice(1) : l).replace(/^\/+/, '')).replace(/\/+$/, '');
      return { negate, re: globToRegExp(pattern) };
    });
  // As Docker does: the last matching rule wins, and a path is also excluded when a parent folder is.
  const matches = (rel) => {
    let excluded = false;
    for (const rule of rules) if (rule.re.test(rel)) excluded = !rule.negate;
    return excluded;
  };
  return (rel) => {
    const parts = rel.split('/');
    for (let i = 1; i <= parts.length; i++) if (matches(parts.slice(0, i).join('/'))) return true;
    return false;
  };
}

// ------------------------------------------------------------------------------------------------------------
// replay

/** Copies one COPY source to its destination with Docker's rules (a folder's contents; a file into a folder). */
function copyInto(source, dest, destIsDir, filter) {
  if (!fs.existsSync(source)) fail(`COPY source ${source} does not exist`);
  const stat = fs.statSync(source);
  if (stat.isDirectory()) {
    fs.mkdirSync(dest, { recursive: true });
    fs.cpSync(source, dest, { recursive: true, verbatimSymlinks: true, filter });
  } else {
    const target = destIsDir ? path.join(dest, path.basename(source)) : dest;
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.cpSync(source, target, { verbatimSymlinks: true });
  }
}

function replayStages(stages, tmp) {
  const roots = {};
  const ignored = loadDockerignore(REPO);
  const contextFilter = (src) => {
    const rel = path.relative(REPO, src).split(path.sep).join('/');
    return rel === '' || !ignored(rel);
  };
  const image = {};
  stages.forEach((stage, index) => {
    const root = path.join(tmp, `stage-${stage.name}`);
    roots[stage.name] = root;
    fs.mkdirSync(root, { recursive: true });
    const final = index === stages.length - 1;
    let workdir = '/';
    const env = {};
    const volumes = [];
    const inStage = (p) => path.join(root, path.posix.resolve(workdir, p));
    log(`stage ${stage.name} (FROM ${stage.image})`);
    for (const ins of stage.instructions) {
      switch (ins.op) {
        case 'WORKDIR':
          workdir = path.posix.resolve(workdir, ins.rest);
          fs.mkdirSync(inStage('.'), { recursive: true });
          break;
        case 'ENV':
          Object.assign(env, parseEnv(ins.rest));
          break;
        case 'COPY': {
          const { flags, remaining } = takeFlags(ins.rest);
          const parts = remaining.startsWith('[') ? execForm(remaining, `COPY (line ${ins.line})`) : remaining.split(/\s+/);
          if (parts.length < 2) fail(`Dockerfile line ${ins.line}: COPY needs a source and a destination`);
          const dest = parts[parts.length - 1];
          const sources = parts.slice(0, -1);
          if (sources.some((s) => /[*?[]/.test(s))) fail(`Dockerfile line ${ins.line}: COPY wildcards are not replayed; name the files`);
          const destIsDir = dest.endsWith('/') || sources.length > 1;
          for (const s of sources) {
            if (flags.from) {
              if (!roots[flags.from]) fail(`Dockerfile line ${ins.line}: COPY --from=${flags.from}: no earlier stage of that name`);
              copyInto(path.join(roots[flags.from], path.posix.resolve('/', s)), inStage(dest), destIsDir);
            } else {
              if (path.isAbsolute(s) || s.split('/').includes('..')) fail(`Dockerfile line ${ins.line}: COPY source ${s} leaves the context`);
              copyInto(path.join(REPO, s), inStage(dest), destIsDir, contextFilter);
            }
          }
          break;
        }
        case 'RUN': {
          if (final) {
            // The runtime stage may only prepare its VOLUME folders (ownership): nothing to replay outside Docker.
            const declared = stage.instructions.filter((i) => i.op === 'VOLUME').flatMap((i) => i.rest.replace(/[[\]",]/g, ' ').split(/\s+/).filter(Boolean));
            const m = /^mkdir -p (\S+) && chown [a-z_][a-z0-9_-]*(?::[a-z_][a-z0-9_-]*)? \1$/.exec(ins.rest);
            if (!m || !declared.includes(m[1])) {
              fail(`Dockerfile line ${ins.line}: a RUN in the runtime stage cannot be replayed outside Docker ('${ins.rest}'); build in the build stage and COPY --from it`);
            }
            log(`  (image only, not replayed) RUN ${ins.rest}`);
            break;
          }
          log(`  RUN ${ins.rest}`);
          const t0 = Date.now();
          const result = spawnSync('/bin/sh', ['-c', ins.rest], {
            cwd: inStage('.'),
            stdio: 'inherit',
            env: { ...process.env, ...env, npm_config_offline: 'true', npm_config_update_notifier: 'false' },
          });
          if (result.status !== 0) fail(`Dockerfile line ${ins.line}: RUN ${ins.rest} exited ${result.status ?? result.signal}`);
          log(`  ... ${((Date.now() - t0) / 1000).toFixed(1)}s`);
          break;
        }
        case 'USER':
          if (final) image.user = ins.rest;
          break;
        case 'VOLUME':
        case 'EXPOSE':
        case 'LABEL':
        case 'ARG':
          break;
        case 'HEALTHCHECK': {
          const { remaining } = takeFlags(ins.rest);
          const m = /^CMD\s+([\s\S]+)$/.exec(remaining);
          if (!m) fail(`Dockerfile line ${ins.line}: HEALTHCHECK must be CMD [...]`);
          image.healthcheck = execForm(m[1], 'HEALTHCHECK CMD');
          break;
        }
        case 'CMD':
          image.cmd = execForm(ins.rest, 'CMD');
          break;
        default:
          fail(`Dockerfile line ${ins.line}: ${ins.op} is not replayed by scripts/docker-smoke.js; teach it, or avoid ${ins.op}`);
      }
    }
    if (final) Object.assign(image, { env, workdir, dir: inStage('.') });
  });
  if (!image.cmd) fail('the runtime stage has no CMD');
  if (!image.healthcheck) fail('the runtime stage has no HEALTHCHECK');
  if (!image.user || /^(root|0)(:|$)/.test(image.user)) fail(`the runtime stage must run as a non-root USER, not '${image.user ?? '(unset: root)'}'`);
  return image;
}

// ------------------------------------------------------------------------------------------------------------
// running it

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function request(url, init = {}) {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  return { status: res.status, text };
}

function run(command, args, options) {
  const result = spawnSync(command, args, { encoding: 'utf8', ...options });
  return { code: result.status, stdout: result.stdout ?? '', stderr: result.stderr ?? '' };
}

async function main() {
  const dockerfile = fs.readFileSync(path.join(REPO, 'Dockerfile'), 'utf8');
  const stages = parseDockerfile(dockerfile);
  if (stages.length < 2) fail('the Dockerfile must be multi-stage (a build stage and a runtime stage)');
  log(`node ${process.version}; stages: ${stages.map((s) => `${s.name} (FROM ${s.image})`).join(', ')}`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sp-docker-smoke-'));
  let child;
  let output = '';
  try {
    const image = replayStages(stages, tmp);
    log(`runtime stage assembled in ${image.dir}; USER ${image.user}; CMD ${JSON.stringify(image.cmd)}`);

    // A container's environment: the image's ENV and nothing of CI's own, except PATH (to find node).
    const port = await freePort();
    const home = path.join(tmp, 'home');
    const keys = path.join(tmp, 'keys');
    fs.mkdirSync(home);
    const env = {
      PATH: process.env.PATH,
      HOME: home,
      ...image.env,
      HOST: '127.0.0.1',
      PORT: String(port),
      DATA_DIR: path.join(tmp, 'data'),
      AUTH_MODE: 'smart',
      AUTH_CLIENTS_FILE: path.join(tmp, 'clients.yaml'),
      BASE_URL: `http://127.0.0.1:${port}`,
      LOG_LEVEL: 'warn',
    };

    const registered = run('node', ['bin/sp-bridge.js', 'register-client', 'smoke-tester', '--out', keys], { cwd: image.dir, env });
    if (registered.code !== 0) fail(`register-client exited ${registered.code}: ${registered.stderr}${registered.stdout}`);
    fs.writeFileSync(env.AUTH_CLIENTS_FILE, `${registered.stdout}\n`);
    log(`register-client wrote ${path.join(keys, 'smoke-tester.key.pem')} and the clients file`);

    const base = `http://127.0.0.1:${port}`;
    log(`starting ${image.cmd.join(' ')} on ${base}`);
    child = spawn(image.cmd[0], image.cmd.slice(1), { cwd: image.dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    let exit;
    exited.then((e) => (exit = e));

    const deadline = Date.now() + 120_000;
    let ready;
    for (;;) {
      if (exit) fail(`the server exited (${exit.code ?? exit.signal}) before /readyz answered 200`);
      try {
        ready = await request(`${base}/readyz`);
        if (ready.status === 200) break;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) fail(`GET /readyz did not answer 200 within 120 s (last: ${ready ? `${ready.status} ${ready.text.slice(0, 200)}` : 'no answer'})`);
      await new Promise((r) => setTimeout(r, 250));
    }
    log('GET /readyz 200');

    const health = run(image.healthcheck[0], image.healthcheck.slice(1), { cwd: image.dir, env, timeout: 30_000 });
    if (health.code !== 0) fail(`the HEALTHCHECK command exited ${health.code}: ${health.stderr}${health.stdout}`);
    log('HEALTHCHECK command exit 0');

    const metadata = await request(`${base}/metadata`, { headers: { accept: 'application/fhir+json' } });
    if (metadata.status !== 200) fail(`GET /metadata without a token: expected 200, got ${metadata.status}`);
    log('GET /metadata 200 without a token');

    const anonymous = await request(`${base}/Patient`, { headers: { accept: 'application/fhir+json' } });
    if (anonymous.status !== 401) fail(`GET /Patient without a token: expected 401, got ${anonymous.status}`);
    log('GET /Patient 401 without a token');

    const smart = await request(`${base}/.well-known/smart-configuration`);
    if (smart.status !== 200) fail(`GET /.well-known/smart-configuration: expected 200, got ${smart.status}`);
    const tokenUrl = JSON.parse(smart.text).token_endpoint;
    {
      const token = run(
        'node',
        ['bin/sp-bridge.js', 'get-token', '--client-id', 'smoke-tester', '--key', path.join(keys, 'smoke-tester.key.pem'), '--token-url', tokenUrl, '--scope', 'system/Patient.cruds', '--token-only'],
        { cwd: image.dir, env, timeout: 30_000 },
      );
      if (token.code !== 0) fail(`get-token exited ${token.code}: ${token.stderr}`);
      log(`get-token: got an access token from ${tokenUrl}`);
      const patient = fs.readFileSync(path.join(image.dir, 'profiles/examples/Patient-sp-patient-example.json'), 'utf8');
      const created = await request(`${base}/Patient`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token.stdout.trim()}`, 'content-type': 'application/fhir+json', accept: 'application/fhir+json' },
        body: patient,
      });
      if (created.status !== 201) fail(`POST /Patient with the token: expected 201, got ${created.status}: ${created.text.slice(0, 500)}`);
      log('POST /Patient 201 with the token');
    }

    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const { code, signal } = await exited;
    clearTimeout(timer);
    if (code !== 0) fail(`after SIGTERM the server exited ${code ?? signal}, not 0`);
    log('SIGTERM: exit 0');
    log(`PASS (${((Date.now() - started) / 1000).toFixed(1)}s)`);
  } catch (err) {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    if (output) process.stderr.write(`--- server output (last 4000 characters) ---\n${output.slice(-4000)}\n---\n`);
    process.stderr.write(`[docker-smoke] FAIL: ${err.smoke ? err.message : err.stack}\n`);
    process.exitCode = 1;
  } finally {
    if (KEEP) log(`kept ${tmp}`);
    else fs.rmSync(tmp, { recursive: true, force: true });
  }
}

if (require.main === module) void main();

module.exports = { parseDockerfile, parseEnv, execForm, takeFlags, globToRegExp, loadDockerignore };
