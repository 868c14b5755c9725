/**
 * Summarises a V8 .cpuprofile (as written by `node --cpu-prof`, e.g. by `bench:create -- --cpu-prof DIR`):
 * self time by area (PGlite/WASM, Fastify, pino, sp-bridge, Node internals, GC, idle) and the top functions.
 *
 *   node dist/bench/profile-summary.js FILE.cpuprofile [--top 25]
 */
import { readFileSync } from 'node:fs';
import { log, parseArgs } from './common';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

function area(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (functionName === '(idle)') return 'idle (waiting for I/O)';
  if (functionName === '(garbage collector)') return 'garbage collection';
  if (functionName === '(program)') return 'V8/native (program)';
  if (url.includes('@electric-sql/pglite') || url.startsWith('wasm://') || /^\$?wasm|^\$func|^\$/.test(functionName)) {
    return 'PGlite (JS glue + PostgreSQL WASM)';
  }
  if (url.includes('/node_modules/pino') || url.includes('/node_modules/fast-redact') || url.includes('/node_modules/sonic-boom')) return 'pino logging';
  if (url.includes('/node_modules/fastify') || url.includes('/node_modules/find-my-way') || url.includes('/node_modules/light-my-request') || url.includes('/node_modules/avvio') || url.includes('/node_modules/@fastify')) {
    return 'Fastify';
  }
  if (url.includes('/node_modules/secure-json-parse')) return 'secure-json-parse';
  if (url.includes('/node_modules/')) return `other package: ${url.replace(/.*\/node_modules\//, '').split('/')[0]}`;
  if (url.includes('/dist/src/')) return `sp-bridge: ${url.replace(/.*\/dist\/src\//, '')}`;
  if (url.startsWith('node:')) return 'Node internals (http, net, streams...)';
  if (url === '') return `native: ${functionName || '(anonymous)'}`;
  return url;
}

function main(): void {
  const args = parseArgs();
  const file = process.argv.slice(2).find((a) => a.endsWith('.cpuprofile'));
  if (!file) throw new Error('usage: profile-summary FILE.cpuprofile [--top N]');
  const top = args.number('top', 25);
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i + 1] ?? 0;
    selfUs.set(profile.samples[i], (selfUs.get(profile.samples[i]) ?? 0) + dt);
  }
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
  const areas = new Map<string, number>();
  const fns = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    const a = area(node.callFrame);
    areas.set(a, (areas.get(a) ?? 0) + us);
    const fname = `${node.callFrame.functionName || '(anonymous)'} ${node.callFrame.url.replace(/.*\/(node_modules|dist)\//, '')}:${node.callFrame.lineNumber + 1}`;
    fns.set(fname, (fns.get(fname) ?? 0) + us);
  }
  const pct = (us: number) => `${((us / total) * 100).toFixed(1).padStart(5)}%`;
  log(`${file}: ${(total / 1e6).toFixed(2)} s sampled`);
  log('\nSelf time by area:');
  for (const [a, us] of [...areas].sort((x, y) => y[1] - x[1]).slice(0, 30)) log(`  ${pct(us)}  ${a}`);
  log(`\nTop ${top} functions by self time:`);
  for (const [f, us] of [...fns].sort((x, y) => y[1] - x[1]).slice(0, top)) log(`  ${pct(us)}  ${f}`);
}

main();
