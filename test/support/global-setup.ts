import { postgresAvailable, startPostgresCluster, type PostgresCluster } from './postgres-cluster';

declare global {
  // eslint-disable-next-line no-var
  var __spBridgePostgres: PostgresCluster | undefined;
}

export default async function globalSetup(): Promise<void> {
  if (!postgresAvailable()) {
    process.stderr.write(
      '\n\n*** PostgreSQL binaries (initdb, pg_ctl, postgres) are not on PATH: the PostgreSQL suites are NOT running. ***\n' +
        '*** Only the embedded PGlite store is being tested. Install PostgreSQL 15 to test both stores.            ***\n\n',
    );
    return;
  }
  const cluster = await startPostgresCluster();
  globalThis.__spBridgePostgres = cluster;
  process.env.SP_BRIDGE_TEST_POSTGRES_URL = cluster.url;
}
