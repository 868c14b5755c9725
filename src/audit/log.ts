import { randomUUID } from 'node:crypto';
import { FhirError } from '../errors';
import { parseDateRange, toSqlTimestamp } from '../fhir/search/dates';
import type { RequestContext } from '../fhir/types';
import type { Database } from '../storage/db';
import { SqlParams } from '../storage/search-sql';
import {
  ACTION_SYSTEM,
  AUDIT_EVENT_TYPE,
  buildAuditEvent,
  CLIENT_ID_SYSTEM,
  DESTINATION_ID_SYSTEM,
  DCM_SYSTEM,
  entityKeys,
  OUTCOME_SYSTEM,
  outcomeCode,
  RESOURCE_TYPES_SYSTEM,
  RESTFUL_INTERACTION_SYSTEM,
  subtypeCode,
  type AuditRecord,
} from './events';

/** The part of a pino logger the audit log uses. */
export interface AuditLogLogger {
  error(obj: Record<string, unknown>, msg: string): void;
}

export interface AuditLogOptions {
  logger?: AuditLogLogger;
  /** Most records written by one INSERT (default 500). */
  maxBatch?: number;
  /** INSERTs in flight at once (default: 3 on PostgreSQL, 1 on PGlite). */
  maxWriters?: number;
}

export const DEFAULT_AUDIT_COUNT = 50;
export const MAX_AUDIT_COUNT = 500;

/** One row of audit_events, as sent to jsonb_to_recordset. */
interface Row {
  id: string;
  recorded: string;
  client_id: string | null;
  action: string;
  subtype: string;
  outcome: number;
  entity: string[];
  content: string;
}

interface Pending {
  row: Row;
  resolve: () => void;
  reject: (err: unknown) => void;
}

const INSERT = `INSERT INTO audit_events (id, recorded, client_id, action, subtype, outcome, entity, content)
SELECT x.id, x.recorded, x.client_id, x.action, x.subtype, x.outcome, x.entity, x.content
FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (
  id uuid, recorded timestamptz, client_id text, action text, subtype text, outcome smallint, entity text[], content text
)) WITH ORDINALITY AS x(id, recorded, client_id, action, subtype, outcome, entity, content, n)
ORDER BY x.n`;

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The audit trail: AuditEvents written by sp-bridge alone and read by admin clients. Records are written
 * with group commit: while one INSERT runs, new records queue, and the next INSERT writes all of them in
 * one statement, so under load a request's audit write costs a share of one round trip, not one of its own.
 */
export class AuditLog {
  private readonly logger: AuditLogLogger | undefined;
  private readonly maxBatch: number;
  private readonly maxWriters: number;
  private queue: Pending[] = [];
  private readonly writers = new Set<Promise<void>>();
  /** Writers still taking records; a writer stops counting in the same step as it sees the queue empty. */
  private active = 0;
  private closed = false;

  constructor(
    private readonly db: Database,
    options: AuditLogOptions = {},
  ) {
    this.logger = options.logger;
    this.maxBatch = Math.max(1, options.maxBatch ?? 500);
    // PGlite runs one statement at a time; a PostgreSQL pool can commit a few batches at once.
    this.maxWriters = Math.max(1, options.maxWriters ?? (db.kind === 'postgres' ? 3 : 1));
  }

