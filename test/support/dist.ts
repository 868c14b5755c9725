import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

export const ROOT = path.join(__dirname, '..', '..');

/**
 * dist/ as CI builds it (`npm ci` runs the prepare script), for tests that start real processes: rebuilt
 * here when `entry` (relative to dist/) is missing or older than any file of src/.
 */
export function ensureDist(entry: string): string {
  const target = path.join(ROOT, 'dist', entry);
  const stale = (dir: string): boolean =>
    readdirSync(dir, { withFileTypes: true }).some((e) => {
      const full = path.join(dir, e.name);
      if (e.isDirectory()) return stale(full);
      if (!e.name.endsWith('.ts')) return false;
      const built = path.join(ROOT, 'dist', path.relative(ROOT, full)).replace(/\.ts$/, '.js');
      return !existsSync(built) || statSync(built).mtimeMs < statSync(full).mtimeMs;
    });
  if (existsSync(target) && !stale(path.join(ROOT, 'src'))) return target;
  try {
    execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'pipe', timeout: 240_000 });
  } catch (err) {
    // tsc emits even when something else in the build (e.g. bench/) has a type error; only a missing dist is fatal.
    if (!existsSync(target)) throw err;
    process.stderr.write(`tsc -p tsconfig.build.json reported errors; using what it emitted\n${String((err as { stdout?: Buffer }).stdout ?? '')}\n`);
  }
  return target;
}
