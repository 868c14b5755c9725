import { cpus, loadavg, totalmem } from 'node:os';
import pino from 'pino';
import { createLogger } from '../src/http/logging';

/** `--name value` and `--flag` arguments. */
export interface Args {
  flag(name: string): boolean;
  value(name: string): string | undefined;
  number(name: string, fallback: number): number;
}

export function parseArgs(argv: string[] = process.argv.slice(2)): Args {
  const has = (name: string) => argv.includes(`--${name}`);
  const value = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    if (i >= 0 && i + 1 < argv.length && !argv[i + 1].startsWith('--')) return argv[i + 1];
    const eq = argv.find((a) => a.startsWith(`--${name}=`));
    return eq?.slice(name.length + 3);
  };
  return {
    flag: has,
    value,
    number(name, fallback) {
      const raw = value(name);
      if (raw === undefined) return fallback;
      const n = Number(raw);
      if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a non-negative number, not '${raw}'`);
      return n;
    },
  };
}

/** The p-th percentile (0..100) of already sorted values, nearest-rank. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

export interface Summary {
  n: number;
  mean: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

export function summarize(samples: number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  const mean = sorted.reduce((s, x) => s + x, 0) / Math.max(1, sorted.length);
  return {
    n: sorted.length,
    mean,
    p50: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    p99: percentile(sorted, 99),
    max: sorted[sorted.length - 1] ?? NaN,
  };
}

export function ms(n: number, digits = 2): string {
  return `${n.toFixed(digits)} ms`;
}

export function machine(): string {
  const cpu = cpus();
  const load = loadavg().map((l) => l.toFixed(2)).join(' ');
  return (
    `${cpu.length} cores (${cpu[0]?.model.trim() ?? 'unknown CPU'}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, ` +
    `Node ${process.version}, ${process.platform}/${process.arch}; load average at start ${load} (other work inflates it)`
  );
}

/**
 * sp-bridge's own logger (one line per request, as in production) writing to /dev/null, so the cost of
 * building each log line is measured but the terminal is not flooded.
 */
export function benchLogger(level: string) {
  return createLogger(level, pino.destination({ dest: '/dev/null', sync: true }));
}

export function log(line = ''): void {
  process.stdout.write(`${line}\n`);
}