  /** Resolves once the record is committed; rejects if its batch failed or the log is closed. */
  record(r: AuditRecord): Promise<void> {
    if (this.closed) return Promise.reject(new Error('The audit log is closed'));
    let row: Row;
    try {
      row = toRow(r);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ row, resolve, reject });
      if (this.active < this.maxWriters) {
        this.active++;
        const writer: Promise<void> = this.drain().finally(() => this.writers.delete(writer));
        this.writers.add(writer);
      }
    });
  }

  /** Resolves when every record queued so far has been written (or has failed). */
  async flush(): Promise<void> {
    while (this.writers.size > 0) await Promise.all([...this.writers]);
  }

  /** Refuses new records, then waits for the queued ones. Does not close the database. */
  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
  }

  async read(id: string): Promise<fhir4.AuditEvent | undefined> {
    if (!UUID_RE.test(id)) return undefined;
    const { rows } = await this.db.query<{ content: string }>('SELECT content FROM audit_events WHERE id = $1::uuid', [id]);
    return rows[0] ? (JSON.parse(rows[0].content) as fhir4.AuditEvent) : undefined;
  }

  /**
   * R4 AuditEvent search (http://hl7.org/fhir/R4/auditevent.html#search), newest first. Paging links carry
   * a keyset cursor (the last entry's recorded time and sequence number), so a client paging through sees
   * no entry twice and misses none while new ones are recorded.
   */
  async search(params: [string, string][], ctx: RequestContext): Promise<fhir4.Bundle> {
    const q = parseAuditSearch(params, ctx);
    const p = new SqlParams();
    const conds = q.criteria.map((c) => c(p));
    const filter = conds.length ? conds.join(' AND ') : 'true';
    const bundle: fhir4.Bundle = { resourceType: 'Bundle', type: 'searchset' };
    if (q.total) {
      const { rows } = await this.db.query<{ n: string }>(`SELECT count(*)::text AS n FROM audit_events WHERE ${filter}`, p.values);
      bundle.total = Number(rows[0].n);
    }
    const link = (cursor?: string) => {
      const query = new URLSearchParams(q.canonical);
      query.set('_count', String(q.count));
      if (cursor) query.set('_cursor', cursor);
      return `${ctx.baseUrl}/${AUDIT_EVENT_TYPE}?${query.toString()}`;
    };
    bundle.link = [{ relation: 'self', url: link(q.cursor?.token) }];
    if (q.summaryCount || q.count === 0) return bundle;
    bundle.link.push({ relation: 'first', url: link() });

    const page = [...conds];
    if (q.cursor) {
      page.push(
        `(recorded, seq) < (timestamptz 'epoch' + ${p.add(q.cursor.micros)}::bigint * interval '1 microsecond', ${p.add(q.cursor.seq)}::bigint)`,
      );
    }
    const { rows } = await this.db.query<{ id: string; seq: string; micros: string; content: string }>(
      `SELECT id::text AS id, seq::text AS seq, (extract(epoch FROM recorded) * 1000000)::bigint::text AS micros, content
       FROM audit_events WHERE ${page.length ? page.join(' AND ') : 'true'}
       ORDER BY recorded DESC, seq DESC LIMIT ${p.add(q.count + 1)}`,
      p.values,
    );
    const more = rows.length > q.count;
    const shown = more ? rows.slice(0, q.count) : rows;
    if (more) {
      const last = shown[shown.length - 1];
      bundle.link.push({ relation: 'next', url: link(`${last.micros}-${last.seq}`) });
    }
    if (shown.length) {
      bundle.entry = shown.map((r) => ({
        fullUrl: `${ctx.baseUrl}/${AUDIT_EVENT_TYPE}/${r.id}`,
        resource: JSON.parse(r.content) as fhir4.AuditEvent,
        search: { mode: 'match' },
      }));
    }
    return bundle;
  }

  private async drain(): Promise<void> {
    // Records made by the other requests handled in this turn of the event loop join the first batch.
    await new Promise<void>((resolve) => setImmediate(resolve));
    for (;;) {
      if (this.queue.length === 0) {
        this.active--;
        return;
      }
      await this.write(this.queue.splice(0, this.maxBatch));
    }
  }

  private async write(batch: Pending[]): Promise<void> {
    try {
      await this.db.query(INSERT, [JSON.stringify(batch.map((b) => b.row))]);
    } catch (err) {
      this.logger?.error({ err, records: batch.length }, 'audit records not written');
      for (const b of batch) b.reject(err);
      return;
    }
    for (const b of batch) b.resolve();
  }
}

function toRow(r: AuditRecord): Row {
  const id = randomUUID();
  const event = buildAuditEvent(id, r);
  return {
    id,
    recorded: event.recorded,
    client_id: r.clientId ?? null,
    action: r.action,
    subtype: subtypeCode(r.interaction),
    outcome: Number(outcomeCode(r.status)),
    entity: entityKeys(r.entities),
    content: JSON.stringify(event),
  };
}

// --- search parameters ---

type Criterion = (p: SqlParams) => string;

interface AuditSearch {
  criteria: Criterion[];
  count: number;
  cursor?: { micros: string; seq: string; token: string };
  total: boolean;
  summaryCount: boolean;
  /** The query without paging parameters, for links. */
  canonical: [string, string][];
}

