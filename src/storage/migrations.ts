import type { Database } from './db';

/**
 * Schema migrations, applied in order at start-up under an advisory lock so that several instances starting
 * together on one PostgreSQL migrate once. Never edit a landed migration; add the next one.
 *
 * Every resource version is a row of resource_versions. The current version of a resource is the row with
 * superseded_by NULL; superseded_by holds the vid of the version that replaced it. created_xid and
 * superseded_xid are the transactions that wrote the row and replaced it, so the rows current in any
 * earlier database snapshot (pg_current_snapshot()) can be read back exactly: that keeps search paging
 * stable under concurrent writes. vids alone cannot: they are handed out before commit, not in commit order.
 * Search runs on the index tables, one row per indexed value per version. They carry no foreign key: a
 * version and its index rows are only ever written together, in one statement.
 */
export const migrations: { id: number; name: string; sql: string }[] = [
  {
    id: 1,
    name: 'resources and search index',
    sql: `
CREATE TABLE resource_versions (
  vid bigserial PRIMARY KEY,
  type text NOT NULL,
  id text NOT NULL,
  version integer NOT NULL,
  last_updated timestamptz NOT NULL,
  deleted boolean NOT NULL DEFAULT false,
  superseded_by bigint,
  created_xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
  superseded_xid xid8,
  content text,
  UNIQUE (type, id, version)
);
CREATE UNIQUE INDEX resource_current ON resource_versions (type, id) WHERE superseded_by IS NULL;
CREATE INDEX resource_current_updated ON resource_versions (type, last_updated, vid)
  WHERE superseded_by IS NULL AND NOT deleted;
CREATE INDEX resource_history ON resource_versions (last_updated, vid);
CREATE INDEX resource_type_history ON resource_versions (type, last_updated, vid);

CREATE TABLE search_token (
  vid bigint NOT NULL,
  type text NOT NULL,
  param text NOT NULL,
  system text,
  code text NOT NULL
);
CREATE INDEX search_token_value ON search_token (type, param, code, system);
CREATE INDEX search_token_vid ON search_token (vid, param);

CREATE TABLE search_reference (
  vid bigint NOT NULL,
  type text NOT NULL,
  param text NOT NULL,
  ref_type text NOT NULL,
  ref_id text NOT NULL
);
CREATE INDEX search_reference_value ON search_reference (type, param, ref_id, ref_type);
CREATE INDEX search_reference_target ON search_reference (ref_type, ref_id);
CREATE INDEX search_reference_vid ON search_reference (vid, param);

CREATE TABLE search_date (
  vid bigint NOT NULL,
  type text NOT NULL,
  param text NOT NULL,
  low timestamptz NOT NULL,
  high timestamptz NOT NULL
);
CREATE INDEX search_date_low ON search_date (type, param, low);
CREATE INDEX search_date_high ON search_date (type, param, high);
CREATE INDEX search_date_vid ON search_date (vid, param);

CREATE TABLE search_string (
  vid bigint NOT NULL,
  type text NOT NULL,
  param text NOT NULL,
  value text NOT NULL,
  raw text NOT NULL
);
CREATE INDEX search_string_value ON search_string (type, param, value text_pattern_ops);
CREATE INDEX search_string_vid ON search_string (vid, param);
`,
  },
];

const MIGRATION_LOCK = 7_326_001;

export async function migrate(db: Database): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await tx.query(
      'CREATE TABLE IF NOT EXISTS schema_migrations (id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())',
    );
    const { rows } = await tx.query<{ id: number }>('SELECT id FROM schema_migrations');
    const applied = new Set(rows.map((r) => Number(r.id)));
    for (const m of migrations) {
      if (applied.has(m.id)) continue;
      for (const statement of m.sql.split(/;\s*\n/).map((x) => x.trim()).filter(Boolean)) await tx.query(statement);
      await tx.query('INSERT INTO schema_migrations (id, name) VALUES ($1, $2)', [m.id, m.name]);
    }
  });
}

export async function pendingMigrations(db: Database): Promise<number> {
  const { rows } = await db.query<{ id: number }>('SELECT id FROM schema_migrations');
  const applied = new Set(rows.map((r) => Number(r.id)));
  return migrations.filter((m) => !applied.has(m.id)).length;
}
