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
export interface Migration {
  id: number;
  name: string;
  /** Statements separated by a semicolon at the end of a line; or `statements` for bodies that contain those. */
  sql?: string;
  statements?: string[];
}

export const migrations: Migration[] = [
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
  {
    id: 2,
    name: 'save function and delivery outbox',
    // One call writes a version and its index rows. PL/pgSQL keeps the plans of its statements, so a write
    // is not parsed and planned again each time (planning was most of a write's cost).
    // The outbox: one row per (version, destination) that must be delivered, written by sp_save_version in
    // the same statement as the version itself, so a write and what it must deliver commit or roll back
    // together. order_key is the patient reference (or type/id when there is none): rows of one order_key
    // and destination are delivered in id order. See src/storage/deliveries.ts for the state machine.
    statements: [
      `CREATE TABLE deliveries (
  id bigserial PRIMARY KEY,
  destination text NOT NULL,
  idempotency_key text NOT NULL UNIQUE,
  event text NOT NULL,
  vid bigint NOT NULL,
  resource_type text NOT NULL,
  resource_id text NOT NULL,
  version integer NOT NULL,
  order_key text NOT NULL,
  patient_ref text,
  state text NOT NULL DEFAULT 'queued',
  attempts integer NOT NULL DEFAULT 0,
  attempt_floor integer NOT NULL DEFAULT 0,
  due_at timestamptz NOT NULL DEFAULT now(),
  claimed_until timestamptz,
  -- When a waiting row can next be claimed: its due time, or for one in flight the end of its lease. One
  -- ordered column lets a claim read the index in order and stop at its limit.
  ready_at timestamptz GENERATED ALWAYS AS (CASE WHEN state = 'in-flight' THEN claimed_until ELSE due_at END) STORED,
  claimed_by text,
  correlation_id text,
  last_summary text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz
)`,
      `CREATE INDEX deliveries_ready ON deliveries (ready_at, id) WHERE state IN ('queued', 'failed', 'in-flight')`,
      `CREATE INDEX deliveries_order ON deliveries (destination, order_key, id) WHERE state IN ('queued', 'failed', 'in-flight')`,
      `CREATE INDEX deliveries_resource ON deliveries (destination, resource_type, resource_id, version)`,
      `CREATE INDEX deliveries_state ON deliveries (state, destination, id)`,
      `CREATE UNIQUE INDEX deliveries_correlation ON deliveries (destination, correlation_id) WHERE correlation_id IS NOT NULL`,
      `CREATE TABLE delivery_attempts (
  id bigserial PRIMARY KEY,
  delivery_id bigint NOT NULL REFERENCES deliveries (id),
  attempt integer NOT NULL,
  started_at timestamptz NOT NULL,
  finished_at timestamptz NOT NULL,
  outcome text NOT NULL,
  summary text NOT NULL,
  http_status integer,
  worker text,
  operation_outcome text
)`,
      `CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, id)`,
      `CREATE FUNCTION sp_save_version(
  p_previous bigint, p_type text, p_id text, p_version integer, p_last_updated timestamptz, p_content text,
  p_tok_param text[], p_tok_system text[], p_tok_code text[],
  p_ref_param text[], p_ref_type text[], p_ref_id text[],
  p_date_param text[], p_date_low timestamptz[], p_date_high timestamptz[],
  p_str_param text[], p_str_value text[], p_str_raw text[],
  p_dlv_destination text[], p_dlv_event text[], p_dlv_key text[], p_dlv_order text[], p_dlv_patient text[]
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  v bigint := nextval('resource_versions_vid_seq');
BEGIN
  IF p_previous IS NOT NULL THEN
    UPDATE resource_versions SET superseded_by = v, superseded_xid = pg_current_xact_id() WHERE vid = p_previous;
  END IF;
  INSERT INTO resource_versions (vid, type, id, version, last_updated, deleted, content)
    VALUES (v, p_type, p_id, p_version, p_last_updated, p_content IS NULL, p_content);
  IF cardinality(p_tok_param) > 0 THEN
    INSERT INTO search_token (vid, type, param, system, code)
      SELECT v, p_type, x.param, x.system, x.code FROM unnest(p_tok_param, p_tok_system, p_tok_code) AS x(param, system, code);
  END IF;
  IF cardinality(p_ref_param) > 0 THEN
    INSERT INTO search_reference (vid, type, param, ref_type, ref_id)
      SELECT v, p_type, x.param, x.ref_type, x.ref_id FROM unnest(p_ref_param, p_ref_type, p_ref_id) AS x(param, ref_type, ref_id);
  END IF;
  IF cardinality(p_date_param) > 0 THEN
    INSERT INTO search_date (vid, type, param, low, high)
      SELECT v, p_type, x.param, x.low, x.high FROM unnest(p_date_param, p_date_low, p_date_high) AS x(param, low, high);
  END IF;
  IF cardinality(p_str_param) > 0 THEN
    INSERT INTO search_string (vid, type, param, value, raw)
      SELECT v, p_type, x.param, x.value, x.raw FROM unnest(p_str_param, p_str_value, p_str_raw) AS x(param, value, raw);
  END IF;
  IF cardinality(p_dlv_destination) > 0 THEN
    INSERT INTO deliveries (destination, idempotency_key, event, vid, resource_type, resource_id, version, order_key, patient_ref)
      SELECT x.destination, x.key, x.event, v, p_type, p_id, p_version, x.order_key, x.patient
      FROM unnest(p_dlv_destination, p_dlv_event, p_dlv_key, p_dlv_order, p_dlv_patient) AS x(destination, event, key, order_key, patient);
  END IF;
  RETURN v;
END
$$`,
    ],
  },
  {
    id: 3,
    name: 'audit log and token replay guard',
    // audit_events: one row per AuditEvent (src/audit/log.ts), insert-only. content is the AuditEvent JSON as
    // served; the other columns exist to search it. seq breaks ties between events recorded in the same
    // millisecond so that paging can walk (recorded, seq) with a keyset cursor. entity holds every entity
    // reference (versioned and unversioned) and resource type, for the GIN index.
    // auth_assertions: client assertion jtis already used at the token endpoint, kept until they expire.
    sql: `
CREATE TABLE audit_events (
  id uuid PRIMARY KEY,
  seq bigserial NOT NULL,
  recorded timestamptz NOT NULL,
  client_id text,
  action char(1) NOT NULL,
  subtype text NOT NULL,
  outcome smallint NOT NULL,
  entity text[] NOT NULL DEFAULT '{}',
  content text NOT NULL
);
CREATE INDEX audit_events_recorded ON audit_events (recorded, seq);
CREATE INDEX audit_events_client ON audit_events (client_id, recorded, seq);
CREATE INDEX audit_events_entity ON audit_events USING gin (entity);
CREATE TABLE auth_assertions (
  client_id text NOT NULL,
  jti text NOT NULL,
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (client_id, jti)
);
CREATE INDEX auth_assertions_expiry ON auth_assertions (expires_at)
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
      const statements = m.statements ?? (m.sql ?? '').split(/;\s*\n/).map((x) => x.trim()).filter(Boolean);
      for (const statement of statements) await tx.query(statement);
      await tx.query('INSERT INTO schema_migrations (id, name) VALUES ($1, $2)', [m.id, m.name]);
    }
  });
}

export async function pendingMigrations(db: Database): Promise<number> {
  const { rows } = await db.query<{ id: number }>('SELECT id FROM schema_migrations');
  const applied = new Set(rows.map((r) => Number(r.id)));
  return migrations.filter((m) => !applied.has(m.id)).length;
}