const IGNORED = new Set(['_format', '_pretty']);
const ACTIONS = new Set(['C', 'R', 'U', 'D', 'E']);
const CURSOR_RE = /^(-?\d{1,19})-(\d{1,19})$/;
const REFERENCE_RE = /^[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]{1,64}(\/_history\/[A-Za-z0-9\-.]{1,64})?$/;
const DATE_PREFIXES = new Set(['eq', 'ne', 'gt', 'lt', 'ge', 'le', 'sa', 'eb', 'ap']);

/** Parses AuditEvent search parameters; throws SPB_INVALID_SEARCH or SPB_UNKNOWN_SEARCH_PARAM. */
function parseAuditSearch(params: [string, string][], ctx: RequestContext): AuditSearch {
  const q: AuditSearch = { criteria: [], count: DEFAULT_AUDIT_COUNT, total: false, summaryCount: false, canonical: [] };
  for (const [rawKey, value] of params) {
    const key = rawKey.trim();
    if (IGNORED.has(key)) continue;
    if (key !== '_count' && key !== '_cursor') q.canonical.push([key, value]);
    const colon = key.indexOf(':');
    const name = colon < 0 ? key : key.slice(0, colon);
    const modifier = colon < 0 ? undefined : key.slice(colon + 1);
    if (name !== 'agent' && modifier !== undefined) {
      if (!KNOWN.has(name)) throw unknownParam(name);
      throw invalid(`The modifier in '${key}' is not supported`);
    }
    switch (name) {
      case '_count':
        if (!/^\d{1,9}$/.test(value)) throw invalid(`_count must be a whole number, not '${value}'`);
        q.count = Math.min(Number(value), MAX_AUDIT_COUNT);
        break;
      case '_cursor': {
        const m = CURSOR_RE.exec(value);
        if (!m) throw invalid('_cursor must be a paging token from a Bundle link');
        q.cursor = { micros: m[1], seq: m[2], token: value };
        break;
      }
      case '_total':
        if (value !== 'none' && value !== 'estimate' && value !== 'accurate') {
          throw invalid(`_total must be none, estimate or accurate, not '${value}'`);
        }
        q.total = value === 'accurate';
        break;
      case '_summary':
        if (value === 'count') {
          q.summaryCount = true;
          q.total = true;
        } else if (value !== 'false') {
          throw invalid(`_summary=${value} is not supported; use count or false`);
        }
        break;
      case '_sort':
        if (value !== '-date' && value !== '-_lastUpdated') {
          throw invalid('AuditEvents are returned newest first: _sort supports -date only');
        }
        break;
      case '_id': {
        const ids = values(key, value).filter((id) => UUID_RE.test(id));
        q.criteria.push((p) => (ids.length ? `id = ANY(${p.add(ids)}::uuid[])` : 'false'));
        break;
      }
      case 'date': {
        const filters = values(key, value).map((v) => dateFilter(key, v));
        q.criteria.push((p) => or(filters.map((f) => f(p))));
        break;
      }
      case 'agent':
        q.criteria.push(agentCriterion(key, modifier, value));
        break;
      case 'entity': {
        const refs = values(key, value).map((v) => {
          const ref = v.startsWith(`${ctx.baseUrl}/`) ? v.slice(ctx.baseUrl.length + 1) : v;
          if (!REFERENCE_RE.test(ref)) throw invalid(`${key}=${v} is not a reference (Type/id or Type/id/_history/vid)`);
          return ref;
        });
        q.criteria.push((p) => `entity && ${p.add(refs)}::text[]`);
        break;
      }
      case 'entity-type': {
        const types = tokens(key, value, [RESOURCE_TYPES_SYSTEM]).filter((t) => /^[A-Z][A-Za-z]+$/.test(t));
        q.criteria.push((p) => (types.length ? `entity && ${p.add(types)}::text[]` : 'false'));
        break;
      }
      case 'action': {
        const codes = tokens(key, value, [ACTION_SYSTEM]).filter((c) => ACTIONS.has(c));
        q.criteria.push((p) => (codes.length ? `action = ANY(${p.add(codes)}::text[])` : 'false'));
        break;
      }
      case 'subtype': {
        const codes = tokens(key, value, [RESTFUL_INTERACTION_SYSTEM, DCM_SYSTEM]).map((c) => (c === 'login' ? '110122' : c));
        q.criteria.push((p) => `subtype = ANY(${p.add(codes)}::text[])`);
        break;
      }
      case 'outcome': {
        const codes = tokens(key, value, [OUTCOME_SYSTEM]).filter((c) => /^(0|4|8|12)$/.test(c)).map(Number);
        q.criteria.push((p) => (codes.length ? `outcome = ANY(${p.add(codes)}::smallint[])` : 'false'));
        break;
      }
      default:
        throw unknownParam(name);
    }
  }
  return q;
}

