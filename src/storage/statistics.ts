import type { Database } from './db';

const CHECK_EVERY_MS = 60_000;

/**
 * PGlite runs PostgreSQL without its autovacuum daemon, so nothing ever gathers planner statistics: without
 * them the planner picks poor search plans (scanning every active referral instead of one patient's few).
 * This runs ANALYZE at start and again whenever the store (resources and audit trail) has grown by a tenth
 * since the last time.
 * PostgreSQL servers do this themselves.
 */
export async function keepStatistics(db: Database, checkEveryMs = CHECK_EVERY_MS): Promise<() => void> {
  const written = async () => {
    // Resource versions and audit events: every read adds an audit event, so that table grows fastest.
    const { rows } = await db.query<{ n: string }>(
      'SELECT ((SELECT last_value FROM resource_versions_vid_seq) + (SELECT last_value FROM audit_events_seq_seq))::text AS n',
    );
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
