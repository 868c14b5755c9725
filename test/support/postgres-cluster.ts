import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * A throwaway PostgreSQL cluster: initdb into a temp dir, started on a free loopback port, removed by stop().
 * PostgreSQL refuses to run as root, so as root the server runs as the `postgres` (or `nobody`) user.
 */
export interface PostgresCluster {
  url: string;
  stop(): void;
}

export function postgresAvailable(): boolean {
  return ['initdb', 'pg_ctl', 'postgres'].every((bin) => spawnSync('which', [bin]).status === 0);
}

export async function startPostgresCluster(): Promise<PostgresCluster> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sp-bridge-pg-'));
  const dataDir = path.join(dir, 'data');
  const runAs = process.getuid?.() === 0 ? serviceUser() : undefined;
  if (runAs) {
    chownSync(dir, runAs.uid, runAs.gid);
    chmodSync(dir, 0o700);
  }
  const run = (cmd: string, args: string[]) =>
    execFileSync(runAs ? 'runuser' : cmd, runAs ? ['-u', runAs.name, '--', cmd, ...args] : args, {
      stdio: 'pipe',
      cwd: dir,
    });
  const port = await freePort();
  run('initdb', ['-D', dataDir, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--no-locale']);
  run('pg_ctl', [
    '-D',
    dataDir,
    '-l',
    path.join(dir, 'server.log'),
    '-w',
    '-o',
    `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200`,
    'start',
  ]);
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop: () => {
      try {
        run('pg_ctl', ['-D', dataDir, '-m', 'immediate', '-w', 'stop']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

function serviceUser(): { name: string; uid: number; gid: number } {
  for (const name of ['postgres', 'nobody']) {
    const out = spawnSync('id', ['-u', name], { encoding: 'utf8' });
    if (out.status === 0) {
      const gid = Number(spawnSync('id', ['-g', name], { encoding: 'utf8' }).stdout.trim());
      return { name, uid: Number(out.stdout.trim()), gid };
    }
  }
  throw new Error('Running as root, but there is no postgres or nobody user to run PostgreSQL as');
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}
