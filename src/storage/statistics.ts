import type { Database } from './db';

const CHECK_EVERY_MS = 60_000;

/**
 * PGlite runs PostgreSQL without its autovacuum daemon, so nothing ever gathers planner statistics: without
 * them the planner picks poor search plans (scanning every active referral instead of one patient's few).
 * This runs ANALYZE at start and again whenever the store has grown by a tenth since the last time.
 * PostgreSQL servers do this themselves.
 */
export async function keepStatistics(db: Database, checkEveryMs = CHECK_EVERY_MS): Promise<() => void> {
  const written = async () => {
    const { rows } = await db.query<{ n: string }>('SELECT last_value::text AS n FROM resource_versions_vid_seq');
    return Number(rows[0].n);
  };
  await db.query('ANALYZE');
  let analysedAt = await written();
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    written()
      .then(async (now) => {
        if (now - analysedAt < Math.max(500, analysedAt / 10)) return;
        await db.query('ANALYZE');
        analysedAt = now;
      })
      .catch(() => undefined) // a closed or busy store: try again next time
      .finally(() => {
        running = false;
      });
  }, checkEveryMs);
  timer.unref();
  return () => clearInterval(timer);
}