const KNOWN = new Set(['_count', '_cursor', '_total', '_summary', '_sort', '_id', 'date', 'agent', 'entity', 'entity-type', 'action', 'subtype', 'outcome']);

/** `agent` matches the client id (or, for an export, the destination id) in agent.who.identifier: `id`, `system|id`, `:identifier`, or `:missing` for unidentified callers. */
function agentCriterion(key: string, modifier: string | undefined, value: string): Criterion {
  if (modifier === 'missing') {
    if (value !== 'true' && value !== 'false') throw invalid(`${key} must be true or false`);
    return () => (value === 'true' ? 'client_id IS NULL' : 'client_id IS NOT NULL');
  }
  if (modifier !== undefined && modifier !== 'identifier') throw invalid(`The modifier in '${key}' is not supported`);
  const ids = tokens(key, value, [CLIENT_ID_SYSTEM, DESTINATION_ID_SYSTEM]);
  return (p) => (ids.length ? `client_id = ANY(${p.add(ids)}::text[])` : 'false');
}

/** Comma-separated values (OR), with `\,` for a literal comma. */
function values(key: string, value: string): string[] {
  const out = value.split(/(?<!\\),/).map((v) => v.replace(/\\([,|\\$])/g, '$1'));
  if (out.some((v) => v === '')) throw invalid(`${key} needs a value`);
  return out;
}

/** Token values' codes, keeping those with no system or one of `systems`. */
function tokens(key: string, value: string, systems: string[]): string[] {
  const codes: string[] = [];
  for (const v of value.split(/(?<!\\),/)) {
    const bar = v.search(/(?<!\\)\|/);
    const unescape = (s: string) => s.replace(/\\([,|\\$])/g, '$1');
    const system = bar < 0 ? undefined : unescape(v.slice(0, bar));
    const code = unescape(bar < 0 ? v : v.slice(bar + 1));
    if (code === '') throw invalid(`${key}=${value}: every value needs a code`);
    if (system === undefined || systems.includes(system)) codes.push(code);
  }
  return codes;
}

/** A date value with its prefix, compared with `recorded` as an instant (R4 search.html#prefix). */
function dateFilter(key: string, raw: string): Criterion {
  const value = raw.replace(/ /g, '+'); // an unencoded '+' of a timezone offset arrives as a space
  const prefix = DATE_PREFIXES.has(value.slice(0, 2)) ? value.slice(0, 2) : 'eq';
  const range = parseDateRange(prefix === value.slice(0, 2) ? value.slice(2) : value);
  if (!range) throw invalid(`${key}=${raw} is not a FHIR date (e.g. ge2026-01-31 or 2026-01-31T09:00:00Z)`);
  const at = (p: SqlParams, ms: number) => `${p.add(toSqlTimestamp(ms))}::timestamptz`;
  return (p) => {
    switch (prefix) {
      case 'gt':
      case 'sa':
        return `recorded >= ${at(p, range.high)}`;
      case 'lt':
      case 'eb':
        return `recorded < ${at(p, range.low)}`;
      case 'ge':
        return `recorded >= ${at(p, range.low)}`;
      case 'le':
        return `recorded < ${at(p, range.high)}`;
      case 'ne':
        return `NOT (recorded >= ${at(p, range.low)} AND recorded < ${at(p, range.high)})`;
      case 'ap': {
        const slack = Math.max(Math.abs(Date.now() - range.low) * 0.1, 86_400_000);
        return `(recorded >= ${at(p, range.low - slack)} AND recorded < ${at(p, range.high + slack)})`;
      }
      default:
        return `(recorded >= ${at(p, range.low)} AND recorded < ${at(p, range.high)})`;
    }
  };
}

function or(parts: string[]): string {
  return parts.length === 1 ? parts[0] : `(${parts.join(' OR ')})`;
}

function invalid(message: string): FhirError {
  return new FhirError('SPB_INVALID_SEARCH', message);
}

function unknownParam(name: string): FhirError {
  return new FhirError(
    'SPB_UNKNOWN_SEARCH_PARAM',
    `Unknown search parameter '${name}' for AuditEvent; supported: date, agent, entity, entity-type, action, subtype, outcome, _id, _count, _total, _summary`,
  );
}
