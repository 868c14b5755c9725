import { toSqlTimestamp } from '../fhir/search/dates';
import { normalizeString } from '../fhir/search/extract';
import type { Criterion, DateFilter, IndexTable, SearchRequest, SortSpec } from '../fhir/search/types';

/** Collects positional parameters while SQL text is built. */
export class SqlParams {
  readonly values: unknown[] = [];
  add(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
}

const TABLES: Record<IndexTable, string> = {
  token: 'search_token',
  reference: 'search_reference',
  date: 'search_date',
  string: 'search_string',
};

const SORT_COLUMN: Record<IndexTable, [string, string]> = {
  token: ['min(x.code)', 'max(x.code)'],
  reference: ['min(x.ref_id)', 'max(x.ref_id)'],
  date: ['min(x.low)', 'max(x.high)'],
  string: ['min(x.value)', 'max(x.value)'],
};

/** Rows of `resource_versions v` that were current and not deleted in `snapshot` (a pg_snapshot). */
export function asOf(p: SqlParams, snapshot: string): string {
  const s = p.add(snapshot);
  return (
    `${visibleIn('v.created_xid', s)} AND NOT v.deleted ` +
    `AND (v.superseded_xid IS NULL OR NOT ${visibleIn('v.superseded_xid', s)})`
  );
}

/** Whether the transaction `xid` had committed in snapshot `s`; this transaction's own writes count too. */
export function visibleIn(xid: string, s: string): string {
  return `(pg_visible_in_snapshot(${xid}, ${s}::pg_snapshot) OR coalesce(${xid} = pg_current_xact_id_if_assigned(), false))`;
}

/** The text form of a pg_snapshot, `xmin:xmax:xip,...`, as paging links carry it. */
export const SNAPSHOT_RE = /^\d{1,20}:\d{1,20}:(\d{1,20}(,\d{1,20}){0,999})?$/;

/** The WHERE clause of a search: type, snapshot and every criterion (AND), each criterion's values OR-ed. */
export function searchWhere(p: SqlParams, req: SearchRequest, snapshot: string): string {
  const type = p.add(req.type);
  const parts = [`v.type = ${type}`, asOf(p, snapshot)];
  for (const c of req.criteria) parts.push(criterionSql(p, type, c));
  return parts.join(' AND ');
}

function criterionSql(p: SqlParams, type: string, c: Criterion): string {
  switch (c.kind) {
    case 'id':
      return `v.id = ANY(${p.add(c.ids)}::text[])`;
    case 'lastUpdated':
      return or(c.values.map((f) => dateSql(p, 'v.last_updated', "v.last_updated + interval '1 millisecond'", f)));
    case 'token': {
      const values = or(
        c.values.map((t) => {
          const conds: string[] = [];
          if (t.system === null) conds.push('x.system IS NULL');
          else if (t.system !== undefined) conds.push(`x.system = ${p.add(t.system)}`);
          if (t.code !== undefined) conds.push(`x.code = ${p.add(t.code)}`);
          return conds.length ? conds.join(' AND ') : 'true';
        }),
      );
      return `${c.not ? 'NOT ' : ''}${exists('search_token', p, type, c.param, values)}`;
    }
    case 'reference':
      return exists(
        'search_reference',
        p,
        type,
        c.param,
        or(
          c.values.map((r) =>
            r.refType === undefined
              ? `x.ref_id = ${p.add(r.refId)}`
              : `x.ref_id = ${p.add(r.refId)} AND x.ref_type = ${p.add(r.refType)}`,
          ),
        ),
      );
    case 'date':
      return exists('search_date', p, type, c.param, or(c.values.map((f) => dateSql(p, 'x.low', 'x.high', f))));
    case 'string':
      return exists(
        'search_string',
        p,
        type,
        c.param,
        or(
          c.values.map((v) => {
            if (c.mode === 'exact') return `x.raw = ${p.add(v)}`;
            const pattern = escapeLike(normalizeString(v));
            return `x.value LIKE ${p.add(c.mode === 'contains' ? `%${pattern}%` : `${pattern}%`)}`;
          }),
        ),
      );
    case 'missing': {
      let sql = exists(TABLES[c.table], p, type, c.param, 'true');
      // A reference by business identifier alone is indexed as a token.
      if (c.table === 'reference') sql = `(${sql} OR ${exists('search_token', p, type, `${c.param}:identifier`, 'true')})`;
      return c.missing ? `NOT ${sql}` : sql;
    }
  }
}

function exists(table: string, p: SqlParams, type: string, param: string, cond: string): string {
  return `EXISTS (SELECT 1 FROM ${table} x WHERE x.vid = v.vid AND x.type = ${type} AND x.param = ${p.add(param)} AND (${cond}))`;
}

/**
 * Date comparison of a stored range [low, high) with a search value's range (R4 search.html#prefix).
 */
function dateSql(p: SqlParams, low: string, high: string, f: DateFilter): string {
  const pl = () => `${p.add(toSqlTimestamp(f.low))}::timestamptz`;
  const ph = () => `${p.add(toSqlTimestamp(f.high))}::timestamptz`;
  switch (f.prefix) {
    case 'eq':
      return `(${low} >= ${pl()} AND ${high} <= ${ph()})`;
    case 'ne':
      return `NOT (${low} >= ${pl()} AND ${high} <= ${ph()})`;
    case 'gt':
      return `${high} > ${ph()}`;
    case 'lt':
      return `${low} < ${pl()}`;
    case 'ge':
      return `${high} > ${pl()}`;
    case 'le':
      return `${low} < ${ph()}`;
    case 'sa':
      return `${low} >= ${ph()}`;
    case 'eb':
      return `${high} <= ${pl()}`;
    case 'ap': {
      // "Approximately": within 10% of the distance between the value and now, at least a day.
      const slack = Math.max(Math.abs(Date.now() - f.low) * 0.1, 86_400_000);
      const apLow = `${p.add(toSqlTimestamp(f.low - slack))}::timestamptz`;
      const apHigh = `${p.add(toSqlTimestamp(f.high + slack))}::timestamptz`;
      return `(${low} < ${apHigh} AND ${high} > ${apLow})`;
    }
  }
}

export function orderBy(p: SqlParams, sort: SortSpec[]): string {
  const keys = sort.map((s) => {
    const dir = s.descending ? 'DESC' : 'ASC';
    if (s.key === '_id') return `v.id ${dir}`;
    if (s.key === '_lastUpdated') return `v.last_updated ${dir}`;
    const table = s.table ?? 'token';
    const agg = SORT_COLUMN[table][s.descending ? 1 : 0];
    return `(SELECT ${agg} FROM ${TABLES[table]} x WHERE x.vid = v.vid AND x.param = ${p.add(s.key)}) ${dir} NULLS LAST`;
  });
  keys.push('v.vid ASC');
  return keys.join(', ');
}

function or(conds: string[]): string {
  return conds.length === 1 ? conds[0] : `(${conds.map((c) => `(${c})`).join(' OR ')})`;
}

function escapeLike(s: string): string {
  return s.replace(/[\\%_]/g, (c) => `\\${c}`);
}
