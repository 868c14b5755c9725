'use strict';
/**
 * A delivery worker in a process of its own, for the crash-safety test (test/delivery/e2e-crash.test.ts): the
 * compiled engine from dist/ over PostgreSQL, destinations from a file.
 *
 *   DATABASE_URL=postgres://... DESTINATIONS_FILE=/tmp/x/destinations.json WORKER_ID=w1 node test/delivery/worker-process.js
 *
 * Prints `ready` once the engine runs. SIGTERM stops it gracefully; SIGKILL is the crash under test. It also
 * exits when its stdin closes, so a test runner that dies does not leave it running.
 */
const path = require('node:path');

const dist = path.join(__dirname, '..', '..', 'dist', 'src');
const { loadDestinationsFile, setUpDelivery } = require(path.join(dist, 'delivery'));
const { openPostgres } = require(path.join(dist, 'storage', 'db'));

async function main() {
  const url = process.env.DATABASE_URL;
  const file = process.env.DESTINATIONS_FILE;
  if (!url || !file) throw new Error('DATABASE_URL and DESTINATIONS_FILE are required');
  const config = loadDestinationsFile(file);
  const db = await openPostgres(url, 10);
  const logger = {
    info: () => undefined,
    warn: (obj, msg) => process.stderr.write(`warn: ${msg} ${JSON.stringify(obj)}\n`),
    error: (obj, msg) => process.stderr.write(`error: ${msg} ${String(obj && obj.err && obj.err.message)}\n`),
  };
  const { engine } = setUpDelivery(config, db, logger, process.env.WORKER_ID ? { workerId: process.env.WORKER_ID } : {});
  await engine.start();
  process.stdout.write('ready\n');

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await engine.stop();
    await db.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.stdin.on('end', () => void stop());
  process.stdin.on('close', () => void stop());
  process.stdin.resume();
}

main().catch((err) => {
  process.stderr.write(`worker-process failed: ${err && err.stack ? err.stack : String(err)}\n`);
  process.exit(1);
});
