import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { extractIndex } from '../src/fhir/search/extract';
import { openDatabase } from '../src/storage';
import { openPglite } from '../src/storage/db';
import { migrate, pendingMigrations } from '../src/storage/migrations';
import { Repository } from '../src/storage/repository';
import { keepStatistics } from '../src/storage/statistics';
import { AuditLog } from '../src/audit';
import { referral } from './fixtures';

const reltuples = async (db: Awaited<ReturnType<typeof openPglite>>) =>
  Number((await db.query<{ n: string }>(`SELECT reltuples::text AS n FROM pg_class WHERE relname = 'search_reference'`)).rows[0].n);

describe('embedded store', () => {
  it('is created and migrated in DATA_DIR on first start, and kept across restarts', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sp-store-'));
    try {
      const first = await openDatabase({ dataDir: dir, databasePoolSize: 1 });
      expect(await pendingMigrations(first)).toBe(0);
      const r = referral('Patient/kept');
      await Repository.open(first).save({ type: 'ServiceRequest', id: 'kept-1', resource: r, index: extractIndex(r) });
      await first.close();
      const again = await openDatabase({ dataDir: dir, databasePoolSize: 1 });
      const stored = await Repository.open(again).readCurrent('ServiceRequest', 'kept-1');
      expect(stored?.versionId).toBe('1');
      await again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('gathers statistics again as the audit trail alone grows (every read adds to it)', async () => {
    const db = await openPglite();
    await migrate(db);
    const stop = await keepStatistics(db, 20);
    const tuples = async () =>
      Number((await db.query<{ n: string }>(`SELECT reltuples::text AS n FROM pg_class WHERE relname = 'audit_events'`)).rows[0].n);
    try {
      expect(await tuples()).toBe(0);
      const log = new AuditLog(db);
      await Promise.all(
        Array.from({ length: 600 }, (_, i) =>
          log.record({ recorded: new Date(), requestId: `r${i}`, interaction: 'read', action: 'R', entities: [{ reference: `Patient/p${i}` }], status: 200 }),
        ),
      );
      const deadline = Date.now() + 10_000;
      while ((await tuples()) <= 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
      expect(await tuples()).toBe(600);
    } finally {
      stop();
      await db.close();
    }
  });

  it('gathers planner statistics at start and again as the store grows (PGlite has no autovacuum)', async () => {
    const db = await openPglite();
    await migrate(db);
    expect(await reltuples(db)).toBe(-1);
    const stop = await keepStatistics(db, 20);
    try {
      expect(await reltuples(db)).toBe(0);
      const repo = Repository.open(db);
      for (let i = 0; i < 600; i++) {
        const r = referral(`Patient/p${i % 50}`);
        await repo.save({ type: 'ServiceRequest', id: `s${i}`, resource: r, index: extractIndex(r), fresh: true });
      }
      const deadline = Date.now() + 10_000;
      while ((await reltuples(db)) <= 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
      expect(await reltuples(db)).toBeGreaterThan(1000);
    } finally {
      stop();
      await db.close();
    }
  });
});
