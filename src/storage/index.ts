import { mkdir } from 'node:fs/promises';
import type { Config } from '../config';
import { openPglite, openPostgres, type Database } from './db';
import { migrate } from './migrations';
import { keepStatistics } from './statistics';

export type { Database, Queryable } from './db';
export { Repository } from './repository';
export type { StoredVersion, SearchResult, Outbox, OutboxChange, OutboxRow } from './repository';
export { DeliveryStore } from './deliveries';
export type { DeliveryRow, DeliveryState, AttemptRow, ClaimedDelivery } from './deliveries';

/** Opens the configured store (PostgreSQL when DATABASE_URL is set, else PGlite in DATA_DIR) and migrates it. */
export async function openDatabase(config: Pick<Config, 'databaseUrl' | 'dataDir' | 'databasePoolSize'>): Promise<Database> {
  let db: Database;
  if (config.databaseUrl) {
    db = await openPostgres(config.databaseUrl, config.databasePoolSize);
  } else {
    await mkdir(config.dataDir, { recursive: true });
    db = await openPglite(config.dataDir);
  }
  try {
    await migrate(db);
  } catch (err) {
    await db.close();
    throw err;
  }
  if (db.kind !== 'pglite') return db;
  const stop = await keepStatistics(db);
  return {
    ...db,
    close: async () => {
      stop();
      await db.close();
    },
  };
}
